"""The codecs of a layer's files, against their baselines in the same run: reading a layer photo
(PIL's block decoder, the baseline, against `images.read`'s whole-file OpenCV decode) and deflating
an overlay's PNG scanlines (zlib level 1, the baseline, against ISA-L level 1 as `pngstrips` does).
Both on synthetic 768x768 layers (PNG, and the same layers as JPEG); one thread; medians; the
decoded pixels and the inflated bytes are checked to be the same.

    .venv/bin/python benchmarks/bench_codecs.py [--layers 40] [--json]
"""

import argparse
import json
import statistics
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
from isal import isal_zlib
from PIL import Image

from slmcnn import images, render
from slmcnn.pngstrips import scanlines
from slmcnn.synth import SynthSettings, generate_build
from slmcnn.tiles import geometry, stitch_classes


def median_ms(fn, items: list, repeats: int = 3) -> float:
    """Median over `repeats` passes of the mean milliseconds per item."""
    passes = []
    for _ in range(repeats):
        started = time.perf_counter()
        for item in items:
            fn(item)
        passes.append(1000 * (time.perf_counter() - started) / len(items))
    return statistics.median(passes)


def pil_read(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        img.load()
        return np.asarray(img)


def deflate(module, level: int):
    def run(data: bytes) -> bytes:
        coder = module.compressobj(level, module.DEFLATED, -15)
        return coder.compress(data) + coder.flush()

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=40)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="slmcnn-codecs-") as name:
        build = Path(name) / "build"
        generate_build(SynthSettings(layers=args.layers, seed=17, jpeg_share=0.0, write_patches=False), build)
        pngs = sorted((build / "layers").glob("*.png"))
        jpegs = []
        for path in pngs:
            jpegs.append(path.with_suffix(".jpg"))
            Image.open(path).save(jpegs[-1], quality=90)
        figures: dict = {"layers": len(pngs)}
        for kind, paths in (("png", pngs), ("jpeg", jpegs)):
            for path in paths[:5]:
                np.testing.assert_array_equal(images.read(path), images.as_rgb(pil_read(path)))
            figures[f"read_{kind}_pil_ms"] = median_ms(pil_read, paths)
            figures[f"read_{kind}_slmcnn_ms"] = median_ms(images.read, paths)
            figures[f"read_{kind}_speedup"] = figures[f"read_{kind}_pil_ms"] / figures[f"read_{kind}_slmcnn_ms"]
        where = geometry(768, 768, 128)
        rng = np.random.default_rng(0)
        lines = []
        for path in pngs:
            classes = stitch_classes(where, rng.dirichlet(np.ones(3), where.count).astype(np.float32))
            lines.append(scanlines(render.overlay(images.read(path), classes)).tobytes())
        for label, module in (("zlib", zlib), ("isal", isal_zlib)):
            coder = deflate(module, 1)
            assert zlib.decompress(coder(lines[0]), -15) == lines[0]
            figures[f"deflate_{label}_ms"] = median_ms(coder, lines)
            figures[f"deflate_{label}_kb"] = float(np.mean([len(coder(data)) for data in lines]) / 1000)
        figures["deflate_speedup"] = figures["deflate_zlib_ms"] / figures["deflate_isal_ms"]
        figures["overlay_mb"] = len(lines[0]) / 1e6
    if args.json:
        print(json.dumps(figures, indent=1))
        return
    for kind in ("png", "jpeg"):
        print(
            f"read a 768x768 {kind.upper()}: PIL {figures[f'read_{kind}_pil_ms']:.2f} ms, slmcnn "
            f"{figures[f'read_{kind}_slmcnn_ms']:.2f} ms ({figures[f'read_{kind}_speedup']:.2f}x)"
        )
    print(
        f"deflate an overlay's scanlines ({figures['overlay_mb']:.2f} MB): zlib level 1 {figures['deflate_zlib_ms']:.2f} "
        f"ms {figures['deflate_zlib_kb']:.0f} KB, ISA-L level 1 {figures['deflate_isal_ms']:.2f} ms "
        f"{figures['deflate_isal_kb']:.0f} KB ({figures['deflate_speedup']:.2f}x)"
    )


if __name__ == "__main__":
    main()
