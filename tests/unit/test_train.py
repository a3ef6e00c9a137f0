def test_random_flips_flip_whole_patches_about_half_the_time():
    import numpy as np
    import torch

    from slmcnn.train import random_flips

    rng = np.random.default_rng(1)
    patches = rng.integers(0, 255, (400, 6, 6, 3), dtype=np.uint8)
    original = patches.copy()
    flipped = random_flips(torch.from_numpy(patches), torch.Generator().manual_seed(0)).numpy()
    assert np.array_equal(patches, original)  # the caller's array is left alone
    kinds = []
    for before, after in zip(patches, flipped):
        options = {
            "none": before,
            "lr": before[:, ::-1],
            "ud": before[::-1],
            "both": before[::-1, ::-1],
        }
        kinds.append(next(k for k, v in options.items() if np.array_equal(v, after)))
    counts = {k: kinds.count(k) for k in ("none", "lr", "ud", "both")}
    assert all(60 < c < 140 for c in counts.values()), counts


def test_random_turns_give_all_eight_views_equally_often():
    import numpy as np
    import torch

    from slmcnn.train import random_flips

    rng = np.random.default_rng(2)
    patches = rng.integers(0, 255, (800, 5, 5, 3), dtype=np.uint8)
    turned = random_flips(torch.from_numpy(patches), torch.Generator().manual_seed(0), turns=True).numpy()
    counts = np.zeros(8, int)
    for before, after in zip(patches, turned):
        views = [np.rot90(v, k) for v in (before, before[:, ::-1]) for k in range(4)]
        matches = [i for i, v in enumerate(views) if np.array_equal(v, after)]
        assert len(matches) == 1
        counts[matches[0]] += 1
    assert all(60 < c < 140 for c in counts), counts


def test_impossible_training_settings_are_refused_by_the_config():
    import pytest

    from slmcnn.errors import SettingsError
    from slmcnn.train import TrainConfig

    with pytest.raises(SettingsError, match="flips=False"):  # API terms; the CLI says --no-flips
        TrainConfig(flips=False, turns=True)
    with pytest.raises(SettingsError, match="cosine"):
        TrainConfig(schedule="step")
    with pytest.raises(SettingsError, match="device"):
        TrainConfig(device="gpu")
    with pytest.raises(SettingsError, match="time_limit"):
        TrainConfig(time_limit=0)


def test_cosine_schedule_spans_the_epochs_the_time_limit_allows():
    from slmcnn.train import TrainConfig, _epochs_in_time

    config = TrainConfig(epochs=30, schedule="cosine", time_limit=1.0)
    assert _epochs_in_time(config, [], 0.0) == 30  # nothing measured yet
    assert _epochs_in_time(config, [{"seconds": 10.0}], 10.0) == 6  # 50 s left, 10 s an epoch
    assert _epochs_in_time(config, [{"seconds": 5.0}, {"seconds": 15.0}], 15.0) == 6  # by the slowest
    assert _epochs_in_time(config, [{"seconds": 70.0}], 70.0) == 2  # over already: ends at the next
    assert _epochs_in_time(TrainConfig(epochs=4, time_limit=60.0), [{"seconds": 1.0}], 1.0) == 4
