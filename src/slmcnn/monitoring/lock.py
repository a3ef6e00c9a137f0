"""One monitor per folder and database: a lock file beside SQLite, an advisory lock in PostgreSQL."""

import fcntl
import hashlib
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Engine

from slmcnn.errors import DatabaseError


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
