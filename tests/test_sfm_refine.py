"""imc.sfm checks / localize / refine on pycolmap's synthetic datasets (exact cameras, exact tracks)."""

from __future__ import annotations

import copy
from pathlib import Path
import itertools

import numpy as np
import pycolmap
import pytest

from imc.sfm.checks import CheckOptions, check_model, rotation_angle_deg
from imc.sfm.data import TwoViewMatches
from imc.sfm.localize import LocalizeOptions, localize
from imc.sfm.refine import How, refine_models

from .conftest import REPO


def synthetic(num_frames: int = 8, seed: int = 0) -> tuple[pycolmap.Reconstruction, dict, TwoViewMatches]:
    pycolmap.set_random_seed(seed)
    opts = pycolmap.SyntheticDatasetOptions()
    opts.num_rigs = 1
    opts.num_cameras_per_rig = 1
    opts.num_frames_per_rig = num_frames
    opts.num_points3D = 300
    opts.num_points2D_without_point3D = 0
    rec = pycolmap.synthesize_dataset(opts)
    features, tracks = {}, {}
    for im in rec.images.values():
        features[im.name] = {"keypoints": np.array([p.xy for p in im.points2D], np.float64) - 0.5,
                             "image_size": np.array([opts.camera_width, opts.camera_height])}
        tracks[im.name] = {p.point3D_id: k for k, p in enumerate(im.points2D) if p.has_point3D()}
    matches = TwoViewMatches()
    for a, b in itertools.combinations(sorted(features), 2):
        common = sorted(set(tracks[a]) & set(tracks[b]))
        if len(common) >= 15:
            matches.pairs[(a, b)] = np.array([[tracks[a][p], tracks[b][p]] for p in common], np.int64)
    return rec, features, matches


def perturb(rec: pycolmap.Reconstruction, name: str, degrees: float) -> np.ndarray:
    """Turn ``name``'s camera by ``degrees`` about its y axis; return its true rotation."""
    image = rec.find_image_with_name(name)
    pose = image.cam_from_world()
    true_R = np.asarray(pose.rotation.matrix()).copy()
    a = np.radians(degrees)
    turn = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    frame = rec.frames[image.frame_id]
    frame.rig_from_world = pycolmap.Rigid3d(pycolmap.Rotation3d(turn @ true_R), pose.translation)
    return true_R


def test_checks_pass_a_correct_model_and_flag_a_turned_image():
    rec, features, matches = synthetic()
    checks = check_model(rec, features, matches, CheckOptions())
    assert checks and not any(c.flagged for c in checks.values())
    assert all(p.epipolar_agreement > 0.95 for c in checks.values() for p in c.pairs)
    bad = sorted(features)[3]
    perturb(rec, bad, 20.0)
    checks = check_model(rec, features, matches, CheckOptions())
    assert [n for n, c in checks.items() if c.flagged] == [bad]
    assert all(p.rotation_error_deg > 15 for p in checks[bad].pairs)


def test_localize_recovers_the_pose_from_partner_tracks():
    rec, features, matches = synthetic()
    name = sorted(features)[2]
    image = rec.find_image_with_name(name)
    true_pose = image.cam_from_world()
    camera = copy.deepcopy(rec.cameras[image.camera_id])
    rec.deregister_frame(image.frame_id)
    loc = localize(rec, name, features[name]["keypoints"], camera, matches, LocalizeOptions(estimate_focal_length=False))
    assert loc is not None and loc.num_inliers >= 30
    dR = np.asarray(loc.cam_from_world.rotation.matrix()) @ np.asarray(true_pose.rotation.matrix()).T
    assert rotation_angle_deg(dR) < 0.1
    assert np.linalg.norm(loc.cam_from_world.translation - true_pose.translation) < 1e-2


def test_localize_refuses_an_image_without_correspondences():
    rec, features, matches = synthetic()
    name = sorted(features)[0]
    empty = TwoViewMatches(pairs={k: v for k, v in matches.pairs.items() if name not in k})
    image = rec.find_image_with_name(name)
    assert localize(rec, name, features[name]["keypoints"], rec.cameras[image.camera_id], empty, LocalizeOptions()) is None


def test_refine_models_relocalises_a_wrong_registration():
    rec, features, matches = synthetic()
    bad = sorted(features)[4]
    true_R = perturb(rec, bad, 25.0)
    conf = {"checks": {"enabled": True}, "localize": {"enabled": True, "estimate_focal_length": False}}
    out = refine_models([rec], features, matches, conf, make_camera=lambda n: None)
    prov = out.provenance[bad]
    assert prov.flagged and prov.how is How.RELOCALISED
    pose, model = out.poses[bad]
    assert model == 0 and rotation_angle_deg(np.asarray(pose.rotation.matrix()) @ true_R.T) < 0.1
    assert all(out.provenance[n].how is How.MAPPER for n in features if n != bad)


def test_refine_models_disabled_keeps_every_mapper_pose():
    rec, features, matches = synthetic()
    perturb(rec, sorted(features)[1], 25.0)
    out = refine_models([rec], features, matches, {"checks": {"enabled": False}, "localize": {"enabled": False}},
                        make_camera=lambda n: None)
    assert len(out.poses) == len(features)
    assert {p.how for p in out.provenance.values()} == {How.MAPPER}


def synthetic_stage_inputs(tmp_path, num_frames: int = 8, seed: int = 1):
    """(fused h5, verified h5, pairs file, the config from configs/default.yaml) of a synthetic scene."""
    from imc.config import load_config
    from imc.h5io import ResumableH5, escape, pair_key
    from imc.pairs import write_pairs

    rec, features, matches = synthetic(num_frames=num_frames, seed=seed)
    fused = ResumableH5(tmp_path / "fused.h5")
    for name, f in features.items():
        fused.put(escape(name), {"keypoints": f["keypoints"].astype(np.float32), "image_size": f["image_size"]},
                  {"image_sha1": name, "errors": "{}", "num_keypoints": len(f["keypoints"])})
    store = ResumableH5(tmp_path / "verified.h5")
    for (a, b), m in matches.pairs.items():
        store.put(pair_key(a, b), {"matches": m.astype(np.int32), "F": np.zeros((3, 3))},
                  {"config": int(pycolmap.TwoViewGeometryConfiguration.CALIBRATED), "num_raw": len(m)})
    pairs = write_pairs(tmp_path / "pairs.txt", sorted(matches.pairs))
    return len(features), fused.finalize(), store.finalize(), pairs, load_config()


def map_synthetic(tmp_path, conf) -> Path:
    from imc import reconstruct

    _, fused, verified, pairs, _ = STAGE_INPUTS[tmp_path]
    return reconstruct.main(conf["sfm"], fused, verified, pairs, tmp_path, tmp_path / "sfm", cameras=conf["cameras"],
                            progress=False)


STAGE_INPUTS: dict = {}


def stage_inputs(tmp_path, **kw):
    STAGE_INPUTS[tmp_path] = synthetic_stage_inputs(tmp_path, **kw)
    n, *_, conf = STAGE_INPUTS[tmp_path]
    return n, conf


def test_reconstruct_main_with_checks_and_localize_writes_provenance(tmp_path):
    """The stage end to end on a synthetic scene: database from a verified h5, mapping, refine hook, poses.csv."""
    from imc import reconstruct

    n, conf = stage_inputs(tmp_path)
    conf["sfm"]["checks"]["enabled"] = conf["sfm"]["localize"]["enabled"] = True
    sfm_dir = map_synthetic(tmp_path, conf)
    result = reconstruct.read_poses_csv(sfm_dir / "poses.csv")
    assert result.n_registered == n and result.model_sizes == [n]
    assert {p.how for p in result.poses.values()} == {"mapper"}
    assert all(p.num_observations > 50 and p.reprojection_error < 1.0 for p in result.poses.values())


@pytest.mark.parametrize("mapper", ["incremental", "global"])
def test_both_mappers_register_every_image(tmp_path, mapper):
    from imc import reconstruct

    n, conf = stage_inputs(tmp_path)
    conf["sfm"]["mapper"] = mapper
    sfm_dir = map_synthetic(tmp_path, conf)
    assert reconstruct.read_poses_csv(sfm_dir / "poses.csv").n_registered == n


def test_a_failing_retry_keeps_the_best_earlier_result(tmp_path):
    from imc import reconstruct

    n, conf = stage_inputs(tmp_path)
    conf["sfm"]["extra_options"] = {"mapper.init_min_num_inliers": 100_000}  # no initial pair: nothing registers first
    conf["sfm"]["retries"] = [{"no_such_option": 1}, {"mapper.init_min_num_inliers": 50}]
    sfm_dir = map_synthetic(tmp_path, conf)
    assert reconstruct.read_poses_csv(sfm_dir / "poses.csv").n_registered == n


def test_similarity_from_anchors_brings_a_sub_model_into_the_largest():
    from imc.sfm.merge import estimate_similarity

    rec, features, _ = synthetic()
    poses = {im.name: (np.asarray(im.cam_from_world().rotation.matrix()), np.asarray(im.cam_from_world().translation))
             for im in rec.images.values()}
    rng = np.random.default_rng(0)
    Q = pycolmap.Rotation3d(rng.normal(size=3)).matrix()
    s, u = 2.5, np.array([1.0, -3.0, 0.5])
    in_k = {n: (R @ Q.T, s * t - R @ Q.T @ u) for n, (R, t) in poses.items()}  # the same cameras in world k
    names = sorted(poses)
    sim = estimate_similarity([(*in_k[n], *poses[n]) for n in names[:3]])
    assert sim is not None and sim.s == pytest.approx(s, rel=1e-6)
    for n in names[3:]:
        R0, t0 = sim.pose_in_target(*in_k[n])
        assert np.allclose(R0, poses[n][0], atol=1e-6) and np.allclose(t0, poses[n][1], atol=1e-6)
    assert estimate_similarity([(*in_k[names[0]], *poses[names[0]])]) is None  # one anchor is not enough
    wrong = (in_k[names[1]][0] @ pycolmap.Rotation3d(np.array([0.3, 0, 0])).matrix(), in_k[names[1]][1])
    assert estimate_similarity([(*in_k[names[0]], *poses[names[0]]), (*wrong, *poses[names[1]])]) is None


def test_two_view_fallback_poses_disjoint_pairs_when_no_model_exists():
    rec, features, matches = synthetic()
    camera = rec.cameras[next(iter(rec.images.values())).camera_id]
    out = refine_models([], features, matches, {"twoview": {"enabled": True}}, make_camera=lambda n: camera)
    posed = {n for n, p in out.provenance.items() if p.how is How.TWO_VIEW}
    assert len(posed) == len(features) - len(features) % 2
    models = {}
    for n in posed:
        models.setdefault(out.poses[n][1], []).append(n)
    assert all(len(v) == 2 for v in models.values())
    for a, b in models.values():
        (pa, _), (pb, _) = out.poses[a], out.poses[b]
        ia, ib = rec.find_image_with_name(a), rec.find_image_with_name(b)
        rel_true = ib.cam_from_world() * ia.cam_from_world().inverse()
        rel = pb * pa.inverse()
        assert rotation_angle_deg(np.asarray(rel.rotation.matrix()) @ np.asarray(rel_true.rotation.matrix()).T) < 0.5


def test_auto_camera_mode_maps_twice_and_registers_every_image(tmp_path):
    from imc import reconstruct

    n, conf = stage_inputs(tmp_path)
    conf["cameras"]["mode"] = "auto"
    sfm_dir = map_synthetic(tmp_path, conf)
    assert reconstruct.read_poses_csv(sfm_dir / "poses.csv").n_registered == n
    assert not (sfm_dir / "first_pass.db").exists()


def test_auto_camera_mode_keeps_the_first_pass_when_the_grouped_cameras_register_fewer_images(tmp_path, monkeypatch):
    """Middlebury dino at the default features: 15 images per image, 9 with the confirmed shared camera. The second
    mapping (real pycolmap) is cut to lose two images, as a wrong shared camera does: the first pass is kept."""
    from imc import reconstruct

    n, conf = stage_inputs(tmp_path)
    conf["cameras"]["mode"] = "auto"
    real, calls = reconstruct.run_mapper, []

    def second_pass_loses_two(*args, **kwargs):
        models = real(*args, **kwargs)
        calls.append(1)
        if len(calls) == 2:
            rec = max(models.values(), key=lambda r: r.num_reg_images())
            for frame_id in sorted(rec.reg_frame_ids())[:2]:
                rec.deregister_frame(frame_id)
        return models

    monkeypatch.setattr(reconstruct, "run_mapper", second_pass_loses_two)
    sfm_dir = map_synthetic(tmp_path, conf)
    assert len(calls) == 2
    assert reconstruct.read_poses_csv(sfm_dir / "poses.csv").n_registered == n
    assert (sfm_dir / "database.db").exists() and not (sfm_dir / "first_pass.db").exists()


def test_images_that_share_nothing_stay_unregistered_with_every_lever_on():
    _, features, _ = synthetic()
    conf = {k: {"enabled": True} for k in ("checks", "localize", "merge", "twoview")}
    out = refine_models([], features, TwoViewMatches(), conf, make_camera=lambda n: None)
    assert out.poses == {} and {p.how for p in out.provenance.values()} == {How.UNREGISTERED}


def doppelganger(rec: pycolmap.Reconstruction, features: dict, matches: TwoViewMatches, name: str, wrong: list[str],
                 degrees: float) -> np.ndarray:
    """Repeated structure, made exactly: ``name``'s matches with the ``wrong`` partners are replaced by matches to
    new keypoints where its partners' tracks would project from a pose turned by ``degrees`` (a consistent wrong
    hypothesis, as a symmetric façade gives), and the model holds ``name`` at that wrong pose. Returns its true
    rotation."""
    image = rec.find_image_with_name(name)
    camera = rec.cameras[image.camera_id]
    true_R = perturb(rec, name, degrees)
    wrong_pose = rec.find_image_with_name(name).cam_from_world()
    kps = [features[name]["keypoints"]]
    start = len(kps[0])
    for partner in wrong:
        other = rec.find_image_with_name(partner)
        idx = [k for k, p in enumerate(other.points2D) if p.has_point3D()]
        xyz = np.array([rec.points3D[other.points2D[k].point3D_id].xyz for k in idx])
        uv = np.asarray(camera.img_from_cam(np.asarray([wrong_pose * p for p in xyz]))) - 0.5
        kps.append(uv)
        matches.pairs.pop((name, partner), None)
        matches.pairs.pop((partner, name), None)
        matches.pairs[(name, partner)] = np.stack([start + np.arange(len(idx)), np.array(idx)], axis=1)
        start += len(idx)
    features[name] = {**features[name], "keypoints": np.concatenate(kps)}
    return true_R


def test_a_flagged_image_takes_the_hypothesis_most_verified_inliers_agree_with():
    """Repeated structure: the mapper's pose of one image agrees with a consistent set of wrong matches (2 partners),
    the true pose with the rest (5 partners, more inliers). The checks re-pose it from the partners the mapper's
    pose disagrees with, and name the wrong pairs for ``sfm.checks.remap``."""
    rec, features, matches = synthetic()
    names = sorted(features)
    name, wrong = names[4], [names[0], names[7]]
    true_R = doppelganger(rec, features, matches, name, wrong, 30.0)
    conf = {"checks": {"enabled": True, "remap": True}, "localize": {"enabled": False}}
    out = refine_models([rec], features, matches, conf, make_camera=lambda n: None)
    prov = out.provenance[name]
    assert prov.flagged and prov.how is How.RELOCALISED, prov
    pose, _ = out.poses[name]
    assert rotation_angle_deg(np.asarray(pose.rotation.matrix()) @ true_R.T) < 0.1
    assert out.pruned == {(name, w) for w in wrong}
    assert all(out.provenance[n].how is How.MAPPER for n in names if n != name)


def test_a_flagged_image_keeps_the_mapper_pose_when_it_has_more_support():
    """The same wrong hypothesis, now backed by most partners: the alternative has less support, nothing moves."""
    rec, features, matches = synthetic()
    names = sorted(features)
    name = names[4]
    wrong = [n for n in names if n != name][:5]
    doppelganger(rec, features, matches, name, wrong, 30.0)
    wrong_R = np.asarray(rec.find_image_with_name(name).cam_from_world().rotation.matrix())
    out = refine_models([rec], features, matches, {"checks": {"enabled": True}}, make_camera=lambda n: None)
    pose, _ = out.poses[name]
    assert out.provenance[name].how is How.MAPPER and not out.pruned
    assert rotation_angle_deg(np.asarray(pose.rotation.matrix()) @ wrong_R.T) < 1e-6


def test_remap_maps_again_without_the_pairs_the_checks_found_wrong(tmp_path, monkeypatch, caplog):
    """``sfm.checks.remap``: the pairs ``refine_models`` names are left out of a second mapping (its database)."""
    import logging

    from imc import reconstruct

    n, conf = stage_inputs(tmp_path)
    conf["sfm"]["checks"].update(enabled=True, remap=True)
    real = reconstruct.refine_and_collect
    calls = []

    def with_a_wrong_pair(ordered, features, *args, **kwargs):  # the checks' finding, injected
        result, pruned = real(ordered, features, *args, **kwargs)
        calls.append(len(calls))
        names = sorted(features)
        return result, ({(names[0], names[1])} if len(calls) == 1 else pruned)

    monkeypatch.setattr(reconstruct, "refine_and_collect", with_a_wrong_pair)
    with caplog.at_level(logging.INFO, logger="imc.reconstruct"):
        sfm_dir = map_synthetic(tmp_path, conf)
    assert len(calls) == 2 and "mapping again without 1 pair" in caplog.text
    db = pycolmap.Database.open(str(sfm_dir / "database.db"))
    ids = {db.read_image(i).name: i for i in range(1, n + 1)}
    names = sorted(ids)
    assert not db.exists_two_view_geometry(ids[names[0]], ids[names[1]])
    assert db.exists_two_view_geometry(ids[names[0]], ids[names[2]])
    db.close()
    assert reconstruct.read_poses_csv(sfm_dir / "poses.csv").n_registered == n


def test_merge_brings_a_sub_model_in_through_the_images_both_models_registered():
    """Two models that share two images (bridges), the second in its own frame (a similarity away): with
    ``sfm.merge`` its other images land on their poses in the largest model's frame, no relocalisation needed."""
    rec, features, matches = synthetic(num_frames=8)
    names = sorted(features)
    truth = {n: rec.find_image_with_name(n).cam_from_world() for n in names}
    first, second = copy.deepcopy(rec), copy.deepcopy(rec)
    only_first, shared, only_second = names[:3], names[3:5], names[5:]
    for model, drop in ((first, only_second), (second, only_first)):
        for n in drop:
            model.deregister_frame(model.find_image_with_name(n).frame_id)
    second.transform(pycolmap.Sim3d(1.7, pycolmap.Rotation3d(np.array([0.2, -0.4, 0.1])), np.array([3.0, -1.0, 2.0])))
    conf = {"merge": {"enabled": True}}
    off = refine_models([copy.deepcopy(first), copy.deepcopy(second)], features, matches, {}, make_camera=lambda n: None)
    assert {off.poses[n][1] for n in only_second} == {1}  # without the lever: its own model, its own frame
    out = refine_models([first, second], features, matches, conf, make_camera=lambda n: None)
    for n in only_second:
        pose, model = out.poses[n]
        assert model == 0 and out.provenance[n].how is How.MERGED
        assert rotation_angle_deg(np.asarray(pose.rotation.matrix()) @ np.asarray(truth[n].rotation.matrix()).T) < 1e-6
        assert np.allclose(pose.translation, truth[n].translation, atol=1e-6)
    assert all(out.provenance[n].how is How.MAPPER for n in only_first + shared)
