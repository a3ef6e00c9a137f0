"""Camera augmentation at training time: each patch as another camera might have photographed it.

A model trained on synthetic builds meets cameras whose response, grain, sharpness and compression
it never saw. The per-patch standardisation already removes a plain change of brightness and
contrast, so what is drawn here is what survives it: a non-linear response (gamma), another light
level with clipping at black and white, a light gradient and fall-off across the patch, sensor
grain, optics blur, 8-bit quantisation of a low-contrast signal and JPEG compression. None of these
moves a defect or a part, so a patch keeps its label. Geometry (scale, turns) is left to the
generator's bed scale and to `train.random_flips`.
"""

from dataclasses import dataclass

import cv2
import numpy as np
import torch

AUGMENTATIONS = ("none", "camera")


@dataclass(frozen=True)
class CameraJitter:
    """Ranges drawn per patch; each effect is applied to a patch with its own probability."""

    share: float = 0.8  # patches augmented at all; the rest stay as rendered
    gamma: tuple[float, float] = (0.55, 1.8)
    contrast: tuple[float, float] = (0.55, 1.25)
    level: tuple[float, float] = (0.35, 0.9)  # the patch's new mean, in units of full white
    gradient: float = 0.25  # largest relative change of light across a patch
    grain: tuple[float, float] = (0.0, 0.035)  # noise std in units of full white
    blur: tuple[float, float] = (0.3, 1.6)  # Gaussian sigma in pixels
    jpeg_quality: tuple[int, int] = (25, 90)
    p_gradient: float = 0.5
    p_grain: float = 0.6
    p_blur: float = 0.3
    p_jpeg: float = 0.35


def camera_jitter(patches: np.ndarray, generator: torch.Generator, jitter: CameraJitter = CameraJitter()) -> np.ndarray:
    """NxPxPxC uint8 patches -> the same patches as other cameras might see them (uint8, gray kept
    gray). Deterministic for a given generator state."""
    if patches.dtype != np.uint8:
        raise TypeError(f"camera_jitter works on uint8 patches, got {patches.dtype}")
    n, size = len(patches), patches.shape[1]

    def uniform(low: float, high: float, count: int = n) -> torch.Tensor:
        return low + (high - low) * torch.rand(count, generator=generator)

    def chance(p: float) -> torch.Tensor:
        return torch.rand(n, generator=generator) < p

    chosen = chance(jitter.share)
    x = torch.from_numpy(patches).float().div_(255.0).permute(0, 3, 1, 2)  # N C P P
    x = x.clamp_min(1e-4).pow(_log_uniform(generator, *jitter.gamma, n).view(-1, 1, 1, 1))
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    contrast = _log_uniform(generator, *jitter.contrast, n).view(-1, 1, 1, 1)
    x = (x - mean) * contrast + uniform(*jitter.level).view(-1, 1, 1, 1)
    x = x * _light_field(generator, n, size, jitter.gradient, chance(jitter.p_gradient))
    x = _blur(x, uniform(*jitter.blur), chance(jitter.p_blur))
    grain = uniform(*jitter.grain) * chance(jitter.p_grain)
    noise = torch.randn(n, 1, size, size, generator=generator) * grain.view(-1, 1, 1, 1)
    x = (x + noise).clamp_(0.0, 1.0).mul_(255.0).round_().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    qualities = torch.randint(jitter.jpeg_quality[0], jitter.jpeg_quality[1] + 1, (n,), generator=generator)
    jpeg = chance(jitter.p_jpeg)
    out = patches.copy()
    for i in np.flatnonzero(chosen.numpy()):
        out[i] = _jpeg(x[i], int(qualities[i])) if jpeg[i] else x[i]
    return out


def _log_uniform(generator: torch.Generator, low: float, high: float, count: int) -> torch.Tensor:
    """Factors spread evenly on a log scale, so 0.5x and 2x are equally likely."""
    lo, hi = np.log(low), np.log(high)
    return torch.exp(lo + (hi - lo) * torch.rand(count, generator=generator))


def _light_field(generator: torch.Generator, n: int, size: int, strength: float, on: torch.Tensor) -> torch.Tensor:
    """A linear light gradient in a random direction plus a radial fall-off, as a factor near 1."""
    axis = torch.linspace(-0.5, 0.5, size)
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    angle = torch.rand(n, generator=generator) * 2 * np.pi
    slope = (torch.rand(n, generator=generator) * strength * on).view(-1, 1, 1)
    linear = slope * (torch.cos(angle).view(-1, 1, 1) * xx + torch.sin(angle).view(-1, 1, 1) * yy)
    cy, cx = (torch.rand(2, n, generator=generator) - 0.5).unbind(0)
    fall = (torch.rand(n, generator=generator) * strength * on).view(-1, 1, 1)
    radial = fall * ((xx - cx.view(-1, 1, 1)) ** 2 + (yy - cy.view(-1, 1, 1)) ** 2)
    return (1.0 + linear - radial).unsqueeze(1)


def _blur(x: torch.Tensor, sigma: torch.Tensor, on: torch.Tensor) -> torch.Tensor:
    """Gaussian blur of the chosen patches, each with its own sigma (one grouped convolution)."""
    idx = torch.nonzero(on).flatten()
    if not len(idx):
        return x
    radius = 4
    taps = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(taps**2) / (2 * sigma[idx].view(-1, 1) ** 2))
    kernel = kernel / kernel.sum(1, keepdim=True)  # (k, taps)
    chosen = x[idx]  # (k, C, P, P)
    k, channels, size, _ = chosen.shape
    flat = chosen.reshape(1, k * channels, size, size)
    weights = kernel.repeat_interleave(channels, 0)
    padded = torch.nn.functional.pad(flat, (radius, radius, radius, radius), mode="reflect")
    rows = torch.nn.functional.conv2d(padded, weights.view(-1, 1, 1, 2 * radius + 1), groups=k * channels)
    both = torch.nn.functional.conv2d(rows, weights.view(-1, 1, 2 * radius + 1, 1), groups=k * channels)
    out = x.clone()
    out[idx] = both.view(k, channels, size, size)
    return out


def _jpeg(patch: np.ndarray, quality: int) -> np.ndarray:
    """JPEG round trip of one HxWxC uint8 patch; a gray patch is coded as gray, as cameras do."""
    gray = bool((patch[..., 0] == patch[..., 1]).all() and (patch[..., 0] == patch[..., 2]).all())
    source = patch[..., 0] if gray else patch
    ok, data = cv2.imencode(".jpg", source, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        return patch
    decoded = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR)
    return np.repeat(decoded[..., None], 3, axis=2) if gray else decoded
