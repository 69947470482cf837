"""Stage ``matches``: one extractor's matches for every listed pair → ``matches-<slug>-<fp>.h5``.

Resumable per pair; a pair is recomputed only when either image's content changed (their hashes
are stored with the match). All matches the matcher returns are kept; ``verification.min_matches``
is applied by verification, so changing it never invalidates this (expensive) cache.

Each image's features are prepared once (the matcher's ``prepare``: for LightGlue, tensors kept on the
device across all its pairs); pairs whose keypoint counts are equal are matched ``runtime.match_batch_size``
at a time. A CUDA out-of-memory error matches the pair on the CPU instead. Under a time budget the
pairs run best partners first (:func:`priority_order`) and the stage stops at its allowance, leaving the
other pairs to a later run with more time.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from .h5io import PAIR_SEP, ResumableH5, escape, pair_key
from .matchers import get as get_matcher
from .memory import release_free_memory
from .pairs import read_pairs

if TYPE_CHECKING:
    from .budget import StageClock
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


def priority_order(todo: list[str], descriptor_of: Callable[[str], np.ndarray]) -> list[str]:
    """``todo`` pairs reordered so that every image's best partners come first: pairs are taken by rank,
    where a pair's rank is the lower of its rank among either image's partners, by the cosine similarity of
    the images' mean local descriptors (centred over the scene, as retrieval does). Cheap: no matching."""
    if len(todo) < 2:
        return list(todo)
    keys = sorted({k for pair in todo for k in pair.split(PAIR_SEP)})
    index = {k: i for i, k in enumerate(keys)}
    g = np.stack([descriptor_of(k) for k in keys]).astype(np.float64)
    g -= g.mean(axis=0, keepdims=True)
    g /= np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-12)
    sim = g @ g.T
    partners: dict[int, list[tuple[float, str]]] = {}
    for pair in todo:
        a, b = (index[k] for k in pair.split(PAIR_SEP))
        partners.setdefault(a, []).append((-sim[a, b], pair))
        partners.setdefault(b, []).append((-sim[a, b], pair))
    rank: dict[str, int] = {}
    for lst in partners.values():
        for r, (_, pair) in enumerate(sorted(lst)):
            rank[pair] = min(rank.get(pair, r), r)
    position = {pair: i for i, pair in enumerate(todo)}
    return sorted(todo, key=lambda pair: (rank[pair], position[pair]))


def mean_descriptor(item: dict[str, np.ndarray]) -> np.ndarray:
    d = item["descriptors"].astype(np.float64)
    return d.mean(axis=0) if len(d) else np.zeros(d.shape[1], np.float64)


def main(conf: dict[str, Any], pairs_path: Path, features_path: Path, matches_path: Path, *, matcher: str,
         load_model: Callable[[torch.device], Any], device: torch.device, progress: bool = True,
         desc: str = "matches", batch_size: int = 1, clock: "StageClock | None" = None) -> Path:
    """Match every pair of ``pairs_path`` whose two images have features in ``features_path``.

    ``conf``: ``matchers.<matcher>`` merged with the extractor's ``matching`` entry. ``load_model(device)``
    is called only when some pair needs matching. ``clock``: the stage's time allowance (best partners
    first, then stop; recorded in ``clock.cut``).
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
    model_on = load_model  # one model per device, loaded on first use (imc.networks.Networks caches it)
    if todo:
        model_on(device)
    raw: dict[str, dict[str, Any]] = {}
    prepared: dict[str, Any] = {}  # the scene's features, prepared once (on the device for LightGlue)

    def feats(key: str) -> Any:
        if key not in prepared:
            raw[key] = features.get(key)
            prepared[key] = adapter.prepare(raw[key], device)
        return prepared[key]

    def descriptor_of(key: str) -> np.ndarray:
        feats(key)
        return mean_descriptor(raw[key])

    if clock is not None:
        todo = priority_order(todo, descriptor_of)
    cpu = torch.device("cpu")

    def match_group(group: list[str]) -> list[dict[str, Any]]:
        sides = [tuple(feats(k) for k in key.split(PAIR_SEP)) for key in group]
        try:
            if len(group) == 1:
                return [adapter.match(model_on(device), *sides[0], device)]
            return adapter.match_batch(model_on(device), sides, device)
        except torch.cuda.OutOfMemoryError:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            log.warning("matches: CUDA out of memory on %d pair(s) %s...; matching them on the CPU", len(group), group[0])
            return [adapter.match(model_on(cpu), adapter.prepare(raw[a], cpu), adapter.prepare(raw[b], cpu), cpu)
                    for a, b in (key.split(PAIR_SEP) for key in group)]

    bar = tqdm(total=len(todo), desc=desc, unit="pair", disable=not progress)
    done = 0
    for group in batches(todo, lambda k: tuple(adapter.batch_key(feats(x)) for x in k.split(PAIR_SEP)), batch_size):
        if clock is not None and clock.check(done, len(todo)):
            clock.cut = f"{done}/{len(todo)} pairs matched in {clock.elapsed():.1f} s (best partners first)"
            log.warning("matches %s: time share used up: %s; the rest is left to a later run", matcher, clock.cut)
            break
        for key, result in zip(group, match_group(group)):
            store.put(key, result, expected[key])
        release_free_memory()  # LightGlue's per-pair buffers differ in size: without it the heap only grows
        done += len(group)
        bar.update(len(group))
    bar.close()
    return store.finalize()


def batches(todo: list[str], key_of: Callable[[str], Any], size: int) -> list[list[str]]:
    """Consecutive runs of pairs with equal batch keys (no key: alone), at most ``size`` each; order kept
    within a key."""
    if size <= 1:
        return [[k] for k in todo]
    out: list[list[str]] = []
    open_groups: dict[Any, list[str]] = {}
    for k in todo:
        bk = key_of(k)
        if any(part is None for part in bk):
            out.append([k])
            continue
        group = open_groups.get(bk)
        if group is None or len(group) >= size:
            group = open_groups[bk] = []
            out.append(group)
        group.append(k)
    return out


def run_stage(ctx: "SceneContext", ext: str) -> Path:
    entry = ctx.conf["matching"][ext]
    conf = {**ctx.conf["matchers"][entry["matcher"]], **entry}
    adapter = get_matcher(entry["matcher"])
    clock = ctx.clock.stage("matches") if ctx.clock is not None else None
    path = main(conf, ctx.plan.path("screen"), ctx.plan.path("features", ext), ctx.plan.path("matches", ext),
                matcher=entry["matcher"], device=ctx.device, progress=ctx.progress, desc=f"matches {ext} {ctx.scene.name}",
                load_model=lambda dev: ctx.networks.get(f"matcher:{entry['matcher']}", conf, adapter.load, device=dev),
                batch_size=int(ctx.conf["runtime"]["match_batch_size"]), clock=clock)
    if clock is not None and clock.cut:
        ctx.clock.cut.append(f"matches {ext}: {clock.cut}")
    return path
