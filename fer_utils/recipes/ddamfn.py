"""DDAMFN's training recipe (Zhang et al., Electronics 12(17):3595, 2023; the authors' ``rafdb_train.py``).

FULL is the authors' RAF-DB script: SGD (momentum 0.9, weight decay 1e-4), lr 0.01, StepLR(10, 0.1)
stepped once per epoch, batch 256, 40 epochs, 112x112 input with ImageNet normalisation, loss
cross-entropy + 0.1 x the attention loss (:func:`fer_utils.losses.ddamfn_loss`), augmentation
:func:`fer_utils.data.transforms.rafdb_train_transform`. COURSE and SMOKE are OURS: the scaled-down
network (:data:`fer_utils.models.ddamfn.COURSE`, 64x64) trained with Adam, which learns faster
in the few epochs a CPU allows.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from fer_utils.data.transforms import rafdb_train_transform
from fer_utils.losses import ATTENTION_WEIGHT, ddamfn_loss
from fer_utils.models.ddamfn import COURSE as COURSE_NET
from fer_utils.models.ddamfn import DDAMFN, FAITHFUL
from fer_utils.recipes import Recipe


@dataclass(frozen=True)
class DDAMFNRecipe(Recipe):
    num_heads: int = 2
    attention_weight: float = ATTENTION_WEIGHT
    momentum: float = 0.9
    step_size: int = 10
    gamma: float = 0.1
    config: str = "faithful"  # "faithful" (the authors' MFN) or "course" (ours, scaled down)


FULL = DDAMFNRecipe(name="full", paper="Zhang et al. 2023 (DDAMFN)", epochs=40, batch_size=256, lr=0.01,
                    weight_decay=1e-4, optimizer="sgd", input_size=112, channels=3, normalize="imagenet")
#: Ours, for two CPU cores: the COURSE network at 64x64, Adam lr 3e-3, no weight decay.
COURSE = replace(FULL, name="course", epochs=6, batch_size=64, lr=3e-3, weight_decay=0.0, optimizer="adam",
                 input_size=COURSE_NET.input_size, config="course")
SMOKE = replace(COURSE, name="smoke", epochs=3)


def build_model(recipe: DDAMFNRecipe, num_heads: int | None = None) -> DDAMFN:
    """DDAMFN of ``recipe.config`` with ``recipe.num_heads`` heads (or ``num_heads``, for the ablation)."""
    config = FAITHFUL if recipe.config == "faithful" else COURSE_NET
    return DDAMFN(recipe.num_classes, recipe.num_heads if num_heads is None else num_heads, config)


def make_optimizer(model: nn.Module, recipe: DDAMFNRecipe = FULL):
    """SGD (momentum, weight decay) + StepLR(step_size, gamma) as the authors; or Adam and no schedule."""
    if recipe.optimizer == "sgd":
        optimizer = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                                    weight_decay=recipe.weight_decay)
        return optimizer, torch.optim.lr_scheduler.StepLR(optimizer, step_size=recipe.step_size, gamma=recipe.gamma)
    if recipe.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay), None
    raise ValueError(f"optimizer must be 'sgd' or 'adam', got {recipe.optimizer!r}")


def loss_step(model: nn.Module, batch, recipe: DDAMFNRecipe):
    """CE(logits, y) + attention_weight * attention_loss(head maps) of one batch."""
    images, labels = batch
    loss = ddamfn_loss(model(images), labels, recipe.attention_weight)
    return loss, {"loss": float(loss.detach())}


def train_transform(recipe: DDAMFNRecipe):
    """The authors' RAF-DB augmentation at the recipe's input size (what ``fer-train ddamfn`` applies)."""
    return rafdb_train_transform(recipe.input_size)
