"""Compiled networks paid for once: TorchInductor ahead-of-time packages kept in a cache folder.

A package is the network with its standardisation, compiled by torch.export + AOTInductor (frozen
weights, bf16 autocast inside), for one input type. Its file name is a hash of the model's weights,
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
from slmcnn.folding import for_evaluation
from slmcnn.preprocess import Standardised, unit_scale

log = logging.getLogger(__name__)
FORMAT = 2  # bump when what goes into a package changes (2: keyed by checkpoint.model_hash)
PR_SET_PDEATHSIG = 1
# Small batches keep the activations in the CPU's cache: compiled bf16 ran 2.7x the patches/s of
# batch 256 at 16 patches (2 cores; benchmarks/README.md).
COMPILED_BATCH = 16
DEFAULT_COMPILE_SECONDS = 60.0  # until this machine has compiled once (then: what it took)
OFF = ("0", "off", "no", "false")  # SLMCNN_COMPILE values that stop `auto` compiling
CHECK_PATCHES = 16  # patches a new package is checked on against eager PyTorch
TOLERANCE = {"fp32": 1e-3, "bf16": 0.05}  # largest probability difference from eager in that precision


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


def package_key(model: torch.nn.Module, precision: str, dtype: np.dtype = np.uint8) -> str:
    """The cache key: model weights, precision, input type, patch size, CPU, torch version."""
    patch = getattr(getattr(model, "spec", None), "patch", 128)
    parts = [
        FORMAT,
        type(model).__name__,
        model_hash(model),
        precision,
        np.dtype(dtype).name,
        patch,
        torch.__version__,
        cpu_signature(),
    ]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:32]


def package_path(model: torch.nn.Module, precision: str, dtype: np.dtype = np.uint8) -> Path:
    return cache_dir() / f"{package_key(model, precision, dtype)}.pt2"


def identity(model: torch.nn.Module, precision: str, dtype: np.dtype = np.uint8) -> dict:
    """What a package is made for, as its record states it."""
    return {
        "format": FORMAT,
        "arch": type(model).__name__,
        "model": model_hash(model),
        "precision": precision,
        "dtype": np.dtype(dtype).name,
        "patch": getattr(getattr(model, "spec", None), "patch", 128),
        "torch": torch.__version__,
        "cpu": cpu_signature(),
    }


def record_path(package: Path) -> Path:
    return package.with_suffix(".json")


def cached(model: torch.nn.Module, precision: str, dtype: np.dtype = np.uint8) -> Path | None:
    """The package for this model, precision, input type, CPU and torch, when its record says it
    was made and checked for exactly this; None otherwise (missing, stale or foreign)."""
    path = package_path(model, precision, dtype)
    try:
        record = json.loads(record_path(path).read_text())
    except (OSError, ValueError):
        return None
    if (
        not path.is_file()
        or not isinstance(record, dict)
        or record.get("identity") != identity(model, precision, dtype)
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


def _lock(path: Path) -> bool:
    """Take the right to compile this package: False while another live process holds it; the
    lock of a process that died is taken over."""
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


def compile_package(model: torch.nn.Module, precision: str, dtype: np.dtype = np.uint8) -> Path | None:
    """Compile the package for this model, precision and input type into the cache, check it against
    eager PyTorch, and record both (atomically: a concurrent process sees it whole or not at all);
    None when another process is compiling it now (it will be in the cache when that one is done).
    Raises PackageError, keeping nothing, when the package disagrees with eager PyTorch."""
    path = package_path(model, precision, dtype)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not _lock(path):
        return None
    try:
        return _compile(model, precision, dtype, path)
    finally:
        path.with_suffix(".lock").unlink(missing_ok=True)


def _compile(model: torch.nn.Module, precision: str, dtype: np.dtype, path: Path) -> Path:
    start = time.perf_counter()
    folded = for_evaluation(model.eval().to(memory_format=torch.channels_last))  # as TorchBackend runs it
    patch = getattr(getattr(model, "spec", None), "patch", 128)
    example = torch.zeros((COMPILED_BATCH, patch, patch, 3), dtype=torch.from_numpy(np.zeros(0, dtype)).dtype)
    module = _Exported(folded, precision, unit_scale(np.zeros(0, dtype))).eval()
    batch = torch.export.Dim("batch", min=1, max=4096)
    with torch.inference_mode():
        program = torch.export.export(module, (example,), dynamic_shapes=({0: batch},))
    remove_abandoned(path.parent)
    temporary = path.with_name(f".{path.stem}.{os.getpid()}.tmp.pt2")
    options = {"freezing": True, "aot_inductor.compile_wrapper_opt_level": "O1"}  # this call only
    try:
        torch._inductor.aoti_compile_and_package(program, package_path=str(temporary), inductor_configs=options)
        difference = disagreement(module, load_package(temporary), patch, dtype)
        if difference > TOLERANCE[precision]:
            raise PackageError(f"the compiled network's probabilities differ from eager PyTorch's by {difference:.3g}")
        record_path(path).unlink(missing_ok=True)  # the package is unrecorded until its record is written
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    seconds = time.perf_counter() - start
    made = {"identity": identity(model, precision, dtype), "max_difference": difference, "seconds": round(seconds, 1)}
    write_text(record_path(path), json.dumps(made, indent=1))
    write_text(cache_dir() / "compile.json", json.dumps({"seconds": round(seconds, 1), "precision": precision}))
    log.info("compiled the network in %.0f s into %s", seconds, path)
    return path


@torch.inference_mode()
def disagreement(module: torch.nn.Module, runner: Callable, patch: int, dtype: np.dtype) -> float:
    """The largest probability difference between a package and the module it was compiled from,
    run eagerly, on random and flat patches (the same on every machine)."""
    top = np.iinfo(dtype).max
    patches = np.random.default_rng(0).integers(0, top, (CHECK_PATCHES, patch, patch, 3), endpoint=True, dtype=dtype)
    patches[: CHECK_PATCHES // 4] = top // 2
    x = torch.from_numpy(patches)
    return float((module(x).float() - runner(x).float()).abs().max())


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
    """The package's network as a function of a patch batch. The C++ loader directly: importing
    torch._inductor for aoti_load_package costs seconds, the loader itself a tenth of one."""
    try:
        loader = torch._C._aoti.AOTIModelPackageLoader(str(path), "model", False, 1, -1)
        return lambda patches: loader.run([patches])[0]
    except AttributeError:  # another torch's private API: the public one
        return torch._inductor.aoti_load_package(str(path))


def spawn_compile(model: torch.nn.Module, precision: str, detach: bool = False) -> subprocess.Popen | None:
    """`python -m slmcnn.aot` for the model's file at the lowest CPU priority: tied to this process
    (the monitor's: it ends with it), or with `detach` on its own (a job's: it finishes for the jobs
    after this one, however soon this one ends). None for a model without a file, without a C++
    compiler, or while another process compiles the package."""
    source = getattr(model, "source", None)
    if source is None or not Path(source).is_file():
        return None
    if shutil.which("g++") is None or compiler(package_path(model, precision)) is not None:
        return None
    command = [sys.executable, "-m", "slmcnn.aot", str(source), "--precision", precision]
    quiet = dict(stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if detach:
        log.info(
            "compiling the network for this CPU in the background, once (about %.0f s); the next jobs run it "
            "compiled (SLMCNN_COMPILE=0: never)",
            compile_seconds(),
        )
        return subprocess.Popen(command, **quiet, start_new_session=True, preexec_fn=_lowest_priority)
    log.info("compiling the network in the background; eager PyTorch until then")
    return subprocess.Popen(command, **quiet, preexec_fn=_background)


def _lowest_priority() -> None:
    os.nice(19)


def _background() -> None:
    """In the child: the lowest CPU priority, and on Linux a SIGTERM when the parent dies, however
    it dies (a killed monitor leaves no compiler running)."""
    _lowest_priority()
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def main(argv: list[str] | None = None) -> int:
    """Compile a model's package into the cache (for jobs to come, or in the monitor's background)."""
    from slmcnn.checkpoint import open_model
    from slmcnn.precision import resolve_precision

    parser = argparse.ArgumentParser(prog="python -m slmcnn.aot", description=main.__doc__)
    parser.add_argument("model", nargs="?", help="model file (default: the shipped model)")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    args = parser.parse_args(argv)
    # the monitor ends a background compile with SIGTERM: exit through `finally`, which deletes the
    # half-written package, instead of dying where the signal finds us
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    model, precision = open_model(args.model), resolve_precision(args.precision)
    try:
        path = cached(model, precision) or compile_package(model, precision)
    except PackageError as exc:
        print(f"python -m slmcnn.aot: error: {exc}; nothing kept (eager PyTorch stays in use)", file=sys.stderr)
        return 1
    if path is None:
        print(f"another process ({compiler(package_path(model, precision)) or 'just done'}) is compiling this network")
        return 0
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
