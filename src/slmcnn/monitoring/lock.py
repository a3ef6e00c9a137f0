"""One monitor per folder and database, and one schema migration at a time: a lock file beside
SQLite, an advisory lock in PostgreSQL."""

import contextlib
import fcntl
import hashlib
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Engine

from slmcnn.errors import DatabaseError

MIGRATION_KEY = int(hashlib.sha1(b"slmcnn schema migration").hexdigest()[:15], 16)


class MonitorLock:
    """One monitor per folder and database: an exclusive lock held while the monitor runs (a lock
    file beside an SQLite database, an advisory lock in PostgreSQL), released when the process ends
    in any way, kill -9 included."""

    def __init__(self, engine: Engine, watch_dir: str, shown: str):
        key = hashlib.sha1(f"{watch_dir}".encode()).hexdigest()
        self.handle, self.connection = None, None
        busy = DatabaseError(f"another monitor is following {watch_dir} with {shown}; stop it first")
        if engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
            path = Path(engine.url.database)
            self.handle = open(path.with_name(f".{path.name}.{key[:10]}.lock"), "a+")
            try:
                fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self.handle.close()
                raise busy from None
        elif engine.dialect.name == "postgresql":
            self.connection = engine.connect()
            number = int(key[:15], 16)
            if not self.connection.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": number}).scalar():
                self.connection.close()
                raise busy

    def release(self) -> None:
        for thing in (self.handle, self.connection):
            if thing is not None:
                thing.close()
        self.handle = self.connection = None


@contextlib.contextmanager
def migration_lock(engine: Engine) -> Iterator[None]:
    """Wait for, then hold, the database's migration lock: monitors started together migrate it once,
    the others find it done. Released when the process ends in any way, kill -9 included."""
    if engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
        database = Path(engine.url.database)
        path = database.with_name(f".{database.name}.migrate.lock")
        try:
            handle = open(path, "a+")
        except OSError as exc:
            raise DatabaseError(f"{path}: {exc.strerror}; the database's folder must be writable") from None
        with handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield
    elif engine.dialect.name == "postgresql":
        with engine.begin() as conn:  # the lock ends with this transaction
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_KEY})
            yield
    else:
        yield
