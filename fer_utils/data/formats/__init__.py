"""Readers and writers for the on-disk layouts of the real FER datasets, one module each.

The course ships no real data, so every reader here is exercised by exporting
synthetic samples with the matching writer and reading them back. A user with
the real data points a reader at it and gets the same sample fields. Each module
opens with its dataset's layout; data/README.md says where to request each one.

=============  ==================================================================  =========  ========  =====
module         layout on disk                                                      labels     VA        AUs
=============  ==================================================================  =========  ========  =====
``fer2013``    ``fer2013.csv``, ``icml_face_data.csv`` or ``train.csv`` +          7          -         -
               ``test.csv``; FER+ ``fer2013new.csv`` (joined by row position)      8
               or ``FER2013{Train,Valid,Test}/label.csv`` + PNGs
``rafdb``      ``EmoLabel/list_patition_label.txt`` + ``Image/aligned/``           7          -         -
``affectnet``  ``Manually_Annotated_file_lists/{training,validation}.csv``         8 (+3      yes (-2   -
               + ``Manually_Annotated_Images/<sub>/<file>.jpg``                    dropped)   = none)
``ckplus``     ``cohn-kanade-images/Sxxx/yyy/*.png``, ``Emotion/``, ``FACS/``,     8 ids      -         FACS
               ``Landmarks/`` text files in ``%.7e`` notation
``oulu``       ``OriginalImg/VL/Strong/Pxxx/<Class>/000.jpeg``                     6          -         -
``jaffe``      flat folder ``<POSER>.<EX><n>.<id>.tiff``                           7          -         -
``affwild2``   ``cropped_aligned/<video>/00001.jpg`` + ABAW per-video txt files    7 (+Other  yes (-5   8/12
               (ABAW1, ABAW2 and ABAW3+ folder names)                              dropped)   = none)   (-1)
``ferg``       ``FERG_DB_256/<char>/<char>_<expr>/<char>_<expr>_<n>.png``          7          -         -
=============  ==================================================================  =========  ========  =====

Samples
-------
Every reader returns a sequence of sample dicts with the same keys as a
SynthFaces item, plus provenance::

    image        uint8 array (CSV formats), or the image file path as a str
                 (folder formats: loaded lazily by FormatDataset / read_image_file)
    path         image file path (str) or None when pixels live in a CSV
    label        canonical class id (fer_utils.labels.CLASSES) or None
    native_label the dataset's own id or name, untouched
    valence, arousal        float in [-1, 1] or None
    aus          float32 (17,) intensities in fer_utils.labels.AUS order, or None
    au_presence  bool (17,) or None;  au_mask bool (17,): which AUs the file annotates
    landmarks    float32 (68, 2) pixel (x, y) or None
    identity     int subject id where the format has one, else None
    source       where it came from, e.g. "fer2013.csv:line 19"
    split        "train" / "val" / "test" where the format says, else None
    + format extras (usage, votes, face_box, video, frame, subject, ...)

A missing field is ``None``; nothing is invented. Line numbers are 1-based
physical lines of the file (a CSV header is line 1, so data row 0 is line 2).

What a reader leaves out
------------------------
Nothing is dropped silently. Every result carries ``skipped`` (reason -> rows
dropped, e.g. FER+ ``unknown``, an image listed twice), ``masked`` (reason ->
fields set to None by a documented sentinel, e.g. AffectNet valence ``-2``),
``ignored`` (files that are not data: macOS ``._*`` and ``.DS_Store``, Windows
``Thumbs.db`` / ``desktop.ini``, READMEs) and ``notes`` (a label file decoded as
cp1252, a split folder missing). ``print(samples.report())`` shows them in one line,
e.g. ``read_ferplus: kept 35 of 40 rows; skipped unknown=3, NF=2``; the reader prints
that line itself unless ``verbose=False``. Label files may be UTF-8 (with or without
BOM), UTF-16 with BOM or cp1252, with LF, CRLF or CR line ends.

Bad input raises :class:`FormatError` naming the file, the line and what was
expected (also for a folder given where a file is expected, and the reverse).

Writers take any iterable of sample dicts (SynthFaces items work as they are)
and write the documented layout under the path given; each returns that path and
prints what it could not represent (e.g. contempt in Oulu-CASIA). Sequence formats
(CK+, Oulu-CASIA, Aff-Wild2) group frames by ``identity`` plus an optional
``sequence`` / ``video`` key and order them by ``frame`` when given, e.g.
``write_ckplus([dict(f, sequence=0) for f in faces.sequence(3, 4, 10)], root)``.

``FormatDataset(samples)`` wraps any reader's output as a torch Dataset (images
loaded lazily, AffectNet images cropped to their face box); use
``collate_samples`` as the DataLoader's ``collate_fn``. Each reader's native -> canonical
class map is in :data:`fer_utils.data.sources.DATASETS` (``label_map``).
"""
from __future__ import annotations

from fer_utils.data.formats.affectnet import AFFECTNET_DROPPED, AFFECTNET_TO_CANON, read_affectnet, write_affectnet
from fer_utils.data.formats.affwild2 import (
    ABAW1_AUS, ABAW_EXPR_NAMES, AFFWILD2_OTHER, AFFWILD2_TO_CANON, read_affwild2, write_affwild2,
)
from fer_utils.data.formats.ckplus import CKPLUS_TO_CANON, read_ckplus, write_ckplus
from fer_utils.data.formats.common import FormatError, SampleList, make_sample, read_image_file
from fer_utils.data.formats.dataset import FormatDataset, collate_samples
from fer_utils.data.formats.fer2013 import (
    FER_USAGES, FERPLUS_COLUMNS, FERPLUS_TO_CANON, ArraySamples, ferplus_majority, read_fer2013,
    read_fer2013_rowwise, read_ferplus, write_fer2013, write_ferplus,
)
from fer_utils.data.formats.ferg import FERG_CHARACTERS, FERG_TO_CANON, read_ferg, write_ferg
from fer_utils.data.formats.jaffe import JAFFE_POSERS, JAFFE_TO_CANON, read_jaffe, write_jaffe
from fer_utils.data.formats.oulu import OULU_TO_CANON, read_oulu, write_oulu
from fer_utils.data.formats.rafdb import RAFDB_TO_CANON, read_rafdb, write_rafdb
from fer_utils.labels import FER2013_TO_CANON

#: The formats with a reader and a writer here (the registry of datasets, with their label maps, layouts and
#: splits, is :data:`fer_utils.data.sources.DATASETS`).
FORMATS = ("fer2013", "ferplus", "rafdb", "affectnet", "ckplus", "oulu", "jaffe", "ferg", "affwild2")

__all__ = [
    "FormatError", "SampleList", "ArraySamples", "FormatDataset", "collate_samples", "read_image_file",
    "make_sample", "ferplus_majority", "read_fer2013_rowwise", "FORMATS",
    *[f"{verb}_{name}" for name in FORMATS for verb in ("read", "write")],
    "FER2013_TO_CANON", "FERPLUS_TO_CANON", "FERPLUS_COLUMNS", "RAFDB_TO_CANON", "AFFECTNET_TO_CANON",
    "AFFECTNET_DROPPED", "CKPLUS_TO_CANON", "OULU_TO_CANON", "JAFFE_TO_CANON", "JAFFE_POSERS", "FERG_TO_CANON",
    "FERG_CHARACTERS", "AFFWILD2_TO_CANON", "AFFWILD2_OTHER", "ABAW1_AUS", "ABAW_EXPR_NAMES", "FER_USAGES",
]
