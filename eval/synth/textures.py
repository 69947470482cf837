"""Rich, non-repetitive textures: collages of the photos shipped in the scikit-image wheel.

Each texture is a base of smooth colour plus fine grain, covered by a few hundred patches cut
from random photos, each with its own crop, scale, rotation, flip and colour transform, so no two
places of a scene look alike (repeated tiles would make feature matchers pair the wrong places).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import cv2
import numpy as np

# skimage.data loaders whose images ship inside the wheel (no download) and whose docstrings state
# CC0 / public domain / "no known copyright restrictions" (so rendered data may be redistributed).
# Grey ones get tinted.
PHOTO_NAMES: tuple[str, ...] = (
    "astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "retina",  # colour
    "brick", "grass", "gravel", "camera", "text", "coins", "clock", "cell",  # grey
)


class TextureSourceError(RuntimeError):
    """A scikit-image sample photo could not be loaded."""


@functools.lru_cache(maxsize=1)
def photo_bank() -> tuple[np.ndarray, ...]:
    """The sample photos as uint8 arrays: (H, W, 3) RGB or (H, W) grey. Loaded once per process."""
    try:
        import skimage.data
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise TextureSourceError("scikit-image is needed for synthetic textures: pip install scikit-image") from exc
    photos = []
    for name in PHOTO_NAMES:
        try:
            image = getattr(skimage.data, name)()
        except Exception as exc:  # noqa: BLE001 - re-raised with the photo's name
            raise TextureSourceError(f"cannot load skimage.data.{name}() for a texture: {exc}") from exc
        image = np.ascontiguousarray(np.asarray(image, dtype=np.uint8))
        if image.ndim == 3:
            image = image[..., :3]
        photos.append(image)
    return tuple(photos)


@dataclass(frozen=True, kw_only=True)
class CollageStyle:
    """How a collage is cut: patch side range in texture pixels, coverage (mean layers), scale range."""

    patch_px: tuple[float, float] = (110.0, 420.0)
    coverage: float = 2.6
    scale: tuple[float, float] = (0.6, 1.3)


def _colourise(patch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Float32 RGB patch in [0, 255] with a random colour transform."""
    if patch.ndim == 2:
        grey = patch.astype(np.float32)[..., None] / 255.0
        dark, light = rng.uniform(0, 110, 3), rng.uniform(150, 255, 3)
        return (dark + grey * (light - dark)).astype(np.float32)
    out = patch.astype(np.float32)
    if rng.uniform() < 0.3:
        out = out[..., rng.permutation(3)]
    return out * rng.uniform(0.75, 1.25, 3).astype(np.float32)


def _base_layer(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """Muted smooth colour plus fine grain (seen only where no patch lands)."""
    grey = rng.uniform(70, 190, (max(2, height // 96), max(2, width // 96), 1)).astype(np.float32)
    tint = rng.uniform(-25, 25, grey.shape[:2] + (3,)).astype(np.float32)
    base = cv2.resize(grey + tint, (width, height), interpolation=cv2.INTER_CUBIC)
    grain = rng.standard_normal((height, width), dtype=np.float32)
    grain = cv2.GaussianBlur(grain, (0, 0), 1.2) * np.float32(90.0)
    return base + grain[..., None]


def collage_texture(width: int, height: int, rng: np.random.Generator, *,
                    style: CollageStyle = CollageStyle()) -> np.ndarray:
    """A (height, width, 3) uint8 RGB texture made of randomly transformed photo patches."""
    photos = photo_bank()
    canvas = _base_layer(width, height, rng)
    mean_side = sum(style.patch_px) / 2.0
    n_patches = max(1, math.ceil(style.coverage * width * height / mean_side**2))
    for _ in range(n_patches):
        photo = photos[int(rng.integers(len(photos)))]
        side = rng.uniform(*style.patch_px)
        scale = rng.uniform(*style.scale)
        aspect = rng.uniform(0.6, 1.6)
        crop_w = int(min(photo.shape[1], max(16, side * math.sqrt(aspect) / scale)))
        crop_h = int(min(photo.shape[0], max(16, side / math.sqrt(aspect) / scale)))
        x0 = int(rng.integers(0, photo.shape[1] - crop_w + 1))
        y0 = int(rng.integers(0, photo.shape[0] - crop_h + 1))
        patch = _colourise(photo[y0 : y0 + crop_h, x0 : x0 + crop_w], rng)
        if rng.uniform() < 0.5:
            patch = patch[:, ::-1]
        angle = rng.uniform(0.0, 360.0)
        cx, cy = rng.uniform(-0.1 * width, 1.1 * width), rng.uniform(-0.1 * height, 1.1 * height)
        _paste(canvas, np.ascontiguousarray(patch), angle=angle, scale=scale, at=(cx, cy))
    return np.clip(canvas, 0, 255).astype(np.uint8)


def _paste(canvas: np.ndarray, patch: np.ndarray, *, angle: float, scale: float, at: tuple[float, float]) -> None:
    """Alpha-composite ``patch`` rotated/scaled about its centre onto ``canvas`` centred at ``at`` (in place)."""
    ph, pw = patch.shape[:2]
    affine = cv2.getRotationMatrix2D(((pw - 1) / 2.0, (ph - 1) / 2.0), angle, scale)
    radius = 0.5 * scale * math.hypot(pw, ph) + 2
    x0, x1 = int(max(0, math.floor(at[0] - radius))), int(min(canvas.shape[1], math.ceil(at[0] + radius)))
    y0, y1 = int(max(0, math.floor(at[1] - radius))), int(min(canvas.shape[0], math.ceil(at[1] + radius)))
    if x1 <= x0 or y1 <= y0:
        return
    affine[0, 2] += at[0] - (pw - 1) / 2.0 - x0
    affine[1, 2] += at[1] - (ph - 1) / 2.0 - y0
    size = (x1 - x0, y1 - y0)
    warped = cv2.warpAffine(patch, affine, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    alpha = cv2.warpAffine(np.ones((ph, pw), np.float32), affine, size, flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)[..., None]
    region = canvas[y0:y1, x0:x1]
    region += alpha * (warped - region)
