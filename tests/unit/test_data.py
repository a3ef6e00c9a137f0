import numpy as np
import pytest

from slmcnn.data import load_patches, load_source
from slmcnn.errors import DataError


@pytest.fixture(name="class_folders")
def class_folders_fixture(write_image, tmp_path):
    rng = np.random.default_rng(0)
    for folder, n in (("powder", 3), ("OBJECT", 2), ("Error", 2)):
        for i in range(n):
            write_image(f"set/{folder}/{i}.png", rng.integers(0, 255, (128, 128, 3), dtype=np.uint8))
    return tmp_path / "set"


def test_class_folders_case_insensitive(class_folders):
    table = load_source(class_folders)
    assert len(table) == 7
    assert np.bincount(table.labels).tolist() == [3, 2, 2]


def test_reference_csv_relative_paths(class_folders):
    csv = class_folders / "labels.csv"
    csv.write_text("Image;Label\npowder/0.png;Powder\nOBJECT/1.png;Object\nError/0.png;Error\n")
    table = load_source(csv)
    assert table.labels.tolist() == [0, 1, 2]
    assert load_patches(table).shape == (3, 128, 128, 3)


def test_csv_with_unknown_label_names_the_line(class_folders):
    csv = class_folders / "bad.csv"
    csv.write_text("Image;Label\npowder/0.png;Powder\npowder/1.png;Crack\n")
    with pytest.raises(DataError, match="line 3.*Crack"):
        load_source(csv)


def test_bad_folders(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_source(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty"):
        load_source(tmp_path / "empty")
    (tmp_path / "other" / "cats").mkdir(parents=True)
    with pytest.raises(DataError, match="no class folders"):
        load_source(tmp_path / "other")


def test_wrong_patch_size_offers_resize(write_image, tmp_path):
    write_image("s/Powder/a.png", np.zeros((64, 64, 3), np.uint8))
    table = load_source(tmp_path / "s")
    with pytest.raises(DataError, match="resize=True"):  # API terms; the CLI says --resize
        load_patches(table)
    assert load_patches(table, resize=True).shape == (1, 128, 128, 3)


def test_truncated_patch_is_a_data_error(write_image, tmp_path):
    path = write_image("s/Error/a.png", np.random.default_rng(0).integers(0, 255, (128, 128, 3), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(DataError, match="a.png"):
        load_patches(load_source(tmp_path / "s"))
