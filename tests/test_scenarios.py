"""SynthFaces scenario options (issue 27): each knob does what it says and moves its measured quantity with
the dose; with every option off the samples are the bytes of the generator before the options existed."""
from __future__ import annotations

import hashlib

import cv2
import numpy as np
import pytest

from fer_utils.data import PROTOTYPES, SynthFaces
from fer_utils.data.synth_scenario import CLASS_COUNTS
from fer_utils.labels import AUS, CLASS_TO_ID, CLASSES

OFF = dict(misalignment=0.0, yaw=0.0, class_prior=None, ambiguity=0.0, ambiguity_mix=(0.2, 0.5), resting_face=0.0,
           va_mode="class", va_spread=0.3, va_rate=1.0, va_noise=0.0)


# ----------------------------------------------------------------------------------------------
# Off = the old generator, bit for bit
# ----------------------------------------------------------------------------------------------


def _fingerprint(item) -> tuple[str, str]:
    """(image hash, hash of landmarks, 5 points, AUs, boxes, masks and label fields)."""
    img = hashlib.sha256(np.ascontiguousarray(item["image"]).tobytes()).hexdigest()[:16]
    m = hashlib.sha256()
    for k in ("landmarks", "points5", "aus"):
        m.update(np.ascontiguousarray(item[k]).tobytes())
    for r in sorted(item["boxes"]):
        m.update(item["boxes"][r].tobytes())
    for r in sorted(item["masks"] or {}):
        m.update(np.packbits(item["masks"][r]).tobytes())
    m.update(repr([item[k] for k in ("label", "true_label", "intensity", "valence", "arousal", "identity",
                                     "occluder")]).encode())
    return img, m.hexdigest()[:16]


# Computed with the generator as committed before the scenario options (git HEAD 78446ed): wild items 0, 2,
# 5, 12, 21 carry no occluder, a mask, sunglasses, a hand and glasses. Image hashes hold for the pinned
# OpenCV and numpy versions (the module's determinism promise); if those change, regenerate them.
GOLDEN = {
    "wild": {0: ("8e912462b198dbfc", "7d6c191a469fab25"), 2: ("5be37a923d7d48a5", "bfc606c9eb505f72"),
             5: ("763652807e7ddbd6", "1aa6a98277d331c4"), 12: ("31ad7207f19b3691", "86c010f454cee8b0"),
             21: ("83832e92532c8f22", "b2ed382a15b31f1f")},
    "medium": {0: ("34cf321c5ccaeff9", "dd565c5329ec371f"), 11: ("4db1ca116e8c574d", "6977a39ddeca435c")},
    "lab": {1: ("20f20e69c11c40e9", "cd15229399d171ed"), 19: ("31cf31e828864714", "4bf1e1455c07c40d")},
    "seq": {0: ("66befa459d642ad7", "3fe6c36d58338c86"), 1: ("3f8706ac44301401", "8a14cf00816e415f"),
            2: ("3636a6401b98f1f5", "665de4886047eb0a")},
    "labels": "0c10faacb0a3d128",
}


@pytest.mark.parametrize("options", [{}, OFF])
def test_options_off_give_the_old_bytes(options):
    ds = SynthFaces(60, seed=3, difficulty="wild", num_classes=8, label_noise=0.2, size=64, **options)
    assert {i: _fingerprint(ds[i]) for i in GOLDEN["wild"]} == GOLDEN["wild"]
    ds = SynthFaces(20, seed=5, difficulty="medium", size=48, grayscale=True, **options)
    assert {i: _fingerprint(ds[i]) for i in GOLDEN["medium"]} == GOLDEN["medium"]
    ds = SynthFaces(20, seed=0, difficulty="lab", **options)
    assert {i: _fingerprint(ds[i]) for i in GOLDEN["lab"]} == GOLDEN["lab"]
    ds = SynthFaces(20, seed=2, difficulty="wild", size=48, **options)
    assert {f["index"]: _fingerprint(f) for f in ds.sequence(0, 6, 3, seed=1)} == GOLDEN["seq"]
    ds = SynthFaces(300, seed=3, num_classes=8, label_noise=0.2, **options)
    labels = hashlib.sha256(ds.labels.tobytes() + ds.true_labels.tobytes() + ds.identities.tobytes())
    assert labels.hexdigest()[:16] == GOLDEN["labels"]


def test_new_fields_when_off_and_annotations_match_items():
    ds = SynthFaces(6, seed=1, size=32)
    for i in range(6):
        item, ann = ds[i], ds.annotations(i)
        assert item["soft_label"].dtype == np.float32 and item["soft_label"][item["true_label"]] == 1
        assert item["soft_label"].sum() == 1 and item["yaw"] == 0.0
        np.testing.assert_array_equal(item["transform"], np.eye(2, 3, dtype=np.float32))
        np.testing.assert_array_equal(item["transform_params"], [0, 1, 0, 0])
        assert item["va_true"] == (item["valence"], item["arousal"])
        for key in ("label", "true_label", "intensity", "valence", "arousal", "identity", "va_true", "yaw"):
            assert ann[key] == item[key], key
        np.testing.assert_array_equal(ann["aus"], item["aus"])
    busy = SynthFaces(6, seed=1, size=32, misalignment=0.5, yaw=20, ambiguity=0.5, resting_face=0.5, va_mode="free",
                      va_rate=0.5, va_noise=0.1)
    for i in range(6):
        item, ann = busy[i], busy.annotations(i)
        for key in ("label", "true_label", "intensity", "valence", "arousal", "va_true", "yaw"):
            assert ann[key] == item[key], key
        np.testing.assert_array_equal(ann["aus"], item["aus"])
        np.testing.assert_array_equal(ann["soft_label"], item["soft_label"])
        np.testing.assert_array_equal(ann["transform"], item["transform"])


def test_deterministic_and_independent_streams():
    kw = dict(misalignment=0.7, yaw=30, ambiguity=0.4, resting_face=0.6, va_mode="free", va_noise=0.1)
    a, b = SynthFaces(12, seed=4, size=32, **kw), SynthFaces(12, seed=4, size=32, **kw)
    b[7]
    assert np.array_equal(a[3]["image"], b[3]["image"]) and a[3]["va_true"] == b[3]["va_true"]
    # one option does not change what another draws
    only_mis = SynthFaces(12, seed=4, size=32, misalignment=0.7)
    with_yaw = SynthFaces(12, seed=4, size=32, misalignment=0.7, yaw=30)
    for i in range(12):
        np.testing.assert_array_equal(only_mis.annotations(i)["transform"], with_yaw.annotations(i)["transform"])
        assert only_mis.annotations(i)["valence"] == SynthFaces(12, seed=4, size=32).annotations(i)["valence"]


# ----------------------------------------------------------------------------------------------
# Misalignment
# ----------------------------------------------------------------------------------------------


def test_misalignment_transform_maps_the_aligned_face():
    aligned = SynthFaces(12, seed=2, size=64, difficulty="wild")
    moved = SynthFaces(12, seed=2, size=64, difficulty="wild", misalignment=1.0)
    for i in range(12):
        a, m = aligned[i], moved[i]
        matrix = m["transform"].astype(np.float64)
        for key in ("landmarks", "points5"):
            mapped = a[key] @ matrix[:, :2].T + matrix[:, 2]
            np.testing.assert_allclose(mapped, m[key], atol=1e-3)
        back = cv2.invertAffineTransform(matrix)  # what a learned warp should recover
        np.testing.assert_allclose(m["landmarks"] @ back[:, :2].T + back[:, 2], a["landmarks"], atol=1e-3)
        angle, scale, dx, dy = m["transform_params"].astype(np.float64)
        th = np.radians(angle)
        np.testing.assert_allclose(matrix[:, :2], scale * np.array([[np.cos(th), -np.sin(th)],
                                                                    [np.sin(th), np.cos(th)]]), atol=1e-5)
        np.testing.assert_allclose(matrix @ [32, 32, 1], [32 + dx, 32 + dy], atol=1e-3)  # about the centre
        assert a["label"] == m["label"] and np.array_equal(a["aus"], m["aus"])
        # the region masks move with the face: the mouth mask's centre follows the mouth landmarks
        ys, xs = np.nonzero(m["masks"]["mouth"])
        np.testing.assert_allclose([xs.mean(), ys.mean()], m["landmarks"][48:60].mean(0), atol=2.5)


def test_misalignment_spread_grows_with_the_dose():
    spreads = []
    for dose in (0.0, 0.25, 0.5, 1.0):
        ds = SynthFaces(400, seed=0, misalignment=dose)
        p = np.array([ds.annotations(i)["transform_params"] for i in range(0, 400, 2)], np.float64)
        spreads.append([p[:, 0].std(), np.log(p[:, 1]).std(), p[:, 2].std(), p[:, 3].std()])
    spreads = np.array(spreads)
    assert np.all(spreads[0] == 0)
    assert np.all(np.diff(spreads, axis=0) > 0)
    np.testing.assert_allclose(spreads[3, 0], 30 / np.sqrt(3), rtol=0.15)  # U(-30, 30) degrees at dose 1
    explicit = SynthFaces(50, seed=0, misalignment=(10.0, 1.0, 0.0))
    p = np.array([explicit.annotations(i)["transform_params"] for i in range(50)])
    assert np.abs(p[:, 0]).max() <= 10 and np.all(p[:, 1] == 1) and np.all(p[:, 2:] == 0)


# ----------------------------------------------------------------------------------------------
# Yaw in depth
# ----------------------------------------------------------------------------------------------


def _eye_nose(item):
    """Distance between the eye centres, and the nose tip's offset from their midpoint along the eye line."""
    left, right = item["points5"][0].astype(float), item["points5"][1].astype(float)
    axis = (right - left) / np.linalg.norm(right - left)
    return np.linalg.norm(right - left), float((item["landmarks"][30] - 0.5 * (left + right)) @ axis)


def test_yaw_foreshortens_like_cos_and_moves_the_nose_to_the_far_side():
    ds = SynthFaces(24, seed=1, size=112, yaw=40)
    for i in range(24):
        item = ds[i]
        frontal = ds.render_item(i, yaw_deg=0.0)  # the same face, not turned (and no 2-D squash)
        d_yaw, nose_yaw = _eye_nose(item)
        d_0, nose_0 = _eye_nose(frontal)
        np.testing.assert_allclose(d_yaw / d_0, np.cos(np.radians(item["yaw"])), atol=0.01)
        if abs(item["yaw"]) > 3:  # positive yaw: the image-right side recedes and the nose moves right
            assert np.sign(nose_yaw - nose_0) == np.sign(item["yaw"])
            assert abs(nose_yaw - nose_0) > 0.15 * abs(item["yaw"]) * d_0 / 50


def test_yaw_effects_grow_with_the_dose():
    ratio, shift, far_eye = [], [], []
    for dose in (0, 15, 30, 60):
        ds = SynthFaces(16, seed=0, size=64, yaw=dose, with_masks=False)
        rows = []
        for i in range(16):
            item = ds[i]
            (d, nose), (d0, nose0) = _eye_nose(item), _eye_nose(ds.render_item(i, yaw_deg=0.0))
            lm = item["landmarks"]
            widths = np.linalg.norm(lm[39] - lm[36]), np.linalg.norm(lm[45] - lm[42])
            far, near = (widths[1], widths[0]) if item["yaw"] >= 0 else widths
            rows.append((d / d0, abs(nose - nose0), far / near))
        r = np.array(rows).mean(0)
        ratio.append(r[0]), shift.append(r[1]), far_eye.append(r[2])
    assert np.all(np.diff(ratio) < 0) and np.all(np.diff(shift) > 0) and np.all(np.diff(far_eye) < 0)
    assert ratio[0] == 1 and far_eye[-1] < 0.6  # the far eye narrows (and hides at large yaw)


def test_yaw_keeps_the_face_in_one_piece():
    ds = SynthFaces(10, seed=3, size=64, yaw=60, difficulty="wild")
    for i in range(10):
        item = ds[i]
        assert np.isfinite(item["landmarks"]).all()
        assert all(item["masks"][r].sum() > 0 for r in ("eyes", "nose", "mouth"))
    with pytest.raises(ValueError, match="yaw"):
        SynthFaces(4, yaw=80)


# ----------------------------------------------------------------------------------------------
# Class imbalance
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("prior", ["fer2013", "rafdb", (1, 1, 1, 1, 4, 1, 1)])
def test_class_prior_frequencies(prior):
    n = 6000
    ds = SynthFaces(n, seed=0, class_prior=prior)  # labels only: nothing is rendered
    p = np.asarray(CLASS_COUNTS[prior] if isinstance(prior, str) else prior, float)
    p /= p.sum()
    freq = np.bincount(ds.true_labels, minlength=7) / n
    assert np.all(np.abs(freq - p) < 4 * np.sqrt(p * (1 - p) / n) + 1e-9), (freq, p)
    assert np.array_equal(ds.labels, ds.true_labels)


def test_class_prior_counts_and_checks():
    assert sum(CLASS_COUNTS["fer2013"]) == 28709 and sum(CLASS_COUNTS["rafdb"]) == 12271
    assert CLASS_COUNTS["fer2013"][CLASS_TO_ID["happiness"]] == 7215
    assert CLASS_COUNTS["rafdb"][CLASS_TO_ID["fear"]] == 281
    with pytest.raises(ValueError, match="contempt"):
        SynthFaces(10, num_classes=8, class_prior="fer2013")
    with pytest.raises(ValueError, match="class_prior"):
        SynthFaces(10, class_prior=(1, 2, 3))
    with pytest.raises(ValueError, match="class_prior"):
        SynthFaces(10, class_prior="affectnet")
    eight = SynthFaces(3000, seed=1, num_classes=8, class_prior=[0, 0, 0, 0, 0, 0, 0, 1])
    assert set(eight.true_labels) == {CLASS_TO_ID["contempt"]}


# ----------------------------------------------------------------------------------------------
# Ambiguity
# ----------------------------------------------------------------------------------------------


def test_ambiguity_share_and_soft_labels():
    shares = []
    for dose in (0.0, 0.1, 0.3, 0.6):
        ds = SynthFaces(5000, seed=0, ambiguity=dose)
        soft = ds.soft_labels
        np.testing.assert_allclose(soft.sum(1), 1, atol=1e-6)
        blended = soft.max(1) < 1
        assert np.all(soft[~blended].max(1) == 1)  # one-hot
        assert np.all((soft[blended] > 0).sum(1) == 2)
        assert np.array_equal(ds.true_labels, soft.argmax(1))  # mix (0.2, 0.5): the first class keeps the argmax
        shares.append(blended.mean())
        assert abs(blended.mean() - dose) < 4 * np.sqrt(dose * (1 - dose) / 5000) + 1e-9
    assert np.all(np.diff(shares) > 0)
    # tie (w = 0.5): the hard label stays the class drawn from the prior; w > 0.5: it becomes the other class
    plain = SynthFaces(2000, seed=0)
    tie = SynthFaces(2000, seed=0, ambiguity=1.0, ambiguity_mix=(0.5, 0.5))
    assert np.array_equal(tie.true_labels, plain.true_labels)
    flipped = SynthFaces(2000, seed=0, ambiguity=1.0, ambiguity_mix=(0.6, 0.9))
    assert np.array_equal(flipped.true_labels, flipped.soft_labels.argmax(1))
    assert not np.any(flipped.true_labels == plain.true_labels)


def test_blended_faces_lie_between_the_two_prototypes():
    ds, plain = SynthFaces(300, seed=2, ambiguity=1.0), SynthFaces(300, seed=2)
    proto = np.array([[PROTOTYPES[c].get(au, 0.0) for au in AUS] for c in CLASSES[:7]])
    closer = []
    for i in range(0, 300, 3):
        soft = ds.soft_labels[i]
        a, b = (int(c) for c in np.argsort(soft)[::-1][:2])
        w = float(soft[b])
        aus, aus_a = ds.annotations(i)["aus"], plain.annotations(i)["aus"]  # aus_a: the same face, unblended
        only_a = (proto[a] > 0) & (proto[b] == 0) & (aus_a < 0.999)
        np.testing.assert_allclose(aus[only_a], (1 - w) * aus_a[only_a], rtol=1e-5, atol=1e-6)
        only_b = (proto[b] > 0) & (proto[a] == 0)
        assert np.all(aus[only_b] > 0)
        if a and b:  # compare directions (neutral has none): the mix beats either pure prototype
            mix = (1 - w) * proto[a] + w * proto[b]
            cos = [float(aus @ v / (np.linalg.norm(aus) * np.linalg.norm(v))) for v in (mix, proto[a], proto[b])]
            closer.append(cos[0] >= max(cos[1:]))
    assert np.mean(closer) > 0.8


# ----------------------------------------------------------------------------------------------
# Identity resting face
# ----------------------------------------------------------------------------------------------


def test_resting_face_is_shared_by_an_identity():
    ds, plain = SynthFaces(120, seed=1, n_identities=4, resting_face=0.8), SynthFaces(120, seed=1, n_identities=4)
    rests = [ds.resting_aus(j) for j in range(4)]
    assert all(r.max() >= 0.8 * 0.2 for r in rests) and len({r.tobytes() for r in rests}) == 4
    for j in range(4):
        faces = np.flatnonzero(ds.identities == j)[:6]
        for i in faces:
            aus, base = ds.annotations(int(i))["aus"], plain.annotations(int(i))["aus"]
            ok = aus < 0.999  # below the clip at 1
            np.testing.assert_allclose((aus - base)[ok], rests[j][ok], atol=1e-6)
    assert not SynthFaces(10).resting_aus(0).any()


def test_resting_face_onset_and_peak_minus_onset():
    ds = SynthFaces(100, seed=0, resting_face=1.0)
    plain = SynthFaces(100, seed=0)
    for identity, label in ((0, CLASS_TO_ID["happiness"]), (2, CLASS_TO_ID["surprise"]), (3, CLASS_TO_ID["sadness"])):
        frames = ds.sequence(identity, label, 4, seed=1)
        base = plain.sequence(identity, label, 4, seed=1)
        assert not base[0]["aus"].any()  # without the option the onset is AU-free
        np.testing.assert_allclose(frames[0]["aus"], ds.resting_aus(identity), atol=1e-6)  # the resting face
        assert frames[0]["aus"].max() > 0.15
        peak, onset = frames[-1]["aus"], frames[0]["aus"]
        ok = peak < 0.999
        np.testing.assert_allclose((peak - onset)[ok], base[-1]["aus"][ok], atol=1e-6)  # the expression itself


# ----------------------------------------------------------------------------------------------
# Valence-arousal beyond the class
# ----------------------------------------------------------------------------------------------


def _va(ds, indices, key="va_true"):
    return np.array([ds.annotations(int(i))[key] for i in indices], float)


def test_va_within_class_spread_grows_with_the_option():
    spreads = []
    for kw in (dict(va_mode="class"), dict(va_mode="free", va_spread=0.15), dict(va_mode="free", va_spread=0.3)):
        ds = SynthFaces(1400, seed=0, **kw)
        happy = np.flatnonzero(ds.true_labels == CLASS_TO_ID["happiness"])[:120]
        spreads.append(_va(ds, happy).std(0))
    spreads = np.array(spreads)
    assert np.all(np.diff(spreads, axis=0) > 0)
    assert np.all(spreads[2] > 0.25)  # within one class VA varies substantially


def test_free_va_is_drawn_on_the_face_and_carries_an_identity_trait():
    ds = SynthFaces(600, seed=0, n_identities=6, va_mode="free", va_spread=0.4)
    neutral = np.flatnonzero(ds.true_labels == CLASS_TO_ID["neutral"])
    anns = [ds.annotations(int(i)) for i in neutral]
    valence = np.array([a["va_true"][0] for a in anns])
    smile = np.array([a["aus"][AUS.index(12)] - a["aus"][AUS.index(15)] for a in anns])
    assert np.corrcoef(valence, smile)[0, 1] > 0.5
    ident = np.array([a["identity"] for a in anns])
    means = [valence[ident == j].mean() for j in range(6)]
    assert np.std(means) > 0.05  # identities differ in their mean valence


def test_va_rate_and_noise():
    for rate in (0.3, 0.8):
        ds = SynthFaces(4000, seed=0, va_rate=rate)
        assert abs(ds.va_labelled.mean() - rate) < 4 * np.sqrt(rate * (1 - rate) / 4000)
        for i in range(40):
            ann = ds.annotations(i)
            assert (ann["valence"] is None) == (ann["arousal"] is None) == (not ds.va_labelled[i])
            assert ann["va_true"][0] is not None
    measured = []
    for noise in (0.0, 0.1, 0.2):
        ds = SynthFaces(600, seed=1, va_noise=noise)
        anns = [ds.annotations(i) for i in range(600)]
        va_true, va = np.array([a["va_true"] for a in anns]), np.array([(a["valence"], a["arousal"]) for a in anns])
        inside = np.all(np.abs(va_true) < 0.5, axis=1)  # away from the clip at +-1
        measured.append((va - va_true)[inside].std())
    assert measured[0] == 0
    np.testing.assert_allclose(measured[1:], [0.1, 0.2], rtol=0.12)


# ----------------------------------------------------------------------------------------------
# Cache keys, repr, bad input
# ----------------------------------------------------------------------------------------------


def test_every_option_gets_its_own_cache_entry(tmp_path):
    variants = [{}, dict(misalignment=0.5), dict(misalignment=(15.0, 1.118033988749895, 0.06)), dict(yaw=20),
                dict(class_prior="fer2013"), dict(class_prior="rafdb"), dict(class_prior=[1, 2, 1, 1, 1, 1, 1]),
                dict(ambiguity=0.2), dict(ambiguity=0.2, ambiguity_mix=(0.1, 0.4)), dict(resting_face=0.5),
                dict(va_mode="free"), dict(va_mode="free", va_spread=0.5), dict(va_rate=0.5), dict(va_noise=0.1)]
    dirs = [SynthFaces(2, cache_dir=tmp_path, **kw).cache_dir.name for kw in variants]
    assert dirs[0] == "synthfaces_s0_lab_112c_k7_ln0_id1_m1"  # the key of earlier versions, unchanged
    assert dirs[1] == dirs[2]  # the same transform ranges, spelled two ways
    assert len(set(dirs)) == len(dirs) - 1
    assert "misalignment=" in repr(SynthFaces(2, misalignment=0.5)) and "yaw=20" in repr(SynthFaces(2, yaw=20))


def test_cache_round_trip_with_scenario_fields(tmp_path):
    kw = dict(size=32, misalignment=0.5, yaw=20, ambiguity=0.5, va_rate=0.5, va_noise=0.1, va_mode="free")
    plain = SynthFaces(6, seed=3, **kw)
    writer = SynthFaces(6, seed=3, cache_dir=tmp_path, **kw)
    for i in range(6):
        writer[i]  # renders and writes
    again = SynthFaces(6, seed=3, cache_dir=tmp_path, **kw)
    for i in range(6):
        a, c = plain[i], again[i]  # c is read from disk
        for key in ("valence", "arousal", "va_true", "yaw", "label", "true_label"):
            assert a[key] == c[key], key
        for key in ("image", "soft_label", "transform", "transform_params"):
            assert np.array_equal(a[key], c[key]), key


@pytest.mark.parametrize("kwargs, name", [
    ({"misalignment": 1.5}, "misalignment"), ({"misalignment": (10, 0.5, 0)}, "misalignment"),
    ({"yaw": -5}, "yaw"), ({"ambiguity": 2}, "ambiguity"), ({"ambiguity_mix": (0.6, 0.2)}, "ambiguity_mix"),
    ({"resting_face": -1}, "resting_face"), ({"va_mode": "circumplex"}, "va_mode"), ({"va_rate": 1.2}, "va_rate"),
    ({"va_noise": -0.1}, "va_noise"), ({"va_spread": -0.1}, "va_spread"),
])
def test_invalid_scenario_options(kwargs, name):
    with pytest.raises(ValueError, match=name):
        SynthFaces(4, **kwargs)
