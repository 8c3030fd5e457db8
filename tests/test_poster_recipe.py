"""POSTER V2's recipe (fer_utils.recipes.poster): FULL equals the authors' main.py as the fact sheet states it, SAM's
step by hand, the authors' pretrained files and checkpoints load from given paths, and ``fer-train poster --profile
smoke`` runs on a tiny RAF-DB export (48 SynthFaces at 32x32, as tests/test_fer_train.py builds it)."""
from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch
from torch import nn

from fer_utils.cli import checkpoint as ckpt
from fer_utils.cli import fer_train, train_loop
from fer_utils.recipes import poster
from fer_utils.recipes.poster import FULL, SAM
from fer_utils.train import train_step


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---------------------------------------------------------------- FULL is the authors' recipe

def test_full_equals_the_fact_sheet():
    """Each value as the fact sheet (shared/reference/poster.md, section 4) states it, with its source line."""
    assert FULL.epochs == 200                      # "200 epochs (:36)"
    assert FULL.batch_size == 144                  # "Batch 144 (:38)"
    assert FULL.lr == 3.5e-5                       # "The lr defaults to 3.5e-5 (:41)"; README.md:111-123 RAF-DB 3.5e-5
    assert FULL.optimizer == "adam"                # "default "adam", i.e. torch.optim.Adam (:39,64-71)"
    assert FULL.weight_decay == 0.0                # "--wd 1e-4 (:43) ... never passed, so Adam runs with weight_decay 0"
    assert FULL.rho == 0.05                        # "SAM(params, Adam, lr, rho=0.05, adaptive=False) (:73)"
    assert FULL.adaptive is False                  # same line (:73)
    assert FULL.gamma == 0.98                      # "ExponentialLR(gamma 0.98), stepped once per epoch (:74,179)"
    assert FULL.input_size == 224                  # "resize to 224 (main.py:103,136)"
    assert FULL.normalize == "imagenet"            # "normalise with ImageNet mean and std at :106-107"
    assert FULL.num_classes == 7                   # "pyramid_trans_expr2(img_size=224, num_classes=7) (:58,60)"
    assert FULL.flip_p == 0.5                      # "RandomHorizontalFlip" (:101-108), torchvision's default p
    assert FULL.erase_p == 0.5                     # "For RAF-DB, RandomErasing uses p 0.5 and scale (0.02, 0.1)
    assert FULL.erase_scale == (0.02, 0.1)         #  (:101-108)"
    assert FULL.sampling == "shuffle"              # "Used only for AffectNet-7 in main.py (:118-125); the others shuffle"
    assert FULL.freeze_landmarks is True           # "Its requires_grad is set to False (:254-255)"
    assert FULL.config == "faithful" and isinstance(poster.build_network(replace(FULL, pretrained=False)),
                                                    poster.PosterV2)
    affectnet = poster.DATASETS["affectnet7"]      # "AffectNet-7 1e-6 (README.md:111-123)"; "p 1 and scale (0.05, 0.05)
    assert (affectnet.lr, affectnet.erase_p, affectnet.erase_scale, affectnet.sampling) == \
        (1e-6, 1.0, (0.05, 0.05), "class_balanced")  #  (:109-116)"; sampler (:118-125)
    assert poster.DATASETS["affectnet8"].sampling == "class_balanced"   # main_8.py: the sampler always
    assert poster.DATASETS["caers"].lr == 4e-5     # "CAER-S 4e-5 (README.md:111-123)"


@pytest.mark.filterwarnings("ignore:Detected call of:UserWarning")
def test_make_optimizer_is_sam_around_adam_with_exponential_lr():
    model = nn.Linear(3, 2)
    optimizer, scheduler = poster.make_optimizer(model, FULL)
    assert isinstance(optimizer, SAM) and type(optimizer.base_optimizer) is torch.optim.Adam
    group = optimizer.base_optimizer.param_groups[0]
    assert (group["lr"], group["weight_decay"], group["rho"], group["adaptive"]) == (3.5e-5, 0.0, 0.05, False)
    assert isinstance(scheduler, torch.optim.lr_scheduler.ExponentialLR) and scheduler.gamma == 0.98
    for _ in range(2):
        scheduler.step()
    assert optimizer.base_optimizer.param_groups[0]["lr"] == pytest.approx(3.5e-5 * 0.98 ** 2)


# ---------------------------------------------------------------- SAM by hand

class Quadratic(nn.Module):
    """L(w) = 0.5 (w_1^2 + 4 w_2^2), so g = (w_1, 4 w_2); records w at every forward."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor([1.0, 2.0], dtype=torch.float64))
        self.seen: list[list[float]] = []

    def forward(self, _batch) -> torch.Tensor:
        self.seen.append(self.w.detach().tolist())
        return 0.5 * (self.w[0] ** 2 + 4 * self.w[1] ** 2)


@pytest.mark.parametrize("adaptive", [False, True])
def test_sam_step_by_hand_with_sgd(adaptive):
    """w = (1, 2), g = (1, 8), rho 0.05, SGD lr 0.1, through the training loop's train_step."""
    model = Quadratic()
    optimizer = SAM(model.parameters(), torch.optim.SGD, rho=0.05, adaptive=adaptive, lr=0.1)
    value, _ = train_step(model, None, lambda m, b: m(b), optimizer)
    if adaptive:   # e = rho w^2 g / ||w g||, w g = (1, 16), ||w g|| = sqrt(257), w^2 g = (1, 32)
        eps = [0.05 * 1 / math.sqrt(257), 0.05 * 32 / math.sqrt(257)]          # (0.003119, 0.099805)
    else:          # e = rho g / ||g||, ||g|| = sqrt(65)
        eps = [0.05 * 1 / math.sqrt(65), 0.05 * 8 / math.sqrt(65)]             # (0.006202, 0.049614)
    perturbed = [1 + eps[0], 2 + eps[1]]
    g_sam = [perturbed[0], 4 * perturbed[1]]                                   # the gradient at w + e
    assert value == 0.5 * (1 + 16)                                             # the first pass's loss
    assert len(model.seen) == 2 and model.seen[0] == [1.0, 2.0] and model.seen[1] == pytest.approx(perturbed, abs=1e-12)
    assert model.w.tolist() == pytest.approx([1 - 0.1 * g_sam[0], 2 - 0.1 * g_sam[1]], abs=1e-12)


def test_sam_step_by_hand_with_adam():
    """Adam's first step is lr m_hat / (sqrt(v_hat) + 1e-8) = lr g / (|g| + 1e-8), with g the SAM gradient."""
    model = Quadratic()
    optimizer = SAM(model.parameters(), torch.optim.Adam, rho=0.05, lr=0.1)
    train_step(model, None, lambda m, b: m(b), optimizer)
    g_sam = [1 + 0.05 / math.sqrt(65), 4 * (2 + 0.4 / math.sqrt(65))]
    assert model.w.tolist() == pytest.approx([w - 0.1 * g / (abs(g) + 1e-8) for w, g in zip((1, 2), g_sam)], abs=1e-12)


def test_sam_state_survives_a_reload_and_a_failing_closure_restores_w():
    model = Quadratic()
    optimizer = SAM(model.parameters(), torch.optim.Adam, lr=0.1)
    train_step(model, None, lambda m, b: m(b), optimizer)
    state = optimizer.state_dict()
    assert set(state["state"][0]) == {"step", "exp_avg", "exp_avg_sq"}        # Adam's moments, for a resume
    other = SAM(Quadratic().parameters(), torch.optim.Adam, lr=0.5)
    other.load_state_dict(state)
    assert other.param_groups is other.base_optimizer.param_groups and other.param_groups[0]["lr"] == 0.1
    before = model.w.detach().clone()
    model.w.grad = torch.ones(2, dtype=torch.float64)
    with pytest.raises(FloatingPointError):
        train_step(model, None, lambda m, b: m(b) * (float("nan") if len(m.seen) % 2 == 0 else 1.0), optimizer)
    assert torch.equal(model.w.detach(), before)                               # back at w, no step taken
    with pytest.raises(ValueError, match="GradScaler"):
        train_step(model, None, lambda m, b: m(b), optimizer, scaler=torch.amp.GradScaler("cpu"))


# ---------------------------------------------------------------- the authors' files, from given paths

@pytest.fixture(scope="module")
def authors_files(tmp_path_factory):
    """A PosterV2 with recognisable weights saved as the authors' three kinds of file (module.-prefixed)."""
    base = tmp_path_factory.mktemp("poster_files")
    torch.manual_seed(0)
    source = poster.build_network(replace(FULL, pretrained=False))
    with torch.no_grad():
        for i, p in enumerate(source.parameters()):
            p.fill_(0.001 * (i % 97))
    state = source.state_dict()
    ir = {"module." + k: v for k, v in source.ir_back.state_dict().items() if not k.startswith("output_layer.")}
    torch.save({**ir, "module.body4.0.weight": torch.zeros(3)}, base / "ir50.pth")       # extra keys are ignored
    torch.save({"epoch": 7, "state_dict": source.face_landback.state_dict()}, base / "mobilefacenet.pth.tar")
    torch.save({"state_dict": {"module." + k: v for k, v in state.items()}}, base / "posterv2_rafdb.pth")
    return base, state


def test_pretrained_backbones_load_from_the_users_paths(authors_files):
    base, state = authors_files
    recipe = replace(FULL, ir50_path=str(base / "ir50.pth"), landmark_path=str(base / "mobilefacenet.pth.tar"))
    model = poster.build_model(recipe)
    got = model.state_dict()
    for key in state:
        if key.startswith(("ir_back.", "face_landback.")) and not key.startswith("ir_back.output_layer."):
            assert torch.equal(got[key], state[key]), key
    assert not torch.equal(got["VIT.head.linear.weight"], state["VIT.head.linear.weight"])   # the rest: initialised
    assert not any(p.requires_grad for p in model.face_landback.parameters())
    assert poster.load_ir50(model.ir_back, poster.read_state(base / "ir50.pth", "ir50"))["ignored"] == 1


def test_a_module_prefixed_checkpoint_loads_strictly(authors_files):
    base, state = authors_files
    model = poster.build_model(replace(FULL, checkpoint_path=str(base / "posterv2_rafdb.pth")))
    got = model.state_dict()
    assert list(got) == list(state) and all(torch.equal(got[k], state[k]) for k in state)
    partial = {k: v for k, v in state.items() if k != "embed_v.proj.bias"}
    torch.save({"module." + k: v for k, v in partial.items()}, base / "partial.pth")
    with pytest.raises(RuntimeError, match="embed_v.proj.bias"):
        poster.build_model(replace(FULL, checkpoint_path=str(base / "partial.pth")))


def test_missing_or_unsafe_files_are_refused(authors_files, tmp_path):
    base, _ = authors_files
    with pytest.raises(ValueError, match="set ir50_path and landmark_path"):
        poster.build_model(FULL)
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        poster.read_state(tmp_path / "nowhere.pth", "ir50_path")
    torch.save({"state_dict": {}, "recorder": nn.Linear(1, 1)}, tmp_path / "pickled.pth")
    with pytest.raises(ValueError, match="pickled Python objects"):
        poster.read_state(tmp_path / "pickled.pth", "checkpoint_path")
    (tmp_path / "page.pth").write_text("<html>Not Found</html>")      # a saved error page, not the weights
    with pytest.raises(ValueError, match=r"ir50_path .*page.pth: not a file torch.save writes .* b'<html>No'"):
        poster.read_state(tmp_path / "page.pth", "ir50_path")
    ir_back = poster.build_network(replace(FULL, pretrained=False)).ir_back
    v1_style = {"input_layer.0.weight": torch.zeros(64, 3, 3, 3), "body.0.res_layer.0.weight": torch.zeros(64)}
    with pytest.raises(KeyError, match="V1-style IR-50"):
        poster.load_ir50(ir_back, v1_style)


# ---------------------------------------------------------------- data: transforms and class-balanced sampling

IMBALANCED = torch.tensor([0] * 90 + [1] * 9 + [2] * 1)      # 90 : 9 : 1


def chi_square_uniform(drawn: torch.Tensor, classes: int) -> float:
    """Pearson's statistic of the drawn labels against equal class frequencies: sum_c (n_c - E)^2 / E."""
    counts = torch.bincount(drawn, minlength=classes).double()
    expected = len(drawn) / classes
    return float(((counts - expected) ** 2 / expected).sum())


def test_train_transform_and_balanced_sampler():
    out = poster.train_transform(replace(FULL, erase_p=0.0, flip_p=0.0))(torch.full((3, 40, 40), 255, dtype=torch.uint8))
    assert out.shape == (3, 224, 224)
    assert out[:, 0, 0].tolist() == pytest.approx([(1 - m) / s for m, s in zip((0.485, 0.456, 0.406),
                                                                               (0.229, 0.224, 0.225))], abs=1e-5)
    assert poster.train_transform(poster.DATASETS["affectnet7"])(torch.zeros((3, 40, 40), dtype=torch.uint8)).shape \
        == (3, 224, 224)                                                          # no longer refused
    sampler = poster.balanced_sampler(IMBALANCED, torch.Generator().manual_seed(0))
    assert torch.allclose(sampler.weights, 1.0 / torch.tensor([90.0] * 90 + [9.0] * 9 + [1.0]).double())
    drawn = IMBALANCED[torch.tensor([i for _ in range(30) for i in sampler])]
    assert len(list(sampler)) == 100 and (torch.bincount(drawn, minlength=3) / len(drawn) - 1 / 3).abs().max() < 0.05
    same = train_loop.ClassBalancedSampler(IMBALANCED)                           # fer-train's: the same formula
    assert torch.equal(same.weights, sampler.weights) and len(same) == sampler.num_samples


def test_class_balanced_sampler_draws_classes_equally_and_is_seeded():
    """3,000 draws (30 epochs of 100) from a 90 : 9 : 1 set: chi-square against equal frequencies below the
    0.1% critical value for 2 degrees of freedom (13.82); the shuffling sampler fails the same check."""
    sampler = train_loop.ClassBalancedSampler(IMBALANCED, seed=7)
    orders = []
    for epoch in range(30):
        sampler.set_epoch(epoch)
        orders.append(list(sampler))
    drawn = IMBALANCED[torch.tensor(orders).flatten()]
    assert len(orders[0]) == len(sampler) == 100
    assert chi_square_uniform(drawn, 3) < 13.82
    shuffled = IMBALANCED[torch.tensor(list(torch.utils.data.DistributedSampler(range(100), 1, 0, seed=7)) * 30)]
    assert chi_square_uniform(shuffled, 3) > 1000                                 # 90 : 9 : 1 stays 90 : 9 : 1
    again = train_loop.ClassBalancedSampler(IMBALANCED, seed=7)
    again.set_epoch(3)
    assert list(again) == orders[3] and orders[3] != orders[4]                    # same seed and epoch, same order
    other = train_loop.ClassBalancedSampler(IMBALANCED, seed=8)
    other.set_epoch(3)
    assert list(other) != orders[3]
    ranks = [train_loop.ClassBalancedSampler(IMBALANCED[:99], num_replicas=2, rank=r, seed=7) for r in (0, 1)]
    for r in ranks:
        r.set_epoch(3)
    whole = ranks[0].global_order()
    assert len(whole) == 100 and list(ranks[0]) == whole[0::2] and list(ranks[1]) == whole[1::2]   # DDP shards
    with pytest.raises(ValueError, match="class indices"):
        train_loop.ClassBalancedSampler(torch.tensor([], dtype=torch.long))


def test_balanced_sampler_draws_as_fer_train_for_one_process():
    """The same weights (one function) and the same torch.multinomial draws: with fer-train's generator for
    (seed, epoch), poster.balanced_sampler gives ClassBalancedSampler's order exactly."""
    import numpy as np

    fer_train = train_loop.ClassBalancedSampler(IMBALANCED, seed=7)
    fer_train.set_epoch(2)
    state = np.random.SeedSequence([7, 2]).generate_state(1, dtype=np.uint64)[0]
    mine = poster.balanced_sampler(IMBALANCED, torch.Generator().manual_seed(int(state >> np.uint64(1))))
    assert list(mine) == list(fer_train)

def _loaders(recipe, samples, target="label"):
    ctx = train_loop.Context(rank=0, world=1, local_rank=0, device=torch.device("cpu"), amp_dtype=None, workers=0)
    steps = train_loop.Steps("poster", poster.loss_step, poster.train_transform, target)
    return train_loop.make_loaders(samples, list(range(len(samples))), [], steps, recipe, ctx, seed=5)


def test_fer_train_loader_follows_the_recipes_sampling():
    samples = [{"image": torch.zeros(8, 8, 3, dtype=torch.uint8).numpy(), "label": int(y)} for y in IMBALANCED]
    affectnet = replace(poster.SMOKE, sampling="class_balanced")
    loader, _, sampler = _loaders(affectnet, samples)
    assert isinstance(sampler, train_loop.ClassBalancedSampler) and loader.sampler is sampler
    assert sampler.seed == 5 and len(sampler) == 100                              # the run's seed, len(train set)
    _, _, plain = _loaders(poster.SMOKE, samples)                                 # RAF-DB: shuffled, unbalanced
    assert type(plain) is torch.utils.data.DistributedSampler
    assert sorted(plain) == list(range(100))                                      # each image once: 90 : 9 : 1
    with pytest.raises(fer_train.FerTrainError, match="expected one of"):
        _loaders(replace(poster.SMOKE, sampling="balanced"), samples)
    with pytest.raises(fer_train.FerTrainError, match="needs class labels"):
        _loaders(affectnet, samples, target="va")


# ---------------------------------------------------------------- fer-train poster --profile smoke

@pytest.fixture(scope="module")
def rafdb(tmp_path_factory):
    from fer_utils.data.formats import write_rafdb
    from fer_utils.data.synthetic import SynthFaces

    base = tmp_path_factory.mktemp("poster_rafdb")
    faces = SynthFaces(48, seed=0, size=64, with_masks=False)
    write_rafdb([dict(faces[i], split="train" if i < 40 else "test") for i in range(48)], base / "rafdb", size=32,
                verbose=False)
    return base / "rafdb"


def _run(rafdb, out, *extra: str) -> dict:
    return fer_train.main(["poster", "--profile", "smoke", "--dataset", "rafdb", "--data-root", str(rafdb),
                           "--out", str(out), "--no-progress", "--threads", "1", *extra])


def test_fer_train_poster_smoke_runs_and_resumes(rafdb, tmp_path, capsys):
    last = _run(rafdb, tmp_path / "run")
    assert "recipe fer_utils.recipes.poster.PosterRecipe (profile smoke):" in capsys.readouterr().out
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines] == list(range(1, poster.SMOKE.epochs + 1))
    assert last["train_images"] == 36 and last["val_images"] == 4 and math.isfinite(last["train_loss"])
    assert lines[1]["lr"] == pytest.approx(poster.SMOKE.lr * poster.SMOKE.gamma)     # ExponentialLR per epoch
    best = ckpt.load(tmp_path / "run" / "best.pt")
    assert set(best["model"]) == set(poster.build_model(poster.SMOKE).state_dict())
    assert best["optimizer"]["state"] and "exp_avg" in next(iter(best["optimizer"]["state"].values()))

    _run(rafdb, tmp_path / "broken", "--stop-after", "1")
    _run(rafdb, tmp_path / "broken", "--resume", "auto")
    straight, resumed = (torch.load(p / "last.pt", weights_only=True)["model"] for p in (tmp_path / "run",
                                                                                          tmp_path / "broken"))
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)                # Adam's moments were kept


def test_fer_train_poster_runs_with_class_balanced_sampling(rafdb, tmp_path, capsys):
    """AffectNet's sampling under fer-train (refused before the loop had a sampler hook)."""
    last = _run(rafdb, tmp_path / "balanced", "--set", "sampling=class_balanced", "--stop-after", "1")
    assert "sampling" in capsys.readouterr().out and last["train_images"] == 36 and math.isfinite(last["train_loss"])
    assert json.loads((tmp_path / "balanced" / "recipe.json").read_text())["fields"]["sampling"] == "class_balanced"
