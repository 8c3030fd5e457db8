"""fer_utils.scoring on models whose answer is known.

``OneRegionModel`` sees the image only inside a fixed region, so every faithful map must put its
peak and all its mass there (hit 1, energy ratio 1 / area); ``EverywhereModel`` weighs every pixel
the same, so its gradient map scores exactly chance (ratio 1).
"""
from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from torch import nn

from fer_utils import explain, scoring
from fer_utils.labels import CLASSES_7

SIZE = 24
HAPPY, ANGER = CLASSES_7.index("happiness"), CLASSES_7.index("anger")


def box(top, left, height, width):
    m = np.zeros((SIZE, SIZE), bool)
    m[top:top + height, left:left + width] = True
    return m


MASKS = {"brows": box(2, 4, 4, 16), "eyes": box(7, 4, 4, 16), "nose": box(11, 10, 4, 4),
         "mouth": box(16, 6, 5, 12), "cheeks": box(11, 2, 4, 6) | box(11, 16, 4, 6)}


class MaskLayer(nn.Module):
    def __init__(self, region: np.ndarray):
        super().__init__()
        self.register_buffer("mask", torch.from_numpy(region).float())

    def forward(self, x):
        return x * self.mask


class OneRegionModel(nn.Module):
    """7 logits; the happiness logit = 20 * mean of ReLU(conv(image)) inside ``region``, others 0."""

    def __init__(self, region: np.ndarray):
        super().__init__()
        conv = nn.Conv2d(1, 3, 1)
        with torch.no_grad():
            conv.weight.fill_(1.0)
            conv.bias.zero_()
        self.features = nn.Sequential(conv, nn.ReLU(), MaskLayer(region))   # zero outside the region
        self.register_buffer("mask", torch.from_numpy(region).float())

    def forward(self, images):
        evidence = self.features(images).sum(dim=(1, 2, 3)) / self.mask.sum()
        logits = torch.zeros(len(images), 7)
        logits[:, HAPPY] = 20 * evidence
        return logits


class EverywhereModel(nn.Module):
    def forward(self, images):
        logits = torch.zeros(len(images), 7)
        logits[:, HAPPY] = images.sum(dim=(1, 2, 3))
        return logits


def images(n=3):
    torch.manual_seed(0)
    return 0.5 + 0.5 * torch.rand(n, 1, SIZE, SIZE)


def test_class_regions_follow_the_prototypes():
    assert scoring.class_regions("happiness") == ("cheeks", "eyes", "mouth")   # AU6 + AU12
    assert scoring.class_regions("anger") == ("brows", "eyes", "mouth")        # AU4, 5, 7, 23
    assert scoring.class_regions("neutral") == ()


def test_a_model_that_looks_at_one_region_scores_one_there():
    model = OneRegionModel(MASKS["mouth"])
    maps = explain.grad_cam(model, images(), HAPPY, target_layer=model.features)
    masks = [MASKS] * 3
    happy = scoring.localisation_scores(maps, masks, [HAPPY] * 3, CLASSES_7)["happiness"]
    union = scoring.union_mask(MASKS, ("cheeks", "eyes", "mouth"))
    assert happy["hit"] == 1.0 and happy["mass"] == pytest.approx(1.0)
    assert happy["area"] == pytest.approx(union.mean())
    assert happy["ratio"] == pytest.approx(1 / union.mean())
    brows = scoring.au_localisation_scores(maps, masks, au=4)     # a region it never looks at
    assert brows["hit"] == 0.0 and brows["mass"] == pytest.approx(0.0)


def test_a_model_that_looks_everywhere_scores_chance():
    from captum.attr import Saliency

    x = images()
    maps = Saliency(EverywhereModel()).attribute(x, target=HAPPY).sum(1).numpy()
    scores = scoring.localisation_scores(maps, [MASKS] * 3, [ANGER] * 3, CLASSES_7)
    assert scores["anger"]["ratio"] == pytest.approx(1.0)
    assert scores["all"]["n"] == 3 and scores["skipped"] == 0
    neutral = scoring.localisation_scores(maps, [MASKS] * 3, [0, ANGER, ANGER], CLASSES_7)
    assert neutral["skipped"] == 1 and neutral["all"]["n"] == 2


def test_road_and_deletion_reward_the_true_region():
    model = OneRegionModel(MASKS["mouth"]).eval()
    x = 0.05 * images(2)
    x[:, 0, MASKS["mouth"]] = 1.0          # a bright mouth on a dark face: removing it costs the class
    true_map = np.stack([MASKS["mouth"].astype(np.float32)] * 2)
    wrong_map = np.stack([MASKS["brows"].astype(np.float32)] * 2)
    assert scoring.road(model, x, true_map, [HAPPY] * 2).mean() > scoring.road(model, x, wrong_map, [HAPPY] * 2).mean()
    good = scoring.deletion_insertion(model, x, true_map, [HAPPY] * 2)
    bad = scoring.deletion_insertion(model, x, wrong_map, [HAPPY] * 2)
    assert good["deletion_auc"] < bad["deletion_auc"] and good["insertion_auc"] > bad["insertion_auc"]


@functools.lru_cache(maxsize=1)
def trained_cnn() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A small CNN trained to say whether a bright square is in the image (seeded)."""
    torch.manual_seed(0)
    n = 128
    x = 0.3 * torch.rand(n, 1, 16, 16)
    y = torch.randint(0, 2, (n,))
    rows, cols = torch.randint(0, 13, (n,)), torch.randint(0, 13, (n,))
    for i in range(n):
        if y[i]:
            x[i, 0, rows[i]:rows[i] + 3, cols[i]:cols[i] + 3] = 1.0
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(60):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    assert (model(x).argmax(1) == y).float().mean() > 0.9, "the toy CNN did not learn"
    return model.eval(), x[y == 1][:6], y[y == 1][:6]


def test_a_randomised_models_grad_cam_differs_from_the_trained_ones():
    model, x, y = trained_cnn()
    explain_fn = lambda m: explain.grad_cam(m, x, y, target_layer=m[2])  # noqa: E731
    rows = scoring.cascading_randomization(model, explain_fn)
    assert [r["layer"] for r in rows] == ["6", "2", "0"]                  # from the logits down
    assert rows[0]["spearman"] < 0.5, "randomising the logits layer must change Grad-CAM"
    assert scoring.sanity_verdict(rows)
    same = scoring.map_similarity(explain_fn(model), explain_fn(model))
    assert same["spearman"] == pytest.approx(1.0) and same["ssim"] == pytest.approx(1.0)
    assert not scoring.sanity_verdict(same)
    before = model[0].weight.clone()
    scoring.cascading_randomization(model, explain_fn, order=["0"])
    assert torch.equal(model[0].weight, before), "the model itself must not change"


def test_bad_input_is_named():
    with pytest.raises(KeyError, match="unknown class"):
        scoring.class_regions("joy")
    with pytest.raises(ValueError, match="3 maps, 2 masks"):
        scoring.localisation_scores(np.zeros((3, SIZE, SIZE)), [MASKS] * 2, [1, 1], CLASSES_7)
