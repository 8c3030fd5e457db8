"""Thin shim: ``fer_utils.course`` moved to :mod:`fer_utils.tools.course`; kept so ``python -m fer_utils.course`` still works."""
import sys

from fer_utils.tools import course as _real

if __name__ == "__main__":
    sys.exit(_real.main())
sys.modules[__name__] = _real
