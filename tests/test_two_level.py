"""2Att-2Mt (notebook 04): residual attention module, second-level attention, losses, VA loader."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from fer_utils import metrics
from fer_utils.data.formats import write_affectnet
from fer_utils.data.va import load_synthfaces_va, load_va_faces, split_va_faces
from fer_utils.losses import ccc_loss, va_loss
from fer_utils.models.two_level import (COURSE_CONFIG, AttentionBackbone, LevelAttention, ResidualAttentionModule,
                                        SoftMaskBranch, TwoLevelAttentionNet, parameter_table)

#: The table notebook 04 prints (``# NBVAL_CHECK_OUTPUT``): parts of the course configuration.
EXPECTED_PARAMETERS = {
    "full model": {"backbone": 467_296, "projections": 11_776, "bi_rnn": 18_816, "attention": 2_112,
                   "heads": 585, "total": 500_585},
    "no first-level attention": {"backbone": 247_536, "projections": 11_776, "bi_rnn": 18_816, "attention": 2_112,
                                 "heads": 585, "total": 280_825},
    "no second level (last level only)": {"backbone": 467_296, "projections": 4_224, "bi_rnn": 0, "attention": 0,
                                          "heads": 585, "total": 472_105},
    "Bi-RNN without self-attention": {"backbone": 467_296, "projections": 11_776, "bi_rnn": 18_816, "attention": 0,
                                      "heads": 585, "total": 498_473},
}
VARIANTS = {"full model": {}, "no first-level attention": {"first_level": False},
            "no second level (last level only)": {"second_level": "last"},
            "Bi-RNN without self-attention": {"second_level": "mean"}}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_parameter_counts(name):
    model = TwoLevelAttentionNet(**COURSE_CONFIG, **VARIANTS[name])
    assert parameter_table(model) == EXPECTED_PARAMETERS[name]


def test_paper_hyperparameters_build():
    """p=1, t=2, r=1 (the RAN paper's values) build and keep shapes; more units than the course p=0, t=1."""
    faithful = TwoLevelAttentionNet(p=1, t=2, r=1)
    course = TwoLevelAttentionNet(**COURSE_CONFIG)
    assert parameter_table(faithful)["backbone"] > parameter_table(course)["backbone"]
    assert faithful(torch.randn(2, 1, 48, 48)).va.shape == (2, 2)


@pytest.mark.parametrize("n_pool,size", [(0, 6), (1, 12), (2, 24), (3, 24), (2, 13)])
def test_mask_shape_and_range(n_pool, size):
    torch.manual_seed(0)
    branch = SoftMaskBranch(8, n_pool, r=1)
    x = torch.randn(3, 8, size, size) * 5
    mask = branch(x)
    assert mask.shape == x.shape
    assert mask.min() >= 0 and mask.max() <= 1


def test_module_shapes_and_identity_when_mask_is_zero():
    torch.manual_seed(0)
    module = ResidualAttentionModule(8, n_pool=2, p=1, t=2, r=1).eval()
    x = torch.randn(2, 8, 24, 24)
    assert module(x).shape == x.shape
    assert module.last_mask.shape == x.shape
    with torch.no_grad():  # mask -> sigmoid(-30) ~ 0: H = (1 + 0) * T = T
        last = module.mask.out[-1]
        last.weight.zero_()
        last.bias.fill_(-30.0)
    expected = module.post(module.trunk(module.pre(x)))
    torch.testing.assert_close(module(x), expected, atol=1e-6, rtol=0)
    trunk = torch.randn(2, 8, 4, 4)
    torch.testing.assert_close(ResidualAttentionModule.combine(trunk, torch.zeros_like(trunk)), trunk)
    torch.testing.assert_close(ResidualAttentionModule.combine(trunk, torch.ones_like(trunk)), 2 * trunk)


def test_plain_residual_ablation_has_no_mask():
    module = ResidualAttentionModule(8, n_pool=1, attention=False)
    assert module.mask is None
    x = torch.randn(2, 8, 12, 12)
    torch.testing.assert_close(module(x), module.post(module.trunk(module.pre(x))))


def test_backbone_levels():
    config = {k: COURSE_CONFIG[k] for k in ("widths", "pools", "p", "t", "r")}
    levels = AttentionBackbone(**config)(torch.randn(2, 1, 48, 48))
    assert [tuple(f.shape) for f in levels] == [(2, 16, 24, 24), (2, 32, 12, 12), (2, 64, 6, 6), (2, 64, 3, 3)]


def test_self_attention_weights_sum_to_one():
    torch.manual_seed(0)
    attention = LevelAttention(16, 8)
    h = torch.randn(5, 4, 16)
    c, weights = attention(h)
    assert c.shape == (5, 16) and weights.shape == (5, 4)
    torch.testing.assert_close(weights.sum(1), torch.ones(5))
    assert (weights > 0).all()
    # c is the weighted sum of the steps
    torch.testing.assert_close(c, torch.einsum("bt,btn->bn", weights, h))


@pytest.mark.parametrize("name", list(VARIANTS))
def test_model_outputs(name):
    torch.manual_seed(0)
    model = TwoLevelAttentionNet(**COURSE_CONFIG, **VARIANTS[name])
    out = model(torch.randn(3, 1, 48, 48))
    assert out.va.shape == (3, 2) and out.logits.shape == (3, 7) and out.level_weights.shape == (3, 4)
    assert out.va.abs().max() <= 1
    torch.testing.assert_close(out.level_weights.sum(1), torch.ones(3))
    va_loss("ccc")(out, torch.rand(3, 2) * 2 - 1).backward()
    assert model.heads["valence"].weight.grad.abs().sum() > 0
    masks = model.attention_masks()
    assert len(masks) == (0 if name == "no first-level attention" else 3)


def test_ccc_loss_matches_metric_and_hand_values():
    y = np.array([0.1, -0.4, 0.8, 0.3, -0.2])
    p = np.array([0.0, -0.5, 0.6, 0.5, 0.1])
    # by hand: mu_y = 0.12, mu_p = 0.14, var_y = 0.1736, var_p = 0.1544, cov = 0.1452
    # CCC = 2 * 0.1452 / (0.1736 + 0.1544 + 0.0004) = 0.2904 / 0.3284
    assert metrics.ccc(y, p) == pytest.approx(0.2904 / 0.3284, abs=1e-9)
    loss = ccc_loss(torch.tensor(p), torch.tensor(y))
    assert float(loss) == pytest.approx(1 - metrics.ccc(y, p), abs=1e-6)
    assert float(ccc_loss(torch.tensor(y), torch.tensor(y))) == pytest.approx(0, abs=1e-6)
    # PCC ignores scale and bias, CCC does not
    assert metrics.pcc(y, 2 * y + 1) == pytest.approx(1) and metrics.ccc(y, 2 * y + 1) < 0.5


def test_va_loss_single_task_ignores_the_other_head():
    with torch.no_grad():
        out = TwoLevelAttentionNet(**COURSE_CONFIG)(torch.randn(4, 1, 48, 48))
    target = torch.rand(4, 2) * 2 - 1
    loss = va_loss("mse", tasks=("valence",))(out, target)
    assert float(loss) == pytest.approx(float(((out.va[:, 0] - target[:, 0]) ** 2).mean()), abs=1e-6)
    with pytest.raises(ValueError, match="kind"):
        va_loss("mae")


def test_synthfaces_va_loader_and_split():
    faces = load_synthfaces_va(60, seed=3, difficulty="wild", size=48, n_identities=10)
    assert faces.images.shape == (60, 48, 48) and faces.va.shape == (60, 2)
    item = faces.pool[5]
    assert np.array_equal(item["image"], faces.images[5])
    assert (item["valence"], item["arousal"], item["label"]) == pytest.approx(
        (faces.valence[5], faces.arousal[5], faces.labels[5]))
    train, test = split_va_faces(faces, seed=0)
    assert not set(faces.identities[train]) & set(faces.identities[test])
    assert set(faces.masks([0])[0]) == {"brows", "eyes", "nose", "mouth", "cheeks"}


def _export(tmp_path, n=300):
    faces = load_synthfaces_va(n, seed=1, difficulty="wild", size=48, n_identities=30)
    train, test = split_va_faces(faces, seed=0)
    split = np.where(np.isin(np.arange(n), test), "val", "train")
    samples = ({"image": faces.images[i], "label": int(faces.labels[i]), "valence": float(faces.valence[i]),
                "arousal": float(faces.arousal[i]), "split": split[i], "index": i} for i in range(n))
    root = write_affectnet(samples, tmp_path / "affectnet", verbose=False)
    return faces, split, root


def test_affectnet_export_reads_back(tmp_path):
    faces, split, root = _export(tmp_path)
    read = load_va_faces("affectnet", data_root=root, size=48)
    # the reader returns training.csv rows first, then validation.csv
    order = np.concatenate([np.flatnonzero(split == "train"), np.flatnonzero(split == "val")])
    assert np.array_equal(read.labels, faces.labels[order])
    np.testing.assert_allclose(read.valence, faces.valence[order], atol=1e-6)
    np.testing.assert_allclose(read.arousal, faces.arousal[order], atol=1e-6)
    assert read.images.shape == (300, 48, 48)
    assert np.abs(read.images.astype(int) - faces.images[order].astype(int)).mean() < 8  # JPEG
    train, test = split_va_faces(read)
    assert len(test) == (split == "val").sum() and (read.split[test] == "val").all()
    with pytest.raises(ValueError, match="data_root"):
        load_va_faces("affectnet")


def test_notebook_reads_an_affectnet_export(tmp_path):
    """The notebook's parameters + set-up + data cells run on an AffectNet-format export."""
    import nbformat
    from nbtools import NOTEBOOKS, execute_papermill, read

    _, _, root = _export(tmp_path, n=200)
    path = next(p for p in NOTEBOOKS if p.stem.startswith("04_"))
    nb = read(path)
    # the last data cell carries the tag ``data-end`` (a tag, so that students see no harness marker)
    ends = [i for i, c in enumerate(nb.cells) if "data-end" in c.metadata.get("tags", [])]
    assert len(ends) == 1, f"{path.name}: exactly one cell must be tagged data-end, found {ends}"
    end = ends[0]
    assert not any("DATA CELLS END" in c.source for c in nb.cells), "the marker is a tag now, not a comment"
    nb.cells = nb.cells[: end + 1]
    src = tmp_path / "prefix.ipynb"
    nbformat.write(nb, src)
    results = tmp_path / "r.json"
    execute_papermill(src, tmp_path / "out.ipynb", {"profile": "smoke", "dataset": "affectnet",
                                                    "data_root": str(root), "results_path": str(results)},
                      env={"FER_RESULTS_DIR": "", "FER_FIGURES_DIR": ""})
    recorded = json.loads(results.read_text())
    assert recorded["data.dataset"] == "affectnet" and recorded["data.n_faces"] == 200


def test_two_stage_in_channels_last_gives_the_same_numbers():
    """``channels_last=True`` changes the memory order only: both stages' curves equal the default's up to
    float rounding. The tolerance is 1e-2 relative: the convolutions sum in another order, and Adam's first
    update (about lr * g / |g| per weight) turns last-bit differences of tiny gradients into whole steps."""
    from torch.utils.data import DataLoader, TensorDataset

    from fer_utils.recipes.two_level import two_stage
    torch.manual_seed(0)
    images, labels, va = torch.randn(16, 1, 48, 48), torch.randint(0, 7, (16,)), torch.rand(16, 2) * 2 - 1

    def run(channels_last: bool) -> dict:
        loaders = {key: DataLoader(TensorDataset(images, y), batch_size=8, shuffle=True,
                                   generator=torch.Generator().manual_seed(0)) for key, y in
                   (("expression", labels), ("va", va))}
        return two_stage(lambda: TwoLevelAttentionNet(num_classes=7, **COURSE_CONFIG), loaders, (1, 1),
                         loss_fn=va_loss("ccc"), progress=False, channels_last=channels_last)

    plain, fast = run(False), run(True)
    assert fast["model"].backbone.stem[0].weight.is_contiguous(memory_format=torch.channels_last)
    for stage in ("history1", "history2"):
        assert len(plain[stage]["train_loss"]) == 1, "one epoch per stage: one loss each (not an empty list)"
        np.testing.assert_allclose(fast[stage]["train_loss"], plain[stage]["train_loss"], rtol=1e-2)


def _within_class_share(faces):
    """Share of the valence and arousal variance left after the class and the intensity ray are known:
    the residual of a per-class least-squares fit of (valence, arousal) on the face's distance along its ray."""
    left = []
    for y in (faces.valence, faces.arousal):
        residual = np.zeros_like(y)
        for c in np.unique(faces.labels):
            idx = faces.labels == c
            radius = np.hypot(faces.valence[idx], faces.arousal[idx])
            design = np.stack([np.ones(idx.sum()), radius], 1)
            residual[idx] = y[idx] - design @ np.linalg.lstsq(design, y[idx], rcond=None)[0]
        left.append(residual.var() / y.var())
    return left


def test_free_va_varies_within_a_class_and_apart():
    """va_mode="free": valence and arousal are no longer one ray per class (class + intensity explain far less),
    the two move apart within a class, and the class labels and identities are the same faces' as in "class" mode."""
    ray = load_synthfaces_va(400, seed=2, difficulty="lab", size=48, n_identities=40)
    free = load_synthfaces_va(400, seed=2, difficulty="lab", size=48, n_identities=40, va_mode="free", va_spread=0.3)
    assert np.array_equal(ray.labels, free.labels) and np.array_equal(ray.identities, free.identities)
    assert max(_within_class_share(ray)) < 0.1
    assert min(_within_class_share(free)) > 0.2
    assert not np.array_equal(ray.images, free.images), "the within-class part is drawn on the face"
    same = load_va_faces("synthfaces", n=50, seed=2, difficulty="lab", n_identities=40, va_mode="free")
    np.testing.assert_allclose(same.valence, free.valence[:50])


def test_labelled_subset_is_nested_and_sized():
    from fer_utils.data.va import labelled_subset
    small, large, everything = (labelled_subset(200, r, seed=3) for r in (0.05, 0.2, 1.0))
    assert len(small) == 10 and len(large) == 40 and np.array_equal(everything, np.arange(200))
    assert set(small) <= set(large)
    assert len(labelled_subset(100, 0.01, seed=3)) == 8, "at least `minimum` faces"
    assert not np.array_equal(labelled_subset(200, 0.2, seed=4), large), "another seed, another subset"
    with pytest.raises(ValueError, match="rate"):
        labelled_subset(10, 0.0)


def test_fit_stage_stops_at_the_plateau_and_trains_one_task_only():
    from fer_utils.recipes.two_level import fit_stage
    from fer_utils.train import Plateau
    torch.manual_seed(0)
    images, labels, va = torch.randn(24, 1, 48, 48), torch.randint(0, 7, (24,)), torch.rand(24, 2) * 2 - 1
    model = TwoLevelAttentionNet(num_classes=7, **COURSE_CONFIG)
    history = fit_stage(model, (images, labels), (images[:8], labels[:8]), "expression", Plateau(patience=1), cap=3)
    assert 1 <= history["epochs_run"] <= 3 and isinstance(history["plateaued"], bool)
    before = model.heads["arousal"].weight.detach().clone()
    fit_stage(model, (images, va), (images[:8], va[:8]), "va", Plateau(patience=1), cap=2, tasks=("valence",),
              weight_decay=0.0)
    torch.testing.assert_close(model.heads["arousal"].weight, before)   # its gradient is 0: Adam does not move it


def test_fit_stage_precise_bn_uses_evenly_spaced_training_faces():
    from fer_utils.recipes.two_level import fit_stage
    from fer_utils.train import Plateau
    torch.manual_seed(0)
    images, labels = torch.rand(24, 1, 48, 48), torch.randint(0, 7, (24,))

    def bn_means(model):
        return [m.running_mean.clone() for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]

    trained = {}
    for bn_faces in (0, 6):
        torch.manual_seed(1)
        trained[bn_faces] = TwoLevelAttentionNet(num_classes=7, **COURSE_CONFIG)
        fit_stage(trained[bn_faces], (images, labels), (images[:8], labels[:8]), "expression", Plateau(patience=5),
                  cap=1, bn_faces=bn_faces)
    assert bn_means(trained[6]), "the network has BatchNorm layers"
    expected = copy.deepcopy(trained[6])
    picked = images[[0, 5, 9, 14, 18, 23]]          # 6 of 24, evenly spaced, first and last included
    torch.optim.swa_utils.update_bn([picked], expected)
    for got, want in zip(bn_means(trained[6]), bn_means(expected)):
        torch.testing.assert_close(got, want)
    assert not all(torch.allclose(a, b) for a, b in zip(bn_means(trained[0]), bn_means(trained[6]))), \
        "without bn_faces the running averages are the training batches' (momentum 0.1)"


def test_fit_stage_epochs_have_at_least_min_steps():
    from fer_utils.recipes.two_level import _epochs_of, _loader
    loader = _loader(torch.randn(10, 1, 4, 4), torch.randn(10, 2), batch_size=4, seed=0)   # 4 + 4 + 2 faces
    one, steps = _epochs_of(loader, 1)
    assert len(list(one(1))) == steps == 3
    two, steps = _epochs_of(loader, 4)
    assert len(list(two(1))) == steps == 6, "two whole passes"
    assert len(_loader(torch.randn(9, 1, 4, 4), torch.randn(9, 2), batch_size=4, seed=0)) == 2, "no batch of one face"
