"""Loading pretrained weights: the files the course reads into its own networks.

Models hold networks only; this module connects them to files on disk:

- fer's FER2013 mini-Xception (``emotion_model.hdf5``, from the asset cache) -> :func:`load_fer_pretrained`;
- MTCNN's P-, R- and O-Net (facenet-pytorch's ``pnet.pt`` ...) -> :func:`load_mtcnn_nets`;
- the DDAMFN authors' checkpoints -> :func:`load_ddamfn_checkpoint` (``weights_only=True``) and their
  pickled MS-Celeb backbone -> :func:`load_msceleb_backbone`.
"""
from __future__ import annotations

import os
import sys
import types
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fer_utils.models.ddamfn import DDAMFN, MFN_CHILDREN
from fer_utils.models.mini_xception import MiniXception, load_keras_weights
from fer_utils.models.mtcnn import ONet, PNet, RNet
from fer_utils.assets import fetch


def load_fer_pretrained(path: str | None = None) -> MiniXception:
    """fer's FER2013 mini-Xception in eval mode (``path`` defaults to the cached asset).

    Attributes: ``class_names`` (FER2013 order) and ``canonical_ids`` (the
    ``fer_utils.labels`` id of each output).
    """
    if path is None:
        path = str(fetch("emotion_model.hdf5"))
    return load_keras_weights(MiniXception(), path).eval()


def load_mtcnn_nets() -> tuple[PNet, RNet, ONet]:
    """The three MTCNN networks with facenet-pytorch's weights from the asset cache, in eval mode."""
    nets = (PNet(), RNet(), ONet())
    for net, name in zip(nets, ("pnet.pt", "rnet.pt", "onet.pt")):
        net.load_state_dict(torch.load(fetch(name), map_location="cpu", weights_only=True))
        net.eval()
    return nets


# ----------------------------------------------------------------------------------------------
# DDAMFN: the authors' checkpoints and their MS-Celeb backbone
# ----------------------------------------------------------------------------------------------

def _strip_module(state: dict) -> dict:
    if state and all(k.startswith("module.") for k in state):
        return {k[len("module."):]: v for k, v in state.items()}
    return state


def load_ddamfn_checkpoint(model: nn.Module, checkpoint: str | os.PathLike | dict, strict: bool = True):
    """Load an authors' DDAMFN / DDAMFN++ checkpoint into ``model`` (``DDAMFN(num_classes, 2)``).

    ``checkpoint`` is a path or an already loaded object: their training scripts save
    ``{'iter', 'model_state_dict', 'optimizer_state_dict'}``; a bare state dict works too, and a
    ``module.`` prefix (DataParallel) is removed. Files are read with ``weights_only=True`` (tensors
    and plain containers only, no code is run). Returns ``load_state_dict``'s result.
    """
    if not isinstance(checkpoint, dict):
        path = Path(checkpoint)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint {str(path)!r} not found")
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - re-raised with the reason
            raise RuntimeError(
                f"{path.name}: could not be read with weights_only=True ({type(err).__name__}). A DDAMFN "
                "checkpoint holds tensors only; a file that needs code to unpickle is not one (for the "
                "MS-Celeb backbone, a pickled module, use load_msceleb_backbone).") from err
    state = checkpoint.get("model_state_dict", checkpoint) if isinstance(checkpoint, dict) else checkpoint
    if not isinstance(state, dict):
        raise TypeError(f"expected a state dict or {{'model_state_dict': ...}}, got {type(state).__name__}")
    return model.load_state_dict(_strip_module(dict(state)), strict=strict)


class _ShimModule(types.ModuleType):
    """Stands in for the authors' ``networks.MixedFeatureNet`` while unpickling: any class name it is
    asked for becomes a bare ``nn.Module`` subclass, enough to rebuild the module tree and read its
    tensors (the objects cannot run forward)."""

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        cls = type(name, (nn.Module,), {"__module__": self.__name__})
        setattr(self, name, cls)
        return cls


def _backbone_state(obj: Any) -> dict[str, torch.Tensor]:
    """The MFN's children 0..8 (conv1 .. conv_6_sep) renamed features.0 .. features.8."""
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    if not isinstance(obj, dict):
        raise TypeError(f"expected an MFN module or state dict, got {type(obj).__name__}")
    obj = _strip_module(dict(obj))
    index = {name: i for i, name in enumerate(MFN_CHILDREN[:9])}
    out = {}
    for key, value in obj.items():
        head, _, rest = key.partition(".")
        if head in index:
            out[f"features.{index[head]}.{rest}"] = value
    if not out:
        raise KeyError(f"no MFN backbone keys found (expected children {', '.join(MFN_CHILDREN[:9])})")
    return out


def load_msceleb_backbone(model: DDAMFN, path: str | os.PathLike, trusted: bool = False,
                          shim: bool = True) -> list[str]:
    """Load the authors' MS-Celeb-pretrained backbone ``pretrained/MFN_msceleb.pth`` into ``model.features``.

    That file is a whole pickled ``nn.Module`` (class ``networks.MixedFeatureNet.MixedFeatureNet``), not
    a state dict, so ``weights_only=True`` cannot read it. We try ``weights_only=True`` first (a
    converted state dict loads that way); otherwise only with ``trusted=True`` is it read with
    ``weights_only=False`` - unpickling can run arbitrary code, so do this only for a file you trust.
    Without the authors' ``networks`` package on the path, ``shim=True`` registers a stand-in module
    so the tree can be rebuilt. The MFN's children conv1 .. conv_6_sep become features.0 .. 8 (the
    embedding part conv_6_dw, linear, bn is dropped, as DDAMNet does). Returns the loaded keys.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"backbone file {str(path)!r} not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - a pickled module
        if not trusted:
            raise RuntimeError(
                f"{path.name} is a pickled nn.Module, which torch.load(weights_only=True) refuses "
                f"({type(err).__name__}). Unpickling runs code from the file: only if you trust it (e.g. the "
                "authors' pretrained/MFN_msceleb.pth from github.com/SainingZhang/DDAMFN), call "
                "load_msceleb_backbone(model, path, trusted=True).") from err
        added = []
        if shim:
            for name in ("networks", "networks.MixedFeatureNet"):
                if name not in sys.modules:
                    sys.modules[name] = _ShimModule(name)
                    added.append(name)
            if "networks.MixedFeatureNet" in added:
                sys.modules["networks"].MixedFeatureNet = sys.modules["networks.MixedFeatureNet"]
        try:
            obj = torch.load(path, map_location="cpu", weights_only=False)
        finally:
            for name in added:
                del sys.modules[name]
    state = _backbone_state(obj)
    missing = [k for k in model.features.state_dict() if f"features.{k}" not in state]
    if missing:
        raise KeyError(f"{path.name}: backbone lacks {len(missing)} keys, e.g. features.{missing[0]}")
    model.load_state_dict(state, strict=False)
    return sorted(state)


VGG16_FILE = "vgg16-397923af.pth"  # torchvision's ImageNet VGG16 (IMAGENET1K_V1) checkpoint


def load_vgg16_imagenet(path: str | os.PathLike | None = None) -> dict[str, torch.Tensor]:
    """ImageNet VGG16 weights (torchvision's ``IMAGENET1K_V1``) from a file you already have: never a download.

    Looked for at ``path``, else ``$FER_VGG16_WEIGHTS``, else torch's hub cache
    (``<torch.hub.get_dir()>/checkpoints/vgg16-397923af.pth``, where torchvision stores it after a
    ``vgg16(weights="IMAGENET1K_V1")`` on a machine with internet). MGLN's ``full`` profile starts its
    shared shallow module from these weights (``models.mgln.load_vgg16_features``), as the authors do.
    """
    candidates = [Path(p) for p in (path, os.environ.get("FER_VGG16_WEIGHTS")) if p]
    candidates.append(Path(torch.hub.get_dir()) / "checkpoints" / VGG16_FILE)
    for candidate in candidates:
        if candidate.is_file():
            return torch.load(candidate, map_location="cpu", weights_only=True)
    raise FileNotFoundError(
        f"ImageNet VGG16 weights not found (looked at {', '.join(str(c) for c in candidates)}). The course "
        f"downloads nothing: on a machine with internet run `python -c \"import torchvision; "
        f"torchvision.models.vgg16(weights='IMAGENET1K_V1')\"`, copy {VGG16_FILE} here and point "
        f"FER_VGG16_WEIGHTS at it.")
