"""CK+, the Extended Cohn-Kanade set (Lucey et al. 2010).

Four trees that mirror each other (``Sxxx`` subject / ``yyy`` sequence)::

    cohn-kanade-images/S005/001/S005_001_00000001.png ... S005_001_00000011.png
    Emotion/S005/001/S005_001_00000011_emotion.txt     # labelled sequences only; names the peak frame
    FACS/S005/001/S005_001_00000011_facs.txt           # '<AU> <intensity>' per line, peak frame
    Landmarks/S005/001/S005_001_00000001_landmarks.txt # 68 '<x> <y>' lines, every frame

Numbers are floats in ``%.7e`` notation (``   7.0000000e+00``). Emotion ids: 0 neutral,
1 anger, 2 contempt, 3 disgust, 4 fear, 5 happy, 6 sadness, 7 surprise.
"""
from __future__ import annotations

import math
import os
import re
from collections import defaultdict
from pathlib import Path
from typing import Iterable

import numpy as np

from fer_utils.data.formats.common import (
    SampleList, Tally, error, finish, inverse, keep_suffix, list_folder, make_sample, read_text, required,
    save_image,
)
from fer_utils.labels import AUS

#: CK+ ``_emotion.txt`` ids: 0 neutral, 1 anger, 2 contempt, 3 disgust, 4 fear, 5 happy, 6 sadness, 7 surprise.
CKPLUS_TO_CANON: dict[int, int] = {0: 0, 1: 1, 2: 7, 3: 2, 4: 3, 5: 4, 6: 5, 7: 6}
AU_INDEX: dict[int, int] = {au: i for i, au in enumerate(AUS)}


def _ck_dir(root: Path, tally: Tally) -> Path:
    """The CK+ root: the folder holding cohn-kanade-images/ (given it, its parent or grandparent)."""
    if (root / "cohn-kanade-images").is_dir():
        return root
    if root.name == "cohn-kanade-images" and root.is_dir():
        return root.parent
    for child in list_folder(root, tally, "the CK+ folder holding cohn-kanade-images/", dirs=True):
        if (child / "cohn-kanade-images").is_dir():
            return child
    raise error(root, "folder", "cohn-kanade-images/ (with Emotion/, FACS/, Landmarks/ beside it)")


def _float_lines(path: Path, width: int, what: str, tally: Tally) -> list[list[float]]:
    """Parse a CK+ text file of whitespace-separated floats (scientific notation)."""
    rows = []
    for line_no, line in enumerate(read_text(path, what, tally).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            values = [float(v) for v in line.split()]
        except ValueError:
            raise error(path, f"line {line_no}", what, line) from None
        if len(values) != width:
            raise error(path, f"line {line_no}", what, line)
        rows.append(values)
    return rows


def _files(folder: Path, suffix: str, tally: Tally) -> list[Path]:
    """The ``*<suffix>`` files of one sequence folder of Emotion/ or FACS/ (none if it is absent)."""
    if not folder.is_dir():
        return []
    files = list_folder(folder, tally, "a CK+ sequence folder", dirs=False)
    out = [p for p in files if p.name.endswith(suffix)]
    if len(out) < len(files):
        tally.ignored[f"not *{suffix}"] += len(files) - len(out)
    return out


def _emotion_id(path: Path, tally: Tally) -> int | None:
    """The emotion id in one ``_emotion.txt`` (None for an empty file)."""
    text = read_text(path, "a CK+ emotion file", tally).strip()
    if not text:
        return None
    try:
        value = float(text.split()[0])
    except ValueError:
        raise error(path, "line 1", "one float emotion id such as '   7.0000000e+00'", text) from None
    if len(text.split()) != 1 or value not in CKPLUS_TO_CANON:
        raise error(path, "line 1", "one emotion id 0..7", text)
    return int(value)


def _sequence_label(folder: Path, frames: list[Path], tally: Tally) -> int | None:
    """The native emotion of one sequence, or None (each reason counted in ``masked``)."""
    files = _files(folder, "_emotion.txt", tally)
    if not files:
        tally.masked["sequences without Emotion file"] += 1
        return None
    ids = {_emotion_id(p, tally) for p in files}
    if len(ids) > 1:
        tally.masked["sequences with Emotion files that disagree"] += 1
        tally.note(f"{folder}: Emotion files disagree ({', '.join(p.name for p in files)})")
        return None
    native = ids.pop()
    if native is None:
        tally.masked["sequences with an empty Emotion file"] += 1
        return None
    names = {f.stem for f in frames}
    if not all(p.name[:-len("_emotion.txt")] in names for p in files):
        tally.masked["sequences whose labelled (peak) frame image is missing"] += 1
        tally.note(f"{files[0]}: names a frame missing from cohn-kanade-images")
        return None
    return native


def _facs(folder: Path, tally: Tally) -> tuple[list | None, np.ndarray | None, np.ndarray | None]:
    """FACS codes of the peak frame -> (raw list, aus float32 (17,), presence bool (17,)).

    Intensity 1..5 (A..E) becomes k/5; 0 ("present, not coded") becomes NaN.
    """
    files = _files(folder, "_facs.txt", tally)
    if not files:
        tally.masked["sequences without FACS file"] += 1
        return None, None, None
    facs = [(int(a), int(b)) for a, b in _float_lines(files[-1], 2, "'<AU> <intensity>' as two floats", tally)]
    aus = np.zeros(len(AUS), np.float32)
    presence = np.zeros(len(AUS), bool)
    for au, intensity in facs:
        if au in AU_INDEX:
            presence[AU_INDEX[au]] = True
            aus[AU_INDEX[au]] = np.nan if intensity == 0 else intensity / 5.0
    return facs, aus, presence


def _landmarks(path: Path, tally: Tally) -> np.ndarray | None:
    if not path.is_file():
        tally.masked["frames without Landmarks file"] += 1
        return None
    pts = _float_lines(path, 2, "'<x> <y>' as two floats", tally)
    if len(pts) != 68:
        raise error(path, f"line {len(pts) + 1}", "68 landmark lines", f"{len(pts)} lines")
    return np.array(pts, np.float32)


def _sequences(images_root: Path, tally: Tally) -> list[tuple[str, str, list[Path]]]:
    """(subject, sequence, frames) for every sequence folder that holds PNG frames."""
    out = []
    for subject_dir in list_folder(images_root, tally, "CK+ subject folders S<nnn>/", dirs=True):
        if not re.fullmatch(r"S\d+", subject_dir.name):
            raise error(subject_dir, "folder name", "a subject folder 'S<digits>'", subject_dir.name)
        for seq_dir in list_folder(subject_dir, tally, "CK+ sequence folders", dirs=True):
            frames = keep_suffix(list_folder(seq_dir, tally, "CK+ frames", dirs=False), (".png",), tally)
            if frames:
                out.append((subject_dir.name, seq_dir.name, frames))
            else:
                tally.skipped["sequence folder without PNG frames"] += 1
    return out


def _count_orphan_labels(base: Path, sequences: set[tuple[str, str]], tally: Tally) -> None:
    """Count Emotion files whose sequence has no images (a partial extraction)."""
    emotion = base / "Emotion"
    if not emotion.is_dir():
        tally.note(f"{emotion} missing: every sequence is unlabelled")
        return
    for subject_dir in list_folder(emotion, tally, "CK+ Emotion/", dirs=True):
        for seq_dir in list_folder(subject_dir, tally, "CK+ Emotion/S<nnn>/", dirs=True):
            if (subject_dir.name, seq_dir.name) not in sequences and _files(seq_dir, "_emotion.txt", tally):
                tally.skipped["Emotion file whose sequence has no images"] += 1
                tally.note(f"{seq_dir}: labelled, but cohn-kanade-images has no frames for it")


def read_ckplus(root: str | os.PathLike, *, apex_frames: int = 1, verbose: bool = True) -> SampleList:
    """Read CK+: one sample per frame of ``cohn-kanade-images/Sxxx/yyy/*.png``.

    The sequence's emotion (``Emotion/.../*_emotion.txt``, a float such as
    ``   7.0000000e+00``) is ``sequence_label`` on every frame and ``label`` on the
    last ``apex_frames`` frames (other frames: None). FACS codes of the peak frame
    give ``aus``/``au_presence``/``au_mask`` and the raw ``facs`` list on the last
    frame. ``Landmarks/`` files give (68, 2) landmarks per frame (None if absent).
    ``identity`` is the subject number (S005 -> 5). Sequences without a usable Emotion
    file are kept unlabelled and counted in ``masked``; Emotion files whose images are
    missing are counted in ``skipped``.
    """
    tally = Tally()
    base = _ck_dir(Path(root), tally)
    sequences = _sequences(base / "cohn-kanade-images", tally)
    _count_orphan_labels(base, {(s, q) for s, q, _ in sequences}, tally)
    out = []
    for subject, seq, frames in sequences:
        rel = Path(subject) / seq
        seq_native = _sequence_label(base / "Emotion" / rel, frames, tally)
        facs, aus, presence = _facs(base / "FACS" / rel, tally)
        seq_label = None if seq_native is None else CKPLUS_TO_CANON[seq_native]
        for k, frame in enumerate(frames):
            last, apex = k == len(frames) - 1, k >= len(frames) - apex_frames
            number = frame.stem.split("_")[-1]
            out.append(make_sample(
                image=str(frame), path=str(frame), label=seq_label if apex else None,
                native_label=seq_native if apex else None, identity=int(subject[1:]),
                aus=aus if last else None, au_presence=presence if last else None,
                au_mask=np.ones(len(AUS), bool) if last and facs is not None else None,
                facs=facs if last else None, source=str(frame),
                landmarks=_landmarks(base / "Landmarks" / rel / f"{frame.stem}_landmarks.txt", tally),
                subject=subject, sequence=seq, frame=int(number) if number.isdigit() else k + 1,
                sequence_label=seq_label, is_peak=last))
    return finish("ckplus", SampleList(out), tally, len(out), verbose)


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
        identity = required(s, "identity", i, writer)
        seq = s.get("sequence")
        groups[(int(identity), ("single", i) if seq is None else ("seq", seq))].append(s)
    for frames in groups.values():
        if all(f.get("frame") is not None for f in frames):
            frames.sort(key=lambda f: int(f["frame"]))
    return groups


def _write_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(lines))


def _facs_lines(presence: np.ndarray, aus: np.ndarray | None) -> list[str]:
    lines = []
    for j, au in enumerate(AUS):
        if presence[j]:
            value = None if aus is None else float(aus[j])
            intensity = 0 if value is None or math.isnan(value) else int(np.clip(round(value * 5), 1, 5))
            lines.append(_ck_number(float(au)) + _ck_number(float(intensity)) + "\n")
    return lines


def write_ckplus(samples: Iterable[dict], root: str | os.PathLike, *, verbose: bool = True) -> Path:
    """Write CK+: ``cohn-kanade-images/Sxxx/yyy/Sxxx_yyy_%08d.png`` per frame, and on the
    last frame ``Emotion/..._emotion.txt`` (label of the last frame) and
    ``FACS/..._facs.txt`` (AUs present, intensity round(5*aus) in 1..5, 0 if unknown);
    ``Landmarks/..._landmarks.txt`` for every frame with landmarks. Numbers use
    CK+'s ``%16.7e`` text form. Subject = identity (``S%03d``); sequences numbered per
    subject from 001 (see :func:`_group_sequences`).
    """
    root = Path(root)
    native_of = inverse(CKPLUS_TO_CANON)
    seq_count: dict[int, int] = defaultdict(int)
    for (identity, _), frames in _group_sequences(samples, "ckplus").items():
        seq_count[identity] += 1
        subject, seq = f"S{identity:03d}", f"{seq_count[identity]:03d}"
        rel = Path(subject) / seq
        for k, s in enumerate(frames, start=1):
            stem = f"{subject}_{seq}_{k:08d}"
            save_image(s["image"], root / "cohn-kanade-images" / rel / f"{stem}.png")
            if s.get("landmarks") is not None:
                lm = np.asarray(s["landmarks"], float).reshape(68, 2)
                _write_lines(root / "Landmarks" / rel / f"{stem}_landmarks.txt",
                             [_ck_number(x) + _ck_number(y) + "\n" for x, y in lm])
        last, stem = frames[-1], f"{subject}_{seq}_{len(frames):08d}"
        if last.get("label") is not None:
            _write_lines(root / "Emotion" / rel / f"{stem}_emotion.txt",
                         [_ck_number(float(native_of[last["label"]])) + "\n"])
        presence, aus = last.get("au_presence"), last.get("aus")
        if presence is None and aus is not None:
            presence = np.asarray(aus) > 0
        if presence is not None:
            _write_lines(root / "FACS" / rel / f"{stem}_facs.txt", _facs_lines(presence, aus))
    return root
