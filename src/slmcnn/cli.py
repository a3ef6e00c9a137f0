"""The `slmcnn` command: parses arguments, calls the library, prints. COMMANDS names each command's
handler and options; library errors name API settings, which FLAGS turns into this command's flags."""

import json
import logging
import signal
import sys
from dataclasses import fields
from pathlib import Path

import slmcnn
from slmcnn.app import cmd_app
from slmcnn.console import Console, archive_line, graded, held_warnings, tell
from slmcnn.constants import CLASSES
from slmcnn.errors import SlmcnnError
from slmcnn.files import check_new, describe, run_folder, storable
from slmcnn.options import build_parser, given, grade_rules, pick, synth_settings, take_old_forms

FLAGS = {"flips=False": "--no-flips"}
COMMAND_FLAGS = {
    "predict-patches": {"precision": "--ig-precision"},
    "monitor": {
        "region_tiles": "--alert-region", "share": "--alert-share", "sure": "--alert-sure",
        "persist": "--alert-persist", "window": "--alert-persist",
    },
}  # fmt: skip
SENSITIVITIES = (0.8, 1.0, 1.25, 1.5)  # --error-threshold values whose expected false-alarm rate calibrate prints


def _engine(args, layers: int | None = None, patches: int | None = None, **options):
    """The model, its backend (with the camera profile and build memory the arguments ask for) and
    the RunOptions: the camera read once (`profile.open_camera`), as the Python API reads it."""
    from slmcnn.backends import create_engine
    from slmcnn.pipeline import RunOptions
    from slmcnn.profile import open_camera

    camera = open_camera(
        getattr(args, "camera", None), adapt=getattr(args, "adapt", None), photo=getattr(args, "photo", None),
        error_threshold=getattr(args, "error_threshold", None),
    )  # fmt: skip
    model = slmcnn.load_model(args.model)
    engine = create_engine(
        model, args.backend, args.precision, camera=camera, layers=layers, patches=patches, device=args.device
    )
    patch = getattr(args, "patch", None) or model.info.patch
    options = dict(camera=camera, patch=patch, model_name=model.source.name, **options)
    return model, engine.backend, pick(args, RunOptions, photo=camera.photo, **options)


def cmd_predict_layer(args) -> int:
    from rich.markup import escape
    from rich.progress import Progress

    from slmcnn import images, outputs
    from slmcnn.grading import uncalibrated_advice
    from slmcnn.pipeline import job_tiles, run_layers

    paths = outputs.in_layer_order(images.list_images(args.inputs))
    if not paths:
        raise SlmcnnError(f"no images found in {' '.join(args.inputs)}")
    if args.ray is not None:
        return _predict_on_ray(args, paths)
    truth, tiles = Path(args.truth) if args.truth else None, job_tiles(paths, args.patch or 128, args.stride)
    model, backend, options = _engine(args, len(paths), tiles, truth=truth)
    run_folder(args.out, args.force)
    title = f"slmcnn: {{layers}} layer(s), model {model.source.name}" if args.html else None
    files = outputs.RunFiles(args.out, args.write, paths, scored=truth is not None, html_title=title)
    failures, grades = 0, []
    with Progress(transient=True) as bar, files:
        task = bar.add_task("layers", total=len(paths))
        for outcome in run_layers(paths, backend, options, files=files, model=model):
            bar.advance(task)
            if outcome.error is not None:
                failures += 1
                bar.console.print(f"[red]skipped[/red] {escape(storable(outcome.error))}")
                continue
            f, score = outcome.result.fractions, outcome.score
            grades.append(outcome.result.grade.grade if outcome.result.grade else None)
            bar.console.print(
                f"{escape(storable(str(outcome.path)))}  powder {f['Powder']:.3f}  object {f['Object']:.3f}  error {f['Error']:.3f}  "
                f"{outcome.result.seconds:.2f}s"
                + (f"  tile acc {score.tile_accuracy:.3f}" if score else "")
                + graded(outcome.result),
                soft_wrap=True,
            )
    skipped = f"; skipped {failures} unreadable" if failures else ""
    print(f"wrote {len(paths) - failures} layer(s) to {args.out}{skipped}")
    if not args.camera and any(g not in ("ok", None) for g in grades):
        print(uncalibrated_advice(grades))
    return 1 if failures else 0


def _predict_on_ray(args, paths: list[Path]) -> int:
    """predict-layer --ray: the same layer pipeline in the workers of a Ray cluster (slmcnn.predict_archive)."""
    if args.html:
        raise SlmcnnError("`html` is written by predict-layer without `ray` only")
    if args.adapt:
        raise SlmcnnError("`adapt` learns each build layer after layer; with `ray` every layer is judged alone")
    if args.maps != "tiles":
        print("note: with --ray every layer is judged alone, on the tile grid (--map tiles)", flush=True)

    run = slmcnn.predict_archive(
        paths, args.out, args.model, address=args.ray or None, ray_workers=args.ray_workers, backend=args.backend,
        precision=args.precision, patch=args.patch, stride=args.stride, camera=args.camera,
        error_threshold=args.error_threshold, truth=args.truth, write=args.write, explain=args.explain,
        max_megapixels=args.max_megapixels, force=args.force, progress=lambda row: print(archive_line(row), flush=True), **given(args, ("workers",)),
        **({"steps": args.explain_steps} if args.explain_steps else {}),
    )  # fmt: skip
    done, failures = len(run.layers) - len(run.failures), len(run.failures)
    skipped = f"; skipped {failures} unreadable" if failures else ""
    how = f"{run.seconds:.1f} s with {run.workers} Ray worker(s), the cluster's start included"
    print(f"wrote {done} layer(s) to {args.out} in {how}; one row per layer in {run.table}{skipped}")
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
    if args.json:  # stdout holds the JSON alone (which engine `auto` chose is an information line)
        logging.getLogger("slmcnn").setLevel(logging.WARNING)
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
    from slmcnn.backends.onnxrt import export_onnx
    from slmcnn.export import compare

    model = slmcnn.load_model(args.model)
    out = Path(args.out) if args.out else model.source.with_suffix(".onnx")
    export_onnx(model, out, model.info.patch, force=args.force, inputs=[model.source])
    (what, _, difference), *checks = compare(model, out, args.check, model.info.patch)
    print(f"wrote {out}; max |p_torch - p_onnx| on {what}: {difference:.2e}")
    for what, count, difference in checks:
        print(f"  {what}: max difference {difference:.2e} over {count} patches")
    return 0


def cmd_monitor(args) -> int:
    from slmcnn.monitoring import Database, Monitor, MonitorConfig
    from slmcnn.monitoring.operator import Tally, closing_line, watch_notes

    config = pick(args, MonitorConfig, rules=grade_rules(args))  # checks the folder before the model is loaded
    tell(watch_notes(config.watch_dir))
    model, backend, options = _engine(args, workers=1)
    db = Database(args.db)
    monitor = Monitor(config, db, backend, options, model)
    signal.signal(signal.SIGTERM, _interrupt)  # a stop from outside is no fault of the layer in hand
    print(f"watching {config.watch_dir}, waiting for photos as machine {config.machine} (Ctrl-C to stop)", flush=True)
    before = Tally.of(db, monitor.key, monitor.machine)
    try:
        monitor.run(args.exit_when_idle)
    finally:
        print(f"{config.watch_dir}: {closing_line(db, monitor.key, monitor.machine, before)}", flush=True)
    return 0


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def cmd_calibrate(args) -> int:
    from slmcnn import profile as camera_profile
    from slmcnn.camera import bed_size_text, distinct_frames, frames_advice, points, preview
    from slmcnn.images import read, write_png

    args.frame, repeated = distinct_frames(args.frame)
    notes = [repeated]
    if args.update:
        updated = camera_profile.update_camera(args.update, args.frame, slmcnn.load_model(args.model), progress=True)
        print(f"{updated.summary()}\nwrote {args.update}")
        tell(notes)
        return 0
    shown = Path(args.out).with_suffix(".preview.png")
    previous = _previous_calibration(Path(args.out))
    out, shown = (check_new(p, args.force, args.frame) for p in (args.out, shown))
    if len(args.frame) > 1:  # the profile's arrays go beside camera.json
        check_new(camera_profile.arrays_path(out), args.force, args.frame)
    corners = points(args.corners, "--corners", 4) if args.corners else None
    ignore = [points(p, "--ignore") for p in args.ignore]
    bed_mm = bed_size_text(args.bed_mm) if args.bed_mm is not None else None
    with held_warnings("slmcnn.camera") as doubts:  # told once the files are written
        built = slmcnn.calibrate(
            args.frame if len(args.frame) > 1 else args.frame[0], corners, bed_mm=bed_mm, ignore=ignore,
            model=args.model, full_frame=args.full_frame, error_threshold=args.error_threshold, previous=previous,
            device=args.device, progress=True, **given(args, ["size"]),
        )  # fmt: skip
    calibration = built.calibration if isinstance(built, camera_profile.CameraProfile) else built
    if calibration is not None:
        write_png(shown, preview(read(args.frame[0]), calibration))
    elif shown.exists():  # a full frame has no outline: an earlier preview would show a wrong one (--force given)
        shown.unlink()
        notes.append(f"removed the earlier {shown.name}: a full frame has no bed outline to preview")
    if not isinstance(built, camera_profile.CameraProfile):
        camera_profile.save_camera(out, calibration, None, force=True, photo=args.photo)
        print(f"corners {calibration.corners}\nwrote {out} and {shown}")
        tell(doubts + notes)
        return 0
    camera_profile.save_camera(out, calibration, built, force=True, photo=args.photo)
    rates = ", ".join(f"{t:g}: {built.expected_false_tiles(t):.2f}" for t in SENSITIVITIES)
    print(
        f"{built.summary()}\nexpected false Error tiles per 100 sound layers by --error-threshold ({rates}); stored {built.error_threshold:g}"
    )
    written = f"{out}, {camera_profile.arrays_path(out).name}" + (f" and {shown}" if calibration is not None else "")
    print(f"wrote {written}")
    tell([*doubts, *notes, frames_advice(len(args.frame))])
    return 0


def _previous_calibration(path: Path):
    """The calibration an earlier `calibrate` wrote to `path`, to compare a new bed outline with."""
    from slmcnn.profile import load_calibration

    try:
        return load_calibration(path) if path.is_file() else None
    except SlmcnnError:
        return None


def cmd_teach(args) -> int:
    from slmcnn.errors import SettingsError
    from slmcnn.teaching import Lessons, lessons_folder

    folder = lessons_folder(args.camera, args.lessons)
    if args.list or args.forget:
        if folder is None:
            raise SettingsError("say which lessons: --lessons FOLDER or --camera camera.json")
        if args.forget and not Lessons(folder).forget(lesson_id=args.forget):
            raise SettingsError(f"no lesson {args.forget} in {folder}")
        print("\n".join(map(str, Lessons(folder))))
        return 0
    if not args.photo or not args.verdict:
        raise SettingsError("give the layer PHOTO and --as sound or --as defect (or --list, --forget ID)")
    lesson = slmcnn.teach(args.photo, args.verdict, args.box, camera=args.camera, lessons=args.lessons)
    print(
        f"taught {args.photo} as {lesson.verdict} (lesson {lesson.id} in {folder}); the next layer judged takes it in"
    )
    return 0


def cmd_report(args) -> int:
    from slmcnn.monitoring import write_report

    print(f"wrote {write_report(args.db, args.out, force=args.force)}")
    return 0


def cmd_train(args) -> int:
    from slmcnn.train import TrainConfig

    settings = given(args, [f.name for f in fields(TrainConfig)] + ["runs", "nproc"])
    settings.update(flips=not args.no_flips, val=args.val, test=args.test, resize=args.resize)
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


def cmd_synth(args) -> int:
    from rich.progress import Progress

    from slmcnn.synth import generate_build

    settings = synth_settings(args)
    if args.live:
        layers = Path(args.out) / "layers"
        print(f"writing a layer every {args.interval:g} s into {layers}; follow it with:", flush=True)
        print(f"  slmcnn monitor {layers} --db {Path(args.out).name}.sqlite", flush=True)
    with Progress(transient=True) as bar:
        task = bar.add_task("layers", total=settings.layers)
        live = args.interval if args.live else None
        steps = dict(live_interval=live, progress=lambda n: bar.update(task, completed=n), **given(args, ["workers"]))
        info = generate_build(settings, args.out, force=args.force, preview=args.preview, **steps)
    defects, speed = sum(len(layer["defects"]) for layer in info["layers"]), settings.layers / info["seconds"]
    print(f"wrote {settings.layers} layers to {args.out} in {info['seconds']:.1f}s ({speed:.1f} layers/s); ", end="")
    print(f"patches {info['patch_counts']}; {defects} defect instances")
    return 0


# fmt: off
COMMANDS = {  # name: (handler, help, example); the options are in options.py
    "train": (cmd_train, "Train the CNN on labelled patches (class folders, reference CSV or a synth build).", "slmcnn train builds/train --val builds/val --out runs/first --epochs 30"),
    "evaluate": (cmd_evaluate, "Score a model on labelled patches: the reference's table and a confusion matrix.", "slmcnn evaluate builds/test --model runs/first/model.safetensors --format md"),
    "synth": (cmd_synth, "Generate a synthetic build: layer photos, label masks, patches and build.json.", "slmcnn synth --out builds/demo --layers 20 --seed 1 --preview   (--live: one layer at a time, as a camera)"),
    "predict-layer": (cmd_predict_layer, "Classify whole layer photos into powder / object / error maps and overlays.", "slmcnn predict-layer examples/layers/*.png --out out/ --stride 64 --truth examples/masks"),
    "predict-patches": (cmd_predict_patches, "Classify patch images; with --explain draw Integrated Gradients figures.", "slmcnn predict-patches data/Patches --explain --out figures/"),
    "export": (cmd_export, "Export a model to ONNX and check it against PyTorch.", "slmcnn export --model runs/first/model.safetensors --out model.onnx"),
    "calibrate": (cmd_calibrate, "Find the bed in a raw camera frame and write a calibration with a preview; from several good layers also a camera profile.", "slmcnn calibrate good/*.jpg --out camera.json   (one frame: geometry only; --full-frame; --update camera.json more/*.jpg)"),
    "monitor": (cmd_monitor, "Follow a running build: classify each new layer, store it, raise alerts.", "slmcnn monitor /machine/camera --db build.sqlite --camera camera.json --out live/ --on-alert 'notify-send \"$SLMCNN_ALERT_MESSAGE\"'"),
    "report": (cmd_report, "Write a self-contained HTML report of the builds in a monitor's database.", "slmcnn report --db build.sqlite --out report.html"),
    "teach": (cmd_teach, "Teach the fine maps a reviewer's verdict, no retraining: a false alarm is sound, a confirmed defect an example.", "slmcnn teach layers/00042.png --as sound --box 120,340,180,372 --camera camera.json   (--list, --forget ID)"),
    "app": (cmd_app, "Look at builds, label tiles, review alerts and fine-tune, in the browser (a local web app).", "slmcnn app --db build.sqlite --data photos/"),
}
# fmt: on


def main(argv: list[str] | None = None) -> int:
    args = build_parser({name: (text, example) for name, (_, text, example) in COMMANDS.items()}).parse_args(argv)
    library, handler = logging.getLogger("slmcnn"), Console()
    library.addHandler(handler)
    library.setLevel(logging.INFO)
    try:
        take_old_forms(args)
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
