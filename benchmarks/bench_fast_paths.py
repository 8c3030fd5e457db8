"""fer-train's fast paths on DDAMFN's faithful training step: eager, channels_last, torch.compile.

One step is what ``fer-train ddamfn`` runs per batch: ``recipes.ddamfn.loss_step`` (cross-entropy +
0.1 x attention loss) -> backward -> the FULL recipe's optimiser step (SGD, momentum 0.9, weight
decay 1e-4), on ``recipes.ddamfn.build_model(FULL)`` (the authors' network, 4,187,421 parameters)
with a batch of 16 random 3x112x112 images, torch with 2 threads, float32 throughout.

Arms, each from the same initial weights on the same batches:

- ``eager``: the default (contiguous) memory format;
- ``channels_last``: model and inputs in ``torch.channels_last`` (fer-train's default);
- ``compiled``: channels_last + ``torch.compile`` (fer-train ``--compile``); its compile time
  (the first steps) is recorded apart. When the compile does not finish within
  ``--compile-budget`` seconds the arm is recorded as not measured.

The timed steps are interleaved arm by arm, so that a noisy neighbour slows every arm alike; the
load average is recorded before and after (2 cores shared with other processes: compare numbers
taken under similar load only). The losses of the fast paths are compared with eager step by step
(same weights, same batches): they must agree within float32 tolerance.

Writes ``benchmarks/results/fast_paths.json``. Usage::

    python benchmarks/bench_fast_paths.py [--steps 7] [--compile-budget 900] [--no-compile]
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import signal
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from fer_utils.models import count_parameters  # noqa: E402
from fer_utils.recipes import ddamfn  # noqa: E402

BATCH, THREADS = 16, 2
#: float32 agreement asked of the fast paths' losses (relative to eager's, per step).
RTOL = 1e-4


class CompileTimeout(Exception):
    pass


def make_arm(base: torch.nn.Module, channels_last: bool, compiled: bool):
    """(step function, model) for one arm; every arm starts from ``base``'s weights."""
    model = copy.deepcopy(base).train()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    optimizer, _ = ddamfn.make_optimizer(model, ddamfn.FULL)
    net = torch.compile(model) if compiled else model

    def step(images: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
        images = images.contiguous(memory_format=fmt)
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss, _ = ddamfn.loss_step(net, (images, labels), ddamfn.FULL)
        loss.backward()
        optimizer.step()
        return time.perf_counter() - start, float(loss.detach())

    return step


def compile_within(step, batches, budget: int) -> float | None:
    """Run the compiled arm's first two steps (the compile); seconds, or None past ``budget``."""
    def alarm(*_):
        raise CompileTimeout

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(budget)
    start = time.perf_counter()
    try:
        for images, labels in batches[:2]:
            step(images, labels)
        return time.perf_counter() - start
    except Exception as err:  # dynamo wraps the alarm's exception in its own error
        if not (isinstance(err, CompileTimeout) or isinstance(err.__cause__, CompileTimeout)
                or "CompileTimeout" in str(err)):
            raise
        torch._dynamo.reset()
        return None
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def summary(times: list[float], losses: list[float], eager: list[float] | None) -> dict:
    median = statistics.median(times)
    out = {"step_s": [round(t, 3) for t in times], "median_step_s": round(median, 4),
           "steps_per_s": round(1 / median, 4), "images_per_s": round(BATCH / median, 2),
           "losses": losses}
    if eager is not None:
        rel = max(abs(a - b) / abs(b) for a, b in zip(losses, eager))
        out["max_rel_loss_diff_vs_eager"] = rel
        out["loss_equal_to_eager"] = rel <= RTOL
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=7, help="timed steps per arm after the warm-up (median)")
    parser.add_argument("--compile-budget", type=int, default=900, help="seconds allowed for torch.compile")
    parser.add_argument("--no-compile", action="store_true", help="record the compiled arm as not measured")
    parser.add_argument("--no-compile-reason", default="--no-compile", help="why, for the JSON (with --no-compile)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "fast_paths.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    load_before = os.getloadavg()
    base = ddamfn.build_model(ddamfn.FULL)
    size = ddamfn.FULL.input_size
    batches = [(torch.randn(BATCH, 3, size, size), torch.randint(0, 7, (BATCH,))) for _ in range(args.steps + 2)]
    arms = {"eager": make_arm(base, False, False), "channels_last": make_arm(base, True, False)}
    result = {
        "what": "DDAMFN faithful training step (recipes.ddamfn FULL: loss_step + backward + SGD step), "
                f"batch {BATCH}, float32, steps per second",
        "torch": torch.__version__, "threads": THREADS, "batch": BATCH, "input": [3, size, size],
        "parameters": count_parameters(base), "loss_rtol": RTOL,
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                    "python": platform.python_version()},
        "load_average_before": [round(v, 2) for v in load_before], "arms": {},
    }
    compile_s = None
    if not args.no_compile:
        compiled = make_arm(base, True, True)
        compile_s = compile_within(compiled, batches, args.compile_budget)
        if compile_s is not None:
            arms["compiled"] = compiled
    result["compile_s"] = round(compile_s, 1) if compile_s is not None else None
    result["compile_note"] = ("measured: the first two compiled steps" if compile_s is not None else
                              "not measured" + (f" ({args.no_compile_reason})" if args.no_compile else
                                                f": the compile did not finish within {args.compile_budget} s"))
    for name, step in arms.items():  # warm-up (the compiled arm already ran its two steps)
        if name != "compiled":
            for images, labels in batches[:2]:
                step(images, labels)
    times = {name: [] for name in arms}
    losses = {name: [] for name in arms}
    for images, labels in batches[2:]:  # interleaved
        for name, step in arms.items():
            t, loss = step(images, labels)
            times[name].append(t)
            losses[name].append(loss)
    for name in arms:
        result["arms"][name] = summary(times[name], losses[name], None if name == "eager" else losses["eager"])
    if "compiled" not in arms:
        result["arms"]["compiled"] = {"not_measured": result["compile_note"]}
    eager_rate = result["arms"]["eager"]["steps_per_s"]
    result["speedup_vs_eager"] = {name: round(r["steps_per_s"] / eager_rate, 3)
                                  for name, r in result["arms"].items() if "steps_per_s" in r}
    result["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    for name, r in result["arms"].items():
        print(f"{name:>14}: " + (f"{r['steps_per_s']:.3f} steps/s ({r['images_per_s']} images/s), "
                                 f"x{result['speedup_vs_eager'][name]:.2f} eager"
                                 if "steps_per_s" in r else r["not_measured"]))
    print(f"compile: {result['compile_note']} ({result['compile_s']} s); load average before "
          f"{load_before[0]:.2f}, after {result['load_average_after'][0]:.2f}")
    print(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return result


if __name__ == "__main__":
    main()
