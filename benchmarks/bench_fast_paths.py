"""fer-train's fast paths on DDAMFN's faithful training step: eager, channels_last, torch.compile.

One step is what ``fer-train ddamfn`` runs per batch: ``recipes.ddamfn.loss_step`` (cross-entropy +
0.1 x attention loss) -> backward -> the FULL recipe's optimiser step (SGD, momentum 0.9, weight
decay 1e-4), on ``recipes.ddamfn.build_model(FULL)`` (the authors' network, 4,187,421 parameters)
with a batch of 16 random 3x112x112 images, float32 throughout, ``--threads`` torch threads (1 by
default: the machine is shared).

Arms, each a copy of the same initial weights:

- ``eager``: the default (contiguous) memory format;
- ``channels_last``: model and inputs in ``torch.channels_last`` (fer-train's default);
- ``compiled``: channels_last + ``torch.compile`` (fer-train ``--compile``); its first step (the
  compile) is timed apart. When it does not finish within ``--compile-budget`` seconds a watchdog
  writes the JSON with the compiled arm "not measured" and ends the process.

Same math (the criterion): every arm's FIRST step starts from the same weights on the same batch;
its loss must equal eager's within ``LOSS_RTOL`` / ``LOSS_ATOL``, and its gradients must be no
further from eager float64's (same weights, same batch) than ``GRAD_FACTOR`` x eager float32's own
distance to them (relative L2 norm over all parameters): float32 alone already moves this deep
network's gradients by about 1e-3 (BatchNorm's backward subtracts nearly equal sums), so that
distance, not a guessed constant, is the float32 tolerance. The direct differences to eager and
of the updated parameters are reported too. The losses along the following steps (each arm on its own SGD
trajectory) are reported as ``trajectory_drift`` for information only: float32 sums in another
order (channels_last kernels, fused compiled kernels) differ in the last bits, and SGD with
momentum carries and amplifies those differences from step to step.

Speed: after one warm-up step per arm, the timed steps run in rounds, one step per arm per round,
the arm order rotating each round, so that a noisy neighbour slows every arm alike; steps per
second are 1 / the median step time, in wall time and in this process's CPU time (less sensitive
to other processes). The load average is recorded before and after. The goal (GOAL = 1.5x eager) is
judged on paired rounds: in each round, eager's step time over the arm's (the two steps ran next to
each other, under the same load); the median of these ratios and a seeded 95% bootstrap interval of
it are recorded, and the goal is "met" only when the whole interval is at or above GOAL ("not
resolved" when it spans GOAL).

Writes ``benchmarks/results/fast_paths.json``. Usage::

    python benchmarks/bench_fast_paths.py [--steps 30] [--threads 1] [--compile-budget 1200] [--no-compile]
    python benchmarks/bench_fast_paths.py --quick      # 3 timed steps, no compile, writes nothing
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from fer_utils.models import count_parameters  # noqa: E402
from fer_utils.recipes import ddamfn  # noqa: E402

BATCH = 16
#: float32 agreement asked of a fast path's first step against eager's (same weights, same batch).
LOSS_RTOL, LOSS_ATOL = 1e-4, 1e-5
#: A fast path's gradients may be at most GRAD_FACTOR x as far from float64's as eager float32's are
#: (||g - g64||_2 / ||g64||_2 over all parameters): float32's own error is the tolerance.
GRAD_FACTOR = 2.0
#: The speed goal: steps per second of the best fast path over eager float32's.
GOAL = 1.5
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "fast_paths.json"


@dataclass
class Arm:
    model: torch.nn.Module
    net: torch.nn.Module
    optimizer: torch.optim.Optimizer
    fmt: torch.memory_format


def make_arm(base: torch.nn.Module, recipe, channels_last: bool, compiled: bool) -> Arm:
    """A copy of ``base`` in the arm's memory format, its own optimiser, compiled or not."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = copy.deepcopy(base).train().to(memory_format=fmt)
    optimizer, _ = ddamfn.make_optimizer(model, recipe)
    return Arm(model, torch.compile(model) if compiled else model, optimizer, fmt)


def train_step(arm: Arm, images: torch.Tensor, labels: torch.Tensor, recipe) -> dict:
    """One fer-train step (zero_grad, loss_step, backward, optimiser step): wall and CPU seconds, loss."""
    images = images.contiguous(memory_format=arm.fmt)
    wall, cpu = time.perf_counter(), time.process_time()
    arm.optimizer.zero_grad(set_to_none=True)
    loss, _ = ddamfn.loss_step(arm.net, (images, labels), recipe)
    loss.backward()
    arm.optimizer.step()
    return {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu, "loss": float(loss.detach())}


def first_step(arm: Arm, images: torch.Tensor, labels: torch.Tensor, recipe) -> dict:
    """Run the arm's first step; its timing, loss, gradients and updated parameters (copies)."""
    before = {n: p.detach().clone() for n, p in arm.model.named_parameters()}
    out = train_step(arm, images, labels, recipe)
    out["grads"] = {n: p.grad.detach().clone() for n, p in arm.model.named_parameters() if p.grad is not None}
    out["params"] = {n: p.detach().clone() for n, p in arm.model.named_parameters()}
    out["update"] = {n: out["params"][n] - before[n] for n in before}
    return out


def _grad_diff(a: dict, b: dict) -> tuple[float, dict]:
    """||a - b||_2 / ||b||_2 over all gradients, and the worst such ratio among the tensors that carry
    at least 1e-3 of the largest tensor's gradient norm (a conv bias before BatchNorm has an exactly-zero
    gradient in exact arithmetic: its float32 value is rounding noise, and its ratio means nothing)."""
    names = sorted(b)
    if sorted(a) != names:
        raise ValueError("the arms' models have different parameters with gradients")
    norms = {n: float(b[n].norm()) for n in names}
    diffs = {n: float((a[n] - b[n]).norm()) for n in names}
    total = (sum(d * d for d in diffs.values()) / sum(v * v for v in norms.values())) ** 0.5
    large = [n for n in names if norms[n] >= 1e-3 * max(norms.values())]
    worst = max(large, key=lambda n: diffs[n] / norms[n])
    return total, {"name": worst, "rel_l2_diff": diffs[worst] / norms[worst]}


def compare_first_step(arm: dict, eager: dict, exact: dict) -> dict:
    """One arm's first step against eager float32's and against the float64 reference ``exact``.

    Same math when the loss equals eager's within LOSS_RTOL / LOSS_ATOL and the gradients are no
    further from the float64 gradients than GRAD_FACTOR x eager float32's own distance to them."""
    loss_diff = abs(arm["loss"] - eager["loss"])
    grad_vs_eager, worst = _grad_diff(arm["grads"], eager["grads"])
    grad_vs_exact, _ = _grad_diff(arm["grads"], exact["grads"])
    eager_vs_exact, _ = _grad_diff(eager["grads"], exact["grads"])
    upd_diff = max(float((arm["update"][n] - eager["update"][n]).abs().max()) for n in eager["update"])
    loss_ok = loss_diff <= LOSS_ATOL + LOSS_RTOL * abs(eager["loss"])
    grads_ok = grad_vs_exact <= GRAD_FACTOR * eager_vs_exact
    return {
        "loss": arm["loss"], "abs_loss_diff": loss_diff, "rel_loss_diff": loss_diff / abs(eager["loss"]),
        "grad_rel_l2_diff_vs_eager": grad_vs_eager, "worst_tensor_vs_eager": worst,
        "grad_rel_l2_diff_vs_float64": grad_vs_exact, "eager_float32_grad_rel_l2_diff_vs_float64": eager_vs_exact,
        "max_abs_update_diff_vs_eager": upd_diff,
        "max_abs_update": max(float(u.abs().max()) for u in eager["update"].values()),
        "loss_equal": loss_ok, "grads_equal": grads_ok, "same_math": loss_ok and grads_ok,
    }


def float64_reference(base: torch.nn.Module, recipe, images: torch.Tensor, labels: torch.Tensor) -> dict:
    """Eager float64's first step (loss, gradients, update), cast to float32 for the comparisons."""
    ref = first_step(make_arm(copy.deepcopy(base).double(), recipe, False, False), images.double(), labels, recipe)
    return {k: ({n: t.float() for n, t in v.items()} if isinstance(v, dict) else v) for k, v in ref.items()}


def timing_summary(steps: list[dict]) -> dict:
    wall = statistics.median(s["wall_s"] for s in steps)
    cpu = statistics.median(s["cpu_s"] for s in steps)
    return {"wall_step_s": [round(s["wall_s"], 3) for s in steps], "cpu_step_s": [round(s["cpu_s"], 3) for s in steps],
            "median_wall_step_s": round(wall, 4), "median_cpu_step_s": round(cpu, 4),
            "steps_per_s": round(1 / wall, 4), "images_per_s": round(BATCH / wall, 2),
            "cpu_steps_per_s": round(1 / cpu, 4)}


def paired_speedup(eager: list[dict], arm: list[dict], resamples: int = 2000) -> dict:
    """Round by round, r_i = eager's step time / the arm's (adjacent steps: the same load on the machine).

    Returns the median of the r_i and a 95% bootstrap interval of that median (the r_i resampled with
    replacement ``resamples`` times, seeded: the same numbers give the same interval)."""
    ratios = np.array([e["wall_s"] / a["wall_s"] for e, a in zip(eager, arm)])
    rng = np.random.default_rng(0)
    medians = np.median(rng.choice(ratios, size=(resamples, len(ratios)), replace=True), axis=1)
    low, high = np.percentile(medians, [2.5, 97.5])
    return {"median": round(float(np.median(ratios)), 3), "ci95": [round(float(low), 3), round(float(high), 3)],
            "rounds": len(ratios), "ratios": [round(float(r), 3) for r in ratios]}


def timed_rounds(arms: dict[str, Arm], batches: list, recipe) -> dict[str, list[dict]]:
    """One step per arm per batch, the arm order rotating each round."""
    names, runs = list(arms), {name: [] for name in arms}
    for i, (images, labels) in enumerate(batches):
        for name in names[i % len(names):] + names[:i % len(names)]:
            runs[name].append(train_step(arms[name], images, labels, recipe))
    return runs


def load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def write(result: dict, out: Path | None) -> None:
    if out is None:
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}", flush=True)


def speed_section(arms: dict[str, Arm], batches: list, recipe, first: dict[str, dict]) -> dict:
    """Interleaved timed rounds; per-arm timing, speed-up over eager and the loss drift along the trajectory.

    ``trajectory_losses``: the first step's loss, then the timed steps' (the warm-up step in between is
    run but not listed)."""
    runs = timed_rounds(arms, batches, recipe)
    out = {"arms": {name: timing_summary(steps) for name, steps in runs.items()}, "trajectory_losses": {}}
    for name in runs:
        out["trajectory_losses"][name] = [first[name]["loss"]] + [s["loss"] for s in runs[name]]
    eager = out["arms"]["eager"]
    out["speedup_vs_eager"] = {n: round(a["steps_per_s"] / eager["steps_per_s"], 3) for n, a in out["arms"].items()}
    out["paired_speedup_vs_eager"] = {n: paired_speedup(runs["eager"], runs[n]) for n in runs if n != "eager"}
    out["cpu_speedup_vs_eager"] = {n: round(a["cpu_steps_per_s"] / eager["cpu_steps_per_s"], 3)
                                   for n, a in out["arms"].items()}
    losses = out["trajectory_losses"]
    out["trajectory_note"] = (
        "information, not the criterion: each arm follows its own SGD trajectory from the same weights on the "
        "same batches; float32 sums taken in another order differ in the last bits, and SGD with momentum "
        "carries these differences into the weights and amplifies them from step to step")
    out["trajectory_drift"] = {n: max(abs(a - b) / abs(b) for a, b in zip(losses[n], losses["eager"]))
                               for n in losses if n != "eager"}
    return out


def parse(argv) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=30, help="timed steps per arm after the warm-up (median)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: the machine is shared)")
    parser.add_argument("--compile-budget", type=int, default=1200, help="seconds allowed for the compiled first step")
    parser.add_argument("--no-compile", action="store_true", help="record the compiled arm as not measured")
    parser.add_argument("--quick", action="store_true", help="3 timed steps, no compile, no file unless --out")
    parser.add_argument("--out", default=None, help=f"JSON to write (default {DEFAULT_OUT.relative_to(ROOT)})")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.no_compile = 3, True
    args.out = Path(args.out) if args.out else (None if args.quick else DEFAULT_OUT)
    return args


def inductor_cache_mb() -> float:
    """Size of inductor's on-disk cache (kernels compiled by earlier runs are reused: a faster compile)."""
    from torch._inductor.runtime.cache_dir_utils import cache_dir
    files = [f for f in Path(cache_dir()).rglob("*") if f.is_file()] if Path(cache_dir()).exists() else []
    return round(sum(f.stat().st_size for f in files) / 2**20, 1)


def header(args, base, recipe) -> dict:
    size = recipe.input_size
    return {
        "what": "DDAMFN faithful training step (recipes.ddamfn FULL: loss_step + backward + SGD step), "
                f"batch {BATCH}, 3x{size}x{size}, float32, steps per second",
        "method": "same-math check: each arm's first step from the same initial weights on the same batch, "
                  "compared with eager (loss, gradients, parameter update). Speed: one warm-up step per arm, "
                  f"then {args.steps} rounds of one step per arm, arm order rotating each round (interleaved, "
                  "so that load from other processes hits every arm alike); steps_per_s = 1 / median wall "
                  "step time, cpu_steps_per_s = 1 / median CPU time of this process per step.",
        "torch": torch.__version__, "threads": args.threads, "batch": BATCH, "input": [3, size, size],
        "parameters": count_parameters(base), "timed_steps": args.steps,
        "tolerance": {"loss_rtol": LOSS_RTOL, "loss_atol": LOSS_ATOL, "grad_factor_vs_eager_float32_error": GRAD_FACTOR,
                      "meaning": "same math: |loss - loss_eager| <= loss_atol + loss_rtol |loss_eager|, and "
                                 "||g - g64|| / ||g64|| <= grad_factor x the same ratio for eager float32 "
                                 "(g64: eager float64 gradients from the same weights and batch)"},
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "python": platform.python_version(),
                    "shared": "2 cores shared with other processes; see the load averages"},
        "load_average_before": load(), "inductor_cache_mb_before": inductor_cache_mb(),
    }


def compile_arm(base, recipe, images, labels, budget: int, on_timeout) -> tuple[Arm, dict]:
    """Build and run the compiled arm's first step under a watchdog that calls ``on_timeout`` past ``budget``."""
    watchdog = threading.Timer(budget, on_timeout)
    watchdog.daemon = True
    watchdog.start()
    try:
        arm = make_arm(base, recipe, True, True)
        return arm, first_step(arm, images, labels, recipe)
    finally:
        watchdog.cancel()


def verdict(result: dict) -> dict:
    """The goal, judged on the best fast path's paired speed-up: "met" when its whole 95% interval is at or
    above GOAL, "not met" when it lies below, else "not resolved" (the machine's noise spans the goal)."""
    fast = {n: s for n, s in result["speedup_vs_eager"].items() if n != "eager"}
    best = max(fast, key=fast.get)
    same = result["same_math"][best]["same_math"]
    low, high = result["paired_speedup_vs_eager"][best]["ci95"]
    status = "met" if low >= GOAL else "not met" if high < GOAL else "not resolved"
    return {"goal": f"best fast path >= {GOAL}x eager float32 steps/s (the 95% interval of its paired speed-up), "
                    "with its first step equal to eager's",
            "best_fast_path": best, "speedup": fast[best], "paired_ci95": [low, high], "same_math": same,
            "status": status if same else "not met (not the same math)", "met": status == "met" and same}


def with_compiled(args, base, recipe, batches, arms: dict, first: dict, exact: dict, result: dict) -> None:
    """Add the compiled arm to ``arms`` / ``first`` / ``result``; past the budget, write what is known and exit.

    What is known: eager and channels_last timed on fresh copies before the compile (fewer rounds)."""
    partial = dict(result)
    fresh = {name: make_arm(base, recipe, name == "channels_last", False) for name in arms}
    for arm in fresh.values():
        train_step(arm, *batches[0], recipe)
    partial.update(speed_section(fresh, batches[1:1 + min(args.steps, 7)], recipe, first))
    partial["timed_steps"] = min(args.steps, 7)
    partial["note"] = (f"eager and channels_last timed on fresh copies before the compile, {partial['timed_steps']} "
                       "rounds; the compile did not finish within the budget")
    del fresh

    def on_timeout():  # the compile cannot be interrupted from Python: write what is known, then stop
        partial["compiled"] = {"not_measured": f"the compile did not finish within {args.compile_budget} s"}
        partial["goal"] = verdict(partial)
        partial["load_average_after"] = load()
        print(f"compile budget of {args.compile_budget} s exhausted", flush=True)
        write(partial, args.out)
        os._exit(3)

    print(f"compiling (budget {args.compile_budget} s, load {load()[0]})", flush=True)
    arms["compiled"], first["compiled"] = compile_arm(base, recipe, *batches[0], args.compile_budget, on_timeout)
    result["compiled"] = {"compile_s": round(first["compiled"]["wall_s"], 1),
                          "compile_cpu_s": round(first["compiled"]["cpu_s"], 1),
                          "note": "the first compiled step (forward and backward graphs compiled): wall time and "
                                  "this process's CPU time (inductor's compile workers not counted)",
                          "inductor_compile_threads": torch._inductor.config.compile_threads}
    result["same_math"]["compiled"] = compare_first_step(first["compiled"], first["eager"], exact)
    print(f"compiled in {result['compiled']['compile_s']} s", flush=True)


def main(argv=None) -> dict:
    args = parse(argv)
    torch.set_num_threads(args.threads)
    recipe = ddamfn.FULL
    torch.manual_seed(0)
    base = ddamfn.build_model(recipe)
    size = recipe.input_size
    batches = [(torch.randn(BATCH, 3, size, size), torch.randint(0, 7, (BATCH,))) for _ in range(args.steps + 2)]
    result = header(args, base, recipe)
    arms = {"eager": make_arm(base, recipe, False, False), "channels_last": make_arm(base, recipe, True, False)}
    first = {name: first_step(arm, *batches[0], recipe) for name, arm in arms.items()}
    exact = float64_reference(base, recipe, *batches[0])
    result["same_math"] = {"channels_last": compare_first_step(first["channels_last"], first["eager"], exact)}
    result["first_step_loss_eager"] = first["eager"]["loss"]
    if args.no_compile:
        result["compiled"] = {"not_measured": "--no-compile"}
    else:
        with_compiled(args, base, recipe, batches, arms, first, exact, result)
    for arm in arms.values():  # warm-up
        train_step(arm, *batches[1], recipe)
    result.update(speed_section(arms, batches[2:], recipe, first))
    result["goal"] = verdict(result)
    result["load_average_after"] = load()
    report(result)
    write(result, args.out)
    return result


def report(result: dict) -> None:
    for name, r in result["arms"].items():
        same = result["same_math"].get(name)
        print(f"{name:>14}: {r['steps_per_s']:.3f} steps/s, x{result['speedup_vs_eager'][name]:.2f} eager "
              f"(CPU time x{result['cpu_speedup_vs_eager'][name]:.2f})"
              + (f"; first step: loss rel diff {same['rel_loss_diff']:.1e}, grad rel diff "
                 f"{same['grad_rel_l2_diff_vs_float64']:.1e} vs float64 (eager "
                 f"{same['eager_float32_grad_rel_l2_diff_vs_float64']:.1e}), same math {same['same_math']}" if same else ""))
    for name, paired in result["paired_speedup_vs_eager"].items():
        print(f"{name:>14}: paired speed-up median x{paired['median']:.2f}, 95% interval {paired['ci95']} "
              f"({paired['rounds']} rounds)")
    print(f"goal {result['goal']['status']} ({result['goal']}); load {result['load_average_before'][0]} -> "
          f"{result['load_average_after'][0]}")


if __name__ == "__main__":
    main()
