"""The options of each `slmcnn` command, as data: (flag, argparse settings) pairs that cli.py adds
to the command's parser. Help texts are one line; the long explanations are in docs/USER_GUIDE.md.

A setting whose default the library owns (a dataclass field or a function's parameter) is named by
`of=`: the parser's default stays None, so only what a user gave reaches the library, and --help
reads the default from that one place (imported only then: the command starts fast)."""

import argparse
import importlib
import inspect
from dataclasses import MISSING, fields, is_dataclass

from slmcnn.constants import CLASSES, __version__
from slmcnn.errors import SettingsError

TRAIN, GRADES, MONITOR = (
    "slmcnn.train:TrainConfig",
    "slmcnn.grading:GradeRules",
    "slmcnn.monitoring.watch:MonitorConfig",
)
RUN, SYNTH, RULE = "slmcnn.pipeline:RunOptions", "slmcnn.synth.build:SynthSettings", "slmcnn.labels:LabelRule"
OLD_FORMS = {"db": "DB", "model": "MODEL", "out": "OUT"}  # positional forms of earlier versions, still taken
MORE = "each option at length: docs/USER_GUIDE.md#options-in-depth; the words: docs/GLOSSARY.md"


def box(text: str) -> list[float]:
    """X0,Y0,X1,Y1: a box in pixels."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 4:
        raise argparse.ArgumentTypeError(f"a box is X0,Y0,X1,Y1 in pixels (got {text!r})")
    return values


def library_default(source: str, name: str):
    """The default of field or parameter `name` ('a/b' joins two) of 'module:Object'."""
    if "/" in name:
        return "/".join(str(library_default(source, part)) for part in name.split("/"))
    module, _, attribute = source.partition(":")
    owner = getattr(importlib.import_module(module), attribute)
    if is_dataclass(owner):
        field = next(f for f in fields(owner) if f.name == name)
        return field.default_factory() if field.default is MISSING else field.default
    return inspect.signature(owner).parameters[name].default


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Each option's help with its default: the library's where it owns it, else the parser's."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        source = getattr(action, "library", None)
        default = library_default(*source) if source else action.default
        if "default" in text or default in (None, False, [], "", argparse.SUPPRESS) or not action.option_strings:
            return text
        return f"{text} (default: {str(default).replace('%', '%%')})"


def add_options(parser: argparse.ArgumentParser, options: list) -> None:
    for flag, settings in options:
        settings = dict(settings)
        source, name = settings.pop("of", None), settings.pop("field", None)
        action = parser.add_argument(flag, **settings)
        if source:
            action.library = (source, name or action.dest)


def build_parser(commands: dict[str, tuple[str, str]]) -> argparse.ArgumentParser:
    """The `slmcnn` parser: per command its help, an example and OPTIONS."""
    parser = argparse.ArgumentParser(prog="slmcnn", description="Powder-bed monitoring for selective laser melting.")
    parser.add_argument("--version", action="version", version=f"slmcnn {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (text, example) in commands.items():
        description = f"{text}\n\nexample:\n  {example}"
        command = sub.add_parser(name, help=text, description=description, epilog=MORE, formatter_class=HelpFormatter)
        add_options(command, OPTIONS[name])
    return parser


def take_old_forms(args: argparse.Namespace) -> None:
    """Earlier versions' positional forms (`report DB`, `export MODEL`, `evaluate MODEL DATA`, `synth OUT`)
    as the options everything else uses; an `evaluate` input that is no model file is data."""
    for name in OLD_FORMS:
        old, given = getattr(args, f"{name}_arg", None), getattr(args, name, None)
        if (
            old is not None
            and name == "model"
            and hasattr(args, "data")
            and (given or not old.endswith(".safetensors"))
        ):
            args.data.insert(0, old)
        elif old is not None and given not in (None, old):
            raise SettingsError(f"{old} and --{name} {given}: give one {name}")
        elif old is not None:
            setattr(args, name, old)
    for name in REQUIRED.get(args.command, []):
        if getattr(args, name) is None:
            raise SettingsError(f"which {name}? give --{name}")


def given(args: argparse.Namespace, names) -> dict:
    """The options among `names` that the user gave (None: the library's default applies)."""
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def pick(args: argparse.Namespace, settings_class, **more):
    """`settings_class` (a dataclass) from the options of the same name that were given, and `more`."""
    return settings_class(**given(args, {f.name for f in fields(settings_class)} - set(more)), **more)


def grade_rules(args: argparse.Namespace):
    """The monitor's GradeRules from the --alert-* options given (--alert-persist K/M is two settings)."""
    from slmcnn.grading import GradeRules

    persist = GradeRules.parse_persist(args.alert_persist) if args.alert_persist else ()
    return pick(args, GradeRules, **dict(zip(("persist", "window"), persist)))


def synth_settings(args: argparse.Namespace):
    """SynthSettings from the flags, --defects NAME=RATE,..., --parts and --config (settings without flags)."""
    from slmcnn.labels import LabelRule
    from slmcnn.synth import SynthSettings
    from slmcnn.synth.build import DEFAULT_RATES
    from slmcnn.validate import settings_file

    rates, overrides, flagged = (
        dict(DEFAULT_RATES),
        {},
        ("layers", "seed", "size", "patch", "direction", "keep_ambiguous"),
    )
    for item in filter(None, (args.defects or "").split(",")):
        name, _, value = item.partition("=")
        try:
            rates[name.strip()] = float(value)
        except ValueError:
            raise SettingsError(f"--defects: {item!r} is not NAME=RATE") from None
    if args.config:
        known = {f.name for f in fields(SynthSettings)} - {*flagged, "label_rule", "defect_rates", "write_patches"}
        overrides = settings_file(args.config, SynthSettings, known, "--config")
    overrides.update({"part_kinds": args.parts.split(",")} if args.parts else {})
    overrides.update(given(args, flagged))
    rule = pick(args, LabelRule)
    return SynthSettings(**overrides, defect_rates=rates, label_rule=rule, write_patches=not args.no_patches)


def old_form(name: str) -> tuple:
    """A positional argument of an earlier version (`report DB`), hidden from --help."""
    return (f"{name}_arg", dict(nargs="?", metavar=OLD_FORMS[name], help=argparse.SUPPRESS))


# fmt: off
BACKEND = [
    ("--device", dict(default="auto", choices=["auto", "cpu", "cuda"], help="where the network runs; auto: a CUDA GPU when PyTorch sees one (bf16 where the card has it); compiled and onnx are CPU engines")),
    ("--backend", dict(default="auto", choices=["auto", "torch", "compiled", "onnx"], help="inference engine; auto picks the fastest on this CPU, timed once and cached")),
    ("--precision", dict(default="auto", choices=["auto", "fp32", "bf16"], help="PyTorch precision; auto: bf16 where the CPU computes it natively")),
    ("--workers", dict(type=int, of=RUN, metavar="N", help="threads decoding and tiling the next images")),
]
LIMITS = [("--max-megapixels", dict(type=float, metavar="MP", help="refuse larger images from their header (default 100, or SLMCNN_MAX_MEGAPIXELS)"))]
CAMERA = [
    ("--camera", dict(metavar="CAMERA_JSON", help="camera.json from `slmcnn calibrate`: straighten frames; with a profile, judge tiles against this camera's good layers")),
    ("--adapt", dict(type=int, metavar="N", help="learn each build's first N layers into a build memory (default 5 with a camera profile; 0: off; without one at least 4)")),
    ("--error-threshold", dict(type=float, metavar="T", help="sensitivity: above 1 fewer false alarms and more misses (default: the camera's, 1.0 unless calibrate stored another)")),
]
MAPS = [
    ("--map", dict(dest="maps", of=RUN, choices=["fine", "tiles"], help="fine: Error per pixel with named regions; tiles: the reference's 128 px tile grid")),
    ("--photo", dict(of=RUN, choices=["auto", "recoated", "exposed"], help="when the camera takes each layer: after recoating, after exposure, or auto (guessed; camera.json's when --camera)")),
    ("--learn", dict(type=int, of=RUN, metavar="N", help="first layers of each build the fine maps learn from")),
    ("--lessons", dict(metavar="FOLDER", help="reviewers' lessons the fine maps take in (slmcnn teach; default: <camera>.lessons beside --camera)")),
]
MODEL = [("--model", dict(metavar="MODEL", help="model file (default: the shipped model)"))]
FORCE = [("--force", dict(action="store_true", help="replace outputs of the same name (nothing else is touched)"))]
OPTIONS = {
    "train": [
        ("data", dict(nargs="+", help="class folders Powder/ Object/ Error/, an Image;Label CSV, a split.csv or a synth build (several are joined)")),
        ("--out", dict(required=True, metavar="FOLDER", help="run folder for the model, curves and reports (new or empty)")),
        ("--val", dict(nargs="+", help="separate validation data (default: a by-layer split of DATA)")),
        ("--test", dict(nargs="+", help="separate test data (default: a by-layer split of DATA)")),
        ("--arch", dict(of=TRAIN, help="network: slmcnn (the reference) or slmcnn-tiny; with --init, the init model's")),
        ("--epochs", dict(type=int, of=TRAIN, help="most passes over the training data")),
        ("--batch", dict(type=int, of=TRAIN, help="patches per step")),
        ("--lr", dict(type=float, of=TRAIN, help="Adam learning rate")),
        ("--schedule", dict(choices=["constant", "cosine"], of=TRAIN, help="learning rate: constant (the reference) or cosine decay to 0")),
        ("--patience", dict(type=int, of=TRAIN, help="epochs without a better validation accuracy before stopping")),
        ("--seed", dict(type=int, of=TRAIN, help="seed of the split, the initial weights and the augmentation")),
        ("--runs", dict(type=int, of="slmcnn.api:train", help="train N times (seeds seed..seed+N-1), report mean ± std")),
        ("--class-weights", dict(choices=["balanced", "none"], of=TRAIN, help="weigh the loss by inverse class frequency or not")),
        ("--no-flips", dict(action="store_true", help="turn off random horizontal/vertical flips")),
        ("--turns", dict(action="store_true", help="also random quarter turns: for data whose recoater direction varies")),
        ("--augment", dict(choices=["none", "camera"], of=TRAIN, help="camera: draw each patch as another camera might see it")),
        ("--precision", dict(choices=["auto", "fp32", "bf16"], of=TRAIN, help="auto: bf16 autocast where the device computes it natively")),
        ("--time-limit", dict(type=float, metavar="MINUTES", help="start no epoch that would end after this many minutes")),
        ("--device", dict(choices=["auto", "cpu", "cuda"], of=TRAIN, help="where the network trains; auto: a CUDA GPU when PyTorch sees one")),
        ("--nproc", dict(type=int, of="slmcnn.api:train", metavar="N", help="train on N processes (PyTorch DDP; docs/SCALING.md)")),
        ("--init", dict(metavar="MODEL", help="start from this model file (fine-tuning)")),
        ("--anchor", dict(type=float, of=TRAIN, metavar="LAMBDA", help="with --init: pull the weights toward the init model's (L2-SP; the app uses 0.01)")),
        ("--resize", dict(action="store_true", help="scale patches that are not the model's size")),
        ("--quiet", dict(action="store_true", help="no progress bars")), *FORCE,
    ],
    "evaluate": [
        old_form("model"), ("data", dict(nargs="+", help="labelled patches: class folders, a CSV or a synth build")), *MODEL,
        ("--split", dict(choices=["all", "train", "val", "test"], default="all", help="evaluate one part of DATA's by-layer split (seed --seed)")),
        ("--seed", dict(type=int, default=0, help="seed of the split")),
        ("--format", dict(choices=["text", "md", "json"], default="text", help="how the table is printed")),
        ("--out", dict(metavar="FOLDER", help="folder for confusion_matrix.png and report.json")),
        ("--resize", dict(action="store_true", help="scale patches that are not the model's size")), *FORCE,
    ],
    "synth": [
        old_form("out"), ("--out", dict(metavar="FOLDER", help="the build's folder: layers/, masks/, patches/, build.json")),
        ("--layers", dict(type=int, of=SYNTH, help="layers to draw")),
        ("--seed", dict(type=int, of=SYNTH, help="seed of everything drawn")),
        ("--size", dict(type=int, of=SYNTH, help="side of each layer photo in pixels")),
        ("--patch", dict(type=int, of=SYNTH, help="side of each training patch in pixels")),
        ("--direction", dict(of=SYNTH, help="recoater travel: down, up, left, right or random")),
        ("--defects", dict(metavar="NAME=RATE,...", help="per-layer start rates, e.g. streak=0.2,debris=0 (others keep theirs)")),
        ("--error-min-pixels", dict(type=int, of=RULE, help="label rule: error pixels that make a patch Error")),
        ("--object-min-fraction", dict(type=float, of=RULE, help="label rule: part share that makes a patch Object")),
        ("--keep-ambiguous", dict(action="store_true", help="also write patches the rule calls ambiguous")),
        ("--no-patches", dict(action="store_true", help="write layers and masks only")),
        ("--workers", dict(type=int, of="slmcnn.synth.build:generate_build", help="processes drawing layers")),
        ("--preview", dict(action="store_true", help="also write preview.png, a contact sheet")),
        ("--live", dict(action="store_true", help="write one layer at a time into OUT/layers/, as a printer's camera would")),
        ("--interval", dict(type=float, default=1.0, help="seconds between layers with --live")),
        ("--force", dict(action="store_true", help="replace a previous build in OUT")),
        ("--parts", dict(help="part kinds to draw, e.g. circle,ring,lattice (default: all)")),
        ("--config", dict(metavar="JSON", help="file overriding any generator setting, e.g. {\"grain\": [3, 5]} (docs/USER_GUIDE.md#synthetic-builds)")),
    ],
    "predict-layer": [
        ("inputs", dict(nargs="+", metavar="INPUT", help="image files, folders or globs (PNG, JPEG, TIFF; 8/16 bit)")),
        ("--out", dict(required=True, metavar="FOLDER", help="output folder, new or empty")), *FORCE, *MODEL,
        ("--patch", dict(type=int, help="tile size (default: the model's, 128)")),
        ("--stride", dict(type=int, help="tile step (default: the tile size); 64: 50%% overlap, each pixel the mean of its tiles")),
        ("--truth", dict(metavar="FOLDER", help="label masks (as slmcnn synth writes) to score each layer")),
        ("--html", dict(action="store_true", help="also write FOLDER/index.html: the layers by grade, each beside its overlay")),
        ("--write", dict(default="overlay,classes,json", type=lambda kinds: [*kinds.split(","), "attribution"], help="files per layer, any of overlay,classes,json (summary.csv always)")),
        ("--explain", dict(action="store_true", help="also write <stem>.attribution.png (IG over all tiles)")),
        ("--steps", dict(type=int, dest="explain_steps", of=RUN, help="IG steps with --explain")), *BACKEND, *CAMERA, *MAPS, *LIMITS,
        ("--ray", dict(nargs="?", const="", metavar="ADDRESS", help="classify on a Ray cluster at ADDRESS, or a local one (pip install 'slmcnn[ray]'; docs/SCALING.md)")),
        ("--ray-workers", dict(type=int, metavar="N", help="with --ray: N workers of one CPU each (default: one per CPU of the cluster)")),
    ],
    "predict-patches": [
        ("inputs", dict(nargs="+", metavar="INPUT", help="patch images, folders, or a class-folder data set")), *MODEL,
        ("--out", dict(default="ig-figures", metavar="FOLDER", help="folder for the IG figures")),
        ("--json", dict(action="store_true", help="print results as JSON")),
        ("--explain", dict(action="store_true", help="write a 2x2 Integrated Gradients figure per patch")),
        ("--steps", dict(type=int, help="IG gradient evaluations (default 176 with the adaptive rule)")),
        ("--ig-precision", dict(choices=["fp32", "bf16"], default="fp32", help="bf16: about 1.7x faster, 2%% off; needs a fixed --method")),
        ("--method", dict(default="adaptive", choices=["adaptive", "gausslegendre", "riemann_trapezoid", "riemann_middle", "riemann_left", "riemann_right"], help="IG quadrature (riemann_trapezoid is the reference's)")),
        ("--target", dict(choices=CLASSES, type=lambda name: name.capitalize(), help="explain this class instead of the predicted one")),
        ("--baseline", dict(default="black", choices=["black", "blur", "noise"], help="the image IG starts from")),
        ("--resize", dict(action="store_true", help="scale patches that are not the model's size")), *BACKEND, *FORCE,
    ],
    "export": [
        old_form("model"), *MODEL, ("--format", dict(choices=["onnx"], default="onnx", help="file format")),
        ("--out", dict(metavar="FILE", help="output file (default: MODEL with .onnx)")),
        ("--check", dict(nargs="*", default=[], metavar="IMAGE", help="also compare on these patch or layer images")), *FORCE,
    ],
    "calibrate": [
        ("--device", dict(default="auto", choices=["auto", "cpu", "cuda"], help="where the network reads the good frames; auto: a CUDA GPU when PyTorch sees one")),
        ("frame", dict(nargs="+", metavar="FRAME", help="a raw frame showing the bed; 10-50 frames of good layers also learn a camera profile")),
        ("--out", dict(default="camera.json", metavar="FILE", help="the calibration file to write")),
        ("--full-frame", dict(action="store_true", help="the photo is the bed already: no corners, no warp")),
        ("--update", dict(metavar="CAMERA_JSON", help="add the FRAMEs (good layers) to the profile in this camera.json")), *MODEL,
        ("--corners", dict(metavar="X1,Y1,...,X4,Y4", help="the bed's corners clockwise from top-left, instead of detecting them")),
        ("--size", dict(type=int, of="slmcnn.api:calibrate", help="side of the straightened bed in pixels")),
        ("--bed-mm", dict(metavar="W[,H]", help="the bed's side (or width,height) in mm, so alerts and reports speak in mm; with --full-frame too")),
        ("--photo", dict(default="auto", choices=["auto", "recoated", "exposed"], help="when this camera takes each layer, stored for predict-layer and monitor")),
        ("--ignore", dict(action="append", default=[], metavar="X1,Y1,X2,Y2,...", help="a polygon (raw-frame pixels) to ignore; may be repeated")),
        ("--error-threshold", dict(type=float, metavar="T", help="the camera's sensitivity, stored in camera.json (default 1.0; calibrate prints the expected false alarms)")),
        ("--force", dict(action="store_true", help="replace an existing calibration file")),
    ],
    "monitor": [
        ("watch_dir", dict(metavar="FOLDER", help="the folder the camera writes layer photos into")),
        ("--db", dict(required=True, help="SQLite file, or a URL such as postgresql://host/db")),
        ("--out", dict(metavar="FOLDER", help="folder for overlays and alerts.jsonl")), *MODEL,
        ("--build", dict(metavar="NAME", help="name of this build (default: this machine's latest build of the folder)")),
        ("--machine", dict(of=MONITOR, metavar="NAME", help="this printer or computer: builds and the lock are kept per machine and folder, so machines can share a database (default: the host name)")),
        ("--pattern", dict(metavar="REGEX", help="regex whose first group is the layer number (default: the last number in the name)")),
        ("--settle", dict(type=float, of=MONITOR, metavar="SECONDS", help="seconds a file's size must stay unchanged")),
        ("--poll", dict(action="store_true", help="poll the folder instead of OS events (network shares)")),
        ("--retries", dict(type=int, of=MONITOR, metavar="N", help="tries (2 s apart) of an unreadable layer before it is stored as failed")),
        ("--alert-region", dict(type=int, dest="region_tiles", of=GRADES, metavar="N", help="critical: a region of touching Error tiles holds N sure tiles")),
        ("--alert-share", dict(type=float, dest="share", of=GRADES, metavar="F", help="critical: sure Error covers this share of the bed")),
        ("--alert-sure", dict(type=float, dest="sure", of=GRADES, metavar="P", help="a sure tile has Error probability >= P")),
        ("--alert-persist", dict(of=GRADES, field="persist/window", metavar="K/M", help="critical: Error at the same place on K of the last M layers (0: off)")),
        ("--on-alert", dict(metavar="COMMAND", help="shell command run per alerted layer, with SLMCNN_ALERT_* variables")),
        ("--alert-workers", dict(type=int, of=MONITOR, metavar="N", help="--on-alert commands running at once")),
        ("--on-alert-timeout", dict(type=float, of=MONITOR, metavar="SECONDS", help="seconds an --on-alert command may run")),
        ("--exit-when-idle", dict(type=float, metavar="SECONDS", help="stop after this many seconds without a new layer")), *BACKEND, *CAMERA, *MAPS, *LIMITS,
    ],
    "report": [
        old_form("db"), ("--db", dict(help="the monitor's database (SQLite file or URL)")),
        ("--out", dict(default="report.html", metavar="FILE", help="the HTML file to write")), *FORCE,
    ],
    "app": [
        ("--db", dict(action="append", default=[], help="a monitor's database (SQLite file or URL); may be repeated")),
        ("--data", dict(action="append", default=[], metavar="FOLDER", help="a folder of layer photos to label (and folders inside); may be repeated")),
        ("--model", dict(metavar="MODEL", help="model file (default: the one made current in the app, else the shipped model)")),
        ("--camera", dict(metavar="CAMERA_JSON", help="straighten photos of --data folders; anomaly scores from its profile")),
        ("--labels", dict(help="the app's labels database (default: <db>.labels.sqlite beside the first --db)")),
        ("--host", dict(default="127.0.0.1", help="address to bind; anything but this machine needs --token")),
        ("--port", dict(type=int, default=8765, help="port to serve on")),
        ("--token", dict(help="access token (default: made up); required with a --host other than 127.0.0.1")),
        ("--user", dict(help="name stored with each label (default: the login name)")),
        ("--lessons", dict(metavar="FOLDER", help="where a review teaches the fine maps (default: <camera>.lessons beside --camera, else beside the labels)")),
    ],
    "teach": [
        ("photo", dict(nargs="?", metavar="PHOTO", help="the layer photo the verdict is about")),
        ("--as", dict(dest="verdict", choices=["sound", "defect"], help="sound: a false alarm; defect: a confirmed defect")),
        ("--box", dict(action="append", default=[], type=box, metavar="X0,Y0,X1,Y1", help="where, in px of the straightened bed (a region's box in the JSON); may be repeated; a sound verdict without one: the whole bed")),
        ("--camera", dict(metavar="CAMERA_JSON", help="the camera: straightens PHOTO; its lessons are kept beside it")),
        ("--lessons", dict(metavar="FOLDER", help="where lessons are kept (default: <camera>.lessons beside --camera)")),
        ("--list", dict(action="store_true", help="list the lessons kept, and stop")),
        ("--forget", dict(metavar="ID", help="forget the lesson ID, and stop")),
    ],
}
REQUIRED = {"report": ["db"], "synth": ["out"]}  # needed in one form or the other (OLD_FORMS)
# fmt: on
