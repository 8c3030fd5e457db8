"""Deep-Emotion's training recipe (Minaee, Minaei & Abdolrashidi, arXiv:1902.01019, 2019).

The paper trains with cross-entropy plus an L2 penalty lambda ||w||^2 on the weights and Adam
with learning rate 0.005. With Adam, ``weight_decay = 2 lambda`` adds the gradient of
lambda ||w||^2 (PyTorch adds ``weight_decay * w`` to each gradient); the paper does not give
lambda, so ``weight_decay = 1e-4`` is OUR choice. Epochs and batch size are the unofficial
code's defaults (100 and 128; github.com/omarsayed7/Deep-Emotion), the paper gives none we could check.
The network is :class:`fer_utils.models.deep_emotion.DeepEmotion`.
"""
from __future__ import annotations

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


FULL = DeepEmotionRecipe(name="full", paper="Minaee et al. 2019 (Deep-Emotion)", epochs=100, batch_size=128,
                         lr=0.005, weight_decay=1e-4, optimizer="adam", input_size=48, channels=1,
                         normalize="symmetric")
#: What notebook 03 trains on two CPU cores, a scaled-down course configuration: the paper's optimiser and
#: learning rate, batch 64 instead of the unofficial code's 128 (1,600 training faces then give 25 steps an
#: epoch) and 12 epochs (notebook 03, section 4, shows how flat the test curve is by then).
COURSE = replace(FULL, name="course", epochs=12, batch_size=64)
SMOKE = replace(FULL, name="smoke", epochs=8, batch_size=64)  # batch 32: the transformer stayed at ln 7


def build_model(recipe: DeepEmotionRecipe) -> DeepEmotion:
    """The network the recipe trains."""
    return DeepEmotion(recipe.variant, num_classes=recipe.num_classes, in_channels=recipe.channels,
                       input_size=recipe.input_size, use_stn=recipe.use_stn, init_std=recipe.init_std)


def make_optimizer(model: nn.Module, recipe: DeepEmotionRecipe = FULL, lr: float | None = None):
    """Adam with the paper's learning rate (or ``lr``) and ``weight_decay`` = 2 lambda; no schedule."""
    return torch.optim.Adam(model.parameters(), lr=recipe.lr if lr is None else lr,
                            weight_decay=recipe.weight_decay), None


def loss_step(model: nn.Module, batch, recipe: DeepEmotionRecipe):
    """Cross-entropy of one batch (the L2 term is the optimiser's weight decay)."""
    images, labels = batch
    loss = cross_entropy(model(images), labels)
    return loss, {"loss": float(loss.detach())}
