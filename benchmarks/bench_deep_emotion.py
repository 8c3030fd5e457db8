"""Training speed of Deep-Emotion on this CPU: images per second for forward + backward + Adam.

Batch 128 of 1x48x48 images, 10 classes of work per step are not needed: one step is
``zero_grad -> forward -> cross-entropy -> backward -> Adam.step`` and nothing else (no data
loading). Torch uses 2 threads. Three models are timed in the same run, interleaved round by
round so that a noisy neighbour slows them alike:

- ``paper``: ``DeepEmotion(variant="paper")``;
- ``reference``: ``DeepEmotion(variant="reference")`` (the unofficial implementation's layers);
- ``unofficial_layout``: the unofficial implementation's own module, re-typed from its
  description in the shared reference notes (same layers, ``F.dropout`` always on), so the
  comparison with the 1,160 images/s measured there is made on this machine, now.

Writes ``benchmarks/results/deep_emotion.json``. Usage::

    python benchmarks/bench_deep_emotion.py [--rounds 7] [--steps 10]
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from fer_utils.models.deep_emotion import DeepEmotion  # noqa: E402

BATCH, SIZE, THREADS = 128, 48, 2
REFERENCE_IMAGES_PER_S = 1160  # unofficial implementation, measured on this machine type when quiet


class UnofficialDeepEmotion(nn.Module):
    """The unofficial implementation's module as its repository lays it out (for timing only)."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 10, 3), nn.Conv2d(10, 10, 3)
        self.pool2 = nn.MaxPool2d(2, 2)
        self.conv3, self.conv4 = nn.Conv2d(10, 10, 3), nn.Conv2d(10, 10, 3)
        self.pool4 = nn.MaxPool2d(2, 2)
        self.norm = nn.BatchNorm2d(10)
        self.fc1, self.fc2 = nn.Linear(810, 50), nn.Linear(50, 7)
        self.localization = nn.Sequential(
            nn.Conv2d(1, 8, kernel_size=7), nn.MaxPool2d(2, stride=2), nn.ReLU(True),
            nn.Conv2d(8, 10, kernel_size=5), nn.MaxPool2d(2, stride=2), nn.ReLU(True),
        )
        self.fc_loc = nn.Sequential(nn.Linear(640, 32), nn.ReLU(True), nn.Linear(32, 6))
        self.fc_loc[2].weight.data.zero_()
        self.fc_loc[2].bias.data.copy_(torch.tensor([1, 0, 0, 0, 1, 0], dtype=torch.float))

    def stn(self, x):
        theta = self.fc_loc(self.localization(x).view(-1, 640)).view(-1, 2, 3)
        grid = F.affine_grid(theta, x.size(), align_corners=False)  # the code's default, stated
        return F.grid_sample(x, grid, align_corners=False)

    def forward(self, x):
        out = self.stn(x)
        out = F.relu(self.conv1(out))
        out = self.conv2(out)
        out = F.relu(self.pool2(out))
        out = F.relu(self.conv3(out))
        out = self.norm(self.conv4(out))
        out = F.relu(self.pool4(out))
        out = F.dropout(out)
        out = out.view(-1, 810)
        return self.fc2(F.relu(self.fc1(out)))


def make_step(model: nn.Module):
    images = torch.randn(BATCH, 1, SIZE, SIZE)
    labels = torch.randint(0, 7, (BATCH,))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.005)
    model.train()

    def step():
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(images), labels).backward()
        optimizer.step()

    return step


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="timing rounds per model (median reported)")
    parser.add_argument("--steps", type=int, default=10, help="training steps per round")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "deep_emotion.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    models = {"paper": DeepEmotion("paper"), "reference": DeepEmotion("reference"),
              "unofficial_layout": UnofficialDeepEmotion()}
    steps = {name: make_step(model) for name, model in models.items()}
    for step in steps.values():  # warm-up: allocator, kernels
        for _ in range(3):
            step()
    seconds: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(args.rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                step()
            seconds[name].append((time.perf_counter() - start) / args.steps)
    result = {
        "what": "Deep-Emotion training step (forward + backward + Adam), batch 128, 1x48x48, images per second",
        "torch": torch.__version__, "threads": THREADS, "batch": BATCH, "input": [1, SIZE, SIZE],
        "machine": platform.machine(), "rounds": args.rounds, "steps_per_round": args.steps,
        "reference_measurement_images_per_s": REFERENCE_IMAGES_PER_S,
        "models": {},
    }
    for name, times in seconds.items():
        median, best = statistics.median(times), min(times)
        result["models"][name] = {
            "parameters": sum(p.numel() for p in models[name].parameters()),
            "median_step_s": round(median, 5), "best_step_s": round(best, 5),
            "images_per_s_median": round(BATCH / median, 1), "images_per_s_best": round(BATCH / best, 1),
        }
    ours = result["models"]["reference"]["images_per_s_median"]
    layout = result["models"]["unofficial_layout"]["images_per_s_median"]
    result["reference_vs_unofficial_layout_same_run"] = round(ours / layout, 3)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    for name, r in result["models"].items():
        print(f"{name:>18}: {r['images_per_s_median']:7.0f} images/s median ({r['images_per_s_best']:.0f} best), "
              f"{r['parameters']:,} parameters")
    print(f"reference / unofficial layout (same run): {result['reference_vs_unofficial_layout_same_run']:.2f}; "
          f"earlier quiet measurement of the unofficial code: {REFERENCE_IMAGES_PER_S} images/s")
    print(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return result


if __name__ == "__main__":
    main()
