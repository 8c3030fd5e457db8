"""Readers and writers for the on-disk layouts of the real FER datasets.

The course ships no real data, so every reader here is exercised by exporting
synthetic samples with the matching writer and reading them back. A user with
the real data points a reader at it and gets the same sample fields.
Layouts follow ``shared/reference/datasets.md`` (sections in brackets).

======================  ============================================================  =========  =========  =====
format (reader/writer)  layout on disk                                                labels     VA         AUs
======================  ============================================================  =========  =========  =====
``fer2013``  [1]        ``fer2013.csv`` (emotion,pixels,Usage); ``icml_face_data.csv``  7          -          -
                        (`` Usage``/`` pixels``); Kaggle ``train.csv`` + ``test.csv``
``ferplus``  [2]        ``fer2013new.csv`` joined with ``fer2013.csv`` by row           8          -          -
                        position, or ``FER2013{Train,Valid,Test}/label.csv`` + PNGs
``rafdb``    [3]        ``EmoLabel/list_patition_label.txt`` +                          7          -          -
                        ``Image/aligned/<name>_aligned.jpg``
``affectnet`` [4]       ``Manually_Annotated_file_lists/{training,validation}.csv`` +   8 (+3      yes (-2    -
                        ``Manually_Annotated_Images/<sub>/<file>.jpg``                  dropped)   = none)
``ckplus``   [5]        ``cohn-kanade-images/Sxxx/yyy/*.png``, ``Emotion/``,            8 ids      -          FACS
                        ``FACS/``, ``Landmarks/`` text files in ``%.7e`` notation
``oulu``     [6]        ``OriginalImg/VL/Strong/Pxxx/<Class>/000.jpeg``                 6          -          -
``jaffe``    [7]        flat folder ``<POSER>.<EX><n>.<id>.tiff``                       7          -          -
``ferg``     [9]        ``FERG_DB_256/<char>/<char>_<expr>/<char>_<expr>_<n>.png``      7          -          -
``affwild2`` [8]        ``cropped_aligned/<video>/00001.jpg`` + ABAW per-video txt      7 (+Other  yes (-5    8/12
                        files (ABAW1, ABAW2 and ABAW3+ folder names)                    dropped)   = none)    (-1)
======================  ============================================================  =========  =========  =====

Samples
-------
Every reader returns a sequence of sample dicts with the same keys as a
SynthFaces item, plus provenance::

    image        uint8 array (CSV formats), or the image file path as a str
                 (folder formats: loaded lazily by FormatDataset / load_image)
    path         image file path (str) or None when pixels live in a CSV
    label        canonical class id (fer_utils.labels.CLASSES) or None
    native_label the dataset's own id or name, untouched
    valence, arousal        float in [-1, 1] or None
    aus          float32 (17,) intensities in fer_utils.labels.AUS order, or None
    au_presence  bool (17,) or None;  au_mask bool (17,): which AUs the file annotates
    landmarks    float32 (68, 2) pixel (x, y) or None
    identity     int subject id where the format has one, else None
    source       where it came from, e.g. "fer2013.csv:line 19"
    split        "train" / "val" / "test" where the format says, else None
    + format extras (usage, votes, face_box, video, frame, subject, ...)

A missing field is ``None``; nothing is invented. Line numbers are 1-based
physical lines of the file (a CSV header is line 1, so data row 0 is line 2).

Skips and sentinels
-------------------
A reader never drops a row silently. Each result carries two dicts:
``skipped`` (reason -> number of rows dropped, e.g. FER+ ``unknown``) and
``masked`` (reason -> number of fields set to None by a documented sentinel,
e.g. AffectNet valence ``-2``). When either is non-empty the reader prints one
line, e.g. ``read_ferplus: kept 35 of 40 rows; skipped unknown=3, NF=2``
(pass ``verbose=False`` to silence it; the dicts are always filled).
Writers print the same kind of line when a sample cannot be represented in
the target format (e.g. contempt in Oulu-CASIA) and return the path written.

Bad input raises :class:`FormatError` naming the file, the line and what was
expected.

Writers take any iterable of sample dicts (SynthFaces items work as they are)
and write the documented layout under the path given; each returns that path.
Sequence formats (CK+, Oulu-CASIA, Aff-Wild2) group frames by ``identity`` plus
an optional ``sequence`` / ``video`` key and order them by ``frame`` when given,
e.g. ``write_ckplus([dict(f, sequence=0) for f in faces.sequence(3, 4, 10)], root)``.

``FormatDataset(samples)`` wraps any reader's output as a torch Dataset (images
loaded lazily, AffectNet images cropped to their face box); use
``collate_samples`` as the DataLoader's ``collate_fn``. ``READERS`` / ``WRITERS``
map format names to the functions, ``LABEL_MAPS`` to the native -> canonical maps.
"""
from __future__ import annotations

import csv
import hashlib
import io
import math
import os
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
from PIL import Image

from fer_utils.labels import ABAW_AUS, AUS, CLASSES

# ---------------------------------------------------------------------------
# Label maps: native id/name -> canonical id. The one place for them.
# ---------------------------------------------------------------------------

#: FER2013 ``emotion`` 0 Angry .. 6 Neutral.
FER2013_TO_CANON: dict[int, int] = {0: 1, 1: 2, 2: 3, 3: 4, 4: 5, 5: 6, 6: 0}
#: FER+ vote columns in file order; the last two are not emotions.
FERPLUS_COLUMNS: tuple[str, ...] = (
    "neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt",
    "unknown", "NF",
)
FERPLUS_TO_CANON: dict[str, int] = {
    "neutral": 0, "happiness": 4, "surprise": 6, "sadness": 5,
    "anger": 1, "disgust": 2, "fear": 3, "contempt": 7,
}
#: RAF-DB basic, 1-based ids: 1 Surprise .. 7 Neutral.
RAFDB_TO_CANON: dict[int, int] = {1: 6, 2: 3, 3: 2, 4: 4, 5: 5, 6: 1, 7: 0}
#: AffectNet ``expression`` 0..7; 8 None, 9 Uncertain, 10 No-Face are dropped.
AFFECTNET_TO_CANON: dict[int, int] = {0: 0, 1: 4, 2: 5, 3: 6, 4: 3, 5: 2, 6: 1, 7: 7}
AFFECTNET_DROPPED: dict[int, str] = {8: "None", 9: "Uncertain", 10: "No-Face"}
#: CK+ ``_emotion.txt`` ids: 0 neutral, 1 anger, 2 contempt, 3 disgust, 4 fear, 5 happy, 6 sadness, 7 surprise.
CKPLUS_TO_CANON: dict[int, int] = {0: 0, 1: 1, 2: 7, 3: 2, 4: 3, 5: 4, 6: 5, 7: 6}
#: Oulu-CASIA class folders (no neutral, no contempt).
OULU_TO_CANON: dict[str, int] = {
    "Anger": 1, "Disgust": 2, "Fear": 3, "Happiness": 4, "Sadness": 5, "Surprise": 6,
}
#: JAFFE expression codes (first two letters of the second dot field).
JAFFE_TO_CANON: dict[str, int] = {"NE": 0, "AN": 1, "DI": 2, "FE": 3, "HA": 4, "SA": 5, "SU": 6}
#: FERG-DB class folder suffixes ("joy" is happiness).
FERG_TO_CANON: dict[str, int] = {
    "anger": 1, "disgust": 2, "fear": 3, "joy": 4, "neutral": 0, "sadness": 5, "surprise": 6,
}
#: Aff-Wild2 EXPR ids 0..6 are already canonical; 7 is "Other" (ABAW3+), NOT contempt.
AFFWILD2_TO_CANON: dict[int, int] = {i: i for i in range(7)}
AFFWILD2_OTHER = 7

LABEL_MAPS: dict[str, dict] = {
    "fer2013": FER2013_TO_CANON, "ferplus": FERPLUS_TO_CANON, "rafdb": RAFDB_TO_CANON,
    "affectnet": AFFECTNET_TO_CANON, "ckplus": CKPLUS_TO_CANON, "oulu": OULU_TO_CANON,
    "jaffe": JAFFE_TO_CANON, "ferg": FERG_TO_CANON, "affwild2": AFFWILD2_TO_CANON,
}


def _inverse(mapping: dict) -> dict:
    return {v: k for k, v in mapping.items()}


#: FER2013 ``Usage`` values and the split each one means (FERPlus folder names too).
FER_USAGES: tuple[str, ...] = ("Training", "PublicTest", "PrivateTest")
USAGE_TO_SPLIT: dict[str, str] = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
SPLIT_TO_USAGE: dict[str, str] = {v: k for k, v in USAGE_TO_SPLIT.items()}
FERPLUS_FOLDERS: dict[str, str] = {
    "Training": "FER2013Train", "PublicTest": "FER2013Valid", "PrivateTest": "FER2013Test",
}
FER2013_HEADER = "emotion,pixels,Usage"
ICML_HEADER = "emotion, Usage, pixels"
FERPLUS_HEADER = "Usage,Image name," + ",".join(FERPLUS_COLUMNS)
AFFECTNET_HEADER = ("subDirectory_filePath,face_x,face_y,face_width,face_height,"
                    "facial_landmarks,expression,valence,arousal")
JAFFE_POSERS: tuple[str, ...] = ("KA", "KL", "KM", "KR", "MK", "NA", "NM", "TM", "UY", "YM")
#: Poser codes for identities beyond the 10 real posers (writers only need a bijection).
_JAFFE_CODES: tuple[str, ...] = JAFFE_POSERS + tuple(
    a + b for a in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" for b in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    if a + b not in JAFFE_POSERS)
FERG_CHARACTERS: tuple[str, ...] = ("aia", "bonnie", "jules", "malcolm", "mery", "ray")
ABAW1_AUS: tuple[int, ...] = (1, 2, 4, 6, 12, 15, 20, 25)
ABAW_EXPR_NAMES: tuple[str, ...] = (
    "Neutral", "Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise", "Other")
#: Aff-Wild2 folder names per edition: task -> folder, split -> folder.
ABAW_EDITIONS: dict[str, dict[str, Any]] = {
    "abaw1": {"top": "annotations", "VA": "VA_Set", "EXPR": "EXPR_Set", "AU": "AU_Set",
              "train": "Training_Set", "val": "Validation_Set", "classes": 7, "aus": ABAW1_AUS},
    "abaw2": {"top": "annotations", "VA": "VA_Set", "EXPR": "EXPR_Set", "AU": "AU_Set",
              "train": "Train_Set", "val": "Validation_Set", "classes": 7, "aus": ABAW_AUS},
    "abaw3": {"top": "Third ABAW Annotations", "VA": "VA_Estimation_Challenge",
              "EXPR": "EXPR_Classification_Challenge", "AU": "AU_Detection_Challenge",
              "train": "Train_Set", "val": "Validation_Set", "classes": 8, "aus": ABAW_AUS},
}
_ABAW_TASK_DIRS: dict[str, tuple[str, ...]] = {
    "VA": ("VA_Set", "VA_Estimation_Challenge"),
    "EXPR": ("EXPR_Set", "EXPR_Classification_Challenge", "EXPR_Recognition_Challenge"),
    "AU": ("AU_Set", "AU_Detection_Challenge"),
}
_ABAW_SPLIT_DIRS: dict[str, tuple[str, ...]] = {
    "train": ("Train_Set", "Training_Set"), "val": ("Validation_Set",),
}
FER_SIDE = 48
N_PIXELS = FER_SIDE * FER_SIDE
_AU_INDEX = {au: i for i, au in enumerate(AUS)}
_IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp"}


class FormatError(ValueError):
    """Bad dataset input; the message names the file, the line/row and what was expected."""


def _error(path: str | os.PathLike, where: str, expected: str, got: Any = None) -> FormatError:
    msg = f"{path}, {where}: expected {expected}"
    if got is not None:
        text = repr(got)
        msg += f", got {text[:80] + '...' if len(text) > 80 else text}"
    return FormatError(msg)


# ---------------------------------------------------------------------------
# Sample containers and reporting
# ---------------------------------------------------------------------------

def make_sample(**fields: Any) -> dict:
    """A sample dict with every common key present (``None`` unless given)."""
    sample = {key: None for key in (
        "image", "path", "label", "native_label", "valence", "arousal", "aus", "au_presence",
        "au_mask", "landmarks", "identity", "source", "split")}
    sample.update(fields)
    return sample


class SampleList(list):
    """A list of sample dicts plus ``skipped`` and ``masked`` counts (reason -> count)."""

    def __init__(self, items: Iterable[dict] = (), *, skipped: dict | None = None,
                 masked: dict | None = None) -> None:
        super().__init__(items)
        self.skipped: dict[str, int] = dict(skipped or {})
        self.masked: dict[str, int] = dict(masked or {})


@dataclass
class ArraySamples:
    """Column storage for the big CSV formats (FER2013, FER+): one numpy array per field.

    ``images`` is (N, 48, 48) uint8; ``labels``/``native_labels`` are int64 with -1
    for "no label"; ``__getitem__`` returns the usual sample dict.
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

    def __len__(self) -> int:
        return len(self.images)

    @property
    def split(self) -> np.ndarray:
        return np.array([USAGE_TO_SPLIT.get(u) if u else None for u in self.usage], dtype=object)

    def __getitem__(self, i: int) -> dict:
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        i = int(i) % len(self)
        native = int(self.native_labels[i])
        label = int(self.labels[i])
        usage = self.usage[i]
        file = self.files[int(self.file_index[i])]
        sample = make_sample(
            image=self.images[i], label=None if label < 0 else label,
            native_label=None if native < 0 else (self.native_names or {}).get(native, native),
            source=f"{file}:line {int(self.lines[i])}", usage=usage,
            split=USAGE_TO_SPLIT.get(usage) if usage else _kaggle_split(file),
            row=int(self.rows[i]))
        for key, values in self.extras.items():
            value = values[i]
            sample[key] = None if isinstance(value, float) and math.isnan(value) else value
        return sample

    def __iter__(self):
        return (self[i] for i in range(len(self)))


def _kaggle_split(file: str) -> str | None:
    name = Path(file).name
    return {"train.csv": "train", "test.csv": "test"}.get(name)


def _report(name: str, total: int, kept: int, skipped: dict, masked: dict, verbose: bool) -> None:
    """Print the one-line skip/mask summary (only when something was skipped or masked)."""
    if not verbose or not (skipped or masked):
        return
    parts = [f"read_{name}: kept {kept:,} of {total:,} rows"]
    if skipped:
        parts.append("skipped " + ", ".join(f"{k}={v:,}" for k, v in skipped.items()))
    if masked:
        parts.append("set to None " + ", ".join(f"{k}={v:,}" for k, v in masked.items()))
    print("; ".join(parts))


def _report_write(name: str, skipped: Counter, verbose: bool = True) -> None:
    if verbose and skipped:
        print(f"write_{name}: " + ", ".join(f"{k}={v:,}" for k, v in skipped.items()))


# ---------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------

def load_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as uint8: (H, W) for grayscale files, (H, W, 3) otherwise."""
    try:
        with Image.open(path) as im:
            if im.mode in ("L", "1", "I", "I;16", "F"):
                return np.asarray(im.convert("L"))
            return np.asarray(im.convert("RGB"))
    except FileNotFoundError:
        raise
    except Exception as exc:  # PIL raises many types for broken files
        raise FormatError(f"{path}: expected a readable image file ({exc})") from exc


def _as_image(image: Any, *, gray: bool = False, size: int | tuple[int, int] | None = None) -> Image.Image:
    """A sample image (array or path) as a PIL image, optionally grayscale and resized."""
    if isinstance(image, (str, os.PathLike)):
        image = load_image(image)
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        if arr.dtype.kind == "f" and arr.max(initial=0) <= 1.0:
            arr = arr * 255.0
        arr = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    im = Image.fromarray(arr)
    if gray and im.mode != "L":
        im = im.convert("L")
    if size is not None:
        wh = (size, size) if isinstance(size, int) else (size[1], size[0])
        if im.size != wh:
            im = im.resize(wh, Image.BILINEAR)
    return im


def _save(image: Any, path: Path, *, gray: bool = False, size: Any = None, **kw: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    _as_image(image, gray=gray, size=size).save(path, **kw)


_JPEG = {"quality": 95}


def _required(sample: dict, key: str, i: int, writer: str) -> Any:
    value = sample.get(key)
    if value is None:
        raise ValueError(f"write_{writer}: sample {i} has no {key!r}, which the layout needs")
    return value


def _split_of(sample: dict, default: str) -> str:
    """Normalise a sample's split/usage to train / val / test."""
    value = sample.get("split") or sample.get("usage") or default
    value = USAGE_TO_SPLIT.get(value, value)
    aliases = {"training": "train", "validation": "val", "valid": "val", "testing": "test"}
    return aliases.get(str(value).lower(), str(value).lower())


# ---------------------------------------------------------------------------
# FER2013 (vectorised CSV parsing)
# ---------------------------------------------------------------------------

def _read_text_bytes(path: Path) -> bytes:
    raw = path.read_bytes()
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    if not raw or raw.isspace():
        raise _error(path, "line 1", "a header line and data rows (the file is empty)")
    return raw


def _pixel_row_problem(text: str) -> str | None:
    """Why one pixel string is bad (slow path used only to name the first bad row)."""
    values = text.strip().strip('"').split()
    for v in values:
        if not v.isdigit() or not v.isascii():
            return f"2304 space-separated integers 0..255, found non-integer {v!r}"
        if int(v) > 255:
            return f"pixel values 0..255, found {v}"
    if len(values) != N_PIXELS:
        return f"{N_PIXELS} pixel values (48x48), got {len(values)}"
    return None


def _parse_pixel_fields(b: np.ndarray, ps: np.ndarray, pe: np.ndarray, path: Path,
                        lines: np.ndarray, rows_per_chunk: int = 256) -> np.ndarray:
    """Parse N pixel fields b[ps[i]:pe[i]] (digits and spaces) into (N, 2304) uint8.

    Works on chunks of rows with whole-array numpy operations: digit runs are
    found with a shifted comparison and each value is rebuilt from at most
    three digits. Counts, characters and ranges are validated per chunk; only
    a failing chunk is re-scanned row by row to name the first bad row.
    """
    n = len(ps)
    out = np.empty((n, N_PIXELS), np.uint8)
    bounds = list(range(0, n, rows_per_chunk)) + [n]
    longest = max((pe[i1 - 1] - ps[i0] + 2 for i0, i1 in zip(bounds[:-1], bounds[1:])), default=0)
    # work buffers reused by every chunk (fresh large arrays would page-fault each time)
    d_buf = np.empty(longest, np.uint8)
    isd_buf = np.empty(longest, bool)
    end_buf = np.empty(longest, bool)
    tmp_buf = np.empty(longest, bool)
    for i0, i1 in zip(bounds[:-1], bounds[1:]):
        base = ps[i0] - 1
        c = b[base:pe[i1 - 1] + 1]
        m = len(c)
        d = np.subtract(c, np.uint8(48), out=d_buf[:m])
        isd = np.less(d, 10, out=isd_buf[:m])
        # bytes between one row's pixel field and the next (other columns, newline)
        gs = pe[i0:i1 - 1] - base
        ge = ps[i0 + 1:i1] - base
        ln = ge - gs
        gap = np.arange(ln.sum()) + np.repeat(gs - np.concatenate(([0], np.cumsum(ln)[:-1])), ln)
        gc = c[gap]
        n_ok = np.count_nonzero(isd) + np.count_nonzero(np.equal(c, 32, out=tmp_buf[:m]))
        n_gap_ok = np.count_nonzero(((gc - np.uint8(48)) < 10) | (gc == 32))
        n_edge_ok = int(isd[0] or c[0] == 32) + int(isd[-1] or c[-1] == 32)
        ok = n_ok - n_gap_ok - n_edge_ok == m - len(gap) - 2
        if ok:
            isd[gap] = False
            isd[0] = isd[-1] = False
            endmask = end_buf[:m]
            np.invert(isd[1:], out=endmask[:-1])
            endmask[:-1] &= isd[:-1]
            endmask[-1] = False
            e = np.flatnonzero(endmask)
            counts = np.diff(np.searchsorted(e, np.concatenate(([0], gs, [m]))))
            ok = bool((counts == N_PIXELS).all())
        if ok:
            d1 = isd[e - 1]
            d12 = d1 & isd[e - 2]
            ok = not (d12 & isd[e - 3]).any()
        if ok:
            v = d[e].astype(np.int16)
            v += 10 * (d[e - 1] * d1).astype(np.int16)
            v += 100 * (d[e - 2] * d12).astype(np.int16)
            ok = int(v.max()) <= 255
        if not ok:
            for i in range(i0, i1):
                text = bytes(b[ps[i]:pe[i]]).decode("latin-1")
                problem = _pixel_row_problem(text)
                if problem:
                    raise _error(path, f"line {lines[i]} (data row {i}), column pixels", problem)
            raise _error(path, f"lines {lines[i0]}-{lines[i1 - 1]}", "valid pixel strings")  # pragma: no cover
        out[i0:i1] = v.reshape(-1, N_PIXELS)
    return out


def _parse_fer_csv(path: Path) -> dict[str, Any]:
    """Parse one FER2013-style CSV (any column order; pixels required); pixels vectorised.

    Returns {"images", "columns" (other column name -> list of str), "lines"}.
    """
    raw = _read_text_bytes(path)
    k = len(raw)
    while k and raw[k - 1] in b"\r\n\t ":
        k -= 1
    if k == len(raw):
        raw = raw + b"\n"  # the parser reads the byte after the last field
    h = raw.find(b"\n")
    header = raw[:h].decode("latin-1").strip()
    names = [c.strip().strip('"').strip() for c in header.split(",")]
    lower = [c.lower() for c in names]
    if "pixels" not in lower:
        raise _error(path, "line 1 (header)", f"a 'pixels' column, as in {FER2013_HEADER!r}", header)
    for want in lower:
        if want not in ("emotion", "pixels", "usage"):
            raise _error(path, "line 1 (header)", "columns emotion, pixels, Usage", header)
    ncols = len(names)
    b = np.frombuffer(raw, np.uint8)
    if h >= k:
        raise _error(path, "line 2", "data rows after the header (the file has only a header)")
    # Line and comma positions: bytes.find/count run in C (memchr), one call per line.
    starts, ends, commas_list = [], [], []
    pos = h + 1
    while pos <= k:
        end = raw.find(b"\n", pos, k)
        end = k if end < 0 else end
        if raw.count(b",", pos, end) != ncols - 1:
            line = len(starts) + 2
            raise _error(path, f"line {line} (data row {line - 2})",
                         f"{ncols} comma-separated fields ({','.join(names)})", raw[pos:end].decode("latin-1"))
        c = pos - 1
        for _ in range(ncols - 1):
            c = raw.find(b",", c + 1, end)
            commas_list.append(c)
        starts.append(pos)
        ends.append(end)
        pos = end + 1
    n = len(starts)
    starts, ends = np.array(starts), np.array(ends)
    lines = np.arange(2, n + 2)
    cp = np.array(commas_list, dtype=np.int64)
    commas = cp.reshape(n, ncols - 1)
    fs = np.column_stack((starts, commas + 1))
    fe = np.column_stack((commas, ends))
    pcol = lower.index("pixels")
    ps, pe = fs[:, pcol].copy(), fe[:, pcol].copy()
    for _ in range(2):  # trim a '\r' and quotes around the field
        pe -= (b[pe - 1] == 13) & (pe > ps)
        q = (b[ps] == 34) & (pe > ps)
        ps += q
        pe -= (b[pe - 1] == 34) & (pe > ps)
    images = _parse_pixel_fields(b, ps, pe, path, lines)
    columns = {}
    for j, name in enumerate(lower):
        if j != pcol:
            columns[name] = [raw[s:e].decode("latin-1").strip().strip('"').strip()
                             for s, e in zip(fs[:, j].tolist(), fe[:, j].tolist())]
    return {"images": images.reshape(n, FER_SIDE, FER_SIDE), "columns": columns, "lines": lines}


def _check_values(path: Path, values: list[str], allowed: dict | Sequence, column: str,
                  lines: np.ndarray, what: str) -> np.ndarray:
    """Map strings through ``allowed`` (dict keys may be int) and name the first bad row."""
    keys = {str(key): key for key in allowed}
    out = []
    for i, v in enumerate(values):
        if v not in keys:
            raise _error(path, f"line {lines[i]} (data row {i}), column {column}", what, v)
        out.append(keys[v])
    return np.array(out, dtype=object)


def _fer2013_files(path: Path) -> list[Path]:
    path = Path(path)
    if path.is_file():
        return [path]
    for folder in (path, path / "fer2013"):
        for name in ("fer2013.csv", "icml_face_data.csv"):
            if (folder / name).is_file():
                return [folder / name]
        pair = [folder / n for n in ("train.csv", "test.csv") if (folder / n).is_file()]
        if pair:
            return pair
    if not path.exists():
        raise FileNotFoundError(path)
    raise _error(path, "folder", "fer2013.csv, icml_face_data.csv or train.csv/test.csv inside")


def read_fer2013(path: str | os.PathLike, *, verbose: bool = True) -> ArraySamples:
    """Read FER2013 from ``fer2013.csv``, ``icml_face_data.csv`` or Kaggle ``train.csv``/``test.csv``.

    ``path`` may be a CSV file or a folder holding one of them (also ``<folder>/fer2013/``,
    torchvision style); with only the Kaggle pair both files are read and ``test.csv``
    rows get ``label=None``. Column names are stripped (`` Usage`` -> ``Usage``).
    Parsing is vectorised (about 1 s for the full 35,887-row file).
    """
    files = _fer2013_files(Path(path))
    parts = []
    for fi, file in enumerate(files):
        parsed = _parse_fer_csv(file)
        cols, lines = parsed["columns"], parsed["lines"]
        n = len(lines)
        if "emotion" in cols:
            native = _check_values(file, cols["emotion"], FER2013_TO_CANON, "emotion", lines,
                                   "an emotion id 0..6 (0 Angry .. 6 Neutral)").astype(np.int64)
            labels = np.array([FER2013_TO_CANON[int(v)] for v in native], dtype=np.int64)
        else:
            native = np.full(n, -1, np.int64)
            labels = np.full(n, -1, np.int64)
        if "usage" in cols:
            usage = _check_values(file, cols["usage"], FER_USAGES, "Usage", lines,
                                  "Usage Training, PublicTest or PrivateTest")
        else:
            usage = np.full(n, None, dtype=object)
        parts.append((parsed["images"], labels, native, usage, np.full(n, fi), lines, np.arange(n)))
    cat = [np.concatenate([p[j] for p in parts]) for j in range(7)]
    return ArraySamples(images=cat[0], labels=cat[1], native_labels=cat[2], usage=cat[3],
                        files=[str(f) for f in files], file_index=cat[4], lines=cat[5], rows=cat[6])


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
                raise _error(path, f"line {reader.line_num}", "2304 pixel values 0..255")
            images.append(np.array(values, dtype=np.uint8).reshape(FER_SIDE, FER_SIDE))
            natives.append(int(row[ecol]))
            usages.append(row[ucol])
            lines.append(reader.line_num)
    native = np.array(natives, dtype=np.int64)
    labels = np.array([FER2013_TO_CANON[v] for v in natives], dtype=np.int64)
    n = len(images)
    return ArraySamples(images=np.stack(images), labels=labels, native_labels=native,
                        usage=np.array(usages, dtype=object), files=[str(path)],
                        file_index=np.zeros(n, int), lines=np.array(lines), rows=np.arange(n))


def _encode_pixel_rows(images: np.ndarray) -> list[str]:
    """(N, 48, 48) uint8 -> N strings of 2304 space-separated ints (vectorised)."""
    out: list[str] = []
    flat_all = images.reshape(len(images), -1)
    for i0 in range(0, len(flat_all), 2048):
        flat = flat_all[i0:i0 + 2048]
        k = flat.shape[1]
        v = flat.astype(np.int32).ravel()
        nd = 1 + (v >= 10) + (v >= 100)
        end = np.cumsum(nd + 1)
        buf = np.full(int(end[-1]), 32, np.uint8)
        last = end - 2
        buf[last] = 48 + v % 10
        m = nd >= 2
        buf[last[m] - 1] = 48 + (v[m] // 10) % 10
        m = nd >= 3
        buf[last[m] - 2] = 48 + v[m] // 100
        blob = buf.tobytes()
        row_end = end[k - 1::k] - 1
        row_start = np.concatenate(([0], end[k - 1::k][:-1]))
        out.extend(blob[s:e].decode("ascii") for s, e in zip(row_start.tolist(), row_end.tolist()))
    return out


def _fer_rows(samples: Iterable[dict], default_usage: str, writer: str,
              skipped: Counter, need_label: bool = True) -> tuple[list[dict], np.ndarray]:
    """Samples with a FER2013-representable label, plus their 48x48 gray images."""
    kept, images = [], []
    inverse = _inverse(FER2013_TO_CANON)
    for s in samples:
        label = s.get("label")
        if need_label and label not in inverse:
            skipped["no FER2013 class (None or contempt)" if label in (None, 7) else f"label {label}"] += 1
            continue
        kept.append(s)
        images.append(np.asarray(_as_image(s["image"], gray=True, size=FER_SIDE)))
    usage = [SPLIT_TO_USAGE.get(_split_of(s, USAGE_TO_SPLIT[default_usage]), default_usage)
             for s in kept]
    for s, u in zip(kept, usage):
        s["_usage"] = u
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
    path = Path(path)
    skipped: Counter = Counter()
    rows, images = _fer_rows([dict(s) for s in samples], usage, "fer2013", skipped)
    pixels = _encode_pixel_rows(images)
    inverse = _inverse(FER2013_TO_CANON)
    default_name = {"fer2013": "fer2013.csv", "icml": "icml_face_data.csv"}
    if variant in default_name:
        out = path / default_name[variant] if path.suffix.lower() != ".csv" else path
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "w", newline="") as f:
            if variant == "fer2013":
                f.write(FER2013_HEADER + "\n")
                f.writelines(f"{inverse[s['label']]},{p},{s['_usage']}\n" for s, p in zip(rows, pixels))
            else:
                f.write(ICML_HEADER + "\n")
                f.writelines(f"{inverse[s['label']]},{s['_usage']},{p}\n" for s, p in zip(rows, pixels))
    elif variant == "kaggle":
        out = path
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "train.csv", "w", newline="") as tr, open(out / "test.csv", "w", newline="") as te:
            tr.write("emotion,pixels\n")
            te.write("pixels\n")
            for s, p in zip(rows, pixels):
                if s["_usage"] == "Training":
                    tr.write(f"{inverse[s['label']]},{p}\n")
                else:
                    te.write(f"{p}\n")
    else:
        raise ValueError(f"variant must be 'fer2013', 'icml' or 'kaggle', got {variant!r}")
    _report_write("fer2013", skipped, verbose)
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
    top = v.argmax(1)
    majority = v.max(1) > 0.5 * total
    winner = np.where(majority, top, 8)
    emo = v[:, :8]
    s = emo.sum(1, keepdims=True)
    soft = np.divide(emo, s, out=np.zeros_like(emo), where=s > 0).astype(np.float32)
    return winner, soft


def _ferplus_table(votes: np.ndarray, names: list[str]
                   ) -> tuple[np.ndarray, dict[str, int], np.ndarray, np.ndarray]:
    """Keep-mask, skipped counts, (winner, row) pairs and soft labels for FER+ rows."""
    winner, soft = ferplus_majority(votes)
    empty = np.array([not n for n in names], dtype=bool)
    raw_top = votes.argmax(1)
    skipped: dict[str, int] = {}
    if empty.any():
        skipped["empty Image name"] = int(empty.sum())
    rest = ~empty
    for label, mask in (("unknown", rest & (winner == 8) & (raw_top == 8)),
                        ("NF", rest & (winner == 9)),
                        ("no majority (>50% after removing 1-vote classes)",
                         rest & (winner == 8) & (raw_top != 8))):
        if mask.any():
            skipped[label] = int(mask.sum())
    keep = rest & (winner < 8)
    return keep, skipped, np.column_stack((winner, np.arange(len(winner)))), soft


def _canon_soft(soft: np.ndarray) -> np.ndarray:
    """Reorder an (N, 8) FER+ distribution into canonical class order."""
    out = np.zeros_like(soft)
    for j, name in enumerate(FERPLUS_COLUMNS[:8]):
        out[:, FERPLUS_TO_CANON[name]] = soft[:, j]
    return out


def _read_votes_csv(path: Path, has_header: bool) -> list[tuple[int, list[str]]]:
    text = path.read_text(encoding="utf-8-sig")
    if not text.strip():
        raise _error(path, "line 1", "FER+ vote rows (the file is empty)")
    rows = []
    reader = csv.reader(io.StringIO(text))
    for row in reader:
        if not any(c.strip() for c in row):
            continue
        rows.append((reader.line_num, row))
    if has_header:
        header = ",".join(c.strip() for c in rows[0][1])
        if header != FERPLUS_HEADER:
            raise _error(path, "line 1 (header)", repr(FERPLUS_HEADER), header)
        rows = rows[1:]
    return rows


def _parse_votes(path: Path, rows: list[tuple[int, list[str]]], first: int) -> np.ndarray:
    width = first + 10
    votes = np.zeros((len(rows), 10), np.int64)
    for i, (line, row) in enumerate(rows):
        if len(row) != width:
            raise _error(path, f"line {line}", f"{width} comma-separated fields", ",".join(row))
        try:
            vals = [int(float(c)) for c in row[first:]]
        except ValueError:
            raise _error(path, f"line {line}", "10 integer vote counts 0..10", ",".join(row[first:])) from None
        if any(not 0 <= x <= 10 for x in vals):
            raise _error(path, f"line {line}", "vote counts 0..10", ",".join(row[first:]))
        votes[i] = vals
    return votes


def read_ferplus(path: str | os.PathLike, fer2013: str | os.PathLike | None = None, *,
                 verbose: bool = True) -> ArraySamples | SampleList:
    """Read FER+ labels (majority vote) with their FER2013 pixels.

    ``path`` is ``fer2013new.csv`` (or its folder); pixels come from ``fer2013``
    (default: ``fer2013.csv``/``icml_face_data.csv`` next to it), joined **by row
    position**. Alternatively ``path`` is a folder with ``FER2013Train/``,
    ``FER2013Valid/``, ``FER2013Test/`` (PNGs + headerless ``label.csv``), or one
    of those folders. Rows with an empty ``Image name``, and rows whose majority is
    unknown or NF (or that have no majority), are dropped and counted in ``skipped``.
    Extras: ``votes`` (10,) in file order, ``soft_label`` (8,) canonical order,
    ``image_name``; csv form also ``fer2013_label`` (canonical) and ``row``.
    """
    path = Path(path)
    folders = [path] if (path / "label.csv").is_file() else \
        [path / f for f in FERPLUS_FOLDERS.values() if (path / f / "label.csv").is_file()]
    if path.is_dir() and not (path / "fer2013new.csv").is_file() and folders:
        return _read_ferplus_folders(folders, verbose)
    csv_path = path / "fer2013new.csv" if path.is_dir() else path
    rows = _read_votes_csv(csv_path, has_header=True)
    if not rows:
        raise _error(csv_path, "line 2", "FER+ vote rows after the header")
    votes = _parse_votes(csv_path, rows, first=2)
    usage = [r[0].strip() for _, r in rows]
    names = [r[1].strip() for _, r in rows]
    for (line, _), u in zip(rows, usage):
        if u not in FER_USAGES:
            raise _error(csv_path, f"line {line}", "Usage Training, PublicTest or PrivateTest", u)
    fer_path = Path(fer2013) if fer2013 is not None else None
    if fer_path is None:
        candidates = [csv_path.parent / n for n in ("fer2013.csv", "icml_face_data.csv")]
        fer_path = next((c for c in candidates if c.is_file()), None)
        if fer_path is None:
            raise _error(csv_path, "pixels", "fer2013.csv next to fer2013new.csv (FER+ has labels only), "
                         "or pass fer2013=...")
    fer = read_fer2013(fer_path, verbose=False)
    if len(fer) != len(rows):
        raise _error(csv_path, f"{len(rows)} data rows",
                     f"the same number of rows as {fer_path} ({len(fer)}): FER+ joins by row position")
    for i, u in enumerate(usage):
        if fer.usage[i] is not None and fer.usage[i] != u:
            raise _error(csv_path, f"line {rows[i][0]} (data row {i})",
                         f"Usage {fer.usage[i]!r} as in {fer_path} line {fer.lines[i]}", u)
    keep, skipped, winners, soft = _ferplus_table(votes, names)
    idx = np.flatnonzero(keep)
    win = winners[idx, 0]
    result = ArraySamples(
        images=fer.images[idx], labels=np.array([FERPLUS_TO_CANON[FERPLUS_COLUMNS[w]] for w in win], np.int64),
        native_labels=win.astype(np.int64), usage=np.array(usage, dtype=object)[idx],
        files=[str(csv_path)], file_index=np.zeros(len(idx), int),
        lines=np.array([rows[i][0] for i in idx]), rows=idx,
        extras={"votes": votes[idx], "soft_label": _canon_soft(soft[idx]),
                "image_name": np.array(names, dtype=object)[idx],
                "fer2013_label": np.array([None if v < 0 else int(v) for v in fer.labels[idx]], dtype=object)},
        native_names=dict(enumerate(FERPLUS_COLUMNS)), skipped=skipped)
    _report("ferplus", len(rows), len(idx), skipped, {}, verbose)
    return result


def _read_ferplus_folders(folders: list[Path], verbose: bool) -> SampleList:
    out = SampleList()
    total = 0
    usage_of = {v: k for k, v in FERPLUS_FOLDERS.items()}
    for folder in folders:
        label_csv = folder / "label.csv"
        rows = _read_votes_csv(label_csv, has_header=False)
        votes = _parse_votes(label_csv, rows, first=1)
        names = [r[1][0].strip() for r in rows]
        keep, skipped, winners, soft = _ferplus_table(votes, names)
        canon_soft = _canon_soft(soft)
        total += len(rows)
        for k, v in skipped.items():
            out.skipped[k] = out.skipped.get(k, 0) + v
        usage = usage_of.get(folder.name)
        for i in np.flatnonzero(keep):
            line, _ = rows[i]
            img = folder / names[i]
            if not img.is_file():
                raise _error(label_csv, f"line {line}", f"the image file {img}", "missing")
            w = int(winners[i, 0])
            out.append(make_sample(
                image=str(img), path=str(img), label=FERPLUS_TO_CANON[FERPLUS_COLUMNS[w]],
                native_label=FERPLUS_COLUMNS[w], source=f"{label_csv}:line {line}",
                split=USAGE_TO_SPLIT.get(usage) if usage else None, usage=usage,
                votes=votes[i], soft_label=canon_soft[i], image_name=names[i]))
    _report("ferplus", total, len(out), out.skipped, {}, verbose)
    return out


def _votes_for(sample: dict) -> np.ndarray:
    """A sample's FER+ votes, or 10 votes for its label (``unknown`` when it has none)."""
    if sample.get("votes") is not None:
        return np.asarray(sample["votes"], dtype=np.int64)
    votes = np.zeros(10, np.int64)
    label = sample.get("label")
    column = {v: k for k, v in FERPLUS_TO_CANON.items()}.get(label, "unknown")
    votes[FERPLUS_COLUMNS.index(column)] = 10
    return votes


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
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    items = [dict(s) for s in samples]
    skipped: Counter = Counter()
    inverse = _inverse(FER2013_TO_CANON)
    rows = []
    for s in items:
        fer_label = s.get("fer2013_label")
        if fer_label is None:
            fer_label = s.get("label")
        if fer_label not in inverse:
            skipped["fer2013.csv emotion 6 (Neutral) for rows without a FER2013 class"] += 1
            fer_label = 0
        rows.append(dict(s, label=fer_label))
    if layout == "csv":
        write_fer2013(rows, root / "fer2013.csv", usage=usage, verbose=False)
        with open(root / "fer2013new.csv", "w", newline="") as f:
            f.write(FERPLUS_HEADER + "\n")
            for i, s in enumerate(rows):
                u = SPLIT_TO_USAGE.get(_split_of(s, USAGE_TO_SPLIT[usage]), usage)
                name = s["image_name"] if s.get("image_name") is not None else f"fer{i:07d}.png"
                f.write(f"{u},{name}," + ",".join(str(int(v)) for v in _votes_for(s)) + "\n")
    elif layout == "folders":
        handles: dict[str, Any] = {}
        try:
            for i, s in enumerate(rows):
                u = SPLIT_TO_USAGE.get(_split_of(s, USAGE_TO_SPLIT[usage]), usage)
                name = s["image_name"] if s.get("image_name") is not None else f"fer{i:07d}.png"
                if not name:
                    skipped["empty image_name (no PNG in folder layout)"] += 1
                    continue
                folder = root / FERPLUS_FOLDERS[u]
                if u not in handles:
                    folder.mkdir(parents=True, exist_ok=True)
                    handles[u] = open(folder / "label.csv", "w", newline="")
                _save(s["image"], folder / name, gray=True, size=FER_SIDE)
                handles[u].write(name + "," + ",".join(str(int(v)) for v in _votes_for(s)) + "\n")
        finally:
            for h in handles.values():
                h.close()
    else:
        raise ValueError(f"layout must be 'csv' or 'folders', got {layout!r}")
    _report_write("ferplus", skipped, verbose)
    return root


# ---------------------------------------------------------------------------
# RAF-DB basic
# ---------------------------------------------------------------------------

RAFDB_LABEL_FILE = Path("EmoLabel") / "list_patition_label.txt"


def read_rafdb(root: str | os.PathLike, *, aligned: bool = True, verbose: bool = True) -> SampleList:
    """Read RAF-DB basic: ``EmoLabel/list_patition_label.txt`` lines ``<name>.jpg <1..7>``.

    ``root`` is the ``basic/`` folder (or the label file). Images are
    ``Image/aligned/<stem>_aligned.jpg`` (``aligned=False``: ``Image/original/<name>``)
    and are returned as paths. Split from the name prefix (train_/test_).
    """
    root = Path(root)
    label_file = root if root.is_file() else root / RAFDB_LABEL_FILE
    base = label_file.parent.parent
    text = label_file.read_text(encoding="utf-8-sig")
    if not text.strip():
        raise _error(label_file, "line 1", "lines '<name>.jpg <label 1..7>' (the file is empty)")
    out = SampleList()
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[0].lower().endswith(".jpg"):
            raise _error(label_file, f"line {line_no}", "'<name>.jpg <label 1..7>'", line)
        name, native = parts
        if native not in {str(k) for k in RAFDB_TO_CANON}:
            raise _error(label_file, f"line {line_no}", "a label id 1..7 (1 Surprise .. 7 Neutral)", native)
        stem = name[:-4]
        img = base / "Image" / ("aligned" if aligned else "original") / (
            f"{stem}_aligned.jpg" if aligned else name)
        if not img.is_file():
            raise _error(label_file, f"line {line_no}", f"the image file {img}", "missing")
        split = "train" if name.startswith("train") else "test" if name.startswith("test") else None
        out.append(make_sample(image=str(img), path=str(img), label=RAFDB_TO_CANON[int(native)],
                               native_label=int(native), source=f"{label_file}:line {line_no}",
                               split=split, name=name))
    return out


def write_rafdb(samples: Iterable[dict], root: str | os.PathLike, *, split: str = "train",
                size: int | None = 100, verbose: bool = True) -> Path:
    """Write RAF-DB basic: the label file plus ``Image/aligned/<name>_aligned.jpg`` (100x100 RGB).

    Names are ``train_%05d.jpg`` / ``test_%04d.jpg`` numbered per split from 1, in
    sample order; the split is the sample's ``split`` (val counts as test) or ``split``.
    Samples without a RAF-DB class (None, contempt) are skipped and counted.
    """
    root = Path(root)
    inverse = _inverse(RAFDB_TO_CANON)
    counters = {"train": 0, "test": 0}
    lines, skipped = [], Counter()
    for s in samples:
        label = s.get("label")
        if label not in inverse:
            skipped["no RAF-DB class (None or contempt)"] += 1
            continue
        sp = "train" if _split_of(s, split) == "train" else "test"
        counters[sp] += 1
        name = f"train_{counters[sp]:05d}.jpg" if sp == "train" else f"test_{counters[sp]:04d}.jpg"
        img = _as_image(s["image"], size=size)
        _save(img.convert("RGB"), root / "Image" / "aligned" / f"{name[:-4]}_aligned.jpg", **_JPEG)
        lines.append(f"{name} {inverse[label]}\n")
    (root / RAFDB_LABEL_FILE).parent.mkdir(parents=True, exist_ok=True)
    (root / RAFDB_LABEL_FILE).write_text("".join(lines))
    _report_write("rafdb", skipped, verbose)
    return root


# ---------------------------------------------------------------------------
# AffectNet
# ---------------------------------------------------------------------------

def _float(text: str) -> float:
    text = text.strip()
    return math.nan if text == "" or text.lower() == "nan" else float(text)


def read_affectnet(root: str | os.PathLike, *, split: str | None = None, check_files: bool = True,
                   verbose: bool = True) -> SampleList:
    """Read AffectNet's manually annotated CSVs (``training.csv``/``validation.csv``).

    ``root`` holds ``Manually_Annotated_file_lists/`` and ``Manually_Annotated_Images/``
    (or is one CSV). ``split``: "train", "val" or None for both. Dropped and counted:
    expression 8/9/10 (None, Uncertain, No-Face) and rows with a NaN/empty face box.
    Valence/arousal ``-2`` become None (counted in ``masked``). Extras: ``face_box``
    (x, y, w, h) -- FormatDataset crops to it -- and ``sub_path``.
    """
    root = Path(root)
    if root.is_file():
        csvs = [(root, "val" if "valid" in root.name else "train")]
        images = root.parent.parent / "Manually_Annotated_Images"
    else:
        lists = root / "Manually_Annotated_file_lists"
        csvs = [(lists / f"{n}.csv", sp) for n, sp in (("training", "train"), ("validation", "val"))
                if split in (None, sp) and (lists / f"{n}.csv").is_file()]
        if not csvs:
            raise _error(lists, "folder", "training.csv and/or validation.csv")
        images = root / "Manually_Annotated_Images"
    out = SampleList()
    skipped: Counter = Counter()
    masked: Counter = Counter()
    total = 0
    columns = AFFECTNET_HEADER.split(",")
    for path, sp in csvs:
        text = path.read_text(encoding="utf-8-sig")
        if not text.strip():
            raise _error(path, "line 1", f"the header {AFFECTNET_HEADER!r} (the file is empty)")
        reader = csv.reader(io.StringIO(text))
        header = [c.strip() for c in next(reader)]
        if header != columns:
            raise _error(path, "line 1 (header)", repr(AFFECTNET_HEADER), ",".join(header))
        for row in reader:
            line = reader.line_num
            if not any(c.strip() for c in row):
                continue
            total += 1
            if len(row) != len(columns):
                raise _error(path, f"line {line}", f"{len(columns)} comma-separated fields", ",".join(row))
            rec = dict(zip(columns, row))
            try:
                expression = int(float(rec["expression"]))
            except ValueError:
                raise _error(path, f"line {line}, column expression", "an int 0..10", rec["expression"]) from None
            if expression in AFFECTNET_DROPPED:
                skipped[f"expression {expression} ({AFFECTNET_DROPPED[expression]})"] += 1
                continue
            if expression not in AFFECTNET_TO_CANON:
                raise _error(path, f"line {line}, column expression", "an expression id 0..10", rec["expression"])
            try:
                box = [_float(rec[k]) for k in ("face_x", "face_y", "face_width", "face_height")]
                va = [_float(rec["valence"]), _float(rec["arousal"])]
            except ValueError:
                raise _error(path, f"line {line}", "numeric face box, valence and arousal", ",".join(row)) from None
            if any(math.isnan(v) for v in box):
                skipped["NaN/empty face box"] += 1
                continue
            if any(v == -2 for v in va):
                masked["valence/arousal -2 (not annotated)"] += 1
                va = [None, None]
            elif any(math.isnan(v) or not -1 <= v <= 1 for v in va):
                raise _error(path, f"line {line}", "valence and arousal in [-1, 1] (or -2)", va)
            lm_text = rec["facial_landmarks"].strip()
            landmarks = None
            if lm_text and lm_text.lower() != "nan":
                try:
                    pts = np.array([float(v) for v in lm_text.split(";") if v.strip()], np.float32)
                except ValueError:
                    raise _error(path, f"line {line}, column facial_landmarks",
                                 "136 ';'-separated floats", lm_text) from None
                if pts.size != 136:
                    raise _error(path, f"line {line}, column facial_landmarks",
                                 "136 ';'-separated floats (68 x,y points)", f"{pts.size} values")
                landmarks = pts.reshape(68, 2)
            else:
                masked["landmarks empty"] += 1
            img = images / rec["subDirectory_filePath"].strip()
            if check_files and not img.is_file():
                raise _error(path, f"line {line}", f"the image file {img}", "missing")
            out.append(make_sample(
                image=str(img), path=str(img), label=AFFECTNET_TO_CANON[expression],
                native_label=expression, valence=va[0], arousal=va[1], landmarks=landmarks,
                source=f"{path}:line {line}", split=sp, face_box=tuple(box),
                sub_path=rec["subDirectory_filePath"].strip()))
    out.skipped, out.masked = dict(skipped), dict(masked)
    _report("affectnet", total, len(out), out.skipped, out.masked, verbose)
    return out


def _num(v: float) -> str:
    """Short decimal text for a float (as AffectNet's CSV writes them)."""
    text = f"{v:.6f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def write_affectnet(samples: Iterable[dict], root: str | os.PathLike, *, split: str = "train",
                    verbose: bool = True) -> Path:
    """Write AffectNet's manual layout: ``Manually_Annotated_file_lists/{training,validation}.csv``
    and ``Manually_Annotated_Images/<n>/<sha224>.jpg`` (the full image, JPEG).

    The face box is the sample's ``face_box`` or the whole image; landmarks are
    written with 2 decimals, missing valence/arousal as -2, a missing label as 9
    (Uncertain). Split: the sample's ``split`` ("val"/"test" -> validation.csv) or ``split``.
    """
    root = Path(root)
    inverse = _inverse(AFFECTNET_TO_CANON)
    rows: dict[str, list[str]] = {"training": [], "validation": []}
    for i, s in enumerate(samples):
        image = _as_image(s["image"])
        name = hashlib.sha224(f"{s.get('index', i)}-{i}".encode()).hexdigest() + ".jpg"
        sub = f"{1 + i // 500}/{name}"
        _save(image, root / "Manually_Annotated_Images" / sub, **_JPEG)
        box = s.get("face_box") or (0, 0, image.size[0], image.size[1])
        lm = s.get("landmarks")
        lm_text = "" if lm is None else ";".join(f"{v:.2f}" for v in np.asarray(lm, float).ravel())
        label = s.get("label")
        expression = 9 if label is None else inverse[label]
        va = [s.get("valence"), s.get("arousal")]
        va_text = ["-2" if va[0] is None or va[1] is None else _num(float(v)) for v in va]
        target = "training" if _split_of(s, split) == "train" else "validation"
        rows[target].append(",".join([sub, *(str(int(b)) if float(b).is_integer() else _num(float(b))
                                              for b in box), lm_text, str(expression), *va_text]))
    lists = root / "Manually_Annotated_file_lists"
    lists.mkdir(parents=True, exist_ok=True)
    for name, lines in rows.items():
        if lines:
            (lists / f"{name}.csv").write_text(AFFECTNET_HEADER + "\n" + "\n".join(lines) + "\n")
    return root


# ---------------------------------------------------------------------------
# CK+
# ---------------------------------------------------------------------------

def _ck_float_lines(path: Path, width: int, what: str) -> list[list[float]]:
    """Parse a CK+ text file of whitespace-separated floats (scientific notation)."""
    rows = []
    for line_no, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            values = [float(v) for v in line.split()]
        except ValueError:
            raise _error(path, f"line {line_no}", what, line) from None
        if len(values) != width:
            raise _error(path, f"line {line_no}", what, line)
        rows.append(values)
    return rows


def _facs_vectors(facs: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """CK+ FACS codes -> (aus float32 (17,), presence bool (17,)) in AUS order.

    Intensity 1..5 (A..E) becomes k/5; 0 ("present, not coded") becomes NaN.
    """
    aus = np.zeros(len(AUS), np.float32)
    presence = np.zeros(len(AUS), bool)
    for au, intensity in facs:
        if au in _AU_INDEX:
            presence[_AU_INDEX[au]] = True
            aus[_AU_INDEX[au]] = np.nan if intensity == 0 else intensity / 5.0
    return aus, presence


def _ck_dir(root: Path) -> Path:
    """The CK+ root: the folder holding cohn-kanade-images/ (given it or its parent)."""
    if (root / "cohn-kanade-images").is_dir():
        return root
    if root.name == "cohn-kanade-images":
        return root.parent
    hits = [p.parent for p in root.glob("*/cohn-kanade-images")]
    if hits:
        return hits[0]
    raise _error(root, "folder", "cohn-kanade-images/ (with Emotion/, FACS/, Landmarks/ beside it)")


def read_ckplus(root: str | os.PathLike, *, apex_frames: int = 1, verbose: bool = True) -> SampleList:
    """Read CK+: one sample per frame of ``cohn-kanade-images/Sxxx/yyy/*.png``.

    The sequence's emotion (``Emotion/.../*_emotion.txt``, a float such as
    ``   7.0000000e+00``) is ``sequence_label`` on every frame and ``label`` on the
    last ``apex_frames`` frames (other frames: None). FACS codes of the peak frame
    give ``aus``/``au_presence``/``au_mask`` and the raw ``facs`` list on the last
    frame. ``Landmarks/`` files give (68, 2) landmarks per frame (None if absent).
    ``identity`` is the subject number (S005 -> 5). Sequences without an Emotion
    file (or with an empty one) are kept unlabelled and counted in ``masked``.
    """
    base = _ck_dir(Path(root))
    images_root = base / "cohn-kanade-images"
    out = SampleList()
    masked: Counter = Counter()
    for subject_dir in sorted(p for p in images_root.iterdir() if p.is_dir()):
        subject = subject_dir.name
        if not re.fullmatch(r"S\d+", subject):
            raise _error(subject_dir, "folder name", "a subject folder 'S<digits>'", subject)
        for seq_dir in sorted(p for p in subject_dir.iterdir() if p.is_dir()):
            frames = sorted(p for p in seq_dir.iterdir() if p.suffix.lower() == ".png")
            if not frames:
                continue
            rel = Path(subject) / seq_dir.name
            emo_files = sorted((base / "Emotion" / rel).glob("*_emotion.txt"))
            seq_native = None
            if emo_files:
                emo = emo_files[-1]
                text = emo.read_text().strip()
                if text:
                    try:
                        seq_native = int(float(text.split()[0]))
                    except ValueError:
                        raise _error(emo, "line 1", "one float emotion id such as '   7.0000000e+00'", text) from None
                    if seq_native not in CKPLUS_TO_CANON or float(text.split()[0]) != seq_native:
                        raise _error(emo, "line 1", "an emotion id 0..7", text)
                else:
                    masked["sequences with an empty Emotion file"] += 1
            else:
                masked["sequences without Emotion file"] += 1
            facs, aus, presence = None, None, None
            facs_files = sorted((base / "FACS" / rel).glob("*_facs.txt"))
            if facs_files:
                rows = _ck_float_lines(facs_files[-1], 2, "'<AU> <intensity>' as two floats")
                facs = [(int(a), int(b)) for a, b in rows]
                aus, presence = _facs_vectors(facs)
            seq_label = None if seq_native is None else CKPLUS_TO_CANON[seq_native]
            for k, frame in enumerate(frames):
                last = k == len(frames) - 1
                lm_file = base / "Landmarks" / rel / f"{frame.stem}_landmarks.txt"
                landmarks = None
                if lm_file.is_file():
                    pts = _ck_float_lines(lm_file, 2, "'<x> <y>' as two floats")
                    if len(pts) != 68:
                        raise _error(lm_file, f"line {len(pts) + 1}", "68 landmark lines", f"{len(pts)} lines")
                    landmarks = np.array(pts, np.float32)
                apex = k >= len(frames) - apex_frames
                out.append(make_sample(
                    image=str(frame), path=str(frame), label=seq_label if apex else None,
                    native_label=seq_native if apex else None, identity=int(subject[1:]),
                    aus=aus if last else None, au_presence=presence if last else None,
                    au_mask=np.ones(len(AUS), bool) if last and facs is not None else None,
                    facs=facs if last else None, landmarks=landmarks, source=str(frame),
                    subject=subject, sequence=seq_dir.name, frame=int(frame.stem.split("_")[-1]),
                    sequence_label=seq_label, is_peak=last))
    out.masked = dict(masked)
    _report("ckplus", len(out), len(out), {}, out.masked, verbose)
    return out


def _ck_number(v: float) -> str:
    """CK+/MATLAB ascii number format: ``   7.0000000e+00``."""
    return f"{v:16.7e}"


def _group_sequences(samples: Iterable[dict], writer: str) -> dict[tuple, list[dict]]:
    """Group samples into sequences by (identity, ``sequence`` key).

    Without a ``sequence`` key every sample is its own one-frame sequence.
    Frames keep sample order unless a ``frame`` key says otherwise.
    """
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for i, s in enumerate(samples):
        identity = _required(s, "identity", i, writer)
        seq = s.get("sequence")
        groups[(int(identity), ("single", i) if seq is None else ("seq", seq))].append(s)
    for frames in groups.values():
        if all(f.get("frame") is not None for f in frames):
            frames.sort(key=lambda f: int(f["frame"]))
    return groups


def write_ckplus(samples: Iterable[dict], root: str | os.PathLike, *, verbose: bool = True) -> Path:
    """Write CK+: ``cohn-kanade-images/Sxxx/yyy/Sxxx_yyy_%08d.png`` per frame, and on the
    last frame ``Emotion/..._emotion.txt`` (label of the last frame) and
    ``FACS/..._facs.txt`` (AUs present, intensity round(5*aus) in 1..5, 0 if unknown);
    ``Landmarks/..._landmarks.txt`` for every frame with landmarks. Numbers use
    CK+'s ``%16.7e`` text form. Subject = identity (``S%03d``); sequences numbered per
    subject from 001 (see :func:`_group_sequences`).
    """
    root = Path(root)
    inverse = _inverse(CKPLUS_TO_CANON)
    seq_count: Counter = Counter()
    for (identity, _), frames in _group_sequences(samples, "ckplus").items():
        seq_count[identity] += 1
        subject, seq = f"S{identity:03d}", f"{seq_count[identity]:03d}"
        rel = Path(subject) / seq
        for k, s in enumerate(frames, start=1):
            stem = f"{subject}_{seq}_{k:08d}"
            _save(s["image"], root / "cohn-kanade-images" / rel / f"{stem}.png")
            if s.get("landmarks") is not None:
                lm = np.asarray(s["landmarks"], float).reshape(68, 2)
                path = root / "Landmarks" / rel / f"{stem}_landmarks.txt"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text("".join(_ck_number(x) + _ck_number(y) + "\n" for x, y in lm))
        last, stem = frames[-1], f"{subject}_{seq}_{len(frames):08d}"
        if last.get("label") is not None:
            path = root / "Emotion" / rel / f"{stem}_emotion.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(_ck_number(float(inverse[last["label"]])) + "\n")
        presence, aus = last.get("au_presence"), last.get("aus")
        if presence is None and aus is not None:
            presence = np.asarray(aus) > 0
        if presence is not None:
            lines = []
            for j, au in enumerate(AUS):
                if presence[j]:
                    value = None if aus is None else float(aus[j])
                    intensity = 0 if value is None or math.isnan(value) else int(np.clip(round(value * 5), 1, 5))
                    lines.append(_ck_number(float(au)) + _ck_number(float(intensity)) + "\n")
            path = root / "FACS" / rel / f"{stem}_facs.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(lines))
    return root


# ---------------------------------------------------------------------------
# Oulu-CASIA
# ---------------------------------------------------------------------------

def read_oulu(root: str | os.PathLike, *, system: str | None = "VL", illumination: str | None = "Strong",
              apex_frames: int = 3, verbose: bool = True) -> SampleList:
    """Read Oulu-CASIA ``OriginalImg/{VL,NI}/{Strong,Weak,Dark}/Pxxx/<Class>/000.jpeg``.

    ``root`` holds ``OriginalImg/`` (or is it). ``system``/``illumination`` select
    the sub-trees (None = all). The class folder is the label: ``sequence_label``
    on every frame, ``label`` on the last ``apex_frames`` frames (the protocol's
    apex), None on earlier frames. ``identity`` = subject number (P012 -> 12).
    """
    root = Path(root)
    top = root / "OriginalImg" if (root / "OriginalImg").is_dir() else root
    if not top.is_dir():
        raise FileNotFoundError(top)
    out = SampleList()
    systems = [system] if system else sorted(p.name for p in top.iterdir() if p.is_dir())
    for sys_name in systems:
        lights = [illumination] if illumination else sorted(
            p.name for p in (top / sys_name).iterdir() if p.is_dir())
        for light in lights:
            folder = top / sys_name / light
            if not folder.is_dir():
                raise _error(folder, "folder", f"OriginalImg/{sys_name}/{light}/P<nnn>/<Class>/")
            for subject_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
                if not re.fullmatch(r"P\d+", subject_dir.name):
                    raise _error(subject_dir, "folder name", "a subject folder 'P<digits>'", subject_dir.name)
                for class_dir in sorted(p for p in subject_dir.iterdir() if p.is_dir()):
                    if class_dir.name not in OULU_TO_CANON:
                        raise _error(class_dir, "folder name", f"one of {sorted(OULU_TO_CANON)}", class_dir.name)
                    frames = sorted(p for p in class_dir.iterdir() if p.suffix.lower() in (".jpeg", ".jpg"))
                    label = OULU_TO_CANON[class_dir.name]
                    for k, frame in enumerate(frames):
                        apex = k >= len(frames) - apex_frames
                        out.append(make_sample(
                            image=str(frame), path=str(frame), label=label if apex else None,
                            native_label=class_dir.name if apex else None,
                            identity=int(subject_dir.name[1:]), source=str(frame),
                            sequence_label=label, system=sys_name, illumination=light,
                            subject=subject_dir.name, frame=int(frame.stem) if frame.stem.isdigit() else k))
    return out


def write_oulu(samples: Iterable[dict], root: str | os.PathLike, *, system: str = "VL",
               illumination: str = "Strong", verbose: bool = True) -> Path:
    """Write ``OriginalImg/<system>/<illumination>/P%03d/<Class>/%03d.jpeg``.

    One sequence per (identity, class): frames in sample order (or by ``frame``),
    0-based 3-digit names. The class is the sample's label; Oulu has no neutral or
    contempt folder, so such samples (and unlabelled ones) are skipped and counted.
    """
    root = Path(root)
    inverse = _inverse(OULU_TO_CANON)
    groups: dict[tuple, list[dict]] = defaultdict(list)
    skipped: Counter = Counter()
    for i, s in enumerate(samples):
        label = s.get("label") if s.get("label") is not None else s.get("sequence_label")
        if label not in inverse:
            skipped[f"no Oulu-CASIA class ({'None' if label is None else CLASSES[label]})"] += 1
            continue
        groups[(int(_required(s, "identity", i, "oulu")), inverse[label])].append(s)
    for (identity, cls), frames in groups.items():
        if all(f.get("frame") is not None for f in frames):
            frames.sort(key=lambda f: int(f["frame"]))
        folder = root / "OriginalImg" / system / illumination / f"P{identity:03d}" / cls
        for k, s in enumerate(frames):
            _save(s["image"], folder / f"{k:03d}.jpeg", format="JPEG", **_JPEG)
    _report_write("oulu", skipped, verbose)
    return root


# ---------------------------------------------------------------------------
# JAFFE
# ---------------------------------------------------------------------------

def read_jaffe(root: str | os.PathLike, *, verbose: bool = True) -> SampleList:
    """Read JAFFE: a flat folder of ``<POSER>.<EX><n>.<id>.tiff`` (or ``.tif``).

    The label is the first two letters of the second dot field (AN, DI, FE, HA,
    NE, SA, SU). Non-image files (README, ratings) are ignored. ``identity`` is the
    poser's index in JAFFE_POSERS (KA=0 .. YM=9); extras ``poser``, ``take``, ``image_id``.
    """
    root = Path(root)
    files = sorted(p for p in root.iterdir() if p.suffix.lower() in (".tiff", ".tif"))
    if not files:
        raise _error(root, "folder", "JAFFE images named <POSER>.<EX><n>.<id>.tiff")
    out = SampleList()
    for path in files:
        parts = path.name.split(".")
        if len(parts) != 4 or len(parts[0]) < 2:
            raise _error(path, "file name", "'<POSER>.<EX><n>.<id>.tiff', e.g. 'KA.AN1.39.tiff'", path.name)
        poser, expr, image_id = parts[0], parts[1], parts[2]
        code = expr[:2].upper()
        if code not in JAFFE_TO_CANON:
            raise _error(path, "file name", f"an expression code in {sorted(JAFFE_TO_CANON)}", expr)
        take = expr[2:]
        out.append(make_sample(
            image=str(path), path=str(path), label=JAFFE_TO_CANON[code], native_label=code,
            identity=_JAFFE_CODES.index(poser) if poser in _JAFFE_CODES else None,
            source=str(path), poser=poser, take=int(take) if take.isdigit() else take,
            image_id=int(image_id) if image_id.isdigit() else image_id))
    return out


def write_jaffe(samples: Iterable[dict], root: str | os.PathLike, *, size: int | None = 256,
                ext: str = ".tiff", verbose: bool = True) -> Path:
    """Write JAFFE into the flat folder ``root``: 256x256 grayscale TIFF named
    ``<POSER>.<EX><take>.<id>.tiff``. Identity i < 10 is the real poser JAFFE_POSERS[i];
    larger ids get other two-letter codes. Takes count per (poser, expression), ids
    run from 1. Samples without a JAFFE class (None, contempt) are skipped and counted.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    inverse = _inverse(JAFFE_TO_CANON)
    takes: Counter = Counter()
    skipped: Counter = Counter()
    image_id = 0
    for i, s in enumerate(samples):
        label = s.get("label")
        if label not in inverse:
            skipped["no JAFFE class (None or contempt)"] += 1
            continue
        poser = _JAFFE_CODES[int(_required(s, "identity", i, "jaffe"))]
        code = inverse[label]
        takes[(poser, code)] += 1
        image_id += 1
        _save(s["image"], root / f"{poser}.{code}{takes[(poser, code)]}.{image_id}{ext}",
              gray=True, size=size, format="TIFF")
    _report_write("jaffe", skipped, verbose)
    return root


# ---------------------------------------------------------------------------
# FERG-DB
# ---------------------------------------------------------------------------

def read_ferg(root: str | os.PathLike, *, verbose: bool = True) -> SampleList:
    """Read FERG-DB ``FERG_DB_256/<char>/<char>_<expr>/<char>_<expr>_<n>.png``.

    ``root`` is ``FERG_DB_256/`` or its parent. The label is the ``_<expr>`` folder
    suffix ("joy" = happiness). ``identity`` = index in FERG_CHARACTERS (aia=0 .. ray=5)
    or the number of a ``char<N>`` folder the writer made; extras ``character``, ``number``.
    """
    root = Path(root)
    top = root / "FERG_DB_256" if (root / "FERG_DB_256").is_dir() else root
    out = SampleList()
    for char_dir in sorted(p for p in top.iterdir() if p.is_dir()):
        char = char_dir.name
        for class_dir in sorted(p for p in char_dir.iterdir() if p.is_dir()):
            prefix, _, expr = class_dir.name.partition("_")
            if prefix != char or expr not in FERG_TO_CANON:
                raise _error(class_dir, "folder name", f"'{char}_<expr>' with expr in {sorted(FERG_TO_CANON)}",
                             class_dir.name)
            for path in sorted(p for p in class_dir.iterdir() if p.suffix.lower() == ".png"):
                parts = path.stem.split("_")
                if len(parts) != 3 or parts[0] != char or parts[1] != expr:
                    raise _error(path, "file name", f"'{char}_{expr}_<n>.png'", path.name)
                if char in FERG_CHARACTERS:
                    identity = FERG_CHARACTERS.index(char)
                else:
                    m = re.fullmatch(r"char(\d+)", char)
                    identity = int(m.group(1)) if m else None
                out.append(make_sample(
                    image=str(path), path=str(path), label=FERG_TO_CANON[expr], native_label=expr,
                    identity=identity, source=str(path), character=char,
                    number=int(parts[2]) if parts[2].isdigit() else parts[2]))
    if not out:
        raise _error(top, "folder", "<char>/<char>_<expr>/<char>_<expr>_<n>.png images")
    return out


def write_ferg(samples: Iterable[dict], root: str | os.PathLike, *, size: int | None = 256,
               verbose: bool = True) -> Path:
    """Write ``<root>/FERG_DB_256/<char>/<char>_<expr>/<char>_<expr>_<n>.png`` (256x256 RGB).

    Identity i < 6 is FERG_CHARACTERS[i]; larger ids become ``char<i>``. Numbers
    count from 1 per (character, class). Contempt/None samples are skipped and counted.
    """
    root = Path(root)
    inverse = _inverse(FERG_TO_CANON)
    numbers: Counter = Counter()
    skipped: Counter = Counter()
    for i, s in enumerate(samples):
        label = s.get("label")
        if label not in inverse:
            skipped["no FERG class (None or contempt)"] += 1
            continue
        identity = int(_required(s, "identity", i, "ferg"))
        char = FERG_CHARACTERS[identity] if identity < len(FERG_CHARACTERS) else f"char{identity}"
        expr = inverse[label]
        numbers[(char, expr)] += 1
        path = root / "FERG_DB_256" / char / f"{char}_{expr}" / f"{char}_{expr}_{numbers[(char, expr)]}.png"
        _save(_as_image(s["image"], size=size).convert("RGB"), path)
    _report_write("ferg", skipped, verbose)
    return root


# ---------------------------------------------------------------------------
# Aff-Wild2 (ABAW annotation files)
# ---------------------------------------------------------------------------

def _abaw_annotation_dirs(root: Path) -> dict[tuple[str, str], Path]:
    """Find ``<task folder>/<split folder>`` for every ABAW edition naming under ``root``."""
    bases = [root]
    for child in sorted(p for p in root.iterdir() if p.is_dir()):
        if "nnotation" in child.name or "ABAW" in child.name:
            bases.append(child)
            bases.extend(sorted(p for p in child.iterdir() if p.is_dir() and "nnotation" in p.name))
    found: dict[tuple[str, str], Path] = {}
    for base in bases:
        for task, names in _ABAW_TASK_DIRS.items():
            for name in names:
                for split, split_names in _ABAW_SPLIT_DIRS.items():
                    for sname in split_names:
                        folder = base / name / sname
                        if folder.is_dir() and (task, split) not in found:
                            found[(task, split)] = folder
    return found


def _read_abaw_file(path: Path, task: str) -> tuple[list[str], list[Any]]:
    """Parse one per-video ABAW txt file -> (header, one parsed value per frame line)."""
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise _error(path, "line 1", f"an ABAW {task} header line and one line per frame (the file is empty)")
    header = [h.strip() for h in lines[0].split(",")]
    if task == "VA" and [h.lower() for h in header] != ["valence", "arousal"]:
        raise _error(path, "line 1 (header)", "'valence,arousal'", lines[0])
    if task == "EXPR" and header not in (list(ABAW_EXPR_NAMES[:7]), list(ABAW_EXPR_NAMES)):
        raise _error(path, "line 1 (header)", "'" + ",".join(ABAW_EXPR_NAMES[:7]) + "' (+',Other')", lines[0])
    if task == "AU":
        if not all(re.fullmatch(r"AU\d+", h) and int(h[2:]) in _AU_INDEX for h in header):
            raise _error(path, "line 1 (header)", "'AU1,AU2,...' with AUs from fer_utils.labels.AUS", lines[0])
    values: list[Any] = []
    n_classes = len(header)
    for line_no, line in enumerate(lines[1:], start=2):
        parts = [p.strip() for p in line.split(",")]
        try:
            if task == "VA":
                if len(parts) != 2:
                    raise ValueError
                v = (float(parts[0]), float(parts[1]))
                if any(x != -5 and not -1 <= x <= 1 for x in v):
                    raise _error(path, f"line {line_no}", "valence,arousal in [-1, 1] or -5", line)
            elif task == "EXPR":
                if len(parts) != 1:
                    raise ValueError
                v = int(float(parts[0]))
                if v != -1 and not 0 <= v < n_classes:
                    raise _error(path, f"line {line_no}", f"an expression id 0..{n_classes - 1} or -1", line)
            else:
                if len(parts) != len(header):
                    raise ValueError
                v = tuple(int(float(p)) for p in parts)
                if any(x not in (0, 1, -1) for x in v):
                    raise _error(path, f"line {line_no}", "AU values 0, 1 or -1", line)
        except ValueError as exc:
            if isinstance(exc, FormatError):
                raise
            what = {"VA": "'valence,arousal' floats", "EXPR": "one int expression id",
                    "AU": f"{len(header)} comma-separated 0/1/-1 values"}[task]
            raise _error(path, f"line {line_no}", what, line) from None
        values.append(v)
    return header, values


def read_affwild2(root: str | os.PathLike, *, split: str | None = None,
                  tasks: Sequence[str] = ("VA", "EXPR", "AU"), images: str = "cropped_aligned",
                  verbose: bool = True) -> SampleList:
    """Read Aff-Wild2 per-frame annotations (ABAW1, ABAW2 or ABAW3+ folder names).

    ``root`` holds ``cropped_aligned/<video>/00001.jpg`` and an annotation tree
    (``annotations/{VA,EXPR,AU}_Set/{Training,Train}_Set/`` or
    ``<nth> ABAW Annotations/{VA_Estimation,EXPR_Classification|Recognition,AU_Detection}_Challenge/``).
    Line k+1 of a file is frame ``k.jpg`` (1-based, header first); frames are joined
    by number. One sample per frame that has an image and at least one usable value.
    Sentinels: VA -5 -> valence/arousal None, EXPR -1 -> label None, EXPR 7 (Other,
    NOT contempt) -> label None with native_label 7, any AU -1 -> AU fields None; all
    counted in ``masked``. Annotation lines without a face image and frames with only
    sentinels are counted in ``skipped``. AUs: ``au_presence``/``au_mask`` (17,) in
    AUS order, ``aus`` None (ABAW has no intensities). ``identity`` None (no subject
    ids); extras ``video``, ``frame``, ``edition``.
    (The MTL_Challenge single-file format is not read here.)
    """
    root = Path(root)
    dirs = _abaw_annotation_dirs(root)
    splits = [split] if split else ["train", "val"]
    wanted = {(t, s): p for (t, s), p in dirs.items() if t in tasks and s in splits}
    if not wanted:
        raise _error(root, "annotation folders", "annotations/EXPR_Set/Train_Set/ or "
                     "'Third ABAW Annotations/EXPR_Classification_Challenge/Train_Set/' (or VA/AU)")
    names = {p.parent.name for p in wanted.values()} | {p.name for p in wanted.values()}
    edition = "abaw3+" if any(n.endswith("_Challenge") for n in names) else \
        "abaw1" if "Training_Set" in names else "abaw2"
    image_root = root / images
    per_video: dict[tuple[str, str], dict[str, tuple[Path, list]]] = defaultdict(dict)
    for (task, sp), folder in sorted(wanted.items()):
        for path in sorted(folder.glob("*.txt")):
            header, values = _read_abaw_file(path, task)
            per_video[(sp, path.stem)][task] = (path, values, header)
    out = SampleList()
    skipped: Counter = Counter()
    masked: Counter = Counter()
    total = 0
    for (sp, video), ann in sorted(per_video.items()):
        video_dir = image_root / video
        frames: dict[int, Path] = {}
        if video_dir.is_dir():
            for p in video_dir.iterdir():
                if p.suffix.lower() == ".jpg":
                    if not p.stem.isdigit():
                        raise _error(p, "file name", "a frame image named like 00001.jpg", p.name)
                    frames[int(p.stem)] = p
        n_lines = max(len(v[1]) for v in ann.values())
        for task, (path, values, _) in ann.items():
            if frames and max(frames) > len(values):
                raise _error(path, f"line {len(values) + 2}",
                             f"one line per frame after the header: {video_dir / f'{max(frames):05d}.jpg'} "
                             f"exists but the file has {len(values)} frame lines")
        for k in range(1, n_lines + 1):
            total += 1
            if k not in frames:
                skipped["annotation line without a face image"] += 1
                continue
            sample = make_sample(image=str(frames[k]), path=str(frames[k]), split=sp, video=video,
                                 frame=k, edition=edition)
            usable, sources = False, []
            if "VA" in ann and k <= len(ann["VA"][1]):
                sources.append(f"{ann['VA'][0]}:line {k + 1}")
                v, a = ann["VA"][1][k - 1]
                if v == -5 or a == -5:
                    masked["VA -5"] += 1
                else:
                    sample.update(valence=v, arousal=a)
                    usable = True
            if "EXPR" in ann and k <= len(ann["EXPR"][1]):
                sources.append(f"{ann['EXPR'][0]}:line {k + 1}")
                e = ann["EXPR"][1][k - 1]
                if e == -1:
                    masked["EXPR -1"] += 1
                elif e == AFFWILD2_OTHER:
                    masked["EXPR 7 (Other)"] += 1
                    sample["native_label"] = e
                else:
                    sample.update(label=AFFWILD2_TO_CANON[e], native_label=e)
                    usable = True
            if "AU" in ann and k <= len(ann["AU"][1]):
                path, values, header = ann["AU"]
                sources.append(f"{path}:line {k + 1}")
                row = values[k - 1]
                if -1 in row:
                    masked["AU -1"] += 1
                else:
                    presence = np.zeros(len(AUS), bool)
                    mask = np.zeros(len(AUS), bool)
                    for h, x in zip(header, row):
                        presence[_AU_INDEX[int(h[2:])]] = bool(x)
                        mask[_AU_INDEX[int(h[2:])]] = True
                    sample.update(au_presence=presence, au_mask=mask)
                    usable = True
            if not usable:
                skipped["frame with only -5/-1/Other markers"] += 1
                continue
            sample["source"] = "; ".join(sources)
            out.append(sample)
    out.skipped, out.masked = dict(skipped), dict(masked)
    _report("affwild2", total, len(out), out.skipped, out.masked, verbose)
    return out


def write_affwild2(samples: Iterable[dict], root: str | os.PathLike, *, edition: str = "abaw3",
                   split: str = "train", size: int | None = 112, annotations_dir: str | None = None,
                   verbose: bool = True) -> Path:
    """Write Aff-Wild2: ``cropped_aligned/<video>/%05d.jpg`` (112x112 RGB) and per-video
    VA / EXPR / AU txt files in the folder names of ``edition`` ("abaw1", "abaw2",
    "abaw3"; ``annotations_dir`` overrides the top folder, e.g. "5th_ABAW_Annotations").

    Video = the sample's ``video`` or ``video<identity>``; frame = its ``frame`` or the
    1-based position within the video. A task file is written for a video when any of
    its samples has that field; missing values become -5,-5 / -1 / all -1. A sample
    whose ``image`` is None gets annotation lines but no JPEG (a frame without a face).
    Contempt has no ABAW class (7 is Other): written as -1 and counted.
    """
    if edition not in ABAW_EDITIONS:
        raise ValueError(f"edition must be one of {sorted(ABAW_EDITIONS)}, got {edition!r}")
    ed = ABAW_EDITIONS[edition]
    root = Path(root)
    top = root / (annotations_dir or ed["top"])
    videos: dict[str, list[dict]] = defaultdict(list)
    for s in samples:
        video = s.get("video") or f"video{s.get('identity') if s.get('identity') is not None else ''}"
        videos[video].append(s)
    skipped: Counter = Counter()
    for video, items in videos.items():
        frames: dict[int, dict] = {}
        for pos, s in enumerate(items, start=1):
            k = int(s["frame"]) if s.get("frame") is not None else pos
            frames[k] = s
        n = max(frames)
        sp = "val" if _split_of(items[0], split) in ("val", "test") else "train"
        for k, s in frames.items():
            if s.get("image") is not None:
                img = _as_image(s["image"], size=size).convert("RGB")
                _save(img, root / "cropped_aligned" / video / f"{k:05d}.jpg", **_JPEG)
        files: dict[str, list[str]] = {}
        if any(s.get("valence") is not None for s in items):
            lines = ["valence,arousal"]
            for k in range(1, n + 1):
                s = frames.get(k, {})
                v, a = s.get("valence"), s.get("arousal")
                lines.append("-5,-5" if v is None or a is None else f"{_num(float(v))},{_num(float(a))}")
            files["VA"] = lines
        if any(s.get("label") is not None for s in items):
            lines = [",".join(ABAW_EXPR_NAMES[:ed["classes"]])]
            for k in range(1, n + 1):
                label = frames.get(k, {}).get("label")
                if label == 7:
                    skipped["contempt written as EXPR -1 (ABAW 7 is Other)"] += 1
                lines.append(str(label) if label is not None and label in AFFWILD2_TO_CANON else "-1")
            files["EXPR"] = lines
        if any(s.get("au_presence") is not None for s in items):
            lines = [",".join(f"AU{au}" for au in ed["aus"])]
            for k in range(1, n + 1):
                s = frames.get(k, {})
                presence, mask = s.get("au_presence"), s.get("au_mask")
                if presence is None:
                    lines.append(",".join("-1" for _ in ed["aus"]))
                    continue
                vals = []
                for au in ed["aus"]:
                    j = _AU_INDEX[au]
                    vals.append("-1" if mask is not None and not mask[j] else str(int(bool(presence[j]))))
                lines.append(",".join(vals))
            files["AU"] = lines
        for task, lines in files.items():
            path = top / ed[task] / ed[sp] / f"{video}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("\n".join(lines) + "\n")
    _report_write("affwild2", skipped, verbose)
    return root


# ---------------------------------------------------------------------------
# torch Dataset over any reader's output
# ---------------------------------------------------------------------------

try:  # torch is a course dependency, but the readers work without it
    import torch
    from torch.utils.data import Dataset as _TorchDataset
except ImportError:  # pragma: no cover
    torch = None
    _TorchDataset = object


class FormatDataset(_TorchDataset):
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
            image = load_image(image)
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
        elif any(v is None for v in values) or torch is None:
            out[key] = values
        elif all(isinstance(v, np.ndarray) for v in values) and len({v.shape for v in values}) == 1 \
                and values[0].dtype.kind in "biuf":
            out[key] = torch.from_numpy(np.stack(values))
        elif all(isinstance(v, (bool, int, float, np.number)) and not isinstance(v, str) for v in values):
            out[key] = torch.tensor(np.array(values))
        else:
            out[key] = values
    return out


READERS: dict[str, Callable[..., Any]] = {
    "fer2013": read_fer2013, "ferplus": read_ferplus, "rafdb": read_rafdb,
    "affectnet": read_affectnet, "ckplus": read_ckplus, "oulu": read_oulu,
    "jaffe": read_jaffe, "ferg": read_ferg, "affwild2": read_affwild2,
}
WRITERS: dict[str, Callable[..., Path]] = {
    "fer2013": write_fer2013, "ferplus": write_ferplus, "rafdb": write_rafdb,
    "affectnet": write_affectnet, "ckplus": write_ckplus, "oulu": write_oulu,
    "jaffe": write_jaffe, "ferg": write_ferg, "affwild2": write_affwild2,
}

__all__ = [
    "FormatError", "SampleList", "ArraySamples", "FormatDataset", "collate_samples", "load_image",
    "make_sample", "ferplus_majority", "read_fer2013_rowwise", "READERS", "WRITERS", "LABEL_MAPS",
    *[f"read_{n}" for n in READERS], *[f"write_{n}" for n in WRITERS],
    "FER2013_TO_CANON", "FERPLUS_TO_CANON", "FERPLUS_COLUMNS", "RAFDB_TO_CANON", "AFFECTNET_TO_CANON",
    "CKPLUS_TO_CANON", "OULU_TO_CANON", "JAFFE_TO_CANON", "FERG_TO_CANON", "AFFWILD2_TO_CANON",
]
