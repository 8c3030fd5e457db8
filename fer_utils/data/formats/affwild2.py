"""Aff-Wild2, the ABAW challenge annotations (Kollias & Zafeiriou).

Images: ``cropped_aligned/<video>/00001.jpg`` (112x112, 1-based frame numbers; frames with no
face are missing). Annotations: one txt per video and task, header first, then line k+1 =
frame k. Folder names per edition::

    ABAW1:  annotations/{VA_Set,EXPR_Set,AU_Set}/{Training_Set,Validation_Set}/<video>.txt
    ABAW2:  annotations/{VA_Set,EXPR_Set,AU_Set}/{Train_Set,Validation_Set}/<video>.txt
    ABAW3+: <nth> ABAW Annotations/{VA_Estimation,EXPR_Classification (or _Recognition),
            AU_Detection}_Challenge/{Train_Set,Validation_Set}/<video>.txt

VA lines ``v,a`` in [-1, 1] (-5 = missing); EXPR one id 0..6 (ABAW3+: 7 = Other, NOT contempt;
-1 = missing); AU 8 (ABAW1) or 12 comma-separated 0/1 values (-1 = missing).
"""
from __future__ import annotations

import os
import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from fer_utils.data.formats.common import (
    JPEG, SampleList, Tally, as_image, drop_duplicates, error, finish, keep_suffix, list_folder, make_sample,
    num, read_text, report_write, require_dir, save_image, split_of,
)
from fer_utils.labels import ABAW_AUS, AUS

#: Aff-Wild2 EXPR ids 0..6 are already canonical; 7 is "Other" (ABAW3+), NOT contempt.
AFFWILD2_TO_CANON: dict[int, int] = {i: i for i in range(7)}
AFFWILD2_OTHER = 7
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
TASK_DIRS: dict[str, tuple[str, ...]] = {
    "VA": ("VA_Set", "VA_Estimation_Challenge"),
    "EXPR": ("EXPR_Set", "EXPR_Classification_Challenge", "EXPR_Recognition_Challenge"),
    "AU": ("AU_Set", "AU_Detection_Challenge"),
}
SPLIT_DIRS: dict[str, tuple[str, ...]] = {"train": ("Train_Set", "Training_Set"), "val": ("Validation_Set",)}
AU_INDEX: dict[int, int] = {au: i for i, au in enumerate(AUS)}


def _annotation_dirs(root: Path, tally: Tally, annotations: str | None) -> dict[tuple[str, str], Path]:
    """``<task folder>/<split folder>`` for every ABAW edition naming under ``root`` (or under
    ``root / annotations``); two trees for one task and split (two editions side by side) are
    a FormatError that says how to choose one."""
    bases = [root] if annotations is None else []
    children = [require_dir(root / annotations, "the ABAW annotation folder")] if annotations else \
        list_folder(root, tally, "the Aff-Wild2 folder", dirs=True)
    for child in children:
        if "nnotation" in child.name or "ABAW" in child.name:
            bases.append(child)
            bases.extend(p for p in list_folder(child, tally, str(child), dirs=True) if "nnotation" in p.name)
    found: dict[tuple[str, str], Path] = {}
    for base in bases:
        for task, names in TASK_DIRS.items():
            for split, split_names in SPLIT_DIRS.items():
                for folder in (base / n / s for n in names for s in split_names):
                    if not folder.is_dir():
                        continue
                    if (task, split) in found:
                        raise error(folder, "folder", f"one {task} {split} annotation tree; also found "
                                    f"{found[(task, split)]}: choose one with annotations='<folder name>'")
                    found[(task, split)] = folder
    return found


def _header(path: Path, task: str, line: str) -> list[str]:
    header = [h.strip() for h in line.split(",")]
    if task == "VA" and [h.lower() for h in header] != ["valence", "arousal"]:
        raise error(path, "line 1 (header)", "'valence,arousal'", line)
    if task == "EXPR" and header not in (list(ABAW_EXPR_NAMES[:7]), list(ABAW_EXPR_NAMES)):
        raise error(path, "line 1 (header)", "'" + ",".join(ABAW_EXPR_NAMES[:7]) + "' (+',Other')", line)
    if task == "AU" and not all(re.fullmatch(r"AU\d+", h) and int(h[2:]) in AU_INDEX for h in header):
        raise error(path, "line 1 (header)", "'AU1,AU2,...' with AUs from fer_utils.labels.AUS", line)
    return header


def _value(task: str, parts: list[str], header: list[str]) -> Any:
    """One frame line's value, or None when it breaks the task's format."""
    try:
        if task == "VA" and len(parts) == 2:
            v = (float(parts[0]), float(parts[1]))
            return v if all(x == -5 or -1 <= x <= 1 for x in v) else None
        if task == "EXPR" and len(parts) == 1:
            e = int(float(parts[0]))
            return e if e == -1 or 0 <= e < len(header) else None
        if task == "AU" and len(parts) == len(header):
            a = tuple(int(float(p)) for p in parts)
            return a if all(x in (0, 1, -1) for x in a) else None
    except ValueError:
        return None
    return None


def read_abaw_file(path: Path, task: str, tally: Tally | None = None) -> tuple[list[str], list[Any]]:
    """Parse one per-video ABAW txt file -> (header, one parsed value per frame line)."""
    lines = read_text(path, f"an ABAW {task} annotation file", tally).splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise error(path, "line 1", f"an ABAW {task} header line and one line per frame (the file is empty)")
    header = _header(path, task, lines[0])
    what = {"VA": "'valence,arousal' floats in [-1, 1] or -5",
            "EXPR": f"one expression id 0..{len(header) - 1} or -1",
            "AU": f"{len(header)} comma-separated AU values 0, 1 or -1"}[task]
    values = []
    for line_no, line in enumerate(lines[1:], start=2):
        v = _value(task, [p.strip() for p in line.split(",")], header)
        if v is None:
            raise error(path, f"line {line_no}", what, line)
        values.append(v)
    return header, values


def _video_frames(video_dir: Path, tally: Tally) -> dict[int, Path]:
    """Frame number -> image for one ``cropped_aligned/<video>/`` folder."""
    frames = {}
    for p in keep_suffix(list_folder(video_dir, tally, "Aff-Wild2 frames", dirs=False), (".jpg",), tally):
        if not p.stem.isdigit():
            raise error(p, "file name", "a frame image named like 00001.jpg", p.name)
        if int(p.stem) == 0:
            tally.ignored["frame 00000.jpg (frames are numbered from 1)"] += 1
            continue
        frames[int(p.stem)] = p
    return frames


def _au_fields(header: list[str], row: tuple) -> dict:
    presence, mask = np.zeros(len(AUS), bool), np.zeros(len(AUS), bool)
    for h, x in zip(header, row):
        presence[AU_INDEX[int(h[2:])]] = bool(x)
        mask[AU_INDEX[int(h[2:])]] = True
    return {"au_presence": presence, "au_mask": mask}


def _frame_fields(k: int, ann: dict[str, tuple], tally: Tally) -> tuple[dict, list[str]]:
    """The usable fields of frame k (sentinels counted in ``masked``) and their sources."""
    fields, sources = {}, []
    for task, (path, header, values) in ann.items():
        if k > len(values):
            continue
        sources.append(f"{path}:line {k + 1}")
        v = values[k - 1]
        if task == "VA":
            if -5 in v:
                tally.masked["VA -5"] += 1
            else:
                fields.update(valence=v[0], arousal=v[1])
        elif task == "EXPR":
            if v == -1:
                tally.masked["EXPR -1"] += 1
            elif v == AFFWILD2_OTHER:
                tally.masked["EXPR 7 (Other)"] += 1
                fields["native_label"] = v
            else:
                fields.update(label=AFFWILD2_TO_CANON[v], native_label=v)
        elif -1 in v:
            tally.masked["AU -1"] += 1
        else:
            fields.update(_au_fields(header, v))
    return fields, sources


def _video_samples(sp: str, video: str, ann: dict, image_root: Path, edition: str, tally: Tally) -> list[dict]:
    """The samples of one video: one per annotated frame that has an image and a usable value."""
    video_dir = image_root / video
    n_lines = max(len(v[2]) for v in ann.values())
    if not video_dir.is_dir():
        if not tally.skipped["annotation line of a video without image folder"]:
            tally.note(f"{video_dir} missing (annotated in {next(iter(ann.values()))[0]})")
        tally.skipped["annotation line of a video without image folder"] += n_lines
        return []
    frames = _video_frames(video_dir, tally)
    for path, _, values in ann.values():
        if frames and max(frames) > len(values):
            raise error(path, f"line {len(values) + 2}",
                        f"one line per frame after the header: {video_dir / f'{max(frames):05d}.jpg'} "
                        f"exists but the file has {len(values)} frame lines")
    out = []
    for k in range(1, n_lines + 1):
        if k not in frames:
            tally.skipped["annotation line without a face image"] += 1
            continue
        fields, sources = _frame_fields(k, ann, tally)
        if not set(fields) - {"native_label"}:
            tally.skipped["frame with only -5/-1/Other markers"] += 1
            continue
        out.append(make_sample(image=str(frames[k]), path=str(frames[k]), split=sp, video=video, frame=k,
                               edition=edition, source="; ".join(sources), **fields))
    return out


def _au_key(s: dict) -> tuple:
    return (s["native_label"], s["valence"], s["arousal"],
            None if s["au_presence"] is None else tuple(s["au_presence"]))


def read_affwild2(root: str | os.PathLike, *, split: str | None = None,
                  tasks: Sequence[str] = ("VA", "EXPR", "AU"), images: str = "cropped_aligned",
                  annotations: str | None = None, verbose: bool = True) -> SampleList:
    """Read Aff-Wild2 per-frame annotations (ABAW1, ABAW2 or ABAW3+ folder names).

    ``root`` holds ``cropped_aligned/<video>/00001.jpg`` and an annotation tree
    (``annotations/{VA,EXPR,AU}_Set/{Training,Train}_Set/`` or
    ``<nth> ABAW Annotations/{VA_Estimation,EXPR_Classification|Recognition,AU_Detection}_Challenge/``);
    with two editions side by side, ``annotations`` names the top folder to read.
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
    root = require_dir(Path(root), "the Aff-Wild2 folder (cropped_aligned/ + annotations)")
    tally = Tally()
    dirs = _annotation_dirs(root, tally, annotations)
    splits = [split] if split else ["train", "val"]
    wanted = {(t, s): p for (t, s), p in dirs.items() if t in tasks and s in splits}
    if not wanted:
        raise error(root, "annotation folders", "annotations/EXPR_Set/Train_Set/ or "
                    "'Third ABAW Annotations/EXPR_Classification_Challenge/Train_Set/' (or VA/AU)")
    for t, s in ((t, s) for t in tasks for s in splits if (t, s) not in wanted):
        tally.note(f"no {t} {s} annotation folder")
    names = {p.parent.name for p in wanted.values()} | {p.name for p in wanted.values()}
    edition = "abaw3+" if any(n.endswith("_Challenge") for n in names) else \
        "abaw1" if "Training_Set" in names else "abaw2"
    image_root = require_dir(root / images, f"Aff-Wild2 frames ({images}/<video>/00001.jpg)")
    per_video: dict[tuple[str, str], dict[str, tuple]] = defaultdict(dict)
    for (task, sp), folder in sorted(wanted.items()):
        for path in keep_suffix(list_folder(folder, tally, "ABAW annotation files", dirs=False), (".txt",), tally):
            per_video[(sp, path.stem)][task] = (path, *read_abaw_file(path, task, tally))
    samples, total = [], 0
    for (sp, video), ann in sorted(per_video.items()):
        total += max(len(v[2]) for v in ann.values())
        samples.extend(_video_samples(sp, video, ann, image_root, edition, tally))
    samples = drop_duplicates(samples, lambda s: s["path"], tally, label=_au_key)
    return finish("affwild2", SampleList(samples), tally, total, verbose)


def _task_lines(task: str, frames: dict[int, dict], n: int, ed: dict, skipped: Counter) -> list[str] | None:
    """The lines of one task file for one video (None when no frame has that field)."""
    if task == "VA" and any(s.get("valence") is not None for s in frames.values()):
        va = [(frames.get(k, {}).get("valence"), frames.get(k, {}).get("arousal")) for k in range(1, n + 1)]
        return ["valence,arousal"] + ["-5,-5" if v is None or a is None else f"{num(float(v))},{num(float(a))}"
                                      for v, a in va]
    if task == "EXPR" and any(s.get("label") is not None for s in frames.values()):
        labels = [frames.get(k, {}).get("label") for k in range(1, n + 1)]
        skipped["contempt written as EXPR -1 (ABAW 7 is Other)"] += labels.count(7)
        return [",".join(ABAW_EXPR_NAMES[:ed["classes"]])] + [
            str(e) if e in AFFWILD2_TO_CANON else "-1" for e in labels]
    if task == "AU" and any(s.get("au_presence") is not None for s in frames.values()):
        lines = [",".join(f"AU{au}" for au in ed["aus"])]
        for k in range(1, n + 1):
            presence, mask = frames.get(k, {}).get("au_presence"), frames.get(k, {}).get("au_mask")
            lines.append(",".join(
                "-1" if presence is None or (mask is not None and not mask[AU_INDEX[au]])
                else str(int(bool(presence[AU_INDEX[au]]))) for au in ed["aus"]))
        return lines
    return None


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
        videos[s.get("video") or f"video{s.get('identity') if s.get('identity') is not None else ''}"].append(s)
    skipped: Counter = Counter()
    for video, items in videos.items():
        frames = {int(s["frame"]) if s.get("frame") is not None else pos: s for pos, s in enumerate(items, start=1)}
        sp = "val" if split_of(items[0], split) in ("val", "test") else "train"
        for k, s in frames.items():
            if s.get("image") is not None:
                save_image(as_image(s["image"], size=size).convert("RGB"),
                           root / "cropped_aligned" / video / f"{k:05d}.jpg", **JPEG)
        for task in ("VA", "EXPR", "AU"):
            lines = _task_lines(task, frames, max(frames), ed, skipped)
            if lines is not None:
                path = top / ed[task] / ed[sp] / f"{video}.txt"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text("\n".join(lines) + "\n")
    report_write("affwild2", skipped, verbose)
    return root
