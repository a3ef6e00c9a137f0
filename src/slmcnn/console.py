"""What the commands print around the library's work: its log as their output (information on
stdout, warnings on stderr), warnings held until a command's files are written, and a layer's
grade in a terminal line. cli.py says what each command prints; this is how it reaches the terminal."""

import logging
import sys
from collections.abc import Iterable
from contextlib import contextmanager

from slmcnn.files import storable


class Console(logging.Handler):
    """The library's log as the command's output: information on stdout, warnings on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        print(record.getMessage(), file=sys.stdout if record.levelno < logging.WARNING else sys.stderr, flush=True)


def graded(result) -> str:
    """'  critical: streak 3 x 120 mm at (40, 0) mm' for a terminal line ('  ok' for a sound layer)."""
    grade = result.grade
    if grade is None or grade.grade == "ok":
        return "" if grade is None else "  ok"
    named = f": {grade.defects[0].describe()}" if grade.defects else ""
    more = f" (+{len(grade.defects) - 1})" if len(grade.defects) > 1 else ""
    return f"  {grade.grade}{named}{more}"


def archive_line(row: dict) -> str:
    """A layer of `predict-layer --ray` (a row of layers.parquet) as the local path prints it."""
    if row["error"] is not None:
        return f"skipped {storable(row['error'])}"
    score = f"  tile acc {row['tile_accuracy']:.3f}" if row["tile_accuracy"] is not None else ""
    fractions = (
        f"powder {row['powder_fraction']:.3f}  object {row['object_fraction']:.3f}  error {row['error_fraction']:.3f}"
    )
    return f"{row['image']}  {fractions}  {row['seconds']:.2f}s{score}"


@contextmanager
def held_warnings(name: str):
    """The warnings logged under `name` while the block runs, kept instead of printed."""
    held: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            held.append(record.getMessage())

    logger, keep = logging.getLogger(name), Keep(logging.WARNING)
    logger.addHandler(keep)
    logger.propagate = False
    try:
        yield held
    finally:
        logger.removeHandler(keep)
        logger.propagate = True


def tell(warnings: Iterable[str | None]) -> None:
    """Each warning on stderr, as the log prints one (None: nothing to say)."""
    for line in filter(None, warnings):
        print(f"warning: {line}", file=sys.stderr)
