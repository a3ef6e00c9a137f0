"""`auto` on a CPU without AMX: the fastest engine is measured once there, not guessed from flags.

Without AMX the engines' order changes from CPU to CPU (bf16 may be native or emulated; compiled
fp32, ONNX Runtime fp32 and int8 swap places), so the candidates are timed on a few batches of
synthetic layer patches, and the fastest whose tiles agree with float32 on at least 99.5% is kept
in aot's cache folder, keyed by CPU, torch version and model (`aot.choice_path`). Later runs read
that record; a record that cannot be read is measured again. Timing compiles the packages (a
minute or two): a job too short to gain that back has it done after it, by `python -m
slmcnn.backends` in a process of its own (`spawn_timing`), and runs eager PyTorch itself.
"""

import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from slmcnn import aot
from slmcnn.backends.base import Backend
from slmcnn.backends.pytorch import TorchBackend
from slmcnn.files import write_text

log = logging.getLogger(__name__)
MIN_AGREEMENT = 0.995  # tiles classified as float32 classifies them
SAMPLE_LAYERS, SAMPLE_SEED = 12, 33  # 432 patches of 128 px: one disagreement is 0.23%
TIMED_PATCHES, ROUNDS = 64, 3
TIMING_SECONDS = 10.0  # exporting the ONNX files and timing the engines, besides compiling
_SPAWNED: dict = {}  # choice_path -> the timing process this process started for it


def precision_of(name: str) -> str:
    """'compiled-bf16' -> 'bf16': candidates are named engine-precision."""
    return name.rpartition("-")[2]


def sample_patches(patch: int) -> np.ndarray:
    """Patches of synthetic layers (what the network was trained on: int8 and bf16 are judged
    where it is sure and where it is not), the same on every machine."""
    from slmcnn.synth.build import SynthSettings, plan_build, render_layer
    from slmcnn.tiles import tile

    plan = plan_build(SynthSettings(layers=SAMPLE_LAYERS, seed=SAMPLE_SEED, jpeg_share=0.0))
    return np.concatenate([tile(render_layer(plan, n).image, patch).patches for n in range(1, SAMPLE_LAYERS + 1)])


def rate(backend: Backend, patches: np.ndarray) -> float:
    """Patches per second of one call."""
    start = time.perf_counter()
    backend.probabilities(patches)
    return len(patches) / (time.perf_counter() - start)


def measure(model: torch.nn.Module, candidates: dict[str, Callable[[], Backend]]) -> tuple[dict, dict[str, Backend]]:
    """Time every candidate (in turn, ROUNDS times, the best kept: a busy moment of the machine
    should not fall on one engine only) and check the tiles of those faster than every float32
    one against float32. Returns the record and the backends built on the way."""
    start = time.perf_counter()
    patches = sample_patches(getattr(getattr(model, "spec", None), "patch", 128))
    built: dict[str, Backend] = {}
    for name, make in candidates.items():
        try:
            built[name] = make()
            built[name].probabilities(patches[:4])  # the first call pays for memory and kernels
        except Exception as exc:  # a missing toolchain or runtime: the others still compete
            built.pop(name, None)
            log.warning("auto: %s unavailable (%s: %s)", name, type(exc).__name__, exc)
    rates = {name: rate(backend, patches[: TIMED_PATCHES // 4]) for name, backend in built.items()}
    for _ in range(ROUNDS):
        fastest = max(rates.values(), default=0.0)
        for name, backend in built.items():
            if rates[name] * 3 > fastest:  # a clearly slower one (emulated bf16: 10x) is spared
                rates[name] = max(rates[name], rate(backend, patches[:TIMED_PATCHES]))
    exact = max((r for n, r in rates.items() if precision_of(n) == "fp32"), default=0.0)
    agreement, reference = {}, None
    for name in sorted(rates, key=rates.get, reverse=True):
        if rates[name] <= exact:
            break
        if precision_of(name) != "fp32":
            if reference is None:
                reference = TorchBackend(model, "fp32").probabilities(patches).argmax(1)
            classes = built[name].probabilities(patches).argmax(1)
            agreement[name] = float((classes == reference).mean())
    record = {
        "rates": {n: round(r, 1) for n, r in rates.items()},
        "agreement": agreement,
        "seconds": round(time.perf_counter() - start, 1),
        **aot.choice_identity(model),
    }
    return record, built


def pick(record: dict, allowed: set[str]) -> str | None:
    """The fastest allowed candidate of a record that classifies as float32 does (>= 99.5%)."""
    fit = [
        name
        for name, value in record["rates"].items()
        if name in allowed and (precision_of(name) == "fp32" or record["agreement"].get(name, 0.0) >= MIN_AGREEMENT)
    ]
    return max(fit, key=lambda name: record["rates"][name], default=None)


def read_record(model: torch.nn.Module) -> dict | None:
    """The measured record for this CPU, torch and model; None when there is none or it cannot be read."""
    path = aot.choice_path(model)
    try:
        record = json.loads(path.read_text())
        if {k: record[k] for k in aot.choice_identity(model)} != aot.choice_identity(model):
            raise ValueError("made for another CPU, torch or model")
        if not all(isinstance(record[k], dict) for k in ("rates", "agreement")):
            raise ValueError("no rates")
        return record
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("auto: %s unreadable (%s); measuring again", path, exc)
        return None


def choose(model: torch.nn.Module, candidates: dict[str, Callable[[], Backend]], allowed: set[str]) -> Backend:
    """The engine `auto` runs: the record's fastest allowed candidate, measured now when this CPU,
    torch and model have no record yet (and written for the runs to come)."""
    record, built = read_record(model), {}
    if record is None:
        log.info(
            "auto: timing the engines on this CPU once (%s; compiling the network, about a minute; "
            "SLMCNN_COMPILE=0: never) ...",
            ", ".join(candidates),
        )
        record, built = measure(model, candidates)
        try:
            write_text(aot.choice_path(model), json.dumps(record, indent=1))
        except OSError as exc:
            log.warning("auto: cannot keep the measurement in %s (%s)", aot.cache_dir(), exc)
    name = pick(record, allowed & set(candidates))
    if name is None:
        raise RuntimeError(f"auto: no engine of {sorted(allowed)} could run here")  # float32 always can
    rates = ", ".join(f"{n} {r:.0f}" for n, r in sorted(record["rates"].items(), key=lambda i: -i[1]))
    log.info("auto: %s, the fastest here (patches/s: %s)", name, rates)
    backend = built.get(name) or candidates[name]()
    backend.chosen = name
    return backend


def timing_seconds(allowed: set[str]) -> float:
    """About how long timing these engines takes here: compiling their packages, then the rest."""
    return aot.compile_seconds() * sum(name.startswith("compiled") for name in allowed) + TIMING_SECONDS


def spawn_timing(model: torch.nn.Module, precision: str = "auto"):
    """`python -m slmcnn.backends` for the model's file, in a process of its own at the
    lowest priority, which times the engines once this process has ended (on a machine this job no
    longer loads) for the jobs after it. None for a model without a file, or while another process
    is timing them."""
    source, path = getattr(model, "source", None), aot.choice_path(model)
    if source is None or not Path(source).is_file() or aot.compiler(path) is not None:
        return None
    if path not in _SPAWNED:  # one waiting process per model, however many jobs this process runs
        command = [sys.executable, "-m", "slmcnn.backends", str(source), "--precision", precision]
        _SPAWNED[path] = aot.detached([*command, "--after", str(os.getpid())])
    return _SPAWNED[path]
