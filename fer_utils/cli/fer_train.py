"""``fer-train``: a paper's full recipe on a real dataset, resumable, in one process or under torchrun.

::

    fer-train ddamfn --dataset rafdb --data-root ~/data/RAF-DB/basic --out runs/ddamfn-rafdb
    torchrun --standalone --nproc_per_node=4 -m fer_utils.cli.fer_train ddamfn --dataset rafdb ...
    fer-train ddamfn ... --resume auto          # continue from runs/ddamfn-rafdb/last.pt

The recipe (``fer_utils.recipes.<name>``; ``--profile full|course|smoke`` picks ``FULL`` /
``COURSE`` / ``SMOKE``) supplies the hyper-parameters, ``build_model``, ``make_optimizer`` and
``loss_step``: the same objects the notebooks' ``full`` profile uses, so nothing here repeats a
paper's numbers. A dotted name (``mypkg.my_recipe``) loads your own module that follows the same
contract. ``recipe.batch_size`` is the GLOBAL batch: with N processes each one takes
batch_size / N, DDP averages the gradients, and the step is the one-process step on the same
images (``DistributedSampler`` deals every global batch across the ranks in order).

Per epoch: ``DistributedSampler.set_epoch``, training (tqdm on rank 0), the scheduler's step,
validation on a disjoint shard per rank, metrics summed over ranks, one JSON line in
``metrics.jsonl`` and ``last.pt`` / ``best.pt`` (rank 0 writes; see :mod:`.checkpoint`).

Fast by default, same math: ``channels_last`` memory format; ``--compile`` for long runs
(torch.compile takes minutes to compile); on CUDA, AMP (bfloat16 where supported, else float16
with a GradScaler), pinned memory and loader workers. On CPU the backend is gloo, on CUDA nccl.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import importlib
import inspect
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.distributed as dist
from torch import nn

from fer_utils.cli import checkpoint as ckpt
from fer_utils.profiles import recipe_for
from fer_utils.utils import PROFILE_NAMES, resolve_profile, seed_everything
from fer_utils.cli.train_loop import (Context, FerTrainError, Steps, evaluate, gather_rng, make_loaders,
                                        setup, sync_and_compare, to_device, train_epoch, wrap)



# ----------------------------------------------------------------------------------------------
# Recipe
# ----------------------------------------------------------------------------------------------

def load_recipe_module(name: str):
    """``fer_utils.recipes.get(name)``, or any importable module for a dotted ``name``."""
    from fer_utils import recipes

    if "." in name:
        try:
            return importlib.import_module(name)
        except ImportError as err:
            raise FerTrainError(f"recipe module {name!r} could not be imported: {err}") from None
    try:
        return recipes.get(name)
    except ValueError as err:
        raise FerTrainError(str(err)) from None


#: recipe fields that count something: an override must be at least 1
COUNT_FIELDS = ("epochs", "batch_size", "input_size", "channels", "num_classes")


def _parse_value(key: str, text: str, current: Any) -> Any:
    """``--set key=text`` as a value of ``current``'s type: a bool, an integer, a finite number (>= 0 when the
    recipe's value is), a tuple (from a list or tuple) or, for a text field, the text itself."""
    if isinstance(current, str):
        return text
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise FerTrainError(f"--set {key}={text}: {text!r} is not a Python literal") from None
    kind = type(current).__name__
    if isinstance(current, bool):
        ok, kind = isinstance(value, bool), "True or False"
    elif isinstance(current, int):
        ok = isinstance(value, int) and not isinstance(value, bool) and (current < 0 or value >= (key in COUNT_FIELDS))
        kind = f"an integer >= {int(key in COUNT_FIELDS)}" if current >= 0 else "an integer"
    elif isinstance(current, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        ok, kind = ok and (current < 0 or value >= 0), "a finite number" + (" >= 0" if current >= 0 else "")
        value = float(value) if ok else value
    elif isinstance(current, tuple):
        ok, value = isinstance(value, (list, tuple)), tuple(value) if isinstance(value, list) else value
    else:
        ok = True
    if not ok:
        raise FerTrainError(f"--set {key}={text}: expected {kind} (the recipe has {current!r})")
    return value


def resolve_recipe(name: str, profile: str, overrides: Sequence[str] = ()) -> tuple[Any, Any, dict]:
    """(recipe module, recipe, {field: value} overridden by ``--set field=value``)."""
    module = load_recipe_module(name)
    try:
        recipe = recipe_for(module, profile)
    except AttributeError:
        have = [p for p in PROFILE_NAMES if hasattr(module, p.upper())]
        raise FerTrainError(f"recipe {name!r} has no {profile.upper()} recipe (profile {profile!r}); it has: {have}"
                            ) from None
    for hook in ("build_model", "make_optimizer", "loss_step"):
        if not callable(getattr(module, hook, None)):
            raise FerTrainError(f"recipe module {module.__name__} lacks {hook}(); see fer_utils.recipes")
    fields = {f.name: f for f in dataclasses.fields(recipe)}
    changes: dict[str, Any] = {}
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or key not in fields:
            raise FerTrainError(f"--set {item!r}: expected FIELD=VALUE with FIELD one of {sorted(fields)}")
        changes[key] = _parse_value(key, text, getattr(recipe, key))
    return module, dataclasses.replace(recipe, **changes), changes


def describe_recipe(recipe: Any, profile: str, changes: dict) -> str:
    """The resolved recipe, one field per line; overridden fields are marked."""
    cls = type(recipe)
    lines = [f"recipe {cls.__module__}.{cls.__qualname__} (profile {profile}):"]
    width = max(len(f.name) for f in dataclasses.fields(recipe))
    for f in dataclasses.fields(recipe):
        mark = "   (--set)" if f.name in changes else ""
        lines.append(f"  {f.name:<{width}} = {getattr(recipe, f.name)!r}{mark}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# Data: any reader in fer_utils.data.formats
# ----------------------------------------------------------------------------------------------

def open_data(name: str, root: str | os.PathLike, recipe: Any, profile: str, target: str, seed: int,
              val_split: str) -> Any:
    """The dataset through :func:`fer_utils.data.sources.open_dataset` (one registry of datasets and layouts):
    its own train / val splits, a validation split carved out of train when it has none (by subject or
    video where the format has them, else stratified by class; seeded by ``--seed``), sized by the profile,
    samples without the target dropped and counted in ``source.notes``.

    The test split is never read for model selection: ``--val-split test`` is refused.
    """
    from fer_utils.data import sources
    from fer_utils.data.formats import FormatError

    if val_split == "test":
        raise FerTrainError("--val-split test: fer-train keeps best.pt by its validation score, so validating on "
                            "the test split would choose the checkpoint on the test set and the test score would "
                            "no longer be an unbiased estimate. Use --val-split auto (the dataset's validation "
                            "split, or one carved out of train) and evaluate best.pt on test once, at the end")
    if val_split not in ("auto", "val"):
        raise FerTrainError(f"--val-split {val_split!r}: expected auto or val")
    if name not in sources.DATASETS:
        raise FerTrainError(f"unknown dataset {name!r}; the readers are: {', '.join(sorted(sources.DATASETS))}")
    require = ("valence", "arousal") if target == "va" else ()
    try:
        return sources.open_dataset(name, str(root), accepted=(name,), profile=profile, seed=seed,
                                    num_classes=recipe.num_classes, require=require, carve=("val",), verbose=False)
    except (FormatError, OSError, ValueError) as err:
        raise FerTrainError(f"dataset {name!r} at {root}: {err}") from None


def describe_split(source: Any) -> dict[str, Any]:
    """What was trained and validated on: sizes, how the validation split was made, the skipped counts."""
    carved = [n for n in source.notes if n.startswith("val:")]
    return {"dataset": source.name, "layout": source.layout, "train_images": len(source.splits["train"]),
            "val_split": "val carved out of train" if carved else "val (the dataset's own)",
            "val_images": len(source.splits["val"]), "notes": list(source.notes)}


def recipe_steps(module: Any, recipe: Any, stage: str | None) -> Steps:
    """The module's hooks; ``--stage`` is passed to ``loss_step(..., stage=...)`` (two-stage recipes)."""
    loss_step = module.loss_step
    if stage is not None:
        if "stage" not in inspect.signature(module.loss_step).parameters:
            raise FerTrainError(f"--stage {stage}: {module.__name__}.loss_step takes no stage")
        loss_step = functools.partial(module.loss_step, stage=stage)
    target = "va" if stage == "va" or recipe.task == "va" else "label"
    transform = getattr(module, "train_transform", None)
    return Steps(module.__name__, loss_step, transform if callable(transform) else None, target)


# ----------------------------------------------------------------------------------------------
# Resuming
# ----------------------------------------------------------------------------------------------

def check_resumed_recipe(saved: dict, recipe: Any, profile: str, path: Path) -> None:
    """The command line must resolve to the checkpoint's recipe (``epochs`` may be raised)."""
    now = ckpt.recipe_to_dict(recipe, profile)
    if (saved["module"], saved["class"]) != (now["module"], now["class"]):
        raise ckpt.CheckpointError(f"checkpoint {path} was written by recipe {saved['module']}.{saved['class']}, "
                                   f"not {now['module']}.{now['class']}")
    differ = sorted(k for k in set(saved["fields"]) | set(now["fields"])
                    if k != "epochs" and saved["fields"].get(k) != now["fields"].get(k))
    if differ:
        detail = ", ".join(f"{k}: {saved['fields'].get(k)!r} in the checkpoint, {now['fields'].get(k)!r} now"
                           for k in differ)
        raise ckpt.CheckpointError(f"checkpoint {path}: the recipe differs ({detail}); resume with the same "
                                   "--profile and --set as the run that wrote it")


def restore(path: Path, model: nn.Module, optimizer: Any, scheduler: Any, scaler: Any, ctx: Context,
            recipe: Any, profile: str, seed: int) -> tuple[int, dict]:
    """Load ``path`` into the training objects; returns (epochs done, best {"metric", "value"}). The run's
    ``--seed`` must be the checkpoint's (it fixes the split and the data order)."""
    data = ckpt.load(path)  # on the CPU: load_state_dict copies to the model's device
    check_resumed_recipe(data["recipe"], recipe, profile, path)
    if data.get("seed", seed) != seed:
        raise ckpt.CheckpointError(f"checkpoint {path} was written with --seed {data['seed']}, this run has "
                                   f"--seed {seed}: resume with the same seed (it fixes the split and data order)")
    model.load_state_dict(data["model"])
    optimizer.load_state_dict(data["optimizer"])
    if scheduler is not None and data.get("scheduler") is not None:
        scheduler.load_state_dict(data["scheduler"])
    if scaler is not None and data.get("scaler") is not None:
        scaler.load_state_dict(data["scaler"])
    states = data["rng"]
    if len(states) != ctx.world and ctx.main:
        print(f"note: {path} was written by {len(states)} process(es), this run has {ctx.world}: "
              "the data order continues, the random augmentations do not repeat bit for bit")
    ckpt.set_rng_state(states[ctx.rank % len(states)])
    return int(data["epoch"]), dict(data.get("best") or {})


def keep_metrics_until(path: Path, epoch: int) -> None:
    """Drop metrics lines of epochs after ``epoch`` (written after the checkpoint resumed from)."""
    if path.is_file():
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        path.write_text("".join(line + "\n" for line in lines if json.loads(line)["epoch"] <= epoch))


def is_better(metric: str, value: float, best: float | None) -> bool:
    if best is None:
        return True
    return value > best if metric.endswith("accuracy") else value < best


# ----------------------------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Plan:
    """What the command line resolved to, before any process group or model exists."""

    module: Any
    recipe: Any
    changes: dict
    steps: Steps
    resume: Path | None
    source: Any

    @property
    def train_idx(self) -> list[int]:
        return [int(i) for i in self.source.splits["train"]]

    @property
    def val_idx(self) -> list[int]:
        return [int(i) for i in self.source.splits["val"]]


def prepare(args: argparse.Namespace) -> Plan:
    """Everything that can fail on a bad command line, checked before a process group starts."""
    module, recipe, changes = resolve_recipe(args.recipe, args.profile, args.set or [])
    steps = recipe_steps(module, recipe, args.stage)
    resume = None
    if args.resume:
        resume = Path(args.out) / "last.pt" if args.resume == "auto" else Path(args.resume)
        if args.resume != "auto" and not resume.is_file():
            raise FerTrainError(f"--resume {resume}: no such checkpoint")
        resume = resume if resume.is_file() else None
    if resume is None and (Path(args.out) / "last.pt").exists():
        raise FerTrainError(f"--out {args.out} already holds a run (last.pt): pass --resume auto to continue it "
                            "or choose another --out")
    if args.init and not Path(args.init).is_file():
        raise FerTrainError(f"--init {args.init}: no such checkpoint")
    source = open_data(args.dataset, args.data_root, recipe, args.profile, steps.target, args.seed, args.val_split)
    if not len(source.splits["train"]):
        raise FerTrainError(f"the dataset has no usable training samples ({'; '.join(source.notes) or 'none read'})")
    return Plan(module, recipe, changes, steps, resume, source)


def _announce(ctx: Context, args: argparse.Namespace, plan: Plan, channels_last: bool) -> None:
    if not ctx.main:
        return
    recipe = plan.recipe
    print(describe_recipe(recipe, args.profile, plan.changes))
    split = describe_split(plan.source)
    print(f"data: {args.dataset} ({split['layout']}) at {args.data_root}: train {split['train_images']:,} images, "
          f"validation {split['val_images']:,} ({split['val_split']}), target {plan.steps.target}; "
          "the test split is not used")
    for note in split["notes"]:
        print(f"  {note}")
    amp = str(ctx.amp_dtype).replace("torch.", "") if ctx.amp_dtype else "off"
    print(f"run: {ctx.world} process(es) on {ctx.device.type}, batch {recipe.batch_size} "
          f"({recipe.batch_size // ctx.world} per process), AMP {amp}, channels_last "
          f"{'on' if channels_last else 'off'}, compile {'on' if args.compile else 'off'}, "
          f"loader workers {ctx.workers}" + (f", stage {args.stage}" if args.stage else "") + f", out {args.out}")


def build(plan: Plan, args: argparse.Namespace, ctx: Context, channels_last: bool) -> tuple:
    """Model (optionally from ``--init``), optimiser, scheduler, GradScaler, loaders, wrapped model."""
    recipe = plan.recipe
    seed_everything(args.seed, deterministic=args.deterministic)
    model = plan.module.build_model(recipe)
    if args.init:
        model.load_state_dict(ckpt.load_weights(args.init))
        if ctx.main:
            print(f"model weights from {args.init}")
    if args.sync_bn and ctx.world > 1 and ctx.device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = model.to(ctx.device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    optimizer, scheduler = plan.module.make_optimizer(model, recipe)
    scaler = torch.amp.GradScaler("cuda") if ctx.amp_dtype == torch.float16 else None
    loaders = make_loaders(plan.source.samples, plan.train_idx, plan.val_idx, plan.steps, recipe, ctx, args.seed)
    net = wrap(model, ctx, plan.steps, lambda: to_device(*next(iter(loaders[0])), ctx, channels_last), recipe)
    net = torch.compile(net) if args.compile else net
    return model, optimizer, scheduler, scaler, loaders, net


def run(args: argparse.Namespace) -> dict | None:
    """Train as the command line says; returns the last epoch's metrics (None if nothing ran)."""
    plan = prepare(args)
    recipe = plan.recipe
    if args.threads:
        torch.set_num_threads(args.threads)
    ctx = setup(args.device, not args.no_amp, args.workers)
    if args.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    channels_last = not args.no_channels_last
    _announce(ctx, args, plan, channels_last)
    model, optimizer, scheduler, scaler, loaders, net = build(plan, args, ctx, channels_last)
    seed_everything(args.seed + ctx.rank, deterministic=args.deterministic)
    done, best = 0, {"metric": None, "value": None}
    if plan.resume is not None:
        done, best = restore(plan.resume, model, optimizer, scheduler, scaler, ctx, recipe, args.profile,
                              args.seed)
    out = Path(args.out)
    if ctx.main:
        out.mkdir(parents=True, exist_ok=True)
        if plan.resume is not None:
            print(f"resumed from {plan.resume}: {done} epoch(s) done")
            keep_metrics_until(out / "metrics.jsonl", done)
        record = {**ckpt.recipe_to_dict(recipe, args.profile), "data": describe_split(plan.source)}
        (out / "recipe.json").write_text(json.dumps(record, indent=2) + "\n")
    last = None
    stop = recipe.epochs if args.stop_after is None else min(recipe.epochs, done + args.stop_after)
    for epoch in range(done + 1, stop + 1):
        last, best = one_epoch(epoch, net, model, plan, optimizer, scheduler, scaler, ctx, loaders, channels_last,
                               best, args)
    if ctx.world > 1:
        dist.barrier()
    return last


def one_epoch(epoch: int, net, model, plan: Plan, optimizer, scheduler, scaler, ctx: Context,
              loaders: tuple, channels_last: bool, best: dict, args) -> tuple[dict, dict]:
    """Train, validate, reduce, log one JSON line and write last.pt / best.pt (rank 0)."""
    steps, recipe = plan.steps, plan.recipe
    train_loader, val_loader, sampler = loaders
    sampler.set_epoch(epoch)
    start = time.perf_counter()
    lr = optimizer.param_groups[0]["lr"]
    metrics: dict[str, Any] = {"epoch": epoch, "lr": lr}
    metrics.update(train_epoch(net, train_loader, steps, recipe, optimizer, scaler, ctx, channels_last,
                               epoch, not args.no_progress))
    train_s = time.perf_counter() - start
    if scheduler is not None:
        scheduler.step()
    metrics["rank_param_max_diff"] = sync_and_compare(model, ctx)
    if val_loader is not None:
        metrics.update(evaluate(model, val_loader, steps, recipe, ctx, channels_last))
    metrics.update(train_s=round(train_s, 3), epoch_s=round(time.perf_counter() - start, 3),
                   images_per_s=round(metrics["train_images"] / train_s, 2), world_size=ctx.world,
                   val_split=describe_split(plan.source)["val_split"])
    name = next(k for k in ("val_accuracy", "val_loss", "train_loss") if k in metrics)
    improved = is_better(name, metrics[name], best.get("value") if best.get("metric") == name else None)
    if improved:
        best = {"metric": name, "value": metrics[name], "epoch": epoch}
    states = gather_rng(ctx)
    if ctx.main:
        state = {"epoch": epoch, "recipe": ckpt.recipe_to_dict(recipe, args.profile), "model": model.state_dict(),
                 "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict() if scheduler else None,
                 "scaler": scaler.state_dict() if scaler else None, "rng": states, "best": best,
                 "world_size": ctx.world, "metrics": metrics, "seed": args.seed}
        out = Path(args.out)
        ckpt.save(out / "last.pt", state)
        if improved:
            ckpt.save(out / "best.pt", state)
        with open(out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(metrics) + "\n")
        shown = {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()
                 if k in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "epoch_s")}
        print(f"epoch {epoch}/{recipe.epochs}: " + ", ".join(f"{k} {v}" for k, v in shown.items())
              + (f"  (best {name})" if improved else ""), flush=True)
    return metrics, best


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------

def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fer-train", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Multi-GPU / multi-node: torchrun ... -m fer_utils.cli.fer_train ...")
    p.add_argument("recipe", help="a recipe in fer_utils.recipes (e.g. ddamfn) or a dotted module of your own")
    p.add_argument("--dataset", required=True, help="a reader in fer_utils.data.formats (e.g. rafdb, affectnet)")
    p.add_argument("--data-root", required=True, help="the dataset's folder (or file) as its reader expects")
    p.add_argument("--out", required=True, help="run folder: metrics.jsonl, last.pt, best.pt, recipe.json")
    p.add_argument("--profile", choices=PROFILE_NAMES, help="the recipe's SMOKE, COURSE or FULL (default: "
                   "$FER_PROFILE if set, else full)")
    p.add_argument("--set", nargs="*", metavar="FIELD=VALUE", help="override recipe fields, e.g. epochs=2")
    p.add_argument("--val-split", default="auto", help="auto (= val): the dataset's validation split, or one carved "
                   "out of train (seeded by --seed) when it has none; 'test' is refused (never select on test)")
    p.add_argument("--resume", metavar="PATH|auto", help="continue from a checkpoint (auto: OUT/last.pt if any)")
    p.add_argument("--stage", help="passed to the recipe's loss_step (two-stage recipes, e.g. two_level: "
                   "expression, then va)")
    p.add_argument("--init", metavar="PATH", help="start from these model weights (a fer-train checkpoint or a "
                   "saved state dict)")
    p.add_argument("--stop-after", type=int, metavar="N", help="train at most N epochs in this invocation")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--workers", type=int, help="loader workers per process (default: 0 on CPU, up to 8 on CUDA)")
    p.add_argument("--threads", type=int, help="torch CPU threads per process")
    p.add_argument("--seed", type=int, default=0, help="seeds the initial weights, the validation split and the data "
                   "order (a resumed run must keep it)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (minutes to compile)")
    p.add_argument("--no-channels-last", action="store_true", help="keep the default contiguous memory format")
    p.add_argument("--no-amp", action="store_true", help="CUDA: train in float32")
    p.add_argument("--sync-bn", action=argparse.BooleanOptionalAction, default=True,
                   help="CUDA, several processes: SyncBatchNorm (BatchNorm over the global batch)")
    p.add_argument("--deterministic", action="store_true", help="torch deterministic algorithms (slower on CUDA)")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    return p


def main(argv: Sequence[str] | None = None) -> dict | None:
    """Parse ``argv``, train, and return the last epoch's metrics. Errors in the command line
    (recipe, dataset, path, checkpoint) raise FerTrainError / CheckpointError naming the culprit."""
    args = parser().parse_args(argv)
    args.profile = args.profile or resolve_profile(None, default="full")   # resolved once, here
    try:
        return run(args)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def cli() -> None:
    """The ``fer-train`` console script: a bad command line exits with status 2 and one message."""
    try:
        main()
    except (FerTrainError, ckpt.CheckpointError) as err:
        print(f"fer-train: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    cli()
