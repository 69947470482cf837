from __future__ import annotations

from math import comb

import numpy as np
import pytest

from imc import pairs, stages
from imc.config import ConfigError, apply_overrides, load_config

from .conftest import REPO


def test_exhaustive_counts_and_dedup(tmp_path):
    names = [f"s/images/{i:02d}.jpg" for i in range(7)]
    conf = load_config()["pairs"]
    out = pairs.main(conf, names, tmp_path / "pairs.txt")
    listed = pairs.read_pairs(out)
    assert len(listed) == comb(7, 2)
    assert len({frozenset(p) for p in listed}) == len(listed)
    order = {n: i for i, n in enumerate(names)}
    assert all(order[a] < order[b] for a, b in listed)
    # symmetric and duplicate pairs collapse to one
    assert pairs.canonical([("b", "a"), ("a", "b"), ("a", "a"), ("a", "b")], {"a": 0, "b": 1}) == [("a", "b")]


def test_retrieval_fewer_pairs_and_min_partners(tmp_path):
    rng = np.random.default_rng(0)
    n = 60
    # 3 clusters of similar descriptors: retrieval should pair within clusters
    centers = rng.normal(size=(3, 32))
    desc = np.stack([centers[i % 3] + 0.05 * rng.normal(size=32) for i in range(n)])
    desc /= np.linalg.norm(desc, axis=1, keepdims=True)
    names = [f"img{i:03d}" for i in range(n)]
    conf = apply_overrides(load_config(), ["pairs.exhaustive_max_images=10", "pairs.retrieval.top_k=5",
                                           "pairs.retrieval.similarity_threshold=0.99",
                                           "pairs.retrieval.min_pairs_per_image=3"])["pairs"]
    out = pairs.main(conf, names, tmp_path / "pairs.txt", global_descriptors=lambda ns: desc)
    listed = pairs.read_pairs(out)
    assert comb(n, 2) > len(listed) >= n * 3 // 2
    partners = {nm: 0 for nm in names}
    for a, b in listed:
        partners[a] += 1
        partners[b] += 1
        assert int(a[3:]) % 3 == int(b[3:]) % 3, "retrieval paired images of different clusters"
    assert min(partners.values()) >= 3
    assert len({frozenset(p) for p in listed}) == len(listed)


def test_overrides_typed_and_strict():
    conf = load_config(None, ["features.aliked.max_num_keypoints=4096", "data.sample_submission=null", "seed=3"])
    assert conf["features"]["aliked"]["max_num_keypoints"] == 4096 and conf["data"]["sample_submission"] is None
    with pytest.raises(ConfigError, match="unknown key"):
        load_config(None, ["features.aliked.max_num_keypoint=4096"])
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, ["features.aliked.max_num_keypoints"])


def test_preset_chains_to_default():
    conf = load_config("configs/demo.yaml")
    assert conf["output"] == "outputs/demo"
    assert conf["sfm"]["structure_less_registration_fallback"] is False  # inherited from default.yaml


def test_fingerprints_flow_downstream_only():
    base = load_config(None, ["features.extractors=[aliked]"])
    sha = {"a.jpg": "1", "b.jpg": "2"}
    fp0 = stages.fingerprints(base, sha)
    fp1 = stages.fingerprints(apply_overrides(base, ["features.aliked.max_num_keypoints=999"]), sha)
    assert fp1["pairs"] == fp0["pairs"]
    assert all(fp1[k] != fp0[k] for k in ("features:aliked", "matches:aliked", "fuse", "verified", "sfm"))
    fp2 = stages.fingerprints(apply_overrides(base, ["sfm.min_model_size=10"]), sha)
    assert all(fp2[k] == fp0[k] for k in ("features:aliked", "matches:aliked", "fuse", "verified", "pairs"))
    assert fp2["sfm"] != fp0["sfm"]
    assert stages.fingerprints(base, {**sha, "b.jpg": "changed"})["pairs"] != fp0["pairs"]


def test_cache_with_different_saved_config_is_refused(tmp_path):
    cache = tmp_path / "features-0123.h5"
    stages.check_sidecar(cache, {"features": {"max_num_keypoints": 10}})
    stages.check_sidecar(cache, {"features": {"max_num_keypoints": 10}})  # same: reused
    with pytest.raises(ConfigError, match="different config"):
        stages.check_sidecar(cache, {"features": {"max_num_keypoints": 11}})


def test_misspelt_key_in_a_preset_file_is_refused(tmp_path):
    """A whole misspelt section, or a misspelt key inside one, in a file: refused, key and file named."""
    (tmp_path / "featurez.yaml").write_text(f"base: {REPO / 'configs' / 'default.yaml'}\nfeaturez: {{}}\n")
    with pytest.raises(ConfigError, match=r"featurez\.yaml.*unknown key\(s\) \['featurez'\]"):
        load_config(tmp_path / "featurez.yaml")
    (tmp_path / "deep.yaml").write_text("sfm: {min_modle_size: 3}\nfeatures: {aliked: {max_num_keypoint: 5}}\n")
    with pytest.raises(ConfigError, match=r"deep\.yaml.*sfm\.min_modle_size.*did you mean sfm\.min_model_size"):
        load_config(tmp_path / "deep.yaml")
    (tmp_path / "deep.yaml").write_text("features: {aliked: {max_num_keypoint: 5}}\n")
    with pytest.raises(ConfigError, match=r"features\.aliked\.max_num_keypoint\b"):
        load_config(tmp_path / "deep.yaml")
    (tmp_path / "ext.yaml").write_text("features: {extractors: [aliked, nope]}\n")
    with pytest.raises(ConfigError, match=r"unknown extractor 'nope'"):
        load_config(tmp_path / "ext.yaml")


def test_default_config_has_one_source():
    """Every key the code reads has its default in configs/default.yaml: the loaded default config
    equals the file (nothing filled in from code)."""
    from imc.config import default_template

    assert load_config() == default_template()


def test_centred_descriptors_keep_retrieval_selective(tmp_path):
    """Pooled descriptors of one scene are all alike (cosine > 0.95): uncentred, an absolute
    threshold admits every pair; centred per scene, retrieval stays selective."""
    from imc.retrieval import centre_and_normalise

    rng = np.random.default_rng(1)
    n = 80
    raw = np.ones(64) + 0.08 * rng.normal(size=(n, 64))
    raw /= np.linalg.norm(raw, axis=1, keepdims=True)
    sims = (raw @ raw.T)[np.triu_indices(n, 1)]
    assert sims.min() > 0.95
    names = [f"im{i:03d}" for i in range(n)]
    conf = apply_overrides(load_config(), ["pairs.exhaustive_max_images=10"])["pairs"]
    uncentred = pairs.read_pairs(pairs.main(conf, names, tmp_path / "a.txt", global_descriptors=lambda ns: raw))
    assert len(uncentred) == comb(n, 2)  # the failure mode
    centred = pairs.read_pairs(pairs.main(conf, names, tmp_path / "b.txt",
                                          global_descriptors=lambda ns: centre_and_normalise(raw)))
    top_k = conf["retrieval"]["top_k"]
    assert len(centred) <= n * top_k  # top-k dominated: no flood of threshold pairs
    assert len(centred) < 0.6 * comb(n, 2)
