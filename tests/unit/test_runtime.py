"""The process's runtime: the allocator, the garbage collector's frozen generation, the map slots."""

import gc
import platform
import sys
import threading
import types

import pytest

from explorer import runtime


def test_freeze_long_lived_only_after_new_imports(monkeypatch):
    runtime.freeze_long_lived(min_new_modules=0)
    assert not runtime.freeze_long_lived(min_new_modules=3)  # nothing imported since
    for k in range(3):
        monkeypatch.setitem(sys.modules, f"_freeze_probe_{k}", types.ModuleType(f"_freeze_probe_{k}"))
    gc.unfreeze()
    assert runtime.freeze_long_lived(min_new_modules=3)
    assert gc.get_freeze_count() > 0
    gc.unfreeze()  # leave the test process as it was


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt and malloc_trim are glibc's")
def test_allocator_tuning_and_trimming_on_glibc():
    assert runtime.tune_allocator() is True
    assert runtime.tune_allocator() is True  # once per process; the second call is the cached answer
    blocks = [bytearray(200_000) for _ in range(200)]  # below the mapping threshold: from the heap
    del blocks
    with runtime.trimmed_after():
        pass
    assert isinstance(runtime.trim_heap(), bool)


def test_without_glibc_nothing_is_changed(monkeypatch):
    monkeypatch.setattr(runtime, "_libc", lambda: None)
    runtime.tune_allocator.cache_clear()
    try:
        assert runtime.tune_allocator() is False
        assert runtime.trim_heap() is False
    finally:
        runtime.tune_allocator.cache_clear()


def test_map_slots_queue_and_say_so(monkeypatch):
    monkeypatch.setattr(runtime, "_slots", None)
    monkeypatch.setenv("EXPLORER_MAX_CONCURRENT_MAPS", "1")
    slots = runtime.map_slots()
    assert runtime.map_slots() is slots, "sized once per process"
    with runtime.map_slot(lambda f, m: None) as waited:
        assert waited is False
        heard: list[str] = []
        got: list[bool] = []
        other = threading.Thread(target=lambda: got.append(_take(heard)))
        other.start()
        other.join(1.6)
        assert other.is_alive(), "the second map waits while the first holds the only slot"
    other.join(10)
    assert got == [True] and heard and heard[0].startswith("waiting 1 s"), heard
    assert slots.acquire(blocking=False), "every slot was given back"
    slots.release()


def _take(heard: list[str]) -> bool:
    with runtime.map_slot(lambda f, m: heard.append(m)) as waited:
        return waited
