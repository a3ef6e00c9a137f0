"""The change signal of the fine maps: the bed blurred and divided by its median, against the median of
the build's last CHANGE_WINDOW layers at the same place, in units of their spread. A part breaking
through the powder, a short feed, a part showing where powder should cover are dark and rough like
texture seen elsewhere, but new *at that place*.
"""

import cv2
import numpy as np

from slmcnn import images
from slmcnn.thresholds import tail_threshold, without_edge

CHANGE_WINDOW = 10  # last layers the change signal compares a layer with
CHANGE_SIGMA = 3.0  # px of blur before comparing: grain is not change
CHANGE_STEP = 4  # px per change location
CHANGE_FLOOR = 0.02  # smallest per-place spread, as a share of the bed's brightness


def change_image(image: np.ndarray) -> np.ndarray:
    """The bed as the change signal compares it: gray, blurred, over its median, CHANGE_STEP px a place."""
    gray = cv2.GaussianBlur(images.gray(image), (0, 0), CHANGE_SIGMA)
    gray /= max(float(np.median(gray)), 1e-3)
    h, w = gray.shape
    return cv2.resize(gray, (max(w // CHANGE_STEP, 1), max(h // CHANGE_STEP, 1)), interpolation=cv2.INTER_AREA)


def layer_median(stack: np.ndarray) -> np.ndarray:
    """np.median(stack, 0) of a few layers, sorted along them instead: the same values, 3x faster."""
    ordered = np.sort(stack, 0)
    return (ordered[(len(stack) - 1) // 2] + ordered[len(stack) // 2]) / 2


class ChangeMemory:
    """The build's last layers at each place: a layer's score is its distance from their median in
    units of their spread, over the threshold fitted on the first layers."""

    def __init__(self):
        self.layers: list[np.ndarray] = []
        self.threshold = float("inf")

    def raw(self, bed: np.ndarray, without: int | None = None) -> np.ndarray:
        stack = np.stack([b for i, b in enumerate(self.layers) if i != without])
        median = layer_median(stack)
        spread = 1.4826 * layer_median(np.abs(stack - median))
        return without_edge(np.abs(bed - median) / np.maximum(spread, CHANGE_FLOOR), CHANGE_STEP)

    def fit(self) -> None:
        """Threshold: a tail fitted to the left-out scores of the layers held (each against the others)."""
        if len(self.layers) < 3:
            return
        scores = np.concatenate([self.raw(b, without=i).ravel() for i, b in enumerate(self.layers)])
        self.threshold = tail_threshold(scores, self.layers[0].size)

    def score(self, bed: np.ndarray) -> np.ndarray:
        """0 everywhere while fewer than 3 layers of this size are held (a photo of another size)."""
        if len(self.layers) < 3 or self.layers[0].shape != bed.shape:
            return np.zeros(bed.shape, np.float32)
        return (self.raw(bed) / self.threshold).astype(np.float32)

    def add(self, bed: np.ndarray, flagged: np.ndarray | None = None) -> None:
        """Remember a layer; its flagged places keep the median they had (a defect never becomes
        normal). A layer of another size starts the memory again."""
        if self.layers and self.layers[0].shape != bed.shape:
            self.layers = []
        if flagged is not None and flagged.any() and self.layers:
            bed = np.where(flagged, layer_median(np.stack(self.layers)), bed)
        self.layers = [*self.layers, bed][-CHANGE_WINDOW:]
