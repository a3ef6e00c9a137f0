"""Cut images into patches and stitch per-tile results back into per-pixel maps, without per-tile loops.

Tiles start every `stride` pixels. When a side is not a multiple of the stride, one extra tile is
placed flush with the far edge, so every pixel is covered and nothing is cropped; that last tile
overlaps its neighbour. Where tiles overlap, a pixel takes the mean probability of all covering tiles.
"""

from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from slmcnn.errors import SettingsError


def tile_starts(length: int, patch: int, stride: int) -> np.ndarray:
    """Start offsets along one side: every stride, plus one flush with the end if needed."""
    if patch > length:
        raise SettingsError(f"image side {length} px is smaller than one patch ({patch} px)")
    if stride < 1 or patch < 1:
        raise SettingsError("patch and stride must be positive")
    starts = np.arange(0, length - patch + 1, stride)
    if starts[-1] + patch < length:
        starts = np.append(starts, length - patch)
    return starts


@dataclass(frozen=True)
class TileGeometry:
    """Where the tiles of an image are: row and column origins, image size, tile size and step."""

    ys: np.ndarray
    xs: np.ndarray
    height: int
    width: int
    patch: int
    stride: int

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.ys), len(self.xs)

    @property
    def count(self) -> int:
        return len(self.ys) * len(self.xs)

    def to_json(self) -> dict:
        return {
            "width": self.width,
            "height": self.height,
            "patch": self.patch,
            "stride": self.stride,
            "ys": self.ys.tolist(),
            "xs": self.xs.tolist(),
        }

    @classmethod
    def from_json(cls, doc: dict) -> "TileGeometry":
        return cls(np.array(doc["ys"]), np.array(doc["xs"]), doc["height"], doc["width"], doc["patch"], doc["stride"])


def geometry(height: int, width: int, patch: int = 128, stride: int | None = None) -> TileGeometry:
    """The tile layout of an image of this size."""
    stride = stride or patch
    return TileGeometry(
        tile_starts(height, patch, stride), tile_starts(width, patch, stride), height, width, patch, stride
    )


def cut(image: np.ndarray, where: TileGeometry) -> np.ndarray:
    """The (tiles, patch, patch, C) patches of an HxWxC image at `where`, row-major: one gather from
    a window view, which copies each patch once (25x faster than gathering rows, then columns)."""
    p = where.patch
    windows = sliding_window_view(image, (p, p), axis=(0, 1))  # (H-p+1, W-p+1, C, p, p), a view
    patches = windows[where.ys[:, None], where.xs[None, :]].transpose(0, 1, 3, 4, 2)
    return np.ascontiguousarray(patches).reshape(-1, p, p, image.shape[2])


def strips(image: np.ndarray, where: TileGeometry, max_tiles: int) -> Iterator[np.ndarray]:
    """The patches of `cut(image, where)` in order, a strip of whole tile rows (at most `max_tiles`
    tiles, at least one row) at a time: memory bounded by the strip, not the photo."""
    rows = max(1, max_tiles // len(where.xs))
    for start in range(0, len(where.ys), rows):
        yield cut(image, replace(where, ys=where.ys[start : start + rows]))


@dataclass
class TileGrid:
    """Patches of one image and where they came from (`geometry`)."""

    patches: np.ndarray  # (rows*cols, patch, patch, 3), row-major
    geometry: TileGeometry

    def __getattr__(self, name: str):  # ys, xs, height, width, patch, stride, shape, count
        if name == "geometry":
            raise AttributeError(name)
        return getattr(self.geometry, name)


def tile(image: np.ndarray, patch: int = 128, stride: int | None = None) -> TileGrid:
    """Cut an HxWxC image into a row-major grid of patches."""
    where = geometry(image.shape[0], image.shape[1], patch, stride)
    return TileGrid(cut(image, where), where)


def coverage(starts: np.ndarray, patch: int, length: int) -> np.ndarray:
    """(length, tiles) matrix: 1 where a tile covers a pixel position."""
    pos = np.arange(length)[:, None]
    return ((pos >= starts[None, :]) & (pos < starts[None, :] + patch)).astype(np.float32)


def stitch(grid: TileGeometry | TileGrid, values: np.ndarray) -> np.ndarray:
    """Per-tile vectors (rows*cols, K) -> per-pixel mean over covering tiles (H, W, K)."""
    rows, cols = grid.shape
    per_tile = values.reshape(rows, cols, -1).astype(np.float32)
    cover_y = coverage(grid.ys, grid.patch, grid.height)
    cover_x = coverage(grid.xs, grid.patch, grid.width)
    summed = np.einsum("yr,rck,xc->yxk", cover_y, per_tile, cover_x, optimize=True)
    counts = cover_y.sum(1)[:, None] * cover_x.sum(1)[None, :]
    return summed / counts[:, :, None]


def runs(starts: np.ndarray, patch: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel positions along one side fall into runs covered by the same tiles, bounded by where
    tiles start and end: the (runs, tiles) coverage of each run and its length in pixels."""
    bounds = np.unique(np.concatenate([[0], starts, np.minimum(starts + patch, length)]))
    bounds = bounds[bounds < length]
    return coverage(starts, patch, length)[bounds], np.diff(np.append(bounds, length))


def stitch_classes(grid: TileGeometry | TileGrid, probabilities: np.ndarray) -> np.ndarray:
    """Per-pixel class (H, W) uint8: the argmax of the mean probability of the tiles covering a pixel.

    Pixels covered by the same tiles get the same class, and the rows (columns) of an image fall
    into few runs covered alike (`runs`: one per tile, two where tiles overlap), so each run of rows
    x run of columns is classified once and repeated over its pixels: an 8000x8000 photo costs one
    uint8 map, not (H, W, classes) floats."""
    row_runs, row_lengths = runs(grid.ys, grid.patch, grid.height)
    col_runs, col_lengths = runs(grid.xs, grid.patch, grid.width)
    rows, cols = grid.shape
    per_tile = probabilities.reshape(rows, cols, -1).astype(np.float32).transpose(2, 0, 1)  # (K, rows, cols)
    summed = row_runs @ per_tile @ col_runs.T  # (K, row runs, col runs)
    counts = row_runs.sum(1)[:, None] * col_runs.sum(1)[None, :]
    classes = (summed / counts).argmax(0).astype(np.uint8)
    return np.repeat(np.repeat(classes, row_lengths, 0), col_lengths, 1)


def stitch_maps(grid: TileGeometry | TileGrid, maps: np.ndarray) -> np.ndarray:
    """Per-tile pixel maps (rows*cols, p, p) -> one (H, W) map, the mean where tiles overlap."""
    rows, cols = grid.shape
    offsets = np.arange(grid.patch)
    row_index = np.repeat(grid.ys, cols)[:, None, None] + offsets[None, :, None]
    col_index = np.tile(grid.xs, rows)[:, None, None] + offsets[None, None, :]
    total = np.zeros((grid.height, grid.width), np.float32)
    counts = np.zeros_like(total)
    np.add.at(total, (row_index, col_index), maps.reshape(-1, grid.patch, grid.patch))
    np.add.at(counts, (row_index, col_index), 1.0)
    return total / np.maximum(counts, 1)


def tile_values(values: np.ndarray, grid: TileGeometry, shape: tuple[int, int]) -> np.ndarray:
    """(H, W) float32: each pixel the value of the last tile covering it (`values` per tile, row-major)."""
    out = np.zeros(shape, np.float32)
    for k, value in enumerate(np.ravel(values)):
        r, c = divmod(k, grid.shape[1])
        out[int(grid.ys[r]) : int(grid.ys[r]) + grid.patch, int(grid.xs[c]) : int(grid.xs[c]) + grid.patch] = value
    return out


def tile_mask(tiles: np.ndarray, grid: TileGeometry, shape: tuple[int, int]) -> np.ndarray:
    """(H, W) bool: the pixels of the tiles where `tiles` (per tile, row-major or rows x cols) is True."""
    out = np.zeros(shape, bool)
    for k in np.flatnonzero(tiles):
        r, c = divmod(int(k), grid.shape[1])
        y, x = int(grid.ys[r]), int(grid.xs[c])
        out[y : y + grid.patch, x : x + grid.patch] = True
    return out
