"""fer_utils.explain on models whose answer is known: a network that only looks at one region.

``RegionModel`` sees the image only through a fixed mask: its last feature maps are zero
outside the region, and the class-1 logit grows with the brightness inside it. Every
attribution method must then put (almost) all of its mass inside that region, and its peak too.
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from fer_utils import explain, viz  # noqa: E402

SIZE = 24


def box_mask(top: int, left: int, height: int, width: int, size: int = SIZE) -> torch.Tensor:
    mask = torch.zeros(size, size, dtype=torch.bool)
    mask[top:top + height, left:left + width] = True
    return mask


class MaskLayer(nn.Module):
    def __init__(self, mask: torch.Tensor):
        super().__init__()
        self.register_buffer("mask", mask.float())

    def forward(self, x):
        return x * self.mask


class RegionModel(nn.Module):
    """Two classes; logit_1 = 40 * mean over the region of ReLU(conv1x1(image)) - 8, logit_0 = 0."""

    def __init__(self, mask: torch.Tensor):
        super().__init__()
        conv = nn.Conv2d(1, 4, 1)
        with torch.no_grad():
            conv.weight.copy_(torch.tensor([1.0, 0.5, 0.25, 0.75]).view(4, 1, 1, 1))
            conv.bias.zero_()
        self.features = nn.Sequential(conv, nn.ReLU(), MaskLayer(mask))  # zero outside the region
        self.area = float(mask.float().mean())
        self.head = nn.Linear(4, 2)
        with torch.no_grad():
            self.head.weight.copy_(torch.tensor([[0.0] * 4, [10.0] * 4]))
            self.head.bias.copy_(torch.tensor([0.0, -8.0]))

    def forward(self, images):
        pooled = self.features(images).mean(dim=(2, 3)) / self.area  # mean over the region only
        return self.head(pooled)


REGIONS = {"top_left": (2, 3, 6, 8), "bottom_right": (15, 12, 7, 9)}


@pytest.fixture(params=sorted(REGIONS))
def case(request):
    torch.manual_seed(0)
    mask = box_mask(*REGIONS[request.param])
    model = RegionModel(mask)
    images = 0.2 + 0.3 * torch.rand(3, 1, SIZE, SIZE)  # positive, so the region's evidence is positive
    assert (model(images).argmax(1) == 1).all(), "test set-up: class 1 should win on these images"
    return model, images, mask.numpy()


def assert_concentrated(maps: np.ndarray, mask: np.ndarray, min_mass: float):
    assert maps.shape == (3, SIZE, SIZE)
    for m in maps:
        score = explain.pointing_game(m, mask)
        assert score["hit"], "the peak should fall inside the region the model looks at"
        assert score["mass"] >= min_mass, f"only {score['mass']:.2f} of the mass is inside the region"


def test_grad_cam_concentrates_in_the_region(case):
    model, images, mask = case
    model.train()
    maps = explain.grad_cam(model, images, targets=1, target_layer=model.features)
    assert maps.min() >= 0 and maps.max() <= 1 + 1e-6
    assert_concentrated(maps, mask, 0.9)  # bilinear upsampling leaks a little across the border
    assert model.training, "grad_cam must restore the model's train/eval mode"
    hooks = [m for m in model.modules() if m._forward_hooks or m._backward_hooks]
    assert not hooks, "pytorch-grad-cam hooks left on the model"


def test_grad_cam_plus_plus_and_bad_method(case):
    model, images, mask = case
    assert_concentrated(explain.grad_cam(model, images, [1, 1, 1], model.features, method="gradcam++"), mask, 0.9)
    with pytest.raises(ValueError, match="method"):
        explain.grad_cam(model, images, 1, model.features, method="nope")


def test_integrated_gradients_is_zero_outside_and_complete(case):
    model, images, mask = case
    maps = explain.integrated_gradients(model, images, targets=1, baseline=0.0, n_steps=64)
    assert np.abs(maps[:, ~mask]).max() < 1e-6, "no attribution outside the region the model sees"
    assert_concentrated(maps, mask, 0.999)
    # completeness: attributions sum to logit(x) - logit(baseline)
    with torch.no_grad():
        gap = (model(images)[:, 1] - model(torch.zeros_like(images))[:, 1]).numpy()
    np.testing.assert_allclose(maps.sum(axis=(1, 2)), gap, rtol=1e-3)


def test_occlusion_drops_only_over_the_region(case):
    model, images, mask = case
    drops = explain.occlusion_sensitivity(model, images, targets=1, fill=0.0, patch=3, stride=1)
    assert drops.shape == (3, SIZE, SIZE)
    # Pixels more than one patch away from the region see no drop at all.
    near = F.max_pool2d(torch.from_numpy(mask).float()[None, None], 5, stride=1, padding=2)[0, 0].numpy() > 0
    assert np.abs(drops[:, ~near]).max() < 1e-7
    assert (drops[:, mask] > 0).all(), "covering part of the region lowers p(class 1)"
    # A 3x3 patch that clips the region credits up to 2 pixels outside it: the map is the region
    # smeared by the patch, so most (not all) of its mass is inside; chance would be ~0.1.
    assert_concentrated(drops, mask, 0.6)


def test_occlusion_patch_larger_than_stride_covers_every_pixel():
    mask = box_mask(0, 0, SIZE, SIZE)
    model = RegionModel(mask)
    images = 0.5 * torch.ones(1, 1, SIZE, SIZE)
    drops = explain.occlusion_sensitivity(model, images, targets=[1], fill=0.0, patch=7, stride=5)
    assert np.isfinite(drops).all() and (drops > 0).all()


def test_pointing_game_by_hand():
    mask = np.zeros((4, 4), bool)
    mask[:2, :2] = True
    attribution = np.zeros((4, 4))
    attribution[0, 0], attribution[3, 3], attribution[1, 1] = 3.0, 1.0, -5.0  # negative evidence ignored
    score = explain.pointing_game(attribution, mask)
    assert score == {"mass": 0.75, "hit": True, "area": 0.25}
    assert explain.pointing_game(attribution, mask, positive_only=False)["mass"] == pytest.approx(8 / 9)
    assert explain.pointing_game(np.zeros((4, 4)), mask) == {"mass": 0.0, "hit": False, "area": 0.25}
    assert explain.region_shares(attribution, {"in": mask, "out": ~mask}) == {"in": 0.75, "out": 0.25}
    means = explain.pointing_scores([attribution, np.zeros((4, 4))], [mask, mask])
    assert means == {"mass": 0.375, "hit": 0.5, "area": 0.25}
    with pytest.raises(ValueError, match="shape"):
        explain.pointing_game(np.zeros((3, 3)), mask)


def test_normalize_map():
    out = explain.normalize_map(np.array([[-2.0, 0.0], [1.0, 4.0]]))
    np.testing.assert_allclose(out, [[0, 0], [0.25, 1]])
    np.testing.assert_allclose(explain.normalize_map(np.zeros((2, 2))), 0)


@pytest.mark.parametrize("align_corners", [False, True])
def test_stn_grid_lines_match_affine_grid(align_corners):
    theta = torch.tensor([[0.8, -0.2, 0.1], [0.15, 0.9, -0.2]])
    size = 16
    # affine_grid at the output's pixel centres, in input pixel coordinates
    grid = F.affine_grid(theta[None], [1, 1, size, size], align_corners=align_corners)[0].numpy()
    if align_corners:
        pix = (grid + 1) * (size - 1) / 2
    else:
        pix = ((grid + 1) * size - 1) / 2
    # A line through the output's corner-pixel centres is where affine_grid samples those pixels.
    corner = -1 + 1 / size if not align_corners else -1.0
    t = np.linspace(corner, -corner, size)
    source = theta.numpy() @ np.stack([t, np.full(size, corner), np.ones(size)])
    if align_corners:
        mine = np.stack([(source[0] + 1) * (size - 1) / 2, (source[1] + 1) * (size - 1) / 2], 1)
    else:
        mine = np.stack([((source[0] + 1) * size - 1) / 2, ((source[1] + 1) * size - 1) / 2], 1)
    np.testing.assert_allclose(mine, pix[0], atol=1e-5)
    lines = explain.stn_grid_lines(theta, size, n_lines=5, align_corners=align_corners)
    assert len(lines) == 10 and lines[0].shape == (25, 2)


def test_stn_grid_identity_frames_the_image_and_translation_shifts_it():
    identity = explain.stn_grid_lines([[1, 0, 0], [0, 1, 0]], 48, n_lines=3)
    points = np.concatenate(identity)
    np.testing.assert_allclose([points.min(), points.max()], [-0.5, 47.5])
    shifted = explain.stn_grid_lines([[1, 0, 0.5], [0, 1, 0]], 48, n_lines=3)
    np.testing.assert_allclose(np.concatenate(shifted)[:, 0] - points[:, 0], 12.0)  # 0.5 * 48 / 2 pixels
    np.testing.assert_allclose(np.concatenate(shifted)[:, 1], points[:, 1])


def test_theta_to_pixels():
    angle = np.radians(10)
    theta = [[0.5 * np.cos(angle), -0.5 * np.sin(angle), 0.25], [0.5 * np.sin(angle), 0.5 * np.cos(angle), -0.5]]
    out = explain.theta_to_pixels(theta, 48)
    assert out["rotation_deg"] == pytest.approx(10)
    assert out["scale"] == pytest.approx(0.5)
    assert (out["shift_x_px"], out["shift_y_px"]) == pytest.approx((6.0, -12.0))


def test_viz_helpers_draw():
    image = np.random.default_rng(0).integers(0, 255, (48, 48)).astype(np.uint8)
    fig, axes = plt.subplots(1, 4)
    viz.show_face(axes[0], torch.zeros(1, 48, 48), "zeros")
    assert axes[0].get_title() == "zeros" and axes[0].images[0].get_array().shape == (48, 48)
    heat = np.zeros((48, 48))
    heat[10, 20], heat[30, 5] = 2.0, -1.0
    artist = viz.overlay_heatmap(axes[1], image, heat, "heat", colorbar=True)
    assert artist.get_clim() == (0.0, 2.0), "the colour scale runs from 0 to the map's maximum"
    viz.draw_stn_grid(axes[2], image, [[0.8, 0, 0.1], [0, 0.8, 0]], title="grid")
    assert len(axes[2].lines) == 14
    curves = viz.plot_history({"train_loss": [1, 0.5], "val_loss": [1.1, 0.7], "train_accuracy": [0.3, 0.6]})
    loss_ax, acc_ax = curves.axes[:2]
    assert [(line.get_label(), list(line.get_xdata()), list(line.get_ydata())) for line in loss_ax.lines] == [
        ("train", [1, 2], [1, 0.5]), ("val", [1, 2], [1.1, 0.7])]
    assert [list(line.get_ydata()) for line in acc_ax.lines] == [[0.3, 0.6]]  # no val_accuracy: no val curve
    viz.plot_history({"train_loss": [1, 0.5], "train_accuracy": [0.3, 0.6]}, axes=[axes[3], axes[0]])
    assert list(axes[3].lines[0].get_ydata()) == [1, 0.5] and list(axes[0].lines[0].get_ydata()) == [0.3, 0.6]
    plt.close("all")


def test_invert_theta_and_warp_points_round_trip():
    from fer_utils.models.deep_emotion import affine_warp

    theta = torch.tensor([[[0.9, -0.2, 0.1], [0.2, 0.9, -0.1]]])
    inverse = explain.invert_theta(theta)
    back = explain.invert_theta(inverse)
    torch.testing.assert_close(back, theta)
    # a bright dot at input pixel (x=20, y=12) appears in the warped output where warp_points says
    image = torch.zeros(1, 1, 48, 48)
    image[0, 0, 12, 20] = 1.0
    warped = affine_warp(image, theta)[0, 0]
    y, x = np.unravel_index(int(warped.argmax()), warped.shape)
    px, py = explain.warp_points(np.array([[20.0, 12.0]]), theta, 48)[0]
    assert abs(px - x) <= 1 and abs(py - y) <= 1


def test_relu_census_tells_modules_from_functional_rectifiers():
    import torch.nn.functional as F
    from torch import nn

    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            return self.fc(F.relu(x))

    x = torch.randn(2, 4)
    modules = nn.Sequential(nn.ReLU(), nn.Linear(4, 3))
    assert explain.relu_census(modules, x) == {"modules": 1, "other": 0}
    assert explain.relu_census(Functional(), x) == {"modules": 0, "other": 1}
    assert explain.guided_backprop_applies(modules, x) == (True, "")
    applies, reason = explain.guided_backprop_applies(Functional(), x)
    assert not applies and "Saliency" in reason
    mixed = nn.Sequential(nn.ReLU(), nn.PReLU(), nn.Linear(4, 3))
    applies, reason = explain.guided_backprop_applies(mixed, x)
    assert not applies and "1 of 2" in reason


def test_guided_backprop_differs_from_the_gradient_exactly_where_it_applies():
    """Captum's Guided Backprop equals the plain gradient on a network with functional ReLUs (what the census
    reports) and differs from it once the ReLUs are modules, as mini-Xception's now are."""
    from captum.attr import GuidedBackprop, Saliency

    from fer_utils.models.mini_xception import MiniXception

    torch.manual_seed(0)
    model = MiniXception().eval()
    x = torch.randn(2, 1, 64, 64)
    assert explain.guided_backprop_applies(model, x) == (True, "")
    guided = GuidedBackprop(model).attribute(x, target=[0, 1])
    plain = Saliency(model).attribute(x, target=[0, 1], abs=False)
    assert not torch.allclose(guided, plain)
    class Rectifier(torch.nn.Module):              # the same function, but not a torch.nn.ReLU Captum can hook
        def forward(self, t):
            return torch.relu(t)

    model.relu1, model.relu2 = Rectifier(), Rectifier()
    for block in model.blocks:
        block.relu = Rectifier()
    assert not explain.guided_backprop_applies(model, x)[0]
    torch.testing.assert_close(GuidedBackprop(model).attribute(x, target=[0, 1]),
                               Saliency(model).attribute(x, target=[0, 1], abs=False))


def test_eval_mode_puts_back_each_submodules_own_mode():
    """A child in eval mode under a training parent (a frozen backbone) comes back so, not switched to training."""
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Sequential(nn.Dropout(), nn.ReLU()),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).train()
    model[1].eval()
    model[2][0].eval()
    before = [m.training for m in model.modules()]
    with explain.eval_mode(model):
        assert not any(m.training for m in model.modules())
    assert [m.training for m in model.modules()] == before
    explain.grad_cam(model, torch.rand(2, 1, 8, 8), [0, 1], model[0])
    assert [m.training for m in model.modules()] == before
    with pytest.raises(RuntimeError), explain.eval_mode(model):
        raise RuntimeError("an error inside the block")
    assert [m.training for m in model.modules()] == before

