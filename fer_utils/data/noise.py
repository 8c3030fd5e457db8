"""Synthetic label noise the way the SCN authors made it (Wang et al., CVPR 2020, ``generate.py``).

With probability ``rate`` a label is replaced by a *different* class drawn uniformly
from the other ``num_classes - 1`` (the authors loop ``randint`` until it differs).
``exact=True`` (the course's default) flips exactly ``round(rate * N)`` labels, chosen
uniformly at random, so that "30% noise" means 30% of this training set and every
seed compares the same amount of noise; ``exact=False`` draws each flip
independently, as ``generate.py`` does, so the share is only close to ``rate``.
"""
from __future__ import annotations

import numpy as np


def flip_labels(labels: np.ndarray, rate: float, num_classes: int, seed: int = 0,
                exact: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(noisy_labels, flipped)``: the labels after noise and the bool mask of changed ones.

    Every flipped label differs from its original (an offset 1..num_classes-1 modulo
    ``num_classes``, which is uniform over the other classes).
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise ValueError(f"flip_labels: expected a 1-D integer label array, got shape {labels.shape}, "
                         f"dtype {labels.dtype}")
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"flip_labels: rate must be in [0, 1], got {rate!r}")
    if num_classes < 2:
        raise ValueError(f"flip_labels: need at least 2 classes to flip a label, got num_classes={num_classes}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"flip_labels: labels must be in [0, {num_classes}), found {labels.min()}..{labels.max()}")
    rng = np.random.default_rng([seed, 808])
    n = labels.size
    if exact:
        flipped = np.zeros(n, bool)
        flipped[rng.choice(n, size=int(round(rate * n)), replace=False)] = True
    else:
        flipped = rng.random(n) < rate
    offset = rng.integers(1, num_classes, size=n)
    noisy = np.where(flipped, (labels + offset) % num_classes, labels).astype(labels.dtype)
    return noisy, flipped
