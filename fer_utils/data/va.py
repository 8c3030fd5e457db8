"""Faces with continuous valence and arousal (and expression labels), in memory.

One loader for SynthFaces and for an AffectNet-format folder, so a notebook switches between them
with its ``dataset`` / ``data_root`` parameters and nothing else changes:

    faces = load_va_faces("synthfaces", n=5000, difficulty="wild", size=48)
    faces = load_va_faces("affectnet", data_root="/path/to/AffectNet", size=48)
    train_idx, test_idx = split_va_faces(faces)

AffectNet samples are read with :func:`fer_utils.data.formats.read_affectnet`, cropped to their face
box (:class:`~fer_utils.data.formats.FormatDataset`) and resized; rows without valence-arousal
(``-2`` in the CSV) are dropped and counted. AffectNet has no identities, so the split is its own
training / validation CSVs when both exist, else a random split (said when it happens).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from fer_utils.data.convention import to_model_tensor
from fer_utils.data.datasets import adapt_image, identity_split, random_split_indices
from fer_utils.data.synthetic import SynthFaces


@dataclass
class VAFaces:
    """images uint8 (N, H, W) grey or (N, H, W, 3); labels int64 (N,); valence, arousal float32 (N,);
    identities int64 (N,) or None; split: object (N,) of "train"/"val" or None; ``pool``: the
    SynthFaces dataset behind them (to re-render masks), or None."""

    images: np.ndarray
    labels: np.ndarray
    valence: np.ndarray
    arousal: np.ndarray
    identities: np.ndarray | None = None
    split: np.ndarray | None = None
    pool: Any = None
    source: str = ""

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def va(self) -> np.ndarray:
        """(N, 2) float32: valence, arousal."""
        return np.stack([self.valence, self.arousal], axis=1).astype(np.float32)

    def tensors(self, normalize: str = "symmetric") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(images float (N, C, H, W) scaled by ``normalize`` (default [-1, 1]), labels int64 (N,), va (N, 2))."""
        return to_model_tensor(self.images, normalize), torch.from_numpy(self.labels).long(), torch.from_numpy(self.va)

    def masks(self, indices) -> list[dict[str, np.ndarray]]:
        """Region masks (brows, eyes, nose, mouth, cheeks) of SynthFaces items ``indices``, re-rendered."""
        if self.pool is None or not self.pool.with_masks:
            raise ValueError("region masks exist only for SynthFaces loaded with with_masks=True")
        return [self.pool[int(i)]["masks"] for i in indices]


def _collect(items, n: int, size: int, grayscale: bool, desc: str, progress: bool = True) -> dict[str, list]:
    out: dict[str, list] = {"images": [], "labels": [], "valence": [], "arousal": []}
    for item in tqdm(items, total=n, desc=desc, leave=False, mininterval=2.0, disable=not progress):
        out["images"].append(adapt_image(item["image"], size, grayscale))
        out["labels"].append(item["label"])
        out["valence"].append(item["valence"])
        out["arousal"].append(item["arousal"])
    return out


def load_synthfaces_va(n: int, seed: int = 0, difficulty: str = "wild", size: int = 48, grayscale: bool = True,
                       n_identities: int | None = None, num_classes: int = 7, va_mode: str = "class",
                       va_spread: float = 0.3, progress: bool = True) -> VAFaces:
    """Render ``n`` SynthFaces once (a progress bar unless ``progress=False``); keep images, labels, valence,
    arousal and identities.

    ``va_mode="class"`` (the default): valence-arousal is the class's circumplex point times the expression
    intensity, plus the difficulty's noise, so within a class valence and arousal move together along one
    ray. ``va_mode="free"`` adds a within-class part of s.d. ``va_spread`` per axis, drawn independently for
    valence and arousal and drawn on the face (other action units), and a per-person offset (SynthFaces'
    scenario option, :mod:`fer_utils.data.synth_scenario`): valence and arousal then vary within a class
    and apart from each other, which a claim about learning them jointly needs.
    """
    options = {} if va_mode == "class" else dict(va_mode=va_mode, va_spread=va_spread)
    pool = SynthFaces(n, seed=seed, difficulty=difficulty, size=size, grayscale=grayscale,
                      n_identities=n_identities, num_classes=num_classes, with_masks=True, **options)
    render = SynthFaces(n, seed=seed, difficulty=difficulty, size=size, grayscale=grayscale,
                        n_identities=n_identities, num_classes=num_classes, with_masks=False,
                        **options)  # same faces, faster
    cols = _collect((render[i] for i in range(n)), n, size, grayscale, "rendering", progress)
    return VAFaces(np.stack(cols["images"]), np.asarray(cols["labels"], np.int64),
                   np.asarray(cols["valence"], np.float32), np.asarray(cols["arousal"], np.float32),
                   identities=pool.identities.astype(np.int64), pool=pool, source=repr(pool))


def load_affectnet_va(root, size: int = 48, grayscale: bool = True, limit: int | None = None,
                      verbose: bool = True) -> VAFaces:
    """Read an AffectNet-format folder; keep the faces that have a label and valence-arousal."""
    from fer_utils.data.formats import FormatDataset, read_affectnet

    samples = read_affectnet(root, verbose=verbose)
    keep = [s for s in samples if s["valence"] is not None and s["label"] is not None]
    if verbose and len(keep) < len(samples):
        print(f"load_affectnet_va: dropped {len(samples) - len(keep):,} faces without valence-arousal")
    if limit is not None:
        keep = keep[:limit]
    if not keep:
        raise ValueError(f"{root}: no AffectNet face with a label and valence-arousal")
    dataset = FormatDataset(keep)
    cols = _collect((dataset[i] for i in range(len(keep))), len(keep), size, grayscale, "reading")
    return VAFaces(np.stack(cols["images"]), np.asarray(cols["labels"], np.int64),
                   np.asarray(cols["valence"], np.float32), np.asarray(cols["arousal"], np.float32),
                   split=np.array([s["split"] for s in keep], dtype=object), source=f"affectnet ({len(keep)} faces)")


def load_va_faces(dataset: str = "synthfaces", data_root=None, n: int = 1000, seed: int = 0,
                  difficulty: str = "wild", size: int = 48, grayscale: bool = True,
                  n_identities: int | None = None, num_classes: int = 7, va_mode: str = "class",
                  va_spread: float = 0.3, progress: bool = True) -> VAFaces:
    """``dataset="synthfaces"`` (rendered; ``va_mode`` / ``va_spread``: :func:`load_synthfaces_va`) or
    ``"affectnet"`` (read from ``data_root``); ``progress=False``: no rendering bar (SynthFaces)."""
    if dataset == "synthfaces":
        return load_synthfaces_va(n, seed, difficulty, size, grayscale, n_identities, num_classes, va_mode, va_spread,
                                  progress)
    if dataset == "affectnet":
        if data_root is None:
            raise ValueError("dataset='affectnet' needs data_root (the folder with Manually_Annotated_file_lists/)")
        return load_affectnet_va(data_root, size, grayscale)
    raise ValueError(f"dataset must be 'synthfaces' or 'affectnet', got {dataset!r}")


def labelled_subset(n: int, rate: float, seed: int = 0, minimum: int = 8) -> np.ndarray:
    """Positions (sorted) of the ``rate`` share of ``n`` training faces that keep their valence-arousal
    label (the others keep only their class), at least ``minimum``. Nested: for one ``seed`` the faces
    labelled at a lower rate are also labelled at every higher one, so rates differ only by the faces added."""
    if not 0.0 < rate <= 1.0:
        raise ValueError(f"rate must be in (0, 1], got {rate!r}")
    order = np.random.default_rng([seed, 404]).permutation(n)
    return np.sort(order[:min(n, max(minimum, int(round(rate * n))))])


def split_va_faces(faces: VAFaces, test_size: float = 0.2, seed: int = 0,
                   verbose: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices: by identity when known; else the file's own train/val split when it
    has both; else random (no identities to keep apart)."""
    if faces.identities is not None:
        return identity_split(faces.identities, test_size, seed)
    if faces.split is not None:
        is_val = faces.split == "val"
        if is_val.any() and (~is_val).any():
            return np.flatnonzero(~is_val), np.flatnonzero(is_val)
    if verbose:
        print("split_va_faces: no identities and no validation file: random split")
    return random_split_indices(len(faces), test_size, seed)
