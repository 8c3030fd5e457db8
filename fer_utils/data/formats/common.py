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
import stat
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
from PIL import Image, UnidentifiedImageError


class FormatError(ValueError):
    """Bad dataset input; the message names the file, the line/row and what was expected."""


def error(path: str | os.PathLike, where: str, expected: str, got: Any = None) -> FormatError:
    """A FormatError reading ``<path>, <where>: expected <expected>, got <got>``."""
    msg = f"{path}, {where}: expected {expected}"
    if got is not None:
        text = repr(got)
        msg += f", got {text[:80] + '...' if len(text) > 80 else text}"
    return FormatError(msg)


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


# ---------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------

#: The grey level transparent pixels are composited onto: white (255), as an image viewer or a
#: web page shows a transparent PNG. Used for RGBA, LA, PA and palette/grey/RGB files with a
#: ``transparency`` entry, 8- and 16-bit alike.
BACKGROUND: int = 255

_IMAGE_KINDS = "an image file (JPEG, PNG, BMP, TIFF, GIF, WebP, ...)"
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")
_GREY_MODES = ("1", "L")
_EXIF_ORIENTATION = 0x0112
#: EXIF orientation -> the array operation that undoes it (as ``ImageOps.exif_transpose``).
_UNDO_ORIENTATION: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    2: lambda a: a[:, ::-1],                  # FLIP_LEFT_RIGHT
    3: lambda a: a[::-1, ::-1],               # ROTATE_180
    4: lambda a: a[::-1],                     # FLIP_TOP_BOTTOM
    5: lambda a: a.swapaxes(0, 1),            # TRANSPOSE
    6: lambda a: np.rot90(a, -1),             # ROTATE_270 (90 degrees clockwise)
    7: lambda a: a[::-1, ::-1].swapaxes(0, 1),  # TRANSVERSE
    8: lambda a: np.rot90(a, 1),              # ROTATE_90 (90 degrees anticlockwise)
}


def read_image_file(path: str | os.PathLike, mode: str | None = None) -> np.ndarray:
    """Read an image file as uint8 with its real values: the one image reader of fer_utils.

    Shape: ``mode=None`` gives (H, W) for grey files (PIL modes 1, L, I*, F) and (H, W, 3) RGB
    otherwise (LA, palette and CMYK files included); ``mode="L"`` always (H, W) (colour turned
    grey with PIL's ITU-R 601-2 luma, as ``Image.convert("L")``); ``mode="RGB"`` always (H, W, 3).

    Values, as real dataset copies hold them:

    * 16-bit PNG and TIFF (grey, grey+alpha, RGB, RGBA; PIL modes ``I;16``, ``I;16B``, ``I;16L``)
      are scaled ``round(v * 255 / 65535)``, never clipped. PIL reads 16-bit colour files at 8 bits
      (high byte only), so those are decoded with ``cv2.imdecode(..., IMREAD_UNCHANGED)``. PIL mode
      ``I`` (32-bit integer) is taken as 16-bit (older Pillow opens 16-bit PNGs so); values outside
      0..65535 are a :class:`FormatError`.
    * 32-bit float (PIL mode ``F``) must hold values in [0, 1], which are scaled by 255 and
      rounded; NaN or values outside [0, 1] are a :class:`FormatError` (their range is unknown).
    * CMYK JPEGs become RGB with PIL's ``convert("RGB")``. PIL reads every CMYK JPEG with Adobe's
      inverted polarity (what Photoshop writes, flagged by its APP14 ``Adobe`` marker) and applies
      no ICC profile, so colours are PIL's uncalibrated CMYK->RGB.
    * Transparency (alpha channel, or a palette/grey/RGB ``transparency`` entry) is composited
      onto :data:`BACKGROUND`, white: ``round(c * a + 255 * (1 - a))``; opaque pixels keep their
      values. Palette files become RGB.
    * EXIF orientation is applied (as ``ImageOps.exif_transpose`` does, and as ``cv2.imread`` and
      photo viewers do): a phone photo saved sideways with an orientation tag comes out upright.
    * Multi-frame files (GIF, multi-page TIFF) give their first frame.

    A missing file raises FileNotFoundError. A folder, an empty (0-byte) file, a file no decoder
    recognises (a text file named ``.jpg``), a truncated or corrupt image, or a mode that cannot be
    converted raises :class:`FormatError` naming the file and what was expected. PIL's
    ``ImageFile.LOAD_TRUNCATED_IMAGES`` is left False (fer_utils never sets it): a truncated file
    is an error, not an image padded with grey.
    """
    if mode not in (None, "L", "RGB"):
        raise ValueError(f"read_image_file: mode must be None, 'L' or 'RGB', got {mode!r}")
    path = Path(path)
    _check_image_path(path)
    try:
        im = Image.open(path)
    except FileNotFoundError:
        raise
    except Exception as exc:  # not an image, or one whose header is cut off or corrupt
        raise _unrecognised(path, exc) from exc
    with im:
        try:
            pixels = _decode(im, path)
        except FormatError:
            raise
        except Exception as exc:  # PIL raises many types for files it cannot convert
            raise FormatError(f"{path}: expected {_IMAGE_KINDS} in a mode this reader converts, got "
                              f"{type(exc).__name__}: {exc}") from exc
    return _as_mode(pixels, mode)


def _check_image_path(path: Path) -> None:
    """FileNotFoundError for a missing path, FormatError for a folder or an empty file."""
    try:
        info = path.stat()  # one system call: this runs for every image a dataset loads
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: expected {_IMAGE_KINDS}, which does not exist") from None
    if stat.S_ISDIR(info.st_mode):
        raise FormatError(f"{path}: expected {_IMAGE_KINDS}, got a folder")
    if info.st_size == 0:
        raise FormatError(f"{path}: expected {_IMAGE_KINDS}, got an empty (0-byte) file")


#: Leading bytes of the image formats datasets ship in, to tell a damaged image from a non-image.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "JPEG"), (b"\x89PNG\r\n\x1a\n", "PNG"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"),
    (b"GIF8", "GIF"), (b"BM", "BMP"))


def _unrecognised(path: Path, exc: Exception) -> FormatError:
    """The FormatError for a file PIL cannot open: a damaged image, or not an image at all."""
    with open(path, "rb") as f:
        head = f.read(16)
    size = f"{path.stat().st_size:,} bytes"
    kind = next((name for magic, name in _SIGNATURES if head.startswith(magic)), None)
    if kind is None and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        kind = "WebP"
    if kind is None and not isinstance(exc, UnidentifiedImageError):
        kind = "image"  # PIL knew the format but could not read its header
    if kind is not None:
        return FormatError(f"{path}: expected a complete {kind} file, got {size} that start like a {kind} "
                           f"but cannot be decoded ({type(exc).__name__}: {exc}); the file is truncated "
                           "or corrupt: copy it again")
    return FormatError(f"{path}: expected {_IMAGE_KINDS}, got {size} no image decoder recognises "
                       f"(they start with {head!r})")


def _decode(im: Image.Image, path: Path) -> np.ndarray:
    """The pixels of an opened image as uint8 (H, W) or (H, W, 3), upright (EXIF orientation)."""
    wide_colour = not im.mode.startswith("I") and any(";16" in _rawmode(t) for t in im.tile)
    try:
        im.load()  # the whole file: a truncated or corrupt one fails here
    except Exception as exc:
        raise FormatError(f"{path}: expected a complete {im.format or 'image'} file, got one its decoder "
                          f"could not read to the end ({type(exc).__name__}: {exc}); the file is "
                          "truncated or corrupt: copy it again") from exc
    if wide_colour:
        pixels = _read_16bit_colour(path)
    elif im.mode.startswith("I"):
        pixels = _scale_16bit(np.asarray(im), path, im.mode)
    elif im.mode == "F":
        pixels = _scale_float(np.asarray(im), path)
    elif im.mode in _ALPHA_MODES or "transparency" in im.info:
        rgba = np.asarray(im.convert("RGBA"), np.float64) / 255.0
        pixels = _composite(rgba[..., :3], rgba[..., 3:])
        if im.mode in _GREY_MODES:  # a grey file with a transparent level stays grey
            pixels = pixels[..., 0]
    elif im.mode in _GREY_MODES:
        pixels = np.asarray(im.convert("L"))
    else:  # RGB, CMYK, YCbCr, palette without transparency
        pixels = np.asarray(im.convert("RGB"))
    undo = _UNDO_ORIENTATION.get(_orientation(im))
    return np.ascontiguousarray(undo(pixels)) if undo else pixels


def _rawmode(tile: Any) -> str:
    """The raw mode a PIL tile decodes from (e.g. ``RGB;16B`` for a 16-bit RGB PNG)."""
    args = tile[3] if len(tile) > 3 else None
    return str(args[0] if isinstance(args, tuple) and args else args)


def _orientation(im: Image.Image) -> int:
    """The EXIF orientation (1-8) of a loaded image; 1 when absent, unreadable or out of range."""
    try:
        value = im.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:  # a corrupt EXIF block does not make the pixels unreadable
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _scale_16bit(values: np.ndarray, path: Path, what: str) -> np.ndarray:
    """16-bit values (0..65535) as uint8 ``round(v * 255 / 65535)``, i.e. ``(v + 128) // 257``."""
    values = values.astype(np.int64)
    lo, hi = int(values.min(initial=0)), int(values.max(initial=0))
    if lo < 0 or hi > 65535:
        raise FormatError(f"{path}: expected 16-bit image values 0..65535 (PIL mode {what}), got "
                          f"values from {lo} to {hi}")
    return ((values + 128) // 257).astype(np.uint8)


def _scale_float(values: np.ndarray, path: Path) -> np.ndarray:
    """A 32-bit float image with values in [0, 1] as uint8 ``round(v * 255)``."""
    finite = bool(np.isfinite(values).all())
    if not finite or values.min(initial=0) < 0 or values.max(initial=0) > 1:
        got = "NaN or infinite values" if not finite else f"values from {values.min():g} to {values.max():g}"
        raise FormatError(f"{path}: expected a 32-bit float image with values in [0, 1] (scaled by "
                          f"255), got {got}")
    return np.rint(values.astype(np.float64) * 255.0).astype(np.uint8)


def _composite(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Colour and alpha in [0, 1] composited onto :data:`BACKGROUND`, as uint8."""
    out = colour * alpha + (BACKGROUND / 255.0) * (1.0 - alpha)
    return np.rint(out * 255.0).astype(np.uint8)


def _read_16bit_colour(path: Path) -> np.ndarray:
    """A 16-bit grey+alpha, RGB or RGBA PNG/TIFF (which PIL reads at 8 bits) via OpenCV."""
    import cv2

    arr = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None or arr.dtype != np.uint16 or arr.ndim != 3 or arr.shape[2] not in (2, 3, 4):
        got = "nothing" if arr is None else f"{arr.dtype} {arr.shape}"
        raise FormatError(f"{path}: expected a 16-bit grey+alpha, RGB or RGBA image OpenCV decodes, "
                          f"got {got}")
    if arr.shape[2] == 3:
        return _scale_16bit(arr[..., ::-1], path, "16-bit RGB")
    x = arr.astype(np.float64) / 65535.0
    colour = x[..., :1].repeat(3, axis=2) if arr.shape[2] == 2 else x[..., 2::-1]
    return _composite(colour, x[..., -1:])


def _as_mode(pixels: np.ndarray, mode: str | None) -> np.ndarray:
    """``pixels`` as (H, W) for ``mode="L"`` (PIL luma), (H, W, 3) for ``"RGB"``, as is for None."""
    if mode is None or (mode == "L") == (pixels.ndim == 2):
        return pixels
    if mode == "L":
        return np.asarray(Image.fromarray(pixels, "RGB").convert("L"))
    return np.repeat(pixels[..., None], 3, axis=2)


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
