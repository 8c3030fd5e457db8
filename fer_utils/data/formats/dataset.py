"""A torch Dataset over any reader's samples, and the collate function that keeps None fields."""
from __future__ import annotations

import os
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from fer_utils.data.formats.common import read_image_file


class FormatDataset(Dataset):
    """A torch Dataset over any reader's samples; loads path images lazily.

    ``__getitem__`` returns the sample dict with ``image`` as a uint8 array
    (cropped to ``face_box`` when the sample has one and ``crop=True``), passed
    through ``transform`` if given. Use :func:`collate_samples` as the
    DataLoader's ``collate_fn`` (it keeps None fields) or a transform that
    returns tensors.
    """

    def __init__(self, samples: Sequence[dict], transform: Callable | None = None, *, crop: bool = True) -> None:
        self.samples = samples
        self.transform = transform
        self.crop = crop

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> Any:
        sample = dict(self.samples[i])
        image = sample["image"]
        if isinstance(image, (str, os.PathLike)):
            image = read_image_file(image)
        box = sample.get("face_box")
        if self.crop and box is not None:
            x, y, w, h = (int(round(v)) for v in box)
            image = image[max(y, 0):y + h, max(x, 0):x + w]
        sample["image"] = np.ascontiguousarray(image)
        return self.transform(sample) if self.transform else sample


def collate_samples(batch: list[dict]) -> dict[str, Any]:
    """Collate sample dicts: equal-shape arrays and numbers become stacked tensors,
    a field that is None in every sample stays None, anything else (strings, mixed
    None, ragged arrays) becomes a list."""
    out: dict[str, Any] = {}
    for key in batch[0]:
        values = [b.get(key) for b in batch]
        if all(v is None for v in values):
            out[key] = None
        elif any(v is None for v in values):
            out[key] = values
        elif all(isinstance(v, np.ndarray) for v in values) and len({v.shape for v in values}) == 1 \
                and values[0].dtype.kind in "biuf":
            out[key] = torch.from_numpy(np.stack(values))
        elif all(isinstance(v, (bool, int, float, np.number)) and not isinstance(v, str) for v in values):
            out[key] = torch.tensor(np.array(values))
        else:
            out[key] = values
    return out
