"""Issue #39, hardening round 3: alerts that are never sent, migrations that stick, profiles that
break, a database that goes away. One test per kind of defect (with its siblings), on SQLite and,
where the database matters, on PostgreSQL too (the `database` fixture)."""

from pathlib import Path

import pytest

from slmcnn.monitoring.alerts import Alert, AlertHook, HookFailed


def test_a_hook_s_stderr_is_kept_as_a_bounded_tail(tmp_path):
    from slmcnn.monitoring.alerts import STDERR_TAIL, run_hook

    code, said = run_hook("head -c 50000000 /dev/zero | tr '\\0' x >&2; echo; echo last words >&2", {}, 30)
    assert code == 0 and len(said) <= STDERR_TAIL and said.endswith(b"last words\n")
    with pytest.raises(HookFailed, match="exited 3: pager down"):
        AlertHook(None, "yes spam | head -c 1000000 >&2; echo 'pager down' >&2; exit 3")(
            Alert(1, "f", "r", "m", 1.0), 1
        )


def test_every_test_that_docs_reliability_names_exists():
    import re

    root = Path(__file__).resolve().parents[2]
    named = re.findall(r"`(tests/\w+/\w+\.py)::(\w+)`", (root / "docs" / "RELIABILITY.md").read_text())
    assert len(named) >= 15
    for file, test in named:
        assert f"def {test}(" in (root / file).read_text(), f"{file}::{test} is gone; docs/RELIABILITY.md names it"
