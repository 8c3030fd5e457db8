"""The package's layout rules: imports only go down the layers; files and functions stay small.

Layers, lowest first (a module may import from its own layer and the ones below):

0. ``labels``, ``utils``, ``data.convention``: constants and small helpers;
1. ``models``: networks only, on torch (they may import other model files and ``labels``);
2. ``metrics``, ``data`` (SynthFaces, readers, splits, transforms), ``assets``: never a model;
3. ``losses``, ``weights`` (files -> models), ``faces`` (may use ``models.mtcnn`` and ``weights``),
   ``explain``, ``viz``;
4. ``train``, ``recipes``, ``profiles`` (its table reads the recipes): what trains a model;
5. ``tools`` (the course's own machinery) and the shims ``course``, ``exercises``.

Every ``import`` counts, also those inside functions.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "fer_utils"
MAX_FILE_LINES, MAX_FUNCTION_LINES = 500, 60
#: Files still over a limit (file or function length), and why (none today).
KNOWN_TOO_LONG: set[str] = set()

LAYERS: dict[str, int] = {
    "labels": 0, "utils": 0, "data.convention": 0,
    "models": 1,
    "metrics": 2, "data": 2, "assets": 2,
    "losses": 3, "weights": 3, "faces": 3, "explain": 3, "viz": 3,
    "train": 4, "recipes": 4, "profiles": 4,
    "tools": 5, "course": 5, "exercises": 5, "": 5,
}
#: Imports that cross the layers on purpose (importer prefix, imported prefix).
ALLOWED: set[tuple[str, str]] = {
    ("data.sequences", "faces"),  # MGLN's part crops use faces.part_crops: one part-crop function
}


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        out[".".join(p for p in parts if p != "__init__")] = path
    return out


def _layer(module: str) -> int:
    """The layer of the longest matching prefix in :data:`LAYERS`."""
    parts = module.split(".")
    for n in range(len(parts), -1, -1):
        if ".".join(parts[:n]) in LAYERS:
            return LAYERS[".".join(parts[:n])]
    raise KeyError(module)


def _imports(path: Path, modules: dict[str, Path]) -> list[tuple[int, str]]:
    """(line, fer_utils module without the prefix) for every import of the package in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}"[10:] in modules else node.module
                     for a in node.names]
        else:
            continue
        found += [(node.lineno, n[len("fer_utils."):] if n != "fer_utils" else "") for n in names
                  if n == "fer_utils" or n.startswith("fer_utils.")]
    return found


def _allowed(importer: str, imported: str) -> bool:
    return any(importer.startswith(a) and imported.startswith(b) for a, b in ALLOWED)


def test_imports_only_go_down_the_layers():
    modules = _modules()
    wrong = []
    for module, path in modules.items():
        for line, imported in _imports(path, modules):
            if _layer(imported) > _layer(module) and not _allowed(module, imported):
                wrong.append(f"fer_utils/{path.relative_to(PACKAGE)}:{line} (layer {_layer(module)}) imports "
                             f"fer_utils.{imported} (layer {_layer(imported)})")
    assert not wrong, "imports from a lower layer to a higher one:\n" + "\n".join(wrong)


@pytest.mark.parametrize("module", ["models.ddamfn", "models.two_level", "models.mtcnn", "models.mini_xception"])
def test_models_import_only_torch_level_code(module):
    modules = _modules()
    others = {m for _, m in _imports(modules[module], modules)}
    assert others <= {"models", "labels"} | {m for m in others if m.startswith("models.")}, others


def test_the_layer_test_can_fail(tmp_path):
    """A model file that imports fer_utils.faces is caught (so the test above is not vacuous)."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from fer_utils.faces import align\n")
    assert _imports(bad, _modules()) == [(2, "faces")] and _layer("faces") > _layer("models.bad")


def _too_long() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = str(path.relative_to(PACKAGE))
        text = path.read_text()
        if rel in KNOWN_TOO_LONG:
            continue
        if len(text.splitlines()) > MAX_FILE_LINES:
            found.append(f"fer_utils/{rel}: {len(text.splitlines())} lines (at most {MAX_FILE_LINES})")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    found.append(f"fer_utils/{rel}:{node.lineno} {node.name}() is {length} lines "
                                 f"(at most {MAX_FUNCTION_LINES})")
    return found


def test_files_and_functions_are_small():
    too_long = _too_long()
    assert not too_long, "\n".join(too_long)


def test_known_exceptions_are_still_needed():
    """An exception that no longer applies is removed from KNOWN_TOO_LONG."""
    for rel in KNOWN_TOO_LONG:
        path = PACKAGE / rel
        assert not path.exists() or len(path.read_text().splitlines()) > MAX_FILE_LINES, f"{rel} is short now"
