"""Commit-time checks: a submission that would score zero is an error when the notebook is committed,
never on the scoring rerun (where any complete CSV beats none).

Kaggle sets ``KAGGLE_IS_COMPETITION_RERUN`` only while it reruns a committed notebook on the hidden
test set. Without it, :func:`enforce` raises :class:`SilentZeroError` for any problem found by

- :func:`input_problems`: none of the listed images exist (wrong data root or mount layout);
- :func:`run_problems`: every scene failed (``summary.json`` statuses, or the per-scene
  ``report.json`` files when the run died before its summary), or the share of identity/zero rows
  passes ``max_identity_share``;
- :func:`submission_problems`: the CSV lacks rows, or has malformed / non-finite poses.

Each message names the cause and the notebook parameter (or config key) that fixes it.

Completeness is keyed on ``image_path`` (IMC 2023, 2024) or ``image_id`` (IMC 2025, whose unregistered
and outlier rows carry ``nan`` poses: counted with the identity rows as rows without a pose).
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

from ..scenes import Competition, Scene

RERUN_ENV = "KAGGLE_IS_COMPETITION_RERUN"
DEFAULT_MAX_IDENTITY_SHARE = 0.5
IDENTITY_R = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
ZERO_T = (0.0, 0.0, 0.0)
FAILED = "failed"
NOT_RUN = {"pending", "skipped_budget"}


class SilentZeroError(RuntimeError):
    """The submission would score (close to) zero; raised at commit time only."""


def is_rerun(environ: Mapping[str, str] | None = None) -> bool:
    return bool((os.environ if environ is None else environ).get(RERUN_ENV))


def expected_paths(scenes: Iterable[Scene]) -> list[str]:
    return [p for s in scenes for p in s.image_paths]


def key_column(competition: Competition = Competition.IMC2023) -> str:
    return "image_id" if competition is Competition.IMC2025 else "image_path"


def expected_keys(scenes: Iterable[Scene], competition: Competition = Competition.IMC2023) -> list[str]:
    """What each row is keyed on: image paths, or IMC 2025's image_ids."""
    if competition is not Competition.IMC2025:
        return expected_paths(scenes)
    from ..csv_writer import sample_rows_2025

    return [r.image_id for r in sample_rows_2025(list(scenes))]


def input_problems(scenes: list[Scene]) -> list[str]:
    """Before the run: do the listed images exist at all?"""
    listed = [(s, p) for s in scenes for p in s.image_paths]
    if not listed:
        return ["no images are listed (empty sample_submission.csv or no <dataset>/<scene>/images/ folders): "
                "check COMPETITION_DIR / SAMPLE_SUBMISSION"]
    existing = sum(s.file(p).is_file() for s, p in listed)
    if existing == 0:
        scene, first = listed[0]
        return [f"none of the {len(listed)} listed images exist (e.g. {scene.file(first)}): image_path is relative to "
                f"the data root {scene.root}. Fix DATA_ROOT (IMC 2024 lists paths relative to the competition "
                f"folder, IMC 2023 relative to its test/ folder) or COMPETITION_DIR"]
    return []


@dataclass(kw_only=True)
class SubmissionStats:
    n_rows: int = 0
    n_identity: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def identity_share(self) -> float:
        return self.n_identity / self.n_rows if self.n_rows else 1.0


def _numbers(text: str) -> list[float] | None:
    try:
        values = [float(v) for v in text.split(";")]
    except (ValueError, AttributeError):
        return None
    return values if all(math.isfinite(v) for v in values) else None


def _all_nan(text: str, count: int) -> bool:
    values = (text or "").split(";")
    return len(values) == count and all(v.strip().lower() == "nan" for v in values)


def submission_stats(csv_path: str | os.PathLike, expected: list[str],
                     competition: Competition = Competition.IMC2023) -> SubmissionStats:
    """Rows, identity/zero (IMC 2025: also ``nan``) rows and completeness problems of a submission CSV;
    rows keyed on :func:`key_column`."""
    column = key_column(competition)
    stats = SubmissionStats()
    path = Path(csv_path)
    if not path.is_file():
        stats.problems.append(f"{path} does not exist")
        return stats
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, csv.Error, UnicodeDecodeError) as exc:
        stats.problems.append(f"{path} is unreadable: {exc}")
        return stats
    stats.n_rows = len(rows)
    if len(rows) != len(expected):
        stats.problems.append(f"{len(rows)} rows, expected {len(expected)}")
    missing = sorted(set(expected) - {r.get(column) for r in rows})
    if missing:
        stats.problems.append(f"{len(missing)} image(s) without a row ({column}), e.g. {missing[:3]}")
    for r in rows:
        if competition is Competition.IMC2025 and _all_nan(r.get("rotation_matrix"), 9) \
                and _all_nan(r.get("translation_vector"), 3):
            stats.n_identity += 1  # unregistered or an outlier: nan is the format's "no pose"
            continue
        R, t = _numbers(r.get("rotation_matrix") or ""), _numbers(r.get("translation_vector") or "")
        if R is None or t is None or len(R) != 9 or len(t) != 3:
            stats.problems.append(f"bad pose for {r.get(column)}: {r.get('rotation_matrix')!r} "
                                  f"{r.get('translation_vector')!r}")
            break
        stats.n_identity += all(abs(a - b) < 1e-9 for a, b in zip(R + t, IDENTITY_R + ZERO_T))
    return stats


def submission_problems(csv_path: str | os.PathLike, expected: list[str],
                        competition: Competition = Competition.IMC2023) -> list[str]:
    return submission_stats(csv_path, expected, competition).problems


def scene_reports(run_dir: str | os.PathLike) -> list[dict]:
    """Per-scene reports: ``summary.json``, else the ``scenes/*/*/report.json`` a dying run left."""
    run_dir = Path(run_dir)
    summary = run_dir / "summary.json"
    if summary.is_file():
        return list(json.loads(summary.read_text()).get("scenes", []))
    return [json.loads(p.read_text()) for p in sorted(run_dir.glob("scenes/*/*/report.json"))]


def run_problems(run_dir: str | os.PathLike, csv_path: str | os.PathLike, expected: list[str], *,
                 max_identity_share: float = DEFAULT_MAX_IDENTITY_SHARE,
                 competition: Competition = Competition.IMC2023) -> list[str]:
    """After the run: failed scenes, identity share, completeness."""
    problems = []
    reports = [r for r in scene_reports(run_dir) if r.get("n_images", 0) > 0]
    ran = [r for r in reports if r.get("status") not in NOT_RUN]
    if ran and all(r.get("status") == FAILED for r in ran):
        first = ran[0]
        problems.append(
            f"every scene failed ({len(ran)}), e.g. {first.get('dataset')}/{first.get('scene')}: {first.get('error')}. "
            f"See {Path(run_dir)}/scenes/*/*/log.txt; an unusable GPU: OVERRIDES=['device=cpu'] or another "
            f"accelerator; missing weights: WEIGHTS_DIRS")
    stats = submission_stats(csv_path, expected, competition)
    problems += stats.problems
    if stats.n_rows and not stats.problems and stats.identity_share > max_identity_share:
        problems.append(
            f"{stats.n_identity}/{stats.n_rows} rows ({stats.identity_share:.0%}) have identity/zero"
            f"{' or nan' if competition is Competition.IMC2025 else ''} poses, above "
            f"MAX_IDENTITY_SHARE={max_identity_share}: images were missing, unreadable or not registered (see the "
            f"summary table and {Path(run_dir)}/scenes/*/*/report.json); raise MAX_IDENTITY_SHARE if this is expected")
    return problems


def enforce(problems: list[str], *, rerun: bool | None = None, what: str = "submission") -> None:
    """Commit time: raise :class:`SilentZeroError` naming every problem. Rerun: print them and go on."""
    if not problems:
        return
    rerun = is_rerun() if rerun is None else rerun
    text = f"{what} would score (close to) zero:\n  - " + "\n  - ".join(problems)
    if rerun:
        print(f"WARNING ({RERUN_ENV} is set, continuing): {text}", flush=True)
        return
    raise SilentZeroError(text)
