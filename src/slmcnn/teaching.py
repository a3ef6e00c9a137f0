"""Lessons: what a reviewer said about places of a layer, taught to the fine maps without retraining.

A false alarm marked `sound` joins the memory of what this camera's sound places look like (the
fine maps' texture memory takes its places in; at the same place of the bed, the build memory
learns it instead of holding it out, and a sure network tile there may be hidden when both signals
say it looks the same). A confirmed `defect` becomes an example: a place whose texture is much
nearer to it than to anything sound is Error (texture.TextureMemory). The network is not touched.

Lessons are kept in a folder: `lessons.json` (what each lesson is, where it came from) and each
lesson's straightened photo and mask as PNG. Beside camera.json as `<camera>.lessons/` they are
the camera's: every build judged with that camera learns them.
"""

import contextlib
import fcntl
import json
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from slmcnn.camera import Camera
from slmcnn.errors import SettingsError
from slmcnn.files import os_errors, write_text
from slmcnn.images import read, to_uint8, write_png

VERDICTS = ("sound", "defect")
MANIFEST = "lessons.json"
MARGIN = 8  # px a taught box is widened by: a region's box is drawn tight round its Error pixels


@dataclass(frozen=True)
class Lesson:
    """One lesson: `verdict` about the places `mask` marks on the straightened photo `image`."""

    id: str
    verdict: str  # "sound" (a false alarm) or "defect" (a confirmed defect)
    image: str  # file name within the lessons folder
    mask: str
    layer: str  # the photo it was taught from
    source: str  # who or what taught it ("cli", "app <set> alert <id>")
    at: float

    def __str__(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(self.at))
        return f"{self.id}  {self.verdict:6}  {self.layer}  ({self.source}, {when})"


def lessons_folder(camera, given: str | Path | None = None) -> Path | None:
    """Where lessons are kept: `given`, else beside a camera.json (or the one a Camera was read
    from) as `<camera>.lessons` (a run follows that folder whether or not it holds lessons yet: a
    review may teach one mid-build)."""
    if given is not None:
        return Path(given)
    camera = camera.source if isinstance(camera, Camera) else camera
    return Path(camera).with_suffix(".lessons") if isinstance(camera, str | Path) else None


def box_mask(shape: tuple[int, int], boxes: Iterable[Iterable[float]], margin: int = MARGIN) -> np.ndarray:
    """(H, W) bool: the boxes (x0, y0, x1, y1 in px; x1, y1 exclusive), each widened by `margin`."""
    mask = np.zeros(shape, bool)
    height, width = shape
    for box in boxes:
        values = [float(v) for v in box]
        if len(values) != 4 or not all(np.isfinite(values)):
            raise SettingsError(f"a box is x0,y0,x1,y1 in pixels (got {box!r})")
        x0, y0, x1, y1 = values
        if x1 <= x0 or y1 <= y0:
            raise SettingsError(f"box {x0:g},{y0:g},{x1:g},{y1:g} is empty: x1 and y1 must exceed x0 and y0")
        x0, y0 = max(int(x0) - margin, 0), max(int(y0) - margin, 0)
        x1, y1 = min(int(np.ceil(x1)) + margin, width), min(int(np.ceil(y1)) + margin, height)
        if x1 <= x0 or y1 <= y0:
            raise SettingsError(f"box {box!r} lies outside the {width}x{height} px bed")
        mask[y0:y1, x0:x1] = True
    return mask


class Lessons:
    """The lessons kept in one folder; `stamp` changes whenever a lesson is added or forgotten."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def __iter__(self) -> Iterator[Lesson]:
        return iter(self._read())

    def __len__(self) -> int:
        return len(self._read())

    def stamp(self) -> tuple[int, int] | None:
        """The manifest's modification time and size: what a running monitor watches to take new lessons in."""
        try:
            stat = (self.folder / MANIFEST).stat()
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size

    def add(self, image: np.ndarray, mask: np.ndarray, verdict: str, layer: str, source: str) -> Lesson:
        """Keep a lesson: its photo and mask first, then the manifest that names them (atomic)."""
        if verdict not in VERDICTS:
            raise SettingsError(f"a lesson's verdict is one of {', '.join(VERDICTS)} (got {verdict!r})")
        if mask.shape != image.shape[:2] or not mask.any():
            raise SettingsError("a lesson marks at least one pixel of its photo")
        lesson_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        lesson = Lesson(
            lesson_id, verdict, f"{lesson_id}.png", f"{lesson_id}.mask.png", str(layer), source, time.time()
        )
        with os_errors(self.folder, "cannot keep the lesson in"):
            self.folder.mkdir(parents=True, exist_ok=True)
            write_png(self.folder / lesson.image, to_uint8(image))
            write_png(self.folder / lesson.mask, mask.astype(np.uint8) * 255)
            with self._locked():
                self._write([*self._read(), lesson])
        return lesson

    def forget(self, lesson_id: str | None = None, source: str | None = None) -> list[Lesson]:
        """Forget the lesson with this id, or every lesson from `source` (an undone review)."""
        if not (self.folder / MANIFEST).is_file():
            return []
        with os_errors(self.folder, "cannot forget lessons in"), self._locked():
            lessons = self._read()
            gone = [x for x in lessons if x.id == lesson_id or (source is not None and x.source == source)]
            if gone:
                self._write([x for x in lessons if x not in gone])
                for lesson in gone:
                    for name in (lesson.image, lesson.mask):
                        (self.folder / name).unlink(missing_ok=True)
        return gone

    def load(self, lesson: Lesson) -> tuple[np.ndarray, np.ndarray]:
        """A lesson's photo (uint8 RGB) and mask (bool)."""
        return read(self.folder / lesson.image), read(self.folder / lesson.mask)[..., 0] > 127

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One writer of the manifest at a time (the app and `slmcnn teach` may both teach)."""
        with open(self.folder / ".lessons.lock", "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    def _read(self) -> list[Lesson]:
        path = self.folder / MANIFEST
        if not path.is_file():
            return []
        try:
            rows = json.loads(path.read_text())["lessons"]
            return [Lesson(**row) for row in rows]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SettingsError(f"{path}: not a lessons file ({exc})") from None

    def _write(self, lessons: list[Lesson]) -> None:
        text = json.dumps({"lessons": [asdict(x) for x in lessons]}, indent=1)
        write_text(self.folder / MANIFEST, text)
