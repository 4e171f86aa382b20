//! Where one numeric column's drift check spends its time (a million normal values per side,
//! best of 5): profiling (copy + sort) each side, the fused KS/Wasserstein walk, the binning.
//!
//!     cargo run --release -p vigil-stats --example parts_bench

use std::time::Instant;
use vigil_stats::drift::Binning;
use vigil_stats::profile::{FeatureProfile, check_numeric};

fn main() {
    let n = 1_000_000;
    let mut s = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut normal = |shift: f64| -> Vec<f64> {
        (0..n)
            .map(|_| {
                let (u, v) = (next().max(1e-300), next());
                shift + (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
            })
            .collect()
    };
    let (r, c) = (normal(0.0), normal(0.05));
    let best = |f: &mut dyn FnMut()| {
        (0..5)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64() * 1e3
            })
            .fold(f64::INFINITY, f64::min)
    };
    let sorted = |v: &[f64]| match FeatureProfile::numeric(v.iter().map(|x| Some(*x))) {
        FeatureProfile::Numeric { sorted, .. } => sorted,
        FeatureProfile::Categorical { .. } => unreachable!(),
    };
    let profile_ms = best(&mut || {
        std::hint::black_box(sorted(&r));
    });
    let (rs, cs) = (sorted(&r), sorted(&c));
    let walk_ms = best(&mut || {
        std::hint::black_box(vigil_stats::ks::ks_statistic_and_wasserstein(&rs, &cs));
    });
    let bin_ms = best(&mut || {
        std::hint::black_box(vigil_stats::drift::bin_numeric(&rs, &cs, Binning::default()));
    });
    let check_ms = best(&mut || {
        let _ = std::hint::black_box(check_numeric(&rs, &cs, Binning::default()));
    });
    println!(
        "numeric column, 1M per side: profile one side {profile_ms:.1} ms, KS+Wasserstein walk {walk_ms:.1} ms, binning {bin_ms:.1} ms, whole check on sorted sides {check_ms:.1} ms"
    );
}
