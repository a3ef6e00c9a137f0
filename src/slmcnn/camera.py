"""The camera: where the bed is in a raw frame, how to straighten it, what to ignore, and the one
`Camera` a job sees through.

Real cameras look at the bed at an angle and also see the machine around it. A calibration file
names the bed's four corners in the raw frame (clockwise from top-left), the size of the
straightened bed in pixels (optionally its size in mm), and polygons to ignore (a fixture, a
reflection), drawn in raw-frame pixels. Tiles mostly inside an ignored area are marked ignored.

`Camera` holds all a job knows of its camera (the geometry or full frames, the camera profile, the
sensitivity, the build memory's layers, when photos are taken, the bed's size in mm), checked once
where it is built (`profile.open_camera`, from camera.json or the options) and passed whole: with
or without a profile, every command and the API take the same route.
"""

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from slmcnn.constants import ADAPT_LAYERS, MIN_LAYERS_ALONE, PHOTOS
from slmcnn.errors import ProfileError, SettingsError
from slmcnn.labels import NOT_A_CLASS
from slmcnn.validate import number, whole

IGNORED = NOT_A_CLASS
IGNORE_SHARE = 0.5


@dataclass
class CameraCalibration:
    corners: list[list[float]]  # 4 x (x, y) in the raw frame: top-left, top-right, bottom-right, bottom-left
    size: int = 768
    bed_mm: float | list[float] | None = None  # the bed's side, or [width, height], in mm
    ignore: list[list[list[float]]] = field(default_factory=list)  # polygons in raw-frame pixels

    def __post_init__(self):
        corners = np.asarray(self.corners, np.float64)
        if corners.shape != (4, 2) or not np.isfinite(corners).all():
            raise SettingsError(f"a calibration needs 4 corners (x, y) of finite numbers, got {self.corners!r:.80}")
        for polygon in self.ignore:
            shape = np.asarray(polygon, np.float64).shape
            if len(shape) != 2 or shape[0] < 3 or shape[1] != 2:
                raise SettingsError(f"an ignored area needs 3 or more (x, y) points, got {polygon!r:.80}")
        if cv2.contourArea(corners.astype(np.float32)) < 100:
            raise SettingsError("the 4 bed corners enclose (almost) no area")
        bed_size(self.bed_mm)
        if not isinstance(self.size, int) or isinstance(self.size, bool) or self.size < 32:
            raise SettingsError(f"the straightened bed must be a whole number of at least 32 px (`size` {self.size!r})")
        from slmcnn.images import LIMITS

        LIMITS.check("the straightened bed (`size`)", self.size, self.size, self.size * self.size * 3 * 2)

    @property
    def homography(self) -> np.ndarray:
        s = float(self.size)
        target = np.float32([[0, 0], [s, 0], [s, s], [0, s]])
        return cv2.getPerspectiveTransform(np.float32(self.corners), target)

    def check_frame(self, width: int, height: int) -> None:
        """The corners fit frames of this size: none lies more than half the frame beyond its edge
        (a calibration of another camera, or a typo, would straighten nothing but border)."""
        corners = np.asarray(self.corners, np.float64)
        size = np.array([width, height], np.float64)
        if ((corners < -0.5 * size) | (corners > 1.5 * size)).any():
            raise SettingsError(
                f"the calibration's corners {self.corners!r:.80} lie far outside {width}x{height} px frames"
            )

    def warp(self, frame: np.ndarray) -> np.ndarray:
        """The straightened bed (size x size) from a raw frame."""
        self.check_frame(frame.shape[1], frame.shape[0])
        return cv2.warpPerspective(
            frame, self.homography, (self.size, self.size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )

    def ignore_mask(self) -> np.ndarray:
        """True where the straightened bed should be ignored."""
        mask = np.zeros((self.size, self.size), np.uint8)
        for polygon in self.ignore:
            points = cv2.perspectiveTransform(np.float32(polygon).reshape(-1, 1, 2), self.homography)
            cv2.fillPoly(mask, [points.round().astype(np.int32)], 1)
        return mask.astype(bool)

    def to_json(self) -> dict:
        return asdict(self)


def bed_size(value) -> tuple[float, float] | None:
    """The bed's (width, height) in mm from one number (a square bed) or two, or None; one clear
    error for anything else."""
    if value is None:
        return None
    sides = list(value) if isinstance(value, list | tuple) else [value]
    ok = all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v > 0 for v in sides)
    if not ok or len(sides) not in (1, 2):
        raise SettingsError(
            f"`bed_mm` must be the bed's size in mm: one positive number (a square bed) or two, width and height (got {value!r:.60})"
        )
    return float(sides[0]), float(sides[-1])


def bed_size_text(text: str) -> float | list[float]:
    """--bed-mm's "W" or "W,H" as calibrate stores it (one number, or [width, height])."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise SettingsError(f"`bed_mm`: expected W or W,H in mm, got {text!r:.40}") from None
    bed_size(values)
    return values[0] if len(values) == 1 else values


@dataclass
class Camera:
    """What a job knows of its camera, checked once when built: one object from camera.json or the
    options to the engine, the pipeline, the monitor and the app. An empty Camera: the photo is the
    bed and nothing else is known."""

    geometry: CameraCalibration | None = None  # straightens raw frames; None: the photo is the bed (full frame)
    profile: Any = None  # profile.CameraProfile: this camera's good layers; None: the network alone
    error_threshold: float | None = None  # the sensitivity, above 1 fewer alarms; None: the profile's stored one
    adapt: int | None = None  # first layers of each build learned (None: ADAPT_LAYERS with a profile, else 0)
    photo: str = "auto"  # when the camera takes each layer (constants.PHOTOS)
    bed_mm: float | list[float] | None = None  # the bed's side or [width, height] in mm (else the geometry's,
    # or a full-frame profile's: calibrate --full-frame --bed-mm keeps it with the frames' size)
    source: Path | None = None  # the camera.json read, beside which reviewers' lessons are kept

    def __post_init__(self):
        if self.geometry is not None and not isinstance(self.geometry, CameraCalibration):
            raise SettingsError(f"a camera's geometry is a CameraCalibration (got {type(self.geometry).__name__})")
        if self.profile is not None:
            if self.geometry is None:
                self.geometry = self.profile.calibration
            elif self.profile.calibration != self.geometry:
                raise ProfileError("the camera profile was built with another calibration than the camera's")
        stored = self.geometry.bed_mm if self.geometry is not None else getattr(self.profile, "meta", {}).get("bed_mm")
        if self.bed_mm is not None and stored is not None and self.bed_mm != stored:
            raise SettingsError(f"`bed_mm` {self.bed_mm!r} is not the camera's {stored!r}")
        self.bed_mm = self.bed_mm if self.bed_mm is not None else stored
        bed_size(self.bed_mm)
        if self.bed_mm is not None and self.frame_size is None:
            raise SettingsError(
                "`bed_mm` of a full-frame camera needs its frames' size: calibrate it from its good frames"
            )
        if self.adapt is None:
            self.adapt = ADAPT_LAYERS if self.profile is not None else 0
        whole(self.adapt, "adapt", 0)
        if self.profile is None and 0 < self.adapt < MIN_LAYERS_ALONE:
            raise ProfileError(
                f"`adapt` must be a whole number of at least {MIN_LAYERS_ALONE} without a camera profile "
                f"(it fits its own thresholds) (got {self.adapt!r})"
            )
        number(self.error_threshold, "error_threshold", 0.05, 100, optional=True)
        if self.error_threshold is not None and self.profile is None and not self.adapt:
            raise SettingsError("`error_threshold` needs a camera profile (`camera`) or `adapt`")
        if self.photo not in PHOTOS:
            raise SettingsError(f"`photo` must be one of {', '.join(PHOTOS)} (got {self.photo!r:.40})")

    @property
    def judged(self) -> bool:
        """The network is judged against good layers: this camera's (a profile) or the build's own."""
        return self.profile is not None or bool(self.adapt)

    @property
    def frame_size(self) -> tuple[int, int] | None:
        """(width, height) in px of the bed as classified: the straightened bed, or the profile's frames."""
        if self.geometry is not None:
            return self.geometry.size, self.geometry.size
        if self.profile is not None:
            height, width = self.profile.frame_shape[:2]
            return int(width), int(height)
        return None

    @property
    def mm_per_pixel(self) -> tuple[float, float] | None:
        """(x, y) mm a pixel of the bed as classified, where the bed's size is known."""
        bed = bed_size(self.bed_mm)
        if bed is None or self.frame_size is None:
            return None
        return bed[0] / self.frame_size[0], bed[1] / self.frame_size[1]


def order_corners(points: np.ndarray) -> np.ndarray:
    """Sort 4 points clockwise from top-left."""
    points = np.asarray(points, np.float64)
    centre = points.mean(0)
    angles = np.arctan2(points[:, 1] - centre[1], points[:, 0] - centre[0])
    points = points[np.argsort(angles)]  # clockwise in image coordinates, starting near -180 deg
    start = np.argmin(points.sum(1))
    return np.roll(points, -start, axis=0)


def detect_corners(frame: np.ndarray) -> np.ndarray:
    """Propose the bed's corners: the largest bright quadrilateral in the frame."""
    gray = frame[..., 0] if frame.ndim == 3 else frame
    gray = cv2.normalize(gray.astype(np.float32), None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    scale = 800.0 / max(gray.shape)
    small = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else gray
    scale = min(scale, 1.0)
    blurred = cv2.GaussianBlur(small, (0, 0), 3)
    # The bed is lit unevenly (its far end dim), the walls beside it are darker than the bed in the
    # same row: compare each pixel with its row's median, and drop only what is near black overall.
    dark, middle = np.percentile(blurred, [2, 50])
    row_level = np.median(blurred, axis=1, keepdims=True).astype(np.float32) + 1.0
    relative = blurred.astype(np.float32) / row_level
    bright = ((relative > 0.6) & (blurred > dark + 0.15 * (middle - dark))).astype(np.uint8) * 255
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (15, 15))
    bright = cv2.morphologyEx(cv2.morphologyEx(bright, cv2.MORPH_CLOSE, kernel), cv2.MORPH_OPEN, kernel)
    contours, _ = cv2.findContours(bright, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        raise SettingsError("no bright bed found in the frame; give the `corners`")
    outline = max(contours, key=cv2.contourArea)
    hull = cv2.convexHull(outline)
    if cv2.contourArea(hull) < 0.05 * small.size:
        raise SettingsError("the brightest region is too small to be the bed; give the `corners`")
    perimeter = cv2.arcLength(hull, True)
    quad = None
    for eps in np.linspace(0.01, 0.1, 19):
        approx = cv2.approxPolyDP(hull, eps * perimeter, True)
        if len(approx) == 4:
            quad = approx[:, 0, :].astype(np.float64)
            break
    if quad is None:
        quad = cv2.boxPoints(cv2.minAreaRect(hull))
    quad = order_corners(quad) / scale
    return _fit_sides(cv2.GaussianBlur(gray.astype(np.float32), (0, 0), 1.5), quad)


MOVED = 0.05  # of the frame's diagonal: corners farther than this from the last calibration's moved
FILLS = 0.75  # an outline over this share of the frame: the photo may be the bed already
PROFILE_FRAMES = (10, 50)  # good layers a camera profile is best learned from
SQUARE = 1.6  # opposite or neighbouring sides longer than this ratio: not a (square) bed seen at an angle


def bed_doubts(frame_shape: tuple[int, ...], corners, previous: "CameraCalibration | None" = None) -> list[str]:
    """Why a bed outline is doubtful, each with what to do: corners outside the frame, a side along
    the frame's edge (the outline ran into the machine), sides too unequal for a square bed (a rail
    or the recoater taken in), or corners far from the last good calibration's."""
    height, width = frame_shape[:2]
    quad = np.asarray(corners, np.float64)
    fix = "check the preview and give --corners (or click them in the app)"
    doubts = []
    share = cv2.contourArea(quad.astype(np.float32)) / float(height * width)
    if share > FILLS:
        doubts.append(
            f"the outline covers {share:.0%} of the frame: if the photo shows the bed already (straightened, "
            "cropped), calibrate with --full-frame"
        )
    outside = [f"({x:.0f}, {y:.0f})" for x, y in quad if not (0 <= x <= width - 1 and 0 <= y <= height - 1)]
    if outside:
        doubts.append(f"corner(s) {', '.join(outside)} lie outside the {width}x{height} frame: {fix}")
    margin = 0.01 * max(height, width)
    names = ("top", "right", "bottom", "left")
    for i, name in enumerate(names):
        a, b = quad[i], quad[(i + 1) % 4]
        on_edge = (max(a[0], b[0]) < margin or min(a[0], b[0]) > width - 1 - margin) if name in ("right", "left") else (
            max(a[1], b[1]) < margin or min(a[1], b[1]) > height - 1 - margin
        )  # fmt: skip
        if on_edge:
            doubts.append(
                f"the {name} side runs along the frame's edge: the bed may reach out of view or the outline took in the machine; {fix}"
            )
    sides = np.linalg.norm(quad - np.roll(quad, -1, axis=0), axis=1)
    if sides.max() > SQUARE * sides.min():
        doubts.append(
            f"the sides are {sides.min():.0f}-{sides.max():.0f} px, too unequal for a bed seen at a moderate angle: "
            f"the outline may include the recoater, the frame or a rail; {fix}"
        )
    if previous is not None:
        moved = float(np.linalg.norm(quad - np.asarray(previous.corners), axis=1).max())
        if moved > MOVED * float(np.hypot(height, width)):
            doubts.append(
                f"a corner lies {moved:.0f} px from the last calibration's: the camera moved, or the outline is "
                f"something else; {fix}"
            )
    return doubts


def distinct_frames(paths: list[str]) -> tuple[list[str], str | None]:
    """The frames once each, in the order given (the same file, or the same bytes under another name,
    counts once: four copies of one good layer are one good layer), and a line when some repeated."""
    import hashlib

    seen: dict[str, str] = {}
    for path in paths:
        try:
            key = hashlib.sha1(Path(path).read_bytes()).hexdigest()
        except OSError:
            key = str(Path(path).resolve())  # unreadable: the reading says why, later
        seen.setdefault(key, path)
    repeats = len(paths) - len(seen)
    return list(
        seen.values()
    ), f"{repeats} frame(s) given more than once (the same bytes) counted once" if repeats else None


def frames_advice(count: int) -> str | None:
    """A line for a camera profile learned from fewer good layers than it is best learned from."""
    low, high = PROFILE_FRAMES
    if count >= low:
        return None
    return f"a profile from {count} good layers: {low}-{high}, of every exposure the camera uses, make it steadier (calibrate --update adds more)"


def _fit_sides(gray: np.ndarray, quad: np.ndarray) -> np.ndarray:
    """Refine a coarse quadrilateral: along each side, find the strongest brightness step across it
    (away from the corners, which rounded plate corners would pull inwards), fit a line through
    those edge points and intersect neighbouring lines."""
    from scipy.ndimage import map_coordinates

    reach = 0.015 * max(gray.shape) + 4
    offsets = np.linspace(-reach, reach, int(4 * reach) + 1)
    lines = []
    for i in range(4):
        a, b = quad[i], quad[(i + 1) % 4]
        direction = (b - a) / (np.linalg.norm(b - a) + 1e-9)
        normal = np.array([-direction[1], direction[0]])
        centres = a + np.linspace(0.15, 0.85, 60)[:, None] * (b - a)
        samples = centres[:, None, :] + offsets[None, :, None] * normal
        profile = map_coordinates(gray, [samples[..., 1], samples[..., 0]], order=1, mode="nearest")
        step = np.abs(np.diff(profile, axis=1))
        best = step.argmax(1)
        edges = centres + ((offsets[best] + offsets[best + 1]) / 2)[:, None] * normal
        vx, vy, x0, y0 = cv2.fitLine(edges.astype(np.float32), cv2.DIST_HUBER, 0, 0.01, 0.01).ravel()
        lines.append((np.array([x0, y0], np.float64), np.array([vx, vy], np.float64)))
    corners = []
    for i in range(4):
        (p1, d1), (p2, d2) = lines[i - 1], lines[i]
        matrix = np.array([d1, -d2]).T
        if abs(np.linalg.det(matrix)) < 1e-9:
            corners.append(quad[i])
            continue
        t = np.linalg.solve(matrix, p2 - p1)
        corners.append(p1 + t[0] * d1)
    return np.array(corners)


def preview(frame: np.ndarray, calibration: CameraCalibration) -> np.ndarray:
    """The frame with the bed outline and ignored areas drawn, beside the straightened bed."""
    from slmcnn.images import to_uint8

    raw = to_uint8(frame).copy()
    thick = max(2, int(0.004 * max(raw.shape[:2])))
    cv2.polylines(raw, [np.int32(calibration.corners)], True, (0, 255, 0), thick)
    for i, (x, y) in enumerate(calibration.corners):
        cv2.circle(raw, (int(x), int(y)), 3 * thick, (255, 0, 0), -1)
        cv2.putText(
            raw, str(i + 1), (int(x) + 4 * thick, int(y)), cv2.FONT_HERSHEY_SIMPLEX, thick / 2, (255, 255, 0), thick
        )
    for polygon in calibration.ignore:
        cv2.polylines(raw, [np.int32(polygon)], True, (255, 128, 0), thick)
    bed = calibration.warp(to_uint8(frame))
    height = bed.shape[0]
    raw = cv2.resize(raw, (int(raw.shape[1] * height / raw.shape[0]), height), interpolation=cv2.INTER_AREA)
    return np.concatenate([raw, np.zeros((height, 8, 3), np.uint8), bed], axis=1)


def tile_ignored(ignore: np.ndarray, ys: np.ndarray, xs: np.ndarray, patch: int) -> np.ndarray:
    """Per tile (row-major): True where most of the tile lies in the ignored area."""
    integral = cv2.integral(ignore.astype(np.uint8))
    y0, x0 = np.meshgrid(ys, xs, indexing="ij")
    y1, x1 = y0 + patch, x0 + patch
    inside = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
    return (inside / patch**2 >= IGNORE_SHARE).ravel()


def points(text: str, what: str = "points", count: int | None = None) -> list[list[float]]:
    """x,y points from "x1,y1,x2,y2,...": `count` of them, else a polygon of at least 3."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise SettingsError(f"{what}: expected comma-separated numbers, got {text!r}") from None
    if len(values) % 2 or len(values) < 2 * (count or 3) or (count and len(values) != 2 * count):
        wanted = f"{count} points" if count else "x,y pairs (at least 3 points)"
        raise SettingsError(f"{what}: expected {wanted}, got {len(values)} numbers")
    return [values[i : i + 2] for i in range(0, len(values), 2)]
