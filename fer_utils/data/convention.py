"""The one input convention of the course: uint8 images -> model tensors.

Every notebook and helper turns images into tensors with :func:`to_model_tensor`
and says which scaling it uses:

- ``"unit"``: ``x / 255`` in [0, 1];
- ``"symmetric"``: ``x / 127.5 - 1`` in [-1, 1] (the course's default for
  models trained from scratch);
- ``"imagenet"``: ``(x / 255 - mean) / std`` per channel with the ImageNet
  statistics (models whose backbone was pre-trained that way, e.g. DDAMFN).

Explainers never assume a scaling: they take the baseline they need as a
parameter, and :func:`black_value` gives the tensor value of a black pixel under
each scaling (the usual Integrated Gradients baseline).
"""
from __future__ import annotations

import numpy as np
import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NORMALIZATIONS = ("unit", "symmetric", "imagenet")


def _check(normalize: str) -> None:
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"normalize={normalize!r}: expected one of {NORMALIZATIONS}")


def to_model_tensor(images: np.ndarray | torch.Tensor, normalize: str = "symmetric") -> torch.Tensor:
    """uint8 images (N, H, W), (N, H, W, C) or one (H, W) -> float32 (N, C, H, W) scaled by ``normalize``."""
    _check(normalize)
    if not isinstance(images, torch.Tensor):
        images = np.asarray(images)
        if not images.flags.writeable:   # PIL's arrays are read-only; torch wants its own writable copy
            images = images.copy()
    x = torch.as_tensor(images)
    if x.dtype != torch.uint8:
        raise TypeError(f"to_model_tensor expects uint8 images (0..255), got dtype {x.dtype}")
    if x.ndim == 2:  # one grey image (H, W)
        x = x.unsqueeze(0)
    if x.ndim == 3:  # (N, H, W) grey
        x = x.unsqueeze(1)
    elif x.ndim == 4:  # (N, H, W, C)
        x = x.permute(0, 3, 1, 2)
    else:
        raise ValueError(f"to_model_tensor expects (N, H, W) or (N, H, W, C) images, got shape {tuple(x.shape)}")
    x = x.contiguous().float()
    if normalize == "unit":
        return x / 255.0
    if normalize == "symmetric":
        return x / 127.5 - 1.0
    if x.shape[1] != 3:
        raise ValueError(f"normalize='imagenet' needs 3-channel images, got {x.shape[1]} channel(s)")
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x / 255.0 - mean) / std


def black_value(normalize: str, channels: int = 1) -> torch.Tensor:
    """The tensor value of a black (0) pixel under ``normalize``, shape (1, channels, 1, 1)."""
    return to_model_tensor(np.zeros((1, 1, 1, channels), np.uint8), normalize)
