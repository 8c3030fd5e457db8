"""The baselines' recipe of notebook 02: deep features + a non-linear SVM instead of softmax.

Qiao, Hou & Liu (2022) train a small-kernel CNN with global average pooling, then replace its
softmax layer by an RBF-kernel SVM on the pooled features (:func:`fit_svm`). The networks are in
:mod:`fer_utils.models.baselines`. The paper's optimiser and epochs were not readable in the sources
we had: Adam at a constant rate, cross-entropy, and a plateau rule under an epoch cap are OURS.

The notebook's experiments train each arm to its plateau (:func:`train_to_plateau`: the validation loss
stops improving, :class:`fer_utils.train.Plateau`, or the cap ``recipe.epochs`` is reached), then score
three heads on the same frozen features (:func:`frozen_heads`). Every verdict comes from
:func:`fer_utils.stats.compare` over paired seeds, in the notebook.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, RandomSampler, TensorDataset

from fer_utils.losses import cross_entropy
from fer_utils.models.baselines import SmallKernelCNN
from fer_utils.recipes import Recipe
from fer_utils.train import Plateau, evaluate, fit


@dataclass(frozen=True)
class BaselineRecipe(Recipe):
    widths: tuple[int, ...] = (32, 64, 128, 256)  # the small-kernel CNN's blocks (ours)
    svm_c: float = 10.0
    patience: int = 3  # the plateau rule: epochs without a better validation loss
    start_epoch: int = 3  # the rule is checked from this epoch on (earlier, a BatchNorm network's loss is noise)
    epoch_faces: int = 400  # an epoch draws at least this many faces (small sets are passed over several times)


FULL = BaselineRecipe(name="full", paper="Qiao, Hou & Liu 2022 (small-kernel CNN + SVM), training ours",
                      epochs=60, batch_size=64, lr=1e-3, optimizer="adam", input_size=48, channels=1, patience=5)
#: CPU course configuration, scaled down and named as such: quarter-width blocks (8-16-32-64); ``epochs`` is the cap.
COURSE = replace(FULL, name="course", epochs=30, batch_size=32, lr=2e-3, widths=(8, 16, 32, 64), patience=3)
SMOKE = replace(COURSE, name="smoke", epochs=8, patience=2, epoch_faces=240)


def build_model(recipe: BaselineRecipe) -> SmallKernelCNN:
    """The small-kernel GAP CNN at the recipe's widths."""
    return SmallKernelCNN(recipe.num_classes, recipe.channels, recipe.widths, input_size=recipe.input_size)


def make_optimizer(model: nn.Module, recipe: BaselineRecipe = FULL):
    """Adam at the constant rate ``recipe.lr`` (no schedule: the plateau rule decides when training ends)."""
    return torch.optim.Adam(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay), None


def loss_step(model: nn.Module, batch, recipe: BaselineRecipe):
    """Cross-entropy of one batch."""
    images, labels = batch
    loss = cross_entropy(model(images), labels)
    return loss, {"loss": float(loss.detach())}


def train_to_plateau(model: nn.Module, train: tuple[torch.Tensor, torch.Tensor],
                     val: tuple[torch.Tensor, torch.Tensor], recipe: BaselineRecipe, seed: int,
                     progress: bool = False) -> dict:
    """Train ``model`` on ``train = (images, labels)`` with cross-entropy and Adam until the validation loss
    on ``val`` has not improved by 1e-3 for ``recipe.patience`` epochs, or ``recipe.epochs`` (the cap).

    An epoch draws max(N, ``recipe.epoch_faces``) of the N training faces, in a seeded order (whole shuffled
    passes, so a small set is seen several times per epoch and validated as often as a large one); the rule
    is checked from ``recipe.start_epoch`` on (``Plateau``'s ``start``). Returns :func:`fer_utils.train.fit`'s history (per epoch
    ``train_loss``, ``val_loss``, ``val_accuracy``; ``epochs_run`` and ``plateaued``). Convolutions run in
    channels_last (the same numbers up to rounding; max-pooling is many times faster on CPUs).
    """
    generator = torch.Generator().manual_seed(seed)
    faces = TensorDataset(*train)
    sampler = RandomSampler(faces, num_samples=max(len(faces), recipe.epoch_faces), generator=generator)
    train_loader = DataLoader(faces, batch_size=recipe.batch_size, sampler=sampler)
    val_loader = DataLoader(TensorDataset(*val), batch_size=256)
    optimizer, scheduler = make_optimizer(model, recipe)
    stop = Plateau(patience=recipe.patience, tolerance=1e-3, monitor="val_loss", start=recipe.start_epoch)
    return fit(model, train_loader, recipe.epochs, optimizer, loss_fn=cross_entropy, val_loader=val_loader,
               scheduler=scheduler, progress=progress, channels_last=True, stop=stop)


def accuracy_on(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Accuracy of ``model`` (eval mode) on ``(images, labels)``: the share of argmax(logits) == label."""
    loader = DataLoader(TensorDataset(images, labels), batch_size=256)
    return float(evaluate(model, loader, channels_last=True)["accuracy"])


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


def fit_linear_probe(features: np.ndarray, labels: np.ndarray, C: float = 1.0, seed: int = 0):
    """A linear softmax head fitted to convergence on frozen features (multinomial logistic regression).

    Minimises sum_n -log softmax(W h_n + b)_{y_n} + ||W||^2 / (2C) on standardised features by L-BFGS, to
    the optimum: the same family as the network's own last layer (hyperplanes), trained to the end. If it
    matches the SVM, an SVM's gain over the network's softmax came from the head's training, not the kernel.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=3000, random_state=seed))
    return probe.fit(features, labels)


def frozen_heads(model: nn.Module, train: tuple[torch.Tensor, torch.Tensor], test: tuple[torch.Tensor, torch.Tensor],
                 svm_c: float = 10.0, seed: int = 0) -> dict[str, float]:
    """Test accuracy of three heads on the same frozen features ``model.embed``: the network's own
    ``softmax`` layer, a converged logistic regression (``logreg``, :func:`fit_linear_probe`) and an RBF
    ``svm`` (:func:`fit_svm`), both fitted on the training faces' features."""
    train_features, train_labels = extract_features(model, DataLoader(TensorDataset(*train), batch_size=256))
    test_features, test_labels = extract_features(model, DataLoader(TensorDataset(*test), batch_size=256))
    return {"softmax": accuracy_on(model, *test),
            "logreg": float(fit_linear_probe(train_features, train_labels, seed=seed).score(test_features, test_labels)),
            "svm": float(fit_svm(train_features, train_labels, C=svm_c, seed=seed).score(test_features, test_labels))}
