"""uvloop reads TLS into a fresh 256 KiB bytes object per read. In a new process glibc maps
such a block anew each time (and unmaps it after); once the proxy has fixed malloc's
thresholds, the block comes from the heap, where it is reused."""

import subprocess
import sys
import textwrap

# glibc's mallinfo2(): hblkhd is the number of bytes held in mmap'ed blocks
PROBE = textwrap.dedent(
    """
    import ctypes, sys
    from proxy.heap import keep_read_buffers_on_heap

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
            "uordblks", "fordblks", "keepcost")]

    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = MallInfo2

    def mapped_while_holding_a_read_buffer() -> int:
        before = libc.mallinfo2().hblkhd
        buffer = b"r" * (256 * 1024)  # the size uvloop asks SSLObject.read() for
        mapped = libc.mallinfo2().hblkhd - before
        del buffer
        return mapped

    print(mapped_while_holding_a_read_buffer(), keep_read_buffers_on_heap(),
          mapped_while_holding_a_read_buffer())
    """
)


def test_a_read_sized_block_is_mapped_by_default_and_on_the_heap_once_tuned() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True
    ).stdout.split()
    default_mapped, tuned, tuned_mapped = int(out[0]), out[1], int(out[2])
    assert default_mapped >= 256 * 1024
    assert tuned == "True"
    assert tuned_mapped == 0
