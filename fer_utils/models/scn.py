"""Self-Cure Network (SCN): a backbone, an importance weight per image, and weighted logits.

Kai Wang, Xiaojiang Peng, Jianfei Yang, Shijian Lu, Yu Qiao, "Suppressing Uncertainties for
Large-Scale Facial Expression Recognition", CVPR 2020 (arXiv:2002.10392); official code
github.com/kaiwang960112/Self-Cure-Network (``src/train.py``, class ``Res18Feature``).

For backbone features x (N, D):

    alpha = sigmoid(W_a x + b_a)        (N, 1)   self-attention importance weight
    logits = alpha * (W x + b)          (N, C)   the weight scales every logit

Cross-entropy on these logits trains both; a small alpha flattens the softmax of an
uncertain image, so it pulls less on the network. The losses (rank regularisation,
relabelling) are in :mod:`fer_utils.losses`; training is in :mod:`fer_utils.recipes.scn`.

The faithful network (:func:`scn_resnet18`) has the authors' state dict key for key:
``features.0 .. features.8`` (torchvision ResNet-18 without its ``fc``, average pooling
included), ``fc`` (512 -> C) and ``alpha.0`` (512 -> 1): 11,180,616 parameters for 7
classes. The authors' forward returns ``(alpha, logits)``; ours returns :class:`SCNOutput`
``(logits, alpha)``, read by name as every model's output is (:func:`fer_utils.models.logits_of`).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn


class SCNOutput(NamedTuple):
    """``logits`` (N, C) = alpha * (W x + b) (plain ``W x + b`` when ``weighting=False``); ``alpha`` (N,)."""

    logits: torch.Tensor
    alpha: torch.Tensor


class SCN(nn.Module):
    """Any backbone that maps images to (N, D) or (N, D, 1, 1) features, plus SCN's two heads.

    ``weighting=False`` keeps the alpha head (so the rank regularisation can still train
    it) but returns the plain logits ``W x + b``: the "no importance weighting" arm.
    """

    def __init__(self, features: nn.Module, feature_dim: int, num_classes: int = 7, drop_rate: float = 0.0,
                 weighting: bool = True):
        super().__init__()
        self.features = features
        self.fc = nn.Linear(feature_dim, num_classes)
        self.alpha = nn.Sequential(nn.Linear(feature_dim, 1), nn.Sigmoid())
        self.drop_rate, self.weighting = float(drop_rate), bool(weighting)

    def forward(self, images: torch.Tensor) -> SCNOutput:
        x = self.features(images).flatten(1)  # (N, D)
        if self.drop_rate > 0:
            x = nn.functional.dropout(x, self.drop_rate, self.training)
        alpha = self.alpha(x)  # (N, 1)
        logits = self.fc(x)  # (N, C)
        return SCNOutput(alpha * logits if self.weighting else logits, alpha.squeeze(1))


def scn_resnet18(num_classes: int = 7, drop_rate: float = 0.0) -> SCN:
    """The authors' configuration: torchvision ResNet-18 up to its average pooling (random init here;
    the authors start from ImageNet or MS-Celeb-1M weights, which this course does not download)."""
    from torchvision.models import resnet18

    resnet = resnet18(weights=None)
    return SCN(nn.Sequential(*list(resnet.children())[:-1]), 512, num_classes, drop_rate)


def small_backbone(in_channels: int = 1, widths: tuple[int, ...] = (16, 32, 64)) -> nn.Sequential:
    """The course's scaled-down backbone: 3x3 conv + BN + ReLU + 2x2 max-pool per width, then GAP.

    Output (N, widths[-1], 1, 1). Used for SCN's course and smoke profiles and as
    RAN's shared region CNN.
    """
    layers: list[nn.Module] = []
    c_in = in_channels
    for width in widths:
        layers += [nn.Conv2d(c_in, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
                   nn.MaxPool2d(2)]
        c_in = width
    layers.append(nn.AdaptiveAvgPool2d(1))
    return nn.Sequential(*layers)
