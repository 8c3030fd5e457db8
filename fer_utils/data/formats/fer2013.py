"""FER2013 and FER+ (Goodfellow et al. 2013; Barsoum et al. 2016).

FER2013: one CSV, ``fer2013.csv`` with header ``emotion,pixels,Usage``; ``emotion`` 0 Angry ..
6 Neutral, ``pixels`` 2,304 space-separated uint8 (48x48, row-major), ``Usage`` Training /
PublicTest / PrivateTest. The later Kaggle bundle has ``icml_face_data.csv`` (header
``emotion, Usage, pixels``) and ``train.csv`` (emotion,pixels) + ``test.csv`` (pixels only).

FER+: ``fer2013new.csv`` holds ten crowd votes per FER2013 row, **in the same row order**
(header ``Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,
unknown,NF``; an empty ``Image name`` marks a row the authors discarded). The FERPlus
generator script writes ``FER2013{Train,Valid,Test}/`` folders of PNGs plus a headerless
``label.csv`` (image name, then the ten votes).
"""
from __future__ import annotations

import csv
import io
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from fer_utils.data.formats.common import (
    USAGE_TO_SPLIT, SampleList, Tally, as_image, check_image, drop_duplicates, error, finish, inverse,
    list_folder, make_sample, read_text, report_write, save_image, split_of, summary_line,
)
from fer_utils.data.formats.fer2013_csv import (
    FER2013_HEADER, FER_SIDE, N_PIXELS, encode_pixel_rows, parse_fer_csv,
)
from fer_utils.labels import FER2013_TO_CANON

FER_USAGES: tuple[str, ...] = ("Training", "PublicTest", "PrivateTest")
SPLIT_TO_USAGE: dict[str, str] = inverse(USAGE_TO_SPLIT)
ICML_HEADER = "emotion, Usage, pixels"
#: FER+ vote columns in file order; the last two are not emotions.
FERPLUS_COLUMNS: tuple[str, ...] = (
    "neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt",
    "unknown", "NF",
)
FERPLUS_TO_CANON: dict[str, int] = {
    "neutral": 0, "happiness": 4, "surprise": 6, "sadness": 5,
    "anger": 1, "disgust": 2, "fear": 3, "contempt": 7,
}
FERPLUS_HEADER = "Usage,Image name," + ",".join(FERPLUS_COLUMNS)
FERPLUS_FOLDERS: dict[str, str] = {
    "Training": "FER2013Train", "PublicTest": "FER2013Valid", "PrivateTest": "FER2013Test",
}


@dataclass
class ArraySamples:
    """Column storage for the big CSV formats (FER2013, FER+): one numpy array per field.

    ``images`` is (N, 48, 48) uint8; ``labels``/``native_labels`` are int64 with -1
    for "no label"; ``__getitem__`` returns the usual sample dict. ``skipped``,
    ``masked``, ``ignored``, ``notes`` and :meth:`report` as for a SampleList.
    """

    images: np.ndarray
    labels: np.ndarray
    native_labels: np.ndarray
    usage: np.ndarray  # object array of str or None
    files: list[str]
    file_index: np.ndarray
    lines: np.ndarray
    rows: np.ndarray
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    native_names: dict[int, Any] | None = None
    skipped: dict[str, int] = field(default_factory=dict)
    masked: dict[str, int] = field(default_factory=dict)
    ignored: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    reader: str = "fer2013"
    total: int = 0

    def __len__(self) -> int:
        return len(self.images)

    def report(self) -> str:
        return summary_line(self.reader, self.total, len(self), self.skipped, self.masked,
                            self.ignored, self.notes)

    @property
    def split(self) -> np.ndarray:
        return np.array([USAGE_TO_SPLIT.get(u) if u else None for u in self.usage], dtype=object)

    def __getitem__(self, i: int) -> dict:
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        i = int(i) % len(self)
        native, label, usage = int(self.native_labels[i]), int(self.labels[i]), self.usage[i]
        file = self.files[int(self.file_index[i])]
        sample = make_sample(
            image=self.images[i], label=None if label < 0 else label,
            native_label=None if native < 0 else (self.native_names or {}).get(native, native),
            source=f"{file}:line {int(self.lines[i])}", usage=usage,
            split=USAGE_TO_SPLIT.get(usage) if usage else {"train.csv": "train", "test.csv": "test"}.get(
                Path(file).name), row=int(self.rows[i]))
        for key, values in self.extras.items():
            value = values[i]
            sample[key] = None if isinstance(value, float) and math.isnan(value) else value
        return sample

    def __iter__(self):
        return (self[i] for i in range(len(self)))


# ---------------------------------------------------------------------------
# FER2013
# ---------------------------------------------------------------------------

def _check_values(path: Path, values: list[str], allowed: dict | Sequence, column: str,
                  lines: np.ndarray, what: str) -> np.ndarray:
    """Map strings through ``allowed`` (dict keys may be int) and name the first bad row."""
    keys = {str(key): key for key in allowed}
    out = []
    for i, v in enumerate(values):
        if v not in keys:
            raise error(path, f"line {lines[i]} (data row {i}), column {column}", what, v)
        out.append(keys[v])
    return np.array(out, dtype=object)


def _fer2013_files(path: Path, tally: Tally) -> list[Path]:
    """The CSV(s) to read: ``path`` itself, or what a folder (or its ``fer2013/``) holds."""
    if path.is_file():
        return [path]
    expected = "fer2013.csv, icml_face_data.csv or train.csv + test.csv"
    for folder in (path, path / "fer2013"):
        for name in ("fer2013.csv", "icml_face_data.csv"):
            if (folder / name).is_file():
                return [folder / name]
        pair = [folder / n for n in ("train.csv", "test.csv") if (folder / n).is_file()]
        if len(pair) == 1:
            tally.note(f"{folder}: only {pair[0].name} of train.csv + test.csv found")
        if pair:
            return pair
    if not path.exists():
        raise error(path, "path", f"a FER2013 CSV file or a folder holding {expected}, which does not exist")
    raise error(path, "folder", f"{expected} inside")


def read_fer2013(path: str | os.PathLike, *, verbose: bool = True) -> ArraySamples:
    """Read FER2013 from ``fer2013.csv``, ``icml_face_data.csv`` or Kaggle ``train.csv``/``test.csv``.

    ``path`` may be a CSV file or a folder holding one of them (also ``<folder>/fer2013/``,
    torchvision style); with only the Kaggle pair both files are read and ``test.csv``
    rows get ``label=None``. Column names are stripped (`` Usage`` -> ``Usage``).
    Parsing is vectorised (about 1 s for the full 35,887-row file).
    """
    tally = Tally()
    files = _fer2013_files(Path(path), tally)
    parts = []
    for fi, file in enumerate(files):
        parsed = parse_fer_csv(file)
        cols, lines = parsed["columns"], parsed["lines"]
        n = len(lines)
        native = labels = np.full(n, -1, np.int64)
        if "emotion" in cols:
            native = _check_values(file, cols["emotion"], FER2013_TO_CANON, "emotion", lines,
                                   "an emotion id 0..6 (0 Angry .. 6 Neutral)").astype(np.int64)
            labels = np.array([FER2013_TO_CANON[int(v)] for v in native], dtype=np.int64)
        usage = np.full(n, None, dtype=object)
        if "usage" in cols:
            usage = _check_values(file, cols["usage"], FER_USAGES, "Usage", lines,
                                  "Usage Training, PublicTest or PrivateTest")
        parts.append((parsed["images"], labels, native, usage, np.full(n, fi), lines, np.arange(n)))
    cat = [np.concatenate([p[j] for p in parts]) for j in range(7)]
    out = ArraySamples(images=cat[0], labels=cat[1], native_labels=cat[2], usage=cat[3],
                       files=[str(f) for f in files], file_index=cat[4], lines=cat[5], rows=cat[6])
    return finish("fer2013", out, tally, len(out), verbose)


def read_fer2013_rowwise(path: str | os.PathLike) -> ArraySamples:
    """Slow reference: ``csv`` module and a Python loop over rows and pixel values.

    Same result as :func:`read_fer2013` for a ``fer2013.csv``-style file; kept
    for the benchmark and as the readable version of what the fast parser does.
    """
    path = Path(path)
    images, natives, usages, lines = [], [], [], []
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = [c.strip() for c in next(reader)]
        pcol, ecol, ucol = header.index("pixels"), header.index("emotion"), header.index("Usage")
        for row in reader:
            values = [int(p) for p in row[pcol].split()]
            if len(values) != N_PIXELS or min(values) < 0 or max(values) > 255:
                raise error(path, f"line {reader.line_num}", "2304 pixel values 0..255")
            images.append(np.array(values, dtype=np.uint8).reshape(FER_SIDE, FER_SIDE))
            natives.append(int(row[ecol]))
            usages.append(row[ucol])
            lines.append(reader.line_num)
    native = np.array(natives, dtype=np.int64)
    labels = np.array([FER2013_TO_CANON[v] for v in natives], dtype=np.int64)
    n = len(images)
    return ArraySamples(images=np.stack(images), labels=labels, native_labels=native,
                        usage=np.array(usages, dtype=object), files=[str(path)],
                        file_index=np.zeros(n, int), lines=np.array(lines), rows=np.arange(n), total=n)


def _fer_rows(samples: Iterable[dict], default_usage: str, skipped: Counter) -> tuple[list[dict], np.ndarray]:
    """Samples with a FER2013 class (each gets ``_usage``), plus their 48x48 gray images."""
    kept, images = [], []
    native_of = inverse(FER2013_TO_CANON)
    for s in samples:
        label = s.get("label")
        if label not in native_of:
            skipped["no FER2013 class (None or contempt)" if label in (None, 7) else f"label {label}"] += 1
            continue
        s["_usage"] = SPLIT_TO_USAGE.get(split_of(s, USAGE_TO_SPLIT[default_usage]), default_usage)
        kept.append(s)
        images.append(np.asarray(as_image(s["image"], gray=True, size=FER_SIDE)))
    arr = np.stack(images) if images else np.zeros((0, FER_SIDE, FER_SIDE), np.uint8)
    return kept, arr


def write_fer2013(samples: Iterable[dict], path: str | os.PathLike, *, variant: str = "fer2013",
                  usage: str = "Training", verbose: bool = True) -> Path:
    """Write samples as FER2013: 48x48 grayscale, native emotion ids, one CSV row each.

    variant ``"fer2013"`` writes ``fer2013.csv`` (header ``emotion,pixels,Usage``),
    ``"icml"`` writes ``icml_face_data.csv`` (header ``emotion, Usage, pixels``),
    ``"kaggle"`` writes ``train.csv`` (Training rows, ``emotion,pixels``) and
    ``test.csv`` (the other rows, ``pixels`` only). ``path`` is a folder, or the
    CSV file itself for the single-file variants. Usage comes from each sample's
    ``usage``/``split`` (train/val/test -> Training/PublicTest/PrivateTest) or ``usage``.
    Samples without a FER2013 class (None, contempt) are skipped and counted.
    """
    if variant not in ("fer2013", "icml", "kaggle"):
        raise ValueError(f"variant must be 'fer2013', 'icml' or 'kaggle', got {variant!r}")
    path = Path(path)
    skipped: Counter = Counter()
    rows, images = _fer_rows([dict(s) for s in samples], usage, skipped)
    pixels = encode_pixel_rows(images)
    native = [inverse(FER2013_TO_CANON)[s["label"]] for s in rows]
    if variant == "kaggle":
        out = path
        out.mkdir(parents=True, exist_ok=True)
        train = [f"{e},{p}\n" for s, e, p in zip(rows, native, pixels) if s["_usage"] == "Training"]
        test = [f"{p}\n" for s, p in zip(rows, pixels) if s["_usage"] != "Training"]
        (out / "train.csv").write_text("emotion,pixels\n" + "".join(train), newline="")
        (out / "test.csv").write_text("pixels\n" + "".join(test), newline="")
    else:
        name = "fer2013.csv" if variant == "fer2013" else "icml_face_data.csv"
        out = path / name if path.suffix.lower() != ".csv" else path
        out.parent.mkdir(parents=True, exist_ok=True)
        if variant == "fer2013":
            lines = [f"{e},{p},{s['_usage']}\n" for s, e, p in zip(rows, native, pixels)]
        else:
            lines = [f"{e},{s['_usage']},{p}\n" for s, e, p in zip(rows, native, pixels)]
        header = FER2013_HEADER if variant == "fer2013" else ICML_HEADER
        out.write_text(header + "\n" + "".join(lines), newline="")
    report_write("fer2013", skipped, verbose)
    return out


# ---------------------------------------------------------------------------
# FER+
# ---------------------------------------------------------------------------

def ferplus_majority(votes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Official FER+ "majority" rule on (N, 10) votes in FERPLUS_COLUMNS order.

    Votes of 1 are zeroed (outlier removal); the top column must then hold more
    than half of the remaining votes, otherwise the row is "unknown". Returns
    (column index 0..9 with 8 = unknown, soft 8-emotion distribution in file order).
    """
    v = np.where(votes <= 1, 0, votes).astype(np.float64)
    total = v.sum(1)
    winner = np.where(v.max(1) > 0.5 * total, v.argmax(1), 8)
    emo = v[:, :8]
    s = emo.sum(1, keepdims=True)
    soft = np.divide(emo, s, out=np.zeros_like(emo), where=s > 0).astype(np.float32)
    return winner, soft


def _ferplus_keep(votes: np.ndarray, names: list[str], tally: Tally) -> tuple[np.ndarray, np.ndarray]:
    """Rows to keep (counting the others in ``tally.skipped``) and the winning column of each row."""
    winner, _ = ferplus_majority(votes)
    empty = np.array([not n for n in names], dtype=bool)
    raw_top = votes.argmax(1)
    rest = ~empty
    for label, mask in (("empty Image name", empty), ("unknown", rest & (winner == 8) & (raw_top == 8)),
                        ("NF", rest & (winner == 9)),
                        ("no majority (>50% after removing 1-vote classes)",
                         rest & (winner == 8) & (raw_top != 8))):
        if mask.any():
            tally.skipped[label] += int(mask.sum())
    return rest & (winner < 8), winner


def _canon_soft(votes: np.ndarray) -> np.ndarray:
    """The (N, 8) FER+ vote distribution (1-vote outliers removed) in canonical class order."""
    soft = ferplus_majority(votes)[1]
    out = np.zeros_like(soft)
    for j, name in enumerate(FERPLUS_COLUMNS[:8]):
        out[:, FERPLUS_TO_CANON[name]] = soft[:, j]
    return out


def _read_votes(path: Path, first: int, tally: Tally) -> tuple[list[int], list[list[str]], np.ndarray]:
    """Line numbers, rows and (N, 10) int votes of a FER+ vote file (header checked when
    ``first`` is 2, i.e. ``fer2013new.csv``; ``label.csv`` has none)."""
    text = read_text(path, "FER+ votes", tally)
    reader = csv.reader(io.StringIO(text))
    rows = [(reader.line_num, row) for row in reader if any(c.strip() for c in row)]
    if not rows:
        raise error(path, "line 1", "FER+ vote rows (the file is empty)")
    if first == 2:
        header = ",".join(c.strip() for c in rows[0][1])
        if header != FERPLUS_HEADER:
            raise error(path, "line 1 (header)", repr(FERPLUS_HEADER), header)
        rows = rows[1:]
        if not rows:
            raise error(path, "line 2", "FER+ vote rows after the header")
    votes = np.zeros((len(rows), 10), np.int64)
    for i, (line, row) in enumerate(rows):
        if len(row) != first + 10:
            raise error(path, f"line {line}", f"{first + 10} comma-separated fields", ",".join(row))
        try:
            votes[i] = [int(float(c)) for c in row[first:]]
        except ValueError:
            raise error(path, f"line {line}", "10 integer vote counts 0..10", ",".join(row[first:])) from None
        if not ((votes[i] >= 0) & (votes[i] <= 10)).all():
            raise error(path, f"line {line}", "vote counts 0..10", ",".join(row[first:]))
    return [r[0] for r in rows], [[c.strip() for c in r[1]] for r in rows], votes


def _ferplus_pixels(csv_path: Path, fer2013: str | os.PathLike | None, lines: list[int],
                    usage: list[str]) -> ArraySamples:
    """The FER2013 rows FER+ labels, checked to line up with ``fer2013new.csv`` row by row."""
    if fer2013 is None:
        fer2013 = next((c for c in (csv_path.parent / n for n in ("fer2013.csv", "icml_face_data.csv"))
                        if c.is_file()), None)
        if fer2013 is None:
            raise error(csv_path, "pixels", "fer2013.csv next to fer2013new.csv (FER+ has labels only), "
                        "or pass fer2013=...")
    fer = read_fer2013(fer2013, verbose=False)
    if len(fer) != len(lines):
        raise error(csv_path, f"{len(lines)} data rows",
                    f"the same number of rows as {fer2013} ({len(fer)}): FER+ joins by row position")
    for i, u in enumerate(usage):
        if fer.usage[i] is not None and fer.usage[i] != u:
            raise error(csv_path, f"line {lines[i]} (data row {i})",
                        f"Usage {fer.usage[i]!r} as in {fer2013} line {fer.lines[i]}", u)
    return fer


def read_ferplus(path: str | os.PathLike, fer2013: str | os.PathLike | None = None, *,
                 verbose: bool = True) -> ArraySamples | SampleList:
    """Read FER+ labels (majority vote) with their FER2013 pixels.

    ``path`` is ``fer2013new.csv`` (or its folder); pixels come from ``fer2013``
    (default: ``fer2013.csv``/``icml_face_data.csv`` next to it), joined **by row
    position**. Alternatively ``path`` is a folder with ``FER2013Train/``,
    ``FER2013Valid/``, ``FER2013Test/`` (PNGs + headerless ``label.csv``), one
    of those folders or its ``label.csv``. Rows with an empty ``Image name``, and rows whose majority is
    unknown or NF (or that have no majority), are dropped and counted in ``skipped``.
    Extras: ``votes`` (10,) in file order, ``soft_label`` (8,) canonical order,
    ``image_name``; csv form also ``fer2013_label`` (canonical) and ``row``.
    """
    path = Path(path)
    if path.is_dir() and not (path / "fer2013new.csv").exists():
        return _read_ferplus_folders(path, verbose)
    if path.name == "label.csv" and path.is_file():
        return _read_ferplus_folders(path.parent, verbose)
    csv_path = path / "fer2013new.csv" if path.is_dir() else path
    tally = Tally()
    lines, rows, votes = _read_votes(csv_path, 2, tally)
    usage, names = [r[0] for r in rows], [r[1] for r in rows]
    for line, u in zip(lines, usage):
        if u not in FER_USAGES:
            raise error(csv_path, f"line {line}", "Usage Training, PublicTest or PrivateTest", u)
    fer = _ferplus_pixels(csv_path, fer2013, lines, usage)
    keep, winners = _ferplus_keep(votes, names, tally)
    idx = np.flatnonzero(keep)
    win = winners[idx]
    result = ArraySamples(
        images=fer.images[idx], labels=np.array([FERPLUS_TO_CANON[FERPLUS_COLUMNS[w]] for w in win], np.int64),
        native_labels=win.astype(np.int64), usage=np.array(usage, dtype=object)[idx],
        files=[str(csv_path)], file_index=np.zeros(len(idx), int), lines=np.array(lines)[idx], rows=idx,
        extras={"votes": votes[idx], "soft_label": _canon_soft(votes[idx]),
                "image_name": np.array(names, dtype=object)[idx],
                "fer2013_label": np.array([None if v < 0 else int(v) for v in fer.labels[idx]], dtype=object)},
        native_names=dict(enumerate(FERPLUS_COLUMNS)), reader="ferplus")
    return finish("ferplus", result, tally, len(rows), verbose)


def _ferplus_split_folders(path: Path, tally: Tally) -> list[Path]:
    """The ``FER2013{Train,Valid,Test}`` folders to read (``path`` may be one of them)."""
    if path.name in FERPLUS_FOLDERS.values() or (path / "label.csv").exists():
        return [path]
    entries = {p.name: p for p in list_folder(path, tally, "FER+ FER2013Train/ FER2013Valid/ FER2013Test/")}
    found = [entries[f] for f in FERPLUS_FOLDERS.values() if f in entries]
    if not found:
        raise error(path, "folder", "fer2013new.csv, or FER2013Train/, FER2013Valid/, FER2013Test/ "
                    "folders each holding label.csv")
    missing = [f for f in FERPLUS_FOLDERS.values() if f not in entries]
    if missing:
        tally.note(f"{path}: split folder(s) {', '.join(missing)} missing")
    return found


def _read_ferplus_folders(path: Path, verbose: bool) -> SampleList:
    tally = Tally()
    samples, total = [], 0
    usage_of = inverse(FERPLUS_FOLDERS)
    for folder in _ferplus_split_folders(path, tally):
        label_csv = folder / "label.csv"
        lines, rows, votes = _read_votes(label_csv, 1, tally)
        names = [r[0] for r in rows]
        keep, winners = _ferplus_keep(votes, names, tally)
        soft = _canon_soft(votes)
        total += len(rows)
        usage = usage_of.get(folder.name)
        for i in np.flatnonzero(keep):
            img = folder / names[i]
            check_image(img, label_csv, f"line {lines[i]}")
            w = int(winners[i])
            samples.append(make_sample(
                image=str(img), path=str(img), label=FERPLUS_TO_CANON[FERPLUS_COLUMNS[w]],
                native_label=FERPLUS_COLUMNS[w], source=f"{label_csv}:line {lines[i]}",
                split=USAGE_TO_SPLIT.get(usage) if usage else None, usage=usage,
                votes=votes[i], soft_label=soft[i], image_name=names[i]))
    samples = drop_duplicates(samples, lambda s: s["path"], tally, label=lambda s: tuple(s["votes"]))
    return finish("ferplus", SampleList(samples), tally, total, verbose)


def _votes_for(sample: dict) -> np.ndarray:
    """A sample's FER+ votes, or 10 votes for its label (``unknown`` when it has none)."""
    if sample.get("votes") is not None:
        return np.asarray(sample["votes"], dtype=np.int64)
    votes = np.zeros(10, np.int64)
    column = inverse(FERPLUS_TO_CANON).get(sample.get("label"), "unknown")
    votes[FERPLUS_COLUMNS.index(column)] = 10
    return votes


def _ferplus_rows(samples: Iterable[dict], usage: str, skipped: Counter) -> list[dict]:
    """Samples with ``label`` = their FER2013 class (``_usage``, ``_name`` filled in)."""
    native_of = inverse(FER2013_TO_CANON)
    rows = []
    for i, s in enumerate(samples):
        fer_label = s.get("fer2013_label")
        if fer_label is None:
            fer_label = s.get("label")
        if fer_label not in native_of:
            skipped["fer2013.csv emotion 6 (Neutral) for rows without a FER2013 class"] += 1
            fer_label = 0
        name = s["image_name"] if s.get("image_name") is not None else f"fer{i:07d}.png"
        rows.append(dict(s, label=fer_label, _name=name,
                         _usage=SPLIT_TO_USAGE.get(split_of(s, USAGE_TO_SPLIT[usage]), usage)))
    return rows


def write_ferplus(samples: Iterable[dict], root: str | os.PathLike, *, layout: str = "csv",
                  usage: str = "Training", verbose: bool = True) -> Path:
    """Write FER+ labels: ``layout="csv"`` gives ``fer2013.csv`` + ``fer2013new.csv``
    (same row order); ``layout="folders"`` gives ``FER2013{Train,Valid,Test}/`` with
    ``fer%07d.png`` images and a headerless ``label.csv``.

    Votes come from a sample's ``votes`` (10 ints, FER+ column order) or are 10 votes
    for its label (``unknown`` when it has none). ``image_name`` (may be empty, as for
    the rows the FER+ authors discarded) defaults to ``fer%07d.png`` by row.
    ``fer2013.csv`` needs an emotion 0..6 in every row: it is the sample's
    ``fer2013_label`` (canonical id) if given, else its label; rows with neither
    (contempt, None) get FER2013 emotion 6 (Neutral) there, and that count is printed.
    """
    if layout not in ("csv", "folders"):
        raise ValueError(f"layout must be 'csv' or 'folders', got {layout!r}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    skipped: Counter = Counter()
    rows = _ferplus_rows(samples, usage, skipped)
    votes = [",".join(str(int(v)) for v in _votes_for(s)) for s in rows]
    if layout == "csv":
        write_fer2013(rows, root / "fer2013.csv", usage=usage, verbose=False)
        lines = [f"{s['_usage']},{s['_name']},{v}\n" for s, v in zip(rows, votes)]
        (root / "fer2013new.csv").write_text(FERPLUS_HEADER + "\n" + "".join(lines), newline="")
    else:
        per_folder: dict[str, list[str]] = {}
        for s, v in zip(rows, votes):
            if not s["_name"]:
                skipped["empty image_name (no PNG in folder layout)"] += 1
                continue
            folder = FERPLUS_FOLDERS[s["_usage"]]
            save_image(s["image"], root / folder / s["_name"], gray=True, size=FER_SIDE)
            per_folder.setdefault(folder, []).append(f"{s['_name']},{v}\n")
        for folder, lines in per_folder.items():
            (root / folder / "label.csv").write_text("".join(lines), newline="")
    report_write("ferplus", skipped, verbose)
    return root
