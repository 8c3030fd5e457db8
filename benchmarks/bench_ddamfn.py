"""Training speed of the faithful DDAMFN on this CPU: images per second for forward + backward + Adam.

One step is ``zero_grad -> forward -> cross-entropy + 0.1 x attention loss -> backward -> Adam.step``
on a batch of 64 random 3x112x112 images (no data loading), ``DDAMFN(num_classes=7, num_heads=2)``
(4,187,421 parameters), torch with 2 threads. One warm-up step, then the median of ``--steps``
steps, the models interleaved step by step so that a noisy neighbour slows them alike. The authors'
implementation measured 7.5 images/s (median; best step 8.8) on this machine type under load (load
average about 2.5, see the shared reference notes), so the load average is recorded before and after
the run: compare numbers taken under similar load only. With 2 threads on 2 cores, one
busy neighbour process can slow a step several times over (the threads wait for each other).

Also timed: the same model in ``channels_last`` memory format (what the notebook trains with; same
numbers, different memory layout), and the scaled-down ``COURSE`` configuration the notebook trains
(same loss, its own 64x64 input).

Writes ``benchmarks/results/ddamfn.json``. Usage::

    python benchmarks/bench_ddamfn.py [--steps 7]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from fer_utils.losses import ddamfn_loss  # noqa: E402
from fer_utils.models import count_parameters  # noqa: E402
from fer_utils.models.ddamfn import COURSE, DDAMFN  # noqa: E402

BATCH, THREADS = 64, 2
AUTHORS_IMAGES_PER_S = 7.5  # authors' code, median, this machine type, load average ~2.5


def make_step(model: torch.nn.Module, size: int, channels_last: bool = False):
    images = torch.randn(BATCH, 3, size, size)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 7, (BATCH,))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    model.train()

    def step() -> float:
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        ddamfn_loss(model(images), labels).backward()
        optimizer.step()
        return time.perf_counter() - start

    return step


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=7, help="timed steps per model after one warm-up step (median)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "ddamfn.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    load_before = os.getloadavg()
    models = {"faithful": (DDAMFN(7, 2), 112, False), "faithful_channels_last": (DDAMFN(7, 2), 112, True),
              "course_channels_last": (DDAMFN(7, 2, config=COURSE), COURSE.input_size, True)}
    result = {
        "what": "DDAMFN training step (forward + backward + Adam, CE + 0.1 attention loss), batch 64, "
                "images per second",
        "torch": torch.__version__, "threads": THREADS, "batch": BATCH,
        "machine": {"platform": platform.platform(), "processor": platform.machine(),
                    "cpu_count": os.cpu_count(), "python": platform.python_version()},
        "load_average_before": [round(v, 2) for v in load_before],
        "authors_implementation_images_per_s": AUTHORS_IMAGES_PER_S,
        "models": {},
    }
    steps = {name: make_step(model, size, cl) for name, (model, size, cl) in models.items()}
    for step in steps.values():  # warm-up: allocator, kernels
        step()
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(args.steps):  # interleaved, so that a noisy neighbour slows every model alike
        for name, step in steps.items():
            times[name].append(step())
    for name, (model, size, channels_last) in models.items():
        median, best = statistics.median(times[name]), min(times[name])
        result["models"][name] = {
            "input": [3, size, size], "parameters": count_parameters(model), "channels_last": channels_last,
            "step_s": [round(t, 3) for t in times[name]], "median_step_s": round(median, 3),
            "images_per_s_median": round(BATCH / median, 2), "images_per_s_best": round(BATCH / best, 2),
        }
        print(f"{name:>22}: {BATCH / median:7.2f} images/s median ({BATCH / best:.2f} best), input {size}x{size}")
    result["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
    ours = result["models"]["faithful"]["images_per_s_median"]
    result["faithful_vs_authors"] = round(ours / AUTHORS_IMAGES_PER_S, 3)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"faithful / authors' 7.5 images/s: {result['faithful_vs_authors']:.2f} "
          f"(load average before {load_before[0]:.2f}, after {result['load_average_after'][0]:.2f})")
    print(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return result


if __name__ == "__main__":
    main()
