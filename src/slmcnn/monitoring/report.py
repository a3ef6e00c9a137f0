"""A self-contained HTML report of the builds in a monitor's database: curves, where errors recur,
alerts, every layer's overlay and, for builds followed with a camera profile, where tiles were
unlike this camera's good layers. It reads only what the monitor stored: the overlay file it wrote,
or else the photo, straightened by the stored camera calibration, with the stored tile classes."""

import base64
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from slmcnn import images
from slmcnn.camera import CameraCalibration
from slmcnn.errors import SlmcnnError
from slmcnn.files import check_new, writable, write_text
from slmcnn.grading import GRADES, regions_of
from slmcnn.labels import ERROR, NOT_A_CLASS
from slmcnn.monitoring.alerts import Alert
from slmcnn.monitoring.db import Database
from slmcnn.monitoring.db.records import BuildRow, StoredLayer, TileGrid
from slmcnn.predict import classify_pixels
from slmcnn.render import AnomalyPicture, anomaly_legend, anomaly_picture, figure_png, html_page, overlay
from slmcnn.tiles import TileGeometry

FULL_SIDE = 1024
CRITICAL = "#d22"  # the colour of critical everywhere (pages, app, report)
UNNAMED = ("layers", "")  # a watched folder so named is shown by its parent's name


def _jpeg_uri(array: np.ndarray, max_side: int) -> str:
    img = Image.fromarray(array)
    img.thumbnail((max_side, max_side))
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def _png_uri(fig: Figure) -> str:
    buffer = io.BytesIO()
    Image.fromarray(figure_png(fig)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def layer_picture(layer: StoredLayer, grid: TileGrid | None) -> np.ndarray | None:
    """The stored overlay, or one drawn from the photo as the monitor saw it with the layer's stored
    tiles (`grid`); None when neither is there."""
    for path, drawn in ((layer.overlay, True), (layer.path, False)):
        if not path or not Path(path).is_file():
            continue
        try:
            image = images.read(path)
        except SlmcnnError:
            continue
        if drawn:
            return images.to_uint8(image)
        camera = CameraCalibration(**layer.geometry["camera"]) if layer.geometry.get("camera") else None
        if camera is not None:
            image = camera.warp(image)
        geometry = TileGeometry.from_json(layer.geometry)
        if image.shape[:2] != (geometry.height, geometry.width) or grid is None:
            return None
        ignore = camera.ignore_mask() if camera is not None and camera.ignore else None
        return overlay(image, classify_pixels(geometry, grid.probabilities, ignore)[0])
    return None


def error_frequency(db: Database, done: list[StoredLayer]) -> np.ndarray:
    """Per tile: the share of layers where it was Error, among those where it was not ignored."""
    return error_history(done, db.tile_grids([layer.id for layer in done]))[0]


@dataclass
class RecurringRegion:
    """Tiles (touching) that were Error in more than one layer, and in which layers."""

    rows: tuple[int, int]
    cols: tuple[int, int]
    tiles: int
    layers: list[int]

    @property
    def spans(self) -> str:
        """The layers as runs: '6-9, 12'."""
        runs: list[list[int]] = []
        for n in self.layers:
            if runs and n == runs[-1][1] + 1:
                runs[-1][1] = n
            else:
                runs.append([n, n])
        return ", ".join(f"{a}-{b}" if b > a else f"{a}" for a, b in runs)

    def to_json(self) -> dict:
        return {"rows": self.rows, "cols": self.cols, "tiles": self.tiles, "layers": self.layers, "spans": self.spans}


def error_history(done: list[StoredLayer], grids: dict[int, TileGrid]) -> tuple[np.ndarray, list[RecurringRegion]]:
    """Where on the plate errors recur: per tile the share of layers where it was Error (among
    those where it was not ignored), and the regions of tiles Error in two layers or more, each
    with the layers it was Error in, the most layers first (of the latest grid's shape). `grids`:
    the layers' stored tiles (Database.tile_grids, read at once); a layer without tiles is skipped."""
    errors, counted, seen = None, None, {}
    for layer in done:
        if layer.id not in grids:
            continue
        classes = grids[layer.id].classes
        if errors is None or errors.shape != classes.shape:
            errors, counted, seen = np.zeros(classes.shape), np.zeros(classes.shape), {}
        errors += classes == ERROR
        counted += classes != NOT_A_CLASS
        for r, c in np.argwhere(classes == ERROR):
            seen.setdefault((int(r), int(c)), []).append(layer.number)
    if errors is None:
        return np.zeros((0, 0)), []
    regions = []
    for cells in regions_of(errors >= 2):
        numbers = sorted({n for r, c in cells for n in seen[(int(r), int(c))] if n is not None})
        rows, cols = (int(cells[:, 0].min()), int(cells[:, 0].max())), (int(cells[:, 1].min()), int(cells[:, 1].max()))
        regions.append(RecurringRegion(rows, cols, len(cells), numbers))
    regions.sort(key=lambda g: (len(g.layers), g.tiles), reverse=True)
    return errors / np.maximum(counted, 1), regions


def curve_figure(done: list[StoredLayer], alerts: list[Alert]) -> Figure:
    """Error and object fraction by layer number, a red line at each critical layer (red is critical
    on every page); whole layer numbers on the axis."""
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(8, 3))
    ax = fig.subplots()
    numbers = [r.number for r in done]
    ax.plot(numbers, [r.fractions["Error"] for r in done], ".-", color="#800000", label="error")
    ax.plot(numbers, [r.fractions["Object"] for r in done], "b.-", alpha=0.5, label="object")
    for i, layer in enumerate(sorted({a.layer for a in alerts if a.grade == "critical"})):
        ax.axvline(layer, color=CRITICAL, alpha=0.35, lw=2, label=None if i else "critical layer")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="layer", ylabel="fraction of bed", title="Error and object fraction per layer")
    ax.legend()
    fig.tight_layout()
    return fig


def _heatmap(heat: np.ndarray) -> str:
    fig = Figure(figsize=(4.5, 4))
    ax = fig.subplots()
    shown = ax.imshow(heat, cmap="Reds", vmin=0, vmax=1)
    fig.colorbar(shown, ax=ax, label="share of layers with Error")
    ax.set(title="Where on the plate errors recur", xlabel="tile column", ylabel="tile row")
    ax.set(xticks=range(heat.shape[1]), yticks=range(heat.shape[0]))
    fig.tight_layout()
    return _png_uri(fig)


def anomaly_grid(grid: TileGrid | None) -> np.ndarray | None:
    """A layer's stored tile anomaly (rows, cols), NaN where the tile is ignored; None where no
    camera profile scored it."""
    if grid is None or grid.anomaly is None:
        return None
    return np.where(grid.classes == NOT_A_CLASS, np.nan, grid.anomaly.reshape(grid.classes.shape))


def anomaly_summary(grids: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per tile position over the layers: the highest and the mean anomaly (NaN where always
    ignored); only the layers of the latest grid's shape count."""
    stack = np.stack([g for g in grids if g.shape == grids[-1].shape])
    with np.errstate(invalid="ignore"):
        mean = np.nansum(stack, axis=0) / (~np.isnan(stack)).sum(axis=0)
    return np.fmax.reduce(stack, axis=0), mean


@dataclass
class _Card:
    layer: StoredLayer
    thumb: str | None  # None: the picture is missing
    full: str | None
    alert: bool
    grade: str
    anomaly: AnomalyPicture | None


@dataclass
class _BuildAnomaly:
    """What the camera profile saw over a build: where on the plate, and in how many layers."""

    highest: AnomalyPicture
    mean: AnomalyPicture
    layers: int  # layers scored
    layers_over: int  # of them, with a tile above 1


def build_title(build: BuildRow) -> str:
    """The build's name, where the monitor named it after a folder called 'layers' the parent's
    ('build1 #2', not 'layers #2'), as the app names such a folder."""
    folder = Path(build.watch_dir)
    base, hash_, count = build.name.partition(" #")
    if base == folder.name and folder.name in UNNAMED and folder.parent.name:
        return folder.parent.name + hash_ + count
    return build.name


@dataclass
class _Section:
    build: BuildRow
    done: list[StoredLayer]
    failed: list[StoredLayer]
    alerts: list[Alert]
    cards: list[_Card]
    curve: str
    heatmap: str | None
    anomaly: _BuildAnomaly | None
    mean_error: float
    grades: list[tuple[int, str]]  # (layer, grade) in layer order: the strip under the plot
    regions: list[RecurringRegion]

    @property
    def title(self) -> str:
        return build_title(self.build)

    @property
    def grade_counts(self) -> dict[str, int]:
        return {g: sum(1 for _, have in self.grades if have == g) for g in GRADES}


def _section(
    build: BuildRow, rows: list[StoredLayer], alerts: list[Alert], tiles: dict[int, TileGrid], thumbnails: int | None
) -> _Section:
    """A build's part of the report from what was read of it (its layers, alerts and tiles)."""
    done = [r for r in rows if r.status == "done"]
    failed = [r for r in rows if r.status == "failed"]
    alerted = {a.layer for a in alerts if a.grade == "critical"}
    graded = {r.number: r.grade for r in rows if r.grade is not None}
    heat, regions = error_history(done, tiles)
    grids = {r.id: anomaly_grid(tiles.get(r.id)) for r in done}
    cards = []
    for r in done[:thumbnails]:
        picture = layer_picture(r, tiles.get(r.id))
        grid = grids[r.id]
        cards.append(
            _Card(
                r,
                None if picture is None else _jpeg_uri(picture, 180),
                None if picture is None else _jpeg_uri(picture, FULL_SIDE),
                r.number in alerted,
                graded.get(r.number, "ungraded"),
                None if grid is None or picture is None else anomaly_picture(grid, 512),
            )
        )
    scored = [g for g in grids.values() if g is not None]
    anomaly = None
    if scored:
        highest, mean = anomaly_summary(scored)
        over = sum(bool((g > 1).any()) for g in scored)
        anomaly = _BuildAnomaly(anomaly_picture(highest, 300), anomaly_picture(mean, 300), len(scored), over)
    return _Section(
        build,
        done,
        failed,
        alerts,
        cards,
        _png_uri(curve_figure(done, alerts)),
        _heatmap(heat) if done else None,
        anomaly,
        float(np.mean([r.fractions["Error"] for r in done])) if done else 0.0,
        [(r.number, graded.get(r.number, "ungraded")) for r in done],
        regions,
    )


def write_report(
    db: str | Path | Database, out: str | Path, thumbnails: int | None = None, force: bool = False
) -> Path:
    """Write one HTML file with every image embedded (works offline, can be mailed): a section per
    build, newest first, with every layer (or the first `thumbnails`). An existing `out` is replaced
    only with `force`; a database that is not a monitor's is refused and left as it was."""
    out = check_new(out, force, [] if isinstance(db, Database) or "://" in str(db) else [db])
    writable(out.parent)  # before the database is read: a report that cannot be written says so first
    db = db if isinstance(db, Database) else Database(db, create=False)
    builds = db.builds()
    if not builds:
        raise SlmcnnError(f"{db.engine.url} holds no monitored build")
    ids = [build.id for build in builds]
    rows, alerts = db.layers_of(ids), db.alerts_of(ids)  # a query each, whatever the number of builds
    tiles = db.tile_grids([r.id for build in builds for r in rows[build.id] if r.status == "done"])
    sections = [
        _section(build, rows[build.id], [a.alert for a in alerts[build.id]], tiles, thumbnails)
        for build in reversed(builds)
    ]
    legend = anomaly_legend() if any(s.anomaly for s in sections) else None
    page = html_page("report.html", builds=len(builds), sections=sections, legend=legend, machines=db.machines())
    return write_text(out, page)
