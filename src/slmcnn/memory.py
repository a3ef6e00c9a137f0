"""Keep freed memory in the process during training.

glibc hands every block over 32 MiB straight to the kernel (mmap) and gives it back on free, and the
largest training activations (64x32x128x128 bf16 = 64 MiB) are made and freed several times a step:
each time the kernel zeroes and page-faults them in anew, which cost about a quarter of a training
step here. Serving them from the heap and never trimming it reuses the same pages every step, as
TensorFlow's own allocator and the jemalloc/tcmalloc preloads usually recommended for PyTorch do.
The process then keeps its peak memory until it exits.
"""

import ctypes
import ctypes.util
import platform

M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to reuse freed blocks instead of returning them; True where it applied."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1))
