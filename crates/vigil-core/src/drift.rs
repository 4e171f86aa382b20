//! Drift decisions: the original system's `DriftDetectorConfig`, the clinical-significance
//! gate, multiple-testing control across features, and the report with its status and
//! recommendations. Pure: the statistics come from `vigil-stats`, the data from the caller.
//!
//! A feature counts as **drifted** only when its test is significant after correction across
//! all tested features (Benjamini–Hochberg by default) **and** an effect size exceeds the
//! clinical threshold: in the feature's own units where the user declared one (e.g. a median
//! glucose shift of 10 mg/dL), otherwise a unitless default (Wasserstein divided by the
//! reference's robust scale, or PSI). Significant-but-negligible shifts (the large-sample false
//! alarm) are reported as such and do not alert; large-but-unconfirmed effects are a warning.

use std::collections::BTreeMap;
use vigil_stats::drift::Binning;
use vigil_stats::profile::{CategoricalCheck, Insufficient, NumericCheck};

/// Multiple-testing correction across features.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Correction {
    /// Benjamini–Hochberg false discovery rate (default).
    BenjaminiHochberg,
    /// Bonferroni family-wise error rate.
    Bonferroni,
}

impl Correction {
    /// Stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Correction::BenjaminiHochberg => "benjamini_hochberg",
            Correction::Bonferroni => "bonferroni",
        }
    }
}

/// An effect size a clinical threshold can be declared on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// |median(current) − median(reference)| in the feature's units.
    MedianShift,
    /// Wasserstein-1 in the feature's units.
    Wasserstein,
    /// Wasserstein-1 / reference robust scale (IQR/1.349).
    RobustWasserstein,
    /// Wasserstein-1 / reference standard deviation.
    NormedWasserstein,
    /// Population Stability Index.
    Psi,
    /// Jensen–Shannon distance.
    JensenShannon,
}

impl Effect {
    /// Stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Effect::MedianShift => "median_shift",
            Effect::Wasserstein => "wasserstein",
            Effect::RobustWasserstein => "wasserstein_robust",
            Effect::NormedWasserstein => "wasserstein_normed",
            Effect::Psi => "psi",
            Effect::JensenShannon => "jensen_shannon",
        }
    }

    /// Parses the stable name.
    pub fn parse(s: &str) -> Option<Effect> {
        [Effect::MedianShift, Effect::Wasserstein, Effect::RobustWasserstein, Effect::NormedWasserstein, Effect::Psi, Effect::JensenShannon]
            .into_iter()
            .find(|e| e.as_str() == s)
    }
}

/// Per-feature settings that override the defaults.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FeatureOverride {
    /// The clinically meaningful effect and its threshold, e.g. (MedianShift, 10.0) for glucose.
    pub effect: Option<(Effect, f64)>,
    /// A different significance level for this feature.
    pub alpha: Option<f64>,
}

/// The original system's configuration, with Vigil's additions. Defaults are the seed's.
#[derive(Debug, Clone, PartialEq)]
pub struct DriftDetectorConfig {
    /// PSI at or above which a shift is clinically relevant (unitless default). Seed: 0.2.
    pub psi_threshold: f64,
    /// Significance level of the (corrected) tests. Seed: 0.05.
    pub ks_test_threshold: f64,
    /// Absolute drop in accuracy against the baseline that alerts. Seed: 0.05.
    pub performance_drop_threshold: f64,
    /// Unitless effect threshold (robust Wasserstein, JS) for clinical relevance. Seed: 0.1.
    pub clinical_significance_threshold: f64,
    /// Raise alerts when drift is found. Seed: true.
    pub alert_on_drift: bool,
    /// Minimum hours between two alerts for the same check. Seed: 4.
    pub alert_cooldown_hours: u32,
    /// Multiple-testing correction across features.
    pub correction: Correction,
    /// Binning convention for PSI, KL, JS, Hellinger.
    pub binning: Binning,
    /// Minimum finite values in the window for a test.
    pub min_window: usize,
    /// Absolute increase of a feature's missing rate reported as a data-quality finding.
    pub missing_rate_increase: f64,
    /// Per-feature overrides.
    pub features: BTreeMap<String, FeatureOverride>,
    /// An alert opens when at least this many of the last `alert_window_count` checks drifted.
    pub alert_confirm_windows: usize,
    /// Checks looked back over for confirmation.
    pub alert_window_count: usize,
    /// Hysteresis: an open alert resolves only once the effect falls below this fraction of
    /// its threshold (and the check no longer drifts).
    pub alert_exit_fraction: f64,
    /// Request retraining when a check has drifted in this many consecutive windows.
    pub retrain_after_windows: Option<u32>,
    /// Request retraining when accuracy falls below this floor.
    pub retrain_accuracy_floor: Option<f64>,
    /// Command the CLI runs on a retraining request (with VIGIL_MODEL, VIGIL_VERSION,
    /// VIGIL_REPORT_ID and VIGIL_RETRAIN_REASON in its environment).
    pub retrain_command: Option<String>,
    /// URLs that receive alert notifications as JSON POSTs.
    pub webhooks: Vec<String>,
}

impl Default for DriftDetectorConfig {
    fn default() -> Self {
        DriftDetectorConfig {
            psi_threshold: 0.2,
            ks_test_threshold: 0.05,
            performance_drop_threshold: 0.05,
            clinical_significance_threshold: 0.1,
            alert_on_drift: true,
            alert_cooldown_hours: 4,
            correction: Correction::BenjaminiHochberg,
            binning: Binning::default(),
            min_window: 30,
            missing_rate_increase: 0.05,
            features: BTreeMap::new(),
            alert_confirm_windows: 1,
            alert_window_count: 1,
            alert_exit_fraction: 0.5,
            retrain_after_windows: None,
            retrain_accuracy_floor: None,
            retrain_command: None,
            webhooks: Vec::new(),
        }
    }
}

/// One feature's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    /// Not enough data to test.
    InsufficientData,
    /// No clinically relevant, significant shift.
    NoDrift,
    /// A clinically relevant effect that the test does not (yet) confirm.
    Warning,
    /// Significant after correction and clinically relevant.
    Drift,
}

impl Verdict {
    /// Stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::InsufficientData => "insufficient_data",
            Verdict::NoDrift => "no_drift",
            Verdict::Warning => "warning",
            Verdict::Drift => "drift",
        }
    }
}

/// What was computed for a feature.
#[derive(Debug, Clone, PartialEq)]
pub enum FeatureStats {
    /// Numeric feature statistics.
    Numeric(NumericCheck),
    /// Categorical feature statistics.
    Categorical(CategoricalCheck),
    /// Why it could not be tested.
    Insufficient(Insufficient),
}

/// Input to [`evaluate`]: one feature's statistics plus its missing rates.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureInput {
    /// Feature name.
    pub name: String,
    /// The statistics.
    pub stats: FeatureStats,
    /// Missing or non-finite share in the reference.
    pub missing_reference: f64,
    /// Missing or non-finite share in the current window.
    pub missing_current: f64,
}

/// One feature's line in the report.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureResult {
    /// Feature name.
    pub name: String,
    /// `ks`, `chi2` or `z` (or `none` if untested).
    pub test: &'static str,
    /// Test statistic.
    pub statistic: f64,
    /// Raw p-value.
    pub p_value: f64,
    /// p-value after the correction across features.
    pub adjusted_p: f64,
    /// Significance level applied.
    pub alpha: f64,
    /// The effect that decided clinical relevance.
    pub effect: Effect,
    /// Its value.
    pub effect_value: f64,
    /// Its threshold.
    pub threshold: f64,
    /// Outcome.
    pub verdict: Verdict,
    /// Why, in a sentence.
    pub reason: String,
    /// The full statistics.
    pub stats: FeatureStats,
}

/// A data-quality finding (not a distribution test).
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// Feature concerned.
    pub feature: String,
    /// `missing_rate_increase`, `unseen_categories`, `vanished_categories`, `constant`, `too_few_values`.
    pub kind: &'static str,
    /// Plain-language detail (names and rates, never values of rows).
    pub detail: String,
}

/// Overall status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Nothing relevant.
    NoDrift,
    /// Something to look at.
    Warning,
    /// Clinically relevant drift.
    Drift,
    /// Nothing could be tested.
    InsufficientData,
}

impl Status {
    /// Stable name (the seed's `report.status`).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::NoDrift => "no_drift",
            Status::Warning => "warning",
            Status::Drift => "drift",
            Status::InsufficientData => "insufficient_data",
        }
    }
}

/// The drift report (the seed's `detect_drift` result).
#[derive(Debug, Clone, PartialEq)]
pub struct DriftReport {
    /// Overall status.
    pub status: Status,
    /// Per-feature results, in input order.
    pub features: Vec<FeatureResult>,
    /// Data-quality findings.
    pub data_quality: Vec<Finding>,
    /// Recommendations in plain words.
    pub recommendations: Vec<String>,
    /// Conventions used (binning, correction, levels), for the record.
    pub conventions: BTreeMap<&'static str, String>,
}

fn adjust(p: &[f64], c: Correction) -> Vec<f64> {
    match c {
        Correction::BenjaminiHochberg => vigil_stats::drift::benjamini_hochberg(p),
        Correction::Bonferroni => vigil_stats::drift::bonferroni(p),
    }
}

/// Applies the correction and the clinical gate, and writes the report.
pub fn evaluate(config: &DriftDetectorConfig, inputs: Vec<FeatureInput>) -> DriftReport {
    // Raw p-values of the tested features, corrected together.
    let tested: Vec<(usize, &'static str, f64, f64)> = inputs
        .iter()
        .enumerate()
        .filter_map(|(i, f)| match &f.stats {
            FeatureStats::Numeric(n) => Some((i, "ks", n.ks.statistic, n.ks.pvalue)),
            FeatureStats::Categorical(c) => Some(match c.z_test {
                Some((z, p)) => (i, "z", z, p),
                None => (i, "chi2", c.chi2, c.pvalue),
            }),
            FeatureStats::Insufficient(_) => None,
        })
        .collect();
    let adjusted = adjust(&tested.iter().map(|t| t.3).collect::<Vec<_>>(), config.correction);
    let mut adjusted_by_index = BTreeMap::new();
    for (t, a) in tested.iter().zip(&adjusted) {
        adjusted_by_index.insert(t.0, (t.1, t.2, t.3, *a));
    }

    let mut findings = Vec::new();
    let mut results = Vec::new();
    for (i, f) in inputs.into_iter().enumerate() {
        let ov = config.features.get(&f.name).cloned().unwrap_or_default();
        let alpha = ov.alpha.unwrap_or(config.ks_test_threshold);
        if f.missing_current - f.missing_reference > config.missing_rate_increase {
            findings.push(Finding {
                feature: f.name.clone(),
                kind: "missing_rate_increase",
                detail: format!("missing or non-finite values rose from {:.1}% to {:.1}%", 100.0 * f.missing_reference, 100.0 * f.missing_current),
            });
        }
        let (effect, effect_value, threshold, also) = match (&f.stats, ov.effect) {
            (FeatureStats::Numeric(n), Some((e, thr))) => (e, numeric_effect(n, e), thr, None),
            (FeatureStats::Numeric(n), None) => (
                Effect::RobustWasserstein,
                n.wasserstein_robust,
                config.clinical_significance_threshold,
                Some((n.psi, config.psi_threshold)),
            ),
            (FeatureStats::Categorical(c), Some((Effect::JensenShannon, thr))) => (Effect::JensenShannon, c.js, thr, None),
            (FeatureStats::Categorical(c), _) => (Effect::Psi, c.psi, config.psi_threshold, Some((c.js, config.clinical_significance_threshold))),
            (FeatureStats::Insufficient(_), _) => (Effect::Psi, f64::NAN, f64::NAN, None),
        };
        if let FeatureStats::Categorical(c) = &f.stats {
            if !c.unseen.is_empty() {
                findings.push(Finding { feature: f.name.clone(), kind: "unseen_categories", detail: format!("{} categor(ies) never seen in the reference", c.unseen.len()) });
            }
            if !c.vanished.is_empty() {
                findings.push(Finding { feature: f.name.clone(), kind: "vanished_categories", detail: format!("{} reference categor(ies) absent now", c.vanished.len()) });
            }
        }
        let (test, statistic, p, adj) = adjusted_by_index.get(&i).copied().unwrap_or(("none", f64::NAN, f64::NAN, f64::NAN));
        let (verdict, reason) = match &f.stats {
            FeatureStats::Insufficient(why) => {
                let (kind, detail) = match why {
                    Insufficient::Constant => ("constant", "the feature is constant in both reference and window".to_owned()),
                    Insufficient::TooFewValues { reference, current } => ("too_few_values", format!("{reference} reference and {current} current usable values")),
                    Insufficient::HighCardinality { categories } => {
                        ("high_cardinality", format!("{categories} distinct values: looks like an identifier or free text; exclude it or declare it"))
                    }
                };
                findings.push(Finding { feature: f.name.clone(), kind, detail: detail.clone() });
                (Verdict::InsufficientData, detail)
            }
            _ => {
                let significant = adj < alpha;
                let relevant = effect_value >= threshold || also.is_some_and(|(v, t)| v >= t);
                match (significant, relevant) {
                    (true, true) => (Verdict::Drift, format!("significant after {} (p_adj = {adj:.3e}) and {} = {effect_value:.4} ≥ {threshold}", config.correction.as_str(), effect.as_str())),
                    (false, true) => (Verdict::Warning, format!("{} = {effect_value:.4} ≥ {threshold} but not significant (p_adj = {adj:.3e})", effect.as_str())),
                    (true, false) => (Verdict::NoDrift, format!("significant (p_adj = {adj:.3e}) but clinically negligible: {} = {effect_value:.4} < {threshold}", effect.as_str())),
                    (false, false) => (Verdict::NoDrift, "no significant or relevant shift".to_owned()),
                }
            }
        };
        results.push(FeatureResult {
            name: f.name,
            test,
            statistic,
            p_value: p,
            adjusted_p: adj,
            alpha,
            effect,
            effect_value,
            threshold,
            verdict,
            reason,
            stats: f.stats,
        });
    }

    let any = |v: Verdict| results.iter().any(|r| r.verdict == v);
    let status = if results.is_empty() || results.iter().all(|r| r.verdict == Verdict::InsufficientData) {
        Status::InsufficientData
    } else if any(Verdict::Drift) {
        Status::Drift
    } else if any(Verdict::Warning) || !findings.iter().all(|f| f.kind == "too_few_values" || f.kind == "constant") {
        Status::Warning
    } else {
        Status::NoDrift
    };
    let recommendations = recommend(status, &results, &findings);
    let mut conventions = BTreeMap::new();
    conventions.insert("binning", config.binning.name());
    conventions.insert("correction", config.correction.as_str().to_owned());
    conventions.insert("alpha", config.ks_test_threshold.to_string());
    conventions.insert("numeric_test", "ks_2samp (scipy-identical; exact when max(n) <= 10000)".to_owned());
    conventions.insert("categorical_test", "chi2_contingency (two-sample; Yates for 2x2), z-test for binary".to_owned());
    conventions.insert("default_effect", format!("wasserstein / (IQR/1.349) >= {} or PSI >= {}", config.clinical_significance_threshold, config.psi_threshold));
    conventions.insert("missing_values", "kept out of the tests; missing-rate changes reported as data quality".to_owned());
    DriftReport { status, features: results, data_quality: findings, recommendations, conventions }
}

fn numeric_effect(n: &NumericCheck, e: Effect) -> f64 {
    match e {
        Effect::MedianShift => n.median_shift.abs(),
        Effect::Wasserstein => n.wasserstein,
        Effect::RobustWasserstein => n.wasserstein_robust,
        Effect::NormedWasserstein => n.wasserstein_normed,
        Effect::Psi => n.psi,
        Effect::JensenShannon => n.js,
    }
}

fn recommend(status: Status, results: &[FeatureResult], findings: &[Finding]) -> Vec<String> {
    let names = |v: Verdict| results.iter().filter(|r| r.verdict == v).map(|r| r.name.as_str()).collect::<Vec<_>>().join(", ");
    let mut out = Vec::new();
    match status {
        Status::Drift => {
            out.push(format!("Clinically relevant drift in: {}. Review these inputs with the clinical owner before relying on new predictions.", names(Verdict::Drift)));
            out.push("Check for upstream changes (assay, coding, population, workflow) before retraining; if the shift is real and persistent, evaluate retraining on recent data.".to_owned());
        }
        Status::Warning => {
            let w = names(Verdict::Warning);
            if !w.is_empty() {
                out.push(format!("Large but unconfirmed shifts in: {w}. Collect a larger window and re-check."));
            }
        }
        Status::InsufficientData => out.push("Not enough usable data to test; add samples or widen the window.".to_owned()),
        Status::NoDrift => out.push("No clinically relevant drift; keep monitoring at the declared cadence.".to_owned()),
    }
    for f in findings.iter().filter(|f| f.kind != "too_few_values" && f.kind != "constant") {
        out.push(format!("Data quality, {}: {}.", f.feature, f.detail));
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use vigil_stats::profile::{FeatureProfile, check_numeric};

    fn sorted(p: FeatureProfile) -> Vec<f64> {
        match p {
            FeatureProfile::Numeric { sorted, .. } => sorted,
            FeatureProfile::Categorical { .. } => unreachable!(),
        }
    }

    fn normal(seed: u64, n: usize, shift: f64) -> Vec<f64> {
        let mut s = seed;
        let mut u = || {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut v: Vec<f64> = (0..n).map(|_| (0..12).map(|_| u()).sum::<f64>() - 6.0 + shift).collect();
        v.sort_by(f64::total_cmp);
        v
    }

    fn input(name: &str, r: &[f64], c: &[f64]) -> FeatureInput {
        FeatureInput { name: name.into(), stats: FeatureStats::Numeric(check_numeric(r, c, Binning::default()).unwrap()), missing_reference: 0.0, missing_current: 0.0 }
    }

    #[test]
    fn large_samples_tiny_shift_is_not_an_alarm_but_a_real_shift_is() {
        let r = normal(1, 200_000, 0.0);
        let tiny = normal(2, 200_000, 0.02); // KS p ~ 1e-9, effect 0.02 sd
        let real = normal(3, 200_000, 0.5);
        let report = evaluate(&DriftDetectorConfig::default(), vec![input("num_02", &r, &tiny), input("glucose", &r, &real)]);
        assert_eq!(report.features[0].verdict, Verdict::NoDrift, "{}", report.features[0].reason);
        assert!(report.features[0].adjusted_p < 0.05, "the test is significant; the gate stops the alarm");
        assert_eq!(report.features[1].verdict, Verdict::Drift);
        assert_eq!(report.status, Status::Drift);
        assert!(report.recommendations[0].contains("glucose"));
    }

    #[test]
    fn declared_units_decide_and_outliers_do_not() {
        let r = normal(4, 5_000, 0.0);
        let mut c = normal(5, 5_000, 0.0);
        // Five absurd outliers: they move the mean and std, not the median or robust scale.
        for x in c.iter_mut().take(5) {
            *x = 1e6;
        }
        c.sort_by(f64::total_cmp);
        let report = evaluate(&DriftDetectorConfig::default(), vec![input("bmi", &r, &c)]);
        assert_ne!(report.features[0].verdict, Verdict::Drift, "{}", report.features[0].reason);

        let shifted = normal(6, 5_000, 0.3); // 0.3 units
        let mut cfg = DriftDetectorConfig::default();
        cfg.features.insert("glucose".into(), FeatureOverride { effect: Some((Effect::MedianShift, 10.0)), alpha: None });
        let report = evaluate(&cfg, vec![input("glucose", &r, &shifted)]);
        assert_eq!(report.features[0].verdict, Verdict::NoDrift, "0.3 mg/dL is below the declared 10 mg/dL");
    }

    #[test]
    fn nothing_testable_is_insufficient_data() {
        let r = evaluate(
            &DriftDetectorConfig::default(),
            vec![FeatureInput { name: "x".into(), stats: FeatureStats::Insufficient(Insufficient::Constant), missing_reference: 0.0, missing_current: 0.0 }],
        );
        assert_eq!(r.status, Status::InsufficientData);
        assert!(r.features[0].p_value.is_nan() && r.features[0].verdict == Verdict::InsufficientData);
    }

    #[test]
    fn missing_rate_increase_is_a_data_quality_warning() {
        let r = normal(7, 1000, 0.0);
        let c = normal(8, 1000, 0.0);
        let mut i = input("num_18", &r, &c);
        i.missing_reference = 0.01;
        i.missing_current = 0.10;
        let report = evaluate(&DriftDetectorConfig::default(), vec![i]);
        assert_eq!(report.status, Status::Warning);
        assert_eq!(report.data_quality[0].kind, "missing_rate_increase");
        let _ = sorted(FeatureProfile::numeric([Some(1.0)]));
    }
}
