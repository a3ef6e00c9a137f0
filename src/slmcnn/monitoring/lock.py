"""One monitor per machine, folder and database, and one schema migration at a time: a lock file beside
SQLite, an advisory lock in PostgreSQL."""

import contextlib
import fcntl
import hashlib
import logging
import time
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from slmcnn.errors import DatabaseError

log = logging.getLogger(__name__)
MIGRATION_KEY = int(hashlib.sha1(b"slmcnn schema migration").hexdigest()[:15], 16)


class MonitorLock:
    """One monitor per machine, folder and database: an exclusive lock held while the monitor runs (a
    lock file beside an SQLite database, an advisory lock in PostgreSQL), released when the process
    ends in any way, kill -9 included. Keyed by machine too: the computers of a shop name their
    camera folders alike."""

    def __init__(self, engine: Engine, watch_dir: str, machine: str, shown: str):
        key = lock_key(watch_dir, machine)
        self.handle, self.connection = None, None
        busy = DatabaseError(
            f"another monitor is following {watch_dir} as machine {machine!r} with {shown}; stop it first, "
            "or give this one its own --machine"
        )
        if engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
            self.handle = open(lock_file(Path(engine.url.database), key), "a+")
            try:
                fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self.handle.close()
                raise busy from None
        elif engine.dialect.name == "postgresql":
            self.engine, self.number, self.busy = engine, int(key[:15], 16), busy
            self._advisory()

    def _advisory(self) -> None:
        self.connection = self.engine.connect()
        if not self.connection.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self.number}).scalar():
            self.connection.close()
            self.connection = None
            raise self.busy

    def renew(self) -> None:
        """After the database was away: a PostgreSQL session that ended (a server restart) took the
        lock with it, so take it again, or stop when another monitor took it meanwhile."""
        if self.connection is None:
            return
        try:
            self.connection.execute(text("SELECT 1"))
            return
        except SQLAlchemyError:
            self.connection.invalidate()
            self.connection.close()
        self._advisory()

    def release(self) -> None:
        if self.handle is not None:
            self.handle.close()
        if self.connection is not None:  # its session ends with it (back in the pool it would keep the lock)
            self.connection.invalidate()
            self.connection.close()
        self.handle = self.connection = None


def lock_key(watch_dir: str, machine: str) -> str:
    return hashlib.sha1(f"{machine}\0{watch_dir}".encode()).hexdigest()


def lock_file(database: Path, key: str) -> Path:
    return database.with_name(f".{database.name}.{key[:10]}.lock")


def monitor_running(engine: Engine, watch_dir: str, machine: str) -> bool | None:
    """Whether a monitor holds the lock of this folder and machine now (monitors_running)."""
    return monitors_running(engine, [(watch_dir, machine)])[(watch_dir, machine)]


def monitors_running(engine: Engine, folders: list[tuple[str, str]]) -> dict[tuple[str, str], bool | None]:
    """For each (folder, machine): whether a monitor holds its lock now, seen without taking it (a
    lock taken to look would turn away a monitor starting that instant): PostgreSQL's pg_locks, or
    Linux's /proc/locks for an SQLite lock file, read once for them all; None where it cannot be
    seen from here."""
    if engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
        try:
            held = Path("/proc/locks").read_text()
        except OSError:
            held = None
        # "1: FLOCK  ADVISORY  WRITE 7117 fe:00:2146321 0 EOF": the sixth field ends with the inode
        inodes = {f.split()[5].rsplit(":", 1)[-1] for f in (held or "").splitlines() if len(f.split()) > 5}
        return {folder: _file_held(Path(engine.url.database), lock_key(*folder), inodes, held) for folder in folders}
    if engine.dialect.name == "postgresql":
        # pg_try_advisory_lock(bigint) keeps its high half in classid, low in objid
        query = text(
            "SELECT classid::text::bigint, objid::text::bigint FROM pg_locks "
            "WHERE locktype = 'advisory' AND granted AND objsubid = 1"
        )
        try:
            with engine.connect() as conn:
                locks = {(high, low) for high, low in conn.execute(query)}
        except SQLAlchemyError:
            return dict.fromkeys(folders)
        numbers = {folder: int(lock_key(*folder)[:15], 16) for folder in folders}
        return {folder: (number >> 32, number & 0xFFFFFFFF) in locks for folder, number in numbers.items()}
    return dict.fromkeys(folders)


def _file_held(database: Path, key: str, inodes: set[str], held: str | None) -> bool | None:
    try:
        inode = lock_file(database, key).stat().st_ino
    except FileNotFoundError:
        return False  # no monitor ever followed this folder with this database
    except OSError:
        return None
    return None if held is None else str(inode) in inodes


MIGRATION_WAIT = 120.0  # seconds a monitor waits for another's migration before it gives up


@contextlib.contextmanager
def migration_lock(engine: Engine, shown: str = "the database", wait: float | None = None) -> Iterator[None]:
    """Wait for, then hold, the database's migration lock: monitors started together migrate it once,
    the others find it done. Waiting is said in one line, and given up after `wait` seconds
    (MIGRATION_WAIT) with an error naming the lock. Released when the process ends in any way,
    kill -9 included."""
    wait = MIGRATION_WAIT if wait is None else wait
    if engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
        database = Path(engine.url.database)
        path = database.with_name(f".{database.name}.migrate.lock")
        try:
            handle = open(path, "a+")
        except OSError as exc:
            raise DatabaseError(f"{path}: {exc.strerror}; the database's folder must be writable") from None
        with handle:
            _take(lambda: _flock(handle), shown, f"the lock file {path}", wait)
            yield
    elif engine.dialect.name == "postgresql":
        with engine.begin() as conn:  # the lock ends with this transaction
            query = text("SELECT pg_try_advisory_xact_lock(:k)")
            _take(lambda: conn.execute(query, {"k": MIGRATION_KEY}).scalar(), shown, "its advisory lock", wait)
            yield
    else:
        yield


def _flock(handle) -> bool:
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _take(attempt, shown: str, what: str, wait: float) -> None:
    """Call `attempt` until it takes the lock, saying once that another process holds it."""
    deadline = time.monotonic() + wait
    if attempt():
        return
    log.warning("%s: another slmcnn is migrating it (%s); waiting up to %g s", shown, what, wait)
    while not attempt():
        if time.monotonic() > deadline:
            raise DatabaseError(
                f"{shown}: another process has held the migration lock ({what}) for over {wait:g} s; "
                "stop it (a stuck slmcnn?) and start again"
            )
        time.sleep(0.2)
