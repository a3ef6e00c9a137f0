"""Graded alerts: their delivery on a bounded pool (slow, failing and critical hooks) and what a hook is told."""

import json
import logging
import threading

from slmcnn.monitoring.alerts import Alert, AlertHook, AlertSender


def alert(layer: int, grade: str = "minor", pushed: bool = True) -> Alert:
    regions = [{"rows": [0, 1], "cols": [2, 2], "box": [256, 0, 384, 256], "tiles": 2}]
    return Alert(layer, f"{layer:05d}.png", grade, f"{grade}: layer {layer}", 1.0, regions, "b", "m1", "o.png", pushed)


def test_a_critical_alert_starts_at_once_behind_a_full_queue_of_slow_hooks():
    gate, started, delivered = threading.Event(), [], []
    running = threading.Semaphore(0)

    def slow(a, alert_id):
        started.append(alert_id)
        running.release()
        if a.grade != "critical":
            gate.wait(10)
        delivered.append(alert_id)

    sender = AlertSender(slow, lambda ids: None, workers=2)
    for i in range(1, 31):  # 30 alerts queued behind two busy workers
        sender.send(i, alert(i))
    for _ in range(2):
        assert running.acquire(timeout=5)
    assert sorted(started) == [1, 2]  # the bound holds: two hooks at once, the oldest first
    sender.send(31, alert(31, "critical"))  # queued: not the layer just stored
    sender.send(32, alert(32, "critical"), fresh=True)
    assert running.acquire(timeout=5) and started[-1] == 32  # started while every worker is busy
    assert 31 not in started
    gate.set()
    sender.close()
    assert sorted(delivered) == list(range(1, 33)) and started.index(31) < started.index(3)  # critical first


def test_the_newest_critical_alert_goes_first_and_minor_ones_in_order():
    gate, busy, order = threading.Event(), threading.Event(), []

    def hook(a, alert_id):
        busy.set()
        gate.wait(10)
        order.append(alert_id)

    sender = AlertSender(hook, lambda ids: None, workers=1)
    sender.send(1, alert(1))  # takes the one worker
    assert busy.wait(5)
    for i, grade in ((2, "minor"), (3, "critical"), (4, "minor"), (5, "critical")):
        sender.send(i, alert(i, grade))
    gate.set()
    sender.close()
    assert order == [1, 5, 3, 2, 4]


def test_the_hook_is_told_build_machine_grade_overlay_and_regions(tmp_path):
    journal, seen = tmp_path / "alerts.jsonl", tmp_path / "env.json"
    command = f"""python3 -c 'import json, os; json.dump({{k: v for k, v in os.environ.items() if k.startswith("SLMCNN_ALERT")}}, open("{seen}", "w"))'"""
    AlertHook(journal, command)(alert(7, "critical"), 12)
    env = json.loads(seen.read_text())
    assert env["SLMCNN_ALERT_GRADE"] == "critical" and env["SLMCNN_ALERT_BUILD"] == "b"
    assert env["SLMCNN_ALERT_MACHINE"] == "m1" and env["SLMCNN_ALERT_OVERLAY"] == "o.png"
    assert json.loads(env["SLMCNN_ALERT_REGIONS"])[0]["box"] == [256, 0, 384, 256] and env["SLMCNN_ALERT_ID"] == "12"
    assert json.loads(journal.read_text())["grade"] == "critical"


def test_a_lone_minor_tile_is_logged_and_journalled_not_pushed(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    ran = tmp_path / "ran"
    hook = AlertHook(tmp_path / "alerts.jsonl", f"touch {ran}")
    hook(alert(3, "minor", pushed=False), 1)
    assert not ran.exists() and "ALERT MINOR layer 3" in caplog.text
    assert json.loads((tmp_path / "alerts.jsonl").read_text())["pushed"] is False
    hook(alert(4, "minor"), 2)
    assert ran.exists()


def test_a_failing_hook_on_the_pool_is_never_marked_and_others_go_on(tmp_path):
    marked = []

    def flaky(a, alert_id):
        if a.layer == 2:
            raise RuntimeError("pager down")

    sender = AlertSender(flaky, marked.extend, backoff=(0.01,), workers=3)
    for i in range(1, 5):
        sender.send(i, alert(i))
    sender.close()
    assert sorted(marked) == [1, 3, 4] and 2 not in sender.queued  # queued again with the next layer
