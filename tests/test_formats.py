"""Readers and writers of the real dataset layouts (fer_utils.data.formats).

Every writer is round-tripped through its reader on small hand-made samples,
the exported trees are compared with the documented layouts file by file, and
each kind of bad input must raise a FormatError naming the file and the line.
This file: the label maps, FER2013, FER+, RAF-DB and AffectNet; the folder and
sequence layouts are in test_formats_folders.py, damaged real-world copies in
test_formats_robust.py.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fer_utils.data import formats as F
from fer_utils.labels import AUS, CLASSES


# ---------------------------------------------------------------------------
# hand-made samples (same fields as SynthFaces items)
# ---------------------------------------------------------------------------

def smooth_image(rng: np.random.Generator, size: int, gray: bool) -> np.ndarray:
    """A smooth image (JPEG keeps it close) with a random offset and slope."""
    y, x = np.mgrid[0:size, 0:size] / size
    chans = [40 + 150 * (a * x + (1 - a) * y) + rng.integers(0, 50) for a in rng.random(1 if gray else 3)]
    img = np.stack(chans, -1).clip(0, 255).astype(np.uint8)
    return img[..., 0] if gray else img


def make_samples(labels, size=48, gray=True, seed=0, identities=None) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for i, label in enumerate(labels):
        aus = np.zeros(len(AUS), np.float32)
        on = rng.choice(len(AUS), 3, replace=False)
        aus[on] = rng.choice([0.2, 0.4, 0.6, 0.8, 1.0], 3)
        out.append({
            "image": rng.integers(0, 256, (size, size) if gray else (size, size, 3), dtype=np.uint8)
            if size <= 48 else smooth_image(rng, size, gray),
            "label": label, "aus": aus, "au_presence": aus > 0,
            "valence": float(np.round(rng.uniform(-1, 1), 4)), "arousal": float(np.round(rng.uniform(-1, 1), 4)),
            "landmarks": rng.uniform(0, size, (68, 2)).astype(np.float32),
            "identity": int(identities[i]) if identities is not None else i % 3, "index": i,
        })
    return out


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def assert_error(excinfo, filename: str, where: str) -> None:
    msg = str(excinfo.value)
    assert filename in msg, msg
    assert where in msg, msg
    assert "expected" in msg, msg


def raises_format_error(call, filename: str, where: str):
    """``call()`` raises a FormatError naming ``filename`` and ``where`` and what was expected."""
    with pytest.raises(F.FormatError) as ei:
        call()
    assert_error(ei, filename, where)
    return ei


# ---------------------------------------------------------------------------
# label maps
# ---------------------------------------------------------------------------

def test_label_maps_cover_native_ids_and_map_to_canonical():
    expected_keys = {
        "fer2013": set(range(7)), "ferplus": set(F.FERPLUS_COLUMNS[:8]), "rafdb": set(range(1, 8)),
        "affectnet": set(range(8)), "ckplus": set(range(8)),
        "oulu": {"Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise"},
        "jaffe": {"NE", "AN", "DI", "FE", "HA", "SA", "SU"},
        "ferg": {"anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise"},
        "affwild2": set(range(7)),
    }
    from fer_utils.data.sources import DATASETS

    label_maps = {name: spec.label_map for name, spec in DATASETS.items()}
    assert set(label_maps) == set(expected_keys) == set(F.FORMATS)
    assert all(callable(getattr(F, f"{verb}_{name}")) for name in F.FORMATS for verb in ("read", "write"))
    for name, mapping in label_maps.items():
        assert set(mapping) == expected_keys[name], name
        assert len(set(mapping.values())) == len(mapping), name  # one native id per class
        assert set(mapping.values()) <= set(range(len(CLASSES))), name
    assert F.FER2013_TO_CANON[6] == CLASSES.index("neutral") and F.FER2013_TO_CANON[0] == 1
    assert F.RAFDB_TO_CANON[1] == CLASSES.index("surprise") and F.RAFDB_TO_CANON[7] == 0
    assert F.CKPLUS_TO_CANON[2] == CLASSES.index("contempt")
    assert F.AFFECTNET_TO_CANON[1] == CLASSES.index("happiness") and set(F.AFFECTNET_DROPPED) == {8, 9, 10}
    assert F.FERG_TO_CANON["joy"] == CLASSES.index("happiness")
    assert F.AFFWILD2_OTHER not in F.AFFWILD2_TO_CANON  # 7 = Other, not contempt


# ---------------------------------------------------------------------------
# FER2013
# ---------------------------------------------------------------------------

def test_fer2013_roundtrip_layout_and_missing_fields(tmp_path):
    samples = make_samples([0, 1, 2, 3, 4, 5, 6, 4])
    samples[0]["image"][:] = 0  # a blank image, as in the real file
    for s, u in zip(samples, ["train"] * 6 + ["val", "test"]):
        s["split"] = u
    out = F.write_fer2013(samples, tmp_path)
    assert tree(tmp_path) == ["fer2013.csv"]
    lines = out.read_text().splitlines()
    assert lines[0] == "emotion,pixels,Usage"
    assert lines[1].startswith("6,0 0 0 ") and lines[1].endswith(",Training")  # neutral = FER2013 id 6
    data = F.read_fer2013(out)
    assert len(data) == 8 and data.images.shape == (8, 48, 48) and data.images.dtype == np.uint8
    for s, r in zip(samples, data):
        assert np.array_equal(r["image"], s["image"])
        assert r["label"] == s["label"]
        for key in ("valence", "arousal", "aus", "au_presence", "landmarks", "identity"):
            assert r[key] is None
    assert list(data.usage) == ["Training"] * 6 + ["PublicTest", "PrivateTest"]
    assert data[7]["native_label"] == 3 and data[7]["split"] == "test"
    assert data[2]["source"].endswith("fer2013.csv:line 4")
    slow = F.read_fer2013_rowwise(out)
    assert np.array_equal(slow.images, data.images) and np.array_equal(slow.labels, data.labels)


def test_fer2013_icml_and_kaggle_variants(tmp_path):
    samples = make_samples([1, 4, 0, 5])
    for s, u in zip(samples, ["train", "train", "val", "test"]):
        s["split"] = u
    icml = F.write_fer2013(samples, tmp_path / "icml", variant="icml")
    assert icml.name == "icml_face_data.csv"
    assert icml.read_text().splitlines()[0] == "emotion, Usage, pixels"  # leading spaces in the real file
    a = F.read_fer2013(tmp_path / "icml")
    assert [r["label"] for r in a] == [1, 4, 0, 5] and list(a.usage) == list(F.FER_USAGES[:1] * 2) + ["PublicTest", "PrivateTest"]
    assert np.array_equal(a.images, np.stack([s["image"] for s in samples]))
    F.write_fer2013(samples, tmp_path / "kaggle", variant="kaggle")
    assert tree(tmp_path / "kaggle") == ["test.csv", "train.csv"]
    assert (tmp_path / "kaggle/train.csv").read_text().splitlines()[0] == "emotion,pixels"
    assert (tmp_path / "kaggle/test.csv").read_text().splitlines()[0] == "pixels"
    k = F.read_fer2013(tmp_path / "kaggle")
    assert [r["label"] for r in k] == [1, 4, None, None]  # test.csv has no labels
    assert [r["split"] for r in k] == ["train", "train", "test", "test"]
    assert np.array_equal(k.images, a.images)
    # quoted pixel strings and CRLF line ends parse too
    text = (tmp_path / "kaggle/train.csv").read_text().splitlines()
    quoted = tmp_path / "quoted.csv"
    quoted.write_bytes(("\r\n".join([text[0]] + [f'{t.split(",")[0]},"{t.split(",")[1]}"' for t in text[1:]])
                        + "\r\n").encode())
    assert np.array_equal(F.read_fer2013(quoted).images, k.images[:2])


def _fer_file(tmp_path, rows):
    path = tmp_path / "fer2013.csv"
    path.write_text("emotion,pixels,Usage\n" + "".join(f"{e},{p},{u}\n" for e, p, u in rows))
    return path


GOOD = " ".join(["7"] * 2304)


@pytest.mark.parametrize("bad_row, expected_in_msg", [
    ((0, " ".join(["7"] * 2303), "Training"), "2304"),                      # wrong pixel count
    ((0, " ".join(["7"] * 2300 + ["1x", "2", "3", "4"]), "Training"), "non-integer"),  # malformed
    ((0, " ".join(["7"] * 2303 + ["256"]), "Training"), "0..255"),          # out of range
    ((9, GOOD, "Training"), "emotion id"),                                   # unknown label id
    ((0, GOOD, "Holdout"), "Usage"),                                         # unknown usage
])
def test_fer2013_bad_rows_name_file_and_line(tmp_path, bad_row, expected_in_msg):
    rows = [(0, GOOD, "Training")] * 3 + [bad_row] + [(0, GOOD, "Training")]
    path = _fer_file(tmp_path, rows)
    ei = raises_format_error(lambda: F.read_fer2013(path), "fer2013.csv", "line 5")
    assert expected_in_msg in str(ei.value)


def test_fer2013_bad_row_deep_in_a_big_file(tmp_path):
    rows = [(3, GOOD, "Training")] * 700
    rows[613] = (3, GOOD + " 8", "Training")
    ei = raises_format_error(lambda: F.read_fer2013(_fer_file(tmp_path, rows)), "fer2013.csv", "line 615 (data row 613)")


def test_fer2013_empty_file_and_wrong_field_count(tmp_path):
    empty = tmp_path / "fer2013.csv"
    empty.write_text("")
    ei = raises_format_error(lambda: F.read_fer2013(empty), "fer2013.csv", "line 1")
    path = _fer_file(tmp_path, [(0, GOOD, "Training"), (0, GOOD, "Training,extra")])
    ei = raises_format_error(lambda: F.read_fer2013(path), "fer2013.csv", "line 3")


# ---------------------------------------------------------------------------
# FER+
# ---------------------------------------------------------------------------

def ferplus_samples():
    samples = make_samples([4, 0, 7, 6, 5, 1, 2])
    votes = [
        [0, 10, 0, 0, 0, 0, 0, 0, 0, 0],   # happiness
        [6, 1, 1, 0, 0, 0, 0, 0, 2, 0],    # neutral
        [1, 0, 0, 0, 2, 0, 0, 7, 0, 0],    # contempt, 1-vote outlier removed
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 10],   # NF, empty image name (discarded row)
        [1, 1, 1, 1, 1, 1, 1, 1, 2, 0],    # unknown wins
        [0, 0, 0, 0, 4, 3, 3, 0, 0, 0],    # no >50% majority -> unknown
        [0, 0, 0, 0, 0, 9, 1, 0, 0, 0],    # disgust
    ]
    for i, (s, v) in enumerate(zip(samples, votes)):
        s["votes"] = np.array(v)
        s["split"] = ["train", "train", "val", "train", "test", "test", "test"][i]
    samples[3]["image_name"] = ""
    return samples


def test_ferplus_csv_roundtrip_majority_and_skips(tmp_path, capsys):
    samples = ferplus_samples()
    F.write_ferplus(samples, tmp_path)
    assert tree(tmp_path) == ["fer2013.csv", "fer2013new.csv"]
    lines = (tmp_path / "fer2013new.csv").read_text().splitlines()
    assert lines[0] == "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF"
    assert lines[1] == "Training,fer0000000.png,0,10,0,0,0,0,0,0,0,0"
    assert lines[4] == "Training,,0,0,0,0,0,0,0,0,0,10"
    capsys.readouterr()
    data = F.read_ferplus(tmp_path / "fer2013new.csv")
    assert "read_ferplus: kept 4 of 7 rows" in capsys.readouterr().out
    assert data.skipped == {"empty Image name": 1, "unknown": 1,
                            "no majority (>50% after removing 1-vote classes)": 1}
    assert [r["label"] for r in data] == [4, 0, 7, 2]
    assert [r["native_label"] for r in data] == ["happiness", "neutral", "contempt", "disgust"]
    assert [r["row"] for r in data] == [0, 1, 2, 6]  # joined by position
    for r, i in zip(data, [0, 1, 2, 6]):
        assert np.array_equal(r["image"], samples[i]["image"])
        assert np.array_equal(r["votes"], samples[i]["votes"])
    assert data[2]["split"] == "val" and data[3]["usage"] == "PrivateTest"
    assert data[2]["fer2013_label"] == 0  # contempt has no FER2013 class: written as Neutral there
    soft = data[2]["soft_label"]  # canonical order; the 1 neutral vote is removed as an outlier
    assert soft[0] == 0 and np.isclose(soft[7], 7 / 9) and np.isclose(soft[1], 2 / 9)
    assert data[0]["aus"] is None and data[0]["valence"] is None


def test_ferplus_folders_layout(tmp_path):
    samples = ferplus_samples()
    F.write_ferplus(samples, tmp_path, layout="folders", verbose=False)
    assert tree(tmp_path) == sorted([
        "FER2013Train/label.csv", "FER2013Train/fer0000000.png", "FER2013Train/fer0000001.png",
        "FER2013Valid/label.csv", "FER2013Valid/fer0000002.png",
        "FER2013Test/label.csv", "FER2013Test/fer0000004.png", "FER2013Test/fer0000005.png",
        "FER2013Test/fer0000006.png"])
    assert (tmp_path / "FER2013Train/label.csv").read_text().splitlines()[0] == "fer0000000.png,0,10,0,0,0,0,0,0,0,0"
    data = F.read_ferplus(tmp_path, verbose=False)
    assert sorted(r["label"] for r in data) == [0, 2, 4, 7]
    assert data.skipped == {"unknown": 1, "no majority (>50% after removing 1-vote classes)": 1}
    first = next(r for r in data if r["image_name"] == "fer0000000.png")
    assert np.array_equal(F.read_image_file(first["image"]), samples[0]["image"])


def test_ferplus_row_count_mismatch_and_bad_votes(tmp_path):
    F.write_ferplus(ferplus_samples(), tmp_path, verbose=False)
    new = tmp_path / "fer2013new.csv"
    lines = new.read_text().splitlines()
    new.write_text("\n".join(lines[:-1]) + "\n")
    ei = raises_format_error(lambda: F.read_ferplus(new), "fer2013new.csv", "6 data rows")
    lines[3] = lines[3].replace(",7,0,0", ",x,0,0")
    new.write_text("\n".join(lines) + "\n")
    ei = raises_format_error(lambda: F.read_ferplus(new), "fer2013new.csv", "line 4")


# ---------------------------------------------------------------------------
# RAF-DB
# ---------------------------------------------------------------------------

def test_rafdb_roundtrip_layout(tmp_path):
    samples = make_samples([0, 6, 4, 1, 7], size=100, gray=False)
    samples[3]["split"] = "test"
    F.write_rafdb(samples, tmp_path, verbose=False)
    assert tree(tmp_path) == [
        "EmoLabel/list_patition_label.txt", "Image/aligned/test_0001_aligned.jpg",
        "Image/aligned/train_00001_aligned.jpg", "Image/aligned/train_00002_aligned.jpg",
        "Image/aligned/train_00003_aligned.jpg"]
    assert (tmp_path / "EmoLabel/list_patition_label.txt").read_text().splitlines() == [
        "train_00001.jpg 7", "train_00002.jpg 1", "train_00003.jpg 4", "test_0001.jpg 6"]
    data = F.read_rafdb(tmp_path)
    assert [r["label"] for r in data] == [0, 6, 4, 1] and [r["split"] for r in data] == ["train"] * 3 + ["test"]
    for r, s in zip(data, samples):
        img = F.read_image_file(r["image"])
        assert img.shape == (100, 100, 3)
        assert np.abs(img.astype(int) - s["image"]).mean() < 3  # JPEG
        assert r["identity"] is None and r["valence"] is None and r["landmarks"] is None


def test_rafdb_bad_inputs(tmp_path):
    F.write_rafdb(make_samples([0, 6], size=100, gray=False), tmp_path)
    label_file = tmp_path / "EmoLabel/list_patition_label.txt"
    label_file.write_text("train_00001.jpg 7\ntrain_00002.jpg 8\n")
    ei = raises_format_error(lambda: F.read_rafdb(tmp_path), "list_patition_label.txt", "line 2")
    label_file.write_text("train_00001.jpg 7\ntrain_00002.jpg 1\ntrain_00009.jpg 1\n")
    ei = raises_format_error(lambda: F.read_rafdb(tmp_path), "list_patition_label.txt", "line 3")
    assert "train_00009_aligned.jpg" in str(ei.value)
    label_file.write_text("")
    ei = raises_format_error(lambda: F.read_rafdb(tmp_path), "list_patition_label.txt", "line 1")


# ---------------------------------------------------------------------------
# AffectNet
# ---------------------------------------------------------------------------

def test_affectnet_roundtrip_and_conventions(tmp_path, capsys):
    samples = make_samples([0, 4, 7, 1], size=64, gray=False)
    samples[1]["split"] = "val"
    samples[2]["valence"] = None
    F.write_affectnet(samples, tmp_path)
    files = tree(tmp_path)
    assert files[:2] == ["Manually_Annotated_Images/1/" + Path(files[0]).name,
                         "Manually_Annotated_Images/1/" + Path(files[1]).name]
    assert files[-2:] == ["Manually_Annotated_file_lists/training.csv", "Manually_Annotated_file_lists/validation.csv"]
    train = tmp_path / "Manually_Annotated_file_lists/training.csv"
    lines = train.read_text().splitlines()
    assert lines[0] == ("subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,"
                        "expression,valence,arousal")
    assert lines[1].split(",")[1:5] == ["0", "0", "64", "64"] and lines[1].split(",")[6] == "0"
    assert len(lines[1].split(",")[5].split(";")) == 136
    assert lines[2].endswith(",7,-2,-2")  # contempt, VA not annotated
    # add the documented odd rows: classes 8..10 and a NaN face box
    base = lines[1].split(",")
    extra = [",".join(base[:6] + [str(e)] + base[7:]) for e in (8, 9, 10)]
    extra.append(",".join([base[0], "", "", "", ""] + base[5:]))
    train.write_text("\n".join(lines + extra) + "\n")
    capsys.readouterr()
    data = F.read_affectnet(tmp_path)
    assert "read_affectnet: kept 4 of 8 rows" in capsys.readouterr().out
    assert data.skipped == {"expression 8 (None)": 1, "expression 9 (Uncertain)": 1,
                            "expression 10 (No-Face)": 1, "NaN/empty face box": 1}
    assert data.masked == {"valence/arousal -2 (not annotated)": 1}
    by_label = {r["label"]: r for r in data}
    assert sorted(by_label) == [0, 1, 4, 7]
    for s in samples:
        r = by_label[s["label"]]
        assert r["split"] == ("val" if s is samples[1] else "train")
        if s["valence"] is None:
            assert r["valence"] is None and r["arousal"] is None
        else:
            assert r["valence"] == pytest.approx(s["valence"]) and r["arousal"] == pytest.approx(s["arousal"])
        assert np.allclose(r["landmarks"], s["landmarks"], atol=0.006)
        assert r["face_box"] == (0, 0, 64, 64)
        assert np.abs(F.read_image_file(r["image"]).astype(int) - s["image"]).mean() < 3


def test_affectnet_bad_inputs(tmp_path):
    F.write_affectnet(make_samples([0, 4], size=32, gray=False), tmp_path)
    train = tmp_path / "Manually_Annotated_file_lists/training.csv"
    lines = train.read_text().splitlines()
    bad = lines[2].split(",")
    bad[6] = "11"
    train.write_text("\n".join(lines[:2] + [",".join(bad)]) + "\n")
    ei = raises_format_error(lambda: F.read_affectnet(tmp_path), "training.csv", "line 3")
    bad = lines[2].split(",")
    bad[5] = ";".join(bad[5].split(";")[:-2])
    train.write_text("\n".join(lines[:2] + [",".join(bad)]) + "\n")
    ei = raises_format_error(lambda: F.read_affectnet(tmp_path), "training.csv", "line 3")
    assert "136" in str(ei.value)
    (tmp_path / "Manually_Annotated_Images" / lines[1].split(",")[0]).unlink()
    train.write_text("\n".join(lines) + "\n")
    ei = raises_format_error(lambda: F.read_affectnet(tmp_path), "training.csv", "line 2")

