"""The one training loop of the course: :func:`train_step`, :func:`fit` and :func:`evaluate`.

Every model in the course, in a notebook, in a recipe or in ``fer-train``, is trained by
:func:`train_step`: the recipe's ``loss_step(model, batch) -> loss`` or ``(loss, logs)`` under
autocast, the NaN guard, ``zero_grad``, ``backward`` and the optimiser step (through a
``GradScaler`` for float16; for SAM, ``optimizer.step(closure)``, the closure running the same
forward and backward again). :func:`fit` repeats it over epochs with one progress bar, the
scheduler, validation, the history, and the hooks a paper needs (``on_step``: SCN's relabelling,
the mean teacher's EMA, a per-step scheduler; ``on_epoch``: a validation of the recipe's own).
``fer-train`` calls the same :func:`train_step` inside its DDP wrapper. No framework: read it
top to bottom.

The classic call ``fit(model, loader, epochs, optimizer, loss_fn)`` trains on ``(inputs, targets)``
batches with ``loss_fn(model(inputs), targets)``; logits are read with
:func:`fer_utils.models.logits_of`, the package's one way to read a model's output.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from fer_utils import metrics
from fer_utils.models import logits_of
from fer_utils.utils import use_amp

#: ``loss_step(model, batch)`` returns the loss, or ``(loss, logs)``; logs hold floats (averaged per
#: epoch into the history) and, optionally, ``logits`` and ``labels`` tensors (the training accuracy).
LossStep = Callable[[nn.Module, Any], Any]


@dataclass(frozen=True)
class Plateau:
    """The plateau rule: stop when ``monitor`` (a history key, ``val_loss`` by default) has not improved on
    its best earlier value by more than ``tolerance`` for ``patience`` epochs, from epoch ``start`` on.

    With values v_1..v_e after epoch e, the run has plateaued when e >= start, e > patience and
    ``min(v_{e-patience+1..e}) > min(v_1..v_{e-patience}) - tolerance`` (for ``mode="min"``; "max" mirrors it).
    ``start`` (1 by default: any epoch) keeps the rule from holding before that epoch, e.g. while a fresh
    network's validation loss still jumps before a learning-rate step (ours; notebook 05).
    A run that reaches its epoch cap without that is *not* plateaued: :func:`fer_utils.stats.compare` then
    marks its verdict budget-limited. Arms compared share one cap (``fit``'s ``epochs``) and one rule.
    """

    patience: int = 3
    tolerance: float = 1e-3
    monitor: str = "val_loss"
    mode: str = "min"
    start: int = 1

    def __repr__(self) -> str:
        """The dataclass's repr, ``start`` shown only when it is not 1 (a rule without it prints as it always did)."""
        shown = [f.name for f in fields(self) if f.name != "start" or self.start != 1]
        return f"{type(self).__qualname__}({', '.join(f'{name}={getattr(self, name)!r}' for name in shown)})"

    def reached(self, values: Sequence[float]) -> bool:
        """Whether the rule holds after epoch e = ``len(values)`` (the formula above)."""
        if self.mode not in ("min", "max"):
            raise ValueError(f"Plateau mode must be 'min' or 'max', got {self.mode!r}")
        if len(values) < self.start or len(values) <= self.patience:
            return False
        sign = 1.0 if self.mode == "min" else -1.0
        recent = min(sign * v for v in values[-self.patience:])
        before = min(sign * v for v in values[:-self.patience])
        return recent > before - self.tolerance


def class_balanced_weights(labels: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """Class-balanced sampling weights (float64): sample i with label y_i weighs ``w_i = 1 / n_{y_i}``, n_c being
    the number of samples of class c, so a draw with replacement picks every present class with probability 1 / C
    (POSTER V2's torchsampler ImbalancedDatasetSampler; fer-train's ``sampling="class_balanced"``)."""
    labels = torch.as_tensor(labels, dtype=torch.long)
    if labels.ndim != 1 or not len(labels) or int(labels.min()) < 0:
        raise ValueError("class-balanced sampling needs a non-empty 1-d sequence of class indices >= 0")
    return 1.0 / torch.bincount(labels)[labels].double()


def split_loss(result: Any) -> tuple[torch.Tensor, dict]:
    """``loss`` or ``(loss, logs)`` -> ``(loss, logs)``."""
    return (result[0], dict(result[1] or {})) if isinstance(result, tuple) else (result, {})


def _loss(model: nn.Module, batch: Any, loss_step: LossStep, amp_dtype: torch.dtype | None, device_type: str,
          where: str) -> tuple[torch.Tensor, float, dict]:
    """``(loss, its value, logs)`` of ``loss_step(model, batch)`` under autocast; a NaN or infinite loss raises."""
    with torch.autocast(device_type, dtype=amp_dtype, enabled=amp_dtype is not None):
        loss, logs = split_loss(loss_step(model, batch))
    value = float(loss.detach())
    if not math.isfinite(value):
        raise FloatingPointError(f"loss became {value} {where}: training stopped. "
                                 "Try a lower learning rate or check the inputs for NaN.")
    return loss, value, logs


def _backward(loss: torch.Tensor, scaler: torch.amp.GradScaler | None) -> None:
    """``dL/dtheta`` into the parameters' ``.grad`` (of the scaled loss with a GradScaler): the package's one
    backward pass of a training loss."""
    if scaler is not None:
        scaler.scale(loss).backward()
    else:
        loss.backward()


def train_step(model: nn.Module, batch: Any, loss_step: LossStep, optimizer: torch.optim.Optimizer, *,
               scaler: torch.amp.GradScaler | None = None, amp_dtype: torch.dtype | None = None,
               device_type: str = "cpu", where: str = "") -> tuple[float, dict]:
    """One optimisation step; returns ``(loss value, logs)`` of the step's first forward pass.

    ``L = loss_step(model, batch)`` (under ``torch.autocast(device_type, amp_dtype)`` when ``amp_dtype``),
    then ``theta <- optimizer(theta, dL/dtheta)``. A NaN or infinite loss stops training at once with a
    ``FloatingPointError`` naming ``where`` (epoch and step) before any weight changes.

    An optimiser with ``requires_closure = True`` (SAM, :class:`fer_utils.recipes.poster.SAM`) gets
    ``optimizer.step(closure)`` after the first backward; the closure zeroes the gradients and runs the same
    forward and backward again on the same batch, at whatever weights the optimiser has set (SAM: w + e(w)).
    """
    closure_needed = getattr(optimizer, "requires_closure", False)
    if closure_needed and scaler is not None:
        raise ValueError("an optimiser that needs a closure (SAM) cannot step through a float16 GradScaler: "
                         "train in bfloat16 or float32")
    loss, value, logs = _loss(model, batch, loss_step, amp_dtype, device_type, where)
    optimizer.zero_grad(set_to_none=True)
    _backward(loss, scaler)
    if closure_needed:
        def closure() -> torch.Tensor:
            optimizer.zero_grad(set_to_none=True)
            again = _loss(model, batch, loss_step, amp_dtype, device_type, f"{where} (second pass)")[0]
            _backward(again, None)
            return again.detach()

        optimizer.step(closure)
    elif scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    return value, logs


def supervised_step(loss_fn: Callable) -> LossStep:
    """The classic step on ``(inputs, targets)``: ``loss_fn(model(inputs), targets)``; for integer targets
    the logits and labels are logged (the training accuracy)."""

    def step(model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict]:
        inputs, target = batch
        out = model(inputs)
        logs = {}
        if not target.is_floating_point():
            logs = {"logits": logits_of(out).detach(), "labels": target}
        return loss_fn(out, target), logs

    return step


def to_device(batch: Any, device: str | torch.device, channels_last: bool = False) -> Any:
    """``batch`` (a tensor, or tuples / dicts of them) on ``device``; 4-d tensors in ``channels_last``
    memory format when asked (same values, a different stride order that CPU convolutions run faster on)."""
    if isinstance(batch, (tuple, list)):
        return type(batch)(to_device(b, device, channels_last) for b in batch)
    if isinstance(batch, dict):
        return {k: to_device(v, device, channels_last) for k, v in batch.items()}
    if not isinstance(batch, torch.Tensor):
        return batch
    batch = batch.to(device)
    return batch.contiguous(memory_format=torch.channels_last) if channels_last and batch.ndim == 4 else batch


def batch_length(batch: Any) -> int:
    """Samples in ``batch``: the length of its first tensor or array (1 when it holds none)."""
    if isinstance(batch, (torch.Tensor, np.ndarray)):
        return len(batch)
    items = batch.values() if isinstance(batch, dict) else batch if isinstance(batch, (tuple, list)) else ()
    for item in items:
        n = batch_length(item)
        if n != 1 or isinstance(item, (torch.Tensor, np.ndarray)):
            return n
    return 1


@torch.inference_mode()
def evaluate(model: nn.Module, loader: Iterable, loss_fn: Callable | None = None,
             device: str | torch.device = "cpu", channels_last: bool = False) -> dict:
    """Run ``model`` in eval mode over ``loader``, under ``torch.inference_mode`` (no autograd
    bookkeeping at all; the outputs cannot enter a later backward pass).

    Returns ``loss`` (mean over samples, if ``loss_fn``), ``outputs`` (the concatenated logits,
    :func:`~fer_utils.models.logits_of`, as numpy) and ``targets``; for integer targets also
    ``accuracy``. ``channels_last`` feeds 4-d inputs in that memory format.
    """
    model.eval()
    outputs, targets, total_loss, count = [], [], 0.0, 0
    for inputs, target in loader:
        inputs, target = to_device(inputs, device, channels_last), to_device(target, device)
        out = model(inputs)
        if loss_fn is not None:
            total_loss += float(loss_fn(out, target)) * len(target)
        count += len(target)
        outputs.append(logits_of(out).float().cpu())
        targets.append(target.cpu())
    result = {"outputs": torch.cat(outputs).numpy(), "targets": torch.cat(targets).numpy()}
    if loss_fn is not None:
        result["loss"] = total_loss / max(count, 1)
    if result["targets"].dtype.kind in "iu" and result["outputs"].ndim == 2:
        result["accuracy"] = metrics.accuracy(result["targets"], result["outputs"])
    return result


class LossSums:
    """Sample-weighted sums of a pass's loss and its float logs (``fit``'s history, ``fer-train``'s metrics).

    With batches b of n_b samples, loss L_b and logs l_{k,b} (ints and floats only: tensors such as logits are
    not summed, and a log named "loss" repeats L_b): ``S_loss = sum_b n_b L_b``, ``S_k = sum_b n_b l_{k,b}``,
    ``N = sum_b n_b``; the pass's means are ``S / max(N, 1)``. ``sums`` holds S_loss under ``loss_key`` and each
    S_k under ``log_prefix + k``; ``count`` is N.
    """

    def __init__(self, loss_key: str = "loss", log_prefix: str = "") -> None:
        self.loss_key, self.log_prefix = loss_key, log_prefix
        self.sums: dict[str, float] = {loss_key: 0.0}
        self.count = 0

    def add(self, value: float, logs: dict, n: int) -> None:
        """Add one batch of ``n`` samples: its loss ``value`` and its ``logs``."""
        self.sums[self.loss_key] += value * n
        self.count += n
        for key, item in logs.items():
            if isinstance(item, (int, float)) and key != "loss":
                name = self.log_prefix + key
                self.sums[name] = self.sums.get(name, 0.0) + float(item) * n

    def means(self) -> dict[str, float]:
        """``S / max(N, 1)`` for every sum, in the order the keys first appeared."""
        return {key: total / max(self.count, 1) for key, total in self.sums.items()}


class _EpochSums(LossSums):
    """:class:`LossSums` of one epoch under ``train_loss``, and its predicted / true labels (the accuracy)."""

    def __init__(self) -> None:
        super().__init__("train_loss")
        self.predicted, self.labels = [], []

    def add(self, value: float, logs: dict, n: int) -> None:
        super().add(value, logs, n)
        if "logits" in logs and "labels" in logs and logs["logits"].ndim == 2:
            self.predicted.append(logs["logits"].argmax(1).cpu().numpy())
            self.labels.append(logs["labels"].cpu().numpy())

    def into(self, history: dict[str, list]) -> None:
        """Append the epoch's means (and ``train_accuracy``) to ``history``."""
        for key, mean in self.means().items():
            history.setdefault(key, []).append(mean)
        if self.labels:
            history.setdefault("train_accuracy", []).append(
                metrics.accuracy(np.concatenate(self.labels), np.concatenate(self.predicted)))


def equal_batch_size(n: int, most: int = 512) -> int:
    """The batch size that cuts ``n`` items into ceil(n / most) batches of near-equal size (at most ``most``): for
    ``fit``'s ``bn_loader``, since ``update_bn`` averages the batches' statistics with equal weights (a last batch
    of a few items would weigh as much as a full one)."""
    return -(-n // -(-n // most)) if n > 0 else 1


def fit(model: nn.Module, train_loader: Iterable | Callable[[int], Iterable], epochs: int,
        optimizer: torch.optim.Optimizer, loss_fn: Callable = nn.CrossEntropyLoss(),
        val_loader: Iterable | None = None, device: str | torch.device = "cpu", scheduler: Any = None,
        progress: bool = True, channels_last: bool = False, desc: str = "training", *,
        loss_step: LossStep | None = None, steps_per_epoch: int | None = None,
        on_step: Callable[[int, Any, float, dict], None] | None = None,
        on_epoch: Callable[[int, dict], None] | None = None, stop: Plateau | None = None,
        bn_loader: Iterable | None = None) -> dict[str, list]:
    """Train for ``epochs`` with :func:`train_step` and return the history, one entry per epoch:
    ``train_loss`` (sample-weighted mean), each float the loss step logs, ``train_accuracy`` when it
    logs logits and labels, ``val_loss`` / ``val_accuracy`` when ``val_loader`` is given.

    ``train_loader`` is re-iterated every epoch, or called as ``train_loader(epoch)`` (epochs from 1) when
    it is a function (a recipe's own sampler). ``loss_step`` defaults to :func:`supervised_step` of
    ``loss_fn``. ``scheduler.step()`` runs after each epoch; ``on_step(step, batch, loss, logs)`` after
    each optimiser step (steps counted from 1 over the run), ``on_epoch(epoch, history)`` after each
    epoch's validation. ``stop``: a :class:`Plateau` rule checked after each epoch (``epochs`` is then the
    cap); with it the history records ``epochs_run`` and ``plateaued`` (reached before the cap). ``bn_loader``: input
    batches over which BatchNorm's running statistics are recomputed after each epoch, before validation (precise BN,
    Wu & Johnson 2021; :func:`torch.optim.swa_utils.update_bn`): after few fast steps the running averages lag the
    weights, and a network can predict one class in eval mode (notebook 05). ``channels_last`` moves the model and
    every 4-d input to that memory format (the same numbers up to float rounding; faster convolutions on CPU). AMP
    (float16 autocast with a GradScaler) is used only on CUDA. One progress bar (``desc``) covers the whole run.
    """
    device = torch.device(device)
    model.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    amp = use_amp(device)
    scaler = torch.amp.GradScaler("cuda") if amp else None
    step_fn = loss_step or supervised_step(loss_fn)
    per_epoch = steps_per_epoch if steps_per_epoch is not None else len(train_loader)
    history: dict[str, list] = {"train_loss": []}
    bar = tqdm(total=epochs * per_epoch, disable=not progress, desc=desc, unit="batch", mininterval=2.0, ascii=True)
    done = 0
    for epoch in range(1, epochs + 1):
        model.train()
        sums = _EpochSums()
        batches = train_loader(epoch) if callable(train_loader) and not hasattr(train_loader, "__iter__") \
            else train_loader
        for step, batch in enumerate(batches, start=1):
            batch = to_device(batch, device, channels_last)
            try:
                value, logs = train_step(model, batch, step_fn, optimizer, scaler=scaler,
                                         amp_dtype=torch.float16 if amp else None, device_type=device.type,
                                         where=f"at epoch {epoch}, step {step}")
            except FloatingPointError:
                bar.close()
                raise
            sums.add(value, logs, batch_length(batch))
            done += 1
            if on_step is not None:
                on_step(done, batch, value, logs)
            bar.update(1)
            bar.set_postfix(epoch=epoch, loss=f"{sums.sums['train_loss'] / max(sums.count, 1):.3f}", refresh=False)
        if bn_loader is not None:
            torch.optim.swa_utils.update_bn(bn_loader, model, device)
        _end_epoch(epoch, model, sums, history, scheduler, val_loader, loss_fn, device, channels_last, on_epoch, stop)
        if history.get("plateaued"):
            break
    bar.close()
    return history


def _end_epoch(epoch: int, model: nn.Module, sums: _EpochSums, history: dict, scheduler: Any,
               val_loader: Iterable | None, loss_fn: Callable, device: torch.device, channels_last: bool,
               on_epoch: Callable | None, stop: Plateau | None) -> None:
    """After an epoch: the scheduler's step, the epoch's means, validation, ``on_epoch``, the plateau check."""
    if scheduler is not None:
        scheduler.step()
    sums.into(history)
    if val_loader is not None:
        result = evaluate(model, val_loader, loss_fn, device, channels_last)
        history.setdefault("val_loss", []).append(result["loss"])
        if "accuracy" in result:
            history.setdefault("val_accuracy", []).append(result["accuracy"])
    if on_epoch is not None:
        on_epoch(epoch, history)
    if stop is not None:
        if stop.monitor not in history:
            raise KeyError(f"the plateau rule watches {stop.monitor!r}, which the history lacks (have "
                           f"{sorted(history)}): pass a val_loader or record it in on_epoch")
        history["epochs_run"], history["plateaued"] = epoch, stop.reached(history[stop.monitor])
