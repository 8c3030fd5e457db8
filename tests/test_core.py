"""Profiles, seeding, device choice, record() and the training loop."""
import json
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fer_utils import profiles
from fer_utils.models.baselines import SmallCNN
from fer_utils import course
from fer_utils.train import evaluate, fit
from fer_utils.utils import not_a_torch_file, pick_device, record, seed_everything, use_amp


def test_profiles_resolve_and_reject(monkeypatch):
    monkeypatch.delenv("FER_PROFILE", raising=False)
    assert profiles.resolve_profile(None) == "course"
    assert profiles.resolve_profile("smoke") == "smoke"
    monkeypatch.setenv("FER_PROFILE", "full")
    assert profiles.resolve_profile("smoke") == "full"  # the environment wins
    monkeypatch.setenv("FER_PROFILE", "fast")
    with pytest.raises(ValueError, match="unknown profile 'fast'; valid profiles are 'smoke', 'course', 'full'"):
        profiles.resolve_profile(None)
    monkeypatch.setenv("FER_PROFILE", "smoke")
    from fer_utils.recipes import ddamfn
    assert ddamfn.SMOKE.epochs != ddamfn.COURSE.epochs
    # resolved once, at the entry point: settings() and recipe() take that name and read no environment
    assert profiles.settings("05_ddamfn", "course")["epochs"] == ddamfn.COURSE.epochs
    assert profiles.recipe("05_ddamfn", "course") is ddamfn.COURSE


@pytest.mark.parametrize("notebook", sorted(profiles.SETTINGS))
def test_every_setting_is_read_by_its_notebook(notebook, monkeypatch):
    """The profile table holds what the notebook reads, nothing else; R.<field> comes from the recipe."""
    monkeypatch.delenv("FER_PROFILE", raising=False)
    path = Path(__file__).resolve().parents[1] / "notebooks" / f"{notebook}.ipynb"
    source = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
    assert "P = run.settings" in source and "course.choose" not in source
    for name in profiles.PROFILES:
        row = profiles.settings(notebook, name)
        assert set(row) == set(profiles.SETTINGS[notebook]["course"]), f"{notebook}: {name} has other keys"
        for key in set(row) - profiles.SHOWN_ONLY.get(notebook, set()):
            assert f'P["{key}"]' in source or f"P['{key}']" in source, f"{notebook} never reads P[{key!r}]"
    chosen = profiles.recipe(notebook, "full")
    assert chosen is None or chosen.name == "full"


def test_seed_everything_repeats():
    seed_everything(3)
    a = torch.rand(3), np.random.rand(2)
    seed_everything(3)
    b = torch.rand(3), np.random.rand(2)
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_device_and_amp(monkeypatch):
    """The order cuda, then mps, then cpu, and an explicit choice winning, checked with faked availability
    (on a CPU-only machine ``pick_device("cpu") == cpu`` alone could not fail)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert pick_device().type == "cuda" and pick_device("auto").type == "cuda"
    assert pick_device("cpu").type == "cpu" and pick_device("mps").type == "mps"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device().type == "mps"
    with pytest.raises(ValueError, match="CUDA is not available"):
        pick_device("cuda")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert pick_device().type == "cpu"
    with pytest.raises(ValueError, match="MPS is not available"):
        pick_device("mps")
    assert use_amp("cuda") and use_amp(torch.device("cuda", 0)) and not use_amp("cpu") and not use_amp("mps")


def test_not_a_torch_file_knows_both_torch_save_formats(tmp_path):
    torch.save({"w": torch.zeros(2)}, tmp_path / "zip.pt")
    torch.save({"w": torch.zeros(2)}, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    assert not_a_torch_file(tmp_path / "zip.pt") is None and not_a_torch_file(tmp_path / "legacy.pt") is None
    (tmp_path / "text.pt").write_text("hello")
    (tmp_path / "empty.pt").write_bytes(b"")
    assert not_a_torch_file(tmp_path / "text.pt").endswith("5 bytes starting with b'hello'")
    assert not_a_torch_file(tmp_path / "empty.pt").endswith(": 0 bytes")


def test_record_merges_and_converts(tmp_path):
    path = tmp_path / "r.json"
    record("a", np.float32(0.5), path)
    record("b", torch.tensor([1, 2]), path)
    record("c", {"x": np.int64(3), "nan": float("nan")}, path)
    assert json.loads(path.read_text()) == {"a": 0.5, "b": [1, 2], "c": {"x": 3, "nan": None}}
    assert record("a", 1, None) == 1  # no path: nothing written


def test_record_missing_folder_is_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist; create it first"):
        record("a", 1, tmp_path / "missing" / "r.json")


def test_course_start_missing_results_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing"):
        course.start("00_x", "smoke", results_path=str(tmp_path / "missing" / "r.json"))


def _toy_loader(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 8, 8, generator=g)
    y = (x.mean(dim=(1, 2, 3)) > 0).long()
    x[y == 1] += 0.5
    return DataLoader(TensorDataset(x, y), batch_size=32, shuffle=False)


def test_fit_learns_and_reports_history():
    seed_everything(0)
    model = SmallCNN(num_classes=2, width=8)
    loader = _toy_loader()
    history = fit(model, loader, epochs=4, optimizer=torch.optim.Adam(model.parameters(), 1e-2),
                  val_loader=loader, progress=False)
    assert len(history["train_loss"]) == 4 and len(history["val_accuracy"]) == 4
    assert history["train_loss"][-1] < history["train_loss"][0]
    assert evaluate(model, loader)["accuracy"] > 0.8


def test_fit_channels_last_gives_the_same_training_up_to_rounding():
    histories, outputs = [], []
    for channels_last in (False, True):
        seed_everything(0)
        model = SmallCNN(num_classes=2, width=8)
        loader = _toy_loader()
        histories.append(fit(model, loader, epochs=2, optimizer=torch.optim.SGD(model.parameters(), 1e-2),
                             val_loader=loader, progress=False, channels_last=channels_last))
        outputs.append(evaluate(model, loader, channels_last=channels_last)["outputs"])
    assert histories[0]["train_loss"] == pytest.approx(histories[1]["train_loss"], rel=1e-4)
    assert histories[0]["val_accuracy"] == histories[1]["val_accuracy"]
    assert np.allclose(outputs[0], outputs[1], atol=1e-4)


def test_evaluate_runs_under_inference_mode():
    seen = []
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 2))
    model.register_forward_hook(lambda m, i, o: seen.append(torch.is_inference_mode_enabled()))
    evaluate(model, _toy_loader(n=64))
    assert seen and all(seen)


def test_fit_stops_on_nan_with_clear_message():
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 2))
    loader = _toy_loader()
    nan_loss = lambda out, target: out.sum() * float("nan")  # noqa: E731
    with pytest.raises(FloatingPointError, match="epoch 1, step 1"):
        fit(model, loader, epochs=1, optimizer=torch.optim.SGD(model.parameters(), 0.1),
            loss_fn=nan_loss, progress=False)


def test_small_cnn_parameter_count_and_shape():
    model = SmallCNN()
    assert sum(p.numel() for p in model.parameters()) == 287_783
    assert model(torch.zeros(2, 1, 48, 48)).shape == (2, 7)
