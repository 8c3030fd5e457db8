"""``fer-export``: a model ``fer-predict`` can run, written to ONNX and checked on ONNX Runtime.

::

    fer-export mini_xception --out mini_xception.onnx
    fer-export faceapi --out faceapi.onnx --int8          # also faceapi.int8.onnx (int8 weights)
    fer-export gap_cnn@course --out gap_cnn.onnx          # a zoo model; or a fer-train checkpoint path

``MODEL`` is resolved exactly as ``fer-predict --model`` resolves it
(:func:`fer_utils.cli.predict_models.load_predictor`: ``mini_xception``, ``faceapi``, a zoo ``NAME`` or
``NAME@PROFILE``, or a ``fer-train`` checkpoint); models that need more than one face crop (MGLN, RAN)
are refused there. The file holds the network's logits only, with a dynamic batch dimension
(:func:`fer_utils.export.export_onnx`). The class order is the model's own (``fer-predict`` maps it to the
canonical classes).

The check: a fixed batch of face crops made with the model's own crop (:data:`PHOTO_BOXES` on the fetched
photos when they are present, then crops of seeded noise frames) is classified by PyTorch and by ONNX
Runtime, and the largest absolute difference of their probabilities is printed with the file size;
above ``--tolerance`` (1e-4) the command fails. ``--int8`` also writes ``OUT`` with ``.int8.onnx``
(:func:`fer_utils.export.quantize_dynamic_int8`) and prints its size, its largest probability difference
and its top-1 agreement with PyTorch on the same batch.

:func:`onnx_predictor` turns a ``fer-predict`` :class:`~fer_utils.cli.predict_models.Predictor` into one
that runs on ONNX Runtime (``fer-predict --engine onnx``).
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from fer_utils import assets
from fer_utils import faces as F
from fer_utils.cli.predict_models import ModelSpecError, Predictor, load_predictor
from fer_utils.export import (DEFAULT_OPSET, MIN_OPSET, ExportError, OnnxModel, export_onnx, parity,
                              probabilities, quantize_dynamic_int8)

#: Fixed face boxes ``(x0, y0, x1, y1)`` on the fetched photos: MTCNN's and Haar's boxes
#: (tests/test_faces.py's references, facenet-pytorch 2.6.0 and OpenCV on the same files).
PHOTO_BOXES: dict[str, tuple[tuple[float, float, float, float], ...]] = {
    "astronaut.png": ((181, 62, 268, 172), (177, 66, 272, 161)),
    "grace_hopper.jpg": ((174, 120, 356, 340), (155, 105, 377, 327)),
}
TOLERANCE = 1e-4
NOISE_FRAME = (240, 240)   # seeded noise frames, the face box in their middle


def photo_crops(predictor: Predictor) -> list[tuple[str, tuple, np.ndarray]]:
    """``(photo, box, crop)`` for every box of :data:`PHOTO_BOXES` whose photo is fetched, in table order."""
    out = []
    for photo, boxes in PHOTO_BOXES.items():
        if assets.problem(photo):
            continue
        frame = assets.load_photo(photo)
        out += [(photo, box, predictor.crop(frame, F.Face(tuple(map(float, box)), 1.0))) for box in boxes]
    return out


def noise_crops(predictor: Predictor, n: int, seed: int = 0) -> list[np.ndarray]:
    """``n`` crops of seeded uniform-noise RGB frames (box: the middle half), through the model's crop."""
    rng = np.random.default_rng(seed)
    h, w = NOISE_FRAME
    box = (w / 4, h / 4, 3 * w / 4, 3 * h / 4)
    return [predictor.crop(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), F.Face(box, 1.0)) for _ in range(n)]


def fixed_batch(predictor: Predictor, n: int = 8) -> tuple[torch.Tensor, str]:
    """The check batch: photo crops (when fetched) then noise crops, ``n`` in all; and what it holds."""
    photos = [crop for _, _, crop in photo_crops(predictor)][:n]
    noise = noise_crops(predictor, n - len(photos))
    batch = torch.from_numpy(np.stack(photos + noise).astype(np.float32))
    return batch, f"{len(photos)} photo crops + {len(noise)} noise crops"


def onnx_predictor(predictor: Predictor, onnx_path: str | Path | None = None, int8: bool = False,
                   threads: int = 1) -> Predictor:
    """``predictor`` running on ONNX Runtime: its model exported (or ``onnx_path`` read), same crop and classes.

    The exported graph has the logits only, so a model's extra outputs (valence-arousal, AUs) are dropped:
    ``extra_columns`` is emptied and a note says so.
    """
    notes = list(predictor.notes)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(onnx_path) if onnx_path is not None else Path(tmp) / f"{predictor.name}.onnx"
        if onnx_path is None:
            export_onnx(predictor.model, torch.from_numpy(np.stack(noise_crops(predictor, 2))), path)
        if int8:
            path = quantize_dynamic_int8(path, Path(tmp) / f"{predictor.name}.int8.onnx")
        engine = OnnxModel(path, threads=threads)   # the session holds the graph; the files may go
    if predictor.extra_columns:
        notes.append("ONNX engine: logits only, the columns " + ", ".join(predictor.extra_columns) + " are dropped")
    how = "ONNX Runtime int8 (dynamic quantisation)" if int8 else "ONNX Runtime"
    return dataclasses.replace(predictor, model=engine, extra_columns=(), notes=notes,
                               description=f"{predictor.description} [{how}]")


def _int8_report(predictor: Predictor, out: Path, batch: torch.Tensor, size: int) -> list[str]:
    """Write the int8 copy next to ``out``; lines on its size, probability difference and top-1 agreement."""
    path = quantize_dynamic_int8(out, out.with_name(out.name.removesuffix(".onnx") + ".int8.onnx"))
    reference = probabilities(predictor.model, [batch])
    got = torch.softmax(OnnxModel(path)(batch).float(), dim=-1).double().numpy()
    agree = int((got.argmax(1) == reference.argmax(1)).sum())
    q_size = path.stat().st_size
    return [f"int8: {path} ({q_size:,} bytes, {q_size / size:.2f} x the float file)",
            f"  max |p_torch - p_int8| = {np.abs(got - reference).max():.3g}, "
            f"top-1 agreement {agree}/{len(batch)}"]


def export(args: argparse.Namespace) -> dict:
    """Run fer-export with parsed arguments; print the report; return its numbers."""
    predictor = load_predictor(args.model)
    batch, what = fixed_batch(predictor, args.batch)
    exported = export_onnx(predictor.model, batch[:1], args.out, opset=args.opset, exporter=args.exporter)
    diff = parity(predictor.model, OnnxModel(exported.path, threads=args.threads), batch)
    size = exported.size_bytes
    lines = [f"fer-export: {predictor.description}",
             f"wrote {exported.path} ({size:,} bytes = {size / 1e6:.2f} MB; {exported.exporter} exporter, "
             f"opset {exported.opset}{'' if exported.opset == args.opset else f' (asked for {args.opset})'}, "
             f"dynamic batch, inputs {', '.join(exported.input_names)}, output logits)",
             f"parity on a fixed batch of {len(batch)} ({what}): max |p_torch - p_onnx| = {diff:.2e} "
             f"(tolerance {args.tolerance:g})"]
    if exported.tracer_warnings:
        lines.append(f"{len(exported.tracer_warnings)} tracer warning(s), values frozen into the graph (the batch "
                     f"is dynamic, so the parity above is the check), e.g. {exported.tracer_warnings[0][:120]}")
    if args.int8:
        lines += _int8_report(predictor, exported.path, batch, size)
    print("\n".join(lines))
    if diff > args.tolerance:
        raise ExportError(f"{exported.path}: ONNX Runtime differs from PyTorch by {diff:.2e} > {args.tolerance:g}")
    return {"path": str(exported.path), "size_bytes": size, "parity": diff, "exporter": exported.exporter}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fer-export", description=__doc__.split("\n")[0].replace("``", ""),
                                epilog=__doc__.split("::", 1)[1].split("``MODEL``")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", metavar="MODEL", help="mini_xception, faceapi, a zoo model NAME or NAME@PROFILE, "
                   "or a fer-train checkpoint path (as fer-predict --model)")
    p.add_argument("--out", required=True, help="the .onnx file to write")
    p.add_argument("--int8", action="store_true", help="also write OUT with .int8.onnx: int8 dynamic quantisation")
    p.add_argument("--batch", type=int, default=8, help="size of the fixed check batch (default 8)")
    p.add_argument("--tolerance", type=float, default=TOLERANCE,
                   help="largest probability difference accepted (default 1e-4)")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    p.add_argument("--exporter", default="auto", choices=["auto", "torchscript", "dynamo"],
                   help="torch.onnx exporter: auto (TorchScript, then torch.export if it fails)")
    p.add_argument("--threads", type=int, default=1, help="torch and ONNX Runtime threads (default 1)")
    return p


def main(argv: Sequence[str] | None = None) -> dict:
    """Parse ``argv`` and export; torch's thread count is restored afterwards."""
    args = parser().parse_args(argv)
    if args.threads < 1 or args.batch < 1:
        raise ExportError(f"--threads {args.threads} / --batch {args.batch}: expected 1 or more")
    if not (math.isfinite(args.tolerance) and args.tolerance > 0):
        raise ExportError(f"--tolerance {args.tolerance}: expected a probability difference > 0 (default 1e-4)")
    import onnx

    if not MIN_OPSET <= args.opset <= onnx.defs.onnx_opset_version():
        raise ExportError(f"--opset {args.opset}: expected {MIN_OPSET} to {onnx.defs.onnx_opset_version()} "
                          f"(this onnx package's newest; default {DEFAULT_OPSET})")
    if Path(args.out).suffix.lower() != ".onnx":
        raise ExportError(f"--out {args.out}: expected a file name ending in .onnx")
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return export(args)
    finally:
        torch.set_num_threads(threads)


def cli() -> None:
    """The ``fer-export`` console script: a model that cannot be loaded or exported exits with status 2."""
    from fer_utils.assets import AssetError
    from fer_utils.cli.checkpoint import CheckpointError
    from fer_utils.zoo import ZooError

    try:
        main()
    except (ModelSpecError, ExportError, AssetError, ZooError, CheckpointError) as err:
        print(f"fer-export: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    cli()
