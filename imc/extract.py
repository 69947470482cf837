"""Stage 2: ALIKED keypoints and descriptors for every image of a scene → ``features-<fp>.h5``.

Resumable per image: an image already in the store with the same content hash is skipped.
An image that cannot be read gets an empty entry with an ``error`` attribute (recorded, cached,
retried only when its bytes change), so one bad file never stops the scene.
"""

from __future__ import annotations

import logging

from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from .h5io import ResumableH5, escape
from .images import ImageReadError, read_image
from .io_utils import file_sha1
from .memory import largest_first
from .scenes import Scene

log = logging.getLogger(__name__)

MISSING_SHA1 = "missing"


def image_sha1(path: Path) -> str:
    try:
        return file_sha1(path)
    except OSError:
        return MISSING_SHA1


def to_original_pixels(kpts: np.ndarray, scale: tuple[float, float]) -> np.ndarray:
    """Resized-image pixel coordinates (pixel centres at integers) → original-image ones."""
    out = np.empty_like(kpts, dtype=np.float32)
    out[:, 0] = (kpts[:, 0] + 0.5) * scale[0] - 0.5
    out[:, 1] = (kpts[:, 1] + 0.5) * scale[1] - 0.5
    return out


@torch.inference_mode()
def extract_one(model: torch.nn.Module, path: Path, conf: dict[str, Any], device: torch.device) -> dict[str, np.ndarray]:
    loaded = read_image(path, resize_max=conf["resize_max"], exif_transpose=conf.get("exif_transpose", False))
    tensor = torch.from_numpy(loaded.rgb).permute(2, 0, 1)[None].to(device=device, dtype=torch.float32) / 255.0
    feats = model(tensor)[0]
    kpts = feats.keypoints.float().cpu().numpy()
    return {
        "keypoints": to_original_pixels(kpts, loaded.scale),
        "descriptors": feats.descriptors.float().cpu().numpy(),
        "scores": feats.keypoint_scores.float().cpu().numpy(),
        "image_size": np.array(loaded.original_size, dtype=np.int64),
    }


def main(conf: dict[str, Any], scene: Scene, features_path: Path, *, load_model: Callable[[], torch.nn.Module],
         device: torch.device, sha1s: dict[str, str] | None = None, progress: bool = True) -> Path:
    """Extract features for every image of ``scene`` into ``features_path`` (resumable).

    ``load_model`` is called only when some image needs extracting: a fully cached scene loads no network.
    """
    store = ResumableH5(features_path)
    sha1s = sha1s or {p: image_sha1(scene.file(p)) for p in scene.image_paths}
    todo = []
    for image_path in scene.image_paths:
        if not store.is_current(escape(image_path), {"image_sha1": sha1s[image_path]}):
            todo.append(image_path)
    todo = largest_first(todo, scene.file, conf["resize_max"])  # heap holes fit later images: lower peak RSS
    log.info("features: %d/%d images to extract -> %s", len(todo), len(scene.image_paths), features_path.name)
    dim = None
    model = load_model() if todo else None
    for image_path in tqdm(todo, desc=f"features {scene.name}", unit="img", disable=not progress):
        try:
            arrays = extract_one(model, scene.file(image_path), conf, device)
            error = ""
            dim = arrays["descriptors"].shape[1]
        except (ImageReadError, RuntimeError, ValueError) as exc:
            # RuntimeError: e.g. a degenerate image the network cannot process; recorded, not fatal.
            log.warning("features: %s: %s", image_path, exc)
            d = dim or 128
            arrays = {"keypoints": np.zeros((0, 2), np.float32), "descriptors": np.zeros((0, d), np.float32),
                      "scores": np.zeros((0,), np.float32), "image_size": np.zeros(2, np.int64)}
            error = str(exc)
        store.put(escape(image_path), arrays, {"image_sha1": sha1s[image_path], "error": error})
    return store.finalize()


def load_all(features_path: Path, image_paths: list[str]) -> dict[str, dict[str, Any]]:
    store = ResumableH5(features_path)
    return {p: store.get(escape(p)) for p in image_paths if escape(p) in store}


__all__ = ["main", "extract_one", "load_all", "image_sha1", "to_original_pixels", "MISSING_SHA1"]
