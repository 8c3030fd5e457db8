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

# Aff-Wild2 marks a missing label with -1 (AU, EXPR) or -5 (VA). Each masked loss equals the plain loss
# on the labelled entries alone, sends no gradient to the missing ones, and is 0 with zero gradient
# (never NaN) when nothing in the batch is labelled.

def _nothing_labelled(x: Tensor) -> Tensor:
    """A 0 that keeps ``x`` in the graph (its gradient is exactly zero)."""
    return (x * 0.0).sum()


def masked_au_bce(logits: Tensor, targets: Tensor) -> Tensor:
    """Binary cross-entropy over the labelled (frame, AU) entries; ``targets`` 0/1, -1 = missing.

    L = -(1/|M|) sum_{(n,k) in M} [y log s(z) + (1 - y) log(1 - s(z))], M = {targets != -1}.
    """
    mask = targets >= 0
    if not bool(mask.any()):
        return _nothing_labelled(logits)
    return F.binary_cross_entropy_with_logits(logits[mask], targets[mask].to(logits.dtype))


def masked_expr_ce(logits: Tensor, targets: Tensor, gamma: float = 0.0) -> Tensor:
    """Cross-entropy over the frames with an expression (``targets`` -1 = missing), mean over them.

    With ``gamma > 0`` it is the focal loss of Lin et al. (ICCV 2017): -(1 - p_t)^gamma log p_t,
    which down-weights the frames the model already gets right (the choice of the ABAW2 entry of
    Thinh et al.; gamma = 0 gives the plain cross-entropy).
    """
    mask = targets >= 0
    if not bool(mask.any()):
        return _nothing_labelled(logits)
    log_p = F.log_softmax(logits[mask], dim=-1).gather(1, targets[mask].long()[:, None])[:, 0]
    if gamma == 0.0:
        return -log_p.mean()
    return (-(1 - log_p.exp()) ** gamma * log_p).mean()


def masked_ccc_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Mean over the dimensions (valence, arousal) of 1 - CCC on that dimension's labelled frames.

    ``pred``/``target`` are (N, D); ``target == -5`` is missing, per dimension. A dimension with no
    labelled frame is left out of the mean; none at all gives 0. The CCC loss itself is the one of
    the Regression section (for now ``fer_utils.models.two_level.ccc_loss``, moving here).
    """
    from fer_utils.models.two_level import ccc_loss  # moves to the Regression section above

    losses = []
    for d in range(target.shape[-1]):
        mask = target[:, d] != -5
        if bool(mask.any()):
            losses.append(ccc_loss(pred[mask, d], target[mask, d]))
    return torch.stack(losses).mean() if losses else _nothing_labelled(pred)


def masked_mse(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """(1/|M|) sum_{n in M} mean_d (pred_nd - target_nd)^2 over the rows ``mask`` (N,) selects; none -> 0.

    The mean teacher's consistency term (Tarvainen & Valpola 2017), applied by the ABAW2 entry of
    Wang et al. (arXiv:2107.04225) only to the tasks a frame has no label for.
    """
    if not bool(mask.any()):
        return _nothing_labelled(pred)
    return F.mse_loss(pred[mask], target[mask])


def soft_expr_kl(student_logits: Tensor, teacher_logits: Tensor, temperature: float = 1.5) -> Tensor:
    """Distillation: KL(softmax(t / T) || softmax(s / T)) T^2, mean over frames (Hinton et al. 2015;
    T = 1.5 in Deng et al., FG 2020). An empty batch gives 0."""
    if student_logits.shape[0] == 0:
        return _nothing_labelled(student_logits)
    t = temperature
    return F.kl_div(F.log_softmax(student_logits / t, -1), F.softmax(teacher_logits / t, -1),
                    reduction="batchmean") * t * t


def soft_au_bce(student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
    """Distillation for AUs: BCE against the teacher's sigmoid probabilities (Deng et al., FG 2020)."""
    if student_logits.numel() == 0:
        return _nothing_labelled(student_logits)
    return F.binary_cross_entropy_with_logits(student_logits, torch.sigmoid(teacher_logits))



# ---------------------------------------------------------------------------
# Noisy labels (SCN) and region attention (RAN), notebook 08
# ---------------------------------------------------------------------------
