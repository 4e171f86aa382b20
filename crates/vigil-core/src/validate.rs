//! Pre-deployment validation of a model version on a holdout: every metric with its bootstrap
//! interval, the champion comparison (DeLong), subgroup fairness per sensitive attribute, and
//! the completeness of the card, lineage and artifact digest — each as a gate of the model's
//! validation policy. The report is stored bound to the version's content hash and audited.
//!
//! Conventions (see `vigil_stats::validation` and `fairness`): `score >= threshold` is a
//! positive prediction; an undefined value never passes a gate; groups below the policy's
//! minimum evidence are reported as insufficient, never as a pass.

use crate::auth::{Action, Principal};
use crate::error::{Error, ErrorCode, Result};
use crate::ids::ModelName;
use crate::model::{ModelType, ModelVersion, Stage, string_enum};
use crate::registry::{Attempt, Registry};
use crate::store::Tx;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use vigil_stats::fairness::{GroupEvidence, GroupRates, Minimums, Mode, intersect, reference_ratios, screen, summary};
use vigil_stats::validation::{Estimate, calibration, delong, evaluate_groups, roc_curve};

string_enum!(
    /// The disparity a fairness gate holds to its tolerance (max − min across groups with
    /// sufficient evidence; `shared/reference/fairness-validation.md` §4).
    FairnessCriterion, InvalidPolicy, "fairness criterion" {
        EqualizedOdds = "equalized_odds",
        EqualOpportunity = "equal_opportunity",
        DemographicParity = "demographic_parity",
        PredictiveParity = "predictive_parity",
        RelativeMaeGap = "relative_mae_gap",
    }
);

impl FairnessCriterion {
    /// Whether the criterion applies to regressors (the others to binary risk scores).
    pub fn is_regression(self) -> bool {
        self == FairnessCriterion::RelativeMaeGap
    }
}

/// Metrics a floor (lower bound) applies to for binary risk scores: higher is better.
pub const FLOOR_METRICS: &[&str] = &["accuracy", "precision", "recall", "specificity", "npv", "f1", "roc_auc", "average_precision"];
/// Metrics a ceiling (upper bound) applies to for binary risk scores: lower is better.
pub const CEILING_METRICS: &[&str] = &["brier", "log_loss", "ece"];
/// Floors for regressors.
pub const REGRESSION_FLOOR_METRICS: &[&str] = &["r2"];
/// Ceilings for regressors.
pub const REGRESSION_CEILING_METRICS: &[&str] = &["mae", "rmse"];

/// What a validation checks and how strictly: one per model, or per model type, or the
/// built-in default ([`ValidationPolicy::default`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ValidationPolicy {
    /// Lower bounds on metric estimates ([`FLOOR_METRICS`]).
    pub floors: BTreeMap<String, f64>,
    /// Upper bounds on metric estimates ([`CEILING_METRICS`]).
    pub ceilings: BTreeMap<String, f64>,
    /// Largest allowed drop in ROC AUC against the Production version: the lower end of the
    /// 95% DeLong interval of (new − champion) must be above −this.
    pub max_auc_regression: f64,
    /// Regressors: largest allowed relative MAE increase against the Production version: the
    /// upper end of the 95% bootstrap interval of (new MAE ÷ champion MAE − 1) must be at most
    /// this.
    pub max_relative_mae_increase: f64,
    /// The disparity the fairness gate holds, per sensitive attribute and their intersection.
    pub fairness_criterion: FairnessCriterion,
    /// Largest allowed value of that disparity (strict mode: undefined rates left out).
    pub fairness_tolerance: f64,
    /// Minimum evidence per group; smaller groups are suppressed in the report.
    pub min_group: Minimums,
    /// Minimum evidence of the whole holdout (rows, and for binary models positives and
    /// negatives): a smaller holdout fails the `evidence:holdout` gate.
    pub min_holdout: Minimums,
    /// Sensitive attributes the holdout must carry (each missing one fails its fairness
    /// gate). With none listed, at least one attribute must be given.
    pub required_attributes: Vec<String>,
    /// The deployed decision threshold of a binary model: a holdout validated at another
    /// threshold is refused. `None`: the threshold is stated in each report.
    pub decision_threshold: Option<f64>,
    /// The artifact's bytes must have been re-read and re-hashed (artifacts Vigil cannot read
    /// then fail the digest gate instead of passing as recorded).
    pub require_reverified_digest: bool,
    /// The model card's 31 HTI-1 attributes must all be filled or marked not available.
    pub require_card_complete: bool,
    /// The training data hash must be recorded.
    pub require_data_hash: bool,
    /// The artifact digest must be recorded and, where Vigil can read the artifact,
    /// re-verified.
    pub require_artifact_digest: bool,
    /// Promotion to Staging needs a passing report too (Production always does).
    pub require_for_staging: bool,
    /// Bootstrap resamples.
    pub resamples: usize,
    /// Bootstrap seed.
    pub seed: u64,
}

impl Default for ValidationPolicy {
    /// AUC ≥ 0.7; at most 0.02 AUC below the Production version; equalized odds within 0.1;
    /// groups of at least 30 rows with 5 of each class; card, lineage and digest required;
    /// 2,000 resamples.
    fn default() -> Self {
        ValidationPolicy {
            floors: [("roc_auc".to_string(), 0.7)].into_iter().collect(),
            ceilings: BTreeMap::new(),
            max_auc_regression: 0.02,
            max_relative_mae_increase: 0.05,
            fairness_criterion: FairnessCriterion::EqualizedOdds,
            fairness_tolerance: 0.1,
            min_group: Minimums::default(),
            min_holdout: Minimums { rows: 100, positives: 10, negatives: 10 },
            required_attributes: Vec::new(),
            decision_threshold: None,
            require_reverified_digest: false,
            require_card_complete: true,
            require_data_hash: true,
            require_artifact_digest: true,
            require_for_staging: false,
            resamples: 2000,
            seed: 20261128,
        }
    }
}

/// Where a model's policy comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyScope {
    /// One model's own policy.
    Model(ModelName),
    /// The default for every model of a type without its own.
    ModelType(ModelType),
}

const POLICY_KEYS: &[&str] = &[
    "floors", "ceilings", "max_auc_regression", "max_relative_mae_increase", "fairness_criterion", "fairness_tolerance", "min_group", "min_holdout", "required_attributes", "decision_threshold", "require_reverified_digest", "require_card_complete", "require_data_hash",
    "require_artifact_digest", "require_for_staging", "resamples", "seed",
];

impl ValidationPolicy {
    /// The built-in default for a model type. Regressors: R² ≥ 0 (better than the mean), MAE
    /// at most 5% above the Production version's, group MAEs within 25% of the overall MAE of
    /// each other. Every other type is validated as a binary risk score on a labelled holdout
    /// (survival as the event by a horizon, ranking by its score): [`ValidationPolicy::default`].
    pub fn default_for(model_type: ModelType) -> ValidationPolicy {
        match model_type {
            ModelType::Regression => ValidationPolicy {
                floors: [("r2".to_string(), 0.0)].into_iter().collect(),
                fairness_criterion: FairnessCriterion::RelativeMaeGap,
                fairness_tolerance: 0.25,
                min_group: Minimums { rows: 30, positives: 0, negatives: 0 },
                min_holdout: Minimums { rows: 100, positives: 0, negatives: 0 },
                ..ValidationPolicy::default()
            },
            _ => ValidationPolicy::default(),
        }
    }

    /// [`ValidationPolicy::check`], and that the metrics and the fairness criterion are the
    /// model type's.
    pub fn check_for(&self, model_type: ModelType) -> Result<()> {
        self.check()?;
        let regression = model_type == ModelType::Regression;
        let (floors, ceilings) = if regression { (REGRESSION_FLOOR_METRICS, REGRESSION_CEILING_METRICS) } else { (FLOOR_METRICS, CEILING_METRICS) };
        let bad = |m: String| Err(Error::new(ErrorCode::InvalidPolicy, m));
        if let Some(m) = self.floors.keys().find(|m| !floors.contains(&m.as_str())) {
            return bad(format!("floors of a {model_type} model apply to {}; {} is not one", floors.join(", "), crate::ids::quote_key(m)));
        }
        if let Some(m) = self.ceilings.keys().find(|m| !ceilings.contains(&m.as_str())) {
            return bad(format!("ceilings of a {model_type} model apply to {}; {} is not one", ceilings.join(", "), crate::ids::quote_key(m)));
        }
        if self.fairness_criterion.is_regression() != regression {
            return bad(format!("the fairness criterion {} does not apply to a {model_type} model", self.fairness_criterion));
        }
        Ok(())
    }

    /// Checks every bound.
    pub fn check(&self) -> Result<()> {
        let bad = |m: String| Err(Error::new(ErrorCode::InvalidPolicy, m));
        for (m, v) in &self.floors {
            if !FLOOR_METRICS.contains(&m.as_str()) && !REGRESSION_FLOOR_METRICS.contains(&m.as_str()) {
                return bad(format!("floors apply to {}; {} is not one", [FLOOR_METRICS, REGRESSION_FLOOR_METRICS].concat().join(", "), crate::ids::quote_key(m)));
            }
            if !(v.is_finite() && (m == "r2" || (0.0..=1.0).contains(v))) {
                return bad(format!("the floor of {m} must be {}", if m == "r2" { "a number" } else { "in [0, 1]" }));
            }
        }
        for (m, v) in &self.ceilings {
            if !CEILING_METRICS.contains(&m.as_str()) && !REGRESSION_CEILING_METRICS.contains(&m.as_str()) {
                return bad(format!("ceilings apply to {}; {} is not one", [CEILING_METRICS, REGRESSION_CEILING_METRICS].concat().join(", "), crate::ids::quote_key(m)));
            }
            if !(v.is_finite() && *v >= 0.0) {
                return bad(format!("the ceiling of {m} must be a non-negative number"));
            }
        }
        if !(0.0..=1.0).contains(&self.max_auc_regression) {
            return bad("max_auc_regression must be in [0, 1]".into());
        }
        if !(0.0..=10.0).contains(&self.max_relative_mae_increase) {
            return bad("max_relative_mae_increase must be in [0, 10]".into());
        }
        if !(0.0..=1.0).contains(&self.fairness_tolerance) {
            return bad("fairness_tolerance must be in [0, 1]".into());
        }
        for (name, m) in [("min_group", self.min_group), ("min_holdout", self.min_holdout)] {
            if m.rows == 0 || m.rows > 1_000_000 || m.positives > m.rows || m.negatives > m.rows {
                return bad(format!("{name} needs 1 to 1,000,000 rows and at most that many positives and negatives"));
            }
        }
        if self.decision_threshold.is_some_and(|t| !(0.0..=1.0).contains(&t)) {
            return bad("decision_threshold must be in [0, 1]".into());
        }
        if self.required_attributes.iter().any(|a| a.trim().is_empty() || a.len() > 200) || self.required_attributes.len() > 20 {
            return bad("required_attributes lists up to 20 column names".into());
        }
        if !(200..=100_000).contains(&self.resamples) {
            return bad("resamples must be between 200 and 100,000".into());
        }
        Ok(())
    }

    /// JSON form (stored, and shown in every report).
    pub fn to_json(&self) -> Value {
        json!({
            "floors": self.floors,
            "ceilings": self.ceilings,
            "max_auc_regression": self.max_auc_regression,
            "max_relative_mae_increase": self.max_relative_mae_increase,
            "fairness_criterion": self.fairness_criterion.as_str(),
            "fairness_tolerance": self.fairness_tolerance,
            "min_group": {"rows": self.min_group.rows, "positives": self.min_group.positives, "negatives": self.min_group.negatives},
            "min_holdout": {"rows": self.min_holdout.rows, "positives": self.min_holdout.positives, "negatives": self.min_holdout.negatives},
            "required_attributes": self.required_attributes,
            "decision_threshold": self.decision_threshold,
            "require_reverified_digest": self.require_reverified_digest,
            "require_card_complete": self.require_card_complete,
            "require_data_hash": self.require_data_hash,
            "require_artifact_digest": self.require_artifact_digest,
            "require_for_staging": self.require_for_staging,
            "resamples": self.resamples,
            "seed": self.seed,
        })
    }

    /// Parses the JSON form over the built-in default of a binary model
    /// ([`ValidationPolicy::from_json_over`]).
    pub fn from_json(v: &Value) -> Result<ValidationPolicy> {
        Self::from_json_over(v, ValidationPolicy::default())
    }

    /// Parses the JSON form. Missing keys take `base`'s value (a model type's default), so a
    /// policy file names only what it changes; unknown keys are refused.
    pub fn from_json_over(v: &Value, base: ValidationPolicy) -> Result<ValidationPolicy> {
        let bad = |m: String| Error::new(ErrorCode::InvalidPolicy, m);
        let obj = v.as_object().ok_or_else(|| bad("a validation policy is a JSON object".into()))?;
        if let Some(k) = obj.keys().find(|k| !POLICY_KEYS.contains(&k.as_str())) {
            return Err(bad(format!("unknown validation policy key {}; expected {}", crate::ids::quote_key(k), POLICY_KEYS.join(", "))));
        }
        let mut p = base;
        let num = |k: &str| -> Result<Option<f64>> {
            match obj.get(k) {
                None => Ok(None),
                Some(x) => x.as_f64().map(Some).ok_or_else(|| bad(format!("{k} must be a number"))),
            }
        };
        let flag = |k: &str, d: bool| -> Result<bool> {
            match obj.get(k) {
                None => Ok(d),
                Some(x) => x.as_bool().ok_or_else(|| bad(format!("{k} must be true or false"))),
            }
        };
        let bounds = |k: &str| -> Result<Option<BTreeMap<String, f64>>> {
            match obj.get(k) {
                None => Ok(None),
                Some(Value::Object(m)) => m.iter().map(|(name, x)| x.as_f64().map(|f| (name.clone(), f)).ok_or_else(|| bad(format!("{k} maps metric names to numbers")))).collect::<Result<_>>().map(Some),
                Some(_) => Err(bad(format!("{k} maps metric names to numbers"))),
            }
        };
        if let Some(f) = bounds("floors")? {
            p.floors = f;
        }
        if let Some(c) = bounds("ceilings")? {
            p.ceilings = c;
        }
        if let Some(x) = num("max_auc_regression")? {
            p.max_auc_regression = x;
        }
        if let Some(x) = num("max_relative_mae_increase")? {
            p.max_relative_mae_increase = x;
        }
        if let Some(x) = obj.get("fairness_criterion") {
            p.fairness_criterion = FairnessCriterion::parse(x.as_str().ok_or_else(|| bad("fairness_criterion must be a string".into()))?)?;
        }
        if let Some(x) = num("fairness_tolerance")? {
            p.fairness_tolerance = x;
        }
        let minimums = |key: &str, d: Minimums| -> Result<Minimums> {
            let Some(m) = obj.get(key) else { return Ok(d) };
            let m = m.as_object().ok_or_else(|| bad(format!("{key} has rows, positives and negatives")))?;
            let count = |k: &str, d: u64| -> Result<u64> {
                match m.get(k) {
                    None => Ok(d),
                    Some(x) => x.as_u64().ok_or_else(|| bad(format!("{key}.{k} must be a whole number"))),
                }
            };
            if let Some(k) = m.keys().find(|k| !["rows", "positives", "negatives"].contains(&k.as_str())) {
                return Err(bad(format!("unknown {key} key {}", crate::ids::quote_key(k))));
            }
            Ok(Minimums { rows: count("rows", d.rows)?, positives: count("positives", d.positives)?, negatives: count("negatives", d.negatives)? })
        };
        p.min_group = minimums("min_group", p.min_group)?;
        p.min_holdout = minimums("min_holdout", p.min_holdout)?;
        if let Some(x) = obj.get("required_attributes") {
            p.required_attributes = x
                .as_array()
                .and_then(|a| a.iter().map(|v| v.as_str().map(str::to_owned)).collect::<Option<Vec<_>>>())
                .ok_or_else(|| bad("required_attributes is a list of column names".into()))?;
        }
        match obj.get("decision_threshold") {
            None => {}
            Some(Value::Null) => p.decision_threshold = None,
            Some(x) => p.decision_threshold = Some(x.as_f64().ok_or_else(|| bad("decision_threshold must be a number or null".into()))?),
        }
        p.require_reverified_digest = flag("require_reverified_digest", p.require_reverified_digest)?;
        p.require_card_complete = flag("require_card_complete", p.require_card_complete)?;
        p.require_data_hash = flag("require_data_hash", p.require_data_hash)?;
        p.require_artifact_digest = flag("require_artifact_digest", p.require_artifact_digest)?;
        p.require_for_staging = flag("require_for_staging", p.require_for_staging)?;
        if let Some(x) = obj.get("resamples") {
            p.resamples = x.as_u64().and_then(|n| usize::try_from(n).ok()).ok_or_else(|| bad("resamples must be a whole number".into()))?;
        }
        if let Some(x) = obj.get("seed") {
            p.seed = x.as_u64().ok_or_else(|| bad("seed must be a whole number".into()))?;
        }
        p.check()?;
        Ok(p)
    }
}

fn policy_key(scope: &str, id: &str) -> String {
    format!("validation_policy/{scope}/{id}")
}

/// Largest holdout (the interval arithmetic is exact up to far beyond this).
pub const MAX_HOLDOUT_ROWS: usize = 50_000_000;
/// Most distinct values of one sensitive attribute.
pub const MAX_GROUPS: usize = 50;
/// Most sensitive attributes at once (their intersection is evaluated too).
pub const MAX_ATTRIBUTES: usize = 4;

/// A holdout to validate on.
#[derive(Debug, Clone, Default)]
pub struct ValidationData {
    /// True labels.
    pub labels: Vec<bool>,
    /// The version's scores in [0, 1].
    pub scores: Vec<f64>,
    /// The Production version's scores on the same rows, for the champion comparison.
    pub champion_scores: Option<Vec<f64>>,
    /// Sensitive attributes: (name, value per row).
    pub sensitive: Vec<(String, Vec<String>)>,
    /// Decision threshold.
    pub threshold: f64,
    /// Regressors: the true values (then `labels` and `threshold` are unused, and `scores`
    /// and `champion_scores` are predictions on the target's scale).
    pub targets: Option<Vec<f64>>,
}

impl ValidationData {
    fn check(&self) -> Result<()> {
        let bad = |m: &str| Error::new(ErrorCode::InvalidValidationData, m.to_owned());
        let n = self.targets.as_ref().map_or(self.labels.len(), Vec::len);
        if n == 0 {
            return Err(bad("the holdout is empty"));
        }
        if self.scores.len() != n || self.champion_scores.as_ref().is_some_and(|c| c.len() != n) || self.sensitive.iter().any(|(_, v)| v.len() != n) {
            return Err(bad("every column of the holdout must have one value per row"));
        }
        if let Some(t) = &self.targets {
            let finite = |s: &[f64]| s.iter().all(|x| x.is_finite());
            if !finite(t) || !finite(&self.scores) || !self.champion_scores.as_deref().is_none_or(finite) {
                return Err(bad("targets and predictions must be numbers in every row (no NaN or infinity)"));
            }
        } else {
            if self.labels.len() != n {
                return Err(bad("every column of the holdout must have one value per row"));
            }
            let in_unit = |s: &[f64]| s.iter().all(|x| x.is_finite() && (0.0..=1.0).contains(x));
            if !in_unit(&self.scores) || !self.champion_scores.as_deref().is_none_or(in_unit) {
                return Err(bad("scores must be probabilities in [0, 1] (no NaN)"));
            }
            if !(0.0..=1.0).contains(&self.threshold) {
                return Err(bad("the threshold must be in [0, 1]"));
            }
            if self.labels.iter().all(|y| *y) || !self.labels.iter().any(|y| *y) {
                return Err(bad("the holdout needs both label classes"));
            }
        }
        if n > MAX_HOLDOUT_ROWS {
            return Err(bad(&format!("the holdout has more than {MAX_HOLDOUT_ROWS} rows; validate on a sample")));
        }
        let mut cells = 1usize;
        for (name, values) in &self.sensitive {
            let mut distinct: Vec<&String> = values.iter().collect();
            distinct.sort();
            distinct.dedup();
            if distinct.len() < 2 {
                return Err(bad(&format!("sensitive attribute {} has a single group; fairness cannot be assessed", crate::ids::quote_key(name))));
            }
            // An identifier is not a sensitive attribute: its values would become group names.
            if distinct.len() > MAX_GROUPS {
                return Err(bad(&format!("sensitive attribute {} has more than {MAX_GROUPS} distinct values; is it an identifier?", crate::ids::quote_key(name))));
            }
            if distinct.iter().any(|v| v.contains('|')) {
                return Err(bad(&format!("values of sensitive attribute {} must not contain '|' (it joins intersections)", crate::ids::quote_key(name))));
            }
            cells = cells.saturating_mul(distinct.len());
        }
        if self.sensitive.len() > MAX_ATTRIBUTES {
            return Err(bad(&format!("at most {MAX_ATTRIBUTES} sensitive attributes")));
        }
        Ok(())
    }
}

/// A stored validation report.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidationRecord {
    /// Id (`val_…`).
    pub id: String,
    /// The version validated.
    pub model_version_id: String,
    /// The content hash the report is bound to.
    pub content_hash: String,
    /// Whether every gate passed.
    pub passed: bool,
    /// The report (JSON text).
    pub report: String,
    /// Who ran it.
    pub created_by: String,
    /// When.
    pub created_at: crate::ids::Timestamp,
}

/// An interval; `reliable` is false when more than a tenth of the resamples left the metric
/// undefined (the interval then describes the resamples where it was defined).
fn ci_json(e: &Estimate) -> Value {
    e.ci.as_ref().map_or(Value::Null, |c| json!({"low": c.low, "high": c.high, "resamples_used": c.used, "resamples_skipped": c.skipped, "reliable": c.skipped * 10 <= c.used + c.skipped}))
}

fn estimate_json(e: &Estimate) -> Value {
    json!({"metric": e.metric, "value": e.value, "ci": ci_json(e)})
}

fn gate(name: &str, passed: Option<bool>, detail: String) -> Value {
    json!({"gate": name, "passed": passed, "detail": detail})
}

/// Words that mark a demographic input feature (matched as whole words of the feature name,
/// split on anything not a letter or digit, so `age_years` matches and `dosage` does not).
const DEMOGRAPHIC: &[&str] = &["race", "ethnicity", "ethnic", "ancestry", "sex", "gender", "age", "dob", "birth", "birthdate", "zip", "zipcode", "postcode"];

fn is_demographic(feature: &str) -> bool {
    feature.to_ascii_lowercase().split(|c: char| !c.is_ascii_alphanumeric()).any(|w| DEMOGRAPHIC.contains(&w))
}

/// A model's validation policy and where it comes from.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedPolicy {
    /// The policy.
    pub policy: ValidationPolicy,
    /// `model`, `model_type` or `built_in`.
    pub source: &'static str,
}

impl Registry {
    fn load_validation_policy(tx: &mut dyn Tx, model_id: &str, model_type: ModelType) -> Result<ResolvedPolicy> {
        let parse = |s: String| -> Result<ValidationPolicy> {
            let v: Value = serde_json::from_str(&s).map_err(|_| Error::new(ErrorCode::IntegrityViolation, "a stored validation policy is not valid JSON"))?;
            ValidationPolicy::from_json_over(&v, ValidationPolicy::default_for(model_type))
        };
        if let Some(s) = tx.get_setting(&policy_key("model", model_id))? {
            return Ok(ResolvedPolicy { policy: parse(s)?, source: "model" });
        }
        if let Some(s) = tx.get_setting(&policy_key("model_type", model_type.as_str()))? {
            return Ok(ResolvedPolicy { policy: parse(s)?, source: "model_type" });
        }
        Ok(ResolvedPolicy { policy: ValidationPolicy::default_for(model_type), source: "built_in" })
    }

    /// The validation policy in force for a model.
    pub fn validation_policy(&self, name: &ModelName) -> Result<ResolvedPolicy> {
        self.read(|tx| {
            let m = tx.get_model_by_name(name, false)?.ok_or_else(|| Error::new(ErrorCode::ModelNotFound, "model not found"))?;
            Self::load_validation_policy(tx, &m.id, m.model_type)
        })
    }

    /// The default validation policy of a model type (stored, or built in).
    pub fn type_validation_policy(&self, model_type: ModelType) -> Result<ResolvedPolicy> {
        self.read(|tx| match tx.get_setting(&policy_key("model_type", model_type.as_str()))? {
            Some(s) => {
                let v: Value = serde_json::from_str(&s).map_err(|_| Error::new(ErrorCode::IntegrityViolation, "a stored validation policy is not valid JSON"))?;
                Ok(ResolvedPolicy { policy: ValidationPolicy::from_json_over(&v, ValidationPolicy::default_for(model_type))?, source: "model_type" })
            }
            None => Ok(ResolvedPolicy { policy: ValidationPolicy::default_for(model_type), source: "built_in" }),
        })
    }

    /// Sets a model's validation policy, or a model type's default (administrators only;
    /// audited with the old and new policy and the reason). Reports already stored keep the
    /// policy they ran under, which each report records.
    pub fn set_validation_policy(&self, actor: &Principal, scope: &PolicyScope, policy: &ValidationPolicy, reason: &str) -> Result<ResolvedPolicy> {
        self.set_policy_with(actor, scope, reason, |_| Ok(policy.clone()))
    }

    /// [`Registry::set_validation_policy`] from the JSON form: keys left out take the model
    /// type's built-in default. The JSON is read after the caller is authorised, so every
    /// refusal, a malformed policy included, is audited.
    pub fn set_validation_policy_json(&self, actor: &Principal, scope: &PolicyScope, policy: &Value, reason: &str) -> Result<ResolvedPolicy> {
        self.set_policy_with(actor, scope, reason, |t| ValidationPolicy::from_json_over(policy, ValidationPolicy::default_for(t)))
    }

    fn set_policy_with(&self, actor: &Principal, scope: &PolicyScope, reason: &str, make: impl Fn(ModelType) -> Result<ValidationPolicy>) -> Result<ResolvedPolicy> {
        let (entity_type, entity_id) = match scope {
            PolicyScope::Model(n) => ("registered_model", n.to_string()),
            PolicyScope::ModelType(t) => ("model_type", t.as_str().to_owned()),
        };
        let attempt = Attempt { actor: actor.user_id().as_str(), action: "validation_policy.update", entity_type, entity_id: &entity_id, model: None, version: None };
        self.governed(attempt, |tx| {
            Self::acting_user(tx, actor, Action::ManagePolicy)?;
            let reason = crate::ids::required_text("reason", reason, 2000)?;
            let policy;
            let (key, old, source) = match scope {
                PolicyScope::Model(n) => {
                    let m = tx.get_model_by_name(n, true)?.ok_or_else(|| Error::new(ErrorCode::ModelNotFound, "model not found"))?;
                    policy = make(m.model_type)?;
                    policy.check_for(m.model_type)?;
                    (policy_key("model", &m.id), Self::load_validation_policy(tx, &m.id, m.model_type)?, "model")
                }
                PolicyScope::ModelType(t) => {
                    policy = make(*t)?;
                    policy.check_for(*t)?;
                    let old = match tx.get_setting(&policy_key("model_type", t.as_str()))? {
                        Some(s) => ResolvedPolicy {
                            policy: ValidationPolicy::from_json_over(&serde_json::from_str(&s).unwrap_or(Value::Null), ValidationPolicy::default_for(*t)).unwrap_or_else(|_| ValidationPolicy::default_for(*t)),
                            source: "model_type",
                        },
                        None => ResolvedPolicy { policy: ValidationPolicy::default_for(*t), source: "built_in" },
                    };
                    (policy_key("model_type", t.as_str()), old, "model_type")
                }
            };
            tx.put_setting(&key, &crate::canonical::encode(&policy.to_json()))?;
            let mut e = self.event(
                actor.user_id().as_str(),
                "validation_policy.update",
                entity_type,
                &entity_id,
                json!({"old": {"policy": old.policy.to_json(), "source": old.source}, "new": {"policy": policy.to_json(), "source": source}, "reason": reason}),
            );
            if let PolicyScope::Model(n) = scope {
                e.model = Some(n.to_string());
            }
            tx.append_audit(e)?;
            Ok(ResolvedPolicy { policy: policy.clone(), source })
        })
    }

    /// Validates a version on a holdout under its model's policy, stores the report bound to
    /// the version's content hash, and audits it. Returns the stored record; `passed` says
    /// whether every gate passed. `artifact_check` is the digest the caller recomputed from
    /// the artifact's bytes (`None` when it cannot read them).
    pub fn validate(&self, actor: &Principal, version_id: &str, data: &ValidationData, artifact_check: Option<ArtifactCheck>) -> Result<ValidationRecord> {
        let attempt = Attempt { actor: actor.user_id().as_str(), action: "validation.run", entity_type: "model_version", entity_id: version_id, model: None, version: None };
        // The statistics run outside the transaction (seconds on large holdouts); the version
        // is re-read and its hash compared when the report is stored.
        let pre = self.read(|tx| {
            let user = Self::acting_user(tx, actor, Action::CheckDrift)?;
            let v = Self::load_version(tx, version_id)?;
            let m = tx.get_model_by_name(&v.model_name, false)?.ok_or_else(|| Error::new(ErrorCode::ModelNotFound, "model not found"))?;
            let policy = Self::load_validation_policy(tx, &m.id, m.model_type)?;
            let champion = tx.versions_in_stage(&v.model_id, Stage::Production)?.into_iter().find(|p| p.id != v.id);
            Ok((user, v, policy, champion))
        });
        let kind = |x: (crate::auth::User, ModelVersion, ResolvedPolicy, Option<ModelVersion>)| -> Result<_> {
            let regression = x.1.model_type == ModelType::Regression;
            if regression && data.targets.is_none() {
                return Err(Error::new(ErrorCode::InvalidValidationData, format!("{} is a regression model: give the numeric target and the predictions", x.1.reference())));
            }
            if !regression && data.targets.is_some() {
                return Err(Error::new(ErrorCode::InvalidValidationData, format!("{} is a {} model: give binary labels and risk scores", x.1.reference(), x.1.model_type)));
            }
            if let Some(t) = x.2.policy.decision_threshold.filter(|_| !regression)
                && t != data.threshold
            {
                return Err(Error::new(ErrorCode::InvalidValidationData, format!("the validation policy of {} fixes the decision threshold at {t}", x.1.model_name)));
            }
            Ok(x)
        };
        let (_, version, policy, champion) = match pre.and_then(kind).and_then(|x| data.check().map(|()| x)) {
            Ok(x) => x,
            Err(e) => {
                self.audit_denial(&attempt, &e)?;
                return Err(e);
            }
        };
        let report = self.run_validation(&version, champion.as_ref(), data, &policy, artifact_check.as_ref());
        let passed = report["passed"].as_bool().unwrap_or(false);
        let text = crate::canonical::encode(&report);
        self.governed(attempt, |tx| {
            let user = Self::acting_user(tx, actor, Action::CheckDrift)?;
            // Locks the model row: reports of one version are numbered in order, and a
            // promotion completing concurrently sees either all of this report or none.
            let current = Self::lock_version(tx, version_id)?;
            if current.content_hash != version.content_hash {
                return Err(Error::new(ErrorCode::ContentChanged, "the version's content changed during validation; run it again"));
            }
            let rec = ValidationRecord {
                id: self.ids.new_id("val"),
                model_version_id: version.id.clone(),
                content_hash: version.content_hash.to_hex(),
                passed,
                report: text.clone(),
                created_by: user.id.to_string(),
                created_at: self.clock.now(),
            };
            tx.insert_validation_report(&rec)?;
            let failed = failed_gates(&report);
            tx.append_audit(self.version_event(
                user.id.as_str(),
                "validation.run",
                &version,
                json!({"report_id": rec.id, "report_sha256": crate::ids::Sha256Digest::of(text.as_bytes()).to_hex(), "passed": passed, "content_hash": rec.content_hash, "failed_gates": failed, "policy_source": policy.source}),
            ))?;
            Ok(rec)
        })
    }

    /// Stored validation reports of a version, newest first.
    pub fn validation_reports(&self, version_id: &str) -> Result<Vec<ValidationRecord>> {
        self.read(|tx| tx.validation_reports(version_id))
    }

    /// The validation report a version's model card shows, bound to its current content hash:
    /// once the version has been promoted to Production, the report its latest promotion
    /// request rested on (the evidence those approvers signed over), so later validations
    /// never change a released card; before that, the newest.
    pub fn card_evidence(&self, version_id: &str) -> Result<Option<ValidationRecord>> {
        self.read(|tx| {
            let v = Self::load_version(tx, version_id)?;
            let hash = v.content_hash.to_hex();
            let reports: Vec<ValidationRecord> = tx.validation_reports(&v.id)?.into_iter().filter(|r| r.content_hash == hash).collect();
            let mut released: Vec<crate::model::StageTransition> = tx.list_transitions(&v.id)?.into_iter().filter(|t| t.to_stage == Stage::Production).collect();
            released.sort_by_key(|t| t.at);
            let Some(last) = released.last() else { return Ok(reports.into_iter().next()) };
            let rested_on = match &last.request_id {
                Some(id) => tx.get_request(id, false)?.and_then(|r| r.validation_report_id),
                None => None,
            };
            Ok(match rested_on {
                Some(id) => reports.into_iter().find(|r| r.id == id),
                // Released before requests recorded their evidence: the newest report from
                // before the release.
                None => reports.into_iter().find(|r| r.created_at <= last.at),
            })
        })
    }

    /// The promotion gate: a move into Production (and into Staging when the model's policy
    /// says so) needs the newest validation report of the version's current content to have
    /// passed. Returns that report's id, or `None` when the stage needs none.
    pub(crate) fn validation_gate(tx: &mut dyn Tx, v: &ModelVersion, to: Stage) -> Result<Option<String>> {
        if !matches!(to, Stage::Production | Stage::Staging) {
            return Ok(None);
        }
        // The model's policy, read once: whether Staging needs evidence, and what the evidence
        // must have run under.
        let m = tx.get_model_by_name(&v.model_name, false)?.ok_or_else(|| Error::new(ErrorCode::ModelNotFound, "model not found"))?;
        let policy = Self::load_validation_policy(tx, &m.id, m.model_type)?.policy;
        if to == Stage::Staging && !policy.require_for_staging {
            return Ok(None);
        }
        let hash = v.content_hash.to_hex();
        let latest = tx.validation_reports(&v.id)?.into_iter().find(|r| r.content_hash == hash);
        let r = match latest {
            None => {
                return Err(Error::new(
                    ErrorCode::ValidationRequired,
                    format!("{} has no validation report for its current content; promotion to {to} needs a passing one (vigil validate {})", v.reference(), v.reference()),
                ));
            }
            Some(r) => r,
        };
        let report: Value = serde_json::from_str(&r.report).unwrap_or(Value::Null);
        if !r.passed {
            return Err(Error::new(
                ErrorCode::ValidationRequired,
                format!("the newest validation of {} ({}) failed gate(s): {}; promotion to {to} needs a passing one", v.reference(), r.id, failed_gates(&report).join(", ")),
            ));
        }
        // The evidence must be about today's rules and today's champion.
        // Compared in canonical form (a stored 0.0 reads back as the integer 0).
        if crate::canonical::encode(&report["policy"]) != crate::canonical::encode(&policy.to_json()) {
            return Err(Error::new(ErrorCode::ValidationRequired, format!("{} was validated ({}) under an earlier validation policy; validate it again", v.reference(), r.id)));
        }
        let champion = tx.versions_in_stage(&v.model_id, Stage::Production)?.into_iter().find(|p| p.id != v.id).map(|c| c.reference());
        let compared = report["champion"]["champion"].as_str().map(str::to_owned);
        if champion != compared {
            return Err(Error::new(
                ErrorCode::ValidationRequired,
                format!("{} was validated ({}) against {}, but the Production version is now {}; validate it again with that version's scores", v.reference(), r.id, compared.as_deref().unwrap_or("no champion"), champion.as_deref().unwrap_or("none")),
            ));
        }
        Ok(Some(r.id))
    }

    fn run_validation(&self, v: &ModelVersion, champion: Option<&ModelVersion>, d: &ValidationData, rp: &ResolvedPolicy, artifact_check: Option<&ArtifactCheck>) -> Value {
        if let Some(targets) = &d.targets {
            return regression_report(v, champion, d, targets, rp, artifact_check);
        }
        let p = &rp.policy;
        let attrs = attributes(d);
        let columns: Vec<&[String]> = attrs.iter().map(|(_, v)| v.as_slice()).collect();
        let ev = evaluate_groups(&d.labels, &d.scores, d.threshold, &columns, p.resamples, p.seed, 0.95);
        let mut gates = Vec::new();
        evidence_gates(d, p, &mut gates);
        bound_gates(p, &ev.overall, &mut gates);
        // Champion comparison.
        let champion_block = match (champion, &d.champion_scores) {
            (None, _) => {
                gates.push(gate("champion", Some(true), "no version is in Production; nothing to compare with".into()));
                Value::Null
            }
            (Some(c), None) => {
                gates.push(gate("champion", Some(false), format!("{} is in Production: give its scores on this holdout", c.reference())));
                json!({"champion": c.reference()})
            }
            (Some(c), Some(cs)) => match delong(&d.labels, &d.scores, cs) {
                Some(dl) => {
                    let ok = dl.ci.0 > -p.max_auc_regression;
                    gates.push(gate(
                        "champion",
                        Some(ok),
                        format!("AUC {:.4} vs {:.4} ({}); 95% CI of the difference [{:.4}, {:.4}], allowed drop {}", dl.auc_a, dl.auc_b, c.reference(), dl.ci.0, dl.ci.1, p.max_auc_regression),
                    ));
                    json!({"champion": c.reference(), "auc": dl.auc_a, "champion_auc": dl.auc_b, "z": dl.z, "p": dl.p, "difference_ci": [dl.ci.0, dl.ci.1], "method": "DeLong"})
                }
                None => {
                    gates.push(gate("champion", Some(false), "DeLong needs at least two positives and two negatives".into()));
                    json!({"champion": c.reference()})
                }
            },
        };
        // Fairness per attribute (and the intersection), groups with their intervals.
        let criterion = p.fairness_criterion;
        let mut fairness = Vec::new();
        for ((name, _), groups) in attrs.iter().zip(&ev.attributes) {
            let per: Vec<GroupRates> = groups.iter().map(GroupRates::from_estimate).collect();
            let evidence = screen(per, p.min_group);
            let sufficient: Vec<GroupRates> = evidence.iter().filter_map(|e| if let GroupEvidence::Rates(r) = e { Some(r.clone()) } else { None }).collect();
            let sm = summary(&sufficient, Mode::Strict);
            let value = match criterion {
                FairnessCriterion::EqualizedOdds => sm.equalized_odds_difference,
                FairnessCriterion::EqualOpportunity => sm.equal_opportunity.difference,
                FairnessCriterion::DemographicParity => sm.demographic_parity.difference,
                FairnessCriterion::PredictiveParity => sm.predictive_parity.difference,
                // Refused for binary models by `check_for`.
                FairnessCriterion::RelativeMaeGap => None,
            };
            let left_out = evidence.iter().filter(|e| matches!(e, GroupEvidence::Insufficient { .. })).count();
            let note = if left_out > 0 { format!("; {left_out} group(s) below the minimum evidence not assessed") } else { String::new() };
            gates.push(gate(
                &format!("fairness:{name}"),
                Some(value.is_some_and(|x| x <= p.fairness_tolerance)),
                match value {
                    Some(x) => format!("{} difference {x:.4} (tolerance {}){note}", criterion.as_str().replace('_', " "), p.fairness_tolerance),
                    None => format!("{} undefined: fewer than two groups with sufficient evidence{note}", criterion.as_str().replace('_', " ")),
                },
            ));
            let flags: Vec<bool> = evidence.iter().map(|e| matches!(e, GroupEvidence::Rates(_))).collect();
            let group_docs = groups_json(&flags, groups, p, false);
            let reference = reference_ratios(&sufficient, |g| g.selection_rate, None)
                .map(|(r, ratios)| json!({"reference": r, "selection_rate_ratios": ratios.iter().map(|x| json!({"group": x.group, "ratio": x.ratio, "within_0_8_1_25": x.within_band})).collect::<Vec<_>>()}));
            fairness.push(json!({
                "attribute": name,
                "groups": group_docs,
                "criterion": criterion.as_str(),
                "criterion_value": value,
                "demographic_parity_difference": sm.demographic_parity.difference,
                "demographic_parity_ratio": sm.demographic_parity.ratio,
                "equal_opportunity_difference": sm.equal_opportunity.difference,
                "equalized_odds_difference": sm.equalized_odds_difference,
                "equalized_odds_ratio": sm.equalized_odds_ratio,
                "predictive_parity_difference": sm.predictive_parity.difference,
                "excluded_as_undefined": {"tpr": sm.equal_opportunity.excluded, "fpr": sm.fpr.excluded, "ppv": sm.predictive_parity.excluded},
                "reference_group": reference,
            }));
        }
        gates.extend(record_gates(v, p, artifact_check));
        let roc: Vec<[f64; 2]> = roc_curve(&d.labels, &d.scores, 101).unwrap_or_default().into_iter().map(|(x, y)| [x, y]).collect();
        let calib: Vec<Value> = calibration(&d.labels, &d.scores, 10)
            .map(|(t, _, _)| t.iter().map(|b| json!({"bin": b.bin, "count": b.count, "mean_score": b.mean_score, "observed": b.observed})).collect())
            .unwrap_or_default();
        report_json(v, d, rp, ev.overall.iter().map(estimate_json).collect(), json!({"roc": roc, "calibration": calib}), champion_block, fairness, gates)
    }
}

/// The holdout's size against the policy's minimum, and the sensitive attributes the
/// policy requires (with none listed, at least one).
fn evidence_gates(d: &ValidationData, p: &ValidationPolicy, gates: &mut Vec<Value>) {
    let n = d.scores.len() as u64;
    let m = p.min_holdout;
    if d.targets.is_some() {
        gates.push(gate("evidence:holdout", Some(n >= m.rows), format!("{n} rows (minimum {})", m.rows)));
    } else {
        let pos = d.labels.iter().filter(|y| **y).count() as u64;
        let ok = n >= m.rows && pos >= m.positives && n - pos >= m.negatives;
        gates.push(gate("evidence:holdout", Some(ok), format!("{n} rows, {pos} positives, {} negatives (minimum {}, {}, {})", n - pos, m.rows, m.positives, m.negatives)));
    }
    if d.sensitive.is_empty() && p.required_attributes.is_empty() {
        gates.push(gate("fairness", Some(false), "no sensitive attribute was given; the fairness criterion needs at least one".into()));
    }
    for a in &p.required_attributes {
        if !d.sensitive.iter().any(|(name, _)| name == a) {
            gates.push(gate(&format!("fairness:{a}"), Some(false), "required by the validation policy but not in the holdout".into()));
        }
    }
}

fn bound_gates(p: &ValidationPolicy, estimates: &[Estimate], gates: &mut Vec<Value>) {
    for (metric, bound, is_floor) in p.floors.iter().map(|(m, b)| (m, b, true)).chain(p.ceilings.iter().map(|(m, b)| (m, b, false))) {
        let e = estimates.iter().find(|e| e.metric == metric.as_str());
        let (kind, rel) = if is_floor { ("floor", "≥") } else { ("ceiling", "≤") };
        let (ok, detail) = match e.and_then(|e| e.value) {
            Some(x) => (Some(if is_floor { x >= *bound } else { x <= *bound }), format!("{metric} = {x:.4} (must be {rel} {bound})")),
            None => (Some(false), format!("{metric} is undefined on this holdout (must be {rel} {bound})")),
        };
        gates.push(gate(&format!("{kind}:{metric}"), ok, detail));
    }
}

/// The report's groups. Groups below the minimum evidence are suppressed as one entry that
/// names neither them nor their counts; when any is, the other groups' counts are rounded to
/// tens, so that no suppressed count can be recovered by subtraction from the total.
fn groups_json(evidence: &[bool], groups: &[vigil_stats::validation::GroupEstimate], p: &ValidationPolicy, regression: bool) -> Vec<Value> {
    let suppressed = evidence.iter().filter(|s| !**s).count();
    let count = |x: u64| if suppressed > 0 { json!((x + 5) / 10 * 10) } else { json!(x) };
    let mut out: Vec<Value> = evidence
        .iter()
        .zip(groups)
        .filter(|(sufficient, _)| **sufficient)
        .map(|(_, g)| {
            let mut metrics = Map::new();
            for est in &g.estimates {
                metrics.insert(est.metric.to_owned(), json!({"value": est.value, "ci": ci_json(est)}));
            }
            let mut doc = json!({"group": g.group, "n": count(g.n), "metrics": metrics});
            if !regression {
                doc["positives"] = count(g.positives);
                doc["negatives"] = count(g.negatives);
            }
            if suppressed > 0 {
                doc["counts_rounded_to"] = json!(10);
            }
            doc
        })
        .collect();
    if suppressed > 0 {
        let why = if regression {
            format!("below the minimum evidence ({} rows)", p.min_group.rows)
        } else {
            format!("below the minimum evidence ({} rows with {} positives and {} negatives)", p.min_group.rows, p.min_group.positives, p.min_group.negatives)
        };
        out.push(json!({"suppressed_groups": suppressed, "suppressed": why}));
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn report_json(v: &ModelVersion, d: &ValidationData, rp: &ResolvedPolicy, metrics: Vec<Value>, curves: Value, champion: Value, fairness: Vec<Value>, gates: Vec<Value>) -> Value {
    let p = &rp.policy;
    let passed = gates.iter().all(|g| g["passed"] == true);
    let regression = d.targets.is_some();
    json!({
        "record": "vigil.validation_report/1",
        "model": v.model_name.as_str(),
        "version": v.version.to_string(),
        "model_type": v.model_type.as_str(),
        "content_hash": v.content_hash.to_hex(),
        "rows": d.scores.len(),
        "threshold": if regression { Value::Null } else { json!(d.threshold) },
        "threshold_rule": if regression { "regression: predictions on the target's scale" } else { "score >= threshold is a positive prediction" },
        "policy": p.to_json(),
        "policy_source": rp.source,
        "bootstrap": {"resamples": p.resamples, "seed": p.seed, "method": "Poisson bootstrap, SplitMix64 (vigil_stats::validation::poisson_pair)", "interval": "percentile, type 7, 95%"},
        "metrics": metrics,
        "curves": curves,
        "champion": champion,
        "fairness": fairness,
        "gates": gates,
        "passed": passed,
    })
}

/// A regressor's report: MAE, RMSE and R² with intervals, the champion's MAE compared by the
/// relative increase's interval, each group's MAE, RMSE and bias, the fairness gate on the
/// gap between group MAEs relative to the overall MAE, and the record's gates.
fn regression_report(v: &ModelVersion, champion: Option<&ModelVersion>, d: &ValidationData, targets: &[f64], rp: &ResolvedPolicy, artifact_check: Option<&ArtifactCheck>) -> Value {
    let p = &rp.policy;
    let attrs = attributes(d);
    let columns: Vec<&[String]> = attrs.iter().map(|(_, v)| v.as_slice()).collect();
    let ev = vigil_stats::validation::evaluate_regression(targets, &d.scores, d.champion_scores.as_deref(), &columns, p.resamples, p.seed, 0.95);
    let mut gates = Vec::new();
    evidence_gates(d, p, &mut gates);
    bound_gates(p, &ev.overall, &mut gates);
    let champion_block = match (champion, &ev.champion) {
        (None, _) => {
            gates.push(gate("champion", Some(true), "no version is in Production; nothing to compare with".into()));
            Value::Null
        }
        (Some(c), None) => {
            gates.push(gate("champion", Some(false), format!("{} is in Production: give its predictions on this holdout", c.reference())));
            json!({"champion": c.reference()})
        }
        (Some(c), Some((mae, increase))) => {
            let high = increase.ci.as_ref().map(|ci| ci.high);
            let ok = high.is_some_and(|h| h <= p.max_relative_mae_increase);
            gates.push(gate(
                "champion",
                Some(ok),
                match high {
                    Some(h) => format!("MAE {:.4} vs {:.4} ({}); 95% CI upper end of the relative increase {:.4}, allowed {}", ev.overall[0].value.unwrap_or(f64::NAN), mae.value.unwrap_or(f64::NAN), c.reference(), h, p.max_relative_mae_increase),
                    None => "the relative MAE increase is undefined (the champion's MAE is 0)".to_owned(),
                },
            ));
            json!({"champion": c.reference(), "mae": ev.overall[0].value, "champion_mae": mae.value, "relative_mae_increase": estimate_json(increase), "method": "paired Poisson bootstrap"})
        }
    };
    let overall_mae = ev.overall[0].value.unwrap_or(f64::NAN);
    let mut fairness = Vec::new();
    for ((name, _), groups) in attrs.iter().zip(&ev.attributes) {
        let sufficient: Vec<bool> = groups.iter().map(|g| g.n >= p.min_group.rows).collect();
        let maes: Vec<f64> = groups.iter().zip(&sufficient).filter(|(_, s)| **s).filter_map(|(g, _)| g.estimates[0].value).collect();
        let gap = (maes.len() >= 2 && overall_mae > 0.0).then(|| {
            let (lo, hi) = maes.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| (a.min(*x), b.max(*x)));
            (hi - lo) / overall_mae
        });
        gates.push(gate(
            &format!("fairness:{name}"),
            Some(gap.is_some_and(|x| x <= p.fairness_tolerance)),
            match gap {
                Some(x) => format!("relative MAE gap {x:.4} (tolerance {})", p.fairness_tolerance),
                None => "relative MAE gap undefined: fewer than two groups with sufficient evidence".into(),
            },
        ));
        fairness.push(json!({
            "attribute": name,
            "groups": groups_json(&sufficient, groups, p, true),
            "criterion": FairnessCriterion::RelativeMaeGap.as_str(),
            "criterion_value": gap,
        }));
    }
    gates.extend(record_gates(v, p, artifact_check));
    report_json(v, d, rp, ev.overall.iter().map(estimate_json).collect(), json!({}), champion_block, fairness, gates)
}

/// The sensitive attributes and, with two or more, their intersection.
fn attributes(d: &ValidationData) -> Vec<(String, Vec<String>)> {
    let mut attrs: Vec<(String, Vec<String>)> = d.sensitive.clone();
    if d.sensitive.len() > 1 {
        let cols: Vec<&[String]> = d.sensitive.iter().map(|(_, v)| v.as_slice()).collect();
        attrs.push((d.sensitive.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join("|"), intersect(&cols)));
    }
    attrs
}

/// The gates about the record itself: card, lineage, artifact digest, demographic inputs.
fn record_gates(v: &ModelVersion, p: &ValidationPolicy, artifact_check: Option<&ArtifactCheck>) -> Vec<Value> {
    let mut gates = Vec::new();
        let c = &v.content;
        if p.require_card_complete {
            let missing: Vec<&str> = c.card.missing_hti1().iter().map(|f| f.key()).collect();
            gates.push(gate("model_card", Some(missing.is_empty()), if missing.is_empty() { "all 31 HTI-1 attributes present".into() } else { format!("{} HTI-1 attributes missing, e.g. {}", missing.len(), missing[0]) }));
        }
        if p.require_data_hash {
            gates.push(gate("lineage:training_data_hash", Some(c.lineage.training_data_hash.is_some()), "the training data hash must be recorded".into()));
        }
        if p.require_artifact_digest {
            let (ok, detail) = match (&c.artifact_sha256, artifact_check) {
                (None, _) => (false, "the artifact's SHA-256 must be recorded".to_owned()),
                (Some(want), Some(ArtifactCheck::Digest(got))) if got == want => (true, "the artifact's bytes match the recorded SHA-256 (re-verified)".to_owned()),
                (Some(_), Some(ArtifactCheck::Digest(_))) => (false, "the artifact's bytes no longer match the recorded SHA-256".to_owned()),
                (Some(_), Some(ArtifactCheck::Unreadable(why))) => (false, format!("the artifact could not be read to re-verify its SHA-256: {why}")),
                (Some(_), None) if p.require_reverified_digest => (false, "the artifact's bytes are not readable from here, and the policy requires re-verifying them".to_owned()),
                (Some(_), None) => (true, "the artifact's SHA-256 is recorded (its bytes are not readable from here; not re-verified)".to_owned()),
            };
            gates.push(gate("artifact_digest", Some(ok), detail));
        }
        let demographic: Vec<&String> = c.lineage.features.iter().filter(|f| is_demographic(f)).collect();
        if !demographic.is_empty() {
            let noted = c.card.get(crate::card::CardField::DemographicInputs).is_some();
            gates.push(gate("demographic_inputs", Some(noted), format!("{} demographic input feature(s); the card must record their use and mitigation (development.demographic_inputs)", demographic.len())));
        }
    gates
}

/// What the caller found when it re-read the artifact's bytes.
#[derive(Debug, Clone, PartialEq)]
pub enum ArtifactCheck {
    /// The SHA-256 recomputed the same way the recorded digest was made.
    Digest(crate::ids::Sha256Digest),
    /// The artifact could not be read (why, without paths that could hold patient data).
    Unreadable(String),
}

fn failed_gates(report: &Value) -> Vec<String> {
    report["gates"].as_array().into_iter().flatten().filter(|g| g["passed"] != true).filter_map(|g| g["gate"].as_str().map(str::to_owned)).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn demographic_features_are_whole_words() {
        for f in ["age", "age_years", "Patient-Sex", "race/ethnicity", "birth_date", "zip_code"] {
            assert!(is_demographic(f), "{f}");
        }
        for f in ["dosage", "stage", "average_hr", "language", "image_score", "message_count"] {
            assert!(!is_demographic(f), "{f}");
        }
    }

    #[test]
    fn policy_json_round_trips_and_refuses_nonsense() {
        let p = ValidationPolicy { require_for_staging: true, fairness_criterion: FairnessCriterion::EqualOpportunity, ..Default::default() };
        assert_eq!(ValidationPolicy::from_json(&p.to_json()).unwrap(), p);
        assert_eq!(ValidationPolicy::from_json(&json!({})).unwrap(), ValidationPolicy::default(), "missing keys take the defaults");
        for bad in [
            json!({"floors": {"brier": 0.1}}),
            json!({"ceilings": {"roc_auc": 0.1}}),
            json!({"floors": {"roc_auc": 1.5}}),
            json!({"fairness_tolerance": -0.1}),
            json!({"fairness_criterion": "vibes"}),
            json!({"resamples": 10}),
            json!({"min_group": {"rows": 0}}),
            json!({"min_group": {"rows": 5, "positives": 6}}),
            json!({"typo": 1}),
            json!([1]),
        ] {
            assert_eq!(ValidationPolicy::from_json(&bad).unwrap_err().code(), ErrorCode::InvalidPolicy, "{bad}");
        }
    }
}
