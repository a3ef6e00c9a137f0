"""Pictures a person looks at: overlays, class maps, training curves, confusion matrices, IG figures.

Figures are matplotlib `Figure` objects drawn without pyplot, so importing slmcnn never changes the
process's matplotlib backend; matplotlib is imported when a figure is drawn, not with the module
(a layer's overlay needs none of it).
"""

import base64
import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from slmcnn import CLASS_COLOURS, CLASSES
from slmcnn.files import atomic_path
from slmcnn.images import to_uint8
from slmcnn.metrics import LayerScore

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PALETTE = np.full((256, 3), 128, np.uint8)  # anything that is not a class (ignored areas) is gray
PALETTE[: len(CLASSES)] = [CLASS_COLOURS[c] for c in CLASSES]


def colour_map(classes: np.ndarray) -> np.ndarray:
    """Class index map (H, W) -> RGB (H, W, 3) with the reference's colours (a uint8 map goes
    through OpenCV's lookup tables, 10x faster than numpy indexing)."""
    if classes.dtype != np.uint8:
        return PALETTE[classes]
    import cv2

    return cv2.merge([cv2.LUT(classes, PALETTE[:, channel].copy()) for channel in range(3)])


def overlay(image: np.ndarray, classes: np.ndarray, alpha: float = 0.2, y0: int = 0) -> np.ndarray:
    """(1 - alpha) x image + alpha x colour map, as the reference's cv2.addWeighted(0.8, 0.2).
    Ignored areas (not a class) are hatched gray; `y0` is the first row's, for a strip of rows."""
    import cv2

    out = cv2.addWeighted(to_uint8(image), 1.0 - alpha, colour_map(classes), alpha, 0.0)
    ignored = classes >= len(CLASSES)
    if ignored.any():
        yy, xx = np.nonzero(ignored)
        hatch = (yy + y0 + xx) % 10 < 3
        out[yy[hatch], xx[hatch]] = 90
    return out


def _figure(**settings) -> "Figure":
    from matplotlib.figure import Figure

    return Figure(**settings)


def save_figure(fig: "Figure", path: Path) -> None:
    """Save a figure whole or not at all (a temporary name, then a rename)."""
    with atomic_path(path) as temporary:
        fig.savefig(temporary)


def plot_history(history: list[dict], out_dir: Path) -> None:
    """accuracy.png and loss.png: training vs validation per epoch, like the reference's figures."""
    epochs = [row["epoch"] for row in history]
    for key, title in (("accuracy", "model accuracy"), ("loss", "model loss")):
        fig = _figure(figsize=(5, 4), dpi=100)
        ax = fig.subplots()
        ax.plot(epochs, [row[key] for row in history], label="train")
        ax.plot(epochs, [row[f"val_{key}"] for row in history], label="validation")
        ax.set(title=title, xlabel="epoch", ylabel=key)
        ax.legend()
        fig.tight_layout()
        save_figure(fig, out_dir / f"{key}.png")


def plot_confusion(confusion: np.ndarray, path: Path) -> None:
    from sklearn.metrics import ConfusionMatrixDisplay

    fig = _figure(figsize=(4.5, 4), dpi=100)
    ax = fig.subplots()
    ConfusionMatrixDisplay(confusion, display_labels=list(CLASSES)).plot(ax=ax, colorbar=False, cmap="Blues")
    ax.set_title("confusion matrix (rows: true)")
    fig.tight_layout()
    save_figure(fig, path)


def attribution_figure(
    baseline: np.ndarray, image: np.ndarray, attribution: np.ndarray, title: str, path: Path
) -> None:
    """The reference's 2x2 IG figure: baseline, original, attribution mask, overlay."""
    heat = np.abs(attribution).sum(axis=-1) if attribution.ndim == 3 else np.abs(attribution)
    heat = heat / (np.percentile(heat, 99.5) + 1e-12)
    fig = _figure(figsize=(6.5, 6.5), dpi=100)
    axes = fig.subplots(2, 2)
    panels = (
        ("Baseline image", to_uint8(baseline), None),
        ("Original image", to_uint8(image), None),
        ("Attribution mask", np.clip(heat, 0, 1), "inferno"),
        ("Overlay", None, None),
    )
    for ax, (name, data, cmap) in zip(axes.flat, panels):
        if data is None:
            ax.imshow(to_uint8(image)[..., 0], cmap="gray")
            ax.imshow(np.clip(heat, 0, 1), cmap="inferno", alpha=0.45)
        else:
            ax.imshow(data, cmap=cmap, vmin=0 if cmap else None, vmax=1 if cmap else None)
        ax.set_title(name)
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path)


def heatmap_png(heat: np.ndarray, image: np.ndarray) -> np.ndarray:
    """Layer-wide attribution heatmap blended over the gray image (RGB uint8)."""
    norm = np.clip(heat / (np.percentile(heat, 99.5) + 1e-12), 0, 1)
    import matplotlib

    colours = (matplotlib.colormaps["inferno"](norm)[..., :3] * 255).astype(np.float32)
    gray = to_uint8(image).astype(np.float32)
    return np.clip(0.5 * gray + 0.5 * colours, 0, 255).astype(np.uint8)


def png_data_uri(array: np.ndarray, max_side: int | None = None) -> str:
    """An image as a data: URI, so HTML pages are self-contained."""
    from PIL import Image

    img = Image.fromarray(array)
    if max_side and max(img.size) > max_side:
        img.thumbnail((max_side, max_side))
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def figure_png(fig: "Figure") -> np.ndarray:
    """A figure as an RGB array."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    from PIL import Image

    return np.asarray(Image.open(buffer).convert("RGB"))


@dataclass
class PageEntry:
    """One layer on a page: its photo and overlay (RGB), class fractions and, if scored, its score."""

    name: str
    image: np.ndarray
    overlay: np.ndarray
    fractions: dict[str, float]
    score: LayerScore | None = None


def layers_page(entries: list[PageEntry], title: str, extra_html: str = "") -> str:
    """A self-contained HTML page: each layer beside its overlay, with class fractions (and scores)."""
    import html

    cards = []
    for e in entries:
        f = e.fractions
        score = ""
        if e.score:
            score = (
                f"<br>tile accuracy {e.score.tile_accuracy:.3f} &middot; Error F1 {e.score.tiles['Error'].f1:.3f}"
                f" &middot; Error pixel IoU {e.score.pixel_iou['Error']:.3f}"
            )
        name = html.escape(e.name)
        cards.append(
            f'<div class="layer"><h3>{name}</h3>'
            f'<img src="{png_data_uri(to_uint8(e.image), 384)}" alt="layer {name}">'
            f'<img src="{png_data_uri(e.overlay, 384)}" alt="overlay {name}">'
            f'<p><b class="err">error {f["Error"]:.3f}</b> &middot; object {f["Object"]:.3f} &middot; '
            f"powder {f['Powder']:.3f}{score}</p></div>"
        )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em;color:#222}} .layer{{margin-bottom:1.5em}}
.layer img{{width:384px;margin-right:8px;border:1px solid #ccc}} .err{{color:#c00}}
.legend span{{display:inline-block;padding:2px 8px;margin-right:6px;border:1px solid #999}}</style></head><body>
<h1>{html.escape(title)}</h1>
<p class="legend">Overlay = 0.8 &times; photo + 0.2 &times; class colour:
<span style="background:#fff">Powder</span><span style="background:#00f;color:#fff">Object</span>
<span style="background:#f00;color:#fff">Error</span></p>
{extra_html}{"".join(cards)}</body></html>"""
