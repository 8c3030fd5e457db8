"""Deep-Emotion: parameter counts, the identity-initialised transformer, dropout and eval mode."""
from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fer_utils.losses import l2_penalty
from fer_utils.models.deep_emotion import ALIGN_CORNERS, DeepEmotion, affine_warp
from fer_utils.recipes.deep_emotion import make_optimizer


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_reference_variant_has_66877_parameters():
    model = DeepEmotion("reference")
    assert n_params(model) == 66_877
    parts = {name: n_params(getattr(model, name)) for name in ("localisation", "fc_loc", "features", "classifier")}
    assert parts == {"localisation": 2_410, "fc_loc": 20_710, "features": 2_850, "classifier": 40_907}


def test_paper_variant_and_no_stn_counts():
    assert n_params(DeepEmotion("paper")) == 76_777
    assert n_params(DeepEmotion("paper", use_stn=False)) == 43_737
    assert n_params(DeepEmotion("reference", use_stn=False)) == 43_757
    with pytest.raises(ValueError, match="variant"):
        DeepEmotion("official")


@pytest.mark.parametrize("variant", ["paper", "reference"])
@pytest.mark.parametrize("use_stn", [True, False])
def test_shapes_and_gradients(variant, use_stn):
    model = DeepEmotion(variant, use_stn=use_stn)
    images = torch.randn(4, 1, 48, 48)
    logits = model(images)
    assert logits.shape == (4, 7)
    F.cross_entropy(logits, torch.tensor([0, 1, 2, 3])).backward()
    if use_stn:  # theta is trained through the sampler (the rest of the localisation net once theta's layer moves)
        assert model.fc_loc[-1].weight.grad.abs().sum() > 0
    assert model.theta(images).shape == (4, 2, 3)
    assert model.warp_images(images).shape == images.shape


@pytest.mark.parametrize("variant", ["paper", "reference"])
def test_transformer_starts_as_identity(variant):
    torch.manual_seed(0)
    model = DeepEmotion(variant)
    images = torch.randn(3, 1, 48, 48)
    theta = model.theta(images)
    torch.testing.assert_close(theta, torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]).expand(3, 2, 3))
    torch.testing.assert_close(model.warp_images(images), images, atol=1e-4, rtol=0)
    # the model with a fresh transformer computes the same function as the model without one
    plain = DeepEmotion(variant, use_stn=False)
    plain.load_state_dict({k: v for k, v in model.state_dict().items()
                           if not k.startswith(("localisation", "fc_loc"))})
    model.eval(), plain.eval()
    torch.testing.assert_close(model(images), plain(images), atol=1e-4, rtol=1e-4)


def test_align_corners_is_stated_and_no_warning():
    assert ALIGN_CORNERS is False
    theta = torch.tensor([[[1.0, 0, 0.5], [0, 1.0, 0]]])
    images = torch.arange(16.0).view(1, 1, 4, 4)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        shifted = affine_warp(images, theta)
    # x_s = x_t + 0.5 (normalised) = one pixel to the right in a 4-pixel row; the last column reads zeros
    torch.testing.assert_close(shifted[0, 0, :, :3], images[0, 0, :, 1:])
    assert shifted[0, 0, :, 3].abs().max() < 4  # half of the border pixel, half zero padding


@pytest.mark.parametrize("variant", ["paper", "reference"])
def test_dropout_follows_eval_mode(variant):
    model = DeepEmotion(variant).eval()
    images = torch.randn(8, 1, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(model(images), model(images))
    model.train()
    with torch.no_grad():
        assert not torch.allclose(model(images), model(images))


def test_always_on_dropout_flag_reproduces_the_unofficial_behaviour():
    model = DeepEmotion("reference", dropout_always_on=True).eval()
    images = torch.randn(8, 1, 48, 48)
    with torch.no_grad():
        assert not torch.allclose(model(images), model(images)), "eval mode must stay stochastic with the flag"


def test_gaussian_init():
    torch.manual_seed(0)
    paper = DeepEmotion("paper")
    weight = paper.classifier[1].weight
    assert abs(weight.std().item() - 0.05) < 0.005 and abs(weight.mean().item()) < 0.005
    assert paper.classifier[1].bias.abs().max() == 0
    assert paper.fc_loc[-1].weight.abs().max() == 0  # the transformer stays the identity
    reference = DeepEmotion("reference")  # PyTorch's default (uniform) init
    assert reference.classifier[1].weight.abs().max() <= 1 / 810**0.5 + 1e-6
    custom = DeepEmotion("reference", gaussian_init=True, init_std=0.01)
    assert abs(custom.classifier[1].weight.std().item() - 0.01) < 0.002


def test_l2_penalty_and_the_papers_optimizer():
    # ||w||^2 by hand: conv kernel 2x2 of ones -> 4, linear weight (1, 2) -> 1 + 4 = 5; total 9.
    # The conv bias (5), the BatchNorm scale (3) and the linear bias (7) are not weights: left out.
    tiny = nn.Sequential(nn.Conv2d(1, 1, 2), nn.BatchNorm2d(1), nn.Flatten(), nn.Linear(2, 1))
    with torch.no_grad():
        tiny[0].weight.fill_(1.0), tiny[0].bias.fill_(5.0), tiny[1].weight.fill_(3.0)
        tiny[3].weight.copy_(torch.tensor([[1.0, 2.0]])), tiny[3].bias.fill_(7.0)
    penalty = l2_penalty(tiny)
    assert penalty.item() == pytest.approx(9.0)
    penalty.backward()  # d||w||^2/dw = 2w, and nothing reaches the biases
    assert tiny[3].weight.grad.tolist() == [[2.0, 4.0]] and tiny[3].bias.grad is None and tiny[1].weight.grad is None
    model = DeepEmotion("paper")
    optimizer, schedule = make_optimizer(model)
    assert schedule is None and optimizer.defaults["lr"] == 0.005 and optimizer.defaults["weight_decay"] == 1e-4


def test_course_schedule_warms_up_then_decays_towards_zero():
    """COURSE: epoch 0 at lr / 10, then lr (1 + cos(pi (e - 1) / (E - 1))) / 2, stepped once per epoch."""
    from fer_utils.recipes.deep_emotion import COURSE, FULL
    assert FULL.schedule == "none" and COURSE.schedule == "warmup-cosine"
    optimizer, schedule = make_optimizer(DeepEmotion("reference"), COURSE)
    seen = []
    for _ in range(COURSE.epochs):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    E = COURSE.epochs
    expected = [0.0005] + [0.005 * (1 + math.cos(math.pi * (e - 1) / (E - 1))) / 2 for e in range(1, E)]
    assert seen == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert seen[1] == pytest.approx(0.005) and 0 < seen[-1] < 0.005 / 50   # the last epoch: almost still
    with pytest.raises(ValueError, match="schedule 'step'"):
        make_optimizer(DeepEmotion("reference"), replace(COURSE, schedule="step"))


def test_learns_a_toy_task_quickly():
    """Bright top half vs bright bottom half: a few Adam steps at the paper's learning rate suffice."""
    torch.manual_seed(0)
    images = torch.randn(64, 1, 48, 48) * 0.3
    labels = torch.randint(0, 2, (64,))
    images[labels == 0, :, :24] += 1
    images[labels == 1, :, 24:] += 1
    model = DeepEmotion("paper", num_classes=2)
    optimizer, _ = make_optimizer(model)
    for _ in range(15):
        optimizer.zero_grad()
        F.cross_entropy(model(images), labels).backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        assert (model(images).argmax(1) == labels).float().mean() > 0.9
