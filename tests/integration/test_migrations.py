"""The monitor's schema migrations (monitoring/migrations), on SQLite and on PostgreSQL: a new
database, one of the schema before, one of slmcnn 0.1, monitors opening one at once, and databases
that cannot be migrated."""

import threading
import time

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine

from slmcnn.errors import DatabaseError
from slmcnn.monitoring import Database
from slmcnn.monitoring.db.connection import database_url
from slmcnn.monitoring.lock import migration_lock
from slmcnn.monitoring.migrations import head, revision, upgrade
from slmcnn.monitoring.schema import metadata
from tests.conftest import first_version_tables, run_cli, sql_rows


def test_a_new_database_is_made_as_schema_py_describes_it(database):
    db = Database(database)
    with db.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
    assert sql_rows(database, "SELECT version_num FROM alembic_version") == [(head(),)]


@pytest.mark.parametrize("versioned", [True, False], ids=["alembic", "unversioned"])
def test_a_database_of_the_schema_before_keeps_its_rows_and_gains_the_new_columns(database, versioned):
    """The schema before graded alerts (revision 0001, that of commit 5e85a37): as the migrations
    made it, or as slmcnn made it before there were migrations (no version table)."""
    upgrade(create_engine(database_url(database)), database, "0001")
    if not versioned:
        sql_rows(database, "DROP TABLE alembic_version")
    for statement in (
        "INSERT INTO builds (watch_dir, name, model, started, machine) VALUES ('/cam', 'job 7', 'm', 1.5, 'm290')",
        "INSERT INTO layers (build_id, number, file, status, error) VALUES (1, 1, '00001.png', 'done', 0.25)",
        "INSERT INTO tiles (layer_id, row, col, cls, p_error) VALUES (1, 0, 0, 2, 0.75)",
        "INSERT INTO alerts (build_id, layer_id, layer, file, rule, value) VALUES (1, 1, 1, '00001.png', 'jump', 0.5)",
        "INSERT INTO attempts (watch_dir, file, count) VALUES ('/cam', '00002.png', 1)",
    ):
        sql_rows(database, statement)
    db = Database(database)
    assert revision(db.engine) == head() != "0001"
    assert sql_rows(database, "SELECT id, watch_dir, name, machine FROM builds") == [(1, "/cam", "job 7", "m290")]
    assert sql_rows(database, "SELECT id, file, error, grade FROM layers") == [(1, "00001.png", 0.25, None)]
    assert sql_rows(database, "SELECT cls, p_error FROM tiles") == [(2, 0.75)]
    assert sql_rows(database, "SELECT rule, value, raised, grade, regions, overlay FROM alerts") == [
        ("jump", 0.5, 0, None, None, None)
    ]
    assert sql_rows(database, "SELECT file, count FROM attempts") == [("00002.png", 1)]
    sql_rows(database, "UPDATE alerts SET grade = 'critical', regions = '[[0, 0, 1, 1]]', overlay = 'o.png'")
    assert sql_rows(database, "SELECT grade, regions FROM alerts") == [("critical", "[[0, 0, 1, 1]]")]
    assert db.machines() == ["m290"] and db.open_build("/cam", machine="m290").id == 1


def test_a_database_of_the_first_version_is_brought_up_to_date(database):
    """slmcnn 0.1: no tiles' anomaly, no attempts, alerts without `raised` (they were all raised),
    and builds.watch_dir unique; a folder may now hold a second build."""
    first_version_tables(database)
    sql_rows(database, "INSERT INTO builds (watch_dir, model, started) VALUES ('/cam', 'm', 0)")
    sql_rows(database, "INSERT INTO layers (build_id, number, file, status) VALUES (1, 1, '00001.png', 'done')")
    sql_rows(database, "INSERT INTO alerts (build_id, layer_id, layer, rule) VALUES (1, 1, 7, 'error-fraction')")
    stored = Database(database)
    assert sql_rows(database, "SELECT layer, raised FROM alerts") == [(7, 1)]
    assert stored.open_build("/cam").id == 1 and stored.stored_files("/cam", "")["00001.png"][0].stamp is None
    second = stored.new_build("/cam", "cam #2")
    assert [b.id for b in stored.builds("/cam")] == [1, second.id] and stored.builds()[0].name == "cam"
    assert sql_rows(database, "SELECT count(*) FROM layers WHERE build_id = 1") == [(1,)]


def test_monitors_opening_a_new_database_at_once_migrate_it_once(database):
    """While one holds the migration lock the others wait; then each finds the schema made."""
    opened, failed = [], []

    def open_database():
        try:
            opened.append(Database(database))
        except DatabaseError as exc:
            failed.append(exc)

    threads = [threading.Thread(target=open_database) for _ in range(4)]
    with migration_lock(create_engine(database_url(database))):
        for thread in threads:
            thread.start()
        time.sleep(1.0)
        assert not opened and not failed
    for thread in threads:
        thread.join(timeout=60)
    assert len(opened) == 4 and not failed, failed
    assert sql_rows(database, "SELECT version_num FROM alembic_version") == [(head(),)]


def test_a_database_that_cannot_be_migrated_says_so_in_one_line(database, tmp_path):
    Database(database)
    sql_rows(database, "UPDATE alembic_version SET version_num = '9999'")  # a newer slmcnn's schema
    done = run_cli("report", database, "--out", tmp_path / "report.html")
    assert done.returncode != 0 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "'9999'" in done.stderr and "newer slmcnn" in done.stderr and head() in done.stderr
    sql_rows(database, "DROP TABLE alembic_version")
    sql_rows(database, "DROP TABLE attempts")
    sql_rows(database, "CREATE VIEW attempts AS SELECT 1 AS watch_dir")  # in the way of the table
    with pytest.raises(DatabaseError, match="cannot be brought to this slmcnn's schema") as error:
        Database(database)
    assert "attempts" in str(error.value) and len(str(error.value).splitlines()) == 1


def test_an_sqlite_database_whose_migration_cannot_be_locked_says_so_in_one_line(tmp_path):
    db = tmp_path / "build.sqlite"
    Database(db)
    sql_rows(db, "DROP TABLE alembic_version")  # as an slmcnn before migrations left it
    lock = tmp_path / ".build.sqlite.migrate.lock"
    lock.unlink()
    lock.mkdir()  # in the way of the lock file
    with pytest.raises(DatabaseError, match="migrate.lock: Is a directory; the database's folder must be writable"):
        Database(db)
