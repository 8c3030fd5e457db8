"""The one verdict rule of the course: two arms compared over paired seeds.

Seed ``i`` gives both arms the same data, split, order and (where shapes allow) initialisation, so the
arms differ only by what the claim is about. For a metric measured on seeds ``i = 1..n``::

    d_i  = a_i - b_i                                   the per-seed (paired) difference
    d    = (1/n) sum_i d_i                             the mean paired difference
    s_d  = sqrt( sum_i (d_i - d)^2 / (n - 1) )         its sample standard deviation (ddof = 1)
    h    = t_{0.975, n-1} * s_d / sqrt(n)              the 95% interval's half-width (Student t)
    CI   = [d - h, d + h]

and the verdict on the claim "a > b" (``direction="greater"``; "a < b" is ``"less"``) is

- ``"yes"`` when the whole interval lies on the claimed side of 0,
- ``"opposite"`` when it lies on the other side,
- ``"not resolved"`` when it contains 0 (or n < 2: no interval).

``h`` is printed with every verdict: it is the smallest effect this run could have told from none.
This is the paired t-test of Student (1908), the same interval as ``scipy.stats.ttest_rel(a, b)
.confidence_interval()``. Unpaired mean +/- s.d. bands can overlap while the paired interval excludes 0:
the seed-to-seed variation shared by both arms cancels in ``d_i``.

A verdict compares arms "at their plateau under one epoch cap" (:class:`fer_utils.train.Plateau`): when
an arm stopped at the cap before its validation loss flattened, :func:`compare` marks the verdict
budget-limited (``plateaued=False``).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Iterable, Sequence

import numpy as np
from scipy import stats as scipy_stats

DIRECTIONS = ("greater", "less")


@dataclass(frozen=True)
class Verdict:
    """One claim decided on paired seeds (one row of a notebook's ``claims`` list)."""

    claim: str
    arm_a: str
    arm_b: str
    dose: Any
    n: int
    diff: float
    ci_low: float
    ci_high: float
    half_width: float
    verdict: str
    plateaued: bool | None = None
    #: the claimed side: "greater" (a > b) or "less" (a < b)
    direction: str = "greater"

    @property
    def budget_limited(self) -> bool:
        """An arm hit the epoch cap without a plateau: the verdict is about a budget, not a plateau."""
        return self.plateaued is False

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "budget_limited": self.budget_limited}

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> "Verdict":
        """A verdict back from one row of a recorded ``claims`` list (extra keys are ignored)."""
        names = [f.name for f in fields(cls)]
        return cls(**{k: row[k] for k in names if k in row})

    def __str__(self) -> str:
        mark = " (budget-limited)" if self.budget_limited else ""
        return (f"{self.claim}: {self.arm_a} - {self.arm_b} = {self.diff:+.3f} "
                f"[{self.ci_low:+.3f}, {self.ci_high:+.3f}] (n={self.n}, +/-{self.half_width:.3f}) -> "
                f"{self.verdict}{mark}")


def paired_interval(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean paired difference d, half-width h, n) of ``a - b`` seed by seed; h is NaN for n < 2."""
    a_, b_ = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a_.shape != b_.shape or a_.ndim != 1:
        raise ValueError(f"paired arms need one value per seed each, in the same seed order; got shapes "
                         f"{a_.shape} and {b_.shape}")
    if not np.all(np.isfinite(a_)) or not np.all(np.isfinite(b_)):
        raise ValueError("a value is NaN or infinite: a run failed; rerun it rather than compare without it")
    d, n = a_ - b_, len(a_)
    if n == 0:
        raise ValueError("no seeds to compare")
    if n < 2:
        return float(d.mean()), math.nan, n
    t = scipy_stats.t.ppf(0.5 + confidence / 2, n - 1)
    return float(d.mean()), float(t * d.std(ddof=1) / math.sqrt(n)), n


def compare(a: Sequence[float], b: Sequence[float], *, claim: str, arm_a: str = "a", arm_b: str = "b",
            direction: str = "greater", dose: Any = None, plateaued: bool | Iterable[bool] | None = None,
            confidence: float = 0.95) -> Verdict:
    """The verdict on "``arm_a`` > ``arm_b``" (``direction="greater"``) or "<" (``"less"``) from values
    ``a[i]``, ``b[i]`` of the same seed ``i``. ``plateaued``: whether every run compared reached its
    plateau (a bool, or one per run: all must be True); None when the runs do not train."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    diff, half, n = paired_interval(a, b, confidence)
    low, high = diff - half, diff + half
    if n < 2 or not (low > 0 or high < 0):
        verdict = "not resolved"
    elif (low > 0) == (direction == "greater"):
        verdict = "yes"
    else:
        verdict = "opposite"
    if plateaued is not None and not isinstance(plateaued, bool):
        plateaued = bool(all(plateaued))
    return Verdict(claim, arm_a, arm_b, dose, n, diff, low, high, half, verdict, plateaued, direction)


def per_seed_sd(verdict: Verdict, confidence: float = 0.95) -> float:
    """The seed-to-seed standard deviation s_d of a verdict's paired differences, read back from its interval::

        s_d = h * sqrt(n) / t_{(1 + confidence) / 2, n - 1}

    (the inverse of :func:`paired_interval`'s half-width; ``confidence`` must be the one the verdict used)."""
    if verdict.n < 2 or not math.isfinite(verdict.half_width):
        raise ValueError(f"{verdict.claim!r}: no interval (n = {verdict.n}), so no spread to read back")
    return verdict.half_width * math.sqrt(verdict.n) / scipy_stats.t.ppf(0.5 + confidence / 2, verdict.n - 1)


def power(diff: float, sd: float, n: int, confidence: float = 0.95) -> float:
    """The probability that ``n`` paired seeds resolve a true mean difference ``diff`` with per-seed spread
    ``sd``: their interval excludes 0 on ``diff``'s side (Cohen 1988, ch. 2)::

        t_n   = d_n / (s_d / sqrt(n))                 the paired t statistic of n seeds
        t_n  ~ noncentral t(df = n - 1, nc = |diff| * sqrt(n) / sd)
        power = P(t_n > t_{(1 + confidence) / 2, n - 1})

    For a decided verdict, 1 - power (at its own difference, spread and n) is the chance that a rerun of the
    same design (other seeds, another thread count) leaves it "not resolved"; optimistic, since a difference
    that was decided tends to be an overestimate.
    """
    if n < 2 or sd <= 0:
        raise ValueError(f"power needs n >= 2 seeds and a positive sd; got n={n}, sd={sd}")
    critical = scipy_stats.t.ppf(0.5 + confidence / 2, n - 1)
    return float(scipy_stats.nct.sf(critical, n - 1, abs(diff) * math.sqrt(n) / sd))


def seeds_for_power(diff: float, sd: float, target: float = 0.8, confidence: float = 0.95,
                    most: int = 1000) -> int | None:
    """The fewest paired seeds n whose :func:`power` for a true difference ``diff`` with per-seed spread ``sd``
    reaches ``target``. For |diff| / sd = 0.5, 0.8 and 1.0 at 80% this gives 34, 15 and 10 seeds, the paired
    t-test's textbook sample sizes. A planning number: it takes the measured difference and spread as the
    truth, and a difference measured on few seeds is itself uncertain. ``None`` when ``diff`` is 0 or
    ``most`` seeds do not reach ``target``.
    """
    if not 0 < target < 1 or sd <= 0:
        raise ValueError(f"the target power must lie in (0, 1) and sd be positive; got target={target}, sd={sd}")
    if diff == 0:
        return None
    return next((n for n in range(2, most + 1) if power(diff, sd, n, confidence) >= target), None)


def seeds_to_decide(verdict: Verdict | dict[str, Any], target: float = 0.8, confidence: float = 0.95,
                    most: int = 1000) -> int | None:
    """The paired seeds that would resolve a verdict's claim with probability ``target``, if its measured mean
    difference d and per-seed spread s_d were the truth: :func:`seeds_for_power` (d, :func:`per_seed_sd`)::

        n* = min{ n : power(d, s_d, n) >= target }

    ``verdict`` is a :class:`Verdict` or its ``as_dict`` row (a notebook's ``claims`` list). ``None`` when the
    verdict has no interval to read a spread from (fewer than 2 seeds), when d or s_d is 0, or when ``most``
    seeds would not reach ``target`` (the difference is tiny next to its spread).
    """
    verdict = Verdict.from_dict(verdict) if isinstance(verdict, dict) else verdict
    if verdict.n < 2 or not math.isfinite(verdict.half_width) or verdict.half_width <= 0:
        return None
    return seeds_for_power(verdict.diff, per_seed_sd(verdict, confidence), target, confidence, most)


def claims_table(verdicts: Iterable[Verdict]):
    """The notebook's "paper vs this run" rows as a pandas DataFrame (one row per verdict)."""
    import pandas as pd

    return pd.DataFrame([v.as_dict() for v in verdicts])
