"""How far to trust a classifier's probabilities: calibration error, reliability tables, temperature scaling
and the Brier score, each with its formula.

Notation: N samples, C classes, ``p_i`` the (C,) probability row of sample i, ``y_i`` its integer label,
``conf_i = max_c p_ic`` its confidence, ``yhat_i = argmax_c p_ic`` its predicted class, ``z_i`` its logits.

Confidence bins (M equal-width bins on [0, 1]; Naeini, Cooper and Hauskrecht, AAAI 2015; Guo, Pleiss, Sun
and Weinberger, "On Calibration of Modern Neural Networks", ICML 2017, section 2)::

    I_m     = ((m-1)/M, m/M]                       bin m = 1..M (a confidence of exactly 0 goes to bin 1)
    B_m     = { i : conf_i in I_m }
    acc(B_m)  = (1/|B_m|) sum_{i in B_m} [yhat_i == y_i]
    conf(B_m) = (1/|B_m|) sum_{i in B_m} conf_i
    ECE     = sum_m (|B_m| / N) |acc(B_m) - conf(B_m)|           (empty bins add 0)
    MCE     = max_{m : |B_m| > 0} |acc(B_m) - conf(B_m)|

A perfectly calibrated model (P(yhat = y | conf = q) = q for every q) has ECE = MCE = 0 in expectation;
a finite sample leaves a small positive ECE (each bin's accuracy is a binomial estimate).

Temperature scaling (Guo et al. 2017, section 4.2): one scalar T > 0 divides the logits,
``q_i = softmax(z_i / T)``, with T fitted on held-out (validation) data by minimising the negative log
likelihood ``NLL(T) = -(1/N) sum_i log softmax(z_i / T)_{y_i}``. T > 1 softens over-confident
probabilities, T < 1 sharpens under-confident ones; dividing by T > 0 keeps every argmax, so accuracy is
unchanged.

Brier score (Brier, "Verification of forecasts expressed in terms of probability", Monthly Weather Review
78(1), 1950), multiclass form: ``BS = (1/N) sum_i sum_c (p_ic - [y_i == c])^2``, in [0, 2]; 0 for sure and
right. For two classes it is twice scikit-learn's binary ``brier_score_loss`` (which scores one column).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax

#: How far a probability row may sum from 1 (float32 softmax outputs are within ~1e-6).
SUM_TOLERANCE = 1e-3
#: The bracket that :func:`fit_temperature` searches, as (lowest T, highest T).
T_BOUNDS = (0.05, 20.0)


def _check_labels(labels, n: int, num_classes: int) -> np.ndarray:
    """Integer labels of shape (n,) in [0, num_classes), or a ValueError saying what was expected."""
    y = np.asarray(labels)
    if y.ndim != 1 or len(y) != n:
        raise ValueError(f"labels must be a 1-D array with one label per row ({n} rows), got shape {y.shape}")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        if not np.issubdtype(y.dtype, np.floating) or np.any(y != np.round(y)):
            raise ValueError(f"labels must be integer class indices in [0, {num_classes}), got dtype {y.dtype}")
    y = y.astype(np.int64)
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"labels must be class indices in [0, {num_classes}) (C = {num_classes} columns), "
                         f"got values from {y.min()} to {y.max()}")
    return y


def check_probabilities(probs, labels=None) -> tuple[np.ndarray, np.ndarray | None]:
    """``probs`` as a float64 (N, C) array of rows in [0, 1] summing to 1 (within :data:`SUM_TOLERANCE`),
    and ``labels`` (if given) as int64 (N,) in [0, C); a ValueError says what was expected otherwise."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] == 0 or p.shape[1] < 2:
        raise ValueError(f"probabilities must be a non-empty (N, C) array with C >= 2 classes, got shape {p.shape}")
    if not np.all(np.isfinite(p)) or p.min() < 0 or p.max() > 1:
        raise ValueError("probabilities must be finite and in [0, 1] (pass softmax outputs, not logits)")
    sums = p.sum(axis=1)
    worst = int(np.argmax(np.abs(sums - 1)))
    if abs(sums[worst] - 1) > SUM_TOLERANCE:
        raise ValueError(f"each probability row must sum to 1 (within {SUM_TOLERANCE}); row {worst} sums to "
                         f"{sums[worst]:.6f} (pass softmax outputs, not logits or sigmoid scores)")
    y = None if labels is None else _check_labels(labels, p.shape[0], p.shape[1])
    return p, y


def _check_logits(logits, labels=None) -> tuple[np.ndarray, np.ndarray | None]:
    """``logits`` as a finite float64 (N, C) array and ``labels`` as int64 (N,) in [0, C)."""
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim != 2 or z.shape[0] == 0 or z.shape[1] < 2:
        raise ValueError(f"logits must be a non-empty (N, C) array with C >= 2 classes, got shape {z.shape}")
    if not np.all(np.isfinite(z)):
        raise ValueError("logits must be finite (a NaN or infinite logit means the model diverged)")
    y = None if labels is None else _check_labels(labels, z.shape[0], z.shape[1])
    return z, y


def _check_temperature(temperature: float) -> float:
    t = float(temperature)
    if not (math.isfinite(t) and t > 0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    return t


def softmax(logits, temperature: float = 1.0) -> np.ndarray:
    """``softmax(z / T)_c = exp(z_c / T) / sum_k exp(z_k / T)`` row by row (computed stably in log space)."""
    z, _ = _check_logits(logits)
    return np.exp(log_softmax(z / _check_temperature(temperature), axis=1))


apply_temperature = softmax  #: temperature scaling's output, ``softmax(z / T)``, under its usual name


@dataclass(frozen=True)
class Reliability:
    """The per-bin table of a reliability diagram (M equal-width confidence bins; module docs).

    ``edges`` (M+1,) bin edges; ``count`` (M,) samples per bin |B_m|; ``confidence`` (M,) conf(B_m) and
    ``accuracy`` (M,) acc(B_m), NaN for an empty bin."""

    edges: np.ndarray
    count: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray

    @property
    def gap(self) -> np.ndarray:
        """(M,) |acc(B_m) - conf(B_m)| (NaN for an empty bin)."""
        return np.abs(self.accuracy - self.confidence)

    @property
    def ece(self) -> float:
        """ECE = sum_m (|B_m| / N) |acc(B_m) - conf(B_m)|."""
        filled = self.count > 0
        return float(np.sum(self.count[filled] * self.gap[filled]) / self.count.sum())

    @property
    def mce(self) -> float:
        """MCE = max over non-empty bins of |acc(B_m) - conf(B_m)|."""
        return float(np.max(self.gap[self.count > 0]))

    def rows(self) -> list[dict[str, float]]:
        """One dict per bin (low, high, count, confidence, accuracy): the table to print."""
        return [{"low": float(lo), "high": float(hi), "count": int(n), "confidence": float(c), "accuracy": float(a)}
                for lo, hi, n, c, a in zip(self.edges[:-1], self.edges[1:], self.count, self.confidence, self.accuracy)]


def reliability(probs, labels, n_bins: int = 15) -> Reliability:
    """The reliability table of ``probs`` (N, C) against ``labels`` (N,) over ``n_bins`` equal-width
    confidence bins ((m-1)/M, m/M] (Guo et al. 2017 use M = 15)."""
    if int(n_bins) != n_bins or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    p, y = check_probabilities(probs, labels)
    conf, correct = p.max(axis=1), (p.argmax(axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, int(n_bins) + 1)
    # bin m holds (edges[m], edges[m+1]]: the first edge >= conf, minus one; conf = 0 joins bin 0
    which = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, int(n_bins) - 1)
    count = np.bincount(which, minlength=int(n_bins))
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = np.bincount(which, weights=conf, minlength=int(n_bins)) / count
        accuracy = np.bincount(which, weights=correct, minlength=int(n_bins)) / count
    return Reliability(edges, count, confidence, accuracy)


def expected_calibration_error(probs, labels, n_bins: int = 15) -> float:
    """ECE = sum_m (|B_m| / N) |acc(B_m) - conf(B_m)| over equal-width confidence bins (module docs;
    Naeini et al. 2015, Guo et al. 2017). :func:`reliability` gives the per-bin table behind it."""
    return reliability(probs, labels, n_bins).ece


def maximum_calibration_error(probs, labels, n_bins: int = 15) -> float:
    """MCE = max_m |acc(B_m) - conf(B_m)| over the non-empty bins (Naeini et al. 2015, Guo et al. 2017)."""
    return reliability(probs, labels, n_bins).mce


def brier_score(probs, labels) -> float:
    """Multiclass Brier score BS = (1/N) sum_i sum_c (p_ic - [y_i == c])^2, in [0, 2] (Brier 1950)."""
    p, y = check_probabilities(probs, labels)
    onehot = np.eye(p.shape[1])[y]
    return float(np.mean(np.sum((p - onehot) ** 2, axis=1)))


def negative_log_likelihood(logits, labels, temperature: float = 1.0) -> float:
    """NLL(T) = -(1/N) sum_i log softmax(z_i / T)_{y_i} (the cross-entropy; natural log)."""
    z, y = _check_logits(logits, labels)
    logp = log_softmax(z / _check_temperature(temperature), axis=1)
    return float(-np.mean(logp[np.arange(len(y)), y]))


def fit_temperature(logits, labels, bounds: tuple[float, float] = T_BOUNDS) -> float:
    """The temperature T* = argmin_{T in bounds} NLL(T) on held-out ``logits`` (N, C) and ``labels`` (N,)
    (Guo et al. 2017, section 4.2).

    A bounded one-dimensional search (``scipy.optimize.minimize_scalar(method="bounded")``, Brent's
    method on a fixed bracket: deterministic) over log T, where NLL is smooth and the bracket is symmetric
    in "softer" and "sharper". Fit on validation data, never on the data the ECE is then reported on.
    A T at the edge of ``bounds`` means the search was cut short: a RuntimeError says so.
    """
    z, y = _check_logits(logits, labels)
    low, high = (_check_temperature(b) for b in bounds)
    if not low < high:
        raise ValueError(f"bounds must be (low, high) with 0 < low < high, got {bounds!r}")
    rows = np.arange(len(y))

    def nll(log_t: float) -> float:
        return float(-np.mean(log_softmax(z / math.exp(log_t), axis=1)[rows, y]))

    result = minimize_scalar(nll, bounds=(math.log(low), math.log(high)), method="bounded",
                             options={"xatol": 1e-6})
    t = float(math.exp(result.x))
    if not result.success or min(t / low, high / t) < 1.001:
        raise RuntimeError(f"temperature search did not find an interior minimum in {bounds} (got T = {t:.4g}): "
                           "are the labels related to the logits at all?")
    return t
