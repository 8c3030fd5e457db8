"""nbgrader works on the committed notebooks: metadata derived from the exercise tags, and
nbgrader's own ``generate_assignment`` run on every notebook in a temporary course folder (its
solutions stubbed, its rubric cells emptied by ClearMarkScheme, nothing else changed).

If ``test_committed_metadata_is_current`` fails, run
``python -m fer_utils.tools.grading annotate notebooks`` and commit the notebooks.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from fer_utils.tools.grading import annotate_notebook, nbgrader_metadata, stale_cells
from nbtools import NOTEBOOKS, read

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
MARK_BEGIN, MARK_END = "### BEGIN MARK SCHEME", "### END MARK SCHEME"
RUBRIC_TEXT = f"{MARK_BEGIN}\n**Rubric (instructors).** What a good answer shows: x. How to check it: y.\n{MARK_END}"


def _nb(*cells):
    nb = nbformat.v4.new_notebook()
    for kind, source, tags in cells:
        make = nbformat.v4.new_code_cell if kind == "code" else nbformat.v4.new_markdown_cell
        nb.cells.append(make(source, metadata={"tags": list(tags)}))
    return nb


EXAMPLE = [("markdown", "# title", ()),
           ("code", f"def double(x):\n    {BEGIN}\n    return 2 * x\n    {END}\n", ("exercise",)),
           ("code", "assert double(2) == 4", ("exercise-check",)),
           ("code", "assert double(3) == 6", ("exercise-check",)),
           ("code", f"{BEGIN}\ny = 1\n{END}\n", ("exercise",)),
           ("code", "assert y == 1", ("exercise-check",)),
           ("markdown", RUBRIC_TEXT, ("rubric",)),                       # an open-ended exercise with code
           ("markdown", "**Exercise 3 (open-ended):** discuss.", ()),
           ("markdown", RUBRIC_TEXT, ("rubric",))]                       # ... and one without


def test_metadata_follows_the_tags():
    meta = nbgrader_metadata(_nb(*EXAMPLE))
    assert meta[0] is None
    assert meta[1] == {"grade": False, "grade_id": "ex1_double", "locked": False, "schema_version": 3,
                       "solution": True, "task": False}
    assert [m["grade_id"] for m in meta[2:4]] == ["ex1_double_check", "ex1_double_check2"]
    assert all(m["grade"] and m["locked"] and m["points"] == 1 and not m["solution"] for m in meta[2:4])
    assert meta[4]["grade_id"] == "ex2_answer" and meta[5]["grade_id"] == "ex2_answer_check"
    task = {"grade": False, "locked": True, "points": 2, "schema_version": 3, "solution": False, "task": True}
    assert meta[6] == {**task, "grade_id": "ex2_answer_rubric"}
    assert meta[7] is None and meta[8] == {**task, "grade_id": "ex3_open_rubric"}


def test_annotate_is_idempotent_and_removes_stray_metadata():
    nb = _nb(*EXAMPLE)
    nb.cells[0].metadata["nbgrader"] = {"solution": True}
    assert stale_cells(nb)
    assert annotate_notebook(nb) == 8
    assert annotate_notebook(nb) == 0 and stale_cells(nb) == []
    assert "nbgrader" not in nb.cells[0].metadata
    nb.cells[2].metadata["nbgrader"]["points"] = 5           # a hand edit is reported as stale
    assert stale_cells(nb) == [f"notebook, cell 2: nbgrader metadata is {nb.cells[2].metadata['nbgrader']!r}, "
                               f"expected {nbgrader_metadata(nb)[2]!r}"]


@pytest.mark.parametrize("cells, message", [
    ([("code", "assert True", ("exercise-check",))], "must follow"),
    ([("code", "x = 1", ("exercise",))], "BEGIN SOLUTION region"),
    ([("code", f"{BEGIN}\n{END}", ("exercise", "exercise-check"))], "tagged both"),
    ([("markdown", RUBRIC_TEXT, ("rubric", "exercise-check"))], "tagged both"),
    ([("code", RUBRIC_TEXT, ("rubric",))], "must be markdown holding one"),
    ([("markdown", "**Rubric (instructors).** no markers", ("rubric",))], "must be markdown holding one"),
])
def test_bad_tags_are_refused_with_the_cell(cells, message):
    with pytest.raises(ValueError, match=f"nb.ipynb, cell 0: .*{message}"):
        nbgrader_metadata(_nb(*cells), "nb.ipynb")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_committed_metadata_is_current(path: Path):
    problems = stale_cells(read(path), path.name)
    assert not problems, ("nbgrader metadata missing or out of date (run `python -m fer_utils.tools.grading "
                          "annotate notebooks`):\n" + "\n".join(problems[:5]))


def _solution_lines(source: str) -> list[str]:
    lines, inside = [], False
    for line in source.splitlines():
        if line.strip() in (BEGIN, END):
            inside = line.strip() == BEGIN
        elif inside and line.strip() and not line.strip().startswith("###"):
            lines.append(line)
    return lines


def test_nbgrader_generate_assignment_on_every_notebook(tmp_path: Path):
    assignment = tmp_path / "source" / "course"
    assignment.mkdir(parents=True)
    for path in NOTEBOOKS:
        shutil.copy(path, assignment / path.name)
    bin_dir = Path(sys.executable).parent                   # nbgrader calls `alembic` from PATH
    env = dict(os.environ, PATH=os.pathsep.join([str(bin_dir), os.environ.get("PATH", "")]))
    done = subprocess.run([str(bin_dir / "nbgrader"), "generate_assignment", "course",
                           f"--CourseDirectory.root={tmp_path}", f"--db=sqlite:///{tmp_path / 'gradebook.db'}"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for path in NOTEBOOKS:
        source, release = read(path), read(tmp_path / "release" / "course" / path.name)
        assert len(release.cells) == len(source.cells), path.name
        n_solutions = n_checks = 0
        for i, (before, after) in enumerate(zip(source.cells, release.cells)):
            tags = before.metadata.get("tags", [])
            where = f"{path.name}, cell {i}"
            if before.cell_type == "code":
                assert after.outputs == [], f"{where}: outputs not cleared"
            if "rubric" in tags:                              # ClearMarkScheme removed the whole region
                assert MARK_BEGIN in before.source, where
                assert "MARK SCHEME" not in after.source and "Rubric (instructors)" not in after.source, where
                assert after.source.strip() == "", f"{where}: rubric text left: {after.source[:80]!r}"
                assert after.metadata["nbgrader"]["task"], where
            elif "exercise" in tags:
                n_solutions += 1
                assert BEGIN not in after.source and "raise NotImplementedError" in after.source, where
                for line in _solution_lines(before.source):
                    assert line not in after.source.splitlines(), f"{where}: solution line kept: {line!r}"
            elif "exercise-check" in tags:
                n_checks += 1
                assert after.source == before.source, f"{where}: check cell changed"
                assert after.metadata["nbgrader"]["locked"] and after.metadata["nbgrader"]["grade"], where
            else:
                assert after.source == before.source, f"{where}: changed although it is no exercise"
        assert n_solutions >= 2 and n_checks >= n_solutions, path.name
        text = (tmp_path / "release" / "course" / path.name).read_text()
        assert "MARK SCHEME" not in text and "Rubric (instructors)" not in text, f"{path.name}: rubric left"
