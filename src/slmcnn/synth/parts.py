"""Parts being built: shapes that persist over layers, and how a part's top looks in a photo."""

from dataclasses import dataclass

import cv2
import numpy as np

from slmcnn.synth.bed import smooth_noise

PART_KINDS = (
    "circle",
    "square",
    "ring",
    "triangle",
    "wall",
    "text",
    "cylinders",
    "lattice",
    "irregular",
    "pins",
    "cells",
    "large",
)
FINE_KINDS = ("cylinders", "lattice", "text", "pins", "cells")  # arrays of features at or below tile scale
REFERENCE_TILE_MM = 20.0  # the bed a tile covers at which part sizes are drawn as they are


@dataclass
class PartSpec:
    kind: str
    cx: float
    cy: float
    size: float
    angle: float
    first: int
    last: int
    wobble: float
    period: float
    phase: float
    seed: int

    def active(self, layer: int) -> bool:
        return self.first <= layer <= self.last

    def scale(self, layer: int) -> float:
        """Cross-sections change slowly from layer to layer."""
        return 1.0 + self.wobble * np.sin(2 * np.pi * layer / self.period + self.phase)


def plan_parts(
    rng: np.random.Generator,
    size: int,
    layers: int,
    count: int,
    kinds: tuple[str, ...],
    margin: int,
    scale: float = 1.0,
) -> list[PartSpec]:
    """Place parts on the plate without overlaps (rejection sampling on bounding circles); `scale`
    is how much larger than at REFERENCE_TILE_MM the bed looks (a camera zoomed in: > 1)."""
    parts: list[PartSpec] = []
    for _ in range(count * 20):
        if len(parts) >= count:
            break
        kind = str(rng.choice(kinds))
        extent = rng.uniform(0.12, 0.26) if kind in FINE_KINDS else rng.uniform(0.05, 0.2)
        if kind == "wall":
            extent = rng.uniform(0.12, 0.3)
        extent = min(0.5, extent * scale) * size
        if kind == "large":  # as large as half the bed, whatever the camera
            extent = rng.uniform(0.3, 0.5) * size
        lo, hi = margin + extent * 0.75 + 8, size - margin - extent * 0.75 - 8
        if lo >= hi:
            continue
        cx, cy = rng.uniform(lo, hi, 2)
        if any(np.hypot(cx - p.cx, cy - p.cy) < 0.72 * (extent + p.size) + 12 for p in parts):
            continue
        first = int(rng.integers(1, max(2, layers // 3 + 1))) if rng.random() < 0.4 else 1
        last = int(rng.integers(first + max(1, layers // 3), layers + 2)) if rng.random() < 0.35 else layers
        parts.append(
            PartSpec(
                kind,
                float(cx),
                float(cy),
                float(extent),
                float(rng.uniform(0, 180)),
                first,
                last,
                float(rng.uniform(0, 0.12)),
                float(rng.uniform(8, 60)),
                float(rng.uniform(0, 6.3)),
                int(rng.integers(2**31)),
            )
        )
    return parts


def _rotated(points: np.ndarray, cx: float, cy: float, angle: float) -> np.ndarray:
    a = np.deg2rad(angle)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]], np.float32)
    return (points @ rot.T + np.array([cx, cy], np.float32)).round().astype(np.int32)


def draw_part(canvas: np.ndarray, part: PartSpec, layer: int, value: int) -> None:
    """Draw one part's cross-section at `layer` into `canvas` with `value` (cv2 primitives, fast)."""
    s = part.size * part.scale(layer) / 2
    cx, cy, ang = part.cx, part.cy, part.angle
    rng = np.random.default_rng(part.seed)
    centre = (int(round(cx)), int(round(cy)))
    if part.kind == "circle":
        cv2.circle(canvas, centre, int(s), value, -1)
    elif part.kind == "ring":
        cv2.circle(canvas, centre, int(s), value, -1)
        cv2.circle(canvas, centre, int(s * rng.uniform(0.45, 0.75)), 0, -1)
    elif part.kind in ("square", "wall", "triangle", "irregular", "large"):
        if part.kind == "square":
            pts = np.array([[-s, -s], [s, -s], [s, s], [-s, s]], np.float32)
        elif part.kind == "wall":
            t = max(2.0, rng.uniform(3, 9))
            pts = np.array([[-s, -t], [s, -t], [s, t], [-s, t]], np.float32)
        elif part.kind == "triangle":
            pts = np.array([[0, -s], [s * 0.9, s * 0.7], [-s * 0.9, s * 0.7]], np.float32)
        else:
            k = 9 if part.kind == "irregular" else 14
            radii = s * (0.65 + 0.35 * rng.random(k))
            theta = np.linspace(0, 2 * np.pi, k, endpoint=False)
            pts = np.stack([radii * np.cos(theta), radii * np.sin(theta)], 1).astype(np.float32)
        cv2.fillPoly(canvas, [_rotated(pts, cx, cy, ang)], value)
    elif part.kind == "cylinders":
        n = int(rng.integers(3, 7))
        pitch = 2 * s / n
        radius = max(2, int(pitch * rng.uniform(0.18, 0.35)))
        grid = (np.arange(n) - (n - 1) / 2) * pitch
        pts = np.stack(np.meshgrid(grid, grid), -1).reshape(-1, 2).astype(np.float32)
        for x, y in _rotated(pts, cx, cy, ang):
            cv2.circle(canvas, (int(x), int(y)), radius, value, -1)
    elif part.kind == "pins":  # witness pins and test grids: many small squares or discs
        n = int(rng.integers(4, 13))
        pitch = 2 * s / n
        half = max(1, int(pitch * rng.uniform(0.12, 0.32)))
        grid = (np.arange(n) - (n - 1) / 2) * pitch
        pts = np.stack(np.meshgrid(grid, grid), -1).reshape(-1, 2).astype(np.float32)
        square = rng.random() < 0.6
        for x, y in _rotated(pts, cx, cy, ang):
            if square:
                cv2.rectangle(canvas, (int(x) - half, int(y) - half), (int(x) + half, int(y) + half), value, -1)
            else:
                cv2.circle(canvas, (int(x), int(y)), half, value, -1)
    elif part.kind == "cells":  # a label made of a cell pattern (a data-matrix-like code)
        rows, cols = int(rng.integers(4, 10)), int(rng.integers(4, 12))
        cell = 2 * s / max(rows, cols)
        filled = rng.random((rows, cols)) < 0.5
        filled[:, 0] = filled[-1, :] = True
        local = np.zeros((rows, cols), np.uint8)
        local[filled] = 1
        for r, c in np.argwhere(local):
            corner = np.array([[c, r], [c + 1, r], [c + 1, r + 1], [c, r + 1]], np.float32) * cell
            corner -= np.array([cols * cell / 2, rows * cell / 2], np.float32)
            cv2.fillPoly(canvas, [_rotated(corner * 0.92, cx, cy, ang)], value)
    elif part.kind == "lattice":
        n = int(rng.integers(3, 6)) if rng.random() < 0.5 else int(rng.integers(6, 13))
        thick = max(1, int(rng.uniform(1, 5) * min(1.0, 6 / n)))
        ends = np.linspace(-s, s, n)
        for e in ends:
            for a, b in (([e, -s], [e, s]), ([-s, e], [s, e])):
                p = _rotated(np.array([a, b], np.float32), cx, cy, ang)
                cv2.line(canvas, tuple(map(int, p[0])), tuple(map(int, p[1])), value, thick)
    elif part.kind == "text":
        letters = "".join(rng.choice(list("SLMCNABEHKTXZ0123456789"), int(rng.integers(2, 5))))
        scale = s / 22
        thick = max(2, int(scale * 2.2))
        (tw, th), _ = cv2.getTextSize(letters, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        local = np.zeros_like(canvas)
        cv2.putText(local, letters, (int(cx - tw / 2), int(cy + th / 2)), cv2.FONT_HERSHEY_SIMPLEX, scale, 1, thick)
        rot = cv2.getRotationMatrix2D((cx, cy), float(rng.uniform(-90, 90)), 1.0)
        local = cv2.warpAffine(local, rot, canvas.shape[::-1], flags=cv2.INTER_NEAREST)
        canvas[local > 0] = value


def hatch(shape: tuple[int, int], angle: float, period: float, phase: float) -> np.ndarray:
    """Laser hatch-line texture: a sine across lines at `angle` (degrees), values in [-1, 1]."""
    a = np.deg2rad(angle)
    xs = np.arange(shape[1], dtype=np.float32) * np.float32(2 * np.pi * np.cos(a) / period)
    ys = np.arange(shape[0], dtype=np.float32) * np.float32(2 * np.pi * np.sin(a) / period) + np.float32(phase)
    return np.sin(ys[:, None] + xs[None, :])


def paint_parts(
    rng: np.random.Generator,
    bed: np.ndarray,
    ids: np.ndarray,
    count: int,
    layer: int,
    level: float,
    field: np.ndarray,
    grain: float,
    exposed_share: float,
    photo: str = "recoated",
    melt: float = 80.0,
) -> list[str]:
    """Give each part region its look for this layer: faint under powder, or exposed metal; in a photo
    taken after exposure every part top is freshly melted metal."""
    looks = []
    full_hatch = None
    for index in range(1, count + 1):
        region = ids == index
        x0, y0, w, h = cv2.boundingRect(region.view(np.uint8))
        if w == 0:
            looks.append("absent")
            continue
        y1, x1 = y0 + h, x0 + w
        sub = region[y0:y1, x0:x1]
        roll = rng.random()
        if photo == "exposed":
            look = "melted"
            if full_hatch is None:  # scan vectors turn from layer to layer
                full_hatch = hatch(bed.shape, (layer * 67.0 + 23.0) % 180, rng.uniform(2.5, 6), rng.uniform(0, 6.3))
            _melted(rng, bed[y0:y1, x0:x1], sub, full_hatch[y0:y1, x0:x1], level, melt, field[y0:y1, x0:x1])
        elif roll > exposed_share:
            look = "covered"
            # Under fresh powder a part shows as a faint shape: a few gray levels off, a coarser
            # speckle (powder sits differently on metal) and a faint outline.
            soft = cv2.GaussianBlur(sub.astype(np.float32), (0, 0), 1.2)
            offset = (rng.uniform(5, 12) + grain * rng.uniform(0.3, 0.8)) * rng.choice([-1.0, -1.0, 1.0])
            speckle = cv2.GaussianBlur(rng.standard_normal(sub.shape).astype(np.float32), (0, 0), 1.0)
            speckle *= grain * rng.uniform(1.0, 2.0)
            outline = cv2.morphologyEx(sub.astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))
            rim = cv2.GaussianBlur(outline.astype(np.float32), (0, 0), 0.8) * rng.uniform(3, 8) * np.sign(offset)
            bed[y0:y1, x0:x1] += (soft * (offset + speckle) + rim) * field[y0:y1, x0:x1]
        else:
            bright = rng.random() < 0.45
            look = "exposed-bright" if bright else "exposed-dark"
            if full_hatch is None:
                full_hatch = hatch(bed.shape, (layer * 67.0) % 180, rng.uniform(3, 6), rng.uniform(0, 6.3))
            tex = full_hatch[y0:y1, x0:x1]
            gain = rng.uniform(1.0, 1.3) if bright else rng.uniform(0.45, 0.8)
            amp = rng.uniform(12, 35) if bright else rng.uniform(5, 18)
            metal = level * gain + amp * tex + rng.standard_normal(sub.shape).astype(np.float32) * rng.uniform(2, 6)
            metal = metal * field[y0:y1, x0:x1]
            patch = bed[y0:y1, x0:x1]
            patch[sub] = metal[sub]
            rim = cv2.morphologyEx(sub.astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)).astype(bool)
            if rng.random() < 0.75:
                patch[rim] += rng.uniform(15, 55) * (1 if not bright or rng.random() < 0.5 else -1)
        looks.append(look)
    return looks


def _melted(
    rng: np.random.Generator,
    patch: np.ndarray,
    sub: np.ndarray,
    tex: np.ndarray,
    level: float,
    melt: float,
    field: np.ndarray,
) -> None:
    """A freshly melted top: flat and specular (it may saturate), striped by the scan vectors, with
    sharp edges and a thin bright contour track."""
    top = level + melt * rng.uniform(0.85, 1.15)
    tracks = rng.uniform(4, 22) * tex * (1 + 0.5 * smooth_noise(rng, max(sub.shape), 3)[: sub.shape[0], : sub.shape[1]])
    metal = top + tracks + rng.standard_normal(sub.shape).astype(np.float32) * rng.uniform(1, 4)
    metal *= np.sqrt(field)  # specular: it follows the light less than diffuse powder does
    patch[sub] = metal[sub]
    if rng.random() < 0.8:
        inner = sub & ~cv2.erode(sub.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        patch[inner] += rng.uniform(8, 40)


def paint_ghosts(
    rng: np.random.Generator, bed: np.ndarray, ghosts: np.ndarray, field: np.ndarray, grain: float
) -> np.ndarray:
    """Parts finished a few layers ago show faintly through the powder as darker outlines; returns
    the footprints that visibly show (they are still Object)."""
    shown = np.zeros(ghosts.shape, bool)
    for index in np.unique(ghosts):
        if index == 0:
            continue
        region = ghosts == index
        x0, y0, w, h = cv2.boundingRect(region.view(np.uint8))
        y1, x1 = y0 + h, x0 + w
        sub = region[y0:y1, x0:x1].astype(np.uint8)
        outline = cv2.morphologyEx(sub, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)).astype(np.float32)
        # Faint, but above the grain: a footprint nobody could see would be a dishonest Object label.
        inner, rim = grain * rng.uniform(0.4, 0.9) + 2, grain * rng.uniform(1.5, 3.0) + 6
        delta = -(sub * inner + cv2.GaussianBlur(outline, (0, 0), 0.7) * rim)
        bed[y0:y1, x0:x1] += delta * field[y0:y1, x0:x1]
        shown[y0:y1, x0:x1] |= sub.astype(bool)
    return shown
