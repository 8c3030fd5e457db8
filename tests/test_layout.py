"""The package's layout rules: every module has a layer, imports only go down the layers; files and
functions stay small; a training loss is backpropagated in one place.

Layers, lowest first (a module may import from its own layer and the ones below):

0. ``labels``, ``utils``, ``data.convention``: constants and small helpers;
1. ``models``: networks only, on torch (they may import other model files and ``labels``);
2. ``metrics``, ``data`` (SynthFaces, readers, splits, transforms), ``assets``: never a model;
3. ``losses``, ``weights`` (files -> models), ``faces`` (may use ``models.mtcnn`` and ``weights``),
   ``explain``, ``scoring``, ``viz``;
4. ``train``, ``recipes``, ``profiles`` (its table reads the recipes), ``zoo``: what trains and keeps a model;
5. what people run: ``course`` (a notebook's set-up) and ``cli`` (``fer-train``);
6. ``tools``: maintainers' and instructors' machinery, which nothing else imports.

Every ``import`` counts, also those inside functions, and so do ``importlib.import_module("fer_utils...")``
string imports (an f-string counts by its constant prefix; ``{__name__}`` is the importing module).
A module missing from :data:`MODULES` fails: a new file is given its layer here on purpose.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "fer_utils"
MAX_FILE_LINES, MAX_FUNCTION_LINES = 500, 60

_LAYER_OF_GROUP: dict[int, tuple[str, ...]] = {
    0: ("labels", "utils", "data.convention"),
    1: ("models", "models.abaw", "models.baselines", "models.ddamfn", "models.deep_emotion", "models.mgln",
        "models.faceapi", "models.mini_xception", "models.mtcnn", "models.poster", "models.poster_blocks", "models.ran",
        "models.scn", "models.two_level"),
    2: ("metrics", "stats", "calibration", "fairness", "assets", "data", "data.clips", "data.datasets", "data.noise", "data.sequences", "data.sources",
        "data.synth_draw", "data.synth_pose", "data.synth_sample", "data.synth_scenario", "data.synth_template",
        "data.synthetic", "data.transforms",
        "data.va", "data.formats", "data.formats.affectnet", "data.formats.affwild2", "data.formats.ckplus",
        "data.formats.common", "data.formats.dataset", "data.formats.errors", "data.formats.images", "data.formats.fer2013", "data.formats.fer2013_csv",
        "data.formats.ferg", "data.formats.jaffe", "data.formats.oulu", "data.formats.rafdb"),
    3: ("losses", "weights", "faces", "explain", "export", "scoring", "viz"),
    4: ("train", "experiments", "profiles", "zoo", "recipes", "recipes.abaw", "recipes.baselines", "recipes.ddamfn",
        "recipes.deep_emotion", "recipes.mgln", "recipes.poster", "recipes.poster_experiments", "recipes.poster_pretrain", "recipes.ran", "recipes.scn", "recipes.two_level"),
    5: ("", "course", "cli", "cli.checkpoint", "cli.fer_export", "cli.fer_predict", "cli.fer_train", "cli.predict_io", "cli.predict_models",
        "cli.train_loop"),
    6: ("tools", "tools.claims", "tools.exercises", "tools.grading", "tools.runner", "tools.site", "tools.timings"),
}
#: Every module of the package (``""`` is ``fer_utils/__init__.py``) and its layer.
MODULES: dict[str, int] = {name: layer for layer, names in _LAYER_OF_GROUP.items() for name in names}
#: Imports that cross the layers on purpose (importer prefix, imported prefix).
ALLOWED: set[tuple[str, str]] = {
    ("data.sequences", "faces"),  # MGLN's part crops use faces.part_crops: one part-crop function
}


def _modules(package: Path = PACKAGE) -> dict[str, Path]:
    out = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package).with_suffix("").parts
        out[".".join(p for p in parts if p != "__init__")] = path
    return out


def _layer(module: str) -> int:
    """The layer of ``module``, or of the package module it names an attribute of (``models.logits_of``)."""
    parts = module.split(".")
    for n in range(len(parts), -1, -1):
        if ".".join(parts[:n]) in MODULES:
            return MODULES[".".join(parts[:n])]
    raise KeyError(module)


def _string_import(node: ast.Call, importer: str) -> str | None:
    """The module an ``importlib.import_module(...)`` call names (its constant prefix for an f-string)."""
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    if name != "import_module" or not node.args:
        return None
    arg = node.args[0]
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg.value
    if isinstance(arg, ast.JoinedStr):
        text = ""
        for part in arg.values:
            if isinstance(part, ast.Constant):
                text += str(part.value)
            elif isinstance(part.value, ast.Name) and part.value.id == "__name__":
                text += "fer_utils." + importer if importer else "fer_utils"
            else:
                break
        return text.rstrip(".")
    return None


def _imports(path: Path, modules: dict[str, Path], importer: str = "") -> list[tuple[int, str]]:
    """(line, fer_utils module without the prefix) for every import of the package in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}"[10:] in modules else node.module
                     for a in node.names]
        elif isinstance(node, ast.Call) and _string_import(node, importer):
            names = [_string_import(node, importer)]
        else:
            continue
        found += [(node.lineno, n[len("fer_utils."):] if n != "fer_utils" else "") for n in names
                  if n == "fer_utils" or n.startswith("fer_utils.")]
    return found


def _allowed(importer: str, imported: str) -> bool:
    return any(importer.startswith(a) and imported.startswith(b) for a, b in ALLOWED)


def test_every_module_has_a_layer():
    modules = set(_modules())
    assert modules, "no modules found: the test would check nothing"
    assert modules == set(MODULES), (f"modules without a layer: {sorted(modules - set(MODULES))}; "
                                     f"listed but gone: {sorted(set(MODULES) - modules)}")


def _wrong_imports(modules: dict[str, Path]) -> list[str]:
    wrong = []
    for module, path in modules.items():
        for line, imported in _imports(path, modules, module):
            if _layer(imported) > _layer(module) and not _allowed(module, imported):
                wrong.append(f"fer_utils/{module}:{line} (layer {_layer(module)}) imports "
                             f"fer_utils.{imported} (layer {_layer(imported)})")
    return wrong


def test_imports_only_go_down_the_layers():
    modules = _modules()
    assert len(modules) == len(MODULES)
    wrong = _wrong_imports(modules)
    assert not wrong, "imports from a lower layer to a higher one:\n" + "\n".join(wrong)


def test_the_layer_test_follows_string_imports(tmp_path):
    """A model file that reaches a recipe through importlib (a plain string or an f-string) is caught, and
    so is a new module that has no layer."""
    fake = tmp_path / "fer_utils"
    (fake / "models").mkdir(parents=True)
    (fake / "models" / "baselines.py").write_text(
        "import importlib\n\ndef f(name):\n    importlib.import_module('fer_utils.recipes.scn')\n"
        "    return importlib.import_module(f'fer_utils.tools.{name}')\n")
    found = _imports(fake / "models" / "baselines.py", _modules(fake), "models.baselines")
    assert found == [(4, "recipes.scn"), (5, "tools")]
    assert _wrong_imports(_modules(fake)) == [
        "fer_utils/models.baselines:4 (layer 1) imports fer_utils.recipes.scn (layer 4)",
        "fer_utils/models.baselines:5 (layer 1) imports fer_utils.tools (layer 6)"]
    (fake / "models" / "newnet.py").write_text("")
    assert set(_modules(fake)) - set(MODULES) == {"models.newnet"}   # what test_every_module_has_a_layer reports


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


def _backward_calls(path: Path) -> list[int]:
    return [node.lineno for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "backward"]


def test_a_training_loss_is_backpropagated_in_at_most_two_places():
    """One training step (train.train_step, with and without a GradScaler) and fer-train's probe for
    parameters without a gradient; attribution code (explain, scoring) takes gradients of outputs, not of
    a training loss, and does not count."""
    found = [f"{module}:{line}" for module, path in _modules().items() if module not in ("explain", "scoring")
             for line in _backward_calls(path)]
    files = {f.split(":")[0] for f in found}
    assert files and files <= {"train", "cli.train_loop"} and len(found) <= 3, found


def test_no_module_replaces_itself_in_sys_modules():
    shims = [module for module, path in _modules().items() if "sys.modules[__name__]" in path.read_text()]
    assert not shims, f"sys.modules shims: {shims}"


def test_notebooks_import_no_maintainer_machinery():
    notebooks = sorted((PACKAGE.parent / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert notebooks
    offenders = [nb.name for nb in notebooks if "fer_utils.tools" in nb.read_text()]
    assert not offenders, f"notebooks importing fer_utils.tools (maintainers' machinery): {offenders}"
