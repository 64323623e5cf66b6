"""Keep freed host memory for reuse instead of handing it back to the kernel after every step.

Every execution of a jitted computation on the CPU backend allocates its output and temporary
buffers with `malloc` and frees them afterwards. glibc serves such large blocks from fresh `mmap`
regions (a thread's arena cannot hold them) and unmaps them on `free`, so the next step touches new
pages again: the full-size x-vector train step took ~180,000 page faults per step (0.6 s of kernel
time per 2.5 s step, and every element-wise pass writing a fresh buffer ran at ~3 GB/s instead of
~15 GB/s). `reuse_freed_memory()` makes malloc take all memory from the main heap and keep what
is freed there, so after the first step the same pages are reused (no faults).

Call it before JAX starts its backend (before the first computation). It has two prices: the
process keeps its peak heap (memory is reused, not returned, up to `trim_threshold` of free space
at the heap's top), and with one arena XLA's compiler threads contend for malloc's lock: compiling
the full-size train step took 6.2-6.9 s instead of 5.2-5.8 s. So it pays where steps, not compiles,
make the time: `xvjax train` sets it (a training run compiles once and steps for hours), the short
commands and the demo recipe (many small compiles) do not; a script of your own that trains calls
it first thing. A no-op where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import functools

# mallopt parameter numbers (glibc <malloc.h>)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8


@functools.cache
def reuse_freed_memory(trim_threshold: int = 1 << 30) -> bool:
    """Sets glibc's malloc to one arena, no mmap'd blocks and a 1 GiB trim threshold.

    One arena because other threads' arenas fall back to mmap for blocks larger than an arena
    heap (64 MiB) whatever `M_MMAP_MAX` says; XLA allocates on its own threads. Returns True if
    glibc accepted every setting.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library the process already runs on
    except (OSError, AttributeError, TypeError):  # no mallopt (macOS, Windows): nothing to do
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    settings = ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, trim_threshold))
    return all(mallopt(param, value) == 1 for param, value in settings)
