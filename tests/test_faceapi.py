"""face-api's expression network in PyTorch equals face-api's own code on TF.js.

(a) our probabilities and logits equal the committed goldens (``tests/data/faceapi_golden.json``, made by
``python scripts/faceapi_golden.py generate``) on real face crops; (b) the same live against Node.js +
tfjs when they are installed; (c) TF.js weight decoding and layouts on small made-up files; (d) bad
files give errors that name the file and the entry. Source: face-api.js by Vincent Mühler (MIT),
npm ``@vladmandic/face-api@1.7.15`` (MIT).
"""
from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from fer_utils import assets
from fer_utils.labels import CLASSES
from fer_utils.models import logits_of
from fer_utils.models.faceapi import (DENSE_BLOCKS, FACEAPI_CLASSES, FACEAPI_TO_CANONICAL, FaceExpressionNet,
                                      to_canonical_probs)
from fer_utils.weights import (FACEAPI_BIN, FACEAPI_MANIFEST, WeightFileError, decode_tfjs_weights,
                               faceapi_preprocess, load_faceapi, tf_resize_bilinear)

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = json.loads((ROOT / "tests" / "data" / "faceapi_golden.json").read_text())
TOLERANCE = 1e-4


def _driver():
    """``scripts/faceapi_golden.py`` as a module (crop loading and the Node run live there)."""
    spec = importlib.util.spec_from_file_location("faceapi_golden", ROOT / "scripts" / "faceapi_golden.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _need_assets() -> None:
    names = [FACEAPI_MANIFEST, FACEAPI_BIN, "grace_hopper.jpg", "astronaut.png", "lfw_subset.npy"]
    issues = [f"{n}: {assets.problem(n)}" for n in names if assets.problem(n)]
    if issues:
        pytest.skip("face-api assets not fetched (run `python -m fer_utils.assets fetch-all`): " + "; ".join(issues))


# ------------------------------------------------------------------------------------ (a) goldens
@pytest.mark.parametrize("index", range(len(GOLDEN["crops"])),
                         ids=[f"{c['photo']}-{'x'.join(map(str, c['box_xywh']))}" for c in GOLDEN["crops"]])
def test_probabilities_equal_the_tfjs_goldens(index):
    _need_assets()
    row, driver = GOLDEN["crops"][index], _driver()
    crop = driver.load_crop(row["photo"], tuple(row["box_xywh"]))
    assert driver.sha256_bytes(crop) == row["crop_sha256"], "the crop is not the one the goldens were made from"
    x = faceapi_preprocess(crop)
    assert driver.sha256_bytes(x) == row["input_sha256"], "preprocessing changed since the goldens were made"
    with torch.no_grad():
        logits = load_faceapi()(torch.from_numpy(x)[None]).double()[0]
    probs = torch.softmax(logits, 0).numpy()
    assert np.abs(logits.numpy() - np.asarray(row["logits"])).max() <= TOLERANCE
    assert np.abs(probs - np.asarray(row["probabilities"])).max() <= TOLERANCE
    assert np.abs(probs - np.asarray(row["probabilities_from_input"])).max() <= TOLERANCE


def test_goldens_describe_these_weights_and_classes():
    assert GOLDEN["classes"] == list(FACEAPI_CLASSES)
    for name, digest in GOLDEN["weights_sha256"].items():
        assert assets.ASSETS[name].sha256 == digest
    assert GOLDEN["tfjs_version"] and GOLDEN["faceapi_version"] == "1.7.15"
    tops = {(c["photo"], c["box_from"]): c["top"] for c in GOLDEN["crops"]}
    assert tops[("astronaut.png", "mtcnn")] == "happy" and tops[("grace_hopper.jpg", "mtcnn")] == "neutral"


# ------------------------------------------------------------------------------------ (b) live
def test_live_against_tfjs_when_node_is_installed():
    _need_assets()
    driver = _driver()
    reason = driver.node_missing()
    if reason:
        pytest.skip(f"no live TF.js comparison: {reason}")
    out, records = driver.compare(GOLDEN["crops"])
    assert out["tfjs_backend"] == "cpu"
    for rec, row in zip(records, GOLDEN["crops"]):
        assert rec["check_preprocess_max_abs"] == 0.0, rec["photo"]   # our preprocessing is face-api's, bit for bit
        assert rec["check_wiring_max_abs"] <= 1e-6, rec["photo"]      # the .mjs wiring is face-api's forward
        assert rec["check_torch_max_abs"] <= TOLERANCE and rec["check_torch_logits_max_abs"] <= TOLERANCE
        assert np.abs(np.subtract(rec["probabilities"], row["probabilities"])).max() <= 1e-6


# ------------------------------------------------------------------------------------ (c) decoding, layouts
def test_dequantisation_by_hand():
    specs = [
        {"name": "q8", "shape": [2, 3], "dtype": "float32", "quantization": {"dtype": "uint8", "scale": 0.5, "min": -1.0}},
        {"name": "raw", "shape": [2], "dtype": "float32"},
        {"name": "q16", "shape": [3], "dtype": "float32", "quantization": {"dtype": "uint16", "scale": 0.001, "min": 2.0}},
        {"name": "half", "shape": [2], "dtype": "float32", "quantization": {"dtype": "float16"}},
    ]
    data = (bytes([0, 1, 2, 3, 4, 255]) + np.array([1.5, -2.25], "<f4").tobytes()
            + np.array([0, 1000, 65535], "<u2").tobytes() + np.array([0.5, -3.0], "<f2").tobytes())
    out = decode_tfjs_weights(specs, data)
    assert list(out) == ["q8", "raw", "q16", "half"] and all(v.dtype == np.float32 for v in out.values())
    np.testing.assert_array_equal(out["q8"], [[-1.0, -0.5, 0.0], [0.5, 1.0, 126.5]])  # q * 0.5 - 1
    np.testing.assert_array_equal(out["raw"], [1.5, -2.25])
    np.testing.assert_array_equal(out["q16"], np.float32([2.0, 3.0, 2.0 + 65.535]))   # q * 0.001 + 2
    np.testing.assert_array_equal(out["half"], [0.5, -3.0])


def _tf_specs() -> list[dict]:
    """The 49 entries of face-api's manifest, written out by hand, all raw float32 (no quantisation)."""
    specs = []
    for i, (block, c_in, c_out) in enumerate(DENSE_BLOCKS):
        for j in range(4):
            key, cin = f"{block}/conv{j}", c_in if j == 0 else c_out
            if i == 0 and j == 0:
                specs.append({"name": f"{key}/filters", "shape": [3, 3, cin, c_out]})
            else:
                specs += [{"name": f"{key}/depthwise_filter", "shape": [3, 3, cin, 1]},
                          {"name": f"{key}/pointwise_filter", "shape": [1, 1, cin, c_out]}]
            specs.append({"name": f"{key}/bias", "shape": [c_out]})
    specs += [{"name": "fc/weights", "shape": [256, 7]}, {"name": "fc/bias", "shape": [7]}]
    return [dict(s, dtype="float32") for s in specs]


def _write(tmp_path: Path, specs: list[dict], data: bytes) -> tuple[Path, Path]:
    manifest, bin_file = tmp_path / "m-weights_manifest.json", tmp_path / "m.bin"
    manifest.write_text(json.dumps([{"paths": ["m.bin"], "weights": specs}]))
    bin_file.write_bytes(data)
    return manifest, bin_file


@pytest.fixture
def fake_files(tmp_path):
    """A made-up full manifest + .bin; every value is distinct (0, 1, 2, ... per entry, plus an offset)."""
    specs, chunks, tf = _tf_specs(), [], {}
    for k, spec in enumerate(specs):
        values = (np.arange(np.prod(spec["shape"])) + 1000 * k).astype("<f4").reshape(spec["shape"])
        tf[spec["name"]] = values
        chunks.append(values.tobytes())
    manifest, bin_file = _write(tmp_path, specs, b"".join(chunks))
    return manifest, bin_file, specs, tf


def test_tf_layouts_become_torch_layouts(fake_files):
    manifest, bin_file, _, tf = fake_files
    model = load_faceapi(manifest, bin_file)
    conv0 = model.dense0.conv0.conv.weight
    assert conv0[5, 2, 0, 1] == tf["dense0/conv0/filters"][0, 1, 2, 5]                     # (kh, kw, in, out)
    dw, pw = model.dense2.conv1.depthwise.weight, model.dense2.conv1.pointwise.weight
    assert dw[17, 0, 2, 0] == tf["dense2/conv1/depthwise_filter"][2, 0, 17, 0]              # (kh, kw, in, 1)
    assert pw[100, 7, 0, 0] == tf["dense2/conv1/pointwise_filter"][0, 0, 7, 100]            # (1, 1, in, out)
    assert torch.equal(model.dense3.conv3.pointwise.bias, torch.from_numpy(tf["dense3/conv3/bias"]))
    assert model.fc.weight[6, 200] == tf["fc/weights"][200, 6]                              # (in, out)
    assert not model.training


def test_same_padding_is_tensorflows():
    """Stride 2 on an even size pads only bottom/right: output (0, 0)'s top-left tap reads input (0, 0)
    (with PyTorch's symmetric padding=1 it would read the zero padding)."""
    layer = FaceExpressionNet().dense0.conv0
    with torch.no_grad():
        layer.conv.weight.zero_()
        layer.conv.bias.zero_()
        layer.conv.weight[0, 0, 0, 0] = 1.0  # top-left tap only
        x = torch.zeros(1, 3, 8, 8)
        x[0, 0, 0, 0] = 1.0
        assert layer(x)[0, 0, 0, 0] == 1.0 and layer(x).shape[-1] == 4


def test_output_contract_and_class_order():
    model = FaceExpressionNet().eval()
    with torch.no_grad():
        out = model(torch.zeros(2, 3, 112, 112))
    assert logits_of(out).shape == (2, 7)
    assert [CLASSES[i] for i in FACEAPI_TO_CANONICAL] == [
        "neutral", "happiness", "sadness", "anger", "fear", "disgust", "surprise"]
    probs = np.arange(7.0)  # face-api order: value j at index j
    assert list(to_canonical_probs(probs)) == [0, 3, 5, 4, 1, 2, 6]  # neutral, anger, disgust, fear, ...


def test_preprocess_pads_centred_and_resizes_like_tfjs():
    crop = np.full((3, 6, 3), 200, np.uint8)          # d = 3: 1 row before, round(1.5) = 2 rows after
    x = faceapi_preprocess(crop, size=6)
    zero, fill = (0 - 122.782) / 255, (200 - 122.782) / 255
    assert x.shape == (3, 6, 6) and x.dtype == np.float32
    np.testing.assert_allclose(x[0, :, 0], [zero, fill, fill, fill, zero, zero], rtol=1e-6)
    image = np.array([[0.0, 10.0], [20.0, 30.0]])[:, :, None]   # 2 -> 4: samples at 0, 0.5, 1, 1.5 (clamped)
    np.testing.assert_allclose(tf_resize_bilinear(image, 4)[:, :, 0],
                               [[0, 5, 10, 10], [10, 15, 20, 20], [20, 25, 30, 30], [20, 25, 30, 30]])


# ------------------------------------------------------------------------------------ (d) bad files
def test_truncated_bin_names_the_file_and_the_entry(fake_files, tmp_path):
    manifest, bin_file, _, _ = fake_files
    data = bin_file.read_bytes()
    short = tmp_path / "short.bin"
    short.write_bytes(data[:-100])  # the last entry, fc/bias (28 bytes), and part of fc/weights are cut
    with pytest.raises(WeightFileError, match=r"short\.bin: truncated: entry 'fc/weights'"):
        load_faceapi(manifest, short)
    long = tmp_path / "long.bin"
    long.write_bytes(data + b"\0" * 8)
    with pytest.raises(WeightFileError, match=r"long\.bin: 8 bytes left over"):
        load_faceapi(manifest, long)


def test_wrong_shape_or_missing_entry_names_the_manifest_and_the_entry(fake_files, tmp_path):
    _, bin_file, specs, _ = fake_files
    wrong = [dict(s) for s in specs]
    wrong[[s["name"] for s in wrong].index("dense2/conv1/pointwise_filter")]["shape"] = [1, 1, 128, 64]
    manifest, _ = _write(tmp_path, wrong, bin_file.read_bytes())
    with pytest.raises(WeightFileError, match=r"m-weights_manifest\.json: entry 'dense2/conv1/pointwise_filter' "
                                              r"has shape \[1, 1, 128, 64\], the network expects \[1, 1, 128, 128\]"):
        load_faceapi(manifest, bin_file)
    manifest, _ = _write(tmp_path, [s for s in specs if s["name"] != "fc/bias"], bin_file.read_bytes())
    with pytest.raises(WeightFileError, match=r"m-weights_manifest\.json: entry 'fc/bias' is missing"):
        load_faceapi(manifest, bin_file)


def test_truncated_real_bin(tmp_path):
    _need_assets()
    data = assets.fetch(FACEAPI_BIN).read_bytes()
    short = tmp_path / FACEAPI_BIN
    short.write_bytes(data[:200_000])
    with pytest.raises(WeightFileError, match=r"face_expression_model\.bin: truncated: entry 'dense3/conv\d/"):
        load_faceapi(assets.fetch(FACEAPI_MANIFEST), short)


# ------------------------------------------------------------------------------------ the asset's npm path
def test_fetching_from_npm_without_npm_says_what_is_needed(monkeypatch, tmp_path):
    monkeypatch.setattr(assets.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match=r"needs `npm`.*install Node\.js"):
        assets._download_npm("@vladmandic/face-api", "1.7.15", tmp_path)


def test_one_file_is_taken_out_of_an_npm_tarball_and_checked(tmp_path):
    payload = b"weights"
    tgz = tmp_path / "pkg-1.0.0.tgz"
    with tarfile.open(tgz, "w:gz") as t:
        info = tarfile.TarInfo("package/model/w.bin")
        info.size = len(payload)
        t.addfile(info, io.BytesIO(payload))
    good = assets.Asset("w.bin", "pkg", "1.0.0", "package/model/w.bin", hashlib.sha256(payload).hexdigest(),
                        len(payload), "MIT", "test", registry="npm")
    assets._extract(tgz, good, tmp_path / "w.bin")
    assert (tmp_path / "w.bin").read_bytes() == payload and good.source == "npm pkg@1.0.0"
    bad = assets.Asset(**{**good.__dict__, "sha256": "0" * 64})
    with pytest.raises(RuntimeError, match="refusing to store it"):
        assets._extract(tgz, bad, tmp_path / "other.bin")


def test_fetch_all_without_npm_skips_only_the_npm_files_and_says_so(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("FER_ASSETS_DIR", str(tmp_path))
    npm_assets = {name for name, a in assets.ASSETS.items() if a.registry == "npm"}
    pypi = [a for a in assets.ASSETS.values() if a.registry != "npm"]
    for a in pypi:   # pretend the wheels' files are already cached: only the npm branch runs
        (tmp_path / a.name).write_bytes(b"x")
    monkeypatch.setattr(assets, "problem", lambda name: None if name not in npm_assets else "missing")
    monkeypatch.setattr(assets.shutil, "which", lambda name: None)
    status = assets.fetch_all()
    assert {n for n, s in status.items() if s == "skipped"} == npm_assets
    assert all(status[a.name] == "ok" for a in pypi)
    assert "needs `npm`" in capsys.readouterr().out
