"""How the profile decides with the network (`decide`), and the thresholds it fits on the good
frames' left-out scores (a peaks-over-threshold tail): the rules, each measured (profile/__init__.py)."""

from dataclasses import dataclass

import numpy as np

from slmcnn.constants import ERROR, OBJECT, POWDER, SURE_ERROR

TARGET_FALSE_TILES = 0.01  # expected false Error tiles per sound layer: 1 in 100 layers
TAIL_QUANTILE = 0.9  # the tail fit uses the scores above this quantile
TAIL_CONFIDENCE = 0.95
MARK_MARGIN = 1.25
MARK_MADS = 5.0
CONFIRM = 0.5  # the network's Error stays Error where the anomaly is above this (profile/__init__.py)
ERROR_THRESHOLD = 1.0  # default sensitivity: anomaly over the fitted threshold (calibrate --error-threshold)
OBJECT_ERROR = 1.01  # an anomalous Object tile is Error from this Error probability: never
SURE = SURE_ERROR  # the network sees an Error clearly from this probability
# A place looked the same on the learned layers when a tile's anomaly is at most this many times the
# largest left-out anomaly of their tiles there (`CameraProfile.seen`): the largest of n layers is
# about their n/(n+1) quantile (5-10 layers: 83-91%), not their edge. The network's sure Errors the
# rules before vetoed, on bench_adapt.py's synthetic sessions (2 builds x 3 sessions, both camera
# styles): sound tiles at 0.4-3.8 times it, defect tiles at 0.7-5.0 times. Over 1.5: 15 defect tiles
# and 1 sound one with camera + build memory, 2 and 5 with the profile alone (over 1.0: 23 and 6, 9
# and 7). The streak of examples/layers/00025.png lies at 1.9-5 times it (two tiles at 0.5-0.9).
SEEN_MARGIN = 1.5


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
    seen: np.ndarray | float = 1.0,
    sure: float = SURE,
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
    gain change) and the anomaly it takes is raised by that ratio (`layer_level`).

    The memory never hides what the network sees clearly: an Error the network gives at least
    `sure` stays Error unless that place looked the same on the learned layers, its anomaly at most
    `seen` (per tile, `CameraProfile.seen`; 1, the threshold, without one), whatever the layer's
    level and `confirm`: a streak over a whole layer changes the layer's look too."""
    network = probabilities.argmax(1)
    fallback = probabilities[:, :ERROR].argmax(1)
    raised = (network == POWDER) | ((network == OBJECT) & (probabilities[:, ERROR] >= object_error))
    if grid_shape is not None and not part_surroundings:
        raised &= ~((network == POWDER) & beside((network == OBJECT).reshape(grid_shape)).ravel())
    level = 1.0 if typical is None else layer_level(anomaly, typical)
    clear = (network == ERROR) & (probabilities[:, ERROR] >= sure) & (anomaly > seen)
    found = ((network == ERROR) & (anomaly > confirm)) | clear | (raised & (anomaly > level))
    kept = found
    if grid_shape is not None:
        kept = found | ((network == ERROR) & beside(found.reshape(grid_shape)).ravel())
    return np.where(kept, ERROR, np.where(network == ERROR, fallback, network))


def layer_level(anomaly: np.ndarray, typical: float) -> float:
    """How much farther than a good layer this layer's tiles are, as a whole: its median anomaly
    over the good layers' `typical`, never below 1."""
    return max(1.0, float(np.median(anomaly)) / typical) if len(anomaly) and typical > 0 else 1.0


def beside(mask: np.ndarray) -> np.ndarray:
    """Cells sharing an edge with a True cell of a 2-D mask."""
    out = np.zeros_like(mask)
    out[1:] |= mask[:-1]
    out[:-1] |= mask[1:]
    out[:, 1:] |= mask[:, :-1]
    out[:, :-1] |= mask[:, 1:]
    return out


def on_top(probabilities: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """The network's probabilities, except that a changed tile's decided class gets the top value."""
    out = probabilities.copy()
    rows = np.flatnonzero(probabilities.argmax(1) != classes)
    out[rows, classes[rows]] = probabilities[rows].max(1) + 1e-3
    out[rows] /= out[rows].sum(1, keepdims=True)
    return out


def tail_fit(scores: np.ndarray) -> tuple[float, float, float]:
    """(u, q, beta): the scores above u (share q) fitted by an exponential tail whose mean excess
    beta is the upper 95% confidence bound (n * mean / beta is Gamma(n)-distributed): with few good
    frames the tail is uncertain, and an underestimated tail means false alarms."""
    from scipy.special import gammaincinv  # what scipy.stats.gamma.ppf computes, without importing scipy.stats (1-3 s)

    u = float(np.quantile(scores, TAIL_QUANTILE))
    excess = scores[scores > u] - u
    if not len(excess):
        return u, 0.0, 1e-6
    beta = float(excess.mean()) * len(excess) / float(gammaincinv(len(excess), 1 - TAIL_CONFIDENCE))
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
