"""Experiment grids: arms x doses x seeds, one run per worker process, every run cached on disk::

    def data_fn(dose, seed): return make_faces(label_noise=dose, seed=seed)   # once per (dose, seed)
    def run_fn(arm, dose, seed, data): return {"accuracy": train_and_score(data, lr=arm["lr"])}
    df = run_grid(run_fn, {"sgd": {"lr": 0.1}, "adam": {"lr": 1e-3}}, [0.0, 0.2, 0.4], range(5), data_fn=data_fn)

One row per run, in the order given (arms, then doses, then seeds): ``arm``, ``dose``, ``seed``, the arm's
parameters (unprefixed: ``df.groupby("lr")``), every key ``run_fn`` returned, ``seconds`` (its wall time when it was
computed), ``cached``.

**Paired seeds.** ``data_fn(dose, seed)`` runs once per (dose, seed) that has runs to compute; every arm there gets
the same data, each run its own copy (pickled once, unpickled per run: a ``run_fn`` that changes its data in place
cannot leak into another arm). The data must be picklable.

**Processes.** ``workers`` (default: the CPUs this process may use) processes, one run each at a time, ONE torch
thread, for CPU runs. On Linux they are forked: functions defined in a notebook, closures and lambdas included, work
(inherited, never pickled; no CUDA in them once this process used it); elsewhere they are spawned, and ``run_fn`` /
``data_fn`` must be importable (top level of a module). ``workers=1`` runs here, no pool (debugging, smoke runs), on
one thread too. Pass ``progress=False`` to :func:`fer_utils.train.fit` in ``run_fn``: the grid shows one bar, over runs.

**Data to the workers.** Each (dose, seed)'s ``data_fn`` call is a pool task (rendering uses every worker) whose
worker pickles the data into a temporary folder; that (dose, seed)'s runs are queued when the file is there and read
it. The parent never holds the data; a file goes when its last run is done, the folder when the grid ends or fails.

**Determinism.** Before ``data_fn`` and each ``run_fn``, :func:`fer_utils.utils.seed_everything` with the run's
``seed`` (Python, NumPy, torch; deterministic algorithms), one torch thread: the same grid gives the same numbers with
1 or N workers. With ``workers=1`` the caller's RNG states, threads and deterministic setting are restored after.

**The cache.** Each finished run is written at once to ``experiments_dir()/<run_fn name>/<key>.json``
(``$FER_EXPERIMENTS_DIR``, else ``experiments/`` under :func:`fer_utils.utils.cache_dir`). A rerun reads the runs it
finds (``cached=True``) and computes the rest (after a failure; a new arm, dose or seed). ``cache=False`` recomputes
every run and overwrites its file; :func:`clear_cache` deletes files. The key, SHA-256 of :func:`key_fields`, covers:

- the engine version; the arm's parameters (not its name: a renamed arm reuses its runs), the dose and the seed
  (canonical JSON); ``code_version`` (any JSON value the caller passes);
- for ``run_fn`` and ``data_fn``: the qualified name and source (``inspect.getsource``; without one, the code
  object's bytecode, names and constants) of the function and, recursively, of each function and class of ITS OWN
  module (a notebook's ``__main__``) that it names (globals, closure variables); a ``functools.partial``'s
  arguments; the values of the JSON-able globals and closure variables it names (``EPOCHS = 3``, a settings dict);
- the files of the ``track_package`` (``"fer_utils"``) modules these name, and of the package modules those name,
  transitively (``fer_utils.train`` -> ``fer_utils.metrics`` ...): editing ``fit`` recomputes.

Not covered (after changing one: ``cache=False``, a new ``code_version`` or :func:`clear_cache`): non-JSON objects
read through globals (a dataset, a tensor, a model), other modules' code (torch, your helper modules), files that
``data_fn`` reads, library versions.

**Errors.** An exception in a run is re-raised as :class:`RunError` naming the arm, dose and seed (the worker's
traceback as its cause); the pool is stopped, finished runs stay cached. A result value other than a float, int,
bool, str or None (numpy / torch scalars are converted) is refused, naming its key.
"""
from __future__ import annotations

import functools
import hashlib
import inspect
import json
import multiprocessing
import os
import pickle
import random
import shutil
import sys
import tempfile
import time
import types
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from fer_utils.utils import cache_dir, seed_everything

#: Part of every key: bump it when the engine changes what a cached run means.
ENGINE_VERSION = 1
#: The table's own columns: no arm parameter or returned key may use these names.
RESERVED = ("arm", "dose", "seed", "seconds", "cached")


class RunError(RuntimeError):
    """A run failed (or the data of a (dose, seed): ``.arm`` None); ``.arm``, ``.dose``, ``.seed``; cause: its error."""


class CacheKeyError(ValueError):
    """A run's cache key cannot be made (a function without code to read, an arm that is not JSON)."""


def experiments_dir() -> Path:
    """Where runs are cached: ``$FER_EXPERIMENTS_DIR`` if set, else ``experiments/`` under :func:`cache_dir`."""
    override = os.environ.get("FER_EXPERIMENTS_DIR")
    return Path(override).expanduser() if override else cache_dir() / "experiments"


def clear_cache(run_fn: Callable | None = None) -> None:
    """Delete the cached runs of ``run_fn`` (every cached run when None)."""
    shutil.rmtree(experiments_dir() / _slug(_name(run_fn)) if run_fn else experiments_dir(), ignore_errors=True)


def _canonical(value: Any, what: str) -> str:
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as err:
        raise CacheKeyError(f"{what} must be JSON-able (numbers, strings, bools, lists, dicts): {err}") from None


def _sha(text: str | bytes, n: int = 16) -> str:
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()[:n]


def _name(obj: Any) -> str:
    obj = obj.func if isinstance(obj, functools.partial) else obj
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', type(obj).__qualname__)}"


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in name)[:120]


def _in(module: Any, package: str | None) -> bool:
    return bool(package) and isinstance(module, str) and (module == package or module.startswith(package + "."))


def _home(value: Any) -> str | None:
    """The module that defines ``value`` (a module: itself; a function or class: its own; an object: its class's)."""
    if isinstance(value, types.ModuleType):
        return value.__name__
    try:
        home = getattr(value, "__module__", None)
    except Exception:  # an object whose attribute lookup fails: not followed
        return None
    return home if isinstance(home, str) else type(value).__module__


def _code_text(code: types.CodeType) -> str:
    """A code object's bytecode, names and constants (nested code objects included): for unsourced functions."""
    consts = [_code_text(c) if isinstance(c, types.CodeType) else repr(c) for c in code.co_consts]
    return f"{code.co_code.hex()}|{code.co_names}|{code.co_varnames}|{consts}"


def _source(obj: Any) -> str:
    """``obj``'s source; else its bytecode (a function) or its methods' (a class); else refused."""
    try:
        return inspect.getsource(obj)
    except (OSError, TypeError):
        pass
    if isinstance(getattr(obj, "__code__", None), types.CodeType):
        return "<bytecode>" + _code_text(obj.__code__)
    if isinstance(obj, type):
        methods = [f"{k}={_source(v)}" for k, v in sorted(vars(obj).items()) if inspect.isfunction(v)]
        return f"<class {obj.__qualname__}{[b.__qualname__ for b in obj.__bases__]}>" + "".join(methods)
    raise CacheKeyError(f"cannot read the code of {_name(obj)} (no source, no code object), so it cannot be part of "
                        "a cache key: wrap it in a function (def)")


def _code_names(code: types.CodeType) -> set[str]:
    return set(code.co_names).union(*(_code_names(c) for c in code.co_consts if isinstance(c, types.CodeType)))


def _references(obj: Any) -> Iterator[tuple[str, Any]]:
    """(label, value) of the globals that a function (or a class's methods) names, and of a function's closure."""
    functions = [obj] if inspect.isfunction(obj) else \
        [getattr(v, "__func__", v) for v in vars(obj).values()] if isinstance(obj, type) else []
    for fn in filter(inspect.isfunction, functions):
        for name in sorted(_code_names(fn.__code__) & set(fn.__globals__)):
            yield f"{fn.__module__}.{name}", fn.__globals__[name]
        for var, cell in zip(fn.__code__.co_freevars, fn.__closure__ or ()):
            try:
                yield f"{fn.__qualname__}.<closure>.{var}", cell.cell_contents
            except ValueError:  # an empty cell
                continue


def _visit(obj: Any, found: dict, package: str | None, seen: set[int]) -> None:
    """Record ``obj``'s source hash, then follow what it names (what is followed: the module's docs)."""
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, functools.partial):
        found["values"][f"{_name(obj)}(partial)"] = _sha(_canonical([obj.args, obj.keywords], "a partial's arguments"))
        return _visit(obj.func, found, package, seen)
    home = _home(obj)
    if _in(home, package):  # package code: its whole file is in the key
        return found["modules"].add(home)
    found["functions"][_name(obj)] = _sha(_source(obj))
    for label, value in _references(obj):
        if (inspect.isfunction(value) or isinstance(value, (type, functools.partial))) and _home(value) == home:
            _visit(value, found, package, seen)
        elif _in(_home(value), package):
            found["modules"].add(_home(value))
        else:
            try:  # strict JSON: a repr with a memory address in it would change the key every session
                found["values"][label] = _sha(json.dumps(value, sort_keys=True))
            except (TypeError, ValueError):  # not JSON (a module, a tensor, a dataset): not covered
                continue


def _module_files(start: set[str], package: str | None) -> dict[str, str]:
    """SHA-256 (16 hex) of the file of each module in ``start`` and of the package modules they name, transitively."""
    todo, seen = sorted(start), set()
    while todo:
        name = todo.pop()
        if name not in seen and name in sys.modules:
            seen.add(name)
            todo += [h for h in map(_home, list(vars(sys.modules[name]).values())) if _in(h, package) and h not in seen]
    files = {name: getattr(sys.modules[name], "__file__", None) for name in sorted(seen)}
    return {name: _sha(Path(path).read_bytes()) for name, path in files.items() if path and Path(path).is_file()}


def code_fingerprint(fn: Callable | None, package: str | None = "fer_utils") -> dict | None:
    """What a key holds of one function: its name; source hashes of it and of the functions and classes of its own
    module that it names; hashes of the JSON-able values it names; hashes of the package files it reaches."""
    if fn is None:
        return None
    found: dict[str, Any] = {"functions": {}, "values": {}, "modules": set()}
    _visit(fn, found, package, set())
    return {"name": _name(fn), "functions": found["functions"], "values": found["values"],
            "modules": _module_files(found["modules"], package)}


def key_fields(run_fn: Callable, arm: dict, dose: Any, seed: int, data_fn: Callable | None = None,
               code_version: Any = None, track_package: str | None = "fer_utils") -> dict:
    """Everything one run's cache key covers, as a JSON-able dict; its hash is the key (:func:`run_key`)."""
    code = {"run_fn": code_fingerprint(run_fn, track_package), "data_fn": code_fingerprint(data_fn, track_package),
            "code_version": _normal(code_version, "code_version")}
    return _plan({"arm": arm}, [dose], [seed], code, Path())[0].fields


def run_key(fields: dict) -> str:
    """The cache key of one run: SHA-256 (24 hex digits) of :func:`key_fields`'s canonical JSON."""
    return _sha(_canonical(fields, "a run's key"), 24)


@contextmanager
def _isolated(seed: int) -> Iterator[None]:
    """One torch thread and everything seeded from ``seed``; the previous state is restored afterwards."""
    threads = torch.get_num_threads()
    flags = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    torch.set_num_threads(1)
    seed_everything(seed)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(flags[0], warn_only=flags[1])
        for restore, state in zip((random.setstate, np.random.set_state, torch.set_rng_state), states):
            restore(state)


def _render(data_fn: Callable, dose: Any, seed: int) -> bytes:
    """``data_fn(dose, seed)``, seeded, pickled."""
    with _isolated(seed):
        data = data_fn(dose, seed)
    return pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL)  # not picklable: a RunError naming the data


def check_values(values: Any, params: dict | None = None) -> dict[str, float | int | bool | str | None]:
    """``run_fn``'s result as a dict of JSON scalars (numpy / torch scalars converted); anything else is refused,
    naming the key, as is a key that is already a column (:data:`RESERVED`, the arm's parameters)."""
    if not isinstance(values, dict):
        raise TypeError(f"run_fn must return a dict of scalars, got {type(values).__name__}")
    checked = {}
    for key, value in values.items():
        if not isinstance(key, str) or key in RESERVED or key in (params or {}):
            raise ValueError(f"run_fn returned the key {key!r}: keys must be strings, and not already columns (the "
                             f"grid's own {RESERVED} or the arm's parameters): rename it")
        if isinstance(value, (np.generic, np.ndarray, torch.Tensor)) and value.ndim == 0:
            value = value.item()
        if not isinstance(value, (bool, int, float, str, type(None))):
            raise TypeError(f"run_fn returned a non-JSON value for key {key!r}: {type(value).__name__} (allowed: "
                            "float, int, bool, str, None; numpy and torch scalars are converted)")
        checked[key] = value
    return checked


def _execute(run_fn: Callable, params: dict, dose: Any, seed: int, blob: bytes | None) -> dict:
    """One run: its own copy of the parameters and the data, seeded, timed, its result checked."""
    data = pickle.loads(blob) if blob is not None else None
    with _isolated(seed):
        start = time.perf_counter()
        values = run_fn(json.loads(json.dumps(params)), dose, seed, data)
        seconds = time.perf_counter() - start
    return {"values": check_values(values, params), "seconds": seconds}


_WORKER: dict[str, Callable | None] = {}


def _init_worker(run_fn: Callable, data_fn: Callable | None) -> None:
    """In a new worker: keep the functions (inherited by fork, unpickled by spawn); one torch thread."""
    _WORKER.update(run_fn=run_fn, data_fn=data_fn)
    torch.set_num_threads(1)


def _task(params: dict | None, dose: Any, seed: int, path: str | None) -> Any:
    """In a worker: render the data into ``path`` (``params`` None), or run with the data read from ``path``."""
    if params is None:
        return Path(path).write_bytes(_render(_WORKER["data_fn"], dose, seed))
    return _execute(_WORKER["run_fn"], params, dose, seed, Path(path).read_bytes() if path else None)


@dataclass
class _Run:
    """One run of the grid: its place in the table, its arm, dose and seed, its (dose, seed) group, its key."""
    index: int
    arm: str
    params: dict
    dose: Any
    seed: int
    group: int  # its (dose, seed)
    path: Path  # its cache file
    fields: dict  # what its key covers


def _attempt(call: Callable[[], Any], arm: str | None, dose: Any, seed: int) -> Any:
    """``call()``; its exception re-raised as a :class:`RunError` naming the run (or the data when ``arm`` is None)."""
    try:
        return call()
    except Exception as err:
        what = (f"run arm={arm!r}, " if arm is not None else "data_fn for ") + f"dose={dose!r}, seed={seed!r}"
        failure = RunError(f"{what} failed: {type(err).__name__}: {err}")
        failure.arm, failure.dose, failure.seed = arm, dose, seed
        raise failure from err


def _normal(value: Any, what: str) -> Any:
    """``value`` as JSON gives it back (numpy scalars to Python, tuples to lists); refused when not JSON."""
    return json.loads(_canonical(value.item() if isinstance(value, np.generic) else value, what))


def _plan(arms: dict[str, dict], doses: Sequence, seeds: Sequence, code: dict, folder: Path) -> list[_Run]:
    """Every run in table order (arms as given, then doses, then seeds), checked, with its key and file."""
    if not isinstance(arms, dict) or not arms or not all(isinstance(p, dict) for p in arms.values()):
        raise ValueError("arms must be a non-empty dict {name: {parameter: value}}")
    if not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in seeds):
        raise TypeError(f"seeds must be integers, got {list(seeds)!r}")
    doses, seeds = [_normal(d, f"dose {d!r}") for d in doses], [int(s) for s in seeds]
    for what, values in (("doses", doses), ("seeds", seeds)):
        if not values or len({_canonical(v, what) for v in values}) != len(values):
            raise ValueError(f"{what} must be a non-empty sequence of distinct values, got {values!r}")
    runs = []
    for name, params in arms.items():
        params = _normal(params, f"arm {name!r}'s parameters")
        if clash := set(params) & set(RESERVED):
            raise ValueError(f"arm {name!r}: parameter names {sorted(clash)} are reserved for the table's columns")
        for d, dose in enumerate(doses):
            for s, seed in enumerate(seeds):
                fields = {"engine": ENGINE_VERSION, **code, "arm": params, "dose": dose, "seed": seed}
                runs.append(_Run(len(runs), str(name), params, dose, seed, d * len(seeds) + s,
                                 folder / f"{run_key(fields)}.json", fields))
    return runs


def _read(run: _Run) -> dict | None:
    """The run's cached outcome, or None (no file, an unreadable one, or one whose fields differ)."""
    try:
        stored = json.loads(run.path.read_text())
    except (OSError, ValueError):
        return None
    ok = isinstance(stored, dict) and stored.get("fields") == run.fields
    return {"values": stored["values"], "seconds": stored["seconds"], "cached": True} if ok else None


def _write(run: _Run, outcome: dict) -> None:
    """Cache one finished run (atomically: a reader never sees half a file)."""
    run.path.parent.mkdir(parents=True, exist_ok=True)
    tmp = run.path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"fields": run.fields, "values": outcome["values"], "seconds": outcome["seconds"],
                               "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}, indent=1) + "\n")
    os.replace(tmp, run.path)


def _in_process(run_fn: Callable, data_fn: Callable | None, groups: dict[int, list[_Run]], done: Callable) -> None:
    """Every run here, (dose, seed) by (dose, seed): its data rendered once, kept (pickled) while its runs go."""
    for group in groups.values():
        first = group[0]
        blob = _attempt(lambda: _render(data_fn, first.dose, first.seed), None, first.dose, first.seed) \
            if data_fn is not None else None
        for run in group:
            done(run, _attempt(lambda: _execute(run_fn, run.params, run.dose, run.seed, blob),
                               run.arm, run.dose, run.seed))


def _drive(pool: ProcessPoolExecutor, groups: dict[int, list[_Run]], tmp: Path, has_data: bool,
           done: Callable) -> None:
    """Queue each (dose, seed)'s data, then its runs once its data file is there; collect the results."""
    pending: dict[Future, tuple[bool, Any]] = {}
    left: dict[int, int] = {}

    def queue_runs(group: int, path: str | None) -> None:
        left[group] = len(groups[group])
        for run in groups[group]:
            pending[pool.submit(_task, run.params, run.dose, run.seed, path)] = (False, run)

    for group, members in groups.items():
        if has_data:
            path = str(tmp / f"data-{group}.pkl")
            pending[pool.submit(_task, None, members[0].dose, members[0].seed, path)] = (True, (group, path))
        else:
            queue_runs(group, None)
    while pending:
        for future in wait(pending, return_when=FIRST_COMPLETED)[0]:
            is_data, item = pending.pop(future)
            run = groups[item[0]][0] if is_data else item
            outcome = _attempt(future.result, None if is_data else run.arm, run.dose, run.seed)
            if is_data:
                queue_runs(*item)
                continue
            done(run, outcome)
            left[run.group] -= 1
            if has_data and not left[run.group]:
                (tmp / f"data-{run.group}.pkl").unlink(missing_ok=True)


def _in_pool(run_fn: Callable, data_fn: Callable | None, groups: dict[int, list[_Run]], done: Callable,
             workers: int, method: str) -> None:
    """The runs in ``workers`` processes started by ``method`` ("fork", "spawn"), the data via a temporary folder."""
    if method != "fork":
        try:
            pickle.dumps((run_fn, data_fn))
        except Exception as err:
            raise TypeError(f"with the {method!r} start method, run_fn and data_fn must be importable (defined at "
                            f"the top level of a module, not in a notebook or in another function): {err}") from err
    import torch._inductor.config  # noqa: F401  (seed_everything's 2 s import: once here, not in every worker)
    with tempfile.TemporaryDirectory(prefix="fer-experiments-") as tmp:
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method),
                                   initializer=_init_worker, initargs=(run_fn, data_fn))
        try:
            _drive(pool, groups, Path(tmp), data_fn is not None, done)
        except BaseException:  # an error or an interrupt: cancel what is queued, end the workers this grid started
            processes = list((getattr(pool, "_processes", None) or {}).values())
            pool.shutdown(wait=False, cancel_futures=True)
            for process in processes:
                process.terminate()
                process.join(timeout=5)
            raise
        pool.shutdown(wait=True)


def default_workers() -> int:
    """The CPUs this process may run on (``os.sched_getaffinity`` where it exists, else ``os.cpu_count``)."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def _table(runs: list[_Run], outcomes: dict[int, dict]) -> pd.DataFrame:
    """One row per run, in plan order; columns in first-seen order (a key some runs lack: NaN there)."""
    params = list(dict.fromkeys(k for run in runs for k in run.params))
    values = list(dict.fromkeys(k for run in runs for k in outcomes[run.index]["values"]))
    records = [{"arm": run.arm, "dose": run.dose, "seed": run.seed, **run.params, **outcomes[run.index]["values"],
                "seconds": outcomes[run.index]["seconds"], "cached": outcomes[run.index]["cached"]} for run in runs]
    return pd.DataFrame(records, columns=["arm", "dose", "seed", *params, *values, "seconds", "cached"])


def run_grid(run_fn: Callable[[dict, Any, int, Any], dict], arms: dict[str, dict], doses: Sequence, seeds: Sequence,
             data_fn: Callable[[Any, int], Any] | None = None, workers: int | None = None, cache: bool = True,
             progress: bool = True, desc: str = "experiments", code_version: Any = None,
             track_package: str | None = "fer_utils", start_method: str | None = None) -> pd.DataFrame:
    """``run_fn(arm_parameters, dose, seed, data)`` for every arm x dose x seed, ``data = data_fn(dose, seed)`` (None
    without it); one row per run (the module's docs). ``workers``: default :func:`default_workers`, 1 runs here.
    ``code_version``: any JSON value, in the key; ``track_package``: whose files go into the key (None: none);
    ``start_method``: default "fork" on Linux, else "spawn". Raises :class:`RunError` naming the failed run."""
    code = {"run_fn": code_fingerprint(run_fn, track_package), "data_fn": code_fingerprint(data_fn, track_package),
            "code_version": _normal(code_version, "code_version")}
    runs = _plan(arms, list(doses), list(seeds), code, experiments_dir() / _slug(_name(run_fn)))
    outcomes = {run.index: hit for run in runs if cache and (hit := _read(run)) is not None}
    missing: dict[int, list[_Run]] = {}  # the runs to compute, by (dose, seed)
    for run in (run for run in runs if run.index not in outcomes):
        missing.setdefault(run.group, []).append(run)
    workers = default_workers() if workers is None else int(workers)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    bar = tqdm(total=len(runs), initial=len(outcomes), desc=desc, unit="run", ascii=True, mininterval=2.0,
               disable=not progress)
    bar.set_postfix(workers=min(workers, len(runs) - len(outcomes)), cached=len(outcomes), refresh=False)

    def done(run: _Run, outcome: dict) -> None:
        _write(run, outcome)
        outcomes[run.index] = {**outcome, "cached": False}
        bar.update(1)

    try:
        if missing and workers == 1:
            _in_process(run_fn, data_fn, missing, done)
        elif missing:
            method = start_method or ("fork" if sys.platform.startswith("linux") else "spawn")
            _in_pool(run_fn, data_fn, missing, done, min(workers, len(runs) - len(outcomes)), method)
    finally:
        bar.close()
    return _table(runs, outcomes)
