"""Drift detection: the original system's ``DriftDetector`` over Vigil's monitor.

Baselines, samples and checks are stored with the model version and audited, in the embedded
store or the server. Columns may be lists, numpy arrays (float64 and int64 read in place;
strings and objects are categories), pandas Series or pyarrow arrays (through numpy).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from . import _vigil
from .registry import ModelRegistry


@dataclass
class DriftDetectorConfig:
    """Thresholds of a drift check (the seed's names and defaults)."""

    psi_threshold: float = 0.2
    ks_test_threshold: float = 0.05
    performance_drop_threshold: float = 0.05
    clinical_significance_threshold: float = 0.1
    alert_on_drift: bool = True
    alert_cooldown_hours: int = 4
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """Vigil's drift configuration JSON (the built-in values for anything not given)."""
        d = json.loads(_vigil.default_drift_config())
        d.update({k: getattr(self, k) for k in ("psi_threshold", "ks_test_threshold", "performance_drop_threshold",
                                                  "clinical_significance_threshold", "alert_on_drift", "alert_cooldown_hours")})
        d.update(self.extra)
        return d


@dataclass(frozen=True)
class DriftReport:
    """A drift check's outcome: ``status`` (``no_drift``, ``drift`` or ``insufficient_data``),
    ``recommendations`` in plain words, per-feature results, and the stored report id."""

    status: str
    recommendations: list
    features: list
    report_id: Optional[str]
    raw: dict = field(repr=False, compare=False)

    @property
    def drift_detected(self) -> bool:
        """Whether any check found drift."""
        return self.status == "drift"


def _column(v: Any) -> Any:
    """numpy arrays pass through; pandas and pyarrow convert to numpy; others stay sequences."""
    module = type(v).__module__
    if module.startswith("pyarrow"):
        return v.to_numpy(zero_copy_only=False) if hasattr(v, "type") and not hasattr(v, "num_chunks") else v.to_numpy()
    if module.startswith("pandas"):
        return v.to_numpy()
    return v


def _features(feature_data: Any) -> dict:
    if hasattr(feature_data, "columns") and hasattr(feature_data, "__getitem__") and not isinstance(feature_data, Mapping):
        # A pandas DataFrame or a pyarrow Table.
        names = list(feature_data.column_names if hasattr(feature_data, "column_names") else feature_data.columns)
        return {str(n): _column(feature_data[n]) for n in names}
    if not isinstance(feature_data, Mapping):
        raise TypeError("feature_data must be a dict of columns, a pandas DataFrame or a pyarrow Table")
    return {str(k): _column(v) for k, v in feature_data.items()}


class DriftDetector:
    """The seed's ``DriftDetector``: ``set_baseline``, ``add_samples``, ``detect_drift``."""

    def __init__(self, config: Optional[DriftDetectorConfig] = None, registry: Optional[ModelRegistry] = None, user: Optional[str] = None):
        self.config = config or DriftDetectorConfig()
        self.registry = registry or ModelRegistry()
        self.user = user
        self._configured: set = set()

    def _version(self, model_id: str) -> dict:
        v = self.registry._b.version(model_id)
        if v["model_id"] not in self._configured:
            self.registry._b.set_drift_config(self.registry._actor(self.user), v, self.config.to_dict())
            self._configured.add(v["model_id"])
        return v

    def set_baseline(self, model_id: str, feature_data: Any, predictions: Any = None) -> dict:
        """Sets the version's reference data (training or validation data)."""
        v = self._version(model_id)
        return self.registry._b.set_baseline(self.registry._actor(self.user), v, _features(feature_data), _column(predictions) if predictions is not None else None)

    def add_samples(self, model_id: str, feature_data: Any, predictions: Any = None) -> dict:
        """Adds production data."""
        v = self._version(model_id)
        return self.registry._b.add_samples(self.registry._actor(self.user), v, _features(feature_data), _column(predictions) if predictions is not None else None)

    def detect_drift(self, model_id: str, last_rows: Optional[int] = None) -> DriftReport:
        """Checks the samples since the newest baseline (or the newest ``last_rows``) against it;
        the report is stored and audited, and alerts follow the configuration."""
        v = self._version(model_id)
        d = self.registry._b.detect_drift(self.registry._actor(self.user), v, last_rows)
        return DriftReport(d.get("status", ""), list(d.get("recommendations", [])), list(d.get("features", [])), d.get("report_id"), d)
