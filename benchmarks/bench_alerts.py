"""Graded alerts as a shop lives with them: how soon a critical layer's hook starts behind a queue
of slow hooks, and which layers of a replayed real build are graded critical.

.venv/bin/python benchmarks/bench_alerts.py [--hook-seconds 3] [--queued 30] [--no-pblm] [--json F]

1. Latency: `slmcnn monitor` (a whole process, as a user runs it) starts on a database holding
   `--queued` alerts not yet delivered (what a monitor stopped before its hooks ran leaves behind),
   with an --on-alert hook that sleeps `--hook-seconds`; once they are being delivered, a critical
   layer arrives. Printed: seconds from the layer being stored to its hook starting, and when the
   queued ones started. The layers come from a model that calls every tile Error (latency does not
   depend on the network).
2. Replay of PBLM (../shared/data/pblm, skipped when absent) as one build: a camera profile from 10
   good photos (`slmcnn calibrate`), then the monitor with `--camera --adapt 5` follows a folder whose
   layers 1-5 are 5 other good photos and whose layers from 6 on are defect photos (10 from each of
   three folders) with the remaining good photos between them. Printed: per kind of layer, how many
   were graded critical, minor and ok.
"""

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_profile's PBLM helpers

SLMCNN = [sys.executable, "-m", "slmcnn"]


def error_model(path: Path) -> Path:
    """A tiny model that calls every tile Error: every layer it sees is critical."""
    import torch

    from slmcnn.checkpoint import ModelInfo, save_model
    from slmcnn.model import create_model

    model = create_model("slmcnn-tiny")
    with torch.no_grad():
        model.classifier[-1].weight.zero_()
        model.classifier[-1].bias.copy_(torch.tensor([0.0, 0.0, 4.6]))
    save_model(model, path, ModelInfo(arch="slmcnn-tiny", name="all-error"))
    return path


def rows(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


def latency(work: Path, queued: int, hook_seconds: float, workers: int) -> dict:
    from PIL import Image

    model, watch, db, starts = (
        error_model(work / "all-error.safetensors"),
        work / "camera",
        work / "b.sqlite",
        work / "starts",
    )
    watch.mkdir()
    rng = np.random.default_rng(0)
    for i in range(1, queued + 1):
        Image.fromarray(rng.integers(60, 120, (384, 384, 3), np.uint8)).save(watch / f"layer_{i:04d}.png")
    base = [*SLMCNN, "monitor", watch, "--db", db, "--model", model, "--settle", "0.1", "--backend", "torch"]
    subprocess.run([*map(str, base), "--exit-when-idle", "0.5"], check=True, capture_output=True)
    with sqlite3.connect(db) as conn:  # as a monitor stopped before its hooks ran leaves them
        conn.execute("UPDATE alerts SET raised = 0")
    hook = f'echo "$SLMCNN_ALERT_LAYER $SLMCNN_ALERT_GRADE $(date +%s.%N)" >> {starts}; sleep {hook_seconds}'
    command = [
        *map(str, base),
        "--on-alert",
        hook,
        "--alert-workers",
        str(workers),
        "--exit-when-idle",
        str(hook_seconds + 2),
    ]
    began = time.time()
    monitor = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while not starts.exists() or len(starts.read_text().split("\n")) <= workers:
        time.sleep(0.05)
        if time.time() - began > 120:
            raise SystemExit("the queued alerts never started: " + (monitor.stderr.read() if monitor.poll() else ""))
    new = queued + 1
    staging = watch / ".incoming.png"
    Image.fromarray(rng.integers(60, 120, (384, 384, 3), np.uint8)).save(staging)
    staging.rename(watch / f"layer_{new:04d}.png")  # arrives complete, as a camera that writes and renames
    monitor.wait(timeout=queued * hook_seconds + 120)
    seen = [line.split() for line in starts.read_text().splitlines()]
    started = {int(layer): float(at) for layer, _, at in seen}
    stored = rows(db, f"SELECT processed FROM layers WHERE number = {new}")[0][0]
    queued_starts = sorted(started[n] - began for n in range(1, queued + 1))
    return {
        "queued": queued,
        "hook_seconds": hook_seconds,
        "workers": workers,
        "critical_hook_start_after_stored_s": round(started[new] - stored, 3),
        "queued_hooks_started_s": [round(queued_starts[0], 2), round(queued_starts[-1], 2)],
        "all_delivered": rows(db, "SELECT count(*) FROM alerts WHERE raised = 0")[0][0] == 0,
    }


def replay(work: Path, per_folder: int, seed: int) -> dict | None:
    from bench_profile import PBLM, distinct

    if not PBLM.is_dir():
        print(f"PBLM: {PBLM} not found, skipped")
        return None
    good = distinct(sorted((PBLM / "No_Defect").glob("*.jpg")))
    rng = np.random.default_rng(seed)
    defects = []
    for folder in ("Powder_Uneven", "Powder_Uneven_With_Scratch", "Deformation_With_Scratch"):  # 1024 px photos
        paths = sorted((PBLM / folder).glob("*.jpg"))
        defects += [(folder, paths[i]) for i in sorted(rng.choice(len(paths), per_folder, replace=False))]
    order = [defects[i] for i in rng.permutation(len(defects))]
    sound = [("No_Defect", p) for p in good[15:]]
    later = order[:]
    for k, item in enumerate(sound):  # the sound layers spread among the defect ones
        later.insert(round((k + 1) * len(order) / (len(sound) + 1)) + k, item)
    layers = [("No_Defect (first layers)", p) for p in good[10:15]] + later
    camera = work / "camera.json"
    subprocess.run([*SLMCNN, "calibrate", *map(str, good[:10]), "--out", str(camera)], check=True, capture_output=True)
    watch, db = work / "replay", work / "replay.sqlite"
    watch.mkdir()
    kinds = {}
    for number, (kind, path) in enumerate(layers, start=1):
        shutil.copy(path, watch / f"layer_{number:04d}.jpg")
        kinds[number] = kind
    start = time.time()
    command = [*SLMCNN, "monitor", watch, "--db", db, "--camera", camera, "--adapt", "5", "--exit-when-idle", "2"]
    subprocess.run(list(map(str, command)), check=True, capture_output=True)
    seconds = time.time() - start
    grades = dict(rows(db, "SELECT number, grade FROM layers WHERE status = 'done'"))
    table: dict[str, dict[str, int]] = {}
    for number, kind in kinds.items():
        name = "No_Defect (from layer 6)" if kind == "No_Defect" else kind
        table.setdefault(name, {"critical": 0, "minor": 0, "ok": 0, "missing": 0})
        table[name][grades.get(number) or "missing"] += 1
    critical_sound = [n for n, k in kinds.items() if k.startswith("No_Defect") and grades.get(n) == "critical"]
    return {
        "layers": len(layers),
        "seconds": round(seconds),
        "grades": table,
        "critical_on_sound_layers": critical_sound,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queued", type=int, default=30)
    parser.add_argument("--hook-seconds", type=float, default=3.0)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--per-folder", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-pblm", action="store_true")
    parser.add_argument("--json")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="slmcnn-bench-alerts-") as tmp:
        os.makedirs(Path(tmp) / "latency")
        results["latency"] = found = latency(Path(tmp) / "latency", args.queued, args.hook_seconds, args.workers)
        print(
            f"latency: {found['queued']} alerts queued, a {found['hook_seconds']:g} s hook, {found['workers']} workers: "
            f"the critical layer's hook started {found['critical_hook_start_after_stored_s']:.3f} s after the layer was stored "
            f"(queued hooks started {found['queued_hooks_started_s'][0]:.1f}-{found['queued_hooks_started_s'][1]:.1f} s "
            f"after the monitor; all delivered: {found['all_delivered']})",
            flush=True,
        )
        if not args.no_pblm:
            os.makedirs(Path(tmp) / "pblm")
            results["replay"] = done = replay(Path(tmp) / "pblm", args.per_folder, args.seed)
            if done:
                print(f"PBLM replay: {done['layers']} layers in {done['seconds']} s (calibrate excluded)")
                for kind, counts in done["grades"].items():
                    print(f"  {kind:<28} " + ", ".join(f"{g} {n}" for g, n in counts.items() if n or g != "missing"))
                print(f"  critical alerts on sound layers: {done['critical_on_sound_layers'] or 'none'}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
