import numpy as np
import pytest
import tifffile
from PIL import Image

from slmcnn.errors import ImageReadError
from slmcnn.images import list_images, read


def test_gray_png_is_expanded_to_three_channels(write_image):
    path = write_image("g.png", np.arange(64, dtype=np.uint8).reshape(8, 8))
    image = read(path)
    assert image.shape == (8, 8, 3) and image.dtype == np.uint8
    assert (image[..., 0] == image[..., 2]).all()


def test_sixteen_bit_png_and_tiff_keep_precision(tmp_path):
    data = (np.arange(64, dtype=np.uint16) * 1000).reshape(8, 8)
    Image.fromarray(data).save(tmp_path / "a.png")
    tifffile.imwrite(tmp_path / "a.tif", data)
    for name in ("a.png", "a.tif"):
        image = read(tmp_path / name)
        assert image.dtype == np.uint16 and image.shape == (8, 8, 3)
        assert image[..., 1].max() == 63000


def test_rgba_and_jpeg(write_image, tmp_path):
    rgba = np.zeros((8, 8, 4), np.uint8)
    assert read(write_image("a.png", rgba)).shape == (8, 8, 3)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "b.jpg")
    assert read(tmp_path / "b.jpg").shape == (8, 8, 3)


def test_truncated_and_missing_files_give_clear_errors(write_image, tmp_path):
    path = write_image("t.png", np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ImageReadError, match="t.png"):
        read(path)
    with pytest.raises(ImageReadError, match="no such file"):
        read(tmp_path / "missing.png")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(ImageReadError, match="text.png"):
        read(tmp_path / "text.png")


def test_list_images_expands_folders_and_globs(write_image, tmp_path):
    for name in ("x/1.png", "x/2.png", "x/sub/3.png", "x/notes.txt"):
        if name.endswith(".png"):
            write_image(name, np.zeros((4, 4), np.uint8))
        else:
            (tmp_path / name).write_text("hi")
    assert len(list_images([tmp_path / "x"])) == 3
    assert len(list_images([str(tmp_path / "x" / "*.png")])) == 2


@pytest.mark.parametrize("suffix,mode", [(".png", "L"), (".png", "RGB"), (".jpg", "L"), (".jpg", "RGB")])
def test_whole_file_decoding_gives_what_pil_gives(tmp_path, suffix, mode):
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 255, (40, 56) if mode == "L" else (40, 56, 3), dtype=np.uint8)
    path = tmp_path / f"a{suffix}"
    Image.fromarray(pixels, mode).save(path)
    expected = np.asarray(Image.open(path).convert("RGB"))
    np.testing.assert_array_equal(read(path), expected)


def test_a_file_cut_short_is_refused_not_half_decoded(tmp_path):
    """OpenCV decodes a truncated JPEG with a gray bottom and no error; such files go to PIL, which
    refuses them (a layer still being written must not be classified)."""
    path = tmp_path / "cut.jpg"
    Image.fromarray(np.random.default_rng(4).integers(0, 255, (64, 64), dtype=np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:-300])
    with pytest.raises(ImageReadError, match="cut.jpg"):
        read(path)
