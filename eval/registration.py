"""Exhaustive camera-centre registration of the IMC 2024 / IMC 2025 metrics, vectorised with numpy.

The official ``register_by_Horn`` (IMC 2024 "3D metric evaluation example" notebook; IMC 2025
``imc25-utils`` ``metric.py``), as called by both competitions (``inl_cf=0``, ``strict_cf=-1``):

1. cameras whose submitted centre is not finite are dropped (``valid``);
2. for every triplet ``i < j < k`` of the remaining cameras, in lexicographic order, a similarity
   ``x -> s R x + T`` is fitted to the 3 correspondences with Horn's quaternion method (rotation =
   eigenvector of the largest eigenvalue of Horn's symmetric 4x4 matrix, built from its lower
   triangle), scale = sqrt(sum |gt - mean_gt|^2 / sum |sub - mean_sub|^2) (ratio of spreads);
3. per threshold ``th``, the triplet model's inliers are the cameras with squared distance
   ``< th^2`` (strict); when there are more than 2 of them (``no_inl > 2``, ``no_inl > 0 * best``),
   the similarity is refitted on that inlier set (Kabsch SVD with the reflection fix, same scale
   rule) and evaluated on all cameras; with ``strict_cf = -1`` no triplet is ever skipped;
4. a refitted model replaces threshold ``q``'s model when it has more inliers at ``q``, or as many
   and a smaller sum of squared errors over *all* cameras (sequential, first one wins a tie).

A refitted model depends only on its inlier set, so the search is done once per distinct inlier
set (deduplicated by packed bit rows; first occurrence keeps the official visiting order).
The count of cameras under each threshold is the maximum inlier count over all refitted models,
which is all the mAA reads; ``err`` holds the per-camera distances of the kept model.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

TRIPLET_BLOCK = 2_048  # triplets per vectorised block (memory: block x cameras x thresholds bools)
REFIT_BLOCK = 1_024  # inlier sets per vectorised refit block


@dataclass(kw_only=True, frozen=True)
class Registration:
    """The kept model per threshold: ``err[k, q]`` = distance of valid camera k under threshold q's model."""

    valid: np.ndarray  # (n,) bool: submitted centre is finite
    err: np.ndarray  # (n_valid, r) distances (inf where no model was found)
    n_inliers: np.ndarray  # (r,) cameras with err < threshold (the official ``no_inl``)
    transforms: np.ndarray = field(repr=False)  # (r, 4, 4) similarity per threshold (zeros if none)
    n_candidate_sets: int = 0  # distinct inlier sets refitted

    def registered(self, thresholds: np.ndarray) -> np.ndarray:
        """Cameras strictly under each threshold (r,)."""
        return np.sum(self.err < np.asarray(thresholds, dtype=np.float64)[None, :], axis=0)


def camera_centres(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """c = -R^T t for world-to-camera poses, (N, 3, 3) and (N, 3) -> (N, 3)."""
    return -np.einsum("nba,nb->na", np.asarray(R, dtype=np.float64), np.asarray(t, dtype=np.float64))


def _triplets(n: int) -> np.ndarray:
    """All i < j < k of n items in the official loop order, (C(n,3), 3) int32."""
    if n < 3:
        return np.zeros((0, 3), dtype=np.int32)
    j, k = np.triu_indices(n, k=1)
    blocks = []
    for i in range(n - 2):
        keep = j > i
        jj, kk = j[keep], k[keep]
        blocks.append(np.stack([np.full(len(jj), i), jj, kk], axis=1))
    return np.concatenate(blocks).astype(np.int32)


def _rotation_from_quaternion(q: np.ndarray) -> np.ndarray:
    """(B, 4) quaternions (w, x, y, z), any norm -> (B, 3, 3); the official ``quaternion_matrix``."""
    n = np.sum(q * q, axis=1)
    small = n < np.finfo(float).eps * 4.0
    q = q * np.sqrt(2.0 / np.where(small, 1.0, n))[:, None]
    o = q[:, :, None] * q[:, None, :]
    R = np.stack(
        [
            1.0 - o[:, 2, 2] - o[:, 3, 3], o[:, 1, 2] - o[:, 3, 0], o[:, 1, 3] + o[:, 2, 0],
            o[:, 1, 2] + o[:, 3, 0], 1.0 - o[:, 1, 1] - o[:, 3, 3], o[:, 2, 3] - o[:, 1, 0],
            o[:, 1, 3] - o[:, 2, 0], o[:, 2, 3] + o[:, 1, 0], 1.0 - o[:, 1, 1] - o[:, 2, 2],
        ],
        axis=1,
    ).reshape(-1, 3, 3)
    R[small] = np.eye(3)
    return R


def horn_similarity(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Batched Horn fit of ``dst ~ s R src + T`` for point sets (B, m, 3): returns s (B,), R (B,3,3), T (B,3)."""
    mu0, mu1 = src.mean(axis=1), dst.mean(axis=1)
    v0, v1 = src - mu0[:, None], dst - mu1[:, None]
    S = np.einsum("bma,bmc->bac", v0, v1)  # S[a, c] = sum v0_a v1_c
    xx, yy, zz = S[:, 0, 0], S[:, 1, 1], S[:, 2, 2]
    xy, yz, zx = S[:, 0, 1], S[:, 1, 2], S[:, 2, 0]
    xz, yx, zy = S[:, 0, 2], S[:, 1, 0], S[:, 2, 1]
    N = np.zeros((len(src), 4, 4))
    N[:, 0, 0] = xx + yy + zz
    N[:, 1, 0], N[:, 1, 1] = yz - zy, xx - yy - zz
    N[:, 2, 0], N[:, 2, 1], N[:, 2, 2] = zx - xz, xy + yx, yy - xx - zz
    N[:, 3, 0], N[:, 3, 1], N[:, 3, 2], N[:, 3, 3] = xy - yx, zx + xz, yz + zy, zz - xx - yy
    w, V = np.linalg.eigh(N)  # lower triangle, as the official code's list-of-rows matrix
    q = np.take_along_axis(V, np.argmax(w, axis=1)[:, None, None], axis=2)[:, :, 0]
    R = _rotation_from_quaternion(q)
    s = _spread_ratio(v0, v1, np.ones(v0.shape[:2], dtype=bool))
    return s, R, mu1 - s[:, None] * np.einsum("bac,bc->ba", R, mu0)


def kabsch_similarity(
    src: np.ndarray, dst: np.ndarray, mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Batched SVD fit on the masked points: src, dst (n, 3), mask (B, n) -> s (B,), R (B,3,3), T (B,3).

    Sums over each set are matrix products with the mask (moments about the global centroid, which
    the fit does not depend on), so a block of sets costs a few BLAS calls.
    """
    o0, o1 = src.mean(axis=0), dst.mean(axis=0)
    a, b = src - o0, dst - o1
    w = mask.astype(np.float64)
    cnt = w.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        m0, m1 = (w @ a) / cnt[:, None], (w @ b) / cnt[:, None]
        H = (w @ (b[:, :, None] * a[:, None, :]).reshape(-1, 9)).reshape(-1, 3, 3)
        H -= cnt[:, None, None] * m1[:, :, None] * m0[:, None, :]  # sum (b - m1)(a - m0)^T
        spread0 = w @ np.sum(a * a, axis=1) - cnt * np.sum(m0 * m0, axis=1)
        spread1 = w @ np.sum(b * b, axis=1) - cnt * np.sum(m1 * m1, axis=1)
        s = np.sqrt(spread1 / spread0)
    R = rotation_of(H)
    T = (m1 + o1) - s[:, None] * np.einsum("bac,bc->ba", R, m0 + o0)
    return s, R, T


POLAR_ITERATIONS = 10
POLAR_MAX_COND = 1e6  # ||H|| ||H^-1|| above this: LAPACK's SVD (the polar factor's rounding grows with it)
POLAR_TOL = 1e-13
POLAR_STEP_TOL = 1e-10  # a Newton step this small leaves an error of its square: converged


def _inv3_t(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Batched 3x3 inverse-transpose by cofactors on component-major matrices (9, B) (row-major
    components, each a contiguous vector), and the determinants (B,)."""
    a, b, c, d, e, f, g, h, i = x
    A, B, C = e * i - f * h, f * g - d * i, d * h - e * g
    det = a * A + b * B + c * C
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        cof = np.stack([A, B, C, c * h - b * i, a * i - c * g, b * g - a * h, b * f - c * e, c * d - a * f, a * e - b * d])
        return cof / det, det  # the cofactor matrix / det = (X^-1)^T


def rotation_of(H: np.ndarray) -> np.ndarray:
    """The official refit's rotation ``U V^T`` of ``H = U S V^T`` (``U diag(1, 1, -1) V^T`` when its
    determinant is negative), batched (B, 3, 3).

    Where ``det H > 0`` and H is well conditioned, ``U V^T`` is H's polar factor, computed by the
    scaled Newton iteration ``X <- (g X + X^-T / g) / 2`` on component vectors (closed-form 3x3
    inverses, no per-matrix LAPACK call); it equals LAPACK's ``U V^T`` to rounding (~1e-15, checked in
    the tests). Every other matrix (reflections, near-singular, not converged) takes ``np.linalg.svd``
    exactly as the official code."""
    H = np.asarray(H, dtype=np.float64)
    x = np.ascontiguousarray(H.reshape(-1, 9).T)  # (9, B)
    inv_t, det = _inv3_t(x)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        cond = np.sqrt(np.sum(x * x, axis=0) * np.sum(inv_t * inv_t, axis=0))
        ok = np.isfinite(cond) & (det > 0) & (cond < POLAR_MAX_COND)
        for it in range(POLAR_ITERATIONS):
            g = np.sqrt(np.sqrt(np.sum(inv_t * inv_t, axis=0) / np.sum(x * x, axis=0)))
            x_next = 0.5 * (g * x + inv_t / g)
            # Quadratic convergence: once every step is at rounding level the next one changes nothing.
            done = it >= 2 and not np.any(np.abs(x_next - x)[:, ok] > POLAR_STEP_TOL)
            x = x_next
            if done:
                break
            inv_t, _ = _inv3_t(x)
        X = x.T.reshape(-1, 3, 3)
        err = np.abs(np.einsum("bji,bjk->bik", X, X) - np.eye(3)).max(axis=(1, 2))
        ok &= err < POLAR_TOL
    R = np.where(ok[:, None, None], X, 0.0)
    rest = np.flatnonzero(~ok)
    if len(rest):
        R[rest] = rotation_of_svd(H[rest])
    return R


def rotation_of_svd(H: np.ndarray) -> np.ndarray:
    """The official computation, always by LAPACK's SVD (the reference for :func:`rotation_of`)."""
    u, _, vh = np.linalg.svd(np.asarray(H, dtype=np.float64))
    R = u @ vh
    flip = np.linalg.det(R) < 0.0
    R[flip] -= 2.0 * u[flip, :, 2, None] * vh[flip, None, 2, :]
    return R


def _spread_ratio(v0: np.ndarray, v1: np.ndarray, mask: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sqrt(np.sum((v1 * v1).sum(-1) * mask, axis=1) / np.sum((v0 * v0).sum(-1) * mask, axis=1))


@contextmanager
def _one_blas_thread():
    """BLAS on one thread for the small products of the search: a multi-threaded BLAS spends more on
    waking its threads than on these products (up to 40x slower on a busy machine). With
    ``threadpoolctl`` absent the products keep BLAS's own thread count (same results, slower)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl is a dependency; a bare numpy still scores
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _squared_errors(s, R, T, src, dst) -> np.ndarray:
    """(B, n) squared distances of s R src + T to dst; non-finite models give nan/inf (never inliers)."""
    with np.errstate(invalid="ignore", over="ignore"):
        A = np.concatenate([s[:, None, None] * R, T[:, :, None]], axis=2).reshape(-1, 4)  # (B*3, 4)
        X = np.concatenate([src.T, np.ones((1, len(src)))])
        D = (A @ X).reshape(len(s), 3, -1)  # (B, 3, n)
        D -= dst.T[None]
        np.square(D, out=D)
        return D.sum(axis=1)


def register_cameras(sub_centres: np.ndarray, gt_centres: np.ndarray, thresholds: np.ndarray) -> Registration:
    """Register submitted camera centres (n, 3) onto GT centres (n, 3) for each threshold (r,)."""
    with _one_blas_thread():
        return _register_cameras(sub_centres, gt_centres, thresholds)


def _register_cameras(sub_centres: np.ndarray, gt_centres: np.ndarray, thresholds: np.ndarray) -> Registration:
    sub_centres = np.asarray(sub_centres, dtype=np.float64).reshape(-1, 3)
    gt_centres = np.asarray(gt_centres, dtype=np.float64).reshape(-1, 3)
    th = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    valid = np.all(np.isfinite(sub_centres), axis=1)
    src, dst = sub_centres[valid], gt_centres[valid]
    n, r = len(src), len(th)
    th2 = th**2
    triplets = _triplets(n)
    # 1) candidate inlier sets of every triplet model, deduplicated, first occurrence kept.
    packed_blocks, order_blocks = [], []
    for start in range(0, len(triplets), TRIPLET_BLOCK):
        tri = triplets[start : start + TRIPLET_BLOCK]
        s, R, T = horn_similarity(src[tri], dst[tri])
        err = _squared_errors(s, R, T, src, dst)  # (B, n)
        rows, orders = [], []
        for q in range(r):
            inl = err < th2[q]  # (B, n)
            b = np.flatnonzero(np.count_nonzero(inl, axis=1) > 2)
            rows.append(np.packbits(inl[b], axis=1))
            orders.append((start + b).astype(np.int64) * r + q)
        order = np.concatenate(orders)
        if len(order) == 0:
            continue
        by_order = np.argsort(order, kind="stable")  # official visiting order: triplet, then threshold
        packed, order = np.concatenate(rows)[by_order], order[by_order]
        _, first = np.unique(_as_void(packed), return_index=True)
        packed_blocks.append(packed[first])
        order_blocks.append(order[first])
    err_best = np.full((n, r), np.inf)
    transforms = np.zeros((r, 4, 4))
    max_inl = np.zeros(r, dtype=np.int64)
    if not packed_blocks:
        return Registration(valid=valid, err=err_best, n_inliers=max_inl, transforms=transforms)
    packed = np.concatenate(packed_blocks)
    order = np.concatenate(order_blocks)
    _, first = np.unique(_as_void(packed), return_index=True)
    first = first[np.argsort(order[first], kind="stable")]
    sets = np.unpackbits(packed[first], axis=1, count=n).astype(bool)
    # 2) refit on each distinct set; keep per threshold the best by (inliers desc, error sum asc, order).
    best_sum = np.full(r, np.inf)
    for start in range(0, len(sets), REFIT_BLOCK):
        mask = sets[start : start + REFIT_BLOCK]
        s, R, T = kabsch_similarity(src, dst, mask)
        err = _squared_errors(s, R, T, src, dst)  # (B, n)
        err_sum = err.sum(axis=1)
        cnt = np.stack([np.count_nonzero(err < th2[q], axis=1) for q in range(r)], axis=1)  # (B, r)
        # The official loop updates threshold q when (cnt > best) or (cnt == best and sum < best sum),
        # starting from (0, inf): the winner is the first candidate with the most inliers, then the
        # smallest sum; a candidate with a non-finite sum only ever wins with inliers (never here).
        eligible = (cnt > 0) | np.isfinite(err_sum)[:, None]
        key_sum = np.where(np.isfinite(err_sum), err_sum, np.inf)
        for q in range(r):
            idx = np.flatnonzero(eligible[:, q])
            if len(idx) == 0:
                continue
            k = idx[np.lexsort((idx, key_sum[idx], -cnt[idx, q]))[0]]
            if cnt[k, q] > max_inl[q] or (cnt[k, q] == max_inl[q] and err_sum[k] < best_sum[q]):
                max_inl[q], best_sum[q] = cnt[k, q], err_sum[k]
                err_best[:, q] = np.sqrt(err[k])
                transforms[q] = np.eye(4)
                transforms[q, :3, :3], transforms[q, :3, 3] = s[k] * R[k], T[k]
    return Registration(
        valid=valid, err=err_best, n_inliers=max_inl, transforms=transforms, n_candidate_sets=len(sets)
    )


def _as_void(rows: np.ndarray) -> np.ndarray:
    rows = np.ascontiguousarray(rows)
    return rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).ravel()
