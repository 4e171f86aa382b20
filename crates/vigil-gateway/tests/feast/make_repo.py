"""Builds a Feast feature repository for the gateway's Feast test and materialises it.

Usage: python make_repo.py REPO_DIR

Writes REPO_DIR/feature_store.yaml (SQLite online store), REPO_DIR/features.py (entity
`patient` with join key `patient_id`, feature view `patient_vitals` with eight Float64
features in the reverse of the model's order, and feature service `vitals_all` over it) and REPO_DIR/data/vitals.parquet (patients P1..P20; P20 lacks `spo2`), then runs
`feast apply` and `feast materialize`. Run it with the Python of the environment Feast is
installed in (the test passes that interpreter). Values are a fixed formula, so the test can
recompute them.
"""

import os
import subprocess
import sys
from datetime import datetime, timezone

import pandas as pd

NAMES = ["lactate", "map", "glucose", "sbp", "hr", "temp", "rr", "spo2"]


def value(patient: int, j: int) -> float:
    return ((patient * 7 + j * 3) % 11) / 10.0 - 0.5


def main() -> None:
    repo = os.path.abspath(sys.argv[1])
    os.makedirs(os.path.join(repo, "data"), exist_ok=True)
    rows = []
    for p in range(1, 21):
        row = {"patient_id": f"P{p}", "event_timestamp": datetime(2026, 1, 1, tzinfo=timezone.utc)}
        for j, n in enumerate(NAMES):
            row[n] = None if (p == 20 and n == "spo2") else value(p, j)
        rows.append(row)
    pd.DataFrame(rows).to_parquet(os.path.join(repo, "data", "vitals.parquet"))
    with open(os.path.join(repo, "feature_store.yaml"), "w") as f:
        f.write(
            "project: vigil_test\n"
            "registry: data/registry.db\n"
            "provider: local\n"
            "online_store:\n  type: sqlite\n  path: data/online.db\n"
            "entity_key_serialization_version: 3\n"
        )
    with open(os.path.join(repo, "features.py"), "w") as f:
        f.write(
            "from datetime import timedelta\n"
            "from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType\n"
            "from feast.types import Float64\n"
            "patient = Entity(name='patient', join_keys=['patient_id'], value_type=ValueType.STRING)\n"
            f"source = FileSource(path={os.path.join(repo, 'data', 'vitals.parquet')!r}, timestamp_field='event_timestamp')\n"
            "patient_vitals = FeatureView(name='patient_vitals', entities=[patient], ttl=timedelta(days=36500),\n"
            # The view's features in another order than the model's (reversed); a feature
            # service over it answers in yet another (Feast 0.67: hr, lactate, map, rr, …), so
            # only an assembly by name gives the model's.
            f"    schema=[Field(name=n, dtype=Float64) for n in {NAMES[::-1]!r}], source=source, online=True)\n"
            "vitals_all = FeatureService(name='vitals_all', features=[patient_vitals])\n"
        )
    feast = os.path.join(os.path.dirname(sys.executable), "feast")
    subprocess.run([feast, "-c", repo, "apply"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run([feast, "-c", repo, "materialize", "2025-01-01T00:00:00", "2027-01-01T00:00:00"], check=True, stdout=subprocess.DEVNULL)


if __name__ == "__main__":
    main()
