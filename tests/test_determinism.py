"""Same inputs, same seed, ``sfm.num_threads=1``: identical CSVs from fresh caches.

What makes it so: ALIKED and LightGlue are deterministic at inference on one device with a fixed
torch thread count; each verification RANSAC is seeded with ``seed`` per call (COLMAP's default,
-1, continues one process-wide random sequence, so a pair's inliers would depend on which pairs
were verified before it, e.g. in a resumed run); the mapper gets ``random_seed=seed`` and a single
thread (with more threads its bundle adjustment / registration order is not reproducible).
"""

from __future__ import annotations

import numpy as np
import pytest

from imc.config import load_config
from imc.reconstruct import mapper_options
from imc.verify import prior_camera, verify_pair

from .corpus import TINY, copy_real_scene, read_rows, run_cli


def synthetic_pair(seed: int, n: int = 300, outliers: float = 0.4) -> tuple[dict, dict, np.ndarray]:
    """Two views of random 3D points (640x480, f=600), with noise and a share of wrong matches."""
    rng = np.random.default_rng(seed)
    X = rng.uniform([-2, -2, 4], [2, 2, 8], (n, 3))
    K = np.array([[600.0, 0, 320], [0, 600, 240], [0, 0, 1]])
    angle = np.deg2rad(10)
    R = np.array([[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]])
    t = np.array([-1.0, 0.1, 0.2])

    def project(P):
        x = (K @ P.T).T
        return (x[:, :2] / x[:, 2:]).astype(np.float32) + rng.normal(0, 0.5, (n, 2)).astype(np.float32)

    k0, k1 = project(X), project((R @ X.T).T + t)
    matches = np.stack([np.arange(n), np.arange(n)], axis=1).astype(np.int32)
    bad = rng.random(n) < outliers
    matches[bad, 1] = rng.permutation(matches[bad, 1])
    size = np.array([640, 480])
    return {"keypoints": k0, "image_size": size}, {"keypoints": k1, "image_size": size}, matches


def test_verification_does_not_depend_on_the_order_of_pairs():
    """The result for a pair is the same whatever was verified before it (resume == full run)."""
    base = load_config(None)
    conf, cams = base["verification"], base["cameras"]
    camera = prior_camera(np.array([640, 480]), cams["focal_prior_factor"], cams["model"])
    pairs = [synthetic_pair(s) for s in range(4)]
    forward = [verify_pair(conf, *p, camera0=camera, camera1=camera, seed=0)["inliers"] for p in pairs]
    backward = [verify_pair(conf, *p, camera0=camera, camera1=camera, seed=0)["inliers"] for p in pairs[::-1]][::-1]
    again = [verify_pair(conf, *p, camera0=camera, camera1=camera, seed=0)["inliers"] for p in pairs]
    assert all(len(f) > 100 for f in forward)
    for f, b, a in zip(forward, backward, again):
        np.testing.assert_array_equal(f, b)
        np.testing.assert_array_equal(f, a)


def test_mapper_gets_the_seed_and_the_thread_count():
    conf = load_config(None, ["sfm.num_threads=1"])
    options = mapper_options(conf["sfm"], seed=7)
    assert options.random_seed == 7 and options.num_threads == 1
    assert load_config(None)["sfm"]["num_threads"] == 1  # the default is the reproducible setting


@pytest.mark.slow
def test_two_fresh_runs_give_identical_csvs(tmp_path):
    copy_real_scene(tmp_path / "data", "strecha", "fountain", n=5)
    csvs = []
    for k in range(2):
        run_cli([f"data.root={tmp_path / 'data'}", f"output={tmp_path / f'run{k}'}",
                 f"cache_dir={tmp_path / f'cache{k}'}", *TINY, "seed=0", "sfm.num_threads=1"],
                log_path=tmp_path / f"run{k}.txt")
        csvs.append((tmp_path / f"run{k}" / "submission.csv").read_text())
    assert csvs[0] == csvs[1]
    rows = read_rows(tmp_path / "run0" / "submission.csv")
    posed = [r for r in rows if r["rotation_matrix"] != "1.0;0.0;0.0;0.0;1.0;0.0;0.0;0.0;1.0"]
    assert len(posed) >= 4, "too few registered images for the comparison to mean anything"


def test_min_match_score_drops_low_confidence_matches_before_ransac(tmp_path):
    """``verification.min_match_score``: matches the matcher scored low never reach RANSAC (``num_raw`` counts
    what is left), so none of the low-scored wrong matches can become an inlier."""
    from imc import verify
    from imc.h5io import ResumableH5, escape, pair_key
    from imc.pairs import write_pairs

    f0, f1, matches = synthetic_pair(3, outliers=0.4)
    good = matches[:, 0] == matches[:, 1]
    scores = np.where(good, 0.9, 0.05).astype(np.float32)
    scores[np.flatnonzero(good)[:20]] = 0.2  # some right matches the matcher was unsure of
    fused = ResumableH5(tmp_path / "fused.h5")
    for name, f in (("a.jpg", f0), ("b.jpg", f1)):
        fused.put(escape(name), f, {"image_sha1": name, "errors": "{}", "num_keypoints": len(f["keypoints"])})
    fused.put(pair_key("a.jpg", "b.jpg"), {"matches": matches, "scores": scores}, {})
    fused_path = fused.finalize()
    pairs = write_pairs(tmp_path / "pairs.txt", [("a.jpg", "b.jpg")])
    base = load_config(None)
    out = {}
    for threshold in (0.0, 0.5):
        conf = {**base["verification"], "min_match_score": threshold}
        path = verify.main(conf, fused_path, pairs, tmp_path / f"verified-{threshold}.h5", cameras=base["cameras"],
                           image_root=tmp_path, progress=False)
        store = ResumableH5(path)
        out[threshold] = (int(store.attrs(pair_key("a.jpg", "b.jpg"))["num_raw"]),
                          np.asarray(store.get(pair_key("a.jpg", "b.jpg"))["matches"]))
    assert out[0.0][0] == len(matches) and out[0.5][0] == int(np.sum(scores >= 0.5))
    kept = out[0.5][1]
    assert len(kept) > 100 and np.all(kept[:, 0] == kept[:, 1])  # only right matches survive the threshold
    assert len(kept) < len(out[0.0][1])  # the unsure right matches are gone too



def test_threaded_verification_stores_the_same_results(tmp_path):
    """``runtime.verify_threads``: pairs verified on several threads give the single-threaded store, pair for
    pair (COLMAP's RANSAC runs without the GIL, each pair with its own seed); the setting is checked."""
    from imc import verify
    from imc.config import ConfigError
    from imc.h5io import ResumableH5, escape, pair_key
    from imc.pairs import write_pairs

    fused = ResumableH5(tmp_path / "fused.h5")
    pairs = []
    for s in range(7):
        f0, f1, matches = synthetic_pair(s, outliers=0.3 + 0.05 * s)
        a, b = f"{s}a.jpg", f"{s}b.jpg"
        for name, f in ((a, f0), (b, f1)):
            fused.put(escape(name), f, {"image_sha1": name, "errors": "{}", "num_keypoints": len(f["keypoints"])})
        fused.put(pair_key(a, b), {"matches": matches, "scores": np.ones(len(matches), np.float32)}, {})
        pairs.append((a, b))
    fused_path = fused.finalize()
    pairs_path = write_pairs(tmp_path / "pairs.txt", pairs)
    base = load_config(None)
    stores = {}
    for threads in (1, 3):
        path = verify.main(base["verification"], fused_path, pairs_path, tmp_path / f"verified-{threads}.h5",
                           cameras=base["cameras"], image_root=tmp_path, progress=False, threads=threads)
        store = ResumableH5(path)
        stores[threads] = [(np.asarray(store.get(pair_key(a, b))["matches"]), store.attrs(pair_key(a, b))["config"])
                           for a, b in pairs]
    assert all(len(m) > 100 for m, _ in stores[1])
    for (m1, c1), (m3, c3) in zip(stores[1], stores[3]):
        np.testing.assert_array_equal(m1, m3)
        assert c1 == c3
    assert verify.verify_threads(2) == 2 and verify.verify_threads("auto") >= 1
    for bad in (0, "two", True):
        with pytest.raises(ConfigError, match="runtime.verify_threads"):
            verify.verify_threads(bad)
        with pytest.raises(ConfigError, match="runtime.verify_threads"):  # refused when the config loads
            load_config(None, [f"runtime.verify_threads={bad}"])

# 18 matches of an ETH3D pipes pair (orient stage, 512 px; exact float32 values): OpenCV 5's USAC MAGSAC++ raises "!model.empty()" on
# them instead of returning no model; that exception failed the whole scene before magsac_fundamental caught it.
DEGENERATE_X0 = [[500.09759521484375, 91.01873779296875], [429.73980712890625, 51.39780807495117],
                 [403.1494140625, 62.87163543701172], [470.0049743652344, 68.00322723388672],
                 [463.68243408203125, 32.961238861083984], [353.0473327636719, 57.947383880615234],
                 [424.6040344238281, 6.756619453430176], [481.9154357910156, 69.8598403930664],
                 [441.5609130859375, 44.64938735961914], [461.6054992675781, 13.004154205322266],
                 [446.4018249511719, 67.06416320800781], [423.5284423828125, 64.5140609741211],
                 [418.0672912597656, 42.443546295166016], [419.205078125, 6.156152725219727],
                 [409.60614013671875, 4.0501484870910645], [502.3117980957031, 36.677852630615234],
                 [502.40570068359375, 56.40339279174805], [435.3023376464844, 66.05258178710938]]
DEGENERATE_X1 = [[89.988037109375, 120.00996398925781], [35.88407516479492, 69.77919006347656],
                 [5.061856269836426, 73.43878936767578], [70.06261444091797, 97.162109375],
                 [65.6063232421875, 67.5178451538086], [242.744873046875, 119.36053466796875],
                 [37.17887496948242, 31.99533462524414], [80.20714569091797, 98.90779876708984],
                 [46.95358657836914, 68.81037902832031], [65.71681213378906, 48.52176284790039],
                 [51.01331329345703, 91.0772476196289], [22.860918045043945, 81.00345611572266],
                 [14.044004440307617, 53.117347717285156], [29.194744110107422, 28.057676315307617],
                 [17.270843505859375, 20.329147338867188], [91.98316955566406, 79.01347351074219],
                 [95.15138244628906, 94.77430725097656], [39.90326690673828, 87.23360443115234]]


def test_a_set_that_makes_opencv_magsac_raise_counts_as_no_model():
    import cv2

    from imc.orient import count_inliers
    from imc.verify import magsac_fundamental

    x0, x1 = np.array(DEGENERATE_X0), np.array(DEGENERATE_X1)
    try:  # the OpenCV behaviour this guards against (if a later OpenCV returns instead, the guard is harmless)
        cv2.findFundamentalMat(x0, x1, cv2.USAC_MAGSAC, 4.0, 0.999, 10000)
        raised = False
    except cv2.error:
        raised = True
    F, mask = magsac_fundamental(x0, x1, 4.0, 0.999, 10000)
    if raised:
        assert F is None and mask is None
    matches = np.stack([np.arange(18), np.arange(18)], axis=1)
    assert count_inliers(x0, x1, matches, 4.0) == (0 if raised else int(mask.sum()))
    conf = {**load_config(None)["verification"], "method": "opencv_magsac", "min_inliers": 8}
    camera = prior_camera(np.array([640, 480]), 1.2, "SIMPLE_RADIAL")
    out = verify_pair(conf, {"keypoints": x0 - 0.5}, {"keypoints": x1 - 0.5}, matches, camera0=camera, camera1=camera)
    assert len(out["inliers"]) == 0 or not raised
