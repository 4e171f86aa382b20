"""The validation workload of `cargo run --release -p vigil-stats --example validation_bench`
with scikit-learn and fairlearn: the same 11 metrics on 100,000 rows with bootstrap intervals
(resampling rows, recomputing each metric), and each group's selection rate, TPR, FPR, PPV,
NPV, AUC and ECE over sex, race and their intersection with intervals from the same resamples
(fairlearn's MetricFrame per resample), plus the disparities.

    python3 bench/validation_sklearn_fairlearn.py [B]

B resamples are timed (default 100) and the time is scaled to 2,000 (the per-resample cost
is constant). The data follow the Rust example's recipe with numpy's generator.
"""
import sys
import time

import numpy as np
from fairlearn.metrics import MetricFrame, equalized_odds_difference, demographic_parity_difference, selection_rate, true_positive_rate, false_positive_rate
from sklearn.calibration import calibration_curve
from sklearn.metrics import (accuracy_score, average_precision_score, brier_score_loss, f1_score, log_loss, precision_score,
                             recall_score, roc_auc_score)

B = int(sys.argv[1]) if len(sys.argv) > 1 else 100
n = 100_000
rng = np.random.default_rng(42)
y = rng.random(n) < 0.3
s = np.clip(0.3 * y + 0.35 + 0.2 * rng.normal(size=n), 0, 1)
sex = rng.choice(["F", "M"], n)
race = rng.choice(["A", "B", "C", "D"], n)


def metrics(y, s):
    p = s >= 0.5
    tn = np.sum(~y & ~p)
    fp = np.sum(~y & p)
    fn = np.sum(y & ~p)
    pt, pp = calibration_curve(y, s, n_bins=10)
    counts = np.bincount(np.searchsorted(np.linspace(0, 1, 11)[1:-1], s), minlength=10)
    counts = counts[counts > 0]
    return [accuracy_score(y, p), precision_score(y, p, zero_division=np.nan), recall_score(y, p, zero_division=np.nan),
            tn / (tn + fp), tn / (tn + fn), f1_score(y, p, zero_division=np.nan), roc_auc_score(y, s), average_precision_score(y, s),
            brier_score_loss(y, s), log_loss(y, s, labels=[0, 1]), float((counts / len(s) * np.abs(pt - pp)).sum())]


def thr(f):
    return lambda yt, sc: f(yt, sc >= 0.5)


def npv(yt, p):
    tn, fn = np.sum(~yt & ~p), np.sum(yt & ~p)
    return tn / (tn + fn) if tn + fn else np.nan


def ece(yt, sc):
    ids = np.searchsorted(np.linspace(0, 1, 11)[1:-1], sc)
    return sum(np.sum(ids == b) / len(sc) * abs(yt[ids == b].mean() - sc[ids == b].mean()) for b in range(10) if np.any(ids == b))


GROUP = {"sr": thr(selection_rate), "tpr": thr(true_positive_rate), "fpr": thr(false_positive_rate),
         "ppv": thr(lambda a, b: precision_score(a, b, zero_division=np.nan)), "npv": thr(npv),
         "auc": lambda a, b: roc_auc_score(a, b) if 0 < a.sum() < len(a) else np.nan, "ece": ece}
both = np.char.add(np.char.add(sex, "|"), race)


def groups(y, s, sex, race, both):
    return [MetricFrame(metrics=GROUP, y_true=y, y_pred=s, sensitive_features=sf).by_group for sf in (sex, race, both)]


t = time.perf_counter()
point = metrics(y, s)
gpoint = groups(y, s, sex, race, both)
boot = np.empty((B, 11))
gboot = []
for b in range(B):
    idx = rng.integers(0, n, n)
    boot[b] = metrics(y[idx], s[idx])
    gboot.append(groups(y[idx], s[idx], sex[idx], race[idx], both[idx]))
lo, hi = np.percentile(boot, [2.5, 97.5], axis=0)
glo = [np.nanpercentile(np.stack([g[a].to_numpy(float) for g in gboot]), 2.5, axis=0) for a in range(3)]
t_metrics = time.perf_counter() - t
t2 = time.perf_counter()
pred = s >= 0.5
for sf in (sex, race, np.column_stack([sex, race])):
    MetricFrame(metrics={"sr": selection_rate, "tpr": true_positive_rate, "fpr": false_positive_rate}, y_true=y, y_pred=pred, sensitive_features=sf).by_group
    demographic_parity_difference(y, pred, sensitive_features=sf)
    equalized_odds_difference(y, pred, sensitive_features=sf)
t_fair = time.perf_counter() - t2
scaled = t_metrics / (B + 1) * 2001
print(f"scikit-learn + fairlearn, 100,000 rows, overall and 14 groups: {B} resamples in {t_metrics:.1f} s -> {scaled:.0f} s for 2,000; disparities {t_fair:.2f} s; AUC {point[6]:.4f} [{lo[6]:.4f}, {hi[6]:.4f}]")
