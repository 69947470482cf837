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

A CUDA out-of-memory error is a property of the device, not of the image: the image is retried at
``resize_max`` x each of ``runtime.oom_retry_scales``, then on the CPU, and never cached as an error
(the item records ``oom_fallback``). Images are decoded ahead in a background thread
(``runtime.prefetch_images``). Under a time budget the stage checks its clock after every image
(:class:`imc.budget.StageClock`): it asks for the scene's fallback settings, or stops, leaving the
images not extracted to a later run.
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
from .images import ImageReadError, LoadedImage, read_image
from .io_utils import file_sha1
from .loader import prefetch
from .memory import largest_first
from .scenes import Scene

if TYPE_CHECKING:
    from .budget import StageClock
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


def read_sizes(path: Path, conf: dict[str, Any], *, exif_transpose: bool, scale: float = 1.0) -> list[LoadedImage]:
    """The image at every size of ``resize_max`` (times ``scale``: the out-of-memory retry)."""
    return [read_image(path, resize_max=max(32, int(size * scale)), exif_transpose=exif_transpose)
            for size in resize_sizes(conf)]


def features_of(extractor: Extractor, model: Any, loaded: list[LoadedImage], conf: dict[str, Any],
                device: torch.device, *, turn: int = 0) -> dict[str, np.ndarray]:
    """One image's features in original pixels from its copies at each size (merged, see above); ``turn``:
    extracted turned to upright (``imc.orient``), keypoints given in the stored pixel grid."""
    parts = []
    for image in loaded:
        h, w = image.rgb.shape[:2]
        feats = extractor.extract(model, upright(image.rgb, turn), conf, device)
        parts.append({"keypoints": to_original_pixels(turn_back(feats.keypoints, turn, (w, h)), image.scale),
                      "descriptors": feats.descriptors.astype(np.float32, copy=False),
                      "scores": feats.scores.astype(np.float32, copy=False)})
    size = np.array(loaded[0].original_size, dtype=np.int64)
    if len(parts) == 1:
        return {**parts[0], "image_size": size}
    radius = MULTISCALE_MERGE_PX * max(loaded[0].scale)
    _, _, _, new = fuse_keypoints([p["keypoints"] for p in parts], radius)
    out = {k: np.concatenate([p[k][m] for p, m in zip(parts, new)]) for k in ("keypoints", "descriptors", "scores")}
    return {**out, "image_size": size}


def extract_one(extractor: Extractor, model: Any, path: Path, conf: dict[str, Any], device: torch.device, *,
                exif_transpose: bool = False, turn: int = 0) -> dict[str, np.ndarray]:
    return features_of(extractor, model, read_sizes(path, conf, exif_transpose=exif_transpose), conf, device,
                       turn=turn)


def _free_cuda() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def extract_with_oom_fallback(extractor: Extractor, model_on: Callable[[torch.device], Any], loaded: list[LoadedImage],
                              path: Path, conf: dict[str, Any], device: torch.device, *, exif_transpose: bool,
                              retry_scales: list[float], turn: int = 0) -> tuple[dict[str, np.ndarray], str]:
    """Features of one image; after a CUDA out-of-memory error, again at ``resize_max`` x each scale, then on
    the CPU at full size. Returns the arrays and what it fell back to ("" when nothing)."""
    attempts: list[tuple[str, float, torch.device]] = [("", 1.0, device)]
    attempts += [("resize_max=" + "+".join(str(max(32, int(size * s))) for size in resize_sizes(conf)), s, device)
                 for s in retry_scales]
    cpu = torch.device("cpu")
    attempts.append(("cpu", 1.0, cpu))
    for i, (note, scale, dev) in enumerate(attempts):
        try:
            if i > 0:
                loaded = read_sizes(path, conf, exif_transpose=exif_transpose, scale=scale)
            return features_of(extractor, model_on(dev), loaded, conf, dev, turn=turn), note
        except torch.cuda.OutOfMemoryError as exc:
            _free_cuda()
            if i == len(attempts) - 1:
                raise
            log.warning("features: %s: CUDA out of memory (%s); retrying with %s", path.name, str(exc).split("\n")[0],
                        attempts[i + 1][0])
    raise AssertionError("unreachable")


def main(conf: dict[str, Any], scene: Scene, features_path: Path, *, extractor: str,
         load_model: Callable[[torch.device], Any], device: torch.device, sha1s: dict[str, str] | None = None,
         exif_transpose: bool = False, progress: bool = True, prefetch_images: int = 0,
         oom_retry_scales: list[float] | None = None, clock: "StageClock | None" = None,
         turns: dict[str, int] | None = None) -> Path:
    """Extract ``extractor``'s features (``conf`` = ``features.<extractor>``) for every image of ``scene``.

    ``load_model(device)`` is called only when some image needs extracting: a fully cached scene loads no
    network. ``clock``: the stage's time allowance (raises :class:`imc.budget.FallBack`, or stops early and
    records it in ``clock.cut``). ``turns``: image path -> its turn to upright (``imc.orient``; missing: 0),
    stored with each image, so a changed turn re-extracts that image.
    """
    turns = turns or {}
    adapter = get_extractor(extractor)
    store = ResumableH5(features_path)
    sha1s = sha1s or {p: image_sha1(scene.file(p)) for p in scene.image_paths}
    by_key = {escape(p): p for p in scene.image_paths}
    turns = turns or {}
    expected = {escape(p): {"image_sha1": sha1s[p], "turn": int(turns.get(p, 0))} for p in scene.image_paths}
    todo = store.pending(expected)
    # largest image first: the holes its buffers leave in the heap fit the later ones (lower peak RSS)
    todo = [escape(p) for p in largest_first([by_key[k] for k in todo], scene.file, max(resize_sizes(conf)))]
    log.info("features: %d/%d images to extract (%s) -> %s", len(todo), len(scene.image_paths), extractor,
             features_path.name)
    model_on = load_model  # one model per device, loaded on first use (imc.networks.Networks caches it)
    if todo:
        model_on(device)
    dim = adapter.descriptor_dim(conf)
    read = lambda key: read_sizes(scene.file(by_key[key]), conf, exif_transpose=exif_transpose)  # noqa: E731
    bar = tqdm(total=len(todo), desc=f"features {extractor} {scene.name}", unit="img", disable=not progress)
    for done, (key, loaded) in enumerate(prefetch(read, todo, prefetch_images)):
        if clock is not None and clock.check(done, len(todo)):
            clock.cut = f"{done}/{len(todo)} images extracted in {clock.elapsed():.1f} s, its share of the scene's cap"
            log.warning("features %s: time share used up: %s; the rest is left to a later run", extractor, clock.cut)
            break
        image_path = by_key[key]
        oom_note = ""
        try:
            arrays, oom_note = extract_with_oom_fallback(adapter, model_on, loaded(), scene.file(image_path), conf,
                                                         device, exif_transpose=exif_transpose,
                                                         retry_scales=list(oom_retry_scales or []),
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
        attrs = {**expected[key], "error": error, "num_keypoints": len(arrays["keypoints"])}
        if oom_note:
            attrs["oom_fallback"] = oom_note
        store.put(key, arrays, attrs)
        bar.update(1)
    bar.close()
    return store.finalize()


def run_stage(ctx: "SceneContext", ext: str) -> Path:
    from .orient import read_turns

    conf = ctx.conf["features"][ext]
    adapter = get_extractor(ext)
    runtime = ctx.conf["runtime"]
    clock = ctx.clock.stage("features") if ctx.clock is not None else None
    path = main(conf, ctx.scene, ctx.plan.path("features", ext), extractor=ext, device=ctx.device, sha1s=ctx.sha1s,
                load_model=lambda dev: ctx.networks.get(f"extractor:{ext}", conf, adapter.load, device=dev),
                exif_transpose=ctx.conf["features"]["exif_transpose"], turns=read_turns(ctx.plan.path("orient")),
                progress=ctx.progress,
                prefetch_images=int(runtime["prefetch_images"]), oom_retry_scales=list(runtime["oom_retry_scales"]),
                clock=clock)
    if clock is not None and clock.cut:
        ctx.clock.cut.append(f"features {ext}: {clock.cut}")
    return path


__all__ = ["main", "run_stage", "extract_one", "extract_with_oom_fallback", "features_of", "upright", "turn_back", "image_sha1", "to_original_pixels", "MISSING_SHA1"]
