"""Pictures a person looks at: overlays, class maps, anomaly heat maps, training curves, confusion
matrices, IG figures, and the HTML pages that show them (Jinja2 templates in slmcnn/templates).

Figures are matplotlib `Figure` objects drawn without pyplot, so importing slmcnn never changes the
process's matplotlib backend; matplotlib is imported when a figure is drawn, not with the module
(a layer's overlay needs none of it).
"""

import base64
import io
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from slmcnn.constants import CLASS_COLOURS, CLASSES
from slmcnn.files import atomic_path
from slmcnn.grading import GRADES, LayerGrade
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


# The anomaly heat maps' scale: blues up to 1 (like this camera's good layers, darker nearer the
# threshold), then a jump to orange and on to dark red at ANOMALY_TOP (unlike them); gray: ignored.
ANOMALY_TOP = 3.0
LIKE = np.array([[247, 251, 255], [33, 113, 181]], np.float32)
UNLIKE = np.array([[253, 174, 97], [165, 0, 38]], np.float32)
IGNORED_GRAY = 128


def anomaly_colours(anomaly: np.ndarray) -> np.ndarray:
    """Anomaly scores (any shape) -> RGB uint8, with a colour jump at 1 so that the threshold shows."""
    a = np.clip(anomaly, 0, ANOMALY_TOP)[..., None]
    like = LIKE[0] + a * (LIKE[1] - LIKE[0])
    unlike = UNLIKE[0] + (a - 1) / (ANOMALY_TOP - 1) * (UNLIKE[1] - UNLIKE[0])
    colours = np.where(a > 1, unlike, like)
    return np.where(np.isnan(a), IGNORED_GRAY, colours).round().astype(np.uint8)


@dataclass
class AnomalyPicture:
    """A tile grid's anomaly drawn for a page, with the figures its caption gives."""

    uri: str
    highest: float
    over: int  # tiles above 1
    tiles: int  # tiles scored (not ignored)


def anomaly_picture(grid: np.ndarray, side: int = 384) -> AnomalyPicture:
    """The (rows, cols) anomaly grid (NaN: ignored tile) as flat cells about `side` px across, a
    white line between cells when they are big enough to spare one."""
    rows, cols = grid.shape
    cell = max(side // max(rows, cols), 1)
    picture = np.repeat(np.repeat(anomaly_colours(grid), cell, axis=0), cell, axis=1)
    if cell >= 6:
        picture[cell::cell] = 255
        picture[:, cell::cell] = 255
    scored = grid[~np.isnan(grid)]
    highest = float(scored.max()) if scored.size else 0.0
    return AnomalyPicture(png_data_uri(picture), highest, int((scored > 1).sum()), int(scored.size))


@dataclass
class AnomalyLegend:
    """The heat maps' colour scale as a picture, and its marks (percent of its width, label)."""

    uri: str
    marks: list[tuple[float, str]]


def anomaly_legend(width: int = 240) -> AnomalyLegend:
    bar = np.repeat(anomaly_colours(np.linspace(0, ANOMALY_TOP, width))[None], 12, axis=0)
    marks = [(100 * v / ANOMALY_TOP, f"{v:g}") for v in range(int(ANOMALY_TOP))]
    return AnomalyLegend(png_data_uri(bar), [*marks, (100.0, f"≥ {ANOMALY_TOP:g}")])


@cache
def _templates():
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    folder = Path(__file__).parent / "templates"
    return Environment(loader=FileSystemLoader(folder), autoescape=True, undefined=StrictUndefined)


def html_page(template: str, **context) -> str:
    """A page from slmcnn/templates, every value escaped (layer and build names come from users)."""
    return _templates().get_template(template).render(**context)


@dataclass
class PageEntry:
    """One layer on a page: its photo and overlay (RGB), class fractions and, if scored, its score
    against a mask and its tile anomaly (rows, cols; NaN where ignored)."""

    name: str
    image: np.ndarray
    overlay: np.ndarray
    fractions: dict[str, float]
    score: LayerScore | None = None
    anomaly: np.ndarray | None = None
    grade: LayerGrade | None = None
    sureness: dict[str, tuple[int, float, int]] | None = None  # per class: tiles, mean probability, tiles under UNSURE
    number: int | None = None  # the layer number in the photo's name, as the machine counts


UNSURE = 0.6  # a tile whose class has less probability than this is shown as unsure on the page
PAGE_LAYERS = 25  # layers per page of predict-layer's index.html
WORST_LAYERS = 10


def sureness(probabilities: np.ndarray, classes: np.ndarray) -> dict[str, tuple[int, float, int]]:
    """How sure the network is of each class it called: its tiles, their mean probability of it and
    how many are under UNSURE (ignored tiles, NOT_A_CLASS, left out)."""
    found = {}
    flat = classes.ravel()
    for k, name in enumerate(CLASSES):
        mine = probabilities[flat == k, k]
        if len(mine):
            found[name] = (len(mine), float(mine.mean()), int((mine < UNSURE).sum()))
    return found


@dataclass
class _Card:
    entry: PageEntry
    image: str
    overlay: str
    anomaly: AnomalyPicture | None
    anchor: str
    page: int


def layers_page(entries: list[PageEntry], title: str) -> str:
    """A self-contained HTML page: a summary first (layers by grade, the worst layers), then each
    layer beside its overlay (and anomaly heat map) with its grade, class fractions, how sure the
    network is of each class (and scores), PAGE_LAYERS layers a page."""
    cards = [
        _Card(
            e,
            png_data_uri(to_uint8(e.image), 384),
            png_data_uri(e.overlay, 384),
            None if e.anomaly is None else anomaly_picture(e.anomaly),
            f"layer-{i}",
            i // PAGE_LAYERS + 1,
        )
        for i, e in enumerate(entries)
    ]
    graded = [c for c in cards if c.entry.grade is not None]
    counts = {g: sum(1 for c in graded if c.entry.grade.grade == g) for g in GRADES}
    worst = sorted((c for c in graded if c.entry.grade.grade != "ok"), key=lambda c: -c.entry.grade.severity)
    pages = [cards[i : i + PAGE_LAYERS] for i in range(0, len(cards), PAGE_LAYERS)]
    legend = anomaly_legend() if any(c.anomaly for c in cards) else None
    return html_page(
        "layers.html", title=title, pages=pages, legend=legend, counts=counts, worst=worst[:WORST_LAYERS], unsure=UNSURE
    )


def thumbnail_jpeg(image: np.ndarray, side: int = 384, quality: int = 80) -> bytes:
    """A JPEG of an image at most `side` px a side (8-bit): what a stored layer keeps of its photo."""
    import cv2

    image = to_uint8(image)
    scale = min(1.0, side / max(image.shape[:2]))
    if scale < 1:
        size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    return data.tobytes()
