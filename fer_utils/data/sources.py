"""One entry point for a notebook's data: SynthFaces or a real dataset in any layout data/README.md lists.

A notebook's set-up cell calls::

    source = open_dataset(dataset, data_root, accepted=("synthfaces", "fer2013"), profile=run.profile)

and gets at once (before any work) a clear error for a name it does not accept, a real dataset
without ``data_root``, a missing folder, or a folder holding none of the dataset's layouts; the
message names what this notebook accepts and what was expected at that path. For a real dataset
the folder is read with the matching reader of :mod:`fer_utils.data.formats`, then:

- **splits keep their meaning**: FER2013/FER+ Training / PublicTest / PrivateTest are train / val /
  test (never merged); RAF-DB's train_/test_ names are train / test; AffectNet's and Aff-Wild2's
  official validation set is the test set of their protocols (their test labels were never
  released). A split a dataset lacks is carved, deterministically from ``seed``, out of train:
  by subject where the dataset has subjects (CK+, Oulu-CASIA, JAFFE) or videos (Aff-Wild2),
  otherwise stratified by class;
- **the profile sets the size**: ``smoke`` and ``course`` subsample each split to the sizes of
  :data:`SIZES` (or the notebook's ``n_train`` / ``n_test``), stratified by class and seeded;
  ``full`` keeps everything;
- samples without a usable label (or with a class the notebook does not use, e.g. contempt in a
  7-class notebook) are dropped and **counted** in ``source.notes``.

For ``dataset="synthfaces"`` the returned source has ``synthetic=True`` and the notebook renders
its own SynthFaces.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from fer_utils.data import formats as F
from fer_utils.utils import check_profile

SPLITS = ("train", "val", "test")
#: profile -> (training faces, validation and test faces each) taken from a real dataset; None: all.
SIZES: dict[str, tuple[int, int] | None] = {"smoke": (600, 200), "course": (6000, 1500), "full": None}


@dataclass(frozen=True)
class Layout:
    """One on-disk form of a dataset: a name and the files/folders (relative to data_root) that mark it."""

    name: str
    markers: tuple[str, ...]          # all must exist
    base: str = ""                     # the sub-folder the reader is given ("basic" for RAF-DB's basic/)

    def found(self, root: Path) -> bool:
        return all((root / m).exists() for m in self.markers)


@dataclass(frozen=True)
class Spec:
    """How to read one dataset: its reader, its layouts, how its splits map to train/val/test."""

    title: str
    reader: str                        # name of the read_<name> function in fer_utils.data.formats
    layouts: tuple[Layout, ...]
    split_map: dict = field(default_factory=dict)   # reader's split value -> our split
    group: str | None = None           # field to carve missing splits by (subject, video)
    label_map: dict = field(default_factory=dict)   # the format's native class id -> canonical id


def _fer2013_layouts(prefix: str = "") -> tuple[Layout, ...]:
    return (Layout(f"{prefix}fer2013.csv", (f"{prefix}fer2013.csv",)),
            Layout(f"{prefix}icml_face_data.csv", (f"{prefix}icml_face_data.csv",)),
            Layout(f"{prefix}train.csv + test.csv", (f"{prefix}train.csv", f"{prefix}test.csv")))


_OFFICIAL_VAL_IS_TEST = {"train": "train", "val": "test"}
#: The one registry of real datasets: reader, layouts, split meaning, grouping and label map (fer-train and
#: the notebooks read data through :func:`open_dataset`, which reads this table).
DATASETS: dict[str, Spec] = {
    "fer2013": Spec("FER2013", "read_fer2013", _fer2013_layouts() + _fer2013_layouts("fer2013/"),
                    {"train": "train", "val": "val", "test": "test"}, label_map=F.FER2013_TO_CANON),
    "ferplus": Spec("FER+", "read_ferplus", (
        Layout("fer2013new.csv beside fer2013.csv", ("fer2013new.csv", "fer2013.csv")),
        Layout("fer2013new.csv beside icml_face_data.csv", ("fer2013new.csv", "icml_face_data.csv")),
        Layout("FER2013Train/label.csv (+ FER2013Valid/, FER2013Test/)", ("FER2013Train/label.csv",))),
        {"train": "train", "val": "val", "test": "test"}, label_map=F.FERPLUS_TO_CANON),
    "rafdb": Spec("RAF-DB basic", "read_rafdb", (
        Layout("EmoLabel/list_patition_label.txt + Image/aligned/", ("EmoLabel/list_patition_label.txt", "Image/aligned")),
        Layout("basic/EmoLabel/list_patition_label.txt + basic/Image/aligned/",
               ("basic/EmoLabel/list_patition_label.txt", "basic/Image/aligned"), "basic")),
        {"train": "train", "test": "test"}, label_map=F.RAFDB_TO_CANON),
    "affectnet": Spec("AffectNet", "read_affectnet", (
        Layout("Manually_Annotated_file_lists/ + Manually_Annotated_Images/",
               ("Manually_Annotated_file_lists", "Manually_Annotated_Images")),), _OFFICIAL_VAL_IS_TEST,
        label_map=F.AFFECTNET_TO_CANON),
    "ckplus": Spec("CK+", "read_ckplus", (
        Layout("cohn-kanade-images/ + Emotion/ (FACS/, Landmarks/ optional)", ("cohn-kanade-images", "Emotion")),),
        group="identity", label_map=F.CKPLUS_TO_CANON),
    "oulu": Spec("Oulu-CASIA", "read_oulu", (Layout("OriginalImg/VL/Strong/", ("OriginalImg/VL/Strong",)),),
                 group="identity", label_map=F.OULU_TO_CANON),
    "jaffe": Spec("JAFFE", "read_jaffe", (Layout("<POSER>.<EX><n>.<id>.tiff files", ()),), group="identity",
                  label_map=F.JAFFE_TO_CANON),
    "ferg": Spec("FERG-DB", "read_ferg", (Layout("FERG_DB_256/", ("FERG_DB_256",)),), label_map=F.FERG_TO_CANON),
    "affwild2": Spec("Aff-Wild2", "read_affwild2", (
        Layout("cropped_aligned/ + annotations/ (ABAW1, ABAW2)", ("cropped_aligned", "annotations")),
        Layout("cropped_aligned/ + <n>th ABAW Annotations/ (ABAW3+)", ("cropped_aligned",))),
        _OFFICIAL_VAL_IS_TEST, group="video", label_map=F.AFFWILD2_TO_CANON),
}
SYNTHETIC = "synthfaces"


def _expected(name: str) -> str:
    return " or ".join(layout.name for layout in DATASETS[name].layouts)


def _detect(name: str, root: Path) -> Layout | None:
    """The first layout of ``name`` found under ``root`` (None: none of them)."""
    for layout in DATASETS[name].layouts:
        if name == "jaffe":
            if any(p.suffix.lower() in (".tif", ".tiff") and p.name.count(".") >= 3 for p in root.iterdir()):
                return layout
        elif name == "affwild2" and layout.markers == ("cropped_aligned",):
            if (root / "cropped_aligned").is_dir() and any("abaw" in p.name.lower() for p in root.iterdir()):
                return layout
        elif layout.found(root):
            return layout
    return None


def check_dataset(dataset: Any, data_root: Any, accepted: tuple[str, ...]) -> tuple[str, Path | None, Layout | None]:
    """Validate the notebook parameters; return (dataset, root, layout). Raises at once with a clear message."""
    unknown = [a for a in accepted if a != SYNTHETIC and a not in DATASETS]
    if unknown:
        raise ValueError(f"accepted names unknown datasets {unknown}; known: {[SYNTHETIC, *DATASETS]}")
    offer = ", ".join(repr(a) for a in accepted)
    if not isinstance(dataset, str) or dataset not in (SYNTHETIC, *DATASETS):
        raise ValueError(f"unknown dataset {dataset!r}; this notebook accepts {offer}")
    if dataset not in accepted:
        raise ValueError(f"this notebook does not use dataset {dataset!r}; it accepts {offer}")
    if dataset == SYNTHETIC:
        if data_root is not None:
            raise ValueError(f"data_root={str(data_root)!r} is only read for a real dataset; with "
                             f"dataset='synthfaces' leave data_root = None (this notebook accepts {offer})")
        return dataset, None, None
    if data_root is None or (isinstance(data_root, str) and not data_root.strip()):
        raise ValueError(f"dataset={dataset!r} needs data_root: the folder holding {_expected(dataset)} "
                         "(see data/README.md)")
    if not isinstance(data_root, (str, os.PathLike)):
        raise TypeError(f"data_root must be a folder path (str), got {type(data_root).__name__} {data_root!r}")
    root = Path(data_root).expanduser()
    if not root.is_dir():
        what = "is a file, not a folder" if root.exists() else "does not exist"
        raise FileNotFoundError(f"data_root {str(root)!r} {what}; for {DATASETS[dataset].title} expected a "
                                f"folder holding {_expected(dataset)} (see data/README.md)")
    layout = _detect(dataset, root)
    if layout is None:
        have = sorted(p.name + ("/" if p.is_dir() else "") for p in root.iterdir())
        shown = ", ".join(have[:12]) + (f", ... ({len(have)} entries)" if len(have) > 12 else "")
        raise FileNotFoundError(f"data_root {str(root)!r} holds none of the {DATASETS[dataset].title} layouts: "
                                f"expected {_expected(dataset)}; found {shown or 'an empty folder'}")
    return dataset, root, layout


def subsample(labels: np.ndarray, n: int | None, seed: int, salt: int = 0) -> np.ndarray:
    """Sorted positions of at most ``n`` items, stratified by ``labels`` (largest remainder), seeded.

    ``n`` None or >= len(labels) keeps everything.
    """
    labels = np.asarray(labels)
    if n is None or n >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng([seed, 21, salt])
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * n / len(labels)
    take = np.floor(exact).astype(int)
    for k in np.argsort(-(exact - take), kind="stable")[: n - take.sum()]:
        take[k] += 1
    picked = [rng.permutation(np.flatnonzero(labels == c))[:t] for c, t in zip(classes, take)]
    return np.sort(np.concatenate(picked))


def _carve(labels: np.ndarray, groups: np.ndarray | None, fraction: float, seed: int, salt: int
           ) -> tuple[np.ndarray, np.ndarray]:
    """Split positions into (keep, carved): by group when groups are given, else stratified by label."""
    from fer_utils.data.datasets import identity_split
    if groups is not None and len(np.unique(groups)) >= 2:
        return identity_split(groups, test_size=fraction, seed=seed + 1000 * salt)
    carved = subsample(labels, max(1, round(fraction * len(labels))), seed, salt=100 + salt)
    return np.setdiff1d(np.arange(len(labels)), carved), carved


@dataclass
class Source:
    """What :func:`open_dataset` returns. ``splits[name]`` are positions into ``samples``."""

    name: str
    root: Path | None
    layout: str | None
    profile: str
    samples: Any = None
    splits: dict[str, np.ndarray] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def synthetic(self) -> bool:
        return self.name == SYNTHETIC

    def labels(self, split: str) -> np.ndarray:
        """Canonical class ids (int64) of one split."""
        return np.array([self.samples[int(i)]["label"] for i in self.splits[split]], dtype=np.int64)

    def va(self, split: str) -> np.ndarray:
        """(N, 2) float32 valence, arousal of one split; NaN where a sample has none."""
        return np.array([[np.nan if s.get(k) is None else s[k] for k in ("valence", "arousal")]
                         for s in self.items(split)], dtype=np.float32).reshape(-1, 2)

    def items(self, split: str) -> list[dict]:
        """The reader's sample dicts of one split."""
        return [self.samples[int(i)] for i in self.splits[split]]

    def images(self, split: str, size: int = 48, grayscale: bool = True) -> np.ndarray:
        """uint8 images of one split, cropped to ``face_box`` where given, resized to ``size``:
        (N, size, size) when ``grayscale``, else (N, size, size, 3)."""
        import cv2

        from fer_utils.data.formats.common import read_image_file
        out = []
        for s in self.items(split):
            image = s["image"]
            if isinstance(image, (str, os.PathLike)):
                image = read_image_file(image, "L" if grayscale else "RGB")
            image = np.asarray(image)
            if s.get("face_box") is not None:
                x, y, w, h = (int(round(v)) for v in s["face_box"])
                image = image[max(y, 0):y + h, max(x, 0):x + w]
            if grayscale and image.ndim == 3:
                image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
            elif not grayscale and image.ndim == 2:
                image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
            shrink = image.shape[0] > size or image.shape[1] > size
            out.append(cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR))
        shape = (0, size, size) if grayscale else (0, size, size, 3)
        return np.stack(out) if out else np.zeros(shape, np.uint8)

    def summary(self) -> str:
        if self.synthetic:
            return "synthfaces: rendered by the notebook"
        counts = ", ".join(f"{k} {len(v):,}" for k, v in self.splits.items())
        return f"{self.name} ({self.layout}) from {self.root}, profile {self.profile}: {counts}"


def _column(samples: Any, key: str) -> np.ndarray:
    """One field of every sample (vectorised for the labels of the big CSV formats)."""
    if key == "label" and hasattr(samples, "labels"):
        return np.array([None if v < 0 else int(v) for v in samples.labels], dtype=object)
    return np.array([s.get(key) for s in samples], dtype=object)


def _assign_splits(spec: Spec, split: np.ndarray, labels: np.ndarray, groups: np.ndarray | None,
                   seed: int, notes: list[str], carve: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Positions per split: the dataset's own splits mapped, missing val/test carved out of train."""
    mapped = np.array([spec.split_map.get(s) if s is not None else None for s in split], dtype=object)
    if not spec.split_map:
        mapped[:] = "train"
    unused = int(np.sum(mapped == None))  # noqa: E711 (object array)
    if unused:
        notes.append(f"{unused:,} labelled samples outside the dataset's labelled splits were not used")
    splits = {name: np.flatnonzero(mapped == name) for name in SPLITS}
    for salt, (name, fraction) in enumerate((("test", 0.2), ("val", 0.1))):
        if name in carve and len(splits[name]) == 0 and len(splits["train"]) >= 2:
            train = splits["train"]
            keep, carved = _carve(labels[train], None if groups is None else groups[train], fraction, seed, salt)
            splits["train"], splits[name] = train[keep], train[carved]
            how = f"by {spec.group}" if groups is not None else "stratified by class"
            notes.append(f"{name}: {fraction:.0%} of train carved out {how} (the dataset has no {name} split)")
    return splits


def open_dataset(dataset: Any, data_root: Any, *, accepted: tuple[str, ...] = (SYNTHETIC,),
                 profile: Any = None, seed: int = 0, num_classes: int = 7,
                 n_train: int | None = None, n_test: int | None = None, require: tuple[str, ...] = (),
                 carve: tuple[str, ...] = ("test", "val"),
                 reader_kwargs: dict | None = None, verbose: bool = True) -> Source:
    """Check the notebook's ``dataset`` / ``data_root``, read a real dataset and fit it to the profile.

    ``num_classes`` 7 drops contempt (canonical 7); ``require`` names further fields a sample must
    have (e.g. ``("valence", "arousal")``); ``carve``: the splits to carve out of train when the
    dataset lacks them (a notebook without model selection passes ``("test",)``); ``n_train`` /
    ``n_test`` override the profile's sizes (``full``: everything). Returns a :class:`Source`;
    parameter errors are raised before any reading.
    """
    name, root, layout = check_dataset(dataset, data_root, tuple(accepted))
    prof = check_profile(profile or "course")
    source = Source(name, root, layout.name if layout else None, prof)
    if source.synthetic:
        return source
    reader: Callable[..., Any] = getattr(F, DATASETS[name].reader)
    samples = reader(root / layout.base, **(reader_kwargs or {}))
    labels = _column(samples, "label")
    usable = np.array([v is not None and 0 <= v < num_classes for v in labels])
    if (~usable).any():
        source.notes.append(f"{int((~usable).sum()):,} of {len(labels):,} samples dropped: no label "
                            f"in the {num_classes} classes used here")
    for key in require:
        present = np.array([v is not None for v in _column(samples, key)])
        if (usable & ~present).any():
            source.notes.append(f"{int((usable & ~present).sum()):,} samples dropped: no {key}")
        usable &= present
    keep = np.flatnonzero(usable)
    labels = labels[keep].astype(np.int64)
    spec = DATASETS[name]
    groups = _column(samples, spec.group)[keep] if spec.group else None
    if groups is not None and any(g is None for g in groups):
        groups = None
    splits = _assign_splits(spec, _column(samples, "split")[keep], labels, groups, seed, source.notes,
                            tuple(carve))
    default = SIZES[prof]
    sizes = None if default is None else {"train": n_train or default[0], "val": n_test or default[1],
                                          "test": n_test or default[1]}
    for salt, split in enumerate(SPLITS):
        limit = None if sizes is None else sizes[split]
        chosen = splits[split][subsample(labels[splits[split]], limit, seed, salt)]
        if len(chosen) < len(splits[split]):
            source.notes.append(f"{split}: {len(chosen):,} of {len(splits[split]):,} samples "
                                f"(profile {prof}, stratified by class)")
        source.splits[split] = keep[chosen]
    source.samples = samples
    if verbose:
        print(source.summary())
        for note in source.notes:
            print("  " + note)
    return source
