import numpy as np
import pytest

from slmcnn.preprocess import standardise, to_unit_tensor


def reference_standardise(image: np.ndarray) -> np.ndarray:
    x = image.astype(np.float64) / 255.0
    n = x.size
    return (x - x.mean()) / max(x.std(), 1.0 / np.sqrt(n))


def test_standardisation_matches_numpy_reference():
    rng = np.random.default_rng(0)
    patches = rng.integers(0, 256, (3, 128, 128, 3), dtype=np.uint8)
    got = standardise(to_unit_tensor(patches)).permute(0, 2, 3, 1).numpy()
    for i in range(3):
        np.testing.assert_allclose(got[i], reference_standardise(patches[i]), atol=1e-5)


def test_flat_patch_uses_the_minimum_std():
    patches = np.full((1, 128, 128, 3), 200, np.uint8)
    patches[0, 0, 0, 0] = 201
    got = standardise(to_unit_tensor(patches)).numpy()
    np.testing.assert_allclose(
        got.transpose(0, 2, 3, 1)[0], reference_standardise(patches[0]), atol=1e-4
    )  # float32 mean


def test_sixteen_bit_scales_to_the_same_unit_range():
    rng = np.random.default_rng(1)
    eight = rng.integers(0, 256, (1, 8, 8, 3), dtype=np.uint8)
    sixteen = eight.astype(np.uint16) * 257
    np.testing.assert_allclose(to_unit_tensor(eight).numpy(), to_unit_tensor(sixteen).numpy(), atol=1e-6)
    assert float(to_unit_tensor(sixteen).max()) <= 1.0


def test_standardised_patch_has_zero_mean_unit_std():
    patches = np.random.default_rng(2).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    x = standardise(to_unit_tensor(patches))
    assert x.mean().item() == pytest.approx(0, abs=1e-5)
    assert x[0].std(unbiased=False).item() == pytest.approx(1, abs=1e-4)
