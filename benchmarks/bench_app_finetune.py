"""Fine-tuning from the app on a camera style the model never saw (issue #18's yardstick).

.venv/bin/python benchmarks/bench_app_finetune.py [--model M] [--out DIR] [--epochs 15] [--lr 3e-4]

A synthetic build (`slmcnn synth --config`) whose camera look lies outside every training range
(dark powder, low contrast, strong gamma, grain and blur). 200 tiles of its first 10 layers are
labelled through the app's API (20 per layer, the classes of `slmcnn.labels`' rule on the masks,
Error and Object first as a person checking alerts would), the app fine-tunes the model in the
background, and the old and new models are scored on the build's other layers (tile accuracy,
ambiguous tiles left out). Also printed: the layer view's JSON and photo times for a 768x768 layer.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

import slmcnn
from slmcnn import images
from slmcnn.labels import NOT_A_CLASS, tile_labels
from slmcnn.tiles import geometry

UNSEEN = {  # every value outside SynthSettings' ranges
    "powder_level": [55, 70],
    "contrast": [0.35, 0.45],
    "gamma": [1.5, 1.7],
    "grain": [13, 16],
    "blur": [1.2, 1.6],
    "falloff": [0.65, 0.75],
    "light_gradient": [0.45, 0.55],
}


def truth(build: Path, path: Path) -> np.ndarray:
    mask = images.read(build / "masks" / path.name)[..., 0]
    return tile_labels(mask, geometry(*mask.shape[:2]), ambiguous=False)


def accuracy(model, paths: list[Path], build: Path) -> float:
    right = total = 0
    for result in slmcnn.predict_layers(paths, model, backend="torch"):
        labels = truth(build, result.path)
        kept = labels != NOT_A_CLASS
        right += int((result.tile_classes.ravel()[kept] == labels[kept]).sum())
        total += int(kept.sum())
    return right / total


def main() -> int:
    from fastapi.testclient import TestClient

    from slmcnn import cli
    from slmcnn.app.server import create_app
    from slmcnn.app.workspace import AppConfig

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model to fine-tune (default: the shipped model)")
    parser.add_argument("--out", default="/tmp/slmcnn-bench-app")
    parser.add_argument("--layers", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "unseen.json").write_text(json.dumps(UNSEEN))
    build = out / "build"
    synth = ["synth", build, "--layers", args.layers, "--seed", args.seed, "--config", out / "unseen.json"]
    if cli.main([str(a) for a in [*synth, "--force", "--no-patches"]]) != 0:
        return 1
    paths = sorted((build / "layers").iterdir())
    labelled, others = paths[:10], paths[10:]
    model_path = slmcnn.load_model(args.model).source
    for old in out.glob("labels*"):
        old.unlink() if old.is_file() else None
    config = AppConfig([], [build], model_path, labels=out / "labels.sqlite", token="t", user="bench")
    client, auth = TestClient(create_app(config), base_url="http://127.0.0.1"), {"X-Slmcnn-Token": "t"}
    set_id = client.post("/api/sets", json={"folder": "layers"}, headers=auth).json()["id"]
    rng, count = np.random.default_rng(0), 0
    timings = []
    for index, path in enumerate(labelled):
        start = time.perf_counter()
        client.get(f"/api/sets/{set_id}/layers/{index}")
        timings.append(time.perf_counter() - start)
        labels = truth(build, path)
        order = rng.permutation(len(labels))
        first = sorted(order, key=lambda i: (labels[i] == 0, labels[i] == NOT_A_CLASS))  # Error/Object first
        want = 20 * (index + 1) - count  # a layer with fewer clear tiles leaves its share to the next
        chosen = [int(i) for i in first if labels[i] != NOT_A_CLASS][:want]
        cells = [{"row": i // 6, "col": i % 6, "cls": int(labels[i])} for i in chosen]
        client.post(f"/api/sets/{set_id}/layers/{index}/labels", json={"labels": cells}, headers=auth)
        count += len(cells)
    print(f"labelled {count} tiles on {len(labelled)} layers through the API")
    start = time.perf_counter()
    client.post("/api/finetune", json={"epochs": args.epochs, "lr": args.lr}, headers=auth)
    while (state := client.get("/api/finetune").json())["state"] == "running":
        time.sleep(1)
    seconds = time.perf_counter() - start
    if state["state"] != "done":
        print(json.dumps(state, indent=1))
        return 1
    new = Path(state["run"]) / "model" / "model.safetensors"
    print(f"fine-tune: {state['epoch']} epochs in {seconds:.0f} s; in-app comparison {state['comparison']}")
    before, after = accuracy(model_path, others, build), accuracy(new, others, build)
    print(
        f"tile accuracy on the {len(others)} other layers: {before:.3f} -> {after:.3f} ({100 * (after - before):+.1f} points)"
    )
    # the layer view: a fresh 768x768 layer of a monitored build is timed in tests/test_app_browser.py
    print(f"layer JSON of a folder layer (classified on first view): median {1000 * np.median(timings):.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
