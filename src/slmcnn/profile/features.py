"""What the camera profile is made of: the network's own features of each tile (FeatureNet), read
from good frames; the coreset that keeps a memory small and the nearest-neighbour distance to it."""

import functools
from collections.abc import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from slmcnn import images as image_io
from slmcnn.backends.pytorch import TorchBackend
from slmcnn.camera import CameraCalibration
from slmcnn.errors import ProfileError
from slmcnn.tiles import tile

TAPS = (3, 4)  # feature maps after these blocks (1-based): mid-level texture, then larger structures
GRID = 1  # feature locations per tile side: 1, the tile mean, measured best (profile/__init__.py)
SCALE_FLOOR = 0.1  # a feature's standardising spread is at least this share of the median spread


class FeatureNet:
    """One pass of the network: class probabilities and per-location features of each tile.

    Features: the maps after blocks 3 and 4 (the engine's `tile_maps`, on its device), the first
    average-pooled to the second's size, concatenated, averaged over 3x3 neighbourhoods (PatchCore's
    local context) and pooled to GRID x GRID locations per tile."""

    def __init__(
        self,
        model: torch.nn.Module,
        grid: int = GRID,
        precision: str = "auto",
        batch: int = 32,
        device: "str | torch.device" = "cpu",
    ):
        self.network = TorchBackend(model, precision, device=device)
        self.grid, self.precision, self.batch = grid, self.network.precision, batch

    @torch.inference_mode()
    def __call__(self, patches: np.ndarray, probabilities: bool = True) -> tuple[np.ndarray | None, np.ndarray]:
        """(tiles, classes) probabilities (None when not asked for) and (tiles, GRID*GRID, D) features."""
        probs, feats = [], []
        for start in range(0, len(patches), self.batch):
            (mid, deep), chunk_probs = self.network.tile_maps(patches[start : start + self.batch], TAPS, probabilities)
            probs.append(chunk_probs)
            mid = F.adaptive_avg_pool2d(mid, deep.shape[-2:])
            maps = torch.cat([mid, deep], 1)
            maps = F.avg_pool2d(maps, 3, 1, 1, count_include_pad=False)
            maps = F.adaptive_avg_pool2d(maps, self.grid)
            feats.append(maps.flatten(2).transpose(1, 2).contiguous().cpu().numpy())
        width = feats[0].shape[2] if feats else 0
        features = np.concatenate(feats) if feats else np.zeros((0, self.grid**2, width), np.float32)
        return (np.concatenate(probs) if probabilities else None), features


def greedy_coreset(points: torch.Tensor, size: int, seed: int = 0) -> torch.Tensor:
    """Indices of `size` points chosen farthest-first (k-centre greedy) in a random projection to at
    most 128 dimensions, as PatchCore: the memory covers every kind of tile, not only the common ones.
    Each step is one matrix-vector product (|p|^2 - 2 p.c + |c|^2)."""
    if len(points) <= size:
        return torch.arange(len(points))
    generator = torch.Generator().manual_seed(seed)
    if points.shape[1] > 128:
        points = points @ (torch.randn(points.shape[1], 128, generator=generator) / 128**0.5)
    norms = (points**2).sum(1)
    chosen = torch.empty(size, dtype=torch.long)
    chosen[0] = int(torch.randint(len(points), (1,), generator=generator))
    nearest = torch.full((len(points),), float("inf"))
    step = torch.empty(len(points))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 0.3 ms per step instead of 3 ms: the steps are too small to share
    try:
        for i in range(1, size):
            c = chosen[i - 1]
            torch.mv(points, points[c], out=step)
            torch.minimum(nearest, norms - 2 * step + norms[c], out=nearest)
            chosen[i] = nearest.argmax()
    finally:
        torch.set_num_threads(threads)
    return chosen


def nearest_distance(queries: np.ndarray, memory: np.ndarray, chunk: int = 128) -> np.ndarray:
    """Euclidean distance from each query row to its nearest memory row."""
    keys = torch.from_numpy(memory)
    q = torch.from_numpy(queries)
    # the largest q.k - |k|^2 / 2 = (|q|^2 - distance^2) / 2 over the keys: one product with the
    # bias fused, reduced by amax (no indices), |q|^2 added after
    half_norms = (keys**2).sum(1) * -0.5
    largest = torch.empty(len(queries))
    product = fused_product()
    for start in range(0, len(queries), chunk):
        torch.amax(product(q[start : start + chunk], keys, half_norms), 1, out=largest[start : start + chunk])
    return ((q**2).sum(1) - 2 * largest).clamp_min(0).sqrt().numpy()


@functools.cache
def fused_product():
    """rows @ keys.T + bias: oneDNN's fp32 product, which runs AVX-512 on AMD CPUs where MKL's
    sgemm takes a generic path (2x the search's speed on a 2-core EPYC, the same sums to the bit
    there: benchmarks/README.md); PyTorch's own where this build has no oneDNN."""
    try:
        fused = torch.ops.mkldnn._linear_pointwise
        fused(torch.ones(1, 2), torch.ones(3, 2), torch.zeros(3), "none", [], "")
    except (AttributeError, RuntimeError, NotImplementedError):
        return F.linear
    return lambda rows, keys, bias: fused(rows, keys, bias, "none", [], "")


def feature_scale(flat: np.ndarray) -> np.ndarray:
    """Each feature's spread over the good tiles, floored at SCALE_FLOOR of the median spread: a
    channel that never fired on the good layers (std 0) would otherwise turn a faint activation
    on a new one into a huge distance; such a dead channel still counts where it truly fires."""
    std = flat.std(0)
    return np.maximum(std, SCALE_FLOOR * float(np.median(std)) + 1e-6)


def _frame_arrays(frames: Iterable) -> Iterable[tuple[str, np.ndarray]]:
    for i, frame in enumerate(frames):
        if isinstance(frame, np.ndarray):
            yield f"frame {i + 1}", frame
        else:
            yield str(frame), image_io.read(frame)


def _progress(enabled: bool):
    from contextlib import nullcontext

    from rich.progress import Progress

    return Progress(transient=True) if enabled else nullcontext()


def frame_features(
    frames: Sequence, calibration: CameraCalibration | None, net: FeatureNet, patch: int, frame_shape, progress: bool
) -> tuple[tuple[int, int], tuple[int, int], np.ndarray]:
    """(frame shape, grid shape, features (frames, positions, L, D)) of good frames."""
    feats, grid_shape = [], None
    with _progress(progress) as bar:
        task = bar.add_task("camera profile: good frames", total=len(frames)) if bar else None
        for name, frame in _frame_arrays(frames):
            frame = image_io.to_uint8(frame)
            if frame_shape is None:
                frame_shape = frame.shape[:2]
            if frame.shape[:2] != tuple(frame_shape):
                raise ProfileError(
                    f"{name} is {frame.shape[1]}x{frame.shape[0]} px, the other frames "
                    f"{frame_shape[1]}x{frame_shape[0]} px: one profile is one camera, give frames of one size"
                )
            image = calibration.warp(frame) if calibration else frame
            grid = tile(image, patch)
            grid_shape = grid.shape
            feats.append(net(grid.patches, probabilities=False)[1])
            if bar:
                bar.advance(task)
    return tuple(frame_shape), grid_shape, np.stack(feats)
