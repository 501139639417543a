"""The serving process caps glibc's malloc arenas (recsys.allocator)."""

from __future__ import annotations


def test_malloc_arenas_are_capped_on_glibc() -> None:
    import platform

    from recsys.allocator import limit_malloc_arenas

    assert limit_malloc_arenas(0) is False  # 0 leaves the C library alone
    if platform.libc_ver()[0] == "glibc":
        assert limit_malloc_arenas(2) is True
