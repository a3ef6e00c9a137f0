"""Speed as a user feels it: whole processes, where they spend their time, the monitor's latency,
a big photo; in one run.

Times `slmcnn predict-layer` and the TensorFlow reference (reference_tf.py --predict-only in
.venv-tf, made on first use) as whole processes (start-up, import, model, every layer, files) on
the same folders of 36 and 216 layers (synthetic 768x768, or the first photos of `--folder`), each
run alternated and repeated, medians and ratios printed; slmcnn with its defaults (fine maps on)
and, in part `tiles`, with `--map tiles` (the reference's output); slmcnn with an empty cache first (what
`auto` does then: eager bf16, and on a CPU without AMX the engines timed once after the job, in a
process of its own, which is waited for), then with the cache filled.
Then each stage of a process alone on the large folder (start-up, imports, model and engine,
decode, tiles, network, stitching, the fine maps' texture and the rest of them, PNG writing, JSON),
so the slow stage shows on any CPU. Then the
monitor: seconds from a layer's arrival (an atomic rename into the watched folder) to its row in the
database. Then an 8000x8000 photo: seconds and peak memory (the child's own maxrss). Last, in this
process: the chosen network's patches/s against matmul and its tile agreement with float32.

    .venv/bin/python benchmarks/bench_whole.py [--repeats 3] [--layers 216] [--folder DIR]
        [--parts stages,variants,tiles,monitor,photo,steady] [--json] [--skip-tf]
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


def background_timing_seconds(limit: float = 600.0) -> float:
    """Seconds until no `python -m slmcnn.backends` runs: the engines' timing that `auto`
    starts after a first job (it would load the machine under the timed runs)."""
    start = time.perf_counter()
    while time.perf_counter() - start < limit and any(
        b"\0slmcnn.backends\0" in cmdline.read_bytes()
        for cmdline in Path("/proc").glob("[0-9]*/cmdline")
        if cmdline.exists()
    ):
        time.sleep(0.5)
    return time.perf_counter() - start


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
    from slmcnn.images import list_images

    layers = [cv2.imread(str(p)) for p in list_images([str(folder)])[:64]]
    n = -(-side // layers[0].shape[0])
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
    and time each from its rename to its row in the database and, for a layer graded minor or
    critical, to its alert raised (printed, in alerts.jsonl, handed to --on-alert)."""
    watch, db, out = tmp / "watch", tmp / "monitor.sqlite", tmp / "live"
    watch.mkdir()
    command = [*SLMCNN, "monitor", watch, "--db", db, "--out", out, "--settle", str(settle), "--exit-when-idle", "5"]
    start = time.perf_counter()
    child = subprocess.Popen([str(c) for c in command], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    for line in child.stdout:  # "watching ...": it is ready
        if line.startswith(b"watching"):
            break
    startup = time.perf_counter() - start
    latencies, alerted = [], []
    from slmcnn.images import list_images

    for path in list_images([str(watch_from)])[:layers]:
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
        alerted.append(alert_raised(db, path.name, arrived))
        if alerted[-1] is not None:
            log(f"  {path.name}: alert raised {alerted[-1]:.3f} s after it arrived")
        time.sleep(1.0)
    child.wait(timeout=60)
    steady, steady_alerts = latencies[1:], [a for a in alerted[1:] if a is not None]
    return {
        "monitor_first_alert_s": alerted[0],
        "monitor_steady_alert_median_s": statistics.median(steady_alerts) if steady_alerts else None,
        "monitor_alerts": sum(a is not None for a in alerted),
        "monitor_settle_s": settle,
        "monitor_startup_s": startup,
        "monitor_first_layer_s": latencies[0],
        "monitor_steady_median_s": statistics.median(steady),
        "monitor_steady_max_s": max(steady),
        "monitor_steady_over_settle_s": statistics.median(steady) - settle,
    }


def alert_raised(db: Path, name: str, arrived: float, wait: float = 5.0) -> float | None:
    """Seconds from a layer's arrival to its alert raised; None for a layer graded ok, or whose
    alert is not raised within `wait` s (a minor layer with one Error tile is only logged)."""
    while time.perf_counter() - arrived < wait:
        with sqlite3.connect(db) as conn:
            grade = conn.execute("SELECT grade FROM layers WHERE file = ?", (name,)).fetchone()
            raised = conn.execute("SELECT raised FROM alerts WHERE file = ?", (name,)).fetchone()
        if grade is not None and grade[0] == "ok":
            return None
        if raised is not None and raised[0]:
            return time.perf_counter() - arrived
        time.sleep(0.005)
    return None


def median_wall(command: list[str], env: dict, repeats: int = 3) -> float:
    return statistics.median(timed(command, env)[0] for _ in range(repeats))


def stage_seconds(folder: Path, env: dict) -> dict[str, float]:
    """Each stage of `predict-layer` alone, one after another, on every layer of `folder`, with the
    engine `auto` picks (its choice cached in env's SLMCNN_CACHE): the seconds a whole process
    would spend in each if nothing overlapped. Start-up and imports are whole child processes."""
    from slmcnn import images, render
    from slmcnn.backends import create_backend
    from slmcnn.checkpoint import open_model
    from slmcnn.files import write_text
    from slmcnn.finemaps import FineMapper
    from slmcnn.outputs import layer_document
    from slmcnn.pngstrips import write_png_strips
    from slmcnn.predict import LayerOutcome, LayerResult, classify_pixels
    from slmcnn.tiles import cut, geometry

    python = [sys.executable, "-c"]
    seconds = {"start-up (python)": median_wall([*python, "pass"], env)}
    imports = median_wall([*python, "import slmcnn.cli, slmcnn.pipeline, slmcnn.backends"], env)
    seconds["imports"] = imports - seconds["start-up (python)"]
    os.environ["SLMCNN_CACHE"] = env["SLMCNN_CACHE"]
    paths = images.list_images([str(folder)])
    clock = time.perf_counter()
    model = open_model(None)
    backend = create_backend(model, "auto", layers=len(paths))
    backend.probabilities(np.zeros((16, 128, 128, 3), np.uint8))
    seconds["model + engine"] = time.perf_counter() - clock
    seconds["engine"] = getattr(backend, "chosen", type(backend).__name__)

    def stage(name, work, items):
        start = time.perf_counter()
        done = [work(item) for item in items]
        seconds[name] = time.perf_counter() - start
        return done

    photos = stage("decode", images.read, paths)
    grids = [geometry(p.shape[0], p.shape[1], 128, 128) for p in photos]
    patches = stage("tiles", lambda pair: cut(*pair), zip(photos, grids))
    batches = [np.concatenate(patches[i : i + 7]) for i in range(0, len(patches), 7)]  # Predictor's 256 tiles
    probabilities = np.concatenate(stage("network", backend.probabilities, batches))
    per_layer = np.split(probabilities, np.cumsum([g.count for g in grids])[:-1])
    maps = stage("stitching", lambda pair: classify_pixels(*pair)[0], zip(grids, per_layer))
    results = [
        LayerOutcome(path, LayerResult(path, photos[i], grids[i], per_layer[i], maps[i], 0.0, "model"))
        for i, path in enumerate(paths)
    ]
    mapper = FineMapper(model)  # the default --map fine: a build's first layers learn, the others are judged
    seen = stage("fine: texture", mapper.see, photos)
    for outcome, made in zip(results, seen, strict=True):
        outcome.result.seen = made
    fine = stage("fine: the rest", lambda outcome: mapper(outcome.result), results)
    for outcome, made in zip(results, fine, strict=True):
        outcome.result.fine, outcome.result.class_map = made, made.classes
    maps = [made.classes for made in fine]
    out = Path(tempfile.mkdtemp(prefix="slmcnn-stages-"))

    def png(i):
        image, classes, (height, width) = photos[i], maps[i], maps[i].shape
        write_png_strips(out / f"{i}.o.png", height, width, 3, lambda a, b: render.overlay(image[a:b], classes[a:b]))
        write_png_strips(out / f"{i}.c.png", height, width, 1, lambda a, b: classes[a:b])

    stage("PNG writing", png, range(len(paths)))
    stage("JSON", lambda i: write_text(out / f"{i}.json", json.dumps(layer_document(results[i]))), range(len(paths)))
    shutil.rmtree(out)
    return seconds


def steady_state(folder: Path) -> dict:
    """The network `auto` chose (cached in SLMCNN_CACHE): its rate against matmul of its precision
    measured now, and its tiles against float32's."""
    import torch
    from bench_predict import GFLOP_PER_PATCH, matmul_gflops

    import slmcnn
    from slmcnn.backends import TorchBackend, create_backend
    from slmcnn.images import list_images, read
    from slmcnn.tiles import tile

    model = slmcnn.load_model()
    patches = np.concatenate([tile(read(p), 128).patches for p in list_images([str(folder)])])
    chosen = create_backend(model, "auto", patches=len(patches))
    name = getattr(chosen, "chosen", "compiled-bf16" if getattr(chosen, "compiled", False) else type(chosen).__name__)
    chosen.probabilities(patches[:64])
    start = time.perf_counter()
    classes = chosen.probabilities(patches).argmax(1)
    rate = len(patches) / (time.perf_counter() - start)
    reference = TorchBackend(model, "fp32").probabilities(patches).argmax(1)
    precision = "bf16" if name.endswith("bf16") else "fp32"
    matmul = matmul_gflops(torch.bfloat16 if precision == "bf16" else torch.float32)
    return {
        "network_engine": name,
        "network_patches_per_s": rate,
        "network_gflops": rate * GFLOP_PER_PATCH,
        "matmul_precision": precision,
        "matmul_gflops": matmul,
        "network_fraction_of_matmul": rate * GFLOP_PER_PATCH / matmul,
        "tile_agreement_vs_fp32": float((classes == reference).mean()),
    }


def cpu_line() -> str:
    """The CPU and the flags that decide the engines: vector width, bf16, AMX, VNNI."""
    from slmcnn import aot
    from slmcnn.precision import amx_supported, bf16_supported

    _, model, flags, isa = aot.cpu_signature().split("|")
    shown = [f for f in flags.split() if f.startswith(("avx", "amx", "fma", "f16c")) or "vnni" in f]
    return (
        f"{model}, {os.cpu_count()} cores; flags {' '.join(shown)}; torch ISA {isa}; "
        f"native bf16 {bf16_supported()}; AMX {amx_supported()}"
    )


PARTS = ("stages", "variants", "tiles", "monitor", "photo", "steady")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs of each whole command (medians)")
    parser.add_argument("--layers", type=int, default=216)
    parser.add_argument("--folder", type=Path, help="real layers (PNG/JPEG) instead of synthetic: the first --layers")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"what to measure, of {','.join(PARTS)}")
    parser.add_argument("--skip-tf", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    figures: dict = {"cpu": cpu_line(), "layers": args.layers, "load_average_at_start": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="slmcnn-whole-") as name:
        tmp = Path(name)
        env = {**os.environ, "SLMCNN_CACHE": str(tmp / "cache")}  # empty: nothing compiled or timed yet
        log(f"{figures['cpu']}\nlayers: {args.layers} ...")
        folders = real_layers(args.folder, tmp, args.layers) if args.folder else make_layers(tmp, args.layers)
        small, large = folders[36], folders[args.layers]
        predict = [*SLMCNN, "predict-layer", "--out", "{out}"]

        log("slmcnn with an empty cache (auto: eager bf16, the engines timed after the job without AMX) ...")
        figures["cold_36_s"], _ = timed([*predict[:-1], str(tmp / "cold36"), str(small)], env)
        figures["timing_after_s"] = background_timing_seconds()
        if "variants" in parts:
            figures[f"cold_{args.layers}_s"], _ = timed([*predict[:-1], str(tmp / "cold"), str(large)], env)
        figures["compile_s"], _ = timed([sys.executable, "-m", "slmcnn.aot"], env)
        figures["choice"] = [json.loads(p.read_text()) for p in (tmp / "cache").glob("choice-*.json")]

        commands = {}
        for n, folder in ((36, small), (args.layers, large)):
            if not args.skip_tf:
                reference = [str(tf_python()), str(HERE / "reference_tf.py"), str(folder), "{out}", "--predict-only"]
                commands[f"tf_{n}"] = reference
            commands[f"slmcnn_{n}"] = [*predict, str(folder)]  # the defaults: fine maps on
            if "tiles" in parts:
                commands[f"slmcnn_tiles_{n}"] = [*predict, str(folder), "--map", "tiles"]
            if "variants" in parts:
                commands[f"slmcnn_torch_{n}"] = [*predict, str(folder), "--backend", "torch"]
        log(f"whole processes, {args.repeats} runs each, in turn ...")
        times = whole_runs(commands, args.repeats, env, tmp / "runs")
        for name, values in times.items():
            figures[f"{name}_s"] = statistics.median(values)
            figures[f"{name}_runs_s"] = [round(v, 3) for v in values]
        for n in (36, args.layers):
            for variant in ("", "cold_", "torch_", "tiles_"):
                ours = figures.get(f"slmcnn_{variant}{n}_s" if variant != "cold_" else f"cold_{n}_s")
                if f"tf_{n}_s" in figures and ours:
                    figures[f"ratio_{n}_{variant}vs_tf"] = figures[f"tf_{n}_s"] / ours

        if "stages" in parts:
            log("each stage alone, on the large folder ...")
            figures["stages_s"] = stage_seconds(large, env)
        if "monitor" in parts:
            log("monitor latency ...")
            figures.update(monitor_latency(large, tmp, env))
        if "photo" in parts:
            log("an 8000x8000 photo ...")
            photo = big_photo(large, tmp / "big.png")
            figures["big_photo_mb"] = photo.stat().st_size / 2**20
            runs = [timed([*predict[:-1], str(tmp / f"big{r}"), str(photo)], env) for r in range(args.repeats)]
            figures["big_photo_s"] = statistics.median(r[0] for r in runs)
            figures["big_photo_peak_mb"] = max(r[1] for r in runs)
        if "steady" in parts:
            log("steady state ...")
            os.environ["SLMCNN_CACHE"] = env["SLMCNN_CACHE"]
            figures.update(steady_state(small))
    figures["load_average_at_end"] = os.getloadavg()
    if args.json:
        print(json.dumps(figures, indent=1))
    else:
        print_summary(figures, args.layers)


def real_layers(source: Path, tmp: Path, count: int) -> dict[int, Path]:
    """Folders of the first 36 and `count` photos of a folder of real layers (links, not copies)."""
    from slmcnn.images import list_images

    photos = list_images([str(source)])[:count]
    if len(photos) < max(count, 36):
        raise SystemExit(f"{source}: {len(photos)} photos, fewer than --layers {count}")
    folders = {}
    for n in sorted({36, count}):
        folders[n] = tmp / f"layers{n}"
        folders[n].mkdir()
        for path in photos[:n]:
            (folders[n] / path.name).symlink_to(path.resolve())
    return folders


def print_summary(f: dict, layers: int) -> None:
    print(f"CPU: {f['cpu']}")
    print(f"load average at start {f['load_average_at_start']}, at end {f['load_average_at_end']}")
    for record in f["choice"]:
        rates = ", ".join(f"{n} {r:.0f}" for n, r in sorted(record["rates"].items(), key=lambda i: -i[1]))
        print(
            f"auto timed the engines once ({record['seconds']} s), patches/s: {rates}; agreement {record['agreement']}"
        )
    print("whole `slmcnn predict-layer` processes (median seconds; runs alternated with the reference):")
    for n in sorted({36, layers}):
        parts = [f"auto, cached {f[f'slmcnn_{n}_s']:.2f}"] if f"slmcnn_{n}_s" in f else []
        parts += [f"auto, empty cache {f[f'cold_{n}_s']:.2f}"] if f"cold_{n}_s" in f else []
        parts += [f"--backend torch {f[f'slmcnn_torch_{n}_s']:.2f}"] if f"slmcnn_torch_{n}_s" in f else []
        parts += [f"--map tiles {f[f'slmcnn_tiles_{n}_s']:.2f}"] if f"slmcnn_tiles_{n}_s" in f else []
        parts += [f"TensorFlow reference {f[f'tf_{n}_s']:.2f}"] if f"tf_{n}_s" in f else []
        print(f"  {n:4d} layers: " + " | ".join(parts))
    print(f"  the engines timed after the first job (in the background): {f['timing_after_s']:.1f} s")
    print(f"  compiling once (python -m slmcnn.aot): {f['compile_s']:.1f} s")
    for key in sorted(k for k in f if k.startswith("ratio_")):
        print(f"  {key}: {f[key]:.2f}x")
    if "stages_s" in f:
        stages = {k: v for k, v in f["stages_s"].items() if isinstance(v, float)}
        total = sum(stages.values())
        whole = f.get(f"slmcnn_{layers}_s")
        print(f"where a {layers}-layer process spends its time, each stage alone (engine {f['stages_s']['engine']}):")
        for stage, seconds in stages.items():
            print(f"  {stage:18s} {seconds:7.2f} s  {100 * seconds / total:5.1f}%")
        print(
            f"  {'sum':18s} {total:7.2f} s"
            + (f"; the whole process {whole:.2f} s = {whole / total:.0%} of it" if whole else "")
        )
    if "monitor_startup_s" in f:
        print(
            f"monitor: start-up {f['monitor_startup_s']:.1f} s; first layer stored {f['monitor_first_layer_s']:.3f} s "
            f"after it arrived; then median {f['monitor_steady_median_s']:.3f} s (max {f['monitor_steady_max_s']:.3f})"
            f" = settle {f['monitor_settle_s']} s + {f['monitor_steady_over_settle_s']:.3f} s; alerts raised "
            f"{f['monitor_alerts']}, the first {f['monitor_first_alert_s']} s, then median "
            f"{f['monitor_steady_alert_median_s']} s after the layer arrived"
        )
    if "big_photo_s" in f:
        print(
            f"8000x8000 photo ({f['big_photo_mb']:.0f} MB PNG): {f['big_photo_s']:.2f} s, peak {f['big_photo_peak_mb']:.0f} MB"
        )
    if "network_patches_per_s" in f:
        print(
            f"steady state: {f['network_engine']} {f['network_patches_per_s']:.0f} patches/s = "
            f"{f['network_gflops']:.0f} GFLOP/s = {100 * f['network_fraction_of_matmul']:.0f}% of "
            f"{f['matmul_precision']} matmul ({f['matmul_gflops']:.0f}); tiles agreeing with fp32 "
            f"{f['tile_agreement_vs_fp32']:.4f}"
        )


if __name__ == "__main__":
    main()
