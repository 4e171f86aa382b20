//! Validation metrics for binary classifiers and regressors, with the conventions pinned down
//! in `shared/reference/fairness-validation.md` §3 so that the numbers agree with
//! scikit-learn 1.9 (checked on committed fixtures):
//!
//! * A prediction is positive when `score >= threshold` (inclusive; stated in every report).
//! * Rates with a zero denominator are **undefined** (`None`), never a silent 0.
//! * ROC AUC = P(s+ > s−) + ½·P(s+ = s−), by midranks in O(n log n); `None` with one class.
//! * Average precision is scikit-learn's step sum over distinct thresholds (no interpolation).
//! * Log loss clips scores to [ε, 1 − ε] with ε = `f64::EPSILON`, as scikit-learn does for
//!   float64 input.
//! * Calibration bins are scikit-learn's `calibration_curve(strategy="uniform")`: edges
//!   `i × 0.1` (so 0.30000000000000004, …), a score falls in the bin numbered by how many
//!   inner edges are strictly below it (right-closed bins); ECE weights each bin's gap by its
//!   count, MCE is the largest gap, empty bins contribute nothing.
//! * DeLong's test for two correlated AUCs (DeLong, DeLong & Clarke-Pearson 1988) with the
//!   midrank placements of Sun & Xu (2014), as R's pROC computes it.
//! * Bootstrap intervals use the Poisson bootstrap: in each resample every row appears
//!   Poisson(1) times, drawn by inversion from half of one SplitMix64 output
//!   ([`poisson_pair`]; exactly specified integer arithmetic, so reproducible on any platform; counter-based,
//!   so the overall metrics and every subgroup's see the same resample). Resamples where a
//!   metric is undefined (e.g. one class) are skipped and counted; intervals are type-7
//!   (linear) percentiles.

/// Counts at a threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Confusion {
    /// True positives.
    pub tp: u64,
    /// False positives.
    pub fp: u64,
    /// True negatives.
    pub tn: u64,
    /// False negatives.
    pub fn_: u64,
}

fn ratio(num: u64, den: u64) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

impl Confusion {
    /// Counts `score >= threshold` as a positive prediction.
    pub fn at(labels: &[bool], scores: &[f64], threshold: f64) -> Confusion {
        let mut c = Confusion::default();
        for (&y, &s) in labels.iter().zip(scores) {
            match (y, s >= threshold) {
                (true, true) => c.tp += 1,
                (false, true) => c.fp += 1,
                (false, false) => c.tn += 1,
                (true, false) => c.fn_ += 1,
            }
        }
        c
    }

    /// Rows.
    pub fn n(&self) -> u64 {
        self.tp + self.fp + self.tn + self.fn_
    }
    /// (TP + TN) / n.
    pub fn accuracy(&self) -> Option<f64> {
        ratio(self.tp + self.tn, self.n())
    }
    /// PPV = TP / (TP + FP).
    pub fn precision(&self) -> Option<f64> {
        ratio(self.tp, self.tp + self.fp)
    }
    /// Sensitivity, TPR = TP / (TP + FN).
    pub fn recall(&self) -> Option<f64> {
        ratio(self.tp, self.tp + self.fn_)
    }
    /// TNR = TN / (TN + FP).
    pub fn specificity(&self) -> Option<f64> {
        ratio(self.tn, self.tn + self.fp)
    }
    /// FPR = FP / (FP + TN).
    pub fn fpr(&self) -> Option<f64> {
        ratio(self.fp, self.fp + self.tn)
    }
    /// NPV = TN / (TN + FN).
    pub fn npv(&self) -> Option<f64> {
        ratio(self.tn, self.tn + self.fn_)
    }
    /// F1 = 2TP / (2TP + FP + FN).
    pub fn f1(&self) -> Option<f64> {
        ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn_)
    }
    /// Selection rate = (TP + FP) / n.
    pub fn selection_rate(&self) -> Option<f64> {
        ratio(self.tp + self.fp, self.n())
    }
    /// Prevalence = (TP + FN) / n.
    pub fn prevalence(&self) -> Option<f64> {
        ratio(self.tp + self.fn_, self.n())
    }
}

/// Midranks (1-based; ties get the mean of their ranks) of `x`.
fn midranks(x: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..x.len()).collect();
    idx.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut r = vec![0.0; x.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && x[idx[j + 1]] == x[idx[i]] {
            j += 1;
        }
        let mid = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            r[k] = mid;
        }
        i = j + 1;
    }
    r
}

/// DeLong placements: for each positive, the share of negatives it outranks (ties ½); for
/// each negative, the share of positives it is outranked by (ties ½).
fn placements(labels: &[bool], scores: &[f64]) -> Option<(Vec<f64>, Vec<f64>)> {
    let pos: Vec<f64> = labels.iter().zip(scores).filter(|(y, _)| **y).map(|(_, s)| *s).collect();
    let neg: Vec<f64> = labels.iter().zip(scores).filter(|(y, _)| !**y).map(|(_, s)| *s).collect();
    let (m, n) = (pos.len(), neg.len());
    if m == 0 || n == 0 {
        return None;
    }
    let all: Vec<f64> = pos.iter().chain(&neg).copied().collect();
    let tz = midranks(&all);
    let tx = midranks(&pos);
    let ty = midranks(&neg);
    let v10 = (0..m).map(|i| (tz[i] - tx[i]) / n as f64).collect();
    let v01 = (0..n).map(|j| 1.0 - (tz[m + j] - ty[j]) / m as f64).collect();
    Some((v10, v01))
}

fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len() as f64
}

/// ROC AUC with half credit for ties; `None` when one class is absent.
pub fn roc_auc(labels: &[bool], scores: &[f64]) -> Option<f64> {
    placements(labels, scores).map(|(v10, _)| mean(&v10))
}

/// Average precision as scikit-learn computes it: Σ (R_k − R_{k−1}) · P_k over distinct
/// score thresholds, highest first; `None` without positives.
pub fn average_precision(labels: &[bool], scores: &[f64]) -> Option<f64> {
    let total_pos = labels.iter().filter(|y| **y).count();
    if total_pos == 0 {
        return None;
    }
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut prev_recall = 0.0;
    let mut ap = 0.0;
    let mut i = 0;
    while i < idx.len() {
        let s = scores[idx[i]];
        while i < idx.len() && scores[idx[i]] == s {
            if labels[idx[i]] {
                tp += 1;
            } else {
                fp += 1;
            }
            i += 1;
        }
        let recall = tp as f64 / total_pos as f64;
        let precision = tp as f64 / (tp + fp) as f64;
        ap += (recall - prev_recall) * precision;
        prev_recall = recall;
    }
    Some(ap)
}

/// Mean squared difference between score and label.
pub fn brier(labels: &[bool], scores: &[f64]) -> Option<f64> {
    (!labels.is_empty()).then(|| labels.iter().zip(scores).map(|(&y, &p)| (p - f64::from(u8::from(y))).powi(2)).sum::<f64>() / labels.len() as f64)
}

/// Mean negative log-likelihood with scores clipped to [ε, 1 − ε], ε = `f64::EPSILON`.
pub fn log_loss(labels: &[bool], scores: &[f64]) -> Option<f64> {
    if labels.is_empty() {
        return None;
    }
    let eps = f64::EPSILON;
    let total: f64 = labels
        .iter()
        .zip(scores)
        .map(|(&y, &p)| {
            let p = p.clamp(eps, 1.0 - eps);
            if y { -p.ln() } else { -(1.0 - p).ln() }
        })
        .sum();
    Some(total / labels.len() as f64)
}

/// One bin of the calibration table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CalibrationBin {
    /// Bin number, 0-based.
    pub bin: usize,
    /// Rows in it.
    pub count: u64,
    /// Mean score.
    pub mean_score: f64,
    /// Observed positive rate.
    pub observed: f64,
}

/// The calibration table (non-empty bins only), ECE and MCE over `bins` equal-width bins.
pub fn calibration(labels: &[bool], scores: &[f64], bins: usize) -> Option<(Vec<CalibrationBin>, f64, f64)> {
    if labels.is_empty() || bins == 0 {
        return None;
    }
    // numpy.linspace(0, 1, bins + 1): i × step, the last edge exactly 1.
    let step = 1.0 / bins as f64;
    let inner: Vec<f64> = (1..bins).map(|i| i as f64 * step).collect();
    let mut count = vec![0u64; bins];
    let mut sum_s = vec![0.0; bins];
    let mut sum_y = vec![0.0; bins];
    for (&y, &p) in labels.iter().zip(scores) {
        // searchsorted(inner, p, side="left"): inner edges strictly below p.
        let b = inner.partition_point(|&e| e < p);
        count[b] += 1;
        sum_s[b] += p;
        sum_y[b] += f64::from(u8::from(y));
    }
    let n = labels.len() as f64;
    let mut table = Vec::new();
    let (mut ece, mut mce) = (0.0, 0.0f64);
    for b in 0..bins {
        if count[b] == 0 {
            continue;
        }
        let c = count[b] as f64;
        let (ms, obs) = (sum_s[b] / c, sum_y[b] / c);
        let gap = (obs - ms).abs();
        ece += c / n * gap;
        mce = mce.max(gap);
        table.push(CalibrationBin { bin: b, count: count[b], mean_score: ms, observed: obs });
    }
    Some((table, ece, mce))
}

/// MAE, RMSE and R² of a regressor. R² follows scikit-learn's `force_finite`: with constant
/// truth it is 1 for a perfect fit, else 0.
pub fn regression(truth: &[f64], pred: &[f64]) -> Option<(f64, f64, f64)> {
    if truth.is_empty() {
        return None;
    }
    let n = truth.len() as f64;
    let mae = truth.iter().zip(pred).map(|(t, p)| (t - p).abs()).sum::<f64>() / n;
    let ss_res: f64 = truth.iter().zip(pred).map(|(t, p)| (t - p).powi(2)).sum();
    let rmse = (ss_res / n).sqrt();
    let m = mean(truth);
    let ss_tot: f64 = truth.iter().map(|t| (t - m).powi(2)).sum();
    let r2 = if ss_tot == 0.0 { if ss_res == 0.0 { 1.0 } else { 0.0 } } else { 1.0 - ss_res / ss_tot };
    Some((mae, rmse, r2))
}

/// Result of DeLong's test for two AUCs on the same rows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeLong {
    /// AUC of the first score column.
    pub auc_a: f64,
    /// AUC of the second.
    pub auc_b: f64,
    /// Variance of AUC a.
    pub var_a: f64,
    /// Variance of AUC b.
    pub var_b: f64,
    /// Covariance of the two AUCs.
    pub cov: f64,
    /// z = (A − B) / se; `None` when the difference has no variance.
    pub z: Option<f64>,
    /// Two-sided p-value.
    pub p: Option<f64>,
    /// 95% interval of A − B.
    pub ci: (f64, f64),
}

/// Two-sided 95% normal quantile.
pub const Z975: f64 = 1.959963984540054;

fn cov(a: &[f64], b: &[f64]) -> f64 {
    let (ma, mb) = (mean(a), mean(b));
    a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum::<f64>() / (a.len() as f64 - 1.0)
}

/// DeLong's test of AUC(a) vs AUC(b) on the same rows. `None` with fewer than two positives
/// or two negatives (the ddof-1 variances are undefined).
pub fn delong(labels: &[bool], a: &[f64], b: &[f64]) -> Option<DeLong> {
    let (pa10, pa01) = placements(labels, a)?;
    let (pb10, pb01) = placements(labels, b)?;
    let (m, n) = (pa10.len() as f64, pa01.len() as f64);
    if m < 2.0 || n < 2.0 {
        return None;
    }
    let (auc_a, auc_b) = (mean(&pa10), mean(&pb10));
    let var_a = cov(&pa10, &pa10) / m + cov(&pa01, &pa01) / n;
    let var_b = cov(&pb10, &pb10) / m + cov(&pb01, &pb01) / n;
    let cov_ab = cov(&pa10, &pb10) / m + cov(&pa01, &pb01) / n;
    let var = var_a + var_b - 2.0 * cov_ab;
    let diff = auc_a - auc_b;
    let (z, p) = if var > 0.0 {
        let z = diff / var.sqrt();
        (Some(z), Some(crate::special::norm_two_sided(z)))
    } else {
        (None, None)
    };
    let se = var.max(0.0).sqrt();
    Some(DeLong { auc_a, auc_b, var_a, var_b, cov: cov_ab, z, p, ci: (diff - Z975 * se, diff + Z975 * se) })
}

/// The DeLong standard error of one AUC and its 95% interval (raw: it can pass 1).
pub fn auc_ci(labels: &[bool], scores: &[f64]) -> Option<(f64, f64, f64)> {
    let (v10, v01) = placements(labels, scores)?;
    if v10.len() < 2 || v01.len() < 2 {
        return None;
    }
    let auc = mean(&v10);
    let var = cov(&v10, &v10) / v10.len() as f64 + cov(&v01, &v01) / v01.len() as f64;
    let se = var.max(0.0).sqrt();
    Some((auc, auc - Z975 * se, auc + Z975 * se))
}

/// SplitMix64 (Steele, Lea & Flood 2014): the bootstrap's generator, exactly specified.
#[derive(Debug, Clone)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GAMMA);
        splitmix_output(self.0)
    }
}

/// Type-7 (linear interpolation) quantile of sorted values.
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    let h = (sorted.len() as f64 - 1.0) * q;
    let (lo, hi) = (h.floor() as usize, h.ceil() as usize);
    sorted[lo] + (h - h.floor()) * (sorted[hi] - sorted[lo])
}

/// A percentile bootstrap interval.
#[derive(Debug, Clone, PartialEq)]
pub struct BootstrapCi {
    /// Lower bound (2.5th percentile for a 95% interval).
    pub low: f64,
    /// Upper bound.
    pub high: f64,
    /// Resamples used.
    pub used: usize,
    /// Resamples skipped because the statistic was undefined on them (e.g. one class).
    pub skipped: usize,
}

/// Poisson(1) CDF thresholds: `POISSON1[j] = ⌈P(X ≤ j)·2³²⌉` for X ~ Poisson(1), j = 0..11
/// (computed to 80 digits by the fixture script, which checks this table). A uniform 32-bit
/// `u` maps to the number of thresholds it reaches, so P(w > j) = P(u ≥ POISSON1[j]): the
/// Poisson(1) law to within 2⁻³² per value (P(X > 11) ≈ 10⁻⁹ is the largest tail dropped).
pub const POISSON1: [u32; 12] = [
    0x5e2d_58d9, 0xbc5a_b1b2, 0xeb71_5e1e, 0xfb23_9798, 0xff10_25f6, 0xffd9_0f3c, 0xfffa_8b72, 0xffff_540d, 0xffff_ed20, 0xffff_fe22, 0xffff_ffd5, 0xffff_fffd,
];

const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

#[inline(always)]
fn splitmix_output(state: u64) -> u64 {
    let mut z = state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[inline(always)]
fn poisson1(u: u32) -> u32 {
    let mut w = u32::from(u >= POISSON1[0]) + u32::from(u >= POISSON1[1]) + u32::from(u >= POISSON1[2]) + u32::from(u >= POISSON1[3]);
    if u >= POISSON1[3] {
        w += POISSON1[4..].iter().map(|&t| u32::from(u >= t)).sum::<u32>();
    }
    w
}

/// The multiplicities of row `i` (0-based, in the caller's row order) of an `n`-row sample in
/// resamples `2q` and `2q + 1`: SplitMix64's output number `q·n + i + 1` from `seed`, its
/// high 32 bits for resample `2q` and its low 32 bits for `2q + 1`, each mapped through
/// [`POISSON1`]. SplitMix64 is counter-based, so any row's draw is computed directly and
/// every statistic of one resample sees the same multiplicities, whatever order it visits
/// rows in.
#[inline(always)]
pub fn poisson_pair(seed: u64, q: u64, n: u64, i: u64) -> (u32, u32) {
    let u = splitmix_output(seed.wrapping_add(q.wrapping_mul(n).wrapping_add(i).wrapping_add(1).wrapping_mul(GAMMA)));
    (poisson1((u >> 32) as u32), poisson1(u as u32))
}

/// The multiplicity of row `i` in resample `r` (see [`poisson_pair`]).
pub fn poisson_weight(seed: u64, r: u64, n: u64, i: u64) -> u32 {
    let (a, b) = poisson_pair(seed, r / 2, n, i);
    if r.is_multiple_of(2) { a } else { b }
}

/// Percentile bootstrap of `stat` over `resamples` Poisson resamples (row `i` appears
/// [`poisson_weight`]`(seed, r, n, i)` times in resample `r`); `level` is the two-sided
/// coverage (0.95). Resamples where `stat` is undefined are skipped and counted; `None` when
/// none is defined. This is the reference for [`evaluate`], which computes the same
/// intervals in one pass per resample.
pub fn bootstrap(labels: &[bool], scores: &[f64], resamples: usize, seed: u64, level: f64, stat: impl Fn(&[bool], &[f64]) -> Option<f64>) -> Option<BootstrapCi> {
    let n = labels.len();
    if n == 0 {
        return None;
    }
    let (mut ys, mut ss) = (Vec::with_capacity(2 * n), Vec::with_capacity(2 * n));
    let mut values = Vec::with_capacity(resamples);
    for r in 0..resamples {
        ys.clear();
        ss.clear();
        for i in 0..n {
            for _ in 0..poisson_weight(seed, r as u64, n as u64, i as u64) {
                ys.push(labels[i]);
                ss.push(scores[i]);
            }
        }
        if let Some(v) = stat(&ys, &ss).filter(|v| v.is_finite()) {
            values.push(v);
        }
    }
    percentile_ci(values, resamples, level)
}

fn percentile_ci(mut values: Vec<f64>, resamples: usize, level: f64) -> Option<BootstrapCi> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let alpha = (1.0 - level) / 2.0;
    Some(BootstrapCi { low: quantile_sorted(&values, alpha), high: quantile_sorted(&values, 1.0 - alpha), used: values.len(), skipped: resamples - values.len() })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn textbook_cases() {
        let y = [true, true, false, false];
        assert_eq!(roc_auc(&y, &[0.9, 0.8, 0.3, 0.1]), Some(1.0));
        assert_eq!(roc_auc(&y, &[0.5, 0.5, 0.5, 0.5]), Some(0.5));
        assert_eq!(roc_auc(&[true, true], &[0.1, 0.2]), None);
        let c = Confusion::at(&y, &[0.5, 0.4, 0.5, 0.1], 0.5);
        assert_eq!((c.tp, c.fp, c.tn, c.fn_), (1, 1, 1, 1), "score == threshold is positive");
        assert_eq!(Confusion::at(&[false], &[0.1], 0.5).recall(), None, "undefined, not 0");
        assert_eq!(log_loss(&[true], &[0.0]).unwrap(), -f64::EPSILON.ln());
        let (table, ece, mce) = calibration(&[true, false], &[0.3, 0.30000000000000004], 10).unwrap();
        // 0.3 sits in bin 2 ((0.2, 0.30000000000000004]), and so does the float edge itself.
        assert_eq!(table.iter().map(|b| (b.bin, b.count)).collect::<Vec<_>>(), vec![(2, 2)]);
        assert!((ece - 0.2).abs() < 1e-12 && (mce - 0.2).abs() < 1e-12, "{ece} {mce}");
    }

    #[test]
    fn splitmix_matches_its_reference_sequence() {
        // Reference values of SplitMix64 seeded with 1234567 (Vigna's splitmix64.c).
        let mut r = SplitMix64(1234567);
        assert_eq!([r.next_u64(), r.next_u64(), r.next_u64()], [6457827717110365317, 3203168211198807973, 9817491932198370423]);
    }

    #[test]
    fn delong_of_a_column_with_itself_has_no_variance() {
        let y = [true, false, true, false, true, false];
        let s = [0.9, 0.2, 0.7, 0.4, 0.6, 0.65];
        let d = delong(&y, &s, &s).unwrap();
        assert_eq!((d.auc_a, d.z), (d.auc_b, None));
        assert!(delong(&[true, false, false], &[0.1, 0.2, 0.3], &[0.3, 0.2, 0.1]).is_none(), "one positive");
    }
}

/// The metrics [`evaluate`] reports, in order.
pub const METRICS: &[&str] = &["accuracy", "precision", "recall", "specificity", "npv", "f1", "roc_auc", "average_precision", "brier", "log_loss", "ece"];

/// The metrics reported for each subgroup, in order.
pub const GROUP_METRICS: &[&str] = &["prevalence", "selection_rate", "tpr", "fpr", "ppv", "npv", "roc_auc", "ece"];

/// A metric's estimate and its bootstrap interval.
#[derive(Debug, Clone, PartialEq)]
pub struct Estimate {
    /// Metric name (one of [`METRICS`] or [`GROUP_METRICS`]).
    pub metric: &'static str,
    /// Value on all rows (`None`: undefined).
    pub value: Option<f64>,
    /// Percentile interval (`None` when undefined on every resample).
    pub ci: Option<BootstrapCi>,
}

/// One subgroup's metrics with intervals (from the same resamples as the overall metrics).
#[derive(Debug, Clone, PartialEq)]
pub struct GroupEstimate {
    /// Group value (values joined with `|` for an intersection).
    pub group: String,
    /// Rows.
    pub n: u64,
    /// Positive labels.
    pub positives: u64,
    /// Negative labels.
    pub negatives: u64,
    /// [`GROUP_METRICS`], in order.
    pub estimates: Vec<Estimate>,
}

/// The overall metrics and each sensitive attribute's groups.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// [`METRICS`], in order.
    pub overall: Vec<Estimate>,
    /// Per attribute (in the order given), its groups in name order.
    pub attributes: Vec<Vec<GroupEstimate>>,
}

const BINS: usize = 10;

/// Resamples computed together in one pass over the rows: the rows stream from memory once
/// per block, and the lanes' dependency chains interleave.
const LANES: usize = 8;

const Y: u8 = 1;
const NEW_RUN: u8 = 2;
/// The row ends a run of equal scores that holds a positive (average precision steps there).
const END_POS_RUN: u8 = 4;

/// Rows in evaluation order: score descending; among equal scores negatives first, then the
/// input order. Calibration bins and the threshold split this order into contiguous ranges,
/// so a resample is one sequential pass with running totals.
struct Layout {
    /// Input index of each row.
    orig: Vec<u32>,
    /// `Y | NEW_RUN | END_POS_RUN` bits.
    flags: Vec<u8>,
    score: Vec<f64>,
    /// Each row's log loss term.
    ll: Vec<f64>,
    /// Rows `..above` have score ≥ threshold.
    above: usize,
    /// End of each non-empty calibration bin's range, in order.
    bin_ends: Vec<usize>,
    /// Segment ends: every bin's end and the threshold split, ascending.
    cuts: Vec<usize>,
}

impl Layout {
    /// The layout of all rows, or (with `keep` and the overall layout) of a subset, in the
    /// overall order.
    fn new(labels: &[bool], scores: &[f64], threshold: f64, subset: Option<(&[bool], &Layout)>) -> Layout {
        let orig: Vec<u32> = match subset {
            Some((keep, all)) => all.orig.iter().copied().filter(|&i| keep[i as usize]).collect(),
            None => {
                let mut o: Vec<u32> = (0..labels.len() as u32).collect();
                o.sort_by(|&a, &b| scores[b as usize].total_cmp(&scores[a as usize]).then(labels[a as usize].cmp(&labels[b as usize])));
                o
            }
        };
        let score: Vec<f64> = orig.iter().map(|&i| scores[i as usize]).collect();
        let y: Vec<bool> = orig.iter().map(|&i| labels[i as usize]).collect();
        let m = score.len();
        let mut flags = vec![0u8; m];
        let mut run_has_pos = false;
        for k in 0..m {
            let new_run = k == 0 || score[k] != score[k - 1];
            if new_run {
                run_has_pos = false;
            }
            run_has_pos |= y[k];
            let end = k + 1 == m || score[k] != score[k + 1];
            flags[k] = (u8::from(y[k]) * Y) | (u8::from(new_run) * NEW_RUN) | (u8::from(end && run_has_pos) * END_POS_RUN);
        }
        let step = 1.0 / BINS as f64;
        let inner: Vec<f64> = (1..BINS).map(|i| i as f64 * step).collect();
        let mut bin_ends: Vec<usize> = Vec::new();
        let mut last_bin = usize::MAX;
        for (k, &p) in score.iter().enumerate() {
            let b = inner.partition_point(|&e| e < p);
            if b != last_bin {
                bin_ends.push(k + 1);
                last_bin = b;
            } else if let Some(e) = bin_ends.last_mut() {
                *e = k + 1;
            }
        }
        let above = score.partition_point(|&x| x >= threshold);
        let mut cuts = bin_ends.clone();
        cuts.push(above);
        cuts.sort_unstable();
        cuts.dedup();
        let eps = f64::EPSILON;
        Layout {
            ll: y
                .iter()
                .zip(&score)
                .map(|(&y, &p)| {
                    let p = p.clamp(eps, 1.0 - eps);
                    if y { -p.ln() } else { -(1.0 - p).ln() }
                })
                .collect(),
            orig,
            flags,
            score,
            above,
            bin_ends,
            cuts,
        }
    }
}

/// Multiplicities as floats (a load instead of an integer conversion in the passes).
const WEIGHT_F64: [f64; 256] = {
    let mut t = [0.0; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = i as f64;
        i += 1;
    }
    t
};

/// Lane `j`'s multiplicity from a row's packed weights.
#[inline(always)]
fn lane(w: u64, j: usize) -> u64 {
    (w >> (8 * j)) & 0xff
}

/// Per-lane running totals of one pass and the bin/threshold bookkeeping between segments.
struct Lanes {
    tp: [u64; LANES],
    fp: [u64; LANES],
    /// Twice the AUC numerator (ties count 1 here), exact in integers.
    auc2: [u64; LANES],
    fp_start: [u64; LANES],
    /// Per-lane weighted score sum of the current bin's rows.
    bin_sum: [f64; LANES],
    /// (tp, fp) at the threshold.
    at: [(u64, u64); LANES],
    ece_sum: [f64; LANES],
    bin: usize,
    bin_start: [(u64, u64); LANES],
}

impl Lanes {
    fn new() -> Lanes {
        Lanes { tp: [0; LANES], fp: [0; LANES], auc2: [0; LANES], fp_start: [0; LANES], bin_sum: [0.0; LANES], at: [(0, 0); LANES], ece_sum: [0.0; LANES], bin: 0, bin_start: [(0, 0); LANES] }
    }

    /// One row's ranking terms. Negatives come first among ties: a negative counts the
    /// positives strictly above it (twice, for half units), a positive the tied negatives
    /// before it.
    #[inline(always)]
    fn row(&mut self, flags: u8, w: u64, score: f64) {
        if flags & NEW_RUN != 0 {
            self.fp_start = self.fp;
        }
        // Branch-free on the label (positives and negatives alternate unpredictably).
        let pos = 0u64.wrapping_sub(u64::from(flags & Y));
        for j in 0..LANES {
            let wk = lane(w, j);
            self.auc2[j] += wk * (((self.fp[j] - self.fp_start[j]) & pos) | ((2 * self.tp[j]) & !pos));
            self.tp[j] += wk & pos;
            self.fp[j] += wk & !pos;
        }
        for j in 0..LANES {
            self.bin_sum[j] += WEIGHT_F64[lane(w, j) as usize] * score;
        }
    }

    /// At a segment end: the threshold's counts, and a finished bin's calibration gap
    /// (count/n × |observed − mean score| = |positives − Σ w·score| / n).
    fn cut(&mut self, l: &Layout, end: usize) {
        if end == l.above {
            for j in 0..LANES {
                self.at[j] = (self.tp[j], self.fp[j]);
            }
        }
        if self.bin < l.bin_ends.len() && end == l.bin_ends[self.bin] {
            for j in 0..LANES {
                let (n0, p0) = self.bin_start[j];
                if self.tp[j] + self.fp[j] > n0 {
                    self.ece_sum[j] += ((self.tp[j] - p0) as f64 - self.bin_sum[j]).abs();
                }
                self.bin_start[j] = (self.tp[j] + self.fp[j], self.tp[j]);
                self.bin_sum[j] = 0.0;
            }
            self.bin += 1;
        }
    }

    fn confusion(&self, j: usize) -> Confusion {
        let (a, b) = self.at[j];
        Confusion { tp: a, fp: b, fn_: self.tp[j] - a, tn: self.fp[j] - b }
    }

    fn auc(&self, j: usize) -> Option<f64> {
        (self.tp[j] > 0 && self.fp[j] > 0).then(|| self.auc2[j] as f64 / (2.0 * self.tp[j] as f64 * self.fp[j] as f64))
    }

    fn ece(&self, j: usize) -> Option<f64> {
        let n = self.tp[j] + self.fp[j];
        (n > 0).then(|| self.ece_sum[j] / n as f64)
    }
}

/// The overall metrics of [`METRICS`] for `LANES` resamples at once; `w[k]` packs the
/// multiplicities of layout row `k`, one byte per lane.
fn overall_pass(l: &Layout, w: &[u64]) -> [[Option<f64>; 11]; LANES] {
    let mut s = Lanes::new();
    let mut pw_run = [0u64; LANES];
    let (mut ap, mut sq, mut ll) = ([0.0f64; LANES], [0.0f64; LANES], [0.0f64; LANES]);
    let n = l.flags.len();
    let (flags, w, score, lll) = (&l.flags[..n], &w[..n], &l.score[..n], &l.ll[..n]);
    if l.above == 0 {
        s.cut(l, 0);
    }
    let mut start = 0;
    for &end in &l.cuts {
        for k in start..end {
            let (f, wk, p) = (flags[k], w[k], score[k]);
            if f & NEW_RUN != 0 {
                pw_run = [0; LANES];
            }
            s.row(f, wk, p);
            let yk = f64::from(f & Y);
            let sq_k = (p - yk) * (p - yk);
            let ll_k = lll[k];
            for j in 0..LANES {
                let wf = WEIGHT_F64[lane(wk, j) as usize];
                sq[j] += wf * sq_k;
                ll[j] += wf * ll_k;
            }
            if f & Y != 0 {
                for (j, pw) in pw_run.iter_mut().enumerate() {
                    *pw += lane(wk, j);
                }
            }
            // scikit-learn's step sum: recall steps at the end of each run holding positives.
            if f & END_POS_RUN != 0 {
                for j in 0..LANES {
                    ap[j] += pw_run[j] as f64 * (s.tp[j] as f64 / (s.tp[j] + s.fp[j]).max(1) as f64);
                }
            }
        }
        start = end;
        s.cut(l, end);
    }
    std::array::from_fn(|j| {
        let c = s.confusion(j);
        let n = s.tp[j] + s.fp[j];
        [
            c.accuracy(),
            c.precision(),
            c.recall(),
            c.specificity(),
            c.npv(),
            c.f1(),
            s.auc(j),
            (s.tp[j] > 0).then(|| ap[j] / s.tp[j] as f64),
            (n > 0).then(|| sq[j] / n as f64),
            (n > 0).then(|| ll[j] / n as f64),
            s.ece(j),
        ]
    })
}

/// One subgroup's [`GROUP_METRICS`] for `LANES` resamples; `gpos[k]` is the group's row `k`
/// in the overall layout, whose packed multiplicities `w` holds.
fn group_pass(l: &Layout, gpos: &[u32], w: &[u64]) -> [[Option<f64>; 8]; LANES] {
    let mut s = Lanes::new();
    let n = l.flags.len();
    let (flags, gpos, score) = (&l.flags[..n], &gpos[..n], &l.score[..n]);
    if l.above == 0 {
        s.cut(l, 0);
    }
    let mut start = 0;
    for &end in &l.cuts {
        for k in start..end {
            s.row(flags[k], w[gpos[k] as usize], score[k]);
        }
        start = end;
        s.cut(l, end);
    }
    std::array::from_fn(|j| {
        let c = s.confusion(j);
        [c.prevalence(), c.selection_rate(), c.recall(), c.fpr(), c.precision(), c.npv(), s.auc(j), s.ece(j)]
    })
}

struct Group {
    name: String,
    layout: Layout,
    gpos: Vec<u32>,
    positives: u64,
}

/// Splits `units` of work between threads (at most 8), runs `work` on each thread's range, and
/// concatenates the per-slot samples in thread order. A panicking worker panics the caller.
fn in_parallel(units: usize, slots: usize, work: impl Fn(std::ops::Range<usize>) -> Vec<Vec<f64>> + Sync) -> Vec<Vec<f64>> {
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get()).clamp(1, 8).min(units.max(1));
    let per = units.div_ceil(threads);
    let work = &work;
    let parts: Vec<Vec<Vec<f64>>> = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..threads).map(|t| sc.spawn(move || work(t * per..((t + 1) * per).min(units)))).collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
    });
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); slots];
    for part in parts {
        for (k, v) in part.into_iter().enumerate() {
            samples[k].extend(v);
        }
    }
    samples
}

/// Every metric of [`METRICS`] at the threshold with a percentile bootstrap interval from
/// `resamples` Poisson resamples (see [`bootstrap`], whose intervals these equal).
pub fn evaluate(labels: &[bool], scores: &[f64], threshold: f64, resamples: usize, seed: u64, level: f64) -> Vec<Estimate> {
    evaluate_groups(labels, scores, threshold, &[], resamples, seed, level).overall
}

/// [`evaluate`] plus, for each sensitive attribute (one value per row), every group's
/// [`GROUP_METRICS`] with intervals from the same resamples. Rows are sorted once; then each
/// block of eight resamples is one sequential pass over the rows plus one per attribute. The
/// multiplicities come from the counter-based generator, so threads split the blocks freely
/// and the result does not depend on the number of threads.
pub fn evaluate_groups(labels: &[bool], scores: &[f64], threshold: f64, attributes: &[&[String]], resamples: usize, seed: u64, level: f64) -> Evaluation {
    let n = labels.len();
    if scores.len() != n || attributes.iter().any(|a| a.len() != n) || u32::try_from(n).is_err() {
        // Callers check their input; mismatched columns evaluate to nothing rather than panic.
        let none = |m: &'static str| Estimate { metric: m, value: None, ci: None };
        return Evaluation { overall: METRICS.iter().map(|m| none(m)).collect(), attributes: Vec::new() };
    }
    // -0.0 and 0.0 are one score: normalise so that sorting and tie detection agree.
    let normalised: Vec<f64> = scores.iter().map(|s| s + 0.0).collect();
    let scores = &normalised[..];
    let all = Layout::new(labels, scores, threshold, None);
    let mut pos_of = vec![0u32; n];
    for (k, &i) in all.orig.iter().enumerate() {
        pos_of[i as usize] = k as u32;
    }
    let groups: Vec<Vec<Group>> = attributes
        .iter()
        .map(|values| {
            let mut names: Vec<&String> = values.iter().collect();
            names.sort();
            names.dedup();
            names
                .into_iter()
                .map(|g| {
                    let keep: Vec<bool> = values.iter().map(|v| v == g).collect();
                    let layout = Layout::new(labels, scores, threshold, Some((&keep, &all)));
                    let gpos = layout.orig.iter().map(|&i| pos_of[i as usize]).collect();
                    let positives = layout.flags.iter().filter(|f| *f & Y != 0).count() as u64;
                    Group { name: g.clone(), layout, gpos, positives }
                })
                .collect()
        })
        .collect();
    // Point estimates: every lane with multiplicity 1; lane 0 is read.
    let ones = vec![0x0101_0101_0101_0101u64; n];
    let point = overall_pass(&all, &ones)[0];
    let group_points: Vec<Vec<[Option<f64>; 8]>> = groups.iter().map(|gs| gs.iter().map(|g| group_pass(&g.layout, &g.gpos, &ones)[0]).collect()).collect();

    // Slots: the overall metrics, then every group's metrics, attribute by attribute.
    let slots = METRICS.len() + groups.iter().map(|gs| gs.len() * GROUP_METRICS.len()).sum::<usize>();
    let blocks = resamples.div_ceil(LANES);
    let (all, groups_ref) = (&all, &groups);
    let samples = in_parallel(blocks, slots, |range| {
        let mut samples: Vec<Vec<f64>> = vec![Vec::with_capacity(range.len() * LANES); slots];
        let mut w = vec![0u64; n];
        for b in range {
            let r0 = b * LANES;
            let live = LANES.min(resamples - r0);
            for (wk, &i) in w.iter_mut().zip(&all.orig) {
                let mut packed = 0u64;
                for p in 0..live.div_ceil(2) {
                    // At most 12 (the table's length): fits a byte. A lane past the
                    // last resample is computed and never read.
                    let (a, b) = poisson_pair(seed, (r0 / 2 + p) as u64, n as u64, u64::from(i));
                    packed |= (u64::from(a) | u64::from(b) << 8) << (16 * p);
                }
                *wk = packed;
            }
            let mut slot = 0;
            let mut push = |slot: usize, vals: &[Option<f64>], j: usize| {
                if j < live {
                    for (k, v) in vals.iter().enumerate() {
                        if let Some(v) = v.filter(|v| v.is_finite()) {
                            samples[slot + k].push(v);
                        }
                    }
                }
            };
            let o = overall_pass(all, &w);
            for (j, vals) in o.iter().enumerate() {
                push(slot, vals, j);
            }
            slot += METRICS.len();
            for gs in groups_ref {
                for g in gs {
                    let gv = group_pass(&g.layout, &g.gpos, &w);
                    for (j, vals) in gv.iter().enumerate() {
                        push(slot, vals, j);
                    }
                    slot += GROUP_METRICS.len();
                }
            }
        }
        samples
    });
    let mut samples = samples.into_iter();
    let mut estimate = |metric: &'static str, value: Option<f64>| Estimate { metric, value, ci: percentile_ci(samples.next().unwrap_or_default(), resamples, level) };
    let overall = METRICS.iter().zip(point).map(|(m, v)| estimate(m, v)).collect();
    let attributes = groups
        .iter()
        .zip(group_points)
        .map(|(gs, points)| {
            gs.iter()
                .zip(points)
                .map(|(g, pt)| {
                    let total = g.layout.flags.len() as u64;
                    GroupEstimate { group: g.name.clone(), n: total, positives: g.positives, negatives: total - g.positives, estimates: GROUP_METRICS.iter().zip(pt).map(|(m, v)| estimate(m, v)).collect() }
                })
                .collect()
        })
        .collect();
    Evaluation { overall, attributes }
}

/// The ROC curve: (FPR, TPR) at every distinct score threshold, highest first, from (0, 0) to
/// (1, 1); thinned to at most `max_points` (evenly by index, both ends kept) for plotting.
/// `None` with one class.
pub fn roc_curve(labels: &[bool], scores: &[f64], max_points: usize) -> Option<Vec<(f64, f64)>> {
    let pos = labels.iter().filter(|y| **y).count();
    let neg = labels.len() - pos;
    if pos == 0 || neg == 0 {
        return None;
    }
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let mut pts = vec![(0.0, 0.0)];
    let (mut tp, mut fp) = (0usize, 0usize);
    for (k, &i) in idx.iter().enumerate() {
        if labels[i] {
            tp += 1;
        } else {
            fp += 1;
        }
        if k + 1 == idx.len() || scores[idx[k + 1]] != scores[i] {
            pts.push((fp as f64 / neg as f64, tp as f64 / pos as f64));
        }
    }
    let max_points = max_points.max(2);
    if pts.len() > max_points {
        let last = pts.len() - 1;
        pts = (0..max_points).map(|j| pts[j * last / (max_points - 1)]).collect();
    }
    Some(pts)
}

/// The metrics [`evaluate_regression`] reports, in order.
pub const REGRESSION_METRICS: &[&str] = &["mae", "rmse", "r2"];

/// The metrics reported for each subgroup of a regressor, in order (`mean_error` is the mean
/// of prediction − truth: the group's bias).
pub const REGRESSION_GROUP_METRICS: &[&str] = &["mae", "rmse", "mean_error"];

/// A regressor's evaluation: the overall metrics, each attribute's groups, and the champion
/// comparison, all with intervals from the same Poisson resamples.
#[derive(Debug, Clone, PartialEq)]
pub struct RegressionEvaluation {
    /// [`REGRESSION_METRICS`], in order.
    pub overall: Vec<Estimate>,
    /// Per attribute, its groups in name order ([`REGRESSION_GROUP_METRICS`];
    /// `positives`/`negatives` are 0).
    pub attributes: Vec<Vec<GroupEstimate>>,
    /// The champion's MAE on the same rows, and (new MAE ÷ champion MAE − 1) with its interval
    /// (`metric` is `relative_mae_increase`).
    pub champion: Option<(Estimate, Estimate)>,
}

/// Weighted sums of one resample over a set of rows.
#[derive(Default, Clone, Copy)]
struct RegSums {
    w: f64,
    abs: f64,
    sq: f64,
    err: f64,
    y: f64,
    yy: f64,
    champion_abs: f64,
}

impl RegSums {
    fn add(&mut self, w: f64, y: f64, e: f64, ce: f64) {
        self.w += w;
        self.abs += w * e.abs();
        self.sq += w * e * e;
        self.err += w * e;
        self.y += w * y;
        self.yy += w * y * y;
        self.champion_abs += w * ce.abs();
    }

    fn overall(&self) -> [Option<f64>; 3] {
        if self.w <= 0.0 {
            return [None; 3];
        }
        // `y` is centred on the full sample's mean, so Σy² − (Σy)²/Σw loses little.
        let ss_tot = (self.yy - self.y * self.y / self.w).max(0.0);
        let r2 = if ss_tot == 0.0 { if self.sq == 0.0 { 1.0 } else { 0.0 } } else { 1.0 - self.sq / ss_tot };
        [Some(self.abs / self.w), Some((self.sq / self.w).sqrt()), Some(r2)]
    }

    fn group(&self) -> [Option<f64>; 3] {
        if self.w <= 0.0 {
            return [None; 3];
        }
        [Some(self.abs / self.w), Some((self.sq / self.w).sqrt()), Some(self.err / self.w)]
    }

    fn relative_increase(&self) -> Option<f64> {
        (self.w > 0.0 && self.champion_abs > 0.0).then(|| self.abs / self.champion_abs - 1.0)
    }
}

/// MAE, RMSE and R² of a regressor with percentile intervals from `resamples` Poisson
/// resamples (the multiplicities of [`poisson_weight`]); each group's MAE, RMSE and mean error;
/// and, with the champion's predictions on the same rows, the relative MAE increase. Point
/// values are [`regression`]'s (scikit-learn's definitions, R² with `force_finite`).
pub fn evaluate_regression(truth: &[f64], pred: &[f64], champion: Option<&[f64]>, attributes: &[&[String]], resamples: usize, seed: u64, level: f64) -> RegressionEvaluation {
    let n = truth.len();
    let mean = if n > 0 { truth.iter().sum::<f64>() / n as f64 } else { 0.0 };
    let centred: Vec<f64> = truth.iter().map(|y| y - mean).collect();
    let errors: Vec<f64> = pred.iter().zip(truth).map(|(p, y)| p - y).collect();
    let champion_errors: Vec<f64> = match champion {
        Some(c) => c.iter().zip(truth).map(|(p, y)| p - y).collect(),
        None => vec![0.0; n],
    };
    // Group index of each row, per attribute.
    let groups: Vec<(Vec<String>, Vec<u32>)> = attributes
        .iter()
        .map(|values| {
            let mut names: Vec<String> = values.to_vec();
            names.sort();
            names.dedup();
            let idx = values.iter().map(|v| names.binary_search(v).map_or(0, |i| i as u32)).collect();
            (names, idx)
        })
        .collect();
    let sums = |weight: &dyn Fn(usize) -> f64| -> (RegSums, Vec<Vec<RegSums>>) {
        let mut all = RegSums::default();
        let mut per: Vec<Vec<RegSums>> = groups.iter().map(|(names, _)| vec![RegSums::default(); names.len()]).collect();
        for i in 0..n {
            let w = weight(i);
            if w == 0.0 {
                continue;
            }
            all.add(w, centred[i], errors[i], champion_errors[i]);
            for (a, (_, idx)) in groups.iter().enumerate() {
                per[a][idx[i] as usize].add(w, centred[i], errors[i], champion_errors[i]);
            }
        }
        (all, per)
    };
    let (point_all, point_groups) = sums(&|_| 1.0);
    let point_overall = regression(truth, pred).map_or([None; 3], |(mae, rmse, r2)| [Some(mae), Some(rmse), Some(r2)]);
    // Samples: overall metrics, the relative increase, then each group's metrics.
    let slots = REGRESSION_METRICS.len() + 1 + groups.iter().map(|(names, _)| names.len() * REGRESSION_GROUP_METRICS.len()).sum::<usize>();
    let sums = &sums;
    let samples = in_parallel(resamples, slots, |range| {
        let mut samples = vec![Vec::new(); slots];
        for r in range {
            let (all, per) = sums(&|i| f64::from(poisson_weight(seed, r as u64, n as u64, i as u64)));
            let mut slot = 0;
            let mut push = |v: Option<f64>| {
                if let Some(v) = v.filter(|v| v.is_finite()) {
                    samples[slot].push(v);
                }
                slot += 1;
            };
            all.overall().into_iter().for_each(&mut push);
            push(champion.and(all.relative_increase()));
            for gs in &per {
                for g in gs {
                    g.group().into_iter().for_each(&mut push);
                }
            }
        }
        samples
    });
    let mut samples = samples.into_iter();
    let mut estimate = |metric: &'static str, value: Option<f64>| Estimate { metric, value, ci: percentile_ci(samples.next().unwrap_or_default(), resamples, level) };
    let overall = REGRESSION_METRICS.iter().zip(point_overall).map(|(m, v)| estimate(m, v)).collect();
    let increase = estimate("relative_mae_increase", champion.and(point_all.relative_increase()));
    let attributes = groups
        .iter()
        .zip(point_groups)
        .map(|((names, idx), pts)| {
            names
                .iter()
                .enumerate()
                .zip(pts)
                .map(|((gi, name), pt)| {
                    let size = idx.iter().filter(|&&x| x as usize == gi).count() as u64;
                    GroupEstimate { group: name.clone(), n: size, positives: 0, negatives: 0, estimates: REGRESSION_GROUP_METRICS.iter().zip(pt.group()).map(|(m, v)| estimate(m, v)).collect() }
                })
                .collect()
        })
        .collect();
    let champion = champion.map(|_| {
        let mae = point_all.champion_abs / point_all.w.max(1.0);
        (Estimate { metric: "champion_mae", value: Some(mae), ci: None }, increase)
    });
    RegressionEvaluation { overall, attributes, champion }
}
