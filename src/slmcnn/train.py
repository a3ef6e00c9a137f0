"""Training with the reference's recipe: Adam 1e-4, batch 64, balanced class weights, random flips,
early stopping on validation accuracy with the best weights restored. Plain loop, no framework."""

import copy
import csv
import io
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from sklearn.utils.class_weight import compute_class_weight

from slmcnn import checkpoint, render
from slmcnn.augment import AUGMENTATIONS, camera_jitter
from slmcnn.backends import TorchBackend
from slmcnn.constants import CLASSES
from slmcnn.data import load_patches, make_splits, warn_degenerate
from slmcnn.errors import SettingsError
from slmcnn.files import run_folder, writable, write_text
from slmcnn.memory import keep_freed_memory
from slmcnn.metrics import Report, compute_report, summarise_runs
from slmcnn.model import create_model
from slmcnn.precision import DEVICES, resolve_device, resolve_precision
from slmcnn.preprocess import prepare

logger = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    arch: str = "slmcnn"
    epochs: int = 150
    batch: int = 64
    lr: float = 1e-4
    schedule: str = "constant"  # or "cosine": decays to 0 over `epochs` (or the epochs `time_limit` allows)
    patience: int = 20
    seed: int = 0
    class_weights: str = "balanced"  # or "none"
    flips: bool = True
    turns: bool = False  # also random quarter turns: for data whose recoater direction varies
    augment: str = "none"  # or "camera": each patch as another camera might see it (slmcnn.augment)
    precision: str = "auto"  # auto | fp32 | bf16
    device: str = "auto"  # auto (a CUDA GPU when there is one) | cpu | cuda
    init: str | None = None
    anchor: float = 0.0  # with init: pull the weights toward the init model's (L2-SP), keeping what it knew
    patch: int = 128
    time_limit: float | None = None  # minutes: no epoch is started that would end after this

    def __post_init__(self):
        for name in ("epochs", "batch", "patience", "seed", "patch"):
            value = getattr(self, name)
            if (
                not isinstance(value, int)
                or isinstance(value, bool)
                or value < (0 if name in ("patience", "seed") else 1)
            ):
                raise SettingsError(
                    f"`{name}` must be a whole number of at least {0 if name in ('patience', 'seed') else 1} (got {value!r})"
                )
        if not isinstance(self.lr, int | float) or not math.isfinite(self.lr) or not 0 < self.lr <= 1:
            raise SettingsError(f"`lr` must be a number above 0 and at most 1 (got {self.lr!r})")
        if self.class_weights not in ("balanced", "none"):
            raise SettingsError(f"`class_weights` must be balanced or none (got {self.class_weights!r})")
        if self.schedule not in ("constant", "cosine"):
            raise SettingsError(f"schedule must be constant or cosine (got {self.schedule!r})")
        if self.turns and not self.flips:
            raise SettingsError("`turns` adds quarter turns to the flips; it cannot be used with `flips=False`")
        if self.augment not in AUGMENTATIONS:
            raise SettingsError(f"augment must be one of {', '.join(AUGMENTATIONS)} (got {self.augment!r})")
        if not isinstance(self.anchor, int | float) or not math.isfinite(self.anchor) or self.anchor < 0:
            raise SettingsError(f"`anchor` must be a number of 0 or more (got {self.anchor!r})")
        if self.anchor and not self.init:
            raise SettingsError("`anchor` pulls the weights toward the `init` model's: give `init` too")
        if self.time_limit is not None and not (isinstance(self.time_limit, int | float) and self.time_limit > 0):
            raise SettingsError(f"`time_limit` must be a number of minutes above 0 (got {self.time_limit!r})")
        if self.device not in DEVICES:
            raise SettingsError(f"device must be one of {', '.join(DEVICES)} (got {self.device!r})")

    def resolved_device(self) -> torch.device:
        return resolve_device(self.device)

    def resolved_precision(self) -> str:
        """Training precision: `auto` is bf16 where the device computes it natively (as inference)."""
        return resolve_precision(self.precision, self.resolved_device())


@dataclass
class FitResult:
    model: torch.nn.Module
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_val_accuracy: float = 0.0
    interrupted: bool = False
    seconds: float = 0.0


class OneProcess:
    """How `fit` trains in one process. distributed.Ranks trains the same loop in several (DDP): each
    process its share of every epoch, and the sums, statistics and decisions the same in all."""

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The network the training batches go through."""
        return model

    def order(self, count: int, generator: torch.Generator, epoch: int) -> torch.Tensor:
        """This process's training patches of `epoch`, in the order it trains them."""
        return torch.randperm(count, generator=generator)

    def finish_epoch(self, model: torch.nn.Module, *sums: torch.Tensor | int) -> list[float]:
        """The epoch's sums (loss, hits, patches) over all processes; the model then validates."""
        return [float(value) for value in sums]

    def spread(self, evaluator: TorchBackend) -> TorchBackend:
        """What computes the validation probabilities."""
        return evaluator

    def same(self, seconds: float) -> float:
        """A time that decides when to stop, the same in all processes."""
        return seconds


def initial_model(config: "TrainConfig") -> torch.nn.Module:
    """The network training starts from: `init`'s weights (fine-tuning) or a new `arch`."""
    return checkpoint.load_model(config.init)[0] if config.init else create_model(config.arch)


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)


def class_weight_tensor(labels: np.ndarray, mode: str) -> torch.Tensor:
    """sklearn's 'balanced' weights (n / (k * count)); classes absent from training get weight 0."""
    weights = np.ones(len(CLASSES), np.float32)
    if mode == "balanced":
        present = np.unique(labels)
        weights[:] = 0.0
        weights[present] = compute_class_weight("balanced", classes=present, y=labels)
    return torch.tensor(weights, dtype=torch.float32)


def random_flips(patches: torch.Tensor, generator: torch.Generator, turns: bool = False) -> torch.Tensor:
    """Flip each NxPxPxC patch left-right and up-down with probability 1/2 each; with `turns`, also
    transpose it with probability 1/2, which together with the flips gives all eight quarter turns
    and mirror images. Done on the image bytes before standardisation (which neither changes): a
    quarter of the memory traffic of flipping float tensors. The draws come from the CPU
    `generator`; the patches stay on their device."""
    n = len(patches)

    def chosen() -> torch.Tensor:
        return (torch.rand(n, generator=generator) < 0.5).to(patches.device).view(-1, 1, 1, 1)

    flip_h, flip_v = chosen(), chosen()
    out = torch.where(flip_h, patches.flip(2), patches)
    out = torch.where(flip_v, out.flip(1), out)
    if turns:
        out = torch.where(chosen(), out.transpose(1, 2), out)
    return out


def fit(
    config: TrainConfig,
    train_x: np.ndarray,
    train_y: np.ndarray,
    val_x: np.ndarray,
    val_y: np.ndarray,
    log=logger.info,
    show_progress: bool = True,
    team: OneProcess | None = None,
) -> FitResult:
    """Train one network on `config.device`; Ctrl-C stops early and still returns the best weights
    so far. The training patches are moved to the device once, as uint8, and flipped, augmented and
    standardised there; validation runs on the CPU, as inference does. Returns a CPU model. `team`:
    this process's part when several train together (distributed.Ranks)."""
    training = Training.start(config, train_x, train_y, team or OneProcess())
    result = FitResult(training.model)
    best_state, stale, start = copy.deepcopy(training.model.state_dict()), 0, time.perf_counter()
    elapsed = lambda: training.team.same(time.perf_counter() - start)  # noqa: E731
    try:
        for epoch in range(1, config.epochs + 1):
            if _out_of_time(config.time_limit, result.history, elapsed()):
                log(f"time limit: stopped after {epoch - 1} of {config.epochs} epochs ({config.time_limit:g} min)")
                break
            training.set_rate(epoch, result.history, elapsed())
            row = training.epoch(epoch, show_progress) | training.validate(val_x, val_y)
            row["seconds"] = elapsed()
            result.history.append(row)
            improved = row["val_accuracy"] > result.best_val_accuracy or epoch == 1
            if improved:
                result.best_val_accuracy, result.best_epoch = row["val_accuracy"], epoch
                best_state, stale = copy.deepcopy(training.model.state_dict()), 0
            else:
                stale += 1
            log(_epoch_line(row, improved))
            if stale >= config.patience:
                log(f"early stop: no better validation accuracy for {config.patience} epochs")
                break
    except KeyboardInterrupt:
        result.interrupted = True
        log("interrupted: keeping the best model so far")
    training.model.load_state_dict(best_state)
    result.model = training.model.cpu().eval()
    result.seconds = time.perf_counter() - start
    return result


@dataclass
class Training:
    """What one training holds from epoch to epoch: the network on its device, its optimiser and
    loss, the training patches there as uint8, and the one random generator every draw comes from
    (in the same order, so a seed gives the same network)."""

    config: TrainConfig
    team: OneProcess
    device: torch.device
    precision: str  # training's (the device's); validation runs on the CPU in config.precision
    model: torch.nn.Module
    net: torch.nn.Module  # the model as this process runs it (wrapped when several train together)
    optimiser: torch.optim.Optimizer
    weights: torch.Tensor  # class weights, on the CPU (validation's)
    loss_fn: torch.nn.Module
    generator: torch.Generator
    patches: torch.Tensor
    labels: torch.Tensor
    start_weights: list[torch.Tensor]  # the init model's, for the anchor (L2-SP); none without it

    @classmethod
    def start(cls, config: TrainConfig, train_x: np.ndarray, train_y: np.ndarray, team: OneProcess) -> "Training":
        seed_everything(config.seed)
        keep_freed_memory()
        device = config.resolved_device()
        model = initial_model(config).to(device, memory_format=torch.channels_last)
        net = team.wrap(model)
        optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
        start_weights = [p.detach().clone() for p in model.parameters()] if config.anchor else []
        weights = class_weight_tensor(train_y, config.class_weights)
        loss_fn = torch.nn.CrossEntropyLoss(weight=weights.to(device))
        generator = torch.Generator().manual_seed(config.seed)
        patches = torch.from_numpy(np.ascontiguousarray(train_x)).to(device)
        labels = torch.from_numpy(train_y).to(device)
        precision = config.resolved_precision()
        return cls(
            config, team, device, precision, model, net, optimiser, weights, loss_fn, generator, patches, labels,
            start_weights,
        )  # fmt: skip

    def set_rate(self, epoch: int, history: list[dict], elapsed: float) -> None:
        """The cosine schedule's rate for this epoch (CosineAnnealingLR's values, over the epochs
        the time limit allows); a constant schedule keeps `lr`."""
        if self.config.schedule == "cosine":
            horizon = _epochs_in_time(self.config, history, elapsed)
            for group in self.optimiser.param_groups:
                group["lr"] = self.config.lr * 0.5 * (1 + math.cos(math.pi * (epoch - 1) / horizon))

    def epoch(self, epoch: int, show_progress: bool) -> dict:
        """One pass over the training patches: the epoch's rate, mean loss and accuracy (over every process)."""
        self.model.train()
        order = self.team.order(len(self.patches), self.generator, epoch).to(self.device)
        total_loss = torch.zeros((), device=self.device)  # summed on the device: no sync per batch
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        batches = range(0, len(order), self.config.batch)
        with _progress(show_progress) as bar:
            task = bar.add_task(f"epoch {epoch}", total=len(batches))
            for begin in batches:
                idx = order[begin : begin + self.config.batch]
                loss, logits = self.step(idx)
                total_loss += loss.detach() * len(idx)
                correct += (logits.argmax(1) == self.labels[idx]).sum()
                bar.advance(task)
        loss_sum, hits, seen = self.team.finish_epoch(self.model, total_loss, correct, len(order))
        return {
            "epoch": epoch,
            "lr": self.optimiser.param_groups[0]["lr"],
            "loss": loss_sum / seen,
            "accuracy": hits / seen,
        }

    def step(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One batch: flipped and augmented as configured, standardised, forward, backward, an
        optimiser step; its loss and logits."""
        config, batch = self.config, self.patches[idx]
        if config.flips:
            batch = random_flips(batch, self.generator, config.turns)
        if config.augment == "camera":
            batch = camera_jitter(batch, self.generator)
        x = prepare(batch)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            logits = self.net(x)
        loss = self.loss_fn(logits.float(), self.labels[idx])
        if self.start_weights:  # L2-SP: a fine-tune on a few labels keeps what the init model knew
            drift = sum(((p - w) ** 2).sum() for p, w in zip(self.model.parameters(), self.start_weights))
            loss = loss + 0.5 * config.anchor * drift
        self.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        self.optimiser.step()
        return loss, logits

    def validate(self, val_x: np.ndarray, val_y: np.ndarray) -> dict:
        """Validation loss and accuracy of the epoch's weights, on the CPU as inference runs."""
        on_cpu = self.model if self.device.type == "cpu" else copy.deepcopy(self.model).cpu()
        evaluator = TorchBackend(on_cpu, resolve_precision(self.config.precision))
        return _validate(self.team.spread(evaluator), val_x, val_y, self.weights)


def _epoch_line(row: dict, improved: bool) -> str:
    return (
        f"epoch {row['epoch']:3d}  loss {row['loss']:.4f}  acc {row['accuracy']:.4f}  "
        f"val_loss {row['val_loss']:.4f}  val_acc {row['val_accuracy']:.4f}"
        f"{'  *' if improved else ''}  {row['seconds']:.0f}s"
    )


def _slowest_epoch(history: list[dict]) -> float:
    times = [row["seconds"] for row in history]
    return max(b - a for a, b in zip([0.0, *times], times))


def _out_of_time(limit_minutes: float | None, history: list[dict], elapsed: float) -> bool:
    """Would one more epoch, as long as the slowest so far, end after the limit?"""
    if limit_minutes is None or not history:
        return False
    return elapsed + _slowest_epoch(history) > 60 * limit_minutes


def _epochs_in_time(config: TrainConfig, history: list[dict], elapsed: float) -> int:
    """The epochs the cosine schedule spans: `epochs`, or fewer where the time limit will stop
    training sooner (estimated from the slowest epoch so far), so the rate still decays to zero."""
    if config.time_limit is None or not history:
        return config.epochs
    more = int((60 * config.time_limit - elapsed) // _slowest_epoch(history))
    return max(len(history) + 1, min(config.epochs, len(history) + more))


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        transient=True,
        disable=not enabled,
    )


def _validate(evaluator: TorchBackend, x: np.ndarray, y: np.ndarray, weights: torch.Tensor) -> dict:
    """Validation loss (class-weighted as in training) and accuracy; this folds the epoch's weights."""
    probs = evaluator.probabilities(x)
    log_probs = torch.log(torch.from_numpy(probs).clamp_min(1e-12))
    loss = torch.nn.functional.nll_loss(log_probs, torch.from_numpy(y), weight=weights).item()
    return {"val_loss": loss, "val_accuracy": float((probs.argmax(1) == y).mean())}


def run_training(
    data,
    out: str | Path,
    config: TrainConfig,
    runs: int = 1,
    val_data=None,
    test_data=None,
    resize: bool = False,
    log=logger.info,
    show_progress: bool = True,
    force: bool = False,
    trainer: Callable[..., FitResult] | None = None,
) -> list[Report]:
    """Train `runs` times with seeds seed, seed+1, ...; write models, curves and reports to `out`,
    a new or empty folder (with `force`, one whose files of the same names are replaced). `trainer`
    trains each run (default `fit`; distributed.trainer: on several processes)."""
    config.resolved_device()  # a device that is not there is refused before any work
    out = run_folder(out, force)
    splits = make_splits(data, config.seed, val_data, test_data)
    arrays = {
        name: (load_patches(table, config.patch, resize), table.labels)
        for name, table in (("train", splits.train), ("val", splits.val), ("test", splits.test))
        if len(table)
    }
    log(
        f"patches: train {len(splits.train)}, val {len(splits.val)}, test {len(splits.test)}  "
        f"(classes in train: {dict(zip(CLASSES, np.bincount(splits.train.labels, minlength=3).tolist()))})"
    )
    warn_degenerate(splits)
    reports = []
    for run in range(runs):
        run_config = TrainConfig(**{**asdict(config), "seed": config.seed + run})
        run_dir = out if runs == 1 else out / f"run-{run + 1}"
        if runs > 1:
            log(f"run {run + 1}/{runs} (seed {run_config.seed})")
        result = (trainer or fit)(run_config, *arrays["train"], *arrays["val"], log=log, show_progress=show_progress)
        report = _finish_run(
            result,
            run_config,
            run_dir,
            arrays.get("test") or arrays["val"],
            " ".join(map(str, data)) if isinstance(data, list) else str(data),
        )
        reports.append(report)
        log(f"test accuracy {report.accuracy:.4f}, macro F1 {report.macro_f1:.4f}  -> {run_dir}")
        if result.interrupted:
            break
    if runs > 1:
        table = summarise_runs(reports)
        write_text(out / "report.md", f"# Results over {len(reports)} runs (mean ± std)\n\n{table}\n")
        write_text(out / "report.json", json.dumps([r.to_json() for r in reports], indent=2))
        log(table)
    return reports


def _finish_run(result: FitResult, config: TrainConfig, run_dir: Path, test, data: str) -> Report:
    writable(run_dir)
    probs = TorchBackend(result.model, resolve_precision(config.precision)).probabilities(test[0])
    report = compute_report(test[1], probs.argmax(1))
    info = checkpoint.ModelInfo(
        arch=config.arch if not config.init else checkpoint.read_info(config.init).arch,
        patch=config.patch,
        training={
            **asdict(config),
            "data": data,
            "best_epoch": result.best_epoch,
            "epochs_run": len(result.history),
            "seconds": round(result.seconds, 1),
        },
        metrics={"test_accuracy": report.accuracy, "test_macro_f1": report.macro_f1},
        name=run_dir.name,
    )
    checkpoint.save_model(result.model, run_dir / "model.safetensors", info)
    history = io.StringIO(newline="")
    writer = csv.DictWriter(history, fieldnames=list(result.history[0]) if result.history else ["epoch"])
    writer.writeheader()
    writer.writerows(result.history)
    write_text(run_dir / "history.csv", history.getvalue())
    render.plot_history(result.history, run_dir)
    render.plot_confusion(report.confusion, run_dir / "confusion_matrix.png")
    write_text(run_dir / "report.json", json.dumps(report.to_json(), indent=2))
    write_text(run_dir / "report.md", f"# Test results\n\n{report.to_markdown()}\n")
    return report
