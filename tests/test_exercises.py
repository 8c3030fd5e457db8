"""Instructor exercises: the generator, and the student versions of every notebook.

An exercise is a code cell tagged ``exercise`` holding a BEGIN/END SOLUTION
region, followed by a cell tagged ``exercise-check``. Exercise and check cells
are self-contained given the notebook's set-up cell, so they can be run on
their own: after the set-up, each exercise's student stub must fail at exactly
its check cells and nowhere else, and its solution must then pass them (one
kernel per notebook).
"""
from __future__ import annotations

import ast
import copy
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from fer_utils.tools.exercises import (BEGIN_MARK_SCHEME, END_MARK_SCHEME, HINT, make_student_notebook,
                                      make_student_versions, strip_mark_scheme, strip_solutions)
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


def _tags(cell) -> list[str]:
    return cell.metadata.get("tags", [])


def _without_rubrics(nb):
    """A copy of ``nb`` without its rubric cells (what the student version keeps, before stubbing)."""
    copy_ = nbformat.from_dict(copy.deepcopy(nb))
    copy_.cells = [c for c in copy_.cells if "rubric" not in c.metadata.get("tags", [])]
    return copy_


WITH_EXERCISES = [p for p in NOTEBOOKS if _tagged(read(p), "exercise")]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_notebook_has_three_exercises_after_its_summary(path: Path):
    nb = read(path)
    exercises, checks = _tagged(nb, "exercise"), _tagged(nb, "exercise-check")
    assert len(exercises) >= 3, f"{path.name}: at least three exercises expected"
    summary = [i for i, c in enumerate(nb.cells) if c.cell_type == "markdown"
               and any(line.startswith("#") and "Summary" in line for line in c.source.splitlines())]
    assert summary and summary[0] < exercises[0], f"{path.name}: a Summary section must come before the exercises"
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


def _stub_then_solution(solution, student):
    """Set-up cells, then for each exercise in order: the student's stub and the exercise's check cells,
    then the solution and the same checks again. Returns that notebook and the positions of the checks
    that follow a stub (where, and only where, errors are expected): each exercise is tested on its own,
    after the solutions of the exercises before it, and the solutions must pass on the same kernel."""
    run, stub_checks = setup_prefix(solution), []
    groups: list[tuple[int, list[int]]] = []
    for i in sorted(_tagged(solution, "exercise") + _tagged(solution, "exercise-check")):
        if "exercise" in solution.cells[i].metadata.get("tags", []):
            groups.append((i, []))
        else:
            assert groups, f"cell {i}: a check cell before the first exercise"
            groups[-1][1].append(i)
    for exercise, checks in groups:
        for version in (student, solution):
            run.cells.append(nbformat.from_dict(copy.deepcopy(version.cells[exercise])))
            for i in checks:
                if version is student:
                    stub_checks.append(len(run.cells))
                run.cells.append(nbformat.from_dict(copy.deepcopy(solution.cells[i])))
    return run, stub_checks


def _errors(nb) -> list[int]:
    NotebookClient(nb, kernel_name="python3", allow_errors=True, timeout=300,
                   resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    return [i for i, c in enumerate(nb.cells) if c.cell_type == "code"
            and any(o.output_type == "error" for o in c.get("outputs", []))]


@pytest.mark.parametrize("path", WITH_EXERCISES, ids=[p.stem for p in WITH_EXERCISES])
def test_student_version_fails_exactly_at_the_checks(path: Path):
    solution = _without_rubrics(read(path))          # the student version drops the rubric cells
    student = make_student_notebook(solution, path.name)
    assert len(student.cells) == len(solution.cells), f"{path.name}: the student version lost or gained cells"
    # Only exercise cells change.
    changed = [i for i, (a, b) in enumerate(zip(solution.cells, student.cells)) if a.source != b.source]
    assert changed == _tagged(solution, "exercise")
    # Nothing outside the exercises uses what an exercise defines.
    exercise_names = set().union(*(_defined_names(solution.cells[i].source) for i in changed))
    for i, cell in enumerate(solution.cells):
        if cell.cell_type == "code" and i not in changed and "exercise-check" not in cell.metadata.get("tags", []):
            used = {n.id for n in ast.walk(ast.parse(_python_only(cell.source))) if isinstance(n, ast.Name)}
            assert not used & exercise_names, f"cell {i} uses exercise names {used & exercise_names}"
    # One kernel: set-up, then each exercise's stub + checks (must fail there), its solution + checks (must
    # pass); then every delegating answer of the notebook (DELEGATING, below) + its check (must fail).
    run, stub_checks = _stub_then_solution(solution, student)
    delegating = []
    if path.stem in DELEGATING:
        run, delegating = _delegating_notebook(solution, DELEGATING[path.stem], HELPERS.get(path.stem), run)
    errors = _errors(run)
    unexpected = sorted(set(errors) - set(stub_checks) - set(delegating))
    assert unexpected == [], f"{path.name}: cells failed where no error is expected: {unexpected}"
    assert [i for i in stub_checks if i not in errors] == [], f"{path.name}: a stub passed its check"
    assert [i for i in delegating if i not in errors] == [], \
        f"{path.name}: a delegating answer passed its check (cells {[i for i in delegating if i not in errors]})"


def test_cli_writes_student_versions(tmp_path: Path):
    written = make_student_versions(ROOT / "notebooks", tmp_path)
    assert [p.name for p in written] == [p.name for p in NOTEBOOKS]
    for path in written:
        text = path.read_text()
        assert "### BEGIN SOLUTION" not in text
        assert "MARK SCHEME" not in text and "Rubric (instructors)" not in text, f"{path.name}: a rubric is left"
        assert all(not c.get("outputs") for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")


# ---------------------------------------------------------------------------------------------
# Rubrics: an open-ended exercise (its markdown title says "(open-ended)") is followed, after its
# last exercise / check cell if it has code, by a markdown cell tagged ``rubric`` holding the
# instructor's mark scheme. Student versions keep nothing of it.
# ---------------------------------------------------------------------------------------------

OPEN_ENDED = re.compile(r"\*\*Exercise\s+\d+\s*\(open-ended\)", re.IGNORECASE)
RUBRIC_HEAD = "**Rubric (instructors).** What a good answer shows:"


def _rubric_problems(nb, name: str) -> list[str]:
    problems = []
    rubrics = _tagged(nb, "rubric")
    for i in rubrics:
        cell = nb.cells[i]
        lines = cell.source.strip().splitlines()
        if cell.cell_type != "markdown":
            problems.append(f"{name}, cell {i}: a rubric must be a markdown cell")
        elif not (lines and lines[0].strip() == BEGIN_MARK_SCHEME and lines[-1].strip() == END_MARK_SCHEME):
            problems.append(f"{name}, cell {i}: a rubric starts with {BEGIN_MARK_SCHEME!r} and ends with "
                            f"{END_MARK_SCHEME!r}")
        elif not lines[1].startswith(RUBRIC_HEAD) or "How to check it:" not in cell.source:
            problems.append(f"{name}, cell {i}: a rubric reads '{RUBRIC_HEAD} ... How to check it: ...'")
        elif len(cell.source.split()) < 40:
            problems.append(f"{name}, cell {i}: a rubric of {len(cell.source.split())} words says too little")
    for i, cell in enumerate(nb.cells):
        if i not in rubrics and ("MARK SCHEME" in cell.source or "Rubric (instructors)" in cell.source):
            problems.append(f"{name}, cell {i}: a mark scheme outside a cell tagged 'rubric'")
    expected = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown" and i not in rubrics and OPEN_ENDED.search(cell.source):
            j = i
            while j + 1 < len(nb.cells) and {"exercise", "exercise-check"} & set(_tags(nb.cells[j + 1])):
                j += 1
            expected.append(j + 1)
            if j + 1 not in rubrics:
                problems.append(f"{name}, cell {i}: the open-ended exercise has no rubric cell right after its "
                                f"{'markdown' if j == i else 'last check cell'} (cell {j + 1})")
    for i in sorted(set(rubrics) - set(expected)):
        problems.append(f"{name}, cell {i}: a rubric that follows no open-ended exercise")
    if not rubrics:
        problems.append(f"{name}: no rubric (every notebook has at least one open-ended exercise with a rubric)")
    return problems


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_open_ended_exercise_has_a_rubric(path: Path):
    problems = _rubric_problems(read(path), path.name)
    assert not problems, "\n".join(problems)


def _prose_lines(source: str) -> list[str]:
    """The lines of a rubric's mark scheme worth searching for (no markers, no short lines)."""
    return [line.strip() for line in source.splitlines()
            if "MARK SCHEME" not in line and len(line.strip()) > 20]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_student_version_holds_no_rubric(path: Path):
    solution = read(path)
    student = make_student_notebook(solution, path.name)
    assert not _tagged(student, "rubric"), f"{path.name}: a rubric cell is left in the student version"
    text = nbformat.writes(student)
    assert "MARK SCHEME" not in text and "Rubric (instructors)" not in text
    student_sources = "\n".join(c.source for c in student.cells)
    for i in _tagged(solution, "rubric"):
        kept = [line for line in _prose_lines(solution.cells[i].source) if line in student_sources]
        assert not kept, f"{path.name}, rubric cell {i}: its text is left in the student version: {kept[:2]}"


def test_student_version_drops_rubric_cells_and_mark_scheme_regions():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("**Exercise 2 (open-ended):** try it."),
                nbformat.v4.new_markdown_cell(f"{BEGIN_MARK_SCHEME}\n{RUBRIC_HEAD} secret. How to check it: run.\n"
                                              f"{END_MARK_SCHEME}", metadata={"tags": ["rubric"]}),
                nbformat.v4.new_markdown_cell(f"before\n{BEGIN_MARK_SCHEME}\nhidden words\n{END_MARK_SCHEME}\nafter")]
    student = make_student_notebook(nb)
    assert [c.source for c in student.cells] == ["**Exercise 2 (open-ended):** try it.", "before\nafter"]
    with pytest.raises(ValueError, match="never closed"):
        strip_mark_scheme(f"{BEGIN_MARK_SCHEME}\nx", "nb.ipynb, cell 3")


# ---------------------------------------------------------------------------------------------
# Hints guide without giving the solution's code away: no code line of a solution (the whole
# line, the expression it returns, the right-hand side of an assignment, or a sub-expression of two
# operations or more such as ``a[mask].sum() / a.sum()``) may appear in the exercise's hint (its
# "### HINT:" lines, and any "Hint" text of the markdown cell before it), neither verbatim
# (whitespace ignored) nor with its names renamed. Trivial lines (return, pass, brackets, comments,
# the def / class line the stub keeps, imports) are ignored.
# ---------------------------------------------------------------------------------------------

TOKEN = re.compile(r"[A-Za-z_]\w*|\d+(?:\.\d+)?|\S")
TRIVIAL = re.compile(r"^(def |class |async def |@|import |from \S+ import |return$|pass$|continue$|break$|else:$|"
                     r"try:$|finally:$|\"\"\"|''')")
MIN_CHARS = 10                      # shorter pieces of code (``x = 1``, ``dim=1``) are not a give-away
MIN_SHAPE_TOKENS, MIN_SHAPE_SYMBOLS = 12, 5


def _strip_comment(line: str) -> str:
    quote = None
    for k, ch in enumerate(line):
        if quote:
            if ch == quote and line[k - 1] != "\\":
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#":
            return line[:k]
    return line


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text.replace("`", ""))


def _shape(text: str) -> list[str]:
    """The code's tokens with every name replaced by N (so ``S[y+h, x]`` and ``S[by+bh, bx]`` match)."""
    return ["N" if re.match(r"[A-Za-z_]", t) else t for t in TOKEN.findall(text.replace("`", ""))]


COMPOUND = (ast.Call, ast.BinOp, ast.Compare, ast.Subscript, ast.BoolOp)
MIN_PART_CHARS = 16                 # a sub-expression counts from this length, with two operations or more


def _compound_parts(code: str) -> list[str]:
    """The line's sub-expressions made of two operations or more (``a[m].sum() / a.sum()``, not ``f(x)``)."""
    source = code + " pass" if code.endswith(":") else code
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    parts = []
    for node in ast.walk(tree):
        if isinstance(node, COMPOUND) and sum(isinstance(n, COMPOUND) for n in ast.walk(node)) >= 2:
            part = ast.get_source_segment(source, node)
            if part and len(_squash(part)) >= MIN_PART_CHARS:
                parts.append(part)
    return parts


def _code_pieces(solution_lines: list[str]) -> list[list[str]]:
    """Per non-trivial solution line, the pieces a hint must not hold: the line, what it returns or assigns."""
    pieces = []
    for line in solution_lines:
        code = _strip_comment(line).strip().rstrip(",;")
        if not code or TRIVIAL.match(code) or not re.search(r"\w", code):
            continue
        candidates = [code]
        if code.startswith("return "):
            candidates.append(code[len("return "):])
        assignment = re.match(r"^[\w\s,.\[\]()]+?(?<![=!<>])(?:[-+*/@%]?=)(?!=)(.+)$", code)
        if assignment:
            candidates.append(assignment.group(1))
        candidates += _compound_parts(code)
        candidates = [c.strip() for c in candidates if len(_squash(c)) >= MIN_CHARS]
        if candidates:
            pieces.append(candidates)
    return pieces


def _shares_code(piece: str, hint: str) -> bool:
    if _squash(piece) in _squash(hint):
        return True
    shape, text = _shape(piece), _shape(hint)
    if len(shape) < MIN_SHAPE_TOKENS or sum(t != "N" for t in shape) < MIN_SHAPE_SYMBOLS:
        return False
    return any(text[k:k + len(shape)] == shape for k in range(len(text) - len(shape) + 1))


def _solution_and_hint(nb, index: int) -> tuple[list[str], str]:
    lines, hints, inside = [], [], False
    for line in nb.cells[index].source.splitlines():
        stripped = line.strip()
        if stripped in ("### BEGIN SOLUTION", "### END SOLUTION"):
            inside = stripped == "### BEGIN SOLUTION"
        elif inside and HINT.match(line):
            hints.append(HINT.match(line).group(1))
        elif inside and not stripped.startswith("###"):
            lines.append(line)
    before = next((nb.cells[k] for k in range(index - 1, -1, -1) if nb.cells[k].cell_type == "markdown"), None)
    if before is not None:
        found = re.search(r"\bhint\b", before.source, re.IGNORECASE)
        if found:
            hints.append(before.source[found.start():])
    return lines, "\n".join(hints)


def _hint_problems(nb, name: str) -> list[str]:
    problems = []
    for i in _tagged(nb, "exercise"):
        lines, hint = _solution_and_hint(nb, i)
        for candidates in _code_pieces(lines):
            shared = [piece for piece in candidates if _shares_code(piece, hint)]
            if shared:
                problems.append(f"{name}, cell {i}: the hint gives away the solution's code {shared[0]!r}")
    return problems


def test_the_hint_check_finds_shared_code():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("Write it. *Hint:* use `np.linalg.norm(p - t, axis=1).mean()`."),
                nbformat.v4.new_code_cell("def f(p, t):\n    ### BEGIN SOLUTION\n"
                                          "    ### HINT: box = S[y + h, x + w] - S[y, x + w] - S[y + h, x] + S[y, x]\n"
                                          "    d = np.linalg.norm(p - t, axis=1).mean()  # the mean distance\n"
                                          "    box = S[b + c, a + e] - S[b, a + e] - S[b + c, a] + S[b, a]\n"
                                          "    return d\n    ### END SOLUTION\n", metadata={"tags": ["exercise"]}),
                nbformat.v4.new_code_cell("def g(x):\n    ### BEGIN SOLUTION\n"
                                          "    ### HINT: the mean of the squares; np.mean reads an axis argument\n"
                                          "    return np.mean(x ** 2, axis=0)\n    ### END SOLUTION\n",
                                          metadata={"tags": ["exercise"]})]
    problems = _hint_problems(nb, "nb")
    assert len(problems) == 2 and all("cell 1" in p for p in problems), problems       # cell 2's hint guides


@pytest.mark.parametrize("path", WITH_EXERCISES, ids=[p.stem for p in WITH_EXERCISES])
def test_hints_give_no_code_away(path: Path):
    problems = _hint_problems(read(path), path.name)
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------------------------------------
# Every notebook: an answer that merely calls the package or library function the exercise asks
# for must FAIL its check. Each delegating answer replaces its exercise cell and is followed by
# that exercise's check cell; every such check must end in an error.
# ---------------------------------------------------------------------------------------------

DELEGATING: dict[str, dict[str, list[str]]] = {
    "00_datasets": {
        "my_identity_split": [
            "def my_identity_split(identities, test_fraction, seed=0):\n"
            "    return identity_split(identities, test_size=test_fraction, seed=seed)\n",
            "def my_identity_split(identities, test_fraction, seed=0):\n"
            "    from sklearn.model_selection import GroupShuffleSplit\n"
            "    split = GroupShuffleSplit(n_splits=1, test_size=test_fraction, random_state=seed)\n"
            "    return next(split.split(identities, groups=identities))\n",
        ],
        "my_fer2013_row": [
            "def my_fer2013_row(image, label, usage):\n"
            "    import pathlib, tempfile\n"
            "    path = pathlib.Path(tempfile.mkdtemp()) / 'fer2013.csv'\n"
            "    formats.write_fer2013([{'image': image, 'label': label, 'usage': usage}], path, verbose=False)\n"
            "    return path.read_text().splitlines()[1]\n",
        ],
    },
    "01_face_detection": {
        "my_tilted_integral": ["def my_tilted_integral(image):\n    return cv2.integral3(image)[2][:, 1:]\n"],
        "my_line_feature": [
            "def my_line_feature(S, x, y, w, h):\n"
            "    table = cv2.integral(np.diff(np.diff(S, axis=0), axis=1))\n"
            "    box = lambda bx, by, bw, bh: table[by + bh, bx + bw] - table[by, bx + bw] - table[by + bh, bx] + table[by, bx]\n"
            "    return float(box(x, y, w, h) - 3 * box(x + w // 3, y, w // 3, h))\n",
        ],
        "my_similarity": [
            "def my_similarity(src, dst):\n    return cv2.estimateAffinePartial2D(src, dst, method=cv2.LMEDS)[0]\n",
            "def my_similarity(src, dst):\n    return faces.similarity_matrix(src, dst)\n",
            "def my_similarity(src, dst):\n"
            "    import skimage.transform\n"
            "    transform = skimage.transform.SimilarityTransform()\n"
            "    transform.estimate(src, dst)\n"
            "    return transform.params[:2]\n",
        ],
    },
    "02_cnn_baselines": {
        "receptive_field": [
            "def receptive_field(layers):\n"
            "    return int(receptive_fields([(str(i), d * (k - 1) + 1, s) for i, (k, s, d) in enumerate(layers)]).iloc[-1, 0])\n",
        ],
        "gap_logits": [
            "def gap_logits(feature_maps, weight, bias):\n"
            "    return F.linear(F.adaptive_avg_pool2d(feature_maps, 1).flatten(1), weight, bias)\n",
            "def gap_logits(feature_maps, weight, bias):\n"
            "    pooled = nn.AdaptiveAvgPool2d(1)(feature_maps).flatten(1)\n"
            "    linear = nn.Linear(weight.shape[1], weight.shape[0])\n"
            "    linear.weight.data, linear.bias.data = weight, bias\n"
            "    return linear(pooled)\n",
        ],
        "l2_svm_loss": [
            "def l2_svm_loss(scores, labels, weight, C=1.0):\n"
            "    return 0.5 * (weight ** 2).sum() + C * F.multi_margin_loss(scores, labels, p=2, reduction='sum')\n",
        ],
    },
    "03_deep_emotion": {
        'stn_forward': [
            'def stn_forward(localisation, fc_loc, images):\n    theta = fc_loc(localisation(images)).view(-1, 2, 3)\n    return affine_warp(images, theta), theta\n',
        ],
        'occlusion_map': [
            'def occlusion_map(model, image, target, patch=8, stride=4):\n    return explain.occlusion_sensitivity(model, image[None], [target], fill=0.0, patch=patch, stride=stride)[0]\n',
        ],
        'energy_and_hit': [
            'def energy_and_hit(attribution, mask):\n    score = explain.pointing_game(attribution, mask)\n    return score["mass"], float(score["hit"])\n',
        ],
    },
    "04_two_level_attention": {
        'concordance': [
            'def concordance(pred, target):\n    return 1 - ccc_loss(pred, target)\n',
            'from fer_utils.metrics import ccc\n\ndef concordance(pred, target):\n    return ccc(target, pred)\n',
            "def concordance(pred, target):\n    return 1 - va_loss('ccc', ('valence',))(pred[:, None], target[:, None])\n",
        ],
        "sign_agreement": [
            "def sign_agreement(pred, target):\n    return metrics.sagr(target, pred)\n",
            "def sign_agreement(pred, target):\n    return metrics.va_metrics(target, pred, target, pred)['valence_sagr']\n",
        ],
        'attention_pool': [
            'def attention_pool(states, W, b, context):\n    pool = LevelAttention(W.shape[1], W.shape[0])\n    with torch.no_grad():\n        pool.W.weight.copy_(W); pool.W.bias.copy_(b); pool.context.copy_(context)\n    return pool(states)\n',
        ],
    },
    "05_ddamfn": {
        'dda_head': [
            'def dda_head(head, features):\n    return head(features)\n',
            'def dda_head(head, features):\n    a_h, a_w = head.directions(features)\n    return a_h * a_w\n',
        ],
        'diversity_loss': [
            'def diversity_loss(maps):\n    return attention_loss(maps)\n',
            'def diversity_loss(maps):\n    from fer_utils.losses import attention_loss as package_loss\n    return package_loss(maps)\n',
        ],
        'cosface_logits': [
            'def cosface_logits(embeddings, weight, labels, scale, margin):\n    net = IdentityNet(COURSE, weight.shape[0], scale)\n    net.backbone = torch.nn.Identity()\n    net.weight.data = weight\n    return net(F.normalize(embeddings, dim=1)) - scale * margin * F.one_hot(labels, weight.shape[0])\n',
        ],
    },
    "06_mgln": {
        "my_sample": [
            "def my_sample(x, offsets):\n    return mgln.sample_at_offsets(x[None], offsets[None])[0]\n",
            "def my_sample(x, offsets):\n    c, h, w = x.shape\n    rows = torch.arange(h, dtype=x.dtype).view(1, h, 1)\n"
            "    cols = torch.arange(w, dtype=x.dtype).view(1, 1, w)\n    y = (rows + offsets[..., 0]).clamp(0, h - 1)\n"
            "    xx = (cols + offsets[..., 1]).clamp(0, w - 1)\n"
            "    grid = torch.stack([2 * xx / (w - 1) - 1, 2 * y / (h - 1) - 1], dim=-1)\n"
            "    return F.grid_sample(x[:, None], grid, mode='bilinear', padding_mode='border', align_corners=True)[:, 0]\n",
            "from fer_utils.models.mgln import sample_at_offsets as _s\n\ndef my_sample(x, offsets):\n"
            "    return _s(x[None], offsets[None])[0]\n",
        ],
        "my_mixup": ["def my_mixup(faces, labels, lam, perm, num_classes=7):\n"
                     "    return v2.MixUp(alpha=1.0, num_classes=num_classes)(faces, labels)\n"],
        "offsets_by_channel": ["def offsets_by_channel(raw):\n    b, c2, h, w = raw.shape\n"
                               "    return raw.view(b, c2 // 2, h, w, 2)\n"],
    },
    "07_abaw": {
        "my_masked_focal": [
            "def my_masked_focal(logits, targets, gamma):\n    return losses.masked_expr_ce(logits, targets, gamma)\n",
            "def my_masked_focal(logits, targets, gamma):\n    keep = targets >= 0\n    if not bool(keep.any()):\n"
            "        return (logits * 0.0).sum()\n    ce = F.cross_entropy(logits[keep], targets[keep], reduction='none')\n"
            "    return ((1 - torch.exp(-ce)) ** gamma * ce).mean()\n",
            "def my_masked_focal(logits, targets, gamma):\n    keep = targets >= 0\n    if not bool(keep.any()):\n"
            "        return (logits * 0.0).sum()\n"
            "    ce = torch.nn.CrossEntropyLoss(reduction='none')(logits[keep], targets[keep])\n"
            "    return ((1 - torch.exp(-ce)) ** gamma * ce).mean()\n",
        ],
        "my_au_score": [
            "def my_au_score(au_true, au_pred):\n    return metrics.abaw_au_score(au_true, au_pred)\n",
            "def my_au_score(au_true, au_pred):\n    t, p = np.asarray(au_true), np.asarray(au_pred)\n"
            "    return 0.5 * f1_score(t, p, average='macro', zero_division=0) + 0.5 * (t == p).mean()\n",
            "def my_au_score(au_true, au_pred):\n    import sklearn.metrics\n    t, p = np.asarray(au_true), np.asarray(au_pred)\n"
            "    f1 = [sklearn.metrics.f1_score(t[:, k], p[:, k], zero_division=0) for k in range(t.shape[1])]\n"
            "    return 0.5 * np.mean(f1) + 0.5 * (t == p).mean()\n",
        ],
        "my_au_graph": [
            "def my_au_graph(au_labels, threshold):\n"
            "    return abaw_models.au_relation_graph(torch.as_tensor(au_labels), threshold).numpy()\n",
            "def my_au_graph(au_labels, threshold):\n    from fer_utils.models.abaw import au_relation_graph\n"
            "    return au_relation_graph(torch.as_tensor(au_labels), threshold).numpy()\n",
        ],
    },
    "08_scn_ran": {
        "my_rank_regularization": [
            "def my_rank_regularization(alpha, beta=0.7, margin=0.15):\n"
            "    return losses.rank_regularization(alpha, beta, margin)\n",
            "def my_rank_regularization(alpha, beta=0.7, margin=0.15):\n"
            "    from fer_utils.losses import rank_regularization\n"
            "    return rank_regularization(alpha, beta, margin)\n",
        ],
        "my_relabel": [
            "def my_relabel(probabilities, labels, margin=0.2, candidates=None):\n"
            "    return losses.relabel(probabilities, labels, margin, candidates)\n",
            "def my_relabel(probabilities, labels, margin=0.2, candidates=None):\n"
            "    from fer_utils.losses import relabel\n"
            "    return relabel(probabilities, labels, margin, candidates)\n",
        ],
        "my_region_biased_loss": [
            "def my_region_biased_loss(mu, margin=0.02):\n    return losses.region_biased_loss(mu, margin)\n",
            "def my_region_biased_loss(mu, margin=0.02):\n"
            "    import fer_utils.losses\n"
            "    return fer_utils.losses.region_biased_loss(mu, margin)\n",
        ],
    },
    "09_explain": {
        "energy_ratio": [
            "def energy_ratio(attribution, mask):\n"
            "    score = scoring.pointing_game(attribution, mask)\n"
            "    return score['mass'] / score['area']\n",
            "def energy_ratio(attribution, mask):\n"
            "    score = explain.pointing_game(attribution, mask)\n"
            "    return score['mass'] / score['area']\n",
            "def energy_ratio(attribution, mask):\n"
            "    return explain.region_shares(attribution, {'region': mask})['region'] / np.mean(mask)\n",
        ],
        "rank_correlation": [
            "def rank_correlation(map_a, map_b):\n"
            "    return float(scipy.stats.spearmanr(np.abs(map_a).ravel(), np.abs(map_b).ravel())[0])\n",
            "def rank_correlation(map_a, map_b):\n"
            "    ranks = [pd.Series(np.abs(m).ravel()).rank() for m in (map_a, map_b)]\n"
            "    return float(np.corrcoef(ranks[0], ranks[1])[0, 1])\n",
            "def rank_correlation(map_a, map_b):\n"
            "    from scipy.stats.mstats import spearmanr\n"
            "    return float(spearmanr(np.abs(map_a).ravel(), np.abs(map_b).ravel())[0])\n",
        ],
        "pointing_hit": [
            "def pointing_hit(attribution, mask):\n    return bool(scoring.pointing_game(attribution, mask)['hit'])\n",
            "def pointing_hit(attribution, mask):\n    return bool(explain.pointing_scores([attribution], [mask])['hit'])\n",
        ],
    },
    "10_poster": {
        "my_cross_attention": [
            "def my_cross_attention(queries, keys, values):\n    weights = None\n"
            "    return F.scaled_dot_product_attention(queries, keys, values), weights\n",
            "def my_cross_attention(queries, keys, values):\n"
            "    out = F.scaled_dot_product_attention(queries, keys, values)\n"
            "    weights = (queries @ keys.transpose(-2, -1) / queries.shape[-1] ** 0.5).softmax(-1)\n"
            "    return out, weights\n",
        ],
        "thop_parameters": [
            "def thop_parameters(model, images):\n    return called_parameters(model, images).called_leaf\n",
            "def thop_parameters(model, images):\n    from fer_utils.models.poster import called_parameters\n"
            "    return called_parameters(model, images).called_leaf\n",
            "def thop_parameters(model, images):\n    from fer_utils.models import poster\n"
            "    return poster.called_parameters(model, images).called_leaf\n",
        ],
    },
    "11_product": {
        "my_ece": [
            "def my_ece(probs, labels, n_bins=15):\n    return calibration.expected_calibration_error(probs, labels, n_bins)\n",
            "def my_ece(probs, labels, n_bins=15):\n    return calibration.reliability(probs, labels, n_bins).ece\n",
        ],
        "my_fit_temperature": [
            "def my_fit_temperature(logits, labels):\n    return calibration.fit_temperature(logits, labels)\n",
            "def my_fit_temperature(logits, labels):\n"
            "    from scipy.optimize import minimize_scalar\n"
            "    return minimize_scalar(lambda t: calibration.negative_log_likelihood(logits, labels, t),\n"
            "                           bounds=(0.05, 20.0), method='bounded').x\n",
        ],
        "my_ema": [
            "def my_ema(probs, times, tau):\n"
            "    tracker = fer_predict.Tracker(tau=tau)\n"
            "    return np.stack([tracker.update(0, (0, 0, 1, 1), t, p) for t, p in zip(times, probs)])\n",
            "def my_ema(probs, times, tau):\n"
            "    out = [np.asarray(probs[0], dtype=float)]\n"
            "    for k in range(1, len(probs)):\n"
            "        a = fer_predict.ema_weight(times[k] - times[k - 1], tau)\n"
            "        out.append(a * probs[k] + (1 - a) * out[-1])\n"
            "    return np.stack(out)\n",
        ],
    },
}

#: What the delegating answers in section 3 of notebook 02 may call: section 3's own helper, defined here
#: so that a delegating answer would otherwise succeed.
HELPERS = {
    "02_cnn_baselines": "def receptive_fields(layers):\n"
                        "    import pandas as pd\n"
                        "    field, jump, rows = 1, 1, []\n"
                        "    for name, kernel, stride in layers:\n"
                        "        field += (kernel - 1) * jump\n"
                        "        jump *= stride\n"
                        "        rows.append((name, field, jump))\n"
                        "    return pd.DataFrame(rows).set_index(0)\n",
}


def _defines(source: str, name: str) -> bool:
    return name in _defined_names(source)


def _delegating_notebook(nb, answers: dict[str, list[str]], helper: str | None, out=None):
    """``out`` (default: the set-up cells), then for every delegating answer: the answer (in place of the
    exercise) and its check. Returns the notebook and the positions of those checks."""
    out = setup_prefix(nb) if out is None else out
    if helper:
        out.cells.append(nbformat.v4.new_code_cell(helper))
    exercises = _tagged(nb, "exercise")
    checks = _tagged(nb, "exercise-check")
    expected = []
    for name, sources in answers.items():
        exercise = next(i for i in exercises if _defines(nb.cells[i].source, name))
        check = min(i for i in checks if i > exercise)
        for source in sources:
            out.cells.append(nbformat.v4.new_code_cell(source))
            out.cells.append(nbformat.from_dict(dict(nb.cells[check])))
            expected.append(len(out.cells) - 1)
    return out, expected


def test_delegating_answers_cover_every_named_exercise():
    for stem, answers in DELEGATING.items():
        nb = read(ROOT / "notebooks" / f"{stem}.ipynb")
        defined = set().union(*(_defined_names(nb.cells[i].source) for i in _tagged(nb, "exercise")))
        assert set(answers) <= defined, f"{stem}: no exercise defines {set(answers) - defined}"


def test_delegating_answers_run_with_the_student_versions():
    """Each notebook's delegating answers are checked in ``test_student_version_fails_exactly_at_the_checks``
    (the same kernel, after the stubs and the solutions); every notebook named here has exercises."""
    assert set(DELEGATING) <= {p.stem for p in WITH_EXERCISES}
