"""fer-train: DDP (torchrun, gloo) equals one process, resume equals no interruption, safe loading,
bad command lines fail at once.

The data is a tiny SynthFaces export in the RAF-DB layout (48 faces, 40 train / 8 test, 32x32 JPEGs)
written with ``write_rafdb`` and read back by ``read_rafdb``, as a real RAF-DB folder would be. RAF-DB has
no validation split: fer-train carves 4 faces (10%, stratified) out of train, trains on 36 and never
reads the test split.
The DDP comparison uses a tiny recipe written here (one conv, no BatchNorm): BatchNorm normalises
each process's half-batch by its own statistics, so a model with BatchNorm is not expected to
match the one-process run exactly (SyncBatchNorm fixes that, on CUDA only).
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from fer_utils.cli import checkpoint as ckpt
from fer_utils.cli import fer_train
from fer_utils.cli import train_loop

ROOT = Path(__file__).resolve().parents[1]

TINY_RECIPE = '''
"""A tiny recipe for fer-train's tests: one conv, no BatchNorm, SGD with momentum, StepLR, random flips."""
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from fer_utils.recipes import Recipe


@dataclass(frozen=True)
class TinyRecipe(Recipe):
    momentum: float = 0.9
    step_size: int = 1
    gamma: float = 0.5
    flip: bool = True


FULL = TinyRecipe(name="tiny", paper="none (test)", epochs=3, batch_size=8, lr=0.2, optimizer="sgd",
                  input_size=16, normalize="symmetric")


def build_model(recipe):
    return nn.Sequential(nn.Conv2d(recipe.channels, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                         nn.Flatten(), nn.Linear(24, recipe.num_classes))


def make_optimizer(model, recipe):
    opt = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum)
    return opt, torch.optim.lr_scheduler.StepLR(opt, recipe.step_size, recipe.gamma)


def loss_step(model, batch, recipe):
    x, y = batch
    return F.cross_entropy(model(x), y), {}


def train_transform(recipe):
    """uint8 (C, H, W) -> [-1, 1], flipped left-right with probability 0.5."""
    def transform(x):
        x = x.float() / 127.5 - 1.0
        return x.flip(-1) if recipe.flip and torch.rand(()) < 0.5 else x
    return transform
'''

#: One process vs two: the same float32 step, the gradients summed in another order.
DDP_TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """(RAF-DB root, recipe package folder on sys.path) shared by the tests of this module."""
    from fer_utils.data.formats import write_affectnet, write_rafdb
    from fer_utils.data.synthetic import SynthFaces

    base = tmp_path_factory.mktemp("fer_train")
    faces = SynthFaces(48, seed=0, size=64, with_masks=False)
    items = [dict(faces[i], split="train" if i < 40 else "test") for i in range(48)]
    write_rafdb(items, base / "rafdb", size=32, verbose=False)
    write_affectnet([dict(item, split="train" if item["split"] == "train" else "val") for item in items],
                    base / "affectnet", verbose=False)
    package = base / "pkg" / "fertest_recipes"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "tiny.py").write_text(textwrap.dedent(TINY_RECIPE))
    sys.path.insert(0, str(base / "pkg"))
    yield base / "rafdb", base / "pkg"
    sys.path.remove(str(base / "pkg"))


def args(env, out, *extra: str) -> list[str]:
    root, _ = env
    return ["fertest_recipes.tiny", "--dataset", "rafdb", "--data-root", str(root), "--out", str(out),
            "--no-progress", "--threads", "1", *extra] + ([] if "--profile" in extra else ["--profile", "full"])


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["model"]


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_torchrun_two_processes_match_one_process(env, tmp_path):
    _, pkg = env
    environ = dict(os.environ, GLOO_SOCKET_IFNAME="lo", OMP_NUM_THREADS="1",
                   PYTHONPATH=os.pathsep.join([str(pkg), str(ROOT), os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "fer_utils.cli.fer_train", *args(env, tmp_path / "ddp", "--set", "flip=False")]
    done = subprocess.run(cmd, env=environ, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "batch 8 (4 per process)" in done.stdout
    fer_train.main(args(env, tmp_path / "one", "--set", "flip=False"))

    two, one = metrics(tmp_path / "ddp"), metrics(tmp_path / "one")
    assert [m["world_size"] for m in two] == [2, 2, 2] and [m["world_size"] for m in one] == [1, 1, 1]
    # DDP kept both ranks' parameters identical after every epoch (checked by broadcasting rank 0's)
    assert [m["rank_param_max_diff"] for m in two] == [0.0, 0.0, 0.0]
    # every image once per epoch, summed over the two ranks; the validation shards cover the 4 carved faces
    assert {m["train_images"] for m in two} == {36} and {m["val_images"] for m in two} == {4}
    assert {m["val_split"] for m in two + one} == {"val carved out of train"}
    a, b = weights(tmp_path / "ddp" / "last.pt"), weights(tmp_path / "one" / "last.pt")
    start = fer_train.load_recipe_module("fertest_recipes.tiny").build_model(
        fer_train.resolve_recipe("fertest_recipes.tiny", "full")[1]).state_dict()
    assert max(float((a[k] - start[k]).abs().max()) for k in a) > 1e-2  # training moved the weights
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < DDP_TOLERANCE
    for x, y in zip(two, one):
        assert x["train_loss"] == pytest.approx(y["train_loss"], abs=1e-5)
        assert x["val_accuracy"] == y["val_accuracy"]


def test_resume_continues_exactly(env, tmp_path, monkeypatch):
    fer_train.main(args(env, tmp_path / "straight"))
    fer_train.main(args(env, tmp_path / "broken", "--stop-after", "1"))           # "interrupted" after epoch 1
    assert torch.load(tmp_path / "broken" / "last.pt", weights_only=True)["epoch"] == 1
    fer_train.main(args(env, tmp_path / "broken", "--resume", "auto"))
    straight, resumed = (torch.load(p / "last.pt", weights_only=True) for p in (tmp_path / "straight",
                                                                                  tmp_path / "broken"))
    assert resumed["epoch"] == straight["epoch"] == 3
    for k in straight["model"]:
        assert torch.equal(straight["model"][k], resumed["model"][k]), k
    assert resumed["scheduler"] == straight["scheduler"]
    assert [m["epoch"] for m in metrics(tmp_path / "broken")] == [1, 2, 3]
    assert metrics(tmp_path / "broken") [2]["train_loss"] == metrics(tmp_path / "straight")[2]["train_loss"]

    # the random flips depend on the restored generator states: without them the weights differ
    fer_train.main(args(env, tmp_path / "norng", "--stop-after", "1"))
    monkeypatch.setattr(ckpt, "set_rng_state", lambda state: None)
    fer_train.main(args(env, tmp_path / "norng", "--resume", "auto"))
    other = weights(tmp_path / "norng" / "last.pt")
    assert any(not torch.equal(other[k], straight["model"][k]) for k in other)


def test_resume_refuses_another_recipe_and_fresh_run_over_old(env, tmp_path):
    fer_train.main(args(env, tmp_path / "run", "--stop-after", "1"))
    with pytest.raises(ckpt.CheckpointError, match=r"lr: 0\.2 in the checkpoint, 0\.1 now"):
        fer_train.main(args(env, tmp_path / "run", "--resume", "auto", "--set", "lr=0.1"))
    with pytest.raises(fer_train.FerTrainError, match="already holds a run"):
        fer_train.main(args(env, tmp_path / "run"))
    with pytest.raises(ckpt.CheckpointError, match="written with --seed 0, this run has --seed 3"):
        fer_train.main(args(env, tmp_path / "run", "--resume", "auto", "--seed", "3"))


def test_seed_sets_the_data_order():
    """``--seed`` reaches the shuffling sampler: the same seed gives the same order, another seed another one."""
    ctx = train_loop.Context(rank=0, world=1, local_rank=0, device=torch.device("cpu"), amp_dtype=None, workers=0)
    train = list(range(50))

    def order(seed: int) -> list[int]:
        sampler = train_loop.train_sampler([], train, train, None, object(), ctx, seed)
        sampler.set_epoch(1)
        return list(sampler)
    assert order(4) == order(4) and sorted(order(4)) == train
    assert order(4) != order(5)


def test_epoch_sums_skip_tensor_logs_such_as_scns_logits():
    """Logs are summed as fit's history sums them (fer_utils.train.LossSums): numbers only, so SCN's loss step,
    which also logs its logits and attention weights, no longer fails float() on a tensor."""
    ctx = train_loop.Context(rank=0, world=1, local_rank=0, device=torch.device("cpu"), amp_dtype=None, workers=0)
    sums = train_loop.Sums()
    logs = {"ce": 1.0, "rr": 0.5, "logits": torch.zeros(2, 7), "alpha": torch.ones(2, 1)}
    sums.add(2.0, logs, torch.eye(7)[:2] * 5, torch.tensor([0, 1]))
    sums.add(5.0, {"ce": 4.0, "rr": 0.5}, torch.eye(7)[:1] * 5, torch.tensor([3]))
    assert sums.mean_loss() == 3.0
    assert sums.reduce(ctx, "train") == {"train_log_ce": 2.0, "train_log_rr": 0.5, "train_loss": 3.0,
                                         "train_accuracy": 2 / 3, "train_images": 3}

def test_pickled_checkpoint_is_refused(env, tmp_path):
    bad = tmp_path / "pickled.pt"
    torch.save({"format": ckpt.FORMAT, "epoch": 1, "model": torch.nn.Linear(2, 2)}, bad)
    with pytest.raises(ckpt.CheckpointError) as err:
        fer_train.main(args(env, tmp_path / "run", "--resume", str(bad)))
    text = str(err.value)
    assert str(bad) in text and "pickled" in text and "torch.nn.modules.linear.Linear" in text
    assert not (tmp_path / "run" / "last.pt").exists()
    (tmp_path / "notes.pt").write_text("epoch 3, loss 0.2\n")
    with pytest.raises(ckpt.CheckpointError, match=r"notes.pt: not a file torch.save writes .*18 bytes"):
        ckpt.load(tmp_path / "notes.pt")
    with pytest.raises(ckpt.CheckpointError, match="expected a 'fer-train/1' checkpoint"):
        torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
        ckpt.load(tmp_path / "other.pt")


@pytest.mark.parametrize("change, message", [
    ({0: "ddamfm"}, r"unknown recipe 'ddamfm'; available recipes: "),
    ({2: "rafbd"}, r"unknown dataset 'rafbd'; the readers are: .*rafdb"),
    ({4: "/no/such/folder"}, r"dataset 'rafdb' at /no/such/folder: data_root '/no/such/folder' does not exist"),
    ({"val": "test"}, r"--val-split test: fer-train keeps best.pt by its validation score, so validating on the "
                      r"test split would choose the checkpoint on the test set"),
    ({"set": "epochz=2"}, r"--set 'epochz=2': expected FIELD=VALUE with FIELD one of"),
    ({"set": "epochs=1.5"}, r"--set epochs=1.5: expected an integer >= 1 \(the recipe has \d+\)"),
    ({"set": "epochs=0"}, r"--set epochs=0: expected an integer >= 1"),
    ({"set": "lr=-0.1"}, r"--set lr=-0.1: expected a finite number >= 0"),
    ({"set": "lr=1e999"}, r"--set lr=1e999: expected a finite number"),
    ({"set": "lr=fast"}, r"--set lr=fast: 'fast' is not a Python literal"),
    ({"set": "flip=1"}, r"--set flip=1: expected True or False"),
])
def test_bad_command_line_fails_at_once(env, tmp_path, change, message, monkeypatch, capsys):
    argv = args(env, tmp_path / "run")
    for where, value in change.items():
        if where in ("set", "val"):
            argv += [f"--{where.replace('val', 'val-split')}", value]
        else:
            argv[where] = value
    with pytest.raises(fer_train.FerTrainError, match=message):
        fer_train.main(argv)
    assert not (tmp_path / "run").exists()  # nothing was started or written
    monkeypatch.setattr(sys, "argv", ["fer-train", *argv])
    with pytest.raises(SystemExit) as exit_:
        fer_train.cli()
    assert exit_.value.code == 2 and "fer-train: error:" in capsys.readouterr().err


def test_ddamfn_recipe_trains_and_prints_the_resolved_recipe(env, tmp_path, capsys):
    """The command on a real recipe (fer_utils.recipes.ddamfn, SMOKE: the course network), one epoch."""
    from fer_utils.recipes import ddamfn

    root, _ = env
    last = fer_train.main(["ddamfn", "--profile", "smoke", "--dataset", "rafdb", "--data-root", str(root),
                           "--out", str(tmp_path / "dd"), "--set", "epochs=1", "--no-progress", "--threads", "1"])
    shown = capsys.readouterr().out
    assert "recipe fer_utils.recipes.ddamfn.DDAMFNRecipe (profile smoke):" in shown
    for field in ("lr", "batch_size", "normalize", "config"):  # every field is printed with its value
        assert f"= {getattr(ddamfn.SMOKE, field)!r}" in shown
    assert "epochs           = 1   (--set)" in shown
    assert last["epoch"] == 1 and last["train_images"] == 36 and last["val_images"] == 4
    data = json.loads((tmp_path / "dd" / "recipe.json").read_text())["data"]
    assert (data["train_images"], data["val_images"], data["val_split"]) == (36, 4, "val carved out of train")
    assert math.isfinite(last["train_loss"]) and 0.0 <= last["val_accuracy"] <= 1.0
    saved = ckpt.load(tmp_path / "dd" / "best.pt")
    assert saved["recipe"]["fields"] == {**ckpt.recipe_to_dict(ddamfn.SMOKE, "smoke")["fields"], "epochs": 1}
    assert set(saved["model"]) == set(ddamfn.build_model(ddamfn.SMOKE).state_dict())  # no "module." prefixes


def test_two_stage_recipe_runs_stage_by_stage(env, tmp_path):
    """two_level: --stage expression (labels), then --stage va from its weights ((valence, arousal) targets)."""
    root = env[0].parent / "affectnet"
    common = ["two_level", "--profile", "smoke", "--dataset", "affectnet", "--data-root", str(root),
              "--set", "epochs=1", "--no-progress", "--threads", "1"]
    first = fer_train.main([*common, "--out", str(tmp_path / "s1"), "--stage", "expression"])
    assert "train_accuracy" in first and first["val_images"] == 4   # AffectNet's official val is its test set
    second = fer_train.main([*common, "--out", str(tmp_path / "s2"), "--stage", "va",
                             "--init", str(tmp_path / "s1" / "best.pt")])
    assert "train_accuracy" not in second and math.isfinite(second["val_loss"])  # regression: no accuracy
    with pytest.raises(fer_train.FerTrainError, match="loss_step takes no stage"):
        fer_train.main(args(env, tmp_path / "x", "--stage", "va"))


def test_two_level_expression_reports_the_accuracy_of_its_best_checkpoint(env, tmp_path):
    """Regression: fer-train scored the two-level network by its first output field (valence-arousal).
    The validation accuracy in best.pt's metrics equals an evaluation of best.pt written here, on the
    carved validation faces; the test faces are never among them."""
    from fer_utils.data import sources
    from fer_utils.data.convention import to_model_tensor
    from fer_utils.data.datasets import adapt_image
    from fer_utils.data.formats import FormatDataset
    from fer_utils.models import logits_of
    from fer_utils.recipes import two_level

    root, _ = env
    fer_train.main(["two_level", "--profile", "smoke", "--dataset", "rafdb", "--data-root", str(root), "--out",
                    str(tmp_path / "tl"), "--stage", "expression", "--set", "epochs=2", "--no-progress",
                    "--threads", "1"])
    saved = ckpt.load(tmp_path / "tl" / "best.pt")
    recipe = two_level.SMOKE
    model = two_level.build_model(recipe)
    model.load_state_dict(saved["model"])
    source = sources.open_dataset("rafdb", str(root), accepted=("rafdb",), profile="smoke", seed=0,
                                  carve=("val",), verbose=False)
    items = FormatDataset(source.samples)
    val = [int(i) for i in source.splits["val"]]
    assert set(val).isdisjoint(int(i) for i in source.splits["test"]) and len(val) == 4
    x = torch.cat([to_model_tensor(adapt_image(items[i]["image"], recipe.input_size, grayscale=True)[None],
                                   recipe.normalize) for i in val])
    with torch.no_grad():
        predicted = logits_of(model.eval()(x)).argmax(1)
    labels = torch.tensor([int(items[i]["label"]) for i in val])
    assert saved["metrics"]["val_accuracy"] == pytest.approx(float((predicted == labels).float().mean()))
