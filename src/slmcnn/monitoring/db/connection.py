"""Where the monitor's database is and how it is opened: a path means an SQLite file, anything with
'://' an SQLAlchemy URL (e.g. PostgreSQL); opening checks the tables are the monitor's and brings
them to this slmcnn's schema (../schema.py, ../migrations). Every error a user can cause is one
DatabaseError line, with no password in it."""

import contextlib
import importlib.util
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, InterfaceError, OperationalError, SQLAlchemyError

from slmcnn.errors import DatabaseError
from slmcnn.files import describe, resolved
from slmcnn.monitoring.migrations import upgrade

SQLITE_HEADER = b"SQLite format 3\x00"
DRIVERS = {"postgresql": ("psycopg", "postgresql+psycopg", "pip install 'slmcnn[postgres]'")}
MONITOR_TABLES = {"builds", "layers", "tiles", "alerts"}


def shown_url(db: str | Path) -> str:
    """The database as it may be printed: a URL without its password."""
    if "://" not in str(db):
        return str(db)
    try:
        return make_url(str(db)).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return re.sub(r"//([^:/@]*):[^@/]*@", r"//\1:***@", str(db))


def database_url(db: str | Path, create: bool = True) -> str:
    """A path means an SQLite file; anything with '://' is an SQLAlchemy URL: sqlite:///FILE or
    postgresql://user@host/db (with the psycopg driver of `slmcnn[postgres]`). Anything else, a
    folder, a file that is not SQLite or a missing driver is a DatabaseError saying what to fix."""
    if "://" not in str(db):
        path = Path(db)
        if path.is_dir():
            raise DatabaseError(f"{path} is a folder; give an SQLite database file, e.g. {path / 'build.sqlite'}")
        if path.is_file() and path.stat().st_size and not _is_sqlite(path):
            raise DatabaseError(f"{path} is not an SQLite database; give the monitor's database or a new file name")
        if not path.is_file() and not create:
            raise DatabaseError(f"{path}: no such database")
        if not path.parent.is_dir():
            raise DatabaseError(f"{path}: no such folder {path.parent}")
        try:
            return f"sqlite:///{resolved(path)}"
        except OSError as exc:
            raise DatabaseError(describe(exc, path)) from None
    try:
        url = make_url(str(db))
    except (ArgumentError, ValueError):
        raise DatabaseError(f"{shown_url(db)} is not a database URL; use postgresql://user@host/db or a file") from None
    kind = {"postgres": "postgresql"}.get(url.get_backend_name(), url.get_backend_name())
    if kind == "sqlite":
        return database_url(url.database or "", create) if url.database else str(db)
    if kind not in DRIVERS:
        raise DatabaseError(
            f"{shown_url(db)}: unknown database kind {url.drivername!r}; use an SQLite file or postgresql://user@host/db"
        )
    module, default, install = DRIVERS[kind]
    if "+" not in url.drivername:
        url = url.set(drivername=default)
    if url.drivername == default and importlib.util.find_spec(module) is None:
        raise DatabaseError(f"{shown_url(db)}: the {kind} driver {module} is not installed; {install}")
    return url.render_as_string(hide_password=False)


def _is_sqlite(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(16) == SQLITE_HEADER


@contextlib.contextmanager
def database_errors(db: str | Path) -> Iterator[None]:
    """Database errors (no server, wrong password, a full disk, a driver missing) as one DatabaseError."""
    try:
        yield
    except ImportError as exc:
        raise DatabaseError(
            f"{shown_url(db)}: {exc}; install that driver, or use postgresql:// with slmcnn[postgres]"
        ) from None
    except SQLAlchemyError as exc:
        first = (
            str(getattr(exc, "orig", None) or exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        )
        server = "://" in str(db) and not str(db).startswith("sqlite") and isinstance(exc, OperationalError)
        hint = "; check that the server runs and the URL's host, port, user, password and database" if server else ""
        raise DatabaseError(f"{shown_url(db)}: {first}{hint}") from None


def unavailable(exc: BaseException) -> bool:
    """The database is away for now, not broken, and waiting is the cure: an SQLite file that another
    program holds (locked, busy), a server restarting or out of reach (a lost or refused connection).
    A full disk under SQLite is not: the monitor stops and says so."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if not isinstance(exc, OperationalError | InterfaceError):
        return False
    if isinstance(exc.orig, sqlite3.Error):
        return any(word in str(exc.orig).lower() for word in ("locked", "busy"))
    return True


def open_engine(db: str | Path, create: bool) -> Engine:
    """The engine of a monitor's database, its tables brought to this slmcnn's schema. Without
    `create` a database that lacks the monitor's tables is refused and left untouched, and so is,
    with it, an SQLite file of another program (tables, none of them the monitor's)."""
    with database_errors(db):
        url = database_url(db, create)
        # a server's connections are checked before use: one that restarted is reconnected to
        engine = create_engine(url, pool_pre_ping=not url.startswith("sqlite"))
        tables = set(inspect(engine).get_table_names())
        if create and engine.dialect.name == "sqlite" and tables and "builds" not in tables:
            raise DatabaseError(
                f"{shown_url(db)} is another program's database (tables {', '.join(sorted(tables)[:4])}); "
                "give the monitor's database or a new file"
            )
        missing = MONITOR_TABLES - tables
        if not create and missing:
            raise DatabaseError(f"{shown_url(db)} is not a monitor's database (no {', '.join(sorted(missing))} table)")
        upgrade(engine, shown_url(db))
    return engine
