"""LightGlue (kornia), built with random weights and loaded strictly from a local checkpoint."""

from __future__ import annotations

import contextlib
import os
import types
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..networks import load_strict
from ..weights import resolve_weights
from . import Matcher, no_matches, register

# The released checkpoints and the descriptor dimension each expects.
WEIGHTS = {"aliked_lightglue": 128, "disk_lightglue": 128, "sift_lightglue": 128, "superpoint_lightglue": 256}


def rename_keys(state: dict[str, torch.Tensor], n_layers: int) -> dict[str, torch.Tensor]:
    """Released LightGlue checkpoints name attention blocks ``self_attn.i``; kornia nests them.

    ``disk_lightglue.pth`` also carries ``log_assignment.i.r``, a scalar the architecture never uses
    (all 1.0; kornia's own loader ignores it): dropped when it is 1, refused otherwise.
    """
    out = {}
    for key, value in state.items():
        key = key.removeprefix("matcher.")
        if key.startswith("log_assignment.") and key.endswith(".r"):
            if not bool(torch.all(value == 1)):
                raise ValueError(f"LightGlue checkpoint entry {key} = {value.tolist()}: not the inert 1.0 this "
                                 "loader can drop; the checkpoint needs a LightGlue that uses it")
            continue
        for i in range(n_layers):
            key = key.replace(f"self_attn.{i}.", f"transformers.{i}.self_attn.")
            key = key.replace(f"cross_attn.{i}.", f"transformers.{i}.cross_attn.")
        out[key] = value
    return out


def build(*, input_dim: int = 128, n_layers: int = 9, filter_threshold: float = 0.1, depth_confidence: float = 0.95,
          width_confidence: float = 0.99, flash: bool = False, mp: bool = False) -> torch.nn.Module:
    from kornia.feature import LightGlue

    # features=None: build from the keyword configuration, download nothing.
    return LightGlue(features=None, input_dim=input_dim, descriptor_dim=256, n_layers=n_layers, num_heads=4,
                     filter_threshold=filter_threshold, depth_confidence=depth_confidence,
                     width_confidence=width_confidence, flash=flash, mp=mp)


def _cross_attention_sdpa(self: torch.nn.Module, x0: torch.Tensor, x1: torch.Tensor,
                          mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """kornia's ``CrossBlock.forward`` with both directions through ``scaled_dot_product_attention``.

    On the CPU kornia computes the bidirectional similarity with einsum and two softmaxes over a
    materialised (heads, M, N) matrix; PyTorch's fused CPU kernel gives the same attention without it. The
    scale is the same (kornia scales q and k by ``scale ** 0.5`` each, SDPA the product by ``dim_head ** -0.5``).
    Masked (padded) batches and other devices keep kornia's own code.
    """
    if mask is not None or x0.device.type != "cpu":
        return type(self).forward(self, x0, x1, mask)
    qk0, qk1 = self.to_qk(x0), self.to_qk(x1)
    v0, v1 = self.to_v(x0), self.to_v(x1)
    qk0, qk1, v0, v1 = (t.unflatten(-1, (self.heads, -1)).transpose(1, 2).contiguous() for t in (qk0, qk1, v0, v1))
    m0 = F.scaled_dot_product_attention(qk0, qk1, v1)
    m1 = F.scaled_dot_product_attention(qk1, qk0, v0)
    m0, m1 = (self.to_out(t.transpose(1, 2).flatten(start_dim=-2)) for t in (m0, m1))
    return x0 + self.ffn(torch.cat([x0, m0], -1)), x1 + self.ffn(torch.cat([x1, m1], -1))


def fuse_cpu_attention(net: torch.nn.Module) -> torch.nn.Module:
    """Route a kornia LightGlue's cross-attention through PyTorch's fused kernel on the CPU (see
    :func:`_cross_attention_sdpa`); self-attention already calls SDPA, and :func:`attention_backends` lets it
    use the fused kernel. Same matches, about 2.5 x faster on the CPU (README "Measured")."""
    from kornia.feature.lightglue import CrossBlock

    for block in net.modules():
        if isinstance(block, CrossBlock):
            block.forward = types.MethodType(_cross_attention_sdpa, block)
    return net


def attention_backends(device: torch.device) -> contextlib.AbstractContextManager:
    """The SDPA backends for one LightGlue call.

    - CPU: building kornia's ``Attention(allow_flash=False)`` (every CPU LightGlue) calls
      ``torch.backends.cuda.enable_flash_sdp(False)``, a process-wide switch that also gates PyTorch's fused
      CPU kernel, so every attention fell back to the unfused math path; the fused kernel is allowed again
      for the duration of the call (and the switch restored after it).
    - CUDA: flash, then memory-efficient attention, never cuDNN's. LightGlue's point pruning gives almost
      every attention call a new shape, and cuDNN's backend builds a graph per shape: on an H200 (torch 2.11)
      kyiv's 325 pairs took 109 s, 29 ms per attention call, against 12-15 ms per pair for the same model on
      a repeated shape (README "GPU").
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel

    if torch.device(device).type == "cpu":
        return sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.MATH])
    return sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH])


@register
class LightGlueMatcher(Matcher):
    name = "lightglue"
    entry_keys = ("weights",)

    def input_dim(self, entry: dict[str, Any]) -> int | None:
        if entry["weights"] not in WEIGHTS:
            raise ValueError(f"unknown LightGlue weights {entry['weights']!r}; known: {sorted(WEIGHTS)}")
        return WEIGHTS[entry["weights"]]

    def load(self, conf: dict[str, Any], *, weights_dir: str | os.PathLike | None, device: torch.device) -> torch.nn.Module:
        is_cuda = torch.device(device).type == "cuda"
        net = build(input_dim=self.input_dim(conf), filter_threshold=conf["filter_threshold"],
                    depth_confidence=conf["depth_confidence"], width_confidence=conf["width_confidence"],
                    flash=is_cuda, mp=bool(conf["mixed_precision"]) and is_cuda)
        path = resolve_weights(conf["weights"] + ".pth", weights_dir)
        state = rename_keys(torch.load(path, map_location="cpu", weights_only=True), net.conf.n_layers)
        return fuse_cpu_attention(load_strict(net, state, name=str(path)).to(device))

    def prepare(self, f: dict[str, np.ndarray], device: torch.device) -> dict[str, torch.Tensor]:
        """The image's tensors on the device, kept there across its pairs."""
        return {"keypoints": torch.from_numpy(np.ascontiguousarray(f["keypoints"], np.float32))[None].to(device),
                "descriptors": torch.from_numpy(np.ascontiguousarray(f["descriptors"], np.float32))[None].to(device),
                "image_size": torch.from_numpy(np.asarray(f["image_size"], np.float32))[None].to(device)}

    def batch_key(self, f: dict[str, torch.Tensor]) -> Any:
        return tuple(f["keypoints"].shape[1:]) + tuple(f["descriptors"].shape[1:])

    @staticmethod
    def _on(f: dict[str, Any], device: torch.device) -> dict[str, torch.Tensor]:
        if not torch.is_tensor(f["keypoints"]):  # raw arrays (a caller that did not prepare)
            return LightGlueMatcher.prepare(None, f, device)  # type: ignore[arg-type]
        return {k: v.to(device) for k, v in f.items()}

    @torch.inference_mode()
    def match(self, model: torch.nn.Module, f0: Any, f1: Any, device: torch.device) -> dict[str, np.ndarray]:
        return self.match_batch(model, [(f0, f1)], device)[0]

    @torch.inference_mode()
    def match_batch(self, model: torch.nn.Module, pairs: list[tuple[Any, Any]],
                    device: torch.device) -> list[dict[str, np.ndarray]]:
        sides = [(self._on(f0, device), self._on(f1, device)) for f0, f1 in pairs]
        if any(s0["keypoints"].shape[1] == 0 or s1["keypoints"].shape[1] == 0 for s0, s1 in sides):
            return [no_matches() if s0["keypoints"].shape[1] == 0 or s1["keypoints"].shape[1] == 0
                    else self.match_batch(model, [(s0, s1)], device)[0] for s0, s1 in sides]
        stack = lambda i: {k: torch.cat([s[i][k] for s in sides]) for k in sides[0][i]}  # noqa: E731
        with attention_backends(device):
            out = model({"image0": stack(0), "image1": stack(1)})
        results = []
        for matches, scores in zip(out["matches"], out["scores"]):
            results.append({"matches": matches.cpu().numpy().astype(np.int32).reshape(-1, 2),
                            "scores": scores.float().cpu().numpy().astype(np.float32).reshape(-1)})
        return results
