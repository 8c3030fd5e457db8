"""Plotting helpers: one palette for the classes, overlays, circumplex axes, confusion matrices."""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from matplotlib.patches import Circle, Patch

from fer_utils import metrics
from fer_utils.labels import CLASSES, REGIONS

#: One colour per canonical class, the same in every notebook.
CLASS_PALETTE: dict[str, str] = {
    "neutral": "#7f7f7f", "anger": "#d62728", "disgust": "#8c564b", "fear": "#9467bd",
    "happiness": "#ff7f0e", "sadness": "#1f77b4", "surprise": "#2ca02c", "contempt": "#e377c2",
}
#: One colour per face region (masks and pointing-game plots).
REGION_PALETTE: dict[str, tuple[int, int, int]] = {
    "brows": (230, 25, 75), "eyes": (60, 180, 75), "nose": (255, 225, 25),
    "mouth": (0, 130, 200), "cheeks": (245, 130, 48),
}


def class_color(class_id: int) -> str:
    """The palette colour of canonical class ``class_id``."""
    return CLASS_PALETTE[CLASSES[int(class_id)]]


def overlay_masks(image: np.ndarray, masks: dict[str, np.ndarray], alpha: float = 0.45) -> np.ndarray:
    """Blend each region mask onto ``image`` (HxW or HxWx3 uint8) in its palette colour."""
    rgb = np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image
    out = rgb.astype(np.float32)
    for name in REGIONS:
        if name in masks:
            m = masks[name].astype(bool)
            out[m] = (1 - alpha) * out[m] + alpha * np.array(REGION_PALETTE[name], np.float32)
    return out.clip(0, 255).astype(np.uint8)


def region_legend() -> list[Patch]:
    """Legend handles for :data:`REGION_PALETTE`."""
    return [Patch(color=np.array(c) / 255, label=name) for name, c in REGION_PALETTE.items()]


def draw_circumplex(ax: plt.Axes) -> None:
    """Valence-arousal axes in [-1, 1] with the unit circle and quadrant names."""
    ax.add_patch(Circle((0, 0), 1, fill=False, color="lightgrey"))
    ax.axhline(0, color="lightgrey", lw=0.8)
    ax.axvline(0, color="lightgrey", lw=0.8)
    ax.set(xlim=(-1.05, 1.05), ylim=(-1.05, 1.05), xlabel="valence", ylabel="arousal", aspect="equal")
    for x, y, text in ((0.55, 0.95, "pleasant, excited"), (-0.55, 0.95, "unpleasant, excited"),
                       (0.55, -0.98, "pleasant, calm"), (-0.55, -0.98, "unpleasant, calm")):
        ax.text(x, y, text, ha="center", fontsize=7, color="grey")


def plot_confusion(ax: plt.Axes, y_true, y_pred, class_names: Sequence[str], title: str = "Confusion matrix") -> np.ndarray:
    """Row-normalised confusion matrix as a labelled seaborn heatmap; returns the matrix."""
    cm = metrics.confusion_matrix(y_true, y_pred, len(class_names), normalize=True)
    sns.heatmap(cm, ax=ax, annot=True, fmt=".2f", cmap="Blues", vmin=0, vmax=1, cbar_kws={"label": "share of the true class"},
                xticklabels=class_names, yticklabels=class_names, annot_kws={"fontsize": 7})
    ax.set(title=title, xlabel="predicted", ylabel="true")
    return cm
