"""The baselines' recipe of notebook 02: deep features + a non-linear SVM instead of softmax.

Qiao, Hou & Liu (2022) train a small-kernel CNN with global average pooling, then replace its
softmax layer by an RBF-kernel SVM on the pooled features (:func:`fit_svm`). The networks are in
:mod:`fer_utils.models.baselines`. The paper's optimiser and epochs were not readable in the sources
we had: Adam lr 1e-3 with cross-entropy and the epochs below are OURS.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn

from fer_utils.losses import cross_entropy
from fer_utils.models.baselines import SmallKernelCNN
from fer_utils.recipes import Recipe


@dataclass(frozen=True)
class BaselineRecipe(Recipe):
    widths: tuple[int, ...] = (32, 64, 128, 256)  # the small-kernel CNN's blocks (ours)
    svm_c: float = 10.0


FULL = BaselineRecipe(name="full", paper="Qiao, Hou & Liu 2022 (small-kernel CNN + SVM), training ours",
                      epochs=30, batch_size=64, lr=1e-3, optimizer="adam", input_size=48, channels=1)
COURSE = replace(FULL, name="course", epochs=8, widths=(16, 32, 64, 128))
SMOKE = replace(FULL, name="smoke", epochs=5, batch_size=32, widths=(8, 16, 32, 64))


def build_model(recipe: BaselineRecipe) -> SmallKernelCNN:
    """The small-kernel GAP CNN at the recipe's widths."""
    return SmallKernelCNN(recipe.num_classes, recipe.channels, recipe.widths, input_size=recipe.input_size)


def make_optimizer(model: nn.Module, recipe: BaselineRecipe = FULL):
    """Adam at ``recipe.lr``, no schedule."""
    return torch.optim.Adam(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay), None


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
