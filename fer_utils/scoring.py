"""Scoring explanations: do the maps point where the expression is, do they matter, do they depend on the model?

SynthFaces knows which face regions each expression moves, so a saliency map (batch, H, W) can be
scored three ways:

- **localisation** (:func:`localisation_scores`, :func:`au_localisation_scores`): the pointing game
  (is the map's peak inside the region?) and the energy in the region (share of the map's positive
  mass inside it), against chance = the region's share of the image. The regions of a class are
  those its EMFACS prototype moves (``fer_utils.data.synthetic.PROTOTYPES`` through
  :data:`AU_REGIONS`). The per-map formula is :func:`fer_utils.explain.pointing_game`.
- **faithfulness** (:func:`road`, :func:`deletion_insertion`): remove the pixels the map ranks
  highest and see the class score fall (pytorch-grad-cam's metrics). ROAD (Rong et al., ICML 2022)
  imputes removed pixels from their neighbours, so the removal itself leaks no shape:
  ROAD = (score_LeRF - score_MoRF) / 2 averaged over percentiles; higher is more faithful.
- **sanity** (:func:`cascading_randomization`, :func:`map_similarity`): Adebayo et al., *Sanity
  Checks for Saliency Maps*, NeurIPS 2018 (arXiv:1810.03292). Randomise the weights from the
  logits down, or train on permuted labels: a method whose maps stay the same (high Spearman rank
  correlation and SSIM with the trained model's maps) does not explain the model.
"""
from __future__ import annotations

import copy
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from fer_utils.explain import normalize_map, pointing_game
from fer_utils.models import logits_of

#: Regions each action unit moves in SynthFaces (see the AU table in ``fer_utils.data.synthetic``).
AU_REGIONS: dict[int, tuple[str, ...]] = {
    1: ("brows",), 2: ("brows",), 4: ("brows",), 5: ("eyes",), 6: ("eyes", "cheeks"), 7: ("eyes",),
    9: ("nose",), 10: ("mouth",), 12: ("mouth",), 14: ("mouth",), 15: ("mouth",), 17: ("mouth",),
    20: ("mouth",), 23: ("mouth",), 24: ("mouth",), 25: ("mouth",), 26: ("mouth",),
}


def class_regions(name: str) -> tuple[str, ...]:
    """The regions the EMFACS prototype of class ``name`` moves (neutral: none)."""
    from fer_utils.data.synthetic import PROTOTYPES

    if name not in PROTOTYPES:
        raise KeyError(f"unknown class {name!r}; known: {sorted(PROTOTYPES)}")
    return tuple(sorted({r for au in PROTOTYPES[name] for r in AU_REGIONS[au]}))


def union_mask(masks: dict[str, np.ndarray], regions: Sequence[str]) -> np.ndarray:
    """The union (H, W bool) of the named region masks of one face."""
    missing = [r for r in regions if r not in masks]
    if missing:
        raise KeyError(f"regions {missing} not in this face's masks (have {sorted(masks)})")
    out = np.zeros_like(np.asarray(masks[regions[0]], dtype=bool))
    for r in regions:
        out |= np.asarray(masks[r], dtype=bool)
    return out


def _summary(scores: list[dict]) -> dict:
    hit, mass, area = (float(np.mean([s[k] for s in scores])) for k in ("hit", "mass", "area"))
    return {"hit": hit, "mass": mass, "area": area, "ratio": mass / area if area > 0 else float("nan"),
            "n": len(scores)}


def localisation_scores(maps: np.ndarray, masks: Sequence[dict], labels: Sequence[int],
                        class_names: Sequence[str], positive_only: bool = True) -> dict:
    """Pointing game and energy per class against the class's prototype regions.

    Per class (and ``"all"`` over every scored face): ``hit`` = pointing-game hit rate, ``mass`` =
    mean share of the positive map inside the region, ``area`` = mean region share of the image
    (chance of both), ``ratio`` = mass / area (1 = chance), ``n`` = faces. Faces of a class whose
    prototype moves nothing (neutral) are not scored; their count is ``"skipped"``.
    """
    if not len(maps) == len(masks) == len(labels):
        raise ValueError(f"got {len(maps)} maps, {len(masks)} masks and {len(labels)} labels")
    by_class: dict[str, list[dict]] = {}
    skipped = 0
    for attribution, face_masks, label in zip(maps, masks, labels):
        name = class_names[int(label)]
        regions = class_regions(name)
        if not regions:
            skipped += 1
            continue
        by_class.setdefault(name, []).append(pointing_game(attribution, union_mask(face_masks, regions), positive_only))
    if not by_class:
        raise ValueError("no face of a class with prototype regions to score")
    result = {name: _summary(s) for name, s in by_class.items()}
    result["all"] = _summary([s for scores in by_class.values() for s in scores])
    result["skipped"] = skipped
    return result


def au_localisation_scores(maps: np.ndarray, masks: Sequence[dict], au: int, positive_only: bool = True) -> dict:
    """Pointing game and energy of maps explaining action unit ``au`` against the regions it moves."""
    if au not in AU_REGIONS:
        raise KeyError(f"no regions known for AU{au}; known AUs: {sorted(AU_REGIONS)}")
    return _summary([pointing_game(a, union_mask(m, AU_REGIONS[au]), positive_only) for a, m in zip(maps, masks)])


# ----------------------------------------------------------------------------------------------
# Faithfulness: pytorch-grad-cam's perturbation metrics
# ----------------------------------------------------------------------------------------------


def _targets(targets):
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    return [ClassifierOutputSoftmaxTarget(int(t)) for t in targets]


def _cams(maps: np.ndarray) -> np.ndarray:
    return np.stack([normalize_map(m) for m in maps]).astype(np.float32)


@torch.no_grad()
def road(model: nn.Module, images: torch.Tensor, maps: np.ndarray, targets: Sequence[int],
         percentiles: Sequence[int] = (20, 40, 60, 80)) -> np.ndarray:
    """ROAD combined score per image: (p_LeRF - p_MoRF) / 2 of the target's softmax, mean over percentiles.

    Maps are clipped to their positive part and scaled to [0, 1] first. Positive: removing the
    pixels the map ranks highest hurts the class more than removing those it ranks lowest.
    """
    from pytorch_grad_cam.metrics.road import ROADCombined

    model.eval()
    return np.asarray(ROADCombined(percentiles=list(percentiles))(images, _cams(maps), _targets(targets), model),
                      dtype=np.float64)


class _Fill:
    """pytorch-grad-cam imputer: keep where mask is 1, put ``value`` elsewhere."""

    def __init__(self, value: float):
        self.value = value

    def __call__(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return image * mask + self.value * (1 - mask)


@torch.no_grad()
def deletion_insertion(model: nn.Module, images: torch.Tensor, maps: np.ndarray, targets: Sequence[int],
                       fractions: Sequence[float] = (0.1, 0.3, 0.5, 0.7, 0.9), fill: float = 0.0) -> dict:
    """Deletion and insertion curves (Petsiuk et al., BMVC 2018) with pytorch-grad-cam's perturbations.

    Deletion: set the top-f fraction of pixels (by the map) to ``fill`` and read p(target);
    insertion: keep only the top-f fraction. Returns the mean curves over images and their means
    (the area under each curve on the sampled fractions): low deletion and high insertion are good.
    """
    from pytorch_grad_cam.metrics.perturbation_confidence import (PerturbationConfidenceMetric,
                                                                  RemoveLeastRelevantFirst,
                                                                  RemoveMostRelevantFirst)

    model.eval()
    cams, wanted = _cams(maps), _targets(targets)
    curves = {"deletion": [], "insertion": []}
    for f in fractions:
        percentile = 100 * (1 - f)
        for kind, remove in (("deletion", RemoveMostRelevantFirst), ("insertion", RemoveLeastRelevantFirst)):
            metric = PerturbationConfidenceMetric(remove(percentile, _Fill(fill)))
            curves[kind].append(float(np.mean(metric(images, cams, wanted, model, return_diff=False))))
    return {"fractions": list(fractions), **curves,
            "deletion_auc": float(np.mean(curves["deletion"])), "insertion_auc": float(np.mean(curves["insertion"]))}


# ----------------------------------------------------------------------------------------------
# Sanity checks (Adebayo et al. 2018)
# ----------------------------------------------------------------------------------------------


def map_similarities(maps_a: np.ndarray, maps_b: np.ndarray) -> dict[str, np.ndarray]:
    """Per image: the Spearman rank correlation and SSIM between |map| pairs scaled to [0, 1] (arrays of
    length batch). As in Adebayo et al., absolute values: a map that only flips sign still "looks the
    same". A constant map has no ranking: its rank correlation counts as 0."""
    from scipy.stats import spearmanr
    from skimage.metrics import structural_similarity

    if np.shape(maps_a) != np.shape(maps_b):
        raise ValueError(f"map shapes differ: {np.shape(maps_a)} vs {np.shape(maps_b)}")
    rhos, ssims = [], []
    for a, b in zip(maps_a, maps_b):
        a, b = normalize_map(a, positive_only=False), normalize_map(b, positive_only=False)
        constant = a.std() == 0 or b.std() == 0
        rhos.append(0.0 if constant else float(spearmanr(a.ravel(), b.ravel())[0]))
        ssims.append(float(structural_similarity(a, b, data_range=1.0)))
    return {"spearman": np.asarray(rhos, dtype=np.float64), "ssim": np.asarray(ssims, dtype=np.float64)}


def map_similarity(maps_a: np.ndarray, maps_b: np.ndarray) -> dict[str, float]:
    """Mean over images of :func:`map_similarities` (Spearman rank correlation and SSIM of |map| pairs)."""
    per_image = map_similarities(maps_a, maps_b)
    return {"spearman": float(np.mean(per_image["spearman"])), "ssim": float(np.mean(per_image["ssim"]))}


def randomize_(module: nn.Module, seed: int = 0) -> nn.Module:
    """Re-initialise every parameter of ``module`` in place (each layer's own ``reset_parameters``)."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for sub in module.modules():
            if hasattr(sub, "reset_parameters"):
                sub.reset_parameters()
            else:  # parameters a custom block registers itself
                for p in sub.parameters(recurse=False):
                    p.normal_(0.0, float(p.std()) if p.numel() > 1 else 0.02)
            if isinstance(sub, nn.modules.batchnorm._BatchNorm) and sub.affine:
                sub.weight.normal_(1.0, 0.5)  # a freshly reset BN layer is the identity: perturb it
                sub.bias.normal_(0.0, 0.5)
    return module


def cascade_order(model: nn.Module) -> list[str]:
    """Top-level children holding parameters, from the logits down (reverse of registration order)."""
    names = [name for name, child in model.named_children() if any(True for _ in child.parameters())]
    if not names:
        raise ValueError(f"{type(model).__name__} has no child modules with parameters to randomise")
    return names[::-1]


def cascading_randomization(model: nn.Module, explain_fn: Callable[[nn.Module], np.ndarray],
                            order: Sequence[str] | None = None, seed: int = 0,
                            per_image: bool = False) -> list[dict]:
    """Randomise ``order``'s modules one after the other (cumulatively) and compare maps to the trained ones.

    ``explain_fn(model) -> maps (batch, H, W)``; ``order`` are names from ``model.named_modules()``
    (default :func:`cascade_order`). Returns one row per step: ``layer`` (the module just
    randomised, all before it stay random), ``spearman``, ``ssim`` (means over images); with
    ``per_image=True`` also ``spearman_per_image`` and ``ssim_per_image`` (arrays, one value per
    image, for intervals over images). ``model`` itself is not changed.
    """
    reference = explain_fn(model)
    copy_ = copy.deepcopy(model)
    modules = dict(copy_.named_modules())
    rows = []
    for step, name in enumerate(order or cascade_order(model)):
        if name not in modules:
            raise KeyError(f"no module {name!r} in {type(model).__name__}")
        randomize_(modules[name], seed + step)
        similarities = map_similarities(reference, explain_fn(copy_))
        row = {"layer": name, "spearman": float(np.mean(similarities["spearman"])),
               "ssim": float(np.mean(similarities["ssim"]))}
        if per_image:
            row.update(spearman_per_image=similarities["spearman"], ssim_per_image=similarities["ssim"])
        rows.append(row)
    return rows


def sanity_verdict(similarity: dict | Sequence[dict], threshold: float = 0.5) -> bool:
    """Pass when the maps no longer rank pixels like the trained model's: mean Spearman below ``threshold``.

    ``similarity`` is one :func:`map_similarity` result or the rows of :func:`cascading_randomization`
    (mean over the cascade: a fully random network can still outline a bright blob, as Adebayo et
    al. show for edge-like maps, so the verdict looks at every step, not only the last).
    """
    rows = [similarity] if isinstance(similarity, dict) else list(similarity)
    return bool(np.mean([r["spearman"] for r in rows]) < threshold)


class LogitsOnly(nn.Module):
    """A view of a model that returns only its logits (for the explanation libraries).

    The logits are read with :func:`fer_utils.models.logits_of` (DDAMFN's head maps, the two-level
    network's valence-arousal and the like are dropped).
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return logits_of(self.model(images))
