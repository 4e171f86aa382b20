//! Experiment tracking: experiments, runs, parameters, metric histories and tags — the
//! entities MLflow's tracking API speaks about (`shared/reference/mlflow-api.md` §3–4), with
//! Vigil's rules on top: every mutation is authorised by role and audited in the same
//! transaction, parameters are immutable, and limits are enforced before anything is written.
//!
//! Times here are milliseconds since the Unix epoch, as on MLflow's wire.

use crate::audit::AuditEvent;
use crate::auth::{Action, Principal};
use crate::error::{Error, ErrorCode, Result};
use crate::registry::{Attempt, Registry};
use crate::search::{Clause, OrderBy};
use crate::store::Tx;
use serde_json::json;

/// Longest metric, parameter or tag key (MLflow: 250).
pub const MAX_KEY_LEN: usize = 250;
/// Longest parameter value (MLflow: 6,000).
pub const MAX_PARAM_VALUE_LEN: usize = 6000;
/// Longest tag value (MLflow: 8,000).
pub const MAX_TAG_VALUE_LEN: usize = 8000;
/// Longest experiment or run name.
pub const MAX_NAME_LEN: usize = 500;
/// Most metrics in one `log-batch` (MLflow: 1,000).
pub const MAX_BATCH_METRICS: usize = 1000;
/// Most params in one `log-batch` (MLflow: 100).
pub const MAX_BATCH_PARAMS: usize = 100;
/// Most tags in one `log-batch` (MLflow: 100).
pub const MAX_BATCH_TAGS: usize = 100;
/// Most entities of all kinds in one `log-batch` (MLflow: 1,000).
pub const MAX_BATCH_TOTAL: usize = 1000;
/// The experiment every store has from the start ("Default", id 0).
pub const DEFAULT_EXPERIMENT_ID: i64 = 0;
/// Most runs one search page returns (MLflow: 50,000).
pub const MAX_SEARCH_RESULTS: u32 = 50_000;
/// Most conditions in one filter.
pub const MAX_SEARCH_CLAUSES: usize = 100;
/// Most values (IN-list items included) in one filter.
pub const MAX_SEARCH_VALUES: usize = 1000;
/// Most `order_by` keys.
pub const MAX_ORDER_BY: usize = 20;
/// Most experiments searched at once.
pub const MAX_SEARCH_EXPERIMENTS: usize = 100;
/// Largest offset a page token may carry.
pub const MAX_SEARCH_OFFSET: u64 = 1 << 40;

/// Active or deleted (soft delete, restorable).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    /// Visible.
    Active,
    /// Deleted, restorable.
    Deleted,
}

impl Lifecycle {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Lifecycle::Active => "active",
            Lifecycle::Deleted => "deleted",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "active" => Ok(Lifecycle::Active),
            "deleted" => Ok(Lifecycle::Deleted),
            _ => Err(Error::new(ErrorCode::StorageFailure, "unknown lifecycle stage in the store")),
        }
    }
}

/// Which runs or experiments a listing includes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ViewType {
    /// Active only (the default).
    #[default]
    ActiveOnly,
    /// Deleted only.
    DeletedOnly,
    /// Both.
    All,
}

impl ViewType {
    /// Parses MLflow's `run_view_type` / `view_type` names.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "ACTIVE_ONLY" | "" => Ok(ViewType::ActiveOnly),
            "DELETED_ONLY" => Ok(ViewType::DeletedOnly),
            "ALL" => Ok(ViewType::All),
            _ => Err(Error::new(ErrorCode::InvalidText, "view type must be ACTIVE_ONLY, DELETED_ONLY or ALL")),
        }
    }
}

/// A run's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    /// Running.
    Running,
    /// Scheduled.
    Scheduled,
    /// Finished.
    Finished,
    /// Failed.
    Failed,
    /// Killed.
    Killed,
}

impl RunStatus {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "RUNNING",
            RunStatus::Scheduled => "SCHEDULED",
            RunStatus::Finished => "FINISHED",
            RunStatus::Failed => "FAILED",
            RunStatus::Killed => "KILLED",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "RUNNING" => RunStatus::Running,
            "SCHEDULED" => RunStatus::Scheduled,
            "FINISHED" => RunStatus::Finished,
            "FAILED" => RunStatus::Failed,
            "KILLED" => RunStatus::Killed,
            _ => return Err(Error::new(ErrorCode::InvalidText, "run status must be RUNNING, SCHEDULED, FINISHED, FAILED or KILLED")),
        })
    }
}

/// An experiment.
#[derive(Debug, Clone, PartialEq)]
pub struct Experiment {
    /// Numeric id (sent as a string on MLflow's wire).
    pub id: i64,
    /// Unique name.
    pub name: String,
    /// Where its runs' artifacts live (`mlflow-artifacts:/<id>` unless given).
    pub artifact_location: String,
    /// Active or deleted.
    pub lifecycle: Lifecycle,
    /// Created (ms).
    pub creation_time: i64,
    /// Last changed (ms).
    pub last_update_time: i64,
    /// Tags.
    pub tags: Vec<(String, String)>,
}

/// A run's attributes.
#[derive(Debug, Clone, PartialEq)]
pub struct RunInfo {
    /// 32 lowercase hex digits.
    pub run_id: String,
    /// Its experiment.
    pub experiment_id: i64,
    /// Display name.
    pub run_name: String,
    /// Who created it (the authenticated user, not a client-supplied name).
    pub user_id: String,
    /// Status.
    pub status: RunStatus,
    /// Started (ms).
    pub start_time: i64,
    /// Ended (ms).
    pub end_time: Option<i64>,
    /// Artifact root.
    pub artifact_uri: String,
    /// Active or deleted.
    pub lifecycle: Lifecycle,
}

/// One metric observation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricPoint {
    /// Value (NaN and ±∞ allowed).
    pub value: f64,
    /// When (ms).
    pub timestamp: i64,
    /// Step.
    pub step: i64,
}

impl MetricPoint {
    /// MLflow's "latest" order: greatest (step, timestamp, value); NaN counts as smallest.
    pub fn newer_than(&self, other: &MetricPoint) -> bool {
        let v = |x: f64| if x.is_nan() { f64::NEG_INFINITY } else { x };
        (self.step, self.timestamp).cmp(&(other.step, other.timestamp)).then_with(|| v(self.value).total_cmp(&v(other.value))).is_gt()
    }
}

/// A named metric observation.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    /// Key.
    pub key: String,
    /// The observation.
    pub point: MetricPoint,
}

/// A run with its data.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    /// Attributes.
    pub info: RunInfo,
    /// Parameters, by key.
    pub params: Vec<(String, String)>,
    /// The latest value of each metric, by key.
    pub metrics: Vec<Metric>,
    /// Tags, by key.
    pub tags: Vec<(String, String)>,
}

/// What `search_runs` asks the store for.
#[derive(Debug, Clone, PartialEq)]
pub struct RunQuery {
    /// Experiments searched (at least one).
    pub experiment_ids: Vec<i64>,
    /// Conditions, all of which must hold.
    pub filter: Vec<Clause>,
    /// Active, deleted or all runs.
    pub view: ViewType,
    /// Ordering keys; ties and the default order are start_time DESC, run_id.
    pub order_by: Vec<OrderBy>,
    /// Page size.
    pub limit: u32,
    /// Rows skipped (the page token).
    pub offset: u64,
}

/// A batch of observations for one run (MLflow's `log-batch`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogBatch {
    /// Metrics.
    pub metrics: Vec<Metric>,
    /// Parameters.
    pub params: Vec<(String, String)>,
    /// Tags.
    pub tags: Vec<(String, String)>,
}

fn check_key(what: &str, key: &str) -> Result<()> {
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(Error::new(ErrorCode::InvalidKey, format!("{what} keys are 1 to {MAX_KEY_LEN} bytes")));
    }
    // MLflow's rule: alphanumerics, underscores, dashes, periods, spaces, slashes; no `..`
    // path segments and no leading slash (keys name files in MLflow's file store).
    let ok_chars = key.chars().all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ' ' | '/' | ':'));
    let bad_path = key.starts_with('/') || key.split('/').any(|seg| seg == ".." || seg == ".");
    if !ok_chars || bad_path {
        return Err(Error::new(ErrorCode::InvalidKey, format!("{what} keys may contain letters, digits, _ - . space / and :, and no . or .. path segments")));
    }
    Ok(())
}

fn check_value(what: &str, value: &str, max: usize) -> Result<()> {
    if value.len() > max {
        return Err(Error::new(ErrorCode::InvalidText, format!("{what} values are at most {max} bytes")));
    }
    // Newlines and tabs are fine (notes are markdown); NUL is not text, and PostgreSQL refuses it.
    if value.contains('\0') {
        return Err(Error::new(ErrorCode::InvalidText, format!("{what} values may not contain NUL characters")));
    }
    Ok(())
}

/// Tags the server sets: the run's user is whoever authenticated.
const RESERVED_TAGS: &[&str] = &["mlflow.user"];

fn check_name(what: &str, name: &str) -> Result<()> {
    if name.trim().is_empty() || name.len() > MAX_NAME_LEN || name.chars().any(char::is_control) {
        return Err(Error::new(ErrorCode::InvalidText, format!("{what} names are 1 to {MAX_NAME_LEN} bytes without control characters")));
    }
    Ok(())
}

/// A run id as it may enter the audit trail: well-formed ids as they are, anything else
/// (client text of any length or content) as `invalid`.
fn audit_run_id(run_id: &str) -> &str {
    if check_run_id(run_id).is_ok() { run_id } else { "invalid" }
}

/// Parses an experiment id as MLflow sends it (a decimal string).
pub fn parse_experiment_id(s: &str) -> Result<i64> {
    s.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| Error::new(ErrorCode::ExperimentNotFound, "no experiment with that id"))
}

/// Checks a run id's shape (32 lowercase hex digits) before it reaches the store.
pub fn check_run_id(s: &str) -> Result<()> {
    if s.len() == 32 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        Ok(())
    } else {
        Err(Error::new(ErrorCode::RunNotFound, "no run with that id"))
    }
}

impl LogBatch {
    /// Checks sizes and every key and value before anything is written.
    pub fn validate(&self) -> Result<()> {
        if self.metrics.len() > MAX_BATCH_METRICS || self.params.len() > MAX_BATCH_PARAMS || self.tags.len() > MAX_BATCH_TAGS {
            return Err(Error::new(
                ErrorCode::BatchTooLarge,
                format!("a batch holds at most {MAX_BATCH_METRICS} metrics, {MAX_BATCH_PARAMS} params and {MAX_BATCH_TAGS} tags"),
            ));
        }
        if self.metrics.len() + self.params.len() + self.tags.len() > MAX_BATCH_TOTAL {
            return Err(Error::new(ErrorCode::BatchTooLarge, format!("a batch holds at most {MAX_BATCH_TOTAL} entries in all")));
        }
        for m in &self.metrics {
            check_key("metric", &m.key)?;
        }
        for (k, v) in &self.params {
            check_key("param", k)?;
            check_value("param", v, MAX_PARAM_VALUE_LEN)?;
        }
        for (k, v) in &self.tags {
            check_key("tag", k)?;
            check_value("tag", v, MAX_TAG_VALUE_LEN)?;
            crate::phi::check_mark(k, Some(v))?;
            if RESERVED_TAGS.contains(&k.as_str()) {
                return Err(Error::new(ErrorCode::InvalidKey, "mlflow.user is set by the server from the authenticated user"));
            }
            if k == "mlflow.runName" {
                check_name("run", v)?;
            }
        }
        // The same param key twice with different values in one batch is a conflict too.
        for (i, (k, v)) in self.params.iter().enumerate() {
            if self.params[..i].iter().any(|(k2, v2)| k2 == k && v2 != v) {
                return Err(Error::new(ErrorCode::ParamImmutable, "the batch logs one param key twice with different values"));
            }
        }
        Ok(())
    }
}

impl Registry {
    fn track_attempt<'a>(actor: &'a Principal, action: &'a str, entity_type: &'a str, entity_id: &'a str) -> Attempt<'a> {
        Attempt { actor: actor.user_id().as_str(), action, entity_type, entity_id, model: None, version: None }
    }

    fn now_ms(&self) -> i64 {
        self.clock.now().micros() / 1000
    }

    fn active_run(tx: &mut dyn Tx, run_id: &str, lock: bool) -> Result<RunInfo> {
        check_run_id(run_id)?;
        let run = tx.get_run(run_id, lock)?.ok_or_else(|| Error::new(ErrorCode::RunNotFound, "no run with that id"))?;
        if run.lifecycle != Lifecycle::Active {
            return Err(Error::new(ErrorCode::RunNotActive, "the run is deleted; restore it before logging to it"));
        }
        Ok(run)
    }

    fn run_event(&self, actor: &Principal, action: &str, run: &RunInfo, details: serde_json::Value) -> AuditEvent {
        self.event(actor.user_id().as_str(), action, "run", &run.run_id, details)
    }

    // ----- experiments ---------------------------------------------------------------------

    /// Creates an experiment. Its artifacts go to `mlflow-artifacts:/<id>` unless a location is given.
    pub fn create_experiment(&self, actor: &Principal, name: &str, artifact_location: Option<&str>, tags: &[(String, String)]) -> Result<Experiment> {
        let attempt = Self::track_attempt(actor, "experiment.create", "experiment", "");
        let checked = check_name("experiment", name).and_then(|_| {
            tags.iter().try_for_each(|(k, v)| check_key("tag", k).and_then(|_| check_value("tag", v, MAX_TAG_VALUE_LEN)).and_then(|_| crate::phi::check_mark(k, Some(v))))?;
            if let Some(loc) = artifact_location {
                check_value("artifact location", loc, 2000)?;
            }
            Ok(())
        });
        if let Err(e) = checked {
            self.audit_denial(&attempt, &e)?;
            return Err(e);
        }
        let now = self.now_ms();
        self.governed(attempt, |tx| {
            Self::acting_user(tx, actor, Action::Track)?;
            let mut exp = Experiment {
                id: -1,
                name: name.to_owned(),
                artifact_location: artifact_location.unwrap_or("").to_owned(),
                lifecycle: Lifecycle::Active,
                creation_time: now,
                last_update_time: now,
                tags: tags.to_vec(),
            };
            exp.id = tx.insert_experiment(&exp)?;
            if exp.artifact_location.is_empty() {
                exp.artifact_location = format!("mlflow-artifacts:/{}", exp.id);
                tx.set_experiment_artifact_location(exp.id, &exp.artifact_location)?;
            }
            for (k, v) in tags {
                tx.set_experiment_tag(exp.id, k, v)?;
            }
            tx.append_audit(self.event(
                actor.user_id().as_str(),
                "experiment.create",
                "experiment",
                &exp.id.to_string(),
                json!({"new": {"name": exp.name, "artifact_location": exp.artifact_location}}),
            ))?;
            Ok(exp)
        })
    }

    /// An experiment by id.
    pub fn get_experiment(&self, id: i64) -> Result<Experiment> {
        self.read(|tx| tx.get_experiment(id))?.ok_or_else(|| Error::new(ErrorCode::ExperimentNotFound, "no experiment with that id"))
    }

    /// An experiment by name.
    pub fn get_experiment_by_name(&self, name: &str) -> Result<Experiment> {
        self.read(|tx| tx.get_experiment_by_name(name))?.ok_or_else(|| Error::new(ErrorCode::ExperimentNotFound, "no experiment with that name"))
    }

    /// Experiments, by id.
    pub fn list_experiments(&self, view: ViewType, limit: u32, offset: u64) -> Result<Vec<Experiment>> {
        self.read(|tx| tx.list_experiments(view, limit, offset))
    }

    /// Sets one experiment tag.
    pub fn set_experiment_tag(&self, actor: &Principal, id: i64, key: &str, value: &str) -> Result<()> {
        let id_text = id.to_string();
        let attempt = Self::track_attempt(actor, "experiment.set_tag", "experiment", &id_text);
        self.governed(attempt, |tx| {
            Self::acting_user(tx, actor, Action::Track)?;
            check_key("tag", key)?;
            check_value("tag", value, MAX_TAG_VALUE_LEN)?;
            crate::phi::check_mark(key, Some(value))?;
            tx.get_experiment(id)?.ok_or_else(|| Error::new(ErrorCode::ExperimentNotFound, "no experiment with that id"))?;
            tx.set_experiment_tag(id, key, value)?;
            tx.append_audit(self.event(actor.user_id().as_str(), "experiment.set_tag", "experiment", &id_text, json!({"key": key})))
        })
    }

    /// Soft-deletes or restores an experiment.
    pub fn set_experiment_lifecycle(&self, actor: &Principal, id: i64, lifecycle: Lifecycle) -> Result<()> {
        let id_text = id.to_string();
        let action = if lifecycle == Lifecycle::Deleted { "experiment.delete" } else { "experiment.restore" };
        let attempt = Self::track_attempt(actor, action, "experiment", &id_text);
        let now = self.now_ms();
        self.governed(attempt, |tx| {
            Self::acting_user(tx, actor, Action::Track)?;
            if id == DEFAULT_EXPERIMENT_ID && lifecycle == Lifecycle::Deleted {
                return Err(Error::new(ErrorCode::InvalidText, "the Default experiment cannot be deleted"));
            }
            let exp = tx.get_experiment(id)?.ok_or_else(|| Error::new(ErrorCode::ExperimentNotFound, "no experiment with that id"))?;
            tx.set_experiment_lifecycle(id, lifecycle, now)?;
            tx.append_audit(self.event(
                actor.user_id().as_str(),
                action,
                "experiment",
                &id_text,
                json!({"old": {"lifecycle_stage": exp.lifecycle.as_str()}, "new": {"lifecycle_stage": lifecycle.as_str()}}),
            ))
        })
    }

    // ----- runs ----------------------------------------------------------------------------

    /// Starts a run in an active experiment. The run's user is the authenticated user.
    pub fn create_run(&self, actor: &Principal, experiment_id: i64, run_name: Option<&str>, start_time: Option<i64>, tags: &[(String, String)]) -> Result<RunInfo> {
        let attempt = Self::track_attempt(actor, "run.create", "experiment", "");
        let now = self.now_ms();
        let run_id = {
            // MLflow run ids are 32 lowercase hex digits; a UUIDv7 keeps them time-ordered.
            let raw = self.ids.new_id("run");
            let hexed = raw.trim_start_matches("run_").replace('-', "");
            if check_run_id(&hexed).is_ok() { hexed } else { crate::ids::Sha256Digest::of(raw.as_bytes()).to_hex()[..32].to_owned() }
        };
        self.governed(attempt, |tx| {
            Self::acting_user(tx, actor, Action::Track)?;
            if let Some(n) = run_name.filter(|n| !n.is_empty()) {
                check_name("run", n)?;
            }
            for (k, v) in tags {
                check_key("tag", k)?;
                check_value("tag", v, MAX_TAG_VALUE_LEN)?;
                crate::phi::check_mark(k, Some(v))?;
            }
            let exp = tx.get_experiment(experiment_id)?.ok_or_else(|| Error::new(ErrorCode::ExperimentNotFound, "no experiment with that id"))?;
            if exp.lifecycle != Lifecycle::Active {
                return Err(Error::new(ErrorCode::RunNotActive, "the experiment is deleted; restore it before starting runs in it"));
            }
            // The name: the one given, else the client's `mlflow.runName` tag, else a generated one.
            let name = run_name
                .filter(|n| !n.is_empty())
                .map(str::to_owned)
                .or_else(|| tags.iter().find(|(k, v)| k == "mlflow.runName" && !v.is_empty()).map(|(_, v)| v.clone()))
                .unwrap_or_else(|| format!("run-{}", &run_id[run_id.len() - 8..]));
            check_name("run", &name)?;
            let info = RunInfo {
                run_id: run_id.clone(),
                experiment_id,
                run_name: name.clone(),
                user_id: actor.user_id().as_str().to_owned(),
                status: RunStatus::Running,
                start_time: start_time.unwrap_or(now),
                end_time: None,
                artifact_uri: format!("{}/{}/artifacts", exp.artifact_location.trim_end_matches('/'), run_id),
                lifecycle: Lifecycle::Active,
            };
            tx.insert_run(&info)?;
            let mut all_tags: Vec<(String, String)> = tags.iter().filter(|(k, _)| k != "mlflow.runName" && k != "mlflow.user").cloned().collect();
            all_tags.push(("mlflow.runName".into(), name.clone()));
            // The user tag records who is authenticated, whatever the client claimed.
            all_tags.push(("mlflow.user".into(), info.user_id.clone()));
            tx.upsert_tags(&info.run_id, &all_tags)?;
            tx.append_audit(self.run_event(actor, "run.create", &info, json!({"new": {"experiment_id": experiment_id.to_string(), "run_name": name}})))?;
            Ok(info)
        })
    }

    /// A run with its params, tags and latest metrics.
    pub fn get_run(&self, run_id: &str) -> Result<Run> {
        check_run_id(run_id)?;
        self.read(|tx| {
            let info = tx.get_run(run_id, false)?.ok_or_else(|| Error::new(ErrorCode::RunNotFound, "no run with that id"))?;
            Ok(Run { params: tx.run_params(run_id)?, metrics: tx.run_latest_metrics(run_id)?, tags: tx.run_tags(run_id)?, info })
        })
    }

    /// Changes a run's status, end time or name.
    pub fn update_run(&self, actor: &Principal, run_id: &str, status: Option<RunStatus>, end_time: Option<i64>, run_name: Option<&str>) -> Result<RunInfo> {
        let attempt = Self::track_attempt(actor, "run.update", "run", audit_run_id(run_id));
        self.governed(attempt, |tx| {
            Self::acting_user(tx, actor, Action::Track)?;
            let mut run = Self::active_run(tx, run_id, true)?;
            let old = json!({"status": run.status.as_str(), "end_time": run.end_time, "run_name": run.run_name});
            if let Some(s) = status {
                run.status = s;
            }
            if end_time.is_some() {
                run.end_time = end_time;
            }
            if let Some(n) = run_name.filter(|n| !n.is_empty()) {
                check_name("run", n)?;
                run.run_name = n.to_owned();
                tx.upsert_tags(run_id, &[("mlflow.runName".into(), n.to_owned())])?;
            }
            tx.update_run(&run)?;
            let new = json!({"status": run.status.as_str(), "end_time": run.end_time, "run_name": run.run_name});
            tx.append_audit(self.run_event(actor, "run.update", &run, json!({"old": old, "new": new})))?;
            Ok(run)
        })
    }

    /// Soft-deletes or restores a run.
    pub fn set_run_lifecycle(&self, actor: &Principal, run_id: &str, lifecycle: Lifecycle) -> Result<()> {
        let action = if lifecycle == Lifecycle::Deleted { "run.delete" } else { "run.restore" };
        let attempt = Self::track_attempt(actor, action, "run", audit_run_id(run_id));
        self.governed(attempt, |tx| {
            Self::acting_user(tx, actor, Action::Track)?;
            check_run_id(run_id)?;
            let mut run = tx.get_run(run_id, true)?.ok_or_else(|| Error::new(ErrorCode::RunNotFound, "no run with that id"))?;
            let old = run.lifecycle;
            run.lifecycle = lifecycle;
            tx.update_run(&run)?;
            tx.append_audit(self.run_event(actor, action, &run, json!({"old": {"lifecycle_stage": old.as_str()}, "new": {"lifecycle_stage": lifecycle.as_str()}})))
        })
    }

    /// Logs metrics, params and tags to an active run in one transaction (and one audit
    /// event). Params are immutable: the same value again is accepted, a different value is
    /// refused with `param_immutable` and nothing of the batch is written.
    pub fn log_batch(&self, actor: &Principal, run_id: &str, batch: &LogBatch) -> Result<()> {
        let attempt = Self::track_attempt(actor, "run.log", "run", audit_run_id(run_id));
        self.governed(attempt, |tx| {
            Self::acting_user(tx, actor, Action::Track)?;
            batch.validate()?;
            let run = Self::active_run(tx, run_id, true)?;
            let mut new_params = Vec::new();
            for (k, v) in &batch.params {
                match tx.get_param(run_id, k)? {
                    Some(old) if &old == v => {}
                    Some(_) => return Err(Error::new(ErrorCode::ParamImmutable, "a param cannot change once logged; log a new key instead")),
                    None if new_params.iter().any(|(k2, _): &(String, String)| k2 == k) => {}
                    None => new_params.push((k.clone(), v.clone())),
                }
            }
            if !new_params.is_empty() {
                tx.insert_params(run_id, &new_params)?;
            }
            if !batch.tags.is_empty() {
                tx.upsert_tags(run_id, &batch.tags)?;
                // The name tag and the run's name are one fact.
                if let Some((_, name)) = batch.tags.iter().rev().find(|(k, _)| k == "mlflow.runName") {
                    let mut renamed = run.clone();
                    renamed.run_name = name.clone();
                    tx.update_run(&renamed)?;
                }
            }
            if !batch.metrics.is_empty() {
                tx.insert_metrics(run_id, &batch.metrics)?;
            }
            let keys = |it: &mut dyn Iterator<Item = &String>| {
                let mut v: Vec<&String> = it.collect();
                v.sort();
                v.dedup();
                v.truncate(20);
                v.into_iter().cloned().collect::<Vec<_>>()
            };
            tx.append_audit(self.run_event(
                actor,
                "run.log",
                &run,
                json!({
                    "metrics": batch.metrics.len(), "params": batch.params.len(), "tags": batch.tags.len(),
                    "metric_keys": keys(&mut batch.metrics.iter().map(|m| &m.key)),
                    "param_keys": keys(&mut batch.params.iter().map(|p| &p.0)),
                    "tag_keys": keys(&mut batch.tags.iter().map(|t| &t.0)),
                }),
            ))
        })
    }

    /// Deletes one tag of an active run.
    pub fn delete_run_tag(&self, actor: &Principal, run_id: &str, key: &str) -> Result<()> {
        let attempt = Self::track_attempt(actor, "run.delete_tag", "run", audit_run_id(run_id));
        self.governed(attempt, |tx| {
            Self::acting_user(tx, actor, Action::Track)?;
            let run = Self::active_run(tx, run_id, true)?;
            crate::phi::check_mark(key, None)?;
            if !tx.delete_tag(run_id, key)? {
                return Err(Error::new(ErrorCode::TagNotFound, "the run has no tag with that key"));
            }
            tx.append_audit(self.run_event(actor, "run.delete_tag", &run, json!({"key": key})))
        })
    }

    /// A metric's history in logging order, a page at a time.
    pub fn metric_history(&self, run_id: &str, key: &str, limit: u32, offset: u64) -> Result<Vec<MetricPoint>> {
        check_run_id(run_id)?;
        if offset > MAX_SEARCH_OFFSET {
            return Err(Error::new(ErrorCode::InvalidFilter, "invalid page token"));
        }
        self.read(|tx| {
            tx.get_run(run_id, false)?.ok_or_else(|| Error::new(ErrorCode::RunNotFound, "no run with that id"))?;
            tx.metric_history(run_id, key, limit, offset)
        })
    }

    /// Runs matching a query, with their data, and whether more pages follow.
    pub fn search_runs(&self, q: &RunQuery) -> Result<(Vec<Run>, bool)> {
        if q.limit == 0 || q.limit > MAX_SEARCH_RESULTS {
            return Err(Error::new(ErrorCode::InvalidFilter, format!("max_results must be between 1 and {MAX_SEARCH_RESULTS}")));
        }
        // Bounds that keep every query within both databases' limits (joins, expression
        // depth, bound parameters), so a large request is a 400, not a database error.
        let in_items: usize = q.filter.iter().map(|c| if let crate::search::Operand::List(l) = &c.operand { l.len() } else { 1 }).sum();
        if q.filter.len() > MAX_SEARCH_CLAUSES || in_items > MAX_SEARCH_VALUES || q.order_by.len() > MAX_ORDER_BY || q.experiment_ids.len() > MAX_SEARCH_EXPERIMENTS {
            return Err(Error::new(
                ErrorCode::InvalidFilter,
                format!("a search takes at most {MAX_SEARCH_CLAUSES} conditions, {MAX_SEARCH_VALUES} values, {MAX_ORDER_BY} order_by keys and {MAX_SEARCH_EXPERIMENTS} experiments"),
            ));
        }
        if q.offset > MAX_SEARCH_OFFSET {
            return Err(Error::new(ErrorCode::InvalidFilter, "invalid page token"));
        }
        self.read(|tx| {
            let mut page = q.clone();
            page.limit = q.limit + 1;
            let mut infos = tx.search_runs(&page)?;
            let more = infos.len() > q.limit as usize;
            infos.truncate(q.limit as usize);
            let ids: Vec<String> = infos.iter().map(|r| r.run_id.clone()).collect();
            let (mut params, mut metrics, mut tags) = tx.runs_data(&ids)?;
            let runs = infos
                .into_iter()
                .map(|info| Run {
                    params: params.remove(&info.run_id).unwrap_or_default(),
                    metrics: metrics.remove(&info.run_id).unwrap_or_default(),
                    tags: tags.remove(&info.run_id).unwrap_or_default(),
                    info,
                })
                .collect();
            Ok((runs, more))
        })
    }

    /// Checks, before any bytes are accepted, that the actor may write an artifact of this
    /// run: the Track role, and a run that exists in that experiment and is active. Refusals
    /// are audited (with the run id only when it is well-formed).
    /// Artifacts under a location a model version was registered from are frozen.
    pub fn authorize_artifact_write(&self, actor: &Principal, experiment_id: &str, run_id: &str, path: &str) -> Result<()> {
        let attempt = Self::track_attempt(actor, "artifact.write", "run", audit_run_id(run_id));
        self.governed(attempt, |tx| {
            Self::acting_user(tx, actor, Action::Track)?;
            let run = Self::active_run(tx, run_id, false)?;
            if parse_experiment_id(experiment_id).ok() != Some(run.experiment_id) {
                return Err(Error::new(ErrorCode::InvalidPath, "the artifact path's experiment is not the run's"));
            }
            Self::not_frozen(tx, path)
        })
    }

    fn not_frozen(tx: &mut dyn Tx, path: &str) -> Result<()> {
        if tx.versions_registered_at(&crate::catalog::enclosing_locations(path))? {
            return Err(Error::new(
                ErrorCode::ArtifactsFrozen,
                "a model version was registered from this location; its files are frozen (log the changed model as a new artifact path)",
            ));
        }
        Ok(())
    }

    /// Records an artifact written for a run (path, size, SHA-256) in the audit trail, after
    /// the same checks as [`Registry::authorize_artifact_write`].
    pub fn record_artifact_write(&self, actor: &Principal, run_id: &str, path: &str, size: u64, sha256: &str) -> Result<()> {
        let attempt = Self::track_attempt(actor, "artifact.write", "run", audit_run_id(run_id));
        self.governed(attempt, |tx| {
            Self::acting_user(tx, actor, Action::Track)?;
            let run = Self::active_run(tx, run_id, false)?;
            Self::not_frozen(tx, path)?;
            tx.append_audit(self.run_event(actor, "artifact.write", &run, json!({"path": path, "size": size, "sha256": sha256})))
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn latest_metric_order_is_step_then_time_then_value() {
        let p = |step, timestamp, value| MetricPoint { value, timestamp, step };
        assert!(p(2, 0, 0.0).newer_than(&p(1, 9, 9.0)));
        assert!(p(1, 5, 0.0).newer_than(&p(1, 4, 9.0)));
        assert!(p(1, 5, 2.0).newer_than(&p(1, 5, 1.0)));
        assert!(p(1, 5, 1.0).newer_than(&p(1, 5, f64::NAN)));
        assert!(!p(1, 5, 1.0).newer_than(&p(1, 5, 1.0)));
    }

    #[test]
    fn batches_are_checked_before_anything_is_written() {
        let m = |k: &str| Metric { key: k.into(), point: MetricPoint { value: 1.0, timestamp: 0, step: 0 } };
        assert!(LogBatch { metrics: vec![m("acc"), m("val/loss")], ..Default::default() }.validate().is_ok());
        let too_many = LogBatch { metrics: (0..1001).map(|i| m(&format!("k{i}"))).collect(), ..Default::default() };
        assert_eq!(too_many.validate().unwrap_err().code(), ErrorCode::BatchTooLarge);
        for bad in ["", "../x", "a/../b", "/abs", "semi;colon"] {
            assert_eq!(LogBatch { metrics: vec![m(bad)], ..Default::default() }.validate().unwrap_err().code(), ErrorCode::InvalidKey, "{bad:?}");
        }
        let twice = LogBatch { params: vec![("a".into(), "1".into()), ("a".into(), "2".into())], ..Default::default() };
        assert_eq!(twice.validate().unwrap_err().code(), ErrorCode::ParamImmutable);
        let long = LogBatch { params: vec![("a".into(), "x".repeat(MAX_PARAM_VALUE_LEN + 1))], ..Default::default() };
        assert_eq!(long.validate().unwrap_err().code(), ErrorCode::InvalidText);
    }

    #[test]
    fn ids_are_checked_before_the_store() {
        assert_eq!(check_run_id("abc").unwrap_err().code(), ErrorCode::RunNotFound);
        assert!(check_run_id("0123456789abcdef0123456789abcdef").is_ok());
        assert_eq!(parse_experiment_id("-1").unwrap_err().code(), ErrorCode::ExperimentNotFound);
        assert_eq!(parse_experiment_id("12").unwrap(), 12);
    }
}
