"""Region Attention Network (RAN): crops of the face through one shared CNN, weighted by attention.

Kai Wang, Xiaojiang Peng, Jianfei Yang, Debin Meng, Yu Qiao, "Region Attention Networks for
Pose and Occlusion Robust Facial Expression Recognition", IEEE Trans. Image Processing 29,
2020 (arXiv:1905.04075).

For the whole face (region 0) and K crops, one shared CNN gives features f_0 .. f_K (D,):

    mu_i  = sigmoid(q_0 . f_i)                               self-attention, one weight per region
    F_m   = sum_i mu_i f_i / sum_i mu_i                      the weighted mean feature
    nu_i  = sigmoid(q_1 . [f_i ; F_m])                       relation attention: region with the mean
    P_RAN = sum_i mu_i nu_i [f_i ; F_m] / sum_i mu_i nu_i    (2D,) the face's feature -> FC -> logits

An occluded or turned-away region should get a small weight, so the others carry the
decision. The region-biased loss (:func:`fer_utils.losses.region_biased_loss`) asks
the largest crop weight to exceed the whole face's by a margin.

Crops are cut with ``torchvision.ops.roi_align`` from boxes ``(N, K+1, 4)`` in pixels
(x0, y0, x1, y1), so fixed-grid and landmark-based regions use the same network; the
boxes are made by :func:`fer_utils.recipes.ran.region_boxes`. The paper's backbone is
ResNet-18 or VGG16 on 224-px crops; the course trains the small CNN named in its recipe.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn
from torchvision.ops import roi_align


class RANOutput(NamedTuple):
    """``logits`` (N, classes), ``mu`` (N, K+1) self-attention and ``nu`` (N, K+1) relation-attention weights."""

    logits: torch.Tensor
    mu: torch.Tensor
    nu: torch.Tensor


class RAN(nn.Module):
    """``backbone`` maps (M, C, crop, crop) crops to (M, D) or (M, D, 1, 1) features.

    ``forward(images, boxes)`` returns :class:`RANOutput` ``(logits (N, classes), mu (N, K+1), nu (N, K+1))``.
    ``relation=False`` skips the relation-attention module (P = F_m, the self-attention pooling).
    """

    def __init__(self, backbone: nn.Module, feature_dim: int, num_classes: int = 7, crop_size: int = 32,
                 relation: bool = True, dropout: float = 0.0):
        super().__init__()
        self.backbone = backbone
        self.crop_size, self.relation = int(crop_size), bool(relation)
        self.self_attention = nn.Sequential(nn.Linear(feature_dim, 1), nn.Sigmoid())
        self.relation_attention = nn.Sequential(nn.Linear(2 * feature_dim, 1), nn.Sigmoid())
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear((2 if relation else 1) * feature_dim, num_classes)

    def crops(self, images: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) images and (N, R, 4) boxes -> (N * R, C, crop, crop) crops, image-major."""
        n, r = boxes.shape[:2]
        index = torch.arange(n, dtype=boxes.dtype, device=boxes.device).repeat_interleave(r).unsqueeze(1)
        rois = torch.cat([index, boxes.reshape(-1, 4)], dim=1)  # (N * R, 5)
        return roi_align(images, rois, self.crop_size, spatial_scale=1.0, sampling_ratio=2, aligned=True)

    def forward(self, images: torch.Tensor, boxes: torch.Tensor) -> RANOutput:
        n, r = boxes.shape[:2]
        features = self.backbone(self.crops(images, boxes)).flatten(1).view(n, r, -1)  # (N, R, D)
        mu = self.self_attention(features).squeeze(2)  # (N, R)
        mean_feature = (mu.unsqueeze(2) * features).sum(1) / mu.sum(1, keepdim=True)  # (N, D)
        if not self.relation:
            return RANOutput(self.fc(self.dropout(mean_feature)), mu, torch.ones_like(mu))
        paired = torch.cat([features, mean_feature.unsqueeze(1).expand_as(features)], dim=2)  # (N, R, 2D)
        nu = self.relation_attention(paired).squeeze(2)  # (N, R)
        w = (mu * nu).unsqueeze(2)
        pooled = (w * paired).sum(1) / w.sum(1)  # (N, 2D)
        return RANOutput(self.fc(self.dropout(pooled)), mu, nu)
