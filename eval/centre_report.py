"""The report of the camera-centre metrics (IMC 2024, IMC 2025): same JSON shape as IMC 2023's.

``overall`` is a fraction in [0, 1] (IMC 2025's row-order quirk can push it above 1, see
:mod:`eval.imc2025`), ``datasets`` maps dataset -> score, ``scenes`` maps ``dataset/scene`` -> the
scene's mAA; ``details`` / ``dataset_details`` carry each metric's own fields.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(kw_only=True)
class CentreScoreReport:
    metric: str
    overall: float
    datasets: dict[str, float]
    scenes: dict[str, float]
    details: dict[str, dict[str, Any]]  # per dataset/scene
    dataset_details: dict[str, dict[str, Any]]
    extra: dict[str, Any] = field(default_factory=dict)  # metric-level fields (e.g. overall_percent)
    warnings: list[str] = field(default_factory=list)
    thresholds_path: str = ""

    def to_dict(self) -> dict:
        return {
            "metric": self.metric,
            "overall": self.overall,
            **self.extra,
            "datasets": dict(self.datasets),
            "scenes": dict(self.scenes),
            "details": self.details,
            "dataset_details": self.dataset_details,
            "warnings": list(self.warnings),
            "thresholds_path": self.thresholds_path,
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, default=_jsonable)

    def format_table(self) -> str:
        header = f"{'dataset/scene':<40} {'images':>6} {'cluster':>18} {'overlap':>7} {'mAA':>7} {'score':>7}"
        lines = [f"metric {self.metric}", header, "-" * len(header)]
        for dataset, value in self.datasets.items():
            for name, d in self.details.items():
                if d["dataset"] != dataset:
                    continue
                cluster = str(d.get("cluster", ""))[:18]
                overlap = d.get("overlap", "")
                lines.append(f"{name:<40} {d['n_images']:>6} {cluster:>18} {overlap!s:>7} {self.scenes[name]:>7.4f}")
            dd = self.dataset_details.get(dataset, {})
            tail = "".join(f" {k}={dd[k]:.4f}" for k in ("mAA", "clusterness") if k in dd)
            lines.append(f"{dataset + ' (dataset)':<40} {'':>6} {'':>18} {'':>7} {'':>7} {value:>7.4f}{tail}")
        lines.append("-" * len(header))
        extra = "".join(f"  {k}={v:.4f}" for k, v in self.extra.items() if isinstance(v, float))
        lines.append(f"{'overall':<40} {'':>6} {'':>18} {'':>7} {'':>7} {self.overall:>7.4f}{extra}")
        return "\n".join(lines)


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
