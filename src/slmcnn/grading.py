"""A layer's grade: ok, minor or critical, from its Error tiles (how sure the network is, how far
the camera profile finds them from good layers, how large the regions they form) and from where
Error recurs over the last layers. One grade per layer is what a shop acts on: the monitor raises
one graded alert per layer, the report and the app colour a strip of layers by it, and
predict-layer's page sorts its layers by it.

A tile is *sure* when its Error probability reaches `sure` and, where a profile scored it, its
anomaly is at least 1 (farther from the good layers than their own spread) or the network's own
probability reaches SURE_ERROR (the profile kept it: its place did not look so on the good layers). A layer is critical
when a region (Error tiles touching, diagonals included) holds `region_tiles` sure tiles, when
sure Error tiles cover `share` of the bed, or when Error comes back at the same place (within one
tile) on `persist` of the last `window` layers; any other Error makes it minor. A minor layer with
a single Error tile is a *lone* tile: stored and logged, not pushed to a hook."""

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from slmcnn.constants import ERROR, SURE_ERROR
from slmcnn.errors import SettingsError
from slmcnn.labels import NOT_A_CLASS_PIXEL
from slmcnn.tiles import TileGeometry, tile_mask

GRADES = ("ok", "minor", "critical")
SIGNAL_SURE = 2.0  # a fine-map region a signal found at this multiple of its threshold is sure
RECUR = 16  # px: on a fine map a defect recurs where an earlier layer had Error this close


@dataclass(frozen=True)
class GradeRules:
    """When a layer is critical (see the module); `persist` 0 switches the persistence rule off."""

    region_tiles: int = 3
    share: float = 0.1
    sure: float = 0.9
    persist: int = 3
    window: int = 5

    def __post_init__(self):
        for name in ("region_tiles", "window"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise SettingsError(f"`{name}` must be a whole number of 1 or more (got {value!r})")
        if not isinstance(self.persist, int) or isinstance(self.persist, bool) or not 0 <= self.persist <= self.window:
            raise SettingsError(
                f"the persistence rule (`persist`) needs 0 (off) to {self.window} layers of the last {self.window} "
                f"(got {self.persist!r})"
            )
        for name, low, high in (("share", 0.0, 1.0), ("sure", 0.0, 1.0)):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or not low < value <= high:
                raise SettingsError(f"`{name}` must be a number above {low:g} and at most {high:g} (got {value!r})")

    @property
    def history_needed(self) -> int:
        """Earlier layers the persistence rule looks at."""
        return self.window - 1 if self.persist else 0

    @classmethod
    def parse_persist(cls, text: str) -> tuple[int, int]:
        """'3/5' (Error on 3 of the last 5 layers) -> (3, 5); '0' -> off."""
        try:
            if text.strip() == "0":
                return 0, cls.window
            k, m = (int(part) for part in text.split("/"))
        except ValueError:
            raise SettingsError(
                f"--alert-persist takes K/M, e.g. 3/5 (Error on 3 of the last 5 layers), or 0 (got {text!r})"
            ) from None
        return k, m


@dataclass
class Region:
    """Error tiles that touch: their box in tiles (rows, cols inclusive) and in pixels."""

    rows: tuple[int, int]
    cols: tuple[int, int]
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in the layer's pixels
    tiles: int
    sure: int
    p_error: float  # the highest Error probability in the region
    anomaly: float | None  # the highest anomaly, where a profile scored the tiles
    recurring: int = 1  # of the last `window` layers, how many had Error here


@dataclass
class LayerGrade:
    grade: str
    error_tiles: int
    tiles: int
    regions: list[Region] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    defects: list = field(default_factory=list)  # regions.DefectRegion of the fine map, most certain first

    @property
    def lone(self) -> bool:
        """A minor layer with one Error tile: logged, not pushed."""
        return self.grade == "minor" and self.error_tiles == 1

    @property
    def severity(self) -> float:
        """For ranking layers: the grade first, then the sure tiles and the largest Error probability."""
        top = max((r.p_error for r in self.regions), default=0.0)
        return GRADES.index(self.grade) * 1000 + sum(r.sure for r in self.regions) + top

    def message(self) -> str:
        if self.grade == "ok":
            return "no Error tile"
        where = "; ".join(
            f"rows {r.rows[0]}-{r.rows[1]} cols {r.cols[0]}-{r.cols[1]}: {r.tiles} tile(s), {r.sure} sure"
            for r in self.regions[:3]
        )
        more = f" (+{len(self.regions) - 3} more)" if len(self.regions) > 3 else ""
        why = ", ".join(self.reasons) if self.reasons else "Error below the critical rules"
        if self.defects:
            named = "; ".join(d.describe() for d in self.defects[:3])
            more = f" (+{len(self.defects) - 3} more)" if len(self.defects) > 3 else ""
            return f"{self.grade}: {named}{more}: {why}"
        return f"{self.grade}: {self.error_tiles} Error tile(s) of {self.tiles}: {why}. {where}{more}"

    def to_json(self) -> dict:
        return {
            "grade": self.grade,
            "reasons": self.reasons,
            "error_tiles": self.error_tiles,
            "message": self.message(),
        }

    def regions_json(self) -> str:
        """The tile regions, then the fine map's defects (type, box in px and mm, area, score, text)."""
        defects = [{**d.to_json(), "text": d.describe()} for d in self.defects]
        return json.dumps([asdict(r) for r in self.regions] + defects)


def regions_of(mask: np.ndarray) -> list[np.ndarray]:
    """Groups of True cells touching (8 neighbours), each as an array of (row, col)."""
    import cv2

    count, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    return [np.argwhere(labels == k) for k in range(1, count)]


def spread(mask: np.ndarray) -> np.ndarray:
    """The mask grown by one tile in every direction (diagonals included)."""
    grown = mask.copy()
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            shifted = np.zeros_like(mask)
            shifted[max(dy, 0) : mask.shape[0] + min(dy, 0), max(dx, 0) : mask.shape[1] + min(dx, 0)] = mask[
                max(-dy, 0) : mask.shape[0] + min(-dy, 0), max(-dx, 0) : mask.shape[1] + min(-dx, 0)
            ]
            grown |= shifted
    return grown


def grade_layer(
    classes: np.ndarray,
    p_error: np.ndarray,
    anomaly: np.ndarray | None,
    geometry: TileGeometry,
    rules: GradeRules = GradeRules(),
    history: Sequence[np.ndarray] = (),
    sure_share: float | None = None,
) -> LayerGrade:
    """Grade one layer from its tile classes (rows, cols), Error probabilities and anomaly (per
    tile, row-major) and the tile classes of the layers before it (oldest first). `sure_share`,
    where a fine map measured it, is the share of the bed that is sure Error (else sure tiles
    count whole)."""
    error = classes == ERROR
    shape = classes.shape
    p = np.asarray(p_error, np.float32).reshape(shape)
    a = None if anomaly is None else np.asarray(anomaly, np.float32).reshape(shape)
    # the profile's anomaly must confirm a tile, unless the network itself was sure of it (the
    # profile has then kept it because its place did not look so on the good layers)
    sure = error & (p >= rules.sure) & (True if a is None else (a >= 1.0) | (p >= SURE_ERROR))
    counted = int((classes >= 0).sum())
    history = list(history)
    earlier = [g == ERROR for g in history[max(len(history) - rules.history_needed, 0) :] if g.shape == shape]
    recurring = np.ones(shape, np.int32) + sum((spread(g).astype(np.int32) for g in earlier), np.zeros(shape, np.int32))
    regions, reasons = [], []
    for cells in regions_of(error):
        r, c = cells[:, 0], cells[:, 1]
        y0, x0 = int(geometry.ys[r.min()]), int(geometry.xs[c.min()])
        y1, x1 = int(geometry.ys[r.max()]) + geometry.patch, int(geometry.xs[c.max()]) + geometry.patch
        regions.append(
            Region(
                (int(r.min()), int(r.max())),
                (int(c.min()), int(c.max())),
                (x0, y0, min(x1, geometry.width), min(y1, geometry.height)),
                len(cells),
                int(sure[r, c].sum()),
                float(p[r, c].max()),
                None if a is None else float(a[r, c].max()),
                int(recurring[r, c].max()),
            )
        )
    regions.sort(key=lambda g: (g.sure, g.tiles, g.p_error), reverse=True)
    if any(g.sure >= rules.region_tiles for g in regions):
        reasons.append(f"a region of {rules.region_tiles}+ sure Error tiles")
    share = sure.sum() / max(counted, 1) if sure_share is None else sure_share
    if sure.sum() >= 2 and share >= rules.share:
        reasons.append(f"sure Error on {share:.0%} of the bed")
    if rules.persist and any(g.recurring >= rules.persist for g in regions):
        reasons.append(f"Error at the same place on {rules.persist} of the last {rules.window} layers")
    grade = "critical" if reasons else "minor" if error.any() else "ok"
    return LayerGrade(grade, int(error.sum()), counted, regions, reasons)


def fine_tiles(result) -> tuple[np.ndarray, np.ndarray, float]:
    """The tile classes (rows, cols) and Error probabilities grading reads from a fine map: a tile
    is Error when it holds Error pixels (of a region: specks under regions.MIN_AREA are gone from the
    map), sure when a signal found that region at SIGNAL_SURE times its threshold or the network is
    sure of it."""
    grid, fine = result.grid, result.fine
    classes = result.tile_classes.copy()
    p_error = result.probabilities[:, ERROR].astype(np.float32).reshape(grid.shape).copy()
    error = fine.classes == ERROR
    found = np.zeros(error.shape, bool)
    for region in fine.regions:
        if region.score >= SIGNAL_SURE:
            x0, y0, x1, y1 = region.box
            found[y0:y1, x0:x1] |= error[y0:y1, x0:x1]
    for r, y in enumerate(grid.ys):
        for c, x in enumerate(grid.xs):
            if classes[r, c] < 0:
                continue
            window = (slice(int(y), int(y) + grid.patch), slice(int(x), int(x) + grid.patch))
            if error[window].any():
                classes[r, c] = ERROR
                if found[window].any():
                    p_error[r, c] = 1.0
            elif classes[r, c] == ERROR:
                classes[r, c] = int(np.argmax(result.probabilities[r * grid.shape[1] + c, :ERROR]))
    counted = fine.classes != NOT_A_CLASS_PIXEL
    sure_error = error & (found | tile_mask(p_error >= SURE_ERROR, grid, error.shape))
    return classes, p_error.ravel(), float(sure_error.sum() / max(int(counted.sum()), 1))


class Grader:
    """Grades a build's layers in order, each once, with the layers before it for persistence: the
    grade goes into the layer's result, and every writer reads it from there."""

    def __init__(self, rules: GradeRules | None = None):
        self.rules = rules or GradeRules()
        self.reset()

    def reset(self) -> None:
        self.history: list[np.ndarray] = []

    def __call__(self, result) -> LayerGrade:
        if getattr(result, "fine", None) is not None:
            classes, p_error, share = fine_tiles(result)
            grade = grade_layer(classes, p_error, None, result.grid, self.rules, (), share)
            grade.defects = list(result.fine.regions)
            remembered = self._recurring(grade, result.fine.classes == ERROR)
        else:
            remembered = classes = result.tile_classes
            grade = grade_layer(
                classes, result.probabilities[:, ERROR], result.anomaly, result.grid, self.rules, self.history
            )
        keep = self.rules.history_needed
        self.history = [*self.history, remembered][-keep:] if keep else []
        return grade

    def _recurring(self, grade: LayerGrade, error: np.ndarray) -> np.ndarray:
        """Persistence on a fine map: a defect recurs where the layers before had Error within
        RECUR px of it (not within a tile: a tile is 40 mm). Returns the layer's Error, RECUR px a cell."""
        import cv2

        cells = (
            cv2.resize(
                error.astype(np.uint8),
                (max(error.shape[1] // RECUR, 1), max(error.shape[0] // RECUR, 1)),
                interpolation=cv2.INTER_AREA,
            )
            > 0
        )
        earlier = [
            cv2.dilate(h.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
            for h in self.history
            if h.shape == cells.shape
        ]
        earlier = earlier[max(len(earlier) - self.rules.history_needed, 0) :]
        for defect in grade.defects:
            x0, y0, x1, y1 = (v // RECUR for v in defect.box)
            defect.recurring = 1 + sum(bool(h[y0 : y1 + 1, x0 : x1 + 1].any()) for h in earlier)
        if self.rules.persist and any(d.recurring >= self.rules.persist for d in grade.defects):
            grade.reasons.append(
                f"Error at the same place on {self.rules.persist} of the last {self.rules.window} layers"
            )
            grade.grade = "critical"
        return cells


def uncalibrated_advice(grades: list[str | None]) -> str:
    """Why a run without a camera profile may alarm, and what to do: photos of a camera the model
    was not trained on, judged by the network alone."""
    counts = Counter(grades)
    flagged = ", ".join(f"{counts[g]} {g}" for g in GRADES[1:] if counts[g])
    return (
        f"note: {flagged} of {len(grades)} layer(s) without a camera profile: the shipped model has not seen this "
        "camera; calibrate on 10-50 photos of good layers (slmcnn calibrate good/*.png --out camera.json) "
        "and give --camera camera.json"
    )
