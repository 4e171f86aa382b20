//! The registry catalogue as MLflow's model-registry API speaks of it
//! (`shared/reference/mlflow-api.md` §2–4): integer version numbers beside semantic versions,
//! descriptions and tags, aliases, MLflow's four stage names, and logged models (the entity
//! every `log_model` creates), with Vigil's governance on top:
//!
//! * A stage never moves outside the promotion workflow. Asking MLflow to transition a
//!   version is refused with `promotion_required` (403) naming the promotion API, unless the
//!   version is already in that stage because a request was approved.
//! * The guarded aliases `production` and `champion` are not stored: they always name the
//!   version approved into Production. Setting one to any other version is refused with
//!   `guarded_alias` (403); other aliases are free for data scientists and ML leads.
//! * A version registered through MLflow is the same governed record as one registered
//!   natively: its semantic version is the next major (or the `vigil.version` tag), its signed
//!   content binds the artifact location and, when the artifacts are Vigil's, their digest, the
//!   run's latest metrics and the run's lineage (git commit, training dataset).
//! * A logged model's artifacts can be written only while it is pending; finalising it freezes
//!   them, so what a version points at cannot change after registration.

use crate::auth::{Action, Principal};
use crate::error::{Error, ErrorCode, Result};
use crate::ids::{ModelName, Sha256Digest, required_text};
use crate::model::{Lineage, Metrics, ModelType, ModelVersion, RegisteredModel, Stage, VersionContent};
use crate::registry::{Attempt, NewModelVersion, Registry, not_found};
use crate::search::{Op, Operand};
use crate::semver::Version;
use crate::store::Tx;
use crate::tracking::{Lifecycle, check_run_id};
use serde_json::json;
use std::collections::BTreeMap;

/// Aliases that always name the Production version and cannot be pointed elsewhere.
pub const GUARDED_ALIASES: &[&str] = &["production", "champion"];

/// Longest alias (MLflow: 255).
pub const MAX_ALIAS_LEN: usize = 255;
/// Longest model or version description.
pub const MAX_DESCRIPTION_LEN: usize = 5000;
/// Longest source URI.
pub const MAX_SOURCE_LEN: usize = 2048;

/// MLflow's name of a stage: Development is MLflow's `None`.
pub fn mlflow_stage(s: Stage) -> &'static str {
    match s {
        Stage::Development => "None",
        Stage::Staging => "Staging",
        Stage::Production => "Production",
        Stage::Archived => "Archived",
    }
}

/// Parses MLflow's stage names (case-insensitive; `None` and Vigil's `development` are one).
pub fn parse_mlflow_stage(s: &str) -> Result<Stage> {
    match s.to_ascii_lowercase().as_str() {
        "none" | "development" => Ok(Stage::Development),
        "staging" => Ok(Stage::Staging),
        "production" => Ok(Stage::Production),
        "archived" => Ok(Stage::Archived),
        _ => Err(Error::new(ErrorCode::InvalidStage, "stage must be one of None, Staging, Production, Archived")),
    }
}

/// Whether an alias is one of [`GUARDED_ALIASES`] (compared case-insensitively, so
/// `Production` cannot slip past the guard).
pub fn is_guarded(alias: &str) -> bool {
    GUARDED_ALIASES.iter().any(|g| g.eq_ignore_ascii_case(alias))
}

/// Checks an alias name: 1–255 letters, digits, `_` or `-`; not `latest` or `v<digits>`
/// (MLflow reserves those for version references).
pub fn check_alias(alias: &str) -> Result<()> {
    let ok_chars = !alias.is_empty() && alias.len() <= MAX_ALIAS_LEN && alias.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !ok_chars {
        return Err(Error::new(ErrorCode::InvalidAlias, "aliases are 1 to 255 letters, digits, '_' or '-'"));
    }
    let lower = alias.to_ascii_lowercase();
    if lower == "latest" || (lower.len() > 1 && lower.starts_with('v') && lower[1..].bytes().all(|b| b.is_ascii_digit())) {
        return Err(Error::new(ErrorCode::InvalidAlias, "'latest' and 'v<number>' are reserved version references, not aliases"));
    }
    Ok(())
}

/// Whether `child` is `parent` or below it (compared on `/` boundaries).
pub fn within(child: &str, parent: &str) -> bool {
    let parent = parent.trim_end_matches('/');
    child == parent || child.strip_prefix(parent).is_some_and(|rest| rest.starts_with('/'))
}

/// The scheme of a URI (`s3`, `mlflow-artifacts`, …); `None` for local paths, `file:` and
/// drive letters.
fn remote_scheme(uri: &str) -> Option<&str> {
    let (scheme, _) = uri.split_once(":/")?;
    let ok = scheme.len() > 1 && scheme.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')) && !scheme.eq_ignore_ascii_case("file");
    ok.then_some(scheme)
}

/// The URIs a write to `mlflow-artifacts:/<path>` would fall under: the location itself and
/// each of its parents (a version registered from any of them freezes the write).
pub fn enclosing_locations(path: &str) -> Vec<String> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    (1..=segs.len()).map(|k| format!("mlflow-artifacts:/{}", segs[..k].join("/"))).collect()
}

fn check_tag(key: &str, value: &str) -> Result<()> {
    if key.is_empty() || key.len() > 250 || key.chars().any(char::is_control) {
        return Err(Error::new(ErrorCode::InvalidKey, "tag keys are 1 to 250 characters without control characters"));
    }
    if value.len() > 8000 || value.contains('\0') {
        return Err(Error::new(ErrorCode::InvalidText, "tag values are at most 8000 bytes without NUL characters"));
    }
    Ok(())
}

fn check_description(d: &str) -> Result<()> {
    if d.len() > MAX_DESCRIPTION_LEN || d.contains('\0') {
        return Err(Error::new(ErrorCode::InvalidText, format!("descriptions are at most {MAX_DESCRIPTION_LEN} bytes without NUL characters")));
    }
    Ok(())
}

/// Tags under `vigil.` on versions are Vigil's (the semantic version, the content hash) and
/// cannot be set by clients.
fn check_user_tag(key: &str) -> Result<()> {
    if key.starts_with("vigil.") {
        return Err(Error::new(ErrorCode::InvalidKey, "tags under 'vigil.' are set by vigil"));
    }
    Ok(())
}

/// The registry metadata of a version that is not signed content: description, tags and
/// where MLflow said it came from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VersionMeta {
    /// Free-text description.
    pub description: String,
    /// The source as given at registration (`models:/m-…`, `runs:/…`, a URI).
    pub source: String,
    /// The run that produced it.
    pub run_id: Option<String>,
    /// The logged model it was registered from.
    pub logged_model_id: Option<String>,
    /// Last change of the version (ms).
    pub updated_ms: i64,
    /// Tags by key.
    pub tags: Vec<(String, String)>,
}

/// A version with its catalogue metadata and the aliases that name it.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogVersion {
    /// The governed record.
    pub version: ModelVersion,
    /// Description, tags, source.
    pub meta: VersionMeta,
    /// Aliases naming this version (guarded ones included when it is in Production).
    pub aliases: Vec<String>,
}

/// A registered model with its aliases and the newest version of each stage.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogModel {
    /// The model.
    pub model: RegisteredModel,
    /// The newest version in each stage, by stage.
    pub latest_versions: Vec<CatalogVersion>,
    /// Alias → version number.
    pub aliases: Vec<(String, i64)>,
    /// The last change of the model or any of its versions (ms).
    pub last_updated_ms: i64,
}

/// A logged model's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoggedModelStatus {
    /// Artifacts are being uploaded.
    Pending,
    /// Finalised: artifacts are frozen.
    Ready,
    /// Logging failed.
    Failed,
}

impl LoggedModelStatus {
    /// MLflow's wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            LoggedModelStatus::Pending => "LOGGED_MODEL_PENDING",
            LoggedModelStatus::Ready => "LOGGED_MODEL_READY",
            LoggedModelStatus::Failed => "LOGGED_MODEL_UPLOAD_FAILED",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "LOGGED_MODEL_PENDING" => Ok(LoggedModelStatus::Pending),
            "LOGGED_MODEL_READY" => Ok(LoggedModelStatus::Ready),
            "LOGGED_MODEL_UPLOAD_FAILED" => Ok(LoggedModelStatus::Failed),
            _ => Err(Error::new(ErrorCode::InvalidText, "status must be LOGGED_MODEL_PENDING, LOGGED_MODEL_READY or LOGGED_MODEL_UPLOAD_FAILED")),
        }
    }
}

/// A logged model (MLflow 3): a model's artifacts logged from a run, before or without
/// registration.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedModel {
    /// `m-` + 32 hex digits.
    pub id: String,
    /// Experiment.
    pub experiment_id: i64,
    /// Name (the `name=` of `log_model`).
    pub name: String,
    /// `mlflow-artifacts:/<exp>/models/<id>/artifacts` (or under the experiment's location).
    pub artifact_uri: String,
    /// Pending, ready or failed.
    pub status: LoggedModelStatus,
    /// The run it was logged from.
    pub source_run_id: Option<String>,
    /// Free-form model type.
    pub model_type: Option<String>,
    /// Who logged it.
    pub created_by: String,
    /// Created (ms).
    pub creation_ms: i64,
    /// Last change (ms).
    pub updated_ms: i64,
    /// Tags by key.
    pub tags: Vec<(String, String)>,
    /// Params by key.
    pub params: Vec<(String, String)>,
}

/// A run's dataset inputs and its model outputs (logged model id, step).
pub type RunIo = (Vec<DatasetInput>, Vec<(String, i64)>);

/// Checks a logged model id's shape before it reaches the store.
pub fn check_logged_model_id(id: &str) -> Result<()> {
    match id.strip_prefix("m-") {
        Some(h) if h.len() == 32 && h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) => Ok(()),
        _ => Err(Error::new(ErrorCode::LoggedModelNotFound, "no logged model with that id")),
    }
}

/// A dataset a run used (MLflow's `log_input`).
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetInput {
    /// Dataset name.
    pub name: String,
    /// Content digest as the client computed it.
    pub digest: String,
    /// Kind of source (`local`, `s3`, `http`, `delta_table`, …).
    pub source_type: String,
    /// The source (JSON text as MLflow sends it).
    pub source: String,
    /// Schema (JSON text), if given.
    pub schema: Option<String>,
    /// Profile (JSON text), if given.
    pub profile: Option<String>,
    /// Input tags; `mlflow.data.context` (training, validation, …) among them.
    pub tags: Vec<(String, String)>,
}

impl DatasetInput {
    /// The `mlflow.data.context` tag.
    pub fn context(&self) -> Option<&str> {
        self.tags.iter().find(|(k, _)| k == "mlflow.data.context").map(|(_, v)| v.as_str())
    }

    fn validate(&self) -> Result<()> {
        let bad = |m: &str| Error::new(ErrorCode::InvalidText, m.to_owned());
        if self.name.is_empty() || self.name.len() > 500 || self.name.chars().any(char::is_control) {
            return Err(bad("dataset names are 1 to 500 characters without control characters"));
        }
        if self.digest.is_empty() || self.digest.len() > 64 || self.digest.chars().any(char::is_control) {
            return Err(bad("dataset digests are 1 to 64 characters"));
        }
        if self.source_type.len() > 100 || self.source.len() > 65_535 || self.source.contains('\0') || self.source_type.contains('\0') {
            return Err(bad("a dataset's source is at most 64 KiB of text and its type at most 100 characters"));
        }
        for t in [&self.schema, &self.profile].into_iter().flatten() {
            if t.len() > 1 << 20 || t.contains('\0') {
                return Err(bad("a dataset's schema and profile are at most 1 MiB of text each"));
            }
        }
        for (k, v) in &self.tags {
            check_tag(k, v)?;
        }
        Ok(())
    }
}

/// Where a version's source points, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedSource {
    /// The artifact location bound into the signed content.
    pub artifact_uri: String,
    /// The run that produced it (given, or the logged model's).
    pub run_id: Option<String>,
    /// The logged model, for `models:/m-…` sources.
    pub logged_model_id: Option<String>,
}

/// A version registration through the catalogue (MLflow's `create_model_version`).
#[derive(Debug, Clone, Default)]
pub struct NewCatalogVersion {
    /// Registered model (must exist).
    pub name: String,
    /// `models:/m-…`, `runs:/<run>/<path>`, `mlflow-artifacts:/…` or a remote URI.
    pub source: String,
    /// The producing run.
    pub run_id: Option<String>,
    /// The logged model.
    pub logged_model_id: Option<String>,
    /// Description.
    pub description: String,
    /// Tags; `vigil.version` chooses the semantic version.
    pub tags: Vec<(String, String)>,
    /// The location the caller hashed and its digest, for artifacts Vigil stores (see
    /// [`Registry::resolve_source`]); required for `mlflow-artifacts:` locations and checked
    /// against the location resolved in the registration's transaction.
    pub artifact_digest: Option<(String, Sha256Digest)>,
}

/// Fields of the registry search grammars.
#[derive(Debug, Clone, PartialEq)]
pub enum CatalogField {
    /// `name`.
    Name,
    /// `run_id` (versions).
    RunId,
    /// `source_path` (versions).
    Source,
    /// `version_number` (versions).
    VersionNumber,
    /// `creation_time` (experiments, ms).
    CreationTime,
    /// `last_update_time` (experiments, ms).
    LastUpdateTime,
    /// `tags.<key>`.
    Tag(String),
}

/// One condition of a registry search.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogClause {
    /// Field.
    pub field: CatalogField,
    /// Operator.
    pub op: Op,
    /// Operand.
    pub operand: Operand,
}

/// A registry ordering key: `name`, `version_number`, `creation_timestamp`,
/// `last_updated_timestamp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatalogOrder {
    /// By name.
    Name,
    /// By version number.
    VersionNumber,
    /// By creation time.
    Created,
    /// By last change.
    Updated,
    /// By id (experiments).
    Id,
}

fn like(pattern: &str, text: &str, fold: bool) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = if fold {
        (pattern.to_lowercase().chars().collect(), text.to_lowercase().chars().collect())
    } else {
        (pattern.chars().collect(), text.chars().collect())
    };
    // Iterative wildcard match with backtracking to the last `%`.
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '_' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '%' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '%' {
        pi += 1;
    }
    pi == p.len()
}

fn text_matches(op: Op, operand: &Operand, value: Option<&str>) -> bool {
    match (op, operand, value) {
        (Op::IsNull, _, v) => v.is_none(),
        (Op::IsNotNull, _, v) => v.is_some(),
        (_, _, None) => false,
        (Op::Eq, Operand::Text(t), Some(v)) => v == t,
        (Op::Ne, Operand::Text(t), Some(v)) => v != t,
        (Op::Like, Operand::Text(t), Some(v)) => like(t, v, false),
        (Op::ILike, Operand::Text(t), Some(v)) => like(t, v, true),
        (Op::In, Operand::List(l), Some(v)) => l.iter().any(|x| x == v),
        (Op::NotIn, Operand::List(l), Some(v)) => !l.iter().any(|x| x == v),
        _ => false,
    }
}

/// MLflow marks prompts (which share the registry) with this tag; the client adds
/// `tag.`mlflow.prompt.is_prompt` != 'true'` to every search. As in MLflow, a model without
/// the tag counts as `false` for it (any other missing tag matches no condition).
const IS_PROMPT_TAG: &str = "mlflow.prompt.is_prompt";

fn tag_value<'a>(key: &str, value: Option<&'a str>) -> Option<&'a str> {
    if key == IS_PROMPT_TAG { value.or(Some("false")) } else { value }
}

fn num_matches(op: Op, operand: &Operand, value: i64) -> bool {
    let v = value as f64;
    match (op, operand) {
        (Op::Eq, Operand::Number(n)) => v == *n,
        (Op::Ne, Operand::Number(n)) => v != *n,
        (Op::Gt, Operand::Number(n)) => v > *n,
        (Op::Ge, Operand::Number(n)) => v >= *n,
        (Op::Lt, Operand::Number(n)) => v < *n,
        (Op::Le, Operand::Number(n)) => v <= *n,
        (Op::In, Operand::List(l)) => l.iter().any(|x| x.parse::<i64>().ok() == Some(value)),
        (Op::NotIn, Operand::List(l)) => !l.iter().any(|x| x.parse::<i64>().ok() == Some(value)),
        _ => false,
    }
}

impl CatalogVersion {
    fn matches(&self, c: &CatalogClause) -> bool {
        let tag = |k: &str| {
            if k == "vigil.version" {
                return Some(self.version.version.to_string());
            }
            self.meta.tags.iter().find(|(tk, _)| tk == k).map(|(_, v)| v.clone())
        };
        match &c.field {
            CatalogField::Name => text_matches(c.op, &c.operand, Some(self.version.model_name.as_str())),
            CatalogField::RunId => text_matches(c.op, &c.operand, self.meta.run_id.as_deref()),
            CatalogField::Source => text_matches(c.op, &c.operand, Some(&self.meta.source)),
            CatalogField::VersionNumber => num_matches(c.op, &c.operand, self.version.number),
            CatalogField::CreationTime | CatalogField::LastUpdateTime => false,
            CatalogField::Tag(k) => text_matches(c.op, &c.operand, tag_value(k, tag(k).as_deref())),
        }
    }
}

impl Registry {
    fn catalog_attempt<'a>(actor: &'a Principal, action: &'a str, entity_type: &'a str, model: Option<String>) -> Attempt<'a> {
        Attempt { actor: actor.user_id().as_str(), action, entity_type, entity_id: "", model, version: None }
    }

    fn ms(&self) -> i64 {
        self.clock.now().micros() / 1000
    }

    fn model_named(tx: &mut dyn Tx, name: &str, lock: bool) -> Result<RegisteredModel> {
        let name = ModelName::parse(name).map_err(|_| not_found(ErrorCode::ModelNotFound, "registered model"))?;
        tx.get_model_by_name(&name, lock)?.ok_or_else(|| not_found(ErrorCode::ModelNotFound, "registered model"))
    }

    fn version_numbered(tx: &mut dyn Tx, model: &RegisteredModel, number: i64) -> Result<ModelVersion> {
        tx.find_version_by_number(&model.id, number)?.ok_or_else(|| not_found(ErrorCode::VersionNotFound, "model version"))
    }

    /// Aliases of a model: the stored ones, then the guarded ones naming the Production version.
    fn aliases_of(tx: &mut dyn Tx, model: &RegisteredModel) -> Result<Vec<(String, ModelVersion)>> {
        let mut out = Vec::new();
        for (alias, vid) in tx.model_aliases(&model.id)? {
            if let Some(v) = tx.get_version(&vid)? {
                out.push((alias, v));
            }
        }
        if let Some(p) = tx.versions_in_stage(&model.id, Stage::Production)?.into_iter().next() {
            for g in GUARDED_ALIASES {
                out.push(((*g).to_owned(), p.clone()));
            }
        }
        Ok(out)
    }

    fn catalog_versions(tx: &mut dyn Tx, versions: Vec<ModelVersion>, aliases: &[(String, ModelVersion)]) -> Result<Vec<CatalogVersion>> {
        let ids: Vec<String> = versions.iter().map(|v| v.id.clone()).collect();
        let mut metas = tx.version_meta(&ids)?;
        Ok(versions
            .into_iter()
            .map(|v| {
                let meta = metas.remove(&v.id).unwrap_or_else(|| VersionMeta {
                    source: v.content.artifact_uri.clone(),
                    run_id: v.content.lineage.training_run_id.clone(),
                    updated_ms: v.created_at.micros() / 1000,
                    ..Default::default()
                });
                let names = aliases.iter().filter(|(_, av)| av.id == v.id).map(|(a, _)| a.clone()).collect();
                CatalogVersion { version: v, meta, aliases: names }
            })
            .collect())
    }

    fn catalog_model(tx: &mut dyn Tx, model: RegisteredModel) -> Result<CatalogModel> {
        let versions = tx.list_versions(&model.id)?;
        let aliases = Self::aliases_of(tx, &model)?;
        let mut latest: Vec<ModelVersion> = Vec::new();
        for s in Stage::ALL {
            if let Some(v) = versions.iter().filter(|v| v.stage == *s).max_by_key(|v| v.number) {
                latest.push(v.clone());
            }
        }
        let latest_versions = Self::catalog_versions(tx, latest, &aliases)?;
        let all = Self::catalog_versions(tx, versions, &[])?;
        let last_updated_ms = all.iter().map(|v| v.meta.updated_ms).chain(std::iter::once(model.created_at.micros() / 1000)).max().unwrap_or(0);
        let alias_numbers = aliases.iter().map(|(a, v)| (a.clone(), v.number)).collect();
        Ok(CatalogModel { model, latest_versions, aliases: alias_numbers, last_updated_ms })
    }

    fn one_catalog_version(tx: &mut dyn Tx, model: &RegisteredModel, v: ModelVersion) -> Result<CatalogVersion> {
        let aliases = Self::aliases_of(tx, model)?;
        Self::catalog_versions(tx, vec![v], &aliases)?.pop().ok_or_else(|| Error::storage("version vanished"))
    }

    // ----- registered models ---------------------------------------------------------------

    /// Creates a registered model with no versions (MLflow's `create_registered_model`). Its
    /// model type comes from the `vigil.model_type` tag, else `other`.
    pub fn create_registered_model(&self, actor: &Principal, name: &str, description: &str, tags: &[(String, String)]) -> Result<CatalogModel> {
        let attempt = Self::catalog_attempt(actor, "model.create", "model", ModelName::parse(name).ok().map(|n| n.to_string()));
        self.governed(attempt, |tx| {
            let user = Self::acting_user(tx, actor, Action::RegisterModel)?;
            let name = ModelName::parse(name)?;
            check_description(description)?;
            let mut tag_map = BTreeMap::new();
            let mut model_type = ModelType::Other;
            for (k, v) in tags {
                check_tag(k, v)?;
                crate::phi::check_mark(k, Some(v))?;
                if k == "vigil.model_type" {
                    model_type = ModelType::parse(v)?;
                } else {
                    tag_map.insert(k.clone(), v.clone());
                }
            }
            if tx.get_model_by_name(&name, false)?.is_some() {
                return Err(Error::new(ErrorCode::ModelExists, "a registered model with that name exists"));
            }
            let m = RegisteredModel {
                id: self.ids.new_id("mdl"),
                name: name.clone(),
                owner: user.id.to_string(),
                description: description.to_owned(),
                tags: tag_map,
                model_type,
                created_by: user.id.clone(),
                created_at: self.clock.now(),
            };
            self.insert_model_audited(tx, &m)?;
            Self::catalog_model(tx, m)
        })
    }

    /// A registered model with its aliases and latest versions.
    pub fn registered_model(&self, name: &str) -> Result<CatalogModel> {
        self.read(|tx| {
            let m = Self::model_named(tx, name, false)?;
            Self::catalog_model(tx, m)
        })
    }

    /// Registered models matching `name` and `tags.<key>` conditions, in order, a page at a
    /// time; whether more follow.
    pub fn search_registered_models(&self, filter: &[CatalogClause], order: &[(CatalogOrder, bool)], limit: usize, offset: usize) -> Result<(Vec<CatalogModel>, bool)> {
        self.read(|tx| {
            let mut models: Vec<RegisteredModel> = tx
                .list_models()?
                .into_iter()
                .filter(|m| {
                    filter.iter().all(|c| match &c.field {
                        CatalogField::Name => text_matches(c.op, &c.operand, Some(m.name.as_str())),
                        CatalogField::Tag(k) => {
                            let v = if k == "vigil.model_type" { Some(m.model_type.as_str()) } else { m.tags.get(k).map(String::as_str) };
                            text_matches(c.op, &c.operand, tag_value(k, v))
                        }
                        _ => false,
                    })
                })
                .collect();
            // Order needs last-updated times, so build the views of the candidates first only
            // when that key is asked for.
            let needs_updated = order.iter().any(|(k, _)| *k == CatalogOrder::Updated);
            if !needs_updated {
                sort_models(&mut models, order, |_| 0);
                let more = models.len() > offset + limit;
                let page: Vec<RegisteredModel> = models.into_iter().skip(offset).take(limit).collect();
                let out = page.into_iter().map(|m| Self::catalog_model(tx, m)).collect::<Result<Vec<_>>>()?;
                return Ok((out, more));
            }
            let mut views = models.into_iter().map(|m| Self::catalog_model(tx, m)).collect::<Result<Vec<_>>>()?;
            let updated: std::collections::HashMap<String, i64> = views.iter().map(|v| (v.model.id.clone(), v.last_updated_ms)).collect();
            let mut ms: Vec<RegisteredModel> = views.iter().map(|v| v.model.clone()).collect();
            sort_models(&mut ms, order, |m| updated.get(&m.id).copied().unwrap_or(0));
            let more = ms.len() > offset + limit;
            let wanted: Vec<String> = ms.into_iter().skip(offset).take(limit).map(|m| m.id).collect();
            let mut out = Vec::with_capacity(wanted.len());
            for id in wanted {
                if let Some(i) = views.iter().position(|v| v.model.id == id) {
                    out.push(views.swap_remove(i));
                }
            }
            Ok((out, more))
        })
    }

    /// Experiments matching `name`, `creation_time`, `last_update_time` and `tags.<key>`
    /// conditions (MLflow's `search_experiments`), ordered (default: last update, newest
    /// first, then id), a page at a time.
    pub fn search_experiments(
        &self,
        view: crate::tracking::ViewType,
        filter: &[CatalogClause],
        order: &[(CatalogOrder, bool)],
        limit: usize,
        offset: usize,
    ) -> Result<(Vec<crate::tracking::Experiment>, bool)> {
        // Experiments are few (hundreds, not millions): filter and order over the whole list.
        let mut all = self.read(|tx| tx.list_experiments(view, 1_000_000, 0))?;
        all.retain(|e| {
            filter.iter().all(|c| match &c.field {
                CatalogField::Name => text_matches(c.op, &c.operand, Some(&e.name)),
                CatalogField::CreationTime => num_matches(c.op, &c.operand, e.creation_time),
                CatalogField::LastUpdateTime => num_matches(c.op, &c.operand, e.last_update_time),
                CatalogField::Tag(k) => text_matches(c.op, &c.operand, e.tags.iter().find(|(tk, _)| tk == k).map(|(_, v)| v.as_str())),
                _ => false,
            })
        });
        let default = [(CatalogOrder::Updated, false)];
        let order = if order.is_empty() { &default[..] } else { order };
        all.sort_by(|a, b| {
            for (k, asc) in order {
                let o = match k {
                    CatalogOrder::Name | CatalogOrder::VersionNumber => a.name.cmp(&b.name),
                    CatalogOrder::Created => a.creation_time.cmp(&b.creation_time),
                    CatalogOrder::Updated => a.last_update_time.cmp(&b.last_update_time),
                    CatalogOrder::Id => a.id.cmp(&b.id),
                };
                let o = if *asc { o } else { o.reverse() };
                if o.is_ne() {
                    return o;
                }
            }
            a.id.cmp(&b.id)
        });
        let more = all.len() > offset + limit;
        Ok((all.into_iter().skip(offset).take(limit).collect(), more))
    }

    // ----- versions ------------------------------------------------------------------------

    /// Checks, before any expensive work (hashing artifacts), that the actor may register a
    /// version of this model and that it exists; refusals are audited.
    pub fn authorize_registration(&self, actor: &Principal, name: &str) -> Result<()> {
        let attempt = Self::catalog_attempt(actor, "model_version.register", "model_version", ModelName::parse(name).ok().map(|n| n.to_string()));
        self.governed(attempt, |tx| {
            Self::acting_user(tx, actor, Action::RegisterModel)?;
            Self::model_named(tx, name, false).map(|_| ())
        })
    }

    /// Audits a refusal found outside a use case's transaction (e.g. while hashing a
    /// version's artifacts) and hands the error back.
    pub fn refused(&self, actor: &Principal, action: &str, entity_type: &str, model: Option<&str>, e: Error) -> Error {
        let attempt = Attempt { actor: actor.user_id().as_str(), action, entity_type, entity_id: "", model: model.and_then(|m| ModelName::parse(m).ok()).map(|m| m.to_string()), version: None };
        match self.audit_denial(&attempt, &e) {
            Ok(()) => e,
            Err(store) => store,
        }
    }

    /// Checks that the actor may perform `action` on a version (before data is uploaded for
    /// it); refusals are audited under `action_name`.
    pub fn authorize_on_version(&self, actor: &Principal, version: &ModelVersion, action: Action, action_name: &str) -> Result<()> {
        let attempt = Attempt {
            actor: actor.user_id().as_str(),
            action: action_name,
            entity_type: "model_version",
            entity_id: &version.id,
            model: Some(version.model_name.to_string()),
            version: Some(version.version.to_string()),
        };
        self.governed(attempt, |tx| Self::acting_user(tx, actor, action).map(|_| ()))
    }

    /// Resolves a version source to the artifact location that will be signed, checking that
    /// it is backed by a run or a finalised logged model where it claims to be. Local paths
    /// are refused: a governed version must point at stored artifacts.
    pub fn resolve_source(&self, source: &str, run_id: Option<&str>, logged_model_id: Option<&str>) -> Result<ResolvedSource> {
        self.read(|tx| Self::resolve_source_tx(tx, source, run_id, logged_model_id))
    }

    fn resolve_source_tx(tx: &mut dyn Tx, source: &str, run_id: Option<&str>, logged_model_id: Option<&str>) -> Result<ResolvedSource> {
        let invalid = |m: &str| Error::new(ErrorCode::InvalidSource, m.to_owned());
        if source.is_empty() || source.len() > MAX_SOURCE_LEN || source.chars().any(char::is_control) {
            return Err(invalid("a version's source is a URI of 1 to 2048 characters"));
        }
        if source.split('/').any(|seg| seg == ".." || seg == ".") {
            return Err(invalid("the source may not contain '.' or '..' segments"));
        }
        let run = match run_id.filter(|r| !r.is_empty()) {
            Some(r) => {
                check_run_id(r)?;
                Some(tx.get_run(r, false)?.ok_or_else(|| Error::new(ErrorCode::RunNotFound, "no run with that id"))?)
            }
            None => None,
        };
        // A logged model: named by the source (`models:/m-…`), by model_id, or by the path of
        // a Vigil location under `<exp>/models/<id>/artifacts`.
        let path_model = source.strip_prefix("mlflow-artifacts:/").and_then(|p| {
            let segs: Vec<&str> = p.split('/').filter(|s| !s.is_empty()).collect();
            match segs.as_slice() {
                [_, "models", id, "artifacts", ..] => Some((*id).to_owned()),
                _ => None,
            }
        });
        let lm_id = match source.strip_prefix("models:/") {
            Some(rest) if rest.starts_with("m-") => Some(rest.trim_end_matches('/').to_owned()),
            Some(_) => return Err(invalid("a version's source may name a logged model (models:/m-…), not another registered version")),
            None => logged_model_id.filter(|s| !s.is_empty()).map(str::to_owned).or(path_model),
        };
        let resolved = if let Some(id) = lm_id {
            check_logged_model_id(&id)?;
            let lm = tx.get_logged_model(&id)?.ok_or_else(|| not_found(ErrorCode::LoggedModelNotFound, "logged model"))?;
            if lm.status != LoggedModelStatus::Ready {
                return Err(invalid("the logged model is not finalised (LOGGED_MODEL_READY); finish logging it first"));
            }
            let artifact_uri = if source.starts_with("models:/") { lm.artifact_uri.clone() } else { source.to_owned() };
            if !within(&artifact_uri, &lm.artifact_uri) {
                return Err(invalid("the source is not inside the logged model's artifacts"));
            }
            // The evidence bound to the version is the run that logged the model.
            if let (Some(r), Some(src)) = (&run, &lm.source_run_id)
                && &r.run_id != src
            {
                return Err(invalid("run_id is not the run the logged model was logged from"));
            }
            ResolvedSource { artifact_uri, run_id: lm.source_run_id.clone().or(run.map(|r| r.run_id)), logged_model_id: Some(lm.id) }
        } else if let Some(rest) = source.strip_prefix("runs:/") {
            let (rid, path) = rest.split_once('/').unwrap_or((rest, ""));
            check_run_id(rid)?;
            if run.as_ref().is_some_and(|r| r.run_id != rid) {
                return Err(invalid("the source names another run than run_id"));
            }
            let r = tx.get_run(rid, false)?.ok_or_else(|| Error::new(ErrorCode::RunNotFound, "no run with that id"))?;
            let path = path.trim_matches('/');
            let uri = if path.is_empty() { r.artifact_uri.clone() } else { format!("{}/{}", r.artifact_uri, path) };
            ResolvedSource { artifact_uri: uri, run_id: Some(r.run_id), logged_model_id: None }
        } else if source.starts_with("mlflow-artifacts:/") {
            // Vigil's own storage: only inside the run that produced it, so that the evidence
            // signed with the files is theirs.
            match &run {
                Some(r) if within(source, &r.artifact_uri) => ResolvedSource { artifact_uri: source.to_owned(), run_id: Some(r.run_id.clone()), logged_model_id: None },
                _ => return Err(invalid("a location in vigil's artifact store must be inside the artifacts of run_id (or of a finalised logged model)")),
            }
        } else {
            // Storage elsewhere (s3://, gs://, https://…): recorded as given, with no digest.
            ResolvedSource { artifact_uri: source.to_owned(), run_id: run.map(|r| r.run_id), logged_model_id: None }
        };
        if remote_scheme(&resolved.artifact_uri).is_none() {
            return Err(invalid("local paths cannot be registered: log the model to a run (or as a logged model) and register that"));
        }
        Ok(resolved)
    }

    /// Registers a version of an existing registered model (MLflow's `create_model_version`),
    /// as a governed record in Development: number = next integer; semantic version = the
    /// `vigil.version` tag or the next major; signed content = the resolved artifact location
    /// and digest, the run's latest metrics and its lineage.
    pub fn create_catalog_version(&self, actor: &Principal, new: &NewCatalogVersion) -> Result<CatalogVersion> {
        let attempt = Self::catalog_attempt(actor, "model_version.register", "model_version", ModelName::parse(&new.name).ok().map(|n| n.to_string()));
        // Checks needing no transaction come first, so a refusal writes nothing but its audit.
        let precheck = || -> Result<Option<Version>> {
            check_description(&new.description)?;
            let mut chosen = None;
            for (k, v) in &new.tags {
                check_tag(k, v)?;
                if k == "vigil.version" {
                    chosen = Some(Version::parse(v)?);
                } else {
                    check_user_tag(k)?;
                }
            }
            Ok(chosen)
        };
        let chosen = match precheck() {
            Ok(c) => c,
            Err(e) => {
                self.audit_denial(&attempt, &e)?;
                return Err(e);
            }
        };
        let v = self.governed(attempt, |tx| {
            Self::acting_user(tx, actor, Action::RegisterModel)?;
            // Locked before the next semantic version is chosen, so that concurrent
            // registrations (on any replica) choose one after the other.
            let model = Self::model_named(tx, &new.name, true)?;
            let resolved = Self::resolve_source_tx(tx, &new.source, new.run_id.as_deref(), new.logged_model_id.as_deref())?;
            let version = match &chosen {
                Some(v) => v.clone(),
                None => {
                    let next_major = match tx.list_versions(&model.id)?.iter().map(|v| v.version.major).max() {
                        None => 1,
                        Some(m) => m.checked_add(1).ok_or_else(|| Error::new(ErrorCode::InvalidVersion, "the model's highest major version leaves no next one; give vigil.version"))?,
                    };
                    Version::parse(&format!("{next_major}.0.0"))?
                }
            };
            // Files in vigil's store are bound by their digest, taken over the same location.
            let digest = match &new.artifact_digest {
                Some((uri, d)) if *uri == resolved.artifact_uri => Some(*d),
                Some(_) => return Err(Error::new(ErrorCode::InvalidSource, "the source resolved differently while it was being hashed; retry")),
                None if resolved.artifact_uri.starts_with("mlflow-artifacts:/") => {
                    return Err(Error::new(ErrorCode::InvalidSource, "the artifacts in vigil's store must be hashed to be registered; retry"));
                }
                None => None,
            };
            let (metrics, lineage) = match &resolved.run_id {
                Some(r) => Self::run_evidence(tx, r)?,
                None => (Metrics::new(), Lineage::default()),
            };
            let content = VersionContent { artifact_uri: resolved.artifact_uri.clone(), artifact_sha256: digest, metrics, lineage, card: crate::card::ModelCard::new() };
            let meta = VersionMeta {
                description: new.description.clone(),
                source: new.source.clone(),
                run_id: resolved.run_id.clone(),
                logged_model_id: resolved.logged_model_id.clone(),
                updated_ms: self.ms(),
                tags: new.tags.iter().filter(|(k, _)| k != "vigil.version").cloned().collect(),
            };
            let nv = NewModelVersion { name: model.name.clone(), version: version.clone(), model_type: model.model_type, content, owner: None, description: None, tags: BTreeMap::new() };
            let v = self.register_version_tx(tx, actor, &nv, &meta)?;
            Self::one_catalog_version(tx, &model, v)
        })?;
        Ok(v)
    }

    /// The run's latest finite metrics (names Vigil accepts) and its lineage: the run id, the
    /// git commit MLflow records, and the training dataset (the input with context
    /// `training`, or the only input), unless `vigil.training_data.*` tags say otherwise.
    fn run_evidence(tx: &mut dyn Tx, run_id: &str) -> Result<(Metrics, Lineage)> {
        let mut metrics = Metrics::new();
        for m in tx.run_latest_metrics(run_id)? {
            let _ = metrics.set(&m.key, m.point.value);
        }
        let tags = tx.run_tags(run_id)?;
        let tag = |k: &str| tags.iter().find(|(tk, _)| tk == k).map(|(_, v)| v.trim().to_owned()).filter(|v| !v.is_empty() && v.len() <= 2048);
        let inputs = tx.run_inputs(run_id)?;
        let training = inputs.iter().find(|d| d.context() == Some("training")).or(if inputs.len() == 1 { inputs.first() } else { None });
        let lineage = Lineage {
            training_run_id: Some(run_id.to_owned()),
            code_commit: tag("mlflow.source.git.commit"),
            training_data_hash: tag("vigil.training_data.hash").or_else(|| training.map(|d| format!("mlflow-digest:{}", d.digest))),
            training_data_uri: tag("vigil.training_data.uri").or_else(|| training.map(|d| d.source.trim().to_owned()).filter(|s| !s.is_empty() && s.len() <= 2048 && !s.chars().any(char::is_control))),
            training_data_version: tag("vigil.training_data.version").or_else(|| training.map(|d| d.name.trim().to_owned()).filter(|s| !s.is_empty())),
            ..Default::default()
        };
        // Stored text must read back identically; anything that would not is left out.
        let lineage = Lineage::from_json(&lineage.to_json()).unwrap_or_else(|_| Lineage { training_run_id: Some(run_id.to_owned()), ..Default::default() });
        Ok((metrics, lineage))
    }

    /// A version by model name and number.
    pub fn catalog_version(&self, name: &str, number: i64) -> Result<CatalogVersion> {
        self.read(|tx| {
            let m = Self::model_named(tx, name, false)?;
            let v = Self::version_numbered(tx, &m, number)?;
            Self::one_catalog_version(tx, &m, v)
        })
    }

    /// The version an alias names (`alias_not_found`, a 400 on MLflow's wire, when none).
    pub fn version_by_alias(&self, name: &str, alias: &str) -> Result<CatalogVersion> {
        self.read(|tx| {
            let m = Self::model_named(tx, name, false)?;
            let aliases = Self::aliases_of(tx, &m)?;
            let found = if is_guarded(alias) {
                aliases.iter().find(|(a, _)| a.eq_ignore_ascii_case(alias))
            } else {
                aliases.iter().find(|(a, _)| a == alias)
            };
            let v = found.map(|(_, v)| v.clone()).ok_or_else(|| {
                if is_guarded(alias) {
                    Error::new(ErrorCode::AliasNotFound, "the model has no version approved into Production, so its guarded aliases name nothing")
                } else {
                    Error::new(ErrorCode::AliasNotFound, "the model has no alias of that name")
                }
            })?;
            Self::catalog_versions(tx, vec![v], &aliases)?.pop().ok_or_else(|| Error::storage("version vanished"))
        })
    }

    /// Points an alias at a version. Guarded aliases are accepted only for the Production
    /// version (where they already point); anything else is `guarded_alias`.
    pub fn set_alias(&self, actor: &Principal, name: &str, alias: &str, number: i64) -> Result<()> {
        let attempt = Self::catalog_attempt(actor, "model.alias.set", "model", ModelName::parse(name).ok().map(|n| n.to_string()));
        self.governed(attempt, |tx| {
            let user = Self::acting_user(tx, actor, Action::RegisterModel)?;
            check_alias(alias)?;
            let m = Self::model_named(tx, name, true)?;
            let v = Self::version_numbered(tx, &m, number)?;
            let mut e = self.version_event(user.id.as_str(), "model.alias.set", &v, json!({}));
            if is_guarded(alias) {
                if v.stage != Stage::Production {
                    return Err(Error::new(
                        ErrorCode::GuardedAlias,
                        "the aliases 'production' and 'champion' always name the version approved into Production: request the promotion with \
                         POST /api/v1/promotions (or `vigil promote request`) and have it approved",
                    ));
                }
                e.details = json!({"alias": alias.to_ascii_lowercase(), "new": {"version": v.version.to_string(), "number": v.number}, "guarded": true});
            } else {
                let old = tx.model_aliases(&m.id)?.into_iter().find(|(a, _)| a == alias).map(|(_, id)| id);
                let old_v = match old {
                    Some(id) => tx.get_version(&id)?.map(|o| json!({"version": o.version.to_string(), "number": o.number})),
                    None => None,
                };
                tx.set_alias(&m.id, alias, &v.id, user.id.as_str(), self.ms())?;
                e.details = json!({"alias": alias, "old": old_v, "new": {"version": v.version.to_string(), "number": v.number}});
            }
            tx.append_audit(e)
        })
    }

    /// Removes an alias. Guarded aliases follow the Production stage and cannot be removed.
    pub fn delete_alias(&self, actor: &Principal, name: &str, alias: &str) -> Result<()> {
        let attempt = Self::catalog_attempt(actor, "model.alias.delete", "model", ModelName::parse(name).ok().map(|n| n.to_string()));
        self.governed(attempt, |tx| {
            let user = Self::acting_user(tx, actor, Action::RegisterModel)?;
            check_alias(alias)?;
            if is_guarded(alias) {
                return Err(Error::new(
                    ErrorCode::GuardedAlias,
                    "the aliases 'production' and 'champion' follow the Production stage; retire the version with a promotion request to Archived",
                ));
            }
            let m = Self::model_named(tx, name, true)?;
            let old = tx.model_aliases(&m.id)?.into_iter().find(|(a, _)| a == alias).map(|(_, id)| id);
            // As MLflow: deleting an alias that does not exist changes nothing and succeeds.
            let Some(old) = old else { return Ok(()) };
            tx.delete_alias(&m.id, alias)?;
            let ov = Self::load_version(tx, &old)?;
            tx.append_audit(self.version_event(user.id.as_str(), "model.alias.delete", &ov, json!({"alias": alias, "old": {"version": ov.version.to_string(), "number": ov.number}})))
        })
    }

    /// MLflow's `transition_model_version_stage`. Stages move only through approved promotion
    /// requests: asking for the stage a version already has (because a request was approved)
    /// answers the version; anything else is refused with `promotion_required`, naming the
    /// promotion API, and the refusal is audited.
    pub fn request_stage_via_catalog(&self, actor: &Principal, name: &str, number: i64, stage: Stage) -> Result<CatalogVersion> {
        let attempt = Self::catalog_attempt(actor, "model_version.transition", "model_version", ModelName::parse(name).ok().map(|n| n.to_string()));
        self.governed(attempt, |tx| {
            Self::acting_user(tx, actor, Action::RequestPromotion)?;
            let m = Self::model_named(tx, name, false)?;
            let v = Self::version_numbered(tx, &m, number)?;
            if v.stage == stage {
                return Self::one_catalog_version(tx, &m, v);
            }
            Err(Error::new(
                ErrorCode::PromotionRequired,
                format!(
                    "{} moves from {} to {} only through an approved promotion request: POST /api/v1/promotions \
                     {{\"model\": \"{}\", \"version\": \"{}\", \"to_stage\": \"{}\"}} (or `vigil promote request`), then the required approvals",
                    v.reference(),
                    mlflow_stage(v.stage),
                    mlflow_stage(stage),
                    v.model_name,
                    v.version,
                    stage.as_str()
                ),
            ))
        })
    }

    /// The newest version in each requested stage (all stages when none are given).
    pub fn latest_versions(&self, name: &str, stages: &[Stage]) -> Result<Vec<CatalogVersion>> {
        self.read(|tx| {
            let m = Self::model_named(tx, name, false)?;
            let versions = tx.list_versions(&m.id)?;
            let wanted: &[Stage] = if stages.is_empty() { Stage::ALL } else { stages };
            let mut latest = Vec::new();
            for s in Stage::ALL.iter().filter(|s| wanted.contains(s)) {
                if let Some(v) = versions.iter().filter(|v| v.stage == *s).max_by_key(|v| v.number) {
                    latest.push(v.clone());
                }
            }
            let aliases = Self::aliases_of(tx, &m)?;
            Self::catalog_versions(tx, latest, &aliases)
        })
    }

    /// Versions matching `name`, `run_id`, `source_path`, `version_number` and `tags.<key>`
    /// conditions, ordered (default: name, then number descending), a page at a time.
    pub fn search_catalog_versions(&self, filter: &[CatalogClause], order: &[(CatalogOrder, bool)], limit: usize, offset: usize) -> Result<(Vec<CatalogVersion>, bool)> {
        self.read(|tx| {
            // A name condition narrows the scan to those models.
            let mut models = tx.list_models()?;
            if let Some(c) = filter.iter().find(|c| c.field == CatalogField::Name && matches!(c.op, Op::Eq | Op::In)) {
                models.retain(|m| text_matches(c.op, &c.operand, Some(m.name.as_str())));
            }
            let mut all = Vec::new();
            for m in &models {
                let versions = tx.list_versions(&m.id)?;
                let aliases = Self::aliases_of(tx, m)?;
                all.extend(Self::catalog_versions(tx, versions, &aliases)?.into_iter().filter(|v| filter.iter().all(|c| v.matches(c))));
            }
            all.sort_by(|a, b| {
                for (k, asc) in order {
                    let o = match k {
                        CatalogOrder::Name => a.version.model_name.as_str().cmp(b.version.model_name.as_str()),
                        CatalogOrder::VersionNumber => a.version.number.cmp(&b.version.number),
                        CatalogOrder::Created | CatalogOrder::Id => a.version.created_at.cmp(&b.version.created_at),
                        CatalogOrder::Updated => a.meta.updated_ms.cmp(&b.meta.updated_ms),
                    };
                    let o = if *asc { o } else { o.reverse() };
                    if o.is_ne() {
                        return o;
                    }
                }
                a.version.model_name.as_str().cmp(b.version.model_name.as_str()).then(b.version.number.cmp(&a.version.number))
            });
            let more = all.len() > offset + limit;
            Ok((all.into_iter().skip(offset).take(limit).collect(), more))
        })
    }

    /// Sets a version tag (not under `vigil.`).
    pub fn set_version_tag(&self, actor: &Principal, name: &str, number: i64, key: &str, value: &str) -> Result<()> {
        let attempt = Self::catalog_attempt(actor, "model_version.tag", "model_version", ModelName::parse(name).ok().map(|n| n.to_string()));
        self.governed(attempt, |tx| {
            let user = Self::acting_user(tx, actor, Action::RegisterModel)?;
            check_tag(key, value)?;
            check_user_tag(key)?;
            let m = Self::model_named(tx, name, true)?;
            let v = Self::version_numbered(tx, &m, number)?;
            Self::ensure_meta(tx, &v)?;
            tx.set_version_tag(&v.id, key, value)?;
            tx.touch_version_meta(&v.id, None, self.ms())?;
            tx.append_audit(self.version_event(user.id.as_str(), "model_version.tag", &v, json!({"key": key, "value_bytes": value.len()})))
        })
    }

    /// Deletes a version tag.
    pub fn delete_version_tag(&self, actor: &Principal, name: &str, number: i64, key: &str) -> Result<()> {
        let attempt = Self::catalog_attempt(actor, "model_version.delete_tag", "model_version", ModelName::parse(name).ok().map(|n| n.to_string()));
        self.governed(attempt, |tx| {
            let user = Self::acting_user(tx, actor, Action::RegisterModel)?;
            check_user_tag(key)?;
            let m = Self::model_named(tx, name, true)?;
            let v = Self::version_numbered(tx, &m, number)?;
            if !tx.delete_version_tag(&v.id, key)? {
                return Err(Error::new(ErrorCode::TagNotFound, "the version has no tag with that key"));
            }
            tx.touch_version_meta(&v.id, None, self.ms())?;
            tx.append_audit(self.version_event(user.id.as_str(), "model_version.delete_tag", &v, json!({"key": key})))
        })
    }

    /// Changes a version's description (not signed content).
    pub fn update_version_description(&self, actor: &Principal, name: &str, number: i64, description: &str) -> Result<CatalogVersion> {
        let attempt = Self::catalog_attempt(actor, "model_version.describe", "model_version", ModelName::parse(name).ok().map(|n| n.to_string()));
        self.governed(attempt, |tx| {
            let user = Self::acting_user(tx, actor, Action::RegisterModel)?;
            check_description(description)?;
            let m = Self::model_named(tx, name, true)?;
            let v = Self::version_numbered(tx, &m, number)?;
            Self::ensure_meta(tx, &v)?;
            tx.touch_version_meta(&v.id, Some(description), self.ms())?;
            tx.append_audit(self.version_event(user.id.as_str(), "model_version.describe", &v, json!({"description_bytes": description.len()})))?;
            Self::one_catalog_version(tx, &m, v)
        })
    }

    /// Versions registered before the catalogue existed have no metadata row yet.
    fn ensure_meta(tx: &mut dyn Tx, v: &ModelVersion) -> Result<()> {
        if tx.version_meta(std::slice::from_ref(&v.id))?.is_empty() {
            let meta = VersionMeta {
                source: v.content.artifact_uri.clone(),
                run_id: v.content.lineage.training_run_id.clone(),
                updated_ms: v.created_at.micros() / 1000,
                ..Default::default()
            };
            tx.insert_version_meta(&v.id, &meta)?;
        }
        Ok(())
    }

    /// Deleting governed records is refused (they are retained), and the refusal is audited
    /// like any other.
    pub fn refuse_deletion(&self, actor: &Principal, entity_type: &str, name: Option<&str>) -> Result<()> {
        let model = name.and_then(|n| ModelName::parse(n).ok()).map(|n| n.to_string());
        let action = format!("{entity_type}.delete");
        let attempt = Attempt { actor: actor.user_id().as_str(), action: &action, entity_type, entity_id: "", model, version: None };
        let e = Error::new(
            ErrorCode::RecordRetained,
            "registered models and their versions are governed records and are retained; archive a version with a promotion request (POST /api/v1/promotions)",
        );
        self.audit_denial(&attempt, &e)?;
        Err(e)
    }

    // ----- logged models -------------------------------------------------------------------

    /// Creates a pending logged model in an active experiment (MLflow's `create_logged_model`).
    #[allow(clippy::too_many_arguments)]
    pub fn create_logged_model(
        &self,
        actor: &Principal,
        experiment_id: i64,
        name: Option<&str>,
        source_run_id: Option<&str>,
        model_type: Option<&str>,
        tags: &[(String, String)],
        params: &[(String, String)],
    ) -> Result<LoggedModel> {
        let attempt = Self::catalog_attempt(actor, "logged_model.create", "logged_model", None);
        let id = {
            let raw = self.ids.new_id("m");
            let hex = Sha256Digest::of(raw.as_bytes()).to_hex();
            format!("m-{}", &hex[..32])
        };
        self.governed(attempt, |tx| {
            let user = Self::acting_user(tx, actor, Action::Track)?;
            let exp = tx.get_experiment(experiment_id)?.ok_or_else(|| Error::new(ErrorCode::ExperimentNotFound, "no experiment with that id"))?;
            if exp.lifecycle != Lifecycle::Active {
                return Err(Error::new(ErrorCode::RunNotActive, "the experiment is deleted; restore it first"));
            }
            let name = match name.filter(|n| !n.is_empty()) {
                Some(n) => required_text("logged model name", n, 500)?,
                None => format!("model-{}", &id[2..10]),
            };
            if let Some(r) = source_run_id.filter(|r| !r.is_empty()) {
                check_run_id(r)?;
                let run = tx.get_run(r, false)?.ok_or_else(|| Error::new(ErrorCode::RunNotFound, "no run with that id"))?;
                if run.experiment_id != experiment_id {
                    return Err(Error::new(ErrorCode::InvalidRequest, "the source run belongs to another experiment"));
                }
            }
            if let Some(t) = model_type {
                required_text("model type", t, 100)?;
            }
            for (k, v) in tags.iter().chain(params) {
                check_tag(k, v)?;
            }
            let now = self.ms();
            let lm = LoggedModel {
                id: id.clone(),
                experiment_id,
                name,
                artifact_uri: format!("{}/models/{}/artifacts", exp.artifact_location.trim_end_matches('/'), id),
                status: LoggedModelStatus::Pending,
                source_run_id: source_run_id.filter(|r| !r.is_empty()).map(str::to_owned),
                model_type: model_type.filter(|t| !t.is_empty()).map(str::to_owned),
                created_by: user.id.to_string(),
                creation_ms: now,
                updated_ms: now,
                tags: dedup(tags),
                params: dedup(params),
            };
            tx.insert_logged_model(&lm)?;
            tx.append_audit(self.event(user.id.as_str(), "logged_model.create", "logged_model", &lm.id, json!({"new": {"experiment_id": experiment_id.to_string(), "name": lm.name, "source_run_id": lm.source_run_id}})))?;
            Ok(lm)
        })
    }

    /// A logged model by id.
    pub fn get_logged_model(&self, id: &str) -> Result<LoggedModel> {
        check_logged_model_id(id)?;
        self.read(|tx| tx.get_logged_model(id))?.ok_or_else(|| not_found(ErrorCode::LoggedModelNotFound, "logged model"))
    }

    /// Finalises a pending logged model (ready or failed). A finalised model's artifacts are
    /// frozen and its status cannot change again.
    pub fn finalize_logged_model(&self, actor: &Principal, id: &str, status: LoggedModelStatus) -> Result<LoggedModel> {
        let attempt = Attempt { actor: actor.user_id().as_str(), action: "logged_model.finalize", entity_type: "logged_model", entity_id: if check_logged_model_id(id).is_ok() { id } else { "invalid" }, model: None, version: None };
        self.governed(attempt, |tx| {
            let user = Self::acting_user(tx, actor, Action::Track)?;
            check_logged_model_id(id)?;
            let mut lm = tx.get_logged_model(id)?.ok_or_else(|| not_found(ErrorCode::LoggedModelNotFound, "logged model"))?;
            if lm.status == status {
                return Ok(lm);
            }
            if lm.status != LoggedModelStatus::Pending || status == LoggedModelStatus::Pending {
                return Err(Error::new(ErrorCode::LoggedModelFinalized, "the logged model is already finalised"));
            }
            let old = lm.status;
            lm.status = status;
            lm.updated_ms = self.ms();
            if !tx.update_logged_model_status(&lm.id, status, lm.updated_ms)? {
                return Err(Error::new(ErrorCode::ConcurrentModification, "the logged model was finalised concurrently; retry"));
            }
            tx.append_audit(self.event(user.id.as_str(), "logged_model.finalize", "logged_model", &lm.id, json!({"old": {"status": old.as_str()}, "new": {"status": status.as_str()}})))?;
            Ok(lm)
        })
    }

    /// Sets tags on a logged model (any status: tags are not artifacts).
    pub fn set_logged_model_tags(&self, actor: &Principal, id: &str, tags: &[(String, String)]) -> Result<()> {
        let attempt = Attempt { actor: actor.user_id().as_str(), action: "logged_model.tag", entity_type: "logged_model", entity_id: if check_logged_model_id(id).is_ok() { id } else { "invalid" }, model: None, version: None };
        self.governed(attempt, |tx| {
            let user = Self::acting_user(tx, actor, Action::Track)?;
            check_logged_model_id(id)?;
            for (k, v) in tags {
                check_tag(k, v)?;
            }
            tx.get_logged_model(id)?.ok_or_else(|| not_found(ErrorCode::LoggedModelNotFound, "logged model"))?;
            tx.set_logged_model_tags(id, &dedup(tags), self.ms())?;
            let keys: Vec<&str> = tags.iter().map(|(k, _)| k.as_str()).take(20).collect();
            tx.append_audit(self.event(user.id.as_str(), "logged_model.tag", "logged_model", id, json!({"keys": keys})))
        })
    }

    /// Logged models of some experiments, optionally only those with a name, a page at a time.
    pub fn search_logged_models(&self, experiment_ids: &[i64], name: Option<&str>, limit: usize, offset: usize) -> Result<(Vec<LoggedModel>, bool)> {
        if experiment_ids.len() > crate::tracking::MAX_SEARCH_EXPERIMENTS {
            return Err(Error::new(ErrorCode::InvalidFilter, "a search covers at most 100 experiments"));
        }
        self.read(|tx| {
            let mut found = tx.list_logged_models(experiment_ids, name, limit + 1, offset)?;
            let more = found.len() > limit;
            found.truncate(limit);
            Ok((found, more))
        })
    }

    /// Links logged models to a run as its outputs (MLflow's `log_outputs`).
    pub fn log_run_outputs(&self, actor: &Principal, run_id: &str, models: &[(String, i64)]) -> Result<()> {
        let attempt = Attempt { actor: actor.user_id().as_str(), action: "run.outputs", entity_type: "run", entity_id: if check_run_id(run_id).is_ok() { run_id } else { "invalid" }, model: None, version: None };
        self.governed(attempt, |tx| {
            let user = Self::acting_user(tx, actor, Action::Track)?;
            check_run_id(run_id)?;
            let run = tx.get_run(run_id, true)?.ok_or_else(|| Error::new(ErrorCode::RunNotFound, "no run with that id"))?;
            if run.lifecycle != Lifecycle::Active {
                return Err(Error::new(ErrorCode::RunNotActive, "the run is deleted; restore it first"));
            }
            if models.len() > 100 {
                return Err(Error::new(ErrorCode::BatchTooLarge, "at most 100 outputs at once"));
            }
            for (id, _) in models {
                check_logged_model_id(id)?;
                tx.get_logged_model(id)?.ok_or_else(|| not_found(ErrorCode::LoggedModelNotFound, "logged model"))?;
            }
            tx.insert_run_outputs(run_id, models)?;
            let ids: Vec<&str> = models.iter().map(|(m, _)| m.as_str()).collect();
            tx.append_audit(self.event(user.id.as_str(), "run.outputs", "run", run_id, json!({"models": ids})))
        })
    }

    /// Records datasets a run used (MLflow's `log_inputs`); the same dataset twice is kept once.
    pub fn log_run_inputs(&self, actor: &Principal, run_id: &str, inputs: &[DatasetInput]) -> Result<()> {
        let attempt = Attempt { actor: actor.user_id().as_str(), action: "run.inputs", entity_type: "run", entity_id: if check_run_id(run_id).is_ok() { run_id } else { "invalid" }, model: None, version: None };
        self.governed(attempt, |tx| {
            let user = Self::acting_user(tx, actor, Action::Track)?;
            check_run_id(run_id)?;
            if inputs.len() > 100 {
                return Err(Error::new(ErrorCode::BatchTooLarge, "at most 100 dataset inputs at once"));
            }
            for d in inputs {
                d.validate()?;
            }
            let run = tx.get_run(run_id, true)?.ok_or_else(|| Error::new(ErrorCode::RunNotFound, "no run with that id"))?;
            if run.lifecycle != Lifecycle::Active {
                return Err(Error::new(ErrorCode::RunNotActive, "the run is deleted; restore it first"));
            }
            for d in inputs {
                tx.insert_run_input(run.experiment_id, run_id, d)?;
            }
            let names: Vec<serde_json::Value> = inputs.iter().take(20).map(|d| json!({"name": d.name, "digest": d.digest, "context": d.context()})).collect();
            tx.append_audit(self.event(user.id.as_str(), "run.inputs", "run", run_id, json!({"datasets": names})))
        })
    }

    /// A run's dataset inputs and model outputs.
    pub fn run_io(&self, run_id: &str) -> Result<RunIo> {
        check_run_id(run_id)?;
        self.read(|tx| Ok((tx.run_inputs(run_id)?, tx.run_outputs(run_id)?)))
    }

    /// Checks that the actor may write an artifact of a logged model: the Track role, the
    /// model in that experiment, and still pending (finalised models are frozen).
    pub fn authorize_logged_model_write(&self, actor: &Principal, experiment_id: &str, id: &str) -> Result<()> {
        let attempt = Attempt { actor: actor.user_id().as_str(), action: "artifact.write", entity_type: "logged_model", entity_id: if check_logged_model_id(id).is_ok() { id } else { "invalid" }, model: None, version: None };
        self.governed(attempt, |tx| Self::writable_logged_model(tx, actor, experiment_id, id).map(|_| ()))
    }

    fn writable_logged_model(tx: &mut dyn Tx, actor: &Principal, experiment_id: &str, id: &str) -> Result<LoggedModel> {
        Self::acting_user(tx, actor, Action::Track)?;
        check_logged_model_id(id)?;
        let lm = tx.get_logged_model(id)?.ok_or_else(|| not_found(ErrorCode::LoggedModelNotFound, "logged model"))?;
        if crate::tracking::parse_experiment_id(experiment_id).ok() != Some(lm.experiment_id) {
            return Err(Error::new(ErrorCode::InvalidPath, "the artifact path's experiment is not the logged model's"));
        }
        if lm.status != LoggedModelStatus::Pending {
            return Err(Error::new(ErrorCode::LoggedModelFinalized, "the logged model is finalised; its artifacts cannot change"));
        }
        Ok(lm)
    }

    /// Records an artifact written for a logged model, after the same checks.
    pub fn record_logged_model_write(&self, actor: &Principal, experiment_id: &str, id: &str, path: &str, size: u64, sha256: &str) -> Result<()> {
        let attempt = Attempt { actor: actor.user_id().as_str(), action: "artifact.write", entity_type: "logged_model", entity_id: if check_logged_model_id(id).is_ok() { id } else { "invalid" }, model: None, version: None };
        self.governed(attempt, |tx| {
            Self::writable_logged_model(tx, actor, experiment_id, id)?;
            tx.append_audit(self.event(actor.user_id().as_str(), "artifact.write", "logged_model", id, json!({"path": path, "size": size, "sha256": sha256})))
        })
    }
}

fn dedup(pairs: &[(String, String)]) -> Vec<(String, String)> {
    let mut m: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in pairs {
        m.insert(k.clone(), v.clone());
    }
    m.into_iter().collect()
}

fn sort_models(models: &mut [RegisteredModel], order: &[(CatalogOrder, bool)], updated: impl Fn(&RegisteredModel) -> i64) {
    models.sort_by(|a, b| {
        for (k, asc) in order {
            let o = match k {
                CatalogOrder::Name | CatalogOrder::VersionNumber | CatalogOrder::Id => a.name.as_str().cmp(b.name.as_str()),
                CatalogOrder::Created => a.created_at.cmp(&b.created_at),
                CatalogOrder::Updated => updated(a).cmp(&updated(b)),
            };
            let o = if *asc { o } else { o.reverse() };
            if o.is_ne() {
                return o;
            }
        }
        a.name.as_str().cmp(b.name.as_str())
    });
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn like_matches_sql_wildcards() {
        assert!(like("diab%", "diabetes", false));
        assert!(like("%bet%", "diabetes", false));
        assert!(like("d_abetes", "diabetes", false));
        assert!(!like("D%", "diabetes", false));
        assert!(like("D%", "diabetes", true));
        assert!(like("%", "", false));
        assert!(!like("_", "", false));
        assert!(like("a%b%c", "aXXbYYc", false));
        assert!(!like("a%b%c", "aXXbYY", false));
    }

    #[test]
    fn aliases_reserved_and_guarded() {
        assert!(check_alias("challenger").is_ok());
        for bad in ["", "latest", "LATEST", "v1", "V12", "a b", "a/b", &"x".repeat(256)] {
            assert_eq!(check_alias(bad).unwrap_err().code(), ErrorCode::InvalidAlias, "{bad:?}");
        }
        assert!(check_alias("v1a").is_ok());
        assert!(is_guarded("Production") && is_guarded("champion") && !is_guarded("staging"));
    }

    #[test]
    fn stage_names_map_both_ways() {
        for s in Stage::ALL {
            assert_eq!(parse_mlflow_stage(mlflow_stage(*s)).unwrap(), *s);
        }
        assert_eq!(parse_mlflow_stage("none").unwrap(), Stage::Development);
        assert_eq!(parse_mlflow_stage("Deployed").unwrap_err().code(), ErrorCode::InvalidStage);
    }

    #[test]
    fn logged_model_ids_are_checked() {
        assert!(check_logged_model_id("m-0123456789abcdef0123456789abcdef").is_ok());
        for bad in ["m-", "x-0123456789abcdef0123456789abcdef", "m-0123456789ABCDEF0123456789abcdef", "m-../../etc"] {
            assert!(check_logged_model_id(bad).is_err(), "{bad}");
        }
    }
}
