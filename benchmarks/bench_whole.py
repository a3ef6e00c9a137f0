"""Speed as a user feels it: whole processes, the monitor's latency, a big photo; in one run.

Times `slmcnn predict-layer` and the TensorFlow reference (reference_tf.py --predict-only in
.venv-tf, made on first use) as whole processes (start-up, import, model, every layer, files) on
the same folders of 36 and 216 synthetic 768x768 layers, each run alternated and repeated, medians
and ratios printed; slmcnn with an empty compile cache (what `auto` does then), the one-off
compilation, and with the cache filled. Then the monitor: seconds from a layer's arrival (an atomic
rename into the watched folder) to its row in the database, first layer and steady state. Then an
8000x8000 photo: seconds and peak memory (the child's own maxrss). Last, in this process: the
compiled network's patches/s against bf16 matmul and its tile agreement with float32.

    .venv/bin/python benchmarks/bench_whole.py [--repeats 3] [--json] [--skip-tf]
"""

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from tf_env import tf_python  # noqa: E402

HERE = Path(__file__).parent
SLMCNN = [sys.executable, "-m", "slmcnn"]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def timed(command: list[str], env: dict | None = None) -> tuple[float, float]:
    """Wall seconds and peak resident memory (MB) of one whole child process."""
    with tempfile.TemporaryFile() as errors:
        start = time.perf_counter()
        child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=errors)
        _, status, usage = os.wait4(child.pid, 0)  # this child's own rusage, not all children's
        seconds = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            errors.seek(0)
            message = errors.read().decode(errors="replace")[-2000:]
            raise RuntimeError(f"{' '.join(command)} failed ({child.returncode}): {message}")
    return seconds, usage.ru_maxrss / 1024


def make_layers(tmp: Path, count: int) -> dict[int, Path]:
    """Folders of the first 36 and all `count` layers of one synthetic build (PNG, 768x768)."""
    from slmcnn.synth import SynthSettings, generate_build

    build = tmp / "build"
    generate_build(SynthSettings(layers=count, seed=17, jpeg_share=0.0, write_patches=False), build, workers=2)
    layers = sorted((build / "layers").glob("*.png"))
    if len(layers) < 36:
        raise SystemExit("--layers must be at least 36")
    folders = {}
    for n in sorted({36, count}):
        folders[n] = tmp / f"layers{n}"
        folders[n].mkdir()
        for path in layers[:n]:
            os.link(path, folders[n] / path.name)
    return folders


def big_photo(folder: Path, out: Path, side: int = 8000) -> Path:
    """A side x side photo tiled from the build's different layers (a real bed's texture and PNG size)."""
    layers = [cv2.imread(str(p)) for p in sorted(folder.glob("*.png"))]
    n = -(-side // 768)
    rows = [np.hstack([layers[(r * n + c) % len(layers)] for c in range(n)]) for r in range(n)]
    cv2.imwrite(str(out), np.vstack(rows)[:side, :side], [cv2.IMWRITE_PNG_COMPRESSION, 1])
    return out


def whole_runs(commands: dict[str, list[str]], repeats: int, env: dict, out: Path) -> dict[str, list[float]]:
    """Each command `repeats` times, in turn (A B C A B C ...), each into a fresh output folder."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    for r in range(repeats):
        for name, command in commands.items():
            folder = out / f"{name}-{r}"
            seconds, _ = timed([part.replace("{out}", str(folder)) for part in command], env)
            times[name].append(seconds)
            log(f"  {name}: {seconds:.2f} s")
    return times


def monitor_latency(watch_from: Path, tmp: Path, env: dict, layers: int = 12, settle: float = 0.2) -> dict:
    """Start `slmcnn monitor`, wait for its start-up, then move layers in one at a time (1 s apart)
    and time each from its rename to its row in the database."""
    watch, db, out = tmp / "watch", tmp / "monitor.sqlite", tmp / "live"
    watch.mkdir()
    command = [*SLMCNN, "monitor", watch, "--db", db, "--out", out, "--settle", str(settle), "--exit-when-idle", "5"]
    start = time.perf_counter()
    child = subprocess.Popen([str(c) for c in command], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    for line in child.stdout:  # "watching ...": it is ready
        if line.startswith(b"watching"):
            break
    startup = time.perf_counter() - start
    latencies = []
    for path in sorted(watch_from.glob("*.png"))[:layers]:
        shutil.copy(path, watch / f".{path.name}")  # hidden names are not layers
        arrived = time.perf_counter()
        os.replace(watch / f".{path.name}", watch / path.name)
        while True:
            with sqlite3.connect(db) as conn:
                done = conn.execute("SELECT COUNT(*) FROM layers WHERE file = ?", (path.name,)).fetchone()[0]
            if done:
                break
            time.sleep(0.005)
        latencies.append(time.perf_counter() - arrived)
        log(f"  {path.name}: stored {latencies[-1]:.3f} s after it arrived")
        time.sleep(1.0)
    child.wait(timeout=60)
    steady = latencies[1:]
    return {
        "monitor_settle_s": settle,
        "monitor_startup_s": startup,
        "monitor_first_layer_s": latencies[0],
        "monitor_steady_median_s": statistics.median(steady),
        "monitor_steady_max_s": max(steady),
        "monitor_steady_over_settle_s": statistics.median(steady) - settle,
    }


def steady_state(folder: Path) -> dict:
    """The compiled network's rate against bf16 matmul, and its tiles against float32's."""
    import torch
    from bench_predict import GFLOP_PER_PATCH, matmul_gflops

    import slmcnn
    from slmcnn.backends import TorchBackend, create_backend
    from slmcnn.images import read
    from slmcnn.tiles import tile

    model = slmcnn.load_model()
    patches = np.concatenate([tile(read(p), 128).patches for p in sorted(folder.glob("*.png"))])
    compiled = create_backend(model, "compiled")
    compiled.probabilities(patches[:64])
    start = time.perf_counter()
    classes = compiled.probabilities(patches).argmax(1)
    rate = len(patches) / (time.perf_counter() - start)
    reference = TorchBackend(model, "fp32").probabilities(patches).argmax(1)
    matmul = matmul_gflops(torch.bfloat16)
    return {
        "network_patches_per_s": rate,
        "network_gflops": rate * GFLOP_PER_PATCH,
        "matmul_bf16_gflops": matmul,
        "network_fraction_of_matmul": rate * GFLOP_PER_PATCH / matmul,
        "tile_agreement_vs_fp32": float((classes == reference).mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs of each whole command (medians)")
    parser.add_argument("--layers", type=int, default=216)
    parser.add_argument("--skip-tf", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    figures: dict = {"cpu_count": os.cpu_count(), "load_average_at_start": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="slmcnn-whole-") as name:
        tmp = Path(name)
        env = {**os.environ, "SLMCNN_CACHE": str(tmp / "cache")}  # empty: nothing compiled yet
        log(f"generating {args.layers} layers ...")
        folders = make_layers(tmp, args.layers)
        small, large = folders[36], folders[args.layers]
        predict = [*SLMCNN, "predict-layer", "--out", "{out}"]

        log("slmcnn with an empty cache (auto: eager bf16), then compiling once ...")
        figures["cold_36_s"], _ = timed([*predict[:-1], str(tmp / "cold36"), str(small)], env)
        figures["cold_216_s"], _ = timed([*predict[:-1], str(tmp / "cold216"), str(large)], env)
        figures["compile_s"], _ = timed([sys.executable, "-m", "slmcnn.aot"], env)

        commands = {}
        for n, folder in ((36, small), (args.layers, large)):
            commands[f"slmcnn_{n}"] = [*predict, str(folder)]
            commands[f"slmcnn_torch_{n}"] = [*predict, str(folder), "--backend", "torch"]
            if not args.skip_tf:
                reference = [str(tf_python()), str(HERE / "reference_tf.py"), str(folder), "{out}", "--predict-only"]
                commands[f"tf_{n}"] = reference
        log(f"whole processes, {args.repeats} runs each, in turn ...")
        times = whole_runs(commands, args.repeats, env, tmp / "runs")
        for name, values in times.items():
            figures[f"{name}_s"] = statistics.median(values)
            figures[f"{name}_runs_s"] = [round(v, 3) for v in values]
        for n in (36, args.layers):
            if f"tf_{n}_s" in figures:
                figures[f"ratio_{n}_vs_tf"] = figures[f"tf_{n}_s"] / figures[f"slmcnn_{n}_s"]
                figures[f"ratio_{n}_cold_vs_tf"] = figures[f"tf_{n}_s"] / figures[f"cold_{n}_s"]
                figures[f"ratio_{n}_torch_vs_tf"] = figures[f"tf_{n}_s"] / figures[f"slmcnn_torch_{n}_s"]

        log("monitor latency ...")
        figures.update(monitor_latency(large, tmp, env))

        log("an 8000x8000 photo ...")
        photo = big_photo(large, tmp / "big.png")
        figures["big_photo_mb"] = photo.stat().st_size / 2**20
        runs = [timed([*predict[:-1], str(tmp / f"big{r}"), str(photo)], env) for r in range(args.repeats)]
        figures["big_photo_s"] = statistics.median(r[0] for r in runs)
        figures["big_photo_peak_mb"] = max(r[1] for r in runs)

        log("steady state ...")
        os.environ["SLMCNN_CACHE"] = env["SLMCNN_CACHE"]
        figures.update(steady_state(small))
    figures["load_average_at_end"] = os.getloadavg()
    if args.json:
        print(json.dumps(figures, indent=1))
    else:
        print_summary(figures, args.layers)


def print_summary(f: dict, layers: int) -> None:
    print(f"load average at start {f['load_average_at_start']}, at end {f['load_average_at_end']}")
    print("whole `slmcnn predict-layer` processes (median seconds):")
    for n in (36, layers):
        tf = f" | TensorFlow reference {f[f'tf_{n}_s']:.2f}" if f"tf_{n}_s" in f else ""
        print(
            f"  {n:4d} layers: auto, compiled cached {f[f'slmcnn_{n}_s']:.2f} | auto, empty cache "
            f"{f[f'cold_{n}_s']:.2f} | --backend torch {f[f'slmcnn_torch_{n}_s']:.2f}{tf}"
        )
    print(f"  compiling once (python -m slmcnn.aot): {f['compile_s']:.1f} s")
    for key in sorted(k for k in f if k.startswith("ratio_")):
        print(f"  {key}: {f[key]:.2f}x")
    print(
        f"monitor: start-up {f['monitor_startup_s']:.1f} s; first layer stored {f['monitor_first_layer_s']:.3f} s after "
        f"it arrived; then median {f['monitor_steady_median_s']:.3f} s (max {f['monitor_steady_max_s']:.3f}) = "
        f"settle {f['monitor_settle_s']} s + {f['monitor_steady_over_settle_s']:.3f} s"
    )
    print(
        f"8000x8000 photo ({f['big_photo_mb']:.0f} MB PNG): {f['big_photo_s']:.2f} s, peak {f['big_photo_peak_mb']:.0f} MB"
    )
    print(
        f"steady state: compiled bf16 network {f['network_patches_per_s']:.0f} patches/s = {f['network_gflops']:.0f} "
        f"GFLOP/s = {100 * f['network_fraction_of_matmul']:.0f}% of bf16 matmul ({f['matmul_bf16_gflops']:.0f}); "
        f"tiles agreeing with fp32 {f['tile_agreement_vs_fp32']:.4f}"
    )


if __name__ == "__main__":
    main()
