import numpy as np
import pytest

from slmcnn.data import load_source, load_sources, split


@pytest.fixture
def class_folders(write_image, tmp_path):
    rng = np.random.default_rng(0)
    for folder, n in (("powder", 3), ("OBJECT", 2), ("Error", 2)):
        for i in range(n):
            write_image(f"set/{folder}/{i}.png", rng.integers(0, 255, (128, 128, 3), dtype=np.uint8))
    return tmp_path / "set"


def test_synth_split_file_groups_by_layer(tiny_build):
    table = load_source(tiny_build)
    assert len(table) > 0 and table.splits is not None
    assert all(g.startswith("s5/") for g in table.groups)
    parts = split(table)
    layers = {name: {g for g in part.groups} for name, part in parts.items()}
    assert not layers["train"] & layers["test"] and not layers["train"] & layers["val"]


def test_group_split_is_deterministic_and_never_splits_a_group(tiny_build):
    table = load_source(tiny_build)
    table.splits = None
    a, b = split(table, seed=3), split(table, seed=3)
    assert [str(p) for p in a["test"].paths] == [str(p) for p in b["test"].paths]
    assert not set(a["train"].groups) & set(a["test"].groups)


def test_several_sources_join(tiny_build, class_folders):
    assert len(load_sources([tiny_build, class_folders])) == len(load_source(tiny_build)) + 7
