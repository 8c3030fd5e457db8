"""Every loss of the course, written once, with the paper it comes from.

Models hold networks only; the losses they are trained with live here, and the
recipes in :mod:`fer_utils.recipes` combine them.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from fer_utils import metrics  # noqa: F401 (the CCC loss is 1 - metrics.ccc)
from fer_utils.models import logits_of


# ---------------------------------------------------------------------------
# Classification: cross-entropy variants
# ---------------------------------------------------------------------------

def cross_entropy(logits: Any, labels: Tensor) -> Tensor:
    """L_CE = -(1/N) sum_i log softmax(z_i)[y_i]; ``logits`` may be a model's whole output
    (read with :func:`fer_utils.models.logits_of`)."""
    return F.cross_entropy(logits_of(logits), labels)


def l2_penalty(model: torch.nn.Module) -> Tensor:
    """||w||^2 summed over every weight matrix and kernel (biases and BatchNorm excluded).

    Deep-Emotion (Minaee et al. 2019) trains with L_CE + lambda ||w||^2; with Adam,
    ``weight_decay = 2 lambda`` adds the same gradient (see :mod:`fer_utils.recipes.deep_emotion`).
    """
    return sum((p**2).sum() for name, p in model.named_parameters() if name.endswith("weight") and p.ndim > 1)


# ---------------------------------------------------------------------------
# Attention (DDAMFN's attention loss)
# ---------------------------------------------------------------------------

import sys  # noqa: E402 (this section's own imports, see the contract above)
from typing import Sequence  # noqa: E402

#: DDAMFN's weight of the attention loss (the authors' RAF-DB script).
ATTENTION_WEIGHT = 0.1


def attention_loss(head_maps: Sequence[Tensor]) -> Tensor:
    """DDAMFN's attention (diversity) loss (Zhang et al. 2023): P / (S + eps).

    S = sum over head pairs i < j of MSE(a_i, a_j) (mean over all elements), P = number of pairs,
    eps = sys.float_info.epsilon. Heads that disagree more give a smaller loss. With fewer than two
    heads it is 0 (the authors return the int 0; we return a 0-d tensor so ``.item()`` works).
    """
    if len(head_maps) < 2:
        device = head_maps[0].device if len(head_maps) else None
        return torch.zeros((), device=device)
    total, pairs = 0.0, 0
    for i in range(len(head_maps)):
        for j in range(i + 1, len(head_maps)):
            total = total + F.mse_loss(head_maps[i], head_maps[j])
            pairs += 1
    return pairs / (total + sys.float_info.epsilon)


def ddamfn_loss(outputs: Any, targets: Tensor, weight: float = ATTENTION_WEIGHT) -> Tensor:
    """L = CE(logits, y) + weight * attention_loss(head_maps); ``outputs`` is DDAMFN's output (logits, features, heads)."""
    return F.cross_entropy(logits_of(outputs), targets) + weight * attention_loss(outputs.heads)


# ---------------------------------------------------------------------------
# Regression: valence and arousal (CCC loss, 2Att-2Mt)
# ---------------------------------------------------------------------------

from typing import Any, Callable  # noqa: E402 (this section's own imports)


def ccc_loss(pred: Tensor, target: Tensor, eps: float = 1e-8) -> Tensor:
    """L_CCC = 1 - CCC(y, p), with Lin's CCC from :func:`fer_utils.metrics.ccc` on the batch.

    Unlike MSE, which an unsure model minimises by shrinking its predictions towards the mean, it
    rewards predictions that match the targets' spread and mean as well as their correlation.
    ``eps`` keeps the ratio finite on a constant batch.
    """
    return 1 - metrics.ccc(target.float(), pred.float(), eps=eps)


#: The target columns of a (batch, 2) valence-arousal tensor.
VA_COLUMNS = {"valence": 0, "arousal": 1}


def va_loss(kind: str = "mse", tasks: Sequence[str] = ("valence", "arousal"),
            weights: dict[str, float] | None = None) -> Callable[[Any, Tensor], Tensor]:
    """2Att-2Mt's stage 2: L = sum_{k in tasks} w_k L_k(pred_k, y_k) with L = MSE or 1 - CCC (``kind``).

    The model output has a ``va`` (batch, 2) field; targets are (batch, 2) = (valence, arousal).
    ``tasks=("valence",)`` is the single-task baseline. Equal weights by default (our choice).
    """
    if kind not in ("mse", "ccc"):
        raise ValueError(f"kind must be 'mse' or 'ccc', got {kind!r}")
    weights = weights or {k: 1.0 for k in tasks}
    single = F.mse_loss if kind == "mse" else ccc_loss

    def loss(out, target: Tensor) -> Tensor:
        return sum(weights[k] * single(out.va[:, VA_COLUMNS[k]], target[:, VA_COLUMNS[k]]) for k in tasks)

    return loss


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
    labelled frame is left out of the mean; none at all gives 0. The CCC loss itself is
    :func:`ccc_loss` of the Regression section.
    """
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
