"""POSTER's course landmark stream pre-trained on SynthFaces' true landmarks (fer_utils.recipes.poster_pretrain): the
cache key follows the configuration and the setup, a second call reads the cache, pre-training lowers the landmark
error on held-out faces, training is deterministic, and a loaded stream is frozen as the authors freeze theirs
(requires_grad False; their BatchNorms still follow model.train()). Small sizes: the smoke PosterCourse at 32 px."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from fer_utils.recipes import poster
from fer_utils.recipes import poster_pretrain as pp
from fer_utils.train import train_step

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RECIPE = poster.SMOKE                     # PosterCourse at 32 px, dims (8, 16, 16)
SETUP = pp.LandmarkPretraining(n=512, epochs=6, batch_size=32, lr=5e-3, n_heldout=64)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("poster_pretrain")
    state, info = pp.pretrained_landmarks(RECIPE, SETUP, cache_dir=folder, progress=False)
    return folder, state, info


def test_the_key_changes_with_the_configuration_and_the_setup():
    config = pp.stream_config(RECIPE)
    key = pp.pretrain_key(config, SETUP)
    assert key == pp.pretrain_key(dict(reversed(list(config.items()))), SETUP)          # order of the dict ignored
    assert pp.stream_config(replace(RECIPE, epochs=9, lr=1.0, mode="v1")) == config     # expression training aside
    setups = [replace(SETUP, seed=1), replace(SETUP, epochs=7), replace(SETUP, lr=1e-3),
              replace(SETUP, difficulty="wild"), replace(SETUP, n=513), replace(SETUP, batch_size=16)]
    configs = [{**config, "dims": (8, 16, 32)}, {**config, "input_size": 48}, {**config, "normalize": "unit"}]
    keys = {pp.pretrain_key(config, s) for s in setups} | {pp.pretrain_key(c, SETUP) for c in configs}
    assert key not in keys and len(keys) == len(setups) + len(configs)


def test_a_second_call_reads_the_cache(pretrained):
    folder, state, info = pretrained
    threads = torch.get_num_threads()
    assert info["cached"] is False and [p.name for p in folder.iterdir()] == [f"landmarks_{info['key']}_t{threads}.pt"]
    assert len(info["train_loss"]) == SETUP.epochs
    again, cached = pp.pretrained_landmarks(RECIPE, SETUP, cache_dir=folder, progress=False)
    assert cached["cached"] is True
    assert {k: v for k, v in cached.items() if k != "cached"} == {k: v for k, v in info.items() if k != "cached"}
    assert list(again) == list(state) and all(torch.equal(again[k], state[k]) for k in state)
    assert set(state) == set(poster.build_model(RECIPE).face_landback.state_dict())


def test_pretraining_is_deterministic(pretrained):
    """The same setup trains to the same weights, bit for bit (seeded faces, initialisation and batch order)."""
    _, state, _ = pretrained
    stream, history, _ = pp.pretrain_landmarks(pp.stream_config(RECIPE), SETUP, progress=False)
    assert all(torch.equal(stream.state_dict()[k], state[k]) for k in state)
    assert history["train_loss"][-1] < history["train_loss"][0]


def test_pretraining_lowers_the_landmark_error_on_heldout_faces(pretrained):
    """On faces of other people (seed + 1), the pre-trained stream's mean point error in pixels is well below the
    untrained stream's. (Read through the same target scale, the untrained stream's output is close to 0, i.e. it
    guesses the mean training shape: the best constant guess.)"""
    _, state, info = pretrained
    config = pp.stream_config(RECIPE)
    images, points = pp.landmark_faces(config, SETUP.n_heldout, SETUP.seed + 1, SETUP.difficulty)
    torch.manual_seed(SETUP.seed)
    untrained = pp.build_stream(config)
    trained = pp.build_stream(config)
    trained.load_state_dict(state)
    scale = (torch.tensor(info["target_mean"]), torch.tensor(info["target_std"]))
    error, before = (pp.landmark_error(net, images, points, scale) for net in (trained, untrained))
    assert error == pytest.approx(info["heldout_error_px"], rel=1e-5)
    assert before == pytest.approx(info["mean_shape_error_px"], rel=0.05)
    assert error < 0.8 * before
    assert points.shape == (SETUP.n_heldout, 68, 2) and 0 <= float(points.min()) and float(points.max()) < 32


def test_normalised_points_span_the_image():
    """u = 2 (p + 0.5) / S - 1: the outer edges of a 32 px image (-0.5 and 31.5) map to -1 and 1, x before y."""
    points = torch.tensor([[[-0.5, 31.5], [15.5, 7.5]]])
    assert pp.normalise_points(points, 32).tolist() == [[-1.0, 1.0, 0.0, -0.5]]


def _one_training_step(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """One SAM step of the recipe on a random batch; returns the state before it."""
    optimizer, _ = poster.make_optimizer(model, RECIPE)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    torch.manual_seed(0)
    batch = (torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3]))
    model.train()
    train_step(model, batch, lambda m, b: poster.loss_step(m, b, RECIPE), optimizer)
    return before


def test_a_loaded_stream_is_frozen_in_a_training_step(pretrained):
    """Loaded exactly; no gradient and no change for the stream's parameters in a PosterCourse training step, while
    last_face_conv (trainable in the authors' code) moves; without the freeze the stream would get gradients."""
    _, state, _ = pretrained
    free = poster.build_model(RECIPE)                          # the course recipe trains the stream (no freeze)
    _one_training_step(free)
    assert any(p.grad is not None for p in free.face_landback.parameters())

    model = poster.build_model(RECIPE)
    pp.load_landmark_stream(model, state)
    assert all(torch.equal(model.face_landback.state_dict()[k], state[k]) for k in state)
    before = _one_training_step(model)
    for name, p in model.face_landback.named_parameters():
        assert not p.requires_grad and p.grad is None and torch.equal(p, before[f"face_landback.{name}"]), name
    assert model.last_face_conv.weight.grad is not None
    assert not torch.equal(model.last_face_conv.weight, before["last_face_conv.weight"])
    stats = [k for k in before if k.startswith("face_landback.") and k.endswith("running_mean")]
    assert stats and any(not torch.equal(model.state_dict()[k], before[k]) for k in stats)   # the authors' quirk 5


def test_batch_statistics_false_keeps_the_stream_in_eval_mode(pretrained):
    _, state, _ = pretrained
    model = poster.build_model(RECIPE)
    pp.load_landmark_stream(model, state, batch_statistics=False)
    pp.load_landmark_stream(model, state, batch_statistics=False)          # a second call adds no second hook
    assert len(model.face_landback._forward_pre_hooks) == 1
    before = _one_training_step(model)
    assert model.training and not model.face_landback.training
    assert all(torch.equal(model.state_dict()[k], before[k]) for k in before if k.startswith("face_landback."))
    with pytest.raises(ValueError, match="no landmark stream"):
        pp.load_landmark_stream(poster.build_model(replace(RECIPE, mode="image_only")), state)


def test_the_cache_never_gives_a_state_trained_with_another_thread_count(tmp_path):
    from fer_utils.recipes import cached_pretraining

    calls = []

    def train():
        calls.append(torch.get_num_threads())
        return {"w": torch.full((2,), float(len(calls)))}, {"n": len(calls)}

    before = torch.get_num_threads()
    try:
        for threads, cached in ((1, False), (1, True), (2, False), (2, True)):
            torch.set_num_threads(threads)
            state, info = cached_pretraining(tmp_path / "net_key.pt", train)
            assert info["cached"] is cached and state["w"][0] == (1.0 if threads == 1 else 2.0)
    finally:
        torch.set_num_threads(before)
    assert calls == [1, 2] and sorted(p.name for p in tmp_path.iterdir()) == ["net_key_t1.pt", "net_key_t2.pt"]
