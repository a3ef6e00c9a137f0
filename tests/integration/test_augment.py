import numpy as np
import pytest

from slmcnn.errors import SettingsError
from slmcnn.train import TrainConfig, fit
from tests.unit.test_augment import _jitter, _patches


def test_jitter_is_deterministic_keeps_shape_and_gray():
    patches = _patches()
    a = _jitter(patches, 3)
    b = _jitter(patches, 3)
    assert a.dtype == np.uint8 and a.shape == patches.shape
    assert np.array_equal(a, b)
    assert np.array_equal(a[..., 0], a[..., 1]) and np.array_equal(a[..., 0], a[..., 2])
    assert not np.array_equal(a, patches)


def test_training_with_camera_augmentation_runs_and_unknown_mode_is_refused():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (24, 128, 128, 3), dtype=np.uint8)
    y = np.arange(24) % 3
    config = TrainConfig(arch="slmcnn-tiny", epochs=1, batch=8, precision="fp32", augment="camera")
    result = fit(config, x, y, x[:6], y[:6], log=lambda *_: None, show_progress=False)
    assert len(result.history) == 1 and np.isfinite(result.history[0]["loss"])
    with pytest.raises(SettingsError, match="augment"):
        TrainConfig(augment="sometimes")
