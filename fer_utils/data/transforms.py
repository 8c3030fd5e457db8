"""Face augmentations with torchvision ``transforms.v2``: image, landmarks and masks move together.

A *sample* is a dict with (all optional except ``image``)::

    image      uint8 (H, W, 3) or (H, W) numpy array (or a (C, H, W) tensor)
    landmarks  (68, 2) iBUG points (x, y)
    points5    (5, 2)  left eye, right eye, nose, left / right mouth corner (image-left first)
    masks      {region name: bool (H, W)}
    ...        anything else (label, aus, valence ...) passes through untouched

:func:`to_tv_tensors` wraps these as ``tv_tensors.Image``, ``tv_tensors.KeyPoints``
and ``tv_tensors.Mask``, so every v2 transform applies the *same* random geometry
to all of them. The one thing v2 cannot know is face semantics: after a horizontal
flip the image-left eye becomes the image-right eye, so :class:`FaceHorizontalFlip`
also **reorders the landmark indices** (:data:`FLIP_68`, :data:`FLIP_5`). Region
masks simply mirror: their names (eyes, brows, mouth ...) cover both sides.

Coordinates: torchvision flips points as ``x' = W - 1 - x`` (pixel-index
convention: the centre of pixel column ``j`` is at ``x = j``).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from fer_utils.data.convention import IMAGENET_MEAN, IMAGENET_STD, NORMALIZATIONS

#: iBUG 68-point horizontal-flip permutation: after mirroring, new point k = old point FLIP_68[k].
FLIP_68: list[int] = (
    list(range(16, -1, -1))                  # jaw 0-16 reversed
    + list(range(26, 16, -1))                # brows 17-21 <-> 26-22
    + [27, 28, 29, 30]                       # nose bridge stays
    + [35, 34, 33, 32, 31]                   # nostrils reversed
    + [45, 44, 43, 42, 47, 46]               # left eye 36-41 <- right eye
    + [39, 38, 37, 36, 41, 40]               # right eye 42-47 <- left eye
    + [54, 53, 52, 51, 50, 49, 48]           # outer upper lip 48-54 reversed
    + [59, 58, 57, 56, 55]                   # outer lower lip 55-59 reversed
    + [64, 63, 62, 61, 60]                   # inner upper lip 60-64 reversed
    + [67, 66, 65]                           # inner lower lip 65-67 reversed
)
#: 5-point flip: swap the eyes and the mouth corners, the nose stays.
FLIP_5: list[int] = [1, 0, 2, 4, 3]
FLIPS: dict[int, list[int]] = {68: FLIP_68, 5: FLIP_5}


# ---------------------------------------------------------------- transforms
class FaceHorizontalFlip(v2.RandomHorizontalFlip):
    """Mirror with probability ``p``; 68- and 5-point landmark sets are re-indexed left <-> right."""

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        out = super().transform(inpt, params)
        if isinstance(out, tv_tensors.KeyPoints) and out.shape[-2] in FLIPS:
            perm = FLIPS[out.shape[-2]]
            out = tv_tensors.wrap(out.as_subclass(torch.Tensor)[..., perm, :], like=out)
        return out


class FaceRandomErasing(v2.RandomErasing):
    """Random erasing (Zhong et al. 2020) of the image only: an occluder hides a region,
    it does not move the landmarks or the region masks."""

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if isinstance(inpt, (tv_tensors.KeyPoints, tv_tensors.Mask, tv_tensors.BoundingBoxes)):
            return inpt
        return super().transform(inpt, params)


def _scaling(normalize: str) -> list[v2.Transform]:
    """The steps after ``ToDtype(scale=True)`` ([0, 1]) that give :mod:`fer_utils.data.convention`'s scaling."""
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"normalize={normalize!r}: expected one of {NORMALIZATIONS}")
    if normalize == "symmetric":
        return [v2.Normalize((0.5,), (0.5,))]  # (x - 0.5) / 0.5 = x / 127.5 - 1, any number of channels
    return [v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)] if normalize == "imagenet" else []


def train_transform(size: int | None = None, flip_p: float = 0.5, degrees: float = 10.0,
                    jitter: float = 0.2, erase_p: float = 0.25, normalize: str = "unit") -> v2.Compose:
    """Flip (with index swap), small rotation, colour jitter, float, random erasing.

    ``size`` resizes to size x size first; ``normalize`` is the input convention
    ("unit" [0, 1], "symmetric" [-1, 1], "imagenet"; :mod:`fer_utils.data.convention`).
    """
    steps: list[v2.Transform] = [v2.Resize((size, size), antialias=True)] if size else []
    steps += [
        FaceHorizontalFlip(p=flip_p),
        v2.RandomRotation(degrees),
        v2.ColorJitter(brightness=jitter, contrast=jitter, saturation=jitter),
        v2.ToDtype(torch.float32, scale=True),      # images only; masks stay bool
        FaceRandomErasing(p=erase_p, scale=(0.02, 0.15)),
    ]
    return v2.Compose(steps + _scaling(normalize))


def eval_transform(size: int | None = None, normalize: str = "unit") -> v2.Compose:
    """Deterministic: optional resize, float, then the ``normalize`` scaling.

    ``eval_transform(112, normalize="imagenet")`` is DDAMFN's validation transform (the authors' scripts).
    """
    steps: list[v2.Transform] = [v2.Resize((size, size), antialias=True)] if size else []
    steps.append(v2.ToDtype(torch.float32, scale=True))
    return v2.Compose(steps + _scaling(normalize))


def rafdb_train_transform(size: int = 112):
    """DDAMFN's (Zhang et al. 2023) RAF-DB training augmentation, as the authors' script, on uint8 (C, H, W).

    Resize(size); RandomHorizontalFlip(0.5); RandomApply(p=0.2)[RandomRotation(5), RandomCrop(size, pad 8)];
    to float in [0, 1]; Normalize(ImageNet); RandomErasing(scale=(0.02, 0.25)) (p 0.5, value 0).
    """
    return v2.Compose([
        v2.Resize((size, size), antialias=True),
        v2.RandomHorizontalFlip(0.5),
        v2.RandomApply([v2.RandomRotation(5), v2.RandomCrop(size, padding=8)], p=0.2),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        v2.RandomErasing(scale=(0.02, 0.25)),
    ])


# ------------------------------------------------------------ sample <-> tv
def _image_tensor(image) -> torch.Tensor:
    """HxW / HxWxC numpy (or CxHxW tensor) -> (C, H, W) tensor."""
    if isinstance(image, torch.Tensor):
        return image if image.ndim == 3 else image[None]
    arr = np.asarray(image)
    arr = arr[..., None] if arr.ndim == 2 else arr
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


def to_tv_tensors(sample: dict) -> dict:
    """Wrap a sample's image, landmarks, points5 and masks as tv_tensors (other keys unchanged)."""
    out = dict(sample)
    image = tv_tensors.Image(_image_tensor(sample["image"]))
    canvas = tuple(image.shape[-2:])
    out["image"] = image
    for key in ("landmarks", "points5"):
        if key in sample and sample[key] is not None:
            pts = torch.as_tensor(np.asarray(sample[key], dtype=np.float32))
            out[key] = tv_tensors.KeyPoints(pts, canvas_size=canvas)
    if "masks" in sample and sample["masks"] is not None:
        out["masks"] = {k: tv_tensors.Mask(torch.as_tensor(np.asarray(m, dtype=bool)))
                        for k, m in sample["masks"].items()}
    return out


def _untag(value):
    """tv_tensors -> plain tensors (nested dicts too)."""
    if isinstance(value, dict):
        return {k: _untag(v) for k, v in value.items()}
    if isinstance(value, torch.Tensor):
        return value.as_subclass(torch.Tensor)
    return value


def transform_sample(sample: dict, transform: v2.Transform | None = None) -> dict:
    """Apply ``transform`` (default :func:`train_transform`) jointly to image, points and masks.

    Returns a new dict: ``image`` (C, H, W) tensor, ``landmarks`` (68, 2) / ``points5``
    (5, 2) float tensors, ``masks`` {name: bool (H, W) tensor}, other keys as given.
    """
    transform = train_transform() if transform is None else transform
    return _untag(transform(to_tv_tensors(sample)))


def hflip_sample(sample: dict) -> dict:
    """A deterministic mirror of a sample (flip probability 1), e.g. for test-time augmentation."""
    return transform_sample(sample, FaceHorizontalFlip(p=1.0))
