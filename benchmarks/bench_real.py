"""Real photos: how a model reads cameras it never saw (issue #20's yardstick).

.venv/bin/python benchmarks/bench_real.py [--model M] [--pblm DIR] [--limit N] [--build DIR ...] [--json]

PBLM (`../shared/data/pblm`, labels per photo): the bed is found once per photo size (the camera
does not move), straightened to 768x768 and cut into 36 tiles, as `slmcnn calibrate` and
`predict-layer --camera` do. Printed: the per-photo AUROC of the highest tile Error probability
(defective folders against No_Defect), the good photos with any Error tile, Error tiles per good
photo, and the share of photos flagged in each defect folder. Skipped with a message when absent.

Any folder of layers with masks (`--build`: a folder holding layers/ and masks/, as `slmcnn synth`
writes): tile precision and recall per class, tile labels by the label rule of `slmcnn.labels`;
with several builds, also over all their tiles together.
"""

import argparse
import json
import sys
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sklearn.metrics import precision_recall_fscore_support, roc_auc_score

from slmcnn import CLASSES
from slmcnn import images as image_io
from slmcnn.camera import CameraCalibration, detect_corners
from slmcnn.checkpoint import load_model, resolve_model
from slmcnn.labels import ERROR, LabelRule, tile_labels
from slmcnn.preprocess import prepare
from slmcnn.tiles import cut, geometry, tile

PBLM = Path(__file__).resolve().parents[2] / "shared" / "data" / "pblm"
GOOD = "No_Defect"
BED = 768
PATCH = 128


class Classifier:
    """The network in float32, eager: the reference numbers every backend agrees with (>= 99.5%)."""

    def __init__(self, model_path: str | None):
        self.path = resolve_model(model_path)
        self.model, self.info = load_model(self.path)
        self.model = self.model.to(memory_format=torch.channels_last)

    @torch.inference_mode()
    def probabilities(self, patches: np.ndarray, batch: int = 256) -> np.ndarray:
        chunks = [self.model(prepare(patches[i : i + batch])) for i in range(0, len(patches), batch)]
        return torch.softmax(torch.cat(chunks).float(), 1).numpy()


def _spread(items: list, limit: int | None) -> list:
    """At most `limit` items, evenly spread over the sorted list (all when no limit)."""
    if not limit or len(items) <= limit:
        return items
    return [items[i] for i in np.linspace(0, len(items) - 1, limit).round().astype(int)]


def pblm_photos(root: Path, limit: int | None) -> dict[str, list[Path]]:
    folders = sorted(d for d in root.iterdir() if d.is_dir())
    return {d.name: _spread(image_io.list_images([d]), limit) for d in folders}


def calibrations(photos: dict[str, list[Path]]) -> dict[tuple[int, int], CameraCalibration]:
    """One bed outline per photo size, from the median of the corners found in a few photos of
    that size (good photos first): the camera is fixed, a single photo's outline can be off."""
    by_size: dict[tuple[int, int], list[Path]] = defaultdict(list)
    ordered = photos.get(GOOD, []) + [p for name, ps in photos.items() if name != GOOD for p in ps]
    for path in ordered:
        with Image.open(path) as img:  # the header only
            by_size[img.size[::-1]].append(path)
    result = {}
    for size, paths in by_size.items():
        corners = [detect_corners(image_io.read(p)) for p in paths[:5]]
        result[size] = CameraCalibration(corners=np.median(corners, axis=0).tolist(), size=BED)
    return result


def photo_tiles(path: Path, cams: dict[tuple[int, int], CameraCalibration]) -> np.ndarray:
    """The straightened bed's tiles, by the outline found for photos of this one's size."""
    image = image_io.to_uint8(image_io.read(path))
    return tile(cams[image.shape[:2]].warp(image), PATCH).patches


def bench_pblm(classifier: Classifier, root: Path, limit: int | None) -> dict:
    photos = pblm_photos(root, limit)
    if GOOD not in photos:
        raise SystemExit(f"{root}: no {GOOD}/ folder; is this the PBLM data set?")
    cams = calibrations(photos)
    scores: dict[str, list[float]] = {}
    error_tiles: dict[str, list[int]] = {}
    started = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        for folder, paths in photos.items():
            scores[folder], error_tiles[folder] = [], []
            for patches in pool.map(lambda path: photo_tiles(path, cams), paths):
                probs = classifier.probabilities(patches)
                scores[folder].append(float(probs[:, ERROR].max()))
                error_tiles[folder].append(int((probs.argmax(1) == ERROR).sum()))
            print(f"  {folder}: {len(paths)} photos", file=sys.stderr)
    good = np.array(scores[GOOD])
    bad = np.concatenate([scores[f] for f in scores if f != GOOD])
    auroc = roc_auc_score(np.r_[np.zeros(len(good)), np.ones(len(bad))], np.r_[good, bad])
    folders = {
        f: {
            "photos": len(scores[f]),
            "flagged": float(np.mean(np.array(error_tiles[f]) > 0)),
            "error_tiles_per_photo": float(np.mean(error_tiles[f])),
        }
        for f in scores
    }
    return {
        "data": str(root),
        "photos": sum(len(v) for v in scores.values()),
        "limit_per_folder": limit,
        "tiles_per_photo": (BED // PATCH) ** 2,
        "auroc": float(auroc),
        "good_flagged": folders[GOOD]["flagged"],
        "good_error_tiles_per_photo": folders[GOOD]["error_tiles_per_photo"],
        "folders": folders,
        "calibrations": {f"{w}x{h}": c.corners for (h, w), c in cams.items()},
        "seconds": round(time.perf_counter() - started, 1),
    }


def build_tiles(classifier: Classifier, build: Path, rule: LabelRule) -> tuple[np.ndarray, np.ndarray, int]:
    """True and predicted tile classes of a folder of layers with masks, and its layer count."""
    layers = image_io.list_images([build / "layers"])
    truth, pred = [], []
    for path in layers:
        mask_path = build / "masks" / (path.stem + ".png")
        if not mask_path.is_file():
            raise SystemExit(f"{build}: {path.name} has no mask in masks/")
        image = image_io.to_uint8(image_io.read(path))
        where = geometry(*image.shape[:2], PATCH)
        truth.append(tile_labels(image_io.read(mask_path)[..., 0], where, rule))
        pred.append(classifier.probabilities(cut(image, where)).argmax(1))
    return np.concatenate(truth), np.concatenate(pred), len(layers)


def tile_scores(name: str, truth: np.ndarray, pred: np.ndarray, layers: int) -> dict:
    """Tile precision / recall per class."""
    p, r, f, n = precision_recall_fscore_support(truth, pred, labels=range(len(CLASSES)), zero_division=0)
    return {
        "data": name,
        "layers": layers,
        "tiles": int(len(truth)),
        "accuracy": float((truth == pred).mean()),
        "macro_f1": float(f.mean()),
        "classes": {
            c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "tiles": int(n[i])}
            for i, c in enumerate(CLASSES)
        },
        "error_share_called": float((pred == ERROR).mean()),
    }


def print_pblm(result: dict) -> None:
    print(f"PBLM ({result['photos']} photos, {result['tiles_per_photo']} tiles each, {result['seconds']} s)")
    print(f"  per-photo AUROC (max tile Error probability, defective vs {GOOD}): {result['auroc']:.3f}")
    print(
        f"  good photos flagged (any Error tile): {result['good_flagged']:.1%}, "
        f"Error tiles per good photo: {result['good_error_tiles_per_photo']:.2f}"
    )
    for name, row in result["folders"].items():
        print(
            f"  {name:28s} {row['photos']:4d} photos  flagged {row['flagged']:6.1%}  "
            f"Error tiles/photo {row['error_tiles_per_photo']:.2f}"
        )


def print_build(result: dict) -> None:
    print(f"{result['data']} ({result['layers']} layers, {result['tiles']} tiles)")
    print(f"  accuracy {result['accuracy']:.4f}  macro F1 {result['macro_f1']:.4f}")
    for name, row in result["classes"].items():
        print(
            f"  {name:7s} precision {row['precision']:.3f}  recall {row['recall']:.3f}  "
            f"F1 {row['f1']:.3f}  ({row['tiles']} tiles)"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model file (default: the shipped model)")
    parser.add_argument("--pblm", type=Path, default=PBLM, help=f"the PBLM folder (default {PBLM})")
    parser.add_argument("--limit", type=int, help="at most N photos per PBLM folder, evenly spread (default: all)")
    parser.add_argument("--build", type=Path, nargs="*", default=[], help="folders with layers/ and masks/")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    classifier = Classifier(args.model)
    result = {"model": str(classifier.path), "builds": []}
    if args.pblm.is_dir():
        result["pblm"] = bench_pblm(classifier, args.pblm, args.limit)
        print_pblm(result["pblm"])
    else:
        print(f"PBLM skipped: {args.pblm} is not there (the data set is not distributed with slmcnn)")
    pooled = np.zeros(0, np.int64), np.zeros(0, np.int64), 0
    for build in args.build:
        truth, pred, layers = build_tiles(classifier, build, LabelRule())
        row = tile_scores(str(build), truth, pred, layers)
        result["builds"].append(row)
        print_build(row)
        pooled = np.concatenate([pooled[0], truth]), np.concatenate([pooled[1], pred]), pooled[2] + layers
    if len(args.build) > 1:
        result["all_builds"] = tile_scores(f"all {len(args.build)} builds", *pooled)
        print_build(result["all_builds"])
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
