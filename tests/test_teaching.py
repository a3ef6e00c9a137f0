"""Review teaches the fine maps without retraining: lessons kept in a folder, a false alarm taught
sound stops recurring, a confirmed defect's look becomes Error where the memory alone let it pass,
and neither hides anything else."""

import json

import cv2
import numpy as np
import pytest

from slmcnn.constants import ERROR
from slmcnn.errors import SettingsError
from slmcnn.finemaps import EXAMPLE_RATIO, Taught, TextureMemory
from slmcnn.pipeline import LayerPipeline, RunOptions
from slmcnn.teaching import Lessons, box_mask, lessons_folder


def _bed(rng, size=384):
    grain = cv2.GaussianBlur(rng.normal(0, 6, (size, size)).astype(np.float32), (0, 0), 0.8)
    return np.repeat(np.clip(170 + grain, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


def _glare(image, x, y):
    """A hatched bright square: a look the build's first layers never showed."""
    yy, xx = np.mgrid[0:24, 0:24]
    hatch = (((xx + yy) % 6) < 3)[..., None] * 60
    image[y : y + 24, x : x + 24] = np.clip(image[y : y + 24, x : x + 24].astype(int) + hatch, 0, 255)
    return image


def test_lessons_are_kept_listed_and_forgotten(tmp_path):
    lessons = Lessons(tmp_path / "camera.lessons")
    assert len(lessons) == 0 and lessons.stamp() is None and lessons.forget(source="x") == []
    image = np.full((64, 80, 3), 100, np.uint8)
    mask = box_mask((64, 80), [(10, 10, 20, 30)], margin=2)
    assert mask.sum() == 14 * 24 and mask[8, 8] and not mask[7, 8]
    first = lessons.add(image, mask, "sound", "00012.png", "app b1 alert 3")
    stamp = lessons.stamp()
    second = lessons.add(image, mask, "defect", "00013.png", "cli")
    assert [x.verdict for x in lessons] == ["sound", "defect"] and lessons.stamp() != stamp
    loaded, loaded_mask = lessons.load(first)
    assert (loaded == image).all() and (loaded_mask == mask).all()
    assert lessons.forget(source="app b1 alert 3") == [first]
    assert [x.id for x in lessons] == [second.id] and not (lessons.folder / first.image).exists()
    assert lessons.forget(lesson_id=second.id) == [second] and len(lessons) == 0


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda ls: ls.add(np.zeros((8, 8, 3), np.uint8), np.ones((8, 8), bool), "maybe", "a", "b"), "verdict"),
        (lambda ls: ls.add(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), bool), "sound", "a", "b"), "pixel"),
        (lambda ls: box_mask((8, 8), [(5, 5, 2, 2)]), "empty"),
        (lambda ls: box_mask((8, 8), [(1, 2, 3)]), "x0,y0,x1,y1"),
        (lambda ls: box_mask((8, 8), [(100, 100, 200, 200)], margin=0), "outside"),
    ],
)
def test_bad_lessons_are_one_clear_error(tmp_path, call, message):
    with pytest.raises(SettingsError, match=message):
        call(Lessons(tmp_path))


def test_a_broken_lessons_file_is_named(tmp_path):
    (tmp_path / "lessons.json").write_text(json.dumps({"lessons": [{"id": 1}]}))
    with pytest.raises(SettingsError, match="lessons.json: not a lessons file"):
        list(Lessons(tmp_path))


def test_a_run_follows_its_camera_s_lessons_before_there_are_any(tmp_path):
    camera = tmp_path / "camera.json"
    assert lessons_folder(camera) == tmp_path / "camera.lessons"
    assert lessons_folder(camera, tmp_path / "other") == tmp_path / "other"
    assert lessons_folder(None) is None and lessons_folder(object()) is None  # a calibration, not a file
    options = RunOptions(camera=None, lessons=None)
    assert options.lessons is None


def test_a_confirmed_defect_makes_its_look_error_where_the_memory_let_it_pass():
    """Features in a plane: sound places near the origin; a faint defect's places half a
    threshold out, too near to be Error alone, nearer still to a confirmed example."""
    rng = np.random.default_rng(0)
    layers = [rng.normal(0, 1, (24, 24, 8)).astype(np.float32) for _ in range(4)]
    memory = TextureMemory(layers, [np.ones((24, 24), bool)] * 4, size=256)
    faint = layers[0].copy()
    direction = np.zeros(8, np.float32)
    direction[0] = 1.0
    # a place as far from sound as 0.6 of the threshold, in the memory's own units
    step = 0.6 * memory.threshold / np.linalg.norm((direction / memory.scale) @ memory.axes)
    faint[10:14, 10:14] = memory.mean + step * direction
    score, _ = memory.score(faint)
    assert score[10:14, 10:14].max() < 1, "the memory alone lets it pass"
    example = memory.project((memory.mean + step * direction)[None] + rng.normal(0, 0.01, (20, 8)).astype(np.float32))
    memory.teach([], [Taught.of([example[:10], example[10:]], memory.threshold)])
    score, _ = memory.score(faint)
    assert score[10:14, 10:14].min() > 1, f"nearer to the example than {EXAMPLE_RATIO} times to anything sound"
    assert (score > 1).sum() == 16, "and nowhere else"


def test_a_false_alarm_taught_sound_stops_recurring_and_hides_nothing_else(shipped_model, tmp_path):
    from slmcnn.backends import create_backend

    rng = np.random.default_rng(0)
    lessons = Lessons(tmp_path / "lessons")
    options = RunOptions(workers=1, learn=4, lessons=lessons.folder)
    pipeline = LayerPipeline(create_backend(shipped_model, "torch"), options, model=shipped_model)
    first = [(f"b/{i:03d}.png", _bed(rng)) for i in range(5)]
    *_, glared = pipeline.run([*first, ("b/005.png", _glare(_bed(rng), 100, 100))])
    result = glared.result
    assert (result.class_map[90:135, 90:135] == ERROR).any(), "a look the first layers never showed is Error"
    lessons.add(
        result.image, box_mask(result.class_map.shape, [r.box for r in result.fine.regions]), "sound", "005", "t"
    )
    layer = _glare(_bed(rng), 250, 200)  # the same look elsewhere, and a dark spot
    cv2.circle(layer, (80, 300), 5, (40, 40, 40), -1)
    error = next(iter(pipeline.run([("b/006.png", layer)]))).result.class_map == ERROR
    assert not error[190:235, 240:285].any(), "the taught look is sound now, wherever it is"
    assert error[290:310, 70:90].any(), "a defect the lesson does not explain stays Error"


def test_teach_on_the_command_line_keeps_lists_and_forgets(tiny_build, tmp_path):
    from conftest import run_cli

    photo = tiny_build / "layers" / "00002.png"
    folder = tmp_path / "lessons"
    done = run_cli("teach", photo, "--as", "defect", "--box", "10,20,60,40", "--lessons", folder)
    assert done.returncode == 0 and "as defect" in done.stdout, done.stderr
    assert run_cli("teach", photo, "--as", "sound", "--lessons", folder).returncode == 0
    lessons = list(Lessons(folder))
    assert [x.verdict for x in lessons] == ["defect", "sound"]
    assert Lessons(folder).load(lessons[1])[1].all() and Lessons(folder).load(lessons[0])[1].sum() == 66 * 36
    listed = run_cli("teach", "--list", "--lessons", folder)
    assert listed.returncode == 0 and lessons[0].id in listed.stdout and "00002.png" in listed.stdout
    assert run_cli("teach", "--forget", lessons[0].id, "--lessons", folder).returncode == 0
    assert [x.id for x in Lessons(folder)] == [lessons[1].id]
    for args, message in (
        (("teach", photo, "--as", "defect", "--lessons", folder), "needs --box"),
        (("teach", photo, "--as", "sound"), "--lessons FOLDER"),
        (("teach", photo, "--as", "sound", "--box", "1,2,3", "--lessons", folder), "X0,Y0,X1,Y1"),
        (("teach", "--forget", "nope", "--lessons", folder), "no lesson nope"),
        (("teach", tmp_path / "missing.png", "--as", "sound", "--lessons", folder), "missing.png"),
    ):
        refused = run_cli(*args)
        assert refused.returncode != 0 and message in refused.stderr and "Traceback" not in refused.stderr


def test_predict_layer_with_a_camera_takes_the_lessons_taught_beside_it(tiny_build, tmp_path):
    from conftest import run_cli

    frames = sorted((tiny_build / "layers").glob("*.png"))[:5]
    camera = tmp_path / "camera.json"
    assert run_cli("calibrate", *frames[:4], "--full-frame", "--out", camera).returncode == 0
    taught = run_cli("teach", frames[1], "--as", "sound", "--camera", camera)
    assert taught.returncode == 0 and str(tmp_path / "camera.lessons") in taught.stdout, taught.stderr
    done = run_cli("predict-layer", *frames, "--camera", camera, "--out", tmp_path / "out", "--learn", "3")
    assert done.returncode == 0, done.stderr
    assert "taught 1 lesson(s)" in done.stdout + done.stderr
