"""RAN: region-biased loss, region boxes, the attention pooling, forced occluders in SynthFaces."""
from dataclasses import replace

import numpy as np
import pytest
import torch

from fer_utils import losses
from fer_utils.data import SynthFaces
from fer_utils.models.ran import RAN
from fer_utils.models.scn import small_backbone
from fer_utils.recipes import ran as recipe


def test_region_biased_loss_by_hand():
    mu = torch.tensor([[0.50, 0.60, 0.40],    # max region 0.60 - face 0.50 = 0.10 > 0.02 -> 0
                       [0.50, 0.51, 0.30],    # 0.01 -> 0.02 - 0.01 = 0.01
                       [0.80, 0.20, 0.10]])   # -0.60 -> 0.62
    expected = (0.0 + 0.01 + 0.62) / 3
    assert float(losses.region_biased_loss(mu, 0.02)) == pytest.approx(expected, abs=1e-6)
    assert float(losses.region_biased_loss(torch.full((4, 5), 0.3), 0.02)) == pytest.approx(0.02, abs=1e-7)
    with pytest.raises(ValueError, match="whole face in column 0"):
        losses.region_biased_loss(torch.rand(4), 0.02)


def test_region_biased_loss_gradient_lifts_the_best_region_and_lowers_the_face():
    mu = torch.tensor([[0.5, 0.4, 0.3]], requires_grad=True)
    losses.region_biased_loss(mu, 0.02).backward()
    assert mu.grad[0, 0] > 0 and mu.grad[0, 1] < 0 and mu.grad[0, 2] == 0


def test_ran_pooling_matches_the_equations():
    torch.manual_seed(0)
    model = RAN(small_backbone(1, (4, 8)), 8, 7, crop_size=8).eval()
    images = torch.randn(2, 1, 24, 24)
    boxes = torch.tensor([[0, 0, 24, 24], [0, 0, 12, 12], [12, 12, 24, 24]], dtype=torch.float32).expand(2, 3, 4)
    logits, mu, nu = model(images, boxes)
    assert logits.shape == (2, 7) and mu.shape == (2, 3) and nu.shape == (2, 3)
    f = model.backbone(model.crops(images, boxes)).flatten(1).view(2, 3, 8)
    m = torch.sigmoid(model.self_attention[0](f)).squeeze(2)
    fm = (m[..., None] * f).sum(1) / m.sum(1, keepdim=True)
    pair = torch.cat([f, fm[:, None].expand_as(f)], 2)
    n = torch.sigmoid(model.relation_attention[0](pair)).squeeze(2)
    pooled = ((m * n)[..., None] * pair).sum(1) / (m * n).sum(1, keepdim=True)
    assert torch.allclose(mu, m, atol=1e-6) and torch.allclose(nu, n, atol=1e-6)
    assert torch.allclose(logits, model.fc(pooled), atol=1e-5)


def test_crops_cut_the_boxes():
    model = RAN(small_backbone(1, (4,)), 4, 7, crop_size=4)
    images = torch.arange(64, dtype=torch.float32).view(1, 1, 8, 8)  # linear ramp: bilinear sampling is exact
    crop = model.crops(images, torch.tensor([[[2.0, 1.0, 6.0, 5.0]]]))  # pixels x 2..5, y 1..4
    assert torch.allclose(crop[0, 0], images[0, 0, 1:5, 2:6], atol=1e-4)


def test_region_boxes_follow_the_landmarks():
    ds = SynthFaces(3, seed=0, difficulty="wild", size=48, grayscale=True)
    lm = np.stack([ds[i]["landmarks"] for i in range(3)])
    boxes = recipe.region_boxes(lm, "landmarks", 48)
    assert boxes.shape == (3, 5, 4)
    assert np.allclose(boxes[:, 0], [0, 0, 48, 48])
    mouth = boxes[:, 4]
    inside = (lm[:, 48:68, 0] >= mouth[:, None, 0]) & (lm[:, 48:68, 0] <= mouth[:, None, 2])
    assert inside.all(), "every mouth point lies inside the mouth box"
    assert recipe.region_boxes(lm, "grid", 48).shape == (3, 5, 4)
    with pytest.raises(ValueError, match="landmarks' or 'grid'"):
        recipe.region_boxes(lm, "random", 48)


def test_forced_occluder_changes_only_the_occluder():
    ds = SynthFaces(4, seed=1, difficulty="wild", size=48, grayscale=True)
    clean, masked = ds.render_item(2, occluder="none"), ds.render_item(2, occluder="mask")
    assert masked["occluder"] == "mask" and clean["occluder"] == "none"
    assert np.array_equal(clean["landmarks"], masked["landmarks"]) and clean["label"] == masked["label"]
    diff = np.abs(clean["image"].astype(int) - masked["image"].astype(int)) > 10
    assert diff[: 20].mean() < diff[30:].mean(), "a mask covers the lower face, not the top"


def test_ran_loss_step_is_cross_entropy_plus_weighted_region_biased_loss():
    """loss = CE + rb_weight * L_RB. A margin of 1 keeps every hinge active (mu lies in (0, 1)), so
    L_RB = mean_i (1 - (max_k mu_ik - mu_i0)) by hand; weight 0.5 so that a dropped weight shows."""
    rec = replace(recipe.SMOKE, rb_margin=1.0, rb_weight=0.5)
    torch.manual_seed(0)
    model = recipe.build_model(rec).eval()  # no dropout: the forward below sees the same mu
    images, labels = torch.randn(8, 1, 48, 48), torch.randint(0, 7, (8,))
    boxes = torch.tensor([[0, 0, 48, 48], [0, 0, 29, 29], [19, 0, 48, 29], [0, 19, 29, 48], [19, 19, 48, 48]],
                         dtype=torch.float32).expand(8, 5, 4)
    loss, logs = recipe.loss_step(model, (images, boxes, labels), rec)
    with torch.no_grad():
        logits, mu, _ = model(images, boxes)
    rb = float((1.0 - (mu[:, 1:].max(1).values - mu[:, 0])).mean())
    ce = float(torch.nn.functional.cross_entropy(logits, labels))
    assert logs["rb"] == pytest.approx(rb, rel=1e-5) and logs["ce"] == pytest.approx(ce, rel=1e-5)
    assert float(loss.detach()) == pytest.approx(ce + 0.5 * rb, rel=1e-5)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    off, off_logs = recipe.loss_step(model, (images, boxes, labels), replace(rec, rb_weight=0.0))
    assert float(off.detach()) == pytest.approx(ce, rel=1e-5) and off_logs["rb"] == 0.0
