"""The experiment engine's wall-time speed-up with 2 workers over 1, on a notebook-sized grid.

The grid (``fer_utils.experiments.run_grid``, cache disabled): 2 arms (Adam, SGD with momentum) x 3 doses (train
label noise 0, 0.2, 0.4) x 5 seeds = 30 runs. Each (dose, seed)'s data (``data_fn``, rendered once, shared by both
arms): ``--n-train`` 48x48 grey ``SynthFaces`` ("lab", ``label_noise=dose``) and ``--n-test`` clean ones of other
identities. Each run (``run_fn``): ``fer_utils.models.baselines.SmallCNN(width=8)`` trained ``--epochs`` epochs by
``fer_utils.train.fit`` (batch 32), scored by ``fer_utils.train.evaluate`` (test accuracy), on one torch thread
(the engine's rule). With 1 worker the grid runs in this process; with 2 in two forked processes.

Timing: one warm-up grid of a single short run first (imports, first kernels; forked workers inherit them), then
``--rounds`` rounds of one 1-worker grid and one 2-worker grid each, the order alternating from round to round
(1, 2 / 2, 1 / ...) so that drifting load from other processes hits both alike. Per round, the paired speed-up
r_i = wall(1 worker) / wall(2 workers); the median of the r_i and a seeded 95% bootstrap interval of it are
reported. The goal (GOAL = 1.8x) is "met" when the whole interval is at or above it, "not met" when it lies below,
else "not resolved". CPU time (this process and its finished children) is reported per grid too, and every grid's
numbers must equal the first one's (the same grid gives the same numbers with 1 or 2 workers).

Writes ``benchmarks/results/bench_experiments.json``. Usage::

    python benchmarks/bench_experiments.py [--rounds 3] [--epochs 2] [--n-train 300] [--n-test 100]
    python benchmarks/bench_experiments.py --quick     # 2 arms x 1 dose x 2 seeds, tiny, 1 round, writes nothing
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from fer_utils.data import SynthFaces, materialize, to_model_tensor  # noqa: E402
from fer_utils.experiments import default_workers, run_grid  # noqa: E402
from fer_utils.models.baselines import SmallCNN  # noqa: E402
from fer_utils.train import evaluate, fit  # noqa: E402

GOAL = 1.8
ARMS = {"adam": {"optimizer": "adam", "lr": 1e-3}, "sgd": {"optimizer": "sgd", "lr": 0.05}}
DOSES = [0.0, 0.2, 0.4]
SEEDS = [0, 1, 2, 3, 4]
BATCH, WIDTH = 32, 8
#: The sizes main() sets, passed to the workers through the environment (forked or spawned, they see it).
SIZES_ENV = "FER_BENCH_EXPERIMENTS_SIZES"
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "bench_experiments.json"
NUMBERS = ["accuracy", "train_loss"]


def sizes() -> dict:
    """``n_train``, ``n_test`` and ``epochs`` as main() set them."""
    return json.loads(os.environ[SIZES_ENV])


def faces(n: int, seed: int, label_noise: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` 48x48 grey lab faces as a float (n, 1, 48, 48) tensor in [-1, 1] and int64 labels."""
    ds = SynthFaces(n, seed=seed, size=48, grayscale=True, label_noise=label_noise, with_masks=False)
    images, labels = materialize(ds, progress=False)
    return to_model_tensor(images, "symmetric"), torch.from_numpy(labels)


def data_fn(dose: float, seed: int) -> dict[str, torch.Tensor]:
    """Noisy training faces and clean test faces of other identities (another SynthFaces seed)."""
    x_train, y_train = faces(sizes()["n_train"], seed, dose)
    x_test, y_test = faces(sizes()["n_test"], 10_000 + seed, 0.0)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def run_fn(arm: dict, dose: float, seed: int, data: dict) -> dict:
    """Train SmallCNN on the noisy faces with the arm's optimiser; its clean test accuracy."""
    model = SmallCNN(width=WIDTH)
    if arm["optimizer"] == "adam":
        optimizer = torch.optim.Adam(model.parameters(), lr=arm["lr"])
    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=arm["lr"], momentum=0.9)
    train = torch.utils.data.TensorDataset(data["x_train"], data["y_train"])
    test = torch.utils.data.TensorDataset(data["x_test"], data["y_test"])
    history = fit(model, torch.utils.data.DataLoader(train, batch_size=BATCH, shuffle=True), sizes()["epochs"],
                  optimizer, progress=False)
    result = evaluate(model, torch.utils.data.DataLoader(test, batch_size=128))
    return {"accuracy": float(result["accuracy"]), "train_loss": history["train_loss"][-1]}


def cpu_seconds() -> float:
    """User + system CPU time of this process and of its children that have ended."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def timed_grid(workers: int, doses: list, seeds: list) -> dict:
    """One grid, cache disabled: wall and CPU seconds, the mean run time and its numbers."""
    wall, cpu = time.perf_counter(), cpu_seconds()
    table = run_grid(run_fn, ARMS, doses, seeds, data_fn=data_fn, workers=workers, cache=False, progress=False,
                     desc=f"{workers} worker(s)")
    wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    return {"workers": workers, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
            "mean_run_s": round(float(table.seconds.mean()), 3), "numbers": table[NUMBERS].to_numpy().tolist()}


def paired_speedup(rounds: list[dict], resamples: int = 2000) -> dict:
    """Median of r_i = wall(1 worker) / wall(2 workers) over the rounds, and a seeded 95% bootstrap interval of it."""
    ratios = np.array([r["one"]["wall_s"] / r["two"]["wall_s"] for r in rounds])
    rng = np.random.default_rng(0)
    medians = np.median(rng.choice(ratios, size=(resamples, len(ratios)), replace=True), axis=1)
    low, high = np.percentile(medians, [2.5, 97.5])
    return {"median": round(float(np.median(ratios)), 3), "ci95": [round(float(low), 3), round(float(high), 3)],
            "rounds": len(ratios), "ratios": [round(float(r), 3) for r in ratios]}


def verdict(speedup: dict, same: bool) -> dict:
    """"met" when the whole interval is at or above GOAL (same numbers too), "not met" below, else "not resolved"."""
    low, high = speedup["ci95"]
    status = "met" if low >= GOAL else "not met" if high < GOAL else "not resolved"
    return {"goal": f"2 workers >= {GOAL}x faster than 1 (wall time; the 95% interval of the paired speed-up), "
                    "with the same numbers", "median": speedup["median"], "ci95": speedup["ci95"],
            "same_numbers": same, "status": status if same else "not met (different numbers)",
            "met": status == "met" and same}


def header(args: argparse.Namespace, doses: list, seeds: list) -> dict:
    """What is timed, how, on which machine, and the load before."""
    return {
        "what": "fer_utils.experiments.run_grid wall time, 2 workers vs 1, cache disabled: "
                f"{len(ARMS)} arms x {len(doses)} doses x {len(seeds)} seeds = {len(ARMS) * len(doses) * len(seeds)} "
                f"runs of SmallCNN(width={WIDTH}) trained {args.epochs} epoch(s) on {args.n_train} 48x48 grey "
                f"SynthFaces (label noise = dose), scored on {args.n_test} clean ones",
        "method": "one warm-up grid (1 run), then per round one 1-worker grid and one 2-worker grid, the order "
                  "alternating from round to round; paired speed-up r_i = wall(1) / wall(2); median and seeded 95% "
                  "bootstrap interval; every grid's numbers compared with the first grid's",
        "grid": {"arms": ARMS, "doses": doses, "seeds": seeds, "n_train": args.n_train, "n_test": args.n_test,
                 "epochs": args.epochs, "batch": BATCH, "width": WIDTH},
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "usable_cpus": default_workers(),
                    "python": platform.python_version(), "torch": torch.__version__},
        "load_average_before": [round(v, 2) for v in os.getloadavg()],
    }


def parse(argv: list[str] | None) -> argparse.Namespace:
    """The command line; ``--quick`` shrinks everything and writes no file unless ``--out``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds of (1 worker, 2 workers)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--n-train", type=int, default=300)
    parser.add_argument("--n-test", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="1 dose x 2 seeds, 64 faces, 1 epoch, 1 round; no file")
    parser.add_argument("--out", default=None, help=f"JSON to write (default {DEFAULT_OUT.relative_to(ROOT)})")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.epochs, args.n_train, args.n_test = 1, 1, 64, 32
    args.out = Path(args.out) if args.out else (None if args.quick else DEFAULT_OUT)
    return args


def main(argv: list[str] | None = None) -> dict:
    """Warm up, time the interleaved rounds, judge the goal, write the JSON; returns what it wrote."""
    args = parse(argv)
    doses, seeds = (DOSES[:1], SEEDS[:2]) if args.quick else (DOSES, SEEDS)
    os.environ[SIZES_ENV] = json.dumps({"n_train": args.n_train, "n_test": args.n_test, "epochs": args.epochs})
    result = header(args, doses, seeds)
    with tempfile.TemporaryDirectory(prefix="bench-experiments-") as cache:
        os.environ["FER_EXPERIMENTS_DIR"] = cache  # cache=False still writes each run: not into the user's cache
        start = time.perf_counter()
        run_grid(run_fn, {"adam": ARMS["adam"]}, doses[:1], seeds[:1], data_fn=data_fn, workers=1, cache=False,
                 progress=False)
        result["warm_up_s"] = round(time.perf_counter() - start, 2)
        rounds = []
        for i in range(args.rounds):
            order = (1, 2) if i % 2 == 0 else (2, 1)
            grids = {w: timed_grid(w, doses, seeds) for w in order}
            rounds.append({"round": i + 1, "order": list(order), "one": grids[1], "two": grids[2],
                           "ratio": round(grids[1]["wall_s"] / grids[2]["wall_s"], 3)})
            print(f"round {i + 1}: 1 worker {grids[1]['wall_s']} s, 2 workers {grids[2]['wall_s']} s, "
                  f"x{rounds[-1]['ratio']}", flush=True)
    first = rounds[0]["one"]["numbers"]
    same = all(r[k]["numbers"] == first for r in rounds for k in ("one", "two"))
    result["same_numbers"] = same
    result["mean_accuracy"] = round(statistics.mean(row[0] for row in first), 4)
    result["rounds"] = [{**r, "one": {k: v for k, v in r["one"].items() if k != "numbers"},
                         "two": {k: v for k, v in r["two"].items() if k != "numbers"}} for r in rounds]
    result["speedup"] = paired_speedup(rounds)
    result["goal"] = verdict(result["speedup"], same)
    result["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
    print(f"speed-up median x{result['speedup']['median']} (95% interval {result['speedup']['ci95']}, "
          f"{len(rounds)} rounds); same numbers: {same}; goal {result['goal']['status']}; load "
          f"{result['load_average_before'][0]} -> {result['load_average_after'][0]}")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    return result


if __name__ == "__main__":
    main()
