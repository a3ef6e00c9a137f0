"""What an operator is told around each command: where the monitor looks and what it stored, what
synth --live writes, the order photos are taken in, and when to calibrate first."""

from slmcnn.grading import uncalibrated_advice
from slmcnn.monitoring.operator import watch_notes
from slmcnn.outputs import in_layer_order


def test_an_empty_or_nested_watch_folder_is_told(tmp_path):
    assert "holds no photos yet" in watch_notes(tmp_path)[0]
    (tmp_path / "build1" / "layers").mkdir(parents=True)
    (tmp_path / "build1" / "layers" / "00001.png").write_bytes(b"x")
    (tmp_path / "build1" / "patches" / "Error").mkdir(parents=True)
    for i in range(3):  # more photos than layers/ holds, but patches, not layers
        (tmp_path / "build1" / "patches" / "Error" / f"{i}.png").write_bytes(b"x")
    (note,) = watch_notes(tmp_path / "build1")
    assert "subfolders" in note and f"slmcnn monitor {tmp_path / 'build1' / 'layers'}" in note
    assert watch_notes(tmp_path / "build1" / "layers") == []


def test_photos_are_taken_by_the_number_in_the_name_then_time_folder_by_folder(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    for folder, names in ((a, ("layer_10.png", "layer_9.png", "layer_100.png")), (b, ("x_2.png", "x_1.png"))):
        for name in names:
            (folder / name).write_bytes(b"x")
    stamps = [tmp_path / n for n in ("cam_20210916_104213.png", "cam_20210916_094213.png")]
    for path in stamps:
        path.write_bytes(b"x")
    given = sorted([*a.iterdir(), *b.iterdir()])  # alphabetical, as a folder listing gives them
    assert [p.name for p in in_layer_order(given)] == [
        "layer_9.png",
        "layer_10.png",
        "layer_100.png",
        "x_1.png",
        "x_2.png",
    ]
    assert in_layer_order(stamps) == stamps[::-1]  # a date-time stamp is no layer number: time order


def test_the_calibrate_advice_counts_the_flagged_layers():
    line = uncalibrated_advice(["critical", "ok", "critical", "minor", None])
    assert "2 critical" in line and "1 minor" in line and "of 5 layer(s)" in line
    assert "10-50" in line and "--camera" in line


def test_the_report_chart_marks_critical_layers_red_on_whole_layer_numbers():
    from types import SimpleNamespace

    from matplotlib.colors import to_hex

    from slmcnn.monitoring.report import CRITICAL, curve_figure

    done = [SimpleNamespace(number=n, fractions={"Error": 0.01 * n, "Object": 0.2}) for n in range(3, 9)]
    alerts = [SimpleNamespace(layer=5, grade="critical"), SimpleNamespace(layer=6, grade="minor")]
    fig = curve_figure(done, alerts)
    fig.canvas.draw()
    ax = fig.axes[0]
    assert all(float(tick).is_integer() for tick in ax.get_xticks())
    legend = {
        text.get_text(): handle for text, handle in zip(ax.get_legend().get_texts(), ax.get_legend().legend_handles)
    }
    assert to_hex(legend["critical layer"].get_color()) == to_hex(CRITICAL)
    assert [line.get_xdata()[0] for line in ax.lines[2:]] == [5]  # the critical layer only


def test_a_build_watched_in_a_layers_folder_is_named_after_its_parent():
    from slmcnn.monitoring.db.records import BuildRow
    from slmcnn.monitoring.report import build_title

    assert build_title(BuildRow(1, "/x/build1/layers", "layers", "", 0.0, "")) == "build1"
    assert build_title(BuildRow(2, "/x/build1/layers", "layers #2", "", 0.0, "")) == "build1 #2"
    assert build_title(BuildRow(3, "/x/camera", "camera", "", 0.0, "")) == "camera"
    assert build_title(BuildRow(4, "/x/build1/layers", "job 7", "", 0.0, "")) == "job 7"


def test_an_outline_that_fills_the_frame_suggests_full_frame():
    from slmcnn.camera import bed_doubts

    whole = bed_doubts((400, 400), [[2, 3], [397, 1], [396, 398], [3, 395]])
    assert any("--full-frame" in doubt for doubt in whole)
    part = bed_doubts((400, 400), [[100, 100], [300, 100], [300, 300], [100, 300]])
    assert not any("--full-frame" in doubt for doubt in part)


def test_the_same_frame_counts_once_and_few_frames_get_the_10_50_advice(tmp_path):
    from slmcnn.camera import distinct_frames, frames_advice

    for name, data in (("a.png", b"one"), ("b.png", b"two"), ("copy-of-a.png", b"one")):
        (tmp_path / name).write_bytes(data)
    a, b, copy = (str(tmp_path / n) for n in ("a.png", "b.png", "copy-of-a.png"))
    frames, note = distinct_frames([a, b, a, copy])
    assert frames == [a, b] and "2 frame(s) given more than once" in note
    assert distinct_frames([a, b]) == ([a, b], None)
    assert "10-50" in frames_advice(4) and frames_advice(10) is None


def test_the_monitor_s_last_line_is_one_line_when_the_database_is_gone():
    from sqlalchemy.exc import OperationalError

    from slmcnn.errors import DatabaseError
    from slmcnn.monitoring.operator import Tally, closing_line

    class Gone:
        def __init__(self, error):
            self.error = error

        def folder_grades(self, *args):
            raise self.error

    before = Tally({}, 0)
    for error in (OperationalError("SELECT", {}, Exception("server closed the connection")), DatabaseError("locked")):
        line = closing_line(Gone(error), "/camera", "m1", before)
        assert line.startswith("no summary: the database cannot be read now") and "\n" not in line
