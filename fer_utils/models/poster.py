"""POSTER V2 (Mao et al. 2023), faithful to the authors' code key for key, and a scaled-down course configuration.

Papers: Mao, Zheng, Chen et al., "POSTER V2: A simpler and stronger facial expression recognition network"
(arXiv 2301.12149, 2023; later "POSTER++"); Zheng, Mendieta, Chen, "POSTER: A Pyramid Cross-Fusion Transformer
Network for Facial Expression Recognition" (ICCV Workshops 2023, arXiv 2204.04083) for V1.
Authors' code: github.com/Talented-Q/POSTER_V2 (MIT; ``models/PosterV2_7cls.py``, class ``pyramid_trans_expr2``, read
at commit 18de5591) and github.com/zczcwh/POSTER (V1). Re-implemented from a description of that code, nothing
copied; the blocks are in :mod:`fer_utils.models.poster_blocks`.

:class:`PosterV2` is the authors' network: ``state_dict()`` has their 747 entries, names, shapes and order
(``tests/data/posterv2_state_dict.tsv``), so their released checkpoints load with ``strict=True``
(:func:`load_authors_state_dict` strips DataParallel's ``module.`` prefix). Input (B, 3, 224, 224), ImageNet-normalised;
output the logits (B, 7). In float64, with the same random weights, its logits equal those of the authors' code
to 1e-15 (measured once against their files, outside the test suite).

===  ===========================  =================================================================  ===========
 #   key                          block                                                              output
===  ===========================  =================================================================  ===========
 0   (none)                       ``F.interpolate(x, size=112)``, nearest: = ``x[:, :, ::2, ::2]``    3x112x112
 1   face_landback (frozen)       MobileFaceNet: conv_3 / conv_4 / conv_6_sep maps (+ 136 landmarks)  64x28x28,
                                                                                                     128x14x14,
                                                                                                     512x7x7
 2   last_face_conv               3x3 conv 512 -> 256 on the 7x7 landmark map                         256x7x7
 3   ir_back                      IR-50 stem + 3 / 4 / 14 IR units (resizes to 112 again itself)     64x56x56,
                                                                                                     128x28x28,
                                                                                                     256x14x14
 4   conv1 / conv2 / conv3        3x3 stride-2 convs (with bias), widths kept                        28 / 14 / 7
 5   window<i>, attn<i>, ffn<i>   s = LN(image map); window cross-attention, Q = landmark map,       same
                                  K, V = qkv(s); x = s + g1 A; x = x + g2 MLP(LN(x))
 6   embed_q / embed_k / embed_v  two / one 3x3 stride-2 convs, 1x1 conv -> 7x7 x 768 each           147 x 768
 7   VIT                          [cls; tokens] + pos, 2 blocks (8 heads), LN, token 0, SE, head     7
===  ===========================  =================================================================  ===========

Window cross-attention at scale i (dims 64 / 128 / 256, heads 2 / 4 / 8, head width 32, windows 28 / 14 / 7):
``A = proj(softmax(q k^T / sqrt(32) + B_rel) v)`` with q the landmark features (no projection, no norm),
``[k, v] = qkv(LN(x_img))`` and a Swin relative position bias ``B_rel``. Only landmark -> image attention is kept
(V1's image -> landmark branch is gone).

The authors' quirks, reproduced here (each has a test in ``tests/test_poster.py``):

1. **224 read at 112.** Both backbones call ``F.interpolate(x, size=112)`` in the default nearest mode: for a 224
   input that is ``x[:, :, ::2, ::2]``; the other three quarters of the pixels are never read.
2. **One window per scale.** The windows (28, 14, 7) equal the maps, so the "window" attention is global attention
   over 784 / 196 / 49 tokens and each relative position index is (784, 784), (196, 196), (49, 49).
3. **The shortcut is normalised.** The residual around the attention is LN(image map), not the conv output.
4. **Layer scale 1e-5.** gamma1 and gamma2 start at 1e-5: untrained, the cross-attention barely moves the logits.
5. **The 7-class file ignores num_classes** for the ViT head: ``PosterV2(num_classes=8)`` still returns 7 logits
   (``follow_num_classes=True`` behaves like their ``PosterV2_8cls.py``, whose head follows num_classes).
6. **8 ViT heads, hard-coded** (head width 96).
7. **Frozen but switchable landmark net.** face_landback has ``requires_grad=False``, yet ``model.train()`` puts its
   BatchNorms in training mode (batch statistics, drifting running stats); a training-mode batch of 1 raises a
   ValueError in its 136-d head's BatchNorm1d.
8. **Computed and thrown away:** MobileFaceNet's 136-d landmark head runs on every forward; its output is unused.
9. **Built, never called** (kept for the strict load): ir_back.output_layer (12,847,616 parameters); VIT's
   patch_embed, CON1, IRLinear1, IRLinear2, eca_block and each block's ``conv`` (1,619,021): 14,466,637 in all.

Not reproduced: the authors' attention scale is a tensor made in the default dtype at build time (a float32 model
cast to float64 keeps a float32 scale); ours is a Python float of the same value.

Counts (tested, :func:`called_parameters`, :func:`count_macs`, one 224x224 image): 58,316,594 parameters in all;
43,849,957 in modules that a forward calls; 43,724,311 in called leaf modules (thop's rule, which skips cls_token,
pos_embed, the bias tables and the gammas) -- the README's "43.7M". thop 0.1.1's rules give 8,482,266,176
"FLOPs" (multiply-accumulates, plus norms, PReLU and softmax) -- the README's "8.4G".

:class:`PosterCourse` is ours: a scaled-down course configuration of the same design for 48 or 64 px images on a CPU.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from fer_utils.models import eval_mode
from fer_utils.models.poster_blocks import (
    ConvBNPReLU, DepthwiseUnit, GDCHead, IRBackbone, IRUnit, LandmarkWindowAttention, LayerScaleFFN, Mlp, MobileFaceNet,
    PatchEmbed1x1, PosterViT, ViTAttention, WindowNorm, window_queries, window_reverse,
)

__all__ = [
    "MODES", "CourseImageNet", "CourseLandmarkNet", "CrossAttention", "MacCounts", "ParameterCounts", "PosterCourse",
    "PosterV2", "TwoWayCrossAttention", "WindowFusion",
    "called_parameters", "count_macs", "load_authors_state_dict",
]


class PosterV2(nn.Module):
    """POSTER V2 as in the authors' ``PosterV2_7cls.py`` (``pyramid_trans_expr2``); see the module docstring.

    ``num_classes`` is stored but, like theirs, not passed to the ViT head (7 logits) unless
    ``follow_num_classes`` (their 8-class file). Weights: the authors' initialisation, no checkpoint loaded.
    """

    WINDOWS, HEADS, DIMS, EMBED = (28, 14, 7), (2, 4, 8), (64, 128, 256), 768

    def __init__(self, num_classes: int = 7, follow_num_classes: bool = False):
        super().__init__()
        self.num_classes = num_classes
        self.face_landback = MobileFaceNet(136)
        self.face_landback.requires_grad_(False)
        self.VIT = PosterViT(147, self.EMBED, depth=2, num_classes=num_classes if follow_num_classes else 7)
        self.ir_back = IRBackbone(0.0)
        for i, (ws, heads, dim) in enumerate(zip(self.WINDOWS, self.HEADS, self.DIMS), 1):
            setattr(self, f"attn{i}", LandmarkWindowAttention(dim, heads, ws))
        for i, (ws, dim) in enumerate(zip(self.WINDOWS, self.DIMS), 1):
            setattr(self, f"window{i}", WindowNorm(ws, dim))
        for i, dim in enumerate(self.DIMS, 1):
            setattr(self, f"conv{i}", nn.Conv2d(dim, dim, 3, 2, 1))
        drop_path = torch.linspace(0, 0.5, 5).tolist()  # 0, 0.125, 0.25 used
        for i, (ws, dim) in enumerate(zip(self.WINDOWS, self.DIMS), 1):
            setattr(self, f"ffn{i}", LayerScaleFFN(dim, ws, 1e-5, drop_path[i - 1]))
        self.last_face_conv = nn.Conv2d(512, 256, 3, padding=1)
        self.embed_q = nn.Sequential(nn.Conv2d(64, 768, 3, 2, 1), nn.Conv2d(768, 768, 3, 2, 1))
        self.embed_k = nn.Sequential(nn.Conv2d(128, 768, 3, 2, 1))
        self.embed_v = PatchEmbed1x1(256, 768)

    def fuse(self, i: int, image_map: torch.Tensor, landmark_map: torch.Tensor) -> torch.Tensor:
        """Scale i (1..3): conv<i>, LN and windows, landmark-query attention, layer-scaled residual + MLP (BCHW)."""
        windows, shortcut = getattr(self, f"window{i}")(getattr(self, f"conv{i}")(image_map))
        queries = window_queries(landmark_map, self.WINDOWS[i - 1], self.HEADS[i - 1])
        out = getattr(self, f"attn{i}")(windows, queries)
        return getattr(self, f"ffn{i}")(out, shortcut).permute(0, 3, 1, 2)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        lm1, lm2, lm3, _landmarks = self.face_landback(F.interpolate(images, size=112))  # landmarks unused
        landmark_maps = (lm1, lm2, self.last_face_conv(lm3))
        image_maps = self.ir_back(images)
        o1, o2, o3 = (self.fuse(i, x, q) for i, (x, q) in enumerate(zip(image_maps, landmark_maps), 1))
        tokens = torch.cat([self.embed_q(o1).flatten(2).transpose(1, 2), self.embed_k(o2).flatten(2).transpose(1, 2),
                            self.embed_v(o3)], dim=1)
        return self.VIT(tokens)


def load_authors_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], strict: bool = True) -> Any:
    """Load an already-read checkpoint of the authors into ``model``: unwraps ``{"state_dict": ...}`` and strips
    DataParallel's ``module.`` prefix, then ``model.load_state_dict(..., strict)`` (returns its result)."""
    if "state_dict" in state_dict and isinstance(state_dict["state_dict"], Mapping):
        state_dict = state_dict["state_dict"]
    clean = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state_dict.items()}
    return model.load_state_dict(clean, strict=strict)


# ----------------------------------------------------------------------------------------------
# Counting: parameters of the modules a forward calls, multiply-accumulates
# ----------------------------------------------------------------------------------------------

class ParameterCounts(NamedTuple):
    """``total``: every parameter; ``called``: those owned by modules a forward calls; ``called_leaf``: those of
    called modules without children (thop's count); ``uncalled``: the top-most modules never called."""

    total: int
    called: int
    called_leaf: int
    uncalled: tuple[str, ...]


def _forward_with_hooks(model: nn.Module, inputs: tuple, handles: list) -> None:
    """One eval-mode forward without gradients, for the hooks behind ``handles``; they are removed and the
    model's train/eval mode restored afterwards."""
    try:
        with eval_mode(model), torch.no_grad():
            model(*inputs)
    finally:
        for h in handles:
            h.remove()


def _called(model: nn.Module, inputs: tuple) -> set[str]:
    names: set[str] = set()
    handles = [m.register_forward_pre_hook(lambda mod, args, n=name: names.add(n))
               for name, m in model.named_modules()]
    _forward_with_hooks(model, inputs, handles)
    return names


def called_parameters(model: nn.Module, *inputs: torch.Tensor) -> ParameterCounts:
    """Run ``model(*inputs)`` once (eval, no grad) with forward pre-hooks and count parameters by who was called."""
    called = _called(model, inputs)
    modules = dict(model.named_modules())
    own = {n: sum(p.numel() for p in m.parameters(recurse=False)) for n, m in modules.items()}
    leaf = {n for n, m in modules.items() if next(m.children(), None) is None}
    uncalled = tuple(n for n in modules if n not in called and n.rpartition(".")[0] in called)
    return ParameterCounts(sum(p.numel() for p in model.parameters()), sum(own[n] for n in called),
                           sum(own[n] for n in called & leaf), uncalled)


class MacCounts(NamedTuple):
    """Multiply-accumulates of one forward: ``conv`` and ``linear`` layers, ``attention`` (q k^T and attn v
    products), their sum ``total``, and ``thop``: thop 0.1.1's count (conv and linear MACs + 4 per element of an
    affine BatchNorm / LayerNorm + 1 per PReLU element + 3n - 1 per nn.Softmax row of n)."""

    conv: int
    linear: int
    attention: int
    thop: int

    @property
    def total(self) -> int:
        return self.conv + self.linear + self.attention


def _mac_rule(m: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[str, int, int]:
    """(kind, MACs, thop ops) of one call of the leaf or attention module ``m``."""
    if isinstance(m, nn.modules.conv._ConvNd):
        macs = y.numel() * (m.in_channels // m.groups) * m.weight[0, 0].numel()
        return "conv", macs, macs
    if isinstance(m, nn.Linear):
        return "linear", y.numel() * m.in_features, y.numel() * m.in_features
    if isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.LayerNorm)):
        affine = getattr(m, "affine", False) or getattr(m, "elementwise_affine", False)
        return "norm", 0, 2 * x.numel() * (2 if affine else 1)
    if isinstance(m, nn.PReLU):
        return "prelu", 0, x.numel()
    if isinstance(m, nn.Softmax):
        n = x.shape[m.dim]
        return "softmax", 0, x.numel() // n * (3 * n - 1)
    if isinstance(m, (LandmarkWindowAttention, ViTAttention, CrossAttention)):  # y: (n, queries, C), x: (n, keys, C)
        return "attention", 2 * y.shape[0] * y.shape[1] * x.shape[1] * y.shape[2], 0
    return "other", 0, 0


def count_macs(model: nn.Module, *inputs: torch.Tensor) -> MacCounts:
    """Count multiply-accumulates of ``model(*inputs)`` (eval, no grad) with forward hooks (see :class:`MacCounts`)."""
    sums = {"conv": 0, "linear": 0, "attention": 0, "thop": 0}

    def hook(m: nn.Module, args: tuple, out: Any) -> None:
        kind, macs, ops = _mac_rule(m, args[0], out)
        if kind in sums:
            sums[kind] += macs
        sums["thop"] += ops

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    _forward_with_hooks(model, inputs, handles)
    return MacCounts(sums["conv"], sums["linear"], sums["attention"], sums["thop"])


# ----------------------------------------------------------------------------------------------
# The course configuration (ours): the same design, scaled down for 48 / 64 px images on a CPU
# ----------------------------------------------------------------------------------------------

#: How the landmark and image streams meet at each scale in :class:`PosterCourse`.
MODES = ("v2", "v1", "image_only")


class CrossAttention(nn.Module):
    """POSTER V1's cross-attention: ``proj(softmax(q k^T / sqrt(d)) v)`` per head, q = the query tokens as they
    are (no W_Q), ``[k, v] = kv(x)`` (one Linear dim -> 2 dim), d = dim / heads."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads, self.scale = num_heads, (dim / num_heads) ** -0.5
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        (b, n, c), h = x.shape, self.num_heads
        k, v = self.kv(x).reshape(b, n, 2, h, c // h).permute(2, 0, 3, 1, 4)
        q = queries.reshape(b, queries.shape[1], h, c // h).transpose(1, 2)
        attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, -1, c))


class TwoWayCrossAttention(nn.Module):
    """V1's two-way cross-fusion block (Zheng et al. 2023, ``hyp_crossvit.Block`` without its token-mixing conv),
    on one scale, global (no windows):

    ``I' = I + A_img(q = LN1(L), kv = LN1(I))``, ``I'' = I' + MLP1(LN2(I'))`` (landmarks query the image);
    ``L' = L + A_lm(q = LN3(I), kv = LN3(L))``, ``L'' = L' + MLP2(LN4(L'))`` (the image queries the landmarks);
    output ``I'' + L''`` on the image grid (ours: V1 mixes the two streams with a Conv1d over tokens instead).
    MLPs dim -> 2 dim -> dim (V1's ratio), LN eps 1e-6."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.norm1, self.norm2, self.norm3, self.norm4 = (nn.LayerNorm(dim, eps=1e-6) for _ in range(4))
        self.attn_img, self.attn_lm = CrossAttention(dim, num_heads), CrossAttention(dim, num_heads)
        self.mlp1, self.mlp2 = Mlp(dim, 2 * dim), Mlp(dim, 2 * dim)

    def forward(self, image_map: torch.Tensor, landmark_map: torch.Tensor) -> torch.Tensor:
        b, c, h, w = image_map.shape
        img, lm = image_map.flatten(2).transpose(1, 2), landmark_map.flatten(2).transpose(1, 2)
        img2 = img + self.attn_img(self.norm1(img), self.norm1(lm))
        img2 = img2 + self.mlp1(self.norm2(img2))
        lm2 = lm + self.attn_lm(self.norm3(lm), self.norm3(img))
        lm2 = lm2 + self.mlp2(self.norm4(lm2))
        return (img2 + lm2).transpose(1, 2).reshape(b, c, h, w)


class WindowFusion(nn.Module):
    """V2's scale block: ``s = LN(x_img)`` in ws x ws windows, ``A`` = window attention with the landmark map's
    tokens of the same window as queries (or, without a landmark stream, s itself: window self-attention with
    unprojected queries), ``x = s + g1 A``, ``x = x + g2 MLP(LN(x))``. Returns (B, C, H, W)."""

    def __init__(self, dim: int, num_heads: int, window: int, layer_scale: float):
        super().__init__()
        self.window_size, self.num_heads = window, num_heads
        self.window = WindowNorm(window, dim)
        self.attn = LandmarkWindowAttention(dim, num_heads, window)
        self.ffn = LayerScaleFFN(dim, window, layer_scale)

    def forward(self, image_map: torch.Tensor, landmark_map: torch.Tensor | None) -> torch.Tensor:
        windows, shortcut = self.window(image_map)
        source = shortcut.permute(0, 3, 1, 2) if landmark_map is None else landmark_map
        out = self.attn(windows, window_queries(source, self.window_size, self.num_heads))
        return self.ffn(out, shortcut).permute(0, 3, 1, 2)


class CourseLandmarkNet(nn.Module):
    """Small MobileFaceNet-style landmark stream: 3x3 stride-2 stem, three stages (a stride-2 DepthwiseUnit and a
    residual one) -> maps at 1/4, 1/8, 1/16 of the input; :meth:`landmarks` regresses ``2 * num_landmarks``
    coordinates with a GDC head on the last map (for pre-training on SynthFaces' landmarks)."""

    def __init__(self, in_channels: int, dims: tuple[int, int, int], image_size: int, num_landmarks: int):
        super().__init__()
        self.conv1 = ConvBNPReLU(in_channels, dims[0], 3, 2, 1)
        widths = (dims[0],) + tuple(dims)
        self.stages = nn.ModuleList(
            nn.Sequential(DepthwiseUnit(a, b, 2 * b, 2), DepthwiseUnit(b, b, 2 * b, 1, residual=True))
            for a, b in zip(widths[:-1], widths[1:]))
        self.output_layer = GDCHead(2 * num_landmarks, dims[2], image_size // 16)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        maps, x = [], self.conv1(x)
        for stage in self.stages:
            x = stage(x)
            maps.append(x)
        return tuple(maps)

    def landmarks(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 2 * num_landmarks) coordinates, in whatever units the targets of its pre-training use (its
        BatchNorm1d needs batches of two or more in training mode, like MobileFaceNet's)."""
        return self.output_layer(self.forward(x)[-1])


class CourseImageNet(nn.Module):
    """Small IR-style image stream: 3x3 stride-2 stem, IR units (stride 1, 2, 2) -> maps at 1/2, 1/4, 1/8."""

    def __init__(self, in_channels: int, dims: tuple[int, int, int]):
        super().__init__()
        self.input_layer = ConvBNPReLU(in_channels, dims[0], 3, 2, 1)
        self.body1, self.body2, self.body3 = IRUnit(dims[0], dims[0], 1), IRUnit(dims[0], dims[1], 2), \
            IRUnit(dims[1], dims[2], 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x1 = self.body1(self.input_layer(x))
        x2 = self.body2(x1)
        return x1, x2, self.body3(x2)


class PosterCourse(nn.Module):
    """A scaled-down course configuration of POSTER V2 (ours), small enough to train on a 2-core CPU on 48 or 64 px
    SynthFaces images; same design as :class:`PosterV2`, every width and depth cut down.

    - landmark stream ``face_landback``: :class:`CourseLandmarkNet` (maps at 1/4, 1/8, 1/16; pre-train it with
      :meth:`landmarks` on the 68 true landmarks, then freeze it as the authors do), ``last_face_conv`` 3x3 on its
      last map;
    - image stream ``ir_back``: :class:`CourseImageNet` (1/2, 1/4, 1/8), then ``convs`` (3x3, stride 2);
    - ``fusions``, one per scale, by ``mode``: ``"v2"`` window cross-attention with landmark queries
      (:class:`WindowFusion`; ``windows`` defaults to the whole map, as in V2), ``"v1"`` V1's vanilla two-way
      cross-attention (:class:`TwoWayCrossAttention`, global), ``"image_only"`` no landmark stream at all (window
      self-attention with the normalised image as queries);
    - ``embed_q`` (two 3x3 stride-2 convs), ``embed_k`` (one), ``embed_v`` (1x1) -> 3 (S/16)^2 tokens of
      ``embed_dim``; ``VIT``: :class:`PosterViT` without the authors' dead modules, ``depth`` blocks, ``vit_heads``.

    Unlike V2 it reads the image at full resolution (no 112 nearest resize). Input (B, in_channels, S, S) with
    S divisible by 16; output the logits (B, num_classes).
    """

    def __init__(self, num_classes: int = 7, in_channels: int = 3, image_size: int = 64,
                 dims: tuple[int, int, int] = (16, 32, 64), heads: tuple[int, int, int] = (1, 2, 4),
                 windows: tuple[int, int, int] | None = None, embed_dim: int = 64, depth: int = 1,
                 vit_heads: int = 4, num_landmarks: int = 68, mode: str = "v2", layer_scale: float = 1e-5):
        super().__init__()
        if mode not in MODES or image_size % 16:
            raise ValueError(f"mode must be one of {MODES} (got {mode!r}) and image_size divisible by 16 "
                             f"(got {image_size})")
        maps = (image_size // 4, image_size // 8, image_size // 16)
        self.mode, self.windows = mode, tuple(windows or maps)
        if any(m % w for m, w in zip(maps, self.windows)):
            raise ValueError(f"windows {self.windows} must divide the maps {maps}")
        if mode != "image_only":
            self.face_landback = CourseLandmarkNet(in_channels, dims, image_size, num_landmarks)
            self.last_face_conv = nn.Conv2d(dims[2], dims[2], 3, padding=1)
        self.ir_back = CourseImageNet(in_channels, dims)
        self.convs = nn.ModuleList(nn.Conv2d(d, d, 3, 2, 1) for d in dims)
        self.fusions = nn.ModuleList(
            TwoWayCrossAttention(d, h) if mode == "v1" else WindowFusion(d, h, w, layer_scale)
            for d, h, w in zip(dims, heads, self.windows))
        self.embed_q = nn.Sequential(nn.Conv2d(dims[0], embed_dim, 3, 2, 1), nn.Conv2d(embed_dim, embed_dim, 3, 2, 1))
        self.embed_k = nn.Sequential(nn.Conv2d(dims[1], embed_dim, 3, 2, 1))
        self.embed_v = PatchEmbed1x1(dims[2], embed_dim)
        self.VIT = PosterViT(3 * maps[2] ** 2, embed_dim, depth, num_classes, vit_heads, 4.0, extras=False)

    def landmarks(self, images: torch.Tensor) -> torch.Tensor:
        """The landmark stream's regression (B, 2 * num_landmarks), for its pre-training."""
        if self.mode == "image_only":
            raise ValueError("the image_only configuration has no landmark stream")
        return self.face_landback.landmarks(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        image_maps = [conv(x) for conv, x in zip(self.convs, self.ir_back(images))]
        if self.mode == "image_only":
            landmark_maps: list[torch.Tensor | None] = [None, None, None]
        else:
            lm1, lm2, lm3 = self.face_landback(images)
            landmark_maps = [lm1, lm2, self.last_face_conv(lm3)]
        o1, o2, o3 = (fuse(x, q) for fuse, x, q in zip(self.fusions, image_maps, landmark_maps))
        tokens = torch.cat([self.embed_q(o1).flatten(2).transpose(1, 2), self.embed_k(o2).flatten(2).transpose(1, 2),
                            self.embed_v(o3)], dim=1)
        return self.VIT(tokens)
