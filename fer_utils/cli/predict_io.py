"""``fer-predict``'s inputs and outputs: frames from an image, a folder or a video; CSV rows, the
annotated video or GIF, the timeline plot.

Inputs (:func:`open_source`): a path with an image suffix is read with the package's image reader
(:func:`fer_utils.data.formats.images.read_image_file`, which handles 16-bit, transparency and EXIF
orientation); a video suffix is decoded with OpenCV's ``VideoCapture``; any other file is tried as an
image, then as a video. A folder gives its image files (by suffix, sorted by name, not recursive);
a file in it that cannot be read is skipped and listed in :attr:`Source.skipped`. What cannot be used
at all raises :class:`PredictInputError` naming the file and what was expected.
"""
from __future__ import annotations

import csv
import io
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence, TextIO

import cv2
import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".pgm", ".ppm", ".pbm")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".ogv")
EXPECTED = (f"an image ({', '.join(IMAGE_SUFFIXES[:5])}, ...), a folder of images, "
            f"or a video ({', '.join(VIDEO_SUFFIXES[:5])}, ...)")
#: A video is called truncated when it decodes fewer than this fraction of the frames its header announces.
TRUNCATED_BELOW = 0.99
GIF_MAX_SIDE = 480  #: GIF frames are shrunk so that their longer side is at most this (file size, memory)


class PredictInputError(ValueError):
    """An input or output path fer-predict cannot use; the message names it and what was expected."""


@dataclass
class Frame:
    """One picture to run on: its index, its time (videos) or file name (images), RGB uint8 pixels."""

    index: int
    image: np.ndarray
    time_s: float | None = None
    file: str | None = None


@dataclass
class Source:
    """Frames of one input, with what is known before reading them and what happened while reading."""

    kind: str                       # "image", "folder" or "video"
    path: Path
    frames: Iterator[Frame]
    total: int                      # frames (videos: as the header announces) or image files
    fps: float | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)   # (file, reason), folders
    decoded: int = 0                # videos: frames actually decoded (known at the end)
    notes: list[str] = field(default_factory=list)

    def truncation(self) -> str | None:
        """After reading a video: why it looks truncated, or ``None``."""
        if self.kind == "video" and self.total > 0 and self.decoded < TRUNCATED_BELOW * self.total - 1:
            return (f"{self.path}: truncated or damaged video: decoded {self.decoded} of the {self.total} frames "
                    "its header announces")
        return None


# ------------------------------------------------------------------------------------ inputs
def _read_image(path: Path) -> np.ndarray:
    """RGB uint8 pixels of an image file, or :class:`PredictInputError` naming it."""
    from fer_utils.data.formats import FormatError
    from fer_utils.data.formats.images import read_image_file

    try:
        return read_image_file(path, mode="RGB")
    except (FormatError, OSError) as err:
        raise PredictInputError(f"{path}: not a readable image ({err}); expected {EXPECTED}") from None


def _image_source(path: Path, image: np.ndarray) -> Source:
    return Source("image", path, iter([Frame(0, image, None, path.name)]), 1)


def _folder_source(path: Path) -> Source:
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    others = [p for p in path.iterdir() if p.is_file() and p.suffix.lower() not in IMAGE_SUFFIXES]
    if not files:
        raise PredictInputError(f"{path}: the folder holds no image files (expected files ending in "
                                f"{', '.join(IMAGE_SUFFIXES)}; found {len(others)} other file(s))")
    source = Source("folder", path, iter(()), len(files))
    if others:
        source.notes.append(f"{len(others)} file(s) without an image suffix ignored, e.g. {others[0].name}")

    def frames() -> Iterator[Frame]:
        for i, file in enumerate(files):
            try:
                yield Frame(i, _read_image(file), None, file.name)
            except PredictInputError as err:
                source.skipped.append((file.name, str(err).split(": ", 1)[-1]))

    source.frames = frames()
    return source


def _video_source(path: Path) -> Source:
    capture = cv2.VideoCapture(str(path))
    ok, first = capture.read() if capture.isOpened() else (False, None)
    if not ok:
        capture.release()
        raise PredictInputError(f"{path}: could not be decoded as a video (unreadable, truncated or not a video); "
                                f"expected {EXPECTED}")
    fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    source = Source("video", path, iter(()), max(total, 0), fps if fps > 0 and math.isfinite(fps) else None)
    if source.fps is None:
        source.notes.append("the video states no frame rate: time_s assumes 25 frames/s")
    rate = source.fps or 25.0

    def frames() -> Iterator[Frame]:
        image, i = first, 0
        try:
            while image is not None:
                source.decoded = i + 1
                yield Frame(i, cv2.cvtColor(image, cv2.COLOR_BGR2RGB), i / rate)
                ok, image = capture.read()
                image, i = (image if ok else None), i + 1
        finally:
            capture.release()

    source.frames = frames()
    return source


def open_source(path: str | Path) -> Source:
    """The frames of ``path`` (image, folder of images or video); :class:`PredictInputError` if unusable."""
    if not str(path).strip():
        raise PredictInputError(f"the input path is empty ({str(path)!r}); expected {EXPECTED}")
    path = Path(path)
    if not path.exists():
        raise PredictInputError(f"{path}: no such file or folder; expected {EXPECTED}")
    if path.is_dir():
        return _folder_source(path)
    if path.stat().st_size == 0:
        raise PredictInputError(f"{path}: the file is empty (0 bytes); expected {EXPECTED}")
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return _image_source(path, _read_image(path))
    if suffix in VIDEO_SUFFIXES:
        return _video_source(path)
    try:
        return _image_source(path, _read_image(path))
    except PredictInputError:
        pass
    try:
        return _video_source(path)
    except PredictInputError:
        raise PredictInputError(f"{path}: neither an image nor a video that could be decoded; "
                                f"expected {EXPECTED}") from None


# ------------------------------------------------------------------------------------ CSV
BOX_COLUMNS = ("frame", "time_s", "face", "x", "y", "w", "h")


def csv_columns(kind: str, class_names: Sequence[str], extra: Sequence[str] = ()) -> list[str]:
    """``frame, time_s, face, x, y, w, h``, one column per class, ``label``, then ``extra``
    (valence-arousal, AUs) and, for image inputs, ``file``."""
    return [*BOX_COLUMNS, *class_names, "label", *extra, *(["file"] if kind in ("image", "folder") else [])]


class RowWriter:
    """CSV rows to a file (or to stdout for ``None``), written as they come; counts them."""

    def __init__(self, path: str | Path | None, columns: Sequence[str]) -> None:
        self.path = Path(path) if path is not None else None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handle: TextIO = open(self.path, "w", newline="") if self.path is not None else sys.stdout
        self.writer = csv.DictWriter(self.handle, fieldnames=list(columns), extrasaction="raise")
        self.writer.writeheader()
        self.count = 0

    def write(self, row: dict) -> None:
        self.writer.writerow({k: _cell(v) for k, v in row.items()})
        self.count += 1

    def close(self) -> None:
        if self.path is not None:
            self.handle.close()
        else:
            self.handle.flush()


def _cell(value: object) -> object:
    """Floats with 6 decimals, ``None`` as an empty cell."""
    if value is None:
        return ""
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.6f}"
    return value


# ------------------------------------------------------------------------------------ annotation
def _bgr(hex_colour: str) -> tuple[int, int, int]:
    r, g, b = (int(hex_colour.lstrip("#")[i:i + 2], 16) for i in (0, 2, 4))
    return b, g, r


def draw_face(canvas: np.ndarray, box: tuple[int, int, int, int], probs: np.ndarray,
              class_names: Sequence[str]) -> None:
    """Draw on ``canvas`` (BGR, in place): the box, ``label p`` above it, one probability bar per class
    beside it (right of the box when there is room, else left), each in its class colour."""
    from fer_utils.viz import class_color

    x, y, w, h = box
    top = int(np.argmax(probs))
    colour = _bgr(class_color(top))
    cv2.rectangle(canvas, (x, y), (x + w, y + h), colour, 2)
    text = f"{class_names[top]} {probs[top]:.2f}"
    cv2.putText(canvas, text, (x, max(14, y - 6)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(canvas, text, (x, max(14, y - 6)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1, cv2.LINE_AA)
    bar_w, row_h, text_w = 60, 12, 70
    panel_w = text_w + bar_w + 6
    left = x + w + 6 if x + w + 6 + panel_w <= canvas.shape[1] else max(0, x - panel_w - 6)
    for i, (name, p) in enumerate(zip(class_names, probs)):
        ty = y + i * row_h
        if ty + row_h > canvas.shape[0]:
            break
        region = canvas[ty:ty + row_h, left:left + panel_w]
        region[:] = (region * 0.4).astype(canvas.dtype)            # darkened backdrop
        cv2.putText(canvas, name[:9], (left + 2, ty + row_h - 3), cv2.FONT_HERSHEY_SIMPLEX, 0.35,
                    (255, 255, 255), 1, cv2.LINE_AA)
        length = int(round(bar_w * float(p)))
        if length:
            cv2.rectangle(canvas, (left + text_w, ty + 2), (left + text_w + length, ty + row_h - 2),
                          _bgr(class_color(i)), -1)


class Annotator:
    """Annotated frames to an ``.mp4`` (OpenCV ``VideoWriter``, codec ``mp4v``) or a ``.gif`` (Pillow,
    frames shrunk to :data:`GIF_MAX_SIDE`), or, for a single image, a ``.png`` / ``.jpg``. Frames of another
    size than the first (image folders) are resized to it."""

    SUFFIXES = (".mp4", ".gif", ".png", ".jpg", ".jpeg")

    def __init__(self, path: str | Path, fps: float) -> None:
        self.path, self.fps = Path(path), fps
        self.size: tuple[int, int] | None = None
        self.video: cv2.VideoWriter | None = None
        self.gif: list = []
        self.still: np.ndarray | None = None
        self.count = 0

    def add(self, frame_rgb: np.ndarray, faces: Sequence[tuple[tuple[int, int, int, int], np.ndarray]],
            class_names: Sequence[str], stamp: str = "") -> None:
        """Draw ``faces`` ((x, y, w, h), probabilities) and ``stamp`` (e.g. ``frame 12  0.50 s``, bottom left)
        on a copy of the frame and append it."""
        canvas = cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2BGR)
        for box, probs in faces:
            draw_face(canvas, box, probs, class_names)
        if stamp:   # every frame differs, so a GIF writer merges none of them
            cv2.putText(canvas, stamp, (4, canvas.shape[0] - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 3, cv2.LINE_AA)
            cv2.putText(canvas, stamp, (4, canvas.shape[0] - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1,
                        cv2.LINE_AA)
        if self.size is None:
            self.size = (canvas.shape[1], canvas.shape[0])
            self.path.parent.mkdir(parents=True, exist_ok=True)
        elif (canvas.shape[1], canvas.shape[0]) != self.size:
            canvas = cv2.resize(canvas, self.size, interpolation=cv2.INTER_AREA)
        self._append(canvas)
        self.count += 1

    def _append(self, canvas: np.ndarray) -> None:
        suffix = self.path.suffix.lower()
        if suffix == ".mp4":
            if self.video is None:
                self.video = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, self.size)
                if not self.video.isOpened():
                    raise PredictInputError(f"--annotate {self.path}: OpenCV could not open an mp4 writer there")
            self.video.write(canvas)
        elif suffix == ".gif":
            from PIL import Image

            scale = min(1.0, GIF_MAX_SIDE / max(self.size))
            small = cv2.resize(canvas, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else canvas
            self.gif.append(Image.fromarray(cv2.cvtColor(small, cv2.COLOR_BGR2RGB)).quantize(colors=255))
        else:
            self.still = canvas

    def close(self) -> None:
        """Finish the file (nothing is written when no frame came)."""
        if self.video is not None:
            self.video.release()
        if self.gif:
            duration = max(20, int(round(1000 / self.fps)))
            self.gif[0].save(self.path, save_all=True, append_images=self.gif[1:], duration=duration, loop=0)
        if self.still is not None and not cv2.imwrite(str(self.path), self.still):
            raise PredictInputError(f"--annotate {self.path}: OpenCV could not write an image there")


# ------------------------------------------------------------------------------------ timeline
def plot_timeline(times: np.ndarray, probs: np.ndarray, class_names: Sequence[str], path: str | Path,
                  title: str, x_label: str = "time (s)") -> None:
    """Probability of each class over time, one line per class (NaN rows, frames without a face, are
    gaps); labelled axes and a legend; saved as ``path`` (PNG, or any format matplotlib writes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fer_utils.viz import class_color

    fig, ax = plt.subplots(figsize=(10, 3.6))
    for i, name in enumerate(class_names):
        ax.plot(times, probs[:, i], color=class_color(i), lw=1.4, label=name, marker="o" if len(times) <= 60 else None,
                ms=3)
    ax.set_xlabel(x_label)
    ax.set_ylabel("probability")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def check_output_paths(annotate: str | None, plot: str | None, kind: str) -> None:
    """Refuse, before any work, an ``--annotate`` / ``--plot`` path fer-predict cannot write."""
    if annotate:
        suffix = Path(annotate).suffix.lower()
        allowed = Annotator.SUFFIXES if kind == "image" else (".mp4", ".gif")
        if suffix not in allowed:
            raise PredictInputError(f"--annotate {annotate}: expected a file ending in {' or '.join(allowed)}")
    if plot:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib.figure import Figure

        formats = Figure().canvas.get_supported_filetypes()
        if Path(plot).suffix.lower().lstrip(".") not in formats:
            raise PredictInputError(f"--plot {plot}: expected an image file name such as timeline.png")


def read_csv(path: str | Path) -> list[dict[str, str]]:
    """The rows of a fer-predict CSV as dicts of strings (for tests and notebooks)."""
    return list(csv.DictReader(io.StringIO(Path(path).read_text())))
