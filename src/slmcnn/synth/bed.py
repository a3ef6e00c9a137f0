"""The empty bed: illumination fall-off, powder grain, blade-parallel banding, the plate and its edge,
and, for frames that were not calibrated, the chamber walls and the parked recoater around the plate."""

from dataclasses import dataclass

import cv2
import numpy as np


def smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Low-frequency noise in [-1, 1]-ish: a coarse random grid resized smoothly to `size`."""
    grid = rng.standard_normal((cells, cells)).astype(np.float32)
    return cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)


@dataclass
class Camera:
    """Per-build camera and lighting, drawn once so that every layer of a build looks alike."""

    level: float
    centre: tuple[float, float]
    falloff: float
    gradient: tuple[float, float]
    field_seed: int
    grain: float
    grain_blur: float
    banding: float
    plate_margin: int
    plate_radius: int
    border_gain: float
    edge_line: float
    top_line: float
    gamma: float
    contrast: float
    blur: float
    perspective: float
    light_angle: float
    specks: int
    jpeg: int  # JPEG quality applied to the photo; 0: saved losslessly
    melt: float  # how much brighter than powder freshly melted part tops are, in gray levels
    walls: bool  # the chamber and recoater show around the plate (an uncalibrated frame)
    wall_level: float
    recoater_top: bool

    @classmethod
    def draw(cls, rng: np.random.Generator, size: int, ranges) -> "Camera":
        u = rng.uniform
        gradient, direction = u(*ranges.light_gradient), u(0, 2 * np.pi)
        walls = bool(rng.random() < ranges.walls_share)
        margin = u(0.06, 0.14) if walls else u(0.0, 0.03)
        return cls(
            level=u(*ranges.powder_level),
            centre=(u(0.3, 0.7) * size, u(0.3, 0.7) * size),
            falloff=u(*ranges.falloff),
            gradient=(gradient * np.cos(direction), gradient * np.sin(direction)),
            field_seed=int(rng.integers(2**31)),
            grain=u(*ranges.grain),
            grain_blur=u(0.5, 1.0),
            banding=u(*ranges.banding),
            plate_margin=int(margin * size),
            plate_radius=int(u(0.03, 0.1) * size),
            border_gain=u(0.78, 0.92),
            edge_line=u(-25, 20) * (rng.random() < 0.7),
            top_line=u(6, 18) * (rng.random() < 0.5),
            gamma=u(*ranges.gamma),
            contrast=u(*ranges.contrast),
            blur=u(*ranges.blur),
            perspective=u(0, ranges.perspective),
            light_angle=u(0, 2 * np.pi),
            specks=int(8000 * u(0, 1) ** 2),  # grains per layer: clean to densely speckled (about 1% of pixels)
            jpeg=int(u(*ranges.jpeg_quality)) if rng.random() < ranges.jpeg_share else 0,
            melt=u(*ranges.melt_brightness),
            walls=walls,
            wall_level=u(10, 70),
            recoater_top=bool(rng.random() < 0.5),
        )

    def illumination(self, size: int) -> np.ndarray:
        """Multiplicative light field: bright centre (or side), darker corners, slow variation."""
        coarse = max(8, size // 8)  # a smooth field: computed coarse, resized
        step = size / coarse
        yy, xx = (np.mgrid[0:coarse, 0:coarse].astype(np.float32) + 0.5) * step
        r2 = ((xx - self.centre[0]) ** 2 + (yy - self.centre[1]) ** 2) / (0.75 * size) ** 2
        field = 1.0 - self.falloff * r2
        field += self.gradient[0] * (xx / size - 0.5) + self.gradient[1] * (yy / size - 0.5)
        field = cv2.resize(field, (size, size), interpolation=cv2.INTER_LINEAR)
        field += 0.025 * smooth_noise(np.random.default_rng(self.field_seed), size, 4)
        return np.clip(field, 0.3, 1.2)

    def plate(self, size: int) -> np.ndarray:
        """1 on the build plate (a rounded square), 0 on the darker border around it."""
        plate = np.zeros((size, size), np.uint8)
        m, r = self.plate_margin, max(self.plate_radius, 1)
        if m == 0 and r < 4:
            plate[:] = 1
            return plate
        lo, hi = m, size - 1 - m
        cv2.rectangle(plate, (lo + r, lo), (hi - r, hi), 1, -1)
        cv2.rectangle(plate, (lo, lo + r), (hi, hi - r), 1, -1)
        for cx, cy in ((lo + r, lo + r), (hi - r, lo + r), (lo + r, hi - r), (hi - r, hi - r)):
            cv2.circle(plate, (cx, cy), r, 1, -1)
        return plate


def powder(rng: np.random.Generator, camera: Camera, size: int, field: np.ndarray, plate: np.ndarray) -> np.ndarray:
    """A freshly recoated bed in gray levels (float32), before parts and defects."""
    grain = cv2.GaussianBlur(rng.standard_normal((size, size)).astype(np.float32), (0, 0), camera.grain_blur)
    grain *= camera.grain / (grain.std() + 1e-6) * 1.15
    rows = np.cumsum(rng.standard_normal(size)).astype(np.float32)
    rows = rows - cv2.GaussianBlur(rows.reshape(-1, 1), (0, 0), 20).ravel()
    rows += rng.standard_normal(size).astype(np.float32) * 0.6
    rows *= camera.banding / (rows.std() + 1e-6)
    cols = rng.standard_normal(size).astype(np.float32)
    cols = cv2.GaussianBlur(cols.reshape(1, -1), (0, 0), 4).ravel()
    cols *= 0.5 * camera.banding / (cols.std() + 1e-6)
    bed = camera.level + grain + rows[:, None] + cols[None, :]
    # Isolated bright (reflective) and dark grains are normal powder, unlike clustered spatter. Their
    # density belongs to the camera and powder: one build's layers differ by at most 20%.
    count = int(camera.specks * rng.uniform(0.8, 1.2))
    ys, xs = rng.integers(0, size - 1, count), rng.integers(0, size - 1, count)
    value = rng.uniform(15, 60, count) * np.where(rng.random(count) < 0.8, 1.0, -0.7)
    bed[ys, xs] += value
    wide = rng.random(count) < 0.3  # some grains cover 2x2 pixels
    for dy, dx in ((0, 1), (1, 0), (1, 1)):
        bed[ys[wide] + dy, xs[wide] + dx] += value[wide]
    if camera.top_line:
        y = int(0.02 * size + rng.integers(0, int(0.05 * size) + 1))
        bed[y : y + 2] += camera.top_line
    bed *= field
    border = plate == 0
    if border.any():
        bed[border] *= camera.border_gain
        edge = cv2.morphologyEx(plate, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)).astype(bool)
        bed[edge] += camera.edge_line
    if camera.walls:
        outside = walls_mask(camera, size)
        bed[outside] = walls(rng, camera, size, field)[outside]
    return bed


def walls_mask(camera: Camera, size: int) -> np.ndarray:
    """Where the chamber shows: beyond a powder border of a few percent around the plate."""
    if not camera.walls:
        return np.zeros((size, size), bool)
    inset = max(1, camera.plate_margin - int(0.035 * size))
    outside = np.ones((size, size), bool)
    outside[inset:-inset, inset:-inset] = False
    return outside


def walls(rng: np.random.Generator, camera: Camera, size: int, field: np.ndarray) -> np.ndarray:
    """Dark machined metal with a few bright edges, and the recoater parked across one end."""
    level = camera.wall_level
    wall = level + 0.25 * level * smooth_noise(rng, size, 6) + rng.normal(0, 2.0, (size, size)).astype(np.float32)
    inset = max(1, camera.plate_margin - int(0.035 * size))
    for _ in range(3):  # edges of the chamber's steps and slots catch the light
        k = int(rng.integers(0, inset))
        value = rng.uniform(20, 90)
        wall[k, :] += value
        wall[:, k] += value
        wall[size - 1 - k, :] += value
        wall[:, size - 1 - k] += value
    bar = max(4, int(inset * rng.uniform(0.5, 0.9)))
    rows = slice(0, bar) if camera.recoater_top else slice(size - bar, size)
    profile = np.linspace(0, np.pi, bar, dtype=np.float32)
    wall[rows] = (rng.uniform(90, 190) * np.clip(np.sin(profile), 0, 1) ** 0.5)[:, None] + rng.normal(0, 3, (bar, size))
    return wall * (0.6 + 0.4 * field)
