"""Run profiles: how much data and training a notebook uses.

- ``smoke``: for CI. Tiny data, one or two epochs, a notebook in about a minute
  on two CPU cores; still shows that learning happens.
- ``course`` (default): for a student's laptop. At most about 8 minutes per
  notebook on two CPU cores; reaches the accuracy targets on SynthFaces.
- ``full``: the paper's hyper-parameters and a real dataset; meant for a GPU.

A notebook's ``parameters`` cell sets ``profile``; the environment variable
``FER_PROFILE`` wins when it is set, so ``FER_PROFILE=smoke pytest --nbval-lax``
runs every notebook small without editing it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Profile:
    """Generic knobs every notebook can read; notebooks add their own with :func:`choose`."""

    name: str
    n_train: int
    n_test: int
    epochs: int
    batch_size: int


PROFILES: dict[str, Profile] = {
    "smoke": Profile("smoke", n_train=600, n_test=200, epochs=2, batch_size=64),
    "course": Profile("course", n_train=6000, n_test=1500, epochs=8, batch_size=64),
    "full": Profile("full", n_train=50000, n_test=10000, epochs=40, batch_size=128),
}


def resolve_profile(name: str | None = None) -> str:
    """The profile in force: ``FER_PROFILE`` if set, else ``name``, else ``"course"``.

    Raises ``ValueError`` listing the valid names for anything else.
    """
    chosen = os.environ.get("FER_PROFILE") or name or "course"
    if chosen not in PROFILES:
        valid = ", ".join(repr(p) for p in PROFILES)
        raise ValueError(f"unknown profile {chosen!r}; valid profiles are {valid}")
    return chosen


def get_profile(name: str | None = None) -> Profile:
    """The :class:`Profile` in force (see :func:`resolve_profile`)."""
    return PROFILES[resolve_profile(name)]


def choose(profile: str | Profile, **by_profile: Any) -> Any:
    """Pick a notebook-specific setting by profile name.

    >>> choose("smoke", smoke=1, course=10, full=100)
    1
    """
    name = profile.name if isinstance(profile, Profile) else resolve_profile(profile)
    if name not in by_profile:
        raise KeyError(f"no setting given for profile {name!r} (have {sorted(by_profile)})")
    return by_profile[name]
