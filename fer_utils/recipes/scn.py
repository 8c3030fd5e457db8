"""SCN's training recipe (Wang et al., CVPR 2020; defaults from the authors' ``src/train.py``).

One epoch over a batch of N images with importance weights alpha and logits alpha * z:

    loss = CE(alpha * z, y) + L_RR(alpha; beta, margin_1)     (the code adds them; the paper
                                                               writes gamma * L_WCE + (1 - gamma) * L_RR)

and from ``relabel_epoch`` on, after each step, every label with
``P_max - P_label > margin_2`` is overwritten by the argmax in the stored training labels.
``relabel="all"`` tests every sample of the batch (the authors' code), ``"low"`` only the
low-importance group (the paper's text), ``"none"`` never relabels. ``weighting`` and
``rank_reg`` switch the other two modules off for the ablation.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fer_utils import losses
from fer_utils.models import logits_of
from fer_utils.models.scn import SCN, scn_resnet18, small_backbone
from fer_utils.recipes import Recipe
from fer_utils.train import Plateau, fit

RELABEL_MODES = ("all", "low", "none")


@dataclass(frozen=True)
class SCNRecipe(Recipe):
    beta: float = 0.7  # share of the batch in the high-importance group
    margin_1: float = 0.15  # rank-regularisation margin (the authors' README: 0.07 at batch 64)
    margin_2: float = 0.2  # relabelling margin
    relabel_epoch: int = 10  # first epoch (1-based) that relabels
    relabel: str = "all"  # "all" (code), "low" (paper) or "none"
    weighting: bool = True  # logits multiplied by alpha
    rank_reg: bool = True  # add L_RR
    lr_gamma: float = 0.9  # ExponentialLR factor per epoch
    widths: tuple[int, ...] = ()  # course backbone widths; () = the authors' ResNet-18
    drop_rate: float = 0.0


FULL = SCNRecipe(name="scn", paper="Wang et al., CVPR 2020", epochs=70, batch_size=64, lr=1e-3,
                 weight_decay=1e-4, optimizer="adam", input_size=224, channels=3, normalize="imagenet")
#: Named scaled-down configuration: 32-px grey faces, a 4-block CNN (25,024 parameters with both heads), an epoch
#: cap of 20 with relabelling from epoch 8 and a constant learning rate of 3e-3 (instead of 70, 10 and 1e-3 decayed
#: by 0.9 per epoch: on under a thousand faces this leaves the plain network the time and the step size to memorise
#: flipped labels, the failure SCN is built against), margin_1 0.07 (the authors' README value for batch 64).
COURSE = replace(FULL, name="scn-course", epochs=20, relabel_epoch=8, margin_1=0.07, lr=3e-3, lr_gamma=1.0,
                 input_size=32, channels=1, normalize="symmetric", widths=(8, 16, 32, 64))
SMOKE = replace(COURSE, name="scn-smoke", epochs=10, relabel_epoch=5)


def variant(recipe: SCNRecipe, arm: str) -> SCNRecipe:
    """The ablation arms: plain, weighting, rank_reg (alone: alpha trained, logits not weighted),
    relabel (alone), scn (all three, the code's relabelling), scn_low (the paper's relabelling)."""
    arms = {
        "plain": dict(weighting=False, rank_reg=False, relabel="none"),
        "weighting": dict(weighting=True, rank_reg=False, relabel="none"),
        "rank_reg": dict(weighting=False, rank_reg=True, relabel="none"),
        "relabel": dict(weighting=False, rank_reg=False, relabel="all"),
        "scn": dict(weighting=True, rank_reg=True, relabel="all"),
        "scn_low": dict(weighting=True, rank_reg=True, relabel="low"),
    }
    if arm not in arms:
        raise ValueError(f"unknown SCN arm {arm!r}; choose one of {list(arms)}")
    return replace(recipe, **arms[arm])


def build_model(recipe: SCNRecipe) -> SCN:
    if not recipe.widths:
        return scn_resnet18(recipe.num_classes, recipe.drop_rate)
    model = SCN(small_backbone(recipe.channels, recipe.widths), recipe.widths[-1], recipe.num_classes,
                recipe.drop_rate)
    model.weighting = recipe.weighting
    return model


def make_optimizer(model: nn.Module, recipe: SCNRecipe):
    """Adam (the authors' default: its own lr, weight decay 1e-4) and ExponentialLR(0.9)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    return optimizer, torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=recipe.lr_gamma)


def loss_step(model: SCN, batch, recipe: SCNRecipe):
    """``batch = (images, labels)`` -> (CE on the (weighted) logits + L_RR, logs with logits and alpha)."""
    images, labels = batch
    out = model(images)
    logits, alpha = logits_of(out), out.alpha
    ce = F.cross_entropy(logits, labels)
    rr = losses.rank_regularization(alpha, recipe.beta, recipe.margin_1) if recipe.rank_reg else ce.new_zeros(())
    return ce + rr, {"ce": float(ce.detach()), "rr": float(rr.detach()), "logits": logits.detach(), "alpha": alpha.detach()}


def _relabel_batch(logs: dict, labels: torch.Tensor, recipe: SCNRecipe) -> tuple[torch.Tensor, torch.Tensor]:
    probabilities = logs["logits"].softmax(dim=1)
    candidates = losses.low_importance_group(logs["alpha"], recipe.beta) if recipe.relabel == "low" else None
    return losses.relabel(probabilities, labels, recipe.margin_2, candidates)


def train(model: SCN, images: torch.Tensor, labels: np.ndarray, recipe: SCNRecipe, seed: int = 0,
          progress: bool = True, val: tuple[torch.Tensor, np.ndarray] | None = None,
          test: tuple[torch.Tensor, np.ndarray] | None = None, stop: Plateau | None = None) -> dict:
    """Train ``model`` on in-memory ``images`` (N, C, H, W) with (noisy) ``labels``, with
    :func:`fer_utils.train.fit`; SCN's own part is the relabelling after each step (``on_step``).

    Returns ``labels`` (the training labels after relabelling), ``relabelled`` (bool,
    changed at least once), ``train_loss``, ``rr`` and ``relabelled_share`` per epoch;
    with ``val = (images, labels)`` (a validation split with the labels a user has: noisy ones
    under label noise) ``val_loss`` (cross-entropy of the model's logits, the weighted ones for
    SCN) and ``val_accuracy`` per epoch; with ``test = (images, true labels)`` ``test_accuracy``
    per epoch. ``stop``: a :class:`~fer_utils.train.Plateau` rule (on ``val_loss`` by default),
    ``recipe.epochs`` then being the cap. The stored labels are a copy: the caller's array is not
    changed.
    """
    if recipe.relabel not in RELABEL_MODES:
        raise ValueError(f"relabel={recipe.relabel!r}: expected one of {RELABEL_MODES}")
    stored = torch.as_tensor(np.asarray(labels), dtype=torch.long).clone()
    original = stored.clone()
    optimizer, scheduler = make_optimizer(model, recipe)
    generator = torch.Generator().manual_seed(seed)
    n, epoch_now = len(stored), [0]
    steps = n // recipe.batch_size  # full batches only, so every batch has both groups

    def batches(epoch: int):
        epoch_now[0] = epoch
        order = torch.randperm(n, generator=generator)
        for step in range(steps):
            index = order[step * recipe.batch_size:(step + 1) * recipe.batch_size]
            yield index, images[index], stored[index]

    def relabel(_step: int, batch, _loss: float, logs: dict) -> None:
        index = batch[0]
        if recipe.relabel != "none" and epoch_now[0] >= recipe.relabel_epoch:
            stored[index] = _relabel_batch(logs, stored[index], recipe)[0]

    def after_epoch(_epoch: int, history: dict) -> None:
        history.setdefault("relabelled_share", []).append(float((stored != original).float().mean()))
        if val is not None:
            logits = torch.from_numpy(predict(model, val[0])[0])
            target = torch.as_tensor(np.asarray(val[1]), dtype=torch.long)
            history.setdefault("val_loss", []).append(float(F.cross_entropy(logits, target)))
            history.setdefault("val_accuracy", []).append(float((logits.argmax(1) == target).float().mean()))
        if test is not None:
            accuracy = float((predict(model, test[0])[0].argmax(1) == np.asarray(test[1])).mean())
            history.setdefault("test_accuracy", []).append(accuracy)

    history = fit(model, batches, recipe.epochs, optimizer, scheduler=scheduler, progress=progress, desc=recipe.name,
                  loss_step=lambda m, batch: loss_step(m, batch[1:], recipe), steps_per_epoch=steps,
                  on_step=relabel, on_epoch=after_epoch, stop=stop, channels_last=True)
    history.pop("ce", None)
    history["labels"] = stored.numpy()
    history["relabelled"] = (stored != original).numpy()
    return history


@torch.inference_mode()
def predict(model: SCN, images: torch.Tensor, batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Eval-mode ``(logits (N, C), alpha (N,))`` as numpy."""
    model.eval()
    outs = [model(images[i:i + batch_size].contiguous(memory_format=torch.channels_last))
            for i in range(0, len(images), batch_size)]
    return torch.cat([logits_of(o) for o in outs]).numpy(), torch.cat([o.alpha for o in outs]).numpy()
