"""CUDA path (skipped without a GPU: run where one is lent). CPU and CUDA must agree."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from imc import extract
from imc.config import load_config
from imc.features import aliked
from imc.matchers import lightglue
from imc.preflight import resolve_device

from .conftest import TEMPLE


@pytest.mark.gpu
def test_cuda_features_and_matches_agree_with_cpu():
    if not TEMPLE.is_dir():
        pytest.skip("needs ../shared")
    assert resolve_device("auto").type == "cuda"
    base = load_config()
    conf = {**base["features"]["aliked"], "resize_max": 480, "max_num_keypoints": 512}
    lg_conf = {**base["matchers"]["lightglue"], **base["matching"]["aliked"]}
    paths = [TEMPLE / "templeSR0001.png", TEMPLE / "templeSR0002.png"]
    extractor, matcher = aliked.Aliked(), lightglue.LightGlueMatcher()
    per_device = {}
    for device in (torch.device("cpu"), torch.device("cuda")):
        net = extractor.load(conf, weights_dir=None, device=device)
        feats = [extract.extract_one(extractor, net, p, conf, device) for p in paths]
        lg = matcher.load(lg_conf, weights_dir=None, device=device)
        per_device[device.type] = (feats, matcher.match(lg, feats[0], feats[1], device))
    (f_cpu, m_cpu), (f_gpu, m_gpu) = per_device["cpu"], per_device["cuda"]
    for a, b in zip(f_cpu, f_gpu):
        # same detections up to float noise: most CPU keypoints have a CUDA twin within 0.5 px
        d = np.linalg.norm(a["keypoints"][:, None] - b["keypoints"][None], axis=-1).min(axis=1)
        assert np.mean(d < 0.5) > 0.9
    assert abs(len(m_cpu["matches"]) - len(m_gpu["matches"])) < 0.15 * len(m_cpu["matches"])
