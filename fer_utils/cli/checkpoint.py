"""fer-train's checkpoints: plain tensors and primitive types only, loaded with ``weights_only=True``.

A checkpoint is one ``torch.save``'d dict::

    format        "fer-train/1"
    epoch         the number of epochs completed (training resumes at epoch + 1)
    recipe        {"module": "fer_utils.recipes.ddamfn", "class": "DDAMFNRecipe", "profile": "full",
                   "fields": {...}}  (the dataclass as a dict of primitives)
    model         the bare model's state_dict (no ``module.`` / ``_orig_mod.`` prefixes)
    optimizer     optimizer.state_dict();  scheduler: scheduler.state_dict() or None
    scaler        GradScaler.state_dict() or None (float16 AMP only)
    rng           one entry per rank: torch CPU (and CUDA) generator states, NumPy's MT19937
                  state as a tensor, Python's ``random`` state as a tuple of ints
    best          {"metric": name, "value": float or None};  world_size: the number of processes
    metrics       the last epoch's metrics (the line also written to metrics.jsonl)

Nothing in it needs unpickling of Python classes, so ``torch.load(path, weights_only=True)``
reads it; a file that holds pickled objects (a whole ``nn.Module``, a numpy array, a custom class)
is refused with :class:`CheckpointError` instead of executing its code.
"""
from __future__ import annotations

import dataclasses
import os
import pickle
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fer_utils.utils import not_a_torch_file

FORMAT = "fer-train/1"


class CheckpointError(ValueError):
    """A checkpoint that fer-train will not load; the message names the file and the reason."""


# ----------------------------------------------------------------------------------------------
# Random number generator states as tensors and primitives
# ----------------------------------------------------------------------------------------------

def rng_state() -> dict[str, Any]:
    """This process's generator states: torch CPU, CUDA (the current device), NumPy, Python ``random``."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": random.getstate(),
        "cuda": torch.cuda.get_rng_state() if torch.cuda.is_available() else None,
    }
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"].cpu())
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].cpu().numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"].cpu())


# ----------------------------------------------------------------------------------------------
# Recipes as plain dicts
# ----------------------------------------------------------------------------------------------

def recipe_to_dict(recipe: Any, profile: str) -> dict[str, Any]:
    """A recipe dataclass -> {"module", "class", "profile", "fields"} of primitives."""
    cls = type(recipe)
    return {"module": cls.__module__, "class": cls.__qualname__, "profile": profile,
            "fields": {f.name: getattr(recipe, f.name) for f in dataclasses.fields(recipe)}}


# ----------------------------------------------------------------------------------------------
# Saving and loading
# ----------------------------------------------------------------------------------------------

def save(path: str | os.PathLike, checkpoint: dict[str, Any]) -> Path:
    """Write ``checkpoint`` atomically (to a temporary file, then renamed): an interrupted
    write never leaves a half-written ``last.pt`` behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"format": FORMAT, **checkpoint}, tmp)
    os.replace(tmp, path)
    return path


def _read(path: Path, map_location: str | torch.device) -> Any:
    """``torch.load(path, weights_only=True)`` with fer-train's errors."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: no such file")
    problem = not_a_torch_file(path)
    if problem:
        raise CheckpointError(f"checkpoint {path}: {problem}")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL (\S+)", str(err))
        detail = f" (a pickled {found.group(1)})" if found else ""
        raise CheckpointError(
            f"checkpoint {path} holds pickled Python objects{detail}, not only tensors and plain types: "
            "refused, because unpickling them would run code from the file. "
            "fer-train writes and reads only weights_only=True checkpoints; if you trust the file, "
            "load it yourself and re-save its state_dict.") from None
    except (RuntimeError, EOFError, OSError) as err:
        raise CheckpointError(f"checkpoint {path} could not be read: {err}") from None
    return data


def load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a fer-train checkpoint with ``torch.load(weights_only=True)``.

    Raises :class:`CheckpointError` naming the file when it is missing, holds pickled Python
    objects (refused: unpickling runs arbitrary code), or is not a fer-train checkpoint.
    """
    path = Path(path)
    data = _read(path, map_location)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        got = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise CheckpointError(f"checkpoint {path}: expected a {FORMAT!r} checkpoint written by fer-train, "
                              f"got format {got!r}")
    missing = [k for k in ("epoch", "recipe", "model", "optimizer", "rng") if k not in data]
    if missing:
        raise CheckpointError(f"checkpoint {path}: missing entries {missing}")
    return data


def load_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A model state dict from a fer-train checkpoint or from a file holding only a state dict
    (``torch.save(model.state_dict(), path)``), read with ``weights_only=True``."""
    path = Path(path)
    data = _read(path, "cpu")
    if isinstance(data, dict) and data.get("format") == FORMAT:
        return data["model"]
    if isinstance(data, dict) and data and all(isinstance(v, torch.Tensor) for v in data.values()):
        return data
    raise CheckpointError(f"{path}: expected a fer-train checkpoint or a state dict (names -> tensors)")
