"""MGLN (fer_utils.models.mgln, recipes.mgln, data.sequences): the authors' state dict, every block's
shapes, ConvOffset2D's bilinear sampling and its offset pairing, gradients, the recipe and the data.

The state-dict reference was listed from the authors' code (see tests/data/README.md).
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from fer_utils.data import sequences as S
from fer_utils.models import mgln as M
from fer_utils.recipes import mgln as R

TSV = Path(__file__).parent / "data" / "mgln_state_dict.tsv"


def reference_rows() -> list[tuple[str, tuple[int, ...]]]:
    lines = TSV.read_text().splitlines()
    assert lines[0] == "key\tshape"
    return [(k, tuple(int(s) for s in shape.split(","))) for k, shape in (line.split("\t") for line in lines[1:])]


@pytest.fixture(scope="module")
def faithful() -> M.MGLN:
    torch.manual_seed(0)
    return M.MGLN(7).eval()


def test_state_dict_equals_the_authors(faithful):
    ours = [(k, tuple(v.shape)) for k, v in faithful.state_dict().items()]
    assert ours == reference_rows()
    assert len(ours) == 95
    assert sum(p.numel() for p in faithful.parameters()) == 19_988_145
    assert sum(int(np.prod(s)) for _, s in reference_rows()) == 19_988_145


def test_forward_shapes(faithful):
    face, eyes, noses, mouths = M.example_inputs(faithful, batch=2)
    assert face.shape == (2, 3, 128, 128) and eyes.shape == (2, 3, 3, 48, 128)
    assert noses.shape == (2, 3, 3, 64, 32) and mouths.shape == (2, 3, 3, 32, 64)
    with torch.no_grad():
        g, p = faithful(face, eyes, noses, mouths)
    assert g.shape == (2, 7) and p.shape == (2, 7)
    assert (g >= 0).all() and (p >= 0).all(), "the authors' last 1x1 convs keep their ReLU: logits are >= 0"


def test_block_shapes(faithful):
    torch.manual_seed(1)
    with torch.no_grad():
        f = faithful.front_end(torch.randn(2, 3, 128, 128))
        assert f.shape == (2, 512, 16, 16)
        b = faithful.back_end
        assert b.conv1[0](f).shape == (2, 512, 16, 16), "ConvOffset2D keeps the input's shape"
        h1 = b.conv1(f)
        h2 = b.conv2(h1)
        h3 = b.conv3(h2)
        assert (h1.shape, h2.shape, h3.shape) == ((2, 256, 16, 16), (2, 128, 16, 16), (2, 64, 16, 16))
        assert b.global_map(f).shape == (2, 7, 16, 16)
        for part, (hw, flat) in {"eyes": ((48, 128), 96), "nose": ((64, 32), 32), "mouth": ((32, 64), 32)}.items():
            feats = faithful.ssm_frames(torch.randn(2, 3, 3, *hw))
            assert feats.shape == (2, 3, 512, hw[0] // 8, hw[1] // 8)
            end = faithful.part_ends()[part]
            assert end.frame_codes(feats).shape == (2, 3, flat)
            assert end(feats).shape == (2, 1, 16, 16)
        local = faithful.part_maps(*M.example_inputs(faithful, 2)[1:])
        assert local.shape == (2, 3, 16, 16)
        assert b.conv9(b.conv8(b.conv7(local))).shape == (2, 7, 16, 16)


def test_macs_of_the_faithful_model(faithful):
    macs = M.macs(faithful)
    # the SSM alone on the face: VGG16 conv1_1..conv4_3 at 128x128 (3x3 kernels)
    size, c, ssm = 128, 3, 0
    for v in M.VGG16_CONV4:
        if v == "M":
            size //= 2
        else:
            ssm += size * size * v * c * 9
            c = v
    assert ssm < macs < 4 * ssm
    assert macs == M.macs(faithful), "deterministic"


def bilinear_by_hand(img: np.ndarray, y: float, x: float) -> float:
    h, w = img.shape
    y, x = min(max(y, 0), h - 1), min(max(x, 0), w - 1)
    y0, x0 = int(np.floor(y)), int(np.floor(x))
    y1, x1 = min(y0 + 1, h - 1), min(x0 + 1, w - 1)
    dy, dx = y - y0, x - x0
    return float((1 - dy) * (1 - dx) * img[y0, x0] + (1 - dy) * dx * img[y0, x1]
                 + dy * (1 - dx) * img[y1, x0] + dy * dx * img[y1, x1])


def test_sample_at_offsets_against_hand_computed_bilinear():
    img = np.arange(12, dtype=np.float32).reshape(3, 4) ** 1.5
    x = torch.from_numpy(img)[None, None]
    offsets = torch.zeros(1, 1, 3, 4, 2)
    offsets[0, 0, 0, 0] = torch.tensor([0.5, 0.25])     # inside: (0.5, 0.25)
    offsets[0, 0, 1, 2] = torch.tensor([-0.3, 0.7])     # inside: (0.7, 2.7)
    offsets[0, 0, 2, 3] = torch.tensor([5.0, -9.0])     # clamped to (2, 0)
    out = M.sample_at_offsets(x, offsets)[0, 0].numpy()
    assert out[0, 0] == pytest.approx(bilinear_by_hand(img, 0.5, 0.25), abs=1e-5)
    assert out[1, 2] == pytest.approx(bilinear_by_hand(img, 0.7, 2.7), abs=1e-5)
    assert out[2, 3] == pytest.approx(img[2, 0], abs=1e-5)
    assert out[1, 1] == pytest.approx(img[1, 1], abs=1e-5), "zero offset returns the input"


def test_conv_offset_pairs_adjacent_values_of_one_channel():
    """The authors' raw view: the (dy, dx) of location (i, j) of channel k are offset values 2(iW + j) and
    2(iW + j) + 1 of channels 2k, 2k+1 read as one flat block, i.e. two horizontal neighbours of one channel."""
    torch.manual_seed(0)
    layer = M.ConvOffset2D(2)
    x = torch.randn(1, 2, 4, 6)
    raw = torch.nn.functional.conv2d(x, layer.weight, padding=1)          # (1, 4, 4, 6)
    pairs = layer.offsets(x)                                                # (1, 2, 4, 6, 2)
    h, w = 4, 6
    for k in range(2):
        flat = raw[0, 2 * k:2 * k + 2].reshape(-1)                          # channels 2k, 2k+1, row-major
        for i in range(h):
            for j in range(w):
                n = 2 * (i * w + j)
                assert torch.equal(pairs[0, k, i, j], flat[n:n + 2])
    # top half of channel k's rows takes its pairs from offset channel 2k, horizontally adjacent values
    assert torch.equal(pairs[0, 0, 0, 0], raw[0, 0, 0, 0:2])
    assert torch.equal(pairs[0, 0, 2, 0], raw[0, 1, 0, 0:2])
    # and the layer's output is that sampling
    expected = M.sample_at_offsets(x, pairs)
    assert torch.allclose(layer(x), expected)


def test_gradients_reach_the_offsets():
    torch.manual_seed(0)
    layer = M.ConvOffset2D(3)
    with torch.no_grad():
        layer.weight.mul_(50)                                               # offsets away from integers
    x = torch.randn(2, 3, 5, 5, requires_grad=True)
    layer(x).pow(2).sum().backward()
    assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0
    assert x.grad.abs().sum() > 0
    model = M.MGLN(7, ssm=(8, "M", 16), face_size=16, part_sizes={"eyes": (8, 16), "nose": (8, 4), "mouth": (4, 8)},
                   lstm_hidden=16)
    g, p = model(*[torch.randn_like(t) for t in M.example_inputs(model, 2)])
    (g.sum() + p.sum()).backward()
    for stage in (model.back_end.conv1, model.back_end.conv2, model.back_end.conv3):
        assert stage[0].weight.grad is not None


@pytest.mark.parametrize("deform", ["offset2d", "dcn", "none"])
def test_deform_variants(deform):
    torch.manual_seed(0)
    model = R.build_model(replace(R.COURSE, deform=deform))
    g, p = model(*M.example_inputs(model, 2))
    assert g.shape == (2, 7) and p.shape == (2, 7)
    (g.sum() + p.sum()).backward()
    first = model.back_end.conv1[0]
    kind = {"offset2d": M.ConvOffset2D, "dcn": M.DeformBlock, "none": torch.nn.Identity}[deform]
    assert isinstance(first, kind)


def test_unknown_deform_is_refused():
    with pytest.raises(ValueError, match="offset2d"):
        M.MGLN(7, deform="dcnv2")


def test_dcn_with_zero_offsets_is_a_plain_convolution():
    torch.manual_seed(0)
    block = M.DeformBlock(4, 5)
    x = torch.randn(1, 4, 6, 6)
    plain = torch.nn.functional.conv2d(x, block.conv.weight, block.conv.bias, padding=1)
    assert torch.allclose(block(x), plain, atol=1e-5)


def test_vgg_weights_copied_by_name():
    model = M.MGLN(7, ssm=(8, 8, "M", 16), face_size=16,
                   part_sizes={"eyes": (8, 16), "nose": (8, 4), "mouth": (4, 8)}, lstm_hidden=16)
    vgg = {"features.0.weight": torch.ones(8, 3, 3, 3), "features.0.bias": torch.ones(8),
           "classifier.0.weight": torch.ones(2, 2)}
    assert M.load_vgg16_features(model, vgg) == ["features.0.weight", "features.0.bias"]
    assert torch.equal(model.front_end.features[0].weight, torch.ones(8, 3, 3, 3))


# ----------------------------------------------------------------------------- recipe

def test_recipes():
    assert (R.FULL.lr, R.FULL.batch_size, R.FULL.epochs, R.FULL.lr_step_epoch, R.FULL.mixup_alpha) == (1e-4, 64, 150, 80, 1.0)
    assert sum(p.numel() for p in R.build_model(R.FULL).parameters()) == 19_988_145
    assert R.COURSE.name != R.FULL.name and R.SMOKE.epochs < R.COURSE.epochs
    from fer_utils import recipes
    assert recipes.get("mgln") is R


def test_loss_step_mixes_only_the_face():
    torch.manual_seed(0)
    rec = R.SMOKE
    model = R.build_model(rec)
    data = S.to_tensors(S.synth_sequences(1, face_size=rec.input_size, part_sizes=rec.part_size_dict), rec.normalize)
    loss, logs = R.loss_step(model, data, rec)
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert loss.item() == pytest.approx(logs["loss_global"] + logs["loss_part"], rel=1e-5)
    plain = replace(rec, mixup_alpha=0.0)
    g, p = model(*S.model_inputs(data))
    ce = torch.nn.functional.cross_entropy
    expected = ce(g, data["label"]) + ce(p, data["label"])
    assert R.loss_step(model, data, plain)[0].item() == pytest.approx(expected.item(), rel=1e-5)
    out = R.predict(model, data)
    assert torch.allclose(out["fused"], out["global"] + out["part"])


# ----------------------------------------------------------------------------- data

def test_frame_indices():
    assert S.frame_indices(1) == (0, 0, 0)
    assert S.frame_indices(10) == (0, 5, 9)
    with pytest.raises(ValueError):
        S.frame_indices(0)


def test_synth_sequences_shapes_and_onset_to_peak():
    d = S.synth_sequences(2, seed=0, num_classes=7)
    assert d["face"].shape == (14, 3, 128, 128, 3) and d["face"].dtype == np.uint8
    assert d["eyes"].shape == (14, 3, 48, 128, 3)
    assert d["nose"].shape == (14, 3, 64, 32, 3) and d["mouth"].shape == (14, 3, 32, 64, 3)
    assert d["label"].tolist() == list(range(7)) * 2 and d["identity"].tolist() == [0] * 7 + [1] * 7
    # onsets are neutral: the onset mouths of one identity differ far less across classes than the peaks
    mouths = d["mouth"][:7].astype(float)
    assert mouths[:, 0].std(0).mean() < mouths[:, 2].std(0).mean()


def test_three_frame_clip_is_first_middle_last_of_a_longer_one():
    pool = S.SynthFaces(0, seed=0, n_identities=2, with_masks=False)
    short = pool.sequence(1, 4, length=3)
    long = pool.sequence(1, 4, length=9)
    assert len(short) == 3 and len(long) == 9
    for a, i in zip(short, S.frame_indices(9), strict=True):
        assert np.array_equal(a["image"], long[i]["image"])


def test_model_inputs_peak_slots():
    d = S.to_tensors(S.synth_sequences(1, face_size=48, part_sizes=R.COURSE.part_size_dict), "imagenet")
    face, eyes, noses, mouths = S.model_inputs(d, "peak")
    assert face.shape == (7, 3, 48, 48)
    assert torch.equal(eyes[:, 0], d["eyes"][:, 2]) and torch.equal(mouths[:, 1], d["mouth"][:, 2])
    real = S.model_inputs(d, "real")
    assert torch.equal(real[1], d["eyes"]) and torch.equal(real[0], d["face"][:, 2])
    with pytest.raises(ValueError, match="slots"):
        S.model_inputs(d, "onset")


def test_from_samples_reads_a_ckplus_tree(tmp_path):
    from fer_utils.data import formats
    pool = S.SynthFaces(0, seed=0, n_identities=2, with_masks=False)
    clips = [dict(f, sequence=k) for k, (ident, label) in enumerate([(0, 4), (1, 6)])
             for f in pool.sequence(ident, label, length=5)]
    formats.write_ckplus(clips, tmp_path, verbose=False)
    d = S.from_samples(formats.read_ckplus(tmp_path, verbose=False), face_size=48,
                       part_sizes=R.COURSE.part_size_dict, verbose=False)
    assert d["face"].shape == (2, 3, 48, 48, 3)
    assert sorted(d["label"].tolist()) == [4, 6]
    assert sorted(d["identity"].tolist()) == [0, 1]


def test_part_crops_rectangular_sizes():
    from fer_utils import faces
    item = S.SynthFaces(1, seed=0, with_masks=False)[0]
    crops = faces.part_crops(item["image"], item["landmarks"], {"eyes": (48, 128), "nose": (64, 32), "mouth": (32, 64)})
    assert crops["eyes"].shape[:2] == (48, 128) and crops["nose"].shape[:2] == (64, 32)
    assert faces.part_crops(item["image"], item["landmarks"], 32)["mouth"].shape[:2] == (32, 32)


def test_identity_folds_are_disjoint_and_cover_every_sequence():
    identities = np.repeat(np.arange(7), 3)
    folds = S.identity_folds(identities, 3)
    assert len(folds) == 3
    tests = np.concatenate([te for _, te in folds])
    assert sorted(tests.tolist()) == list(range(len(identities)))
    for tr, te in folds:
        assert not set(identities[tr]) & set(identities[te])
    with pytest.raises(ValueError, match="identities"):
        S.identity_folds(np.array([0, 0, 1]), 3)


def test_still_faces_for_pretraining():
    faces, labels = S.still_faces(5, seed=1000, face_size=32, render_size=64)
    assert faces.shape == (5, 32, 32, 3) and faces.dtype == np.uint8
    assert labels.shape == (5,) and set(labels.tolist()) <= set(range(7))


def test_pretrain_touches_only_the_ssm_and_fit_records_every_epoch():
    rec = replace(R.SMOKE, epochs=2, lr_step_epoch=1, pretrain_epochs=1, pretrain_batch=4)
    torch.manual_seed(0)
    model = R.build_model(rec)
    back = {k: v.clone() for k, v in model.back_end.state_dict().items()}
    ssm = {k: v.clone() for k, v in model.front_end.state_dict().items()}
    faces = torch.randn(8, 3, rec.input_size, rec.input_size)
    losses = R.pretrain_ssm(model, faces, torch.arange(8) % 7, rec, progress=False)
    assert len(losses) == 1 and np.isfinite(losses[0])
    assert all(torch.equal(v, model.back_end.state_dict()[k]) for k, v in back.items())
    assert any(not torch.equal(v, model.front_end.state_dict()[k]) for k, v in ssm.items())
    data = S.to_tensors(S.synth_sequences(2, face_size=rec.input_size, part_sizes=rec.part_size_dict), rec.normalize)
    val = S.subset(data, range(7, 14))
    history = R.fit(model, S.subset(data, range(7)), val, replace(rec, batch_size=4), progress=False)
    assert all(len(history[k]) == 2 for k in ("loss_global", "loss_part", "global", "part", "fused"))
    # the last epoch's accuracies are those of the final model on the 7 validation sequences (real frames),
    # "fused" scoring the sum of the two logits (a bound 0 <= accuracy <= 1 could not fail)
    model.eval()
    with torch.no_grad():
        g, p = model(*S.model_inputs(val))
    for key, logits in (("global", g), ("part", p), ("fused", g + p)):
        assert history[key][-1] == pytest.approx(float((logits.argmax(1) == val["label"]).float().mean())), key


def test_vgg16_weights_are_read_from_a_file_never_downloaded(tmp_path, monkeypatch):
    from fer_utils.weights import load_vgg16_imagenet

    monkeypatch.delenv("FER_VGG16_WEIGHTS", raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(FileNotFoundError, match="FER_VGG16_WEIGHTS"):
        load_vgg16_imagenet()
    state = {"features.0.weight": torch.ones(64, 3, 3, 3), "features.0.bias": torch.zeros(64)}
    torch.save(state, tmp_path / "vgg16.pth")
    monkeypatch.setenv("FER_VGG16_WEIGHTS", str(tmp_path / "vgg16.pth"))
    model = M.MGLN(num_classes=7)
    copied = M.load_vgg16_features(model, load_vgg16_imagenet())
    assert copied == ["features.0.weight", "features.0.bias"]
    assert torch.equal(model.front_end.features[0].weight, state["features.0.weight"])
