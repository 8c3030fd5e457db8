"""MGLN: the multi-task global-local network (Yu et al., 2020).

Paper: Mingjing Yu, Huicheng Zheng, Zhifeng Peng, Jiayu Dong, Heran Du, "Facial expression
recognition based on a multi-task global-local network", Pattern Recognition Letters 131 (2020)
166-171. Authors' code: github.com/yummy2108/FER-global-local-network (``Train_FER/``, class
``GLENet``); its deformable layer ``ConvOffset2D`` comes from github.com/oeway/pytorch-deform-conv.

Re-implemented from reading that code (no code copied). The state dict of ``MGLN(7)`` has the
authors' 95 tensors, names, shapes and order (``tests/data/mgln_state_dict.tsv``), 19,988,145
parameters. Network (faithful widths; ``B`` batch, ``T = 3`` frames onset / middle / peak):

==============  ======================================================  =====================
key             block                                                   output
==============  ======================================================  =====================
front_end       SSM: VGG16 conv1_1 .. conv4_3 (3x3, ReLU, no BN), 3 max  512 x H/8 x W/8
                pools; ONE module shared by the face and all part crops
back_end.conv1  ConvOffset2D(512) -> 3x3 conv 512 -> 256, ReLU            256 x 16 x 16
back_end.conv2  ConvOffset2D(256) -> 3x3 conv 256 -> 128, ReLU            128 x 16 x 16
back_end.conv3  ConvOffset2D(128) -> 3x3 conv 128 -> 64, ReLU             64 x 16 x 16
conv4..conv6    1x1 convs 64 -> 32 -> 16 -> C, ReLU after EACH (also      C; GAP -> global logits
                the last: the authors' ``Conv2d`` wrapper defaults to ReLU)
eye/nose/mouth  per frame: 1x1 convs 512 -> 256 -> 128 -> 1 (ReLU each),  256 -> 1 x 16 x 16
_end            flattened (eyes 6x16, nose 8x4, mouth 4x8), 3-layer LSTM
                (hidden 256) over the T frames, last step
conv7..conv9    the 3 part maps stacked (eyes, nose, mouth): 1x1 convs    C; GAP -> part logits
                3 -> 32 -> 16 -> C, ReLU each
==============  ======================================================  =====================

Inputs: ``face`` (B, 3, 128, 128) is the peak frame; ``eyes`` (B, T, 3, 48, 128), ``noses``
(B, T, 3, 64, 32), ``mouths`` (B, T, 3, 32, 64). ``forward`` returns ``(global_logits,
part_logits)``; the authors predict ``argmax(global + part)``.

``deform`` picks the layer before each of the three 3x3 convs of the global branch:
``"offset2d"`` (the authors' ConvOffset2D), ``"dcn"`` (torchvision's DeformConv2d: DCNv1, the
offsets move the taps of the 3x3 convolution itself) or ``"none"`` (a plain 3x3 convolution).
Only ``"offset2d"`` has the authors' state dict.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import DeformConv2d

from fer_utils.models import flop_macs

#: VGG16 configuration "D" cut after conv4_3 (the authors' ``cfg['D']``): channels, "M" = max pool.
VGG16_CONV4 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512)
PARTS = ("eyes", "nose", "mouth")


class ConvOffset2D(nn.Conv2d):
    """Resample each channel of ``x`` at learned offsets (oeway's ``ConvOffset2D``).

    A 3x3 convolution c -> 2c (no bias) predicts offsets; the output is the INPUT resampled at
    ``(row + dy, col + dx)`` by bilinear interpolation, per channel, with coordinates clamped to
    ``[0, H-1] x [0, W-1]``. It does not convolve afterwards (the next layer does).

    The quirk kept here: the (B, 2c, H, W) offsets are read with a raw ``view(B*c, H, W, 2)``,
    so the (dy, dx) pair of a location is two horizontally adjacent values of ONE offset
    channel (channel 2k for the top half of channel k's rows, 2k+1 for the bottom half), not
    one value from each of two channels.
    """

    def __init__(self, channels: int, init_std: float = 0.01) -> None:
        super().__init__(channels, 2 * channels, 3, padding=1, bias=False)
        nn.init.normal_(self.weight, 0.0, init_std)

    def offsets(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, C, H, W, 2) offsets (dy, dx), paired as the authors' view pairs them."""
        b, c, h, w = x.shape
        return super().forward(x).reshape(b, c, h, w, 2)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        return sample_at_offsets(x, self.offsets(x))


def sample_at_offsets(x: Tensor, offsets: Tensor) -> Tensor:
    """Bilinear sample of each channel of ``x`` (B, C, H, W) at ``(i + dy, j + dx)``, clamped.

    ``offsets`` is (B, C, H, W, 2) in pixels, (dy, dx). With ``F.grid_sample``:
    ``align_corners=True`` puts -1 / +1 on the first / last pixel centre, and
    ``padding_mode="border"`` clamps the coordinates to the map (the authors' ``clamp``).
    """
    b, c, h, w = x.shape
    rows = torch.arange(h, dtype=x.dtype, device=x.device).view(1, 1, h, 1)
    cols = torch.arange(w, dtype=x.dtype, device=x.device).view(1, 1, 1, w)
    y = (rows + offsets[..., 0]).clamp(0, h - 1)
    xx = (cols + offsets[..., 1]).clamp(0, w - 1)
    grid = torch.stack([2 * xx / max(w - 1, 1) - 1, 2 * y / max(h - 1, 1) - 1], dim=-1)
    out = F.grid_sample(x.reshape(b * c, 1, h, w), grid.reshape(b * c, h, w, 2), mode="bilinear",
                        padding_mode="border", align_corners=True)
    return out.view(b, c, h, w)


class DeformBlock(nn.Module):
    """torchvision's DCNv1 3x3 conv with its own offset predictor (2 * 3 * 3 offsets per location)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.offset = nn.Conv2d(in_channels, 18, 3, padding=1)
        nn.init.zeros_(self.offset.weight)
        nn.init.zeros_(self.offset.bias)
        self.conv = DeformConv2d(in_channels, out_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x, self.offset(x))


class Conv(nn.Module):
    """The authors' ``network.Conv2d``: convolution then ReLU (key ``<name>.conv``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, padding: int = 0,
                 relu: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding)
        self.relu = nn.ReLU(inplace=True) if relu else None

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        return self.relu(x) if self.relu is not None else x


class SSM(nn.Module):
    """Shared shallow module: VGG-style 3x3 convs + ReLU and 2x2 max pools (key ``features.<i>``)."""

    def __init__(self, cfg: tuple = VGG16_CONV4, norm: str = "none") -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = 3
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                bn = {"none": [], "batch": [nn.BatchNorm2d(int(v))], "group": [nn.GroupNorm(4, int(v))]}[norm]
                layers += [nn.Conv2d(c, int(v), 3, padding=1), *bn, nn.ReLU(inplace=True)]
                c = int(v)
        self.features = nn.Sequential(*layers)
        for m in self.features.modules():  # torchvision's VGG init (the authors then load ImageNet weights)
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
        self.out_channels = c
        self.stride = 2 ** sum(v == "M" for v in cfg)

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x)


class LSTMLast(nn.Module):
    """The authors' ``Rnn``: a batch-first LSTM over the frames, output of the last step."""

    def __init__(self, in_dim: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(in_dim, hidden, layers, batch_first=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.lstm(x)[0][:, -1]


class PartEnd(nn.Module):
    """One part: per frame 1x1 convs c -> c/2 -> c/4 -> 1 (ReLU each), flatten, LSTM, a side x side map."""

    def __init__(self, channels: int, map_hw: tuple[int, int], hidden: int, layers: int = 3,
                 final_relu: bool = True, kaiming: bool = False) -> None:
        super().__init__()
        side = math.isqrt(hidden)
        if side * side != hidden:
            raise ValueError(f"LSTM hidden size must be a square (it becomes a map), got {hidden}")
        self.side = side
        self.conv1 = Conv(channels, channels // 2)
        self.conv2 = Conv(channels // 2, channels // 4)
        self.conv3 = Conv(channels // 4, 1, relu=final_relu)
        self.Rnn = LSTMLast(map_hw[0] * map_hw[1], hidden, layers)
        if kaiming:  # ours, for training from scratch; the authors keep PyTorch's default init here
            for conv in (self.conv1, self.conv2, self.conv3):
                nn.init.kaiming_normal_(conv.conv.weight, nonlinearity="relu")
                nn.init.zeros_(conv.conv.bias)

    def frame_codes(self, features: Tensor) -> Tensor:
        """(B, T, c, h, w) SSM maps -> (B, T, h*w): one value per location and frame."""
        b, t = features.shape[:2]
        x = self.conv3(self.conv2(self.conv1(features.flatten(0, 1))))
        return x.view(b, t, -1)

    def forward(self, features: Tensor) -> Tensor:
        return self.Rnn(self.frame_codes(features)).view(-1, 1, self.side, self.side)


def _deform_stage(kind: str, c_in: int, c_out: int) -> nn.Module:
    """One of the global branch's three stages: (deformation) then 3x3 conv c_in -> c_out + ReLU."""
    if kind == "offset2d":
        return nn.Sequential(ConvOffset2D(c_in), Conv(c_in, c_out, 3, padding=1))
    if kind == "dcn":
        return nn.Sequential(DeformBlock(c_in, c_out), nn.ReLU(inplace=True))
    if kind == "none":
        return nn.Sequential(nn.Identity(), Conv(c_in, c_out, 3, padding=1))
    raise ValueError(f"deform must be 'offset2d', 'dcn' or 'none', got {kind!r}")


class BackEnd(nn.Module):
    """The authors' ``back_end_deform``: the global face module (conv1-6) and the part classifier (conv7-9)."""

    def __init__(self, num_classes: int, channels: int = 512, head: tuple[int, int] = (32, 16),
                 deform: str = "offset2d", final_relu: bool = True) -> None:
        super().__init__()
        c = channels
        self.conv1 = _deform_stage(deform, c, c // 2)
        self.conv2 = _deform_stage(deform, c // 2, c // 4)
        self.conv3 = _deform_stage(deform, c // 4, c // 8)
        self.conv4 = Conv(c // 8, head[0])
        self.conv5 = Conv(head[0], head[1])
        self.conv6 = Conv(head[1], num_classes, relu=final_relu)
        self.conv7 = Conv(len(PARTS), head[0])
        self.conv8 = Conv(head[0], head[1])
        self.conv9 = Conv(head[1], num_classes, relu=final_relu)
        self._init_weights()

    def _init_weights(self) -> None:
        """The authors' init: every nn.Conv2d (ConvOffset2D included, it is one) ~ N(0, 2 / (k*k*out)), bias 0."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                m.weight.data.normal_(0, math.sqrt(2.0 / n))
                if m.bias is not None:
                    m.bias.data.zero_()

    def global_map(self, face_features: Tensor) -> Tensor:
        """SSM map of the peak face -> (B, C, h, w) class map before pooling."""
        x = self.conv3(self.conv2(self.conv1(face_features)))
        return self.conv6(self.conv5(self.conv4(x)))

    def forward(self, face_features: Tensor, local: Tensor) -> tuple[Tensor, Tensor]:
        out1 = self.global_map(face_features).mean((2, 3))
        out2 = self.conv9(self.conv8(self.conv7(local))).mean((2, 3))
        return out1, out2


class MGLNOutput(NamedTuple):
    """What :class:`MGLN` returns (the authors' ``out1, out2``): the global module's logits and the part
    module's, each (B, classes). ``logits`` is their decision-level fusion, the sum (the paper's prediction)."""

    global_logits: Tensor
    part_logits: Tensor

    @property
    def logits(self) -> Tensor:
        return self.global_logits + self.part_logits


class MGLN(nn.Module):
    """The multi-task global-local network; ``MGLN(7)`` is the authors' ``GLENet(7)`` key for key.

    ``ssm`` (VGG-style cfg), ``face_size``, ``part_sizes`` ({part: (h, w)}) and ``lstm_hidden``
    default to the authors' values; the course's scaled-down network changes them (see
    :mod:`fer_utils.recipes.mgln`). ``ssm_norm`` ("none", "batch", "group") puts a normalisation after
    each SSM conv (the authors' have none); ``part_kaiming_init`` initialises the part ends'
    1x1 convs with He's normal init instead of PyTorch's default (which the authors keep). ``final_relu=False`` drops the ReLU after the three
    one-output-channel-group convs (conv6, conv9, each part's conv3), which the authors keep.
    """

    def __init__(self, num_classes: int = 7, deform: str = "offset2d", ssm: tuple = VGG16_CONV4,
                 face_size: int = 128, part_sizes: dict[str, tuple[int, int]] | None = None,
                 lstm_hidden: int = 256, lstm_layers: int = 3, head: tuple[int, int] = (32, 16),
                 final_relu: bool = True, ssm_norm: str = "none",
                 part_kaiming_init: bool = False) -> None:
        super().__init__()
        part_sizes = dict(part_sizes or {"eyes": (48, 128), "nose": (64, 32), "mouth": (32, 64)})
        self.face_size, self.part_sizes, self.deform = face_size, part_sizes, deform
        self.front_end = SSM(ssm, ssm_norm)
        c, s = self.front_end.out_channels, self.front_end.stride
        for part in PARTS:
            h, w = part_sizes[part]
            setattr(self, f"{part.replace('eyes', 'eye')}_end", PartEnd(c, (h // s, w // s), lstm_hidden, lstm_layers,
                                                                          final_relu, part_kaiming_init))
        self.back_end = BackEnd(num_classes, c, head, deform, final_relu)

    def part_ends(self) -> dict[str, PartEnd]:
        return {"eyes": self.eye_end, "nose": self.nose_end, "mouth": self.mouth_end}

    def ssm_frames(self, crops: Tensor) -> Tensor:
        """(B, T, 3, h, w) crops -> (B, T, c, h/s, w/s): the shared SSM on every frame."""
        b, t = crops.shape[:2]
        f = self.front_end(crops.flatten(0, 1))
        return f.view(b, t, *f.shape[1:])

    def part_maps(self, eyes: Tensor, noses: Tensor, mouths: Tensor) -> Tensor:
        """The three parts' LSTM outputs as maps, stacked: (B, 3, side, side)."""
        ends = self.part_ends()
        maps = [ends[p](self.ssm_frames(x)) for p, x in zip(PARTS, (eyes, noses, mouths))]
        return torch.cat(maps, dim=1)

    def forward(self, face: Tensor, eyes: Tensor, noses: Tensor, mouths: Tensor) -> MGLNOutput:
        return MGLNOutput(*self.back_end(self.front_end(face), self.part_maps(eyes, noses, mouths)))


def example_inputs(model: MGLN, batch: int = 1, frames: int = 3) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Zero inputs of the shapes ``model`` expects."""
    s = model.face_size
    crops = [torch.zeros(batch, frames, 3, *model.part_sizes[p]) for p in PARTS]
    return (torch.zeros(batch, 3, s, s), *crops)


def load_vgg16_features(model: MGLN, vgg_state_dict: dict[str, Tensor]) -> list[str]:
    """Copy ImageNet VGG16 ``features.*`` weights into the SSM by name (the authors' start); returns the keys copied.

    Pass e.g. ``torchvision.models.vgg16(weights="IMAGENET1K_V1").state_dict()`` (downloads once).
    """
    own = model.front_end.state_dict()
    copied = [k for k, v in vgg_state_dict.items() if k in own and own[k].shape == v.shape]
    model.front_end.load_state_dict({**own, **{k: vgg_state_dict[k] for k in copied}})
    return copied


def macs(model: MGLN, frames: int = 3) -> int:
    """Multiply-accumulates of one sample (eval mode): :func:`fer_utils.models.flop_macs` (convs, LSTM matmuls)."""
    return flop_macs(model, *example_inputs(model, 1, frames))
