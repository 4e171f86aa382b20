"""MLflow's model registry on the same workload as `cargo bench -p vigil-cli --bench registry -- register-1`.

Registers N versions of one model through MlflowClient against an embedded SQLite store
(MLflow's default local setup, no server: the closest match to Vigil's embedded store), one
version per call, and reports versions/s. Usage:

    pip install mlflow-skinny sqlalchemy alembic
    python3 bench/mlflow_registry.py [N]
"""
import os
import sys
import tempfile
import time

import mlflow
from mlflow import MlflowClient

n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
with tempfile.TemporaryDirectory() as d:
    uri = f"sqlite:///{os.path.join(d, 'mlflow.db')}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model("bench")
    t = time.perf_counter()
    for i in range(n):
        client.create_model_version("bench", source=f"s3://models/bench/{i}", tags={"auc_roc": "0.91"})
    dt = time.perf_counter() - t
    print(f"mlflow {mlflow.__version__} embedded sqlite: {n} versions in {dt:.2f} s = {n / dt:.0f} versions/s")
