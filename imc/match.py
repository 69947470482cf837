"""Stage ``matches``: one extractor's matches for every listed pair → ``matches-<slug>-<fp>.h5``.

Resumable per pair; a pair is recomputed only when either image's content changed (their hashes
are stored with the match). All matches the matcher returns are kept; ``verification.min_matches``
is applied by verification, so changing it never invalidates this (expensive) cache.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch
from tqdm.auto import tqdm

from .h5io import PAIR_SEP, ResumableH5, escape, pair_key
from .matchers import get as get_matcher
from .pairs import read_pairs

if TYPE_CHECKING:
    from .pipeline import SceneContext

log = logging.getLogger(__name__)


def usable_images(features_path: Path) -> dict[str, str]:
    """escaped image key -> content hash, for the images with at least one keypoint."""
    store = ResumableH5(features_path)
    out = {}
    for key in store.keys():
        attrs = store.attrs(key)
        if int(attrs.get("num_keypoints", 0)) > 0:
            out[key] = attrs["image_sha1"]
    return out


def main(conf: dict[str, Any], pairs_path: Path, features_path: Path, matches_path: Path, *, matcher: str,
         load_model: Callable[[], Any], device: torch.device, progress: bool = True, desc: str = "matches") -> Path:
    """Match every pair of ``pairs_path`` whose two images have features in ``features_path``.

    ``conf``: ``matchers.<matcher>`` merged with the extractor's ``matching`` entry. ``load_model`` is
    called only when some pair needs matching.
    """
    adapter = get_matcher(matcher)
    features = ResumableH5(features_path)
    sha1 = usable_images(features_path)
    store = ResumableH5(matches_path)
    expected = {}
    for a, b in read_pairs(pairs_path):
        ka, kb = escape(a), escape(b)
        if ka in sha1 and kb in sha1:
            expected[pair_key(a, b)] = {"image_sha1_0": sha1[ka], "image_sha1_1": sha1[kb]}
    todo = store.pending(expected)
    log.info("matches: %d pairs to match (%s) -> %s", len(todo), matcher, matches_path.name)
    model = load_model() if todo else None
    cache: dict[str, dict[str, Any]] = {}

    def feats(key: str) -> dict[str, Any]:
        if key not in cache:
            cache[key] = features.get(key)
        return cache[key]

    for key in tqdm(todo, desc=desc, unit="pair", disable=not progress):
        ka, kb = key.split(PAIR_SEP)
        store.put(key, adapter.match(model, feats(ka), feats(kb), device), expected[key])
    return store.finalize()


def run_stage(ctx: "SceneContext", ext: str) -> Path:
    entry = ctx.conf["matching"][ext]
    conf = {**ctx.conf["matchers"][entry["matcher"]], **entry}
    adapter = get_matcher(entry["matcher"])
    return main(conf, ctx.plan.path("screen"), ctx.plan.path("features", ext), ctx.plan.path("matches", ext),
                matcher=entry["matcher"], device=ctx.device, progress=ctx.progress, desc=f"matches {ext} {ctx.scene.name}",
                load_model=lambda: ctx.networks.get(f"matcher:{entry['matcher']}", conf, adapter.load))
