"""Notebook 10's experiment helpers (fer_utils.recipes.poster_experiments): pools, one run, attention maps."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from fer_utils.recipes import poster as poster_recipe
from fer_utils.recipes import poster_experiments as px
from fer_utils.train import Plateau

SETUP = px.PoolSetup(n=80, size=32)


@pytest.fixture(scope="module")
def pools() -> dict[str, dict]:
    return {dose: px.render_pool(dose, 3, SETUP) for dose in px.DOSES}


def test_pools_split_by_identity_and_cover_the_faces(pools):
    for pool in pools.values():
        assert tuple(pool["images"].shape) == (80, 3, 32, 32) and pool["images"].dtype == torch.float32
        parts = [set(pool[k].tolist()) for k in ("train", "val", "test")]
        assert sum(map(len, parts)) == 80 and not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
        assert len(pool["masks"]) == len(pool["test"]) == len(pool["raw"])
    assert set(pools["occlusion"]["occluders"]) == set(px.OCCLUDERS)
    assert set(pools["pose"]["occluders"]) == {"none"}


def test_a_pool_is_the_same_for_the_same_seed(pools):
    again = px.render_pool("occlusion", 3, SETUP)
    assert torch.equal(again["images"], pools["occlusion"]["images"])
    with pytest.raises(ValueError, match="dose"):
        px.render_pool("blur", 3, SETUP)


def test_one_run_records_the_test_accuracy_each_epoch(pools):
    recipe = replace(poster_recipe.GRID_SMOKE, epochs=2)
    model = px.build_arm(recipe, "image_only", None, 0)
    history = px.train_arm(model, recipe, pools["pose"], 0, Plateau(patience=5))
    assert len(history["test_accuracy"]) == history["epochs_run"] == 2 and history["plateaued"] is False


def test_landmark_stream_is_frozen_in_the_arms():
    recipe = poster_recipe.GRID_SMOKE
    donor = poster_recipe.build_model(replace(recipe, mode="v2")).face_landback.state_dict()
    for mode in ("v2", "v1"):
        model = px.build_arm(recipe, mode, donor, 1)
        assert not any(p.requires_grad for p in model.face_landback.parameters())
        assert all(torch.equal(v, donor[k]) for k, v in model.face_landback.state_dict().items())


def test_landmark_attention_is_a_distribution_over_the_image(pools):
    recipe = poster_recipe.GRID_SMOKE
    model = px.build_arm(recipe, "v2", poster_recipe.build_model(recipe).face_landback.state_dict(), 0)
    images = pools["pose"]["images"][:3]
    maps = px.landmark_attention(model, images)
    assert maps.shape == (3, 32, 32) and (maps >= 0).all()
    # scale 1 is an 8 x 8 map: each token's weight covers a 4 x 4 block of pixels, and the weights sum to 1
    np.testing.assert_allclose(maps.sum(axis=(1, 2)) / 16, np.ones(3), rtol=1e-5)
    with pytest.raises(ValueError, match="v2"):
        px.landmark_attention(px.build_arm(recipe, "v1", model.face_landback.state_dict(), 0), images)
