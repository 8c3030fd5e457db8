"""The networks of the course, one file per paper plus ``baselines.py`` and ``mtcnn.py``.

A model file holds the network only (its layer table, its parameter count); it imports
nothing from ``fer_utils`` but other model files and :mod:`fer_utils.labels`. Losses
live in :mod:`fer_utils.losses`, training recipes in :mod:`fer_utils.recipes`, weight
loaders in :mod:`fer_utils.weights`.

The output contract: a classifier returns either a tensor of logits (B, classes) or one
named output (a ``NamedTuple``) with a ``logits`` field or property, its other fields named
(DDAMFN's head maps, SCN's importance weights, ABAW's ``au`` and ``va``).
:func:`logits_of` is the only place where any code reads a model's logits.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterable, Iterator

import torch
from torch import nn


def logits_of(output: Any) -> torch.Tensor:
    """The class logits in a model's ``output``: the tensor itself, or its ``.logits``.

    ``.logits`` is looked up before anything else, so a named output whose first field is not the
    logits (the two-level network's ``va`` comes first) is read correctly; a plain tuple or list is
    refused rather than guessed at, as is a detector's output (MTCNN's stages have no logits).
    """
    if isinstance(output, torch.Tensor):
        return output
    logits = getattr(output, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    raise TypeError(f"a model output of type {type(output).__name__} has no logits: expected a tensor or an "
                    "output with a .logits field (the output contract of fer_utils.models)")


def count_parameters(model: nn.Module, trainable_only: bool = False, exclude: Iterable[str] = ()) -> int:
    """Number of parameters of ``model``: all of them, or (``trainable_only``) those with ``requires_grad``.

    ``exclude`` names parameters (as in ``named_parameters()``) to leave out, e.g. DDAMFN's
    unused ones (:func:`fer_utils.models.ddamfn.count_used_parameters`).
    """
    skip = set(exclude)
    return sum(p.numel() for name, p in model.named_parameters()
               if name not in skip and (p.requires_grad or not trainable_only))


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode inside the ``with`` block; afterwards every submodule m is back in its own earlier
    mode (``m.training`` as recorded for each m in ``model.modules()``), so a child that was in eval mode under
    a training parent (a frozen backbone, a logits view around an eval-mode network) stays in eval mode."""
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes.items():
            module.training = training


def flop_macs(model: nn.Module, *inputs: torch.Tensor) -> int:
    """Multiply-accumulates of one forward of ``inputs`` in eval mode: ``torch.utils.flop_counter`` FLOPs / 2.

    FlopCounterMode counts convolutions and matrix products only (2 FLOPs per multiply-add); BatchNorm,
    activations, pooling and element-wise products are not counted. Every module's mode is restored after.
    """
    from torch.utils.flop_counter import FlopCounterMode

    with eval_mode(model), torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(*inputs)
    return counter.get_total_flops() // 2
