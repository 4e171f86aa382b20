//! Full validation on a 100,000-row holdout (the validation issue's performance workload):
//! every metric of `validation::METRICS` with 2,000-resample bootstrap intervals, and every
//! group's `validation::GROUP_METRICS` with intervals from the same resamples over two
//! sensitive attributes and their intersection, plus the disparities.
//!
//!     cargo run --release -p vigil-stats --example validation_bench
//!
//! Data: SplitMix64-generated labels (prevalence ~0.3), scores = clip(0.3·y + N(0.35, 0.2)),
//! sex in {F, M}, race in {A, B, C, D}.

#![allow(clippy::unwrap_used)]

use std::time::Instant;
use vigil_stats::fairness::{GroupRates, Mode, intersect, summary};
use vigil_stats::validation::{SplitMix64, evaluate_groups};

fn main() {
    let n = 100_000;
    let mut r = SplitMix64(42);
    let mut u = || (r.next_u64() >> 11) as f64 / 9_007_199_254_740_992.0;
    let mut labels = Vec::with_capacity(n);
    let mut scores = Vec::with_capacity(n);
    let mut sex = Vec::with_capacity(n);
    let mut race = Vec::with_capacity(n);
    for _ in 0..n {
        let y = u() < 0.3;
        // Box–Muller for a normal deviate.
        let z = (-2.0 * u().max(1e-300).ln()).sqrt() * (2.0 * std::f64::consts::PI * u()).cos();
        labels.push(y);
        scores.push((0.3 * f64::from(u8::from(y)) + 0.35 + 0.2 * z).clamp(0.0, 1.0));
        sex.push(if u() < 0.5 { "F".to_string() } else { "M".to_string() });
        race.push(["A", "B", "C", "D"][(u() * 4.0) as usize].to_string());
    }
    for _ in 0..3 {
        let t = Instant::now();
        let both = intersect(&[&sex, &race]);
        let ev = evaluate_groups(&labels, &scores, 0.5, &[&sex, &race, &both], 2000, 20261128, 0.95);
        let est = ev.overall;
        let t_metrics = t.elapsed();
        // The disparities from the group estimates, as `vigil validate` computes them.
        let fair: Vec<_> = ev.attributes.iter().map(|gs| summary(&gs.iter().map(GroupRates::from_estimate).collect::<Vec<_>>(), Mode::Strict)).collect();
        let total = t.elapsed();
        let auc = est.iter().find(|e| e.metric == "roc_auc").unwrap();
        println!(
            "validation 100,000 rows: {} metrics and 8 metrics x 14 groups (sex, race, sex x race) x 2,000 resamples {:.2} s, + disparities = {:.2} s total; AUC {:.4} [{:.4}, {:.4}]; EO diff (sex x race) {:.4}",
            est.len(),
            t_metrics.as_secs_f64(),
            total.as_secs_f64(),
            auc.value.unwrap(),
            auc.ci.as_ref().unwrap().low,
            auc.ci.as_ref().unwrap().high,
            fair[2].equalized_odds_difference.unwrap_or(f64::NAN)
        );
    }
}
