"""Notebook 07's pieces: masked losses, ABAW scores, the clip generator and its Aff-Wild2 round trip,
the networks and the recipes."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fer_utils import losses, metrics
from fer_utils.data import clips
from fer_utils.models import abaw as models
from fer_utils.losses import ccc_loss
from fer_utils.recipes import abaw as recipes


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Two xdist workers share two cores: one torch thread each (restored afterwards)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --- masked losses ------------------------------------------------------------------------------

def _au_batch():
    torch.manual_seed(0)
    logits = torch.randn(8, 12, requires_grad=True)
    targets = torch.randint(0, 2, (8, 12))
    targets[[1, 4]] = -1
    return logits, targets


def test_masked_au_bce_equals_bce_on_labelled_rows_and_no_gradient_at_missing():
    logits, targets = _au_batch()
    keep = (targets >= 0).all(1)
    loss = losses.masked_au_bce(logits, targets)
    expected = F.binary_cross_entropy_with_logits(logits[keep], targets[keep].float())
    assert torch.allclose(loss, expected)
    loss.backward()
    assert logits.grad[[1, 4]].abs().max() == 0
    assert logits.grad[keep].abs().max() > 0


def test_masked_au_bce_per_entry_mask():
    logits = torch.tensor([[0.3, -1.0], [2.0, 0.5]], requires_grad=True)
    targets = torch.tensor([[1, -1], [-1, 0]])
    by_hand = -(np.log(1 / (1 + np.exp(-0.3))) + np.log(1 - 1 / (1 + np.exp(-0.5)))) / 2
    assert float(losses.masked_au_bce(logits, targets).detach()) == pytest.approx(by_hand, rel=1e-6)


@pytest.mark.parametrize("gamma", [0.0, 2.0])
def test_masked_expr_ce_equals_loss_on_labelled_frames(gamma):
    torch.manual_seed(1)
    logits = torch.randn(7, 7, requires_grad=True)
    targets = torch.tensor([0, -1, 3, 6, -1, 2, 2])
    keep = targets >= 0
    loss = losses.masked_expr_ce(logits, targets, gamma=gamma)
    log_p = F.log_softmax(logits[keep], 1)[torch.arange(int(keep.sum())), targets[keep]]
    expected = (-(1 - log_p.exp()) ** gamma * log_p).mean()
    assert torch.allclose(loss, expected)
    if gamma == 0.0:
        assert torch.allclose(loss, F.cross_entropy(logits[keep], targets[keep]))
    loss.backward()
    assert logits.grad[~keep].abs().max() == 0


def test_focal_loss_is_smaller_than_cross_entropy():
    logits = torch.tensor([[3.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    targets = torch.tensor([0, 1])
    assert losses.masked_expr_ce(logits, targets, 2.0) < losses.masked_expr_ce(logits, targets, 0.0)


def test_masked_ccc_equals_ccc_loss_per_dimension():
    torch.manual_seed(2)
    pred = torch.rand(10, 2, requires_grad=True)
    target = torch.rand(10, 2) * 2 - 1
    target[[0, 3], 0] = -5
    target[[5], 1] = -5
    loss = losses.masked_ccc_loss(pred, target)
    keep_v, keep_a = target[:, 0] != -5, target[:, 1] != -5
    expected = (ccc_loss(pred[keep_v, 0], target[keep_v, 0]) + ccc_loss(pred[keep_a, 1], target[keep_a, 1])) / 2
    assert torch.allclose(loss, expected)
    loss.backward()
    assert pred.grad[[0, 3], 0].abs().max() == 0 and pred.grad[5, 1] == 0
    # 1 - CCC with the metric's formula
    assert 1 - float(ccc_loss(pred[keep_v, 0], target[keep_v, 0]).detach()) == pytest.approx(
        metrics.ccc(target[keep_v, 0].numpy(), pred[keep_v, 0].detach().numpy()), abs=1e-5)


@pytest.mark.parametrize("loss_fn, shape, missing", [
    (losses.masked_au_bce, (5, 12), -1), (losses.masked_expr_ce, (5, 7), -1), (losses.masked_ccc_loss, (5, 2), -5)])
def test_all_missing_batch_gives_zero_and_zero_gradient(loss_fn, shape, missing):
    x = torch.randn(*shape, requires_grad=True)
    targets = torch.full(shape if loss_fn is not losses.masked_expr_ce else shape[:1], missing)
    if loss_fn is losses.masked_ccc_loss:
        targets = targets.float()
    loss = loss_fn(x, targets)
    assert float(loss.detach()) == 0.0 and not torch.isnan(loss)
    loss.backward()
    assert x.grad is not None and torch.equal(x.grad, torch.zeros_like(x))


def test_masked_ccc_single_labelled_frame_is_finite():
    pred = torch.rand(4, 2, requires_grad=True)
    target = torch.full((4, 2), -5.0)
    target[2] = torch.tensor([0.3, -0.2])
    loss = losses.masked_ccc_loss(pred, target)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(pred.grad).all()


def test_masked_mse_and_distillation_losses():
    a, b = torch.randn(4, 3), torch.randn(4, 3)
    mask = torch.tensor([True, False, True, False])
    assert torch.allclose(losses.masked_mse(a, b, mask), ((a[mask] - b[mask]) ** 2).mean())
    assert float(losses.masked_mse(a, b, torch.zeros(4, dtype=torch.bool))) == 0.0
    s = torch.randn(3, 7)
    assert float(losses.soft_expr_kl(s, s)) == pytest.approx(0.0, abs=1e-6)
    # by hand, T = 1.5: teacher logits (0, 0) -> p = (1/2, 1/2); student (1.5 ln 3, 0) / T -> q = (3/4, 1/4).
    # KL(p || q) = 1/2 ln(2/3) + 1/2 ln 2 = 1/2 ln(4/3), times T^2; the same for each of 2 frames (batch mean).
    # (KL(q || p) would be 3/4 ln(3/2) - 1/4 ln 2; "> 0" alone held for any positive number.)
    student = torch.tensor([[1.5 * np.log(3.0), 0.0]] * 2)
    assert float(losses.soft_expr_kl(student, torch.zeros(2, 2))) == pytest.approx(0.5 * np.log(4 / 3) * 2.25, rel=1e-6)
    assert float(losses.soft_expr_kl(s[:0], s[:0])) == 0.0


# --- ABAW scores by hand -------------------------------------------------------------------------

def test_abaw_scores_by_hand():
    """P_EXPR, P_AU and P_VA on small arrays whose scores are worked out in the comments."""
    expr_true = np.array([0, 1, 2, 3, 4, 5, 6, 4, 4, 0, 1, 2])
    expr_pred = np.array([0, 1, 2, 0, 4, 5, 5, 4, 3, 0, 2, 2])
    # 8 of 12 right -> accuracy 2/3. F1_c = 2 TP / (2 TP + FP + FN):
    #   c0 TP2 FP1 -> 4/5; c1 TP1 FN1 -> 2/3; c2 TP2 FP1 -> 4/5; c3 TP0 -> 0; c4 TP2 FN1 -> 4/5;
    #   c5 TP1 FP1 -> 2/3; c6 TP0 -> 0; macro F1 = (3 * 4/5 + 2 * 2/3) / 7 = 8/15
    assert metrics.abaw_expr_score(expr_true, expr_pred) == pytest.approx(0.67 * 8 / 15 + 0.33 * 2 / 3)
    au_true = np.array([[1, 0, 0, 1], [1, 1, 0, 0], [0, 0, 0, 1], [0, 1, 1, 1]] * 3)
    au_pred = np.array([[1, 0, 1, 1], [0, 1, 0, 0], [0, 0, 0, 0], [0, 1, 1, 1]] * 3)
    # per AU (the 4-frame block, repeated 3 times, has the same ratios): AU0 TP1 FN1 -> 2/3; AU1 -> 1;
    # AU2 TP1 FP1 -> 2/3; AU3 TP2 FN1 -> 4/5; F1_avg = 47/60. 3 wrong decisions of 16 -> Accuracy_total 13/16
    assert metrics.au_f1(au_true, au_pred) == pytest.approx(47 / 60)
    assert metrics.abaw_au_score(au_true, au_pred) == pytest.approx(0.5 * 47 / 60 + 0.5 * 13 / 16)
    v, a = np.array([0.1, 0.5, -0.3, 0.8]), np.array([-0.2, 0.0, 0.4, 0.1])
    pv, pa = np.array([0.0, 0.6, -0.1, 0.5]), np.array([-0.1, 0.1, 0.2, 0.3])
    # valence: mu 0.275 / 0.25, var 0.171875 / 0.0925, cov 0.11375 -> CCC = 0.2275 / 0.265 = 91/106
    # arousal: mu 0.075 / 0.125, var 0.046875 / 0.021875, cov 0.023125 -> CCC = 0.04625 / 0.07125 = 37/57
    assert metrics.ccc(v, pv) == pytest.approx(91 / 106) and metrics.ccc(a, pa) == pytest.approx(37 / 57)
    assert metrics.abaw_va_score(v, pv, a, pa) == pytest.approx((91 / 106 + 37 / 57) / 2)


def test_recipe_scores_use_labelled_frames_only():
    frames = _fake_frames()
    data = recipes.WindowData.from_frames(frames, 4)
    pred = models.ABAWOutput(torch.where(data.au > 0, 5.0, -5.0).float(), F.one_hot(data.expr.clamp_min(0), 7).float(),
                             torch.where(data.va == -5, torch.tensor(0.9), data.va))
    s = recipes.scores(pred, data)
    assert s["P_AU"] == pytest.approx(1.0) and s["P_VA"] == pytest.approx(1.0)
    # right on every labelled frame (the unlabelled ones are predicted as class 0); of the 7 classes the
    # labelled frames hold 6 (no 4), each with F1 1, and class 4 scores 0: F1 = 6/7, accuracy 1
    assert sorted(set(frames.expr[frames.expr >= 0].tolist())) == [0, 1, 2, 3, 5, 6]
    assert s["EXPR_F1"] == pytest.approx(6 / 7)
    assert s["P_EXPR"] == pytest.approx(0.67 * 6 / 7 + 0.33)


def _fake_frames(n=16):
    rng = np.random.default_rng(0)
    au = rng.integers(0, 2, (n, 12))
    au[:4] = -1
    expr = rng.integers(0, 7, n)
    expr[4:8] = -1
    va = rng.uniform(-1, 1, (n, 2)).astype(np.float32)
    va[8:10] = -5
    return clips.ClipFrames(images=rng.integers(0, 255, (n, 40, 40), dtype=np.uint8), au=au, expr=expr, va=va,
                            video=np.repeat([0, 1], n // 2), frame=np.tile(np.arange(1, n // 2 + 1), 2),
                            videos=["a", "b"])


# --- the clip generator -------------------------------------------------------------------------

def test_clip_is_deterministic_per_seed_and_clip():
    a, b = clips.make_clip(3, 5, length=12, size=48), clips.make_clip(3, 5, length=12, size=48)
    assert np.array_equal(a["images"], b["images"]) and np.array_equal(a["label"], b["label"])
    assert a["kind"] == b["kind"] and all(np.array_equal(a["labelled"][t], b["labelled"][t]) for t in clips.TASKS)
    c = clips.make_clip(3, 6, length=12, size=48)
    assert not np.array_equal(a["images"], c["images"])
    assert not np.array_equal(a["images"], clips.make_clip(4, 5, length=12, size=48)["images"])


def test_clip_labels_follow_the_envelope():
    clip = clips.make_clip(0, 1, length=24, size=48)
    assert clip["images"].shape == (24, 48, 48, 3)
    assert set(clip["label"]) <= set(clip["classes"]) | {0}
    assert np.all(np.abs(clip["valence"]) <= 1) and np.all(np.abs(clip["arousal"]) <= 1)
    assert clip["au_presence"].shape == (24, 17)


def test_mask_proportions_match_the_documented_ones():
    assert sum(clips.MASK_KINDS.values()) == pytest.approx(1.0)
    rng_kinds, stretch, expr_rate = [], [], []
    for c in range(1500):
        rng = np.random.default_rng([0, 7, c])
        kind, labelled = clips._mask(40, rng)
        rng_kinds.append(kind)
        tasks = kind.split("+")
        none = ~(labelled["AU"] | labelled["EXPR"] | labelled["VA"])
        if "AU" in tasks or "VA" in tasks:  # (EXPR-only clips also lose single EXPR frames)
            stretch.append(none.mean())
        if "EXPR" in tasks and "AU" in tasks:
            expr_rate.append((labelled["AU"] & ~labelled["EXPR"]).sum() / labelled["AU"].sum())
    for kind, p in clips.MASK_KINDS.items():
        share = np.mean([k == kind for k in rng_kinds])
        assert abs(share - p) < 4 * np.sqrt(p * (1 - p) / 1500) + 1e-9, f"{kind}: {share:.3f} vs {p}"
    assert np.allclose(stretch, round(clips.UNLABELLED_STRETCH * 40) / 40)
    assert np.mean(expr_rate) == pytest.approx(clips.EXPR_DROP, abs=0.015)


def test_export_and_read_back_keep_labels_and_markers(tmp_path):
    clips.export_clips(tmp_path, n_train=4, n_val=2, seed=1, length=12)
    files = sorted((tmp_path / "annotations" / "AU_Set" / "Train_Set").glob("*.txt"))
    assert files and files[0].read_text().splitlines()[0] == "AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26"
    frames = clips.load_clip_frames(tmp_path, "train", size=40, verbose=False)
    assert len(frames) == 4 * 12 and frames.images.shape == (48, 40, 40)
    for v, name in enumerate(frames.videos):
        c = int(name[4:])
        clip = clips.make_clip(1, c, length=12, size=112)
        rows = np.flatnonzero(frames.video == v)
        lab = clip["labelled"]
        assert np.array_equal(frames.expr[rows], np.where(lab["EXPR"], clip["label"], -1))
        au = clip["au_presence"][:, clips.ABAW_AU_INDEX].astype(int)
        assert np.array_equal(frames.au[rows], np.where(lab["AU"][:, None], au, -1))
        va = np.stack([clip["valence"], clip["arousal"]], 1)
        assert np.allclose(frames.va[rows], np.where(lab["VA"][:, None], va, -5), atol=1e-4)
    assert frames.windows(5).shape == (4 * 2, 5) and frames.left_out == 4 * 2
    val = clips.load_clip_frames(tmp_path, "val", verbose=False)
    assert len(val.videos) == 2 and all(int(n[4:]) >= 100_000 for n in val.videos)


# --- networks and recipes -----------------------------------------------------------------------

def test_au_relation_graph_from_labels():
    labels = torch.tensor([[1, 1] + [0] * 10, [1, 0] + [0] * 10, [1, 1] + [0] * 10, [-1] * 12])
    graph = models.au_relation_graph(labels, 0.5)
    assert graph[0, 1] == 1 and graph[1, 0] == 1 and graph.diag().sum() == 0 and graph.sum() == 2
    a_hat = models.normalized_adjacency(graph)
    assert torch.allclose(a_hat, a_hat.T)


@pytest.mark.parametrize("changes", [{}, dict(features="fpn"), dict(heads="streaming"), dict(heads="graph"),
                                     dict(temporal="gru"), dict(temporal="transformer")])
def test_networks_shapes(changes):
    recipe = replace(recipes.SMOKE, **changes)
    model = recipes.build_model(recipe, torch.eye(12))
    out = model(torch.zeros(2, 4, 1, 40, 40))
    assert out.au.shape == (2, 4, 12) and out.expr.shape == (2, 4, 7) and out.va.shape == (2, 4, 2)
    assert out.va.abs().max() <= 1
    if recipe.temporal == "none":
        assert model(torch.zeros(3, 1, 40, 40)).au.shape == (3, 12)


def test_batch_plan_same_steps_for_every_schedule():
    data = recipes.WindowData.from_frames(_fake_frames(32), 4)
    plans = {s: recipes.batch_plan(data, replace(recipes.SMOKE, schedule=s, batch_size=2), 0)
             for s in ("mixed", "alternate_batch", "alternate_epoch")}
    assert len({len(p) for p in plans.values()}) == 1
    assert {tasks for tasks, _ in plans["mixed"]} == {recipes.TASKS}
    assert [t for t, _ in plans["alternate_batch"][:3]] == [("AU",), ("EXPR",), ("VA",)]
    per_epoch = len(plans["alternate_epoch"]) // recipes.SMOKE.epochs
    assert {t for t, _ in plans["alternate_epoch"][:per_epoch]} == {("AU",)}
    has = data.has_task()
    for (task,), rows in plans["alternate_batch"]:
        assert has[task][rows].all()


def test_missing_masks_and_consistency_without_unlabelled_frames():
    au = torch.tensor([[-1] * 12, [1] * 12, [-1] * 12])
    expr = torch.tensor([-1, -1, 2])
    va = torch.tensor([[-5.0, -5.0], [0.1, 0.2], [-5.0, -5.0]])
    with_all = recipes.missing_masks(au, expr, va)
    assert with_all["AU"].tolist() == [True, False, True] and with_all["EXPR"].tolist() == [True, True, False]
    without = recipes.missing_masks(au, expr, va, include_unlabelled=False)
    assert without["AU"].tolist() == [False, False, True] and without["VA"].tolist() == [False, False, True]
    torch.manual_seed(0)
    s = models.ABAWOutput(torch.randn(3, 12), torch.randn(3, 7), torch.rand(3, 2))
    t = models.ABAWOutput(torch.randn(3, 12), torch.randn(3, 7), torch.rand(3, 2))
    assert float(recipes.consistency(s, t, with_all)) != float(recipes.consistency(s, t, without))


def test_ema_update():
    student, teacher = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    expected = 0.9 * teacher.weight.detach() + 0.1 * student.weight.detach()
    recipes.ema_update(teacher, student, 0.9)
    assert torch.allclose(teacher.weight, expected)
    assert recipes.rampup(0, 4) == pytest.approx(np.exp(-5)) and recipes.rampup(4, 4) == 1.0


@pytest.mark.parametrize("changes", [{}, dict(mean_teacher=True), dict(schedule="alternate_batch")])
def test_training_runs_and_lowers_the_loss(changes):
    data = recipes.WindowData.from_frames(_fake_frames(32), 4)
    recipe = replace(recipes.SMOKE, epochs=4, batch_size=2, **changes)
    torch.manual_seed(0)
    model = recipes.build_model(recipe)
    out = recipes.train(model, data, recipe, seed=0)
    assert out["steps"] == 4 * 4 and np.isfinite(out["losses"]).all()
    if not changes:
        assert np.mean(out["losses"][-4:]) < np.mean(out["losses"][:4])  # 16 steps on the same 8 windows
    assert ("teacher" in out) == bool(changes.get("mean_teacher"))
    s = recipes.scores(recipes.predict(out.get("teacher", model), data), data)
    assert set(s) >= {"P_AU", "P_EXPR", "P_VA"}


def test_training_is_deterministic():
    data = recipes.WindowData.from_frames(_fake_frames(32), 4)
    recipe = replace(recipes.SMOKE, epochs=2, batch_size=2)
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = recipes.build_model(recipe)
        runs.append(recipes.train(model, data, recipe, seed=3)["losses"])
    assert runs[0] == runs[1]


def test_distillation_uses_soft_labels():
    data = recipes.WindowData.from_frames(_fake_frames(32), 4)
    recipe = replace(recipes.SMOKE, epochs=1, batch_size=2)
    n = len(data.images)
    soft = models.ABAWOutput(torch.zeros(n, 12), torch.zeros(n, 7), torch.zeros(n, 2))
    losses_ = []
    for s in (None, soft):
        torch.manual_seed(0)
        losses_.append(recipes.train(recipes.build_model(recipe), data, recipe, seed=0, soft_labels=s)["losses"])
    assert losses_[0] != losses_[1]


def _labelled_frames(n_videos: int = 20, per_video: int = 3):
    """A ClipFrames with every label present (no rendering: the images are blank)."""
    from fer_utils.data.clips import ClipFrames

    n = n_videos * per_video
    rng = np.random.default_rng(0)
    return ClipFrames(images=np.zeros((n, 4, 4), np.uint8), au=rng.integers(0, 2, (n, 12)),
                      expr=rng.integers(0, 7, n), va=rng.uniform(-1, 1, (n, 2)).astype(np.float32),
                      video=np.repeat(np.arange(n_videos), per_video), frame=np.tile(np.arange(1, per_video + 1), n_videos),
                      videos=[f"v{i}" for i in range(n_videos)])


def _hidden_videos(frames) -> dict[str, set[int]]:
    return {"AU": set(frames.video[(frames.au == -1).all(1)]), "EXPR": set(frames.video[frames.expr == -1]),
            "VA": set(frames.video[(frames.va == -5.0).all(1)])}


def test_hide_labels_hides_whole_videos_per_task_nested_across_rates():
    from fer_utils.recipes.abaw import hide_labels

    frames = _labelled_frames()
    before = {k: v.copy() for k, v in (("au", frames.au), ("expr", frames.expr), ("va", frames.va))}
    hidden = {rate: _hidden_videos(hide_labels(frames, rate, seed=3)) for rate in (0.5, 0.8, 0.95)}
    for rate, per_task in hidden.items():
        for task, videos in per_task.items():
            assert len(videos) == min(round(rate * 20), 19), (rate, task)
    for task in ("AU", "EXPR", "VA"):                       # nested: hidden at 50% stays hidden at 80% and 95%
        assert hidden[0.5][task] <= hidden[0.8][task] <= hidden[0.95][task]
    assert len({frozenset(hidden[0.5][t]) for t in ("AU", "EXPR", "VA")}) > 1   # each task draws its own videos
    assert _hidden_videos(hide_labels(frames, 0.5, seed=3)) == hidden[0.5]       # seeded
    assert _hidden_videos(hide_labels(frames, 0.5, seed=4)) != hidden[0.5]
    masked = hide_labels(frames, 0.5, seed=3)                                    # a copy; other frames intact
    for name, array in before.items():
        np.testing.assert_array_equal(getattr(frames, name), array)
    keep = ~np.isin(masked.video, list(hidden[0.5]["EXPR"]))
    np.testing.assert_array_equal(masked.expr[keep], frames.expr[keep])
    assert len(_hidden_videos(hide_labels(frames, 1.0, seed=0))["AU"]) == 19     # one video always keeps its labels
