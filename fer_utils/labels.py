"""The one label space of the course: class order, action units, valence-arousal range.

Canonical class order is the AffectNet / Aff-Wild2 order (``shared reference
datasets.md`` section 0): every dataset reader maps its native ids to these.
"""
from __future__ import annotations

#: Canonical class names; index = canonical id. 7-class sets use the first seven.
CLASSES: tuple[str, ...] = (
    "neutral", "anger", "disgust", "fear", "happiness", "sadness", "surprise", "contempt",
)
CLASSES_7: tuple[str, ...] = CLASSES[:7]
CLASS_TO_ID: dict[str, int] = {name: i for i, name in enumerate(CLASSES)}

#: FER2013's own class names, index = its ``emotion`` id 0..6 (also the output order of fer's model).
FER2013_CLASSES: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")

#: FACS action units that SynthFaces renders (the 12 Aff-Wild2 AUs plus what the
#: EMFACS prototypes need). Index into ``aus`` arrays follows this order.
AUS: tuple[int, ...] = (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 24, 25, 26)
AU_NAMES: dict[int, str] = {
    1: "inner brow raiser", 2: "outer brow raiser", 4: "brow lowerer", 5: "upper lid raiser",
    6: "cheek raiser", 7: "lid tightener", 9: "nose wrinkler", 10: "upper lip raiser",
    12: "lip corner puller", 14: "dimpler", 15: "lip corner depressor", 17: "chin raiser",
    20: "lip stretcher", 23: "lip tightener", 24: "lip pressor", 25: "lips part", 26: "jaw drop",
}
#: The 12 AUs annotated in Aff-Wild2 (ABAW2 onwards).
ABAW_AUS: tuple[int, ...] = (1, 2, 4, 6, 7, 10, 12, 15, 23, 24, 25, 26)

#: Valence and arousal both live in [VA_MIN, VA_MAX].
VA_MIN, VA_MAX = -1.0, 1.0

#: Face regions for which SynthFaces gives boxes and masks.
REGIONS: tuple[str, ...] = ("brows", "eyes", "nose", "mouth", "cheeks")


def class_names(num_classes: int) -> tuple[str, ...]:
    """The first ``num_classes`` canonical names (7 or 8)."""
    if num_classes not in (7, 8):
        raise ValueError(f"num_classes must be 7 or 8, got {num_classes}")
    return CLASSES[:num_classes]

#: FER2013 ``emotion`` ids 0 Angry, 1 Disgust, 2 Fear, 3 Happy, 4 Sad, 5 Surprise, 6 Neutral
#: -> canonical id. The one copy of this map (the FER2013 reader and models trained on
#: FER2013 both read it from here).
FER2013_TO_CANON: dict[int, int] = {0: 1, 1: 2, 2: 3, 3: 4, 4: 5, 5: 6, 6: 0}
