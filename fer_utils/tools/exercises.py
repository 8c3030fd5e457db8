"""Student versions of the notebooks (nbgrader-compatible markers).

In a solution notebook, an exercise is a code cell tagged ``exercise`` whose
answer sits between ``### BEGIN SOLUTION`` and ``### END SOLUTION``, followed
by a code cell tagged ``exercise-check`` that asserts on behaviour. An optional
``### HINT: ...`` line inside the region becomes the stub's message.

An open-ended exercise has an instructor rubric: a markdown cell tagged
``rubric`` holding::

    ### BEGIN MARK SCHEME
    **Rubric (instructors).** What a good answer shows: ... How to check it: ...
    ### END MARK SCHEME

``fer-exercises make notebooks/ student/`` writes, for every notebook, a copy
where each solution region is replaced by::

    raise NotImplementedError("Exercise: <hint>")

at the region's indentation, every rubric cell is dropped (and a mark-scheme
region anywhere else is cut out), and every output is cleared. Everything else,
the check cells included, stays as it is. nbgrader reads the same markers, so
``nbgrader generate_assignment`` also works on these notebooks (its
ClearMarkScheme step empties the rubric cells, which
``python -m fer_utils.tools.grading annotate`` marks as nbgrader task cells).
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
HINT = re.compile(r"^\s*### HINT:\s*(.*)$")
BEGIN_MARK_SCHEME = "### BEGIN MARK SCHEME"
END_MARK_SCHEME = "### END MARK SCHEME"
RUBRIC = "rubric"            # the tag of an instructor rubric cell (dropped from student versions)


def strip_solutions(source: str, where: str = "cell") -> str:
    """Replace every BEGIN/END SOLUTION region of ``source`` by a stub that raises.

    Raises ``ValueError`` naming ``where`` for an unclosed or nested region.
    """
    out: list[str] = []
    inside, indent, hint = False, "", "complete this exercise"
    for number, line in enumerate(source.splitlines(), start=1):
        stripped = line.strip()
        if stripped == BEGIN:
            if inside:
                raise ValueError(f"{where}, line {number}: nested {BEGIN}")
            inside, indent, hint = True, line[: len(line) - len(line.lstrip())], "complete this exercise"
            continue
        if stripped == END:
            if not inside:
                raise ValueError(f"{where}, line {number}: {END} without {BEGIN}")
            out.append(f"{indent}# YOUR CODE HERE")
            out.append(f"{indent}raise NotImplementedError({('Exercise: ' + hint)!r})")
            inside = False
            continue
        if inside:
            match = HINT.match(line)
            if match:
                hint = match.group(1)
            continue
        out.append(line)
    if inside:
        raise ValueError(f"{where}: {BEGIN} is never closed by {END}")
    return "\n".join(out)


def strip_mark_scheme(source: str, where: str = "cell") -> str:
    """``source`` without its BEGIN/END MARK SCHEME regions (the marker lines included).

    Raises ``ValueError`` naming ``where`` for an unclosed or nested region.
    """
    out: list[str] = []
    inside = False
    for number, line in enumerate(source.splitlines(), start=1):
        if BEGIN_MARK_SCHEME in line:
            if inside:
                raise ValueError(f"{where}, line {number}: nested {BEGIN_MARK_SCHEME}")
            inside = True
        elif END_MARK_SCHEME in line:
            if not inside:
                raise ValueError(f"{where}, line {number}: {END_MARK_SCHEME} without {BEGIN_MARK_SCHEME}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"{where}: {BEGIN_MARK_SCHEME} is never closed by {END_MARK_SCHEME}")
    return "\n".join(out)


def is_rubric(cell) -> bool:
    """Whether ``cell`` is an instructor rubric (tagged ``rubric``)."""
    return RUBRIC in cell.get("metadata", {}).get("tags", [])


def make_student_notebook(nb, name: str = "notebook"):
    """A copy of ``nb`` with solutions stubbed, rubric cells dropped and outputs cleared."""
    student = nbformat.from_dict(nb)
    student.cells = [cell for cell in student.cells if not is_rubric(cell)]
    for i, cell in enumerate(student.cells):
        if BEGIN_MARK_SCHEME in cell.source or END_MARK_SCHEME in cell.source:
            cell.source = strip_mark_scheme(cell.source, f"{name}, cell {i}")
        if cell.cell_type != "code":
            continue
        if BEGIN in cell.source:
            cell.source = strip_solutions(cell.source, f"{name}, cell {i}")
        cell.outputs = []
        cell.execution_count = None
    return student


def make_student_versions(src: Path, dst: Path) -> list[Path]:
    """Write a student version of every notebook in ``src`` into ``dst``; return the written paths."""
    dst.mkdir(parents=True, exist_ok=True)
    written = []
    for path in sorted(Path(src).glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        nbformat.write(make_student_notebook(nb, path.name), dst / path.name)
        written.append(dst / path.name)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="fer-exercises", description="Write student versions of the notebooks.")
    sub = parser.add_subparsers(dest="command", required=True)
    make = sub.add_parser("make", help="fer-exercises make notebooks/ student/")
    make.add_argument("src", type=Path)
    make.add_argument("dst", type=Path)
    args = parser.parse_args(argv)
    if not args.src.is_dir():
        raise SystemExit(f"fer-exercises: {args.src} is not a folder of notebooks")
    for path in make_student_versions(args.src, args.dst):
        print(f"wrote {path}")


if __name__ == "__main__":
    main(sys.argv[1:])
