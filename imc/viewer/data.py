"""Load what the pipeline wrote, for the viewer and the static exports (no Streamlit here).

Everything is read from disk as written by ``python -m imc run`` (run folder, stage caches, COLMAP
models), by ``python -m eval score`` (``score.json``) and by sweeps (``results.csv``); nothing is
recomputed, except the mAA when the caller asks for it with a labels file (:func:`score_run`).
Problems of a partial run are collected as messages in :attr:`RunInfo.problems`, not raised.
"""

from __future__ import annotations

import csv
import enum
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from ..config import read_yaml
from ..h5io import PAIR_SEP, read_features, read_matches, split_pair_key, unescape
from ..images import read_image
from ..pairs import read_pairs

REPO_ROOT = Path(__file__).resolve().parents[2]
# The fused keypoints and raw matches (one set per image and pair, whatever the extractors): see imc/fuse.py.
KEYPOINTS = RAW_MATCHES = "fuse"


class ViewerDataError(RuntimeError):
    """A run/sweep folder or one of its files is missing or unreadable; the message names it."""


class OutputKind(enum.Enum):
    RUN = "run"  # written by `python -m imc run`
    SWEEP = "sweep"  # has results.csv
    FOLDER = "folder"  # neither, but holds runs below it
    MISSING = "missing"
    EMPTY = "empty"  # exists, no run inside


def stamp(path: str | os.PathLike | None) -> float:
    """A change marker for caches: the file's mtime, a folder's newest direct child, 0 when missing.

    A stage h5 still being written also counts its ``<name>.parts/`` folder (see ``imc.h5io``).
    """
    if path is None:
        return 0.0
    path = Path(path)
    try:
        if path.is_dir():
            return max([path.stat().st_mtime] + [p.stat().st_mtime for p in path.iterdir()])
        parts = path.with_name(path.name + ".parts")
        own = path.stat().st_mtime if path.exists() else 0.0
        return max(own, stamp(parts)) if parts.is_dir() else own
    except OSError:
        return 0.0


def run_stamp(path: str | os.PathLike) -> float:
    """Changes whenever the run writes a top-level file or a scene report."""
    path = Path(path)
    return max([stamp(path)] + [stamp(p) for p in path.glob("scenes/*/*/report.json")])


def is_run_folder(path: Path) -> bool:
    return any((path / name).exists() for name in ("summary.json", "config.yaml", "submission.csv")) \
        or (path / "scenes").is_dir()


def find_runs(folder: str | os.PathLike, max_depth: int = 3) -> list[Path]:
    """Run folders at or below ``folder`` (not descending into a run), sorted by path."""
    found: list[Path] = []

    def walk(path: Path, depth: int) -> None:
        if is_run_folder(path):
            found.append(path)
            return
        if depth >= max_depth:
            return
        try:
            children = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
        except OSError:
            return
        for child in children:
            walk(child, depth + 1)

    walk(Path(folder), 0)
    return found


def output_kind(path: str | os.PathLike) -> OutputKind:
    path = Path(path)
    if not path.exists():
        return OutputKind.MISSING
    if not path.is_dir():
        return OutputKind.EMPTY
    if (path / "results.csv").is_file():
        return OutputKind.SWEEP
    if is_run_folder(path):
        return OutputKind.RUN
    return OutputKind.FOLDER if find_runs(path) else OutputKind.EMPTY


# ---------------------------------------------------------------------------------------------- runs
@dataclass(kw_only=True)
class SceneInfo:
    dataset: str
    scene: str
    n_images: int = 0
    n_registered: int = 0
    n_models: int = 0
    model_sizes: list[int] = field(default_factory=list)
    status: str = "not run"
    error: str | None = None
    fallbacks: list[dict[str, str]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    paths: dict[str, Path] = field(default_factory=dict)  # stage -> absolute path
    maa: float | None = None
    provenance: dict[str, dict[str, Any]] = field(default_factory=dict)  # image -> model, how, reprojection error

    @property
    def name(self) -> str:
        return f"{self.dataset}/{self.scene}"

    def path(self, stage: str) -> Path | None:
        """The stage output if it exists on disk."""
        p = self.paths.get(stage)
        return p if p is not None and p.exists() else None


@dataclass(kw_only=True)
class RunInfo:
    root: Path
    scenes: list[SceneInfo]
    config: dict[str, Any] = field(default_factory=dict)
    data_root: Path | None = None
    submission: Path | None = None
    score: dict[str, Any] | None = None  # score.json
    complete: bool = False  # summary.json written (the run finished)
    problems: list[str] = field(default_factory=list)

    def scene(self, name: str) -> SceneInfo:
        for s in self.scenes:
            if s.name == name:
                return s
        raise ViewerDataError(f"scene {name!r} is not in run {self.root}; it has {[s.name for s in self.scenes]}")

    @property
    def exif_transpose(self) -> bool:
        return bool((self.config.get("features") or {}).get("exif_transpose", False))


def _read_json(path: Path, problems: list[str]) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        problems.append(f"{path}: unreadable ({type(exc).__name__}: {exc})")
        return None


def _scene_from_report(report: dict[str, Any], root: Path) -> SceneInfo:
    paths = {}
    for stage, p in (report.get("paths") or {}).items():
        p = Path(p)
        paths[stage] = p if p.is_absolute() else root / p
    return SceneInfo(dataset=str(report["dataset"]), scene=str(report["scene"]),
                     n_images=int(report.get("n_images", 0)), n_registered=int(report.get("n_registered", 0)),
                     n_models=int(report.get("n_models", 0)), model_sizes=list(report.get("model_sizes") or []),
                     status=str(report.get("status", "unknown")), error=report.get("error"),
                     fallbacks=list(report.get("fallbacks") or []), seconds=dict(report.get("seconds") or {}),
                     paths=paths, provenance=dict(report.get("provenance") or {}))


def _submission_scene_counts(path: Path, problems: list[str]) -> dict[tuple[str, str], int]:
    counts: dict[tuple[str, str], int] = {}
    try:
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                key = (row["dataset"], row["scene"])
                counts[key] = counts.get(key, 0) + 1
    except (OSError, KeyError, csv.Error) as exc:
        problems.append(f"{path}: unreadable submission ({type(exc).__name__}: {exc})")
    return counts


def resolve_data_root(root: str | None, run_dir: Path) -> Path | None:
    """``data.root`` as saved in the run's config: absolute, or relative to the cwd, the repo or the run."""
    if not root:
        return None
    p = Path(root)
    candidates = [p] if p.is_absolute() else [Path.cwd() / p, REPO_ROOT / p, run_dir / p]
    return next((c for c in candidates if c.is_dir()), None)


def load_run(path: str | os.PathLike) -> RunInfo:
    """Read a run folder: config, per-scene reports (or summary.json), submission, score.json."""
    root = Path(path)
    if not root.is_dir():
        raise ViewerDataError(f"run folder {root} does not exist")
    if not is_run_folder(root):
        raise ViewerDataError(f"{root} is not a run folder (no summary.json, config.yaml, submission.csv or "
                              "scenes/): pass the `output=` folder of `python -m imc run`")
    problems: list[str] = []
    config: dict[str, Any] = {}
    if (root / "config.yaml").is_file():
        try:
            config = read_yaml(root / "config.yaml")
        except Exception as exc:  # noqa: BLE001 - any YAML problem becomes a message
            problems.append(f"{root / 'config.yaml'}: unreadable ({type(exc).__name__}: {exc})")
    else:
        problems.append(f"no config.yaml in {root}: image files cannot be located")

    scenes: dict[str, SceneInfo] = {}
    summary_path = root / "summary.json"
    complete = summary_path.is_file()
    if complete:
        summary = _read_json(summary_path, problems) or {}
        for report in summary.get("scenes") or []:
            s = _scene_from_report(report, root)
            scenes[s.name] = s
    else:
        problems.append("no summary.json: the run is still going or was interrupted; showing the scenes "
                        "that have a report.json")
    for report_path in sorted((root / "scenes").glob("*/*/report.json")):
        report = _read_json(report_path, problems)
        if report:
            try:
                s = _scene_from_report(report, root)
            except (KeyError, TypeError, ValueError) as exc:
                problems.append(f"{report_path}: malformed report ({type(exc).__name__}: {exc})")
                continue
            scenes[s.name] = s

    submission = root / "submission.csv"
    if submission.is_file():
        for (dataset, scene), n in _submission_scene_counts(submission, problems).items():
            if f"{dataset}/{scene}" not in scenes:
                scenes[f"{dataset}/{scene}"] = SceneInfo(dataset=dataset, scene=scene, n_images=n)
    else:
        submission = None
        problems.append(f"no submission.csv in {root}")
    not_run = [name for name, s in scenes.items() if s.status == "not run"]
    if not_run:
        problems.append(f"{len(not_run)} scene(s) have no report yet (not processed): {not_run[:10]}")

    score = None
    if (root / "score.json").is_file():
        score = _read_json(root / "score.json", problems)
        apply_scores(scenes.values(), score)
    data_root = resolve_data_root((config.get("data") or {}).get("root"), root)
    if config and data_root is None:
        problems.append(f"image folder data.root={(config.get('data') or {}).get('root')!r} not found: "
                        "keypoints are drawn on blank canvases")
    return RunInfo(root=root, scenes=list(scenes.values()), config=config, data_root=data_root,
                   submission=submission, score=score, complete=complete, problems=problems)


def apply_scores(scenes: Any, score: dict[str, Any] | None) -> None:
    """Fill ``SceneInfo.maa`` from a score dict (``{"scenes": {"dataset/scene": mAA}}``)."""
    by_scene = (score or {}).get("scenes") or {}
    for s in scenes:
        value = by_scene.get(s.name)
        s.maa = float(value) if value is not None else None


def score_run(run: RunInfo, labels_csv: str | os.PathLike) -> dict[str, Any]:
    """Score the run's submission against ``labels_csv`` (only the labelled scenes the run has)."""
    from eval.score import score
    from eval.submission import read_labels

    if run.submission is None:
        raise ViewerDataError(f"{run.root} has no submission.csv to score")
    labels = read_labels(labels_csv)
    scenes = [s.name for s in run.scenes if s.name in labels]
    if not scenes:
        raise ViewerDataError(f"none of the run's scenes {[s.name for s in run.scenes]} is in {labels_csv}")
    return score(run.submission, labels_csv, scenes=scenes).to_dict()


def image_errors(run: RunInfo, scene: SceneInfo, labels_csv: str | os.PathLike) -> pd.DataFrame:
    """One row per image of ``scene``, worst first: the median rotation / translation error of its pairs
    against the ground truth (the metric's pair errors), the share of its pairs accurate at the scene's
    loosest threshold, and how the image got its pose (model, mapper / relocalised / ..., reprojection
    error, observations). The images that cost the scene its mAA come first."""
    from eval.score import score

    if run.submission is None:
        raise ViewerDataError(f"{run.root} has no submission.csv to score")
    result = score(run.submission, labels_csv, scenes=[scene.name]).scenes[scene.name]
    from eval.submission import read_labels

    names = list(read_labels(labels_csv)[scene.name].image_paths)
    i, j = np.triu_indices(len(names), 1)
    err_R, err_t = np.asarray(result.err_R_deg), np.asarray(result.err_t_m)
    ok = (err_R <= result.thresholds_R_deg[-1]) & (err_t <= result.thresholds_t_m[-1])
    rows = []
    for k, name in enumerate(names):
        mine = (i == k) | (j == k)
        prov = scene.provenance.get(name, {})
        rows.append({"image": name, "median err_R (deg)": float(np.median(err_R[mine])) if mine.any() else np.nan,
                     "median err_t": float(np.median(err_t[mine])) if mine.any() else np.nan,
                     "pairs accurate": float(ok[mine].mean()) if mine.any() else np.nan,
                     "how": prov.get("how", "not registered" if scene.provenance else ""), "model": prov.get("model"),
                     "reprojection error": prov.get("reprojection_error"),
                     "observations": prov.get("num_observations")})
    table = pd.DataFrame(rows)
    return table.sort_values(["pairs accurate", "median err_R (deg)"], ascending=[True, False]).reset_index(drop=True)


def pairs_of(table: pd.DataFrame, image: str) -> pd.DataFrame:
    """The rows of a :func:`pair_table` that involve ``image``, with the partner named."""
    mine = table[(table["image0"] == image) | (table["image1"] == image)].copy()
    mine.insert(0, "partner", np.where(mine["image0"] == image, mine["image1"], mine["image0"]))
    return mine.drop(columns=["image0", "image1"]).reset_index(drop=True)


def scene_table(run: RunInfo) -> pd.DataFrame:
    rows = []
    for s in run.scenes:
        rows.append({"scene": s.name, "status": s.status, "images": s.n_images, "registered": s.n_registered,
                     "models": s.n_models, "model sizes": " ".join(map(str, s.model_sizes)),
                     "mAA": np.nan if s.maa is None else s.maa, "fallbacks": len(s.fallbacks),
                     "seconds": round(sum(s.seconds.values()), 1), "error": s.error or ""})
    return pd.DataFrame(rows, columns=["scene", "status", "images", "registered", "models", "model sizes", "mAA",
                                       "fallbacks", "seconds", "error"])


# ---------------------------------------------------------------------------------------------- h5
def _h5_files(path: Path) -> list[Path]:
    """The consolidated h5 and the per-item parts of an unfinished stage (see ``imc.h5io``)."""
    parts = path.with_name(path.name + ".parts")
    files = [path] if path.is_file() else []
    return files + (sorted(parts.glob("*.h5")) if parts.is_dir() else [])


def match_counts(path: str | os.PathLike | None) -> dict[tuple[str, str], int]:
    """Number of matches per stored pair, read from dataset shapes only."""
    counts: dict[tuple[str, str], int] = {}
    if path is None:
        return counts
    for f in _h5_files(Path(path)):
        try:
            with h5py.File(f, "r") as h:
                for key in h.keys():
                    if "matches" in h[key]:
                        counts[split_pair_key(key)] = int(h[key]["matches"].shape[0])
        except OSError:  # a part being written right now
            continue
    return counts


def pair_table(scene: SceneInfo) -> pd.DataFrame:
    """One row per listed pair: raw matches and verified inliers (NaN where not stored)."""
    pairs_path = scene.path("pairs")
    if pairs_path is None:
        raise ViewerDataError(f"scene {scene.name}: no pairs file ({scene.paths.get('pairs')})")
    pairs = read_pairs(pairs_path)
    raw, verified = match_counts(scene.path(RAW_MATCHES)), match_counts(scene.path("verified"))

    def lookup(counts: dict[tuple[str, str], int], a: str, b: str) -> float:
        return float(counts.get((a, b), counts.get((b, a), np.nan)))

    rows = [{"image0": a, "image1": b, "matches": lookup(raw, a, b), "inliers": lookup(verified, a, b)}
            for a, b in pairs]
    table = pd.DataFrame(rows, columns=["image0", "image1", "matches", "inliers"])
    table["inlier ratio"] = table["inliers"] / table["matches"]
    return table.sort_values(["inliers", "matches"], ascending=False, na_position="last").reset_index(drop=True)


def feature_images(scene: SceneInfo) -> list[str]:
    """Image paths that have keypoints stored, sorted."""
    path = scene.path(KEYPOINTS)
    if path is None:
        return []
    names: set[str] = set()
    for f in _h5_files(path):
        try:
            with h5py.File(f, "r") as h:
                names.update(unescape(k) for k in h.keys() if PAIR_SEP not in k)
        except OSError:
            continue
    return sorted(names)


@dataclass(kw_only=True)
class Keypoints:
    image_path: str
    keypoints: np.ndarray  # (N, 2) original pixels
    scores: np.ndarray  # (N,)
    image_size: tuple[int, int]  # (W, H)


def load_keypoints(scene: SceneInfo, image_path: str) -> Keypoints:
    path = scene.path(KEYPOINTS)
    if path is None:
        raise ViewerDataError(f"scene {scene.name}: no keypoints file ({scene.paths.get(KEYPOINTS)})")
    try:
        item = read_features(path, image_path)
    except KeyError as exc:
        raise ViewerDataError(f"{image_path} has no features in {path}") from exc
    kp = np.asarray(item.get("keypoints", np.zeros((0, 2))), dtype=np.float32).reshape(-1, 2)
    scores = np.asarray(item.get("scores", np.ones(len(kp))), dtype=np.float32).reshape(-1)
    size = item.get("image_size")
    if size is None:
        size = (int(kp[:, 0].max()) + 1, int(kp[:, 1].max()) + 1) if len(kp) else (640, 480)
    return Keypoints(image_path=image_path, keypoints=kp, scores=scores, image_size=(int(size[0]), int(size[1])))


@dataclass(kw_only=True)
class PairMatches:
    image0: str
    image1: str
    keypoints0: np.ndarray
    keypoints1: np.ndarray
    matches: np.ndarray  # (M, 2) raw matches (before verification)
    inliers: np.ndarray  # (K, 2) verified matches
    image_size0: tuple[int, int]
    image_size1: tuple[int, int]

    @property
    def inlier_mask(self) -> np.ndarray:
        """(M,) bool: which raw matches survived verification."""
        if len(self.matches) == 0:
            return np.zeros(0, dtype=bool)
        n1 = max(len(self.keypoints1), 1)
        code = lambda m: m[:, 0].astype(np.int64) * n1 + m[:, 1].astype(np.int64)  # noqa: E731
        return np.isin(code(self.matches), code(self.inliers))


def _read_pair_or_empty(path: Path | None, a: str, b: str) -> np.ndarray:
    if path is None:
        return np.zeros((0, 2), dtype=np.int32)
    try:
        return np.asarray(read_matches(path, a, b)["matches"], dtype=np.int64).reshape(-1, 2)
    except KeyError:
        return np.zeros((0, 2), dtype=np.int32)


def load_pair(scene: SceneInfo, image0: str, image1: str) -> PairMatches:
    k0, k1 = load_keypoints(scene, image0), load_keypoints(scene, image1)
    if scene.path(RAW_MATCHES) is None:
        raise ViewerDataError(f"scene {scene.name}: no matches file ({scene.paths.get(RAW_MATCHES)})")
    return PairMatches(image0=image0, image1=image1, keypoints0=k0.keypoints, keypoints1=k1.keypoints,
                       matches=_read_pair_or_empty(scene.path(RAW_MATCHES), image0, image1),
                       inliers=_read_pair_or_empty(scene.path("verified"), image0, image1),
                       image_size0=k0.image_size, image_size1=k1.image_size)


@dataclass(kw_only=True)
class DisplayImage:
    rgb: np.ndarray  # (h, w, 3) uint8, downscaled
    scale: float  # display pixels per original pixel
    found: bool  # False: a blank canvas stands in for a missing file


def load_display_image(run: RunInfo, image_path: str, image_size: tuple[int, int], max_side: int = 1024) -> DisplayImage:
    """The image downscaled to ``max_side``, or a grey canvas of its size when the file is missing."""
    w, h = image_size
    if run.data_root is not None and (run.data_root / image_path).is_file():
        try:
            img = read_image(run.data_root / image_path, resize_max=max_side, exif_transpose=run.exif_transpose)
            return DisplayImage(rgb=img.rgb, scale=1.0 / img.scale[0], found=True)
        except Exception:  # noqa: BLE001 - unreadable file: same as missing
            pass
    s = min(1.0, max_side / max(w, h, 1))
    canvas = np.full((max(1, round(h * s)), max(1, round(w * s)), 3), 200, dtype=np.uint8)
    return DisplayImage(rgb=canvas, scale=s, found=False)


# ---------------------------------------------------------------------------------------------- models
@dataclass(kw_only=True)
class CameraView:
    image_path: str
    R: np.ndarray  # (3, 3) world-to-camera
    t: np.ndarray  # (3,)
    K: np.ndarray  # (3, 3)
    width: int
    height: int


@dataclass(kw_only=True)
class ModelData:
    index: int  # models/<index>, 0 = largest
    points: np.ndarray  # (N, 3) float32
    colors: np.ndarray  # (N, 3) uint8
    cameras: list[CameraView]
    n_points_total: int

    def poses(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        return {c.image_path: (c.R, c.t) for c in self.cameras}


def model_dirs(sfm_dir: Path | None) -> list[Path]:
    if sfm_dir is None or not (sfm_dir / "models").is_dir():
        return []
    dirs = [p for p in (sfm_dir / "models").iterdir() if p.is_dir() and p.name.isdigit()]
    return sorted(dirs, key=lambda p: int(p.name))


def load_models(sfm_dir: str | os.PathLike | None, max_points: int = 100_000) -> list[ModelData]:
    """Every sub-model of ``sfm-<fp>/models/<k>/`` (points subsampled to ``max_points`` per model)."""
    import pycolmap

    models = []
    for d in model_dirs(Path(sfm_dir) if sfm_dir is not None else None):
        try:
            rec = pycolmap.Reconstruction(str(d))
        except Exception as exc:  # noqa: BLE001 - pycolmap raises plain RuntimeError/ValueError
            raise ViewerDataError(f"cannot read COLMAP model {d}: {exc}") from exc
        pts = list(rec.points3D.values())
        xyz = np.array([p.xyz for p in pts], dtype=np.float32).reshape(-1, 3)
        rgb = np.array([p.color for p in pts], dtype=np.uint8).reshape(-1, 3)
        if len(xyz) > max_points:
            keep = np.sort(np.random.default_rng(0).choice(len(xyz), max_points, replace=False))
            xyz, rgb = xyz[keep], rgb[keep]
        cameras = []
        for image in rec.images.values():
            if not image.has_pose:
                continue
            pose = image.cam_from_world()
            cam = rec.cameras[image.camera_id]
            cameras.append(CameraView(image_path=image.name, R=np.asarray(pose.rotation.matrix()),
                                      t=np.asarray(pose.translation), K=np.asarray(cam.calibration_matrix()),
                                      width=int(cam.width), height=int(cam.height)))
        cameras.sort(key=lambda c: c.image_path)
        models.append(ModelData(index=int(d.name), points=xyz, colors=rgb, cameras=cameras, n_points_total=len(pts)))
    return models


def load_gt_poses(labels_csv: str | os.PathLike, scene_name: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Ground-truth world-to-camera poses of one scene from a labels CSV (empty if the scene is absent)."""
    from eval.submission import read_labels

    labels = read_labels(labels_csv)
    if scene_name not in labels:
        return {}
    sp = labels[scene_name]
    return {p: (sp.R[i], sp.t[i]) for i, p in enumerate(sp.image_paths)}


def default_labels(run: RunInfo) -> Path | None:
    """``<data.root>/train_labels.csv`` when the run's image folder ships one (the demo data does)."""
    if run.data_root is not None and (run.data_root / "train_labels.csv").is_file():
        return run.data_root / "train_labels.csv"
    return None


# ---------------------------------------------------------------------------------------------- sweeps
@dataclass(kw_only=True)
class SweepInfo:
    root: Path
    results: pd.DataFrame
    summary_md: str | None
    plots: list[Path]
    runs: list[Path]


def load_sweep(path: str | os.PathLike) -> SweepInfo:
    root = Path(path)
    results_path = root / "results.csv"
    if not results_path.is_file():
        raise ViewerDataError(f"{root} is not a sweep folder (no results.csv)")
    try:
        results = pd.read_csv(results_path)
    except (OSError, ValueError) as exc:
        raise ViewerDataError(f"{results_path}: unreadable ({type(exc).__name__}: {exc})") from exc
    summary = root / "summary.md"
    return SweepInfo(root=root, results=results, summary_md=summary.read_text() if summary.is_file() else None,
                     plots=sorted(root.glob("mAA_vs_*.png")),
                     runs=[p for p in find_runs(root, max_depth=3) if p != root])
