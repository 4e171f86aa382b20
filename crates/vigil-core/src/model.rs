//! Registered models, model versions, their metrics and lineage, the lifecycle stages with the
//! one table of allowed transitions, and the content hash a reviewer signs.

use crate::canonical;
use crate::card::ModelCard;
use crate::error::{Error, ErrorCode, Result};
use crate::ids::{ModelName, Sha256Digest, Timestamp, UserId};
use crate::semver::Version;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

macro_rules! string_enum {
    ($(#[$doc:meta])* $name:ident, $code:ident, $what:literal { $( $variant:ident = $s:literal ),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name { $( #[doc = $s] $variant, )* }

        impl $name {
            /// Every value.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            /// The stable lowercase name.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $s,)* }
            }

            /// Parses the stable name (case-insensitive).
            pub fn parse(s: &str) -> $crate::error::Result<Self> {
                let lower = s.to_ascii_lowercase();
                match lower.as_str() {
                    $($s => Ok($name::$variant),)*
                    _ => Err($crate::error::Error::new($crate::error::ErrorCode::$code, format!(
                        concat!("unknown ", $what, "; expected one of: {}"),
                        [$($s),*].join(", ")
                    ))),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
pub(crate) use string_enum;

string_enum!(
    /// What kind of prediction a model makes.
    ModelType, InvalidModelType, "model type" {
        Classification = "classification",
        Regression = "regression",
        Survival = "survival",
        Ranking = "ranking",
        Other = "other",
    }
);

string_enum!(
    /// A model version's lifecycle stage.
    Stage, InvalidStage, "stage" {
        Development = "development",
        Staging = "staging",
        Production = "production",
        Archived = "archived",
    }
);

/// The one table of allowed stage transitions. Every transition goes through a governed
/// promotion request, including rollback (Archived → Production) and retirement
/// (→ Archived). The automatic move of the previous Production version to Archived, when a new
/// one is promoted, is the consequence of an approved request, not a request of its own.
pub const ALLOWED_TRANSITIONS: &[(Stage, Stage)] = &[
    (Stage::Development, Stage::Staging),
    (Stage::Development, Stage::Production),
    (Stage::Development, Stage::Archived),
    (Stage::Staging, Stage::Production),
    (Stage::Staging, Stage::Archived),
    (Stage::Production, Stage::Archived),
    (Stage::Archived, Stage::Staging),
    (Stage::Archived, Stage::Production),
];

impl Stage {
    /// Whether the table allows moving from `self` to `to`.
    pub fn can_transition_to(self, to: Stage) -> bool {
        ALLOWED_TRANSITIONS.contains(&(self, to))
    }

    /// Whether the signed content of a version in this stage may still be edited. Only
    /// Development: once a version has been approved into any stage its content is frozen, and
    /// a change means a new version (an approval must never silently cover other content).
    pub fn content_editable(self) -> bool {
        matches!(self, Stage::Development)
    }
}

/// Named performance metrics. The seed's `accuracy`, `auc_roc`, `precision`, `recall`, `f1`
/// are ordinary names here; any other name is allowed too.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics(BTreeMap<String, f64>);

impl Metrics {
    /// The well-known metric names of the original system.
    pub const WELL_KNOWN: &'static [&'static str] = &["accuracy", "auc_roc", "precision", "recall", "f1"];

    /// No metrics.
    pub fn new() -> Self {
        Metrics::default()
    }

    /// Sets a metric; names are 1–250 chars of letters, digits, `_ - . / :` and spaces; values
    /// must be finite.
    pub fn set(&mut self, name: &str, value: f64) -> Result<&mut Self> {
        let ok_name = !name.is_empty()
            && name.len() <= 250
            && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | ':' | ' '));
        if !ok_name {
            return Err(Error::new(ErrorCode::InvalidMetric, "metric names are 1-250 characters of letters, digits, '_', '-', '.', '/', ':' or space"));
        }
        if !value.is_finite() {
            return Err(Error::new(ErrorCode::InvalidMetric, format!("metric {} must be a finite number", crate::ids::quote_key(name))));
        }
        self.0.insert(name.to_owned(), value);
        Ok(self)
    }

    /// A metric's value.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.0.get(name).copied()
    }

    /// All metrics in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, f64)> {
        self.0.iter().map(|(k, v)| (k.as_str(), *v))
    }

    /// JSON object of name → number.
    pub fn to_json(&self) -> Value {
        Value::Object(self.0.iter().map(|(k, v)| (k.clone(), json!(v))).collect())
    }

    /// Parses a JSON object of name → number.
    pub fn from_json(v: &Value) -> Result<Self> {
        let obj = v.as_object().ok_or_else(|| Error::new(ErrorCode::InvalidMetric, "metrics must be an object of name to number"))?;
        let mut m = Metrics::new();
        for (k, val) in obj {
            let f = val.as_f64().ok_or_else(|| Error::new(ErrorCode::InvalidMetric, format!("metric {} must be a number", crate::ids::quote_key(k))))?;
            m.set(k, f)?;
        }
        Ok(m)
    }
}

/// Where a model version came from. Every field is optional; what is missing shows up as a
/// lineage gap in `vigil lineage` (and, in a later issue, as a validation gate).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lineage {
    /// Location of the training data set.
    pub training_data_uri: Option<String>,
    /// Version label of the training data set.
    pub training_data_version: Option<String>,
    /// Content hash of the training data (free form, e.g. `sha256:…`); indexed for search.
    pub training_data_hash: Option<String>,
    /// Experiment-tracking run that produced the model.
    pub training_run_id: Option<String>,
    /// Source code commit.
    pub code_commit: Option<String>,
    /// Digest of the training environment (container image, lock file).
    pub environment_digest: Option<String>,
    /// The version this one was derived from, as `name@version`.
    pub parent_model_version: Option<String>,
    /// Input feature names, in model order.
    pub features: Vec<String>,
}

const LINEAGE_TEXT_FIELDS: &[&str] = &[
    "training_data_uri",
    "training_data_version",
    "training_data_hash",
    "training_run_id",
    "code_commit",
    "environment_digest",
    "parent_model_version",
];

impl Lineage {
    fn text_fields(&self) -> [(&'static str, &Option<String>); 7] {
        [
            ("training_data_uri", &self.training_data_uri),
            ("training_data_version", &self.training_data_version),
            ("training_data_hash", &self.training_data_hash),
            ("training_run_id", &self.training_run_id),
            ("code_commit", &self.code_commit),
            ("environment_digest", &self.environment_digest),
            ("parent_model_version", &self.parent_model_version),
        ]
    }

    /// JSON form (absent fields omitted). Part of the signed content encoding.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        for (k, v) in self.text_fields() {
            if let Some(v) = v {
                m.insert(k.into(), Value::String(v.clone()));
            }
        }
        if !self.features.is_empty() {
            m.insert("features".into(), json!(self.features));
        }
        Value::Object(m)
    }

    /// Parses the JSON form; unknown keys and non-string values are rejected.
    pub fn from_json(v: &Value) -> Result<Self> {
        let bad = |msg: String| Error::new(ErrorCode::InvalidManifest, msg);
        let obj = v.as_object().ok_or_else(|| bad("lineage must be an object".into()))?;
        let mut l = Lineage::default();
        for (k, val) in obj {
            if k == "features" {
                let arr = val.as_array().ok_or_else(|| bad("lineage.features must be a list of strings".into()))?;
                for f in arr {
                    let s = f.as_str().ok_or_else(|| bad("lineage.features must be a list of strings".into()))?;
                    l.features.push(crate::ids::required_text("lineage feature name", s, 256)?);
                }
                continue;
            }
            if !LINEAGE_TEXT_FIELDS.contains(&k.as_str()) {
                return Err(bad(format!("unknown lineage field {}", crate::ids::quote_key(k))));
            }
            let s = val.as_str().ok_or_else(|| bad(format!("lineage.{k} must be a string")))?;
            let s = crate::ids::required_text(&format!("lineage.{k}"), s, 2048)?;
            let slot = match k.as_str() {
                "training_data_uri" => &mut l.training_data_uri,
                "training_data_version" => &mut l.training_data_version,
                "training_data_hash" => &mut l.training_data_hash,
                "training_run_id" => &mut l.training_run_id,
                "code_commit" => &mut l.code_commit,
                "environment_digest" => &mut l.environment_digest,
                _ => &mut l.parent_model_version,
            };
            *slot = Some(s);
        }
        Ok(l)
    }

    /// Names of lineage fields that are not recorded.
    pub fn gaps(&self) -> Vec<&'static str> {
        let mut g: Vec<&'static str> = self.text_fields().iter().filter(|(_, v)| v.is_none()).map(|(k, _)| *k).collect();
        if self.features.is_empty() {
            g.push("features");
        }
        g
    }
}

/// A registered model: the named container of versions.
#[derive(Debug, Clone, PartialEq)]
pub struct RegisteredModel {
    /// Internal id (`mdl_…`).
    pub id: String,
    /// Unique name.
    pub name: ModelName,
    /// Owning user or team.
    pub owner: String,
    /// Free-text description.
    pub description: String,
    /// Key/value tags.
    pub tags: BTreeMap<String, String>,
    /// Kind of model.
    pub model_type: ModelType,
    /// Who created it.
    pub created_by: UserId,
    /// When.
    pub created_at: Timestamp,
}

/// The signed content of a model version: everything a reviewer approves.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionContent {
    /// Where the artifact lives.
    pub artifact_uri: String,
    /// The artifact's SHA-256, if known.
    pub artifact_sha256: Option<Sha256Digest>,
    /// Performance metrics.
    pub metrics: Metrics,
    /// Provenance.
    pub lineage: Lineage,
    /// Model card.
    pub card: ModelCard,
}

/// The record tag inside the content document; bump it when the document's shape changes.
pub const CONTENT_RECORD: &str = "vigil.model_version.content/1";

impl VersionContent {
    /// The canonical document whose SHA-256 is the version's content hash. Built field by
    /// field so that Rust refactors cannot change signed hashes.
    pub fn content_document(&self, model: &ModelName, version: &Version, model_type: ModelType) -> Value {
        json!({
            "encoding": canonical::ENCODING,
            "record": CONTENT_RECORD,
            "model": model.as_str(),
            "version": version.to_string(),
            "model_type": model_type.as_str(),
            "artifact": {
                "uri": self.artifact_uri,
                "sha256": self.artifact_sha256.map(|d| d.to_hex()),
            },
            "metrics": self.metrics.to_json(),
            "lineage": self.lineage.to_json(),
            "card": self.card.to_json(),
            // Filled by the validation issue: the evidence bound to the signed hash.
            "validation": Value::Null,
        })
    }

    /// Checks the parts whose fields are public (lineage text, artifact URI) with the same
    /// rules the parsers apply, so that whatever is stored can be read back.
    pub fn validate(&self) -> Result<()> {
        crate::ids::required_text("artifact uri", &self.artifact_uri, 2048)?;
        let reparsed = Lineage::from_json(&self.lineage.to_json())?;
        if reparsed != self.lineage {
            return Err(Error::new(ErrorCode::InvalidManifest, "lineage fields must not be blank or have surrounding whitespace"));
        }
        Ok(())
    }

    /// SHA-256 of the canonical content document.
    pub fn content_hash(&self, model: &ModelName, version: &Version, model_type: ModelType) -> Sha256Digest {
        Sha256Digest::of(canonical::encode(&self.content_document(model, version, model_type)).as_bytes())
    }
}

/// A model version as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelVersion {
    /// Internal id (`mv_…`); the seed's `model.model_id`.
    pub id: String,
    /// The registered model's id.
    pub model_id: String,
    /// The model's name (denormalised for display and audit).
    pub model_name: ModelName,
    /// Kind of model (from the registered model).
    pub model_type: ModelType,
    /// The semantic version.
    pub version: Version,
    /// The version's number within its model: 1, 2, … in registration order. MLflow's
    /// integer version; shown beside the semantic version everywhere.
    pub number: i64,
    /// Current stage.
    pub stage: Stage,
    /// What reviewers sign.
    pub content: VersionContent,
    /// Stored content hash (recomputed and compared whenever it matters).
    pub content_hash: Sha256Digest,
    /// Who registered it.
    pub created_by: UserId,
    /// When.
    pub created_at: Timestamp,
}

impl ModelVersion {
    /// `name@version`.
    pub fn reference(&self) -> String {
        format!("{}@{}", self.model_name, self.version)
    }

    /// The content hash recomputed from the stored fields. If it differs from
    /// `content_hash`, the record was altered outside Vigil.
    pub fn recompute_content_hash(&self) -> Sha256Digest {
        self.content.content_hash(&self.model_name, &self.version, self.model_type)
    }
}

/// A recorded stage change of a model version.
#[derive(Debug, Clone, PartialEq)]
pub struct StageTransition {
    /// Record id.
    pub id: String,
    /// The version that moved.
    pub model_version_id: String,
    /// Previous stage (`None` at registration).
    pub from_stage: Option<Stage>,
    /// New stage.
    pub to_stage: Stage,
    /// The approved request that caused it, if any.
    pub request_id: Option<String>,
    /// Why (e.g. "registered", "approved request", "superseded by x@2.0.0").
    pub reason: String,
    /// Who caused it.
    pub actor: UserId,
    /// When.
    pub at: Timestamp,
}

/// Parses `name@version` into its parts.
pub fn parse_reference(s: &str) -> Result<(ModelName, Version)> {
    let (n, v) = s
        .split_once('@')
        .ok_or_else(|| Error::new(ErrorCode::InvalidVersion, "expected NAME@VERSION, e.g. diabetes-risk@1.0.0"))?;
    Ok((ModelName::parse(n)?, Version::parse(v)?))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn transition_table_is_exactly_the_documented_one() {
        use Stage::*;
        // Rows: from; columns: to Development, Staging, Production, Archived. Written out by
        // hand (not derived from the table under test) as documented in README/ARCHITECTURE.
        let expected = [
            (Development, [false, true, true, true]),
            (Staging, [false, false, true, true]),
            (Production, [false, false, false, true]),
            (Archived, [false, true, true, false]),
        ];
        for (from, row) in expected {
            for (to, want) in [Development, Staging, Production, Archived].into_iter().zip(row) {
                assert_eq!(from.can_transition_to(to), want, "{from} -> {to}");
            }
        }
    }

    #[test]
    fn content_hash_changes_with_every_signed_field() {
        let name = ModelName::parse("m").unwrap();
        let ver = Version::parse("1.0.0").unwrap();
        let base = VersionContent {
            artifact_uri: "s3://m/1".into(),
            artifact_sha256: Some(Sha256Digest::of(b"model")),
            metrics: Metrics::new(),
            lineage: Lineage::default(),
            card: ModelCard::new(),
        };
        let h0 = base.content_hash(&name, &ver, ModelType::Classification);
        let mut variants = Vec::new();
        let mut c = base.clone();
        c.artifact_uri = "s3://m/2".into();
        variants.push(c);
        let mut c = base.clone();
        c.artifact_sha256 = Some(Sha256Digest::of(b"other"));
        variants.push(c);
        let mut c = base.clone();
        c.metrics.set("auc_roc", 0.95).unwrap();
        variants.push(c);
        let mut c = base.clone();
        c.lineage.training_data_hash = Some("sha256:abc".into());
        variants.push(c);
        let mut c = base.clone();
        c.card.set(crate::card::CardField::IntendedUse, "x").unwrap();
        variants.push(c);
        for v in &variants {
            assert_ne!(v.content_hash(&name, &ver, ModelType::Classification), h0);
        }
        assert_ne!(base.content_hash(&name, &ver, ModelType::Regression), h0);
        assert_ne!(base.content_hash(&name, &Version::parse("1.0.0+b").unwrap(), ModelType::Classification), h0);
        assert_eq!(base.content_hash(&name, &ver, ModelType::Classification), h0);
    }
}
