"""Integrated Gradients (captum) for patches: why the network chose a class.

IG runs on the standardised input the network sees. The default 'black' baseline is a black patch,
which standardises to all zeros. The attributed output is the softmax probability of the target
class, so the convergence delta is in probability units and easy to judge.
"""

import copy
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from captum.attr import IntegratedGradients

from slmcnn.errors import SettingsError
from slmcnn.folding import for_evaluation
from slmcnn.preprocess import standardise, to_unit_tensor

BASELINES = ("black", "blur", "noise")
LARGE_DELTA = 0.05
DEFAULT_STEPS = 200
"""Gauss-Legendre with 200 steps is as converged (mean |delta| about 0.001) as the reference's
trapezoid rule with 500 steps; benchmarks/bench_predict.py measures both."""


@dataclass
class Explanation:
    attribution: np.ndarray  # (p, p, 3), same layout as the patch
    target: int
    delta: float
    baseline_image: np.ndarray  # (p, p, 3) uint8, for the figure
    probability: float


class _Probability(torch.nn.Module):
    """Softmax probabilities of the folded network, in float32 or entirely in bfloat16 (a bf16
    copy of the weights: 1.5x the speed of autocast, which re-casts them on every call)."""

    def __init__(self, model: torch.nn.Module, bf16: bool):
        super().__init__()
        network = for_evaluation(model.eval())
        self.dtype = torch.bfloat16 if bf16 else torch.float32
        self.network = copy.deepcopy(network).to(self.dtype) if bf16 else network
        for p in self.network.parameters():
            p.requires_grad_(False)  # IG needs input gradients only

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.dtype).contiguous(memory_format=torch.channels_last)
        return torch.softmax(self.network(x).float(), dim=1)


def baseline_images(patches: np.ndarray, kind: str, seed: int = 0) -> np.ndarray:
    """The uint8 baseline patches that IG walks from."""
    if kind == "black":
        return np.zeros_like(patches)
    if kind == "blur":
        return np.stack([cv2.GaussianBlur(p, (0, 0), 8) for p in patches])
    if kind == "noise":
        rng = np.random.default_rng(seed)
        return rng.integers(0, 256, patches.shape, dtype=np.uint8).astype(patches.dtype)
    raise SettingsError(f"--baseline must be one of {', '.join(BASELINES)} (got {kind!r})")


def explain(
    model: torch.nn.Module,
    patches: np.ndarray,
    targets: np.ndarray | None = None,
    steps: int = DEFAULT_STEPS,
    baseline: str = "black",
    method: str = "gausslegendre",
    internal_batch: int = 8,
    precision: str = "fp32",
) -> list[Explanation]:
    """IG attributions for each patch, its target (default: the predicted class) and delta.

    The network runs with BatchNorm folded away (folding.py, the same function) and with weight
    gradients off. The path points of all patches go through it in batches of `internal_batch`:
    8 keeps the activations in cache and measured fastest on 2 cores."""
    if steps < 2:
        raise SettingsError("--steps must be at least 2")
    if precision not in ("fp32", "bf16"):
        raise SettingsError(f"IG precision must be fp32 or bf16 (got {precision!r})")
    wrapped = _Probability(model, precision == "bf16")
    x = standardise(to_unit_tensor(patches))
    base_imgs = baseline_images(patches, baseline)
    base = standardise(to_unit_tensor(base_imgs))
    with torch.no_grad():
        probs = wrapped(x)
    if targets is None:
        targets = probs.argmax(1).numpy()
    attrs, deltas = IntegratedGradients(wrapped).attribute(
        x,
        baselines=base,
        target=torch.as_tensor(targets),
        n_steps=steps,
        method=method,
        internal_batch_size=internal_batch,
        return_convergence_delta=True,
    )
    attrs_np = attrs.detach().permute(0, 2, 3, 1).numpy()
    return [
        Explanation(attrs_np[i], int(targets[i]), float(deltas[i]), base_imgs[i], float(probs[i, targets[i]]))
        for i in range(len(x))
    ]
