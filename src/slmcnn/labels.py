"""How a patch's class follows from its per-pixel mask (0 powder, 1 object, 2 error).

A bare "2% of pixels" rule makes sliver tiles whose class the image cannot support. So a patch is
Error when it holds at least `error_min_pixels` visibly rendered error pixels, else Object when at
least `object_min_fraction` of it is part, else Powder. Patches with a trace of error below the
minimum, or a sliver of part between `object_ambiguous_fraction` and the object minimum, are
*ambiguous*: by default they are left out of training sets, and scored by the same hard rule.

`tile_labels` is the one place where a mask becomes tile labels (training sets, scoring, examples).
"""

from dataclasses import asdict, dataclass

import numpy as np

from slmcnn.constants import CLASSES, ERROR, NOT_A_CLASS, OBJECT, POWDER  # noqa: F401 - re-exported
from slmcnn.errors import DataError
from slmcnn.tiles import TileGeometry, cut

NOT_A_CLASS_PIXEL = np.uint8(NOT_A_CLASS % 256)
"""NOT_A_CLASS as stored in uint8 per-pixel class maps (255)."""
AMBIGUOUS = NOT_A_CLASS


@dataclass(frozen=True)
class LabelRule:
    error_min_pixels: int = 120
    object_min_fraction: float = 0.05
    object_ambiguous_fraction: float = 0.01

    def __post_init__(self):
        from slmcnn.validate import number, whole

        whole(self.error_min_pixels, "error_min_pixels", 1)
        number(self.object_min_fraction, "object_min_fraction", 0, 1)
        number(self.object_ambiguous_fraction, "object_ambiguous_fraction", 0, 1)

    def as_dict(self) -> dict:
        return asdict(self)

    def counts(self, mask_tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Error pixel counts and object fractions of (N, p, p) mask tiles."""
        flat = mask_tiles.reshape(mask_tiles.shape[0], -1)
        return (flat == ERROR).sum(1), (flat == OBJECT).mean(1)

    def labels(self, mask_tiles: np.ndarray) -> np.ndarray:
        """Hard labels for (N, p, p) mask tiles: the class the rule assigns, never ambiguous."""
        errors, objects = self.counts(mask_tiles)
        return np.where(
            errors >= self.error_min_pixels, ERROR, np.where(objects >= self.object_min_fraction, OBJECT, POWDER)
        )

    def ambiguous(self, mask_tiles: np.ndarray) -> np.ndarray:
        """True where the image cannot clearly support the hard label."""
        errors, objects = self.counts(mask_tiles)
        faint_error = (errors > 0) & (errors < self.error_min_pixels)
        sliver = (errors == 0) & (objects > self.object_ambiguous_fraction) & (objects < self.object_min_fraction)
        return faint_error | sliver


def tile_labels(
    mask: np.ndarray, where: TileGeometry, rule: LabelRule | None = None, ambiguous: bool = True
) -> np.ndarray:
    """Per-tile labels (row-major) of an HxW label mask for the tiles at `where`, by `rule`; with
    `ambiguous=False`, tiles the rule calls ambiguous are NOT_A_CLASS instead of their hard label."""
    rule = rule or LabelRule()
    if mask.shape[:2] != (where.height, where.width):
        raise DataError(f"the mask is {mask.shape[1]}x{mask.shape[0]}, the layer is {where.width}x{where.height}")
    tiles = cut(mask.reshape(mask.shape[0], mask.shape[1], 1), where)[..., 0]
    labels = rule.labels(tiles)
    return labels if ambiguous else np.where(rule.ambiguous(tiles), NOT_A_CLASS, labels)
