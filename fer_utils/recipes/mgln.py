"""MGLN's training recipe (Yu et al., Pattern Recognition Letters 131, 2020; ``Train_FER/train_CK.py``).

The authors: Adam, lr 1e-4, batch 64, 150 epochs, lr x 0.1 at epoch 80; mixup (alpha 1) on the
peak face only; loss = mixup-CE(global logits) + CE(part logits); prediction argmax(global + part);
ImageNet-normalised inputs; 10 identity-disjoint folds.

``FULL`` is that recipe on the faithful network (SSM from ImageNet VGG16, ``load_vgg16_features``).
``COURSE`` ("mgln-course-w16-48") is a named, scaled-down network that trains on one CPU thread: every
SSM width divided by 16, a 48x48 face (map 6x6), crops eyes 16x48, nose 32x16, mouth 16x32, one LSTM
layer of 36 units (a 6x6 part map), and four deviations for training from scratch on a CPU
(identity-disjoint folds, SynthFaces clips): GroupNorm(4) after each SSM
conv (BatchNorm would mix the statistics of faces and part crops in the shared SSM), no ReLU on the
score layers (conv6, conv9, the parts' conv3: with the authors' ReLU a score map can die), He init
of the part ends, and the SSM pre-trained on still SynthFaces of other identities
(:func:`pretrain_ssm`, standing in for ImageNet weights). With the first three changes but without the
pre-training the course network barely learns (notebook 06, arm "scratch"). Adam lr 1e-3, batch 16,
an epoch cap of 16 (the notebook stops each run at its plateau, :class:`fer_utils.train.Plateau`), lr x 0.1
at epoch 12. ``SMOKE``: the same network, a cap of 3 epochs, a shorter pre-training.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace

import numpy as np

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.transforms import v2

from fer_utils.data.sequences import PARTS, crop_frame, model_inputs
from fer_utils.data.synthetic import SynthFaces
from fer_utils.models.mgln import MGLN, VGG16_CONV4
from fer_utils.train import Plateau, fit as train_fit
from fer_utils.models import logits_of
from fer_utils.recipes import Recipe


@dataclass(frozen=True)
class MGLNRecipe(Recipe):
    """MGLN's hyper-parameters; the defaults are the authors'."""

    name: str = "full"
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
    # The authors start the SSM from ImageNet VGG16 (``load_vgg16_features``). The course network
    # starts it from expression classification of ``pretrain_n`` still SynthFaces of OTHER identities
    # (0 = no pre-training): a GAP + linear head on the SSM, Adam, ``pretrain_epochs`` epochs.
    pretrain_n: int = 0
    pretrain_epochs: int = 0
    pretrain_lr: float = 2e-3
    pretrain_batch: int = 32

    @property
    def part_size_dict(self) -> dict[str, tuple[int, int]]:
        return dict(self.part_sizes)


FULL = MGLNRecipe()
COURSE = MGLNRecipe(
    name="mgln-course-w16-48", epochs=16, batch_size=16, lr=1e-3, lr_step_epoch=12, input_size=48,
    ssm=tuple(v if v == "M" else v // 16 for v in VGG16_CONV4),
    part_sizes=(("eyes", (16, 48)), ("nose", (32, 16)), ("mouth", (16, 32))), lstm_hidden=36, lstm_layers=1,
    final_relu=False, ssm_norm="group", part_kaiming_init=True, folds=3, pretrain_n=8000, pretrain_epochs=8,
    pretrain_batch=16)
SMOKE = replace(COURSE, name="mgln-smoke-w16-48", epochs=3, lr_step_epoch=3, folds=2, pretrain_n=1200,
                pretrain_epochs=3)


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
    out = model(face, eyes, noses, mouths)
    loss_global = F.cross_entropy(out.global_logits, soft)
    loss_part = F.cross_entropy(out.part_logits, labels)
    logs = {"loss_global": float(loss_global.detach()), "loss_part": float(loss_part.detach())}
    return loss_global + loss_part, logs


@torch.inference_mode()
def predict(model: MGLN, data: dict[str, Tensor], slots: str = "real", batch_size: int = 256) -> dict[str, Tensor]:
    """Eval-mode logits over a whole sequence set: ``global``, ``part`` and ``fused`` (their sum)."""
    model.eval()
    outs: dict[str, list[Tensor]] = {"global": [], "part": [], "fused": []}
    n = len(data["label"])
    for i in range(0, n, batch_size):
        out = model(*model_inputs({k: v[i:i + batch_size] for k, v in data.items()}, slots))
        outs["global"].append(out.global_logits)
        outs["part"].append(out.part_logits)
        outs["fused"].append(logits_of(out))    # the decision-level fusion: global + part
    return {k: torch.cat(v) for k, v in outs.items()}


def accuracies(logits: dict[str, Tensor], labels: Tensor) -> dict[str, float]:
    """Accuracy of each of ``predict``'s outputs."""
    return {k: float((v.argmax(1) == labels).float().mean()) for k, v in logits.items()}


def pretrain_ssm(model: MGLN, faces: Tensor, labels: Tensor, recipe: MGLNRecipe, seed: int = 0,
                 progress: bool = True) -> list[float]:
    """Pre-train ``model.front_end`` on still faces: CE of ``Linear(GAP(SSM(face)))``; returns each epoch's mean loss.

    Stands in for the authors' ImageNet VGG16 start. ``faces`` (N, 3, s, s) model tensors, ``labels`` (N,).
    The linear head is thrown away afterwards; only the SSM's weights stay in ``model``.
    """
    torch.manual_seed(seed)
    head = nn.Linear(model.front_end.out_channels, recipe.num_classes)
    optimizer = torch.optim.Adam(list(model.front_end.parameters()) + list(head.parameters()), lr=recipe.pretrain_lr)
    order = torch.Generator().manual_seed(seed)
    n, b = len(labels), recipe.pretrain_batch

    def batches(_epoch: int):
        perm = torch.randperm(n, generator=order)
        return (perm[i:i + b] for i in range(0, n - b + 1, b))

    def step(front_end: nn.Module, idx: Tensor) -> Tensor:
        return F.cross_entropy(head(front_end(faces[idx]).mean((2, 3))), labels[idx])

    history = train_fit(model.front_end, batches, recipe.pretrain_epochs, optimizer, loss_step=step,
                  steps_per_epoch=n // b, progress=progress, desc="pre-training the SSM")
    return history["train_loss"]


def fit(model: MGLN, train: dict[str, Tensor], test: dict[str, Tensor], recipe: MGLNRecipe, seed: int = 0,
        progress: bool = True, desc: str = "MGLN", val: dict[str, Tensor] | None = None,
        stop: Plateau | None = None) -> dict[str, list]:
    """Train with :func:`loss_step` for ``recipe.epochs`` (:func:`fer_utils.train.fit`); after each epoch
    evaluate on ``test``.

    Returns the history: ``loss_global`` / ``loss_part`` (epoch means) and, per epoch, the test accuracy
    of ``global``, ``part`` and ``fused`` with the frames the recipe trains on (``train_slots``: real frames
    unless it is "peak"). Reading the LAST epoch is the clean protocol;
    taking the best epoch of this list is the authors' selection on the test fold. With ``val`` the history
    also holds ``val_loss`` (:func:`eval_loss` on those sequences, with the recipe's ``train_slots``); with
    ``stop`` (a :class:`~fer_utils.train.Plateau` watching ``val_loss``) training ends at the plateau, and
    ``epochs_run`` / ``plateaued`` say when and whether it was reached before the cap ``recipe.epochs``.
    """
    torch.manual_seed(seed)
    optimizer, scheduler = make_optimizer(model, recipe)
    order = torch.Generator().manual_seed(seed)
    n, b = len(train["label"]), recipe.batch_size

    def batches(_epoch: int):
        perm = torch.randperm(n, generator=order)
        return ({k: v[perm[i:i + b]] for k, v in train.items()} for i in range(0, n - b + 1, b))

    def score(_epoch: int, history: dict) -> None:
        for k, v in accuracies(predict(model, test, slots=recipe.train_slots), test["label"]).items():
            history.setdefault(k, []).append(v)
        if val is not None:
            history.setdefault("val_loss", []).append(eval_loss(model, val, recipe.train_slots))

    history = train_fit(model, batches, recipe.epochs, optimizer, scheduler=scheduler, progress=progress, desc=desc,
                        loss_step=lambda m, batch: loss_step(m, batch, recipe), steps_per_epoch=n // b,
                        on_epoch=score, stop=stop)
    keys = ("loss_global", "loss_part", "global", "part", "fused", "val_loss", "epochs_run", "plateaued")
    return {k: history[k] for k in keys if k in history}


@torch.inference_mode()
def eval_loss(model: MGLN, data: dict[str, Tensor], slots: str = "real") -> float:
    """The training loss without mixup, CE(global) + CE(part), over ``data`` in eval mode (for the plateau)."""
    model.eval()
    out = model(*model_inputs(data, slots))
    return float(F.cross_entropy(out.global_logits, data["label"]) + F.cross_entropy(out.part_logits, data["label"]))


def synth_clips(n_identities: int, seed: int = 0, difficulty: str = "medium", resting_face: float = 0.0,
                per_class: int = 1, render_size: int = 96, face_size: int = 48,
                part_sizes: dict[str, tuple[int, int]] | None = None) -> dict[str, np.ndarray]:
    """:func:`fer_utils.data.sequences.synth_sequences` with SynthFaces' ``resting_face`` dose.

    ``resting_face`` in [0, 1]: each identity's face at rest carries its own AU offsets (a person whose
    resting face looks a little sad or angry), in every frame, the onset included. The peak alone then
    mixes the expression with the person; onset and peak together show what moved.
    """
    pool = SynthFaces(0, seed=seed, difficulty=difficulty, size=render_size, n_identities=n_identities,
                      with_masks=False, resting_face=resting_face)
    frames, labels, identities = [], [], []
    for identity in range(n_identities):
        for label in range(pool.num_classes):
            for k in range(per_class):
                clip = pool.sequence(identity, label, length=3, seed=k)
                frames.append([crop_frame(f["image"], f["landmarks"], face_size, part_sizes) for f in clip])
                labels.append(label)
                identities.append(identity)
    out = {key: np.stack([np.stack([f[key] for f in clip]) for clip in frames]) for key in ("face", *PARTS)}
    return {**out, "label": np.asarray(labels, np.int64), "identity": np.asarray(identities, np.int64)}


def split_by_identity(identities: np.ndarray, every: int = 5) -> dict[str, np.ndarray]:
    """Indices of ``train`` / ``val`` / ``test`` sequences: identity ``i`` goes to test when ``i % every == 0``,
    to val when ``i % every == 1``, else to train (no identity on two sides)."""
    identities = np.asarray(identities)
    side = identities % every
    return {"train": np.flatnonzero(side > 1), "val": np.flatnonzero(side == 1), "test": np.flatnonzero(side == 0)}


@torch.inference_mode()
def part_probe(model: MGLN, data: dict[str, Tensor]) -> dict[str, float]:
    """What the part branch relies on, on ``data`` (real frames): its accuracy with all three parts, the
    accuracy lost when one part's LSTM map is zeroed (``drop_eyes`` ...), and its accuracy after the
    LSTM has read only the first 1, 2 or 3 frames (``frames1`` ... ``frames3``)."""
    model.eval()
    _, eyes, noses, mouths = model_inputs(data)
    labels = data["label"]
    back = model.back_end

    def acc(stack: Tensor) -> float:
        return float((back.conv9(back.conv8(back.conv7(stack))).mean((2, 3)).argmax(1) == labels).float().mean())

    stack = model.part_maps(eyes, noses, mouths)
    full = acc(stack)
    out = {}
    for k, part in enumerate(PARTS):
        dropped = stack.clone()
        dropped[:, k] = 0
        out[f"drop_{part}"] = full - acc(dropped)
    for t in (1, 2, 3):
        out[f"frames{t}"] = acc(model.part_maps(eyes[:, :t], noses[:, :t], mouths[:, :t]))
    return out


def score_run(model: MGLN, history: dict[str, list], test: dict[str, Tensor], slots: str = "real") -> dict:
    """One trained run's numbers for an experiment grid (plain floats, ints, bools, strings).

    ``fused`` / ``global`` / ``part``: test accuracy of the final model with the test ``slots`` its arm uses
    (the clean protocol: the epoch where training stopped); ``best_fused``: the best test accuracy over the
    epochs (the authors' selection on the test fold); ``fused_peak`` / ``part_peak``: the final model with the
    peak frame in all three slots (the authors' test inputs); ``epochs_run``, ``plateaued``; the
    :func:`part_probe` numbers; ``curve``: the test fused accuracy per epoch (JSON text).
    """
    final = accuracies(predict(model, test, slots=slots), test["label"])
    peak = accuracies(predict(model, test, slots="peak"), test["label"])
    epochs = len(history["fused"])
    return {**final, "best_fused": max(history["fused"]), "fused_peak": peak["fused"], "part_peak": peak["part"],
            "epochs_run": int(history.get("epochs_run", epochs)), "plateaued": bool(history.get("plateaued", False)),
            **part_probe(model, test), "curve": json.dumps([round(v, 4) for v in history["fused"]])}
