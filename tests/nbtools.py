"""Helpers the notebook tests share: reading notebooks, their declared checks, executing them."""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
PARAMETERS = ("profile", "dataset", "data_root", "seed", "device", "results_path", "figures_dir")


def read(path: Path):
    return nbformat.read(path, as_version=4)


def code_cells(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code"]


def declared(nb) -> dict:
    """The notebook's own test contract: ``metadata.fer`` = {checks, course_checks, figures}."""
    return nb.metadata.get("fer", {})


def lookup(results: dict, dotted: str):
    """``results[dotted]`` if recorded under that flat key, else follow the dots into nested dicts."""
    if dotted in results:
        return results[dotted]
    value = results
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            raise AssertionError(f"metric {dotted!r} was not recorded (have {sorted(results)})")
        value = value[part]
    return value


def check_metrics(results: dict, checks: dict, where: str) -> None:
    """Assert every ``{"name": {"min": a, "max": b}}`` rule; the message names the metric and bound."""
    for name, rule in checks.items():
        value = lookup(results, name)
        if value is None:
            raise AssertionError(f"{where}: metric {name!r} is None (NaN or missing)")
        if "min" in rule and not value >= rule["min"]:
            raise AssertionError(f"{where}: {name} = {value:.4g} is below its threshold {rule['min']}")
        if "max" in rule and not value <= rule["max"]:
            raise AssertionError(f"{where}: {name} = {value:.4g} is above its threshold {rule['max']}")


def setup_prefix(nb):
    """A copy of ``nb`` cut after the first cell that calls ``course.start`` (parameters + set-up)."""
    cut = nbformat.from_dict(nb)
    for i, cell in enumerate(cut.cells):
        if cell.cell_type == "code" and "course.start(" in cell.source:
            cut.cells = cut.cells[: i + 1]
            return cut
    raise AssertionError("no cell calls course.start(...)")


@contextmanager
def environ(env: dict | None):
    """``os.environ`` updated with ``env`` inside the block (a kernel started there inherits it), then restored."""
    old = dict(os.environ)
    os.environ.update(env or {})
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(old)


def execute_papermill(src: Path, dst: Path, parameters: dict, env: dict | None = None) -> None:
    import papermill as pm

    with environ(env):
        pm.execute_notebook(str(src), str(dst), parameters=parameters, kernel_name="python3",
                            progress_bar=False, cwd=str(ROOT / "notebooks"))
