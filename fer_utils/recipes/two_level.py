"""2Att-2Mt's training recipe: two stages, expressions first, then valence and arousal.

Wang et al., "Two-level Attention with Two-stage Multi-task Learning for Facial Emotion
Recognition", arXiv:1811.12139 (2018). Stage 1 trains the whole network on expression labels
(cross-entropy on the logits); stage 2 starts from it and trains the valence and arousal heads
jointly (:func:`fer_utils.losses.va_loss`, MSE or 1 - CCC).

The paper's optimiser, schedule and epochs could not be read for this course, so every value
below is OURS: Adam (weight decay 1e-4) with a cosine schedule over each stage, lr 1e-3.
The network is :class:`fer_utils.models.two_level.TwoLevelAttentionNet`.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, replace
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from tqdm import tqdm

from fer_utils import metrics
from fer_utils.losses import cross_entropy, va_loss
from fer_utils.models import logits_of
from fer_utils.models.two_level import COURSE_CONFIG, TwoLevelAttentionNet
from fer_utils.recipes import Recipe
from fer_utils.train import equal_batch_size, fit


@dataclass(frozen=True)
class TwoLevelRecipe(Recipe):
    """``epochs`` is stage 1 (expressions), ``stage2_epochs`` stage 2 (valence-arousal)."""

    stage2_epochs: int = 20
    loss: str = "ccc"  # stage 2: "mse" or "ccc"
    config: str = "course"  # "course" (COURSE_CONFIG) or "ran" (the RAN paper's p=1, t=2, r=1)


#: Our recipe at the scale a GPU allows (no paper values were available).
FULL = TwoLevelRecipe(name="full", paper="Wang et al. 2018 (2Att-2Mt), hyper-parameters ours", epochs=30,
                      stage2_epochs=20, batch_size=128, lr=1e-3, weight_decay=1e-4, optimizer="adam",
                      input_size=48, channels=1, normalize="symmetric")
COURSE = replace(FULL, name="course", epochs=6, stage2_epochs=6, batch_size=32)
SMOKE = replace(FULL, name="smoke", epochs=2, stage2_epochs=3, batch_size=16)


def build_model(recipe: TwoLevelRecipe, **switches: Any) -> TwoLevelAttentionNet:
    """The network of ``recipe.config``; ``switches`` (first_level, second_level ...) are the ablations."""
    config = dict(COURSE_CONFIG) if recipe.config == "course" else {**COURSE_CONFIG, "p": 1, "t": 2, "r": 1}
    return TwoLevelAttentionNet(num_classes=recipe.num_classes, in_channels=recipe.channels,
                                **{**config, **switches})


def make_optimizer(model: nn.Module, recipe: TwoLevelRecipe, epochs: int | None = None, lr: float | None = None):
    """Adam (weight decay ``recipe.weight_decay``) and a cosine schedule over ``epochs`` (default stage 1)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr if lr is None else lr,
                                 weight_decay=recipe.weight_decay)
    return optimizer, torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs or recipe.epochs)


def loss_step(model: nn.Module, batch, recipe: TwoLevelRecipe, stage: str = "va"):
    """One batch's loss: cross-entropy on the logits (``stage="expression"``) or the stage-2 VA loss."""
    images, targets = batch
    out = model(images)
    loss = cross_entropy(logits_of(out), targets) if stage == "expression" else va_loss(recipe.loss)(out, targets)
    return loss, {"loss": float(loss.detach())}


class Classifier(nn.Module):
    """A view of the model that returns only the logits (stage 1 with ``fer_utils.train.fit``)."""

    def __init__(self, model: TwoLevelAttentionNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return logits_of(self.model(images))


def train_stage(model: TwoLevelAttentionNet, train_loader, epochs: int, stage: str, lr: float = 1e-3,
                loss_fn: Callable | None = None, val_loader=None, device: str | torch.device = "cpu",
                progress: bool = True, recipe: TwoLevelRecipe = FULL, bar: tqdm | None = None,
                channels_last: bool = False) -> dict[str, list]:
    """Train ``model`` in place for one stage (:func:`make_optimizer`: Adam + cosine over ``epochs``).

    ``stage="expression"``: batches (images, labels), cross-entropy on the logits (stage 1).
    ``stage="va"``: batches (images, (batch, 2) valence-arousal targets), ``loss_fn`` (default
    ``va_loss("mse")``) on the va outputs (stage 2). Returns ``fit``'s history. With ``bar`` (a tqdm
    counting epochs, shared by several stages or runs) ``fit`` runs one epoch at a time without its own
    bar; the optimiser, schedule and batch order are the same as in one call. ``channels_last``: see
    ``fer_utils.train.fit`` (the same numbers up to float rounding, faster convolutions on CPU).
    """
    if epochs <= 0:
        return {}
    if stage not in ("expression", "va"):
        raise ValueError(f"stage must be 'expression' or 'va', got {stage!r}")
    optimizer, schedule = make_optimizer(model, recipe, epochs=epochs, lr=lr)
    net, loss = (Classifier(model), nn.CrossEntropyLoss()) if stage == "expression" else (model, loss_fn or va_loss("mse"))
    if bar is None:
        return fit(net, train_loader, epochs, optimizer, loss, val_loader=val_loader, device=device,
                   scheduler=schedule, progress=progress, channels_last=channels_last)
    history: dict[str, list] = {}
    for _ in range(epochs):
        one = fit(net, train_loader, 1, optimizer, loss, val_loader=val_loader, device=device, scheduler=schedule,
                  progress=False, channels_last=channels_last)
        for key, values in one.items():
            history.setdefault(key, []).extend(values)
        bar.update(1)
    return history


def predict(model: TwoLevelAttentionNet, images: torch.Tensor, batch_size: int = 512,
            device: str | torch.device = "cpu") -> dict[str, np.ndarray]:
    """Eval-mode outputs over ``images``: ``va`` (N, 2), ``logits`` (N, C), ``level_weights`` (N, T)."""
    model.eval().to(device)
    parts: dict[str, list] = {"va": [], "logits": [], "level_weights": []}
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            out = model(images[start:start + batch_size].to(device))
            for key in parts:
                parts[key].append(getattr(out, key).cpu())
    return {key: torch.cat(v).numpy() for key, v in parts.items()}


def va_scores(va_true: np.ndarray, va_pred: np.ndarray) -> dict[str, float]:
    """RMSE, PCC, CCC, SAGR of valence and arousal (``fer_utils.metrics.va_metrics``)."""
    return metrics.va_metrics(va_true[:, 0], va_pred[:, 0], va_true[:, 1], va_pred[:, 1])


def two_stage(make_model: Callable[[], TwoLevelAttentionNet], loaders: dict, epochs: tuple[int, int],
              loss_fn: Callable | None = None, stage1: dict | None = None, seed: int = 0, lr: float = 1e-3,
              val_loaders: dict | None = None, device: str | torch.device = "cpu", progress: bool = True,
              bar: tqdm | None = None, channels_last: bool = False) -> dict:
    """Stage 1 (expressions, ``epochs[0]`` epochs) then stage 2 (valence-arousal, ``epochs[1]``).

    ``loaders`` / ``val_loaders``: dicts with an ``expression`` and a ``va`` loader. Pass ``stage1``
    (the result of an earlier call) to reuse its stage-1 model: a deep copy is fine-tuned, the
    original stays as it is. ``epochs[0] = 0``: one-stage training, from scratch on valence-arousal.
    One progress bar (in epochs) covers both stages; pass ``bar`` to share one over several runs.
    ``channels_last`` is passed to :func:`train_stage`.
    Returns ``stage1`` and ``model`` (the models), ``history1`` / ``history2`` and the seconds taken.
    """
    val_loaders = val_loaders or {}
    own_bar = bar is None
    if own_bar:
        bar = tqdm(total=(0 if stage1 else epochs[0]) + epochs[1], desc="training", unit="epoch", ascii=True,
                   disable=not progress)
    start = time.time()
    if stage1 is None:
        torch.manual_seed(seed)
        first = make_model()
        history1 = train_stage(first, loaders["expression"], epochs[0], "expression", lr=lr,
                               val_loader=val_loaders.get("expression"), device=device, bar=bar,
                               channels_last=channels_last)
        stage1 = {"stage1": first, "history1": history1, "seconds_stage1": time.time() - start}
    model = copy.deepcopy(stage1["stage1"])
    torch.manual_seed(seed + 1)
    start2 = time.time()
    history2 = train_stage(model, loaders["va"], epochs[1], "va", lr=lr, loss_fn=loss_fn,
                           val_loader=val_loaders.get("va"), device=device, bar=bar,
                           channels_last=channels_last)
    if own_bar:
        bar.close()
    return {"stage1": stage1["stage1"], "history1": stage1["history1"], "seconds_stage1": stage1["seconds_stage1"],
            "model": model, "history2": history2, "seconds_stage2": time.time() - start2}


# ---------------------------------------------------------------------------------------------------------
# One stage to its plateau (the experiments of notebook 04: run_grid's runs)
# ---------------------------------------------------------------------------------------------------------

def _loader(images: torch.Tensor, targets: torch.Tensor, batch_size: int, seed: int):
    """Shuffled batches (seeded); the last batch is dropped when it would hold a single face (a CCC over one
    value is undefined) and the set has more faces than one batch."""
    drop = len(images) > batch_size and len(images) % batch_size == 1
    return DataLoader(TensorDataset(images, targets), batch_size=batch_size, shuffle=True, drop_last=drop,
                      generator=torch.Generator().manual_seed(seed))


def _epochs_of(loader, min_steps: int):
    """An epoch of at least ``min_steps`` optimiser steps: as many whole passes over ``loader`` as that takes
    (a set of a dozen faces would otherwise give one step per epoch, too few for a plateau rule to read).
    Returns ``fit``'s ``train_loader(epoch)`` and the steps in each epoch."""
    passes = max(1, -(-min_steps // max(1, len(loader))))

    def epoch(_: int):
        for _pass in range(passes):
            yield from loader
    return epoch, passes * len(loader)


def fit_stage(model: TwoLevelAttentionNet, train: tuple[torch.Tensor, torch.Tensor],
              val: tuple[torch.Tensor, torch.Tensor], stage: str, stop, cap: int, seed: int = 0,
              tasks: tuple[str, ...] = ("valence", "arousal"), loss: str = "ccc", lr: float = 1e-3,
              batch_size: int = 32, weight_decay: float = 1e-4, channels_last: bool = True,
              min_steps: int = 1, bn_faces: int = 0) -> dict[str, list]:
    """Train ``model`` in place for one stage with :func:`fer_utils.train.fit` until ``stop`` (a
    :class:`fer_utils.train.Plateau` on the validation loss) holds, at most ``cap`` epochs.

    ``stage="expression"``: ``train`` / ``val`` are (images, labels), cross-entropy on the logits (stage 1).
    ``stage="va"``: (images, (N, 2) valence-arousal), :func:`fer_utils.losses.va_loss` of ``loss`` over
    ``tasks`` (one task: the single-task baseline; the other head gets no gradient). Adam at a constant
    ``lr`` (a schedule would make a late plateau the schedule's doing). An epoch is at least ``min_steps``
    steps (:func:`_epochs_of`; a few labelled faces). ``bn_faces`` > 0: after every epoch, before validation,
    BatchNorm's statistics are recomputed over at most that many of the stage's training images, evenly spaced
    (precise BN, ``fit``'s ``bn_loader``: with few steps an epoch the running averages lag the weights).
    Returns ``fit``'s history, with ``epochs_run`` and ``plateaued``.
    """
    if stage not in ("expression", "va"):
        raise ValueError(f"stage must be 'expression' or 'va', got {stage!r}")
    torch.manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    net, loss_fn = (Classifier(model), nn.CrossEntropyLoss()) if stage == "expression" else (model, va_loss(loss, tasks))
    val_loader = DataLoader(TensorDataset(*val), batch_size=1024)
    epochs, steps = _epochs_of(_loader(*train, batch_size, seed), min_steps)
    return fit(net, epochs, cap, optimizer, loss_fn, val_loader=val_loader, progress=False,
               channels_last=channels_last, stop=stop, steps_per_epoch=steps, bn_loader=_bn_loader(train[0], bn_faces))


def _bn_loader(images: torch.Tensor, most: int) -> tuple[torch.Tensor, ...] | None:
    """Near-equal batches of at most ``most`` of ``images``, evenly spaced (all when there are fewer), for precise BN;
    None when ``most`` is 0."""
    if most <= 0:
        return None
    pick = images[torch.linspace(0, len(images) - 1, min(most, len(images))).round().long()]
    return torch.split(pick, equal_batch_size(len(pick)))
