"""Pure numpy/OpenCV ray caster for textured quads.

Per quad: intersect every pixel ray of the (supersampled) camera with the quad's plane, keep hits
inside the rectangle and nearer than the z-buffer, then sample each quad's texture bilinearly with
``cv2.remap`` from a mip level chosen by the texel footprint (trilinear between two levels), and
downsample with ``INTER_AREA``. Rays are ``d = R^T K^-1 (x, y, 1)``, whose camera-z is 1, so the
ray parameter of a hit IS its depth. Every per-pixel quantity of a plane is affine in (x, y) or a
ratio of affine functions, which keeps the work to a few vector operations per quad.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from .cameras import PinholeCamera
from .layouts import Quad

NEAR_M = 0.05
_REMAP_COLS = 1024  # sample lists are remapped as (rows, 1024) maps


@dataclass(frozen=True, kw_only=True, eq=False)
class TexturedQuad:
    """A quad with its texture mip pyramid (level 0 = full resolution, uint8 RGB)."""

    quad: Quad
    pyramid: tuple[np.ndarray, ...]

    @classmethod
    def build(cls, quad: Quad, texture: np.ndarray) -> "TexturedQuad":
        levels = [np.ascontiguousarray(texture)]
        while min(levels[-1].shape[:2]) >= 16:
            levels.append(cv2.pyrDown(levels[-1]))
        return cls(quad=quad, pyramid=tuple(levels))


@dataclass(frozen=True, kw_only=True)
class Sky:
    """Background where no quad is hit: a smooth vertical gradient (featureless on purpose)."""

    zenith: tuple[float, float, float] = (120.0, 165.0, 225.0)
    horizon: tuple[float, float, float] = (215.0, 225.0, 235.0)
    below: tuple[float, float, float] = (95.0, 95.0, 90.0)


@dataclass(frozen=True, kw_only=True, eq=False)
class RenderResult:
    """``image`` float32 RGB (H, W, 3) in [0, 255]; ``depth`` float32 camera z (inf: no single quad);
    ``quad_id`` int16 index into the quads (-1 where the pixel mixes quads or sees the sky)."""

    image: np.ndarray
    depth: np.ndarray
    quad_id: np.ndarray


def _affine(coeffs: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """coeffs (3,) -> a*x + b*y + c on the grid xs (1, W) x ys (H, 1), float32."""
    a, b, c = (np.float32(v) for v in coeffs)
    return a * xs + (b * ys + c)


def _window(quad: Quad, cam: PinholeCamera) -> tuple[int, int, int, int] | None:
    """Pixel box (x0, x1, y0, y1) that can contain the quad; the whole image when it crosses the camera plane."""
    uv, depth = cam.project(quad.corners)
    if np.all(depth <= NEAR_M):
        return None
    if np.any(depth <= NEAR_M):
        return 0, cam.width, 0, cam.height
    x0 = max(0, int(np.floor(uv[:, 0].min())) - 1)
    x1 = min(cam.width, int(np.ceil(uv[:, 0].max())) + 2)
    y0 = max(0, int(np.floor(uv[:, 1].min())) - 1)
    y1 = min(cam.height, int(np.ceil(uv[:, 1].max())) + 2)
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, x1, y0, y1


def _rasterise(quads: Sequence[TexturedQuad], cam: PinholeCamera) -> tuple[np.ndarray, np.ndarray]:
    """z-buffer (H, W) float32 and quad index (H, W) int16 of the nearest hit per pixel."""
    zbuf = np.full((cam.height, cam.width), np.inf, np.float32)
    ids = np.full((cam.height, cam.width), -1, np.int16)
    ray = cam.R.T @ np.linalg.inv(cam.K)  # d(x, y) = ray @ (x, y, 1)
    center = cam.center
    for index, tq in enumerate(quads):
        quad = tq.quad
        n = quad.normal
        numer = float(n @ (quad.origin - center))
        if numer >= -1e-9:  # camera behind (or on) the visible side: back-face
            continue
        win = _window(quad, cam)
        if win is None:
            continue
        x0, x1, y0, y1 = win
        xs = np.arange(x0, x1, dtype=np.float32)[None, :]
        ys = np.arange(y0, y1, dtype=np.float32)[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            dn = _affine(n @ ray, xs, ys)
            lam = np.float32(numer) / dn
            lam[dn >= 0] = np.inf
            rel = center - quad.origin
            uu, vv = float(quad.u @ quad.u), float(quad.v @ quad.v)
            s = (np.float32(rel @ quad.u) + lam * _affine(quad.u @ ray, xs, ys)) / np.float32(uu)
            r = (np.float32(rel @ quad.v) + lam * _affine(quad.v @ ray, xs, ys)) / np.float32(vv)
        zwin = zbuf[y0:y1, x0:x1]
        hit = (lam > NEAR_M) & (lam < zwin) & (s >= 0) & (s <= 1) & (r >= 0) & (r <= 1)
        zwin[hit] = lam[hit]
        ids[y0:y1, x0:x1][hit] = index
    return zbuf, ids


def _remap(texture: np.ndarray, cols: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Bilinear samples (N, 3) float32 of ``texture`` at texel coordinates (pixel-centre convention)."""
    n = len(cols)
    padded = -(-n // _REMAP_COLS) * _REMAP_COLS
    map_x = np.zeros(padded, np.float32)
    map_y = np.zeros(padded, np.float32)
    map_x[:n], map_y[:n] = cols, rows
    out = cv2.remap(texture, map_x.reshape(-1, _REMAP_COLS), map_y.reshape(-1, _REMAP_COLS),
                    interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    return out.reshape(-1, 3)[:n].astype(np.float32)


def _shade(quads: Sequence[TexturedQuad], cam: PinholeCamera, zbuf: np.ndarray, ids: np.ndarray,
           sky: Sky) -> np.ndarray:
    """Colour every pixel: trilinear texture samples for hits, the sky gradient elsewhere."""
    height, width = ids.shape
    image = np.empty((height * width, 3), np.float32)
    flat_ids = ids.ravel()
    order = np.argsort(flat_ids, kind="stable")
    starts = np.searchsorted(flat_ids[order], np.arange(-1, len(quads) + 1))
    ray = cam.R.T @ np.linalg.inv(cam.K)  # world ray d = ray @ (x, y, 1), camera-z of d is 1
    center = cam.center
    focal = float(np.sqrt(abs(np.linalg.det(cam.K[:2, :2]))))
    zflat = zbuf.ravel()
    for index in range(-1, len(quads)):
        pix = order[starts[index + 1] : starts[index + 2]]
        if len(pix) == 0:
            continue
        xs = (pix % width).astype(np.float32)
        ys = (pix // width).astype(np.float32)
        d_norm = np.sqrt(sum(_affine(row, xs, ys) ** 2 for row in ray))
        if index < 0:
            image[pix] = _sky_colour(_affine(ray[2], xs, ys) / d_norm, sky)
            continue
        tq = quads[index]
        quad = tq.quad
        lam = zflat[pix]
        rel = center - quad.origin
        tex_h, tex_w = tq.pyramid[0].shape[:2]
        uu, vv = float(quad.u @ quad.u), float(quad.v @ quad.v)
        cols = (np.float32(rel @ quad.u) + lam * _affine(quad.u @ ray, xs, ys)) * np.float32(tex_w / uu) - 0.5
        rows = (np.float32(rel @ quad.v) + lam * _affine(quad.v @ ray, xs, ys)) * np.float32(tex_h / vv) - 0.5
        # texel footprint of one pixel: distance / focal, foreshortened (geometric mean of both axes)
        cos_incidence = np.abs(_affine(quad.normal @ ray, xs, ys)) / d_norm
        texels_per_m = 0.5 * (tex_w / np.sqrt(uu) + tex_h / np.sqrt(vv))
        footprint = np.float32(texels_per_m / focal) * lam / np.sqrt(d_norm * np.maximum(cos_incidence, 1e-3))
        level = np.clip(np.log2(np.maximum(footprint, 1e-6)), 0.0, len(tq.pyramid) - 1.0)
        image[pix] = _sample_trilinear(tq.pyramid, cols, rows, level)
    return image.reshape(height, width, 3)


def _sample_trilinear(pyramid: Sequence[np.ndarray], cols: np.ndarray, rows: np.ndarray,
                      level: np.ndarray) -> np.ndarray:
    """Texture samples blended between mip levels floor(level) and floor(level) + 1."""
    out = np.empty((len(cols), 3), np.float32)
    base = level.astype(np.int32)  # level >= 0: truncation is floor
    top = len(pyramid) - 1
    for lvl in range(int(base.min()), int(base.max()) + 1):
        sel = np.flatnonzero(base == lvl)
        if len(sel) == 0:
            continue
        frac = (level[sel] - lvl)[:, None]
        scale = np.float32(0.5**lvl)
        c, r = cols[sel] + 0.5, rows[sel] + 0.5
        lo = _remap(pyramid[lvl], c * scale - 0.5, r * scale - 0.5)
        if lvl < top:
            hi = _remap(pyramid[lvl + 1], c * (scale / 2) - 0.5, r * (scale / 2) - 0.5)
            lo += frac * (hi - lo)
        out[sel] = lo
    return out


def _sky_colour(elevation: np.ndarray, sky: Sky) -> np.ndarray:
    t = np.clip(elevation * 2.5, 0.0, 1.0)[:, None].astype(np.float32)
    zenith, horizon, below = (np.asarray(c, np.float32) for c in (sky.zenith, sky.horizon, sky.below))
    colour = horizon + t * (zenith - horizon)
    return np.where(elevation[:, None] < 0, below, colour).astype(np.float32)


def render_upright(quads: Sequence[TexturedQuad], cam: PinholeCamera, *, supersample: int = 2,
                   sky: Sky = Sky()) -> RenderResult:
    """Render ``cam``'s view: supersampled ray casting, then an INTER_AREA (box) downsample."""
    hi = cam.supersampled(supersample)
    zbuf, ids = _rasterise(quads, hi)
    image_hi = _shade(quads, hi, zbuf, ids, sky)
    size = (cam.width, cam.height)
    image = cv2.resize(image_hi, size, interpolation=cv2.INTER_AREA)
    # 1/z is affine on a plane, so the box mean of 1/z is exactly 1/z at the low-res pixel centre.
    inv = np.where(ids >= 0, 1.0 / zbuf, 0.0).astype(np.float32)
    inv_lo = cv2.resize(inv, size, interpolation=cv2.INTER_AREA)
    blocks = ids.reshape(cam.height, supersample, cam.width, supersample)
    same = (blocks.min(axis=(1, 3)) == blocks.max(axis=(1, 3))) & (blocks[:, 0, :, 0] >= 0)
    quad_id = np.where(same, blocks[:, 0, :, 0], -1).astype(np.int16)
    with np.errstate(divide="ignore"):
        depth = np.where(same, 1.0 / inv_lo, np.inf).astype(np.float32)
    return RenderResult(image=image, depth=depth, quad_id=quad_id)


def render_view(quads: Sequence[TexturedQuad], upright: PinholeCamera, quarter_turns: int = 0, *,
                supersample: int = 2, sky: Sky = Sky()) -> RenderResult:
    """Render upright, then turn image, depth and ids by ``np.rot90(., quarter_turns)``; the matching
    camera is ``upright.rotated_quarter_turns(quarter_turns)``."""
    res = render_upright(quads, upright, supersample=supersample, sky=sky)
    if quarter_turns % 4 == 0:
        return res
    k = quarter_turns % 4
    return RenderResult(image=np.ascontiguousarray(np.rot90(res.image, k)),
                        depth=np.ascontiguousarray(np.rot90(res.depth, k)),
                        quad_id=np.ascontiguousarray(np.rot90(res.quad_id, k)))
