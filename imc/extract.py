"""Stage ``features``: one extractor's keypoints, descriptors and scores per image →
``features-<slug>-<fp>.h5``.

Multi-resolution: ``resize_max`` may list several long edges (``[1024, 1600]``). The image is
then resized to each, in the listed order, and the extractor runs on each (``max_num_keypoints``
per size); the keypoints, mapped to original pixels, are concatenated with their descriptors and
scores, and a keypoint closer than ``MULTISCALE_MERGE_PX`` pixels of the first listed size to one
already kept is dropped (the same corner found at two sizes is one keypoint, the first size's).
Every extractor gets this here, once; its adapter only ever sees one resized image.

Resumable per image: an image already stored with the same content hash is skipped. An image
that this extractor cannot process gets an empty entry with an ``error`` attribute (recorded,
cached, retried only when its bytes change): it costs only this extractor's keypoints for that
image, never the scene.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from .features import Extractor, resize_sizes
from .features import get as get_extractor
from .fuse import fuse_keypoints
from .h5io import ResumableH5, escape
from .images import ImageReadError, read_image
from .io_utils import file_sha1
from .scenes import Scene

if TYPE_CHECKING:
    from .pipeline import SceneContext

log = logging.getLogger(__name__)

MISSING_SHA1 = "missing"
MULTISCALE_MERGE_PX = 1.0  # de-duplication radius of multi-resolution keypoints, in pixels of the first size


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


def extract_one(extractor: Extractor, model: Any, path: Path, conf: dict[str, Any], device: torch.device, *,
                exif_transpose: bool = False) -> dict[str, np.ndarray]:
    """One image's features in original pixels, at every size of ``resize_max`` (merged, see above)."""
    parts = []
    for size in resize_sizes(conf):
        loaded = read_image(path, resize_max=size, exif_transpose=exif_transpose)
        feats = extractor.extract(model, loaded.rgb, conf, device)
        parts.append({"keypoints": to_original_pixels(feats.keypoints, loaded.scale),
                      "descriptors": feats.descriptors.astype(np.float32, copy=False),
                      "scores": feats.scores.astype(np.float32, copy=False),
                      "image_size": np.array(loaded.original_size, dtype=np.int64), "scale": loaded.scale})
    if len(parts) == 1:
        out = parts[0]
    else:
        radius = MULTISCALE_MERGE_PX * max(parts[0]["scale"])
        _, _, _, new = fuse_keypoints([p["keypoints"] for p in parts], radius)
        out = {k: np.concatenate([p[k][m] for p, m in zip(parts, new)]) for k in ("keypoints", "descriptors", "scores")}
        out["image_size"] = parts[0]["image_size"]
    return {k: out[k] for k in ("keypoints", "descriptors", "scores", "image_size")}


def main(conf: dict[str, Any], scene: Scene, features_path: Path, *, extractor: str,
         load_model: Callable[[], Any], device: torch.device, sha1s: dict[str, str] | None = None,
         exif_transpose: bool = False, progress: bool = True) -> Path:
    """Extract ``extractor``'s features (``conf`` = ``features.<extractor>``) for every image of ``scene``.

    ``load_model`` is called only when some image needs extracting: a fully cached scene loads no network.
    """
    adapter = get_extractor(extractor)
    store = ResumableH5(features_path)
    sha1s = sha1s or {p: image_sha1(scene.file(p)) for p in scene.image_paths}
    todo = store.pending({escape(p): {"image_sha1": sha1s[p]} for p in scene.image_paths})
    log.info("features: %d/%d images to extract (%s) -> %s", len(todo), len(scene.image_paths), extractor,
             features_path.name)
    model = load_model() if todo else None
    dim = adapter.descriptor_dim(conf)
    by_key = {escape(p): p for p in scene.image_paths}
    for key in tqdm(todo, desc=f"features {extractor} {scene.name}", unit="img", disable=not progress):
        image_path = by_key[key]
        try:
            arrays = extract_one(adapter, model, scene.file(image_path), conf, device, exif_transpose=exif_transpose)
            error = ""
        except torch.cuda.OutOfMemoryError:
            raise  # a property of the device, not of the image: never cached as the image's error
        except (ImageReadError, RuntimeError, ValueError) as exc:
            # RuntimeError: e.g. a degenerate image the network cannot process; recorded, not fatal.
            log.warning("features %s: %s: %s", extractor, image_path, exc)
            arrays = {"keypoints": np.zeros((0, 2), np.float32), "descriptors": np.zeros((0, dim), np.float32),
                      "scores": np.zeros((0,), np.float32), "image_size": np.zeros(2, np.int64)}
            error = str(exc)
        store.put(key, arrays, {"image_sha1": sha1s[image_path], "error": error,
                                "num_keypoints": len(arrays["keypoints"])})
    return store.finalize()


def run_stage(ctx: "SceneContext", ext: str) -> Path:
    conf = ctx.conf["features"][ext]
    adapter = get_extractor(ext)
    return main(conf, ctx.scene, ctx.plan.path("features", ext), extractor=ext, device=ctx.device, sha1s=ctx.sha1s,
                load_model=lambda: ctx.networks.get(f"extractor:{ext}", conf, adapter.load),
                exif_transpose=ctx.conf["features"]["exif_transpose"], progress=ctx.progress)


__all__ = ["main", "run_stage", "extract_one", "image_sha1", "to_original_pixels", "MISSING_SHA1"]
