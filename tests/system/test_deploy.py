"""How a shop runs the monitors (deploy/): the systemd template unit, the container image and the
compose file are checked, and the unit's own command line is started from an environment file, killed
with kill -9 and started again as its Restart= rule says, storing every layer once.

systemd cannot start units here (it is not the init of this machine or CI's), nor can docker build
or start containers (no daemon, no image registry): what they would run is run, their files are
verified by their own tools where those are installed (systemd-analyze, check-jsonschema, hadolint),
and scripts/check_deploy.sh builds and starts the containers where docker can."""

import configparser
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import sql_rows

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
UNIT = DEPLOY / "systemd" / "slmcnn-monitor@.service"
COMPOSE = DEPLOY / "compose.yaml"
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
CLEAN_SIGNALS = {signal.SIGHUP, signal.SIGINT, signal.SIGTERM, signal.SIGPIPE}  # systemd.service(5)


def read_unit(path: Path = UNIT) -> configparser.ConfigParser:
    unit = configparser.ConfigParser(interpolation=None, strict=True)
    unit.optionxform = str  # systemd's keys are case-sensitive
    unit.read(path)
    return unit


def environment_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines as systemd's EnvironmentFile= reads them (comments and blank lines skipped)."""
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if line.strip() and line[0] not in "#;")
    return {key.strip(): value.strip() for key, value in pairs}


def exec_start(unit: configparser.ConfigParser, instance: str, env: dict[str, str]) -> list[str]:
    """The unit's ExecStart= for `instance` as systemd expands it: %i, then ${VAR} within a word
    and $VAR alone as a word split at white space."""
    words = shlex.split(unit["Service"]["ExecStart"].replace("%i", instance))
    argv: list[str] = []
    for word in words:
        if re.fullmatch(r"\$\w+", word):
            argv += env.get(word[1:], "").split()
        else:
            argv.append(re.sub(r"\$\{(\w+)\}", lambda m: env.get(m[1], ""), word))
    return argv


def restarted(unit: configparser.ConfigParser, returncode: int) -> bool:
    """Whether Restart=on-failure starts the service again after it ended with `returncode`
    (negative: killed by that signal): an exit status or signal that is not clean."""
    service = unit["Service"]
    assert service["Restart"] == "on-failure"
    if returncode < 0:
        return -returncode not in CLEAN_SIGNALS
    return returncode not in {0, *map(int, service.get("SuccessExitStatus", "").split())}


def test_the_unit_is_a_template_restarted_on_failure_with_an_environment_file():
    service = read_unit()["Service"]
    assert service["Restart"] == "on-failure" and float(service["RestartSec"]) > 0
    assert service["EnvironmentFile"] == "/etc/slmcnn/%i.env"
    argv = exec_start(read_unit(), "m290-a", {"SLMCNN_WATCH": "/cam", "SLMCNN_DB": "x.sqlite", "SLMCNN_OUT": "o"})
    assert argv[1:] == ["monitor", "/cam", "--db", "x.sqlite", "--machine", "m290-a", "--out", "o"]
    assert restarted(read_unit(), -signal.SIGKILL) and restarted(read_unit(), 2)  # a database away at start: 2
    assert not restarted(read_unit(), 130) and not restarted(read_unit(), -signal.SIGTERM)  # systemctl stop
    example = environment_file(DEPLOY / "systemd" / "printer.env.example")
    assert {"SLMCNN_WATCH", "SLMCNN_DB", "SLMCNN_OUT", "SLMCNN_OPTIONS"} <= set(example)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_verifies_the_unit(tmp_path):
    """systemd-analyze verify, strict: any warning fails. ExecStart's program must exist for it, so
    /opt/slmcnn/bin/slmcnn is this environment's slmcnn in the copy verified."""
    slmcnn = Path(sys.executable).with_name("slmcnn")
    assert slmcnn.is_file(), "the slmcnn console script is not installed beside this Python"
    copy = tmp_path / UNIT.name
    copy.write_text(UNIT.read_text().replace("/opt/slmcnn/bin/slmcnn", str(slmcnn)))
    (tmp_path / "slmcnn-monitor@m290-a.service").symlink_to(copy.name)
    done = subprocess.run(
        ["systemd-analyze", "verify", str(tmp_path / "slmcnn-monitor@m290-a.service")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr


def test_compose_runs_each_printer_restarted_after_the_database():
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    monitors = {name: s for name, s in services.items() if name != "postgres"}
    assert len(monitors) >= 2 and "healthcheck" in services["postgres"]
    machines, cameras = set(), set()
    for name, service in monitors.items():
        assert service["restart"] == "on-failure", name
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy", name
        argv = service["command"].split()
        assert argv[0] == "monitor" and "postgresql://" in argv[argv.index("--db") + 1], name
        machines.add(argv[argv.index("--machine") + 1])
        cameras |= {v for v in service["volumes"] if v.endswith(f":{argv[1]}:ro")}
    assert machines == set(monitors) and len(cameras) == len(monitors)  # one name and one camera each


def test_the_image_installs_cpu_only_torch_before_the_package():
    runs = [line for line in DOCKERFILE.read_text().splitlines() if line.startswith("RUN ")]
    torch = next(i for i, line in enumerate(runs) if "torch==" in line)
    package = next(i for i, line in enumerate(runs) if "/build[postgres]" in line)
    assert "/whl/cpu" in runs[torch] and torch < package


@pytest.mark.parametrize(
    "tool, args, target",
    [
        ("check-jsonschema", ["--builtin-schema", "vendor.compose-spec"], COMPOSE),
        ("hadolint", [], DOCKERFILE),
    ],
)
def test_the_tools_of_compose_and_docker_accept_the_files(tool, args, target):
    program = shutil.which(tool) or shutil.which(tool, path=str(Path(sys.executable).parent))
    if program is None:
        pytest.skip(f"{tool} is not installed (the dev extra installs it)")
    done = subprocess.run([program, *args, str(target)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_units_command_killed_and_started_again_stores_every_layer_once(
    database, tiny_build, tiny_model_file, tmp_path
):
    """The unit's ExecStart for printer m290-a, from an environment file as the example's: kill -9
    half way, started again because Restart=on-failure says so, then stopped as `systemctl stop`
    does (SIGTERM: an exit the unit counts as success, so not restarted)."""
    camera, unit = tmp_path / "camera", read_unit()
    camera.mkdir()
    env_file = tmp_path / "m290-a.env"
    options = f"--model {tiny_model_file} --backend torch --settle 0.05"
    env_file.write_text(
        f"# as printer.env.example\nSLMCNN_WATCH={camera}\nSLMCNN_DB={database}\nSLMCNN_OUT={tmp_path / 'out'}\n"
        f"SLMCNN_OPTIONS={options}\n"
    )
    argv = exec_start(unit, "m290-a", environment_file(env_file))
    argv = [sys.executable, "-m", "slmcnn", *argv[1:]]  # the unit's /opt/slmcnn/bin/slmcnn
    photos = sorted((tiny_build / "layers").glob("*.png"))

    def write(number: int) -> None:  # a whole file appears at once, as a camera's rename makes it
        part = shutil.copy(photos[(number - 1) % len(photos)], tmp_path / "part.png")
        os.replace(part, camera / f"{number:05d}.png")

    def stored(count: int) -> list[int]:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                found = [n for (n,) in sql_rows(database, "SELECT number FROM layers ORDER BY number")]
            except Exception:  # noqa: BLE001 - the tables are not made yet
                found = []
            if len(found) >= count:
                return found
            time.sleep(0.1)
        return found

    for number in range(1, 5):
        write(number)
    service = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert len(stored(2)) >= 2, "the monitor stored nothing"
        service.send_signal(signal.SIGKILL)
        service.communicate(timeout=30)
        assert restarted(unit, service.returncode)
        for number in range(5, 9):
            write(number)
        service = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        numbers = stored(8)
    finally:
        service.send_signal(signal.SIGTERM)
        errors = service.communicate(timeout=60)[1]
    assert not restarted(unit, service.returncode), (service.returncode, errors)
    assert numbers == list(range(1, 9)), numbers
    assert sql_rows(database, "SELECT machine FROM builds") == [("m290-a",)]
