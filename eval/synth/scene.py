"""Build a synthetic scene (geometry, textures, cameras, effects) from a preset and seed, render it
in the IMC layout ``<out>/<dataset>/<scene>/images/*.jpg`` and merge its labels into
``<out>/train_labels.csv``. Same preset + seed -> same bytes.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from imc.io_utils import atomic_path

from .cameras import CameraDraw, sample_cameras
from .effects import PhotoEffects, apply_effects, draw_effects
from .labels import ImageLabel, SceneLabels, merge_labels
from .layouts import LAYOUTS, Quad
from .presets import ImageFormat, SynthPreset, get_preset
from .render import RenderResult, TexturedQuad, render_view
from .textures import CollageStyle, collage_texture

GENERATOR_VERSION = 1
SUN_DIRECTION = np.array([0.45, -0.55, 0.70]) / np.linalg.norm([0.45, -0.55, 0.70])


class ImageEncodeError(RuntimeError):
    """OpenCV refused to encode a rendered view."""


@dataclass(frozen=True, kw_only=True, eq=False)
class SyntheticView:
    name: str  # file name inside images/
    draw: CameraDraw
    effects: PhotoEffects


@dataclass(frozen=True, kw_only=True, eq=False)
class SceneModel:
    """Everything needed to render a scene's views, before any pixel is written."""

    preset: SynthPreset
    seed: int
    dataset: str
    scene: str
    quads: tuple[TexturedQuad, ...]
    views: tuple[SyntheticView, ...]


def _scene_seeds(seed: int, dataset: str, scene: str) -> list[np.random.SeedSequence]:
    """Independent streams for layout, textures, cameras and effects of one scene."""
    key = zlib.crc32(f"{dataset}/{scene}".encode())
    return np.random.SeedSequence([int(seed), key]).spawn(4)


def _lit_texture(quad: Quad, rng: np.random.Generator, style: CollageStyle) -> np.ndarray:
    """Collage texture darkened by a fixed sun (Lambert + ambient), so faces of a box differ."""
    width, height = quad.texture_size
    texture = collage_texture(width, height, rng, style=style)
    shade = 0.6 + 0.4 * max(0.0, float(quad.normal @ SUN_DIRECTION))
    return cv2.convertScaleAbs(texture, alpha=shade)


def build_scene_model(preset: SynthPreset | str, seed: int, scene: str | None = None) -> SceneModel:
    """The scene ``scene`` of ``preset`` (default: its first scene), drawn from ``seed``."""
    preset = get_preset(preset) if isinstance(preset, str) else preset
    spec = preset.scene(scene) if scene is not None else preset.scenes[0]
    layout_ss, texture_ss, camera_ss, effects_ss = _scene_seeds(seed, preset.dataset, spec.name)
    geometry = LAYOUTS[spec.layout](np.random.default_rng(layout_ss))
    texture_rng = np.random.default_rng(texture_ss)
    scale = preset.texture_scale
    style = dataclasses.replace(preset.texture, patch_px=tuple(p * scale for p in preset.texture.patch_px))
    scaled = [dataclasses.replace(q, px_per_m=q.px_per_m * scale) for q in geometry.quads]
    quads = tuple(TexturedQuad.build(q, _lit_texture(q, texture_rng, style)) for q in scaled)
    draws = sample_cameras(preset.camera, target=geometry.target, spread_m=geometry.spread_m,
                           facing_azimuth_deg=geometry.facing_azimuth_deg, rng=np.random.default_rng(camera_ss))
    effects_rng = np.random.default_rng(effects_ss)
    ext = preset.image_format.value
    views = tuple(
        SyntheticView(name=f"view_{i:03d}.{ext}", draw=draw, effects=draw_effects(preset.effects, effects_rng))
        for i, draw in enumerate(draws)
    )
    return SceneModel(preset=preset, seed=seed, dataset=preset.dataset, scene=spec.name, quads=quads, views=views)


def render_synthetic_view(model: SceneModel, view: SyntheticView) -> tuple[np.ndarray, RenderResult]:
    """(uint8 RGB image with effects, raw render with depth) of one view, in its final orientation."""
    result = render_view(model.quads, view.draw.upright, view.draw.quarter_turns, supersample=model.preset.supersample)
    return apply_effects(result.image, view.effects), result


def encode_image(image_rgb: np.ndarray, image_format: ImageFormat, jpeg_quality: int) -> bytes:
    bgr = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR)
    if image_format is ImageFormat.JPG:
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
    else:
        ok, buf = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 6])
    if not ok:
        raise ImageEncodeError(f"OpenCV could not encode a {image_format.value} image of shape {image_rgb.shape}")
    return buf.tobytes()


def _jsonable(obj):
    if dataclasses.is_dataclass(obj):
        return {f.name: _jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, (tuple, list)):
        return [_jsonable(v) for v in obj]
    return obj


def render_scene(preset: SynthPreset | str, seed: int, out_dir: str | os.PathLike, *, scene: str | None = None,
                 progress: bool = False) -> SceneLabels:
    """Render one scene of ``preset`` into ``out_dir`` (replacing that scene atomically) and merge its
    rows into ``out_dir/train_labels.csv``. Returns the exact labels."""
    model = build_scene_model(preset, seed, scene)
    root = Path(out_dir)
    scene_dir = root / model.dataset / model.scene
    labels = []
    with atomic_path(scene_dir) as tmp:
        (tmp / "images").mkdir(parents=True)
        views = model.views
        if progress:
            from tqdm import tqdm

            views = tqdm(views, desc=f"{model.dataset}/{model.scene}", unit="img")
        for view in views:
            image, _ = render_synthetic_view(model, view)
            data = encode_image(image, model.preset.image_format, model.preset.jpeg_quality)
            (tmp / "images" / view.name).write_bytes(data)
            image_path = f"{model.dataset}/{model.scene}/images/{view.name}"
            labels.append(ImageLabel(image_path=image_path, camera=view.draw.final))
        meta = {"generator": "eval.synth", "version": GENERATOR_VERSION, "seed": seed,
                "preset": _jsonable(model.preset), "scene": model.scene}
        (tmp / "synth.json").write_text(json.dumps(meta, indent=2) + "\n")
    scene_labels = SceneLabels(dataset=model.dataset, scene=model.scene, root=root, images=tuple(labels))
    merge_labels(root, [scene_labels])
    return scene_labels


def render_preset(preset: SynthPreset | str, seed: int, out_dir: str | os.PathLike, *,
                  progress: bool = False) -> list[SceneLabels]:
    """Render every scene of ``preset``."""
    preset = get_preset(preset) if isinstance(preset, str) else preset
    return [render_scene(preset, seed, out_dir, scene=s.name, progress=progress) for s in preset.scenes]
