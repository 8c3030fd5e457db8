"""Joint augmentation: flips swap landmark indices, masks and points move with the image."""
import numpy as np
import pytest
import torch

from fer_utils.data.transforms import (
    FLIP_5, FLIP_68, eval_transform, hflip_sample, train_transform, transform_sample,
)

H, W = 40, 50


def _sample(gray=False):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (H, W) if gray else (H, W, 3), dtype=np.uint8)
    mask = np.zeros((H, W), bool)
    mask[10:15, 3:8] = True
    return {"image": image, "landmarks": rng.uniform(5, 35, (68, 2)), "points5": rng.uniform(5, 35, (5, 2)),
            "masks": {"eyes": mask}, "label": 3}


def test_flip_permutations_are_involutions():
    for perm in (FLIP_68, FLIP_5):
        assert sorted(perm) == list(range(len(perm)))
        assert [perm[perm[i]] for i in range(len(perm))] == list(range(len(perm)))
    assert FLIP_68[36] == 45 and FLIP_68[39] == 42 and FLIP_68[48] == 54 and FLIP_68[0] == 16
    assert FLIP_68[30] == 30 and FLIP_68[51] == 51 and FLIP_68[8] == 8


def test_hflip_moves_image_points_and_masks():
    s = _sample()
    out = hflip_sample(s)
    assert torch.equal(out["image"], torch.from_numpy(s["image"][:, ::-1].copy()).permute(2, 0, 1))
    mirrored = s["landmarks"].copy()
    mirrored[:, 0] = W - 1 - mirrored[:, 0]
    np.testing.assert_allclose(out["landmarks"].numpy(), mirrored[FLIP_68], atol=1e-4)
    p5 = s["points5"].copy()
    p5[:, 0] = W - 1 - p5[:, 0]
    np.testing.assert_allclose(out["points5"].numpy(), p5[FLIP_5], atol=1e-4)
    assert out["masks"]["eyes"].dtype == torch.bool
    assert torch.equal(out["masks"]["eyes"], torch.from_numpy(s["masks"]["eyes"][:, ::-1].copy()))
    assert out["label"] == 3


def test_flip_keeps_left_eye_on_the_left():
    s = _sample()
    s["points5"] = np.array([[10.0, 10], [30, 10], [20, 20], [12, 30], [28, 30]])
    out = hflip_sample(s)["points5"]
    assert out[0, 0] < out[1, 0] and out[3, 0] < out[4, 0]  # still image-left first
    np.testing.assert_allclose(out[0], [W - 1 - 30, 10])


def test_points_follow_the_pixels_under_rotation():
    """A bright dot under a landmark is still under it after a random rotation."""
    image = np.zeros((64, 64, 3), np.uint8)
    image[14:17, 44:47] = 255  # dot centred at x=45, y=15
    s = {"image": image, "points5": np.array([[45.0, 15], [20, 20], [32, 32], [25, 45], [40, 45]])}
    torch.manual_seed(0)
    out = transform_sample(s, train_transform(flip_p=1.0, degrees=30, jitter=0.0, erase_p=0.0))
    x, y = out["points5"][1].round().int().tolist()  # the dot's point became index 1 after the flip
    assert out["image"][0, y - 1:y + 2, x - 1:x + 2].max() > 0.5


def test_train_and_eval_outputs():
    torch.manual_seed(0)
    out = transform_sample(_sample(), train_transform(size=32, erase_p=1.0))
    assert out["image"].shape == (3, 32, 32) and out["image"].dtype == torch.float32
    assert out["landmarks"].shape == (68, 2) and out["masks"]["eyes"].shape == (32, 32)
    assert out["masks"]["eyes"].dtype == torch.bool
    gray = transform_sample(_sample(gray=True), train_transform())
    assert gray["image"].shape == (1, H, W)
    ev = transform_sample(_sample(), eval_transform(48, normalize="symmetric"))
    assert ev["image"].shape == (3, 48, 48)
    np.testing.assert_allclose(ev["landmarks"].numpy()[:, 1], _sample()["landmarks"][:, 1] * 48 / H, rtol=1e-4)
    # "symmetric" is x / 127.5 - 1 on every pixel: 0 -> -1, 255 -> +1 (a [0, 1] output would also lie in [-1, 1])
    raw = _sample()
    raw["image"][0, 0], raw["image"][0, 1] = 0, 255
    plain = transform_sample(raw, eval_transform(normalize="symmetric"))["image"]
    torch.testing.assert_close(plain, torch.from_numpy(raw["image"]).permute(2, 0, 1).float() / 127.5 - 1)
    assert plain[:, 0, 0].tolist() == [-1.0] * 3 and plain[:, 0, 1].tolist() == [1.0] * 3


@pytest.mark.filterwarnings("error::UserWarning")
def test_random_erasing_touches_only_the_image():
    s = _sample()
    torch.manual_seed(0)
    out = transform_sample(s, train_transform(flip_p=0.0, degrees=0.0, jitter=0.0, erase_p=1.0))
    np.testing.assert_allclose(out["landmarks"].numpy(), s["landmarks"], atol=1e-4)
    assert torch.equal(out["masks"]["eyes"], torch.from_numpy(s["masks"]["eyes"]))


def test_flip_on_a_synthface_keeps_points_on_their_regions():
    from fer_utils.data.synthetic import SynthFaces

    item = SynthFaces(4, seed=0, difficulty="lab")[1]
    out = hflip_sample(item)
    for sample in (item, out):
        eyes, mouth = np.asarray(sample["masks"]["eyes"]), np.asarray(sample["masks"]["mouth"])
        p5 = np.asarray(sample["points5"]).round().astype(int)
        assert eyes[p5[0, 1], p5[0, 0]] and eyes[p5[1, 1], p5[1, 0]]
        assert p5[0, 0] < p5[1, 0] and p5[3, 0] < p5[4, 0]
        assert mouth[:, : p5[2, 0]].any() and mouth[:, p5[2, 0]:].any()
