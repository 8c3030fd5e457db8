"""Every metric of the course, once, with its formula.

Notation: y are targets, p predictions, N samples, mu means, sigma^2
population variances, sigma_yp the covariance. Classification metrics take
integer labels; ``y_pred`` may also be a (N, C) score array (argmax is taken).
"""
from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import confusion_matrix as _sk_confusion
from sklearn.metrics import f1_score, recall_score


def _labels(y_pred: np.ndarray) -> np.ndarray:
    y_pred = np.asarray(y_pred)
    return y_pred.argmax(axis=1) if y_pred.ndim == 2 else y_pred.astype(int)


def _pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(y_pred, dtype=np.float64).ravel()
    if y.shape != p.shape or y.size == 0:
        raise ValueError(f"y_true and y_pred must be non-empty and the same length, got {y.size} and {p.size}")
    return y, p


def accuracy(y_true, y_pred) -> float:
    """Accuracy = (1/N) sum_i [argmax p_i == y_i]."""
    y, p = np.asarray(y_true).astype(int), _labels(y_pred)
    if y.shape != p.shape or y.size == 0:  # numpy would broadcast a single prediction against every target
        raise ValueError(f"y_true and y_pred must be non-empty and the same length, got {y.shape} and {p.shape}")
    return float(np.mean(p == y))


def macro_f1(y_true, y_pred, num_classes: int | None = None) -> float:
    """Macro F1 = (1/C) sum_c F1_c, F1_c = 2 P_c R_c / (P_c + R_c), P_c = TP/(TP+FP), R_c = TP/(TP+FN).

    Unweighted over classes; a class with no support and no prediction scores 0
    (scikit-learn's ``zero_division=0``). ``num_classes`` fixes C.
    """
    labels = None if num_classes is None else list(range(num_classes))
    return float(f1_score(np.asarray(y_true).astype(int), _labels(y_pred), average="macro",
                          labels=labels, zero_division=0))


def per_class_recall(y_true, y_pred, num_classes: int) -> np.ndarray:
    """R_c = TP_c / (TP_c + FN_c) for each class (scikit-learn's ``recall_score``); NaN for a class absent from y_true."""
    return recall_score(np.asarray(y_true).astype(int), _labels(y_pred), labels=list(range(num_classes)),
                        average=None, zero_division=np.nan)


def confusion_matrix(y_true, y_pred, num_classes: int, normalize: bool = False) -> np.ndarray:
    """C[i, j] = number of samples of true class i predicted as j (scikit-learn).

    ``normalize=True``: each row divided by its sum (the share of true class i predicted as j;
    scikit-learn's ``normalize="true"``), a row with no samples is all zeros.
    """
    return _sk_confusion(np.asarray(y_true).astype(int), _labels(y_pred), labels=list(range(num_classes)),
                         normalize="true" if normalize else None)


def rmse(y_true, y_pred) -> float:
    """RMSE = sqrt((1/N) sum_i (p_i - y_i)^2)."""
    y, p = _pair(y_true, y_pred)
    return float(np.sqrt(np.mean((p - y) ** 2)))


def pcc(y_true, y_pred) -> float:
    """Pearson rho = sum (y-mu_y)(p-mu_p) / sqrt(sum (y-mu_y)^2 sum (p-mu_p)^2); 0 if either is constant."""
    y, p = _pair(y_true, y_pred)
    dy, dp = y - y.mean(), p - p.mean()
    denom = np.sqrt(np.sum(dy**2) * np.sum(dp**2))
    return float(np.sum(dy * dp) / denom) if denom > 0 else 0.0


def _moments(x):
    """Mean and population variance of a 1-D numpy array or tensor."""
    return x.mean(), (x.var(unbiased=False) if isinstance(x, torch.Tensor) else x.var())


def ccc(y_true, y_pred, eps: float = 0.0):
    """Lin's concordance CCC = 2 sigma_yp / (sigma_y^2 + sigma_p^2 + (mu_y - mu_p)^2 + eps), in [-1, 1].

    Unlike PCC it penalises bias and scale: predicting 2*y + 1 has PCC 1 but CCC < 1.
    Two tensors give a 0-d tensor that gradients flow through (the CCC loss,
    :func:`fer_utils.losses.ccc_loss`, is ``1 - ccc``); anything else gives a float
    (0.0 when the denominator is 0).
    """
    if isinstance(y_true, torch.Tensor) and isinstance(y_pred, torch.Tensor):
        y, p = y_true.reshape(-1), y_pred.reshape(-1)
    else:
        y, p = _pair(y_true, y_pred)
    (mu_y, var_y), (mu_p, var_p) = _moments(y), _moments(p)
    cov = ((p - mu_p) * (y - mu_y)).mean()
    denom = var_p + var_y + (mu_p - mu_y) ** 2 + eps
    if isinstance(y, torch.Tensor):
        return 2 * cov / denom
    return float(2 * cov / denom) if denom > 0 else 0.0


def sagr(y_true, y_pred) -> float:
    """Sign agreement SAGR = (1/N) sum_i [sign(y_i) == sign(p_i)], with sign(0) taken as +1."""
    y, p = _pair(y_true, y_pred)
    return float(np.mean((y >= 0) == (p >= 0)))


def va_metrics(valence_true, valence_pred, arousal_true, arousal_pred) -> dict[str, float]:
    """RMSE, PCC, CCC and SAGR for valence and for arousal, keyed like ``valence_ccc``."""
    out: dict[str, float] = {}
    for name, y, p in (("valence", valence_true, valence_pred), ("arousal", arousal_true, arousal_pred)):
        for metric in (rmse, pcc, ccc, sagr):
            out[f"{name}_{metric.__name__}"] = metric(y, p)
    return out


# --- ABAW challenge scores (Kollias et al., ABAW2 at ICCV 2021) -----------------------------

def abaw_va_score(valence_true, valence_pred, arousal_true, arousal_pred) -> float:
    """P_VA = 0.5 (CCC_V + CCC_A), the mean (one public ABAW codebase, wtomin's ``VA_metric``, returns the sum)."""
    return 0.5 * (ccc(valence_true, valence_pred) + ccc(arousal_true, arousal_pred))


def abaw_expr_score(y_true, y_pred, num_classes: int = 7) -> float:
    """P_EXPR = 0.67 F1_macro(7 classes) + 0.33 Accuracy."""
    return 0.67 * macro_f1(y_true, y_pred, num_classes) + 0.33 * accuracy(y_true, y_pred)


def au_f1(au_true, au_pred, threshold: float = 0.5) -> float:
    """Mean over AUs of the binary F1 of each AU: (1/K) sum_k F1_k (``au_pred`` thresholded at ``threshold``)."""
    t = np.asarray(au_true).astype(int)
    p = (np.asarray(au_pred) >= threshold).astype(int)
    if t.ndim != 2 or t.shape != p.shape:
        raise ValueError(f"au_true and au_pred must be (N, K) of the same shape, got {t.shape} and {p.shape}")
    return float(np.mean([f1_score(t[:, k], p[:, k], zero_division=0) for k in range(t.shape[1])]))


def abaw_au_score(au_true, au_pred, threshold: float = 0.5) -> float:
    """P_AU = 0.5 F1_avg(AUs) + 0.5 Accuracy_total, Accuracy_total = correct (frame, AU) decisions / (N K)."""
    t = np.asarray(au_true).astype(int)
    p = (np.asarray(au_pred) >= threshold).astype(int)
    return 0.5 * au_f1(t, p, 0.5) + 0.5 * float(np.mean(t == p))
