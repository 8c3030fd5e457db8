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

What it is not
--------------
Not photographs: no skin texture, no 3-D shading, no real head rotation (yaw is
a 2-D squash), no hair strands, no real identities. Classes are balanced and the
expressions are prototypical. A model that scores well here has learned the AU
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
from typing import Any, Callable

import cv2
import numpy as np
import torch.utils.data

from fer_utils.labels import AUS, CLASSES, REGIONS, VA_MAX, VA_MIN

CANVAS = 112  #: side of the canonical frame, in pixels
CENTER = 56.0  #: x of the face's midline (and centre of the frame)
SHIFT = 4  #: fixed-point bits for OpenCV drawing (coordinates * 16)
DIFFICULTIES: tuple[str, ...] = ("lab", "wild")
MIN_SIZE = 16
PRESENCE_THRESHOLD = 0.15  #: an AU counts as present from this intensity on (FACS "A")
AU_INDEX: dict[int, int] = {au: k for k, au in enumerate(AUS)}

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


# ----------------------------------------------------------------------------------------------
# The canonical point set: 68 iBUG landmarks, then named extra points
# ----------------------------------------------------------------------------------------------

# Image-left half and midline of the 68 landmarks; the right half is the mirror image.
_LEFT_LANDMARKS: dict[int, tuple[float, float]] = {
    17: (24, 37), 18: (30, 33.5), 19: (37, 32.5), 20: (44, 33), 21: (50, 35),  # brow, outer -> inner
    27: (56, 43), 28: (56, 49), 29: (56, 55), 30: (56, 61.5),  # nose bridge to tip
    31: (48, 65), 32: (51.5, 66.5), 33: (56, 67.3),  # nostril base
    36: (29, 45), 37: (34, 42.5), 38: (40, 42.5), 39: (45, 45.5), 40: (40, 47.3), 41: (34, 47.3),  # eye
    48: (42, 80), 49: (46, 77.5), 50: (51, 76), 51: (56, 76.8),  # outer lip, upper
    57: (56, 85.8), 58: (51, 85.3), 59: (46, 83.5),  # outer lip, lower
    60: (44, 80), 61: (51, 79.3), 62: (56, 79.6), 66: (56, 80.0), 67: (51, 79.8),  # inner lip
}
_MIRROR_PAIRS: list[tuple[int, int]] = (
    [(k, 16 - k) for k in range(8)] + [(17 + j, 26 - j) for j in range(5)]
    + [(31, 35), (32, 34), (36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]
    + [(48, 54), (49, 53), (50, 52), (59, 55), (58, 56), (60, 64), (61, 63), (67, 65)]
)


def _jaw(k: int) -> tuple[float, float]:
    """Jaw point k (0..8, ear to chin) on a slightly square ellipse."""
    phi = math.pi / 2 * k / 8
    return CENTER - 39 * math.cos(phi) ** 0.8, 46 + 52 * math.sin(phi) ** 1.1


def _arc(rx: float, ry: float, cy: float, phis: list[float]) -> list[tuple[float, float]]:
    """Image-left points of an ellipse around the face (phi=0 at the side, pi/2 on top)."""
    return [(CENTER - rx * math.cos(p), cy - ry * math.sin(p)) for p in phis]


class _PointSet:
    """Builds the canonical points, their mirror map and which points follow which."""

    def __init__(self) -> None:
        self.xy: list[tuple[float, float]] = [(0.0, 0.0)] * 68
        self.mirror = list(range(68))
        self.side = [0] * 68  # -1 image-left, 0 midline, +1 image-right
        self.groups: dict[str, list[int]] = {}
        self.follow: dict[int, list[tuple[int, float]]] = {}
        for k in range(9):
            _LEFT_LANDMARKS.setdefault(k, _jaw(k))
        for i, xy in _LEFT_LANDMARKS.items():
            self.xy[i] = xy
        for a, b in _MIRROR_PAIRS:
            self.xy[b] = (2 * CENTER - self.xy[a][0], self.xy[a][1])
            self.mirror[a], self.mirror[b] = b, a
            self.side[a], self.side[b] = -1, 1

    def add(self, name: str, pts: list[tuple[float, float]], follow: list | None = None, pair: bool = True) -> None:
        """Add image-left points (and their mirror images if ``pair``) as group ``name``.

        ``follow[j]`` is a list of (landmark, weight): point j moves by the weighted sum of
        those landmarks' displacements (on its own side), on top of any explicit displacement.
        """
        left = list(range(len(self.xy), len(self.xy) + len(pts)))
        for j, xy in enumerate(pts):
            self.xy.append(xy)
            self.mirror.append(len(self.xy) - 1)
            self.side.append(-1 if pair else 0)
            if follow and follow[j]:
                self.follow[left[j]] = follow[j]
        self.groups[name + ("_l" if pair else "")] = left
        if not pair:
            return
        right = []
        for j, i in enumerate(left):
            x, y = self.xy[i]
            self.xy.append((2 * CENTER - x, y))
            r = len(self.xy) - 1
            self.mirror.append(i)
            self.mirror[i] = r
            self.side.append(1)
            right.append(r)
            if follow:
                self.follow[r] = [(self.mirror[lm], w) for lm, w in follow[j] or []]
        self.groups[name + "_r"] = right


def _build_points() -> _PointSet:
    """All extra points, image-left half written out, the right half mirrored."""
    ps = _PointSet()
    one = lambda lm: [(lm, 1.0)]  # noqa: E731 - "moves exactly with landmark lm"
    phis = [math.pi / 2 * k / 5 for k in range(1, 5)]
    ps.add("skull", _arc(39, 40, 46, phis))
    ps.add("skull_top", [(CENTER, 6.0)], pair=False)
    ps.add("hair_outer", _arc(44, 47, 48, [-0.35, -0.1] + [math.pi / 2 * k / 6 for k in range(1, 6)]))
    ps.add("hair_top", [(CENTER, 0.0)], pair=False)
    ps.add("hairline", [(18, 46), (21, 33), (29, 24), (42, 19)])
    ps.add("hairline_top", [(CENTER, 17.5)], pair=False)
    ps.add("hair_back", [(3, 118), (4, 70)])
    ps.add("ear", [(18, 40), (12.5, 41), (10, 50), (12, 59), (18, 61)])
    ps.add("neck", [(40, 88), (38, 118)])
    ps.add("clothes", [(-30, 140), (-30, 114), (30, 105)])
    brow_low = [(17, 1.5), (18, 2.8), (19, 3.2), (20, 3.2), (21, 3.0)]
    ps.add("brow_low", [(ps.xy[i][0], ps.xy[i][1] + t) for i, t in brow_low], [one(i) for i, _ in brow_low])
    ps.add("lid_up", [(ps.xy[i][0], ps.xy[i][1] - 5.5) for i in (36, 37, 38, 39)], [one(i) for i in (36, 37, 38, 39)])
    ps.add("lid_low", [(ps.xy[i][0], ps.xy[i][1] + 5.5) for i in (39, 40, 41, 36)], [one(i) for i in (39, 40, 41, 36)])
    ps.add("cheek", [(38.0, 60.0)])
    ps.add("nose_wing", [(46.5, 61.5)], [one(31)])
    ps.add("nostril", [(50.8, 65.4)], [[(32, 0.7), (31, 0.3)]])
    ps.add("nose_side", [(52.8, 46.0), (51.8, 54.0)], [[(27, 1.0)], [(29, 1.0)]])
    ps.add("forehead1", [(31, 27.5), (43, 26.0), (CENTER - 0.01, 25.5)])
    ps.add("forehead2", [(33, 23.5), (44, 22.0), (CENTER - 0.01, 21.5)])
    ps.add("furrow", [(53.3, 33.5), (53.8, 40.0)], [[(21, 0.35)], [(21, 0.2)]])
    ps.add("crows", [(26, 43.2), (22, 41.0), (26, 45.5), (21.5, 45.8), (26.5, 47.8), (22.5, 50.5)],
           [one(36)] * 6)
    ps.add("under_eye", [(32.5, 50.0), (38, 51.6), (43.5, 50.0)], [one(41), [(41, 0.5), (40, 0.5)], one(40)])
    ps.add("nose_wrinkle", [(52.5, 47.0), (52.3, 49.5), (52.3, 52.0)], [one(28)] * 3)
    ps.add("nose_wrinkle_mid", [(CENTER, 46.6), (CENTER, 49.1), (CENTER, 51.6)], [one(28)] * 3, pair=False)
    ps.add("fold", [(46.0, 63.5), (42.5, 71.0), (39.5, 79.0)], [one(31), [(31, 0.4), (48, 0.5)], [(48, 0.9)]])
    ps.add("marionette", [(41.5, 83.5), (40.5, 90.0)], [one(48), [(48, 0.6)]])
    ps.add("dimple", [(39.8, 77.8), (38.8, 80.2), (39.8, 82.6)], [one(48)] * 3)
    ps.add("stretch", [(39.5, 80.8), (35.5, 81.8)], [one(48)] * 2)
    ps.add("chin_mark", [(51.0, 92.0)], [[(8, 0.5), (58, 0.5)]])
    ps.add("chin_mark_mid", [(CENTER, 94.0)], [[(8, 0.5), (57, 0.5)]], pair=False)
    ps.add("bulge_up", [(51, 73.5)], [one(50)])
    ps.add("bulge_up_mid", [(CENTER, 74.0)], [one(51)], pair=False)
    ps.add("bulge_low", [(51, 88.0)], [one(58)])
    ps.add("bulge_low_mid", [(CENTER, 88.6)], [one(57)], pair=False)
    ps.add("mask_top", [(20, 60), (34, 56), (46, 55)], [[(1, 1.0)], None, None])
    ps.add("mask_top_mid", [(CENTER, 54.5)], pair=False)
    return ps


# AU displacements at intensity 1, canonical pixels, image-left half and midline only
# (the right half mirrors them). Point keys: landmark ids or (group, j) for extra points.
_AU_MOVES: dict[int, dict[Any, tuple[float, float]]] = {
    1: {21: (0.5, -5.0), 20: (0, -3.5), 19: (0, -2.0), 18: (0, -1.0),
        ("forehead1_l", 1): (0, -1.5), ("forehead1_l", 2): (0, -1.8), ("forehead2_l", 1): (0, -1.5),
        ("forehead2_l", 2): (0, -1.8)},
    2: {17: (0, -5.5), 18: (0, -5.0), 19: (0, -3.5), 20: (0, -1.5), 21: (0, -0.5),
        ("forehead1_l", 0): (0, -1.5), ("forehead2_l", 0): (0, -1.5)},
    4: {21: (2.8, 4.5), 20: (1.8, 4.0), 19: (1.0, 3.0), 18: (0.5, 2.0), 17: (0, 1.0), 37: (0, 0.8), 38: (0, 0.8)},
    5: {37: (0, -2.4), 38: (0, -2.4), 36: (0, -0.3), 39: (0, -0.3), 40: (0, 0.4), 41: (0, 0.4)},
    6: {40: (0, -1.6), 41: (0, -1.8), 36: (0, -0.4), 17: (0, 0.8), 48: (-0.3, -0.8), ("cheek_l", 0): (0, -3.5)},
    7: {40: (0, -2.0), 41: (0, -2.0), 37: (0, 0.8), 38: (0, 0.8)},
    9: {31: (0.3, -2.5), 32: (0, -2.2), 33: (0, -1.8), 30: (0, -1.2), 29: (0, -0.8), 21: (0.6, 2.2),
        20: (0.3, 1.5), 49: (0, -1.2), 50: (0, -1.5), 51: (0, -1.5), 61: (0, -1.2), 62: (0, -1.2),
        40: (0, -0.8), 41: (0, -0.8)},
    10: {50: (0, -3.2), 51: (0, -3.4), 49: (0, -2.6), 61: (0, -2.8), 62: (0, -3.0), 48: (0, -0.8), 60: (0, -0.8),
         31: (0, -0.8), 32: (0, -0.6)},
    12: {48: (-3.5, -4.5), 60: (-3.2, -4.0), 49: (-1.5, -2.2), 59: (-1.5, -2.6), 61: (-0.5, -0.8), 67: (-0.8, -1.5),
         50: (-0.5, -0.8), 58: (-0.5, -1.0), 57: (0, -0.6), 40: (0, -0.6), 41: (0, -0.6), ("cheek_l", 0): (0.5, -2.0)},
    14: {48: (1.2, -0.8), 60: (1.2, -0.6), 49: (0.4, -0.3), 59: (0.4, -0.3)},
    15: {48: (-0.4, 4.2), 60: (-0.4, 3.6), 59: (0, 2.2), 49: (0, 1.6), 67: (0, 1.4), 61: (0, 0.6), 58: (0, 0.8)},
    17: {8: (0, -3.0), 7: (0, -2.6), 6: (0, -1.6), 57: (0, -2.6), 58: (0, -2.4), 59: (0, -1.4), 66: (0, -1.6),
         67: (0, -1.4), 51: (0, -0.8), 48: (0, 0.8), 60: (0, 0.6)},
    20: {48: (-5.0, 1.2), 60: (-4.6, 1.2), 49: (-2.2, 0.3), 59: (-2.2, 0.6), 50: (-0.8, 0.3), 58: (-0.8, 0),
         61: (-1.6, 0.2), 67: (-1.6, 0.2), 51: (0, 0.5), 57: (0, -0.5)},
    23: {49: (0.5, 1.4), 50: (0, 1.6), 51: (0, 1.6), 58: (0, -1.6), 57: (0, -1.7), 59: (0.5, -1.2), 48: (1.4, 0),
         60: (1.2, 0)},
    24: {49: (0, 1.2), 50: (0, 1.3), 51: (0, 1.3), 57: (0, -1.4), 58: (0, -1.3), 59: (0, -1.0), 48: (0.6, 0.3),
         60: (0.6, 0.3), 61: (0, 0.3), 62: (0, 0.4), 66: (0, -0.1), 67: (0, 0.2)},
    25: {61: (0, -1.4), 62: (0, -1.6), 67: (0, 2.2), 66: (0, 2.5), 58: (0, 1.8), 57: (0, 2.0), 59: (0, 1.2),
         60: (0.3, 0), 48: (0, 0.2)},
    26: {8: (0, 9.0), 7: (0, 8.5), 6: (-0.3, 7.0), 5: (-0.3, 5.0), 4: (-0.2, 3.0), 3: (0, 1.5), 2: (0, 0.5),
         57: (0, 7.5), 58: (0, 7.2), 59: (0, 5.5), 66: (0, 8.0), 67: (0, 7.2), 61: (0, -0.8), 62: (0, -1.0),
         48: (0.4, 2.0), 60: (0.4, 2.3), 49: (0, 0.5), ("neck_l", 0): (0, 4.0)},
}


class _Template:
    """Everything precomputed once: canonical points, bases, depth, index arrays for drawing."""

    def __init__(self) -> None:
        ps = _build_points()
        self.ps = ps
        self.points = np.array(ps.xy, np.float64)
        self.n_points = len(self.points)
        g = {k: np.array(v) for k, v in ps.groups.items()}
        self.g = g
        side = np.array(ps.side)
        self.left_weight = np.where(side < 0, 1.0, np.where(side > 0, 0.0, 0.5))
        self.au_left, self.au_right = self._au_bases()
        self.identity_basis = self._identity_basis()
        # "Depth" for the yaw-like shift: 0 on the face outline, ~1 at the centre, more on the nose.
        x, y = self.points[:, 0], self.points[:, 1]
        depth = np.clip(1 - ((x - CENTER) / 40) ** 2 - ((y - 60) / 52) ** 2, 0, 1)
        depth[[27, 28, 29, 30, 31, 32, 33, 34, 35]] += 0.3
        self.depth = depth
        self._index_arrays()

    def _key(self, key: Any) -> int:
        return key if isinstance(key, int) else self.ps.groups[key[0]][key[1]]

    def _apply_follow(self, disp: np.ndarray) -> np.ndarray:
        """Followers move with their leaders (leaders are landmarks, never followers)."""
        for i, leaders in self.ps.follow.items():
            if leaders:
                disp[i] += sum(w * disp[lm] for lm, w in leaders)
        return disp

    def _au_bases(self) -> tuple[np.ndarray, np.ndarray]:
        """(17, N*2) displacement bases for the image-left and image-right halves of each AU."""
        left = np.zeros((len(AUS), self.n_points * 2))
        right = np.zeros_like(left)
        for k, au in enumerate(AUS):
            disp = np.zeros((self.n_points, 2))
            for key, (dx, dy) in _AU_MOVES[au].items():
                i = self._key(key)
                disp[i] = (dx, dy)
                if self.ps.mirror[i] != i:
                    disp[self.ps.mirror[i]] = (-dx, dy)
            disp = self._apply_follow(disp)
            left[k] = (disp * self.left_weight[:, None]).ravel()
            right[k] = (disp * (1 - self.left_weight[:, None])).ravel()
        return left, right

    def _identity_basis(self) -> np.ndarray:
        """(15, N*2): one displacement field per identity coefficient (1 s.d. each)."""
        p, g = self.points, self.ps.groups
        x, y = p[:, 0] - CENTER, p[:, 1]
        n = self.n_points
        idx = lambda *names: np.array(sum((g[nm] for nm in names), []), int)  # noqa: E731
        outline = np.r_[np.arange(17), idx("skull_l", "skull_r", "skull_top", "hair_outer_l", "hair_outer_r",
                                            "hair_top", "hair_back_l", "hair_back_r", "ear_l", "ear_r",
                                            "hairline_l", "hairline_r", "mask_top_l", "mask_top_r")]
        inner = np.setdiff1d(np.arange(n), outline)
        eyes_l = np.r_[36:42, idx("crows_l", "under_eye_l")]
        eyes_r = np.r_[42:48, idx("crows_r", "under_eye_r")]
        brows = np.r_[17:27]
        nose = np.r_[29:36]
        mouth = np.r_[48:68]
        fields = []

        def new() -> np.ndarray:
            fields.append(np.zeros((n, 2)))
            return fields[-1]

        d = new()  # 0 face width
        d[outline, 0] = 0.09 * x[outline]
        d[inner, 0] = 0.025 * x[inner]
        d = new()  # 1 face length (below the eyes)
        low = y > 46
        d[:, 1] = np.where(low, 0.06 * (y - 46), 0) * np.isin(np.arange(n), outline)
        d[mouth, 1] = 0.04 * (y[mouth] - 46)
        d[nose, 1] = 0.02 * (y[nose] - 46)
        d = new()  # 2 jaw squareness
        for k, s in ((3, 1.0), (4, 1.6), (5, 1.6), (6, 1.0)):
            d[k] = (-1.5 * s, 0.8 * s)
            d[16 - k] = (1.5 * s, 0.8 * s)
        d = new()  # 3 eye spacing
        d[eyes_l, 0], d[eyes_r, 0] = -1.5, 1.5
        d = new()  # 4 eye size
        for eye in (eyes_l, eyes_r):
            c = p[eye[:6]].mean(0)
            d[eye] = 0.12 * (p[eye] - c)
        d = new()  # 5 brow height
        d[brows, 1] = -2.2
        d = new()  # 6 brow thickness (explicit on the lower edge only)
        d[idx("brow_low_l", "brow_low_r"), 1] = 0.9
        d = new()  # 7 nose length
        d[nose, 1] = np.where(np.isin(nose, (29,)), 0.8, 2.0)
        d = new()  # 8 nose width
        for i, dx in ((31, -1.6), (32, -0.9)):
            d[i, 0], d[self.ps.mirror[i], 0] = dx, -dx
        d = new()  # 9 mouth width
        for i, dx in ((48, -2.4), (60, -2.2), (49, -1.2), (59, -1.2), (61, -0.6), (67, -0.6)):
            d[i, 0], d[self.ps.mirror[i], 0] = dx, -dx
        d = new()  # 10 lip thickness
        d[np.r_[49:54], 1] = -0.9
        d[np.r_[55:60], 1] = 1.2
        d = new()  # 11 mouth height
        d[mouth, 1] = 1.8
        d = new()  # 12 hairline
        d[idx("hairline_l", "hairline_r", "hairline_top"), 1] = 3.5
        d = new()  # 13 hair volume
        hair = idx("hair_outer_l", "hair_outer_r", "hair_top")
        d[hair] = 0.08 * np.c_[x[hair], y[hair] - 46]
        d = new()  # 14 vertical position of eyes and brows
        d[np.r_[eyes_l, eyes_r, brows], 1] = 1.5
        return np.stack([self._apply_follow(f).ravel() for f in fields])

    def _index_arrays(self) -> None:
        """Index arrays for every polygon and line that :func:`_draw_face` draws."""
        g = self.ps.groups
        r = lambda name: g[name + "_r"][::-1]  # noqa: E731 - right half, walked back to the midline
        ix = lambda *parts: np.array([i for part in parts for i in part], np.intp)  # noqa: E731
        self.face = ix(range(17), g["skull_r"], g["skull_top"], g["skull_l"][::-1])
        self.hair_front = ix(g["hair_outer_l"], g["hair_top"], r("hair_outer"), g["hairline_r"],
                             g["hairline_top"], g["hairline_l"][::-1])
        self.hair_back = ix(g["hair_back_l"], g["hair_outer_l"], g["hair_top"], r("hair_outer"),
                            g["hair_back_r"][::-1])
        self.neck = ix(g["neck_l"][::-1], g["neck_r"])
        self.clothes = ix(g["clothes_l"], r("clothes"))
        self.ears = [ix(g["ear_l"]), ix(g["ear_r"])]
        self.brows = [ix(range(17, 22), g["brow_low_l"][::-1]), ix(range(22, 27), g["brow_low_r"])]
        self.eyes = [ix(range(36, 42)), ix(range(42, 48))]
        self.lid_up = [ix((36, 37, 38, 39), g["lid_up_l"][::-1]), ix((45, 44, 43, 42), g["lid_up_r"][::-1])]
        self.lid_low = [ix((39, 40, 41, 36), g["lid_low_l"][::-1]), ix((42, 47, 46, 45), g["lid_low_r"][::-1])]
        self.upper_lid = [ix((36, 37, 38, 39)), ix((42, 43, 44, 45))]
        self.lower_lid = [ix((39, 40, 41, 36)), ix((45, 46, 47, 42))]
        self.cheek = [g["cheek_l"][0], g["cheek_r"][0]]
        self.nostrils = [g["nostril_l"][0], g["nostril_r"][0]]
        self.nose_base = ix(g["nose_wing_l"], range(31, 36), g["nose_wing_r"])
        self.nose_sides = [ix(g["nose_side_l"], g["nose_wing_l"]), ix(g["nose_side_r"], g["nose_wing_r"])]
        self.outer_lip = ix(range(48, 60))
        self.inner_lip = ix(range(60, 68))
        self.upper_inner = ix(range(60, 65))
        self.forehead_mid = [ix(g["forehead1_l"][1:], g["forehead1_r"][1:][::-1]),
                             ix(g["forehead2_l"][1:], g["forehead2_r"][1:][::-1])]
        self.forehead_side = [[ix(g[f + "_l"][:2]), ix(g[f + "_r"][:2])] for f in ("forehead1", "forehead2")]
        self.furrow = [ix(g["furrow_l"]), ix(g["furrow_r"])]
        self.crows = [[ix(g[f"crows_{s}"][2 * j: 2 * j + 2]) for j in range(3)] for s in "lr"]
        self.under_eye = [ix(g["under_eye_l"]), ix(g["under_eye_r"])]
        nw, nwm = g["nose_wrinkle_l"], g["nose_wrinkle_mid"]
        self.nose_wrinkles = [ix((nw[j], nwm[j], g["nose_wrinkle_r"][j])) for j in range(3)]
        self.folds = [ix(g["fold_l"]), ix(g["fold_r"])]
        self.marionette = [ix(g["marionette_l"]), ix(g["marionette_r"])]
        self.dimples = [ix(g["dimple_l"]), ix(g["dimple_r"])]
        self.stretch = [ix(g["stretch_l"]), ix(g["stretch_r"])]
        self.chin = ix(g["chin_mark_l"], g["chin_mark_mid"], g["chin_mark_r"])
        self.bulges = [ix(g["bulge_up_l"], g["bulge_up_mid"], g["bulge_up_r"]),
                       ix(g["bulge_low_l"], g["bulge_low_mid"], g["bulge_low_r"])]
        self.mask = ix(range(1, 16), g["mask_top_r"], g["mask_top_mid"], g["mask_top_l"][::-1])
        regions = {
            "brows": self.brows,
            "eyes": self.eyes,
            "nose": [ix((27,), g["nose_wing_r"], range(35, 30, -1), g["nose_wing_l"])],
            "mouth": [self.outer_lip],
            "cheeks": [ix((41, 40), g["nose_wing_l"], (31, 48, 4, 3, 2, 1)),
                       ix((46, 47), g["nose_wing_r"], (35, 54, 12, 13, 14, 15))],
        }
        # Each region polygon grows (>1) or shrinks (<1) about its centroid for the masks.
        growth = {"brows": 1.3, "eyes": 1.5, "nose": 1.15, "mouth": 1.2, "cheeks": 0.85}
        # Derived points = DERIVED @ points: grown region polygons, iris centres, the 5 points.
        rows: list[np.ndarray] = []
        self.region_slices: dict[str, list[slice]] = {}
        for name in REGIONS:
            self.region_slices[name] = []
            for idx in regions[name]:
                start = len(rows)
                for i in idx:
                    row = np.zeros(self.n_points)
                    row[idx] += (1 - growth[name]) / len(idx)
                    row[i] += growth[name]
                    rows.append(row)
                self.region_slices[name].append(slice(start, len(rows)))
        self.region_starts = np.array([sl[0].start for sl in self.region_slices.values()])
        self.region_end = len(rows)
        self.iris_rows = [len(rows), len(rows) + 1]
        self.points5_rows = slice(len(rows) + 2, len(rows) + 7)
        for idx in ((37, 38, 40, 41), (43, 44, 46, 47), range(36, 42), range(42, 48), (30,), (48,), (54,)):
            row = np.zeros(self.n_points)
            row[list(idx)] = 1 / len(idx)
            rows.append(row)
        self.derived = np.stack(rows)


TEMPLATE = _Template()
_PROTO = _prototype_matrix()


# ----------------------------------------------------------------------------------------------
# Identities
# ----------------------------------------------------------------------------------------------

_SKIN_TONES = np.array([[250, 220, 200], [236, 190, 160], [205, 150, 115], [160, 110, 80], [105, 70, 50]], float)
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
    skin = _palette(_SKIN_TONES, u[0])
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


def valence_arousal(label: int, intensity: float, noise: np.ndarray) -> tuple[float, float]:
    """The class's circumplex point times the intensity, plus ``noise`` (2,), clipped to [-1, 1]."""
    v, a = CIRCUMPLEX[CLASSES[label]]
    va = np.clip(np.array([v, a]) * intensity + noise, VA_MIN, VA_MAX)
    return float(va[0]), float(va[1])


@dataclass(frozen=True)
class Scene:
    """Everything about one image that is not the face itself (pose, background, nuisances)."""

    roll: float = 0.0  # radians
    yaw: float = 0.0  # -1..1, yaw-like squash
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


# ----------------------------------------------------------------------------------------------
# Geometry: canonical points -> output pixels
# ----------------------------------------------------------------------------------------------


def face_points(ident: Identity, aus_left: np.ndarray, aus_right: np.ndarray, scene: Scene, size: int) -> np.ndarray:
    """(N, 2) float points in output pixels: identity + AUs, yaw-like squash, then the camera."""
    pts = (ident.points + aus_left @ TEMPLATE.au_left + aus_right @ TEMPLATE.au_right).reshape(-1, 2)
    return _camera(pts, scene, size, yaw=True)


def _camera(pts: np.ndarray, scene: Scene, size: int, yaw: bool) -> np.ndarray:
    """Yaw-like squash (optional), roll about the frame centre, scale, shift, resize to ``size``."""
    x, y = pts[:, 0], pts[:, 1]
    if yaw:
        x = CENTER + (x - CENTER) * (1 - 0.35 * abs(scene.yaw)) + 8.0 * scene.yaw * TEMPLATE.depth
    k = size / CANVAS
    c, s = math.cos(scene.roll) * scene.scale * k, math.sin(scene.roll) * scene.scale * k
    x0, y0 = x - CENTER, y - CENTER
    ox, oy = (CENTER + scene.shift[0]) * k, (CENTER + scene.shift[1]) * k
    return np.stack([c * x0 - s * y0 + ox, s * x0 + c * y0 + oy], axis=1)


def _fixed(pts: np.ndarray) -> np.ndarray:
    """Float pixel coordinates -> OpenCV fixed point (SHIFT fractional bits)."""
    return np.rint(pts * (1 << SHIFT)).astype(np.int32)


# ----------------------------------------------------------------------------------------------
# Drawing
# ----------------------------------------------------------------------------------------------

_AA = cv2.LINE_AA


def _shade(colour: tuple[float, ...], factor: float) -> tuple[float, float, float]:
    """``colour`` scaled by ``factor`` (darker below 1, lighter above; OpenCV saturates at 255)."""
    return colour[0] * factor, colour[1] * factor, colour[2] * factor


def _cue(img: np.ndarray, q: np.ndarray, idx: np.ndarray, skin: tuple, strength: float, width: int) -> None:
    """A wrinkle line whose darkness grows with ``strength`` (nothing below 0.05)."""
    if strength > 0.05:
        cv2.polylines(img, [q[idx]], False, _shade(skin, 1 - 0.45 * min(strength, 1.0)), width, _AA, SHIFT)


def _cue_strengths(a: np.ndarray, age: float) -> dict[str, float]:
    """Darkness of each appearance cue on one side, from that side's AU intensities (17,)."""
    au = lambda n: float(a[AU_INDEX[n]])  # noqa: E731
    return {
        "forehead_mid": au(1) + 0.3 * age, "forehead_side": au(2) + 0.3 * age, "furrow": au(4) + 0.15 * age,
        "crows": au(6) + 0.2 * age, "under_eye": max(au(6), 0.6 * au(7)) + 0.1 * age,
        "fold": 0.85 * au(12) + 0.7 * au(10) + 0.5 * au(9) + 0.3 * au(6) + 0.3 * age,
        "nose": au(9), "marionette": au(15) + 0.15 * age, "dimple": au(14), "stretch": au(20),
        "chin": au(17), "bulge": au(24), "lip_border": au(23), "cheek": au(6) + 0.5 * au(12),
    }


def _draw_face(img: np.ndarray, p: np.ndarray, irises: np.ndarray, ident: Identity, scene: Scene,
               aus_left: np.ndarray, aus_right: np.ndarray, k: float) -> None:
    """Draw one face into ``img`` from its output-pixel points ``p`` (N, 2) and iris centres (2, 2).

    ``k`` is output pixels per canonical pixel.
    """
    t = TEMPLATE
    q = _fixed(p)
    w1 = max(1, round(k))  # thin line
    w2 = max(1, round(1.6 * k))  # lid line
    skin, hair = ident.skin, ident.hair
    poly = lambda idx, colour: cv2.fillPoly(img, [q[idx]], colour, _AA, SHIFT)  # noqa: E731
    if ident.hair_style == 1:
        poly(t.hair_back, hair)
    poly(t.clothes, scene.clothes)
    poly(t.neck, _shade(skin, 0.85))
    for ear in t.ears:
        poly(ear, _shade(skin, 0.93))
    poly(t.face, skin)
    cues = (_cue_strengths(aus_left, ident.age), _cue_strengths(aus_right, ident.age))
    # eyes: sclera, iris, pupil, then skin-coloured lid covers clip the iris to the lids
    iris_r = int(ident.iris_radius * k * scene.scale * 16)
    gaze = np.array(scene.gaze) * k * scene.scale
    for s in range(2):
        poly(t.eyes[s], (238.0, 236.0, 230.0))
        centre = _fixed(irises[s] + gaze)
        cv2.circle(img, tuple(centre.tolist()), iris_r, ident.iris, -1, _AA, SHIFT)
        cv2.circle(img, tuple(centre.tolist()), iris_r // 2, (15.0, 12.0, 12.0), -1, _AA, SHIFT)
        poly(t.lid_up[s], skin)
        poly(t.lid_low[s], skin)
    # cheeks (AU6/AU12 raise them): a lighter ellipse
    for s in range(2):
        strength = cues[s]["cheek"]
        if strength > 0.05:
            axes = (int(7 * k * scene.scale * 16), int(4.5 * k * scene.scale * 16))
            cv2.ellipse(img, tuple(q[t.cheek[s]].tolist()), axes, math.degrees(scene.roll), 0, 360,
                        _shade(skin, 1 + 0.12 * min(strength, 1.0)), -1, _AA, SHIFT)
    # wrinkles and folds
    for s in range(2):
        c = cues[s]
        for j in range(2):
            _cue(img, q, t.forehead_side[j][s], skin, c["forehead_side"], w1)
        _cue(img, q, t.furrow[s], skin, c["furrow"], w1)
        for line in t.crows[s]:
            _cue(img, q, line, skin, c["crows"], w1)
        _cue(img, q, t.under_eye[s], skin, c["under_eye"], w1)
        _cue(img, q, t.folds[s], skin, c["fold"], w1)
        _cue(img, q, t.marionette[s], skin, c["marionette"], w1)
        _cue(img, q, t.dimples[s], skin, c["dimple"], w1)
        _cue(img, q, t.stretch[s], skin, c["stretch"], w1)
    both = {key: 0.5 * (cues[0][key] + cues[1][key]) for key in ("forehead_mid", "nose", "chin", "bulge")}
    for line in t.forehead_mid:
        _cue(img, q, line, skin, both["forehead_mid"], w1)
    for line in t.nose_wrinkles:
        _cue(img, q, line, skin, both["nose"], w1)
    _cue(img, q, t.chin, skin, both["chin"], w1)
    for line in t.bulges:
        _cue(img, q, line, skin, both["bulge"], w1)
    # lid lines and brows
    dark_lid = _shade(skin, 0.45)
    for s in range(2):
        cv2.polylines(img, [q[t.upper_lid[s]]], False, dark_lid, w2, _AA, SHIFT)
        cv2.polylines(img, [q[t.lower_lid[s]]], False, _shade(skin, 0.75), w1, _AA, SHIFT)
        poly(t.brows[s], _shade(hair, 0.9))
    # nose
    for side in t.nose_sides:
        cv2.polylines(img, [q[side]], False, _shade(skin, 0.86), w1, _AA, SHIFT)
    cv2.polylines(img, [q[t.nose_base]], False, _shade(skin, 0.7), w1, _AA, SHIFT)
    for n in t.nostrils:
        cv2.circle(img, tuple(q[n].tolist()), int(1.2 * k * scene.scale * 16), _shade(skin, 0.35), -1, _AA, SHIFT)
    # mouth: lips, dark interior, upper teeth filling part of the opening
    poly(t.outer_lip, ident.lips)
    lip_border = 0.5 * (cues[0]["lip_border"] + cues[1]["lip_border"])
    if lip_border > 0.05:
        cv2.polylines(img, [q[t.outer_lip]], True, _shade(ident.lips, 1 - 0.4 * min(lip_border, 1.0)), w1, _AA, SHIFT)
    poly(t.inner_lip, (60.0, 20.0, 25.0))
    opening = p[66] - p[62]
    if float(opening @ opening) > (1.2 * k) ** 2:
        upper = p[t.upper_inner]
        teeth = np.concatenate([upper, upper[::-1] + scene.teeth * opening])
        cv2.fillPoly(img, [_fixed(teeth)], (235.0, 232.0, 220.0), _AA, SHIFT)
    # hair over the forehead
    if ident.hair_style != 2:
        poly(t.hair_front, hair)


def _draw_clutter(img: np.ndarray, rows: np.ndarray) -> None:
    """Random rectangles, discs and thick lines behind the face (one row of uniforms each)."""
    size = img.shape[0]
    for r in rows:
        colour = tuple(float(c) for c in 255 * r[5:8])
        x0, y0, x1, y1 = (r[1:5] * 1.4 - 0.2) * size
        kind = int(r[0] * 3)
        if kind == 0:
            box = _fixed(np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]]))
            cv2.fillPoly(img, [box], colour, _AA, SHIFT)
        elif kind == 1:
            radius = int(abs(x1 - x0) * 0.3 * 16) + 16
            cv2.circle(img, (int(x0 * 16), int(y0 * 16)), radius, colour, -1, _AA, SHIFT)
        else:
            thick = max(1, int(abs(y1 - y0) * 0.08))
            cv2.line(img, (int(x0 * 16), int(y0 * 16)), (int(x1 * 16), int(y1 * 16)), colour, thick, _AA, SHIFT)


_UNIT_CIRCLE = np.stack([np.cos(np.linspace(0, 2 * np.pi, 20, endpoint=False)),
                         np.sin(np.linspace(0, 2 * np.pi, 20, endpoint=False))], axis=1)


def _draw_occluder(img: np.ndarray, p: np.ndarray, irises: np.ndarray, scene: Scene, k: float) -> None:
    """Glasses, sunglasses, a hand or a surgical mask over the finished face."""
    kind, u = scene.occluder, scene.occluder_params
    t = TEMPLATE
    ks = k * scene.scale
    if kind in ("glasses", "sunglasses"):
        frame = tuple(float(c) for c in 20 + 80 * u[:3])
        centres = irises
        radius = (8.5 + 1.5 * u[3]) * ks
        for c in centres:
            ring = _fixed(c + radius * _UNIT_CIRCLE * np.array([1.0, 0.8]))
            if kind == "sunglasses":
                cv2.fillPoly(img, [ring], (25.0, 25.0, 30.0), _AA, SHIFT)
            cv2.polylines(img, [ring], True, frame, max(1, round(1.5 * ks)), _AA, SHIFT)
        bridge = _fixed(np.array([centres[0] + (radius, 0), centres[1] - (radius, 0)]))
        cv2.polylines(img, [bridge], False, frame, max(1, round(1.5 * ks)), _AA, SHIFT)
    elif kind == "mask":
        colour = (200.0 + 40 * u[0], 215.0 + 30 * u[0], 235.0) if u[1] < 0.7 else tuple(60 + 120 * u[2:5])
        cv2.fillPoly(img, [_fixed(p[t.mask])], colour, _AA, SHIFT)
        mid, down = 0.5 * (p[30] + p[8]), (p[8] - p[30]) / 5
        for j in range(3):  # pleats
            line = np.array([p[3 + j], mid + (j - 1) * down, p[13 - j]])
            cv2.polylines(img, [_fixed(line)], False, _shade(colour, 0.85), 1, _AA, SHIFT)
    elif kind == "hand":
        skin = tuple(_palette(_SKIN_TONES, float(u[0])))
        centre = np.array([CENTER + 52 * (u[1] - 0.5), 86 + 22 * (u[2] - 0.5)])
        angle = (u[3] - 0.5) * 1.6
        rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        palm = centre + (_UNIT_CIRCLE * np.array([15.0, 12.0])) @ rot.T
        fingers = [centre + np.array([[dx, -6.0], [dx * 1.1, -30.0 + abs(dx) * 0.5]]) @ rot.T
                   for dx in (-10.5, -3.5, 3.5, 10.5)]
        cv2.fillPoly(img, [_fixed(_camera(palm, scene, img.shape[0], yaw=False))], skin, _AA, SHIFT)
        width = max(1, round(6.5 * ks))
        for f in fingers:
            cv2.polylines(img, [_fixed(_camera(f, scene, img.shape[0], yaw=False))], False, skin, width, _AA, SHIFT)


@functools.lru_cache(maxsize=16)
def _grids(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Coordinate grids in [-1, 1] and a fixed bank of Gaussian noise for images of side ``size``."""
    ramp = np.linspace(-1, 1, size, dtype=np.float32)
    noise = np.random.default_rng(20240611).standard_normal((size + 64, size + 64, 3), dtype=np.float32)
    return ramp[None, :], ramp[:, None], noise


def _photometric(img: np.ndarray, scene: Scene, k: float) -> np.ndarray:
    """Blur, then colour cast x brightness x lighting gradient, plus noise (float32), back to uint8."""
    if scene.blur > 0.3:
        img = cv2.GaussianBlur(img, (0, 0), scene.blur * k)
    size = img.shape[0]
    gx, gy, bank = _grids(size)
    light = 1 + gx * np.float32(scene.gradient[0]) + gy * np.float32(scene.gradient[1])  # (size, size)
    gain = np.float32(scene.brightness) * np.array(scene.colour_gain, np.float32)
    out = img.astype(np.float32)
    cv2.multiply(out, cv2.merge([light * gain[0], light * gain[1], light * gain[2]]), out)
    if scene.noise > 0.5:
        oy, ox = scene.noise_offset
        cv2.scaleAdd(bank[oy: oy + size, ox: ox + size], float(scene.noise), out, out)
    np.clip(out, 0, 255, out=out)
    return out.astype(np.uint8)


# ----------------------------------------------------------------------------------------------
# Regions, boxes, masks, and the one render function
# ----------------------------------------------------------------------------------------------


def _region_polygons(derived: np.ndarray) -> dict[str, list[np.ndarray]]:
    """Float polygons (output pixels) of each region in :data:`REGIONS`, from the derived points."""
    return {name: [derived[sl] for sl in slices] for name, slices in TEMPLATE.region_slices.items()}


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
    ``labels``, ``true_labels`` and ``identities`` are cheap arrays computed without rendering.
    ``cache_dir`` stores each rendered item as an .npz file and reads it back next time.
    """

    def __init__(self, n: int, seed: int = 0, difficulty: str = "lab", size: int = 112, grayscale: bool = False,
                 num_classes: int = 7, label_noise: float = 0.0, n_identities: int | None = None,
                 transform: Callable[[dict], Any] | None = None, with_masks: bool = True,
                 cache_dir: str | Path | None = None) -> None:
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
        self.n, self.seed, self.difficulty, self.size = int(n), int(seed), difficulty, int(size)
        self.grayscale, self.num_classes, self.label_noise = bool(grayscale), num_classes, float(label_noise)
        self.n_identities, self.transform, self.with_masks = int(n_identities), transform, bool(with_masks)
        self.identities = np.random.default_rng([seed, 2]).integers(0, n_identities, size=n)
        self.true_labels = np.random.default_rng([seed, 5]).integers(0, num_classes, size=n)
        rng = np.random.default_rng([seed, 6])
        flip = rng.random(n) < label_noise
        offset = rng.integers(1, num_classes, size=n)
        self.labels = np.where(flip, (self.true_labels + offset) % num_classes, self.true_labels)
        self.cache_dir = None
        if cache_dir is not None:
            key = (f"synthfaces_s{seed}_{difficulty}_{size}{'g' if grayscale else 'c'}_k{num_classes}"
                   f"_ln{label_noise:g}_id{n_identities}_m{int(with_masks)}")
            self.cache_dir = Path(cache_dir) / key
            self.cache_dir.mkdir(parents=True, exist_ok=True)

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

    def render_item(self, i: int, **overrides: Any) -> dict[str, Any]:
        """Render sample i (no cache, no transform); keyword arguments override fields of its
        :class:`Scene`, e.g. ``render_item(i, occluder="mask")``: the same face with a mask
        (occluders need ``difficulty="wild"``, whose scenes carry the occluder parameters)."""
        rng = np.random.default_rng([self.seed, 0, i])
        label = int(self.true_labels[i])
        left, right, intensity = sample_expression(rng, label, self.difficulty)
        valence, arousal = valence_arousal(label, intensity, DIFFICULTY[self.difficulty].va_noise
                                           * rng.standard_normal(2))
        scene = replace(sample_scene(rng, self.difficulty), **overrides)
        identity = int(self.identities[i])
        item = render(make_identity(self.seed, identity), left, right, scene, self.size, self.grayscale,
                      self.with_masks)
        item.update(label=int(self.labels[i]), true_label=label, intensity=intensity, valence=valence,
                    arousal=arousal, identity=identity, difficulty=self.difficulty, index=i)
        return item

    def sequence(self, identity: int, label: int, length: int, seed: int = 0) -> list[dict[str, Any]]:
        """A CK+-style clip of ``length`` frames: neutral onset to apex, with small head motion.

        Frame dicts have the same keys as ``ds[i]`` (``index`` = frame number, ``intensity``
        ramps from 0 to the apex intensity along a smoothstep). The transform is not applied.
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
        frames = []
        for f in range(length):
            t = f / (length - 1) if length > 1 else 1.0
            w = t * t * (3 - 2 * t)
            moved = replace(scene, roll=scene.roll + math.radians(1.5) * math.sin(2 * t + phase[0]),
                            shift=(scene.shift[0] + 1.2 * math.sin(1.5 * t + phase[1]),
                                   scene.shift[1] + 0.8 * math.sin(1.7 * t + phase[2])))
            item = render(ident, w * left, w * right, moved, self.size, self.grayscale, self.with_masks)
            valence, arousal = valence_arousal(label, w * apex, va_noise)
            item.update(label=label, true_label=label, intensity=w * apex, valence=valence, arousal=arousal,
                        identity=identity, difficulty=self.difficulty, index=f)
            frames.append(item)
        return frames

    def _load(self, i: int) -> dict[str, Any] | None:
        path = self.cache_dir / f"{i:07d}.npz"
        return _load_item(path) if path.exists() else None

    def __repr__(self) -> str:
        return (f"SynthFaces(n={self.n}, seed={self.seed}, difficulty={self.difficulty!r}, size={self.size}, "
                f"grayscale={self.grayscale}, num_classes={self.num_classes}, label_noise={self.label_noise}, "
                f"n_identities={self.n_identities})")


_SCALARS = {"label": int, "true_label": int, "intensity": float, "valence": float, "arousal": float,
            "identity": int, "index": int, "difficulty": str, "occluder": str}


def _save_item(path: Path, item: dict[str, Any]) -> None:
    """One item as an uncompressed .npz (boxes and masks flattened to ``box_<region>``/``mask_<region>``)."""
    arrays = {key: np.asarray(item[key]) for key in ("image", "aus", "au_presence", "landmarks", "points5")}
    arrays.update({key: np.asarray(item[key]) for key in _SCALARS})
    arrays.update({f"box_{r}": b for r, b in item["boxes"].items()})
    if item["masks"] is not None:
        arrays.update({f"mask_{r}": m for r, m in item["masks"].items()})
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)


def _load_item(path: Path) -> dict[str, Any]:
    """Inverse of :func:`_save_item`."""
    with np.load(path) as z:
        item = {key: z[key] for key in ("image", "aus", "au_presence", "landmarks", "points5")}
        item.update({key: cast(z[key].item()) for key, cast in _SCALARS.items()})
        item["boxes"] = {r: z[f"box_{r}"] for r in REGIONS}
        item["masks"] = {r: z[f"mask_{r}"] for r in REGIONS} if f"mask_{REGIONS[0]}" in z else None
    return item
