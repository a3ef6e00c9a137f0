"""Issue #20's unseen-camera figures, on synthetic stand-ins for those cameras.

.venv/bin/python benchmarks/bench_styles.py [--model M ...] [--builds N] [--layers N] [--style S ...] [--json]

The three real cameras issue #20 is judged on are not ours to see; their measured statistics are
(../shared/reference/real-camera-stats.md). Each style here renders `slmcnn synth` layers within
those statistics (printed beside the real ranges, so the reader sees how close the stand-in is)
and measures the issue's own figures on them, for each model given:
- sound layers (no defect drawn): tiles called Error; tiles with >= 5% part called Object (recall);
  tiles called Object that hold any part (precision);
- layers with defects: tiles holding a defect called Error (found); tiles of those layers holding
  none called Error.
Defects are the kinds each camera showed. A stand-in drawn by our own generator is not the camera:
read its figures as hints (benchmarks/README.md sets v3's figures here beside its figures on the
real cameras).
"""

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_real import Classifier  # noqa: E402

from slmcnn.errors import SlmcnnError  # noqa: E402
from slmcnn.labels import ERROR, OBJECT  # noqa: E402
from slmcnn.synth.build import SynthSettings, plan_build, render_layer  # noqa: E402
from slmcnn.synth.defects import DEFECT_KINDS  # noqa: E402
from slmcnn.synth.stats import camera_stats  # noqa: E402
from slmcnn.tiles import cut, geometry  # noqa: E402

PATCH = 128
OBJECT_MIN = 0.05  # the "tiles with >= 5% part"
STYLES: dict[str, dict] = {
    "reference": {
        "about": "the reference machine: 768x768, after recoating, bright, PNG",
        # its errors: vertical streaks, a large ridged raised region, swelling crescents, drag stubs
        "defects": {"streak": 0.2, "ridge": 0.1, "swelling": 0.2, "debris": 0.2},
        "real": {"centre": (200, 235), "grain_std": (3.0, 6.9)},
        "settings": {
            "size": 768,
            "after_exposure": (0.0, 0.0),
            "powder_level": (200.0, 230.0),
            "grain": (4.0, 8.0),
            "blur": (0.0, 0.4),
            "contrast": (0.9, 1.1),
            "jpeg_share": 0.0,
            "walls_share": 0.0,
        },
    },
    "after-exposure": {
        "about": "a top-down camera after exposure: 750x750 gray, powder about 128, melted tops 50-120 brighter",
        "defects": {},  # measured on sound layers only; the generator's default defects otherwise
        "real": {"mean": (128, 129), "grain_std": (2.7, 5.1)},
        "settings": {
            "size": 750,
            "after_exposure": (1.0, 1.0),
            "powder_level": (125.0, 135.0),
            "melt_brightness": (50.0, 120.0),
            "parts": (2, 6),  # small parts: 0.4-2.6% of the bed is part on that camera
            "tile_mm": (25.0, 40.0),
            "part_kinds": ("circle", "square", "ring", "triangle", "text", "pins", "cylinders", "irregular"),
            "grain": (2.0, 3.5),
            "blur": (0.0, 0.4),
            "contrast": (0.9, 1.1),
            "jpeg_share": 0.0,
            "walls_share": 0.0,
        },
    },
    "angled": {
        "about": "an angled camera with the machine frame in view: 1024 px, grainy, bed about 185",
        # its marked defects: holes, spatter, horizontal and vertical lines (mostly specks)
        "defects": {"hole": 0.3, "spatter": 0.3, "spread_line": 0.15, "streak": 0.15},
        "real": {"centre": (185, 186), "grain_std": (7.1, 7.3)},
        "settings": {
            "size": 1024,
            "powder_level": (180.0, 190.0),
            "grain": (8.0, 10.0),
            "blur": (0.0, 0.3),
            "contrast": (0.9, 1.1),
            "walls_share": 1.0,
        },
    },
}


def style_settings(style: str, seed: int, layers: int, defects: bool) -> SynthSettings:
    settings = SynthSettings(layers=layers, seed=seed, direction="random", write_patches=False)
    settings = replace(settings, **STYLES[style]["settings"])
    if not defects:
        return replace(settings, defect_rates={})
    chosen = STYLES[style]["defects"]
    return (
        replace(settings, defect_rates={kind: chosen.get(kind, 0.0) for kind in DEFECT_KINDS}) if chosen else settings
    )


def render_style(style: str, builds: int, layers: int, seed: int = 9000) -> list[dict]:
    """Layers of `builds` sound builds and `builds` builds with defects: image, mask, sound flag."""
    rendered = []
    for b in range(2 * builds):
        defects = b >= builds
        plan = plan_build(style_settings(style, seed + b, layers, defects))
        for layer in range(1, layers + 1):
            out = render_layer(plan, layer)
            rendered.append({"image": out.image, "mask": out.mask[..., None], "sound": not defects})
    return rendered


def tile_facts(rendered: list[dict]) -> list[dict]:
    """Per layer: its tiles and, per tile, the part share and whether any defect pixel is there."""
    facts = []
    for item in rendered:
        where = geometry(*item["image"].shape[:2], PATCH)
        masks = cut(item["mask"], where).reshape(-1, PATCH * PATCH)
        facts.append(
            {
                "patches": cut(item["image"], where),
                "part": (masks == OBJECT).mean(1),
                "defect": (masks == ERROR).any(1),
                "sound": item["sound"],
            }
        )
    return facts


def counts(facts: list[dict]) -> dict:
    """How many tiles each figure is measured on."""
    sound = [f for f in facts if f["sound"]]
    return {
        "sound_tiles": sum(len(f["part"]) for f in sound),
        "object_tiles": int(sum((f["part"] >= OBJECT_MIN).sum() for f in sound)),
        "defect_tiles": int(sum(f["defect"].sum() for f in facts if not f["sound"])),
    }


def measure(classifier: Classifier, facts: list[dict]) -> dict:
    """The issue's figures for one model on one style's layers."""
    pred = [classifier.probabilities(f["patches"]).argmax(1) for f in facts]
    sound = [(f, p) for f, p in zip(facts, pred) if f["sound"]]
    faulty = [(f, p) for f, p in zip(facts, pred) if not f["sound"]]
    part = np.concatenate([f["part"] for f, _ in sound])
    called = np.concatenate([p for _, p in sound])
    defect = np.concatenate([f["defect"] for f, _ in faulty]) if faulty else np.zeros(0, bool)
    called_faulty = np.concatenate([p for _, p in faulty]) if faulty else np.zeros(0, int)

    def share(hits: np.ndarray) -> float | None:
        return float(hits.mean()) if len(hits) else None

    return {
        "sound_called_error": share(called == ERROR),
        "object_recall": share(called[part >= OBJECT_MIN] == OBJECT),
        "object_precision": share(part[called == OBJECT] > 0),
        "defect_found": share(called_faulty[defect] == ERROR),
        "unmarked_called_error": share(called_faulty[~defect] == ERROR),
    }


def look(style: str, rendered: list[dict]) -> dict:
    """The stand-in's own statistics, to set beside the real camera's measured ranges."""
    stats = [camera_stats(r["image"]) for r in rendered if r["sound"]]
    return {key: (min(s[key] for s in stats), max(s[key] for s in stats)) for key in STYLES[style]["real"]}


def _pct(value: float | None) -> str:
    return "   -  " if value is None else f"{100 * value:5.1f}%"


def print_style(style: str, result: dict) -> None:
    real, seen = STYLES[style]["real"], result["look"]
    print(f"{style}: {STYLES[style]['about']}")
    shown = ", ".join(f"{key} {seen[key][0]:.1f}-{seen[key][1]:.1f} (real {lo}-{hi})" for key, (lo, hi) in real.items())
    print(
        f"  stand-in {shown}; {result['sound_tiles']} sound tiles, {result['object_tiles']} with >= 5% part, "
        f"{result['defect_tiles']} holding a defect"
    )
    width = max(28, *(len(name) for name in result["models"]))
    print(
        f"  {'model':{width}s} {'sound: Error':>12s} {'Obj recall':>10s} {'Obj prec':>9s} {'defects found':>13s} {'unmarked: Error':>15s}"
    )
    for name, m in result["models"].items():
        print(
            f"  {name:{width}s} {_pct(m['sound_called_error']):>12s} {_pct(m['object_recall']):>10s} "
            f"{_pct(m['object_precision']):>9s} {_pct(m['defect_found']):>13s} {_pct(m['unmarked_called_error']):>15s}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", help="model file (repeat to compare; default: the shipped one)")
    parser.add_argument("--builds", type=int, default=4, help="sound builds and builds with defects, per style")
    parser.add_argument("--layers", type=int, default=6, help="layers per build")
    parser.add_argument("--style", action="append", choices=sorted(STYLES), help="default: every style")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON instead")
    args = parser.parse_args(argv)
    if args.builds < 1 or args.layers < 1:
        parser.error("--builds and --layers must be at least 1")
    try:
        classifiers = {m or "shipped": Classifier(m) for m in args.model or [None]}
    except SlmcnnError as err:
        raise SystemExit(f"bench_styles.py: {err}") from None
    results = {}
    for style in args.style or list(STYLES):
        started = time.perf_counter()
        rendered = render_style(style, args.builds, args.layers)
        facts = tile_facts(rendered)
        results[style] = {
            "look": look(style, rendered),
            **counts(facts),
            "models": {name: measure(c, facts) for name, c in classifiers.items()},
            "seconds": round(time.perf_counter() - started, 1),
        }
        if not args.json:
            print_style(style, results[style])
    if args.json:
        print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
