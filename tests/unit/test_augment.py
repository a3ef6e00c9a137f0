import numpy as np
import pytest
import torch

from slmcnn.augment import CameraJitter, camera_jitter


def _jitter(patches: np.ndarray, seed: int, jitter: CameraJitter | None = None) -> np.ndarray:
    generator = torch.Generator().manual_seed(seed)
    return camera_jitter(torch.from_numpy(patches), generator, jitter or CameraJitter()).numpy()


def _patches(n: int = 32, size: int = 64) -> np.ndarray:
    """Gray powder with a dark vertical streak (columns 30-33) in every patch."""
    rng = np.random.default_rng(0)
    gray = rng.normal(200, 4, (n, size, size)).clip(0, 255)
    gray[:, :, 30:34] -= 45
    return np.repeat(gray.astype(np.uint8)[..., None], 3, axis=3)


def test_jitter_changes_the_look_widely():
    out = _jitter(_patches(200), 1).astype(np.float32)
    means = out.mean(axis=(1, 2, 3))
    assert means.min() < 120 and means.max() > 200  # dark and bright cameras both drawn
    grain = np.abs(np.diff(out[:, :, :20, 0], axis=2)).mean(axis=(1, 2))
    assert grain.max() > 2 * np.median(grain)  # some patches much grainier than others


def test_a_defect_stays_visible_in_every_patch():
    out = _jitter(_patches(200), 2).astype(np.float32)[..., 0]
    streak = out[:, :, 30:34].mean(axis=(1, 2))
    beside = np.concatenate([out[:, :, 10:26], out[:, :, 38:54]], axis=2).mean(axis=(1, 2))
    assert (beside - streak > 5).all()


def test_share_zero_leaves_patches_alone():
    patches = _patches(8)
    out = _jitter(patches, 0, CameraJitter(share=0.0))
    assert np.array_equal(out, patches)


def test_non_uint8_input_is_refused():
    with pytest.raises(TypeError):
        camera_jitter(torch.from_numpy(_patches(2)).float(), torch.Generator())
