"""Background image decoding: the next images are read in a thread while the network runs on the current one."""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def prefetch(fn: Callable[[T], R], items: Iterable[T], depth: int) -> Iterator[tuple[T, Callable[[], R]]]:
    """Yield ``(item, result)`` in order, ``result()`` returning ``fn(item)`` or raising its exception.
    ``depth`` > 0: up to ``depth`` items are computed ahead in one background thread (decoders release
    the GIL); 0: each is computed when ``result()`` is called."""
    if depth <= 0:
        for item in items:
            yield item, (lambda item=item: fn(item))
        return
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="imc-decode")
    try:
        source = iter(items)
        ahead: deque[tuple[T, Future[R]]] = deque()
        for item in source:
            ahead.append((item, pool.submit(fn, item)))
            if len(ahead) >= depth:
                break
        while ahead:
            item, future = ahead.popleft()
            for nxt in source:
                ahead.append((nxt, pool.submit(fn, nxt)))
                break
            yield item, future.result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
