"""POSTER V2's training recipe (Mao et al. 2023, arXiv 2301.12149; the authors' ``main.py`` at commit 18de5591).

FULL is the authors' RAF-DB run, each value checked in ``shared/reference/poster.md`` section 4 (the lines cited
below are the authors' files): :class:`~fer_utils.models.poster.PosterV2` on 224x224 ImageNet-normalised images,
plain cross-entropy, :class:`SAM` (Foret et al. 2021) around Adam with rho 0.05, lr 3.5e-5, ExponentialLR(0.98)
stepped once per epoch, batch 144, 200 epochs, RandomHorizontalFlip + RandomErasing(p 0.5, scale (0.02, 0.1)).
Their other datasets differ only in a few fields (:data:`DATASETS`; e.g. AffectNet-7: lr 1e-6, RandomErasing p 1
scale (0.05, 0.05) and class-balanced sampling, ``sampling="class_balanced"``, which ``fer-train`` draws with
:class:`fer_utils.cli.train_loop.ClassBalancedSampler`; :func:`balanced_sampler` is the same draw for a DataLoader
of your own).

Pretrained parts are read from files the user gives, never downloaded: their IR-50 (``ir50_path``, ``ir50.pth``),
their MobileFaceNet (``landmark_path``, ``mobilefacenet_model_best.pth.tar``) and, optionally, a whole trained POSTER
V2 (``checkpoint_path``); DataParallel's ``module.`` prefixes are stripped. ``fer-train poster --profile full --set
ir50_path=... landmark_path=...`` runs the authors' recipe on a real dataset.

COURSE and SMOKE are OURS: :class:`~fer_utils.models.poster.PosterCourse` (64 / 32 px), trained from scratch with
the same SAM + Adam + ExponentialLR at a higher learning rate (nothing is pre-trained on real faces in the course).

How SAM's two passes fit the one training loop: :class:`SAM` has ``requires_closure = True``;
:func:`fer_utils.train.train_step` then does its usual forward / backward and calls ``optimizer.step(closure)``,
the closure being the same forward / backward again (no second loop, and ``backward`` stays in ``train.py``).
"""
from __future__ import annotations

import pickle
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import WeightedRandomSampler
from torchvision.transforms import v2

from fer_utils.data.convention import IMAGENET_MEAN, IMAGENET_STD
from fer_utils.models.poster import PosterCourse, PosterV2, load_authors_state_dict
from fer_utils.recipes import Recipe
from fer_utils.train import class_balanced_weights
from fer_utils.utils import not_a_torch_file


# ----------------------------------------------------------------------------------------------
# SAM (Foret et al. 2021)
# ----------------------------------------------------------------------------------------------

class SAM(torch.optim.Optimizer):
    """Sharpness-Aware Minimization (Foret, Kleiner, Mobahi, Neyshabur, "Sharpness-Aware Minimization for
    Efficiently Improving Generalization", ICLR 2021) around a base optimizer; ``adaptive`` is ASAM (Kwon et al. 2021).

    SAM minimises ``max_{||e|| <= rho} L(w + e)``; to first order the maximiser is

        e(w) = rho * g / (||g||_2 + 1e-12),        g = dL/dw at w                     (adaptive=False)
        e(w) = rho * w^2 * g / (||w * g||_2 + 1e-12)                                   (adaptive=True)

    (the norm over every parameter that has a gradient, products elementwise), and one step is
    ``w <- base_step(w, dL/dw at w + e(w))``: the gradient at the perturbed point, applied at ``w``.

    :meth:`step` needs ``closure``: a function that zeroes the gradients, recomputes the loss on the same batch and
    backpropagates it. The gradient at ``w`` must already be in ``.grad`` when ``step`` is called (the loop's first
    backward). ``requires_closure`` tells :func:`fer_utils.train.train_step` to pass one. The authors'
    ``data_preprocessing/sam.py`` does the same in ``first_step`` / ``second_step`` (sam.py:14-37); unlike theirs,
    :meth:`state_dict` is the base optimizer's (Adam's moments survive a resume) and a failing closure puts the
    weights back at ``w``.
    """

    requires_closure = True

    def __init__(self, params: Any, base_optimizer: type[torch.optim.Optimizer], rho: float = 0.05,
                 adaptive: bool = False, **kwargs: Any):
        if rho < 0:
            raise ValueError(f"rho must be non-negative, got {rho}")
        super().__init__(params, dict(rho=rho, adaptive=adaptive, **kwargs))
        self.base_optimizer = base_optimizer(self.param_groups, **kwargs)
        self.param_groups = self.base_optimizer.param_groups     # one set of groups: a scheduler changes both

    @torch.no_grad()
    def perturbation(self) -> dict[torch.Tensor, torch.Tensor]:
        """e(w) for every parameter with a gradient (the formula in the class docstring)."""
        pairs = [(p, g) for g in self.param_groups for p in g["params"] if p.grad is not None]
        if not pairs:
            return {}
        scaled = [(p.abs() if g["adaptive"] else 1.0) * p.grad for p, g in pairs]
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(s) for s in scaled]))
        return {p: (p * p if g["adaptive"] else 1.0) * p.grad * (g["rho"] / (norm + 1e-12)) for p, g in pairs}

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """w + e(w), ``closure()`` (gradient there), back to w, ``base_optimizer.step()``; returns the closure's loss."""
        if closure is None:
            raise RuntimeError("SAM needs a closure (zero_grad, forward, backward on the same batch); "
                               "fer_utils.train.train_step passes one")
        moves = self.perturbation()
        saved = {p: p.detach().clone() for p in moves}
        for p, e in moves.items():
            p.add_(e)
        try:
            with torch.enable_grad():
                loss = closure()
        finally:
            for p, w in saved.items():   # exactly w again (not w + e - e, which rounds)
                p.copy_(w)
        self.base_optimizer.step()
        return loss

    def state_dict(self) -> dict[str, Any]:
        return self.base_optimizer.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.base_optimizer.load_state_dict(state_dict)
        self.param_groups = self.base_optimizer.param_groups


# ----------------------------------------------------------------------------------------------
# The recipe
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PosterRecipe(Recipe):
    rho: float = 0.05                    # SAM's radius
    adaptive: bool = False               # SAM, not ASAM
    gamma: float = 0.98                  # ExponentialLR, stepped once per epoch
    flip_p: float = 0.5                  # RandomHorizontalFlip
    erase_p: float = 0.5                 # RandomErasing, after Normalize
    erase_scale: tuple[float, float] = (0.02, 0.1)
    sampling: str = "shuffle"            # or "class_balanced": ImbalancedDatasetSampler (AffectNet)
    config: str = "faithful"             # "faithful" (PosterV2) or "course" (PosterCourse, ours)
    freeze_landmarks: bool = True        # the landmark stream gets no gradient
    pretrained: bool = True              # faithful: refuse to start without the pretrained files
    ir50_path: str = ""                  # the authors' ir50.pth
    landmark_path: str = ""              # their mobilefacenet_model_best.pth.tar (course: a CourseLandmarkNet state)
    checkpoint_path: str = ""            # a whole trained model (their DataParallel checkpoint), loaded strictly
    dims: tuple[int, int, int] = (16, 32, 64)   # course network only, from here on
    heads: tuple[int, int, int] = (1, 2, 4)
    embed_dim: int = 64
    depth: int = 1
    vit_heads: int = 4
    mode: str = "v2"


FULL = PosterRecipe(
    name="full", paper="Mao et al. 2023 (POSTER V2)",
    epochs=200,             # main.py:36
    batch_size=144,         # main.py:38
    lr=3.5e-5,              # main.py:41 default; README.md:111-123 RAF-DB 3.5e-5
    weight_decay=0.0,       # --wd 1e-4 parsed (main.py:43) but never passed to SAM / Adam (main.py:73)
    optimizer="adam",       # --optimizer default "adam" -> torch.optim.Adam (main.py:39,64-71)
    input_size=224,         # Resize((224, 224)) (main.py:103,136)
    channels=3,
    normalize="imagenet",   # Normalize(ImageNet mean, std) (main.py:106-107)
    num_classes=7,          # pyramid_trans_expr2(img_size=224, num_classes=7) (main.py:58)
    # rho=0.05, adaptive=False: SAM(params, Adam, lr, rho=0.05, adaptive=False) (main.py:73)
    # gamma=0.98: ExponentialLR(gamma=0.98) (main.py:74), stepped once per epoch after validation (main.py:179)
    # flip_p=0.5: transforms.RandomHorizontalFlip() default p (main.py:101-108)
    # erase_p=0.5, erase_scale=(0.02, 0.1): RandomErasing(scale=(0.02, 0.1)) for RAF-DB (main.py:101-108)
    # sampling="shuffle": RAF-DB shuffles (main.py:129-133); AffectNet-7 uses the sampler (main.py:118-125)
    # freeze_landmarks=True: MobileFaceNet requires_grad False (PosterV2_7cls.py:254-255)
)

#: The authors' other datasets (README.md:111-123 learning rates; main.py:109-116 erasing; main.py:118-125 sampler;
#: main_8.py: 8 classes, erasing p 1 and the sampler always). ``fer-train --set`` reaches them field by field.
DATASETS: dict[str, PosterRecipe] = {
    "rafdb": FULL,
    "affectnet7": replace(FULL, name="full-affectnet7", lr=1e-6, erase_p=1.0, erase_scale=(0.05, 0.05),
                          sampling="class_balanced"),
    "caers": replace(FULL, name="full-caers", lr=4e-5, erase_p=1.0, erase_scale=(0.05, 0.05)),
    "affectnet8": replace(FULL, name="full-affectnet8", lr=1e-6, erase_p=1.0, erase_scale=(0.05, 0.05),
                          sampling="class_balanced", num_classes=8),
}

#: Ours, for two CPU cores: PosterCourse at 64 px from scratch (no pre-trained streams, so the landmark stream
#: trains too), Adam lr 1e-3 inside the authors' SAM, their ExponentialLR and augmentation.
COURSE = replace(FULL, name="course", epochs=10, batch_size=64, lr=1e-3, input_size=64, config="course",
                 freeze_landmarks=False, pretrained=False)
#: Ours, for CI: a tiny PosterCourse at 32 px, two epochs.
SMOKE = replace(COURSE, name="smoke", epochs=2, batch_size=16, input_size=32, dims=(8, 16, 16), heads=(1, 2, 2),
                embed_dim=16, vit_heads=2)
#: Ours, for notebook 10's grid of paired runs on two cores: the course network at 32 px (maps 8 / 4 / 2), a
#: higher learning rate (3e-3) and a cap of 12 epochs (a plateau rule stops it earlier).
GRID = replace(COURSE, name="grid", epochs=12, lr=3e-3, input_size=32)
#: Ours, the grid's CI size: SMOKE's tiny network, three epochs.
GRID_SMOKE = replace(SMOKE, name="grid-smoke", epochs=3, lr=3e-3)


# ----------------------------------------------------------------------------------------------
# Pretrained files (read from the user's paths, never downloaded)
# ----------------------------------------------------------------------------------------------

def read_state(path: str | Path, what: str) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file, read with ``weights_only=True``: ``{"state_dict": ...}`` unwrapped,
    DataParallel's ``module.`` prefix stripped."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path}: no such file (POSTER V2's README links the authors' files; "
                                "nothing is downloaded here)")
    problem = not_a_torch_file(path)
    if problem:
        raise ValueError(f"{what} {path}: {problem}")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(
            f"{what} {path} holds pickled Python objects (the authors' training checkpoints keep their "
            "RecorderMeter), refused. If you trust the file: data = torch.load(path, weights_only=False); "
            f"torch.save(data['state_dict'], 'clean.pth'), and pass clean.pth. ({err.__class__.__name__})") from None
    if isinstance(data, Mapping) and isinstance(data.get("state_dict"), Mapping):
        data = data["state_dict"]
    if not isinstance(data, Mapping) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise ValueError(f"{what} {path}: expected a state dict (names -> tensors), got {type(data).__name__}")
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in data.items()}


def load_ir50(ir_back: nn.Module, state: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """Copy the authors' IR-50 into ``ir_back``. Their loader (``load_pretrained_weights``, PosterV2_7cls.py:11-35,262)
    silently keeps only the names and shapes that match; here every tensor the forward uses must be in the file with its shape
    (``output_layer``, built but never called, may be absent). Returns counts of loaded and ignored entries."""
    own = ir_back.state_dict()
    needed = [k for k in own if not k.startswith("output_layer.")]
    missing = [k for k in needed if k not in state]
    if missing:
        hint = (" The file names its units body.N (a V1-style IR-50): the authors' POSTER V2 file has body1 / body2 "
                "/ body3 (ir50.py:239-256 shows their conversion)." if any(k.startswith("body.") for k in state)
                else "")
        raise KeyError(f"IR-50 file lacks {len(missing)} of the {len(needed)} tensors the network uses, e.g. "
                       f"{missing[0]}.{hint}")
    wrong = [k for k in needed if state[k].shape != own[k].shape]
    if wrong:
        raise ValueError(f"IR-50 file: {wrong[0]} has shape {tuple(state[wrong[0]].shape)}, the network "
                         f"{tuple(own[wrong[0]].shape)}")
    usable = {k: v for k, v in state.items() if k in own and v.shape == own[k].shape}
    ir_back.load_state_dict(usable, strict=False)
    return {"loaded": len(usable), "ignored": len(state) - len(usable)}


def load_pretrained(model: nn.Module, recipe: PosterRecipe) -> dict[str, Any]:
    """Load ``recipe``'s files into ``model``: ``checkpoint_path`` (the whole network, strictly) or
    ``ir50_path`` / ``landmark_path`` (the landmark stream strictly, as the authors do at PosterV2_7cls.py:250-252).
    Returns what was loaded."""
    if recipe.checkpoint_path:
        load_authors_state_dict(model, read_state(recipe.checkpoint_path, "checkpoint_path"))
        return {"checkpoint": recipe.checkpoint_path}
    done: dict[str, Any] = {}
    if recipe.landmark_path:
        model.face_landback.load_state_dict(read_state(recipe.landmark_path, "landmark_path"))
        done["landmarks"] = recipe.landmark_path
    if recipe.ir50_path:
        if recipe.config != "faithful":
            raise ValueError("ir50_path: the course network has no IR-50 (its image stream is CourseImageNet)")
        done["ir50"] = load_ir50(model.ir_back, read_state(recipe.ir50_path, "ir50_path"))
    return done


# ----------------------------------------------------------------------------------------------
# The hooks fer-train calls (fer_utils.recipes)
# ----------------------------------------------------------------------------------------------

def build_network(recipe: PosterRecipe) -> nn.Module:
    """PosterV2 (their 8-class head when ``num_classes`` is 8, as PosterV2_8cls.py) or PosterCourse; no files read."""
    if recipe.config == "faithful":
        return PosterV2(recipe.num_classes, follow_num_classes=recipe.num_classes != 7)
    if recipe.config == "course":
        return PosterCourse(recipe.num_classes, recipe.channels, recipe.input_size, recipe.dims, recipe.heads,
                            embed_dim=recipe.embed_dim, depth=recipe.depth, vit_heads=recipe.vit_heads,
                            mode=recipe.mode)
    raise ValueError(f"config must be 'faithful' or 'course', got {recipe.config!r}")


def build_model(recipe: PosterRecipe = FULL) -> nn.Module:
    """The network with the recipe's pretrained files loaded and the landmark stream frozen when asked.

    The faithful network with ``pretrained=True`` refuses to start from random backbones: pass ``ir50_path`` and
    ``landmark_path`` (or ``checkpoint_path``), e.g. ``fer-train poster --set ir50_path=... landmark_path=...``,
    or ``pretrained=False`` to train from the authors' initialisation on purpose.
    """
    if (recipe.config == "faithful" and recipe.pretrained and not recipe.checkpoint_path
            and not (recipe.ir50_path and recipe.landmark_path)):
        raise ValueError("POSTER V2 fine-tunes the authors' pretrained IR-50 and MobileFaceNet: set ir50_path and "
                         "landmark_path (fer-train: --set ir50_path=/path/ir50.pth "
                         "landmark_path=/path/mobilefacenet_model_best.pth.tar), or checkpoint_path, or "
                         "pretrained=False to train from scratch")
    model = build_network(recipe)
    load_pretrained(model, recipe)
    if hasattr(model, "face_landback"):
        model.face_landback.requires_grad_(not recipe.freeze_landmarks)
    return model


BASE_OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}   # main.py:64-71


def make_optimizer(model: nn.Module, recipe: PosterRecipe = FULL) -> tuple[SAM, torch.optim.lr_scheduler.LRScheduler]:
    """``SAM(params, base, rho, adaptive, lr=lr)`` and ``ExponentialLR(gamma)``: lr_e = lr * gamma^e after e epochs.

    As main.py:73, only ``lr`` reaches the base optimizer (so Adam's weight decay is 0); a non-zero
    ``weight_decay`` is passed too. Frozen parameters get no gradient, so SAM and Adam skip them.
    """
    if recipe.optimizer not in BASE_OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {sorted(BASE_OPTIMIZERS)}, got {recipe.optimizer!r}")
    extra = {"weight_decay": recipe.weight_decay} if recipe.weight_decay else {}
    optimizer = SAM(model.parameters(), BASE_OPTIMIZERS[recipe.optimizer], rho=recipe.rho, adaptive=recipe.adaptive,
                    lr=recipe.lr, **extra)
    return optimizer, torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=recipe.gamma)


def loss_step(model: nn.Module, batch: Any, recipe: PosterRecipe = FULL) -> tuple[torch.Tensor, dict]:
    """Plain cross-entropy, no label smoothing (main.py:62): ``L = -mean_i log softmax(z_i)[y_i]``."""
    images, labels = batch
    loss = F.cross_entropy(model(images), labels)
    return loss, {"loss": float(loss.detach())}


def augmentation(recipe: PosterRecipe = FULL) -> v2.Compose:
    """The authors' training transform (main.py:101-116) on uint8 (C, H, W): Resize(input_size),
    RandomHorizontalFlip(flip_p), to [0, 1], Normalize(ImageNet), RandomErasing(erase_p, erase_scale, value 0)."""
    return v2.Compose([
        v2.Resize((recipe.input_size, recipe.input_size), antialias=True),
        v2.RandomHorizontalFlip(recipe.flip_p),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        v2.RandomErasing(p=recipe.erase_p, scale=recipe.erase_scale),
    ])


def train_transform(recipe: PosterRecipe = FULL) -> v2.Compose:
    """fer-train's data hook: :func:`augmentation`. (The recipe's ``sampling`` field is read by fer-train's
    loader, :func:`fer_utils.cli.train_loop.make_loaders`.)"""
    return augmentation(recipe)


def balanced_sampler(labels: torch.Tensor, generator: torch.Generator | None = None) -> WeightedRandomSampler:
    """Class-balanced sampling as the ``torchsampler`` ImbalancedDatasetSampler the authors import (main.py:21,
    118-125; version 0.1.1, vendored in V1): sample i has weight ``1 / n_{y_i}`` (its class count), and an epoch
    draws ``len(labels)`` indices with replacement (``torch.multinomial``): every class is expected equally often.
    For one process, fer-train's :class:`~fer_utils.cli.train_loop.ClassBalancedSampler` draws the same; both
    take the weights from :func:`fer_utils.train.class_balanced_weights`."""
    weights = class_balanced_weights(labels)
    return WeightedRandomSampler(weights, len(weights), replacement=True, generator=generator)
