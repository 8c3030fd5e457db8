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
small set. Every image becomes a tensor through :func:`fer_utils.data.to_model_tensor`
(``normalize="unit"``, ``"symmetric"`` or ``"imagenet"``).
"""
from __future__ import annotations

import os
from typing import Any, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from fer_utils.data.convention import to_model_tensor


def _check_test_size(test_size: float) -> None:
    if not 0.0 < test_size < 1.0:
        raise ValueError(f"test_size must be a fraction in (0, 1), got {test_size!r}")


class _SeededShuffle(np.random.RandomState):
    """scikit-learn draws from a legacy ``RandomState``; this one takes its permutations from the
    course's seeded ``numpy.random.default_rng([seed, k])``, so the splits do not depend on the
    scikit-learn version's random stream (and equal the course's splits before scikit-learn ran them)."""

    def __init__(self, seed: int, stream: int) -> None:
        super().__init__(0)
        self._generator = np.random.default_rng([seed, stream])

    def permutation(self, x):  # noqa: D102 - the only draw GroupShuffleSplit / GroupKFold make
        return self._generator.permutation(x)


#: Seed s's test people are rendered with seed ``HELD_OUT_OFFSET + s`` (:func:`held_out_seed`).
HELD_OUT_OFFSET = 1000


def held_out_seed(seed: int) -> int:
    """The seed that renders seed ``seed``'s test people apart from its training and validation people:
    ``HELD_OUT_OFFSET + seed`` (notebooks 04, 05, 06 and 08). A SynthFaces person is drawn from (render seed,
    identity), so the test faces are of other people, and as many as a claim needs: a score over a hundred faces
    of ten people moves with which people were drawn about as much as the effects tested (the standard error of
    an accuracy p over n faces is sqrt(p (1 - p) / n): 0.05 at p = 0.5, n = 100). Paired arms share them."""
    if not 0 <= int(seed) < HELD_OUT_OFFSET:
        raise ValueError(f"seed must be in [0, {HELD_OUT_OFFSET}) so that its test people differ from every seed's "
                         f"training people, got {seed}")
    return HELD_OUT_OFFSET + int(seed)


def identity_split(identities: Sequence[int] | np.ndarray, test_size: float = 0.2,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, test): a random ``test_size`` fraction of the identities goes to test.

    scikit-learn's ``GroupShuffleSplit`` with the identities as groups; n_test = round(test_size *
    identities), at least 1 and at most all but one. No identity appears on both sides; every
    index appears exactly once (both sorted).
    """
    from sklearn.model_selection import GroupShuffleSplit

    _check_test_size(test_size)
    identities = np.asarray(identities)
    n_groups = len(np.unique(identities))
    if n_groups < 2:
        raise ValueError(f"identity_split needs at least 2 identities, got {n_groups}")
    n_test = min(n_groups - 1, max(1, round(test_size * n_groups)))
    splitter = GroupShuffleSplit(n_splits=1, test_size=n_test, random_state=_SeededShuffle(seed, 11))
    train, test = next(splitter.split(identities, groups=identities))
    return train, test


def identity_kfold(identities: Sequence[int] | np.ndarray, k: int = 5,
                   seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``k`` (train, val) index pairs: scikit-learn's ``GroupKFold(shuffle=True)`` over the identities
    (shuffled, then dealt into k disjoint groups; each identity validates once)."""
    from sklearn.model_selection import GroupKFold

    identities = np.asarray(identities)
    n_groups = len(np.unique(identities))
    if not 2 <= k <= n_groups:
        raise ValueError(f"k must be in [2, number of identities = {n_groups}], got {k!r}")
    folds = GroupKFold(n_splits=k, shuffle=True, random_state=_SeededShuffle(seed, 12))
    return list(folds.split(identities, groups=identities))


def random_split_indices(n: int, test_size: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, test) of a plain random split - it ignores identities (leaky on purpose)."""
    _check_test_size(test_size)
    order = np.random.default_rng([seed, 13]).permutation(n)
    n_test = max(1, round(test_size * n))
    return np.sort(order[n_test:]), np.sort(order[:n_test])


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


def to_tensor(item: dict[str, Any], target: str = "label", normalize: str = "unit") -> tuple[torch.Tensor, Any]:
    """An item dict -> (image float tensor CxHxW scaled by ``normalize``, ``item[target]``).

    Use it as ``SynthFaces(..., transform=to_tensor)`` so a ``DataLoader`` can batch
    the pairs. ``target`` may name any item key ("label", "true_label", "aus", ...);
    ``normalize`` is the course's input convention (:func:`fer_utils.data.to_model_tensor`).
    """
    value = item[target]
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(value.astype(np.float32) if value.dtype == bool else value)
    return to_model_tensor(item["image"][None], normalize)[0], value


class TensorFaces(Dataset):
    """``(image tensor, target)`` pairs from any dataset of item dicts, optionally a subset.

    ``size`` / ``grayscale`` convert images that differ (``None`` keeps them as they are).
    """

    def __init__(self, ds: Any, indices: Sequence[int] | np.ndarray | None = None, size: int | None = None,
                 grayscale: bool | None = None, target: str = "label", normalize: str = "unit") -> None:
        self.ds = ds
        self.indices = np.arange(len(ds)) if indices is None else np.asarray(indices)
        self.size, self.grayscale, self.target, self.normalize = size, grayscale, target, normalize

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, j: int) -> tuple[torch.Tensor, Any]:
        item = dict(self.ds[int(self.indices[j])])
        item["image"] = adapt_image(item["image"], self.size, self.grayscale)
        return to_tensor(item, self.target, self.normalize)


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


def tensors(images: np.ndarray, labels: np.ndarray, normalize: str = "unit") -> torch.utils.data.TensorDataset:
    """Arrays from :func:`materialize` -> a ``TensorDataset`` of (N, C, H, W) float images and labels."""
    return torch.utils.data.TensorDataset(to_model_tensor(images, normalize), torch.from_numpy(labels))


def load_rafdb_arrays(root: str | os.PathLike, size: int = 112, verbose: bool = False
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RAF-DB basic (``read_rafdb``, aligned crops) in memory: images (N, size, size, 3) uint8,
    labels (N,) in the course's class order, and is_train (N,) bool from the file names."""
    from fer_utils.data.formats import read_image_file, read_rafdb

    samples = read_rafdb(root, verbose=verbose)
    images = np.stack([adapt_image(read_image_file(s["path"]), size, grayscale=False) for s in samples])
    labels = np.asarray([s["label"] for s in samples], np.int64)
    is_train = np.asarray([s["split"] == "train" for s in samples])
    return images, labels, is_train
