"""Stage ``screen``: pair screening → ``screen-<fp>.txt`` (the kept pairs, in the pair-list format).

Every candidate pair of ``pairs-<fp>.txt`` is matched cheaply first: each image's
``screening.num_keypoints`` best keypoints (by detector score) of the already extracted features
of one extractor, with that extractor's own matcher. A pair is kept when it has at least
``min_matches`` cheap matches, or when it is among the ``min_pairs_per_image`` best partners of
either image (no image is orphaned by the rule). ``max_pairs_per_image`` additionally keeps only
pairs among the top-k partners of either image: the cheap counts then rank the pairs of a scene
too large to match fully. ``matches``, ``fuse``, ``verified`` and ``sfm`` read the kept list.

The cheap match counts are stored per pair beside the list (``screen-counts-<fp>.h5``, named by the
features and ``num_keypoints`` only, resumable, each pair keyed by its images' content hashes; read
them with :func:`read_counts`): a changed selection rule re-matches nothing. Off
(``screening.enabled: false``), the kept list is the pair list, copied, and nothing is matched.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from .config import ConfigError
from .h5io import ResumableH5, escape, pair_key
from .io_utils import fingerprint
from .match import usable_images
from .matchers import get as get_matcher
from .pairs import read_pairs, write_pairs

if TYPE_CHECKING:
    from .pipeline import SceneContext

log = logging.getLogger(__name__)


def counts_path(screen_path: Path, num_keypoints: int, features_path: Path) -> Path:
    """The cheap match counts depend only on the features and ``num_keypoints``: changing the selection
    rule (``min_matches``, ``min_pairs_per_image``, ``max_pairs_per_image``) re-matches nothing."""
    return screen_path.parent / f"screen-counts-{fingerprint([int(num_keypoints), features_path.name])}.h5"


def top_keypoints(feats: dict[str, Any], n: int) -> dict[str, Any]:
    """The ``n`` best keypoints by score (all when fewer), in their stored order."""
    if len(feats["scores"]) <= n:
        return feats
    keep = np.sort(np.argsort(-feats["scores"], kind="stable")[:n])
    return {**feats, "keypoints": feats["keypoints"][keep], "descriptors": feats["descriptors"][keep],
            "scores": feats["scores"][keep]}


def select(counts: dict[tuple[str, str], int], *, min_matches: int, min_pairs_per_image: int,
           max_pairs_per_image: int | None) -> set[tuple[str, str]]:
    """The kept pairs given each pair's cheap match count."""
    ranked: dict[str, list[tuple[int, tuple[str, str]]]] = defaultdict(list)
    for pair, n in counts.items():
        for image in pair:
            ranked[image].append((n, pair))
    best: dict[str, list[tuple[str, str]]] = {}
    for image, items in ranked.items():
        items.sort(key=lambda t: -t[0])  # stable: ties keep the pair-list order
        best[image] = [pair for n, pair in items if n > 0]
    kept = {pair for pair, n in counts.items() if n >= min_matches}
    kept |= {pair for pairs in best.values() for pair in pairs[:min_pairs_per_image]}
    if max_pairs_per_image is not None:
        top = {pair for pairs in best.values() for pair in pairs[:max_pairs_per_image]}
        kept &= top
    return kept


def read_counts(path: Path) -> dict[str, int]:
    """Pair key (``imc.h5io.pair_key``) -> cheap match count, for every screened pair (``path``: the counts
    store, ``counts_path``)."""
    store = ResumableH5(path)
    return {key: int(store.attrs(key)["num_matches"]) for key in store.keys()}


def main(conf: dict[str, Any], pairs_path: Path, features_path: Path, screen_path: Path, *, matcher: str,
         load_model: Callable[[], Any], device: torch.device,
         progress: bool = True, desc: str = "screen") -> Path:
    """Write the kept pairs of ``pairs_path`` to ``screen_path`` (``conf``: the ``screening`` section)."""
    pairs = read_pairs(pairs_path)
    if not conf["enabled"]:
        return screen_path if screen_path.exists() else write_pairs(screen_path, pairs)
    adapter = get_matcher(matcher)
    features = ResumableH5(features_path)
    sha1 = usable_images(features_path)
    store = ResumableH5(counts_path(screen_path, conf["num_keypoints"], features_path))
    expected = {}
    for a, b in pairs:
        ka, kb = escape(a), escape(b)
        if ka in sha1 and kb in sha1:
            expected[pair_key(a, b)] = {"image_sha1_0": sha1[ka], "image_sha1_1": sha1[kb]}
    todo = store.pending(expected)
    log.info("screen: %d of %d pairs to match cheaply (%d keypoints, %s) -> %s", len(todo), len(pairs),
             conf["num_keypoints"], matcher, screen_path.name)
    model = load_model() if todo else None
    cache: dict[str, dict[str, Any]] = {}

    def feats(key: str) -> dict[str, Any]:
        if key not in cache:
            cache[key] = top_keypoints(features.get(key), int(conf["num_keypoints"]))
        return cache[key]

    for a, b in tqdm([p for p in pairs if pair_key(*p) in todo], desc=desc, unit="pair", disable=not progress):
        out = adapter.match(model, feats(escape(a)), feats(escape(b)), device)
        n = len(out["matches"])
        store.put(pair_key(a, b), {"num_matches": np.array([n], np.int64)}, {**expected[pair_key(a, b)], "num_matches": n})
    store.finalize()
    counts = {(a, b): int(store.attrs(pair_key(a, b))["num_matches"]) for a, b in pairs if pair_key(a, b) in expected}
    kept = select(counts, min_matches=int(conf["min_matches"]), min_pairs_per_image=int(conf["min_pairs_per_image"]),
                  max_pairs_per_image=conf["max_pairs_per_image"])
    log.info("screen: kept %d of %d pairs (>= %d cheap matches or an image's %d best; cap %s)", len(kept), len(pairs),
             conf["min_matches"], conf["min_pairs_per_image"], conf["max_pairs_per_image"])
    return write_pairs(screen_path, [p for p in pairs if p in kept])


def run_stage(ctx: "SceneContext", ext: str | None = None) -> Path:
    conf = ctx.conf["screening"]
    exts = ctx.conf["features"]["extractors"]
    ext = conf["extractor"] or exts[0]
    if ext not in exts:
        raise ConfigError(f"screening.extractor {ext!r} is not in features.extractors {exts}: name one of them or null")
    entry = ctx.conf["matching"][ext]
    mconf = {**ctx.conf["matchers"][entry["matcher"]], **entry}
    adapter = get_matcher(entry["matcher"])
    return main(conf, ctx.plan.path("pairs"), ctx.plan.path("features", ext), ctx.plan.path("screen"),
                matcher=entry["matcher"], device=ctx.device, progress=ctx.progress,
                desc=f"screen {ctx.scene.name}",
                load_model=lambda: ctx.networks.get(f"matcher:{entry['matcher']}", mconf, adapter.load))
