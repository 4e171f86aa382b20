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

/// One stretch of the merged walk: positions `i` in `a` and `j` in `b`, the value of the
/// current tie group, the extremes of the ECDF difference seen and the Wasserstein area.
#[derive(Clone, Copy)]
struct Lane {
    i: usize,
    j: usize,
    steps: usize,
    cur: f64,
    max_num: i64,
    max_f: f64,
    min_num: i64,
    min_f: f64,
    area: f64,
}

/// What every lane shares: the samples and their sizes.
struct Walk<'a> {
    a: &'a [f64],
    b: &'a [f64],
    n1: i64,
    n2: i64,
    inv1: f64,
    inv2: f64,
    total: usize,
}

impl Walk<'_> {
    fn at(s: &[f64], k: usize) -> f64 {
        s.get(k).copied().unwrap_or(f64::INFINITY)
    }

    fn lane(&self, i: usize, j: usize, end_i: usize, end_j: usize) -> Lane {
        let cur = Self::at(self.a, i).min(Self::at(self.b, j));
        Lane { i, j, steps: (end_i - i) + (end_j - j), cur, max_num: i64::MIN, max_f: f64::NEG_INFINITY, min_num: i64::MAX, min_f: f64::INFINITY, area: 0.0 }
    }

    /// Consumes the next merged element. Which sample it comes from is data-dependent, so the
    /// choice is arithmetic (no branch to mispredict). A tie group ends when the next merged
    /// value is larger; only there are the ECDFs compared.
    #[inline(always)]
    fn step(&self, l: &mut Lane) {
        let take_a = Self::at(self.a, l.i) <= Self::at(self.b, l.j);
        l.i += usize::from(take_a);
        l.j += usize::from(!take_a);
        let next = Self::at(self.a, l.i).min(Self::at(self.b, l.j));
        if next > l.cur {
            let num = l.i as i64 * self.n2 - l.j as i64 * self.n1;
            // Ties in the exact difference can differ by an ulp in SciPy's float difference;
            // keep the float extreme among them, as np.argmax/argmin over the floats would.
            if num >= l.max_num {
                let f = l.i as f64 / self.n1 as f64 - l.j as f64 / self.n2 as f64;
                if num > l.max_num || f > l.max_f {
                    l.max_f = f;
                }
                l.max_num = num;
            }
            if num <= l.min_num {
                let f = l.i as f64 / self.n1 as f64 - l.j as f64 / self.n2 as f64;
                if num < l.min_num || f < l.min_f {
                    l.min_f = f;
                }
                l.min_num = num;
            }
            if l.i + l.j < self.total {
                l.area += (l.i as f64 * self.inv1 - l.j as f64 * self.inv2).abs() * (next - l.cur);
            }
            l.cur = next;
        }
    }
}

/// Independent stretches walked together: one merged walk is a chain of dependent loads, so
/// four of them in one loop keep the core busy (measured: ~2× faster for a million per side).
const LANES: usize = 4;

/// The KS statistic and the Wasserstein-1 distance in one merge walk over two sorted samples.
///
/// The walk tracks the ECDF difference as the exact integer `i·n2 − j·n1` (no division per
/// step); the statistic is then evaluated at the extreme positions as SciPy does, `i/n1 − j/n2`
/// in f64, so it is the same number SciPy reports. The merged order is cut into [`LANES`]
/// stretches at value boundaries (a tie group never straddles two), walked interleaved, and
/// their extremes and areas combined; the area is then summed in a different order than one
/// walk would, which moves it by rounding only (~1e-16 relative).
pub fn ks_statistic_and_wasserstein(a: &[f64], b: &[f64]) -> (f64, f64) {
    let (n1, n2) = (a.len() as i64, b.len() as i64);
    let w = Walk { a, b, n1, n2, inv1: 1.0 / n1 as f64, inv2: 1.0 / n2 as f64, total: a.len() + b.len() };
    // Cut points: values of `a` at even shares; each stretch takes everything below its cut.
    let lanes = if w.total >= 4096 { LANES } else { 1 };
    let mut cuts = vec![(0usize, 0usize)];
    for k in 1..lanes {
        let v = a[k * a.len() / lanes];
        let cut = (a.partition_point(|x| *x < v), b.partition_point(|x| *x < v));
        if cut.0 + cut.1 > cuts.last().map_or(0, |c| c.0 + c.1) {
            cuts.push(cut);
        }
    }
    cuts.push((a.len(), b.len()));
    let mut ls: Vec<Lane> = cuts.windows(2).map(|c| w.lane(c[0].0, c[0].1, c[1].0, c[1].1)).collect();
    if let [l0, l1, l2, l3] = ls.as_mut_slice() {
        let common = l0.steps.min(l1.steps).min(l2.steps).min(l3.steps);
        for _ in 0..common {
            w.step(l0);
            w.step(l1);
            w.step(l2);
            w.step(l3);
        }
        for l in [l0, l1, l2, l3] {
            l.steps -= common;
        }
    }
    for l in &mut ls {
        for _ in 0..l.steps {
            w.step(l);
        }
    }
    let (mut max_num, mut max_f, mut min_num, mut min_f, mut area) = (i64::MIN, f64::NEG_INFINITY, i64::MAX, f64::INFINITY, 0.0);
    for l in &ls {
        if l.max_num > max_num || (l.max_num == max_num && l.max_f > max_f) {
            (max_num, max_f) = (l.max_num, l.max_f);
        }
        if l.min_num < min_num || (l.min_num == min_num && l.min_f < min_f) {
            (min_num, min_f) = (l.min_num, l.min_f);
        }
        area += l.area;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The textbook definitions: the ECDFs evaluated at every distinct value by binary search,
    /// the Wasserstein area summed between consecutive distinct values.
    fn reference(a: &[f64], b: &[f64]) -> (f64, f64) {
        let mut all: Vec<f64> = a.iter().chain(b).copied().collect();
        all.sort_by(f64::total_cmp);
        all.dedup();
        let cdf = |s: &[f64], v: f64| s.partition_point(|x| *x <= v) as f64 / s.len() as f64;
        let d = all.iter().map(|&v| (cdf(a, v) - cdf(b, v)).abs()).fold(0.0, f64::max);
        let area = all.windows(2).map(|w| (cdf(a, w[0]) - cdf(b, w[0])).abs() * (w[1] - w[0])).sum();
        (d, area)
    }

    #[test]
    fn interleaved_lanes_give_the_single_walk_numbers() {
        let mut s = 0x0123_4567_89ab_cdefu64;
        let mut u = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 11) as f64 / (1u64 << 53) as f64
        };
        let cases: Vec<(Vec<f64>, Vec<f64>)> = vec![
            // Continuous, shifted, unequal sizes.
            ((0..9000).map(|_| u()).collect(), (0..5000).map(|_| u() + 0.05).collect()),
            // Few distinct values: lane cuts collapse onto tie groups.
            ((0..8000).map(|_| (u() * 5.0).floor()).collect(), (0..7000).map(|_| (u() * 6.0).floor()).collect()),
            // Disjoint ranges, and one sample far smaller than the other.
            ((0..6000).map(|_| u() + 10.0).collect(), (0..3000).map(|_| u()).collect()),
            ((0..20000).map(|_| u()).collect(), (0..7).map(|_| u()).collect()),
        ];
        for (mut a, mut b) in cases {
            a.sort_by(f64::total_cmp);
            b.sort_by(f64::total_cmp);
            let (d, w) = ks_statistic_and_wasserstein(&a, &b);
            let (d_ref, w_ref) = reference(&a, &b);
            assert!((d - d_ref).abs() <= 1e-15, "{d} vs {d_ref}");
            assert!((w - w_ref).abs() <= 1e-12 * w_ref.max(1e-300), "{w} vs {w_ref}");
        }
    }
}
