"""Baseline CNNs used across the course.

``SmallCNN`` is the data-sanity model of notebook 00: three 3x3 conv blocks,
global average pooling and one linear layer. It is the yardstick for how hard
SynthFaces ``lab`` and ``wild`` are.
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
