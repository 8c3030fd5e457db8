"""DDAMFN's training recipe (Zhang et al., Electronics 12(17):3595, 2023; the authors' ``rafdb_train.py``).

FULL is the authors' RAF-DB script: SGD (momentum 0.9, weight decay 1e-4), lr 0.01, StepLR(10, 0.1)
stepped once per epoch, batch 256, 40 epochs, 112x112 input with ImageNet normalisation, loss
cross-entropy + 0.1 x the attention loss (:func:`fer_utils.losses.ddamfn_loss`), augmentation
:func:`fer_utils.data.transforms.rafdb_train_transform`. COURSE and SMOKE are OURS: the scaled-down
network (:data:`fer_utils.models.ddamfn.COURSE`, 64x64) trained with Adam, which learns faster
in the few epochs a CPU allows.
"""
from __future__ import annotations

import hashlib
import inspect
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from torch import nn
from torch.utils.data import DataLoader, Dataset

from fer_utils import utils
from fer_utils.data.synthetic import SynthFaces
from fer_utils.data.transforms import eval_transform, rafdb_train_transform
from fer_utils.faces import align_sample
from fer_utils.losses import ATTENTION_WEIGHT, attention_loss, ddamfn_loss
from fer_utils.models.ddamfn import COURSE as COURSE_NET
from fer_utils.models import logits_of
from fer_utils.models.ddamfn import DDAMFN, FAITHFUL, ConvBlock, DepthWise, LinearBlock, MixedFeatureNet
from fer_utils.recipes import Recipe, cached_pretraining
from fer_utils.train import Plateau, equal_batch_size, fit
from fer_utils.weights import _backbone_state


@dataclass(frozen=True)
class DDAMFNRecipe(Recipe):
    num_heads: int = 2
    attention_weight: float = ATTENTION_WEIGHT
    momentum: float = 0.9
    step_size: int = 10
    gamma: float = 0.1
    config: str = "faithful"  # "faithful" (the authors' MFN) or "course" (ours, scaled down)


FULL = DDAMFNRecipe(name="full", paper="Zhang et al. 2023 (DDAMFN)", epochs=40, batch_size=256, lr=0.01,
                    weight_decay=1e-4, optimizer="sgd", input_size=112, channels=3, normalize="imagenet")
#: Ours, for two CPU cores: the COURSE network at 64x64, Adam lr 3e-3 divided by 10 after epoch 5 (so that
#: the validation curve flattens inside the budget), no weight decay.
COURSE = replace(FULL, name="course", epochs=8, batch_size=64, lr=3e-3, weight_decay=0.0, optimizer="adam",
                 step_size=5, input_size=COURSE_NET.input_size, config="course")
SMOKE = replace(COURSE, name="smoke", epochs=6, step_size=4)


def build_model(recipe: DDAMFNRecipe, num_heads: int | None = None) -> DDAMFN:
    """DDAMFN of ``recipe.config`` with ``recipe.num_heads`` heads (or ``num_heads``, for the ablation)."""
    config = FAITHFUL if recipe.config == "faithful" else COURSE_NET
    return DDAMFN(recipe.num_classes, recipe.num_heads if num_heads is None else num_heads, config)


def make_optimizer(model: nn.Module, recipe: DDAMFNRecipe = FULL):
    """SGD (momentum, weight decay) + StepLR(step_size, gamma) as the authors; or Adam + the same StepLR (ours)."""
    if recipe.optimizer == "sgd":
        optimizer = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                                    weight_decay=recipe.weight_decay)
        return optimizer, torch.optim.lr_scheduler.StepLR(optimizer, step_size=recipe.step_size, gamma=recipe.gamma)
    if recipe.optimizer == "adam":
        optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
        return optimizer, torch.optim.lr_scheduler.StepLR(optimizer, step_size=recipe.step_size, gamma=recipe.gamma)
    raise ValueError(f"optimizer must be 'sgd' or 'adam', got {recipe.optimizer!r}")


def loss_step(model: nn.Module, batch, recipe: DDAMFNRecipe):
    """CE(logits, y) + attention_weight * attention_loss(head maps) of one batch."""
    images, labels = batch
    loss = ddamfn_loss(model(images), labels, recipe.attention_weight)
    return loss, {"loss": float(loss.detach())}


def train_transform(recipe: DDAMFNRecipe):
    """The authors' RAF-DB augmentation at the recipe's input size (what ``fer-train ddamfn`` applies)."""
    return rafdb_train_transform(recipe.input_size)


# ----------------------------------------------------------------------------------------------
# Pre-training the backbone on face identities (the course's stand-in for MS-Celeb-1M)
# ----------------------------------------------------------------------------------------------

#: Files whose content decides what a pre-trained backbone is: the face generator, the alignment, the network
#: (and, below, the source of the pre-training functions themselves).
PRETRAIN_SOURCES = ("data/synth_sample.py", "data/synth_draw.py", "data/synth_template.py", "data/synthetic.py",
                    "faces.py", "models/ddamfn.py")
PACKAGE = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Pretraining:
    """Identity pre-training of the MFN on SynthFaces (ours: the authors' MS-Celeb recipe is not published).

    ``n`` faces of ``n_identities`` people drawn with ``seed`` (a seed the expression data never uses, so
    the people are new to the expression task), ``epochs`` of Adam at ``lr``, cosine-softmax with ``scale``.
    """

    n: int = 3000
    n_identities: int = 150
    seed: int = 1000
    difficulty: str = "medium"
    epochs: int = 6
    batch_size: int = 64
    lr: float = 3e-3
    scale: float = 16.0


class IdentityNet(nn.Module):
    """The whole MFN (features, GDConv, linear, BatchNorm1d, L2 norm) + a cosine classifier over identities:
    ``logits = s * cos(embedding, w_k)`` (NormFace, Wang et al. 2017; ArcFace/CosFace add a margin, we do not)."""

    def __init__(self, config, n_identities: int, scale: float = 16.0, embedding_size: int = 128):
        super().__init__()
        self.backbone = MixedFeatureNet(config, embedding_size)
        self.weight = nn.Parameter(torch.randn(n_identities, embedding_size) * 0.01)
        self.scale = scale

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.scale * self.backbone(images) @ F.normalize(self.weight, dim=1).T


def aligned_faces(n: int, n_identities: int, seed: int, difficulty: str, size: int,
                  with_masks: bool = False) -> dict[str, Any]:
    """``n`` SynthFaces of ``n_identities`` people aligned on the 112x112 template
    (:func:`fer_utils.faces.align_sample`) and resized once to ``size``: ``images`` uint8 (N, 3, size, size),
    ``labels`` and ``identities`` (int64 tensors), ``pool`` (the :class:`SynthFaces`); with ``with_masks``
    also ``items`` (each face's sample: its intensity ...) and ``masks`` (its region masks, aligned, 112x112)."""
    pool = SynthFaces(n, seed=seed, difficulty=difficulty, size=112, n_identities=n_identities, with_masks=with_masks)
    items = [pool[i] for i in range(len(pool))]
    aligned = [align_sample(item, 112) for item in items]
    images = torch.from_numpy(np.stack([image for image, _ in aligned])).permute(0, 3, 1, 2).contiguous()
    if size != 112:
        images = TF.resize(images, [size, size], antialias=True)
    faces = dict(images=images, labels=torch.from_numpy(pool.labels.astype(np.int64)),
                 identities=torch.from_numpy(pool.identities.astype(np.int64)), pool=pool)
    if with_masks:
        faces.update(items=items, masks=[masks for _, masks in aligned])
    return faces


def pretrain_key(config, setup: Pretraining) -> str:
    """A hash of the network config, the pre-training settings, the source files they depend on and the
    pre-training code (:class:`IdentityNet`, :func:`aligned_faces`, :func:`pretrain_identity`)."""
    digest = hashlib.sha256(repr((config, setup)).encode())
    for name in PRETRAIN_SOURCES:
        digest.update((PACKAGE / name).read_bytes())
    for code in (IdentityNet, aligned_faces, pretrain_identity, rafdb_train_transform):
        digest.update(inspect.getsource(code).encode())
    return digest.hexdigest()[:16]


def pretrain_identity(config, setup: Pretraining, progress: bool = True) -> tuple[nn.Module, dict]:
    """Train :class:`IdentityNet` on ``setup``'s faces (the authors' augmentation); returns it and its history."""
    faces = aligned_faces(setup.n, setup.n_identities, setup.seed, setup.difficulty, config.input_size)
    images, identities = faces["images"], faces["identities"]
    torch.manual_seed(setup.seed)
    model = IdentityNet(config, setup.n_identities, setup.scale)
    transform = rafdb_train_transform(config.input_size)
    loader = DataLoader(TensorFaces(images, identities, transform), batch_size=setup.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(setup.seed))
    optimizer = torch.optim.Adam(model.parameters(), lr=setup.lr)
    history = fit(model, loader, setup.epochs, optimizer, progress=progress, channels_last=True,
                  desc="identity pre-training")
    return model, history


def pretrained_backbone(config, setup: Pretraining, cache_dir: str | Path | None = None,
                        progress: bool = True) -> tuple[dict, dict]:
    """``features.*`` state dict of an identity-pre-trained MFN, from ``cache_dir`` (default
    ``ddamfn_pretrain`` in the course's cache folder, :func:`fer_utils.utils.cache_dir`) when its key
    matches, else trained now and saved. Returns (state, info) with info = key, whether it was cached,
    identity accuracy per epoch, seconds."""
    folder = Path(cache_dir) if cache_dir else utils.cache_dir() / "ddamfn_pretrain"
    key = pretrain_key(config, setup)

    def train() -> tuple[dict, dict]:
        start = time.time()
        model, history = pretrain_identity(config, setup, progress)
        features = _backbone_state(model.backbone)                 # conv1 .. conv_6_sep -> features.0 .. 8
        return features, {"key": key, "identity_accuracy": history["train_accuracy"], "seconds": time.time() - start}

    return cached_pretraining(folder / f"mfn_{config.name}_{key}.pt", train, field="features")


def load_backbone(model: DDAMFN, features: dict) -> None:
    """Copy a pre-trained ``features.*`` state into ``model`` (everything else keeps its initialisation)."""
    missing = [k for k in model.state_dict() if k.startswith("features.") and k not in features]
    if missing:
        raise KeyError(f"pre-trained backbone lacks {len(missing)} keys, e.g. {missing[0]}: built for another config?")
    model.load_state_dict(features, strict=False)


class TensorFaces(Dataset):
    """(transform(images[i]), targets[i]) over uint8 image tensors rendered once."""

    def __init__(self, images: torch.Tensor, targets: torch.Tensor, transform, indices=None):
        self.images, self.targets, self.transform = images, targets, transform
        self.indices = np.arange(len(images)) if indices is None else np.asarray(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, j: int):
        i = int(self.indices[j])
        return self.transform(self.images[i]), self.targets[i]


# ----------------------------------------------------------------------------------------------
# Training only the part after the backbone, on features computed once (the head ablation)
# ----------------------------------------------------------------------------------------------

def backbone_features(model: DDAMFN, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """``model.features`` of already transformed ``images`` (eval mode, no gradients): (N, C, S, S)."""
    model.eval()
    with torch.no_grad():    # not inference_mode: the features feed the heads' training afterwards
        return torch.cat([model.features(images[i:i + batch_size]) for i in range(0, len(images), batch_size)])


def train_after_backbone(model: DDAMFN, features: torch.Tensor, labels: torch.Tensor, epochs: int, lr: float,
                         batch_size: int, seed: int, attention_weight: float = ATTENTION_WEIGHT) -> list[float]:
    """Adam on the heads, GDConv and fc of ``model`` (the backbone stays as it is) with
    CE + ``attention_weight`` x attention loss, over fixed backbone ``features``
    (:func:`fer_utils.train.fit` on ``model.classify``); returns the loss per epoch."""
    trained = [module for module in [*model.heads, model.Linear, model.fc]]
    optimizer = torch.optim.Adam([p for module in trained for p in module.parameters()], lr=lr)
    generator = torch.Generator().manual_seed(seed)

    def batches(_epoch: int):
        return torch.randperm(len(features), generator=generator).split(batch_size)

    def step(net: DDAMFN, rows: torch.Tensor) -> torch.Tensor:
        return ddamfn_loss(net.classify(features[rows]), labels[rows], attention_weight)

    history = fit(model, batches, epochs, optimizer, loss_step=step, steps_per_epoch=-(-len(features) // batch_size),
                  progress=False)
    model.eval()
    return history["train_loss"]


# ----------------------------------------------------------------------------------------------
# The paper's backbone comparison at the course's scale (MobileFaceNet vs ResNet-18 vs MFN)
# ----------------------------------------------------------------------------------------------

class GDConvClassifier(nn.Module):
    """``backbone`` (B, C, S, S) -> GDConv (an S x S depthwise LinearBlock, as MobileFaceNet's and DDAMFN's
    embedding) -> flatten -> ``fc``: logits (B, classes)."""

    def __init__(self, backbone: nn.Module, channels: int, map_size: int, num_classes: int = 7):
        super().__init__()
        self.backbone = backbone
        self.gdconv = LinearBlock(channels, channels, (map_size, map_size), groups=channels)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.fc(self.gdconv(self.backbone(images)).flatten(1))


def course_mobilefacenet(num_classes: int = 7, config=COURSE_NET) -> GDConvClassifier:
    """MobileFaceNet (Chen et al. 2018; the layout of :func:`fer_utils.models.ddamfn.mobilefacenet`) scaled
    like the course MFN: every width / 4, 1 / 2 / 1 residual bottlenecks instead of 4 / 6 / 2, the same input
    and final map (64x64 -> 4x4), 3x3 depthwise kernels only and no coordinate attention (what MFN adds)."""
    def residual(c: int, expand: int, n: int) -> nn.Sequential:
        return nn.Sequential(*[DepthWise(c, c, expand, 1, True) for _ in range(n)])

    backbone = nn.Sequential(
        ConvBlock(3, 16, (3, 3), (2, 2), (1, 1)), ConvBlock(16, 16, (3, 3), (1, 1), (1, 1), groups=16),
        DepthWise(16, 16, 32, 2), residual(16, 32, 1),
        DepthWise(16, 32, 64, 2), residual(32, 64, 2),
        DepthWise(32, 32, 128, 2), residual(32, 64, 1),
        ConvBlock(32, 128))
    return GDConvClassifier(backbone, 128, config.map_size, num_classes)


def course_resnet18(num_classes: int = 7, width: int = 16) -> nn.Module:
    """ResNet-18's layout (He et al. 2016: four stages of two basic blocks) with widths 16 / 32 / 64 / 128
    (torchvision's / 4) and a 3x3 stride-2 stem without max-pooling, so a 64x64 face ends as a 4x4 map like
    the course MFN's; global average pooling and ``fc`` as torchvision's."""
    from torchvision.models.resnet import BasicBlock, ResNet

    model = ResNet(BasicBlock, [2, 2, 2, 2], num_classes=num_classes, width_per_group=64)
    model.inplanes = width
    model.conv1 = nn.Conv2d(3, width, 3, 2, 1, bias=False)
    model.bn1 = nn.BatchNorm2d(width)
    model.maxpool = nn.Identity()
    model.layer1 = model._make_layer(BasicBlock, width, 2)
    model.layer2 = model._make_layer(BasicBlock, width * 2, 2, stride=2)
    model.layer3 = model._make_layer(BasicBlock, width * 4, 2, stride=2)
    model.layer4 = model._make_layer(BasicBlock, width * 8, 2, stride=2)
    model.fc = nn.Linear(width * 8, num_classes)
    return model


#: The named course-scale variants of the backbone comparison (all at the course network's 64x64 input).
VARIANTS = ("ddamfn", "mfn", "mobilefacenet", "resnet18", "lenet")


def build_variant(name: str, num_classes: int = 7, num_heads: int = 2, config=COURSE_NET) -> nn.Module:
    """``ddamfn`` (the course DDAMFN, ``num_heads`` heads), ``mfn`` (the same with 0 heads: MFN, GDConv, fc),
    ``mobilefacenet``, ``resnet18`` (the course-scale versions above) or ``lenet`` (notebook 02's LeNet-5 on
    the same colour faces)."""
    if name == "ddamfn":
        return DDAMFN(num_classes, num_heads, config)
    if name == "mfn":
        return DDAMFN(num_classes, 0, config)
    if name == "mobilefacenet":
        return course_mobilefacenet(num_classes, config)
    if name == "resnet18":
        return course_resnet18(num_classes)
    if name == "lenet":
        from fer_utils.models.baselines import LeNet5
        return LeNet5(num_classes, in_channels=3, input_size=config.input_size)
    raise ValueError(f"variant must be one of {VARIANTS}, got {name!r}")


def variant_loss(attention_weight: float = ATTENTION_WEIGHT):
    """CE + ``attention_weight`` x the attention loss for a DDAMFN output; plain CE for any other network."""
    def loss_fn(outputs, targets):
        loss = F.cross_entropy(logits_of(outputs), targets)
        heads = getattr(outputs, "heads", None)
        if attention_weight and heads is not None and len(heads) > 1:
            loss = loss + attention_weight * attention_loss(heads)
        return loss
    return loss_fn


def train_variant(model: nn.Module, train: tuple, val: tuple, recipe: DDAMFNRecipe, seed: int,
                  stop: Plateau | None = None, attention_weight: float = ATTENTION_WEIGHT, progress: bool = False,
                  desc: str = "training", precise_bn: bool = False) -> dict:
    """``model`` on ``train`` = (uint8 images (N, 3, S, S), labels) with the authors' augmentation, the
    recipe's optimiser, schedule, batch and epoch cap, validated on ``val`` (resized + normalised only) after
    every epoch; ``stop``: a :class:`fer_utils.train.Plateau` (notebook 05 passes ``start`` = the epoch after the
    learning-rate step: before it, a fresh network's validation loss still jumps with Adam at 3e-3).
    ``precise_bn``: recompute BatchNorm's statistics over the training faces (resized + normalised, as the test
    faces) after every epoch, before validation (``fit``'s ``bn_loader``; notebook 05's grid).
    Returns :func:`fer_utils.train.fit`'s history."""
    torch.manual_seed(seed)
    eval_tf = eval_transform(recipe.input_size, normalize="imagenet")
    train_loader = DataLoader(TensorFaces(*train, rafdb_train_transform(recipe.input_size)),
                              batch_size=recipe.batch_size, shuffle=True, drop_last=len(train[1]) > recipe.batch_size,
                              generator=torch.Generator().manual_seed(seed))   # no batch of one for BatchNorm
    val_loader = DataLoader(TensorFaces(*val, eval_tf), batch_size=256)
    bn_loader = (DataLoader(TensorFaces(*train, eval_tf), batch_size=equal_batch_size(len(train[1])))
                 if precise_bn else None)
    optimizer, scheduler = make_optimizer(model, recipe)
    return fit(model, train_loader, recipe.epochs, optimizer, loss_fn=variant_loss(attention_weight),
               val_loader=val_loader, scheduler=scheduler, progress=progress, channels_last=True, desc=desc,
               stop=stop, bn_loader=bn_loader)


def predict(model: nn.Module, images: torch.Tensor, input_size: int, batch_size: int = 256) -> torch.Tensor:
    """Logits of uint8 ``images`` (N, 3, S, S), resized and normalised as the test faces (eval mode)."""
    eval_tf = eval_transform(input_size, normalize="imagenet")
    model.eval()
    with torch.inference_mode():
        return torch.cat([logits_of(model(torch.stack([eval_tf(x) for x in images[i:i + batch_size]])
                                          .contiguous(memory_format=torch.channels_last)))
                          for i in range(0, len(images), batch_size)])
