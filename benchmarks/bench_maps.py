"""Finding defects: fine maps against the 128 px tile grid, measured in one run.

    python benchmarks/bench_maps.py                    # synthetic builds, PBLM and risheng-recoat
    python benchmarks/bench_maps.py --builds 2 --layers 20 --skip pblm

Synthetic builds (every defect type, pixel masks and type maps; after-recoat and after-exposure
photos; generated into a temporary folder, seeds fixed) are classified by the product's layer
pipeline (`run_layers`, default fine maps); each layer's tile map (the network's tiles stitched) is
judged beside its fine map. The first `--learn` layers of each build teach the fine maps and are
left out of every figure, for both maps. Judged as in shared/reference/finding-defects-notes.md:
- region recall per type: a true region (connected pixels of one type, 20 px or more) is found
  when an Error pixel lies within 8 px of it;
- Error area on sound layers (no true Error pixel), and the share of sound layers flagged (a
  region of 64 px or more);
- Error area further than 16 px from any true Error pixel, on layers with defects ("away");
- pixel AUROC of Error against the truth (fine: the larger anomaly signal, tiles: the tile's
  Error probability), on every 4th pixel.
PBLM (../shared/data/pblm): the bed is found in the first No_Defect photo (camera.detect_corners);
the first `--learn` good photos teach a build, the other good photos are judged in order (false
Error area, flagged), then photos of each defect folder, each alone after them (flagged share:
labels are per photo). risheng-recoat (3 photos, 7 labelled regions): too few for a build memory;
all three are judged as a build's first layers (the network's tiles narrowed), and a labelled
region counts as found when an Error pixel lies within 8 px of its shape.
"""

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
NEAR, AWAY, MIN_TRUE, FLAG = 8, 16, 20, 64


def disk(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def flagged(error: np.ndarray) -> bool:
    count, _, stats, _ = cv2.connectedComponentsWithStats(error.astype(np.uint8), connectivity=8)
    return bool(count > 1 and stats[1:, cv2.CC_STAT_AREA].max() >= FLAG)


class Tally:
    """The figures of one kind of map over many layers."""

    def __init__(self):
        self.found, self.regions = defaultdict(int), defaultdict(int)
        self.sound_area, self.sound_flagged, self.away = [], [], []
        self.scores, self.truth = [], []
        self.named = defaultdict(lambda: defaultdict(int))  # true type -> the type the map named it -> regions

    def add(
        self, error: np.ndarray, score: np.ndarray, truth: np.ndarray, types: np.ndarray | None, names, named=None
    ) -> None:
        """`named`: (H, W) the type the map's regions name each Error pixel (index into `names` + 1)."""
        defect = truth == 2
        if not defect.any():
            self.sound_area.append(float(error.mean()))
            self.sound_flagged.append(flagged(error))
        else:
            near = cv2.dilate(error.astype(np.uint8), disk(NEAR)) > 0
            far = cv2.dilate(defect.astype(np.uint8), disk(AWAY)) == 0
            self.away.append(float((error & far).mean()))
            labels = types if types is not None else defect.astype(np.uint8) * (names.index("other") + 1)
            for t in np.unique(labels[labels > 0]):
                count, parts = cv2.connectedComponents((labels == t).astype(np.uint8), connectivity=8)
                for k in range(1, count):
                    region = parts == k
                    if region.sum() < MIN_TRUE:
                        continue
                    name = names[int(t) - 1]
                    self.regions[name] += 1
                    self.found[name] += bool((near & region).any())
                    if named is not None and (near & region).any():
                        close = named[(cv2.dilate(region.astype(np.uint8), disk(NEAR)) > 0) & (named > 0)]
                        if len(close):
                            self.named[name][names[int(np.bincount(close).argmax()) - 1]] += 1
        self.scores.append(score[::4, ::4].ravel())
        self.truth.append(defect[::4, ::4].ravel())

    def figures(self) -> dict:
        from sklearn.metrics import roc_auc_score

        truth, scores = np.concatenate(self.truth), np.concatenate(self.scores)
        found, regions = sum(self.found.values()), sum(self.regions.values())
        return {
            "regions_found": found,
            "regions": regions,
            "recall": found / max(regions, 1),
            "per_type": {t: [self.found[t], self.regions[t]] for t in sorted(self.regions)},
            "sound_layers": len(self.sound_area),
            "sound_error_area": float(np.mean(self.sound_area)) if self.sound_area else None,
            "sound_flagged": float(np.mean(self.sound_flagged)) if self.sound_flagged else None,
            "away_area": float(np.mean(self.away)) if self.away else None,
            "pixel_auroc": float(roc_auc_score(truth, scores)) if 0 < truth.sum() < len(truth) else None,
            "named": {t: dict(n) for t, n in self.named.items()},
            "named_right": sum(n.get(t, 0) for t, n in self.named.items())
            / max(sum(sum(n.values()) for n in self.named.values()), 1),
        }


def fine_score(result) -> np.ndarray:
    from slmcnn.finemaps import upsample

    fine, shape = result.fine, result.class_map.shape
    return np.maximum(upsample(fine.texture, shape), upsample(fine.change, shape))


def named_map(result) -> np.ndarray:
    """(H, W) the type each of the fine map's regions names its Error pixels (DEFECT_TYPES index + 1)."""
    from slmcnn.constants import ERROR
    from slmcnn.defect_types import DEFECT_TYPES

    named = np.zeros(result.class_map.shape, np.int64)
    error = result.class_map == ERROR
    for region in result.fine.regions:
        x0, y0, x1, y1 = region.box
        named[y0:y1, x0:x1][error[y0:y1, x0:x1]] = DEFECT_TYPES.index(region.type) + 1
    return named


def tile_maps(result) -> tuple[np.ndarray, np.ndarray]:
    """The tile grid's Error pixels and Error probability per pixel, as `--map tiles` paints them."""
    from slmcnn.constants import ERROR
    from slmcnn.predict import classify_pixels
    from slmcnn.tiles import tile_values

    classes, _ = classify_pixels(result.grid, result.probabilities)
    return classes == ERROR, tile_values(result.probabilities[:, ERROR], result.grid, classes.shape)


def synthetic(model, builds: int, layers: int, learn: int, folder: Path) -> dict:
    from slmcnn.constants import ERROR
    from slmcnn.defect_types import DEFECT_TYPES
    from slmcnn.images import read
    from slmcnn.pipeline import RunOptions, run_layers
    from slmcnn.synth import SynthSettings, generate_build
    from slmcnn.synth.build import ALL_TYPES_RATES

    tallies = {"recoated": (Tally(), Tally()), "exposed": (Tally(), Tally())}
    seconds = []
    for b in range(builds):
        photo = "recoated" if b % 2 == 0 else "exposed"
        rates = {kind: rate / 4 for kind, rate in ALL_TYPES_RATES.items()}  # sound layers between defects
        settings = SynthSettings(
            layers=layers, seed=1000 + b, defect_rates=rates, after_exposure=(float(photo == "exposed"),) * 2,
            write_patches=False, breakthrough=0.5,
        )  # fmt: skip
        out = folder / f"build{b}"
        generate_build(settings, out)
        paths = sorted((out / "layers").glob("*.png"))
        fine, tiles = tallies[photo]
        options = RunOptions(workers=1, learn=learn, photo=photo)  # as the camera is set up
        for outcome in run_layers(paths, _backend(model), options, model=model):
            result = outcome.result
            seconds.append(result.seconds)
            if result.fine.state == "learning":
                continue
            truth = read(out / "masks" / result.path.name)[..., 0]
            types = read(out / "types" / result.path.name)[..., 0]
            fine.add(result.class_map == ERROR, fine_score(result), truth, types, DEFECT_TYPES, named_map(result))
            tile_error, tile_score = tile_maps(result)
            tiles.add(tile_error, tile_score, truth, types, DEFECT_TYPES)
        print(f"  build {b + 1}/{builds} ({photo}) done", file=sys.stderr)
    return {photo: {"fine": f.figures(), "tiles": t.figures()} for photo, (f, t) in tallies.items() if f.truth} | {
        "seconds_per_layer": float(np.median(seconds))
    }


class TileView:
    """A layer result as `--map tiles` gives it (no fine map), for grading it the tile way."""

    def __init__(self, result):
        self.grid, self.probabilities, self.anomaly = result.grid, result.probabilities, result.anomaly
        self.tile_classes, self.fine = result.tile_classes, None


def _backend(model):
    from slmcnn.backends import create_backend

    return create_backend(model, "torch")


def pblm(model, root: Path, learn: int, per_folder: int) -> dict:
    from slmcnn.camera import CameraCalibration, detect_corners
    from slmcnn.constants import ERROR
    from slmcnn.grading import Grader
    from slmcnn.images import read
    from slmcnn.pipeline import LayerPipeline, RunOptions

    good = sorted((root / "No_Defect").glob("*.jpg"))
    calibration = CameraCalibration(detect_corners(read(good[0])).round(2).tolist(), 768)
    pipeline = LayerPipeline(_backend(model), RunOptions(workers=1, camera=calibration, learn=learn), model=model)
    figures: dict = {"good": {"error_area": [], "flagged": [], "tile_error_area": [], "tile_flagged": []}}
    grades: dict = {"fine": [], "tiles": []}
    tile_grader = Grader()
    for outcome in pipeline.run(good):
        result = outcome.result
        tile_grade = tile_grader(TileView(result))
        if result.fine.state == "learning":
            continue
        grades["fine"].append(result.grade.grade)
        grades["tiles"].append(tile_grade.grade)
        tile_error, _ = tile_maps(result)
        for prefix, error in (("", result.class_map == ERROR), ("tile_", tile_error)):
            figures["good"][prefix + "error_area"].append(float(error.mean()))
            figures["good"][prefix + "flagged"].append(flagged(error))
    kept = list(pipeline.mapper.change.layers)
    for folder in ("Powder_Uneven", "Powder_Uneven_With_Scratch", "Deformation_With_Scratch"):
        paths = sorted((root / folder).glob("*.jpg"))[
            :: max(1, len(sorted((root / folder).glob("*.jpg"))) // per_folder)
        ]
        counts = {"flagged": 0, "tile_flagged": 0, "photos": 0}
        for path in paths[:per_folder]:
            pipeline.mapper.change.layers = list(kept)  # each photo judged alone after the good ones
            # named as a layer of the good photos' folder: a photo of another folder would start a
            # build of its own (pipeline._follow_build) and be judged by the network alone
            layer = (str(good[0].parent / f"{path.parent.name}-{path.name}"), read(path))
            result = next(iter(pipeline.run([layer]))).result
            assert result is None or result.fine.state == "judged", "judged with the good photos' memory"
            if result is None or read(path).shape[:2] != read(good[0]).shape[:2]:
                continue
            counts["photos"] += 1
            counts["flagged"] += flagged(result.class_map == ERROR)
            counts["tile_flagged"] += flagged(tile_maps(result)[0])
        figures[folder] = counts
    g = figures["good"]
    figures["good"] = {
        "layers": len(g["flagged"]),
        "error_area": float(np.mean(g["error_area"])),
        "flagged": float(np.mean(g["flagged"])),
        "tile_error_area": float(np.mean(g["tile_error_area"])),
        "tile_flagged": float(np.mean(g["tile_flagged"])),
        "grades": {
            kind: {grade: grades[kind].count(grade) for grade in ("ok", "minor", "critical")} for kind in grades
        },
    }
    return figures


def risheng(model, root: Path) -> dict:
    from slmcnn.constants import ERROR
    from slmcnn.pipeline import LayerPipeline, RunOptions

    photos = sorted(root.glob("*.png"))
    pipeline = LayerPipeline(_backend(model), RunOptions(workers=1, learn=3), model=model)
    rows = []
    for outcome in pipeline.run(photos):
        result = outcome.result
        labels = json.loads(result.path.with_suffix(".json").read_text())
        tile_error, _ = tile_maps(result)
        for shape in labels["shapes"]:
            region = np.zeros(result.class_map.shape, np.uint8)
            points = np.asarray(shape["points"], np.float32)
            if shape.get("shape_type") == "rectangle":
                (x0, y0), (x1, y1) = points.min(0), points.max(0)
                cv2.rectangle(region, (int(x0), int(y0)), (int(x1), int(y1)), 1, -1)
            else:
                cv2.fillPoly(region, [points.round().astype(np.int32)], 1)
            row = {"photo": result.path.stem, "label": shape["label"]}
            for name, error in (("fine", result.class_map == ERROR), ("tiles", tile_error)):
                near = cv2.dilate(error.astype(np.uint8), disk(NEAR)) > 0
                row[name] = bool((near & (region > 0)).any())
                inside = region > 0
                row[f"{name}_outside_area"] = float((error & ~(cv2.dilate(region, disk(AWAY)) > 0)).mean())
                row[f"{name}_inside_share"] = float(error[inside].mean())
            rows.append(row)
    return {"regions": rows, "fine_found": sum(r["fine"] for r in rows), "tiles_found": sum(r["tiles"] for r in rows)}


def print_synthetic(figures: dict) -> None:
    for photo in ("recoated", "exposed"):
        if photo not in figures:
            continue
        print(f"\nsynthetic builds, photos taken {photo}")
        print(f"{'':22}{'fine':>16}{'tiles':>16}")
        fine, tiles = figures[photo]["fine"], figures[photo]["tiles"]
        rows = [
            ("regions found", lambda f: f"{f['regions_found']}/{f['regions']} {f['recall']:.0%}"),
            ("sound layers", lambda f: str(f["sound_layers"])),
            ("Error on sound", lambda f: "-" if f["sound_error_area"] is None else f"{f['sound_error_area']:.2%}"),
            ("sound flagged", lambda f: "-" if f["sound_flagged"] is None else f"{f['sound_flagged']:.0%}"),
            ("Error away (>16 px)", lambda f: "-" if f["away_area"] is None else f"{f['away_area']:.2%}"),
            ("pixel AUROC", lambda f: "-" if f["pixel_auroc"] is None else f"{f['pixel_auroc']:.3f}"),
        ]
        for name, show in rows:
            print(f"{name:22}{show(fine):>16}{show(tiles):>16}")
        for t in fine["per_type"]:
            (a, n), (b, _) = fine["per_type"][t], tiles["per_type"].get(t, (0, 0))
            print(f"  {t:20}{f'{a}/{n}':>16}{f'{b}/{n}':>16}")
        print(f"found regions named their true type (fine): {fine['named_right']:.0%}")
        for t, n in sorted(fine["named"].items()):
            print(f"  {t:20} named " + ", ".join(f"{k} {v}" for k, v in sorted(n.items(), key=lambda kv: -kv[1])))


def build_options(description: str, per_folder: int) -> argparse.ArgumentParser:
    """The options bench_maps and bench_teach share: the synthetic builds, the first layers, PBLM."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--builds", type=int, default=4, help="synthetic builds (half after recoat, half after exposure)"
    )
    parser.add_argument("--layers", type=int, default=30, help="layers per synthetic build")
    parser.add_argument("--learn", type=int, default=5, help="first layers of a build the fine maps learn from")
    parser.add_argument("--per-folder", type=int, default=per_folder, help="PBLM photos of each defect folder")
    parser.add_argument("--pblm", type=Path, default=SHARED / "pblm")
    return parser


def main() -> int:
    parser = build_options(__doc__, per_folder=20)
    parser.add_argument("--risheng", type=Path, default=SHARED / "risheng-recoat")
    parser.add_argument("--skip", choices=["synth", "pblm", "risheng"], action="append", default=[])
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    import torch

    import slmcnn

    torch.manual_seed(0)
    model = slmcnn.load_model()
    results: dict = {"model": str(model.source.name)}
    started = time.perf_counter()
    if "synth" not in args.skip:
        with tempfile.TemporaryDirectory() as folder:
            results["synthetic"] = synthetic(model, args.builds, args.layers, args.learn, Path(folder))
        print_synthetic(results["synthetic"])
        print(f"fine maps: {results['synthetic']['seconds_per_layer']:.2f} s a layer (median, whole pipeline)")
    if "pblm" not in args.skip:
        if (args.pblm / "No_Defect").is_dir():
            r = results["pblm"] = pblm(model, args.pblm, args.learn, args.per_folder)
            g = r["good"]
            print(f"\nPBLM: {g['layers']} good photos after the first {args.learn}")
            print(f"  Error area on good: fine {g['error_area']:.2%}  tiles {g['tile_error_area']:.2%}")
            print(f"  good photos flagged: fine {g['flagged']:.0%}  tiles {g['tile_flagged']:.0%}")
            for kind, counts in g["grades"].items():
                print(f"  good photos graded ({kind}): " + ", ".join(f"{n} {grade}" for grade, n in counts.items()))
            for folder, c in r.items():
                if folder != "good":
                    print(
                        f"  {folder}: flagged fine {c['flagged']}/{c['photos']}  tiles {c['tile_flagged']}/{c['photos']}"
                    )
        else:
            print(f"PBLM not found at {args.pblm}: skipped", file=sys.stderr)
    if "risheng" not in args.skip:
        if args.risheng.is_dir():
            r = results["risheng"] = risheng(model, args.risheng)
            print(
                f"\nrisheng-recoat: labelled regions found fine {r['fine_found']}/{len(r['regions'])}  tiles {r['tiles_found']}/{len(r['regions'])}"
            )
            for row in r["regions"]:
                print(
                    f"  {row['photo']} {row['label']:15} fine {'found' if row['fine'] else 'missed':6} "
                    f"(Error outside {row['fine_outside_area']:.1%})  tiles {'found' if row['tiles'] else 'missed':6} "
                    f"(outside {row['tiles_outside_area']:.1%})"
                )
        else:
            print(f"risheng-recoat not found at {args.risheng}: skipped", file=sys.stderr)
    print(f"\n{time.perf_counter() - started:.0f} s in all")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
