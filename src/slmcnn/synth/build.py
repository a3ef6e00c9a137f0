"""A whole synthetic build: plan parts and defects over layers, render each layer, write the files.

Every layer is rendered from the build's plan and a generator seeded by (seed, layer), so layers can
be rendered in parallel and the same seed always gives byte-identical files.
"""

import json
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from slmcnn.constants import CLASSES
from slmcnn.defect_types import SYNTH_TYPES, TYPE_LABELS
from slmcnn.errors import SettingsError
from slmcnn.images import write_png
from slmcnn.labels import AMBIGUOUS, LabelRule, tile_labels
from slmcnn.synth.bed import Camera, powder, walls_mask
from slmcnn.synth.defects import DEFECT_KINDS, VISIBLE, LayerContext, plan_defects, render_defect
from slmcnn.synth.parts import PART_KINDS, REFERENCE_TILE_MM, draw_part, paint_ghosts, paint_parts, plan_parts
from slmcnn.tiles import tile

DIRECTIONS = ("down", "up", "left", "right")
ROTATIONS = {"down": 0, "up": 2, "left": 1, "right": 3}  # quarter turns of the canonical (vertical) frame
DEFAULT_RATES = {
    "streak": 0.15,
    "short_feed": 0.06,
    "swelling": 0.12,
    "debris": 0.15,
    "chatter": 0.05,
    "hole": 0.15,
    "spatter": 0.12,
    "spread_line": 0.06,
    "scratch": 0.04,
    "ridge": 0.04,
}
TYPE_RATE = 0.2  # per-layer start rate of each named defect type in ALL_TYPES_RATES
ALL_TYPES_RATES = {kind: TYPE_RATE / list(SYNTH_TYPES.values()).count(SYNTH_TYPES[kind]) for kind in DEFECT_KINDS}
"""Rates that give every named defect type (`defect_types.SYNTH_TYPES`) the same chance, split evenly
among the kinds that draw it: for benchmarks that measure recall per type. Not the training default."""
GHOST_LAYERS = 6  # how many layers a finished part still shows through the powder


@dataclass
class SynthSettings:
    """Every knob of a build; each range is (low, high) and is drawn once per build."""

    layers: int = 20
    seed: int = 0
    size: int = 768
    patch: int = 128
    direction: str = "down"  # down | up | left | right | random
    parts: tuple[int, int] = (4, 12)
    part_kinds: tuple[str, ...] = PART_KINDS
    tile_mm: tuple[float, float] = (5.0, 40.0)  # bed a patch covers (log-uniform): part sizes vary 8x
    defect_rates: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_RATES))
    exposed_share: tuple[float, float] = (0.15, 0.7)
    after_exposure: tuple[float, float] = (0.0, 1.0)  # share of layers photographed after the laser pass
    melt_brightness: tuple[float, float] = (50.0, 120.0)  # melted part tops above powder, gray levels
    powder_level: tuple[float, float] = (95.0, 235.0)
    falloff: tuple[float, float] = (0.1, 0.55)
    light_gradient: tuple[float, float] = (0.0, 0.35)
    grain: tuple[float, float] = (2.5, 10.0)
    banding: tuple[float, float] = (1.5, 5.0)
    gamma: tuple[float, float] = (0.85, 1.15)
    contrast: tuple[float, float] = (0.6, 1.12)
    blur: tuple[float, float] = (0.0, 0.8)
    jpeg_share: float = 0.5  # share of builds saved as JPEG
    jpeg_quality: tuple[float, float] = (30.0, 92.0)
    walls_share: float = 0.1  # share of builds whose frame shows the chamber around the plate
    perspective: float = 0.02
    breakthrough: float = 0.0  # share of swellings and ridges shown as a part breaking through fresh powder
    label_rule: LabelRule = field(default_factory=LabelRule)
    keep_ambiguous: bool = False
    write_patches: bool = True

    def check(self) -> None:
        if self.layers < 1:
            raise SettingsError(f"--layers must be at least 1 (got {self.layers})")
        if self.size < 32:
            raise SettingsError(f"--size must be at least 32 px (got {self.size})")
        from slmcnn.images import LIMITS

        LIMITS.check("a synthetic layer (--size)", self.size, self.size, self.size * self.size * 3 * 4)
        if self.patch < 8 or self.patch > self.size:
            raise SettingsError(f"--patch {self.patch} must be between 8 and the image size {self.size}")
        if self.direction not in (*DIRECTIONS, "random"):
            raise SettingsError(f"--direction must be one of {', '.join(DIRECTIONS)}, random")
        if min(self.parts) < 0 or self.parts[0] > self.parts[1]:
            raise SettingsError(f"part count range {self.parts} is impossible")
        unknown = set(self.defect_rates) - set(DEFECT_KINDS)
        if unknown:
            raise SettingsError(f"unknown defect type(s) {sorted(unknown)}; known: {', '.join(DEFECT_KINDS)}")
        if any(not 0 <= r <= 1 for r in self.defect_rates.values()):
            raise SettingsError("defect rates are per-layer probabilities between 0 and 1")
        for name in ("after_exposure", "jpeg_share", "walls_share", "breakthrough"):
            value = getattr(self, name)
            if not all(0 <= v <= 1 for v in np.atleast_1d(value)):
                raise SettingsError(f"{name} is a share between 0 and 1 (got {value})")
        if min(self.tile_mm) <= 0 or self.tile_mm[0] > self.tile_mm[1]:
            raise SettingsError(f"tile_mm range {self.tile_mm} is impossible")
        if not 1 <= min(self.jpeg_quality) <= max(self.jpeg_quality) <= 100:
            raise SettingsError(f"jpeg_quality must lie within 1-100 (got {self.jpeg_quality})")
        bad = set(self.part_kinds) - set(PART_KINDS)
        if bad:
            raise SettingsError(f"unknown part kind(s) {sorted(bad)}; known: {', '.join(PART_KINDS)}")


@dataclass
class BuildPlan:
    settings: SynthSettings
    camera: Camera
    direction: str
    homography: np.ndarray | None
    parts: list
    defects: list
    photos: list[str]  # per layer: "recoated" or "exposed"
    tile_mm: float = REFERENCE_TILE_MM


def plan_build(settings: SynthSettings) -> BuildPlan:
    """Everything that persists over layers, drawn from the build's seed."""
    settings.check()
    rng = np.random.default_rng(settings.seed)
    size = settings.size
    camera = Camera.draw(rng, size, settings)
    direction = str(rng.choice(DIRECTIONS)) if settings.direction == "random" else settings.direction
    count = int(rng.integers(settings.parts[0], settings.parts[1] + 1))
    tile_mm = float(np.exp(rng.uniform(*np.log(settings.tile_mm))))
    scale = REFERENCE_TILE_MM / tile_mm * settings.patch / 128
    count = int(round(count * np.clip(1 / scale, 1.0, 2.0)))  # a wide view holds more, smaller parts
    parts = plan_parts(rng, size, settings.layers, count, tuple(settings.part_kinds), camera.plate_margin, scale)
    defects = plan_defects(rng, settings.layers, size, settings.defect_rates, parts)
    homography = None
    if camera.perspective > 0:
        src = np.float32([[0, 0], [size, 0], [size, size], [0, size]])
        dst = src + rng.uniform(-1, 1, (4, 2)).astype(np.float32) * camera.perspective * size
        homography = cv2.getPerspectiveTransform(src, dst)
    share = rng.uniform(*settings.after_exposure)
    photos = ["exposed" if r < share else "recoated" for r in rng.random(settings.layers)]
    return BuildPlan(settings, camera, direction, homography, parts, defects, photos, tile_mm)


@dataclass
class RenderedLayer:
    image: np.ndarray  # HxWx3 uint8, gray saved as RGB
    mask: np.ndarray  # HxW uint8: 0 powder, 1 object, 2 error
    types: np.ndarray  # HxW uint8: the TYPE_LABELS value of the defect shown per pixel, 0 where none
    defects: list[dict]
    looks: list[str]
    photo: str = "recoated"


def render_layer(plan: BuildPlan, layer: int) -> RenderedLayer:
    """Render one layer photo, its label mask and its defect type map (a later defect wins where two
    overlap, as in the mask, so types > 0 is exactly mask == 2)."""
    s = plan.settings
    size, cam = s.size, plan.camera
    photo = plan.photos[layer - 1]
    rng = np.random.default_rng([s.seed, layer])
    field_map = cam.illumination(size)
    plate = cam.plate(size)
    bed = powder(rng, cam, size, field_map, plate)
    ids = np.zeros((size, size), np.uint8)
    ghosts = np.zeros((size, size), np.uint8)
    for i, part in enumerate(plan.parts):
        if part.active(layer):
            draw_part(ids, part, layer, i + 1)
        elif part.last < layer <= part.last + GHOST_LAYERS:
            draw_part(ghosts, part, part.last, i + 1)
    ids[plate == 0] = 0
    ghosts[(plate == 0) | (ids > 0)] = 0
    shown = paint_ghosts(rng, bed, ghosts, field_map, cam.grain)
    exposed = rng.uniform(*s.exposed_share)
    looks = paint_parts(
        rng, bed, ids, len(plan.parts), layer, cam.level, field_map, cam.grain, exposed, photo, cam.melt / cam.contrast
    )
    ctx = LayerContext(size, cam.level, field_map, plate, plan.parts, ids, layer, photo, s.breakthrough)
    exposure = rng.uniform(-3, 3)
    events = [event for event in plan.defects if event.active(layer)]
    clean = bed.copy() if events else None
    defect_masks = [(event, render_defect(event, bed, ctx)) for event in events]
    outside = walls_mask(cam, size)
    if clean is not None and outside.any():
        bed[outside] = clean[outside]  # defects happen on the powder bed, not on the chamber walls
    image = _camera(bed, cam, exposure)
    if clean is not None:  # label only what the saved photo visibly shows
        changed = np.abs(image.astype(np.int16) - _camera(clean, cam, exposure)) >= VISIBLE
        defect_masks = [(event, visible & changed) for event, visible in defect_masks]
    mask = np.where((ids > 0) | shown, 1, 0).astype(np.uint8)
    types = np.zeros_like(mask)
    for event, visible in defect_masks:
        mask[visible] = 2
        types[visible] = TYPE_LABELS[SYNTH_TYPES[event.kind]]
    image, mask = _geometry(plan, image, mask)
    types = _geometry(plan, None, types)[1]
    records = []
    for event, visible in defect_masks:
        visible = _geometry(plan, None, visible.astype(np.uint8))[1]
        ys, xs = np.nonzero(visible)
        if len(ys):
            records.append(
                {
                    "type": event.kind,
                    "defect_type": SYNTH_TYPES[event.kind],
                    "started": event.first,
                    "bbox": [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1],
                    "pixels": int(len(ys)),
                }
            )
    rgb = np.repeat(image[:, :, None], 3, axis=2)
    return RenderedLayer(rgb, mask, types, records, looks, photo)


def _camera(bed: np.ndarray, cam: Camera, exposure: float) -> np.ndarray:
    """Sensor response: exposure, gamma, contrast (about the camera's powder level, so that the same
    bed always gives the same photo), optics blur, 8-bit clipping (saturation), JPEG compression."""
    img = np.clip(bed + exposure, 0, None) / 255.0
    img = np.power(img, cam.gamma, dtype=np.float32)
    pivot = (cam.level / 255.0) ** cam.gamma
    img = (img - pivot) * cam.contrast + pivot
    if cam.blur > 0.05:
        img = cv2.GaussianBlur(img, (0, 0), cam.blur)
    img = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if cam.jpeg:
        ok, data = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, cam.jpeg])
        img = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE)
    return img


def _geometry(plan: BuildPlan, image: np.ndarray | None, mask: np.ndarray):
    """Slight camera perspective and the recoater direction, applied to image and mask together."""
    size = plan.settings.size
    if plan.homography is not None:
        if image is not None:
            image = cv2.warpPerspective(
                image, plan.homography, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
            )
        mask = cv2.warpPerspective(
            mask, plan.homography, (size, size), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REFLECT
        )
    turns = ROTATIONS[plan.direction]
    if turns:
        image = np.ascontiguousarray(np.rot90(image, turns)) if image is not None else None
        mask = np.ascontiguousarray(np.rot90(mask, turns))
    return image, mask


def layer_name(layer: int) -> str:
    return f"{layer:05d}.png"


def _write_layer(args) -> dict:
    plan, out, layer, live = args
    rendered = render_layer(plan, layer)
    name = layer_name(layer)
    write_png(out / "masks" / name, rendered.mask)
    write_png(out / "types" / name, rendered.types)
    if live:  # a camera writes under a temporary name and renames when complete
        tmp = out / "layers" / f".{layer:05d}.tmp.png"  # hidden name; the monitor skips dot files
        write_png(tmp, rendered.image)
        os.replace(tmp, out / "layers" / name)
    else:
        write_png(out / "layers" / name, rendered.image)
    rows = _write_patches(plan, out, layer, rendered) if plan.settings.write_patches else []
    return {
        "layer": layer,
        "photo": rendered.photo,
        "defects": rendered.defects,
        "parts": rendered.looks,
        "patches": rows,
    }


def _write_patches(plan: BuildPlan, out: Path, layer: int, rendered: RenderedLayer) -> list[list]:
    s = plan.settings
    grid = tile(rendered.image, s.patch)
    labels = tile_labels(rendered.mask, grid.geometry, s.label_rule, ambiguous=s.keep_ambiguous)
    rows_n, cols_n = grid.shape
    rows = []
    for index, label in enumerate(labels):
        r, c = divmod(index, cols_n)
        if label == AMBIGUOUS:
            rows.append([None, "ambiguous", s.seed, layer, r, c])
            continue
        rel = f"{CLASSES[label]}/s{s.seed}_l{layer:05d}_r{r}_c{c}.png"
        write_png(out / "patches" / rel, grid.patches[index])
        rows.append([rel, CLASSES[label], s.seed, layer, r, c])
    return rows


def prepare_output(out: Path, force: bool) -> None:
    """Refuse to write into a folder with other content; with force, replace only a previous build."""
    if out.exists() and any(out.iterdir()):
        if not (out / "build.json").is_file():
            raise SettingsError(f"{out} exists and is not an slmcnn build; choose an empty or new folder")
        if not force:
            raise SettingsError(f"{out} already holds a build; pass --force to replace it")
        for name in ("layers", "masks", "types", "patches"):
            shutil.rmtree(out / name, ignore_errors=True)
        for name in ("build.json", "preview.png"):
            (out / name).unlink(missing_ok=True)
    for name in ("layers", "masks", "types", *(f"patches/{c}" for c in CLASSES)):
        (out / name).mkdir(parents=True, exist_ok=True)


def generate_build(
    settings: SynthSettings,
    out: str | Path,
    force: bool = False,
    workers: int = 2,
    live_interval: float | None = None,
    progress=None,
    preview: bool = False,
) -> dict:
    """Write layers/, masks/, types/, patches/ (+ split.csv) and build.json; return build.json's content."""
    out = Path(out)
    plan = plan_build(settings)
    prepare_output(out, force)
    jobs = [(plan, out, layer, live_interval is not None) for layer in range(1, settings.layers + 1)]
    started = time.perf_counter()
    if live_interval is not None:
        records = []
        for job in jobs:
            tick = time.perf_counter()
            records.append(_write_layer(job))
            if progress:
                progress(job[2])
            time.sleep(max(0.0, live_interval - (time.perf_counter() - tick)))
    elif workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(workers) as pool:
            records = []
            for record in pool.map(_write_layer, jobs, chunksize=1):
                records.append(record)
                if progress:
                    progress(record["layer"])
    else:
        records = []
        for job in jobs:
            records.append(_write_layer(job))
            if progress:
                progress(job[2])
    seconds = time.perf_counter() - started
    _write_split(out, settings, records)
    info = _build_json(plan, records)
    (out / "build.json").write_text(json.dumps(info, indent=1))
    if preview:
        write_preview(out, out / "preview.png")
    info["seconds"] = seconds
    return info


def _write_split(out: Path, settings: SynthSettings, records: list[dict]) -> None:
    """split.csv: every patch with its build, layer and grid cell; train/val/test chosen by layer."""
    layers = np.array([r["layer"] for r in records])
    order = np.random.default_rng([settings.seed, 7]).permutation(len(layers))
    n_hold = max(1, round(0.15 * len(layers))) if len(layers) >= 3 else 0
    role = {}
    for rank, i in enumerate(order):
        role[int(layers[i])] = "val" if rank < n_hold else "test" if rank < 2 * n_hold else "train"
    lines = ["path,label,build,layer,row,col,split"]
    for record in records:
        for rel, label, build, layer, r, c in record["patches"]:
            if rel is not None:
                lines.append(f"{rel},{label},s{build},{layer},{r},{c},{role[layer]}")
    (out / "patches" / "split.csv").write_text("\n".join(lines) + "\n")


def _build_json(plan: BuildPlan, records: list[dict]) -> dict:
    s = plan.settings
    counts = {c: 0 for c in (*CLASSES, "ambiguous")}
    for record in records:
        for row in record["patches"]:
            counts[row[1]] += 1
    return {
        "generator": "slmcnn.synth",
        "seed": s.seed,
        "settings": {**asdict(s), "label_rule": s.label_rule.as_dict()},
        "direction": plan.direction,
        "tile_mm": plan.tile_mm,
        "camera": asdict(plan.camera),
        "parts": [asdict(p) for p in plan.parts],
        "patch_counts": counts,
        "type_labels": TYPE_LABELS,
        "layers": [
            {
                "layer": r["layer"],
                "file": f"layers/{layer_name(r['layer'])}",
                "mask": f"masks/{layer_name(r['layer'])}",
                "types": f"types/{layer_name(r['layer'])}",
                "photo": r["photo"],
                "defects": r["defects"],
                "parts": r["parts"],
            }
            for r in records
        ],
    }


def write_preview(build: Path, path: Path, count: int = 6, thumb: int = 256) -> Path:
    """Contact sheet: layer thumbnails beside their colour-coded masks (white / blue / red)."""
    from slmcnn.images import read
    from slmcnn.render import colour_map

    layers = sorted((build / "layers").glob("*.png"))
    if not layers:
        raise SettingsError(f"{build} has no layers to preview")
    picks = [layers[i] for i in np.linspace(0, len(layers) - 1, min(count, len(layers))).round().astype(int)]
    tiles = []
    for layer_path in picks:
        image = cv2.resize(read(layer_path), (thumb, thumb), interpolation=cv2.INTER_AREA)
        mask = cv2.imread(str(build / "masks" / layer_path.name), cv2.IMREAD_GRAYSCALE)
        coloured = cv2.resize(colour_map(mask), (thumb, thumb), interpolation=cv2.INTER_NEAREST)
        pair = np.concatenate([image, np.full((thumb, 4, 3), 40, np.uint8), coloured], axis=1)
        cv2.putText(pair, layer_path.stem, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 0), 2)
        tiles.append(pair)
    while len(tiles) % 2:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [
        np.concatenate([a, np.full((thumb, 12, 3), 0, np.uint8), b], axis=1) for a, b in zip(tiles[::2], tiles[1::2])
    ]
    sheet = np.concatenate([np.pad(r, ((6, 6), (0, 0), (0, 0))) for r in rows], axis=0)
    write_png(path, sheet)
    return path
