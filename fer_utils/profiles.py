"""Run profiles, and every notebook's sizes under each profile (one table, read by the notebooks).

- ``smoke``: for CI. Tiny data, one or two epochs, a notebook in about a minute
  on two CPU cores; still shows that learning happens.
- ``course`` (default): for a student's laptop. About 1 to 12 minutes per notebook
  on two CPU cores (the README's timing table); the paper notebooks train each
  model to a plateau with three seeds per arm on SynthFaces.
- ``full``: the paper's hyper-parameters and a real dataset; meant for a GPU.

A notebook's ``parameters`` cell sets ``profile``; the environment variable
``FER_PROFILE`` wins when it is set, so ``FER_PROFILE=smoke pytest --nbval-lax``
runs every notebook small without editing it. ``course.start`` hands the notebook
its row of :data:`SETTINGS` as ``run.settings`` (the notebooks call it ``P``) and,
for a paper notebook, its training recipe as ``run.recipe``.

Training hyper-parameters (epochs, batch size, learning rate ...) of the paper notebooks are
written once, in their recipe (``fer_utils/recipes/<paper>.py``: ``SMOKE``, ``COURSE``,
``FULL``); the table below names them with :data:`R` (``R.epochs`` = "the recipe's epochs").
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from fer_utils.utils import PROFILE_NAMES, check_profile, resolve_profile


@dataclass(frozen=True)
class Profile:
    """A run profile: ``smoke``, ``course`` or ``full``; what it sets is in :data:`SETTINGS` and the recipes."""

    name: str


PROFILES: dict[str, Profile] = {name: Profile(name) for name in PROFILE_NAMES}


@dataclass(frozen=True)
class FromRecipe:
    """A setting taken from the notebook's recipe for the profile (its field ``field``)."""

    field: str


class _Recipe:
    def __getattr__(self, field: str) -> FromRecipe:
        return FromRecipe(field)


#: ``R.batch_size`` in the table means: the recipe's ``batch_size`` for this profile.
R = _Recipe()

#: The recipe module (``fer_utils.recipes.<name>``) of each paper notebook.
RECIPES: dict[str, str] = {"02_cnn_baselines": "baselines", "03_deep_emotion": "deep_emotion",
                           "04_two_level_attention": "two_level", "05_ddamfn": "ddamfn",
                           "06_mgln": "mgln", "10_poster": "poster"}

#: notebook -> profile -> its settings (sizes of the data, folds, faces shown ...). Every key is read
#: by its notebook as ``P["key"]``, except the ones in :data:`SHOWN_ONLY`.
SETTINGS: dict[str, dict[str, dict[str, Any]]] = {
    "00_datasets": {
        "smoke": dict(n_train=600, n_test=200, epochs=8, lr=3e-3, width=16, n_identities=40, n_stats=500,
                      n_seq_identities=12),
        "course": dict(n_train=3200, n_test=800, epochs=8, lr=1e-3, width=16, n_identities=200, n_stats=2000,
                       n_seq_identities=40),
        "full": dict(n_train=20000, n_test=5000, epochs=20, lr=1e-3, width=32, n_identities=1000, n_stats=5000,
                     n_seq_identities=100),
    },
    "01_face_detection": {
        "smoke": dict(n_eval=10, n_gallery=6),
        "course": dict(n_eval=200, n_gallery=8),
        "full": dict(n_eval=1000, n_gallery=8),
    },
    # 02: sizes: the training faces of each run (the doses; nested, per seed); pool: the faces drawn per seed before
    # the identity split (n_val / n_test of them validate / test every size); workers: run_grid's processes (None:
    # every core); shifts: the test-time shifts in pixels (section 7).
    "02_cnn_baselines": {
        "smoke": dict(sizes=(60, 240), seeds=(0, 1), pool=600, n_val=100, n_test=120, workers=1, shifts=(0, 4, 8)),
        "course": dict(sizes=(100, 400, 1600), seeds=tuple(range(6)), pool=3200, n_val=300, n_test=500, workers=None,
                       shifts=(0, 2, 4, 6, 8)),
        "full": dict(sizes=(200, 800, 3200, 12800), seeds=tuple(range(16)), pool=24000, n_val=2000, n_test=3000,
                     workers=None, shifts=(0, 2, 4, 6, 8)),
    },
    # 03: n / n_identities: the main model's medium faces; grid_n / grid_identities: the faces of each (dose, seed)
    # of the experiments (sections 9-13); workers: run_grid's processes (None: every core); rerun: the claims
    # repeated with two torch threads ("all", or "decided": only those behind a yes / opposite).
    "03_deep_emotion": {
        "smoke": dict(n=600, n_identities=30, seeds=(0, 1), faces_per_class=2, patience=2,
                      grid_n=300, grid_identities=20, workers=1, paper_doses=("moderate",),
                      rerun="decided"),
        "course": dict(n=2000, n_identities=100, seeds=tuple(range(16)), faces_per_class=12,
                       patience=3, grid_n=1200, grid_identities=80, workers=None,
                       paper_doses=("moderate",), rerun="decided"),
        "full": dict(n=30000, n_identities=1500, seeds=tuple(range(16)), faces_per_class=50, patience=5,
                     grid_n=20000, grid_identities=1000, workers=None, paper_doses=("none", "moderate", "strong"),
                     rerun="all"),
    },
    # 04: difficulty / n / n_identities: the model of sections 6-8; seeds: the paired seeds of the experiments (section 9),
    # each rendering grid_n faces of grid_identities people (split by identity into train / val) and, apart, its test
    # faces: grid_test_n faces of grid_test_identities other people (a CCC over a hundred faces would move by about
    # +/-0.1 with the faces alone, hiding the effects the grid is after); rates: the
    # shares of training faces that keep their valence-arousal label (the doses); cap1 / cap2: the epoch caps of stage 1
    # / stage 2 (one-stage: cap1 + cap2), patience: the plateau rule on the validation loss; va_mode / va_spread:
    # valence-arousal that varies within a class (fer_utils.data.va); bn_faces: the stage's training faces (at most)
    # that BatchNorm's statistics are recomputed over after every epoch; workers: run_grid's processes (None: every core).
    "04_two_level_attention": {
        "smoke": dict(difficulty="lab", n=300, n_identities=20, batch=R.batch_size, lr=R.lr, stage1_epochs=R.epochs,
                      stage2_epochs=R.stage2_epochs, n_inspect=48, seeds=(0, 1), grid_n=100, grid_identities=16,
                      grid_test_n=60, grid_test_identities=10,
                      rates=(0.2, 1.0), cap1=2, cap2=2, patience=1, va_mode="free", va_spread=0.3, bn_faces=16,
                      workers=1),
        "course": dict(difficulty="lab", n=600, n_identities=60, batch=R.batch_size, lr=R.lr,
                       stage1_epochs=R.epochs, stage2_epochs=R.stage2_epochs, n_inspect=256, seeds=tuple(range(8)),
                       grid_n=400, grid_identities=40, grid_test_n=800, grid_test_identities=80,
                       rates=(0.05, 0.2, 1.0), cap1=12, cap2=12, patience=3,
                       va_mode="free", va_spread=0.3, bn_faces=100, workers=None),
        "full": dict(difficulty="medium", n=30000, n_identities=1500, batch=R.batch_size, lr=R.lr,
                     stage1_epochs=R.epochs, stage2_epochs=R.stage2_epochs, n_inspect=512, seeds=tuple(range(10)),
                     grid_n=4800, grid_identities=240, grid_test_n=3000, grid_test_identities=300,
                     rates=(0.05, 0.2, 1.0), cap1=40, cap2=40, patience=5,
                     va_mode="free", va_spread=0.3, bn_faces=600, workers=None),
    },
    # 05: grid_n / grid_identities: each seed's training and validation faces and people (split 3:1 by identity);
    # grid_test_n / grid_test_identities: its test faces and people, rendered apart (fer_utils.data.held_out_seed);
    # grid_batch: the grid's batch (course: half the recipe's, so that a few hundred faces give 16 steps an epoch).
    "05_ddamfn": {
        "smoke": dict(difficulty="lab", n=600, n_identities=40, folds=3, epochs=R.epochs, batch=R.batch_size,
                      config=R.config, optimizer=R.optimizer, lr=R.lr, seeds=(0, 1),
                      pretrain=dict(n=400, n_identities=20, epochs=3), grid_n=300, grid_identities=30, grid_test_n=120,
                      grid_test_identities=12, grid_batch=32, epoch_cap=4, patience=2, scored=20, workers=1),
        "course": dict(difficulty="medium", n=1200, n_identities=60, folds=3, epochs=R.epochs, batch=R.batch_size,
                       config=R.config, optimizer=R.optimizer, lr=R.lr, seeds=tuple(range(6)),
                       pretrain=dict(n=1200, n_identities=80, epochs=4), grid_n=700, grid_identities=35,
                       grid_test_n=600, grid_test_identities=60, grid_batch=32, epoch_cap=10, patience=3, scored=60,
                       workers=None),
        "full": dict(difficulty="medium", n=30000, n_identities=1500, folds=10, epochs=R.epochs, batch=R.batch_size,
                     config=R.config, optimizer=R.optimizer, lr=R.lr, seeds=tuple(range(10)),
                     pretrain=dict(n=30000, n_identities=1500, epochs=10), grid_n=12000, grid_identities=600,
                     grid_test_n=3000, grid_test_identities=150, grid_batch=R.batch_size, epoch_cap=40, patience=5,
                     scored=200, workers=None),
    },
    # 06: n_identities / per_class: the people and clips of the main model (split by identity 3:1:1 into train, val,
    # test); grid_identities: the people each seed of the experiments renders (one in four validates, the others
    # train), test_identities: its test people, rendered apart (with a few test people each seed's accuracy moves
    # with who they are); doses: resting-face strengths of the frames claim (main_dose: where the other arms run);
    # ablation_arms: the arms run at main_dose besides reference and static; workers: run_grid's processes (None: every
    # core).
    "06_mgln": {
        "smoke": dict(difficulty="medium", n_identities=10, per_class=1, render_size=96, seeds=(0, 1),
                      grid_identities=8, test_identities=4, doses=(0.0, 1.0), main_dose=1.0, ablation_arms=("plain",),
                      patience=2, workers=1),
        "course": dict(difficulty="medium", n_identities=20, per_class=2, render_size=96, seeds=tuple(range(6)),
                       grid_identities=16, test_identities=10, doses=(0.0, 1.0), main_dose=1.0,
                       ablation_arms=("dcn", "plain", "scratch"), patience=2, workers=None),
        "full": dict(difficulty="medium", n_identities=60, per_class=3, render_size=128, seeds=tuple(range(10)),
                     grid_identities=48, test_identities=60, doses=(0.0, 0.5, 1.0), main_dose=1.0,
                     ablation_arms=("dcn", "plain", "scratch"), patience=5,
                     workers=None),
    },
    "07_abaw": {  # clips per split (n_test: many, so that each seed's scores move little with the test clips drawn) and
        # frames per clip; rates: shares of videos whose labels are hidden per task
        # (multi-task vs single-task at each); mt_rates: where the mean teacher and the streaming heads are compared;
        # epochs: the cap, patience: the plateau rule; workers: grid processes (None: every core)
        "smoke": dict(n_export=6, length=16, n_train=16, n_val=8, n_test=8, n_pretrain=600, pretrain_epochs=1,
                      epochs=3, patience=1, rates=(0.8,), mt_rates=(0.8,), seeds=(0, 1), workers=1),
        "course": dict(n_export=6, length=16, n_train=80, n_val=20, n_test=160, n_pretrain=3000, pretrain_epochs=2,
                       epochs=12, patience=3, rates=(0.5, 0.8, 0.95), mt_rates=(0.8, 0.95), seeds=tuple(range(8)),
                       workers=None),
        "full": dict(n_export=6, length=16, n_train=400, n_val=80, n_test=160, n_pretrain=20000, pretrain_epochs=5,
                     epochs=30, patience=5, rates=(0.5, 0.8, 0.95), mt_rates=(0.5, 0.8, 0.95), seeds=tuple(range(10)),
                     workers=None),
    },
    # 08: "scn"/"ran" name the recipe (fer_utils/recipes/scn.py, ran.py) each profile trains with (their epochs are
    # the epoch caps); seeds / ran_seeds: the paired seeds of the SCN and RAN grids (RAN's runs are cheaper, so it
    # gets more); test_faces: RAN's test faces per seed (the pool's held-out people, then more people rendered apart);
    # workers: processes for the experiment grids (None: every core).
    "08_scn_ran": {
        "smoke": dict(scn_n=800, ran_n=800, test_faces=40, seeds=(0, 1), rates=(0.0, 0.3), ablation_arms=("scn_low",),
                      ambiguity=0.3, amb_flip=0.2, train_yaw=40.0, yaws=(20.0, 40.0), ran_difficulty="medium",
                      ran_seeds=(0, 1), patience=3, workers=1, scn="SMOKE", ran="SMOKE"),
        "course": dict(scn_n=1500, ran_n=1000, test_faces=600, seeds=tuple(range(8)), rates=(0.0, 0.1, 0.2, 0.3),
                       ablation_arms=("scn_low",), ambiguity=0.3, amb_flip=0.2, train_yaw=40.0, yaws=(20.0, 40.0),
                       ran_difficulty="medium", ran_seeds=tuple(range(8)), patience=5, workers=None, scn="COURSE",
                       ran="COURSE"),
        "full": dict(scn_n=6000, ran_n=6000, test_faces=1000, seeds=tuple(range(10)), rates=(0.0, 0.1, 0.2, 0.3),
                     ablation_arms=("weighting", "rank_reg", "relabel", "scn_low"), ambiguity=0.3, amb_flip=0.2,
                     train_yaw=40.0, yaws=(20.0, 40.0), ran_difficulty="medium", ran_seeds=tuple(range(10)),
                     patience=5, workers=None, scn="COURSE", ran="COURSE"),
    },
    # 09: the course models it explains (loaded from fer_utils.zoo when use_zoo, else stand-ins), and how
    # many faces / which methods each score runs on.
    "09_explain": {
        "smoke": dict(n=900, n_identities=45, epochs=10, models=("lenet5",), use_zoo=False, per_class=2,
                      scorecam_faces=4, road_faces=6, road_percentiles=(50,), sanity_faces=4, label_epochs=10,
                      ig_steps=8, smooth_samples=4, au_faces=4, lfw_faces=2,
                      methods=("Grad-CAM", "Score-CAM", "Eigen-CAM", "Integrated Gradients", "Saliency",
                               "Guided Backprop"),
                      sanity_methods=("Grad-CAM", "Eigen-CAM", "Saliency", "Guided Backprop")),
        "course": dict(n=2000, n_identities=100, epochs=3, models=("lenet5", "gap_cnn", "deep_emotion", "two_level",
                                                                   "ddamfn", "mgln", "abaw", "scn", "ran", "poster"),
                       use_zoo=True, per_class=8, scorecam_faces=12, road_faces=18, road_percentiles=(20, 50, 80),
                       sanity_faces=12, label_epochs=8, ig_steps=16, smooth_samples=8, au_faces=6, lfw_faces=3,
                       methods=("Grad-CAM", "Grad-CAM++", "Score-CAM", "Eigen-CAM", "Layer-CAM", "Integrated Gradients",
                                "Occlusion", "Saliency", "Guided Backprop", "SmoothGrad"),
                       sanity_methods=("Grad-CAM", "Grad-CAM++", "Eigen-CAM", "Layer-CAM", "Saliency", "Guided Backprop")),
        "full": dict(n=10000, n_identities=500, epochs=20, models=("lenet5", "gap_cnn", "deep_emotion", "two_level",
                                                                   "ddamfn", "mgln", "abaw", "scn", "ran", "poster"),
                     use_zoo=True, per_class=20, scorecam_faces=40, road_faces=40, road_percentiles=(10, 30, 50, 70, 90),
                     sanity_faces=20, label_epochs=20, ig_steps=32, smooth_samples=16, au_faces=40, lfw_faces=20,
                     methods=("Grad-CAM", "Grad-CAM++", "Score-CAM", "Eigen-CAM", "Layer-CAM", "Integrated Gradients",
                              "Occlusion", "Saliency", "Guided Backprop", "SmoothGrad"),
                     sanity_methods=("Grad-CAM", "Grad-CAM++", "Score-CAM", "Eigen-CAM", "Layer-CAM",
                                     "Integrated Gradients", "Occlusion", "Saliency", "Guided Backprop", "SmoothGrad")),
    },
    # 10: POSTER (course-scale configuration of fer_utils.recipes.poster).
    # 10: recipe: the grid's PosterRecipe (fer_utils.recipes.poster); pool: PoolSetup of each (dose, seed);
    # pretrain: LandmarkPretraining of the landmark stream; n_attention: test faces whose attention is scored;
    # timing_repeats: paired V2 / V1 one-epoch timings, measured alone in the notebook's process.
    "10_poster": {
        "smoke": dict(recipe="GRID_SMOKE", pool=dict(n=240, yaw=40.0), seeds=(0, 1), patience=2, workers=1,
                      pretrain=dict(n=240, epochs=2, n_heldout=40), n_attention=30, timing_repeats=2),
        "course": dict(recipe="GRID", pool=dict(n=800, yaw=40.0), seeds=tuple(range(5)), patience=4, workers=None,
                       pretrain=dict(n=1000, epochs=6, n_heldout=200), n_attention=100, timing_repeats=7),
        "full": dict(recipe="GRID", pool=dict(n=4000, yaw=40.0), seeds=tuple(range(10)), patience=5, workers=None,
                     pretrain=dict(n=4000, epochs=10, n_heldout=400), n_attention=500, timing_repeats=10),
    },
    # 11: from notebook to product. frames: the video's first frames processed (None: all); min_face: the detector's
    # smallest face in pixels; segment_s: the agreement segments; select_n / select_identities: the fresh faces every
    # cached candidate is scored on; use_zoo: read the model cache (smoke never does: it ships a stand-in);
    # n / n_identities / lr / train_batch / epochs (cap) / patience: each seed's SynthFaces pool and the training of
    # the shipped architecture; batch / repeats: the latency table's batch and timed calls; parity_faces: video crops
    # of the parity check; workers: grid processes (None: every core); rerun: the claims repeated with two threads
    # ("decided" or "all").
    "11_product": {
        "smoke": dict(frames=40, min_face=120, segment_s=0.5, select_n=300, select_identities=20, use_zoo=False,
                      n=900, n_identities=60, lr=2e-3, train_batch=32, epochs=8, patience=2, seeds=(0, 1), batch=16,
                      repeats=3, parity_faces=16, workers=1, rerun="decided"),
        "course": dict(frames=None, min_face=120, segment_s=1.0, select_n=1200, select_identities=80, use_zoo=True,
                       n=2000, n_identities=130, lr=2e-3, train_batch=32, epochs=20, patience=3, seeds=tuple(range(6)),
                       batch=32, repeats=10, parity_faces=64, workers=None, rerun="decided"),
        "full": dict(frames=None, min_face=120, segment_s=1.0, select_n=4000, select_identities=260, use_zoo=True,
                     n=8000, n_identities=500, lr=1e-3, train_batch=64, epochs=40, patience=5, seeds=tuple(range(10)),
                     batch=32, repeats=30, parity_faces=200, workers=None, rerun="all"),
    },
}


#: Settings a notebook only shows (in its set-up ``print(P)``) because its recipe applies them.
SHOWN_ONLY: dict[str, set[str]] = {"05_ddamfn": {"optimizer", "lr"}}  # recipe.make_optimizer(model, RECIPE)


def get_profile(name: str | None = None) -> Profile:
    """The :class:`Profile` in force at an entry point (:func:`fer_utils.utils.resolve_profile`:
    ``FER_PROFILE`` wins over ``name``)."""
    return PROFILES[resolve_profile(name)]


def recipe_for(module: ModuleType, profile: str | Profile) -> Any:
    """A recipe module's recipe for a resolved profile: ``module.SMOKE`` / ``COURSE`` / ``FULL``
    (``AttributeError`` when the module has none for it)."""
    return getattr(module, check_profile(profile).upper())


def recipe(notebook: str, profile: str | Profile):
    """The notebook's recipe for a resolved ``profile`` (``fer_utils.recipes.<paper>.SMOKE`` / ``COURSE`` /
    ``FULL``), or None for a notebook without one."""
    if notebook not in RECIPES:
        return None
    return recipe_for(importlib.import_module(f"fer_utils.recipes.{RECIPES[notebook]}"), profile)


def settings(notebook: str, profile: str | Profile) -> dict[str, Any]:
    """The notebook's row of :data:`SETTINGS` for ``profile``, with every ``R.<field>`` read from its recipe."""
    name = check_profile(profile)
    if notebook not in SETTINGS:
        raise KeyError(f"no settings for notebook {notebook!r} in fer_utils/profiles.py (have {sorted(SETTINGS)})")
    row, chosen = SETTINGS[notebook][name], recipe(notebook, name)
    return {key: getattr(chosen, value.field) if isinstance(value, FromRecipe) else value for key, value in row.items()}
