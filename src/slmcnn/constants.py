"""The ground floor: what every module shares and no other module defines: the class names and their
label indices, the overlay colours and the version. It imports nothing of slmcnn, so any module may
import it; `slmcnn/__init__.py` re-exports it for users."""

__version__ = "0.1.0"

CLASSES: tuple[str, ...] = ("Powder", "Object", "Error")
"""Class names in label order; the index of a name is its label."""

POWDER, OBJECT, ERROR = range(len(CLASSES))
"""The label of each class (CLASSES.index of its name)."""

NOT_A_CLASS = -1
"""A tile that belongs to no class: ignored by a camera calibration, or ambiguous by a label rule."""

CLASS_COLOURS: dict[str, tuple[int, int, int]] = {
    "Powder": (255, 255, 255),
    "Object": (0, 0, 255),
    "Error": (255, 0, 0),
}
"""RGB overlay colours, as in the reference: white powder, blue object, red error."""

SURE_ERROR = 0.9
"""The network sees an Error clearly from this probability: no memory hides it (profile, fine maps,
grading alike)."""

PHOTOS: tuple[str, ...] = ("auto", "recoated", "exposed")
"""When a camera takes each layer: after recoating (a part showing through the powder is a defect),
after exposure (parts are normal), or auto (guessed from a build's first layers)."""

ADAPT_LAYERS = 5
"""First layers of each build learned into a build memory by default, with a camera profile."""

MIN_LAYERS_ALONE = 4
"""Without a camera profile a build memory fits its own thresholds: it learns at least this many layers."""
