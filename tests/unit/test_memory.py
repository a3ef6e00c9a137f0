import ctypes
import platform

import numpy as np
import pytest

from slmcnn.memory import keep_freed_memory


class MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def mmapped_bytes() -> int:
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    return libc.mallinfo2().hblkhd


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
def test_large_blocks_come_from_the_reusable_heap_not_fresh_kernel_mappings():
    assert keep_freed_memory()
    before = mmapped_bytes()
    block = np.ones(64 << 20, np.uint8)  # one 64 MiB activation's worth
    assert mmapped_bytes() - before < block.nbytes
    del block
