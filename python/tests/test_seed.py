"""The original system's quick start (shared/seed: "Register a Model", "Request Production
Promotion", "Drift Detection", "Configuration"), verbatim except for the import lines and the
`[...]` placeholders, which are filled with data. Between the snippets, the steps Vigil adds are
marked: Production needs a passing validation, and the default policy a clinical second
signature. Run embedded and against `vigil serve`."""

from __future__ import annotations

import numpy as np
import pytest
from holdout import holdout

# The seed's imports were `from src.registry.model_registry import (...)` and
# `from src.monitoring.drift_detection import DriftDetector, DriftDetectorConfig`.
from vigil import (
    DriftDetector, DriftDetectorConfig, ModelCard, ModelLineage, ModelMetrics, ModelRegistry, ModelStage, ModelType,
)


def seed_register(registry):
    # --- seed: Register a Model (verbatim) ---
    # Register model with full lineage
    model = registry.register_model(
        name="diabetes-risk-classifier",
        version="1.0.0",
        model_type=ModelType.CLASSIFICATION,
        artifact_uri="s3://models/diabetes-classifier/v1.0.0",
        metrics=ModelMetrics(
            accuracy=0.92,
            auc_roc=0.95,
            precision=0.89,
            recall=0.91,
        ),
        lineage=ModelLineage(
            training_data_uri="s3://data/diabetes-training-v3",
            training_data_version="3.0.0",
            training_data_hash="sha256:abc123...",
            training_run_id="run_456",
            # ... full lineage
        ),
        model_card=ModelCard(
            model_name="Diabetes Risk Classifier",
            intended_use="Identify patients at risk for Type 2 diabetes",
            clinical_validation_status="Validated on 10,000 patient cohort",
            # ... full model card
        ),
    )
    return model


def vigil_validate(registry, model):
    # --- Vigil: Production needs a passing validation of this content. The seed's card has
    # three fields and it records no artifact digest, so an administrator waives those two
    # gates for this model, on record.
    registry.set_validation_policy({"require_card_complete": False, "require_artifact_digest": False}, "the seed's example: three card fields, no digest",
                                   model="diabetes-risk-classifier", admin="admin")
    y, scores, _, sex = holdout()
    report = registry.validate(model.model_id, scores, y, sensitive={"sex": sex})
    assert report["passed"], [g for g in report["gates"] if g["passed"] is not True]
    return report


def seed_promote(registry, model):
    # --- seed: Request Production Promotion (verbatim) ---
    # Request promotion with justification
    request = registry.request_promotion(
        model_id=model.model_id,
        to_stage=ModelStage.PRODUCTION,
        requester_id="data_scientist_123",
        justification="Model exceeds performance thresholds, validated by clinical team",
    )

    # Approve promotion (requires appropriate permissions)
    registry.approve_promotion(
        request_id=request.request_id,
        approver_id="ml_lead_456",
        comments="Approved after clinical validation review",
    )
    return request


def seed_drift(model, registry):
    rng = np.random.default_rng(5)
    n = 1000
    train = {"age": rng.normal(55, 12, n), "bmi": rng.normal(28, 5, n), "glucose": rng.normal(105, 20, n)}
    prod = {"age": rng.normal(63, 12, n), "bmi": rng.normal(28, 5, n), "glucose": rng.normal(105, 20, n)}
    preds = rng.random(n)
    # --- seed: Drift Detection (verbatim; the seed's `[...]` filled with arrays) ---
    detector = DriftDetector(config=DriftDetectorConfig(
        psi_threshold=0.2,
        ks_test_threshold=0.05,
    ))

    # Set baseline from training data
    detector.set_baseline(
        model_id=model.model_id,
        feature_data={"age": train["age"], "bmi": train["bmi"], "glucose": train["glucose"]},
    )

    # Add production samples
    detector.add_samples(
        model_id=model.model_id,
        feature_data={"age": prod["age"], "bmi": prod["bmi"], "glucose": prod["glucose"]},
        predictions=preds,
    )

    # Run drift detection
    report = detector.detect_drift(model_id=model.model_id)
    print(f"Status: {report.status}")
    print(f"Recommendations: {report.recommendations}")
    return report


def run_seed(registry):
    model = seed_register(registry)
    assert model.stage == ModelStage.DEVELOPMENT and model.model_id.startswith("mv_")
    assert model.lineage["training_data_hash"] == "sha256:abc123..."
    assert "Diabetes Risk Classifier" in str(model.model_card)
    vigil_validate(registry, model)
    request = seed_promote(registry, model)
    pending = registry.get_request(request.request_id)
    assert pending.status == "pending" and pending.validation_report_id, pending
    # --- Vigil: the default Production policy also needs a clinical reviewer's signature.
    done = registry.approve_promotion(request.request_id, "clinician_789", "Clinically appropriate for the intended population")
    assert done.approved
    assert registry.get_model(model.model_id).stage == ModelStage.PRODUCTION
    assert registry.get_production_model("diabetes-risk-classifier").model_id == model.model_id

    report = seed_drift(model, registry)
    assert report.status == "drift" and report.drift_detected
    assert any("age" in r for r in report.recommendations), report.recommendations
    age = next(f for f in report.features if f["feature"] == "age")
    assert age["verdict"] == "drift", age
    assert registry.verify_audit_trail()["ok"] is True
    return model, report


def test_seed_quick_start_embedded(store, capsys):
    registry = ModelRegistry()
    assert registry.embedded
    _, report = run_seed(registry)
    out = capsys.readouterr().out
    assert "Status: drift" in out and "Recommendations: [" in out


def test_seed_quick_start_embedded_on_postgresql(pg_store, capsys):
    # The same code on an embedded PostgreSQL store (VIGIL_DATABASE_URL, VIGIL_SIGNING_KEY).
    registry = ModelRegistry()
    assert registry.embedded
    run_seed(registry)
    assert "Status: drift" in capsys.readouterr().out


def test_seed_quick_start_against_a_server(server, capsys, monkeypatch):
    # The same code; the environment points it at the server (VIGIL_USER is set already).
    monkeypatch.setenv("VIGIL_URL", server)
    registry = ModelRegistry()
    assert not registry.embedded
    _, remote_report = run_seed(registry)
    assert "Status: drift" in capsys.readouterr().out


def test_the_seed_configuration_block():
    # --- seed: Configuration (verbatim) ---
    config = DriftDetectorConfig(
        # Statistical thresholds
        psi_threshold=0.2,           # Population Stability Index
        ks_test_threshold=0.05,      # Kolmogorov-Smirnov p-value
        performance_drop_threshold=0.05,

        # Healthcare-specific
        clinical_significance_threshold=0.1,

        # Alerting
        alert_on_drift=True,
        alert_cooldown_hours=4,
    )
    d = config.to_dict()
    assert (d["psi_threshold"], d["alert_cooldown_hours"], d["alert_on_drift"]) == (0.2, 4, True)
    assert "binning" in d or "min_window" in d, "the rest of Vigil's configuration comes with its defaults"
