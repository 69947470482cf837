"""``imc run`` in a subprocess, its CSV copied to ``/kaggle/working`` in a ``finally``.

The run folder's ``submission.csv`` is complete from the start (placeholder rows) and rewritten
after every scene, so whatever kills the run (an out-of-memory kill, a late import error, an
exception after the last scene) the last complete CSV is still copied. A CSV is only ever
replaced by a complete one: :func:`publish_submission` keeps the destination when the run's is
incomplete, and writes identity placeholders when there is neither (a submission scores, an absent
one fails). IMC 2025 placeholders: every image an outlier with ``nan`` poses.
"""

from __future__ import annotations

import enum
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from ..scenes import Competition, Scene
from .checks import expected_keys, submission_problems


class Published(str, enum.Enum):
    RUN = "run"  # the run's CSV, complete
    KEPT = "kept"  # the run's CSV missing or incomplete: the complete one already at the destination kept
    PLACEHOLDER = "placeholder"  # neither: identity/zero rows for every listed image


@dataclass(kw_only=True)
class RunOutcome:
    returncode: int
    published: Published
    destination: Path

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def stream(cmd: Sequence[str | os.PathLike], *, env: Mapping[str, str] | None = None) -> int:
    """Run ``cmd``, printing its output as it comes; return its exit code (negative: killed by a signal)."""
    print("$", " ".join(map(str, cmd)), flush=True)
    with subprocess.Popen(list(map(str, cmd)), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          bufsize=1, env=None if env is None else dict(env)) as proc:
        for line in proc.stdout:
            print(line, end="", flush=True)
    return proc.returncode


def _atomic_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f"{dst.name}.tmp-{os.getpid()}")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def publish_submission(run_csv: str | os.PathLike, destination: str | os.PathLike, scenes: list[Scene],
                       competition: Competition = Competition.IMC2023) -> Published:
    """Copy ``run_csv`` to ``destination`` when complete; else keep a complete ``destination``; else
    write placeholders there. Returns which (:class:`Published`)."""
    run_csv, destination = Path(run_csv), Path(destination)
    expected = expected_keys(scenes, competition)
    if not submission_problems(run_csv, expected, competition):
        _atomic_copy(run_csv, destination)
        return Published.RUN
    if not submission_problems(destination, expected, competition):
        return Published.KEPT
    from ..csv_writer import write_submission  # numpy only: works even when the run's imports broke

    destination.parent.mkdir(parents=True, exist_ok=True)
    write_submission(competition, scenes, {}, {}, destination)
    return Published.PLACEHOLDER


def run_and_publish(cmd: Sequence[str | os.PathLike], *, run_csv: str | os.PathLike, destination: str | os.PathLike,
                    scenes: list[Scene], env: Mapping[str, str] | None = None,
                    competition: Competition = Competition.IMC2023) -> RunOutcome:
    """Run ``cmd`` (``python -m imc run ...``); whatever happens, publish the CSV in a ``finally``."""
    returncode, published = -1, Published.PLACEHOLDER
    try:
        returncode = stream(cmd, env=env)
    finally:
        published = publish_submission(run_csv, destination, scenes, competition)
        print(f"submission: {published.value} -> {destination} (imc run exit code {returncode})", flush=True)
    return RunOutcome(returncode=returncode, published=published, destination=Path(destination))
