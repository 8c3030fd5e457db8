"""Notebook 03's exercise checks fail an answer that merely delegates to the package function.

Each exercise asks the student to write something ``fer_utils`` already has (the spatial transformer's
warp, occlusion sensitivity, the energy / pointing-game score). An answer that just calls that
function must not pass: for each exercise we put such an answer in place of the solution, run the
set-up cells, the answer and its check cell, and expect the check (and only the check) to fail.
"""
from __future__ import annotations

import nbformat
import pytest
from nbclient import NotebookClient

from nbtools import ROOT, read, setup_prefix

NOTEBOOK = ROOT / "notebooks" / "03_deep_emotion.ipynb"

#: function name defined by the exercise -> an answer that only delegates to the package.
DELEGATING = {
    "stn_forward": '''def stn_forward(localisation, fc_loc, images):
    theta = fc_loc(localisation(images)).view(-1, 2, 3)
    return affine_warp(images, theta), theta
''',
    "occlusion_map": '''def occlusion_map(model, image, target, patch=8, stride=4):
    return explain.occlusion_sensitivity(model, image[None], [target], fill=0.0, patch=patch, stride=stride)[0]
''',
    "energy_and_hit": '''def energy_and_hit(attribution, mask):
    score = explain.pointing_game(attribution, mask)
    return score["mass"], float(score["hit"])
''',
}


def _exercise_pair(nb, name: str) -> tuple[int, int]:
    for i, cell in enumerate(nb.cells):
        if "exercise" in cell.metadata.get("tags", []) and f"def {name}(" in cell.source:
            return i, i + 1 + next(k for k, c in enumerate(nb.cells[i + 1:]) if "exercise-check" in c.metadata.get("tags", []))
    raise AssertionError(f"no exercise cell defines {name}()")


def _errors(nb) -> list[int]:
    NotebookClient(nb, kernel_name="python3", allow_errors=True, timeout=300,
                   resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    return [i for i, c in enumerate(nb.cells) if c.cell_type == "code"
            and any(o.output_type == "error" for o in c.get("outputs", []))]


@pytest.mark.parametrize("name", sorted(DELEGATING))
@pytest.mark.parametrize("answer", ["solution", "delegating"])
def test_delegating_answer_fails_the_check(name: str, answer: str, monkeypatch):
    monkeypatch.setenv("FER_PROFILE", "smoke")
    solution = read(NOTEBOOK)
    exercise, check = _exercise_pair(solution, name)
    run = setup_prefix(solution)
    cell = solution.cells[exercise] if answer == "solution" else nbformat.v4.new_code_cell(DELEGATING[name])
    run.cells += [cell, solution.cells[check]]
    expected = [] if answer == "solution" else [len(run.cells) - 1]
    assert _errors(run) == expected, f"{answer} answer to {name}(): errors in cells {_errors(run)}"
