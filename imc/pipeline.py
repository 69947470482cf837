"""Runs every scene through the stage table (``imc.stages``); writes the CSV after each scene,
reports and the summary."""

from __future__ import annotations

import json
import logging
import platform
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from . import csv_writer, stages
from .budget import Budget
from .config import ConfigError, apply_overrides, dump_config, read_yaml, validate
from .extract import image_sha1
from .fuse import read_images
from .h5io import clean_stale_tmp
from .io_utils import atomic_write_json, atomic_write_text, file_lock
from .networks import Networks
from .preflight import resolve_device
from .reconstruct import Pose, read_poses_csv
from .scenes import Competition, Scene, discover_scenes

log = logging.getLogger("imc")


@dataclass(kw_only=True)
class SceneReport:
    dataset: str
    scene: str
    n_images: int
    n_registered: int = 0
    n_models: int = 0
    model_sizes: list[int] = field(default_factory=list)
    cluster_sizes: list[int] = field(default_factory=list)  # imc2025: the clusters' sizes
    n_outliers: int = 0  # imc2025: images filed as outliers
    status: str = "pending"  # ok | failed | empty | skipped_budget
    error: str | None = None
    fallbacks: list[dict[str, str]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # stage name -> seconds
    paths: dict[str, str] = field(default_factory=dict)  # output key (stages.key) -> path
    fingerprints: dict[str, str] = field(default_factory=dict)
    overrides: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.dataset}/{self.scene}"


@dataclass(kw_only=True)
class SceneContext:
    """What a stage's ``run_stage`` needs: the config, the scene, where its outputs go, the networks."""

    conf: dict[str, Any]
    scene: Scene
    plan: stages.ScenePlan
    sha1s: dict[str, str]
    networks: Networks
    device: torch.device
    progress: bool = True
    budget_cap_s: float | None = None


def scene_context(conf: dict[str, Any], scene: Scene, networks: Networks, device: torch.device, *,
                  budget_cap_s: float | None = None) -> SceneContext:
    sha1s = {p: image_sha1(scene.file(p)) for p in scene.image_paths}
    scene_dir = Path(conf["cache_dir"]) / scene.dataset / scene.scene
    plan = stages.plan(conf, scene_dir, sha1s)
    scene_dir.mkdir(parents=True, exist_ok=True)
    clean_stale_tmp(scene_dir)
    stages.write_sidecars(conf, plan)
    return SceneContext(conf=conf, scene=scene, plan=plan, sha1s=sha1s, networks=networks, device=device,
                        progress=bool(conf.get("progress", True)), budget_cap_s=budget_cap_s)


def run_one(ctx: SceneContext, stage: stages.Stage, ext: str | None) -> tuple[Path, float]:
    """One stage output, under its inter-process lock (runs sharing a cache take turns); seconds."""
    t0 = time.perf_counter()
    path = ctx.plan.path(stage.name, ext)
    with file_lock(path):
        stage.load().run_stage(ctx, ext)
    return path, time.perf_counter() - t0


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


@dataclass(kw_only=True)
class SceneResult:
    poses: dict[str, Pose] = field(default_factory=dict)  # image_path -> pose written to the CSV
    labels: dict[str, str] = field(default_factory=dict)  # imc2025: image_path -> cluster name / outliers


def process_scene(ctx: SceneContext, report: SceneReport) -> SceneResult:
    """The scene's recipe: every stage of the table in order, then the report from their files."""
    report.fingerprints = dict(ctx.plan.fingerprints)
    report.paths = {k: str(p) for k, p in ctx.plan.paths.items()}
    if not ctx.scene.image_paths:
        report.status = "empty"
        log.warning("scene %s lists no images", ctx.scene.name)
        return SceneResult()
    for stage in stages.active(ctx.conf):
        for ext in (stages.extractors(ctx.conf) if stage.per_extractor else [None]):
            _, seconds = run_one(ctx, stage, ext)
            report.seconds[stage.name] = round(report.seconds.get(stage.name, 0.0) + seconds, 3)
    poses = collect_report(ctx, report)
    if not stages.BY_NAME["cluster"].runs_for(ctx.conf):
        return SceneResult(poses=poses)
    from .cluster_stage import read_result

    clusters = read_result(ctx.plan.path("cluster"), poses)
    report.cluster_sizes, report.n_outliers = clusters.sizes, clusters.n_outliers
    return SceneResult(poses=clusters.poses, labels=clusters.labels)


def collect_report(ctx: SceneContext, report: SceneReport) -> dict[str, Pose]:
    """Registered counts and, per image, why it has no pose (from the stage outputs)."""
    images = read_images(ctx.plan.path("fuse"))
    usable = [p for p in ctx.scene.image_paths if p in images and images[p]["num_keypoints"] > 0]
    for p in ctx.scene.image_paths:
        errors = images.get(p, {}).get("errors", {})
        if p not in usable:
            reason = "; ".join(errors.values()) or "no keypoints detected"
            report.fallbacks.append({"image_path": p, "reason": f"features: {reason}"})
        elif errors:  # some extractors failed, the others' keypoints are used
            for ext, error in errors.items():
                report.fallbacks.append({"image_path": p, "reason": f"features {ext}: {error} (the other extractors' "
                                                                    "keypoints are used)"})
    report.status = "ok"
    if len(usable) < 2:
        reason = f"scene has {len(usable)} usable image(s): nothing to reconstruct"
        report.fallbacks += [{"image_path": p, "reason": f"{reason}: identity/zero written"} for p in usable]
        log.warning("scene %s: %s", ctx.scene.name, reason)
        return {}
    result = read_poses_csv(ctx.plan.path("sfm") / "poses.csv")
    report.n_registered = result.n_registered
    report.n_models = result.n_models
    report.model_sizes = result.model_sizes
    for p in usable:
        if p not in result.poses:
            report.fallbacks.append({"image_path": p, "reason": "not registered by the mapper: identity/zero written"})
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


@dataclass(kw_only=True)
class RunResult:
    output: Path
    submission: Path
    reports: list[SceneReport]
    seconds: float


def setup_torch(conf: dict[str, Any]) -> torch.device:
    device = resolve_device(conf.get("device", "auto"))
    torch.manual_seed(int(conf["seed"]))
    if conf.get("torch_threads"):
        torch.set_num_threads(int(conf["torch_threads"]))
    return device


def competition(conf: dict[str, Any]) -> Competition:
    return Competition.parse(conf["data"]["competition"])


def scenes_of(conf: dict[str, Any]) -> list[Scene]:
    data = conf["data"]
    return discover_scenes(root=data["root"], sample_submission=data.get("sample_submission"),
                           only=data.get("scenes") or None, competition=competition(conf))


def run(conf: dict[str, Any]) -> RunResult:
    conf = validate(conf)
    budget = Budget(conf=conf["budget"])
    output = prepare_output(conf)
    scenes = scenes_of(conf)
    device = setup_torch(conf)
    networks = Networks(weights_dir=conf.get("weights_dir"), device=device)
    poses_by_scene: dict[str, dict[str, Pose]] = {}
    labels_by_scene: dict[str, dict[str, str]] = {}
    reports: list[SceneReport] = []
    csv_path = output / "submission.csv"

    def write_csv() -> None:
        csv_writer.write_submission(competition(conf), scenes, poses_by_scene, labels_by_scene, csv_path)

    write_csv()  # complete from the start: placeholders everywhere
    log.info("run: %d scene(s), %d image(s), device %s -> %s", len(scenes),
             sum(len(s.image_paths) for s in scenes), device, output)
    for scene in budget.order(scenes):
        report = SceneReport(dataset=scene.dataset, scene=scene.scene, n_images=len(scene.image_paths))
        plan = budget.for_scene()
        if plan.skip_reason:
            report.status, report.error = "skipped_budget", plan.skip_reason
            log.warning("scene %s skipped: %s", scene.name, report.error)
            reports.append(report)
            _write_report(output, report)
            continue
        scene_conf = conf
        if plan.overrides:
            report.overrides = plan.overrides
            scene_conf = validate(apply_overrides(conf, plan.overrides))
            log.warning("scene %s: %.0f s left of the budget, using fallback %s", scene.name, budget.left(),
                        plan.overrides)
        with _SceneLog(output / "scenes" / scene.dataset / scene.scene / "log.txt"):
            log.info("scene %s: %d images", scene.name, len(scene.image_paths))
            try:
                ctx = scene_context(scene_conf, scene, networks, device, budget_cap_s=plan.cap_s)
                result = process_scene(ctx, report)
                poses_by_scene[scene.name], labels_by_scene[scene.name] = result.poses, result.labels
            except Exception as exc:  # one scene's failure never costs the others their rows
                report.status = "failed"
                report.error = f"{type(exc).__name__}: {exc}"
                log.error("scene %s failed: %s\n%s", scene.name, report.error, traceback.format_exc())
            log.info("scene %s: %s, %d/%d registered, %d model(s), seconds %s", scene.name, report.status,
                     report.n_registered, report.n_images, report.n_models, report.seconds)
        reports.append(report)
        _write_report(output, report)
        write_csv()
    seconds = time.perf_counter() - budget.t_start
    atomic_write_json(output / "summary.json", {
        "scenes": [asdict(r) for r in reports], "seconds": round(seconds, 2), "versions": versions(),
        "device": str(device), "submission": str(csv_path)})
    return RunResult(output=output, submission=csv_path, reports=reports, seconds=seconds)


def run_stage_alone(conf: dict[str, Any], name: str, *, extractors: list[str] | None = None) -> list[str]:
    """``python -m imc stage NAME``: that stage for every scene, from its upstream stages' outputs."""
    conf = validate(conf)
    stage = stages.stage(name)
    exts = stages.extractors(conf)
    unknown = sorted(set(extractors or []) - set(exts))
    if unknown:
        raise ConfigError(f"--extractor {unknown} not in features.extractors {exts}")
    if not stage.runs_for(conf):
        raise ConfigError(f"stage {name!r} runs only for data.competition in {list(stage.competitions)}, "
                          f"not {conf['data']['competition']!r}")
    scenes = scenes_of(conf)
    device = setup_torch(conf)
    networks = Networks(weights_dir=conf.get("weights_dir"), device=device)
    lines = []
    for scene in scenes:
        ctx = scene_context(conf, scene, networks, device)
        for ext in ((extractors or exts) if stage.per_extractor else [None]):
            for up in stage.upstream + stage.reads:
                for up_ext in ([ext] if ext else exts) if stages.BY_NAME[up].per_extractor else [None]:
                    if not ctx.plan.path(up, up_ext).exists():
                        raise ConfigError(f"scene {scene.name}: stage {name!r} needs the output of {up!r}"
                                          f"{f' ({up_ext})' if up_ext else ''}, {ctx.plan.path(up, up_ext)}, which "
                                          f"does not exist: run `python -m imc stage {up}` with the same config first")
            path, seconds = run_one(ctx, stage, ext)
            lines.append(f"{scene.name}: {stages.key(name, ext)} -> {path} ({seconds:.1f} s)")
    return lines


def _write_report(output: Path, report: SceneReport) -> None:
    atomic_write_json(output / "scenes" / report.dataset / report.scene / "report.json", asdict(report))


def summary_table(reports: list[SceneReport]) -> str:
    names = stages.timed_names([r.seconds for r in reports])
    clustered = any(r.cluster_sizes or r.n_outliers for r in reports)
    extra = ["clusters", "outliers"] if clustered else []
    cols = ["scene", "images", "registered", "models", "status"] + extra + [f"{s}_s" for s in names]
    rows = []
    for r in reports:
        rows.append([r.name, str(r.n_images), str(r.n_registered), str(r.n_models), r.status]
                    + ([str(len(r.cluster_sizes)), str(r.n_outliers)] if clustered else [])
                    + [f"{r.seconds[s]:.1f}" if s in r.seconds else "-" for s in names])
    total = ["TOTAL", str(sum(r.n_images for r in reports)), str(sum(r.n_registered for r in reports)),
             str(sum(r.n_models for r in reports)), ""] + (
        [str(sum(len(r.cluster_sizes) for r in reports)), str(sum(r.n_outliers for r in reports))] if clustered else []) + [
        f"{sum(r.seconds.get(s, 0.0) for r in reports):.1f}" for s in names]
    rows.append(total)
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(cols)]
    line = lambda vals: "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(vals, widths)))  # noqa: E731
    return "\n".join([line(cols), line(["-" * w for w in widths])] + [line(r) for r in rows])
