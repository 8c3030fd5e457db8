"""What a notebook imports to start and record a run (the first code cell of every notebook)::

    from fer_utils import course

    run = course.start("00_datasets", profile, seed=seed, device=device,
                       results_path=results_path, figures_dir=figures_dir)
    P = run.settings                   # this notebook's row of fer_utils/profiles.py
    run.record("accuracy_lab", 0.97)   # -> results_path (JSON)
    run.savefig(fig, "gallery")        # -> figures_dir/gallery.png

Running every notebook (``make run``, ``make regen``) is maintainers' machinery:
:mod:`fer_utils.tools.runner`.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from fer_utils.profiles import SETTINGS, Profile, get_profile, recipe, settings
from fer_utils.utils import pick_device, record, seed_everything


@dataclass
class Run:
    """What a notebook needs to know about this run."""

    notebook: str
    profile: Profile
    seed: int
    device: torch.device
    results_path: Path | None
    figures_dir: Path | None
    settings: dict = field(default_factory=dict)  # the notebook's row of fer_utils.profiles.SETTINGS
    recipe: Any = None  # the paper notebook's recipe for this profile (fer_utils.recipes.<paper>)

    def record(self, name: str, value):
        """Write one key metric to ``results_path`` (nothing if it is None) and return it."""
        return record(name, value, self.results_path)

    def savefig(self, fig, name: str) -> None:
        """Save ``fig`` as ``figures_dir/name.png`` when a figures folder is set."""
        if self.figures_dir is not None:
            fig.savefig(self.figures_dir / f"{name}.png", dpi=80, bbox_inches="tight")
            self.record(f"figures.{name}", f"{name}.png")


def start(notebook: str, profile: str | None = None, seed: int = 0, device: str | None = "cpu",
          results_path: str | None = None, figures_dir: str | None = None, threads: int = 2) -> Run:
    """Seed, pick the device and the profile, resolve where results go, print a one-line summary.

    ``FER_PROFILE`` overrides ``profile`` and ``FER_THREADS`` the torch thread count; ``FER_RESULTS_DIR`` / ``FER_FIGURES_DIR``
    fill ``results_path`` / ``figures_dir`` when they are None (that is how the
    tests collect what a notebook records). A ``results_path`` whose folder does
    not exist is an error here, before any work is done.
    """
    prof = get_profile(profile)
    seed_everything(seed)
    torch.set_num_threads(int(os.environ.get("FER_THREADS", threads)))  # the tests run two notebooks at once
    if results_path is None and os.environ.get("FER_RESULTS_DIR"):
        results_path = str(Path(os.environ["FER_RESULTS_DIR"]) / f"{notebook}.json")
    if figures_dir is None and os.environ.get("FER_FIGURES_DIR"):
        figures_dir = str(Path(os.environ["FER_FIGURES_DIR"]) / notebook)
    res = Path(results_path) if results_path else None
    if res is not None:
        if not res.parent.is_dir():
            raise FileNotFoundError(
                f"results_path {str(res)!r}: folder {str(res.parent)!r} does not exist; create it first"
            )
        res.write_text("{}\n")  # start from a clean file: every metric comes from this run
    figs = Path(figures_dir) if figures_dir else None
    if figs is not None:
        figs.mkdir(parents=True, exist_ok=True)
    run = Run(notebook, prof, seed, pick_device(device), res, figs,
              settings(notebook, prof) if notebook in SETTINGS else {}, recipe(notebook, prof))
    run.record("profile", prof.name)
    run.record("seed", seed)
    print(f"notebook {notebook}: profile={prof.name}, seed={seed}, device={run.device.type}")
    return run


def recorded_claims(notebook: str, threads: int) -> list[dict] | None:
    """The ``claims`` list of the committed run of ``notebook`` with ``threads`` torch threads per run
    (``results/threads<threads>/<notebook>.json`` in the repository, written by ``make threads-check``), or None
    when there is none (an installed package without the repository, or no recorded run). A notebook compares its
    own verdicts with these to show which of them another summation order changes."""
    path = Path(__file__).resolve().parents[1] / "results" / f"threads{threads}" / f"{notebook}.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    return data.get("metrics", data).get("claims")
