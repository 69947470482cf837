"""Memory levers that never change a result.

With ``GLIBC_TUNABLES`` (mmap and trim thresholds at 4 GB, for ALIKED's speed) glibc keeps every
freed block in the heap and reuses it only for requests that fit. ALIKED's dense maps are a few
hundred MB per image, sized by the resized image: after a small image, a larger one cannot reuse
the small one's holes and the heap grows by the difference (measured at 1024 px, 512 keypoints:
3 ETH3D photos then 4 kyiv photos 1.72 GB; the same images largest first 1.43 GB). Extracting the
largest images first lets every later image reuse the holes. Each image's features are computed
independently, so the order changes no number.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable

from PIL import Image


def resized_pixels(path: Path, resize_max: int | None) -> int:
    """Pixels of ``path`` after resizing its longest side to ``resize_max`` (header only; 0 if unreadable)."""
    try:
        with warnings.catch_warnings():  # huge images warn here; extraction reports them itself
            warnings.simplefilter("ignore")
            with Image.open(path) as img:
                w, h = img.size
    except Exception:  # unreadable images fail later in extraction, with their own message
        return 0
    if resize_max and max(w, h) > resize_max:
        s = resize_max / max(w, h)
        w, h = round(w * s), round(h * s)
    return w * h


def largest_first(names: list[str], file: Callable[[str], Path], resize_max: int | None) -> list[str]:
    """``names`` ordered by resized size, largest first; equal sizes keep their order."""
    return sorted(names, key=lambda n: -resized_pixels(file(n), resize_max))


_MALLOC_TRIM: Callable[[int], int] | None | bool = False  # False: not looked up yet; None: unavailable


def release_free_memory() -> bool:
    """Hand the heap's free pages back to the OS (glibc ``malloc_trim(0)``); False where there is no glibc.

    With the ``GLIBC_TUNABLES`` above, glibc never trims on its own. LightGlue on the CPU allocates
    differently sized buffers for every pair (adaptive depth and point pruning), so the heap fragments
    and the process's RSS only grows: kyiv at 1280 px / 4096 keypoints reached 13.6 GB while matching,
    and 14 pairs took a fresh process from 1.7 to 3.5 GB. ``malloc_trim(0)`` after each pair kept the same
    14 pairs at 0.33 GB, with no slower matching (measured: ``README`` "Memory"). It frees only what is
    already free, so no result changes.
    """
    global _MALLOC_TRIM
    if _MALLOC_TRIM is False:
        try:
            import ctypes

            _MALLOC_TRIM = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _MALLOC_TRIM = None
    if _MALLOC_TRIM is None:
        return False
    _MALLOC_TRIM(0)
    return True
