//! The registration manifest: a TOML or JSON document describing a model version (the seed's
//! `register_model` arguments). Every field is checked with the domain's own parsers; unknown
//! keys and wrong types are refused with the key's path, never with its value.

use serde_json::{Map, Value};
use std::collections::BTreeMap;
use vigil_core::card::ModelCard;
use vigil_core::ids::{ModelName, Sha256Digest};
use vigil_core::model::{Lineage, Metrics, ModelType, VersionContent};
use vigil_core::registry::NewModelVersion;
use vigil_core::semver::Version;
use vigil_core::{Error, ErrorCode, Result};

/// A parsed manifest. Identity fields are optional so that command-line flags can supply them.
#[derive(Debug, Clone, Default)]
pub struct Manifest {
    /// Model name.
    pub name: Option<ModelName>,
    /// Version.
    pub version: Option<Version>,
    /// Model type.
    pub model_type: Option<ModelType>,
    /// Artifact location.
    pub artifact_uri: Option<String>,
    /// Artifact digest.
    pub artifact_sha256: Option<Sha256Digest>,
    /// Owner of a new registered model.
    pub owner: Option<String>,
    /// Description of a new registered model.
    pub description: Option<String>,
    /// Tags of a new registered model.
    pub tags: BTreeMap<String, String>,
    /// Metrics.
    pub metrics: Metrics,
    /// Lineage.
    pub lineage: Lineage,
    /// Model card.
    pub card: ModelCard,
}

const KEYS: &[&str] = &[
    "name", "version", "model_type", "artifact_uri", "artifact_sha256", "owner", "description", "tags", "metrics", "lineage", "card", "model_card",
];

fn bad(msg: String) -> Error {
    Error::new(ErrorCode::InvalidManifest, msg)
}

fn text<'a>(obj: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(bad(format!("manifest field '{key}' must be a string"))),
    }
}

/// Re-labels a domain error so it names the manifest section it came from.
fn within(section: &str) -> impl Fn(Error) -> Error + '_ {
    move |e| Error::new(ErrorCode::InvalidManifest, format!("manifest {section}: {}", e.message()))
}

impl Manifest {
    /// The JSON form [`Manifest::from_json`] reads (absent fields omitted).
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        let mut put = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                m.insert(k.to_owned(), Value::String(v));
            }
        };
        put("name", self.name.as_ref().map(|n| n.to_string()));
        put("version", self.version.as_ref().map(|v| v.to_string()));
        put("model_type", self.model_type.map(|t| t.as_str().to_owned()));
        put("artifact_uri", self.artifact_uri.clone());
        put("artifact_sha256", self.artifact_sha256.map(|d| d.to_hex()));
        put("owner", self.owner.clone());
        put("description", self.description.clone());
        if !self.tags.is_empty() {
            m.insert("tags".into(), serde_json::json!(self.tags));
        }
        m.insert("metrics".into(), self.metrics.to_json());
        m.insert("lineage".into(), self.lineage.to_json());
        m.insert("card".into(), self.card.to_json());
        Value::Object(m)
    }

    /// Parses TOML (if `is_toml`) or JSON text.
    pub fn parse(text: &str, is_toml: bool) -> Result<Self> {
        let value: Value = if is_toml {
            let t: toml::Table = toml::from_str(text).map_err(|e| bad(format!("manifest is not valid TOML: {}", e.message())))?;
            serde_json::to_value(t).map_err(|_| bad("manifest could not be read".into()))?
        } else {
            serde_json::from_str(text).map_err(|e| bad(format!("manifest is not valid JSON (line {}, column {})", e.line(), e.column())))?
        };
        Manifest::from_json(&value)
    }

    /// Parses the JSON form.
    pub fn from_json(v: &Value) -> Result<Self> {
        let obj = v.as_object().ok_or_else(|| bad("manifest must be a table/object".into()))?;
        if let Some(k) = obj.keys().find(|k| !KEYS.contains(&k.as_str())) {
            return Err(bad(format!("unknown manifest field {}; expected one of: {}", vigil_core::ids::quote_key(k), KEYS.join(", "))));
        }
        if obj.contains_key("card") && obj.contains_key("model_card") {
            return Err(bad("give the model card once, as 'card' or 'model_card'".into()));
        }
        let mut m = Manifest {
            name: text(obj, "name")?.map(ModelName::parse).transpose().map_err(within("name"))?,
            version: text(obj, "version")?.map(Version::parse).transpose().map_err(within("version"))?,
            model_type: text(obj, "model_type")?.map(ModelType::parse).transpose().map_err(within("model_type"))?,
            artifact_uri: text(obj, "artifact_uri")?.map(str::to_owned),
            artifact_sha256: text(obj, "artifact_sha256")?.map(Sha256Digest::parse).transpose().map_err(within("artifact_sha256"))?,
            owner: text(obj, "owner")?.map(str::to_owned),
            description: text(obj, "description")?.map(str::to_owned),
            ..Default::default()
        };
        if let Some(t) = obj.get("tags") {
            let t = t.as_object().ok_or_else(|| bad("manifest field 'tags' must be a table of strings".into()))?;
            for (k, v) in t {
                let s = v.as_str().ok_or_else(|| bad(format!("manifest field tags.{} must be a string", vigil_core::ids::quote_key(k))))?;
                m.tags.insert(k.clone(), s.to_owned());
            }
        }
        if let Some(x) = obj.get("metrics") {
            m.metrics = Metrics::from_json(x).map_err(within("metrics"))?;
        }
        if let Some(x) = obj.get("lineage") {
            m.lineage = Lineage::from_json(x).map_err(within("lineage"))?;
        }
        if let Some(x) = obj.get("card").or_else(|| obj.get("model_card")) {
            m.card = ModelCard::from_json(x).map_err(within("card"))?;
        }
        Ok(m)
    }

    /// The signed content, if the artifact URI is known.
    pub fn content(&self) -> Result<VersionContent> {
        Ok(VersionContent {
            artifact_uri: self.artifact_uri.clone().ok_or_else(|| bad("artifact_uri is required (flag --artifact-uri or manifest field)".into()))?,
            artifact_sha256: self.artifact_sha256,
            metrics: self.metrics.clone(),
            lineage: self.lineage.clone(),
            card: self.card.clone(),
        })
    }

    /// A complete registration, once name, version and type are known.
    pub fn into_new_version(self) -> Result<NewModelVersion> {
        let content = self.content()?;
        Ok(NewModelVersion {
            name: self.name.ok_or_else(|| bad("model name is required (argument NAME or manifest field 'name')".into()))?,
            version: self.version.ok_or_else(|| bad("version is required (flag --version or manifest field 'version')".into()))?,
            model_type: self.model_type.ok_or_else(|| bad("model type is required (flag --type or manifest field 'model_type')".into()))?,
            content,
            owner: self.owner,
            description: self.description,
            tags: self.tags,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const TOML: &str = r#"
name = "diabetes-risk-classifier"
version = "1.0.0"
model_type = "classification"
artifact_uri = "s3://models/diabetes-classifier/v1.0.0"
artifact_sha256 = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

[metrics]
accuracy = 0.92
auc_roc = 0.95

[lineage]
training_data_uri = "s3://data/diabetes-training-v3"
training_data_hash = "sha256:abc123"
features = ["age", "bmi", "glucose"]

[card]
model_name = "Diabetes Risk Classifier"
intended_use = "Identify patients at risk for Type 2 diabetes"
"external_validation.party" = { not_available = "no external validation yet" }
"#;

    #[test]
    fn toml_and_json_manifests_agree() {
        let t = Manifest::parse(TOML, true).unwrap().into_new_version().unwrap();
        let as_json = serde_json::to_string(&serde_json::to_value(toml::from_str::<toml::Table>(TOML).unwrap()).unwrap()).unwrap();
        let j = Manifest::parse(&as_json, false).unwrap().into_new_version().unwrap();
        assert_eq!(t.content, j.content);
        assert_eq!(t.version.to_string(), "1.0.0");
        assert_eq!(t.content.metrics.get("auc_roc"), Some(0.95));
        assert_eq!(t.content.lineage.features, ["age", "bmi", "glucose"]);
    }

    #[test]
    fn the_json_form_reads_back_identically() {
        let m = Manifest::parse(TOML, true).unwrap();
        let back = Manifest::from_json(&m.to_json()).unwrap();
        assert_eq!(back.to_json(), m.to_json());
        let (a, b) = (m.into_new_version().unwrap(), back.into_new_version().unwrap());
        assert_eq!((a.content, a.version, a.model_type), (b.content, b.version, b.model_type));
    }

    #[test]
    fn errors_name_the_field_not_the_value() {
        let cases = [
            (r#"{"name": 5}"#, "'name' must be a string"),
            (r#"{"version": "1.0"}"#, "manifest version"),
            (r#"{"metrics": {"accuracy": "high"}}"#, "metric 'accuracy' must be a number"),
            (r#"{"lineage": {"features": "age"}}"#, "lineage.features"),
            (r#"{"card": {"intended_use": 3}}"#, "intended_use"),
            (r#"{"surprise": 1}"#, "unknown manifest field 'surprise'"),
            (r#"{"artifact_sha256": "PATIENT-123"}"#, "artifact_sha256"),
            ("not json", "not valid JSON"),
        ];
        for (doc, needle) in cases {
            let e = Manifest::parse(doc, false).unwrap_err();
            assert_eq!(e.code(), ErrorCode::InvalidManifest, "{doc}");
            assert!(e.message().contains(needle), "{doc}: {}", e.message());
            assert!(!e.message().contains("PATIENT-123") && !e.message().contains("high"), "value echoed: {}", e.message());
        }
        let e = Manifest::parse("name = \"x\"\n", true).unwrap().into_new_version().unwrap_err();
        assert!(e.message().contains("artifact_uri is required"));
    }
}
