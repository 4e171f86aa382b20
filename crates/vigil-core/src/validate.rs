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
use crate::registry::{Attempt, Registry};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use vigil_stats::fairness::{GroupEvidence, Minimums, Mode, by_group, intersect, reference_ratios, screen, summary};
use vigil_stats::validation::{Estimate, delong, evaluate};

/// What a validation checks and how strictly. Defaults for classification models.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidationPolicy {
    /// Lower bounds on metric estimates (names of `vigil_stats::validation::METRICS`).
    pub floors: BTreeMap<String, f64>,
    /// Largest allowed drop in ROC AUC against the Production version: the lower end of the
    /// 95% DeLong interval of (new − champion) must be above −this.
    pub max_auc_regression: f64,
    /// Largest allowed equalized-odds difference per sensitive attribute (strict mode).
    pub max_equalized_odds_difference: f64,
    /// Minimum evidence per group.
    pub min_group: Minimums,
    /// The model card's 31 HTI-1 attributes must all be filled or marked not available.
    pub require_card_complete: bool,
    /// The training data hash must be recorded.
    pub require_data_hash: bool,
    /// The artifact digest must be recorded.
    pub require_artifact_digest: bool,
    /// Bootstrap resamples.
    pub resamples: usize,
    /// Bootstrap seed.
    pub seed: u64,
}

impl Default for ValidationPolicy {
    fn default() -> Self {
        ValidationPolicy {
            floors: [("roc_auc".to_string(), 0.7)].into_iter().collect(),
            max_auc_regression: 0.02,
            max_equalized_odds_difference: 0.1,
            min_group: Minimums::default(),
            require_card_complete: true,
            require_data_hash: true,
            require_artifact_digest: true,
            resamples: 2000,
            seed: 20261128,
        }
    }
}

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
}

impl ValidationData {
    fn check(&self) -> Result<()> {
        let bad = |m: &str| Error::new(ErrorCode::InvalidValidationData, m.to_owned());
        let n = self.labels.len();
        if n == 0 {
            return Err(bad("the holdout is empty"));
        }
        if self.scores.len() != n || self.champion_scores.as_ref().is_some_and(|c| c.len() != n) || self.sensitive.iter().any(|(_, v)| v.len() != n) {
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
        for (name, values) in &self.sensitive {
            let mut distinct: Vec<&String> = values.iter().collect();
            distinct.sort();
            distinct.dedup();
            if distinct.len() < 2 {
                return Err(bad(&format!("sensitive attribute {} has a single group; fairness cannot be assessed", crate::ids::quote_key(name))));
            }
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

fn estimate_json(e: &Estimate) -> Value {
    json!({"metric": e.metric, "value": e.value, "ci": e.ci.as_ref().map(|c| json!({"low": c.low, "high": c.high, "resamples_used": c.used, "resamples_skipped": c.skipped}))})
}

fn gate(name: &str, passed: Option<bool>, detail: String) -> Value {
    json!({"gate": name, "passed": passed, "detail": detail})
}

const DEMOGRAPHIC: &[&str] = &["race", "ethnicity", "sex", "gender", "age"];

impl Registry {
    /// Validates a version on a holdout under its policy (the default one for now), stores the
    /// report bound to the version's content hash, and audits it. Returns the stored record;
    /// `passed` says whether every gate passed.
    pub fn validate(&self, actor: &Principal, version_id: &str, data: &ValidationData, policy: &ValidationPolicy) -> Result<ValidationRecord> {
        let attempt = Attempt { actor: actor.user_id().as_str(), action: "validation.run", entity_type: "model_version", entity_id: version_id, model: None, version: None };
        // The statistics run outside the transaction (seconds on large holdouts); the version
        // is re-read and its hash compared when the report is stored.
        let pre = self.read(|tx| {
            let v = Self::load_version(tx, version_id)?;
            let champion = tx.versions_in_stage(&v.model_id, crate::model::Stage::Production)?.into_iter().find(|p| p.id != v.id);
            Ok((v, champion))
        });
        let (version, champion) = match pre.and_then(|x| data.check().map(|()| x)) {
            Ok(x) => x,
            Err(e) => {
                self.audit_denial(&attempt, &e)?;
                return Err(e);
            }
        };
        let report = self.run_validation(&version, champion.as_ref(), data, policy);
        let passed = report["passed"].as_bool().unwrap_or(false);
        let text = crate::canonical::encode(&report);
        self.governed(attempt, |tx| {
            let user = Self::acting_user(tx, actor, Action::CheckDrift)?;
            let current = Self::load_version(tx, version_id)?;
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
            let failed: Vec<&str> = report["gates"].as_array().into_iter().flatten().filter(|g| g["passed"] != true).filter_map(|g| g["gate"].as_str()).collect();
            tx.append_audit(self.version_event(user.id.as_str(), "validation.run", &version, json!({"report_id": rec.id, "passed": passed, "content_hash": rec.content_hash, "failed_gates": failed})))?;
            Ok(rec)
        })
    }

    /// Stored validation reports of a version, newest first.
    pub fn validation_reports(&self, version_id: &str) -> Result<Vec<ValidationRecord>> {
        self.read(|tx| tx.validation_reports(version_id))
    }

    fn run_validation(&self, v: &crate::model::ModelVersion, champion: Option<&crate::model::ModelVersion>, d: &ValidationData, p: &ValidationPolicy) -> Value {
        let estimates = evaluate(&d.labels, &d.scores, d.threshold, p.resamples, p.seed, 0.95);
        let mut gates = Vec::new();
        for (metric, floor) in &p.floors {
            let e = estimates.iter().find(|e| e.metric == metric.as_str());
            let (ok, detail) = match e.and_then(|e| e.value) {
                Some(x) => (Some(x >= *floor), format!("{metric} = {x:.4} (floor {floor})")),
                None => (Some(false), format!("{metric} is undefined or unknown on this holdout (floor {floor})")),
            };
            gates.push(gate(&format!("floor:{metric}"), ok, detail));
        }
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
        // Fairness per attribute, and the intersection of all of them.
        let mut attrs: Vec<(String, Vec<String>)> = d.sensitive.clone();
        if d.sensitive.len() > 1 {
            let cols: Vec<&[String]> = d.sensitive.iter().map(|(_, v)| v.as_slice()).collect();
            attrs.push((d.sensitive.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join("|"), intersect(&cols)));
        }
        let mut fairness = Vec::new();
        for (name, values) in &attrs {
            let (per, _) = by_group(&d.labels, &d.scores, values, d.threshold);
            let evidence = screen(per, p.min_group);
            let sufficient: Vec<_> = evidence.iter().filter_map(|e| if let GroupEvidence::Rates(r) = e { Some(r.clone()) } else { None }).collect();
            let sm = summary(&sufficient, Mode::Strict);
            let eo = sm.equalized_odds_difference;
            let ok = eo.map(|x| x <= p.max_equalized_odds_difference);
            gates.push(gate(
                &format!("fairness:{name}"),
                Some(ok.unwrap_or(false)),
                match eo {
                    Some(x) => format!("equalized odds difference {x:.4} (tolerance {})", p.max_equalized_odds_difference),
                    None => "equalized odds undefined: fewer than two groups with sufficient evidence".into(),
                },
            ));
            let groups: Vec<Value> = evidence
                .iter()
                .map(|e| match e {
                    GroupEvidence::Rates(r) => json!({"group": r.group, "n": r.n, "positives": r.n_pos, "negatives": r.n_neg, "selection_rate": r.selection_rate, "tpr": r.tpr, "fpr": r.fpr, "ppv": r.ppv, "npv": r.npv, "auc": r.auc}),
                    GroupEvidence::Insufficient { group, n, reason } => json!({"group": group, "n": n, "insufficient_evidence": reason}),
                })
                .collect();
            let reference = reference_ratios(&sufficient, |g| g.selection_rate, None)
                .map(|(r, ratios)| json!({"reference": r, "selection_rate_ratios": ratios.iter().map(|x| json!({"group": x.group, "ratio": x.ratio, "within_0_8_1_25": x.within_band})).collect::<Vec<_>>()}));
            fairness.push(json!({
                "attribute": name,
                "groups": groups,
                "demographic_parity_difference": sm.demographic_parity.difference,
                "demographic_parity_ratio": sm.demographic_parity.ratio,
                "equal_opportunity_difference": sm.equal_opportunity.difference,
                "equalized_odds_difference": eo,
                "equalized_odds_ratio": sm.equalized_odds_ratio,
                "excluded_as_undefined": {"tpr": sm.equal_opportunity.excluded, "fpr": sm.fpr.excluded},
                "reference_group": reference,
            }));
        }
        // Evidence about the record itself.
        let c = &v.content;
        if p.require_card_complete {
            let missing: Vec<&str> = c.card.missing_hti1().iter().map(|f| f.key()).collect();
            gates.push(gate("model_card", Some(missing.is_empty()), if missing.is_empty() { "all 31 HTI-1 attributes present".into() } else { format!("{} HTI-1 attributes missing, e.g. {}", missing.len(), missing[0]) }));
        }
        if p.require_data_hash {
            gates.push(gate("lineage:training_data_hash", Some(c.lineage.training_data_hash.is_some()), "the training data hash must be recorded".into()));
        }
        if p.require_artifact_digest {
            gates.push(gate("artifact_digest", Some(c.artifact_sha256.is_some()), "the artifact's SHA-256 must be recorded".into()));
        }
        let demographic: Vec<&String> = c.lineage.features.iter().filter(|f| DEMOGRAPHIC.iter().any(|d| f.to_ascii_lowercase().contains(d))).collect();
        if !demographic.is_empty() {
            let noted = c.card.get(crate::card::CardField::DemographicInputs).is_some();
            gates.push(gate("demographic_inputs", Some(noted), format!("{} demographic input feature(s); the card must record their use and mitigation (development.demographic_inputs)", demographic.len())));
        }
        let passed = gates.iter().all(|g| g["passed"] == true);
        json!({
            "record": "vigil.validation_report/1",
            "model": v.model_name.as_str(),
            "version": v.version.to_string(),
            "content_hash": v.content_hash.to_hex(),
            "rows": d.labels.len(),
            "threshold": d.threshold,
            "threshold_rule": "score >= threshold is a positive prediction",
            "bootstrap": {"resamples": p.resamples, "seed": p.seed, "generator": "SplitMix64", "interval": "percentile, type 7, 95%"},
            "metrics": estimates.iter().map(estimate_json).collect::<Vec<_>>(),
            "champion": champion_block,
            "fairness": fairness,
            "gates": gates,
            "passed": passed,
        })
    }
}
