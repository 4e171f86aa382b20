"""The two modes on awkward data, PHI read audit, the audit trail, and server sessions."""

from __future__ import annotations

import numpy as np
import pytest
from holdout import holdout
from test_api import register

import vigil
from vigil import _vigil


def both(store, server):
    return vigil.ModelRegistry(), vigil.ModelRegistry(server, user="data_scientist_123")


def test_awkward_columns_mean_the_same_in_both_modes(store, server):
    """Booleans, numbers written as text, the text "NA", NaN and None: the server receives
    exactly the columns the embedded mode builds, so the statistics agree to the bit."""
    local, far = both(store, server)
    m = register(local)
    rng = np.random.default_rng(5)
    n = 600
    def frame(shift):
        return {
            "age": [None if i % 50 == 0 else float(x) for i, x in enumerate(rng.normal(60 + shift, 9, n))],
            "flag": np.array([bool(i % (3 + shift)) for i in range(n)]),
            "zip3": np.array([["021", "100", "945"][(i + shift) % 3] for i in range(n)]),
            "note": ["NA" if i % 4 == 0 and not shift else ("none" if i % 7 == 0 else None if i % 11 == 0 else "ok") for i in range(n)],
            "lab": np.where(np.arange(n) % 13 == 0, np.nan, rng.normal(1 + shift / 10, 1, n)),
        }
    base, cur = frame(0), frame(1)
    reports = []
    for reg in (local, far):
        d = vigil.DriftDetector(registry=reg)
        d.set_baseline(m.model_id, base)
        d.add_samples(m.model_id, cur)
        reports.append(d.detect_drift(m.model_id))
    kinds = {f["feature"]: f["stats"]["kind"] for f in reports[0].features}
    assert kinds == {"age": "numeric", "flag": "categorical", "zip3": "categorical", "note": "categorical", "lab": "numeric"}, kinds
    assert reports[0].features == reports[1].features
    # "021" stays a category (never the number 21, above); "NA" is a category, not missing:
    # the samples have none of it, so one category vanished.
    note = next(f for f in reports[0].features if f["feature"] == "note")
    assert note["stats"]["vanished_categories"] == 1, note

    # Sensitive attributes from numbers, booleans and missing values name the same groups.
    y, scores, _, sex = holdout(1200, 4)
    insured = np.array([i % 3 == 0 for i in range(1200)])
    site = [None if i % 9 == 0 else (i % 4) for i in range(1200)]
    a = local.validate(m.model_id, scores, y, sensitive={"sex": sex, "insured": insured, "site": site})
    b = far.validate(m.model_id, scores, y, sensitive={"sex": sex, "insured": insured, "site": site})
    assert a["fairness"] == b["fairness"] and a["metrics"] == b["metrics"]
    groups = str(a["fairness"])
    assert "'true'" in groups and "(missing)" in groups and "'1'" in groups, groups


def test_encode_columns_refuses_what_the_embedded_mode_refuses(store):
    with pytest.raises(TypeError, match='"mix".*mixes numbers and text'):
        _vigil.encode_columns({"mix": [1.0, "a"]})
    with pytest.raises(TypeError, match='"f32".*float32'):
        _vigil.encode_columns({"f32": np.zeros(3, dtype=np.float32)})
    with pytest.raises(vigil.VigilError) as e:
        vigil._backend._parquet({"a": [1.0, 2.0], "b": [1.0]})
    assert e.value.code == "invalid_manifest" and "'b' has 1 values" in e.value.message
    assert _vigil.encode_columns({"a": np.arange(3.0)})[:4] == b"PAR1"


@pytest.mark.parametrize("mode", ["embedded", "remote"])
def test_reads_of_phi_marked_models_are_audited(store, request, mode):
    registry = vigil.ModelRegistry() if mode == "embedded" else vigil.ModelRegistry(request.getfixturevalue("server"), user="data_scientist_123")
    plain = register(registry, name="plain")
    marked = registry.register_model("marked", "1.0.0", vigil.ModelType.CLASSIFICATION, "s3://m/marked", tags={"vigil.phi": "true"},
                                     lineage=vigil.ModelLineage(training_data_hash="sha256:x"))
    reads = lambda: registry.audit_trail(action="phi.read")  # noqa: E731
    assert reads() == []
    registry.get_model(plain.model_id)
    registry.get_model(plain.reference)
    registry.get_lineage(plain.model_id)
    registry.get_production_model("plain")
    assert reads() == [], "unmarked models are not PHI reads"
    # Each read of the marked model adds its events: the version lookup, then what was read.
    for call, added in ((lambda: registry.get_model(marked.reference), 1), (lambda: registry.get_model(marked.model_id), 1),
                        (lambda: registry.get_lineage(marked.model_id), 2), (lambda: registry.model_card(marked.model_id), 2),
                        (lambda: registry.get_production_model("marked"), 1), (registry.list_models, 1)):
        before = len(reads())
        call()
        assert len(reads()) == before + added, (call, reads()[before:])
    events = reads()
    assert {e["actor"] for e in events} == {"data_scientist_123"}
    assert all(e["entity_type"] == "model" and e["entity_id"] == "marked" for e in events)
    routes = [e["details"]["route"] for e in events]
    if mode == "embedded":
        assert routes == ["python: ModelRegistry.get_model", "python: ModelRegistry.get_model", "python: ModelRegistry.get_lineage",
                          "python: ModelRegistry.get_lineage", "python: ModelRegistry.model_card", "python: ModelRegistry.model_card",
                          "python: ModelRegistry.get_production_model", "python: ModelRegistry.list_models"], routes
    else:
        assert all(r.startswith(("GET /api/v1/models", "GET /api/v1/versions/")) for r in routes), routes


def test_embedded_reads_need_a_signed_in_user(store, monkeypatch):
    m = register(vigil.ModelRegistry())
    monkeypatch.delenv("VIGIL_USER")
    with pytest.raises(vigil.AuthenticationError):
        vigil.ModelRegistry().get_model(m.model_id)
    with pytest.raises(vigil.AuthenticationError):
        vigil.ModelRegistry(user="ml_lead_456", passwords=lambda u: "not it").get_model(m.model_id)
    assert vigil.ModelRegistry(user="ml_lead_456").get_model(m.model_id).model_id == m.model_id


def test_the_audit_trail_is_the_same_both_ways(store, server):
    local, far = both(store, server)
    m = register(local)
    r = local.request_promotion(m.model_id, vigil.ModelStage.STAGING, justification="go")
    local.approve_promotion(r.request_id, "ml_lead_456", "ok")
    q = dict(model="sepsis", action="promotion.")
    a, b = local.audit_trail(**q), far.audit_trail(**q)
    assert a == b and len(a) >= 2
    assert [e["action"] for e in a][:1] == ["promotion.request"], a
    page = local.audit_trail(limit=2)
    rest = local.audit_trail(after_seq=page[-1]["seq"])
    assert len(page) == 2 and rest[0]["seq"] == page[-1]["seq"] + 1
    with pytest.raises(vigil.ValidationError):
        local.audit_trail(since="yesterday")
    with pytest.raises(vigil.ValidationError):
        far.audit_trail(since="yesterday")


def test_remote_signs_in_once_and_recovers_an_ended_session(store, server):
    far = vigil.ModelRegistry(server, user="data_scientist_123")
    m = register(far)
    for _ in range(5):
        far.get_model(m.model_id)
    far.list_models()
    local = vigil.ModelRegistry()
    sessions = lambda: [e for e in local.audit_trail(action="token.create", actor="data_scientist_123")]  # noqa: E731
    assert len(sessions()) == 1, "one login for many calls"
    # A session ended elsewhere (or expired): the client signs in again, once.
    far.close()
    far._b._sessions["data_scientist_123"] = "vgt_" + "0" * 40
    assert far.get_model(m.model_id).model_id == m.model_id
    assert len(sessions()) == 2
    # A wrong signature password is not retried (it would count twice towards the lockout).
    r = far.request_promotion(m.model_id, vigil.ModelStage.STAGING, justification="go")
    lee = vigil.ModelRegistry(server, user="ml_lead_456")
    lee.get_model(m.model_id)
    lee._b.passwords = lambda u: "wrong password!"
    denied = lambda: local.audit_trail(action="auth.login", actor="ml_lead_456", outcome="denied")  # noqa: E731
    assert denied() == []
    with pytest.raises(vigil.AuthenticationError):
        lee.approve_promotion(r.request_id, "ml_lead_456", "ok")
    assert len(denied()) == 1, denied()
    # Leaving the block ends the session on the server.
    with vigil.ModelRegistry(server, user="clinician_789") as cleo:
        cleo.get_model(m.model_id)
        token = cleo._b._sessions["clinician_789"]
    assert cleo._b._sessions == {}
    assert [e["action"] for e in local.audit_trail(action="token.revoke", actor="clinician_789")] == ["token.revoke"]
    stale = vigil._backend.Remote(server)
    stale.token, stale.user = token, "clinician_789"
    with pytest.raises(vigil.AuthenticationError):
        stale.models(None)


def test_python_and_the_cli_compute_the_same_numbers(store, tmp_path):
    """The package and the `vigil` binary (the Rust API behind both) on the same data: the
    drift statistics and the validation report agree exactly."""
    import json
    import os
    import subprocess

    from conftest import PASSWORDS, vigil_binary

    registry = vigil.ModelRegistry()
    py = register(registry, name="frompython")
    cli = register(registry, name="fromcli")
    rng = np.random.default_rng(21)
    base = {"age": rng.normal(55, 12, 3000), "unit": np.array(["icu", "ward", "er"] * 1000), "lactate": rng.gamma(2.0, 1.0, 3000)}
    cur = {"age": rng.normal(58, 12, 2000), "unit": np.array(["icu", "ward", "ward", "er"] * 500), "lactate": rng.gamma(2.2, 1.0, 2000)}
    d = vigil.DriftDetector(registry=registry)
    d.set_baseline(py.model_id, base)
    d.add_samples(py.model_id, cur)
    from_python = d.detect_drift(py.model_id)

    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    env["VIGIL_PASSWORD"] = PASSWORDS["data_scientist_123"]
    def vigil_cli(*args):
        out = subprocess.run([str(vigil_binary()), "--data-dir", str(store), "--user", "data_scientist_123", "--json", *args],
                             env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        assert out.returncode in (0, 1), out.stderr
        return json.loads(out.stdout)
    for name, cols in (("base", base), ("cur", cur)):
        (tmp_path / f"{name}.parquet").write_bytes(_vigil.encode_columns(cols))
    vigil_cli("drift", "baseline", cli.reference, "--data", str(tmp_path / "base.parquet"))
    vigil_cli("drift", "add", cli.reference, "--data", str(tmp_path / "cur.parquet"))
    from_cli = vigil_cli("drift", "check", cli.reference)
    assert from_cli["features"] == from_python.features
    assert from_cli["status"] == from_python.status

    y, scores, champion, sex = holdout(1500, 6)
    report = registry.validate(py.model_id, scores, y, sensitive={"sex": sex})
    (tmp_path / "holdout.parquet").write_bytes(_vigil.encode_columns({"y": y.astype(float), "score": scores, "sex": np.array(sex, dtype=object)}))
    cli_report = vigil_cli("validate", cli.reference, "--data", str(tmp_path / "holdout.parquet"), "--label", "y", "--score", "score", "--sensitive", "sex")
    for key in ("metrics", "fairness", "passed", "curves"):
        assert cli_report[key] == report[key], key


def test_tokens_act_for_their_owner_without_a_named_user(store, server, monkeypatch):
    import json
    import urllib.request

    req = urllib.request.Request(server + "/api/v1/auth/login", data=json.dumps({"user": "data_scientist_123", "password": "dana-password-1"}).encode(),
                                 method="POST", headers={"content-type": "application/json"})
    token = json.loads(urllib.request.urlopen(req).read())["token"]
    monkeypatch.delenv("VIGIL_USER")
    registry = vigil.connect(server, token=token)
    m = register(registry)
    assert m.created_by == "data_scientist_123"
    # A user named beside a token must be its owner: never the token with another's password.
    with pytest.raises(vigil.AuthenticationError, match="another user"):
        vigil.connect(server, token=token, user="ml_lead_456").get_model(m.model_id)


def test_redirects_are_refused_so_credentials_stay_put(store):
    """A server answering with a redirect gets neither the password nor the data sent on."""
    import http.server
    import threading

    seen = []

    class Elsewhere(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            seen.append(dict(self.headers))
            self.send_response(200)
            self.end_headers()

        do_GET = do_POST

        def log_message(self, *a):
            pass

    class Redirecting(Elsewhere):
        def do_POST(self):  # noqa: N802
            self.send_response(307)
            self.send_header("location", f"http://127.0.0.1:{far.server_address[1]}{self.path}")
            self.end_headers()

        do_GET = do_POST

    far = http.server.HTTPServer(("127.0.0.1", 0), Elsewhere)
    near = http.server.HTTPServer(("127.0.0.1", 0), Redirecting)
    for s in (far, near):
        threading.Thread(target=s.serve_forever, daemon=True).start()
    try:
        registry = vigil.connect(f"http://127.0.0.1:{near.server_address[1]}", user="data_scientist_123")
        with pytest.raises(vigil.StorageError, match="redirect"):
            registry.list_models()
        assert seen == [], "nothing reached the redirect's target"
    finally:
        far.shutdown()
        near.shutdown()
    with pytest.raises(vigil.ValidationError):
        vigil.connect("HTTP://vigil.example.org", token="vgt_x")


@pytest.mark.parametrize("mode", ["embedded", "remote"])
def test_kinds_and_arguments_are_checked_alike(store, request, mode):
    pd = pytest.importorskip("pandas")
    pa = pytest.importorskip("pyarrow")
    registry = vigil.ModelRegistry() if mode == "embedded" else vigil.ModelRegistry(request.getfixturevalue("server"), user="data_scientist_123")
    m = register(registry)
    d = vigil.DriftDetector(registry=registry)
    d.set_baseline(m.model_id, {"zip3": ["021", "100", "945"] * 40})
    # Numbers where the baseline has categories: refused in both modes (never read as "21").
    with pytest.raises(vigil.ValidationError, match="numeric here but categorical"):
        d.add_samples(m.model_id, {"zip3": np.array([21, 100, 945] * 40)})
    with pytest.raises(TypeError, match="'when'.*not supported"):
        d.add_samples(m.model_id, pd.DataFrame({"when": pd.date_range("2026-01-01", periods=3)}))
    with pytest.raises(vigil.ValidationError, match="prediction"):
        d.add_samples(m.model_id, {"prediction": [0.1, 0.2]})
    with pytest.raises(vigil.ValidationError):
        d.detect_drift(m.model_id, last_rows=-5)
    y, scores, _, sex = holdout(600, 2)
    with pytest.raises(vigil.ValidationError):
        registry.validate(m.model_id, scores)
    with pytest.raises(vigil.ValidationError, match="'score'"):
        registry.validate(m.model_id, scores, y, sensitive={"score": sex})
    a = registry.validate(m.model_id, pa.array(scores), pa.array(y), sensitive={"sex": pa.array(sex)})
    b = registry.validate(m.model_id, scores, y.astype(int), sensitive={"sex": list(sex)})
    assert a["metrics"] == b["metrics"] and a["fairness"] == b["fairness"]
    with pytest.raises(vigil.ValidationError, match="labels must be"):
        registry.validate(m.model_id, scores, ["yes"] * 600)
