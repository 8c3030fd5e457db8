"""SynthFaces: item contents, determinism, what each AU draws, labels, VA, sequences, cache, bad input."""
from __future__ import annotations

import numpy as np
import pytest

from fer_utils.data import PROTOTYPES, SynthFaces, render_face
from fer_utils.data.synthetic import CIRCUMPLEX, DIFFICULTIES
from fer_utils.labels import AUS, CLASS_TO_ID, CLASSES, REGIONS

KEYS = {"image", "label", "true_label", "intensity", "aus", "au_presence", "valence", "arousal", "landmarks",
        "points5", "identity", "difficulty", "boxes", "masks", "index"}


@pytest.mark.parametrize("size", [16, 48, 112, 160])
@pytest.mark.parametrize("grayscale", [False, True])
@pytest.mark.parametrize("difficulty", DIFFICULTIES)
def test_item_shapes_and_types(size, grayscale, difficulty):
    ds = SynthFaces(6, seed=1, difficulty=difficulty, size=size, grayscale=grayscale)
    assert len(ds) == 6
    for i in range(len(ds)):
        item = ds[i]
        assert KEYS <= set(item)
        img = item["image"]
        assert img.dtype == np.uint8
        assert img.shape == ((size, size) if grayscale else (size, size, 3))
        assert item["aus"].shape == (len(AUS),) and item["aus"].dtype == np.float32
        assert item["au_presence"].dtype == bool and item["au_presence"].shape == (len(AUS),)
        assert item["landmarks"].shape == (68, 2) and item["landmarks"].dtype == np.float32
        assert item["points5"].shape == (5, 2) and item["points5"].dtype == np.float32
        assert isinstance(item["label"], int) and isinstance(item["true_label"], int)
        assert item["label"] == ds.labels[i] and item["identity"] == ds.identities[i] and item["index"] == i
        assert item["difficulty"] == difficulty
        assert set(item["boxes"]) == set(REGIONS) == set(item["masks"])
        for region in REGIONS:
            assert item["boxes"][region].shape == (4,) and item["boxes"][region].dtype == np.float32
            assert item["masks"][region].shape == (size, size) and item["masks"][region].dtype == bool


def test_determinism_and_random_access():
    a = SynthFaces(8, seed=3, difficulty="wild")
    b = SynthFaces(8, seed=3, difficulty="wild")
    first = a[5]["image"]
    for i in range(8):  # render everything else in between
        a[i]
    assert np.array_equal(a[5]["image"], first)  # ds[5] does not depend on what was rendered before
    assert all(np.array_equal(a[i]["image"], b[i]["image"]) for i in range(8))
    assert np.array_equal(a[7]["landmarks"], b[7]["landmarks"])
    c = SynthFaces(8, seed=4, difficulty="wild")
    assert not np.array_equal(a[5]["image"], c[5]["image"])
    assert a[-1]["index"] == 7
    with pytest.raises(IndexError):
        a[8]


def test_cheap_arrays_match_items():
    ds = SynthFaces(40, seed=0, num_classes=8)
    assert ds.labels.shape == ds.identities.shape == (40,)
    assert ds.n_identities == 2 and set(ds.identities) <= {0, 1}
    assert set(np.unique(ds.labels)) <= set(range(8))


def test_landmarks_inside_and_points5():
    ds = SynthFaces(30, seed=2, size=112)
    for i in range(len(ds)):
        item = ds[i]
        lm, p5 = item["landmarks"], item["points5"]
        assert lm.min() >= 0 and lm.max() <= 111
        np.testing.assert_allclose(p5[0], lm[36:42].mean(0), atol=1e-3)
        np.testing.assert_allclose(p5[1], lm[42:48].mean(0), atol=1e-3)
        np.testing.assert_allclose(p5[2:], lm[[30, 48, 54]], atol=1e-3)
        assert p5[0, 0] < p5[1, 0] and p5[3, 0] < p5[4, 0]  # "left" = image-left
    wild = SynthFaces(30, seed=2, difficulty="wild")
    inside = np.mean([((w := wild[i]["landmarks"]) >= 0).all() and (w <= 111).all() for i in range(30)])
    assert inside > 0.8


def test_masks_nonempty_and_inside_boxes():
    for difficulty in DIFFICULTIES:
        ds = SynthFaces(10, seed=5, difficulty=difficulty, size=96)
        for i in range(len(ds)):
            item = ds[i]
            for region in REGIONS:
                mask, (x0, y0, x1, y1) = item["masks"][region], item["boxes"][region]
                assert mask.sum() > 3, (difficulty, i, region)
                ys, xs = np.nonzero(mask)
                assert xs.min() >= x0 - 1 and xs.max() <= x1 + 1 and ys.min() >= y0 - 1 and ys.max() <= y1 + 1
                assert x1 > x0 and y1 > y0
            # regions sit where the face is: eyes above nose above mouth
            cy = {r: 0.5 * (item["boxes"][r][1] + item["boxes"][r][3]) for r in REGIONS}
            if difficulty == "lab":
                assert cy["brows"] < cy["eyes"] < cy["nose"] < cy["mouth"]
    lean = SynthFaces(2, with_masks=False)[0]
    assert lean["masks"] is None and set(lean["boxes"]) == set(REGIONS)


def _face(aus):
    return render_face(aus, identity=1, seed=0)


def test_each_au_changes_the_image():
    neutral = _face({})["image"].astype(int)
    for au in AUS:
        diff = np.abs(_face({au: 1.0})["image"].astype(int) - neutral).sum(-1)
        assert (diff > 30).sum() >= 8, f"AU{au} barely changes the image"


def test_aus_move_the_right_landmarks():
    n = _face({})["landmarks"]
    moved = {au: _face({au: 1.0})["landmarks"] for au in (1, 2, 4, 5, 6, 12, 15, 17, 20, 25, 26)}
    up = lambda lm, idx: (n[idx, 1] - lm[idx, 1]).mean()  # noqa: E731 - positive = moved up
    assert up(moved[1], [21, 22]) > 2  # inner brows raised
    assert up(moved[2], [17, 26]) > 2  # outer brows raised
    assert up(moved[4], [21, 22]) < -2  # inner brows lowered ...
    assert moved[4][22, 0] - moved[4][21, 0] < n[22, 0] - n[21, 0] - 2  # ... and drawn together
    assert up(moved[5], [37, 38, 43, 44]) > 1  # upper lids up
    assert up(moved[6], [40, 41, 46, 47]) > 1  # lower lids up
    assert up(moved[12], [48, 54]) > 2  # mouth corners up ...
    assert moved[12][54, 0] - moved[12][48, 0] > n[54, 0] - n[48, 0] + 3  # ... and out
    assert up(moved[15], [48, 54]) < -2  # corners down
    assert up(moved[17], [8, 57]) > 1.5  # chin and lower lip up
    assert moved[20][54, 0] - moved[20][48, 0] > n[54, 0] - n[48, 0] + 5  # lips stretched
    assert (moved[25][66, 1] - moved[25][62, 1]) > (n[66, 1] - n[62, 1]) + 2  # lips part
    assert up(moved[26], [8]) < -6  # jaw drops
    assert (moved[26][66, 1] - moved[26][62, 1]) > 6  # mouth open


def test_au_vector_and_presence():
    item = _face({12: 0.8, 6: 0.1})
    aus = dict(zip(AUS, item["aus"]))
    assert aus[12] == pytest.approx(0.8) and aus[6] == pytest.approx(0.1) and aus[4] == 0
    assert dict(zip(AUS, item["au_presence"]))[12] and not dict(zip(AUS, item["au_presence"]))[6]
    with pytest.raises(ValueError, match="aus: unknown action unit 3"):
        render_face({3: 1.0})
    with pytest.raises(ValueError, match="intensity"):
        render_face({12: 1.5})


def test_prototypes_cover_classes():
    assert list(PROTOTYPES) == list(CLASSES)
    assert PROTOTYPES["neutral"] == {}
    assert set(PROTOTYPES["happiness"]) == {6, 12} and set(PROTOTYPES["surprise"]) == {1, 2, 5, 26}
    assert set(PROTOTYPES["fear"]) == {1, 2, 4, 5, 7, 20, 26} and set(PROTOTYPES["contempt"]) == {12, 14}


def test_class_items_carry_their_prototype():
    ds = SynthFaces(140, seed=0, num_classes=8)
    for i in range(0, 140, 3):
        item = ds[i]
        proto = PROTOTYPES[CLASSES[item["true_label"]]]
        aus = dict(zip(AUS, item["aus"]))
        if proto:
            assert 0 < item["intensity"] <= 1
            assert np.mean([aus[a] > 0 for a in proto]) >= 0.99
        else:
            assert item["intensity"] == 0


def test_contempt_only_with_eight_classes_and_asymmetric():
    assert CLASS_TO_ID["contempt"] not in set(SynthFaces(300, seed=0).labels)
    ds = SynthFaces(300, seed=0, num_classes=8)
    idx = np.flatnonzero(ds.true_labels == CLASS_TO_ID["contempt"])
    assert len(idx) > 10
    lifts = []
    for i in idx[:10]:
        lm = ds[int(i)]["landmarks"]
        lifts.append(abs(lm[48, 1] - lm[54, 1]))  # one corner higher than the other
    assert np.median(lifts) > 1.5
    happy = [ds[int(i)]["landmarks"] for i in np.flatnonzero(ds.true_labels == CLASS_TO_ID["happiness"])[:10]]
    assert np.median([abs(lm[48, 1] - lm[54, 1]) for lm in happy]) < np.median(lifts)


def test_label_noise_rate_and_true_label():
    ds = SynthFaces(4000, seed=0, label_noise=0.2)
    rate = np.mean(ds.labels != ds.true_labels)
    assert 0.17 < rate < 0.23
    item = ds[int(np.flatnonzero(ds.labels != ds.true_labels)[0])]
    assert item["label"] != item["true_label"]
    clean = SynthFaces(500, seed=0)
    assert np.array_equal(clean.labels, clean.true_labels)
    assert np.array_equal(clean.true_labels, SynthFaces(500, seed=0, label_noise=0.3).true_labels[:500])


def test_valence_arousal_follow_the_circumplex():
    ds = SynthFaces(420, seed=0, size=32, with_masks=False)
    va = {c: [] for c in range(7)}
    for i in range(len(ds)):
        item = ds[i]
        assert -1 <= item["valence"] <= 1 and -1 <= item["arousal"] <= 1
        va[item["true_label"]].append((item["valence"], item["arousal"]))
    mean = {CLASSES[c]: np.mean(v, axis=0) for c, v in va.items()}
    assert mean["happiness"][0] > 0.3
    for name in ("sadness", "anger", "fear", "disgust"):
        assert mean[name][0] < -0.2, name
    assert mean["surprise"][1] > 0.3 and mean["sadness"][1] < 0
    assert abs(mean["neutral"][0]) < 0.1
    assert set(CIRCUMPLEX) == set(CLASSES)


def test_wild_differs_from_lab():
    lab, wild = SynthFaces(20, seed=0, difficulty="lab"), SynthFaces(20, seed=0, difficulty="wild")
    diffs = [np.abs(lab[i]["image"].astype(int) - wild[i]["image"].astype(int)).mean() for i in range(20)]
    assert np.mean(diffs) > 10
    # lab faces are frontal: the eye line is nearly level; wild ones roll
    tilt = lambda ds: np.mean([abs(np.diff((p := ds[i]["points5"])[:2, 1])[0]) for i in range(20)])  # noqa: E731
    assert tilt(wild) > 2 * tilt(lab)


def test_sequence_onset_to_apex():
    ds = SynthFaces(100, seed=0)
    frames = ds.sequence(identity=2, label=CLASS_TO_ID["surprise"], length=10, seed=1)
    assert len(frames) == 10 and [f["index"] for f in frames] == list(range(10))
    assert frames[0]["aus"].max() < 0.05 and frames[0]["intensity"] == pytest.approx(0)
    assert frames[-1]["aus"][AUS.index(26)] > 0.2 and frames[-1]["intensity"] > 0.3
    opening = [f["landmarks"][66, 1] - f["landmarks"][62, 1] for f in frames]
    assert opening[-1] > opening[0] + 2 and np.all(np.diff(opening) > -0.5)
    assert all(f["identity"] == 2 and f["label"] == CLASS_TO_ID["surprise"] for f in frames)
    motion = np.abs(frames[0]["landmarks"][:17] - frames[-1]["landmarks"][:17]).mean()
    assert motion < 15  # small head motion, the same face
    again = ds.sequence(identity=2, label=CLASS_TO_ID["surprise"], length=10, seed=1)
    assert np.array_equal(frames[5]["image"], again[5]["image"])
    assert len(ds.sequence(0, 0, 1)) == 1
    with pytest.raises(ValueError, match="length"):
        ds.sequence(0, 0, 0)


def test_transform_receives_the_dict():
    ds = SynthFaces(4, transform=lambda item: (item["image"].shape, item["label"]))
    assert ds[0][0] == (112, 112, 3)


def test_cache_dir_gives_same_bytes(tmp_path):
    plain = SynthFaces(5, seed=7, difficulty="wild", size=48)
    cached = SynthFaces(5, seed=7, difficulty="wild", size=48, cache_dir=tmp_path)
    first = [cached[i] for i in range(5)]  # renders and writes
    assert len(list(tmp_path.rglob("*.npz"))) == 5
    again = SynthFaces(5, seed=7, difficulty="wild", size=48, cache_dir=tmp_path)
    for i in range(5):
        a, b, c = plain[i], first[i], again[i]  # c is read from disk
        assert np.array_equal(a["image"], c["image"]) and np.array_equal(b["image"], c["image"])
        assert np.array_equal(a["landmarks"], c["landmarks"]) and a["label"] == c["label"]
        assert a["valence"] == c["valence"] and a["difficulty"] == c["difficulty"]
        for r in REGIONS:
            assert np.array_equal(a["masks"][r], c["masks"][r]) and np.array_equal(a["boxes"][r], c["boxes"][r])


@pytest.mark.parametrize("kwargs, name", [
    ({"difficulty": "foo"}, "difficulty"), ({"size": 8}, "size"), ({"num_classes": 6}, "num_classes"),
    ({"label_noise": 1.5}, "label_noise"), ({"label_noise": -0.1}, "label_noise"),
])
def test_invalid_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        SynthFaces(10, **kwargs)
    with pytest.raises(ValueError, match="'lab', 'medium', 'wild'"):
        SynthFaces(10, difficulty="foo")
    with pytest.raises(ValueError, match="7 or 8"):
        SynthFaces(10, num_classes=6)
