"""SynthFaces clips with ABAW-style (Aff-Wild2) incomplete per-frame labels.

A clip is one identity moving through two or three expressions over time: each expression rises
from neutral along a smoothstep, holds, and falls back; AU intensities, the class and valence-arousal
follow the envelope frame by frame, and pose (roll, shift) and, on ``wild``, lighting drift slowly.
Clip ``c`` is a pure function of ``(seed, c)`` and the settings.

Every frame is rendered with all its labels; an annotation mask then hides labels the way Aff-Wild2
does: each task is annotated on its own subset of the videos, so a clip carries the labels of only
some tasks (:data:`MASK_KINDS`), every clip has an unlabelled stretch (:data:`UNLABELLED_STRETCH`) and
some single frames of an expression-labelled clip are left out (:data:`EXPR_DROP`). These
proportions are our choice, written here once; they are *Aff-Wild2-like* (each task on a different
subset of videos, a minority of videos with all three), not measured on Aff-Wild2, whose per-task
video counts we have not verified.

The clips are exported with :func:`fer_utils.data.formats.write_affwild2` (hidden labels become the
real files' missing markers: -1 for AU and EXPR, -5 for VA) and read back with
:func:`load_clip_frames`, which goes through :func:`fer_utils.data.formats.read_affwild2`: the same
path a user of the real database takes.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from fer_utils.data import synthetic as synth
from fer_utils.data.formats import read_affwild2, write_affwild2
from fer_utils.labels import ABAW_AUS, AUS

#: Which tasks a clip is annotated for, and how often (sums to 1).
MASK_KINDS: dict[str, float] = {"AU+EXPR+VA": 0.20, "AU": 0.25, "EXPR": 0.20, "VA": 0.20,
                                "AU+EXPR": 0.05, "AU+VA": 0.05, "EXPR+VA": 0.05}
#: Fraction of every clip's frames, in one stretch, with every label hidden.
UNLABELLED_STRETCH = 0.15
#: Chance that a single frame of an EXPR-annotated clip has EXPR -1 (an ambiguous frame).
EXPR_DROP = 0.05
TASKS = ("AU", "EXPR", "VA")
MISSING = {"AU": -1, "EXPR": -1, "VA": -5}  #: the real files' missing markers
ABAW_AU_INDEX = np.array([AUS.index(au) for au in ABAW_AUS])  #: positions of the 12 ABAW AUs in AUS
_KIND_NAMES = list(MASK_KINDS)
_KIND_P = np.array([MASK_KINDS[k] for k in _KIND_NAMES])


def _envelope(length: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Segment id per frame and a 0..1 smoothstep envelope (rise, hold, fall) per segment."""
    n_seg = int(rng.integers(2, 4))
    cuts = np.sort(rng.choice(np.arange(length // 6, length - length // 6), n_seg - 1, replace=False))
    bounds = np.concatenate([[0], cuts, [length]])
    segment = np.zeros(length, int)
    weight = np.zeros(length)
    for k in range(n_seg):
        a, b = bounds[k], bounds[k + 1]
        t = (np.arange(a, b) - a + 0.5) / (b - a)
        ramp = np.clip(np.minimum(t, 1 - t) / 0.3, 0, 1)  # rise over the first 30 %, fall over the last 30 %
        segment[a:b], weight[a:b] = k, ramp * ramp * (3 - 2 * ramp)
    return segment, weight


def _mask(length: int, rng: np.random.Generator) -> tuple[str, dict[str, np.ndarray]]:
    """The clip's annotation kind and one boolean 'labelled' array per task."""
    kind = _KIND_NAMES[int(rng.choice(len(_KIND_NAMES), p=_KIND_P))]
    labelled = {t: np.full(length, t in kind.split("+")) for t in TASKS}
    n_gap = int(round(UNLABELLED_STRETCH * length))
    start = int(rng.integers(0, length - n_gap + 1))
    for t in TASKS:
        labelled[t][start:start + n_gap] = False
    labelled["EXPR"] &= rng.random(length) >= EXPR_DROP
    return kind, labelled


def make_clip(seed: int, clip: int, length: int = 48, size: int = 112, difficulty: str = "lab") -> dict[str, Any]:
    """Render clip ``clip``: images (L, size, size, 3) uint8 and every label, plus the annotation mask.

    Keys: ``images``, ``aus`` (L, 17) intensities, ``au_presence`` (L, 17), ``label`` (L,) int,
    ``valence``/``arousal`` (L,), ``labelled`` {task: (L,) bool}, ``kind``, ``identity`` (= ``clip``),
    ``classes`` (one per segment). Identities are per clip, so clip-disjoint splits are identity-disjoint.
    """
    if length < 8:
        raise ValueError(f"length must be >= 8 frames, got {length!r}")
    rng = np.random.default_rng([seed, 7, clip])
    segment, weight = _envelope(length, rng)
    n_seg = segment.max() + 1
    classes = rng.integers(0, 7, size=n_seg)
    expressions = [synth.sample_expression(rng, int(c), difficulty) for c in classes]
    va_noise = synth.DIFFICULTY[difficulty].va_noise * rng.standard_normal((n_seg, 2))
    scene = synth.sample_scene(rng, difficulty)
    phase = 2 * np.pi * rng.random(4)
    ident = synth.make_identity(seed, clip)
    wild = difficulty == "wild"
    frames: dict[str, list] = defaultdict(list)
    for f in range(length):
        k, w = segment[f], weight[f]
        left, right, apex = expressions[k]
        t = f / (length - 1)
        moved = replace(scene, roll=scene.roll + math.radians(3.0) * math.sin(2.5 * t + phase[0]),
                        shift=(scene.shift[0] + 2.0 * math.sin(2.0 * t + phase[1]),
                               scene.shift[1] + 1.5 * math.sin(1.7 * t + phase[2])),
                        brightness=scene.brightness * (1 + (0.12 if wild else 0.0) * math.sin(3 * t + phase[3])))
        item = synth.render(ident, w * left, w * right, moved, size, False, False)
        label = int(classes[k]) if w >= 0.5 else 0
        valence, arousal = synth.valence_arousal(int(classes[k]), w * apex, w * va_noise[k])
        for key, value in (("images", item["image"]), ("aus", item["aus"]), ("au_presence", item["au_presence"]),
                           ("label", label), ("valence", valence), ("arousal", arousal)):
            frames[key].append(value)
    kind, labelled = _mask(length, rng)
    out = {key: np.asarray(value) for key, value in frames.items()}
    out.update(labelled=labelled, kind=kind, identity=clip, classes=classes.tolist())
    return out


def clip_samples(clip: dict[str, Any], name: str, split: str) -> list[dict]:
    """Per-frame sample dicts for :func:`write_affwild2`: a hidden label becomes None (-> -1 / -5 in the files)."""
    au_mask = np.zeros(len(AUS), bool)
    au_mask[ABAW_AU_INDEX] = True
    lab = clip["labelled"]
    samples = []
    for f in range(len(clip["label"])):
        samples.append(dict(
            video=name, frame=f + 1, split=split, identity=clip["identity"], image=clip["images"][f],
            label=int(clip["label"][f]) if lab["EXPR"][f] else None,
            valence=float(clip["valence"][f]) if lab["VA"][f] else None,
            arousal=float(clip["arousal"][f]) if lab["VA"][f] else None,
            au_presence=clip["au_presence"][f] if lab["AU"][f] else None, au_mask=au_mask))
    return samples


def export_clips(root: str | Path, n_train: int, n_val: int, seed: int = 0, length: int = 48,
                 difficulty: str = "lab", verbose: bool = False) -> Path:
    """Render ``n_train`` + ``n_val`` clips and write them as an ABAW2 Aff-Wild2 tree under ``root``.

    Train clips are 0 .. n_train-1, validation clips 100000 + 0 .. n_val-1 (other identities).
    """
    for split, first, n in (("train", 0, n_train), ("val", 100_000, n_val)):
        samples: list[dict] = []
        for c in range(first, first + n):
            samples += clip_samples(make_clip(seed, c, length, 112, difficulty), f"clip{c:06d}", split)
        write_affwild2(samples, root, edition="abaw2", split=split, verbose=verbose)
    return Path(root)


@dataclass
class ClipFrames:
    """Every frame of every video of one split, labels with the real missing markers.

    images uint8 (N, H, W) grey or (N, H, W, 3); au int64 (N, 12) 0/1/-1 in ABAW_AUS order;
    expr int64 (N,) 0..6 or -1; va float32 (N, 2) valence, arousal or -5; video int64 (N,) index
    into ``videos``; frame int64 (N,) 1-based. Frames the reader skipped (no usable label) are here
    with every label missing: they are the unlabelled stretches.
    """

    images: np.ndarray
    au: np.ndarray
    expr: np.ndarray
    va: np.ndarray
    video: np.ndarray
    frame: np.ndarray
    videos: list[str]

    def __len__(self) -> int:
        return len(self.expr)

    def labelled(self, task: str) -> np.ndarray:
        """(N,) bool: frames that carry a label for ``task``."""
        return {"AU": (self.au >= 0).all(1), "EXPR": self.expr >= 0, "VA": (self.va != -5).all(1)}[task]

    def windows(self, length: int) -> np.ndarray:
        """(n_windows, length) frame indices: consecutive, non-overlapping, inside one video.

        A video's tail shorter than ``length`` is left out; ``self.left_out`` counts those frames.
        """
        rows, self.left_out = [], 0
        for v in range(len(self.videos)):
            idx = np.flatnonzero(self.video == v)
            idx = idx[np.argsort(self.frame[idx])]
            n = len(idx) // length
            rows += [idx[i * length:(i + 1) * length] for i in range(n)]
            self.left_out += len(idx) - n * length
        return np.stack(rows) if rows else np.zeros((0, length), int)


def _load_image(path: Path, size: int, grayscale: bool) -> np.ndarray:
    """One frame as uint8 (size, size) grey or (size, size, 3) RGB, read by ``read_image_file``."""
    from fer_utils.data.formats.common import read_image_file

    img = Image.fromarray(read_image_file(path, "L" if grayscale else "RGB"))
    if img.size != (size, size):
        img = img.resize((size, size), Image.BILINEAR)
    return np.asarray(img)


def load_clip_frames(root: str | Path, split: str, size: int = 40, grayscale: bool = True,
                     verbose: bool = True) -> ClipFrames:
    """Read one split of an Aff-Wild2 tree with :func:`read_affwild2`, plus the unlabelled frames.

    Labels come only from the reader; the images of every annotated video's frames come from
    ``cropped_aligned/<video>/``, so frames whose labels are all missing are kept (with -1 / -5).
    """
    samples = read_affwild2(root, split=split, verbose=verbose)
    by_video: dict[str, dict[int, dict]] = defaultdict(dict)
    for s in samples:
        by_video[s["video"]][int(s["frame"])] = s
    names = sorted(by_video)
    cols: dict[str, list] = defaultdict(list)
    for v, name in enumerate(names):
        for path in sorted((Path(root) / "cropped_aligned" / name).glob("*.jpg")):
            k = int(path.stem)
            s = by_video[name].get(k, {})
            has_au = s.get("au_presence") is not None
            cols["au"].append(s["au_presence"][ABAW_AU_INDEX].astype(int) if has_au else np.full(12, -1))
            cols["expr"].append(s["label"] if s.get("label") is not None else -1)
            cols["va"].append((s["valence"], s["arousal"]) if s.get("valence") is not None else (-5.0, -5.0))
            cols["images"].append(_load_image(path, size, grayscale))
            cols["video"].append(v)
            cols["frame"].append(k)
    return ClipFrames(images=np.stack(cols["images"]), au=np.asarray(cols["au"], np.int64),
                      expr=np.asarray(cols["expr"], np.int64), va=np.asarray(cols["va"], np.float32),
                      video=np.asarray(cols["video"], np.int64), frame=np.asarray(cols["frame"], np.int64),
                      videos=names)
