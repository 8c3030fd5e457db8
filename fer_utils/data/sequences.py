"""Expression sequences as MGLN reads them: three frames (onset, middle, peak) and part crops.

Yu et al. (2020, MGLN) take, from each CK+ / Oulu-CASIA sequence, the first frame (onset), a
middle frame and the last frame (peak), cut a 128x128 face and, from 68 dlib landmarks, the eyes
(h 48 x w 128), nose (64 x 32) and mouth (32 x 64), grey images tiled to 3 channels. Here the
crops come from :func:`fer_utils.faces.part_crops` (one part-crop function for the course):
boxes around the eyes' midpoint, the nose tip and the mouth's midpoint, rotated with the eye line,
whose longer edge is 1.6 / 0.9 / 1.2 inter-ocular distances, at the requested (h, w).

Sources:

- :func:`synth_sequences`: SynthFaces clips (``SynthFaces.sequence``: neutral onset to apex);
  a clip of 3 frames is exactly the first / middle / last frames of any odd-length clip.
- :func:`from_samples`: frame samples of ``formats.read_ckplus`` / ``formats.read_oulu``
  grouped by sequence; landmarks from the sample (CK+ ``Landmarks/``) or, when missing, from
  MTCNN's five points (Oulu-CASIA ships none).

Every source returns the same dict of uint8 arrays (``N`` sequences, ``T = 3`` frames):
``face`` (N, 3, s, s, 3) [all three frames; MGLN uses the peak], ``eyes`` / ``nose`` / ``mouth``
(N, 3, h, w, 3), ``label`` (N,), ``identity`` (N,).
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from fer_utils import faces
from fer_utils.data.convention import to_model_tensor
from fer_utils.data.synthetic import SynthFaces

#: The authors' input sizes: face side, and (h, w) of each part crop.
FACE_SIZE = 128
PART_SIZES: dict[str, tuple[int, int]] = {"eyes": (48, 128), "nose": (64, 32), "mouth": (32, 64)}
PARTS = ("eyes", "nose", "mouth")
SLOTS = ("onset", "middle", "peak")
#: The face crop: a square of FACE_SCALE x the landmarks' larger extent around their box centre.
FACE_SCALE = 1.25


def frame_indices(length: int) -> tuple[int, int, int]:
    """The authors' frames of a sequence of ``length``: first, middle (``length // 2``), last."""
    if length < 1:
        raise ValueError(f"a sequence needs at least one frame, got length {length}")
    return 0, length // 2, length - 1


def face_crop(image: np.ndarray, landmarks: np.ndarray, size: int) -> np.ndarray:
    """Upright square face crop around the landmarks (68 or 5 points), resampled to size x size."""
    pts = np.asarray(landmarks, np.float64).reshape(-1, 2)
    lo, hi = pts.min(0), pts.max(0)
    side = FACE_SCALE * float((hi - lo).max()) * (1.0 if len(pts) == 68 else 2.0)
    return faces.crop_square(image, (lo + hi) / 2, max(side, 1.0), 0.0, size)


def crop_frame(image: np.ndarray, landmarks: np.ndarray, face_size: int = FACE_SIZE,
               part_sizes: dict[str, tuple[int, int]] | None = None) -> dict[str, np.ndarray]:
    """One frame -> ``{"face", "eyes", "nose", "mouth"}`` uint8 crops, grey tiled to 3 channels."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    out = faces.part_crops(image, landmarks, dict(part_sizes or PART_SIZES))
    out["face"] = face_crop(image, landmarks, face_size)
    return out


def _stack(frames: list[list[dict[str, np.ndarray]]], labels: Sequence[int], identities: Sequence[int]) -> dict:
    out: dict[str, Any] = {k: np.stack([np.stack([f[k] for f in seq]) for seq in frames]) for k in ("face", *PARTS)}
    out["label"] = np.asarray(labels, np.int64)
    out["identity"] = np.asarray(identities, np.int64)
    return out


def synth_sequences(n_identities: int, seed: int = 0, difficulty: str = "lab", num_classes: int = 7,
                    per_class: int = 1, render_size: int = 128, face_size: int = FACE_SIZE,
                    part_sizes: dict[str, tuple[int, int]] | None = None) -> dict[str, np.ndarray]:
    """``n_identities x num_classes x per_class`` SynthFaces clips (onset, middle, peak), cropped."""
    pool = SynthFaces(0, seed=seed, difficulty=difficulty, size=render_size, num_classes=num_classes,
                      n_identities=n_identities, with_masks=False)
    frames, labels, identities = [], [], []
    for identity in range(n_identities):
        for label in range(num_classes):
            for k in range(per_class):
                clip = pool.sequence(identity, label, length=3, seed=k)
                frames.append([crop_frame(f["image"], f["landmarks"], face_size, part_sizes) for f in clip])
                labels.append(label)
                identities.append(identity)
    return _stack(frames, labels, identities)


def still_faces(n: int, seed: int, difficulty: str = "lab", face_size: int = FACE_SIZE,
                render_size: int = 128, n_identities: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``n`` still SynthFaces at their apex, face-cropped like the sequences: (N, s, s, 3) uint8, labels (N,).

    For pre-training the shared shallow module; pass a ``seed`` other than the sequences' so that the
    identities differ (SynthFaces identities are a function of the seed).
    """
    pool = SynthFaces(n, seed=seed, difficulty=difficulty, size=render_size, n_identities=n_identities,
                      with_masks=False)
    crops, labels = [], []
    for i in range(n):
        item = pool[i]
        image = item["image"] if item["image"].ndim == 3 else np.repeat(item["image"][..., None], 3, axis=2)
        crops.append(face_crop(image, item["landmarks"], face_size))
        labels.append(item["label"])
    return np.stack(crops), np.asarray(labels, np.int64)


def identity_folds(identities: np.ndarray, folds: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``folds`` identity-disjoint (train, test) index pairs (scikit-learn's ``GroupKFold``)."""
    from sklearn.model_selection import GroupKFold

    identities = np.asarray(identities)
    if len(np.unique(identities)) < folds:
        raise ValueError(f"{folds} identity-disjoint folds need at least {folds} identities, "
                         f"got {len(np.unique(identities))}")
    return [(tr, te) for tr, te in GroupKFold(folds).split(identities, groups=identities)]


def subset(data: dict[str, torch.Tensor], index) -> dict[str, torch.Tensor]:
    """The sequences at ``index`` (every field)."""
    index = torch.as_tensor(np.asarray(index))
    return {k: v[index] for k, v in data.items()}


def _load(sample: dict) -> np.ndarray:
    image = sample["image"]
    if isinstance(image, str):
        from fer_utils.data.formats.common import read_image_file

        return read_image_file(image, "RGB")  # uint8 (H, W, 3) RGB, as cv2.imread + BGR2RGB gave
    return np.asarray(image)


def _landmarks(sample: dict, image: np.ndarray) -> np.ndarray:
    if sample.get("landmarks") is not None:
        return np.asarray(sample["landmarks"], np.float32)
    face = faces.detect_one(image, name=str(sample.get("path", "frame")), method="mtcnn")
    if face.landmarks5 is None:
        raise ValueError(f"{sample.get('path', 'frame')}: no landmarks in the sample and none from MTCNN")
    return np.asarray(face.landmarks5, np.float32)


def from_samples(samples: Iterable[dict], face_size: int = FACE_SIZE,
                 part_sizes: dict[str, tuple[int, int]] | None = None,
                 verbose: bool = True) -> dict[str, np.ndarray]:
    """Frame samples of ``read_ckplus`` / ``read_oulu`` -> sequences (first, middle, last frame), cropped.

    Frames are grouped by (identity, subject, sequence, system, illumination, sequence_label) and
    ordered by ``frame``. Sequences without a ``sequence_label`` are skipped and counted.
    """
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for s in samples:
        key = (s.get("identity"), s.get("subject"), s.get("sequence"), s.get("system"), s.get("illumination"),
               s.get("sequence_label"))
        groups[key].append(s)
    frames, labels, identities, skipped = [], [], [], 0
    for key, group in sorted(groups.items(), key=lambda kv: str(kv[0])):
        if key[-1] is None:
            skipped += 1
            continue
        group.sort(key=lambda f: int(f.get("frame") or 0))
        picked = [group[i] for i in frame_indices(len(group))]
        crops = []
        for sample in picked:
            image = _load(sample)
            crops.append(crop_frame(image, _landmarks(sample, image), face_size, part_sizes))
        frames.append(crops)
        labels.append(int(key[-1]))
        identities.append(int(key[0]))
    if verbose:
        print(f"sequences: kept {len(frames)} of {len(groups)}; skipped {skipped} without a sequence label")
    if not frames:
        raise ValueError("no labelled sequence found in the samples")
    return _stack(frames, labels, identities)


def to_tensors(data: dict[str, np.ndarray], normalize: str = "imagenet") -> dict[str, torch.Tensor]:
    """uint8 sequence arrays -> float tensors (N, T, 3, h, w) scaled by ``normalize``; labels as int64."""
    out: dict[str, torch.Tensor] = {}
    for k in ("face", *PARTS):
        x = data[k]
        n, t = x.shape[:2]
        out[k] = to_model_tensor(x.reshape(n * t, *x.shape[2:]), normalize).view(n, t, 3, *x.shape[2:4])
    out["label"] = torch.as_tensor(data["label"])
    out["identity"] = torch.as_tensor(data["identity"])
    return out


def model_inputs(batch: dict[str, torch.Tensor], slots: str = "real") -> tuple[torch.Tensor, ...]:
    """``(face, eyes, noses, mouths)`` for MGLN: the peak face and the three frames of each part.

    ``slots="peak"`` repeats the peak frame in all three slots (the authors' test-time inputs).
    """
    if slots not in ("real", "peak"):
        raise ValueError(f"slots must be 'real' or 'peak', got {slots!r}")
    parts = [batch[p] for p in PARTS]
    if slots == "peak":
        parts = [p[:, -1:].expand_as(p) for p in parts]
    return (batch["face"][:, -1], *parts)
