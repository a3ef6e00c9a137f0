"""Compare synthetic layers with the measured statistics of real layer photos (real-camera-stats.md).

Renders one defect-free layer for each of N seeds (each seed draws its own camera) and prints, per
measure, the synthetic range, the real range and how many seeds fall inside it. Optionally also
measures real photos given on the command line (any size; use straightened beds).

    .venv/bin/python scripts/realism_check.py [--seeds 20] [photo.png ...]
"""

import argparse

from slmcnn.images import read
from slmcnn.synth.build import SynthSettings, plan_build, render_layer
from slmcnn.synth.stats import REAL_RANGES, camera_stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("photos", nargs="*")
    args = parser.parse_args()
    rows = [
        camera_stats(render_layer(plan_build(SynthSettings(layers=2, seed=s, defect_rates={})), 2).image)
        for s in range(args.seeds)
    ]
    photos = [camera_stats(read(p)) for p in args.photos]
    print(
        f"{'measure':16s} {'synthetic':>15s} {'real (stats.md)':>17s} {'inside':>7s}" + ("  photos" if photos else "")
    )
    for key, (lo, hi) in REAL_RANGES.items():
        values = [r[key] for r in rows]
        inside = sum(lo <= v <= hi for v in values)
        shown = " ".join(f"{p[key]:.1f}" for p in photos)
        print(
            f"{key:16s} {min(values):6.1f} - {max(values):6.1f} {lo:7.1f} - {hi:6.1f} {inside:4d}/{len(values)}  {shown}"
        )


if __name__ == "__main__":
    main()
