"""Synthetic build speed: layers per second at 768 x 768, with and without the patch data set.

.venv/bin/python benchmarks/bench_synth.py [--layers 40]
"""

import argparse
import tempfile
import time
from pathlib import Path

from slmcnn.synth import SynthSettings, generate_build


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--layers", type=int, default=40)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    for patches in (False, True):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            generate_build(
                SynthSettings(layers=args.layers, seed=7, write_patches=patches), Path(tmp) / "b", workers=args.workers
            )
            seconds = time.perf_counter() - start
        what = "layers + masks + patches" if patches else "layers + masks"
        print(f"{what:26s}: {args.layers / seconds:5.1f} layers/s ({args.workers} workers, 768 x 768)")


if __name__ == "__main__":
    main()
