//! Sorting a million f64 values: the standard library's unstable sort against `sort_f64`, on
//! normal, uniform-positive and few-distinct data (best of 7 runs each).
//!
//!     cargo run --release -p vigil-stats --example sort_bench

use std::time::Instant;

fn main() {
    let n = 1_000_000;
    let mut s = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 11) as f64 / (1u64 << 53) as f64
    };
    let normal: Vec<f64> = (0..n)
        .map(|_| {
            let (u, v) = (next().max(1e-300), next());
            (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
        })
        .collect();
    let glucose: Vec<f64> = (0..n).map(|_| 70.0 + 130.0 * next()).collect();
    let codes: Vec<f64> = (0..n).map(|_| (next() * 12.0).floor()).collect();
    for (name, data) in [("normal", &normal), ("uniform 70..200", &glucose), ("12 distinct", &codes)] {
        let best = |f: &dyn Fn(&mut Vec<f64>)| {
            (0..7)
                .map(|_| {
                    let mut v = data.clone();
                    let t = Instant::now();
                    f(&mut v);
                    t.elapsed().as_secs_f64() * 1e3
                })
                .fold(f64::INFINITY, f64::min)
        };
        let std_ms = best(&|v| v.sort_unstable_by(f64::total_cmp));
        let ours_ms = best(&|v| vigil_stats::sort::sort_f64(v));
        println!("sort 1M {name:<16} std sort_unstable {std_ms:6.1} ms   sort_f64 {ours_ms:6.1} ms");
    }
}
