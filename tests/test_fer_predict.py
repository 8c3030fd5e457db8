"""``fer-predict`` on small inputs made here from the fetched photos: rows, empty rows, columns,
probabilities, the smoothing formula, annotated outputs, the other model kinds and every bad input."""
from __future__ import annotations

import dataclasses
import math
import sys

import cv2
import numpy as np
import pytest
import torch

from fer_utils import assets
from fer_utils.cli import fer_predict
from fer_utils.cli.predict_io import Source, read_csv
from fer_utils.labels import CLASSES_7

COLUMNS = ["frame", "time_s", "face", "x", "y", "w", "h", *CLASSES_7, "label"]
FACE_FRAMES, BLANK_FRAMES, FPS = (0, 1, 2, 5, 6, 8, 9), (3, 4, 7), 10.0


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    """The two fetched photos as 256x256 RGB (face about 50 px for Haar)."""
    try:
        loaded = {name: assets.load_photo(name) for name in ("astronaut.png", "grace_hopper.jpg")}
    except assets.AssetError as err:
        pytest.skip(f"photos not fetched (run python -m fer_utils.assets fetch-all): {err}")
    return {name: cv2.resize(image[:512, :512], (256, 256), interpolation=cv2.INTER_AREA)
            for name, image in loaded.items()}


@pytest.fixture(scope="module")
def tiny_video(photos, tmp_path_factory) -> str:
    """10 frames at 10 frames/s: astronaut in 0-2 and 5-6, grace_hopper in 8-9, blank grey in 3, 4, 7."""
    path = tmp_path_factory.mktemp("video") / "tiny.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (256, 256))
    for i in range(10):
        if i in BLANK_FRAMES:
            frame = np.full((256, 256, 3), 128, np.uint8)
        else:
            frame = photos["grace_hopper.jpg" if i in (8, 9) else "astronaut.png"]
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return str(path)


@pytest.fixture(scope="module")
def plain_run(tiny_video, tmp_path_factory) -> tuple[list[dict], fer_predict.Summary]:
    out = tmp_path_factory.mktemp("plain") / "rows.csv"
    summary = fer_predict.main([tiny_video, "--out", str(out), "--no-progress"])
    return read_csv(out), summary


def run_cli(argv: list[str], monkeypatch, capsys) -> tuple[int, str]:
    """The console script's exit code and stderr."""
    monkeypatch.setattr(sys, "argv", ["fer-predict", *argv])
    with pytest.raises(SystemExit) as stop:
        fer_predict.cli()
    return stop.value.code, capsys.readouterr().err


def probabilities(row: dict) -> np.ndarray:
    return np.array([float(row[name]) for name in CLASSES_7])


# ------------------------------------------------------------------------------ rows
def test_video_rows_one_per_face_and_one_per_empty_frame(plain_run):
    rows, summary = plain_run
    assert list(rows[0]) == COLUMNS
    by_frame = {i: [r for r in rows if int(r["frame"]) == i] for i in range(10)}
    for i in BLANK_FRAMES:
        assert len(by_frame[i]) == 1 and by_frame[i][0]["face"] == "" and by_frame[i][0]["label"] == ""
        assert by_frame[i][0]["neutral"] == "" and by_frame[i][0]["x"] == ""
    for i in FACE_FRAMES:
        assert len(by_frame[i]) >= 1 and all(r["label"] for r in by_frame[i])
        assert float(by_frame[i][0]["time_s"]) == pytest.approx(i / FPS, abs=1e-6)
    assert summary.frames == 10 and summary.no_face == len(BLANK_FRAMES)
    assert summary.rows == len(rows) == summary.faces + summary.no_face


def test_probabilities_sum_to_one_and_labels_are_plausible(plain_run):
    rows, _ = plain_run
    faces = [r for r in rows if r["label"]]
    for row in faces:
        p = probabilities(row)
        assert p.min() >= 0 and p.sum() == pytest.approx(1.0, abs=1e-5)
        assert row["label"] == CLASSES_7[int(np.argmax(p))]
    largest = {int(r["frame"]): r for r in reversed(faces)}   # the first row of a frame is its largest face
    assert {largest[i]["label"] for i in (0, 1, 2, 5, 6)} == {"happiness"}   # the smiling astronaut
    assert {largest[i]["label"] for i in (8, 9)} == {"neutral"}              # Grace Hopper
    assert largest[0]["face"] == largest[6]["face"] != largest[8]["face"]    # tracked across the blank frames


def test_summary_is_printed(tiny_video, tmp_path, capsys):
    fer_predict.main([tiny_video, "--out", str(tmp_path / "r.csv"), "--no-progress"])
    out = capsys.readouterr().out
    assert "frames read: 10; frames with no face: 3" in out and "images skipped: 0" in out
    assert "frames/s" in out


# ------------------------------------------------------------------------------ smoothing
def test_ema_formula_by_hand():
    tracker = fer_predict.Tracker(tau=0.5)
    box = (10.0, 10.0, 60.0, 60.0)
    p0, p1, p2 = np.array([1.0, 0.0]), np.array([0.0, 1.0]), np.array([0.5, 0.5])
    assert tracker.assign([box]) == [0]
    assert np.allclose(tracker.update(0, box, 0.0, p0), p0)               # a new track starts at p
    a = 1 - math.exp(-0.1 / 0.5)
    s1 = tracker.update(0, box, 0.1, p1)
    assert np.allclose(s1, a * p1 + (1 - a) * p0)
    a2 = 1 - math.exp(-0.3 / 0.5)                                          # a gap of 0.3 s: larger weight
    assert np.allclose(tracker.update(0, box, 0.4, p2), a2 * p2 + (1 - a2) * s1)
    assert fer_predict.ema_weight(0.1, 0.0) == 1.0


def test_tracker_matches_by_iou():
    tracker = fer_predict.Tracker()
    left, right = (0.0, 0.0, 50.0, 50.0), (200.0, 0.0, 250.0, 50.0)
    assert tracker.assign([left, right]) == [0, 1]
    for t, b in ((0, left), (1, right)):
        tracker.update(t, b, 0.0, np.ones(2) / 2)
    assert tracker.assign([(202.0, 2.0, 252.0, 52.0), (400.0, 0.0, 450.0, 50.0)]) == [1, 2]


def test_smoothed_csv_equals_hand_computed_ema(plain_run, tiny_video, tmp_path):
    rows, _ = plain_run
    out, tau = tmp_path / "smooth.csv", 0.25
    fer_predict.main([tiny_video, "--out", str(out), "--smooth", str(tau), "--no-progress"])
    smooth = read_csv(out)
    assert [(r["frame"], r["face"]) for r in smooth] == [(r["frame"], r["face"]) for r in rows]
    state: dict[str, tuple[float, np.ndarray]] = {}       # track -> (time, smoothed p), by hand
    for raw, got in zip(rows, smooth):
        if not raw["face"]:
            continue
        t, p = float(raw["time_s"]), probabilities(raw)
        if raw["face"] in state:
            t_prev, p_bar = state[raw["face"]]
            a = 1 - math.exp(-(t - t_prev) / tau)   # frame 5 follows frame 2: dt = 0.3 s
            p = a * p + (1 - a) * p_bar
        state[raw["face"]] = (t, p)
        assert np.abs(probabilities(got) - p).max() < 3e-6, raw["frame"]   # the CSV keeps 6 decimals
    assert len(state) >= 2 and got["label"] == CLASSES_7[int(np.argmax(probabilities(got)))]


# ------------------------------------------------------------------------------ outputs
def test_annotated_mp4_gif_and_plot(tiny_video, tmp_path):
    mp4, gif, png = tmp_path / "a.mp4", tmp_path / "a.gif", tmp_path / "t.png"
    fer_predict.main([tiny_video, "--out", str(tmp_path / "r.csv"), "--annotate", str(mp4), "--plot", str(png),
                      "--no-progress"])
    capture, count = cv2.VideoCapture(str(mp4)), 0
    while capture.read()[0]:
        count += 1
    assert count == 10
    fer_predict.main([tiny_video, "--out", str(tmp_path / "r2.csv"), "--annotate", str(gif), "--no-progress"])
    from PIL import Image

    with Image.open(gif) as im:
        assert im.n_frames == 10
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_folder_rows_file_column_and_skipped_images(photos, tmp_path, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    cv2.imwrite(str(folder / "a_astronaut.png"), cv2.cvtColor(photos["astronaut.png"], cv2.COLOR_RGB2BGR))
    (folder / "b_broken.jpg").write_text("not a jpeg")
    cv2.imwrite(str(folder / "c_blank.png"), np.full((64, 64), 200, np.uint8))
    (folder / "notes.txt").write_text("ignored")
    out = tmp_path / "rows.csv"
    summary = fer_predict.main([str(folder), "--out", str(out), "--no-progress"])
    rows = read_csv(out)
    assert list(rows[0]) == COLUMNS + ["file"]
    assert [(r["frame"], r["file"]) for r in rows] == [("0", "a_astronaut.png"), ("2", "c_blank.png")]
    assert rows[0]["label"] == "happiness" and rows[1]["label"] == "" and rows[0]["time_s"] == ""
    assert summary.frames == 2 and summary.no_face == 1 and [s[0] for s in summary.skipped] == ["b_broken.jpg"]
    printed = capsys.readouterr().out
    assert "images skipped: 1" in printed and "b_broken.jpg" in printed


# ------------------------------------------------------------------------------ other models
def test_faceapi_model_on_an_image(photos, tmp_path):
    try:
        assets.fetch("face_expression_model.bin")
    except assets.AssetError as err:
        pytest.skip(f"face-api weights not fetched (needs npm at set-up): {err}")
    image = tmp_path / "astronaut.png"
    cv2.imwrite(str(image), cv2.cvtColor(photos["astronaut.png"], cv2.COLOR_RGB2BGR))
    fer_predict.main([str(image), "--model", "faceapi", "--out", str(tmp_path / "r.csv")])
    (row,) = read_csv(tmp_path / "r.csv")
    assert row["label"] == "happiness" and probabilities(row).sum() == pytest.approx(1.0, abs=1e-5)


def test_zoo_model_and_fer_train_checkpoint(photos, tmp_path, monkeypatch):
    from fer_utils import zoo
    from fer_utils.cli import checkpoint as ckpt
    from fer_utils.models.baselines import LeNet5
    from fer_utils.recipes import baselines

    monkeypatch.setenv("FER_ZOO_DIR", str(tmp_path / "zoo"))
    torch.manual_seed(0)
    config = {"builder": "fer_utils.models.baselines:LeNet5", "kwargs": {"input_size": 48, "num_classes": 7},
              "input": {"aligned": False, "grayscale": True, "normalize": "symmetric", "size": 48}, "profile": "t"}
    zoo.save("tiny_lenet", LeNet5(input_size=48, num_classes=7), config)
    recipe = dataclasses.replace(baselines.SMOKE, widths=(4, 4, 4, 4))
    saved = ckpt.save(tmp_path / "last.pt", {"epoch": 1, "recipe": ckpt.recipe_to_dict(recipe, "smoke"),
                                             "model": baselines.build_model(recipe).state_dict(),
                                             "optimizer": {}, "rng": {}})
    image = tmp_path / "astronaut.png"
    cv2.imwrite(str(image), cv2.cvtColor(photos["astronaut.png"], cv2.COLOR_RGB2BGR))
    for spec in ("tiny_lenet@t", str(saved)):
        out = tmp_path / f"{len(spec)}.csv"
        fer_predict.main([str(image), "--model", spec, "--out", str(out)])
        (row,) = read_csv(out)
        assert list(row)[:15] == COLUMNS and probabilities(row).sum() == pytest.approx(1.0, abs=1e-5)


# ------------------------------------------------------------------------------ bad input
def test_bad_inputs_exit_2_naming_the_file(tiny_video, tmp_path, monkeypatch, capsys):
    text_mp4, text_other, empty = tmp_path / "notes.mp4", tmp_path / "notes.xyz", tmp_path / "empty"
    text_mp4.write_text("this is not a video\n" * 50)
    text_other.write_text("neither an image nor a video\n" * 50)
    empty.mkdir()
    cut = tmp_path / "cut.mp4"
    data = open(tiny_video, "rb").read()
    cut.write_bytes(data[:len(data) // 2])
    cases = {tmp_path / "missing.jpg": "no such file", text_mp4: "could not be decoded as a video",
             text_other: "neither an image nor a video", empty: "no image files", cut: "video"}
    for path, words in cases.items():
        code, err = run_cli([str(path), "--no-progress"], monkeypatch, capsys)
        assert code == 2 and str(path) in err and words in err and "Traceback" not in err, err
    code, err = run_cli(["", "--no-progress"], monkeypatch, capsys)      # not the working folder
    assert code == 2 and "input path is empty" in err, err
    code, err = run_cli([tiny_video, "--model", "no_such_model"], monkeypatch, capsys)
    assert code == 2 and "no_such_model" in err
    code, err = run_cli([tiny_video, "--annotate", str(tmp_path / "a.avi")], monkeypatch, capsys)
    assert code == 2 and "a.avi" in err


def test_truncated_video_is_reported():
    from pathlib import Path

    source = Source("video", Path("clip.mp4"), iter(()), total=472, fps=24.0, decoded=228)
    assert "clip.mp4" in source.truncation() and "228 of the 472" in source.truncation()
    assert dataclasses.replace(source, decoded=472).truncation() is None


def test_onnx_engine_gives_the_torch_probabilities(plain_run, tiny_video, tmp_path):
    """--engine onnx: the same rows, probabilities within 1e-4 of PyTorch's (same crops, same model)."""
    out = tmp_path / "onnx.csv"
    fer_predict.main([tiny_video, "--out", str(out), "--no-progress", "--engine", "onnx"])
    torch_rows, onnx_rows = plain_run[0], read_csv(out)
    assert [(r["frame"], r["face"]) for r in onnx_rows] == [(r["frame"], r["face"]) for r in torch_rows]
    for a, b in zip(torch_rows, onnx_rows):
        if a["label"]:
            assert np.abs(probabilities(a) - probabilities(b)).max() <= 1e-4 and a["label"] == b["label"]


# ------------------------------------------------------------------------------ search around the last faces
@pytest.fixture(scope="module")
def moving_video(photos, tmp_path_factory) -> str:
    """12 frames: the astronaut drifting right 2 px a frame (0-5), then, with no blank frame between,
    Grace Hopper's photo mirrored and shifted far left (6-11): a face the search near the last box cannot find."""
    path = tmp_path_factory.mktemp("moving") / "moving.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (384, 256))
    for i in range(12):
        frame = np.full((256, 384, 3), 128, np.uint8)
        if i < 6:
            frame[:, 2 * i + 100:2 * i + 356] = photos["astronaut.png"]
        else:
            frame[:, 0:256] = photos["grace_hopper.jpg"][:, ::-1]
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return str(path)


def test_redetect_searches_whole_frames_only_every_kth_frame_or_when_the_face_is_lost(moving_video, tmp_path):
    every = fer_predict.main([moving_video, "--out", str(tmp_path / "every.csv"), "--no-progress", "--redetect", "1"])
    near = fer_predict.main([moving_video, "--out", str(tmp_path / "near.csv"), "--no-progress", "--redetect", "5"])
    assert every.full_searches == 12 and every.no_face == near.no_face == 0
    # whole frames: 0 and 5 (every 5th), 6 (the face jumped: nothing near the last box), 11 (5 after 6)
    assert near.full_searches == 4
    rows_every, rows_near = read_csv(tmp_path / "every.csv"), read_csv(tmp_path / "near.csv")
    first = {}
    for rows, key in ((rows_every, "every"), (rows_near, "near")):
        first[key] = {int(r["frame"]): r for r in reversed(rows)}          # the largest face of each frame
    for i in range(12):
        a, b = first["every"][i], first["near"][i]
        box_a = (float(a["x"]), float(a["y"]), float(a["x"]) + float(a["w"]), float(a["y"]) + float(a["h"]))
        box_b = (float(b["x"]), float(b["y"]), float(b["x"]) + float(b["w"]), float(b["y"]) + float(b["h"]))
        assert fer_predict.F.iou(box_a, box_b) > 0.7, i      # the same face (Haar boxes jitter a little)
    assert first["near"][0]["face"] == first["near"][5]["face"] != first["near"][6]["face"]


def test_redetect_min_face_and_smooth_are_checked(tiny_video, monkeypatch, capsys):
    for option, value in (("--redetect", "0"), ("--min-face", "0"), ("--smooth", "-1")):
        code, err = run_cli([tiny_video, option, value, "--no-progress"], monkeypatch, capsys)
        assert code == 2 and f"{option} {value}" in err, err
