"""Figures: keypoints and matches (matplotlib, rendered to PNG bytes), the 3D model (plotly).

Matplotlib figures are built with :class:`matplotlib.figure.Figure` (no pyplot global state), so
they are safe in Streamlit's threads and in tests.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from .data import DisplayImage, Keypoints, ModelData, PairMatches
from .geometry import (
    AlignmentError,
    CameraAlignment,
    align_cameras,
    camera_center,
    frustum_corners,
    frustum_segments,
    inlier_points_mask,
    robust_extent,
)

if TYPE_CHECKING:
    import plotly.graph_objects as go

INLIER_COLOR = "#1fbf3f"
OUTLIER_COLOR = "#e03030"
RAW_COLOR = "#9a9a9a"
GT_COLOR = "#111111"
MODEL_COLORS = ("#1f77b4", "#ff7f0e", "#9467bd", "#17becf", "#d62728", "#8c564b", "#e377c2", "#bcbd22",
                "#2ca02c", "#7f7f7f")


def figure_png(fig: Figure, dpi: int = 100) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def figure_jpeg(fig: Figure, dpi: int = 100, quality: int = 88) -> bytes:
    """Smaller than PNG for photos (what the browser viewer sends)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="jpeg", dpi=dpi, pil_kwargs={"quality": quality})
    return buf.getvalue()


def keypoints_figure(image: DisplayImage, kps: Keypoints, *, title: str | None = None) -> Figure:
    """Keypoints coloured by score; ``title=""`` draws no title."""
    h, w = image.rgb.shape[:2]
    band = 0 if title == "" else 40
    fig = Figure(figsize=(w / 100, (h + band) / 100), dpi=100)
    ax = fig.add_axes((0, 0, 1, h / (h + band)))
    ax.imshow(image.rgb)
    xy = kps.keypoints * image.scale
    if len(xy):
        ax.scatter(xy[:, 0], xy[:, 1], s=10, c=kps.scores, cmap="spring", linewidths=0, alpha=0.9)
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    ax.axis("off")
    if title != "":
        fig.suptitle(title or f"{kps.image_path}: {len(xy)} keypoints", fontsize=9, y=0.995, va="top")
    return fig


def side_by_side(img0: np.ndarray, img1: np.ndarray, gap: int = 10) -> tuple[np.ndarray, int]:
    """Both images on one canvas, top-aligned; returns the canvas and the x offset of image 1."""
    h = max(img0.shape[0], img1.shape[0])
    canvas = np.full((h, img0.shape[1] + gap + img1.shape[1], 3), 255, dtype=np.uint8)
    canvas[: img0.shape[0], : img0.shape[1]] = img0
    offset = img0.shape[1] + gap
    canvas[: img1.shape[0], offset:] = img1
    return canvas, offset


@dataclass(kw_only=True)
class MatchStyle:
    show_raw: bool = True  # matches rejected by verification (red), or all raw matches (grey) if not verified
    show_inliers: bool = True  # verified matches (green)
    max_lines: int = 2000
    linewidth: float = 0.6


def matches_figure(image0: DisplayImage, image1: DisplayImage, pair: PairMatches, *,
                   style: MatchStyle | None = None, title: str | None = None) -> Figure:
    """Raw matches (red: rejected by verification; grey when the pair was never verified), inliers green.

    Drawn at the display images' own resolution (one figure pixel per image pixel at dpi 100);
    ``title=""`` draws no title.
    """
    style = style or MatchStyle()
    canvas, offset = side_by_side(image0.rgb, image1.rgb)
    h, w = canvas.shape[:2]
    band = 0 if title == "" else 40
    fig = Figure(figsize=(w / 100, (h + band) / 100), dpi=100)
    ax = fig.add_axes((0, 0, 1, h / (h + band)))
    ax.imshow(canvas)
    mask = pair.inlier_mask
    verified = len(pair.inliers) > 0
    rng = np.random.default_rng(0)

    def draw(m: np.ndarray, color: str, alpha: float, z: int) -> None:
        if len(m) == 0:
            return
        if len(m) > style.max_lines:
            m = m[np.sort(rng.choice(len(m), style.max_lines, replace=False))]
        p0 = pair.keypoints0[m[:, 0]] * image0.scale
        p1 = pair.keypoints1[m[:, 1]] * image1.scale + [offset, 0]
        ax.add_collection(LineCollection(np.stack([p0, p1], axis=1), colors=color, linewidths=style.linewidth,
                                         alpha=alpha, zorder=z))
        ax.scatter(np.r_[p0[:, 0], p1[:, 0]], np.r_[p0[:, 1], p1[:, 1]], s=2, c=color, linewidths=0, zorder=z)

    if style.show_raw:
        draw(pair.matches[~mask] if verified else pair.matches, OUTLIER_COLOR if verified else RAW_COLOR, 0.5, 2)
    if style.show_inliers:
        draw(pair.inliers, INLIER_COLOR, 0.8, 3)
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    ax.axis("off")
    default = (f"{pair.image0.rsplit('/', 1)[-1]} - {pair.image1.rsplit('/', 1)[-1]}: "
               f"{len(pair.matches)} matches, {len(pair.inliers)} inliers")
    if title != "":
        fig.suptitle(title or default, fontsize=9, y=0.995, va="top")
    return fig


# ---------------------------------------------------------------------------------------------- 3D
@dataclass(kw_only=True)
class ModelView:
    """What the 3D figure shows, after the optional alignment to ground truth."""

    models: list[ModelData]
    gt: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    alignments: dict[int, CameraAlignment] = field(default_factory=dict)  # model index -> alignment
    notes: list[str] = field(default_factory=list)


def align_models(models: list[ModelData], gt: dict[str, tuple[np.ndarray, np.ndarray]]) -> ModelView:
    """Move every model that shares >= 3 images with ``gt`` into the ground-truth frame (Umeyama on centres).

    Models that cannot be aligned are left out of the view when at least one could (they live in
    another frame); without any alignment the models are shown as reconstructed, without ground truth.
    """
    if not gt:
        return ModelView(models=models)
    moved, alignments, notes = [], {}, []
    for m in models:
        try:
            a = align_cameras(m.poses(), gt)
        except AlignmentError as exc:
            notes.append(f"model {m.index}: not aligned to ground truth ({exc})")
            continue
        sim = a.transform
        cameras = []
        for c in m.cameras:
            R, t = sim.apply_to_pose(c.R, c.t)
            cameras.append(type(c)(image_path=c.image_path, R=R, t=t, K=c.K, width=c.width, height=c.height))
        moved.append(ModelData(index=m.index, points=sim.apply(m.points).astype(np.float32), colors=m.colors,
                               cameras=cameras, n_points_total=m.n_points_total))
        alignments[m.index] = a
    if not moved:
        return ModelView(models=models, notes=notes + ["ground truth not shown: no model could be aligned"])
    return ModelView(models=moved, gt=gt, alignments=alignments, notes=notes)


def model_figure(view: ModelView, *, color_by: str = "model", point_size: float = 2.0,
                 height: int = 650) -> go.Figure:
    """Points and camera frusta per model (one colour each); ground-truth cameras in black when aligned."""
    import plotly.graph_objects as go

    fig = go.Figure()
    all_points = [m.points for m in view.models if len(m.points)]
    centers = [camera_center(c.R, c.t) for m in view.models for c in m.cameras]
    centers += [camera_center(R, t) for R, t in view.gt.values()]
    extent = robust_extent(np.vstack(all_points) if all_points else np.array(centers).reshape(-1, 3))
    size = 0.08 * extent
    for m in view.models:
        color = MODEL_COLORS[m.index % len(MODEL_COLORS)]
        keep = inlier_points_mask(m.points)
        pts = m.points[keep]
        if color_by == "rgb" and len(pts):
            marker_color = [f"rgb({r},{g},{b})" for r, g, b in m.colors[keep]]
        else:
            marker_color = color
        label = f"model {m.index}: {len(m.cameras)} images, {m.n_points_total} points"
        fig.add_trace(go.Scatter3d(x=pts[:, 0], y=pts[:, 1], z=pts[:, 2], mode="markers", name=label,
                                   legendgroup=f"m{m.index}", marker=dict(size=point_size, color=marker_color),
                                   hoverinfo="skip"))
        if m.cameras:
            seg = np.vstack([frustum_segments(frustum_corners(c.R, c.t, c.K, c.width, c.height, size))
                             for c in m.cameras])
            fig.add_trace(go.Scatter3d(x=seg[:, 0], y=seg[:, 1], z=seg[:, 2], mode="lines",
                                       line=dict(color=color, width=3), name=f"model {m.index} cameras",
                                       legendgroup=f"m{m.index}", showlegend=False, hoverinfo="skip"))
            cc = np.array([camera_center(c.R, c.t) for c in m.cameras])
            fig.add_trace(go.Scatter3d(x=cc[:, 0], y=cc[:, 1], z=cc[:, 2], mode="markers",
                                       marker=dict(size=3, color=color), name=f"model {m.index} centres",
                                       legendgroup=f"m{m.index}", showlegend=False,
                                       text=[c.image_path.rsplit("/", 1)[-1] for c in m.cameras],
                                       hovertemplate="%{text}<extra></extra>"))
    if view.gt:
        _add_ground_truth(fig, view, size)
    fig.update_layout(height=height, margin=dict(l=0, r=0, t=30, b=0), uirevision="model",
                      scene=dict(aspectmode="data", xaxis_title="x", yaxis_title="y", zaxis_title="z",
                                 camera=default_view([c for m in view.models for c in m.cameras])),
                      legend=dict(yanchor="top", y=0.99, xanchor="left", x=0.01))
    return fig


def default_view(cameras: list) -> dict:
    """Plotly scene camera behind and above the photographers, with their mean image "up" upwards.

    Works in any world frame (COLMAP's, or the ground truth's after alignment): image y points down,
    so row 1 of ``R`` (the camera's y axis in world coordinates) gives the world's down direction.
    """
    if not cameras:
        return dict(up=dict(x=0, y=-1, z=0), eye=dict(x=0.3, y=-1.2, z=-1.6))
    up = -np.mean([c.R[1] for c in cameras], axis=0)
    forward = np.mean([c.R[2] for c in cameras], axis=0)
    if np.linalg.norm(up) < 1e-6 or np.linalg.norm(forward) < 1e-6:  # cameras all around: any view
        return dict(eye=dict(x=1.25, y=1.25, z=1.25))
    up, forward = up / np.linalg.norm(up), forward / np.linalg.norm(forward)
    eye = -forward + 0.4 * up
    eye = 2.4 * eye / np.linalg.norm(eye)
    return dict(up=dict(zip("xyz", map(float, up))), eye=dict(zip("xyz", map(float, eye))))


def _add_ground_truth(fig: go.Figure, view: ModelView, size: float) -> None:
    import plotly.graph_objects as go

    shown = sorted({p for a in view.alignments.values() for p in a.image_paths})
    K_by_image = {c.image_path: c for m in view.models for c in m.cameras}
    seg = []
    for p in sorted(view.gt):
        R, t = view.gt[p]
        ref = K_by_image.get(p)
        K = ref.K if ref is not None else np.array([[1.0, 0, 0.5], [0, 1.0, 0.5], [0, 0, 1]])
        w, h = (ref.width, ref.height) if ref is not None else (1.0, 1.0)
        seg.append(frustum_segments(frustum_corners(R, t, K, w, h, size)))
    seg_arr = np.vstack(seg)
    fig.add_trace(go.Scatter3d(x=seg_arr[:, 0], y=seg_arr[:, 1], z=seg_arr[:, 2], mode="lines",
                               line=dict(color=GT_COLOR, width=2, dash="dash"), legendgroup="gt",
                               name=f"ground truth ({len(view.gt)} cameras, {len(shown)} aligned)", hoverinfo="skip"))
    pred_centers = {c.image_path: camera_center(c.R, c.t) for m in view.models for c in m.cameras}
    err = []
    for p in shown:
        if p in pred_centers:
            err += [pred_centers[p], camera_center(*view.gt[p]), np.full(3, np.nan)]
    if err:
        e = np.vstack(err)
        fig.add_trace(go.Scatter3d(x=e[:, 0], y=e[:, 1], z=e[:, 2], mode="lines", legendgroup="gt",
                                   line=dict(color="#d62728", width=4), name="centre error (pred - gt)",
                                   hoverinfo="skip"))


def write_model_html(fig: go.Figure, path: str | os.PathLike) -> None:
    """Self-contained HTML (plotly.js inlined: opens offline), filling the browser window."""
    import plotly.graph_objects as go

    from ..io_utils import atomic_path

    page = go.Figure(fig).update_layout(height=None, autosize=True)
    with atomic_path(path) as tmp:
        page.write_html(str(tmp), include_plotlyjs=True, full_html=True, default_height="97vh")
