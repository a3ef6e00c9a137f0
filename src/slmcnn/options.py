"""The options of each `slmcnn` command, as data: (flag, argparse settings) pairs that cli.py adds
to the command's parser. Kept apart from cli.py so the commands' code reads on its own."""

from slmcnn.constants import CLASSES

# fmt: off
BACKEND = [
    ("--backend", dict(default="auto", choices=["auto", "torch", "compiled", "onnx"], help="auto: on a CPU without AMX the fastest of compiled bf16/fp32 and ONNX Runtime fp32/int8, timed once per CPU, torch and model (kept in the cache, named when a job starts); with AMX PyTorch bf16, eager or compiled by what finishes first: a compiled network is kept per model, CPU and torch version in $SLMCNN_CACHE (default ~/.cache/slmcnn) and loads in under a second; auto runs a predict-layer job compiled when the cached network saves more than loading it costs (about 10 layers and up) and never compiles for a job unless that pays off within it, and the monitor uses the compiled network, compiling it in the background when missing (python -m slmcnn.aot compiles ahead). torch: eager; compiled: the cached network, compiled now if missing")),
    ("--precision", dict(default="auto", choices=["auto", "fp32", "bf16"], help="PyTorch precision")),
    ("--workers", dict(type=int, default=2, help="threads decoding and tiling the next images")),
]
LIMITS = [("--max-megapixels", dict(type=float, help="refuse images larger than this, from their header (default 100, or SLMCNN_MAX_MEGAPIXELS)"))]
CAMERA = [
    ("--camera", dict(help="camera.json from `slmcnn calibrate`: straighten raw frames first; with a camera profile every tile also gets an anomaly score (JSON `anomaly`; above 1: unlike this camera's good layers) and the profile decides Error: a tile the network calls Powder is Error when anomalous (above 1, and above its layer's level where the whole layer is farther from the good ones, as after a gain change) unless it is beside a tile the network calls Object (the powder around a part is the network's call), the network's Error stays Error when its anomaly is above 0.5 or when it shares an edge with a tile that is Error so (defects reach over neighbouring tiles; a lone Error on a tile like the good layers' is this camera's look), Object stays Object")),
    ("--adapt", dict(type=int, metavar="N", help="learn the first N layers of each build into a build memory on top of the camera profile, and judge later layers against camera + build; the memory keeps learning sound tiles, never one judged Error, and a first-layer tile the profile calls clearly anomalous is not learned but reported (default 5 with a camera profile; 0: off; without --camera at least 4, the build memory alone). The first N layers are judged by the profile alone (without one, the network alone); a build is one input folder (monitor: as it tells builds apart)")),
    ("--error-threshold", dict(type=float, metavar="T", help="sensitivity: a tile is anomalous when its distance is over T times its threshold (default: the camera's, 1.0 unless `calibrate --error-threshold` stored another; at 1.0 a profile expects about 1 false Error tile per 100 sound layers of the camera it learned, and calibrate prints the rate at 0.8, 1.0, 1.25 and 1.5). Above 1: fewer false alarms, more misses; needs a camera profile or --adapt")),
]
MAPS = [
    ("--map", dict(dest="maps", default="fine", choices=["fine", "tiles"], help="fine: Powder/Object/Error per pixel, Error regions with their type, learned from each build's first layers (default); tiles: the reference's 128 px tile grid")),
    ("--photo", dict(default="auto", choices=["auto", "recoated", "exposed"], help="when the camera takes each layer: after recoating (a part showing through the powder is a defect), after exposure (parts are normal), or auto: learned from each build's first layers")),
    ("--learn", dict(type=int, default=5, metavar="N", help="first layers of each build the fine maps learn from (default 5)")),
]
MODEL = [("--model", dict(help="model file (default: the shipped model)"))]
FORCE = [("--force", dict(action="store_true", help="write into a used output folder or over an existing file (files of the same name are replaced)"))]
OPTIONS = {
    "train": [
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
        ("--precision", dict(choices=["auto", "fp32", "bf16"], default="auto", help="auto: bf16 autocast where the device computes it natively, else fp32")),
        ("--time-limit", dict(type=float, metavar="MINUTES", help="start no epoch that would end after this many minutes (the best model so far is kept); --schedule cosine then decays over the epochs that fit, estimated from the slowest so far")),
        ("--device", dict(choices=["auto", "cpu", "cuda"], default="auto", help="where the network trains: auto takes a CUDA GPU when PyTorch sees one (augmentation runs there too; validation and the test report run on the CPU, as inference does)")),
        ("--nproc", dict(type=int, default=1, metavar="N", help="train on N processes (PyTorch DDP: gloo on the CPU, one GPU each with NCCL), each on its share of every epoch with batches of --batch/N, so the gradient is that of one --batch; one run folder, written once; meant to match one process within seed noise (docs/SCALING.md). Ctrl-C stops without a model")),
        ("--init", dict(help="start from this model file (fine-tuning)")),
        ("--anchor", dict(type=float, default=0.0, metavar="LAMBDA", help="with --init: pull the weights toward the init model's (L2-SP, loss + LAMBDA/2 * |w - w_init|^2), so a fine-tune on a few labels keeps what the model knew (the app uses 0.01)")),
        ("--resize", dict(action="store_true", help="scale patches that are not the model's size")),
        ("--quiet", dict(action="store_true", help="no progress bars")), *FORCE,
    ],
    "evaluate": [
        ("model", {}), ("data", dict(nargs="+")),
        ("--split", dict(choices=["all", "train", "val", "test"], default="all", help="evaluate one part of DATA's by-layer split (seed --seed)")),
        ("--seed", dict(type=int, default=0)), ("--format", dict(choices=["text", "md", "json"], default="text")),
        ("--out", dict(help="folder for confusion_matrix.png and report.json")), ("--resize", dict(action="store_true")), *FORCE,
    ],
    "synth": [
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
        ("--config", dict(help='JSON file overriding any generator setting, e.g. {"grain": [3, 5], "falloff": [0.1, 0.2], "perspective": 0.0, "parts": [2, 6]}')),
    ],
    "predict-layer": [
        ("inputs", dict(nargs="+", metavar="INPUT", help="image files, folders or globs (PNG, JPEG, TIFF; 8/16 bit)")),
        ("--out", dict(required=True, help="output folder, new or empty (with --force files of the same name are replaced, nothing else)")), *FORCE,
        *MODEL, ("--patch", dict(type=int, help="tile size (default: the model's, 128)")),
        ("--stride", dict(type=int, help="tile step (default: patch, no overlap; 64 = 50%% overlap, where a pixel's class is the mean of the covering tiles' probabilities). When a side is not a multiple of the stride, one more tile is placed flush with the far edge, so nothing is cropped")),
        ("--truth", dict(help="folder of label masks (as slmcnn synth writes) to score each layer")), ("--html", dict(action="store_true", help="also write DIR/index.html: each layer beside its overlay")),
        ("--write", dict(default="overlay,classes,json", type=lambda kinds: [*kinds.split(","), "attribution"], help="files per layer, any of overlay,classes,json (default: all three; summary.csv always); what is not asked for is not computed")),
        ("--explain", dict(action="store_true", help="also write <stem>.attribution.png (IG over all tiles)")),
        ("--steps", dict(type=int, default=32, help="IG steps with --explain")), *BACKEND, *CAMERA, *MAPS, *LIMITS,
        ("--ray", dict(nargs="?", const="", metavar="ADDRESS", help="classify on a Ray cluster (pip install 'slmcnn[ray]'): the running cluster at ADDRESS (host:6379, ray://host:10001 or auto), or without one a local cluster started on loopback. Each worker loads the model once and writes the same files per layer; summary.csv and layers.parquet get one row per layer (fractions, tile classes, probabilities). Photos and --out must be at the same paths on every node. A camera profile judges each layer alone (no --adapt); no --html. Give --ray after the inputs, or as --ray=ADDRESS")),
        ("--ray-workers", dict(type=int, metavar="N", help="with --ray: N workers of one CPU each (default: one per CPU of the cluster)")),
    ],
    "predict-patches": [
        ("inputs", dict(nargs="+", metavar="INPUT", help="patch images, folders, or a class-folder data set")), *MODEL,
        ("--out", dict(default="ig-figures", help="folder for IG figures (default: ig-figures)")),
        ("--json", dict(action="store_true", help="print results as JSON")),
        ("--explain", dict(action="store_true", help="write a 2x2 Integrated Gradients figure per patch")),
        ("--steps", dict(type=int, help="IG gradient evaluations (default 176 with the adaptive rule: more converged than the reference's 500 trapezoid steps)")),
        ("--ig-precision", dict(choices=["fp32", "bf16"], default="fp32", help="bf16 is about 1.7x faster on CPUs with native bf16, but its attributions are about 2%% off the converged ones (fp32: under 0.5%%); it needs a fixed --method such as gausslegendre")),
        ("--method", dict(default="adaptive", choices=["adaptive", "gausslegendre", "riemann_trapezoid", "riemann_middle", "riemann_left", "riemann_right"], help="IG quadrature: adaptive (trapezoid rule on a path grid refined where its error is largest) or one of captum's rules (riemann_trapezoid is the reference's)")),
        ("--target", dict(choices=CLASSES, type=lambda name: name.capitalize(), help="explain this class instead of the predicted one")),
        ("--baseline", dict(default="black", choices=["black", "blur", "noise"])),
        ("--resize", dict(action="store_true", help="scale patches that are not the model's size")), *BACKEND, *FORCE,
    ],
    "export": [
        ("model", dict(nargs="?", help="model file (default: the shipped model)")),
        ("--format", dict(choices=["onnx"], default="onnx")), ("--out", dict(help="output file (default: MODEL with .onnx)")),
        ("--check", dict(nargs="*", default=[], metavar="IMAGE", help="also compare on these patch or layer images")), *FORCE,
    ],
    "calibrate": [
        ("frame", dict(nargs="+", metavar="FRAME", help="a raw camera frame showing the bed; several frames of good layers (at least 4, 10-50 best) also learn a camera profile from them: each tile then gets an anomaly score, and Error needs this camera's good layers to disagree")), ("--out", dict(default="camera.json")),
        ("--full-frame", dict(action="store_true", help="the photo is the bed already: no corners, no warp (a profile needs several frames)")),
        ("--update", dict(metavar="CAMERA_JSON", help="add the FRAMEs (good layers) to the profile in this camera.json")), *MODEL,
        ("--corners", dict(help="x1,y1,...,x4,y4 clockwise from top-left, instead of detecting them")),
        ("--size", dict(type=int, default=768, help="side of the straightened bed in pixels")),
        ("--bed-mm", dict(type=float, help="side of the bed in mm, so reports can speak in mm")),
        ("--photo", dict(default="auto", choices=["auto", "recoated", "exposed"], help="when this camera takes each layer, stored for predict-layer and monitor: after recoating (a part showing through the powder is a defect), after exposure (parts are normal), auto: guessed from each build's first layers")),
        ("--ignore", dict(action="append", default=[], metavar="X1,Y1,X2,Y2,...", help="a polygon (raw-frame pixels) to ignore; may be repeated")),
        ("--error-threshold", dict(type=float, metavar="T", help="the camera's sensitivity, stored in camera.json (default 1.0: about 1 false Error tile per 100 sound layers of the profiled camera; above 1 fewer alarms and more misses; calibrate prints the expected rate at 0.8, 1.0, 1.25 and 1.5)")),
        ("--force", dict(action="store_true", help="replace an existing calibration file")),
    ],
    "monitor": [
        ("watch_dir", {}), ("--db", dict(required=True, help="SQLite file, or an SQLAlchemy URL such as postgresql://host/db")),
        ("--out", dict(help="folder for overlays and alerts.jsonl")), *MODEL,
        ("--build", dict(help="name of this build (default: the folder's latest; a new build in the same folder is also recognised when a stored file is written again or layer numbers start again)")),
        ("--machine", dict(default="", help="name of the printer this monitor follows, stored with each build, so that the monitors of several machines can share one database (the report and app tell them apart)")),
        ("--pattern", dict(help="regex whose first group is the layer number (default: the last number in the name that is not part of a date_time stamp; else the stamp orders the layers)")),
        ("--settle", dict(type=float, default=0.5, help="seconds a file's size must stay unchanged")),
        ("--poll", dict(action="store_true", help="poll the folder instead of OS events (network shares)")),
        ("--retries", dict(type=int, default=3, help="tries (2 s apart) of an unreadable layer whose file does not change before it is marked failed; a changed file is tried again")),
        ("--alert-region", dict(type=int, default=3, metavar="N", help="grading: a layer is critical when a region of touching Error tiles holds N sure tiles (default 3)")),
        ("--alert-share", dict(type=float, default=0.1, metavar="F", help="grading: ... or when sure Error tiles cover this share of the bed (default 0.1)")),
        ("--alert-sure", dict(type=float, default=0.9, metavar="P", help="grading: a sure tile has Error probability >= P and, with a camera profile, anomaly >= 1 (default 0.9)")),
        ("--alert-persist", dict(default="3/5", metavar="K/M", help="grading: ... or when Error comes back at the same place (within a tile) on K of the last M layers (default 3/5; 0: off). Any other Error tile makes a layer minor; a minor layer with one Error tile is logged, not pushed to --on-alert")),
        ("--on-alert", dict(help="shell command run once per minor or critical layer (not for a lone minor tile), a few at once; fields in SLMCNN_ALERT_* variables: GRADE, LAYER, FILE, BUILD, MACHINE, OVERLAY, REGIONS (JSON tile boxes), MESSAGE, ID; a failing command is tried again with backoff")),
        ("--alert-workers", dict(type=int, default=4, help="--on-alert commands running at once (a critical layer's starts at once even when all are busy)")),
        ("--on-alert-timeout", dict(type=float, default=10.0, help="seconds an --on-alert command may run")),
        ("--exit-when-idle", dict(type=float, help="stop after this many seconds without a new layer")), *BACKEND, *CAMERA, *MAPS, *LIMITS,
    ],
    "report": [
        ("db", dict(help="the monitor's database (SQLite file or URL)")), ("--out", dict(default="report.html")), *FORCE,
    ],
}
# fmt: on
