"""Review teaches the memory (issue #43 item 5): false alarms marked sound, confirmed defects as
examples, measured before and after on layers the lessons did not come from.

    python benchmarks/bench_teach.py                      # synthetic builds and PBLM
    python benchmarks/bench_teach.py --builds 2 --skip pblm

Each build is run twice through the product's pipeline (default fine maps). The first run plays the
reviewer on the first half of the judged layers (after the `--learn` layers): every Error region
further than 16 px from any true defect is a false alarm, taught `sound` with its box (at most
`--sound` of them); every true region the first run found is a confirmed alert, taught `defect`
with its box (at most `--defects` per type). The second run takes those lessons in (the folder a
camera's lessons live in) and both runs are judged on the second half only, as bench_maps judges:
region recall per type, Error area and share flagged on sound layers, Error area away from true
defects. Synthetic lessons also go to the next build of the same kind of photo (another seed: what
a camera's memory gives the next build). PBLM: the good photos after the first `--learn` teach the
false alarms of their first half; the second half and each defect folder are judged before/after.
"""

import json
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from bench_maps import AWAY, MIN_TRUE, Tally, _backend, build_options, disk, fine_score, flagged

from slmcnn.constants import ERROR


def teach_from(lessons, outcomes, truths, most_sound: int, most_defects: int, names) -> dict:
    """Play the reviewer on `outcomes` (their truth masks and type maps): false alarms sound, found
    true regions defects; what was taught."""
    taught = {"sound": 0, "defect": {}}
    for outcome, (truth, types) in zip(outcomes, truths, strict=True):
        result = outcome.result
        error = result.class_map == ERROR
        far = cv2.dilate((truth == 2).astype(np.uint8), disk(AWAY)) == 0
        boxes = [r.box for r in result.fine.regions if (error[r.box[1] : r.box[3], r.box[0] : r.box[2]] & far[r.box[1] : r.box[3], r.box[0] : r.box[2]]).mean() > 0.5]  # fmt: skip
        if boxes and taught["sound"] < most_sound:
            boxes = boxes[: most_sound - taught["sound"]]
            lessons.add(result.image, box_mask(error.shape, boxes), "sound", result.path.name, "bench false alarm")
            taught["sound"] += len(boxes)
        if types is None:
            continue
        near = cv2.dilate(error.astype(np.uint8), disk(8)) > 0
        for t in np.unique(types[types > 0]):
            name = names[int(t) - 1]
            count, parts, stats, _ = cv2.connectedComponentsWithStats((types == t).astype(np.uint8), connectivity=8)
            for k in range(1, count):
                x, y, w, h, area = stats[k]
                if area < MIN_TRUE or not (near & (parts == k)).any() or taught["defect"].get(name, 0) >= most_defects:
                    continue
                lessons.add(result.image, box_mask(error.shape, [(x, y, x + w, y + h)]), "defect", result.path.name, "bench confirmed")  # fmt: skip
                taught["defect"][name] = taught["defect"].get(name, 0) + 1
    return taught


def box_mask(shape, boxes):
    from slmcnn.teaching import box_mask as mask

    return mask(shape, boxes)


def run(model, paths, learn: int, photo: str, lessons_folder: Path | None):
    from slmcnn.pipeline import RunOptions, run_layers

    options = RunOptions(workers=1, learn=learn, photo=photo, lessons=lessons_folder)
    return [o for o in run_layers(paths, _backend(model), options, model=model) if o.result.fine.state == "judged"]


def tally(outcomes, truths, names) -> dict:
    t = Tally()
    for outcome, (truth, types) in zip(outcomes, truths, strict=True):
        t.add(outcome.result.class_map == ERROR, fine_score(outcome.result), truth, types, names)
    return t.figures()


def synthetic(model, builds: int, layers: int, learn: int, most_sound: int, most_defects: int, folder: Path) -> dict:
    from slmcnn.defect_types import DEFECT_TYPES
    from slmcnn.images import read
    from slmcnn.synth import SynthSettings, generate_build
    from slmcnn.synth.build import ALL_TYPES_RATES
    from slmcnn.teaching import Lessons

    rows, previous = [], {}
    for b in range(builds):
        photo = "recoated" if b % 2 == 0 else "exposed"
        rates = {kind: rate / 4 for kind, rate in ALL_TYPES_RATES.items()}
        settings = SynthSettings(
            layers=layers, seed=2000 + b, defect_rates=rates, after_exposure=(float(photo == "exposed"),) * 2,
            write_patches=False, breakthrough=0.5,
        )  # fmt: skip
        out = folder / f"build{b}"
        generate_build(settings, out)
        paths = sorted((out / "layers").glob("*.png"))
        before = run(model, paths, learn, photo, None)
        truths = [
            (read(out / "masks" / o.result.path.name)[..., 0], read(out / "types" / o.result.path.name)[..., 0])
            for o in before
        ]
        half = len(before) // 2
        lessons = Lessons(folder / f"lessons{b}")
        taught = teach_from(lessons, before[:half], truths[:half], most_sound, most_defects, DEFECT_TYPES)
        after = run(model, paths, learn, photo, lessons.folder)
        row = {
            "build": b, "photo": photo, "taught": taught,
            "before": tally(before[half:], truths[half:], DEFECT_TYPES),
            "after": tally(after[half:], truths[half:], DEFECT_TYPES),
        }  # fmt: skip
        if photo in previous:  # the lessons of the last build of this kind, on this whole build
            other = run(model, paths, learn, photo, previous[photo])
            row["whole_before"] = tally(before, truths, DEFECT_TYPES)
            row["whole_with_last_builds_lessons"] = tally(other, truths, DEFECT_TYPES)
        previous[photo] = lessons.folder
        rows.append(row)
        print(f"  build {b + 1}/{builds} ({photo}) done: taught {taught}", file=sys.stderr)
    return {"builds": rows}


def pblm(model, root: Path, learn: int, most_sound: int, per_folder: int, folder: Path) -> dict:
    from slmcnn.camera import CameraCalibration, detect_corners
    from slmcnn.images import read
    from slmcnn.pipeline import LayerPipeline, RunOptions
    from slmcnn.teaching import Lessons

    good = sorted((root / "No_Defect").glob("*.jpg"))
    calibration = CameraCalibration(detect_corners(read(good[0])).round(2).tolist(), 768)
    lessons = Lessons(folder / "pblm-lessons")
    figures = {}
    for when, taught_folder in (("before", None), ("after", lessons.folder)):
        options = RunOptions(workers=1, camera=calibration, learn=learn, lessons=taught_folder)
        pipeline = LayerPipeline(_backend(model), options, model=model)
        judged = [o for o in pipeline.run(good) if o.result.fine.state == "judged"]
        half = len(judged) // 2
        if when == "before":
            sound = np.zeros(judged[0].result.class_map.shape, np.uint8)
            teach_from(lessons, judged[:half], [(sound, None)] * half, most_sound, 0, None)
        second = [o.result.class_map == ERROR for o in judged[half:]]
        figures[when] = {
            "good_layers": len(second),
            "good_flagged": float(np.mean([flagged(e) for e in second])),
            "good_error_area": float(np.mean([e.mean() for e in second])),
        }
        kept = list(pipeline.mapper.change.layers)
        for defects in ("Powder_Uneven", "Powder_Uneven_With_Scratch", "Deformation_With_Scratch"):
            paths = sorted((root / defects).glob("*.jpg"))
            paths = paths[:: max(1, len(paths) // per_folder)][:per_folder]
            hits = 0
            for path in paths:
                pipeline.mapper.change.layers = list(kept)  # each photo judged alone after the good ones
                layer = (str(good[0].parent / f"{path.parent.name}-{path.name}"), read(path))  # see bench_maps
                result = next(iter(pipeline.run([layer]))).result
                assert result is None or result.fine.state == "judged", "judged with the good photos' memory"
                hits += result is not None and flagged(result.class_map == ERROR)
            figures[when][defects] = [hits, len(paths)]
    figures["taught_sound"] = len(lessons)
    return figures


def show(name: str, before: dict, after: dict) -> None:
    def pct(v, digits=2):
        return "-" if v is None else f"{v:.{digits}%}"

    print(f"{name}")
    print(
        f"  regions found        {before['regions_found']}/{before['regions']} -> {after['regions_found']}/{after['regions']}"
    )
    print(f"  Error on sound       {pct(before['sound_error_area'])} -> {pct(after['sound_error_area'])}")
    print(
        f"  sound flagged        {pct(before['sound_flagged'], 0)} -> {pct(after['sound_flagged'], 0)}  ({after['sound_layers']} layers)"
    )
    print(f"  Error away (>16 px)  {pct(before['away_area'])} -> {pct(after['away_area'])}")
    for t, (found, n) in before["per_type"].items():
        print(f"    {t:18} {found}/{n} -> {after['per_type'].get(t, [0, n])[0]}/{n}")  # fmt: skip


def main() -> int:
    parser = build_options(__doc__, per_folder=10)
    parser.add_argument("--sound", type=int, default=5, help="most false alarms a reviewer marks per build")
    parser.add_argument("--defects", type=int, default=1, help="most confirmed defects taught per type and build")
    parser.add_argument("--skip", choices=["synth", "pblm"], action="append", default=[])
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    import slmcnn

    model = slmcnn.load_model()
    results: dict = {"model": model.source.name}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        if "synth" not in args.skip:
            results["synthetic"] = synthetic(
                model, args.builds, args.layers, args.learn, args.sound, args.defects, Path(folder)
            )
            for row in results["synthetic"]["builds"]:
                show(f"\nbuild {row['build']} ({row['photo']}), second half, taught {row['taught']}", row["before"], row["after"])  # fmt: skip
                if "whole_before" in row:
                    show("  the whole build with the last build's lessons", row["whole_before"], row["whole_with_last_builds_lessons"])  # fmt: skip
        if "pblm" not in args.skip and (args.pblm / "No_Defect").is_dir():
            r = results["pblm"] = pblm(model, args.pblm, args.learn, args.sound, args.per_folder, Path(folder))
            b, a = r["before"], r["after"]
            print(f"\nPBLM: {r['taught_sound']} false alarm lesson(s) from the first half of the good photos")
            print(
                f"  good flagged (second half, {a['good_layers']}): {b['good_flagged']:.0%} -> {a['good_flagged']:.0%}"
            )
            print(f"  Error area on good: {b['good_error_area']:.2%} -> {a['good_error_area']:.2%}")
            for defects in ("Powder_Uneven", "Powder_Uneven_With_Scratch", "Deformation_With_Scratch"):
                print(f"  {defects} flagged: {b[defects][0]}/{b[defects][1]} -> {a[defects][0]}/{a[defects][1]}")
    print(f"\n{time.perf_counter() - started:.0f} s in all")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
