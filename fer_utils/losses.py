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

def cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """L_CE = -(1/N) sum_i log softmax(z_i)[y_i]; ``logits`` may be a model's output tuple (first item used)."""
    if isinstance(logits, (tuple, list)):
        logits = logits[0]
    return F.cross_entropy(logits, labels)


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


def ddamfn_loss(outputs, targets: Tensor, weight: float = ATTENTION_WEIGHT) -> Tensor:
    """L = CE(logits, y) + weight * attention_loss(head_maps); ``outputs`` is DDAMFN's (logits, features, maps)."""
    logits, _, head_maps = outputs
    return F.cross_entropy(logits, targets) + weight * attention_loss(head_maps)


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


# ---------------------------------------------------------------------------
# Noisy labels (SCN) and region attention (RAN), notebook 08
# ---------------------------------------------------------------------------
