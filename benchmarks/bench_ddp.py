"""`train --nproc 2` against one process, in one run: validation accuracy (same seeds, same data)
and the speed-up per epoch.

A synthetic build (slmcnn synth, 768x768 layers, 36 patches each; or `--data`) split by layer. For
each seed the tiny network trains `--epochs` epochs in one process and in two (DDP, gloo); printed:
each run's best validation accuracy, the mean difference two minus one, and the median seconds per
epoch (the first epoch left out) with their ratio. Then the reference network (`--arch slmcnn`) for
`--ref-epochs` epochs, one seed: its speed-up, where the work per patch is the model's, not Python's.

    .venv/bin/python benchmarks/bench_ddp.py [--data DIR] [--layers 40] [--seeds 0,1,2] [--epochs 15]
        [--ref-epochs 2] [--json]
"""

import argparse
import csv
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def train(data: Path, out: Path, nproc: int, arch: str, epochs: int, seed: int) -> dict:
    """One training run; its best validation accuracy and median seconds per epoch after the first."""
    import slmcnn

    settings = dict(arch=arch, epochs=epochs, seed=seed, lr=1e-3, patience=epochs, precision="fp32")
    slmcnn.train(data, out, nproc=nproc, **settings)
    rows = list(csv.DictReader(open(out / "history.csv")))
    times = [float(r["seconds"]) for r in rows]
    epoch_seconds = [b - a for a, b in zip(times, times[1:])] or times
    return {
        "best_val_accuracy": max(float(r["val_accuracy"]) for r in rows),
        "epoch_s": statistics.median(epoch_seconds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, help="labelled patches (default: synthesise --layers)")
    parser.add_argument("--layers", type=int, default=40)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--ref-epochs", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="slmcnn-ddp-"))
    try:
        data = args.data
        if data is None:
            data = scratch / "build"
            command = [sys.executable, "-m", "slmcnn", "synth", str(data), "--layers", str(args.layers), "--seed", "11"]
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        tiny: dict[int, list[dict]] = {1: [], 2: []}
        for seed in map(int, args.seeds.split(",")):
            for nproc in (1, 2):
                tiny[nproc].append(
                    train(data, scratch / f"tiny-{seed}-{nproc}", nproc, "slmcnn-tiny", args.epochs, seed)
                )
                log(f"slmcnn-tiny seed {seed}, {nproc} process(es): {tiny[nproc][-1]}")
        reference = {n: train(data, scratch / f"ref-{n}", n, "slmcnn", args.ref_epochs, 0) for n in (1, 2)}
        log(f"slmcnn: {reference}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    accuracy = {n: [r["best_val_accuracy"] for r in runs] for n, runs in tiny.items()}
    epoch = {n: statistics.median(r["epoch_s"] for r in runs) for n, runs in tiny.items()}
    report = {
        "best val accuracy, 1 process (per seed)": [round(a, 4) for a in accuracy[1]],
        "best val accuracy, 2 processes (per seed)": [round(a, 4) for a in accuracy[2]],
        "mean difference 2 - 1": round(statistics.mean(accuracy[2]) - statistics.mean(accuracy[1]), 4),
        "slmcnn-tiny s/epoch 1 vs 2 processes": [round(epoch[1], 2), round(epoch[2], 2)],
        "slmcnn-tiny speed-up 2 processes": round(epoch[1] / epoch[2], 2),
        "slmcnn s/epoch 1 vs 2 processes": [round(reference[n]["epoch_s"], 2) for n in (1, 2)],
        "slmcnn speed-up 2 processes": round(reference[1]["epoch_s"] / reference[2]["epoch_s"], 2),
    }
    print(json.dumps(report, indent=1) if args.json else "\n".join(f"{k}: {v}" for k, v in report.items()))


if __name__ == "__main__":
    main()
