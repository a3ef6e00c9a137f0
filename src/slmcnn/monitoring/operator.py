"""What the commands tell the person at the machine, beyond each layer's line: where the photos are
when a watched folder holds none, what a monitor run stored."""

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from slmcnn.errors import SlmcnnError
from slmcnn.grading import GRADES
from slmcnn.images import IMAGE_SUFFIXES
from slmcnn.monitoring.db import Database

SHOWN_FOLDERS = 3  # subfolders with photos named when the watched folder holds none


def _photos(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]


def watch_notes(folder: Path) -> list[str]:
    """Warnings about a folder to watch that holds no photo of its own: empty, or photos only in
    subfolders (the monitor does not look inside them)."""
    folder = Path(folder)
    if _photos(folder):
        return []
    inside = Counter(p.parent for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not inside:
        return [f"{folder} holds no photos yet: the first one written there starts the build"]
    ranked = sorted(inside, key=lambda where: (where.name != "layers", -inside[where]))  # a synth build's layers/ first
    shown = [f"{where} ({inside[where]})" for where in ranked[:SHOWN_FOLDERS]]
    best = ranked[0]
    return [
        f"{folder} holds no photos of its own, but its subfolders do: {', '.join(shown)}; the monitor "
        f"does not look inside subfolders: watch the camera's folder, e.g. slmcnn monitor {best}"
    ]


@dataclass(frozen=True)
class Tally:
    """What a folder's builds on a machine hold in a database: each build's graded layers, and failed layers."""

    grades: dict[int, dict[int, str]]  # build id: {layer number: grade}
    failed: int

    @classmethod
    def of(cls, db: Database, watch_dir: str, machine: str) -> "Tally":
        grades = db.folder_grades(watch_dir, machine)
        stored = db.stored_files(watch_dir, machine).values()
        return cls(grades, sum(row.status == "failed" for rows in stored for row in rows))

    def since(self, before: "Tally") -> str:
        """One line: the layers stored after `before`, by grade, and the failed ones."""
        new = Counter(
            grade
            for build, layers in self.grades.items()
            for number, grade in layers.items()
            if number not in before.grades.get(build, {})
        )
        count = sum(new.values())
        grades = ", ".join(f"{new[g]} {g}" for g in GRADES if new[g])
        failed = self.failed - before.failed
        return f"stored {count} layer(s)" + (f": {grades}" if grades else "") + (f"; {failed} failed" if failed else "")


def closing_line(db: Database, watch_dir: str, machine: str, before: Tally) -> str:
    """The monitor's last line: what it stored. A stop during a database outage still ends in one
    line, not a traceback: the database may be gone by then."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        return Tally.of(db, watch_dir, machine).since(before)
    except (SlmcnnError, SQLAlchemyError, OSError) as exc:
        return f"no summary: the database cannot be read now ({type(exc).__name__})"
