"""The monitor's schema changes as versioned Alembic migrations (one file per change in versions/),
run when a database is opened: a new database, or one of any older slmcnn, is brought to the
tables of schema.py, by one process at a time (lock.migration_lock)."""

import functools
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Table, create_engine, event, inspect
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from slmcnn.errors import DatabaseError
from slmcnn.monitoring.lock import migration_lock

HERE = Path(__file__).parent


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(HERE).replace("%", "%%"))
    return config


@functools.cache
def head() -> str:
    """The revision of schema.py's tables."""
    return ScriptDirectory.from_config(_config()).get_current_head()


def revision(engine: Engine, shown: str = "the database") -> str | None:
    """The database's revision; None for a new database or one of an slmcnn before migrations."""
    with engine.connect() as conn:
        try:
            return MigrationContext.configure(conn).get_current_revision()
        except CommandError:  # more than one row in alembic_version
            rows = [r[0] for r in conn.exec_driver_sql("SELECT version_num FROM alembic_version")]
    raise DatabaseError(
        f"{shown}: its alembic_version table holds {len(rows)} rows ({', '.join(map(repr, rows))}), one is "
        "expected; another program changed it: delete the rows that are not the schema the database has"
    )


def upgrade(engine: Engine, shown: str, target: str = "head") -> None:
    """Bring the database to `target` (this slmcnn's schema) in one transaction, so that a migration
    killed half way leaves the database as it was; one already there is only read. `shown` names
    the database in the one-line error of a database that cannot be migrated."""
    if target == "head" and revision(engine, shown) == head():
        return
    config = _config()
    migrating = _transactional(engine)
    try:
        with migration_lock(migrating, shown), migrating.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, target)
    except CommandError as exc:
        raise DatabaseError(f"{shown}: {exc}; was it made by a newer slmcnn (schema {head()} here)?") from None
    except SQLAlchemyError as exc:
        reason = str(exc.orig if isinstance(exc, DBAPIError) else exc).strip().splitlines()[0]
        raise DatabaseError(f"{shown} cannot be brought to this slmcnn's schema ({head()}): {reason}") from None
    finally:
        if migrating is not engine:
            migrating.dispose()


def _transactional(engine: Engine) -> Engine:
    """`engine`, or for SQLite one whose transactions hold DDL too: Python's sqlite3 starts a
    transaction only before data changes, so a CREATE or ALTER would be committed at once."""
    if engine.dialect.name != "sqlite":
        return engine
    migrating = create_engine(engine.url, poolclass=NullPool)

    @event.listens_for(migrating, "connect")
    def _connect(dbapi_connection, record) -> None:
        dbapi_connection.isolation_level = None  # no implicit transactions: BEGIN below is the one

    @event.listens_for(migrating, "begin")
    def _begin(conn) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return migrating


def add_missing(conn: Connection, table: Table, kinds: dict[str, str] | None = None) -> list[str]:
    """Add the columns of `table` that the database's table lacks, with DDL types from `kinds` where
    the column's own will not do: the migrations up to the first versioned schema meet databases
    of slmcnn versions that had no migrations and already hold some of the columns. The names added."""
    have = {c["name"] for c in inspect(conn).get_columns(table.name)}
    added = [column.name for column in table.columns if column.name not in have]
    for name in added:
        kind = (kinds or {}).get(name) or table.columns[name].type.compile(conn.dialect)
        conn.exec_driver_sql(f"ALTER TABLE {table.name} ADD COLUMN {name} {kind}")
    return added
