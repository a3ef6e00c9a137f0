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
from slmcnn.folding import FoldedSlmCnn, for_evaluation
from slmcnn.inference import bf16_supported
from slmcnn.preprocess import prepare

BASELINES = ("black", "blur", "noise")
LARGE_DELTA = 0.05
DEFAULT_STEPS = 256
"""With the adaptive nodes, 256 steps come near the convergence of the reference's 500 trapezoid
steps in a fraction of their time; benchmarks/bench_predict.py measures both."""
METHODS = ("adaptive", "gausslegendre", "riemann_trapezoid", "riemann_middle", "riemann_left", "riemann_right")
PROBE_BATCH = 16


@dataclass
class Explanation:
    attribution: np.ndarray  # (p, p, 3), same layout as the patch
    target: int
    delta: float
    baseline_image: np.ndarray  # (p, p, 3) uint8, for the figure
    probability: float


class _Probability(torch.nn.Module):
    """Softmax probabilities of the folded network, in float32 or with its convolutions entirely
    in bfloat16 (a bf16 copy of their weights: 1.5x the speed of autocast, which re-casts them on
    every call). The dense head stays float32 (under 1% of the work): bf16 logits (8 bits of
    mantissa) alone put a floor of about 0.0015 under the convergence delta."""

    def __init__(self, model: torch.nn.Module, bf16: bool):
        super().__init__()
        network = for_evaluation(model.eval())
        if network is model:  # not foldable: work on a copy, the caller's model keeps its settings
            network = copy.deepcopy(model)
        folded = isinstance(network, FoldedSlmCnn)
        self.features, self.head = network.features, network.head if folded else network.classifier
        self.dtype = torch.bfloat16 if bf16 else torch.float32
        self.network = network.to(self.dtype)
        for layer in [network.dense, network.last] if folded else [network.classifier]:
            layer.float()
        for p in self.network.parameters():
            p.requires_grad_(False)  # IG needs input gradients only

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.dtype).contiguous(memory_format=torch.channels_last)
        return torch.softmax(self.head(self.features(x).float()), dim=1)


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


def resolve_precision() -> str:
    """IG's `auto` precision: bf16 where the CPU computes it natively. The benchmark measures the
    attributions against fp32 (smallest per-patch correlation 0.996) and the delta of each."""
    return "bf16" if bf16_supported() else "fp32"


def path_nodes(wrapped: torch.nn.Module, x: torch.Tensor, base: torch.Tensor, target: int, steps: int, probes: int):
    """Step sizes and alphas for one patch's path, denser where the explained probability changes.

    The integrand of IG through a ReLU network jumps wherever a unit switches, so higher-order rules
    (Gauss-Legendre) gain little; what does help is spending the gradient evaluations where the
    output moves. `probes` cheap forward passes measure |df| along the path; the unit interval is
    cut into `steps` cells of equal mass under half uniform, half |df| density, and each cell is
    sampled at its midpoint."""
    grid = torch.linspace(0, 1, probes + 1)
    with torch.no_grad():
        values = torch.cat(
            [wrapped(base + a.view(-1, 1, 1, 1) * (x - base))[:, target] for a in grid.split(PROBE_BATCH)]
        ).numpy()
    change = np.abs(np.diff(values)).astype(np.float64)
    density = 0.5 / probes + (0.5 * change / change.sum() if change.sum() > 0 else 0.5 / probes)
    mass = np.concatenate([[0.0], np.cumsum(density)])
    edges = np.interp(np.linspace(0, mass[-1], steps + 1), mass, grid.numpy().astype(np.float64))
    return np.diff(edges).tolist(), ((edges[:-1] + edges[1:]) / 2).tolist()


def _adaptive(ig, wrapped, x, base, targets, steps: int, internal_batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """IG of each patch on its own adaptive nodes; the nodes go through the network `internal_batch`
    at a time (the attribution is a sum over nodes, so chunks add up)."""
    attributions = []
    for i in range(len(x)):
        xi, bi, ti = x[i : i + 1], base[i : i + 1], int(targets[i])
        sizes, alphas = path_nodes(wrapped, xi, bi, ti, steps, probes=max(32, steps // 2))
        total = torch.zeros_like(xi)
        for k in range(0, steps, internal_batch):
            total += ig._attribute(
                (xi,),
                (bi,),
                target=ti,
                n_steps=len(alphas[k : k + internal_batch]),
                step_sizes_and_alphas=(sizes[k : k + internal_batch], alphas[k : k + internal_batch]),
            )[0].detach()
        attributions.append(total)
    attrs = torch.cat(attributions)
    deltas = ig.compute_convergence_delta(attrs, base, x, target=torch.as_tensor(targets))
    return attrs, deltas


def explain(
    model: torch.nn.Module,
    patches: np.ndarray,
    targets: np.ndarray | None = None,
    steps: int = DEFAULT_STEPS,
    baseline: str = "black",
    method: str = "adaptive",
    internal_batch: int = 8,
    precision: str = "auto",
) -> list[Explanation]:
    """IG attributions for each patch, its target (default: the predicted class) and delta.

    `method` is `adaptive` (path_nodes) or one of captum's quadratures (gausslegendre,
    riemann_trapezoid, ...). The network runs with BatchNorm folded away (folding.py, the same
    function) and with weight gradients off; path points go through it in batches of
    `internal_batch`: 8 keeps the activations in cache and measured fastest on 2 cores."""
    if steps < 2:
        raise SettingsError("--steps must be at least 2")
    if precision not in ("auto", "fp32", "bf16"):
        raise SettingsError(f"IG precision must be auto, fp32 or bf16 (got {precision!r})")
    if precision == "auto":
        precision = resolve_precision()
    if method not in METHODS:
        raise SettingsError(f"--method must be one of {', '.join(METHODS)} (got {method!r})")
    wrapped = _Probability(model, precision == "bf16")
    x = prepare(patches)
    base_imgs = baseline_images(patches, baseline)
    base = prepare(base_imgs)
    with torch.no_grad():
        probs = wrapped(x)
    if targets is None:
        targets = probs.argmax(1).numpy()
    ig = IntegratedGradients(wrapped)
    if method == "adaptive":
        attrs, deltas = _adaptive(ig, wrapped, x, base, targets, steps, internal_batch)
    else:
        attrs, deltas = ig.attribute(
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
