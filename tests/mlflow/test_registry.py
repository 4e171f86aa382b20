"""MLflow model registry and logged models: the stock mlflow 3.17 client against a Vigil server.

Written from the wire contract in /work/shared/reference/mlflow-api.md (sections 2-5) and from
Vigil's governance rules, not from Vigil's implementation. The stock-MLflow expectations (model
create/get/duplicate, log_model registration, runs:/ sources, aliases, search, update/tags,
download URIs, dataset inputs) were checked against a stock `mlflow server` 3.17.2; the tests
marked "Vigil-specific" (name rules, the SemVer tag, governed stages and aliases, audit, roles,
frozen logged-model artifacts) can only be checked against Vigil.

Every test uses its own registered model(s) with a unique lowercase name. Two module fixtures
are shared read-only: `logged` (two sklearn models logged in one run and registered as versions
1 and 2 of one model) and `registry_search` (models and versions for the search tests).
"""

from __future__ import annotations

import json
import re
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from helpers import assert_error_response, collect_pages, raises_mlflow
from mlflow import MlflowClient
from mlflow.entities import LoggedModelStatus
from sklearn.linear_model import LogisticRegression

API = "/api/2.0/mlflow"
ARTIFACTS_API = "/api/2.0/mlflow-artifacts/artifacts"
NATIVE = "/api/v1"
ARTIFACT_SCHEME = "mlflow-artifacts:/"
VIGIL_VERSION = "vigil.version"
SEMVER_RE = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:[-+][0-9A-Za-z.+-]+)?$")

# Explicit requirements skip the client's requirement inference, which starts a subprocess and
# costs 6-8 s per log_model. The HTTP calls and the uploaded files are the same. The first
# log_model of the `logged` fixture keeps the exact call from the brief (with inference).
PIP_REQUIREMENTS = ["scikit-learn", "skops"]


# ---------------------------------------------------------------------------------------------
# helpers


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def uniq_model(prefix: str) -> str:
    """A registered-model name Vigil accepts: lowercase letters, digits, '-', '_', '.'."""
    name = uniq(prefix)
    assert name == name.lower() and len(name) <= 128
    return name


def assert_ok(resp) -> dict:
    assert resp.status_code == 200, (
        f"{resp.request.method} {resp.url}: expected HTTP 200, got {resp.status_code}: "
        f"{resp.text[:800]!r}"
    )
    return resp.json()


def act_as(monkeypatch, vigil, user: str) -> None:
    """Switch the mlflow client's identity (the autouse fixture switches back to dana)."""
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", vigil.passwords[user])


def user_tags(tags: dict) -> dict:
    """Tags without Vigil's own `vigil.*` keys (so stock-semantics checks compare like for like)."""
    return {k: v for k, v in tags.items() if not k.startswith("vigil.")}


def semver_key(text: str) -> tuple[int, int, int]:
    m = SEMVER_RE.match(text)
    assert m, f"not a SemVer version: {text!r}"
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


MODEL_FILES = {"MLmodel": b"artifact_path: model\nflavors: {}\n", "weights.bin": bytes(range(64))}
EXTRA_FILE = ("notes.txt", b"trained on synthetic data\n")


def run_with_model_dir(client: MlflowClient, exp_id: str, *, finish: bool = True) -> str:
    """A run whose artifacts hold `model/` (via log_artifacts and log_artifact); returns its id."""
    run_id = client.create_run(exp_id).info.run_id
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "model"
        src.mkdir()
        for name, data in MODEL_FILES.items():
            (src / name).write_bytes(data)
        client.log_artifacts(run_id, str(src), artifact_path="model")
        extra = Path(tmp) / EXTRA_FILE[0]
        extra.write_bytes(EXTRA_FILE[1])
        client.log_artifact(run_id, str(extra), artifact_path="model")
    if finish:
        client.set_terminated(run_id)
    return run_id


def runs_source(run_id: str) -> str:
    return f"runs:/{run_id}/model"


def new_version_from_run(client: MlflowClient, name: str, run_id: str, **kwargs):
    return client.create_model_version(name, runs_source(run_id), run_id=run_id, **kwargs)


def audit_events(vigil, model: str, **params) -> list[dict]:
    resp = vigil.api("GET", f"{NATIVE}/audit", params={"model": model, "limit": 10000, **params})
    events = assert_ok(resp).get("events")
    assert isinstance(events, list), resp.text[:500]
    return events


def mlflow_error(resp) -> tuple[int, str | None]:
    try:
        return resp.status_code, resp.json().get("error_code")
    except ValueError:
        return resp.status_code, None


# ---------------------------------------------------------------------------------------------
# shared fixtures


@pytest.fixture(scope="module")
def training_data():
    rng = np.random.default_rng(7)
    X = rng.normal(size=(60, 4))
    y = (X[:, 0] + 0.5 * X[:, 1] - X[:, 2] > 0).astype(int)
    model = LogisticRegression().fit(X, y)
    return X, model


@dataclass
class Logged:
    name: str  # registered model with versions "1" and "2"
    exp_id: str
    run_id: str
    model_ids: list  # logged model ids of versions 1 and 2
    infos: list  # the ModelInfo returned by log_model
    X: np.ndarray
    model: LogisticRegression


@pytest.fixture(scope="module")
def logged(vigil, training_data) -> Logged:
    """Two log_model calls in one run, both registered into one new model (read-only use)."""
    X, model = training_data
    name = uniq_model("logged")
    client = MlflowClient(tracking_uri=vigil.url)
    exp_id = client.create_experiment(uniq("registry-logged"))
    with mlflow.start_run(experiment_id=exp_id) as run:
        first = mlflow.sklearn.log_model(
            model, name="model", registered_model_name=name, input_example=X[:2])
        second = mlflow.sklearn.log_model(
            model, name="model", registered_model_name=name, input_example=X[:2],
            pip_requirements=PIP_REQUIREMENTS)
    return Logged(name=name, exp_id=exp_id, run_id=run.info.run_id,
                  model_ids=[first.model_id, second.model_id], infos=[first, second],
                  X=X, model=model)


def log_models(name: str | None, X, model, count: int, exp_id: str) -> tuple[str, list]:
    """`count` quick log_model calls in one run (registered into `name` if given)."""
    with mlflow.start_run(experiment_id=exp_id) as run:
        infos = [
            mlflow.sklearn.log_model(model, name="model", registered_model_name=name,
                                     input_example=X[:2], pip_requirements=PIP_REQUIREMENTS)
            for _ in range(count)
        ]
    return run.info.run_id, infos


def assert_predicts_like(loaded, X, model) -> None:
    got = np.asarray(loaded.predict(X))
    want = model.predict(X)
    assert got.shape == want.shape and np.array_equal(got, want), (got[:10], want[:10])


# ---------------------------------------------------------------------------------------------
# 1. registered models: create, get, duplicate, unknown


def test_create_and_get_registered_model(client, vigil):
    name = uniq_model("create")
    created = client.create_registered_model(
        name, tags={"team": "icu", "purpose": "sepsis"}, description="Sepsis early warning")
    assert created.name == name
    assert created.description == "Sepsis early warning"
    assert user_tags(created.tags) == {"team": "icu", "purpose": "sepsis"}
    assert created.creation_timestamp and created.creation_timestamp > 0

    got = client.get_registered_model(name)
    assert got.name == name
    assert got.description == "Sepsis early warning"
    assert user_tags(got.tags) == {"team": "icu", "purpose": "sepsis"}
    assert got.creation_timestamp == created.creation_timestamp
    assert got.last_updated_timestamp >= got.creation_timestamp
    assert got.latest_versions == [], "a new model has no versions"
    assert got.aliases == {}, "a new model has no aliases"

    with raises_mlflow("RESOURCE_ALREADY_EXISTS", 400):
        client.create_registered_model(name)
    assert_error_response(
        vigil.api("POST", f"{API}/registered-models/create", json={"name": name}),
        400, "RESOURCE_ALREADY_EXISTS",
    )
    # The refused duplicate changed nothing.
    assert client.get_registered_model(name).description == "Sepsis early warning"

    missing = uniq_model("no-such-model")
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST", 404):
        client.get_registered_model(missing)
    assert_error_response(
        vigil.api("GET", f"{API}/registered-models/get", params={"name": missing}),
        404, "RESOURCE_DOES_NOT_EXIST",
    )
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST", 404):
        client.get_model_version(name, "1")  # the model exists, the version does not


# ---------------------------------------------------------------------------------------------
# 2. model names (Vigil-specific: stock MLflow accepts any case)


def _too_long() -> str:
    name = uniq_model("long")
    return name + "x" * (129 - len(name))


@pytest.mark.parametrize("make_name", [
    lambda: "Sepsis-" + uuid.uuid4().hex[:12],
    lambda: "sepsis-" + uuid.uuid4().hex[:12].upper(),
    lambda: "sepsis model " + uuid.uuid4().hex[:12],
    lambda: "sepsis/model-" + uuid.uuid4().hex[:12],
    _too_long,
], ids=["uppercase-first", "uppercase-suffix", "space", "slash", "129-chars"])
def test_invalid_model_name_is_400(client, vigil, make_name):
    bad = make_name()
    with raises_mlflow("INVALID_PARAMETER_VALUE", 400):
        client.create_registered_model(bad)
    assert_error_response(
        vigil.api("POST", f"{API}/registered-models/create", json={"name": bad}),
        400, "INVALID_PARAMETER_VALUE",
    )
    if bad.lower() != bad and "/" not in bad and " " not in bad:
        # Refused, not silently lowercased.
        with raises_mlflow("RESOURCE_DOES_NOT_EXIST", 404):
            client.get_registered_model(bad.lower())


def test_valid_model_names_edge_cases(client):
    base = f"a.b_c-{uuid.uuid4().hex[:12]}-"
    longest = base + "9" * (128 - len(base))
    assert len(longest) == 128
    for name in (longest, f"0{uuid.uuid4().hex[:12]}", f"x.{uuid.uuid4().hex[:12]}_v2-final"):
        assert client.create_registered_model(name).name == name
        assert client.get_registered_model(name).name == name


# ---------------------------------------------------------------------------------------------
# 3. log_model with registered_model_name; logged models


def test_log_model_registers_ready_versions(client, logged):
    name, run_id = logged.name, logged.run_id
    assert [str(i.registered_model_version) for i in logged.infos] == ["1", "2"]
    for i, (info, model_id) in enumerate(zip(logged.infos, logged.model_ids), start=1):
        assert re.fullmatch(r"m-[0-9a-f]{32}", model_id), model_id
        assert info.model_uri == f"models:/{model_id}"
        mv = client.get_model_version(name, str(i))
        assert mv.name == name
        assert mv.version == str(i)
        assert mv.status == "READY"
        assert mv.current_stage == "None"
        assert mv.run_id == run_id, "the version must carry the logging run's id"
        assert mv.source == f"models:/{model_id}", mv.source
        assert mv.creation_timestamp and mv.creation_timestamp > 0

    rm = client.get_registered_model(name)
    assert [(v.version, v.current_stage) for v in rm.latest_versions] == [("2", "None")], \
        "latest_versions holds the latest version per stage"


def test_load_registered_versions_predicts_like_original(logged):
    for uri in (f"models:/{logged.name}/1", f"models:/{logged.name}/2",
                f"models:/{logged.model_ids[0]}"):
        assert_predicts_like(mlflow.pyfunc.load_model(uri), logged.X, logged.model)


def test_logged_models_get_search_and_run_outputs(client, vigil, logged):
    for model_id in logged.model_ids:
        lm = client.get_logged_model(model_id)
        assert lm.model_id == model_id
        assert lm.status == LoggedModelStatus.READY
        assert lm.name == "model"
        assert lm.experiment_id == logged.exp_id
        assert lm.source_run_id == logged.run_id
        # Contract §4: logged models live at mlflow-artifacts:/<exp>/models/<model_id>/artifacts.
        assert lm.artifact_location.startswith(ARTIFACT_SCHEME), lm.artifact_location
        assert lm.artifact_location.rstrip("/").endswith(f"/models/{model_id}/artifacts"), \
            lm.artifact_location
        assert logged.name in lm.tags.get("mlflow.modelVersions", ""), \
            f"log_model tags the logged model with its versions: {lm.tags}"

        body = assert_ok(vigil.api("GET", f"{API}/logged-models/{model_id}"))
        assert body["model"]["info"]["status"] == "LOGGED_MODEL_READY", body

    found = mlflow.search_logged_models(experiment_ids=[logged.exp_id], output_format="list")
    assert sorted(m.model_id for m in found) == sorted(logged.model_ids)
    assert all(m.status == LoggedModelStatus.READY for m in found)
    by_name = client.search_logged_models([logged.exp_id], filter_string="name = 'model'")
    assert sorted(m.model_id for m in by_name) == sorted(logged.model_ids)
    assert list(client.search_logged_models([logged.exp_id], filter_string="name = 'nope'")) == []

    outputs = client.get_run(logged.run_id).outputs
    assert sorted(o.model_id for o in outputs.model_outputs) == sorted(logged.model_ids)

    with raises_mlflow("RESOURCE_DOES_NOT_EXIST", 404):
        client.get_logged_model("m-" + uuid.uuid4().hex)


# ---------------------------------------------------------------------------------------------
# 4. create_model_version from runs:/ sources; local paths refused


def test_create_model_version_from_runs_source(client, vigil):
    exp_id = client.create_experiment(uniq("runs-source"))
    run_id = run_with_model_dir(client, exp_id)
    name = uniq_model("runs-source")
    client.create_registered_model(name)

    mv = new_version_from_run(client, name, run_id, description="first cut")
    assert mv.version == "1"
    assert mv.status == "READY"
    assert mv.current_stage == "None"
    assert mv.run_id == run_id
    assert mv.source == runs_source(run_id)
    assert mv.description == "first cut"
    assert client.get_model_version(name, "1").source == runs_source(run_id)

    assert new_version_from_run(client, name, run_id).version == "2"


@pytest.mark.parametrize("source, with_run", [
    ("/tmp/x", True),
    ("/tmp/x", False),
    ("file:///tmp/x", True),
], ids=["abs-path-with-run", "abs-path-no-run", "file-uri"])
def test_create_model_version_local_source_is_400(client, vigil, source, with_run):
    exp_id = client.create_experiment(uniq("local-source"))
    run_id = run_with_model_dir(client, exp_id)
    name = uniq_model("local-source")
    client.create_registered_model(name)
    kwargs = {"run_id": run_id} if with_run else {}

    with raises_mlflow("INVALID_PARAMETER_VALUE", 400):
        client.create_model_version(name, source, **kwargs)
    assert_error_response(
        vigil.api("POST", f"{API}/model-versions/create",
                  json={"name": name, "source": source, **kwargs}),
        400, "INVALID_PARAMETER_VALUE",
    )
    assert list(client.search_model_versions(f"name = '{name}'")) == [], "nothing was registered"
    # A valid source still gets version 1 (the refusals consumed no number).
    assert new_version_from_run(client, name, run_id).version == "1"


# ---------------------------------------------------------------------------------------------
# 5. integer <-> SemVer mapping (Vigil-specific)


def test_versions_carry_semver_tag(client, vigil, logged):
    # Versions registered by log_model.
    for number, semver in (("1", "1.0.0"), ("2", "2.0.0")):
        mv = client.get_model_version(logged.name, number)
        assert mv.tags.get(VIGIL_VERSION) == semver, mv.tags

    # Versions created from runs:/ sources.
    exp_id = client.create_experiment(uniq("semver"))
    run_id = run_with_model_dir(client, exp_id)
    name = uniq_model("semver")
    client.create_registered_model(name)
    first = new_version_from_run(client, name, run_id)
    second = new_version_from_run(client, name, run_id)
    assert (first.version, first.tags.get(VIGIL_VERSION)) == ("1", "1.0.0"), first.tags
    assert (second.version, second.tags.get(VIGIL_VERSION)) == ("2", "2.0.0"), second.tags
    assert client.get_model_version(name, "2").tags.get(VIGIL_VERSION) == "2.0.0"
    searched = {v.version: v.tags.get(VIGIL_VERSION)
                for v in client.search_model_versions(f"name = '{name}'")}
    assert searched == {"1": "1.0.0", "2": "2.0.0"}

    # The same versions, seen through the native API.
    for semver in ("1.0.0", "2.0.0"):
        body = assert_ok(vigil.api("GET", f"{NATIVE}/models/{name}/versions/{semver}"))
        assert (body["name"], body["version"]) == (name, semver), body
        assert body["stage"] == "development", body


def test_vigil_version_tag_chooses_semver(client, vigil):
    exp_id = client.create_experiment(uniq("semver-choice"))
    run_id = run_with_model_dir(client, exp_id)
    name = uniq_model("semver-choice")
    client.create_registered_model(name)

    mv = new_version_from_run(client, name, run_id, tags={VIGIL_VERSION: "3.1.0", "note": "x"})
    assert mv.version == "1", "the MLflow version number is still the per-model counter"
    assert mv.tags.get(VIGIL_VERSION) == "3.1.0"
    assert mv.tags.get("note") == "x"
    assert client.get_model_version(name, "1").tags.get(VIGIL_VERSION) == "3.1.0"
    body = assert_ok(vigil.api("GET", f"{NATIVE}/models/{name}/versions/3.1.0"))
    assert (body["name"], body["version"]) == (name, "3.1.0"), body

    # Not SemVer: refused.
    with raises_mlflow("INVALID_PARAMETER_VALUE", 400):
        new_version_from_run(client, name, run_id, tags={VIGIL_VERSION: "banana"})
    # A SemVer the model already has: refused (4xx; RESOURCE_ALREADY_EXISTS would be natural).
    resp = vigil.api("POST", f"{API}/model-versions/create", json={
        "name": name, "source": runs_source(run_id), "run_id": run_id,
        "tags": [{"key": VIGIL_VERSION, "value": "3.1.0"}],
    })
    assert 400 <= resp.status_code < 500, (resp.status_code, resp.text[:500])
    assert [v.version for v in client.search_model_versions(f"name = '{name}'")] == ["1"], \
        "refused creations must not leave versions behind"


def test_client_cannot_set_vigil_tags(client, vigil):
    exp_id = client.create_experiment(uniq("vigil-tags"))
    run_id = run_with_model_dir(client, exp_id)
    name = uniq_model("vigil-tags")
    client.create_registered_model(name)
    new_version_from_run(client, name, run_id)

    with raises_mlflow("INVALID_PARAMETER_VALUE", 400):
        client.set_model_version_tag(name, "1", VIGIL_VERSION, "9.0.0")
    with raises_mlflow("INVALID_PARAMETER_VALUE", 400):
        client.set_model_version_tag(name, "1", "vigil.owner", "mallory")
    with raises_mlflow("INVALID_PARAMETER_VALUE", 400):
        client.delete_model_version_tag(name, "1", VIGIL_VERSION)
    assert_error_response(
        vigil.api("POST", f"{API}/model-versions/set-tag",
                  json={"name": name, "version": "1", "key": VIGIL_VERSION, "value": "9.0.0"}),
        400, "INVALID_PARAMETER_VALUE",
    )
    # At creation only vigil.version itself may be given; any other vigil.* key is refused.
    with raises_mlflow("INVALID_PARAMETER_VALUE", 400):
        new_version_from_run(client, name, run_id, tags={"vigil.owner": "mallory"})

    mv = client.get_model_version(name, "1")
    assert mv.tags.get(VIGIL_VERSION) == "1.0.0"
    assert "vigil.owner" not in mv.tags
    assert [v.version for v in client.search_model_versions(f"name = '{name}'")] == ["1"]


# ---------------------------------------------------------------------------------------------
# 6. aliases


def test_aliases(client, vigil, logged):
    name = uniq_model("aliases")
    # mlflow.register_model on logged-model URIs (the first call creates the registered model).
    v1 = mlflow.register_model(logged.infos[0].model_uri, name)
    v2 = mlflow.register_model(logged.infos[1].model_uri, name)
    assert (v1.version, v2.version) == ("1", "2")

    client.set_registered_model_alias(name, "challenger", "1")
    mv = client.get_model_version_by_alias(name, "challenger")
    assert mv.version == "1"
    assert "challenger" in mv.aliases
    assert "challenger" in client.get_model_version(name, "1").aliases
    assert_predicts_like(mlflow.pyfunc.load_model(f"models:/{name}@challenger"),
                         logged.X, logged.model)

    # Re-assigning moves the alias.
    client.set_registered_model_alias(name, "challenger", "2")
    assert client.get_model_version_by_alias(name, "challenger").version == "2"
    assert "challenger" not in client.get_model_version(name, "1").aliases
    assert "challenger" in client.get_model_version(name, "2").aliases
    client.set_registered_model_alias(name, "shadow", "1")
    assert client.get_registered_model(name).aliases == {"challenger": "2", "shadow": "1"}

    # Unknown alias: 400 INVALID_PARAMETER_VALUE, not 404 (contract §3).
    with raises_mlflow("INVALID_PARAMETER_VALUE", 400):
        client.get_model_version_by_alias(name, "no-such-alias")
    assert_error_response(
        vigil.api("GET", f"{API}/registered-models/alias",
                  params={"name": name, "alias": "no-such-alias"}),
        400, "INVALID_PARAMETER_VALUE",
    )
    # Unknown model: 404.
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST", 404):
        client.get_model_version_by_alias(uniq_model("no-such-model"), "challenger")

    # Reserved aliases.
    for reserved in ("latest", "v1", "v12"):
        with raises_mlflow("INVALID_PARAMETER_VALUE", 400):
            client.set_registered_model_alias(name, reserved, "1")
        assert_error_response(
            vigil.api("POST", f"{API}/registered-models/alias",
                      json={"name": name, "alias": reserved, "version": "1"}),
            400, "INVALID_PARAMETER_VALUE",
        )
    # An alias to a version that does not exist: 404.
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST", 404):
        client.set_registered_model_alias(name, "future", "99")

    client.delete_registered_model_alias(name, "challenger")
    with raises_mlflow("INVALID_PARAMETER_VALUE", 400):
        client.get_model_version_by_alias(name, "challenger")
    assert client.get_registered_model(name).aliases == {"shadow": "1"}
    assert client.get_model_version(name, "2").aliases == []


# ---------------------------------------------------------------------------------------------
# 7. governance: stages and protected aliases only through approved promotions (Vigil-specific)


def _governance_refusals(client, vigil, name: str, version: str) -> None:
    """Every direct route to Production/Staging and to protected aliases is a 403."""
    for stage in ("Production", "Staging"):
        with raises_mlflow("PERMISSION_DENIED", 403) as excinfo:
            client.transition_model_version_stage(name, version, stage)
        assert "/api/v1/promotions" in excinfo.value.message, excinfo.value.message
        resp = vigil.api("POST", f"{API}/model-versions/transition-stage", json={
            "name": name, "version": version, "stage": stage, "archive_existing_versions": False,
        })
        assert_error_response(resp, 403, "PERMISSION_DENIED")
        assert "/api/v1/promotions" in resp.json()["message"], resp.text

    for alias in ("production", "champion"):
        with raises_mlflow("PERMISSION_DENIED", 403):
            client.set_registered_model_alias(name, alias, version)
        assert_error_response(
            vigil.api("POST", f"{API}/registered-models/alias",
                      json={"name": name, "alias": alias, "version": version}),
            403, "PERMISSION_DENIED",
        )
    with raises_mlflow("PERMISSION_DENIED", 403):
        client.delete_registered_model_alias(name, "production")
    assert_error_response(
        vigil.api("DELETE", f"{API}/registered-models/alias",
                  json={"name": name, "alias": "production"}),
        403, "PERMISSION_DENIED",
    )


def _validate(vigil, name: str, semver: str, model) -> dict:
    """Production needs a passing validation of the version's content: the logged model's own
    probabilities on a fresh labelled holdout, uploaded as CSV. The MLflow-logged version has no
    card and no dataset input, so an administrator waives those two gates for this model."""
    assert_ok(vigil.api("PUT", f"{NATIVE}/validation-policies/model/{name}", user="admin", json={
        "policy": {"require_card_complete": False, "require_data_hash": False},
        "reason": "MLflow-logged test model: no card, no dataset input",
    }))
    rng = np.random.default_rng(11)
    X = rng.normal(size=(400, 4))
    y = (X[:, 0] + 0.5 * X[:, 1] - X[:, 2] + rng.normal(scale=0.3, size=400) > 0).astype(int)
    holdout = pd.DataFrame({"y": y, "score": model.predict_proba(X)[:, 1],
                            "sex": np.where(np.arange(400) % 2 == 0, "F", "M")})
    resp = vigil.api("POST", f"{NATIVE}/models/{name}/versions/{semver}/validate",
                     params={"label": "y", "score": "score", "sensitive": "sex"},
                     data=holdout.to_csv(index=False).encode(), headers={"content-type": "text/csv"})
    report = assert_ok(resp)
    gates = {g["gate"]: g for g in report["gates"]}
    assert report["passed"], gates
    # The files behind the version were re-read from Vigil's artifact store and re-hashed.
    assert "re-verified" in gates["artifact_digest"]["detail"], gates["artifact_digest"]
    return report


def _approve_into_production(vigil, name: str, semver: str, model) -> dict:
    """dana requests, lee (ml_lead) and cleo (clinical_reviewer) sign: the default policy."""
    early = vigil.api("POST", f"{NATIVE}/promotions", user="dana", json={
        "model": name, "version": semver, "to_stage": "production", "justification": "too early"})
    assert early.status_code == 403 and early.json()["error"]["code"] == "validation_required", early.text
    _validate(vigil, name, semver, model)
    req = assert_ok(vigil.api("POST", f"{NATIVE}/promotions", user="dana", json={
        "model": name, "version": semver, "to_stage": "production",
        "justification": "Validated on the 2026 retrospective cohort",
    }))
    request_id = req["request_id"]
    assert req["status"] == "pending", req
    first = assert_ok(vigil.api("POST", f"{NATIVE}/promotions/{request_id}/approve", user="lee",
                                json={"password": vigil.passwords["lee"], "meaning": "approval",
                                      "comment": "metrics reviewed"}))
    assert first["tally"]["state"] == "pending", first
    last = assert_ok(vigil.api("POST", f"{NATIVE}/promotions/{request_id}/approve", user="cleo",
                               json={"password": vigil.passwords["cleo"], "meaning": "approval",
                                     "comment": "clinically acceptable"}))
    assert last["tally"]["state"] == "approved", last
    assert last["status"] == "approved", last
    return last


def test_governed_promotion(client, vigil, training_data):
    X, model = training_data
    name = uniq_model("governed")
    exp_id = client.create_experiment(uniq("governed"))
    log_models(name, X, model, 2, exp_id)
    assert [v.version for v in client.search_model_versions(f"name = '{name}'",
                                                            order_by=["version_number ASC"])] \
        == ["1", "2"]

    _governance_refusals(client, vigil, name, "1")
    mv1 = client.get_model_version(name, "1")
    assert mv1.current_stage == "None", "a refused transition must change nothing"
    assert client.get_registered_model(name).aliases == {}

    semver = mv1.tags.get(VIGIL_VERSION)
    assert semver == "1.0.0", mv1.tags
    _approve_into_production(vigil, name, semver, model)

    assert client.get_model_version(name, "1").current_stage == "Production"
    assert client.get_model_version(name, "2").current_stage == "None"
    native = assert_ok(vigil.api("GET", f"{NATIVE}/models/{name}/versions/{semver}"))
    assert native["stage"] == "production", native

    # Already there: the transition is an idempotent success.
    again = client.transition_model_version_stage(name, "1", "Production")
    assert (again.version, again.current_stage) == ("1", "Production")

    client.set_registered_model_alias(name, "production", "1")
    client.set_registered_model_alias(name, "champion", "1")
    assert client.get_model_version_by_alias(name, "champion").version == "1"
    assert client.get_model_version_by_alias(name, "production").version == "1"
    assert client.get_registered_model(name).aliases == {"production": "1", "champion": "1"}
    assert_predicts_like(mlflow.pyfunc.load_model(f"models:/{name}@production"), X, model)

    latest = client.get_latest_versions(name, stages=["Production"])
    assert [(v.version, v.current_stage) for v in latest] == [("1", "Production")]
    rm = client.get_registered_model(name)
    assert ("1", "Production") in [(v.version, v.current_stage) for v in rm.latest_versions], \
        rm.latest_versions

    # Version 2 was never approved: protected aliases cannot point at it, nor can it move.
    for alias in ("production", "champion"):
        with raises_mlflow("PERMISSION_DENIED", 403):
            client.set_registered_model_alias(name, alias, "2")
    assert_error_response(
        vigil.api("POST", f"{API}/registered-models/alias",
                  json={"name": name, "alias": "production", "version": "2"}),
        403, "PERMISSION_DENIED",
    )
    with raises_mlflow("PERMISSION_DENIED", 403):
        client.transition_model_version_stage(name, "2", "Production")
    assert client.get_model_version_by_alias(name, "production").version == "1"
    assert client.get_model_version(name, "2").current_stage == "None"

    # The whole story is in the audit trail.
    events = audit_events(vigil, name)
    actions = [e["action"] for e in events if e["outcome"] == "ok"]
    for action in ("promotion.request", "model.alias.set"):
        assert action in actions, actions
    assert actions.count("promotion.approve") == 2, actions
    denied = [e for e in events if e["outcome"] == "denied"]
    # Before approval: 2 stages x (client + raw) + 2 aliases x (client + raw) + 2 deletes = 10;
    # after: 2 aliases (client) + 1 alias (raw) + 1 transition = 4.
    assert len(denied) >= 14, [e["action"] for e in denied]
    assert all(e["actor"] == "dana" for e in denied), denied


# ---------------------------------------------------------------------------------------------
# 8. audit (Vigil-specific)


def test_registry_mutations_are_audited(client, vigil):
    exp_id = client.create_experiment(uniq("audited"))
    run_id = run_with_model_dir(client, exp_id)
    name = uniq_model("audited")

    def counts():
        events = audit_events(vigil, name)
        return (sum(e["outcome"] == "ok" for e in events),
                sum(e["outcome"] == "denied" for e in events), events)

    mutations = [
        ("create_registered_model",
         lambda: client.create_registered_model(name, tags={"team": "icu"})),
        ("create_model_version", lambda: new_version_from_run(client, name, run_id)),
        ("set alias", lambda: client.set_registered_model_alias(name, "challenger", "1")),
        ("set_model_version_tag", lambda: client.set_model_version_tag(name, "1", "k", "v")),
        ("delete_model_version_tag", lambda: client.delete_model_version_tag(name, "1", "k")),
        ("update_model_version",
         lambda: client.update_model_version(name, "1", description="reviewed")),
        ("delete alias", lambda: client.delete_registered_model_alias(name, "challenger")),
    ]
    ok_before, denied_before, _ = counts()
    assert (ok_before, denied_before) == (0, 0)
    for label, mutate in mutations:
        mutate()
        ok_after, denied_after, events = counts()
        assert ok_after > ok_before, f"{label} left no 'ok' audit event: {events[-3:]}"
        assert denied_after == denied_before, f"{label} was audited as denied: {events[-3:]}"
        ok_before = ok_after

    refusals = [
        ("transition to Production",
         lambda: client.transition_model_version_stage(name, "1", "Production")),
        ("alias production", lambda: client.set_registered_model_alias(name, "production", "1")),
        ("alias champion", lambda: client.set_registered_model_alias(name, "champion", "1")),
    ]
    for label, attempt in refusals:
        with raises_mlflow("PERMISSION_DENIED", 403):
            attempt()
        ok_after, denied_after, events = counts()
        assert denied_after > denied_before, f"refused {label} left no 'denied' event: {events[-3:]}"
        assert ok_after == ok_before, f"refused {label} was audited as ok: {events[-3:]}"
        denied_before = denied_after

    events = audit_events(vigil, name)
    for e in events:
        for key in ("seq", "at", "actor", "action", "outcome", "entity_type", "model", "hash"):
            assert key in e, f"audit event without {key!r}: {e}"
        assert e["model"] == name, e
        assert e["actor"] == "dana", e
    actions = [e["action"] for e in events if e["outcome"] == "ok"]
    for action in ("model.create", "model_version.register", "model.alias.set"):
        assert action in actions, f"{action} missing from {actions}"
    register = [e for e in events if e["action"] == "model_version.register"]
    assert [e["version"] for e in register] == ["1.0.0"], register

    denied = audit_events(vigil, name, outcome="denied")
    assert len(denied) >= len(refusals), [e["action"] for e in denied]
    assert all(e["outcome"] == "denied" for e in denied)
    denied_actions = [e["action"] for e in denied]
    assert any("alias" in a for a in denied_actions), denied_actions  # the alias refusals
    assert any("alias" not in a for a in denied_actions), denied_actions  # the transition

    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), "events come oldest first"


# ---------------------------------------------------------------------------------------------
# 9. search_registered_models and search_model_versions


@dataclass
class SearchSet:
    prefix: str
    names: dict  # short -> full name
    runs: dict  # "r1"/"r2" -> run id


@pytest.fixture(scope="module")
def registry_search(vigil) -> SearchSet:
    """alpha (tags team=icu; versions 1,2 from r1 and 3 from r2), beta (team=er; 1 from r2),
    gamma (team=icu, x=1), delta (no tags). Read-only."""
    client = MlflowClient(tracking_uri=vigil.url)
    prefix = uniq_model("srch")
    exp_id = client.create_experiment(uniq("registry-search"))
    runs = {"r1": run_with_model_dir(client, exp_id), "r2": run_with_model_dir(client, exp_id)}
    names = {}
    for short, tags in (("alpha", {"team": "icu"}), ("beta", {"team": "er"}),
                        ("gamma", {"team": "icu", "x": "1"}), ("delta", {})):
        names[short] = f"{prefix}-{short}"
        client.create_registered_model(names[short], tags=tags)
    for k, run in enumerate(("r1", "r1", "r2")):
        new_version_from_run(client, names["alpha"], runs[run], tags={"k": str(k)})
    new_version_from_run(client, names["beta"], runs["r2"])
    return SearchSet(prefix=prefix, names=names, runs=runs)


def _short(models, s: SearchSet) -> list[str]:
    by_full = {v: k for k, v in s.names.items()}
    return [by_full.get(m.name, m.name) for m in models]


def _short_versions(versions, s: SearchSet) -> list[tuple[str, str]]:
    by_full = {v: k for k, v in s.names.items()}
    return [(by_full.get(v.name, v.name), v.version) for v in versions]


@pytest.mark.parametrize("template, expected", [
    ("name LIKE '{p}%'", {"alpha", "beta", "gamma", "delta"}),
    ("name LIKE '{p}-_e%'", {"beta", "delta"}),
    ("name ILIKE '{P}%'", {"alpha", "beta", "gamma", "delta"}),
    ("name = '{p}-beta'", {"beta"}),
    ("name != '{p}-beta' AND name LIKE '{p}%'", {"alpha", "gamma", "delta"}),
    ("name IN ('{p}-beta', '{p}-delta')", {"beta", "delta"}),
    ("name LIKE '{p}%' AND tags.team = 'icu'", {"alpha", "gamma"}),
    ("name LIKE '{p}%' AND tag.team = 'icu'", {"alpha", "gamma"}),
    ("name LIKE '{p}%' AND tags.team != 'icu'", {"beta"}),
    ("name LIKE '{p}%' AND tags.team LIKE 'i%'", {"alpha", "gamma"}),
    ("name LIKE '{p}%' AND tags.team = 'icu' AND tags.x = '1'", {"gamma"}),
    ("name LIKE '{p}%' and tags.team = 'ICU'", set()),
])
def test_search_registered_models_filter(client, registry_search, template, expected):
    s = registry_search
    filter_string = template.format(p=s.prefix, P=s.prefix.upper())
    found = _short(client.search_registered_models(filter_string=filter_string), s)
    assert len(found) == len(set(found)), found
    assert set(found) == expected, filter_string


def test_search_registered_models_order_and_paging(client, registry_search):
    s = registry_search
    flt = f"name LIKE '{s.prefix}%'"
    assert _short(client.search_registered_models(flt, order_by=["name DESC"]), s) \
        == ["gamma", "delta", "beta", "alpha"]
    assert _short(client.search_registered_models(flt, order_by=["name ASC"]), s) \
        == ["alpha", "beta", "delta", "gamma"]

    collected = collect_pages(
        lambda token: client.search_registered_models(flt, order_by=["name DESC"], max_results=2, page_token=token),
        lambda page: _short(page, s), 5)
    assert collected == ["gamma", "delta", "beta", "alpha"]

    # The fluent API pages through everything.
    assert sorted(_short(mlflow.search_registered_models(filter_string=flt), s)) \
        == ["alpha", "beta", "delta", "gamma"]


def test_search_model_versions(client, registry_search):
    s = registry_search
    alpha, beta = s.names["alpha"], s.names["beta"]
    r1, r2 = s.runs["r1"], s.runs["r2"]

    def found(flt, **kw):
        return _short_versions(client.search_model_versions(flt, **kw), s)

    assert sorted(found(f"name='{alpha}'")) == [("alpha", "1"), ("alpha", "2"), ("alpha", "3")]
    assert found(f"name='{alpha}'", order_by=["version_number ASC"]) \
        == [("alpha", "1"), ("alpha", "2"), ("alpha", "3")]
    assert found(f"name='{alpha}'", order_by=["version_number DESC"]) \
        == [("alpha", "3"), ("alpha", "2"), ("alpha", "1")]
    assert sorted(found(f"run_id = '{r2}'")) == [("alpha", "3"), ("beta", "1")]
    assert sorted(found(f"run_id = '{r1}'")) == [("alpha", "1"), ("alpha", "2")]
    assert found(f"run_id = '{r2}' AND name = '{alpha}'") == [("alpha", "3")]
    assert sorted(found(f"name = '{alpha}' AND version_number > 1")) \
        == [("alpha", "2"), ("alpha", "3")]
    assert found(f"name = '{alpha}' AND tags.k = '1'") == [("alpha", "2")]
    assert found(f"name IN ('{alpha}', '{beta}')", order_by=["name ASC", "version_number DESC"]) \
        == [("alpha", "3"), ("alpha", "2"), ("alpha", "1"), ("beta", "1")]
    assert sorted(found(f"name LIKE '{s.prefix}%'")) \
        == [("alpha", "1"), ("alpha", "2"), ("alpha", "3"), ("beta", "1")]
    assert found(f"name = '{s.names['delta']}'") == []

    versions = client.search_model_versions(f"name = '{alpha}'", order_by=["version_number ASC"])
    assert all(v.run_id == (r1 if v.version in ("1", "2") else r2) for v in versions)
    assert all(v.source == runs_source(v.run_id) and v.status == "READY" for v in versions)

    page = client.search_model_versions(f"name = '{alpha}'", order_by=["version_number ASC"],
                                        max_results=2)
    assert _short_versions(page, s) == [("alpha", "1"), ("alpha", "2")] and page.token
    rest = client.search_model_versions(f"name = '{alpha}'", order_by=["version_number ASC"],
                                        max_results=2, page_token=page.token)
    assert _short_versions(rest, s) == [("alpha", "3")] and not rest.token


@pytest.mark.parametrize("kind, filter_string", [
    ("registered-models", "name = 'a' OR name = 'b'"),
    ("registered-models", "foo = 'a'"),
    ("registered-models", "(name = 'a')"),
    ("registered-models", "name = a"),
    ("model-versions", "name = 'a' OR name = 'b'"),
    ("model-versions", "foo = 'a'"),
    ("model-versions", "(name = 'a')"),
], ids=["rm-or", "rm-unknown-attr", "rm-parens", "rm-unquoted", "mv-or", "mv-unknown-attr",
        "mv-parens"])
def test_registry_search_invalid_filter_is_400(client, vigil, kind, filter_string):
    search = (client.search_registered_models if kind == "registered-models"
              else client.search_model_versions)
    with raises_mlflow("INVALID_PARAMETER_VALUE", 400):
        search(filter_string=filter_string)
    resp = vigil.api("GET", f"{API}/{kind}/search", params={"filter": filter_string})
    assert_error_response(resp, 400, "INVALID_PARAMETER_VALUE")


# ---------------------------------------------------------------------------------------------
# 10. update_model_version, version tags, download URIs


def test_update_tags_and_download_uri(client, vigil, logged, tmp_path):
    exp_id = client.create_experiment(uniq("mv-update"))
    run_id = run_with_model_dir(client, exp_id)
    name = uniq_model("mv-update")
    client.create_registered_model(name, description="model description")
    new_version_from_run(client, name, run_id)

    updated = client.update_model_version(name, "1", description="version description")
    assert (updated.version, updated.description) == ("1", "version description")
    assert client.get_model_version(name, "1").description == "version description"
    assert client.get_registered_model(name).description == "model description"

    client.set_model_version_tag(name, "1", "validated", "yes")
    client.set_model_version_tag(name, "1", "cohort", "2026")
    assert user_tags(client.get_model_version(name, "1").tags) == {"validated": "yes", "cohort": "2026"}
    client.set_model_version_tag(name, "1", "cohort", "2027")  # overwrite
    client.delete_model_version_tag(name, "1", "validated")
    assert user_tags(client.get_model_version(name, "1").tags) == {"cohort": "2027"}

    # runs:/ source: stock MLflow answers the source itself (contract §3); the run's artifact
    # location + path names the same files. Either is accepted, and it must download them.
    run = client.get_run(run_id)
    uri = client.get_model_version_download_uri(name, "1")
    assert uri in (runs_source(run_id), run.info.artifact_uri.rstrip("/") + "/model"), uri
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(tmp_path / "a")))
    files = {str(p.relative_to(local)): p.read_bytes() for p in local.rglob("*") if p.is_file()}
    assert files == {**MODEL_FILES, EXTRA_FILE[0]: EXTRA_FILE[1]}

    # Logged-model version: the logged model's artifact location.
    lm = client.get_logged_model(logged.model_ids[0])
    assert client.get_model_version_download_uri(logged.name, "1") == lm.artifact_location
    other = uniq_model("mv-update-lm")
    mlflow.register_model(logged.infos[1].model_uri, other)
    assert client.get_model_version_download_uri(other, "1") \
        == client.get_logged_model(logged.model_ids[1]).artifact_location


# ---------------------------------------------------------------------------------------------
# 11. permissions: the clinical reviewer reads but does not write (Vigil-specific)


def test_clinical_reviewer_reads_registry_but_cannot_write(client, vigil, monkeypatch):
    exp_id = client.create_experiment(uniq("reviewed-registry"))
    run_id = run_with_model_dir(client, exp_id)
    name = uniq_model("reviewed")
    client.create_registered_model(name, description="dana's model")
    new_version_from_run(client, name, run_id)
    client.set_registered_model_alias(name, "challenger", "1")

    act_as(monkeypatch, vigil, "cleo")
    assert client.get_registered_model(name).description == "dana's model"
    assert [m.name for m in client.search_registered_models(f"name = '{name}'")] == [name]
    assert client.get_model_version(name, "1").run_id == run_id
    assert [v.version for v in client.search_model_versions(f"name = '{name}'")] == ["1"]
    assert client.get_model_version_by_alias(name, "challenger").version == "1"
    assert [v.version for v in client.get_latest_versions(name)] == ["1"]
    assert client.get_model_version_download_uri(name, "1")

    cleo_model = uniq_model("cleo")
    with raises_mlflow("PERMISSION_DENIED", 403):
        client.create_registered_model(cleo_model)
    with raises_mlflow("PERMISSION_DENIED", 403):
        new_version_from_run(client, name, run_id)
    with raises_mlflow("PERMISSION_DENIED", 403):
        client.set_registered_model_alias(name, "cleo-pick", "1")
    with raises_mlflow("PERMISSION_DENIED", 403):
        client.delete_registered_model_alias(name, "challenger")
    with raises_mlflow("PERMISSION_DENIED", 403):
        client.update_model_version(name, "1", description="edited by cleo")
    with raises_mlflow("PERMISSION_DENIED", 403):
        client.set_model_version_tag(name, "1", "reviewed", "yes")

    as_cleo = {"user": "cleo"}
    assert_error_response(vigil.api("POST", f"{API}/registered-models/create",
                                    json={"name": cleo_model}, **as_cleo), 403, "PERMISSION_DENIED")
    assert_error_response(vigil.api("POST", f"{API}/model-versions/create", json={
        "name": name, "source": runs_source(run_id), "run_id": run_id}, **as_cleo),
        403, "PERMISSION_DENIED")
    assert_error_response(vigil.api("POST", f"{API}/registered-models/alias", json={
        "name": name, "alias": "cleo-pick", "version": "1"}, **as_cleo), 403, "PERMISSION_DENIED")

    # Nothing changed (checked as dana).
    act_as(monkeypatch, vigil, "dana")
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST", 404):
        client.get_registered_model(cleo_model)
    assert [v.version for v in client.search_model_versions(f"name = '{name}'")] == ["1"]
    rm = client.get_registered_model(name)
    assert rm.aliases == {"challenger": "1"}
    mv = client.get_model_version(name, "1")
    assert mv.description == "" and "reviewed" not in mv.tags


# ---------------------------------------------------------------------------------------------
# 12. a READY logged model's artifacts are frozen (Vigil-specific)


def test_ready_logged_model_artifacts_are_frozen(client, vigil, logged):
    lm = client.get_logged_model(logged.model_ids[0])
    assert lm.status == LoggedModelStatus.READY
    base = lm.artifact_location[len(ARTIFACT_SCHEME):].strip("/")
    before = assert_ok(vigil.api("GET", ARTIFACTS_API, params={"path": base}))
    mlmodel = vigil.api("GET", f"{ARTIFACTS_API}/{base}/MLmodel")
    assert mlmodel.status_code == 200 and mlmodel.content, mlmodel.status_code

    for path, data in (("extra.txt", b"sneaked in"), ("MLmodel", b"flavors: {}\n")):
        resp = vigil.api("PUT", f"{ARTIFACTS_API}/{base}/{path}", data=data)
        assert resp.status_code == 403, (path, resp.status_code, resp.text[:300])

    after = assert_ok(vigil.api("GET", ARTIFACTS_API, params={"path": base}))
    assert after == before, "the logged model's file list changed"
    assert "extra.txt" not in {f["path"] for f in after.get("files", [])}
    assert vigil.api("GET", f"{ARTIFACTS_API}/{base}/MLmodel").content == mlmodel.content


# ---------------------------------------------------------------------------------------------
# 13. dataset inputs


def test_dataset_inputs_and_search(client):
    exp = mlflow.set_experiment(uniq("datasets"))
    df = pd.DataFrame({"age": [61, 72, 55], "lactate": [1.1, 3.4, 2.2], "sepsis": [0, 1, 0]})
    train = mlflow.data.from_pandas(df, source="s3://bucket/train.csv", name="train",
                                    targets="sepsis")
    with mlflow.start_run() as active:
        mlflow.log_input(train, context="training")
        train_run = active.info.run_id
    with mlflow.start_run() as active:
        mlflow.log_input(mlflow.data.from_pandas(df.head(2), source="s3://bucket/eval.csv",
                                                 name="eval"), context="evaluation")
        eval_run = active.info.run_id

    inputs = client.get_run(train_run).inputs.dataset_inputs
    assert len(inputs) == 1, inputs
    ds = inputs[0].dataset
    want = train.to_dict()
    assert (ds.name, ds.digest, ds.source_type, ds.source) == \
        ("train", train.digest, want["source_type"], want["source"])
    assert json.loads(ds.schema) == json.loads(want["schema"])
    assert json.loads(ds.profile) == json.loads(want["profile"])
    assert {t.key: t.value for t in inputs[0].tags}.get("mlflow.data.context") == "training"

    def found(flt):
        return {r.info.run_id for r in client.search_runs([exp.experiment_id], filter_string=flt)}

    assert found("datasets.name = 'train'") == {train_run}
    assert found("datasets.context = 'training'") == {train_run}
    assert found("dataset.name = 'eval'") == {eval_run}
    assert found(f"datasets.digest = '{train.digest}'") == {train_run}
    assert found("datasets.name IN ('train', 'eval')") == {train_run, eval_run}
    assert found("datasets.name LIKE 'tr%'") == {train_run}
    assert found("datasets.context = 'nope'") == set()
