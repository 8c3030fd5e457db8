"""DDAMFN (fer_utils.models.ddamfn): the authors' state dict, counts, the attention loss, loaders.

The reference facts (state-dict keys and shapes, counts) were measured on the authors' code, see
tests/data/README.md; nothing here needs their code or weights.
"""
from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from fer_utils.models import ddamfn as dd
from fer_utils.data.convention import IMAGENET_MEAN, IMAGENET_STD
from fer_utils.data.datasets import load_rafdb_arrays
from fer_utils.data.transforms import eval_transform, rafdb_train_transform
from fer_utils.faces import align_sample
from fer_utils.losses import attention_loss, ddamfn_loss
from fer_utils.models import count_parameters
from fer_utils.models.ddamfn import COURSE, DDAMFN, DDAMFNOutput, MixedFeatureNet, count_used_parameters, macs, unused_parameter_names
from fer_utils.weights import load_ddamfn_checkpoint, load_msceleb_backbone

TSV = Path(__file__).parent / "data" / "ddamfn_state_dict.tsv"


def reference_rows() -> list[tuple[str, tuple[int, ...]]]:
    lines = TSV.read_text().splitlines()
    assert lines[0] == "key\tshape"
    rows = []
    for line in lines[1:]:
        key, shape = line.split("\t")
        rows.append((key, tuple(int(s) for s in shape.split(",")) if shape else ()))
    return rows


@pytest.fixture(scope="module")
def model() -> DDAMFN:
    torch.manual_seed(0)
    return DDAMFN(num_classes=7, num_heads=2)


# --------------------------------------------------------------------------- the authors' layout

def test_state_dict_keys_shapes_and_order_match_the_authors(model):
    ours = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    ref = reference_rows()
    assert len(ref) == 1190 and sum(k.endswith("num_batches_tracked") for k, _ in ref) == 149
    assert ours == ref


def test_strict_load_of_a_state_dict_built_from_the_reference(model):
    torch.manual_seed(1)
    state = {k: (torch.tensor(5, dtype=torch.long) if k.endswith("num_batches_tracked") else torch.randn(shape))
             for k, shape in reference_rows()}
    for k in state:
        if k.endswith("running_var"):
            state[k] = state[k].abs() + 0.5
    fresh = DDAMFN(7, 2)
    result = fresh.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert torch.equal(fresh.fc.weight, state["fc.weight"])
    with pytest.raises(RuntimeError):
        DDAMFN(7, 1).load_state_dict(state, strict=True)


# --------------------------------------------------------------------------- counts

def test_parameter_counts(model):
    assert count_parameters(model) == 4_187_421
    assert count_used_parameters(model) == 4_105_999          # the paper's 4.106 M
    one = DDAMFN(7, 1)
    assert (count_parameters(one), count_used_parameters(one)) == (4_126_445, 4_071_135)
    mfn = MixedFeatureNet()
    assert (count_parameters(mfn), count_used_parameters(mfn)) == (4_193_448, 4_164_264)
    for build, expected in ((torchvision.models.resnet18, 11_180_103), (torchvision.models.resnet50, 23_522_375)):
        assert count_parameters(build(weights=None, num_classes=7)) == expected


def test_unused_parameters_get_no_gradient_and_the_rest_do(model):
    torch.manual_seed(0)
    model.train()
    model.zero_grad(set_to_none=True)
    outputs = model(torch.randn(2, 3, 112, 112))
    ddamfn_loss(outputs, torch.tensor([0, 3])).backward()
    unused = set(unused_parameter_names(model))
    assert sum(model.get_parameter(n).numel() for n in unused) == 4_187_421 - 4_105_999
    for name, p in model.named_parameters():
        assert (p.grad is None) == (name in unused), name
    model.zero_grad(set_to_none=True)


def test_macs_from_flop_counter():
    assert round(macs(DDAMFN(7, 2)) / 1e6, 2) == 539.59
    assert round(macs(DDAMFN(7, 1)) / 1e6, 2) == 539.31
    assert round(macs(MixedFeatureNet()) / 1e6, 2) == 539.16
    assert round(macs(torchvision.models.resnet18(weights=None, num_classes=7)) / 1e6, 2) == 484.85
    assert round(macs(torchvision.models.resnet50(weights=None, num_classes=7)) / 1e6, 2) == 1075.87


# --------------------------------------------------------------------------- forward and structure

@pytest.mark.parametrize("mode", ["train", "eval"])
def test_forward_at_112(model, mode):
    model.train(mode == "train")
    logits, features, maps = model(torch.randn(3, 3, 112, 112))
    assert logits.shape == (3, 7) and features.shape == (3, 512, 7, 7)
    assert len(maps) == 2 and all(m.shape == (3, 512, 7, 7) for m in maps)
    assert all(((m > 0) & (m < 1)).all() for m in maps)
    model.eval()


def test_forward_is_features_times_max_of_heads_then_gdconv_and_fc(model):
    model.eval()
    images = torch.randn(2, 3, 112, 112)
    with torch.no_grad():
        logits, features, maps = model(images)
        a0, a1 = model.cat_head0(features), model.cat_head1(features)
        expected = model.fc(model.Linear(features * torch.maximum(a0, a1)).flatten(1))
        a_h, a_w = model.cat_head0.CoordAtt.directions(features)
    assert torch.allclose(maps[0], a0) and torch.allclose(maps[1], a1)
    assert torch.allclose(logits, expected, atol=1e-5)
    assert a_h.shape == (2, 512, 7, 1) and a_w.shape == (2, 512, 1, 7)
    assert torch.allclose(a0, a_h * a_w)                      # the head does not multiply by its input


def test_mdconv_ignores_its_batchnorm_and_prelu():
    torch.manual_seed(0)
    block = dd.MDConv(128, (3, 5, 7), (64, 32, 32), stride=2).eval()
    x = torch.randn(2, 128, 28, 28)
    before = block(x)
    with torch.no_grad():
        block.bn.weight.fill_(3.0)
        block.prelu.weight.fill_(-2.0)
    assert torch.equal(before, block(x)) and before.shape == (2, 128, 14, 14)
    expected = torch.cat([F.conv2d(g, c.weight, stride=2, padding=c.kernel_size[0] // 2, groups=g.shape[1])
                          for g, c in zip(torch.split(x, [64, 32, 32], 1), block.mixed_depthwise_conv)], 1)
    assert torch.allclose(before, expected, atol=1e-6)


def test_zero_heads_and_course_configuration():
    torch.manual_seed(0)
    plain = DDAMFN(7, 0).eval()
    with torch.no_grad():
        logits, features, maps = plain(torch.randn(2, 3, 112, 112))
        assert maps == [] and torch.allclose(logits, plain.fc(plain.Linear(features).flatten(1)), atol=1e-5)
    small = DDAMFN(7, 4, config=COURSE)
    logits, features, maps = small(torch.randn(2, 3, COURSE.input_size, COURSE.input_size))
    assert logits.shape == (2, 7) and len(maps) == 4
    assert features.shape == (2, COURSE.embedding, COURSE.map_size, COURSE.map_size)


# --------------------------------------------------------------------------- the attention loss

def test_attention_loss_on_hand_made_maps():
    a0, a1 = torch.full((1, 2, 2, 2), 0.2), torch.full((1, 2, 2, 2), 0.6)
    assert attention_loss([a0, a1]).item() == pytest.approx(1 / 0.16, rel=1e-5)          # MSE 0.16
    b0 = torch.tensor([[0.0, 1.0], [1.0, 0.0]])[None, None]
    b1 = torch.tensor([[1.0, 1.0], [0.0, 0.0]])[None, None]
    assert attention_loss([b0, b1]).item() == pytest.approx(2.0)                          # MSE 2 / 4
    c = [torch.full((2, 3, 1, 1), v) for v in (0.0, 0.5, 1.0)]                            # MSEs .25, 1, .25
    assert attention_loss(c).item() == pytest.approx(3 / 1.5)
    assert attention_loss([a0, a0.clone()]).item() == pytest.approx(1 / sys.float_info.epsilon, rel=1e-6)
    assert attention_loss([a0]).item() == 0.0 and attention_loss([]).item() == 0.0


def test_total_loss_is_cross_entropy_plus_a_tenth_of_the_attention_loss():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
    targets = torch.tensor([0, 2])
    maps = [torch.full((2, 1, 2, 2), 0.2), torch.full((2, 1, 2, 2), 0.6)]
    ce = -(torch.log_softmax(logits, 1)[[0, 1], [0, 2]]).mean()
    assert ddamfn_loss(DDAMFNOutput(logits, None, maps), targets).item() == pytest.approx(ce.item() + 0.1 * 6.25, rel=1e-5)
    assert ddamfn_loss(DDAMFNOutput(logits, None, maps[:1]), targets).item() == pytest.approx(ce.item(), rel=1e-6)


# --------------------------------------------------------------------------- loading files

def test_checkpoint_loader_wrapper_bare_and_prefixed(tmp_path, model):
    model.eval()
    x = torch.randn(2, 3, 112, 112)
    with torch.no_grad():
        expected = model(x)[0]
    state = model.state_dict()
    torch.save({"iter": 20, "model_state_dict": state, "optimizer_state_dict": {}}, tmp_path / "rafdb.pth")
    torch.save({f"module.{k}": v for k, v in state.items()}, tmp_path / "bare.pth")
    for name in ("rafdb.pth", "bare.pth"):
        fresh = DDAMFN(7, 2).eval()
        load_ddamfn_checkpoint(fresh, tmp_path / name)
        with torch.no_grad():
            assert torch.equal(fresh(x)[0], expected)
    torch.save(nn.Linear(2, 2), tmp_path / "module.pth")               # a pickled module: refused
    with pytest.raises(RuntimeError, match="weights_only=True"):
        load_ddamfn_checkpoint(DDAMFN(7, 2), tmp_path / "module.pth")
    (tmp_path / "page.pth").write_text("<html>Not Found</html>")      # a saved error page
    for load in (load_ddamfn_checkpoint, load_msceleb_backbone):
        with pytest.raises(RuntimeError, match=r"page.pth: not a file torch.save writes \(a zip archive or a pickle\)"):
            load(DDAMFN(7, 2), tmp_path / "page.pth")


def _pickled_mfn(tmp_path: Path, reference: MixedFeatureNet) -> Path:
    """Save ``reference`` as a whole module whose class is networks.MixedFeatureNet.MixedFeatureNet."""
    package, module = types.ModuleType("networks"), types.ModuleType("networks.MixedFeatureNet")
    cls = type("MixedFeatureNet", (nn.Module,), {"__module__": "networks.MixedFeatureNet"})
    module.MixedFeatureNet, package.MixedFeatureNet = cls, module
    sys.modules.update({"networks": package, "networks.MixedFeatureNet": module})
    try:
        fake = cls()
        for name, child in reference.named_children():
            fake.add_module(name, child)
        path = tmp_path / "MFN_msceleb.pth"
        torch.save(fake, path)
    finally:
        del sys.modules["networks"], sys.modules["networks.MixedFeatureNet"]
    return path


def test_msceleb_backbone_pickled_module(tmp_path):
    torch.manual_seed(3)
    reference = MixedFeatureNet()
    path = _pickled_mfn(tmp_path, reference)
    model = DDAMFN(7, 2)
    with pytest.raises(RuntimeError, match="trusted=True"):
        load_msceleb_backbone(model, path)
    keys = load_msceleb_backbone(model, path, trusted=True)   # no `networks` package: the shim stands in
    assert "networks" not in sys.modules
    assert len(keys) == len(model.features.state_dict())
    assert torch.equal(model.features[0].conv.weight, reference.conv1.conv.weight)
    assert torch.equal(model.features[8].prelu.weight, reference.conv_6_sep.prelu.weight)
    # the same file as a converted state dict loads with weights_only=True, no trust needed
    torch.save(reference.state_dict(), tmp_path / "mfn_state.pth")
    other = DDAMFN(7, 2)
    load_msceleb_backbone(other, tmp_path / "mfn_state.pth")
    assert torch.equal(other.features[5].model[3].CA.conv2.weight, reference.conv_4.model[3].CA.conv2.weight)


# --------------------------------------------------------------------------- data path

def test_rafdb_export_reads_back_as_arrays(tmp_path):
    from fer_utils.data import SynthFaces
    from fer_utils.data.formats import write_rafdb

    ds = SynthFaces(12, seed=0, difficulty="lab", size=112, with_masks=True)
    samples = []
    for i in range(len(ds)):
        item = ds[i]
        image, masks = align_sample(item, 112)
        assert image.shape == (112, 112, 3) and masks["mouth"].shape == (112, 112)
        samples.append({"image": image, "label": item["label"], "split": "train" if i < 8 else "test"})
    write_rafdb(samples, tmp_path / "basic", verbose=False)
    images, labels, is_train = load_rafdb_arrays(tmp_path / "basic", size=112)
    assert images.shape == (12, 112, 112, 3) and images.dtype == np.uint8
    keep = [s for s in samples if s["label"] != 7]          # RAF-DB has no contempt
    assert labels.tolist() == [s["label"] for s in keep]
    assert is_train.tolist() == [s["split"] == "train" for s in keep]
    error = np.abs(images.astype(float) - np.stack([s["image"] for s in keep]).astype(float)).mean()
    assert error < 12, f"images differ by {error:.1f} grey levels on average (100 px JPEG round trip)"


def test_augmentations_follow_the_authors_recipe():
    torch.manual_seed(0)
    image = torch.randint(0, 256, (3, 100, 100), dtype=torch.uint8)
    out = rafdb_train_transform(112)(image)
    assert out.shape == (3, 112, 112) and out.dtype == torch.float32
    names = [type(t).__name__ for t in rafdb_train_transform(112).transforms]
    assert names == ["Resize", "RandomHorizontalFlip", "RandomApply", "ToDtype", "Normalize", "RandomErasing"]
    flat = eval_transform(112, normalize="imagenet")(torch.full((3, 112, 112), 255, dtype=torch.uint8))
    assert torch.allclose(flat[:, 0, 0], (1 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD))


def test_notebook_reads_a_rafdb_export(tmp_path):
    """The notebook's set-up and data cells with dataset="rafdb" on a SynthFaces export (papermill)."""
    import json

    import nbformat

    from fer_utils.data import SynthFaces
    from fer_utils.data.formats import write_rafdb
    from nbtools import ROOT, read

    ds = SynthFaces(30, seed=1, difficulty="wild", size=112, with_masks=False)
    samples = [{"image": align_sample(ds[i], 112)[0], "label": int(ds.labels[i]),
                "split": "train" if i < 20 else "test"} for i in range(len(ds))]
    write_rafdb(samples, tmp_path / "basic", verbose=False)
    keep = [s for s in samples if s["label"] != 7]
    nb = read(ROOT / "notebooks" / "05_ddamfn.ipynb")
    cut = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code" and "source.images(" in c.source)
    nb.cells = nb.cells[:cut + 1] + [nbformat.v4.new_code_cell(
        "import json\n"
        "json.dump({'n': len(images), 'shape': list(images.shape[1:]), 'labels': targets.tolist(),\n"
        "           'train': len(train_idx), 'test': len(test_idx)}, open('data_check.json', 'w'))")]
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
    src = tmp_path / "prefix.ipynb"
    nbformat.write(nb, src)
    import papermill as pm

    pm.execute_notebook(str(src), str(tmp_path / "out.ipynb"), kernel_name="python3", progress_bar=False,
                        cwd=str(tmp_path), parameters={"profile": "smoke", "dataset": "rafdb",
                                                       "data_root": str(tmp_path / "basic")})
    seen = json.loads((tmp_path / "data_check.json").read_text())
    assert seen["n"] == len(keep) and seen["shape"] == [112, 112, 3]
    assert seen["labels"] == [s["label"] for s in keep]
    assert seen["train"] == sum(s["split"] == "train" for s in keep) and seen["train"] + seen["test"] == len(keep)


def test_course_network_is_the_faithful_table_scaled_down():
    """ddamfn.COURSE = scaled(FAITHFUL, / 4): the splits and repeats the notebook's table states."""
    assert [st.splits for st in COURSE.stages] == [(16, 8, 8), (24, 8), (32, 16, 16), (48, 16), (64,) * 4, (44, 42, 42)]
    assert [st.repeats for st in COURSE.stages] == [1, 1, 1, 2, 1, 1] and (COURSE.stem, COURSE.embedding) == (16, 128)
    assert [st.expand for st in COURSE.stages] == [32, 32, 64, 64, 256, 128] and COURSE.map_size == 4


# --- identity pre-training and the head ablation (fer_utils.recipes.ddamfn) ----------------------

def test_pretrain_key_changes_with_the_network_the_settings_and_the_generator(monkeypatch, tmp_path):
    from fer_utils.recipes import ddamfn as rd

    base = rd.pretrain_key(COURSE, rd.Pretraining())
    assert rd.pretrain_key(COURSE, rd.Pretraining()) == base
    assert rd.pretrain_key(dd.FAITHFUL, rd.Pretraining()) != base
    assert rd.pretrain_key(COURSE, rd.Pretraining(n_identities=99)) != base
    fake = tmp_path / "fer_utils"
    for name in rd.PRETRAIN_SOURCES:
        (fake / name).parent.mkdir(parents=True, exist_ok=True)
        (fake / name).write_bytes((rd.PACKAGE / name).read_bytes())
    monkeypatch.setattr(rd, "PACKAGE", fake)
    assert rd.pretrain_key(COURSE, rd.Pretraining()) == base
    (fake / "data/synth_sample.py").write_text("# the generator changed\n")
    assert rd.pretrain_key(COURSE, rd.Pretraining()) != base


def test_pretrained_backbone_is_cached_and_loads_into_ddamfn(tmp_path):
    from fer_utils.recipes import ddamfn as rd

    setup = rd.Pretraining(n=40, n_identities=4, epochs=1, batch_size=20)
    torch.set_num_threads(1)
    features, info = rd.pretrained_backbone(COURSE, setup, cache_dir=tmp_path, progress=False)
    assert not info["cached"] and len(info["identity_accuracy"]) == 1
    again, info2 = rd.pretrained_backbone(COURSE, setup, cache_dir=tmp_path, progress=False)
    assert info2["cached"] and info2["key"] == info["key"]
    assert all(torch.equal(features[k], again[k]) for k in features)
    model = DDAMFN(7, 2, COURSE)
    rd.load_backbone(model, features)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in features.items())
    assert set(features) == {k for k in model.state_dict() if k.startswith("features.")}
    with pytest.raises(KeyError, match="another config"):
        rd.load_backbone(DDAMFN(7, 2), features)


def test_classify_is_forward_after_the_backbone_and_head_training_leaves_the_backbone():
    from fer_utils.recipes import ddamfn as rd

    torch.manual_seed(0)
    model = DDAMFN(7, 2, COURSE).eval()
    images = torch.randn(6, 3, 64, 64)
    features = rd.backbone_features(model, images)
    assert torch.allclose(model.classify(features)[0], model(images)[0], atol=1e-5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    losses = rd.train_after_backbone(model, features, torch.arange(6) % 7, epochs=2, lr=1e-2, batch_size=3, seed=0)
    assert len(losses) == 2
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("features."))
    assert not torch.equal(before["fc.weight"], after["fc.weight"])


def test_course_backbone_variants_give_logits_and_keep_their_size_order():
    from fer_utils.models import count_parameters, logits_of
    from fer_utils.recipes import ddamfn as rd

    sizes = {}
    for name in rd.VARIANTS:
        torch.manual_seed(0)
        model = rd.build_variant(name).eval()
        assert logits_of(model(torch.zeros(2, 3, 64, 64))).shape == (2, 7), name
        sizes[name] = count_parameters(model)
    assert sizes["mobilefacenet"] < sizes["mfn"] < sizes["ddamfn"] < sizes["resnet18"]
    assert sizes["mfn"] == count_parameters(DDAMFN(7, 0, COURSE))
    with pytest.raises(ValueError, match="variant"):
        rd.build_variant("vgg")


def test_train_variant_stops_at_a_plateau_and_adds_the_attention_loss_only_with_heads():
    from dataclasses import replace

    from fer_utils.losses import attention_loss
    from fer_utils.recipes import ddamfn as rd
    from fer_utils.train import Plateau

    torch.manual_seed(0)
    images = torch.randint(0, 256, (24, 3, 64, 64), dtype=torch.uint8)
    labels = torch.arange(24) % 7
    history = rd.train_variant(rd.build_variant("mobilefacenet"), (images[:16], labels[:16]),
                               (images[16:], labels[16:]), replace(rd.COURSE, epochs=3, batch_size=8), seed=0,
                               stop=Plateau(patience=1, tolerance=10.0))
    assert history["plateaued"] and history["epochs_run"] == 2
    model = rd.build_variant("ddamfn").eval()
    outputs = model(torch.randn(2, 3, 64, 64))
    loss = rd.variant_loss(0.1)
    cross_entropy = F.cross_entropy(outputs.logits, labels[:2])
    assert torch.isclose(loss(outputs, labels[:2]), cross_entropy + 0.1 * attention_loss(outputs.heads))
    assert torch.isclose(rd.variant_loss(0.0)(outputs, labels[:2]), cross_entropy)


def test_train_variant_precise_bn_leaves_the_statistics_of_the_training_faces_as_the_test_faces_see_them():
    from dataclasses import replace

    from torch.optim.swa_utils import update_bn

    from fer_utils.data.transforms import eval_transform
    from fer_utils.recipes import ddamfn as rd

    torch.manual_seed(0)
    images = torch.randint(0, 256, (24, 3, 64, 64), dtype=torch.uint8)
    labels = torch.arange(24) % 7
    recipe = replace(rd.COURSE, epochs=1, batch_size=8)
    clean = torch.stack([eval_transform(64, normalize="imagenet")(x) for x in images[:16]])
    first_bn = lambda model: next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    for precise in (True, False):
        model = rd.build_variant("mfn")
        rd.train_variant(model, (images[:16], labels[:16]), (images[16:], labels[16:]), recipe, seed=0,
                         precise_bn=precise)
        after = first_bn(model).running_mean.clone()
        update_bn([clean], model)                     # the training faces' statistics, computed once more
        same = torch.allclose(after, first_bn(model).running_mean, atol=1e-5)
        assert same == precise, precise               # precise BN: already those; plain: a lagging running average
