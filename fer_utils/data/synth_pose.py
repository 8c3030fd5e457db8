"""SynthFaces' pose in depth and misalignment: a 3-D face template (a depth per point), yaw about the
vertical axis with orthographic projection, and random similarity transforms of the rendered face.

3-D template
------------
Each horizontal slice of the head is a circle: at height ``y`` it has the face's half-width ``a(y)``
(read off the canonical outline: jaw and skull) and its front at the midline depth ``z_front(y)``
(forehead, nasion, upper lip and chin profile), so its centre is ``z_front(y) - a(y)``. A point on the
face surface at horizontal offset ``dx`` sits at angle ``t = asin(dx / a)`` on its slice, depth
``z = z_front - a + a cos t``, plus a "bump" where the face leaves the circle: the nose (tip 15
canonical pixels, about 26 mm, in front of the cheeks), lips, brow ridge, eye sockets. Depths are in
canonical pixels (1 px ~ 1.75 mm; +z towards the camera, the nose tip at 0, the ears ~ -53).

Points come in four kinds:

- ``surface``: rotated orthographically about a vertical axis at the mean depth of the 68 landmarks
  (so the landmark centroid stays put): ``x' = C + (x - C) cos(yaw) + (z - z_axis) sin(yaw)``.
  Surface points that turn past the far silhouette (their normal faces away: ``t > 90 - |yaw|`` on the
  far side) are hidden and slide onto the silhouette, so the far eye, brow, hairline and wrinkles
  narrow and then disappear into the outline instead of crossing it;
- ``outline`` (jaw contour 0-16, skull, hair silhouette): the frontal silhouette. A circle rotated
  about a vertical axis keeps its outline, so these points only translate by
  ``(z_centre - z_axis) sin(yaw)``: the 68-point contour stays on the visible boundary (the 2-D iBUG
  convention, not the 3-D one);
- ``ear``: rigid points at the side of the head (the far ear goes behind the face polygon);
- ``body`` (neck, clothes): they do not turn with the head and move with the head's centre.

Positive yaw turns the face towards image-right: its image-right half recedes (the far side) and
the nose moves right. The projection is orthographic (no perspective); identity and AU displacements
move points in x and y only, on the template's depths.

Misalignment
------------
A similarity transform of the rendered face in output pixels, about the image centre
``c = (size / 2, size / 2)``: rotation ``angle`` (degrees, positive = clockwise on screen, the
convention of :attr:`Scene.roll`), scale ``s`` and shift ``(dx, dy)``. It is folded into the scene's
camera (roll, scale, shift), so the face, its landmarks, boxes, masks and occluders move together and
nothing is resampled; the background and clutter stay where they are. Its 2x3 matrix ``M`` maps the
aligned face's output-pixel points ``p`` to the item's: ``M @ [p, 1]``.
"""
from __future__ import annotations

import functools
import math
from dataclasses import replace

import numpy as np

from fer_utils.data.synth_sample import Scene
from fer_utils.data.synth_template import CANVAS, CENTER, TEMPLATE

#: Midline depth of the face without the nose, by height: (y, z_front(y)) in canonical pixels.
_Z_FRONT = np.array([(0, -50), (6, -44), (12, -30), (17.5, -22), (25, -17), (33, -14), (43, -15), (55, -16),
                     (61.5, -15), (67, -12), (76, -10), (86, -11), (92, -12), (98, -13), (110, -20),
                     (120, -30)], float)
#: Landmarks (left half and midline; mirrored) that leave the slice circle: (landmark, bump in px).
_LANDMARK_BUMPS: dict[int, float] = {
    27: 1, 28: 5, 29: 9, 30: 15, 31: 3, 32: 5, 33: 4,
    **{i: -2 for i in range(36, 42)}, **{i: 1 for i in range(17, 22)},
    51: 4, 57: 4, 62: 4, 66: 4, 50: 3, 58: 3, 61: 3, 67: 3, 49: 2, 59: 2,
}
#: The same for extra points, by group (image-left list; the right group mirrors it).
_GROUP_BUMPS: dict[str, list[float]] = {
    "nostril": [5], "nose_wing": [1], "nose_side": [3, 5], "nose_wrinkle": [3, 4, 5],
    "nose_wrinkle_mid": [4, 6, 8], "lid_up": [-1] * 4, "lid_low": [-1] * 4, "brow_low": [1] * 5,
    "bulge_up": [3], "bulge_up_mid": [4], "bulge_low": [3], "bulge_low_mid": [4], "chin_mark": [1],
    "chin_mark_mid": [1],
}
_OUTLINE_GROUPS = ("skull", "skull_top", "hair_outer", "hair_top", "hair_back")
_EAR_GROUPS = ("ear",)
_BODY_GROUPS = ("neck", "clothes")
SURFACE, OUTLINE, EAR, BODY = 0, 1, 2, 3
MAX_YAW = 75.0  #: the largest yaw (degrees) the template is meant for
HIDE_NOSE_SIDE = 35.0  #: beyond this yaw the far side of the nose (its wall and nostril) faces away
CHEEK_TILT = 35.0  #: the cheeks face this many degrees sideways (their foreshortening with yaw)


def _group_indices(name: str) -> list[int]:
    g = TEMPLATE.ps.groups
    return [i for key in (name, name + "_l", name + "_r") if key in g for i in g[key]]


class _Depth:
    """Per-point kind, slice radius ``a``, slice centre depth ``zc`` and frontal depth ``z`` (canonical px)."""

    def __init__(self) -> None:
        pts, n = TEMPLATE.points, TEMPLATE.n_points
        x, y = pts[:, 0] - CENTER, pts[:, 1]
        self.kind = np.full(n, SURFACE)
        self.kind[:17] = OUTLINE
        self.kind[TEMPLATE.ps.groups["mask_top_l"][0]] = self.kind[TEMPLATE.ps.groups["mask_top_r"][0]] = OUTLINE
        for names, kind in ((_OUTLINE_GROUPS, OUTLINE), (_EAR_GROUPS, EAR), (_BODY_GROUPS, BODY)):
            for name in names:
                self.kind[_group_indices(name)] = kind
        # half-width of the face by height, from the left jaw (0-8), the left skull arc and the skull top
        rim = np.r_[np.arange(9), TEMPLATE.ps.groups["skull_l"], TEMPLATE.ps.groups["skull_top"]]
        order = np.argsort(y[rim])
        half = np.interp(y, y[rim][order], np.abs(x[rim][order]), left=0.0, right=0.0)
        self.a = np.where(self.kind == OUTLINE, np.abs(x), np.maximum(half, np.abs(x) + 1.0))
        z_front = np.interp(y, _Z_FRONT[:, 0], _Z_FRONT[:, 1])
        self.zc = z_front - half  # slice centre (outline, ear and body points use the face's slice)
        bump = np.zeros(n)
        for i, b in _LANDMARK_BUMPS.items():
            bump[i] = bump[TEMPLATE.ps.mirror[i]] = b
        for name, values in _GROUP_BUMPS.items():
            for side in ("_l", "_r", ""):
                for i, b in zip(TEMPLATE.ps.groups.get(name + side, []), values):
                    bump[i] = b
        self.t = np.arcsin(np.clip(x / np.where(self.a > 0, self.a, 1.0), -1, 1))  # angle on the slice
        surface = self.kind == SURFACE
        self.z = np.where(surface, self.zc + self.a * np.cos(self.t) + bump, self.zc)
        self.z_axis = float(self.z[:68].mean())
        self.dx = x


DEPTH = _Depth()


@functools.lru_cache(maxsize=8)
def yaw_coefficients(yaw_deg: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(g, h, hidden)`` per point: ``x' = C + g (x - C) + h`` in canonical pixels; ``hidden`` marks the
    surface points that turned past the far silhouette (they sit on it)."""
    d = DEPTH
    psi = math.radians(yaw_deg)
    c, s, side = math.cos(psi), math.sin(psi), math.copysign(1.0, yaw_deg)
    g = np.full(len(d.z), c)
    h = (d.z - d.z_axis) * s
    hidden = (d.kind == SURFACE) & (side * d.t > math.pi / 2 - abs(psi))
    # hidden surface points: on the silhouette, x' = C + side * a + (zc - z_axis) sin, scaled with the face
    g[hidden] = d.a[hidden] / np.abs(d.dx[hidden])
    h[hidden] = (d.zc[hidden] - d.z_axis) * s
    rigid = d.kind == OUTLINE  # the frontal silhouette of a circle only translates
    g[rigid], h[rigid] = 1.0, (d.zc[rigid] - d.z_axis) * s
    ear = d.kind == EAR
    h[ear] = (d.zc[ear] - d.z_axis) * s
    body = d.kind == BODY
    g[body], h[body] = 1.0, (d.zc[TEMPLATE.ps.groups["neck_l"][0]] - d.z_axis) * s
    return g, h, hidden


def yaw_points(pts: np.ndarray, yaw_deg: float) -> np.ndarray:
    """(N, 2) canonical points turned by ``yaw_deg`` about the vertical axis (a new array)."""
    g, h, _ = yaw_coefficients(float(yaw_deg))
    out = pts.copy()
    out[:, 0] = CENTER + g * (pts[:, 0] - CENTER) + h
    return out


def side_visibility(yaw_deg: float, tilt_deg: float) -> tuple[float, float]:
    """Foreshortening (image-left, image-right) of a patch on each side whose normal is turned ``tilt_deg``
    sideways: 1 at frontal, more on the near side, 0 once it faces away."""
    psi, tilt = math.radians(yaw_deg), math.radians(tilt_deg)
    return (max(0.0, math.cos(tilt - psi) / math.cos(tilt)), max(0.0, math.cos(tilt + psi) / math.cos(tilt)))


# ----------------------------------------------------------------------------------------------
# Misalignment: a similarity transform of the rendered face
# ----------------------------------------------------------------------------------------------


def misalignment_matrix(params: tuple[float, float, float, float], size: int) -> np.ndarray:
    """(2, 3) float64 matrix of ``(angle_deg, scale, dx, dy)`` about the image centre, output pixels."""
    angle, scale, dx, dy = params
    th = math.radians(angle)
    a = scale * np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
    c = np.array([size / 2, size / 2])
    return np.c_[a, c - a @ c + np.array([dx, dy])]


def misalign_scene(scene: Scene, params: tuple[float, float, float, float], size: int) -> Scene:
    """``scene`` whose camera is followed by the similarity ``params`` (see :func:`misalignment_matrix`)."""
    angle, scale, dx, dy = params
    th = math.radians(angle)
    k = size / CANVAS
    sx, sy = scene.shift
    shift = (scale * (math.cos(th) * sx - math.sin(th) * sy) + dx / k,
             scale * (math.sin(th) * sx + math.cos(th) * sy) + dy / k)
    return replace(scene, roll=scene.roll + th, scale=scene.scale * scale, shift=shift)
