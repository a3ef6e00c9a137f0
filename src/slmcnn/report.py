"""A self-contained HTML report of a monitored build: curves, where errors recur, alerts, thumbnails."""

import html
import io
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from sqlalchemy import select  # noqa: E402

from slmcnn import images  # noqa: E402
from slmcnn.errors import SlmcnnError  # noqa: E402
from slmcnn.render import overlay, png_data_uri  # noqa: E402
from slmcnn.store import ResultStore, alerts, builds, layers, tiles  # noqa: E402
from slmcnn.tiles import TileGrid, stitch  # noqa: E402


def _figure_uri(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return png_data_uri(np.asarray(Image.open(buffer).convert("RGB")))


def _jpeg_uri(array: np.ndarray, max_side: int | None = None) -> str:
    import base64

    img = Image.fromarray(array)
    if max_side:
        img.thumbnail((max_side, max_side))
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def _overlay_for(row, conn) -> np.ndarray | None:
    """Re-draw a layer's overlay from its photo and stored tile probabilities."""
    path = Path(row.path or "")
    if not path.is_file():
        return None
    try:
        image = images.read(path)
    except SlmcnnError:
        return None
    geo = json.loads(row.geometry)
    cells = conn.execute(select(tiles).where(tiles.c.layer_id == row.id).order_by(tiles.c.row, tiles.c.col)).all()
    probs = np.array([[c.p_powder, c.p_object, c.p_error] for c in cells], np.float32)
    grid = TileGrid(
        image[:0], np.array(geo["ys"]), np.array(geo["xs"]), geo["height"], geo["width"], geo["patch"], geo["stride"]
    )
    return overlay(image, stitch(grid, probs).argmax(2).astype(np.uint8))


def write_report(db: str | Path, out: str | Path, thumbnails: int = 200) -> Path:
    """Write one HTML file with every image embedded (works offline, can be mailed)."""
    store = ResultStore(db)
    with store.engine.connect() as conn:
        build = conn.execute(select(builds)).first()
        if build is None:
            raise SlmcnnError(f"{db} holds no monitored build")
        rows = conn.execute(select(layers).where(layers.c.build_id == build.id).order_by(layers.c.number)).all()
        alert_rows = conn.execute(
            select(alerts).where(alerts.c.build_id == build.id).order_by(alerts.c.layer, alerts.c.id)
        ).all()
        done = [r for r in rows if r.status == "done"]
        failed = [r for r in rows if r.status == "failed"]
        numbers = [r.number for r in done]
        fig, ax = plt.subplots(figsize=(8, 3))
        ax.plot(numbers, [r.error for r in done], "r.-", label="error")
        ax.plot(numbers, [r.object for r in done], "b.-", alpha=0.5, label="object")
        for a in {a.layer for a in alert_rows}:
            ax.axvline(a, color="orange", alpha=0.3)
        ax.set(xlabel="layer", ylabel="fraction of bed", title="Error and object fraction per layer (orange: alerts)")
        ax.legend()
        fig.tight_layout()
        curve = _figure_uri(fig)
        heat_uri = ""
        if done:
            grids = {}
            for r in done:
                for c in conn.execute(select(tiles.c.row, tiles.c.col, tiles.c.cls).where(tiles.c.layer_id == r.id)):
                    grids.setdefault((c.row, c.col), []).append(c.cls == 2)
            shape = (max(k[0] for k in grids) + 1, max(k[1] for k in grids) + 1)
            heat = np.zeros(shape)
            for (rr, cc), v in grids.items():
                heat[rr, cc] = np.mean(v)
            fig, ax = plt.subplots(figsize=(4.5, 4))
            shown = ax.imshow(heat, cmap="Reds", vmin=0, vmax=1)
            fig.colorbar(shown, ax=ax, label="share of layers with Error")
            ax.set(
                title="Where on the plate errors recur",
                xlabel="tile column",
                ylabel="tile row",
                xticks=range(shape[1]),
                yticks=range(shape[0]),
            )
            fig.tight_layout()
            heat_uri = _figure_uri(fig)
        cards = []
        for r in done[:thumbnails]:
            picture = _overlay_for(r, conn)
            if picture is None:
                cards.append(f'<div class="card"><div class="missing">image missing</div><p>layer {r.number}</p></div>')
                continue
            full, thumb = _jpeg_uri(picture), _jpeg_uri(picture, 180)
            flag = " alert" if any(a.layer == r.number for a in alert_rows) else ""
            cards.append(
                f'<div class="card{flag}"><a href="#l{r.id}"><img class="thumb" src="{thumb}" alt="layer {r.number}"></a>'
                f"<p>layer {r.number} &middot; error {r.error:.3f}</p>"
                f'<a href="#_" class="lightbox" id="l{r.id}"><img src="{full}" alt="layer {r.number} full size"></a></div>'
            )
    alert_html = (
        "".join(
            f"<tr><td>{a.layer}</td><td>{html.escape(a.rule)}</td><td>{html.escape(a.message)}</td></tr>"
            for a in alert_rows
        )
        or '<tr><td colspan="3">no alerts</td></tr>'
    )
    failed_html = "".join(f"<li>{html.escape(r.file)}: {html.escape(r.message or '')}</li>" for r in failed)
    mean_error = float(np.mean([r.error for r in done])) if done else 0.0
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>slmcnn build report</title>
<style>
body{{font-family:sans-serif;margin:2em;color:#222}} table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:4px 8px}}
.grid{{display:flex;flex-wrap:wrap;gap:8px}} .card{{width:184px;font-size:12px}} .card.alert img.thumb{{outline:3px solid #e60}}
.lightbox{{display:none}} .lightbox:target{{display:flex;position:fixed;inset:0;background:rgba(0,0,0,.85);align-items:center;justify-content:center}}
.lightbox img{{max-width:95vw;max-height:95vh}} .missing{{width:180px;height:180px;background:#eee}}
</style></head><body>
<h1>Build report</h1>
<table><tr><th>watched folder</th><td>{html.escape(build.watch_dir)}</td></tr>
<tr><th>model</th><td>{html.escape(build.model or "")}</td></tr>
<tr><th>layers classified</th><td>{len(done)}</td></tr><tr><th>layers failed</th><td>{len(failed)}</td></tr>
<tr><th>alerts</th><td>{len(alert_rows)}</td></tr><tr><th>mean error fraction</th><td>{mean_error:.4f}</td></tr></table>
<h2>Error fraction per layer</h2><img id="curve" src="{curve}" alt="error fraction per layer">
<h2>Error frequency per grid cell</h2>{f'<img id="heatmap" src="{heat_uri}" alt="error heatmap">' if heat_uri else "<p>no layers</p>"}
<h2>Alerts</h2><table id="alerts"><tr><th>layer</th><th>rule</th><th>message</th></tr>{alert_html}</table>
{f"<h2>Failed layers</h2><ul>{failed_html}</ul>" if failed else ""}
<h2>Layers</h2><p>Click a thumbnail for the full-size overlay (white powder, blue object, red error).</p>
<div class="grid" id="layers">{"".join(cards)}</div>
<script>
window.addEventListener("load", () => {{
  const shown = [...document.images].filter((img) => img.complete && img.naturalWidth > 0).length;
  document.body.dataset.imagesShown = String(shown);
  document.body.dataset.imagesTotal = String(document.images.length);
}});
</script>
</body></html>"""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page)
    return out
