"""Test data is generated here, never downloaded: a tiny synthetic build and a tiny model file."""

import contextlib
import importlib.util
import io
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from slmcnn.checkpoint import ModelInfo, save_model
from slmcnn.model import create_model
from slmcnn.synth import SynthSettings, generate_build

RATES = {"streak": 0.4, "short_feed": 0.15, "swelling": 0.3, "debris": 0.4, "chatter": 0.1}


def pytest_collection_modifyitems(items) -> None:
    """The tests of tests/system go beyond this process (a browser, Ray, DDP, packaging, another
    process): all are marked slow, so `-m "not slow"` leaves them out."""
    system = Path(__file__).parent / "system"
    for item in items:
        if system in item.path.parents:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True, scope="session")
def compile_cache(tmp_path_factory) -> Path:
    """Compiled networks go to a folder of the test session's own, never the user's cache, and no
    test leaves a background compilation or timing running (the monitor's `auto` would start one,
    a first job's the other). `auto` does not time the engines here (it would compile two packages
    per model): ONNX fp32 "wins"."""
    from slmcnn import aot
    from slmcnn.backends import choice

    def measured(model, candidates):
        return {"rates": {"onnx-fp32": 2.0, "compiled-fp32": 1.0}, "agreement": {}, **aot.choice_identity(model)}, {}

    folder = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SLMCNN_CACHE", str(folder))
        patch.delenv("SLMCNN_COMPILE", raising=False)  # `auto` as a user gets it, whatever this shell says
        patch.setattr(aot, "spawn_compile", lambda model, precision, detach=False, stops=None: None)
        patch.setattr(choice, "measure", measured)
        patch.setattr(choice, "spawn_timing", lambda model, precision="auto": None)  # timed in the job: measured
        yield folder


@pytest.fixture(scope="session")
def tiny_build(tmp_path_factory) -> Path:
    """A 10-layer 384x384 build with frequent defects (9 patches of 128 px per layer)."""
    out = tmp_path_factory.mktemp("build") / "b"
    generate_build(SynthSettings(layers=10, seed=5, size=384, defect_rates=RATES), out, workers=1)
    return out


@pytest.fixture(scope="session")
def shipped_model():
    """The shipped network, loaded once by slmcnn.load_model: its features are what a camera profile is
    made of (an untrained one sees little). Tests only read it; one that changes weights changes a copy."""
    import slmcnn
    from slmcnn.checkpoint import default_model_path

    if not default_model_path().is_file():
        pytest.skip("no shipped model in this checkout")
    return slmcnn.load_model()


@pytest.fixture(scope="session")
def tiny_model_file(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = create_model("slmcnn-tiny")
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    save_model(model, path, ModelInfo(arch="slmcnn-tiny", name="tiny"))
    return path


@pytest.fixture
def tiny_model(tiny_model_file):
    """The tiny model file as slmcnn.load_model gives it, loaded for each test: a test may change it."""
    import slmcnn

    return slmcnn.load_model(tiny_model_file)


@pytest.fixture(scope="session")
def error_model_file(tmp_path_factory) -> Path:
    """A tiny model that calls every tile Error (p 0.98): every layer it sees is graded critical."""
    model = create_model("slmcnn-tiny")
    last = model.classifier[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.tensor([0.0, 0.0, 4.6]))
    path = tmp_path_factory.mktemp("model") / "error.safetensors"
    save_model(model, path, ModelInfo(arch="slmcnn-tiny", name="error"))
    return path


@pytest.fixture
def write_image(tmp_path):
    """Write an array as an image file in tmp_path and return its path."""
    from PIL import Image

    def write(name: str, array: np.ndarray) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).save(path)
        return path

    return write


def load_benchmark(name: str):
    """The script benchmarks/NAME.py as a module; its folder is importable while it loads, for the
    scripts that import another benchmark (bench_real's classifier)."""
    folder = Path(__file__).resolve().parents[1] / "benchmarks"
    sys.path.insert(0, str(folder))
    try:
        spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(folder))


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """Run `slmcnn ARGS` in this process (cli.main, as the console script does), capturing its
    output: no torch start-up per call. A bug raises here instead of printing a traceback."""
    from slmcnn import cli

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main([str(a) for a in args])
        except SystemExit as exc:  # argparse: --help, --version, usage errors
            code = exc.code if isinstance(exc.code, int) else 2
    return subprocess.CompletedProcess(["slmcnn", *map(str, args)], code, out.getvalue(), err.getvalue())


def run_process(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run `slmcnn ARGS` in a fresh process, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "slmcnn", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=600
    )


POSTGRES = os.environ.get("SLMCNN_TEST_POSTGRES")  # a server's URL; .ci/run starts one and sets it


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def database(request, tmp_path) -> Iterator[str]:
    """A new, empty monitor's database: an SQLite file, or a database made for this test on the
    PostgreSQL server of SLMCNN_TEST_POSTGRES (dropped after it; a server's test is marked slow)."""
    if request.param == "sqlite":
        yield str(tmp_path / "shop.sqlite")
        return
    if not POSTGRES:
        pytest.skip("SLMCNN_TEST_POSTGRES is not set: no PostgreSQL server to test against (.ci/run starts one)")
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"slmcnn_test_{uuid.uuid4().hex[:12]}"
    server = create_engine(POSTGRES, isolation_level="AUTOCOMMIT")
    with server.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    try:
        yield make_url(POSTGRES).set(database=name).render_as_string(hide_password=False)
    finally:
        with server.connect() as conn:
            conn.execute(text(f"DROP DATABASE {name} WITH (FORCE)"))
        server.dispose()


def first_version_tables(db: str) -> None:
    """Make slmcnn 0.1's tables in a new database: no tiles nor attempts, alerts without `raised`
    (0.1 raised every alert it stored), builds.watch_dir unique."""
    key = "serial primary key" if "://" in db else "integer primary key"
    for table in (
        f"builds (id {key}, watch_dir varchar not null unique, model varchar, started float)",
        f"layers (id {key}, build_id integer not null references builds (id), number integer, "
        "file varchar not null, path varchar, status varchar not null, message text, processed float, "
        "seconds float, powder float, object float, error float, geometry text, overlay varchar, "
        "unique (build_id, file))",
        f"alerts (id {key}, build_id integer not null, layer_id integer not null, "
        "layer integer, file varchar, rule varchar, message text, value float, created float)",
    ):
        sql_rows(db, f"CREATE TABLE {table}")


def sql_rows(db: str | Path, sql: str) -> list[tuple]:
    """The rows of one SQL statement on a database (a file or URL, as the monitor takes it), committed."""
    from sqlalchemy import create_engine, text

    from slmcnn.monitoring.db.connection import database_url

    engine = create_engine(database_url(db))
    try:
        with engine.begin() as conn:
            result = conn.execute(text(sql))
            return [tuple(r) for r in result] if result.returns_rows else []
    finally:
        engine.dispose()
