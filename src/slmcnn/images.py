"""Read layer photos and patches of any common format into HxWx3 arrays, with clear errors."""

import errno
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import tifffile
from PIL import Image, UnidentifiedImageError

from slmcnn.errors import ImageReadError, OutputError, SettingsError, SlmcnnError
from slmcnn.files import describe, write_bytes

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
FORMATS = ("PNG", "JPEG", "TIFF", "BMP")
"""The only decoders PIL may use, whatever a file's name: a PostScript or EPS file named like a layer
must never reach Ghostscript, nor any other format's decoder reach the user's files."""


def open_image(path: str | Path) -> Image.Image:
    """PIL's lazy opening of an image file, with only the decoders of FORMATS."""
    return Image.open(path, formats=FORMATS)


@dataclass
class ImageLimits:
    """The largest image read, checked from the file's header before anything is decoded, so a file
    that declares 50000x50000 pixels is refused at once instead of filling the memory. Defaults from
    SLMCNN_MAX_MEGAPIXELS and SLMCNN_MAX_IMAGE_MB; `set_limits` changes them."""

    max_pixels: int = int(float(os.environ.get("SLMCNN_MAX_MEGAPIXELS", 100)) * 1e6)
    max_bytes: int = int(float(os.environ.get("SLMCNN_MAX_IMAGE_MB", 1024)) * 2**20)  # decoded

    def check(self, name: str, width: int, height: int, decoded_bytes: int) -> None:
        if width * height > self.max_pixels:
            raise ImageReadError(
                f"{name}: {width}x{height} pixels is over the limit of {self.max_pixels / 1e6:g} megapixels "
                "(`max_megapixels`)"
            )
        if decoded_bytes > self.max_bytes:
            raise ImageReadError(
                f"{name}: {width}x{height} pixels would take {decoded_bytes / 2**20:.0f} MB decoded, over the limit "
                f"of {self.max_bytes / 2**20:.0f} MB (SLMCNN_MAX_IMAGE_MB)"
            )


LIMITS = ImageLimits()


def set_limits(max_megapixels: float | None = None, max_mb: float | None = None) -> ImageLimits:
    """Change the image size limits of this process (None keeps a limit as it is)."""
    if max_megapixels is not None:
        if not (isinstance(max_megapixels, int | float) and 0 < max_megapixels < float("inf")):
            raise SettingsError(f"`max_megapixels` must be a positive, finite number (got {max_megapixels})")
        LIMITS.max_pixels = int(max_megapixels * 1e6)
    if max_mb is not None:
        if not (isinstance(max_mb, int | float) and 0 < max_mb < float("inf")):
            raise SettingsError(f"`max_mb` must be a positive, finite number (got {max_mb})")
        LIMITS.max_bytes = int(max_mb * 2**20)
    return LIMITS


def check_size(path: str | Path) -> None:
    """Refuse an image whose header declares more pixels or memory than LIMITS allow (PIL's header,
    tifffile's shape); nothing is decoded."""
    path = Path(path)
    if path.suffix.lower() in (".tif", ".tiff"):
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            shape, itemsize = tuple(series.shape), series.dtype.itemsize
        if len(shape) < 2:
            raise ImageReadError(f"{path}: unsupported image shape {shape}")
        height, width = shape[-3:-1] if len(shape) >= 3 and shape[-1] in (1, 3, 4) else shape[-2:]
        decoded = max(int(np.prod(shape, dtype=np.float64)) * itemsize, height * width * 3 * itemsize)
    else:
        try:
            with open_image(path) as img:
                (width, height), wide = img.size, img.mode.startswith("I") or img.mode == "F"
        except Image.DecompressionBombError:
            raise ImageReadError(
                f"{path}: declares over {2 * Image.MAX_IMAGE_PIXELS / 1e6:.0f} megapixels, over the limit of "
                f"{LIMITS.max_pixels / 1e6:g} megapixels (`max_megapixels`)"
            ) from None
        decoded = height * width * 3 * (2 if wide else 1)
    LIMITS.check(str(path), width, height, decoded)


def read(path: str | Path) -> np.ndarray:
    """Return HxWx3 uint8 or uint16 (16-bit files keep their precision); gray is expanded to 3.
    Images over the size LIMITS are refused before they are decoded."""
    path = Path(path)
    if not path.is_file():
        kind = "not a regular file" if path.exists() else "no such file"
        raise ImageReadError(f"{path}: {kind}")
    try:
        check_size(path)
        if path.suffix.lower() in (".tif", ".tiff"):
            array = tifffile.imread(path)
        else:
            with open_image(path) as img:
                array = _decode_whole(path, img)
                if array is None:
                    img.load()
                    array = _pil_to_array(img)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, tifffile.TiffFileError) as exc:
        raise ImageReadError(f"{path}: not a readable image ({exc})") from None
    except SlmcnnError:
        raise
    except Exception as exc:  # noqa: BLE001 - a decoder failing on a damaged file: refuse the file
        raise ImageReadError(f"{path}: not a readable image ({type(exc).__name__}: {exc})") from None
    return as_rgb(array, str(path))


WHOLE_FILE_ENDS = {"PNG": b"IEND\xaeB`\x82", "JPEG": b"\xff\xd9"}


def _decode_whole(path: Path, img: Image.Image) -> np.ndarray | None:
    """An 8-bit gray or RGB PNG or JPEG decoded by OpenCV in one call that releases the GIL, pixel
    for pixel what PIL gives (benchmarks/bench_codecs.py: 1.1x as fast alone). PIL decodes in blocks
    and takes the GIL for each, so its reading threads stall while the compiled network holds the
    GIL for a whole batch. None (PIL decodes, and says what is wrong) for any other kind, or a file
    that does not end as a whole one does."""
    end = WHOLE_FILE_ENDS.get(img.format)
    if end is None or img.mode not in ("L", "RGB"):
        return None
    data = np.fromfile(path, np.uint8)
    if data[-len(end) :].tobytes() != end:
        return None
    array = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if array is None or array.dtype != np.uint8 or array.ndim != (2 if img.mode == "L" else 3):
        return None
    return array if array.ndim == 2 else cv2.cvtColor(array, cv2.COLOR_BGR2RGB)


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
    """Normalise an array to HxWx3 uint8/uint16: gray expanded, alpha dropped, floats and empty
    arrays rejected."""
    if array.ndim in (2, 3) and 0 in array.shape:
        raise ImageReadError(f"{name}: an empty image (shape {array.shape})")
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


def gray(image: np.ndarray) -> np.ndarray:
    """(H, W) float32 mean of an image's channels: the same values as `mean(-1)`, which reduces over
    an axis of 3 about 25 times slower (8 ms a 768 px layer, several times per layer in the fine maps)."""
    if image.ndim == 2:
        return image.astype(np.float32)
    out = image[..., 0].astype(np.float32)
    for channel in range(1, image.shape[-1]):
        out += image[..., channel]
    out /= image.shape[-1]
    return out


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
    ok, encoded = cv2.imencode(".png", array, params)
    if not ok:
        raise OutputError(f"{path}: could not encode a PNG of shape {array.shape}")
    write_bytes(path, encoded.tobytes())  # whole or not at all


def list_images(inputs: list[str | Path]) -> list[Path]:
    """Expand files, folders (recursively) and glob patterns into a sorted list of image files;
    what a folder or pattern holds that is not a regular file (a FIFO, a folder named x.png) is left out."""
    found: list[Path] = []
    for item in inputs:
        item_path = Path(item)
        if item_path.is_dir():
            found += sorted(p for p in item_path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        elif any(ch in str(item) for ch in "*?["):
            base = Path(item_path.anchor or ".")
            pattern = str(item_path.relative_to(base)) if item_path.is_absolute() else str(item)
            found += sorted(p for p in base.glob(pattern) if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        else:
            found.append(_named_file(item_path))
    return found


def _named_file(path: Path) -> Path:
    """A file named on the command line, as given: one that does not exist is said when it is read,
    but a loop of symbolic links is said now (resolving it on the way would raise RuntimeError)."""
    try:
        path.stat()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ImageReadError(describe(exc, path)) from None
    return path
