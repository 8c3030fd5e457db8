"""Reading one image file with its real values: :func:`read_image_file`, what every dataset reader uses.

16-bit PNG/TIFF are scaled to 8 bits (not clipped), float images in [0, 1] multiplied by 255, CMYK and
palette files converted to RGB, transparency composited on white, the EXIF orientation applied; a
missing, empty, truncated or non-image file is a :class:`FormatError` naming the file.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image, UnidentifiedImageError

from fer_utils.data.formats.errors import FormatError


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
