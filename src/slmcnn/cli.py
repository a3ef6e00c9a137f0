"""The `slmcnn` command: one small function per subcommand; each parses, calls a module, prints."""

import argparse
import json
import sys
from pathlib import Path

from slmcnn import CLASSES, __version__
from slmcnn.errors import SlmcnnError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="slmcnn", description="Powder-bed monitoring for selective laser melting.")
    parser.add_argument("--version", action="version", version=f"slmcnn {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str, example: str):
        p = sub.add_parser(
            name,
            help=help_text,
            description=f"{help_text}\n\nexample:\n  {example}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.set_defaults(handler=globals()[f"cmd_{name.replace('-', '_')}"])
        return p

    p = command(
        "train",
        "Train the CNN on labelled patches (class folders, reference CSV or a synth build).",
        "slmcnn train builds/train --val builds/val --out runs/first --epochs 30",
    )
    p.add_argument(
        "data",
        nargs="+",
        help="class folders Powder/ Object/ Error/, an Image;Label CSV, a split.csv or a synth build (several are joined)",
    )
    p.add_argument("--out", required=True, help="run folder for the model, curves and reports")
    p.add_argument("--val", nargs="+", help="separate validation data (default: a by-layer split of DATA)")
    p.add_argument("--test", nargs="+", help="separate test data (default: a by-layer split of DATA)")
    p.add_argument("--arch", default="slmcnn", help="network: slmcnn (the reference) or slmcnn-tiny")
    p.add_argument("--epochs", type=int, default=150)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument(
        "--schedule",
        choices=["constant", "cosine"],
        default="constant",
        help="learning rate: constant (the reference) or cosine decay to 0 over --epochs",
    )
    p.add_argument("--patience", type=int, default=20, help="early stopping on validation accuracy")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--runs", type=int, default=1, help="train N times (seeds seed..seed+N-1), report mean ± std")
    p.add_argument("--class-weights", choices=["balanced", "none"], default="balanced")
    p.add_argument("--no-flips", action="store_true", help="turn off random horizontal/vertical flips")
    p.add_argument(
        "--turns",
        action="store_true",
        help="also random quarter turns (all 8 mirror/rotation views): for data whose recoater direction varies",
    )
    p.add_argument(
        "--augment",
        choices=["none", "camera"],
        default="none",
        help="camera: draw each training patch as another camera might see it (gamma, exposure clipping, "
        "light gradient, grain, blur, JPEG); for models that must read cameras they were not trained on",
    )
    p.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16"],
        default="auto",
        help="auto: bf16 autocast where the CPU has native bf16, else fp32",
    )
    p.add_argument("--init", help="start from this model file (fine-tuning)")
    p.add_argument("--resize", action="store_true", help="scale patches that are not the model's size")
    p.add_argument("--quiet", action="store_true", help="no progress bars")

    p = command(
        "evaluate",
        "Score a model on labelled patches: the reference's table and a confusion matrix.",
        "slmcnn evaluate runs/first/model.safetensors builds/test --format md",
    )
    p.add_argument("model")
    p.add_argument("data", nargs="+")
    p.add_argument(
        "--split",
        choices=["all", "train", "val", "test"],
        default="all",
        help="evaluate one part of DATA's by-layer split (seed --seed)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--format", choices=["text", "md", "json"], default="text")
    p.add_argument("--out", help="folder for confusion_matrix.png and report.json")
    p.add_argument("--resize", action="store_true")

    p = command(
        "synth",
        "Generate a synthetic build: layer photos, label masks, patches and build.json.",
        "slmcnn synth builds/demo --layers 20 --seed 1 --preview",
    )
    p.add_argument("out")
    p.add_argument("--layers", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=768)
    p.add_argument("--patch", type=int, default=128)
    p.add_argument("--direction", default="down", help="recoater travel: down, up, left, right or random")
    p.add_argument("--defects", help="per-layer start rates, e.g. streak=0.2,debris=0 (others keep defaults)")
    p.add_argument("--error-min-pixels", type=int, default=120, help="label rule: error pixels that make a patch Error")
    p.add_argument(
        "--object-min-fraction", type=float, default=0.05, help="label rule: part share that makes a patch Object"
    )
    p.add_argument("--keep-ambiguous", action="store_true", help="also write patches the rule calls ambiguous")
    p.add_argument("--no-patches", action="store_true", help="write layers and masks only")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--preview", action="store_true", help="also write preview.png, a contact sheet")
    p.add_argument("--live", action="store_true", help="write one layer at a time (atomic rename)")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between layers with --live")
    p.add_argument("--force", action="store_true", help="replace a previous build in OUT")
    p.add_argument("--parts", help="part kinds to draw, e.g. circle,ring,lattice (default: all)")
    p.add_argument(
        "--config",
        help="JSON file overriding any generator setting, e.g. "
        '{"grain": [3, 5], "falloff": [0.1, 0.2], "perspective": 0.0, "parts": [2, 6]}',
    )
    p = command(
        "predict-layer",
        "Classify whole layer photos into powder / object / error maps and overlays.",
        "slmcnn predict-layer examples/layers/*.png --out out/ --stride 64 --truth examples/masks",
    )
    p.add_argument(
        "inputs", nargs="+", metavar="INPUT", help="image files, folders or globs (PNG, JPEG, TIFF; 8/16 bit)"
    )
    p.add_argument("--out", required=True, help="output folder (files of the same name are replaced, nothing else)")
    p.add_argument("--model", help="model file (default: the shipped model)")
    p.add_argument("--patch", type=int, help="tile size (default: the model's, 128)")
    p.add_argument(
        "--stride",
        type=int,
        help="tile step (default: patch, no overlap; 64 = 50%% overlap, where a "
        "pixel's class is the mean of the covering tiles' probabilities). When a side is not a multiple "
        "of the stride, one more tile is placed flush with the far edge, so nothing is cropped",
    )
    p.add_argument("--truth", help="folder of label masks (as slmcnn synth writes) to score each layer")
    p.add_argument("--html", action="store_true", help="also write DIR/index.html: each layer beside its overlay")
    p.add_argument("--explain", action="store_true", help="also write <stem>.attribution.png (IG over all tiles)")
    p.add_argument("--steps", type=int, default=32, help="IG steps with --explain")
    _backend_options(p)

    p = command(
        "predict-patches",
        "Classify patch images; with --explain draw Integrated Gradients figures.",
        "slmcnn predict-patches data/Patches --explain --out figures/",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="patch images, folders, or a class-folder data set")
    p.add_argument("--model", help="model file (default: the shipped model)")
    p.add_argument("--out", help="folder for IG figures (default: ig-figures)")
    p.add_argument("--json", action="store_true", help="print results as JSON")
    p.add_argument("--explain", action="store_true", help="write a 2x2 Integrated Gradients figure per patch")
    p.add_argument(
        "--steps",
        type=int,
        help="IG gradient evaluations (default 176 with the adaptive rule: more converged than the reference's "
        "500 trapezoid steps)",
    )
    p.add_argument(
        "--ig-precision",
        choices=["fp32", "bf16"],
        default="fp32",
        help="bf16 is about 1.7x faster on CPUs with native bf16, but its attributions are about 2%% off the "
        "converged ones (fp32: under 0.5%%); it needs a fixed --method such as gausslegendre",
    )
    p.add_argument(
        "--method",
        default="adaptive",
        choices=["adaptive", "gausslegendre", "riemann_trapezoid", "riemann_middle", "riemann_left", "riemann_right"],
        help="IG quadrature: adaptive (trapezoid rule on a path grid refined where its error is largest) or one "
        "of captum's rules (riemann_trapezoid is the reference's)",
    )
    p.add_argument("--target", help="explain this class instead of the predicted one")
    p.add_argument("--baseline", default="black", choices=["black", "blur", "noise"])
    p.add_argument("--resize", action="store_true", help="scale patches that are not the model's size")
    _backend_options(p, camera=False)

    p = command(
        "export",
        "Export a model to ONNX and check it against PyTorch.",
        "slmcnn export runs/first/model.safetensors --format onnx --out model.onnx",
    )
    p.add_argument("model", nargs="?", help="model file (default: the shipped model)")
    p.add_argument("--format", choices=["onnx"], default="onnx")
    p.add_argument("--out", help="output file (default: MODEL with .onnx)")
    p.add_argument(
        "--check", nargs="*", default=[], metavar="IMAGE", help="also compare on these patch or layer images"
    )
    p = command(
        "calibrate",
        "Find the bed in a raw camera frame and write a calibration with a preview.",
        "slmcnn calibrate frame.jpg --out camera.json --ignore 100,100,200,100,200,200,100,200",
    )
    p.add_argument("frame", help="a raw camera frame showing the bed")
    p.add_argument("--out", default="camera.json")
    p.add_argument("--corners", help="x1,y1,...,x4,y4 clockwise from top-left, instead of detecting them")
    p.add_argument("--size", type=int, default=768, help="side of the straightened bed in pixels")
    p.add_argument("--bed-mm", type=float, help="side of the bed in mm, so reports can speak in mm")
    p.add_argument(
        "--ignore",
        action="append",
        default=[],
        metavar="X1,Y1,X2,Y2,...",
        help="a polygon (raw-frame pixels) to ignore; may be repeated",
    )
    p.add_argument("--force", action="store_true", help="replace an existing calibration file")

    p = command(
        "monitor",
        "Follow a running build: classify each new layer, store it, raise alerts.",
        "slmcnn monitor /machine/camera --db build.sqlite --out live/ --on-alert 'notify-send $SLMCNN_ALERT_MESSAGE'",
    )
    p.add_argument("watch_dir")
    p.add_argument("--db", required=True, help="SQLite file, or an SQLAlchemy URL such as postgresql://host/db")
    p.add_argument("--out", help="folder for overlays and alerts.jsonl")
    p.add_argument("--model", help="model file (default: the shipped model)")
    p.add_argument("--pattern", help="regex whose first group is the layer number (default: last number in the name)")
    p.add_argument("--settle", type=float, default=0.5, help="seconds a file's size must stay unchanged")
    p.add_argument("--poll", action="store_true", help="poll the folder instead of OS events (network shares)")
    p.add_argument("--retries", type=int, default=3, help="tries for an unreadable layer before it is marked failed")
    p.add_argument(
        "--alert-error-fraction",
        type=float,
        default=0.02,
        help="alert when a layer's error share reaches this (<0: off)",
    )
    p.add_argument(
        "--alert-persist", type=int, default=3, help="alert when a tile is Error this many layers running (0: off)"
    )
    p.add_argument("--no-alert-near-part", action="store_true", help="no alert for error tiles touching a part")
    p.add_argument(
        "--alert-jump",
        type=float,
        default=0.1,
        help="alert when the error share jumps this much over recent layers (<0: off)",
    )
    p.add_argument("--on-alert", help="shell command run per alert; fields in SLMCNN_ALERT_* variables")
    p.add_argument("--on-alert-timeout", type=float, default=10.0)
    p.add_argument("--exit-when-idle", type=float, help="stop after this many seconds without a new layer")
    _backend_options(p)

    p = command(
        "report",
        "Write a self-contained HTML report of a monitored build.",
        "slmcnn report build.sqlite --out report.html",
    )
    p.add_argument("db", help="the monitor's database (SQLite file or URL)")
    p.add_argument("--out", default="report.html")
    return parser


def _backend_options(p: argparse.ArgumentParser, camera: bool = True) -> None:
    p.add_argument(
        "--backend",
        default="auto",
        choices=["auto", "torch", "onnx"],
        help="auto: PyTorch bf16 where the CPU has native bf16, else ONNX Runtime fp32",
    )
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"], help="PyTorch precision")
    p.add_argument("--workers", type=int, default=2, help="threads decoding and tiling the next images")
    if camera:
        p.add_argument("--camera", help="calibration file from `slmcnn calibrate`: straighten raw frames first")


def _camera(args):
    from slmcnn.camera import CameraCalibration

    return CameraCalibration.load(args.camera) if getattr(args, "camera", None) else None


def _load(args, layers: int | None = None):
    from slmcnn import checkpoint
    from slmcnn.export import make_backend

    path = checkpoint.resolve_model(args.model)
    if not args.model and not path.is_file():
        raise SlmcnnError("no shipped model in this installation; pass --model or run scripts/train_default_model.sh")
    model, info = checkpoint.load_model(path)
    return model, info, make_backend(args.backend, model, info.patch, args.precision, layers), path


def cmd_predict_layer(args) -> int:
    from rich.progress import Progress

    from slmcnn import images, render, store
    from slmcnn.predict import LayerFailure, Predictor

    paths = images.list_images(args.inputs)
    if not paths:
        raise SlmcnnError(f"no images found in {' '.join(args.inputs)}")
    model, info, backend, model_path = _load(args, len(paths))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    patch = args.patch or info.patch
    predictor = Predictor(backend, patch, args.stride, args.workers, model_name=model_path.name, camera=_camera(args))
    names = store.unique_stems(paths)
    summary = store.SummaryWriter(
        out / "summary.csv", ["tile_accuracy", "error_f1", "error_iou"] if args.truth else None
    )
    failures, page = 0, []
    with Progress(transient=True) as bar, store.LayerWriter(out) as writer:
        task = bar.add_task("layers", total=len(paths))
        for result in predictor.predict(paths):
            bar.advance(task)
            if isinstance(result, LayerFailure):
                failures += 1
                bar.console.print(f"[red]skipped[/red] {result.message}")
                continue
            extra = _score(result, Path(args.truth), patch) if args.truth else {}
            if args.explain:
                _explain_layer(model, result, out / f"{names[result.path]}.attribution.png", args.steps)
            result.extra.update({"truth": extra} if extra else {})
            writer.submit(result, names[result.path])
            if args.html:
                page.append(
                    {
                        "name": names[result.path],
                        "image": images.to_uint8(result.image)[::2, ::2],
                        "overlay": render.overlay(result.image, result.class_map)[::2, ::2],
                        "fractions": result.fractions,
                        "truth": extra,
                    }
                )
            row = (
                {
                    "tile_accuracy": extra.get("tile_accuracy"),
                    "error_f1": extra.get("tiles", {}).get("Error", {}).get("f1"),
                    "error_iou": extra.get("pixel_iou", {}).get("Error"),
                }
                if extra
                else {}
            )
            summary.add(result, row)
            f = result.fractions
            score = f"  tile acc {extra['tile_accuracy']:.3f}" if extra else ""
            bar.console.print(
                f"{result.path}  powder {f['Powder']:.3f}  object {f['Object']:.3f}  "
                f"error {f['Error']:.3f}  {result.seconds:.2f}s{score}"
            )
    summary.close()
    if args.html:
        (out / "index.html").write_text(
            render.layers_page(page, f"slmcnn: {len(page)} layer(s), model {model_path.name}")
        )
    print(f"wrote {len(paths) - failures} layer(s) to {out}" + (f"; skipped {failures} unreadable" if failures else ""))
    return 1 if failures else 0


def _score(result, truth_dir: Path, patch: int) -> dict:
    from slmcnn.labels import LabelRule
    from slmcnn.metrics import score_layer
    from slmcnn.tiles import tile

    mask_path = truth_dir / f"{result.path.stem}.png"
    if not mask_path.is_file():
        return {}
    from slmcnn.images import read

    mask = read(mask_path)[..., 0]
    if mask.shape != result.class_map.shape:
        raise SlmcnnError(
            f"{mask_path}: mask is {mask.shape[1]}x{mask.shape[0]}, the layer is "
            f"{result.class_map.shape[1]}x{result.class_map.shape[0]}"
        )
    grid = tile(mask[:, :, None], patch, result.grid.stride)
    truth = LabelRule().labels(grid.patches[..., 0])
    return score_layer(truth, result.probabilities.argmax(1), mask, result.class_map)


def _explain_layer(model, result, path: Path, steps: int) -> None:
    import numpy as np

    from slmcnn import render
    from slmcnn.explain import explain
    from slmcnn.images import write_png
    from slmcnn.tiles import stitch_maps, tile

    grid = tile(result.image, result.grid.patch, result.grid.stride)
    explanations = explain(model, grid.patches, result.probabilities.argmax(1), steps=steps)
    maps = np.stack([np.abs(e.attribution).sum(-1) for e in explanations])
    write_png(path, render.heatmap_png(stitch_maps(grid, maps), result.image))


def cmd_predict_patches(args) -> int:
    import numpy as np

    from slmcnn import images, render
    from slmcnn.data import class_index
    from slmcnn.errors import DataError
    from slmcnn.metrics import compute_report

    if args.explain:
        from slmcnn.explain import DEFAULT_STEPS, check_settings

        ig_steps = DEFAULT_STEPS if args.steps is None else args.steps
        check_settings(ig_steps, args.method, args.ig_precision)
    table = _patch_table(args.inputs)
    model, info, backend, _ = _load(args, len(table) // 36)
    patches, kept, failures = [], [], 0
    import cv2

    for i, path in enumerate(table.paths):
        try:
            image = images.read(path)
        except SlmcnnError as exc:
            print(f"skipped {exc}", file=sys.stderr)
            failures += 1
            continue
        if image.shape[:2] != (info.patch, info.patch):
            if not args.resize:
                print(
                    f"skipped {path}: {image.shape[1]}x{image.shape[0]} is not {info.patch}x{info.patch} "
                    "(pass --resize, or use predict-layer for whole layers)",
                    file=sys.stderr,
                )
                failures += 1
                continue
            image = cv2.resize(image, (info.patch, info.patch), interpolation=cv2.INTER_AREA)
        patches.append(image)
        kept.append(i)
    if not patches:
        raise DataError("no readable patches")
    patches_arr = (
        np.stack([images.to_uint8(p) for p in patches]) if len({p.dtype for p in patches}) > 1 else np.stack(patches)
    )
    probs = backend.probabilities(patches_arr)
    predicted = probs.argmax(1)
    truth = table.labels[kept] if table.labels is not None else None
    rows = [
        {
            "image": str(table.paths[k]),
            "true": CLASSES[truth[j]] if truth is not None else None,
            "predicted": CLASSES[predicted[j]],
            "probabilities": {c: round(float(probs[j, n]), 5) for n, c in enumerate(CLASSES)},
        }
        for j, k in enumerate(kept)
    ]
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        width = max(len(r["image"]) for r in rows)
        print(f"{'file':<{width}}  {'true':<7} {'predicted':<9} " + " ".join(f"{c:>7}" for c in CLASSES))
        for r in rows:
            print(
                f"{r['image']:<{width}}  {r['true'] or '-':<7} {r['predicted']:<9} "
                + " ".join(f"{r['probabilities'][c]:7.4f}" for c in CLASSES)
            )
    if truth is not None and not args.json:
        print()
        print(compute_report(truth, predicted).to_text())
    if args.explain:
        from slmcnn.explain import LARGE_DELTA, explain

        out = Path(args.out or "ig-figures")
        out.mkdir(parents=True, exist_ok=True)
        targets = np.full(len(kept), class_index(args.target, "--target")) if args.target else None
        explanations = explain(
            model,
            patches_arr,
            targets,
            ig_steps,
            args.baseline,
            args.method,
            precision=args.ig_precision,
        )
        for j, (k, e) in enumerate(zip(kept, explanations)):
            name = f"{table.paths[k].stem}.ig.png"
            title = f"{table.paths[k].name}: {CLASSES[e.target]} p={e.probability:.3f}, delta={e.delta:+.4f}"
            render.attribution_figure(e.baseline_image, patches_arr[j], e.attribution, title, out / name)
            warn = "  WARNING: large delta, raise --steps" if abs(e.delta) > LARGE_DELTA else ""
            print(
                f"IG {table.paths[k].name}: target {CLASSES[e.target]}, convergence delta {e.delta:+.5f}{warn}",
                file=sys.stderr,
            )
        print(f"wrote {len(explanations)} IG figure(s) to {out}", file=sys.stderr)
    return 1 if failures else 0


def _patch_table(inputs: list[str]):
    """A class-folder data set (truth known) or plain images (truth unknown)."""

    from slmcnn import images
    from slmcnn.data import PatchTable, load_source
    from slmcnn.errors import DataError

    if len(inputs) == 1 and Path(inputs[0]).is_dir():
        try:
            return load_source(inputs[0])
        except DataError:
            pass
    paths = images.list_images(inputs)
    if not paths:
        raise DataError(f"no images found in {' '.join(inputs)}")
    table = PatchTable(paths, None, [str(p) for p in paths])
    return table


def cmd_export(args) -> int:
    import numpy as np

    from slmcnn import checkpoint, images
    from slmcnn.export import export_onnx, max_probability_difference
    from slmcnn.tiles import tile

    path = checkpoint.resolve_model(args.model)
    model, info = checkpoint.load_model(path)
    out = Path(args.out) if args.out else path.with_suffix(".onnx")
    if out.resolve() == path.resolve():
        raise SlmcnnError("--out would overwrite the model file")
    export_onnx(model, out, info.patch)
    rng = np.random.default_rng(0)
    random = rng.integers(0, 256, (32, info.patch, info.patch, 3), dtype=np.uint8)
    print(
        f"wrote {out}; max |p_torch - p_onnx| on 32 random patches: {max_probability_difference(model, out, random):.2e}"
    )
    for image_path in args.check:
        image = images.to_uint8(images.read(image_path))
        patches = image[None] if image.shape[:2] == (info.patch, info.patch) else tile(image, info.patch).patches
        print(
            f"  {image_path}: max difference {max_probability_difference(model, out, patches):.2e} over {len(patches)} patches"
        )
    return 0


def cmd_monitor(args) -> int:
    from slmcnn.monitor import AlertRules, Monitor
    from slmcnn.predict import Predictor
    from slmcnn.store import ResultStore

    watch = Path(args.watch_dir)
    if not watch.is_dir():
        raise SlmcnnError(f"{watch}: no such folder to watch")
    _, info, backend, model_path = _load(args)
    rules = AlertRules(
        error_fraction=args.alert_error_fraction if args.alert_error_fraction >= 0 else None,
        persistent_layers=args.alert_persist or None,
        near_part=not args.no_alert_near_part,
        jump=args.alert_jump if args.alert_jump >= 0 else None,
    )
    predictor = Predictor(backend, info.patch, workers=1, model_name=model_path.name, camera=_camera(args))
    monitor = Monitor(
        watch,
        ResultStore(args.db),
        predictor,
        rules,
        Path(args.out) if args.out else None,
        args.pattern,
        args.settle,
        args.poll,
        args.on_alert,
        args.on_alert_timeout,
        args.retries,
    )
    print(f"watching {watch} (Ctrl-C to stop)", flush=True)
    monitor.run(args.exit_when_idle)
    return 0


def _numbers(text: str, what: str) -> list[list[float]]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise SlmcnnError(f"{what}: expected comma-separated numbers, got {text!r}") from None
    if len(values) % 2 or len(values) < 6:
        raise SlmcnnError(f"{what}: expected x,y pairs (at least 3 points), got {len(values)} numbers")
    return [values[i : i + 2] for i in range(0, len(values), 2)]


def cmd_calibrate(args) -> int:
    from slmcnn.camera import CameraCalibration, detect_corners, order_corners, preview
    from slmcnn.images import read, write_png

    out = Path(args.out)
    if out.exists() and not args.force:
        raise SlmcnnError(f"{out} exists; pass --force to replace it")
    frame = read(args.frame)
    if args.corners:
        corners = _numbers(args.corners, "--corners")
        if len(corners) != 4:
            raise SlmcnnError("--corners needs exactly 4 points")
    else:
        corners = detect_corners(frame).tolist()
    corners = order_corners(corners).round(2).tolist()
    calibration = CameraCalibration(corners, args.size, args.bed_mm, [_numbers(p, "--ignore") for p in args.ignore])
    calibration.save(out)
    preview_path = out.with_suffix(".preview.png")
    write_png(preview_path, preview(frame, calibration))
    print(f"corners {corners}\nwrote {out} and {preview_path}")
    return 0


def cmd_report(args) -> int:
    from slmcnn.report import write_report

    if "://" not in args.db and not Path(args.db).is_file():
        raise SlmcnnError(f"{args.db}: no such database")
    print(f"wrote {write_report(args.db, args.out)}")
    return 0


def cmd_train(args) -> int:
    from slmcnn.train import TrainConfig, run_training

    if args.runs < 1 or args.epochs < 1 or args.batch < 1:
        raise SlmcnnError("--runs, --epochs and --batch must be at least 1")
    config = TrainConfig(
        arch=args.arch,
        epochs=args.epochs,
        batch=args.batch,
        lr=args.lr,
        schedule=args.schedule,
        patience=args.patience,
        seed=args.seed,
        class_weights=args.class_weights,
        flips=not args.no_flips,
        turns=args.turns,
        augment=args.augment,
        precision=args.precision,
        init=args.init,
    )
    if args.init:
        from slmcnn.checkpoint import read_info

        info = read_info(args.init)
        config.arch, config.patch = info.arch, info.patch
    run_training(args.data, args.out, config, args.runs, args.val, args.test, args.resize, show_progress=not args.quiet)
    return 0


def cmd_evaluate(args) -> int:
    from slmcnn import checkpoint, render
    from slmcnn.data import load_patches, load_sources, split
    from slmcnn.inference import TorchBackend
    from slmcnn.metrics import compute_report

    model, info = checkpoint.load_model(args.model)
    table = load_sources(args.data)
    if args.split != "all":
        table = split(table, seed=args.seed)[args.split]
    patches = load_patches(table, info.patch, args.resize)
    report = compute_report(table.labels, TorchBackend(model).probabilities(patches).argmax(1))
    print(report.format(args.format))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        render.plot_confusion(report.confusion, out / "confusion_matrix.png")
        (out / "report.json").write_text(json.dumps(report.to_json(), indent=2))
    return 0


def _synth_config(path: str) -> dict:
    from dataclasses import fields

    from slmcnn.synth import SynthSettings

    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise SlmcnnError(f"--config {path}: not a readable JSON file ({exc})") from None
    flags = {
        "layers",
        "seed",
        "size",
        "patch",
        "direction",
        "label_rule",
        "defect_rates",
        "keep_ambiguous",
        "write_patches",
    }
    known = {f.name for f in fields(SynthSettings)} - flags  # those have their own command-line flags
    unknown = set(data) - known
    if unknown:
        raise SlmcnnError(f"--config: unknown setting(s) {sorted(unknown)}; known: {', '.join(sorted(known))}")
    return {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}


def cmd_synth(args) -> int:
    from rich.progress import Progress

    from slmcnn.labels import LabelRule
    from slmcnn.synth import SynthSettings, generate_build
    from slmcnn.synth.build import DEFAULT_RATES

    rates = dict(DEFAULT_RATES)
    for item in filter(None, (args.defects or "").split(",")):
        name, _, value = item.partition("=")
        try:
            rates[name.strip()] = float(value)
        except ValueError:
            raise SlmcnnError(f"--defects: {item!r} is not NAME=RATE") from None
    overrides = _synth_config(args.config) if args.config else {}
    if args.parts:
        overrides["part_kinds"] = tuple(k.strip() for k in args.parts.split(","))
    settings = SynthSettings(
        **overrides,
        layers=args.layers,
        seed=args.seed,
        size=args.size,
        patch=args.patch,
        direction=args.direction,
        defect_rates=rates,
        label_rule=LabelRule(args.error_min_pixels, args.object_min_fraction),
        keep_ambiguous=args.keep_ambiguous,
        write_patches=not args.no_patches,
    )
    with Progress(transient=True) as bar:
        task = bar.add_task("layers", total=args.layers)
        info = generate_build(
            settings,
            args.out,
            force=args.force,
            workers=args.workers,
            live_interval=args.interval if args.live else None,
            progress=lambda layer: bar.update(task, completed=layer),
            preview=args.preview,
        )
    defects = sum(len(layer["defects"]) for layer in info["layers"])
    print(
        f"wrote {args.layers} layers to {args.out} in {info['seconds']:.1f}s "
        f"({args.layers / info['seconds']:.1f} layers/s); patches {info['patch_counts']}; {defects} defect instances"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.handler(args)
    except SlmcnnError as exc:
        print(f"slmcnn {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


__all__ = ["main", "CLASSES"]
