//! [`SqlStore`]: the one implementation of `vigil_core::store::{Store, Tx}` over either
//! backend. Every query is written once; the backends differ only in the connection.

use crate::params;
use crate::schema;
use crate::sql::{Conn, DbError, Param, Row};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use vigil_core::catalog::{DatasetInput, LoggedModel, LoggedModelStatus, VersionMeta};
use std::sync::Mutex;
use vigil_core::approval::{ApprovalPolicy, Decision, Meaning, PromotionRequest, RequestStatus, Signature};
use vigil_core::audit::{AuditEvent, AuditRow, StoredEvent};
use vigil_core::auth::{Role, User, UserStatus};
use vigil_core::card::ModelCard;
use vigil_core::ids::{ModelName, Sha256Digest, Timestamp, UserId};
use vigil_core::model::{Lineage, Metrics, ModelType, ModelVersion, RegisteredModel, Stage, StageTransition, VersionContent};
use vigil_core::semver::Version;
use vigil_core::store::{AlertRecord, AuditQuery, BaselineRecord, BatchRecord, ReportRecord, RequestFilter, SegmentBody, Store, StoredBaseline, Tx, TxMode};
use vigil_core::session::ApiToken;
use vigil_core::store::RunsData;
use vigil_core::tracking::{Experiment, Lifecycle, Metric, MetricPoint, RunInfo, RunQuery, ViewType};
use vigil_core::{Error, ErrorCode, Result};

type Factory = Box<dyn Fn() -> std::result::Result<Box<dyn Conn>, DbError> + Send + Sync>;

/// Idle connections kept for reuse.
const MAX_IDLE: usize = 16;

/// A store over SQLite or PostgreSQL connections, with a small connection pool.
pub struct SqlStore {
    backend: &'static str,
    factory: Factory,
    idle: Mutex<Vec<Box<dyn Conn>>>,
    /// Connections open now (idle or in use), for the server's metrics.
    live: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// SQLite has one writer at a time. Writers of this process queue here instead of in
    /// SQLite's busy handler, which polls with sleeps of up to 100 ms under contention.
    /// (Other processes still meet SQLite's own lock; correctness never depends on this.)
    write_gate: Mutex<()>,
    /// Where sealed prediction-log segments are kept as bodies (the embedded store's data
    /// directory); `None`: bodies are kept in the database.
    segment_dir: Option<std::path::PathBuf>,
}

pub(crate) fn db(e: DbError) -> Error {
    match e {
        DbError::Unique => Error::new(ErrorCode::StorageFailure, "unexpected unique constraint violation"),
        DbError::Retry => Error::new(ErrorCode::ConcurrentModification, "a concurrent transaction changed the same records; retry"),
        DbError::Corrupt(m) => Error::new(ErrorCode::DatabaseCorrupt, format!("the database is corrupt, truncated or not a vigil database ({m})")),
        DbError::Other(m) => Error::storage(format!("database error: {m}")),
    }
}

/// Maps a unique violation to the caller's conflict code, anything else as usual.
fn on_unique(code: ErrorCode, msg: &str) -> impl Fn(DbError) -> Error + '_ {
    move |e| match e {
        DbError::Unique => Error::new(code, msg.to_owned()),
        other => db(other),
    }
}

/// Whether a segment id can name a file: only ASCII letters, digits, `-` and `_`, at most 128.
fn is_file_safe(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A segment's file name in the segment directory, in a directory per day it was stored
/// (`2026-12-01/seg_….vpl`: a busy gateway stores a few segments a second); `None` for an id
/// that cannot name a file.
fn segment_file_name(id: &str, at: Timestamp) -> Option<String> {
    let day = at.to_rfc3339();
    let day = day.get(..10).filter(|d| is_day(d))?;
    is_file_safe(id).then(|| format!("{day}/{id}.vpl"))
}

/// Whether a directory name is a day as [`segment_file_name`] writes it (`YYYY-MM-DD`).
fn is_day(d: &str) -> bool {
    d.len() == 10 && d.bytes().all(|b| b.is_ascii_digit() || b == b'-')
}

/// Whether a stored file name is one [`segment_file_name`] makes for this segment id.
fn is_segment_file_name(name: &str, id: &str) -> bool {
    let Some((day, file)) = name.split_once('/') else { return false };
    is_file_safe(id) && is_day(day) && file.strip_suffix(".vpl") == Some(id)
}

/// Puts a sealed segment file of `len` bytes into the segment directory as `name`: a hard
/// link (no byte is written again), or a copy where the two are on different file systems,
/// made under a temporary name, checked for its length, synced and renamed over any file of
/// that name (left by a transaction that did not commit); the directory is synced (and the
/// directories above it when the day's is new). Returns the kept path.
fn keep_segment_file(dir: &std::path::Path, name: &str, from: &std::path::Path, len: u64) -> std::io::Result<std::path::PathBuf> {
    let to = dir.join(name);
    let dir = to.parent().unwrap_or(dir);
    if !dir.is_dir() {
        std::fs::create_dir_all(dir)?;
        // The new directories' entries, up to the data directory.
        for up in dir.ancestors().skip(1).take(2) {
            std::fs::File::open(up)?.sync_all()?;
        }
    }
    let tmp = to.with_extension("vpl.tmp");
    let _ = std::fs::remove_file(&tmp);
    if std::fs::hard_link(from, &tmp).is_err() {
        std::fs::copy(from, &tmp)?;
    }
    let kept = std::fs::File::open(&tmp)?;
    if kept.metadata()?.len() != len {
        let _ = std::fs::remove_file(&tmp);
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "the sealed file is not the segment prepared"));
    }
    // (A sealed segment was synced when sealed: this finds nothing left to write.)
    kept.sync_data()?;
    std::fs::rename(&tmp, &to)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(to)
}

pub(crate) fn corrupt(what: &str) -> Error {
    Error::new(ErrorCode::IntegrityViolation, format!("stored {what} is not valid"))
}

impl SqlStore {
    /// Builds a store from a connection factory, applying pending migrations.
    pub(crate) fn new(backend: &'static str, factory: Factory) -> Result<Self> {
        let store = SqlStore { backend, factory, idle: Mutex::new(Vec::new()), live: Default::default(), write_gate: Mutex::new(()), segment_dir: None };
        store.migrate()?;
        Ok(store)
    }

    /// Keeps sealed prediction-log segments as files in `dir` (created when the first one
    /// comes) instead of copying their bytes into the database: written once, not into the
    /// write-ahead log and again into the database file.
    pub(crate) fn with_segment_dir(mut self, dir: std::path::PathBuf) -> Self {
        self.segment_dir = Some(dir);
        self
    }

    fn checkout(&self) -> Result<Box<dyn Conn>> {
        if let Some(c) = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop() {
            return Ok(c);
        }
        let inner = (self.factory)().map_err(db)?;
        self.live.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(Box::new(Counted { inner, live: self.live.clone() }))
    }

    fn checkin(&self, c: Box<dyn Conn>) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(c);
        }
    }

    fn migrate(&self) -> Result<()> {
        let mut c = self.checkout()?;
        let pg = c.is_postgres();
        // Serialise concurrent first starts: SQLite by the write lock, PostgreSQL by an
        // advisory lock held until commit.
        c.batch(if pg { "BEGIN; SELECT pg_advisory_xact_lock(7731001)" } else { "BEGIN IMMEDIATE" }).map_err(db)?;
        let result = (|| -> Result<()> {
            if !pg {
                let tables = c
                    .query("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'", &[])
                    .map_err(db)?;
                let names: Vec<String> = tables.iter().map(|r| r.text(0)).collect();
                if !names.is_empty() && !names.iter().any(|n| n == "vigil_schema") {
                    return Err(Error::new(ErrorCode::DatabaseCorrupt, "the database file holds tables but is not a vigil database"));
                }
            }
            c.batch("CREATE TABLE IF NOT EXISTS vigil_schema (version BIGINT PRIMARY KEY, description TEXT NOT NULL, applied_at TEXT NOT NULL)")
                .map_err(db)?;
            let current = c.query("SELECT COALESCE(MAX(version), 0) FROM vigil_schema", &[]).map_err(db)?;
            let current = current.first().map(|r| r.int(0)).unwrap_or(0);
            let latest = schema::MIGRATIONS.last().map(|m| m.0).unwrap_or(0);
            if current > latest {
                return Err(Error::new(
                    ErrorCode::SchemaTooNew,
                    format!("the database has schema version {current}, newer than this vigil's {latest}; upgrade vigil"),
                ));
            }
            for (v, desc, sql) in schema::MIGRATIONS.iter().filter(|m| m.0 > current) {
                c.batch(&schema::render(sql, pg)).map_err(db)?;
                c.exec(
                    "INSERT INTO vigil_schema (version, description, applied_at) VALUES ($1, $2, $3)",
                    &params![*v, *desc, Timestamp::from_datetime(chrono::Utc::now()).to_rfc3339()],
                )
                .map_err(db)?;
            }
            Ok(())
        })();
        match result {
            Ok(()) => {
                c.batch("COMMIT").map_err(db)?;
                self.checkin(c);
                Ok(())
            }
            Err(e) => {
                let _ = c.batch("ROLLBACK");
                Err(e)
            }
        }
    }
}

/// A pooled connection that keeps the count of open connections right when it is dropped.
struct Counted {
    inner: Box<dyn Conn>,
    live: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.live.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Conn for Counted {
    fn exec(&mut self, sql: &str, params: &[Param]) -> std::result::Result<u64, DbError> {
        self.inner.exec(sql, params)
    }
    fn query(&mut self, sql: &str, params: &[Param]) -> std::result::Result<Vec<Row>, DbError> {
        self.inner.query(sql, params)
    }
    fn scan(&mut self, sql: &str, params: &[Param], f: &mut dyn FnMut(&dyn crate::sql::RowRef) -> bool) -> std::result::Result<(), DbError> {
        self.inner.scan(sql, params, f)
    }
    fn batch(&mut self, sql: &str) -> std::result::Result<(), DbError> {
        self.inner.batch(sql)
    }
    fn is_postgres(&self) -> bool {
        self.inner.is_postgres()
    }
}

impl Store for SqlStore {
    fn pool_stats(&self) -> (usize, usize) {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).len();
        let live = self.live.load(std::sync::atomic::Ordering::Relaxed);
        (idle, live.saturating_sub(idle))
    }

    fn begin(&self, mode: TxMode) -> Result<Box<dyn Tx + '_>> {
        let gate = if mode == TxMode::Write && self.backend == "sqlite" {
            // A second write transaction on a thread that holds one would wait for itself.
            if IN_WRITE.with(std::cell::Cell::get) {
                return Err(Error::storage("nested write transaction on one thread"));
            }
            let g = self.write_gate.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            IN_WRITE.with(|w| w.set(true));
            Some(WriteGate(g))
        } else {
            None
        };
        let mut c = self.checkout()?;
        let begin = match (c.is_postgres(), mode) {
            (true, TxMode::Write) => "BEGIN ISOLATION LEVEL READ COMMITTED",
            (true, TxMode::Read) => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
            (false, TxMode::Write) => "BEGIN IMMEDIATE",
            (false, TxMode::Read) => "BEGIN",
        };
        c.batch(begin).map_err(db)?;
        Ok(Box::new(SqlTx { store: self, conn: Some(c), audit: Vec::new(), mode, kept: Vec::new(), _gate: gate }))
    }

    fn backend(&self) -> &'static str {
        self.backend
    }

    fn keeps_segment_files(&self) -> bool {
        self.segment_dir.is_some()
    }

    fn optimize(&self) -> Result<()> {
        if self.backend != "sqlite" {
            return Ok(());
        }
        // Sampled statistics (at most 1,000 rows per index): milliseconds even on large stores.
        if IN_WRITE.with(std::cell::Cell::get) {
            return Err(Error::storage("optimize called inside a write transaction"));
        }
        let _gate = self.write_gate.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut c = self.checkout()?;
        let r = c.batch("PRAGMA analysis_limit = 1000; ANALYZE;").map_err(db);
        self.checkin(c);
        r
    }
}

struct SqlTx<'a> {
    store: &'a SqlStore,
    conn: Option<Box<dyn Conn>>,
    audit: Vec<AuditEvent>,
    mode: TxMode,
    /// Segment files this transaction put in the segment directory: removed unless it commits.
    kept: Vec<std::path::PathBuf>,
    /// Held until commit or rollback (declared last: released after the connection is back).
    _gate: Option<WriteGate<'a>>,
}

thread_local! {
    static IN_WRITE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The SQLite write gate, held by one transaction; marks its thread while held.
struct WriteGate<'a>(#[allow(dead_code)] std::sync::MutexGuard<'a, ()>);

impl Drop for WriteGate<'_> {
    fn drop(&mut self) {
        IN_WRITE.with(|w| w.set(false));
    }
}

impl Drop for SqlTx<'_> {
    fn drop(&mut self) {
        // Not committed: no row names these files (each was put there only after its row
        // was inserted, so none is a file an earlier transaction stored).
        for path in self.kept.drain(..) {
            let _ = std::fs::remove_file(path);
        }
        if let Some(mut c) = self.conn.take() {
            // Not committed: roll back. A connection that cannot roll back is discarded.
            if c.batch("ROLLBACK").is_ok() {
                self.store.checkin(c);
            }
        }
    }
}

const USER_COLS: &str = "id, printed_name, role, password_hash, status, failed_attempts, locked, created_at";
const MODEL_COLS: &str = "id, name, owner, description, tags, model_type, created_by, created_at";
const VERSION_SELECT: &str = "SELECT v.id, v.model_id, m.name, m.model_type, v.version, v.stage, v.artifact_uri, v.artifact_sha256, \
     v.metrics, v.lineage, v.card, v.content_hash, v.created_by, v.created_at, v.number FROM model_versions v JOIN models m ON m.id = v.model_id";
const REQUEST_COLS: &str = "id, model_version_id, model_ref, from_stage, to_stage, requester, justification, status, content_hash, \
     policy, created_at, expires_at, decided_at, status_reason, validation_report_id";
const SIGNATURE_COLS: &str = "id, request_id, model_version_id, signer_id, printed_name, role, meaning, decision, comment, \
     content_hash, signed_at, key_id, server_signature";
const ALERT_COLS: &str = "id, model_version_id, check_key, state, opened_at, updated_at, report_id, detail, acknowledged_by, acknowledged_at, resolved_at";
const AUDIT_COLS: &str = "seq, at, actor, action, outcome, entity_type, entity_id, model, version, details, prev_hash, hash";

pub(crate) fn ts(s: &str) -> Result<Timestamp> {
    Timestamp::parse(s).map_err(|_| corrupt("timestamp"))
}

fn opt_ts(s: Option<String>) -> Result<Option<Timestamp>> {
    s.map(|s| ts(&s)).transpose()
}

fn json(s: &str, what: &str) -> Result<Value> {
    serde_json::from_str(s).map_err(|_| corrupt(what))
}

fn digest(s: &str) -> Result<Sha256Digest> {
    Sha256Digest::parse(s).map_err(|_| corrupt("digest"))
}

fn user_from(r: &Row) -> Result<User> {
    Ok(User {
        id: UserId::parse(&r.text(0)).map_err(|_| corrupt("user id"))?,
        printed_name: r.text(1),
        role: Role::parse(&r.text(2)).map_err(|_| corrupt("role"))?,
        password_hash: r.text(3),
        status: UserStatus::parse(&r.text(4))?,
        failed_attempts: u32::try_from(r.int(5)).unwrap_or(u32::MAX),
        locked: r.int(6) != 0,
        created_at: ts(&r.text(7))?,
    })
}

fn model_from(r: &Row) -> Result<RegisteredModel> {
    let tags: BTreeMap<String, String> = serde_json::from_str(&r.text(4)).map_err(|_| corrupt("model tags"))?;
    Ok(RegisteredModel {
        id: r.text(0),
        name: ModelName::parse(&r.text(1)).map_err(|_| corrupt("model name"))?,
        owner: r.text(2),
        description: r.text(3),
        tags,
        model_type: ModelType::parse(&r.text(5)).map_err(|_| corrupt("model type"))?,
        created_by: UserId::parse(&r.text(6)).map_err(|_| corrupt("user id"))?,
        created_at: ts(&r.text(7))?,
    })
}

fn version_from(r: &Row) -> Result<ModelVersion> {
    Ok(ModelVersion {
        id: r.text(0),
        model_id: r.text(1),
        model_name: ModelName::parse(&r.text(2)).map_err(|_| corrupt("model name"))?,
        model_type: ModelType::parse(&r.text(3)).map_err(|_| corrupt("model type"))?,
        version: Version::parse(&r.text(4)).map_err(|_| corrupt("version"))?,
        number: r.int(14),
        stage: Stage::parse(&r.text(5)).map_err(|_| corrupt("stage"))?,
        content: VersionContent {
            artifact_uri: r.text(6),
            artifact_sha256: r.opt_text(7).map(|s| digest(&s)).transpose()?,
            metrics: Metrics::from_json(&json(&r.text(8), "metrics")?).map_err(|_| corrupt("metrics"))?,
            lineage: Lineage::from_json(&json(&r.text(9), "lineage")?).map_err(|_| corrupt("lineage"))?,
            card: ModelCard::from_json(&json(&r.text(10), "model card")?).map_err(|_| corrupt("model card"))?,
        },
        content_hash: digest(&r.text(11))?,
        created_by: UserId::parse(&r.text(12)).map_err(|_| corrupt("user id"))?,
        created_at: ts(&r.text(13))?,
    })
}

fn request_from(r: &Row) -> Result<PromotionRequest> {
    Ok(PromotionRequest {
        id: r.text(0),
        model_version_id: r.text(1),
        model_ref: r.text(2),
        from_stage: Stage::parse(&r.text(3)).map_err(|_| corrupt("stage"))?,
        to_stage: Stage::parse(&r.text(4)).map_err(|_| corrupt("stage"))?,
        requester: UserId::parse(&r.text(5)).map_err(|_| corrupt("user id"))?,
        justification: r.text(6),
        status: RequestStatus::parse(&r.text(7)).map_err(|_| corrupt("request status"))?,
        content_hash: digest(&r.text(8))?,
        policy: ApprovalPolicy::from_json(&json(&r.text(9), "policy")?).map_err(|_| corrupt("policy"))?,
        created_at: ts(&r.text(10))?,
        expires_at: opt_ts(r.opt_text(11))?,
        decided_at: opt_ts(r.opt_text(12))?,
        status_reason: r.opt_text(13),
        validation_report_id: r.opt_text(14),
    })
}

fn signature_from(r: &Row) -> Result<Signature> {
    Ok(Signature {
        id: r.text(0),
        request_id: r.text(1),
        model_version_id: r.text(2),
        signer_id: UserId::parse(&r.text(3)).map_err(|_| corrupt("user id"))?,
        printed_name: r.text(4),
        role: Role::parse(&r.text(5)).map_err(|_| corrupt("role"))?,
        meaning: Meaning::parse(&r.text(6)).map_err(|_| corrupt("meaning"))?,
        decision: Decision::parse(&r.text(7)).map_err(|_| corrupt("decision"))?,
        comment: r.text(8),
        content_hash: digest(&r.text(9))?,
        // A signature's time is kept exactly as stored: re-formatting would change the sealed bytes.
        signed_at: ts(&r.text(10))?,
        key_id: r.text(11),
        server_signature: r.text(12),
    })
}

fn alert_from(r: &Row) -> Result<AlertRecord> {
    Ok(AlertRecord {
        id: r.text(0),
        model_version_id: r.text(1),
        check_key: r.text(2),
        state: r.text(3),
        opened_at: ts(&r.text(4))?,
        updated_at: ts(&r.text(5))?,
        report_id: r.text(6),
        detail: r.text(7),
        acknowledged_by: r.opt_text(8),
        acknowledged_at: opt_ts(r.opt_text(9))?,
        resolved_at: opt_ts(r.opt_text(10))?,
    })
}

fn event_from(r: &Row) -> StoredEvent {
    StoredEvent {
        seq: r.int(0),
        at: r.text(1),
        actor: r.text(2),
        action: r.text(3),
        outcome: r.text(4),
        entity_type: r.text(5),
        entity_id: r.text(6),
        model: r.opt_text(7),
        version: r.opt_text(8),
        details: r.text(9),
        prev_hash: r.text(10),
        hash: r.text(11),
    }
}

impl SqlTx<'_> {
    fn c(&mut self) -> &mut dyn Conn {
        // The connection is only taken out by commit (which consumes the transaction) and drop.
        self.conn.as_deref_mut().expect("transaction connection present until commit or drop")
    }

    fn lock_suffix(&mut self, lock: bool) -> &'static str {
        if lock && self.c().is_postgres() { " FOR UPDATE" } else { "" }
    }

    fn rows(&mut self, sql: &str, p: &[Param]) -> Result<Vec<Row>> {
        self.c().query(sql, p).map_err(db)
    }

    fn write_check(&self) -> Result<()> {
        if self.mode == TxMode::Read {
            return Err(Error::storage("write attempted in a read transaction"));
        }
        Ok(())
    }

    fn flush_audit(&mut self) -> Result<()> {
        if self.audit.is_empty() {
            return Ok(());
        }
        let events = std::mem::take(&mut self.audit);
        let sfx = self.lock_suffix(true);
        let head = self.rows(&format!("SELECT seq, hash FROM audit_head WHERE id = 1{sfx}"), &[])?;
        let head = head.first().ok_or_else(|| Error::new(ErrorCode::IntegrityViolation, "the audit chain head row is missing"))?;
        let mut seq = head.int(0);
        let mut prev = [0u8; 32];
        let head_hash = head.text(1);
        if seq > 0 && hex::decode_to_slice(&head_hash, &mut prev).is_err() {
            return Err(Error::new(ErrorCode::IntegrityViolation, "the audit chain head hash is malformed"));
        }
        for e in &events {
            let (s, h) = StoredEvent::link(e, seq, &prev);
            self.c()
                .exec(
                    &format!("INSERT INTO audit_events ({AUDIT_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"),
                    &params![s.seq, s.at, s.actor, s.action, s.outcome, s.entity_type, s.entity_id, s.model, s.version, s.details, s.prev_hash, s.hash],
                )
                .map_err(|e| match e {
                    // Someone appended behind the head's back: refuse rather than fork the chain.
                    DbError::Unique => Error::new(ErrorCode::IntegrityViolation, "audit chain head is behind the audit table; run 'vigil audit verify'"),
                    other => db(other),
                })?;
            seq = s.seq;
            prev = h;
        }
        self.c()
            .exec("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1", &params![seq, hex::encode(prev)])
            .map_err(db)?;
        Ok(())
    }
}

impl Tx for SqlTx<'_> {
    fn commit(mut self: Box<Self>) -> Result<()> {
        self.flush_audit()?;
        let mut c = self.conn.take().ok_or_else(|| Error::storage("transaction already finished"))?;
        match c.batch("COMMIT") {
            Ok(()) => {
                self.kept.clear();
                self.store.checkin(c);
                Ok(())
            }
            Err(e) => {
                // A failed COMMIT may still have committed (SQLite recovers a transaction
                // whose commit record reached the log before the sync failed): its files stay.
                // If it did not, a segment shipped again puts its file in place anew.
                self.kept.clear();
                let _ = c.batch("ROLLBACK");
                Err(db(e))
            }
        }
    }

    fn insert_user(&mut self, u: &User) -> Result<()> {
        self.write_check()?;
        self.c()
            .exec(
                &format!("INSERT INTO users ({USER_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"),
                &params![u.id.as_str(), u.printed_name.as_str(), u.role.as_str(), u.password_hash.as_str(), u.status.as_str(), i64::from(u.failed_attempts), i64::from(u.locked), u.created_at.to_rfc3339()],
            )
            .map(|_| ())
            .map_err(on_unique(ErrorCode::UserExists, "that user id exists or existed; user ids are never reused"))
    }

    fn get_user(&mut self, id: &UserId, lock: bool) -> Result<Option<User>> {
        let sfx = self.lock_suffix(lock);
        self.rows(&format!("SELECT {USER_COLS} FROM users WHERE id = $1{sfx}"), &params![id.as_str()])?.first().map(user_from).transpose()
    }

    fn list_users(&mut self) -> Result<Vec<User>> {
        self.rows(&format!("SELECT {USER_COLS} FROM users ORDER BY id"), &[])?.iter().map(user_from).collect()
    }

    fn update_user(&mut self, u: &User) -> Result<()> {
        self.write_check()?;
        self.c()
            .exec(
                "UPDATE users SET printed_name = $2, role = $3, password_hash = $4, status = $5, failed_attempts = $6, locked = $7 WHERE id = $1",
                &params![u.id.as_str(), u.printed_name.as_str(), u.role.as_str(), u.password_hash.as_str(), u.status.as_str(), i64::from(u.failed_attempts), i64::from(u.locked)],
            )
            .map(|_| ())
            .map_err(db)
    }

    fn user_count(&mut self) -> Result<u64> {
        Ok(self.rows("SELECT COUNT(*) FROM users", &[])?.first().map(|r| r.int(0) as u64).unwrap_or(0))
    }

    fn get_setting(&mut self, key: &str) -> Result<Option<String>> {
        Ok(self.rows("SELECT value FROM vigil_settings WHERE key = $1", &params![key])?.first().map(|r| r.text(0)))
    }

    fn put_setting(&mut self, key: &str, value: &str) -> Result<()> {
        self.write_check()?;
        self.c()
            .exec(
                "INSERT INTO vigil_settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &params![key, value],
            )
            .map(|_| ())
            .map_err(db)
    }

    fn claim_setting(&mut self, key: &str, value: &str) -> Result<bool> {
        self.write_check()?;
        self.c()
            .exec("INSERT INTO vigil_settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING", &params![key, value])
            .map(|n| n == 1)
            .map_err(db)
    }

    fn insert_model(&mut self, m: &RegisteredModel) -> Result<()> {
        self.write_check()?;
        let tags = serde_json::to_string(&m.tags).map_err(|_| Error::storage("cannot encode tags"))?;
        self.c()
            .exec(
                &format!("INSERT INTO models ({MODEL_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"),
                &params![m.id.as_str(), m.name.as_str(), m.owner.as_str(), m.description.as_str(), tags, m.model_type.as_str(), m.created_by.as_str(), m.created_at.to_rfc3339()],
            )
            .map(|_| ())
            // Two first registrations of one name racing: the loser retries and finds the model.
            .map_err(|e| match e {
                DbError::Unique => Error::new(ErrorCode::ConcurrentModification, "model was created concurrently; retry"),
                other => db(other),
            })
    }

    fn get_model_by_name(&mut self, name: &ModelName, lock: bool) -> Result<Option<RegisteredModel>> {
        let sfx = self.lock_suffix(lock);
        self.rows(&format!("SELECT {MODEL_COLS} FROM models WHERE name = $1{sfx}"), &params![name.as_str()])?.first().map(model_from).transpose()
    }

    fn list_models(&mut self) -> Result<Vec<RegisteredModel>> {
        self.rows(&format!("SELECT {MODEL_COLS} FROM models ORDER BY name"), &[])?.iter().map(model_from).collect()
    }

    fn insert_version(&mut self, v: &ModelVersion) -> Result<()> {
        self.write_check()?;
        let c = &v.content;
        self.c()
            .exec(
                "INSERT INTO model_versions (id, model_id, version, version_key, stage, artifact_uri, artifact_sha256, metrics, lineage, card, \
                 training_data_hash, content_hash, created_by, created_at, number) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
                &params![
                    v.id.as_str(), v.model_id.as_str(), v.version.to_string(), v.version.precedence_key(), v.stage.as_str(),
                    c.artifact_uri.as_str(), c.artifact_sha256.map(|d| d.to_hex()),
                    vigil_core::canonical::encode(&c.metrics.to_json()), vigil_core::canonical::encode(&c.lineage.to_json()),
                    vigil_core::canonical::encode(&c.card.to_json()), c.lineage.training_data_hash.clone(),
                    v.content_hash.to_hex(), v.created_by.as_str(), v.created_at.to_rfc3339(), v.number
                ],
            )
            .map(|_| ())
            .map_err(on_unique(ErrorCode::DuplicateVersion, "that version already exists for this model"))
    }

    fn get_version(&mut self, id: &str) -> Result<Option<ModelVersion>> {
        self.rows(&format!("{VERSION_SELECT} WHERE v.id = $1"), &params![id])?.first().map(version_from).transpose()
    }

    fn find_version(&mut self, model_id: &str, key: &str) -> Result<Option<ModelVersion>> {
        self.rows(&format!("{VERSION_SELECT} WHERE v.model_id = $1 AND v.version_key = $2"), &params![model_id, key])?
            .first()
            .map(version_from)
            .transpose()
    }

    fn list_versions(&mut self, model_id: &str) -> Result<Vec<ModelVersion>> {
        self.rows(&format!("{VERSION_SELECT} WHERE v.model_id = $1 ORDER BY v.number"), &params![model_id])?
            .iter()
            .map(version_from)
            .collect()
    }

    fn versions_in_stage(&mut self, model_id: &str, stage: Stage) -> Result<Vec<ModelVersion>> {
        self.rows(&format!("{VERSION_SELECT} WHERE v.model_id = $1 AND v.stage = $2 ORDER BY v.number"), &params![model_id, stage.as_str()])?
            .iter()
            .map(version_from)
            .collect()
    }

    fn set_version_stage(&mut self, id: &str, stage: Stage) -> Result<()> {
        self.write_check()?;
        self.c()
            .exec("UPDATE model_versions SET stage = $2 WHERE id = $1", &params![id, stage.as_str()])
            .map(|_| ())
            .map_err(on_unique(ErrorCode::ConcurrentModification, "another version of this model entered production concurrently"))
    }

    fn update_version_content(&mut self, id: &str, c: &VersionContent, hash: &Sha256Digest) -> Result<()> {
        self.write_check()?;
        self.c()
            .exec(
                "UPDATE model_versions SET artifact_uri = $2, artifact_sha256 = $3, metrics = $4, lineage = $5, card = $6, \
                 training_data_hash = $7, content_hash = $8 WHERE id = $1",
                &params![
                    id, c.artifact_uri.as_str(), c.artifact_sha256.map(|d| d.to_hex()),
                    vigil_core::canonical::encode(&c.metrics.to_json()), vigil_core::canonical::encode(&c.lineage.to_json()),
                    vigil_core::canonical::encode(&c.card.to_json()), c.lineage.training_data_hash.clone(), hash.to_hex()
                ],
            )
            .map(|_| ())
            .map_err(db)
    }

    fn versions_by_data_hash(&mut self, hash: &str) -> Result<Vec<ModelVersion>> {
        self.rows(&format!("{VERSION_SELECT} WHERE v.training_data_hash = $1 ORDER BY m.name, v.created_at"), &params![hash])?
            .iter()
            .map(version_from)
            .collect()
    }

    fn insert_transition(&mut self, t: &StageTransition) -> Result<()> {
        self.write_check()?;
        self.c()
            .exec(
                "INSERT INTO stage_transitions (id, model_version_id, from_stage, to_stage, request_id, reason, actor, at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                &params![t.id.as_str(), t.model_version_id.as_str(), t.from_stage.map(|s| s.as_str()), t.to_stage.as_str(), t.request_id.clone(), t.reason.as_str(), t.actor.as_str(), t.at.to_rfc3339()],
            )
            .map(|_| ())
            .map_err(db)
    }

    fn list_transitions(&mut self, version_id: &str) -> Result<Vec<StageTransition>> {
        self.rows(
            "SELECT id, model_version_id, from_stage, to_stage, request_id, reason, actor, at FROM stage_transitions WHERE model_version_id = $1 ORDER BY at, id",
            &params![version_id],
        )?
        .iter()
        .map(|r| {
            Ok(StageTransition {
                id: r.text(0),
                model_version_id: r.text(1),
                from_stage: r.opt_text(2).map(|s| Stage::parse(&s)).transpose().map_err(|_| corrupt("stage"))?,
                to_stage: Stage::parse(&r.text(3)).map_err(|_| corrupt("stage"))?,
                request_id: r.opt_text(4),
                reason: r.text(5),
                actor: UserId::parse(&r.text(6)).map_err(|_| corrupt("user id"))?,
                at: ts(&r.text(7))?,
            })
        })
        .collect()
    }

    fn insert_request(&mut self, r: &PromotionRequest) -> Result<()> {
        self.write_check()?;
        let model_id = self
            .rows("SELECT model_id FROM model_versions WHERE id = $1", &params![r.model_version_id.as_str()])?
            .first()
            .map(|row| row.text(0))
            .ok_or_else(|| Error::new(ErrorCode::VersionNotFound, "model version not found"))?;
        self.c()
            .exec(
                &format!("INSERT INTO promotion_requests ({REQUEST_COLS}, model_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"),
                &params![
                    r.id.as_str(), r.model_version_id.as_str(), r.model_ref.as_str(), r.from_stage.as_str(), r.to_stage.as_str(),
                    r.requester.as_str(), r.justification.as_str(), r.status.as_str(), r.content_hash.to_hex(),
                    vigil_core::canonical::encode(&r.policy.to_json()), r.created_at.to_rfc3339(),
                    r.expires_at.map(|t| t.to_rfc3339()), r.decided_at.map(|t| t.to_rfc3339()), r.status_reason.clone(), r.validation_report_id.clone(), model_id
                ],
            )
            .map(|_| ())
            .map_err(on_unique(ErrorCode::RequestAlreadyPending, "this version already has a pending promotion request"))
    }

    fn get_request(&mut self, id: &str, lock: bool) -> Result<Option<PromotionRequest>> {
        let sfx = self.lock_suffix(lock);
        self.rows(&format!("SELECT {REQUEST_COLS} FROM promotion_requests WHERE id = $1{sfx}"), &params![id])?.first().map(request_from).transpose()
    }

    fn update_request_status(&mut self, r: &PromotionRequest) -> Result<()> {
        self.write_check()?;
        self.c()
            .exec(
                "UPDATE promotion_requests SET status = $2, decided_at = $3, status_reason = $4 WHERE id = $1",
                &params![r.id.as_str(), r.status.as_str(), r.decided_at.map(|t| t.to_rfc3339()), r.status_reason.clone()],
            )
            .map(|_| ())
            .map_err(db)
    }

    fn list_requests(&mut self, f: &RequestFilter) -> Result<Vec<PromotionRequest>> {
        let mut sql = format!("SELECT {REQUEST_COLS} FROM promotion_requests WHERE 1 = 1");
        let mut p: Vec<Param> = Vec::new();
        if let Some(s) = f.status {
            p.push(s.as_str().into());
            sql.push_str(&format!(" AND status = ${}", p.len()));
        }
        if let Some(m) = &f.model {
            p.push(m.as_str().into());
            sql.push_str(&format!(" AND model_id = (SELECT id FROM models WHERE name = ${})", p.len()));
        }
        sql.push_str(" ORDER BY created_at DESC, id DESC");
        if let Some(l) = f.limit {
            sql.push_str(&format!(" LIMIT {l}"));
        }
        self.rows(&sql, &p)?.iter().map(request_from).collect()
    }

    fn pending_requests_for_version(&mut self, version_id: &str) -> Result<Vec<PromotionRequest>> {
        self.rows(
            &format!("SELECT {REQUEST_COLS} FROM promotion_requests WHERE model_version_id = $1 AND status = 'pending'"),
            &params![version_id],
        )?
        .iter()
        .map(request_from)
        .collect()
    }

    fn insert_signature(&mut self, s: &Signature) -> Result<()> {
        self.write_check()?;
        self.c()
            .exec(
                &format!("INSERT INTO signatures ({SIGNATURE_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"),
                &params![
                    s.id.as_str(), s.request_id.as_str(), s.model_version_id.as_str(), s.signer_id.as_str(), s.printed_name.as_str(),
                    s.role.as_str(), s.meaning.as_str(), s.decision.as_str(), s.comment.as_str(), s.content_hash.to_hex(),
                    s.signed_at.to_rfc3339(), s.key_id.as_str(), s.server_signature.as_str()
                ],
            )
            .map(|_| ())
            .map_err(on_unique(ErrorCode::DuplicateSignature, "this signer already signed the request; one person counts once"))
    }

    fn list_signatures(&mut self, request_id: &str) -> Result<Vec<Signature>> {
        self.rows(&format!("SELECT {SIGNATURE_COLS} FROM signatures WHERE request_id = $1 ORDER BY signed_at, id"), &params![request_id])?
            .iter()
            .map(signature_from)
            .collect()
    }

    fn signatures_for_version(&mut self, version_id: &str) -> Result<Vec<Signature>> {
        self.rows(&format!("SELECT {SIGNATURE_COLS} FROM signatures WHERE model_version_id = $1 ORDER BY signed_at, id"), &params![version_id])?
            .iter()
            .map(signature_from)
            .collect()
    }

    fn all_signatures(&mut self) -> Result<Vec<Signature>> {
        self.rows(&format!("SELECT {SIGNATURE_COLS} FROM signatures ORDER BY signed_at, id"), &[])?.iter().map(signature_from).collect()
    }

    fn get_drift_config(&mut self, version_id: &str) -> Result<Option<String>> {
        Ok(self.rows("SELECT config FROM drift_configs WHERE model_version_id = $1", &params![version_id])?.first().map(|r| r.text(0)))
    }

    fn put_drift_config(&mut self, version_id: &str, config: &str, by: &str, at: Timestamp) -> Result<()> {
        self.write_check()?;
        self.c()
            .exec(
                "INSERT INTO drift_configs (model_version_id, config, updated_by, updated_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (model_version_id) DO UPDATE SET config = excluded.config, updated_by = excluded.updated_by, updated_at = excluded.updated_at",
                &params![version_id, config, by, at.to_rfc3339()],
            )
            .map(|_| ())
            .map_err(db)
    }

    fn max_baseline_version(&mut self, version_id: &str) -> Result<i64> {
        Ok(self.rows("SELECT COALESCE(MAX(baseline_version), 0) FROM drift_baselines WHERE model_version_id = $1", &params![version_id])?.first().map(|r| r.int(0)).unwrap_or(0))
    }

    fn insert_baseline(&mut self, b: &BaselineRecord) -> Result<()> {
        self.write_check()?;
        self.c()
            .exec(
                "INSERT INTO drift_baselines (id, model_version_id, baseline_version, rows_profiled, created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
                &params![b.id.as_str(), b.model_version_id.as_str(), b.baseline_version, b.rows, b.created_by.as_str(), b.created_at.to_rfc3339()],
            )
            .map(|_| ())
            .map_err(|e| match e {
                DbError::Unique => Error::new(ErrorCode::ConcurrentModification, "a baseline was set concurrently; retry"),
                other => db(other),
            })
    }

    fn insert_profile(&mut self, baseline_id: &str, feature: &str, payload: &[u8]) -> Result<()> {
        self.write_check()?;
        self.c()
            .exec("INSERT INTO drift_profiles (baseline_id, feature, payload) VALUES ($1, $2, $3)", &params![baseline_id, feature, payload.to_vec()])
            .map(|_| ())
            .map_err(db)
    }

    fn latest_baseline(&mut self, version_id: &str) -> Result<Option<StoredBaseline>> {
        let rows = self.rows(
            "SELECT id, model_version_id, baseline_version, rows_profiled, created_by, created_at FROM drift_baselines \
             WHERE model_version_id = $1 ORDER BY baseline_version DESC LIMIT 1",
            &params![version_id],
        )?;
        let Some(r) = rows.first() else { return Ok(None) };
        let b = BaselineRecord { id: r.text(0), model_version_id: r.text(1), baseline_version: r.int(2), rows: r.int(3), created_by: r.text(4), created_at: ts(&r.text(5))? };
        // Move the payloads out of the rows: a baseline's profiles can be hundreds of megabytes.
        let profiles = self
            .rows("SELECT feature, payload FROM drift_profiles WHERE baseline_id = $1 ORDER BY feature", &params![b.id.as_str()])?
            .into_iter()
            .map(|mut r| (r.text(0), r.take_bytes(1)))
            .collect();
        Ok(Some((b, profiles)))
    }

    fn max_batch_seq(&mut self, version_id: &str) -> Result<i64> {
        Ok(self.rows("SELECT COALESCE(MAX(batch_seq), 0) FROM drift_batches WHERE model_version_id = $1", &params![version_id])?.first().map(|r| r.int(0)).unwrap_or(0))
    }

    fn insert_batch(&mut self, b: &BatchRecord) -> Result<()> {
        self.write_check()?;
        self.c()
            .exec(
                "INSERT INTO drift_batches (id, model_version_id, batch_seq, rows_in_batch, received_at, created_by, payload) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &params![b.id.as_str(), b.model_version_id.as_str(), b.batch_seq, b.rows, b.received_at.to_rfc3339(), b.created_by.as_str(), b.payload.clone()],
            )
            .map(|_| ())
            .map_err(|e| match e {
                DbError::Unique => Error::new(ErrorCode::ConcurrentModification, "a batch was added concurrently; retry"),
                other => db(other),
            })
    }

    fn recent_batches(&mut self, version_id: &str, since: Option<Timestamp>, max_rows: Option<i64>) -> Result<Vec<BatchRecord>> {
        let since = since.map(|t| t.to_rfc3339()).unwrap_or_default();
        let meta = self.rows(
            "SELECT id, batch_seq, rows_in_batch FROM drift_batches WHERE model_version_id = $1 AND received_at >= $2 ORDER BY batch_seq DESC",
            &params![version_id, since],
        )?;
        let mut out = Vec::new();
        let mut total = 0i64;
        for m in meta {
            if max_rows.is_some_and(|max| total >= max) {
                break;
            }
            total += m.int(2);
            let r = self.rows(
                "SELECT id, model_version_id, batch_seq, rows_in_batch, received_at, created_by, payload FROM drift_batches WHERE id = $1",
                &params![m.text(0)],
            )?;
            if let Some(mut r) = r.into_iter().next() {
                out.push(BatchRecord {
                    id: r.text(0),
                    model_version_id: r.text(1),
                    batch_seq: r.int(2),
                    rows: r.int(3),
                    received_at: ts(&r.text(4))?,
                    created_by: r.text(5),
                    payload: r.take_bytes(6),
                });
            }
        }
        Ok(out)
    }

    fn upsert_labels(&mut self, version_id: &str, labels: &[(String, String)], at: Timestamp) -> Result<()> {
        self.write_check()?;
        let at = at.to_rfc3339();
        for (id, label) in labels {
            self.c()
                .exec(
                    "INSERT INTO drift_labels (model_version_id, prediction_id, label, received_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (model_version_id, prediction_id) DO UPDATE SET label = excluded.label, received_at = excluded.received_at",
                    &params![version_id, id.as_str(), label.as_str(), at.as_str()],
                )
                .map_err(db)?;
        }
        Ok(())
    }

    fn labels(&mut self, version_id: &str) -> Result<std::collections::HashMap<String, String>> {
        Ok(self.rows("SELECT prediction_id, label FROM drift_labels WHERE model_version_id = $1", &params![version_id])?.iter().map(|r| (r.text(0), r.text(1))).collect())
    }

    fn baseline_kinds(&mut self, version_id: &str) -> Result<Option<Vec<(String, bool)>>> {
        let rows = self.rows(
            "SELECT id FROM drift_baselines WHERE model_version_id = $1 ORDER BY baseline_version DESC LIMIT 1",
            &params![version_id],
        )?;
        let Some(b) = rows.first().map(|r| r.text(0)) else { return Ok(None) };
        // The profile's kind is its fifth byte (`VPF1` then `n` or `c`): read that byte only.
        let kinds = self.rows("SELECT feature, substr(payload, 5, 1) FROM drift_profiles WHERE baseline_id = $1 ORDER BY feature", &params![b.as_str()])?;
        Ok(Some(kinds.into_iter().map(|mut r| (r.text(0), r.take_bytes(1) == b"n")).collect()))
    }

    fn insert_prediction_segment(&mut self, id: &str, instance: &str, records: i64, at: Timestamp, body: SegmentBody<'_>, covers: Option<(&str, &str)>) -> Result<bool> {
        self.write_check()?;
        let unreadable = |e: std::io::Error| Error::storage(format!("a sealed prediction log segment could not be read: {}", e.kind()));
        let unkept = |dir: &std::path::Path, e: std::io::Error| Error::storage(format!("a prediction log segment could not be kept in {}: {}", dir.display(), e.kind()));
        // (inline bytes, or the file to keep: its name in the segment directory, length, CRC-32)
        let (inline, file) = match body {
            SegmentBody::Inline(b) => (Some(b.to_vec()), None),
            SegmentBody::File { path, len, crc32 } => match (&self.store.segment_dir, segment_file_name(id, at)) {
                (Some(dir), Some(name)) => (None, Some((dir.clone(), name, path, len, crc32))),
                _ => (Some(std::fs::read(path).map_err(unreadable)?), None),
            },
        };
        let (name, len, crc) = file.as_ref().map_or((None, None, None), |(_, n, _, l, c)| (Some(n.clone()), Some(*l as i64), Some(i64::from(*c))));
        match self.c().exec(
            "INSERT INTO prediction_segments (id, instance, records, received_at, body, first_request_id, last_request_id, body_file, body_len, body_crc32) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            &params![id, instance, records, at.to_rfc3339(), inline, covers.map(|c| c.0), covers.map(|c| c.1), name, len, crc],
        ) {
            Ok(_) => {}
            Err(DbError::Unique) => {
                // Stored before. If its row names a file that is gone (a commit reported as
                // failed that the database recovered all the same), the file shipped again
                // (the same length and CRC-32) puts it back.
                if let Some((dir, _, path, len, crc)) = &file {
                    let rows = self.rows("SELECT body_file, body_len, body_crc32 FROM prediction_segments WHERE id = $1", &params![id])?;
                    if let Some(r) = rows.first()
                        && let Some(stored) = r.opt_text(0)
                        && is_segment_file_name(&stored, id)
                        && r.int(1) == *len as i64
                        && r.int(2) == i64::from(*crc)
                        && !dir.join(&stored).exists()
                    {
                        keep_segment_file(dir, &stored, path, *len).map_err(|e| unkept(dir, e))?;
                    }
                }
                return Ok(false);
            }
            Err(e) => return Err(db(e)),
        }
        // Only now (no earlier row names this file): put it in place, durably, before the commit.
        if let Some((dir, name, path, len, _)) = file {
            let kept = keep_segment_file(&dir, &name, path, len).map_err(|e| unkept(&dir, e))?;
            self.kept.push(kept);
        }
        Ok(true)
    }

    fn insert_prediction_index(&mut self, segment_id: &str, entries: &[vigil_core::store::IndexEntry<'_>]) -> Result<()> {
        self.write_check()?;
        // Multi-row inserts in power-of-two chunks: few statements, and few distinct ones
        // for the prepared-statement cache.
        let mut rest = entries;
        while !rest.is_empty() {
            let n = [64usize, 32, 16, 8, 4, 2, 1].into_iter().find(|n| *n <= rest.len()).unwrap_or(1);
            let (chunk, tail) = rest.split_at(n);
            rest = tail;
            let mut sql = String::from("INSERT INTO prediction_index (request_id, role, model_version_id, segment_id, client_id) VALUES ");
            let mut params = Vec::with_capacity(n * 5);
            for (i, e) in chunk.iter().enumerate() {
                if i > 0 {
                    sql.push_str(", ");
                }
                let p = i * 5;
                sql.push_str(&format!("(${}, ${}, ${}, ${}, ${})", p + 1, p + 2, p + 3, p + 4, p + 5));
                params.extend(params![e.request_id, e.role, e.version_id, segment_id, e.client_id]);
            }
            self.c().exec(&sql, &params).map_err(|e| match e {
                DbError::Unique => Error::new(ErrorCode::InvalidManifest, "a prediction with this request id, role and version was logged before"),
                other => db(other),
            })?;
        }
        Ok(())
    }

    fn prediction_segment_ids_for(&mut self, id: &str, last_until: Option<&str>) -> Result<Vec<String>> {
        let rows = match last_until {
            None => self.rows(
                "SELECT segment_id FROM prediction_index WHERE request_id = $1 UNION SELECT segment_id FROM prediction_index WHERE client_id = $1 ORDER BY 1",
                &params![id],
            )?,
            // The covered ranges by their end, then by their start: a range scan of one index
            // that holds both (and the id), never the segments' rows.
            Some(until) => self.rows(
                "SELECT segment_id FROM prediction_index WHERE request_id = $1 UNION SELECT segment_id FROM prediction_index WHERE client_id = $1 \
                 UNION SELECT id FROM prediction_segments WHERE last_request_id >= $1 AND last_request_id <= $2 AND first_request_id <= $1 ORDER BY 1",
                &params![id, until],
            )?,
        };
        Ok(rows.into_iter().map(|r| r.text(0)).collect())
    }

    fn prediction_segment_body(&mut self, segment_id: &str) -> Result<Option<Vec<u8>>> {
        let rows = self.rows(
            "SELECT body, body_file, body_len, body_crc32 FROM prediction_segments WHERE id = $1 AND (body IS NOT NULL OR body_file IS NOT NULL)",
            &params![segment_id],
        )?;
        let Some(mut r) = rows.into_iter().next() else { return Ok(None) };
        let Some(name) = r.opt_text(1) else { return Ok(Some(r.take_bytes(0))) };
        let bad = |what: &str| Error::new(ErrorCode::IntegrityViolation, format!("stored prediction log segment {segment_id}: its file {what}"));
        let dir = self.store.segment_dir.as_ref().ok_or_else(|| bad("is kept in a data directory, and this store has none"))?;
        if !is_segment_file_name(&name, segment_id) {
            return Err(bad("has a name that is not its own"));
        }
        let bytes = std::fs::read(dir.join(&name)).map_err(|e| bad(if e.kind() == std::io::ErrorKind::NotFound { "is missing" } else { "cannot be read" }))?;
        if bytes.len() as i64 != r.int(2) || i64::from(crc32fast::hash(&bytes)) != r.int(3) {
            return Err(bad("differs from what was stored (length or CRC-32)"));
        }
        Ok(Some(bytes))
    }

    fn legacy_predictions_for_request(&mut self, id: &str) -> Result<Vec<vigil_core::predlog::StoredPrediction>> {
        let rows = self.rows(
            "SELECT segment_id, record FROM predictions WHERE request_id = $1 UNION ALL SELECT segment_id, record FROM predictions WHERE client_id = $1 AND request_id <> $1",
            &params![id],
        )?;
        let mut out = Vec::new();
        for r in rows {
            let record = serde_json::from_str(&r.text(1)).map_err(|_| Error::new(ErrorCode::DatabaseCorrupt, "a stored prediction record cannot be read"))?;
            out.push(vigil_core::predlog::StoredPrediction { segment_id: r.text(0), record });
        }
        out.sort_by(|a, b| (a.record.request_id.as_str(), a.record.role != "live").cmp(&(b.record.request_id.as_str(), b.record.role != "live")));
        Ok(out)
    }

    fn upsert_online_features(&mut self, feature_set: &str, cells: &[(String, String, Option<String>)], at: Timestamp) -> Result<()> {
        self.write_check()?;
        let at = at.to_rfc3339();
        for (entity, feature, value) in cells {
            self.c()
                .exec(
                    "INSERT INTO online_features (feature_set, entity_key, feature, value, written_at) VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (feature_set, entity_key, feature) DO UPDATE SET value = excluded.value, written_at = excluded.written_at",
                    &params![feature_set, entity.as_str(), feature.as_str(), value.clone(), at.as_str()],
                )
                .map_err(db)?;
        }
        Ok(())
    }

    fn online_features(&mut self, feature_set: &str, entity: &str) -> Result<Vec<(String, Option<String>, Timestamp)>> {
        let rows = self.rows("SELECT feature, value, written_at FROM online_features WHERE feature_set = $1 AND entity_key = $2", &params![feature_set, entity])?;
        rows.iter().map(|r| Ok((r.text(0), r.opt_text(1), ts(&r.text(2))?))).collect()
    }

    fn insert_drift_report(&mut self, r: &ReportRecord) -> Result<()> {
        self.write_check()?;
        self.c()
            .exec(
                "INSERT INTO drift_reports (id, model_version_id, baseline_id, status, report, created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &params![r.id.as_str(), r.model_version_id.as_str(), r.baseline_id.as_str(), r.status.as_str(), r.report.as_str(), r.created_by.as_str(), r.created_at.to_rfc3339()],
            )
            .map(|_| ())
            .map_err(db)
    }

    fn get_check_state(&mut self, version_id: &str, key: &str) -> Result<Option<(String, Option<Timestamp>)>> {
        let rows = self.rows("SELECT history, last_notified_at FROM drift_check_states WHERE model_version_id = $1 AND check_key = $2", &params![version_id, key])?;
        rows.first().map(|r| Ok((r.text(0), opt_ts(r.opt_text(1))?))).transpose()
    }

    fn put_check_state(&mut self, version_id: &str, key: &str, history: &str, last_notified: Option<Timestamp>) -> Result<()> {
        self.write_check()?;
        self.c()
            .exec(
                "INSERT INTO drift_check_states (model_version_id, check_key, history, last_notified_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (model_version_id, check_key) DO UPDATE SET history = excluded.history, last_notified_at = excluded.last_notified_at",
                &params![version_id, key, history, last_notified.map(|t| t.to_rfc3339())],
            )
            .map(|_| ())
            .map_err(db)
    }

    fn active_alert(&mut self, version_id: &str, key: &str) -> Result<Option<AlertRecord>> {
        self.rows(&format!("SELECT {ALERT_COLS} FROM drift_alerts WHERE model_version_id = $1 AND check_key = $2 AND state <> 'resolved'"), &params![version_id, key])?
            .first()
            .map(alert_from)
            .transpose()
    }

    fn insert_alert(&mut self, a: &AlertRecord) -> Result<()> {
        self.write_check()?;
        self.c()
            .exec(
                &format!("INSERT INTO drift_alerts ({ALERT_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"),
                &params![
                    a.id.as_str(), a.model_version_id.as_str(), a.check_key.as_str(), a.state.as_str(), a.opened_at.to_rfc3339(), a.updated_at.to_rfc3339(),
                    a.report_id.as_str(), a.detail.as_str(), a.acknowledged_by.clone(), a.acknowledged_at.map(|t| t.to_rfc3339()), a.resolved_at.map(|t| t.to_rfc3339())
                ],
            )
            .map(|_| ())
            .map_err(|e| match e {
                DbError::Unique => Error::new(ErrorCode::ConcurrentModification, "an alert for this check was opened concurrently; retry"),
                other => db(other),
            })
    }

    fn update_alert(&mut self, a: &AlertRecord) -> Result<()> {
        self.write_check()?;
        self.c()
            .exec(
                "UPDATE drift_alerts SET state = $2, updated_at = $3, report_id = $4, detail = $5, acknowledged_by = $6, acknowledged_at = $7, resolved_at = $8 WHERE id = $1",
                &params![
                    a.id.as_str(), a.state.as_str(), a.updated_at.to_rfc3339(), a.report_id.as_str(), a.detail.as_str(), a.acknowledged_by.clone(),
                    a.acknowledged_at.map(|t| t.to_rfc3339()), a.resolved_at.map(|t| t.to_rfc3339())
                ],
            )
            .map(|_| ())
            .map_err(db)
    }

    fn get_alert(&mut self, id: &str, lock: bool) -> Result<Option<AlertRecord>> {
        let sfx = self.lock_suffix(lock);
        self.rows(&format!("SELECT {ALERT_COLS} FROM drift_alerts WHERE id = $1{sfx}"), &params![id])?.first().map(alert_from).transpose()
    }

    fn list_alerts(&mut self, version_id: Option<&str>, active_only: bool) -> Result<Vec<AlertRecord>> {
        let mut sql = format!("SELECT {ALERT_COLS} FROM drift_alerts WHERE 1 = 1");
        let mut p: Vec<Param> = Vec::new();
        if let Some(v) = version_id {
            p.push(v.into());
            sql.push_str(" AND model_version_id = $1");
        }
        if active_only {
            sql.push_str(" AND state <> 'resolved'");
        }
        sql.push_str(" ORDER BY opened_at DESC, id DESC");
        self.rows(&sql, &p)?.iter().map(alert_from).collect()
    }

    fn insert_notification(&mut self, id: &str, alert_id: &str, at: Timestamp, payload: &str) -> Result<()> {
        self.write_check()?;
        self.c()
            .exec(
                "INSERT INTO drift_notifications (id, alert_id, created_at, payload, attempts, delivered_at) VALUES ($1, $2, $3, $4, 0, NULL)",
                &params![id, alert_id, at.to_rfc3339(), payload],
            )
            .map(|_| ())
            .map_err(db)
    }

    fn pending_notifications(&mut self, max_attempts: i64, limit: i64) -> Result<Vec<(String, String, String, i64)>> {
        Ok(self
            .rows(
                &format!(
                    "SELECT n.id, a.model_version_id, n.payload, n.attempts FROM drift_notifications n JOIN drift_alerts a ON a.id = n.alert_id \
                     WHERE n.delivered_at IS NULL AND n.attempts < $1 ORDER BY n.created_at, n.id LIMIT {}",
                    limit.max(0)
                ),
                &params![max_attempts],
            )?
            .iter()
            .map(|r| (r.text(0), r.text(1), r.text(2), r.int(3)))
            .collect())
    }

    fn record_delivery(&mut self, id: &str, delivered_at: Option<Timestamp>) -> Result<()> {
        self.write_check()?;
        self.c()
            .exec("UPDATE drift_notifications SET attempts = attempts + 1, delivered_at = $2 WHERE id = $1", &params![id, delivered_at.map(|t| t.to_rfc3339())])
            .map(|_| ())
            .map_err(db)
    }

    fn append_audit(&mut self, event: AuditEvent) -> Result<()> {
        self.write_check()?;
        self.audit.push(event);
        Ok(())
    }

    fn audit_head(&mut self) -> Result<Option<(i64, String)>> {
        Ok(self.rows("SELECT seq, hash FROM audit_head WHERE id = 1", &[])?.first().map(|r| (r.int(0), r.text(1))))
    }

    fn scan_audit(&mut self, from: i64, to: i64, f: &mut dyn FnMut(&AuditRow<'_>) -> bool) -> Result<()> {
        self.c()
            .scan(&format!("SELECT {AUDIT_COLS} FROM audit_events WHERE seq >= $1 AND seq <= $2 ORDER BY seq"), &params![from, to], &mut |r| {
                f(&AuditRow {
                    seq: r.int_at(0),
                    at: r.bytes_at(1),
                    actor: r.bytes_at(2),
                    action: r.bytes_at(3),
                    outcome: r.bytes_at(4),
                    entity_type: r.bytes_at(5),
                    entity_id: r.bytes_at(6),
                    model: r.opt_bytes_at(7),
                    version: r.opt_bytes_at(8),
                    details: r.bytes_at(9),
                    prev_hash: r.bytes_at(10),
                    hash: r.bytes_at(11),
                })
            })
            .map_err(db)
    }

    fn query_audit(&mut self, q: &AuditQuery) -> Result<Vec<StoredEvent>> {
        let mut sql = format!("SELECT {AUDIT_COLS} FROM audit_events WHERE 1 = 1");
        let mut p: Vec<Param> = Vec::new();
        let cond = |col: &str, op: &str, v: Param, p: &mut Vec<Param>, sql: &mut String| {
            p.push(v);
            sql.push_str(&format!(" AND {col} {op} ${}", p.len()));
        };
        if let Some(m) = &q.model {
            cond("model", "=", m.into(), &mut p, &mut sql);
        }
        if let Some(v) = &q.version {
            cond("version", "=", v.into(), &mut p, &mut sql);
        }
        if let Some(a) = &q.actor {
            cond("actor", "=", a.into(), &mut p, &mut sql);
        }
        if let Some(a) = &q.action {
            if let Some(prefix) = a.strip_suffix('.') {
                // Range on the index instead of LIKE, whose escaping differs between backends.
                cond("action", ">=", format!("{prefix}.").into(), &mut p, &mut sql);
                cond("action", "<", format!("{prefix}/").into(), &mut p, &mut sql);
            } else {
                cond("action", "=", a.into(), &mut p, &mut sql);
            }
        }
        if let Some(o) = &q.outcome {
            cond("outcome", "=", o.into(), &mut p, &mut sql);
        }
        if let Some(t) = q.since {
            cond("at", ">=", t.to_rfc3339().into(), &mut p, &mut sql);
        }
        if let Some(t) = q.until {
            cond("at", "<", t.to_rfc3339().into(), &mut p, &mut sql);
        }
        if let Some(s) = q.after_seq {
            cond("seq", ">", s.into(), &mut p, &mut sql);
        }
        sql.push_str(" ORDER BY seq");
        if let Some(l) = q.limit {
            sql.push_str(&format!(" LIMIT {l}"));
        }
        Ok(self.rows(&sql, &p)?.iter().map(event_from).collect())
    }

    fn insert_token(&mut self, t: &ApiToken, hash: &str) -> Result<()> {
        self.write_check()?;
        crate::tracking::insert_token(self.c(), t, hash)
    }

    fn token_by_hash(&mut self, hash: &str) -> Result<Option<ApiToken>> {
        crate::tracking::token_by_hash(self.c(), hash)
    }

    fn get_token(&mut self, id: &str) -> Result<Option<ApiToken>> {
        crate::tracking::get_token(self.c(), id)
    }

    fn list_tokens(&mut self, user: Option<&UserId>) -> Result<Vec<ApiToken>> {
        crate::tracking::list_tokens(self.c(), user)
    }

    fn revoke_token(&mut self, id: &str, at: Timestamp) -> Result<()> {
        self.write_check()?;
        crate::tracking::revoke_token(self.c(), id, at)
    }

    fn insert_experiment(&mut self, e: &Experiment) -> Result<i64> {
        self.write_check()?;
        crate::tracking::insert_experiment(self.c(), e)
    }

    fn set_experiment_artifact_location(&mut self, id: i64, location: &str) -> Result<()> {
        self.write_check()?;
        crate::tracking::set_experiment_artifact_location(self.c(), id, location)
    }

    fn set_experiment_tag(&mut self, id: i64, key: &str, value: &str) -> Result<()> {
        self.write_check()?;
        crate::tracking::set_experiment_tag(self.c(), id, key, value)
    }

    fn set_experiment_lifecycle(&mut self, id: i64, lifecycle: Lifecycle, at_ms: i64) -> Result<()> {
        self.write_check()?;
        crate::tracking::set_experiment_lifecycle(self.c(), id, lifecycle, at_ms)
    }

    fn get_experiment(&mut self, id: i64) -> Result<Option<Experiment>> {
        crate::tracking::get_experiment(self.c(), id)
    }

    fn get_experiment_by_name(&mut self, name: &str) -> Result<Option<Experiment>> {
        crate::tracking::get_experiment_by_name(self.c(), name)
    }

    fn list_experiments(&mut self, view: ViewType, limit: u32, offset: u64) -> Result<Vec<Experiment>> {
        crate::tracking::list_experiments(self.c(), view, limit, offset)
    }

    fn insert_run(&mut self, r: &RunInfo) -> Result<()> {
        self.write_check()?;
        crate::tracking::insert_run(self.c(), r)
    }

    fn get_run(&mut self, run_id: &str, lock: bool) -> Result<Option<RunInfo>> {
        crate::tracking::get_run(self.c(), run_id, lock)
    }

    fn update_run(&mut self, r: &RunInfo) -> Result<()> {
        self.write_check()?;
        crate::tracking::update_run(self.c(), r)
    }

    fn get_param(&mut self, run_id: &str, key: &str) -> Result<Option<String>> {
        crate::tracking::get_param(self.c(), run_id, key)
    }

    fn insert_params(&mut self, run_id: &str, params: &[(String, String)]) -> Result<()> {
        self.write_check()?;
        crate::tracking::insert_params(self.c(), run_id, params)
    }

    fn upsert_tags(&mut self, run_id: &str, tags: &[(String, String)]) -> Result<()> {
        self.write_check()?;
        crate::tracking::upsert_tags(self.c(), run_id, tags)
    }

    fn delete_tag(&mut self, run_id: &str, key: &str) -> Result<bool> {
        self.write_check()?;
        crate::tracking::delete_tag(self.c(), run_id, key)
    }

    fn insert_metrics(&mut self, run_id: &str, metrics: &[Metric]) -> Result<()> {
        self.write_check()?;
        crate::tracking::insert_metrics(self.c(), run_id, metrics)
    }

    fn run_params(&mut self, run_id: &str) -> Result<Vec<(String, String)>> {
        crate::tracking::run_params(self.c(), run_id)
    }

    fn run_tags(&mut self, run_id: &str) -> Result<Vec<(String, String)>> {
        crate::tracking::run_tags(self.c(), run_id)
    }

    fn run_latest_metrics(&mut self, run_id: &str) -> Result<Vec<Metric>> {
        crate::tracking::run_latest_metrics(self.c(), run_id)
    }

    fn runs_data(&mut self, run_ids: &[String]) -> Result<RunsData> {
        crate::tracking::runs_data(self.c(), run_ids)
    }

    fn metric_history(&mut self, run_id: &str, key: &str, limit: u32, offset: u64) -> Result<Vec<MetricPoint>> {
        crate::tracking::metric_history(self.c(), run_id, key, limit, offset)
    }

    fn search_runs(&mut self, q: &RunQuery) -> Result<Vec<RunInfo>> {
        crate::tracking::search_runs(self.c(), q)
    }

    fn max_version_number(&mut self, model_id: &str) -> Result<i64> {
        crate::catalog::max_version_number(self.c(), model_id)
    }

    fn find_version_by_number(&mut self, model_id: &str, number: i64) -> Result<Option<ModelVersion>> {
        self.rows(&format!("{VERSION_SELECT} WHERE v.model_id = $1 AND v.number = $2"), &params![model_id, number])?.first().map(version_from).transpose()
    }

    fn insert_version_meta(&mut self, version_id: &str, meta: &VersionMeta) -> Result<()> {
        self.write_check()?;
        crate::catalog::insert_version_meta(self.c(), version_id, meta)
    }

    fn version_meta(&mut self, version_ids: &[String]) -> Result<HashMap<String, VersionMeta>> {
        crate::catalog::version_meta(self.c(), version_ids)
    }

    fn touch_version_meta(&mut self, version_id: &str, description: Option<&str>, updated_ms: i64) -> Result<()> {
        self.write_check()?;
        crate::catalog::touch_version_meta(self.c(), version_id, description, updated_ms)
    }

    fn set_version_tag(&mut self, version_id: &str, key: &str, value: &str) -> Result<()> {
        self.write_check()?;
        crate::catalog::set_version_tag(self.c(), version_id, key, value)
    }

    fn delete_version_tag(&mut self, version_id: &str, key: &str) -> Result<bool> {
        self.write_check()?;
        crate::catalog::delete_version_tag(self.c(), version_id, key)
    }

    fn insert_validation_report(&mut self, r: &vigil_core::validate::ValidationRecord) -> Result<()> {
        self.write_check()?;
        crate::catalog::insert_validation_report(self.c(), r)
    }

    fn validation_reports(&mut self, model_version_id: &str) -> Result<Vec<vigil_core::validate::ValidationRecord>> {
        crate::catalog::validation_reports(self.c(), model_version_id)
    }

    fn versions_registered_at(&mut self, artifact_uris: &[String]) -> Result<bool> {
        crate::catalog::versions_registered_at(self.c(), artifact_uris)
    }

    fn model_aliases(&mut self, model_id: &str) -> Result<Vec<(String, String)>> {
        crate::catalog::model_aliases(self.c(), model_id)
    }

    fn set_alias(&mut self, model_id: &str, alias: &str, version_id: &str, by: &str, at_ms: i64) -> Result<()> {
        self.write_check()?;
        crate::catalog::set_alias(self.c(), model_id, alias, version_id, by, at_ms)
    }

    fn delete_alias(&mut self, model_id: &str, alias: &str) -> Result<bool> {
        self.write_check()?;
        crate::catalog::delete_alias(self.c(), model_id, alias)
    }

    fn insert_logged_model(&mut self, m: &LoggedModel) -> Result<()> {
        self.write_check()?;
        crate::catalog::insert_logged_model(self.c(), m)
    }

    fn get_logged_model(&mut self, id: &str) -> Result<Option<LoggedModel>> {
        crate::catalog::get_logged_model(self.c(), id)
    }

    fn update_logged_model_status(&mut self, id: &str, status: LoggedModelStatus, at_ms: i64) -> Result<bool> {
        self.write_check()?;
        crate::catalog::update_logged_model_status(self.c(), id, status, at_ms)
    }

    fn set_logged_model_tags(&mut self, id: &str, tags: &[(String, String)], at_ms: i64) -> Result<()> {
        self.write_check()?;
        crate::catalog::set_logged_model_tags(self.c(), id, tags, at_ms)
    }

    fn list_logged_models(&mut self, experiment_ids: &[i64], name: Option<&str>, limit: usize, offset: usize) -> Result<Vec<LoggedModel>> {
        crate::catalog::list_logged_models(self.c(), experiment_ids, name, limit, offset)
    }

    fn insert_run_outputs(&mut self, run_id: &str, models: &[(String, i64)]) -> Result<()> {
        self.write_check()?;
        crate::catalog::insert_run_outputs(self.c(), run_id, models)
    }

    fn run_outputs(&mut self, run_id: &str) -> Result<Vec<(String, i64)>> {
        crate::catalog::run_outputs(self.c(), run_id)
    }

    fn insert_run_input(&mut self, experiment_id: i64, run_id: &str, input: &DatasetInput) -> Result<()> {
        self.write_check()?;
        crate::catalog::insert_run_input(self.c(), experiment_id, run_id, input)
    }

    fn run_inputs(&mut self, run_id: &str) -> Result<Vec<DatasetInput>> {
        crate::catalog::run_inputs(self.c(), run_id)
    }
}
