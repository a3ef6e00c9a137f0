"""What the monitor's store gives back: plain records of builds, layers, tiles and alerts."""

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from slmcnn.monitoring.alerts import Alert


@dataclass(frozen=True)
class FileStamp:
    """What a layer file was when it was stored: a changed size or time with another SHA-1 is a new file."""

    size: int
    mtime: float
    digest: str = ""

    @classmethod
    def of(cls, path: Path, digest: bool = True) -> "FileStamp":
        """The file's size, time and SHA-1, read in blocks; a file larger than any image slmcnn
        reads (images.LIMITS, decoded) is not read at all: its size and time stand for its digest."""
        from slmcnn.images import LIMITS

        stat = path.stat()
        if not digest:
            return cls(stat.st_size, stat.st_mtime)
        if stat.st_size > LIMITS.max_bytes:
            return cls(stat.st_size, stat.st_mtime, f"unread:{stat.st_size}:{stat.st_mtime_ns}")
        with open(path, "rb") as handle:
            return cls(stat.st_size, stat.st_mtime, hashlib.file_digest(handle, "sha1").hexdigest())

    def same_stat(self, other: "FileStamp") -> bool:
        return self.size == other.size and abs(self.mtime - other.mtime) < 1e-6


@dataclass
class StoredFile:
    file: str
    build_id: int
    status: str
    stamp: FileStamp | None


@dataclass
class BuildRow:
    id: int
    watch_dir: str
    name: str
    model: str
    started: float
    machine: str = ""  # the printer or computer (monitor --machine); "" in builds of an slmcnn before it


@dataclass
class StoredLayer:
    """A layer as the monitor stored it."""

    id: int
    number: int | None
    file: str
    path: str | None
    status: str
    message: str | None
    fractions: dict[str, float]
    geometry: dict | None
    overlay: str | None
    digest: str | None = None  # SHA-1 of the photo when it was classified
    seconds: float | None = None  # how long it took to classify
    grade: str | None = None  # ok | minor | critical; None where not graded (failed, or an slmcnn before grades)


@dataclass
class BuildOverview:
    """A build at a glance (the app's start page): its done layers' grades, the last one's time and
    its alerts."""

    layers: int
    grades: dict[str, int]  # ok | minor | critical -> layers
    last: float | None  # when the last layer was stored (seconds since the epoch)
    alerts: list[int] = field(default_factory=list)  # the ids of its alerts, oldest first


@dataclass
class TileGrid:
    """A layer's stored tiles: classes (rows, cols), probabilities (rows*cols, classes) and the
    camera profile's anomaly (rows*cols), None where no profile scored the layer."""

    classes: np.ndarray
    probabilities: np.ndarray
    anomaly: np.ndarray | None


@dataclass
class StoredAlert:
    id: int
    layer_id: int
    alert: Alert
    created: float | None
