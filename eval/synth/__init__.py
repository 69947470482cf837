"""Synthetic multi-view scenes with exactly known cameras (``python -m eval synth``).

Textured planes and boxes (collages of scikit-image's sample photos) are ray-cast with numpy/OpenCV
from pinhole cameras around the scene; images land in the IMC layout with a ``train_labels.csv``.
Camera convention: OpenCV/COLMAP (x right, y down, z forward), world-to-camera x_cam = R x + t,
pixel centre of pixel (0, 0) at (0, 0), principal point at ((W-1)/2, (H-1)/2). See ``presets.py``.
"""

from __future__ import annotations

from .cli import main
from .labels import ImageLabel, SceneLabels
from .presets import PRESETS, SynthPreset, SynthScene, get_preset
from .scene import build_scene_model, render_preset, render_scene

__all__ = ["PRESETS", "ImageLabel", "SceneLabels", "SynthPreset", "SynthScene", "build_scene_model",
           "get_preset", "main", "render_preset", "render_scene"]
