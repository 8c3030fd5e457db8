"""benchmarks/bench_fast_paths.py: its same-math check can pass and fail, and the committed result is
consistent with its own criteria and with what README.md quotes from it.

The check runs here on DDAMFN's small SMOKE network at 64x64 (batch 4), not on the faithful one the
benchmark times, so that it takes a second or two.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import bench_fast_paths as bench  # noqa: E402

from fer_utils.recipes import ddamfn  # noqa: E402

RESULT = json.loads((ROOT / "benchmarks" / "results" / "fast_paths.json").read_text())


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread, as the benchmark (two threads on two busy cores spin more than they compute)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _first_steps(channels_last: bool, noise: float = 0.0):
    torch.manual_seed(0)
    recipe = ddamfn.SMOKE
    base = ddamfn.build_model(recipe)
    size = recipe.input_size
    images, labels = torch.randn(4, 3, size, size), torch.randint(0, 7, (4,))
    eager = bench.first_step(bench.make_arm(base, recipe, False, False), images, labels, recipe)
    arm = bench.first_step(bench.make_arm(base, recipe, channels_last, False), images + noise * torch.randn_like(images), labels, recipe)
    exact = bench.float64_reference(base, recipe, images, labels)
    return arm, eager, exact


def test_channels_last_first_step_is_the_same_math():
    arm, eager, exact = _first_steps(channels_last=True)
    same = bench.compare_first_step(arm, eager, exact)
    assert same["same_math"], same
    assert same["eager_float32_grad_rel_l2_diff_vs_float64"] > 0  # float32 does round


def test_a_different_step_is_not_the_same_math():
    """Inputs moved by noise of s.d. 1e-3: a real change, far larger than float32 rounding, fails the check.
    (A scaled input would not do: BatchNorm removes the scale.)"""
    arm, eager, exact = _first_steps(channels_last=True, noise=1e-3)
    same = bench.compare_first_step(arm, eager, exact)
    assert not same["grads_equal"] and not same["same_math"], same


def test_committed_result_meets_its_own_criteria():
    """The flags and the verdict in fast_paths.json follow from its numbers (nothing typed by hand)."""
    tol = RESULT["tolerance"]
    for name, same in RESULT["same_math"].items():
        loss_ok = same["abs_loss_diff"] <= tol["loss_atol"] + tol["loss_rtol"] * abs(RESULT["first_step_loss_eager"])
        grads_ok = (same["grad_rel_l2_diff_vs_float64"]
                    <= tol["grad_factor_vs_eager_float32_error"] * same["eager_float32_grad_rel_l2_diff_vs_float64"])
        assert (same["loss_equal"], same["grads_equal"], same["same_math"]) == (loss_ok, grads_ok, loss_ok and grads_ok)
    for name, arm in RESULT["arms"].items():
        assert arm["steps_per_s"] == round(1 / arm["median_wall_step_s"], 4)
        assert len(arm["wall_step_s"]) == len(arm["cpu_step_s"]) == RESULT["timed_steps"]
    assert RESULT["goal"] == bench.verdict(RESULT)
    eager = RESULT["arms"]["eager"]["wall_step_s"]
    for name, paired in RESULT["paired_speedup_vs_eager"].items():
        from_lists = [e / a for e, a in zip(eager, RESULT["arms"][name]["wall_step_s"])]  # rounded to 1 ms
        assert paired["ratios"] == pytest.approx(from_lists, rel=2e-3), name
        assert paired["median"] == pytest.approx(float(np.median(paired["ratios"])), abs=1e-3)
        assert paired["ci95"][0] <= paired["median"] <= paired["ci95"][1]


def _runs(times):
    return [{"wall_s": t} for t in times]


def test_paired_speedup_is_the_median_round_ratio_with_its_interval():
    eager = _runs([2.0, 2.2, 1.8, 2.4, 2.0, 2.1])
    exact = bench.paired_speedup(eager, _runs([t / 1.6 for t in (2.0, 2.2, 1.8, 2.4, 2.0, 2.1)]))
    assert exact["median"] == 1.6 and exact["ci95"] == [1.6, 1.6]       # a constant ratio: no spread
    noisy = bench.paired_speedup(eager, _runs([1.0, 1.6, 1.5, 1.5, 1.0, 1.9]))
    assert noisy["median"] == pytest.approx(float(np.median([2.0, 2.2 / 1.6, 1.2, 1.6, 2.0, 2.1 / 1.9])), abs=1e-3)
    assert noisy["ci95"][0] < noisy["median"] < noisy["ci95"][1]
    assert noisy == bench.paired_speedup(eager, _runs([1.0, 1.6, 1.5, 1.5, 1.0, 1.9]))   # seeded


@pytest.mark.parametrize("ci95, status", [([1.52, 1.7], "met"), ([1.3, 1.45], "not met"),
                                          ([1.4, 1.6], "not resolved")])
def test_goal_is_judged_on_the_whole_interval(ci95, status):
    result = {"speedup_vs_eager": {"eager": 1.0, "channels_last": 1.2, "compiled": 1.55},
              "same_math": {"channels_last": {"same_math": True}, "compiled": {"same_math": True}},
              "paired_speedup_vs_eager": {"channels_last": {"ci95": [1.1, 1.3]}, "compiled": {"ci95": ci95}}}
    goal = bench.verdict(result)
    assert goal["best_fast_path"] == "compiled" and goal["status"] == status and goal["met"] == (status == "met")
    result["same_math"]["compiled"]["same_math"] = False
    assert not bench.verdict(result)["met"]


def test_readme_quotes_the_committed_result():
    """Every 'N.NNx eager' in README's "Training at full scale" is a speed-up recorded in fast_paths.json."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Training at full scale", 1)[1].split("\n## ", 1)[0]
    quoted = [float(x) for x in re.findall(r"(\d+\.\d+)x eager", section)]
    recorded = {round(v, 2) for v in RESULT["speedup_vs_eager"].values()}
    assert quoted, "README's Training at full scale section quotes no speed-up"
    assert set(quoted) <= recorded, (quoted, recorded)
