from slmcnn.data import load_source, load_sources, split
from tests.unit.test_data import class_folders_fixture  # noqa: F401 (the class_folders fixture)


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
