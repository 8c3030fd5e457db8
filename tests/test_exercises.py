"""Instructor exercises: the generator, and the student versions of every notebook.

An exercise is a code cell tagged ``exercise`` holding a BEGIN/END SOLUTION
region, followed by a cell tagged ``exercise-check``. Exercise and check cells
are self-contained given the notebook's set-up cell, so they can be run on
their own: the solution versions must pass every check and the student
versions must fail at exactly the check cells and nowhere else.
"""
from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from fer_utils.tools.exercises import make_student_notebook, make_student_versions, strip_solutions
from nbtools import NOTEBOOKS, ROOT, read, setup_prefix

SOLUTION = """def double(x):
    ### BEGIN SOLUTION
    ### HINT: multiply by two
    return 2 * x
    ### END SOLUTION
"""


def test_strip_solutions_keeps_indentation_and_hint():
    student = strip_solutions(SOLUTION)
    assert "return 2 * x" not in student
    namespace: dict = {}
    exec(student, namespace)
    with pytest.raises(NotImplementedError, match="Exercise: multiply by two"):
        namespace["double"](1)


def test_strip_solutions_rejects_unclosed_region():
    with pytest.raises(ValueError, match="never closed"):
        strip_solutions("### BEGIN SOLUTION\nx = 1\n", "nb.ipynb, cell 3")


def _tagged(nb, tag: str) -> list[int]:
    return [i for i, c in enumerate(nb.cells) if tag in c.metadata.get("tags", [])]


WITH_EXERCISES = [p for p in NOTEBOOKS if _tagged(read(p), "exercise")]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_notebook_has_two_exercises(path: Path):
    nb = read(path)
    exercises, checks = _tagged(nb, "exercise"), _tagged(nb, "exercise-check")
    assert len(exercises) >= 2, f"{path.name}: at least two exercises expected"
    assert len(checks) >= len(exercises), f"{path.name}: every exercise needs a check cell"
    for i in exercises:
        assert "### BEGIN SOLUTION" in nb.cells[i].source, f"{path.name} cell {i}: no solution region"


def _defined_names(source: str) -> set[str]:
    names = set()
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return names


def _python_only(source: str) -> str:
    """Drop IPython magics and shell escapes so the cell parses as Python."""
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())


def _exercise_only(nb):
    """Set-up cells plus the exercise and check cells, in order."""
    keep = setup_prefix(nb)
    for i in sorted(_tagged(nb, "exercise") + _tagged(nb, "exercise-check")):
        keep.cells.append(nb.cells[i])
    return keep


def _errors(nb) -> list[int]:
    NotebookClient(nb, kernel_name="python3", allow_errors=True, timeout=300,
                   resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    return [i for i, c in enumerate(nb.cells) if c.cell_type == "code"
            and any(o.output_type == "error" for o in c.get("outputs", []))]


@pytest.mark.parametrize("path", WITH_EXERCISES, ids=[p.stem for p in WITH_EXERCISES])
def test_student_version_fails_exactly_at_the_checks(path: Path):
    solution = read(path)
    student = make_student_notebook(solution, path.name)
    # Only exercise cells change.
    changed = [i for i, (a, b) in enumerate(zip(solution.cells, student.cells)) if a.source != b.source]
    assert changed == _tagged(solution, "exercise")
    # Nothing outside the exercises uses what an exercise defines.
    exercise_names = set().union(*(_defined_names(solution.cells[i].source) for i in changed))
    for i, cell in enumerate(solution.cells):
        if cell.cell_type == "code" and i not in changed and "exercise-check" not in cell.metadata.get("tags", []):
            used = {n.id for n in ast.walk(ast.parse(_python_only(cell.source))) if isinstance(n, ast.Name)}
            assert not used & exercise_names, f"cell {i} uses exercise names {used & exercise_names}"
    # Run set-up + exercises + checks: the solutions pass, the stubs fail exactly at the checks.
    assert _errors(_exercise_only(solution)) == []
    student_run = _exercise_only(student)
    check_positions = [i for i, c in enumerate(student_run.cells) if "exercise-check" in c.metadata.get("tags", [])]
    assert _errors(student_run) == check_positions


def test_cli_writes_student_versions(tmp_path: Path):
    written = make_student_versions(ROOT / "notebooks", tmp_path)
    assert [p.name for p in written] == [p.name for p in NOTEBOOKS]
    for path in written:
        text = path.read_text()
        assert "### BEGIN SOLUTION" not in text
        assert all(not c.get("outputs") for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")


def _delegating_runs(nb) -> list[tuple[int, str]]:
    """(exercise cell, delegating answer) pairs: an exercise cell's ``metadata.fer.delegates`` lists answers
    that only call the package or library function the exercise asks the student to write."""
    return [(i, answer) for i in _tagged(nb, "exercise")
            for answer in nb.cells[i].metadata.get("fer", {}).get("delegates", [])]


WITH_DELEGATES = [p for p in WITH_EXERCISES if _delegating_runs(read(p))]


@pytest.mark.parametrize("path", WITH_DELEGATES, ids=[p.stem for p in WITH_DELEGATES])
def test_delegating_answers_fail_their_checks(path: Path):
    """Every listed delegating answer, run in place of the solution, makes the exercise's check cell fail."""
    nb = read(path)
    runs = _delegating_runs(nb)
    checks = _tagged(nb, "exercise-check")
    program = setup_prefix(nb)
    positions = []
    for i, answer in runs:
        check = min(c for c in checks if c > i)
        program.cells.append(nbformat.v4.new_code_cell(answer))
        program.cells.append(nb.cells[check])
        positions.append(len(program.cells) - 1)
    failed = _errors(program)
    missed = [runs[k] for k, pos in enumerate(positions) if pos not in failed]
    assert not missed, f"{path.name}: these delegating answers pass their checks: {missed}"
    assert all(pos in positions for pos in failed), "only the check cells may fail"
