"""Thin shim: ``fer_utils.assets`` moved to :mod:`fer_utils.tools.assets`; kept so ``python -m fer_utils.assets`` still works."""
import sys

from fer_utils.tools import assets as _real

if __name__ == "__main__":
    sys.exit(_real.main())
sys.modules[__name__] = _real
