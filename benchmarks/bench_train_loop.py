"""The course training loop's speed options (``fer_utils.train``), measured on notebook 05's course DDAMFN.

Arms (each from the same initial weights, on the same batches):

- training step (``fit``'s inner loop: forward, CE + 0.1 x attention loss, backward, Adam step) on the
  course network (``models.ddamfn.COURSE``, 2 heads, 64x64, batch 64): ``contiguous`` (``fit``'s default)
  vs ``channels_last`` (``fit(..., channels_last=True)``);
- evaluation (``evaluate``'s inner loop, batch 256): ``no_grad`` (what ``evaluate`` used before) vs
  ``inference_mode`` (what it uses now), both in the contiguous format, and ``inference_mode`` +
  ``channels_last``.

The machine is shared and noisy (2 cores, other processes running): the arms are timed in interleaved
rounds (one step of each arm per round), the median per arm is reported with the load average before
and after, and the losses / outputs of each arm are compared with the default arm (same numbers up to
float rounding). One torch thread, as the course notebooks run.

Writes ``benchmarks/results/train_loop.json``. Usage::

    python benchmarks/bench_train_loop.py [--rounds 9]
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from fer_utils.losses import attention_loss  # noqa: E402
from fer_utils.models.ddamfn import COURSE, DDAMFN  # noqa: E402

THREADS, BATCH, EVAL_BATCH = 1, 64, 256


def loss_fn(outputs, targets):
    """CE + 0.1 x attention loss, as notebook 05 trains."""
    return F.cross_entropy(outputs[0], targets) + 0.1 * attention_loss(outputs[2])


def train_arm(base: torch.nn.Module, channels_last: bool):
    """One training step of a copy of ``base``; returns (seconds, loss)."""
    model = copy.deepcopy(base).train()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)

    def step(images, labels):
        start = time.perf_counter()
        images = images.contiguous(memory_format=fmt)
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(images), labels)
        loss.backward()
        optimizer.step()
        return time.perf_counter() - start, float(loss.detach())

    return step


def eval_arm(base: torch.nn.Module, mode, channels_last: bool):
    """One evaluation batch of ``base`` under ``mode`` (no_grad or inference_mode); returns (seconds, logits)."""
    model = copy.deepcopy(base).eval()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)

    def step(images, _labels):
        start = time.perf_counter()
        with mode():
            logits = model(images.contiguous(memory_format=fmt))[0].clone()
        return time.perf_counter() - start, logits

    return step


def interleave(arms: dict, batches: list, warmup: int = 1) -> tuple[dict, dict]:
    """Per arm: the step times after ``warmup`` rounds and what each step returned, one step of each arm a round."""
    times = {name: [] for name in arms}
    values = {name: [] for name in arms}
    for r, (images, labels) in enumerate(batches):
        for name, step in arms.items():
            t, value = step(images, labels)
            if r >= warmup:
                times[name].append(t)
            values[name].append(value)
    return times, values


def summarise(times: dict, batch: int, default: str) -> dict:
    out = {}
    for name, ts in times.items():
        median = statistics.median(ts)
        out[name] = {"step_s": [round(t, 4) for t in ts], "median_step_s": round(median, 4),
                     "images_per_s": round(batch / median, 1)}
    base = out[default]["median_step_s"]
    for name in out:
        out[name]["speedup_vs_" + default] = round(base / out[name]["median_step_s"], 3)
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=9, help="timed rounds per arm (plus one warm-up round)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "train_loop.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    load_before = os.getloadavg()
    base = DDAMFN(7, 2, COURSE)
    size = COURSE.input_size
    make = lambda b: [(torch.randn(b, 3, size, size), torch.randint(0, 7, (b,))) for _ in range(args.rounds + 1)]
    train_times, losses = interleave({"contiguous": train_arm(base, False), "channels_last": train_arm(base, True)},
                                     make(BATCH))
    eval_times, logits = interleave({"no_grad": eval_arm(base, torch.no_grad, False),
                                     "inference_mode": eval_arm(base, torch.inference_mode, False),
                                     "inference_mode+channels_last": eval_arm(base, torch.inference_mode, True)},
                                    make(EVAL_BATCH))
    loss_diff = max(abs(a - b) / abs(b) for a, b in zip(losses["channels_last"], losses["contiguous"]))
    logit_diff = {name: max(float((a - b).abs().max()) for a, b in zip(vals, logits["no_grad"]))
                  for name, vals in logits.items() if name != "no_grad"}
    result = {
        "what": "fer_utils.train options on notebook 05's course DDAMFN (2 heads, 64x64): a training step "
                f"(batch {BATCH}, Adam) and an evaluation batch ({EVAL_BATCH}); median seconds per step",
        "torch": torch.__version__, "threads": THREADS, "rounds": args.rounds, "cpu_count": os.cpu_count(),
        "noise": "shared 2-core machine with other processes: arms interleaved round by round, medians",
        "load_average_before": [round(v, 2) for v in load_before],
        "train": summarise(train_times, BATCH, "contiguous"),
        "evaluate": summarise(eval_times, EVAL_BATCH, "no_grad"),
        "max_rel_loss_diff_channels_last": loss_diff,
        "max_abs_logit_diff_vs_no_grad": logit_diff,
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    for part in ("train", "evaluate"):
        for name, r in result[part].items():
            speed = {k: v for k, v in r.items() if k.startswith("speedup")}
            print(f"{part:>8} {name:>28}: {r['median_step_s']:.4f} s/step, {r['images_per_s']} images/s, {speed}")
    print(f"loss diff (channels_last) {loss_diff:.2e}; logit diff {logit_diff}; load {load_before[0]:.2f} -> "
          f"{result['load_average_after'][0]:.2f}")
    return result


if __name__ == "__main__":
    main()
