"""Stage ``pairs``: which image pairs to match → ``pairs-<fp>.txt`` (``image_path0<TAB>image_path1``).

Exhaustive up to ``pairs.exhaustive_max_images`` images; above, global-descriptor retrieval:
top-k ∪ similarity ≥ threshold, topped up so every image has at least ``min_pairs_per_image``
partners. Pairs are unordered and deduplicated ((j, i) is dropped when (i, j) exists).
"""

from __future__ import annotations

import logging
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

import numpy as np

from .io_utils import atomic_write_text

if TYPE_CHECKING:
    from .pipeline import SceneContext

log = logging.getLogger(__name__)


def canonical(pairs: Iterable[tuple[str, str]], order: dict[str, int]) -> list[tuple[str, str]]:
    seen: set[tuple[str, str]] = set()
    out = []
    for a, b in pairs:
        if a == b:
            continue
        pair = (a, b) if order[a] < order[b] else (b, a)
        if pair not in seen:
            seen.add(pair)
            out.append(pair)
    return sorted(out, key=lambda p: (order[p[0]], order[p[1]]))


def exhaustive_pairs(names: list[str]) -> list[tuple[str, str]]:
    return list(combinations(names, 2))


def retrieval_pairs(names: list[str], descriptors: np.ndarray, *, top_k: int, similarity_threshold: float,
                    min_pairs_per_image: int) -> list[tuple[str, str]]:
    """Pairs from an (N, D) matrix of L2-normalised global descriptors."""
    n = len(names)
    sim = descriptors @ descriptors.T
    np.fill_diagonal(sim, -np.inf)
    chosen: set[tuple[int, int]] = set()
    k = min(max(top_k, min_pairs_per_image), n - 1)
    order = np.argsort(-sim, axis=1)
    for i in range(n):
        for rank, j in enumerate(order[i, : n - 1]):
            if rank < top_k or sim[i, j] >= similarity_threshold or rank < min_pairs_per_image:
                chosen.add((min(i, j), max(i, j)))
            elif rank >= k:
                break
    return [(names[i], names[j]) for i, j in sorted(chosen)]


def read_pairs(path: Path) -> list[tuple[str, str]]:
    pairs = []
    for line in Path(path).read_text().splitlines():
        if line.strip():
            a, b = line.split("\t")
            pairs.append((a, b))
    return pairs


def write_pairs(path: Path, pairs: list[tuple[str, str]]) -> Path:
    for a, b in pairs:
        if "\t" in a or "\t" in b or "\n" in a or "\n" in b:
            raise ValueError(f"image path with a tab or newline cannot be listed: {a!r} / {b!r}")
    return atomic_write_text(path, "".join(f"{a}\t{b}\n" for a, b in pairs))


def main(conf: dict[str, Any], names: list[str], pairs_path: Path, *,
         global_descriptors: Callable[[list[str]], np.ndarray] | None = None) -> Path:
    """Write the pair list for ``names`` (the images that have features).

    ``global_descriptors(names) -> (N, D)`` is only called for retrieval (large scenes).
    """
    if pairs_path.exists():
        return pairs_path
    order = {n: i for i, n in enumerate(names)}
    if len(names) <= conf["exhaustive_max_images"]:
        pairs = exhaustive_pairs(names)
        how = "exhaustive"
    else:
        if global_descriptors is None:
            raise ValueError("retrieval needs a global descriptor function")
        r = conf["retrieval"]
        pairs = retrieval_pairs(names, global_descriptors(names), top_k=r["top_k"],
                                similarity_threshold=r["similarity_threshold"],
                                min_pairs_per_image=r["min_pairs_per_image"])
        how = f"retrieval ({r['method']})"
    pairs = canonical(pairs, order)
    log.info("pairs: %d images -> %d pairs, %s", len(names), len(pairs), how)
    return write_pairs(pairs_path, pairs)


def run_stage(ctx: "SceneContext", ext: str | None = None) -> Path:
    """Pairs over every listed image, not only those with features: the pairs cache is keyed by the
    images' contents and ``pairs.*`` only (pairs with an image without keypoints are skipped later)."""
    from . import retrieval
    from .features.aliked import load_dense

    conf = ctx.conf["pairs"]
    names = ctx.scene.image_paths
    describe = None
    if len(names) > conf["exhaustive_max_images"]:
        r = conf["retrieval"]
        # Only ALIKED's dense feature map is used: the keypoint settings do not matter.
        net = lambda: ctx.networks.get("retrieval:aliked", r["aliked_model"],  # noqa: E731
                                       lambda model, **kw: load_dense(model, **kw))
        describe = retrieval.make_descriptor_fn(r, ctx.scene.file, aliked=net, device=ctx.device)
    return main(conf, names, ctx.plan.path("pairs"), global_descriptors=describe)
