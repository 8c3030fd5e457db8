"""fer_utils.zoo: the course model cache refuses what it cannot vouch for."""
from __future__ import annotations

import pytest
import torch

from fer_utils import zoo
from fer_utils.models.baselines import SmallKernelCNN

CONFIG = {"builder": "fer_utils.models.baselines:SmallKernelCNN", "kwargs": {"widths": [4, 8]},
          "input": {"size": 48, "channels": 1, "normalize": "symmetric"}, "profile": "course"}


@pytest.fixture(autouse=True)
def zoo_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("FER_ZOO_DIR", str(tmp_path / "models"))


def trained_like() -> SmallKernelCNN:
    torch.manual_seed(3)
    model = SmallKernelCNN(widths=(4, 8))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def test_round_trip_gives_the_same_function_and_reads_with_weights_only():
    model = trained_like()
    path = zoo.save("gap_cnn", model, CONFIG, metrics={"accuracy": 0.5})
    torch.load(path, weights_only=True)  # no pickled code inside
    loaded, metrics = zoo.load("gap_cnn", CONFIG, with_metrics=True)
    x = torch.randn(2, 1, 48, 48)
    assert torch.equal(loaded(x), model(x))
    assert metrics == {"accuracy": 0.5} and not loaded.training


def test_a_changed_config_is_refused_naming_the_field():
    zoo.save("gap_cnn", trained_like(), CONFIG)
    changed = {**CONFIG, "profile": "smoke"}
    with pytest.raises(zoo.ConfigMismatchError, match="profile: saved 'course', asked 'smoke'"):
        zoo.load("gap_cnn", changed)


def test_a_missing_model_says_what_to_run():
    with pytest.raises(zoo.MissingModelError, match="run the notebook"):
        zoo.load("nothing_here", CONFIG)


def test_a_model_whose_source_changed_is_never_loaded_stale(monkeypatch):
    zoo.save("gap_cnn", trained_like(), CONFIG)
    monkeypatch.setattr(zoo, "source_hash", lambda cls: "0123456789ab")
    with pytest.raises(zoo.StaleModelError, match="older version"):
        zoo.load("gap_cnn", CONFIG)


def test_save_refuses_a_config_that_builds_another_network():
    with pytest.raises(ValueError, match="different SmallKernelCNN"):
        zoo.save("gap_cnn", trained_like(), {**CONFIG, "kwargs": {"widths": [4, 16]}})
    with pytest.raises(TypeError, match="JSON"):
        zoo.save("gap_cnn", trained_like(), {**CONFIG, "extra": object()})


def test_object_arguments_are_imported_by_reference():
    config = {"builder": "fer_utils.models.ddamfn:DDAMFN",
              "kwargs": {"num_classes": 7, "num_heads": 1, "config": {"ref": "fer_utils.models.ddamfn:COURSE"}}}
    model = zoo.build(config)
    assert model.config.name == "course"


def test_latest_finds_the_newest_entry_with_the_fields_and_still_refuses_stale_code(monkeypatch):
    import os
    import time as time_

    old, new = trained_like(), trained_like()
    with torch.no_grad():
        new.classifier[-1].bias.add_(1.0)
    first = zoo.save("gap_cnn", old, CONFIG)
    os.utime(first, (time_.time() - 60, time_.time() - 60))          # saved a minute earlier
    zoo.save("gap_cnn", new, {**CONFIG, "epochs": 9})
    zoo.save("gap_cnn", old, {**CONFIG, "profile": "smoke"})
    model, config, _ = zoo.latest("gap_cnn", profile="course")
    x = torch.randn(2, 1, 48, 48)
    assert config["epochs"] == 9 and torch.equal(model(x), new(x))
    with pytest.raises(zoo.MissingModelError, match="'profile': 'full'.*saved: "):
        zoo.latest("gap_cnn", profile="full")
    monkeypatch.setattr(zoo, "source_hash", lambda cls: "0123456789ab")
    with pytest.raises(zoo.StaleModelError):
        zoo.latest("gap_cnn", profile="course")


def test_a_config_whose_referenced_object_changed_is_refused_as_stale(monkeypatch):
    from fer_utils.models import ddamfn

    config = {"builder": "fer_utils.models.ddamfn:DDAMFN",
              "kwargs": {"num_classes": 7, "num_heads": 1, "config": {"ref": "fer_utils.models.ddamfn:COURSE"}}}
    zoo.save("ddamfn", zoo.build(config), config)
    monkeypatch.setattr(ddamfn, "COURSE", ddamfn.scaled(ddamfn.FAITHFUL, "course", 8, repeats=(1, 1, 1), input_size=64))
    with pytest.raises(zoo.StaleModelError, match="state dict differs"):
        zoo.load("ddamfn", config)
    monkeypatch.delattr(ddamfn, "COURSE")
    with pytest.raises(zoo.StaleModelError, match="no longer builds"):
        zoo.load("ddamfn", config)
