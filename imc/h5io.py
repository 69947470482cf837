"""The one h5 schema of the pipeline, and crash-safe resumable stores.

Keys are ``image_path`` strings (relative to ``data.root``) with ``%`` and ``/`` escaped, so
the files are flat: ``/<key>/keypoints`` for features, ``/<key0>::<key1>/matches`` for pairs.

Crash safety: a :class:`ResumableH5` stage output is ``<name>.h5`` (complete, replaced atomically)
plus ``<name>.h5.parts/`` holding one small h5 per finished item, each written to a temporary
name and renamed. A ``kill -9`` loses at most the item in flight; a half-written file is never
read. :meth:`ResumableH5.finalize` folds the parts into the main file (atomically) at stage end.
Every item records the content hashes (``sha1``) of the images it was computed from: an item
whose image changed since is stale and recomputed.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import h5py
import numpy as np

from .io_utils import atomic_path, fingerprint, remove_path, tmp_name

PAIR_SEP = "::"


def escape(name: str) -> str:
    return name.replace("%", "%25").replace("/", "%2F")


def unescape(key: str) -> str:
    return key.replace("%2F", "/").replace("%25", "%")


def pair_key(name0: str, name1: str) -> str:
    return f"{escape(name0)}{PAIR_SEP}{escape(name1)}"


def split_pair_key(key: str) -> tuple[str, str]:
    a, b = key.split(PAIR_SEP)
    return unescape(a), unescape(b)


def _write_item(group: h5py.Group, arrays: Mapping[str, np.ndarray], attrs: Mapping[str, Any]) -> None:
    for name, arr in arrays.items():
        group.create_dataset(name, data=np.asarray(arr))
    for name, value in attrs.items():
        group.attrs[name] = value


def _read_arrays(group: h5py.Group) -> dict[str, np.ndarray]:
    return {name: group[name][()] for name in group.keys()}


def _read_attrs(group: h5py.Group) -> dict[str, Any]:
    return {name: (v.decode() if isinstance(v, bytes) else v) for name, v in group.attrs.items()}


class ResumableH5:
    """One stage output: a consolidated h5 plus per-item part files written atomically."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.parts_dir = self.path.with_name(self.path.name + ".parts")
        self._index: dict[str, Path | None] | None = None  # key -> part file (None: in main file)

    # ------------------------------------------------------------------ index
    def _scan(self) -> dict[str, Path | None]:
        if self._index is None:
            index: dict[str, Path | None] = {}
            if self.path.exists():
                with h5py.File(self.path, "r") as f:
                    index.update({k: None for k in f.keys()})
            if self.parts_dir.is_dir():
                for part in sorted(self.parts_dir.glob("*.h5")):
                    try:
                        with h5py.File(part, "r") as f:
                            index.update({k: part for k in f.keys()})
                    except OSError:  # unreadable part (disk full at write time): its item is missing,
                        continue     # recomputed, and the part replaced (same name) or removed at finalize
            self._index = index
        return self._index

    def keys(self) -> list[str]:
        return list(self._scan())

    def __contains__(self, key: str) -> bool:
        return key in self._scan()

    def __len__(self) -> int:
        return len(self._scan())

    # ------------------------------------------------------------------ io
    def _location(self, key: str) -> Path:
        location = self._scan().get(key, KeyError)
        if location is KeyError:
            raise KeyError(f"{key!r} not in {self.path}")
        return location if location is not None else self.path

    def get(self, key: str) -> dict[str, np.ndarray]:
        """The item's arrays (its attributes: :meth:`attrs`)."""
        with h5py.File(self._location(key), "r") as f:
            return _read_arrays(f[key])

    def attrs(self, key: str) -> dict[str, Any]:
        """The item's attributes alone (no array is read)."""
        with h5py.File(self._location(key), "r") as f:
            return _read_attrs(f[key])

    def items(self) -> Iterator[tuple[str, dict[str, np.ndarray]]]:
        for key in self.keys():
            yield key, self.get(key)

    def is_current(self, key: str, expected: Mapping[str, Any]) -> bool:
        """True if ``key`` is stored with these attribute values (e.g. image content hashes). Reads
        attributes only and changes nothing: a stale item stays until :meth:`put` replaces it."""
        if key not in self:
            return False
        attrs = self.attrs(key)
        return all(attrs.get(name) == value for name, value in expected.items())

    def pending(self, expected: Mapping[str, Mapping[str, Any]]) -> list[str]:
        """The keys of ``expected`` (key -> attribute values) that are missing or stale, in order:
        the one place where a stage decides what is still to do."""
        return [key for key, attrs in expected.items() if not self.is_current(key, attrs)]

    def put(self, key: str, arrays: Mapping[str, np.ndarray], attrs: Mapping[str, Any] | None = None) -> None:
        """Store one finished item durably (atomic part file)."""
        self.parts_dir.mkdir(parents=True, exist_ok=True)
        part = self.parts_dir / f"{fingerprint(key, 24)}.h5"  # keys can exceed NAME_MAX
        with atomic_path(part) as tmp:
            with h5py.File(tmp, "w") as f:
                _write_item(f.create_group(key), arrays, attrs or {})
        self._scan()[key] = part

    def finalize(self, keep: Iterable[str] | None = None) -> Path:
        """Fold part files into the main h5 atomically; optionally keep only ``keep`` keys."""
        index = self._scan()
        wanted = set(index) if keep is None else set(keep) & set(index)
        if not self.parts_dir.exists() and self.path.exists() and wanted == set(index):
            return self.path
        with atomic_path(self.path) as tmp:
            with h5py.File(tmp, "w") as out:
                main = h5py.File(self.path, "r") if self.path.exists() else None
                try:
                    for key in sorted(wanted):
                        location = index[key]
                        if location is None:
                            main.copy(main[key], out, name=key)
                        else:
                            with h5py.File(location, "r") as f:
                                f.copy(f[key], out, name=key)
                finally:
                    if main is not None:
                        main.close()
        remove_path(self.parts_dir)
        self._index = {k: None for k in wanted}
        return self.path


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_tmp(directory: Path) -> None:
    """Remove temporary files left by killed runs (those of live processes are theirs to finish)."""
    if directory.is_dir():
        host = socket.gethostname()
        for p in directory.rglob("*.tmp-*"):
            owner_host, _, pid = p.name.rsplit(".tmp-", 1)[-1].rpartition("-")
            if owner_host and owner_host != host:
                continue  # another machine's file: only it knows whether its writer is alive
            if pid.isdigit() and int(pid) != os.getpid() and _pid_alive(int(pid)):
                continue
            remove_path(p)


# ---------------------------------------------------------------------- readers
def read_features(path: str | os.PathLike, image_path: str) -> dict[str, np.ndarray]:
    """keypoints (N,2) float32 in original-image pixels, image_size [W,H]; in a features file also
    descriptors (N,D) and scores (N,); in a fused file the extractor index of each keypoint."""
    return ResumableH5(path).get(escape(image_path))


def read_matches(path: str | os.PathLike, image_path0: str, image_path1: str) -> dict[str, np.ndarray]:
    """matches (M,2) int32 indices into image0/image1 keypoints; raw matches also scores (M,); verified
    ones F."""
    store = ResumableH5(path)
    key = pair_key(image_path0, image_path1)
    if key in store:
        return store.get(key)
    item = store.get(pair_key(image_path1, image_path0))
    item["matches"] = item["matches"][:, ::-1].copy()
    return item


__all__ = [
    "ResumableH5",
    "escape",
    "unescape",
    "pair_key",
    "split_pair_key",
    "read_features",
    "read_matches",
    "clean_stale_tmp",
    "tmp_name",
]
