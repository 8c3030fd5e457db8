"""Asset cache: checksums of the fetched files and clear errors when one is missing or bad."""
import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from fer_utils import assets
from fer_utils.assets import ASSETS, AssetError, fetch


@pytest.mark.parametrize("name", sorted(ASSETS))
def test_fetched_asset_matches_its_sha256(name):
    path = fetch(name)  # fails with the AssetError message if the setup step was not run
    data = path.read_bytes()
    assert len(data) == ASSETS[name].size
    assert hashlib.sha256(data).hexdigest() == ASSETS[name].sha256


def test_table_has_source_and_licence_for_every_asset():
    for a in ASSETS.values():
        assert a.package and a.version and a.wheel_path.endswith(a.name) and a.licence
        assert len(a.sha256) == 64
    assert ASSETS["emotion_model.hdf5"].sha256 == (  # cross-check with reference/assets.md
        "59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e")


def test_missing_asset_names_file_and_setup_command(tmp_path, monkeypatch):
    monkeypatch.setenv("FER_ASSETS_DIR", str(tmp_path))
    with pytest.raises(AssetError) as err:
        fetch("grace_hopper.jpg")
    message = str(err.value)
    assert "grace_hopper.jpg" in message and "missing" in message
    assert "make setup" in message and "python -m fer_utils.assets fetch-all" in message
    assert isinstance(err.value, FileNotFoundError)


def test_corrupted_asset_is_refused(tmp_path, monkeypatch):
    good = fetch("pnet.pt")
    monkeypatch.setenv("FER_ASSETS_DIR", str(tmp_path))
    shutil.copy(good, tmp_path / "pnet.pt")
    with open(tmp_path / "pnet.pt", "r+b") as f:  # flip one byte
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(AssetError, match=r"pnet\.pt.*corrupted.*fetch-all"):
        fetch("pnet.pt")
    assert not assets.check(verbose=False)


def test_unknown_asset_is_a_key_error():
    with pytest.raises(KeyError, match="unknown asset"):
        fetch("lena.png")


def test_load_photo_is_rgb_uint8():
    grace = assets.load_photo("grace_hopper.jpg")
    astro = assets.load_photo("astronaut.png")
    assert grace.shape == (600, 512, 3) and grace.dtype == np.uint8
    assert astro.shape == (512, 512, 3)
    # the astronaut's suit is orange: red channel above blue on average in the lower part
    lower = astro[400:].reshape(-1, 3).mean(0)
    assert lower[0] > lower[2]
    faces, others = assets.load_lfw_subset()
    assert faces.shape == (100, 25, 25) == others.shape


def test_fetch_all_is_idempotent_without_downloading(monkeypatch, capsys):
    def no_download(*args, **kwargs):
        raise AssertionError("fetch-all downloaded although every file was present")

    monkeypatch.setattr(assets, "_download_wheel", no_download)
    assert set(assets.fetch_all().values()) == {"ok"}
    assert capsys.readouterr().out.count("\n") == len(ASSETS)  # one line per file


def test_check_command_exit_codes(tmp_path, monkeypatch, capsys):
    assert assets.main(["check"]) == 0
    monkeypatch.setenv("FER_ASSETS_DIR", str(tmp_path))
    assert assets.main(["check"]) == 1
    assert "fetch-all" in capsys.readouterr().out


def test_readme_shows_the_same_table():
    readme = Path(__file__).resolve().parents[1] / "data" / "README.md"
    assert assets.table_markdown() in readme.read_text()
