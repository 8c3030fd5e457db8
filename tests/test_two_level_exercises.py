"""Notebook 04's exercise checks fail an answer that merely calls the course's own function.

Each case replaces an exercise's solution with a delegating answer (``1 - ccc_loss(...)``, the
package's ``LevelAttention``), runs the notebook's set-up cell, that exercise and its check (the
``tests/test_exercises.py`` mechanism), and expects the check cell, and only it, to fail.
"""
from __future__ import annotations

import nbformat
import pytest
from nbclient import NotebookClient

from nbtools import ROOT, read, setup_prefix

NOTEBOOK = ROOT / "notebooks" / "04_two_level_attention.ipynb"

DELEGATING = {
    "concordance": [
        "def concordance(pred, target):\n    return 1 - ccc_loss(pred, target)\n",
        "from fer_utils.metrics import ccc\n\ndef concordance(pred, target):\n    return ccc(target, pred)\n",
        "def concordance(pred, target):\n    return 1 - va_loss('ccc', ('valence',))(pred[:, None], target[:, None])\n",
    ],
    "attention_pool": [
        "def attention_pool(states, W, b, context):\n"
        "    pool = LevelAttention(W.shape[1], W.shape[0])\n"
        "    with torch.no_grad():\n"
        "        pool.W.weight.copy_(W); pool.W.bias.copy_(b); pool.context.copy_(context)\n"
        "    return pool(states)\n",
    ],
}


def _exercise_and_check(nb, name: str):
    """Indices of the exercise cell defining ``name`` and of the check cell after it."""
    for i, cell in enumerate(nb.cells):
        if "exercise" in cell.metadata.get("tags", []) and f"def {name}(" in cell.source:
            return i, i + 1
    raise AssertionError(f"no exercise defines {name}()")


@pytest.mark.parametrize("name,answer", [(n, a) for n, answers in DELEGATING.items() for a in answers])
def test_delegating_answer_fails_the_check(name, answer):
    nb = read(NOTEBOOK)
    exercise, check = _exercise_and_check(nb, name)
    assert "exercise-check" in nb.cells[check].metadata.get("tags", [])
    run = setup_prefix(nb)
    run.cells += [nbformat.v4.new_code_cell(answer), nb.cells[check]]
    NotebookClient(run, kernel_name="python3", allow_errors=True, timeout=300,
                   resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    errors = [i for i, c in enumerate(run.cells) if c.cell_type == "code"
              and any(o.output_type == "error" for o in c.get("outputs", []))]
    assert errors == [len(run.cells) - 1], f"the check of {name}() should fail a delegating answer (errors in {errors})"
    assert "switched off" in str(run.cells[-1].outputs[-1].get("evalue", ""))
