"""2Att-2Mt: two-level attention with two-stage multi-task learning for valence and arousal.

Paper: X. Wang, M. Peng, L. Pan, M. Hu, C. Jin, F. Ren, "Two-level Attention with Two-stage
Multi-task Learning for Facial Emotion Recognition", arXiv:1811.12139 (2018); journal version in
J. Visual Communication and Image Representation (2019). First-level attention: the Residual
Attention Network of F. Wang et al., "Residual Attention Network for Image Classification", CVPR 2017.

The model, bottom to top
------------------------
1. **First level (position attention).** :class:`ResidualAttentionModule`: ``p`` residual units, then
   two branches on the same input x: a trunk T(x) (``t`` residual units) and a soft mask M(x)
   (bottom-up: max-pooling with ``r`` residual units between poolings; top-down: bilinear
   up-sampling with skip connections from the bottom-up path at the same resolution; then two 1x1
   convolutions and a sigmoid, so M(x) in [0, 1]). Attention residual learning combines them as

       H_{i,c}(x) = (1 + M_{i,c}(x)) * T_{i,c}(x)

   so a mask of zero leaves the trunk untouched (the module can only help), then ``p`` more units.
   :class:`AttentionBackbone` stacks a stem and three such stages with stride-2 residual units
   between them, and one last stride-2 residual unit; the four stage outputs are the *levels*.
2. **Level vectors.** Each level's map F_l (C_l x H_l x W_l) becomes one vector by a 1x1 convolution
   to ``d`` channels (+ BatchNorm, ReLU) and global average pooling: x_l = GAP(ReLU(BN(W_l * F_l))),
   so the levels form a sequence x_1..x_T, T = 4, shallow to deep.
3. **Second level (layer attention).** A bidirectional GRU reads the sequence,
   h_t = [GRU_fwd(x_1..x_t) ; GRU_bwd(x_T..x_t)], and additive self-attention weighs the steps:

       u_t = tanh(W h_t + b),   a_t = exp(u_t^T u_w) / sum_k exp(u_k^T u_w),   c = sum_t a_t h_t

   with u_w a learned context vector; sum_t a_t = 1 (:class:`LevelAttention`).
4. **Heads** on c: a classifier (stage 1, expressions) and two regressors (stage 2), valence and
   arousal, each a linear layer + tanh, sharing everything below them.

Which details are the paper's and which are ours
------------------------------------------------
The paper's text (tables, layer sizes) could not be read for this course (see the course's
reference notes); the abstract gives the structure above. **Our choices**: basic pre-activation
residual units (the RAN paper uses bottleneck units); 48x48 grey input; widths 16/32/64/64;
mask poolings 2/1/1 (RAN uses 3/2/1 at 56x56); the four tapped levels (the three attention stages
and the last unit); d = 64; a 1-layer bidirectional **GRU** with 32 units per direction; attention
size 32; tanh on the regression outputs; equal loss weights for valence and arousal.

Ablation switches: ``first_level=False`` replaces every attention module by its trunk (the same
residual units, no mask); ``second_level="attention"`` (the paper), ``"mean"`` (Bi-GRU then the
plain mean over steps: no self-attention) or ``"last"`` (no Bi-GRU, the last level's vector only,
as a single-level attention network would use).

Training (two stages): :mod:`fer_utils.recipes.two_level`; the losses (CCC loss, valence-arousal
loss): :mod:`fer_utils.losses`. Parameter counts are printed in notebook 04 and checked in
``tests/test_two_level.py``.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from fer_utils.models import count_parameters

SECOND_LEVEL = ("attention", "mean", "last")
#: The configuration notebook 04 trains on a CPU (the RAN paper's values are p=1, t=2, r=1).
COURSE_CONFIG: dict = dict(widths=(16, 32, 64, 64), pools=(2, 1, 1), p=0, t=1, r=1, d=64, hidden=32,
                           attention_size=32)


# ----------------------------------------------------------------------------------------------
# First level: residual units and the residual attention module
# ----------------------------------------------------------------------------------------------


class ResidualUnit(nn.Module):
    """Pre-activation residual unit: y = x' + conv(ReLU(BN(conv(ReLU(BN(x)))))).

    x' is x, or a 1x1 (strided) convolution of the activated x when channels or stride change.
    """

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.shortcut = (nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)
                         if stride != 1 or c_in != c_out else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = F.relu(self.bn1(x))
        out = self.conv2(F.relu(self.bn2(self.conv1(pre))))
        return out + (x if self.shortcut is None else self.shortcut(pre))


def _units(channels: int, n: int) -> nn.Sequential:
    return nn.Sequential(*[ResidualUnit(channels, channels) for _ in range(n)])


class SoftMaskBranch(nn.Module):
    """M(x): ``n_pool`` x [max-pool 3x3/2, r units], a bottom of r more units, then back up with
    bilinear up-sampling; a skip unit joins each bottom-up level to the top-down level of the same
    size; finally BN-ReLU-conv1x1-BN-ReLU-conv1x1-sigmoid. Output: same shape as x, in [0, 1].

    With ``n_pool = 0`` the branch is r units and the 1x1 convolutions (no change of resolution).
    """

    def __init__(self, channels: int, n_pool: int, r: int = 1) -> None:
        super().__init__()
        self.n_pool = n_pool
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.down = nn.ModuleList([_units(channels, r) for _ in range(n_pool)])
        self.skips = nn.ModuleList([ResidualUnit(channels, channels) for _ in range(max(n_pool - 1, 0))])
        self.bottom = _units(channels, r)
        self.up = nn.ModuleList([_units(channels, r) for _ in range(max(n_pool - 1, 0))])
        self.out = nn.Sequential(
            nn.BatchNorm2d(channels), nn.ReLU(inplace=True), nn.Conv2d(channels, channels, 1, bias=False),
            nn.BatchNorm2d(channels), nn.ReLU(inplace=True), nn.Conv2d(channels, channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sizes, skips, out = [], [], x
        for i in range(self.n_pool):  # bottom-up
            sizes.append(out.shape[-2:])
            out = self.down[i](self.pool(out))
            if i < self.n_pool - 1:
                skips.append(self.skips[i](out))
        out = self.bottom(out)
        for i in reversed(range(self.n_pool)):  # top-down
            out = F.interpolate(out, size=sizes[i], mode="bilinear", align_corners=False)
            if i > 0:
                out = self.up[i - 1](out + skips[i - 1])
        return torch.sigmoid(self.out(out))


class ResidualAttentionModule(nn.Module):
    """Residual attention module (Wang et al. 2017) with its hyper-parameters p, t, r.

    x -> p units -> { trunk T: t units ; mask M: :class:`SoftMaskBranch` (n_pool, r) }
      -> H = (1 + M) * T -> p units.  Shape in = shape out.
    ``attention=False`` drops the mask (H = T): the plain-residual ablation, same trunk.
    The last mask is kept in ``self.last_mask`` (for plots), detached.
    """

    def __init__(self, channels: int, n_pool: int, p: int = 1, t: int = 2, r: int = 1,
                 attention: bool = True) -> None:
        super().__init__()
        self.pre = _units(channels, p)
        self.trunk = _units(channels, t)
        self.mask = SoftMaskBranch(channels, n_pool, r) if attention else None
        self.post = _units(channels, p)
        self.last_mask: torch.Tensor | None = None

    @staticmethod
    def combine(trunk: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Attention residual learning: H = (1 + M) * T (element-wise)."""
        return (1 + mask) * trunk

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pre(x)
        trunk = self.trunk(x)
        if self.mask is None:
            return self.post(trunk)
        mask = self.mask(x)
        self.last_mask = mask.detach()
        return self.post(self.combine(trunk, mask))


class AttentionBackbone(nn.Module):
    """Stem + three attention stages + a last unit; ``forward`` returns the four level maps.

    At 48x48 with the defaults: stem conv 3x3 (1->16) + max-pool -> 16x24x24; stage 1 (mask
    pools 2) -> 16x24x24; unit /2 + stage 2 (pools 1) -> 32x12x12; unit /2 + stage 3 (pools 1)
    -> 64x6x6; unit /2 -> 64x3x3.
    """

    def __init__(self, in_channels: int = 1, widths: Sequence[int] = (16, 32, 64, 64),
                 pools: Sequence[int] = (2, 1, 1), p: int = 1, t: int = 2, r: int = 1,
                 attention: bool = True, stem_convs: int = 1) -> None:
        super().__init__()
        self.widths = tuple(widths)
        stem: list[nn.Module] = [nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)]
        for _ in range(stem_convs - 1):
            stem += [nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True),
                     nn.Conv2d(widths[0], widths[0], 3, padding=1, bias=False)]
        self.stem = nn.Sequential(*stem, nn.MaxPool2d(3, stride=2, padding=1))
        self.stages = nn.ModuleList()
        c_prev = widths[0]
        for k, (c, n_pool) in enumerate(zip(widths[:3], pools)):
            down = [] if k == 0 else [ResidualUnit(c_prev, c, stride=2)]
            self.stages.append(nn.Sequential(*down, ResidualAttentionModule(c, n_pool, p, t, r, attention)))
            c_prev = c
        self.last = nn.Sequential(ResidualUnit(c_prev, widths[3], stride=2), nn.BatchNorm2d(widths[3]),
                                  nn.ReLU(inplace=True))

    def attention_modules(self) -> list[ResidualAttentionModule]:
        return [m for m in self.modules() if isinstance(m, ResidualAttentionModule)]

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        out, levels = self.stem(images), []
        for stage in self.stages:
            out = stage(out)
            levels.append(out)
        levels.append(self.last(out))
        return levels


# ----------------------------------------------------------------------------------------------
# Level vectors, second level, heads
# ----------------------------------------------------------------------------------------------


class LevelProjection(nn.Module):
    """x_l = GAP(ReLU(BN(conv1x1(F_l)))): one d-vector per level; returns (batch, T, d)."""

    def __init__(self, channels: Sequence[int], d: int = 64) -> None:
        super().__init__()
        self.proj = nn.ModuleList([nn.Sequential(nn.Conv2d(c, d, 1, bias=False), nn.BatchNorm2d(d),
                                                 nn.ReLU(inplace=True)) for c in channels])

    def forward(self, levels: Sequence[torch.Tensor]) -> torch.Tensor:
        return torch.stack([proj(f).mean(dim=(2, 3)) for proj, f in zip(self.proj, levels)], dim=1)


class LevelAttention(nn.Module):
    """Additive self-attention pooling over steps h_t (batch, T, n):
    u_t = tanh(W h_t + b), a_t = softmax_t(u_t^T u_w), c = sum_t a_t h_t. Returns (c, a)."""

    def __init__(self, n: int, size: int = 32) -> None:
        super().__init__()
        self.W = nn.Linear(n, size)
        self.context = nn.Parameter(torch.randn(size) * 0.1)  # u_w

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        u = torch.tanh(self.W(h))  # (batch, T, size)
        weights = torch.softmax(u @ self.context, dim=1)  # (batch, T), sums to 1 over T
        return (weights.unsqueeze(-1) * h).sum(dim=1), weights


class TwoLevelOutput(NamedTuple):
    """What :class:`TwoLevelAttentionNet` returns: ``va`` (batch, 2) = (valence, arousal) in [-1, 1],
    ``logits`` (batch, classes), ``level_weights`` (batch, T) = a_t (uniform / one-hot for ablations)."""

    va: torch.Tensor
    logits: torch.Tensor
    level_weights: torch.Tensor


class TwoLevelAttentionNet(nn.Module):
    """The whole 2Att-2Mt model (see the module docs); ``forward(images)`` -> :class:`TwoLevelOutput`.

    Parts (for the parameter table): ``backbone``, ``projections``, ``rnn``, ``attention``, ``heads``
    (``classifier``, ``valence``, ``arousal``).
    """

    def __init__(self, num_classes: int = 7, in_channels: int = 1, widths: Sequence[int] = (16, 32, 64, 64),
                 pools: Sequence[int] = (2, 1, 1), p: int = 1, t: int = 2, r: int = 1, d: int = 64,
                 hidden: int = 32, attention_size: int = 32, first_level: bool = True,
                 second_level: str = "attention", stem_convs: int = 1) -> None:
        super().__init__()
        if second_level not in SECOND_LEVEL:
            raise ValueError(f"second_level must be one of {SECOND_LEVEL}, got {second_level!r}")
        self.second_level = second_level
        self.backbone = AttentionBackbone(in_channels, widths, pools, p, t, r, attention=first_level,
                                          stem_convs=stem_convs)
        n_levels = len(widths)
        if second_level == "last":
            self.projections = LevelProjection(widths[-1:], d)
            self.rnn, self.attention, features = None, None, d
        else:
            self.projections = LevelProjection(widths, d)
            self.rnn = nn.GRU(d, hidden, batch_first=True, bidirectional=True)
            self.attention = LevelAttention(2 * hidden, attention_size) if second_level == "attention" else None
            features = 2 * hidden
        self.n_levels = n_levels
        self.heads = nn.ModuleDict({"classifier": nn.Linear(features, num_classes),
                                    "valence": nn.Linear(features, 1), "arousal": nn.Linear(features, 1)})

    def features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The shared representation c (batch, features) and the level weights a (batch, T)."""
        levels = self.backbone(images)
        batch = images.shape[0]
        if self.second_level == "last":
            weights = torch.zeros(batch, self.n_levels, device=images.device)
            weights[:, -1] = 1.0
            return self.projections(levels[-1:])[:, 0], weights
        h, _ = self.rnn(self.projections(levels))  # (batch, T, 2 * hidden)
        if self.attention is None:
            return h.mean(dim=1), torch.full((batch, self.n_levels), 1 / self.n_levels, device=images.device)
        return self.attention(h)

    def forward(self, images: torch.Tensor) -> TwoLevelOutput:
        c, weights = self.features(images)
        va = torch.tanh(torch.cat([self.heads["valence"](c), self.heads["arousal"](c)], dim=1))
        return TwoLevelOutput(va, self.heads["classifier"](c), weights)

    def attention_masks(self) -> list[torch.Tensor]:
        """The soft masks of the last forward pass, one (batch, C, H, W) per attention module."""
        return [m.last_mask for m in self.backbone.attention_modules() if m.last_mask is not None]


def _parameters(module: nn.Module | None) -> int:
    return 0 if module is None else count_parameters(module)


def parameter_table(model: TwoLevelAttentionNet) -> dict[str, int]:
    """Parameters per part: backbone, level projections, Bi-RNN, attention, heads, total."""
    return {"backbone": _parameters(model.backbone), "projections": _parameters(model.projections),
            "bi_rnn": _parameters(model.rnn), "attention": _parameters(model.attention),
            "heads": _parameters(model.heads), "total": _parameters(model)}
