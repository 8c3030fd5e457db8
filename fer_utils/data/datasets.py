"""Splits that respect identities, and the glue from item dicts to tensors.

Faces of the same person look alike, so a random split puts near-copies of test
faces into training and flatters the model ("identity leakage"). The course uses
subject-independent splits everywhere:

- :func:`identity_split` - one train/test split, no identity on both sides;
- :func:`identity_kfold` - k folds over identities (each identity validates once);
- :func:`random_split_indices` - the leaky baseline, for the notebook that shows the gap.

Item dicts (from :class:`fer_utils.data.SynthFaces` or a format reader) become
``(image, target)`` tensor pairs with :func:`to_tensor` / :class:`TensorFaces`, or a
whole uint8 array with :func:`materialize` for notebooks that train many epochs on a
small set.
"""
from __future__ import annotations

import os
from typing import Any, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm


def _check_test_size(test_size: float) -> None:
    if not 0.0 < test_size < 1.0:
        raise ValueError(f"test_size must be a fraction in (0, 1), got {test_size!r}")


def identity_split(identities: Sequence[int] | np.ndarray, test_size: float = 0.2,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, test): a random ``test_size`` fraction of the identities goes to test.

    No identity appears on both sides; every index appears exactly once.
    """
    _check_test_size(test_size)
    identities = np.asarray(identities)
    unique = np.unique(identities)
    if len(unique) < 2:
        raise ValueError(f"identity_split needs at least 2 identities, got {len(unique)}")
    shuffled = np.random.default_rng([seed, 11]).permutation(unique)
    n_test = min(len(unique) - 1, max(1, round(test_size * len(unique))))
    is_test = np.isin(identities, shuffled[:n_test])
    return np.flatnonzero(~is_test), np.flatnonzero(is_test)


def identity_kfold(identities: Sequence[int] | np.ndarray, k: int = 5,
                   seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``k`` (train, val) index pairs; the identities are dealt into k disjoint groups."""
    identities = np.asarray(identities)
    unique = np.unique(identities)
    if not 2 <= k <= len(unique):
        raise ValueError(f"k must be in [2, number of identities = {len(unique)}], got {k!r}")
    shuffled = np.random.default_rng([seed, 12]).permutation(unique)
    folds = []
    for group in np.array_split(shuffled, k):
        is_val = np.isin(identities, group)
        folds.append((np.flatnonzero(~is_val), np.flatnonzero(is_val)))
    return folds


def random_split_indices(n: int, test_size: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, test) of a plain random split - it ignores identities (leaky on purpose)."""
    _check_test_size(test_size)
    order = np.random.default_rng([seed, 13]).permutation(n)
    n_test = max(1, round(test_size * n))
    return np.sort(order[n_test:]), np.sort(order[:n_test])


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 HxW or HxWxC -> float32 CxHxW in [0, 1]."""
    if image.ndim == 2:
        image = image[:, :, None]
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().div_(255.0)


def adapt_image(image: np.ndarray, size: int | None = None, grayscale: bool | None = None) -> np.ndarray:
    """Resize (INTER_AREA when shrinking) and/or convert RGB <-> grayscale, only where needed."""
    if grayscale is True and image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    elif grayscale is False and image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if size is not None and image.shape[0] != size:
        shrink = image.shape[0] > size
        image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return image


def to_tensor(item: dict[str, Any], target: str = "label") -> tuple[torch.Tensor, Any]:
    """An item dict -> (image float tensor CxHxW in [0, 1], ``item[target]``).

    Use it as ``SynthFaces(..., transform=to_tensor)`` so a ``DataLoader`` can batch
    the pairs. ``target`` may name any item key ("label", "true_label", "aus", ...).
    """
    value = item[target]
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(value.astype(np.float32) if value.dtype == bool else value)
    return image_to_tensor(item["image"]), value


class TensorFaces(Dataset):
    """``(image tensor, target)`` pairs from any dataset of item dicts, optionally a subset.

    ``size`` / ``grayscale`` convert images that differ (``None`` keeps them as they are).
    """

    def __init__(self, ds: Any, indices: Sequence[int] | np.ndarray | None = None, size: int | None = None,
                 grayscale: bool | None = None, target: str = "label") -> None:
        self.ds = ds
        self.indices = np.arange(len(ds)) if indices is None else np.asarray(indices)
        self.size, self.grayscale, self.target = size, grayscale, target

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, j: int) -> tuple[torch.Tensor, Any]:
        item = dict(self.ds[int(self.indices[j])])
        item["image"] = adapt_image(item["image"], self.size, self.grayscale)
        return to_tensor(item, self.target)


def materialize(ds: Any, indices: Sequence[int] | np.ndarray | None = None, size: int | None = None,
                grayscale: bool | None = None, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Render once into memory: (images uint8 (N, H, W) or (N, H, W, 3), labels int64 (N,)).

    ``ds`` must return item dicts (no ``transform``). Shows a tqdm bar unless ``progress=False``.
    """
    indices = np.arange(len(ds)) if indices is None else np.asarray(indices)
    images, labels = [], []
    for i in tqdm(indices, desc="rendering", disable=not progress, leave=False):
        item = ds[int(i)]
        images.append(adapt_image(item["image"], size, grayscale))
        labels.append(item["label"])
    if not images:
        raise ValueError("materialize: no indices given")
    return np.stack(images), np.asarray(labels, np.int64)


def tensors(images: np.ndarray, labels: np.ndarray) -> torch.utils.data.TensorDataset:
    """Arrays from :func:`materialize` -> a ``TensorDataset`` of float images in [0, 1] and labels."""
    x = torch.from_numpy(images).float().div_(255.0)
    x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
    return torch.utils.data.TensorDataset(x.contiguous(), torch.from_numpy(labels))


def load_rafdb_arrays(root: str | os.PathLike, size: int = 112, verbose: bool = False
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RAF-DB basic (``read_rafdb``, aligned crops) in memory: images (N, size, size, 3) uint8,
    labels (N,) in the course's class order, and is_train (N,) bool from the file names."""
    from fer_utils.data.formats import load_image, read_rafdb

    samples = read_rafdb(root, verbose=verbose)
    images = np.stack([adapt_image(load_image(s["path"]), size, grayscale=False) for s in samples])
    labels = np.asarray([s["label"] for s in samples], np.int64)
    is_train = np.asarray([s["split"] == "train" for s in samples])
    return images, labels, is_train
