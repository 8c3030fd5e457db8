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


def _display_array(image) -> np.ndarray:
    """HxW or HxWx3 float array from HxW, 1xHxW, 3xHxW or HxWx3 (numpy or torch)."""
    img = np.asarray(image.detach().cpu() if hasattr(image, "detach") else image, dtype=np.float32)
    if img.ndim == 3 and img.shape[0] in (1, 3):
        img = np.moveaxis(img, 0, -1)
    return img[..., 0] if img.ndim == 3 and img.shape[-1] == 1 else img


def show_face(ax: plt.Axes, image, title: str | None = None) -> None:
    """A face (HxW or 1xHxW or HxWx3; uint8 or float, any range) in grey, without axes."""
    img = _display_array(image)
    ax.imshow(img, cmap="gray", vmin=float(img.min()), vmax=float(img.max()) if img.max() > img.min() else None)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=8)


def overlay_heatmap(ax: plt.Axes, image, heatmap: np.ndarray, title: str | None = None, alpha: float = 0.5,
                    cmap: str = "jet", vmin: float | None = 0.0, vmax: float | None = None, colorbar: bool = False,
                    label: str = "importance"):
    """A heat map (HxW) drawn semi-transparently over a face; returns the image artist (for a colour bar).

    ``vmin`` / ``vmax`` default to 0 and the map's maximum, so negative evidence is not shown.
    """
    show_face(ax, image, title)
    heat = np.asarray(heatmap, dtype=np.float32)
    top = vmax if vmax is not None else (float(heat.max()) if heat.max() > (vmin or 0) else 1.0)
    artist = ax.imshow(heat, cmap=cmap, alpha=alpha, vmin=vmin, vmax=top)
    if colorbar:
        ax.figure.colorbar(artist, ax=ax, fraction=0.046, pad=0.02, label=label)
    return artist


def draw_stn_grid(ax: plt.Axes, image, theta, n_lines: int = 7, color: str = "#00e5ff", title: str | None = None,
                  align_corners: bool = False) -> None:
    """A face with the spatial transformer's sampling grid drawn over it (see ``explain.stn_grid_lines``).

    The identity theta frames the whole image with a regular grid; a learned theta shows the window
    the transformer reads (its border in a thicker line).
    """
    from fer_utils.explain import stn_grid_lines

    show_face(ax, image, title)
    height, width = _display_array(image).shape[:2]
    lines = stn_grid_lines(theta, (height, width), n_lines=n_lines, align_corners=align_corners)
    for k, line in enumerate(lines):
        border = k in (0, 1, len(lines) - 2, len(lines) - 1)
        ax.plot(line[:, 0], line[:, 1], color=color, lw=1.4 if border else 0.6, alpha=0.9)
    ax.set_xlim(-0.5 - 0.25 * width, width - 0.5 + 0.25 * width)
    ax.set_ylim(height - 0.5 + 0.25 * height, -0.5 - 0.25 * height)


def plot_history(history: dict[str, list], axes: Sequence[plt.Axes] | None = None, label: str = "",
                 title: str = "Training curves"):
    """Loss and accuracy per epoch from ``fer_utils.train.fit``'s history; returns the figure."""
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(8, 3))
    else:
        fig = axes[0].figure
    prefix = f"{label} " if label else ""
    for ax, metric in zip(axes, ("loss", "accuracy")):
        for split, style in (("train", "-"), ("val", "--")):
            values = history.get(f"{split}_{metric}")
            if values:
                ax.plot(range(1, len(values) + 1), values, style, marker="o", ms=3, label=f"{prefix}{split}")
        ax.set(xlabel="epoch", ylabel=metric, title=f"{title}: {metric}")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    return fig


# --- valence-arousal plots (notebook 04) ------------------------------------------------------

def plot_va_scatter(ax: plt.Axes, va: np.ndarray, labels, title: str = "", s: float = 6, alpha: float = 0.5,
                    class_names: Sequence[str] | None = None) -> None:
    """Points (N, 2) = (valence, arousal) on the circumplex, one palette colour per class; legend by class."""
    draw_circumplex(ax)
    va, labels = np.asarray(va), np.asarray(labels)
    names = class_names if class_names is not None else CLASSES[: int(labels.max()) + 1]
    for c, name in enumerate(names):
        pick = labels == c
        if pick.any():
            ax.scatter(va[pick, 0], va[pick, 1], s=s, alpha=alpha, color=CLASS_PALETTE[name], label=name,
                       edgecolors="none")
    ax.set_title(title, fontsize=9)


def plot_va_class_shift(ax: plt.Axes, va_true: np.ndarray, va_pred: np.ndarray, labels,
                        class_names: Sequence[str], title: str = "") -> None:
    """For each class an arrow from its mean true (valence, arousal) to its mean prediction."""
    draw_circumplex(ax)
    labels = np.asarray(labels)
    for c, name in enumerate(class_names):
        pick = labels == c
        if not pick.any():
            continue
        t, p = va_true[pick].mean(0), va_pred[pick].mean(0)
        colour = CLASS_PALETTE[name]
        ax.scatter(*t, color=colour, marker="o", s=30, label=name)
        ax.annotate("", xy=p, xytext=t, arrowprops=dict(arrowstyle="->", color=colour, lw=1.5))
    ax.set_title(title, fontsize=9)


def va_error_grid(va_true: np.ndarray, va_pred: np.ndarray, bins: int = 4) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean Euclidean error |pred - true| in each cell of a bins x bins grid over the TRUE (valence,
    arousal) in [-1, 1]^2; returns (error (arousal bin, valence bin), count, edges). Empty cells: NaN."""
    edges = np.linspace(-1, 1, bins + 1)
    vi = np.clip(np.digitize(va_true[:, 0], edges) - 1, 0, bins - 1)
    ai = np.clip(np.digitize(va_true[:, 1], edges) - 1, 0, bins - 1)
    dist = np.linalg.norm(np.asarray(va_pred) - np.asarray(va_true), axis=1)
    err, count = np.full((bins, bins), np.nan), np.zeros((bins, bins), int)
    for a in range(bins):
        for v in range(bins):
            pick = (ai == a) & (vi == v)
            count[a, v] = pick.sum()
            if pick.any():
                err[a, v] = dist[pick].mean()
    return err, count, edges


def plot_va_error_grid(ax: plt.Axes, va_true: np.ndarray, va_pred: np.ndarray, bins: int = 4,
                       title: str = "Error by region of the circumplex"):
    """Heat map of :func:`va_error_grid` (arousal up), each cell annotated with its error and count."""
    err, count, edges = va_error_grid(va_true, va_pred, bins)
    artist = ax.imshow(err, origin="lower", extent=(-1, 1, -1, 1), cmap="magma_r", vmin=0)
    centres = (edges[:-1] + edges[1:]) / 2
    for a in range(bins):
        for v in range(bins):
            if count[a, v]:
                ax.text(centres[v], centres[a], f"{err[a, v]:.2f}\nn={count[a, v]}", ha="center", va="center",
                        fontsize=6, color="black" if err[a, v] < np.nanmax(err) * 0.6 else "white")
    ax.figure.colorbar(artist, ax=ax, fraction=0.046, pad=0.02, label="mean |prediction - truth|")
    ax.set(xlabel="true valence", ylabel="true arousal", title=title)
    return err, count


def plot_level_weights(ax: plt.Axes, weights: np.ndarray, level_names: Sequence[str], title: str = "") -> None:
    """Box plot of second-level attention weights (N, T) per level, the uniform 1/T as a dotted line."""
    weights = np.asarray(weights)
    ax.boxplot([weights[:, t] for t in range(weights.shape[1])], showfliers=False)
    ax.set_xticks(range(1, len(level_names) + 1), level_names, fontsize=8)
    ax.axhline(1 / weights.shape[1], color="grey", ls=":", lw=1, label="uniform 1/T")
    ax.set(ylabel="attention weight a_t", ylim=(0, 1), title=title)
    ax.legend(fontsize=7)


def plot_reliability(ax: plt.Axes, probs, labels, n_bins: int = 15, title: str = "Reliability diagram",
                     cmap: str = "Blues") -> plt.Axes:
    """Reliability diagram (Guo et al., ICML 2017, figure 1): one bar per non-empty confidence bin at
    the bin's accuracy acc(B_m), coloured by its sample count |B_m| (colour bar), a dot at its mean
    confidence conf(B_m), and the diagonal acc = conf of a perfectly calibrated model. The title gives
    ECE = sum_m (|B_m| / N) |acc(B_m) - conf(B_m)| (:mod:`fer_utils.calibration`). Returns ``ax``."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    from fer_utils import calibration

    table = calibration.reliability(probs, labels, n_bins)
    filled = table.count > 0
    lows, width = table.edges[:-1][filled], 1.0 / n_bins
    norm = Normalize(vmin=0, vmax=float(table.count.max()))
    colours = plt.get_cmap(cmap)(norm(table.count[filled]))
    ax.bar(lows, table.accuracy[filled], width=width, align="edge", color=colours, edgecolor="black", lw=0.5,
           label="accuracy of the bin")
    ax.plot([0, 1], [0, 1], ls="--", color="grey", label="perfect calibration")
    ax.plot(table.confidence[filled], table.accuracy[filled], "o", color="#d62728", ms=3,
            label="mean confidence of the bin")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (max probability)", ylabel="accuracy",
           title=f"{title} (ECE = {table.ece:.3f})", aspect="equal")
    ax.legend(loc="upper left", fontsize=7)
    ax.figure.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="samples in the bin")
    return ax
