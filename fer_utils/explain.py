"""Looking inside a classifier: Grad-CAM, Integrated Gradients, occlusion, the pointing game, STN grids.

Every function takes a batch of images ``(batch, C, H, W)`` and the class to explain for each
image (``targets``, ints) and returns one map per image as a numpy array ``(batch, H, W)`` in
input pixel coordinates, so the maps of different methods can be drawn side by side and scored
against the same region masks:

- :func:`grad_cam` -- Selvaraju et al. (ICCV 2017), through pytorch-grad-cam: the target layer's
  activations weighted by their spatially averaged gradients, ReLU, upsampled, scaled to [0, 1];
- :func:`integrated_gradients` -- Sundararajan et al. (ICML 2017), through Captum: the path
  integral of input gradients from a baseline to the image;
- :func:`occlusion_sensitivity` -- Zeiler & Fergus (ECCV 2014), as Deep-Emotion uses it, through
  Captum: slide an NxN patch of a constant over the image and record how much the true-class
  probability drops;
- :func:`relu_census` / :func:`guided_backprop_applies` -- whether Captum's Guided Backprop (Springenberg et
  al. 2015) can guide a network's rectifiers at all (it hooks ``torch.nn.ReLU`` modules only);
- :func:`pointing_game` / :func:`region_shares` -- score a map against a known region: the share of
  the map's (positive) mass inside the mask, and whether its peak falls inside;
- :func:`stn_grid_lines` -- where a spatial transformer's sampling grid lands on its input, for
  drawing (``fer_utils.viz.draw_stn_grid``).

Every function leaves the model in the train/eval mode it found it in. None assumes an input
scaling: the explainers that replace pixels (Integrated Gradients' baseline, occlusion's fill) take
the value as a parameter, in the model's input scaling (:mod:`fer_utils.data.convention`).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from fer_utils.models import eval_mode  # noqa: F401  (explain.eval_mode: the maps are taken in eval mode)


def _targets(targets, n: int) -> list[int]:
    if isinstance(targets, (int, np.integer)):
        return [int(targets)] * n
    targets = [int(t) for t in (targets.tolist() if hasattr(targets, "tolist") else targets)]
    if len(targets) != n:
        raise ValueError(f"got {len(targets)} targets for {n} images")
    return targets


def _device(model: nn.Module) -> torch.device:
    first = next(model.parameters(), None)  # a hand-built model may have no parameters
    return first.device if first is not None else torch.device("cpu")


# ----------------------------------------------------------------------------------------------
# Gradient-based maps
# ----------------------------------------------------------------------------------------------


def grad_cam(model: nn.Module, images: torch.Tensor, targets, target_layer: nn.Module,
             method: str = "gradcam") -> np.ndarray:
    """Grad-CAM maps (batch, H, W) in [0, 1] for ``targets`` at ``target_layer`` (any conv layer / block).

    L^c = ReLU(sum_k alpha_k^c A^k) with alpha_k^c = mean over positions of dy^c / dA^k, upsampled to
    the input size and scaled to [0, 1] per image. ``method="gradcam++"`` uses Grad-CAM++.
    The hooks pytorch-grad-cam puts on the model are removed on exit (its context manager).
    Each map is in the coordinates of ``target_layer``'s input frame: for a model that warps
    its input before the layer (a spatial transformer on the image), that is the warped frame.
    """
    from pytorch_grad_cam import GradCAM, GradCAMPlusPlus
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cams = {"gradcam": GradCAM, "gradcam++": GradCAMPlusPlus}
    if method not in cams:
        raise ValueError(f"method must be one of {sorted(cams)}, got {method!r}")
    wanted = [ClassifierOutputTarget(t) for t in _targets(targets, len(images))]
    with eval_mode(model), cams[method](model=model, target_layers=[target_layer]) as cam:
        maps = cam(input_tensor=images.to(_device(model)), targets=wanted)  # (batch, H, W)
    return np.asarray(maps, dtype=np.float32)


def _captum(name: str):
    """A class from ``captum.attr`` (captum imports tqdm.auto, which warns in a kernel without ipywidgets)."""
    import warnings

    from tqdm import TqdmWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TqdmWarning)
        import captum.attr

    return getattr(captum.attr, name)


#: Rectifier-like functions of torch: the non-linearities whose backward pass Guided Backprop means to change.
RECTIFIERS = frozenset({"relu", "relu_", "relu6", "prelu", "leaky_relu", "leaky_relu_", "rrelu", "elu", "selu", "celu",
                        "gelu", "silu", "mish", "hardswish", "hardtanh", "hardtanh_"})


def relu_census(model: nn.Module, images: torch.Tensor) -> dict[str, int]:
    """How many rectifier calls one forward pass makes through ``torch.nn.ReLU`` modules (``"modules"``) and
    how many it makes otherwise (``"other"``: ``F.relu``, ``x.relu()``, PReLU, ReLU6, h-swish, ...).

    Guided Backprop (Springenberg et al., ICLR workshop 2015) back-propagates through each ReLU only the
    positive gradient at positive inputs, ``R_in = (x > 0) * max(R_out, 0)``. Captum's ``GuidedBackprop``
    does this by hooking ``torch.nn.ReLU`` *modules*: a network whose rectifiers are functional calls or other
    activations gets its plain input gradient back (the "Saliency" map with signs). Counts come from a
    ``TorchFunctionMode`` (every call) and forward hooks on the ``nn.ReLU`` modules (their share)."""
    from torch.overrides import TorchFunctionMode

    class _Count(TorchFunctionMode):
        calls = 0

        def __torch_function__(self, func, types, args=(), kwargs=None):
            if getattr(func, "__name__", "") in RECTIFIERS:
                _Count.calls += 1
            return func(*args, **(kwargs or {}))

    module_calls = [0]
    hooks = [m.register_forward_hook(lambda *_: module_calls.__setitem__(0, module_calls[0] + 1))
             for m in model.modules() if isinstance(m, nn.ReLU)]
    try:
        with eval_mode(model), torch.no_grad(), _Count():
            model(images.to(_device(model)))
    finally:
        for hook in hooks:
            hook.remove()
    return {"modules": module_calls[0], "other": _Count.calls - module_calls[0]}


def guided_backprop_applies(model: nn.Module, images: torch.Tensor) -> tuple[bool, str]:
    """(True, "") when Captum's Guided Backprop changes every rectifier of ``model`` (see :func:`relu_census`),
    else (False, the reason): then its map is the plain gradient, or a mix of guided and plain steps."""
    census = relu_census(model, images)
    if census["modules"] == 0:
        return False, (f"no torch.nn.ReLU module runs ({census['other']} other rectifier calls): Captum's Guided "
                       "Backprop returns the plain gradient, i.e. Saliency")
    if census["other"]:
        return False, (f"{census['other']} of {census['modules'] + census['other']} rectifier calls are not "
                       "torch.nn.ReLU modules: Captum guides only the others, a mix of two methods")
    return True, ""


def integrated_gradients(model: nn.Module, images: torch.Tensor, targets, *, baseline: float | torch.Tensor,
                         n_steps: int = 32, internal_batch_size: int | None = 256) -> np.ndarray:
    """Integrated Gradients (Captum), summed over channels: (batch, H, W), signed.

    IG_i(x) = (x_i - x'_i) * integral_0^1 dy^c/dx_i (x' + a (x - x')) da, approximated with
    ``n_steps`` Gauss-Legendre points. The baseline x' is ``baseline``: a constant or a tensor
    like ``images``, in the model's input scaling (``fer_utils.data.black_value(normalize)`` is
    black; 0 is mid-grey under ``"symmetric"`` and black under ``"unit"``). The attributions sum to
    y^c(x) - y^c(x') (completeness). Positive values push towards the class.
    """
    images = images.to(_device(model))
    baselines = baseline if isinstance(baseline, torch.Tensor) else torch.full_like(images, float(baseline))
    with eval_mode(model):
        attributions = _captum("IntegratedGradients")(model).attribute(
            images, baselines=baselines.to(images.device), target=_targets(targets, len(images)),
            n_steps=n_steps, internal_batch_size=internal_batch_size)
    return attributions.sum(dim=1).detach().cpu().numpy()  # (batch, H, W)


# ----------------------------------------------------------------------------------------------
# Occlusion sensitivity
# ----------------------------------------------------------------------------------------------


@torch.no_grad()
def occlusion_sensitivity(model: nn.Module, images: torch.Tensor, targets, *, fill: float, patch: int = 8,
                          stride: int = 4, perturbations_per_eval: int = 64) -> np.ndarray:
    """Occlusion maps (Captum's ``Occlusion``): the drop of p(target | image) when a patch of ``fill`` covers each place.

    For every patch position P (top-left corners 0, stride, 2 stride ...; a last patch that would
    cross the border is cut at it), drop(P) = p_c(x) - p_c(x with P set to ``fill``). A pixel's
    value is the mean drop over the patches that cover it, so the map is (batch, H, W), in
    probability units (positive = the patch hurt the class). ``fill`` is in the model's input
    scaling (0 is mid-grey under ``"symmetric"``; ``fer_utils.data.black_value`` gives black).
    """
    images = images.to(_device(model))
    channels = images.shape[1]

    def probabilities(x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(model(x), dim=1).double()  # differences and their mean in float64

    with eval_mode(model):
        drops = _captum("Occlusion")(probabilities).attribute(
            images, sliding_window_shapes=(channels, patch, patch), strides=(channels, stride, stride),
            baselines=float(fill), target=_targets(targets, len(images)), perturbations_per_eval=perturbations_per_eval)
    return drops[:, 0].float().cpu().numpy()  # every channel of a pixel gets the same value


# ----------------------------------------------------------------------------------------------
# Scoring a map against a known region
# ----------------------------------------------------------------------------------------------


def normalize_map(attribution: np.ndarray, positive_only: bool = True) -> np.ndarray:
    """Clip to the positive part (or take |.|), then scale to [0, 1] (an all-zero map stays zero)."""
    a = np.asarray(attribution, dtype=np.float64)
    a = np.clip(a, 0, None) if positive_only else np.abs(a)
    peak = a.max() if a.size else 0.0
    return (a / peak if peak > 0 else a).astype(np.float32)


def pointing_game(attribution: np.ndarray, mask: np.ndarray, positive_only: bool = True) -> dict:
    """Score one map (H, W) against one region mask (H, W bool).

    - ``mass``: share of the map's mass inside the mask, sum_{mask} a / sum a, with a the positive
      part of the map (or |map| if ``positive_only=False``); 0 for an all-zero map;
    - ``hit``: whether the map's maximum falls inside the mask (the pointing game of Zhang et al.,
      ECCV 2016; ties broken by the first maximum);
    - ``area``: the mask's share of the image: the ``mass`` a uniform map would score (chance).
    """
    a = np.asarray(attribution, dtype=np.float64)
    m = np.asarray(mask, dtype=bool)
    if a.shape != m.shape:
        raise ValueError(f"map shape {a.shape} and mask shape {m.shape} differ")
    a = np.clip(a, 0, None) if positive_only else np.abs(a)
    total = a.sum()
    mass = float(a[m].sum() / total) if total > 0 else 0.0
    hit = bool(total > 0 and m.flat[int(np.argmax(a))])
    return {"mass": mass, "hit": hit, "area": float(m.mean())}


def region_shares(attribution: np.ndarray, masks: dict[str, np.ndarray], positive_only: bool = True) -> dict[str, float]:
    """The ``mass`` of :func:`pointing_game` for every region in ``masks`` (regions may overlap)."""
    return {name: pointing_game(attribution, mask, positive_only)["mass"] for name, mask in masks.items()}


def pointing_scores(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray], positive_only: bool = True) -> dict:
    """Mean ``mass``, ``hit`` rate and ``area`` (chance level of ``mass``) over a set of maps and masks."""
    scores = [pointing_game(a, m, positive_only) for a, m in zip(maps, masks)]
    if not scores:
        raise ValueError("no maps to score")
    return {key: float(np.mean([s[key] for s in scores])) for key in ("mass", "hit", "area")}


# ----------------------------------------------------------------------------------------------
# Spatial transformer grids
# ----------------------------------------------------------------------------------------------


def stn_grid_lines(theta, size: int | tuple[int, int], n_lines: int = 7, points_per_line: int = 25,
                   align_corners: bool = False) -> list[np.ndarray]:
    """Where an affine spatial transformer samples its input, as polylines in input pixel coordinates.

    Output pixel (x_t, y_t) in normalised coordinates [-1, 1] reads the input at
    (x_s, y_s) = theta @ [x_t, y_t, 1]; this function maps ``n_lines`` horizontal and ``n_lines``
    vertical lines of the output frame (its border included) through theta, then to pixel
    coordinates of the input with the same ``align_corners`` convention as ``F.grid_sample``
    (False: x_pix = ((x + 1) W - 1) / 2, so the border runs along the outer pixel edges).
    Returns a list of (points_per_line, 2) arrays of (x, y) pixel positions, for ``ax.plot``.
    The identity theta gives a regular grid that frames the whole image.
    """
    theta = np.asarray(theta.detach().cpu() if isinstance(theta, torch.Tensor) else theta, dtype=np.float64)
    theta = theta.reshape(2, 3)
    height, width = (size, size) if isinstance(size, int) else size
    line = np.linspace(-1.0, 1.0, points_per_line)  # the output frame, border to border
    across = np.linspace(-1.0, 1.0, n_lines)
    lines = []
    for value in across:
        for xs, ys in ((line, np.full_like(line, value)), (np.full_like(line, value), line)):
            source = theta @ np.stack([xs, ys, np.ones_like(xs)])  # (2, points)
            if align_corners:
                px = (source[0] + 1) * (width - 1) / 2
                py = (source[1] + 1) * (height - 1) / 2
            else:
                px = ((source[0] + 1) * width - 1) / 2
                py = ((source[1] + 1) * height - 1) / 2
            lines.append(np.stack([px, py], axis=1))
    return lines


def theta_to_pixels(theta, size: int) -> dict[str, float]:
    """Read an affine theta as rotation (degrees), scale and shift (pixels of a ``size`` image).

    theta = [[a, b, tx], [c, d, ty]]; scale = sqrt(|ad - bc|) (area ratio of the sampled window to
    the image, square-rooted), rotation = atan2(c, a), shift = (tx, ty) * size / 2. A scale below 1
    means the transformer zooms in.
    """
    t = np.asarray(theta.detach().cpu() if isinstance(theta, torch.Tensor) else theta, dtype=np.float64).reshape(2, 3)
    return {"rotation_deg": float(np.degrees(np.arctan2(t[1, 0], t[0, 0]))),
            "scale": float(np.sqrt(abs(np.linalg.det(t[:, :2])))),
            "shift_x_px": float(t[0, 2] * size / 2), "shift_y_px": float(t[1, 2] * size / 2)}


def invert_theta(theta: torch.Tensor) -> torch.Tensor:
    """The inverse affine map, (batch, 2, 3) -> (batch, 2, 3): [A | b] -> [A^-1 | -A^-1 b].

    ``affine_warp(warped, invert_theta(theta))`` carries a map drawn in a transformer's OUTPUT frame
    (for example a Grad-CAM map of the layers after the warp) back onto the input image.
    """
    theta = torch.as_tensor(theta, dtype=torch.float32).reshape(-1, 2, 3)
    inverse = torch.linalg.inv(theta[:, :, :2])
    return torch.cat([inverse, -inverse @ theta[:, :, 2:]], dim=2)


def warp_points(points: np.ndarray, theta, size: int) -> np.ndarray:
    """Where input pixel positions (N, 2) of (x, y) land in the transformer's output (align_corners=False)."""
    t = torch.as_tensor(invert_theta(theta)[0], dtype=torch.float64).numpy()
    norm = (2 * np.asarray(points, np.float64) + 1) / size - 1  # pixel -> [-1, 1]
    out = norm @ t[:, :2].T + t[:, 2]
    return ((out + 1) * size - 1) / 2
