"""Images as real dataset copies hold them (issue 26, item 7): one reader, real values.

Every file is made in the test: 16-bit PNG/TIFF (grey and RGB), 32-bit integer and float TIFF,
CMYK JPEG, palette PNG (with and without transparency), RGBA/LA PNG, EXIF-rotated JPEG/PNG, and
broken files (truncated, empty, text named .jpg). Each is read through ``read_image_file`` and,
where the case concerns them, through the other reader paths that now use it:
``Source.images``, ``clips._load_image`` and ``sequences._load``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import pytest
from PIL import Image, ImageFile, ImageOps

from fer_utils.data import clips, sequences
from fer_utils.data.formats import FormatError, read_image_file
from fer_utils.data.sources import Source

WHITE = 255  # the documented background transparent pixels are composited onto


def scaled16(values: np.ndarray) -> np.ndarray:
    """``round(v * 255 / 65535)`` for every value, with Python's round (no ties occur)."""
    flat = [round(int(v) * 255 / 65535) for v in np.asarray(values).ravel()]
    return np.array(flat, np.uint8).reshape(np.shape(values))


def over_white(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Colour and alpha (both 0..1) composited onto white, as uint8."""
    return np.rint(255.0 * (colour * alpha + (1.0 - alpha))).astype(np.uint8)


def gradient16(side: int = 256) -> np.ndarray:
    """(side, side) uint16 covering 0..65535 (every value once when side is 256)."""
    return np.linspace(0, 65535, side * side).round().astype(np.uint16).reshape(side, side)


def via_source(path: Path, grayscale: bool, size: int) -> np.ndarray:
    source = Source(name="test", root=path.parent, layout="folders", profile="test",
                    samples=[{"image": str(path)}], splits={"train": np.array([0])})
    return source.images("train", size=size, grayscale=grayscale)[0]


#: Every reader path, reading one square ``size`` image in colour (H, W, 3) RGB.
COLOUR_READERS: dict[str, Callable[[Path, int], np.ndarray]] = {
    "read_image_file": lambda p, size: read_image_file(p),
    "Source.images": lambda p, size: via_source(p, False, size),
    "clips._load_image": lambda p, size: clips._load_image(p, size, False),
    "sequences._load": lambda p, size: sequences._load({"image": str(p)}),
}


# ---------------------------------------------------------------------------
# 16-bit and float files
# ---------------------------------------------------------------------------

def test_16bit_grey_png_every_value_scaled_not_clipped(tmp_path):
    g = gradient16()
    path = tmp_path / "grey16.png"
    Image.fromarray(g).save(path)
    assert Image.open(path).mode.startswith("I;16")
    out = read_image_file(path)
    assert out.dtype == np.uint8 and out.shape == g.shape
    assert np.array_equal(out, scaled16(g))


@pytest.mark.parametrize("reader", ["Source.images", "clips._load_image", "sequences._load"])
def test_16bit_grey_png_through_every_reader_path(tmp_path, reader):
    g = gradient16()
    path = tmp_path / "grey16.png"
    cv2.imwrite(str(path), g)
    want = scaled16(g)
    assert np.array_equal(COLOUR_READERS[reader](path, 256), np.dstack([want] * 3))
    if reader == "Source.images":
        assert np.array_equal(via_source(path, True, 256), want)
    if reader == "clips._load_image":
        assert np.array_equal(clips._load_image(path, 256, True), want)


def rgb16() -> np.ndarray:
    """(256, 256, 3) uint16 RGB whose three channels differ: R rises, G falls, B constant."""
    g = gradient16()
    return np.dstack([g, 65535 - g, np.full_like(g, 40000)])


@pytest.mark.parametrize("suffix", [".png", ".tif"])
@pytest.mark.parametrize("reader", list(COLOUR_READERS))
def test_16bit_rgb_written_by_opencv_is_scaled_and_in_rgb_order(tmp_path, suffix, reader):
    rgb = rgb16()
    path = tmp_path / f"visage é{suffix}"  # a non-ASCII name, as real copies have
    assert cv2.imwrite(str(tmp_path / f"x{suffix}"), rgb[..., ::-1])  # OpenCV writes BGR
    (tmp_path / f"x{suffix}").rename(path)
    out = COLOUR_READERS[reader](path, 256)
    assert out.shape == (256, 256, 3) and out.dtype == np.uint8
    assert np.array_equal(out, scaled16(rgb))
    assert out[0, 0, 0] < out[-1, -1, 0] and out[0, 0, 1] > out[-1, -1, 1]  # R rises, G falls


@pytest.mark.parametrize("pil_mode", ["I;16", "I;16B"])
def test_16bit_grey_tiff(tmp_path, pil_mode):
    g = gradient16()
    path = tmp_path / "grey16.tif"
    raw = g.astype(">u2" if pil_mode == "I;16B" else "<u2").tobytes()
    Image.frombytes(pil_mode, (g.shape[1], g.shape[0]), raw).save(path)
    assert Image.open(path).mode == pil_mode
    assert np.array_equal(read_image_file(path), scaled16(g))


def test_16bit_grey_tiff_written_by_opencv(tmp_path):
    g = gradient16()
    path = tmp_path / "grey16_cv.tif"
    assert cv2.imwrite(str(path), g)
    assert np.array_equal(read_image_file(path), scaled16(g))


def test_32bit_integer_image_is_taken_as_16bit(tmp_path):
    g = gradient16().astype(np.int32)
    path = tmp_path / "int32.tif"
    Image.fromarray(g, "I").save(path)
    assert Image.open(path).mode == "I"
    assert np.array_equal(read_image_file(path), scaled16(g))


def test_16bit_rgba_png_composited_on_white_from_16bit_values(tmp_path):
    rgb = rgb16()[:4, :4]
    alpha = np.array([0, 16384, 32768, 65535], np.uint16)[None, :].repeat(4, 0)
    path = tmp_path / "rgba16.png"
    assert cv2.imwrite(str(path), np.dstack([rgb[..., ::-1], alpha]))
    want = over_white(rgb / 65535.0, alpha[..., None] / 65535.0)
    assert np.array_equal(read_image_file(path), want)


def test_float_image_in_0_1_scaled_by_255(tmp_path):
    f = np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64)
    path = tmp_path / "float.tif"
    Image.fromarray(f, "F").save(path)
    assert np.array_equal(read_image_file(path), np.rint(f.astype(np.float64) * 255).astype(np.uint8))


def test_float_image_outside_0_1_is_a_format_error_naming_the_file(tmp_path):
    path = tmp_path / "float_big.tif"
    Image.fromarray(np.linspace(0, 300, 64, dtype=np.float32).reshape(8, 8), "F").save(path)
    with pytest.raises(FormatError, match=r"float_big\.tif: expected a 32-bit float image with values in \[0, 1\]"):
        read_image_file(path)


# ---------------------------------------------------------------------------
# CMYK, palette, transparency
# ---------------------------------------------------------------------------

def blocks() -> np.ndarray:
    """(64, 64, 3) RGB: four flat coloured quadrants."""
    img = np.zeros((64, 64, 3), np.uint8)
    img[:32, :32], img[:32, 32:] = (200, 40, 60), (30, 160, 220)
    img[32:, :32], img[32:, 32:] = (240, 230, 20), (90, 90, 90)
    return img


def quadrant_means(img: np.ndarray) -> np.ndarray:
    return np.array([img[r:r + 32, c:c + 32].reshape(-1, 3).mean(0) for r in (0, 32) for c in (0, 32)])


@pytest.mark.parametrize("reader", list(COLOUR_READERS))
def test_cmyk_jpeg_read_as_rgb_with_its_colours(tmp_path, reader):
    src = blocks()
    path = tmp_path / "cmyk.jpg"
    Image.fromarray(src).convert("CMYK").save(path, quality=95)
    assert Image.open(path).mode == "CMYK" and b"Adobe" in path.read_bytes()  # Adobe (inverted) CMYK
    out = COLOUR_READERS[reader](path, 64)
    assert out.shape == (64, 64, 3)
    assert np.abs(quadrant_means(out) - quadrant_means(src)).max() < 4  # JPEG tolerance


def test_palette_png_without_transparency(tmp_path):
    src = blocks()
    path = tmp_path / "palette.png"
    Image.fromarray(src).convert("P", palette=Image.Palette.ADAPTIVE, colors=4).save(path)
    assert Image.open(path).mode == "P"
    assert np.array_equal(read_image_file(path), src)


def test_palette_png_with_transparency_composited_on_white(tmp_path):
    src = blocks()
    pal = Image.fromarray(src).convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    index = int(np.asarray(pal)[0, 0])  # the top-left quadrant's colour becomes transparent
    path = tmp_path / "palette_t.png"
    pal.save(path, transparency=index)
    want = src.copy()
    want[:32, :32] = WHITE
    assert np.array_equal(read_image_file(path), want)


def test_rgba_png_composited_on_white(tmp_path):
    colour = np.array([200, 40, 60], np.uint8)
    alpha = np.array([255, 128, 64, 0], np.uint8)
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., :3], rgba[..., 3] = colour, alpha[None, :]
    rgba[:, 3, :3] = (10, 20, 30)  # a fully transparent pixel's stored colour must not show
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba, "RGBA").save(path)
    out = read_image_file(path)
    assert out.shape == (4, 4, 3)
    assert np.array_equal(out, over_white(rgba[..., :3] / 255.0, rgba[..., 3:] / 255.0))
    assert np.array_equal(out[0, 0], colour) and np.array_equal(out[0, 3], [WHITE] * 3)
    assert np.array_equal(read_image_file(path, "L"), np.asarray(Image.fromarray(out).convert("L")))


def test_la_png_composited_on_white_and_rgb_as_before(tmp_path):
    la = np.stack([np.full((2, 2), 100, np.uint8), np.array([[255, 0], [128, 255]], np.uint8)], -1)
    path = tmp_path / "la.png"
    Image.fromarray(la, "LA").save(path)
    out = read_image_file(path)
    assert out.shape == (2, 2, 3)  # LA files came back RGB before; still do
    assert out[0, 0].tolist() == [100] * 3 and out[0, 1].tolist() == [WHITE] * 3
    assert out[1, 0].tolist() == [round(100 * 128 / 255 + 255 * 127 / 255)] * 3


# ---------------------------------------------------------------------------
# EXIF orientation
# ---------------------------------------------------------------------------

def with_orientation(img: Image.Image, path: Path, orientation: int, **kw) -> Path:
    exif = Image.Exif()
    exif[0x0112] = orientation
    img.save(path, exif=exif, **kw)
    return path


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_applied_as_exif_transpose(tmp_path, orientation):
    src = np.arange(6 * 10 * 3, dtype=np.uint8).reshape(6, 10, 3)  # every pixel differs
    path = with_orientation(Image.fromarray(src), tmp_path / "o.png", orientation)
    want = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
    assert np.array_equal(read_image_file(path), want)


@pytest.mark.parametrize("reader", list(COLOUR_READERS))
def test_exif_rotated_phone_jpeg_comes_out_upright(tmp_path, reader):
    src = np.full((48, 48, 3), 30, np.uint8)
    src[:, :24] = 220  # stored with the bright half on the left; orientation 6 = turn 90 deg clockwise
    path = with_orientation(Image.fromarray(src), tmp_path / "phone.jpg", 6, quality=95)
    out = COLOUR_READERS[reader](path, 48).astype(int)
    assert out[:20].mean() > 200 and out[28:].mean() < 50  # bright half now on top


def test_exif_rotated_non_square_jpeg_shape(tmp_path):
    path = with_orientation(Image.fromarray(np.zeros((20, 40, 3), np.uint8)), tmp_path / "wide.jpg", 8)
    assert read_image_file(path).shape == (40, 20, 3)


# ---------------------------------------------------------------------------
# Broken files: FormatError naming the file, on every reader path
# ---------------------------------------------------------------------------

def truncated(tmp_path: Path, suffix: str) -> Path:
    whole = tmp_path / f"whole{suffix}"
    Image.fromarray(blocks()).save(whole)
    raw = whole.read_bytes()
    path = tmp_path / f"half{suffix}"
    path.write_bytes(raw[:len(raw) // 2])
    return path


BROKEN: dict[str, Callable[[Path], Path]] = {
    "truncated PNG": lambda d: truncated(d, ".png"),
    "truncated JPEG": lambda d: truncated(d, ".jpg"),
    "0-byte file": lambda d: (d / "empty.png", (d / "empty.png").write_bytes(b""))[0],
    "text named .jpg": lambda d: (d / "notes.jpg", (d / "notes.jpg").write_text("not an image\n"))[0],
}
EXPECTED = {"truncated PNG": "expected a complete PNG file", "truncated JPEG": "expected a complete JPEG file",
            "0-byte file": "got an empty (0-byte) file", "text named .jpg": "no image decoder recognises"}


@pytest.mark.parametrize("case", list(BROKEN))
@pytest.mark.parametrize("reader", list(COLOUR_READERS))
def test_broken_file_is_a_format_error_naming_the_file(tmp_path, case, reader):
    path = BROKEN[case](tmp_path)
    with pytest.raises(FormatError) as err:
        COLOUR_READERS[reader](path, 64)
    assert str(path) in str(err.value) and "expected" in str(err.value)
    assert EXPECTED[case] in str(err.value)


def test_missing_file_is_file_not_found_naming_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.png"):
        read_image_file(tmp_path / "nothere.png")


def test_truncated_images_are_never_loaded_leniently():
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False  # after importing every reader module


# ---------------------------------------------------------------------------
# The contract the callers rely on is unchanged for ordinary files
# ---------------------------------------------------------------------------

def test_ordinary_files_keep_their_shapes_and_values(tmp_path):
    src = blocks()
    Image.fromarray(src).save(tmp_path / "rgb.png")
    Image.fromarray(src[..., 0]).save(tmp_path / "grey.png")
    assert np.array_equal(read_image_file(tmp_path / "rgb.png"), src)
    assert np.array_equal(read_image_file(tmp_path / "grey.png"), src[..., 0])
    assert np.array_equal(read_image_file(tmp_path / "rgb.png", "L"),
                          np.asarray(Image.fromarray(src).convert("L")))
    assert np.array_equal(read_image_file(tmp_path / "grey.png", "RGB"), np.dstack([src[..., 0]] * 3))
    with pytest.raises(ValueError, match="mode must be None, 'L' or 'RGB'"):
        read_image_file(tmp_path / "rgb.png", "CMYK")
