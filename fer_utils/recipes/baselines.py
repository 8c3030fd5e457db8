"""The baselines' recipe of notebook 02: deep features + a non-linear SVM instead of softmax.

Qiao, Hou & Liu (2022) train a small-kernel CNN with global average pooling, then replace its
softmax layer by an RBF-kernel SVM on the pooled features (:func:`fit_svm`). The networks are in
:mod:`fer_utils.models.baselines`. The paper's optimiser and epochs were not readable in the sources
we had: Adam with a cosine schedule, cross-entropy and the epochs below are OURS.

The notebook's comparisons train every arm at the same budget and several seeds (:func:`train_arm`), and
score a difference against the seeds' spread (:func:`mean_sd`, :func:`verdict`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fer_utils.losses import cross_entropy
from fer_utils.models.baselines import SmallKernelCNN
from fer_utils.recipes import Recipe
from fer_utils.train import evaluate, fit


@dataclass(frozen=True)
class BaselineRecipe(Recipe):
    widths: tuple[int, ...] = (32, 64, 128, 256)  # the small-kernel CNN's blocks (ours)
    svm_c: float = 10.0


FULL = BaselineRecipe(name="full", paper="Qiao, Hou & Liu 2022 (small-kernel CNN + SVM), training ours",
                      epochs=30, batch_size=64, lr=2e-3, optimizer="adam", input_size=48, channels=1)
#: CPU course configuration, scaled down and named as such: quarter-width blocks (8-16-32-64).
COURSE = replace(FULL, name="course", epochs=12, batch_size=32, widths=(8, 16, 32, 64))
SMOKE = replace(FULL, name="smoke", epochs=6, batch_size=32, lr=3e-3, widths=(8, 16, 32, 64))


def build_model(recipe: BaselineRecipe) -> SmallKernelCNN:
    """The small-kernel GAP CNN at the recipe's widths."""
    return SmallKernelCNN(recipe.num_classes, recipe.channels, recipe.widths, input_size=recipe.input_size)


def make_optimizer(model: nn.Module, recipe: BaselineRecipe = FULL):
    """Adam at ``recipe.lr`` with a cosine schedule to zero over ``recipe.epochs`` (stepped once per epoch)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    return optimizer, torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=recipe.epochs)


def loss_step(model: nn.Module, batch, recipe: BaselineRecipe):
    """Cross-entropy of one batch."""
    images, labels = batch
    loss = cross_entropy(model(images), labels)
    return loss, {"loss": float(loss.detach())}


@torch.no_grad()
def extract_features(model: nn.Module, loader, device: str | torch.device = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Run ``model.embed`` (eval mode) over ``(images, labels)`` batches.

    Returns ``features`` (N, D) float32 and ``labels`` (N,) as numpy arrays, ready for scikit-learn.
    """
    if not hasattr(model, "embed"):
        raise TypeError(f"{type(model).__name__} has no embed() method: which features should the SVM see?")
    model.eval().to(device)
    features, labels = [], []
    for images, targets in loader:
        features.append(model.embed(images.to(device)).float().cpu())
        labels.append(torch.as_tensor(targets).cpu())
    return torch.cat(features).numpy(), torch.cat(labels).numpy()


def fit_svm(features: np.ndarray, labels: np.ndarray, C: float = 10.0, gamma: str | float = "scale",
            kernel: str = "rbf", seed: int = 0):
    """A non-linear SVM on deep features: standardise each dimension, then ``SVC(kernel="rbf")``.

    The RBF kernel k(a, b) = exp(-gamma ||a - b||^2) lets the margin bend around clusters that a
    linear softmax layer must cut with hyperplanes. Returns the fitted scikit-learn pipeline
    (``.predict(features)``, ``.score(features, labels)``).
    """
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    svm = make_pipeline(StandardScaler(), SVC(C=C, gamma=gamma, kernel=kernel, random_state=seed))
    return svm.fit(features, labels)


# ----------------------------------------------------------------------------------------------
# Same budget, several seeds: one arm of a comparison, and how a difference is read
# ----------------------------------------------------------------------------------------------


def train_arm(make_model: Callable[[], nn.Module], images: torch.Tensor, labels: torch.Tensor, train_idx,
              test_idx, recipe: BaselineRecipe, seed: int, device: str | torch.device = "cpu") -> dict:
    """Train ``make_model()`` on ``images[train_idx]`` with the recipe (Adam + cosine, cross-entropy), seeded.

    Every arm of a comparison gets the same data, epochs and schedule; only the seed (initial weights
    and batch order) changes. Returns ``model``, ``history`` (per epoch, ``val_*`` on the test split),
    ``result`` (:func:`fer_utils.train.evaluate` on the test split) and ``seconds`` (wall time).
    """
    torch.manual_seed(seed)
    model = make_model()
    generator = torch.Generator().manual_seed(seed)
    train = DataLoader(TensorDataset(images[train_idx], labels[train_idx]), batch_size=recipe.batch_size,
                       shuffle=True, generator=generator)
    test = DataLoader(TensorDataset(images[test_idx], labels[test_idx]), batch_size=256)
    optimizer, schedule = make_optimizer(model, recipe)
    start = time.time()
    history = fit(model, train, recipe.epochs, optimizer, scheduler=schedule, val_loader=test, device=device)
    seconds = time.time() - start
    return dict(model=model, history=history, result=evaluate(model, test, device=device), seconds=seconds,
                train_loader=train, test_loader=test)


def fit_linear_probe(features: np.ndarray, labels: np.ndarray, C: float = 1.0, seed: int = 0):
    """A linear softmax head fitted to convergence on frozen features (multinomial logistic regression).

    Same family as the network's own last layer (hyperplanes), but solved to the optimum by L-BFGS on
    standardised features: if it matches the SVM, the SVM's gain came from the head's training, not from
    the kernel.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=3000, random_state=seed))
    return probe.fit(features, labels)


def mean_sd(values) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value) as plain floats."""
    values = np.asarray(values, dtype=float)
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def verdict(better, worse) -> str:
    """'yes' / 'no' when the difference of the means is larger than the two spreads together, else 'not resolved'.

    ``better`` holds the per-seed scores of the arm the claim says is better. The rule:
    |mean_b - mean_w| > sd_b + sd_w, with the sample standard deviations of the seeds.
    """
    (mb, sb), (mw, sw) = mean_sd(better), mean_sd(worse)
    if abs(mb - mw) <= sb + sw:
        return "not resolved"
    return "yes" if mb > mw else "no"
