"""SCN: rank regularisation, relabelling, the label-noise generator, the network's state dict."""
import numpy as np
import pytest
import torch

from fer_utils import losses
from fer_utils.data.noise import flip_labels
from fer_utils.models.scn import SCN, scn_resnet18, small_backbone
from fer_utils.recipes import scn as recipe


def test_rank_regularization_by_hand():
    # 10 weights, beta 0.7 -> high group = top 7, low group = bottom 3
    alpha = torch.tensor([0.9, 0.1, 0.8, 0.2, 0.7, 0.3, 0.6, 0.5, 0.4, 0.95])
    high = (0.95 + 0.9 + 0.8 + 0.7 + 0.6 + 0.5 + 0.4) / 7
    low = (0.3 + 0.2 + 0.1) / 3
    gap = high - low  # 0.6929 - 0.2 = 0.4929
    assert float(losses.rank_regularization(alpha, 0.7, 0.15)) == 0.0  # gap above the margin
    assert float(losses.rank_regularization(alpha, 0.7, 0.6)) == pytest.approx(0.6 - gap, abs=1e-6)


def test_rank_regularization_equal_weights_is_the_margin():
    alpha = torch.full((64,), 0.42)
    assert float(losses.rank_regularization(alpha, 0.7, 0.15)) == pytest.approx(0.15, abs=1e-7)
    assert float(losses.rank_regularization(alpha, 0.7, 0.07)) == pytest.approx(0.07, abs=1e-7)


def test_rank_regularization_groups_use_int_of_batch_times_beta():
    # batch 5, beta 0.7 -> int(3.5) = 3 high, 2 low (as in the authors' code)
    alpha = torch.tensor([0.5, 0.4, 0.3, 0.2, 0.1])
    expected = 1.0 - ((0.5 + 0.4 + 0.3) / 3 - (0.2 + 0.1) / 2)
    assert float(losses.rank_regularization(alpha, 0.7, 1.0)) == pytest.approx(expected, abs=1e-6)


def test_rank_regularization_gradient_pushes_groups_apart():
    alpha = torch.tensor([0.6, 0.5, 0.5, 0.4], requires_grad=True)
    losses.rank_regularization(alpha, 0.5, 1.0).backward()
    assert (alpha.grad[:2] < 0).all() and (alpha.grad[2:] > 0).all()


def test_rank_regularization_rejects_empty_group():
    with pytest.raises(ValueError, match="empty group"):
        losses.rank_regularization(torch.rand(1), 0.7)


def test_relabel_changes_exactly_the_labels_past_the_margin():
    probs = torch.tensor([[0.70, 0.20, 0.10],    # label 1: 0.70 - 0.20 = 0.50 > 0.2 -> 0
                          [0.45, 0.30, 0.25],    # label 1: 0.15 <= 0.2 -> stays
                          [0.10, 0.10, 0.80],    # label 2 is the argmax -> stays
                          [0.55, 0.05, 0.40],    # label 2: 0.15 -> stays
                          [0.05, 0.90, 0.05]])   # label 0: 0.85 -> 1
    labels = torch.tensor([1, 1, 2, 2, 0])
    new, changed = losses.relabel(probs, labels, 0.2)
    assert changed.tolist() == [True, False, False, False, True]
    assert new.tolist() == [0, 1, 2, 2, 1]
    only_low = torch.tensor([False, True, True, True, True])  # the paper: low-importance group only
    new, changed = losses.relabel(probs, labels, 0.2, candidates=only_low)
    assert changed.tolist() == [False, False, False, False, True] and new.tolist() == [1, 1, 2, 2, 1]


def test_low_importance_group():
    alpha = torch.tensor([0.9, 0.1, 0.8, 0.2, 0.7, 0.3, 0.6, 0.5, 0.4, 0.95])
    assert losses.low_importance_group(alpha, 0.7).nonzero().flatten().tolist() == [1, 3, 5]


@pytest.mark.parametrize("rate", [0.0, 0.1, 0.2, 0.3, 1.0])
def test_noise_flips_exactly_the_requested_share_to_another_class(rate):
    labels = np.random.default_rng(0).integers(0, 7, size=1000)
    noisy, flipped = flip_labels(labels, rate, 7, seed=3)
    assert flipped.sum() == round(rate * 1000)
    assert (noisy[flipped] != labels[flipped]).all(), "a flipped label must change class"
    assert (noisy[~flipped] == labels[~flipped]).all(), "an unflipped label must stay"
    assert ((noisy != labels) == flipped).all()


def test_noise_new_class_is_uniform_over_the_others():
    labels = np.zeros(70000, np.int64)
    noisy, flipped = flip_labels(labels, 1.0, 7, seed=0)
    counts = np.bincount(noisy, minlength=7)
    assert counts[0] == 0 and np.all(np.abs(counts[1:] / 70000 - 1 / 6) < 0.01)


def test_noise_bernoulli_mode_and_errors():
    labels = np.random.default_rng(1).integers(0, 7, size=20000)
    noisy, flipped = flip_labels(labels, 0.2, 7, seed=0, exact=False)
    assert abs(flipped.mean() - 0.2) < 0.01 and (noisy[flipped] != labels[flipped]).all()
    with pytest.raises(ValueError, match="rate"):
        flip_labels(labels, 1.5, 7)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 7\)"):
        flip_labels(np.array([0, 9]), 0.1, 7)


def test_scn_resnet18_has_the_authors_keys():
    model = scn_resnet18(7)
    keys = list(model.state_dict())
    assert keys[:2] == ["features.0.weight", "features.1.weight"]
    assert keys[-4:] == ["fc.weight", "fc.bias", "alpha.0.weight", "alpha.0.bias"]
    assert sum(p.numel() for p in model.parameters()) == 11_180_616


def test_scn_logits_are_alpha_times_fc():
    torch.manual_seed(0)
    model = SCN(small_backbone(1, (4, 8)), 8, 7).eval()
    images = torch.randn(3, 1, 16, 16)
    logits, alpha = model(images)
    x = model.features(images).flatten(1)
    assert torch.allclose(logits, torch.sigmoid(model.alpha[0](x)) * model.fc(x), atol=1e-6)
    assert alpha.shape == (3,) and ((alpha > 0) & (alpha < 1)).all()
    model.weighting = False
    assert torch.allclose(model(images)[0], model.fc(x), atol=1e-6)


def test_training_relabels_only_from_the_start_epoch():
    """relabel_epoch is 1-based: with 2 epochs and relabel_epoch=2 nothing changes in epoch 1 and, with
    margin_2 = 0 (any label that is not the argmax moves), random labels do change in epoch 2.
    (Checking only a run that never reaches relabel_epoch could not catch relabelling that never happens.)"""
    rec = recipe.variant(recipe.SMOKE, "scn")
    rec = type(rec)(**{**rec.__dict__, "epochs": 2, "relabel_epoch": 2, "margin_2": 0.0, "widths": (4,)})
    torch.manual_seed(0)
    images, labels = torch.randn(128, 1, 8, 8), np.random.default_rng(0).integers(0, 7, 128)
    history = recipe.train(recipe.build_model(rec), images, labels, rec, progress=False)
    first, second = history["relabelled_share"]
    assert first == 0.0 and second > 0.0
    assert ((history["labels"] != labels) == history["relabelled"]).all()
    assert history["relabelled"].mean() == pytest.approx(second)
    with pytest.raises(ValueError, match="unknown SCN arm"):
        recipe.variant(rec, "everything")
