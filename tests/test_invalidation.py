"""Config change safety: a changed parameter invalidates exactly its stage and the stages after it.

Checked over every leaf key of every stage section of ``configs/default.yaml`` with
``imc.stages.fingerprints``, then end to end: an identical rerun extracts and matches nothing,
and a verification-only change recomputes verification (and mapping) only.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, Iterator

import pytest

from imc import stages
from imc.config import load_config

from .corpus import TINY, copy_real_scene, run_cli

PER_EXTRACTOR = {"features:aliked", "matches:aliked"}
AFTER_FEATURES = {"features:aliked", "screen", "matches:aliked", "fuse", "verified", "sfm"}
# switched-off stages (orient, screening): only their switch enters the fingerprints
SWITCHES = {"orient.enabled": {"orient"} | AFTER_FEATURES, "screening.enabled": {"screen", "sfm"}}


def expected_stages(key: str) -> set[str]:
    """The caches that a change of ``key`` must invalidate (and no others)."""
    if key == "seed":  # seeds RANSAC in verification and the mapper
        return {"verified", "sfm"}
    if key.startswith("matchers.nearest_neighbour."):  # a matcher that no extractor uses
        return set()
    parts = key.split(".")
    if parts[0] in ("features", "matching") and len(parts) > 2 and parts[1] not in ("aliked",):
        return set()  # an extractor that features.extractors does not list (disk, sift)
    if key in SWITCHES:
        return SWITCHES[key]
    section = key.split(".")[0]
    if section in ("orient", "screening"):  # off by default: their other settings rename nothing
        return set()
    return {"features": AFTER_FEATURES, "pairs": {"pairs", "screen", "sfm"},
            "matching": {"matches:aliked", "fuse", "verified", "sfm"},
            "matchers": {"matches:aliked", "fuse", "verified", "sfm"}, "fusion": {"fuse", "verified", "sfm"},
            "cameras": {"verified", "sfm"}, "verification": {"verified", "sfm"}, "sfm": {"sfm"}}.get(section, set())


def leaves(node: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in node.items():
        if isinstance(value, dict) and value:
            yield from leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def another_value(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, str):
        return value + "_changed"
    if isinstance(value, list):
        return [*value, "changed"]
    if isinstance(value, dict):
        return {**value, "changed": 1}
    return 1  # None


def with_value(conf: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(conf)
    *path, last = key.split(".")
    node = out
    for k in path:
        node = node[k]
    node[last] = value
    return out


def changed_stages(a: dict[str, str], b: dict[str, str]) -> set[str]:
    return {k for k in a if a[k] != b[k]}


BASE = load_config(None, ["features.extractors=[aliked]"])  # the extractor these expectations name
SHA1S = {"d/s/images/a.jpg": "1" * 40, "d/s/images/b.jpg": "2" * 40}
STAGE_SECTIONS = ("orient", "features", "pairs", "screening", "matching", "matchers", "fusion", "cameras",
                  "verification", "sfm", "seed")
# features.extractors names the extractors: changing it is tested on its own below
STAGE_KEYS = [k for k, _ in leaves(BASE) if k.split(".")[0] in STAGE_SECTIONS and k != "features.extractors"]
# device and weights_dir are left out on purpose: other weights (or CUDA numerics) give other features,
# yet the fingerprints do not cover them; a cache must not be shared across those.
OTHER_KEYS = [k for k, _ in leaves(BASE) if k not in STAGE_KEYS and k not in ("device", "weights_dir",
                                                                               "features.extractors")]


def test_every_stage_section_is_covered():
    sections = {k.split(".")[0] for k in STAGE_KEYS}
    assert sections == set(STAGE_SECTIONS)
    assert len(STAGE_KEYS) > 30  # every leaf, nested ones (pairs.retrieval.*) included


@pytest.mark.parametrize("key", STAGE_KEYS)
def test_stage_parameter_invalidates_its_stage_and_later_ones(key):
    value = dict(leaves(BASE))[key]
    before = stages.fingerprints(BASE, SHA1S)
    after = stages.fingerprints(with_value(BASE, key, another_value(value)), SHA1S)
    assert changed_stages(before, after) == expected_stages(key), key
    assert stages.fingerprints(BASE, SHA1S) == before  # stable: same config, same names


@pytest.mark.parametrize("key", OTHER_KEYS)
def test_run_parameters_invalidate_nothing(key):
    """Where data, outputs and caches live, progress bars, budgets: no cache depends on them."""
    value = dict(leaves(BASE))[key]
    after = stages.fingerprints(with_value(BASE, key, another_value(value)), SHA1S)
    assert changed_stages(stages.fingerprints(BASE, SHA1S), after) == set(), key


def test_image_content_invalidates_pairs_and_per_item_entries():
    after = stages.fingerprints(BASE, {**SHA1S, "d/s/images/b.jpg": "3" * 40})
    # pairs and mapping by name; features/matches/verified entries by the sha1 stored with each item
    assert changed_stages(stages.fingerprints(BASE, SHA1S), after) == {"pairs", "screen", "sfm"}


@pytest.mark.parametrize("key", ["orient.partners", "orient.min_ratio", "screening.min_matches",
                                 "screening.num_keypoints"])
def test_switched_on_stage_settings_invalidate_their_stage_and_later_ones(key):
    section = key.split(".")[0]
    on = with_value(BASE, f"{section}.enabled", True)
    value = dict(leaves(BASE))[key]
    after = stages.fingerprints(with_value(on, key, another_value(value)), SHA1S)
    expected = {"orient"} | AFTER_FEATURES if section == "orient" else {"screen", "sfm"}
    assert changed_stages(stages.fingerprints(on, SHA1S), after) == expected


@pytest.mark.parametrize("name", ["orient", "screen"])
def test_a_new_version_of_a_switched_off_stage_renames_nothing_and_of_a_switched_on_one_everything_after(
        name, monkeypatch):
    """An off stage is a no-op whatever its version: bumping it must not re-extract every cache."""
    switch = stages.BY_NAME[name].switch
    on = with_value(BASE, switch, True)
    before_off, before_on = stages.fingerprints(BASE, SHA1S), stages.fingerprints(on, SHA1S)
    bumped = dataclasses.replace(stages.BY_NAME[name], version=stages.BY_NAME[name].version + 1)
    monkeypatch.setattr(stages, "STAGES", tuple(bumped if s.name == name else s for s in stages.STAGES))
    assert stages.fingerprints(BASE, SHA1S) == before_off
    expected = {"orient"} | AFTER_FEATURES if name == "orient" else {"screen", "sfm"}
    assert changed_stages(before_on, stages.fingerprints(on, SHA1S)) == expected


def test_a_second_extractor_adds_its_outputs_and_changes_the_fused_ones_only():
    two = stages.fingerprints(with_value(BASE, "features.extractors", ["aliked", "toy"]), SHA1S)
    one = stages.fingerprints(BASE, SHA1S)
    assert set(two) - set(one) == {"features:toy", "matches:toy"}
    assert {k for k in one if one[k] != two[k]} == {"screen", "fuse", "verified", "sfm"}  # aliked's own caches are reused


@pytest.mark.slow
def test_identical_rerun_computes_nothing_and_a_verification_change_only_verifies(tmp_path):
    copy_real_scene(tmp_path / "data", "strecha", "fountain", n=4)
    args = [f"data.root={tmp_path / 'data'}", f"cache_dir={tmp_path / 'cache'}", *TINY]
    first = run_cli(args + [f"output={tmp_path / 'run1'}"], log_path=tmp_path / "first.txt")
    assert "features: 4/4 images to extract" in first and "matches: 6 pairs to match" in first
    second = run_cli(args + [f"output={tmp_path / 'run2'}"], log_path=tmp_path / "second.txt")
    assert "features: 0/4 images to extract" in second and "matches: 0 pairs to match" in second
    assert "verify: 0 pairs to verify" in second and "mapping:" not in second  # sfm folder reused
    assert (tmp_path / "run1" / "submission.csv").read_text() == (tmp_path / "run2" / "submission.csv").read_text()
    third = run_cli(args + [f"output={tmp_path / 'run3'}", "verification.max_error_px=3.0"],
                    log_path=tmp_path / "third.txt")
    assert "features: 0/4 images to extract" in third and "matches: 0 pairs to match" in third
    assert "verify: 6 pairs to verify" in third and "mapping:" in third


def test_an_image_removed_from_the_scene_is_not_mapped_from_the_shared_cache(tmp_path):
    """The per-image caches keep a removed image's entries; mapping uses only the scene's current images."""
    paths = copy_real_scene(tmp_path / "data", "strecha", "fountain", n=4)
    args = [f"data.root={tmp_path / 'data'}", f"cache_dir={tmp_path / 'cache'}", *TINY]
    first = run_cli(args + [f"output={tmp_path / 'run1'}"], log_path=tmp_path / "first.txt")
    assert "/4 images registered" in first
    (tmp_path / "data" / paths[-1]).unlink()
    second = run_cli(args + [f"output={tmp_path / 'run2'}"], log_path=tmp_path / "second.txt")
    assert "features: 0/3 images to extract" in second
    assert "/3 images registered" in second, second  # not "/4": the removed image is not in the database
