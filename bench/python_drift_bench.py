"""Drift detection from Python on 25 numeric columns x 1,000,000 rows (numpy float64), beside
the Rust CLI on the same data (Parquet files) and beside scipy and Evidently on the same
arrays.

    cargo build --release -p vigil-cli && pip install ./python pyarrow evidently scipy
    python3 bench/python_drift_bench.py [ROWS]

Every path stores the baseline and the samples and runs one check: the Python package
embedded (`DriftDetector.set_baseline`, `add_samples`, `detect_drift`), and the CLI
(`vigil drift baseline|add|check`) on a second version of the same store. scipy computes
`ks_2samp` and a PSI per column (no storage, no audit); Evidently 0.7's DataDriftPreset.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROWS = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
COLS = 25
ROOT = Path(__file__).resolve().parents[1]
VIGIL = ROOT / "target" / "release" / "vigil"


def data():
    rng = np.random.default_rng(2026)
    base = {f"f{i:02d}": rng.normal(0, 1, ROWS) for i in range(COLS)}
    cur = {f"f{i:02d}": rng.normal(0.05 * (i % 3), 1, ROWS) for i in range(COLS)}
    return base, cur


def timed(label, fn):
    t = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - t
    print(f"  {label:<28} {dt:8.2f} s")
    return out, dt


def main():
    import vigil
    from vigil._backend import Embedded

    base, cur = data()
    tmp = Path(tempfile.mkdtemp())
    creds = tmp / "creds.json"
    creds.write_text(json.dumps({"admin": "admin-password-1", "dana": "dana-password-1"}))
    os.environ.update({"VIGIL_CREDENTIALS": str(creds), "VIGIL_USER": "dana"})
    store = tmp / "store"
    b = Embedded(str(store))
    b.init_admin("admin", "Ada Admin", "admin-password-1")
    b.add_user("admin", "dana", "Dana Scientist", "data_scientist", "dana-password-1")
    del b
    registry = vigil.ModelRegistry(str(store))
    py_v = registry.register_model("drift-bench", "1.0.0", vigil.ModelType.CLASSIFICATION, "s3://m/1")
    cli_v = registry.register_model("drift-bench", "2.0.0", vigil.ModelType.CLASSIFICATION, "s3://m/2")

    print(f"{COLS} columns x {ROWS:,} rows, float64")
    print("vigil (Python, embedded):")
    d = vigil.DriftDetector(registry=registry)
    _, a = timed("set_baseline", lambda: d.set_baseline(py_v.model_id, base))
    _, b_ = timed("add_samples", lambda: d.add_samples(py_v.model_id, cur))
    rep, c = timed("detect_drift", lambda: d.detect_drift(py_v.model_id))
    py_total = a + b_ + c
    print(f"  {'total':<28} {py_total:8.2f} s   status {rep.status}")

    import pyarrow as pa
    import pyarrow.parquet as pq
    pq.write_table(pa.table(base), tmp / "base.parquet")
    pq.write_table(pa.table(cur), tmp / "cur.parquet")
    env = {**os.environ, "VIGIL_PASSWORD": "dana-password-1"}
    run = lambda *args: subprocess.run([str(VIGIL), "--data-dir", str(store), "--user", "dana", *args], check=True, capture_output=True, env=env)  # noqa: E731
    ref = "drift-bench@2.0.0"
    print("vigil CLI (Rust, Parquet files):")
    _, a = timed("drift baseline", lambda: run("drift", "baseline", ref, "--data", str(tmp / "base.parquet")))
    _, b_ = timed("drift add", lambda: run("drift", "add", ref, "--data", str(tmp / "cur.parquet")))
    out, c = timed("drift check", lambda: run("--json", "drift", "check", ref))
    cli_total = a + b_ + c
    cli = json.loads(out.stdout)
    print(f"  {'total':<28} {cli_total:8.2f} s   status {cli['status']}")
    same = [f["statistic"] for f in rep.features] == [f["statistic"] for f in cli["features"]]
    print(f"  Python / CLI: {py_total / cli_total:.2f}x; identical statistics: {same}")
    # The check alone, best of three each (the CLI's time includes starting the process and
    # checking the password).
    py_check = min(timed("detect_drift again (Python)", lambda: d.detect_drift(py_v.model_id))[1] for _ in range(3))
    cli_check = min(timed("drift check again (CLI)", lambda: run("--json", "drift", "check", ref))[1] for _ in range(3))
    print(f"  check, best of 3: Python {py_check:.2f} s, CLI {cli_check:.2f} s ({py_check / cli_check:.2f}x)")

    # The same package against `vigil serve` on this store: columns go up as Parquet written by
    # the compiled module; the statistics run in the server.
    server = subprocess.Popen([str(VIGIL), "--data-dir", str(store), "serve", "--addr", "127.0.0.1:0"], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True, env={k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")})
    try:
        url = server.stdout.readline().strip().removeprefix("listening on ")
        remote = vigil.connect(url, user="dana")
        rv = remote.register_model("drift-bench", "3.0.0", vigil.ModelType.CLASSIFICATION, "s3://m/3")
        rd = vigil.DriftDetector(registry=remote)
        print("vigil (Python, remote: vigil serve on this machine):")
        _, a = timed("set_baseline", lambda: rd.set_baseline(rv.model_id, base))
        _, b_ = timed("add_samples", lambda: rd.add_samples(rv.model_id, cur))
        rrep, c = timed("detect_drift", lambda: rd.detect_drift(rv.model_id))
        same = [f["statistic"] for f in rrep.features] == [f["statistic"] for f in rep.features]
        print(f"  {'total':<28} {a + b_ + c:8.2f} s   identical statistics: {same}")
        remote.close()
    finally:
        server.kill()
        server.wait()

    from scipy.stats import ks_2samp
    print("scipy (ks_2samp + numpy PSI per column, nothing stored):")

    def scipy_all():
        for k in base:
            ks_2samp(base[k], cur[k])
            edges = np.quantile(base[k], np.linspace(0, 1, 11))
            edges[0], edges[-1] = -np.inf, np.inf
            p = np.histogram(base[k], edges)[0] / ROWS
            q = np.histogram(cur[k], edges)[0] / ROWS
            p, q = np.clip(p, 1e-4, None), np.clip(q, 1e-4, None)
            float(np.sum((q - p) * np.log(q / p)))

    timed("25 columns", scipy_all)
    try:
        import pandas as pd
        from evidently import Report
        from evidently.presets import DataDriftPreset
    except ImportError as e:
        print(f"Evidently not measured: {e}")
        return
    print("Evidently (DataDriftPreset):")
    ref_df, cur_df = pd.DataFrame(base), pd.DataFrame(cur)
    timed("report", lambda: Report([DataDriftPreset()]).run(cur_df, ref_df))


if __name__ == "__main__":
    main()
