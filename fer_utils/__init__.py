"""fer_utils: the finished, tested pieces that the course notebooks build.

Import what you need from the submodules; the most used helpers are re-exported here.
"""
from fer_utils.labels import AUS, CLASSES, CLASSES_7
from fer_utils.profiles import PROFILES, get_profile, resolve_profile
from fer_utils.utils import pick_device, record, seed_everything, use_amp

__all__ = [
    "AUS", "CLASSES", "CLASSES_7", "PROFILES", "get_profile", "resolve_profile",
    "pick_device", "record", "seed_everything", "use_amp",
]
__version__ = "0.1.0"
