"""Every loss of the course, written once, with the paper it comes from.

Models hold networks only; the losses they are trained with live here, and the
recipes in :mod:`fer_utils.recipes` combine them.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from fer_utils import metrics  # noqa: F401 (the CCC loss is 1 - metrics.ccc)


# ---------------------------------------------------------------------------
# Classification: cross-entropy variants
# ---------------------------------------------------------------------------


# ---------------------------------------------------------------------------
# Attention (DDAMFN's attention loss)
# ---------------------------------------------------------------------------


# ---------------------------------------------------------------------------
# Regression: valence and arousal (CCC loss, 2Att-2Mt)
# ---------------------------------------------------------------------------


# ---------------------------------------------------------------------------
# Multi-task with missing labels (ABAW, notebook 07)
# ---------------------------------------------------------------------------


# ---------------------------------------------------------------------------
# Noisy labels (SCN) and region attention (RAN), notebook 08
# ---------------------------------------------------------------------------
