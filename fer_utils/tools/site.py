"""The course as a static website (Jupyter Book 1.x), built from the committed notebooks.

    python -m fer_utils.tools.site build [--out build/site]    # `make site`
    python -m fer_utils.tools.site screenshots                  # maintainers: docs/screenshots/*.png

``build`` copies ``docs/`` (configuration, home page, CSS), the committed notebooks with their
outputs, ``data/README.md`` and ``results/*.json`` into ``<out>/src``, writes the table of contents
from ``notebooks/*.ipynb`` (so a new notebook appears in the sidebar by itself), and runs
``jupyter-book build -W -n --keep-going``: nothing is executed, and every warning (a broken
cross-reference, a missing image) fails the build. MathJax comes from the sphinx-mathjax-offline
wheel and is copied into the site, so pages need no network, from ``file://`` or over HTTP.
"""
from __future__ import annotations

import argparse
import base64
import contextlib
import functools
import http.server
import json
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / "build" / "site"
# Flags for headless Chromium on a machine with no network (see tests/test_site.py).
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
_LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)\)")


def notebook_paths(root: Path = ROOT) -> list[Path]:
    """The course notebooks in reading order (``notebooks/NN_*.ipynb``)."""
    return sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def readme_section(text: str, title: str) -> str:
    """The body of the README's ``## title`` section; ``intro`` is the text before the first ``##``."""
    if title == "intro":
        body = text.split("\n## ", 1)[0]
        return body.split("\n", 1)[1] if body.startswith("# ") else body
    match = re.search(rf"^## {re.escape(title)}\s*\n(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    if match is None:
        raise SystemExit(f"README.md: no section '## {title}' (docs/index.md asks for it)")
    return match.group(1).strip() + "\n"


def rewrite_links(markdown: str, prefix: str = "") -> str:
    """Point a repository Markdown file's links at the site's pages.

    ``data/README.md`` becomes the data page, ``notebooks/*.ipynb`` and ``docs/...`` stay links inside
    the site; a link to any other repository file becomes its path in code (the site does not
    carry the code). ``prefix`` is the way from the page back to the site's root.
    """
    def fix(match: re.Match) -> str:
        bang, text, target = match.groups()
        if re.match(r"[a-z]+:|#", target):
            return match.group(0)
        if target.startswith("data/README.md"):
            return f"[{text}]({prefix}data.md{target[len('data/README.md'):]})"
        if target.startswith("notebooks/") and ".ipynb" in target:
            return f"{bang}[{text}]({prefix}{target})"
        if target.startswith("docs/"):
            return f"{bang}[{text}]({prefix}{target[len('docs/'):]})"
        return text if text.strip("`") == target else f"{text} (`{target}` in the repository)"
    return _LINK.sub(fix, markdown)


def _text(cell) -> str:
    return cell.source if isinstance(cell.source, str) else "".join(cell.source)


def title_of(nb) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in _text(cell).splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    raise SystemExit("a notebook has no '# title' line in its markdown cells")


def paper_of(nb) -> str | None:
    """The ``**Paper.**`` / ``**Papers.**`` paragraph of the first markdown cell, without its label."""
    first = next(c for c in nb.cells if c.cell_type == "markdown")
    for para in _text(first).split("\n\n"):
        if para.startswith(("**Paper.**", "**Papers.**")):
            return " ".join(para.split("**", 2)[2].split())
    return None


def first_figure(nb) -> tuple[bytes, str] | None:
    """The first PNG or JPEG a code cell displays, as (bytes, file extension)."""
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            for mime, ext in (("image/png", "png"), ("image/jpeg", "jpg")):
                if mime in out.get("data", {}):
                    return base64.b64decode(out["data"][mime]), ext
    return None


def run_it_cell(stem: str) -> str:
    """The box every notebook page gets under its title: how to run it, and its student version."""
    return (
        ":::{admonition} Run this notebook yourself\n:class: tip\n\n"
        "This page shows the outputs of the committed `course` run; nothing was re-executed to "
        f"build it. Open it in JupyterLab: `make lab`, then `notebooks/{stem}.ipynb` "
        "(see {ref}`open-in-jupyterlab`).\n\n"
        f"Student version (exercise solutions removed, outputs cleared): `make exercises` writes "
        f"`student/{stem}.ipynb`, or {{download}}`download it <../student/{stem}.ipynb>` "
        "(see {ref}`student-versions`).\n:::\n"
    )


def notebook_table(notebooks: list[Path], src: Path) -> str:
    """The home page's table: title (linked), paper, first figure; figures go to ``src/figures``."""
    (src / "figures").mkdir(exist_ok=True)
    rows = [":::{list-table}", ":header-rows: 1", ":class: notebook-table", "",
            "* - notebook", "  - paper", "  - first figure"]
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        figure = first_figure(nb)
        if figure is None:
            cell = "(this notebook draws no figure)"
        else:
            (src / "figures" / f"{path.stem}.{figure[1]}").write_bytes(figure[0])
            cell = f"![first figure of {path.stem}](figures/{path.stem}.{figure[1]})"
        rows += [f"* - [{title_of(nb)}](notebooks/{path.name})",
                 f"  - {paper_of(nb) or 'background: no single paper'}", f"  - {cell}"]
    return "\n".join(rows + [":::"]) + "\n"


def _paper_section(nb, stem: str) -> list[str]:
    """The notebook's "Paper vs this run" section: its text and its printed outputs, verbatim."""
    cells, lines, anchor = nb.cells, [], None
    for i, cell in enumerate(cells):
        if cell.cell_type == "markdown" and re.match(r"#+ .*Paper vs this run", _text(cell)):
            heading = _text(cell).splitlines()[0].lstrip("#").strip()
            anchor = re.sub(r"[^\w\- ]", "", heading.lower()).strip().replace(" ", "-")
            break
    if anchor is None:
        return []
    lines.append(f"From the notebook's section [{heading}](notebooks/{stem}.ipynb#{anchor}):\n")
    for cell in cells[i:]:
        text = _text(cell)
        if cell.cell_type == "markdown":
            body = text.split("\n", 1)[1] if cell is cells[i] else text
            before, heading_follows = re.split(r"^#", body, maxsplit=1, flags=re.M)[0], "\n#" in "\n" + body
            if before.strip():
                lines.append(rewrite_links(before.strip()) + "\n")
            if heading_follows:  # the next section starts in this cell
                break
        for out in cell.get("outputs", []):
            printed = out.get("text") or out.get("data", {}).get("text/plain")
            if printed:
                lines += ["```text", printed.rstrip(), "```", ""]
    return lines


def _format(value) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, list):
        return ", ".join(_format(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_format(v)}" for k, v in value.items())
    return str(value).replace("|", "\\|")


def results_page(notebooks: list[Path], root: Path = ROOT) -> str:
    """Every notebook's ``results/*.json`` with the notebook's own comparison against its paper."""
    out = ["# Recorded metrics", "",
           "Each notebook records its key numbers with `run.record` into `results/<notebook>.json` "
           "when the committed `course` run executes it. Below, per notebook: its paper, the "
           "notebook's own \"paper vs this run\" comparison as that run printed it, and every "
           "recorded value. The numbers come from SynthFaces, not from the papers' datasets.", ""]
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        out += [f"## {title_of(nb)}", "", f"Paper: {paper_of(nb) or 'none (background notebook)'}", ""]
        out += _paper_section(nb, path.stem)
        res = root / "results" / f"{path.stem}.json"
        if not res.exists():
            out += [f"No recorded metrics: `results/{path.stem}.json` is missing.", ""]
            continue
        data = json.loads(res.read_text())
        out += [f"Recorded in `results/{path.stem}.json`:", "", "| metric | value |", "|---|---|"]
        out += [f"| `{key}` | {_format(value)} |" for key, value in data.items()]
        out.append("")
    return "\n".join(out)


def toc(notebooks: list[Path]) -> str:
    files = "".join(f"  - file: notebooks/{p.stem}\n" for p in notebooks)
    return ("format: jb-book\nroot: index\nparts:\n- caption: Notebooks\n  chapters:\n" + files +
            "- caption: Reference\n  chapters:\n  - file: results\n  - file: data\n")


def _fill_home(template: str, readme: str, table: str) -> str:
    def fill(match: re.Match) -> str:
        what = match.group(1).strip()
        if what == "notebook-table":
            return table
        if what == "readme-intro":
            return rewrite_links(readme_section(readme, "intro").strip()) + "\n"
        return rewrite_links(readme_section(readme, what.removeprefix("readme ")))
    return re.sub(r"<!-- site:(.*?) -->", fill, template)


def _student_versions(src: Path, dst: Path) -> None:
    from fer_utils.tools.exercises import make_student_versions

    make_student_versions(src, dst)


def stage(src: Path, root: Path = ROOT) -> list[Path]:
    """Write the book's sources into ``src`` (emptied first); return the notebooks it holds."""
    notebooks = notebook_paths(root)
    if not notebooks:
        raise SystemExit(f"no notebooks found in {root / 'notebooks'}")
    shutil.rmtree(src, ignore_errors=True)
    shutil.copytree(root / "docs", src, ignore=shutil.ignore_patterns("_build"))
    (src / "notebooks").mkdir()
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        # instructor rubrics are for graders, not readers of the website (as in the student versions)
        nb.cells = [c for c in nb.cells if "rubric" not in c.metadata.get("tags", [])]
        at = 1 if nb.cells and nb.cells[0].cell_type == "markdown" else 0
        nb.cells.insert(at, nbformat.v4.new_markdown_cell(run_it_cell(path.stem)))
        nbformat.write(nb, src / "notebooks" / path.name)
    _student_versions(root / "notebooks", src / "student")
    readme = (root / "README.md").read_text()
    table = notebook_table(notebooks, src)
    (src / "index.md").write_text(_fill_home((src / "index.md").read_text(), readme, table))
    (src / "data.md").write_text(rewrite_links((root / "data" / "README.md").read_text()))
    (src / "results.md").write_text(results_page(notebooks, root))
    (src / "_toc.yml").write_text(toc(notebooks))
    return notebooks


def build(out: Path = DEFAULT_OUT, root: Path = ROOT) -> Path:
    """Stage and build the site; return the folder of ``index.html``. Any warning fails."""
    src = out / "src"
    stage(src, root)
    shutil.rmtree(out / "_build", ignore_errors=True)
    book = "import sys; from jupyter_book.cli.main import main; sys.argv[0] = 'jupyter-book'; main()"
    cmd = [sys.executable, "-c", book, "build", str(src), "--path-output", str(out), "-W", "-n", "--keep-going", "--all"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    log = proc.stdout + proc.stderr
    (out / "build.log").write_text(log)
    warnings = [line for line in log.splitlines() if "WARNING" in line or "ERROR" in line]
    if proc.returncode != 0 or warnings:
        shown = "\n".join(warnings[:40]) or log[-3000:]
        raise SystemExit(f"site build failed ({len(warnings)} warnings; full log {out / 'build.log'}):\n{shown}")
    html = out / "_build" / "html"
    if not (html / "_static" / "mathjax" / "tex-chtml.js").exists():
        raise SystemExit(f"site build: MathJax was not copied into {html / '_static'}")
    return html


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep test output clean
        pass


@contextlib.contextmanager
def serve(folder: Path):
    """Serve ``folder`` on 127.0.0.1 (a free port) in a thread; yield its base URL."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def find_chromium() -> str | None:
    """The system Chromium (Debian's ``chromium``), or None."""
    for name in ("chromium", "chromium-browser"):
        if path := shutil.which(name):
            return path
    return None


def screenshots(html: Path, dst: Path = ROOT / "docs" / "screenshots", notebook: str | None = None) -> list[Path]:
    """Desktop and phone screenshots of the home page and one notebook page, as small PNGs."""
    from PIL import Image
    from playwright.sync_api import sync_playwright

    notebook = notebook or notebook_paths()[2].stem
    dst.mkdir(parents=True, exist_ok=True)
    written = []
    with serve(html) as base, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=find_chromium(), args=CHROMIUM_ARGS)
        for width, height, kind in ((1280, 800, "desktop"), (390, 844, "phone")):
            page = browser.new_page(viewport={"width": width, "height": height})
            for name, url in (("home", "index.html"), ("notebook", f"notebooks/{notebook}.html")):
                page.goto(base + url, wait_until="networkidle")
                page.evaluate("() => window.MathJax && MathJax.startup ? MathJax.startup.promise : null")
                if name == "notebook":  # show an equation, not only the title
                    page.evaluate("() => document.querySelector('div.math').scrollIntoView({block: 'center'})")
                path = dst / f"{name}_{kind}.png"
                page.screenshot(path=str(path))
                Image.open(path).convert("RGB").quantize(colors=64).save(path, optimize=True)
                written.append(path)
            page.close()
        browser.close()
    return written


def _drop_thebe(app, pagename, templatename, context, doctree) -> None:
    """Sphinx hook: the site has no live kernels, so drop sphinx-thebe's scripts (jupyter-book adds
    them twice, a console error, and they name a CDN)."""
    def keep(asset) -> bool:
        return "thebe" not in f"{getattr(asset, 'filename', asset)} {getattr(asset, 'attributes', {}).get('body', '')}"
    for key in ("script_files", "css_files"):
        context[key] = [asset for asset in context.get(key, []) if keep(asset)]


def setup(app) -> dict:
    """This module is also a Sphinx extension (docs/_config.yml names it)."""
    app.connect("html-page-context", _drop_thebe, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m fer_utils.tools.site", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["build", "screenshots"])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="build folder (default build/site)")
    args = parser.parse_args(argv)
    html = build(args.out)
    print(f"built {html / 'index.html'}\nopen it in a browser, or serve it: "
          f"python -m http.server -b 127.0.0.1 -d {html}")
    if args.command == "screenshots":
        for path in screenshots(html):
            print(f"wrote {path} ({path.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main(sys.argv[1:])
