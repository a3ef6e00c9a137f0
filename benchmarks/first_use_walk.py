"""A new user's first hour, scripted (#38): a fresh venv -> the README's install -> its quickstart ->
calibrate -> a live monitor with an alert -> report -> the app over HTTP. Prints each step's seconds
and the machine's load; fails on any traceback or empty result.

python3 benchmarks/first_use_walk.py [--work DIR] [--torch-wheel FILE] [--keep]

Standard library only: it runs before the venv it makes exists. The CPU torch is installed as the
README says (pip install torch --index-url https://download.pytorch.org/whl/cpu) unless
--torch-wheel names a CPU wheel already at hand (a machine that reaches only PyPI). The photos are
synthetic: good layers of one camera to calibrate on, then a build written layer by layer with
--live and its defects more frequent than the default, so the monitor raises at least one alert.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
README_TORCH = ["torch", "--index-url", "https://download.pytorch.org/whl/cpu"]
NO_DEFECTS = ",".join(
    f"{k}=0"
    for k in (
        "streak",
        "short_feed",
        "swelling",
        "debris",
        "chatter",
        "hole",
        "spatter",
        "spread_line",
        "scratch",
        "ridge",
    )
)
MANY_DEFECTS = "streak=0.5,debris=0.5,swelling=0.4,hole=0.4"
TRACEBACK = re.compile(r"^Traceback \(most recent call last\)", re.M)


class WalkFailed(Exception):
    """A step of the walk that went wrong: its name and what was seen."""


class Walk:
    def __init__(self, work: Path):
        self.work, self.times = work, []
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.env.pop("VIRTUAL_ENV", None)

    def bin(self, name: str) -> str:
        return str(self.work / "venv" / "bin" / name)

    def step(self, name: str, args: list[str], timeout: float = 900) -> str:
        """Run one command in the work folder; its output, or WalkFailed on a non-zero exit or a traceback."""
        start = time.monotonic()
        done = subprocess.run(
            args, cwd=self.work, env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        seconds = time.monotonic() - start
        said = done.stdout + done.stderr
        (self.work / "logs").mkdir(exist_ok=True)
        (self.work / "logs" / f"{len(self.times):02d}-{name}.log").write_text(f"$ {' '.join(args)}\n{said}")
        if done.returncode != 0 or TRACEBACK.search(said):
            tail = "\n".join(said.strip().splitlines()[-15:])
            raise WalkFailed(
                f"{name}: exit {done.returncode}{', a traceback' if TRACEBACK.search(said) else ''}\n{tail}"
            )
        self.record(name, seconds)
        return said

    def record(self, name: str, seconds: float) -> None:
        self.times.append((name, seconds))
        print(f"{name:<34} {seconds:8.1f} s   load {os.getloadavg()[0]:.2f}", flush=True)


def need(condition: bool, what: str) -> None:
    if not condition:
        raise WalkFailed(f"empty result: {what}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=60) as response:
        return response.read().decode()


def live_monitor(walk: Walk) -> None:
    """synth --live writes a build layer by layer; the monitor follows it with the camera profile and
    an alert command, and stops once the camera has been quiet for a while."""
    start = time.monotonic()
    synth_args = ["synth", "--out", "demo", "--layers", "12", "--seed", "8", "--live", "--interval", "1"]
    synth = subprocess.Popen(
        [walk.bin("slmcnn"), *synth_args, "--defects", MANY_DEFECTS, "--no-patches"],
        cwd=walk.work, env=walk.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    while not (walk.work / "demo" / "layers").is_dir():
        if synth.poll() is not None:
            raise WalkFailed(f"synth --live stopped before writing a layer:\n{synth.stdout.read()}")
        time.sleep(0.2)
    hook = 'echo "$SLMCNN_ALERT_GRADE layer $SLMCNN_ALERT_LAYER: $SLMCNN_ALERT_MESSAGE" >> hooked.txt'
    try:
        said = walk.step(
            "monitor (live, with synth --live)",
            [walk.bin("slmcnn"), "monitor", "demo/layers", "--db", "build.sqlite", "--camera", "camera.json",
             "--out", "live", "--on-alert", hook, "--exit-when-idle", "20"],
        )  # fmt: skip
    finally:
        synth_said = synth.communicate(timeout=120)[0]
    walk.times[-1] = (walk.times[-1][0], time.monotonic() - start)  # the whole live build, synth's start included
    if synth.returncode != 0 or TRACEBACK.search(synth_said):
        raise WalkFailed(f"synth --live: exit {synth.returncode}\n{synth_said[-2000:]}")
    journal = walk.work / "live" / "alerts.jsonl"
    alerts = journal.read_text().splitlines() if journal.is_file() else []
    hooked = (walk.work / "hooked.txt").read_text().splitlines() if (walk.work / "hooked.txt").is_file() else []
    need(len(alerts) >= 1, f"no alert in {journal} (monitor said: {said.strip().splitlines()[-1:]})")
    need(
        len(hooked) >= 1 or all(not json.loads(a).get("pushed", True) for a in alerts),
        "the --on-alert command never ran",
    )
    print(f"  {len(alerts)} alert(s); first: {json.loads(alerts[0]).get('message', '')[:110]}")


def app(walk: Walk) -> None:
    """slmcnn app on a free port: its start page and the build's page over HTTP, then stopped."""
    port = free_port()
    start = time.monotonic()
    server = subprocess.Popen(
        [walk.bin("slmcnn"), "app", "--db", "build.sqlite", "--data", "demo", "--port", str(port)],
        cwd=walk.work, env=walk.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            try:
                fetch(f"{url}/static/common.js")
                break
            except OSError:
                if server.poll() is not None or time.monotonic() - start > 120:
                    raise WalkFailed(f"the app did not start:\n{server.stdout.read()[-2000:]}") from None
                time.sleep(0.3)
        walk.record("app started", time.monotonic() - start)
        t = time.monotonic()
        index, sets = fetch(url + "/"), json.loads(fetch(url + "/api/sets"))
        builds = [s for s in sets if s["kind"] == "build"]
        need("Builds" in index and builds and builds[0]["layers"] > 0, f"the app lists no stored build: {sets}")
        page = fetch(f"{url}/sets/{builds[0]['id']}")
        summary = json.loads(fetch(f"{url}/api/sets/{builds[0]['id']}"))
        need(builds[0]["name"] in page and summary["alerts"], "the build's page or its alerts are empty")
        walk.record("app: start page + build page", time.monotonic() - t)
        b = builds[0]
        print(
            f"  {b['name']} on {b['machine']}: {b['layers']} layers, grades {b['grades']}, {b['alerts_open']} open alert(s)"
        )
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        said = server.communicate(timeout=30)[0]
    if TRACEBACK.search(said):
        raise WalkFailed(f"the app printed a traceback:\n{said[-2000:]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="/tmp/slmcnn-first-use", help="an empty (or new) folder for the walk")
    parser.add_argument("--torch-wheel", help="a CPU torch wheel to install instead of the README's index")
    parser.add_argument("--keep", action="store_true", help="keep a venv made earlier in --work")
    args = parser.parse_args()
    work = Path(args.work).resolve()
    if work.exists() and any(work.iterdir()) and not args.keep:
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    for old in ("first", "good", "demo", "live", "logs", "camera.json", "camera.preview.png", "build.sqlite",
                "build.labels.sqlite", "hooked.txt", "report.html"):  # fmt: skip
        path = work / old
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    walk = Walk(work)
    print(f"first-use walk in {work}; {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f} at the start")
    total = time.monotonic()
    try:
        if not (work / "venv" / "bin" / "slmcnn").exists():
            walk.step("python3 -m venv", [sys.executable, "-m", "venv", str(work / "venv")])
            torch = [args.torch_wheel] if args.torch_wheel else README_TORCH
            walk.step("pip install torch (CPU)", [walk.bin("pip"), "install", *torch], timeout=1800)
            walk.step("pip install -e '.[app]'", [walk.bin("pip"), "install", "-e", f"{REPO}[app]"], timeout=1800)
        version = walk.step("slmcnn --version", [walk.bin("slmcnn"), "--version"])
        need(bool(version.strip()), "slmcnn --version printed nothing")
        shutil.copytree(REPO / "examples" / "layers", work / "examples" / "layers", dirs_exist_ok=True)
        walk.step("predict-layer (README step 1)", [walk.bin("slmcnn"), "predict-layer", "examples/layers/",
                                                    "--out", "first/", "--html"])  # fmt: skip
        need((work / "first" / "index.html").stat().st_size > 0, "first/index.html")
        walk.step("synth good layers", [walk.bin("slmcnn"), "synth", "--out", "good", "--layers", "12", "--seed", "8",
                                        "--defects", NO_DEFECTS, "--no-patches"])  # fmt: skip
        good = sorted(str(p.relative_to(work)) for p in (work / "good" / "layers").glob("*.png"))
        need(len(good) >= 10, "good layers to calibrate on")
        calibrate = [walk.bin("slmcnn"), "calibrate", *good, "--out", "camera.json", "--bed-mm", "250"]
        said = walk.step("calibrate (README step 2)", calibrate)
        if "--full-frame" in said:  # these photos are the bed already: done again as its warning says
            walk.step("calibrate --full-frame (as advised)", [*calibrate, "--full-frame", "--force"])
        need((work / "camera.json").stat().st_size > 0, "camera.json")
        live_monitor(walk)
        walk.step(
            "report (README step 4)", [walk.bin("slmcnn"), "report", "--db", "build.sqlite", "--out", "report.html"]
        )
        need((work / "report.html").stat().st_size > 1000, "report.html")
        app(walk)
    except (WalkFailed, FileNotFoundError, subprocess.TimeoutExpired) as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    print(f"{'whole walk':<34} {time.monotonic() - total:8.1f} s   load {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
