"""A self-contained HTML report of the builds in a monitor's database: curves, where errors recur,
alerts and every layer's overlay. It reads only what the monitor stored: the overlay file it wrote,
or else the photo, straightened by the stored camera calibration, with the stored tile classes."""

import base64
import html
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
from slmcnn.labels import ERROR, NOT_A_CLASS
from slmcnn.monitoring.alerts import Alert
from slmcnn.monitoring.db import BuildRow, Database, StoredLayer
from slmcnn.predict import classify_pixels
from slmcnn.render import figure_png, overlay
from slmcnn.tiles import TileGeometry

FULL_SIDE = 1024


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


def layer_picture(db: Database, layer: StoredLayer) -> np.ndarray | None:
    """The stored overlay, or one drawn from the photo as the monitor saw it; None when neither is there."""
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
        grid = TileGeometry.from_json(layer.geometry)
        if image.shape[:2] != (grid.height, grid.width):
            return None
        _, probabilities = db.tile_grid(layer.id)
        ignore = camera.ignore_mask() if camera is not None and camera.ignore else None
        return overlay(image, classify_pixels(grid, probabilities, ignore)[0])
    return None


def error_frequency(db: Database, done: list[StoredLayer]) -> np.ndarray:
    """Per tile: the share of layers where it was Error, among those where it was not ignored."""
    errors, counted = None, None
    for layer in done:
        classes, _ = db.tile_grid(layer.id)
        if errors is None or errors.shape != classes.shape:
            errors, counted = np.zeros(classes.shape), np.zeros(classes.shape)
        errors += classes == ERROR
        counted += classes != NOT_A_CLASS
    return errors / np.maximum(counted, 1)


@dataclass
class _Section:
    build: BuildRow
    done: list[StoredLayer]
    failed: list[StoredLayer]
    alerts: list[Alert]


def _curve(s: _Section) -> str:
    fig = Figure(figsize=(8, 3))
    ax = fig.subplots()
    numbers = [r.number for r in s.done]
    ax.plot(numbers, [r.fractions["Error"] for r in s.done], "r.-", label="error")
    ax.plot(numbers, [r.fractions["Object"] for r in s.done], "b.-", alpha=0.5, label="object")
    for layer in {a.layer for a in s.alerts}:
        ax.axvline(layer, color="orange", alpha=0.3)
    ax.set(xlabel="layer", ylabel="fraction of bed", title="Error and object fraction per layer (orange: alerts)")
    ax.legend()
    fig.tight_layout()
    return _png_uri(fig)


def _heatmap(heat: np.ndarray) -> str:
    fig = Figure(figsize=(4.5, 4))
    ax = fig.subplots()
    shown = ax.imshow(heat, cmap="Reds", vmin=0, vmax=1)
    fig.colorbar(shown, ax=ax, label="share of layers with Error")
    ax.set(title="Where on the plate errors recur", xlabel="tile column", ylabel="tile row")
    ax.set(xticks=range(heat.shape[1]), yticks=range(heat.shape[0]))
    fig.tight_layout()
    return _png_uri(fig)


def _section(db: Database, s: _Section, thumbnails: int | None) -> str:
    b = s.build
    heat = f'<img id="heatmap-{b.id}" src="{_heatmap(error_frequency(db, s.done))}" alt="error heatmap">'
    alerted = {a.layer for a in s.alerts}
    cards = []
    for r in s.done[:thumbnails]:
        picture = layer_picture(db, r)
        if picture is None:
            cards.append(f'<div class="card"><div class="missing">image missing</div><p>layer {r.number}</p></div>')
            continue
        flag = " alert" if r.number in alerted else ""
        cards.append(
            f'<div class="card{flag}"><a href="#l{r.id}"><img class="thumb" src="{_jpeg_uri(picture, 180)}" '
            f'alt="layer {r.number}"></a><p>layer {r.number} &middot; error {r.fractions["Error"]:.3f}</p>'
            f'<a href="#_" class="lightbox" id="l{r.id}"><img src="{_jpeg_uri(picture, FULL_SIDE)}" '
            f'alt="layer {r.number} full size"></a></div>'
        )
    shown = f" (the first {len(cards)} of {len(s.done)})" if len(cards) < len(s.done) else ""
    alert_rows = "".join(
        f"<tr><td>{a.layer}</td><td>{html.escape(a.rule)}</td><td>{html.escape(a.message)}</td></tr>" for a in s.alerts
    )
    failed = "".join(f"<li>{html.escape(r.file)}: {html.escape(r.message or '')}</li>" for r in s.failed)
    mean_error = float(np.mean([r.fractions["Error"] for r in s.done])) if s.done else 0.0
    return f"""<section id="build-{b.id}"><h2>Build {html.escape(b.name)}</h2>
<table><tr><th>watched folder</th><td>{html.escape(b.watch_dir)}</td></tr>
<tr><th>model</th><td>{html.escape(b.model)}</td></tr>
<tr><th>layers classified</th><td>{len(s.done)}</td></tr><tr><th>layers failed</th><td>{len(s.failed)}</td></tr>
<tr><th>alerts</th><td>{len(s.alerts)}</td></tr><tr><th>mean error fraction</th><td>{mean_error:.4f}</td></tr></table>
<h3>Error fraction per layer</h3><img id="curve-{b.id}" src="{_curve(s)}" alt="error fraction per layer">
<h3>Error frequency per grid cell</h3>{heat if s.done else "<p>no layers</p>"}
<h3>Alerts</h3><table class="alerts"><tr><th>layer</th><th>rule</th><th>message</th></tr>
{alert_rows or '<tr><td colspan="3">no alerts</td></tr>'}</table>
{f"<h3>Failed layers</h3><ul>{failed}</ul>" if failed else ""}
<h3>Layers{shown}</h3><p>Click a thumbnail for the overlay (white powder, blue object, red error).</p>
<div class="grid">{"".join(cards)}</div></section>"""


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
    sections = []
    for build in reversed(builds):
        rows = db.layers(build.id)
        done = [r for r in rows if r.status == "done"]
        failed = [r for r in rows if r.status == "failed"]
        sections.append(_section(db, _Section(build, done, failed, db.alerts(build.id)), thumbnails))
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>slmcnn build report</title>
<style>
body{{font-family:sans-serif;margin:2em;color:#222}} table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:4px 8px}}
.grid{{display:flex;flex-wrap:wrap;gap:8px}} .card{{width:184px;font-size:12px}} .card.alert img.thumb{{outline:3px solid #e60}}
.lightbox{{display:none}} .lightbox:target{{display:flex;position:fixed;inset:0;background:rgba(0,0,0,.85);align-items:center;justify-content:center}}
.lightbox img{{max-width:95vw;max-height:95vh}} .missing{{width:180px;height:180px;background:#eee}}
</style></head><body>
<h1>Build report</h1><p>{len(builds)} build(s), newest first.</p>
{"".join(sections)}
<script>
window.addEventListener("load", () => {{
  const shown = [...document.images].filter((img) => img.complete && img.naturalWidth > 0).length;
  document.body.dataset.imagesShown = String(shown);
  document.body.dataset.imagesTotal = String(document.images.length);
}});
</script>
</body></html>"""
    return write_text(out, page)
