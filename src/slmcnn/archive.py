"""Re-analysing archives on a Ray cluster (`predict-layer --ray`): one machine does about 15 layers a
second, an archive holds 10^5. Ray Data hands the layers out in batches and `map_batches` runs them
through the one layer pipeline (pipeline.LayerPipeline: the same reading, camera, tiles, backend and
stitching as predict-layer) in one actor per worker, which loads the model once and writes each
layer's usual files; the driver keeps one row per layer for summary.csv and layers.parquet.

    run = run_archive(ArchiveJob(out="out"), paths, address=None, workers=2)

Without an address a local cluster is started on loopback. Every node reads the photos and writes
the files under the same paths, so an archive on several nodes lives on a shared file system.
"""

import csv
import io
import logging
import os
import re
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from slmcnn import errors
from slmcnn.constants import CLASSES
from slmcnn.errors import SettingsError, SlmcnnError
from slmcnn.files import atomic_path, check_new, remove_temporaries, storable, write_text
from slmcnn.outputs import SCORE_FIELDS, SUMMARY_FIELDS, RunFiles
from slmcnn.pipeline import LayerPipeline, RunOptions
from slmcnn.predict import LayerOutcome

LAYERS_PER_BATCH = 16
"""Layers per map_batches call: enough to fill the network's batches of tiles, few enough that the
last batches spread over the workers."""
TABLE = "layers.parquet"
FRACTIONS = [f"{c.lower()}_fraction" for c in CLASSES]


def require_ray():
    """The ray module, or one line saying which extra brings it."""
    try:
        import ray
        import ray.data  # noqa: F401 - Ray Data comes with the extra, not with ray alone
    except ImportError:
        raise SettingsError("`ray` needs Ray Data, which is not installed: pip install 'slmcnn[ray]'") from None
    return ray


@dataclass
class ArchiveJob:
    """What every worker needs to run the layer pipeline as predict-layer does: plain values, sent to
    each worker once (the layers travel in the rows, each with the name of its files)."""

    out: str
    layers: int = 0  # in the whole job: what `auto` weighs a compilation against
    model: str | None = None
    backend: str = "auto"
    precision: str = "auto"
    patch: int | None = None
    stride: int | None = None
    camera: str | None = None  # a camera profile judges each layer alone: a build memory learns in order
    error_threshold: float | None = None
    truth: str | None = None
    kinds: tuple[str, ...] = ("overlay", "classes", "json")
    explain: bool = False
    explain_steps: int = 32
    workers: int = 2  # threads decoding the next layers in each worker
    max_megapixels: float | None = None


def layer_pipeline(job: ArchiveJob, files: RunFiles | None, backend: str | None = None) -> LayerPipeline:
    """The layer pipeline predict-layer runs for these settings, on one CPU. The driver builds one
    first with the eager `torch` backend and no files: bad settings are one error before any worker."""
    from slmcnn.backends import BACKENDS, create_engine
    from slmcnn.checkpoint import open_model
    from slmcnn.profile import open_camera

    if job.backend not in BACKENDS:
        raise SettingsError(f"`backend` must be one of {', '.join(BACKENDS)} (got {job.backend!r})")
    camera = open_camera(job.camera, adapt=0, error_threshold=job.error_threshold)
    model = open_model(job.model)
    engine = create_engine(model, backend or job.backend, job.precision, camera=camera, layers=job.layers or None)
    if getattr(engine.backend, "name", "") == "onnx":
        engine.backend = _onnx_on_one_thread(model)
    options = RunOptions(
        patch=job.patch or model.info.patch, stride=job.stride, workers=job.workers, camera=camera,
        truth=Path(job.truth) if job.truth else None, explain=job.explain, explain_steps=job.explain_steps,
        model_name=model.source.name, max_megapixels=job.max_megapixels, maps="tiles",
    )  # fmt: skip  # fine maps learn each build layer after layer; a Ray worker sees layers alone
    return LayerPipeline(engine.backend, options, files, model)


def _onnx_on_one_thread(model):
    """The ONNX engine on one thread: by default ONNX Runtime spins a thread on every core of the
    node, and workers sharing the cores that way ran slower together than one alone."""
    from slmcnn.backends.onnxrt import OnnxBackend, export_onnx

    with tempfile.TemporaryDirectory(prefix="slmcnn-") as folder:
        return OnnxBackend(export_onnx(model, Path(folder) / "model.onnx", model.spec.patch), model, threads=1)


class LayerWorker:
    """One Ray actor of one CPU: the model and its engine loaded once, then batches of layers through
    the pipeline. Files are written before a batch is given back, so a finished run has all of them."""

    def __init__(self, job: ArchiveJob):
        import torch

        torch.set_num_threads(1)  # its CPU: threads beyond it would fight the other workers for theirs
        self.files = RunFiles(job.out, job.kinds, summary=False, background=False)
        self.pipeline = layer_pipeline(job, self.files)
        self.worker = f"{socket.gethostname()}:{os.getpid()}"

    def __call__(self, batch: dict[str, np.ndarray]):
        import pyarrow as pa

        paths = [Path(path) for path in batch["path"]]
        self.files.names = dict(zip(paths, map(str, batch["name"])))  # unique over the whole job, made by the driver
        outcomes = self.pipeline.run(paths)
        rows = [layer_row(int(i), outcome, self.worker) for i, outcome in zip(batch["index"], outcomes)]
        return pa.Table.from_pylist(rows, schema())


def schema():
    """The columns of layers.parquet: summary.csv's, each layer's tile classes and probabilities
    (row-major over its grid, classes innermost), its tile anomaly where a camera profile gave one,
    and which worker classified it."""
    import pyarrow as pa

    number = [(name, pa.float64()) for name in (*FRACTIONS, "seconds", *SCORE_FIELDS)]
    sizes = [(name, pa.int32()) for name in ("width", "height", "patch", "stride", "rows", "cols", "tiles")]
    lists = [("tile_classes", pa.list_(pa.int8())), ("probabilities", pa.list_(pa.float32()))]
    lists.append(("anomaly", pa.list_(pa.float32())))
    text = [("image", pa.string()), ("error", pa.string()), ("model", pa.string()), ("worker", pa.string())]
    text += [("grade", pa.string()), ("defect", pa.string())]
    sizes.append(("regions", pa.int32()))
    return pa.schema([("index", pa.int64()), *text, *sizes, *number, *lists])


def layer_row(index: int, outcome: LayerOutcome, worker: str) -> dict:
    """One layer as a row of layers.parquet; a layer that could not be read has its `error` only."""
    row = {"index": index, "image": storable(str(outcome.path)), "error": outcome.error, "worker": worker}
    result = outcome.result
    if result is None:
        return row
    grid = result.grid
    row.update(width=grid.width, height=grid.height, patch=grid.patch, stride=grid.stride, tiles=grid.count)
    row.update(rows=grid.shape[0], cols=grid.shape[1], model=result.model, seconds=round(result.seconds, 4))
    row.update({name: result.fractions[c] for name, c in zip(FRACTIONS, CLASSES)})
    row["tile_classes"] = result.tile_classes.ravel().tolist()
    row["probabilities"] = result.probabilities.ravel().tolist()
    if result.anomaly is not None:
        row["anomaly"] = result.anomaly.ravel().tolist()
    if outcome.score is not None:
        score = outcome.score
        row.update(tile_accuracy=score.tile_accuracy, error_f1=score.tiles["Error"].f1)
        row["error_iou"] = score.pixel_iou["Error"]
    return row


@dataclass
class ArchiveRun:
    """A finished archive: one row per layer in input order (what layers.parquet holds)."""

    layers: list[dict]
    table: Path
    workers: int
    seconds: float

    @property
    def failures(self) -> list[dict]:
        return [row for row in self.layers if row["error"] is not None]


def run_archive(
    job: ArchiveJob,
    paths: list[Path],
    address: str | None = None,
    workers: int | None = None,
    progress: Callable[[dict], None] | None = None,
) -> ArchiveRun:
    """Classify the layers at `paths` on the Ray cluster at `address` (None: a local one on loopback, stopped
    afterwards) with `workers` actors of one CPU each (default: one per CPU of the cluster); call
    `progress` with each layer's row as it comes back, in the order they finish."""
    ray = require_ray()
    if workers is not None and (not isinstance(workers, int) or isinstance(workers, bool) or workers < 1):
        raise SettingsError(f"`ray_workers` must be a whole number of at least 1 (got {workers!r})")
    if not paths:
        raise SettingsError("no layers to classify")
    out = Path(job.out)
    table = check_new(out / TABLE, True, paths)
    names = RunFiles(out, job.kinds, paths, summary=False, background=False).names
    layer_pipeline(job, None, "torch")
    started = time.perf_counter()
    own = _connect(ray, address, workers)
    rows: list[dict] = []
    try:
        cpus = int(ray.cluster_resources().get("CPU", 0))
        workers = workers or max(cpus, 1)
        if workers > cpus:
            raise SettingsError(f"`ray_workers` {workers}: the cluster has {cpus} CPU(s), one per worker")
        items = [{"index": i, "path": str(p), "name": names[p]} for i, p in enumerate(paths)]
        batch = max(1, min(LAYERS_PER_BATCH, len(items) // workers))
        layers = ray.data.from_items(items, override_num_blocks=-(-len(items) // batch))
        done = layers.map_batches(
            LayerWorker, fn_constructor_kwargs={"job": job}, batch_size=batch, batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=workers, max_tasks_in_flight_per_actor=1), num_cpus=1,
        )  # fmt: skip
        for batch in done.iter_batches(batch_format="pyarrow", batch_size=None):
            for row in batch.to_pylist():
                rows.append(row)
                if progress is not None:
                    progress(row)
    except Exception as exc:
        error = _user_error(exc)
        if error is None:
            raise
        raise error from None
    finally:
        if own:
            ray.shutdown()
        remove_temporaries(out)  # of a worker killed while writing a layer's files
    rows.sort(key=lambda row: row["index"])
    _grade(rows)
    _write_table(rows, table)
    _write_summary(rows, out / "summary.csv", scored=job.truth is not None)
    return ArchiveRun(rows, table, workers, time.perf_counter() - started)


def _connect(ray, address: str | None, workers: int | None) -> bool:
    """Join the cluster at `address`, or start a local one on loopback; True when it is ours to stop."""
    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    quiet = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    try:
        if address:
            _answers(address)
            ray.init(address=address, **quiet)
        else:
            # a local cluster has token authentication by default; Ray's warning that it does is no news
            logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
            cpus = max(os.cpu_count() or 1, workers or 1)
            ray.init(num_cpus=cpus, _node_ip_address="127.0.0.1", **quiet)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise SettingsError(f"`ray` {address or 'local'}: cannot start or reach the cluster ({exc})") from None
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the command prints a line per layer instead
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # ... and needs no note that it does
    context.print_on_execution_start = False
    return True


def _answers(address: str) -> None:
    """Refuse at once a host:port where nothing listens (Ray itself would retry for minutes)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return  # "auto", or an address Ray reads its own way
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise SettingsError(f"`ray` {address}: no Ray cluster answers there ({exc.strerror or exc})") from None


def _user_error(exc: BaseException) -> SlmcnnError | None:
    """The SlmcnnError behind what Ray raised (a mask of the wrong size; a model file one node cannot
    read, which Ray passes on as text only), as one plain error of its kind; None when there is none
    (a bug, or the cluster failing)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, SlmcnnError):
            kind = next(k for k in type(exc).__mro__ if k.__module__ == errors.__name__)
            return kind(*exc.args)
        told = re.search(r"^slmcnn\.errors\.(\w+): (.*)\Z", str(exc).rstrip(), re.MULTILINE)
        if told and isinstance(getattr(errors, told[1], None), type):
            return getattr(errors, told[1])(told[2])
        exc = getattr(exc, "cause", None) or exc.__cause__
    return None


def _write_table(rows: list[dict], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    with atomic_path(path) as temporary:
        pq.write_table(pa.Table.from_pylist(rows, schema()), temporary)


def _grade(rows: list[dict]) -> None:
    """Each layer's grade, given here in input order (workers see layers apart): as predict-layer
    grades tile maps, persistence over the layers before each."""
    from slmcnn.constants import ERROR
    from slmcnn.grading import GradeRules, grade_layer
    from slmcnn.tiles import geometry

    rules, history = GradeRules(), []
    for row in rows:
        if row["error"] is not None:
            continue
        grid = geometry(row["height"], row["width"], row["patch"], row["stride"])
        classes = np.asarray(row["tile_classes"]).reshape(grid.shape)
        p_error = np.asarray(row["probabilities"], np.float32).reshape(grid.count, -1)[:, ERROR]
        anomaly = np.asarray(row["anomaly"], np.float32) if row.get("anomaly") else None
        grade = grade_layer(classes, p_error, anomaly, grid, rules, history)
        history = [*history, classes][-rules.history_needed :] if rules.history_needed else []
        row.update(grade=grade.grade, regions=0, defect="")


def _write_summary(rows: list[dict], path: Path, scored: bool) -> None:
    """summary.csv as predict-layer writes it: one row per classified layer, in input order."""
    fields = SUMMARY_FIELDS + (SCORE_FIELDS if scored else [])
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        if row["error"] is None:
            writer.writerow({**row, **{name: round(row[name], 5) for name in FRACTIONS}})
    write_text(path, text.getvalue())
