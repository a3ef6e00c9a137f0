"""Issue #16: nothing overwritten, no layer lost, one clear line for every bad input. One test per
example of the issue, fault injection (read-only output, full disk, a slowly written layer)."""

import errno
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from slmcnn import files, images
from slmcnn.errors import DatabaseError, ImageReadError, OutputError, SlmcnnError


def test_atomic_writes_leave_the_old_file_on_a_full_disk(tmp_path, monkeypatch):
    target = tmp_path / "a.json"
    files.write_text(target, "old")

    def partial(self, data):
        with open(self, "wb") as handle:
            handle.write(data[:3])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", partial)
    with pytest.raises(OutputError, match="disk is full"):
        files.write_text(target, "new and longer")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_alerts_carry_ids_and_a_slow_hook_does_not_hold_up_layers(tmp_path):
    from slmcnn.monitoring.alerts import Alert, AlertHook, AlertSender

    gate, marked = threading.Event(), []
    seen = []

    def slow(alert, alert_id):
        gate.wait(5)
        seen.append(alert_id)

    sender = AlertSender(slow, marked.extend)
    start = time.perf_counter()
    for i in range(3):
        sender.send(i + 1, Alert(i, "f", "rule", "m", 1.0))
    sender.send(1, Alert(0, "f", "rule", "m", 1.0))  # queued once only
    assert time.perf_counter() - start < 0.5
    gate.set()
    sender.close()
    assert sorted(seen) == [1, 2, 3] and sorted(marked) == [1, 2, 3]
    journal, out = tmp_path / "alerts.jsonl", tmp_path / "ids"
    AlertHook(journal, f"echo $SLMCNN_ALERT_ID >> {out}")(Alert(4, "f", "r", "m", 1.0), 17)
    assert json.loads(journal.read_text())["id"] == 17 and out.read_text().strip() == "17"


def test_library_errors_are_slmcnn_errors():
    assert issubclass(OutputError, SlmcnnError) and issubclass(DatabaseError, SlmcnnError)


def test_only_the_project_s_image_formats_are_decoded(tmp_path):
    """A PostScript file named like a layer is refused, never handed to Ghostscript."""
    from PIL import Image

    eps = tmp_path / "layer_0001.png"
    eps.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 64\n%%EndComments\nshowpage\n%%EOF\n")
    with Image.open(eps) as img:  # PIL alone would take it as EPS (and run Ghostscript to load it)
        assert img.format == "EPS"
    with pytest.raises(ImageReadError, match="not a readable image"):
        images.read(eps)


def test_a_failing_hook_is_retried_logged_and_never_marked_delivered(tmp_path, caplog):
    from slmcnn.monitoring.alerts import Alert, AlertHook, AlertSender, HookFailed

    tries = tmp_path / "tries"
    hook = AlertHook(None, f"echo x >> {tries}; echo 'pager down' >&2; exit 3")
    with pytest.raises(HookFailed, match="exited 3: pager down"):
        hook(Alert(1, "f", "rule", "m", 1.0), 5)
    marked = []
    sender = AlertSender(hook, marked.extend, backoff=(0.01, 0.01))
    sender.send(5, Alert(1, "f", "rule", "m", 1.0))
    sender.close()
    assert marked == [] and len(tries.read_text().split()) == 1 + 3  # the call above, then 3 tries
    assert sum("not delivered" in r.message for r in caplog.records) == 3
    sender = AlertSender(hook, marked.extend, backoff=())
    sender.send(5, Alert(1, "f", "rule", "m", 1.0))
    sender.close()
    assert 5 not in sender.queued  # queued again with the next layer's alerts


def test_a_database_gone_under_the_alert_thread_is_one_logged_line(caplog):
    from sqlalchemy.exc import OperationalError

    from slmcnn.monitoring.alerts import Alert, AlertSender

    def gone(ids):
        raise OperationalError("UPDATE alerts", {}, Exception("server closed the connection unexpectedly"))

    failures = []
    previous, threading.excepthook = threading.excepthook, failures.append
    try:
        sender = AlertSender(lambda alert, alert_id: None, gone)
        sender.send(1, Alert(1, "f", "rule", "m", 1.0))
        sender.close()
    finally:
        threading.excepthook = previous
    assert failures == [] and any("not marked raised" in r.message for r in caplog.records)


def test_the_python_api_refuses_odd_inputs_with_slmcnn_errors(tiny_model):
    import slmcnn

    frame = np.zeros((128, 128, 3), np.uint8)
    calls = [
        lambda: slmcnn.predict_layers([1, 2], tiny_model, backend="torch"),
        lambda: slmcnn.predict_layers(None, tiny_model, backend="torch"),
        lambda: slmcnn.predict_layers(frame, tiny_model, backend=3),
        lambda: slmcnn.predict_layers(frame, 5),
        lambda: slmcnn.explain_patches(frame, tiny_model),
        lambda: slmcnn.explain_patches(frame[None, :64, :64], tiny_model),
        lambda: slmcnn.explain_patches(frame[None], tiny_model, targets=[7]),
        lambda: slmcnn.calibrate(frame, corners="abc"),
        lambda: slmcnn.calibrate(5),
        lambda: slmcnn.train(5, "out"),
        lambda: slmcnn.load_model(5),
    ]
    for call in calls:
        with pytest.raises(SlmcnnError):
            call()
