"""Issue #39, hardening round 3: alerts that are never sent, migrations that stick, profiles that
break, a database that goes away. One test per kind of defect (with its siblings), on SQLite and,
where the database matters, on PostgreSQL too (the `database` fixture)."""

import json
import time
from functools import partial
from pathlib import Path

import pytest

from conftest import sql_rows
from slmcnn.monitoring.alerts import Alert, AlertHook, HookFailed
from test_hardening import layer_png, monitor_for


def journal_ids(out: Path) -> list[int]:
    journal = out / "alerts.jsonl"
    return [json.loads(line)["id"] for line in journal.read_text().splitlines()] if journal.exists() else []


@pytest.fixture
def quick_retries(monkeypatch):
    """A hook that fails is tried once per raise, not four times over 3.5 s."""
    from slmcnn.monitoring import watch

    monkeypatch.setattr(watch, "deliver", partial(watch.deliver, backoff=()))


# ---------------------------------------------------------------- alerts: raised exactly once, or reported failed


def test_a_new_alert_in_a_migrated_first_version_database_is_raised(database, error_model_file, tmp_path):
    """slmcnn 0.1 stored its alerts raised; the `raised` column its migration adds must not make
    every later alert raised too (the column's default)."""
    key = "serial primary key" if "://" in database else "integer primary key"
    for table in (
        f"builds (id {key}, watch_dir varchar not null unique, model varchar, started float)",
        f"layers (id {key}, build_id integer not null references builds (id), number integer, "
        "file varchar not null, path varchar, status varchar not null, message text, processed float, "
        "seconds float, powder float, object float, error float, geometry text, overlay varchar, "
        "unique (build_id, file))",
        f"alerts (id {key}, build_id integer not null, layer_id integer not null, "
        "layer integer, file varchar, rule varchar, message text, value float, created float)",
    ):
        sql_rows(database, f"CREATE TABLE {table}")
    watch, out = tmp_path / "camera", tmp_path / "live"
    watch.mkdir()
    sql_rows(database, f"INSERT INTO builds (watch_dir, model, started) VALUES ('{watch}', 'm', 0)")
    sql_rows(database, "INSERT INTO layers (build_id, number, file, status) VALUES (1, 1, 'old.png', 'done')")
    sql_rows(database, "INSERT INTO alerts (build_id, layer_id, layer, rule) VALUES (1, 1, 1, 'error-fraction')")
    layer_png(watch / "00002.png")
    monitor = monitor_for(watch, database, error_model_file, out, settle=0.0)
    assert monitor.process_ready() == 1
    monitor.lock.release()
    assert journal_ids(out) == [2]  # the new one only: 0.1's alert was raised by 0.1
    assert sql_rows(database, "SELECT id, raised FROM alerts ORDER BY id") == [(1, 1), (2, 1)]


def test_an_alert_whose_hook_failed_or_hung_is_raised_in_the_next_build_and_after_a_restart(
    database, error_model_file, tmp_path, quick_retries
):
    """A hook that exits non-zero or runs past its timeout has not delivered the alert: it stays
    unraised, and is raised by the folder's next monitor, whatever build that one follows."""
    watch, out, ran = tmp_path / "camera", tmp_path / "live", tmp_path / "ran"
    watch.mkdir()
    layer_png(watch / "00001.png")
    failing = monitor_for(watch, database, error_model_file, out, settle=0.0, on_alert="exit 1")
    assert failing.process_ready() == 1
    failing.lock.release()
    hung = f"sleep 30; touch {ran}"
    monitor = monitor_for(watch, database, error_model_file, out, settle=0.0, on_alert=hung, on_alert_timeout=0.3)
    monitor.raise_pending()  # a restart: the hook hangs, is stopped and does not count
    monitor.lock.release()
    assert sql_rows(database, "SELECT raised FROM alerts") == [(0,)] and journal_ids(out) == [1, 1]
    delivered = tmp_path / "delivered"
    hook = f"echo $SLMCNN_ALERT_ID >> {delivered}"
    following = monitor_for(watch, database, error_model_file, out, settle=0.0, on_alert=hook, build="next")
    layer_png(watch / "00002.png", seed=1)
    following.run(exit_when_idle=0.2)
    assert following.build.row.name == "next" and sorted(delivered.read_text().split()) == ["1", "2"]
    assert sql_rows(database, "SELECT raised FROM alerts ORDER BY id") == [(1,), (1,)]
    time.sleep(0.5)
    assert not ran.exists()  # the hung hook was killed with everything it started


def test_a_hook_s_stderr_is_kept_as_a_bounded_tail(tmp_path):
    from slmcnn.monitoring.alerts import STDERR_TAIL, run_hook

    code, said = run_hook("head -c 50000000 /dev/zero | tr '\\0' x >&2; echo; echo last words >&2", {}, 30)
    assert code == 0 and len(said) <= STDERR_TAIL and said.endswith(b"last words\n")
    with pytest.raises(HookFailed, match="exited 3: pager down"):
        AlertHook(None, "yes spam | head -c 1000000 >&2; echo 'pager down' >&2; exit 3")(
            Alert(1, "f", "r", "m", 1.0), 1
        )
