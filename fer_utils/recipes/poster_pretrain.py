"""Pre-training POSTER's course landmark stream on SynthFaces' true landmarks (ours), cached on disk.

POSTER V2 takes its landmark stream from a MobileFaceNet trained elsewhere to regress 68 facial landmarks
(``MobileFaceNet([112, 112], 136)``, PosterV2_7cls.py:249, its weights read at :250-252) and freezes it:
``requires_grad = False`` (:254-255), nothing more, so ``model.train()`` still puts its BatchNorms in training
mode (batch statistics, drifting running statistics; ``shared/reference/poster.md`` section 7, quirk 5).
The course has no such file, so :class:`~fer_utils.models.poster.CourseLandmarkNet` learns the same task on
SynthFaces, whose 68 iBUG landmarks are exact (:mod:`fer_utils.data.synthetic`: pixel centres at integer
coordinates, nothing warped after drawing). The authors' sheet does not say how their MobileFaceNet was trained;
ours regresses normalised coordinates with the mean squared error:

    u = 2 (p + 0.5) / S - 1                      (p in pixels of an S x S image; the image spans [-1, 1])
    z = (u - mean(u)) / std(u)                   (per coordinate, mean and std over the training faces)
    L = mean over the batch and the 136 numbers of (f(x) - z)^2

Standardising matters here: the stream's regression head ends in a BatchNorm1d (as MobileFaceNet's GDC head), whose
output starts with unit spread, while the raw u of aligned faces spread by a few hundredths.

Adam, seeded, no augmentation (a flip would have to swap the left and right points), through the one training
loop :func:`fer_utils.train.fit`. :func:`pretrained_landmarks` caches the result under
``fer_utils.utils.cache_dir() / "poster_pretrain"`` by a key over the stream's configuration, the
:class:`LandmarkPretraining` setup and the code (as :func:`fer_utils.recipes.ddamfn.pretrained_backbone`);
:func:`load_landmark_stream` puts it into a :class:`~fer_utils.models.poster.PosterCourse` and freezes it as the
authors do.
"""
from __future__ import annotations

import hashlib
import inspect
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fer_utils import utils
from fer_utils.data.convention import to_model_tensor
from fer_utils.data.synthetic import SynthFaces
from fer_utils.models.poster import CourseLandmarkNet, PosterCourse
from fer_utils.recipes import cached_pretraining
from fer_utils.train import fit

#: Files whose content decides what a pre-trained stream is: the face generator and the network.
PRETRAIN_SOURCES = ("data/synth_sample.py", "data/synth_draw.py", "data/synth_template.py", "data/synth_scenario.py",
                    "data/synthetic.py", "data/convention.py", "models/poster.py", "models/poster_blocks.py")
PACKAGE = Path(__file__).resolve().parents[1]
NUM_LANDMARKS = 68


@dataclass(frozen=True)
class LandmarkPretraining:
    """Landmark pre-training of the course landmark stream on SynthFaces (ours).

    ``n`` faces drawn with ``seed`` (a seed the expression data does not use, so the people are new to the
    expression task), ``epochs`` of Adam at ``lr`` in batches of ``batch_size``; ``n_heldout`` faces drawn with
    ``seed + 1`` measure the landmark error afterwards (recorded in the info, never trained on).
    """

    n: int = 2000
    seed: int = 2000
    difficulty: str = "medium"
    epochs: int = 10
    batch_size: int = 64
    lr: float = 5e-3
    n_heldout: int = 200


def stream_config(recipe: Any) -> dict[str, Any]:
    """What a landmark stream's weights depend on in a PosterRecipe: channels, input size, widths, normalisation."""
    return {"channels": recipe.channels, "input_size": recipe.input_size, "dims": tuple(recipe.dims),
            "normalize": recipe.normalize}


def normalise_points(points: torch.Tensor, size: int) -> torch.Tensor:
    """(..., 68, 2) pixel coordinates -> (..., 136) in [-1, 1]: ``u = 2 (p + 0.5) / S - 1``, x then y per point."""
    return (2 * (points + 0.5) / size - 1).flatten(-2)


def landmark_faces(config: dict[str, Any], n: int, seed: int, difficulty: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` SynthFaces at the stream's input size, in its input convention: images (n, C, S, S) float32 and
    their true landmarks (n, 68, 2) in pixels."""
    size = config["input_size"]
    faces = SynthFaces(n, seed=seed, difficulty=difficulty, size=size, grayscale=config["channels"] == 1,
                       with_masks=False)
    items = [faces[i] for i in range(n)]
    images = to_model_tensor(np.stack([item["image"] for item in items]), config["normalize"])
    points = torch.from_numpy(np.stack([item["landmarks"] for item in items]).astype(np.float32))
    return images, points


def build_stream(config: dict[str, Any]) -> CourseLandmarkNet:
    """An untrained :class:`CourseLandmarkNet` for ``config`` (the one inside a PosterCourse of that config)."""
    return CourseLandmarkNet(config["channels"], config["dims"], config["input_size"], NUM_LANDMARKS)


def target_scale(points: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-coordinate mean and standard deviation (136 each) of the training faces' normalised points."""
    u = normalise_points(points, size)
    return u.mean(0), u.std(0).clamp_min(1e-6)


@torch.no_grad()
def predict_points(stream: nn.Module, images: torch.Tensor, scale: tuple[torch.Tensor, torch.Tensor],
                   batch_size: int = 256) -> torch.Tensor:
    """(N, 68, 2) points in pixels, eval mode: ``u = mean + std f(x)``, then ``p = (u + 1) S / 2 - 0.5``."""
    stream.eval()
    out = torch.cat([stream.landmarks(images[i:i + batch_size]) for i in range(0, len(images), batch_size)])
    u = scale[0] + scale[1] * out
    return ((u + 1) * images.shape[-1] / 2 - 0.5).view(-1, NUM_LANDMARKS, 2)


def landmark_error(stream: nn.Module, images: torch.Tensor, points: torch.Tensor,
                   scale: tuple[torch.Tensor, torch.Tensor]) -> float:
    """Mean point-to-point error in pixels, ``mean_{i,k} ||p_hat_ik - p_ik||_2`` (:func:`predict_points`)."""
    return float(torch.linalg.vector_norm(predict_points(stream, images, scale) - points, dim=-1).mean())


def pretrain_landmarks(config: dict[str, Any], setup: LandmarkPretraining, progress: bool = True
                       ) -> tuple[CourseLandmarkNet, dict[str, Any], tuple[torch.Tensor, torch.Tensor]]:
    """Train :func:`build_stream` on ``setup``'s faces with the squared error of the module docstring through
    :func:`fer_utils.train.fit` (seeded: the same setup gives the same weights); returns it, fit's history and
    the targets' (mean, std)."""
    images, points = landmark_faces(config, setup.n, setup.seed, setup.difficulty)
    scale = target_scale(points, config["input_size"])
    targets = (normalise_points(points, config["input_size"]) - scale[0]) / scale[1]
    torch.manual_seed(setup.seed)
    stream = build_stream(config)
    generator = torch.Generator().manual_seed(setup.seed)
    batches_per_epoch = max(1, len(images) // setup.batch_size)   # whole batches (BatchNorm1d needs >= 2)

    def batches(_epoch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(len(images), generator=generator)[:batches_per_epoch * setup.batch_size]
        return [(images[rows], targets[rows]) for rows in order.view(batches_per_epoch, -1)]

    def step(net: CourseLandmarkNet, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, u = batch
        return F.mse_loss(net.landmarks(x), u)

    optimizer = torch.optim.Adam(stream.parameters(), lr=setup.lr)
    history = fit(stream, batches, setup.epochs, optimizer, loss_step=step, steps_per_epoch=batches_per_epoch,
                  progress=progress, desc="landmark pre-training")
    stream.eval()
    return stream, history, scale


def pretrain_key(config: dict[str, Any], setup: LandmarkPretraining) -> str:
    """A hash of the stream's configuration, the setup, the source files they depend on and the pre-training
    code itself."""
    digest = hashlib.sha256(repr((sorted(config.items()), setup)).encode())
    for name in PRETRAIN_SOURCES:
        digest.update((PACKAGE / name).read_bytes())
    for code in (normalise_points, target_scale, landmark_faces, build_stream, pretrain_landmarks, predict_points):
        digest.update(inspect.getsource(code).encode())
    return digest.hexdigest()[:16]


def pretrained_landmarks(recipe: Any, setup: LandmarkPretraining = LandmarkPretraining(),
                         cache_dir: str | Path | None = None, progress: bool = True) -> tuple[dict, dict]:
    """The landmark stream's state dict, pre-trained for ``recipe``'s PosterCourse (:func:`stream_config`): read
    from ``cache_dir`` (default ``poster_pretrain`` in :func:`fer_utils.utils.cache_dir`) when its key matches,
    else trained now and saved. Returns (state, info), info = key, whether it was cached, the training loss per
    epoch, ``target_mean`` / ``target_std`` (136 each: ``landmarks(x)`` is in those units, :func:`predict_points`),
    the held-out error in pixels of the stream and of the mean shape, seconds."""
    config = stream_config(recipe)
    folder = Path(cache_dir) if cache_dir else utils.cache_dir() / "poster_pretrain"
    key = pretrain_key(config, setup)

    def train() -> tuple[dict, dict]:
        start = time.time()
        stream, history, scale = pretrain_landmarks(config, setup, progress)
        images, points = landmark_faces(config, setup.n_heldout, setup.seed + 1, setup.difficulty)
        mean_shape = ((scale[0] + 1) * config["input_size"] / 2 - 0.5).view(NUM_LANDMARKS, 2)
        info = {"key": key, "train_loss": history["train_loss"], "target_mean": scale[0].tolist(),
                "target_std": scale[1].tolist(), "heldout_error_px": landmark_error(stream, images, points, scale),
                "mean_shape_error_px": float(torch.linalg.vector_norm(mean_shape - points, dim=-1).mean()),
                "seconds": time.time() - start}
        return {k: v.detach().clone() for k, v in stream.state_dict().items()}, info

    return cached_pretraining(folder / f"landmarks_{key}.pt", train)


def _stay_in_eval(module: nn.Module, _inputs: Any) -> None:
    """Forward pre-hook: the module runs in eval mode whatever ``model.train()`` set (running statistics)."""
    if module.training:
        module.eval()


def load_landmark_stream(model: PosterCourse, state: dict[str, torch.Tensor], batch_statistics: bool = True) -> None:
    """Copy a pre-trained stream into ``model.face_landback`` (strictly) and freeze it as the authors do:
    ``requires_grad = False`` on every parameter (PosterV2_7cls.py:254-255), so the optimiser never moves it
    and the gradient never reaches it. ``batch_statistics=True`` is the authors' behaviour (quirk 5): their
    BatchNorms follow ``model.train()``, normalise with batch statistics and keep updating their running ones.
    ``batch_statistics=False`` (ours) keeps the stream in eval mode on every forward (the pre-trained running
    statistics, untouched). Build the optimiser after this call or before: frozen parameters get no gradient.
    """
    if getattr(model, "mode", None) == "image_only" or not hasattr(model, "face_landback"):
        raise ValueError("this PosterCourse has no landmark stream (mode 'image_only')")
    stream = model.face_landback
    stream.load_state_dict(state)
    stream.requires_grad_(False)
    if not batch_statistics and _stay_in_eval not in stream._forward_pre_hooks.values():
        stream.register_forward_pre_hook(_stay_in_eval)
