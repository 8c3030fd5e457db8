"""Identity-disjoint splits, k-fold over identities, and the tensor helpers."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fer_utils.data import (
    SynthFaces, TensorFaces, identity_kfold, identity_split, materialize, random_split_indices, to_tensor,
)
from fer_utils.data.datasets import tensors


def test_identity_split_disjoint_and_covering():
    ds = SynthFaces(1000, seed=0, n_identities=50)
    train, test = identity_split(ds.identities, test_size=0.2, seed=0)
    assert not set(ds.identities[train]) & set(ds.identities[test])
    assert np.array_equal(np.sort(np.r_[train, test]), np.arange(1000))
    assert len(set(ds.identities[test])) == 10
    assert 0.1 < len(test) / 1000 < 0.3
    again = identity_split(ds.identities, test_size=0.2, seed=0)
    assert np.array_equal(again[1], test)
    assert not np.array_equal(identity_split(ds.identities, test_size=0.2, seed=1)[1], test)


def test_identity_kfold_partitions_identities():
    ids = SynthFaces(600, seed=1, n_identities=23).identities
    folds = identity_kfold(ids, k=5, seed=0)
    assert len(folds) == 5
    val_ids = [set(ids[val]) for _, val in folds]
    assert set().union(*val_ids) == set(ids)
    assert sum(len(v) for v in val_ids) == len(set(ids))  # each identity validates exactly once
    for train, val in folds:
        assert not set(ids[train]) & set(ids[val])
        assert len(train) + len(val) == len(ids)
    assert np.array_equal(np.sort(np.concatenate([val for _, val in folds])), np.arange(len(ids)))


def _course_split(identities, test_size, seed):
    """The splits as the course wrote them before scikit-learn ran them: shuffle the identities
    with default_rng([seed, 11]), the first round(test_size * n) go to test."""
    unique = np.unique(identities)
    shuffled = np.random.default_rng([seed, 11]).permutation(unique)
    n_test = min(len(unique) - 1, max(1, round(test_size * len(unique))))
    is_test = np.isin(identities, shuffled[:n_test])
    return np.flatnonzero(~is_test), np.flatnonzero(is_test)


def _course_kfold(identities, k, seed):
    """Shuffle with default_rng([seed, 12]), deal into k groups with np.array_split."""
    shuffled = np.random.default_rng([seed, 12]).permutation(np.unique(identities))
    return [(np.flatnonzero(~np.isin(identities, g)), np.flatnonzero(np.isin(identities, g)))
            for g in np.array_split(shuffled, k)]


@pytest.mark.parametrize("n, n_ids, test_size, k, seed", [
    (1000, 50, 0.2, 5, 0), (600, 23, 0.25, 3, 7), (90, 45, 0.2, 2, 3), (37, 9, 0.33, 9, 11)])
def test_sklearn_splits_equal_the_course_splits(n, n_ids, test_size, k, seed):
    """GroupShuffleSplit / GroupKFold under identity_split / identity_kfold give the same indices as before."""
    ids = np.random.default_rng(seed).integers(0, n_ids, n) * 3 + 1
    for got, want in zip(identity_split(ids, test_size, seed), _course_split(ids, test_size, seed), strict=True):
        assert np.array_equal(got, want)
    for (train, val), (want_train, want_val) in zip(identity_kfold(ids, k, seed), _course_kfold(ids, k, seed),
                                                    strict=True):
        assert np.array_equal(train, want_train) and np.array_equal(val, want_val)


def test_random_split_is_leaky_baseline():
    train, test = random_split_indices(200, test_size=0.25, seed=0)
    assert len(test) == 50 and np.array_equal(np.sort(np.r_[train, test]), np.arange(200))
    ids = SynthFaces(200, seed=0, n_identities=10).identities
    assert set(ids[train]) & set(ids[test])  # identities leak across


def test_bad_split_arguments():
    with pytest.raises(ValueError, match="test_size"):
        identity_split([0, 1, 2], test_size=1.5)
    with pytest.raises(ValueError, match="at least 2 identities"):
        identity_split([0, 0, 0])
    with pytest.raises(ValueError, match="k must be"):
        identity_kfold([0, 1, 2], k=5)


def test_to_tensor_and_tensorfaces_batch():
    ds = SynthFaces(10, seed=0, size=48)
    x, y = to_tensor(ds[0])
    assert x.shape == (3, 48, 48) and x.dtype == torch.float32 and y == ds.labels[0]
    # "unit" scaling, channels first: pixel / 255 (a range check would also pass for / 510)
    torch.testing.assert_close(x, torch.from_numpy(ds[0]["image"]).permute(2, 0, 1).float() / 255)
    tf = TensorFaces(ds, indices=[1, 3, 5], size=32, grayscale=True)
    assert len(tf) == 3
    xb, yb = next(iter(torch.utils.data.DataLoader(tf, batch_size=3)))
    assert xb.shape == (3, 1, 32, 32) and yb.tolist() == [int(ds.labels[i]) for i in (1, 3, 5)]
    aus = TensorFaces(ds, target="aus")[0][1]
    assert aus.shape == (17,) and aus.dtype == torch.float32
    gray = SynthFaces(4, size=40, grayscale=True, transform=to_tensor)
    assert gray[0][0].shape == (1, 40, 40)


def test_materialize():
    ds = SynthFaces(12, seed=0, size=40, grayscale=True)
    images, labels = materialize(ds, indices=[0, 2, 4], progress=False)
    assert images.shape == (3, 40, 40) and images.dtype == np.uint8
    assert np.array_equal(images[1], ds[2]["image"]) and labels.tolist() == ds.labels[[0, 2, 4]].tolist()
    rgb, _ = materialize(SynthFaces(3, size=24), progress=False)
    assert rgb.shape == (3, 24, 24, 3)
    td = tensors(images, labels)
    assert td[0][0].shape == (1, 40, 40) and int(td[1][1]) == labels[1]
    torch.testing.assert_close(td[1][0][0], torch.from_numpy(images[1]).float() / 255)


def test_held_out_seed_renders_other_people_than_every_training_seed():
    from fer_utils.data import HELD_OUT_OFFSET, SynthFaces, held_out_seed
    assert [held_out_seed(s) for s in (0, 7)] == [1000, 1007]
    for bad in (-1, HELD_OUT_OFFSET):
        with pytest.raises(ValueError, match="seed must be in"):
            held_out_seed(bad)
    from fer_utils.data.synth_sample import make_identity
    people = [{repr(make_identity(seed, k)) for k in range(20)} for seed in (3, held_out_seed(3))]
    assert len(people[0]) == len(people[1]) == 20 and people[0].isdisjoint(people[1])   # a person is (seed, identity)
    own, apart = (SynthFaces(8, seed=seed, n_identities=4, size=48) for seed in (3, held_out_seed(3)))
    assert not np.array_equal(own[0]["image"], apart[0]["image"])
