"""Synthetic-scene presets, easy to hard, as data: ``PRESETS[name] -> SynthPreset``."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .cameras import CameraPath, CameraRig
from .effects import Degradation
from .layouts import Layout
from .textures import CollageStyle


class UnknownPresetError(KeyError):
    """No preset of that name."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else super().__str__()


class ImageFormat(enum.Enum):
    JPG = "jpg"
    PNG = "png"


@dataclass(frozen=True, kw_only=True)
class SynthScene:
    """One scene of a preset: its directory name and its geometry layout."""

    name: str
    layout: Layout


@dataclass(frozen=True, kw_only=True)
class SynthPreset:
    name: str
    description: str
    scenes: tuple[SynthScene, ...]
    camera: CameraRig
    effects: Degradation = Degradation()
    dataset: str = "synth"
    image_format: ImageFormat = ImageFormat.JPG
    jpeg_quality: int = 95
    supersample: int = 2
    texture: CollageStyle = CollageStyle()  # lower coverage: more of the plain, weakly textured base shows
    texture_scale: float = 1.0  # multiplies every surface's texels per metre (and collage patch sizes)

    def scene(self, name: str) -> SynthScene:
        for scene in self.scenes:
            if scene.name == name:
                return scene
        known = ", ".join(s.name for s in self.scenes)
        raise UnknownPresetError(f"preset {self.name!r} has no scene {name!r} (scenes: {known})")


def _both_layouts(prefix: str) -> tuple[SynthScene, ...]:
    layouts = (Layout.BOXES, Layout.COURTYARD)
    return tuple(SynthScene(name=f"{prefix}-{layout.value}", layout=layout) for layout in layouts)


PRESETS: dict[str, SynthPreset] = {
    "easy": SynthPreset(
        name="easy",
        description="10 views over a 30 deg arc, fixed focal, all looking at the centre, clean images",
        scenes=_both_layouts("easy"),
        camera=CameraRig(n_images=10, arc_deg=30.0, elevation_deg=(20.0, 26.0), distance_m=(4.8, 5.4),
                         overlap=0.95, focal_px=(600.0, 600.0)),
        effects=Degradation(brightness_jitter=0.05),
    ),
    "medium": SynthPreset(
        name="medium",
        description="16 views over a 75 deg arc, varying focal and distance, mild roll, noise and some blur",
        scenes=_both_layouts("medium"),
        camera=CameraRig(n_images=16, arc_deg=75.0, elevation_deg=(15.0, 35.0), distance_m=(4.0, 6.5),
                         overlap=0.85, focal_px=(520.0, 700.0), roll_jitter_deg=5.0),
        effects=Degradation(brightness_jitter=0.15, gamma_jitter=0.1, blur_probability=0.2,
                            blur_sigma_px=(0.5, 1.0), noise_sigma=2.0),
    ),
    "hard": SynthPreset(
        name="hard",
        description="20 views over a 180 deg arc, 3-8.5 m, low overlap, sparser texture, "
        "30% turned by 90/180/270 deg, noise, blur, exposure changes",
        scenes=_both_layouts("hard"),
        camera=CameraRig(n_images=20, arc_deg=180.0, elevation_deg=(10.0, 45.0), distance_m=(3.0, 8.5),
                         overlap=0.5, focal_px=(450.0, 800.0), roll_jitter_deg=10.0, quarter_turn_fraction=0.3),
        effects=Degradation(brightness_jitter=0.3, gamma_jitter=0.25, blur_probability=0.35,
                            blur_sigma_px=(0.8, 2.0), noise_sigma=5.0),
        texture=CollageStyle(coverage=1.2),
    ),
    "large": SynthPreset(
        name="large",
        description="150 views at 480x360 around a courtyard (memory and scaling measurements)",
        scenes=(SynthScene(name="large-courtyard", layout=Layout.COURTYARD),),
        camera=CameraRig(n_images=150, width=480, height=360, path=CameraPath.ARC, arc_deg=200.0,
                         elevation_deg=(12.0, 40.0), distance_m=(3.5, 7.0), overlap=0.8,
                         focal_px=(380.0, 480.0), roll_jitter_deg=3.0),
        effects=Degradation(brightness_jitter=0.1, noise_sigma=1.5),
        jpeg_quality=90,
        texture_scale=0.75,
    ),
    "mixed": SynthPreset(
        name="mixed",
        description="IMC 2025 style: 2 scenes x 10 views + 5 outlier views (each its own scene) in ONE "
        "dataset folder <out>/mixed-synth/*.png, labels with scene=outliers (see eval/synth/mixed.py)",
        dataset="mixed-synth",
        scenes=(SynthScene(name="boxes", layout=Layout.BOXES), SynthScene(name="courtyard", layout=Layout.COURTYARD)),
        camera=CameraRig(n_images=10, width=480, height=360, arc_deg=40.0, elevation_deg=(18.0, 28.0),
                         distance_m=(4.5, 5.5), overlap=0.95, focal_px=(450.0, 480.0)),
        effects=Degradation(brightness_jitter=0.05),
        image_format=ImageFormat.PNG,
    ),
    "pairs": SynthPreset(
        name="pairs",
        description="views that overlap only in disjoint pairs: 3 pairs of views 6 deg apart, the pairs 120 deg "
        "from each other (the boxes scene gives no matches beyond ~120 deg): no three images form a model",
        scenes=(SynthScene(name="pairs-boxes", layout=Layout.BOXES),),
        camera=CameraRig(n_images=6, path=CameraPath.GROUPS,
                         groups=((-123.0, -117.0, 2), (-3.0, 3.0, 2), (117.0, 123.0, 2)),
                         elevation_deg=(18.0, 30.0), distance_m=(4.5, 5.5), overlap=1.0, focal_px=(560.0, 620.0)),
        effects=Degradation(brightness_jitter=0.1, noise_sigma=1.0),
    ),
    "split": SynthPreset(
        name="split",
        description="two clusters of 6 views 180 deg apart (nothing in common) and two bridging views 90 deg from "
        "both, on opposite sides: built to map as two models that share the bridges",
        scenes=(SynthScene(name="split-boxes", layout=Layout.BOXES),),
        camera=CameraRig(n_images=14, path=CameraPath.GROUPS,
                         groups=((-105.0, -75.0, 6), (0.0, 0.0, 1), (75.0, 105.0, 6), (180.0, 180.0, 1)),
                         elevation_deg=(18.0, 30.0), distance_m=(4.5, 5.5), overlap=1.0, focal_px=(560.0, 620.0)),
        effects=Degradation(brightness_jitter=0.1, noise_sigma=1.0),
    ),
    "demo": SynthPreset(
        name="demo",
        description="the shipped demo data (imc/demo_data): 2 scenes x 9 views at 640x480, easy-to-medium",
        dataset="demo",
        scenes=(SynthScene(name="boxes", layout=Layout.BOXES), SynthScene(name="courtyard", layout=Layout.COURTYARD)),
        camera=CameraRig(n_images=9, arc_deg=45.0, elevation_deg=(18.0, 30.0), distance_m=(4.5, 6.0),
                         overlap=0.9, focal_px=(560.0, 640.0), roll_jitter_deg=2.0),
        effects=Degradation(brightness_jitter=0.1, noise_sigma=1.0),
        jpeg_quality=88,  # keeps the shipped demo data under 2 MB
    ),
}


def get_preset(name: str) -> SynthPreset:
    if name not in PRESETS:
        raise UnknownPresetError(f"unknown synth preset {name!r}; known: {', '.join(PRESETS)}")
    return PRESETS[name]
