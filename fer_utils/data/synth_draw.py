"""SynthFaces' drawing: canonical points -> output pixels (one camera transform), then OpenCV
polygons and anti-aliased lines in fixed point, occluders, clutter and the photometric nuisances.
"""
from __future__ import annotations

import functools
import math

import cv2
import numpy as np

from fer_utils.data.synth_pose import CHEEK_TILT, HIDE_NOSE_SIDE, side_visibility, yaw_points
from fer_utils.data.synth_sample import SKIN_TONES, Identity, Scene, _palette
from fer_utils.data.synth_template import AU_INDEX, CANVAS, CENTER, TEMPLATE

SHIFT = 4  #: fixed-point bits for OpenCV drawing (coordinates * 16)


# ----------------------------------------------------------------------------------------------
# Geometry: canonical points -> output pixels
# ----------------------------------------------------------------------------------------------


def face_points(ident: Identity, aus_left: np.ndarray, aus_right: np.ndarray, scene: Scene, size: int) -> np.ndarray:
    """(N, 2) float points in output pixels: identity + AUs, yaw (3-D turn if ``scene.yaw_deg``, else the
    yaw-like squash), then the camera."""
    pts = (ident.points + aus_left @ TEMPLATE.au_left + aus_right @ TEMPLATE.au_right).reshape(-1, 2)
    if scene.yaw_deg != 0.0:
        return _camera(yaw_points(pts, scene.yaw_deg), scene, size, yaw=scene.yaw != 0.0)
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


def _poly(img: np.ndarray, q: np.ndarray, idx, colour) -> None:
    """A filled, anti-aliased polygon through the fixed-point points ``q[idx]``."""
    cv2.fillPoly(img, [q[idx]], colour, _AA, SHIFT)


def _draw_head_and_eyes(img: np.ndarray, q: np.ndarray, irises: np.ndarray, ident: Identity, scene: Scene,
                        cues: tuple[dict, dict], k: float) -> None:
    """Hair behind, clothes, neck, ears, face; eyes (sclera, iris, pupil, lid covers); raised cheeks."""
    t, skin = TEMPLATE, ident.skin
    if ident.hair_style == 1:
        _poly(img, q, t.hair_back, ident.hair)
    _poly(img, q, t.clothes, scene.clothes)
    _poly(img, q, t.neck, _shade(skin, 0.85))
    near = None if abs(scene.yaw_deg) < 10 else int(scene.yaw_deg < 0)  # the ear turned towards the camera
    for s, ear in enumerate(t.ears):
        if s != near:
            _poly(img, q, ear, _shade(skin, 0.93))
    _poly(img, q, t.face, skin)
    if near is not None:
        _poly(img, q, t.ears[near], _shade(skin, 0.93))
    turned = scene.yaw_deg != 0.0
    widths = side_visibility(scene.yaw_deg, CHEEK_TILT) if turned else (1.0, 1.0)
    # eyes: sclera, iris, pupil, then skin-coloured lid covers clip the iris to the lids
    iris_r = int(ident.iris_radius * k * scene.scale * 16)
    gaze = np.array(scene.gaze) * k * scene.scale
    for s in range(2):
        _poly(img, q, t.eyes[s], (238.0, 236.0, 230.0))
        centre = _fixed(irises[s] + gaze)
        if turned:  # the iris turns with the eyeball: an ellipse
            fore = math.cos(math.radians(scene.yaw_deg))
            for r, colour in ((iris_r, ident.iris), (iris_r // 2, (15.0, 12.0, 12.0))):
                cv2.ellipse(img, tuple(centre.tolist()), (int(r * fore), r), math.degrees(scene.roll), 0, 360,
                            colour, -1, _AA, SHIFT)
        else:
            cv2.circle(img, tuple(centre.tolist()), iris_r, ident.iris, -1, _AA, SHIFT)
            cv2.circle(img, tuple(centre.tolist()), iris_r // 2, (15.0, 12.0, 12.0), -1, _AA, SHIFT)
        _poly(img, q, t.lid_up[s], skin)
        _poly(img, q, t.lid_low[s], skin)
    # cheeks (AU6/AU12 raise them): a lighter ellipse
    for s in range(2):
        strength = cues[s]["cheek"]
        if strength > 0.05 and widths[s] > 0.15:
            axes = (int(7 * k * scene.scale * 16 * widths[s]), int(4.5 * k * scene.scale * 16))
            cv2.ellipse(img, tuple(q[t.cheek[s]].tolist()), axes, math.degrees(scene.roll), 0, 360,
                        _shade(skin, 1 + 0.12 * min(strength, 1.0)), -1, _AA, SHIFT)


def _draw_wrinkles(img: np.ndarray, q: np.ndarray, skin: tuple, cues: tuple[dict, dict], w1: int) -> None:
    """Wrinkles and folds: one side's cues per side, the midline ones from both sides' mean."""
    t = TEMPLATE
    for s in range(2):
        c = cues[s]
        for j in range(2):
            _cue(img, q, t.forehead_side[j][s], skin, c["forehead_side"], w1)
        _cue(img, q, t.furrow[s], skin, c["furrow"], w1)
        for line in t.crows[s]:
            _cue(img, q, line, skin, c["crows"], w1)
        for name, key in (("under_eye", "under_eye"), ("folds", "fold"), ("marionette", "marionette"),
                          ("dimples", "dimple"), ("stretch", "stretch")):
            _cue(img, q, getattr(t, name)[s], skin, c[key], w1)
    both = {key: 0.5 * (cues[0][key] + cues[1][key]) for key in ("forehead_mid", "nose", "chin", "bulge")}
    for line in t.forehead_mid:
        _cue(img, q, line, skin, both["forehead_mid"], w1)
    for line in t.nose_wrinkles:
        _cue(img, q, line, skin, both["nose"], w1)
    _cue(img, q, t.chin, skin, both["chin"], w1)
    for line in t.bulges:
        _cue(img, q, line, skin, both["bulge"], w1)


def _draw_lids_brows_nose(img: np.ndarray, q: np.ndarray, ident: Identity, scene: Scene, k: float,
                          w1: int, w2: int) -> None:
    """Lid lines, brows, the sides and base of the nose and the nostrils."""
    t, skin = TEMPLATE, ident.skin
    dark_lid = _shade(skin, 0.45)
    for s in range(2):
        cv2.polylines(img, [q[t.upper_lid[s]]], False, dark_lid, w2, _AA, SHIFT)
        cv2.polylines(img, [q[t.lower_lid[s]]], False, _shade(skin, 0.75), w1, _AA, SHIFT)
        _poly(img, q, t.brows[s], _shade(ident.hair, 0.9))
    far = int(scene.yaw_deg > 0) if abs(scene.yaw_deg) > HIDE_NOSE_SIDE else None  # that side faces away
    for s, side in enumerate(t.nose_sides):
        if s != far:
            cv2.polylines(img, [q[side]], False, _shade(skin, 0.86), w1, _AA, SHIFT)
    cv2.polylines(img, [q[t.nose_base]], False, _shade(skin, 0.7), w1, _AA, SHIFT)
    for s, n in enumerate(t.nostrils):
        if s != far:
            cv2.circle(img, tuple(q[n].tolist()), int(1.2 * k * scene.scale * 16), _shade(skin, 0.35), -1, _AA,
                       SHIFT)


def _draw_mouth(img: np.ndarray, p: np.ndarray, q: np.ndarray, ident: Identity, scene: Scene,
                cues: tuple[dict, dict], k: float, w1: int) -> None:
    """Lips (a darker border for AU23), dark interior, upper teeth filling part of the opening."""
    t = TEMPLATE
    _poly(img, q, t.outer_lip, ident.lips)
    lip_border = 0.5 * (cues[0]["lip_border"] + cues[1]["lip_border"])
    if lip_border > 0.05:
        cv2.polylines(img, [q[t.outer_lip]], True, _shade(ident.lips, 1 - 0.4 * min(lip_border, 1.0)), w1, _AA, SHIFT)
    _poly(img, q, t.inner_lip, (60.0, 20.0, 25.0))
    opening = p[66] - p[62]
    if float(opening @ opening) > (1.2 * k) ** 2:
        upper = p[t.upper_inner]
        teeth = np.concatenate([upper, upper[::-1] + scene.teeth * opening])
        cv2.fillPoly(img, [_fixed(teeth)], (235.0, 232.0, 220.0), _AA, SHIFT)


def _draw_face(img: np.ndarray, p: np.ndarray, irises: np.ndarray, ident: Identity, scene: Scene,
               aus_left: np.ndarray, aus_right: np.ndarray, k: float) -> None:
    """Draw one face into ``img`` from its output-pixel points ``p`` (N, 2) and iris centres (2, 2).

    ``k`` is output pixels per canonical pixel. Back to front: head and eyes, wrinkles, lids, brows
    and nose, mouth, then the hair over the forehead.
    """
    q = _fixed(p)
    w1 = max(1, round(k))  # thin line
    w2 = max(1, round(1.6 * k))  # lid line
    cues = (_cue_strengths(aus_left, ident.age), _cue_strengths(aus_right, ident.age))
    if scene.yaw_deg != 0.0:  # wrinkles on a side that turns away fade with its foreshortening
        seen = side_visibility(scene.yaw_deg, CHEEK_TILT)
        cues = tuple({key: v * min(1.0, f) for key, v in c.items()} for c, f in zip(cues, seen))
    _draw_head_and_eyes(img, q, irises, ident, scene, cues, k)
    _draw_wrinkles(img, q, ident.skin, cues, w1)
    _draw_lids_brows_nose(img, q, ident, scene, k, w1, w2)
    _draw_mouth(img, p, q, ident, scene, cues, k, w1)
    if ident.hair_style != 2:
        _poly(img, q, TEMPLATE.hair_front, ident.hair)


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
        shape = np.array([math.cos(math.radians(scene.yaw_deg)), 0.8]) if scene.yaw_deg else np.array([1.0, 0.8])
        for c in centres:
            ring = _fixed(c + radius * _UNIT_CIRCLE * shape)
            if kind == "sunglasses":
                cv2.fillPoly(img, [ring], (25.0, 25.0, 30.0), _AA, SHIFT)
            cv2.polylines(img, [ring], True, frame, max(1, round(1.5 * ks)), _AA, SHIFT)
        bridge = _fixed(np.array([centres[0] + (radius * shape[0], 0), centres[1] - (radius * shape[0], 0)]))
        cv2.polylines(img, [bridge], False, frame, max(1, round(1.5 * ks)), _AA, SHIFT)
    elif kind == "mask":
        colour = (200.0 + 40 * u[0], 215.0 + 30 * u[0], 235.0) if u[1] < 0.7 else tuple(60 + 120 * u[2:5])
        cv2.fillPoly(img, [_fixed(p[t.mask])], colour, _AA, SHIFT)
        mid, down = 0.5 * (p[30] + p[8]), (p[8] - p[30]) / 5
        for j in range(3):  # pleats
            line = np.array([p[3 + j], mid + (j - 1) * down, p[13 - j]])
            cv2.polylines(img, [_fixed(line)], False, _shade(colour, 0.85), 1, _AA, SHIFT)
    elif kind == "hand":
        skin = tuple(_palette(SKIN_TONES, float(u[0])))
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
