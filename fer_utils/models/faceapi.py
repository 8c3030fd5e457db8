"""face-api's face expression network (``FaceExpressionNet``), ported from TF.js to PyTorch.

Source: face-api.js by Vincent Mühler (github.com/justadudewhohacks/face-api.js, MIT), as shipped
with its trained weights in the npm package ``@vladmandic/face-api@1.7.15`` (MIT). The wiring below
follows that package's ``dist/face-api.node.js`` (``src/faceFeatureExtractor/denseBlock.ts``,
``FaceFeatureExtractor.ts``, ``faceExpressionNet/FaceExpressionNet.ts``, ``faceProcessor/FaceProcessor.ts``).
The weights are read by :func:`fer_utils.weights.load_faceapi`; the input by
:func:`fer_utils.weights.faceapi_preprocess`.

Input: (B, 3, 112, 112) RGB, ``(pixel - [122.782, 117.001, 104.298]) / 255`` (face-api pads the face
crop to a square with zeros and resizes it to 112x112 first). Output: 7 **logits** in face-api's order
:data:`FACEAPI_CLASSES` (face-api applies ``softmax`` to them; we return the logits, the output
contract of :mod:`fer_utils.models`). :data:`FACEAPI_TO_CANONICAL` maps each output to its id in
:data:`fer_utils.labels.CLASSES`.

Layer table (112x112 input; the TF.js weight names in brackets)::

    block    layer                                                        out shape     params
    dense0   conv 3x3/2 'same' 3->32 + bias [dense0/conv0] + ReLU = o1     32 x 56 x 56     896
             sep 3x3 32->32 [conv1] = o2; sep(ReLU(o1+o2)) [conv2] = o3;
             sep(ReLU(o1+o2+o3)) [conv3] = o4; out = ReLU(o1+o2+o3+o4)      32 x 56 x 56   4,032
    dense1   same, conv0 = sep 3x3/2 32->64 (+ ReLU), conv1..3 sep 64->64   64 x 28 x 28  16,608
    dense2   same with 64 -> 128                                          128 x 14 x 14  61,888
    dense3   same with 128 -> 256                                         256 x  7 x  7 238,464
    pool     average 7x7, stride 2, 'valid'                               256 x  1 x  1
    fc       256 -> 7 + bias [fc/weights, fc/bias]                        7              1,799

    total: 323,687 parameters in 49 TF.js entries; every filter and fc/weights is stored as uint8
    (dequantised ``q * scale + min``), the 17 biases (1,927 values) as float32: 329,468 bytes.

``sep`` is TF's ``separableConv2d(x, depthwise_filter, pointwise_filter, stride, 'same') + bias``:
a depthwise 3x3 (no bias), then a pointwise 1x1, then the bias; it has no ReLU of its own. A dense
block's ReLUs sit only on the sums shown. TF 'same' padding with stride 2 on an even size pads
``(0, 1)`` (the extra row/column at the bottom/right), not PyTorch's symmetric ``padding=1``.

Kernel layouts: conv ``(kh, kw, in, out)`` -> ``permute(3, 2, 0, 1)``; depthwise ``(kh, kw, in, 1)``
-> ``permute(2, 3, 0, 1)``; pointwise ``(1, 1, in, out)`` -> ``permute(3, 2, 0, 1)``; fc ``(256, 7)``
-> transpose (``nn.Linear`` stores ``(out, in)``).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fer_utils.labels import CLASS_TO_ID
from fer_utils.models.mini_xception import tf_same_pad

#: face-api's output order (``FACE_EXPRESSION_LABELS`` in its dist code).
FACEAPI_CLASSES: tuple[str, ...] = ("neutral", "happy", "sad", "angry", "fearful", "disgusted", "surprised")
#: face-api's class name -> the course's canonical name (``fer_utils.labels.CLASSES``).
FACEAPI_TO_CANONICAL_NAME: dict[str, str] = {
    "neutral": "neutral", "happy": "happiness", "sad": "sadness", "angry": "anger",
    "fearful": "fear", "disgusted": "disgust", "surprised": "surprise",
}
#: Canonical id of each face-api output, in output order: (0, 4, 5, 1, 3, 2, 6).
FACEAPI_TO_CANONICAL: tuple[int, ...] = tuple(CLASS_TO_ID[FACEAPI_TO_CANONICAL_NAME[n]] for n in FACEAPI_CLASSES)
#: face-api's per-channel RGB mean, subtracted before dividing by 255.
FACEAPI_MEAN_RGB: tuple[float, float, float] = (122.782, 117.001, 104.298)
FACEAPI_INPUT_SIZE = 112
#: The four dense blocks: (name, channels in, channels out).
DENSE_BLOCKS: tuple[tuple[str, int, int], ...] = (
    ("dense0", 3, 32), ("dense1", 32, 64), ("dense2", 64, 128), ("dense3", 128, 256))


def _pad_same(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """Zero padding as TensorFlow's 'same' (extra row/column at the bottom/right)."""
    top, bottom = tf_same_pad(x.shape[-2], kernel, stride)
    left, right = tf_same_pad(x.shape[-1], kernel, stride)
    return F.pad(x, (left, right, top, bottom))


class ConvSame(nn.Module):
    """``conv2d(x, filters, stride, 'same') + bias`` (dense0's first layer)."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv2d(c_in, c_out, 3, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(_pad_same(x, 3, self.stride))


class SeparableConvSame(nn.Module):
    """``separableConv2d(x, depthwise, pointwise, stride, 'same') + bias``: depthwise 3x3, pointwise 1x1."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.stride = stride
        self.depthwise = nn.Conv2d(c_in, c_in, 3, stride=stride, groups=c_in, bias=False)
        self.pointwise = nn.Conv2d(c_in, c_out, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(_pad_same(x, 3, self.stride)))


class DenseBlock4(nn.Module):
    """face-api's ``denseBlock4``: four convolutions, each fed the ReLU of the sum of the outputs before it.

    ``o1 = ReLU(conv0(x))`` (stride 2), ``o2 = conv1(o1)``, ``o3 = conv2(ReLU(o1 + o2))``,
    ``o4 = conv3(ReLU(o1 + o2 + o3))``, output ``ReLU(o1 + o2 + o3 + o4)``.
    """

    def __init__(self, c_in: int, c_out: int, first: bool = False):
        super().__init__()
        self.conv0 = ConvSame(c_in, c_out, 2) if first else SeparableConvSame(c_in, c_out, 2)
        self.conv1 = SeparableConvSame(c_out, c_out, 1)
        self.conv2 = SeparableConvSame(c_out, c_out, 1)
        self.conv3 = SeparableConvSame(c_out, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out1 = F.relu(self.conv0(x))
        out2 = self.conv1(out1)
        out3 = self.conv2(F.relu(out1 + out2))
        out4 = self.conv3(F.relu(out1 + (out2 + out3)))
        return F.relu(out1 + (out2 + (out3 + out4)))  # the sums in TF.js's order


class FaceExpressionNet(nn.Module):
    """face-api's expression network: (B, 3, 112, 112) normalised RGB -> (B, 7) logits (:data:`FACEAPI_CLASSES`)."""

    def __init__(self, num_classes: int = 7):
        super().__init__()
        for i, (name, c_in, c_out) in enumerate(DENSE_BLOCKS):
            self.add_module(name, DenseBlock4(c_in, c_out, first=i == 0))
        self.fc = nn.Linear(DENSE_BLOCKS[-1][2], num_classes)
        self.class_names: tuple[str, ...] = FACEAPI_CLASSES[:num_classes]
        self.canonical_ids: tuple[int, ...] = FACEAPI_TO_CANONICAL[:num_classes]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The feature extractor: four dense blocks and the 7x7/2 average pool -> (B, 256)."""
        for name, _, _ in DENSE_BLOCKS:
            x = getattr(self, name)(x)
        return F.avg_pool2d(x, 7, 2).flatten(1)  # 7x7 -> 1x1 for a 112x112 input

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


def to_canonical_probs(probs):
    """Reorder (..., 7) face-api-order probabilities into the order of ``labels.CLASSES[:7]``.

    ``out[..., FACEAPI_TO_CANONICAL[j]] = probs[..., j]``; numpy arrays and tensors.
    """
    order = np.argsort(FACEAPI_TO_CANONICAL)  # canonical id -> face-api index
    if isinstance(probs, torch.Tensor):
        return probs[..., torch.as_tensor(order)]
    return np.asarray(probs)[..., order]
