"""xvjax.host_memory: freed large buffers are reused without new page faults (glibc only)."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

# Like XLA's buffers: malloc, write and free 200 MB three times on a worker thread, in a fresh
# interpreter; prints the minor page faults of the last round (the first one grows the heap).
PROBE = """
import ctypes, resource, sys, threading
if sys.argv[1] == "reuse":
    from xvjax import host_memory
    assert host_memory.reuse_freed_memory()
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = (ctypes.c_void_p,)
faults = []
def work():
    for _ in range(3):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        p = libc.malloc(200 << 20)
        ctypes.memset(p, 1, 200 << 20)
        libc.free(p)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
t = threading.Thread(target=work)
t.start()
t.join()
print(faults[-1])
"""


def _faults(mode: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True
    )
    return int(out.stdout.strip())


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="sets glibc malloc options")
def test_freed_memory_is_reused_without_page_faults():
    default, reused = _faults("default"), _faults("reuse")
    # 200 MB in 4 KiB pages is ~51,000 faults when glibc mmaps the buffer afresh each round; a
    # kernel with transparent huge pages always on never shows them, so there is nothing to test.
    if default < 20_000:
        pytest.skip(f"only {default} page faults without the setting on this kernel")
    assert reused < 1_000, f"{reused} page faults for a buffer that was freed and reallocated"
