//! Distribution-shift statistics for one feature: binned divergences (PSI, KL, Jensen–Shannon,
//! Hellinger) under a *named* binning convention, Wasserstein-1, the two-sample chi-squared
//! contingency test, the two-proportion z-test, and multiple-testing corrections.
//!
//! Conventions (recorded in every result by the callers):
//! - `reference_quantiles` (default): 10 bins with edges at the reference's i/10 quantiles
//!   (NumPy's default linear interpolation), duplicate edges merged, a value `x` falls in bin
//!   `#{edges ≤ x}`; for PSI and KL an empty bin's share becomes ε = 1e-4 (no renormalisation
//!   for PSI; KL renormalises like `scipy.stats.entropy`); JS and Hellinger use raw shares.
//! - `evidently`: Evidently 0.7's rule: more than 20 distinct reference values → equal-width
//!   bins over the pooled range, Sturges' count, NumPy histogram counting (last bin closed);
//!   otherwise one bin per distinct value; empty bins → m/10⁶ if the smallest non-zero share
//!   m ≤ 10⁻⁴, else 10⁻⁴.
//!
//! All numeric inputs are **sorted slices of finite values**; missing and non-finite values
//! are separated out before (see the data-quality checks of the detector).

use crate::special::{chi2_sf, norm_two_sided};

/// How numeric values are binned for PSI, KL, JS and Hellinger.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Binning {
    /// `bins` bins at reference quantiles; empty bins get `epsilon` for PSI/KL.
    ReferenceQuantiles {
        /// Number of bins before merging duplicate edges.
        bins: usize,
        /// Share given to empty bins for PSI and KL.
        epsilon: f64,
    },
    /// Evidently 0.7's binning and empty-bin rule.
    Evidently,
}

impl Default for Binning {
    fn default() -> Self {
        Binning::ReferenceQuantiles { bins: 10, epsilon: 1e-4 }
    }
}

impl Binning {
    /// A stable name for reports.
    pub fn name(&self) -> String {
        match self {
            Binning::ReferenceQuantiles { bins, epsilon } => format!("reference_quantiles(bins={bins}, epsilon={epsilon:e})"),
            Binning::Evidently => "evidently_0.7(sturges_equal_width_pooled | per_value<=20; epsilon=min_share/1e6|1e-4)".into(),
        }
    }
}

/// Bin shares of reference and current under one binning.
#[derive(Debug, Clone, PartialEq)]
pub struct Binned {
    /// Reference share per bin (raw, sums to 1).
    pub reference: Vec<f64>,
    /// Current share per bin (raw, sums to 1).
    pub current: Vec<f64>,
    /// Empty-bin rule used for PSI/KL.
    pub empty: EmptyBins,
}

/// How zero shares are replaced for PSI and KL.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum EmptyBins {
    /// Zeros become this constant.
    Constant(f64),
    /// Evidently's rule (per distribution).
    Evidently,
}

/// NumPy's `quantile(a, q)` with the default linear method, on a sorted slice.
pub fn quantile_sorted(a: &[f64], q: f64) -> f64 {
    let n = a.len();
    let virtual_index = (n as f64 - 1.0) * q;
    let prev = virtual_index.floor();
    let gamma = virtual_index - prev;
    let lo = (prev as usize).min(n - 1);
    let hi = (lo + 1).min(n - 1);
    let (x, y) = (a[lo], a[hi]);
    // NumPy's _lerp: a + (b−a)·t, or b − (b−a)·(1−t) when t ≥ 0.5.
    let diff = y - x;
    if gamma >= 0.5 { y - diff * (1.0 - gamma) } else { x + diff * gamma }
}

fn count_by_edges(sorted: &[f64], edges: &[f64]) -> Vec<u64> {
    // bin(x) = #{edges <= x}: walk the sorted values once.
    let mut counts = vec![0u64; edges.len() + 1];
    let mut b = 0;
    for &x in sorted {
        while b < edges.len() && edges[b] <= x {
            b += 1;
        }
        counts[b] += 1;
    }
    counts
}

fn shares(counts: &[u64]) -> Vec<f64> {
    let n: u64 = counts.iter().sum();
    counts.iter().map(|&c| c as f64 / n as f64).collect()
}

fn count_distinct_sorted(a: &[f64]) -> usize {
    a.windows(2).filter(|w| w[0] != w[1]).count() + usize::from(!a.is_empty())
}

/// Bins a numeric feature. Both slices sorted, non-empty, finite.
pub fn bin_numeric(reference: &[f64], current: &[f64], binning: Binning) -> Binned {
    match binning {
        Binning::ReferenceQuantiles { bins, epsilon } => {
            let mut edges: Vec<f64> = (1..bins).map(|i| quantile_sorted(reference, i as f64 / bins as f64)).collect();
            edges.dedup();
            Binned {
                reference: shares(&count_by_edges(reference, &edges)),
                current: shares(&count_by_edges(current, &edges)),
                empty: EmptyBins::Constant(epsilon),
            }
        }
        Binning::Evidently => {
            if count_distinct_sorted(reference) > 20 {
                let (rc, cc) = evidently_histogram(reference, current);
                Binned { reference: shares(&rc), current: shares(&cc), empty: EmptyBins::Evidently }
            } else {
                // One bin per distinct value of reference ∪ current.
                let mut values: Vec<f64> = reference.iter().chain(current).copied().collect();
                values.sort_by(f64::total_cmp);
                values.dedup();
                let count = |s: &[f64]| -> Vec<u64> {
                    let mut c = vec![0u64; values.len()];
                    let mut k = 0;
                    for &x in s {
                        while values[k] < x {
                            k += 1;
                        }
                        c[k] += 1;
                    }
                    c
                };
                Binned { reference: shares(&count(reference)), current: shares(&count(current)), empty: EmptyBins::Evidently }
            }
        }
    }
}

/// NumPy `histogram(x, bins='sturges', range=(pooled min, pooled max))` counts for both
/// samples, replicating NumPy's edge arithmetic and its index corrections.
fn evidently_histogram(reference: &[f64], current: &[f64]) -> (Vec<u64>, Vec<u64>) {
    let first = reference[0].min(current[0]);
    let last = reference[reference.len() - 1].max(current[current.len() - 1]);
    let n = (reference.len() + current.len()) as f64;
    let ptp = last - first;
    let nbins = if ptp == 0.0 {
        1
    } else {
        let width = ptp / (n.log2() + 1.0);
        (ptp / width).ceil() as usize
    };
    let (first, last) = if first == last { (first - 0.5, last + 0.5) } else { (first, last) };
    let step = (last - first) / nbins as f64;
    let mut edges: Vec<f64> = (0..=nbins).map(|i| i as f64 * step + first).collect();
    edges[nbins] = last;
    let norm = nbins as f64 / (last - first);
    let count = |s: &[f64]| -> Vec<u64> {
        let mut c = vec![0u64; nbins];
        for &x in s {
            let mut idx = ((x - first) * norm) as usize;
            if idx == nbins {
                idx -= 1;
            }
            if x < edges[idx] {
                idx -= 1;
            } else if x >= edges[idx + 1] && idx != nbins - 1 {
                idx += 1;
            }
            c[idx] += 1;
        }
        c
    };
    (count(reference), count(current))
}

/// Category shares over the union of categories (sorted by name), with the categories only in
/// the current data (`unseen`) and only in the reference (`vanished`).
#[derive(Debug, Clone, PartialEq)]
pub struct CategoryShares {
    /// Category names in order.
    pub categories: Vec<String>,
    /// Reference counts.
    pub reference_counts: Vec<u64>,
    /// Current counts.
    pub current_counts: Vec<u64>,
    /// In the current data but never in the reference.
    pub unseen: Vec<String>,
    /// In the reference but absent from the current data.
    pub vanished: Vec<String>,
}

impl CategoryShares {
    /// Builds the union table from per-category counts.
    pub fn new(reference: &std::collections::BTreeMap<String, u64>, current: &std::collections::BTreeMap<String, u64>) -> Self {
        let mut categories: Vec<String> = reference.keys().chain(current.keys()).cloned().collect();
        categories.sort();
        categories.dedup();
        let rc: Vec<u64> = categories.iter().map(|c| reference.get(c).copied().unwrap_or(0)).collect();
        let cc: Vec<u64> = categories.iter().map(|c| current.get(c).copied().unwrap_or(0)).collect();
        let unseen = categories.iter().zip(&rc).filter(|(_, r)| **r == 0).map(|(c, _)| c.clone()).collect();
        let vanished = categories.iter().zip(&cc).filter(|(_, c)| **c == 0).map(|(c, _)| c.clone()).collect();
        CategoryShares { categories, reference_counts: rc, current_counts: cc, unseen, vanished }
    }

    /// Shares with the given empty-bin rule for PSI/KL.
    pub fn binned(&self, empty: EmptyBins) -> Binned {
        Binned { reference: shares(&self.reference_counts), current: shares(&self.current_counts), empty }
    }
}

fn fill_empty(shares: &[f64], empty: EmptyBins) -> Vec<f64> {
    let fill = match empty {
        EmptyBins::Constant(e) => e,
        EmptyBins::Evidently => {
            let m = shares.iter().copied().filter(|s| *s > 0.0).fold(f64::INFINITY, f64::min);
            if m <= 1e-4 { m / 1e6 } else { 1e-4 }
        }
    };
    shares.iter().map(|&s| if s == 0.0 { fill } else { s }).collect()
}

/// Population Stability Index: Σ (c − r)·ln(c / r), empty bins filled.
pub fn psi(b: &Binned) -> f64 {
    let r = fill_empty(&b.reference, b.empty);
    let c = fill_empty(&b.current, b.empty);
    r.iter().zip(&c).map(|(r, c)| (c - r) * (c / r).ln()).sum()
}

/// KL(reference ‖ current) in nats, like `scipy.stats.entropy(r, c)` on the filled shares
/// (which renormalises both).
pub fn kl_divergence(b: &Binned) -> f64 {
    let r = fill_empty(&b.reference, b.empty);
    let c = fill_empty(&b.current, b.empty);
    let (sr, sc): (f64, f64) = (r.iter().sum(), c.iter().sum());
    r.iter()
        .zip(&c)
        .map(|(r, c)| {
            let (p, q) = (r / sr, c / sc);
            if p > 0.0 { p * (p / q).ln() } else { 0.0 }
        })
        .sum()
}

/// Jensen–Shannon *distance* (base e), like `scipy.spatial.distance.jensenshannon` on raw shares.
pub fn js_distance(b: &Binned) -> f64 {
    let (sr, sc): (f64, f64) = (b.reference.iter().sum(), b.current.iter().sum());
    let mut js = 0.0;
    for (r, c) in b.reference.iter().zip(&b.current) {
        let (p, q) = (r / sr, c / sc);
        let m = (p + q) / 2.0;
        if p > 0.0 {
            js += p * (p / m).ln();
        }
        if q > 0.0 {
            js += q * (q / m).ln();
        }
    }
    (js / 2.0).max(0.0).sqrt()
}

/// Hellinger distance in [0, 1]: ‖√r − √c‖₂ / √2 on raw shares.
pub fn hellinger(b: &Binned) -> f64 {
    let s: f64 = b.reference.iter().zip(&b.current).map(|(r, c)| (r.sqrt() - c.sqrt()).powi(2)).sum();
    (s / 2.0).sqrt()
}

/// Wasserstein-1 distance between two sorted samples (`scipy.stats.wasserstein_distance`):
/// the area between the empirical CDFs, from the same merge walk as the KS statistic.
pub fn wasserstein(a: &[f64], b: &[f64]) -> f64 {
    crate::ks::ks_statistic_and_wasserstein(a, b).1
}

/// Population standard deviation (ddof = 0), two-pass.
pub fn std_pop(a: &[f64]) -> f64 {
    let n = a.len() as f64;
    let mean = a.iter().sum::<f64>() / n;
    (a.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt()
}

/// Result of the chi-squared test of independence on a 2×k table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Chi2Result {
    /// The statistic.
    pub statistic: f64,
    /// The p-value.
    pub pvalue: f64,
    /// Degrees of freedom (categories with any count − 1).
    pub dof: usize,
}

/// Two-sample chi-squared contingency test, as `scipy.stats.chi2_contingency([ref, cur])`
/// (Yates' correction when there is one degree of freedom). Categories absent from both
/// samples must not be passed.
pub fn chi2_contingency(reference: &[u64], current: &[u64]) -> Chi2Result {
    let k = reference.len();
    let (nr, nc): (f64, f64) = (reference.iter().sum::<u64>() as f64, current.iter().sum::<u64>() as f64);
    let total = nr + nc;
    let dof = k.saturating_sub(1);
    if dof == 0 {
        return Chi2Result { statistic: 0.0, pvalue: 1.0, dof: 0 };
    }
    let mut stat = 0.0;
    for i in 0..k {
        let col = (reference[i] + current[i]) as f64;
        for (obs, row) in [(reference[i] as f64, nr), (current[i] as f64, nc)] {
            let exp = row * col / total;
            let mut diff = obs - exp;
            if dof == 1 {
                // Yates: move each observation half a unit towards its expectation.
                let corr = 0.5f64.min(diff.abs());
                diff = diff.abs() - corr;
            }
            stat += diff * diff / exp;
        }
    }
    Chi2Result { statistic: stat, pvalue: chi2_sf(stat, dof as f64), dof }
}

/// Two-proportion z-test (pooled, two-sided): successes `x1` of `n1` against `x2` of `n2`.
pub fn two_proportion_z(x1: u64, n1: u64, x2: u64, n2: u64) -> (f64, f64) {
    let (p1, p2) = (x1 as f64 / n1 as f64, x2 as f64 / n2 as f64);
    let p = (x1 + x2) as f64 / (n1 + n2) as f64;
    let se = (p * (1.0 - p) * (1.0 / n1 as f64 + 1.0 / n2 as f64)).sqrt();
    if se == 0.0 {
        return (0.0, 1.0);
    }
    let z = (p1 - p2) / se;
    (z, norm_two_sided(z))
}

/// Benjamini–Hochberg adjusted p-values (`scipy.stats.false_discovery_control(p, method='bh')`).
pub fn benjamini_hochberg(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let mut adjusted = vec![0.0; m];
    let mut running = f64::INFINITY;
    for rank in (0..m).rev() {
        let i = order[rank];
        running = running.min(p[i] * m as f64 / (rank + 1) as f64);
        adjusted[i] = running.min(1.0);
    }
    adjusted
}

/// Bonferroni adjusted p-values: min(1, p·m).
pub fn bonferroni(p: &[f64]) -> Vec<f64> {
    let m = p.len() as f64;
    p.iter().map(|x| (x * m).min(1.0)).collect()
}
