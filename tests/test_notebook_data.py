"""Every notebook checks its `dataset` / `data_root` in its set-up cell (through
``fer_utils.data.sources.open_dataset``), and runs end to end, smoke profile, on a real-format export
of each real dataset it accepts.

The set-up cell is checked in one kernel per notebook: the parameters cell, papermill's injected
parameters (``profile``, ``seed``, ``results_path``; injected by papermill's own
``parameterize_notebook``, as ``papermill.execute_notebook`` does) and the set-up cell run once with
SynthFaces, and the injected values must take effect; then the set-up cell runs again after each bad
assignment, and each must fail in that cell with open_dataset's message.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import numpy as np
import papermill as pm
import pytest
from nbclient import NotebookClient
from papermill.parameterize import parameterize_notebook

from fer_utils.data import formats as F
from nbtools import NOTEBOOKS, ROOT, environ, read, setup_prefix


def _setup_index(nb) -> int:
    return next(i for i, c in enumerate(nb.cells) if c.cell_type == "code" and "course.start(" in c.source)


def _error_text(cell) -> str:
    return "\n".join(f"{o.get('ename')}: {o.get('evalue')}" for o in cell.outputs if o.output_type == "error")


INJECTED = {"profile": "smoke", "seed": 7}


def _injected(path: Path, results: Path):
    """Parameters + set-up cells with papermill's injected-parameters cell (``INJECTED`` + ``results_path``)."""
    nb = setup_prefix(read(path))
    nb.metadata["papermill"] = nbformat.NotebookNode()
    return parameterize_notebook(nb, {**INJECTED, "results_path": str(results)})


def _attempts(nb, client: NotebookClient, path: Path, empty: Path, results: Path) -> dict[str, str]:
    """The injected first run, then the set-up cell after each bad assignment: assignment -> error text
    (``_recorded``: what the first run wrote to ``results_path``; ``_accepted``: the datasets it accepts)."""
    setup = _setup_index(nb)
    found: dict[str, str] = {}

    def attempt(assignment: str) -> str:
        nb.cells += [nbformat.v4.new_code_cell(assignment), nbformat.from_dict(nb.cells[setup])]
        for index in (len(nb.cells) - 2, len(nb.cells) - 1):
            client.execute_cell(nb.cells[index], index)
        found[assignment] = _error_text(nb.cells[-1])
        return found[assignment]

    for index in range(len(nb.cells)):
        client.execute_cell(nb.cells[index], index)
    assert not _error_text(nb.cells[setup]), f"{path.name}: the set-up cell fails with SynthFaces"
    found["_recorded"] = results.read_text() if results.exists() else "{}"
    first = attempt('dataset = "no_such_dataset"; data_root = None')
    accepted = re.findall(r"'(\w+)'", first.split("accepts", 1)[-1]) if "accepts" in first else []
    for name in (name for name in accepted if name != "synthfaces"):
        attempt(f'dataset = "{name}"; data_root = None')
        attempt(f'dataset = "{name}"; data_root = {str(empty)!r}')
    attempt('dataset = "synthfaces"; data_root = "/some/folder"')
    attempt(f'dataset = "{"rafdb" if "rafdb" not in accepted else "ferg"}"; data_root = {str(empty)!r}')
    found["_accepted"] = ",".join(accepted)
    return found


def _refusals(path: Path, tmp: Path) -> dict[str, str]:
    """``_attempts`` in one kernel, started with FER_RESULTS_DIR / FER_FIGURES_DIR empty (so that the
    injected ``results_path`` is where the notebook records); ``tmp/empty`` is the empty data folder."""
    (tmp / "empty").mkdir()
    nb = _injected(path, tmp / "r.json")
    client = NotebookClient(nb, kernel_name="python3", timeout=600, allow_errors=True,
                            resources={"metadata": {"path": str(path.parent)}})
    with environ({"FER_RESULTS_DIR": "", "FER_FIGURES_DIR": ""}), client.setup_kernel():
        return _attempts(nb, client, path, tmp / "empty", tmp / "r.json")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_injected_parameters_apply_and_bad_dataset_fails_in_the_setup_cell(path: Path, tmp_path: Path):
    found = _refusals(path, tmp_path)
    recorded = json.loads(found.pop("_recorded"))
    assert (recorded.get("profile"), recorded.get("seed")) == ("smoke", 7), \
        f"{path.name}: papermill's injected profile / seed did not reach results_path: {recorded}"
    accepted = found.pop("_accepted").split(",")
    assert "synthfaces" in accepted, f"{path.name}: an unknown dataset is not refused by open_dataset: {found}"
    for trial, error in found.items():
        name, root = re.match(r'dataset = "(\w+)"; data_root = (.*)', trial).groups()
        expected = ("unknown dataset" if name == "no_such_dataset" else "only read for a real dataset"
                    if name == "synthfaces" else "does not use dataset" if name not in accepted
                    else "needs data_root" if root == "None" else "holds none of the")
        assert expected in error, f"{path.name}, after `{trial}`: expected an error with {expected!r}, got {error!r}"


# --- end to end on a real-format export ----------------------------------------------------

def _export(name: str, root: Path) -> None:
    """A small export in the dataset's first layout of data/README.md (random faces, all classes)."""
    rng = np.random.default_rng(0)
    gray, size = {"fer2013": (True, 48), "affectnet": (False, 64), "rafdb": (False, 100)}[name]
    n = 420  # 60 a class: every split holds each class (05 shows two test faces a class); 900 cost 85 s more
    split = {"fer2013": ("train",) * 6 + ("val", "test"), "affectnet": ("train",) * 4 + ("val",),
             "rafdb": ("train",) * 4 + ("test",)}[name]
    samples = [{"image": rng.integers(0, 256, (size, size) if gray else (size, size, 3), dtype=np.uint8),
                "label": i % 7, "split": split[i % len(split)], "valence": float(rng.uniform(-1, 1)),
                "arousal": float(rng.uniform(-1, 1)), "landmarks": rng.uniform(0, size, (68, 2))}
               for i in range(n)]
    writer = {"fer2013": F.write_fer2013, "affectnet": F.write_affectnet, "rafdb": F.write_rafdb}[name]
    writer(samples, root, verbose=False)


REAL_RUNS = [(p, name) for p in NOTEBOOKS for name in ("fer2013", "affectnet", "rafdb")
             if f'"{name}"' in read(p).cells[_setup_index(read(p))].source]


@pytest.mark.parametrize("path, name", REAL_RUNS, ids=[f"{p.stem}-{n}" for p, n in REAL_RUNS])
def test_notebook_runs_on_a_real_format_export(path: Path, name: str, tmp_path: Path):
    _export(name, tmp_path / "data")
    out = tmp_path / path.name
    pm.execute_notebook(str(path), str(out), parameters={"dataset": name, "data_root": str(tmp_path / "data"),
                                                         "profile": "smoke"},
                        kernel_name="python3", progress_bar=False, cwd=str(path.parent))
    text = "\n".join(o.get("text", "") for c in read(out).cells if c.cell_type == "code" for o in c.outputs)
    assert f"{name} (" in text and "profile smoke" in text, f"{path.name}: no open_dataset summary in the outputs"


def test_real_runs_cover_the_real_datasets_of_the_notebooks():
    """At least FER2013 (00), AffectNet (04) and RAF-DB (05) are run on exports."""
    assert {n for _, n in REAL_RUNS} == {"fer2013", "affectnet", "rafdb"}, REAL_RUNS
    assert (ROOT / "data" / "README.md").exists()
