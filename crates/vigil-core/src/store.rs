//! The storage boundary: what the use cases need from a database, and nothing about SQL.
//!
//! A [`Store`] hands out transactions. The use cases in [`crate::registry`] do all their reads
//! and writes for one operation through one [`Tx`] and commit once, so a state change and its
//! audit events land together or not at all. Implementations (SQLite, PostgreSQL) live in
//! `vigil-store`; they turn unique-constraint violations into the domain's conflict codes and
//! lock rows where `lock = true` so that invariants hold with many writers on one database.
//!
//! The trait is deliberately narrow (one method per query the rules need): a store interface
//! that grows with every feature becomes impossible to implement twice (MLflow's lesson).

use crate::approval::{PromotionRequest, RequestStatus, Signature};
use crate::audit::{AuditEvent, AuditRow, StoredEvent};
use crate::auth::User;
use crate::catalog::{DatasetInput, LoggedModel, LoggedModelStatus, VersionMeta};
use crate::error::Result;
use crate::ids::{ModelName, Sha256Digest, Timestamp, UserId};
use crate::model::{ModelVersion, RegisteredModel, Stage, StageTransition, VersionContent};
use crate::session::ApiToken;
use crate::validate::ValidationRecord;
use crate::tracking::{Experiment, Lifecycle, Metric, MetricPoint, RunInfo, RunQuery, ViewType};
use std::collections::HashMap;

/// Params, latest metrics and tags of several runs, by run id.
pub type RunsData = (HashMap<String, Vec<(String, String)>>, HashMap<String, Vec<Metric>>, HashMap<String, Vec<(String, String)>>);

/// Read-only or read-write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxMode {
    /// A consistent snapshot for queries.
    Read,
    /// Serialised writes (SQLite `BEGIN IMMEDIATE`; PostgreSQL row locks on request).
    Write,
}

/// A database that hands out transactions.
pub trait Store: Send + Sync {
    /// Starts a transaction. Dropping it without [`Tx::commit`] rolls back.
    fn begin(&self, mode: TxMode) -> Result<Box<dyn Tx + '_>>;
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;
    /// Refreshes the query planner's statistics (SQLite's `ANALYZE`; PostgreSQL's
    /// autovacuum does this itself). Servers call it periodically.
    fn optimize(&self) -> Result<()> {
        Ok(())
    }
    /// Database connections held by this process: (idle, in use).
    fn pool_stats(&self) -> (usize, usize) {
        (0, 0)
    }
    /// Whether [`SegmentBody::File`] bodies are kept as files (the embedded store, in its
    /// data directory) rather than copied into the database.
    fn keeps_segment_files(&self) -> bool {
        false
    }
}

/// A prediction-log segment's body as it is handed to the store.
#[derive(Debug, Clone, Copy)]
pub enum SegmentBody<'a> {
    /// Bytes to keep in the database (compressed, see `predlog`).
    Inline(&'a [u8]),
    /// A sealed spool file, kept as it is: a store that keeps segment files links it into
    /// its own directory (a copy where a link cannot be made) with its length and CRC-32 in
    /// the row; any other store keeps its bytes in the database. The file must not change.
    File {
        /// The sealed file.
        path: &'a std::path::Path,
        /// Its length in bytes.
        len: u64,
        /// Its CRC-32 (IEEE).
        crc32: u32,
    },
}

/// Filter for listing promotion requests.
#[derive(Debug, Clone, Default)]
pub struct RequestFilter {
    /// Only this status.
    pub status: Option<RequestStatus>,
    /// Only requests on versions of this model.
    pub model: Option<ModelName>,
    /// At most this many, newest first.
    pub limit: Option<u32>,
}

/// Filter for querying the audit trail; all conditions must hold.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Model name.
    pub model: Option<String>,
    /// Version string (with `model`).
    pub version: Option<String>,
    /// Actor user id.
    pub actor: Option<String>,
    /// Exact action, or a prefix ending in `.` (e.g. `promotion.`).
    pub action: Option<String>,
    /// Only `ok` or `denied` events.
    pub outcome: Option<String>,
    /// At or after this time.
    pub since: Option<Timestamp>,
    /// Before this time.
    pub until: Option<Timestamp>,
    /// At most this many (oldest first).
    pub limit: Option<u32>,
    /// Only events with a sequence number greater than this (for paging).
    pub after_seq: Option<i64>,
}

/// A stored drift baseline (its feature profiles are stored beside it).
#[derive(Debug, Clone, PartialEq)]
pub struct BaselineRecord {
    /// Id (`bl_…`).
    pub id: String,
    /// The model version it belongs to.
    pub model_version_id: String,
    /// 1, 2, … per model version; a new baseline never overwrites an old one.
    pub baseline_version: i64,
    /// Rows profiled.
    pub rows: i64,
    /// Who set it.
    pub created_by: String,
    /// When.
    pub created_at: Timestamp,
}

/// One prediction record's entry in the prediction index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry<'a> {
    /// The gateway's request id.
    pub request_id: &'a str,
    /// `live` or `shadow`.
    pub role: &'a str,
    /// The model version that ran.
    pub version_id: &'a str,
    /// The caller's own id.
    pub client_id: Option<&'a str>,
}

/// A stored batch of production samples.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchRecord {
    /// Id (`bt_…`).
    pub id: String,
    /// Model version.
    pub model_version_id: String,
    /// 1, 2, … per model version.
    pub batch_seq: i64,
    /// Rows in the batch.
    pub rows: i64,
    /// When it arrived.
    pub received_at: Timestamp,
    /// Who sent it.
    pub created_by: String,
    /// Encoded batch.
    pub payload: Vec<u8>,
}

/// A drift alert for one check of one model version.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRecord {
    /// Id (`al_…`).
    pub id: String,
    /// Model version.
    pub model_version_id: String,
    /// `feature:<name>`, `prediction` or `performance`.
    pub check_key: String,
    /// `open`, `acknowledged` or `resolved`.
    pub state: String,
    /// When it opened.
    pub opened_at: Timestamp,
    /// Last change or confirmation.
    pub updated_at: Timestamp,
    /// The report that last touched it.
    pub report_id: String,
    /// Plain-language detail.
    pub detail: String,
    /// Who acknowledged it.
    pub acknowledged_by: Option<String>,
    /// When.
    pub acknowledged_at: Option<Timestamp>,
    /// When it resolved.
    pub resolved_at: Option<Timestamp>,
}

/// A baseline with its encoded feature profiles (feature name, bytes).
pub type StoredBaseline = (BaselineRecord, Vec<(String, Vec<u8>)>);

/// A stored drift report.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportRecord {
    /// Id (`dr_…`).
    pub id: String,
    /// Model version.
    pub model_version_id: String,
    /// Baseline checked against.
    pub baseline_id: String,
    /// Overall status.
    pub status: String,
    /// The report as JSON.
    pub report: String,
    /// Who ran the check.
    pub created_by: String,
    /// When.
    pub created_at: Timestamp,
}

/// One transaction. Every method maps to one or two SQL statements.
pub trait Tx {
    /// Commits, appending the buffered audit events to the chain first.
    fn commit(self: Box<Self>) -> Result<()>;

    /// Inserts a user; `user_exists` if the id was ever used.
    fn insert_user(&mut self, user: &User) -> Result<()>;
    /// A user by id; `lock` takes a row lock until commit.
    fn get_user(&mut self, id: &UserId, lock: bool) -> Result<Option<User>>;
    /// All users by id.
    fn list_users(&mut self) -> Result<Vec<User>>;
    /// Writes a user's mutable state (status, role, printed name, password hash, failures, lock).
    fn update_user(&mut self, user: &User) -> Result<()>;
    /// Number of users ever created.
    fn user_count(&mut self) -> Result<u64>;

    /// A configuration value (policies are stored as JSON under `approval_policies`).
    fn get_setting(&mut self, key: &str) -> Result<Option<String>>;
    /// Sets a configuration value.
    fn put_setting(&mut self, key: &str, value: &str) -> Result<()>;
    /// Sets a value only if the key was never set; returns whether this call set it. A unique
    /// insert, so exactly one of several concurrent claims wins.
    fn claim_setting(&mut self, key: &str, value: &str) -> Result<bool>;

    /// Inserts a registered model; `model_exists` on a name clash.
    fn insert_model(&mut self, model: &RegisteredModel) -> Result<()>;
    /// A model by name; `lock` serialises concurrent stage changes of its versions.
    fn get_model_by_name(&mut self, name: &ModelName, lock: bool) -> Result<Option<RegisteredModel>>;
    /// All models by name.
    fn list_models(&mut self) -> Result<Vec<RegisteredModel>>;

    /// Inserts a version; `duplicate_version` if its precedence key exists for the model.
    fn insert_version(&mut self, version: &ModelVersion) -> Result<()>;
    /// A version by id.
    fn get_version(&mut self, id: &str) -> Result<Option<ModelVersion>>;
    /// A version by model id and SemVer precedence key (version without build metadata).
    fn find_version(&mut self, model_id: &str, precedence_key: &str) -> Result<Option<ModelVersion>>;
    /// All versions of a model, in registration order.
    fn list_versions(&mut self, model_id: &str) -> Result<Vec<ModelVersion>>;
    /// Versions of a model in one stage.
    fn versions_in_stage(&mut self, model_id: &str, stage: Stage) -> Result<Vec<ModelVersion>>;
    /// Moves a version to a stage (a unique index allows one Production version per model).
    fn set_version_stage(&mut self, id: &str, stage: Stage) -> Result<()>;
    /// Replaces a version's signed content and content hash.
    fn update_version_content(&mut self, id: &str, content: &VersionContent, hash: &Sha256Digest) -> Result<()>;
    /// Versions whose lineage records this training data hash.
    fn versions_by_data_hash(&mut self, hash: &str) -> Result<Vec<ModelVersion>>;
    /// Records a stage change.
    fn insert_transition(&mut self, t: &StageTransition) -> Result<()>;
    /// A version's stage history, oldest first.
    fn list_transitions(&mut self, model_version_id: &str) -> Result<Vec<StageTransition>>;

    /// Inserts a request; `request_already_pending` if the version has a pending one.
    fn insert_request(&mut self, r: &PromotionRequest) -> Result<()>;
    /// A request by id; `lock` serialises concurrent signers.
    fn get_request(&mut self, id: &str, lock: bool) -> Result<Option<PromotionRequest>>;
    /// Writes a request's status, decision time and reason.
    fn update_request_status(&mut self, r: &PromotionRequest) -> Result<()>;
    /// Requests matching a filter, newest first.
    fn list_requests(&mut self, filter: &RequestFilter) -> Result<Vec<PromotionRequest>>;
    /// Pending requests for one version (at most one by constraint).
    fn pending_requests_for_version(&mut self, model_version_id: &str) -> Result<Vec<PromotionRequest>>;

    /// Inserts a signature; `duplicate_signature` if the signer already signed the request.
    fn insert_signature(&mut self, s: &Signature) -> Result<()>;
    /// Signatures on a request, oldest first.
    fn list_signatures(&mut self, request_id: &str) -> Result<Vec<Signature>>;
    /// Signatures on all requests of a version, oldest first.
    fn signatures_for_version(&mut self, model_version_id: &str) -> Result<Vec<Signature>>;
    /// Every signature (for verification), oldest first.
    fn all_signatures(&mut self) -> Result<Vec<Signature>>;

    /// The drift configuration (JSON) of a model version.
    fn get_drift_config(&mut self, model_version_id: &str) -> Result<Option<String>>;
    /// Sets the drift configuration.
    fn put_drift_config(&mut self, model_version_id: &str, config: &str, by: &str, at: Timestamp) -> Result<()>;
    /// Highest baseline version of a model version (0 if none).
    fn max_baseline_version(&mut self, model_version_id: &str) -> Result<i64>;
    /// Inserts a baseline record; `concurrent_modification` if the baseline version was taken
    /// concurrently. Its profiles follow with [`Tx::insert_profile`] in the same transaction.
    fn insert_baseline(&mut self, b: &BaselineRecord) -> Result<()>;
    /// Inserts one encoded feature profile of a baseline.
    fn insert_profile(&mut self, baseline_id: &str, feature: &str, payload: &[u8]) -> Result<()>;
    /// The newest baseline of a model version with its encoded profiles.
    fn latest_baseline(&mut self, model_version_id: &str) -> Result<Option<StoredBaseline>>;
    /// Highest batch sequence number of a model version (0 if none).
    fn max_batch_seq(&mut self, model_version_id: &str) -> Result<i64>;
    /// Inserts a batch; `concurrent_modification` if its sequence number was taken.
    fn insert_batch(&mut self, b: &BatchRecord) -> Result<()>;
    /// Batches newest first, optionally only those received at or after `since`, stopping once
    /// `max_rows` rows are collected.
    fn recent_batches(&mut self, model_version_id: &str, since: Option<Timestamp>, max_rows: Option<i64>) -> Result<Vec<BatchRecord>>;
    /// Inserts or replaces labels by prediction id.
    fn upsert_labels(&mut self, model_version_id: &str, labels: &[(String, String)], at: Timestamp) -> Result<()>;
    /// Labels for a model version's prediction ids.
    fn labels(&mut self, model_version_id: &str) -> Result<std::collections::HashMap<String, String>>;
    /// The newest baseline's features and whether each is numeric, without reading the
    /// profiles (`None` if the version has no baseline).
    fn baseline_kinds(&mut self, model_version_id: &str) -> Result<Option<Vec<(String, bool)>>>;
    /// Records a prediction-log segment with its body and the range (first, last) of the
    /// time-ordered request ids it covers, if any; `false` if that segment id was recorded
    /// before (a file body is then not taken). A file body is taken only if the transaction
    /// commits.
    fn insert_prediction_segment(&mut self, id: &str, instance: &str, records: i64, at: Timestamp, body: SegmentBody<'_>, covers: Option<(&str, &str)>) -> Result<bool>;
    /// Indexes records by request id (unique with role and version) and caller id.
    fn insert_prediction_index(&mut self, segment_id: &str, entries: &[IndexEntry<'_>]) -> Result<()>;
    /// The ids of the segments that may hold a request id or a caller's id, in id order: those
    /// with an index entry for it and, given `last_until`, those whose covered range holds `id`
    /// and ends no later than `last_until`.
    fn prediction_segment_ids_for(&mut self, id: &str, last_until: Option<&str>) -> Result<Vec<String>>;
    /// A segment's body as it was stored (a file body read back and checked against its
    /// length and CRC-32: `IntegrityViolation` if it is missing or differs); `None` if there
    /// is no such segment or it has no body.
    fn prediction_segment_body(&mut self, segment_id: &str) -> Result<Option<Vec<u8>>>;
    /// Records stored one per row before segments were stored whole (schema 8), by the
    /// gateway's request id or the caller's id.
    fn legacy_predictions_for_request(&mut self, id: &str) -> Result<Vec<crate::predlog::StoredPrediction>>;
    /// Writes online feature values `(entity, feature, JSON value or null)` of a feature set.
    fn upsert_online_features(&mut self, feature_set: &str, cells: &[(String, String, Option<String>)], at: Timestamp) -> Result<()>;
    /// An entity's online features: `(feature, JSON value or null, written at)`.
    fn online_features(&mut self, feature_set: &str, entity: &str) -> Result<Vec<(String, Option<String>, Timestamp)>>;
    /// Stores a drift report (JSON).
    fn insert_drift_report(&mut self, r: &ReportRecord) -> Result<()>;

    /// Recent outcomes (JSON list of booleans) and last notification time of one check.
    fn get_check_state(&mut self, model_version_id: &str, check_key: &str) -> Result<Option<(String, Option<Timestamp>)>>;
    /// Writes a check's state.
    fn put_check_state(&mut self, model_version_id: &str, check_key: &str, history: &str, last_notified: Option<Timestamp>) -> Result<()>;
    /// The open or acknowledged alert of a check (at most one, by constraint).
    fn active_alert(&mut self, model_version_id: &str, check_key: &str) -> Result<Option<AlertRecord>>;
    /// Inserts an alert; `concurrent_modification` if the check already has an active one.
    fn insert_alert(&mut self, a: &AlertRecord) -> Result<()>;
    /// Writes an alert's state, times and acknowledgement.
    fn update_alert(&mut self, a: &AlertRecord) -> Result<()>;
    /// An alert by id; `lock` serialises concurrent acknowledgements.
    fn get_alert(&mut self, id: &str, lock: bool) -> Result<Option<AlertRecord>>;
    /// Alerts, newest first, optionally of one version and only active ones.
    fn list_alerts(&mut self, model_version_id: Option<&str>, active_only: bool) -> Result<Vec<AlertRecord>>;
    /// Queues a notification (delivered later; detection never waits for delivery).
    fn insert_notification(&mut self, id: &str, alert_id: &str, at: Timestamp, payload: &str) -> Result<()>;
    /// Undelivered notifications with fewer than `max_attempts` attempts, oldest first, with
    /// the model version of their alert: (id, model_version_id, payload, attempts).
    fn pending_notifications(&mut self, max_attempts: i64, limit: i64) -> Result<Vec<(String, String, String, i64)>>;
    /// Records a delivery attempt.
    fn record_delivery(&mut self, id: &str, delivered_at: Option<Timestamp>) -> Result<()>;

    // ----- tokens -----
    /// Inserts a token with the SHA-256 of its secret.
    fn insert_token(&mut self, t: &ApiToken, hash: &str) -> Result<()>;
    /// The token whose secret has this hash.
    fn token_by_hash(&mut self, hash: &str) -> Result<Option<ApiToken>>;
    /// A token by id.
    fn get_token(&mut self, id: &str) -> Result<Option<ApiToken>>;
    /// Tokens of one user (or all), newest first.
    fn list_tokens(&mut self, user: Option<&UserId>) -> Result<Vec<ApiToken>>;
    /// Marks a token revoked.
    fn revoke_token(&mut self, id: &str, at: Timestamp) -> Result<()>;

    // ----- experiment tracking -----
    /// Inserts an experiment and returns its new id (`ExperimentExists` on a taken name).
    fn insert_experiment(&mut self, e: &Experiment) -> Result<i64>;
    /// Sets an experiment's artifact location.
    fn set_experiment_artifact_location(&mut self, id: i64, location: &str) -> Result<()>;
    /// Sets (inserts or replaces) an experiment tag.
    fn set_experiment_tag(&mut self, id: i64, key: &str, value: &str) -> Result<()>;
    /// Soft-deletes or restores an experiment.
    fn set_experiment_lifecycle(&mut self, id: i64, lifecycle: Lifecycle, at_ms: i64) -> Result<()>;
    /// An experiment with its tags.
    fn get_experiment(&mut self, id: i64) -> Result<Option<Experiment>>;
    /// An experiment by name.
    fn get_experiment_by_name(&mut self, name: &str) -> Result<Option<Experiment>>;
    /// Experiments by id.
    fn list_experiments(&mut self, view: ViewType, limit: u32, offset: u64) -> Result<Vec<Experiment>>;
    /// Inserts a run.
    fn insert_run(&mut self, r: &RunInfo) -> Result<()>;
    /// A run's attributes (locked for update when `lock`).
    fn get_run(&mut self, run_id: &str, lock: bool) -> Result<Option<RunInfo>>;
    /// Writes a run's attributes.
    fn update_run(&mut self, r: &RunInfo) -> Result<()>;
    /// One param's value.
    fn get_param(&mut self, run_id: &str, key: &str) -> Result<Option<String>>;
    /// Inserts new params (the caller checked they are new).
    fn insert_params(&mut self, run_id: &str, params: &[(String, String)]) -> Result<()>;
    /// Inserts or replaces tags.
    fn upsert_tags(&mut self, run_id: &str, tags: &[(String, String)]) -> Result<()>;
    /// Deletes a tag; whether it existed.
    fn delete_tag(&mut self, run_id: &str, key: &str) -> Result<bool>;
    /// Appends metric observations and keeps the latest value per key.
    fn insert_metrics(&mut self, run_id: &str, metrics: &[Metric]) -> Result<()>;
    /// A run's params by key.
    fn run_params(&mut self, run_id: &str) -> Result<Vec<(String, String)>>;
    /// A run's tags by key.
    fn run_tags(&mut self, run_id: &str) -> Result<Vec<(String, String)>>;
    /// A run's latest metric values by key.
    fn run_latest_metrics(&mut self, run_id: &str) -> Result<Vec<Metric>>;
    /// Params, latest metrics and tags of several runs.
    fn runs_data(&mut self, run_ids: &[String]) -> Result<RunsData>;
    /// One metric's history in logging order.
    fn metric_history(&mut self, run_id: &str, key: &str, limit: u32, offset: u64) -> Result<Vec<MetricPoint>>;
    /// Runs matching a query (filter, view, order, page).
    fn search_runs(&mut self, q: &RunQuery) -> Result<Vec<RunInfo>>;

    // ----- registry catalogue (MLflow's model registry) -----
    /// The highest version number of a model (0 if none).
    fn max_version_number(&mut self, model_id: &str) -> Result<i64>;
    /// A version by model id and number.
    fn find_version_by_number(&mut self, model_id: &str, number: i64) -> Result<Option<ModelVersion>>;
    /// Inserts a version's catalogue metadata (its tags go in with [`Tx::set_version_tag`]).
    fn insert_version_meta(&mut self, version_id: &str, meta: &VersionMeta) -> Result<()>;
    /// Catalogue metadata with tags of some versions, by version id (versions without a row are absent).
    fn version_meta(&mut self, version_ids: &[String]) -> Result<HashMap<String, VersionMeta>>;
    /// Sets the last-change time, and the description when given.
    fn touch_version_meta(&mut self, version_id: &str, description: Option<&str>, updated_ms: i64) -> Result<()>;
    /// Sets (inserts or replaces) a version tag.
    fn set_version_tag(&mut self, version_id: &str, key: &str, value: &str) -> Result<()>;
    /// Deletes a version tag; whether it existed.
    fn delete_version_tag(&mut self, version_id: &str, key: &str) -> Result<bool>;
    /// Whether a model version was registered from any of these artifact locations.
    fn versions_registered_at(&mut self, artifact_uris: &[String]) -> Result<bool>;
    /// Stored aliases of a model: (alias, version id), by alias.
    fn model_aliases(&mut self, model_id: &str) -> Result<Vec<(String, String)>>;
    /// Points an alias at a version (insert or move).
    fn set_alias(&mut self, model_id: &str, alias: &str, version_id: &str, by: &str, at_ms: i64) -> Result<()>;
    /// Removes an alias; whether it existed.
    fn delete_alias(&mut self, model_id: &str, alias: &str) -> Result<bool>;
    /// Inserts a logged model with its tags and params.
    fn insert_logged_model(&mut self, m: &LoggedModel) -> Result<()>;
    /// A logged model with its tags and params.
    fn get_logged_model(&mut self, id: &str) -> Result<Option<LoggedModel>>;
    /// Moves a pending logged model to a final status; false if it was no longer pending.
    fn update_logged_model_status(&mut self, id: &str, status: LoggedModelStatus, at_ms: i64) -> Result<bool>;
    /// Sets (inserts or replaces) logged-model tags.
    fn set_logged_model_tags(&mut self, id: &str, tags: &[(String, String)], at_ms: i64) -> Result<()>;
    /// Logged models of some experiments (optionally of one name), newest first.
    fn list_logged_models(&mut self, experiment_ids: &[i64], name: Option<&str>, limit: usize, offset: usize) -> Result<Vec<LoggedModel>>;
    /// Links logged models to a run (an existing link keeps its step).
    fn insert_run_outputs(&mut self, run_id: &str, models: &[(String, i64)]) -> Result<()>;
    /// A run's outputs: (logged model id, step).
    fn run_outputs(&mut self, run_id: &str) -> Result<Vec<(String, i64)>>;
    /// Records a dataset (once per experiment, name and digest) and the run's use of it.
    fn insert_run_input(&mut self, experiment_id: i64, run_id: &str, input: &DatasetInput) -> Result<()>;
    /// A run's dataset inputs.
    fn run_inputs(&mut self, run_id: &str) -> Result<Vec<DatasetInput>>;

    // ----- validation -----
    /// Stores a validation report.
    fn insert_validation_report(&mut self, r: &ValidationRecord) -> Result<()>;
    /// A version's validation reports, newest first.
    fn validation_reports(&mut self, model_version_id: &str) -> Result<Vec<ValidationRecord>>;

    /// Buffers an audit event; it is chained and inserted at commit, as the transaction's
    /// last writes, so the chain head is locked only for the instant before commit.
    fn append_audit(&mut self, event: AuditEvent) -> Result<()>;
    /// The chain head: last sequence number and hash.
    fn audit_head(&mut self) -> Result<Option<(i64, String)>>;
    /// Streams events with `from <= seq <= to` in sequence order until `f` returns false.
    fn scan_audit(&mut self, from: i64, to: i64, f: &mut dyn FnMut(&AuditRow<'_>) -> bool) -> Result<()>;
    /// Events matching a query, in sequence order.
    fn query_audit(&mut self, q: &AuditQuery) -> Result<Vec<StoredEvent>>;
}
