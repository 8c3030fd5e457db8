"""POSTER V2's building blocks: the landmark backbone, the cut-down IR-50, the window cross-attention and the ViT.

Paper: Mao et al., "POSTER V2: A simpler and stronger facial expression recognition network" (arXiv 2301.12149,
2023); authors' code github.com/Talented-Q/POSTER_V2 (MIT): ``models/mobilefacenet.py``, ``models/ir50.py``,
``models/PosterV2_7cls.py`` and ``models/vit_model.py``. Written here from a description of that code (nothing
copied); every attribute that holds a tensor carries the authors' name, so that the ``state_dict`` keys, shapes and
order are theirs (the network itself and its documentation: :mod:`fer_utils.models.poster`).

Modules that the authors build but never call are built here too (a strict load of their checkpoints needs them);
each is marked "never called" below.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ConvBN", "ConvBNPReLU", "DepthwiseUnit", "DropPath", "ECA", "GDCHead", "IRBackbone", "IRUnit",
    "LandmarkWindowAttention", "LayerScaleFFN", "MobileFaceNet", "PatchEmbed1x1", "PosterViT", "SEGate",
    "ViTBlock", "WindowNorm", "relative_position_index", "window_partition", "window_queries", "window_reverse",
]


# ----------------------------------------------------------------------------------------------
# MobileFaceNet, the landmark stream (authors' mobilefacenet.py)
# ----------------------------------------------------------------------------------------------

class ConvBN(nn.Module):
    """Conv2d (no bias) -> BatchNorm2d; the authors' ``Linear_block``."""

    def __init__(self, in_c: int, out_c: int, kernel: int = 1, stride: int = 1, padding: int = 0, groups: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_c, out_c, kernel, stride, padding, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class ConvBNPReLU(ConvBN):
    """Conv2d (no bias) -> BatchNorm2d -> PReLU (one slope per channel); the authors' ``Conv_block``."""

    def __init__(self, in_c: int, out_c: int, kernel: int = 1, stride: int = 1, padding: int = 0, groups: int = 1):
        super().__init__(in_c, out_c, kernel, stride, padding, groups)
        self.prelu = nn.PReLU(out_c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.prelu(self.bn(self.conv(x)))


class DepthwiseUnit(nn.Module):
    """Inverted residual: 1x1 ConvBNPReLU in -> mid, 3x3 depthwise ConvBNPReLU (stride), 1x1 ConvBN mid -> out;
    ``y = x + block(x)`` when ``residual`` (the authors' ``Depth_Wise``, whose ``groups`` is our ``mid``)."""

    def __init__(self, in_c: int, out_c: int, mid: int, stride: int = 2, residual: bool = False):
        super().__init__()
        self.conv = ConvBNPReLU(in_c, mid)
        self.conv_dw = ConvBNPReLU(mid, mid, 3, stride, 1, groups=mid)
        self.project = ConvBN(mid, out_c)
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.conv_dw(self.conv(x)))
        return x + y if self.residual else y


class _Residual(nn.Module):
    """``num_block`` residual DepthwiseUnits (stride 1) under the key ``model`` (the authors' ``Residual``)."""

    def __init__(self, channels: int, num_block: int, mid: int):
        super().__init__()
        self.model = nn.Sequential(*[DepthwiseUnit(channels, channels, mid, 1, True) for _ in range(num_block)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class GDCHead(nn.Module):
    """Global depthwise conv head: ``bn(linear(flatten(ConvBN_dw k x k(x))))`` -> ``embedding`` numbers.

    In POSTER V2 it gives the 136 landmark coordinates (68 points), which the network computes and throws away."""

    def __init__(self, embedding: int, channels: int = 512, kernel: int = 7):
        super().__init__()
        self.conv_6_dw = ConvBN(channels, channels, kernel, groups=channels)
        self.conv_6_flatten = nn.Flatten()
        self.linear = nn.Linear(channels, embedding, bias=False)
        self.bn = nn.BatchNorm1d(embedding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.linear(self.conv_6_flatten(self.conv_6_dw(x))))


class MobileFaceNet(nn.Module):
    """The authors' ``MobileFaceNet([112, 112], 136)``, a 68-point landmark regressor on 112x112 faces.

    Returns ``(conv_3 map 64x28x28, conv_4 map 128x14x14, conv_6_sep map 512x7x7, landmarks (B, 136))``;
    POSTER V2 uses the three maps. Weights: kaiming normal (fan_out) for convs and linears, BN 1 / 0 (theirs).
    """

    def __init__(self, embedding: int = 136):
        super().__init__()
        self.conv1 = ConvBNPReLU(3, 64, 3, 2, 1)
        self.conv2_dw = ConvBNPReLU(64, 64, 3, 1, 1, groups=64)
        self.conv_23 = DepthwiseUnit(64, 64, 128)
        self.conv_3 = _Residual(64, 4, 128)
        self.conv_34 = DepthwiseUnit(64, 128, 256)
        self.conv_4 = _Residual(128, 6, 256)
        self.conv_45 = DepthwiseUnit(128, 128, 512)
        self.conv_5 = _Residual(128, 2, 256)
        self.conv_6_sep = ConvBNPReLU(128, 512)
        self.output_layer = GDCHead(embedding)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        map28 = self.conv_3(self.conv_23(self.conv2_dw(self.conv1(x))))
        map14 = self.conv_4(self.conv_34(map28))
        map7 = self.conv_6_sep(self.conv_5(self.conv_45(map14)))
        return map28, map14, map7, self.output_layer(map7)


# ----------------------------------------------------------------------------------------------
# IR-50 cut after its third stage, the image stream (authors' ir50.py)
# ----------------------------------------------------------------------------------------------

class IRUnit(nn.Module):
    """ArcFace IR unit: ``res = BN(conv3x3_s(PReLU(conv3x3(BN(x)))))``, ``y = res + shortcut(x)`` (no activation
    after the sum); the shortcut is MaxPool2d(1, s) (a strided subsample) when the widths match, else 1x1 conv + BN."""

    def __init__(self, in_c: int, out_c: int, stride: int):
        super().__init__()
        if in_c == out_c:
            self.shortcut_layer: nn.Module = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(nn.Conv2d(in_c, out_c, 1, stride, bias=False), nn.BatchNorm2d(out_c))
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_c), nn.Conv2d(in_c, out_c, 3, 1, 1, bias=False), nn.PReLU(out_c),
            nn.Conv2d(out_c, out_c, 3, stride, 1, bias=False), nn.BatchNorm2d(out_c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


def _stage(in_c: int, out_c: int, units: int) -> nn.Sequential:
    return nn.Sequential(IRUnit(in_c, out_c, 2), *[IRUnit(out_c, out_c, 1) for _ in range(units - 1)])


class IRBackbone(nn.Module):
    """The authors' ``Backbone(50, 0.0, 'ir')``: IR-50's stem and first three stages (3 / 4 / 14 units).

    ``forward`` first resizes to 112x112 (nearest, like MobileFaceNet's input) and returns the three stage maps
    64x56x56, 128x28x28, 256x14x14. ``output_layer`` (BN, Dropout, Flatten, Linear 25088 -> 512, BN1d: 12,847,616
    parameters, made for the removed fourth stage's 512x7x7 map) is never called.
    """

    def __init__(self, drop_ratio: float = 0.0):
        super().__init__()
        self.input_layer = nn.Sequential(nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.PReLU(64))
        self.output_layer = nn.Sequential(nn.BatchNorm2d(512), nn.Dropout(drop_ratio), nn.Flatten(),
                                          nn.Linear(512 * 7 * 7, 512), nn.BatchNorm1d(512))  # never called
        self.body1 = _stage(64, 64, 3)
        self.body2 = _stage(64, 128, 4)
        self.body3 = _stage(128, 256, 14)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.input_layer(F.interpolate(x, size=112))
        x1 = self.body1(x)
        x2 = self.body2(x1)
        return x1, x2, self.body3(x2)


# ----------------------------------------------------------------------------------------------
# Window cross-attention with landmark queries (authors' PosterV2_7cls.py)
# ----------------------------------------------------------------------------------------------

def window_partition(x: torch.Tensor, ws: int) -> torch.Tensor:
    """(B, H, W, C) -> (B * nH * nW, ws * ws, C): non-overlapping ws x ws windows, row-major inside each."""
    b, h, w, c = x.shape
    x = x.view(b, h // ws, ws, w // ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, ws * ws, c)


def window_reverse(windows: torch.Tensor, ws: int, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: (B * nH * nW, ws * ws, C) -> (B, H, W, C)."""
    c = windows.shape[-1]
    x = windows.reshape(-1, h // ws, w // ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, h, w, c)


def window_queries(features: torch.Tensor, ws: int, heads: int) -> torch.Tensor:
    """Landmark map (B, C, H, W) -> queries (B * windows, heads, ws * ws, C / heads): channels-last, cut into the
    windows of the image map, heads = contiguous channel chunks. No projection and no normalisation (the authors')."""
    tokens = window_partition(features.permute(0, 2, 3, 1), ws)
    n, length, c = tokens.shape
    return tokens.reshape(n, length, heads, c // heads).transpose(1, 2)


def relative_position_index(ws: int) -> torch.Tensor:
    """Swin's (ws^2, ws^2) index into a ((2 ws - 1)^2, heads) bias table: (dy + ws - 1) (2 ws - 1) + dx + ws - 1."""
    coords = torch.stack(torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]) + (ws - 1)
    return rel[0] * (2 * ws - 1) + rel[1]


class LandmarkWindowAttention(nn.Module):
    """Cross-attention in windows (the authors' ``WindowAttentionGlobal``, after Hatamizadeh et al.'s GC ViT).

    ``out = proj(softmax(q k^T / sqrt(d) + B) v)`` per head, where q are the landmark queries (given), ``k, v =
    qkv(x)`` come from the image tokens of the same window (one Linear dim -> 2 dim), d = dim / heads and B is a
    learned relative position bias per head (table ``((2 ws - 1)^2, heads)``, trunc_normal std 0.02).
    The authors' scale is a tensor ``torch.div(dim, heads) ** -0.5`` made in the default dtype at build time; here
    it is a Python float (same value; it also follows a later ``.double()``).
    """

    def __init__(self, dim: int, num_heads: int, window_size: int, qkv_bias: bool = True):
        super().__init__()
        self.window_size, self.num_heads = window_size, num_heads
        self.scale = (dim / num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        self.register_buffer("relative_position_index", relative_position_index(window_size))
        self.qkv = nn.Linear(dim, dim * 2, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.softmax = nn.Softmax(dim=-1)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def forward(self, x: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        n, length, c = x.shape
        kv = self.qkv(x).reshape(n, length, 2, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        attn = (queries * self.scale) @ kv[0].transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        attn = attn + bias.view(length, length, -1).permute(2, 0, 1).unsqueeze(0)
        out = (self.softmax(attn) @ kv[1]).transpose(1, 2).reshape(n, length, c)
        return self.proj(out)


class WindowNorm(nn.Module):
    """The authors' ``window``: (B, C, H, W) -> LayerNorm over channels (channels-last); returns the windows
    (B * windows, ws^2, C) and the normalised map itself (B, H, W, C), which is the residual shortcut."""

    def __init__(self, window_size: int, dim: int):
        super().__init__()
        self.window_size = window_size
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shortcut = self.norm(x.permute(0, 2, 3, 1))
        return window_partition(shortcut, self.window_size), shortcut


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Stochastic depth (Huang et al. 2016): zero whole samples with probability p, scale the rest by 1 / (1 - p)."""
    if p == 0.0 or not training:
        return x
    keep = (1 - p + torch.rand((x.shape[0],) + (1,) * (x.ndim - 1), dtype=x.dtype, device=x.device)).floor_()
    return x / (1 - p) * keep


class DropPath(nn.Module):
    """:func:`drop_path` as a module (timm's ``DropPath``, which the authors import)."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.p, self.training)


class Mlp(nn.Module):
    """``fc2(GELU(fc1(x)))``, dim -> hidden -> dim (dropout 0 in POSTER V2)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class LayerScaleFFN(nn.Module):
    """The authors' ``feedforward``: un-window the attention output a, then
    ``x = s + DP(gamma1 * a)`` and ``x = x + DP(gamma2 * MLP(LN(x)))`` (s = the normalised image map; gamma1,
    gamma2 learnable per channel, initialised to ``layer_scale`` = 1e-5; MLP dim -> 4 dim -> dim)."""

    def __init__(self, dim: int, window_size: int, layer_scale: float = 1e-5, drop_path: float = 0.0):
        super().__init__()
        self.gamma1 = nn.Parameter(layer_scale * torch.ones(dim))
        self.gamma2 = nn.Parameter(layer_scale * torch.ones(dim))
        self.window_size = window_size
        self.mlp = Mlp(dim, 4 * dim)
        self.norm = nn.LayerNorm(dim)
        self.drop_path: nn.Module = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, attn_windows: torch.Tensor, shortcut: torch.Tensor) -> torch.Tensor:
        _, h, w, _ = shortcut.shape
        x = shortcut + self.drop_path(self.gamma1 * window_reverse(attn_windows, self.window_size, h, w))
        return x + self.drop_path(self.gamma2 * self.mlp(self.norm(x)))


# ----------------------------------------------------------------------------------------------
# The ViT on the multi-scale tokens (authors' vit_model.py)
# ----------------------------------------------------------------------------------------------

class PatchEmbed1x1(nn.Module):
    """The authors' ``PatchEmbed`` as they use it: a 1x1 conv (with bias) -> tokens (B, H * W, dim), norm identity.
    Their ``proj`` is hard-coded to Conv2d(256, 768, 1) whatever the arguments; ours takes the widths."""

    def __init__(self, in_c: int = 256, dim: int = 768):
        super().__init__()
        self.proj = nn.Conv2d(in_c, dim, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class ViTAttention(nn.Module):
    """Multi-head self-attention, ``proj(softmax(q k^T / sqrt(d)) v)`` with ``q, k, v = qkv(x)`` (Vaswani et al.)."""

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = True):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class ViTBlock(nn.Module):
    """Pre-norm block ``x = x + Attn(LN1(x))``, ``x = x + MLP(LN2(x))`` (LN eps 1e-6). ``conv``, a
    Conv1d(tokens, tokens, 1) left over from POSTER V1's token mixing, is never called
    (``token_conv=False`` leaves it out)."""

    def __init__(self, dim: int, tokens: int, num_heads: int = 8, mlp_ratio: float = 4.0, token_conv: bool = True):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        if token_conv:
            self.conv = nn.Conv1d(tokens, tokens, 1)  # never called
        self.attn = ViTAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class SEGate(nn.Module):
    """Squeeze-excitation on a vector: ``x * sigmoid(linear2(ReLU(linear1(x))))`` (both dim x dim, with bias)."""

    def __init__(self, dim: int):
        super().__init__()
        self.linear1 = nn.Linear(dim, dim)
        self.relu = nn.ReLU()
        self.linear2 = nn.Linear(dim, dim)
        self.sigmod = nn.Sigmoid()  # the authors' spelling, kept for the record (it holds no tensor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.sigmod(self.linear2(self.relu(self.linear1(x))))


class ECA(nn.Module):
    """ECA-Net's channel gate (Wang et al. 2020): a Conv1d over the channel descriptor, kernel
    ``k = int(|log2(C) + 1| / 2)`` made odd (5 for C = 196). Built by the authors' ViT and never called."""

    def __init__(self, channels: int = 196):
        super().__init__()
        k = int(abs((math.log(channels, 2) + 1) / 2))
        k = k if k % 2 else k + 1
        self.conv = nn.Conv1d(1, 1, kernel_size=k, padding=(k - 1) // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x.mean((2, 3)).unsqueeze(1)).transpose(1, 2).unsqueeze(-1)
        return x * torch.sigmoid(y)


class _Head(nn.Module):
    """``linear(x)`` (the authors' ``ClassificationHead``)."""

    def __init__(self, dim: int, num_classes: int):
        super().__init__()
        self.linear = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))


class PosterViT(nn.Module):
    """The authors' ``VisionTransformer(depth=2, embed_dim=768)`` on the 147 multi-scale tokens.

    ``x = [cls; tokens] + pos_embed`` (both trunc_normal std 0.02), ``depth`` pre-norm blocks with ``num_heads``
    heads (the authors hard-code 8), final LN (eps 1e-6), token 0, SE gate, linear head -> logits.
    ``extras=True`` also builds what the authors' ViT holds but never calls (``patch_embed``, ``eca_block``,
    ``CON1``, ``IRLinear1``, ``IRLinear2`` and each block's ``conv``: 1,619,021 parameters at 768 wide).
    Init (theirs): Linear trunc_normal std 0.01 and bias 0, Conv2d kaiming normal (fan_out), LayerNorm 1 / 0.
    """

    def __init__(self, tokens: int = 147, dim: int = 768, depth: int = 2, num_classes: int = 7, num_heads: int = 8,
                 mlp_ratio: float = 4.0, extras: bool = True):
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, tokens + 1, dim))
        self.se_block = SEGate(dim)
        if extras:
            self.patch_embed = PatchEmbed1x1(256, dim)  # never called
        self.head = _Head(dim, num_classes)
        if extras:
            self.eca_block = ECA(196)  # never called
            self.CON1 = nn.Conv2d(256, dim, kernel_size=1, bias=False)  # never called
            self.IRLinear1 = nn.Linear(1024, dim)  # never called
            self.IRLinear2 = nn.Linear(dim, 512)  # never called
        self.blocks = nn.Sequential(*[ViTBlock(dim, tokens + 1, num_heads, mlp_ratio, extras) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.apply(_init_vit_weights)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = torch.cat((self.cls_token.expand(tokens.shape[0], -1, -1), tokens), dim=1) + self.pos_embed
        x = self.norm(self.blocks(x))[:, 0]
        return self.head(self.se_block(x))


def _init_vit_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.01)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.Conv2d):
        nn.init.kaiming_normal_(m.weight, mode="fan_out")
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.zeros_(m.bias)
        nn.init.ones_(m.weight)
