"""Each paper's training recipe: its hyper-parameters as a dataclass, and the steps that use them.

One module per paper (``recipes/ddamfn.py``, ``recipes/two_level.py`` ...). Each defines:

- a frozen dataclass subclassing :class:`Recipe` whose defaults are the paper's
  values, with ``FULL`` (the paper's recipe) and, where a notebook trains a
  scaled-down version, named ones such as ``COURSE`` and ``SMOKE``;
- ``build_model(recipe) -> nn.Module``;
- ``make_optimizer(model, recipe) -> (optimizer, scheduler or None)``;
- ``loss_step(model, batch, recipe) -> (loss, logs)``: the training loss of one batch.

The notebooks' ``full`` profile and ``fer-train`` read the same objects, so the
paper's hyper-parameters are written once.
"""
from __future__ import annotations

import importlib
import json
import pkgutil
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Callable

import torch


@dataclass(frozen=True)
class Recipe:
    """What every recipe states. Papers add their own fields in a subclass."""

    name: str
    paper: str
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float = 0.0
    optimizer: str = "adam"
    input_size: int = 112
    channels: int = 3
    normalize: str = "symmetric"  # see fer_utils.data.convention
    num_classes: int = 7
    task: str = "expression"  # "expression", "va" or "abaw"


def available() -> list[str]:
    """The recipe module names, e.g. ``["ddamfn", "two_level", ...]``."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def get(name: str) -> ModuleType:
    """The recipe module ``name``; a clear error listing the available ones otherwise."""
    if name not in available():
        raise ValueError(f"unknown recipe {name!r}; available recipes: {', '.join(available()) or 'none'}")
    return importlib.import_module(f"{__name__}.{name}")


def cached_pretraining(path: Path, train: Callable[[], tuple[dict, dict]], field: str = "state") -> tuple[dict, dict]:
    """A pre-trained state dict and its info, read from ``path`` when it exists (``info["cached"]`` True), else
    ``train()``'s (state, info), saved to ``path`` first (``info["cached"]`` False). The file holds the state
    under ``field`` and the info as JSON; the caller's ``path`` carries the key that says what was trained.

    The torch thread count is added to the file name (``<stem>_t<threads>``): another count sums in another
    order, so a run with one thread never reads a state trained with two (``make threads-check``) and the same
    command gives the same numbers whichever run filled the cache first."""
    path = path.with_name(f"{path.stem}_t{torch.get_num_threads()}{path.suffix}")
    if path.is_file():
        saved = torch.load(path, map_location="cpu", weights_only=True)
        return saved[field], {**json.loads(saved["info"]), "cached": True}
    state, info = train()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({field: state, "info": json.dumps(info)}, path)
    return state, {**info, "cached": False}
