"""Test-session set-up shared by unit tests, nbval and the notebook checks.

- Every test, and every process a test starts (notebook kernels included),
  runs with outbound network blocked (``tests/netblock/sitecustomize.py``).
- Notebooks run with the ``smoke`` profile; under nbval they write their recorded
  metrics and figures under ``outputs/test-run/`` (``FER_RESULTS_DIR`` /
  ``FER_FIGURES_DIR``), and one more item after each notebook's last cell,
  ``notebooks/NN_x.ipynb::recorded metrics (smoke)``, checks them against the
  notebook's ``metadata.fer`` contract: each notebook is executed once for both.
  Tests under ``tests/`` that run notebooks themselves write elsewhere
  (``outputs/test-run/other/``), so they never overwrite what nbval recorded.
- Under pytest-xdist (``--dist loadfile``) all nbval cells of one notebook (and
  its recorded-metrics item) run in order on one worker, in one kernel.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NETBLOCK = ROOT / "tests" / "netblock"
RUN_DIR = ROOT / "outputs" / "test-run"

# Block the network in this process and in every child process.
os.environ["FER_BLOCK_NETWORK"] = "1"
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(NETBLOCK), os.environ.get("PYTHONPATH")]))
sys.path.insert(0, str(NETBLOCK))
import sitecustomize  # noqa: E402,F401  (applies the block here too)

os.environ.setdefault("FER_PROFILE", "smoke")
os.environ["FER_RESULTS_DIR"] = str(RUN_DIR / "results")
os.environ["FER_FIGURES_DIR"] = str(RUN_DIR / "figures")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("FER_THREADS", "1")  # two notebooks run at once under xdist, one per core
os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):  # the controller (or a run without xdist)
        shutil.rmtree(RUN_DIR, ignore_errors=True)
        (RUN_DIR / "results").mkdir(parents=True)
        (RUN_DIR / "figures").mkdir(parents=True)
        (RUN_DIR / "other" / "results").mkdir(parents=True)
        (RUN_DIR / "other" / "figures").mkdir(parents=True)


@pytest.fixture(autouse=True)
def _other_results_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    """Notebooks started by tests under tests/ record into outputs/test-run/other/, not nbval's folder."""
    monkeypatch.setenv("FER_RESULTS_DIR", str(RUN_DIR / "other" / "results"))
    monkeypatch.setenv("FER_FIGURES_DIR", str(RUN_DIR / "other" / "figures"))


class RecordedMetrics(pytest.Item):
    """After nbval ran a notebook's cells: its recorded smoke metrics and promised figures."""

    def runtest(self) -> None:
        from nbtools import check_metrics, declared, read

        stem = self.path.stem
        results_file = RUN_DIR / "results" / f"{stem}.json"
        assert results_file.exists(), f"{stem}: nbval's run recorded nothing ({results_file.name} missing)"
        results = json.loads(results_file.read_text())
        contract = declared(read(self.path))
        assert results.get("profile") == "smoke", f"{stem}: recorded profile {results.get('profile')!r}"
        check_metrics(results, contract.get("checks", {}), f"{stem} (smoke)")
        for name in contract.get("figures", []):
            figure = RUN_DIR / "figures" / stem / f"{name}.png"
            assert figure.exists() and figure.stat().st_size > 1000, f"{stem} promised figure {name!r}"

    def reportinfo(self):
        return self.path, None, f"{self.path.name}: recorded metrics (smoke)"


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list) -> None:
    """Append a RecordedMetrics item after the last nbval cell of each notebook."""
    last: dict = {}
    for index, item in enumerate(items):
        if item.path.suffix == ".ipynb" and item.parent is not None and item.parent.path == item.path:
            last[item.path] = index
    for path, index in sorted(last.items(), key=lambda kv: -kv[1]):
        parent = items[index].parent
        items.insert(index + 1, RecordedMetrics.from_parent(parent, name="recorded metrics (smoke)"))


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a test module (``pytestmark = pytest.mark.usefixtures("one_torch_thread")``): large
    forward passes cost less CPU than with two threads on a shared machine; the count is restored after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
