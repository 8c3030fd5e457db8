"""fer_utils.fairness: SynthFaces person attributes, per-group metrics, and group gaps decided by the
course's one verdict rule (stats.compare) over paired seeds, on predictions whose gap is known by
construction."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from fer_utils import calibration, fairness, stats
from fer_utils.data.synth_sample import SKIN_TONES, _palette, make_identity
from fer_utils.data.synthetic import SynthFaces

C = 7


def _predictions(labels: np.ndarray, right: np.ndarray, confidence: float = 0.8) -> np.ndarray:
    """(N, C) probabilities: ``confidence`` on the label where ``right``, on the next class otherwise."""
    target = np.where(right, labels, (labels + 1) % C)
    probs = np.full((len(labels), C), (1 - confidence) / (C - 1))
    probs[np.arange(len(labels)), target] = confidence
    return probs


def _run(n_right_a: int, n_right_b: int, n: int = 100, seed: int = 0):
    """One seed's (probs, labels, groups): n items of group "A" (n_right_a right) and n of "B"."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, C, size=2 * n)
    right = np.zeros(2 * n, bool)
    right[rng.choice(n, n_right_a, replace=False)] = True
    right[n + rng.choice(n, n_right_b, replace=False)] = True
    groups = np.array(["A"] * n + ["B"] * n, dtype=object)
    order = rng.permutation(2 * n)                      # groups interleaved, as in a real test set
    return _predictions(labels, right)[order], labels[order], groups[order]


def test_skin_tone_recovers_the_palette_position():
    for seed, identity in [(0, 0), (0, 7), (3, 11), (5, 2)]:
        ident = make_identity(seed, identity)
        t = fairness.skin_tone(ident)
        assert 0.0 <= t <= 1.0
        np.testing.assert_allclose(_palette(SKIN_TONES, t), ident.skin, atol=1e-9)
    lightest, darkest = (replace(make_identity(0, 0), skin=tuple(SKIN_TONES[k])) for k in (0, -1))
    assert fairness.skin_tone(lightest) == pytest.approx(0.0) and fairness.skin_tone(darkest) == pytest.approx(1.0)
    middle = replace(make_identity(0, 0), skin=tuple(_palette(SKIN_TONES, 0.6)))
    assert fairness.skin_tone(middle) == pytest.approx(0.6)


def test_attribute_values_read_the_generator():
    ids = [4, 0, 4, 9]
    np.testing.assert_array_equal(fairness.attribute_values(2, ids, "age"), [make_identity(2, j).age for j in ids])
    np.testing.assert_array_equal(fairness.attribute_values(2, ids, "hair_style"),
                                  [make_identity(2, j).hair_style for j in ids])
    with pytest.raises(ValueError, match="skin_tone.*no other person attributes.*gender"):
        fairness.attribute_values(2, ids, "gender")


def test_to_groups_edges_and_errors():
    np.testing.assert_array_equal(fairness.to_groups([0.0, 0.49, 0.5, 1.0], (0.5,), ("lighter", "darker")),
                                  ["lighter", "lighter", "darker", "darker"])
    np.testing.assert_array_equal(fairness.to_groups([0, 1, 2], *fairness.GROUPS["hair_style"]),
                                  ["short", "long", "shaved"])
    with pytest.raises(ValueError, match="1 edges make 2 groups, got 3 names"):
        fairness.to_groups([0.1], (0.5,), ("a", "b", "c"))
    with pytest.raises(ValueError, match="increase strictly"):
        fairness.to_groups([0.1], (0.5, 0.2), ("a", "b", "c"))


@pytest.mark.parametrize("attribute", fairness.ATTRIBUTES)
def test_dataset_groups_follow_identities(attribute):
    ds = SynthFaces(300, seed=3)
    groups = fairness.dataset_groups(ds, attribute)
    assert groups.shape == (300,) and set(groups) <= set(fairness.GROUPS[attribute][1])
    for j in np.unique(ds.identities):                   # one person, one group
        assert len(set(groups[ds.identities == j])) == 1


def test_group_metrics_by_hand():
    labels = np.array([0, 1, 2, 3, 4, 5])
    right = np.array([True, True, False, True, False, False])
    groups = np.array(["a", "a", "a", "b", "b", "b"])
    out = fairness.group_metrics(_predictions(labels, right, 0.9), labels, groups)
    assert list(out) == ["a", "b"]
    assert out["a"]["n"] == 3 and out["a"]["accuracy"] == pytest.approx(2 / 3)
    assert out["b"]["accuracy"] == pytest.approx(1 / 3)
    assert out["a"]["ece"] == pytest.approx(abs(0.9 - 2 / 3)) and out["b"]["ece"] == pytest.approx(0.9 - 1 / 3)
    with pytest.raises(ValueError, match=r"one group per row \(6 rows\)"):
        fairness.group_metrics(_predictions(labels, right), labels, groups[:5])


def test_a_group_worse_by_construction_is_found():
    """Group B is right on 70 of 100 items and A on 88-92 in every seed: A > B, decided."""
    runs = [_run(a, 70, seed=s) for s, a in enumerate([90, 88, 92, 89, 91])]
    v = fairness.group_gap(runs, "A", "B")
    assert isinstance(v, stats.Verdict) and v.verdict == "yes" and v.n == 5
    assert v.diff == pytest.approx(0.20) and (v.arm_a, v.arm_b) == ("A", "B") and v.ci_low > 0
    assert fairness.group_gap(runs, "A", "B", direction="less").verdict == "opposite"
    reverse = fairness.group_gap(runs, "B", "A", direction="less", dose="lab", plateaued=[True] * 5)
    assert reverse.verdict == "yes" and reverse.diff == pytest.approx(-0.20) and reverse.dose == "lab"
    assert reverse.as_dict()["budget_limited"] is False
    # exactly the course's rule on the per-seed accuracies, nothing else
    a, b = fairness.per_seed(runs, "A"), fairness.per_seed(runs, "B")
    np.testing.assert_allclose(a, [0.90, 0.88, 0.92, 0.89, 0.91])
    assert v == stats.compare(a, b, claim=v.claim, arm_a="A", arm_b="B")


def test_equal_groups_are_not_resolved():
    """The same accuracy on average: per-seed differences -1, +3, -2, +3, -3, 0 (out of 100)."""
    runs = [_run(a, b, seed=10 + s) for s, (a, b) in enumerate(zip([80, 82, 78, 81, 79, 80], [81, 79, 80, 78, 82, 80]))]
    v = fairness.group_gap(runs, "A", "B")
    assert v.verdict == "not resolved" and v.diff == pytest.approx(0.0, abs=1e-12) and v.ci_low < 0 < v.ci_high


def test_random_predictions_with_a_noisier_group():
    """Sampled (not counted) correctness, A right with chance 0.85 and B 0.6, 400 items each, 5 seeds."""
    runs = []
    for s in range(5):
        rng = np.random.default_rng(100 + s)
        labels, groups = rng.integers(0, C, 800), np.repeat(["A", "B"], 400)
        right = rng.random(800) < np.where(groups == "A", 0.85, 0.6)
        runs.append((_predictions(labels, right, 0.7), labels, groups))
    assert fairness.group_gap(runs, "A", "B").verdict == "yes"
    # both groups predict with confidence 0.7: A is under-confident (0.85 right), B over-confident (0.6)
    ece = fairness.group_gap(runs, "A", "B", metric="ece", direction="less")
    assert ece.claim == "ece on A < ece on B" and ece.n == 5
    for group in "AB":      # every confidence is 0.7, one bin: ECE = |accuracy - 0.7|
        np.testing.assert_allclose(fairness.per_seed(runs, group, "ece"),
                                   np.abs(np.array(fairness.per_seed(runs, group)) - 0.7))


def test_group_gaps_against_a_reference():
    rng = np.random.default_rng(7)
    runs = []
    for s, (ra, rb, rc) in enumerate([(90, 70, 89), (91, 72, 92), (89, 69, 90), (90, 71, 91), (92, 70, 90)]):
        probs, labels, groups = _run(ra, rb, seed=20 + s)
        extra_labels = rng.integers(0, C, 100)
        extra_right = np.arange(100) < rc
        runs.append((np.vstack([probs, _predictions(extra_labels, extra_right)]),
                     np.concatenate([labels, extra_labels]), np.concatenate([groups, ["C"] * 100])))
    rows = fairness.group_gaps(runs, reference="A")
    assert [(v.arm_a, v.arm_b) for v in rows] == [("B", "A"), ("C", "A")]
    assert [v.verdict for v in rows] == ["yes", "not resolved"]     # B is worse than A; C is not


def test_missing_group_and_unknown_metric_are_errors():
    runs = [_run(90, 70, seed=s) for s in range(3)]
    probs, labels, groups = runs[1]
    runs[1] = (probs, labels, np.where(groups == "B", "A", groups))
    with pytest.raises(ValueError, match="group 'B' has no items in run 1"):
        fairness.group_gap(runs, "A", "B")
    with pytest.raises(ValueError, match="metric must be one of"):
        fairness.per_seed(runs, "A", metric="f1")
    with pytest.raises(ValueError, match="must sum to 1"):
        fairness.per_seed([(probs * 0.5, labels, groups)], "A")


def test_group_metrics_agree_with_calibration_on_the_whole_set():
    """One group holding everything: its accuracy and ECE are the set's."""
    probs, labels, _ = _run(85, 60, seed=5)
    out = fairness.group_metrics(probs, labels, ["all"] * len(labels))
    assert out["all"]["ece"] == pytest.approx(calibration.expected_calibration_error(probs, labels))
    assert out["all"]["accuracy"] == pytest.approx(145 / 200)
