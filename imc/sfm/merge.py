"""Merge a sub-model into the largest with a similarity transform estimated from anchor images: images
posed in both (in the sub-model by the mapper, in the largest by relocalisation).

With ``S: X_k = s·Q·X_0 + u`` (world of the largest → world of model k), an image posed ``(R_k, t_k)`` in
model k has ``R_0 = R_k·Q`` and ``t_0 = (R_k·u + t_k) / s`` in the largest. ``Q`` is the rotation
closest to the mean of the anchors' ``R_kᵀ·R_0``; ``s`` the median ratio of anchor centre distances;
``u`` the mean residual of the centres. Anchors whose rotations disagree by more than
``max_rotation_spread_deg`` refuse the merge.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np


@dataclass(kw_only=True, frozen=True)
class Similarity:
    s: float
    Q: np.ndarray
    u: np.ndarray

    def pose_in_target(self, R_k: np.ndarray, t_k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return R_k @ self.Q, (R_k @ self.u + t_k) / self.s


def nearest_rotation(M: np.ndarray) -> np.ndarray:
    U, _, Vt = np.linalg.svd(M)
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))])
    return U @ D @ Vt


def center(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    return -R.T @ t


def estimate_similarity(anchors: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]], *,
                        max_rotation_spread_deg: float = 5.0) -> Similarity | None:
    """``anchors``: (R_k, t_k, R_0, t_0) per image posed in both models; None when fewer than 2 or inconsistent."""
    if len(anchors) < 2:
        return None
    Qs = [Rk.T @ R0 for Rk, _, R0, _ in anchors]
    Q = nearest_rotation(np.sum(Qs, axis=0))
    spread = max(np.degrees(np.arccos(np.clip((np.trace(Q.T @ Qi) - 1) / 2, -1, 1))) for Qi in Qs)
    if spread > max_rotation_spread_deg:
        return None
    ck = [center(Rk, tk) for Rk, tk, _, _ in anchors]
    c0 = [center(R0, t0) for _, _, R0, t0 in anchors]
    ratios = [np.linalg.norm(ck[i] - ck[j]) / np.linalg.norm(c0[i] - c0[j])
              for i, j in itertools.combinations(range(len(anchors)), 2) if np.linalg.norm(c0[i] - c0[j]) > 1e-9]
    if not ratios or not np.isfinite(np.median(ratios)) or np.median(ratios) <= 0:
        return None
    s = float(np.median(ratios))
    u = np.mean([a - s * Q @ b for a, b in zip(ck, c0)], axis=0)
    return Similarity(s=s, Q=Q, u=u)
