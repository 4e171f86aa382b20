//! Drift monitoring use cases (the seed's `DriftDetector`, persisted): per model version a
//! configuration, versioned baselines of feature profiles, batches of production samples
//! (features, predictions, prediction ids), labels that arrive later, and drift checks that
//! store their report. Every change and every check is audited in its own transaction.

use crate::audit::Outcome;
use crate::auth::{Action, Principal};
use crate::drift::{self, DriftDetectorConfig, DriftReport, Effect, FeatureInput, FeatureOverride, FeatureStats};
use crate::error::{Error, ErrorCode, Result};
use crate::ids::Timestamp;
use crate::registry::{Attempt, Registry};
use crate::store::{AlertRecord, BaselineRecord, BatchRecord, ReportRecord};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use vigil_stats::drift::Binning;
use vigil_stats::profile::{ByteReader, FeatureProfile, Insufficient, check_categorical, check_numeric};

/// Name under which the model's scores are profiled next to the features.
pub const PREDICTION: &str = "__prediction__";
const MAX_FEATURES: usize = 2_000;

/// One column of input data, stored compactly: 8 bytes a number, 4 bytes a category.
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    /// Numbers; NaN is missing.
    Numeric(Vec<f64>),
    /// Categories, dictionary-encoded: `codes[i]` indexes `dictionary`; `u32::MAX` is missing.
    Categorical {
        /// Distinct category names.
        dictionary: Vec<String>,
        /// One code per row.
        codes: Vec<u32>,
    },
}

/// Code of a missing category.
pub const MISSING: u32 = u32::MAX;

impl Column {
    /// A numeric column from optional values (`None` becomes NaN, i.e. missing).
    pub fn numeric<I: IntoIterator<Item = Option<f64>>>(values: I) -> Column {
        Column::Numeric(values.into_iter().map(|v| v.unwrap_or(f64::NAN)).collect())
    }

    /// A categorical column from optional names.
    pub fn categorical<S: AsRef<str>, I: IntoIterator<Item = Option<S>>>(values: I) -> Column {
        let mut index: HashMap<String, u32> = HashMap::new();
        let mut dictionary = Vec::new();
        let codes = values
            .into_iter()
            .map(|v| match v {
                None => MISSING,
                Some(s) => {
                    let s = s.as_ref();
                    match index.get(s) {
                        Some(c) => *c,
                        None => {
                            let c = dictionary.len() as u32;
                            dictionary.push(s.to_owned());
                            index.insert(s.to_owned(), c);
                            c
                        }
                    }
                }
            })
            .collect();
        Column::Categorical { dictionary, codes }
    }

    fn len(&self) -> usize {
        match self {
            Column::Numeric(v) => v.len(),
            Column::Categorical { codes, .. } => codes.len(),
        }
    }

    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Column::Numeric(_) => "numeric",
            Column::Categorical { .. } => "categorical",
        }
    }

    /// Category counts and missing count (categorical columns).
    fn counts(&self) -> (BTreeMap<String, u64>, u64) {
        match self {
            Column::Numeric(_) => (BTreeMap::new(), 0),
            Column::Categorical { dictionary, codes } => {
                let mut per_code = vec![0u64; dictionary.len()];
                let mut missing = 0u64;
                for &c in codes {
                    match per_code.get_mut(c as usize) {
                        Some(n) => *n += 1,
                        None => missing += 1,
                    }
                }
                let counts = dictionary.iter().zip(per_code).filter(|(_, n)| *n > 0).map(|(k, n)| (k.clone(), n)).collect();
                (counts, missing)
            }
        }
    }

    fn profile(&self) -> FeatureProfile {
        match self {
            Column::Numeric(v) => FeatureProfile::numeric(v.iter().map(|x| Some(*x))),
            Column::Categorical { .. } => {
                let (counts, missing) = self.counts();
                FeatureProfile::Categorical { counts, missing }
            }
        }
    }
}

/// A batch of rows: the seed's `feature_data` (plus predictions, ids and optional labels).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Batch {
    /// Feature columns by name.
    pub features: BTreeMap<String, Column>,
    /// Model scores, one per row.
    pub predictions: Option<Vec<Option<f64>>>,
    /// Prediction ids, one per row (labels that arrive later are matched on these).
    pub prediction_ids: Option<Vec<String>>,
    /// Labels known now, one per row.
    pub labels: Option<Vec<Option<String>>>,
}

fn feature_name_ok(name: &str) -> bool {
    !name.is_empty() && name.len() <= 256 && name != PREDICTION && !name.chars().any(char::is_control)
}

impl Batch {
    /// Number of rows, after checking that every column has the same length.
    pub fn rows(&self) -> Result<usize> {
        let bad = |m: String| Error::new(ErrorCode::InvalidManifest, m);
        if self.features.is_empty() {
            return Err(bad("the data has no feature columns".into()));
        }
        if self.features.len() > MAX_FEATURES {
            return Err(bad(format!("at most {MAX_FEATURES} feature columns")));
        }
        let mut n = None;
        for (name, col) in &self.features {
            if let Column::Categorical { dictionary, codes } = col
                && codes.iter().any(|&c| c != MISSING && c as usize >= dictionary.len())
            {
                return Err(bad(format!("column {} has category codes outside its dictionary", crate::ids::quote_key(name))));
            }
            if !feature_name_ok(name) {
                return Err(bad(format!("feature name {} is not allowed", crate::ids::quote_key(name))));
            }
            match n {
                None => n = Some(col.len()),
                Some(m) if m != col.len() => return Err(bad(format!("column {} has {} rows, others {m}", crate::ids::quote_key(name), col.len()))),
                _ => {}
            }
        }
        let n = n.unwrap_or(0);
        for (what, len) in [
            ("predictions", self.predictions.as_ref().map(Vec::len)),
            ("prediction ids", self.prediction_ids.as_ref().map(Vec::len)),
            ("labels", self.labels.as_ref().map(Vec::len)),
        ] {
            if let Some(l) = len
                && l != n
            {
                return Err(bad(format!("{what} have {l} rows, features {n}")));
            }
        }
        Ok(n)
    }

    /// Binary encoding for storage (`VBT1`, then typed columns).
    pub fn encode(&self) -> Vec<u8> {
        fn put_str(out: &mut Vec<u8>, s: Option<&str>) {
            match s {
                None => out.extend_from_slice(&u32::MAX.to_le_bytes()),
                Some(s) => {
                    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
                    out.extend_from_slice(s.as_bytes());
                }
            }
        }
        fn put_nums(out: &mut Vec<u8>, v: &[Option<f64>]) {
            for x in v {
                out.extend_from_slice(&x.unwrap_or(f64::NAN).to_le_bytes());
            }
        }
        let n = self.features.values().next().map(Column::len).unwrap_or(0);
        let mut out = b"VBT1".to_vec();
        out.extend_from_slice(&(n as u64).to_le_bytes());
        let cols = self.features.len() + [self.predictions.is_some(), self.prediction_ids.is_some(), self.labels.is_some()].iter().filter(|b| **b).count();
        out.extend_from_slice(&(cols as u32).to_le_bytes());
        for (name, col) in &self.features {
            put_str(&mut out, Some(name));
            match col {
                Column::Numeric(v) => {
                    out.push(b'n');
                    out.reserve(v.len() * 8);
                    for x in v {
                        out.extend_from_slice(&x.to_le_bytes());
                    }
                }
                Column::Categorical { dictionary, codes } => {
                    out.push(b'c');
                    out.extend_from_slice(&(dictionary.len() as u32).to_le_bytes());
                    dictionary.iter().for_each(|s| put_str(&mut out, Some(s)));
                    out.reserve(codes.len() * 4);
                    for c in codes {
                        out.extend_from_slice(&c.to_le_bytes());
                    }
                }
            }
        }
        if let Some(p) = &self.predictions {
            put_str(&mut out, Some(""));
            out.push(b'p');
            put_nums(&mut out, p);
        }
        if let Some(ids) = &self.prediction_ids {
            put_str(&mut out, Some(""));
            out.push(b'i');
            ids.iter().for_each(|s| put_str(&mut out, Some(s)));
        }
        if let Some(l) = &self.labels {
            put_str(&mut out, Some(""));
            out.push(b'l');
            l.iter().for_each(|s| put_str(&mut out, s.as_deref()));
        }
        out
    }

    /// Decodes [`Batch::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Batch> {
        let corrupt = || Error::new(ErrorCode::IntegrityViolation, "a stored sample batch is not readable");
        let mut r = ByteReader(bytes);
        if r.take(4).ok_or_else(corrupt)? != b"VBT1" {
            return Err(corrupt());
        }
        let n = r.u64().ok_or_else(corrupt)? as usize;
        let cols = r.u32().ok_or_else(corrupt)?;
        let mut batch = Batch::default();
        for _ in 0..cols {
            let name = r.string().ok_or_else(corrupt)?.ok_or_else(corrupt)?;
            let kind = r.take(1).ok_or_else(corrupt)?[0];
            match kind {
                b'n' | b'p' => {
                    let raw = r.take(n.checked_mul(8).ok_or_else(corrupt)?).ok_or_else(corrupt)?;
                    let v = raw.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])));
                    if kind == b'n' {
                        batch.features.insert(name, Column::Numeric(v.collect()));
                    } else {
                        batch.predictions = Some(v.map(|x| if x.is_nan() { None } else { Some(x) }).collect());
                    }
                }
                b'c' => {
                    let d = r.u32().ok_or_else(corrupt)?;
                    let mut dictionary = Vec::with_capacity(d.min(1 << 20) as usize);
                    for _ in 0..d {
                        dictionary.push(r.string().ok_or_else(corrupt)?.ok_or_else(corrupt)?);
                    }
                    let raw = r.take(n.checked_mul(4).ok_or_else(corrupt)?).ok_or_else(corrupt)?;
                    let codes = raw.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().unwrap_or([0; 4]))).collect();
                    batch.features.insert(name, Column::Categorical { dictionary, codes });
                }
                b'l' | b'i' => {
                    let mut v = Vec::with_capacity(n);
                    for _ in 0..n {
                        v.push(r.string().ok_or_else(corrupt)?);
                    }
                    if kind == b'l' {
                        batch.labels = Some(v);
                    } else {
                        batch.prediction_ids = Some(v.into_iter().map(Option::unwrap_or_default).collect());
                    }
                }
                _ => return Err(corrupt()),
            }
        }
        if !r.0.is_empty() {
            return Err(corrupt());
        }
        Ok(batch)
    }
}

/// Reads a config from JSON (fields of the seed's `DriftDetectorConfig`, all optional; plus
/// `correction`, `binning`, `min_window` and per-feature `features`).
pub fn config_from_json(v: &Value) -> Result<DriftDetectorConfig> {
    let bad = |m: &str| Error::new(ErrorCode::InvalidPolicy, format!("drift config: {m}"));
    let obj = v.as_object().ok_or_else(|| bad("must be an object"))?;
    let mut c = DriftDetectorConfig::default();
    for (k, val) in obj {
        let num = || val.as_f64().filter(|x| x.is_finite() && *x >= 0.0).ok_or_else(|| bad(&format!("{} must be a non-negative number", crate::ids::quote_key(k))));
        match k.as_str() {
            "psi_threshold" => c.psi_threshold = num()?,
            "ks_test_threshold" => c.ks_test_threshold = num()?.min(1.0),
            "performance_drop_threshold" => c.performance_drop_threshold = num()?,
            "clinical_significance_threshold" => c.clinical_significance_threshold = num()?,
            "alert_on_drift" => c.alert_on_drift = val.as_bool().ok_or_else(|| bad("alert_on_drift must be true or false"))?,
            "alert_cooldown_hours" => c.alert_cooldown_hours = val.as_u64().and_then(|h| u32::try_from(h).ok()).filter(|h| *h <= 87_600).ok_or_else(|| bad("alert_cooldown_hours must be 0..87600"))?,
            "min_window" => c.min_window = val.as_u64().map(|n| n as usize).ok_or_else(|| bad("min_window must be a whole number"))?,
            "correction" => {
                c.correction = match val.as_str() {
                    Some("benjamini_hochberg") | Some("bh") => drift::Correction::BenjaminiHochberg,
                    Some("bonferroni") => drift::Correction::Bonferroni,
                    _ => return Err(bad("correction is benjamini_hochberg or bonferroni")),
                }
            }
            "binning" => {
                c.binning = match val.as_str() {
                    Some("reference_quantiles") => Binning::default(),
                    Some("evidently") => Binning::Evidently,
                    _ => return Err(bad("binning is reference_quantiles or evidently")),
                }
            }
            "features" => {
                let f = val.as_object().ok_or_else(|| bad("features must be an object"))?;
                for (name, o) in f {
                    let mut ov = FeatureOverride::default();
                    if let Some(e) = o.get("effect") {
                        let measure = e.get("measure").and_then(Value::as_str).and_then(Effect::parse).ok_or_else(|| bad("effect.measure is median_shift, wasserstein, wasserstein_robust, wasserstein_normed, psi or jensen_shannon"))?;
                        let threshold = e.get("threshold").and_then(Value::as_f64).filter(|x| x.is_finite() && *x >= 0.0).ok_or_else(|| bad("effect.threshold must be a non-negative number"))?;
                        ov.effect = Some((measure, threshold));
                    }
                    if let Some(a) = o.get("alpha") {
                        ov.alpha = Some(a.as_f64().filter(|x| (0.0..=1.0).contains(x)).ok_or_else(|| bad("alpha must be in [0, 1]"))?);
                    }
                    c.features.insert(name.clone(), ov);
                }
            }
            "alert_confirm_windows" => c.alert_confirm_windows = val.as_u64().filter(|n| (1..=100).contains(n)).ok_or_else(|| bad("alert_confirm_windows must be 1..100"))? as usize,
            "alert_window_count" => c.alert_window_count = val.as_u64().filter(|n| (1..=100).contains(n)).ok_or_else(|| bad("alert_window_count must be 1..100"))? as usize,
            "alert_exit_fraction" => c.alert_exit_fraction = val.as_f64().filter(|x| (0.0..=1.0).contains(x)).ok_or_else(|| bad("alert_exit_fraction must be in [0, 1]"))?,
            "retrain_after_windows" => c.retrain_after_windows = if val.is_null() { None } else { Some(val.as_u64().and_then(|n| u32::try_from(n).ok()).filter(|n| (1..=100).contains(n)).ok_or_else(|| bad("retrain_after_windows must be 1..100"))?) },
            "retrain_accuracy_floor" => c.retrain_accuracy_floor = if val.is_null() { None } else { Some(val.as_f64().filter(|x| (0.0..=1.0).contains(x)).ok_or_else(|| bad("retrain_accuracy_floor must be in [0, 1]"))?) },
            "retrain_command" => c.retrain_command = if val.is_null() { None } else { Some(val.as_str().filter(|s| !s.trim().is_empty()).ok_or_else(|| bad("retrain_command must be a command line"))?.to_owned()) },
            "webhooks" => {
                let list = val.as_array().ok_or_else(|| bad("webhooks must be a list of http(s) URLs"))?;
                c.webhooks = list
                    .iter()
                    .map(|u| {
                        u.as_str()
                            .filter(|u| (u.starts_with("https://") || u.starts_with("http://")) && u.len() <= 2048 && !u.chars().any(char::is_whitespace))
                            .map(str::to_owned)
                            .ok_or_else(|| bad("webhooks must be a list of http(s) URLs"))
                    })
                    .collect::<Result<_>>()?;
            }
            other => return Err(bad(&format!("unknown field {}", crate::ids::quote_key(other)))),
        }
    }
    Ok(c)
}

/// The JSON form of a config (the inverse of [`config_from_json`]).
pub fn config_to_json(c: &DriftDetectorConfig) -> Value {
    let features: serde_json::Map<String, Value> = c
        .features
        .iter()
        .map(|(k, o)| {
            let mut m = serde_json::Map::new();
            if let Some((e, t)) = o.effect {
                m.insert("effect".into(), json!({"measure": e.as_str(), "threshold": t}));
            }
            if let Some(a) = o.alpha {
                m.insert("alpha".into(), json!(a));
            }
            (k.clone(), Value::Object(m))
        })
        .collect();
    json!({
        "psi_threshold": c.psi_threshold,
        "ks_test_threshold": c.ks_test_threshold,
        "performance_drop_threshold": c.performance_drop_threshold,
        "clinical_significance_threshold": c.clinical_significance_threshold,
        "alert_on_drift": c.alert_on_drift,
        "alert_cooldown_hours": c.alert_cooldown_hours,
        "correction": c.correction.as_str(),
        "binning": if c.binning == Binning::Evidently { "evidently" } else { "reference_quantiles" },
        "min_window": c.min_window,
        "features": features,
        "alert_confirm_windows": c.alert_confirm_windows,
        "alert_window_count": c.alert_window_count,
        "alert_exit_fraction": c.alert_exit_fraction,
        "retrain_after_windows": c.retrain_after_windows,
        "retrain_accuracy_floor": c.retrain_accuracy_floor,
        "retrain_command": c.retrain_command,
        "webhooks": c.webhooks,
    })
}

/// Which production samples a check looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// The newest batches holding at least this many rows.
    LastRows(i64),
    /// Batches received at or after this time.
    Since(Timestamp),
    /// Batches received since the newest baseline was set.
    SinceBaseline,
}

/// Reference and current distribution of one feature, for plots.
#[derive(Debug, Clone, PartialEq)]
pub enum Distribution {
    /// Equal-width bins over the central 99% of both samples.
    Numeric {
        /// Bin edges (bins + 1).
        edges: Vec<f64>,
        /// Reference share per bin.
        reference: Vec<f64>,
        /// Current share per bin.
        current: Vec<f64>,
    },
    /// Category shares (most frequent first, at most 20).
    Categorical {
        /// Categories.
        categories: Vec<String>,
        /// Reference share per category.
        reference: Vec<f64>,
        /// Current share per category.
        current: Vec<f64>,
    },
}

fn numeric_distribution(r: &[f64], c: &[f64]) -> Option<Distribution> {
    if r.is_empty() || c.is_empty() {
        return None;
    }
    let q = vigil_stats::drift::quantile_sorted;
    let lo = q(r, 0.005).min(q(c, 0.005));
    let hi = q(r, 0.995).max(q(c, 0.995));
    let bins = 30usize;
    let (lo, hi) = if hi > lo { (lo, hi) } else { (lo - 0.5, hi + 0.5) };
    let width = (hi - lo) / bins as f64;
    let edges: Vec<f64> = (0..=bins).map(|i| lo + width * i as f64).collect();
    let share = |s: &[f64]| -> Vec<f64> {
        let mut counts = vec![0usize; bins];
        for &x in s {
            let b = (((x - lo) / width).floor().max(0.0) as usize).min(bins - 1);
            counts[b] += 1;
        }
        counts.iter().map(|&n| n as f64 / s.len() as f64).collect()
    };
    Some(Distribution::Numeric { reference: share(r), current: share(c), edges })
}

fn categorical_distribution(r: &BTreeMap<String, u64>, c: &BTreeMap<String, u64>) -> Option<Distribution> {
    let (nr, nc) = (r.values().sum::<u64>() as f64, c.values().sum::<u64>() as f64);
    if nr == 0.0 || nc == 0.0 {
        return None;
    }
    let mut cats: Vec<(&String, u64)> = r.keys().chain(c.keys()).map(|k| (k, r.get(k).copied().unwrap_or(0) + c.get(k).copied().unwrap_or(0))).collect();
    cats.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    cats.dedup_by(|a, b| a.0 == b.0);
    cats.truncate(20);
    Some(Distribution::Categorical {
        reference: cats.iter().map(|(k, _)| r.get(*k).copied().unwrap_or(0) as f64 / nr).collect(),
        current: cats.iter().map(|(k, _)| c.get(*k).copied().unwrap_or(0) as f64 / nc).collect(),
        categories: cats.into_iter().map(|(k, _)| k.clone()).collect(),
    })
}

/// Outcome of a drift check.
#[derive(Debug, Clone)]
pub struct DriftCheck {
    /// Stored report id (`dr_…`).
    pub report_id: String,
    /// The baseline it was checked against.
    pub baseline: BaselineRecord,
    /// Rows in the window.
    pub window_rows: usize,
    /// The feature report.
    pub report: DriftReport,
    /// Prediction drift (scores), if the baseline and window have predictions.
    pub prediction: Option<drift::FeatureResult>,
    /// Accuracy now versus the baseline, if labels are known.
    pub performance: Option<Performance>,
    /// Reference and current distributions per feature (for plots), in report order.
    pub distributions: Vec<(String, Distribution)>,
    /// Alert changes this check caused.
    pub alerts: Vec<AlertChange>,
    /// Why retraining was requested, if it was.
    pub retrain: Option<String>,
    /// The configured retraining command (for the caller to run).
    pub retrain_command: Option<String>,
}

/// What a check did to one alert.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertChange {
    /// The alert.
    pub alert_id: String,
    /// `feature:<name>`, `prediction` or `performance`.
    pub check_key: String,
    /// `opened`, `confirmed`, `resolved`.
    pub change: &'static str,
    /// Whether a notification was queued (false inside the cooldown).
    pub notified: bool,
}

/// Realised performance on labelled rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Performance {
    /// Labelled rows in the window.
    pub labelled: usize,
    /// Accuracy at threshold 0.5 in the window.
    pub accuracy: f64,
    /// Baseline accuracy (from baseline labels, else the version's registered `accuracy`).
    pub baseline_accuracy: Option<f64>,
    /// Whether the drop exceeds `performance_drop_threshold`.
    pub degraded: bool,
}

fn label_value(s: &str) -> Option<f64> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "1.0" | "true" | "yes" | "positive" => Some(1.0),
        "0" | "0.0" | "false" | "no" | "negative" => Some(0.0),
        _ => None,
    }
}

fn accuracy(pairs: impl Iterator<Item = (f64, f64)>) -> Option<(usize, f64)> {
    let (mut n, mut ok) = (0usize, 0usize);
    for (score, label) in pairs {
        n += 1;
        ok += usize::from((score >= 0.5) == (label >= 0.5));
    }
    (n > 0).then(|| (n, ok as f64 / n as f64))
}

impl Registry {
    fn monitor_attempt<'a>(&self, actor: &'a Principal, action: &'a str, version_id: &'a str) -> Attempt<'a> {
        let v = self.read(|tx| tx.get_version(version_id)).ok().flatten();
        Attempt {
            actor: actor.user_id().as_str(),
            action,
            entity_type: "model_version",
            entity_id: version_id,
            model: v.as_ref().map(|v| v.model_name.to_string()),
            version: v.as_ref().map(|v| v.version.to_string()),
        }
    }

    /// The newest baseline's features and whether each is numeric (`None` if no baseline).
    pub fn baseline_features(&self, version_id: &str) -> Result<Option<Vec<(String, bool)>>> {
        self.read(|tx| {
            Self::load_version(tx, version_id)?;
            Ok(tx.latest_baseline(version_id)?.map(|(_, profiles)| {
                profiles
                    .into_iter()
                    .filter(|(k, _)| !k.starts_with("__"))
                    .map(|(k, b)| {
                        let numeric = matches!(FeatureProfile::decode(&b), Some(FeatureProfile::Numeric { .. }));
                        (k, numeric)
                    })
                    .collect()
            }))
        })
    }

    /// The drift configuration of a version (defaults if never set).
    pub fn drift_config(&self, version_id: &str) -> Result<DriftDetectorConfig> {
        self.read(|tx| {
            Self::load_version(tx, version_id)?;
            match tx.get_drift_config(version_id)? {
                None => Ok(DriftDetectorConfig::default()),
                Some(s) => config_from_json(&serde_json::from_str(&s).map_err(|_| Error::new(ErrorCode::IntegrityViolation, "stored drift config is not JSON"))?),
            }
        })
    }

    /// Sets the drift configuration of a version (audited with old and new values).
    pub fn set_drift_config(&self, actor: &Principal, version_id: &str, config: &DriftDetectorConfig) -> Result<()> {
        let attempt = self.monitor_attempt(actor, "drift.config", version_id);
        self.governed(attempt, |tx| {
            let user = Self::acting_user(tx, actor, Action::Monitor)?;
            let v = Self::load_version(tx, version_id)?;
            let old = tx.get_drift_config(version_id)?.and_then(|s| serde_json::from_str::<Value>(&s).ok());
            let new = config_to_json(config);
            tx.put_drift_config(version_id, &crate::canonical::encode(&new), user.id.as_str(), self.clock.now())?;
            tx.append_audit(self.version_event(user.id.as_str(), "drift.config", &v, json!({"old": old, "new": new})))?;
            Ok(())
        })
    }

    /// Profiles training data as a new, versioned baseline (the seed's `set_baseline`).
    /// Predictions, if given, are profiled as prediction-drift reference; labels with
    /// predictions give the baseline accuracy.
    pub fn set_baseline(&self, actor: &Principal, version_id: &str, data: &Batch) -> Result<BaselineRecord> {
        let rows = data.rows()?;
        let kinds: BTreeMap<String, &'static str> = data.features.iter().map(|(k, c)| (k.clone(), c.kind())).collect();
        self.store_baseline(actor, version_id, rows, kinds, data.predictions.is_some(), false, |tx, baseline_id| {
            // One feature at a time: profile (sort), encode, store, drop. Holding every encoded
            // profile at once would double the baseline's memory; the price is that profiling
            // happens inside the write transaction (about a second per million rows x 25
            // features on the project machine).
            for (name, col) in &data.features {
                tx.insert_profile(baseline_id, name, &col.profile().encode())?;
            }
            if let Some(p) = &data.predictions {
                tx.insert_profile(baseline_id, PREDICTION, &FeatureProfile::numeric(p.iter().copied()).encode())?;
                if let Some(l) = &data.labels
                    && let Some((_, a)) = accuracy(p.iter().zip(l).filter_map(|(s, l)| Some(((*s)?, label_value(l.as_deref()?)?))))
                {
                    tx.insert_profile(baseline_id, "__accuracy__", &FeatureProfile::numeric([Some(a)]).encode())?;
                }
            }
            Ok(())
        })
    }

    /// Sets a baseline from feature profiles computed elsewhere, e.g. one per partition of a
    /// training set and merged with [`FeatureProfile::merge`] (exact: the merged profile equals
    /// the profile of the whole). `rows` is the total row count.
    pub fn set_baseline_profiles(&self, actor: &Principal, version_id: &str, profiles: &[(String, FeatureProfile)], rows: usize) -> Result<BaselineRecord> {
        if profiles.is_empty() {
            return Err(Error::new(ErrorCode::InvalidManifest, "a baseline needs at least one feature"));
        }
        if let Some((name, _)) = profiles.iter().find(|(k, _)| !(feature_name_ok(k) || k == PREDICTION)) {
            return Err(Error::new(ErrorCode::InvalidManifest, format!("feature name {} is not allowed", crate::ids::quote_key(name))));
        }
        let kinds: BTreeMap<String, &'static str> = profiles
            .iter()
            .filter(|(k, _)| k != PREDICTION)
            .map(|(k, p)| (k.clone(), if matches!(p, FeatureProfile::Numeric { .. }) { "numeric" } else { "categorical" }))
            .collect();
        let predictions = profiles.iter().any(|(k, _)| k == PREDICTION);
        self.store_baseline(actor, version_id, rows, kinds, predictions, true, |tx, baseline_id| {
            for (name, p) in profiles {
                tx.insert_profile(baseline_id, name, &p.encode())?;
            }
            Ok(())
        })
    }

    /// The shared part of setting a baseline: the next baseline version, its record, its
    /// profiles (written by `write_profiles`) and the audit event, in one transaction.
    #[allow(clippy::too_many_arguments)]
    fn store_baseline(
        &self,
        actor: &Principal,
        version_id: &str,
        rows: usize,
        kinds: BTreeMap<String, &'static str>,
        predictions: bool,
        merged: bool,
        mut write_profiles: impl FnMut(&mut dyn crate::store::Tx, &str) -> Result<()>,
    ) -> Result<BaselineRecord> {
        let attempt = self.monitor_attempt(actor, "drift.baseline", version_id);
        self.governed(attempt, |tx| {
            let user = Self::acting_user(tx, actor, Action::Monitor)?;
            let v = Self::load_version(tx, version_id)?;
            let b = BaselineRecord {
                id: self.ids.new_id("bl"),
                model_version_id: v.id.clone(),
                baseline_version: tx.max_baseline_version(&v.id)? + 1,
                rows: rows as i64,
                created_by: user.id.to_string(),
                created_at: self.clock.now(),
            };
            tx.insert_baseline(&b)?;
            write_profiles(tx, &b.id)?;
            tx.append_audit(self.version_event(
                user.id.as_str(),
                "drift.baseline",
                &v,
                json!({"new": {"baseline_id": b.id, "baseline_version": b.baseline_version, "rows": rows, "features": kinds, "predictions": predictions, "merged_profiles": merged}}),
            ))?;
            Ok(b.clone())
        })
    }

    /// Profiles of every column of a batch (features, and predictions under [`PREDICTION`]).
    pub fn profile_batch(data: &Batch) -> Vec<(String, FeatureProfile)> {
        let mut out: Vec<(String, FeatureProfile)> = data.features.iter().map(|(k, c)| (k.clone(), c.profile())).collect();
        if let Some(p) = &data.predictions {
            out.push((PREDICTION.to_owned(), FeatureProfile::numeric(p.iter().copied())));
        }
        out
    }

    /// Appends production samples (the seed's `add_samples`). Columns must match the baseline's
    /// feature types; labels given with prediction ids are stored for later performance checks.
    pub fn add_samples(&self, actor: &Principal, version_id: &str, data: &Batch) -> Result<BatchRecord> {
        let rows = data.rows()?;
        let payload = data.encode();
        let attempt = self.monitor_attempt(actor, "drift.samples", version_id);
        self.governed(attempt, |tx| {
            let user = Self::acting_user(tx, actor, Action::Monitor)?;
            let v = Self::load_version(tx, version_id)?;
            if let Err(why) = Self::kinds_match_baseline(tx, &v.id, data)? {
                return Err(Error::new(ErrorCode::InvalidManifest, why));
            }
            let b = BatchRecord {
                id: self.ids.new_id("bt"),
                model_version_id: v.id.clone(),
                batch_seq: tx.max_batch_seq(&v.id)? + 1,
                rows: rows as i64,
                received_at: self.clock.now(),
                created_by: user.id.to_string(),
                payload: payload.clone(),
            };
            tx.insert_batch(&b)?;
            if let (Some(ids), Some(labels)) = (&data.prediction_ids, &data.labels) {
                let pairs: Vec<(String, String)> = ids.iter().zip(labels).filter_map(|(i, l)| Some((i.clone(), l.clone()?))).collect();
                tx.upsert_labels(&v.id, &pairs, b.received_at)?;
            }
            tx.append_audit(self.version_event(user.id.as_str(), "drift.samples", &v, json!({"new": {"batch_id": b.id, "batch_seq": b.batch_seq, "rows": rows}})))?;
            Ok(b.clone())
        })
    }

    /// Records labels that arrived after the predictions, keyed by prediction id.
    pub fn add_labels(&self, actor: &Principal, version_id: &str, labels: &[(String, String)]) -> Result<usize> {
        let attempt = self.monitor_attempt(actor, "drift.labels", version_id);
        self.governed(attempt, |tx| {
            let user = Self::acting_user(tx, actor, Action::Monitor)?;
            let v = Self::load_version(tx, version_id)?;
            tx.upsert_labels(&v.id, labels, self.clock.now())?;
            tx.append_audit(self.version_event(user.id.as_str(), "drift.labels", &v, json!({"new": {"labels": labels.len()}})))?;
            Ok(labels.len())
        })
    }

    /// Checks the production window against the newest baseline (the seed's `detect_drift`),
    /// stores the report and audits the outcome.
    pub fn detect_drift(&self, actor: &Principal, version_id: &str, window: Window) -> Result<DriftCheck> {
        self.check(actor, version_id, Some(window), None)
    }

    /// Checks given data (not stored as samples) against the newest baseline; the report is
    /// stored and audited like any other check.
    pub fn detect_drift_on(&self, actor: &Principal, version_id: &str, data: &Batch) -> Result<DriftCheck> {
        data.rows()?;
        self.check(actor, version_id, None, Some(data))
    }

    fn check(&self, actor: &Principal, version_id: &str, window: Option<Window>, given: Option<&Batch>) -> Result<DriftCheck> {
        let attempt = self.monitor_attempt(actor, "drift.check", version_id);
        // Read everything in one snapshot, compute outside any transaction, then store.
        let loaded = self.read(|tx| {
            Self::acting_user(tx, actor, Action::CheckDrift)?;
            let v = Self::load_version(tx, version_id)?;
            let config = match tx.get_drift_config(&v.id)? {
                None => DriftDetectorConfig::default(),
                Some(s) => config_from_json(&serde_json::from_str(&s).map_err(|_| Error::new(ErrorCode::IntegrityViolation, "stored drift config is not JSON"))?)?,
            };
            let baseline = tx
                .latest_baseline(&v.id)?
                .ok_or_else(|| Error::new(ErrorCode::BaselineNotFound, format!("{} has no drift baseline; set one with 'vigil drift baseline'", v.reference())))?;
            let batches = match window {
                Some(Window::LastRows(n)) => tx.recent_batches(&v.id, None, Some(n))?,
                Some(Window::Since(t)) => tx.recent_batches(&v.id, Some(t), None)?,
                Some(Window::SinceBaseline) => tx.recent_batches(&v.id, Some(baseline.0.created_at), None)?,
                None => Vec::new(),
            };
            let labels = if batches.is_empty() { HashMap::new() } else { tx.labels(&v.id)? };
            // Batches of logged predictions are read from the segments that hold them.
            let mut bodies: HashMap<String, Vec<u8>> = HashMap::new();
            for b in &batches {
                if let Some(segment_id) = crate::predlog::segment_ref(&b.payload)
                    && !bodies.contains_key(segment_id)
                {
                    let body = tx
                        .prediction_segment_body(segment_id)?
                        .ok_or_else(|| Error::new(ErrorCode::IntegrityViolation, format!("drift batch {} refers to a prediction log segment that is not stored", b.id)))?;
                    bodies.insert(segment_id.to_owned(), body);
                }
            }
            Ok((v, config, baseline, batches, labels, bodies))
        });
        let (v, config, (baseline, profiles), batches, labels, bodies) = match loaded {
            Ok(x) => x,
            Err(e) => {
                if !matches!(e.code(), ErrorCode::StorageFailure | ErrorCode::DatabaseCorrupt) {
                    self.audit_refusal(&attempt, &e)?;
                }
                return Err(e);
            }
        };
        let mut decoded = Vec::with_capacity(batches.len());
        for b in batches.iter().rev() {
            decoded.push(match crate::predlog::segment_ref(&b.payload) {
                Some(segment_id) => crate::predlog::logged_batch(&bodies[segment_id], &b.model_version_id)?,
                None => Batch::decode(&b.payload)?,
            });
        }
        drop(bodies);
        let mut window_rows: usize = batches.iter().map(|b| b.rows as usize).sum();
        // Borrow the given data rather than copying it: a window can be most of the memory.
        let mut window: Vec<&Batch> = decoded.iter().collect();
        if let Some(g) = given {
            window_rows = g.rows()?;
            window.push(g);
        }
        let decoded = window;
        let profiles: Vec<(String, FeatureProfile)> = profiles
            .into_iter()
            .map(|(k, b)| FeatureProfile::decode(&b).map(|p| (k, p)).ok_or_else(|| Error::new(ErrorCode::IntegrityViolation, "a stored baseline profile is not readable")))
            .collect::<Result<_>>()?;
        let baseline_accuracy = profiles
            .iter()
            .find(|(k, _)| k == "__accuracy__")
            .and_then(|(_, p)| match p {
                FeatureProfile::Numeric { sorted, .. } => sorted.first().copied(),
                FeatureProfile::Categorical { .. } => None,
            })
            .or_else(|| v.content.metrics.get("accuracy"));
        let features: Vec<&(String, FeatureProfile)> = profiles.iter().filter(|(k, _)| !k.starts_with("__")).collect();

        // Per-feature statistics, features split across the available cores.
        let check_one = |(name, reference): &(String, FeatureProfile)| -> (FeatureInput, Option<Distribution>) { check_feature(name, reference, &decoded, &config) };
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).clamp(1, 8);
        let checked: Vec<(FeatureInput, Option<Distribution>)> = if threads == 1 || features.len() < 2 {
            features.iter().map(|f| check_one(f)).collect()
        } else {
            let chunk = features.len().div_ceil(threads);
            std::thread::scope(|s| {
                let handles: Vec<_> = features.chunks(chunk).map(|c| s.spawn(move || c.iter().map(|f| check_one(f)).collect::<Vec<_>>())).collect();
                handles.into_iter().flat_map(|h| h.join().unwrap_or_default()).collect()
            })
        };
        let mut distributions = Vec::new();
        let mut inputs = Vec::with_capacity(checked.len());
        for (input, dist) in checked {
            if let Some(d) = dist {
                distributions.push((input.name.clone(), d));
            }
            inputs.push(input);
        }
        let report = drift::evaluate(&config, inputs);
        let prediction = profiles.iter().find(|(k, _)| k == PREDICTION).map(|(_, reference)| {
            let cur: Vec<Option<f64>> = decoded.iter().flat_map(|b| b.predictions.clone().unwrap_or_default()).collect();
            let input = numeric_input("prediction", reference, FeatureProfile::numeric(cur), &config);
            drift::evaluate(&config, vec![input]).features.remove(0)
        });
        let performance = {
            let pairs: Vec<(f64, f64)> = decoded
                .iter()
                .flat_map(|b| {
                    let (Some(p), Some(ids)) = (&b.predictions, &b.prediction_ids) else { return Vec::new() };
                    p.iter().zip(ids).filter_map(|(s, id)| Some(((*s)?, label_value(labels.get(id)?)?))).collect()
                })
                .collect();
            accuracy(pairs.into_iter()).map(|(labelled, acc)| Performance {
                labelled,
                accuracy: acc,
                baseline_accuracy,
                degraded: baseline_accuracy.is_some_and(|b| b - acc > config.performance_drop_threshold),
            })
        };

        let mut status = report.status;
        if performance.as_ref().is_some_and(|p| p.degraded) || prediction.as_ref().is_some_and(|p| p.verdict == drift::Verdict::Drift) {
            status = drift::Status::Drift;
        }
        let report = DriftReport { status, ..report };
        let mut check = DriftCheck {
            report_id: self.ids.new_id("dr"),
            baseline: baseline.clone(),
            window_rows,
            report,
            prediction,
            performance,
            distributions,
            alerts: Vec::new(),
            retrain: None,
            retrain_command: config.retrain_command.clone(),
        };
        let outcomes = check_outcomes(&check, &config);
        let summary = report_json(&check);
        let drifted: Vec<&str> = check.report.features.iter().filter(|f| f.verdict == drift::Verdict::Drift).map(|f| f.name.as_str()).collect();
        let (alerts, retrain) = self.governed(attempt, |tx| {
            let user = Self::acting_user(tx, actor, Action::CheckDrift)?;
            let now = self.clock.now();
            tx.insert_drift_report(&ReportRecord {
                id: check.report_id.clone(),
                model_version_id: v.id.clone(),
                baseline_id: baseline.id.clone(),
                status: check.report.status.as_str().to_owned(),
                report: summary.to_string(),
                created_by: user.id.to_string(),
                created_at: now,
            })?;
            tx.append_audit(self.version_event(
                user.id.as_str(),
                "drift.check",
                &v,
                json!({"new": {"report_id": check.report_id, "status": check.report.status.as_str(), "drifted": drifted, "window_rows": window_rows, "baseline_version": baseline.baseline_version}}),
            ))?;
            self.update_alerts(tx, &v, &config, &outcomes, &check, now)
        })?;
        check.alerts = alerts;
        check.retrain = retrain;
        Ok(check)
    }

    /// The alert state machine for every check outcome of one drift check: confirmation over
    /// k of the last n windows, hysteresis on exit, cooldown between notifications, and the
    /// retraining rule. Runs inside the check's transaction.
    fn update_alerts(
        &self,
        tx: &mut dyn crate::store::Tx,
        v: &crate::model::ModelVersion,
        config: &DriftDetectorConfig,
        outcomes: &[CheckOutcome],
        check: &DriftCheck,
        now: Timestamp,
    ) -> Result<(Vec<AlertChange>, Option<String>)> {
        let mut changes = Vec::new();
        let mut retrain = None;
        let keep = config.alert_window_count.max(config.retrain_after_windows.unwrap_or(1) as usize).max(1);
        for o in outcomes {
            let (history, last_notified) = tx.get_check_state(&v.id, &o.key)?.unwrap_or_else(|| ("[]".to_owned(), None));
            let mut history: Vec<bool> = serde_json::from_str(&history).unwrap_or_default();
            history.push(o.drift);
            if history.len() > keep {
                history.drain(..history.len() - keep);
            }
            let recent = &history[history.len().saturating_sub(config.alert_window_count)..];
            let confirmed = recent.iter().filter(|d| **d).count() >= config.alert_confirm_windows;
            let cooldown_over = last_notified.is_none_or(|t| t.plus_hours(config.alert_cooldown_hours).is_none_or(|until| now >= until));
            let mut notified_at = last_notified;
            let notify = |tx: &mut dyn crate::store::Tx, a: &AlertRecord, what: &str| -> Result<()> {
                let payload = json!({
                    "alert_id": a.id, "model": v.model_name.as_str(), "version": v.version.to_string(), "check": a.check_key,
                    "state": a.state, "event": what, "report_id": check.report_id, "detail": a.detail, "at": now.to_rfc3339(),
                });
                tx.insert_notification(&self.ids.new_id("nt"), &a.id, now, &payload.to_string())
            };
            match tx.active_alert(&v.id, &o.key)? {
                None if o.drift && confirmed && config.alert_on_drift => {
                    let a = AlertRecord {
                        id: self.ids.new_id("al"),
                        model_version_id: v.id.clone(),
                        check_key: o.key.clone(),
                        state: "open".into(),
                        opened_at: now,
                        updated_at: now,
                        report_id: check.report_id.clone(),
                        detail: o.detail.clone(),
                        acknowledged_by: None,
                        acknowledged_at: None,
                        resolved_at: None,
                    };
                    tx.insert_alert(&a)?;
                    if cooldown_over {
                        notify(tx, &a, "opened")?;
                        notified_at = Some(now);
                    }
                    tx.append_audit(self.version_event("system", "alert.open", v, json!({"new": {"alert_id": a.id, "check": a.check_key, "state": "open", "notified": cooldown_over, "report_id": check.report_id}, "reason": o.detail})))?;
                    changes.push(AlertChange { alert_id: a.id, check_key: o.key.clone(), change: "opened", notified: cooldown_over });
                }
                Some(mut a) if o.exit_ok => {
                    let old = a.state.clone();
                    a.state = "resolved".into();
                    a.updated_at = now;
                    a.resolved_at = Some(now);
                    a.report_id = check.report_id.clone();
                    tx.update_alert(&a)?;
                    tx.append_audit(self.version_event("system", "alert.resolve", v, json!({"old": {"state": old}, "new": {"alert_id": a.id, "state": "resolved", "report_id": check.report_id}, "reason": o.detail})))?;
                    changes.push(AlertChange { alert_id: a.id, check_key: o.key.clone(), change: "resolved", notified: false });
                }
                Some(mut a) if o.drift => {
                    a.updated_at = now;
                    a.report_id = check.report_id.clone();
                    a.detail = o.detail.clone();
                    tx.update_alert(&a)?;
                    // Reminders only while nobody has acknowledged the alert.
                    let remind = a.state == "open" && cooldown_over;
                    if remind {
                        notify(tx, &a, "still_drifting")?;
                        notified_at = Some(now);
                        tx.append_audit(self.version_event("system", "alert.notify", v, json!({"new": {"alert_id": a.id, "check": a.check_key, "report_id": check.report_id}, "reason": o.detail})))?;
                    }
                    changes.push(AlertChange { alert_id: a.id, check_key: o.key.clone(), change: "confirmed", notified: remind });
                }
                _ => {}
            }
            let trailing = history.iter().rev().take_while(|d| **d).count();
            if retrain.is_none() && config.retrain_after_windows.is_some_and(|k| trailing >= k as usize) {
                retrain = Some(format!("{} drifted in {trailing} consecutive checks", o.key));
            }
            tx.put_check_state(&v.id, &o.key, &serde_json::to_string(&history).unwrap_or_else(|_| "[]".into()), notified_at)?;
        }
        if retrain.is_none()
            && let (Some(floor), Some(p)) = (config.retrain_accuracy_floor, check.performance.as_ref())
            && p.accuracy < floor
        {
            retrain = Some(format!("accuracy {:.4} on {} labelled rows is below the floor {floor}", p.accuracy, p.labelled));
        }
        if let Some(reason) = &retrain {
            tx.append_audit(self.version_event("system", "drift.retrain_requested", v, json!({"new": {"report_id": check.report_id, "command": config.retrain_command}, "reason": reason})))?;
        }
        Ok((changes, retrain))
    }

    /// Acknowledges an open alert: it stays active (and resolves on its own once the data
    /// recovers) but sends no more reminders.
    pub fn acknowledge_alert(&self, actor: &Principal, alert_id: &str, comment: &str) -> Result<AlertRecord> {
        let attempt = Attempt { actor: actor.user_id().as_str(), action: "alert.acknowledge", entity_type: "alert", entity_id: alert_id, model: None, version: None };
        self.governed(attempt, |tx| {
            let user = Self::acting_user(tx, actor, Action::CheckDrift)?;
            let comment = crate::ids::required_text("comment", comment, 2000)?;
            let mut a = tx.get_alert(alert_id, true)?.ok_or_else(|| Error::new(ErrorCode::AlertNotFound, "alert not found"))?;
            if a.state != "open" {
                return Err(Error::new(ErrorCode::AlertNotOpen, format!("alert {} is {}, not open", a.id, a.state)));
            }
            let v = Self::load_version(tx, &a.model_version_id)?;
            a.state = "acknowledged".into();
            a.acknowledged_by = Some(user.id.to_string());
            a.acknowledged_at = Some(self.clock.now());
            a.updated_at = self.clock.now();
            tx.update_alert(&a)?;
            let mut e = self.version_event(user.id.as_str(), "alert.acknowledge", &v, json!({"old": {"state": "open"}, "new": {"state": "acknowledged"}, "reason": comment}));
            e.entity_type = "alert".into();
            e.entity_id = a.id.clone();
            tx.append_audit(e)?;
            Ok(a.clone())
        })
    }

    /// Records the outcome of running the configured retraining command.
    pub fn record_retrain_run(&self, actor: &Principal, version_id: &str, report_id: &str, exit_code: Option<i32>) -> Result<()> {
        let attempt = self.monitor_attempt(actor, "drift.retrain_run", version_id);
        self.governed(attempt, |tx| {
            let user = Self::acting_user(tx, actor, Action::CheckDrift)?;
            let v = Self::load_version(tx, version_id)?;
            tx.append_audit(self.version_event(user.id.as_str(), "drift.retrain_run", &v, json!({"new": {"report_id": report_id, "exit_code": exit_code}})))
        })
    }

    /// Notifications waiting for delivery, with the webhook URLs of their model version:
    /// (notification id, payload JSON, URLs).
    pub fn pending_notifications(&self, max_attempts: i64, limit: i64) -> Result<Vec<(String, String, Vec<String>)>> {
        self.read(|tx| {
            let mut out = Vec::new();
            for (id, version_id, payload, _) in tx.pending_notifications(max_attempts, limit)? {
                let urls = match tx.get_drift_config(&version_id)? {
                    Some(s) => serde_json::from_str::<Value>(&s).ok().and_then(|v| config_from_json(&v).ok()).map(|c| c.webhooks).unwrap_or_default(),
                    None => Vec::new(),
                };
                out.push((id, payload, urls));
            }
            Ok(out)
        })
    }

    /// Records the outcome of one delivery attempt (audited; URLs are not logged, they may
    /// carry tokens).
    pub fn record_delivery(&self, notification_id: &str, delivered: bool, error: Option<&str>) -> Result<()> {
        self.write(|tx| {
            let now = self.clock.now();
            tx.record_delivery(notification_id, delivered.then_some(now))?;
            let mut e = self.event(
                "system",
                if delivered { "alert.delivered" } else { "alert.delivery_failed" },
                "notification",
                notification_id,
                json!({"reason": error}),
            );
            if !delivered {
                e.outcome = Outcome::Denied;
            }
            tx.append_audit(e)
        })
    }

    /// Alerts, newest first (one version, or all; active only, or all).
    pub fn list_alerts(&self, version_id: Option<&str>, active_only: bool) -> Result<Vec<AlertRecord>> {
        self.read(|tx| tx.list_alerts(version_id, active_only))
    }

    fn audit_refusal(&self, a: &Attempt<'_>, e: &Error) -> Result<()> {
        let mut ev = self.event(a.actor, a.action, a.entity_type, a.entity_id, json!({"code": e.code().as_str(), "message": e.message()}));
        ev.outcome = Outcome::Denied;
        ev.model = a.model.clone();
        ev.version = a.version.clone();
        self.write(|tx| tx.append_audit(ev.clone()))
    }
}

/// One check's outcome for the alert state machine.
#[derive(Debug, Clone)]
struct CheckOutcome {
    key: String,
    drift: bool,
    exit_ok: bool,
    detail: String,
}

fn check_outcomes(c: &DriftCheck, config: &DriftDetectorConfig) -> Vec<CheckOutcome> {
    let mut out = Vec::new();
    let from_feature = |key: String, f: &drift::FeatureResult| -> Option<CheckOutcome> {
        if f.verdict == drift::Verdict::InsufficientData {
            return None;
        }
        Some(CheckOutcome {
            key,
            drift: f.verdict == drift::Verdict::Drift,
            exit_ok: f.verdict != drift::Verdict::Drift && f.effect_value < config.alert_exit_fraction * f.threshold,
            detail: f.reason.clone(),
        })
    };
    for f in &c.report.features {
        out.extend(from_feature(format!("feature:{}", f.name), f));
    }
    if let Some(p) = &c.prediction {
        out.extend(from_feature("prediction".into(), p));
    }
    if let Some(p) = &c.performance
        && let Some(base) = p.baseline_accuracy
    {
        out.push(CheckOutcome {
            key: "performance".into(),
            drift: p.degraded,
            exit_ok: !p.degraded && base - p.accuracy < config.alert_exit_fraction * config.performance_drop_threshold,
            detail: format!("accuracy {:.4} against baseline {base:.4} on {} labelled rows", p.accuracy, p.labelled),
        });
    }
    out
}

fn numeric_input(name: &str, reference: &FeatureProfile, current: FeatureProfile, config: &DriftDetectorConfig) -> FeatureInput {
    let (missing_reference, missing_current) = (reference.missing_rate(), current.missing_rate());
    let stats = match (reference, &current) {
        (FeatureProfile::Numeric { sorted: r, .. }, FeatureProfile::Numeric { sorted: c, .. }) => {
            if c.len() < config.min_window {
                FeatureStats::Insufficient(Insufficient::TooFewValues { reference: r.len(), current: c.len() })
            } else {
                match check_numeric(r, c, config.binning) {
                    Ok(n) => FeatureStats::Numeric(n),
                    Err(i) => FeatureStats::Insufficient(i),
                }
            }
        }
        _ => FeatureStats::Insufficient(Insufficient::TooFewValues { reference: 0, current: 0 }),
    };
    FeatureInput { name: name.to_owned(), stats, missing_reference, missing_current }
}

fn check_feature(name: &str, reference: &FeatureProfile, window: &[&Batch], config: &DriftDetectorConfig) -> (FeatureInput, Option<Distribution>) {
    match reference {
        FeatureProfile::Numeric { sorted: r, .. } => {
            let cur = FeatureProfile::numeric(window.iter().flat_map(|b| match b.features.get(name) {
                Some(Column::Numeric(v)) => v.as_slice(),
                _ => &[],
            }).map(|x| Some(*x)));
            let dist = match &cur {
                FeatureProfile::Numeric { sorted: c, .. } => numeric_distribution(r, c),
                FeatureProfile::Categorical { .. } => None,
            };
            (numeric_input(name, reference, cur, config), dist)
        }
        FeatureProfile::Categorical { counts: r, .. } => {
            let mut merged = FeatureProfile::Categorical { counts: BTreeMap::new(), missing: 0 };
            for b in window {
                if let Some(col @ Column::Categorical { .. }) = b.features.get(name) {
                    let (counts, missing) = col.counts();
                    merged = merged.merge(&FeatureProfile::Categorical { counts, missing }).unwrap_or(merged);
                }
            }
            let current = merged;
            let (missing_reference, missing_current) = (reference.missing_rate(), current.missing_rate());
            let dist = match &current {
                FeatureProfile::Categorical { counts: c, .. } => categorical_distribution(r, c),
                FeatureProfile::Numeric { .. } => None,
            };
            let stats = match &current {
                FeatureProfile::Categorical { counts: c, .. } if (c.values().sum::<u64>() as usize) >= config.min_window => match check_categorical(r, c) {
                    Ok(x) => FeatureStats::Categorical(x),
                    Err(i) => FeatureStats::Insufficient(i),
                },
                FeatureProfile::Categorical { counts: c, .. } => {
                    FeatureStats::Insufficient(Insufficient::TooFewValues { reference: r.values().sum::<u64>() as usize, current: c.values().sum::<u64>() as usize })
                }
                FeatureProfile::Numeric { .. } => FeatureStats::Insufficient(Insufficient::TooFewValues { reference: 0, current: 0 }),
            };
            (FeatureInput { name: name.to_owned(), stats, missing_reference, missing_current }, dist)
        }
    }
}

fn num(x: f64) -> Value {
    if x.is_finite() { json!(x) } else { Value::Null }
}

/// The JSON form of one feature result.
pub fn feature_json(f: &drift::FeatureResult) -> Value {
    let stats = match &f.stats {
        FeatureStats::Numeric(n) => json!({
            "kind": "numeric", "n_reference": n.n_reference, "n_current": n.n_current,
            "ks_statistic": num(n.ks.statistic), "ks_pvalue": num(n.ks.pvalue), "ks_method": n.ks.method.as_str(),
            "psi": num(n.psi), "kl": num(n.kl), "js": num(n.js), "hellinger": num(n.hellinger),
            "wasserstein": num(n.wasserstein), "wasserstein_normed": num(n.wasserstein_normed), "wasserstein_robust": num(n.wasserstein_robust),
            "median_shift": num(n.median_shift), "binning": n.binning,
        }),
        FeatureStats::Categorical(c) => json!({
            "kind": "categorical", "n_reference": c.n_reference, "n_current": c.n_current,
            "chi2": num(c.chi2), "chi2_pvalue": num(c.pvalue), "dof": c.dof, "psi": num(c.psi), "js": num(c.js),
            "z_test": c.z_test.map(|(z, p)| json!({"z": num(z), "p": num(p)})),
            "unseen_categories": c.unseen.len(), "vanished_categories": c.vanished.len(),
        }),
        FeatureStats::Insufficient(i) => json!({"kind": "insufficient", "why": format!("{i:?}")}),
    };
    json!({
        "feature": f.name, "test": f.test, "statistic": num(f.statistic), "p_value": num(f.p_value), "adjusted_p": num(f.adjusted_p),
        "alpha": f.alpha, "effect": f.effect.as_str(), "effect_value": num(f.effect_value), "threshold": num(f.threshold),
        "verdict": f.verdict.as_str(), "reason": f.reason, "stats": stats,
    })
}

/// The JSON form of a check (stored with the report and printed by `--json`).
pub fn report_json(c: &DriftCheck) -> Value {
    json!({
        "report_id": c.report_id,
        "status": c.report.status.as_str(),
        "baseline": {"baseline_id": c.baseline.id, "baseline_version": c.baseline.baseline_version, "rows": c.baseline.rows},
        "window_rows": c.window_rows,
        "features": c.report.features.iter().map(feature_json).collect::<Vec<_>>(),
        "prediction": c.prediction.as_ref().map(feature_json),
        "performance": c.performance.as_ref().map(|p| json!({"labelled": p.labelled, "accuracy": p.accuracy, "baseline_accuracy": p.baseline_accuracy, "degraded": p.degraded})),
        "data_quality": c.report.data_quality.iter().map(|f| json!({"feature": f.feature, "kind": f.kind, "detail": f.detail})).collect::<Vec<_>>(),
        "recommendations": c.report.recommendations,
        "conventions": c.report.conventions,
        "alerts": c.alerts.iter().map(|a| json!({"alert_id": a.alert_id, "check": a.check_key, "change": a.change, "notified": a.notified})).collect::<Vec<_>>(),
        "retrain_requested": c.retrain,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn batches_round_trip_and_reject_corrupt_bytes() {
        let mut b = Batch::default();
        b.features.insert("x".into(), Column::numeric([Some(1.5), None, Some(-0.0)]));
        b.features.insert("c".into(), Column::categorical([Some("é"), None, Some("")]));
        b.predictions = Some(vec![Some(0.1), Some(0.9), None]);
        b.prediction_ids = Some(vec!["a".into(), "b".into(), "c".into()]);
        b.labels = Some(vec![Some("1".into()), None, Some("0".into())]);
        assert_eq!(b.rows().unwrap(), 3);
        let bytes = b.encode();
        let back = Batch::decode(&bytes).unwrap();
        // NaN != NaN, so compare the numeric column bitwise.
        assert_eq!(back.features["c"], b.features["c"]);
        assert_eq!((back.predictions.clone(), back.prediction_ids.clone(), back.labels.clone()), (b.predictions.clone(), b.prediction_ids.clone(), b.labels.clone()));
        let bits = |c: &Column| match c {
            Column::Numeric(v) => v.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            Column::Categorical { .. } => Vec::new(),
        };
        assert_eq!(bits(&back.features["x"]), bits(&b.features["x"]));
        let mut bad = b.clone();
        bad.features.insert("c".into(), Column::Categorical { dictionary: vec!["a".into()], codes: vec![0, 5, MISSING] });
        assert!(bad.rows().is_err());
        for cut in [0, 4, 12, bytes.len() - 1] {
            assert_eq!(Batch::decode(&bytes[..cut]).unwrap_err().code(), ErrorCode::IntegrityViolation);
        }
    }

    #[test]
    fn config_json_round_trips_and_rejects_unknown_fields() {
        let mut c = DriftDetectorConfig::default();
        c.features.insert("glucose".into(), FeatureOverride { effect: Some((Effect::MedianShift, 10.0)), alpha: Some(0.01) });
        c.correction = drift::Correction::Bonferroni;
        assert_eq!(config_from_json(&config_to_json(&c)).unwrap(), c);
        assert!(config_from_json(&json!({"psi_treshold": 0.2})).is_err());
        assert!(config_from_json(&json!({"psi_threshold": -1})).is_err());
        let seed = config_from_json(&json!({"psi_threshold": 0.2, "ks_test_threshold": 0.05})).unwrap();
        assert_eq!(seed, DriftDetectorConfig::default());
    }
}
