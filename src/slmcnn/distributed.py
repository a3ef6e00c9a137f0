"""Training in several processes (`train --nproc N`) with PyTorch's DistributedDataParallel: gloo on
the CPU, NCCL on GPUs (one per process). Large labelled sets train faster where one process cannot
use every core or GPU; the loop and its settings are one process's, so its result should be too,
within seed noise (docs/SCALING.md says what has been measured).

The parent loads the data once and hands it to N spawned processes in shared memory; each runs
`train.fit`'s loop as a `Ranks` on its share of every epoch (DistributedSampler) with batches of
batch/N, so the averaged gradient is that of one batch of `batch`. Validation is split over the
processes too. Rank 0 alone logs (through the parent) and hands its model back; the parent writes
the run folder as one process does.

    reports = run_training(data, "runs/ddp", config, trainer=trainer(2))
"""

import os
import signal
import sys
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler

from slmcnn.errors import SettingsError, SlmcnnError
from slmcnn.train import FitResult, OneProcess, TrainConfig, fit, initial_model
from slmcnn.validate import whole


class Ranks(OneProcess):
    """One process's part of a distributed training run."""

    def __init__(self, rank: int, size: int, seed: int, cuda: bool):
        self.rank, self.size, self.seed, self.cuda = rank, size, seed, cuda
        self.cpu = dist.new_group(backend="gloo") if cuda else None  # NCCL moves GPU tensors only

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        return DistributedDataParallel(model, device_ids=[self.rank] if self.cuda else None)

    def order(self, count: int, generator: torch.Generator, epoch: int) -> torch.Tensor:
        sampler = DistributedSampler(range(count), self.size, self.rank, shuffle=True, seed=self.seed)
        sampler.set_epoch(epoch)
        return torch.tensor(list(sampler))

    def finish_epoch(self, model: torch.nn.Module, *sums: torch.Tensor | int) -> list[float]:
        """The sums over the processes; rank 0's BatchNorm statistics for all, so that every process
        validates (and keeps) the same network."""
        for buffer in model.buffers():
            dist.broadcast(buffer, 0)
        total = torch.tensor([float(value) for value in sums], dtype=torch.float64)
        dist.all_reduce(total, group=self.cpu)
        return total.tolist()

    def spread(self, evaluator) -> "SharedEvaluation":
        return SharedEvaluation(evaluator, self)

    def same(self, seconds: float) -> float:
        value = torch.tensor([seconds], dtype=torch.float64)
        dist.broadcast(value, 0, group=self.cpu)
        return value.item()


class SharedEvaluation:
    """Validation probabilities, each process computing every size-th patch and all gathering them."""

    def __init__(self, evaluator, ranks: Ranks):
        self.evaluator, self.ranks = evaluator, ranks

    def probabilities(self, patches: np.ndarray) -> np.ndarray:
        rank, size, count = self.ranks.rank, self.ranks.size, len(patches)
        mine = torch.from_numpy(self.evaluator.probabilities(patches[rank::size]))
        padded = torch.zeros(-(-count // size), mine.shape[1], dtype=mine.dtype)
        padded[: len(mine)] = mine
        parts = [torch.empty_like(padded) for _ in range(size)]
        dist.all_gather(parts, padded, group=self.ranks.cpu)
        out = np.empty((count, mine.shape[1]), np.float32)
        for r, part in enumerate(parts):
            out[r::size] = part[: len(out[r::size])].numpy()
        return out


def trainer(nproc: int, config: TrainConfig) -> Callable[..., FitResult]:
    """`fit` on `nproc` processes, for run_training (one process: fit itself)."""
    whole(nproc, "nproc", 1)
    gpus = torch.cuda.device_count() if config.resolved_device().type == "cuda" else None
    if gpus is not None and nproc > gpus:
        raise SettingsError(f"`nproc` {nproc} on the GPU needs one GPU per process; PyTorch sees {gpus}")
    if nproc == 1:
        return fit

    def fit_on_ranks(config: TrainConfig, train_x, train_y, val_x, val_y, log, show_progress) -> FitResult:
        return _spawn(nproc, config, (train_x, train_y, val_x, val_y), log, show_progress)

    return fit_on_ranks


def _spawn(nproc: int, config: TrainConfig, arrays: tuple, log, show_progress: bool) -> FitResult:
    """Start the processes, pass rank 0's log lines on, and return its result."""
    shared = [torch.from_numpy(np.ascontiguousarray(a)).share_memory_() for a in arrays]
    queue = mp.get_context("spawn").SimpleQueue()
    with tempfile.TemporaryDirectory(prefix="slmcnn-ddp-") as folder:
        store = f"file://{Path(folder) / 'store'}"  # the processes meet in a file: no port, nothing on the network
        args = (nproc, store, config, shared, queue, show_progress)
        processes = mp.start_processes(_rank, args, nprocs=nproc, join=False, start_method="spawn")
        messages: list = []
        try:
            while not processes.join(timeout=0.1):
                while not queue.empty():
                    _take(queue.get(), log, messages)
        except mp.ProcessRaisedException:
            while not queue.empty():
                _take(queue.get(), log, messages)
            errors = [payload for kind, payload in messages if kind == "error"]
            if errors:
                raise errors[0] from None
            raise
        except KeyboardInterrupt:
            for process in processes.processes:
                process.terminate()
            raise
        while not queue.empty():
            _take(queue.get(), log, messages)
    state, figures = next(payload for kind, payload in messages if kind == "done")
    model = initial_model(config)
    model.load_state_dict({name: torch.from_numpy(value) for name, value in state.items()})
    return FitResult(model.eval(), **figures)


def _take(message: tuple, log, messages: list) -> None:
    if message[0] == "log":
        log(message[1])
    else:
        messages.append(message)


def _rank(rank: int, size: int, store: str, config: TrainConfig, arrays, queue, show_progress: bool) -> None:
    """One process: join the group, train its part, and (rank 0) send the model back."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it stops all processes
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // size))
    cuda = config.resolved_device().type == "cuda"
    if cuda:
        torch.cuda.set_device(rank)
    dist.init_process_group("nccl" if cuda else "gloo", init_method=store, rank=rank, world_size=size)
    try:
        log = (lambda line: queue.put(("log", line))) if rank == 0 else (lambda line: None)
        train_x, train_y, val_x, val_y = (a.numpy() for a in arrays)
        share = replace(config, batch=-(-config.batch // size))
        team = Ranks(rank, size, config.seed, cuda)
        result = fit(share, train_x, train_y, val_x, val_y, log, show_progress and rank == 0, team)
        if rank == 0:
            state = {name: value.numpy().copy() for name, value in result.model.state_dict().items()}
            figures = {
                "history": result.history, "best_epoch": result.best_epoch,
                "best_val_accuracy": result.best_val_accuracy, "interrupted": result.interrupted,
                "seconds": result.seconds,
            }  # fmt: skip
            queue.put(("done", (state, figures)))
        dist.barrier()  # no process tears its group down while another still talks to it
    except SlmcnnError as exc:
        queue.put(("error", exc))
        raise
    finally:
        dist.destroy_process_group()
    # its work is sent: the process leaves at once, as a rank torn down by the interpreter at exit,
    # DDP's and gloo's threads still holding tensors, aborted now and then (SIGABRT, under load)
    sys.stdout.flush(), sys.stderr.flush()
    os._exit(0)
