"""The camera profile itself (CameraProfile): the memory bank of good tiles, its per-position
thresholds, and how it is learned from good frames, extended and scored against."""

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from slmcnn import images as image_io
from slmcnn.camera import CameraCalibration
from slmcnn.checkpoint import model_hash
from slmcnn.constants import __version__
from slmcnn.errors import ProfileError
from slmcnn.profile.decision import (
    CONFIRM,
    ERROR_THRESHOLD,
    SEEN_MARGIN,
    TileScores,
    decide,
    on_top,
    tail_probability,
    thresholds_from_scores,
)
from slmcnn.profile.features import (
    GRID,
    TAPS,
    FeatureNet,
    feature_scale,
    frame_features,
    greedy_coreset,
    nearest_distance,
)
from slmcnn.tiles import tile

MIN_FRAMES = 4
CORESET = 4096  # memory entries kept at most
FOLDS = 10  # leave-some-out folds over frames
# A good frame's typical tile lies within 1.5x of the others' (PBLM, synthetic builds with parts;
# models v7 and v8), a blank frame's (a covered lens) at 3.0-3.1x: 3.0 missed it with v8.
FOREIGN = 2.5


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

    @property
    def seen(self) -> np.ndarray:
        """(positions,) the anomaly up to which a tile looked the same as the learned layers' tiles
        at its place: SEEN_MARGIN times the largest left-out anomaly there (`decide` lets the
        network's sure Error stand above it)."""
        return (SEEN_MARGIN * (self.left_out / self.thresholds[None, :]).max(0)).astype(np.float32)

    def straighten(self, frame: np.ndarray) -> np.ndarray:
        """The image the profile's tiles are cut from, checked against the profile's frame size."""
        if frame.shape[:2] != tuple(self.frame_shape):
            raise ProfileError(
                f"frame is {frame.shape[1]}x{frame.shape[0]} px, the camera profile was built from "
                f"{self.frame_shape[1]}x{self.frame_shape[0]} px frames"
            )
        return self.calibration.warp(frame) if self.calibration else frame

    def feature_net(self, model: torch.nn.Module, device: "str | torch.device" = "cpu") -> FeatureNet:
        """The network pass for this profile on `device`, after checking that `model` is the one it
        was built with."""
        key = (id(model), str(device))
        if key not in self._nets:
            digest = model_hash(model)
            if digest != self.model["sha256"]:
                raise ProfileError(
                    f"the camera profile was built with another model ({self.model['arch']} "
                    f"{self.model['sha256'][:12]}, this one is {digest[:12]}); rebuild it with slmcnn calibrate (the good frames it was built from, with this model)"
                )
            precision = self.meta.get("precision", "fp32")
            precision = "bf16" if precision == "bf16" else "fp32"
            self._nets[key] = FeatureNet(model, self.meta.get("grid", GRID), precision, device=device)
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
        return self.decide_anomaly(probabilities, anomaly, confirm, self.typical / sensitivity, self.seen / sensitivity)

    def decide_anomaly(
        self,
        probabilities: np.ndarray,
        anomaly: np.ndarray,
        confirm: float | None = None,
        typical: float | None = None,
        seen: np.ndarray | None = None,
    ) -> TileScores:
        """A layer's decision (`decide`) from the network's probabilities and the tiles' anomaly;
        `typical` and `seen` in the anomaly's units (default: at sensitivity 1)."""
        confirm = self.meta.get("confirm", CONFIRM) if confirm is None else confirm
        typical = self.typical if typical is None else typical
        seen = self.seen if seen is None else seen
        grid_shape = tuple(self.grid_shape)
        classes = decide(probabilities, anomaly, confirm, grid_shape=grid_shape, typical=typical, seen=seen)
        return TileScores(anomaly, classes, on_top(probabilities, classes), probabilities.argmax(1))

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
    device: "str | torch.device" = "auto",
) -> CameraProfile:
    """Learn a camera from good frames (paths or arrays): raw frames straightened by `calibration`,
    or full frames when it is None; `error_threshold` is stored as its sensitivity. Frames given as
    files are listed in it, so that a new model can learn them again (the app's "make current").
    `device`: where the network reads the frames (precision.resolve_device)."""
    _check_frames(len(frames))
    started = time.perf_counter()
    net = FeatureNet(model, grid, precision, device=device)
    frame_shape, grid_shape, features = frame_features(frames, calibration, net, model.spec.patch, None, progress)
    profile = profile_from_features(features, grid_shape, model, calibration, frame_shape, net.precision, coreset, seed)
    profile.meta["seconds"] = round(time.perf_counter() - started, 2)
    if all(isinstance(f, str | Path) for f in frames):
        profile.meta["good_frames"] = [str(Path(f).resolve()) for f in frames]
    if error_threshold is not None:
        profile.meta["error_threshold"] = error_threshold
    return profile


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
    _, grid_shape, features = frame_features(
        frames, profile.calibration, net, profile.patch, profile.frame_shape, progress
    )
    if grid_shape != tuple(profile.grid_shape):
        raise ProfileError(f"new frames give {grid_shape} tiles, the profile has {tuple(profile.grid_shape)}")
    updated = extend_profile(profile, features)
    _set_thresholds(updated)
    updated.meta["seconds"] = round(profile.meta.get("seconds", 0) + time.perf_counter() - started, 2)
    return updated
