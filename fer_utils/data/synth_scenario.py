"""SynthFaces scenarios: the effects the course studies, each a generator option with a dose.

:class:`~fer_utils.data.synthetic.SynthFaces` takes these keyword arguments (all off by default; off
means every sample is bit-for-bit the sample of a SynthFaces without the option):

``misalignment`` (float dose in [0, 1], or a tuple ``(max_angle_deg, max_scale, max_shift)``; default 0)
    A random similarity transform of the rendered face (see :mod:`fer_utils.data.synth_pose`):
    angle ~ U(-A, A) degrees, scale = S ** U(-1, 1), shift ~ U(-F, F) * size pixels on each axis. A dose
    ``m`` means ``(A, S, F) = (30 m, 1.25 ** m, 0.12 m)``. The item carries ``transform`` (2x3, aligned
    -> item, output pixels) and ``transform_params`` ``(angle_deg, scale, dx, dy)``.
``yaw`` (float, max degrees in [0, 75]; default 0)
    Head yaw in depth, ~ U(-yaw, yaw) per face, from the 3-D template (foreshortening, the nose
    moving towards the far side, far-side parts hidden). Replaces the difficulty's 2-D yaw-like squash
    for those faces. The item's ``yaw`` is the angle drawn (degrees; + = face turned to image-right).
``class_prior`` (None, "fer2013", "rafdb", or ``num_classes`` non-negative weights; default None)
    Class frequencies of the (true) labels; None keeps the uniform draw of earlier versions.
    "fer2013": FER2013's training set (28,709 images; Goodfellow et al. 2013, the Kaggle ``train``
    split), "rafdb": RAF-DB's basic training set (12,271 images; Li, Deng and Du, CVPR 2017); both
    have no contempt, so they need ``num_classes=7``. Counts in :data:`CLASS_COUNTS`.
``ambiguity`` (float share in [0, 1]; default 0) and ``ambiguity_mix`` ((lo, hi) in [0, 1]; default (0.2, 0.5))
    That share of faces are blends of their class A (drawn from the prior) with another class B
    (uniform among the others): the AU prototype is ``(1 - w) P_A + w P_B``, w ~ U(lo, hi), and the soft
    label puts ``1 - w`` on A and ``w`` on B. The hard label (``true_label``) is the argmax of the soft
    label; a tie (w = 0.5) goes to A. Label flips (``label_noise``) act on top of it.
``resting_face`` (float strength in [0, 1]; default 0)
    Each identity gets AU offsets at rest (each AU of :data:`RESTING_AUS` with chance 0.15, at least
    one; each ``strength * U(0.2, 0.5)``), drawn from the identity and added to every face of that
    identity and to every frame of its sequences (whose onset is the resting face); totals are
    clipped to [0, 1]. The AU offsets move the landmarks like any AU.
``va_mode`` ("class" or "free"; default "class") and ``va_spread`` (float >= 0; default 0.3)
    "class": valence-arousal = the class's circumplex point x intensity + the difficulty's small noise
    (as before). "free": plus an identity offset ~ N(0, (va_spread / 2)^2) per axis (drawn from the
    identity) and a within-class part ~ N(0, va_spread^2) per face; the within-class part is drawn on
    the face (valence: AU12 and AU6 up, or AU15 and AU4; arousal: AU5, AU25, AU1 and AU2 up, or the
    expression damped), so it can be seen, while the identity offset is a trait of the person.
``va_rate`` (float share in [0, 1]; default 1) and ``va_noise`` (float s.d. >= 0; default 0)
    Only that share of faces carry valence-arousal; the others have ``valence = arousal = None`` (as
    the AffectNet reader gives for its -2 and the writers expect for missing values). The stored
    valence-arousal gets Gaussian noise of s.d. ``va_noise`` (clipped to [-1, 1]); the clean value
    is always in ``va_true`` (valence, arousal). Sequences carry the clean value, always.

Every draw comes from its own stream (``np.random.default_rng([seed, stream, ...])``), so turning one
option on changes nothing the others draw, and face i stays a pure function of (seed, i, options).
"""
from __future__ import annotations

import functools
import hashlib
import math
from dataclasses import dataclass, replace

import numpy as np

from fer_utils.data.synth_pose import MAX_YAW, misalign_scene
from fer_utils.data.synth_sample import CIRCUMPLEX, Scene
from fer_utils.data.synth_template import AU_INDEX
from fer_utils.labels import AUS, CLASSES, VA_MAX, VA_MIN

#: Training-set images per class, canonical class order (neutral, anger, disgust, fear, happiness,
#: sadness, surprise). FER2013: the 28,709 ``Training`` rows of fer2013.csv; RAF-DB: the 12,271
#: training images of the basic set.
CLASS_COUNTS: dict[str, tuple[int, ...]] = {
    "fer2013": (4965, 3995, 436, 4097, 7215, 4830, 3171),
    "rafdb": (2524, 705, 717, 281, 4772, 1982, 1290),
}
MISALIGNMENT_AT_ONE: tuple[float, float, float] = (30.0, 1.25, 0.12)  #: (degrees, scale factor, shift / size)
RESTING_AUS: tuple[int, ...] = (1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24)
VA_MODES: tuple[str, ...] = ("class", "free")
_CIRC = np.array([CIRCUMPLEX[c] for c in CLASSES])
_STREAM_ITEM, _STREAM_BLEND, _STREAM_REST, _STREAM_VA_ID, _STREAM_VA_RATE = 7, 9, 10, 12, 13


@dataclass(frozen=True)
class Scenario:
    """The options, validated and normalised (see the module docs)."""

    misalignment: tuple[float, float, float] = (0.0, 1.0, 0.0)
    yaw: float = 0.0
    class_prior: tuple[float, ...] | None = None
    prior_name: str = "uniform"
    ambiguity: float = 0.0
    ambiguity_mix: tuple[float, float] = (0.2, 0.5)
    resting_face: float = 0.0
    va_mode: str = "class"
    va_spread: float = 0.3
    va_rate: float = 1.0
    va_noise: float = 0.0

    @property
    def misaligned(self) -> bool:
        return self.misalignment != (0.0, 1.0, 0.0)

    @property
    def per_item(self) -> bool:
        """Whether faces need anything beyond today's draws."""
        return (self.misaligned or self.yaw > 0 or self.ambiguity > 0 or self.resting_face > 0
                or self.va_mode != "class" or self.va_rate < 1 or self.va_noise > 0)

    def key(self) -> str:
        """A cache-key suffix that names every option ("" when all are off)."""
        if self == Scenario():
            return ""
        a, s, f = (f"{v:.12g}" for v in self.misalignment)
        lo, hi = self.ambiguity_mix
        return (f"_mis{a}-{s}-{f}_yaw{self.yaw:.12g}_cp{self.prior_name}_amb{self.ambiguity:.12g}-{lo:.12g}-{hi:.12g}"
                f"_rest{self.resting_face:.12g}_va{self.va_mode}{self.va_spread:.12g}_vr{self.va_rate:.12g}"
                f"_vn{self.va_noise:.12g}")

    def describe(self) -> str:
        """The options that are not off, as ``name=value`` (for ``repr``)."""
        off = Scenario()
        names = ("misalignment", "yaw", "prior_name", "ambiguity", "ambiguity_mix", "resting_face", "va_mode",
                 "va_spread", "va_rate", "va_noise")
        return ", ".join(f"{'class_prior' if n == 'prior_name' else n}={getattr(self, n)!r}" for n in names
                         if getattr(self, n) != getattr(off, n) and (n != "va_spread" or self.va_mode == "free"))


def _unit(name: str, value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    return float(value)


def _misalignment(value) -> tuple[float, float, float]:
    if isinstance(value, (tuple, list)):
        if len(value) != 3:
            raise ValueError(f"misalignment: a tuple is (max_angle_deg, max_scale, max_shift), got {value!r}")
        a, s, f = (float(v) for v in value)
        if a < 0 or s < 1 or f < 0:
            raise ValueError(f"misalignment: need max_angle_deg >= 0, max_scale >= 1, max_shift >= 0, got {value!r}")
        return a, s, f
    m = _unit("misalignment", value)
    a, s, f = MISALIGNMENT_AT_ONE
    return a * m, s ** m, f * m


def _prior(value, num_classes: int) -> tuple[tuple[float, ...] | None, str]:
    if value is None:
        return None, "uniform"
    if isinstance(value, str):
        if value not in CLASS_COUNTS:
            raise ValueError(f"class_prior must be None, one of {sorted(CLASS_COUNTS)} or weights, got {value!r}")
        if num_classes != 7:
            raise ValueError(f"class_prior {value!r} has no contempt: use num_classes=7 or give 8 weights")
        counts = np.array(CLASS_COUNTS[value], float)
        return tuple(counts / counts.sum()), value
    p = np.asarray(value, float)
    if p.shape != (num_classes,) or not np.all(np.isfinite(p)) or (p < 0).any() or p.sum() <= 0:
        raise ValueError(f"class_prior: need {num_classes} non-negative weights, got {value!r}")
    p = p / p.sum()
    weights = tuple(float(v) for v in p)
    return weights, "w" + hashlib.sha1(repr(weights).encode()).hexdigest()[:12]  # short enough for a folder name


def make_scenario(num_classes: int, misalignment=0.0, yaw: float = 0.0, class_prior=None, ambiguity: float = 0.0,
                  ambiguity_mix: tuple[float, float] = (0.2, 0.5), resting_face: float = 0.0,
                  va_mode: str = "class", va_spread: float = 0.3, va_rate: float = 1.0,
                  va_noise: float = 0.0) -> Scenario:
    """Check every option (a ValueError names the bad one) and return them normalised."""
    if not 0.0 <= yaw <= MAX_YAW:
        raise ValueError(f"yaw must be in [0, {MAX_YAW:g}] degrees, got {yaw!r}")
    lo, hi = (float(v) for v in ambiguity_mix)
    if not 0.0 <= lo <= hi <= 1.0:
        raise ValueError(f"ambiguity_mix must be (lo, hi) with 0 <= lo <= hi <= 1, got {ambiguity_mix!r}")
    if va_mode not in VA_MODES:
        raise ValueError(f"va_mode must be one of {VA_MODES}, got {va_mode!r}")
    if va_spread < 0 or va_noise < 0:
        raise ValueError(f"va_spread and va_noise must be >= 0, got {va_spread!r}, {va_noise!r}")
    prior, name = _prior(class_prior, num_classes)
    return Scenario(misalignment=_misalignment(misalignment), yaw=float(yaw), class_prior=prior, prior_name=name,
                    ambiguity=_unit("ambiguity", ambiguity), ambiguity_mix=(lo, hi),
                    resting_face=_unit("resting_face", resting_face), va_mode=va_mode, va_spread=float(va_spread),
                    va_rate=_unit("va_rate", va_rate), va_noise=float(va_noise))


# ----------------------------------------------------------------------------------------------
# Cheap per-dataset arrays: labels, blends, who carries valence-arousal
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Labels:
    """``primary`` (the class drawn from the prior), ``other`` and ``weight`` (the blend partner and its
    share; weight 0 where not blended), ``blended`` (bool), ``true`` (argmax of the soft label) and
    ``va_labelled`` (bool), all (n,)."""

    primary: np.ndarray
    other: np.ndarray
    weight: np.ndarray
    blended: np.ndarray
    true: np.ndarray
    va_labelled: np.ndarray

    def soft(self, num_classes: int) -> np.ndarray:
        """(n, num_classes) float32 soft labels, rows summing to 1."""
        n = len(self.primary)
        out = np.zeros((n, num_classes), np.float64)
        out[np.arange(n), self.primary] += 1.0 - self.weight
        out[np.arange(n), self.other] += self.weight
        return out.astype(np.float32)


def label_arrays(seed: int, n: int, num_classes: int, sc: Scenario) -> Labels:
    """The dataset's labels without rendering anything."""
    rng = np.random.default_rng([seed, 5])
    if sc.class_prior is None:
        primary = rng.integers(0, num_classes, size=n)  # the uniform draw of earlier versions, unchanged
    else:
        primary = rng.choice(num_classes, size=n, p=np.asarray(sc.class_prior))
    other, weight, blended = primary.copy(), np.zeros(n), np.zeros(n, bool)
    if sc.ambiguity > 0:
        r = np.random.default_rng([seed, _STREAM_BLEND])
        u, offset, mix = r.random(n), r.integers(1, num_classes, size=n), r.random(n)
        lo, hi = sc.ambiguity_mix
        blended = u < sc.ambiguity
        other = np.where(blended, (primary + offset) % num_classes, primary)
        weight = np.where(blended, lo + (hi - lo) * mix, 0.0)
    true = np.where(weight > 0.5, other, primary)
    va_labelled = (np.random.default_rng([seed, _STREAM_VA_RATE]).random(n) < sc.va_rate if sc.va_rate < 1
                   else np.ones(n, bool))
    return Labels(primary, other, weight, blended, true, va_labelled)


# ----------------------------------------------------------------------------------------------
# Per identity: resting face and valence-arousal trait
# ----------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def resting_aus(seed: int, identity: int, strength: float) -> np.ndarray:
    """(17,) AU offsets of identity ``identity`` at rest (read-only; some AUs of :data:`RESTING_AUS`)."""
    rng = np.random.default_rng([seed, _STREAM_REST, identity])
    u, v = rng.random(len(RESTING_AUS)), rng.random(len(RESTING_AUS))
    on = u < 0.15
    on[np.argmin(u)] = True
    out = np.zeros(len(AUS))
    idx = np.array([AU_INDEX[a] for a in RESTING_AUS])
    out[idx[on]] = strength * (0.2 + 0.3 * v[on])
    out.flags.writeable = False
    return out


def identity_va(seed: int, identity: int, spread: float) -> np.ndarray:
    """(2,) the valence-arousal offset of an identity ("free" mode)."""
    return 0.5 * spread * np.random.default_rng([seed, _STREAM_VA_ID, identity]).standard_normal(2)


_CUE_ROWS = {name: np.zeros(len(AUS)) for name in ("v+", "v-", "a+")}
for _au, _w in ((12, 0.5), (6, 0.35)):
    _CUE_ROWS["v+"][AU_INDEX[_au]] = _w
for _au, _w in ((15, 0.45), (4, 0.35)):
    _CUE_ROWS["v-"][AU_INDEX[_au]] = _w
for _au, _w in ((5, 0.45), (25, 0.35), (1, 0.2), (2, 0.2)):
    _CUE_ROWS["a+"][AU_INDEX[_au]] = _w


def va_cues(left: np.ndarray, right: np.ndarray, dv: float, da: float) -> tuple[np.ndarray, np.ndarray]:
    """The face's own valence-arousal deviation drawn as AUs (see the module docs), both halves."""
    add = max(dv, 0) * _CUE_ROWS["v+"] + max(-dv, 0) * _CUE_ROWS["v-"] + max(da, 0) * _CUE_ROWS["a+"]
    damp = 1.0 - 0.5 * min(max(-da, 0.0), 1.0)
    return left * damp + add, right * damp + add


def va_point(soft: np.ndarray, intensity: float) -> tuple[float, float]:
    """The circumplex point of a soft label times the intensity (neutral's share carries no valence)."""
    expressive = float(soft[1:].sum())
    if expressive == 0:
        return 0.0, 0.0
    v, a = (soft @ _CIRC[: len(soft)]) / expressive
    return float(v) * intensity, float(a) * intensity


# ----------------------------------------------------------------------------------------------
# Per face (or per clip): the draws and what they change
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Draws:
    """One face's (or clip's) scenario randomness: 5 uniforms and 4 normals, always all drawn."""

    u: np.ndarray
    z: np.ndarray

    @classmethod
    def of(cls, key: list[int]) -> Draws:
        rng = np.random.default_rng(key)
        return cls(rng.random(5), rng.standard_normal(4))


def item_key(seed: int, i: int) -> list[int]:
    return [seed, _STREAM_ITEM, i]


def pose(sc: Scenario, d: Draws, scene: Scene, size: int) -> tuple[Scene, tuple[float, float, float, float]]:
    """The scene turned by the drawn yaw (no 2-D squash then) and misaligned; the misalignment parameters."""
    if sc.yaw > 0:
        scene = replace(scene, yaw=0.0, yaw_deg=sc.yaw * (2 * float(d.u[4]) - 1))
    params = (0.0, 1.0, 0.0, 0.0)
    if sc.misaligned:
        a, s, f = sc.misalignment
        params = (a * (2 * float(d.u[0]) - 1), s ** (2 * float(d.u[1]) - 1), f * size * (2 * float(d.u[2]) - 1),
                  f * size * (2 * float(d.u[3]) - 1))
        scene = misalign_scene(scene, params, size)
    return scene, params


def expression(sc: Scenario, d: Draws, seed: int, identity: int, left: np.ndarray, right: np.ndarray,
               w: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """AUs with the free-VA cues (scaled by ``w``, the sequence ramp) and the resting face, clipped."""
    if sc.va_mode != "free" and sc.resting_face == 0:
        return left, right
    if sc.va_mode == "free":
        dv, da = w * sc.va_spread * d.z[:2]
        left, right = va_cues(left, right, float(dv), float(da))
    if sc.resting_face > 0:
        rest = resting_aus(seed, identity, sc.resting_face)
        left, right = left + rest, right + rest
    return np.clip(left, 0, 1), np.clip(right, 0, 1)


def _clip(x: float) -> float:
    return min(max(x, VA_MIN), VA_MAX)


def true_va(sc: Scenario, d: Draws, seed: int, identity: int, point: tuple[float, float], noise: np.ndarray,
            w: float = 1.0) -> tuple[float, float]:
    """Clean (valence, arousal): circumplex point + the difficulty's noise (+ the free parts), clipped.
    In "class" mode the arithmetic is that of :func:`~fer_utils.data.synth_sample.valence_arousal`."""
    v, a = point[0] + float(noise[0]), point[1] + float(noise[1])
    if sc.va_mode == "free":
        iv, ia = identity_va(seed, identity, sc.va_spread)
        v += w * sc.va_spread * float(d.z[0]) + float(iv)
        a += w * sc.va_spread * float(d.z[1]) + float(ia)
    return _clip(v), _clip(a)


def stored_va(sc: Scenario, d: Draws, va: tuple[float, float], labelled: bool) -> tuple[float | None, float | None]:
    """What the item stores as valence, arousal: None if unlabelled, else the clean value + label noise."""
    if not labelled:
        return None, None
    if sc.va_noise > 0:
        return _clip(va[0] + sc.va_noise * float(d.z[2])), _clip(va[1] + sc.va_noise * float(d.z[3]))
    return va


def transform_fields(params: tuple[float, float, float, float], size: int) -> dict:
    """``transform`` (2x3 float32) and ``transform_params`` (float32 [angle_deg, scale, dx, dy])."""
    angle, scale, dx, dy = params
    c, s = scale * math.cos(math.radians(angle)), scale * math.sin(math.radians(angle))
    h = size / 2
    matrix = [[c, -s, h - c * h + s * h + dx], [s, c, h - s * h - c * h + dy]]  # = misalignment_matrix
    return {"transform": np.array(matrix, np.float32), "transform_params": np.array(params, np.float32)}
