"""The notebook harness: structure of committed notebooks, recorded metrics.

Each notebook declares its own contract in ``metadata.fer``:
``checks`` (thresholds on the smoke run), ``course_checks`` (on the committed
``results/<notebook>.json``) and ``figures`` (names it must save).

Each notebook is executed once per ``make test``, by nbval (cell by cell,
comparing the checked outputs); what that run records and draws is checked by
the item ``recorded metrics (smoke)`` that ``tests/conftest.py`` appends after
the notebook's last cell. That papermill's injected parameters take effect is
checked with the set-up cell's refusals, in ``tests/test_notebook_data.py``.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from nbtools import NOTEBOOKS, PARAMETERS, ROOT, check_metrics, code_cells, declared, read

ids = [p.stem for p in NOTEBOOKS]
ABSOLUTE = re.compile(r"(/tmp/|/work/|/root/|/home/|/Users/|[A-Z]:\\\\)")


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks/NN_*.ipynb found"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_committed_notebook_is_clean(path: Path):
    nb = read(path)
    cells = code_cells(nb)
    assert "parameters" in cells[0].metadata.get("tags", []), "first code cell must be tagged 'parameters'"
    for name in PARAMETERS:
        assert re.search(rf"^{name}\s*=", cells[0].source, re.M), f"parameters cell lacks {name!r}"
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert path.stat().st_size < 5_000_000, f"{path.name} is {path.stat().st_size / 1e6:.1f} MB"
    assert any(c.outputs for c in cells), "committed without outputs: run `make regen`"
    for i, cell in enumerate(cells):
        for out in cell.outputs:
            assert out.output_type != "error", f"code cell {i} has an error output"
            text = out.get("text", "") + json.dumps(out.get("data", {}).get("text/plain", ""))
            assert not ABSOLUTE.search(text), f"code cell {i} prints an absolute path"
            if out.get("name") == "stderr":
                assert "Warning" not in text, f"code cell {i} shows a warning: {text[:200]}"
    assert "papermill" not in nb.metadata, "papermill metadata left in: run `make regen`"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_committed_results_meet_course_thresholds(path: Path):
    results_file = ROOT / "results" / f"{path.stem}.json"
    assert results_file.exists(), f"results/{path.stem}.json missing: run `make regen`"
    results = json.loads(results_file.read_text())
    assert results.get("profile") == "course", "results/ must come from a course-profile run"
    check_metrics(results, declared(read(path)).get("course_checks", {}), f"results/{path.stem}.json")


def test_readme_timing_table_is_generated_from_results():
    """The README's course timings are results/*.json's, as ``python -m fer_utils.tools.timings`` writes them."""
    from fer_utils.tools import timings

    assert timings.main(["--check"]) == 0, "README.md's timing table is stale: python -m fer_utils.tools.timings --write"


def test_measured_counts_the_child_process_cpu_time():
    import subprocess
    import sys

    from fer_utils.tools.timings import measured

    times = measured(lambda: subprocess.run([sys.executable, "-c", "sum(i * i for i in range(3_000_000))"],
                                            check=True))
    assert times["time.cpu_seconds"] > 0.05 and times["time.wall_seconds"] >= times["time.cpu_seconds"] * 0.2
    assert times["time.cpu_count"] >= 1 and times["time.load_before"] >= 0
