"""Compiled networks paid for once: TorchInductor ahead-of-time packages kept in a cache folder.

A package is the network with its standardisation, compiled by torch.export + AOTInductor (frozen
weights, bf16 autocast inside), for one input type; or its convolution blocks up to given stops over
strips of a whole layer, any size (the fine maps' texture, Network.dense_maps). Its file name is a hash of the model's weights,
the precision, the input type, the CPU and the torch version, and beside it a record (<name>.json)
says what it was made for and that it agreed with eager PyTorch when it was made. A package is
loaded (in a fraction of a second) only where its record says it was made for exactly this; one
without a record (half-copied, an older slmcnn's), with another's record (stale or foreign), or
that does not load is compiled anew, never trusted. One process compiles a package at a time (a
lock file with its pid). The folder is $SLMCNN_CACHE, else ~/.cache/slmcnn. `auto` compiles what
pays off (backends.create_backend), SLMCNN_COMPILE=0 stops it; `python -m slmcnn.aot MODEL` fills
the cache ahead of a job. The folder also keeps `auto`'s measured choice of engine per CPU, torch
and model (backends/choice.py) and the exported ONNX files.
"""

import argparse
import ctypes
import hashlib
import json
import logging
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from slmcnn.checkpoint import model_hash
from slmcnn.files import write_text
from slmcnn.folding import for_evaluation, maps_after
from slmcnn.preprocess import Standardised, unit_scale

log = logging.getLogger(__name__)
FORMAT = 3  # bump when what goes into a package changes (2: keyed by checkpoint.model_hash; 3: stops)
PR_SET_PDEATHSIG = 1
# Small batches keep the activations in the CPU's cache: compiled bf16 ran 2.7x the patches/s of
# batch 256 at 16 patches (2 cores; benchmarks/README.md).
COMPILED_BATCH = 16
DEFAULT_COMPILE_SECONDS = 60.0  # until this machine has compiled once (then: what it took)
TEXTURE_STOPS = (2, 3)  # the blocks after which the fine maps read their texture (texture.DenseTexture)
OFF = ("0", "off", "no", "false")  # SLMCNN_COMPILE values that stop `auto` compiling
CHECK_PATCHES = 16  # patches a new package is checked on against eager PyTorch
MIN_SIDE = 16  # the smallest strip a package of blocks takes (rows and columns; eager below)
CHECK_STRIP = (1, 3, 72, 88)  # the strip a package of blocks is checked on (odd multiples of 8: any size)
# a background process's streams
QUIET = dict(stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
TOLERANCE = {"fp32": 1e-3, "bf16": 0.05}  # largest difference from eager in that precision: of a
# probability, or of a block's map over that map's largest value


class PackageError(RuntimeError):
    """A compiled package that disagrees with eager PyTorch: it is not kept."""


def compiling_allowed() -> bool:
    """False when SLMCNN_COMPILE is 0, off, no or false: `auto` then compiles nothing for a job
    (a package already in the cache is still used); an explicit `compiled` engine still compiles."""
    return os.environ.get("SLMCNN_COMPILE", "").strip().lower() not in OFF


def cache_dir() -> Path:
    """$SLMCNN_CACHE, else ~/.cache/slmcnn (created on first write, not here)."""
    return Path(os.environ.get("SLMCNN_CACHE") or Path.home() / ".cache" / "slmcnn")


def cpu_signature() -> str:
    """What compiled code depends on: architecture, CPU model and instruction-set flags, torch's
    vector ISA."""
    model = flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and not model:
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = " ".join(sorted(value.split()))
    except OSError:
        model = platform.processor()
    return f"{platform.machine()}|{model}|{flags}|{torch.backends.cpu.get_cpu_capability()}"


Stops = tuple[int, ...] | None  # the blocks a package holds: None, the whole network on patches;
# (2, 3), its blocks 1-3 over a float32 image strip, returning the maps after blocks 2 and 3


def package_key(model: torch.nn.Module, precision: str, dtype: np.dtype = np.uint8, stops: Stops = None) -> str:
    """The cache key: model weights, precision, input type, patch size, stops, CPU, torch version."""
    return hashlib.sha256(json.dumps(list(identity(model, precision, dtype, stops).values())).encode()).hexdigest()[:32]


def package_path(model: torch.nn.Module, precision: str, dtype: np.dtype = np.uint8, stops: Stops = None) -> Path:
    return cache_dir() / f"{package_key(model, precision, dtype, stops)}.pt2"


def identity(model: torch.nn.Module, precision: str, dtype: np.dtype = np.uint8, stops: Stops = None) -> dict:
    """What a package is made for, as its record states it."""
    return {
        "format": FORMAT,
        "arch": type(model).__name__,
        "model": model_hash(model),
        "precision": precision,
        "dtype": np.dtype(dtype).name,
        "patch": getattr(getattr(model, "spec", None), "patch", 128),
        "stops": list(stops) if stops else None,
        "torch": torch.__version__,
        "cpu": cpu_signature(),
    }


def record_path(package: Path) -> Path:
    return package.with_suffix(".json")


def cached(model: torch.nn.Module, precision: str, dtype: np.dtype = np.uint8, stops: Stops = None) -> Path | None:
    """The package for this model, precision, input type, stops, CPU and torch, when its record says
    it was made and checked for exactly this; None otherwise (missing, stale or foreign)."""
    path = package_path(model, precision, dtype, stops)
    try:
        record = json.loads(record_path(path).read_text())
    except (OSError, ValueError):
        return None
    if (
        not path.is_file()
        or not isinstance(record, dict)
        or record.get("identity") != identity(model, precision, dtype, stops)
    ):
        return None
    return path


def forget(path: Path) -> None:
    """Remove a package and its record (one that does not load is never tried again)."""
    record_path(path).unlink(missing_ok=True)
    path.unlink(missing_ok=True)


def compiler(path: Path) -> int | None:
    """The pid of the live process compiling this package, if one is."""
    try:
        pid = int(path.with_suffix(".lock").read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):  # no lock, a garbled one, or its process is gone
        return None
    return pid


def lock(path: Path) -> bool:
    """Take the right to make this file (a package, `auto`'s timing): False while another live
    process holds it; the lock of a process that died is taken over."""
    lock = path.with_suffix(".lock")
    for _ in range(2):
        try:
            descriptor = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            if compiler(path) is not None:
                return False
            lock.unlink(missing_ok=True)
            continue
        with os.fdopen(descriptor, "w") as file:
            file.write(str(os.getpid()))
        return True
    return False


def choice_identity(model: torch.nn.Module) -> dict[str, str]:
    """What `auto`'s measured choice of engine (backends/choice.py) holds for: CPU, torch, model."""
    return {"cpu": cpu_signature(), "torch": torch.__version__, "model": model_hash(model)}


def choice_path(model: torch.nn.Module) -> Path:
    """Where that choice is kept: beside the packages, named by what it holds for."""
    key = hashlib.sha256(json.dumps([FORMAT, choice_identity(model)], sort_keys=True).encode()).hexdigest()[:32]
    return cache_dir() / f"choice-{key}.json"


class _Exported(torch.nn.Module):
    """The standardised network for one input type, with bf16 autocast inside the graph."""

    def __init__(self, model: torch.nn.Module, precision: str, scale: float):
        super().__init__()
        self.net, self.bf16, self.scale = Standardised(model), precision == "bf16", scale

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            return self.net(patches, self.scale)


class _Blocks(torch.nn.Module):
    """The folded network's blocks up to the last stop over a (1, 3, H, W) float32 strip, standardised
    by the caller: the float32 maps after each stop, bf16 autocast inside the graph."""

    def __init__(self, model: torch.nn.Module, precision: str, stops: tuple[int, ...]):
        super().__init__()
        self.net, self.bf16, self.stops = model, precision == "bf16", tuple(stops)

    def forward(self, strip: torch.Tensor) -> tuple[torch.Tensor, ...]:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            maps = maps_after(self.net, strip, self.stops)
        return tuple(m.float() for m in maps)


def compile_package(
    model: torch.nn.Module, precision: str, dtype: np.dtype = np.uint8, stops: Stops = None
) -> Path | None:
    """Compile the package for this model, precision, input type and stops into the cache, check it
    against eager PyTorch, and record both (atomically: a concurrent process sees it whole or not at
    all); None when another process is compiling it now (it will be in the cache when that one is
    done). Raises PackageError, keeping nothing, when the package disagrees with eager PyTorch."""
    path = package_path(model, precision, dtype, stops)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not lock(path):
        return None
    try:
        return _compile(model, precision, dtype, stops, path)
    finally:
        path.with_suffix(".lock").unlink(missing_ok=True)


def _program(model: torch.nn.Module, precision: str, dtype: np.dtype, stops: Stops):
    """(the module to export, the exported program, the inputs it is checked on)."""
    folded = for_evaluation(model.eval().to(memory_format=torch.channels_last))  # as TorchBackend runs it
    if stops:
        module = _Blocks(folded, precision, stops).eval()
        example = torch.zeros(CHECK_STRIP).contiguous(memory_format=torch.channels_last)
        # any size of strip: the blocks' pooling floors odd sides, which the graph keeps
        sides = {2: torch.export.Dim.DYNAMIC(min=MIN_SIDE), 3: torch.export.Dim.DYNAMIC(min=MIN_SIDE)}
        with torch.inference_mode():
            program = torch.export.export(module, (example,), dynamic_shapes=(sides,))
        return module, program, check_strips()
    patch = getattr(getattr(model, "spec", None), "patch", 128)
    example = torch.zeros((COMPILED_BATCH, patch, patch, 3), dtype=torch.from_numpy(np.zeros(0, dtype)).dtype)
    module = _Exported(folded, precision, unit_scale(np.zeros(0, dtype))).eval()
    batch = torch.export.Dim("batch", min=1, max=4096)
    with torch.inference_mode():
        program = torch.export.export(module, (example,), dynamic_shapes=({0: batch},))
    return module, program, [check_patches(patch, dtype)]


def _compile(model: torch.nn.Module, precision: str, dtype: np.dtype, stops: Stops, path: Path) -> Path:
    start = time.perf_counter()
    module, program, inputs = _program(model, precision, dtype, stops)
    remove_abandoned(path.parent)
    temporary = path.with_name(f".{path.stem}.{os.getpid()}.tmp.pt2")
    options = {"freezing": True, "aot_inductor.compile_wrapper_opt_level": "O1"}  # this call only
    what = "blocks' maps" if stops else "network's probabilities"
    try:
        torch._inductor.aoti_compile_and_package(program, package_path=str(temporary), inductor_configs=options)
        runner = load_outputs(temporary) if stops else load_package(temporary)
        difference = disagreement(module, runner, inputs, relative=bool(stops))
        if difference > TOLERANCE[precision]:
            raise PackageError(f"the compiled {what} differ from eager PyTorch's by {difference:.3g}")
        record_path(path).unlink(missing_ok=True)  # the package is unrecorded until its record is written
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    seconds = time.perf_counter() - start
    made = {
        "identity": identity(model, precision, dtype, stops),
        "max_difference": difference,
        "seconds": round(seconds, 1),
    }
    write_text(record_path(path), json.dumps(made, indent=1))
    if not stops:  # what `auto` weighs a job against: the network's compilation
        write_text(cache_dir() / "compile.json", json.dumps({"seconds": round(seconds, 1), "precision": precision}))
    log.info("compiled the %s in %.0f s into %s", "texture's blocks" if stops else "network", seconds, path)
    return path


def check_patches(patch: int, dtype: np.dtype) -> torch.Tensor:
    """Random and flat patches (the same on every machine) a network's package is checked on."""
    top = np.iinfo(dtype).max
    patches = np.random.default_rng(0).integers(0, top, (CHECK_PATCHES, patch, patch, 3), endpoint=True, dtype=dtype)
    patches[: CHECK_PATCHES // 4] = top // 2
    return torch.from_numpy(patches)


def check_strips() -> list[torch.Tensor]:
    """Standardised strips a package of blocks is checked on: the size it was traced at, and
    another with odd sides (the same on every machine)."""
    rng = np.random.default_rng(0)
    sides = [CHECK_STRIP, (1, 3, CHECK_STRIP[2] + 41, CHECK_STRIP[3] + 57)]
    return [
        torch.from_numpy(rng.standard_normal(side, dtype=np.float32)).contiguous(memory_format=torch.channels_last)
        for side in sides
    ]


@torch.inference_mode()
def disagreement(
    module: torch.nn.Module, runner: Callable, inputs: list[torch.Tensor], relative: bool = False
) -> float:
    """The largest difference between a package's outputs and the module's it was compiled from,
    run eagerly (over each output's largest value where `relative`)."""
    largest = 0.0
    for x in inputs:
        expected, got = module(x), runner(x)
        for a, b in zip(*(o if isinstance(o, (tuple, list)) else [o] for o in (expected, got)), strict=True):
            difference = float((a.float() - b.float()).abs().max())
            largest = max(largest, difference / max(float(a.abs().max()), 1e-6) if relative else difference)
    return largest


def remove_abandoned(folder: Path) -> list[Path]:
    """Delete half-written packages whose compiling process is gone (killed hard, or the machine
    stopped), so the cache does not fill with them; those of a running process stay."""
    removed = []
    for partial in folder.glob(".*.tmp.pt2"):
        try:
            os.kill(int(partial.name.split(".")[-3]), 0)
        except ProcessLookupError:
            partial.unlink(missing_ok=True)
            removed.append(partial)
        except (ValueError, PermissionError):  # not our name, or another user's live process
            continue
    return removed


def compile_seconds() -> float:
    """How long the last compilation on this machine took (a default before the first)."""
    try:
        return float(json.loads((cache_dir() / "compile.json").read_text())["seconds"])
    except (OSError, ValueError, KeyError, TypeError):
        return DEFAULT_COMPILE_SECONDS


def load_package(path: Path) -> Callable[[torch.Tensor], torch.Tensor]:
    """A network's package as a function of a patch batch (its probabilities)."""
    outputs = load_outputs(path)
    return lambda patches: outputs(patches)[0]


def load_outputs(path: Path) -> Callable[[torch.Tensor], list[torch.Tensor]]:
    """The package as a function of its input, all its outputs in a list. The C++ loader directly:
    importing torch._inductor for aoti_load_package costs seconds, the loader itself a tenth of one."""
    try:
        loader = torch._C._aoti.AOTIModelPackageLoader(str(path), "model", False, 1, -1)
        return lambda x: loader.run([x])
    except AttributeError:  # another torch's private API: the public one
        run = torch._inductor.aoti_load_package(str(path))
        return lambda x: list(out) if isinstance(out := run(x), (tuple, list)) else [out]


def spawn_compile(
    model: torch.nn.Module, precision: str, detach: bool = False, stops: Stops = None
) -> subprocess.Popen | None:
    """`python -m slmcnn.aot` for the model's file at the lowest CPU priority: tied to this process
    (the monitor's: it ends with it), or with `detach` on its own (a job's: it finishes for the jobs
    after this one, however soon this one ends). It compiles the network's package, or with `stops`
    the blocks' package alone. None for a model without a file, without a C++ compiler, or while
    another process compiles that package."""
    source = getattr(model, "source", None)
    if source is None or not Path(source).is_file():
        return None
    if shutil.which("g++") is None or compiler(package_path(model, precision, stops=stops)) is not None:
        return None
    command = [sys.executable, "-m", "slmcnn.aot", str(source), "--precision", precision]
    if stops:
        command += ["--stops", ",".join(map(str, stops))]
    what = "the fine maps' texture" if stops else "the network"
    if detach:
        log.info(
            "compiling %s for this CPU in the background, once (about %.0f s); the next jobs run it "
            "compiled (SLMCNN_COMPILE=0: never)",
            what,
            compile_seconds(),
        )
        return detached(command)
    log.info("compiling %s in the background; eager PyTorch until then", what)
    return subprocess.Popen(command, **QUIET, preexec_fn=_background)


def detached(command: list[str]) -> subprocess.Popen:
    """A process of its own at the lowest CPU priority, which finishes however soon this one ends."""
    return subprocess.Popen(command, **QUIET, start_new_session=True, preexec_fn=_lowest_priority)


def _lowest_priority() -> None:
    os.nice(19)


def _background() -> None:
    """In the child: the lowest CPU priority, and on Linux a SIGTERM when the parent dies, however
    it dies (a killed monitor leaves no compiler running)."""
    _lowest_priority()
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def main(argv: list[str] | None = None) -> int:
    """Compile a model's packages into the cache (for jobs to come, or in the monitor's background):
    the network and the fine maps' texture blocks, or with --stops those blocks alone."""
    from slmcnn.checkpoint import open_model
    from slmcnn.precision import resolve_precision

    parser = argparse.ArgumentParser(prog="python -m slmcnn.aot", description=main.__doc__)
    parser.add_argument("model", nargs="?", help="model file (default: the shipped model)")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--stops", type=_stops, help="only the blocks up to these stops, e.g. 2,3 (the texture's)")
    args = parser.parse_args(argv)
    # the monitor ends a background compile with SIGTERM: exit through `finally`, which deletes the
    # half-written package, instead of dying where the signal finds us
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    model, precision = open_model(args.model), resolve_precision(args.precision)
    wanted = [args.stops] if args.stops else [None, *([TEXTURE_STOPS] if _has_texture(model) else [])]
    for stops in wanted:
        what = "the texture's blocks" if stops else "this network"
        try:
            path = cached(model, precision, stops=stops) or compile_package(model, precision, stops=stops)
        except Exception as exc:  # disagreeing with eager, or an Inductor limitation: one line, eager stays
            print(f"python -m slmcnn.aot: error: {what}: {exc}".splitlines()[0], file=sys.stderr)
            print("nothing kept (eager PyTorch stays in use)", file=sys.stderr)
            return 1
        if path is None:
            busy = compiler(package_path(model, precision, stops=stops)) or "just done"
            print(f"another process ({busy}) is compiling {what}")
        else:
            print(path)
    return 0


def _stops(text: str) -> tuple[int, ...]:
    try:
        stops = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"stops are block numbers separated by commas, e.g. 2,3 (got {text!r})"
        ) from None
    if not stops or stops[0] < 1 or list(stops) != sorted(set(stops)):
        raise argparse.ArgumentTypeError(f"stops are ascending block numbers from 1, e.g. 2,3 (got {text!r})")
    return stops


def _has_texture(model: torch.nn.Module) -> bool:
    """The fine maps read the model's blocks up to TEXTURE_STOPS: it has blocks, and that many."""
    features = getattr(model, "features", None)
    return hasattr(model, "blocks") and features is not None and len(features) >= TEXTURE_STOPS[-1]


if __name__ == "__main__":
    sys.exit(main())
