"""Seeding, device choice, metric recording, the cache folder shared by every notebook, and a check that a file
is one torch.save wrote."""
from __future__ import annotations

import json
import math
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import platformdirs
import torch


def cache_dir() -> Path:
    """The root of the course's caches (assets, trained models): ``$FER_CACHE_DIR`` if set, else the
    per-user cache folder (``platformdirs.user_cache_dir("fer-utils")``, e.g. ``~/.cache/fer-utils``).

    Never inside the package or the repository, so an installed (non-editable) package writes
    nothing into site-packages.
    """
    override = os.environ.get("FER_CACHE_DIR")
    if override:
        return Path(override).expanduser()
    return Path(platformdirs.user_cache_dir("fer-utils", appauthor=False))


#: The run profiles, smallest first (what each one sets: :mod:`fer_utils.profiles` and the recipes).
PROFILE_NAMES: tuple[str, ...] = ("smoke", "course", "full")


def check_profile(profile: Any) -> str:
    """The name of an already resolved profile (a name or an object with ``.name``); refuses anything else.
    Reads no environment: :func:`resolve_profile` does that, once, at an entry point."""
    name = getattr(profile, "name", profile)
    if name not in PROFILE_NAMES:
        raise ValueError(f"unknown profile {name!r}; valid profiles are {', '.join(map(repr, PROFILE_NAMES))}")
    return name


def resolve_profile(name: str | None = None, default: str = "course") -> str:
    """The profile in force at an entry point (a notebook's set-up, ``fer-train``): ``FER_PROFILE`` if
    set, else ``name``, else ``default``. The only place the package reads ``FER_PROFILE``."""
    return check_profile(os.environ.get("FER_PROFILE") or name or default)


def seed_everything(seed: int = 0, deterministic: bool = True) -> None:
    """Seed Python, NumPy and torch; on the CPU also ask torch for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def pick_device(preferred: str | None = None) -> torch.device:
    """``preferred`` if given ("cpu", "cuda", "mps"), else cuda, then mps, then cpu."""
    if preferred and preferred != "auto":
        if preferred.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"device {preferred!r} requested but CUDA is not available")
        if preferred == "mps" and not torch.backends.mps.is_available():
            raise ValueError("device 'mps' requested but MPS is not available")
        return torch.device(preferred)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def use_amp(device: torch.device | str) -> bool:
    """Mixed precision only on CUDA (on CPU and MPS it is slower or unsupported here)."""
    return torch.device(device).type == "cuda"


def not_a_torch_file(path: str | os.PathLike) -> str | None:
    """``None`` when ``path`` starts as a file ``torch.save`` writes: a zip archive (``PK\\x03\\x04``, the format
    since PyTorch 1.6, also TorchScript's) or a pickle (``\\x80``, the legacy format); otherwise what it
    starts with instead, for an error message (``torch.load`` reports such a file as an unpickling error)."""
    with open(path, "rb") as file:
        head = file.read(8)
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":
        return None
    size = os.path.getsize(path)
    return (f"not a file torch.save writes (a zip archive or a pickle): {size:,} bytes"
            + (f" starting with {head!r}" if head else ""))


def _json_value(value: Any) -> Any:
    """Turn numpy / torch scalars and arrays into JSON-friendly Python values."""
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return _json_value(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def record(name: str, value: Any, results_path: str | os.PathLike | None) -> Any:
    """Write one key metric into the JSON file ``results_path`` (merged with what is there).

    ``results_path=None`` records nothing (a notebook run by hand). The folder
    must exist: a missing one is an error that names it, not a silent mkdir in
    the wrong place.
    """
    if results_path is None or str(results_path) == "":
        return value
    path = Path(results_path)
    if not path.parent.is_dir():
        raise FileNotFoundError(
            f"results_path {str(path)!r}: folder {str(path.parent)!r} does not exist; create it first"
        )
    data = json.loads(path.read_text()) if path.exists() and path.stat().st_size else {}
    data[name] = _json_value(value)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return value
