"""Regions of Error in a fine map, each with its box, size, score and a defect type named from its
geometry, position and look (defect_types.DEFECT_TYPES):

- streak: at least ELONGATED times longer along the recoater's travel than across, and LONG px long,
  or a large region whose column means vary LINED times more than its row means (lines_of);
- hopping: the same across the travel (banding, a blade jumping);
- super_elevation: on a part's place (the network's Object tiles) in a photo taken after recoating,
  or darker and rougher than the powder there while the part is under it;
- short_feed: broad (BROAD px both ways) and large (SHORT_FEED_SHARE of the bed), at an end of the
  recoater's travel and not far along it (FEED_DEPTH), another surface than powder (FEED_CONTRAST);
- spatter: small (SPOT px at most) and brighter than the powder around it, or several small spots;
- hole: compact (HOLE_SIDE px at most) and darker than the powder around it;
- other: anything else.
Fragments closer than JOIN px are one region; specks under MIN_AREA px are no region.
"""

from dataclasses import dataclass

import cv2
import numpy as np

from slmcnn import images

MIN_AREA = 64  # px: a region smaller than this is noise (a 3 mm spot on a 300 mm bed is ~60 px at 768 px)
JOIN = 5  # px: fragments this close are one region
ELONGATED = 4.0
LONG = 48  # px
BROAD = 64  # px
SHORT_FEED_SHARE = 0.02
SPOT = 400  # px
HOLE_SIDE = 128  # px: a hole (or a cluster of pits) is at most this long
LINED = 3.0  # a broad region whose brightness varies this much more one way than the other is lines
RING = 9  # px around a region that tell the powder's level there
END_MARGIN = 32  # px from an end of the recoater's travel that a region reaching it comes within
FEED_DEPTH = 0.6  # a short feed reaches an end of the travel and less than this share along it
FEED_CONTRAST = 0.1  # ... and shows another surface than powder: this much darker or brighter
PROFILE_TREND = 8.0  # px: a region's brightness profile less its trend over this scale (light, vignetting)


@dataclass
class DefectRegion:
    """One connected region of Error: box in pixels of the map's frame (x0, y0, x1, y1; x1, y1
    exclusive), area in px, type, score (1 = the threshold of the signal that found it), and the
    box and area in mm where the bed's size is known."""

    box: tuple[int, int, int, int]
    area: int
    type: str
    score: float
    contrast: float  # mean brightness inside over the ring around it, minus 1
    box_mm: tuple[float, float, float, float] | None = None
    area_mm2: float | None = None
    recurring: int = 1  # of the last layers the grading looks at, how many had Error here

    @property
    def centre(self) -> tuple[float, float]:
        x0, y0, x1, y1 = self.box
        return (x0 + x1) / 2, (y0 + y1) / 2

    def describe(self) -> str:
        """'streak 4 x 120 mm at (52, 10) mm, (160, 32) px' (the pixels find it in the photo), or the
        same in px alone where mm are not known."""
        kind, (x0, y0, x1, y1) = self.type.replace("_", " "), self.box
        if self.box_mm is None:
            return f"{kind} {x1 - x0} x {y1 - y0} px at ({x0}, {y0}) px"
        left, top, right, bottom = self.box_mm
        return f"{kind} {right - left:.0f} x {bottom - top:.0f} mm at ({left:.0f}, {top:.0f}) mm, ({x0}, {y0}) px"

    def to_json(self) -> dict:
        doc = {"box": list(self.box), "area": self.area, "type": self.type, "score": round(self.score, 4)}
        doc["recurring"] = self.recurring
        doc["contrast"] = round(self.contrast, 4)
        if self.box_mm is not None:
            doc["box_mm"] = [round(v, 2) for v in self.box_mm]
            doc["area_mm2"] = round(self.area_mm2, 2)
        return doc


def name_type(
    width: int,
    height: int,
    area: int,
    contrast: float,
    on_part: bool,
    recoated: bool,
    bed_area: int,
    recoater: str = "vertical",
    lines: float = 1.0,
    at_end: bool = False,
    shaped: bool = True,
) -> str:
    """The defect type of a region from its box, area, contrast, place, the kind of photo and
    `lines`: how much more its brightness varies across the recoater's travel than along it (a
    broad region of streaks), or its inverse where the lines run across (banding, hopping).
    `at_end`: the region reaches an end of the recoater's travel but not far along it, where a short
    feed leaves the layer below uncovered: another surface (FEED_CONTRAST), whose lines along the
    travel are that layer's, not streaks. A region not `shaped` is the network's whole tiles (sure of
    Error there while the photo shows no outline): only its lines, place and darkness name it."""
    along, across = (height, width) if recoater == "vertical" else (width, height)
    if not shaped:
        if area > SPOT and lines >= LINED:
            return "streak"
        if area > SPOT and lines <= 1 / LINED:
            return "hopping"
        if on_part and (recoated or contrast < 0):
            return "super_elevation"
        return "hole" if max(width, height) <= HOLE_SIDE and contrast < 0 else "other"
    if along >= ELONGATED * across and along >= LONG:
        return "streak"
    if across >= ELONGATED * along and across >= LONG:
        return "hopping"
    if area > SPOT and lines <= 1 / LINED:
        return "hopping"
    broad = min(width, height) >= BROAD and area >= SHORT_FEED_SHARE * bed_area
    if broad and at_end and abs(contrast) >= FEED_CONTRAST:
        return "short_feed"
    if area > SPOT and lines >= LINED:
        return "streak"
    if on_part and (recoated or contrast < 0):
        return "super_elevation"
    if area <= SPOT and contrast > 0:
        return "spatter"
    if max(width, height) <= min(ELONGATED * min(width, height), HOLE_SIDE) and contrast < 0:
        return "hole"
    if area <= SPOT:
        return "spatter"
    return "other"


def lines_of(gray: np.ndarray, inside: np.ndarray, recoater: str = "vertical") -> float:
    """How much more the brightness inside a region varies across the recoater's travel than along
    it: the spread of its column means over that of its row means (travel down the bed), each
    profile less its slow trend. A mean along a line averages the grain out but not the line's
    contrast: faint streaks or bands show in a profile where pixel by pixel the grain hides them."""
    weights = inside.astype(np.float32)
    reach = int(4 * PROFILE_TREND + 0.5)  # the trend's kernel reaches as far as scipy's gaussian_filter1d's
    total = gray.astype(np.float32) * weights

    def spread(axis: int) -> float:
        counts = weights.sum(axis)
        enough = counts >= max(4.0, 0.25 * float(counts.max()))
        profile = total.sum(axis)[enough] / counts[enough]
        if len(profile) < 5:
            return 0.0
        trend = cv2.GaussianBlur(
            profile.reshape(1, -1), (2 * reach + 1, 1), PROFILE_TREND, borderType=cv2.BORDER_REPLICATE
        )
        return float(np.var(profile - trend.ravel()))

    columns, rows = spread(0), spread(1)
    across, along = (columns, rows) if recoater == "vertical" else (rows, columns)
    return (across + 1e-6) / (along + 1e-6)


def find_regions(
    error: np.ndarray,
    image: np.ndarray,
    score: np.ndarray,
    objects: np.ndarray | None = None,
    recoated: bool = False,
    recoater: str = "vertical",
    mm_per_pixel: float | tuple[float, float] | None = None,
    unshaped: np.ndarray | None = None,
) -> tuple[list["DefectRegion"], np.ndarray]:
    """The regions of an (H, W) Error mask, largest score first, and the mask without specks.
    `score` is (H, W) (1 = threshold), `objects` the (H, W) places of the network's parts,
    `unshaped` where Error is a whole tile of the network's rather than an outline in the photo;
    `mm_per_pixel` (one scale, or x and y: a bed whose photo is not square) gives boxes in mm too."""
    scale = (mm_per_pixel, mm_per_pixel) if isinstance(mm_per_pixel, int | float) else mm_per_pixel
    gray = images.gray(image)
    joined = cv2.morphologyEx(error.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((JOIN, JOIN), np.uint8))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(joined, connectivity=8)
    kept = np.zeros(error.shape, bool)
    regions = []
    ring_kernel = np.ones((2 * RING + 1, 2 * RING + 1), np.uint8)
    for k in range(1, count):
        x, y, w, h, _ = (int(v) for v in stats[k])
        window = (slice(max(y - RING, 0), y + h + RING), slice(max(x - RING, 0), x + w + RING))
        inside = (labels[window] == k) & error[window]
        area = int(inside.sum())
        if area < MIN_AREA:
            continue
        kept[window] |= inside
        ring = (cv2.dilate(inside.astype(np.uint8), ring_kernel) > 0) & ~(labels[window] == k)
        level = float(gray[window][ring].mean()) if ring.any() else float(gray[window][inside].mean())
        contrast = float(gray[window][inside].mean()) / max(level, 1e-3) - 1.0
        on_part = objects is not None and float(objects[window][inside].mean()) >= 0.5
        start, end, length = (y, y + h, error.shape[0]) if recoater == "vertical" else (x, x + w, error.shape[1])
        at_end = (start <= END_MARGIN or end >= length - END_MARGIN) and end - start <= FEED_DEPTH * length
        shaped = unshaped is None or float(unshaped[window][inside].mean()) < 0.5
        lines = lines_of(gray[window], inside, recoater)
        kind = name_type(w, h, area, contrast, on_part, recoated, error.size, recoater, lines, at_end, shaped)
        box = (x, y, x + w, y + h)
        region = DefectRegion(box, area, kind, float(score[window][inside].max()), contrast)
        if scale:
            region.box_mm = (x * scale[0], y * scale[1], (x + w) * scale[0], (y + h) * scale[1])
            region.area_mm2 = area * scale[0] * scale[1]
        regions.append(region)
    regions.sort(key=lambda r: (r.score, r.area), reverse=True)
    return regions, kept
