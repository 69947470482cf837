"""Cameras for the mapper: EXIF focal priors and camera grouping (``cameras.mode``, ``cameras.exif_prior``).

- ``exif_prior: true``: ``FocalLengthIn35mmFilm`` (f35) gives ``f_px = f35 / 43.27 * hypot(W, H)`` (the 35 mm
  equivalent refers to the full-frame diagonal) with ``has_prior_focal_length``; a missing, zero or
  implausible value (outside 8-400 mm, or a focal outside 0.3-5 × max(W, H)) falls back to
  ``focal_prior_factor × max(W, H)`` and the reason is returned.
- ``mode``: ``per_image`` (one camera per image), ``single`` (one camera for the scene, when all images
  share one size), ``exif`` (images sharing EXIF make, model, focal and size share one camera).
  Crops break ``exif``: on kyiv, images with identical EXIF have GT focals of 1170 and 2350 px. So ``auto``
  confirms the EXIF groups by the data: a first pass maps with per-image cameras, then images of one EXIF
  group share a camera only when their refined focals agree within ``focal_tolerance`` (relative),
  starting from the group's median refined focal; images the first pass left out keep their own camera. A part
  whose focals span more than ``focal_spread`` is not one camera (a zoom): its images keep their own; an image
  whose refined focal is implausible (outside 0.3-5 × max(W, H)) joins its group if that stays one part.
  With ``group_without_exif`` (``accurate.yaml``), images without EXIF form one such group per image size
  (Middlebury temple, 16 views of one camera: 0.751 -> 0.922 with ``accurate.yaml``); off by default: size alone
  cannot tell a zoom (the demo scenes' focals of 590-620 px shared one camera: a 4-view subset 1.0 -> 0.47).
  A group without EXIF whose first pass left at least ``unstable_fraction`` of its focals outside COLMAP's own
  sanity bounds (0.1-10 x max(W, H), negative included) is not measured by it at all: a narrow field of view
  (Middlebury dino, GT focal 5.2 x the long edge) leaves per-image focals free. Such a group shares one
  ``SIMPLE_PINHOLE`` camera (the distortion is as free as the focal), starting from the median of its sane
  first-pass focals; the grouped mapping is still kept only if it registers as many images as the first pass.
"""

from __future__ import annotations

import enum
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pycolmap
from PIL import ExifTags, Image

FULL_FRAME_DIAGONAL_MM = 43.27
log = logging.getLogger(__name__)

NO_EXIF = "no-exif|"  # the group key prefix of images without EXIF (auto: grouped by size)
UNSTABLE = "#unstable"  # the suffix of a group without EXIF whose first-pass focals scattered (one pinhole camera)


class CameraMode(str, enum.Enum):
    PER_IMAGE = "per_image"
    SINGLE = "single"
    EXIF = "exif"
    AUTO = "auto"


@dataclass(kw_only=True, frozen=True)
class ExifInfo:
    make: str = ""
    model: str = ""
    focal_mm: float | None = None
    focal_35mm: float | None = None


@dataclass(kw_only=True, frozen=True)
class CameraPrior:
    focal_px: float
    from_exif: bool
    note: str  # why the EXIF prior was or was not used


def read_exif(path: Path) -> ExifInfo:
    """Make, model and focal tags of an image; empty when the file has none or cannot be read."""
    try:
        with Image.open(path) as im:
            ex = im.getexif()
            tags = {**dict(ex), **dict(ex.get_ifd(0x8769))}
    except Exception:  # unreadable or no EXIF: the default prior applies
        return ExifInfo()
    named = {ExifTags.TAGS.get(k, k): v for k, v in tags.items()}

    def num(v: Any) -> float | None:
        try:
            x = float(v)
        except (TypeError, ValueError, ZeroDivisionError):
            return None
        return x if math.isfinite(x) else None

    return ExifInfo(make=str(named.get("Make", "")).strip("\x00 "), model=str(named.get("Model", "")).strip("\x00 "),
                    focal_mm=num(named.get("FocalLength")), focal_35mm=num(named.get("FocalLengthIn35mmFilm")))


def camera_prior(exif: ExifInfo, image_size: np.ndarray, *, focal_prior_factor: float, use_exif: bool) -> CameraPrior:
    w, h = float(image_size[0]), float(image_size[1])
    default = focal_prior_factor * max(w, h)
    if not use_exif:
        return CameraPrior(focal_px=default, from_exif=False, note="exif prior off")
    f35 = exif.focal_35mm
    if f35 is None or f35 <= 0:
        return CameraPrior(focal_px=default, from_exif=False, note="no FocalLengthIn35mmFilm: default prior")
    if not 8 <= f35 <= 400:
        return CameraPrior(focal_px=default, from_exif=False, note=f"implausible FocalLengthIn35mmFilm {f35}: default prior")
    f = f35 / FULL_FRAME_DIAGONAL_MM * math.hypot(w, h)
    if not plausible_focal(f, image_size):
        return CameraPrior(focal_px=default, from_exif=False, note=f"EXIF focal {f:.0f} px implausible: default prior")
    return CameraPrior(focal_px=f, from_exif=True, note=f"FocalLengthIn35mmFilm {f35:g} mm")


def group_key(mode: CameraMode, name: str, exif: ExifInfo, image_size: np.ndarray, *,
              group_without_exif: bool = True) -> str:
    size = f"{int(image_size[0])}x{int(image_size[1])}"
    if mode is CameraMode.PER_IMAGE:
        return name
    if mode is CameraMode.SINGLE:
        return size
    if not exif.make and not exif.model and exif.focal_mm is None:
        # no EXIF: nothing to group by, except in auto, whose first pass confirms a group of one size
        return f"{NO_EXIF}{size}" if mode is CameraMode.AUTO and group_without_exif else name
    return f"{exif.make}|{exif.model}|{exif.focal_mm}|{exif.focal_35mm}|{size}"


def plausible_focal(focal: float, image_size: np.ndarray) -> bool:
    """The range an EXIF prior must fall in (0.3-5 x the long edge), also applied to refined focals."""
    return 0.3 * float(max(image_size)) <= focal <= 5 * float(max(image_size))


def sane_focal(focal: float, image_size: np.ndarray) -> bool:
    """COLMAP's bogus-camera bounds (``min/max_focal_length_ratio``: 0.1-10 x the long edge); a refined focal
    outside them was not measured by the data."""
    return 0.1 * float(max(image_size)) <= focal <= 10 * float(max(image_size))


def unstable_groups(groups: dict[str, str], focals: dict[str, float], image_sizes: dict[str, np.ndarray],
                    fraction: float) -> dict[str, tuple[int, int]]:
    """Groups without EXIF with at least ``fraction`` of their first-pass focals outside the sane bounds (at
    least two such images): Middlebury dino's first pass refined focals of -1144 to 1.1e6 px (GT 3310). Also a
    group of 3+ images whose focals are one value outside the plausible range: the shared camera such a group got
    in the previous pass (the remap after the checks starts from those focals). Returns key -> (first-pass
    focals outside the sane bounds, first-pass focals)."""
    out: dict[str, tuple[int, int]] = {}
    by_group: dict[str, list[str]] = {}
    for name, key in groups.items():
        if key.startswith(NO_EXIF) and name in focals and name in image_sizes:
            by_group.setdefault(key, []).append(name)
    for key, members in by_group.items():
        bad = sum(not sane_focal(focals[n], image_sizes[n]) for n in members)
        values = [focals[n] for n in members]
        shared = len(members) >= 3 and min(values) > 0 and max(values) <= (1 + 1e-9) * min(values)
        if (bad >= 2 and bad >= fraction * len(members)) or (
                shared and not plausible_focal(values[0], image_sizes[members[0]])):
            out[key] = (bad, len(members))
    return out


def confirm_groups(groups: dict[str, str], focals: dict[str, float], tolerance: float, *,
                   max_spread: float = math.inf, failed: frozenset[str] | set[str] = frozenset(),
                   joined: set[str] | None = None, unstable: frozenset[str] | set[str] = frozenset()) -> dict[str, str]:
    """Split each group where its sorted refined focals jump by more than ``tolerance``. A part whose focals
    span more than ``max_spread`` (relative) drifts like a zoom, not one camera: its images keep their own
    (synthetic scenes with focals 450-800 px chained into one group by gaps under 10 %). Images in ``failed``
    (a refined focal outside the plausible range) join their group when its other images share one camera, and so
    does a lone image off the rest of a group without EXIF (size alone says nothing of a zoom; Middlebury temple's
    first pass put one view at 944 px against 1485-1831 for the 15 others); otherwise they and images without a
    refined focal get a camera of their own (an EXIF group keeps a lone crop apart: kyiv). A group without EXIF
    shares a camera only as one part of 3 or more images and at most one stray; otherwise each image keeps its
    own. The names of the images that joined so are added to ``joined`` (their focal does not enter the group's
    starting focal). Every image of a group in ``unstable`` (see :func:`unstable_groups`) shares one camera."""
    out: dict[str, str] = {}
    by_group: dict[str, list[str]] = {}
    for name, key in groups.items():
        if key in unstable:
            out[name] = f"{key}{UNSTABLE}"
        elif name in focals and name not in failed:
            by_group.setdefault(key, []).append(name)
        else:
            out[name] = name
    for key, members in by_group.items():
        members.sort(key=lambda n: focals[n])
        parts: list[list[str]] = []
        for prev, name in zip([None] + members[:-1], members):
            if prev is None or focals[name] > (1 + tolerance) * focals[prev]:
                parts.append([])
            parts[-1].append(name)
        for k, part in enumerate(parts):
            spread = focals[part[-1]] / focals[part[0]] - 1
            for name in part:
                out[name] = f"{key}#{k}" if spread <= max_spread else name
        shared = [k for k, part in enumerate(parts) if len(part) > 1 and out[part[0]] != part[0]]
        strays = [part[0] for part in parts if len(part) == 1]
        one_camera = len(shared) == 1 and len(parts[shared[0]]) >= 3 and len(shared) + len(strays) == len(parts)
        if key.startswith(NO_EXIF) and not (one_camera and len(strays) <= 1):
            # size alone: share only one clear camera. Several clusters are a zoom, not crops of one lens
            # (synth `hard`, focals 450-800 px: first-pass clusters of 9, 6, 3 and 2 views shared a camera, 0.68)
            for name in members:
                out[name] = name
            continue
        if one_camera:
            # one camera confirmed; a failed focal joins it, and so does a lone stray without EXIF: with nothing
            # but the image size to group by, one view off the rest is a badly constrained first pass
            # (temple: 944 px against 1485-1831 for the 15 others, GT 1520), not another camera
            joiners = [n for n in failed if groups.get(n) == key]
            if key.startswith(NO_EXIF):
                joiners += strays
            for name in joiners:
                out[name] = f"{key}#{shared[0]}"
                if joined is not None:
                    joined.add(name)
    return out


def make_cameras(names: list[str], image_sizes: dict[str, np.ndarray], image_root: Path, conf: dict[str, Any], *,
                 refined_focals: dict[str, float] | None = None
                 ) -> tuple[dict[str, pycolmap.Camera], dict[str, str], dict[str, CameraPrior]]:
    """(camera per image — images of one group share the same object —, group key per image, prior per image).
    ``refined_focals`` (``auto``, second pass): confirm the EXIF groups and start from their median focal."""
    mode = CameraMode(conf["mode"])
    if mode is CameraMode.AUTO and refined_focals is None:
        mode = CameraMode.PER_IMAGE  # the first pass
    use_exif = bool(conf["exif_prior"])
    need_exif = use_exif or mode in (CameraMode.EXIF, CameraMode.AUTO)
    cameras: dict[str, pycolmap.Camera] = {}
    groups: dict[str, str] = {}
    priors: dict[str, CameraPrior] = {}
    by_group: dict[str, pycolmap.Camera] = {}
    exifs = {name: read_exif(image_root / name) if need_exif else ExifInfo() for name in names}
    keys = {name: group_key(mode, name, exifs[name], image_sizes[name],
                            group_without_exif=bool(conf["group_without_exif"])) for name in names}
    off_focal: set[str] = set()  # failed or joined first-pass focals: not part of a group's starting focal
    if mode is CameraMode.AUTO:
        focals = refined_focals or {}
        off_focal = {n for n, f in focals.items() if n in image_sizes and not plausible_focal(f, image_sizes[n])}
        unstable = unstable_groups(keys, focals, image_sizes, float(conf["unstable_fraction"]))
        for key, (bad, total) in sorted(unstable.items()):
            log.info("cameras auto: %s: first-pass focals outside 0.1-10 x the long edge for %d of %d images: "
                     "one shared camera", key, bad, total)
        keys = confirm_groups(keys, focals, float(conf["focal_tolerance"]), max_spread=float(conf["focal_spread"]),
                              failed=frozenset(off_focal), joined=off_focal, unstable=set(unstable))
        # an unstable group starts from its sane focals (a narrow field of view has few plausible ones)
        off_focal = {n for n in off_focal if not keys[n].endswith(UNSTABLE)}
        off_focal |= {n for n, f in focals.items() if n in image_sizes and not sane_focal(f, image_sizes[n])}
    for name in names:
        exif = exifs[name]
        prior = camera_prior(exif, image_sizes[name], focal_prior_factor=conf["focal_prior_factor"], use_exif=use_exif)
        key = keys[name]
        if key not in by_group:
            w, h = int(image_sizes[name][0]), int(image_sizes[name][1])
            focal = prior.focal_px
            if mode is CameraMode.AUTO and refined_focals:
                group = [refined_focals[n] for n in names if keys[n] == key and n in refined_focals
                         and n not in off_focal]
                focal = float(np.median(group)) if group else focal
            # an unstable group's distortion is as free as its focal: none (dino: 4 of 16 views registered with
            # k refined, 16 without)
            model = "SIMPLE_PINHOLE" if key.endswith(UNSTABLE) else conf["model"]
            cam = pycolmap.Camera.create_from_model_name(0, model, focal, w, h)
            cam.has_prior_focal_length = prior.from_exif
            by_group[key] = cam
        cameras[name], groups[name], priors[name] = by_group[key], key, prior
    return cameras, groups, priors
