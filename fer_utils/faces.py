"""Face detection (Haar cascades, MTCNN), five-point alignment and part crops.

Conventions used everywhere in the course:

* images are numpy ``uint8`` arrays, RGB ``(H, W, 3)`` or gray ``(H, W)``;
* a box is ``(x0, y0, x1, y1)`` in pixels (floats), ``x`` to the right, ``y`` down;
* five landmarks are a ``(5, 2)`` array of ``(x, y)`` in this order: left eye,
  right eye, nose tip, left mouth corner, right mouth corner, where "left" means
  **image-left** (the subject's right);
* when several faces are found they are sorted **largest box first** (ties: higher
  score first); :func:`detect_one` returns that first face.

Two detectors:

* ``"haar"``: Viola-Jones (2001) boosted cascade of Haar-like features, OpenCV's
  ``haarcascade_frontalface_default.xml`` (ships with ``opencv-python-headless<5``;
  OpenCV 5 ships no cascades). No landmarks; ``score`` is the number of merged
  neighbour windows (``detectMultiScale2``), not a probability.
* ``"mtcnn"``: Zhang et al. (2016), our port in :mod:`fer_utils.models.mtcnn` with
  facenet-pytorch's weights; ``score`` is the O-Net face probability and
  ``landmarks5`` is filled.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

Box = tuple[float, float, float, float]

#: ArcFace / InsightFace 5-point template for a 112x112 crop (x, y), same point order.
ARCFACE_TEMPLATE_112 = np.array([
    [38.2946, 51.6963],   # left eye (image-left)
    [73.5318, 51.5014],   # right eye
    [56.0252, 71.7366],   # nose tip
    [41.5493, 92.3655],   # left mouth corner
    [70.7299, 92.2041],   # right mouth corner
], dtype=np.float64)

#: iBUG 68-point indices: eyes 36-41 (image-left) and 42-47, nose tip 30, mouth corners 48, 54.
LEFT_EYE_68, RIGHT_EYE_68, NOSE_TIP_68, MOUTH_LEFT_68, MOUTH_RIGHT_68 = range(36, 42), range(42, 48), 30, 48, 54


@dataclass
class Face:
    """One detected face."""

    box: Box                               # (x0, y0, x1, y1)
    score: float                           # MTCNN probability, or Haar neighbour count
    landmarks5: np.ndarray | None = None   # (5, 2) for MTCNN, None for Haar
    method: str = ""

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def area(self) -> float:
        return self.width * self.height


class FaceNotFound(LookupError):
    """No face was detected in an image."""


# ------------------------------------------------------------------ helpers
def to_gray(image: np.ndarray) -> np.ndarray:
    """RGB or gray uint8 -> gray uint8."""
    return image if image.ndim == 2 else cv2.cvtColor(image[..., :3], cv2.COLOR_RGB2GRAY)


def to_rgb(image: np.ndarray) -> np.ndarray:
    """RGB or gray uint8 -> RGB uint8."""
    return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB) if image.ndim == 2 else image[..., :3]


def xywh_to_xyxy(box) -> Box:
    x, y, w, h = (float(v) for v in box)
    return (x, y, x + w, y + h)


def sort_faces(faces: list[Face]) -> list[Face]:
    """Largest box first; equal areas: higher score first."""
    return sorted(faces, key=lambda f: (-f.area, -f.score))


@lru_cache(maxsize=None)
def haar_cascade(name: str = "frontalface_default") -> cv2.CascadeClassifier:
    """OpenCV's ``haarcascade_<name>.xml`` (e.g. ``frontalface_default``, ``eye``, ``smile``)."""
    if not hasattr(cv2, "CascadeClassifier"):
        raise RuntimeError(f"OpenCV {cv2.__version__} has no CascadeClassifier: "
                           "install opencv-python-headless<5 (OpenCV 5 ships no Haar cascades)")
    path = cv2.data.haarcascades + f"haarcascade_{name}.xml"
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise FileNotFoundError(f"Haar cascade {path} missing or unreadable: "
                                "install opencv-python-headless<5, which ships the cascades")
    return cascade


@lru_cache(maxsize=4)
def mtcnn(min_face: float = 20.0, thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)):
    """A shared MTCNN detector per setting (weights loaded once per setting)."""
    from fer_utils.models.mtcnn import MTCNN
    from fer_utils.weights import load_mtcnn_nets

    return MTCNN(load_mtcnn_nets(), min_face, thresholds)


# ---------------------------------------------------------------- detection
def detect_haar(image: np.ndarray, scale_factor: float = 1.1, min_neighbors: int = 5,
                min_size: int = 30, max_size: int | None = None) -> list[Face]:
    """Viola-Jones faces: slide the cascade over an image pyramid (step ``scale_factor``),
    keep groups of at least ``min_neighbors`` overlapping hits; faces of ``min_size`` to
    ``max_size`` pixels (None: no upper bound)."""
    largest = (max_size, max_size) if max_size else (0, 0)   # (0, 0): OpenCV's "no upper bound"
    boxes, neighbours = haar_cascade("frontalface_default").detectMultiScale2(
        to_gray(image), scaleFactor=scale_factor, minNeighbors=min_neighbors,
        minSize=(min_size, min_size), maxSize=largest)
    return sort_faces([Face(xywh_to_xyxy(b), float(n), None, "haar") for b, n in zip(boxes, neighbours)])


def detect_mtcnn(image: np.ndarray, min_face: float = 20.0, thresholds=(0.6, 0.7, 0.7)) -> list[Face]:
    """MTCNN faces with five landmarks (see :mod:`fer_utils.models.mtcnn`)."""
    boxes, scores, points = mtcnn(float(min_face), tuple(thresholds)).detect(to_rgb(image))
    return sort_faces([Face(tuple(float(v) for v in b), float(s), p, "mtcnn")
                       for b, s, p in zip(boxes, scores, points)])


def mtcnn_stages(image: np.ndarray, min_face: float = 20.0, thresholds=(0.6, 0.7, 0.7)) -> dict[str, np.ndarray]:
    """MTCNN's intermediate outputs: P-Net ``candidates``, R-Net ``survivors`` (rows
    ``x1, y1, x2, y2, score``), O-Net ``boxes`` and ``points`` (n, 5, 2); see
    :meth:`fer_utils.models.mtcnn.MTCNN.stages`. Rows are not sorted by size."""
    return mtcnn(float(min_face), tuple(thresholds)).stages(to_rgb(image))


def detect(image: np.ndarray, method: str = "mtcnn", **kwargs) -> list[Face]:
    """All faces, largest first. ``method``: ``"haar"`` or ``"mtcnn"``; kwargs go to the detector."""
    if method == "haar":
        return detect_haar(image, **kwargs)
    if method == "mtcnn":
        return detect_mtcnn(image, **kwargs)
    raise ValueError(f"method must be 'haar' or 'mtcnn', got {method!r}")


def detect_near(image: np.ndarray, boxes: list[Box], method: str = "haar", margin: float = 0.5,
                scales: tuple[float, float] = (0.5, 2.0), **kwargs) -> list[Face]:
    """Faces searched only around known boxes (a video's faces of the previous frame), largest first.

    Each box of side ``s = max(w, h)`` is grown by ``margin * s`` on every side (clipped to the image)
    and searched for faces of ``scales[0] * s`` to ``scales[1] * s`` pixels, never smaller than the
    detector's ``min_size`` / ``min_face`` in ``kwargs``. Most of a detector's work is at the small
    scales of its image pyramid, which this skips: a face that moved or changed size by less than
    that between two frames is found at a fraction of the cost. A face that appears elsewhere is not:
    :mod:`fer_utils.cli.fer_predict` searches the whole frame every few frames (``--redetect``) and
    whenever this finds nothing. Hits of two regions that overlap (IoU > 0.5) are merged.
    """
    h, w = image.shape[:2]
    found: list[Face] = []
    for x0, y0, x1, y1 in boxes:
        side = max(x1 - x0, y1 - y0)
        left, top = int(max(0.0, x0 - margin * side)), int(max(0.0, y0 - margin * side))
        right, bottom = int(min(w, x1 + margin * side)), int(min(h, y1 + margin * side))
        if right - left < 2 or bottom - top < 2:
            continue
        roi = np.ascontiguousarray(image[top:bottom, left:right])
        if method == "haar":
            smallest = max(int(kwargs.get("min_size", 30)), int(scales[0] * side))
            hits = detect_haar(roi, **{**kwargs, "min_size": smallest, "max_size": int(scales[1] * side) + 1})
        elif method == "mtcnn":
            hits = detect_mtcnn(roi, **{**kwargs, "min_face": max(float(kwargs.get("min_face", 20.0)),
                                                                    scales[0] * side)})
        else:
            raise ValueError(f"method must be 'haar' or 'mtcnn', got {method!r}")
        for face in hits:
            bx0, by0, bx1, by1 = face.box
            moved = Face((bx0 + left, by0 + top, bx1 + left, by1 + top), face.score,
                         None if face.landmarks5 is None else face.landmarks5 + np.array([left, top]), face.method)
            if all(iou(moved.box, other.box) <= 0.5 for other in found):
                found.append(moved)
    return sort_faces(found)


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two ``(x0, y0, x1, y1)`` boxes: ``|a ∩ b| / |a ∪ b|`` (0 when both are empty)."""
    iw, ih = min(a[2], b[2]) - max(a[0], b[0]), min(a[3], b[3]) - max(a[1], b[1])
    inter = max(0.0, iw) * max(0.0, ih)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def detect_one(image: np.ndarray, name: str = "image", method: str = "mtcnn", **kwargs) -> Face:
    """The largest face; raises :class:`FaceNotFound` naming ``name`` when there is none."""
    faces = detect(image, method, **kwargs)
    if not faces:
        h, w = image.shape[:2]
        raise FaceNotFound(f"no face found in {name!r} ({w}x{h}) by the {method} detector")
    return faces[0]


def _search(image: np.ndarray, box: Box, top: float, bottom: float, cascade: str,
            scale_factor: float, min_neighbors: int) -> list[Box]:
    """Run ``cascade`` inside the rows ``[top, bottom]`` (fractions) of a face box; image coords."""
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    h = y1 - y0
    ry0, ry1 = y0 + int(top * h), y0 + int(bottom * h)
    roi = to_gray(image)[max(ry0, 0):ry1, max(x0, 0):x1]
    if roi.size == 0:
        return []
    hits = haar_cascade(cascade).detectMultiScale(roi, scaleFactor=scale_factor, minNeighbors=min_neighbors)
    ox, oy = max(x0, 0), max(ry0, 0)
    return [(float(x + ox), float(y + oy), float(x + w + ox), float(y + hh + oy)) for x, y, w, hh in hits]


def detect_eyes(image: np.ndarray, face_box: Box, scale_factor: float = 1.1, min_neighbors: int = 5) -> list[Box]:
    """``haarcascade_eye`` in the upper half of a face box; boxes sorted left to right."""
    return sorted(_search(image, face_box, 0.0, 0.5, "eye", scale_factor, min_neighbors))


def detect_smile(image: np.ndarray, face_box: Box, scale_factor: float = 1.7, min_neighbors: int = 20) -> list[Box]:
    """``haarcascade_smile`` in the lower half of a face box (strict settings: few false hits,
    but it also misses smiles; it finds none on the smiling astronaut)."""
    return _search(image, face_box, 0.5, 1.0, "smile", scale_factor, min_neighbors)


# ---------------------------------------------------------------- alignment
def landmarks68_to_5(lm68: np.ndarray) -> np.ndarray:
    """iBUG 68 points -> the 5 points (eye centres, nose tip, mouth corners)."""
    lm68 = np.asarray(lm68, dtype=np.float64)
    return np.stack([lm68[list(LEFT_EYE_68)].mean(0), lm68[list(RIGHT_EYE_68)].mean(0),
                     lm68[NOSE_TIP_68], lm68[MOUTH_LEFT_68], lm68[MOUTH_RIGHT_68]])


def similarity_matrix(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity ``dst ~ s R src + t`` (Umeyama 1991) as a 2x3 matrix ``[sR | t]``.

    scikit-image's ``SimilarityTransform.from_estimate`` solves it: with centred points
    ``X = src - mu_s``, ``Y = dst - mu_d`` and the SVD ``Y^T X / n = U S V^T``, ``R = U D V^T`` with
    ``D = diag(1, +-1)`` (no reflection), ``s = tr(S D) / var(X)``, ``t = mu_d - s R mu_s``
    (notebook 01 derives it and checks it against this function).
    """
    from skimage.transform import SimilarityTransform

    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    transform = SimilarityTransform.from_estimate(src, dst)
    if not transform:
        raise ValueError(f"no similarity fits these {len(src)} points (all equal or collinear?): {transform}")
    return transform.params[:2].copy()


def template(size: int = 112, zoom: float = 1.0) -> np.ndarray:
    """The ArcFace template scaled to ``size`` px; ``zoom < 1`` shrinks it around the centre
    (more context around the face)."""
    pts = ARCFACE_TEMPLATE_112 * (size / 112.0)
    centre = np.array([size / 2.0, size / 2.0])
    return centre + (pts - centre) * zoom


def alignment_matrix(landmarks5: np.ndarray, size: int = 112, zoom: float = 1.0) -> np.ndarray:
    """The 2x3 similarity that takes the 5 points onto the ArcFace template (for images, masks, points)."""
    return similarity_matrix(np.asarray(landmarks5, np.float64).reshape(5, 2), template(size, zoom))


def align(image: np.ndarray, landmarks5: np.ndarray, size: int = 112, zoom: float = 1.0) -> np.ndarray:
    """Warp the face so its 5 points land on the ArcFace template: ``(size, size[, 3])`` uint8."""
    matrix = alignment_matrix(landmarks5, size, zoom)
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def align_gray(image: np.ndarray, landmarks5: np.ndarray, size: int = 48, zoom: float = 1.0) -> np.ndarray:
    """Aligned gray ``(size, size)`` uint8 crop for FER2013-style models (48 or 64 px)."""
    return to_gray(align(image, landmarks5, size, zoom))


def align_sample(item: dict, size: int = 112) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A SynthFaces item aligned like RAF-DB's crops: its 5 points warped onto the ArcFace template.

    Returns the aligned image (size, size, 3) uint8 and its region masks warped the same way.
    """
    image = align(item["image"], item["points5"], size)
    matrix = alignment_matrix(item["points5"], size)
    masks = {name: cv2.warpAffine(np.asarray(m, np.uint8), matrix, (size, size), flags=cv2.INTER_NEAREST) > 0
             for name, m in (item.get("masks") or {}).items()}
    return image, masks


def fer_face_crop(gray: np.ndarray, box_xywh, offset: int = 10, size: int = 64) -> np.ndarray:
    """fer's preprocessing: square the box, enlarge it by ``offset`` px per side, resize.

    Outside the image the crop is filled, like fer, with the mean of the image's
    bottom two rows. Returns the ``(size, size)`` uint8 crop; the model reads it through
    ``fer_utils.data.to_model_tensor(crops, normalize="symmetric")`` ([-1, 1], as fer's ``x / 255 * 2 - 1``).
    """
    x, y, w, h = (int(v) for v in box_xywh)
    if h > w:  # fer's tosquare
        x, w = x - (h - w) // 2, h
    elif w > h:
        y, h = y - (w - h) // 2, w
    pad = offset + max(w, h)
    fill = float(gray[-2:].mean())
    padded = cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=fill)
    crop = padded[y - offset + pad:y + h + offset + pad, x - offset + pad:x + w + offset + pad]
    return cv2.resize(crop, (size, size))


# --------------------------------------------------------------- part crops
#: Square part crops, in units of the inter-ocular distance d: (centre, side).
#: eyes: midpoint of the eyes, side 1.6 d; nose: nose tip, side 0.9 d;
#: mouth: midpoint of the mouth corners, side 1.2 d.
PART_SIDES = {"eyes": 1.6, "nose": 0.9, "mouth": 1.2}


def part_boxes(landmarks: np.ndarray) -> dict[str, tuple[np.ndarray, float, float]]:
    """``{part: (centre (2,), side px, angle deg)}`` from 5 or 68 landmarks.

    The crops are rotated with the eye line (angle ``atan2(dy, dx)`` of right eye - left eye).
    """
    pts = np.asarray(landmarks, np.float64)
    pts = landmarks68_to_5(pts) if len(pts) == 68 else pts.reshape(5, 2)
    eye_vec = pts[1] - pts[0]
    d = float(np.hypot(*eye_vec))
    angle = float(np.degrees(np.arctan2(eye_vec[1], eye_vec[0])))
    centres = {"eyes": (pts[0] + pts[1]) / 2, "nose": pts[2], "mouth": (pts[3] + pts[4]) / 2}
    return {k: (c, PART_SIDES[k] * d, angle) for k, c in centres.items()}


def crop_square(image: np.ndarray, centre, side: float, angle: float, size: int | tuple[int, int]) -> np.ndarray:
    """The square of ``side`` px around ``centre``, rotated by ``angle``, resampled to size x size.

    ``size=(h, w)`` gives an h x w crop whose longer edge spans ``side`` px (same scale on both axes).
    """
    h, w = (size, size) if np.isscalar(size) else (int(size[0]), int(size[1]))
    rot = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), angle, max(h, w) / side)
    rot[:, 2] += np.array([w / 2.0, h / 2.0]) - np.asarray(centre, np.float64)
    return cv2.warpAffine(image, rot, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def part_crops(image: np.ndarray, landmarks: np.ndarray, size: int | dict = 32) -> dict[str, np.ndarray]:
    """``{"eyes", "nose", "mouth"}`` -> square crops ``(size, size[, 3])`` from 5 or 68 landmarks.

    ``size`` may also be ``{part: (h, w)}`` (e.g. MGLN's eyes 48 x 128): see :func:`crop_square`.
    """
    sizes = size if isinstance(size, dict) else dict.fromkeys(PART_SIDES, size)
    return {k: crop_square(image, c, side, angle, sizes[k]) for k, (c, side, angle) in part_boxes(landmarks).items()}


# ---------------------------------------------------- accuracy on SynthFaces
def _as_uint8(image) -> np.ndarray:
    """Dataset images (uint8 HxW[x3], or float/tensor CxHxW in [0, 1]) -> uint8 numpy."""
    arr = image.detach().cpu().numpy() if hasattr(image, "detach") else np.asarray(image)
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
        arr = arr.transpose(1, 2, 0)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.dtype != np.uint8:
        arr = np.clip(arr * (255.0 if arr.max() <= 1.0 else 1.0), 0, 255).round().astype(np.uint8)
    return arr


def _hit(face: Face, points: np.ndarray) -> bool:
    """A detection counts when its box contains the centre of the true landmarks."""
    cx, cy = points.mean(0)
    x0, y0, x1, y1 = face.box
    return x0 <= cx <= x1 and y0 <= cy <= y1


def evaluate_detectors(dataset, n: int = 50) -> dict:
    """Detection rate (Haar, MTCNN) and MTCNN 5-point NME on the first ``n`` items.

    An item needs ``image`` and ``points5`` (5, 2) (or ``landmarks`` (68, 2)).
    Detected = some face box contains the centre of the true points. For the
    largest such MTCNN face, ``NME = mean_k ||p_k - g_k|| / ||g_le - g_re||``
    (inter-ocular normalisation). Returns rates, mean/median NME and timings.
    """
    import time

    hits = {"haar": 0, "mtcnn": 0}
    seconds = {"haar": 0.0, "mtcnn": 0.0}
    nmes: list[float] = []
    n = min(n, len(dataset))
    for i in range(n):
        item = dataset[i]
        image = _as_uint8(item["image"])
        gt = np.asarray(item["points5"] if "points5" in item else landmarks68_to_5(item["landmarks"]), np.float64)
        for method in ("haar", "mtcnn"):
            t0 = time.perf_counter()
            faces = [f for f in detect(image, method) if _hit(f, gt)]
            seconds[method] += time.perf_counter() - t0
            hits[method] += bool(faces)
            if method == "mtcnn" and faces:
                err = np.linalg.norm(faces[0].landmarks5 - gt, axis=1).mean()
                nmes.append(float(err / np.linalg.norm(gt[0] - gt[1])))
    return {
        "n": n,
        "haar_detection_rate": hits["haar"] / max(n, 1),
        "mtcnn_detection_rate": hits["mtcnn"] / max(n, 1),
        "mtcnn_nme_mean": float(np.mean(nmes)) if nmes else float("nan"),
        "mtcnn_nme_median": float(np.median(nmes)) if nmes else float("nan"),
        "haar_ms_per_image": 1000 * seconds["haar"] / max(n, 1),
        "mtcnn_ms_per_image": 1000 * seconds["mtcnn"] / max(n, 1),
    }
