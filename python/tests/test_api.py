"""Error mapping, column types, and equality of results between the embedded mode and the server
(the same Rust use cases behind both)."""

from __future__ import annotations

import numpy as np
import pytest
from holdout import holdout

import vigil
from vigil import _vigil
from vigil.errors import APPROVAL_CODES


def register(registry, version="1.0.0", name="sepsis"):
    return registry.register_model(name, version, vigil.ModelType.CLASSIFICATION, f"s3://m/{name}/{version}",
                                   metrics=vigil.ModelMetrics(auc_roc=0.9), lineage=vigil.ModelLineage(training_data_hash="sha256:x"),
                                   artifact_sha256="ab" * 32)


def test_every_error_code_maps_to_the_class_of_its_kind():
    classes = {"InvalidInput": vigil.ValidationError, "Unauthenticated": vigil.AuthenticationError, "Denied": vigil.PermissionDeniedError,
               "NotFound": vigil.NotFoundError, "Conflict": vigil.ConflictError, "Internal": vigil.StorageError}
    codes = _vigil.error_codes()
    assert len(codes) > 40
    for code, kind in codes:
        e = vigil.errors.from_code(code, "m", {"InvalidInput": "invalid_input", "Unauthenticated": "unauthenticated", "Denied": "denied",
                                                "NotFound": "not_found", "Conflict": "conflict", "Internal": "internal"}[kind])
        assert e.code == code
        assert isinstance(e, vigil.ApprovalError if code in APPROVAL_CODES else classes[kind]), (code, kind, type(e))


@pytest.mark.parametrize("mode", ["embedded", "remote"])
def test_errors_carry_their_codes_in_both_modes(store, request, mode):
    registry = vigil.ModelRegistry() if mode == "embedded" else vigil.ModelRegistry(request.getfixturevalue("server"), user="data_scientist_123")
    with pytest.raises(vigil.ValidationError) as e:
        registry.register_model("Bad Name!", "1.0.0", vigil.ModelType.CLASSIFICATION, "s3://m")
    assert e.value.code == "invalid_manifest" and "name" in e.value.message
    with pytest.raises(vigil.NotFoundError) as e:
        registry.get_model("nosuch@1.0.0")
    assert e.value.code in ("model_not_found", "version_not_found")
    m = register(registry)
    # Production without validation evidence, and the requester signing their own request.
    with pytest.raises(vigil.ApprovalError) as e:
        registry.request_promotion(m.model_id, vigil.ModelStage.PRODUCTION, justification="go")
    assert e.value.code == "validation_required"
    r = registry.request_promotion(m.model_id, vigil.ModelStage.STAGING, justification="go")
    with pytest.raises(vigil.PermissionDeniedError) as e:
        registry.approve_promotion(r.request_id, "data_scientist_123", "mine")
    assert e.value.code in ("role_not_permitted", "self_approval")
    with pytest.raises(vigil.AuthenticationError):
        vigil.ModelRegistry(None if mode == "embedded" else request.getfixturevalue("server"), user="ml_lead_456",
                            passwords=lambda u: "wrong password!").approve_promotion(r.request_id, "ml_lead_456")
    assert registry.approve_promotion(r.request_id, "ml_lead_456", "ok").approved


def test_column_types_are_checked_by_name(store):
    registry = vigil.ModelRegistry()
    m = register(registry)
    d = vigil.DriftDetector(registry=registry)
    with pytest.raises(TypeError, match='"age".*float32'):
        d.set_baseline(m.model_id, {"age": np.ones(100, dtype=np.float32)})
    with pytest.raises(TypeError, match='"age".*1-dimensional'):
        d.set_baseline(m.model_id, {"age": np.array([[1, 2]] * 50, dtype=object)})
    with pytest.raises(TypeError, match='"unit".*mixes numbers and text'):
        d.set_baseline(m.model_id, {"unit": ["a", 1, "b"]})
    with pytest.raises(TypeError, match="dict of columns"):
        d.set_baseline(m.model_id, [1, 2, 3])
    # float64 and int64 arrays, strided views, strings, None as missing, pandas.
    rng = np.random.default_rng(1)
    wide = rng.normal(size=(400, 2))
    base = {"age": wide[:, 0], "visits": rng.integers(0, 9, 400), "unit": np.array(["icu", "ward"] * 200), "lab": [None] + list(rng.normal(size=399))}
    assert d.set_baseline(m.model_id, base)["rows"] == 400
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"age": rng.normal(size=300), "visits": rng.integers(0, 9, 300), "unit": ["icu", "ward", "icu"] * 100, "lab": rng.normal(size=300)})
    assert d.add_samples(m.model_id, frame)["rows"] == 300
    report = d.detect_drift(m.model_id)
    kinds = {f["feature"]: f["stats"]["kind"] for f in report.features}
    assert kinds == {"age": "numeric", "visits": "numeric", "unit": "categorical", "lab": "numeric"}, kinds


def test_embedded_and_server_compute_the_same_numbers(store, server):
    """One store, reached both ways: the validation and drift numbers are identical."""
    local = vigil.ModelRegistry()
    far = vigil.ModelRegistry(server, user="data_scientist_123")
    m = register(local)
    y, scores, champion, sex = holdout(1500, 3)
    a = local.validate(m.model_id, scores, y, sensitive={"sex": sex})
    b = far.validate(m.model_id, scores, y, sensitive={"sex": sex})
    assert a["report_id"] != b["report_id"]
    for key in ("metrics", "fairness", "gates", "passed", "curves"):
        assert a[key] == b[key], key
    rng = np.random.default_rng(9)
    base = {"age": rng.normal(50, 10, 800), "unit": np.array(["icu", "ward", "er", "ward"] * 200)}
    cur = {"age": rng.normal(53, 10, 700), "unit": np.array(["icu", "ward", "ward", "ward", "er", "er", "icu"] * 100)}
    reports = []
    for reg in (local, far):
        d = vigil.DriftDetector(registry=reg)
        d.set_baseline(m.model_id, base)
        d.add_samples(m.model_id, cur)
        reports.append(d.detect_drift(m.model_id))
    strip = lambda fs: [{k: v for k, v in f.items()} for f in fs]  # noqa: E731
    assert strip(reports[0].features) == strip(reports[1].features)
    assert reports[0].status == reports[1].status and reports[0].recommendations == reports[1].recommendations
    card = far.model_card(m.model_id)
    assert card["record"] == "vigil.model_card/1" and card == local.model_card(m.model_id)


def test_the_stubs_cover_the_compiled_module():
    from pathlib import Path

    stub = (Path(vigil.__file__).parent / "_vigil.pyi").read_text()
    for name in _vigil.names():
        assert f"class {name}" in stub or f"def {name}(" in stub, name
    for method in (m for m in dir(_vigil.Store) if not m.startswith("_")):
        assert f"def {method}(" in stub, method
