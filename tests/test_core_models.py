"""Weights load strictly from local files (only derived buffers may be absent); nothing downloads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from imc import networks
from imc.config import ConfigError, load_config
from imc.features import aliked
from imc.matchers import lightglue
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


@pytest.mark.parametrize("variant", sorted(aliked.VARIANTS))
def test_aliked_variants_load_strictly(variant):
    conf = {**load_config()["features"]["aliked"], "model": variant}
    net = aliked.Aliked().load(conf, weights_dir=None, device=torch.device("cpu"))
    assert not net.training
    state = torch.load(resolve_weights(f"{variant}.pth"), weights_only=True)
    missing = set(net.state_dict()) - set(state)
    assert missing <= networks.DERIVED_BUFFERS, missing
    # the loaded tensors are the checkpoint's, not random
    name = next(iter(state))
    torch.testing.assert_close(net.state_dict()[name], state[name])


def test_lightglue_loads_strictly_and_matches_itself():
    conf = load_config()
    net = lightglue.LightGlueMatcher().load({**conf["matchers"]["lightglue"], **conf["matching"]["aliked"]},
                                           weights_dir=None, device=torch.device("cpu"))
    state = lightglue.rename_keys(torch.load(resolve_weights("aliked_lightglue.pth"), weights_only=True), 9)
    assert set(net.state_dict()) - set(state) <= networks.DERIVED_BUFFERS
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
    build = lambda: aliked.build(model="aliked-t16", max_num_keypoints=512, detection_threshold=0.01,  # noqa: E731
                                 nms_radius=2)
    state = torch.load(resolve_weights("aliked-n16.pth"), weights_only=True)
    with pytest.raises((networks.WeightsMismatchError, RuntimeError)):
        networks.load_strict(build(), state, name="aliked-n16 into t16")
    partial = {k: v for k, v in torch.load(resolve_weights("aliked-t16.pth"), weights_only=True).items()
               if not k.startswith("score_head")}
    with pytest.raises(networks.WeightsMismatchError, match="score_head"):
        networks.load_strict(build(), partial, name="partial")


def test_extractor_matcher_mismatch_is_refused_at_load():
    """aliked-t16 has 64-d descriptors; the LightGlue weights expect 128: refused, both named."""
    with pytest.raises(ConfigError, match=r"aliked-t16.*64-d.*lightglue.*aliked_lightglue.*128-d"):
        load_config(None, ["features.extractors=[aliked]", "features.aliked.model=aliked-t16"])
    conf = load_config(None, ["features.aliked.model=aliked-t16", "matching.aliked={matcher: nearest_neighbour}"])
    assert conf["matching"]["aliked"] == {"matcher": "nearest_neighbour"}


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


def test_fused_cpu_attention_gives_kornias_matches():
    """The CPU path (cross-attention through SDPA, the fused kernel allowed) against kornia's own einsum/math
    path, on real ALIKED features of two demo views: the same matches, scores equal to float precision, and
    the process-wide SDP switch that kornia turned off is left as it was."""
    import cv2

    from imc.features import aliked as aliked_mod

    conf = load_config()
    cpu = torch.device("cpu")
    fconf = {**conf["features"]["aliked"], "max_num_keypoints": 1024}
    ex = aliked_mod.Aliked()
    net_f = ex.load(fconf, weights_dir=None, device=cpu)
    images = sorted((Path(__file__).parents[1] / "imc/demo_data/demo/boxes/images").iterdir())[:2]
    sides = []
    for path in images:
        rgb = cv2.imread(str(path))[:, :, ::-1]
        f = ex.extract(net_f, np.ascontiguousarray(rgb), fconf, cpu)
        sides.append({"keypoints": f.keypoints, "descriptors": f.descriptors,
                      "image_size": np.array([rgb.shape[1], rgb.shape[0]])})
    adapter = lightglue.LightGlueMatcher()
    mconf = {**conf["matchers"]["lightglue"], **conf["matching"]["aliked"]}
    fused = adapter.load(mconf, weights_dir=None, device=cpu)
    plain = lightglue.build(input_dim=128, filter_threshold=mconf["filter_threshold"],
                            depth_confidence=mconf["depth_confidence"], width_confidence=mconf["width_confidence"])
    plain.load_state_dict(fused.state_dict())
    plain.eval()
    assert not torch.backends.cuda.flash_sdp_enabled()  # kornia's Attention(allow_flash=False) turned it off
    got = adapter.match(fused, adapter.prepare(sides[0], cpu), adapter.prepare(sides[1], cpu), cpu)
    assert not torch.backends.cuda.flash_sdp_enabled()  # restored after the call
    with torch.inference_mode():
        ref = plain({"image0": adapter.prepare(sides[0], cpu), "image1": adapter.prepare(sides[1], cpu)})
    ref_m = ref["matches"][0].numpy()
    assert len(ref_m) > 100
    np.testing.assert_array_equal(got["matches"], ref_m)
    np.testing.assert_allclose(got["scores"], ref["scores"][0].numpy(), atol=1e-4)
    # a masked call (padded batches) takes kornia's own cross-attention
    block = next(m for m in fused.modules() if type(m).__name__ == "CrossBlock")
    x = torch.randn(1, 5, 256)
    mask = torch.ones(1, 1, 5, 5, dtype=torch.bool)
    with torch.inference_mode():
        torch.testing.assert_close(block(x, x, mask), type(block).forward(block, x, x, mask))
        torch.testing.assert_close(block(x, x), type(block).forward(block, x, x), atol=1e-4, rtol=1e-4)


def test_cuda_attention_never_takes_cudnns_backend():
    """LightGlue's pruning gives each attention call a new shape; cuDNN's SDPA backend builds a graph per
    shape (H200: 109 s for kyiv's 325 pairs, 7.9 s without it). The switches are plain flags, so this runs
    without a GPU; the CUDA timing itself is in the README ("GPU")."""
    from imc.matchers import lightglue

    before = (torch.backends.cuda.cudnn_sdp_enabled(), torch.backends.cuda.flash_sdp_enabled(),
              torch.backends.cuda.mem_efficient_sdp_enabled(), torch.backends.cuda.math_sdp_enabled())
    torch.backends.cuda.enable_cudnn_sdp(True)
    try:
        with lightglue.attention_backends(torch.device("cuda")):
            assert not torch.backends.cuda.cudnn_sdp_enabled()
            assert torch.backends.cuda.flash_sdp_enabled() and torch.backends.cuda.mem_efficient_sdp_enabled()
        assert torch.backends.cuda.cudnn_sdp_enabled()  # restored after the call
        with lightglue.attention_backends(torch.device("cpu")):
            assert torch.backends.cuda.flash_sdp_enabled() and not torch.backends.cuda.mem_efficient_sdp_enabled()
    finally:
        torch.backends.cuda.enable_cudnn_sdp(before[0])
        torch.backends.cuda.enable_flash_sdp(before[1])
        torch.backends.cuda.enable_mem_efficient_sdp(before[2])
        torch.backends.cuda.enable_math_sdp(before[3])
