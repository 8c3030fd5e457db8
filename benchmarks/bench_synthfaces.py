"""How fast SynthFaces renders, against how fast the same faces decode from JPEG files.

One core only (OpenCV, torch and BLAS threads set to 1). For ``lab`` and ``wild``:

1. render ``n`` faces at ``size`` x ``size`` RGB with masks, and again without;
2. save the same faces as JPEG files (quality 95) in a temporary folder;
3. decode them the way an image-folder dataset does (PIL ``Image.open`` +
   ``convert("RGB")`` + ``np.asarray``).

Each timing is the best of ``--repeats`` passes (the machine may be shared).
Figures go to ``benchmarks/results/synthfaces.json``; ``ratio_generate_to_decode``
above 1 means generating is faster than reading a real dataset from disk.

``--access`` measures instead what rendering each split once saves in a notebook: a dataset item is
rendered on every ``ds[i]``, so ``{k: ds[i][k] for k in keys}`` renders each face once per key (what
notebook 00's distribution cell did with five keys), against ``item = ds[i]`` once per face. Figures go
to ``benchmarks/results/synthfaces_access.json``.

    python benchmarks/bench_synthfaces.py [--n 3000] [--size 112] [--repeats 3]
    python benchmarks/bench_synthfaces.py --access [--n 500]
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import PIL  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from fer_utils.data import SynthFaces  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "synthfaces.json"


def best_rate(work, n: int, repeats: int) -> float:
    """Items per second of ``work()`` (which handles ``n`` items), best of ``repeats``."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - start)
    return n / best


def render_all(ds: SynthFaces) -> list[np.ndarray]:
    return [ds[i]["image"] for i in range(len(ds))]


def decode_all(paths: list[Path]) -> list[np.ndarray]:
    return [np.asarray(Image.open(p).convert("RGB")) for p in paths]


def bench(difficulty: str, n: int, size: int, repeats: int, folder: Path) -> dict[str, float]:
    with_masks = SynthFaces(n, seed=0, difficulty=difficulty, size=size, with_masks=True)
    without = SynthFaces(n, seed=0, difficulty=difficulty, size=size, with_masks=False)
    render_all(SynthFaces(50, seed=1, difficulty=difficulty, size=size))  # warm-up (caches, imports)
    gen = best_rate(lambda: render_all(with_masks), n, repeats)
    gen_nomask = best_rate(lambda: render_all(without), n, repeats)
    paths = []
    for i, image in enumerate(render_all(without)):
        path = folder / f"{difficulty}_{i:05d}.jpg"
        Image.fromarray(image).save(path, quality=95)
        paths.append(path)
    decode = best_rate(lambda: decode_all(paths), n, repeats)
    jpeg_kb = sum(p.stat().st_size for p in paths) / n / 1024
    return {
        "generate_faces_per_s": round(gen, 1),
        "generate_no_masks_faces_per_s": round(gen_nomask, 1),
        "jpeg_decode_faces_per_s": round(decode, 1),
        "ratio_generate_to_decode": round(gen / decode, 3),
        "ratio_generate_no_masks_to_decode": round(gen_nomask / decode, 3),
        "mask_cost_percent": round(100 * (gen_nomask / gen - 1), 1),
        "jpeg_mean_kib": round(jpeg_kb, 2),
    }


KEYS = ("label", "valence", "arousal", "intensity", "identity")


def bench_access(n: int, repeats: int) -> dict[str, float]:
    """Faces per second at 48x48 grey (notebook 00's statistics cell): one render per key vs one per face."""
    ds = SynthFaces(n, seed=0, difficulty="wild", size=48, grayscale=True, with_masks=False)
    per_key = best_rate(lambda: [{k: ds[i][k] for k in KEYS} for i in range(n)], n, repeats)
    once = best_rate(lambda: [{k: item[k] for k in KEYS} for item in (ds[i] for i in range(n))], n, repeats)
    return {"n": n, "keys": len(KEYS), "render_per_key_faces_per_s": round(per_key, 1),
            "render_once_faces_per_s": round(once, 1), "speed_up": round(once / per_key, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000, help="faces per difficulty")
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--access", action="store_true", help="measure rendering once vs once per key")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    if args.access:
        out = args.out or RESULTS.with_name("synthfaces_access.json")
        result = {**bench_access(args.n, args.repeats), "threads": 1, "platform": platform.platform()}
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result), f"\nwrote {out}")
        return
    args.out = args.out or RESULTS
    results = {
        "n": args.n, "size": args.size, "repeats": args.repeats, "threads": 1, "jpeg_quality": 95,
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count(), "python": platform.python_version(),
                    "numpy": np.__version__, "opencv": cv2.__version__, "pillow": PIL.__version__},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for difficulty in ("lab", "wild"):
            results[difficulty] = bench(difficulty, args.n, args.size, args.repeats, Path(tmp))
            print(difficulty, json.dumps(results[difficulty]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
