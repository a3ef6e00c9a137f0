"""Re-make examples/: a few synthetic layers (gray PNG, small) with their masks, chosen to show
every defect type. Run: .venv/bin/python scripts/make_examples.py"""

import json
import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np

from slmcnn import CLASSES
from slmcnn.labels import NOT_A_CLASS, LabelRule, tile_labels
from slmcnn.synth import SynthSettings, generate_build
from slmcnn.tiles import tile

ROOT = Path(__file__).resolve().parents[1]
SEED, LAYERS, PICK = 4242, 60, 6


def write_patches(build: Path, layers: list[int], out: Path, per_class: int = 2) -> None:
    """A tiny class-folder data set (unambiguous patches of the chosen layers) for predict-patches."""
    rule, found = LabelRule(), {c: 0 for c in CLASSES}
    for number in layers:
        name = f"{number:05d}.png"
        image = cv2.imread(str(build / "layers" / name), cv2.IMREAD_GRAYSCALE)
        mask = cv2.imread(str(build / "masks" / name), cv2.IMREAD_GRAYSCALE)
        grid = tile(image[:, :, None], 128)
        patches, labels = grid.patches, tile_labels(mask, grid.geometry, rule, ambiguous=False)
        for index in np.flatnonzero(labels != NOT_A_CLASS):
            label = CLASSES[labels[index]]
            if found[label] < per_class and (label == "Error" or number == layers[-1] or found[label] == 0):
                (out / label).mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(out / label / f"l{number:05d}_t{index:02d}.png"), patches[index])
                found[label] += 1


def main() -> None:
    out = ROOT / "examples"
    with tempfile.TemporaryDirectory() as tmp:
        build = Path(tmp) / "build"
        info = generate_build(SynthSettings(layers=LAYERS, seed=SEED, write_patches=False), build, workers=2)
        chosen, seen = [], set()
        for layer in info["layers"]:  # first the layers that add a defect type not yet shown
            kinds = {d["type"] for d in layer["defects"]} - seen
            if kinds and len(chosen) < PICK - 1:
                chosen.append(layer["layer"])
                seen |= kinds
        chosen.append(next(layer["layer"] for layer in info["layers"] if not layer["defects"]))
        for name in ("layers", "masks", "patches"):
            shutil.rmtree(out / name, ignore_errors=True)
            (out / name).mkdir(parents=True)
        for number in sorted(chosen):
            name = f"{number:05d}.png"
            gray = cv2.imread(str(build / "layers" / name), cv2.IMREAD_GRAYSCALE)
            cv2.imwrite(str(out / "layers" / name), gray, [cv2.IMWRITE_PNG_COMPRESSION, 9])
            shutil.copy(build / "masks" / name, out / "masks" / name)
        write_patches(build, sorted(chosen), out / "patches")
        keep = [layer for layer in info["layers"] if layer["layer"] in chosen]
        (out / "build.json").write_text(json.dumps({**info, "layers": keep, "seconds": None}, indent=1))
    print(f"examples: layers {sorted(chosen)}, defect types {sorted(seen)}")


if __name__ == "__main__":
    main()
