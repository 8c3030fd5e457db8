"""The Makefile targets the README documents: `make lab` (as root, with LAB_ARGS, serving the
repository root so that student/ is reachable), `make regen NB=..`, `make run NB=..`."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from fer_utils.tools.exercises import make_student_versions
from nbtools import NOTEBOOKS, ROOT

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def _dry_run(*args: str) -> list[str]:
    """The commands `make -n` would run for the course targets (set-up lines left out)."""
    out = subprocess.run(["make", "-n", "-C", str(ROOT), *args], capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if "fer_utils.tools.runner" in line or "fer_utils.tools.grading" in line
            or "jupyter lab" in line]


def test_regen_and_run_take_one_notebook():
    assert _dry_run("regen", "NB=00")[0].endswith("regen 00")
    assert _dry_run("regen")[0].endswith("regen ")               # no NB: every notebook
    assert "grading annotate notebooks" in _dry_run("regen", "NB=00")[1]
    assert _dry_run("run", "NB=03 04")[0].endswith("--out outputs 03 04")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, token: str) -> tuple[int, dict | None]:
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, None


@pytest.mark.skipif(os.geteuid() != 0, reason="checks the root case (Docker, cloud machines)")
def test_make_lab_starts_as_root_and_serves_student(tmp_path: Path):
    student = ROOT / "student"
    created = not student.exists()
    if created:                                           # what `make exercises` writes (git-ignored)
        make_student_versions(NOTEBOOKS[0].parent, student)
    port, token = _free_port(), "fer-test-token"
    args = f"--allow-root --no-browser --ip=127.0.0.1 --port={port} --IdentityProvider.token={token}"
    log = open(tmp_path / "lab.log", "w")
    # -o: take .venv as set up (make test has just done it), so only the lab recipe itself runs
    lab = subprocess.Popen(["make", "-C", str(ROOT), "-o", ".venv/.installed", "lab", f"LAB_ARGS={args}"], stdout=log,
                           stderr=subprocess.STDOUT, start_new_session=True)
    try:
        status, listing = None, None
        for _ in range(120):                              # up to a minute on a loaded machine
            if lab.poll() is not None:
                break
            try:
                status, listing = _get(f"http://127.0.0.1:{port}/api/contents/student", token)
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.5)
        assert status == 200, (f"JupyterLab did not serve student/ (status {status}, exit {lab.poll()}):\n"
                               + (tmp_path / "lab.log").read_text()[-3000:])
        names = {item["name"] for item in listing["content"]}
        assert {p.name for p in student.glob("*.ipynb")} <= names and names, names
        status, root = _get(f"http://127.0.0.1:{port}/api/contents", token)
        assert status == 200 and {"notebooks", "student"} <= {item["name"] for item in root["content"]}
        assert _get(f"http://127.0.0.1:{port}/api/contents", "wrong-token")[0] == 403
    finally:
        os.killpg(lab.pid, signal.SIGTERM)
        try:
            lab.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(lab.pid, signal.SIGKILL)
            lab.wait()
        log.close()
        if created:
            shutil.rmtree(student)


def test_readme_names_every_wheel_fetch_all_downloads():
    from fer_utils.assets import ASSETS
    readme = (ROOT / "README.md").read_text()
    wheels = {(a.package, a.version) for a in (ASSETS.values() if isinstance(ASSETS, dict) else ASSETS)}
    named = {(p, v) for p, v in wheels if f"{p} {v}" in " ".join(readme.split())}
    assert named == wheels, f"README's Quick start does not name {sorted(wheels - named)}"
    assert "Nothing else is downloaded, ever" not in readme


RUNNER = """
import sys
from pathlib import Path
import nbformat
from fer_utils.tools.runner import _execute
nb = nbformat.v4.new_notebook()
nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
nb.cells = [nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["parameters"]}),
            nbformat.v4.new_markdown_cell("# text"),
            nbformat.v4.new_code_cell("# comment lines are skipped\\nimport time\\ntime.sleep(0.6)"),
            nbformat.v4.new_code_cell("y = 2 * x")]
src = Path(sys.argv[1]) / "t.ipynb"
nbformat.write(nb, src)
_execute(src, src.with_name("out.ipynb"), {"x": 3}, {})
"""


def test_course_runner_prints_a_line_per_cell_and_no_tcp_warning(tmp_path: Path):
    done = subprocess.run([sys.executable, "-c", RUNNER, str(tmp_path)], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [l.split() for l in done.stdout.splitlines() if l.strip().startswith("cell ")]
    assert [l[1] for l in lines] == ["1/4", "2/4", "3/4", "4/4"]      # + papermill's injected parameters
    assert [" ".join(l[2:-2]) for l in lines] == ["x = 1", "x = 3", "import time", "y = 2 * x"]
    assert float(lines[2][-2]) >= 0.6 and lines[2][-1] == "s"
    assert "without encryption" not in done.stderr + done.stdout, done.stderr
