"""Streamlit viewer of a run or a sweep folder.

    python -m streamlit run imc/viewer/app.py -- --run outputs/demo [--labels train_labels.csv]
    (or: make viewer RUN=outputs/demo)

Reads only what the pipeline wrote (see :mod:`imc.viewer.data`); every loader is cached on the
file path and its mtime, so a page load recomputes nothing. A missing or partial run gives a
message, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from pathlib import Path
from typing import Iterator

import pandas as pd
import streamlit as st

from imc.viewer import data, figures

log = logging.getLogger("imc.viewer")
DISPLAY_MAX_SIDE = 800  # pixels of the longest side of a displayed photo


def script_arguments(argv: list[str]) -> argparse.Namespace:
    """``--run PATH [--labels CSV]`` from the arguments after streamlit's ``--``."""
    parser = argparse.ArgumentParser(prog="imc viewer", add_help=False, allow_abbrev=False)
    parser.add_argument("--run", default=None)
    parser.add_argument("--labels", default=None)
    args, _ = parser.parse_known_args(argv)
    return args


@contextlib.contextmanager
def guarded(what: str) -> Iterator[None]:
    """Turn a failure inside one section into a message; the other sections still render."""
    try:
        yield
    except data.ViewerDataError as exc:
        st.warning(f"{what}: {exc}")
    except Exception as exc:  # noqa: BLE001 - the page must never show a traceback
        log.exception("viewer: %s failed", what)
        st.error(f"{what} failed: {type(exc).__name__}: {exc}")


# ---------------------------------------------------------------------------------------------- caches
# Keys: paths plus `stamp` values (mtimes), so an updated file is re-read and nothing else is.
@st.cache_data(show_spinner=False, max_entries=8)
def cached_run(path: str, stamp: float) -> data.RunInfo:
    return data.load_run(path)


@st.cache_data(show_spinner="scoring...", max_entries=8)
def cached_score(path: str, stamp: float, labels: str, labels_stamp: float) -> dict:
    return data.score_run(cached_run(path, stamp), labels)


@st.cache_data(show_spinner=False, max_entries=8)
def cached_sweep(path: str, stamp: float) -> data.SweepInfo:
    return data.load_sweep(path)


@st.cache_data(show_spinner=False, max_entries=32)
def cached_pair_table(path: str, stamp: float, scene: str, stamps: tuple[float, ...]) -> pd.DataFrame:
    return data.pair_table(cached_run(path, stamp).scene(scene))


@st.cache_data(show_spinner=False, max_entries=32)
def cached_feature_images(path: str, stamp: float, scene: str, features_stamp: float) -> list[str]:
    return data.feature_images(cached_run(path, stamp).scene(scene))


@st.cache_data(show_spinner="drawing keypoints...", max_entries=64)
def cached_keypoints_png(path: str, stamp: float, scene: str, image_path: str,
                         features_stamp: float) -> tuple[bytes, bool, int]:
    run = cached_run(path, stamp)
    kps = data.load_keypoints(run.scene(scene), image_path)
    image = data.load_display_image(run, image_path, kps.image_size, max_side=DISPLAY_MAX_SIDE)
    return figures.figure_jpeg(figures.keypoints_figure(image, kps, title="")), image.found, len(kps.keypoints)


@st.cache_data(show_spinner="drawing matches...", max_entries=64)
def cached_matches_png(path: str, stamp: float, scene: str, image0: str, image1: str, show_raw: bool,
                       show_inliers: bool, stamps: tuple[float, ...]) -> tuple[bytes, int, int]:
    run = cached_run(path, stamp)
    pair = data.load_pair(run.scene(scene), image0, image1)
    im0 = data.load_display_image(run, image0, pair.image_size0, max_side=DISPLAY_MAX_SIDE)
    im1 = data.load_display_image(run, image1, pair.image_size1, max_side=DISPLAY_MAX_SIDE)
    style = figures.MatchStyle(show_raw=show_raw, show_inliers=show_inliers)
    fig = figures.matches_figure(im0, im1, pair, style=style, title="")
    return figures.figure_jpeg(fig), len(pair.matches), len(pair.inliers)


@st.cache_data(show_spinner="reading the models...", max_entries=16)
def cached_models(sfm_dir: str, sfm_stamp: float) -> list[data.ModelData]:
    return data.load_models(sfm_dir, max_points=50_000)


@st.cache_data(show_spinner=False, max_entries=16)
def cached_gt(labels: str, labels_stamp: float, scene: str) -> dict:
    return data.load_gt_poses(labels, scene)


# ---------------------------------------------------------------------------------------------- pages
def show_scene_table(run: data.RunInfo) -> None:
    table = data.scene_table(run)
    st.dataframe(table, hide_index=True, key="scene_table", column_config={
        "mAA": st.column_config.NumberColumn("mAA", format="%.4f"),
        "seconds": st.column_config.NumberColumn("seconds", format="%.1f")})


def labels_and_scores(run: data.RunInfo, path: str, stamp: float) -> Path | None:
    """The labels file from the sidebar; fills the scenes' mAA from score.json or by scoring."""
    default = script_arguments(sys.argv[1:]).labels or data.default_labels(run)
    labels_text = st.sidebar.text_input("Labels CSV (optional: mAA, ground-truth cameras)",
                                        value=str(default) if default else "", key="labels_path").strip()
    labels = Path(labels_text) if labels_text else None
    if labels is not None and not labels.is_file():
        st.sidebar.warning(f"labels file {labels} not found")
        labels = None
    if run.score is not None:
        st.caption(f"mAA from {run.root / 'score.json'}")
    elif labels is not None:
        with guarded("scoring against the labels"):
            score = cached_score(path, stamp, str(labels), data.stamp(labels))
            data.apply_scores(run.scenes, score)
            run.score = score
            st.caption(f"mAA computed from {labels}")
    if run.score is not None and run.score.get("overall") is not None:
        st.metric("overall mAA", f"{float(run.score['overall']):.4f}")
    return labels


def show_keypoints(run: data.RunInfo, path: str, stamp: float, scene: data.SceneInfo) -> None:
    st.subheader("Keypoints")
    features = scene.path(data.KEYPOINTS)
    if features is None:
        st.warning(f"no keypoints file for {scene.name} ({scene.paths.get(data.KEYPOINTS, 'not in the report')})")
        return
    images = cached_feature_images(path, stamp, scene.name, data.stamp(features))
    if not images:
        st.warning(f"{features} holds no image yet")
        return
    image_path = st.selectbox("Image", images, key=f"image:{scene.name}",
                              format_func=lambda p: p.rsplit("/", 1)[-1])
    png, found, n = cached_keypoints_png(path, stamp, scene.name, image_path, data.stamp(features))
    st.caption(f"{n} keypoints (colour: detection score)" + ("" if found else
               f"; image file not found under data.root={run.data_root}: drawn on a blank canvas"))
    st.image(png, width="stretch")


def show_matches(run: data.RunInfo, path: str, stamp: float, scene: data.SceneInfo) -> None:
    st.subheader("Matches")
    stamps = tuple(data.stamp(scene.paths.get(s)) for s in ("pairs", data.RAW_MATCHES, "verified"))
    pairs = cached_pair_table(path, stamp, scene.name, stamps)
    if pairs.empty:
        st.info("the pairs file lists no pair")
        return
    with st.expander(f"pair list ({len(pairs)} pairs)"):
        st.dataframe(pairs, hide_index=True, key=f"pairs:{scene.name}")

    def label(i: int) -> str:
        r = pairs.iloc[i]
        count = lambda v: "-" if pd.isna(v) else str(int(v))  # noqa: E731
        return (f"{r.image0.rsplit('/', 1)[-1]} - {r.image1.rsplit('/', 1)[-1]}  "
                f"({count(r.matches)} matches, {count(r.inliers)} inliers)")

    i = st.selectbox("Pair (sorted by inliers)", range(len(pairs)), format_func=label, key=f"pair:{scene.name}")
    show = st.radio("Show", ["matches and inliers", "inliers only", "matches only"], horizontal=True,
                    key=f"show:{scene.name}")
    row = pairs.iloc[i]
    png, n_matches, n_inliers = cached_matches_png(path, stamp, scene.name, row.image0, row.image1,
                                                   show != "inliers only", show != "matches only", stamps)
    st.caption(f"{n_matches} matches before verification (red: rejected; grey: pair not verified), "
               f"{n_inliers} verified inliers (green)")
    st.image(png, width="stretch")


def show_model(run: data.RunInfo, scene: data.SceneInfo, labels: Path | None) -> None:
    st.subheader("3D model")
    sfm = scene.path("sfm")
    if sfm is None or not data.model_dirs(sfm):
        st.warning(f"no reconstruction for {scene.name} yet ({scene.paths.get('sfm', 'not in the report')}); "
                   f"status: {scene.status}")
        return
    models = cached_models(str(sfm), data.stamp(sfm / "models"))
    if not models:
        st.warning(f"{sfm / 'models'} holds no model")
        return
    cols = st.columns(3)
    color_by = cols[0].radio("Colour points by", ["model", "rgb"], horizontal=True, key=f"colour:{scene.name}")
    gt = {}
    if labels is not None:
        show_gt = cols[1].checkbox("Ground-truth cameras (aligned)", value=True, key=f"gt:{scene.name}")
        if show_gt:
            with guarded("reading the labels"):
                gt = cached_gt(str(labels), data.stamp(labels), scene.name)
                if not gt:
                    st.caption(f"{labels} has no ground truth for {scene.name}")
    view = figures.align_models(models, gt)
    for note in view.notes:
        st.caption(note)
    for k, a in view.alignments.items():
        st.caption(f"model {k}: aligned to ground truth on {len(a.image_paths)} images (scale "
                   f"{a.transform.scale:.3g}, {a.method.value}); median camera-centre error {a.median_error:.3g}")
    st.plotly_chart(figures.model_figure(view, color_by=color_by), theme=None, key=f"model:{scene.name}")


def show_run(path: str) -> None:
    stamp = data.run_stamp(path)
    run = cached_run(path, stamp)
    st.caption(f"run {run.root}" + ("" if run.complete else "  (incomplete)"))
    for problem in run.problems:
        st.warning(problem)
    if not run.scenes:
        st.warning(f"no scene of {run.root} has been processed yet: nothing to show")
        return
    labels = labels_and_scores(run, path, stamp)
    st.subheader("Scenes")
    show_scene_table(run)
    names = [s.name for s in run.scenes]
    scene = run.scene(st.selectbox("Scene", names, key=f"scene:{path}"))
    if scene.error:
        st.error(f"{scene.name} {scene.status}: {scene.error}")
    if scene.fallbacks:
        with st.expander(f"{len(scene.fallbacks)} fallback(s) (images with identity/zero rows)"):
            st.dataframe(pd.DataFrame(scene.fallbacks), hide_index=True)
    if scene.status == "not run":
        st.info(f"{scene.name} has no report.json yet: not processed, or being processed right now")
        return
    if not scene.paths:
        st.warning(f"{scene.name}: status {scene.status}; its report lists no stage outputs")
        return
    left, right = st.columns([1, 2], gap="medium")
    with left, guarded("keypoints"):
        show_keypoints(run, path, stamp, scene)
    with right, guarded("matches"):
        show_matches(run, path, stamp, scene)
    if labels is not None:
        with guarded("per-image errors"):
            show_image_errors(run, path, stamp, scene, labels)
    with guarded("3D model"):
        show_model(run, scene, labels)


@st.cache_data(show_spinner=False)
def cached_image_errors(path: str, stamp: float, scene: str, labels: str, labels_stamp: float) -> pd.DataFrame:
    run = cached_run(path, stamp)
    return data.image_errors(run, run.scene(scene), labels)


def show_image_errors(run: data.RunInfo, path: str, stamp: float, scene: data.SceneInfo, labels: Path) -> None:
    """Images ranked by their error against the ground truth, worst first; one chosen shows its pairs."""
    st.subheader("Images by error (worst first)")
    table = cached_image_errors(path, stamp, scene.name, str(labels), data.stamp(labels))
    st.dataframe(table, hide_index=True, key=f"errors:{scene.name}")
    image = st.selectbox("Image: its pairs and partners", list(table["image"]), key=f"worst:{scene.name}",
                         format_func=lambda p: p.rsplit("/", 1)[-1])
    stamps = tuple(data.stamp(scene.paths.get(s)) for s in ("pairs", data.RAW_MATCHES, "verified"))
    st.dataframe(data.pairs_of(cached_pair_table(path, stamp, scene.name, stamps), image), hide_index=True)


def show_sweep(path: str) -> list[Path]:
    sweep = cached_sweep(path, data.stamp(path))
    st.subheader(f"Sweep {sweep.root.name}")
    st.dataframe(sweep.results, hide_index=True, key="sweep_results")
    if sweep.summary_md:
        with st.expander("summary.md"):
            st.markdown(sweep.summary_md)
    if not sweep.plots:
        st.info("no mAA_vs_<param>.png plot in this sweep folder")
    for png in sweep.plots:
        st.image(str(png), caption=png.name)
    return sweep.runs


def pick_run(runs: list[Path], base: str, key: str) -> str | None:
    """A selector over the runs found below ``base`` (labels relative to it)."""
    if not runs:
        return None

    def label(p: str) -> str:
        try:
            return str(Path(p).relative_to(base))
        except ValueError:
            return p

    return st.selectbox(f"Run ({len(runs)} below {base})", [str(p) for p in runs], format_func=label, key=key)


def main() -> None:
    st.set_page_config(page_title="imc viewer", layout="wide")
    st.title("imc viewer")
    default = script_arguments(sys.argv[1:]).run or ""
    path = st.sidebar.text_input("Outputs folder (a run or a sweep)", value=default, key="run_path").strip()
    if not path:
        st.info("Enter the folder of a run (`python -m imc run ... output=DIR`) or of a sweep in the sidebar.")
        return
    kind = data.output_kind(path)
    if kind is data.OutputKind.MISSING:
        st.error(f"{path} does not exist: run `python -m imc run --config configs/demo.yaml` (or `make demo`) "
                 "first, or enter another folder")
        return
    if kind is data.OutputKind.EMPTY:
        st.warning(f"{path} holds no run (no summary.json, config.yaml, submission.csv or scenes/) "
                   "and no sweep (results.csv)")
        return
    with guarded("loading"):
        if kind is data.OutputKind.SWEEP:
            runs = show_sweep(path)
            chosen = pick_run(runs, path, key="sweep_run")
            if chosen:
                st.divider()
                show_run(chosen)
        elif kind is data.OutputKind.FOLDER:
            chosen = pick_run(data.find_runs(path), path, key="folder_run")
            if chosen:
                show_run(chosen)
        else:
            show_run(path)


if __name__ == "__main__":
    main()
