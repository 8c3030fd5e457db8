"""pyproject.toml and environment.yml name the same dependencies; the pins that matter are there."""
import tomllib

from nbtools import ROOT


def _yml_pip_deps() -> list[str]:
    deps, inside = [], False
    for line in (ROOT / "environment.yml").read_text().splitlines():
        if line.strip() == "- pip:":
            inside = True
            continue
        if inside and line.strip().startswith("- "):
            item = line.strip()[2:].strip().strip('"')
            if item != "-e .":
                deps.append(item)
    return deps


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert sorted(_yml_pip_deps()) == sorted(project)
    assert "python=3.11" in (ROOT / "environment.yml").read_text()


def test_known_breakages_are_pinned():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert any(d.startswith("opencv-python-headless") and "<5" in d for d in project)
    assert "grad-cam>=1.5.7" in project
    assert not any(d.startswith(("fer", "facenet-pytorch", "tensorflow")) for d in project)
