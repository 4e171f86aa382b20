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
    assert isinstance(e.value, vigil.VigilError) and e.value.kind == "not_found"
    assert e.value.code in ("model_not_found", "version_not_found")
    m = register(registry)
    # Production without validation evidence, and the requester signing their own request.
    with pytest.raises(vigil.ApprovalError) as e:
        registry.request_promotion(m.model_id, vigil.ModelStage.PRODUCTION, justification="go")
    assert e.value.code == "validation_required"
    r = registry.request_promotion(m.model_id, vigil.ModelStage.STAGING, justification="go")
    with pytest.raises(vigil.PermissionDeniedError) as e:
        registry.approve_promotion(r.request_id, "data_scientist_123", "mine")
    assert e.value.code == "role_not_permitted", "data scientists do not sign"
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


def test_the_stubs_match_the_compiled_module():
    """Every public name of the compiled module is in the stub, with the same parameters."""
    import ast
    import inspect
    from pathlib import Path

    tree = ast.parse((Path(vigil.__file__).parent / "_vigil.pyi").read_text())
    stub: dict = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            stub[node.name] = [a.arg for a in node.args.args]
        elif isinstance(node, ast.ClassDef):
            stub[node.name] = None
            for f in node.body:
                if isinstance(f, ast.FunctionDef):
                    stub[f"{node.name}.{f.name}"] = [a.arg for a in f.args.args][1:]
    checked = 0
    for name in (n for n in dir(_vigil) if not n.startswith("_")):
        obj = getattr(_vigil, name)
        assert name in stub, name
        members = [(f"{name}.{m}", getattr(obj, m)) for m in dir(obj) if not m.startswith("_")] if inspect.isclass(obj) else [(name, obj)]
        if inspect.isclass(obj) and getattr(obj, "__text_signature__", None) is not None:
            members.append((f"{name}.__init__", obj))
        for qual, member in members:
            if isinstance(member, property) or qual.startswith("VigilError."):
                continue
            try:
                params = [p for p in inspect.signature(member).parameters if p not in ("self", "args", "kwargs")]
            except (TypeError, ValueError):
                continue
            assert qual in stub, qual
            assert stub[qual] == params, (qual, stub[qual], params)
            checked += 1
    assert checked > 25, checked


@pytest.mark.parametrize("mode", ["embedded", "remote"])
def test_bad_holdouts_and_columns_are_refused_alike_without_echoing_values(store, request, mode):
    registry = vigil.ModelRegistry() if mode == "embedded" else vigil.ModelRegistry(request.getfixturevalue("server"))
    m = register(registry)
    y, scores, _, sex = holdout(300, 4)
    for bad in ([2] * 300, ["John Smith"] * 300, [None] * 300):
        with pytest.raises(vigil.ValidationError) as e:
            registry.validate(m.model_id, scores, bad, sensitive={"sex": sex})
        assert e.value.code == "invalid_validation_data" and "John" not in str(e.value)
    d = vigil.DriftDetector(registry=registry)
    with pytest.raises((TypeError, vigil.ValidationError)) as e:
        d.set_baseline(m.model_id, {"age": [1.0, 2.0, "John Smith"] * 50})
    assert "John" not in str(e.value)
    if mode == "remote":
        with pytest.raises(vigil.ValidationError, match="values, not"):
            d.set_baseline(m.model_id, {"age": list(range(100)), "bmi": list(range(99))})


def test_a_detector_keeps_the_stored_configuration(store):
    registry = vigil.ModelRegistry()
    m = register(registry)
    b = registry._b
    me = "data_scientist_123"
    cfg = b.drift_config(me, b.version(me, m.model_id))
    cfg["min_window"] = 77
    b.set_drift_config(me, b.version(me, m.model_id), cfg)
    rng = np.random.default_rng(2)
    vigil.DriftDetector(registry=registry).set_baseline(m.model_id, {"x": rng.normal(size=200)})
    assert b.drift_config(me, b.version(me, m.model_id))["min_window"] == 77, "no config given: nothing written"
    vigil.DriftDetector(vigil.DriftDetectorConfig(psi_threshold=0.3), registry=registry).set_baseline(m.model_id, {"x": rng.normal(size=200)})
    after = b.drift_config(me, b.version(me, m.model_id))
    assert (after["min_window"], after["psi_threshold"]) == (77, 0.3), "the seed's thresholds merged into the rest"


def test_pandas_missing_values_and_arrow_columns(store):
    pd = pytest.importorskip("pandas")
    pa = pytest.importorskip("pyarrow")
    registry = vigil.ModelRegistry()
    m = register(registry)
    d = vigil.DriftDetector(registry=registry)
    rng = np.random.default_rng(3)
    n = 300
    frame = pd.DataFrame({
        "age": pd.array([None] + list(rng.integers(20, 90, n - 1)), dtype="Int64"),
        "unit": pd.Series(["icu", None, "ward"] * 100, dtype="category"),
        "smoker": pd.Series(["yes", np.nan, "no"] * 100),
    })
    assert d.set_baseline(m.model_id, frame)["rows"] == n
    table = pa.table({"age": pa.array(rng.integers(20, 90, n)), "unit": pa.array(["icu", "ward", "ward"] * 100).dictionary_encode(),
                      "smoker": pa.chunked_array([["yes", None, "no"] * 50, ["no"] * 150])})
    assert d.add_samples(m.model_id, table)["rows"] == n
    report = d.detect_drift(m.model_id)
    kinds = {f["feature"]: f["stats"]["kind"] for f in report.features}
    assert kinds == {"age": "numeric", "unit": "categorical", "smoker": "categorical"}, kinds
    with pytest.raises(TypeError, match='"when".*not supported'):
        d.add_samples(m.model_id, pa.table({"when": pa.array([1, 2, 3], type=pa.timestamp("s"))}))


def test_tokens_act_for_their_owner_only_and_plain_http_stays_local(store, server):
    import json
    import urllib.request

    req = urllib.request.Request(server + "/api/v1/auth/login", data=json.dumps({"user": "data_scientist_123", "password": "dana-password-1"}).encode(),
                                 method="POST", headers={"content-type": "application/json"})
    token = json.loads(urllib.request.urlopen(req).read())["token"]
    registry = vigil.connect(server, token=token)
    m = register(registry)
    assert m.created_by == "data_scientist_123", "the token's owner acts"
    r = registry.request_promotion(m.model_id, vigil.ModelStage.STAGING, justification="go")
    assert r.requester == "data_scientist_123"
    # Another user named as the actor signs in with their own password, never with the token.
    assert registry.approve_promotion(r.request_id, "ml_lead_456", "ok").approved
    with pytest.raises(vigil.ValidationError, match="https"):
        vigil.connect("http://vigil.example.org:8080", token=token)


def test_embedded_validation_re_hashes_a_local_artifact(store, tmp_path):
    import hashlib

    artifact = tmp_path / "model.onnx"
    artifact.write_bytes(b"model bytes")
    registry = vigil.ModelRegistry()
    m = registry.register_model("local", "1.0.0", vigil.ModelType.CLASSIFICATION, str(artifact),
                                lineage=vigil.ModelLineage(training_data_hash="sha256:x"), artifact_sha256=hashlib.sha256(b"model bytes").hexdigest())
    y, scores, _, sex = holdout(400, 8)
    gate = lambda r: next(g for g in r["gates"] if g["gate"] == "artifact_digest")  # noqa: E731
    ok = gate(registry.validate(m.model_id, scores, y, sensitive={"sex": sex}))
    assert ok["passed"] and "re-verified" in ok["detail"], ok
    artifact.write_bytes(b"tampered")
    bad = gate(registry.validate(m.model_id, scores, y, sensitive={"sex": sex}))
    assert bad["passed"] is False and "no longer match" in bad["detail"], bad


def test_every_public_name_has_a_docstring():
    import inspect

    missing = []
    for name in vigil.__all__:
        obj = getattr(vigil, name)
        if not (obj.__doc__ or "").strip():
            missing.append(name)
        if inspect.isclass(obj):
            for attr, member in vars(obj).items():
                if attr.startswith("_") or not (inspect.isfunction(member) or isinstance(member, (property, staticmethod, classmethod))):
                    continue
                fn = member.__func__ if isinstance(member, (staticmethod, classmethod)) else member
                if not (fn.__doc__ or "").strip():
                    missing.append(f"{name}.{attr}")
    assert missing == [], missing
    for module in (vigil, vigil.registry, vigil.drift, vigil.errors):
        assert (module.__doc__ or "").strip(), module.__name__
