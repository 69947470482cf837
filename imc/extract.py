"""Stage ``features``: one extractor's keypoints, descriptors and scores per image →
``features-<slug>-<fp>.h5``.

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

from .features import Extractor
from .features import get as get_extractor
from .h5io import ResumableH5, escape
from .images import ImageReadError, read_image
from .io_utils import file_sha1
from .scenes import Scene

if TYPE_CHECKING:
    from .pipeline import SceneContext

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


def upright(rgb: np.ndarray, turn: int) -> np.ndarray:
    """The stored image turned by ``turn`` degrees counter-clockwise (``np.rot90``), contiguous."""
    k = check_turn(turn) // 90
    return rgb if k == 0 else np.ascontiguousarray(np.rot90(rgb, k))


def turn_back(kpts: np.ndarray, turn: int, size: tuple[int, int]) -> np.ndarray:
    """Keypoints of ``upright(rgb, turn)`` → pixels of ``rgb`` (``size`` = its (W, H); centres at integers)."""
    k = check_turn(turn) // 90
    if k == 0:
        return kpts
    w, h = size
    x, y = kpts[:, 0], kpts[:, 1]
    xy = {1: (w - 1 - y, x), 2: (w - 1 - x, h - 1 - y), 3: (y, h - 1 - x)}[k]
    return np.stack(xy, axis=1).astype(np.float32)


def check_turn(turn: int) -> int:
    if turn not in (0, 90, 180, 270):
        raise ValueError(f"an in-plane turn must be 0, 90, 180 or 270 degrees, got {turn!r}")
    return turn


def extract_one(extractor: Extractor, model: Any, path: Path, conf: dict[str, Any], device: torch.device, *,
                exif_transpose: bool = False, turn: int = 0) -> dict[str, np.ndarray]:
    """``turn``: the image is extracted turned to upright (``imc.orient``), its keypoints are stored in
    the stored pixel grid."""
    loaded = read_image(path, resize_max=conf["resize_max"], exif_transpose=exif_transpose)
    h, w = loaded.rgb.shape[:2]
    feats = extractor.extract(model, upright(loaded.rgb, turn), conf, device)
    keypoints = turn_back(feats.keypoints, turn, (w, h))
    return {"keypoints": to_original_pixels(keypoints, loaded.scale),
            "descriptors": feats.descriptors.astype(np.float32, copy=False),
            "scores": feats.scores.astype(np.float32, copy=False),
            "image_size": np.array(loaded.original_size, dtype=np.int64)}


def main(conf: dict[str, Any], scene: Scene, features_path: Path, *, extractor: str,
         load_model: Callable[[], Any], device: torch.device, sha1s: dict[str, str] | None = None,
         exif_transpose: bool = False, turns: dict[str, int] | None = None, progress: bool = True) -> Path:
    """Extract ``extractor``'s features (``conf`` = ``features.<extractor>``) for every image of ``scene``.

    ``load_model`` is called only when some image needs extracting: a fully cached scene loads no network.
    ``turns``: image path -> its turn to upright (``imc.orient``; missing: 0), stored with each image, so a
    changed turn re-extracts that image.
    """
    turns = turns or {}
    adapter = get_extractor(extractor)
    store = ResumableH5(features_path)
    sha1s = sha1s or {p: image_sha1(scene.file(p)) for p in scene.image_paths}
    expected = {escape(p): {"image_sha1": sha1s[p], "turn": int(turns.get(p, 0))} for p in scene.image_paths}
    todo = store.pending(expected)
    log.info("features: %d/%d images to extract (%s) -> %s", len(todo), len(scene.image_paths), extractor,
             features_path.name)
    model = load_model() if todo else None
    dim = adapter.descriptor_dim(conf)
    by_key = {escape(p): p for p in scene.image_paths}
    for key in tqdm(todo, desc=f"features {extractor} {scene.name}", unit="img", disable=not progress):
        image_path = by_key[key]
        try:
            arrays = extract_one(adapter, model, scene.file(image_path), conf, device, exif_transpose=exif_transpose,
                                 turn=expected[key]["turn"])
            error = ""
        except torch.cuda.OutOfMemoryError:
            raise  # a property of the device, not of the image: never cached as the image's error
        except (ImageReadError, RuntimeError, ValueError) as exc:
            # RuntimeError: e.g. a degenerate image the network cannot process; recorded, not fatal.
            log.warning("features %s: %s: %s", extractor, image_path, exc)
            arrays = {"keypoints": np.zeros((0, 2), np.float32), "descriptors": np.zeros((0, dim), np.float32),
                      "scores": np.zeros((0,), np.float32), "image_size": np.zeros(2, np.int64)}
            error = str(exc)
        store.put(key, arrays, {**expected[key], "error": error,
                                "num_keypoints": len(arrays["keypoints"])})
    return store.finalize()


def run_stage(ctx: "SceneContext", ext: str) -> Path:
    from .orient import read_turns

    conf = ctx.conf["features"][ext]
    adapter = get_extractor(ext)
    return main(conf, ctx.scene, ctx.plan.path("features", ext), extractor=ext, device=ctx.device, sha1s=ctx.sha1s,
                load_model=lambda: ctx.networks.get(f"extractor:{ext}", conf, adapter.load),
                exif_transpose=ctx.conf["features"]["exif_transpose"], turns=read_turns(ctx.plan.path("orient")),
                progress=ctx.progress)


__all__ = ["main", "run_stage", "extract_one", "upright", "turn_back", "image_sha1", "to_original_pixels", "MISSING_SHA1"]
