"""ALIKED's dense map with less peak memory, bit for bit the same result.

kornia's ``ALIKED.extract_dense_map`` keeps every full-resolution intermediate alive until it returns:
the four 32-channel level maps (``x1``, ``x2_up``, ``x3_up``, ``x4_up``), their 128-channel
concatenation and the 128-channel normalised copy: 384 float32 channels at the padded input size,
1.1 GB at 1024 px (3072x2048 photos -> 1024x683) and 2.7 GB at 1600 px. That is the whole peak of a
scene's run (measured: 1.72 GB at 1024 px, 3.3 GB at 1600 px, nothing else comes close), and with
``GLIBC_TUNABLES`` keeping freed heap memory, the process holds it for the rest of the run.

:func:`lean_extract_dense_map` runs the same operations in the same order on the same values, but
writes each level straight into one preallocated 128-channel tensor (a copy, as ``torch.cat`` does),
frees each level as soon as it is copied and L2-normalises in place (the same elementwise division
as ``F.normalize``). Peak: 128 + 32 channels instead of 384 (with more than one torch thread, oneDNN's
``score_head`` convolution copies its 128-channel input in both versions: 256 + 32 against 512). Keypoints, scores and descriptors are
bitwise identical (``tests/test_lean_aliked.py``).
"""

from __future__ import annotations

import types

import torch

# What the lean map needs from kornia's ALIKED; a kornia release that changes them keeps its own code.
_REQUIRED = ("block1", "block2", "block3", "block4", "conv1", "conv2", "conv3", "conv4", "gate", "pool2", "pool4",
             "upsample2", "upsample8", "upsample32", "score_head")


def lean_extract_dense_map(self: torch.nn.Module, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop-in for ``kornia.feature.ALIKED.extract_dense_map`` (same arguments, same outputs)."""
    from kornia.feature.aliked.aliked import InputPadder

    padder = InputPadder(image.shape[-2], image.shape[-1], 2**5)
    image = padder.pad(image)

    x1 = self.block1(image)
    del image
    x2 = self.block2(self.pool2(x1))
    x3 = self.block3(self.pool4(x2))
    x4 = self.block4(self.pool4(x3))

    x1 = self.gate(self.conv1(x1))
    x2 = self.gate(self.conv2(x2))
    x3 = self.gate(self.conv3(x3))
    x4 = self.gate(self.conv4(x4))

    b, c1, h, w = x1.shape
    levels = (c1, x2.shape[1], x3.shape[1], x4.shape[1])
    x1234 = torch.empty((b, sum(levels), h, w), dtype=x1.dtype, device=x1.device)
    x1234[:, : levels[0]] = x1
    del x1
    start = levels[0]
    for name, x in (("upsample2", x2), ("upsample8", x3), ("upsample32", x4)):
        up = getattr(self, name)(x)
        x1234[:, start : start + up.shape[1]] = up
        start += up.shape[1]
        del up
    del x2, x3, x4, x

    score_map = torch.sigmoid(self.score_head(x1234))
    # F.normalize(x1234, p=2, dim=1), in place: x / max(||x||, eps), the same division per element.
    x1234.div_(x1234.norm(2, 1, keepdim=True).clamp_min(1e-12).expand_as(x1234))

    return padder.unpad(x1234), padder.unpad(score_map)


def make_lean(model: torch.nn.Module) -> torch.nn.Module:
    """Give a kornia ALIKED instance :func:`lean_extract_dense_map` (``forward`` and retrieval use it).

    A model without the expected layers (another kornia version) is returned unchanged."""
    if all(hasattr(model, name) for name in _REQUIRED) and hasattr(model, "extract_dense_map"):
        model.extract_dense_map = types.MethodType(lean_extract_dense_map, model)
    return model
