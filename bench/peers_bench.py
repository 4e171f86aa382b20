"""The tools users would otherwise pick, under the gateway bench's load, on the same machine:
MLServer (V2 protocol, scikit-learn runtime, in-process inference) and `mlflow models serve`
(/invocations), each serving a 20-feature logistic regression, driven by wrk exactly as
bench/gateway_bench.py drives `vigil gateway`.

    python3 -m venv /tmp/servenv
    /tmp/servenv/bin/pip install "mlserver==1.7.1" "mlserver-sklearn==1.7.1" "mlflow==3.1.4" scikit-learn
    /tmp/servenv/bin/python bench/peers_bench.py [SECONDS]

CPU per request is the user+system time of the server's whole process tree (workers
included) over the requests wrk completed; RSS is summed over the tree at the end.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gateway_bench  # noqa: E402  (the same wrk driver)
from sklearn.linear_model import LogisticRegression

SECONDS = int(sys.argv[1]) if len(sys.argv) > 1 else 15
TICK = os.sysconf("SC_CLK_TCK")
BIN = Path(sys.executable).parent


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def tree(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_ticks(pid: int) -> int:
    total = 0
    for p in tree(pid):
        try:
            f = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])  # own and reaped children
        except OSError:
            pass
    return total


def rss_mb(pid: int) -> float:
    total = 0
    for p in tree(pid):
        try:
            m = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{p}/status").read_text())
            total += int(m.group(1)) if m else 0
        except OSError:
            pass
    return total / 1024


def wrk(url: str, body: str, conns: int, tmp: Path) -> dict:
    # The same load and parsing as the gateway bench's.
    return gateway_bench.wrk(url, "", body, "application/json", conns, tmp)


def wait(url: str, proc: subprocess.Popen) -> None:
    for _ in range(600):
        if proc.poll() is not None:
            raise SystemExit(f"the server exited ({proc.returncode})")
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except Exception:
            time.sleep(0.2)
    raise SystemExit(f"{url} never answered")


def main() -> None:
    tmp = Path(tempfile.mkdtemp())
    rng = np.random.default_rng(7)
    X = rng.normal(size=(2000, 20))
    y = (X @ rng.normal(size=20) + rng.normal(size=2000) > 0).astype(int)
    model = LogisticRegression(max_iter=1000).fit(X, y)
    r = np.random.default_rng(1)
    row = [round(float(v), 4) for v in r.normal(size=20)]
    rows = [[round(float(v), 4) for v in r.normal(size=20)] for _ in range(100)]
    cols = [f"f{i}" for i in range(20)]
    print(f"20-feature logistic regression, wrk {SECONDS} s per scenario")
    print(f"{'scenario':<44} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'CPU ms/req':>11} {'errors':>7}")

    def run(proc, name, url, body, conns):
        before = cpu_ticks(proc.pid)
        res = wrk(url, body, conns, tmp)
        cpu = (cpu_ticks(proc.pid) - before) / TICK * 1000 / max(res["requests"], 1)
        print(f"{name:<44} {res['rps']:>8.0f} {res['p50']:>8.3f} {res['p99']:>8.3f} {cpu:>11.3f} {res['errors']:>7}", flush=True)

    # MLServer, scikit-learn runtime, inference in the server process (parallel_workers=0).
    import joblib
    ms = tmp / "mlserver"
    (ms / "lr20").mkdir(parents=True)
    joblib.dump(model, ms / "lr20" / "model.joblib")
    (ms / "lr20" / "model-settings.json").write_text(json.dumps({"name": "lr20", "implementation": "mlserver_sklearn.SKLearnModel",
                                                                  "parameters": {"uri": "./model.joblib"}}))
    port = free_port()
    (ms / "settings.json").write_text(json.dumps({"http_port": port, "grpc_port": free_port(), "metrics_port": free_port(), "parallel_workers": 0}))
    proc = subprocess.Popen([str(BIN / "mlserver"), "start", str(ms)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        wait(f"{base}/v2/health/ready", proc)
        oip = lambda rs: json.dumps({"inputs": [{"name": "X", "shape": [len(rs), 20], "datatype": "FP64", "data": [v for x in rs for v in x]}]})
        run(proc, "MLServer V2, 1 row, 16 connections", f"{base}/v2/models/lr20/infer", oip([row]), 16)
        run(proc, "MLServer V2, 100 rows, 16 connections", f"{base}/v2/models/lr20/infer", oip(rows), 16)
        run(proc, "MLServer V2, 1 row, 1 connection", f"{base}/v2/models/lr20/infer", oip([row]), 1)
        print(f"MLServer resident memory: {rss_mb(proc.pid):.0f} MB")
    finally:
        proc.terminate()
        proc.wait()

    # mlflow models serve, scikit-learn flavour, its defaults (one worker).
    import mlflow.sklearn
    path = tmp / "mlflow-model"
    mlflow.sklearn.save_model(model, str(path))
    port = free_port()
    env = {**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}
    proc = subprocess.Popen([str(BIN / "mlflow"), "models", "serve", "-m", str(path), "-p", str(port), "-h", "127.0.0.1", "--env-manager", "local"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        base = f"http://127.0.0.1:{port}"
        wait(f"{base}/ping", proc)
        split = lambda rs: json.dumps({"dataframe_split": {"columns": cols, "data": rs}})
        run(proc, "mlflow models serve, 1 row, 16 connections", f"{base}/invocations", split([row]), 16)
        run(proc, "mlflow models serve, 100 rows, 16 connections", f"{base}/invocations", split(rows), 16)
        run(proc, "mlflow models serve, 1 row, 1 connection", f"{base}/invocations", split([row]), 1)
        print(f"mlflow models serve resident memory: {rss_mb(proc.pid):.0f} MB")
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
