"""Per-build adaptation: a build's own first layers are the best reference there is.

A camera profile knows the session it learned from; the next build brings another exposure, other
parts, a photo after the laser pass, and a model with or without a profile then calls a fifth of
its sound tiles Error (measured on cameras the project never saw). So the first `layers` layers of
each build are learned into a build memory on top of the camera profile (without one, the build
memory alone), tile by tile, as `calibrate --update` would with them, and later layers are judged
against camera + build:

- The first layers are judged by the camera profile alone (without one, by the network alone) and
  reported as `learning`. A tile of them that the camera profile calls clearly anomalous (anomaly
  over CLEAR times its layer's level) is not learned, nor one that stays a sure Error of the
  network (`profile.decision.SURE`: the camera's good layers did not look so at its place, or
  there is no camera), nor one that stands out of the build's other first layers (left-out score
  over OUTLIER_MADS robust deviations above theirs), nor a whole layer unlike the others (a covered
  lens): a defect present from the first layers must not become normal. Each such tile is reported
  (`not_learned`), and the log has one line per layer naming them.
- Once the first layers are in, the memory holds the camera's good tiles and theirs (coreset
  again), standardised by the build's own feature statistics, with thresholds fitted on the first
  layers' left-out scores (as `profile.update_profile` fits a camera's). A camera tile that is one
  of the first layers' own (the camera was calibrated on this build's photos) counts as that
  layer's, so that it is left out with it: otherwise every left-out score is 0 and so is every
  threshold.
- Later layers keep teaching it (parts grow, the light drifts): every tile decided sound, not
  called Error by the network and not sharing an edge with a tile decided Error, joins the memory;
  a tile judged Error never does.

The trade, measured in benchmarks/bench_adapt.py: a defect is seen when its tile stands out of
the build's own sound tiles as far as the profile's thresholds ask; one that creeps in over many
layers by steps each under the threshold is learned as it goes.
"""

import logging
from dataclasses import dataclass, field

import numpy as np
import torch

from slmcnn.profile import (
    CORESET,
    ERROR,
    ERROR_THRESHOLD,
    FOREIGN,
    CameraProfile,
    ProfileError,
    beside,
    empty_profile,
    extend_profile,
    greedy_coreset,
    layer_level,
    nearest_distance,
    thresholds_from_scores,
)
from slmcnn.profile.decision import SURE

log = logging.getLogger(__name__)
CLEAR = 2.0  # camera anomaly over this times the layer's level: a defect, not learned
OUTLIER_MADS = 8.0  # a first-layer tile this far above the others' left-out scores is not learned
# The network's Error stands where the anomaly is this many good tiles' (typical): 0.5 with the
# camera profiles it was measured on (typical 0.17); a build memory's thresholds are tighter
# (typical 0.3-0.65), where 0.5 kept 2.3% of sound tiles Error (benchmarks/bench_adapt.py).
CONFIRM_TYPICAL = 3.0
LEARN_CAP = 2 * CORESET  # memory entries kept before the coreset thins them again
# Standardised feature distance under which a camera tile is a first-layer tile itself: one photo
# comes back within 0.02 (the distance's rounding), distinct tiles lie 5 or more apart (384 features).
DUPLICATE = 0.5
CLEARLY = "clearly anomalous to the camera profile"
SURELY = f"a sure Error of the network (P >= {SURE:g})"


@dataclass
class Adaptation:
    """Where one layer stands in its build's adaptation."""

    state: str  # "learning" (one of the first layers, judged without the build) or "adapted"
    layer: int  # its place in the build, from 1
    layers: int  # how many first layers are learned
    not_learned: list[dict] = field(default_factory=list)  # {"layer", "tile", "why"}; on the last first layer

    def to_json(self) -> dict:
        return {"state": self.state, "layer": self.layer, "layers": self.layers, "not_learned": self.not_learned}


class BuildMemory:
    """One build's reference: the camera profile (or nothing) and what this build's sound tiles look like."""

    def __init__(
        self,
        camera: CameraProfile | None,
        layers: int,
        model: torch.nn.Module,
        precision: str,
    ):
        """`layers`: the first layers learned, as camera.Camera checked them (without a camera
        profile at least constants.MIN_LAYERS_ALONE)."""
        self.camera, self.layers, self.model, self.precision = camera, layers, model, precision
        self.reset()

    def reset(self) -> None:
        """A new build: forget the last one's layers."""
        self.adapted: CameraProfile | None = None
        self.seen = 0
        self._features: list[np.ndarray] = []
        self._names: list[str] = []
        self._skip: list[np.ndarray] = []  # per first layer and tile: why it is not learned ("": learned)
        self._grid: tuple[int, int] | None = None

    def judge(
        self,
        probabilities: np.ndarray,
        features: np.ndarray,
        grid_shape: tuple[int, int],
        name: str = "",
        confirm: float | None = None,
        error_threshold: float | None = None,
        learn: bool = True,
    ) -> tuple[np.ndarray, np.ndarray | None, Adaptation]:
        """The decided probabilities, the tiles' anomaly (None while the network judges alone) and
        the layer's place in the adaptation; learns from the layer unless `learn` is False (a photo
        judged against the build, not part of it)."""
        grid_shape = tuple(grid_shape)
        if self._grid is not None and grid_shape != self._grid:
            raise ProfileError(
                f"{name}: a layer of {grid_shape[0]}x{grid_shape[1]} tiles, the build's first layers had "
                f"{self._grid[0]}x{self._grid[1]}: one build is one camera and one frame size"
            )
        self._grid = grid_shape
        self.seen += 1
        info = Adaptation("adapted" if self.adapted is not None else "learning", self.seen, self.layers)
        if self.adapted is not None:
            sensitivity = self._sensitivity(error_threshold)
            anomaly = self.adapted.distances(features) / (self.adapted.thresholds * sensitivity)
            typical = self.adapted.typical / sensitivity
            confirm = min(CONFIRM_TYPICAL * typical, 1.0) if confirm is None else confirm
            scores = self.adapted.decide_anomaly(
                probabilities, anomaly, confirm, typical, self.adapted.seen / sensitivity
            )
            if learn:
                self._learn(features, scores.classes, scores.network, grid_shape)
            else:
                self.seen -= 1
            return scores.probabilities, anomaly.astype(np.float32), info
        if self.camera is not None:
            scores = self.camera.decide_tiles(probabilities, self.camera.distances(features), confirm, error_threshold)
            decided, anomaly = scores.probabilities, scores.anomaly.astype(np.float32)
            level = layer_level(anomaly, self.camera.typical / self._sensitivity(error_threshold))
            skip = np.where(anomaly > CLEAR * level, CLEARLY, "").astype(object)
        else:
            decided, anomaly, skip = probabilities, None, np.full(len(probabilities), "", object)
        if not learn:
            self.seen -= 1
            return decided, anomaly, info
        sure = (decided.argmax(1) == ERROR) & (probabilities[:, ERROR] >= SURE)
        skip[(skip == "") & sure] = SURELY + (", kept by the camera profile" if self.camera is not None else "")
        self._features.append(features)
        self._names.append(name)
        self._skip.append(skip)
        if len(self._features) == self.layers:
            info.not_learned = self._adapt(grid_shape)
        return decided, anomaly, info

    def _sensitivity(self, error_threshold: float | None) -> float:
        if error_threshold is not None:
            return error_threshold
        return self.camera.error_threshold if self.camera is not None else ERROR_THRESHOLD

    def _adapt(self, grid_shape: tuple[int, int]) -> list[dict]:
        """Learn the first layers into the build memory; the tiles left out, and why. The memory
        holds the camera profile's good tiles and the build's, standardised by the build's own
        feature statistics, and its thresholds come from the build's left-out scores alone:
        standardised by the camera profile's good layers, a session of another exposure or gain
        spread so differently that its thresholds came out twice as wide (benchmarks/bench_adapt.py)."""
        features = np.stack(self._features)
        why = np.stack(self._skip)
        keep = why == ""
        patch = self.model.spec.patch
        frame_shape = (grid_shape[0] * patch, grid_shape[1] * patch)  # of the tiles; the memory straightens nothing
        base = empty_profile(features, grid_shape, self.model, None, frame_shape, self.precision)
        if self.camera is not None:  # the camera's good tiles stay in the memory, in the build's units
            raw = self.camera.memory * self.camera.scale + self.camera.mean
            base.memory = base.standardise(raw)
            base.memory_frame = own_frames(base.memory, base.standardise(features), -1 - self.camera.memory_frame)
        scores = extend_profile(base, features, keep).left_out
        medians = np.median(scores, axis=1)
        for i, median in enumerate(medians):
            others = np.delete(medians, i)
            if len(others) and median > FOREIGN * np.median(others):
                keep[i], why[i] = False, "its layer looks unlike the build's other first layers"
        kept = scores[keep]
        centre = float(np.median(kept)) if len(kept) else 0.0
        spread = 1.4826 * float(np.median(np.abs(kept - centre))) if len(kept) else 0.0
        outliers = keep & (scores > centre + OUTLIER_MADS * spread)
        keep &= ~outliers
        why[outliers] = "unlike the build's other first layers"
        if keep.sum(1).astype(bool).sum() < 2:
            raise ProfileError("the build's first layers could not be learned: are they photos of one camera?")
        adapted = extend_profile(base, features, keep)
        adapted.left_out = adapted.left_out[keep.any(1)]
        adapted.thresholds, found = thresholds_from_scores(adapted.left_out)
        adapted.meta.update(found)
        self.adapted = adapted
        not_learned = [
            {"layer": self._names[i], "tile": int(t), "why": str(why[i, t])} for i, t in zip(*np.nonzero(~keep))
        ]
        told = [
            f"{name or f'layer {i + 1}'}: {not_learned_line(why[i], keep[i])}"
            for i, name in enumerate(self._names)
            if not keep[i].all()
        ]
        if told:  # one line a build, however many layers left tiles out
            log.warning(
                "build memory: %d of the first %d layers' %d tiles not learned (each layer's JSON: not_learned): %s",
                int((~keep).sum()), self.layers, keep.size, "; ".join(told),
            )  # fmt: skip
        log.info(
            "build memory: learned %d of the first %d layers' %d tiles; later layers are judged against %s",
            int(keep.sum()), self.layers, keep.size, "the camera and this build" if self.camera else "this build",
        )  # fmt: skip
        self._features, self._skip = [], []
        return not_learned

    def _learn(self, features: np.ndarray, classes: np.ndarray, network: np.ndarray, grid_shape) -> None:
        """Tiles decided sound, that the network did not call Error either and not beside an Error,
        join the memory; thinned by the coreset when it grows. A vetoed network Error is not
        learned: a scratch lasting 15 layers would otherwise be normal from its second layer on
        (on the same-session synthetic builds 56% of defect tiles were found learning them, 59% not)."""
        error = (classes == ERROR).reshape(grid_shape)
        sound = ~(error | beside(error)).ravel() & (network != ERROR)
        if not sound.any():
            return
        memory = self.adapted
        standard = memory.standardise(features[sound])
        points = np.concatenate([memory.memory, standard.reshape(-1, standard.shape[-1])])
        frame_of = np.concatenate(
            [memory.memory_frame, np.full(len(points) - len(memory.memory), -self.seen, np.int32)]
        )
        if len(points) > LEARN_CAP:
            chosen = greedy_coreset(torch.from_numpy(points), memory.meta.get("coreset", CORESET)).numpy()
            points, frame_of = points[chosen], frame_of[chosen]
        memory.memory, memory.memory_frame = points, frame_of.astype(np.int32)


def own_frames(memory: np.ndarray, features: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """`frames` (the memory entries' frame ids), except that an entry within DUPLICATE of a tile of
    the (layers, tiles, locations, D) standardised `features` gets that layer's index."""
    out = np.asarray(frames, np.int32).copy()
    if not len(memory):
        return out
    points = features.reshape(len(features), -1, features.shape[-1])
    distance = np.stack([nearest_distance(memory, layer) for layer in points])  # (layers, entries)
    nearest = distance.argmin(0)
    own = distance[nearest, np.arange(len(memory))] <= DUPLICATE
    out[own] = nearest[own]
    return out


def not_learned_line(why: np.ndarray, keep: np.ndarray) -> str:
    """One layer's tiles left out of the build memory, by reason: '2 of 9 tiles: sure Error (tiles 2, 4)'."""
    tiles = np.flatnonzero(~keep)
    parts = [
        f"{reason} (tile{'s' if (why[tiles] == reason).sum() > 1 else ''} "
        f"{', '.join(str(t) for t in tiles[why[tiles] == reason])})"
        for reason in dict.fromkeys(why[tiles])
    ]
    return f"{len(tiles)} of {len(keep)} tiles: {', '.join(parts)}"
