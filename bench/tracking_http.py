"""The same tracking workloads against any MLflow-compatible server, from one Python client,
so that `vigil serve` and `mlflow server` are timed side by side on this machine.

    python3 bench/tracking_http.py URL [USER PASSWORD] [--runs N]

Workloads (raw REST with keep-alive sessions, as the mlflow client sends them):
1. runs/log-metric, 1 client, 500 sequential calls: p50 / p99.
2. runs/log-batch of 1,000 metrics, 8 client threads x 10 batches (bodies encoded before the
   clock starts): metric points per second.
3. metrics/get-history of a 100,000-point metric, paged by 25,000 as the client does.
4. runs/search with a filter and an order_by over N runs (default 10,000): p50 of 21 calls.
5. registered-models/alias on a model with 50 versions and 5 aliases (what
   `load_model("models:/name@alias")` asks first), 1 client, 1,000 calls: p50 / p99.

mlflow server for comparison (stock 3.17.2, SQLite, one worker):
    mlflow server --backend-store-uri sqlite:///DIR/mlflow.db --artifacts-destination DIR/a --workers 1
"""
import json
import statistics
import sys
import threading
import time

import requests

url = sys.argv[1].rstrip("/") + "/api/2.0/mlflow"
auth = (sys.argv[2], sys.argv[3]) if len(sys.argv) > 3 and not sys.argv[2].startswith("--") else None
nruns = int(sys.argv[sys.argv.index("--runs") + 1]) if "--runs" in sys.argv else 10_000


def session():
    s = requests.Session()
    if auth:
        s.auth = auth
    return s


S = session()


def post(path, body, s=S):
    r = s.post(f"{url}/{path}", data=json.dumps(body), headers={"content-type": "application/json"})
    assert r.status_code == 200, (path, r.status_code, r.text[:200])
    return r.json()


def get(path, params, s=S):
    r = s.get(f"{url}/{path}", params=params)
    assert r.status_code == 200, (path, r.status_code, r.text[:200])
    return r.json()


tag = str(int(time.time() * 1000))
exp = post("experiments/create", {"name": f"bench-{tag}"})["experiment_id"]


def new_run():
    return post("runs/create", {"experiment_id": exp, "start_time": int(time.time() * 1000)})["run"]["info"]["run_id"]


# 1
run = new_run()
lat = []
for i in range(500):
    t = time.perf_counter()
    post("runs/log-metric", {"run_id": run, "key": "loss", "value": 1.0 / (i + 1), "timestamp": 1_700_000_000_000 + i, "step": i})
    lat.append((time.perf_counter() - t) * 1e3)
lat.sort()
print(f"log-metric, 1 client, 500 calls: p50 {statistics.median(lat):.2f} ms, p99 {lat[int(0.99 * (len(lat) - 1))]:.2f} ms")

# 2
runs = [new_run() for _ in range(8)]
bodies = [[json.dumps({"run_id": r, "metrics": [{"key": f"m{i % 10}", "value": i * 0.5, "timestamp": 1_700_000_000_000 + i, "step": b * 1000 + i} for i in range(1000)]}) for b in range(10)] for r in runs]


def client(bs):
    s = session()
    for body in bs:
        r = s.post(f"{url}/runs/log-batch", data=body, headers={"content-type": "application/json"})
        assert r.status_code == 200, r.text[:200]


t = time.perf_counter()
threads = [threading.Thread(target=client, args=(bs,)) for bs in bodies]
for th in threads:
    th.start()
for th in threads:
    th.join()
secs = time.perf_counter() - t
print(f"log-batch x1000, 8 clients, 80000 points: {80000 / secs:.0f} points/s ({secs:.2f} s)")

# 3
run = new_run()
for chunk in range(100):
    post("runs/log-batch", {"run_id": run, "metrics": [{"key": "auc", "value": float(i), "timestamp": 1, "step": chunk * 1000 + i} for i in range(1000)]})
times = []
for _ in range(3):
    t = time.perf_counter()
    got, token = 0, None
    while True:
        params = {"run_id": run, "metric_key": "auc", "max_results": 25000}
        if token:
            params["page_token"] = token
        page = get("metrics/get-history", params)
        got += len(page.get("metrics", []))
        token = page.get("next_page_token")
        if not token:
            break
    assert got == 100_000, got
    times.append((time.perf_counter() - t) * 1e3)
print(f"get-history of 100000 points (pages of 25,000): median {statistics.median(times):.0f} ms")

# 4
sexp = post("experiments/create", {"name": f"search-{tag}"})["experiment_id"]
t0 = time.perf_counter()
for i in range(nruns):
    r = post("runs/create", {"experiment_id": sexp, "start_time": 1_700_000_000_000 + i})["run"]["info"]["run_id"]
    post("runs/log-batch", {
        "run_id": r,
        "metrics": [{"key": "acc", "value": (i % 1000) / 1000, "timestamp": 1, "step": 0}, {"key": "loss", "value": float(i % 777), "timestamp": 1, "step": 0}],
        "params": [{"key": "model", "value": ["lr", "rf", "gbm", "xgb"][i % 4]}, {"key": "C", "value": str(i % 10)}],
        "tags": [{"key": "team", "value": ["icu", "ed"][i % 2]}],
    })
print(f"  (created {nruns} runs in {time.perf_counter() - t0:.0f} s)", file=sys.stderr)
body = {"experiment_ids": [sexp], "filter": "metrics.acc > 0.9 and params.model = 'rf'", "order_by": ["metrics.loss DESC"], "max_results": 100}
times = []
for _ in range(21):
    t = time.perf_counter()
    assert post("runs/search", body)["runs"], "the filter matches some runs"
    times.append((time.perf_counter() - t) * 1e3)
print(f"search_runs (filter + order_by, first 100) over {nruns} runs: p50 {statistics.median(times):.1f} ms")

# 5
model = f"bench-model-{tag}"
post("registered-models/create", {"name": model})
for i in range(50):
    post("model-versions/create", {"name": model, "source": f"s3://models/bench/{i}"})
for alias, v in [("challenger", 50), ("candidate", 49), ("shadow", 48), ("previous", 47), ("baseline", 1)]:
    post("registered-models/alias", {"name": model, "alias": alias, "version": str(v)})
lat = []
for _ in range(1000):
    t = time.perf_counter()
    r = get("registered-models/alias", {"name": model, "alias": "challenger"})
    lat.append((time.perf_counter() - t) * 1e3)
    assert r["model_version"]["version"] == "50"
lat.sort()
print(f"alias lookup (50 versions, 5 aliases), 1 client, 1000 calls: p50 {statistics.median(lat):.2f} ms, p99 {lat[int(0.99 * (len(lat) - 1))]:.2f} ms")
