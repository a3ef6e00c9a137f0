"""The camera profile: what this camera's good layers look like, learned without labels.

A shop has hundreds of good layers and no labels. From N good frames (straightened by a
CameraCalibration, or full frames) the profile keeps the network's own features of every tile (the
maps after blocks 3 and 4, averaged over the tile), standardised by this camera's feature
statistics, in a memory bank (PatchCore; greedy coreset subsampling keeps at most CORESET entries).
A tile's anomaly is its distance to the nearest memory entry divided by its position's threshold:
above 1 it looks unlike every tile of the good layers.

Chosen by measurement with model v3 (benchmarks/bench_profile.py, figures in benchmarks/README.md),
re-measured with v5, v6, v7 and v8 (shipped now; benchmarks/README.md). PBLM, 10 No_Defect
photos profiled, the 11 other distinct good photos and 150 photos of each large defect folder; a
photo is flagged when it has an Error tile after `decide`; AUROC of the photo score (v3 / v5, v5
with the decision rules below):

    normality model                            good flagged  Powder_Uneven  other folders  AUROC
    network alone (no profile)                 45% / 9%      23% / 99%      97-100% / 100% 0.774 / 0.999
    tile mean, nearest neighbour (this)        9% / 9%       79% / 99%      100% / 100%    1.000 / 1.000
    16 locations per tile, largest distance    18% / 27%     42% / 100%     83-90% / 97%+  0.886 / 0.986
    PaDiM-style Gaussian per tile position     100% / 100%   100% / 100%    100% / 100%    1.000 / 1.000

The profile decides with the network (`decide`), by rules each measured on PBLM and on a synthetic
camera style the network never saw (20 layers profiled; v5):
- The network's Errors that the profile does not confirm (anomaly under `confirm`) are vetoed:
  Error tiles on other sound layers of the unseen style fall from 19 to 0 per 1,000.
- unless they share an edge with a tile that is Error by the profile's rules: defects reach over
  neighbouring tiles, while the network's false Errors on sound layers of an unseen camera are
  lone tiles alike the good ones. Of 288 true Error tiles on layers with defects the network
  finds 124 (26 false); with the veto alone 114 (12 false), with this rule 127 (17 false).
- A tile the network calls Powder is Error when its anomaly is over 1 and over its layer's level
  (`layer_level`: the layer's median anomaly over a good layer's): a layer that is farther from
  the good ones as a whole has changed its look (exposure, gain), not grown a defect everywhere.
  PBLM's good photos 0015-0017 are markedly grainier than the first 10 (a gain change: their
  typical tile 1.9x as far from the memory, 3-6 tiles over 1 each); with this rule 1 of the 11
  other good photos is flagged (by the network's own Error), without it 3. It costs 2 of the
  127 synthetic defect tiles (a defect must stand out of a grainier layer as much as of a good
  one). Widening the memory with jittered copies of the good frames instead (grain, blur, JPEG,
  gamma) cleared those photos but lost clear defects (a dark hole's anomaly fell from 2.0 to
  0.8-1.1), so it is not done.
- The powder beside a tile the network calls Object is left to the network: a part the good
  layers never showed changes the powder next to it (its edge reaching in, its shadow). Profiled
  from part-free layers, sound layers with parts got 36 Error tiles in 1,080 with the profile,
  21 without it (the network's own); with this rule 21, and no defect tile is lost.

Thresholds come from the good frames themselves: each frame is scored against a memory without its
own entries (leave-one-out over frame folds), an exponential tail is fitted to the largest of these
scores (peaks over threshold), and the global threshold is set where the tail predicts
`TARGET_FALSE_TILES` false tiles per layer, at most 1 false Error tile in 100 sound layers. Fixed
marks of the plate or camera that the memory does not explain (positions whose typical left-out
score is far above the others') get their own threshold, `MARK_MARGIN` above the largest left-out
score seen there; a mark that is alike in every good frame is in the memory and never stands out.
The estimate is stored with the thresholds.

The profile learns the camera, not the parts: it only decides Powder tiles and confirms or vetoes
the network's Error calls; a tile the network calls Object stays Object (`decide`). In a layer
pipeline `ProfileBackend` runs the network once for classes and features and decides each layer
once all its tiles are classified, so the profile itself costs only the nearest-neighbour search.

A profile is data: camera.json (geometry + metadata) and camera.profile.safetensors (arrays) beside
it; loading never unpickles, and a profile is tied to the weights it was built with (sha256).
"""

import hashlib
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from slmcnn import images as image_io
from slmcnn.camera import CameraCalibration
from slmcnn.checkpoint import model_hash
from slmcnn.constants import ERROR, OBJECT, POWDER, __version__
from slmcnn.errors import SlmcnnError
from slmcnn.folding import for_evaluation
from slmcnn.preprocess import prepare
from slmcnn.tiles import tile

FORMAT = "slmcnn-camera-profile"
FORMAT_VERSION = 1
MIN_FRAMES = 4
TAPS = (3, 4)  # feature maps after these blocks (1-based): mid-level texture, then larger structures
GRID = 1  # feature locations per tile side: 1, the tile mean, measured best (module docstring)
CORESET = 4096  # memory entries kept at most
FOLDS = 10  # leave-some-out folds over frames
TARGET_FALSE_TILES = 0.01  # expected false Error tiles per sound layer: 1 in 100 layers
TAIL_QUANTILE = 0.9  # the tail fit uses the scores above this quantile
TAIL_CONFIDENCE = 0.95
MARK_MARGIN = 1.25
MARK_MADS = 5.0
# A good frame's typical tile lies within 1.5x of the others' (PBLM, synthetic builds with parts;
# models v7 and v8), a blank frame's (a covered lens) at 3.0-3.1x: 3.0 missed it with v8.
FOREIGN = 2.5
SCALE_FLOOR = 0.1  # a feature's standardising spread is at least this share of the median spread
CONFIRM = 0.5  # the network's Error stays Error where the anomaly is above this (module docstring)
ERROR_THRESHOLD = 1.0  # default sensitivity: anomaly over the fitted threshold (calibrate --error-threshold)
OBJECT_ERROR = 1.01  # an anomalous Object tile is Error from this Error probability: never


class ProfileError(SlmcnnError):
    """A camera profile that cannot be built or used: too few or mismatched frames, a corrupt or
    foreign profile file, a profile built with another model."""


def _bf16() -> bool:
    from slmcnn.precision import bf16_supported

    return bf16_supported()


class FeatureNet:
    """One pass of the network: class probabilities and per-location features of each tile.

    Features: the maps after blocks 3 and 4, the first average-pooled to the second's size,
    concatenated, averaged over 3x3 neighbourhoods (PatchCore's local context) and pooled to
    GRID x GRID locations per tile."""

    def __init__(self, model: torch.nn.Module, grid: int = GRID, precision: str = "auto", batch: int = 32):
        self.net = for_evaluation(model.eval().to(memory_format=torch.channels_last))
        self.grid = grid
        self.bf16 = precision == "bf16" or (precision == "auto" and _bf16())
        self.precision = "bf16" if self.bf16 else "fp32"
        self.batch = batch

    @torch.inference_mode()
    def __call__(self, patches: np.ndarray, probabilities: bool = True) -> tuple[np.ndarray | None, np.ndarray]:
        """(tiles, classes) probabilities (None when not asked for) and (tiles, GRID*GRID, D) features."""
        probs, feats = [], []
        first, second = TAPS
        for start in range(0, len(patches), self.batch):
            x = prepare(patches[start : start + self.batch])
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
                mid = self.net.blocks(x, 0, first)
                deep = self.net.blocks(mid, first, second)
                if probabilities:
                    logits = self.net.head(torch.flatten(self.net.blocks(deep, second), 1))
                    probs.append(torch.softmax(logits.float(), 1).numpy())
            mid = F.adaptive_avg_pool2d(mid.float(), deep.shape[-2:])
            maps = torch.cat([mid, deep.float()], 1)
            maps = F.avg_pool2d(maps, 3, 1, 1, count_include_pad=False)
            maps = F.adaptive_avg_pool2d(maps, self.grid)
            feats.append(maps.flatten(2).transpose(1, 2).contiguous().numpy())
        width = feats[0].shape[2] if feats else 0
        features = np.concatenate(feats) if feats else np.zeros((0, self.grid**2, width), np.float32)
        return (np.concatenate(probs) if probabilities else None), features


@dataclass
class TileScores:
    """What the profile says about the tiles of one layer (row-major)."""

    anomaly: np.ndarray  # (tiles,) distance / threshold of the position: above 1 is unlike the good layers
    classes: np.ndarray  # (tiles,) the decided class (`decide`)
    probabilities: np.ndarray  # (tiles, classes): the network's, or the decided class on top where it changed
    network: np.ndarray  # (tiles,) the network's own class

    @property
    def score(self) -> float:
        """Per-photo anomaly: the largest tile anomaly."""
        return float(self.anomaly.max()) if len(self.anomaly) else 0.0


def decide(
    probabilities: np.ndarray,
    anomaly: np.ndarray,
    confirm: float = CONFIRM,
    object_error: float = OBJECT_ERROR,
    grid_shape: tuple[int, int] | None = None,
    typical: float | None = None,
    part_surroundings: bool = False,
) -> np.ndarray:
    """Error where the network calls Powder and the tile is anomalous (anomaly > 1), or where the
    network calls Error and the anomaly confirms it (> `confirm`), or, with the layer's
    `grid_shape`, where the network calls Error beside (sharing an edge with) a tile that is Error
    by those rules: defects reach over neighbouring tiles, a lone unconfirmed Error is this
    camera's look. An Error the profile does not keep becomes the better of Powder and Object. A
    tile the network calls Object stays Object, unless it is anomalous and the network gives Error
    at least `object_error`: parts the good layers never showed are not errors. Nor, unless
    `part_surroundings`, is the powder around them (with `grid_shape`): a Powder tile beside one
    the network calls Object is Error only by the network's own call, as a part the good layers
    never showed changes the powder next to it (its edge reaching in, its shadow).

    With `typical`, the median tile anomaly of a good layer (`CameraProfile.typical`), a tile
    the network calls Powder must also stand out of its own layer: where the layer's median
    anomaly is above `typical`, the whole layer is farther from the good ones (an exposure or
    gain change) and the anomaly it takes is raised by that ratio (`layer_level`)."""
    network = probabilities.argmax(1)
    fallback = probabilities[:, :ERROR].argmax(1)
    raised = (network == POWDER) | ((network == OBJECT) & (probabilities[:, ERROR] >= object_error))
    if grid_shape is not None and not part_surroundings:
        raised &= ~((network == POWDER) & _beside((network == OBJECT).reshape(grid_shape)).ravel())
    level = 1.0 if typical is None else layer_level(anomaly, typical)
    sure = ((network == ERROR) & (anomaly > confirm)) | (raised & (anomaly > level))
    kept = sure
    if grid_shape is not None:
        kept = sure | ((network == ERROR) & _beside(sure.reshape(grid_shape)).ravel())
    return np.where(kept, ERROR, np.where(network == ERROR, fallback, network))


def layer_level(anomaly: np.ndarray, typical: float) -> float:
    """How much farther than a good layer this layer's tiles are, as a whole: its median anomaly
    over the good layers' `typical`, never below 1."""
    return max(1.0, float(np.median(anomaly)) / typical) if len(anomaly) and typical > 0 else 1.0


def _beside(mask: np.ndarray) -> np.ndarray:
    """Cells sharing an edge with a True cell of a 2-D mask."""
    out = np.zeros_like(mask)
    out[1:] |= mask[:-1]
    out[:-1] |= mask[1:]
    out[:, 1:] |= mask[:, :-1]
    out[:, :-1] |= mask[:, 1:]
    return out


def _on_top(probabilities: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """The network's probabilities, except that a changed tile's decided class gets the top value."""
    out = probabilities.copy()
    rows = np.flatnonzero(probabilities.argmax(1) != classes)
    out[rows, classes[rows]] = probabilities[rows].max(1) + 1e-3
    out[rows] /= out[rows].sum(1, keepdims=True)
    return out


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


def nearest_distance(queries: np.ndarray, memory: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """Euclidean distance from each query row to its nearest memory row."""
    keys = torch.from_numpy(memory)
    key_norms = (keys**2).sum(1)
    out = []
    for start in range(0, len(queries), chunk):
        q = torch.from_numpy(queries[start : start + chunk])
        d2 = (q**2).sum(1, keepdim=True) + key_norms[None, :] - 2 * q @ keys.T
        out.append(d2.min(1).values.clamp_min(0).sqrt().numpy())
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def tail_fit(scores: np.ndarray) -> tuple[float, float, float]:
    """(u, q, beta): the scores above u (share q) fitted by an exponential tail whose mean excess
    beta is the upper 95% confidence bound (n * mean / beta is Gamma(n)-distributed): with few good
    frames the tail is uncertain, and an underestimated tail means false alarms."""
    from scipy.stats import gamma

    u = float(np.quantile(scores, TAIL_QUANTILE))
    excess = scores[scores > u] - u
    if not len(excess):
        return u, 0.0, 1e-6
    beta = float(excess.mean()) * len(excess) / float(gamma.ppf(1 - TAIL_CONFIDENCE, len(excess)))
    return u, float(len(excess) / len(scores)), max(beta, 1e-6)


def tail_probability(fit: tuple[float, float, float], threshold: np.ndarray) -> np.ndarray:
    u, q, beta = fit
    return q * np.exp(-(np.asarray(threshold) - u) / beta)


def thresholds_from_scores(left_out: np.ndarray) -> tuple[np.ndarray, dict]:
    """Per-position thresholds and the false-alarm estimate from (frames, positions) left-out scores.

    Fixed marks are positions whose median left-out score lies far above the other positions'
    (MARK_MADS robust deviations, and above the 90% quantile of all scores): something is there in
    most good frames. They get MARK_MARGIN above their largest left-out score. The tail is fitted
    on the other positions; their threshold is where it predicts TARGET_FALSE_TILES per layer, and
    never below one of their left-out scores (with few frames the tail is uncertain)."""
    frames, positions = left_out.shape
    medians = np.median(left_out, axis=0)
    centre = np.median(medians)
    spread = 1.4826 * np.median(np.abs(medians - centre)) + 1e-6
    marks = np.flatnonzero((medians > centre + MARK_MADS * spread) & (medians > np.quantile(left_out, TAIL_QUANTILE)))
    others = np.delete(left_out, marks, axis=1)
    fit = tail_fit(others.ravel())
    u, q, beta = fit
    tail = u + beta * np.log(max(q * positions / TARGET_FALSE_TILES, 1.0))
    threshold = max(tail, float(others.max()))
    thresholds = np.full(positions, threshold, np.float32)
    thresholds[marks] = np.maximum(MARK_MARGIN * left_out[:, marks].max(0), threshold)
    estimate = {
        "false_error_tiles_per_100_layers": round(float(100 * tail_probability(fit, thresholds).sum()), 4),
        "left_out_tiles_over": int((left_out > thresholds[None, :]).sum()),
        "left_out_layers": int(frames),
        "tail": {"u": u, "q": q, "beta": beta, "threshold": float(tail)},
    }
    return thresholds, {"threshold": float(threshold), "marks": marks.tolist(), "estimate": estimate}


@dataclass
class CameraProfile:
    """A camera's geometry (None: full frames) and what its good layers look like."""

    calibration: CameraCalibration | None
    frame_shape: tuple[int, int]  # raw frame height, width
    grid_shape: tuple[int, int]  # tile rows, cols of the (straightened) image
    patch: int
    model: dict  # arch, sha256
    mean: np.ndarray  # (D,) feature mean over the good frames
    scale: np.ndarray  # (D,) feature standard deviation
    memory: np.ndarray  # (M, D) standardised features
    memory_frame: np.ndarray  # (M,) the good frame each entry came from
    left_out: np.ndarray  # (frames, positions) tile scores against the memory without that frame
    thresholds: np.ndarray  # (positions,)
    meta: dict = field(default_factory=dict)  # threshold, marks, estimate, precision, grid, timings
    _nets: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def frames(self) -> int:
        return int(self.left_out.shape[0])

    @property
    def positions(self) -> int:
        return self.grid_shape[0] * self.grid_shape[1]

    @property
    def typical(self) -> float:
        """The median tile anomaly of a good layer: the median over the good frames of their
        left-out tiles' median anomaly (`decide` measures a layer's level against it)."""
        return float(np.median(np.median(self.left_out / self.thresholds[None, :], axis=1)))

    def straighten(self, frame: np.ndarray) -> np.ndarray:
        """The image the profile's tiles are cut from, checked against the profile's frame size."""
        if frame.shape[:2] != tuple(self.frame_shape):
            raise ProfileError(
                f"frame is {frame.shape[1]}x{frame.shape[0]} px, the camera profile was built from "
                f"{self.frame_shape[1]}x{self.frame_shape[0]} px frames"
            )
        return self.calibration.warp(frame) if self.calibration else frame

    def feature_net(self, model: torch.nn.Module) -> FeatureNet:
        """The network pass for this profile, after checking that `model` is the one it was built with."""
        key = id(model)
        if key not in self._nets:
            digest = model_hash(model)
            if digest != self.model["sha256"]:
                raise ProfileError(
                    f"the camera profile was built with another model ({self.model['arch']} "
                    f"{self.model['sha256'][:12]}, this one is {digest[:12]}); rebuild it with slmcnn calibrate (the good frames it was built from, with this model)"
                )
            precision = self.meta.get("precision", "fp32")
            self._nets[key] = FeatureNet(model, self.meta.get("grid", GRID), "bf16" if precision == "bf16" else "fp32")
        return self._nets[key]

    def standardise(self, features: np.ndarray) -> np.ndarray:
        """Features in the memory's units: centred and scaled by the good frames' statistics."""
        return ((features - self.mean) / self.scale).astype(np.float32)

    def distances(self, features: np.ndarray, exclude_frames: Sequence[int] = ()) -> np.ndarray:
        """(tiles,) raw score: the largest nearest-memory distance over each tile's locations."""
        memory = self.memory
        if len(exclude_frames):
            memory = memory[~np.isin(self.memory_frame, exclude_frames)]
        queries = self.standardise(features)
        return nearest_distance(queries.reshape(-1, queries.shape[-1]), memory).reshape(len(features), -1).max(1)

    def score(
        self,
        patches: np.ndarray,
        model: torch.nn.Module,
        probabilities: np.ndarray | None = None,
        confirm: float | None = None,
    ) -> TileScores:
        """Score the tiles of one straightened layer (row-major, stride = patch). Without
        `probabilities` the network runs once for both classes and features."""
        if len(patches) != self.positions:
            raise ProfileError(
                f"a layer of {len(patches)} tiles, the camera profile has {self.positions} "
                f"({self.grid_shape[0]}x{self.grid_shape[1]} tiles of {self.patch} px, stride = patch)"
            )
        probs, features = self.feature_net(model)(patches, probabilities=probabilities is None)
        return self.score_features(probs if probabilities is None else probabilities, features, confirm)

    def score_features(
        self, probabilities: np.ndarray, features: np.ndarray, confirm: float | None = None
    ) -> TileScores:
        """Score the tiles of a layer whose features (`FeatureNet`) are known already."""
        return self.decide_tiles(probabilities, self.distances(features), confirm)

    @property
    def error_threshold(self) -> float:
        """The camera's sensitivity: a tile's distance is over its threshold times this (1.0 unless
        `calibrate --error-threshold` stored another)."""
        return float(self.meta.get("error_threshold", ERROR_THRESHOLD))

    def decide_tiles(
        self,
        probabilities: np.ndarray,
        distance: np.ndarray,
        confirm: float | None = None,
        error_threshold: float | None = None,
    ) -> TileScores:
        """A layer's decision (`decide`) from the network's probabilities and the tiles' distances,
        at `error_threshold` (default: the camera's): above 1 fewer alarms and more misses."""
        sensitivity = self.error_threshold if error_threshold is None else error_threshold
        anomaly = distance / (self.thresholds * sensitivity)
        return self.decide_anomaly(probabilities, anomaly, confirm, self.typical / sensitivity)

    def decide_anomaly(
        self, probabilities: np.ndarray, anomaly: np.ndarray, confirm: float | None = None, typical: float | None = None
    ) -> TileScores:
        """A layer's decision (`decide`) from the network's probabilities and the tiles' anomaly."""
        confirm = self.meta.get("confirm", CONFIRM) if confirm is None else confirm
        typical = self.typical if typical is None else typical
        classes = decide(probabilities, anomaly, confirm, grid_shape=tuple(self.grid_shape), typical=typical)
        return TileScores(anomaly, classes, _on_top(probabilities, classes), probabilities.argmax(1))

    def expected_false_tiles(self, error_threshold: float | None = None) -> float:
        """Expected false Error tiles per 100 sound layers of this camera at a sensitivity, from the
        tail fitted to the good frames' left-out scores (the figure `--help` and calibrate print)."""
        tail = self.meta["estimate"]["tail"]
        sensitivity = self.error_threshold if error_threshold is None else error_threshold
        fit = (tail["u"], tail["q"], tail["beta"])
        return float(100 * tail_probability(fit, self.thresholds * sensitivity).sum())

    def score_frame(self, frame: np.ndarray, model: torch.nn.Module, **kwargs) -> TileScores:
        """Score a raw frame: straighten, tile, score."""
        return self.score(tile(image_io.to_uint8(self.straighten(frame)), self.patch).patches, model, **kwargs)

    def summary(self) -> str:
        estimate = self.meta["estimate"]
        return (
            f"camera profile from {self.frames} good frames: {self.positions} tile positions, "
            f"{len(self.memory)} memory entries, {len(self.meta['marks'])} fixed marks; expected false "
            f"Error tiles per 100 sound layers {estimate['false_error_tiles_per_100_layers']:.2f} "
            f"(left-out good tiles over threshold: {estimate['left_out_tiles_over']} of "
            f"{self.left_out.size})"
        )


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


def _extract(
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


def _left_out(profile: CameraProfile, features: np.ndarray, frame_ids: np.ndarray) -> np.ndarray:
    """Score each frame against the memory without its fold's entries."""
    folds = np.array_split(np.arange(len(frame_ids)), min(FOLDS, len(frame_ids)))
    scores = np.zeros((len(frame_ids), features.shape[1]), np.float32)
    for fold in folds:
        held = frame_ids[fold]
        flat = features[fold].reshape(-1, *features.shape[2:])
        scores[fold] = profile.distances(flat, held).reshape(len(fold), -1)
    return scores


def _check_frames(names: int, minimum: int = MIN_FRAMES) -> None:
    if names < minimum:
        raise ProfileError(
            f"a camera profile needs at least {minimum} good frames (got {names}); 10-50 good layers are best"
        )


def _check_consistent(left_out: np.ndarray, first: int = 0) -> None:
    """A frame whose typical tile is more than FOREIGN times as far from the memory as the other
    frames' typical tiles is not a good layer of this camera."""
    medians = np.median(left_out, axis=1)
    for i, median in enumerate(medians):
        others = np.delete(medians, i)
        if len(others) and median > FOREIGN * np.median(others):
            raise ProfileError(
                f"good frame {first + i + 1}: most of its tiles look unlike the other frames' tiles; "
                "is it from another camera, or not a good layer?"
            )


def build_profile(
    frames: Sequence,
    calibration: CameraCalibration | None,
    model: torch.nn.Module,
    *,
    coreset: int = CORESET,
    grid: int = GRID,
    precision: str = "auto",
    progress: bool = False,
    seed: int = 0,
    error_threshold: float | None = None,
) -> CameraProfile:
    """Learn a camera from good frames (paths or arrays): raw frames straightened by `calibration`,
    or full frames when it is None; `error_threshold` is stored as its sensitivity. Frames given as
    files are listed in it, so that a new model can learn them again (the app's "make current")."""
    _check_frames(len(frames))
    started = time.perf_counter()
    net = FeatureNet(model, grid, precision)
    frame_shape, grid_shape, features = _extract(frames, calibration, net, model.spec.patch, None, progress)
    profile = profile_from_features(features, grid_shape, model, calibration, frame_shape, net.precision, coreset, seed)
    profile.meta["seconds"] = round(time.perf_counter() - started, 2)
    if all(isinstance(f, str | Path) for f in frames):
        profile.meta["good_frames"] = [str(Path(f).resolve()) for f in frames]
    if error_threshold is not None:
        profile.meta["error_threshold"] = error_threshold
    return profile


def feature_scale(flat: np.ndarray) -> np.ndarray:
    """Each feature's spread over the good tiles, floored at SCALE_FLOOR of the median spread: a
    channel that never fired on the good layers (std 0) would otherwise turn a faint activation
    on a new one into a huge distance; such a dead channel still counts where it truly fires."""
    std = flat.std(0)
    return np.maximum(std, SCALE_FLOOR * float(np.median(std)) + 1e-6)


def profile_from_features(
    features: np.ndarray,
    grid_shape: tuple[int, int],
    model: torch.nn.Module,
    calibration: CameraCalibration | None,
    frame_shape: tuple[int, int],
    precision: str,
    coreset: int = CORESET,
    seed: int = 0,
) -> CameraProfile:
    """The profile of good frames whose (frames, tiles, locations, D) `FeatureNet` features are
    known, with its thresholds."""
    profile = empty_profile(features, grid_shape, model, calibration, frame_shape, precision, coreset)
    profile = extend_profile(profile, features, seed=seed)
    _set_thresholds(profile)
    return profile


def empty_profile(
    features: np.ndarray,
    grid_shape: tuple[int, int],
    model: torch.nn.Module,
    calibration: CameraCalibration | None,
    frame_shape: tuple[int, int],
    precision: str,
    coreset: int = CORESET,
) -> CameraProfile:
    """A profile with the feature standardisation of these (frames, tiles, locations, D) features
    and nothing in its memory yet (`extend_profile` fills it)."""
    rows, cols = grid_shape
    flat = features.reshape(-1, features.shape[-1])
    return CameraProfile(
        calibration,
        tuple(frame_shape),
        (rows, cols),
        model.spec.patch,
        {"arch": getattr(model, "arch", type(model).__name__), "sha256": model_hash(model)},
        flat.mean(0).astype(np.float32),
        feature_scale(flat).astype(np.float32),
        np.zeros((0, flat.shape[1]), np.float32),
        np.zeros(0, np.int32),
        np.zeros((0, rows * cols), np.float32),
        np.zeros(rows * cols, np.float32),
        {
            "precision": precision,
            "grid": round(features.shape[2] ** 0.5),
            "coreset": coreset,
            "confirm": CONFIRM,
            "taps": list(TAPS),
        },
    )


def extend_profile(
    profile: CameraProfile, features: np.ndarray, keep: np.ndarray | None = None, seed: int = 0
) -> CameraProfile:
    """A copy of the profile with more good frames: the `keep` tiles ((frames, tiles) mask, default
    all) of their (frames, tiles, locations, D) features join the memory (coreset again), and each
    frame is scored against the memory without its fold. A tile left out of the memory (a defect)
    counts as its frame's median kept tile in the left-out scores, so it cannot raise the
    thresholds. The feature standardisation is kept, so earlier left-out scores stay valid; the
    thresholds are the caller's to fit again (`_set_thresholds`)."""
    first, count = profile.frames, len(features)
    keep = np.ones(features.shape[:2], bool) if keep is None else keep
    ids = np.arange(first, first + count)
    standard = profile.standardise(features)
    points = np.concatenate([profile.memory, standard[keep].reshape(-1, standard.shape[-1])])
    tile_frame = np.broadcast_to(ids[:, None], keep.shape)[keep]
    frame_of = np.concatenate([profile.memory_frame, np.repeat(tile_frame, features.shape[2])])
    chosen = greedy_coreset(torch.from_numpy(points), profile.meta.get("coreset", CORESET), seed).numpy()
    updated = replace(profile, memory=points[chosen], memory_frame=frame_of[chosen].astype(np.int32), _nets={})
    updated.meta = dict(profile.meta)
    scores = _left_out(updated, features, ids)
    typical = np.array([np.median(row[k]) if k.any() else 0.0 for row, k in zip(scores, keep)], np.float32)
    updated.left_out = np.concatenate([profile.left_out, np.where(keep, scores, typical[:, None])])
    return updated


def _set_thresholds(profile: CameraProfile) -> None:
    _check_consistent(profile.left_out)
    profile.thresholds, found = thresholds_from_scores(profile.left_out)
    profile.meta.update(found, created_with=__version__)


def update_profile(
    profile: CameraProfile, frames: Sequence, model: torch.nn.Module, *, progress: bool = False
) -> CameraProfile:
    """Add good frames to a profile: their features join the memory (coreset again), they are scored
    leaving their own fold out, and the thresholds are fitted again on all left-out scores. The
    feature standardisation of the first build is kept, so earlier left-out scores stay valid."""
    started = time.perf_counter()
    net = profile.feature_net(model)
    _, grid_shape, features = _extract(frames, profile.calibration, net, profile.patch, profile.frame_shape, progress)
    if grid_shape != tuple(profile.grid_shape):
        raise ProfileError(f"new frames give {grid_shape} tiles, the profile has {tuple(profile.grid_shape)}")
    updated = extend_profile(profile, features)
    _set_thresholds(updated)
    updated.meta["seconds"] = round(profile.meta.get("seconds", 0) + time.perf_counter() - started, 2)
    return updated


def update_camera(path: str | Path, frames: Sequence, model: torch.nn.Module, progress: bool = False) -> CameraProfile:
    """`calibrate --update`: add good frames to the profile in camera.json and write both files again."""
    calibration, profile = load_camera(path)
    if profile is None:
        raise ProfileError(f"{path} has no camera profile to update; build one from several good frames")
    profile = update_profile(profile, frames, model, progress=progress)
    save_camera(path, calibration, profile, force=True)
    return profile


ARRAYS = ("mean", "scale", "memory", "memory_frame", "left_out", "thresholds")


def arrays_path(json_path: str | Path) -> Path:
    path = Path(json_path)
    return path.with_name(path.stem + ".profile.safetensors")


def save_camera(
    path: str | Path, calibration: CameraCalibration | None, profile: CameraProfile | None, force: bool = False
) -> Path:
    """Write camera.json (geometry, or full frame, plus the profile's metadata) and, with a profile,
    camera.profile.safetensors beside it. An existing file is only replaced with `force`."""
    from safetensors.numpy import save

    from slmcnn.files import write_bytes, write_text

    path = Path(path)
    for target in (path, arrays_path(path)) if profile is not None else (path,):
        if target.exists() and not force:
            raise ProfileError(f"{target} exists; pass `force` to replace it")
    if profile is not None and calibration != profile.calibration:
        raise ProfileError("the profile was built with another calibration than the one to save with it")
    doc = calibration.to_json() if calibration else {"full_frame": True}
    if profile is not None:
        tensors = {name: np.ascontiguousarray(getattr(profile, name)) for name in ARRAYS}
        target = arrays_path(path)
        data = save(tensors, metadata={"format": FORMAT, "format_version": str(FORMAT_VERSION)})
        write_bytes(target, data)  # whole or not at all, like camera.json below
        doc["profile"] = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "arrays": target.name,
            "arrays_sha256": hashlib.sha256(data).hexdigest(),
            "model": profile.model,
            "frames": profile.frames,
            "frame_shape": list(profile.frame_shape),
            "grid_shape": list(profile.grid_shape),
            "patch": profile.patch,
            **profile.meta,
        }
    write_text(path, json.dumps(doc, indent=2))
    return path


def load_camera(path: str | Path) -> tuple[CameraCalibration | None, CameraProfile | None]:
    """Read camera.json: the geometry (None for full frames) and the profile, if it has one."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise ProfileError(f"{path}: no such camera file") from None
    except (OSError, ValueError) as exc:
        raise ProfileError(f"{path}: not a camera file ({exc})") from None
    if not isinstance(doc, dict):
        raise ProfileError(f"{path}: not a camera file")
    meta = doc.pop("profile", None)
    calibration = None
    if not doc.pop("full_frame", False):
        try:
            calibration = CameraCalibration(**doc)
        except TypeError as exc:
            raise ProfileError(f"{path}: not a camera calibration ({exc})") from None
    return calibration, (_load_profile(path, calibration, meta) if meta is not None else None)


def _load_profile(path: Path, calibration: CameraCalibration | None, meta: dict) -> CameraProfile:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ProfileError(f"{path}: its profile is not an slmcnn camera profile")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ProfileError(
            f"{path}: camera profile format {meta.get('format_version')}, this slmcnn ({__version__}) reads "
            f"format {FORMAT_VERSION}; rebuild it with slmcnn calibrate"
        )
    target = path.with_name(str(meta.get("arrays", "")))
    if not target.is_file():
        raise ProfileError(f"{path}: its profile arrays {target.name} are missing")
    if hashlib.sha256(target.read_bytes()).hexdigest() != meta.get("arrays_sha256"):
        raise ProfileError(f"{target} does not belong to {path} (changed or from another profile)")
    try:
        arrays = load_file(str(target))
        meta = dict(meta)
        fixed = {k: meta.pop(k) for k in ("model", "frame_shape", "grid_shape", "patch")}
        for k in ("format", "format_version", "arrays", "arrays_sha256", "frames"):
            meta.pop(k, None)
        profile = CameraProfile(
            calibration,
            tuple(fixed["frame_shape"]),
            tuple(fixed["grid_shape"]),
            int(fixed["patch"]),
            dict(fixed["model"]),
            *(arrays[name] for name in ARRAYS),
            meta=meta,
        )
    except (SafetensorError, OSError, KeyError, TypeError, ValueError) as exc:
        raise ProfileError(f"{path}: corrupt camera profile ({type(exc).__name__}: {exc})") from None
    if profile.thresholds.shape != (profile.positions,) or profile.memory.shape[1] != profile.mean.shape[0]:
        raise ProfileError(f"{path}: corrupt camera profile (arrays of the wrong shape)")
    return profile
