"""Stage 3: LightGlue matches for every listed pair → ``matches-<fp>.h5``.

Resumable per pair; a pair is recomputed only when either image's features changed (their
content hashes are stored with the match). All matches above ``filter_threshold`` are kept;
the ``min_matches`` filter is applied by the verification stage so that changing it never
invalidates this (expensive) cache.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from .h5io import ResumableH5, pair_key
from .pairs import read_pairs

log = logging.getLogger(__name__)


@torch.inference_mode()
def match_pair(model: torch.nn.Module, f0: dict[str, Any], f1: dict[str, Any], device: torch.device) -> dict[str, np.ndarray]:
    if len(f0["keypoints"]) == 0 or len(f1["keypoints"]) == 0:
        return {"matches": np.zeros((0, 2), np.int32), "scores": np.zeros((0,), np.float32)}

    def side(f: dict[str, Any]) -> dict[str, torch.Tensor]:
        return {
            "keypoints": torch.from_numpy(f["keypoints"])[None].to(device),
            "descriptors": torch.from_numpy(f["descriptors"])[None].to(device),
            "image_size": torch.from_numpy(np.asarray(f["image_size"], np.float32))[None].to(device),
        }

    out = model({"image0": side(f0), "image1": side(f1)})
    matches = out["matches"][0].cpu().numpy().astype(np.int32)
    scores = out["scores"][0].float().cpu().numpy().astype(np.float32)
    return {"matches": matches.reshape(-1, 2), "scores": scores.reshape(-1)}


def main(conf: dict[str, Any], pairs_path: Path, features: dict[str, dict[str, Any]], matches_path: Path, *,
         load_model: Callable[[], torch.nn.Module], device: torch.device, progress: bool = True,
         desc: str = "matches") -> Path:
    """Match every pair of ``pairs_path`` whose two images have features (resumable).

    ``load_model`` is called only when some pair needs matching.
    """
    store = ResumableH5(matches_path)
    todo = []
    for a, b in read_pairs(pairs_path):
        if a not in features or b not in features:
            continue
        key = pair_key(a, b)
        sha = {"image_sha1_0": features[a]["image_sha1"], "image_sha1_1": features[b]["image_sha1"]}
        if not store.is_current(key, sha):
            todo.append((a, b, key, sha))
    log.info("matches: %d pairs to match -> %s", len(todo), matches_path.name)
    model = load_model() if todo else None
    for a, b, key, sha in tqdm(todo, desc=desc, unit="pair", disable=not progress):
        result = match_pair(model, features[a], features[b], device)
        store.put(key, result, sha)
    return store.finalize()
