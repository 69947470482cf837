"""``refine_models``: what runs on the mapper's models before the poses are written.

1. ``sfm.checks``: an image whose pose disagrees with most of its verified inliers (flagged) is relocalised
   from the partners that pose does not agree with; the new pose replaces the mapper's when more verified
   inliers agree with it (:func:`pose_support`), otherwise the mapper's pose is kept.
2. ``sfm.localize``: images the largest model lacks (unregistered, or only in a smaller model) are
   localised against it.
3. ``sfm.merge``: the other images of a smaller model follow its anchors into the largest through a similarity
   (:mod:`imc.sfm.merge`): images both models registered, and (with ``sfm.localize``) its images relocalised
   into the largest; a model with fewer than 2 anchors, or whose anchors disagree, keeps its poses.
4. ``sfm.twoview``: images still without a pose get two-view poses, pair by pair (:mod:`imc.sfm.twoview`).

Every image gets a :class:`Provenance` (model, how it got its pose, reprojection error, observations).
"""

from __future__ import annotations

import copy
import enum
import logging
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pycolmap

from .checks import CheckOptions, ImageCheck, check_model, check_pair
from .data import TwoViewMatches
from .localize import Localization, LocalizeOptions, localize
from .merge import estimate_similarity
from .twoview import two_view_poses

log = logging.getLogger(__name__)


class How(str, enum.Enum):
    MAPPER = "mapper"
    RELOCALISED = "relocalised"
    MERGED = "merged"
    TWO_VIEW = "two_view"
    UNREGISTERED = "unregistered"


@dataclass(kw_only=True)
class Provenance:
    model: int = -1
    how: How = How.UNREGISTERED
    reprojection_error: float = float("nan")
    num_observations: int = 0
    flagged: bool = False
    note: str = ""


@dataclass(kw_only=True)
class RefineResult:
    poses: dict[str, tuple[pycolmap.Rigid3d, int]] = field(default_factory=dict)  # name -> (cam_from_world, model)
    provenance: dict[str, Provenance] = field(default_factory=dict)
    checks: dict[str, ImageCheck] = field(default_factory=dict)
    # pairs of a re-posed image with the partners its new pose does not agree with (``sfm.checks.remap``)
    pruned: set[tuple[str, str]] = field(default_factory=set)


def _R(pose: pycolmap.Rigid3d) -> np.ndarray:
    return np.asarray(pose.rotation.matrix())


def _t(pose: pycolmap.Rigid3d) -> np.ndarray:
    return np.asarray(pose.translation)


def _set_pose(rec: pycolmap.Reconstruction, image: pycolmap.Image, loc: Localization) -> None:
    """Register ``image`` (already in ``rec``, trivial frame) at ``loc``'s pose with its inlier observations."""
    frame = rec.frames[image.frame_id]
    frame.rig_from_world = loc.cam_from_world
    rec.register_frame(image.frame_id)
    rec.cameras[image.camera_id].params = loc.camera.params
    for k, pid in zip(loc.point2D_idxs, loc.point3D_ids):
        if int(k) < image.num_points2D() and not image.points2D[int(k)].has_point3D() and rec.exists_point3D(int(pid)):
            rec.add_observation(int(pid), pycolmap.TrackElement(image.image_id, int(k)))


def _partner_checks(rec: pycolmap.Reconstruction, name: str, pose: pycolmap.Rigid3d, camera: pycolmap.Camera,
                    features: dict[str, dict[str, Any]], matches: TwoViewMatches, options: CheckOptions,
                    exclude: set[str] = frozenset()) -> list[tuple[str, int, bool]]:
    """(partner, verified inliers, agrees) for each registered partner of ``name`` at ``pose`` (``exclude`` left
    out), by the pair test of :func:`check_model` (:meth:`CheckOptions.disagrees`)."""
    out = []
    for im in rec.images.values():
        if not im.has_pose or im.name == name or im.name in exclude:
            continue
        m = matches.get(name, im.name)
        if m is None or len(m) < 8:
            continue
        kp0 = features[name]["keypoints"][m[:, 0]].astype(np.float64) + 0.5
        kp1 = features[im.name]["keypoints"][m[:, 1]].astype(np.float64) + 0.5
        agreement, rot = check_pair(camera, pose, rec.cameras[im.camera_id], im.cam_from_world(), kp0, kp1, options)
        out.append((im.name, len(m), not options.disagrees(agreement, rot)))
    return out


def _agrees(rec: pycolmap.Reconstruction, name: str, pose: pycolmap.Rigid3d, camera: pycolmap.Camera,
            features: dict[str, dict[str, Any]], matches: TwoViewMatches, options: CheckOptions,
            exclude: set[str]) -> bool:
    """Does a candidate pose of ``name`` agree with most of its registered partners (``exclude`` left out)?"""
    checks = _partner_checks(rec, name, pose, camera, features, matches, options, exclude)
    return len(checks) >= 1 and sum(not ok for _, _, ok in checks) <= options.max_disagree_fraction * len(checks)


def pose_support(rec: pycolmap.Reconstruction, name: str, pose: pycolmap.Rigid3d, camera: pycolmap.Camera,
                 features: dict[str, dict[str, Any]], matches: TwoViewMatches, options: CheckOptions
                 ) -> tuple[int, set[str], set[str]]:
    """(verified inliers of the registered partners that agree with ``name`` at ``pose``, those partners, the
    checked partners that disagree)."""
    checks = _partner_checks(rec, name, pose, camera, features, matches, options)
    return sum(n for _, n, ok in checks if ok), {p for p, _, ok in checks if ok}, {p for p, _, ok in checks if not ok}


def _repose_flagged(rec: pycolmap.Reconstruction, k: int, name: str, features: dict[str, dict[str, Any]],
                    matches: TwoViewMatches, check_opts: CheckOptions, loc_opts: LocalizeOptions
                    ) -> tuple[Provenance, set[str]]:
    """A flagged image's other hypothesis: relocalised from the partners its mapper pose does *not* agree with
    (repeated structures give a wrong pose a consistent set of wrong matches), focal free unless its camera is
    shared. The pose with more agreeing verified inliers (:func:`pose_support`) is kept; a tie keeps the mapper's.
    Returns its provenance and, when re-posed, the partners the new pose does not agree with."""
    image = rec.find_image_with_name(name)
    old_pose, camera = image.cam_from_world(), copy.deepcopy(rec.cameras[image.camera_id])
    old_support, old_agreeing, _ = pose_support(rec, name, old_pose, camera, features, matches, check_opts)
    shared = any(im.camera_id == image.camera_id and im.name != name and im.has_pose for im in rec.images.values())
    camera.has_prior_focal_length = shared  # a flagged image's own focal is not trusted
    loc = localize(rec, name, features[name]["keypoints"], camera, matches, loc_opts, exclude=old_agreeing)
    new_support, new_disagreeing = -1, set()
    if loc is not None:
        new_support, _, new_disagreeing = pose_support(rec, name, loc.cam_from_world, loc.camera, features, matches,
                                                       check_opts)
    note = f"flagged; mapper pose supported by {old_support} verified inliers, the other hypothesis by " + \
        ("none (not localised)" if loc is None else f"{new_support}")
    if loc is not None and new_support > old_support:
        rec.deregister_frame(image.frame_id)
        _set_pose(rec, rec.find_image_with_name(name), loc)
        log.info("checks: model %d image %s re-posed (%s)", k, name, note)
        return Provenance(model=k, how=How.RELOCALISED, flagged=True, note=note), new_disagreeing
    log.info("checks: model %d image %s kept (%s)", k, name, note)
    return Provenance(model=k, how=How.MAPPER, flagged=True, note=note), set()


def refine_models(ordered: list[pycolmap.Reconstruction], features: dict[str, dict[str, Any]],
                  matches: TwoViewMatches, conf: dict[str, Any], *,
                  make_camera: Callable[[str], pycolmap.Camera]) -> RefineResult:
    """Apply ``conf['checks']`` and ``conf['localize']`` (each with ``enabled``) to ``ordered`` (largest first,
    modified in place) and return every image's pose and provenance. ``make_camera(name)`` gives the prior
    camera of an image that no model holds."""
    out = RefineResult()
    check_conf = dict(conf.get("checks") or {})
    loc_conf = dict(conf.get("localize") or {})
    merge_conf = dict(conf.get("merge") or {})
    twoview_conf = dict(conf.get("twoview") or {})
    check_on = bool(check_conf.pop("enabled", False))
    check_conf.pop("remap", None)  # read by imc.reconstruct
    loc_on = bool(loc_conf.pop("enabled", False))
    merge_on = bool(merge_conf.pop("enabled", False))
    twoview_on = bool(twoview_conf.pop("enabled", False))
    check_opts = CheckOptions.from_conf(check_conf)
    loc_opts = LocalizeOptions.from_conf(loc_conf)

    if check_on:
        for k, rec in enumerate(ordered):
            checks = check_model(rec, features, matches, check_opts)
            out.checks.update(checks)
            flagged = sorted((n for n, c in checks.items() if c.flagged), key=lambda n: checks[n].weighted_agreement)
            for name in flagged:
                out.provenance[name], disagreeing = _repose_flagged(rec, k, name, features, matches, check_opts,
                                                                    loc_opts)
                out.pruned |= {(name, p) for p in disagreeing}

    for k, rec in enumerate(ordered):
        for image in rec.images.values():
            if not image.has_pose or image.name in out.poses:
                continue
            out.poses[image.name] = (image.cam_from_world(), k)
            prov = out.provenance.get(image.name) or Provenance(how=How.MAPPER)
            prov.model = k
            errs = [rec.points3D[p.point3D_id].error for p in image.points2D if p.has_point3D()]
            prov.reprojection_error = float(np.mean(errs)) if errs else float("nan")
            prov.num_observations = len(errs)
            out.provenance[image.name] = prov

    mapper_poses = dict(out.poses)  # each image's pose in the largest model that holds it
    if loc_on and ordered:
        largest = ordered[0]
        in_largest = {im.name for im in largest.images.values() if im.has_pose}
        for name in sorted(features):
            if name in in_largest or out.provenance.get(name, Provenance()).flagged:
                continue
            image = largest.find_image_with_name(name)
            camera = copy.deepcopy(largest.cameras[image.camera_id]) if image is not None else make_camera(name)
            loc = localize(largest, name, features[name]["keypoints"], camera, matches, loc_opts)
            if loc is None or not _agrees(largest, name, loc.cam_from_world, loc.camera, features, matches, check_opts, set()):
                continue
            was = out.provenance.get(name)
            out.poses[name] = (loc.cam_from_world, 0)
            out.provenance[name] = Provenance(model=0, how=How.RELOCALISED, num_observations=loc.num_inliers,
                                              note="localised into the largest model" +
                                              (f" (was in model {was.model})" if was and was.model > 0 else ""))
            log.info("localize: %s localised into model 0 with %d/%d inliers", name, loc.num_inliers,
                     loc.num_correspondences)

    if merge_on and ordered:
        largest = ordered[0]
        for k in range(1, len(ordered)):
            members = [n for n, (_, m) in mapper_poses.items() if m == k]
            rest = [n for n in members if out.poses[n][1] == k]
            if not rest:
                continue
            # anchors: images the largest model also registered (poses in both), then the relocalised members
            anchors: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}
            for im in ordered[k].images.values():
                im0 = largest.find_image_with_name(im.name) if im.has_pose else None
                if im0 is not None and im0.has_pose:
                    anchors[im.name] = (_R(im.cam_from_world()), _t(im.cam_from_world()), _R(im0.cam_from_world()),
                                        _t(im0.cam_from_world()))
            for n in members:
                if out.poses[n][1] == 0 and n not in anchors:
                    anchors[n] = (_R(mapper_poses[n][0]), _t(mapper_poses[n][0]), _R(out.poses[n][0]),
                                  _t(out.poses[n][0]))
            sim = estimate_similarity(list(anchors.values()),
                                      max_rotation_spread_deg=merge_conf.get("max_rotation_spread_deg", 5.0))
            if sim is None:
                log.info("merge: model %d (%d images) not merged: %d anchor(s)", k, len(members), len(anchors))
                continue
            for n in rest:
                R0, t0 = sim.pose_in_target(_R(mapper_poses[n][0]), _t(mapper_poses[n][0]))
                out.poses[n] = (pycolmap.Rigid3d(pycolmap.Rotation3d(R0), t0), 0)
                prov = out.provenance[n]
                prov.how, prov.model, prov.note = How.MERGED, 0, f"model {k} merged into 0 via {len(anchors)} anchors"
            log.info("merge: model %d merged into model 0 via %d anchors (%d images moved)", k, len(anchors), len(rest))

    if twoview_on:
        unposed = {n for n in features if n not in out.poses}
        for i, tv in enumerate(two_view_poses(unposed, features, matches, make_camera,
                                              **{k: v for k, v in twoview_conf.items()})):
            k = len(ordered) + i
            out.poses[tv.a] = (pycolmap.Rigid3d(), k)
            out.poses[tv.b] = (tv.b_from_a, k)
            for n in (tv.a, tv.b):
                out.provenance[n] = Provenance(model=k, how=How.TWO_VIEW, num_observations=tv.num_inliers,
                                               note=f"two-view pose of {tv.a} / {tv.b}")
            log.info("twoview: %s / %s posed from %d inliers (model %d)", tv.a, tv.b, tv.num_inliers, k)
    for name in features:
        out.provenance.setdefault(name, Provenance())
    return out
