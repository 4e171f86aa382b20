"""Evidently, NannyML and whylogs on the same Parquet files as `bench/drift_peers.py` and Vigil's
`cargo bench -p vigil-cli --bench drift` (run drift_peers.py first to create them).

    pip install evidently==0.7.23 nannyml==0.13.1 whylogs==1.6.4
    python3 bench/drift_evidently_nannyml.py [N] [DIR] [both|evidently|nannyml|whylogs]

"both" runs Evidently and NannyML; run whylogs on its own (each figure is CPU time and the peak
RSS of its own process).
"""
import os
import resource
import sys
import time

import pandas as pd

n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
out = sys.argv[2] if len(sys.argv) > 2 else "/tmp/vigil-drift-bench"
ref = pd.read_parquet(os.path.join(out, f"reference_{n}.parquet"))
cur = pd.read_parquet(os.path.join(out, f"current_{n}.parquet"))
num = [c for c in ref.columns if c.startswith("num")]
cat = [c for c in ref.columns if c.startswith("cat")]

which = sys.argv[3] if len(sys.argv) > 3 else "both"
if which in ("both", "evidently"):
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset
    t0, w0 = time.process_time(), time.perf_counter()
    dd = DataDefinition(numerical_columns=num, categorical_columns=cat)
    r = Report([DataDriftPreset()]).run(Dataset.from_pandas(cur, data_definition=dd), Dataset.from_pandas(ref, data_definition=dd))
    r.dict()
    print(f"evidently 0.7.23 DataDriftPreset: {time.process_time() - t0:.1f} s CPU, {time.perf_counter() - w0:.1f} s wall, peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
if which in ("both", "nannyml"):
    import nannyml as nml
    t0, w0 = time.process_time(), time.perf_counter()
    calc = nml.UnivariateDriftCalculator(column_names=num + cat, chunk_number=10)
    calc.fit(ref)
    calc.calculate(cur).to_df()
    print(f"nannyml 0.13.1 univariate (default JS, 10 chunks): {time.process_time() - t0:.1f} s CPU, {time.perf_counter() - w0:.1f} s wall, peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
if which == "whylogs":
    os.environ.setdefault("WHYLOGS_NO_ANALYTICS", "True")
    import whylogs as why
    from whylogs.viz.drift.column_drift_algorithms import calculate_drift_scores
    t0, w0 = time.process_time(), time.perf_counter()
    ref_view = why.log(pandas=ref).view()
    cur_view = why.log(pandas=cur).view()
    scores = calculate_drift_scores(target_view=cur_view, reference_view=ref_view, with_thresholds=True)
    drifted = sum(1 for v in scores.values() if v and v.get("drift_category") in ("DRIFT", "POSSIBLE_DRIFT"))
    print(f"whylogs 1.6.4 profile both + drift scores: {time.process_time() - t0:.1f} s CPU, {time.perf_counter() - w0:.1f} s wall, peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB; {drifted} of {len(scores)} columns flagged")
