"""Deep-Emotion: an attentional CNN with a spatial transformer (Minaee, Minaei & Abdolrashidi).

Paper: S. Minaee, M. Minaei, A. Abdolrashidi, "Deep-Emotion: Facial Expression Recognition Using
Attentional Convolutional Network", arXiv:1902.01019 (2019); Sensors 21(9):3046 (2021).

Two variants, chosen by one argument, ``DeepEmotion(variant=...)``:

``"reference"`` -- the widely used unofficial implementation (github.com/omarsayed7/Deep-Emotion,
which says it is not the official code), layer for layer: the spatial transformer warps the
INPUT IMAGE; 7x7 and 5x5 localisation kernels; BatchNorm after conv4; PyTorch's default
initialisation. 66,877 parameters at 48x48 (checked in ``tests/test_deep_emotion.py``).

======================  ===========================================================  ============
part                    layers (output at 48x48)                                     parameters
======================  ===========================================================  ============
localisation            conv 7x7 1->8 [8x42x42], max-pool [21], ReLU,                2,410
                        conv 5x5 8->10 [10x17x17], max-pool [8], ReLU
fc_loc                  linear 640->32, ReLU, linear 32->6 (= theta, 2x3)            20,710
transformer             affine_grid + grid_sample on the 1x48x48 input               0
features                conv 3x3 1->10 [46], ReLU; conv 3x3 10->10 [44], pool        2,850
                        [22], ReLU; conv 3x3 [20], ReLU; conv 3x3 [18], BN,
                        pool [9], ReLU  -> 10x9x9
classifier              dropout 0.5, linear 810->50, ReLU, linear 50->7              40,907
total                                                                                66,877
======================  ===========================================================  ============

``"paper"`` -- the architecture as the paper describes it, as far as we could establish it:
four 3x3 convolutions of 10 maps in the feature path, max-pooling and ReLU after every second
one, then dropout and two fully connected layers (50, 7); a localisation network of two 3x3
convolutions (8 and 10 maps, each followed by max-pooling and ReLU) and two fully connected
layers regressing the six affine parameters; the transformer applied to the FEATURE MAPS of the
last convolution (the unofficial code's issue #5 and #4 point out that the paper puts it there and
uses 3x3 localisation kernels). Not given by the sources we could read, so chosen here: no
BatchNorm (the paper names none), the localisation network reads the input image, the warp acts on
the 10x9x9 maps right before dropout. Weights are initialised from N(0, 0.05^2) with zero biases,
as the paper states.

======================  ===========================================================  ============
part                    layers (output at 48x48)                                     parameters
======================  ===========================================================  ============
localisation            conv 3x3 1->8 [8x46x46], max-pool [23], ReLU,                810
                        conv 3x3 8->10 [10x21x21], max-pool [10], ReLU
fc_loc                  linear 1000->32, ReLU, linear 32->6 (= theta, 2x3)           32,230
features                conv 3x3 1->10 [46], ReLU; conv 3x3 [44], pool [22], ReLU;   2,830
                        conv 3x3 [20], ReLU; conv 3x3 [18], pool [9], ReLU
transformer             affine_grid + grid_sample on the 10x9x9 feature maps         0
classifier              dropout 0.5, linear 810->50, ReLU, linear 50->7              40,907
total                                                                                76,777
======================  ===========================================================  ============

Common to both: the last localisation layer starts at zero weights and the identity bias
``[1, 0, 0, 0, 1, 0]`` so the transformer starts as the identity; ``align_corners=False`` is
passed explicitly to ``affine_grid`` and ``grid_sample`` (the unofficial code relied on the
default, which is the same value but warns); dropout is an ``nn.Dropout`` module, so it is off
after ``model.eval()``. ``dropout_always_on=True`` reproduces the unofficial code's
``F.dropout(x)``, which stays on at test time. ``use_stn=False`` removes the transformer (and its
localisation network) for the ablation.

Training as the paper states (cross-entropy plus an L2 penalty on the weights, Adam with learning
rate 0.005): :mod:`fer_utils.recipes.deep_emotion`; the penalty is :func:`fer_utils.losses.l2_penalty`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

VARIANTS = ("paper", "reference")
#: Stated once for affine_grid and grid_sample: -1 and +1 are the outer EDGES of the corner pixels.
ALIGN_CORNERS = False
#: Initialisation std stated in the paper (its learning rate is in fer_utils.recipes.deep_emotion).
PAPER_INIT_STD = 0.05
#: theta of the identity warp, row-major 2x3.
IDENTITY_THETA = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def _localisation(variant: str, in_channels: int) -> nn.Sequential:
    """The small CNN that looks at the image and decides where to look: conv, pool, ReLU twice."""
    k1, k2 = (7, 5) if variant == "reference" else (3, 3)
    return nn.Sequential(
        nn.Conv2d(in_channels, 8, k1), nn.MaxPool2d(2, 2), nn.ReLU(inplace=True),
        nn.Conv2d(8, 10, k2), nn.MaxPool2d(2, 2), nn.ReLU(inplace=True),
        nn.Flatten(),
    )


def _features(variant: str, in_channels: int) -> nn.Sequential:
    """Four 3x3 convolutions with 10 maps; max-pool and ReLU after the second and the fourth."""
    norm = [nn.BatchNorm2d(10)] if variant == "reference" else []
    return nn.Sequential(
        nn.Conv2d(in_channels, 10, 3), nn.ReLU(inplace=True),
        nn.Conv2d(10, 10, 3), nn.MaxPool2d(2, 2), nn.ReLU(inplace=True),
        nn.Conv2d(10, 10, 3), nn.ReLU(inplace=True),
        nn.Conv2d(10, 10, 3), *norm, nn.MaxPool2d(2, 2), nn.ReLU(inplace=True),
    )


def _side_after(variant: str, size: int, part: str) -> int:
    if part == "features":
        return ((size - 4) // 2 - 4) // 2
    k1, k2 = (7, 5) if variant == "reference" else (3, 3)
    return ((size - k1 + 1) // 2 - k2 + 1) // 2


def affine_warp(inputs: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Spatial transformer sampler: output(x_t) = input(theta @ [x_t, y_t, 1]) with bilinear sampling.

    ``inputs`` (batch, C, H, W), ``theta`` (batch, 2, 3) in normalised coordinates ([-1, 1] across
    the image); outside the input reads zeros. Same size in and out.
    """
    grid = F.affine_grid(theta, list(inputs.shape), align_corners=ALIGN_CORNERS)  # (batch, H, W, 2)
    return F.grid_sample(inputs, grid, mode="bilinear", padding_mode="zeros", align_corners=ALIGN_CORNERS)


class DeepEmotion(nn.Module):
    """Deep-Emotion for 1x48x48 faces; ``variant="paper"`` or ``"reference"`` (see the module docs).

    ``forward(images)`` returns logits (batch, num_classes); ``theta(images)`` the affine
    parameters (batch, 2, 3); ``warp_images(images)`` the input as the transformer would warp it
    (what the reference variant actually feeds its CNN; for the paper variant, an illustration of
    the same warp on the image).
    """

    def __init__(self, variant: str = "paper", num_classes: int = 7, in_channels: int = 1, input_size: int = 48,
                 use_stn: bool = True, dropout: float = 0.5, dropout_always_on: bool = False,
                 gaussian_init: bool | None = None, init_std: float = PAPER_INIT_STD):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        if _side_after(variant, input_size, "localisation") < 1:
            raise ValueError(f"input_size {input_size} is too small for Deep-Emotion (48 expected)")
        self.variant, self.use_stn = variant, use_stn
        self.dropout_always_on, self.p = dropout_always_on, dropout
        if use_stn:
            loc_side = _side_after(variant, input_size, "localisation")
            self.localisation = _localisation(variant, in_channels)  # (batch, 10 * loc_side**2)
            self.fc_loc = nn.Sequential(nn.Linear(10 * loc_side**2, 32), nn.ReLU(inplace=True), nn.Linear(32, 6))
        self.features = _features(variant, in_channels)  # (batch, 10, 9, 9) at 48x48
        side = _side_after(variant, input_size, "features")
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(10 * side * side, 50), nn.ReLU(inplace=True), nn.Linear(50, num_classes)
        )
        if gaussian_init if gaussian_init is not None else variant == "paper":
            self.gaussian_init_(init_std)
        if use_stn:
            self.reset_transformer()

    # --- initialisation -------------------------------------------------------------------------

    @torch.no_grad()
    def gaussian_init_(self, std: float = PAPER_INIT_STD) -> None:
        """Every conv / linear weight from N(0, std^2), biases zero (BatchNorm keeps 1 and 0)."""
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.normal_(module.weight, 0.0, std)
                nn.init.zeros_(module.bias)
        if self.use_stn:
            self.reset_transformer()

    @torch.no_grad()
    def reset_transformer(self) -> None:
        """Zero weights and the identity bias in the last localisation layer: theta = identity for any input."""
        last = self.fc_loc[-1]
        last.weight.zero_()
        last.bias.copy_(torch.tensor(IDENTITY_THETA))

    # --- the spatial transformer ----------------------------------------------------------------

    def theta(self, images: torch.Tensor) -> torch.Tensor:
        """The affine parameters the localisation network regresses from the images: (batch, 2, 3)."""
        if not self.use_stn:
            return torch.tensor(IDENTITY_THETA, device=images.device).view(1, 2, 3).expand(len(images), 2, 3)
        return self.fc_loc(self.localisation(images)).view(-1, 2, 3)

    def warp_images(self, images: torch.Tensor) -> torch.Tensor:
        """The images warped by their own theta (same size)."""
        return affine_warp(images, self.theta(images))

    # --- forward --------------------------------------------------------------------------------

    def _drop(self, x: torch.Tensor) -> torch.Tensor:
        if self.dropout_always_on:  # the unofficial code's F.dropout(x): training=True even in eval mode
            return F.dropout(x, self.p, training=True)
        return self.dropout(x)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.use_stn and self.variant == "reference":
            images = self.warp_images(images)  # (batch, 1, 48, 48), warped input
        features = self.features(images)  # (batch, 10, 9, 9)
        if self.use_stn and self.variant == "paper":
            features = affine_warp(features, self.theta(images))  # attention on the feature maps
        return self.classifier(self._drop(features))  # (batch, num_classes)
