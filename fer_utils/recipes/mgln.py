"""MGLN's training recipe (Yu et al., Pattern Recognition Letters 131, 2020; ``Train_FER/train_CK.py``).

The authors: Adam, lr 1e-4, batch 64, 150 epochs, lr x 0.1 at epoch 80; mixup (alpha 1) on the
peak face only; loss = mixup-CE(global logits) + CE(part logits); prediction argmax(global + part);
ImageNet-normalised inputs; 10 identity-disjoint folds.

``FULL`` is that recipe on the faithful network. ``COURSE`` ("mgln-course-w8-48") is a named,
scaled-down network that trains from scratch on two CPU cores: every SSM width divided by 8, a 48x48
face (map 6x6), crops eyes 16x48, nose 32x16, mouth 16x32, one LSTM layer of 36 units (a 6x6 part
map), and three changes meant to let it train without ImageNet weights (not yet shown to suffice:
see the status note below): GroupNorm(4) after each SSM conv
(BatchNorm does not work in a module shared by faces and crops of different statistics: its running
averages mix them), no ReLU on the one-channel-group outputs (conv6, conv9, the parts' conv3), He init
of the part ends. Adam lr 1e-3, batch 16, 18 epochs, lr x 0.1 at epoch 14. ``SMOKE``: the same
network, 6 epochs, 2 folds.

Status: COURSE and SMOKE are not tuned yet. In short CPU trials on SynthFaces ``lab`` clips (21
identities, 2 folds, 1 thread) the network stayed at chance (loss 2 ln 7) for 10-12 epochs at batch 8
or 16 and lr 1e-3 or 2e-3, with and without mixup, while it does fit 28 clips full-batch (global
loss 3.0 -> 1.5 in 50 steps). The faithful ``FULL`` recipe is untested here (no GPU, no data).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.transforms import v2

from fer_utils.data.sequences import model_inputs
from fer_utils.models.mgln import MGLN, VGG16_CONV4
from fer_utils.recipes import Recipe


@dataclass(frozen=True)
class MGLNRecipe(Recipe):
    """MGLN's hyper-parameters; the defaults are the authors'."""

    name: str = "mgln-faithful"
    paper: str = "Yu et al., Pattern Recognition Letters 131 (2020)"
    epochs: int = 150
    batch_size: int = 64
    lr: float = 1e-4
    input_size: int = 128
    normalize: str = "imagenet"
    lr_step_epoch: int = 80     # lr x lr_gamma once, at this epoch
    lr_gamma: float = 0.1
    mixup_alpha: float = 1.0    # on the peak face only; 0 switches mixup off
    deform: str = "offset2d"
    ssm: tuple = VGG16_CONV4
    part_sizes: tuple = (("eyes", (48, 128)), ("nose", (64, 32)), ("mouth", (32, 64)))
    lstm_hidden: int = 256
    lstm_layers: int = 3
    final_relu: bool = True     # the authors' ReLU after conv6, conv9 and each part's conv3
    ssm_norm: str = "none"      # "none" (the authors'), "batch" or "group"
    part_kaiming_init: bool = False
    folds: int = 10
    train_slots: str = "real"   # frames the part branch sees in training ("real" or "peak")

    @property
    def part_size_dict(self) -> dict[str, tuple[int, int]]:
        return dict(self.part_sizes)


FULL = MGLNRecipe()
COURSE = MGLNRecipe(
    name="mgln-course-w8-48", epochs=18, batch_size=16, lr=1e-3, lr_step_epoch=14, input_size=48,
    ssm=tuple(v if v == "M" else v // 8 for v in VGG16_CONV4),
    part_sizes=(("eyes", (16, 48)), ("nose", (32, 16)), ("mouth", (16, 32))), lstm_hidden=36, lstm_layers=1,
    final_relu=False, ssm_norm="group", part_kaiming_init=True, folds=3)
SMOKE = replace(COURSE, name="mgln-smoke-w8-48", epochs=6, lr_step_epoch=5, folds=2)


def build_model(recipe: MGLNRecipe = FULL) -> MGLN:
    """The network of ``recipe`` (``FULL``: the authors' GLENet, 19,988,145 parameters at 7 classes)."""
    return MGLN(recipe.num_classes, deform=recipe.deform, ssm=recipe.ssm, face_size=recipe.input_size,
                part_sizes=recipe.part_size_dict, lstm_hidden=recipe.lstm_hidden, lstm_layers=recipe.lstm_layers, final_relu=recipe.final_relu,
                ssm_norm=recipe.ssm_norm,
                part_kaiming_init=recipe.part_kaiming_init)


def make_optimizer(model: nn.Module, recipe: MGLNRecipe = FULL):
    """Adam(lr) and one step of the learning rate (x lr_gamma) at ``lr_step_epoch`` (step the scheduler per epoch)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, [recipe.lr_step_epoch], recipe.lr_gamma)
    return optimizer, scheduler


def loss_step(model: MGLN, batch: dict[str, Tensor], recipe: MGLNRecipe = FULL) -> tuple[Tensor, dict]:
    """The authors' loss: CE(global logits of the mixed-up peak face, mixed labels) + CE(part logits, labels).

    Mixup (Zhang et al. 2018) with torchvision's ``v2.MixUp``: ``x = lam x_i + (1 - lam) x_j``,
    soft label ``lam y_i + (1 - lam) y_j``, ``lam ~ Beta(alpha, alpha)``; the soft-label cross-entropy
    equals the authors' ``lam CE(y_i) + (1 - lam) CE(y_j)``. Only the face is mixed; the parts are not.
    """
    face, eyes, noses, mouths = model_inputs(batch, recipe.train_slots)
    labels = batch["label"]
    if recipe.mixup_alpha > 0:
        face, soft = v2.MixUp(alpha=recipe.mixup_alpha, num_classes=recipe.num_classes)(face, labels)
    else:
        soft = F.one_hot(labels, recipe.num_classes).float()
    global_logits, part_logits = model(face, eyes, noses, mouths)
    loss_global = F.cross_entropy(global_logits, soft)
    loss_part = F.cross_entropy(part_logits, labels)
    logs = {"loss_global": float(loss_global.detach()), "loss_part": float(loss_part.detach())}
    return loss_global + loss_part, logs


@torch.inference_mode()
def predict(model: MGLN, data: dict[str, Tensor], slots: str = "real", batch_size: int = 256) -> dict[str, Tensor]:
    """Eval-mode logits over a whole sequence set: ``global``, ``part`` and ``fused`` (their sum)."""
    model.eval()
    outs: dict[str, list[Tensor]] = {"global": [], "part": []}
    n = len(data["label"])
    for i in range(0, n, batch_size):
        chunk = {k: v[i:i + batch_size] for k, v in data.items()}
        g, p = model(*model_inputs(chunk, slots))
        outs["global"].append(g)
        outs["part"].append(p)
    result = {k: torch.cat(v) for k, v in outs.items()}
    result["fused"] = result["global"] + result["part"]
    return result


def accuracies(logits: dict[str, Tensor], labels: Tensor) -> dict[str, float]:
    """Accuracy of each of ``predict``'s outputs."""
    return {k: float((v.argmax(1) == labels).float().mean()) for k, v in logits.items()}
