"""Integrated Gradients (captum) for patches: why the network chose a class.

IG runs on the standardised input the network sees. The default 'black' baseline is a black patch,
which standardises to all zeros. The attributed output is the softmax probability of the target
class, so the convergence delta is in probability units and easy to judge.
"""

import copy
import heapq
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from captum.attr import IntegratedGradients

from slmcnn.errors import SettingsError
from slmcnn.folding import FoldedSlmCnn, for_evaluation
from slmcnn.preprocess import prepare

BASELINES = ("black", "blur", "noise")
LARGE_DELTA = 0.05
DEFAULT_STEPS = 176
"""With the adaptive rule, 176 gradients are more converged than the reference's 501 trapezoid
nodes (mean |delta| 0.00037 vs 0.00054 over 18 patches of the benchmark's build, both in float32)
in under a fifth of their time; benchmarks/bench_predict.py measures both."""
PRECISIONS = ("fp32", "bf16")
METHODS = ("adaptive", "gausslegendre", "riemann_trapezoid", "riemann_middle", "riemann_left", "riemann_right")
REFINE_LENGTH_WEIGHT = 0.001


@dataclass
class Explanation:
    attribution: np.ndarray  # (p, p, 3), same layout as the patch
    target: int
    delta: float
    baseline_image: np.ndarray  # (p, p, 3) uint8, for the figure
    probability: float


class _Probability(torch.nn.Module):
    """Softmax probabilities of the folded network, in float32 or with its convolutions from the
    second block on in bfloat16 (a bf16 copy of their weights: 1.5x the speed of autocast, which
    re-casts them on every call). The first block and the dense head stay float32: rounding the
    path points themselves to bf16 moved the attributions 7% (relative L2) from the converged ones,
    2% with the first block in fp32; bf16 logits (8 bits of mantissa) alone put a floor of about
    0.0015 under the convergence delta."""

    def __init__(self, model: torch.nn.Module, bf16: bool):
        super().__init__()
        network = for_evaluation(model.eval())
        if network is model:  # not foldable: work on a copy, the caller's model keeps its settings
            network = copy.deepcopy(model)
        self.dtype = torch.bfloat16 if bf16 else torch.float32
        self.network = network
        if isinstance(network, FoldedSlmCnn):
            self.first = lambda x: network.blocks(x, 0, 1)
            self.rest = lambda x: torch.flatten(network.blocks(x, 1), 1)
            self.head = network.head
            for i in range(1, len(network.weights)):
                network.weights[i] = torch.nn.Parameter(network.weights[i].to(self.dtype))
                network.biases[i] = torch.nn.Parameter(network.biases[i].to(self.dtype))
        else:
            self.first, self.rest, self.head = network.features[0], network.features[1:], network.classifier
            self.rest.to(self.dtype)
        for p in self.network.parameters():
            p.requires_grad_(False)  # IG needs input gradients only

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.first(x.float().contiguous(memory_format=torch.channels_last))
        return torch.softmax(self.head(self.rest(x.to(self.dtype)).float()), dim=1)


def baseline_images(patches: np.ndarray, kind: str, seed: int = 0) -> np.ndarray:
    """The uint8 baseline patches that IG walks from."""
    if kind == "black":
        return np.zeros_like(patches)
    if kind == "blur":
        return np.stack([cv2.GaussianBlur(p, (0, 0), 8) for p in patches])
    if kind == "noise":
        rng = np.random.default_rng(seed)
        return rng.integers(0, 256, patches.shape, dtype=np.uint8).astype(patches.dtype)
    raise SettingsError(f"`baseline` must be one of {', '.join(BASELINES)} (got {kind!r})")


@dataclass
class _Node:
    alpha: float
    value: float  # the explained probability at this point of the path
    slope: float  # its derivative along the path: gradient . (input - baseline)
    gradient: torch.Tensor


def _evaluate(ig: IntegratedGradients, x: torch.Tensor, base: torch.Tensor, target: int, alphas: list[float]):
    """Nodes at `alphas` of the straight path: captum's gradient function, with the probabilities
    the same forward pass computed (read by a hook, not a second pass)."""
    values = []
    hook = ig.forward_func.register_forward_hook(lambda _m, _i, out: values.append(out[:, target].detach()))
    try:
        points = base + torch.tensor(alphas, dtype=x.dtype).view(-1, 1, 1, 1) * (x - base)
        (gradients,) = ig.gradient_func(ig.forward_func, (points.requires_grad_(),), target_ind=target)
    finally:
        hook.remove()
    slopes = (gradients * (x - base)).sum((1, 2, 3)).double()
    return [_Node(a, float(v), float(d), g) for a, v, d, g in zip(alphas, values[0].double(), slopes, gradients)]


def _segment(left: _Node, right: _Node) -> tuple[float, float, _Node, _Node]:
    """A heap entry: the trapezoid rule's completeness error on this piece of the path, which is
    known exactly because the probability is known at both ends; plus a share of the length, so
    long pieces whose errors happen to cancel are split too. Highest priority pops first."""
    width = right.alpha - left.alpha
    error = width / 2 * (left.slope + right.slope) - (right.value - left.value)
    return (-(abs(error) + REFINE_LENGTH_WEIGHT * width), left.alpha, left, right)


def refined_path(ig: IntegratedGradients, x, base, target: int, steps: int, batch: int) -> list[_Node]:
    """`steps` nodes on one patch's path, from 0 to 1, placed where the trapezoid rule is wrong.

    The integrand of IG through a ReLU network jumps wherever a unit switches, so higher-order rules
    (Gauss-Legendre) gain little. But every gradient evaluation also gives the probability, and on
    each piece of the path the exact integral of the slope is the change of the probability: the
    trapezoid rule's error on each piece is known. Start from a uniform grid, then split the `batch`
    pieces with the largest errors (one network batch of midpoints) until `steps` gradients are
    spent."""
    grid = np.linspace(0, 1, min(steps, max(5, steps // 6 + 1))).tolist()
    nodes = [n for k in range(0, len(grid), batch) for n in _evaluate(ig, x, base, target, grid[k : k + batch])]
    heap = [_segment(a, b) for a, b in zip(nodes, nodes[1:])]
    heapq.heapify(heap)
    while len(nodes) < steps:
        split = [heapq.heappop(heap) for _ in range(min(batch, steps - len(nodes), len(heap)))]
        middles = _evaluate(ig, x, base, target, [(s[2].alpha + s[3].alpha) / 2 for s in split])
        for (_, _, left, right), middle in zip(split, middles):
            heapq.heappush(heap, _segment(left, middle))
            heapq.heappush(heap, _segment(middle, right))
        nodes += middles
    return sorted(nodes, key=lambda n: n.alpha)


def trapezoid_weights(nodes: list[_Node]) -> np.ndarray:
    """Each node's weight in the trapezoid rule on its (uneven) grid."""
    widths = np.diff([n.alpha for n in nodes])
    weights = np.zeros(len(nodes))
    weights[:-1] += widths / 2
    weights[1:] += widths / 2
    return weights


def _adaptive(ig, x, base, targets, steps: int, internal_batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """IG of each patch on its refined_path; the delta by captum, from fresh forward passes."""
    attributions = []
    for i in range(len(x)):
        nodes = refined_path(ig, x[i : i + 1], base[i : i + 1], int(targets[i]), steps, internal_batch)
        total = sum(float(w) * n.gradient for w, n in zip(trapezoid_weights(nodes), nodes))
        attributions.append(total * (x[i] - base[i]))
    attrs = torch.stack(attributions)
    deltas = ig.compute_convergence_delta(attrs, base, x, target=torch.as_tensor(targets))
    return attrs, deltas


def check_settings(steps: int, method: str, precision: str) -> None:
    """Refuse IG settings that cannot work, before any work is done."""
    if steps < 2:
        raise SettingsError("`steps` must be at least 2")
    if precision not in PRECISIONS:
        raise SettingsError(f"`precision` must be {' or '.join(PRECISIONS)} (got {precision!r})")
    if method not in METHODS:
        raise SettingsError(f"`method` must be one of {', '.join(METHODS)} (got {method!r})")
    if method == "adaptive" and precision == "bf16":
        raise SettingsError(
            "`method=adaptive` needs `precision=fp32`; with bf16 use a fixed rule such as gausslegendre"
        )


def explain(
    model: torch.nn.Module,
    patches: np.ndarray,
    targets: np.ndarray | None = None,
    steps: int = DEFAULT_STEPS,
    baseline: str = "black",
    method: str = "adaptive",
    internal_batch: int = 8,
    precision: str = "fp32",
) -> list[Explanation]:
    """IG attributions for each patch, its target (default: the predicted class) and delta.

    `method` is `adaptive` (refined_path) or one of captum's quadratures (gausslegendre,
    riemann_trapezoid, ...). The network runs with BatchNorm folded away (folding.py, the same
    function) and with weight gradients off; path points go through it in batches of
    `internal_batch`: 8 keeps the activations in cache and measured fastest on 2 cores.
    `precision` bf16 is about 1.7x faster where the CPU has native bf16, but its attributions are
    about 2% (relative L2) from the converged ones (benchmarks/bench_predict.py measures it), and
    the adaptive rule's error estimates drown in its rounding, so bf16 goes with a fixed rule."""
    check_settings(steps, method, precision)
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
        attrs, deltas = _adaptive(ig, x, base, targets, steps, internal_batch)
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
