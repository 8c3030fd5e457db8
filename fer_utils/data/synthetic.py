"""SynthFaces: a procedural, landmark-driven face renderer for learning FER without downloads.

What it is
----------
A cartoon-like but anatomically organised face generator. Every face starts from
the 68-point iBUG landmark layout in a canonical 112x112 frame (eyes near y=45,
mouth near y=80, chin near y=98), plus ~110 extra points (skull, hair, ears,
neck, brow thickness, eyelid covers and the anchors of wrinkle lines). All
geometry is linear in a few coefficients:

    points = template + identity_coeffs @ IDENTITY_BASIS
                      + aus_left @ AU_BASIS_LEFT + aus_right @ AU_BASIS_RIGHT

then a yaw-like squash and one affine "camera" (roll, scale, shift, output size)
map the points straight into output pixels, where OpenCV draws filled polygons
and anti-aliased lines (``cv2.LINE_AA`` with 4 fixed-point bits). Nothing is
warped afterwards, so the returned landmarks, 5 points, boxes and masks are
exact in output-image pixel coordinates (pixel centres at integer coordinates).

Identities: face width and length, jaw shape, eye spacing and size, brow height
and thickness, nose length and width, mouth width and position, lip thickness,
hairline, hair volume and style, skin tone, hair, iris and lip colour, and an
"age" that adds faint wrinkles at rest. Identity ``j`` is a pure function of
``(seed, j)``; splits in :mod:`fer_utils.data.datasets` keep identities apart.

Action units (intensity in [0, 1], FACS A..E ~ 0.2..1.0; present if >= 0.15)
-------------------------------------------------------------------------------
=====  ======================  ====================================================
AU     landmarks move          appearance cue drawn
=====  ======================  ====================================================
1      inner brows up          central forehead lines
2      outer brows up          lateral forehead lines
4      brows down and together vertical furrow lines between the brows
5      upper lids up           white above the iris
6      lower lids and cheeks up crow's feet, under-eye line, cheek highlight
7      lids tighten            narrower eye, under-eye line
9      nose wings up           horizontal wrinkles on the nose bridge, nasolabial fold
10     upper lip up            nasolabial fold, upper teeth when the lips part
12     mouth corners up/out    nasolabial fold, cheek highlight
14     corners in (dimple)     dimple arc beside the corner
15     corners down            marionette lines below the corners
17     chin and lower lip up   chin dimpling arcs
20     corners stretched out   short stretch lines at the corners
23     lips tightened, thinner dark lip border
24     lips pressed            bulge lines above and below the lips
25     lips part               dark mouth interior, teeth
26     jaw drops               long face, open mouth, teeth on top, dark interior
=====  ======================  ====================================================

Every AU has a left and a right half (image-left / image-right), so unilateral
expressions (contempt: 12+14 on one side) are drawn asymmetrically.

Emotions are EMFACS-style prototypes (:data:`PROTOTYPES`) scaled by an intensity
in (0, 1], with per-AU jitter, small left/right asymmetry and occasional
spurious AUs so that classes overlap as real ones do. Valence and arousal come
from each class's place on the circumplex (:data:`CIRCUMPLEX`) times the
intensity, plus noise, clipped to [-1, 1].

Difficulty
----------
``lab`` (CK+ / JAFFE-like): frontal, small pose jitter, plain background, clean.
``wild`` (RAF-DB / AffectNet-like), applied in this order: background clutter;
pose (roll, yaw-like squash that also shifts the nose and eyes sideways, scale,
shift) inside the same camera transform; occluders drawn over the face
(glasses or sunglasses, a hand, a surgical mask); then photometric nuisances on
the finished image: colour cast, brightness, a linear lighting gradient,
Gaussian blur and Gaussian noise. Both levels render with the same code path.

Scenarios
---------
Keyword options of :class:`SynthFaces` switch on the effects the course studies, each with a dose
(all off by default, and off means the very same bytes as without them; details in
:mod:`fer_utils.data.synth_scenario`): ``misalignment`` (random similarity transforms of the face,
the true transform stored), ``yaw`` (head yaw in depth from a 3-D template, see
:mod:`fer_utils.data.synth_pose`, instead of the 2-D squash), ``class_prior`` (FER2013's or RAF-DB's
class imbalance, or any weights), ``ambiguity`` / ``ambiguity_mix`` (blends of two prototypes with
soft labels), ``resting_face`` (per-identity AU offsets at rest), ``va_mode`` / ``va_spread``
(valence-arousal that varies within a class), ``va_rate`` and ``va_noise`` (missing and noisy VA labels).

Item fields
-----------
``image``, ``label`` (after label noise), ``true_label``, ``soft_label`` (float32, one-hot unless
blended), ``intensity``, ``aus`` and ``au_presence`` (17, AUS order), ``valence`` and ``arousal``
(None when the face carries no VA label), ``va_true`` (clean (valence, arousal)), ``landmarks`` (68),
``points5``, ``boxes`` and ``masks`` (per region), ``identity``, ``difficulty``, ``index``, ``occluder``,
``yaw`` (degrees of the 3-D yaw, 0 when off), ``transform`` (2x3 float32: aligned face -> this image,
identity when off) and ``transform_params`` (angle_deg, scale, dx, dy).

What it is not
--------------
Not photographs: no skin texture, no 3-D shading, no hair strands, no real identities. Head yaw in depth
(the ``yaw`` option) turns a coarse 3-D template with orthographic projection; hidden far-side parts
slide onto the silhouette rather than being clipped by a z-buffer. By default classes are balanced
and the expressions are prototypical. A model that scores well here has learned the AU
geometry we drew, which is what the course needs to check that pipelines learn;
accuracy on SynthFaces says nothing about accuracy on real faces.

Speed: one face is a few dozen OpenCV calls at the output size. On one core of
the course machine at 112x112: about 2,700 faces/s (lab) and 1,750 faces/s
(wild), while PIL decodes the same faces from JPEG at about 5,500-6,000 faces/s,
so generating costs 2-3x a JPEG decode (``benchmarks/bench_synthfaces.py``,
figures in ``benchmarks/results/synthfaces.json``). Masks cost 6-7%
(five ``cv2.fillPoly`` on uint8); ``with_masks=False`` skips them.

Determinism: all randomness comes from ``np.random.default_rng([seed, ...])``;
drawing uses integer fixed-point coordinates and the photometric steps are
element-wise float32 or bit-exact 8-bit OpenCV kernels, so the same seed gives
the same bytes on every machine with these library versions.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import cv2
import numpy as np
import torch.utils.data

from fer_utils.data.synth_draw import (SHIFT, _draw_clutter, _draw_face, _draw_occluder, _fixed, _photometric,
                                       face_points)
from fer_utils.data.synth_sample import (CIRCUMPLEX, DIFFICULTY, PROTOTYPES, Identity, Scene, make_identity,  # noqa: F401
                                         sample_blend, sample_expression, sample_scene, valence_arousal)
from fer_utils.data.synth_scenario import CLASS_COUNTS, Draws, item_key, label_arrays, make_scenario  # noqa: F401
from fer_utils.data.synth_scenario import expression as scenario_expression
from fer_utils.data.synth_scenario import pose, resting_aus, stored_va, transform_fields, true_va, va_point
from fer_utils.data.synth_template import AU_INDEX, CANVAS, TEMPLATE  # noqa: F401
from fer_utils.labels import AUS, CLASSES, REGIONS

DIFFICULTIES: tuple[str, ...] = ("lab", "medium", "wild")
MIN_SIZE = 16
PRESENCE_THRESHOLD = 0.15  #: an AU counts as present from this intensity on (FACS "A")


# ----------------------------------------------------------------------------------------------
# Regions, boxes, masks, and the one render function
# ----------------------------------------------------------------------------------------------


def _boxes_and_masks(derived: np.ndarray, size: int, with_masks: bool) -> tuple[dict, dict | None]:
    """Boxes [x0, y0, x1, y1] (clipped to the image) and bool masks of the same region polygons."""
    pts = derived[: TEMPLATE.region_end]
    lo = np.clip(np.minimum.reduceat(pts, TEMPLATE.region_starts), 0, size - 1)
    hi = np.clip(np.maximum.reduceat(pts, TEMPLATE.region_starts), 0, size - 1)
    boxes = {name: np.array([lo[r, 0], lo[r, 1], hi[r, 0], hi[r, 1]], np.float32) for r, name in enumerate(REGIONS)}
    if not with_masks:
        return boxes, None
    q = _fixed(pts)
    masks = {}
    for name, slices in TEMPLATE.region_slices.items():
        m = np.zeros((size, size), np.uint8)
        cv2.fillPoly(m, [q[sl] for sl in slices], 1, cv2.LINE_8, SHIFT)
        masks[name] = m.view(bool)
    return boxes, masks


def render(ident: Identity, aus_left: np.ndarray, aus_right: np.ndarray, scene: Scene, size: int = 112,
           grayscale: bool = False, with_masks: bool = True) -> dict[str, Any]:
    """Draw one face; return image, landmarks, 5 points, AUs, boxes and masks (no labels)."""
    k = size / CANVAS
    p = face_points(ident, aus_left, aus_right, scene, size)
    derived = TEMPLATE.derived @ p
    irises = derived[TEMPLATE.iris_rows]
    img = np.empty((size, size, 3), np.uint8)
    cv2.rectangle(img, (0, 0), (size - 1, size - 1), scene.background, -1)  # much faster than img[:] = colour
    if scene.clutter is not None:
        _draw_clutter(img, scene.clutter)
    _draw_face(img, p, irises, ident, scene, aus_left, aus_right, k)
    if scene.occluder != "none":
        _draw_occluder(img, p, irises, scene, k)
    if scene.blur > 0.3 or scene.noise > 0.5 or scene.brightness != 1.0 or scene.gradient != (0.0, 0.0):
        img = _photometric(img, scene, k)
    if grayscale:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    landmarks = p[:68].astype(np.float32)
    points5 = derived[TEMPLATE.points5_rows].astype(np.float32)
    boxes, masks = _boxes_and_masks(derived, size, with_masks)
    aus = np.maximum(aus_left, aus_right).astype(np.float32)
    return {
        "image": img, "aus": aus, "au_presence": aus >= PRESENCE_THRESHOLD, "landmarks": landmarks,
        "points5": points5, "boxes": boxes, "masks": masks, "occluder": scene.occluder,
    }


def _au_vector(aus: dict[int, float | tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    """``{au: intensity}`` or ``{au: (left, right)}`` -> (left, right) arrays in AUS order."""
    left, right = np.zeros(len(AUS)), np.zeros(len(AUS))
    for au, value in aus.items():
        if au not in AU_INDEX:
            raise ValueError(f"aus: unknown action unit {au!r}; valid AUs are {list(AUS)}")
        lv, rv = value if isinstance(value, (tuple, list)) else (value, value)
        if not (0 <= lv <= 1 and 0 <= rv <= 1):
            raise ValueError(f"aus: intensity of AU{au} must be in [0, 1], got {value!r}")
        left[AU_INDEX[au]], right[AU_INDEX[au]] = lv, rv
    return left, right


def _check(difficulty: str, size: int) -> None:
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"difficulty must be one of {DIFFICULTIES}, got {difficulty!r}")
    if not isinstance(size, (int, np.integer)) or size < MIN_SIZE:
        raise ValueError(f"size must be an int >= {MIN_SIZE}, got {size!r}")


def render_face(aus: dict[int, float | tuple[float, float]], identity: int = 0, seed: int = 0, size: int = 112,
                difficulty: str = "lab", grayscale: bool = False, with_masks: bool = True) -> dict[str, Any]:
    """Render a face from explicit AU intensities, e.g. ``render_face({6: 0.8, 12: 1.0})``.

    Values are intensities in [0, 1]; a pair ``(left, right)`` sets the image-left
    and image-right halves separately (``{12: (0.0, 0.9)}`` smiles on the right only).
    The scene (pose, background, nuisances of ``difficulty``) is drawn from ``seed``.
    """
    _check(difficulty, size)
    left, right = _au_vector(aus)
    scene = sample_scene(np.random.default_rng([seed, 4, identity]), difficulty)
    item = render(make_identity(seed, identity), left, right, scene, size, grayscale, with_masks)
    item.update(identity=identity, difficulty=difficulty, index=-1)
    return item


# ----------------------------------------------------------------------------------------------
# The dataset
# ----------------------------------------------------------------------------------------------


class SynthFaces(torch.utils.data.Dataset):
    """``n`` synthetic faces; ``ds[i]`` renders face i, a pure function of ``(seed, i)`` and the settings.

    Returns a dict (see the keys in the module docs and :meth:`__getitem__`); with
    ``transform`` set, ``ds[i]`` returns ``transform(item)`` (the whole dict goes in).
    ``labels``, ``true_labels``, ``soft_labels``, ``identities`` and ``va_labelled`` are cheap arrays
    computed without rendering; :meth:`annotations` gives one face's labels without drawing it.
    ``cache_dir`` stores each rendered item as an .npz file and reads it back next time.

    Scenario options (keyword only, all off by default, documented in
    :mod:`fer_utils.data.synth_scenario`): ``misalignment``, ``yaw``, ``class_prior``, ``ambiguity``,
    ``ambiguity_mix``, ``resting_face``, ``va_mode``, ``va_spread``, ``va_rate``, ``va_noise``.
    """

    def __init__(self, n: int, seed: int = 0, difficulty: str = "lab", size: int = 112, grayscale: bool = False,
                 num_classes: int = 7, label_noise: float = 0.0, n_identities: int | None = None,
                 transform: Callable[[dict], Any] | None = None, with_masks: bool = True,
                 cache_dir: str | Path | None = None, *, misalignment: float | tuple[float, float, float] = 0.0,
                 yaw: float = 0.0, class_prior: str | Sequence[float] | None = None, ambiguity: float = 0.0,
                 ambiguity_mix: tuple[float, float] = (0.2, 0.5), resting_face: float = 0.0, va_mode: str = "class",
                 va_spread: float = 0.3, va_rate: float = 1.0, va_noise: float = 0.0) -> None:
        _check(difficulty, size)
        if num_classes not in (7, 8):
            raise ValueError(f"num_classes must be 7 or 8, got {num_classes!r}")
        if not 0.0 <= label_noise <= 1.0:
            raise ValueError(f"label_noise must be in [0, 1], got {label_noise!r}")
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n!r}")
        n_identities = max(1, n // 20) if n_identities is None else n_identities
        if n_identities < 1:
            raise ValueError(f"n_identities must be >= 1, got {n_identities!r}")
        self.scenario = make_scenario(num_classes, misalignment=misalignment, yaw=yaw, class_prior=class_prior,
                                      ambiguity=ambiguity, ambiguity_mix=ambiguity_mix, resting_face=resting_face,
                                      va_mode=va_mode, va_spread=va_spread, va_rate=va_rate, va_noise=va_noise)
        self.n, self.seed, self.difficulty, self.size = int(n), int(seed), difficulty, int(size)
        self.grayscale, self.num_classes, self.label_noise = bool(grayscale), num_classes, float(label_noise)
        self.n_identities, self.transform, self.with_masks = int(n_identities), transform, bool(with_masks)
        self.identities = np.random.default_rng([seed, 2]).integers(0, n_identities, size=n)
        self._labels = label_arrays(self.seed, self.n, num_classes, self.scenario)
        self.true_labels, self.va_labelled = self._labels.true, self._labels.va_labelled
        rng = np.random.default_rng([seed, 6])
        flip = rng.random(n) < label_noise
        offset = rng.integers(1, num_classes, size=n)
        self.labels = np.where(flip, (self.true_labels + offset) % num_classes, self.true_labels)
        self._aligned = transform_fields((0.0, 1.0, 0.0, 0.0), self.size)
        self._one_hot = np.eye(num_classes, dtype=np.float32)
        self._per_item = self.scenario.per_item  # whether faces draw anything beyond the default
        self.cache_dir = None
        if cache_dir is not None:
            key = (f"synthfaces_s{seed}_{difficulty}_{size}{'g' if grayscale else 'c'}_k{num_classes}"
                   f"_ln{label_noise:g}_id{n_identities}_m{int(with_masks)}{self.scenario.key()}")
            self.cache_dir = Path(cache_dir) / key
            self.cache_dir.mkdir(parents=True, exist_ok=True)

    @property
    def soft_labels(self) -> np.ndarray:
        """(n, num_classes) float32 soft labels (one-hot unless ``ambiguity`` blends the face)."""
        return self._labels.soft(self.num_classes)

    def resting_aus(self, identity: int) -> np.ndarray:
        """(17,) the AU offsets of ``identity`` at rest (zeros without ``resting_face``)."""
        if self.scenario.resting_face == 0:
            return np.zeros(len(AUS))
        return resting_aus(self.seed, int(identity), self.scenario.resting_face).copy()

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Any:
        if not -self.n <= i < self.n:
            raise IndexError(f"index {i} out of range for SynthFaces of length {self.n}")
        i = int(i) % self.n
        item = self._load(i) if self.cache_dir is not None else None
        if item is None:
            item = self.render_item(i)
            if self.cache_dir is not None:
                _save_item(self.cache_dir / f"{i:07d}.npz", item)
        return self.transform(item) if self.transform is not None else item

    def _sample(self, i: int) -> tuple[np.ndarray, np.ndarray, Scene, dict[str, Any]]:
        """Face i without the pixels: AUs (left, right), its scene and its label fields."""
        lab = self._labels
        rng = np.random.default_rng([self.seed, 0, i])
        primary, identity, label = int(lab.primary[i]), int(self.identities[i]), int(self.true_labels[i])
        blended = lab.blended[i]
        if blended:
            left, right, intensity = sample_blend(rng, primary, int(lab.other[i]), float(lab.weight[i]),
                                                  self.difficulty)
        else:
            left, right, intensity = sample_expression(rng, primary, self.difficulty)
        noise = DIFFICULTY[self.difficulty].va_noise * rng.standard_normal(2)
        scene = sample_scene(rng, self.difficulty)
        soft = self._one_hot[primary].copy()
        if not self._per_item:  # every option off: the fields of earlier versions plus their "off" values
            valence, arousal = valence_arousal(label, intensity, noise)
            return left, right, scene, dict(
                label=int(self.labels[i]), true_label=label, intensity=intensity, valence=valence, arousal=arousal,
                identity=identity, difficulty=self.difficulty, index=i, soft_label=soft, va_true=(valence, arousal),
                yaw=0.0, transform=self._aligned["transform"].copy(),
                transform_params=self._aligned["transform_params"].copy())
        if blended:
            soft[primary] -= lab.weight[i]
            soft[int(lab.other[i])] += lab.weight[i]
        sc, d = self.scenario, Draws.of(item_key(self.seed, i))
        left, right = scenario_expression(sc, d, self.seed, identity, left, right)
        scene, params = pose(sc, d, scene, self.size)
        va = true_va(sc, d, self.seed, identity, va_point(soft, intensity), noise)
        valence, arousal = stored_va(sc, d, va, bool(lab.va_labelled[i]))
        return left, right, scene, dict(
            label=int(self.labels[i]), true_label=label, intensity=intensity, valence=valence, arousal=arousal,
            identity=identity, difficulty=self.difficulty, index=i, soft_label=soft,
            va_true=va, yaw=scene.yaw_deg, **transform_fields(params, self.size))

    def annotations(self, i: int) -> dict[str, Any]:
        """Face i's label fields (``aus``, ``au_presence``, labels, VA, ``soft_label``, ``transform``, ...)
        exactly as ``ds[i]`` has them, without drawing the image (fast: no pixels, landmarks or masks)."""
        if not -self.n <= i < self.n:
            raise IndexError(f"index {i} out of range for SynthFaces of length {self.n}")
        left, right, _, fields = self._sample(int(i) % self.n)
        aus = np.maximum(left, right).astype(np.float32)
        fields.update(aus=aus, au_presence=aus >= PRESENCE_THRESHOLD)
        return fields

    def render_item(self, i: int, **overrides: Any) -> dict[str, Any]:
        """Render sample i (no cache, no transform); keyword arguments override fields of its
        :class:`Scene`, e.g. ``render_item(i, occluder="mask")``: the same face with a mask
        (occluders need ``difficulty="wild"``, whose scenes carry the occluder parameters);
        ``render_item(i, yaw_deg=30.0, yaw=0.0)`` turns the face 30 degrees in depth (and drops the 2-D
        squash), ``render_item(i, yaw_deg=0.0)`` shows a face of the ``yaw`` option frontal."""
        left, right, scene, fields = self._sample(i)
        scene = replace(scene, **overrides)
        item = render(make_identity(self.seed, fields["identity"]), left, right, scene, self.size, self.grayscale,
                      self.with_masks)
        item.update(fields)
        return item

    def sequence(self, identity: int, label: int, length: int, seed: int = 0) -> list[dict[str, Any]]:
        """A CK+-style clip of ``length`` frames: neutral onset to apex, with small head motion.

        Frame dicts have the same keys as ``ds[i]`` (``index`` = frame number, ``intensity``
        ramps from 0 to the apex intensity along a smoothstep). The transform is not applied.
        Scenario options act per clip: one yaw and one misalignment for all frames, the onset is the
        identity's resting face, free valence-arousal ramps with the expression; ``va_rate`` and
        ``va_noise`` do not apply (frames carry the clean valence-arousal).
        """
        if not 0 <= identity < self.n_identities:
            raise ValueError(f"identity must be in [0, {self.n_identities}), got {identity!r}")
        if not 0 <= label < self.num_classes:
            raise ValueError(f"label must be in [0, {self.num_classes}), got {label!r}")
        if length < 1:
            raise ValueError(f"length must be >= 1, got {length!r}")
        rng = np.random.default_rng([self.seed, 3, identity, label, seed])
        left, right, apex = sample_expression(rng, label, self.difficulty)
        va_noise = DIFFICULTY[self.difficulty].va_noise * rng.standard_normal(2)
        scene = sample_scene(rng, self.difficulty)
        phase = 2 * np.pi * rng.random(3)
        ident = make_identity(self.seed, identity)
        sc = self.scenario
        d = Draws.of([self.seed, 3, identity, label, seed, 7]) if self._per_item else None
        soft = self._one_hot[label]
        frames = []
        for f in range(length):
            t = f / (length - 1) if length > 1 else 1.0
            w = t * t * (3 - 2 * t)
            moved = replace(scene, roll=scene.roll + math.radians(1.5) * math.sin(2 * t + phase[0]),
                            shift=(scene.shift[0] + 1.2 * math.sin(1.5 * t + phase[1]),
                                   scene.shift[1] + 0.8 * math.sin(1.7 * t + phase[2])))
            fl, fr, fields = w * left, w * right, self._aligned
            if d is None:
                valence, arousal = valence_arousal(label, w * apex, va_noise)
            else:
                fl, fr = scenario_expression(sc, d, self.seed, identity, fl, fr, w)
                moved, params = pose(sc, d, moved, self.size)
                fields = transform_fields(params, self.size)
                v, a = CIRCUMPLEX[CLASSES[label]]
                valence, arousal = true_va(sc, d, self.seed, identity, (v * (w * apex), a * (w * apex)), va_noise, w)
            item = render(ident, fl, fr, moved, self.size, self.grayscale, self.with_masks)
            item.update(label=label, true_label=label, intensity=w * apex, valence=valence, arousal=arousal,
                        identity=identity, difficulty=self.difficulty, index=f, soft_label=soft.copy(),
                        va_true=(valence, arousal), yaw=moved.yaw_deg, **{k: v.copy() for k, v in fields.items()})
            frames.append(item)
        return frames

    def _load(self, i: int) -> dict[str, Any] | None:
        path = self.cache_dir / f"{i:07d}.npz"
        if not path.exists():
            return None
        item = _load_item(path)
        if "soft_label" not in item:  # written before the scenario options (all off then)
            item.update(soft_label=np.eye(self.num_classes, dtype=np.float32)[item["true_label"]], yaw=0.0,
                        **{k: v.copy() for k, v in self._aligned.items()})
        return item

    def __repr__(self) -> str:
        extra = self.scenario.describe()
        return (f"SynthFaces(n={self.n}, seed={self.seed}, difficulty={self.difficulty!r}, size={self.size}, "
                f"grayscale={self.grayscale}, num_classes={self.num_classes}, label_noise={self.label_noise}, "
                f"n_identities={self.n_identities}{', ' + extra if extra else ''})")


_SCALARS = {"label": int, "true_label": int, "intensity": float, "valence": float, "arousal": float,
            "identity": int, "index": int, "difficulty": str, "occluder": str, "yaw": float}
_ARRAYS = ("image", "aus", "au_presence", "landmarks", "points5", "soft_label", "transform", "transform_params")


def _save_item(path: Path, item: dict[str, Any]) -> None:
    """One item as an uncompressed .npz (boxes and masks flattened to ``box_<region>``/``mask_<region>``;
    a missing valence or arousal, None, as NaN)."""
    arrays = {key: np.asarray(item[key]) for key in _ARRAYS}
    arrays.update({key: np.asarray(np.nan if item[key] is None else item[key]) for key in _SCALARS})
    arrays["va_true"] = np.asarray(item["va_true"], np.float64)
    arrays.update({f"box_{r}": b for r, b in item["boxes"].items()})
    if item["masks"] is not None:
        arrays.update({f"mask_{r}": m for r, m in item["masks"].items()})
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)


def _load_item(path: Path) -> dict[str, Any]:
    """Inverse of :func:`_save_item` (files written before the scenario fields get their "off" values)."""
    with np.load(path) as z:
        item = {key: z[key] for key in _ARRAYS if key in z}
        item.update({key: cast(z[key].item()) for key, cast in _SCALARS.items() if key in z})
        item["boxes"] = {r: z[f"box_{r}"] for r in REGIONS}
        item["masks"] = {r: z[f"mask_{r}"] for r in REGIONS} if f"mask_{REGIONS[0]}" in z else None
        va_true = z["va_true"] if "va_true" in z else None
    for key in ("valence", "arousal"):
        item[key] = None if math.isnan(item[key]) else item[key]
    item["va_true"] = (item["valence"], item["arousal"]) if va_true is None else tuple(float(v) for v in va_true)
    return item
