"""Data for the course: the SynthFaces generator, identity-aware splits and tensor helpers.

``from fer_utils.data import SynthFaces`` is the entry point; real dataset readers and
writers live in :mod:`fer_utils.data.formats` (import them from there).

The input convention, once for the whole course: images are uint8 arrays until they enter a
model, and ``to_model_tensor(images, normalize=...)`` turns them into float (N, C, H, W)
tensors with the scaling named explicitly: ``"unit"`` [0, 1], ``"symmetric"`` [-1, 1] (the
models trained from scratch) or ``"imagenet"`` (ImageNet mean and std, DDAMFN).
``black_value(normalize)`` is a black pixel under that scaling (a baseline for explainers).
"""
from fer_utils.data.convention import NORMALIZATIONS, black_value, to_model_tensor
from fer_utils.data.datasets import (
    HELD_OUT_OFFSET, TensorFaces, held_out_seed, identity_kfold, identity_split, materialize, random_split_indices,
    to_tensor,
)
from fer_utils.data.synthetic import CIRCUMPLEX, PROTOTYPES, SynthFaces, render_face

__all__ = [
    "NORMALIZATIONS", "black_value", "to_model_tensor", "HELD_OUT_OFFSET", "held_out_seed",
    "CIRCUMPLEX", "PROTOTYPES", "SynthFaces", "TensorFaces", "identity_kfold", "identity_split", "materialize",
    "random_split_indices", "render_face", "to_tensor",
]
