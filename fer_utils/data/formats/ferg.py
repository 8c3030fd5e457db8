"""FERG-DB, stylised cartoon faces (Aneja et al., ACCV 2016).

Layout::

    FERG_DB_256/<char>/<char>_<expr>/<char>_<expr>_<n>.png   # 256x256 PNG

Characters aia, bonnie, jules, malcolm, mery, ray; expressions anger, disgust, fear, joy
(= happiness), neutral, sadness, surprise. Some copies ship a ``README.txt`` at the top.
"""
from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path
from typing import Iterable

from fer_utils.data.formats.common import (
    SampleList, Tally, as_image, error, finish, inverse, keep_suffix, list_folder, make_sample, report_write,
    required, save_image,
)

#: FERG-DB class folder suffixes ("joy" is happiness).
FERG_TO_CANON: dict[str, int] = {
    "anger": 1, "disgust": 2, "fear": 3, "joy": 4, "neutral": 0, "sadness": 5, "surprise": 6,
}
FERG_CHARACTERS: tuple[str, ...] = ("aia", "bonnie", "jules", "malcolm", "mery", "ray")


def _identity(char: str) -> int | None:
    """Index in FERG_CHARACTERS, or N for a ``char<N>`` folder the writer made."""
    if char in FERG_CHARACTERS:
        return FERG_CHARACTERS.index(char)
    m = re.fullmatch(r"char(\d+)", char)
    return int(m.group(1)) if m else None


def read_ferg(root: str | os.PathLike, *, verbose: bool = True) -> SampleList:
    """Read FERG-DB ``FERG_DB_256/<char>/<char>_<expr>/<char>_<expr>_<n>.png``.

    ``root`` is ``FERG_DB_256/`` or its parent. The label is the ``_<expr>`` folder
    suffix ("joy" = happiness). ``identity`` = index in FERG_CHARACTERS (aia=0 .. ray=5)
    or the number of a ``char<N>`` folder the writer made; extras ``character``, ``number``.
    Files that are not PNG frames (README, OS artefacts) are counted in ``ignored``.
    """
    root = Path(root)
    top = root / "FERG_DB_256" if (root / "FERG_DB_256").is_dir() else root
    tally = Tally()
    out = []
    for char_dir in list_folder(top, tally, "FERG_DB_256/ character folders", dirs=True):
        char = char_dir.name
        for class_dir in list_folder(char_dir, tally, "FERG class folders", dirs=True):
            prefix, _, expr = class_dir.name.partition("_")
            if prefix != char or expr not in FERG_TO_CANON:
                raise error(class_dir, "folder name", f"'{char}_<expr>' with expr in {sorted(FERG_TO_CANON)}",
                            class_dir.name)
            files = list_folder(class_dir, tally, "FERG images", dirs=False)
            for path in keep_suffix(files, (".png",), tally):
                parts = path.stem.split("_")
                if len(parts) != 3 or parts[0] != char or parts[1] != expr:
                    raise error(path, "file name", f"'{char}_{expr}_<n>.png'", path.name)
                out.append(make_sample(
                    image=str(path), path=str(path), label=FERG_TO_CANON[expr], native_label=expr,
                    identity=_identity(char), source=str(path), character=char,
                    number=int(parts[2]) if parts[2].isdigit() else parts[2]))
    if not out:
        raise error(top, "folder", "<char>/<char>_<expr>/<char>_<expr>_<n>.png images")
    return finish("ferg", SampleList(out), tally, len(out), verbose)


def write_ferg(samples: Iterable[dict], root: str | os.PathLike, *, size: int | None = 256,
               verbose: bool = True) -> Path:
    """Write ``<root>/FERG_DB_256/<char>/<char>_<expr>/<char>_<expr>_<n>.png`` (256x256 RGB).

    Identity i < 6 is FERG_CHARACTERS[i]; larger ids become ``char<i>``. Numbers
    count from 1 per (character, class). Contempt/None samples are skipped and counted.
    """
    root = Path(root)
    expr_of = inverse(FERG_TO_CANON)
    numbers: Counter = Counter()
    skipped: Counter = Counter()
    for i, s in enumerate(samples):
        label = s.get("label")
        if label not in expr_of:
            skipped["no FERG class (None or contempt)"] += 1
            continue
        identity = int(required(s, "identity", i, "ferg"))
        char = FERG_CHARACTERS[identity] if identity < len(FERG_CHARACTERS) else f"char{identity}"
        expr = expr_of[label]
        numbers[(char, expr)] += 1
        path = root / "FERG_DB_256" / char / f"{char}_{expr}" / f"{char}_{expr}_{numbers[(char, expr)]}.png"
        save_image(as_image(s["image"], size=size).convert("RGB"), path)
    report_write("ferg", skipped, verbose)
    return root
