"""How a long-running server treats its process: the C allocator, the cyclic garbage collector, and how many
maps it computes at once.

None of this changes what the explorer computes; it changes what a server holds while doing it. The figures
behind each choice are in docs/BENCHMARKS.md.
"""

from __future__ import annotations

import ctypes
import functools
import gc
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from explorer.settings import current as current_settings

M_MMAP_THRESHOLD = -3  # mallopt's parameter numbers (malloc.h)
M_ARENA_MAX = -8
MMAP_THRESHOLD = 1 << 20  # blocks this big or bigger come from the system and go back to it when freed


@functools.cache
def _libc() -> ctypes.CDLL | None:
    """glibc, or None on another C library (musl, macOS): then the allocator is left as it is."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt, libc.malloc_trim  # noqa: B018 (both are glibc's: a missing one raises here)
    except (OSError, AttributeError):
        return None
    return libc


def trim_heap() -> bool:
    """Hand memory freed by a big computation back to the system; returns whether anything went back. glibc
    keeps freed memory in its arenas for reuse, so a server's resident size would otherwise stay at the peak of
    its largest map so far."""
    libc = _libc()
    return bool(libc.malloc_trim(0)) if libc is not None else False


@contextmanager
def trimmed_after() -> Iterator[None]:
    """Trim the heap when the block ends, however it ends."""
    try:
        yield
    finally:
        trim_heap()


@functools.cache  # app.py runs on every rerun: once is enough
def tune_allocator() -> bool:
    """Make a long-running server give memory back. Once per process, before the big allocations start.

    glibc serves a large block from its heap instead of a fresh mapping once a block that size has been freed
    (the mapping threshold rises with every free, up to 32 MB). A server that encodes, fits and decodes for
    many people then keeps every freed batch, chunk and layout array in its heaps, where fragments pin it:
    measured with eight people at once, the same work peaked at 1,236 MB this way and at 779 to 991 MB with the
    threshold fixed (docs/BENCHMARKS.md has the later changes). A fixed threshold keeps blocks of 1 MB and more
    as their own mappings, returned on free; two arenas (as ``MALLOC_ARENA_MAX=2``) stop every script thread
    from growing a heap of its own. Returns False where the C library is not glibc (nothing is changed)."""
    libc = _libc()
    if libc is None:
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(libc.mallopt(M_ARENA_MAX, 2))


_FREEZE_LOCK = threading.Lock()
_frozen_modules = 0  # len(sys.modules) at the last freeze


def freeze_long_lived(min_new_modules: int = 20) -> bool:
    """Move what is alive now out of the cyclic garbage collector's sight, when modules were imported since the
    last time; returns True when it did.

    Streamlit runs a full collection after every script run, and a full collection walks every tracked object:
    with torch, Plotly and the app imported that is about 250,000 objects and 110 ms holding the interpreter
    lock, on every click of every person. Almost all of them are modules, classes and functions that live as
    long as the process. Frozen (``gc.freeze``), they are skipped: the same collection then takes well under a
    millisecond. Objects freed by reference counting are still freed; only cycles among frozen objects would
    stay, which is why a collection runs first."""
    global _frozen_modules
    if len(sys.modules) - _frozen_modules < min_new_modules:
        return False
    with _FREEZE_LOCK:
        gc.collect()
        gc.freeze()
        _frozen_modules = len(sys.modules)
    return True


# A map computation's peak memory is its k-NN and layout work: about 400 MB for 10,000 images on top of the
# server's own. Eight people mapping uploads at once took a 2-core server to 3.3 GB and made each wait 78 s
# (benchmarks/load.py): the cores are shared anyway, so maps queue instead of piling up.
_slots: threading.BoundedSemaphore | None = None
_slots_lock = threading.Lock()


def map_slots() -> threading.BoundedSemaphore:
    """The process's map slots: EXPLORER_MAX_CONCURRENT_MAPS, read once (a changed setting applies from the
    next start)."""
    global _slots
    with _slots_lock:
        if _slots is None:
            _slots = threading.BoundedSemaphore(current_settings().max_concurrent_maps)
        return _slots


@contextmanager
def map_slot(progress: Callable[[float, str], object]) -> Iterator[bool]:
    """Holds one of the process's map slots; yields whether it had to wait for it. While waiting, ``progress``
    hears about it once a second, which is also where Streamlit stops a run the person abandoned."""
    slots = map_slots()
    waited = not slots.acquire(blocking=False)
    seconds = 0
    while waited and not slots.acquire(timeout=1.0):
        seconds += 1
        progress(0.0, f"waiting {seconds} s for other maps to finish (this server computes them in turn)")
    try:
        yield waited
    finally:
        slots.release()
