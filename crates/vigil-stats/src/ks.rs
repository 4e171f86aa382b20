//! The two-sample Kolmogorov–Smirnov test, matching SciPy 1.17's `ks_2samp` (two-sided):
//! the same statistic, the same switch rule (exact when the larger sample has at most 10,000
//! values, otherwise asymptotic), the same exact algorithms (Hodges' lattice-path counts) and
//! the same asymptotic p-value, `kstwo.sf(D, round(n·m/(n+m)))`.

use crate::kolmogorov::kolmogn_sf;

/// Largest sample for which `auto` uses the exact distribution (SciPy's `MAX_AUTO_N`).
pub const MAX_AUTO_N: usize = 10_000;

/// How the p-value was computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KsMethod {
    /// Exact null distribution of the two-sample statistic.
    Exact,
    /// Finite-n one-sample Kolmogorov distribution at the effective size.
    Asymptotic,
}

impl KsMethod {
    /// `exact` or `asymp` (SciPy's names).
    pub fn as_str(self) -> &'static str {
        match self {
            KsMethod::Exact => "exact",
            KsMethod::Asymptotic => "asymp",
        }
    }
}

/// Result of a two-sided two-sample KS test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KsResult {
    /// Maximum absolute difference of the two empirical CDFs.
    pub statistic: f64,
    /// Two-sided p-value.
    pub pvalue: f64,
    /// How the p-value was computed.
    pub method: KsMethod,
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// The KS statistic of two **sorted**, non-empty samples of finite values: the same number
/// SciPy reports (see [`ks_statistic_and_wasserstein`]).
pub fn ks_statistic(a: &[f64], b: &[f64]) -> f64 {
    ks_statistic_and_wasserstein(a, b).0
}

/// The KS statistic and the Wasserstein-1 distance in one merge walk over two sorted samples.
///
/// The walk tracks the ECDF difference as the exact integer `i·n2 − j·n1` (no division per
/// step); the statistic is then evaluated at the extreme positions as SciPy does, `i/n1 − j/n2`
/// in f64, so it is the same number SciPy reports.
pub fn ks_statistic_and_wasserstein(a: &[f64], b: &[f64]) -> (f64, f64) {
    let (n1, n2) = (a.len() as i64, b.len() as i64);
    let (inv1, inv2) = (1.0 / n1 as f64, 1.0 / n2 as f64);
    let (mut i, mut j) = (0usize, 0usize);
    let (mut max_num, mut max_f) = (i64::MIN, f64::NEG_INFINITY);
    let (mut min_num, mut min_f) = (i64::MAX, f64::INFINITY);
    let mut prev = a[0].min(b[0]);
    let mut area = 0.0;
    while i < a.len() || j < b.len() {
        let v = match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) => x.min(*y),
            (Some(x), None) => *x,
            (None, Some(y)) => *y,
            (None, None) => break,
        };
        area += (i as f64 * inv1 - j as f64 * inv2).abs() * (v - prev);
        while i < a.len() && a[i] <= v {
            i += 1;
        }
        while j < b.len() && b[j] <= v {
            j += 1;
        }
        let num = i as i64 * n2 - j as i64 * n1;
        // Ties in the exact difference can differ by an ulp in SciPy's float difference; keep
        // the float extreme among them, as np.argmax/argmin over the floats would.
        if num >= max_num {
            let f = i as f64 / n1 as f64 - j as f64 / n2 as f64;
            if num > max_num || f > max_f {
                max_f = f;
            }
            max_num = num;
        }
        if num <= min_num {
            let f = i as f64 / n1 as f64 - j as f64 / n2 as f64;
            if num < min_num || f < min_f {
                min_f = f;
            }
            min_num = num;
        }
        prev = v;
    }
    let max_s = max_f;
    let min_s = (-min_f).clamp(0.0, 1.0);
    (if min_s > max_s { min_s } else { max_s }, area)
}

/// Two-sided two-sample KS test on **sorted**, non-empty samples (`method='auto'`).
pub fn ks_2samp_sorted(a: &[f64], b: &[f64]) -> KsResult {
    let d = ks_statistic(a, b);
    let (n1, n2) = (a.len() as u64, b.len() as u64);
    ks_2samp_from_statistic(d, n1, n2)
}

/// The p-value part of `ks_2samp` for a statistic `d` of samples of sizes `n1`, `n2`.
pub fn ks_2samp_from_statistic(d: f64, n1: u64, n2: u64) -> KsResult {
    if n1.max(n2) as usize <= MAX_AUTO_N {
        let g = gcd(n1, n2);
        let lcm = (n1 / g) * n2;
        let h = (d * lcm as f64).round_ties_even() as u64;
        let d_exact = h as f64 / lcm as f64;
        if h == 0 {
            return KsResult { statistic: d_exact, pvalue: 1.0, method: KsMethod::Exact };
        }
        let p = if n1 == n2 { prob_outside_square(n1, h) } else { outer_prob_inside(n1, n2, g, h) };
        if (0.0..=1.0).contains(&p) {
            return KsResult { statistic: d_exact, pvalue: p, method: KsMethod::Exact };
        }
        // Like SciPy: an unsuccessful exact computation falls back to the asymptotic one,
        // keeping the rounded statistic.
        return asymptotic(d_exact, n1, n2);
    }
    asymptotic(d, n1, n2)
}

fn asymptotic(d: f64, n1: u64, n2: u64) -> KsResult {
    let (m, n) = if n1 >= n2 { (n1 as f64, n2 as f64) } else { (n2 as f64, n1 as f64) };
    let en = (m * n / (m + n)).round_ties_even();
    let p = kolmogn_sf(en as u64, d).clamp(0.0, 1.0);
    KsResult { statistic: d, pvalue: p, method: KsMethod::Asymptotic }
}

/// Proportion of lattice paths passing outside `|x − y| < h` for equal sizes `n`.
fn prob_outside_square(n: u64, h: u64) -> f64 {
    let (nf, hf) = (n as f64, h as f64);
    let mut p = 0.0;
    let mut k = (nf / hf).floor() as i64;
    while k >= 0 {
        let kf = k as f64;
        let mut p1 = 1.0;
        for j in 0..h {
            let jf = j as f64;
            p1 = (nf - kf * hf - jf) * p1 / (nf + kf * hf + jf + 1.0);
        }
        p = p1 * (1.0 - p);
        k -= 1;
    }
    2.0 * p
}

/// 1 − proportion of paths staying strictly inside the band (Hodges; Viehmann's stable
/// recursion computing the complement directly).
fn outer_prob_inside(m: u64, n: u64, g: u64, h: u64) -> f64 {
    let (m, n) = if m < n { (n, m) } else { (m, n) };
    let (mg, ng) = (m / g, n / g);
    let (mgf, ngf, hf) = (mg as f64, ng as f64, h as f64);
    let mut minj: i64 = 0;
    let mut maxj: i64 = ((hf / mgf).ceil() as i64).min(n as i64 + 1);
    let mut curlen = maxj - minj;
    let len_a = ((2 * maxj + 2) as usize).min(n as usize + 1);
    let mut a = vec![1.0f64; len_a];
    for x in a.iter_mut().take(maxj as usize).skip(minj as usize) {
        *x = 0.0;
    }
    for i in 1..=m {
        let fi = i as f64;
        let (lastminj, lastlen) = (minj, curlen);
        minj = (((ngf * fi - hf) / mgf).floor() as i64 + 1).max(0).min(n as i64);
        maxj = (((ngf * fi + hf) / mgf).ceil() as i64).min(n as i64 + 1);
        if maxj <= minj {
            return 1.0;
        }
        let mut val = if minj == 0 { 0.0 } else { 1.0 };
        for jj in 0..(maxj - minj) {
            let j = (jj + minj) as f64;
            let src = (jj + minj - lastminj) as usize;
            val = (a.get(src).copied().unwrap_or(1.0) * fi + val * j) / (fi + j);
            if let Some(slot) = a.get_mut(jj as usize) {
                *slot = val;
            }
        }
        curlen = maxj - minj;
        if lastlen > curlen {
            let from = (maxj - minj) as usize;
            let to = (from + (lastlen - curlen) as usize).min(a.len());
            for x in a.iter_mut().take(to).skip(from) {
                *x = 1.0;
            }
        }
    }
    a[(maxj - minj - 1) as usize]
}
