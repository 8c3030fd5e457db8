"""Readers and writers of the folder and sequence layouts: CK+, Oulu-CASIA, JAFFE, FERG,
Aff-Wild2, and the torch Dataset over every reader (fer_utils.data.formats).

Same approach as tests/test_formats.py: round trips on small hand-made samples, the
exported trees compared with the documented layouts, bad input named by file and line.
"""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from test_formats import make_samples, raises_format_error, tree
from torch.utils.data import DataLoader

from fer_utils.data import formats as F
from fer_utils.labels import ABAW_AUS, AUS


# ---------------------------------------------------------------------------
# CK+
# ---------------------------------------------------------------------------

def ck_samples():
    seq = make_samples([6, 6, 6], size=40, identities=[10, 10, 10], seed=1)
    for k, s in enumerate(seq):
        s.update(sequence="a", frame=k + 1)
    unlabelled = make_samples([None, None], size=40, identities=[10, 10], seed=2)
    for k, s in enumerate(unlabelled):
        s.update(sequence="b", frame=k + 1, landmarks=None)
    contempt = make_samples([7], size=40, identities=[5], seed=3)
    return seq + unlabelled + contempt


def test_ckplus_roundtrip_layout_and_number_format(tmp_path, capsys):
    samples = ck_samples()
    F.write_ckplus(samples, tmp_path)
    assert tree(tmp_path) == sorted([
        "cohn-kanade-images/S010/001/S010_001_00000001.png", "cohn-kanade-images/S010/001/S010_001_00000002.png",
        "cohn-kanade-images/S010/001/S010_001_00000003.png", "cohn-kanade-images/S010/002/S010_002_00000001.png",
        "cohn-kanade-images/S010/002/S010_002_00000002.png", "cohn-kanade-images/S005/001/S005_001_00000001.png",
        "Emotion/S010/001/S010_001_00000003_emotion.txt", "Emotion/S005/001/S005_001_00000001_emotion.txt",
        "FACS/S010/001/S010_001_00000003_facs.txt", "FACS/S010/002/S010_002_00000002_facs.txt",
        "FACS/S005/001/S005_001_00000001_facs.txt",
        "Landmarks/S010/001/S010_001_00000001_landmarks.txt", "Landmarks/S010/001/S010_001_00000002_landmarks.txt",
        "Landmarks/S010/001/S010_001_00000003_landmarks.txt", "Landmarks/S005/001/S005_001_00000001_landmarks.txt"])
    assert (tmp_path / "Emotion/S010/001/S010_001_00000003_emotion.txt").read_text() == "   7.0000000e+00\n"
    assert (tmp_path / "Emotion/S005/001/S005_001_00000001_emotion.txt").read_text() == "   2.0000000e+00\n"
    facs = (tmp_path / "FACS/S010/001/S010_001_00000003_facs.txt").read_text().splitlines()
    assert all(re.fullmatch(r"( {3}\d\.\d{7}e[+-]\d\d){2}", line) for line in facs)
    lm = (tmp_path / "Landmarks/S010/001/S010_001_00000001_landmarks.txt").read_text().splitlines()
    assert len(lm) == 68 and all(re.fullmatch(r"( +-?\d\.\d{7}e[+-]\d\d){2}", line) for line in lm)
    (tmp_path / "cohn-kanade-images/S010/.DS_Store").write_text("junk")
    capsys.readouterr()
    data = F.read_ckplus(tmp_path)
    assert "sequences without Emotion file=1" in capsys.readouterr().out
    assert len(data) == 6
    s5, *s10 = data  # S005 sorts first
    assert s5["label"] == 7 and s5["native_label"] == 2 and s5["identity"] == 5
    assert [r["label"] for r in s10] == [None, None, 6, None, None]
    assert [r["sequence_label"] for r in s10] == [6, 6, 6, None, None]
    for r, s in zip(s10 + [s5], samples):
        assert np.array_equal(F.read_image_file(r["image"]), s["image"])  # PNG is lossless
        if s["landmarks"] is None:
            assert r["landmarks"] is None
        else:
            assert np.allclose(r["landmarks"], s["landmarks"], atol=1e-4)
    peak = s10[2]
    assert np.array_equal(peak["au_presence"], samples[2]["au_presence"])
    assert np.allclose(peak["aus"], samples[2]["aus"], atol=0.1)
    assert all(r["aus"] is None for r in s10[:2])
    assert F.read_ckplus(tmp_path, apex_frames=3, verbose=False)[1]["label"] == 6


def test_ckplus_bad_inputs(tmp_path):
    F.write_ckplus(ck_samples(), tmp_path)
    emo = tmp_path / "Emotion/S010/001/S010_001_00000003_emotion.txt"
    emo.write_text("   9.0000000e+00\n")
    ei = raises_format_error(lambda: F.read_ckplus(tmp_path), "S010_001_00000003_emotion.txt", "line 1")
    emo.write_text("   7.0000000e+00\n")
    lm = tmp_path / "Landmarks/S010/001/S010_001_00000002_landmarks.txt"
    lm.write_text("\n".join(lm.read_text().splitlines()[:60]) + "\n")
    ei = raises_format_error(lambda: F.read_ckplus(tmp_path), "S010_001_00000002_landmarks.txt", "line 61")


# ---------------------------------------------------------------------------
# Oulu-CASIA, JAFFE, FERG
# ---------------------------------------------------------------------------

def test_oulu_roundtrip_layout(tmp_path, capsys):
    samples = make_samples([4] * 4 + [1] * 2 + [0], size=64, gray=False, identities=[1, 1, 1, 1, 1, 1, 2])
    F.write_oulu(samples, tmp_path)
    assert "neutral" in capsys.readouterr().out  # Oulu has no neutral folder: counted
    root = "OriginalImg/VL/Strong/P001/"
    assert tree(tmp_path) == [root + "Anger/000.jpeg", root + "Anger/001.jpeg"] + [
        root + f"Happiness/{k:03d}.jpeg" for k in range(4)]
    data = F.read_oulu(tmp_path)
    assert [r["sequence_label"] for r in data] == [1, 1, 4, 4, 4, 4]
    assert [r["label"] for r in data] == [1, 1, None, 4, 4, 4]  # last 3 frames are the apex
    assert all(r["identity"] == 1 and r["native_label"] in (None, "Anger", "Happiness") for r in data)
    assert np.abs(F.read_image_file(data[2]["image"]).astype(int) - samples[0]["image"]).mean() < 3


def test_jaffe_roundtrip_layout(tmp_path):
    samples = make_samples([1, 0, 1, 4], size=256, identities=[0, 0, 0, 12])
    F.write_jaffe(samples, tmp_path)
    (tmp_path / "README").write_text("ratings")
    assert tree(tmp_path) == ["AC.HA1.4.tiff", "KA.AN1.1.tiff", "KA.AN2.3.tiff", "KA.NE1.2.tiff", "README"]
    data = F.read_jaffe(tmp_path)
    assert [(r["poser"], r["label"], r["identity"]) for r in data] == [
        ("AC", 4, 12), ("KA", 1, 0), ("KA", 1, 0), ("KA", 0, 0)]
    assert np.array_equal(F.read_image_file(data[3]["image"]), samples[1]["image"])  # TIFF, grayscale
    (tmp_path / "KA.XX1.9.tiff").write_bytes((tmp_path / "KA.AN1.1.tiff").read_bytes())
    ei = raises_format_error(lambda: F.read_jaffe(tmp_path), "KA.XX1.9.tiff", "file name")


def test_ferg_roundtrip_layout(tmp_path):
    samples = make_samples([4, 4, 0, 2], size=32, gray=False, identities=[0, 0, 5, 9])
    F.write_ferg(samples, tmp_path, size=None)
    assert tree(tmp_path) == [
        "FERG_DB_256/aia/aia_joy/aia_joy_1.png", "FERG_DB_256/aia/aia_joy/aia_joy_2.png",
        "FERG_DB_256/char9/char9_disgust/char9_disgust_1.png", "FERG_DB_256/ray/ray_neutral/ray_neutral_1.png"]
    data = F.read_ferg(tmp_path)
    assert [(r["character"], r["label"], r["identity"]) for r in data] == [
        ("aia", 4, 0), ("aia", 4, 0), ("char9", 2, 9), ("ray", 0, 5)]
    assert np.array_equal(F.read_image_file(data[1]["image"]), samples[1]["image"])


# ---------------------------------------------------------------------------
# Aff-Wild2
# ---------------------------------------------------------------------------

def abaw_samples():
    samples = make_samples([0, 3, None, 6, 7, 4], size=112, gray=False)
    for k, s in enumerate(samples):
        s.update(video="vid1", frame=k + 1)
    samples[1]["image"] = None      # frame 2: no face found -> no JPEG
    samples[2]["valence"] = None    # -5,-5
    samples[3]["au_presence"] = None  # -1 row
    return samples


@pytest.mark.parametrize("edition, expected_dirs", [
    ("abaw3", ["Third ABAW Annotations/AU_Detection_Challenge/Train_Set",
               "Third ABAW Annotations/EXPR_Classification_Challenge/Train_Set",
               "Third ABAW Annotations/VA_Estimation_Challenge/Train_Set"]),
    ("abaw2", ["annotations/AU_Set/Train_Set", "annotations/EXPR_Set/Train_Set", "annotations/VA_Set/Train_Set"]),
    ("abaw1", ["annotations/AU_Set/Training_Set", "annotations/EXPR_Set/Training_Set",
               "annotations/VA_Set/Training_Set"]),
])
def test_affwild2_roundtrip_layouts_and_markers(tmp_path, edition, expected_dirs, capsys):
    samples = abaw_samples()
    F.write_affwild2(samples, tmp_path, edition=edition)
    assert "contempt written as EXPR -1" in capsys.readouterr().out
    assert tree(tmp_path) == sorted([f"cropped_aligned/vid1/{k:05d}.jpg" for k in (1, 3, 4, 5, 6)]
                                    + [f"{d}/vid1.txt" for d in expected_dirs])
    ann = {p.split("/")[-2]: (tmp_path / p / "vid1.txt").read_text().splitlines() for p in expected_dirs}
    expr = next(v for k, v in ann.items() if k.startswith("EXPR"))
    va = next(v for k, v in ann.items() if k.startswith("VA"))
    au = next(v for k, v in ann.items() if k.startswith("AU"))
    n_classes = 8 if edition == "abaw3" else 7
    assert expr == [",".join(F.ABAW_EXPR_NAMES[:n_classes]), "0", "3", "-1", "6", "-1", "4"]
    assert va[0] == "valence,arousal" and va[3] == "-5,-5" and len(va) == 7
    aus = F.ABAW1_AUS if edition == "abaw1" else ABAW_AUS
    assert au[0] == ",".join(f"AU{a}" for a in aus) and au[4] == ",".join(["-1"] * len(aus))
    capsys.readouterr()
    data = F.read_affwild2(tmp_path)
    out = capsys.readouterr().out
    assert "read_affwild2: kept 5 of 6 rows" in out
    assert data.skipped == {"annotation line without a face image": 1}
    assert data.masked == {"VA -5": 1, "EXPR -1": 2, "AU -1": 1}
    assert [r["frame"] for r in data] == [1, 3, 4, 5, 6]
    assert [r["label"] for r in data] == [0, None, 6, None, 4]
    assert data[1]["valence"] is None and data[0]["valence"] == pytest.approx(samples[0]["valence"])
    assert data[2]["au_presence"] is None
    mask = np.isin(AUS, aus)
    assert np.array_equal(data[0]["au_mask"], mask)
    assert np.array_equal(data[0]["au_presence"], samples[0]["au_presence"] & mask)
    assert data[0]["aus"] is None and data[0]["identity"] is None and data[0]["split"] == "train"
    assert np.abs(F.read_image_file(data[0]["image"]).astype(int) - samples[0]["image"]).mean() < 3


def test_affwild2_other_class_and_bad_inputs(tmp_path):
    F.write_affwild2(abaw_samples(), tmp_path, verbose=False)
    expr = tmp_path / "Third ABAW Annotations/EXPR_Classification_Challenge/Train_Set/vid1.txt"
    lines = expr.read_text().splitlines()
    lines[6] = "7"  # Other (ABAW3+), not contempt
    expr.write_text("\n".join(lines) + "\n")
    data = F.read_affwild2(tmp_path, verbose=False)
    assert data[-1]["frame"] == 6 and data[-1]["label"] is None and data[-1]["native_label"] == 7
    assert data[-1]["valence"] is not None and data.masked["EXPR 7 (Other)"] == 1
    only_expr = F.read_affwild2(tmp_path, tasks=("EXPR",), verbose=False)  # Other frame has nothing else
    assert [r["frame"] for r in only_expr] == [1, 4]
    assert only_expr.skipped == {"annotation line without a face image": 1,
                                 "frame with only -5/-1/Other markers": 3}
    expr.write_text("\n".join(lines[:5]) + "\n")  # 4 frame lines but frame 6 exists
    ei = raises_format_error(lambda: F.read_affwild2(tmp_path), "vid1.txt", "line 6")
    assert "00006.jpg" in str(ei.value)
    expr.write_text("\n".join(lines[:3] + ["2,3"] + lines[4:]) + "\n")
    ei = raises_format_error(lambda: F.read_affwild2(tmp_path), "EXPR_Classification_Challenge/Train_Set/vid1.txt", "line 4")
    expr.write_text("")
    ei = raises_format_error(lambda: F.read_affwild2(tmp_path), "vid1.txt", "line 1")


# ---------------------------------------------------------------------------
# torch Dataset over every reader
# ---------------------------------------------------------------------------

def test_format_dataset_feeds_a_dataloader_for_every_reader(tmp_path):
    exports = {
        "fer2013": (make_samples([0, 1, 2, 3]), {}),
        "ferplus": (make_samples([0, 1, 2, 7]), {}),
        "rafdb": (make_samples([0, 1, 2, 3], size=100, gray=False), {}),
        "affectnet": (make_samples([0, 1, 2, 7], size=32, gray=False), {}),
        "ckplus": (make_samples([1, 2, 3, 7], size=32), {}),
        "oulu": (make_samples([1, 2, 3, 4], size=32, gray=False), {}),
        "jaffe": (make_samples([0, 1, 2, 3], size=32), {"size": None}),
        "ferg": (make_samples([0, 1, 2, 3], size=32, gray=False), {"size": None}),
        "affwild2": (make_samples([0, 1, 2, 3], size=112, gray=False), {}),
    }
    for name, (samples, kw) in exports.items():
        root = getattr(F, f"write_{name}")(samples, tmp_path / name, verbose=False, **kw)
        data = getattr(F, f"read_{name}")(root, verbose=False)
        loader = DataLoader(F.FormatDataset(data), batch_size=2, num_workers=2,
                            collate_fn=F.collate_samples)
        batches = list(loader)
        assert sum(len(b["source"]) for b in batches) == len(data), name
        labelled = [b for b in batches if isinstance(b["label"], torch.Tensor)]
        assert labelled, name
        assert batches[0]["image"].dtype == torch.uint8, name
        if name == "affwild2":
            assert batches[0]["valence"].dtype == torch.float64 and batches[0]["aus"] is None
