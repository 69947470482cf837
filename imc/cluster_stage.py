"""Stage ``cluster`` (IMC 2025 only): one dataset's images -> clusters (scenes) + outliers -> ``clusters-<fp>.json``.

Reads the verified match graph (inliers per pair of ``verified-<fp>.h5``, the pairs of
``pairs-<fp>.txt``) and the mapper's sub-models (``sfm-<fp>/poses.csv``: each registered image in
the largest model that registered it, so the models partition the registered images) and applies
:func:`imc.cluster.cluster_images` with ``cluster.min_inliers`` / ``cluster.min_cluster_size``:
sub-models first, graph components of the rest, everything else ``outliers``.

Poses: an image keeps its pose only when it came from its cluster's model (the model most of the
cluster's registered images came from); a cluster grown from the graph alone, an outlier, or an
image posed by another model gets ``nan`` in the CSV. The file::

    {"clusters": [{"name": "cluster0", "model": 0, "images": [...]}, ...], "outliers": [...]}
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .cluster import OUTLIERS, ClusterOptions, cluster_images
from .h5io import ResumableH5, pair_key
from .io_utils import atomic_write_json
from .pairs import read_pairs
from .reconstruct import Pose, read_poses_csv

if TYPE_CHECKING:
    from .pipeline import SceneContext

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class ClusterResult:
    """What the CSV writer needs: image_path -> cluster name (or ``outliers``), and the poses kept."""

    labels: dict[str, str] = field(default_factory=dict)
    poses: dict[str, Pose] = field(default_factory=dict)
    sizes: list[int] = field(default_factory=list)

    @property
    def n_outliers(self) -> int:
        return sum(label == OUTLIERS for label in self.labels.values())


def inlier_graph(verified_path: Path, pairs_path: Path) -> dict[tuple[str, str], int]:
    """(image a, image b) -> verified inlier count, for every listed pair that was verified."""
    store = ResumableH5(verified_path)
    graph = {}
    for a, b in read_pairs(pairs_path):
        key = pair_key(a, b)
        if key in store:
            graph[(a, b)] = len(store.get(key)["matches"])
    return graph


def main(conf: dict[str, Any], verified_path: Path, pairs_path: Path, sfm_dir: Path, image_paths: list[str],
         out_path: Path) -> Path:
    """Write ``out_path`` unless it exists; return it."""
    if out_path.is_file():
        return out_path
    poses = read_poses_csv(sfm_dir / "poses.csv").poses
    n_models = max((p.model for p in poses.values()), default=-1) + 1
    submodels = [[i for i in image_paths if i in poses and poses[i].model == k] for k in range(n_models)]
    options = ClusterOptions(min_inliers=int(conf["min_inliers"]), min_cluster_size=int(conf["min_cluster_size"]))
    graph = {pair: n for pair, n in inlier_graph(verified_path, pairs_path).items()
             if pair[0] in image_paths and pair[1] in image_paths}
    clustering = cluster_images(image_paths, graph, options=options, submodels=submodels)
    clusters = []
    for name, members in zip(clustering.names, clustering.clusters):
        models = Counter(poses[i].model for i in members if i in poses)
        clusters.append({"name": name, "model": models.most_common(1)[0][0] if models else None, "images": list(members)})
    log.info("cluster: %d image(s) -> %d cluster(s) %s, %d outlier(s)", len(image_paths), len(clusters),
             [len(c["images"]) for c in clusters], len(clustering.outliers))
    atomic_write_json(out_path, {"clusters": clusters, "outliers": list(clustering.outliers)})
    return out_path


def read_result(path: Path, poses: dict[str, Pose]) -> ClusterResult:
    """Labels from ``clusters-<fp>.json``; of ``poses`` (poses.csv) those of each cluster's own model."""
    data = json.loads(Path(path).read_text())
    result = ClusterResult(labels={i: OUTLIERS for i in data["outliers"]})
    for cluster in data["clusters"]:
        result.sizes.append(len(cluster["images"]))
        for image in cluster["images"]:
            result.labels[image] = cluster["name"]
            pose = poses.get(image)
            if pose is not None and pose.model == cluster["model"]:
                result.poses[image] = pose
    return result


def run_stage(ctx: "SceneContext", ext: str | None = None) -> Path:
    return main(ctx.conf["cluster"], ctx.plan.path("verified"), ctx.plan.path("pairs"), ctx.plan.path("sfm"),
                list(ctx.scene.image_paths), ctx.plan.path("cluster"))
