"""Cache names: each stage's file carries a fingerprint of its own config and of its inputs'.

A changed parameter changes exactly the fingerprints of its stage and of the stages after it;
an unchanged one reproduces the same names, so the caches are reused. Per-item validity
(image content hashes inside the h5 files) covers images that change under the same name.

Chain: features ← features.*; pairs ← pairs.* + image contents; matches ← matching.* (but
``min_matches``) + features; verified ← verification.* + matching.min_matches + seed + matches;
sfm ← sfm.* + seed + verified + pairs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .io_utils import fingerprint

# Bump when a stage's output format or algorithm changes, to invalidate old caches.
STAGE_VERSIONS = {"features": 1, "pairs": 2, "matches": 1, "verified": 2, "sfm": 1}


@dataclass(frozen=True, kw_only=True)
class StageFingerprints:
    features: str
    pairs: str
    matches: str
    verified: str
    sfm: str

    def as_dict(self) -> dict[str, str]:
        return {"features": self.features, "pairs": self.pairs, "matches": self.matches,
                "verified": self.verified, "sfm": self.sfm}


def stage_configs(conf: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The part of the config each stage depends on directly (saved beside its cache)."""
    matching = {k: v for k, v in conf["matching"].items() if k != "min_matches"}
    return {
        "features": {"features": conf["features"], "version": STAGE_VERSIONS["features"]},
        "pairs": {"pairs": conf["pairs"], "version": STAGE_VERSIONS["pairs"]},
        "matches": {"matching": matching, "version": STAGE_VERSIONS["matches"]},
        "verified": {"verification": conf["verification"], "min_matches": conf["matching"]["min_matches"],
                     "seed": conf["seed"], "version": STAGE_VERSIONS["verified"]},
        "sfm": {"sfm": conf["sfm"], "seed": conf["seed"], "version": STAGE_VERSIONS["sfm"]},
    }


def compute(conf: dict[str, Any], image_sha1s: dict[str, str]) -> StageFingerprints:
    c = stage_configs(conf)
    images = fingerprint(sorted(image_sha1s.items()))
    features = fingerprint(c["features"])
    pairs = fingerprint([c["pairs"], images])
    matches = fingerprint([c["matches"], features])
    verified = fingerprint([c["verified"], matches])
    sfm = fingerprint([c["sfm"], verified, pairs])
    return StageFingerprints(features=features, pairs=pairs, matches=matches, verified=verified, sfm=sfm)
