"""fer_utils.experiments: the grid's shape and order, paired data, the cache and its key, the same numbers with 1 or
2 workers, errors that name the run, refused results.

Every run is a few SGD steps of a linear model on 32 random points (milliseconds). Calls are counted with one
empty file per call (``note``), so that calls made in worker processes are counted too.
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from fer_utils import experiments
from fer_utils.experiments import CacheKeyError, RunError, key_fields, run_grid
from fer_utils.train import fit

ARMS = {"slow": {"lr": 0.01}, "fast": {"lr": 0.1}}  # not in alphabetical order: the table keeps this one
DOSES = [0.5, 0.0]
SEEDS = [3, 1]
STEPS = 10  # a global that run_fn names: its value is part of the key
PRODUCED = ["loss", "bias", "data_sum", "steps", "converged", "optimizer"]


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cache and the call counts in a fresh folder; no failure asked for."""
    monkeypatch.setenv("FER_EXPERIMENTS_DIR", str(tmp_path / "experiments"))
    monkeypatch.setenv("FER_TEST_CALLS", str(tmp_path / "calls"))
    monkeypatch.delenv("FER_TEST_FAIL", raising=False)
    (tmp_path / "calls").mkdir()


def note(kind: str, *parts: object) -> None:
    """Count one call: an empty file, unique even when two processes call at once."""
    fd, _ = tempfile.mkstemp(prefix=f"{kind}={'_'.join(map(str, parts))}=", dir=os.environ["FER_TEST_CALLS"])
    os.close(fd)


def calls(kind: str) -> list[str]:
    """The calls of one kind so far, as ``part_part_...`` strings, sorted."""
    return sorted(p.name.split("=")[1] for p in Path(os.environ["FER_TEST_CALLS"]).glob(f"{kind}=*"))


def data_fn(dose: float, seed: int) -> dict:
    """32 noisy points of a linear function; the global RNG, seeded by the engine from ``seed``."""
    note("data", dose, seed)
    x = torch.randn(32, 4)
    return {"x": x, "y": x @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + dose * torch.randn(32)}


def sgd(lr: float, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.nn.Linear, torch.Tensor]:
    """``STEPS`` SGD steps of a freshly initialised linear model (its initial weights drawn from the global RNG)."""
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    for _ in range(STEPS):
        optimizer.zero_grad()
        loss = ((model(x).squeeze(1) - y) ** 2).mean()
        loss.backward()
        optimizer.step()
    return model, loss.detach()


def run_fn(arm: dict, dose: float, seed: int, data: dict) -> dict:
    """Train on a (dose, seed)'s data (then spoil this run's copy); fails where ``FER_TEST_FAIL`` says."""
    note("run", arm["lr"], dose, seed)
    if os.environ.get("FER_TEST_FAIL") == f"{arm['lr']}/{dose}/{seed}":
        raise ValueError("asked to fail")
    data_sum = float(data["x"].sum() + data["y"].sum())
    data["x"].add_(100.0)  # in place: must not reach another arm
    model, loss = sgd(arm["lr"], data["x"] - 100.0, data["y"])
    return {"loss": float(loss), "bias": model.bias.detach()[0], "data_sum": data_sum, "steps": STEPS,
            "converged": bool(loss < 1.0), "optimizer": "sgd"}


def grid(**kwargs) -> pd.DataFrame:
    """The test grid (in this process, no bar, unless ``kwargs`` say otherwise)."""
    options = {"data_fn": data_fn, "workers": 1, "progress": False, **kwargs}
    return run_grid(options.pop("run_fn", run_fn), options.pop("arms", ARMS), DOSES, SEEDS, **options)


def test_the_table_has_one_row_per_run_in_the_order_given():
    df = grid()
    assert list(df.columns) == ["arm", "dose", "seed", "lr", *PRODUCED, "seconds", "cached"]
    assert list(zip(df.arm, df.dose, df.seed)) == [(a, d, s) for a in ARMS for d in DOSES for s in SEEDS]
    assert list(df.lr) == [ARMS[a]["lr"] for a in df.arm]
    assert df.cached.dtype == bool and not df.cached.any() and (df.seconds > 0).all()
    assert df.steps.tolist() == [STEPS] * 8 and set(df.optimizer) == {"sgd"} and df.converged.dtype == bool
    assert isinstance(df.bias[0], float)  # a 0-d tensor came back as a float


@pytest.mark.parametrize("workers", [1, 2])
def test_data_are_rendered_once_per_dose_and_seed_and_shared_by_every_arm(workers):
    df = grid(workers=workers)
    assert calls("data") == sorted(f"{d}_{s}" for d in DOSES for s in SEEDS)
    per_pair = df.groupby(["dose", "seed"]).data_sum
    assert (per_pair.nunique() == 1).all()  # the same data for both arms, though each run changed its copy
    assert per_pair.first().nunique() == len(DOSES) * len(SEEDS)  # other data at another (dose, seed)


def test_a_rerun_computes_nothing_and_a_changed_arm_recomputes_only_its_runs():
    first = grid(workers=2)
    assert len(calls("run")) == 8
    again = grid(workers=2)
    assert len(calls("run")) == 8 and len(calls("data")) == 4 and again.cached.all()
    pd.testing.assert_frame_equal(again.drop(columns="cached"), first.drop(columns="cached"))
    changed = grid(workers=2, arms={"slow": {"lr": 0.02}, "fast": {"lr": 0.1}})
    assert [c for c in calls("run") if c.startswith("0.02_")] == sorted(f"0.02_{d}_{s}" for d in DOSES for s in SEEDS)
    assert len(calls("run")) == 12 and changed.cached.tolist() == [False] * 4 + [True] * 4
    renamed = grid(arms={"SLOW": {"lr": 0.02}, "fast": {"lr": 0.1}})  # the name is not in the key
    assert renamed.cached.all() and len(calls("run")) == 12
    recomputed = grid(cache=False)
    assert len(calls("run")) == 20 and not recomputed.cached.any()


def test_the_key_covers_code_version_sources_globals_and_package_files(monkeypatch):
    def key(fn=run_fn, **kwargs):
        return experiments.run_key(key_fields(fn, {"lr": 0.1}, 0.5, 3, data_fn=data_fn, **kwargs))

    base = key()
    assert key(code_version="v2") != base and key(track_package=None) == base  # no fer_utils code named here
    monkeypatch.setattr(sys.modules[__name__], "STEPS", 11)  # a JSON global run_fn's helper names
    assert key() != base
    fields = key_fields(run_fn, {"lr": 0.1}, 0.5, 3, data_fn=data_fn)["run_fn"]
    assert set(fields["functions"]) == {f"{__name__}.run_fn", f"{__name__}.sgd", f"{__name__}.note"}

    def trains(arm, dose, seed, data):
        return experiments.check_values({"n": len(data)}) if data else fit(None, [], 0, None)

    modules = set(key_fields(trains, {}, 0, 0)["run_fn"]["modules"])
    assert {"fer_utils.experiments", "fer_utils.train", "fer_utils.metrics", "fer_utils.utils"} <= modules


def test_a_function_without_source_is_keyed_by_its_bytecode():
    namespace: dict = {}
    exec("def run(arm, dose, seed, data):\n    return {'x': 1}\n", namespace)
    exec("def other(arm, dose, seed, data):\n    return {'x': 2}\n", namespace)
    first, second = (key_fields(namespace[n], {}, 0, 0)["run_fn"]["functions"] for n in ("run", "other"))
    assert list(first.values()) != list(second.values())
    with pytest.raises(CacheKeyError, match="cannot read the code"):
        key_fields(len, {}, 0, 0)


def test_one_and_two_workers_give_the_same_numbers():
    one = grid(workers=1, cache=False)
    two = grid(workers=2, cache=False)
    columns = ["arm", "dose", "seed", *PRODUCED]
    pd.testing.assert_frame_equal(one[columns], two[columns], check_exact=True)
    assert one.loss.nunique() == 8  # every run trained something of its own


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="closures reach the workers by fork (Linux)")
def test_a_closure_from_a_notebook_runs_in_forked_workers():
    scale = 3.0

    def scaled(arm, dose, seed, data):
        return {"value": scale * arm["lr"] + dose + seed}

    df = grid(run_fn=scaled, data_fn=None, workers=2)
    assert df.value.tolist() == [3.0 * ARMS[a]["lr"] + d + s for a in ARMS for d in DOSES for s in SEEDS]
    with pytest.raises(TypeError, match="must be importable"):  # spawned workers would have to import it
        grid(run_fn=scaled, workers=2, start_method="spawn")


@pytest.mark.parametrize("workers", [1, 2])
def test_an_error_names_the_run_and_the_finished_runs_stay_cached(workers, monkeypatch):
    monkeypatch.setenv("FER_TEST_FAIL", "0.1/0.0/1")  # the last run of the table
    with pytest.raises(RunError, match=r"run arm='fast', dose=0\.0, seed=1 failed: ValueError: asked to fail") as err:
        grid(workers=workers)
    assert (err.value.arm, err.value.dose, err.value.seed) == ("fast", 0.0, 1)
    assert isinstance(err.value.__cause__, ValueError)
    finished = len(list(Path(os.environ["FER_EXPERIMENTS_DIR"]).rglob("*.json")))
    assert finished >= (7 if workers == 1 else 1)
    monkeypatch.delenv("FER_TEST_FAIL")
    assert grid(workers=workers).cached.sum() == finished


def test_a_failing_data_fn_is_named():
    def broken(dose, seed):
        if (dose, seed) == (0.5, 3):
            raise OSError("no faces")
        return data_fn(dose, seed)

    with pytest.raises(RunError, match=r"data_fn for dose=0\.5, seed=3 failed: OSError: no faces"):
        grid(data_fn=broken, workers=2)


@pytest.mark.parametrize("value, kind", [(np.zeros(3), "ndarray"), ([1.0, 2.0], "list"), (torch.ones(2), "Tensor")])
def test_a_value_that_is_not_a_json_scalar_is_refused_naming_its_key(value, kind):
    def returns(arm, dose, seed, data):
        return {"loss": 1.0, "weights": value}

    with pytest.raises(RunError, match=rf"non-JSON value for key 'weights': {kind}"):
        grid(run_fn=returns)


def test_keys_and_parameters_that_clash_with_columns_are_refused():
    with pytest.raises(RunError, match="returned the key 'seed'"):
        grid(run_fn=lambda arm, dose, seed, data: {"seed": seed})
    with pytest.raises(RunError, match="returned the key 'lr'"):
        grid(run_fn=lambda arm, dose, seed, data: {"lr": 0.0})
    with pytest.raises(ValueError, match="reserved"):
        grid(arms={"a": {"dose": 1}})
    with pytest.raises(CacheKeyError, match="JSON-able"):
        grid(arms={"a": {"model": torch.nn.Linear(1, 1)}})


def test_running_here_leaves_the_callers_threads_and_random_state_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    threads = torch.get_num_threads()
    grid(cache=False)
    assert torch.get_num_threads() == threads and torch.equal(torch.rand(3), expected)

