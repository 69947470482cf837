"""Chains the stages for every scene; writes the CSV after each scene, reports, summary table."""

from __future__ import annotations

import json
import logging
import platform
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from . import extract, fingerprints, match, pairs, reconstruct, retrieval, submission, verify
from .config import ConfigError, apply_overrides, dump_config, read_yaml
from .h5io import clean_stale_tmp
from .io_utils import atomic_write_json, atomic_write_text, file_lock
from .models import load_aliked, load_lightglue, pick_device
from .reconstruct import Pose
from .scenes import Scene, discover_scenes

log = logging.getLogger("imc")

# Each stage's output in <cache_dir>/<dataset>/<scene>/, named by its fingerprint.
STAGE_FILES = {"pairs": "pairs-{}.txt", "features": "features-{}.h5", "matches": "matches-{}.h5",
               "verified": "verified-{}.h5", "sfm": "sfm-{}"}
STAGES = tuple(STAGE_FILES)


@dataclass(kw_only=True)
class SceneReport:
    dataset: str
    scene: str
    n_images: int
    n_registered: int = 0
    n_models: int = 0
    model_sizes: list[int] = field(default_factory=list)
    status: str = "pending"  # ok | failed | empty | skipped_budget
    error: str | None = None
    fallbacks: list[dict[str, str]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)
    fingerprints: dict[str, str] = field(default_factory=dict)
    overrides: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.dataset}/{self.scene}"


class Models:
    """Loads each network once per run, on first use."""

    def __init__(self, conf: dict[str, Any], device: torch.device):
        self.conf, self.device = conf, device
        self._cache: dict[str, torch.nn.Module] = {}

    def get(self, kind: str, sub_conf: dict[str, Any]) -> torch.nn.Module:
        key = f"{kind}:{json.dumps(sub_conf, sort_keys=True)}"
        if key not in self._cache:
            loader = {"aliked": load_aliked, "lightglue": load_lightglue}[kind]
            self._cache[key] = loader(sub_conf, weights_dir=self.conf.get("weights_dir"), device=self.device)
        return self._cache[key]


def stage_paths(scene_dir: Path, fp: fingerprints.StageFingerprints) -> dict[str, Path]:
    """stage -> its output path under ``scene_dir`` (``<cache_dir>/<dataset>/<scene>``)."""
    return {stage: scene_dir / name.format(getattr(fp, stage)) for stage, name in STAGE_FILES.items()}


def check_stage_config(path: Path, stage_conf: dict[str, Any]) -> None:
    """Save the config beside a cache; refuse to reuse a cache whose saved config differs."""
    sidecar = path.with_name(path.name + ".config.json")
    blob = json.loads(json.dumps(stage_conf, sort_keys=True, default=str))
    if sidecar.exists():
        saved = json.loads(sidecar.read_text())
        if saved != blob:
            raise ConfigError(f"cache {path} was produced by a different config (fingerprint collision or a "
                              f"hand-edited cache); delete it. saved={saved} now={blob}")
    else:
        atomic_write_json(sidecar, blob)


@dataclass
class _SceneLog:
    """Copies the ``imc`` loggers' INFO messages into a scene's ``log.txt`` while a scene runs."""

    path: Path
    handler: logging.Handler | None = None
    saved_level: int = logging.NOTSET

    def __enter__(self) -> "_SceneLog":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handler = logging.FileHandler(self.path, mode="a")
        self.handler.setLevel(logging.INFO)
        self.handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger = logging.getLogger("imc")
        self.saved_level = logger.level
        if logger.getEffectiveLevel() > logging.INFO:
            logger.setLevel(logging.INFO)
        logger.addHandler(self.handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        logger = logging.getLogger("imc")
        logger.removeHandler(self.handler)
        logger.setLevel(self.saved_level)
        self.handler.close()


def process_scene(conf: dict[str, Any], scene: Scene, models: Models, device: torch.device,
                  report: SceneReport) -> dict[str, Pose]:
    progress = bool(conf.get("progress", True))
    sha1s = {p: extract.image_sha1(scene.file(p)) for p in scene.image_paths}
    fp = fingerprints.compute(conf, sha1s)
    scene_dir = Path(conf["cache_dir"]) / scene.dataset / scene.scene
    out = stage_paths(scene_dir, fp)
    scene_dir.mkdir(parents=True, exist_ok=True)
    clean_stale_tmp(scene_dir)
    stage_confs = fingerprints.stage_configs(conf)
    for stage in STAGES:
        check_stage_config(out[stage], stage_confs[stage])
    report.fingerprints = fp.as_dict()
    report.paths = {stage: str(out[stage]) for stage in STAGES}

    def timed(stage: str, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        with file_lock(out[stage]):  # runs sharing this cache take turns per stage output
            value = fn()
        report.seconds[stage] = round(report.seconds.get(stage, 0.0) + time.perf_counter() - t0, 3)
        return value

    if not scene.image_paths:
        report.status = "empty"
        log.warning("scene %s lists no images", scene.name)
        return {}
    timed("features", lambda: extract.main(conf["features"], scene, out["features"], device=device, sha1s=sha1s,
                                           load_model=lambda: models.get("aliked", conf["features"]), progress=progress))
    features = extract.load_all(out["features"], scene.image_paths)
    usable = [p for p in scene.image_paths if p in features and len(features[p]["keypoints"]) > 0]
    for p in scene.image_paths:
        if p not in usable:
            reason = (features.get(p, {}).get("error") or "no keypoints detected")
            report.fallbacks.append({"image_path": p, "reason": f"features: {reason}"})
    features = {p: features[p] for p in usable}
    if len(usable) < 2:
        report.status = "ok"
        reason = f"scene has {len(usable)} usable image(s): nothing to reconstruct"
        report.fallbacks += [{"image_path": p, "reason": f"{reason}: identity/zero written"} for p in usable]
        log.warning("scene %s: %s", scene.name, reason)
        return {}

    retrieval_conf = conf["pairs"]["retrieval"]
    # The retrieval network is configured under pairs.retrieval (so it is part of the pairs fingerprint);
    # only its dense feature map is used, the keypoint settings are irrelevant.
    retrieval_net_conf = {**conf["features"], "model": retrieval_conf.get("aliked_model", "aliked-n16")}
    aliked_for_retrieval = lambda: models.get("aliked", retrieval_net_conf)  # noqa: E731
    # Pairs over every listed image, not only the usable ones: the pairs cache is keyed by the images'
    # contents and pairs.* only, so its content must not depend on the features config (pairs with an
    # image that has no features are skipped by the later stages).
    describe = retrieval.make_descriptor_fn(retrieval_conf, scene.file, aliked=aliked_for_retrieval, device=device) \
        if len(scene.image_paths) > conf["pairs"]["exhaustive_max_images"] else None
    timed("pairs", lambda: pairs.main(conf["pairs"], scene.image_paths, out["pairs"], global_descriptors=describe))
    pair_list = pairs.read_pairs(out["pairs"])
    timed("matches", lambda: match.main(conf["matching"], out["pairs"], features, out["matches"], device=device,
                                        load_model=lambda: models.get("lightglue", conf["matching"]), progress=progress,
                                        desc=f"matches {scene.name}"))
    timed("verified", lambda: verify.main(conf["verification"], out["matches"], features, out["verified"], pairs=pair_list,
                                          min_matches=conf["matching"]["min_matches"], seed=int(conf["seed"]),
                                          progress=progress, desc=f"verify {scene.name}"))
    timed("sfm", lambda: reconstruct.main(conf["sfm"], features, out["verified"], scene.root, out["sfm"], pairs=pair_list,
                                          seed=int(conf["seed"]), progress=progress, desc=f"mapping {scene.name}"))
    result = reconstruct.read_poses_csv(out["sfm"] / "poses.csv")
    report.n_registered = result.n_registered
    report.n_models = result.n_models
    report.model_sizes = result.model_sizes
    for p in scene.image_paths:
        if p in features and p not in result.poses:
            report.fallbacks.append({"image_path": p, "reason": "not registered by the mapper: identity/zero written"})
    report.status = "ok"
    return result.poses


def versions() -> dict[str, str]:
    import cv2
    import h5py
    import kornia
    import numpy
    import pycolmap

    from . import __version__

    return {"imc": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "kornia": kornia.__version__, "pycolmap": pycolmap.__version__, "h5py": h5py.__version__,
            "numpy": numpy.__version__, "opencv": cv2.__version__}


def prepare_output(conf: dict[str, Any]) -> Path:
    """Create the run folder; refuse to reuse one made by another config unless ``overwrite``."""
    output = Path(conf["output"])
    output.mkdir(parents=True, exist_ok=True)
    saved = output / "config.yaml"
    ignore = {"progress", "overwrite"}
    if saved.exists() and not conf.get("overwrite", False):
        previous = {k: v for k, v in read_yaml(saved).items() if k not in ignore}
        current = {k: v for k, v in json.loads(json.dumps(conf, default=str)).items() if k not in ignore}
        if previous != current:
            changed = sorted(k for k in set(previous) | set(current) if previous.get(k) != current.get(k))
            raise ConfigError(f"{output} holds a run made with another config (sections {changed} differ): "
                              "choose another `output=` or pass `overwrite=true`")
    atomic_write_text(saved, dump_config(conf))
    return output


def order_scenes(scenes: list[Scene], how: str) -> list[Scene]:
    if how == "largest_first":  # the expensive ones first, cheap ones can still run on a fallback budget
        return sorted(scenes, key=lambda s: -len(s.image_paths))
    return list(scenes)


@dataclass(kw_only=True)
class RunResult:
    output: Path
    submission: Path
    reports: list[SceneReport]
    seconds: float


def run(conf: dict[str, Any]) -> RunResult:
    t_start = time.perf_counter()
    output = prepare_output(conf)
    scenes = discover_scenes(root=conf["data"]["root"], sample_submission=conf["data"].get("sample_submission"),
                             only=conf["data"].get("scenes") or None)
    device = pick_device(conf.get("device", "auto"))
    torch.manual_seed(int(conf["seed"]))
    if conf.get("torch_threads"):
        torch.set_num_threads(int(conf["torch_threads"]))
    models = Models(conf, device)
    budget = conf.get("budget") or {}
    budget_s = budget.get("seconds")
    poses_by_scene: dict[str, dict[str, Pose]] = {}
    reports: list[SceneReport] = []
    csv_path = output / "submission.csv"
    submission.main(scenes, poses_by_scene, csv_path)  # complete from the start: placeholders everywhere
    log.info("run: %d scene(s), %d image(s), device %s -> %s", len(scenes),
             sum(len(s.image_paths) for s in scenes), device, output)
    for scene in order_scenes(scenes, budget.get("order", "listed")):
        report = SceneReport(dataset=scene.dataset, scene=scene.scene, n_images=len(scene.image_paths))
        scene_conf = conf
        elapsed = time.perf_counter() - t_start
        if budget_s is not None:
            left = budget_s - elapsed
            if left <= 0:
                report.status = "skipped_budget"
                report.error = f"time budget of {budget_s:.0f} s used up before this scene"
                log.warning("scene %s skipped: %s", scene.name, report.error)
                reports.append(report)
                _write_report(output, report)
                continue
            if left < budget.get("fallback_when_left_fraction", 0.25) * budget_s and budget.get("fallback_overrides"):
                report.overrides = list(budget["fallback_overrides"])
                scene_conf = apply_overrides(conf, report.overrides)
                log.warning("scene %s: %.0f s left of the budget, using fallback %s", scene.name, left, report.overrides)
            cap = max(1, int(left))  # the time left, or the configured cap when that is smaller
            configured = scene_conf["sfm"].get("max_runtime_seconds")
            cap = min(cap, int(configured)) if configured else cap
            scene_conf = apply_overrides(scene_conf, [f"sfm.max_runtime_seconds={cap}"])
        with _SceneLog(output / "scenes" / scene.dataset / scene.scene / "log.txt"):
            log.info("scene %s: %d images", scene.name, len(scene.image_paths))
            try:
                poses_by_scene[scene.name] = process_scene(scene_conf, scene, models, device, report)
            except Exception as exc:  # one scene's failure never costs the others their rows
                report.status = "failed"
                report.error = f"{type(exc).__name__}: {exc}"
                log.error("scene %s failed: %s\n%s", scene.name, report.error, traceback.format_exc())
            log.info("scene %s: %s, %d/%d registered, %d model(s), seconds %s", scene.name, report.status,
                     report.n_registered, report.n_images, report.n_models, report.seconds)
        reports.append(report)
        _write_report(output, report)
        submission.main(scenes, poses_by_scene, csv_path)
    seconds = time.perf_counter() - t_start
    atomic_write_json(output / "summary.json", {
        "scenes": [asdict(r) for r in reports], "seconds": round(seconds, 2), "versions": versions(),
        "device": str(device), "submission": str(csv_path)})
    return RunResult(output=output, submission=csv_path, reports=reports, seconds=seconds)


def _write_report(output: Path, report: SceneReport) -> None:
    atomic_write_json(output / "scenes" / report.dataset / report.scene / "report.json", asdict(report))


def summary_table(reports: list[SceneReport]) -> str:
    cols = ["scene", "images", "registered", "models", "status"] + [f"{s}_s" for s in STAGES]
    rows = []
    for r in reports:
        rows.append([r.name, str(r.n_images), str(r.n_registered), str(r.n_models), r.status]
                    + [f"{r.seconds[s]:.1f}" if s in r.seconds else "-" for s in STAGES])
    total = ["TOTAL", str(sum(r.n_images for r in reports)), str(sum(r.n_registered for r in reports)),
             str(sum(r.n_models for r in reports)), ""] + [
        f"{sum(r.seconds.get(s, 0.0) for r in reports):.1f}" for s in STAGES]
    rows.append(total)
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(cols)]
    line = lambda vals: "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(vals, widths)))  # noqa: E731
    return "\n".join([line(cols), line(["-" * w for w in widths])] + [line(r) for r in rows])
