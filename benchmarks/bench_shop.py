"""A shop on one machine: N printers' monitors feeding one database, and an archive re-analysed,
timed to plan for 10^5 layers (docs/SCALING.md).

shop: one synthetic build (slmcnn synth) is fed to N camera folders, one layer every `--interval`
seconds per printer (staggered; 0: every layer at once, a backlog), each file appearing whole by a
rename as a camera's does; one `slmcnn monitor --machine printer-NN` per folder writes into one
database, a fresh one made on a PostgreSQL server (--server URL, else $SLMCNN_TEST_POSTGRES, else a
throwaway cluster started here as .ci/run does) or an SQLite file (--sqlite). Printed: the offered
and the stored layers/s, each layer's time from its file's rename to its stored row (median, 95th
percentile, slowest; the slowest of the first and of the last third, to see whether the monitors
keep up), that every layer is stored exactly once and done, and the database's bytes per layer.

archive: predict-layer over a synthetic archive (--layers, or --archive DIR), once per --map and
with --ray (local cluster, --ray-workers): the whole command's seconds, the steady rate (from the
layers' JSON files' times, the first `--warm` layers left out), files and bytes per layer in the
output folder, and what 10^5 layers would take and make at that rate.

The load average is printed beside each figure: on a shared machine compare only one run's figures.

    .venv/bin/python benchmarks/bench_shop.py shop [--monitors 10] [--layers 12] [--interval 6]
        [--map tiles] [--backend onnx] [--server URL | --sqlite] [--json]
    .venv/bin/python benchmarks/bench_shop.py archive [--layers 200 | --archive DIR] [--map tiles fine]
        [--ray] [--json]
"""

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

ARCHIVE_LAYERS = 100_000  # a shop-year, what the archive figures are scaled to


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def load() -> str:
    return "load {:.1f} {:.1f} {:.1f}".format(*os.getloadavg())


def synth(folder: Path, layers: int, size: int) -> list[Path]:
    """A synthetic build's layer photos (slmcnn synth, photos and masks only)."""
    if not (folder / "layers").is_dir():
        command = [sys.executable, "-m", "slmcnn", "synth", str(folder), "--layers", str(layers), "--seed", "3"]
        command += ["--size", str(size), "--no-patches", "--workers", "1"]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    photos = sorted((folder / "layers").glob("*.png"))[:layers]
    if len(photos) < layers:
        sys.exit(f"bench_shop: {folder} holds {len(photos)} layers, {layers} asked")
    return photos


@contextlib.contextmanager
def throwaway_server(folder: Path) -> Iterator[str]:
    """A PostgreSQL cluster in `folder` on a free loopback port, trusted on loopback only (as .ci/run
    starts one; as root the server runs as the postgres user); its URL."""
    bins = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: float(p.parent.name))
    if not bins:
        sys.exit("bench_shop: no PostgreSQL server here: give --server URL or --sqlite (or apt-get install postgresql)")
    as_user = ["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []
    if as_user:
        shutil.chown(folder, "postgres")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data = folder / "data"
    quiet = {"stdout": subprocess.DEVNULL, "check": True}
    subprocess.run([*as_user, str(bins[-1] / "initdb"), "-D", str(data), "-U", "slmcnn", "--auth=trust"], **quiet)
    options = f"-h 127.0.0.1 -p {port} -k {folder}"
    pg_ctl = [*as_user, str(bins[-1] / "pg_ctl"), "-D", str(data)]
    subprocess.run([*pg_ctl, "-l", str(folder / "log"), "-w", "-o", options, "start"], **quiet)
    try:
        yield f"postgresql+psycopg://slmcnn@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*pg_ctl, "-m", "fast", "stop"], **quiet)


@contextlib.contextmanager
def fresh_database(args, scratch: Path) -> Iterator[str]:
    """The monitors' database: an SQLite file, or a new database on the server (dropped after)."""
    if args.sqlite:
        yield str(scratch / "shop.sqlite")
        return
    with contextlib.ExitStack() as stack:
        server = args.server or os.environ.get("SLMCNN_TEST_POSTGRES")
        if not server:
            folder = scratch / "postgres"
            folder.mkdir()
            server = stack.enter_context(throwaway_server(folder))
        from sqlalchemy import create_engine, text
        from sqlalchemy.engine import make_url

        name = f"slmcnn_shop_{uuid.uuid4().hex[:8]}"
        admin = create_engine(server, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}"))
        try:
            yield make_url(server).set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.execute(text(f"DROP DATABASE {name} WITH (FORCE)"))
            admin.dispose()


def database_bytes(db: str) -> int:
    """The database's size on disk: the SQLite file (and its journal), or pg_database_size."""
    if "://" not in db:
        return sum(p.stat().st_size for p in Path(db).parent.glob(Path(db).name + "*"))
    from sqlalchemy import create_engine, text

    engine = create_engine(db)
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT pg_database_size(current_database())")).scalar()
    finally:
        engine.dispose()


def stored_rows(db: str) -> list[tuple]:
    """(machine, file, status, processed) of every stored layer."""
    from sqlalchemy import create_engine, text

    from slmcnn.monitoring.db.connection import database_url

    engine = create_engine(database_url(db))
    query = "SELECT b.machine, l.file, l.status, l.processed FROM layers l JOIN builds b ON b.id = l.build_id"
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(query))]
    except Exception:  # noqa: BLE001 - the monitors have not made the tables yet
        return []
    finally:
        engine.dispose()


def run_shop(args) -> dict:
    scratch = Path(tempfile.mkdtemp(prefix="bench_shop_"))
    photos = synth(args.build or scratch / "build", args.layers, args.size)
    machines = [f"printer-{i + 1:02d}" for i in range(args.monitors)]
    env = {**os.environ, "SLMCNN_COMPILE": "0", "PYTHONUNBUFFERED": "1"}  # no background compilation
    monitors: dict[str, subprocess.Popen] = {}
    with fresh_database(args, scratch) as db:
        try:
            for machine in machines:
                camera = scratch / machine
                camera.mkdir()
                command = [sys.executable, "-m", "slmcnn", "monitor", str(camera), "--db", db, "--machine", machine]
                command += ["--settle", "0.05", "--map", args.map, "--backend", args.backend]
                with open(scratch / f"{machine}.log", "w") as output:
                    monitors[machine] = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
            started = time.time()
            while not all("watching" in (scratch / f"{m}.log").read_text() for m in machines):
                failed = [m for m, p in monitors.items() if p.poll() is not None]
                if failed:
                    sys.exit(f"bench_shop: monitor {failed[0]} stopped:\n" + (scratch / f"{failed[0]}.log").read_text())
                time.sleep(0.2)
            log(f"{len(machines)} monitors ready in {time.time() - started:.1f} s ({load()})")
            empty = database_bytes(db)
            fed = feed(scratch, machines, photos, args.interval)
            total = len(machines) * len(photos)
            deadline = time.time() + args.timeout
            while len(rows := stored_rows(db)) < total and time.time() < deadline:
                time.sleep(0.5)
            finished_load = load()
            full = database_bytes(db)
        finally:  # before the database is dropped
            for process in monitors.values():
                process.send_signal(signal.SIGTERM)
            codes = {m: p.wait(timeout=120) for m, p in monitors.items()}
    report = shop_figures(rows, fed, args, total)
    report.update(
        monitors=len(machines),
        layers_per_printer=len(photos),
        size=args.size,
        map=args.map,
        backend=args.backend,
        database="sqlite" if args.sqlite else "postgresql",
        database_bytes_per_layer=round((full - empty) / max(1, len(rows))),
        exit_codes=sorted(set(codes.values())),
        load_at_end=finished_load,
    )
    if report["stored_once"] and all(c == 130 for c in codes.values()):
        shutil.rmtree(scratch, ignore_errors=True)
    else:
        report["kept"] = str(scratch)
    return report


def feed(scratch: Path, machines: list[str], photos: list[Path], interval: float) -> dict[tuple[str, str], float]:
    """Each printer's layers into its folder, one every `interval` s (printers staggered evenly);
    the time each file appeared, by (machine, file)."""
    plan = sorted(
        (k * interval + i * interval / len(machines), machine, photo)
        for i, machine in enumerate(machines)
        for k, photo in enumerate(photos)
    )
    fed, start = {}, time.time()
    for offset, machine, photo in plan:
        time.sleep(max(0.0, start + offset - time.time()))
        part = shutil.copy(photo, scratch / machine / f".{photo.name}.part")  # a dot file: not a layer yet
        os.replace(part, scratch / machine / photo.name)
        fed[(machine, photo.name)] = time.time()
    return fed


def shop_figures(rows: list[tuple], fed: dict, args, total: int) -> dict:
    counts: dict[tuple[str, str], int] = {}
    for machine, file, _status, _processed in rows:
        counts[(machine, file)] = counts.get((machine, file), 0) + 1
    latency = sorted((processed - fed[(m, f)], m, f) for m, f, status, processed in rows if (m, f) in fed)
    in_order = sorted((fed[(m, f)], processed - fed[(m, f)]) for m, f, status, processed in rows if (m, f) in fed)
    third = max(1, len(in_order) // 3)
    seconds = [s for s, _m, _f in latency]
    span = max(p for *_, p in rows) - min(fed.values()) if rows else float("nan")
    offered = args.monitors / args.interval if args.interval else None
    return {
        "interval_s": args.interval,
        "offered_layers_per_s": round(offered, 3) if offered else "all at once",
        "stored": len(rows),
        "fed": total,
        "stored_once": len(rows) == total and set(counts) == set(fed) and all(c == 1 for c in counts.values()),
        "all_done": all(status == "done" for _m, _f, status, _p in rows),
        "stored_layers_per_s": round(len(rows) / span, 3),
        "seconds_first_file_to_last_row": round(span, 1),
        "latency_median_s": round(statistics.median(seconds), 2) if seconds else None,
        "latency_p95_s": round(seconds[int(0.95 * (len(seconds) - 1))], 2) if seconds else None,
        "latency_max_s": round(seconds[-1], 2) if seconds else None,
        "slowest_layer": f"{latency[-1][1]} {latency[-1][2]}" if latency else None,
        "latency_max_first_third_s": round(max(s for _t, s in in_order[:third]), 2) if in_order else None,
        "latency_max_last_third_s": round(max(s for _t, s in in_order[-third:]), 2) if in_order else None,
    }


def run_archive(args) -> list[dict]:
    scratch = Path(tempfile.mkdtemp(prefix="bench_archive_"))
    archive = args.archive or scratch / "archive"
    photos = synth(archive, args.layers, args.size)
    env = {**os.environ, "SLMCNN_COMPILE": "0"}
    runs = [(f"predict-layer --map {m}", ["--map", m]) for m in args.map]
    if args.ray:
        runs.append(
            (f"predict-layer --ray --ray-workers {args.ray_workers}", ["--ray", "--ray-workers", str(args.ray_workers)])
        )
    results = []
    for name, extra in runs:
        out = scratch / f"out{len(results)}"
        command = [sys.executable, "-m", "slmcnn", "predict-layer", *map(str, photos), "--out", str(out)]
        command += ["--backend", args.backend, *extra]
        before = load()
        started = time.time()
        done = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        whole = time.time() - started
        if done.returncode != 0:
            sys.exit(f"bench_shop: {name} failed:\n{done.stderr[-2000:]}")
        results.append(archive_figures(name, out, len(photos), whole, args.warm, before))
        log(json.dumps(results[-1]))
        shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(scratch, ignore_errors=True)
    return results


def archive_figures(name: str, out: Path, layers: int, whole: float, warm: int, before: str) -> dict:
    """The run's rates and output folder, and the same scaled to ARCHIVE_LAYERS."""
    files = [p for p in out.rglob("*") if p.is_file()]
    per_folder = Counter(str(path.parent.relative_to(out)).strip(".") for path in files)
    times = sorted(p.stat().st_mtime for p in out.glob("*.json"))
    warm = min(warm, len(times) // 2)
    steady = (len(times) - warm) / (times[-1] - times[warm - 1]) if len(times) > warm + 1 and warm else None
    startup = whole - layers / steady if steady else None
    per_layer_files = {folder or ".": count / layers for folder, count in per_folder.items()}
    return {
        "run": name,
        "layers": layers,
        "whole_s": round(whole, 1),
        "steady_layers_per_s": round(steady, 2) if steady else None,
        "s_per_1000_layers": round(1000 / steady, 1) if steady else None,
        "start_s": round(startup, 1) if startup is not None else None,
        f"hours_for_{ARCHIVE_LAYERS}": round((startup + ARCHIVE_LAYERS / steady) / 3600, 2) if steady else None,
        "files_per_layer_by_folder": {folder: round(n, 2) for folder, n in per_layer_files.items()},
        f"files_in_largest_folder_at_{ARCHIVE_LAYERS}": round(max(per_layer_files.values()) * ARCHIVE_LAYERS),
        "bytes_per_layer": round(sum(p.stat().st_size for p in files) / layers),
        "load_before": before,
        "load_after": load(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    shop = commands.add_parser("shop", help="N monitors feeding one database")
    shop.add_argument("--monitors", type=int, default=10)
    shop.add_argument("--layers", type=int, default=12, help="layers per printer")
    shop.add_argument("--interval", type=float, default=6.0, help="seconds between a printer's layers (0: all at once)")
    shop.add_argument("--build", type=Path, help="a synthetic build's folder to feed (default: made here)")
    shop.add_argument("--server", help="a PostgreSQL server's URL, by a user who may create databases")
    shop.add_argument("--sqlite", action="store_true", help="one SQLite file instead of PostgreSQL")
    shop.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for the last layer")
    archive = commands.add_parser("archive", help="predict-layer over an archive, scaled to 10^5 layers")
    archive.add_argument("--layers", type=int, default=200)
    archive.add_argument("--archive", type=Path, help="a synthetic build's folder (default: made here)")
    archive.add_argument("--map", nargs="+", default=["tiles", "fine"], choices=["tiles", "fine"])
    archive.add_argument("--ray", action="store_true", help="also predict-layer --ray on a local cluster")
    archive.add_argument("--ray-workers", type=int, default=2)
    archive.add_argument("--warm", type=int, default=20, help="first layers left out of the steady rate")
    for command in (shop, archive):
        command.add_argument("--size", type=int, default=768, help="side of the synthetic photos")
        command.add_argument("--backend", default="onnx", help="the monitors' and predict-layer's --backend")
        command.add_argument("--json", action="store_true", help="print the figures as JSON")
    shop.add_argument("--map", default="tiles", choices=["tiles", "fine"])
    args = parser.parse_args()
    figures = run_shop(args) if args.command == "shop" else run_archive(args)
    if args.json:
        print(json.dumps(figures, indent=1))
        return
    for item in figures if isinstance(figures, list) else [figures]:
        print("\n".join(f"{key}: {value}" for key, value in item.items()), end="\n\n")


if __name__ == "__main__":
    main()
