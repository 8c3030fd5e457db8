"""One small training loop for the whole course: ``fit`` and ``evaluate``.

Batches are ``(inputs, targets)`` pairs. ``model(inputs)`` may return a tensor
or a tuple whose first element is the logits / predictions. ``loss_fn(outputs,
targets)`` receives the raw model output, so multi-output models (attention
maps, two heads) pass their own loss. No framework: read it top to bottom.
"""
from __future__ import annotations

import math
from typing import Callable, Iterable

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from fer_utils import metrics
from fer_utils.utils import use_amp


def _first(outputs):
    return outputs[0] if isinstance(outputs, (tuple, list)) else outputs


def _to(batch, device, channels_last: bool = False):
    """``batch`` (a tensor, or tuples / dicts of them) on ``device``; 4-d tensors in ``channels_last``
    memory format when asked (same values, a different stride order that CPU convolutions run faster on)."""
    if isinstance(batch, (tuple, list)):
        return type(batch)(_to(b, device, channels_last) for b in batch)
    if isinstance(batch, dict):
        return {k: _to(v, device, channels_last) for k, v in batch.items()}
    if not isinstance(batch, torch.Tensor):
        return batch
    batch = batch.to(device)
    return batch.contiguous(memory_format=torch.channels_last) if channels_last and batch.ndim == 4 else batch


def evaluate(model: nn.Module, loader: Iterable, loss_fn: Callable | None = None,
             device: str | torch.device = "cpu", channels_last: bool = False) -> dict:
    """Run ``model`` in eval mode over ``loader``, under ``torch.inference_mode`` (no autograd
    bookkeeping at all; the outputs cannot enter a later backward pass).

    Returns ``loss`` (mean over samples, if ``loss_fn``), ``outputs`` (the
    concatenated first outputs, as numpy) and ``targets``; for integer targets
    also ``accuracy``. ``channels_last`` feeds 4-d inputs in that memory format.
    """
    model.eval()
    outputs, targets, total_loss, count = [], [], 0.0, 0
    with torch.inference_mode():
        for inputs, target in loader:
            inputs, target = _to(inputs, device, channels_last), _to(target, device)
            out = model(inputs)
            if loss_fn is not None:
                total_loss += float(loss_fn(out, target)) * len(target)
            count += len(target)
            outputs.append(_first(out).float().cpu())
            targets.append(target.cpu())
    result = {"outputs": torch.cat(outputs).numpy(), "targets": torch.cat(targets).numpy()}
    if loss_fn is not None:
        result["loss"] = total_loss / max(count, 1)
    if result["targets"].dtype.kind in "iu" and result["outputs"].ndim == 2:
        result["accuracy"] = metrics.accuracy(result["targets"], result["outputs"])
    return result


def backward_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler=None) -> None:
    """``loss.backward()`` then ``optimizer.step()``; through the AMP ``GradScaler`` when one is given."""
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()


def fit(model: nn.Module, train_loader: Iterable, epochs: int, optimizer: torch.optim.Optimizer,
        loss_fn: Callable = nn.CrossEntropyLoss(), val_loader: Iterable | None = None,
        device: str | torch.device = "cpu", scheduler=None, progress: bool = True,
        channels_last: bool = False, desc: str = "training") -> dict[str, list]:
    """Train for ``epochs`` and return the history (``train_loss`` and, for classification,
    ``train_accuracy``; ``val_loss`` / ``val_accuracy`` when ``val_loader`` is given).

    ``channels_last`` moves the model and every 4-d input to ``torch.channels_last`` (the same
    numbers up to float rounding; faster convolutions on CPU: ``benchmarks/bench_train_loop.py``).
    One progress bar (labelled ``desc``) covers the whole run, not one per epoch.

    A NaN or infinite loss stops training at once with a ``FloatingPointError``
    that names the epoch and step (lower the learning rate, check the inputs).
    AMP (float16 autocast) is used only on CUDA.
    """
    device = torch.device(device)
    model.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    amp = use_amp(device)
    scaler = torch.amp.GradScaler("cuda") if amp else None
    history: dict[str, list] = {"train_loss": [], "train_accuracy": []}
    bar = tqdm(total=epochs * len(train_loader), disable=not progress, desc=desc,
               unit="batch", mininterval=2.0, ascii=True)
    for epoch in range(1, epochs + 1):
        model.train()
        total, count, predicted, labels = 0.0, 0, [], []
        for step, (inputs, target) in enumerate(train_loader, start=1):
            inputs, target = _to(inputs, device, channels_last), _to(target, device)
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device.type, enabled=amp):
                out = model(inputs)
                loss = loss_fn(out, target)
            loss_value = float(loss.detach())
            if not math.isfinite(loss_value):
                bar.close()
                raise FloatingPointError(
                    f"loss became {loss_value} at epoch {epoch}, step {step}: training stopped. "
                    "Try a lower learning rate or check the inputs for NaN."
                )
            backward_step(loss, optimizer, scaler)
            total += loss_value * len(target)
            count += len(target)
            logits = _first(out)
            if target.dtype in (torch.int64, torch.int32) and logits.ndim == 2:
                predicted.append(logits.detach().argmax(1).cpu().numpy())
                labels.append(target.cpu().numpy())
            bar.update(1)
            bar.set_postfix(epoch=epoch, loss=f"{total / count:.3f}", refresh=False)
        if scheduler is not None:
            scheduler.step()
        history["train_loss"].append(total / count)
        history["train_accuracy"].append(
            metrics.accuracy(np.concatenate(labels), np.concatenate(predicted)) if labels else 0.0)
        if val_loader is not None:
            result = evaluate(model, val_loader, loss_fn, device, channels_last)
            history.setdefault("val_loss", []).append(result["loss"])
            if "accuracy" in result:
                history.setdefault("val_accuracy", []).append(result["accuracy"])
    bar.close()
    return history
