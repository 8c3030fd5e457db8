"""What every dataset reader shares: the error, the sample record, the skip report, files.

* :class:`FormatError` -- bad input; the message names the file, the line or field, and
  what was expected.
* :func:`make_sample` -- the sample dict every reader returns (same keys as a SynthFaces item).
* :class:`Tally` and :class:`SampleList` -- what a reader skipped, masked or ignored, and why;
  ``print(samples.report())`` shows it.
* :func:`read_text`, :func:`list_folder`, :func:`require_dir` -- reading real copies of the
  datasets as users have them: label files saved by other tools (UTF-8 with or without BOM,
  UTF-16 with BOM, cp1252; CRLF or CR line ends) and folders holding OS artefacts (macOS
  ``._*`` AppleDouble files and ``__MACOSX/``, ``.DS_Store``, Windows ``Thumbs.db`` and
  ``desktop.ini``), which are skipped and counted, never read as data.
* :func:`read_image_file` -- an image file as uint8 (H, W) for grey files, (H, W, 3) otherwise,
  with its real values (16-bit PNG/TIFF scaled, CMYK and palette as RGB, transparency on white,
  EXIF orientation applied); every reader path reads images through it.
"""
from __future__ import annotations

import codecs
import os
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
from PIL import Image

from fer_utils.data.formats.errors import FormatError, error  # noqa: F401 (re-exported: readers import them here)
from fer_utils.data.formats.images import BACKGROUND, read_image_file  # noqa: F401 (re-exported)


# ---------------------------------------------------------------------------
# The sample record and the report of what was left out
# ---------------------------------------------------------------------------

SAMPLE_KEYS: tuple[str, ...] = (
    "image", "path", "label", "native_label", "valence", "arousal", "aus", "au_presence",
    "au_mask", "landmarks", "identity", "source", "split")


def make_sample(**fields: Any) -> dict:
    """A sample dict with every common key present (``None`` unless given)."""
    sample = dict.fromkeys(SAMPLE_KEYS)
    sample.update(fields)
    return sample


class Tally:
    """Counts kept while reading: ``skipped`` rows, ``masked`` fields (set to None by a
    documented sentinel), ``ignored`` files that are not data (OS artefacts, READMEs), and
    ``notes`` (e.g. a label file decoded as cp1252, a split folder that is missing)."""

    def __init__(self) -> None:
        self.skipped: Counter = Counter()
        self.masked: Counter = Counter()
        self.ignored: Counter = Counter()
        self.notes: list[str] = []

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)


def summary_line(reader: str, total: int, kept: int, skipped: dict, masked: dict,
                 ignored: dict, notes: list[str]) -> str:
    """``read_<reader>: kept K of N rows; skipped ...; set to None ...; ignored files ...``."""
    parts = [f"read_{reader}: kept {kept:,} of {total:,} rows"]
    for title, counts in (("skipped", skipped), ("set to None", masked), ("ignored files", ignored)):
        if counts:
            parts.append(title + " " + ", ".join(f"{k}={v:,}" for k, v in counts.items()))
    parts.extend(notes)
    return "; ".join(parts)


class SampleList(list):
    """A reader's samples plus what it left out: ``skipped``, ``masked``, ``ignored``
    (reason -> count) and ``notes``; :meth:`report` gives the one-line summary."""

    def __init__(self, items: Iterable[dict] = (), *, skipped: dict | None = None,
                 masked: dict | None = None) -> None:
        super().__init__(items)
        self.skipped: dict[str, int] = dict(skipped or {})
        self.masked: dict[str, int] = dict(masked or {})
        self.ignored: dict[str, int] = {}
        self.notes: list[str] = []
        self.reader, self.total = "", len(self)

    def report(self) -> str:
        return summary_line(self.reader, self.total, len(self), self.skipped, self.masked,
                            self.ignored, self.notes)


def finish(reader: str, out: Any, tally: Tally, total: int, verbose: bool) -> Any:
    """Attach the tally to a reader's result and print its summary if anything was left out."""
    out.skipped, out.masked = dict(tally.skipped), dict(tally.masked)
    out.ignored, out.notes = dict(tally.ignored), list(tally.notes)
    out.reader, out.total = reader, total
    if verbose and (tally.skipped or tally.masked or tally.ignored or tally.notes):
        print(out.report())
    return out


def report_write(writer: str, skipped: Counter, verbose: bool = True) -> None:
    """Print what a writer could not represent in the target layout."""
    if verbose and skipped:
        print(f"write_{writer}: " + ", ".join(f"{k}={v:,}" for k, v in skipped.items()))


def drop_duplicates(samples: list[dict], key: Callable[[dict], Any], tally: Tally,
                    label: Callable[[dict], Any] = lambda s: s["native_label"]) -> list[dict]:
    """One sample per image: a repeated entry with the same label is skipped; an image listed
    with different labels is dropped entirely (all its entries). Both are counted, and the
    first conflict is named in the notes (file and lines)."""
    seen: dict[Any, dict] = {}
    conflicts: dict[Any, list[dict]] = {}
    for s in samples:
        k = key(s)
        if k not in seen:
            seen[k] = s
        elif k in conflicts or label(seen[k]) != label(s):
            conflicts.setdefault(k, [seen[k]]).append(s)
        else:
            tally.skipped["duplicate entry (same image, same label)"] += 1
    if not conflicts:
        return list(seen.values())
    first = next(iter(conflicts.values()))
    tally.skipped["image listed with different labels (all its entries)"] += sum(map(len, conflicts.values()))
    tally.note(f"first conflicting entries: {' vs '.join(s['source'] for s in first[:2])}")
    return [s for k, s in seen.items() if k not in conflicts]


# ---------------------------------------------------------------------------
# Files and folders as real copies hold them
# ---------------------------------------------------------------------------

_OS_FILES = {".ds_store": ".DS_Store", "thumbs.db": "Thumbs.db", "ehthumbs.db": "Thumbs.db",
             "desktop.ini": "desktop.ini", "__macosx": "__MACOSX", "$recycle.bin": "$RECYCLE.BIN",
             "system volume information": "System Volume Information"}


def artefact_kind(name: str) -> str | None:
    """What OS artefact a file or folder name is (None for an ordinary name)."""
    lower = name.lower()
    if lower in _OS_FILES:
        return _OS_FILES[lower]
    if name.startswith("._"):
        return "._* (macOS AppleDouble)"
    if name.startswith("."):
        return "hidden .* entry"
    if name.startswith("~$"):
        return "~$* (Office lock file)"
    return None


def require_dir(path: Path, what: str) -> Path:
    """``path`` if it is a folder, else a FormatError saying what folder was expected."""
    if path.is_dir():
        return path
    if path.exists():
        raise error(path, "path", f"a folder ({what}), got a file")
    raise error(path, "path", f"a folder ({what}), which does not exist")


def list_folder(folder: Path, tally: Tally, what: str, *, dirs: bool | None = None) -> list[Path]:
    """Sorted entries of ``folder`` without OS artefacts (counted in ``tally.ignored``).
    ``dirs=True`` keeps folders only, ``False`` files only, None both."""
    out = []
    with os.scandir(require_dir(folder, what)) as it:  # DirEntry.is_dir() needs no stat call
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        kind = artefact_kind(entry.name)
        if kind is not None:
            tally.ignored[kind] += 1
        elif dirs is None or entry.is_dir() == dirs:
            out.append(folder / entry.name)
        else:
            tally.ignored["file where folders were expected" if dirs else "folder among files"] += 1
    return out


def keep_suffix(files: list[Path], suffixes: tuple[str, ...], tally: Tally) -> list[Path]:
    """The files whose suffix is one of ``suffixes``; the others are counted as ignored."""
    out = [p for p in files if p.suffix.lower() in suffixes]
    if len(out) < len(files):
        tally.ignored[f"not {'/'.join(suffixes)}"] += len(files) - len(out)
    return out


def _line_of(raw: bytes, offset: int) -> int:
    return raw.count(b"\n", 0, offset) + 1


_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


def decode_text(raw: bytes, path: Path, tally: Tally | None = None) -> str:
    """Decode a label file: a BOM decides (UTF-8/16/32), else UTF-8, else cp1252 (noted in
    ``tally``); CRLF and CR line ends become LF. Binary data (a NUL byte without a UTF-16/32
    BOM) and bytes no candidate decodes are FormatErrors naming the line and byte."""
    encoding = next((enc for bom, enc in _BOMS if raw.startswith(bom)), None)
    if encoding is None and b"\x00" in raw:
        nul = raw.index(b"\x00")
        raise error(path, f"line {_line_of(raw, nul)} (byte {nul})", "a text file (UTF-8, cp1252, or "
                    "UTF-16 with BOM); found a NUL byte: binary data, or UTF-16 saved without its BOM")
    candidates = [encoding] if encoding else ["utf-8", "cp1252"]
    for enc in candidates:
        try:
            text = raw.decode(enc)
        except UnicodeDecodeError as exc:
            if enc != candidates[-1]:
                continue
            raise error(path, f"line {_line_of(raw, exc.start)} (byte {exc.start})",
                        f"text in {' or '.join(candidates)}", raw[exc.start:exc.start + 4]) from None
        if enc == "cp1252" and tally is not None:
            tally.note(f"{path} is not UTF-8: decoded as cp1252")
        return text.replace("\r\n", "\n").replace("\r", "\n")
    raise AssertionError("unreachable")  # pragma: no cover


def read_text(path: Path, what: str, tally: Tally | None = None) -> str:
    """The text of a label file (see :func:`decode_text`), with FormatErrors for a folder
    given instead of the file and for a missing file."""
    if path.is_dir():
        raise error(path, "path", f"a file ({what}), got a folder")
    if not path.is_file():
        raise error(path, "path", f"a file ({what}), which does not exist")
    return decode_text(path.read_bytes(), path, tally)


def check_image(image: Path, label_file: Path, where: str) -> None:
    """A FormatError naming the label file and line when the image it lists is not a file."""
    if image.is_dir():
        raise error(label_file, where, f"the image file {image}", "a folder")
    if not image.is_file():
        raise error(label_file, where, f"the image file {image}", "missing")


def as_image(image: Any, *, gray: bool = False, size: int | tuple[int, int] | None = None) -> Image.Image:
    """A sample image (array or path) as a PIL image, optionally grayscale and resized."""
    if isinstance(image, (str, os.PathLike)):
        image = read_image_file(image)
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


JPEG = {"quality": 95}


def save_image(image: Any, path: Path, *, gray: bool = False, size: Any = None, **kw: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    as_image(image, gray=gray, size=size).save(path, **kw)


# ---------------------------------------------------------------------------
# Small helpers for writers
# ---------------------------------------------------------------------------

def inverse(mapping: dict) -> dict:
    return {v: k for k, v in mapping.items()}


def required(sample: dict, key: str, i: int, writer: str) -> Any:
    value = sample.get(key)
    if value is None:
        raise ValueError(f"write_{writer}: sample {i} has no {key!r}, which the layout needs")
    return value


#: FER2013 ``Usage`` values and the split each one means.
USAGE_TO_SPLIT: dict[str, str] = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}


def split_of(sample: dict, default: str) -> str:
    """Normalise a sample's split/usage to train / val / test."""
    value = sample.get("split") or sample.get("usage") or default
    value = USAGE_TO_SPLIT.get(value, value)
    aliases = {"training": "train", "validation": "val", "valid": "val", "testing": "test"}
    return aliases.get(str(value).lower(), str(value).lower())


def num(v: float) -> str:
    """Short decimal text for a float (as AffectNet's CSV writes them)."""
    text = f"{v:.6f}".rstrip("0")
    return text + "0" if text.endswith(".") else text
