"""The verdict rule (fer_utils.stats) against scipy and hand-made data, and the plateau rule (fer_utils.train)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats as scipy_stats

from fer_utils import stats
from fer_utils.train import Plateau, fit


def test_interval_is_scipys_paired_t_interval():
    a = np.array([0.71, 0.64, 0.69, 0.75, 0.66, 0.70])
    b = np.array([0.65, 0.61, 0.66, 0.70, 0.60, 0.69])
    v = stats.compare(a, b, claim="a beats b")
    ci = scipy_stats.ttest_rel(a, b).confidence_interval(0.95)
    assert (v.ci_low, v.ci_high) == pytest.approx((ci.low, ci.high), abs=1e-12)
    # by hand: d = (.06,.03,.03,.05,.06,.01), mean .04, squared deviations sum to .002, s_d = sqrt(.002 / 5) = .02,
    # t_{.975,5} = 2.5705818
    assert v.diff == pytest.approx(0.04, abs=1e-12)
    assert v.half_width == pytest.approx(2.5705818 * 0.02 / math.sqrt(6), rel=1e-6)
    assert v.verdict == "yes" and v.n == 6


def test_pairing_decides_where_unpaired_bands_overlap():
    """Seeds differ a lot (shared by both arms), the arms by a small steady amount: mean +/- s.d. bands
    overlap, the paired interval excludes 0."""
    seed_effect = np.array([0.50, 0.62, 0.55, 0.70, 0.58])
    a, b = seed_effect + 0.03 + np.array([0.004, -0.003, 0.002, -0.001, 0.0]), seed_effect
    assert a.mean() - a.std(ddof=1) < b.mean() + b.std(ddof=1)          # the bands overlap
    assert scipy_stats.ttest_ind(a, b).pvalue > 0.05                    # an unpaired test cannot tell
    v = stats.compare(a, b, claim="a > b")
    assert v.verdict == "yes" and v.ci_low > 0


def test_directions_and_not_resolved():
    a, b = [0.5, 0.6, 0.55], [0.6, 0.7, 0.66]
    assert stats.compare(a, b, claim="a > b").verdict == "opposite"
    assert stats.compare(a, b, claim="a < b", direction="less").verdict == "yes"
    noisy = stats.compare([0.5, 0.7, 0.4], [0.6, 0.5, 0.5], claim="a > b")
    assert noisy.verdict == "not resolved" and noisy.ci_low < 0 < noisy.ci_high
    one = stats.compare([0.9], [0.1], claim="a > b")
    assert one.verdict == "not resolved" and math.isnan(one.half_width)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="one value per seed"):
        stats.compare([1, 2, 3], [1, 2], claim="x")
    with pytest.raises(ValueError, match="NaN"):
        stats.compare([1, float("nan")], [1, 2], claim="x")
    with pytest.raises(ValueError, match="direction"):
        stats.compare([1, 2], [1, 2], claim="x", direction="up")


def test_budget_limited_when_an_arm_did_not_plateau():
    v = stats.compare([0.6, 0.7], [0.5, 0.6], claim="x", plateaued=[True, False, True, True])
    assert v.budget_limited and "budget-limited" in str(v) and v.as_dict()["budget_limited"]
    assert not stats.compare([0.6, 0.7], [0.5, 0.6], claim="x", plateaued=True).budget_limited
    table = stats.claims_table([v])
    assert list(table.columns[:4]) == ["claim", "arm_a", "arm_b", "dose"] and len(table) == 1


def test_plateau_rule_by_hand():
    rule = Plateau(patience=2, tolerance=0.01)
    assert not rule.reached([1.0, 0.8])                 # too few epochs
    assert not rule.reached([1.0, 0.8, 0.6, 0.5])       # still falling
    assert rule.reached([1.0, 0.8, 0.795, 0.801])       # best of the last 2 (0.795) > 0.8 - 0.01
    assert not rule.reached([1.0, 0.8, 0.785, 0.80])    # improved by more than the tolerance
    assert Plateau(patience=1, tolerance=0.0, mode="max").reached([0.5, 0.7, 0.69])


def test_fit_stops_on_the_plateau_and_records_it():
    torch.manual_seed(0)
    x, y = torch.randn(64, 3), torch.randint(0, 2, (64,))
    loader = [(x[i:i + 16], y[i:i + 16]) for i in range(0, 64, 16)]
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)          # nothing changes: flat at once
    history = fit(model, loader, 20, optimizer, val_loader=loader, progress=False, stop=Plateau(patience=2))
    assert history["plateaued"] and history["epochs_run"] == 3 and len(history["val_loss"]) == 3
    capped = fit(torch.nn.Linear(3, 2), loader, 2, torch.optim.SGD(model.parameters(), lr=0.0), val_loader=loader,
                 progress=False, stop=Plateau(patience=2))
    assert not capped["plateaued"] and capped["epochs_run"] == 2
    with pytest.raises(KeyError, match="val_loss"):
        fit(model, loader, 2, optimizer, progress=False, stop=Plateau())


def test_per_seed_sd_reads_back_the_spread_of_the_differences():
    a = np.array([0.71, 0.64, 0.69, 0.75, 0.66, 0.70])
    b = np.array([0.65, 0.61, 0.66, 0.70, 0.60, 0.69])
    v = stats.compare(a, b, claim="a beats b")
    assert stats.per_seed_sd(v) == pytest.approx(np.std(a - b, ddof=1), rel=1e-12)
    with pytest.raises(ValueError, match="no interval"):
        stats.per_seed_sd(stats.compare([0.5], [0.4], claim="one seed"))


@pytest.mark.parametrize("effect, seeds", [(0.5, 34), (0.8, 15), (1.0, 10), (0.3, 90)])
def test_seeds_for_power_gives_the_textbook_paired_sample_sizes(effect, seeds):
    """Cohen's (1988) paired t-test sizes at alpha 0.05 (two-sided) and 80% power; scale-free in diff / sd."""
    assert stats.seeds_for_power(effect, 1.0) == seeds
    assert stats.seeds_for_power(-effect * 0.02, 0.02) == seeds


def test_seeds_for_power_matches_simulated_verdicts():
    """At the planned n about 80% of simulated runs resolve the difference; at n - 3 clearly fewer."""
    diff, sd = 0.05, 0.06
    n = stats.seeds_for_power(diff, sd)
    rng = np.random.default_rng(0)

    def share_resolved(seeds: int) -> float:
        d = rng.normal(diff, sd, size=(4000, seeds))
        half = scipy_stats.t.ppf(0.975, seeds - 1) * d.std(axis=1, ddof=1) / math.sqrt(seeds)
        return float(np.mean(d.mean(axis=1) - half > 0))

    assert share_resolved(n) == pytest.approx(0.8, abs=0.025)
    assert share_resolved(n - 3) < 0.72
    assert stats.seeds_for_power(0.0, 0.1) is None
    assert stats.seeds_for_power(0.001, 1.0, most=50) is None
    with pytest.raises(ValueError, match="power"):
        stats.seeds_for_power(0.1, 0.1, target=1.0)
    assert stats.power(diff, sd, n) >= 0.8 > stats.power(diff, sd, n - 1)
    assert stats.power(diff, sd, 40) > stats.power(diff, sd, 20) > stats.power(diff / 2, sd, 20)
    assert stats.power(0.0, sd, 10) == pytest.approx(0.025, abs=1e-9)   # one side of a 95% interval


def test_seeds_to_decide_reads_a_claim_row_and_plans_from_its_spread():
    """A claims-list row gives seeds_for_power at its own difference and the spread read back from its interval;
    rows without a spread to read (one seed, zero spread) give None."""
    a = np.array([0.71, 0.64, 0.69, 0.75, 0.66, 0.70])
    b = np.array([0.70, 0.66, 0.66, 0.74, 0.65, 0.71])
    v = stats.compare(a, b, claim="a beats b")
    assert v.verdict == "not resolved"
    sd = np.std(a - b, ddof=1)
    planned = stats.seeds_to_decide(v.as_dict())
    assert planned == stats.seeds_for_power(float(np.mean(a - b)), sd) == stats.seeds_to_decide(v)
    assert planned > len(a)
    assert stats.seeds_to_decide(v, target=0.5) < planned
    assert stats.seeds_to_decide(stats.compare([0.5], [0.4], claim="one seed")) is None
    assert stats.seeds_to_decide(stats.compare([0.5, 0.6], [0.5, 0.6], claim="no spread")) is None
