"""Fine-tuning from the app on a camera style the model never saw, and what active labelling buys.

.venv/bin/python benchmarks/bench_app_finetune.py [--model M] [--out DIR] [--epochs 15] [--lr 3e-4]
    [--arms first200,random200,active100] [--seeds 7,8] [--anchors 0.01]

A synthetic build (`slmcnn synth --config`) whose camera look lies outside every training range
(dark powder, low contrast, strong gamma, grain and blur), one per seed. Tiles of its first 10
layers are labelled through the app's API with the classes of `slmcnn.labels`' rule on the masks
(ambiguous tiles are never labelled), chosen by each arm:
- first200: 20 per layer, Error and Object tiles first (a person checking alerts; issue #18's arm)
- randomN: N tiles drawn at random among the clear tiles of the 10 layers
- activeN: the N tiles the app proposes (`GET /api/sets/ID/proposals`, app.proposals), the clear ones
Then the app fine-tunes the model in the background (with each `--anchors` value, the L2-SP pull
toward the model in use, and `--rehearsal` tiles of the shipped training distribution mixed in), and the old and new models are scored on the build's other layers:
tile accuracy, Error recall and false alarms (Error on tiles the rule calls Powder or Object).
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

import slmcnn
from slmcnn import images
from slmcnn.constants import ERROR
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
LABELLED_LAYERS = 10


def truth(build: Path, path: Path) -> np.ndarray:
    mask = images.read(build / "masks" / path.name)[..., 0]
    return tile_labels(mask, geometry(*mask.shape[:2]), ambiguous=False)


def score(model, paths: list[Path], build: Path) -> dict:
    """Tile accuracy, Error recall and false alarms on layers no label came from."""
    right = total = found = errors = false = sound = 0
    for result in slmcnn.predict_layers(paths, model, backend="torch"):
        labels = truth(build, result.path)
        kept = labels != NOT_A_CLASS
        said = result.tile_classes.ravel()[kept]
        labels = labels[kept]
        right, total = right + int((said == labels).sum()), total + int(kept.sum())
        found, errors = found + int(((said == ERROR) & (labels == ERROR)).sum()), errors + int((labels == ERROR).sum())
        false, sound = false + int(((said == ERROR) & (labels != ERROR)).sum()), sound + int((labels != ERROR).sum())
    return {
        "accuracy": right / total,
        "error_recall": found / max(errors, 1),
        "error_tiles": errors,
        "false_alarms": false / max(sound, 1),
    }


def make_build(out: Path, seed: int, layers: int) -> Path:
    from slmcnn import cli

    (out / "unseen.json").write_text(json.dumps(UNSEEN))
    build = out / f"build-{seed}"
    if not (build / "layers").is_dir():
        synth = ["synth", build, "--layers", layers, "--seed", seed, "--config", out / "unseen.json", "--no-patches"]
        if cli.main([str(a) for a in synth]) != 0:
            raise SystemExit(1)
    labelled = build / "labelled"  # the layers labels may come from: the app's folder set
    labelled.mkdir(exist_ok=True)
    for path in sorted((build / "layers").iterdir())[:LABELLED_LAYERS]:
        if not (labelled / path.name).exists():
            (labelled / path.name).write_bytes(path.read_bytes())
    return build


def choose(arm: str, client, set_id: str, build: Path, paths: list[Path], rng) -> dict[int, list[tuple[int, int, int]]]:
    """Per layer index, the (row, col, class) to label for one arm."""
    kind, count = arm.rstrip("0123456789"), int(arm[len(arm.rstrip("0123456789")) :])
    labels = [truth(build, p) for p in paths]
    cols = 6
    chosen: dict[int, list] = {}
    if kind == "first":
        total = 0
        for index, tiles in enumerate(labels):
            order = rng.permutation(len(tiles))
            first = sorted(order, key=lambda i: (tiles[i] == 0, tiles[i] == NOT_A_CLASS))  # Error/Object first
            want = count // len(paths) * (index + 1) - total  # a layer with fewer clear tiles leaves its share on
            picked = [int(i) for i in first if tiles[i] != NOT_A_CLASS][:want]
            chosen[index] = [(i // cols, i % cols, int(tiles[i])) for i in picked]
            total += len(picked)
    elif kind == "random":
        clear = [(index, int(i)) for index, tiles in enumerate(labels) for i in np.flatnonzero(tiles != NOT_A_CLASS)]
        for k in rng.choice(len(clear), size=min(count, len(clear)), replace=False):
            index, i = clear[k]
            chosen.setdefault(index, []).append((i // cols, i % cols, int(labels[index][i])))
    elif kind == "active":
        got = 0
        for t in client.get(f"/api/sets/{set_id}/proposals", params={"count": 2 * count}).json():
            cls = int(labels[t["index"]][t["row"] * cols + t["col"]])
            if cls != NOT_A_CLASS and got < count:
                chosen.setdefault(t["index"], []).append((t["row"], t["col"], cls))
                got += 1
    else:
        raise SystemExit(f"unknown arm {arm}: first<N>, random<N> or active<N>")
    return chosen


def run_arm(args, build: Path, arm: str, anchor: float, seed: int) -> dict:
    """Label one arm's tiles through the app, fine-tune there, score old and new on the other layers."""
    from fastapi.testclient import TestClient

    from slmcnn.app.server import create_app
    from slmcnn.app.workspace import AppConfig

    labelled = sorted((build / "labelled").iterdir())
    others = sorted((build / "layers").iterdir())[LABELLED_LAYERS:]
    model_path = slmcnn.load_model(args.model).source
    work = Path(args.out) / f"{build.name}-{arm}-a{anchor:g}-r{args.rehearsal}"
    (work / "labels.sqlite").unlink(missing_ok=True)
    config = AppConfig([], [build], model_path, labels=work / "labels.sqlite", token="t", user="bench")
    app = create_app(config)
    app.state.workspace.finetune.anchor = anchor
    app.state.workspace.finetune.rehearsal = args.rehearsal
    client, auth = TestClient(app, base_url="http://127.0.0.1"), {"X-Slmcnn-Token": "t"}
    set_id = client.post("/api/sets", json={"folder": "labelled"}, headers=auth).json()["id"]
    rng = np.random.default_rng(seed)
    chosen = choose(arm, client, set_id, build, labelled, rng)
    for index, cells in chosen.items():
        body = {"labels": [{"row": r, "col": c, "cls": cls} for r, c, cls in cells]}
        client.post(f"/api/sets/{set_id}/layers/{index}/labels", json=body, headers=auth)
    count = sum(map(len, chosen.values()))
    classes = np.bincount([cls for cells in chosen.values() for *_, cls in cells], minlength=3).tolist()
    start = time.perf_counter()
    client.post("/api/finetune", json={"epochs": args.epochs, "lr": args.lr}, headers=auth)
    while (state := client.get("/api/finetune").json())["state"] == "running":
        time.sleep(1)
    if state["state"] != "done":
        print(json.dumps({k: state[k] for k in ("state", "message")}))
        raise SystemExit(1)
    new = Path(state["run"]) / "model" / "model.safetensors"
    row = {
        "build": build.name,
        "arm": arm,
        "anchor": anchor,
        "rehearsal": args.rehearsal,
        "labels": count,
        "classes": classes,
    }
    row.update(seconds=round(time.perf_counter() - start), epochs=state["epoch"])
    row["before"], row["after"] = score(model_path, others, build), score(new, others, build)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model to fine-tune (default: the shipped model)")
    parser.add_argument("--out", default="/tmp/slmcnn-bench-app")
    parser.add_argument("--layers", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--seeds", default="7,8", help="one synthetic build per seed (also the random draws)")
    parser.add_argument("--arms", default="random200,active100")
    parser.add_argument("--anchors", default="0.01", help="L2-SP strengths to fine-tune with (0: none)")
    parser.add_argument(
        "--rehearsal", type=int, default=150, help="tiles of the training distribution mixed in (0: none)"
    )
    parser.add_argument("--json", help="also write every row here")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for seed in map(int, args.seeds.split(",")):
        build = make_build(out, seed, args.layers)
        for arm in args.arms.split(","):
            for anchor in map(float, args.anchors.split(",")):
                row = run_arm(args, build, arm, anchor, seed)
                rows.append(row)
                b, a = row["before"], row["after"]
                print(
                    f"{row['build']} {arm:>10} anchor {anchor:<5g} rehearsal {args.rehearsal} {row['labels']:3d} labels {row['classes']} "
                    f"({row['epochs']} epochs, {row['seconds']} s): accuracy {b['accuracy']:.3f} -> {a['accuracy']:.3f}, "
                    f"Error recall {b['error_recall']:.3f} -> {a['error_recall']:.3f} of {a['error_tiles']}, "
                    f"false alarms {b['false_alarms']:.3f} -> {a['false_alarms']:.3f}",
                    flush=True,
                )
    print("\nmean over the builds (after the fine-tune):")
    for arm in args.arms.split(","):
        for anchor in map(float, args.anchors.split(",")):
            mine = [r["after"] for r in rows if r["arm"] == arm and r["anchor"] == anchor]
            print(
                f"  {arm:>10} anchor {anchor:<5g}: accuracy {np.mean([m['accuracy'] for m in mine]):.3f}, "
                f"Error recall {np.mean([m['error_recall'] for m in mine]):.3f}, "
                f"false alarms {np.mean([m['false_alarms'] for m in mine]):.3f}"
            )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
