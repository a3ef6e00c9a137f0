"""Process errors and how each looks: streaks, short feed, swelling, debris, chatter, holes, spatter
around parts, horizontal spreading lines, broad scratch columns and ridged raised regions.

Each defect is planned once for the build (where, when, how long) and rendered per layer. A defect
labels only the pixels where it visibly changes the image (at least `VISIBLE` gray levels), so a
patch is never called Error for a change nobody could see.
"""

from dataclasses import dataclass, field

import cv2
import numpy as np

from slmcnn.synth.bed import smooth_noise
from slmcnn.synth.parts import PartSpec, hatch

DEFECT_KINDS = (
    "streak",
    "short_feed",
    "swelling",
    "debris",
    "chatter",
    "hole",
    "spatter",
    "spread_line",
    "scratch",
    "ridge",
)
VISIBLE = 6.0


@dataclass
class DefectEvent:
    kind: str
    first: int
    last: int
    seed: int
    params: dict = field(default_factory=dict)

    def active(self, layer: int) -> bool:
        return self.first <= layer <= self.last


@dataclass
class LayerContext:
    """What a defect needs to know about the layer it is drawn into."""

    size: int
    level: float
    field: np.ndarray
    plate: np.ndarray
    parts: list[PartSpec]
    part_ids: np.ndarray
    layer: int
    photo: str = "recoated"  # "recoated" or "exposed"
    breakthrough: float = 0.0  # share of super-elevations that break through fresh powder (dark, rough)


def plan_defects(
    rng: np.random.Generator, layers: int, size: int, rates: dict[str, float], parts: list[PartSpec]
) -> list[DefectEvent]:
    """Draw each defect's start layer, duration and geometry; persistence is part of the plan."""
    events: list[DefectEvent] = []
    durations = {
        "streak": (2, 12),
        "short_feed": (1, 2),
        "swelling": (3, 8),
        "debris": (1, 3),
        "chatter": (1, 3),
        "hole": (1, 2),
        "spatter": (1, 3),
        "spread_line": (1, 2),
        "scratch": (3, 15),
        "ridge": (2, 6),
    }
    for layer in range(1, layers + 1):
        for kind in DEFECT_KINDS:
            if rng.random() >= rates.get(kind, 0.0):
                continue
            lo, hi = durations[kind]
            event = DefectEvent(
                kind, layer, min(layers, layer + int(rng.integers(lo, hi + 1)) - 1), int(rng.integers(2**31))
            )
            if kind in ("swelling", "ridge", "spatter", "spread_line"):
                candidates = [i for i, p in enumerate(parts) if p.active(layer) and p.kind != "text"]
                if not candidates:
                    continue
                event.params["part"] = int(rng.choice(candidates))
            if kind == "streak" and parts and rng.random() < 0.5:
                event.params["through_part"] = int(rng.integers(len(parts)))
            events.append(event)
    return events


def render_defect(event: DefectEvent, bed: np.ndarray, ctx: LayerContext) -> np.ndarray:
    """Draw `event` at `ctx.layer` into `bed` (in place); return its visible pixels (bool mask)."""
    rng = np.random.default_rng(event.seed)
    age = ctx.layer - event.first
    return RENDERERS[event.kind](event, bed, ctx, rng, age)


def _additive(bed: np.ndarray, delta: np.ndarray, y0: int, x0: int, ctx: LayerContext) -> np.ndarray:
    h, w = delta.shape
    scaled = delta * ctx.field[y0 : y0 + h, x0 : x0 + w]
    bed[y0 : y0 + h, x0 : x0 + w] += scaled
    mask = np.zeros(bed.shape, bool)
    mask[y0 : y0 + h, x0 : x0 + w] = np.abs(scaled) >= VISIBLE
    return mask


def streak(event, bed, ctx, rng, age) -> np.ndarray:
    """A long thin line along the recoater's travel (vertical), brighter or darker, often through parts."""
    s = ctx.size
    part = ctx.parts[event.params["through_part"]] if "through_part" in event.params else None
    x = part.cx + rng.uniform(-0.4, 0.4) * part.size if part else rng.uniform(0.05, 0.95) * s
    y_start = int(rng.uniform(0.0, 0.5) * s) if rng.random() < 0.6 else 0
    length = int(rng.uniform(0.35, 1.0) * (s - y_start))
    width = rng.uniform(0.8, 2.6)
    amp = rng.uniform(14, 45) * rng.choice([-1.0, 1.0])
    fade = 1.0 - 0.08 * age
    ys = np.arange(y_start, min(s, y_start + length))
    wobble = 1.5 * smooth_noise(rng, len(ys), 3)[:, 0] if len(ys) > 3 else np.zeros(len(ys))
    x0 = max(0, int(x - 4 * width - 3))
    xs = np.arange(x0, min(s, int(x + 4 * width + 4)))
    d = xs[None, :] - (x + wobble[:, None])
    profile = np.exp(-(d**2) / (2 * width**2)) - 0.35 * np.exp(
        -((np.abs(d) - 1.8 * width) ** 2) / (2 * (0.6 * width) ** 2)
    )
    along = 0.75 + 0.25 * smooth_noise(rng, len(ys), 6)[:, :1]
    return _additive(bed, (amp * fade * profile * along).astype(np.float32), int(ys[0]), x0, ctx)


def short_feed(event, bed, ctx, rng, age) -> np.ndarray:
    """Too little powder: at the far end from the supply (top) the previous, rough layer shows."""
    s = ctx.size
    depth = rng.uniform(0.1, 0.4) * s
    left, right = sorted(rng.uniform(0, 1, 2) * s) if rng.random() < 0.5 else (0, s)
    right = max(right, left + 0.25 * s)
    xs = np.arange(s, dtype=np.float32)
    boundary = (
        depth * (1 + 0.35 * smooth_noise(rng, s, 7)[0]) * np.clip(np.minimum(xs - left, right - xs) / (0.08 * s), 0, 1)
    )
    region = np.arange(s, dtype=np.float32)[:, None] < boundary[None, :]
    region &= ctx.plate.astype(bool)
    if not region.any():
        return region
    ridges = cv2.GaussianBlur(rng.standard_normal((1, s)).astype(np.float32), (0, 0), rng.uniform(1.5, 4)).repeat(s, 0)
    ridges = ridges / (ridges.std() + 1e-6) * rng.uniform(6, 16)
    rough = cv2.GaussianBlur(rng.standard_normal((s, s)).astype(np.float32), (0, 0), 1.5) * rng.uniform(8, 16)
    under = ctx.level * rng.uniform(0.55, 0.82) + ridges + rough
    parts = ctx.part_ids > 0
    under[parts] = ctx.level * rng.uniform(0.4, 0.7) + 12 * hatch((s, s), rng.uniform(0, 180), 4.0, 0.0)[parts]
    edge = cv2.GaussianBlur(region.astype(np.float32), (0, 0), 2.0)
    bed[:] = bed * (1 - edge) + under * ctx.field * edge
    return edge > 0.5


def swelling(event, bed, ctx, rng, age) -> np.ndarray:
    """Super-elevation: a bright specular blob at a part's edge with a shadow away from the light; it
    grows each layer, and once the recoater hits it a bright stub trails behind it."""
    ids = (ctx.part_ids == event.params["part"] + 1).astype(np.uint8)
    if not ids.any():
        return np.zeros(bed.shape, bool)
    contour = cv2.findContours(ids, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)[0]
    points = np.concatenate(contour)[:, 0]
    px, py = points[rng.integers(len(points))]
    radius = rng.uniform(3, 7) + age * rng.uniform(1.0, 2.5)
    s = ctx.size
    half = int(radius * 3 + 12)
    y0, x0 = max(0, py - half), max(0, px - half)
    y1, x1 = min(s, py + half), min(s, px + half)
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    theta = np.arctan2(yy - py, xx - px)
    wobble = 1 + 0.3 * np.sin(3 * theta + rng.uniform(0, 6.3)) + 0.15 * np.sin(5 * theta + rng.uniform(0, 6.3))
    r = np.hypot(yy - py, xx - px) / (radius * wobble)
    if _breaks_through(event, ctx):
        return _breakthrough(bed, ctx, rng, np.clip(1.5 * (1 - r**2), 0, 1), int(y0), int(x0), age)
    light = rng.uniform(0, 2 * np.pi)
    lx, ly = np.cos(light), np.sin(light)
    blob = np.clip(1 - r**2, 0, 1)
    shade = np.clip(
        1 - (np.hypot(yy - py + ly * radius * 0.9, xx - px + lx * radius * 0.9) / (radius * wobble)) ** 2, 0, 1
    )
    delta = rng.uniform(40, 80) * blob**0.7 - rng.uniform(25, 50) * np.clip(shade - blob, 0, 1)
    mask = _additive(bed, delta.astype(np.float32), int(y0), int(x0), ctx)
    if age >= 2 and rng.random() < 0.7:
        length = int(rng.uniform(15, 70) + 8 * age)
        ys = slice(int(py), min(s, int(py + length)))
        xs_lo, xs_hi = max(0, int(px - 3)), min(s, int(px + 4))
        stub = np.linspace(1, 0.3, ys.stop - ys.start, dtype=np.float32)[:, None] * rng.uniform(25, 50)
        stub = np.repeat(stub, xs_hi - xs_lo, 1) * np.hanning(xs_hi - xs_lo + 2)[1:-1][None, :].astype(np.float32)
        mask |= _additive(bed, stub, ys.start, xs_lo, ctx)
    return mask


def debris(event, bed, ctx, rng, age) -> np.ndarray:
    """Spatter and debris: a cluster of small bright and dark particles."""
    s = ctx.size
    cx, cy = rng.uniform(0.05, 0.95, 2) * s
    spread = rng.uniform(10, 50)
    n = int(rng.integers(8, 45))
    layer_rng = np.random.default_rng([event.seed, ctx.layer])
    px = np.clip(cx + layer_rng.normal(0, spread, n), 0, s - 1)
    py = np.clip(cy + layer_rng.normal(0, spread, n), 0, s - 1)
    delta = np.zeros(bed.shape, np.float32)
    for x, y in zip(px, py):
        value = float(layer_rng.uniform(40, 80) * layer_rng.choice([-1.2, 1.0]))
        cv2.circle(delta, (int(x), int(y)), int(layer_rng.uniform(1, 3.6)), value, -1, lineType=cv2.LINE_AA)
    return _additive(bed, delta, 0, 0, ctx)


def chatter(event, bed, ctx, rng, age) -> np.ndarray:
    """Recoater chatter: periodic bands across the bed, parallel to the blade (horizontal)."""
    s = ctx.size
    height = rng.uniform(0.2, 1.0) * s
    y0 = int(rng.uniform(0, s - height + 1))
    ys = np.arange(y0, int(y0 + height))
    period = rng.uniform(6, 26)
    amp = rng.uniform(7, 16)
    wave = (
        amp * np.sin(2 * np.pi * ys / period + rng.uniform(0, 6.3)) * (0.8 + 0.2 * smooth_noise(rng, len(ys), 4)[:, 0])
    )
    delta = np.repeat(wave[:, None].astype(np.float32), s, 1) * ctx.plate[ys].astype(np.float32)
    mask = _additive(bed, delta, int(y0), 0, ctx)
    band = np.zeros(bed.shape, bool)
    band[ys] = ctx.plate[ys].astype(bool)
    return band if mask.any() else mask


def _part_points(event: DefectEvent, ctx: LayerContext) -> np.ndarray | None:
    """Outline points (x, y) of the part a defect belongs to, as drawn in this layer."""
    ids = (ctx.part_ids == event.params["part"] + 1).astype(np.uint8)
    if not ids.any():
        return None
    contour = cv2.findContours(ids, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)[0]
    return np.concatenate(contour)[:, 0]


def _window(ctx: LayerContext, xs: np.ndarray, ys: np.ndarray, pad: float) -> tuple[int, int, int, int]:
    s = ctx.size
    x0, y0 = max(0, int(xs.min() - pad)), max(0, int(ys.min() - pad))
    x1, y1 = min(s, int(xs.max() + pad) + 1), min(s, int(ys.max() + pad) + 1)
    return y0, y1, x0, x1


def hole(event, bed, ctx, rng, age) -> np.ndarray:
    """Missing powder: a cluster of small dark spots (the rough layer below shows), shadowed on one side."""
    s = ctx.size
    inside = np.argwhere(ctx.plate > 0)
    cy, cx = inside[rng.integers(len(inside))]
    n = int(rng.integers(4, 32))
    spread = rng.uniform(4, 30)
    xs = np.clip(cx + rng.normal(0, spread, n), 0, s - 1)
    ys = np.clip(cy + rng.normal(0, spread, n), 0, s - 1)
    y0, y1, x0, x1 = _window(ctx, xs, ys, 10)
    delta = np.zeros((y1 - y0, x1 - x0), np.float32)
    light = rng.uniform(0, 2 * np.pi)
    for x, y in zip(xs - x0, ys - y0):
        r = rng.uniform(1.5, 5.0)
        depth = ctx.level * rng.uniform(0.22, 0.55)
        rim = (int(x - 0.8 * r * np.cos(light)), int(y - 0.8 * r * np.sin(light)))
        cv2.circle(delta, rim, int(round(r)), 0.3 * depth, -1, lineType=cv2.LINE_AA)
        cv2.circle(delta, (int(x), int(y)), int(round(r)), -depth, -1, lineType=cv2.LINE_AA)
    return _additive(bed, delta * ctx.plate[y0:y1, x0:x1], y0, x0, ctx)


def spatter(event, bed, ctx, rng, age) -> np.ndarray:
    """Spatter landed around a part: many small droplets, bright (oxidised, specular) and dark."""
    points = _part_points(event, ctx)
    if points is None:
        return np.zeros(bed.shape, bool)
    layer_rng = np.random.default_rng([event.seed, ctx.layer])
    n = int(rng.integers(40, 220))
    spread = rng.uniform(6, 40)
    base = points[layer_rng.integers(len(points), size=n)].astype(np.float32)
    angle = layer_rng.uniform(0, 2 * np.pi, n)
    dist = layer_rng.exponential(spread, n)
    xs = np.clip(base[:, 0] + dist * np.cos(angle), 0, ctx.size - 1)
    ys = np.clip(base[:, 1] + dist * np.sin(angle), 0, ctx.size - 1)
    y0, y1, x0, x1 = _window(ctx, xs, ys, 4)
    delta = np.zeros((y1 - y0, x1 - x0), np.float32)
    bright = layer_rng.random(n) < rng.uniform(0.4, 0.8)
    for x, y, b in zip(xs - x0, ys - y0, bright):
        value = layer_rng.uniform(45, 110) if b else -ctx.level * layer_rng.uniform(0.25, 0.5)
        cv2.circle(delta, (int(x), int(y)), int(layer_rng.integers(1, 3)), float(value), -1)
    return _additive(bed, delta * ctx.plate[y0:y1, x0:x1], y0, x0, ctx)


def spread_line(event, bed, ctx, rng, age) -> np.ndarray:
    """A part disturbed the spreading: a thin dark line across the recoater's travel (horizontal),
    leaving from the part's leading or trailing edge."""
    points = _part_points(event, ctx)
    if points is None:
        return np.zeros(bed.shape, bool)
    s = ctx.size
    y = float(points[:, 1].min() if rng.random() < 0.5 else points[:, 1].max()) + rng.uniform(-3, 3)
    left, right = float(points[:, 0].min()), float(points[:, 0].max())
    reach = rng.uniform(0.1, 0.8) * s
    x0, x1 = int(max(0, left - reach * rng.random())), int(min(s, right + reach * rng.random()))
    width = rng.uniform(0.8, 2.6)
    amp = -ctx.level * rng.uniform(0.15, 0.4)
    xs = np.arange(x0, x1)
    wobble = 1.2 * smooth_noise(rng, len(xs), 3)[0] if len(xs) > 3 else np.zeros(len(xs))
    ya = int(max(0, y - 4 * width - 3))
    yb = int(min(s, y + 4 * width + 4))
    if yb <= ya or x1 <= x0:
        return np.zeros(bed.shape, bool)
    d = np.arange(ya, yb)[:, None] - (y + wobble[None, :])
    along = np.clip(0.7 + 0.3 * smooth_noise(rng, len(xs), 5)[:1, :], 0.3, 1.0)
    taper = np.minimum(1.0, np.minimum(xs - x0 + 1, x1 - xs) / 12.0)[None, :]
    delta = amp * np.exp(-(d**2) / (2 * width**2)) * along * taper
    return _additive(bed, (delta * ctx.plate[ya:yb, x0:x1]).astype(np.float32), ya, x0, ctx)


def scratch(event, bed, ctx, rng, age) -> np.ndarray:
    """A damaged blade drags a broad dark column along its travel (vertical), the same place each layer."""
    s = ctx.size
    x = rng.uniform(0.05, 0.95) * s
    width = rng.uniform(6, 36)
    y_start = int(rng.uniform(0.0, 0.4) * s) if rng.random() < 0.5 else 0
    amp = -ctx.level * rng.uniform(0.1, 0.3) * (1.0 - 0.05 * age)
    xa, xb = max(0, int(x - width)), min(s, int(x + width) + 1)
    ys = np.arange(y_start, s)
    d = np.abs(np.arange(xa, xb)[None, :] - x) / (width / 2)
    profile = np.clip(1.5 - d, 0, 1) ** 1.5
    along = np.clip(0.75 + 0.3 * smooth_noise(rng, len(ys), 8)[:, :1], 0.3, 1.1)
    texture = 1 + 0.25 * cv2.GaussianBlur(rng.standard_normal((len(ys), xb - xa)).astype(np.float32), (0, 0), 1.5)
    delta = amp * profile * along * texture * ctx.plate[y_start:, xa:xb]
    return _additive(bed, delta.astype(np.float32), y_start, xa, ctx)


def ridge(event, bed, ctx, rng, age) -> np.ndarray:
    """A large raised region at a part's edge (a lifted part, powder swept off): ridges across the
    recoater's travel, lit on one side and shadowed on the other, standing proud of the powder."""
    points = _part_points(event, ctx)
    if points is None:
        return np.zeros(bed.shape, bool)
    s = ctx.size
    px, py = points[rng.integers(len(points))].astype(np.float32)
    radius = min(0.3 * s, rng.uniform(20, 70) + age * rng.uniform(4, 12))
    half = int(radius * 1.6 + 8)
    y0, y1, x0, x1 = max(0, int(py) - half), min(s, int(py) + half), max(0, int(px) - half), min(s, int(px) + half)
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    theta = np.arctan2(yy - py, xx - px)
    wobble = 1 + 0.25 * np.sin(2 * theta + rng.uniform(0, 6.3)) + 0.15 * np.sin(3 * theta + rng.uniform(0, 6.3))
    r = np.hypot(yy - py, xx - px) / (radius * wobble)
    envelope = np.clip(1.3 * (1 - r**2), 0, 1)
    if _breaks_through(event, ctx):
        return _breakthrough(bed, ctx, rng, envelope * ctx.plate[y0:y1, x0:x1], y0, x0, age)
    tilt = np.deg2rad(rng.uniform(-25, 25))
    period = rng.uniform(5, 14)
    bend = 2.5 * smooth_noise(rng, max(y1 - y0, x1 - x0), 3)[: y1 - y0, : x1 - x0]  # ridges are not ruled lines
    across = yy * np.cos(tilt) + xx * np.sin(tilt)
    ridges = 0.5 + 0.5 * np.sin(2 * np.pi * across / period + bend + rng.uniform(0, 6.3))
    height = envelope * (0.6 + 0.8 * ridges)
    gy, gx = np.gradient(cv2.GaussianBlur(height, (0, 0), 1.0))
    light = rng.uniform(0, 2 * np.pi)
    relief = (gx * np.cos(light) + gy * np.sin(light)) * period
    delta = rng.uniform(25, 60) * envelope + rng.uniform(20, 45) * relief
    shift = np.float32([[1, 0, -np.cos(light) * 0.2 * radius], [0, 1, -np.sin(light) * 0.2 * radius]])
    shadow = np.clip(cv2.warpAffine(envelope, shift, envelope.shape[::-1]) - envelope, 0, 1)
    delta -= ctx.level * rng.uniform(0.15, 0.35) * shadow
    return _additive(bed, (delta * ctx.plate[y0:y1, x0:x1]).astype(np.float32), y0, x0, ctx)


def _breaks_through(event: DefectEvent, ctx: LayerContext) -> bool:
    """Whether this super-elevation shows as the part's own top breaking through a recoated layer;
    drawn once per defect from its own generator, so builds without breakthroughs are unchanged."""
    return ctx.photo == "recoated" and np.random.default_rng([event.seed, 1]).random() < ctx.breakthrough


def _breakthrough(
    bed: np.ndarray, ctx: LayerContext, rng: np.random.Generator, alpha: np.ndarray, y0: int, x0: int, age: int
) -> np.ndarray:
    """A part standing above the fresh powder after recoating: its top is darker metal, rough where the
    blade tore across it, with a ragged edge where the powder thins out and a thin trail behind it."""
    h, w = alpha.shape
    noise = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), rng.uniform(0.8, 2.0))
    torn = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), sigmaX=0.7, sigmaY=4.0)
    rough = noise / (noise.std() + 1e-6) * rng.uniform(0.06, 0.16) + torn / (torn.std() + 1e-6) * 0.06
    top = ctx.level * (rng.uniform(0.35, 0.7) + rough)
    ragged = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), 2.0)
    cover = np.clip(1.6 * alpha + 0.8 * ragged / (ragged.std() + 1e-6) * alpha * (1 - alpha) - 0.2, 0, 1)
    field = np.maximum(ctx.field[y0 : y0 + h, x0 : x0 + w], 1e-3)
    mask = _additive(bed, ((top - bed[y0 : y0 + h, x0 : x0 + w] / field) * cover).astype(np.float32), y0, x0, ctx)
    rows = np.flatnonzero(cover.max(1) > 0.5)
    if age >= 1 and len(rows):  # less powder behind the part along the recoater's travel
        cols = np.flatnonzero(cover[rows[-1]] > 0.2)
        start, length = y0 + int(rows[-1]), int(rng.uniform(0.5, 2.0) * h)
        stop = min(ctx.size, start + length)
        left, right = x0 + int(cols[0]), x0 + int(cols[-1]) + 1
        if stop > start and right - left > 2:
            fade = np.linspace(1, 0, stop - start, dtype=np.float32)[:, None]
            trail = -ctx.level * rng.uniform(0.1, 0.25) * fade * np.hanning(right - left + 2)[1:-1][None, :]
            trail *= ctx.plate[start:stop, left:right]
            mask |= _additive(bed, trail.astype(np.float32), start, left, ctx)
    return mask


RENDERERS = {
    "streak": streak,
    "short_feed": short_feed,
    "swelling": swelling,
    "debris": debris,
    "chatter": chatter,
    "hole": hole,
    "spatter": spatter,
    "spread_line": spread_line,
    "scratch": scratch,
    "ridge": ridge,
}
