"""Accuracy and calibration per group of people, and whether a gap between two groups is real.

SynthFaces draws each identity's look from a few generator attributes (:func:`fer_utils.data.synth_sample
.make_identity`); three of them describe the person and are used here:

- ``skin_tone``: the position t in [0, 1] along the generator's five-colour skin palette (0 lightest,
  1 darkest), recovered exactly from the identity's skin colour (:func:`skin_tone`);
- ``age``: the generator's "age" in [0, 1] (faint wrinkles at rest; drawn as u^2, so its median is 0.25);
- ``hair_style``: short, long or shaved.

SynthFaces has no gender, no ethnicity and no real people: groups here are groups of drawn colours and
shapes, a place to learn the method, not a statement about any population.

Per group g with items G (Buolamwini and Gebru, "Gender Shades", FAT* 2018, report accuracy this way)::

    acc_g = (1/|G|) sum_{i in G} [yhat_i == y_i]          and ECE_g, the ECE of the items of G alone

The gap between groups A and B is decided by the course's one verdict rule,
:func:`fer_utils.stats.compare`, over paired seeds: seed s trains one model, and both groups are scored
on that model's predictions, so ``d_s = acc_A(s) - acc_B(s)`` and the 95% interval of the mean of d_s
decides "yes" / "opposite" / "not resolved". No other verdict logic lives here.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

import numpy as np

from fer_utils import calibration, metrics, stats
from fer_utils.data.synth_sample import SKIN_TONES, Identity, make_identity

#: The attributes :func:`attribute_values` knows.
ATTRIBUTES = ("skin_tone", "age", "hair_style")
#: Default groups of each attribute: (upper edges of all groups but the last, group names).
GROUPS: dict[str, tuple[tuple[float, ...], tuple[str, ...]]] = {
    "skin_tone": ((0.5,), ("lighter", "darker")),
    "age": ((0.25,), ("younger", "older")),
    "hair_style": ((0.5, 1.5), ("short", "long", "shaved")),
}
#: Per-group metrics :func:`group_metrics` and :func:`group_gap` can compare.
METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "accuracy": lambda p, y: metrics.accuracy(y, p),
    "ece": lambda p, y: calibration.expected_calibration_error(p, y),
}

_PALETTE_LEVEL = SKIN_TONES.mean(axis=1)  # strictly decreasing from light to dark skin
_PALETTE_T = np.linspace(0.0, 1.0, len(SKIN_TONES))


def skin_tone(identity: Identity) -> float:
    """The skin palette position t in [0, 1] (0 lightest, 1 darkest) of a SynthFaces identity.

    The generator mixes neighbouring palette colours linearly, ``skin = c_k + f (c_{k+1} - c_k)``, and the
    palette's mean channel level falls strictly from light to dark, so inverting that level along the
    palette (piecewise linear) gives t back exactly."""
    level = float(np.mean(identity.skin))
    return float(np.interp(level, _PALETTE_LEVEL[::-1], _PALETTE_T[::-1]))


def attribute_values(seed: int, identities: Sequence[int] | np.ndarray, attribute: str) -> np.ndarray:
    """(N,) the value of ``attribute`` (one of :data:`ATTRIBUTES`) for each identity of dataset seed
    ``seed`` (``ds.identities`` and ``ds.seed`` of a SynthFaces give one value per item)."""
    if attribute not in ATTRIBUTES:
        raise ValueError(f"attribute must be one of {ATTRIBUTES} (SynthFaces has no other person attributes), "
                         f"got {attribute!r}")
    ids = np.asarray(identities, dtype=np.int64)
    read = {"skin_tone": skin_tone, "age": lambda ident: ident.age, "hair_style": lambda ident: ident.hair_style}
    per_id = {int(j): float(read[attribute](make_identity(int(seed), int(j)))) for j in np.unique(ids)}
    return np.array([per_id[int(j)] for j in ids], dtype=np.float64)


def to_groups(values, edges: Sequence[float], names: Sequence[str]) -> np.ndarray:
    """(N,) group names: ``names[k]`` for values in [edges[k-1], edges[k]) (the first group below
    ``edges[0]``, the last at or above ``edges[-1]``)."""
    if len(names) != len(edges) + 1:
        raise ValueError(f"{len(edges)} edges make {len(edges) + 1} groups, got {len(names)} names")
    if np.any(np.diff(edges) <= 0):
        raise ValueError(f"edges must increase strictly, got {list(edges)}")
    return np.asarray(names, dtype=object)[np.digitize(np.asarray(values, dtype=np.float64), edges)]


def dataset_groups(dataset: Any, attribute: str) -> np.ndarray:
    """(N,) the :data:`GROUPS` name of each item of a SynthFaces ``dataset`` (by its identity)."""
    values = attribute_values(dataset.seed, dataset.identities, attribute)
    return to_groups(values, *GROUPS[attribute])


def group_metrics(probs, labels, groups, n_bins: int = 15) -> dict[str, dict[str, float]]:
    """{group: {"n", "accuracy", "ece"}} for each group name in ``groups`` (N,), in sorted order.

    ECE per group uses ``n_bins`` bins on that group's items only: small groups give noisy ECE."""
    p, y = calibration.check_probabilities(probs, labels)
    g = _check_groups(groups, len(y))
    out = {}
    for name in sorted(set(g.tolist()), key=str):
        keep = g == name
        out[name] = {"n": int(keep.sum()), "accuracy": METRICS["accuracy"](p[keep], y[keep]),
                     "ece": calibration.expected_calibration_error(p[keep], y[keep], n_bins)}
    return out


def _check_groups(groups, n: int) -> np.ndarray:
    g = np.asarray(groups, dtype=object)
    if g.shape != (n,):
        raise ValueError(f"groups must give one group per row ({n} rows), got shape {g.shape}")
    return g


def per_seed(runs: Iterable[tuple[Any, Any, Any]], group: str, metric: str = "accuracy") -> list[float]:
    """``metric`` of ``group`` in each run (one run per seed: ``(probs, labels, groups)``)."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {tuple(METRICS)}, got {metric!r}")
    values = []
    for s, (probs, labels, groups) in enumerate(runs):
        p, y = calibration.check_probabilities(probs, labels)
        keep = _check_groups(groups, len(y)) == group
        if not keep.any():
            raise ValueError(f"group {group!r} has no items in run {s}: every seed must score every group")
        values.append(METRICS[metric](p[keep], y[keep]))
    return values


def group_gap(runs: Sequence[tuple[Any, Any, Any]], group_a: str, group_b: str, *, metric: str = "accuracy",
              claim: str | None = None, direction: str = "greater", dose: Any = None,
              plateaued: bool | Iterable[bool] | None = None) -> stats.Verdict:
    """The verdict on "``metric`` of ``group_a`` > (``direction="greater"``) or < (``"less"``) that of
    ``group_b``" by :func:`fer_utils.stats.compare` over paired seeds.

    ``runs``: one ``(probs (N, C), labels (N,), groups (N,))`` per seed, the predictions of that seed's
    model; per seed, d_s = metric_A(s) - metric_B(s). For ``metric="ece"`` lower is better: claim
    "A is better calibrated than B" with ``direction="less"``."""
    runs = list(runs)
    a, b = per_seed(runs, group_a, metric), per_seed(runs, group_b, metric)
    if claim is None:
        claim = f"{metric} on {group_a} {'>' if direction == 'greater' else '<'} {metric} on {group_b}"
    return stats.compare(a, b, claim=claim, arm_a=group_a, arm_b=group_b, direction=direction, dose=dose,
                         plateaued=plateaued)


def group_gaps(runs: Sequence[tuple[Any, Any, Any]], reference: str, *, metric: str = "accuracy",
               direction: str = "less", dose: Any = None,
               plateaued: bool | Iterable[bool] | None = None) -> list[stats.Verdict]:
    """One :func:`group_gap` verdict per group against ``reference`` (default claim: the group does worse
    than the reference, ``metric`` < for accuracy; pass ``direction="greater"`` for ECE)."""
    runs = list(runs)
    names = sorted({x for _, _, groups in runs for x in np.asarray(groups, dtype=object).tolist()} - {reference},
                   key=str)
    return [group_gap(runs, name, reference, metric=metric, direction=direction, dose=dose, plateaued=plateaued)
            for name in names]
