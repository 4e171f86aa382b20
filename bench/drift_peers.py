"""The drift workload of the README (and shared/reference/drift.md §5): 25 columns (20 numeric,
5 categorical), reference and current frames of N rows each, written to Parquet, then timed
with scipy + numpy (KS, decile PSI, chi-squared contingency — what the peers' users would
write by hand). Vigil is timed on the same files by `cargo bench -p vigil-cli --bench drift`.

    python3 bench/drift_peers.py [N] [DIR]     # default 1000000 rows, /tmp/vigil-drift-bench
"""
import os
import sys
import time

import numpy as np
import pandas as pd
from scipy import stats

n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
out = sys.argv[2] if len(sys.argv) > 2 else "/tmp/vigil-drift-bench"
os.makedirs(out, exist_ok=True)
ref_path, cur_path = os.path.join(out, f"reference_{n}.parquet"), os.path.join(out, f"current_{n}.parquet")

if not (os.path.exists(ref_path) and os.path.exists(cur_path)):
    rng = np.random.default_rng(20240601)
    def frame(current):
        cols = {}
        for i in range(20):
            shift = 0.1 * i if (current and i < 9) else 0.0
            x = rng.normal(shift, 1.0, n)
            if i == 18:
                x[rng.random(n) < (0.10 if current else 0.01)] = np.nan
            cols[f"num_{i:02d}"] = x
        cats = np.array(["a", "b", "c", "d", "e", "f"])
        for i in range(5):
            p = np.full(6, 1 / 6)
            if current and i < 3:
                p = np.array([0.25, 0.2, 0.15, 0.15, 0.15, 0.1])
            cols[f"cat_{i}"] = pd.Categorical(cats[rng.choice(6, n, p=p)])
        return pd.DataFrame(cols)
    frame(False).to_parquet(ref_path)
    frame(True).to_parquet(cur_path)

t0 = time.process_time(); w0 = time.perf_counter()
ref = pd.read_parquet(ref_path); cur = pd.read_parquet(cur_path)
read_cpu, read_wall = time.process_time() - t0, time.perf_counter() - w0

t0 = time.process_time(); w0 = time.perf_counter()
for c in ref.columns:
    if c.startswith("num"):
        r = ref[c].dropna().to_numpy(); k = cur[c].dropna().to_numpy()
        stats.ks_2samp(r, k)
        edges = np.unique(np.quantile(r, np.arange(1, 10) / 10))
        rs = np.bincount(np.searchsorted(edges, r, side="right"), minlength=len(edges) + 1) / len(r)
        ks = np.bincount(np.searchsorted(edges, k, side="right"), minlength=len(edges) + 1) / len(k)
        rs[rs == 0] = 1e-4; ks[ks == 0] = 1e-4
        np.sum((ks - rs) * np.log(ks / rs))
    else:
        table = pd.crosstab(np.r_[np.zeros(len(ref)), np.ones(len(cur))], np.r_[ref[c].to_numpy(), cur[c].to_numpy()])
        stats.chi2_contingency(table.to_numpy())
cpu, wall = time.process_time() - t0, time.perf_counter() - w0
print(f"scipy+numpy {np.__version__}/{stats.__name__}: read both Parquet files {read_wall:.2f} s wall; KS+PSI+chi2 on 25 columns x {n} rows: {cpu:.2f} s CPU, {wall:.2f} s wall")
