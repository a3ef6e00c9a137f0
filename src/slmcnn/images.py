"""Read layer photos and patches of any common format into HxWx3 arrays, with clear errors."""

from pathlib import Path

import numpy as np
import tifffile
from PIL import Image, UnidentifiedImageError

from slmcnn.errors import ImageReadError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def read(path: str | Path) -> np.ndarray:
    """Return HxWx3 uint8 or uint16 (16-bit files keep their precision); gray is expanded to 3."""
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: no such file")
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            array = tifffile.imread(path)
        else:
            with Image.open(path) as img:
                img.load()
                array = _pil_to_array(img)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, tifffile.TiffFileError) as exc:
        raise ImageReadError(f"{path}: not a readable image ({exc})") from None
    return as_rgb(array, str(path))


def _pil_to_array(img: Image.Image) -> np.ndarray:
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(img)
        if img.mode == "I":
            array = np.clip(array, 0, 65535)
        return array.astype(np.uint16)
    if img.mode not in ("L", "RGB"):
        img = img.convert("RGB")
    return np.asarray(img)


def as_rgb(array: np.ndarray, name: str = "image") -> np.ndarray:
    """Normalise an array to HxWx3 uint8/uint16: gray expanded, alpha dropped, floats rejected."""
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    if array.dtype not in (np.uint8, np.uint16):
        if np.issubdtype(array.dtype, np.integer) and array.min() >= 0 and array.max() < 65536:
            array = array.astype(np.uint16)
        else:
            raise ImageReadError(f"{name}: unsupported pixel type {array.dtype}")
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    elif array.ndim == 3 and array.shape[2] in (1, 3, 4):
        array = np.repeat(array, 3, axis=2) if array.shape[2] == 1 else array[:, :, :3]
    else:
        raise ImageReadError(f"{name}: unsupported image shape {array.shape}")
    return np.ascontiguousarray(array)


def to_uint8(array: np.ndarray) -> np.ndarray:
    """8-bit view of an image for drawing overlays and figures."""
    if array.dtype == np.uint16:
        return (array.astype(np.float32) * (255.0 / 65535.0) + 0.5).astype(np.uint8)
    return array


def write_png(path: str | Path, array: np.ndarray) -> None:
    """Write a PNG (RGB or single channel), fast and with deterministic bytes for the same array:
    zlib level 1 with the default strategy (overlays 30% smaller than run-length, as fast)."""
    import cv2

    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_PNG_COMPRESSION, 1]
    if not cv2.imwrite(str(path), array, params):
        raise OSError(f"could not write {path}")


def list_images(inputs: list[str | Path]) -> list[Path]:
    """Expand files, folders (recursively) and glob patterns into a sorted list of image files."""
    found: list[Path] = []
    for item in inputs:
        item_path = Path(item)
        if item_path.is_dir():
            found += sorted(p for p in item_path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        elif any(ch in str(item) for ch in "*?["):
            base = Path(item_path.anchor or ".")
            pattern = str(item_path.relative_to(base)) if item_path.is_absolute() else str(item)
            found += sorted(p for p in base.glob(pattern) if p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            found.append(item_path)
    return found
