"""Keeps the proxy's per-read TLS buffers on the heap, out of fresh mappings.

uvloop reads TLS with `SSLObject.read(256 KiB)`: CPython allocates a bytes object of
that size, decrypts into it and shrinks it to what was read, for every read. glibc
serves an allocation above its mmap threshold (128 KiB at start; it rises only once
a larger block happens to be freed) from a new mapping, so each read became
`mmap` + `mremap` + `munmap` and a page fault: half of the inbound proxy's kernel
time per request (README, "Measured"). Fixing the thresholds makes that buffer a reused heap block.
Setting them turns glibc's own adjustment off, so both are set: mmap only above
`MMAP_THRESHOLD`, and the heap's free top is kept up to `TRIM_THRESHOLD` (not given
back with `brk` after every read).
"""

import ctypes
import ctypes.util
import logging

log = logging.getLogger("vmesh.proxy")

MMAP_THRESHOLD = 1024 * 1024
TRIM_THRESHOLD = 4 * 1024 * 1024
_M_TRIM_THRESHOLD = -1  # glibc's <malloc.h> parameter numbers
_M_MMAP_THRESHOLD = -3


def keep_read_buffers_on_heap() -> bool:
    """Fix glibc's malloc thresholds for this process; False where the C library is not
    glibc (nothing is changed, the proxy works as before, with a costlier TLS read)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        log.debug("malloc thresholds left as they are: no glibc mallopt")
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
