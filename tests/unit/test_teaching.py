"""Review teaches the fine maps without retraining: lessons kept in a folder, a false alarm taught
sound stops recurring, a confirmed defect's look becomes Error where the memory alone let it pass,
and neither hides anything else."""

import json

import numpy as np
import pytest

from slmcnn.errors import SettingsError
from slmcnn.pipeline import RunOptions
from slmcnn.teaching import Lessons, box_mask, lessons_folder
from slmcnn.texture import EXAMPLE_RATIO, Taught, TextureMemory


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
