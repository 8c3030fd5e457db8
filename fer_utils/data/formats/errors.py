"""The one error of the dataset readers: bad input, with the file, the line or field and what was expected."""
from __future__ import annotations

import os
from typing import Any


class FormatError(ValueError):
    """Bad dataset input; the message names the file, the line/row and what was expected."""


def error(path: str | os.PathLike, where: str, expected: str, got: Any = None) -> FormatError:
    """A FormatError reading ``<path>, <where>: expected <expected>, got <got>``."""
    msg = f"{path}, {where}: expected {expected}"
    if got is not None:
        text = repr(got)
        msg += f", got {text[:80] + '...' if len(text) > 80 else text}"
    return FormatError(msg)
