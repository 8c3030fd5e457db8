"""RAF-DB basic (Li & Deng 2017).

Layout of ``basic/``::

    EmoLabel/list_patition_label.txt       # (sic) one line '<name>.jpg <label 1..7>', no header
    Image/aligned/train_00001_aligned.jpg  # 100x100 RGB; the label file names the original
    Image/original/train_00001.jpg         # variable size

Labels are 1-based: 1 Surprise, 2 Fear, 3 Disgust, 4 Happiness, 5 Sadness, 6 Anger, 7 Neutral.
The split is the name prefix (``train_`` / ``test_``); there is no validation split.
"""
from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Iterable

from fer_utils.data.formats.common import (
    JPEG, SampleList, Tally, as_image, check_image, drop_duplicates, error, finish, inverse, make_sample,
    read_text, report_write, require_dir, save_image, split_of,
)

#: RAF-DB basic, 1-based ids: 1 Surprise .. 7 Neutral.
RAFDB_TO_CANON: dict[int, int] = {1: 6, 2: 3, 3: 2, 4: 4, 5: 5, 6: 1, 7: 0}
RAFDB_LABEL_FILE = Path("EmoLabel") / "list_patition_label.txt"


def _label_file(root: Path) -> Path:
    """The label file, given ``basic/``, ``basic/EmoLabel/`` or the file itself."""
    if root.is_file():
        return root
    for candidate in (root / RAFDB_LABEL_FILE, root / RAFDB_LABEL_FILE.name):
        if candidate.exists():
            return candidate
    require_dir(root, "RAF-DB basic/")
    raise error(root / RAFDB_LABEL_FILE, "path", "the RAF-DB label file (basic/EmoLabel/list_patition_label.txt)"
                ", which does not exist")


def read_rafdb(root: str | os.PathLike, *, aligned: bool = True, verbose: bool = True) -> SampleList:
    """Read RAF-DB basic: ``EmoLabel/list_patition_label.txt`` lines ``<name>.jpg <1..7>``.

    ``root`` is the ``basic/`` folder (or ``EmoLabel/``, or the label file). Images are
    ``Image/aligned/<stem>_aligned.jpg`` (``aligned=False``: ``Image/original/<name>``)
    and are returned as paths. Split from the name prefix (train_/test_). A name listed
    twice is read once (same label) or dropped (different labels); both are counted.
    """
    label_file = _label_file(Path(root))
    base = label_file.parent.parent
    folder = base / "Image" / ("aligned" if aligned else "original")
    tally = Tally()
    text = read_text(label_file, "the RAF-DB label file", tally)
    if not text.strip():
        raise error(label_file, "line 1", "lines '<name>.jpg <label 1..7>' (the file is empty)")
    require_dir(folder, "RAF-DB images listed in " + label_file.name)
    samples = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[0].lower().endswith(".jpg"):
            raise error(label_file, f"line {line_no}", "'<name>.jpg <label 1..7>'", line)
        name, native = parts
        if native not in {str(k) for k in RAFDB_TO_CANON}:
            raise error(label_file, f"line {line_no}", "a label id 1..7 (1 Surprise .. 7 Neutral)", native)
        img = folder / (f"{name[:-4]}_aligned.jpg" if aligned else name)
        check_image(img, label_file, f"line {line_no}")
        split = "train" if name.startswith("train") else "test" if name.startswith("test") else None
        samples.append(make_sample(image=str(img), path=str(img), label=RAFDB_TO_CANON[int(native)],
                                   native_label=int(native), source=f"{label_file}:line {line_no}",
                                   split=split, name=name))
    total = len(samples)
    samples = drop_duplicates(samples, lambda s: s["name"], tally)
    return finish("rafdb", SampleList(samples), tally, total, verbose)


def write_rafdb(samples: Iterable[dict], root: str | os.PathLike, *, split: str = "train",
                size: int | None = 100, verbose: bool = True) -> Path:
    """Write RAF-DB basic: the label file plus ``Image/aligned/<name>_aligned.jpg`` (100x100 RGB).

    Names are ``train_%05d.jpg`` / ``test_%04d.jpg`` numbered per split from 1, in
    sample order; the split is the sample's ``split`` (val counts as test) or ``split``.
    Samples without a RAF-DB class (None, contempt) are skipped and counted.
    """
    root = Path(root)
    native_of = inverse(RAFDB_TO_CANON)
    counters = {"train": 0, "test": 0}
    lines, skipped = [], Counter()
    for s in samples:
        label = s.get("label")
        if label not in native_of:
            skipped["no RAF-DB class (None or contempt)"] += 1
            continue
        sp = "train" if split_of(s, split) == "train" else "test"
        counters[sp] += 1
        name = f"train_{counters[sp]:05d}.jpg" if sp == "train" else f"test_{counters[sp]:04d}.jpg"
        img = as_image(s["image"], size=size)
        save_image(img.convert("RGB"), root / "Image" / "aligned" / f"{name[:-4]}_aligned.jpg", **JPEG)
        lines.append(f"{name} {native_of[label]}\n")
    (root / RAFDB_LABEL_FILE).parent.mkdir(parents=True, exist_ok=True)
    (root / RAFDB_LABEL_FILE).write_text("".join(lines))
    report_write("rafdb", skipped, verbose)
    return root
