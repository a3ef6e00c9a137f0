"""Labelled patch sources (class folders, the reference's CSV, slmcnn's split file) and their splits.

Every source becomes a PatchTable: paths, labels and a group per patch (the build and layer it came
from, where known). Splits are made over groups, so neighbouring patches of one layer never end up
on both sides of a split.
"""

import csv
import io
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from slmcnn import images as image_io
from slmcnn.constants import CLASSES
from slmcnn.errors import DataError, ImageReadError

logger = logging.getLogger(__name__)
SPLIT_FILE = "split.csv"
SPLIT_COLUMNS = ("path", "label", "build", "layer", "row", "col", "split")


@dataclass
class PatchTable:
    """A labelled patch list; `groups` name the layer a patch came from (or the patch itself)."""

    paths: list[Path]
    labels: np.ndarray
    groups: list[str]
    splits: list[str] | None = None

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, keep: np.ndarray) -> "PatchTable":
        idx = np.flatnonzero(keep)
        return PatchTable(
            [self.paths[i] for i in idx],
            self.labels[idx],
            [self.groups[i] for i in idx],
            [self.splits[i] for i in idx] if self.splits else None,
        )


def class_index(name: str, where: str) -> int:
    """Label of a class name (case-insensitive), or a clear error naming the place it came from."""
    lookup = {c.lower(): i for i, c in enumerate(CLASSES)}
    key = name.strip().lower()
    if key.isdigit() and int(key) < len(CLASSES):
        return int(key)
    if key not in lookup:
        raise DataError(f"{where}: unknown class {name!r}; expected one of {', '.join(CLASSES)}")
    return lookup[key]


def load_source(path: str | Path) -> PatchTable:
    """Open any supported source: a split file or CSV, a folder holding one, or class folders."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.is_file():
        return _from_split_file(path) if _is_split_file(path) else _from_reference_csv(path)
    if (path / SPLIT_FILE).is_file():
        return _from_split_file(path / SPLIT_FILE)
    if (path / "patches" / SPLIT_FILE).is_file():
        return _from_split_file(path / "patches" / SPLIT_FILE)
    return _from_class_folders(path)


def load_sources(paths: list[str | Path]) -> PatchTable:
    """Several sources as one table (for example a few synthetic builds)."""
    tables = [load_source(p) for p in paths]
    if len(tables) == 1:
        return tables[0]
    keep_splits = all(t.splits for t in tables)
    return PatchTable(
        [p for t in tables for p in t.paths],
        np.concatenate([t.labels for t in tables]),
        [g for t in tables for g in t.groups],
        [s for t in tables for s in t.splits] if keep_splits else None,
    )


def _is_split_file(path: Path) -> bool:
    return _read_text(path).partition("\n")[0].strip().split(",")[:2] == ["path", "label"]


def _read_text(path: Path) -> str:
    """A CSV's text (UTF-8, with or without a byte-order mark), or a DataError saying why not."""
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start}); save the CSV as UTF-8") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror})") from None


def _read_rows(path: Path, delimiter: str = ",") -> list[dict]:
    try:
        return list(csv.DictReader(io.StringIO(_read_text(path), newline=""), delimiter=delimiter))
    except csv.Error as exc:
        raise DataError(f"{path}: not a readable CSV ({exc})") from None


def _cells(row: dict, names: tuple[str, ...], where: str) -> list[str]:
    """The named cells of a CSV row, each present and not empty."""
    values = [row.get(name) for name in names]
    for name, value in zip(names, values):
        if value is None or not value.strip():
            raise DataError(f"{where}: no {name} (each row needs {', '.join(names)})")
    return values


def _from_class_folders(root: Path) -> PatchTable:
    entries = [p for p in root.iterdir() if p.is_dir()] if root.is_dir() else []
    known = {c.lower() for c in CLASSES}
    class_dirs = [d for d in entries if d.name.lower() in known]
    if not class_dirs:
        if not any(root.iterdir()):
            raise DataError(f"{root}: the folder is empty")
        raise DataError(f"{root}: no class folders ({'/, '.join(CLASSES)}/) and no {SPLIT_FILE} inside")
    paths, labels = [], []
    for folder in sorted(class_dirs):
        files = image_io.list_images([folder])
        paths += files
        labels += [class_index(folder.name, str(folder))] * len(files)
    if not paths:
        raise DataError(f"{root}: the class folders hold no images")
    return PatchTable(paths, np.array(labels, np.int64), [str(p) for p in paths])


def _from_reference_csv(path: Path) -> PatchTable:
    """The reference's `Image;Label` CSV; paths are relative to the CSV's folder."""
    rows = _read_rows(path, delimiter=";")
    if not rows or not {"Image", "Label"} <= set(rows[0]):
        raise DataError(f"{path}: expected a semicolon-separated CSV with columns Image;Label")
    cells = [_cells(row, ("Image", "Label"), f"{path} line {i + 2}") for i, row in enumerate(rows)]
    paths = [path.parent / image for image, _ in cells]
    labels = [class_index(label, f"{path} line {i + 2}") for i, (_, label) in enumerate(cells)]
    return PatchTable(paths, np.array(labels, np.int64), [str(p) for p in paths])


def _from_split_file(path: Path) -> PatchTable:
    rows = _read_rows(path)
    if not rows:
        raise DataError(f"{path}: the split file lists no patches")
    cells = [_cells(row, ("path", "label"), f"{path} line {i + 2}") for i, row in enumerate(rows)]
    paths = [path.parent / name for name, _ in cells]
    labels = [class_index(label, f"{path} line {i + 2}") for i, (_, label) in enumerate(cells)]
    groups = [
        f"{row.get('build', '')}/{row.get('layer', '')}" if row.get("layer") else str(p) for row, p in zip(rows, paths)
    ]
    splits = [row["split"] for row in rows] if rows[0].get("split") else None
    return PatchTable(paths, np.array(labels, np.int64), groups, splits)


def split(table: PatchTable, seed: int = 0, fractions: tuple[float, float] = (0.15, 0.15)) -> dict[str, PatchTable]:
    """Deterministic train/val/test split by group (the source's own split column wins)."""
    if table.splits:
        names = np.array(table.splits)
        return {s: table.subset(names == s) for s in ("train", "val", "test")}
    groups = sorted(set(table.groups))
    order = np.random.default_rng(seed).permutation(len(groups))
    n_val, n_test = (max(1, round(f * len(groups))) for f in fractions)
    if len(groups) < 3:
        raise DataError(f"{len(table)} patches in {len(groups)} groups: too few to split into train/val/test")
    role = {}
    for rank, gi in enumerate(order):
        role[groups[gi]] = "val" if rank < n_val else "test" if rank < n_val + n_test else "train"
    names = np.array([role[g] for g in table.groups])
    return {s: table.subset(names == s) for s in ("train", "val", "test")}


def load_patches(table: PatchTable, patch: int = 128, resize: bool = False, workers: int = 4) -> np.ndarray:
    """Decode every patch into one (N, p, p, 3) array, checking the size (or resizing if asked)."""
    import cv2

    def read_one(path: Path) -> np.ndarray:
        image = image_io.read(path)
        if image.shape[:2] != (patch, patch):
            if not resize:
                raise DataError(
                    f"{path}: image is {image.shape[1]}x{image.shape[0]}, the model needs {patch}x{patch}; "
                    "pass `resize=True` to scale patches, or predict whole layers"
                )
            image = cv2.resize(image, (patch, patch), interpolation=cv2.INTER_AREA)
        return image

    if not len(table):
        raise DataError("no patches to load")
    with ThreadPoolExecutor(workers) as pool:
        try:
            arrays = list(pool.map(read_one, table.paths))
        except ImageReadError as exc:
            raise DataError(str(exc)) from None
    dtypes = {a.dtype for a in arrays}
    if len(dtypes) > 1:  # mixed 8/16-bit sets are brought to 8-bit, the common case
        arrays = [image_io.to_uint8(a) for a in arrays]
    return np.stack(arrays)


@dataclass
class DataSplits:
    train: PatchTable
    val: PatchTable
    test: PatchTable


def make_splits(data, seed: int, val_data=None, test_data=None) -> DataSplits:
    """Split the sources by layer; a separately given validation or test source frees that share of
    DATA for training."""
    as_list = lambda x: [x] if isinstance(x, str | Path) else list(x)  # noqa: E731
    table = load_sources(as_list(data))
    if not table.splits and len(set(table.groups)) == len(table):
        logger.warning(
            "WARNING: %s names no build or layer per patch (plain class folders or a CSV), so it cannot be split "
            "by layer: tiles of one layer may land in training, validation and test alike. `slmcnn app` exports "
            "a split.csv with each tile's build and layer.",
            " ".join(map(str, as_list(data))),
        )
    parts = split(table, seed=seed)
    train = parts["train"]
    val, test = parts["val"], parts["test"]
    if val_data:
        train, val = _merge(train, val), load_sources(as_list(val_data))
    if test_data:
        train, test = _merge(train, test), load_sources(as_list(test_data))
    for name, table in (("training", train), ("validation", val)):
        if not len(table):
            raise DataError(f"the {name} split of {data} is empty: add data or give `val`")
    return DataSplits(train, val, test)


def warn_degenerate(splits: DataSplits) -> None:
    """Say so when the data cannot train or test a classifier well: one class only, or a class
    missing from the training or test split (accuracy alone would hide it)."""
    train = set(np.unique(splits.train.labels).tolist())
    if len(train) < 2:
        names = ", ".join(CLASSES[c] for c in sorted(train))
        logger.warning("WARNING: the training data hold one class only (%s): the model learns nothing useful", names)
    elif len(train) < len(CLASSES):
        missing = ", ".join(c for i, c in enumerate(CLASSES) if i not in train)
        logger.warning("WARNING: no %s patches in the training data: the model cannot predict them", missing)
    tested = splits.test if len(splits.test) else splits.val
    if len(np.unique(tested.labels)) < 2:
        logger.warning("WARNING: the test data hold one class only: the test accuracy says little")


def _merge(a: PatchTable, b: PatchTable) -> PatchTable:
    return PatchTable(a.paths + b.paths, np.concatenate([a.labels, b.labels]), a.groups + b.groups)
