"""The training engine behind ``fer-train``: processes and devices, DDP, one epoch, validation.

Kept apart from the command line (:mod:`fer_utils.cli.fer_train`) so it reads top to bottom:

- :func:`setup` reads torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``), picks
  the device and starts the process group (gloo on CPU, nccl on CUDA);
- :func:`make_loaders`: a ``DistributedSampler`` for training (also with one process, so one and
  N processes see the same global batches), or a :class:`ClassBalancedSampler` when the recipe says
  ``sampling="class_balanced"``; a disjoint validation shard per rank;
- :func:`wrap` puts the model in ``DistributedDataParallel`` when there are several processes;
- :func:`train_epoch` / :func:`evaluate` call the recipe's ``loss_step`` and return metrics summed
  over every rank (:class:`Sums`); :func:`sync_and_compare` checks that the ranks agree.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import os
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler, WeightedRandomSampler
from tqdm import tqdm

from fer_utils.cli import checkpoint as ckpt
from fer_utils.models import logits_of
from fer_utils.train import LossSums, class_balanced_weights, split_loss, train_step


class FerTrainError(ValueError):
    """A bad command line (recipe, dataset, path, override): reported before any training."""

# ----------------------------------------------------------------------------------------------
# Processes and devices
# ----------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Context:
    """Where this process runs: rank, world size, device, AMP and the loader settings."""

    rank: int
    world: int
    local_rank: int
    device: torch.device
    amp_dtype: torch.dtype | None
    workers: int

    @property
    def main(self) -> bool:
        return self.rank == 0


@dataclasses.dataclass
class Steps:
    """What the loop calls from a recipe module: ``loss_step`` (``stage`` bound when given),
    ``train_transform`` (or None) and the target each image is paired with ("label" or "va")."""

    name: str
    loss_step: Callable
    train_transform: Callable | None
    target: str = "label"


def setup(device_name: str, amp: bool, workers: int | None) -> Context:
    """Read torchrun's environment, pick the device, start the process group (gloo/nccl)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    want_cuda = device_name == "cuda" or (device_name == "auto" and torch.cuda.is_available())
    if want_cuda and not torch.cuda.is_available():
        raise FerTrainError("--device cuda: CUDA is not available")
    device = torch.device("cuda", local_rank) if want_cuda else torch.device("cpu")
    if want_cuda:
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if want_cuda else "gloo")
    amp_dtype = None
    if want_cuda and amp:
        amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if workers is None:
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        workers = min(8, (os.cpu_count() or 1) // local_world) if want_cuda else 0
    return Context(rank, world, local_rank, device, amp_dtype, workers)


def unused_parameters(model: nn.Module, steps: Steps, batch: tuple, recipe: Any) -> list[str]:
    """Parameters that one training step leaves without a gradient (on a copy of the model:
    the real one, its BatchNorm statistics included, is not touched)."""
    probe = copy.deepcopy(model).train()
    state = torch.get_rng_state()
    loss, _ = split_loss(steps.loss_step(probe, batch, recipe))
    loss.backward()   # a probe for parameters without a gradient, not a training step
    torch.set_rng_state(state)
    return [n for n, p in probe.named_parameters() if p.requires_grad and p.grad is None]


def wrap(model: nn.Module, ctx: Context, steps: Steps, first_batch: Any, recipe: Any) -> nn.Module:
    """DistributedDataParallel when world > 1; ``first_batch()`` gives the batch that probes for
    parameters without a gradient (DDP must be told about them)."""
    if ctx.world == 1:
        return model
    unused = unused_parameters(model, steps, first_batch(), recipe)
    if ctx.main and unused:
        print(f"DDP: {len(unused)} parameters get no gradient (e.g. {unused[0]}): find_unused_parameters=True")
    ids = [ctx.local_rank] if ctx.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=bool(unused))


# ----------------------------------------------------------------------------------------------
# One epoch
# ----------------------------------------------------------------------------------------------

class _Recorder:
    """Calls the model and keeps its last output, so accuracy needs no second forward pass."""

    def __init__(self, model: nn.Module) -> None:
        self.model, self.output = model, None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.output = self.model(*args, **kwargs)
        return self.output

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)


def to_device(x: torch.Tensor, y: torch.Tensor, ctx: Context, channels_last: bool) -> tuple:
    x = x.to(ctx.device, non_blocking=True)
    if channels_last and x.ndim == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, y.to(ctx.device, non_blocking=True)


class Sums:
    """Sample-weighted sums of the epoch's loss and the recipe's logs (:class:`fer_utils.train.LossSums`, the
    history's sums) and the correct predictions C, reduced over ranks: each sum S, and C, over N samples of all
    ranks -> ``S / N``. Logs (``loss_step``'s dict, ints and floats) appear as ``<prefix>_log_<key>``."""

    def __init__(self) -> None:
        self.losses = LossSums("loss", "log_")
        self.correct, self.has_accuracy = 0.0, True

    def add(self, loss: float, logs: dict, output: Any, y: torch.Tensor) -> None:
        self.losses.add(loss, logs, len(y))
        logits = logits_of(output) if not y.is_floating_point() else None
        if logits is not None and logits.ndim == 2:
            self.correct += float((logits.argmax(1) == y).sum())
        else:
            self.has_accuracy = False

    def mean_loss(self) -> float:
        """This rank's mean loss so far (the progress bar's)."""
        return self.losses.sums["loss"] / self.losses.count

    def reduce(self, ctx: Context, prefix: str) -> dict[str, float]:
        values = {**self.losses.sums, "correct": self.correct, "count": float(self.losses.count)}
        keys = sorted(values)
        totals = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=ctx.device)
        if ctx.world > 1:
            dist.all_reduce(totals)
        t = dict(zip(keys, totals.tolist()))
        count = max(t.pop("count"), 1.0)
        correct = t.pop("correct")
        out = {f"{prefix}_{k}": v / count for k, v in t.items()}
        if self.has_accuracy:
            out[f"{prefix}_accuracy"] = correct / count
        out[f"{prefix}_images"] = int(count)
        return out


def train_epoch(net: nn.Module, loader: DataLoader, steps: Steps, recipe: Any, optimizer: Any, scaler: Any,
                ctx: Context, channels_last: bool, epoch: int, progress: bool) -> dict[str, float]:
    """One pass over this rank's shard; returns the metrics summed over every rank."""
    net.train()
    sums, recorder = Sums(), _Recorder(net)
    bar = tqdm(loader, desc=f"epoch {epoch}", unit="batch", disable=not (ctx.main and progress),
               mininterval=2.0, ascii=True, leave=False)
    for step, (x, y) in enumerate(bar, start=1):
        x, y = to_device(x, y, ctx, channels_last)
        value, logs = train_step(recorder, (x, y), lambda m, b: steps.loss_step(m, b, recipe), optimizer,
                                 scaler=scaler, amp_dtype=ctx.amp_dtype, device_type=ctx.device.type,
                                 where=f"at epoch {epoch}, step {step} on rank {ctx.rank}")
        sums.add(value, logs, recorder.output, y)
        bar.set_postfix(loss=f"{sums.mean_loss():.4f}", refresh=False)
    bar.close()
    return sums.reduce(ctx, "train")


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, steps: Steps, recipe: Any, ctx: Context,
             channels_last: bool) -> dict[str, float]:
    """The recipe's loss and the accuracy on this rank's validation shard, summed over ranks."""
    model.eval()
    sums, recorder = Sums(), _Recorder(model)
    for x, y in loader:
        x, y = to_device(x, y, ctx, channels_last)
        with torch.autocast(ctx.device.type, dtype=ctx.amp_dtype, enabled=ctx.amp_dtype is not None):
            loss, logs = split_loss(steps.loss_step(recorder, (x, y), recipe))
        sums.add(float(loss), logs, recorder.output, y)
    return sums.reduce(ctx, "val")


def sync_and_compare(model: nn.Module, ctx: Context) -> float:
    """Copy rank 0's buffers (BatchNorm statistics) to every rank and return the largest
    difference between any rank's parameters and rank 0's (0.0 when DDP kept them in step)."""
    if ctx.world == 1:
        return 0.0
    for buf in model.buffers():
        dist.broadcast(buf, 0)
    flat = torch.cat([p.detach().float().flatten() for p in model.parameters()])
    ref = flat.clone()
    dist.broadcast(ref, 0)
    diff = (flat - ref).abs().max()
    dist.all_reduce(diff, op=dist.ReduceOp.MAX)
    return float(diff)


def gather_rng(ctx: Context) -> list[dict]:
    """Every rank's generator states (rank 0 writes them all into the checkpoint)."""
    state = ckpt.rng_state()
    if ctx.world == 1:
        return [state]
    states: list[Any] = [None] * ctx.world
    dist.all_gather_object(states, state)
    return states



class RecipeImages(Dataset):
    """(image tensor, target) pairs in the recipe's input convention (size, channels, normalize);
    the target is the label, or (valence, arousal) for ``target="va"``.

    Images come through :class:`fer_utils.data.formats.FormatDataset` (lazy loading, face-box
    crops) and are resized with ``adapt_image``. ``transform`` (the recipe module's
    ``train_transform(recipe)``, when it has one) maps the uint8 (C, H, W) tensor to the model
    tensor, augmentation included; without it ``to_model_tensor(recipe.normalize)`` does.
    """

    def __init__(self, samples: Any, indices: Sequence[int], recipe: Any, target: str = "label",
                 transform: Any = None) -> None:
        from fer_utils.data.formats import FormatDataset

        self.base, self.indices, self.recipe = FormatDataset(samples), list(indices), recipe
        self.target, self.transform = target, transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, j: int) -> tuple[torch.Tensor, torch.Tensor]:
        from fer_utils.data.convention import to_model_tensor
        from fer_utils.data.datasets import adapt_image

        item = self.base[self.indices[j]]
        image = adapt_image(item["image"], self.recipe.input_size, grayscale=self.recipe.channels == 1)
        if self.transform is not None:
            x = self.transform(torch.from_numpy(np.array(image.reshape(*image.shape[:2], -1))).permute(2, 0, 1))
        else:
            x = to_model_tensor(image[None], self.recipe.normalize)[0]
        if self.target == "va":
            return x, torch.tensor([item["valence"], item["arousal"]], dtype=torch.float32)
        return x, torch.tensor(int(item["label"]))


#: A recipe's ``sampling`` field: how the training loader draws images.
SAMPLINGS = ("shuffle", "class_balanced")


class ClassBalancedSampler(Sampler[int]):
    """Class-balanced draws with replacement, split over ranks as a ``DistributedSampler`` splits its order.

    Sample i (label y_i) has the weight ``w_i = 1 / n_{y_i}`` (:func:`fer_utils.train.class_balanced_weights`), n_c
    being the number of training samples of class c, so each draw picks every present class with probability
    1 / C. An epoch draws
    ``total = ceil(N / world) * world`` indices (N = ``len(labels)``; total = N for one process) with
    ``WeightedRandomSampler(w, total, replacement=True)`` (``torch.multinomial``), its generator seeded by
    ``(seed, epoch)``: every rank draws the same global order and keeps the positions ``rank::world``, so one
    and N processes see the same global batches, and a resumed run the same order as a straight one.

    This is the torchsampler ``ImbalancedDatasetSampler`` that POSTER V2's main.py imports (main.py:21) and
    uses for AffectNet-7 (main.py:118-125; main_8.py always): version 0.1.1, vendored in POSTER V1 at
    torchsampler/imbalanced.py:18-38,56-57, weighs sample i by 1 / (its class count) and draws len(dataset)
    indices per epoch with torch.multinomial, with replacement.
    """

    def __init__(self, labels: Sequence[int] | torch.Tensor, num_replicas: int = 1, rank: int = 0,
                 seed: int = 0) -> None:
        self.weights = class_balanced_weights(labels)
        self.num_replicas, self.rank, self.seed, self.epoch = num_replicas, rank, seed, 0
        self.num_samples = math.ceil(len(self.weights) / num_replicas)      # per rank
        self.total_size = self.num_samples * num_replicas

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def global_order(self) -> list[int]:
        """This epoch's ``total_size`` draws, the same on every rank."""
        state = np.random.SeedSequence([self.seed, self.epoch]).generate_state(1, dtype=np.uint64)[0]
        generator = torch.Generator().manual_seed(int(state >> np.uint64(1)))
        return list(WeightedRandomSampler(self.weights, self.total_size, replacement=True, generator=generator))

    def __iter__(self) -> Iterator[int]:
        return iter(self.global_order()[self.rank::self.num_replicas])

    def __len__(self) -> int:
        return self.num_samples


def train_sampler(samples: Any, train_idx: list, train: Dataset, steps: Steps, recipe: Any, ctx: Context,
                  seed: int) -> DistributedSampler | ClassBalancedSampler:
    """The training sampler the recipe's ``sampling`` field names (``"shuffle"`` when it has none): a shuffling
    ``DistributedSampler`` or a :class:`ClassBalancedSampler` over the training labels, both seeded by the run's
    ``seed`` (``--seed``), so another seed gives another data order."""
    sampling = getattr(recipe, "sampling", "shuffle")
    if sampling == "shuffle":
        return DistributedSampler(train, num_replicas=ctx.world, rank=ctx.rank, shuffle=True, seed=seed)
    if sampling != "class_balanced":
        raise FerTrainError(f"sampling={sampling!r}: expected one of {SAMPLINGS}")
    if steps.target != "label":
        raise FerTrainError(f"sampling='class_balanced' needs class labels; this run's target is {steps.target!r}")
    labels = [samples[i].get("label") for i in train_idx]
    if any(label is None for label in labels):
        raise FerTrainError("sampling='class_balanced': some training samples have no label")
    return ClassBalancedSampler([int(label) for label in labels], ctx.world, ctx.rank, seed)


def make_loaders(samples: Any, train_idx: list, val_idx: list, steps: Steps, recipe: Any,
                 ctx: Context, seed: int = 0) -> tuple[DataLoader, DataLoader | None, Any]:
    """Train loader with the recipe's sampler (:func:`train_sampler`: by default a DistributedSampler, also for
    one process: the same data order), and a validation loader over this rank's disjoint shard (every image
    counted once). ``seed`` (the run's ``--seed``) seeds the data order."""
    if recipe.batch_size % ctx.world:
        raise FerTrainError(f"batch_size {recipe.batch_size} (the global batch) is not divisible by "
                            f"the {ctx.world} processes")
    per_rank = recipe.batch_size // ctx.world
    transform = steps.train_transform(recipe) if steps.train_transform is not None else None
    if transform is None and ctx.main:
        print(f"note: recipe module {steps.name} defines no train_transform(recipe): training without "
              "augmentation")
    train = RecipeImages(samples, train_idx, recipe, steps.target, transform)
    sampler = train_sampler(samples, train_idx, train, steps, recipe, ctx, seed)
    cuda = ctx.device.type == "cuda"
    opts = dict(num_workers=ctx.workers, pin_memory=cuda, persistent_workers=False)
    train_loader = DataLoader(train, batch_size=per_rank, sampler=sampler, **opts)
    val_loader = None
    if val_idx:
        val = RecipeImages(samples, val_idx[ctx.rank::ctx.world], recipe, steps.target)
        val_loader = DataLoader(val, batch_size=per_rank, shuffle=False, **opts)
    return train_loader, val_loader, sampler
