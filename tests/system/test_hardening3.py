"""Issue #39, hardening round 3: alerts that are never sent, migrations that stick, profiles that
break, a database that goes away. One test per kind of defect (with its siblings), on SQLite and,
where the database matters, on PostgreSQL too (the `database` fixture)."""

import subprocess
import sys

import pytest

from slmcnn.errors import DatabaseError
from slmcnn.monitoring import Database
from tests.conftest import first_version_tables, sql_rows
from tests.integration.test_hardening import monitor_for

# ---------------------------------------------------------------- migrations that stick

KILLED_MIGRATION = """
import os, sys
from sqlalchemy.engine import Connection
real = Connection.exec_driver_sql
def killed(self, statement, *args, **kwargs):
    if statement.startswith("UPDATE alerts SET raised"):
        os._exit(9)
    return real(self, statement, *args, **kwargs)
Connection.exec_driver_sql = killed
from slmcnn.monitoring import Database
Database(sys.argv[1])
"""


def test_a_migration_killed_half_way_two_version_rows_and_a_held_lock(database, monkeypatch, caplog):
    """A migration killed at any point leaves the database as it was, and the next one completes it;
    two rows in alembic_version and a migration lock held too long are one line each, not a
    traceback or a wait without end."""
    from sqlalchemy import create_engine, inspect

    from slmcnn.monitoring import lock
    from slmcnn.monitoring.db.connection import database_url
    from slmcnn.monitoring.migrations import head

    first_version_tables(database)
    sql_rows(database, "INSERT INTO builds (watch_dir, model, started) VALUES ('/cam', 'm', 0)")
    sql_rows(database, "INSERT INTO alerts (build_id, layer_id, layer, rule) VALUES (1, 1, 7, 'error-fraction')")
    engine = create_engine(database_url(database))
    before = sorted(inspect(engine).get_table_names())
    killed = subprocess.run([sys.executable, "-c", KILLED_MIGRATION, database], capture_output=True, timeout=120)
    assert killed.returncode == 9, killed.stderr
    engine.dispose()
    assert sorted(inspect(engine).get_table_names()) == before  # nothing of the half-done migration stayed
    db = Database(database)
    assert sql_rows(database, "SELECT layer, raised FROM alerts") == [(7, 1)]
    assert db.new_build("/cam", "cam #2").id == 2  # 0.1's one build per folder is gone
    db.engine.dispose()

    sql_rows(database, "INSERT INTO alembic_version (version_num) VALUES ('0001')")
    with pytest.raises(DatabaseError, match=r"alembic_version table holds 2 rows \('.*', '.*'\)") as error:
        Database(database)
    assert len(str(error.value).splitlines()) == 1
    sql_rows(database, "DELETE FROM alembic_version")
    sql_rows(database, f"INSERT INTO alembic_version (version_num) VALUES ('{head()}')")

    monkeypatch.setattr(lock, "MIGRATION_WAIT", 0.5)
    sql_rows(database, "DROP TABLE alembic_version")  # as an slmcnn before migrations left it: to be migrated
    with lock.migration_lock(engine), pytest.raises(DatabaseError, match="held the migration lock .* for over 0.5 s"):
        Database(database)
    assert sum("another slmcnn is migrating it" in r.message for r in caplog.records) == 1
    assert revision_of(database) == head()


def revision_of(database: str) -> str:
    from sqlalchemy import create_engine

    from slmcnn.monitoring.db.connection import database_url
    from slmcnn.monitoring.migrations import revision

    engine = create_engine(database_url(database))
    try:
        Database(database)
        return revision(engine)
    finally:
        engine.dispose()


def test_a_writer_killed_mid_write_leaves_no_temporary_file(tmp_path, tiny_build, tiny_model_file):
    """A Ray worker or a monitor killed while writing a layer's files leaves the temporary file
    atomic_path made; the run's end (Ray) or the next start (the monitor) removes it."""
    import importlib.util

    from tests.conftest import run_cli

    killed = ".00001.overlay.1a2b3c4d.tmp.png"  # atomic_path's name, as a killed writer leaves it
    watch, live = tmp_path / "camera", tmp_path / "live"
    watch.mkdir()
    live.mkdir()
    (live / killed).write_bytes(b"")
    (live / "notes.txt").write_text("mine")
    monitor_for(watch, tmp_path / "b.sqlite", tiny_model_file, live).lock.release()
    assert sorted(p.name for p in live.iterdir()) == ["notes.txt"]
    if importlib.util.find_spec("ray") is None:
        return
    out = tmp_path / "ray"
    out.mkdir()
    (out / killed).write_bytes(b"")
    layers = sorted((tiny_build / "layers").glob("*.png"))[:2]
    args = ("--model", tiny_model_file, "--backend", "torch", "--ray", "--ray-workers", "1", "--force")
    done = run_cli("predict-layer", *layers, "--out", out, *args)
    assert done.returncode == 0, done.stderr
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]
