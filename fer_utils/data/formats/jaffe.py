"""JAFFE, the Japanese Female Facial Expression set.

Layout: one flat folder (``jaffe/`` or ``jaffedbase/``) of 256x256 grayscale TIFFs named
``<POSER>.<EX><n>.<id>.tiff``, e.g. ``KA.AN1.39.tiff`` (poser KA, anger, first take,
image 39). Expression codes: AN, DI, FE, HA, NE, SA, SU. Re-packs may use ``.tif``;
READMEs and rating files sit in the same folder.
"""
from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Iterable

from fer_utils.data.formats.common import (
    SampleList, Tally, error, finish, inverse, keep_suffix, list_folder, make_sample, report_write, required,
    save_image,
)

#: JAFFE expression codes (first two letters of the second dot field).
JAFFE_TO_CANON: dict[str, int] = {"NE": 0, "AN": 1, "DI": 2, "FE": 3, "HA": 4, "SA": 5, "SU": 6}
JAFFE_POSERS: tuple[str, ...] = ("KA", "KL", "KM", "KR", "MK", "NA", "NM", "TM", "UY", "YM")
#: Poser codes for identities beyond the 10 real posers (writers only need a bijection).
JAFFE_CODES: tuple[str, ...] = JAFFE_POSERS + tuple(
    a + b for a in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" for b in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    if a + b not in JAFFE_POSERS)


def read_jaffe(root: str | os.PathLike, *, verbose: bool = True) -> SampleList:
    """Read JAFFE: a flat folder of ``<POSER>.<EX><n>.<id>.tiff`` (or ``.tif``).

    The label is the first two letters of the second dot field (AN, DI, FE, HA,
    NE, SA, SU). Other files (README, ratings) and OS artefacts are counted in
    ``ignored``. ``identity`` is the poser's index in JAFFE_POSERS (KA=0 .. YM=9);
    extras ``poser``, ``take``, ``image_id``.
    """
    root = Path(root)
    tally = Tally()
    files = keep_suffix(list_folder(root, tally, "the JAFFE image folder", dirs=False), (".tiff", ".tif"), tally)
    if not files:
        raise error(root, "folder", "JAFFE images named <POSER>.<EX><n>.<id>.tiff")
    out = []
    for path in files:
        parts = path.name.split(".")
        if len(parts) != 4 or len(parts[0]) < 2:
            raise error(path, "file name", "'<POSER>.<EX><n>.<id>.tiff', e.g. 'KA.AN1.39.tiff'", path.name)
        poser, expr, image_id = parts[0], parts[1], parts[2]
        code = expr[:2].upper()
        if code not in JAFFE_TO_CANON:
            raise error(path, "file name", f"an expression code in {sorted(JAFFE_TO_CANON)}", expr)
        take = expr[2:]
        out.append(make_sample(
            image=str(path), path=str(path), label=JAFFE_TO_CANON[code], native_label=code,
            identity=JAFFE_CODES.index(poser) if poser in JAFFE_CODES else None,
            source=str(path), poser=poser, take=int(take) if take.isdigit() else take,
            image_id=int(image_id) if image_id.isdigit() else image_id))
    return finish("jaffe", SampleList(out), tally, len(out), verbose)


def write_jaffe(samples: Iterable[dict], root: str | os.PathLike, *, size: int | None = 256,
                ext: str = ".tiff", verbose: bool = True) -> Path:
    """Write JAFFE into the flat folder ``root``: 256x256 grayscale TIFF named
    ``<POSER>.<EX><take>.<id>.tiff``. Identity i < 10 is the real poser JAFFE_POSERS[i];
    larger ids get other two-letter codes. Takes count per (poser, expression), ids
    run from 1. Samples without a JAFFE class (None, contempt) are skipped and counted.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    code_of = inverse(JAFFE_TO_CANON)
    takes: Counter = Counter()
    skipped: Counter = Counter()
    image_id = 0
    for i, s in enumerate(samples):
        label = s.get("label")
        if label not in code_of:
            skipped["no JAFFE class (None or contempt)"] += 1
            continue
        poser = JAFFE_CODES[int(required(s, "identity", i, "jaffe"))]
        code = code_of[label]
        takes[(poser, code)] += 1
        image_id += 1
        save_image(s["image"], root / f"{poser}.{code}{takes[(poser, code)]}.{image_id}{ext}",
                   gray=True, size=size, format="TIFF")
    report_write("jaffe", skipped, verbose)
    return root
