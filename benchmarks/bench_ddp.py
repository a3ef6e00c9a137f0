"""`train --nproc 2` against one process: validation accuracy on a held-out build of thousands of
patches over several seeds (the same seed, data and batch for both), and the speed ratios per epoch
and of the whole command.

Two synthetic builds (slmcnn synth, 768x768 layers, 36 patches each): one to train on (--layers)
and one to validate on (--val-layers: 100 layers are 3,600 patches), or --data and --val. For each
seed the network (--arch: the reference by default) trains --epochs epochs in one process and in
two (DDP, gloo), the modes alternating. Printed: each run's last and best validation accuracy; per
mode their mean and spread (sample standard deviation, min, max); the paired difference two minus
one per seed (mean, standard deviation); the median seconds per epoch after the first and the
whole command's seconds with their ratios; the load average beside each run.

    .venv/bin/python benchmarks/bench_ddp.py [--data DIR --val DIR | --layers 40 --val-layers 100]
        [--arch slmcnn] [--seeds 0,1,2] [--epochs 5] [--json]
"""

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def load() -> str:
    return "{:.1f} {:.1f} {:.1f}".format(*os.getloadavg())


def synth(folder: Path, layers: int, seed: int) -> Path:
    command = [sys.executable, "-m", "slmcnn", "synth", str(folder), "--layers", str(layers), "--seed", str(seed)]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return folder


def train(data: Path, val: Path, out: Path, nproc: int, arch: str, epochs: int, seed: int) -> dict:
    """One training command; its validation accuracies and times."""
    import slmcnn

    settings = dict(arch=arch, epochs=epochs, seed=seed, lr=1e-3, patience=epochs, precision="fp32")
    before, started = load(), time.perf_counter()
    slmcnn.train(data, out, val=[val], nproc=nproc, **settings)
    whole = time.perf_counter() - started
    rows = list(csv.DictReader(open(out / "history.csv")))
    times = [float(r["seconds"]) for r in rows]
    epoch_seconds = [b - a for a, b in zip(times, times[1:])] or times
    accuracy = [float(r["val_accuracy"]) for r in rows]
    return {
        "seed": seed,
        "nproc": nproc,
        "last_val_accuracy": accuracy[-1],
        "best_val_accuracy": max(accuracy),
        "epoch_s": statistics.median(epoch_seconds),
        "whole_s": whole,
        "load_before": before,
        "load_after": load(),
    }


def spread(values: list[float]) -> dict:
    return {
        "mean": round(statistics.mean(values), 4),
        "sd": round(statistics.stdev(values), 4) if len(values) > 1 else None,
        "min": round(min(values), 4),
        "max": round(max(values), 4),
    }


def validation_patches(val: Path) -> int:
    from slmcnn.data import load_sources

    return len(load_sources([val]))  # train validates on every patch of a --val source


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, help="labelled patches to train on (default: synthesise --layers)")
    parser.add_argument("--val", type=Path, help="labelled patches to validate on (default: synthesise --val-layers)")
    parser.add_argument("--layers", type=int, default=40)
    parser.add_argument("--val-layers", type=int, default=100)
    parser.add_argument("--arch", default="slmcnn")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="slmcnn-ddp-"))
    runs: list[dict] = []
    try:
        data = args.data or synth(scratch / "train", args.layers, 11)
        val = args.val or synth(scratch / "val", args.val_layers, 12)
        for seed in map(int, args.seeds.split(",")):
            for nproc in (1, 2) if seed % 2 == 0 else (2, 1):  # neither mode always runs first
                runs.append(train(data, val, scratch / f"{seed}-{nproc}", nproc, args.arch, args.epochs, seed))
                log(json.dumps(runs[-1]))
        patches = validation_patches(val)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    by = {n: sorted((r for r in runs if r["nproc"] == n), key=lambda r: r["seed"]) for n in (1, 2)}
    paired = [two["last_val_accuracy"] - one["last_val_accuracy"] for one, two in zip(by[1], by[2])]
    epoch = {n: statistics.median(r["epoch_s"] for r in by[n]) for n in (1, 2)}
    whole = {n: statistics.median(r["whole_s"] for r in by[n]) for n in (1, 2)}
    report = {
        "arch, epochs, seeds": [args.arch, args.epochs, args.seeds],
        "validation patches": patches,
        "last val accuracy, 1 process": spread([r["last_val_accuracy"] for r in by[1]]),
        "last val accuracy, 2 processes": spread([r["last_val_accuracy"] for r in by[2]]),
        "best val accuracy, 1 process": spread([r["best_val_accuracy"] for r in by[1]]),
        "best val accuracy, 2 processes": spread([r["best_val_accuracy"] for r in by[2]]),
        "paired difference 2 - 1 (last)": spread(paired),
        "s/epoch 1 vs 2 processes (median)": [round(epoch[1], 2), round(epoch[2], 2)],
        "speed-up per epoch": round(epoch[1] / epoch[2], 2),
        "whole command s 1 vs 2 processes (median)": [round(whole[1], 1), round(whole[2], 1)],
        "speed-up whole command": round(whole[1] / whole[2], 2),
        "load before/after each run": [(r["seed"], r["nproc"], r["load_before"], r["load_after"]) for r in runs],
    }
    print(json.dumps(report, indent=1) if args.json else "\n".join(f"{k}: {v}" for k, v in report.items()))


if __name__ == "__main__":
    main()
