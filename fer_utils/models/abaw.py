"""Multi-task networks for the ABAW2 challenges (Aff-Wild2): 12 AUs, 7 expressions, valence-arousal.

One shared convolutional backbone and three heads, with the variants the ABAW2 entries proposed
(networks only; losses in :mod:`fer_utils.losses`, training in :mod:`fer_utils.recipes.abaw`):

- ``features="fpn"``: a feature pyramid (torchvision ``FeaturePyramidNetwork``) over the backbone's
  stages, each level pooled and the levels concatenated (He et al., arXiv:2107.03670, who use a
  ResNet-50 FPN);
- ``heads="streaming"``: AU -> EXPR -> VA, each head also fed the features of the one before it
  (the prior-aided streaming design of Zhang et al., arXiv:2107.03708; no public code, so built
  from the description: AU head from a 12 x 16 embedding, EXPR from its own 64-d feature and 64-d
  from the AU features, VA likewise from the EXPR features);
- ``heads="graph"``: per-AU node features refined by a 2-layer GCN over a fixed AU relation graph
  (adjacency A_ij = 1 if P(AU_j | AU_i) > tau on the training labels, see :func:`au_relation_graph`);
- ``temporal="gru"`` / ``"transformer"``: a sequence model over the per-frame features of a window
  of consecutive frames (input (B, T, C, H, W)) instead of frame by frame.

The course backbone is a small 4-stage CNN (named :data:`COURSE_WIDTHS`) so that a CPU trains it in
seconds; the entries used ResNet-50 / VGG-FACE backbones at 112 x 112 or more.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torchvision.ops import FeaturePyramidNetwork

N_AUS, N_EXPR = 12, 7
COURSE_WIDTHS = (8, 16, 32, 48)  #: channels of the course backbone's four stages


class ABAWOutput(NamedTuple):
    """Per-frame outputs: AU logits (..., 12), expression logits (..., 7), valence-arousal (..., 2) in [-1, 1]."""

    au: Tensor
    expr: Tensor
    va: Tensor

    @property
    def logits(self) -> Tensor:
        """The expression logits (the output contract's class scores; AU logits stay in ``au``)."""
        return self.expr


class Backbone(nn.Module):
    """Four stages of conv3x3-BN-ReLU-maxpool; returns every stage's map (for the pyramid)."""

    def __init__(self, in_channels: int = 1, widths: tuple[int, ...] = COURSE_WIDTHS) -> None:
        super().__init__()
        stages, c = [], in_channels
        for w in widths:
            stages.append(nn.Sequential(nn.Conv2d(c, w, 3, padding=1, bias=False), nn.BatchNorm2d(w),
                                        nn.ReLU(inplace=True), nn.MaxPool2d(2)))
            c = w
        self.stages = nn.ModuleList(stages)
        self.widths = tuple(widths)

    def forward(self, x: Tensor) -> list[Tensor]:
        maps = []
        for stage in self.stages:
            x = stage(x)
            maps.append(x)
        return maps


POOL = 2  #: every feature map is average-pooled to POOL x POOL before the embedding (keeps coarse layout)


def pooled(x: Tensor) -> Tensor:
    """(N, C, H, W) -> (N, C * POOL * POOL): adaptive average pooling, flattened."""
    return F.adaptive_avg_pool2d(x, POOL).flatten(1)


class PyramidFeatures(nn.Module):
    """FPN over the last three stages (lateral 1x1 + top-down sum + 3x3), each level pooled, concatenated."""

    def __init__(self, widths: tuple[int, ...], out_channels: int = 32) -> None:
        super().__init__()
        self.fpn = FeaturePyramidNetwork(list(widths[1:]), out_channels)
        self.dim = out_channels * (len(widths) - 1) * POOL * POOL

    def forward(self, maps: list[Tensor]) -> Tensor:
        levels = self.fpn(OrderedDict((f"p{i}", m) for i, m in enumerate(maps[1:])))
        return torch.cat([pooled(level) for level in levels.values()], dim=1)


class ParallelHeads(nn.Module):
    """Three linear heads on one shared feature (the baseline)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.au, self.expr, self.va = nn.Linear(dim, N_AUS), nn.Linear(dim, N_EXPR), nn.Linear(dim, 2)

    def forward(self, h: Tensor) -> ABAWOutput:
        return ABAWOutput(self.au(h), self.expr(h), torch.tanh(self.va(h)))


class StreamingHeads(nn.Module):
    """AU -> EXPR -> VA: z_AU = 12 x 16 embedding; EXPR from [f_E, g(z_AU)]; VA from [f_V, g'(f_E)]."""

    def __init__(self, dim: int, au_dim: int = 16, width: int = 64) -> None:
        super().__init__()
        self.au_embed = nn.Sequential(nn.Linear(dim, N_AUS * au_dim), nn.ReLU())
        self.au_out = nn.Conv1d(N_AUS * au_dim, N_AUS, 1, groups=N_AUS)  # one 16 -> 1 classifier per AU
        self.au_to_expr = nn.Sequential(nn.Linear(N_AUS * au_dim, width), nn.ReLU())
        self.expr_feat = nn.Sequential(nn.Linear(dim, width), nn.ReLU())
        self.expr_out = nn.Linear(2 * width, N_EXPR)
        self.expr_to_va = nn.Sequential(nn.Linear(width, width), nn.ReLU())
        self.va_feat = nn.Sequential(nn.Linear(dim, width), nn.ReLU())
        self.va_out = nn.Linear(2 * width, 2)

    def forward(self, h: Tensor) -> ABAWOutput:
        z_au = self.au_embed(h)                                            # (N, 12 * 16)
        au = self.au_out(z_au[:, :, None])[:, :, 0]                        # (N, 12)
        f_expr = self.expr_feat(h)
        expr = self.expr_out(torch.cat([f_expr, self.au_to_expr(z_au)], 1))
        va = self.va_out(torch.cat([self.va_feat(h), self.expr_to_va(f_expr)], 1))
        return ABAWOutput(au, expr, torch.tanh(va))


def au_relation_graph(au_labels: Tensor, threshold: float = 0.5) -> Tensor:
    """(12, 12) 0/1 adjacency: A_ij = 1 if P(AU_j = 1 | AU_i = 1) > threshold on the labelled frames.

    ``au_labels`` is (N, 12) with 0/1, and -1 rows (missing) ignored. The diagonal is 0 (the GCN adds
    self-loops); an AU never present has no edges.
    """
    rows = au_labels[(au_labels >= 0).all(1)].float()
    together = rows.T @ rows                                               # counts of AU_i and AU_j
    p_j_given_i = together / together.diag().clamp_min(1)[:, None]
    adjacency = (p_j_given_i > threshold).float()
    return adjacency * (1 - torch.eye(len(adjacency)))


def normalized_adjacency(adjacency: Tensor) -> Tensor:
    """A_hat = D^-1/2 (A_sym + I) D^-1/2 (Kipf & Welling 2017), A_sym = max(A, A^T)."""
    a = torch.maximum(adjacency, adjacency.T) + torch.eye(len(adjacency))
    d = a.sum(1).rsqrt()
    return d[:, None] * a * d[None, :]


class GraphHeads(nn.Module):
    """Per-AU node features (12 x 16), two GCN layers H' = ReLU(A_hat H W), one classifier per node."""

    def __init__(self, dim: int, adjacency: Tensor | None = None, au_dim: int = 16) -> None:
        super().__init__()
        adjacency = torch.zeros(N_AUS, N_AUS) if adjacency is None else adjacency.float()
        self.register_buffer("adjacency", adjacency)
        self.register_buffer("a_hat", normalized_adjacency(adjacency))
        self.au_dim = au_dim
        self.nodes = nn.Sequential(nn.Linear(dim, N_AUS * au_dim), nn.ReLU())
        self.gcn = nn.ModuleList([nn.Linear(au_dim, au_dim), nn.Linear(au_dim, au_dim)])
        self.au_out = nn.Conv1d(N_AUS * au_dim, N_AUS, 1, groups=N_AUS)
        self.expr, self.va = nn.Linear(dim, N_EXPR), nn.Linear(dim, 2)

    def forward(self, h: Tensor) -> ABAWOutput:
        nodes = self.nodes(h).view(-1, N_AUS, self.au_dim)                 # (N, 12, 16)
        for layer in self.gcn:
            nodes = torch.relu(self.a_hat @ layer(nodes)) + nodes          # residual keeps each AU's own evidence
        au = self.au_out(nodes.reshape(-1, N_AUS * self.au_dim, 1))[:, :, 0]
        return ABAWOutput(au, self.expr(h), torch.tanh(self.va(h)))


class Temporal(nn.Module):
    """A sequence model over per-frame features: bidirectional GRU or a 1-layer transformer encoder."""

    def __init__(self, dim: int, kind: str = "gru") -> None:
        super().__init__()
        self.kind = kind
        if kind == "gru":
            self.rnn = nn.GRU(dim, dim // 2, batch_first=True, bidirectional=True)
        elif kind == "transformer":
            self.rnn = nn.TransformerEncoder(nn.TransformerEncoderLayer(
                dim, nhead=4, dim_feedforward=2 * dim, batch_first=True, dropout=0.0), num_layers=1)
        else:
            raise ValueError(f"temporal must be 'none', 'gru' or 'transformer', got {kind!r}")
        self.dim = 2 * (dim // 2) if kind == "gru" else dim

    def forward(self, seq: Tensor) -> Tensor:                              # (B, T, dim)
        return self.rnn(seq)[0] if self.kind == "gru" else self.rnn(seq)


class ABAWNet(nn.Module):
    """Shared backbone -> features (``last`` stage or ``fpn`` levels, pooled to 2 x 2) -> 64-d embedding
    -> [temporal] -> heads.

    Input (N, C, H, W) frame by frame, or (B, T, C, H, W) windows (required for a temporal model);
    outputs an :class:`ABAWOutput` with the matching leading shape.
    """

    def __init__(self, in_channels: int = 1, widths: tuple[int, ...] = COURSE_WIDTHS, features: str = "last",
                 heads: str = "parallel", temporal: str = "none", au_adjacency: Tensor | None = None,
                 embed_dim: int = 64) -> None:
        super().__init__()
        self.backbone = Backbone(in_channels, widths)
        if features not in ("last", "fpn"):
            raise ValueError(f"features must be 'last' or 'fpn', got {features!r}")
        self.pyramid = PyramidFeatures(widths) if features == "fpn" else None
        pooled_dim = self.pyramid.dim if self.pyramid is not None else widths[-1] * POOL * POOL
        self.embed = nn.Sequential(nn.Linear(pooled_dim, embed_dim), nn.ReLU(inplace=True))
        dim = embed_dim
        self.temporal = Temporal(dim, temporal) if temporal != "none" else None
        dim = self.temporal.dim if self.temporal is not None else dim
        if heads == "parallel":
            self.heads = ParallelHeads(dim)
        elif heads == "streaming":
            self.heads = StreamingHeads(dim)
        elif heads == "graph":
            self.heads = GraphHeads(dim, au_adjacency)
        else:
            raise ValueError(f"heads must be 'parallel', 'streaming' or 'graph', got {heads!r}")
        self.features_kind, self.heads_kind, self.temporal_kind = features, heads, temporal

    def frame_features(self, images: Tensor) -> Tensor:
        """(N, C, H, W) -> (N, embed_dim): pooled last stage (or pyramid levels), then a linear embedding."""
        maps = self.backbone(images)
        return self.embed(self.pyramid(maps) if self.pyramid is not None else pooled(maps[-1]))

    def forward(self, images: Tensor) -> ABAWOutput:
        lead = images.shape[:-3]
        h = self.frame_features(images.reshape(-1, *images.shape[-3:]))
        if self.temporal is not None:
            if len(lead) != 2:
                raise ValueError(f"a temporal model needs (B, T, C, H, W) windows, got {tuple(images.shape)}")
            h = self.temporal(h.view(*lead, -1)).reshape(-1, self.temporal.dim)
        out = self.heads(h)
        return ABAWOutput(*(o.view(*lead, o.shape[-1]) for o in out))
