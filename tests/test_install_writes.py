"""Caches live outside the package: :func:`fer_utils.utils.cache_dir`, and an installed copy that writes
nothing into itself.

The install test puts a non-editable copy of the package into a temporary folder
(``pip install --no-deps --no-build-isolation --target``, a few seconds: torch and the other
dependencies still come from this environment) and runs it in a subprocess with that folder first
on ``PYTHONPATH`` and ``FER_CACHE_DIR`` pointing at a temporary cache.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import platformdirs
import pytest

import fer_utils
from fer_utils import assets, zoo
from fer_utils.utils import cache_dir

ROOT = Path(__file__).resolve().parents[1]

#: What notebook 01 reads from the asset cache, then a zoo round trip; prints what it did as JSON.
SCRIPT = """
import json, sys
import torch
import fer_utils
from fer_utils import assets, zoo
from fer_utils.models.baselines import SmallKernelCNN
from fer_utils.weights import load_mtcnn_nets

out = {"package": fer_utils.__file__, "assets_dir": str(assets.assets_dir()), "zoo_dir": str(zoo.zoo_dir())}
if "assets" in sys.argv[1:]:
    out["assets_ok"] = assets.check(verbose=False)
    out["photo"] = list(assets.load_photo("grace_hopper.jpg").shape)
    out["lfw"] = list(assets.load_lfw_subset()[0].shape)
    out["mtcnn"] = len(load_mtcnn_nets())
else:
    config = {"builder": "fer_utils.models.baselines:SmallKernelCNN", "kwargs": {"widths": [4, 8]}}
    torch.manual_seed(0)
    model = SmallKernelCNN(widths=(4, 8))
    out["zoo_file"] = str(zoo.save("tiny", model, config))
    loaded = zoo.load("tiny", config)
    out["same"] = all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
print(json.dumps(out))
"""


# ----------------------------------------------------------------- cache_dir and its users
@pytest.fixture
def no_cache_overrides(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No ``FER_*`` cache variable set (the test sets what it needs)."""
    for name in ("FER_CACHE_DIR", "FER_ASSETS_DIR", "FER_ZOO_DIR"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_cache_dir_honours_fer_cache_dir(tmp_path, no_cache_overrides):
    no_cache_overrides.setenv("FER_CACHE_DIR", str(tmp_path / "cache"))
    assert cache_dir() == tmp_path / "cache"
    assert assets.assets_dir() == tmp_path / "cache" / "assets"
    assert zoo.zoo_dir() == tmp_path / "cache" / "models"


def test_cache_dir_defaults_to_the_user_cache_outside_the_package(no_cache_overrides):
    assert cache_dir() == Path(platformdirs.user_cache_dir("fer-utils", appauthor=False))
    package = Path(fer_utils.__file__).resolve().parent
    for folder in (cache_dir(), assets.assets_dir(), zoo.zoo_dir()):
        assert not folder.resolve().is_relative_to(package) and not folder.resolve().is_relative_to(ROOT)


def test_specific_variables_override_one_folder(tmp_path, no_cache_overrides):
    no_cache_overrides.setenv("FER_CACHE_DIR", str(tmp_path / "cache"))
    no_cache_overrides.setenv("FER_ASSETS_DIR", str(tmp_path / "a"))
    no_cache_overrides.setenv("FER_ZOO_DIR", str(tmp_path / "z"))
    assert (assets.assets_dir(), zoo.zoo_dir()) == (tmp_path / "a", tmp_path / "z")


# ----------------------------------------------------------------- a non-editable install
def _source_copy(dest: Path) -> Path:
    """The files ``pip install`` needs, copied out of the repository (so that the build writes only there)."""
    shutil.copytree(ROOT / "fer_utils", dest / "fer_utils", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, dest / name)
    return dest


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding a non-editable install of the package alone (no dependencies)."""
    tmp = tmp_path_factory.mktemp("install")
    source, target = _source_copy(tmp / "src"), tmp / "site"
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
           "--disable-pip-version-check", "-q", "--target", str(target), str(source)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}"
    return target


def _listing(folder: Path) -> dict[str, int]:
    """Every file and folder under ``folder`` with its modification time (ns)."""
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")}


def _run_installed(site: Path, cache: Path, *args: str) -> dict:
    """Run :data:`SCRIPT` on the installed copy with ``FER_CACHE_DIR=cache``; its JSON line."""
    env = {k: v for k, v in os.environ.items() if k not in ("FER_ASSETS_DIR", "FER_ZOO_DIR")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    env["FER_CACHE_DIR"] = str(cache)
    workdir = cache.parent / "cwd"  # neither the repository nor the site folder
    workdir.mkdir(exist_ok=True)
    done = subprocess.run([sys.executable, "-c", SCRIPT, *args], capture_output=True, text=True,
                          cwd=workdir, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _assert_nothing_written(site: Path, before: dict[str, int], out: dict) -> None:
    assert Path(out["package"]).resolve().is_relative_to(site.resolve()), out["package"]
    after = _listing(site)
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    assert not changed, f"the installed package wrote into itself: {changed[:10]}"


def test_installed_zoo_round_trip_writes_only_to_the_cache(site, tmp_path):
    cache, before = tmp_path / "cache", _listing(site)
    out = _run_installed(site, cache)
    _assert_nothing_written(site, before, out)
    assert out["same"] and Path(out["zoo_dir"]) == cache / "models"
    assert Path(out["zoo_file"]).parent == cache / "models" and Path(out["zoo_file"]).is_file()


def test_installed_package_reads_the_assets_from_the_cache(site, tmp_path):
    if not assets.check(verbose=False):
        pytest.skip(f"asset cache {assets.assets_dir()} incomplete: run python -m fer_utils.assets fetch-all")
    cache = tmp_path / "cache"
    shutil.copytree(assets.assets_dir(), cache / "assets")
    before = _listing(site)
    out = _run_installed(site, cache, "assets")
    _assert_nothing_written(site, before, out)
    assert out["assets_ok"] and Path(out["assets_dir"]) == cache / "assets"
    assert out["photo"] == [600, 512, 3] and out["lfw"] == [100, 25, 25] and out["mtcnn"] == 3
