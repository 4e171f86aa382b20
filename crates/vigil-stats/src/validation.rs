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
//! * Bootstrap intervals resample rows with a SplitMix64 generator (exactly specified, so
//!   reproducible on any platform), skip resamples with one class (and count them), and take
//!   type-7 (linear) percentiles.

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
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A row index in `0..n`: the high 64 bits of `next_u64() × n` (Lemire's multiply, no
    /// rejection; the bias is below 2⁻³² for any holdout size).
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// The generator after `k` more outputs (the state advances by a constant per output).
    pub fn skipped(&self, k: u64) -> SplitMix64 {
        SplitMix64(self.0.wrapping_add(k.wrapping_mul(0x9E37_79B9_7F4A_7C15)))
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

/// Percentile bootstrap of `stat` over `resamples` row resamples drawn with SplitMix64 from
/// `seed`; `level` is the two-sided coverage (0.95). Resamples where `stat` is undefined
/// are skipped and counted; `None` when none is defined.
pub fn bootstrap(labels: &[bool], scores: &[f64], resamples: usize, seed: u64, level: f64, stat: impl Fn(&[bool], &[f64]) -> Option<f64>) -> Option<BootstrapCi> {
    let n = labels.len();
    if n == 0 {
        return None;
    }
    let mut rng = SplitMix64(seed);
    let (mut ys, mut ss) = (vec![false; n], vec![0.0; n]);
    let mut values = Vec::with_capacity(resamples);
    let mut skipped = 0;
    for _ in 0..resamples {
        for k in 0..n {
            let i = rng.below(n);
            ys[k] = labels[i];
            ss[k] = scores[i];
        }
        match stat(&ys, &ss) {
            Some(v) if v.is_finite() => values.push(v),
            _ => skipped += 1,
        }
    }
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let alpha = (1.0 - level) / 2.0;
    Some(BootstrapCi { low: quantile_sorted(&values, alpha), high: quantile_sorted(&values, 1.0 - alpha), used: values.len(), skipped })
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

/// A metric's estimate and its bootstrap interval.
#[derive(Debug, Clone, PartialEq)]
pub struct Estimate {
    /// Metric name (one of [`METRICS`]).
    pub metric: &'static str,
    /// Value on all rows (`None`: undefined).
    pub value: Option<f64>,
    /// Percentile interval (`None` when undefined on every resample).
    pub ci: Option<BootstrapCi>,
}

/// Rows laid out in descending score order with their losses and calibration bins, so that a
/// resample is one sequential O(n) pass over multiplicities instead of a copy and a sort.
struct Prepared {
    /// Sorted position of each original row.
    pos_of: Vec<u32>,
    y: Vec<bool>,
    score: Vec<f64>,
    sq: Vec<f64>,
    ll: Vec<f64>,
    bin: Vec<u8>,
    /// Start of each run of equal scores, plus `n` at the end.
    runs: Vec<usize>,
    /// Rows `..above` have score ≥ threshold.
    above: usize,
    bins: usize,
}

impl Prepared {
    fn new(labels: &[bool], scores: &[f64], threshold: f64, bins: usize) -> Prepared {
        debug_assert!(bins <= 32, "the per-resample bin arrays hold 32 bins");
        let mut order: Vec<usize> = (0..scores.len()).collect();
        order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
        let mut pos_of = vec![0u32; order.len()];
        for (k, &i) in order.iter().enumerate() {
            pos_of[i] = k as u32;
        }
        let score: Vec<f64> = order.iter().map(|&i| scores[i]).collect();
        let y: Vec<bool> = order.iter().map(|&i| labels[i]).collect();
        let mut runs = vec![0];
        for k in 1..score.len() {
            if score[k] != score[k - 1] {
                runs.push(k);
            }
        }
        runs.push(score.len());
        let above = score.partition_point(|&x| x >= threshold);
        let eps = f64::EPSILON;
        let step = 1.0 / bins as f64;
        let inner: Vec<f64> = (1..bins).map(|i| i as f64 * step).collect();
        Prepared {
            sq: y.iter().zip(&score).map(|(&y, &p)| (p - f64::from(u8::from(y))).powi(2)).collect(),
            ll: y
                .iter()
                .zip(&score)
                .map(|(&y, &p)| {
                    let p = p.clamp(eps, 1.0 - eps);
                    if y { -p.ln() } else { -(1.0 - p).ln() }
                })
                .collect(),
            bin: score.iter().map(|&p| inner.partition_point(|&e| e < p) as u8).collect(),
            pos_of,
            y,
            score,
            runs,
            above,
            bins,
        }
    }

    /// Every metric with multiplicities `w` in sorted order (all 1 for the full sample).
    fn metrics(&self, w: &[u32], out: &mut [Option<f64>; 11]) {
        let (mut tp, mut fp) = (0u64, 0u64);
        let (mut auc_num, mut ap) = (0.0f64, 0.0f64);
        let (mut sq, mut ll) = (0.0, 0.0);
        let mut bc = [0u64; 32];
        let mut bs = [0.0f64; 32];
        let mut by = [0u64; 32];
        let mut cm = None;
        for r in 0..self.runs.len() - 1 {
            let (lo, hi) = (self.runs[r], self.runs[r + 1]);
            if cm.is_none() && lo >= self.above {
                cm = Some((tp, fp));
            }
            let (mut pw, mut nw) = (0u64, 0u64);
            // Branch-free: a third of the rows have multiplicity 0 and labels are mixed, so
            // arithmetic beats mispredicted branches.
            #[allow(clippy::needless_range_loop)] // six parallel arrays, one index
            for k in lo..hi {
                let wk = u64::from(w[k]);
                let yk = u64::from(self.y[k]);
                let wf = wk as f64;
                pw += wk * yk;
                nw += wk * (1 - yk);
                sq += wf * self.sq[k];
                ll += wf * self.ll[k];
                let b = self.bin[k] as usize;
                bc[b] += wk;
                bs[b] += wf * self.score[k];
                by[b] += wk * yk;
            }
            // This run's negatives rank below every positive above it and tie with its own.
            auc_num += nw as f64 * (tp as f64 + 0.5 * pw as f64);
            tp += pw;
            fp += nw;
            // Recall moves only where positives are: Σ ΔR·P over runs with positives.
            if pw > 0 {
                ap += pw as f64 * (tp as f64 / (tp + fp) as f64);
            }
        }
        let (pos_total, neg_total) = (tp, fp);
        let (tpa, fpa) = cm.unwrap_or((tp, fp));
        let c = Confusion { tp: tpa, fp: fpa, fn_: pos_total - tpa, tn: neg_total - fpa };
        let n = pos_total + neg_total;
        let ece = (n > 0).then(|| (0..self.bins).filter(|&b| bc[b] > 0).map(|b| bc[b] as f64 / n as f64 * (by[b] as f64 / bc[b] as f64 - bs[b] / bc[b] as f64).abs()).sum::<f64>());
        *out = [
            c.accuracy(),
            c.precision(),
            c.recall(),
            c.specificity(),
            c.npv(),
            c.f1(),
            (pos_total > 0 && neg_total > 0).then(|| auc_num / (pos_total as f64 * neg_total as f64)),
            (pos_total > 0).then(|| ap / pos_total as f64),
            (n > 0).then(|| sq / n as f64),
            (n > 0).then(|| ll / n as f64),
            ece,
        ];
    }
}

/// Every metric of [`METRICS`] at the threshold with a percentile bootstrap interval from
/// `resamples` resamples (SplitMix64 from `seed`, the same index stream as [`bootstrap`]).
/// Each resample is one O(n) pass over row multiplicities over rows sorted once; the result
/// equals recomputing each metric on the resampled rows.
pub fn evaluate(labels: &[bool], scores: &[f64], threshold: f64, resamples: usize, seed: u64, level: f64) -> Vec<Estimate> {
    let n = labels.len();
    let prep = Prepared::new(labels, scores, threshold, 10);
    let mut point = [None; 11];
    prep.metrics(&vec![1; n], &mut point);
    // Resamples are split between threads; each jumps ahead in the one SplitMix64 stream to
    // where its first resample starts, so the draws are exactly the row bootstrap's.
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get()).clamp(1, 8).min(resamples.max(1));
    let per = resamples.div_ceil(threads);
    let prep = &prep;
    let parts: Vec<Vec<Vec<f64>>> = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (from, to) = (t * per, ((t + 1) * per).min(resamples));
                sc.spawn(move || {
                    let mut rng = SplitMix64(seed).skipped((from as u64).wrapping_mul(n as u64));
                    let mut samples: Vec<Vec<f64>> = vec![Vec::with_capacity(to.saturating_sub(from)); METRICS.len()];
                    let mut w = vec![0u32; n];
                    let mut vals = [None; 11];
                    for _ in from..to {
                        w.iter_mut().for_each(|x| *x = 0);
                        // The row bootstrap's index stream, counted at each row's sorted position.
                        for _ in 0..n {
                            w[prep.pos_of[rng.below(n)] as usize] += 1;
                        }
                        prep.metrics(&w, &mut vals);
                        for (k, v) in vals.iter().enumerate() {
                            if let Some(v) = v.filter(|v| v.is_finite()) {
                                samples[k].push(v);
                            }
                        }
                    }
                    samples
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_default()).collect()
    });
    let mut samples: Vec<Vec<f64>> = vec![Vec::with_capacity(resamples); METRICS.len()];
    for part in parts {
        for (k, v) in part.into_iter().enumerate() {
            samples[k].extend(v);
        }
    }
    let alpha = (1.0 - level) / 2.0;
    METRICS
        .iter()
        .zip(point)
        .zip(samples)
        .map(|((metric, value), mut s)| {
            let ci = (!s.is_empty()).then(|| {
                s.sort_by(f64::total_cmp);
                BootstrapCi { low: quantile_sorted(&s, alpha), high: quantile_sorted(&s, 1.0 - alpha), used: s.len(), skipped: resamples - s.len() }
            });
            Estimate { metric, value, ci }
        })
        .collect()
}
