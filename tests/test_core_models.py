"""Weights load strictly from local files (only derived buffers may be absent); nothing downloads."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from imc import models
from imc.config import load_config
from imc.weights import WeightsNotFoundError, resolve_weights, wheel_weights_dir


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    import kornia.core.download as dl

    def refuse(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(dl, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)


def test_wheel_weights_present():
    d = wheel_weights_dir()
    assert d is not None and (d / "aliked-n16.pth").is_file() and (d / "aliked_lightglue.pth").is_file()


@pytest.mark.parametrize("variant", models.ALIKED_VARIANTS)
def test_aliked_variants_load_strictly(variant):
    conf = {**load_config()["features"], "model": variant}
    net = models.load_aliked(conf)
    assert not net.training
    state = torch.load(resolve_weights(f"{variant}.pth"), weights_only=True)
    missing = set(net.state_dict()) - set(state)
    assert missing <= models.DERIVED_BUFFERS, missing
    # the loaded tensors are the checkpoint's, not random
    name = next(iter(state))
    torch.testing.assert_close(net.state_dict()[name], state[name])


def test_lightglue_loads_strictly_and_matches_itself():
    net = models.load_lightglue(load_config()["matching"])
    state = models.rename_lightglue_keys(torch.load(resolve_weights("aliked_lightglue.pth"), weights_only=True), 9)
    assert set(net.state_dict()) - set(state) <= models.DERIVED_BUFFERS
    assert not set(state) - set(net.state_dict())
    rng = np.random.default_rng(0)
    kp = torch.from_numpy(rng.uniform(0, 300, (1, 200, 2)).astype(np.float32))
    desc = torch.nn.functional.normalize(torch.from_numpy(rng.normal(size=(1, 200, 128)).astype(np.float32)), dim=-1)
    side = {"keypoints": kp, "descriptors": desc, "image_size": torch.tensor([[320.0, 320.0]])}
    with torch.inference_mode():
        out = net({"image0": side, "image1": side})
    m = out["matches"][0]
    assert len(m) > 150 and (m[:, 0] == m[:, 1]).float().mean() > 0.95  # identical sets match one to one


def test_mismatched_checkpoint_is_an_error():
    net = models.build_aliked(model="aliked-t16")
    state = torch.load(resolve_weights("aliked-n16.pth"), weights_only=True)
    with pytest.raises((models.WeightsMismatchError, RuntimeError)):
        models.load_strict(net, state, name="aliked-n16 into t16")
    partial = {k: v for k, v in torch.load(resolve_weights("aliked-t16.pth"), weights_only=True).items()
               if not k.startswith("score_head")}
    with pytest.raises(models.WeightsMismatchError, match="score_head"):
        models.load_strict(models.build_aliked(model="aliked-t16"), partial, name="partial")


def test_weights_dir_takes_precedence_and_missing_is_clear(tmp_path, monkeypatch):
    monkeypatch.delenv("IMC_WEIGHTS_DIR", raising=False)
    (tmp_path / "aliked-n16.pth").write_bytes(b"x")
    assert resolve_weights("aliked-n16.pth", tmp_path) == tmp_path / "aliked-n16.pth"
    with pytest.raises(WeightsNotFoundError, match="nope.pth"):
        resolve_weights("nope.pth", tmp_path)


def test_dinov2_descriptor_from_local_tiny_model(tmp_path):
    transformers = pytest.importorskip("transformers")
    from imc.retrieval import Dinov2Descriptor, RetrievalMethod, resolve_method

    cfg = transformers.Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                    image_size=56, patch_size=14)
    transformers.Dinov2Model(cfg).save_pretrained(tmp_path / "dinov2-tiny")
    conf = {"method": "auto", "dinov2_dir": str(tmp_path / "dinov2-tiny")}
    assert resolve_method(conf) is RetrievalMethod.DINOV2
    assert resolve_method({"method": "auto", "dinov2_dir": str(tmp_path / "absent")}) is RetrievalMethod.ALIKED_GEM
    fn = Dinov2Descriptor(tmp_path / "dinov2-tiny", torch.device("cpu"))
    rng = np.random.default_rng(0)
    a = fn(rng.integers(0, 255, (90, 120, 3), dtype=np.uint8))
    b = fn(rng.integers(0, 255, (90, 120, 3), dtype=np.uint8))
    assert a.shape == (64,) and np.isfinite(a).all() and not np.allclose(a, b)
