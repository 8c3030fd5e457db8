"""Baseline CNNs used across the course.

``SmallCNN`` is the data-sanity model of notebook 00: three 3x3 conv blocks,
global average pooling and one linear layer. It is the yardstick for how hard
SynthFaces ``lab`` and ``wild`` are.

Notebook 02 adds the paper baselines: ``LeNet5`` (LeCun et al. 1998), the small-kernel
CNN with global average pooling of Qiao, Hou & Liu (2022) (``SmallKernelCNN``), and the
deep features + non-linear SVM recipe (:mod:`fer_utils.recipes.baselines`).
"""
from __future__ import annotations

import torch
from torch import nn


def conv_block(c_in: int, c_out: int) -> nn.Sequential:
    """Two 3x3 convolutions with BatchNorm and ReLU, then 2x2 max-pooling (halves H and W)."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class SmallCNN(nn.Module):
    """Three conv blocks (``width``, 2x, 4x channels) + global average pooling + linear.

    Input (batch, in_channels, H, W) with H, W >= 8; output logits (batch, num_classes).
    With the defaults (1 channel, width 32, 7 classes) it has 287,783 parameters.
    """

    def __init__(self, num_classes: int = 7, in_channels: int = 1, width: int = 32, dropout: float = 0.2):
        super().__init__()
        self.features = nn.Sequential(
            conv_block(in_channels, width), conv_block(width, 2 * width), conv_block(2 * width, 4 * width)
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(4 * width, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.features(images)  # (batch, 4*width, H/8, W/8)
        pooled = self.pool(features).flatten(1)  # (batch, 4*width)
        return self.classifier(self.dropout(pooled))


# ----------------------------------------------------------------------------------------------
# LeNet-5 (LeCun et al. 1998), the classic reference of notebook 02
# ----------------------------------------------------------------------------------------------


class LeNet5(nn.Module):
    """LeNet-5 in its common modern form: ReLU, 2x2 max-pooling, full C3 connectivity, softmax head.

    LeCun, Bottou, Bengio, Haffner, "Gradient-based learning applied to document recognition",
    Proc. IEEE 86(11), 1998. The original used tanh-like squashing, trainable sub-sampling,
    a partial C3 connection table and Euclidean RBF outputs; those details are not reproduced.

    ======  ==========================  ===================  ==================
    layer   operation                   output at 48x48      parameters (48, 7)
    ======  ==========================  ===================  ==================
    C1      conv 5x5, 6 maps + ReLU     6 x 44 x 44          156
    S2      max-pool 2x2                6 x 22 x 22          0
    C3      conv 5x5, 16 maps + ReLU    16 x 18 x 18         2,416
    S4      max-pool 2x2                16 x 9 x 9           0
    C5      linear 16*9*9 -> 120 + ReLU 120                  155,640
    F6      linear 120 -> 84 + ReLU     84                   10,164
    out     linear 84 -> 7              7                    595
    ======  ==========================  ===================  ==================

    Total 168,971 parameters at 48x48 with 7 classes. At LeNet's own 32x32 input with
    10 classes, C5 sees a 5x5 map (a 5x5 convolution there is exactly this linear layer)
    and the total is the textbook 61,706.
    """

    def __init__(self, num_classes: int = 7, in_channels: int = 1, input_size: int = 48):
        super().__init__()
        side = ((input_size - 4) // 2 - 4) // 2  # after C1, S2, C3, S4
        if side < 1:
            raise ValueError(f"input_size must be at least 16 for LeNet-5, got {input_size}")
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),  # C1, S2
            nn.Conv2d(6, 16, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),  # C3, S4
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * side * side, 120), nn.ReLU(inplace=True),  # C5
            nn.Linear(120, 84), nn.ReLU(inplace=True),  # F6
            nn.Linear(84, num_classes),
        )

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """The 84-d F6 features (what an SVM would see instead of the softmax layer)."""
        return self.classifier[:-1](self.features(images))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(images))  # (batch, num_classes)


# ----------------------------------------------------------------------------------------------
# The small-kernel CNN with global average pooling (Qiao, Hou, Liu 2022) + an SVM on its features
# ----------------------------------------------------------------------------------------------


class SmallKernelCNN(nn.Module):
    """Consecutive 3x3 convolutions + global average pooling, after Qiao, Hou & Liu (2022).

    Qiao G., Hou S., Liu Y., "Facial expression recognition algorithm based on combination of
    improved convolutional neural network and support vector machine", Journal of Computer
    Applications 42(4):1253-1259, 2022 (doi 10.11772/j.issn.1001-9081.2021071270). The paper's
    three ideas: stacked small kernels instead of large ones (two 3x3 layers see 5x5 with fewer
    weights and one more non-linearity), adaptive global average pooling instead of the fully
    connected layers, and a non-linear SVM instead of softmax on the pooled features
    (:func:`fer_utils.recipes.baselines.fit_svm`). The exact block sizes were not readable in the sources we had; these are ours.

    With the default ``widths=(32, 64, 128, 256)``, 1 input channel, 7 classes, 48x48:

    =======  ===============================================  =================  ==========
    block    operation                                        output             parameters
    =======  ===============================================  =================  ==========
    1        [conv 3x3 -> BN -> ReLU] x 2, max-pool 2x2       32 x 24 x 24       9,632
    2        same                                             64 x 12 x 12       55,552
    3        same                                             128 x 6 x 6        221,696
    4        same                                             256 x 3 x 3        885,760
    GAP      adaptive average pooling to 1x1                  256                0
    head     dropout, linear 256 -> 7                         7                  1,799
    =======  ===============================================  =================  ==========

    Total 1,174,439 parameters. ``head="fc"`` swaps GAP for the classic flatten -> linear
    2304 -> 1024 -> ReLU -> dropout -> linear 1024 -> 7 head (3,540,135 parameters in all), the
    design GAP replaces. Each block is :func:`conv_block`.
    """

    def __init__(self, num_classes: int = 7, in_channels: int = 1, widths: tuple[int, ...] = (32, 64, 128, 256),
                 head: str = "gap", dropout: float = 0.3, input_size: int = 48, fc_width: int = 1024):
        super().__init__()
        if head not in ("gap", "fc"):
            raise ValueError(f"head must be 'gap' or 'fc', got {head!r}")
        channels = (in_channels, *widths)
        self.features = nn.Sequential(*(conv_block(a, b) for a, b in zip(channels[:-1], channels[1:])))
        self.head_kind = head
        if head == "gap":
            self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())  # (batch, widths[-1])
            self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(widths[-1], num_classes))
        else:
            side = input_size // 2 ** len(widths)
            self.pool = nn.Flatten()  # (batch, widths[-1] * side * side)
            self.classifier = nn.Sequential(
                nn.Linear(widths[-1] * side * side, fc_width), nn.ReLU(inplace=True),
                nn.Dropout(dropout), nn.Linear(fc_width, num_classes),
            )

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """The deep features the SVM is trained on: the GAP vector (batch, widths[-1])."""
        return self.pool(self.features(images))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(images))  # (batch, num_classes)
