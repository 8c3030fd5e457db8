"""SynthFaces' face model: the canonical point set (68 iBUG landmarks + named extra points), the
action-unit displacements and the identity basis, all in the 112x112 canonical frame.

Used by :mod:`fer_utils.data.synthetic` (see its docstring for the whole renderer).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from fer_utils.labels import AUS, REGIONS

CANVAS = 112  #: side of the canonical frame, in pixels
CENTER = 56.0  #: x of the face's midline (and centre of the frame)
AU_INDEX: dict[int, int] = {au: k for k, au in enumerate(AUS)}


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

    def _group(self, *names: str) -> np.ndarray:
        """The point indices of the named groups, concatenated."""
        return np.array(sum((self.ps.groups[nm] for nm in names), []), int)

    def _identity_basis(self) -> np.ndarray:
        """(15, N*2): one displacement field per identity coefficient (1 s.d. each)."""
        idx = self._group
        outline = np.r_[np.arange(17), idx("skull_l", "skull_r", "skull_top", "hair_outer_l", "hair_outer_r",
                                            "hair_top", "hair_back_l", "hair_back_r", "ear_l", "ear_r",
                                            "hairline_l", "hairline_r", "mask_top_l", "mask_top_r")]
        parts = {"outline": outline, "eyes_l": np.r_[36:42, idx("crows_l", "under_eye_l")],
                 "eyes_r": np.r_[42:48, idx("crows_r", "under_eye_r")],
                 "brows": np.r_[17:27], "nose": np.r_[29:36], "mouth": np.r_[48:68]}
        fields = np.zeros((15, self.n_points, 2))
        self._shape_fields(fields, parts)
        self._feature_fields(fields, parts)
        return np.stack([self._apply_follow(f).ravel() for f in fields])

    def _shape_fields(self, fields: np.ndarray, parts: dict[str, np.ndarray]) -> None:
        """Identity coefficients 0-6: face width and length, jaw, eye spacing and size, brows."""
        p, n, idx = self.points, self.n_points, self._group
        x, y = p[:, 0] - CENTER, p[:, 1]
        outline, eyes_l, eyes_r = parts["outline"], parts["eyes_l"], parts["eyes_r"]
        brows, nose, mouth = parts["brows"], parts["nose"], parts["mouth"]
        inner = np.setdiff1d(np.arange(n), outline)
        d = fields[0]  # face width
        d[outline, 0] = 0.09 * x[outline]
        d[inner, 0] = 0.025 * x[inner]
        d = fields[1]  # face length (below the eyes)
        low = y > 46
        d[:, 1] = np.where(low, 0.06 * (y - 46), 0) * np.isin(np.arange(n), outline)
        d[mouth, 1] = 0.04 * (y[mouth] - 46)
        d[nose, 1] = 0.02 * (y[nose] - 46)
        d = fields[2]  # jaw squareness
        for k, s in ((3, 1.0), (4, 1.6), (5, 1.6), (6, 1.0)):
            d[k] = (-1.5 * s, 0.8 * s)
            d[16 - k] = (1.5 * s, 0.8 * s)
        d = fields[3]  # eye spacing
        d[eyes_l, 0], d[eyes_r, 0] = -1.5, 1.5
        d = fields[4]  # eye size
        for eye in (eyes_l, eyes_r):
            c = p[eye[:6]].mean(0)
            d[eye] = 0.12 * (p[eye] - c)
        d = fields[5]  # brow height
        d[brows, 1] = -2.2
        d = fields[6]  # brow thickness (explicit on the lower edge only)
        d[idx("brow_low_l", "brow_low_r"), 1] = 0.9

    def _feature_fields(self, fields: np.ndarray, parts: dict[str, np.ndarray]) -> None:
        """Identity coefficients 7-14: nose, mouth, lips, hairline, hair volume, eye and brow height."""
        x, y, idx = self.points[:, 0] - CENTER, self.points[:, 1], self._group
        eyes_l, eyes_r, brows, nose, mouth = (parts[k] for k in ("eyes_l", "eyes_r", "brows", "nose", "mouth"))
        d = fields[7]  # nose length
        d[nose, 1] = np.where(np.isin(nose, (29,)), 0.8, 2.0)
        d = fields[8]  # nose width
        for i, dx in ((31, -1.6), (32, -0.9)):
            d[i, 0], d[self.ps.mirror[i], 0] = dx, -dx
        d = fields[9]  # mouth width
        for i, dx in ((48, -2.4), (60, -2.2), (49, -1.2), (59, -1.2), (61, -0.6), (67, -0.6)):
            d[i, 0], d[self.ps.mirror[i], 0] = dx, -dx
        d = fields[10]  # lip thickness
        d[np.r_[49:54], 1] = -0.9
        d[np.r_[55:60], 1] = 1.2
        d = fields[11]  # mouth height
        d[mouth, 1] = 1.8
        d = fields[12]  # hairline
        d[idx("hairline_l", "hairline_r", "hairline_top"), 1] = 3.5
        d = fields[13]  # hair volume
        hair = idx("hair_outer_l", "hair_outer_r", "hair_top")
        d[hair] = 0.08 * np.c_[x[hair], y[hair] - 46]
        d = fields[14]  # vertical position of eyes and brows
        d[np.r_[eyes_l, eyes_r, brows], 1] = 1.5

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
        self._derived_rows({
            "brows": self.brows,
            "eyes": self.eyes,
            "nose": [ix((27,), g["nose_wing_r"], range(35, 30, -1), g["nose_wing_l"])],
            "mouth": [self.outer_lip],
            "cheeks": [ix((41, 40), g["nose_wing_l"], (31, 48, 4, 3, 2, 1)),
                       ix((46, 47), g["nose_wing_r"], (35, 54, 12, 13, 14, 15))],
        })

    def _derived_rows(self, regions: dict[str, list[np.ndarray]]) -> None:
        """DERIVED @ points: the region polygons grown or shrunk for the masks, iris centres, the 5 points."""
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
