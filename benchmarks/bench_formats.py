"""Benchmark: parse a full-size FER2013 csv, vectorised vs row by row.

Exports 35,887 random 48x48 images (the real split sizes 28,709 / 3,589 / 3,589)
with ``write_fer2013``, then times ``read_fer2013`` (vectorised, best of
``--repeats``) and ``read_fer2013_rowwise`` (csv module + Python loop, once) on
that same file in the same run, checks both give identical arrays, and writes
``benchmarks/results/formats.json``. Wall and CPU (``time.process_time``) seconds are
both recorded: on a loaded machine the CPU time is close to a quiet machine's wall time.

    python benchmarks/bench_formats.py [--rows 35887] [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from fer_utils.data.formats import read_fer2013, read_fer2013_rowwise, write_fer2013

RESULTS = Path(__file__).resolve().parent / "results" / "formats.json"
TARGET_SECONDS = 2.0
TARGET_SPEEDUP = 5.0


def make_samples(n: int, seed: int = 0) -> list[dict]:
    """n random FER2013-like samples with the real Training/PublicTest/PrivateTest proportions."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 48, 48), dtype=np.uint8)
    labels = rng.integers(0, 7, n)
    n_test = round(n * 3589 / 35887)
    splits = ["train"] * (n - 2 * n_test) + ["val"] * n_test + ["test"] * n_test
    return [{"image": images[i], "label": int(labels[i]), "split": splits[i]} for i in range(n)]


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=35887)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    load_before = os.getloadavg()[0]  # other work on the machine slows both timings
    samples = make_samples(args.rows)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        path = write_fer2013(samples, Path(tmp) / "fer2013.csv")
        write_s = time.perf_counter() - t0
        size_mb = path.stat().st_size / 1e6

        fast_times, fast_cpu = [], []
        for _ in range(args.repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            fast = read_fer2013(path, verbose=False)
            fast_times.append(time.perf_counter() - t0)
            fast_cpu.append(time.process_time() - c0)
        t0, c0 = time.perf_counter(), time.process_time()
        slow = read_fer2013_rowwise(path)
        slow_s, slow_cpu = time.perf_counter() - t0, time.process_time() - c0

    identical = bool(np.array_equal(fast.images, slow.images) and np.array_equal(fast.labels, slow.labels)
                     and list(fast.usage) == list(slow.usage))
    expected = np.stack([s["image"] for s in samples])
    roundtrip = bool(np.array_equal(fast.images, expected))
    fast_s = min(fast_times)
    result = {
        "benchmark": "read FER2013 csv: vectorised read_fer2013 vs row-by-row read_fer2013_rowwise",
        "rows": len(fast), "file_mb": round(size_mb, 1),
        "write_fer2013_seconds": round(write_s, 3),
        "vectorised_seconds": round(fast_s, 3),
        "vectorised_seconds_all_repeats": [round(t, 3) for t in fast_times],
        "rowwise_seconds": round(slow_s, 3),
        "vectorised_cpu_seconds": round(min(fast_cpu), 3), "rowwise_cpu_seconds": round(slow_cpu, 3),
        "speedup": round(slow_s / fast_s, 2),
        "identical_outputs": identical, "roundtrip_equal": roundtrip,
        "target_seconds": TARGET_SECONDS, "target_speedup": TARGET_SPEEDUP,
        "meets_targets": bool(fast_s < TARGET_SECONDS and slow_s / fast_s >= TARGET_SPEEDUP),
        "load_average_1min_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "cpu_count": os.cpu_count(),
        "machine": {"python": platform.python_version(), "numpy": np.__version__,
                    "processor": platform.processor() or platform.machine()},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
