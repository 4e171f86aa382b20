"""MLflow tracking compatibility: the stock mlflow 3.17 client against a Vigil server.

Written from the wire contract in /work/shared/reference/mlflow-api.md (sections 2-5), not from
Vigil's implementation. Every test makes its own experiment(s) with a unique name; the
search tests share one read-only experiment built once per module.
"""

from __future__ import annotations

import base64
import glob
import http.client
import math
import time
import urllib.parse
import uuid
from pathlib import Path

import mlflow
import pytest
from helpers import assert_error_response, collect_pages, raises_mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag, ViewType

API = "/api/2.0/mlflow"
ARTIFACTS_API = "/api/2.0/mlflow-artifacts/artifacts"
ARTIFACT_SCHEME = "mlflow-artifacts:/"

# A fixed, obviously-synthetic epoch for explicit timestamps (2023-11-14T22:13:20Z).
T0 = 1_700_000_000_000


# ---------------------------------------------------------------------------------------------
# helpers


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def now_ms() -> int:
    return int(time.time() * 1000)


def raw_http(vigil, method: str, path: str, body: bytes | None = None, user: str = "dana"):
    """An HTTP call with the path sent byte-for-byte (requests/urllib3 would normalise '..')."""
    parts = urllib.parse.urlsplit(vigil.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=20)
    token = base64.b64encode(f"{user}:{vigil.passwords[user]}".encode()).decode()
    headers = {"Authorization": f"Basic {token}"}
    if body is not None:
        headers["Content-Type"] = "text/plain"
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def assert_same_sequence(actual: list, expected: list) -> None:
    """List equality that reports the first difference (no huge diff for 30,000 items)."""
    assert len(actual) == len(expected), f"length {len(actual)} != expected {len(expected)}"
    for i, (a, e) in enumerate(zip(actual, expected)):
        assert a == e, f"first difference at index {i}: got {a!r}, expected {e!r}"


def artifact_base(run) -> str:
    """'<exp>/<run>/artifacts' from the run's mlflow-artifacts:/ URI."""
    uri = run.info.artifact_uri
    assert uri.startswith(ARTIFACT_SCHEME), uri
    return uri[len(ARTIFACT_SCHEME):].strip("/")


def new_experiment(client: MlflowClient, prefix: str) -> str:
    return client.create_experiment(uniq(prefix))


# ---------------------------------------------------------------------------------------------
# 1. experiments


def test_default_experiment_exists_and_takes_runs_without_experiment(client):
    default = client.get_experiment("0")
    assert default.experiment_id == "0"
    assert default.name == "Default"
    assert default.lifecycle_stage == "active"
    assert client.get_experiment_by_name("Default").experiment_id == "0"

    # No set_experiment in this test (the autouse fixture resets the fluent state).
    with mlflow.start_run() as active:
        assert active.info.experiment_id == "0"
        run_id = active.info.run_id
    assert client.get_run(run_id).info.experiment_id == "0"


def test_set_experiment_creates_then_reuses(client):
    name = uniq("set-exp")
    assert client.get_experiment_by_name(name) is None  # 404 -> None in the client

    created = mlflow.set_experiment(name)
    assert created.name == name
    assert isinstance(created.experiment_id, str) and created.experiment_id not in ("", "0")
    assert created.lifecycle_stage == "active"
    assert created.artifact_location.startswith(ARTIFACT_SCHEME), created.artifact_location

    again = mlflow.set_experiment(name)
    assert again.experiment_id == created.experiment_id

    by_id = mlflow.set_experiment(experiment_id=created.experiment_id)
    assert by_id.name == name

    assert client.get_experiment(created.experiment_id).name == name
    assert client.get_experiment_by_name(name).experiment_id == created.experiment_id

    with mlflow.start_run() as active:
        assert active.info.experiment_id == created.experiment_id


def test_create_experiment_tags_duplicate_and_unknown(client, vigil):
    name = uniq("create-exp")
    exp_id = client.create_experiment(name, tags={"team": "icu", "purpose": "sepsis"})
    exp = client.get_experiment(exp_id)
    assert exp.name == name
    assert {k: exp.tags.get(k) for k in ("team", "purpose")} == {"team": "icu", "purpose": "sepsis"}
    assert exp.creation_time is not None and exp.creation_time > 0

    with raises_mlflow("RESOURCE_ALREADY_EXISTS", 400):
        client.create_experiment(name)
    assert_error_response(
        vigil.api("POST", f"{API}/experiments/create", json={"name": name}),
        400, "RESOURCE_ALREADY_EXISTS",
    )
    assert_error_response(
        vigil.api("POST", f"{API}/experiments/create", json={}), 400, "INVALID_PARAMETER_VALUE"
    )

    with raises_mlflow("RESOURCE_DOES_NOT_EXIST", 404):
        client.get_experiment("987654321")
    assert_error_response(
        vigil.api("GET", f"{API}/experiments/get-by-name",
                  params={"experiment_name": uniq("no-such-exp")}),
        404, "RESOURCE_DOES_NOT_EXIST",
    )


# ---------------------------------------------------------------------------------------------
# 2. runs: params, metrics, tags, end_run


def test_run_lifecycle_params_metrics_tags(client):
    exp = mlflow.set_experiment(uniq("lifecycle"))
    t_start0 = now_ms()
    with mlflow.start_run(run_name="train-lr") as active:
        t_start1 = now_ms()
        run_id = active.info.run_id
        assert active.info.run_name == "train-lr"
        assert active.info.status == "RUNNING"
        assert active.info.experiment_id == exp.experiment_id

        mlflow.log_param("learning_rate", 0.01)
        mlflow.log_params({"model": "lr", "epochs": 10, "penalty": "l2"})
        mlflow.log_metric("loss", 0.9, step=0, timestamp=T0 + 1)
        mlflow.log_metric("loss", 0.5, step=1, timestamp=T0 + 2)
        mlflow.log_metric("loss", 0.25, step=2, timestamp=T0 + 3)
        mlflow.log_metrics({"acc": 0.75, "f1": 0.1 + 0.2}, step=2)
        mlflow.set_tag("team", "icu")
        mlflow.set_tags({"stage": "dev", "owner": "dana"})

        running = client.get_run(run_id)
        assert running.info.status == "RUNNING"
        assert running.info.end_time is None
        t_end0 = now_ms()
    t_end1 = now_ms()

    run = client.get_run(run_id)
    assert run.info.run_id == run_id
    assert run.info.experiment_id == exp.experiment_id
    assert run.info.run_name == "train-lr"
    assert run.info.status == "FINISHED"
    assert run.info.lifecycle_stage == "active"
    # Both times are chosen by the client and must be stored as sent.
    assert t_start0 <= run.info.start_time <= t_start1
    assert t_end0 <= run.info.end_time <= t_end1
    assert run.info.artifact_uri.startswith(ARTIFACT_SCHEME)

    assert run.data.params == {
        "learning_rate": "0.01", "model": "lr", "epochs": "10", "penalty": "l2",
    }
    assert run.data.metrics == {"loss": 0.25, "acc": 0.75, "f1": 0.30000000000000004}
    tags = run.data.tags
    assert {k: tags.get(k) for k in ("team", "stage", "owner", "mlflow.runName")} == {
        "team": "icu", "stage": "dev", "owner": "dana", "mlflow.runName": "train-lr",
    }
    assert "mlflow.user" in tags and "mlflow.source.name" in tags  # sent by start_run

    history = client.get_metric_history(run_id, "loss")
    assert [(m.key, m.value, m.step, m.timestamp) for m in history] == [
        ("loss", 0.9, 0, T0 + 1), ("loss", 0.5, 1, T0 + 2), ("loss", 0.25, 2, T0 + 3),
    ]


def test_run_name_is_generated_and_mirrored_in_tag(client):
    exp_id = new_experiment(client, "run-name")
    unnamed = client.create_run(exp_id)
    assert unnamed.info.status == "RUNNING"
    assert unnamed.info.lifecycle_stage == "active"
    assert unnamed.info.run_name  # generated by the server
    assert unnamed.data.tags.get("mlflow.runName") == unnamed.info.run_name
    fetched = client.get_run(unnamed.info.run_id)
    assert fetched.info.run_name == unnamed.info.run_name
    assert fetched.data.tags.get("mlflow.runName") == unnamed.info.run_name

    # MlflowClient.create_run sends run_name without the tag; stock MLflow mirrors it anyway.
    named = client.create_run(exp_id, run_name="explicit-name")
    assert named.info.run_name == "explicit-name"
    assert client.get_run(named.info.run_id).data.tags.get("mlflow.runName") == "explicit-name"

    client.set_terminated(named.info.run_id, status="FAILED", end_time=T0 + 5)
    failed = client.get_run(named.info.run_id)
    assert failed.info.status == "FAILED"
    assert failed.info.end_time == T0 + 5


def test_latest_metric_is_greatest_step_timestamp_value(client, vigil):
    exp_id = new_experiment(client, "latest")
    run_id = client.create_run(exp_id).info.run_id
    # Logged deliberately out of order: the latest is neither the last logged nor the newest.
    for value, ts, step in [(0.2, 500, 3), (0.1, 500, 3), (0.9, 9999, 2), (0.5, 1000, 1)]:
        client.log_metric(run_id, "acc", value, timestamp=T0 + ts, step=step)
    # Same step: the greater timestamp wins, whatever the value.
    for value, ts in [(1.0, 2000), (0.5, 3000), (7.0, 1000)]:
        client.log_metric(run_id, "loss", value, timestamp=T0 + ts, step=0)

    run = client.get_run(run_id)
    assert run.data.metrics == {"acc": 0.2, "loss": 0.5}

    body = vigil.api("GET", f"{API}/runs/get", params={"run_id": run_id}).json()
    latest = {m["key"]: m for m in body["run"]["data"]["metrics"]}
    assert (latest["acc"]["value"], int(latest["acc"]["timestamp"]), int(latest["acc"]["step"])) \
        == (0.2, T0 + 500, 3)
    assert (latest["loss"]["value"], int(latest["loss"]["timestamp"]), int(latest["loss"].get("step", 0))) \
        == (0.5, T0 + 3000, 0)

    # The full history keeps every point (order is checked elsewhere, with a monotone log).
    history = client.get_metric_history(run_id, "acc")
    assert sorted((m.value, m.timestamp, m.step) for m in history) == sorted(
        [(0.2, T0 + 500, 3), (0.1, T0 + 500, 3), (0.9, T0 + 9999, 2), (0.5, T0 + 1000, 1)]
    )


# ---------------------------------------------------------------------------------------------
# 3. params are immutable


def test_params_are_immutable(client, vigil):
    exp_id = new_experiment(client, "params")
    run_id = client.create_run(exp_id).info.run_id

    client.log_param(run_id, "alpha", "0.1")
    client.log_param(run_id, "alpha", "0.1")  # same value again: fine
    with raises_mlflow("INVALID_PARAMETER_VALUE", 400):
        client.log_param(run_id, "alpha", "0.2")

    assert_error_response(
        vigil.api("POST", f"{API}/runs/log-parameter",
                  json={"run_id": run_id, "run_uuid": run_id, "key": "alpha", "value": "0.3"}),
        400, "INVALID_PARAMETER_VALUE",
    )
    ok = vigil.api("POST", f"{API}/runs/log-parameter",
                   json={"run_id": run_id, "run_uuid": run_id, "key": "alpha", "value": "0.1"})
    assert ok.status_code == 200, ok.text

    with raises_mlflow("INVALID_PARAMETER_VALUE", 400):
        client.log_batch(run_id, params=[Param("alpha", "0.4")])
    client.log_batch(run_id, params=[Param("alpha", "0.1"), Param("beta", "b")])

    # Fluent API, same rule.
    with mlflow.start_run(run_id=run_id):
        mlflow.log_param("beta", "b")
        with raises_mlflow("INVALID_PARAMETER_VALUE", 400):
            mlflow.log_param("beta", "c")

    assert client.get_run(run_id).data.params == {"alpha": "0.1", "beta": "b"}


# ---------------------------------------------------------------------------------------------
# 4. NaN and infinities


def _values_by_step(client, run_id, key):
    return [(m.step, m.value) for m in sorted(client.get_metric_history(run_id, key),
                                               key=lambda m: m.step)]


def _same_float(got: float, want: float) -> bool:
    # Exact round trip, as the brief asks. Stricter than stock MLflow, whose SQL store
    # clamps +/-inf to +/-sys.float_info.max (1.7976931348623157e308).
    return math.isnan(got) if math.isnan(want) else got == want


def test_nan_and_infinity_round_trip(client, vigil):
    exp_id = new_experiment(client, "nan")
    run_id = client.create_run(exp_id).info.run_id
    nan, inf = float("nan"), float("inf")
    expected = [(0, nan), (1, inf), (2, -inf), (3, 1.5)]

    for step, value in expected:  # runs/log-metric
        client.log_metric(run_id, "single", value, timestamp=T0 + step, step=step)
    client.log_batch(run_id, metrics=[  # runs/log-batch
        Metric("batch", value, T0 + step, step) for step, value in expected
    ])
    for step, text in enumerate(["NaN", "Infinity", "-Infinity"]):  # strings on the wire
        resp = vigil.api("POST", f"{API}/runs/log-metric", json={
            "run_id": run_id, "run_uuid": run_id, "key": "wire", "value": text,
            "timestamp": T0 + step, "step": step,
        })
        assert resp.status_code == 200, resp.text
    client.log_metric(run_id, "nan_only", nan, timestamp=T0, step=0)

    for key, want in [("single", expected), ("batch", expected), ("wire", expected[:3])]:
        got = _values_by_step(client, run_id, key)
        assert [s for s, _ in got] == [s for s, _ in want], (key, got)
        assert all(_same_float(g, w) for (_, g), (_, w) in zip(got, want)), (key, got)

    metrics = client.get_run(run_id).data.metrics
    assert metrics["single"] == 1.5 and metrics["batch"] == 1.5
    assert _same_float(metrics["wire"], -inf)
    assert math.isnan(metrics["nan_only"])


# ---------------------------------------------------------------------------------------------
# 5. long metric histories (two 25,000-point pages)


@pytest.mark.parametrize("with_steps", [False, True], ids=["timestamps", "steps"])
def test_metric_history_30000_points(client, with_steps):
    n = 30_000
    exp_id = new_experiment(client, "history")
    run_id = client.create_run(exp_id).info.run_id
    if with_steps:
        # One timestamp, increasing steps.
        points = [(i / 7.0, T0, i) for i in range(n)]
    else:
        # Step 0 throughout, increasing timestamps.
        points = [(i / 7.0, T0 + i, 0) for i in range(n)]
    # Logging order == (timestamp, step) order, the order stock MLflow returns history in.
    for start in range(0, n, 1000):
        client.log_batch(run_id, metrics=[
            Metric("curve", v, ts, step) for v, ts, step in points[start:start + 1000]
        ])

    history = client.get_metric_history(run_id, "curve")
    assert all(m.key == "curve" for m in history)
    assert_same_sequence([(m.value, m.timestamp, m.step) for m in history], points)
    assert client.get_run(run_id).data.metrics == {"curve": (n - 1) / 7.0}


def test_metric_history_of_unknown_key_is_empty(client, vigil):
    exp_id = new_experiment(client, "history-empty")
    run_id = client.create_run(exp_id).info.run_id
    client.log_metric(run_id, "present", 1.0, timestamp=T0, step=0)
    assert client.get_metric_history(run_id, "absent") == []
    resp = vigil.api("GET", f"{API}/metrics/get-history",
                     params={"run_id": run_id, "metric_key": "absent"})
    assert resp.status_code == 200, resp.text
    assert resp.json().get("metrics", []) == []


# ---------------------------------------------------------------------------------------------
# 6. artifacts


def test_artifacts_round_trip(client, tmp_path):
    text = "héllo vigil ✓\nsecond line\n"
    blob = bytes(range(256)) * 40 + b"\x00\r\n\xff"
    tree = tmp_path / "src"
    (tree / "nested" / "deeper").mkdir(parents=True)
    (tree / "nested" / "top.txt").write_text("top\n")
    (tree / "nested" / "deeper" / "blob.bin").write_bytes(blob)
    single = tmp_path / "single.bin"
    single.write_bytes(blob)

    mlflow.set_experiment(uniq("artifacts"))
    with mlflow.start_run() as active:
        run_id = active.info.run_id
        mlflow.log_text(text, "notes/readme.txt")
        mlflow.log_artifact(str(single), artifact_path="data/raw")
        mlflow.log_artifacts(str(tree), artifact_path="tree")

    run = client.get_run(run_id)
    # Contract §4: uploads must flow through the server (stock: <exp>/<run>/artifacts).
    assert run.info.artifact_uri.startswith(ARTIFACT_SCHEME)
    assert run.info.artifact_uri.rstrip("/").endswith(f"/{run_id}/artifacts")

    root = client.list_artifacts(run_id)
    assert sorted((f.path, f.is_dir) for f in root) == [
        ("data", True), ("notes", True), ("tree", True),
    ]
    assert [(f.path, f.is_dir, f.file_size) for f in client.list_artifacts(run_id, "data/raw")] \
        == [("data/raw/single.bin", False, len(blob))]
    assert [(f.path, f.is_dir, f.file_size) for f in client.list_artifacts(run_id, "notes")] \
        == [("notes/readme.txt", False, len(text.encode("utf-8")))]
    nested = sorted(client.list_artifacts(run_id, "tree/nested"), key=lambda f: f.path)
    assert [(f.path, f.is_dir) for f in nested] == [
        ("tree/nested/deeper", True), ("tree/nested/top.txt", False),
    ]
    assert nested[1].file_size == 4
    assert client.list_artifacts(run_id, "no/such/dir") == []

    dst = tmp_path / "dl"
    local = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path="notes/readme.txt", dst_path=str(dst / "one"))
    assert Path(local).read_bytes() == text.encode("utf-8")

    local = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path="data/raw/single.bin", dst_path=str(dst / "two"))
    assert Path(local).read_bytes() == blob

    local_dir = Path(mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path="tree", dst_path=str(dst / "three")))
    files = sorted(str(p.relative_to(local_dir)) for p in local_dir.rglob("*") if p.is_file())
    assert files == ["nested/deeper/blob.bin", "nested/top.txt"]
    assert (local_dir / "nested" / "deeper" / "blob.bin").read_bytes() == blob
    assert (local_dir / "nested" / "top.txt").read_text() == "top\n"

    assert mlflow.artifacts.load_text(f"runs:/{run_id}/notes/readme.txt") == text


# ---------------------------------------------------------------------------------------------
# 7. search_runs: filters, ordering, paging

# name: start offset, params, metrics, tags, final status (None = still RUNNING)
SEARCH_RUNS = {
    "run1": (1000, {"model": "lr"}, {"acc": 0.9, "val auc": 0.8}, {"team": "icu"}, "FINISHED"),
    "run2": (2000, {"model": "rf"}, {"acc": 0.4}, {"team": "icu"}, "FINISHED"),
    "run3": (3000, {"model": "logit"}, {"acc": 0.7}, {"team": "er", "x": "1"}, "FAILED"),
    "run4": (4000, {"model": "LR-boost"}, {"loss": 0.3}, {"team": "icu"}, "FINISHED"),
    "run5": (5000, {"model": "svm"}, {"acc": 0.55}, {"x": "2"}, None),
}


@pytest.fixture(scope="module")
def search_exp(vigil):
    """One experiment with five runs, built once; the search tests only read it."""
    client = MlflowClient(tracking_uri=vigil.url)
    exp_id = client.create_experiment(uniq("search"))
    ids = {}
    for name, (offset, params, metrics, tags, status) in SEARCH_RUNS.items():
        run = client.create_run(exp_id, start_time=T0 + offset, run_name=name)
        client.log_batch(
            run.info.run_id,
            metrics=[Metric(k, v, T0 + offset + 1, 0) for k, v in metrics.items()],
            params=[Param(k, v) for k, v in params.items()],
            tags=[RunTag(k, v) for k, v in tags.items()],
        )
        if status:
            client.set_terminated(run.info.run_id, status=status, end_time=T0 + offset + 500)
        ids[name] = run.info.run_id
    return exp_id, ids


def _names(runs, ids) -> list[str]:
    by_id = {v: k for k, v in ids.items()}
    return [by_id.get(r.info.run_id, r.info.run_id) for r in runs]


@pytest.mark.parametrize("filter_string, expected", [
    ("metrics.acc > 0.5", {"run1", "run3", "run5"}),
    ("metrics.acc <= 0.55", {"run2", "run5"}),
    ("metrics.acc = 0.7", {"run3"}),
    ("metrics.`val auc` > 0.5", {"run1"}),
    ("params.model = 'lr'", {"run1"}),
    ('params.model = "rf"', {"run2"}),
    ("params.model != 'rf'", {"run1", "run3", "run4", "run5"}),
    ("tags.team = 'icu'", {"run1", "run2", "run4"}),
    ("tags.team = 'ICU'", set()),
    ("attributes.status = 'FINISHED'", {"run1", "run2", "run4"}),
    ("status = 'RUNNING'", {"run5"}),
    ("attributes.run_name = 'run2'", {"run2"}),
    ("tags.mlflow.runName = 'run3'", {"run3"}),
    (f"attributes.start_time >= {T0 + 3000}", {"run3", "run4", "run5"}),
    ("metrics.acc > 0.5 AND tags.team = 'icu'", {"run1"}),
    ("params.model != 'rf' and tags.team = 'icu' AND attributes.status = 'FINISHED'",
     {"run1", "run4"}),
    ("metric.acc > 0.5 AND param.model = 'logit'", {"run3"}),
    ("params.model LIKE 'l%'", {"run1", "run3"}),  # LIKE is case-sensitive
    ("params.model LIKE 'L%'", {"run4"}),
    ("params.model LIKE '_r'", {"run1"}),
    ("params.model ILIKE 'l%'", {"run1", "run3", "run4"}),
    ("tags.x IS NULL", {"run1", "run2", "run4"}),
    ("tags.x IS NOT NULL", {"run3", "run5"}),
    ("params.model IS NOT NULL", {"run1", "run2", "run3", "run4", "run5"}),
])
def test_search_runs_filter(client, search_exp, filter_string, expected):
    exp_id, ids = search_exp
    runs = client.search_runs([exp_id], filter_string=filter_string)
    names = _names(runs, ids)
    assert len(names) == len(set(names)), names
    assert set(names) == expected


def test_search_runs_run_id_in(client, search_exp):
    exp_id, ids = search_exp
    runs = client.search_runs(
        [exp_id], filter_string=f"attributes.run_id IN ('{ids['run2']}', '{ids['run4']}')")
    assert set(_names(runs, ids)) == {"run2", "run4"}
    runs = client.search_runs(
        [exp_id], filter_string=f"attributes.run_id NOT IN ('{ids['run2']}', '{ids['run4']}')")
    assert set(_names(runs, ids)) == {"run1", "run3", "run5"}


@pytest.mark.parametrize("order_by, expected", [
    # Runs lacking the ordered metric/tag come last in both directions (contract §4).
    (["metrics.acc DESC"], ["run1", "run3", "run5", "run2", "run4"]),
    (["metrics.acc ASC"], ["run2", "run5", "run3", "run1", "run4"]),
    (["metrics.acc"], ["run2", "run5", "run3", "run1", "run4"]),
    (["attributes.start_time ASC"], ["run1", "run2", "run3", "run4", "run5"]),
    (["attributes.start_time DESC"], ["run5", "run4", "run3", "run2", "run1"]),
    (["tags.team DESC", "attributes.start_time ASC"], ["run1", "run2", "run4", "run3", "run5"]),
    (None, ["run5", "run4", "run3", "run2", "run1"]),  # default: start_time DESC
], ids=["acc-desc", "acc-asc", "acc-default-asc", "start-asc", "start-desc", "team-then-start",
        "default"])
def test_search_runs_order_by(client, search_exp, order_by, expected):
    exp_id, ids = search_exp
    runs = client.search_runs([exp_id], order_by=order_by)
    assert _names(runs, ids) == expected


def test_search_runs_filter_and_order(client, search_exp):
    exp_id, ids = search_exp
    runs = client.search_runs([exp_id], filter_string="tags.team = 'icu'",
                              order_by=["metrics.acc DESC"])
    assert _names(runs, ids) == ["run1", "run2", "run4"]
    assert [r.data.metrics.get("acc") for r in runs] == [0.9, 0.4, None]
    assert [r.data.params["model"] for r in runs] == ["lr", "rf", "LR-boost"]


@pytest.mark.parametrize("filter_string, order_by, expected", [
    ("", ["attributes.start_time ASC"], ["run1", "run2", "run3", "run4", "run5"]),
    ("tags.team = 'icu'", ["metrics.acc DESC"], ["run1", "run2", "run4"]),
], ids=["all", "filtered"])
def test_search_runs_paging(client, search_exp, filter_string, order_by, expected):
    exp_id, ids = search_exp
    collected = collect_pages(
        lambda token: client.search_runs([exp_id], filter_string=filter_string, order_by=order_by,
                                         max_results=2, page_token=token),
        lambda page: _names(page, ids), 10)
    assert collected == expected  # every run exactly once, in order


def test_fluent_search_runs_pandas_and_list(search_exp):
    exp_id, ids = search_exp
    df = mlflow.search_runs(experiment_ids=[exp_id], filter_string="metrics.acc > 0.5",
                            order_by=["metrics.acc DESC"])
    assert df["run_id"].tolist() == [ids["run1"], ids["run3"], ids["run5"]]
    assert df["metrics.acc"].tolist() == [0.9, 0.7, 0.55]
    assert df["params.model"].tolist() == ["lr", "logit", "svm"]
    assert df["status"].tolist() == ["FINISHED", "FAILED", "RUNNING"]
    assert df["tags.mlflow.runName"].tolist() == ["run1", "run3", "run5"]

    runs = mlflow.search_runs(experiment_ids=[exp_id], filter_string="params.model ILIKE 'l%'",
                              order_by=["attributes.start_time ASC"], output_format="list")
    assert _names(runs, ids) == ["run1", "run3", "run4"]

    everything = mlflow.search_runs(experiment_ids=[exp_id])
    assert sorted(everything["run_id"].tolist()) == sorted(ids.values())


# ---------------------------------------------------------------------------------------------
# 8. invalid filters


@pytest.mark.parametrize("filter_string", [
    "metrics.acc > 0.5 OR params.x = 'y'",
    "metrics.acc > '0.5'",
    "foo.bar = 1",
    "(metrics.acc > 0.5)",
    "params.model = lr",
    "metrics.acc IS NULL",
])
def test_search_runs_invalid_filter_is_400(client, vigil, search_exp, filter_string):
    exp_id, _ = search_exp
    with raises_mlflow("INVALID_PARAMETER_VALUE", 400):
        client.search_runs([exp_id], filter_string=filter_string)
    # get_http_status_code() is derived from the error code; check the real status too.
    resp = vigil.api("POST", f"{API}/runs/search", json={
        "experiment_ids": [exp_id], "filter": filter_string, "max_results": 10,
    })
    assert_error_response(resp, 400, "INVALID_PARAMETER_VALUE")


def test_search_runs_max_results_above_limit_is_400(vigil, search_exp):
    exp_id, _ = search_exp
    resp = vigil.api("POST", f"{API}/runs/search",
                     json={"experiment_ids": [exp_id], "max_results": 50_001})
    assert_error_response(resp, 400, "INVALID_PARAMETER_VALUE")


# ---------------------------------------------------------------------------------------------
# 9. delete / restore and view types


def test_delete_restore_and_view_types(client):
    exp_id = new_experiment(client, "lifecycle-stage")
    r1, r2, r3 = (client.create_run(exp_id, run_name=f"r{i}").info.run_id for i in (1, 2, 3))

    def ids(view):
        return {r.info.run_id for r in client.search_runs([exp_id], run_view_type=view)}

    client.delete_run(r2)
    assert client.get_run(r2).info.lifecycle_stage == "deleted"
    assert client.get_run(r1).info.lifecycle_stage == "active"
    assert {r.info.run_id for r in client.search_runs([exp_id])} == {r1, r3}  # ACTIVE_ONLY default
    assert ids(ViewType.ACTIVE_ONLY) == {r1, r3}
    assert ids(ViewType.DELETED_ONLY) == {r2}
    assert ids(ViewType.ALL) == {r1, r2, r3}
    df = mlflow.search_runs(experiment_ids=[exp_id], run_view_type=ViewType.DELETED_ONLY)
    assert df["run_id"].tolist() == [r2]

    client.restore_run(r2)
    assert client.get_run(r2).info.lifecycle_stage == "active"
    assert ids(ViewType.ACTIVE_ONLY) == {r1, r2, r3}
    assert ids(ViewType.DELETED_ONLY) == set()


# ---------------------------------------------------------------------------------------------
# 10. unknown run


def test_unknown_run_is_resource_does_not_exist(client, vigil):
    missing = uuid.uuid4().hex
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST", 404):
        client.get_run(missing)
    assert_error_response(
        vigil.api("GET", f"{API}/runs/get", params={"run_id": missing, "run_uuid": missing}),
        404, "RESOURCE_DOES_NOT_EXIST",
    )
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST", 404):
        client.log_metric(missing, "m", 1.0)
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST", 404):
        client.log_param(missing, "p", "v")
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST", 404):
        client.delete_run(missing)
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST", 404):
        client.create_run("987654321")  # unknown experiment
    # Contract §3: history of an unknown run is an empty 200, not an error.
    assert client.get_metric_history(missing, "m") == []


# ---------------------------------------------------------------------------------------------
# 11. authentication and permissions


def test_wrong_password_is_401(client, vigil, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "not-the-password")
    with raises_mlflow("UNAUTHENTICATED", 401):
        client.get_experiment("0")
    with raises_mlflow("UNAUTHENTICATED", 401):
        mlflow.set_experiment(uniq("never-created"))

    assert_error_response(vigil.api("GET", f"{API}/experiments/get",
                                    params={"experiment_id": "0"}, password="wrong"), 401)
    assert_error_response(vigil.api("POST", f"{API}/runs/search", password="wrong",
                                    json={"experiment_ids": ["0"]}), 401)
    assert_error_response(vigil.api("GET", f"{API}/experiments/get", user="mallory",
                                    password="dana-pass-123", params={"experiment_id": "0"}), 401)


def test_missing_or_garbled_credentials_are_401(client, vigil, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME")
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD")
    with raises_mlflow("UNAUTHENTICATED", 401):
        client.search_runs(["0"])

    for method, path, kwargs in [
        ("GET", f"{API}/experiments/get", {"params": {"experiment_id": "0"}}),
        ("POST", f"{API}/experiments/create", {"json": {"name": uniq("anon")}}),
        ("POST", f"{API}/runs/search", {"json": {"experiment_ids": ["0"]}}),
        ("GET", ARTIFACTS_API, {"params": {"path": "0"}}),
        ("PUT", f"{ARTIFACTS_API}/0/anon/artifacts/x.txt", {"data": b"x"}),
    ]:
        assert_error_response(vigil.api(method, path, user=None, **kwargs), 401)

    for header in ("Basic !!!not-base64!!!", "Basic " + base64.b64encode(b"no-colon").decode(),
                   "Bearer not-a-token"):
        resp = vigil.api("GET", f"{API}/experiments/get", user=None,
                         params={"experiment_id": "0"}, headers={"Authorization": header})
        assert_error_response(resp, 401)


def test_clinical_reviewer_reads_but_cannot_write(client, vigil, monkeypatch):
    # Set up as dana.
    exp_name = uniq("reviewed")
    exp_id = client.create_experiment(exp_name)
    run_id = client.create_run(exp_id, run_name="dana-run").info.run_id
    client.log_metric(run_id, "acc", 0.9, timestamp=T0, step=0)
    client.log_param(run_id, "model", "lr")

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "cleo")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", vigil.passwords["cleo"])
    runs = client.search_runs([exp_id])
    assert [r.info.run_id for r in runs] == [run_id]
    assert runs[0].data.metrics == {"acc": 0.9}
    assert client.get_run(run_id).data.params == {"model": "lr"}
    assert [m.value for m in client.get_metric_history(run_id, "acc")] == [0.9]
    assert mlflow.search_runs(experiment_ids=[exp_id])["run_id"].tolist() == [run_id]
    assert client.get_experiment(exp_id).name == exp_name

    cleo_exp = uniq("cleo-exp")
    with raises_mlflow("PERMISSION_DENIED", 403):
        client.create_experiment(cleo_exp)
    with raises_mlflow("PERMISSION_DENIED", 403):
        client.create_run(exp_id)
    with raises_mlflow("PERMISSION_DENIED", 403):
        client.log_metric(run_id, "acc", 0.1, timestamp=T0 + 1, step=1)
    with raises_mlflow("PERMISSION_DENIED", 403):
        client.log_param(run_id, "extra", "x")
    with raises_mlflow("PERMISSION_DENIED", 403):
        client.set_tag(run_id, "reviewed", "yes")

    as_cleo = {"user": "cleo"}
    assert_error_response(vigil.api("POST", f"{API}/experiments/create",
                                    json={"name": cleo_exp}, **as_cleo), 403)
    assert_error_response(vigil.api("POST", f"{API}/runs/log-batch", json={
        "run_id": run_id, "metrics": [{"key": "acc", "value": 0.2, "timestamp": T0 + 2, "step": 2}],
    }, **as_cleo), 403)
    assert_error_response(vigil.api("POST", f"{API}/runs/update", json={
        "run_id": run_id, "run_uuid": run_id, "status": "KILLED", "end_time": T0 + 3,
    }, **as_cleo), 403)
    assert_error_response(vigil.api("POST", f"{API}/runs/delete", json={"run_id": run_id},
                                    **as_cleo), 403)

    # Nothing changed (checked as dana).
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "dana")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", vigil.passwords["dana"])
    run = client.get_run(run_id)
    assert run.data.metrics == {"acc": 0.9}
    assert run.data.params == {"model": "lr"}
    assert "reviewed" not in run.data.tags
    assert run.info.status == "RUNNING" and run.info.lifecycle_stage == "active"
    assert [m.value for m in client.get_metric_history(run_id, "acc")] == [0.9]
    assert client.get_experiment_by_name(cleo_exp) is None
    assert [r.info.run_id for r in client.search_runs([exp_id])] == [run_id]


# ---------------------------------------------------------------------------------------------
# 12. request limits and malformed input


def _metrics_json(n: int, key: str = "m") -> list[dict]:
    return [{"key": key, "value": float(i), "timestamp": T0 + i, "step": i} for i in range(n)]


def test_log_batch_over_1000_metrics_is_400(client, vigil):
    exp_id = new_experiment(client, "batch-limit")
    run_id = client.create_run(exp_id).info.run_id

    resp = vigil.api("POST", f"{API}/runs/log-batch",
                     json={"run_id": run_id, "metrics": _metrics_json(1001)})
    assert_error_response(resp, 400, "INVALID_PARAMETER_VALUE")
    assert client.get_metric_history(run_id, "m") == []  # nothing partially written

    resp = vigil.api("POST", f"{API}/runs/log-batch",
                     json={"run_id": run_id, "metrics": _metrics_json(1000)})
    assert resp.status_code == 200, resp.text
    assert len(client.get_metric_history(run_id, "m")) == 1000


def test_log_batch_param_tag_and_entity_limits(client, vigil):
    exp_id = new_experiment(client, "batch-limits")
    run_id = client.create_run(exp_id).info.run_id

    def batch(**body):
        return vigil.api("POST", f"{API}/runs/log-batch", json={"run_id": run_id, **body})

    params = [{"key": f"p{i}", "value": str(i)} for i in range(101)]
    tags = [{"key": f"t{i}", "value": str(i)} for i in range(101)]
    assert_error_response(batch(params=params), 400, "INVALID_PARAMETER_VALUE")
    assert_error_response(batch(tags=tags), 400, "INVALID_PARAMETER_VALUE")
    # 950 metrics + 51 params = 1,001 entities.
    assert_error_response(batch(metrics=_metrics_json(950, "e"), params=params[:51]),
                          400, "INVALID_PARAMETER_VALUE")
    run = client.get_run(run_id)
    assert run.data.params == {} and run.data.metrics == {}
    assert not any(k.startswith("t") and k[1:].isdigit() for k in run.data.tags)

    resp = batch(params=params[:100], tags=tags[:100])
    assert resp.status_code == 200, resp.text
    run = client.get_run(run_id)
    assert len(run.data.params) == 100
    assert sum(1 for k in run.data.tags if k.startswith("t") and k[1:].isdigit()) == 100


@pytest.mark.parametrize("endpoint, body", [
    ("runs/log-batch", '{"run_id": "RUN", "metrics": ['),
    ("runs/log-batch", '{"run_id": "RUN", "metrics": "not-a-list"}'),
    ("runs/log-metric", "this is not json"),
    ("runs/log-parameter", '{"run_id": "RUN", "key": "k", "value": '),
    ("experiments/create", '{"name": '),
    ("runs/search", "[1, 2"),
], ids=["batch-truncated", "batch-wrong-shape", "metric-not-json", "param-truncated",
        "exp-truncated", "search-truncated"])
def test_malformed_json_body_is_400(client, vigil, endpoint, body):
    # Stricter than stock MLflow 3.17, which answers a truncated log-batch body with 500 and
    # an unparsable runs/search body with 200 {}; the contract never allows a 5xx here.
    exp_id = new_experiment(client, "malformed")
    run_id = client.create_run(exp_id).info.run_id
    resp = vigil.api("POST", f"{API}/{endpoint}", data=body.replace("RUN", run_id).encode(),
                     headers={"Content-Type": "application/json"})
    assert_error_response(resp, 400)
    run = client.get_run(run_id)
    assert run.data.metrics == {} and run.data.params == {}


def test_log_metric_invalid_value_or_missing_timestamp_is_400(client, vigil):
    exp_id = new_experiment(client, "bad-metric")
    run_id = client.create_run(exp_id).info.run_id
    base = {"run_id": run_id, "run_uuid": run_id, "key": "m", "step": 0}
    assert_error_response(
        vigil.api("POST", f"{API}/runs/log-metric", json={**base, "value": "abc", "timestamp": T0}),
        400, "INVALID_PARAMETER_VALUE")
    assert_error_response(
        vigil.api("POST", f"{API}/runs/log-metric", json={**base, "value": 1.0}),
        400, "INVALID_PARAMETER_VALUE")
    assert client.get_metric_history(run_id, "m") == []


@pytest.mark.parametrize("escape", [
    "../ESC.txt",
    "a/../../ESC.txt",
    "../" * 16 + "tmp/ESC.txt",
    # Percent-encoded dots: the server must decode paths (the client sends names with spaces
    # percent-encoded), and stock MLflow then refuses the '..'.
    "%2E%2E/%2e%2e/ESC.txt",
], ids=["parent", "inner", "deep", "encoded"])
def test_artifact_put_with_dotdot_is_400(client, vigil, escape):
    exp_id = new_experiment(client, "dotdot")
    run = client.create_run(exp_id)
    base = artifact_base(run)
    tag = uuid.uuid4().hex
    marker = f"vigil-escape-{tag}"

    # A legitimate upload on the same route works, so a 400 below is about the '..'.
    status, body = raw_http(vigil, "PUT", f"{ARTIFACTS_API}/{base}/ok.txt", b"fine")
    assert status == 200, body

    status, body = raw_http(vigil, "PUT", f"{ARTIFACTS_API}/{base}/{escape.replace('ESC', marker)}",
                            b"escaped")
    assert status == 400, (status, body[:300])

    leaked = [str(p) for p in vigil.root.rglob(f"*{tag}*")]
    leaked += glob.glob(f"/tmp/*{tag}*") + glob.glob(f"/*{tag}*")
    assert leaked == [], leaked
    assert [(f.path, f.is_dir) for f in client.list_artifacts(run.info.run_id)] == [("ok.txt", False)]


def test_artifact_get_and_list_with_dotdot_are_400(client, vigil):
    exp_id = new_experiment(client, "dotdot-read")
    run = client.create_run(exp_id)
    base = artifact_base(run)
    status, body = raw_http(vigil, "PUT", f"{ARTIFACTS_API}/{base}/ok.txt", b"fine")
    assert status == 200, body

    status, body = raw_http(vigil, "GET", f"{ARTIFACTS_API}/{base}/../../../../../../etc/passwd")
    assert status == 400, (status, body[:300])
    resp = vigil.api("GET", ARTIFACTS_API, params={"path": f"{base}/../.."})
    assert_error_response(resp, 400)
