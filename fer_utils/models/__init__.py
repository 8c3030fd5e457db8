"""The networks of the course, one file per paper plus ``baselines.py`` and ``mtcnn.py``.

A model file holds the network only (its layer table, its parameter count); it imports
nothing from ``fer_utils`` but other model files and :mod:`fer_utils.labels`. Losses
live in :mod:`fer_utils.losses`, training recipes in :mod:`fer_utils.recipes`, weight
loaders in :mod:`fer_utils.weights`.
"""
from __future__ import annotations

from typing import Iterable

from torch import nn


def count_parameters(model: nn.Module, trainable_only: bool = False, exclude: Iterable[str] = ()) -> int:
    """Number of parameters of ``model``: all of them, or (``trainable_only``) those with ``requires_grad``.

    ``exclude`` names parameters (as in ``named_parameters()``) to leave out, e.g. DDAMFN's
    unused ones (:func:`fer_utils.models.ddamfn.count_used_parameters`).
    """
    skip = set(exclude)
    return sum(p.numel() for name, p in model.named_parameters()
               if name not in skip and (p.requires_grad or not trainable_only))
