"""Per-build adaptation (slmcnn.adapt) on synthetic sessions of a camera the model never saw.

One camera (a style outside the generator's ranges, as bench_profile.py's) photographs several
builds. The camera profile is learned from 10 sound layers of one build (session A); then builds
of other sessions are judged: the same session with other parts, a session whose exposure and
gain changed, and a session photographing after the laser pass. Each test build has defect-free
first layers (--adapt N) and defects that start after them. A last build has a defect from layer 1
to the end, which must not be learned and must still be found after the first N layers.

Judged four ways on the same network pass per layer: the network alone, the camera profile alone,
camera + build memory (`--adapt N`, the default with --camera) and the build memory alone (no
camera). Tile labels come from the masks by slmcnn.labels' rule. Printed per session and way, over
the layers after the first N: Error tiles on sound layers, sound layers flagged (any Error tile),
Error tiles found on defective layers (recall) and Error tiles among their sound tiles.

    nice .venv/bin/python benchmarks/bench_adapt.py [--builds 2] [--layers 25] [--adapt 5] [--json out.json]
"""

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_profile's PBLM helpers

from slmcnn.adapt import BuildMemory
from slmcnn.checkpoint import default_model_path, load_model
from slmcnn.labels import ERROR, LabelRule, tile_labels
from slmcnn.profile import FeatureNet, profile_from_features
from slmcnn.synth.build import DEFAULT_RATES, SynthSettings, plan_build, render_layer
from slmcnn.synth.defects import DefectEvent, plan_defects
from slmcnn.tiles import tile

UNSEEN_STYLE = dict(powder_level=(120.0, 135.0), contrast=(0.6, 0.7), grain=(8.0, 10.0), gamma=(1.3, 1.4))
STYLES = {"unseen": UNSEEN_STYLE, "generator": dict(walls_share=0.0)}  # the second: drawn from the training ranges
SESSIONS = {
    "same session": dict(),
    "exposure+gain": dict(level=-15.0, contrast=0.9, grain=1.3),
    "after exposure": dict(level=12.0, grain=1.2, after_exposure=True),
}
DEFECT_SHARE = 0.3  # of the generator's defect rates: a third of the layers stay sound
THRESHOLDS = (0.6, 0.8, 1.0, 1.25)
WAYS = ("network", "profile", "profile+adapt", "adapt alone")


def session_plan(camera_plan, seed: int, layers: int, session: dict, first_defect: int, style: str = "unseen"):
    """A build of another seed (its own parts and defects) under the camera of `camera_plan`,
    changed as `session` says; defects start after layer `first_defect`."""
    settings = SynthSettings(
        size=camera_plan.settings.size, seed=seed, layers=layers, **STYLES[style],
        after_exposure=(1.0, 1.0) if session.get("after_exposure") else (0.0, 0.0),
    )  # fmt: skip
    plan = plan_build(settings)
    rng = np.random.default_rng(seed)
    rates = {kind: rate * DEFECT_SHARE for kind, rate in DEFAULT_RATES.items()}
    plan.defects = plan_defects(rng, layers, settings.size, rates, plan.parts)
    cam = camera_plan.camera
    cam = replace(
        cam,
        level=cam.level + session.get("level", 0.0),
        contrast=cam.contrast * session.get("contrast", 1.0),
        grain=cam.grain * session.get("grain", 1.0),
    )
    plan.camera, plan.homography, plan.direction = cam, camera_plan.homography, camera_plan.direction
    plan.defects = [e for e in plan.defects if e.first > first_defect]
    return plan


def layer_data(plan, net: FeatureNet, rule: LabelRule):
    """Per layer: network probabilities, features and tile labels."""
    out = []
    for i in range(1, plan.settings.layers + 1):
        rendered = render_layer(plan, i)
        grid = tile(rendered.image, plan.settings.patch)
        probs, feats = net(grid.patches)
        out.append((probs, feats, tile_labels(rendered.mask, grid, rule), grid.shape))
    return out


def judge_build(layers, way: str, camera, model, adapt: int, precision: str):
    """Decided classes per layer (and the adaptation's not-learned tiles) for one way of judging."""
    memory = None
    if way == "profile+adapt":
        memory = BuildMemory(camera, adapt, model, precision)
    elif way == "adapt alone":
        memory = BuildMemory(None, adapt, model, precision)
    classes, not_learned = [], []
    for k, (probs, feats, _, shape) in enumerate(layers):
        if way == "network":
            classes.append(probs.argmax(1))
        elif way == "profile":
            classes.append(camera.decide_tiles(probs, camera.distances(feats)).classes)
        else:
            decided, _, info = memory.judge(probs, feats, shape, f"layer {k + 1}")
            classes.append(decided.argmax(1))
            not_learned += info.not_learned
    return classes, not_learned


def tally(layers, classes, after: int) -> dict:
    sound_err = sound_tiles = sound_layers = flagged = found = defect = clean_err = clean = 0
    for (_, _, labels, _), predicted in list(zip(layers, classes))[after:]:
        error = predicted == ERROR
        if (labels == ERROR).any():
            found += int((error & (labels == ERROR)).sum())
            defect += int((labels == ERROR).sum())
            clean_err += int((error & (labels != ERROR)).sum())
            clean += int((labels != ERROR).sum())
        else:
            sound_layers += 1
            flagged += int(error.any())
            sound_err += int(error.sum())
            sound_tiles += len(labels)
    ratio = lambda a, b: round(a / b, 4) if b else None  # noqa: E731
    return {
        "sound_error_tiles": ratio(sound_err, sound_tiles),
        "sound_layers_flagged": ratio(flagged, sound_layers),
        "defect_recall": ratio(found, defect),
        "clean_tiles_error_on_defective_layers": ratio(clean_err, clean),
        "counts": dict(sound_layers=sound_layers, sound_tiles=sound_tiles, defect_tiles=defect, clean_tiles=clean),
    }


def merge(parts: list[dict]) -> dict:
    keys = ("sound_error_tiles", "sound_layers_flagged", "defect_recall", "clean_tiles_error_on_defective_layers")
    weights = ("sound_tiles", "sound_layers", "defect_tiles", "clean_tiles")
    out = {"counts": {w: sum(p["counts"][w] for p in parts) for w in weights}}
    for key, weight in zip(keys, weights):
        total = out["counts"][weight]
        out[key] = round(sum((p[key] or 0) * p["counts"][weight] for p in parts) / total, 4) if total else None
    return out


def sensitivity(base, camera, model, net, rule, args) -> dict:
    """The trade of `--error-threshold` with camera + build memory, over every session's builds."""
    builds = [
        layer_data(session_plan(base, 1000 + 100 * s + b, args.layers, change, args.adapt, args.style), net, rule)
        for s, change in enumerate(SESSIONS.values())
        for b in range(args.builds)
    ]
    out = {}
    print("\n--error-threshold, camera + build memory, all sessions:")
    for threshold in THRESHOLDS:
        parts = []
        for layers in builds:
            memory = BuildMemory(camera, args.adapt, model, net.precision)
            classes = [memory.judge(p, f, shape, error_threshold=threshold)[0].argmax(1) for p, f, _, shape in layers]
            parts.append(tally(layers, classes, args.adapt))
        out[threshold] = merged = merge(parts)
        print(
            f"  {threshold:<5} sound tiles Error {100 * merged['sound_error_tiles']:.2f}%, sound layers flagged "
            f"{100 * merged['sound_layers_flagged']:.1f}%, defect tiles found {100 * merged['defect_recall']:.1f}%, "
            f"clean tiles Error on defective layers {100 * merged['clean_tiles_error_on_defective_layers']:.2f}%",
            flush=True,
        )
    return out


def pblm(model, adapt: int, per_folder: int = 100, seed: int = 0) -> dict | None:
    """PBLM as one build: the camera profile from 10 good photos, the build's first `adapt` layers
    are 5 other good photos, and the remaining good photos and each defect folder (`per_folder`
    photos drawn) are judged against camera + build, each on its own (learn=False). A photo is
    flagged when it has an Error tile."""
    from bench_profile import FOLDERS, PBLM, distinct

    from slmcnn import images
    from slmcnn.camera import CameraCalibration, detect_corners
    from slmcnn.profile import build_profile

    if not PBLM.is_dir():
        print(f"\nPBLM: {PBLM} not found, skipped")
        return None
    good = distinct(sorted((PBLM / "No_Defect").glob("*.jpg")))
    reference = images.read(good[0])
    calibration = CameraCalibration(detect_corners(reference).round(2).tolist(), 768)
    camera = build_profile(good[:10], calibration, model)
    net = camera.feature_net(model)

    def record(path: Path):
        frame = images.read(path)
        own = calibration if frame.shape[:2] == reference.shape[:2] else None
        own = own or CameraCalibration(detect_corners(frame).round(2).tolist(), 768)
        return net(tile(own.warp(frame), 128).patches)

    memory = BuildMemory(camera, adapt, model, net.precision)
    for path in good[10 : 10 + adapt]:
        probs, feats = record(path)
        memory.judge(probs, feats, camera.grid_shape, path.name)
    rng = np.random.default_rng(seed)
    sets = {"No_Defect (not profiled, not learned)": good[10 + adapt :]}
    for folder in FOLDERS:
        paths = sorted((PBLM / folder).glob("*.jpg"))
        sets[folder] = [paths[i] for i in sorted(rng.choice(len(paths), min(per_folder, len(paths)), replace=False))]
    out = {}
    print(f"\nPBLM as one build (profile: 10 good photos; build memory: the next {adapt} good photos):")
    for name, paths in sets.items():
        flagged = {"profile": 0, "profile+adapt": 0}
        for path in paths:
            probs, feats = record(path)
            flagged["profile"] += int((camera.decide_tiles(probs, camera.distances(feats)).classes == ERROR).any())
            decided = memory.judge(probs, feats, camera.grid_shape, path.name, learn=False)[0]
            flagged["profile+adapt"] += int((decided.argmax(1) == ERROR).any())
        out[name] = {way: round(count / len(paths), 4) for way, count in flagged.items()} | {"photos": len(paths)}
        shares = ", ".join(f"{way} {100 * share:.1f}%" for way, share in out[name].items() if way != "photos")
        print(f"  {name:<40} {len(paths):>4} photos flagged: {shares}", flush=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--builds", type=int, default=2, help="test builds per session")
    parser.add_argument("--layers", type=int, default=25)
    parser.add_argument("--adapt", type=int, default=5)
    parser.add_argument("--size", type=int, default=768)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument(
        "--style",
        choices=sorted(STYLES),
        default="unseen",
        help="the camera: unseen (a style outside the generator's ranges) or generator (drawn from the ranges the model was trained on)",
    )
    parser.add_argument("--no-pblm", action="store_true", help="skip PBLM (../shared/data/pblm)")
    parser.add_argument("--json")
    args = parser.parse_args()
    started = time.perf_counter()
    path = default_model_path()
    model = load_model(path)[0]
    net, rule = FeatureNet(model), LabelRule()
    base = plan_build(
        SynthSettings(
            size=args.size, seed=args.seed, layers=10, defect_rates={}, **STYLES[args.style], after_exposure=(0.0, 0.0)
        )
    )
    profiled = [net(tile(render_layer(base, i).image, 128).patches, probabilities=False)[1] for i in range(1, 11)]
    camera = profile_from_features(
        np.stack(profiled), (args.size // 128,) * 2, model, None, (args.size,) * 2, net.precision
    )
    print(
        f"model {path.name}; {args.style} camera style; profile from 10 sound layers of session A ({camera.summary()})",
        flush=True,
    )
    results: dict = {}
    for s, (session, change) in enumerate(SESSIONS.items()):
        per_way: dict = {w: [] for w in WAYS}
        for b in range(args.builds):
            plan = session_plan(base, 1000 + 100 * s + b, args.layers, change, args.adapt, args.style)
            layers = layer_data(plan, net, rule)
            for way in WAYS:
                classes, _ = judge_build(layers, way, camera, model, args.adapt, net.precision)
                per_way[way].append(tally(layers, classes, args.adapt))
        results[session] = {w: merge(v) for w, v in per_way.items()}
        print(f"\n{session} ({args.builds} builds of {args.layers} layers, after the first {args.adapt}):")
        print(
            f"  {'judged by':<15} {'sound tiles Error':>18} {'sound layers flagged':>21} {'defect tiles found':>19} {'clean tiles Error (defective layers)':>37}"
        )
        for way, r in results[session].items():
            cells = [
                r["sound_error_tiles"],
                r["sound_layers_flagged"],
                r["defect_recall"],
                r["clean_tiles_error_on_defective_layers"],
            ]
            shown = [f"{100 * c:.1f}%" if c is not None else "-" for c in cells]
            print(
                f"  {way:<15} {shown[0]:>18} {shown[1]:>21} {shown[2]:>19} {shown[3]:>37}   {r['counts']}", flush=True
            )
    # a defect present from layer 1 to the end
    plan = session_plan(base, 2000, args.layers, SESSIONS["exposure+gain"], args.layers, args.style)
    plan.defects = [DefectEvent("scratch", 1, args.layers, 7), DefectEvent("hole", 1, args.layers, 8)]
    layers = layer_data(plan, net, rule)
    early = {}
    for way in ("profile+adapt", "adapt alone"):
        classes, not_learned = judge_build(layers, way, camera, model, args.adapt, net.precision)
        first_tiles = set(np.flatnonzero(layers[0][2] == ERROR))
        learned_defect = sorted({(n["layer"], n["tile"]) for n in not_learned if n["tile"] in first_tiles})
        early[way] = {
            **tally(layers, classes, args.adapt),
            "defect_tiles_layer_1": len(first_tiles),
            "not_learned": len(not_learned),
            "not_learned_on_defect_tiles": len(learned_defect),
        }
    results["defect from layer 1"] = early
    print("\ndefect from layer 1 to the end (a scratch and a hole), exposure+gain session:")
    for way, r in early.items():
        print(
            f"  {way:<15} defect tiles found after layer {args.adapt}: {100 * (r['defect_recall'] or 0):.1f}%; "
            f"first-layer tiles not learned: {r['not_learned']} ({r['not_learned_on_defect_tiles']} of them on the "
            f"{r['defect_tiles_layer_1']} defect tiles of layer 1 or again later)"
        )
    results["sensitivity"] = sensitivity(base, camera, model, net, rule, args)
    if not args.no_pblm:
        results["pblm"] = pblm(model, args.adapt)
    print(f"\n{time.perf_counter() - started:.0f} s", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"model": path.name, "style": args.style, "adapt": args.adapt, "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
