"""The readers on what real copies of the datasets contain (fer_utils.data.formats).

Each test exports a small tree with a writer, spoils it the way real copies are
spoiled (macOS ``._*`` and ``.DS_Store``, Windows ``Thumbs.db`` / ``desktop.ini``,
label files re-saved in another encoding or with other line ends, duplicated
entries, partial extractions, a folder where a file belongs and the reverse) and
checks that the reader either reads the same samples and counts what it left out,
or raises a FormatError naming the file.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from test_formats import ferplus_samples, make_samples
from test_formats_folders import abaw_samples, ck_samples

from fer_utils.data import formats as F

READERS = ["fer2013", "ferplus", "ferplus_folders", "rafdb", "affectnet", "ckplus", "oulu", "jaffe", "ferg",
           "affwild2"]
#: readers that walk folders (the others take the image list from a label file)
WALKERS = {"ckplus", "oulu", "jaffe", "ferg", "affwild2"}
#: readers of text label files
TEXT_READERS = ["fer2013", "ferplus", "ferplus_folders", "rafdb", "affectnet", "ckplus", "affwild2"]


def export(name: str, root: Path) -> Path:
    """A small export in the format ``name``; returns the path its reader takes."""
    if name == "fer2013":
        return F.write_fer2013(make_samples([0, 1, 2, 3]), root, verbose=False).parent
    if name in ("ferplus", "ferplus_folders"):
        layout = "folders" if name == "ferplus_folders" else "csv"
        return F.write_ferplus(ferplus_samples(), root, layout=layout, verbose=False)
    if name == "rafdb":
        return F.write_rafdb(make_samples([0, 6, 4, 1], size=32, gray=False), root, size=None, verbose=False)
    if name == "affectnet":
        samples = make_samples([0, 4, 7, 1], size=32, gray=False)
        samples[1]["split"] = "val"
        return F.write_affectnet(samples, root, verbose=False)
    if name == "ckplus":
        return F.write_ckplus(ck_samples(), root, verbose=False)
    if name == "oulu":
        samples = make_samples([4] * 4 + [1] * 2, size=32, gray=False, identities=[1] * 6)
        return F.write_oulu(samples, root, verbose=False)
    if name in ("jaffe", "ferg"):
        samples = make_samples([1, 0, 1, 4], size=32, identities=[0, 0, 0, 5])
        return getattr(F, f"write_{name}")(samples, root, size=None, verbose=False)
    return F.write_affwild2(abaw_samples(), root, verbose=False)


def read(name: str, path: Path, **kw):
    return getattr(F, "read_" + name.split("_")[0])(path, verbose=False, **kw)


def signature(data) -> list[tuple]:
    """What a reader returned, sample by sample (source = file and line)."""
    return [(s["source"], s["label"], s["native_label"], s["valence"]) for s in data]


def files(root: Path, *suffixes: str) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in suffixes)


# ---------------------------------------------------------------------------
# OS artefacts
# ---------------------------------------------------------------------------

APPLEDOUBLE = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        \x00\x02\x00\x00\x00\t\xff\xfe\x80" + bytes(40)


def add_os_artefacts(root: Path) -> None:
    """What a Mac (``._*``, ``.DS_Store``, ``__MACOSX/``) and Windows Explorer leave in every folder."""
    for folder in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        for f in [p for p in folder.iterdir() if p.is_file()]:
            (folder / f"._{f.name}").write_bytes(APPLEDOUBLE)
        (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + bytes(60))
        (folder / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(60))
        (folder / "desktop.ini").write_text("[.ShellClassInfo]\r\nIconResource=x\r\n")
    (root / "__MACOSX" / root.name).mkdir(parents=True)
    (root / "__MACOSX" / root.name / "._x").write_bytes(APPLEDOUBLE)


@pytest.mark.parametrize("name", READERS)
def test_os_artefacts_are_ignored_and_counted(tmp_path, name):
    path = export(name, tmp_path / "d")
    clean = signature(read(name, path))
    add_os_artefacts(tmp_path / "d")
    data = read(name, path)
    assert signature(data) == clean  # no ._* frame, no crash, same samples
    assert not any("._" in s["source"] for s in data)
    if name in WALKERS:
        assert data.ignored["._* (macOS AppleDouble)"] > 0 and data.ignored[".DS_Store"] > 0, data.ignored
        assert data.ignored["Thumbs.db"] > 0 and data.ignored["desktop.ini"] > 0, data.ignored
        assert "ignored files" in data.report() and "._* (macOS AppleDouble)=" in data.report()


def test_an_appledouble_file_given_as_the_label_file_names_itself(tmp_path):
    export("rafdb", tmp_path)
    fake = tmp_path / "EmoLabel" / "._list_patition_label.txt"
    fake.write_bytes(APPLEDOUBLE)
    with pytest.raises(F.FormatError, match=r"\._list_patition_label\.txt, line 1 .*NUL byte"):
        F.read_rafdb(fake)


# ---------------------------------------------------------------------------
# Encodings, BOMs and line ends
# ---------------------------------------------------------------------------

def reencode(root: Path, encoding: str, newline: str) -> int:
    """Re-save every .csv/.txt under ``root`` as a Windows or Mac tool would; returns how many."""
    paths = files(root, ".csv", ".txt")
    for p in paths:
        p.write_bytes(p.read_text().replace("\n", newline).encode(encoding))
    return len(paths)


@pytest.mark.parametrize("encoding, newline", [
    ("utf-8-sig", "\n"), ("utf-16", "\r\n"), ("utf-16-be", "\n"), ("utf-8", "\r\n"), ("utf-8", "\r"),
])
@pytest.mark.parametrize("name", TEXT_READERS)
def test_label_files_in_other_encodings_and_line_ends_read_the_same(tmp_path, name, encoding, newline):
    path = export(name, tmp_path)
    clean = signature(read(name, path))
    if encoding == "utf-16-be":  # with its BOM, as Notepad's "UTF-16 BE" writes it
        for p in files(tmp_path, ".csv", ".txt"):
            p.write_bytes(b"\xfe\xff" + p.read_text().encode("utf-16-be"))
    else:
        assert reencode(tmp_path, encoding, newline) > 0
    assert signature(read(name, path)) == clean


def test_cp1252_label_file_is_read_and_noted(tmp_path):
    export("rafdb", tmp_path)
    images = tmp_path / "Image" / "aligned"
    (images / "train_00001_aligned.jpg").rename(images / "train_café_aligned.jpg")
    label_file = tmp_path / "EmoLabel" / "list_patition_label.txt"
    text = label_file.read_text().replace("train_00001.jpg", "train_café.jpg")
    label_file.write_bytes(text.replace("\n", "\r\n").encode("cp1252"))
    data = F.read_rafdb(tmp_path, verbose=False)
    assert data[0]["name"] == "train_café.jpg" and data[0]["label"] == 0
    assert any("decoded as cp1252" in n for n in data.notes)
    assert "cp1252" in data.report()


@pytest.mark.parametrize("bad, where", [(b"\x81", "line 2 (byte"), (b"\x00", "line 2 (byte")])
def test_undecodable_label_file_names_file_and_line(tmp_path, bad, where):
    export("rafdb", tmp_path)
    label_file = tmp_path / "EmoLabel" / "list_patition_label.txt"
    lines = label_file.read_bytes().splitlines(keepends=True)
    label_file.write_bytes(lines[0] + b"train_0000" + bad + b".jpg 7\n" + b"".join(lines[1:]))
    with pytest.raises(F.FormatError) as ei:
        F.read_rafdb(tmp_path)
    assert "list_patition_label.txt" in str(ei.value) and where in str(ei.value)


def test_fer2013_csv_saved_as_utf16_by_excel_reads_the_same(tmp_path):
    path = F.write_fer2013(make_samples([0, 1, 2]), tmp_path, verbose=False)
    clean = F.read_fer2013(path, verbose=False)
    path.write_bytes(path.read_text().replace("\n", "\r\n").encode("utf-16"))
    assert np.array_equal(F.read_fer2013(path, verbose=False).images, clean.images)


# ---------------------------------------------------------------------------
# Two entries for one image
# ---------------------------------------------------------------------------

def duplicate_line(path: Path, line: int, change=None) -> None:
    """Append a copy of ``line`` (1-based), optionally changed by ``change(fields)``."""
    lines = path.read_text().splitlines()
    copy = lines[line - 1]
    if change is not None:
        sep = " " if path.suffix == ".txt" else ","
        copy = sep.join(change(copy.split(sep)))
        assert copy != lines[line - 1]
    path.write_text("\n".join(lines + [copy]) + "\n")


def set_field(i: int, value: str):
    return lambda fields: fields[:i] + [value] + fields[i + 1:]


# reader, label file (relative to the export), line to repeat, a change that gives another label
DUPLICATES = [
    ("rafdb", "EmoLabel/list_patition_label.txt", 1, set_field(1, "3")),
    ("affectnet", "Manually_Annotated_file_lists/training.csv", 2, set_field(6, "5")),  # expression
    ("ferplus_folders", "FER2013Train/label.csv", 1, lambda f: [f[0], "10", "0"] + f[3:]),  # votes
]


@pytest.mark.parametrize("name, label_file, line, change", DUPLICATES)
def test_repeated_entry_with_the_same_label_is_read_once(tmp_path, name, label_file, line, change):
    path = export(name, tmp_path)
    n = len(read(name, path))
    duplicate_line(tmp_path / label_file, line)
    data = read(name, path)
    assert len(data) == n and data.skipped["duplicate entry (same image, same label)"] == 1


@pytest.mark.parametrize("name, label_file, line, change", DUPLICATES)
def test_image_listed_with_different_labels_is_dropped_and_named(tmp_path, name, label_file, line, change):
    path = export(name, tmp_path)
    n = len(read(name, path))
    duplicate_line(tmp_path / label_file, line, change)
    data = read(name, path)
    assert len(data) == n - 1
    assert data.skipped["image listed with different labels (all its entries)"] == 2
    last = len((tmp_path / label_file).read_text().splitlines())
    assert any(f"{label_file}:line {line} vs " in note and f":line {last}" in note for note in data.notes), data.notes


def test_affwild2_video_in_two_splits(tmp_path):
    export("affwild2", tmp_path)
    top = tmp_path / "Third ABAW Annotations"
    for task in top.iterdir():
        shutil.copytree(task / "Train_Set", task / "Validation_Set")
    data = read("affwild2", tmp_path)
    assert len(data) == 5 and data.skipped["duplicate entry (same image, same label)"] == 5
    expr = top / "EXPR_Classification_Challenge" / "Validation_Set" / "vid1.txt"
    lines = expr.read_text().splitlines()
    expr.write_text("\n".join(lines[:1] + ["5"] + lines[2:]) + "\n")  # frame 1: neutral -> sadness
    data = read("affwild2", tmp_path)
    assert [s["frame"] for s in data] == [3, 4, 5, 6]
    assert data.skipped["image listed with different labels (all its entries)"] == 2


def test_affwild2_two_editions_side_by_side(tmp_path):
    F.write_affwild2(abaw_samples(), tmp_path, verbose=False)
    F.write_affwild2(abaw_samples(), tmp_path, annotations_dir="5th_ABAW_Annotations", verbose=False)
    with pytest.raises(F.FormatError, match="annotations='<folder name>'") as ei:
        F.read_affwild2(tmp_path)
    assert "Third ABAW Annotations" in str(ei.value) and "5th_ABAW_Annotations" in str(ei.value)
    data = F.read_affwild2(tmp_path, annotations="5th_ABAW_Annotations", verbose=False)
    assert len(data) == 5 and all("5th_ABAW_Annotations" in s["source"] for s in data)


def test_ckplus_emotion_files_that_disagree(tmp_path):
    export("ckplus", tmp_path)
    folder = tmp_path / "Emotion" / "S010" / "001"
    (folder / "S010_001_00000003_emotion.txt").write_text("   7.0000000e+00\n")
    (folder / "S010_001_00000002_emotion.txt").write_text("   5.0000000e+00\n")
    data = read("ckplus", tmp_path)
    assert all(s["sequence_label"] is None for s in data if s["subject"] == "S010")
    assert data.masked["sequences with Emotion files that disagree"] == 1
    assert any(str(folder) in n for n in data.notes)


# ---------------------------------------------------------------------------
# Partial extractions
# ---------------------------------------------------------------------------

def test_ckplus_label_without_images_is_counted(tmp_path):
    export("ckplus", tmp_path)
    shutil.rmtree(tmp_path / "cohn-kanade-images" / "S005")
    data = read("ckplus", tmp_path)
    assert data.skipped == {"Emotion file whose sequence has no images": 1}
    assert any("S005" in n for n in data.notes) and "S005" not in {s["subject"] for s in data}
    (tmp_path / "cohn-kanade-images" / "S010" / "001" / "S010_001_00000003.png").unlink()  # the peak frame
    data = read("ckplus", tmp_path)
    assert data.masked["sequences whose labelled (peak) frame image is missing"] == 1
    assert all(s["label"] is None for s in data)


def test_ckplus_without_emotion_and_landmark_trees(tmp_path):
    export("ckplus", tmp_path)
    shutil.rmtree(tmp_path / "Emotion")
    shutil.rmtree(tmp_path / "Landmarks")
    data = read("ckplus", tmp_path)
    assert len(data) == 6 and all(s["label"] is None and s["landmarks"] is None for s in data)
    assert data.masked["sequences without Emotion file"] == 3
    assert data.masked["frames without Landmarks file"] == 6
    assert any("Emotion missing" in n for n in data.notes)


# reader, what to remove (relative to the export), then either ("error", text in the message)
# or ("note", text in a note) or ("skipped", reason counted)
PARTIAL = [
    ("fer2013", "fer2013.csv", "error", "fer2013.csv, icml_face_data.csv or train.csv + test.csv"),
    ("ferplus", "fer2013.csv", "error", "fer2013.csv next to fer2013new.csv"),
    ("ferplus_folders", "FER2013Valid", "note", "FER2013Valid missing"),
    ("ferplus_folders", "FER2013Valid/label.csv", "error", "label.csv, path: expected a file"),
    ("rafdb", "EmoLabel", "error", "list_patition_label.txt, path: expected the RAF-DB label file"),
    ("rafdb", "Image/aligned", "error", "aligned, path: expected a folder"),
    ("affectnet", "Manually_Annotated_file_lists/validation.csv", "note", "validation.csv missing"),
    ("affectnet", "Manually_Annotated_Images", "error", "Manually_Annotated_Images, path: expected a folder"),
    ("oulu", "OriginalImg/VL/Strong", "error", "Strong, path: expected a folder"),
    ("affwild2", "cropped_aligned", "error", "cropped_aligned, path: expected a folder"),
    ("affwild2", "cropped_aligned/vid1", "skipped", "annotation line of a video without image folder"),
    ("affwild2", "Third ABAW Annotations/VA_Estimation_Challenge", "note", "no VA train annotation folder"),
]


@pytest.mark.parametrize("name, remove, kind, text", PARTIAL)
def test_partial_extraction(tmp_path, name, remove, kind, text):
    path = export(name, tmp_path)
    target = tmp_path / remove
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    if kind == "error":
        with pytest.raises(F.FormatError, match="expected") as ei:
            read(name, path)
        assert text in str(ei.value)
    else:
        data = read(name, path)
        assert (any(text in n for n in data.notes) if kind == "note" else data.skipped[text] > 0), data.report()


def test_ferplus_split_folder_or_its_label_file(tmp_path):
    export("ferplus_folders", tmp_path)
    whole = signature(read("ferplus", tmp_path))
    valid = signature(read("ferplus", tmp_path / "FER2013Valid"))
    assert valid == signature(read("ferplus", tmp_path / "FER2013Valid" / "label.csv"))
    assert valid and set(valid) < set(whole)


def test_fer2013_kaggle_pair_with_test_csv_missing_is_noted(tmp_path):
    samples = make_samples([0, 1, 2])
    samples[2]["split"] = "test"
    F.write_fer2013(samples, tmp_path, variant="kaggle", verbose=False)
    (tmp_path / "test.csv").unlink()
    data = F.read_fer2013(tmp_path, verbose=False)
    assert len(data) == 2 and any("only train.csv" in n for n in data.notes)


def test_affectnet_split_asked_for_but_missing(tmp_path):
    export("affectnet", tmp_path)
    (tmp_path / "Manually_Annotated_file_lists" / "validation.csv").unlink()
    with pytest.raises(F.FormatError, match="validation.csv inside"):
        F.read_affectnet(tmp_path, split="val")


def test_empty_sequence_folders_are_counted(tmp_path):
    export("oulu", tmp_path)
    (tmp_path / "OriginalImg/VL/Strong/P001/Fear").mkdir()
    assert read("oulu", tmp_path).skipped == {"class folder without frames": 1}
    export("ckplus", tmp_path / "ck")
    (tmp_path / "ck/cohn-kanade-images/S010/003").mkdir()
    assert read("ckplus", tmp_path / "ck").skipped == {"sequence folder without PNG frames": 1}


def test_stray_files_in_label_and_frame_folders_are_counted(tmp_path):
    export("ckplus", tmp_path)
    (tmp_path / "Emotion/S010/001/notes.txt").write_text("checked by RA")
    assert read("ckplus", tmp_path).ignored == {"not *_emotion.txt": 1}
    export("affwild2", tmp_path / "aw")
    shutil.copy(tmp_path / "aw/cropped_aligned/vid1/00001.jpg", tmp_path / "aw/cropped_aligned/vid1/00000.jpg")
    (tmp_path / "aw/cropped_aligned/vid1/README.md").write_text("x")
    data = read("affwild2", tmp_path / "aw")
    assert data.ignored == {"frame 00000.jpg (frames are numbered from 1)": 1, "not .jpg": 1}
    assert [s["frame"] for s in data] == [1, 3, 4, 5, 6]


# ---------------------------------------------------------------------------
# A folder where a file belongs, and a file where a folder belongs
# ---------------------------------------------------------------------------

#: a file each reader reads (a label file, or an image of a folder layout)
READ_FILE = {
    "fer2013": "fer2013.csv", "ferplus": "fer2013new.csv", "ferplus_folders": "FER2013Train/label.csv",
    "rafdb": "EmoLabel/list_patition_label.txt", "affectnet": "Manually_Annotated_file_lists/training.csv",
    "ckplus": "Emotion/S010/001/S010_001_00000003_emotion.txt", "oulu": "OriginalImg/VL/Strong/P001/Anger/000.jpeg",
    "jaffe": "KA.AN1.1.tiff", "ferg": "FERG_DB_256/aia/aia_anger/aia_anger_1.png",
    "affwild2": "Third ABAW Annotations/EXPR_Classification_Challenge/Train_Set/vid1.txt",
}


@pytest.mark.parametrize("name", READERS)
def test_folder_where_a_file_belongs(tmp_path, name):
    """Either a FormatError naming it, or it is counted as ignored (and nothing crashes)."""
    path = export(name, tmp_path)
    target = tmp_path / READ_FILE[name]
    target.unlink()
    target.mkdir()
    (target / "inner.txt").write_text("x")
    try:
        data = read(name, path)
    except F.FormatError as exc:
        assert target.name in str(exc) and "folder" in str(exc)
    else:
        assert data.ignored.get("folder among files") == 1, data.report()


@pytest.mark.parametrize("name", READERS)
def test_file_where_a_folder_belongs(tmp_path, name):
    """Given one file of the export instead of its root: a FormatError naming that file."""
    export(name, tmp_path)
    image = next((p for p in sorted(tmp_path.rglob("*")) if p.suffix in (".png", ".jpg", ".jpeg", ".tiff")),
                 tmp_path / "notes.txt")
    if name in ("fer2013", "ferplus"):  # no images: a stray binary file instead
        image.write_bytes(APPLEDOUBLE)
    with pytest.raises(F.FormatError) as ei:
        read(name, image)
    assert image.name in str(ei.value) and "expected" in str(ei.value)


def test_an_image_path_that_is_a_folder(tmp_path):
    export("rafdb", tmp_path)
    image = tmp_path / "Image/aligned/train_00002_aligned.jpg"
    image.unlink()
    image.mkdir()
    with pytest.raises(F.FormatError, match=r"list_patition_label.txt, line 2: .*got 'a folder'"):
        F.read_rafdb(tmp_path)


def test_report_is_printed_by_default_and_lists_every_kind(tmp_path, capsys):
    export("jaffe", tmp_path)
    (tmp_path / "README").write_text("ratings")
    (tmp_path / ".DS_Store").write_bytes(bytes(8))
    data = F.read_jaffe(tmp_path)
    out = capsys.readouterr().out.strip()
    assert out == data.report() == "read_jaffe: kept 4 of 4 rows; ignored files .DS_Store=1, not .tiff/.tif=1"
