"""The `slmcnn` command: parses arguments, calls the library, prints. COMMANDS names each command's
handler and options; library errors name API settings, which FLAGS turns into this command's flags."""

import argparse
import json
import logging
import sys
from dataclasses import fields
from pathlib import Path

import slmcnn
from slmcnn import CLASSES, __version__
from slmcnn.app import APP_OPTIONS, cmd_app
from slmcnn.errors import SlmcnnError
from slmcnn.files import check_new, describe, run_folder

FLAGS = {"flips=False": "--no-flips"}
COMMAND_FLAGS = {"predict-patches": {"precision": "--ig-precision"}}
SYNTH_FLAGS = ("layers", "seed", "size", "patch", "direction", "keep_ambiguous")  # SynthSettings with flags


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="slmcnn", description="Powder-bed monitoring for selective laser melting.")
    parser.add_argument("--version", action="version", version=f"slmcnn {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, text, example, options) in COMMANDS.items():
        description, raw = f"{text}\n\nexample:\n  {example}", argparse.RawDescriptionHelpFormatter
        p = sub.add_parser(name, help=text, description=description, formatter_class=raw)
        for flag, settings in options:
            p.add_argument(flag, **settings)
    return parser


def _pick(args, settings_class, **more):
    """`settings_class` (a dataclass) from the options of the same name, and `more`."""
    names = {f.name for f in fields(settings_class)} - set(more)
    return settings_class(**{n: getattr(args, n) for n in names if hasattr(args, n)}, **more)


def _engine(args, layers: int | None = None, patches: int | None = None, **options):
    """The model, its backend and the RunOptions the arguments ask for."""
    from slmcnn.pipeline import RunOptions

    model = slmcnn.load_model(args.model)
    backend = slmcnn.create_backend(model, args.backend, args.precision, layers=layers, patches=patches)
    if getattr(args, "camera", None):  # a camera.json with a profile: one network pass for classes and anomaly
        from slmcnn.profile import ProfileBackend, load_camera

        options["camera"], profile = load_camera(args.camera)
        if profile is not None:
            backend = ProfileBackend(profile, model)
            options["anomaly"] = backend.anomaly
    patch = getattr(args, "patch", None) or model.info.patch
    return model, backend, _pick(args, RunOptions, patch=patch, model_name=model.source.name, **options)


def cmd_predict_layer(args) -> int:
    from rich.progress import Progress

    from slmcnn import images, outputs
    from slmcnn.pipeline import job_tiles, run_layers

    paths = images.list_images(args.inputs)
    if not paths:
        raise SlmcnnError(f"no images found in {' '.join(args.inputs)}")
    truth, tiles = Path(args.truth) if args.truth else None, job_tiles(paths, args.patch or 128, args.stride)
    model, backend, options = _engine(args, len(paths), tiles, truth=truth, explain_steps=args.steps)
    run_folder(args.out, args.force)
    title = f"slmcnn: {{layers}} layer(s), model {model.source.name}" if args.html else None
    files = outputs.RunFiles(args.out, args.write, paths, scored=truth is not None, html_title=title)
    failures = 0
    with Progress(transient=True) as bar, files:
        task = bar.add_task("layers", total=len(paths))
        for outcome in run_layers(paths, backend, options, files=files, model=model):
            bar.advance(task)
            if outcome.error is not None:
                failures += 1
                bar.console.print(f"[red]skipped[/red] {outcome.error}")
                continue
            f, score = outcome.result.fractions, outcome.score
            bar.console.print(
                f"{outcome.path}  powder {f['Powder']:.3f}  object {f['Object']:.3f}  error {f['Error']:.3f}  "
                f"{outcome.result.seconds:.2f}s" + (f"  tile acc {score.tile_accuracy:.3f}" if score else "")
            )
    skipped = f"; skipped {failures} unreadable" if failures else ""
    print(f"wrote {len(paths) - failures} layer(s) to {args.out}{skipped}")
    return 1 if failures else 0


def cmd_predict_patches(args) -> int:
    from slmcnn.explain import DEFAULT_STEPS, LARGE_DELTA, check_settings, explain
    from slmcnn.outputs import write_explanation
    from slmcnn.pipeline import classify_patches, patch_sources

    steps = DEFAULT_STEPS if args.steps is None else args.steps
    if args.explain:
        check_settings(steps, args.method, args.ig_precision)
        run_folder(args.out, args.force)
    table = patch_sources(args.inputs)
    model, backend, _ = _engine(args, patches=len(table))
    done = classify_patches(table.paths, backend, model.info.patch, args.resize)
    for problem in done.skipped:
        print(f"skipped {problem.for_cli(FLAGS)}", file=sys.stderr)
    truth = table.labels[done.kept] if table.labels is not None else None
    print(json.dumps(done.rows(truth), indent=1) if args.json else done.to_text(truth))
    if args.explain:
        targets = [CLASSES.index(args.target)] * len(done.paths) if args.target else None
        figures = explain(model, done.patches, targets, steps, args.baseline, args.method, precision=args.ig_precision)
        for path, patch, e in zip(done.paths, done.patches, figures):
            write_explanation(Path(args.out), path, patch, e)
            warn = "  WARNING: large delta, raise --steps" if abs(e.delta) > LARGE_DELTA else ""
            line = f"IG {path.name}: target {CLASSES[e.target]}, convergence delta {e.delta:+.5f}{warn}"
            print(line, file=sys.stderr)
        print(f"wrote {len(figures)} IG figure(s) to {args.out}", file=sys.stderr)
    return 1 if done.skipped else 0


def cmd_export(args) -> int:
    from slmcnn.export import compare, export_onnx

    model = slmcnn.load_model(args.model)
    out = Path(args.out) if args.out else model.source.with_suffix(".onnx")
    export_onnx(model, out, model.info.patch, force=args.force, inputs=[model.source])
    (what, _, difference), *checks = compare(model, out, args.check, model.info.patch)
    print(f"wrote {out}; max |p_torch - p_onnx| on {what}: {difference:.2e}")
    for what, count, difference in checks:
        print(f"  {what}: max difference {difference:.2e} over {count} patches")
    return 0


def cmd_monitor(args) -> int:
    from slmcnn.monitoring import AlertRules, Database, Monitor, MonitorConfig

    on = lambda value: value if value >= 0 else None  # noqa: E731
    rules = AlertRules(on(args.alert_error_fraction), args.alert_persist or None, not args.no_alert_near_part)
    rules.jump = on(args.alert_jump)
    config = _pick(args, MonitorConfig, rules=rules)  # checks the folder before the model is loaded
    model, backend, options = _engine(args, workers=1)
    monitor = Monitor(config, Database(args.db), backend, options)
    print(f"watching {config.watch_dir} (Ctrl-C to stop)", flush=True)
    monitor.run(args.exit_when_idle)
    return 0


def cmd_calibrate(args) -> int:
    from slmcnn import profile as camera_profile
    from slmcnn.camera import points, preview
    from slmcnn.images import read, write_png

    if args.update:
        updated = camera_profile.update_camera(args.update, args.frame, slmcnn.load_model(args.model), progress=True)
        print(f"{updated.summary()}\nwrote {args.update}")
        return 0
    shown = Path(args.out).with_suffix(".preview.png")
    out, shown = (check_new(p, args.force, args.frame) for p in (args.out, shown))
    corners = points(args.corners, "--corners", 4) if args.corners else None
    frame, ignore = read(args.frame[0]), [points(p, "--ignore") for p in args.ignore]
    calibration = None if args.full_frame else slmcnn.calibrate(frame, corners, args.size, args.bed_mm, ignore)
    if len(args.frame) == 1 and calibration is not None:
        calibration.save(out)
        write_png(shown, preview(frame, calibration))
        print(f"corners {calibration.corners}\nwrote {out} and {shown}")
        return 0
    model = slmcnn.load_model(args.model)
    built = camera_profile.build_profile(args.frame, calibration, model, progress=True)
    camera_profile.save_camera(out, calibration, built, force=True)
    if calibration is not None:
        write_png(shown, preview(frame, calibration))
    print(f"{built.summary()}\nwrote {out} and {camera_profile.arrays_path(out).name}")
    return 0


def cmd_report(args) -> int:
    from slmcnn.monitoring import write_report

    print(f"wrote {write_report(args.db, args.out, force=args.force)}")
    return 0


def cmd_train(args) -> int:
    from slmcnn.train import TrainConfig

    settings = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if hasattr(args, f.name)}
    settings.update(flips=not args.no_flips, runs=args.runs, val=args.val, test=args.test, resize=args.resize)
    slmcnn.train(args.data, args.out, show_progress=not args.quiet, force=args.force, **settings)
    return 0


def cmd_evaluate(args) -> int:
    from slmcnn.outputs import write_evaluation
    from slmcnn.pipeline import evaluate_patches

    out = run_folder(args.out, args.force) if args.out else None
    report = evaluate_patches(slmcnn.load_model(args.model), args.data, args.split, args.seed, args.resize)
    print(report.format(args.format))
    if out:
        write_evaluation(report, out)
    return 0


def _synth_settings(args):
    """SynthSettings from the flags, --defects NAME=RATE,..., --parts and --config (settings without flags)."""
    from slmcnn.labels import LabelRule
    from slmcnn.synth import SynthSettings
    from slmcnn.synth.build import DEFAULT_RATES
    from slmcnn.validate import settings_file

    rates, overrides, flagged = dict(DEFAULT_RATES), {}, SYNTH_FLAGS
    for item in filter(None, (args.defects or "").split(",")):
        name, _, value = item.partition("=")
        try:
            rates[name.strip()] = float(value)
        except ValueError:
            raise SlmcnnError(f"--defects: {item!r} is not NAME=RATE") from None
    if args.config:
        known = {f.name for f in fields(SynthSettings)} - {*flagged, "label_rule", "defect_rates", "write_patches"}
        overrides = settings_file(args.config, SynthSettings, known, "--config")
    overrides.update({"part_kinds": args.parts.split(",")} if args.parts else {})
    overrides.update({name: getattr(args, name) for name in flagged})
    rule = LabelRule(args.error_min_pixels, args.object_min_fraction)
    return SynthSettings(**overrides, defect_rates=rates, label_rule=rule, write_patches=not args.no_patches)


def cmd_synth(args) -> int:
    from rich.progress import Progress

    from slmcnn.synth import generate_build

    settings = _synth_settings(args)
    with Progress(transient=True) as bar:
        task = bar.add_task("layers", total=args.layers)
        live = args.interval if args.live else None
        steps = dict(workers=args.workers, live_interval=live, progress=lambda n: bar.update(task, completed=n))
        info = generate_build(settings, args.out, force=args.force, preview=args.preview, **steps)
    defects, speed = sum(len(layer["defects"]) for layer in info["layers"]), args.layers / info["seconds"]
    print(f"wrote {args.layers} layers to {args.out} in {info['seconds']:.1f}s ({speed:.1f} layers/s); ", end="")
    print(f"patches {info['patch_counts']}; {defects} defect instances")
    return 0


# fmt: off
BACKEND = [
    ("--backend", dict(default="auto", choices=["auto", "torch", "compiled", "onnx"], help="auto: PyTorch bf16 where the CPU has native bf16 (else ONNX Runtime fp32), eager or compiled by what finishes first: a compiled network is kept per model, CPU and torch version in $SLMCNN_CACHE (default ~/.cache/slmcnn) and loads in under a second, so auto uses it for jobs over about 25 layers; without one it runs eager (compiling costs about a minute once, worth it only for thousands of layers: python -m slmcnn.aot compiles ahead), and the monitor compiles one in the background. torch: eager; compiled: the cached network, compiled now if missing")),
    ("--precision", dict(default="auto", choices=["auto", "fp32", "bf16"], help="PyTorch precision")),
    ("--workers", dict(type=int, default=2, help="threads decoding and tiling the next images")),
]
LIMITS = [("--max-megapixels", dict(type=float, help="refuse images larger than this, from their header (default 100, or SLMCNN_MAX_MEGAPIXELS)"))]
CAMERA = [("--camera", dict(help="camera.json from `slmcnn calibrate`: straighten raw frames first; with a camera profile every tile also gets an anomaly score (JSON `anomaly`; above 1: unlike this camera's good layers) and the profile decides Error: a tile the network calls Powder is Error when anomalous, the network's Error stays Error only when anomalous, Object stays Object"))]
MODEL = [("--model", dict(help="model file (default: the shipped model)"))]
FORCE = [("--force", dict(action="store_true", help="write into a used output folder or over an existing file (files of the same name are replaced)"))]
COMMANDS = {  # name: (handler, help, example, options)
    "train": (cmd_train, "Train the CNN on labelled patches (class folders, reference CSV or a synth build).", "slmcnn train builds/train --val builds/val --out runs/first --epochs 30", [
        ("data", dict(nargs="+", help="class folders Powder/ Object/ Error/, an Image;Label CSV, a split.csv or a synth build (several are joined)")),
        ("--out", dict(required=True, help="run folder for the model, curves and reports")),
        ("--val", dict(nargs="+", help="separate validation data (default: a by-layer split of DATA)")),
        ("--test", dict(nargs="+", help="separate test data (default: a by-layer split of DATA)")),
        ("--arch", dict(help="network: slmcnn (the reference, default) or slmcnn-tiny; with --init, the init model's")),
        ("--epochs", dict(type=int, default=150)), ("--batch", dict(type=int, default=64)),
        ("--lr", dict(type=float, default=0.0001)),
        ("--schedule", dict(choices=["constant", "cosine"], default="constant", help="learning rate: constant (the reference) or cosine decay to 0 over --epochs")),
        ("--patience", dict(type=int, default=20, help="early stopping on validation accuracy")),
        ("--seed", dict(type=int, default=0)),
        ("--runs", dict(type=int, default=1, help="train N times (seeds seed..seed+N-1), report mean ± std")),
        ("--class-weights", dict(choices=["balanced", "none"], default="balanced")),
        ("--no-flips", dict(action="store_true", help="turn off random horizontal/vertical flips")),
        ("--turns", dict(action="store_true", help="also random quarter turns (all 8 mirror/rotation views): for data whose recoater direction varies")),
        ("--augment", dict(choices=["none", "camera"], default="none", help="camera: draw each training patch as another camera might see it (gamma, exposure clipping, light gradient, grain, blur, JPEG); for models that must read cameras they were not trained on")),
        ("--precision", dict(choices=["auto", "fp32", "bf16"], default="auto", help="auto: bf16 autocast where the CPU has native bf16, else fp32")),
        ("--init", dict(help="start from this model file (fine-tuning)")),
        ("--resize", dict(action="store_true", help="scale patches that are not the model's size")),
        ("--quiet", dict(action="store_true", help="no progress bars")), *FORCE,]),
    "evaluate": (cmd_evaluate, "Score a model on labelled patches: the reference's table and a confusion matrix.", "slmcnn evaluate runs/first/model.safetensors builds/test --format md", [
        ("model", {}), ("data", dict(nargs="+")),
        ("--split", dict(choices=["all", "train", "val", "test"], default="all", help="evaluate one part of DATA's by-layer split (seed --seed)")),
        ("--seed", dict(type=int, default=0)), ("--format", dict(choices=["text", "md", "json"], default="text")),
        ("--out", dict(help="folder for confusion_matrix.png and report.json")), ("--resize", dict(action="store_true")), *FORCE,]),
    "synth": (cmd_synth, "Generate a synthetic build: layer photos, label masks, patches and build.json.", "slmcnn synth builds/demo --layers 20 --seed 1 --preview", [
        ("out", {}), ("--layers", dict(type=int, default=20)), ("--seed", dict(type=int, default=0)),
        ("--size", dict(type=int, default=768)), ("--patch", dict(type=int, default=128)),
        ("--direction", dict(default="down", help="recoater travel: down, up, left, right or random")),
        ("--defects", dict(help="per-layer start rates, e.g. streak=0.2,debris=0 (others keep defaults)")),
        ("--error-min-pixels", dict(type=int, default=120, help="label rule: error pixels that make a patch Error")),
        ("--object-min-fraction", dict(type=float, default=0.05, help="label rule: part share that makes a patch Object")),
        ("--keep-ambiguous", dict(action="store_true", help="also write patches the rule calls ambiguous")),
        ("--no-patches", dict(action="store_true", help="write layers and masks only")), ("--workers", dict(type=int, default=2)),
        ("--preview", dict(action="store_true", help="also write preview.png, a contact sheet")),
        ("--live", dict(action="store_true", help="write one layer at a time (atomic rename)")),
        ("--interval", dict(type=float, default=1.0, help="seconds between layers with --live")),
        ("--force", dict(action="store_true", help="replace a previous build in OUT")),
        ("--parts", dict(help="part kinds to draw, e.g. circle,ring,lattice (default: all)")),
        ("--config", dict(help='JSON file overriding any generator setting, e.g. {"grain": [3, 5], "falloff": [0.1, 0.2], "perspective": 0.0, "parts": [2, 6]}')),]),
    "predict-layer": (cmd_predict_layer, "Classify whole layer photos into powder / object / error maps and overlays.", "slmcnn predict-layer examples/layers/*.png --out out/ --stride 64 --truth examples/masks", [
        ("inputs", dict(nargs="+", metavar="INPUT", help="image files, folders or globs (PNG, JPEG, TIFF; 8/16 bit)")),
        ("--out", dict(required=True, help="output folder, new or empty (with --force files of the same name are replaced, nothing else)")), *FORCE,
        *MODEL, ("--patch", dict(type=int, help="tile size (default: the model's, 128)")),
        ("--stride", dict(type=int, help="tile step (default: patch, no overlap; 64 = 50%% overlap, where a pixel's class is the mean of the covering tiles' probabilities). When a side is not a multiple of the stride, one more tile is placed flush with the far edge, so nothing is cropped")),
        ("--truth", dict(help="folder of label masks (as slmcnn synth writes) to score each layer")), ("--html", dict(action="store_true", help="also write DIR/index.html: each layer beside its overlay")),
        ("--write", dict(default="overlay,classes,json", type=lambda kinds: [*kinds.split(","), "attribution"], help="files per layer, any of overlay,classes,json (default: all three; summary.csv always); what is not asked for is not computed")),
        ("--explain", dict(action="store_true", help="also write <stem>.attribution.png (IG over all tiles)")),
        ("--steps", dict(type=int, default=32, help="IG steps with --explain")), *BACKEND, *CAMERA, *LIMITS,]),
    "predict-patches": (cmd_predict_patches, "Classify patch images; with --explain draw Integrated Gradients figures.", "slmcnn predict-patches data/Patches --explain --out figures/", [
        ("inputs", dict(nargs="+", metavar="INPUT", help="patch images, folders, or a class-folder data set")), *MODEL,
        ("--out", dict(default="ig-figures", help="folder for IG figures (default: ig-figures)")),
        ("--json", dict(action="store_true", help="print results as JSON")),
        ("--explain", dict(action="store_true", help="write a 2x2 Integrated Gradients figure per patch")),
        ("--steps", dict(type=int, help="IG gradient evaluations (default 176 with the adaptive rule: more converged than the reference's 500 trapezoid steps)")),
        ("--ig-precision", dict(choices=["fp32", "bf16"], default="fp32", help="bf16 is about 1.7x faster on CPUs with native bf16, but its attributions are about 2%% off the converged ones (fp32: under 0.5%%); it needs a fixed --method such as gausslegendre")),
        ("--method", dict(default="adaptive", choices=["adaptive", "gausslegendre", "riemann_trapezoid", "riemann_middle", "riemann_left", "riemann_right"], help="IG quadrature: adaptive (trapezoid rule on a path grid refined where its error is largest) or one of captum's rules (riemann_trapezoid is the reference's)")),
        ("--target", dict(choices=CLASSES, type=lambda name: name.capitalize(), help="explain this class instead of the predicted one")),
        ("--baseline", dict(default="black", choices=["black", "blur", "noise"])),
        ("--resize", dict(action="store_true", help="scale patches that are not the model's size")), *BACKEND, *FORCE,]),
    "export": (cmd_export, "Export a model to ONNX and check it against PyTorch.", "slmcnn export runs/first/model.safetensors --format onnx --out model.onnx", [
        ("model", dict(nargs="?", help="model file (default: the shipped model)")),
        ("--format", dict(choices=["onnx"], default="onnx")), ("--out", dict(help="output file (default: MODEL with .onnx)")),
        ("--check", dict(nargs="*", default=[], metavar="IMAGE", help="also compare on these patch or layer images")), *FORCE,]),
    "calibrate": (cmd_calibrate, "Find the bed in a raw camera frame and write a calibration with a preview; from several good layers also a camera profile.", "slmcnn calibrate good/*.jpg --out camera.json   (one frame: geometry only; --full-frame; --update camera.json more/*.jpg)", [
        ("frame", dict(nargs="+", metavar="FRAME", help="a raw camera frame showing the bed; several frames of good layers (at least 4, 10-50 best) also learn a camera profile from them: each tile then gets an anomaly score, and Error needs this camera's good layers to disagree")), ("--out", dict(default="camera.json")),
        ("--full-frame", dict(action="store_true", help="the photo is the bed already: no corners, no warp (a profile needs several frames)")),
        ("--update", dict(metavar="CAMERA_JSON", help="add the FRAMEs (good layers) to the profile in this camera.json")), *MODEL,
        ("--corners", dict(help="x1,y1,...,x4,y4 clockwise from top-left, instead of detecting them")),
        ("--size", dict(type=int, default=768, help="side of the straightened bed in pixels")),
        ("--bed-mm", dict(type=float, help="side of the bed in mm, so reports can speak in mm")),
        ("--ignore", dict(action="append", default=[], metavar="X1,Y1,X2,Y2,...", help="a polygon (raw-frame pixels) to ignore; may be repeated")),
        ("--force", dict(action="store_true", help="replace an existing calibration file")),]),
    "monitor": (cmd_monitor, "Follow a running build: classify each new layer, store it, raise alerts.", "slmcnn monitor /machine/camera --db build.sqlite --out live/ --on-alert 'notify-send $SLMCNN_ALERT_MESSAGE'", [
        ("watch_dir", {}), ("--db", dict(required=True, help="SQLite file, or an SQLAlchemy URL such as postgresql://host/db")),
        ("--out", dict(help="folder for overlays and alerts.jsonl")), *MODEL,
        ("--build", dict(help="name of this build (default: the folder's latest; a new build in the same folder is also recognised when a stored file is written again or layer numbers start again)")),
        ("--pattern", dict(help="regex whose first group is the layer number (default: the last number in the name that is not part of a date_time stamp; else the stamp orders the layers)")),
        ("--settle", dict(type=float, default=0.5, help="seconds a file's size must stay unchanged")),
        ("--poll", dict(action="store_true", help="poll the folder instead of OS events (network shares)")),
        ("--retries", dict(type=int, default=3, help="tries (2 s apart) of an unreadable layer whose file does not change before it is marked failed; a changed file is tried again")),
        ("--alert-error-fraction", dict(type=float, default=0.02, help="alert when a layer's error share reaches this (<0: off)")),
        ("--alert-persist", dict(type=int, default=3, help="alert when a tile is Error this many layers running (0: off)")),
        ("--no-alert-near-part", dict(action="store_true", help="no alert for error tiles touching a part")),
        ("--alert-jump", dict(type=float, default=0.1, help="alert when the error share jumps this much over recent layers (<0: off)")),
        ("--on-alert", dict(help="shell command run per alert; fields in SLMCNN_ALERT_* variables")),
        ("--on-alert-timeout", dict(type=float, default=10.0)),
        ("--exit-when-idle", dict(type=float, help="stop after this many seconds without a new layer")), *BACKEND, *CAMERA, *LIMITS,]),
    "report": (cmd_report, "Write a self-contained HTML report of the builds in a monitor's database.", 'slmcnn report build.sqlite --out report.html', [
        ("db", dict(help="the monitor's database (SQLite file or URL)")), ("--out", dict(default="report.html")), *FORCE,]),
    "app": (cmd_app, "Look at builds, label tiles, review alerts and fine-tune, in the browser (a local web app).", "slmcnn app --db build.sqlite --data photos/", APP_OPTIONS),
}
# fmt: on


class _Console(logging.Handler):
    """The library's log as the command's output: information on stdout, warnings on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        print(record.getMessage(), file=sys.stdout if record.levelno < logging.WARNING else sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    library, handler = logging.getLogger("slmcnn"), _Console()
    library.addHandler(handler)
    library.setLevel(logging.INFO)
    try:
        return COMMANDS[args.command][0](args)
    except SlmcnnError as exc:
        message = exc.for_cli({**FLAGS, **COMMAND_FLAGS.get(args.command, {})})
        print(f"slmcnn {args.command}: error: {message}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:  # the file system said no (full, read-only, /proc) where no library check did
        print(f"slmcnn {args.command}: error: {describe(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"slmcnn {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        library.removeHandler(handler)
