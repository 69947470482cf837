"""Stage ``fuse``: one keypoint set per image from every extractor, their matches unioned per pair
→ ``fused-<fp>.h5``.

Per image: ``keypoints`` (N, 2) float32 (original pixels), ``scores`` (N,), ``image_size``, ``source`` (N,) int8 (the
index in ``features.extractors`` of the extractor that found each keypoint); attributes
``image_sha1`` and ``errors`` (JSON: extractor -> why it gave nothing). The keypoints of each
extractor are appended in the order of ``features.extractors``; with ``fusion.merge_radius_px`` > 0
a keypoint closer than that to one already kept (of an earlier extractor) is merged into it.
Per pair: ``matches`` (M, 2) int32 into the fused keypoints, ``scores`` (M,): each extractor's
matches re-indexed and concatenated, then kept one-to-one: a fused keypoint already matched (by an
earlier extractor, or through another keypoint merged into it) keeps its first match, so merging
never gives a keypoint two partners in the other image. With one extractor this is the
extractor's keypoints and matches unchanged. Resumable per image and pair (content hashes).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.spatial import cKDTree

from .h5io import PAIR_SEP, ResumableH5, escape, pair_key
from .pairs import read_pairs

if TYPE_CHECKING:
    from .pipeline import SceneContext

log = logging.getLogger(__name__)


def fuse_keypoints(parts: list[np.ndarray], radius: float) -> tuple[np.ndarray, np.ndarray, list[np.ndarray],
                                                                   list[np.ndarray]]:
    """Keypoint arrays of each extractor -> (fused keypoints, source index, per-extractor index maps
    into the fused set, per-extractor masks of the keypoints that were appended)."""
    kept: list[np.ndarray] = []
    masks: list[np.ndarray] = []
    source: list[np.ndarray] = []
    maps: list[np.ndarray] = []
    n = 0
    for e, kpts in enumerate(parts):
        index = np.arange(n, n + len(kpts), dtype=np.int64)
        new = np.ones(len(kpts), bool)
        if radius > 0 and n > 0 and len(kpts):
            dist, nearest = cKDTree(np.concatenate(kept)).query(kpts, distance_upper_bound=radius)
            close = np.isfinite(dist)
            index[close] = nearest[close]
            new = ~close
            index[new] = n + np.arange(new.sum())
        kept.append(kpts[new].astype(np.float32))
        source.append(np.full(int(new.sum()), e, np.int8))
        maps.append(index)
        masks.append(new)
        n += int(new.sum())
    keypoints = np.concatenate(kept) if kept else np.zeros((0, 2), np.float32)
    return keypoints.reshape(-1, 2), (np.concatenate(source) if source else np.zeros(0, np.int8)), maps, masks


def union_matches(parts: list[tuple[np.ndarray, np.ndarray]], maps0: list[np.ndarray],
                  maps1: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Each extractor's (matches, scores), re-indexed into the fused keypoints and concatenated, then
    one-to-one: a fused keypoint of either image that is already matched keeps its first match."""
    matches, scores = [], []
    for (m, s), map0, map1 in zip(parts, maps0, maps1):
        if len(m):
            matches.append(np.stack([map0[m[:, 0]], map1[m[:, 1]]], 1))
            scores.append(s)
    if not matches:
        return {"matches": np.zeros((0, 2), np.int32), "scores": np.zeros((0,), np.float32)}
    m = np.concatenate(matches).astype(np.int32)
    s = np.concatenate(scores).astype(np.float32)
    if len(parts) > 1:  # each matcher's own matches are one-to-one; their union need not be
        for side in (0, 1):
            _, first = np.unique(m[:, side], return_index=True)
            keep = np.sort(first)
            m, s = m[keep], s[keep]
    return {"matches": m, "scores": s}


def main(conf: dict[str, Any], features_paths: list[Path], matches_paths: list[Path], pairs_path: Path,
         fused_path: Path, *, extractors: list[str]) -> Path:
    """Fuse the extractors' features (one file each, in ``extractors`` order) and their matches."""
    radius = float(conf["merge_radius_px"])
    feature_stores = [ResumableH5(p) for p in features_paths]
    match_stores = [ResumableH5(p) for p in matches_paths]
    store = ResumableH5(fused_path)
    images: dict[str, dict[str, Any]] = {}
    for fs in feature_stores:
        for key in fs.keys():
            images.setdefault(key, {})[fs.path] = fs.attrs(key)
    sha1 = {}
    for key, per_store in images.items():
        hashes = {a.get("image_sha1") for a in per_store.values()}
        if len(per_store) == len(feature_stores) and len(hashes) == 1:  # every extractor saw the same bytes
            sha1[key] = hashes.pop()
    todo_images = store.pending({key: {"image_sha1": h} for key, h in sha1.items()})
    maps: dict[str, list[np.ndarray]] = {}

    def fuse_image(key: str) -> list[np.ndarray]:
        if key not in maps:
            items = [fs.get(key) for fs in feature_stores]
            keypoints, source, maps[key], new = fuse_keypoints([it["keypoints"] for it in items], radius)
            if key in todo_images:
                scores = np.concatenate([it["scores"][m] for it, m in zip(items, new)]).astype(np.float32)
                size = next((it["image_size"] for it in items if np.any(it["image_size"])), items[0]["image_size"])
                errors = {ext: images[key][fs.path].get("error", "") for ext, fs in zip(extractors, feature_stores)}
                store.put(key, {"keypoints": keypoints, "scores": scores, "source": source, "image_size": size},
                          {"image_sha1": sha1[key], "errors": json.dumps({e: v for e, v in errors.items() if v}),
                           "num_keypoints": len(keypoints)})
        return maps[key]

    for key in todo_images:
        fuse_image(key)
    expected = {}
    for a, b in read_pairs(pairs_path):
        ka, kb = escape(a), escape(b)
        k = pair_key(a, b)
        if ka in sha1 and kb in sha1 and all(k in ms for ms in match_stores):
            expected[k] = {"image_sha1_0": sha1[ka], "image_sha1_1": sha1[kb]}
    todo_pairs = store.pending(expected)
    log.info("fuse: %d images, %d pairs to fuse (%s) -> %s", len(todo_images), len(todo_pairs), "+".join(extractors),
             fused_path.name)
    for k in todo_pairs:
        ka, kb = k.split(PAIR_SEP)
        parts = []
        for ms in match_stores:
            item = ms.get(k)
            parts.append((item["matches"], item["scores"]))
        store.put(k, union_matches(parts, fuse_image(ka), fuse_image(kb)), expected[k])
    return store.finalize()


def run_stage(ctx: "SceneContext", ext: str | None = None) -> Path:
    exts = ctx.conf["features"]["extractors"]
    return main(ctx.conf["fusion"], [ctx.plan.path("features", e) for e in exts],
                [ctx.plan.path("matches", e) for e in exts], ctx.plan.path("screen"), ctx.plan.path("fuse"),
                extractors=exts)


def read_images(fused_path: Path) -> dict[str, dict[str, Any]]:
    """image_path -> {keypoints, image_size, num_keypoints, errors} for every image in the fused file."""
    from .h5io import unescape

    store = ResumableH5(fused_path)
    out = {}
    for key in store.keys():
        if PAIR_SEP in key:
            continue
        attrs = store.attrs(key)
        out[unescape(key)] = {**store.get(key), "num_keypoints": int(attrs.get("num_keypoints", 0)),
                              "image_sha1": attrs.get("image_sha1", ""), "errors": json.loads(attrs.get("errors") or "{}")}
    return out
