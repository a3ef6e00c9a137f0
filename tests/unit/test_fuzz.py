"""Property-based tests (hypothesis, issue #16): random bytes, truncated and oversized images, random
CSVs, settings files and model headers fed to the public entry points give a result or a
SlmcnnError, never another exception."""

import io
import json
import struct
import zlib

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from slmcnn import checkpoint, data, images
from slmcnn.errors import SlmcnnError
from slmcnn.profile import load_calibration

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
SUFFIXES = st.sampled_from([".png", ".jpg", ".tif", ".bmp"])


def outcome(call, *args):
    """Run `call`; a SlmcnnError counts as a clean refusal."""
    try:
        return call(*args)
    except SlmcnnError as exc:
        assert str(exc) and "\n" not in str(exc).strip(), str(exc)
        return exc


def encoded(array: np.ndarray, suffix: str) -> bytes:
    buffer = io.BytesIO()
    if suffix == ".tif":
        import tifffile

        tifffile.imwrite(buffer, array)
    else:
        Image.fromarray(array).save(buffer, format={".png": "PNG", ".jpg": "JPEG", ".bmp": "BMP"}[suffix])
    return buffer.getvalue()


@FAST
@given(
    side=st.integers(1, 48),
    cut=st.floats(0, 1),
    suffix=SUFFIXES,
    flip=st.integers(0, 10_000),
)
def test_truncated_and_damaged_images(tmp_path, side, cut, suffix, flip):
    blob = bytearray(encoded(np.random.default_rng(side).integers(0, 255, (side, side, 3), dtype=np.uint8), suffix))
    blob = blob[: max(1, int(len(blob) * cut))]
    blob[flip % len(blob)] ^= 0xFF
    path = tmp_path / f"x{suffix}"
    path.write_bytes(bytes(blob))
    outcome(images.read, path)


@FAST
@given(width=st.integers(1, 2**31 - 1), height=st.integers(1, 2**31 - 1), depth=st.sampled_from([8, 16]))
def test_images_that_declare_any_size(tmp_path, width, height, depth):
    ihdr = struct.pack(">IIBBBBB", width, height, depth, 2, 0, 0, 0)
    chunk = lambda kind, body: struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))  # noqa: E731
    path = tmp_path / "x.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 99)))
    result = outcome(images.read, path)
    if width * height > images.LIMITS.max_pixels:
        assert isinstance(result, SlmcnnError)


CELL = st.text(st.characters(blacklist_categories=["Cs"]), max_size=12)


@FAST
@given(
    header=st.sampled_from(["Image;Label", "path,label,split", "Image,Label", "", "path,label"]),
    rows=st.lists(st.lists(CELL, max_size=4), max_size=5),
    raw=st.one_of(st.none(), st.binary(max_size=200)),
)
def test_random_csvs(tmp_path, header, rows, raw):
    (tmp_path / "Powder.png").write_bytes(b"")
    delimiter = ";" if ";" in header else ","
    text = header + "\n" + "\n".join(delimiter.join(r) for r in rows)
    path = tmp_path / "labels.csv"
    path.write_bytes(raw if raw is not None else text.encode("utf-8"))
    result = outcome(data.load_source, path)
    if not isinstance(result, SlmcnnError):
        assert len(result.paths) == len(result.labels)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@FAST
@given(values=st.dictionaries(st.sampled_from(["corners", "size", "bed_mm", "ignore", "other"]), JSON) | JSON)
def test_random_camera_files(tmp_path, values):
    path = tmp_path / "camera.json"
    path.write_text(json.dumps(values))
    outcome(load_calibration, path)


INFO = st.fixed_dictionaries(
    {},
    optional={name: JSON for name in ("arch", "classes", "colours", "patch", "normalisation", "training", "name")},
)


@FAST
@given(
    info=INFO | JSON,
    format_version=st.sampled_from(["1", "2", 1, None]),
    tail=st.binary(max_size=64),
    length=st.one_of(st.none(), st.integers(0, 2**64 - 1)),
)
def test_random_model_headers(tmp_path, info, format_version, tail, length):
    header = {"__metadata__": {"format": "slmcnn-model", "format_version": format_version, "info": json.dumps(info)}}
    body = json.dumps(header).encode()
    size = len(body) if length is None else length
    path = tmp_path / "m.safetensors"
    path.write_bytes(struct.pack("<Q", size) + body + tail)
    outcome(checkpoint.load_model, path)
