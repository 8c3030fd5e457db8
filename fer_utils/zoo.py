"""The course model cache: each paper notebook saves its final model, notebook 09 loads them all.

A model is saved as a plain dict of tensors and strings (readable with
``torch.load(..., weights_only=True)``, so loading runs no pickled code) under ``models/`` in the
course's per-user cache (:func:`fer_utils.utils.cache_dir`, e.g. ``~/.cache/fer-utils/models``;
``FER_CACHE_DIR`` moves the root, ``FER_ZOO_DIR`` this folder alone)::

    zoo.save("gap_cnn", model, config)        # at the end of notebook 02
    model = zoo.load("gap_cnn", config)       # in notebook 09: the same config, or an error

``config`` is a JSON-able dict that says how to build the model and what it was trained on:

- ``builder``: ``"module:callable"`` that builds the network (a class or a function);
- ``kwargs``: its keyword arguments; a value ``{"ref": "module:name"}`` is imported (for
  arguments such as ``fer_utils.models.ddamfn:COURSE`` that are objects, not JSON);
- anything else (input size, normalisation, data, profile, epochs) is compared but not used.

An entry is keyed by a hash of the config AND of the source file that defines the model class,
so that

- a config that differs from every saved one is refused, naming the fields that differ;
- a model whose code changed since it was saved is never loaded stale (``StaleModelError``).
"""
from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import os
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fer_utils.utils import cache_dir


class ZooError(LookupError):
    """Base class: the zoo cannot give this model (the message says why and what to run)."""


class MissingModelError(ZooError):
    """No entry under that name."""


class ConfigMismatchError(ZooError):
    """Entries exist under that name, but none was saved with this config."""


class StaleModelError(ZooError):
    """The entry's model code changed since it was saved."""


def zoo_dir() -> Path:
    """Where entries live: ``$FER_ZOO_DIR`` if set, else ``models/`` under :func:`~fer_utils.utils.cache_dir`."""
    override = os.environ.get("FER_ZOO_DIR")
    return Path(override).expanduser() if override else cache_dir() / "models"


def _shown(path: Path) -> str:
    """A path as printed in messages: ``~/...`` when under the home folder (no user names in outputs)."""
    home = Path.home()
    return str(Path("~") / path.relative_to(home)) if path.is_relative_to(home) else str(path)


def _canonical(config: dict) -> str:
    try:
        return json.dumps(config, sort_keys=True, separators=(",", ":"))
    except TypeError as err:
        raise TypeError(f"zoo config must be JSON-able (numbers, strings, lists, dicts): {err}") from None


def config_hash(config: dict) -> str:
    """SHA-256 (first 12 hex digits) of the config as canonical JSON (sorted keys)."""
    return hashlib.sha256(_canonical(config).encode()).hexdigest()[:12]


def _resolve(path: str) -> Any:
    if not isinstance(path, str) or ":" not in path:
        raise ValueError(f"expected 'module:name', got {path!r}")
    module, name = path.split(":", 1)
    obj = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def source_hash(cls: type) -> str:
    """SHA-256 (12 hex digits) of the whole source file that defines ``cls`` (its blocks included)."""
    module = sys.modules[cls.__module__]
    try:
        text = inspect.getsource(module)
    except (OSError, TypeError):  # defined in a notebook or a test: hash the class alone
        text = inspect.getsource(cls)
    return hashlib.sha256(f"{cls.__qualname__}\n{text}".encode()).hexdigest()[:12]


def build(config: dict) -> nn.Module:
    """Build the (untrained) network a config describes."""
    for key in ("builder", "kwargs"):
        if key not in config:
            raise KeyError(f"zoo config needs a {key!r} field, got fields {sorted(config)}")
    kwargs = {k: _resolve(v["ref"]) if isinstance(v, dict) and set(v) == {"ref"} else v
              for k, v in config["kwargs"].items()}
    return _resolve(config["builder"])(**kwargs)


def _path(name: str, config: dict) -> Path:
    if not name or not all(ch.isalnum() or ch in "_-." for ch in name):
        raise ValueError(f"zoo name must be letters, digits, '_', '-' or '.', got {name!r}")
    return zoo_dir() / f"{name}-{config_hash(config)}.pt"


def save(name: str, model: nn.Module, config: dict, metrics: dict | None = None) -> Path:
    """Save ``model``'s state dict with its config (and optional JSON-able ``metrics``); return the file.

    Checks first that ``build(config)`` makes a network with exactly the same state dict keys and
    shapes, so an entry can always be loaded back.
    """
    built = build(config)
    if type(built) is not type(model):
        raise TypeError(f"config builds a {type(built).__name__}, but the model is a {type(model).__name__}")
    mine = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in built.state_dict().items()}
    if mine != theirs:
        diff = sorted(set(mine.items()) ^ set(theirs.items()))[:3]
        raise ValueError(f"config builds a different {type(model).__name__} (first differences: {diff})")
    path = _path(name, config)
    path.parent.mkdir(parents=True, exist_ok=True)
    entry = {"state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
             "config": _canonical(config), "class": f"{type(model).__module__}:{type(model).__qualname__}",
             "source_hash": source_hash(type(model)), "metrics": json.dumps(metrics or {})}
    torch.save(entry, path)
    return path


def _differences(wanted: dict, saved: dict) -> str:
    keys = sorted(set(wanted) | set(saved))
    diffs = [f"{k}: saved {saved.get(k, '<absent>')!r}, asked {wanted.get(k, '<absent>')!r}"
             for k in keys if wanted.get(k, "<absent>") != saved.get(k, "<absent>")]
    return "; ".join(diffs)


def entries(name: str | None = None) -> list[Path]:
    """The saved files (all, or those of one name), oldest first."""
    pattern = f"{name}-*.pt" if name else "*.pt"
    return sorted(zoo_dir().glob(pattern), key=lambda p: p.stat().st_mtime)


def read_entry(path: Path) -> dict:
    """One entry as a dict (config and metrics parsed), read with ``weights_only=True``."""
    entry = torch.load(path, map_location="cpu", weights_only=True)
    entry["config"] = json.loads(entry["config"])
    entry["metrics"] = json.loads(entry.get("metrics", "{}"))
    return entry


def load(name: str, config: dict, with_metrics: bool = False):
    """The saved model ``name`` built from ``config``, in eval mode (and its metrics if asked).

    Raises :class:`MissingModelError` (nothing saved), :class:`ConfigMismatchError` (saved with a
    different config: the message lists the fields) or :class:`StaleModelError` (the model's
    source changed since).
    """
    path = _path(name, config)
    if not path.exists():
        others = entries(name)
        if not others:
            raise MissingModelError(f"no model {name!r} in {_shown(zoo_dir())}: run the notebook that trains it "
                                    "(its last cell saves it)")
        saved = read_entry(others[-1])["config"]
        raise ConfigMismatchError(f"model {name!r} was saved with another config ({_differences(config, saved)}); "
                                  "refusing to load it: rerun the notebook that trains it")
    entry = read_entry(path)
    try:
        model = build(config)
    except (ImportError, AttributeError, TypeError, ValueError) as err:  # an object the config names changed
        raise StaleModelError(f"model {name!r}: its config no longer builds ({type(err).__name__}: {err}); "
                              "rerun the notebook that trains it") from None
    if entry["source_hash"] != source_hash(type(model)):
        raise StaleModelError(f"model {name!r} was saved from an older version of {entry['class']} "
                              f"(source hash {entry['source_hash']} != {source_hash(type(model))}); "
                              "rerun the notebook that trains it")
    try:
        model.load_state_dict(entry["state_dict"], strict=True)
    except RuntimeError as err:  # e.g. a recipe the config refers to now sets other widths
        raise StaleModelError(f"model {name!r}: its config now builds a network whose state dict differs from "
                              f"the saved one ({str(err).splitlines()[0]}); rerun the notebook that trains it") from None
    model.eval()
    return (model, entry["metrics"]) if with_metrics else model


def latest(name: str, **fields) -> tuple[nn.Module, dict, dict]:
    """The newest entry ``name`` whose config has these top-level ``fields`` (e.g. ``profile="course"``).

    For a reader that does not know the exact config (notebook 09): returns ``(model, config,
    metrics)``, loaded through :func:`load` with the entry's own config, so a model whose code
    changed since is still refused (:class:`StaleModelError`). Raises :class:`MissingModelError`
    when no entry matches, naming what was there.
    """
    saved = [(path, read_entry(path)["config"]) for path in entries(name)]
    matching = [config for _, config in saved if all(config.get(k) == v for k, v in fields.items())]
    if not matching:
        seen = sorted({str({k: config.get(k, "<absent>") for k in fields}) for _, config in saved})
        raise MissingModelError(f"no model {name!r} with {fields} in {_shown(zoo_dir())}"
                                + (f" (saved: {', '.join(seen)})" if seen else "")
                                + ": run the notebook that trains it (its last training cell saves it)")
    model, metrics = load(name, matching[-1], with_metrics=True)
    return model, matching[-1], metrics
