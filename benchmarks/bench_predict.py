"""slmcnn against the reference pipeline, measured in one run on the same synthetic layers.

Prints layers/s and patches/s for (a) the reference pipeline in TensorFlow/Keras (in .venv-tf, made
on first use), (b) the same pipeline in PyTorch eager, (c) slmcnn with each backend; the ratios;
the network's GFLOP/s against matmul GFLOP/s measured now; training patches/s; Integrated-Gradients
seconds per patch and convergence deltas; and tile agreement of each fast backend with float32.

    .venv/bin/python benchmarks/bench_predict.py [--layers 24] [--json] [--skip-tf]
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from slmcnn import checkpoint
from slmcnn.backends import OnnxBackend, TorchBackend, create_backend
from slmcnn.backends.onnxrt import export_onnx
from slmcnn.explain import DEFAULT_STEPS, explain
from slmcnn.images import read
from slmcnn.model import create_model
from slmcnn.outputs import RunFiles
from slmcnn.pipeline import RunOptions, run_layers
from slmcnn.preprocess import standardise, to_unit_tensor
from slmcnn.synth import SynthSettings, generate_build
from slmcnn.tiles import tile
from slmcnn.train import TrainConfig, fit

sys.path.insert(0, str(Path(__file__).parent))
from tf_env import tf_python  # noqa: E402

GFLOP_PER_PATCH = 0.5606  # 2 x 0.2803 GMAC of the reference network at 128 x 128
IG_PATCHES = 12  # four of each class: deltas at the 1e-4 level swing from patch to patch
CONVERGED_PATCHES, CONVERGED_STEPS = 4, 2048  # fp32 Gauss-Legendre: within 0.04-0.15% of 4,096 steps
COLOURS = np.array([[255, 255, 255], [255, 0, 0], [0, 0, 255]], np.uint8)


def matmul_gflops(dtype: torch.dtype, n: int = 4096, repeats: int = 4) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9


def eager_reference(model: torch.nn.Module, paths: list[Path], out: Path) -> float:
    """The reference's structure in PyTorch eager fp32 NCHW: per-tile loops, one predict per layer."""
    model = model.eval().to(memory_format=torch.contiguous_format)
    start = time.perf_counter()
    for i, path in enumerate(paths):
        image = cv2.imread(str(path))
        rows, cols = image.shape[0] // 128, image.shape[1] // 128
        tiles = [
            image[r * 128 : (r + 1) * 128, c * 128 : (c + 1) * 128].copy() for r in range(rows) for c in range(cols)
        ]
        with torch.inference_mode():
            classes = model(standardise(to_unit_tensor(np.array(tiles)))).argmax(1).numpy()
        colour = np.zeros_like(image)
        for k, (r, c) in enumerate((r, c) for r in range(rows) for c in range(cols)):
            colour[r * 128 : (r + 1) * 128, c * 128 : (c + 1) * 128] = COLOURS[classes[k]]
        cv2.imwrite(str(out / f"eager{i:05d}.png"), cv2.addWeighted(image, 0.8, colour, 0.2, 0))
    return len(paths) / (time.perf_counter() - start)


def slmcnn_pipeline(backend, paths: list[Path], out: Path, workers: int = 2) -> float:
    """End to end as predict-layer does it: read, tile, network, stitch, and per layer the overlay PNG,
    the class-map PNG and the JSON written (more output than the reference's overlay alone)."""
    start = time.perf_counter()
    with RunFiles(out, summary=False) as files:
        for outcome in run_layers(paths, backend, RunOptions(workers=workers), files=files):
            assert outcome.error is None, outcome.error
    return len(paths) / (time.perf_counter() - start)


def network_rate(backend, patches: np.ndarray, repeats: int = 2) -> float:
    backend.probabilities(patches[:64])
    start = time.perf_counter()
    for _ in range(repeats):
        backend.probabilities(patches)
    return repeats * len(patches) / (time.perf_counter() - start)


def train_rate(precision: str, batches: int = 12) -> float:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (64 * batches, 128, 128, 3), dtype=np.uint8)
    y = rng.integers(0, 3, len(x))
    config = TrainConfig(epochs=1, precision=precision)
    fit(config, x[:128], y[:128], x[:64], y[:64], log=lambda *_: None, show_progress=False)
    start = time.perf_counter()
    fit(config, x, y, x[:64], y[:64], log=lambda *_: None, show_progress=False)
    return len(x) / (time.perf_counter() - start)


def ig_rate(
    model, patches: np.ndarray, steps: int, method: str, precision: str = "fp32", repeats: int = 1
) -> tuple[float, float, np.ndarray]:
    """Seconds per patch, mean |convergence delta| and the attributions."""
    explain(model, patches[:1], steps=steps, method=method, precision=precision)
    start = time.perf_counter()
    for _ in range(repeats):
        explanations = explain(model, patches, steps=steps, method=method, precision=precision)
    seconds = (time.perf_counter() - start) / (repeats * len(patches))
    return (
        seconds,
        float(np.mean([abs(e.delta) for e in explanations])),
        np.stack([e.attribution for e in explanations]),
    )


def attribution_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Smallest per-patch Pearson correlation between two sets of attribution maps."""
    return float(min(np.corrcoef(x.ravel(), y.ravel())[0, 1] for x, y in zip(a, b)))


def attribution_error(a: np.ndarray, converged: np.ndarray) -> float:
    """Mean per-patch relative L2 distance from converged attributions: how far from the integral
    the explanation is, pixel by pixel (the delta only checks their sum)."""
    return float(np.mean([np.linalg.norm(x - c) / np.linalg.norm(c) for x, c in zip(a, converged)]))


def keras_weights(model: torch.nn.Module) -> list[np.ndarray]:
    """slmcnn's weights in the order and layout Keras' model.set_weights expects (HWIO kernels,
    and the first dense layer's rows reordered from channel-major to channel-last flattening)."""
    weights = []
    for block in model.features:
        conv, norm = block[0], block[2]
        weights += [conv.weight.detach().permute(2, 3, 1, 0).numpy(), conv.bias.detach().numpy()]
        weights += [t.detach().numpy() for t in (norm.weight, norm.bias, norm.running_mean, norm.running_var)]
    dense, last = model.classifier[1], model.classifier[4]
    channels = model.spec.filters[-1]
    side = int(round((dense.in_features / channels) ** 0.5))
    kernel = dense.weight.detach().reshape(-1, channels, side, side).permute(2, 3, 1, 0).reshape(-1, dense.out_features)
    weights += [kernel.numpy(), dense.bias.detach().numpy(), last.weight.detach().T.numpy(), last.bias.detach().numpy()]
    return [np.ascontiguousarray(w, dtype=np.float32) for w in weights]


def mixed_patches(patches: np.ndarray, classes: np.ndarray, count: int = IG_PATCHES) -> np.ndarray:
    """Patches taken in turn from each predicted class (first, second, ... of each), so that
    explanations cover all classes and a mean delta is not one patch's luck."""
    members = [np.flatnonzero(classes == c) for c in np.unique(classes)]
    turns = [int(m[k]) for k in range(max(len(m) for m in members)) for m in members if k < len(m)]
    return patches[turns[:count]]


def int8_backend(model, tmp: Path):
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fp32 = export_onnx(model, tmp / "fp32.onnx")
    quantize_dynamic(str(fp32), str(tmp / "int8.onnx"), weight_type=QuantType.QInt8)
    return OnnxBackend(tmp / "int8.onnx", model)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=24)
    parser.add_argument("--json", action="store_true", help="print every figure as one JSON object")
    parser.add_argument("--skip-tf", action="store_true", help="leave out the TensorFlow reference")
    args = parser.parse_args()
    log = (lambda *a: print(*a, file=sys.stderr)) if args.json else print
    figures: dict = {"torch_version": torch.__version__, "threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        generate_build(SynthSettings(layers=args.layers, seed=424242, write_patches=False), tmp / "build", workers=2)
        paths = sorted((tmp / "build" / "layers").glob("*.png"))
        (tmp / "out").mkdir()
        model_path = checkpoint.default_model_path()
        model = checkpoint.load_model(model_path)[0] if model_path.is_file() else create_model().eval()
        figures["model"] = model_path.name if model_path.is_file() else "untrained"

        log("matmul GFLOP/s ...")
        figures["matmul_fp32_gflops"] = matmul_gflops(torch.float32)
        figures["matmul_bf16_gflops"] = matmul_gflops(torch.bfloat16)

        patches = np.concatenate([tile(read(p), 128).patches for p in paths])
        fp32 = TorchBackend(model, "fp32")
        reference_classes = fp32.probabilities(patches).argmax(1)
        ig_patches = mixed_patches(patches, reference_classes)
        np.save(tmp / "ig_patches.npy", ig_patches)
        np.savez(tmp / "keras_weights.npz", **{f"w{i}": w for i, w in enumerate(keras_weights(model))})

        if not args.skip_tf:
            log("TensorFlow reference pipeline (.venv-tf) ...")
            run = subprocess.run(
                [
                    str(tf_python()),
                    str(Path(__file__).parent / "reference_tf.py"),
                    str(tmp / "build" / "layers"),
                    str(tmp / "out"),
                    "--weights",
                    str(tmp / "keras_weights.npz"),
                    "--patches",
                    str(tmp / "ig_patches.npy"),
                    "--attributions",
                    str(tmp / "tf_attributions.npy"),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            figures.update(json.loads(run.stdout.strip().splitlines()[-1]))

        log("PyTorch eager reference pipeline ...")
        figures["torch_eager_layers_per_s"] = eager_reference(model, paths, tmp / "out")

        # Explanations first, in the state `slmcnn predict-patches --explain` starts from: after a
        # torch.compile in the same process, eager bf16 gradients came out slightly different.
        log("Integrated Gradients ...")
        converged = explain(model, ig_patches[:CONVERGED_PATCHES], steps=CONVERGED_STEPS, method="gausslegendre")
        converged = np.stack([e.attribution for e in converged])
        attributions = {}
        runs = [(p, m, n) for p in ("fp32", "bf16") for n in (50, 500) for m in ("gausslegendre", "riemann_trapezoid")]
        runs += [("fp32", "adaptive", n) for n in (50, DEFAULT_STEPS, 500)]
        for precision, method, steps in runs:
            key = f"ig_{precision}_{steps}_steps_{method}"
            figures[f"{key}_s_per_patch"], figures[f"{key}_delta"], attributions[key] = ig_rate(
                model, ig_patches, steps, method, precision
            )
            figures[f"{key}_attribution_error"] = attribution_error(attributions[key][:CONVERGED_PATCHES], converged)
        figures["ig_bf16_min_correlation_vs_fp32"] = attribution_agreement(
            attributions["ig_bf16_500_steps_gausslegendre"], attributions["ig_fp32_500_steps_gausslegendre"]
        )
        figures["ig_patches"] = len(ig_patches)
        figures["ig_default_steps"] = DEFAULT_STEPS
        for key in ("s_per_patch", "delta", "attribution_error"):
            figures[f"ig_default_{key}"] = figures[f"ig_fp32_{DEFAULT_STEPS}_steps_adaptive_{key}"]
            for steps in (50, 500):  # at the reference's step counts: a fixed rule, in each precision
                figures[f"ig_{steps}_steps_{key}"] = figures[f"ig_fp32_{steps}_steps_gausslegendre_{key}"]
                figures[f"ig_bf16_{steps}_steps_{key}"] = figures[f"ig_bf16_{steps}_steps_gausslegendre_{key}"]
        if (tmp / "tf_attributions.npy").is_file():
            tf_attributions = np.load(tmp / "tf_attributions.npy")[:CONVERGED_PATCHES]
            figures["tf_ig_500_steps_attribution_error"] = attribution_error(tf_attributions, converged)

        backends = {
            "torch-fp32": fp32,
            "torch-bf16": TorchBackend(model, "bf16"),
            "torch-compiled-fp32": TorchBackend(model, "fp32", compile=True),
            "torch-compiled-bf16": TorchBackend(model, "bf16", compile=True),
            "onnx-fp32": OnnxBackend(export_onnx(model, tmp / "m.onnx"), model),
            "onnx-int8": int8_backend(model, tmp),
        }
        rows = {}
        for name, backend in backends.items():
            log(f"slmcnn backend {name} ...")
            network = network_rate(backend, patches)
            agreement = float((backend.probabilities(patches).argmax(1) == reference_classes).mean())
            end_to_end = slmcnn_pipeline(backend, paths, tmp / "out")
            rows[name] = {
                "layers_per_s": end_to_end,
                "network_patches_per_s": network,
                "network_gflops": network * GFLOP_PER_PATCH,
                "tile_agreement_vs_fp32": agreement,
            }
        figures["backends"] = rows
        auto = create_backend(model, "auto", layers=len(paths))
        if isinstance(auto, OnnxBackend):
            auto_name = "onnx-fp32"
        else:
            auto_name = f"torch-{'compiled-' if auto.compiled else ''}{auto.precision}"
        figures["auto_backend"] = auto_name
        figures["slmcnn_layers_per_s"] = rows[auto_name]["layers_per_s"]
        figures["slmcnn_patches_per_s"] = figures["slmcnn_layers_per_s"] * len(tile(read(paths[0]), 128).patches)
        figures["network_gflops"] = rows[auto_name]["network_gflops"]
        matmul = figures["matmul_bf16_gflops"] if "bf16" in auto_name else figures["matmul_fp32_gflops"]
        figures["network_fraction_of_matmul"] = figures["network_gflops"] / matmul

        log("training patches/s ...")
        figures["train_patches_per_s"] = train_rate("auto")
        figures["train_patches_per_s_fp32"] = train_rate("fp32")

    if "tf_layers_per_s" in figures:
        figures["ratio_layers_vs_tf"] = figures["slmcnn_layers_per_s"] / figures["tf_layers_per_s"]
        figures["ratio_train_vs_tf"] = figures["train_patches_per_s"] / figures["tf_train_patches_per_s"]
        for steps in (50, 500):
            figures[f"ratio_ig_bf16_{steps}_vs_tf"] = (
                figures[f"tf_ig_{steps}_steps_s_per_patch"] / figures[f"ig_bf16_{steps}_steps_s_per_patch"]
            )
            figures[f"ratio_ig_{steps}_vs_tf"] = (
                figures[f"tf_ig_{steps}_steps_s_per_patch"] / figures[f"ig_{steps}_steps_s_per_patch"]
            )
        figures["ratio_ig_default_vs_tf_500"] = (
            figures["tf_ig_500_steps_s_per_patch"] / figures["ig_default_s_per_patch"]
        )
    figures["ratio_layers_vs_torch_eager"] = figures["slmcnn_layers_per_s"] / figures["torch_eager_layers_per_s"]
    if args.json:
        print(json.dumps(figures, indent=1))
    else:
        print_summary(figures)


def print_summary(figures: dict) -> None:
    """The figures as text (`--json` prints them all as one JSON object instead)."""
    print(f"\nmatmul GFLOP/s: fp32 {figures['matmul_fp32_gflops']:.0f}, bf16 {figures['matmul_bf16_gflops']:.0f}")
    if "tf_layers_per_s" in figures:
        print(f"(a) TensorFlow reference pipeline: {figures['tf_layers_per_s']:.2f} layers/s")
    print(f"(b) PyTorch eager reference pipeline: {figures['torch_eager_layers_per_s']:.2f} layers/s")
    print("(c) slmcnn end to end (network patches/s, GFLOP/s, tile agreement with fp32):")
    for name, row in figures["backends"].items():
        print(
            f"    {name:20s} {row['layers_per_s']:6.2f} layers/s  {row['network_patches_per_s']:7.1f} patches/s  "
            f"{row['network_gflops']:6.1f} GFLOP/s  agreement {row['tile_agreement_vs_fp32']:.4f}"
        )
    print(
        f"auto picks {figures['auto_backend']}: {figures['slmcnn_layers_per_s']:.2f} layers/s, network at "
        f"{100 * figures['network_fraction_of_matmul']:.0f}% of matmul GFLOP/s in its precision"
    )
    for key in sorted(k for k in figures if k.startswith("ratio_")):
        print(f"{key}: {figures[key]:.2f}x")
    print(
        f"training: {figures['train_patches_per_s']:.1f} patches/s (fp32 {figures['train_patches_per_s_fp32']:.1f})"
        + (f", TensorFlow {figures['tf_train_patches_per_s']:.1f}" if "tf_train_patches_per_s" in figures else "")
    )
    for precision in ("fp32", "bf16"):
        for steps in (50, DEFAULT_STEPS, 500):
            for method in ("riemann_trapezoid", "gausslegendre", "adaptive"):
                key = f"ig_{precision}_{steps}_steps_{method}"
                if f"{key}_s_per_patch" in figures:
                    print(
                        f"IG {precision} {steps:3d} steps {method:18s} {figures[key + '_s_per_patch']:.3f} s/patch, "
                        f"delta {figures[key + '_delta']:.5f}, attribution error {figures[key + '_attribution_error']:.4f}"
                    )
    print(f"IG bf16 vs fp32 attributions: smallest correlation {figures['ig_bf16_min_correlation_vs_fp32']:.4f}")
    if "tf_ig_50_steps_s_per_patch" in figures:
        for steps in (50, 500):
            print(
                f"IG {steps:3d} steps TensorFlow reference {figures[f'tf_ig_{steps}_steps_s_per_patch']:.3f} s/patch, "
                f"delta {figures[f'tf_ig_{steps}_steps_delta']:.5f}"
            )
        if "tf_ig_500_steps_attribution_error" in figures:
            print(f"  its 500-step attribution error {figures['tf_ig_500_steps_attribution_error']:.4f}")
        print(
            f"default IG ({DEFAULT_STEPS} adaptive steps, fp32): {figures['ig_default_s_per_patch']:.3f} s/patch = "
            f"1/{figures['ratio_ig_default_vs_tf_500']:.1f} of the reference's 500 steps; delta "
            f"{figures['ig_default_delta']:.5f} vs {figures['tf_ig_500_steps_delta']:.5f}"
        )


if __name__ == "__main__":
    main()
