"""RAN's training recipe (Wang et al., IEEE TIP 2020): regions, attention, region-biased loss.

    loss = CE(logits, y) + rb_weight * L_RB(mu; margin 0.02)

The regions are the whole face (always region 0) plus K crops, either a fixed grid
(four overlapping corners, 0.6 of the side each) or landmark-based (the two eyes with
their brows, the nose, the mouth, from the 68 iBUG points). The paper also crops at
random positions; that variant is not built here.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fer_utils import losses
from fer_utils.models import logits_of
from fer_utils.models.ran import RAN
from fer_utils.models.scn import small_backbone
from fer_utils.recipes import Recipe
from fer_utils.train import Plateau, fit

GRID_REGIONS = ("top-left", "top-right", "bottom-left", "bottom-right")
LANDMARK_REGIONS = ("eye (image left)", "eye (image right)", "nose", "mouth")
#: iBUG-68 point indices of each landmark region (brow + eye, nose, mouth).
LANDMARK_POINTS = (list(range(17, 22)) + list(range(36, 42)), list(range(22, 27)) + list(range(42, 48)),
                   list(range(27, 36)), list(range(48, 68)))


@dataclass(frozen=True)
class RANRecipe(Recipe):
    regions: str = "landmarks"  # "landmarks" or "grid"
    relation: bool = True  # relation-attention module on
    rb_margin: float = 0.02  # region-biased loss margin
    rb_weight: float = 1.0  # weight of L_RB (0 = off)
    crop_size: int = 224
    widths: tuple[int, ...] = ()  # course backbone widths; () = the paper's ResNet-18
    lr_gamma: float = 0.9


FULL = RANRecipe(name="ran", paper="Wang et al., IEEE TIP 2020", epochs=60, batch_size=64, lr=1e-3,
                 weight_decay=1e-4, input_size=224, channels=3, normalize="imagenet")
#: Named scaled-down configuration: 48-px grey faces, 20-px crops, a 4-block CNN shared by the regions; an epoch cap
#: of 30 (runs stop earlier at the plateau of their validation loss).
COURSE = replace(FULL, name="ran-course", epochs=30, lr=3e-3, input_size=48, channels=1, normalize="symmetric",
                 crop_size=20, widths=(8, 16, 32, 64))
SMOKE = replace(COURSE, name="ran-smoke", epochs=8)


def region_names(recipe: RANRecipe) -> tuple[str, ...]:
    return ("whole face",) + (LANDMARK_REGIONS if recipe.regions == "landmarks" else GRID_REGIONS)


def region_boxes(landmarks: np.ndarray, kind: str, size: int, pad: float = 0.08,
                 min_side: float = 0.25) -> np.ndarray:
    """(N, 68, 2) landmarks in pixels -> (N, 5, 4) float32 boxes (x0, y0, x1, y1): whole face, then 4 regions.

    Landmark boxes are the points' bounding box grown by ``pad * size`` on each side and
    widened to at least ``min_side * size``; grid boxes ignore the landmarks.
    """
    landmarks = np.asarray(landmarks, np.float32)
    if landmarks.ndim != 3 or landmarks.shape[1:] != (68, 2):
        raise ValueError(f"region_boxes: expected landmarks (N, 68, 2), got {landmarks.shape}")
    n, s = len(landmarks), float(size)
    whole = np.tile(np.array([0, 0, s, s], np.float32), (n, 1))
    if kind == "grid":
        a, b = 0.6 * s, 0.4 * s
        grid = np.array([[0, 0, a, a], [b, 0, s, a], [0, b, a, s], [b, b, s, s]], np.float32)
        return np.concatenate([whole[:, None], np.tile(grid, (n, 1, 1))], axis=1)
    if kind != "landmarks":
        raise ValueError(f"region kind must be 'landmarks' or 'grid', got {kind!r}")
    boxes = [whole]
    for points in LANDMARK_POINTS:
        lo, hi = landmarks[:, points].min(1) - pad * s, landmarks[:, points].max(1) + pad * s  # (N, 2)
        centre, half = (lo + hi) / 2, np.maximum((hi - lo) / 2, min_side * s / 2)
        boxes.append(np.concatenate([centre - half, centre + half], axis=1))
    return np.stack(boxes, axis=1).astype(np.float32)


def build_model(recipe: RANRecipe) -> RAN:
    if not recipe.widths:
        from torchvision.models import resnet18
        backbone = nn.Sequential(*list(resnet18(weights=None).children())[:-1])
        return RAN(backbone, 512, recipe.num_classes, recipe.crop_size, recipe.relation)
    return RAN(small_backbone(recipe.channels, recipe.widths), recipe.widths[-1], recipe.num_classes,
               recipe.crop_size, recipe.relation)


def build_cnn(recipe: RANRecipe) -> nn.Module:
    """The plain baseline at the same budget: the same CNN on the whole face, then one linear layer."""
    return nn.Sequential(small_backbone(recipe.channels, recipe.widths), nn.Flatten(),
                         nn.Linear(recipe.widths[-1], recipe.num_classes))


def make_optimizer(model: nn.Module, recipe: RANRecipe):
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    return optimizer, torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=recipe.lr_gamma)


def loss_step(model: nn.Module, batch, recipe: RANRecipe):
    """``batch = (images, boxes, labels)`` for RAN, ``(images, None, labels)`` for the plain CNN."""
    images, boxes, labels = batch
    if boxes is None:
        logits = logits_of(model(images))
        ce = F.cross_entropy(logits, labels)
        return ce, {"ce": float(ce.detach()), "rb": 0.0}
    out = model(images, boxes)
    logits, mu = logits_of(out), out.mu
    ce = F.cross_entropy(logits, labels)
    rb = losses.region_biased_loss(mu, recipe.rb_margin) if recipe.rb_weight > 0 else ce.new_zeros(())
    return ce + recipe.rb_weight * rb, {"ce": float(ce.detach()), "rb": float(rb.detach())}


def train(model: nn.Module, images: torch.Tensor, boxes: torch.Tensor | None, labels: torch.Tensor,
          recipe: RANRecipe, seed: int = 0, progress: bool = True, val: tuple | None = None,
          stop: Plateau | None = None) -> dict:
    """Train RAN (``boxes`` (N, R, 4)) or the plain CNN (``boxes=None``) on in-memory tensors with
    :func:`fer_utils.train.fit` (full batches in a seeded order).

    ``val = (images, boxes or None, labels)`` adds ``val_loss`` (cross-entropy) and ``val_accuracy`` per
    epoch to the history; ``stop``: a :class:`~fer_utils.train.Plateau` rule (on ``val_loss`` by default),
    ``recipe.epochs`` then being the cap."""
    optimizer, scheduler = make_optimizer(model, recipe)
    generator = torch.Generator().manual_seed(seed)
    n, steps = len(labels), len(labels) // recipe.batch_size

    def batches(_epoch: int):
        order = torch.randperm(n, generator=generator)
        for step in range(steps):
            index = order[step * recipe.batch_size:(step + 1) * recipe.batch_size]
            yield images[index], None if boxes is None else boxes[index], labels[index]

    def validate(_epoch: int, history: dict) -> None:
        if val is not None:
            logits = torch.from_numpy(predict(model, val[0], val[1])["logits"])
            target = torch.as_tensor(np.asarray(val[2]), dtype=torch.long)
            history.setdefault("val_loss", []).append(float(F.cross_entropy(logits, target)))
            history.setdefault("val_accuracy", []).append(float((logits.argmax(1) == target).float().mean()))

    history = fit(model, batches, recipe.epochs, optimizer, scheduler=scheduler, progress=progress,
                  desc=recipe.name if boxes is not None else "cnn", loss_step=lambda m, b: loss_step(m, b, recipe),
                  steps_per_epoch=steps, on_epoch=validate, stop=stop, channels_last=True)
    history.pop("ce", None)
    return history


@torch.inference_mode()
def predict(model: nn.Module, images: torch.Tensor, boxes: torch.Tensor | None = None,
            batch_size: int = 500) -> dict[str, np.ndarray]:
    """Eval-mode ``logits`` and, for RAN, the weights ``mu`` and ``nu`` (N, R), as numpy."""
    model.eval()
    parts: dict[str, list] = {"logits": [], "mu": [], "nu": []}
    images = images.contiguous(memory_format=torch.channels_last)   # max-pooling is many times faster on CPU
    for i in range(0, len(images), batch_size):
        if boxes is None:
            parts["logits"].append(logits_of(model(images[i:i + batch_size])))
            continue
        out = model(images[i:i + batch_size], boxes[i:i + batch_size])
        parts["logits"].append(logits_of(out)), parts["mu"].append(out.mu), parts["nu"].append(out.nu)
    return {k: torch.cat(v).numpy() for k, v in parts.items() if v}
