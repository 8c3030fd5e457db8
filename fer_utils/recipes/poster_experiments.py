"""The experiments of notebook 10 (POSTER): SynthFaces pools at a pose or occlusion dose, one course run of a
:class:`~fer_utils.models.poster.PosterCourse` arm through :func:`fer_utils.train.fit` under a plateau rule, and
the landmark queries' attention maps (ours).

A *dose* is the scene of every face of a pool (train, validation and test alike):

- ``"pose"``: each face turned in depth by up to ``yaw`` degrees (SynthFaces' ``yaw`` option);
- ``"occlusion"``: each face rendered again with one occluder, cycling over sunglasses, a hand and a mask
  (:meth:`SynthFaces.render_item` with ``occluder=...``), so that a third of the faces lose their eyes, a third
  part of the face behind a hand and a third their mouth.

A run trains the arm on the pool's training identities, watches the validation loss with the plateau rule and
records the test accuracy after every epoch (so the authors' protocol, the best epoch on the evaluation folder,
can be measured against the plateau epoch, as notebook 06 does).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fer_utils.data import SynthFaces, identity_split, to_model_tensor
from fer_utils.recipes import poster as poster_recipe
from fer_utils.recipes.poster_pretrain import load_landmark_stream
from fer_utils.train import Plateau, evaluate, fit

OCCLUDERS = ("sunglasses", "hand", "mask")
DOSES = ("pose", "occlusion")


@dataclass(frozen=True)
class PoolSetup:
    """How one (dose, seed) pool is drawn: ``n`` faces of ``difficulty`` at ``size`` px, ``n // 20`` people,
    turned by up to ``yaw`` degrees at the pose dose; split by identity into train / validation / test."""

    n: int = 800
    size: int = 32
    difficulty: str = "lab"
    yaw: float = 40.0
    test_size: float = 0.25
    val_size: float = 0.2


def occluded(faces: SynthFaces, i: int, seed: int) -> dict[str, Any]:
    """Face ``i`` again with occluder ``OCCLUDERS[i % 3]``; its shape and colour drawn from ``(seed, i)`` (the lab
    and medium scenes of an uncovered face carry no occluder parameters of their own)."""
    params = np.random.default_rng([seed, i, 7]).random(6)
    return faces.render_item(i, occluder=OCCLUDERS[i % 3], occluder_params=params)


def render_pool(dose: str, seed: int, setup: PoolSetup) -> dict[str, Any]:
    """Seed ``seed``'s faces at ``dose``: images (N, 3, S, S) ImageNet-normalised, labels (N,), the identity
    split (train / val / test indices), the test faces' region masks and their occluders."""
    if dose not in DOSES:
        raise ValueError(f"dose must be one of {DOSES}, got {dose!r}")
    faces = SynthFaces(setup.n, seed=seed, difficulty=setup.difficulty, size=setup.size, n_identities=setup.n // 20,
                       with_masks=True, yaw=setup.yaw if dose == "pose" else 0.0)
    items = [occluded(faces, i, seed) if dose == "occlusion" else faces[i] for i in range(setup.n)]
    train, test = identity_split(faces.identities, test_size=setup.test_size, seed=seed)
    fit_part, val_part = identity_split(faces.identities[train], test_size=setup.val_size, seed=seed)
    return dict(images=to_model_tensor(np.stack([it["image"] for it in items]), "imagenet"),
                labels=torch.as_tensor(faces.true_labels.astype(np.int64)), train=train[fit_part],
                val=train[val_part], test=test, masks=[items[i]["masks"] for i in test],
                occluders=[items[i]["occluder"] for i in test], raw=np.stack([items[i]["image"] for i in test]))


def arm_recipe(recipe: poster_recipe.PosterRecipe, mode: str) -> poster_recipe.PosterRecipe:
    """The recipe of one arm: the same recipe, another ``mode`` (v2, v1 or image_only)."""
    return replace(recipe, mode=mode)


def build_arm(recipe: poster_recipe.PosterRecipe, mode: str, stream: dict | None, seed: int) -> nn.Module:
    """A seeded PosterCourse of ``mode``; with a landmark stream, ``stream`` (pre-trained state) is loaded and
    frozen in eval mode (:func:`load_landmark_stream` with ``batch_statistics=False``)."""
    torch.manual_seed(seed)
    model = poster_recipe.build_model(arm_recipe(recipe, mode))
    if mode != "image_only":
        load_landmark_stream(model, stream, batch_statistics=False)
    return model


def train_arm(model: nn.Module, recipe: poster_recipe.PosterRecipe, data: dict, seed: int, stop: Plateau,
              progress: bool = False) -> dict[str, list]:
    """The recipe's SAM + Adam + ExponentialLR through :func:`fit` on the training faces (the authors' flip, no
    random erasing at 32 px), the plateau rule on the validation loss; ``history["test_accuracy"]`` after every
    epoch (read only by the protocol comparison, never by the stopping rule)."""
    images, labels = data["images"], data["labels"]
    train = torch.as_tensor(data["train"])
    generator = torch.Generator().manual_seed(seed)
    size = recipe.batch_size

    def batches(_epoch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        order = train[torch.randperm(len(train), generator=generator)]
        flips = torch.rand(len(order), generator=generator) < recipe.flip_p
        x = images[order]
        x = torch.where(flips.view(-1, 1, 1, 1), x.flip(-1), x)
        return [(x[i:i + size], labels[order[i:i + size]]) for i in range(0, len(order), size)]

    test = [(images[data["test"]], labels[data["test"]])]

    def on_epoch(_epoch: int, history: dict) -> None:
        history.setdefault("test_accuracy", []).append(evaluate(model, test)["accuracy"])

    optimizer, scheduler = poster_recipe.make_optimizer(model, recipe)
    return fit(model, batches, recipe.epochs, optimizer, val_loader=[(images[data["val"]], labels[data["val"]])],
               scheduler=scheduler, progress=progress, steps_per_epoch=-(-len(train) // size), on_epoch=on_epoch,
               loss_step=lambda m, b: poster_recipe.loss_step(m, b, recipe), stop=stop, desc=f"{model.mode}")


@torch.no_grad()
def landmark_attention(model: nn.Module, images: torch.Tensor, scale: int = 0) -> np.ndarray:
    """Where the landmark queries look at scale ``scale`` of a v2 PosterCourse: the softmax weights of every
    landmark query on the image tokens, averaged over queries and heads, as (N, S, S) maps (nearest upsampling
    of the token grid to the image). The windows must cover the whole map (the default, as in V2)."""
    fusion = model.fusions[scale]
    if model.mode != "v2" or fusion.window_size * 4 * 2 ** scale != images.shape[-1]:
        raise ValueError("landmark_attention needs a v2 model whose windows cover the whole map")
    seen: dict[str, tuple] = {}
    handle = fusion.attn.register_forward_hook(lambda m, args, out: seen.update(args=args))
    model.eval()
    model(images)
    handle.remove()
    attn_module = fusion.attn
    x, queries = seen["args"]
    n, length, c = x.shape
    k = attn_module.qkv(x).reshape(n, length, 2, attn_module.num_heads, -1).permute(2, 0, 3, 1, 4)[0]
    bias = attn_module.relative_position_bias_table[attn_module.relative_position_index.view(-1)]
    logits = (queries * attn_module.scale) @ k.transpose(-2, -1) + bias.view(length, length, -1).permute(2, 0, 1)
    weights = logits.softmax(-1).mean(dim=(1, 2))                   # (N, tokens): mean over heads and queries
    side = int(round(length ** 0.5))
    grid = weights.view(n, 1, side, side)
    return F.interpolate(grid, size=images.shape[-2:], mode="nearest")[:, 0].numpy()
