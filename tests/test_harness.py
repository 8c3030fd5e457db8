"""The harness fails when it should: a broken cell, a changed checked output, a metric below
its threshold; and the course driver gives one clear line for a wrong profile, a missing
results folder and a missing kernel."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from fer_utils.tools import runner
from nbtools import ROOT, check_metrics


def _notebook(path: Path, cells: list[tuple[str, str]]) -> Path:
    """cells: (source, stored_output or '') pairs; outputs are stored as stdout streams."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    first = nbformat.v4.new_code_cell("profile = 'course'")
    first.metadata["tags"] = ["parameters"]
    nb.cells.append(first)
    for i, (source, output) in enumerate(cells, start=2):
        cell = nbformat.v4.new_code_cell(source)
        cell.execution_count = i
        if output:
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=output)]
        nb.cells.append(cell)
    nbformat.write(nb, path)
    return path


def _nbval(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", "-p", "no:cacheprovider",
         "--nbval-lax", "--nbval-current-env", str(path), "--rootdir", str(path.parent)],
        capture_output=True, text=True, cwd=path.parent, timeout=180)


def test_nbval_passes_a_good_notebook_and_fails_broken_ones(tmp_path: Path):
    good = _notebook(tmp_path / "good.ipynb", [("# NBVAL_CHECK_OUTPUT\nprint(1 + 1)", "2\n")])
    changed = _notebook(tmp_path / "changed.ipynb", [("# NBVAL_CHECK_OUTPUT\nprint(1 + 2)", "2\n")])
    broken = _notebook(tmp_path / "broken.ipynb", [("raise ValueError('boom')", "")])
    assert _nbval(good).returncode == 0
    result = _nbval(changed)
    assert result.returncode != 0 and "1 failed" in result.stdout
    result = _nbval(broken)
    assert result.returncode != 0 and "boom" in result.stdout


def test_metric_below_threshold_fails():
    check_metrics({"acc": 0.9, "nested": {"f1": 0.5}}, {"acc": {"min": 0.5}, "nested.f1": {"min": 0.4}}, "nb")
    with pytest.raises(AssertionError, match="acc = 0.1 is below its threshold 0.5"):
        check_metrics({"acc": 0.1}, {"acc": {"min": 0.5}}, "nb")
    with pytest.raises(AssertionError, match="was not recorded"):
        check_metrics({}, {"acc": {"min": 0.5}}, "nb")


def test_course_driver_messages(tmp_path: Path):
    with pytest.raises(SystemExit, match="unknown profile 'fast'; valid profiles are smoke, course, full"):
        runner.run_course("fast", tmp_path)
    nb = _notebook(tmp_path / "nb.ipynb", [("raise ValueError('the data folder is empty')", "")])
    with pytest.raises(SystemExit, match=r"nb.ipynb: cell \d+ failed: ValueError: the data folder is empty"):
        runner._execute(nb, tmp_path / "out.ipynb", {}, {})
    with pytest.raises(SystemExit, match="Jupyter kernel not found"):
        runner._execute(nb, tmp_path / "out.ipynb", {}, {}, kernel_name="no-such-kernel")


def test_ci_calls_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make test" in ci and "make test" in readme and "make run" in readme


def test_progress_bars_are_coalesced_to_their_final_state():
    outputs = [{"output_type": "stream", "name": "stderr", "text": "bar:   0%\r"},
               {"output_type": "stream", "name": "stderr", "text": "bar:  50%\r"},
               {"output_type": "stream", "name": "stderr", "text": "bar: 100%\n"},
               {"output_type": "stream", "name": "stdout", "text": "accuracy 0.9\n"}]
    assert runner._coalesce_streams(outputs) == [
        {"output_type": "stream", "name": "stderr", "text": "bar: 100%\n"},
        {"output_type": "stream", "name": "stdout", "text": "accuracy 0.9\n"}]
