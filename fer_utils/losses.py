"""Every loss of the course, written once, with the paper it comes from.

Models hold networks only; the losses they are trained with live here, and the
recipes in :mod:`fer_utils.recipes` combine them.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from fer_utils import metrics  # noqa: F401 (the CCC loss is 1 - metrics.ccc)


# ---------------------------------------------------------------------------
# Classification: cross-entropy variants
# ---------------------------------------------------------------------------


# ---------------------------------------------------------------------------
# Attention (DDAMFN's attention loss)
# ---------------------------------------------------------------------------


# ---------------------------------------------------------------------------
# Regression: valence and arousal (CCC loss, 2Att-2Mt)
# ---------------------------------------------------------------------------


# ---------------------------------------------------------------------------
# Multi-task with missing labels (ABAW, notebook 07)
# ---------------------------------------------------------------------------


# ---------------------------------------------------------------------------
# Noisy labels (SCN) and region attention (RAN), notebook 08
# ---------------------------------------------------------------------------


def rank_regularization(alpha: Tensor, beta: float = 0.7, margin: float = 0.15) -> Tensor:
    """SCN's rank regularisation (Wang et al., CVPR 2020, eq. 3).

    Sort the batch's importance weights ``alpha`` (N,) in descending order, take the
    top ``M = int(N * beta)`` as the high group and the rest as the low group, and
    ask their means to differ by at least ``margin`` (delta_1):

        L_RR = max(0, delta_1 - (mean(alpha_H) - mean(alpha_L)))

    ``int(N * beta)`` and the hinge follow the authors' ``src/train.py``. A batch of
    equal weights gives ``L_RR = delta_1`` (the gap is 0).
    """
    alpha = alpha.reshape(-1)
    n = alpha.numel()
    tops = int(n * beta)
    if not 0 < tops < n:
        raise ValueError(f"rank_regularization: batch of {n} with beta={beta} leaves an empty group "
                         f"(high group {tops}, low group {n - tops}); use a batch of at least 2 / (1 - beta)")
    ordered = alpha.sort(descending=True).values
    gap = ordered[:tops].mean() - ordered[tops:].mean()
    return torch.clamp(margin - gap, min=0.0)


def relabel(probabilities: Tensor, labels: Tensor, margin: float = 0.2,
            candidates: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """SCN's relabelling (Wang et al., CVPR 2020, eq. 5): new labels and the mask of changed ones.

    A sample whose most probable class beats the probability of its given label by
    more than ``margin`` (delta_2), ``P_max - P_label > delta_2``, takes the argmax as
    its label. ``candidates`` (bool, N) restricts the test to some samples (the
    paper: the low-importance group); ``None`` tests every sample (the authors' code).
    """
    p_max, predicted = probabilities.max(dim=1)
    p_label = probabilities.gather(1, labels.view(-1, 1)).squeeze(1)
    change = (p_max - p_label) > margin
    if candidates is not None:
        change = change & candidates
    return torch.where(change, predicted, labels), change


def low_importance_group(alpha: Tensor, beta: float = 0.7) -> Tensor:
    """Bool mask (N,) of the ``N - int(N * beta)`` samples with the lowest ``alpha`` (SCN's low group)."""
    alpha = alpha.reshape(-1)
    tops = int(alpha.numel() * beta)
    mask = torch.ones_like(alpha, dtype=torch.bool)
    mask[alpha.topk(tops).indices] = False
    return mask


def region_biased_loss(region_weights: Tensor, margin: float = 0.02) -> Tensor:
    """RAN's region-biased loss (Wang et al., TIP 2020): one crop should matter more than the whole face.

    ``region_weights`` (N, K+1) are the self-attention weights mu, column 0 the whole
    face and columns 1..K the crops:

        L_RB = mean_n max(0, margin - (max_k mu_{n,k} - mu_{n,0}))
    """
    if region_weights.ndim != 2 or region_weights.shape[1] < 2:
        raise ValueError("region_biased_loss: expected weights (batch, 1 + regions) with the whole face in "
                         f"column 0 and at least one region, got shape {tuple(region_weights.shape)}")
    gap = region_weights[:, 1:].max(dim=1).values - region_weights[:, 0]
    return torch.clamp(margin - gap, min=0.0).mean()
