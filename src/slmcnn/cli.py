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
        p = sub.add_parser(name, help=help_text, description=f"{help_text}\n\nexample:\n  {example}",
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.set_defaults(handler=globals()[f"cmd_{name.replace('-', '_')}"])
        return p

    p = command("train", "Train the CNN on labelled patches (class folders, reference CSV or a synth build).",
                "slmcnn train builds/train --val builds/val --out runs/first --epochs 30")
    p.add_argument("data", nargs="+", help="class folders Powder/ Object/ Error/, an Image;Label CSV, a split.csv or a synth build (several are joined)")
    p.add_argument("--out", required=True, help="run folder for the model, curves and reports")
    p.add_argument("--val", nargs="+", help="separate validation data (default: a by-layer split of DATA)")
    p.add_argument("--test", nargs="+", help="separate test data (default: a by-layer split of DATA)")
    p.add_argument("--arch", default="slmcnn", help="network: slmcnn (the reference) or slmcnn-tiny")
    p.add_argument("--epochs", type=int, default=150)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--patience", type=int, default=20, help="early stopping on validation accuracy")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--runs", type=int, default=1, help="train N times (seeds seed..seed+N-1), report mean ± std")
    p.add_argument("--class-weights", choices=["balanced", "none"], default="balanced")
    p.add_argument("--no-flips", action="store_true", help="turn off random horizontal/vertical flips")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                   help="auto: bf16 autocast where the CPU has native bf16, else fp32")
    p.add_argument("--init", help="start from this model file (fine-tuning)")
    p.add_argument("--resize", action="store_true", help="scale patches that are not the model's size")
    p.add_argument("--quiet", action="store_true", help="no progress bars")

    p = command("evaluate", "Score a model on labelled patches: the reference's table and a confusion matrix.",
                "slmcnn evaluate runs/first/model.safetensors builds/test --format md")
    p.add_argument("model")
    p.add_argument("data", nargs="+")
    p.add_argument("--split", choices=["all", "train", "val", "test"], default="all",
                   help="evaluate one part of DATA's by-layer split (seed --seed)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--format", choices=["text", "md", "json"], default="text")
    p.add_argument("--out", help="folder for confusion_matrix.png and report.json")
    p.add_argument("--resize", action="store_true")

    p = command("synth", "Generate a synthetic build: layer photos, label masks, patches and build.json.",
                "slmcnn synth builds/demo --layers 20 --seed 1 --preview")
    p.add_argument("out")
    p.add_argument("--layers", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=768)
    p.add_argument("--patch", type=int, default=128)
    p.add_argument("--direction", default="down", help="recoater travel: down, up, left, right or random")
    p.add_argument("--defects", help="per-layer start rates, e.g. streak=0.2,debris=0 (others keep defaults)")
    p.add_argument("--error-min-pixels", type=int, default=120, help="label rule: error pixels that make a patch Error")
    p.add_argument("--object-min-fraction", type=float, default=0.05, help="label rule: part share that makes a patch Object")
    p.add_argument("--keep-ambiguous", action="store_true", help="also write patches the rule calls ambiguous")
    p.add_argument("--no-patches", action="store_true", help="write layers and masks only")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--preview", action="store_true", help="also write preview.png, a contact sheet")
    p.add_argument("--live", action="store_true", help="write one layer at a time (atomic rename)")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between layers with --live")
    p.add_argument("--force", action="store_true", help="replace a previous build in OUT")
    return parser


def cmd_train(args) -> int:
    from slmcnn.train import TrainConfig, run_training

    if args.runs < 1 or args.epochs < 1 or args.batch < 1:
        raise SlmcnnError("--runs, --epochs and --batch must be at least 1")
    config = TrainConfig(
        arch=args.arch, epochs=args.epochs, batch=args.batch, lr=args.lr, patience=args.patience, seed=args.seed,
        class_weights=args.class_weights, flips=not args.no_flips, precision=args.precision, init=args.init,
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
    settings = SynthSettings(
        layers=args.layers, seed=args.seed, size=args.size, patch=args.patch, direction=args.direction,
        defect_rates=rates, label_rule=LabelRule(args.error_min_pixels, args.object_min_fraction),
        keep_ambiguous=args.keep_ambiguous, write_patches=not args.no_patches,
    )
    with Progress(transient=True) as bar:
        task = bar.add_task("layers", total=args.layers)
        info = generate_build(
            settings, args.out, force=args.force, workers=args.workers,
            live_interval=args.interval if args.live else None,
            progress=lambda layer: bar.update(task, completed=layer), preview=args.preview,
        )
    defects = sum(len(layer["defects"]) for layer in info["layers"])
    print(f"wrote {args.layers} layers to {args.out} in {info['seconds']:.1f}s "
          f"({args.layers / info['seconds']:.1f} layers/s); patches {info['patch_counts']}; {defects} defect instances")
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
