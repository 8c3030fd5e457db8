"""nbgrader cell metadata, derived from the course's exercise tags.

The notebooks mark exercises with cell tags: a code cell tagged ``exercise`` holds the answer
between ``### BEGIN SOLUTION`` and ``### END SOLUTION``; the code cell tagged ``exercise-check``
after it asserts on the answer. nbgrader (``nbgrader generate_assignment``) needs its own cell
metadata as well (``metadata.nbgrader``, schema version 3), otherwise its ``ClearSolutions``
step stops with "Solution region detected in a non-solution cell". This module writes that
metadata from the tags, deterministically:

- ``exercise`` cell -> ``solution: true, grade: false, locked: false``;
- ``exercise-check`` cell -> ``grade: true, solution: false, locked: true, points: 1``
  (an autograder test cell, read-only for students);
- ``rubric`` cell (a markdown cell holding the instructor's ``### BEGIN MARK SCHEME`` ...
  ``### END MARK SCHEME`` region of an open-ended exercise) -> a manually graded *task* cell:
  ``task: true, grade: false, solution: false, locked: true, points: 2``. nbgrader's
  ``ClearMarkScheme`` step removes the region only from task cells (elsewhere it stops with
  "Mark scheme region detected in a non-grade cell");
- ``grade_id``: ``ex<k>_<name>`` for the k-th exercise (``<name>``: the first function or class
  the cell defines, else ``answer``), ``ex<k>_<name>_check`` (``_check2``, ... for further checks);
  a rubric right after an exercise's cells is ``ex<k>_<name>_rubric``; a rubric of an exercise
  without code (markdown only) counts as the next exercise, ``ex<k+1>_open_rubric``.

Every other cell loses any ``nbgrader`` metadata, so re-running is idempotent.

    python -m fer_utils.tools.grading annotate notebooks/   # write the metadata
    python -m fer_utils.tools.grading check notebooks/      # exit 1 when it is missing or stale
"""
from __future__ import annotations

import argparse
import ast
import re
import sys
from pathlib import Path

import nbformat

EXERCISE, CHECK, RUBRIC = "exercise", "exercise-check", "rubric"
SCHEMA_VERSION = 3
POINTS_PER_CHECK = 1
POINTS_PER_RUBRIC = 2
BEGIN_MARK_SCHEME, END_MARK_SCHEME = "### BEGIN MARK SCHEME", "### END MARK SCHEME"


def _tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def _answer_name(source: str) -> str:
    """The first function or class an exercise cell defines (for a readable grade_id)."""
    try:
        body = ast.parse("\n".join("" if l.lstrip().startswith(("%", "!")) else l
                                   for l in source.splitlines())).body
    except SyntaxError:
        body = []
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)):
            return re.sub(r"[^A-Za-z0-9_]", "_", node.name)
    return "answer"


def nbgrader_metadata(nb, name: str = "notebook") -> list[dict | None]:
    """The ``metadata.nbgrader`` each cell of ``nb`` should carry (``None``: no nbgrader metadata).

    Raises ``ValueError`` naming the notebook and cell for a check cell before any exercise,
    a cell tagged both ways, an exercise cell without a solution region, or a rubric cell that
    is not markdown with one mark-scheme region.
    """
    wanted: list[dict | None] = []
    k, current, checks = 0, None, 0
    for i, cell in enumerate(nb.cells):
        tags = _tags(cell)
        if sum(tag in tags for tag in (EXERCISE, CHECK, RUBRIC)) > 1:
            raise ValueError(f"{name}, cell {i}: tagged both ways (at most one of {EXERCISE!r}, {CHECK!r}, "
                             f"{RUBRIC!r})")
        if RUBRIC in tags:
            source = cell.source.strip()
            if (cell.cell_type != "markdown" or not source.startswith(BEGIN_MARK_SCHEME)
                    or not source.endswith(END_MARK_SCHEME) or source.count(BEGIN_MARK_SCHEME) != 1):
                raise ValueError(f"{name}, cell {i}: a {RUBRIC!r} cell must be markdown holding one "
                                 f"{BEGIN_MARK_SCHEME} ... {END_MARK_SCHEME} region")
            previous = _tags(nb.cells[i - 1]) if i else []
            if current is not None and (EXERCISE in previous or CHECK in previous):
                grade_id = f"{current}_rubric"
            else:                                   # an exercise without code: it counts as the next one
                k += 1
                grade_id = f"ex{k}_open_rubric"
            current, checks = None, 0
            wanted.append({"grade": False, "grade_id": grade_id, "locked": True, "points": POINTS_PER_RUBRIC,
                           "schema_version": SCHEMA_VERSION, "solution": False, "task": True})
        elif EXERCISE in tags:
            if cell.cell_type != "code" or "### BEGIN SOLUTION" not in cell.source:
                raise ValueError(f"{name}, cell {i}: an {EXERCISE!r} cell must be code with a "
                                 "### BEGIN SOLUTION region")
            k += 1
            current, checks = f"ex{k}_{_answer_name(cell.source)}", 0
            wanted.append({"grade": False, "grade_id": current, "locked": False,
                           "schema_version": SCHEMA_VERSION, "solution": True, "task": False})
        elif CHECK in tags:
            if current is None or cell.cell_type != "code":
                raise ValueError(f"{name}, cell {i}: an {CHECK!r} code cell must follow an {EXERCISE!r} cell")
            checks += 1
            suffix = "_check" if checks == 1 else f"_check{checks}"
            wanted.append({"grade": True, "grade_id": current + suffix, "locked": True,
                           "points": POINTS_PER_CHECK, "schema_version": SCHEMA_VERSION,
                           "solution": False, "task": False})
        else:
            wanted.append(None)
    return wanted


def annotate_notebook(nb, name: str = "notebook") -> int:
    """Write the derived nbgrader metadata into ``nb`` in place; return the number of cells changed."""
    changed = 0
    for cell, meta in zip(nb.cells, nbgrader_metadata(nb, name)):
        have = cell.metadata.get("nbgrader")
        if meta is None:
            if have is not None:
                del cell.metadata["nbgrader"]
                changed += 1
        elif have != meta:
            cell.metadata["nbgrader"] = meta
            changed += 1
    return changed


def stale_cells(nb, name: str = "notebook") -> list[str]:
    """One line per cell whose nbgrader metadata is missing or differs from the derived one."""
    problems = []
    for i, (cell, meta) in enumerate(zip(nb.cells, nbgrader_metadata(nb, name))):
        have = cell.metadata.get("nbgrader")
        if have != meta:
            problems.append(f"{name}, cell {i}: nbgrader metadata is {have!r}, expected {meta!r}")
    return problems


def _notebooks(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(sorted(p.glob("*.ipynb")))
        elif p.suffix == ".ipynb" and p.is_file():
            out.append(p)
        else:
            raise SystemExit(f"grading: {p} is neither a notebook nor a folder of notebooks")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fer_utils.tools.grading",
                                     description="nbgrader metadata from the exercise tags.")
    parser.add_argument("command", choices=("annotate", "check"))
    parser.add_argument("paths", type=Path, nargs="+", help="notebooks or folders of notebooks")
    args = parser.parse_args(argv)
    problems: list[str] = []
    for path in _notebooks(args.paths):
        nb = nbformat.read(path, as_version=4)
        if args.command == "annotate":
            changed = annotate_notebook(nb, path.name)
            if changed:
                nbformat.write(nb, path)
            print(f"{path}: {changed} cell(s) updated")
        else:
            problems += stale_cells(nb, path.name)
    for line in problems:
        print(line)
    if problems:
        print("run: python -m fer_utils.tools.grading annotate notebooks")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
