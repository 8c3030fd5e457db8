"""SynthFaces' randomness: expression prototypes and the circumplex, identities, scenes (pose,
lighting, occluders) and how much each difficulty jitters them.

Every draw comes from a ``numpy.random.Generator`` the caller seeds (:mod:`fer_utils.data.synthetic`).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace

import numpy as np

from fer_utils.data.synth_template import AU_INDEX, TEMPLATE
from fer_utils.labels import AUS, CLASSES, VA_MAX, VA_MIN

# ----------------------------------------------------------------------------------------------
# Expressions: prototypes, circumplex, and how much each difficulty jitters them
# ----------------------------------------------------------------------------------------------

#: EMFACS-style prototypes: AU -> weight at full intensity, keyed by canonical class name.
PROTOTYPES: dict[str, dict[int, float]] = {
    "neutral": {},
    "anger": {4: 1.0, 5: 0.6, 7: 0.8, 23: 0.9},
    "disgust": {9: 1.0, 10: 0.8, 15: 0.6},
    "fear": {1: 0.8, 2: 0.6, 4: 0.6, 5: 1.0, 7: 0.4, 20: 1.0, 26: 0.6},
    "happiness": {6: 0.8, 12: 1.0},
    "sadness": {1: 1.0, 4: 0.7, 15: 1.0},
    "surprise": {1: 1.0, 2: 1.0, 5: 0.8, 26: 1.0},
    "contempt": {12: 0.8, 14: 0.9},
}
#: Classes whose prototype acts on one side of the face only (side drawn at random).
UNILATERAL: frozenset[str] = frozenset({"contempt"})

#: (valence, arousal) of each class at full intensity (after Russell's circumplex).
CIRCUMPLEX: dict[str, tuple[float, float]] = {
    "neutral": (0.0, 0.0),
    "anger": (-0.51, 0.59),
    "disgust": (-0.60, 0.35),
    "fear": (-0.64, 0.60),
    "happiness": (0.81, 0.51),
    "sadness": (-0.63, -0.27),
    "surprise": (0.40, 0.67),
    "contempt": (-0.55, 0.30),
}


@dataclass(frozen=True)
class Difficulty:
    """Knobs of one difficulty level (all pose numbers in canonical 112-px units)."""

    intensity_min: float  # expression intensity ~ U(intensity_min, 1)
    jitter: float  # relative s.d. of each prototype AU
    asymmetry: float  # relative s.d. between left and right halves
    p_spurious: float  # chance that any non-prototype AU is active
    spurious_max: float  # its intensity ~ U(0, spurious_max)
    va_noise: float  # s.d. of the noise added to valence and arousal
    roll_deg: float  # s.d. of head roll
    yaw: float  # yaw-like squash ~ U(-yaw, yaw)
    scale: tuple[float, float]  # face scale ~ U(lo, hi)
    shift: float  # face shift ~ U(-shift, shift) pixels on each axis
    p_occluder: tuple[float, float, float]  # chances of glasses, hand, mask
    clutter: int  # at most this many background shapes
    light: float  # strength of brightness, colour cast and lighting gradient
    blur: float  # Gaussian blur sigma ~ U(0, blur)
    noise: float  # Gaussian noise sigma ~ U(0, noise) grey levels


DIFFICULTY: dict[str, Difficulty] = {
    "lab": Difficulty(
        intensity_min=0.35, jitter=0.15, asymmetry=0.05, p_spurious=0.06, spurious_max=0.3, va_noise=0.08,
        roll_deg=1.5, yaw=0.03, scale=(0.97, 1.03), shift=1.5, p_occluder=(0.0, 0.0, 0.0), clutter=0,
        light=0.0, blur=0.0, noise=0.0,
    ),
    # Halfway between lab and wild on every knob (occluder chances and clutter halved): the level where the
    # course's simplest baseline is neither at ceiling (as on lab) nor near chance (as some models are on wild).
    "medium": Difficulty(
        intensity_min=0.30, jitter=0.20, asymmetry=0.085, p_spurious=0.09, spurious_max=0.35, va_noise=0.10,
        roll_deg=5.25, yaw=0.24, scale=(0.885, 1.075), shift=4.25, p_occluder=(0.06, 0.05, 0.03), clutter=3,
        light=0.5, blur=0.7, noise=5.0,
    ),
    "wild": Difficulty(
        intensity_min=0.25, jitter=0.25, asymmetry=0.12, p_spurious=0.12, spurious_max=0.4, va_noise=0.12,
        roll_deg=9.0, yaw=0.45, scale=(0.8, 1.12), shift=7.0, p_occluder=(0.12, 0.10, 0.06), clutter=6,
        light=1.0, blur=1.4, noise=10.0,
    ),
}


def _prototype_matrix() -> np.ndarray:
    """(8, 17) prototype weights in canonical class order and AUS order."""
    weights = np.zeros((len(CLASSES), len(AUS)), np.float64)
    for c, name in enumerate(CLASSES):
        for au, w in PROTOTYPES[name].items():
            weights[c, AU_INDEX[au]] = w
    return weights


_PROTO = _prototype_matrix()


# ----------------------------------------------------------------------------------------------
# Identities
# ----------------------------------------------------------------------------------------------

#: The five skin colours (RGB, lightest to darkest) an identity's skin is interpolated between (read by fairness).
SKIN_TONES = np.array([[250, 220, 200], [236, 190, 160], [205, 150, 115], [160, 110, 80], [105, 70, 50]], float)
_HAIR_COLOURS = np.array([[25, 20, 18], [60, 40, 28], [110, 75, 45], [190, 150, 95], [140, 60, 35],
                          [150, 150, 150]], float)
_IRIS_COLOURS = np.array([[70, 45, 30], [40, 30, 25], [70, 110, 150], [90, 110, 70]], float)


@dataclass(frozen=True)
class Identity:
    """One synthetic person: shape coefficients, colours, hair style and "age"."""

    coeffs: np.ndarray  # (15,) identity shape coefficients
    points: np.ndarray  # (N*2,) canonical points of this face at rest
    skin: tuple[float, float, float]
    hair: tuple[float, float, float]
    iris: tuple[float, float, float]
    lips: tuple[float, float, float]
    hair_style: int  # 0 short, 1 long, 2 shaved
    age: float  # 0..1: wrinkles at rest
    iris_radius: float  # canonical pixels


def _palette(colours: np.ndarray, t: float) -> np.ndarray:
    """Linear interpolation along a palette, t in [0, 1]."""
    pos = t * (len(colours) - 1)
    k = min(int(pos), len(colours) - 2)
    return colours[k] + (pos - k) * (colours[k + 1] - colours[k])


@functools.lru_cache(maxsize=4096)
def make_identity(seed: int, identity: int) -> Identity:
    """Identity ``identity`` of dataset seed ``seed`` (a pure function, cached)."""
    rng = np.random.default_rng([seed, 1, identity])
    coeffs = np.clip(rng.standard_normal(len(TEMPLATE.identity_basis)), -2, 2)
    u = rng.random(8)
    skin = _palette(SKIN_TONES, u[0])
    hair = _palette(_HAIR_COLOURS, u[1] ** 1.5)
    iris = _palette(_IRIS_COLOURS, u[2])
    lips = skin * np.array([0.85, 0.55, 0.55]) + np.array([20, 0, 0]) * u[3]
    points = TEMPLATE.points.ravel() + coeffs @ TEMPLATE.identity_basis
    return Identity(
        coeffs=coeffs, points=points, skin=tuple(skin), hair=tuple(hair), iris=tuple(iris),
        lips=tuple(np.clip(lips, 0, 255)), hair_style=int(u[4] * 1.999) if u[5] > 0.15 else 2,
        age=float(u[6] ** 2), iris_radius=3.0 + 0.5 * u[7],
    )


# ----------------------------------------------------------------------------------------------
# Per-sample randomness: expression and scene
# ----------------------------------------------------------------------------------------------


def sample_expression(rng: np.random.Generator, label: int, difficulty: str) -> tuple[np.ndarray, np.ndarray, float]:
    """AU intensities (left half, right half) and the intensity for one face of class ``label``."""
    cfg = DIFFICULTY[difficulty]
    weights = _PROTO[label]
    intensity = cfg.intensity_min + (1 - cfg.intensity_min) * rng.random()
    z = rng.standard_normal((3, len(AUS)))
    u = rng.random((2, len(AUS)))
    aus = intensity * weights * (1 + cfg.jitter * z[0])
    spurious = (weights == 0) & (u[0] < cfg.p_spurious)
    aus = np.where(spurious, u[1] * cfg.spurious_max, aus)
    left = np.clip(aus * (1 + cfg.asymmetry * z[1]), 0, 1)
    right = np.clip(aus * (1 + cfg.asymmetry * z[2]), 0, 1)
    side = rng.random()
    if CLASSES[label] in UNILATERAL:
        off = weights > 0
        (left if side < 0.5 else right)[off] = 0.0
    if CLASSES[label] == "neutral":
        intensity = 0.0
    return left, right, float(intensity)


def sample_blend(rng: np.random.Generator, label: int, other: int, weight: float,
                 difficulty: str) -> tuple[np.ndarray, np.ndarray, float]:
    """Like :func:`sample_expression` for class ``label``, moved towards class ``other``: the prototype is
    ``(1 - weight) * P[label] + weight * P[other]``, with the same random draws as the unblended face (so
    face i's jitter, asymmetry, spurious AUs and scene do not change). A unilateral prototype (contempt)
    stays on its side. Returns (left, right, intensity): intensity = drawn intensity x the non-neutral share.
    """
    cfg = DIFFICULTY[difficulty]
    shares = {label: 1.0 - weight, other: weight}
    intensity = cfg.intensity_min + (1 - cfg.intensity_min) * rng.random()
    z = rng.standard_normal((3, len(AUS)))
    u = rng.random((2, len(AUS)))
    side = rng.random()
    scale = intensity * (1 + cfg.jitter * z[0])
    mixed = sum(w * _PROTO[c] for c, w in shares.items())
    spurious = (mixed == 0) & (u[0] < cfg.p_spurious)
    left = np.where(spurious, u[1] * cfg.spurious_max, 0.0)
    right = left.copy()
    for c, w in shares.items():
        part = scale * w * _PROTO[c]
        left = left + (part if CLASSES[c] not in UNILATERAL or side >= 0.5 else 0.0)
        right = right + (part if CLASSES[c] not in UNILATERAL or side < 0.5 else 0.0)
    left, right = left * (1 + cfg.asymmetry * z[1]), right * (1 + cfg.asymmetry * z[2])
    expressive = sum(w for c, w in shares.items() if CLASSES[c] != "neutral")
    return np.clip(left, 0, 1), np.clip(right, 0, 1), float(intensity * expressive)


def valence_arousal(label: int, intensity: float, noise: np.ndarray) -> tuple[float, float]:
    """The class's circumplex point times the intensity, plus ``noise`` (2,), clipped to [-1, 1]."""
    v, a = CIRCUMPLEX[CLASSES[label]]
    va = np.clip(np.array([v, a]) * intensity + noise, VA_MIN, VA_MAX)
    return float(va[0]), float(va[1])


@dataclass(frozen=True)
class Scene:
    """Everything about one image that is not the face itself (pose, background, nuisances)."""

    roll: float = 0.0  # radians
    yaw: float = 0.0  # -1..1, the 2-D yaw-like squash of the difficulty levels (see yaw_deg for 3-D)
    scale: float = 1.0
    shift: tuple[float, float] = (0.0, 0.0)  # canonical pixels
    gaze: tuple[float, float] = (0.0, 0.0)  # iris offset, canonical pixels
    teeth: float = 0.45  # fraction of the mouth opening filled by upper teeth
    background: tuple[float, float, float] = (150.0, 150.0, 150.0)
    clothes: tuple[float, float, float] = (70.0, 80.0, 100.0)
    clutter: np.ndarray | None = None  # (k, 8) uniforms, one row per background shape
    occluder: str = "none"  # none, glasses, sunglasses, hand, mask
    occluder_params: np.ndarray | None = None  # (6,) uniforms
    brightness: float = 1.0
    colour_gain: tuple[float, float, float] = (1.0, 1.0, 1.0)
    gradient: tuple[float, float] = (0.0, 0.0)  # lighting gain slope along x and y (per half image)
    blur: float = 0.0  # sigma, canonical pixels
    noise: float = 0.0  # sigma, grey levels
    noise_offset: tuple[int, int] = (0, 0)
    yaw_deg: float = 0.0  # yaw in depth (degrees, + turns the face to image-right); 0 = frontal, no 3-D turn


def sample_scene(rng: np.random.Generator, difficulty: str) -> Scene:
    """Draw pose, background and nuisances for one image."""
    cfg = DIFFICULTY[difficulty]
    z = rng.standard_normal(4)
    u = rng.random(16)
    roll = math.radians(float(np.clip(cfg.roll_deg * z[0], -2.5 * cfg.roll_deg, 2.5 * cfg.roll_deg)))
    grey = 80 + 140 * u[0]
    tint = 12 * (u[1:4] - 0.5) if difficulty == "lab" else 120 * (u[1:4] - 0.5)
    scene = Scene(
        roll=roll, yaw=cfg.yaw * (2 * u[4] - 1), scale=cfg.scale[0] + (cfg.scale[1] - cfg.scale[0]) * u[5],
        shift=(cfg.shift * (2 * u[6] - 1), cfg.shift * (2 * u[7] - 1)), gaze=(0.6 * z[1], 0.3 * z[2]),
        teeth=0.3 + 0.35 * u[8], background=tuple(np.clip(grey + tint, 0, 255)),
        clothes=tuple(40 + 180 * u[9:12] * (0.4 + 0.6 * u[12])),
    )
    if difficulty == "lab":
        return scene
    occluder, p = "none", u[13]
    p_glasses, p_hand, p_mask = cfg.p_occluder
    if p < p_glasses:
        occluder = "sunglasses" if u[14] < 0.35 else "glasses"
    elif p < p_glasses + p_hand:
        occluder = "hand"
    elif p < p_glasses + p_hand + p_mask:
        occluder = "mask"
    w = rng.random(12)
    angle = 2 * math.pi * w[0]
    return replace(
        scene,
        clutter=rng.random((int(u[15] * (cfg.clutter + 1)), 8)),
        occluder=occluder, occluder_params=rng.random(6),
        brightness=1 + 0.35 * cfg.light * (2 * w[1] - 1),
        colour_gain=tuple(1 + 0.15 * cfg.light * (2 * w[2:5] - 1)),
        gradient=(0.35 * cfg.light * w[5] * math.cos(angle), 0.35 * cfg.light * w[5] * math.sin(angle)),
        blur=cfg.blur * w[6] ** 1.5, noise=cfg.noise * w[7],
        noise_offset=(int(w[8] * 64), int(w[9] * 64)),
    )
