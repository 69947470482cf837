"""Mutual nearest neighbours with Lowe's ratio test, on L2-normalised descriptors (any dimension)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from . import Matcher, no_matches, register


def mutual_nn_ratio(d0: np.ndarray, d1: np.ndarray, *, ratio: float, mutual: bool) -> dict[str, np.ndarray]:
    if len(d0) == 0 or len(d1) == 0:
        return no_matches()
    a = torch.from_numpy(np.ascontiguousarray(d0, np.float32))
    b = torch.from_numpy(np.ascontiguousarray(d1, np.float32))
    a = a / a.norm(dim=1, keepdim=True).clamp(min=1e-12)
    b = b / b.norm(dim=1, keepdim=True).clamp(min=1e-12)
    dist = torch.cdist(a, b)  # (N0, N1)
    k = min(2, dist.shape[1])
    best, idx = dist.topk(k, dim=1, largest=False)
    keep = torch.ones(len(a), dtype=torch.bool)
    if k == 2 and ratio < 1:
        keep &= best[:, 0] <= ratio * best[:, 1]
    if mutual:
        back = dist.argmin(dim=0)
        keep &= back[idx[:, 0]] == torch.arange(len(a))
    i0 = torch.nonzero(keep).flatten()
    matches = torch.stack([i0, idx[i0, 0]], 1).numpy().astype(np.int32)
    scores = (1 - best[i0, 0] ** 2 / 2).numpy().astype(np.float32)  # cosine similarity of the pair
    return {"matches": matches.reshape(-1, 2), "scores": scores.reshape(-1)}


@register
class NearestNeighbour(Matcher):
    name = "nearest_neighbour"

    def load(self, conf: dict[str, Any], *, weights_dir: str | os.PathLike | None, device: torch.device) -> dict[str, Any]:
        return conf  # nothing to load

    def match(self, model: dict[str, Any], f0: dict[str, np.ndarray], f1: dict[str, np.ndarray],
              device: torch.device) -> dict[str, np.ndarray]:
        return mutual_nn_ratio(f0["descriptors"], f1["descriptors"], ratio=float(model["ratio_threshold"]),
                               mutual=bool(model["mutual"]))
