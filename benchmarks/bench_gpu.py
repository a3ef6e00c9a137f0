"""The GPU path (#42 item 3), measured in one prepared run: layers per second through the product's
layer pipeline, the network's patches per second, training patches per second, and how far the
device's probabilities are from the CPU's.

    python benchmarks/bench_gpu.py                      # device auto: a CUDA GPU when there is one
    python benchmarks/bench_gpu.py --device cpu --layers 6 --train-steps 4   # the same on the CPU
    python benchmarks/bench_gpu.py --json $OUT/gpu.json

Layers are synthetic (slmcnn.synth, seed fixed, rendered in memory), classified by `run_layers`
with the shipped model on the device (`create_backend(..., "torch", device=...)`), fine maps (their
dense maps on the same device) and the tile grid each timed after a warm-up pass; the first
`--learn` layers of a build are where its fine maps learn, so they are part of the figure as in a
real build. Training: the step train.py runs (flips, standardisation, bf16 autocast where the device
has it, cross entropy, Adam) on the layers' tiles with labels drawn at random: only the rate counts.
Agreement: every tile's probabilities on the device in its precision against eager PyTorch fp32 on
the CPU (the reference), within TOLERANCE; on a machine without a GPU that is the CPU's own
precision against fp32. No figure is asserted anywhere: this prints what it measured.
"""

import argparse
import json
import platform
import sys
import time

import numpy as np
import torch

TOLERANCE = 0.05  # largest probability difference a device may show against CPU fp32 (the bf16 package's bar)
AGREEMENT = 0.995  # share of tiles classified alike (auto's bar for bf16 and int8, backends/choice.py)


def layers(count: int, size: int, seed: int) -> list[tuple[str, np.ndarray]]:
    from slmcnn.synth.build import SynthSettings, plan_build, render_layer

    plan = plan_build(SynthSettings(layers=count, seed=seed, size=size, jpeg_share=0.0))
    return [(f"build/{n:05d}.png", render_layer(plan, n).image) for n in range(1, count + 1)]


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def layer_rate(model, backend, items, maps: str, learn: int) -> float:
    """Layers per second of the whole pipeline (decode skipped: arrays), after one warm-up pass."""
    from slmcnn.pipeline import RunOptions, run_layers

    options = RunOptions(maps=maps, learn=learn, workers=2)
    list(run_layers(items[: learn + 1], backend, options, model=model))  # kernels, memory, first calls
    start = time.perf_counter()
    done = sum(outcome.result is not None for outcome in run_layers(items, backend, options, model=model))
    return done / (time.perf_counter() - start)


def network_rate(backend, patches: np.ndarray) -> float:
    backend.probabilities(patches[:64])
    start = time.perf_counter()
    backend.probabilities(patches)
    return len(patches) / (time.perf_counter() - start)


def training_rate(device: torch.device, precision: str, patches: np.ndarray, batch: int, steps: int) -> float:
    """Training patches per second of train.py's step on a fresh reference network."""
    from slmcnn.model import create_model
    from slmcnn.precision import autocast
    from slmcnn.preprocess import prepare
    from slmcnn.train import random_flips

    torch.manual_seed(0)
    model = create_model("slmcnn").to(device, memory_format=torch.channels_last).train()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-4)
    loss_fn = torch.nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(0)
    x_all = torch.from_numpy(patches).to(device)
    y_all = torch.randint(0, 3, (len(patches),), generator=generator).to(device)

    def step(i: int) -> None:
        idx = torch.randint(0, len(patches), (batch,), generator=generator).to(device)
        x = prepare(random_flips(x_all[idx], generator, False))
        with autocast(device, precision):
            logits = model(x)
        loss = loss_fn(logits.float(), y_all[idx])
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()

    for i in range(2):  # warm-up
        step(i)
    synchronise(device)
    start = time.perf_counter()
    for i in range(steps):
        step(i)
    synchronise(device)
    return steps * batch / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--layers", type=int, default=24, help="synthetic layers per timing")
    parser.add_argument("--size", type=int, default=768, help="side of a layer in px (768: 36 tiles)")
    parser.add_argument("--learn", type=int, default=5, help="first layers the fine maps learn from")
    parser.add_argument("--train-batch", type=int, default=64)
    parser.add_argument("--train-steps", type=int, default=20)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)

    import slmcnn
    from slmcnn.backends import TorchBackend, create_backend
    from slmcnn.errors import SlmcnnError
    from slmcnn.precision import bf16_supported, resolve_device, resolve_precision
    from slmcnn.tiles import tile

    try:
        device = resolve_device(args.device)
    except SlmcnnError as exc:
        print(f"bench_gpu: {exc}", file=sys.stderr)
        return 2
    precision = resolve_precision(args.precision, device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "CPU"
    print(
        f"device {device.type} ({name}; native bf16: {bf16_supported(device)}), precision {precision}, torch {torch.__version__}"
    )
    if device.type == "cpu":
        print("no GPU here: every figure is the CPU's, and the agreement is its own precision against fp32")

    model = slmcnn.load_model()
    items = layers(args.layers, args.size, args.seed)
    patches = np.concatenate([tile(image, model.spec.patch).patches for _, image in items])
    backend = create_backend(model, "torch", precision, device=device)
    figures = {"device": device.type, "name": name, "precision": precision, "torch": torch.__version__}
    figures["network_patches_per_s"] = network_rate(backend, patches)
    print(f"network: {figures['network_patches_per_s']:.0f} patches/s ({len(patches)} patches, batch {backend.batch})")
    for maps in ("fine", "tiles"):
        rate = layer_rate(model, backend, items, maps, args.learn)
        figures[f"layers_per_s_{maps}"] = rate
        print(f"layers ({maps} maps): {rate:.2f} layers/s over {len(items)} layers of {args.size} px")
    rate = training_rate(device, precision, patches, args.train_batch, args.train_steps)
    figures["training_patches_per_s"] = rate
    print(f"training: {rate:.0f} patches/s (batch {args.train_batch}, {args.train_steps} steps)")

    reference = TorchBackend(model, "fp32", device="cpu").probabilities(patches)
    on_device = backend.probabilities(patches)
    difference = float(np.abs(on_device - reference).max())
    alike = float((on_device.argmax(1) == reference.argmax(1)).mean())
    figures.update(max_probability_difference=difference, tiles_alike=alike)
    within = difference <= TOLERANCE and alike >= AGREEMENT
    print(
        f"{device.type} {precision} against CPU fp32: largest probability difference {difference:.4f}, "
        f"tiles alike {100 * alike:.2f}% ({'within' if within else 'OUTSIDE'} {TOLERANCE} / {100 * AGREEMENT:.1f}%)"
    )
    if args.json:
        with open(args.json, "w") as file:
            json.dump(figures, file, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
