"""Review teaches the fine maps without retraining: lessons kept in a folder, a false alarm taught
sound stops recurring, a confirmed defect's look becomes Error where the memory alone let it pass,
and neither hides anything else."""

import cv2
import numpy as np

from slmcnn.constants import ERROR
from slmcnn.pipeline import LayerPipeline, RunOptions
from slmcnn.teaching import Lessons, box_mask


def _bed(rng, size=384):
    grain = cv2.GaussianBlur(rng.normal(0, 6, (size, size)).astype(np.float32), (0, 0), 0.8)
    return np.repeat(np.clip(170 + grain, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


def _glare(image, x, y):
    """A hatched bright square: a look the build's first layers never showed."""
    yy, xx = np.mgrid[0:24, 0:24]
    hatch = (((xx + yy) % 6) < 3)[..., None] * 60
    image[y : y + 24, x : x + 24] = np.clip(image[y : y + 24, x : x + 24].astype(int) + hatch, 0, 255)
    return image


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
    from tests.conftest import run_cli

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
    from tests.conftest import run_cli

    frames = sorted((tiny_build / "layers").glob("*.png"))[:5]
    camera = tmp_path / "camera.json"
    assert run_cli("calibrate", *frames[:4], "--full-frame", "--out", camera).returncode == 0
    taught = run_cli("teach", frames[1], "--as", "sound", "--camera", camera)
    assert taught.returncode == 0 and str(tmp_path / "camera.lessons") in taught.stdout, taught.stderr
    done = run_cli("predict-layer", *frames, "--camera", camera, "--out", tmp_path / "out", "--learn", "3")
    assert done.returncode == 0, done.stderr
    assert "taught 1 lesson(s)" in done.stdout + done.stderr
