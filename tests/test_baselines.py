"""Notebook 02's baselines: LeNet-5, the small-kernel GAP CNN of Qiao et al., deep features + SVM."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from fer_utils.models import count_parameters
from fer_utils.models.baselines import LeNet5, SmallCNN, SmallKernelCNN
from fer_utils.recipes.baselines import extract_features, fit_svm


def test_lenet5_textbook_count_at_32x32():
    """The common modern LeNet-5 (ReLU, max-pool, full C3) on 32x32 with 10 classes: 61,706 parameters."""
    model = LeNet5(num_classes=10, input_size=32)
    assert count_parameters(model) == 61_706
    assert model(torch.zeros(2, 1, 32, 32)).shape == (2, 10)


def test_lenet5_on_fer_inputs():
    model = LeNet5()
    assert count_parameters(model) == 168_971  # the docstring's table
    images = torch.zeros(3, 1, 48, 48)
    assert model(images).shape == (3, 7)
    assert model.embed(images).shape == (3, 84)
    with pytest.raises(ValueError, match="input_size"):
        LeNet5(input_size=12)


def test_small_kernel_cnn_table():
    model = SmallKernelCNN()
    assert [count_parameters(block) for block in model.features] == [9_632, 55_552, 221_696, 885_760]
    assert count_parameters(model) == 1_174_439
    images = torch.zeros(2, 1, 48, 48)
    assert model(images).shape == (2, 7)
    assert model.embed(images).shape == (2, 256)


def test_gap_head_saves_parameters_over_fc_head():
    gap, fc = SmallKernelCNN(head="gap"), SmallKernelCNN(head="fc")
    assert count_parameters(fc) == 3_540_135
    assert count_parameters(fc) - count_parameters(gap) == 2_365_696
    assert fc(torch.zeros(2, 1, 48, 48)).shape == (2, 7)
    # GAP does not care about the input size; the flattening head does.
    assert gap(torch.zeros(1, 1, 64, 64)).shape == (1, 7)
    with pytest.raises(ValueError, match="head"):
        SmallKernelCNN(head="max")


def test_small_cnn_unchanged():
    assert count_parameters(SmallCNN()) == 287_783


def test_extract_features_are_the_eval_mode_embeddings():
    torch.manual_seed(0)
    images = torch.randn(160, 1, 16, 16)
    labels = (images[:, :, :8].mean(dim=(1, 2, 3)) > images[:, :, 8:].mean(dim=(1, 2, 3))).long()
    model = SmallKernelCNN(num_classes=2, widths=(8, 16))
    model.train()
    loader = DataLoader(TensorDataset(images, labels), batch_size=64)
    features, targets = extract_features(model, loader)
    assert features.shape == (160, 16) and features.dtype == np.float32
    np.testing.assert_array_equal(targets, labels.numpy())
    assert not model.training, "features are extracted in eval mode"
    with torch.no_grad():  # the embedding of each image, in the loader's order, with BatchNorm's running stats
        np.testing.assert_allclose(features, model.embed(images).numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(TypeError, match="embed"):
        extract_features(torch.nn.Linear(2, 2), loader)


def test_svm_bends_around_xor_clusters_and_standardises():
    """Four clusters in an XOR layout: no straight line gets more than 3 of 4 clusters right, the RBF
    SVM gets all; scaling one feature by 1000 changes nothing because each dimension is standardised."""
    rng = np.random.default_rng(0)
    corners = np.array([[0, 0], [4, 4], [0, 4], [4, 0]], dtype=float)
    points = corners[np.repeat(np.arange(4), 30)] + rng.normal(scale=0.5, size=(120, 2))
    labels = np.repeat([0, 0, 1, 1], 30)
    train, test = np.arange(0, 120, 2), np.arange(1, 120, 2)
    assert fit_svm(points[train], labels[train]).score(points[test], labels[test]) == 1.0
    assert fit_svm(points[train], labels[train], kernel="linear").score(points[test], labels[test]) <= 0.8
    stretched = points * [1.0, 1000.0]
    assert fit_svm(stretched[train], labels[train]).score(stretched[test], labels[test]) == 1.0


def test_plateau_from_waits_for_its_start_epoch():
    from fer_utils.train import Plateau

    flat = [1.0, 1.0, 1.0, 1.0]                 # no improvement at all: Plateau stops after patience + 1 epochs
    assert Plateau(patience=2).reached(flat)
    assert not Plateau(patience=2, start=5).reached(flat)
    assert Plateau(patience=2, start=5).reached(flat + [1.0])
    falling = [5.0, 4.0, 3.0, 2.0, 1.0, 0.5]    # still improving: neither rule stops
    assert not Plateau(patience=2, start=1).reached(falling)
