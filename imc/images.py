"""Robust image reading: any common format, mode, bit depth and size, or a clear error."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Huge photos (> 6000 px) are legitimate here; keep a bound so a corrupt header cannot ask for TBs.
MAX_PIXELS = 400_000_000
MIN_SIDE = 16


class ImageReadError(RuntimeError):
    """An image file is missing, unreadable, or unusable; the message says which and why."""


@dataclass(kw_only=True)
class LoadedImage:
    rgb: np.ndarray  # (H, W, 3) uint8, resized
    original_size: tuple[int, int]  # (W, H) of the file as stored
    scale: tuple[float, float]  # original / resized, per axis (x, y)


def _to_rgb8(img: Image.Image) -> np.ndarray:
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = np.percentile(arr, [0.5, 99.5]) if arr.size else (0.0, 1.0)
        arr = np.clip((arr - lo) / max(hi - lo, 1e-9), 0, 1) * 255
        gray = arr.astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (127, 127, 127, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"))
    return np.asarray(img.convert("RGB"))


def read_image(path: str | os.PathLike, *, resize_max: int | None = None, exif_transpose: bool = False) -> LoadedImage:
    """Decode ``path`` to RGB uint8, longest side at most ``resize_max`` (None: full size).

    Keypoints found on the returned pixels map back with ``x_orig = x * scale[0]``.
    EXIF orientation is ignored by default: ground-truth poses (COLMAP) refer to the stored
    pixel grid, not to the displayed orientation.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise ImageReadError(f"{path}: empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            previous = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = MAX_PIXELS
            try:
                img = Image.open(path)
                if exif_transpose:
                    img = ImageOps.exif_transpose(img)
                width, height = img.size
                if min(width, height) < MIN_SIDE:
                    raise ImageReadError(f"{path}: too small ({width}x{height} px, need >= {MIN_SIDE})")
                if resize_max and img.format == "JPEG" and max(width, height) > 2 * resize_max:
                    # Decode at 1/2, 1/4 or 1/8 scale directly: much faster for huge JPEGs.
                    longest = max(width, height)
                    img.draft("RGB", (max(1, width * resize_max // longest), max(1, height * resize_max // longest)))
                rgb = _to_rgb8(img)
            finally:
                Image.MAX_IMAGE_PIXELS = previous
    except ImageReadError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as exc:
        raise ImageReadError(f"{path}: cannot decode ({type(exc).__name__}: {exc})") from exc
    except Exception as exc:  # corrupt headers reach decoder code paths that raise anything (TypeError, ...)
        raise ImageReadError(f"{path}: cannot decode, corrupt file ({type(exc).__name__}: {exc})") from exc
    h, w = rgb.shape[:2]
    if resize_max and max(h, w) > resize_max:
        s = resize_max / max(h, w)
        new_size = (max(1, round(w * s)), max(1, round(h * s)))
        rgb = cv2.resize(rgb, new_size, interpolation=cv2.INTER_AREA)
    h2, w2 = rgb.shape[:2]
    rgb = np.require(rgb, np.uint8, ["C_CONTIGUOUS", "WRITEABLE"])  # PIL's arrays are read-only: torch warns
    return LoadedImage(rgb=rgb, original_size=(width, height), scale=(width / w2, height / h2))
