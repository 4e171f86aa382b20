//! Online features: what the gateway looks up when a request carries an entity id (a patient,
//! an encounter) instead of the model's inputs.
//!
//! The feature *names* come from the model version (`lineage.features`, in model order, part
//! of the signed content); *where* they are read from is the deployment's business
//! ([`FeatureLookup`]): Vigil's embedded online store (a table in the registry's database,
//! filled with [`Registry::put_online_features`]) or a Feast feature server. Vectors are
//! assembled by name, never by position. Every feature of every row gets a status:
//! `present`, `missing` (no value, or no such entity) or `outside_max_age`; a required
//! feature that is not `present` fails the request, and the statuses go to the prediction log.

use crate::auth::{Action, Principal};
use crate::error::{Error, ErrorCode, Result};
use crate::monitor::{Batch, Column};
use crate::registry::{Attempt, Registry};
use serde_json::{Value, json};

/// Where features are read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeatureSource {
    /// Vigil's embedded online store: a named feature set.
    Embedded {
        /// The feature set (a namespace of the online store).
        feature_set: String,
    },
    /// A Feast feature server (`POST {url}/get-online-features`).
    Feast {
        /// Base URL (`http://host:6566`).
        url: String,
        /// The feature view the names are read from (`view:name` references)…
        feature_view: Option<String>,
        /// …or a feature service that serves them.
        feature_service: Option<String>,
        /// How long the gateway waits for an answer.
        timeout_ms: u32,
    },
}

/// A deployment's online feature lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureLookup {
    /// The entity's join key: the request field (or OIP input) carrying the ids.
    pub entity: String,
    /// Where the values come from.
    pub source: FeatureSource,
    /// Values older than this are `outside_max_age` (none: any age).
    pub max_age_seconds: Option<u64>,
    /// Features that may be missing (the model must accept missing values); all others are
    /// required.
    pub optional: Vec<String>,
}

fn name_ok(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

impl FeatureLookup {
    /// The JSON form.
    pub fn to_json(&self) -> Value {
        let mut v = match &self.source {
            FeatureSource::Embedded { feature_set } => json!({"source": "embedded", "feature_set": feature_set}),
            FeatureSource::Feast { url, feature_view, feature_service, timeout_ms } => {
                json!({"source": "feast", "url": url, "feature_view": feature_view, "feature_service": feature_service, "timeout_ms": timeout_ms})
            }
        };
        v["entity"] = json!(self.entity);
        v["max_age_seconds"] = json!(self.max_age_seconds);
        v["optional"] = json!(self.optional);
        v
    }

    /// From the JSON form.
    pub fn from_json(v: &Value) -> Result<FeatureLookup> {
        let bad = |m: &str| Error::new(ErrorCode::InvalidPolicy, format!("features: {m}"));
        let obj = v.as_object().ok_or_else(|| bad("an object with entity and source"))?;
        if let Some(k) = obj.keys().find(|k| !matches!(k.as_str(), "entity" | "source" | "feature_set" | "url" | "feature_view" | "feature_service" | "timeout_ms" | "max_age_seconds" | "optional")) {
            return Err(bad(&format!("unknown key {}", crate::ids::quote_key(k))));
        }
        let text = |k: &str| obj.get(k).and_then(Value::as_str).map(str::to_owned);
        let entity = text("entity").filter(|e| name_ok(e)).ok_or_else(|| bad("entity is the join key: up to 128 letters, digits, '_', '-' or '.'"))?;
        let source = match text("source").as_deref().unwrap_or("embedded") {
            "embedded" => FeatureSource::Embedded { feature_set: text("feature_set").filter(|s| name_ok(s)).ok_or_else(|| bad("feature_set is required: up to 128 letters, digits, '_', '-' or '.'"))? },
            "feast" => {
                let url = text("url").ok_or_else(|| bad("url is required for Feast"))?;
                let lower = url.to_ascii_lowercase();
                if !(lower.starts_with("http://") || lower.starts_with("https://")) || url.len() > 2048 || url.chars().any(char::is_control) {
                    return Err(bad("url must be an http:// or https:// address"));
                }
                let (feature_view, feature_service) = (text("feature_view"), text("feature_service"));
                if feature_view.is_some() == feature_service.is_some() || feature_view.iter().chain(&feature_service).any(|s| !name_ok(s)) {
                    return Err(bad("give either feature_view or feature_service (a name)"));
                }
                let timeout_ms = match obj.get("timeout_ms") {
                    None | Some(Value::Null) => 1000,
                    Some(t) => t.as_u64().filter(|t| (1..=60_000).contains(t)).ok_or_else(|| bad("timeout_ms is 1 to 60000"))? as u32,
                };
                FeatureSource::Feast { url: url.trim_end_matches('/').to_owned(), feature_view, feature_service, timeout_ms }
            }
            _ => return Err(bad("source is embedded or feast")),
        };
        let max_age_seconds = match obj.get("max_age_seconds") {
            None | Some(Value::Null) => None,
            Some(a) => Some(a.as_u64().filter(|a| *a > 0).ok_or_else(|| bad("max_age_seconds is a positive whole number"))?),
        };
        let optional = match obj.get("optional") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a.iter().map(|s| s.as_str().map(str::to_owned).ok_or_else(|| bad("optional is a list of feature names"))).collect::<Result<_>>()?,
            Some(_) => return Err(bad("optional is a list of feature names")),
        };
        Ok(FeatureLookup { entity, source, max_age_seconds, optional })
    }
}

/// A feature's status for one entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeatureStatus {
    /// A value within the maximum age.
    Present,
    /// No value (the entity or the feature is unknown, or the value is null).
    Missing,
    /// A value older than the maximum age (not used).
    OutsideMaxAge,
}

impl FeatureStatus {
    /// The logged name.
    pub fn as_str(self) -> &'static str {
        match self {
            FeatureStatus::Present => "present",
            FeatureStatus::Missing => "missing",
            FeatureStatus::OutsideMaxAge => "outside_max_age",
        }
    }
}

/// A looked-up value (a JSON number or text; none unless present) and its status.
pub type FeatureValue = (Option<Value>, FeatureStatus);

/// The largest number of entities one lookup may ask for.
pub const MAX_ENTITIES: usize = 10_000;

/// An entity id as text: strings as they are, whole numbers in decimal.
pub fn entity_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() && s.len() <= 256 => Some(s.clone()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

impl Registry {
    /// Writes feature values into the embedded online store (newest value wins per entity and
    /// feature): one row per entity, the `entity` column holding its id, every other column a
    /// feature. Audited (counts and names, never values).
    pub fn put_online_features(&self, actor: &Principal, feature_set: &str, entity: &str, data: &Batch) -> Result<(usize, usize)> {
        if !name_ok(feature_set) || !name_ok(entity) {
            return Err(Error::new(ErrorCode::InvalidManifest, "feature set and entity names are up to 128 letters, digits, '_', '-' or '.'"));
        }
        let rows = data.rows()?;
        let ids = data.features.get(entity).ok_or_else(|| Error::new(ErrorCode::InvalidManifest, format!("the data has no entity column {}", crate::ids::quote_key(entity))))?;
        let ids: Vec<Option<String>> = match ids {
            Column::Numeric(v) => v.iter().map(|x| (x.is_finite() && x.fract() == 0.0 && x.abs() < 9.0e15).then(|| format!("{}", *x as i64))).collect(),
            Column::Categorical { dictionary, codes } => codes.iter().map(|&c| dictionary.get(c as usize).cloned()).collect(),
        };
        if ids.iter().any(|i| i.as_ref().is_none_or(|s| s.is_empty() || s.len() > 256)) {
            return Err(Error::new(ErrorCode::InvalidManifest, "every row needs an entity id (text up to 256 characters, or a whole number)"));
        }
        let features: Vec<(&String, &Column)> = data.features.iter().filter(|(n, _)| n.as_str() != entity).collect();
        if features.is_empty() {
            return Err(Error::new(ErrorCode::InvalidManifest, "the data has no feature columns besides the entity"));
        }
        let mut cells: Vec<(String, String, Option<String>)> = Vec::with_capacity(rows * features.len());
        for (r, id) in ids.iter().enumerate() {
            let id = id.clone().unwrap_or_default();
            for (name, col) in &features {
                let value = match col {
                    Column::Numeric(v) => v[r].is_finite().then(|| json!(v[r]).to_string()),
                    Column::Categorical { dictionary, codes } => dictionary.get(codes[r] as usize).map(|s| json!(s).to_string()),
                };
                cells.push((id.clone(), (*name).clone(), value));
            }
        }
        let attempt = Attempt { actor: actor.user_id().as_str(), action: "features.write", entity_type: "feature_set", entity_id: feature_set, model: None, version: None };
        self.governed(attempt, |tx| {
            let user = Self::acting_user(tx, actor, Action::Monitor)?;
            let now = self.clock.now();
            tx.upsert_online_features(feature_set, &cells, now)?;
            let names: Vec<&String> = features.iter().map(|(n, _)| *n).collect();
            tx.append_audit(self.event(user.id.as_str(), "features.write", "feature_set", feature_set, json!({"new": {"entities": rows, "features": names, "entity": entity}})))?;
            Ok((rows, features.len()))
        })
    }

    /// Checks, before any data is read, that the actor may write online features (a refusal
    /// is audited).
    pub fn authorize_feature_write(&self, actor: &Principal, feature_set: &str) -> Result<()> {
        let attempt = Attempt { actor: actor.user_id().as_str(), action: "features.write", entity_type: "feature_set", entity_id: feature_set, model: None, version: None };
        self.governed(attempt, |tx| Self::acting_user(tx, actor, Action::Monitor).map(|_| ()))
    }

    /// Reads features of entities from the embedded online store, by name: per entity, per
    /// name, the value (JSON number or text) and its status. For the gateway (a read of the
    /// registry's store; the prediction log records what was used).
    pub fn lookup_online_features(&self, feature_set: &str, entities: &[String], names: &[String], max_age_seconds: Option<u64>) -> Result<Vec<Vec<FeatureValue>>> {
        if entities.len() > MAX_ENTITIES {
            return Err(Error::new(ErrorCode::InvalidManifest, format!("at most {MAX_ENTITIES} entities per request")));
        }
        let now = self.clock.now();
        self.read(|tx| {
            let mut out = Vec::with_capacity(entities.len());
            for e in entities {
                let found = tx.online_features(feature_set, e)?;
                let row = names
                    .iter()
                    .map(|n| match found.iter().find(|(f, _, _)| f == n) {
                        Some((_, Some(v), at)) => {
                            let stale = max_age_seconds.is_some_and(|m| now.micros().saturating_sub(at.micros()) > (m as i64).saturating_mul(1_000_000));
                            let value = serde_json::from_str::<Value>(v).ok();
                            match (value, stale) {
                                (Some(_), true) => (None, FeatureStatus::OutsideMaxAge),
                                (Some(v), false) => (Some(v), FeatureStatus::Present),
                                (None, _) => (None, FeatureStatus::Missing),
                            }
                        }
                        _ => (None, FeatureStatus::Missing),
                    })
                    .collect();
                out.push(row);
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn lookups_parse_and_refuse_what_they_cannot_use() {
        let e = FeatureLookup::from_json(&json!({"entity": "patient_id", "source": "embedded", "feature_set": "vitals", "optional": ["spo2"]})).unwrap();
        assert_eq!(FeatureLookup::from_json(&e.to_json()).unwrap(), e);
        let f = FeatureLookup::from_json(&json!({"entity": "patient_id", "source": "feast", "url": "http://127.0.0.1:6566/", "feature_view": "patient_vitals"})).unwrap();
        assert_eq!(f.source, FeatureSource::Feast { url: "http://127.0.0.1:6566".into(), feature_view: Some("patient_vitals".into()), feature_service: None, timeout_ms: 1000 });
        for bad in [
            json!({"source": "embedded", "feature_set": "v"}),
            json!({"entity": "p", "source": "embedded"}),
            json!({"entity": "p", "source": "feast", "url": "file:///etc/passwd", "feature_view": "v"}),
            json!({"entity": "p", "source": "feast", "url": "http://x", "feature_view": "v", "feature_service": "s"}),
            json!({"entity": "p", "source": "redis"}),
            json!({"entity": "p", "feature_set": "v", "max_age_seconds": 0}),
            json!({"entity": "p", "feature_set": "v", "typo": 1}),
        ] {
            assert!(FeatureLookup::from_json(&bad).is_err(), "{bad}");
        }
        assert_eq!(entity_text(&json!(17)), Some("17".into()));
        assert_eq!(entity_text(&json!(1.5)), None);
    }
}
