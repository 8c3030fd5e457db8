"""DDAMFN: a Dual-Direction Attention Mixed Feature Network (Zhang et al., 2023).

Paper: Zhang et al., "A Dual-Direction Attention Mixed Feature
Network for Facial Expression Recognition", Electronics 12(17):3595 (2023). Authors' code:
github.com/SainingZhang/DDAMFN (``networks/MixedFeatureNet.py``, ``networks/DDAM.py``).

This is a re-implementation written from a description of the authors' code (no code copied).
It is built so that their checkpoints load with ``strict=True``: every module name, every
tensor and the order of the ``state_dict`` are theirs (checked against
``tests/data/ddamfn_state_dict.tsv``, measured on their code). We do not have their weights or a
way to run their code here, so "same outputs" is not tested numerically; what is tested is the
strict load and the structural facts below.

The network, input 3x112x112 (``DDAMFN(num_classes=7, num_heads=2)``):

===  ==========  =====================================  ==========  ======  =======================  ====  =========
 #   key         block                                  in -> out   expand  kernels / channel split  reps  output
===  ==========  =====================================  ==========  ======  =======================  ====  =========
 0   features.0  ConvBlock 3x3, stride 2                3 -> 64     -       -                        1     64x56x56
 1   features.1  ConvBlock 3x3 depthwise                64 -> 64    -       -                        1     64x56x56
 2   features.2  MixDW, stride 2                        64 -> 64    128     [3,5,7] / [64,32,32]     1     64x28x28
 3   features.3  MixDW, residual                        64 -> 64    128     [3,5] / [96,32]          9     64x28x28
 4   features.4  MixDW, stride 2                        64 -> 128   256     [3,5,7] / [128,64,64]    1     128x14x14
 5   features.5  MixDW, residual                        128 -> 128  256     [3,5] / [192,64]         16    128x14x14
 6   features.6  MixDW, stride 2                        128 -> 256  1024    [3,5,7,9] / [256]*4      1     256x7x7
 7   features.7  MixDW, residual                        256 -> 256  512     [3,5,7] / [172,170,170]  6     256x7x7
 8   features.8  ConvBlock 1x1                          256 -> 512  -       -                        1     512x7x7
 -   cat_head<i> DDA head i < num_heads: a_i in (0, 1)  512 -> 512                                         512x7x7
 -   (max)       y = max_i a_i (element-wise); x * y                                                       512x7x7
 9   Linear      LinearBlock 7x7 depthwise = GDConv     512 -> 512                                         512x1x1
 10  fc          Linear 512 -> num_classes (with bias)                                                     7
===  ==========  =====================================  ==========  ======  =======================  ====  =========

Blocks:

- ConvBlock = Conv2d (no bias) -> BatchNorm2d -> PReLU (one slope per channel);
  LinearBlock = Conv2d (no bias) -> BatchNorm2d (no activation).
- MixDW (mixed depthwise block): 1x1 ConvBlock in -> E; MDConv: split the E channels into
  groups, group i gets a depthwise k_i x k_i conv (padding k_i // 2), concatenate; coordinate
  attention CA(E); 1x1 LinearBlock E -> out; ``out = x + block(x)`` when residual.
- CA (Hou et al. 2021) on C x H x W: z_h = mean over width (C x H), z_w = mean over height
  (C x W); f = h_swish(BN(W_1 [z_h ; z_w])) with W_1: C -> mip = max(8, C // 32) (bias);
  a_h = sigmoid(W_2 f_h), a_w = sigmoid(W_3 f_w); output x * a_h * a_w, h_swish(t) = t ReLU6(t+3) / 6.
- DDA head (dual-direction attention): like CA, but the two directional descriptors come from
  learned depthwise convolutions (GDConv) instead of average pooling: ``Linear_h`` (kernel 1x7)
  collapses the width, ``Linear_w`` (kernel 7x1) the height, each followed by BatchNorm. The head
  returns the map a_i = a_h * a_w in (0, 1) of shape 512x7x7; it does NOT multiply by its input.
- Heads are merged by the element-wise maximum, the features are multiplied by it, a 7x7
  depthwise GDConv + BatchNorm reduces to 512x1x1, and ``fc`` gives the logits. No dropout.
- ``forward`` returns ``(logits, features, head_maps)``: ``features`` is the un-attended 512x7x7
  output of ``features.8``; ``head_maps`` the list of the num_heads maps (empty for 0 heads).

Kept although never used in ``forward`` (the authors' modules build them, so their checkpoints
contain them and a strict load needs them; they get no gradient, see
:func:`unused_parameter_names`):

- every MDConv's ``bn`` (BatchNorm2d(E)) and ``prelu`` (PReLU(E)): the mixed depthwise output
  goes straight into CA (29,184 parameters in the faithful backbone);
- every head's ``Linear`` (a 7x7 depthwise LinearBlock, 26,112 parameters per head);
- the network's ``bn`` (BatchNorm1d(num_classes), 14 parameters for 7 classes).

Counts (tested): all parameters 4,187,421; used in a forward pass 4,105,999 (the paper's 4.106 M)
for 2 heads and 7 classes; 539.59 M multiply-accumulates at 112x112 (``torch.utils.flop_counter``,
FLOPs / 2; the paper's 551.22 M also counts BatchNorm, PReLU and pooling).

Training (the authors' RAF-DB script): cross-entropy + 0.1 x the attention loss, SGD momentum 0.9,
weight decay 1e-4, lr 0.01, StepLR(10, 0.1), batch 256, 40 epochs: :mod:`fer_utils.recipes.ddamfn`
(``FULL``), with the loss in :mod:`fer_utils.losses` and the augmentation in :mod:`fer_utils.data.transforms`.

``num_heads=0`` is ours (ablation): MFN + GDConv + fc with no attention (x is not multiplied).
Weights use PyTorch's default initialisation (the authors' files set none that we know of).
:data:`COURSE` is ours: a scaled-down configuration for CPU training (same blocks and kernel lists,
widths / 4, 1 / 2 / 1 residual blocks instead of 9 / 16 / 6, 64x64 input, 4x4 final map and GDConv kernels).

Also here: :class:`MixedFeatureNet` (the authors' whole MFN with its 256-d embedding, for counting and for
their MS-Celeb backbone) and :func:`mobilefacenet` (for the paper's backbone comparison). Loading the
authors' checkpoints and backbone: :mod:`fer_utils.weights`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from fer_utils.models import count_parameters, flop_macs

__all__ = [
    "COURSE", "FAITHFUL", "MFN_CHILDREN", "ConvBlock", "CoordAtt", "CoordAttHead", "DDAHead", "DDAMFN", "DDAMFNConfig",
    "DepthWise", "LinearBlock", "MDConv", "MixDW", "MixResidual", "MixedFeatureNet", "Stage", "count_used_parameters",
    "macs", "mobilefacenet", "unused_parameter_names",
]

#: The MFN's named children in the authors' file, in order; DDAMNet keeps the first nine as features.0..8.
MFN_CHILDREN = ("conv1", "conv2_dw", "conv_23", "conv_3", "conv_34", "conv_4", "conv_45", "conv_5", "conv_6_sep",
                "conv_6_dw", "conv_6_flatten", "linear", "bn")


# ----------------------------------------------------------------------------------------------
# Configuration: the paper's table as data
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Stage:
    """One MixDW row of the table: ``repeats`` = 1 and stride 2 for a downsampling block."""

    in_channels: int
    out_channels: int
    expand: int
    kernels: tuple[int, ...]
    splits: tuple[int, ...]
    repeats: int = 1
    stride: int = 1

    @property
    def residual(self) -> bool:
        return self.stride == 1


@dataclass(frozen=True)
class DDAMFNConfig:
    """Widths and depths of the backbone; the input is ``input_size`` and the final map input_size / 16."""

    name: str
    stem: int
    stages: tuple[Stage, ...]
    embedding: int
    input_size: int = 112

    @property
    def map_size(self) -> int:
        return -(-self.input_size // 16)  # four stride-2 steps, each ceil(n / 2)


#: The authors' MixedFeatureNet (the table in the module docstring).
FAITHFUL = DDAMFNConfig("faithful", stem=64, embedding=512, stages=(
    Stage(64, 64, 128, (3, 5, 7), (64, 32, 32), stride=2),
    Stage(64, 64, 128, (3, 5), (96, 32), repeats=9),
    Stage(64, 128, 256, (3, 5, 7), (128, 64, 64), stride=2),
    Stage(128, 128, 256, (3, 5), (192, 64), repeats=16),
    Stage(128, 256, 1024, (3, 5, 7, 9), (256, 256, 256, 256), stride=2),
    Stage(256, 256, 512, (3, 5, 7), (172, 170, 170), repeats=6),
))

def scaled(config: DDAMFNConfig, name: str, divisor: int, repeats: Sequence[int], input_size: int) -> DDAMFNConfig:
    """``config`` with every width divided by ``divisor`` (each channel split floored, the remainder
    given to the first group) and its residual stages repeated ``repeats`` times instead."""
    def split(parts: tuple[int, ...], total: int) -> tuple[int, ...]:
        floors = [c // divisor for c in parts]
        return (floors[0] + total - sum(floors), *floors[1:])

    residual = iter(repeats)
    stages = tuple(Stage(st.in_channels // divisor, st.out_channels // divisor, st.expand // divisor, st.kernels,
                         split(st.splits, st.expand // divisor), next(residual) if st.residual else 1, st.stride)
                   for st in config.stages)
    return DDAMFNConfig(name, config.stem // divisor, stages, config.embedding // divisor, input_size)


#: Ours, for CPU training: every width / 4, one or two repeats per residual stage (1, 2, 1 instead of
#: 9, 16, 6), same block types and kernel lists with the splits scaled, 64x64 input, so the final map
#: is 4x4 and the heads' and the classifier's GDConv kernels are 4 wide instead of 7.
COURSE = scaled(FAITHFUL, "course", 4, repeats=(1, 2, 1), input_size=64)


# ----------------------------------------------------------------------------------------------
# Blocks
# ----------------------------------------------------------------------------------------------

class LinearBlock(nn.Module):
    """Conv2d (no bias) -> BatchNorm2d, no activation. With a full-map depthwise kernel it is a GDConv."""

    def __init__(self, in_c: int, out_c: int, kernel=(1, 1), stride=(1, 1), padding=(0, 0), groups: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_c, out_c, kernel, stride, padding, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class ConvBlock(LinearBlock):
    """Conv2d (no bias) -> BatchNorm2d -> PReLU(out_channels): a LinearBlock with an activation."""

    def __init__(self, in_c: int, out_c: int, kernel=(1, 1), stride=(1, 1), padding=(0, 0), groups: int = 1):
        super().__init__(in_c, out_c, kernel, stride, padding, groups)
        self.prelu = nn.PReLU(out_c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.prelu(super().forward(x))


def h_swish(x: torch.Tensor) -> torch.Tensor:
    """h_swish(x) = x * ReLU6(x + 3) / 6."""
    return x * F.relu6(x + 3) / 6


class MDConv(nn.Module):
    """Mixed depthwise conv (Tan & Le, MixConv 2019): channel group i gets a k_i x k_i depthwise kernel.

    ``bn`` and ``prelu`` are built as in the authors' code and never used (kept for their checkpoints).
    """

    def __init__(self, channels: int, kernels: Sequence[int], splits: Sequence[int], stride: int):
        super().__init__()
        if sum(splits) != channels or len(splits) != len(kernels):
            raise ValueError(f"splits {list(splits)} must sum to {channels} and match kernels {list(kernels)}")
        self.splits = list(splits)
        self.mixed_depthwise_conv = nn.ModuleList(
            nn.Conv2d(c, c, k, stride, k // 2, groups=c, bias=False) for k, c in zip(kernels, splits))
        self.bn = nn.BatchNorm2d(channels)      # unused in forward (authors' code)
        self.prelu = nn.PReLU(channels)         # unused in forward (authors' code)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        groups = torch.split(x, self.splits, dim=1)
        return torch.cat([conv(g) for conv, g in zip(self.mixed_depthwise_conv, groups)], dim=1)


def _mip(channels: int, reduction: int = 32) -> int:
    return max(8, channels // reduction)


class CoordAtt(nn.Module):
    """Coordinate attention (Hou et al. 2021) with average pooling: returns x * a_h * a_w."""

    def __init__(self, channels: int):
        super().__init__()
        mip = _mip(channels)
        self.conv1 = nn.Conv2d(channels, mip, 1)
        self.bn1 = nn.BatchNorm2d(mip)
        self.conv2 = nn.Conv2d(mip, channels, 1)   # h direction
        self.conv3 = nn.Conv2d(mip, channels, 1)   # w direction

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        z_h = x.mean(dim=3, keepdim=True)                        # (B, C, H, 1)
        z_w = x.mean(dim=2, keepdim=True).transpose(2, 3)        # (B, C, W, 1)
        f = h_swish(self.bn1(self.conv1(torch.cat([z_h, z_w], dim=2))))
        f_h, f_w = torch.split(f, [height, width], dim=2)
        a_h = torch.sigmoid(self.conv2(f_h))                      # (B, C, H, 1)
        a_w = torch.sigmoid(self.conv3(f_w.transpose(2, 3)))      # (B, C, 1, W)
        return x * a_w * a_h


class MixDW(nn.Module):
    """Expand (1x1 ConvBlock) -> MDConv -> CA -> project (1x1 LinearBlock); + x when residual."""

    def __init__(self, in_c: int, out_c: int, expand: int, kernels: Sequence[int], splits: Sequence[int],
                 stride: int = 1, residual: bool = False):
        super().__init__()
        if residual and (in_c != out_c or stride != 1):
            raise ValueError("a residual MixDW needs in_c == out_c and stride 1")
        self.residual = residual
        self.conv = ConvBlock(in_c, expand)
        self.conv_dw = MDConv(expand, kernels, splits, stride)
        self.CA = CoordAtt(expand)
        self.project = LinearBlock(expand, out_c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.CA(self.conv_dw(self.conv(x))))
        return x + out if self.residual else out


class MixResidual(nn.Module):
    """``repeats`` residual MixDW blocks in a row (the authors keep them in ``.model``)."""

    def __init__(self, stage: Stage):
        super().__init__()
        self.model = nn.Sequential(*[
            MixDW(stage.out_channels, stage.out_channels, stage.expand, stage.kernels, stage.splits, 1, True)
            for _ in range(stage.repeats)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class DDAHead(nn.Module):
    """Dual-direction attention: coordinate attention whose directional pooling is a learned GDConv.

    On x (B, C, S, S): d_h = BN(conv_{1xS}(x)) (B, C, S, 1), d_w = BN(conv_{Sx1}(x)) (B, C, 1, S);
    f = h_swish(BN(W_1 [d_h ; d_w^T])); a_h = sigmoid(W_2 f_h), a_w = sigmoid(W_3 f_w);
    returns a = a_h * a_w (B, C, S, S). ``Linear`` is built but unused (authors' code).
    """

    def __init__(self, channels: int = 512, map_size: int = 7):
        super().__init__()
        mip = _mip(channels)
        self.Linear_h = LinearBlock(channels, channels, (1, map_size), groups=channels)
        self.Linear_w = LinearBlock(channels, channels, (map_size, 1), groups=channels)
        self.conv1 = nn.Conv2d(channels, mip, 1)
        self.bn1 = nn.BatchNorm2d(mip)
        self.conv2 = nn.Conv2d(mip, channels, 1)
        self.conv3 = nn.Conv2d(mip, channels, 1)
        self.Linear = LinearBlock(channels, channels, (map_size, map_size), groups=channels)  # unused

    def directions(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The two attention vectors: a_h (B, C, S, 1) over rows and a_w (B, C, 1, S) over columns."""
        d_h = self.Linear_h(x)                                    # (B, C, S, 1)
        d_w = self.Linear_w(x).transpose(2, 3)                    # (B, C, 1, S) -> (B, C, S, 1)
        f = h_swish(self.bn1(self.conv1(torch.cat([d_h, d_w], dim=2))))
        f_h, f_w = torch.split(f, [d_h.shape[2], d_w.shape[2]], dim=2)
        return torch.sigmoid(self.conv2(f_h)), torch.sigmoid(self.conv3(f_w.transpose(2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a_h, a_w = self.directions(x)
        return a_w * a_h                                          # (B, C, S, S), not times x


class CoordAttHead(nn.Module):
    """The authors' wrapper: one DDA head kept under the attribute name ``CoordAtt``."""

    def __init__(self, channels: int = 512, map_size: int = 7):
        super().__init__()
        self.CoordAtt = DDAHead(channels, map_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.CoordAtt(x)


def build_features(config: DDAMFNConfig) -> nn.Sequential:
    """features.0 .. features.8 of the table (the MFN without its embedding part)."""
    layers: list[nn.Module] = [
        ConvBlock(3, config.stem, (3, 3), (2, 2), (1, 1)),
        ConvBlock(config.stem, config.stem, (3, 3), (1, 1), (1, 1), groups=config.stem),
    ]
    for stage in config.stages:
        if stage.residual:
            layers.append(MixResidual(stage))
        else:
            layers.append(MixDW(stage.in_channels, stage.out_channels, stage.expand, stage.kernels, stage.splits,
                                stage.stride, residual=False))
    layers.append(ConvBlock(config.stages[-1].out_channels, config.embedding))
    return nn.Sequential(*layers)


# ----------------------------------------------------------------------------------------------
# The model
# ----------------------------------------------------------------------------------------------

class MixedFeatureNet(nn.Module):
    """The authors' whole MFN (face-recognition backbone): features 0..8 under their own names, then
    conv_6_dw (7x7 GDConv LinearBlock), flatten, linear (512 -> 256, no bias), bn (BatchNorm1d) and
    L2 normalisation. DDAMFN keeps only conv1 .. conv_6_sep (as ``features.0`` .. ``features.8``)."""

    def __init__(self, config: DDAMFNConfig = FAITHFUL, embedding_size: int = 256):
        super().__init__()
        for name, layer in zip(MFN_CHILDREN, build_features(config)):
            self.add_module(name, layer)
        size, channels = config.map_size, config.embedding
        self.conv_6_dw = LinearBlock(channels, channels, (size, size), groups=channels)
        self.conv_6_flatten = nn.Flatten()
        self.linear = nn.Linear(channels, embedding_size, bias=False)
        self.bn = nn.BatchNorm1d(embedding_size)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images
        for name in MFN_CHILDREN[:-1]:
            x = getattr(self, name)(x)
        return F.normalize(self.bn(x), dim=1)


class DepthWise(nn.Module):
    """MobileFaceNet's bottleneck: 1x1 ConvBlock in -> E, 3x3 depthwise ConvBlock, 1x1 LinearBlock E -> out."""

    def __init__(self, in_c: int, out_c: int, expand: int, stride: int = 1, residual: bool = False):
        super().__init__()
        self.residual = residual
        self.conv = ConvBlock(in_c, expand)
        self.conv_dw = ConvBlock(expand, expand, (3, 3), (stride, stride), (1, 1), groups=expand)
        self.project = LinearBlock(expand, out_c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.conv_dw(self.conv(x)))
        return x + out if self.residual else out


def mobilefacenet(embedding_size: int = 512) -> nn.Sequential:
    """MobileFaceNet (Chen et al. 2018) for the backbone comparison, in the layout of the common PyTorch
    port (InsightFace_Pytorch): stages of 4, 6 and 2 residual 3x3 depthwise bottlenecks (expansion 128,
    256, 256), GDConv 7x7 and a 512 -> ``embedding_size`` linear + BatchNorm1d. The layout and the
    embedding size are our choice; the paper does not say which variant it counted."""
    def residual(c: int, expand: int, n: int) -> nn.Sequential:
        return nn.Sequential(*[DepthWise(c, c, expand, 1, True) for _ in range(n)])

    return nn.Sequential(
        ConvBlock(3, 64, (3, 3), (2, 2), (1, 1)), ConvBlock(64, 64, (3, 3), (1, 1), (1, 1), groups=64),
        DepthWise(64, 64, 128, 2), residual(64, 128, 4),
        DepthWise(64, 128, 256, 2), residual(128, 256, 6),
        DepthWise(128, 128, 512, 2), residual(128, 256, 2),
        ConvBlock(128, 512), LinearBlock(512, 512, (7, 7), groups=512), nn.Flatten(),
        nn.Linear(512, embedding_size, bias=False), nn.BatchNorm1d(embedding_size))


class DDAMFNOutput(NamedTuple):
    """What :class:`DDAMFN` returns (the authors' ``out, x, head_out`` in that order):
    ``logits`` (B, classes), ``features`` (B, 512, 7, 7) the backbone's map, ``heads`` one (B, 512, 7, 7)
    attention map per DDA head (the attention loss reads them)."""

    logits: torch.Tensor
    features: torch.Tensor
    heads: list[torch.Tensor]


class DDAMFN(nn.Module):
    """MixedFeatureNet features, ``num_heads`` DDA heads merged by max, GDConv, fc.

    ``DDAMFN(num_classes=7, num_heads=2)`` is the authors' DDAMNet (state dict identical);
    ``config=COURSE`` builds the scaled-down course network; ``num_heads=0`` drops the attention.
    """

    def __init__(self, num_classes: int = 7, num_heads: int = 2, config: DDAMFNConfig = FAITHFUL):
        super().__init__()
        if num_heads < 0:
            raise ValueError(f"num_heads must be >= 0, got {num_heads}")
        self.num_classes, self.num_heads, self.config = num_classes, num_heads, config
        channels, size = config.embedding, config.map_size
        self.features = build_features(config)
        for i in range(num_heads):
            setattr(self, f"cat_head{i}", CoordAttHead(channels, size))
        self.Linear = LinearBlock(channels, channels, (size, size), groups=channels)   # GDConv
        self.fc = nn.Linear(channels, num_classes)
        self.bn = nn.BatchNorm1d(num_classes)                                          # unused (authors' code)

    @property
    def heads(self) -> list[CoordAttHead]:
        return [getattr(self, f"cat_head{i}") for i in range(self.num_heads)]

    def forward(self, images: torch.Tensor) -> DDAMFNOutput:
        return self.classify(self.features(images))              # features: (B, 512, 7, 7)

    def classify(self, features: torch.Tensor) -> DDAMFNOutput:
        """Everything after the backbone: heads, max over heads, ``features * max``, GDConv, fc."""
        head_maps = [head(features) for head in self.heads]      # num_heads x (B, 512, 7, 7)
        x = features
        if head_maps:
            attention = head_maps[0]
            for other in head_maps[1:]:
                attention = torch.max(attention, other)          # element-wise max over heads
            x = features * attention
        x = self.Linear(x).flatten(1)                            # (B, 512)
        return DDAMFNOutput(self.fc(x), features, head_maps)


# ----------------------------------------------------------------------------------------------
# Counting
# ----------------------------------------------------------------------------------------------

def unused_parameter_names(model: nn.Module) -> list[str]:
    """Parameters that forward never touches: MDConv bn/prelu, each DDA head's Linear, DDAMFN's final bn."""
    dead: list[nn.Module] = []
    prefixes: list[str] = []
    for name, module in model.named_modules():
        if isinstance(module, MDConv):
            dead += [module.bn, module.prelu]
            prefixes += [f"{name}.bn", f"{name}.prelu"]
        elif isinstance(module, DDAHead):
            dead.append(module.Linear)
            prefixes.append(f"{name}.Linear")
        elif isinstance(module, DDAMFN):
            dead.append(module.bn)
            prefixes.append(f"{name}.bn" if name else "bn")
    return [f"{prefix}.{p}" for module, prefix in zip(dead, prefixes) for p, _ in module.named_parameters()]


def count_used_parameters(model: nn.Module) -> int:
    """Parameters a forward pass uses (the paper's / thop's count): all but :func:`unused_parameter_names`."""
    return count_parameters(model, exclude=unused_parameter_names(model))


def macs(model: nn.Module, input_size: int = 112) -> int:
    """Multiply-accumulates of one image (eval mode): :func:`fer_utils.models.flop_macs` (conv and matrix
    products only; BatchNorm, activations, pooling and element-wise products are not counted)."""
    return flop_macs(model, torch.zeros(1, 3, input_size, input_size))
