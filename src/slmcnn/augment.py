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


def camera_jitter(
    patches: torch.Tensor, generator: torch.Generator, jitter: CameraJitter = CameraJitter()
) -> torch.Tensor:
    """NxPxPxC uint8 patches -> the same patches as other cameras might see them (uint8, gray kept
    gray), on the patches' own device (a GPU when training on one). The draws come from the CPU
    `generator`, so a run is repeatable for a given seed."""
    if patches.dtype != torch.uint8:
        raise TypeError(f"camera_jitter works on uint8 patches, got {patches.dtype}")
    n, size, device = len(patches), patches.shape[1], patches.device

    def uniform(low: float, high: float) -> torch.Tensor:
        return (low + (high - low) * torch.rand(n, generator=generator)).to(device)

    def chance(p: float) -> torch.Tensor:
        return (torch.rand(n, generator=generator) < p).to(device)

    def per_patch(values: torch.Tensor) -> torch.Tensor:
        return values.to(device).view(-1, 1, 1, 1)

    chosen = chance(jitter.share)
    x = patches.float().div_(255.0).permute(0, 3, 1, 2)  # N C P P
    x = x.clamp_min(1e-4).pow(per_patch(_log_uniform(generator, *jitter.gamma, n)))
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    contrast = per_patch(_log_uniform(generator, *jitter.contrast, n))
    x = (x - mean) * contrast + uniform(*jitter.level).view(-1, 1, 1, 1)
    x = x * _light_field(generator, n, size, jitter.gradient, chance(jitter.p_gradient))
    x = _blur(x, uniform(*jitter.blur), chance(jitter.p_blur))
    grain = uniform(*jitter.grain) * chance(jitter.p_grain)
    noise = _noise((n, 1, size, size), generator, device) * grain.view(-1, 1, 1, 1)
    x = (x + noise).clamp_(0.0, 1.0).mul_(255.0).round_().to(torch.uint8).permute(0, 2, 3, 1)
    qualities = torch.randint(jitter.jpeg_quality[0], jitter.jpeg_quality[1] + 1, (n,), generator=generator)
    jpeg = chance(jitter.p_jpeg)
    coded = torch.nonzero(chosen & jpeg).flatten()
    if len(coded):  # JPEG is coded on the CPU: one copy there and one back per batch, not per patch
        rows = coded.tolist()
        decoded = [_jpeg(patch, int(qualities[i])) for i, patch in zip(rows, x[coded].cpu().numpy(), strict=True)]
        x[coded] = torch.from_numpy(np.stack(decoded)).to(device)
    return torch.where(chosen.view(-1, 1, 1, 1), x, patches)


def _noise(shape: tuple[int, ...], generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """Standard normal grain drawn where it is used (a million numbers per batch would otherwise be
    drawn on one CPU core and copied), seeded from the CPU generator so a run stays repeatable."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    return torch.randn(shape, generator=torch.Generator(device).manual_seed(seed), device=device)


def _log_uniform(generator: torch.Generator, low: float, high: float, count: int) -> torch.Tensor:
    """Factors spread evenly on a log scale, so 0.5x and 2x are equally likely."""
    lo, hi = np.log(low), np.log(high)
    return torch.exp(lo + (hi - lo) * torch.rand(count, generator=generator))


def _light_field(generator: torch.Generator, n: int, size: int, strength: float, on: torch.Tensor) -> torch.Tensor:
    """A linear light gradient in a random direction plus a radial fall-off, as a factor near 1."""
    device = on.device
    axis = torch.linspace(-0.5, 0.5, size, device=device)
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    angle = (torch.rand(n, generator=generator) * 2 * np.pi).to(device)
    slope = (torch.rand(n, generator=generator).to(device) * strength * on).view(-1, 1, 1)
    linear = slope * (torch.cos(angle).view(-1, 1, 1) * xx + torch.sin(angle).view(-1, 1, 1) * yy)
    cy, cx = (torch.rand(2, n, generator=generator) - 0.5).to(device).unbind(0)
    fall = (torch.rand(n, generator=generator).to(device) * strength * on).view(-1, 1, 1)
    radial = fall * ((xx - cx.view(-1, 1, 1)) ** 2 + (yy - cy.view(-1, 1, 1)) ** 2)
    return (1.0 + linear - radial).unsqueeze(1)


def _blur(x: torch.Tensor, sigma: torch.Tensor, on: torch.Tensor) -> torch.Tensor:
    """Gaussian blur of the chosen patches, each with its own sigma (one grouped convolution)."""
    idx = torch.nonzero(on).flatten()
    if not len(idx):
        return x
    radius = 4
    taps = torch.arange(-radius, radius + 1, dtype=torch.float32, device=x.device)
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
