"""Stage ``orient``: each image's in-plane turn to upright → ``orient-<fp>.json``.

A turn ``t`` (0, 90, 180 or 270 degrees) means ``np.rot90(stored, t // 90)`` (counter-clockwise) is
upright; the features stage extracts on that image and turns the keypoints back to the stored
pixel grid (``imc.extract.upright`` / ``turn_back``), so matches, poses and the CSV stay in the
stored frame.

Method (``orient.enabled: true``): ALIKED (``orient.model``, ``resize_max``, ``max_num_keypoints``,
small) is extracted on each image at the four turns. Each image is matched, at the four turns,
against its ``partners`` neighbours in the listed order (LightGlue, ``aliked_lightglue``) as
stored; the RANSAC (fundamental matrix) inliers give, per pair, the relative turn between the two
(ALIKED is not rotation invariant: only the right relative turn matches). A relative turn is
trusted when it has at least ``min_inliers`` inliers and ``min_ratio`` times those of any other
turn. The trusted edges, strongest first (a maximum spanning forest), fix the turns up to one
turn per connected group; each group takes the offset that leaves most of its images unturned
(most photos are stored upright). Last, an image keeps turn 0 unless its chosen turn clearly
beats the stored orientation against its partners (``min_inliers``, ``min_ratio``): an already
upright image is never turned on thin evidence.

Off (``orient.enabled: false``, the default): every turn is 0 and nothing is computed.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from .extract import upright
from .images import ImageReadError, read_image
from .io_utils import atomic_write_json
from .verify import magsac_fundamental

if TYPE_CHECKING:
    from .pipeline import SceneContext

log = logging.getLogger(__name__)

TURNS = (0, 90, 180, 270)
VERSION = 1


def read_turns(path: Path) -> dict[str, int]:
    """Image path -> turn (degrees), from an ``orient-<fp>.json``."""
    return {p: int(v["turn"]) for p, v in json.loads(Path(path).read_text())["images"].items()}


def partner_pairs(n: int, partners: int) -> list[tuple[int, int]]:
    """Each image with its ``partners`` nearest neighbours in the listed order (a ring), as unordered pairs."""
    out: set[tuple[int, int]] = set()
    for i in range(n):
        for d in range(1, partners // 2 + partners % 2 + 1):
            j = (i + d) % n
            if j != i:
                out.add((min(i, j), max(i, j)))
    return sorted(out)


def count_inliers(k0: np.ndarray, k1: np.ndarray, matches: np.ndarray, max_error_px: float) -> int:
    if len(matches) < 8:
        return 0
    _, mask = magsac_fundamental(k0[matches[:, 0]], k1[matches[:, 1]], max_error_px, 0.999, 10000)
    return 0 if mask is None else int(mask.sum())


def trusted(counts: list[int], min_inliers: int, min_ratio: float) -> int | None:
    """The index of the turn that clearly wins ``counts`` (inliers per turn), or None."""
    best = int(np.argmax(counts))
    others = max(c for i, c in enumerate(counts) if i != best)
    if counts[best] >= min_inliers and counts[best] >= min_ratio * max(others, 1):
        return best
    return None


def solve(n: int, edges: dict[tuple[int, int], list[int]], *, min_inliers: int, min_ratio: float,
          min_join_edges: int = 2) -> tuple[list[int], list[dict[int, int]]]:
    """Turns (indices 0..3) from per-pair inliers: ``edges[(i, j)][k]`` = inliers of image i turned by k
    quarter turns against image j as stored. Returns the turns and each image's evidence (turn -> inliers).

    Groups of images are joined strongest trusted edge first (Kruskal). A join that turns one group of several
    images against another needs ``min_join_edges`` trusted edges between them agreeing on that turn: on ETH3D
    pipes one wrong 30-inlier edge (90 deg against 12 inliers at 0) turned a pair of upright photos that match
    each other by 270 deg; Middlebury temple's 5 views stored at 180 deg join through 4 agreeing edges. A join
    that turns nothing, or that turns a single image (checked against all its evidence below), needs only its
    edge."""
    rel = {e: trusted(c, min_inliers, min_ratio) for e, c in edges.items()}
    strong = sorted(((c[r], e, r) for e, c in edges.items() if (r := rel[e]) is not None), key=lambda t: -t[0])
    group_of = list(range(n))          # each image's group ...
    members = {i: [i] for i in range(n)}
    turn = [0] * n                     # ... and its turn in that group's frame: t_i - t_j = r on every used edge
    for _, (i, j), r in strong:
        gi, gj = group_of[i], group_of[j]
        if gi == gj:
            continue
        shift = (turn[i] - r - turn[j]) % 4  # group j's frame in group i's
        if shift and len(members[gi]) > 1 and len(members[gj]) > 1:
            agreeing = sum(1 for (p, q), rr in rel.items() if rr is not None and (
                (group_of[p] == gi and group_of[q] == gj and (turn[p] - rr - turn[q]) % 4 == shift)
                or (group_of[p] == gj and group_of[q] == gi and (rr + turn[q] - turn[p]) % 4 == shift)))
            if agreeing < min_join_edges:
                continue
        for k in members.pop(gj):
            group_of[k] = gi
            turn[k] = (turn[k] + shift) % 4
            members[gi].append(k)
    for group in members.values():
        votes = np.bincount([turn[i] for i in group], minlength=4)
        offset = int(np.argmax(votes))  # ties: the smallest offset
        for i in group:
            turn[i] = (turn[i] - offset) % 4
    evidence = [{k: 0 for k in range(4)} for _ in range(n)]
    for (i, j), c in edges.items():
        for k in range(4):  # image i at turn k against j at its chosen turn: relative turn k - t_j
            evidence[i][k] += c[(k - turn[j]) % 4]
            evidence[j][k] += c[(turn[i] - k) % 4]
    for i in range(n):
        e = evidence[i]
        if turn[i] != 0 and not (e[turn[i]] >= min_inliers and e[turn[i]] >= min_ratio * max(e[0], 1)):
            turn[i] = 0
    return turn, evidence


def main(conf: dict[str, Any], image_paths: list[str], image_file: Callable[[str], Path], orient_path: Path, *,
         sha1s: dict[str, str], load_extractor: Callable[[], Any], load_matcher: Callable[[], Any],
         device: torch.device, progress: bool = True) -> Path:
    """Write every image's turn to ``orient_path`` (``conf``: the ``orient`` section)."""
    if orient_path.exists():
        saved = json.loads(orient_path.read_text())["images"]
        if all(saved.get(p, {}).get("image_sha1") == sha1s[p] for p in image_paths):
            return orient_path
    if not conf["enabled"]:
        return atomic_write_json(orient_path, {"enabled": False, "images": {
            p: {"image_sha1": sha1s[p], "turn": 0} for p in image_paths}})
    return atomic_write_json(orient_path, estimate(conf, image_paths, image_file, sha1s=sha1s,
                                                   load_extractor=load_extractor, load_matcher=load_matcher,
                                                   device=device, progress=progress))


@torch.inference_mode()
def estimate(conf: dict[str, Any], image_paths: list[str], image_file: Callable[[str], Path], *,
             sha1s: dict[str, str], load_extractor: Callable[[], Any], load_matcher: Callable[[], Any],
             device: torch.device, progress: bool = True) -> dict[str, Any]:
    extractor, matcher = load_extractor(), load_matcher()
    feats: dict[int, list[dict[str, np.ndarray]]] = {}
    errors: dict[str, str] = {}
    for i, p in enumerate(tqdm(image_paths, desc="orient features", unit="img", disable=not progress)):
        try:
            rgb = read_image(image_file(p), resize_max=conf["resize_max"]).rgb
        except ImageReadError as exc:
            errors[p] = str(exc)
            continue
        per_turn = []
        for t in TURNS:
            img = upright(rgb, t)
            tensor = torch.from_numpy(img).permute(2, 0, 1)[None].to(device=device, dtype=torch.float32) / 255.0
            f = extractor(tensor)[0]
            per_turn.append({"keypoints": f.keypoints.float().cpu().numpy(),
                             "descriptors": f.descriptors.float().cpu().numpy(),
                             "image_size": np.array(img.shape[1::-1], np.float32)})
        feats[i] = per_turn
    usable = sorted(feats)
    pairs = [(usable[a], usable[b]) for a, b in partner_pairs(len(usable), int(conf["partners"]))]
    edges: dict[tuple[int, int], list[int]] = {}
    for i, j in tqdm(pairs, desc="orient matches", unit="pair", disable=not progress):
        counts = []
        for k in range(4):
            f0, f1 = feats[i][k], feats[j][0]
            m = match(matcher, f0, f1, device)
            counts.append(count_inliers(f0["keypoints"], f1["keypoints"], m, float(conf["max_error_px"])))
        edges[(usable.index(i), usable.index(j))] = counts
    turns, evidence = solve(len(usable), edges, min_inliers=int(conf["min_inliers"]), min_ratio=float(conf["min_ratio"]))
    images = {}
    for p in image_paths:
        entry: dict[str, Any] = {"image_sha1": sha1s[p], "turn": 0}
        i = image_paths.index(p)
        if i in feats:
            u = usable.index(i)
            entry.update(turn=TURNS[turns[u]], inliers={str(TURNS[k]): v for k, v in evidence[u].items()})
        else:
            entry["error"] = errors[p]
        images[p] = entry
    turned = {p: e["turn"] for p, e in images.items() if e["turn"]}
    log.info("orient: %d of %d images turned %s", len(turned), len(image_paths), turned)
    return {"enabled": True, "images": images,
            "pairs": [{"image0": image_paths[usable[i]], "image1": image_paths[usable[j]],
                       "inliers_by_turn_of_image0": dict(zip(map(str, TURNS), c))} for (i, j), c in edges.items()]}


def match(model: Any, f0: dict[str, np.ndarray], f1: dict[str, np.ndarray], device: torch.device) -> np.ndarray:
    from .matchers import get as get_matcher

    return get_matcher("lightglue").match(model, f0, f1, device)["matches"]


def run_stage(ctx: "SceneContext", ext: str | None = None) -> Path:
    from .features.aliked import load_network
    from .matchers import get as get_matcher

    conf = ctx.conf["orient"]
    lg = get_matcher("lightglue")
    lg_conf = {**ctx.conf["matchers"]["lightglue"], "weights": "aliked_lightglue"}
    return main(conf, ctx.scene.image_paths, ctx.scene.file, ctx.plan.path("orient"), sha1s=ctx.sha1s,
                device=ctx.device, progress=ctx.progress,
                load_extractor=lambda: ctx.networks.get(
                    "orient:aliked", conf,
                    lambda c, **kw: load_network(c["model"], max_num_keypoints=c["max_num_keypoints"],
                                                 detection_threshold=c["detection_threshold"], nms_radius=c["nms_radius"],
                                                 **kw)),
                load_matcher=lambda: ctx.networks.get("matcher:lightglue", lg_conf, lg.load))
