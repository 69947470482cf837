"""The verified matches of a scene as a lookup ``(name_a, name_b) -> (n, 2) keypoint indices``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..h5io import ResumableH5, pair_key


@dataclass(kw_only=True)
class TwoViewMatches:
    """Verified inlier matches per image pair; ``get(a, b)`` returns them oriented as (a, b)."""

    pairs: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)

    def get(self, a: str, b: str) -> np.ndarray | None:
        m = self.pairs.get((a, b))
        if m is not None:
            return m
        m = self.pairs.get((b, a))
        return None if m is None else m[:, ::-1]

    def partners(self, name: str) -> list[str]:
        out = [b for (a, b) in self.pairs if a == name] + [a for (a, b) in self.pairs if b == name]
        return sorted(set(out))


def load_two_view_matches(verified_path: Path, pairs: list[tuple[str, str]], *, min_num_matches: int) -> TwoViewMatches:
    """Every listed pair with at least ``min_num_matches`` verified inliers (the pairs the mapper sees)."""
    store = ResumableH5(verified_path)
    out = TwoViewMatches()
    for a, b in pairs:
        key = pair_key(a, b)
        if key not in store:
            continue
        m = np.asarray(store.get(key)["matches"], dtype=np.int64).reshape(-1, 2)
        if len(m) >= min_num_matches:
            out.pairs[(a, b)] = m
    return out
