"""Writing the user's files safely. Every file appears whole or not at all: it is written under a
temporary name in its own folder, then renamed over (`os.replace`), so a full disk or a killed
process never leaves a truncated file. Nothing that exists is replaced unless `force` is given, an
input is never an output, and a folder that cannot be written (read-only, full, not a folder, /proc)
is one OutputError naming the path and the reason.
"""

import contextlib
import errno
import itertools
import os
import re
import secrets
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from slmcnn.errors import OutputError

REASONS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "not permitted",
    errno.EISDIR: "it is a folder",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.ENOENT: "no such file or folder",
    errno.ENAMETOOLONG: "the name is too long",
    errno.ELOOP: "a loop of symbolic links",
}


def describe(exc: OSError, path: str | Path | None = None) -> str:
    """One line for an operating-system error: the path and the reason in words."""
    where = path if path is not None else exc.filename
    reason = REASONS.get(exc.errno) or exc.strerror or str(exc)
    return f"{where}: {reason}" if where is not None else reason


@contextlib.contextmanager
def os_errors(path: str | Path, doing: str = "cannot write") -> Iterator[None]:
    """Turn an OSError raised inside the block into an OutputError naming `path`."""
    try:
        yield
    except OSError as exc:
        raise OutputError(f"{doing} {describe(exc, path)}") from None


def resolved(path: str | Path) -> Path:
    """`path` made absolute with its links followed; a loop of symbolic links is an OSError (ELOOP),
    as Python 3.13 says it, not 3.11's RuntimeError, so that it is told like any other bad path."""
    try:
        return Path(path).resolve()
    except RuntimeError:
        raise OSError(errno.ELOOP, REASONS[errno.ELOOP], str(path)) from None


def check_new(path: str | Path, force: bool = False, inputs: Iterable[str | Path] = ()) -> Path:
    """`path` as an output: never a folder or one of `inputs`; an existing file only with `force`."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path} is a folder; give a file name")
    try:
        same = any(resolved(path) == resolved(item) for item in inputs)
    except OSError as exc:
        raise OutputError(f"cannot use {describe(exc)}") from None
    if same:
        raise OutputError(f"{path} is an input; choose another output name")
    if path.exists() and not force:
        raise OutputError(f"{path} exists; pass `force=True` to replace it")
    return path


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary name beside `path` (same suffix, so writers can tell the format) for a writer that
    wants a file name: renamed to `path` when the block ends, removed when it raises."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path} is a folder; give a file name")
    with os_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.stem}.{secrets.token_hex(4)}.tmp{path.suffix}")
        os.close(os.open(temporary, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))  # umask applies
    try:
        with os_errors(path):
            yield temporary
            os.chmod(temporary, path.stat().st_mode & 0o7777 if path.exists() else 0o666 & ~_umask())
            os.replace(temporary, path)
    finally:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)


TEMPORARY = re.compile(r"\..+\.[0-9a-f]{8}\.tmp(\.[^.]*)?")  # atomic_path's names


def remove_temporaries(folder: str | Path) -> int:
    """Remove the temporary files that writers killed mid-write (kill -9, a Ray worker lost) left in
    `folder`: call it once no writer of the folder runs. How many there were."""
    removed = 0
    with contextlib.suppress(OSError):
        for path in Path(folder).iterdir():
            if TEMPORARY.fullmatch(path.name) and path.is_file():
                path.unlink(missing_ok=True)
                removed += 1
    return removed


def _umask() -> int:
    """This process's umask (writers such as safetensors create files as 0600 and rename them)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


def write_bytes(path: str | Path, data: bytes, force: bool = True) -> Path:
    """Write a whole file atomically; an existing file is replaced only with `force`."""
    path = check_new(path, force)
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)
    return path


def write_text(path: str | Path, text: str, force: bool = True) -> Path:
    return write_bytes(path, text.encode("utf-8"), force)


def run_folder(out: str | Path, force: bool = False) -> Path:
    """A folder for a run's files, created when missing and checked writable. A folder that already
    holds files is refused unless `force` (then files of the same name are replaced, others kept)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} is a file, not a folder")
    if out.is_dir() and not force:
        with os_errors(out, "cannot read"):
            used = next(out.iterdir(), None) is not None
        if used:
            raise OutputError(
                f"{out} is not empty; pass `force=True` to write into it (files of the same name are replaced)"
            )
    writable(out)
    return out


def fresh_folder(parent: str | Path, prefix: str) -> Path:
    """A new folder parent/PREFIX-YYYYmmdd-HHMMSS, made now (-2, -3... when one of that second
    exists): two exports or runs started in the same second never share a folder."""
    parent, stamp = Path(parent), time.strftime("%Y%m%d-%H%M%S")
    with os_errors(parent):
        parent.mkdir(parents=True, exist_ok=True)
        for count in itertools.count(1):
            folder = parent / (f"{prefix}-{stamp}" if count == 1 else f"{prefix}-{stamp}-{count}")
            with contextlib.suppress(FileExistsError):
                folder.mkdir()
                return folder


def writable(folder: str | Path) -> Path:
    """Create `folder` if needed and check that a file can be made in it."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder} is a file, not a folder")
    with os_errors(folder):
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".slmcnn-probe-{secrets.token_hex(4)}"
        os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        probe.unlink()
    return folder


def storable(name: str) -> str:
    """A file name as text that any database, CSV or terminal takes: bytes of a name that are not
    UTF-8 (which Python keeps as lone surrogates) are written as \\xNN, the same way every time."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
