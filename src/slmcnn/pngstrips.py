"""PNG files of any size, made and compressed a strip of rows at a time on all cores.

Each strip is drawn by the caller (an overlay of those rows, say), filtered (PNG's Sub filter: each
byte minus the byte one pixel to its left) and deflated on its own by ISA-L (python-isal: the same
deflate format as zlib; on layer overlays 3.9x as fast as zlib's level 1 and 2% smaller,
benchmarks/bench_codecs.py), which releases the GIL; the raw deflate streams are joined by sync flushes
into the one zlib stream PNG wants, as pigz does.
Memory is a few strips, whatever the size of the image; any PNG reader reads the file.
"""

import os
import struct
import zlib
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from isal import isal_zlib

from slmcnn.files import atomic_path

SIGNATURE = b"\x89PNG\r\n\x1a\n"
STRIP_ROWS = 256
LEVEL = 1  # deflate level (ISA-L's 0-3): layer overlays are large and read by people, not archived


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def scanlines(rows: np.ndarray) -> np.ndarray:
    """(h, w) or (h, w, c) uint8 rows -> PNG scanlines: filter byte 1 (Sub), then each byte minus
    the byte `c` to its left (mod 256)."""
    channels = rows.shape[2] if rows.ndim == 3 else 1
    flat = rows.reshape(rows.shape[0], -1)
    out = np.empty((flat.shape[0], flat.shape[1] + 1), np.uint8)
    out[:, 0] = 1
    out[:, 1 : 1 + channels] = flat[:, :channels]
    np.subtract(flat[:, channels:], flat[:, :-channels], out=out[:, 1 + channels :])
    return out


def _strip(make: Callable[[int, int], np.ndarray], y0: int, y1: int, last: bool, level: int) -> tuple[bytes, int]:
    """One strip deflated (ending byte-aligned, or final) and the Adler-32 of its scanlines."""
    lines = scanlines(np.ascontiguousarray(make(y0, y1), np.uint8)).data
    deflate = isal_zlib.compressobj(level, isal_zlib.DEFLATED, -15)
    data = deflate.compress(lines) + deflate.flush(isal_zlib.Z_FINISH if last else isal_zlib.Z_SYNC_FLUSH)
    return data, isal_zlib.adler32(lines)


def adler32_combine(first: int, second: int, second_length: int) -> int:
    """The Adler-32 of two byte strings joined, from theirs (zlib's adler32_combine)."""
    base = 65521
    rem = second_length % base
    sum1 = first & 0xFFFF
    sum2 = (rem * sum1) % base
    sum1 += (second & 0xFFFF) + base - 1
    sum2 += ((first >> 16) & 0xFFFF) + ((second >> 16) & 0xFFFF) + base - rem
    return (sum1 % base) | ((sum2 % base) << 16)


def write_png_strips(
    path: str | Path,
    height: int,
    width: int,
    channels: int,
    make: Callable[[int, int], np.ndarray],
    level: int = LEVEL,
    strip_rows: int = STRIP_ROWS,
    workers: int | None = None,
) -> Path:
    """Write a height x width PNG (1 channel: gray, 3: RGB) whose rows y0:y1 are `make(y0, y1)`,
    strips made and compressed by `workers` threads (default: one per core); atomically."""
    if channels not in (1, 3):
        raise ValueError(f"a PNG of {channels} channels is not written here")
    header = struct.pack(">IIBBBBB", width, height, 8, 2 if channels == 3 else 0, 0, 0, 0)
    line = width * channels + 1
    workers = workers or os.cpu_count() or 1
    adler = 1
    with atomic_path(path) as temporary, open(temporary, "wb") as handle, ThreadPoolExecutor(workers) as pool:
        handle.write(SIGNATURE + _chunk(b"IHDR", header))
        handle.write(_chunk(b"IDAT", bytes([0x78, 0x01])))  # zlib header: deflate, 32 KiB window
        pending: deque = deque()
        starts = iter(range(0, height, strip_rows))
        while True:
            while len(pending) < 2 * workers:
                y0 = next(starts, None)
                if y0 is None:
                    break
                y1 = min(y0 + strip_rows, height)
                pending.append((y1 - y0, pool.submit(_strip, make, y0, y1, y1 == height, level)))
            if not pending:
                break
            rows, future = pending.popleft()
            data, strip_adler = future.result()
            adler = adler32_combine(adler, strip_adler, rows * line)
            handle.write(_chunk(b"IDAT", data))
        handle.write(_chunk(b"IDAT", struct.pack(">I", adler)) + _chunk(b"IEND", b""))
    return Path(path)
