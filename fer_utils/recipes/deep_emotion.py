"""Deep-Emotion's training recipe (Minaee, Minaei & Abdolrashidi, arXiv:1902.01019, 2019).

The paper trains with cross-entropy plus an L2 penalty lambda ||w||^2 on the weights and Adam
with learning rate 0.005. With Adam, ``weight_decay = 2 lambda`` adds the gradient of
lambda ||w||^2 (PyTorch adds ``weight_decay * w`` to each gradient); the paper does not give
lambda, so ``weight_decay = 1e-4`` is OUR choice. Epochs and batch size are the unofficial
code's defaults (100 and 128; github.com/omarsayed7/Deep-Emotion), the paper gives none we could check.
The network is :class:`fer_utils.models.deep_emotion.DeepEmotion`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from torch import nn

from fer_utils.losses import cross_entropy
from fer_utils.models.deep_emotion import PAPER_INIT_STD, DeepEmotion
from fer_utils.recipes import Recipe


@dataclass(frozen=True)
class DeepEmotionRecipe(Recipe):
    variant: str = "paper"  # "paper" or "reference" (see the model)
    use_stn: bool = True
    init_std: float = PAPER_INIT_STD
    #: "none" (the paper: a constant learning rate), "warmup-cosine" (OUR course schedule: the first
    #: epoch at lr / 10, then a cosine decay towards 0 over the other epochs; see :func:`lr_factor`) or
    #: "warmup" (OUR schedule for runs stopped by a plateau rule, notebook 03: the first epoch at lr / 10,
    #: then the paper's constant rate; a decay tied to the epoch cap would flatten every run at the cap).
    schedule: str = "none"


FULL = DeepEmotionRecipe(name="full", paper="Minaee et al. 2019 (Deep-Emotion)", epochs=100, batch_size=128,
                         lr=0.005, weight_decay=1e-4, optimizer="adam", input_size=48, channels=1,
                         normalize="symmetric")
#: What notebook 03 trains on two CPU cores, a scaled-down course configuration: the paper's optimiser and
#: learning rate, batch 64 instead of the unofficial code's 128 (1,600 training faces then give 25 steps an
#: epoch), 20 epochs and OUR warm-up + cosine schedule. The warm-up guards against full-size Adam steps from
#: the first batch leaving the network at ln 7 (every face the same class: seen in a 12-epoch constant-rate
#: run); the cosine decay lets a short run settle. Notebook 03 trains with ``schedule="warmup"`` instead and
#: stops every run at its plateau (``fer_utils.train.Plateau``): ``epochs`` is then the one epoch cap.
COURSE = replace(FULL, name="course", epochs=20, batch_size=64, schedule="warmup-cosine")
SMOKE = replace(FULL, name="smoke", epochs=6, batch_size=64, schedule="warmup-cosine")  # batch 32: stuck at ln 7


def build_model(recipe: DeepEmotionRecipe) -> DeepEmotion:
    """The network the recipe trains."""
    return DeepEmotion(recipe.variant, num_classes=recipe.num_classes, in_channels=recipe.channels,
                       input_size=recipe.input_size, use_stn=recipe.use_stn, init_std=recipe.init_std)


def lr_factor(epoch: int, epochs: int, schedule: str = "warmup-cosine") -> float:
    """The multiplier of the learning rate during ``epoch`` (0-based) of ``epochs`` under ``schedule``.

    "warmup-cosine": eta_0 = lr / 10 (warm-up), eta_e = lr (1 + cos(pi (e - 1) / (E - 1))) / 2 for
    e = 1 ... E - 1. "warmup": eta_0 = lr / 10, then eta_e = lr. "none": lr throughout.
    """
    if schedule == "none":
        return 1.0
    if schedule not in ("warmup", "warmup-cosine"):
        raise ValueError(f"unknown schedule {schedule!r}; expected 'none', 'warmup' or 'warmup-cosine'")
    if epoch == 0:
        return 0.1
    if schedule == "warmup":
        return 1.0
    return 0.5 * (1.0 + math.cos(math.pi * (epoch - 1) / max(epochs - 1, 1)))


def make_optimizer(model: nn.Module, recipe: DeepEmotionRecipe = FULL, lr: float | None = None):
    """Adam with the paper's learning rate (or ``lr``) and ``weight_decay`` = 2 lambda.

    The scheduler is ``None`` for the paper's constant rate, or a ``LambdaLR`` of :func:`lr_factor`
    stepped once per epoch for ``schedule="warmup-cosine"`` or ``"warmup"``.
    """
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr if lr is None else lr,
                                 weight_decay=recipe.weight_decay)
    if recipe.schedule == "none":
        return optimizer, None
    if recipe.schedule not in ("warmup", "warmup-cosine"):
        raise ValueError(f"unknown schedule {recipe.schedule!r}; expected 'none', 'warmup' or 'warmup-cosine'")
    return optimizer, torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda e: lr_factor(e, recipe.epochs, recipe.schedule))


def loss_step(model: nn.Module, batch, recipe: DeepEmotionRecipe):
    """Cross-entropy of one batch (the L2 term is the optimiser's weight decay)."""
    images, labels = batch
    loss = cross_entropy(model(images), labels)
    return loss, {"loss": float(loss.detach())}
