"""Thin shim: ``fer_utils.exercises`` moved to :mod:`fer_utils.tools.exercises`; kept so ``python -m fer_utils.exercises`` still works."""
import sys

from fer_utils.tools import exercises as _real

if __name__ == "__main__":
    sys.exit(_real.main())
sys.modules[__name__] = _real
