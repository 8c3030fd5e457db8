"""Test-session set-up shared by unit tests, nbval and the notebook checks.

- Every test, and every process a test starts (notebook kernels included),
  runs with outbound network blocked (``tests/netblock/sitecustomize.py``).
- Notebooks run with the ``smoke`` profile; under nbval they write their recorded
  metrics and figures under ``outputs/test-run/`` (``FER_RESULTS_DIR`` /
  ``FER_FIGURES_DIR``) for a person to inspect after a failure.
- Under pytest-xdist (``--dist loadfile``) all nbval cells of one notebook run
  in order on one worker, in one kernel.
"""
from __future__ import annotations

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
