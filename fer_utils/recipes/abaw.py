"""Training recipes for ABAW2 multi-task affect from incompletely labelled frames (notebook 07).

Every recipe trains :class:`fer_utils.models.abaw.ABAWNet` on windows of consecutive frames with the
masked losses of :mod:`fer_utils.losses` (-1 / -5 = missing), at one budget: the same number of
optimiser steps of the same batch size for every schedule. What varies:

- ``schedule``: ``"mixed"`` (every batch, every task's loss on whatever labels it has),
  ``"alternate_batch"`` (batch s trains task s mod 3 only, on windows that have that task) or
  ``"alternate_epoch"`` (a whole epoch per task), the alternating updates of the multi-modal
  ABAW2 entry (Jin et al., arXiv:2107.04187);
- ``mean_teacher``: an EMA teacher theta_T <- a theta_T + (1 - a) theta_S with a = ``ema_decay`` = 0.99,
  consistency MSE on the tasks a frame has no label for, weight 0.4 * exp(-5 (1 - t)^2) ramped up
  over ``rampup_epochs`` (all as in Wang et al.'s public code, arXiv:2107.04225);
- distillation (``train(..., teachers=...)``): single-task teachers' outputs fill the missing labels,
  L = 0.6 L_GT + 0.4 L_soft, KL at T = 1.5 for EXPR and BCE on the teacher's sigmoid for AUs
  (Deng et al., FG 2020); for VA, MSE to the teacher's prediction (Deng et al. classify VA into bins:
  our simplification).

For experiments on how scarce the labels are, :func:`render_frames` renders clips with every label and
:func:`hide_labels` hides each task's labels on a chosen share of the videos (nested masks, paired by seed);
``train(..., val=, stop=Plateau(...))`` ends a run at the plateau of its validation loss or at the epoch cap.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor, nn

from fer_utils import losses, metrics
from fer_utils.models import logits_of
from fer_utils.models.abaw import COURSE_WIDTHS, ABAWNet, ABAWOutput
from fer_utils.recipes import Recipe
from fer_utils.train import Plateau, fit

TASKS = ("AU", "EXPR", "VA")


@dataclass(frozen=True)
class ABAWRecipe(Recipe):
    """One ABAW2 training recipe. Defaults: the mean-teacher entry's public settings where known."""

    task: str = "abaw"
    widths: tuple[int, ...] = COURSE_WIDTHS
    features: str = "last"  # "last" | "fpn"
    heads: str = "parallel"  # "parallel" | "streaming" | "graph"
    temporal: str = "none"  # "none" | "gru" | "transformer"
    tasks: tuple[str, ...] = TASKS  # a single task gives a single-task model (a distillation teacher)
    schedule: str = "mixed"  # "mixed" | "alternate_batch" | "alternate_epoch"
    focal_gamma: float = 0.0
    window: int = 16  # consecutive frames per training window
    graph_threshold: float = 0.5  # tau of the AU relation graph
    mean_teacher: bool = False
    ema_decay: float = 0.99
    consistency_weight: float = 0.4
    rampup_epochs: int = 15
    consistency_on_unlabelled: bool = True  # also on frames with no label at all
    student_noise: float = 0.1  # s.d. of the Gaussian input noise of the mean teacher's student
    distill_weight: float = 0.4
    temperature: float = 1.5


#: The entries' scale (112 x 112 RGB, Adam 5e-4, mean-teacher settings as published); the widths
#: stand in for their ResNet-50 / VGG-FACE backbones, which this package does not ship. Epochs: our choice.
FULL = ABAWRecipe(name="abaw_full", paper="Kollias et al., ABAW2, ICCV-W 2021 (entries: arXiv:2107.04225 and "
                  "2107.03670)", epochs=30, batch_size=8, lr=5e-4, input_size=112, channels=3,
                  widths=(64, 128, 256, 512))
#: Named scaled-down course configuration: 40 x 40 grey, a 4-stage 8-16-32-48 CNN, 12 epochs.
COURSE = replace(FULL, name="abaw_course", epochs=12, batch_size=4, lr=3e-3, input_size=40, channels=1,
                 widths=COURSE_WIDTHS, rampup_epochs=4)
SMOKE = replace(COURSE, name="abaw_smoke", epochs=4, rampup_epochs=2)


def build_model(recipe: ABAWRecipe, au_adjacency: Tensor | None = None) -> ABAWNet:
    """The recipe's network (``au_adjacency`` (12, 12) for ``heads="graph"``)."""
    return ABAWNet(recipe.channels, recipe.widths, recipe.features, recipe.heads, recipe.temporal, au_adjacency)


def make_optimizer(model: nn.Module, recipe: ABAWRecipe, steps: int) -> tuple[torch.optim.Optimizer, object]:
    """Adam at ``recipe.lr`` with a cosine decay to zero over ``steps`` optimiser steps."""
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    return optimizer, torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(1, steps))


def task_loss(out: ABAWOutput, au: Tensor, expr: Tensor, va: Tensor, tasks: tuple[str, ...],
              gamma: float = 0.0) -> tuple[Tensor, dict[str, float]]:
    """L = sum over ``tasks`` of the masked losses (weights 1 : 1 : 1, as the FPN entry)."""
    parts = {}
    if "AU" in tasks:
        parts["AU"] = losses.masked_au_bce(out.au, au)
    if "EXPR" in tasks:
        parts["EXPR"] = losses.masked_expr_ce(out.expr, expr, gamma)
    if "VA" in tasks:
        parts["VA"] = losses.masked_ccc_loss(out.va, va)
    return sum(parts.values()), {k: float(v.detach()) for k, v in parts.items()}


def loss_step(model: nn.Module, batch: dict[str, Tensor], recipe: ABAWRecipe,
              tasks: tuple[str, ...] | None = None) -> tuple[Tensor, dict[str, float]]:
    """The masked multi-task loss of one batch of windows (images (B, T, C, H, W), labels (B, T, ...))."""
    out = _flat(model(batch["images"]))
    return task_loss(out, *_labels(batch), tasks or recipe.tasks, recipe.focal_gamma)


def _flat(out: ABAWOutput) -> ABAWOutput:
    return ABAWOutput(*(o.reshape(-1, o.shape[-1]) for o in out))


def _labels(batch: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    return batch["au"].reshape(-1, 12), batch["expr"].reshape(-1), batch["va"].reshape(-1, 2)


def missing_masks(au: Tensor, expr: Tensor, va: Tensor, include_unlabelled: bool = True) -> dict[str, Tensor]:
    """(N,) bool per task: frames WITHOUT that task's label (where a teacher may fill in)."""
    miss = {"AU": (au < 0).any(1), "EXPR": expr < 0, "VA": (va == -5).any(1)}
    if not include_unlabelled:
        has_any = ~(miss["AU"] & miss["EXPR"] & miss["VA"])
        miss = {k: v & has_any for k, v in miss.items()}
    return miss


def consistency(student: ABAWOutput, teacher: ABAWOutput, miss: dict[str, Tensor]) -> Tensor:
    """Mean-teacher consistency: MSE of sigmoid(AU), softmax(EXPR) and VA on the missing entries."""
    return (losses.masked_mse(torch.sigmoid(student.au), torch.sigmoid(teacher.au), miss["AU"])
            + losses.masked_mse(student.expr.softmax(-1), teacher.expr.softmax(-1), miss["EXPR"])
            + losses.masked_mse(student.va, teacher.va, miss["VA"]))


def distillation(student: ABAWOutput, teacher: ABAWOutput, miss: dict[str, Tensor], temperature: float) -> Tensor:
    """Soft-label loss on the missing entries: BCE(sigmoid teacher) + KL at T + MSE for VA."""
    return (losses.soft_au_bce(student.au[miss["AU"]], teacher.au[miss["AU"]])
            + losses.soft_expr_kl(student.expr[miss["EXPR"]], teacher.expr[miss["EXPR"]], temperature)
            + losses.masked_mse(student.va, teacher.va, miss["VA"]))


def rampup(epoch: float, epochs: int) -> float:
    """exp(-5 (1 - t)^2), t = min(1, epoch / epochs) (Laine & Aila 2017; Tarvainen & Valpola 2017)."""
    t = min(1.0, epoch / max(1, epochs))
    return math.exp(-5 * (1 - t) ** 2)


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, decay: float) -> None:
    """theta_T <- a theta_T + (1 - a) theta_S for parameters; buffers (BN statistics) copied."""
    for t, s in zip(teacher.parameters(), student.parameters()):
        t.mul_(decay).add_(s.detach(), alpha=1 - decay)
    for t, s in zip(teacher.buffers(), student.buffers()):
        t.copy_(s)


# --- clips with every label, and labels hidden at a controlled rate ------------------------------

def render_frames(seed: int, clip_ids: range | list[int], length: int = 16, size: int = 40,
                  difficulty: str = "lab"):
    """SynthFaces clips ``clip_ids`` of ``seed`` rendered at ``size`` px grey, EVERY label kept, as a
    :class:`fer_utils.data.clips.ClipFrames` (no file round trip: the experiments hide labels themselves
    with :func:`hide_labels`)."""
    from PIL import Image

    from fer_utils.data import clips

    cols: dict[str, list] = {"images": [], "au": [], "expr": [], "va": [], "video": [], "frame": []}
    names = []
    for v, c in enumerate(clip_ids):
        clip = clips.make_clip(seed, int(c), length, size, difficulty)
        names.append(f"clip{int(c):06d}")
        cols["images"] += [np.asarray(Image.fromarray(img).convert("L")) for img in clip["images"]]
        cols["au"].append(clip["au_presence"][:, clips.ABAW_AU_INDEX].astype(np.int64))
        cols["expr"].append(clip["label"].astype(np.int64))
        cols["va"].append(np.stack([clip["valence"], clip["arousal"]], 1).astype(np.float32))
        cols["video"].append(np.full(length, v))
        cols["frame"].append(np.arange(1, length + 1))
    return clips.ClipFrames(images=np.stack(cols["images"]), au=np.concatenate(cols["au"]),
                            expr=np.concatenate(cols["expr"]), va=np.concatenate(cols["va"]),
                            video=np.concatenate(cols["video"]), frame=np.concatenate(cols["frame"]), videos=names)


def hide_labels(frames, rate: float, seed: int):
    """A copy of ``frames`` where, for each task on its own, the labels of ``round(rate * videos)`` whole videos
    are replaced by the missing markers (-1 / -5), as Aff-Wild2 annotates each task on its own subset of videos.

    Video ``v`` is hidden for task ``t`` when its rank in a permutation drawn from ``(seed, t)`` is below the
    count: the masks are nested (what is hidden at 50% is hidden at 80% too) and every arm of one seed sees the
    same ones. At least one video per task keeps its labels."""
    from fer_utils.data import clips

    n_videos = len(frames.videos)
    hidden_count = min(int(round(rate * n_videos)), n_videos - 1)
    au, expr, va = frames.au.copy(), frames.expr.copy(), frames.va.copy()
    for k, task in enumerate(clips.TASKS):
        rank = np.random.default_rng([seed, 29, k]).permutation(n_videos)
        rows = np.isin(frames.video, np.flatnonzero(rank < hidden_count))
        if task == "AU":
            au[rows] = -1
        elif task == "EXPR":
            expr[rows] = -1
        else:
            va[rows] = -5.0
    return replace(frames, au=au, expr=expr, va=va)


# --- data on the windows, the batch plan, training ------------------------------------------------

@dataclass
class WindowData:
    """Tensors of one split: images (N, C, H, W) float, au (N, 12), expr (N,), va (N, 2) with the
    missing markers, and ``windows`` (W, T) frame indices of consecutive frames."""

    images: Tensor
    au: Tensor
    expr: Tensor
    va: Tensor
    windows: Tensor

    @classmethod
    def from_frames(cls, frames, window: int, normalize: str = "symmetric") -> "WindowData":
        """From a :class:`fer_utils.data.clips.ClipFrames` (any object with its fields)."""
        from fer_utils.data.convention import to_model_tensor

        return cls(to_model_tensor(frames.images, normalize), torch.as_tensor(frames.au),
                   torch.as_tensor(frames.expr), torch.as_tensor(frames.va),
                   torch.as_tensor(frames.windows(window)))

    def batch(self, rows: np.ndarray) -> dict[str, Tensor]:
        idx = self.windows[torch.as_tensor(rows)]                          # (B, T)
        return {"images": self.images[idx], "au": self.au[idx], "expr": self.expr[idx], "va": self.va[idx],
                "index": idx}

    def has_task(self) -> dict[str, np.ndarray]:
        """(W,) bool per task: windows with at least one frame labelled for it."""
        w = self.windows
        return {"AU": (self.au[w] >= 0).all(-1).any(1).numpy(), "EXPR": (self.expr[w] >= 0).any(1).numpy(),
                "VA": (self.va[w] != -5).all(-1).any(1).numpy()}


def batch_plan(data: WindowData, recipe: ABAWRecipe, seed: int) -> list[tuple[tuple[str, ...], np.ndarray]]:
    """(tasks, window rows) for every optimiser step; every schedule gets the same number of steps."""
    rng = np.random.default_rng([seed, 11])
    n, b = len(data.windows), recipe.batch_size
    per_epoch = math.ceil(n / b)
    pools = {t: np.flatnonzero(m) for t, m in data.has_task().items()}
    queues: dict[str, list[int]] = {t: [] for t in TASKS}

    def draw(task: str) -> np.ndarray:
        if len(queues[task]) < b:
            queues[task] += list(rng.permutation(pools[task]))
        rows, queues[task][:] = queues[task][:b], queues[task][b:]
        return np.asarray(rows)

    plan = []
    for epoch in range(recipe.epochs):
        if recipe.schedule == "mixed" or len(recipe.tasks) == 1:
            order = rng.permutation(n)
            plan += [(recipe.tasks, order[i * b:(i + 1) * b]) for i in range(per_epoch)]
        elif recipe.schedule == "alternate_batch":
            plan += [((t := recipe.tasks[(epoch * per_epoch + i) % len(recipe.tasks)],), draw(t))
                     for i in range(per_epoch)]
        elif recipe.schedule == "alternate_epoch":
            t = recipe.tasks[epoch % len(recipe.tasks)]
            plan += [((t,), draw(t)) for _ in range(per_epoch)]
        else:
            raise ValueError(f"schedule must be 'mixed', 'alternate_batch' or 'alternate_epoch', "
                             f"got {recipe.schedule!r}")
    return plan


def _extra_loss(model_out: ABAWOutput, batch: dict, recipe: ABAWRecipe, teacher: nn.Module | None,
                soft: ABAWOutput | None, epoch: float) -> Tensor:
    """Mean-teacher consistency or distillation term of one batch (0 when neither is on)."""
    au, expr, va = _labels(batch)
    if soft is not None:
        idx = batch["index"].reshape(-1)
        target = ABAWOutput(soft.au[idx], soft.expr[idx], soft.va[idx])
        return recipe.distill_weight * distillation(model_out, target, missing_masks(au, expr, va),
                                                    recipe.temperature)
    if teacher is None:
        return model_out.au.new_zeros(())
    with torch.no_grad():
        noisy = batch["images"] + recipe.student_noise * torch.randn_like(batch["images"])
        target = _flat(teacher(noisy))
    miss = missing_masks(au, expr, va, recipe.consistency_on_unlabelled)
    return recipe.consistency_weight * rampup(epoch, recipe.rampup_epochs) * consistency(model_out, target, miss)


def validation_loss(model: nn.Module, data: WindowData, tasks: tuple[str, ...] = TASKS) -> float:
    """The masked loss of ``tasks`` over every labelled frame of ``data`` (one value, the model in eval mode)."""
    pred = predict(model, data)
    rows = data.windows.reshape(-1)
    out = ABAWOutput(pred.au[rows], pred.expr[rows], pred.va[rows])
    with torch.no_grad():
        return float(task_loss(out, data.au[rows], data.expr[rows], data.va[rows], tasks)[0])


def train(model: nn.Module, data: WindowData, recipe: ABAWRecipe, seed: int = 0,
          soft_labels: ABAWOutput | None = None, progress=None, on_epoch=None, val: WindowData | None = None,
          stop: Plateau | None = None) -> dict:
    """Train ``model`` in place by ``batch_plan`` with :func:`fer_utils.train.fit`; returns
    {"seconds", "steps", "losses"} (``steps``: the planned steps at the epoch cap ``recipe.epochs``).

    ``val``: a labelled split whose masked loss (of ``recipe.tasks``, of the scored model: the EMA teacher when
    there is one) is recorded after every epoch as ``"val_loss"``; ``stop``: a :class:`fer_utils.train.Plateau`
    rule on it (the run ends at the plateau or at the cap; the result then holds ``"epochs_run"`` and
    ``"plateaued"``).

    ``soft_labels``: per-frame teacher outputs (distillation, L = (1 - w) L_GT + w L_soft);
    ``recipe.mean_teacher``: an EMA teacher is kept (updated after every step) and returned as
    ``"teacher"`` (it is the one scored); ``on_epoch(epoch, model)`` is called after every epoch
    (e.g. to score a validation split); ``progress``: a tqdm bar advanced once per step.
    """
    if stop is not None and val is None:
        raise ValueError("a plateau rule needs a validation split: pass val=")
    torch.manual_seed(seed)
    plan = batch_plan(data, recipe, seed)
    optimizer, scheduler = make_optimizer(model, recipe, len(plan))
    teacher = copy.deepcopy(model).requires_grad_(False) if recipe.mean_teacher else None
    gt_weight = 1 - recipe.distill_weight if soft_labels is not None else 1.0
    per_epoch, history, start = len(plan) // recipe.epochs, [], time.process_time()

    def batches(epoch: int):
        first = (epoch - 1) * per_epoch
        return ((tasks, rows, first + i) for i, (tasks, rows) in enumerate(plan[first:first + per_epoch]))

    def step(net: nn.Module, planned: tuple) -> tuple[Tensor, dict]:
        tasks, rows, index = planned
        batch = data.batch(rows)
        images = batch["images"]
        if teacher is not None:
            images = images + recipe.student_noise * torch.randn_like(images)
        out = _flat(net(images))
        loss, logs = task_loss(out, *_labels(batch), tasks, recipe.focal_gamma)
        return gt_weight * loss + _extra_loss(out, batch, recipe, teacher, soft_labels, index / per_epoch), logs

    def after_step(_step: int, _batch: tuple, loss: float, _logs: dict) -> None:
        scheduler.step()
        if teacher is not None:
            ema_update(teacher, model, recipe.ema_decay)
        history.append(loss)
        if progress is not None:
            progress.update(1)

    def after_epoch(epoch: int, fit_history: dict) -> None:
        scored = teacher if teacher is not None else model
        if val is not None:
            fit_history.setdefault("val_loss", []).append(validation_loss(scored, val, recipe.tasks))
        if on_epoch is not None:
            on_epoch(epoch, scored)
        scored.train()   # a mean teacher, like its student, keeps batch statistics during training
        model.train()

    record = fit(model, batches, recipe.epochs, optimizer, loss_step=step, steps_per_epoch=per_epoch,
                 progress=False, on_step=after_step, on_epoch=after_epoch, stop=stop)
    result = {"seconds": time.process_time() - start, "steps": len(plan), "losses": history}
    return _with_record(result, record, val is not None, stop is not None, teacher)


def _with_record(result: dict, record: dict, has_val: bool, has_stop: bool, teacher: nn.Module | None) -> dict:
    """:func:`train`'s result with what ``fit`` recorded: the validation losses, the epochs run and whether the run
    plateaued (when asked for), and the mean teacher in eval mode."""
    if has_val:
        result["val_loss"] = record["val_loss"]
    if has_stop:
        result["epochs_run"], result["plateaued"] = record["epochs_run"], record["plateaued"]
    if teacher is not None:
        result["teacher"] = teacher.eval()
    return result


@torch.inference_mode()
def predict(model: nn.Module, data: WindowData, windows_per_batch: int = 32) -> ABAWOutput:
    """Per-frame outputs (N, ...) for every frame of ``data`` that lies in a window (others stay 0)."""
    model.eval()
    n = len(data.images)
    au, expr, va = torch.zeros(n, 12), torch.zeros(n, 7), torch.zeros(n, 2)
    for i in range(0, len(data.windows), windows_per_batch):
        idx = data.windows[i:i + windows_per_batch]
        out = _flat(model(data.images[idx]))
        flat = idx.reshape(-1)
        au[flat], expr[flat], va[flat] = out.au, out.expr, out.va
    return ABAWOutput(au, expr, va)


def scores(pred: ABAWOutput, data: WindowData) -> dict[str, float]:
    """The ABAW2 scores on the frames labelled for each task (``fer_utils.metrics.abaw_*``).

    P_EXPR = 0.67 F1_macro + 0.33 acc, P_AU = 0.5 F1_avg + 0.5 acc_total, P_VA = (CCC_V + CCC_A) / 2 (the mean;
    one public codebase, wtomin's ``VA_metric``, returns the sum).
    """
    in_window = torch.zeros(len(data.images), dtype=torch.bool)
    in_window[data.windows.reshape(-1)] = True
    au_rows = ((data.au >= 0).all(1) & in_window).numpy()
    ex_rows = ((data.expr >= 0) & in_window).numpy()
    va_rows = ((data.va != -5).all(1) & in_window).numpy()
    au_true, au_prob = data.au.numpy()[au_rows], torch.sigmoid(pred.au).numpy()[au_rows]
    ex_true, ex_pred = data.expr.numpy()[ex_rows], pred.expr.argmax(1).numpy()[ex_rows]
    va_true, va_pred = data.va.numpy()[va_rows], pred.va.numpy()[va_rows]
    return {"P_AU": metrics.abaw_au_score(au_true, au_prob), "AU_F1": metrics.au_f1(au_true, au_prob),
            "P_EXPR": metrics.abaw_expr_score(ex_true, ex_pred), "EXPR_F1": metrics.macro_f1(ex_true, ex_pred, 7),
            "P_VA": metrics.abaw_va_score(va_true[:, 0], va_pred[:, 0], va_true[:, 1], va_pred[:, 1]),
            "CCC_V": metrics.ccc(va_true[:, 0], va_pred[:, 0]), "CCC_A": metrics.ccc(va_true[:, 1], va_pred[:, 1])}


def pretrain_backbone(model: ABAWNet, images: Tensor, labels: Tensor, epochs: int, lr: float, seed: int = 0,
                      batch_size: int = 64) -> dict:
    """Expression pre-training on still faces (as ABAW entries pre-train on AffectNet / VGG-FACE):
    cross-entropy through backbone -> embedding -> expression head; returns {"seconds", "train_accuracy"}
    (the last epoch's)."""
    torch.manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs * math.ceil(len(images) / batch_size))
    g, start = torch.Generator().manual_seed(seed), time.process_time()

    def step(net: ABAWNet, rows: Tensor) -> tuple[Tensor, dict]:
        logits = logits_of(net.heads(net.frame_features(images[rows])))
        return losses.masked_expr_ce(logits, labels[rows]), {"logits": logits.detach(), "labels": labels[rows]}

    history = fit(model, lambda _epoch: torch.randperm(len(images), generator=g).split(batch_size), epochs,
                  optimizer, loss_step=step, steps_per_epoch=math.ceil(len(images) / batch_size), progress=False,
                  on_step=lambda *_: scheduler.step())
    return {"seconds": time.process_time() - start, "train_accuracy": history["train_accuracy"][-1]}
