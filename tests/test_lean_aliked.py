"""The lean ALIKED dense map gives bitwise the same features with a third of the peak memory."""

from __future__ import annotations

import pytest
import torch

from imc.lean_aliked import lean_extract_dense_map, make_lean
from imc.features.aliked import VARIANTS, build


def build_aliked(*, model: str, max_num_keypoints: int = 2048):
    return build(model=model, max_num_keypoints=max_num_keypoints, detection_threshold=0.01, nms_radius=2)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_lean_dense_map_is_bitwise_identical(variant):
    torch.manual_seed(0)
    reference = build_aliked(model=variant, max_num_keypoints=128).eval()  # random weights: any weights must agree
    lean = make_lean(build_aliked(model=variant, max_num_keypoints=128).eval())
    lean.load_state_dict(reference.state_dict())
    assert lean.extract_dense_map.__func__ is lean_extract_dense_map
    image = torch.rand(1, 3, 97, 150)  # not a multiple of 32: padding and unpadding are exercised
    with torch.inference_mode():
        f_ref, s_ref = reference.extract_dense_map(image)
        f_lean, s_lean = lean.extract_dense_map(image)
        out_ref, out_lean = reference(image)[0], lean(image)[0]
    assert f_ref.shape == f_lean.shape and torch.equal(f_ref, f_lean)
    assert torch.equal(s_ref, s_lean)
    assert len(out_ref.keypoints) > 0
    for name in ("keypoints", "descriptors", "keypoint_scores"):
        assert torch.equal(getattr(out_ref, name), getattr(out_lean, name)), name


def _dense_map_peak_kb(kind: str) -> int:
    """Peak of live tensor bytes during one 512x768 dense map, from the profiler's allocation events.

    Counting the allocator's events, not the process RSS, makes the figure the same on every machine:
    RSS depends on glibc, oneDNN's scratch buffers and the CPU's instruction set (CI's runner saw a lean
    peak 1.9x this machine's), while the tensors alive at the peak are what the lean map changes.
    Measured here: 611 MB (kornia) against 259 MB (lean) with one thread; with more threads oneDNN's
    ``score_head`` convolution also copies its 128-channel input (+192 MB): 620 against 406 MB.
    """
    from torch.profiler import ProfilerActivity, profile

    torch.manual_seed(0)
    model = build_aliked(model="aliked-n16").eval()
    if kind == "lean":
        make_lean(model)
    image = torch.rand(1, 3, 512, 768)
    with torch.inference_mode():
        model.extract_dense_map(image[..., :64, :64])  # warm up: lazy allocations outside the measurement
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            model.extract_dense_map(image)
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]")
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak // 1024


def test_lean_dense_map_needs_less_peak_memory():
    """512x768: kornia's map holds 384 float32 channels at its peak (604 MB), the lean one 160 (252 MB)."""
    reference, lean = _dense_map_peak_kb("reference"), _dense_map_peak_kb("lean")
    assert reference > 400_000, reference  # the measurement sees the dense map at all
    assert lean < 0.7 * reference, (lean, reference)
    assert reference - lean > 150_000, (lean, reference)  # at least three 32-channel maps fewer


def test_extraction_order_is_largest_first(tmp_path):
    from PIL import Image

    from imc.memory import largest_first, resized_pixels

    sizes = {"small.png": (200, 100), "wide.png": (3000, 1000), "square.png": (1500, 1500), "tie.png": (200, 100)}
    for name, size in sizes.items():
        Image.new("RGB", size).save(tmp_path / name)
    (tmp_path / "broken.png").write_bytes(b"not an image")
    assert resized_pixels(tmp_path / "wide.png", 1024) == 1024 * 341
    assert resized_pixels(tmp_path / "square.png", 1024) == 1024 * 1024
    assert resized_pixels(tmp_path / "small.png", None) == 200 * 100
    names = ["small.png", "broken.png", "wide.png", "tie.png", "square.png", "missing.png"]
    ordered = largest_first(names, lambda n: tmp_path / n, 1024)
    assert ordered == ["square.png", "wide.png", "small.png", "tie.png", "broken.png", "missing.png"]


TRIM_SCRIPT = """
import sys
import torch
from imc.memory import release_free_memory


def rss_mb():
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmRSS")).split()[1]) // 1024


torch.manual_seed(0)
held = []
for i in range(40):  # buffers that each outgrow the last one's hole, a small one kept after each
    big = torch.ones(int(2e6 + 2e5 * i))  # 8-40 MB, freed at once
    held.append(torch.ones(1000))  # pins the heap above the freed block: glibc cannot trim from the top
    del big
before = rss_mb()
ok = release_free_memory()
print(before, rss_mb(), ok)
"""


def test_release_free_memory_returns_freed_heap_pages_with_the_allocator_tunables():
    """With the mmap/trim thresholds at 4 GB, freed blocks stay resident until ``malloc_trim``."""
    import os
    import subprocess
    import sys

    from .conftest import REPO

    # arena_max=1: every allocation in the main heap (another thread's arena would mmap the large blocks)
    env = dict(os.environ, PYTHONPATH=str(REPO), GLIBC_TUNABLES="glibc.malloc.mmap_threshold=4294967295:"
               "glibc.malloc.trim_threshold=4294967295:glibc.malloc.arena_max=1")
    # Up to 3 tries: on the loaded 2-core machine one run in a few dozen started with the freed buffers already
    # gone (RSS 275 MB before the call, 222 after), so there was nothing left to return.
    runs = []
    for _ in range(3):
        out = subprocess.run([sys.executable, "-c", TRIM_SCRIPT], capture_output=True, text=True, env=env,
                             timeout=120, check=True).stdout.split()
        before, after, ok = int(out[0]), int(out[1]), out[2] == "True"
        assert ok
        assert after <= before + 20, (before, after)  # it never grows the heap
        runs.append((before, after))
        if before - after > 500:  # most of the 40 freed 8-40 MB buffers (~0.9 GB) go back
            break
    assert max(b - a for b, a in runs) > 500, runs
