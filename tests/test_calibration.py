"""fer_utils.calibration (ECE, MCE, reliability table, temperature scaling, Brier) and viz.plot_reliability.

Every metric is checked against a hand-computed value or an independent implementation (a plain loop over
the formula, scikit-learn), and on synthetic predictions whose calibration is known by construction."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from scipy.special import softmax as scipy_softmax  # noqa: E402
from sklearn.metrics import brier_score_loss, log_loss  # noqa: E402

from fer_utils import calibration as cal  # noqa: E402
from fer_utils import viz  # noqa: E402

# 5 samples, 3 classes; 2 bins (0, 0.5], (0.5, 1]
HAND_PROBS = np.array([[0.4, 0.3, 0.3],     # conf 0.4, predicts 0, label 0: right  -> bin 0
                       [0.3, 0.4, 0.3],     # conf 0.4, predicts 1, label 0: wrong  -> bin 0
                       [0.5, 0.25, 0.25],   # conf 0.5 (right edge of bin 0), right -> bin 0
                       [0.7, 0.2, 0.1],     # conf 0.7, right                       -> bin 1
                       [0.1, 0.9, 0.0]])    # conf 0.9, predicts 1, label 2: wrong  -> bin 1
HAND_LABELS = np.array([0, 0, 0, 0, 2])


def _draw_labels(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One label per row drawn from that row's probabilities (so the probabilities are calibrated)."""
    u = rng.random(len(probs))[:, None]
    return np.minimum((np.cumsum(probs, axis=1) < u).sum(axis=1), probs.shape[1] - 1)


@pytest.fixture(scope="module")
def world():
    """True logits z (N, 7) and labels drawn from softmax(z): softmax(z) is calibrated by construction."""
    rng = np.random.default_rng(0)
    z = rng.normal(scale=1.5, size=(60_000, 7))
    return z, _draw_labels(scipy_softmax(z, axis=1), rng)


def _loop_ece(probs: np.ndarray, labels: np.ndarray, n_bins: int) -> tuple[float, float]:
    """ECE and MCE written straight from the formula (bins ((m-1)/M, m/M], conf 0 in bin 1)."""
    conf, right = probs.max(1), probs.argmax(1) == labels
    ece, mce = 0.0, 0.0
    for m in range(n_bins):
        lo, hi = m / n_bins, (m + 1) / n_bins
        inside = (conf > lo) & (conf <= hi) | ((m == 0) & (conf == 0))
        if inside.any():
            gap = abs(right[inside].mean() - conf[inside].mean())
            ece, mce = ece + inside.sum() / len(conf) * gap, max(mce, gap)
    return ece, mce


def test_hand_computed_table_ece_and_mce():
    table = cal.reliability(HAND_PROBS, HAND_LABELS, n_bins=2)
    np.testing.assert_array_equal(table.count, [3, 2])
    np.testing.assert_allclose(table.confidence, [1.3 / 3, 0.8])
    np.testing.assert_allclose(table.accuracy, [2 / 3, 0.5])
    # ECE = 3/5 |2/3 - 1.3/3| + 2/5 |0.5 - 0.8| = 0.14 + 0.12
    assert cal.expected_calibration_error(HAND_PROBS, HAND_LABELS, n_bins=2) == pytest.approx(0.26)
    assert cal.maximum_calibration_error(HAND_PROBS, HAND_LABELS, n_bins=2) == pytest.approx(0.3)
    rows = table.rows()
    assert [(r["low"], r["high"], r["count"]) for r in rows] == [(0.0, 0.5, 3), (0.5, 1.0, 2)]


@pytest.mark.parametrize("n_bins", [1, 5, 15, 20])
def test_ece_and_mce_equal_a_plain_loop_over_the_formula(n_bins):
    rng = np.random.default_rng(n_bins)
    probs = scipy_softmax(rng.normal(scale=2.0, size=(3000, 5)), axis=1)
    labels = rng.integers(0, 5, size=3000)
    ece, mce = _loop_ece(probs, labels, n_bins)
    table = cal.reliability(probs, labels, n_bins)
    assert table.count.sum() == 3000 and len(table.count) == n_bins
    assert table.ece == pytest.approx(ece, abs=1e-12) and table.mce == pytest.approx(mce, abs=1e-12)
    assert np.isnan(table.accuracy[table.count == 0]).all()


def test_calibrated_predictions_have_ece_near_zero(world):
    z, y = world
    probs = cal.softmax(z)
    assert cal.expected_calibration_error(probs, y) < 0.01
    # the same probabilities scored against labels that ignore them are far from calibrated
    shuffled = np.random.default_rng(1).permutation(y)
    assert cal.expected_calibration_error(probs, shuffled) > 0.2


@pytest.mark.parametrize("scale, side", [(3.0, "over"), (1 / 3, "under")])
def test_temperature_scaling_fitted_on_one_half_fixes_the_other(world, scale, side):
    """Logits scale * z are over-confident for scale > 1 (T* > 1 undoes them) and under-confident for
    scale < 1 (T* < 1); T fitted on the first half lowers ECE on the second half."""
    z, y = world
    logits, half = scale * z, len(y) // 2
    t = cal.fit_temperature(logits[:half], y[:half])
    assert (t > 1) if side == "over" else (t < 1)
    assert t == pytest.approx(scale, rel=0.05)      # the scale that was applied comes back
    before = cal.expected_calibration_error(cal.softmax(logits[half:]), y[half:])
    after = cal.expected_calibration_error(cal.apply_temperature(logits[half:], t), y[half:])
    assert before > 0.05 and after < 0.015 and after < before / 4
    nll = cal.negative_log_likelihood
    assert nll(logits[half:], y[half:], t) < nll(logits[half:], y[half:])


def test_calibrated_logits_get_t_near_one_and_argmax_is_kept(world):
    z, y = world
    t = cal.fit_temperature(z, y)
    assert t == pytest.approx(1.0, abs=0.05)
    for temperature in (0.2, t, 7.0):
        np.testing.assert_array_equal(cal.softmax(z, temperature).argmax(1), z.argmax(1))


def test_fit_is_deterministic_and_a_minimum_of_the_nll(world):
    z, y = world
    logits, labels = 2.0 * z[:5000], y[:5000]
    t = cal.fit_temperature(logits, labels)
    assert cal.fit_temperature(logits, labels) == t
    nll = cal.negative_log_likelihood(logits, labels, t)
    assert nll <= cal.negative_log_likelihood(logits, labels, t * 1.02)
    assert nll <= cal.negative_log_likelihood(logits, labels, t / 1.02)


def test_fit_fails_loudly_when_the_best_t_is_at_the_bracket_edge():
    """Labels opposite to the logits: NLL falls all the way to T -> infinity (uniform probabilities)."""
    z = np.random.default_rng(2).normal(size=(500, 4))
    with pytest.raises(RuntimeError, match="interior minimum"):
        cal.fit_temperature(z, z.argmin(1))


def test_softmax_and_nll_match_scipy_and_sklearn():
    rng = np.random.default_rng(3)
    z, y = rng.normal(scale=3, size=(400, 7)), rng.integers(0, 7, 400)
    np.testing.assert_allclose(cal.softmax(z, 2.5), scipy_softmax(z / 2.5, axis=1), atol=1e-12)
    np.testing.assert_allclose(cal.softmax(1000 * z).sum(1), 1.0)        # no overflow
    assert cal.negative_log_likelihood(z, y) == pytest.approx(log_loss(y, scipy_softmax(z, axis=1), labels=range(7)))


def test_brier_score():
    rng = np.random.default_rng(4)
    p1 = rng.random(200)
    y = (rng.random(200) < p1).astype(int)
    two = np.stack([1 - p1, p1], axis=1)
    assert cal.brier_score(two, y) == pytest.approx(2 * brier_score_loss(y, p1))   # sklearn scores one column
    labels = np.array([0, 3, 6])
    assert cal.brier_score(np.eye(7)[labels], labels) == 0.0
    assert cal.brier_score(np.eye(7)[(labels + 1) % 7], labels) == pytest.approx(2.0)   # sure and wrong
    assert cal.brier_score(np.full((3, 7), 1 / 7), labels) == pytest.approx(1 - 1 / 7)  # (1-1/C)^2 + (C-1)/C^2


@pytest.mark.parametrize("call, match", [
    (lambda: cal.expected_calibration_error(HAND_PROBS, HAND_LABELS[:4]), r"one label per row \(5 rows\)"),
    (lambda: cal.expected_calibration_error(HAND_PROBS * 1.1, HAND_LABELS), "must sum to 1"),
    (lambda: cal.expected_calibration_error(HAND_PROBS - 0.2, HAND_LABELS), r"in \[0, 1\].*not logits"),
    (lambda: cal.expected_calibration_error(HAND_PROBS, [0, 1, 2, 3, 0]), r"\[0, 3\).*from 0 to 3"),
    (lambda: cal.expected_calibration_error(HAND_PROBS, [0, -1, 2, 1, 0]), r"\[0, 3\)"),
    (lambda: cal.expected_calibration_error(HAND_PROBS, [0, 1.5, 2, 1, 0]), "integer class indices"),
    (lambda: cal.expected_calibration_error(HAND_PROBS[:, 0], HAND_LABELS), r"\(N, C\)"),
    (lambda: cal.expected_calibration_error(HAND_PROBS, HAND_LABELS, n_bins=0), "positive integer"),
    (lambda: cal.brier_score(HAND_PROBS[:, :2], [0, 0, 0, 0, 1]), "row 0 sums to 0.700000"),
    (lambda: cal.softmax(np.ones((2, 3)), temperature=0), "temperature must be a finite number > 0"),
    (lambda: cal.fit_temperature(np.full((2, 3), np.nan), [0, 1]), "logits must be finite"),
    (lambda: cal.fit_temperature(np.ones((4, 3)), [0, 1, 2]), r"one label per row \(4 rows\)"),
    (lambda: cal.fit_temperature(np.ones((4, 3)), [0, 1, 2, 0], bounds=(2.0, 1.0)), "0 < low < high"),
])
def test_bad_inputs_say_what_was_expected(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_reliability_plot_draws_one_bar_per_filled_bin():
    """Confidences in three of ten bins: three bars at the bins' accuracies, the diagonal, labelled axes
    and a colour bar for the counts."""
    conf = np.array([0.55, 0.58, 0.72, 0.75, 0.78, 0.95])
    probs = np.stack([conf, 1 - conf], axis=1)
    labels = np.array([0, 1, 0, 0, 1, 0])
    fig, ax = plt.subplots()
    try:
        assert viz.plot_reliability(ax, probs, labels, n_bins=10) is ax
        bars = ax.patches
        assert len(bars) == 3
        np.testing.assert_allclose([b.get_x() for b in bars], [0.5, 0.7, 0.9])
        np.testing.assert_allclose([b.get_height() for b in bars], [0.5, 2 / 3, 1.0])
        assert ax.get_xlabel() and ax.get_ylabel()
        assert any(np.allclose(line.get_xydata(), [[0, 0], [1, 1]]) for line in ax.get_lines())
        assert len(fig.axes) == 2 and fig.axes[1].get_ylabel() == "samples in the bin"
        ece = cal.expected_calibration_error(probs, labels, 10)
        assert f"ECE = {ece:.3f}" in ax.get_title()
    finally:
        plt.close(fig)
