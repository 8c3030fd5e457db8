"""The course website, built from the committed notebooks and opened in headless Chromium.

The build (``fer_utils.tools.site.build``, what ``make site`` runs) fails on any warning. Then every
page is served on 127.0.0.1 and opened in Debian's Chromium driven by Playwright (the system
browser; nothing is downloaded): HTTP 200, no console error, every image loaded, math typeset by
the MathJax shipped inside the site, every internal link and anchor resolving, the sidebar listing
the notebooks of ``notebooks/*.ipynb`` in order, and no request leaving 127.0.0.1. Two pages are
also opened from ``file://``. Without Chromium the browser tests are skipped with the reason, and
under ``CI=true`` that skip is a failure.
"""
from __future__ import annotations

import os
import re
import urllib.parse
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import pytest

from fer_utils.tools import site

NOTEBOOKS = [p.stem for p in site.notebook_paths()]
WAIT_FOR_PAGE = """async () => {
    for (const img of document.images) img.loading = "eager";
    await Promise.all([...document.images].map(img => img.complete ? null :
        new Promise(done => { img.onload = img.onerror = done; })));
    if (window.MathJax && MathJax.startup) await MathJax.startup.promise;
}"""
PAGE_FACTS = """() => {
    const bare = document.body.cloneNode(true);
    bare.querySelectorAll("pre, code, script, style, mjx-container").forEach(e => e.remove());
    return {
        images: [...document.images].map(i => [i.getAttribute("src"), i.complete, i.naturalWidth, i.naturalHeight]),
        math: document.querySelectorAll(".math").length,
        typeset: document.querySelectorAll(".math mjx-container, mjx-container.MathJax").length,
        untypeset: [...document.querySelectorAll(".math")].filter(e => !e.querySelector("mjx-container")).length,
        rawDollars: (bare.textContent.match(/\\$\\$/g) || []).length,
        links: [...document.querySelectorAll("a[href]")].map(a => a.href),
        sidebar: [...document.querySelectorAll("nav.bd-links a.reference.internal")].map(a => a.href),
    };
}"""


def _browser_or_skip() -> str:
    """The Chromium path and a working Playwright, else skip (a failure under CI=true)."""
    reason = None
    chromium = site.find_chromium()
    if chromium is None:
        reason = ("no Chromium installed (the set-up installs Debian's `chromium` when it runs as root "
                  "with apt; otherwise: apt-get install chromium)")
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            reason = "the Python package playwright is not installed (pip install -e .)"
    if reason is None:
        return chromium
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"browser test cannot run under CI=true: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def html(tmp_path_factory) -> Path:
    return site.build(tmp_path_factory.mktemp("site"))


@pytest.fixture(scope="module")
def browser():
    chromium = _browser_or_skip()
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=site.CHROMIUM_ARGS)
        yield browser
        browser.close()


class _Ids(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs) -> None:
        self.ids.update(value for name, value in attrs if name in ("id", "name") and value)


def _ids(url: str, cache: dict) -> set[str] | None:
    """The element ids of the page at ``url``, or None when it does not answer 200."""
    if url not in cache:
        try:
            with urllib.request.urlopen(url, timeout=10) as reply:
                parser = _Ids()
                body = reply.read()
                if url.endswith(".html") or url.endswith("/"):
                    parser.feed(body.decode("utf-8", "replace"))
                cache[url] = parser.ids
        except OSError:
            cache[url] = None
    return cache[url]


def _open(page, url: str):
    """Go to ``url``; return (HTTP status, console errors, facts about the page)."""
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    reply = page.goto(url, wait_until="load")
    page.evaluate(WAIT_FOR_PAGE)
    facts = page.evaluate(PAGE_FACTS)
    return (reply.status if reply else None), errors, facts


def test_build_makes_every_page(html):
    names = {p.relative_to(html).as_posix() for p in html.rglob("*.html")}
    assert {"index.html", "results.html", "data.html"} <= names
    assert {f"notebooks/{n}.html" for n in NOTEBOOKS} <= names
    assert (html / "_static" / "mathjax" / "tex-chtml.js").exists()
    for stem in NOTEBOOKS:  # each notebook page links its student version, which the build copied
        text = (html / "notebooks" / f"{stem}.html").read_text()
        match = re.search(rf'href="(\.\./_downloads/[0-9a-f]+/{stem}\.ipynb)"', text)
        assert match, f"notebooks/{stem}.html does not link its student version"
        assert (html / "notebooks" / match.group(1)).resolve().exists()
        assert "open-in-jupyterlab" in text
        assert "MARK SCHEME" not in text and "Rubric (instructors)" not in text, f"{stem}: a rubric is published"


def _has_latex(notebook: Path) -> bool:
    import nbformat
    nb = nbformat.read(notebook, as_version=4)
    return any(c.cell_type == "markdown" and re.search(r"\$[^$\s][^$]*\$", c.source) for c in nb.cells)


def test_broken_reference_fails_the_build(tmp_path, monkeypatch):
    """A page with a dangling cross-reference or a missing image must not build (one notebook, to be quick)."""
    root = tmp_path / "repo"
    for name in ("docs", "results", "README.md", "data/README.md"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).symlink_to(site.ROOT / name)
    (root / "notebooks").mkdir()
    small = min(site.notebook_paths(), key=lambda p: p.stat().st_size)
    (root / "notebooks" / small.name).symlink_to(small)
    real = site._fill_home

    def broken(*args):
        return real(*args) + "\nSee {ref}`no-such-label` and ![gone](figures/no_such_figure.png).\n"
    monkeypatch.setattr(site, "_fill_home", broken)
    with pytest.raises(SystemExit, match="site build failed") as err:
        site.build(tmp_path / "broken", root=root)
    assert "no-such-label" in str(err.value) and "no_such_figure" in str(err.value)


def _guarded_context(browser, outside: list[str]):
    """A browser context that lets only 127.0.0.1, file:, data: and blob: through; the rest is logged."""
    context = browser.new_context()

    def guard(route):
        url = route.request.url
        if url.startswith(("data:", "blob:", "file:")) or urllib.parse.urlsplit(url).hostname == "127.0.0.1":
            return route.continue_()
        outside.append(url)
        return route.abort()
    context.route("**/*", guard)
    return context


def test_every_page_in_chromium(browser, html):
    pages = sorted(p.relative_to(html).as_posix() for p in html.rglob("*.html")
                   if not p.relative_to(html).parts[0].startswith("_"))  # _static/ holds theme templates
    outside: list[str] = []
    with site.serve(html) as base:
        context = _guarded_context(browser, outside)
        ids_cache: dict = {}
        typeset_pages = set()
        for name in pages:
            page = context.new_page()
            status, errors, facts = _open(page, base + name)
            page.close()
            assert status == 200, f"{name}: HTTP {status}"
            assert not errors, f"{name}: console errors {errors}"
            bad = [img for img in facts["images"] if not (img[1] and img[2] > 0 and img[3] > 0)]
            assert not bad, f"{name}: images not loaded {bad}"
            assert facts["untypeset"] == 0 and facts["rawDollars"] == 0, f"{name}: math not typeset {facts}"
            if facts["typeset"] > 0:
                typeset_pages.add(name)
            for link in facts["links"]:
                if not link.startswith(base):
                    continue
                target, _, anchor = link.partition("#")
                ids = _ids(target, ids_cache)
                assert ids is not None, f"{name}: link {link} does not resolve"
                assert not anchor or urllib.parse.unquote(anchor) in ids, f"{name}: no anchor for {link}"
            if name not in ("genindex.html", "search.html"):
                listed = [re.search(r"notebooks/(\d\d_\w+)\.html", h) for h in facts["sidebar"]]
                assert [m.group(1) for m in listed if m] == NOTEBOOKS, f"{name}: sidebar {facts['sidebar']}"
        context.close()
    assert not outside, f"requests left 127.0.0.1: {sorted(set(outside))[:10]}"
    with_latex = {f"notebooks/{p.stem}.html" for p in site.notebook_paths() if _has_latex(p)}
    assert with_latex and with_latex <= typeset_pages, f"no typeset math on {sorted(with_latex - typeset_pages)}"


def test_pages_open_from_file_url(browser, html):
    outside: list[str] = []
    context = _guarded_context(browser, outside)
    for name in ("index.html", f"notebooks/{NOTEBOOKS[-1]}.html"):
        page = context.new_page()
        status, errors, facts = _open(page, (html / name).as_uri())
        page.close()
        assert not errors, f"file:// {name}: console errors {errors}"
        assert all(img[1] and img[2] > 0 for img in facts["images"]), f"file:// {name}: images {facts['images']}"
        assert facts["untypeset"] == 0 and facts["rawDollars"] == 0, f"file:// {name}: math {facts}"
        assert [m for m in re.findall(r"notebooks/(\d\d_\w+)\.html", " ".join(facts["sidebar"]))] == NOTEBOOKS
    assert facts["typeset"] > 0
    context.close()
    assert not outside, f"requests left the machine from file://: {sorted(set(outside))[:10]}"
