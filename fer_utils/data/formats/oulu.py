"""Oulu-CASIA NIR&VIS.

Layout (no label files: the class folder is the label, there is no neutral class)::

    OriginalImg/{VL,NI}/{Strong,Weak,Dark}/P001/{Anger,Disgust,Fear,Happiness,Sadness,Surprise}/000.jpeg ...

Each class folder is one sequence from neutral onset to apex; the protocol uses VL + Strong
(80 subjects x 6 classes) and the last 3 frames as the apex.
"""
from __future__ import annotations

import os
import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Iterable

from fer_utils.data.formats.common import (
    JPEG, SampleList, Tally, error, finish, inverse, keep_suffix, list_folder, make_sample, report_write,
    require_dir, required, save_image,
)
from fer_utils.labels import CLASSES

#: Oulu-CASIA class folders (no neutral, no contempt).
OULU_TO_CANON: dict[str, int] = {
    "Anger": 1, "Disgust": 2, "Fear": 3, "Happiness": 4, "Sadness": 5, "Surprise": 6,
}


def _condition_folders(top: Path, system: str | None, illumination: str | None,
                       tally: Tally) -> list[tuple[str, str, Path]]:
    """(system, illumination, folder) for every selected ``<system>/<illumination>/`` tree."""
    out = []
    systems = [system] if system else [p.name for p in list_folder(top, tally, "OriginalImg/", dirs=True)]
    for sys_name in systems:
        lights = [illumination] if illumination else [
            p.name for p in list_folder(top / sys_name, tally, f"OriginalImg/{sys_name}/", dirs=True)]
        for light in lights:
            out.append((sys_name, light, require_dir(top / sys_name / light,
                                                     f"OriginalImg/{sys_name}/{light}/P<nnn>/<Class>/")))
    return out


def read_oulu(root: str | os.PathLike, *, system: str | None = "VL", illumination: str | None = "Strong",
              apex_frames: int = 3, verbose: bool = True) -> SampleList:
    """Read Oulu-CASIA ``OriginalImg/{VL,NI}/{Strong,Weak,Dark}/Pxxx/<Class>/000.jpeg``.

    ``root`` holds ``OriginalImg/`` (or is it). ``system``/``illumination`` select
    the sub-trees (None = all). The class folder is the label: ``sequence_label``
    on every frame, ``label`` on the last ``apex_frames`` frames (the protocol's
    apex), None on earlier frames. ``identity`` = subject number (P012 -> 12).
    Class folders without frames are counted in ``skipped``.
    """
    root = Path(root)
    top = root / "OriginalImg" if (root / "OriginalImg").is_dir() else require_dir(root, "Oulu-CASIA OriginalImg/")
    tally = Tally()
    out = []
    for sys_name, light, folder in _condition_folders(top, system, illumination, tally):
        for subject_dir in list_folder(folder, tally, "Oulu-CASIA subject folders", dirs=True):
            if not re.fullmatch(r"P\d+", subject_dir.name):
                raise error(subject_dir, "folder name", "a subject folder 'P<digits>'", subject_dir.name)
            for class_dir in list_folder(subject_dir, tally, "Oulu-CASIA class folders", dirs=True):
                if class_dir.name not in OULU_TO_CANON:
                    raise error(class_dir, "folder name", f"one of {sorted(OULU_TO_CANON)}", class_dir.name)
                files = list_folder(class_dir, tally, "Oulu-CASIA frames", dirs=False)
                frames = keep_suffix(files, (".jpeg", ".jpg"), tally)
                if not frames:
                    tally.skipped["class folder without frames"] += 1
                label = OULU_TO_CANON[class_dir.name]
                for k, frame in enumerate(frames):
                    apex = k >= len(frames) - apex_frames
                    out.append(make_sample(
                        image=str(frame), path=str(frame), label=label if apex else None,
                        native_label=class_dir.name if apex else None,
                        identity=int(subject_dir.name[1:]), source=str(frame),
                        sequence_label=label, system=sys_name, illumination=light,
                        subject=subject_dir.name, frame=int(frame.stem) if frame.stem.isdigit() else k))
    return finish("oulu", SampleList(out), tally, len(out), verbose)


def write_oulu(samples: Iterable[dict], root: str | os.PathLike, *, system: str = "VL",
               illumination: str = "Strong", verbose: bool = True) -> Path:
    """Write ``OriginalImg/<system>/<illumination>/P%03d/<Class>/%03d.jpeg``.

    One sequence per (identity, class): frames in sample order (or by ``frame``),
    0-based 3-digit names. The class is the sample's label; Oulu has no neutral or
    contempt folder, so such samples (and unlabelled ones) are skipped and counted.
    """
    root = Path(root)
    folder_of = inverse(OULU_TO_CANON)
    groups: dict[tuple, list[dict]] = defaultdict(list)
    skipped: Counter = Counter()
    for i, s in enumerate(samples):
        label = s.get("label") if s.get("label") is not None else s.get("sequence_label")
        if label not in folder_of:
            skipped[f"no Oulu-CASIA class ({'None' if label is None else CLASSES[label]})"] += 1
            continue
        groups[(int(required(s, "identity", i, "oulu")), folder_of[label])].append(s)
    for (identity, cls), frames in groups.items():
        if all(f.get("frame") is not None for f in frames):
            frames.sort(key=lambda f: int(f["frame"]))
        folder = root / "OriginalImg" / system / illumination / f"P{identity:03d}" / cls
        for k, s in enumerate(frames):
            save_image(s["image"], folder / f"{k:03d}.jpeg", format="JPEG", **JPEG)
    report_write("oulu", skipped, verbose)
    return root
