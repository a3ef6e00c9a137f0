"""Layers per second on Ray (`predict-layer --ray`) with 1 and 2 workers against the local path, on
one archive, in one run, with the results compared tile for tile.

Each configuration classifies the whole archive and writes the usual files (overlay, class map,
JSON) to a scratch folder: the local path (pipeline.run_layers in this process, torch on every
core), then a fresh local Ray cluster with 1 worker and one with 2 (one CPU each). Printed per run:
the steady rate (layers after each worker's first batch, over the time from the first row's arrival
to the last's: model loading and the cluster's start left out) and the whole run's seconds
(cluster start included), then the ratios of the steady rates and whether every tile class equals
the local path's. `--repeats` alternates the configurations; medians are printed.

    .venv/bin/python benchmarks/bench_ray.py [--archive DIR | --layers 500] [--model M]
        [--backend auto] [--repeats 1] [--json]
"""

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def make_archive(folder: Path, layers: int) -> Path:
    """Synthetic 768x768 layers (slmcnn synth, photos and masks only)."""
    command = [sys.executable, "-m", "slmcnn", "synth", str(folder), "--layers", str(layers), "--seed", "3"]
    subprocess.run([*command, "--no-patches"], check=True, stdout=subprocess.DEVNULL)
    return folder / "layers"


def steady_rate(arrivals: list[float], first: int) -> float:
    """Layers per second after the first `first` rows (each worker's first batch; half, for a tiny archive)."""
    arrivals, first = sorted(arrivals), max(1, min(first, len(arrivals) // 2))
    return (len(arrivals) - first) / (arrivals[-1] - arrivals[first - 1])


def run_local(paths: list[Path], out: Path, model_path, backend: str) -> tuple[dict, np.ndarray]:
    from slmcnn.backends import create_engine
    from slmcnn.checkpoint import open_model
    from slmcnn.outputs import RunFiles
    from slmcnn.pipeline import RunOptions, run_layers

    start = time.perf_counter()
    model = open_model(model_path)
    engine = create_engine(model, backend, layers=len(paths))
    arrivals, classes = [], []
    with RunFiles(out, inputs=paths) as files:
        options = RunOptions(patch=model.info.patch, model_name=model.source.name)
        for outcome in run_layers(paths, engine.backend, options, files=files):
            arrivals.append(time.perf_counter())
            classes.append(outcome.result.tile_classes.ravel())
    seconds = time.perf_counter() - start
    engine_name = getattr(engine.backend, "name", type(engine.backend).__name__)
    return {"steady": steady_rate(arrivals, 16), "seconds": seconds, "engine": engine_name}, np.concatenate(classes)


def run_ray(paths: list[Path], out: Path, model_path, backend: str, workers: int) -> tuple[dict, np.ndarray]:
    from slmcnn.archive import LAYERS_PER_BATCH, ArchiveJob, run_archive

    arrivals = []
    job = ArchiveJob(str(out), len(paths), str(model_path) if model_path else None, backend)
    run = run_archive(job, paths, None, workers, progress=lambda row: arrivals.append(time.perf_counter()))
    classes = np.concatenate([row["tile_classes"] for row in run.layers])
    steady = steady_rate(arrivals, LAYERS_PER_BATCH * workers)
    return {"steady": steady, "seconds": run.seconds, "workers": len({r["worker"] for r in run.layers})}, classes


def stages(paths: list[Path], out: Path, model_path, backend: str) -> dict:
    """Where one worker's time goes, per layer, on one thread: reading the photo, classifying it
    (tiles, network, stitching), writing its files; and the layer's share of the result row."""
    import pyarrow as pa
    import torch

    from slmcnn.archive import ArchiveJob, layer_pipeline, layer_row, schema
    from slmcnn.images import read
    from slmcnn.outputs import layer_files, write_layer

    torch.set_num_threads(1)
    out.mkdir(parents=True)
    pipeline = layer_pipeline(ArchiveJob(str(out), len(paths), model_path, backend), None)
    spent = dict.fromkeys(("read", "classify", "files", "row"), 0.0)
    for path in paths:
        start = time.perf_counter()
        image = read(path)
        read_done = time.perf_counter()
        (outcome,) = pipeline.run([(str(path), image)])
        classified = time.perf_counter()
        write_layer(outcome, layer_files(out, path.stem, ("overlay", "classes", "json")))
        written = time.perf_counter()
        pa.Table.from_pylist([layer_row(0, outcome, "w")], schema())
        spent["read"] += read_done - start
        spent["classify"] += classified - read_done
        spent["files"] += written - classified
        spent["row"] += time.perf_counter() - written
    return {name: round(1000 * seconds / len(paths), 1) for name, seconds in spent.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archive", type=Path, help="a folder of layer photos (default: synthesise --layers)")
    parser.add_argument("--layers", type=int, default=500)
    parser.add_argument("--model", help="model file (default: the shipped model)")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--stage-layers", type=int, default=50, help="layers timed stage by stage")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from slmcnn.images import list_images

    scratch = Path(tempfile.mkdtemp(prefix="slmcnn-ray-"))
    try:
        folder = args.archive or make_archive(scratch / "archive", args.layers)
        paths = list_images([folder])
        log(f"{len(paths)} layers in {folder}")
        runs: dict[str, list[dict]] = {"local": [], "ray 1 worker": [], "ray 2 workers": []}
        reference, same = None, {}
        for repeat in range(args.repeats):
            for name in runs:
                out = scratch / f"out-{repeat}-{len(runs[name])}-{name.replace(' ', '-')}"
                if name == "local":
                    figures, classes = run_local(paths, out, args.model, args.backend)
                else:
                    figures, classes = run_ray(paths, out, args.model, args.backend, int(name.split()[1]))
                shutil.rmtree(out)
                reference = classes if reference is None else reference
                same[name] = same.get(name, True) and np.array_equal(classes, reference)
                runs[name].append(figures)
                log(f"{name}: {figures['steady']:.2f} layers/s steady, {figures['seconds']:.1f} s whole run")
        spent = stages(paths[: args.stage_layers], scratch / "stages", args.model, args.backend)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    median = {name: statistics.median(r["steady"] for r in rows) for name, rows in runs.items()}
    report = {
        "layers": len(paths),
        "engine (local)": runs["local"][0]["engine"],
        "layers/s steady (median)": {name: round(value, 2) for name, value in median.items()},
        "whole run s (median)": {
            name: round(statistics.median(r["seconds"] for r in rows), 1) for name, rows in runs.items()
        },
        "ray 2 workers / 1 worker": round(median["ray 2 workers"] / median["ray 1 worker"], 2),
        "ray 2 workers / local": round(median["ray 2 workers"] / median["local"], 2),
        "ray 1 worker / local": round(median["ray 1 worker"] / median["local"], 2),
        "tile classes equal to the local path's": same,
        "one worker's ms per layer, one thread": spent,
    }
    print(json.dumps(report, indent=1) if args.json else "\n".join(f"{k}: {v}" for k, v in report.items()))


if __name__ == "__main__":
    main()
