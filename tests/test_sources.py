"""fer_utils.data.sources.open_dataset: bad parameters refused at once; every layout that
data/README.md lists, written with the formats writers, found and read; real splits kept;
profile sizes applied (stratified, seeded)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fer_utils.data import formats as F
from fer_utils.profiles import PROFILES
from fer_utils.data.sources import DATASETS, check_dataset, open_dataset, subsample

RNG_IMAGES = np.random.default_rng(0).integers(0, 256, (64, 48, 48), dtype=np.uint8)


def samples(n: int, *, classes=range(7), split_cycle=("train",), identities: int = 6, size: int = 48,
            gray: bool = True) -> list[dict]:
    rng = np.random.default_rng(n)
    classes = list(classes)
    out = []
    for i in range(n):
        image = RNG_IMAGES[i % len(RNG_IMAGES)]
        if size != 48:
            image = np.kron(image[:25, :25], np.ones((4, 4), np.uint8))[:size, :size]
        if not gray:
            image = np.stack([image] * 3, -1)
        out.append({"image": image, "label": classes[i % len(classes)], "identity": i % identities,
                    "split": split_cycle[i % len(split_cycle)], "valence": float(rng.uniform(-1, 1)),
                    "arousal": float(rng.uniform(-1, 1)), "landmarks": rng.uniform(0, size, (68, 2)),
                    "usage": {"train": "Training", "val": "PublicTest", "test": "PrivateTest"}[
                        split_cycle[i % len(split_cycle)]]})
    return out


SPLIT3 = ("train",) * 6 + ("val", "test")


# --- the parameters are refused at once -----------------------------------------------

@pytest.mark.parametrize("dataset, root, error, message", [
    ("fer", None, ValueError, "unknown dataset 'fer'; this notebook accepts 'synthfaces', 'fer2013'"),
    (None, None, ValueError, "unknown dataset None"),
    ("rafdb", "/x", ValueError, "does not use dataset 'rafdb'; it accepts 'synthfaces', 'fer2013'"),
    ("fer2013", None, ValueError, "needs data_root: the folder holding fer2013.csv or icml_face_data.csv "
                                  "or train.csv \\+ test.csv"),
    ("fer2013", "", ValueError, "needs data_root"),
    ("fer2013", "/no/such/folder", FileNotFoundError, "'/no/such/folder' does not exist; for FER2013"),
    ("fer2013", 3, TypeError, "data_root must be a folder path"),
    ("synthfaces", "/data", ValueError, "only read for a real dataset"),
])
def test_bad_parameters_fail_with_what_is_accepted(dataset, root, error, message):
    with pytest.raises(error, match=message):
        open_dataset(dataset, root, accepted=("synthfaces", "fer2013"), profile=PROFILES["smoke"])


def test_folder_without_the_layout_names_what_it_holds(tmp_path: Path):
    (tmp_path / "faces.csv").write_text("x\n")
    (tmp_path / "images").mkdir()
    with pytest.raises(FileNotFoundError, match=r"holds none of the FER2013 layouts: expected fer2013.csv or "
                                                r".*; found faces.csv, images/"):
        open_dataset("fer2013", tmp_path, accepted=("fer2013",))
    with pytest.raises(FileNotFoundError, match="is a file, not a folder"):
        open_dataset("fer2013", tmp_path / "faces.csv", accepted=("fer2013",))
    with pytest.raises(ValueError, match="accepted names unknown datasets"):
        open_dataset("synthfaces", None, accepted=("synthfaces", "imagenet"))


def test_synthfaces_is_left_to_the_notebook():
    source = open_dataset("synthfaces", None, accepted=("synthfaces",), profile=PROFILES["course"])
    assert source.synthetic and source.samples is None and source.profile == "course"


# --- subsampling -------------------------------------------------------------------------

def test_subsample_is_stratified_seeded_and_exact():
    labels = np.repeat([0, 1, 2], [600, 300, 100])
    picked = subsample(labels, 100, seed=0)
    assert len(picked) == 100 and np.array_equal(np.bincount(labels[picked]), [60, 30, 10])
    assert np.array_equal(picked, subsample(labels, 100, seed=0))
    assert not np.array_equal(picked, subsample(labels, 100, seed=1))
    assert np.array_equal(subsample(labels, None, 0), np.arange(1000))
    assert len(subsample(labels, 7, 0)) == 7


# --- every layout data/README.md lists ---------------------------------------------------

@pytest.mark.parametrize("variant, prefix", [("fer2013", ""), ("icml", ""), ("fer2013", "fer2013/"),
                                             ("kaggle", ""), ("kaggle", "fer2013/")])
def test_fer2013_layouts(tmp_path: Path, variant: str, prefix: str):
    F.write_fer2013(samples(160, split_cycle=SPLIT3), tmp_path / prefix, variant=variant, verbose=False)
    source = open_dataset("fer2013", tmp_path, accepted=("fer2013",), profile=PROFILES["smoke"], verbose=False)
    assert source.layout.startswith(prefix)
    sizes = {k: len(v) for k, v in source.splits.items()}
    if variant == "kaggle":                       # test.csv has no labels: val and test carved from train
        assert sizes == {"train": 86, "val": 10, "test": 24}   # 20% of 120, then 10% of 96
        assert any("no label" in n for n in source.notes) and any("carved" in n for n in source.notes)
    else:                                         # PublicTest = val, PrivateTest = test, never merged
        assert sizes == {"train": 120, "val": 20, "test": 20}
        assert {s["usage"] for s in source.items("val")} == {"PublicTest"}
        assert {s["usage"] for s in source.items("test")} == {"PrivateTest"}
    assert not set(source.splits["train"]) & set(source.splits["test"])
    assert source.images("train").shape == (sizes["train"], 48, 48)


def test_profiles_set_the_size_of_real_data(tmp_path: Path):
    F.write_fer2013(samples(3000, split_cycle=SPLIT3), tmp_path, verbose=False)
    smoke = open_dataset("fer2013", tmp_path, accepted=("fer2013",), profile=PROFILES["smoke"], verbose=False)
    assert {k: len(v) for k, v in smoke.splits.items()} == {"train": 600, "val": 200, "test": 200}
    counts = np.bincount(smoke.labels("train"), minlength=7)
    assert counts.max() - counts.min() <= 1                     # stratified: the classes stay balanced
    again = open_dataset("fer2013", tmp_path, accepted=("fer2013",), profile=PROFILES["smoke"], verbose=False)
    assert all(np.array_equal(smoke.splits[k], again.splits[k]) for k in smoke.splits)
    full = open_dataset("fer2013", tmp_path, accepted=("fer2013",), profile=PROFILES["full"], verbose=False)
    assert {k: len(v) for k, v in full.splits.items()} == {"train": 2250, "val": 375, "test": 375}
    small = open_dataset("fer2013", tmp_path, accepted=("fer2013",), profile=PROFILES["course"], n_train=70, n_test=14,
                         verbose=False)
    assert {k: len(v) for k, v in small.splits.items()} == {"train": 70, "val": 14, "test": 14}


@pytest.mark.parametrize("layout", ["csv", "folders"])
def test_ferplus_layouts(tmp_path: Path, layout: str):
    data = samples(80, classes=range(8), split_cycle=SPLIT3)
    for s in data:                                  # 10 votes for the sample's class, contempt included
        s["votes"] = np.eye(10, dtype=int)[F.FERPLUS_COLUMNS.index(
            {0: "neutral", 1: "anger", 2: "disgust", 3: "fear", 4: "happiness", 5: "sadness", 6: "surprise",
             7: "contempt"}[s["label"]])] * 10
    F.write_ferplus(data, tmp_path, layout=layout, verbose=False)
    source = open_dataset("ferplus", tmp_path, accepted=("ferplus",), profile=PROFILES["full"], verbose=False)
    assert all(len(source.splits[k]) > 0 for k in ("train", "val", "test"))
    assert 7 not in source.labels("train")                      # contempt dropped in a 7-class notebook
    assert any("dropped" in n for n in source.notes)


@pytest.mark.parametrize("nested", [False, True])
def test_rafdb_layout(tmp_path: Path, nested: bool):
    root = tmp_path / "basic" if nested else tmp_path
    data = samples(70, split_cycle=("train",) * 4 + ("test",), size=100, gray=False)
    F.write_rafdb(data, root, verbose=False)
    source = open_dataset("rafdb", tmp_path, accepted=("rafdb",), profile=PROFILES["full"], verbose=False)
    assert source.layout.startswith("basic/" if nested else "EmoLabel/")
    assert len(source.splits["test"]) == 14 and len(source.splits["val"]) > 0
    no_val = open_dataset("rafdb", tmp_path, accepted=("rafdb",), profile=PROFILES["full"], carve=("test",),
                          verbose=False)
    assert len(no_val.splits["val"]) == 0 and len(no_val.splits["train"]) == 56
    assert source.images("test", size=112, grayscale=False).shape == (14, 112, 112, 3)


def test_affectnet_validation_is_the_test_set(tmp_path: Path):
    F.write_affectnet(samples(60, classes=range(8), split_cycle=("train", "train", "val"), size=64, gray=False),
                      tmp_path, verbose=False)
    source = open_dataset("affectnet", tmp_path, accepted=("affectnet",), profile=PROFILES["full"], num_classes=8,
                          verbose=False)
    assert len(source.splits["test"]) == 20 and {s["split"] for s in source.items("test")} == {"val"}
    assert len(source.splits["val"]) == 4 and len(source.splits["train"]) == 36
    va = source.va("test")
    assert va.shape == (20, 2) and np.isfinite(va).all() and np.abs(va).max() <= 1
    assert source.images("train", size=48).shape == (36, 48, 48)


def test_required_fields_drop_and_count(tmp_path: Path):
    data = samples(30, split_cycle=("train", "train", "val"), size=64, gray=False)
    for s in data[:5]:
        s["valence"] = s["arousal"] = None                  # written as AffectNet's -2 marker
    F.write_affectnet(data, tmp_path, verbose=False)
    source = open_dataset("affectnet", tmp_path, accepted=("affectnet",), profile=PROFILES["full"],
                          require=("valence", "arousal"), verbose=False)
    assert sum(len(v) for v in source.splits.values()) == 25
    assert "5 samples dropped: no valence" in source.notes


@pytest.mark.parametrize("name, writer", [("ckplus", F.write_ckplus), ("oulu", F.write_oulu),
                                          ("jaffe", F.write_jaffe)])
def test_subject_datasets_are_split_by_subject(tmp_path: Path, name: str, writer):
    classes = {"oulu": range(1, 7)}.get(name, range(7))
    writer(samples(120, classes=classes, identities=10, size=64), tmp_path, verbose=False)
    source = open_dataset(name, tmp_path, accepted=(name,), profile=PROFILES["full"], verbose=False)
    subjects = {k: {s["identity"] for s in source.items(k)} for k in source.splits}
    assert all(subjects.values())
    assert not subjects["train"] & subjects["test"] and not subjects["train"] & subjects["val"]
    assert any("by identity" in n for n in source.notes)


def test_ferg_is_split_stratified(tmp_path: Path):
    F.write_ferg(samples(140, size=64, gray=False), tmp_path, verbose=False)
    source = open_dataset("ferg", tmp_path, accepted=("ferg",), profile=PROFILES["full"], verbose=False)
    assert {k: len(v) for k, v in source.splits.items()} == {"train": 101, "val": 11, "test": 28}
    assert np.array_equal(np.bincount(source.labels("test")), [4] * 7)


@pytest.mark.parametrize("edition", ["abaw1", "abaw2", "abaw3"])
def test_affwild2_layouts(tmp_path: Path, edition: str):
    for split in ("train", "val"):
        data = samples(40, identities=4, size=112, gray=False)
        for i, s in enumerate(data):
            s["video"], s["split"] = f"{split}{i % 4}", split
        F.write_affwild2(data, tmp_path, edition=edition, split=split, verbose=False)
    source = open_dataset("affwild2", tmp_path, accepted=("affwild2",), profile=PROFILES["full"], verbose=False)
    videos = {k: {s["video"] for s in source.items(k)} for k in source.splits}
    assert videos["test"] == {f"val{i}" for i in range(4)}       # the official validation set is the test set
    assert videos["val"] and not videos["val"] & videos["train"]  # val carved by video
    assert source.layout.startswith("cropped_aligned/")


def test_every_dataset_has_its_layouts_listed():
    readme = (Path(__file__).resolve().parents[1] / "data" / "README.md").read_text()
    for name, spec in DATASETS.items():
        assert f"read_{name}" in readme and spec.reader == f"read_{name}"
    assert check_dataset("synthfaces", None, ("synthfaces",)) == ("synthfaces", None, None)


def test_readme_states_the_sizes_in_force():
    from fer_utils.data.sources import SIZES
    readme = " ".join((Path(__file__).resolve().parents[1] / "README.md").read_text().split())
    (smoke_train, smoke_test), (course_train, course_test) = SIZES["smoke"], SIZES["course"]
    assert (f"{smoke_train:,} / {course_train:,} training and {smoke_test:,} / {course_test:,} validation and test"
            in readme) and SIZES["full"] is None


def test_open_dataset_takes_the_resolved_profile_and_reads_no_environment(monkeypatch, tmp_path):
    """FER_PROFILE is read once, at the entry point (the notebook's set-up): open_dataset sizes the data by
    the profile it is handed, whatever the environment says, and refuses an unknown name."""
    F.write_rafdb(samples(20, split_cycle=("train",) * 4 + ("test",), size=100, gray=False), tmp_path, verbose=False)
    monkeypatch.setenv("FER_PROFILE", "fast")     # an entry point would refuse it; open_dataset never looks
    source = open_dataset("rafdb", tmp_path, accepted=("rafdb",), profile=PROFILES["full"], verbose=False)
    assert source.profile == "full" and open_dataset("rafdb", tmp_path, accepted=("rafdb",), profile="smoke",
                                                    verbose=False).profile == "smoke"
    with pytest.raises(ValueError, match="unknown profile 'fast'; valid profiles are 'smoke', 'course', 'full'"):
        open_dataset("rafdb", tmp_path, accepted=("rafdb",), profile="fast", verbose=False)
