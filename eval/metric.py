"""The IMC 2023 pose-accuracy metric (mAA) as pure, vectorised numpy functions.

Reproduces the official Kaggle evaluation ("imc2023-evaluation" notebook by the organisers):

* every unordered pair (i, j), i < j, of the ground-truth images of a scene, in label order;
* relative pose dR = R_j R_iᵀ, dT = T_j − dR T_i (world-to-camera poses), for GT and prediction;
* rotation error: quaternions from dR (largest eigenvector of Bar-Itzhack's symmetric 4×4 matrix,
  w ≥ 0), normalised with ``q / (‖q‖ + eps)``; ``loss = max(eps, 1 − ⟨q, q_gt⟩²)``;
  ``err_R = degrees(arccos(1 − 2·loss))``;
* translation error: the predicted dT is rescaled to the GT length,
  ``err_t = min(‖t_gt − t‖, ‖t_gt + t‖)`` (metres when the GT is metric);
* ``acc_k`` = share of pairs with ``err_R <= thR_k and err_t <= tht_k`` (inclusive, as in the
  official ``compute_mAA``); scene mAA = mean over the threshold pairs.

Everything is float64 (the official code averages float32 accuracies; differences are < 1e-6).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EPS = 1e-15


@dataclass(kw_only=True, frozen=True)
class AccuracyCurves:
    """Accuracy per threshold pair: joint (``acc``), rotation-only and translation-only."""

    acc: np.ndarray
    acc_q: np.ndarray
    acc_t: np.ndarray

    @property
    def maa(self) -> float:
        return float(np.mean(self.acc))

    @property
    def maa_q(self) -> float:
        return float(np.mean(self.acc_q))

    @property
    def maa_t(self) -> float:
        return float(np.mean(self.acc_t))


def quaternion_from_matrix(R: np.ndarray) -> np.ndarray:
    """Quaternions (w, x, y, z), w >= 0, of rotation matrices ``R`` of shape (..., 3, 3).

    Bar-Itzhack's method: the eigenvector of the symmetric 4×4 matrix K with the largest
    eigenvalue (robust for matrices that are only nearly orthonormal), as in the official
    ``quaternion_from_matrix``. Batched: one ``eigh`` call for all matrices.
    """
    R = np.asarray(R, dtype=np.float64)
    if R.shape[-2:] != (3, 3):
        raise ValueError(f"expected (..., 3, 3) rotation matrices, got shape {R.shape}")
    m00, m01, m02 = R[..., 0, 0], R[..., 0, 1], R[..., 0, 2]
    m10, m11, m12 = R[..., 1, 0], R[..., 1, 1], R[..., 1, 2]
    m20, m21, m22 = R[..., 2, 0], R[..., 2, 1], R[..., 2, 2]
    K = np.zeros(R.shape[:-2] + (4, 4), dtype=np.float64)
    # Lower triangle only, like the reference: eigh reads the lower triangle (UPLO="L").
    K[..., 0, 0] = m00 - m11 - m22
    K[..., 1, 0] = m01 + m10
    K[..., 1, 1] = m11 - m00 - m22
    K[..., 2, 0] = m02 + m20
    K[..., 2, 1] = m12 + m21
    K[..., 2, 2] = m22 - m00 - m11
    K[..., 3, 0] = m21 - m12
    K[..., 3, 1] = m02 - m20
    K[..., 3, 2] = m10 - m01
    K[..., 3, 3] = m00 + m11 + m22
    K /= 3.0
    w, V = np.linalg.eigh(K)
    top = np.argmax(w, axis=-1)
    v = np.take_along_axis(V, top[..., None, None], axis=-1)[..., 0]  # (..., 4) as (x, y, z, w)
    q = v[..., [3, 0, 1, 2]]
    return np.where(q[..., :1] < 0.0, -q, q)


def pair_indices(n_images: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (i, j) of all unordered pairs i < j, in the official loop order (i outer, j inner)."""
    return np.triu_indices(n_images, k=1)


def relative_poses(
    R: np.ndarray, t: np.ndarray, i: np.ndarray, j: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Relative poses of pairs (i, j) from absolute world-to-camera poses R (N,3,3), t (N,3).

    dR = R_j R_iᵀ, dT = t_j − dR t_i; returns arrays of shape (P, 3, 3) and (P, 3).
    """
    R = np.asarray(R, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    dR = R[j] @ np.swapaxes(R[i], -1, -2)
    dT = t[j] - np.einsum("pab,pb->pa", dR, t[i])
    return dR, dT


def rotation_errors_deg(dR_gt: np.ndarray, dR: np.ndarray, eps: float = EPS) -> np.ndarray:
    """Angle (degrees) between relative rotations, via quaternions as in the official metric."""
    q_gt = quaternion_from_matrix(dR_gt)
    q = quaternion_from_matrix(dR)
    q = q / (np.linalg.norm(q, axis=-1, keepdims=True) + eps)
    q_gt = q_gt / (np.linalg.norm(q_gt, axis=-1, keepdims=True) + eps)
    loss = np.maximum(eps, 1.0 - np.sum(q * q_gt, axis=-1) ** 2)
    return np.degrees(np.arccos(1.0 - 2.0 * loss))


def translation_errors(dT_gt: np.ndarray, dT: np.ndarray, eps: float = EPS) -> np.ndarray:
    """Distance between GT and predicted relative translations, the prediction scaled to the GT length.

    ``err_t = min(‖t_gt − t‖, ‖t_gt + t‖)`` with ``t = ‖t_gt‖ · t / (‖t‖ + eps)``.
    """
    dT_gt = np.asarray(dT_gt, dtype=np.float64)
    dT = np.asarray(dT, dtype=np.float64)
    gt_norm = np.linalg.norm(dT_gt, axis=-1, keepdims=True)
    t = gt_norm * (dT / (np.linalg.norm(dT, axis=-1, keepdims=True) + eps))
    return np.minimum(np.linalg.norm(dT_gt - t, axis=-1), np.linalg.norm(dT_gt + t, axis=-1))


def pair_errors(
    R_gt: np.ndarray, t_gt: np.ndarray, R_pred: np.ndarray, t_pred: np.ndarray, eps: float = EPS
) -> tuple[np.ndarray, np.ndarray]:
    """Rotation (degrees) and translation errors of all pairs i < j of one scene.

    Inputs are absolute world-to-camera poses in GT image order, (N,3,3) and (N,3) each.
    """
    n = len(R_gt)
    if not (len(t_gt) == len(R_pred) == len(t_pred) == n):
        raise ValueError("GT and predicted pose arrays must have the same length")
    i, j = pair_indices(n)
    dR_gt, dT_gt = relative_poses(R_gt, t_gt, i, j)
    dR, dT = relative_poses(R_pred, t_pred, i, j)
    return rotation_errors_deg(dR_gt, dR, eps), translation_errors(dT_gt, dT, eps)


def accuracy_curves(
    err_R: np.ndarray, err_t: np.ndarray, thresholds_R: np.ndarray, thresholds_t: np.ndarray
) -> AccuracyCurves:
    """Share of pairs under each (rotation, translation) threshold pair; thresholds are inclusive."""
    err_R = np.asarray(err_R, dtype=np.float64)[:, None]
    err_t = np.asarray(err_t, dtype=np.float64)[:, None]
    th_R = np.asarray(thresholds_R, dtype=np.float64)[None, :]
    th_t = np.asarray(thresholds_t, dtype=np.float64)[None, :]
    if th_R.shape != th_t.shape:
        raise ValueError(f"{th_R.shape[1]} rotation vs {th_t.shape[1]} translation thresholds")
    if err_R.shape[0] == 0:
        raise ValueError("no pairs: a scene needs at least 2 images")
    # Inclusive (<=), exactly as the official IMC 2023 compute_mAA.
    ok_R = err_R <= th_R
    ok_t = err_t <= th_t
    return AccuracyCurves(
        acc=np.mean(ok_R & ok_t, axis=0),
        acc_q=np.mean(ok_R, axis=0),
        acc_t=np.mean(ok_t, axis=0),
    )
