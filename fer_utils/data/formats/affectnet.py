"""AffectNet, manually annotated part (Mollahosseini, Hasani & Mahoor 2017).

Layout::

    Manually_Annotated_file_lists/training.csv     # ~414K rows
    Manually_Annotated_file_lists/validation.csv   # the de-facto test set
    Manually_Annotated_Images/<subdir>/<hash>.jpg  # full images; the face box is in the CSV

CSV header ``subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,
expression,valence,arousal``: landmarks are 136 ``;``-separated floats (68 x,y points);
expression 0 Neutral, 1 Happy, 2 Sad, 3 Surprise, 4 Fear, 5 Disgust, 6 Anger, 7 Contempt,
8 None, 9 Uncertain, 10 No-Face; valence/arousal in [-1, 1] with -2 = not annotated.
"""
from __future__ import annotations

import csv
import hashlib
import io
import math
import os
from pathlib import Path
from typing import Iterable

import numpy as np

from fer_utils.data.formats.common import (
    JPEG, SampleList, Tally, as_image, check_image, drop_duplicates, error, finish, inverse, make_sample,
    num, read_text, require_dir, save_image, split_of,
)

#: AffectNet ``expression`` 0..7; 8 None, 9 Uncertain, 10 No-Face are dropped.
AFFECTNET_TO_CANON: dict[int, int] = {0: 0, 1: 4, 2: 5, 3: 6, 4: 3, 5: 2, 6: 1, 7: 7}
AFFECTNET_DROPPED: dict[int, str] = {8: "None", 9: "Uncertain", 10: "No-Face"}
AFFECTNET_HEADER = ("subDirectory_filePath,face_x,face_y,face_width,face_height,"
                    "facial_landmarks,expression,valence,arousal")
COLUMNS: list[str] = AFFECTNET_HEADER.split(",")
CSV_NAMES: dict[str, str] = {"train": "training.csv", "val": "validation.csv"}


def _float(text: str) -> float:
    text = text.strip()
    return math.nan if text == "" or text.lower() == "nan" else float(text)


def _csvs(root: Path, split: str | None, tally: Tally) -> tuple[list[tuple[Path, str]], Path]:
    """The (csv, split) pairs to read and the image folder."""
    if split not in (None, "train", "val"):
        raise ValueError(f"split must be 'train', 'val' or None, got {split!r}")
    if root.is_file():
        if root.suffix.lower() != ".csv":
            raise error(root, "path", "an AffectNet file list (training.csv / validation.csv) or the folder "
                        "holding Manually_Annotated_file_lists/", root.name)
        return [(root, "val" if "valid" in root.name else "train")], root.parent.parent / "Manually_Annotated_Images"
    lists = require_dir(root / "Manually_Annotated_file_lists", "AffectNet training.csv / validation.csv")
    wanted = [(lists / CSV_NAMES[sp], sp) for sp in CSV_NAMES if split in (None, sp)]
    found = [(p, sp) for p, sp in wanted if p.exists()]
    if not found or (split is not None and len(found) < len(wanted)):
        raise error(lists, "folder", " and/or ".join(CSV_NAMES[sp] for _, sp in wanted) + " inside")
    for p, _ in wanted:
        if not p.exists():
            tally.note(f"{p.name} missing from {lists}")
    return found, root / "Manually_Annotated_Images"


def _landmarks(text: str, path: Path, line: int, tally: Tally) -> np.ndarray | None:
    text = text.strip()
    if not text or text.lower() == "nan":
        tally.masked["landmarks empty"] += 1
        return None
    try:
        pts = np.array([float(v) for v in text.split(";") if v.strip()], np.float32)
    except ValueError:
        raise error(path, f"line {line}, column facial_landmarks", "136 ';'-separated floats", text) from None
    if pts.size != 136:
        raise error(path, f"line {line}, column facial_landmarks",
                    "136 ';'-separated floats (68 x,y points)", f"{pts.size} values")
    return pts.reshape(68, 2)


def _row_sample(rec: dict, path: Path, line: int, tally: Tally) -> dict | None:
    """One CSV row as a sample (image path filled in later), or None when it is skipped."""
    try:
        expression = int(float(rec["expression"]))
    except ValueError:
        raise error(path, f"line {line}, column expression", "an int 0..10", rec["expression"]) from None
    if expression in AFFECTNET_DROPPED:
        tally.skipped[f"expression {expression} ({AFFECTNET_DROPPED[expression]})"] += 1
        return None
    if expression not in AFFECTNET_TO_CANON:
        raise error(path, f"line {line}, column expression", "an expression id 0..10", rec["expression"])
    try:
        box = [_float(rec[k]) for k in ("face_x", "face_y", "face_width", "face_height")]
        va = [_float(rec["valence"]), _float(rec["arousal"])]
    except ValueError:
        raise error(path, f"line {line}", "numeric face box, valence and arousal", rec) from None
    if any(math.isnan(v) for v in box):
        tally.skipped["NaN/empty face box"] += 1
        return None
    if any(v == -2 for v in va):
        tally.masked["valence/arousal -2 (not annotated)"] += 1
        va = [None, None]
    elif any(math.isnan(v) or not -1 <= v <= 1 for v in va):
        raise error(path, f"line {line}", "valence and arousal in [-1, 1] (or -2)", va)
    return make_sample(
        label=AFFECTNET_TO_CANON[expression], native_label=expression, valence=va[0], arousal=va[1],
        landmarks=_landmarks(rec["facial_landmarks"], path, line, tally), source=f"{path}:line {line}",
        face_box=tuple(box), sub_path=rec["subDirectory_filePath"].strip())


def _read_csv(path: Path, tally: Tally) -> list[tuple[int, dict]]:
    """(line, record) for every non-blank data row of one AffectNet CSV, header checked."""
    text = read_text(path, "an AffectNet file list", tally)
    if not text.strip():
        raise error(path, "line 1", f"the header {AFFECTNET_HEADER!r} (the file is empty)")
    reader = csv.reader(io.StringIO(text))
    header = [c.strip() for c in next(reader)]
    if header != COLUMNS:
        raise error(path, "line 1 (header)", repr(AFFECTNET_HEADER), ",".join(header))
    out = []
    for row in reader:
        if not any(c.strip() for c in row):
            continue
        if len(row) != len(COLUMNS):
            raise error(path, f"line {reader.line_num}", f"{len(COLUMNS)} comma-separated fields", ",".join(row))
        out.append((reader.line_num, dict(zip(COLUMNS, row))))
    return out


def read_affectnet(root: str | os.PathLike, *, split: str | None = None, check_files: bool = True,
                   verbose: bool = True) -> SampleList:
    """Read AffectNet's manually annotated CSVs (``training.csv``/``validation.csv``).

    ``root`` holds ``Manually_Annotated_file_lists/`` and ``Manually_Annotated_Images/``
    (or is one CSV). ``split``: "train", "val" or None for both (a missing one is noted).
    Dropped and counted: expression 8/9/10 (None, Uncertain, No-Face), rows with a
    NaN/empty face box, repeated rows for one image (one kept if they agree, none if
    their expressions differ). Valence/arousal ``-2`` become None (counted in
    ``masked``). Extras: ``face_box`` (x, y, w, h) -- FormatDataset crops to it -- and
    ``sub_path``.
    """
    tally = Tally()
    csvs, images = _csvs(Path(root), split, tally)
    if check_files:
        require_dir(images, "AffectNet images (Manually_Annotated_Images/)")
    samples, total = [], 0
    for path, sp in csvs:
        for line, rec in _read_csv(path, tally):
            total += 1
            sample = _row_sample(rec, path, line, tally)
            if sample is None:
                continue
            img = images / sample["sub_path"]
            if check_files:
                check_image(img, path, f"line {line}")
            sample.update(image=str(img), path=str(img), split=sp)
            samples.append(sample)
    samples = drop_duplicates(samples, lambda s: s["sub_path"], tally)
    return finish("affectnet", SampleList(samples), tally, total, verbose)


def write_affectnet(samples: Iterable[dict], root: str | os.PathLike, *, split: str = "train",
                    verbose: bool = True) -> Path:
    """Write AffectNet's manual layout: ``Manually_Annotated_file_lists/{training,validation}.csv``
    and ``Manually_Annotated_Images/<n>/<sha224>.jpg`` (the full image, JPEG).

    The face box is the sample's ``face_box`` or the whole image; landmarks are
    written with 2 decimals, missing valence/arousal as -2, a missing label as 9
    (Uncertain). Split: the sample's ``split`` ("val"/"test" -> validation.csv) or ``split``.
    """
    root = Path(root)
    native_of = inverse(AFFECTNET_TO_CANON)
    rows: dict[str, list[str]] = {"training": [], "validation": []}
    for i, s in enumerate(samples):
        image = as_image(s["image"])
        sub = f"{1 + i // 500}/" + hashlib.sha224(f"{s.get('index', i)}-{i}".encode()).hexdigest() + ".jpg"
        save_image(image, root / "Manually_Annotated_Images" / sub, **JPEG)
        box = s.get("face_box") or (0, 0, image.size[0], image.size[1])
        lm = s.get("landmarks")
        lm_text = "" if lm is None else ";".join(f"{v:.2f}" for v in np.asarray(lm, float).ravel())
        label = s.get("label")
        expression = 9 if label is None else native_of[label]
        va = [s.get("valence"), s.get("arousal")]
        va_text = ["-2" if va[0] is None or va[1] is None else num(float(v)) for v in va]
        target = "training" if split_of(s, split) == "train" else "validation"
        rows[target].append(",".join([sub, *(str(int(b)) if float(b).is_integer() else num(float(b))
                                              for b in box), lm_text, str(expression), *va_text]))
    lists = root / "Manually_Annotated_file_lists"
    lists.mkdir(parents=True, exist_ok=True)
    for name, lines in rows.items():
        if lines:
            (lists / f"{name}.csv").write_text(AFFECTNET_HEADER + "\n" + "\n".join(lines) + "\n")
    return root
