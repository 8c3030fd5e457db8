"""MTCNN (Zhang, Zhang, Li, Qiao 2016): three small CNNs in a cascade, in plain PyTorch.

"Joint Face Detection and Alignment using Multi-task Cascaded Convolutional
Networks" (IEEE SPL 2016). The weights are facenet-pytorch's ``pnet.pt``,
``rnet.pt``, ``onet.pt`` (MIT; converted from the authors' Caffe models), loaded
into the networks below with ``torch.load(weights_only=True)``. The cascade
follows facenet-pytorch 2.6.0's ``detect_face`` step by step, so boxes and
landmarks match the published package (which we do not install: its pins would
downgrade torch).

The three networks (input normalised as ``(x - 127.5) / 128``, RGB):

    net     input      layers                                              outputs
    P-Net   any HxW    conv3 10, PReLU, pool2 | conv3 16, PReLU |          per 12x12 window, stride 2:
                       conv3 32, PReLU | 1x1 -> 2 and 1x1 -> 4             face prob, box offsets
    R-Net   24x24      conv3 28, pool3/2 | conv3 48, pool3/2 | conv2 64 |  face prob, box offsets
                       dense 128 | dense 2, dense 4
    O-Net   48x48      conv3 32, pool3/2 | conv3 64, pool3/2 | conv3 64,   face prob, box offsets,
                       pool2 | conv2 128 | dense 256 | dense 2, 4, 10      5 landmarks (x5, y5)

The cascade:

1. image pyramid: scales ``s_k = (12 / min_face) * factor**k`` while the short side
   ``min(H, W) * s_k >= 12``; P-Net runs fully convolutionally on each scaled image;
   every output cell with ``p >= t1`` is a candidate box of 12 / s pixels;
2. NMS (IoU 0.5 per scale, then 0.7), box regression, make boxes square;
3. R-Net on 24x24 crops: keep ``p > t2``, NMS 0.7, regression, square;
4. O-Net on 48x48 crops: keep ``p > t3``, landmarks, regression, NMS 0.7 on
   intersection-over-*minimum* area.

Box regression with offsets ``(d1, d2, d3, d4)`` of a box of width ``w``, height ``h``:
``x1' = x1 + d1 w, y1' = y1 + d2 h, x2' = x2 + d3 w, y2' = y2 + d4 h``.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import nms


# ------------------------------------------------------------------ networks
class StageOutput(NamedTuple):
    """P-Net / R-Net: box ``offsets`` and the softmaxed ``face_prob``. A detector's outputs, not
    class logits: :func:`fer_utils.models.logits_of` refuses them."""

    offsets: torch.Tensor
    face_prob: torch.Tensor


class ONetOutput(NamedTuple):
    """O-Net: box ``offsets`` (B, 4), ``landmarks`` (B, 10) as (x1..x5, y1..y5) in [0, 1], ``face_prob`` (B,)."""

    offsets: torch.Tensor
    landmarks: torch.Tensor
    face_prob: torch.Tensor


class _Cascade(nn.Module):
    """The convolutional trunk the three nets share: ``conv<i>`` -> ``prelu<i>`` [-> ``pool<i>``] for
    each row ``(in, out, kernel, pool)`` of a table (``pool`` = (kernel, stride) or None; the names are
    facenet-pytorch's, so its state dicts load)."""

    def __init__(self, table: tuple[tuple[int, int, int, tuple[int, int] | None], ...]):
        super().__init__()
        self.depth = len(table)
        for i, (c_in, c_out, kernel, pool) in enumerate(table, start=1):
            self.add_module(f"conv{i}", nn.Conv2d(c_in, c_out, kernel))
            self.add_module(f"prelu{i}", nn.PReLU(c_out))
            if pool is not None:
                self.add_module(f"pool{i}", nn.MaxPool2d(*pool, ceil_mode=True))

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(1, self.depth + 1):
            x = getattr(self, f"prelu{i}")(getattr(self, f"conv{i}")(x))
            if hasattr(self, f"pool{i}"):
                x = getattr(self, f"pool{i}")(x)
        return x


class PNet(_Cascade):
    """Proposal net: fully convolutional, one 12x12 window per output cell (stride 2)."""

    def __init__(self):
        super().__init__(((3, 10, 3, (2, 2)), (10, 16, 3, None), (16, 32, 3, None)))
        self.conv4_1 = nn.Conv2d(32, 2, 1)  # face / not face
        self.conv4_2 = nn.Conv2d(32, 4, 1)  # box offsets

    def forward(self, x: torch.Tensor) -> StageOutput:
        """(B, 3, H, W) -> offsets (B, 4, H', W'), face probability (B, H', W')."""
        x = self.trunk(x)
        return StageOutput(self.conv4_2(x), self.conv4_1(x).softmax(dim=1)[:, 1])


def _flatten_like_caffe(x: torch.Tensor) -> torch.Tensor:
    """Flatten (B, C, H, W) in (W, H, C) order, the order the converted dense weights expect."""
    return x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)


class RNet(_Cascade):
    """Refinement net on 24x24 crops."""

    def __init__(self):
        super().__init__(((3, 28, 3, (3, 2)), (28, 48, 3, (3, 2)), (48, 64, 2, None)))
        self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> StageOutput:
        """(B, 3, 24, 24) -> offsets (B, 4), face probability (B,)."""
        x = self.trunk(x)                                   # (B, 64, 3, 3)
        x = self.prelu4(self.dense4(_flatten_like_caffe(x)))
        return StageOutput(self.dense5_2(x), self.dense5_1(x).softmax(dim=1)[:, 1])


class ONet(_Cascade):
    """Output net on 48x48 crops: box, score and five landmarks."""

    def __init__(self):
        super().__init__(((3, 32, 3, (3, 2)), (32, 64, 3, (3, 2)), (64, 64, 3, (2, 2)), (64, 128, 2, None)))
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> ONetOutput:
        """(B, 3, 48, 48) -> offsets (B, 4), landmarks (B, 10) as (x1..x5, y1..y5) in [0, 1], prob (B,)."""
        x = self.trunk(x)                                   # (B, 128, 3, 3)
        x = self.prelu5(self.dense5(_flatten_like_caffe(x)))
        return ONetOutput(self.dense6_2(x), self.dense6_3(x), self.dense6_1(x).softmax(dim=1)[:, 1])


# ------------------------------------------------------------- box utilities
def normalise(x: torch.Tensor) -> torch.Tensor:
    """Pixel values 0..255 -> about [-1, 1]: ``(x - 127.5) / 128``."""
    return (x - 127.5) * 0.0078125


def pyramid_scales(h: int, w: int, min_face: float = 20.0, factor: float = 0.709) -> list[float]:
    """Scales ``(12 / min_face) * factor**k`` while the scaled short side is >= 12 px."""
    scale, short_side, scales = 12.0 / min_face, min(h, w) * 12.0 / min_face, []
    while short_side >= 12:
        scales.append(scale)
        scale *= factor
        short_side *= factor
    return scales


def pnet_candidates(offsets: torch.Tensor, prob: torch.Tensor, scale: float, threshold: float) -> torch.Tensor:
    """P-Net map cells with ``p >= threshold`` -> rows ``(x1, y1, x2, y2, score, d1..d4)``.

    Cell ``(i, j)`` covers the 12x12 window at ``(2j, 2i)`` of the scaled image,
    i.e. ``[(2j + 1) / s, (2j + 12) / s]`` (floored) in the original image.
    """
    rows, cols = torch.nonzero(prob >= threshold, as_tuple=True)
    cell = torch.stack([cols, rows], dim=1).to(offsets.dtype)          # (x, y) of the cell
    top_left = ((2 * cell + 1) / scale).floor()
    bottom_right = ((2 * cell + 12) / scale).floor()
    return torch.cat([top_left, bottom_right, prob[rows, cols, None], offsets[:, rows, cols].T], dim=1)


def regress(boxes: torch.Tensor, offsets: torch.Tensor, plus_one: bool = True) -> torch.Tensor:
    """Apply box offsets; widths are ``x2 - x1 + 1`` in stages 2-3, ``x2 - x1`` in stage 1."""
    w = boxes[:, 2] - boxes[:, 0] + (1 if plus_one else 0)
    h = boxes[:, 3] - boxes[:, 1] + (1 if plus_one else 0)
    out = boxes.clone()
    out[:, :4] = boxes[:, :4] + offsets * torch.stack([w, h, w, h], dim=1)
    return out


def square(boxes: torch.Tensor) -> torch.Tensor:
    """Grow each box to a square of side ``max(w, h)`` around the same centre."""
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = torch.maximum(w, h)
    out = boxes.clone()
    out[:, 0] = boxes[:, 0] + w * 0.5 - side * 0.5
    out[:, 1] = boxes[:, 1] + h * 0.5 - side * 0.5
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def nms_min(boxes: torch.Tensor, scores: torch.Tensor, threshold: float) -> torch.Tensor:
    """Greedy NMS with overlap = intersection / min(area_a, area_b) (pixel-inclusive areas).

    Drops a nested smaller box that IoU would keep. Returns kept indices, best first.
    """
    x1, y1, x2, y2 = boxes.T
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    order, keep = torch.argsort(scores, descending=True, stable=True), []
    while order.numel() > 0:
        i, rest = order[0], order[1:]
        keep.append(int(i))
        iw = (torch.minimum(x2[i], x2[rest]) - torch.maximum(x1[i], x1[rest]) + 1).clamp(min=0)
        ih = (torch.minimum(y2[i], y2[rest]) - torch.maximum(y1[i], y1[rest]) + 1).clamp(min=0)
        overlap = iw * ih / torch.minimum(area[i], area[rest])
        order = rest[overlap <= threshold]
    return torch.as_tensor(keep, dtype=torch.long)


def crop_and_resize(image: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Crop each box (clipped to the image) and resize it to size x size with area averaging.

    Like facenet-pytorch, coordinates are truncated to integers and treated as
    1-based inclusive (a box that leaves the image is clipped, not zero-padded).
    """
    _, h, w = image.shape
    crops = []
    for x1, y1, x2, y2 in boxes[:, :4].trunc().int().tolist():
        x1, y1, x2, y2 = max(x1, 1), max(y1, 1), min(x2, w), min(y2, h)
        patch = image[:, y1 - 1:y2, x1 - 1:x2]
        if patch.shape[1] == 0 or patch.shape[2] == 0:  # box entirely outside: a blank crop
            patch = image.new_zeros(3, 1, 1)
        crops.append(F.interpolate(patch[None], size=(size, size), mode="area"))
    return torch.cat(crops)


# ------------------------------------------------------------------- cascade
class MTCNN:
    """The three-stage detector. ``detect(rgb_uint8) -> (boxes (n, 4), scores (n,), points (n, 5, 2))``."""

    def __init__(self, nets: tuple[PNet, RNet, ONet], min_face: float = 20.0, thresholds=(0.6, 0.7, 0.7),
                 factor: float = 0.709):
        self.pnet, self.rnet, self.onet = nets  # fer_utils.weights.load_mtcnn_nets() gives the pretrained ones
        self.min_face, self.thresholds, self.factor = min_face, tuple(thresholds), factor

    @torch.no_grad()
    def stage1(self, image: torch.Tensor) -> torch.Tensor:
        """P-Net over the pyramid -> square candidate boxes (n, 5) = (x1, y1, x2, y2, score)."""
        _, h, w = image.shape
        per_scale = []
        for s in pyramid_scales(h, w, self.min_face, self.factor):
            scaled = F.interpolate(image[None], size=(int(h * s + 1), int(w * s + 1)), mode="area")
            offsets, prob = self.pnet(normalise(scaled))
            cand = pnet_candidates(offsets[0], prob[0], s, self.thresholds[0])
            per_scale.append(cand[nms(cand[:, :4], cand[:, 4], 0.5)])
        boxes = torch.cat(per_scale) if per_scale else torch.zeros(0, 9)
        boxes = boxes[nms(boxes[:, :4], boxes[:, 4], 0.7)]
        return square(regress(boxes[:, :5], boxes[:, 5:9], plus_one=False))

    @torch.no_grad()
    def stage2(self, image: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """R-Net on 24x24 crops: rescore, NMS, refine, square."""
        if len(boxes) == 0:
            return boxes
        offsets, prob = self.rnet(normalise(crop_and_resize(image, boxes, 24)))
        keep = prob > self.thresholds[1]
        boxes = torch.cat([boxes[keep, :4], prob[keep, None]], dim=1)
        offsets = offsets[keep]
        pick = nms(boxes[:, :4], boxes[:, 4], 0.7)
        return square(regress(boxes[pick], offsets[pick]))

    @torch.no_grad()
    def stage3(self, image: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """O-Net on 48x48 crops: final boxes (n, 5) and landmarks (n, 5, 2)."""
        if len(boxes) == 0:
            return boxes, torch.zeros(0, 5, 2)
        offsets, marks, prob = self.onet(normalise(crop_and_resize(image, boxes, 48)))
        keep = prob > self.thresholds[2]
        boxes = torch.cat([boxes[keep, :4], prob[keep, None]], dim=1)
        offsets, marks = offsets[keep], marks[keep]
        # landmarks are fractions of the (pixel-inclusive) box: x = x1 + fx * (w + 1) - 1
        w = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
        h = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
        xs = boxes[:, 0, None] + marks[:, :5] * w - 1
        ys = boxes[:, 1, None] + marks[:, 5:] * h - 1
        points = torch.stack([xs, ys], dim=2)
        boxes = regress(boxes, offsets)
        pick = nms_min(boxes[:, :4], boxes[:, 4], 0.7)
        return boxes[pick], points[pick]

    def stages(self, image: np.ndarray) -> dict[str, np.ndarray]:
        """Every stage's output on an RGB (or gray) uint8 image, for inspection and figures.

        Returns ``{"candidates": (n1, 5), "survivors": (n2, 5), "boxes": (n3, 5),
        "points": (n3, 5, 2)}``: P-Net's square candidates after NMS and regression,
        R-Net's refined survivors, O-Net's final boxes and landmarks; box rows are
        ``(x1, y1, x2, y2, score)``. :meth:`detect` returns the last two.

        Speed: the cascade is hundreds of tiny tensor operations, so it runs on one
        CPU thread with oneDNN (mkldnn) switched off, both restored afterwards. oneDNN
        compiles a kernel for every new input shape (the pyramid and the candidate
        batches change shape with every image), and thread synchronisation dominates
        such small operations: on 2 busy cores each made detection 5-25x slower.
        """
        if image.ndim == 2:
            image = np.stack([image] * 3, axis=-1)
        x = torch.from_numpy(np.ascontiguousarray(image[..., :3])).permute(2, 0, 1).float()
        mkldnn_was, threads_was = torch.backends.mkldnn.enabled, torch.get_num_threads()
        torch.backends.mkldnn.enabled = False  # (mkldnn.flags() would warn about TF32 here)
        torch.set_num_threads(1)
        try:
            candidates = self.stage1(x)
            survivors = self.stage2(x, candidates)
            boxes, points = self.stage3(x, survivors)
        finally:
            torch.backends.mkldnn.enabled = mkldnn_was
            torch.set_num_threads(threads_was)
        return {"candidates": candidates.numpy().astype(float), "survivors": survivors.numpy().astype(float),
                "boxes": boxes.numpy().astype(float), "points": points.numpy().astype(float)}

    def detect(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """RGB (or gray) uint8 image -> boxes (n, 4) x1y1x2y2, scores (n,), landmarks (n, 5, 2).

        Landmark order: left eye, right eye, nose, left mouth corner, right mouth
        corner ("left" = image-left). Rows are in the order NMS kept them (best first).
        """
        out = self.stages(image)
        return out["boxes"][:, :4], out["boxes"][:, 4], out["points"]
