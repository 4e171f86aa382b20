//! Drift statistics on the workload: 25 columns (20 numeric, 5 categorical), reference
//! and current of N rows each (default 1,000,000), generated in memory (splitmix64), checked
//! with every statistic (KS, PSI, KL, JS, Hellinger, Wasserstein; chi-squared, PSI, JS) on one
//! thread. Reading Parquet is measured separately by the CLI bench.
//!
//!     cargo bench -p vigil-stats --bench drift [-- ROWS]

use std::collections::BTreeMap;
use std::time::Instant;
use vigil_stats::drift::Binning;
use vigil_stats::profile::{FeatureProfile, check_categorical, check_numeric};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn u(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        (0..12).map(|_| self.u()).sum::<f64>() - 6.0
    }
}

fn main() {
    let n: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(1_000_000);
    let mut rng = Rng(20240601);
    let t = Instant::now();
    type Column = Vec<Option<f64>>;
    let numeric: Vec<(Column, Column)> = (0..20)
        .map(|c| {
            let shift = if c < 9 { 0.1 * c as f64 } else { 0.0 };
            let r = (0..n).map(|_| Some(rng.normal())).collect();
            let k = (0..n).map(|_| Some(rng.normal() + shift)).collect();
            (r, k)
        })
        .collect();
    let cats = ["a", "b", "c", "d", "e", "f"];
    let categorical: Vec<(Vec<&str>, Vec<&str>)> = (0..5)
        .map(|c| {
            let r = (0..n).map(|_| cats[(rng.u() * 6.0) as usize]).collect();
            let k = (0..n).map(|_| cats[((rng.u() * (6.0 - c as f64 * 0.2)) as usize).min(5)]).collect();
            (r, k)
        })
        .collect();
    eprintln!("generated 25 x 2 x {n} values in {:.1} s", t.elapsed().as_secs_f64());

    let t = Instant::now();
    let mut checked = 0;
    for (r, k) in &numeric {
        let (FeatureProfile::Numeric { sorted: rs, .. }, FeatureProfile::Numeric { sorted: ks, .. }) =
            (FeatureProfile::numeric(r.iter().copied()), FeatureProfile::numeric(k.iter().copied()))
        else {
            unreachable!()
        };
        let c = check_numeric(&rs, &ks, Binning::default()).expect("check");
        checked += usize::from(c.ks.pvalue >= 0.0);
    }
    let numeric_s = t.elapsed().as_secs_f64();
    let t2 = Instant::now();
    for (r, k) in &categorical {
        let count = |v: &[&str]| {
            let mut m: BTreeMap<String, u64> = BTreeMap::new();
            let mut idx = [0u64; 6];
            for s in v {
                idx[cats.iter().position(|c| c == s).unwrap_or(0)] += 1;
            }
            for (i, c) in cats.iter().enumerate() {
                if idx[i] > 0 {
                    m.insert((*c).to_owned(), idx[i]);
                }
            }
            m
        };
        let c = check_categorical(&count(r), &count(k)).expect("check");
        checked += usize::from(c.pvalue >= 0.0);
    }
    let cat_s = t2.elapsed().as_secs_f64();
    println!(
        "drift check, 25 columns x {n} rows (reference and current), one thread: {:.3} s (numeric {:.3} s incl. sorting both sides, categorical {:.3} s), {checked} columns",
        numeric_s + cat_s,
        numeric_s,
        cat_s
    );
}
