"""Measure the camera profile (slmcnn.profile) on real PBLM photos and on a synthetic camera style.

PBLM (../shared/data/pblm, skipped with a message when absent): the bed is calibrated automatically
on the first No_Defect photo, a profile is built from 10 distinct No_Defect photos, and the other
distinct good photos and every defect folder (subsampled to --per-folder photos) are scored with and
without the profile. A photo is flagged when it has at least one Error tile; its score is the
largest tile anomaly (profile) or the largest Error probability (network alone). The normality
models compared on the same features: tile-knn (tile-mean features, the shipped choice), patch-knn
(16 locations per tile) and a PaDiM-style Gaussian per tile position (shared shrunk covariance).
Then the shipped method profiled from --draws random sets of 10 good photos instead of the first
10, each tested on the other good photos: whether the figures hold whichever good layers are profiled.

Synthetic: a camera style outside the generator's ranges (dark, low contrast, coarse grain), 20
defect-free layers profiled, then other defect-free layers (with the same parts), layers with
parts the profile never saw (profiled from part-free layers of the same camera), and layers with
defects: Error tiles per 1,000 sound tiles and Error recall, with and without the profile.

    nice .venv/bin/python benchmarks/bench_profile.py [--per-folder 150] [--draws 10] [--json]
"""

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from slmcnn import images
from slmcnn.camera import CameraCalibration, detect_corners
from slmcnn.checkpoint import default_model_path, load_model
from slmcnn.labels import LabelRule
from slmcnn.profile import (
    CONFIRM,
    ERROR,
    FeatureNet,
    build_profile,
    decide,
    profile_from_features,
    thresholds_from_scores,
)
from slmcnn.synth.build import SynthSettings, plan_build, render_layer
from slmcnn.tiles import tile

PBLM = Path(__file__).resolve().parents[2] / "shared" / "data" / "pblm"
FOLDERS = ("Powder_Uneven", "Powder_Uneven_With_Scratch", "Deformation_With_Scratch", "Plateform_Powder_Uneven")
UNSEEN_STYLE = dict(powder_level=(120.0, 135.0), contrast=(0.6, 0.7), grain=(8.0, 10.0), gamma=(1.3, 1.4))


def auroc(negatives: np.ndarray, positives: np.ndarray) -> float:
    """Probability that a random positive scores above a random negative (ties count half)."""
    if not len(negatives) or not len(positives):
        return float("nan")
    diff = positives[:, None] - negatives[None, :]
    return float((diff > 0).mean() + 0.5 * (diff == 0).mean())


def distinct(paths: list[Path]) -> list[Path]:
    seen, out = set(), []
    for path in paths:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest not in seen:
            seen.add(digest)
            out.append(path)
    return out


class Gaussian:
    """PaDiM-style: the mean tile-feature of each position, one shrunk covariance shared by all."""

    def __init__(self, features: np.ndarray):  # (frames, positions, D) tile-mean features
        from sklearn.covariance import LedoitWolf

        self.mean = features.mean(0)
        centred = (features - self.mean).reshape(-1, features.shape[-1])
        self.precision = LedoitWolf().fit(centred).precision_.astype(np.float32)
        left_out = []
        for i in range(len(features)):
            mean = np.delete(features, i, 0).mean(0)
            left_out.append(self._distance(features[i], mean))
        self.thresholds, self.meta = thresholds_from_scores(np.array(left_out))

    def _distance(self, features: np.ndarray, mean: np.ndarray) -> np.ndarray:
        d = features - mean
        return np.sqrt(np.einsum("pd,de,pe->p", d, self.precision, d).clip(0))

    def anomaly(self, features: np.ndarray) -> np.ndarray:
        return self._distance(features, self.mean) / self.thresholds


def evaluate(good: list, bad: dict, score) -> dict:
    """Flag shares and AUROC for one method; `score(record) -> (flagged, photo score)`."""
    good_scores = [score(r) for r in good]
    result = {"good_flagged": float(np.mean([f for f, _ in good_scores]))}
    negatives = np.array([s for _, s in good_scores])
    positives = []
    for folder, records in bad.items():
        scored = [score(r) for r in records]
        result[f"{folder}_flagged"] = float(np.mean([f for f, _ in scored]))
        result[f"{folder}_auroc"] = auroc(negatives, np.array([s for _, s in scored]))
        positives += [s for _, s in scored]
    result["auroc"] = auroc(negatives, np.array(positives))
    return result


SHIPPED = f"tile-knn, confirm {CONFIRM} (shipped)"
VARIANTS = {  # name: (locations per tile side, confirm, object_error, neighbour rules (an Error beside a
    # sure one kept, powder beside a part not raised), anomaly-only Errors against the layer's own level,
    # the network's sure Error kept where its place looked otherwise on the good layers (`seen`))
    "patch-knn": (4, 1.0, 1.01, False, False, False),
    SHIPPED: (1, CONFIRM, 1.01, True, True, True),
    f"tile-knn, confirm {CONFIRM}, no sure-Error rule": (1, CONFIRM, 1.01, True, True, False),
    f"tile-knn, confirm {CONFIRM}, no layer level": (1, CONFIRM, 1.01, True, False, True),
    f"tile-knn, confirm {CONFIRM}, powder beside parts raised too": (1, CONFIRM, 1.01, "surroundings", True, True),
    f"tile-knn, confirm {CONFIRM}, no neighbour rules": (1, CONFIRM, 1.01, False, True, True),
    f"tile-knn, confirm {CONFIRM} alone (no neighbour rules, no layer level)": (1, CONFIRM, 1.01, False, False, False),
    "tile-knn, confirm 1.0 (v3)": (1, 1.0, 1.01, False, False, False),
    "tile-knn, network Error never vetoed": (1, 0.0, 1.01, False, False, False),
    "tile-knn, anomalous Object with P(Error) >= 0.3 is Error": (1, 1.0, 0.3, False, False, False),
    "tile-knn, anomalous Object with P(Error) >= 0.2 is Error": (1, 1.0, 0.2, False, False, False),
}


def variant_profiles(model, features: np.ndarray, grid_shape, precision: str) -> dict:
    """One profile per feature grid from (frames, tiles, 16, D) features of good frames."""
    return {
        grid: profile_from_features(pooled(features, grid), grid_shape, model, None, (0, 0), precision)
        for grid in {v[0] for v in VARIANTS.values()}
    }


def pooled(features: np.ndarray, grid: int) -> np.ndarray:
    """Features of GRID 4 (16 locations) pooled to grid 1 (the tile mean) when asked."""
    return features if grid == 4 else features.mean(-2, keepdims=True)


def decided(profiles: dict, name: str, probs: np.ndarray, feats: np.ndarray):
    grid, confirm, object_error, neighbours, level, sure = VARIANTS[name]
    profile = profiles[grid]
    anomaly = profile.score_features(probs, pooled(feats, grid)).anomaly
    grid_shape = profile.grid_shape if neighbours else None
    typical = profile.typical if level else None
    seen = profile.seen if sure else 1.0
    surroundings = neighbours == "surroundings"
    return decide(probs, anomaly, confirm, object_error, grid_shape, typical, surroundings, seen), anomaly


def random_draws(model, good: list, bad: dict, grid_shape, precision: str, frames: int, draws: int, seed: int) -> list:
    """The shipped method profiled from `draws` random sets of `frames` good photos (instead of the
    first ones), each tested on the other good photos and the defect photos: does the target hold
    whichever good layers a shop happens to profile?"""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(draws):
        chosen = np.sort(rng.choice(len(good), frames, replace=False))
        profile = profile_from_features(
            np.stack([pooled(good[i][1], 1) for i in chosen]), grid_shape, model, None, (0, 0), precision
        )

        def score(r, profile=profile):
            scored = profile.score_features(r[0], pooled(r[1], 1))
            return bool((scored.classes == ERROR).any()), scored.score

        rest = [good[i] for i in range(len(good)) if i not in set(chosen.tolist())]
        out.append({"profiled": chosen.tolist(), **evaluate(rest, bad, score)})
    return out


def pblm(model, root: Path, per_folder: int, frames: int, seed: int, draws: int = 0) -> dict:
    good = distinct(sorted((root / "No_Defect").glob("*.jpg")))
    reference = images.read(good[0])
    calibration = CameraCalibration(detect_corners(reference).round(2).tolist(), 768)
    started = time.perf_counter()
    shipped = build_profile(good[:frames], calibration, model, progress=True)
    build_seconds = time.perf_counter() - started
    net = FeatureNet(model, grid=4, precision=shipped.meta["precision"])
    rng = np.random.default_rng(seed)

    def record(path: Path) -> tuple[np.ndarray, np.ndarray]:
        frame = images.read(path)
        own = calibration if frame.shape[:2] == reference.shape[:2] else None
        own = own or CameraCalibration(detect_corners(frame).round(2).tolist(), 768)
        return net(tile(own.warp(frame), shipped.patch).patches)

    first_records = [record(p) for p in good[:frames]]
    profiles = variant_profiles(
        model, np.stack([r[1] for r in first_records]), shipped.grid_shape, shipped.meta["precision"]
    )
    good_records = [record(p) for p in good[frames:]]
    bad_records = {}
    for folder in FOLDERS:
        paths = sorted((root / folder).glob("*.jpg"))
        if len(paths) > per_folder:
            paths = [paths[i] for i in sorted(rng.choice(len(paths), per_folder, replace=False))]
        bad_records[folder] = [record(p) for p in paths]
        print(f"  scored {folder}: {len(paths)} photos", file=sys.stderr)

    def network(r):
        return bool((r[0].argmax(1) == ERROR).any()), float(r[0][:, ERROR].max())

    def with_profile(name):
        def score(r):
            classes, anomaly = decided(profiles, name, *r)
            return bool((classes == ERROR).any()), float(anomaly.max())

        return score

    def gauss(r):
        anomaly = gaussian.anomaly(r[1].mean(1))
        return bool((decide(r[0], anomaly) == ERROR).any()), float(anomaly.max())

    gaussian = Gaussian(np.stack([record(p)[1].mean(1) for p in good[:frames]]))

    def any_class(r):
        anomaly = decided(profiles, SHIPPED, *r)[1]
        return bool(anomaly.max() > 1), float(anomaly.max())

    methods = {"network alone": network, **{name: with_profile(name) for name in VARIANTS}}
    methods["tile-knn, photo flagged when any tile's anomaly > 1 (Object too)"] = any_class
    methods["gaussian per position (PaDiM-style)"] = gauss
    results = {name: evaluate(good_records, bad_records, fn) for name, fn in methods.items()}
    every_good = first_records + good_records
    drawn = random_draws(
        model, every_good, bad_records, shipped.grid_shape, shipped.meta["precision"], frames, draws, seed
    )
    return {
        "random_draws": drawn,
        "profile_frames": frames,
        "good_test_photos": len(good_records),
        "defect_photos": {k: len(v) for k, v in bad_records.items()},
        "per_folder_cap": per_folder,
        "profile_seconds": round(build_seconds, 2),
        "profile": {k: shipped.meta[k] for k in ("threshold", "marks", "estimate")},
        "methods": results,
    }


def synthetic(model, layers: int) -> dict:
    size = 768
    base = dict(size=size, seed=11, layers=20 + layers, **UNSEEN_STYLE)
    clean = plan_build(SynthSettings(defect_rates={}, **base))
    no_parts = plan_build(SynthSettings(defect_rates={}, parts=(0, 0), **base))
    defects = plan_build(SynthSettings(defect_rates={"streak": 0.5, "swelling": 0.4, "debris": 0.5}, **base))
    rule = LabelRule()
    started = time.perf_counter()
    shipped = build_profile([render_layer(clean, i).image for i in range(20)], None, model)
    seconds = time.perf_counter() - started
    net = FeatureNet(model, grid=4, precision=shipped.meta["precision"])

    def features(plan):
        return np.stack([net(tile(render_layer(plan, i).image, 128).patches)[1] for i in range(20)])

    profiles = {
        "parts seen": variant_profiles(model, features(clean), shipped.grid_shape, shipped.meta["precision"]),
        "parts unseen": variant_profiles(model, features(no_parts), shipped.grid_shape, shipped.meta["precision"]),
    }
    out = {
        "profile_seconds": round(seconds, 2),
        "profile": {k: shipped.meta[k] for k in ("threshold", "estimate")},
        "test_layers": layers,
    }
    for case, plan, seen in (
        ("sound layers", clean, "parts seen"),
        ("sound layers, parts unseen by the profile", clean, "parts unseen"),
        ("layers with defects", defects, "parts seen"),
    ):
        counts = {"tiles": 0, "sound": 0, "error_truth": 0}
        for i in range(20, 20 + layers):
            rendered = render_layer(plan, i)
            probs, feats = net(tile(rendered.image, 128).patches)
            truth = rule.labels(tile(rendered.mask[..., None], 128).patches[..., 0])
            sound, error = truth != ERROR, truth == ERROR
            counts["tiles"] += len(truth)
            counts["sound"] += int(sound.sum())
            counts["error_truth"] += int(error.sum())
            calls = {"network alone": probs.argmax(1)}
            calls |= {name: decided(profiles[seen], name, probs, feats)[0] for name in VARIANTS}
            for name, classes in calls.items():
                counts[f"{name}: false"] = counts.get(f"{name}: false", 0) + int(((classes == ERROR) & sound).sum())
                counts[f"{name}: found"] = counts.get(f"{name}: found", 0) + int(((classes == ERROR) & error).sum())
        out[case] = counts
    return out


def layer_cost(model, profile_frames: list[np.ndarray]) -> dict:
    """Seconds per 768x768 layer: the network alone (eager backend), the one-pass network + profile,
    and the profile's own work when features are known."""
    from slmcnn.inference import TorchBackend

    profile = build_profile(profile_frames, None, model)
    patches = tile(profile_frames[0], 128).patches
    net = profile.feature_net(model)
    backend = TorchBackend(model, precision=profile.meta["precision"])
    probs, feats = net(patches)

    def timed(fn, repeats=10):
        fn()
        started = time.perf_counter()
        for _ in range(repeats):
            fn()
        return (time.perf_counter() - started) / repeats

    return {
        "network_backend_s": round(timed(lambda: backend.probabilities(patches)), 4),
        "network_plus_profile_one_pass_s": round(timed(lambda: profile.score(patches, model)), 4),
        "profile_only_s": round(timed(lambda: profile.score_features(probs, feats)), 4),
        "features_pass_only_s": round(timed(lambda: net(patches)), 4),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pblm", type=Path, default=PBLM)
    parser.add_argument("--per-folder", type=int, default=150, help="photos per defect folder at most")
    parser.add_argument("--frames", type=int, default=10, help="No_Defect photos profiled")
    parser.add_argument("--synth-layers", type=int, default=40, help="synthetic test layers per case")
    parser.add_argument("--draws", type=int, default=10, help="PBLM: random sets of --frames good photos profiled")
    parser.add_argument("--skip", choices=["pblm", "synth", "cost"], action="append", default=[])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(2)
    model, _ = load_model(default_model_path())
    results: dict = {"threads": torch.get_num_threads()}
    if "pblm" not in args.skip:
        if (args.pblm / "No_Defect").is_dir():
            results["pblm"] = pblm(model, args.pblm, args.per_folder, args.frames, 0, args.draws)
        else:
            print(f"PBLM not found at {args.pblm}: skipping the real-photo measurement", file=sys.stderr)
    if "synth" not in args.skip:
        results["synthetic"] = synthetic(model, args.synth_layers)
    if "cost" not in args.skip:
        plan = plan_build(SynthSettings(size=768, seed=11, layers=10, defect_rates={}, **UNSEEN_STYLE))
        results["layer_cost"] = layer_cost(model, [render_layer(plan, i).image for i in range(10)])
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print_summary(results)
    return 0


def print_summary(results: dict) -> None:
    if "pblm" in results:
        r = results["pblm"]
        print(
            f"PBLM: profile from {r['profile_frames']} No_Defect photos in {r['profile_seconds']} s; "
            f"{r['good_test_photos']} other good photos; defect photos {r['defect_photos']}"
        )
        for name, m in r["methods"].items():
            folders = ", ".join(f"{f[:14]} {m[f + '_flagged']:.0%}" for f in FOLDERS)
            print(f"  {name:58s} good flagged {m['good_flagged']:.0%}; {folders}; AUROC {m['auroc']:.3f}")
        for i, m in enumerate(r.get("random_draws", [])):
            folders = ", ".join(f"{f[:14]} {m[f + '_flagged']:.0%}" for f in FOLDERS)
            name = f"shipped, profiled from random draw {i} {m['profiled']}"
            print(f"  {name:58s} good flagged {m['good_flagged']:.0%}; {folders}; AUROC {m['auroc']:.3f}")
    if "synthetic" in results:
        r = results["synthetic"]
        print(
            f"synthetic unseen style: profile from 20 layers in {r['profile_seconds']} s, {r['test_layers']} test layers"
        )
        for case, c in r.items():
            if not isinstance(c, dict) or "tiles" not in c:
                continue
            print(f"  {case}: {c['sound']} sound tiles, {c['error_truth']} Error tiles")
            for name in ["network alone", *VARIANTS]:
                text = f"    {name:58s} false Error per 1000 sound tiles {1000 * c[name + ': false'] / c['sound']:.2f}"
                if c["error_truth"]:
                    text += f", Error recall {c[name + ': found'] / c['error_truth']:.3f}"
                print(text)
    if "layer_cost" in results:
        print("per 768x768 layer (s):", results["layer_cost"])


if __name__ == "__main__":
    sys.exit(main())
