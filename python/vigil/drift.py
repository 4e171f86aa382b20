"""Drift detection: the original system's ``DriftDetector`` over Vigil's monitor.

Baselines, samples and checks are stored with the model version and audited, in the embedded
store or the server. Columns may be lists, numpy arrays (float64 and int64 read in place;
strings and objects are categories), pandas Series and DataFrames, or Arrow arrays, chunked
arrays and tables (pyarrow, polars; through the Arrow PyCapsule interface).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from . import _vigil
from .errors import ValidationError
from .registry import ModelRegistry, default_registry


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

    def seed_fields(self) -> dict:
        """The seed's six thresholds, and ``extra``."""
        d = {k: getattr(self, k) for k in ("psi_threshold", "ks_test_threshold", "performance_drop_threshold",
                                            "clinical_significance_threshold", "alert_on_drift", "alert_cooldown_hours")}
        d.update(self.extra)
        return d

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


def _column(name: str, v: Any) -> Any:
    """numpy arrays pass through; pandas and pyarrow convert to numpy; others stay sequences.
    Types that are neither numbers nor categories raise ``TypeError`` naming the column."""
    if type(v).__module__.startswith("pandas"):
        import numpy as np

        dtype = str(v.dtype)
        # Numeric dtypes (nullable ones too) as float64 with NaN for missing.
        if v.dtype.kind in "iuf" or dtype in ("Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64", "Float32", "Float64"):
            return v.to_numpy(dtype="float64", na_value=np.nan)
        if v.dtype.kind == "b":
            return v.to_numpy(dtype=bool)
        if dtype == "boolean":  # nullable booleans: categories true/false, NA missing
            return np.array([None if x is None or str(x) == "<NA>" else bool(x) for x in v.astype(object)], dtype=object)
        if v.dtype.kind in "Mmc" or dtype.startswith(("period", "interval", "datetime", "timedelta")):
            raise TypeError(f"column {name!r}: dtype {dtype} is not supported; use numbers or strings")
        if dtype == "category" and v.cat.categories.dtype.kind not in "OU" and str(v.cat.categories.dtype) not in ("string", "str"):
            raise TypeError(f"column {name!r}: categories of dtype {v.cat.categories.dtype} are not supported; use strings")
        return np.array([None if x is None or (x != x) or str(x) == "<NA>" else str(x) for x in v.astype(object)], dtype=object)
    # numpy arrays, sequences and Arrow objects (the compiled module reads Arrow through the
    # PyCapsule interface) pass as they are.
    return v


def _features(feature_data: Any) -> dict:
    if hasattr(feature_data, "columns") and hasattr(feature_data, "__getitem__") and not isinstance(feature_data, Mapping):
        # A pandas DataFrame or a pyarrow Table.
        names = list(feature_data.column_names if hasattr(feature_data, "column_names") else feature_data.columns)
        cols = {str(n): _column(str(n), feature_data[n]) for n in names}
    elif isinstance(feature_data, Mapping):
        cols = {str(k): _column(str(k), v) for k, v in feature_data.items()}
    else:
        raise TypeError("feature_data must be a dict of columns, a pandas DataFrame or a pyarrow Table")
    if "prediction" in cols:
        raise ValidationError("invalid_manifest", "a feature may not be named 'prediction' (pass the model's scores as predictions=)", "invalid_input")
    return cols


class DriftDetector:
    """The seed's ``DriftDetector``: ``set_baseline``, ``add_samples``, ``detect_drift``."""

    def __init__(self, config: Optional[DriftDetectorConfig] = None, registry: Optional[ModelRegistry] = None, user: Optional[str] = None):
        """``config``: when given, its thresholds are written into each version's stored drift
        configuration (the rest of it is kept) the first time the version is used; when not,
        the stored configuration is used as it is. ``registry``: default, the registry most
        recently created in this process."""
        self.config = config
        self.registry = registry or default_registry()
        self.user = user
        self._configured: set = set()

    def _version(self, model_id: str, route: str) -> dict:
        reader = self.user or self.registry._reader()
        v = self.registry._b.version(reader, model_id, route)
        if self.config is not None and v["model_id"] not in self._configured:
            stored = self.registry._b.drift_config(reader, v)
            stored.update(self.config.seed_fields())
            self.registry._b.set_drift_config(self.registry._actor(self.user), v, stored)
            self._configured.add(v["model_id"])
        return v

    def set_baseline(self, model_id: str, feature_data: Any, predictions: Any = None) -> dict:
        """Sets the version's reference data (training or validation data)."""
        features = _features(feature_data)
        v = self._version(model_id, "DriftDetector.set_baseline")
        return self.registry._b.set_baseline(self.registry._actor(self.user), v, features, _column("predictions", predictions) if predictions is not None else None)

    def add_samples(self, model_id: str, feature_data: Any, predictions: Any = None) -> dict:
        """Adds production data."""
        features = _features(feature_data)
        v = self._version(model_id, "DriftDetector.add_samples")
        return self.registry._b.add_samples(self.registry._actor(self.user), v, features, _column("predictions", predictions) if predictions is not None else None)

    def detect_drift(self, model_id: str, last_rows: Optional[int] = None) -> DriftReport:
        """Checks the samples since the newest baseline (or the newest ``last_rows``, a
        positive number) against it; the report is stored and audited, and alerts follow the
        configuration."""
        if last_rows is not None and (isinstance(last_rows, bool) or int(last_rows) != last_rows or last_rows <= 0):
            raise ValidationError("invalid_filter", "last_rows must be a positive whole number", "invalid_input")
        v = self._version(model_id, "DriftDetector.detect_drift")
        d = self.registry._b.detect_drift(self.registry._actor(self.user), v, None if last_rows is None else int(last_rows))
        return DriftReport(d.get("status", ""), list(d.get("recommendations", [])), list(d.get("features", [])), d.get("report_id"), d)
