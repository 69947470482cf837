"""Small filesystem helpers: atomic writes and content hashes."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import socket
from pathlib import Path
from typing import Any, Iterator

import numpy as np


def tmp_name(path: Path) -> Path:
    """A sibling temporary name unique to this process on this host (never read as a finished file).

    The host is part of the name so that machines sharing a cache folder (a Ray cluster on NFS)
    never mistake each other's in-flight files for leftovers of a killed local process.
    """
    return path.with_name(f"{path.name}.tmp-{socket.gethostname()}-{os.getpid()}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path; on success rename it onto ``path`` atomically, else delete it.

    Works for files and directories: a reader sees either the old complete object or the new
    complete one, never a half-written one (the interrupted-run guarantee of every stage).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_name(path)
    remove_path(tmp)
    try:
        yield tmp
        if path.is_dir() and tmp.is_dir():
            remove_path(path)
        os.replace(tmp, path)
    finally:
        remove_path(tmp)


def remove_path(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def file_sha1(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def format_numbers(values: Any) -> str:
    """``a;b;c``: the CSV encoding of matrices and vectors (row-major, exact ``repr`` of each float)."""
    return ";".join(repr(float(v)) for v in np.asarray(values, dtype=np.float64).ravel())


def parse_numbers(text: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """The inverse of :func:`format_numbers` (also accepts spaces as separators): the one decoder of
    the ``;``-separated pose strings. ``ValueError`` names the text when it does not fit ``shape``."""
    parts = [p for p in str(text).replace(" ", ";").split(";") if p.strip()]
    try:
        values = np.array([float(p) for p in parts], dtype=np.float64)
    except ValueError:
        raise ValueError(f"not a ';'-separated list of numbers: {text!r}") from None
    if shape is not None:
        if values.size != int(np.prod(shape)):
            raise ValueError(f"expected {int(np.prod(shape))} numbers, got {values.size}: {text!r}")
        values = values.reshape(shape)
    return values


def fingerprint(obj: Any, length: int = 12) -> str:
    """Stable short hash of a JSON-serialisable object (dict key order does not matter)."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:length]


@contextlib.contextmanager
def file_lock(path: str | os.PathLike) -> Iterator[None]:
    """Exclusive inter-process lock on ``<path>.lock`` (released by the kernel if the process dies).

    Two runs that share a cache (parallel sweep points, a second terminal) take turns on a stage
    output: the second waits, then finds the work done instead of racing the first.
    """
    lock = Path(f"{path}.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
