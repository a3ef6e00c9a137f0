"""The camera measures of `real-camera-stats.md`, computed the same way on any layer photo."""

import cv2
import numpy as np


def camera_stats(image: np.ndarray) -> dict[str, float]:
    """Gray levels, illumination field, corner/centre fall-off, grain noise and banding of one layer."""
    gray = image[..., 0].astype(np.float32) if image.ndim == 3 else image.astype(np.float32)
    h, w = gray.shape
    field = cv2.GaussianBlur(gray, (0, 0), 40)
    grain = gray - cv2.GaussianBlur(gray, (0, 0), 2)
    corners = [gray[:40, :40], gray[:40, -40:], gray[-40:, :40], gray[-40:, -40:]]
    centre = gray[h // 4 : h - h // 4, w // 4 : w - w // 4]

    def banding(profile: np.ndarray) -> float:
        trend = cv2.GaussianBlur(profile.reshape(-1, 1), (0, 0), 25).ravel()
        return float(np.std(profile - trend))

    return {
        "mean": float(gray.mean()),
        "p5": float(np.percentile(gray, 5)),
        "p95": float(np.percentile(gray, 95)),
        "field_p5": float(np.percentile(field, 5)),
        "field_p95": float(np.percentile(field, 95)),
        "corner": float(np.mean([c.mean() for c in corners])),
        "centre": float(centre.mean()),
        "grain_std": float(grain.std()),
        "row_banding_std": banding(gray.mean(axis=1)),
        "col_banding_std": banding(gray.mean(axis=0)),
    }


REAL_RANGES: dict[str, tuple[float, float]] = {
    "mean": (184, 216),
    "p5": (147, 181),
    "p95": (213, 252),
    "field_p5": (157, 185),
    "field_p95": (208, 249),
    "corner": (133, 174),
    "centre": (200, 235),
    "grain_std": (3.0, 6.9),
    "row_banding_std": (2.0, 4.5),
    "col_banding_std": (1.5, 4.0),
}
"""Ranges measured on the reference camera (banding given as 'about 3.3 / 2.7': a band around it)."""
