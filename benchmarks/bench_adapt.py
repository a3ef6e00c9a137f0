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

import numpy as np

from slmcnn.adapt import BuildMemory
from slmcnn.checkpoint import default_model_path, load_model
from slmcnn.labels import ERROR, LabelRule, tile_labels
from slmcnn.profile import FeatureNet, profile_from_features
from slmcnn.synth.build import DEFAULT_RATES, SynthSettings, plan_build, render_layer
from slmcnn.synth.defects import DefectEvent, plan_defects
from slmcnn.tiles import tile

UNSEEN_STYLE = dict(powder_level=(120.0, 135.0), contrast=(0.6, 0.7), grain=(8.0, 10.0), gamma=(1.3, 1.4))
SESSIONS = {
    "same session": dict(),
    "exposure+gain": dict(level=-15.0, contrast=0.9, grain=1.3),
    "after exposure": dict(level=12.0, grain=1.2, after_exposure=True),
}
DEFECT_SHARE = 0.3  # of the generator's defect rates: a third of the layers stay sound
WAYS = ("network", "profile", "profile+adapt", "adapt alone")


def session_plan(camera_plan, seed: int, layers: int, session: dict, first_defect: int):
    """A build of another seed (its own parts and defects) under the camera of `camera_plan`,
    changed as `session` says; defects start after layer `first_defect`."""
    settings = SynthSettings(
        size=camera_plan.settings.size, seed=seed, layers=layers, **UNSEEN_STYLE,
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--builds", type=int, default=2, help="test builds per session")
    parser.add_argument("--layers", type=int, default=25)
    parser.add_argument("--adapt", type=int, default=5)
    parser.add_argument("--size", type=int, default=768)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--json")
    args = parser.parse_args()
    started = time.perf_counter()
    path = default_model_path()
    model = load_model(path)[0]
    net, rule = FeatureNet(model), LabelRule()
    base = plan_build(
        SynthSettings(
            size=args.size, seed=args.seed, layers=10, defect_rates={}, **UNSEEN_STYLE, after_exposure=(0.0, 0.0)
        )
    )
    profiled = [net(tile(render_layer(base, i).image, 128).patches, probabilities=False)[1] for i in range(1, 11)]
    camera = profile_from_features(
        np.stack(profiled), (args.size // 128,) * 2, model, None, (args.size,) * 2, net.precision
    )
    print(f"model {path.name}; camera profile from 10 sound layers of session A ({camera.summary()})", flush=True)
    results: dict = {}
    for s, (session, change) in enumerate(SESSIONS.items()):
        per_way: dict = {w: [] for w in WAYS}
        for b in range(args.builds):
            plan = session_plan(base, 1000 + 100 * s + b, args.layers, change, args.adapt)
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
    plan = session_plan(base, 2000, args.layers, SESSIONS["exposure+gain"], args.layers)
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
    print(f"\n{time.perf_counter() - started:.0f} s", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"model": path.name, "adapt": args.adapt, "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
