"""Photometric effects applied to rendered views: brightness/gamma jitter, blur, sensor noise.

None of them moves pixels (blur is symmetric), so the camera labels stay exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True, kw_only=True)
class Degradation:
    """Declarative per-preset ranges; each view draws its own ``PhotoEffects`` from them."""

    brightness_jitter: float = 0.0  # gain uniform in [1 - x, 1 + x]
    gamma_jitter: float = 0.0  # gamma uniform in [1 - x, 1 + x]
    blur_probability: float = 0.0  # fraction of views blurred
    blur_sigma_px: tuple[float, float] = (0.6, 1.2)  # Gaussian sigma range of a blurred view
    noise_sigma: float = 0.0  # additive Gaussian noise std, in 8-bit levels


@dataclass(frozen=True, kw_only=True)
class PhotoEffects:
    """The effects of one view (drawn once, so a view is reproducible from its seed)."""

    gain: float = 1.0
    gamma: float = 1.0
    blur_sigma_px: float = 0.0
    noise_sigma: float = 0.0
    noise_seed: int = 0


def draw_effects(spec: Degradation, rng: np.random.Generator) -> PhotoEffects:
    gain = rng.uniform(1.0 - spec.brightness_jitter, 1.0 + spec.brightness_jitter)
    gamma = rng.uniform(1.0 - spec.gamma_jitter, 1.0 + spec.gamma_jitter)
    blurred = rng.uniform() < spec.blur_probability
    sigma = rng.uniform(*spec.blur_sigma_px) if blurred else 0.0
    return PhotoEffects(gain=float(gain), gamma=float(gamma), blur_sigma_px=float(sigma),
                        noise_sigma=float(spec.noise_sigma), noise_seed=int(rng.integers(2**31)))


def apply_effects(image: np.ndarray, effects: PhotoEffects) -> np.ndarray:
    """float RGB image in [0, 255] -> uint8 with the view's effects applied."""
    out = np.asarray(image, dtype=np.float32)
    if effects.gamma != 1.0:
        out = 255.0 * np.power(np.clip(out, 0.0, 255.0) / 255.0, np.float32(effects.gamma))
    if effects.gain != 1.0:
        out = out * np.float32(effects.gain)
    if effects.blur_sigma_px > 0:
        out = cv2.GaussianBlur(out, (0, 0), effects.blur_sigma_px)
    if effects.noise_sigma > 0:
        noise = np.random.default_rng(effects.noise_seed).standard_normal(out.shape, dtype=np.float32)
        out = out + noise * np.float32(effects.noise_sigma)
    return np.clip(out + 0.5, 0.0, 255.0).astype(np.uint8)
