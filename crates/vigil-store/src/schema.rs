//! Versioned migrations, applied automatically when a store opens.
//!
//! One list of migrations serves both databases. The only dialect differences are spelled
//! as tokens: `{SEQ_PK}` (SQLite's rowid alias makes the audit table's sequence its physical
//! order, which is what makes verification fast) and the append-only triggers.
//! Never edit a released migration: add a new one.

/// Number of migrations this build knows.
pub const MIGRATION_COUNT: usize = MIGRATIONS.len();

/// `(version, description, sql)`.
pub(crate) const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "registry, approvals, audit", V1), (2, "drift monitoring", V2), (3, "drift alerts", V3), (4, "api tokens, experiment tracking", V4),
    (5, "model registry catalogue: version numbers, aliases, logged models, dataset inputs", V5),
    (6, "validation reports", V6),
    (7, "validation evidence: report order, append-only reports, the report a promotion request rests on", V7),
    (8, "prediction log, online features", V8),
    (9, "prediction log segments stored whole (compressed), with a slim index per record", V9),
    (10, "prediction log segments indexed by the range of the time-ordered request ids they hold", V10),
    (11, "prediction log segment bodies kept as files beside the embedded database", V11),
];

/// A segment's body may be a file in the data directory (`predictions/NAME`) instead of
/// `body`: its name, length and CRC-32 (see `SqlStore`'s segment directory).
const V11: &str = r#"
ALTER TABLE prediction_segments ADD COLUMN body_file TEXT;
ALTER TABLE prediction_segments ADD COLUMN body_len BIGINT;
ALTER TABLE prediction_segments ADD COLUMN body_crc32 BIGINT;
"#;

const V10: &str = r#"
ALTER TABLE prediction_segments ADD COLUMN first_request_id TEXT;
ALTER TABLE prediction_segments ADD COLUMN last_request_id TEXT;
CREATE INDEX prediction_segments_by_request_range ON prediction_segments (last_request_id, first_request_id, id) WHERE last_request_id IS NOT NULL;
"#;

const V9: &str = r#"
ALTER TABLE prediction_segments ADD COLUMN body {BLOB};
CREATE TABLE prediction_index (
    request_id TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('live', 'shadow')),
    model_version_id TEXT NOT NULL REFERENCES model_versions(id),
    segment_id TEXT NOT NULL REFERENCES prediction_segments(id),
    client_id TEXT,
    PRIMARY KEY (request_id, role, model_version_id)
){WITHOUT_ROWID};
CREATE INDEX prediction_index_by_client_id ON prediction_index (client_id) WHERE client_id IS NOT NULL;
{PREDICTION_INDEX_APPEND_ONLY}
"#;

const SQLITE_PREDICTION_INDEX_APPEND_ONLY: &str = r#"
CREATE TRIGGER prediction_index_no_update BEFORE UPDATE ON prediction_index BEGIN SELECT RAISE(ABORT, 'the prediction index is append-only'); END;
CREATE TRIGGER prediction_index_no_delete BEFORE DELETE ON prediction_index BEGIN SELECT RAISE(ABORT, 'the prediction index is append-only'); END;
"#;

const PG_PREDICTION_INDEX_APPEND_ONLY: &str = r#"
CREATE TRIGGER prediction_index_append_only BEFORE UPDATE OR DELETE ON prediction_index FOR EACH ROW EXECUTE FUNCTION vigil_append_only();
CREATE TRIGGER prediction_index_no_truncate BEFORE TRUNCATE ON prediction_index FOR EACH STATEMENT EXECUTE FUNCTION vigil_append_only();
"#;

const V8: &str = r#"
CREATE TABLE prediction_segments (
    id TEXT PRIMARY KEY,
    instance TEXT NOT NULL,
    records BIGINT NOT NULL,
    received_at TEXT NOT NULL
);
CREATE TABLE predictions (
    request_id TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('live', 'shadow')),
    model_version_id TEXT NOT NULL REFERENCES model_versions(id),
    segment_id TEXT NOT NULL REFERENCES prediction_segments(id),
    client_id TEXT,
    endpoint TEXT NOT NULL,
    arm TEXT NOT NULL,
    artifact_digest TEXT NOT NULL,
    assignment TEXT NOT NULL,
    unit_hash TEXT,
    predicted_at TEXT NOT NULL,
    latency_us BIGINT NOT NULL,
    rows_in_request BIGINT NOT NULL,
    status TEXT NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (request_id, role, model_version_id)
);
CREATE INDEX predictions_by_version ON predictions (model_version_id, predicted_at);
CREATE INDEX predictions_by_client_id ON predictions (client_id) WHERE client_id IS NOT NULL;
CREATE TABLE online_features (
    feature_set TEXT NOT NULL,
    entity_key TEXT NOT NULL,
    feature TEXT NOT NULL,
    value TEXT,
    written_at TEXT NOT NULL,
    PRIMARY KEY (feature_set, entity_key, feature)
){WITHOUT_ROWID};
{PREDICTIONS_APPEND_ONLY}
"#;

const SQLITE_PREDICTIONS_APPEND_ONLY: &str = r#"
CREATE TRIGGER predictions_no_update BEFORE UPDATE ON predictions BEGIN SELECT RAISE(ABORT, 'predictions are append-only'); END;
CREATE TRIGGER predictions_no_delete BEFORE DELETE ON predictions BEGIN SELECT RAISE(ABORT, 'predictions are append-only'); END;
CREATE TRIGGER prediction_segments_no_update BEFORE UPDATE ON prediction_segments BEGIN SELECT RAISE(ABORT, 'prediction segments are append-only'); END;
CREATE TRIGGER prediction_segments_no_delete BEFORE DELETE ON prediction_segments BEGIN SELECT RAISE(ABORT, 'prediction segments are append-only'); END;
"#;

const PG_PREDICTIONS_APPEND_ONLY: &str = r#"
CREATE TRIGGER predictions_append_only BEFORE UPDATE OR DELETE ON predictions FOR EACH ROW EXECUTE FUNCTION vigil_append_only();
CREATE TRIGGER predictions_no_truncate BEFORE TRUNCATE ON predictions FOR EACH STATEMENT EXECUTE FUNCTION vigil_append_only();
CREATE TRIGGER prediction_segments_append_only BEFORE UPDATE OR DELETE ON prediction_segments FOR EACH ROW EXECUTE FUNCTION vigil_append_only();
CREATE TRIGGER prediction_segments_no_truncate BEFORE TRUNCATE ON prediction_segments FOR EACH STATEMENT EXECUTE FUNCTION vigil_append_only();
"#;

const V7: &str = r#"
ALTER TABLE validation_reports ADD COLUMN seq BIGINT;
UPDATE validation_reports SET seq = (
    SELECT COUNT(*) FROM validation_reports w
    WHERE w.model_version_id = validation_reports.model_version_id
      AND (w.created_at < validation_reports.created_at OR (w.created_at = validation_reports.created_at AND w.id <= validation_reports.id))
);
CREATE UNIQUE INDEX validation_reports_by_seq ON validation_reports (model_version_id, seq);
ALTER TABLE promotion_requests ADD COLUMN validation_report_id TEXT;
{REPORTS_APPEND_ONLY}
"#;

const SQLITE_REPORTS_APPEND_ONLY: &str = r#"
CREATE TRIGGER validation_reports_no_update BEFORE UPDATE ON validation_reports BEGIN SELECT RAISE(ABORT, 'validation reports are append-only'); END;
CREATE TRIGGER validation_reports_no_delete BEFORE DELETE ON validation_reports BEGIN SELECT RAISE(ABORT, 'validation reports are append-only'); END;
"#;

const PG_REPORTS_APPEND_ONLY: &str = r#"
CREATE TRIGGER validation_reports_append_only BEFORE UPDATE OR DELETE ON validation_reports FOR EACH ROW EXECUTE FUNCTION vigil_append_only();
CREATE TRIGGER validation_reports_no_truncate BEFORE TRUNCATE ON validation_reports FOR EACH STATEMENT EXECUTE FUNCTION vigil_append_only();
"#;

const V6: &str = r#"
CREATE TABLE validation_reports (
    id TEXT PRIMARY KEY,
    model_version_id TEXT NOT NULL REFERENCES model_versions(id),
    content_hash TEXT NOT NULL,
    passed BIGINT NOT NULL,
    report TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX validation_reports_by_version ON validation_reports (model_version_id, created_at);
"#;

const V5: &str = r#"
ALTER TABLE model_versions ADD COLUMN number BIGINT;
UPDATE model_versions SET number = (
    SELECT COUNT(*) FROM model_versions w
    WHERE w.model_id = model_versions.model_id
      AND (w.created_at < model_versions.created_at OR (w.created_at = model_versions.created_at AND w.id <= model_versions.id))
);
CREATE UNIQUE INDEX model_versions_by_number ON model_versions (model_id, number);
CREATE TABLE model_version_meta (
    model_version_id TEXT PRIMARY KEY REFERENCES model_versions(id),
    description TEXT NOT NULL,
    source TEXT NOT NULL,
    run_id TEXT,
    logged_model_id TEXT,
    updated_ms BIGINT NOT NULL
);
CREATE INDEX model_version_meta_by_run ON model_version_meta (run_id);
CREATE INDEX model_versions_by_artifact ON model_versions (artifact_uri);
CREATE TABLE model_version_tags (
    model_version_id TEXT NOT NULL REFERENCES model_versions(id),
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (model_version_id, key)
);
CREATE TABLE model_aliases (
    model_id TEXT NOT NULL REFERENCES models(id),
    alias TEXT NOT NULL,
    model_version_id TEXT NOT NULL REFERENCES model_versions(id),
    set_by TEXT NOT NULL,
    set_ms BIGINT NOT NULL,
    PRIMARY KEY (model_id, alias)
);
CREATE TABLE logged_models (
    id TEXT PRIMARY KEY,
    experiment_id BIGINT NOT NULL REFERENCES experiments(id),
    name TEXT NOT NULL,
    artifact_uri TEXT NOT NULL,
    status TEXT NOT NULL,
    source_run_id TEXT REFERENCES runs(id),
    model_type TEXT,
    created_by TEXT NOT NULL,
    creation_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL
);
CREATE INDEX logged_models_by_name ON logged_models (experiment_id, name);
CREATE TABLE logged_model_tags (
    model_id TEXT NOT NULL REFERENCES logged_models(id),
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (model_id, key)
);
CREATE TABLE logged_model_params (
    model_id TEXT NOT NULL REFERENCES logged_models(id),
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (model_id, key)
);
CREATE TABLE run_outputs (
    run_id TEXT NOT NULL REFERENCES runs(id),
    model_id TEXT NOT NULL REFERENCES logged_models(id),
    step BIGINT NOT NULL,
    PRIMARY KEY (run_id, model_id)
);
CREATE TABLE datasets (
    experiment_id BIGINT NOT NULL REFERENCES experiments(id),
    name TEXT NOT NULL,
    digest TEXT NOT NULL,
    source_type TEXT NOT NULL,
    source TEXT NOT NULL,
    schema_json TEXT,
    profile TEXT,
    PRIMARY KEY (experiment_id, name, digest)
);
CREATE TABLE run_inputs (
    run_id TEXT NOT NULL REFERENCES runs(id),
    name TEXT NOT NULL,
    digest TEXT NOT NULL,
    context TEXT,
    tags TEXT NOT NULL,
    PRIMARY KEY (run_id, name, digest)
);
CREATE INDEX run_inputs_by_dataset ON run_inputs (name, digest);
{PG_SEQUENCES}
"#;

const V4: &str = r#"
CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id),
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    expires_at TEXT,
    revoked_at TEXT
);
CREATE INDEX api_tokens_by_user ON api_tokens (user_id, created_at);
CREATE TABLE experiments (
    id BIGINT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    artifact_location TEXT NOT NULL,
    lifecycle_stage TEXT NOT NULL,
    creation_time BIGINT NOT NULL,
    last_update_time BIGINT NOT NULL
);
INSERT INTO experiments (id, name, artifact_location, lifecycle_stage, creation_time, last_update_time)
    VALUES (0, 'Default', 'mlflow-artifacts:/0', 'active', 0, 0);
CREATE TABLE experiment_tags (
    experiment_id BIGINT NOT NULL REFERENCES experiments(id),
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (experiment_id, key)
);
CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    experiment_id BIGINT NOT NULL REFERENCES experiments(id),
    name TEXT NOT NULL,
    user_id TEXT NOT NULL,
    status TEXT NOT NULL,
    start_time BIGINT NOT NULL,
    end_time BIGINT,
    artifact_uri TEXT NOT NULL,
    lifecycle_stage TEXT NOT NULL,
    metric_seq BIGINT NOT NULL,
    rk BIGINT NOT NULL UNIQUE
);
CREATE INDEX runs_by_experiment ON runs (experiment_id, start_time);
CREATE TABLE params (
    run_id TEXT NOT NULL REFERENCES runs(id),
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (run_id, key)
);
CREATE INDEX params_by_value ON params (key, substr(value, 1, 200));
CREATE TABLE tags (
    run_id TEXT NOT NULL REFERENCES runs(id),
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (run_id, key)
);
CREATE INDEX tags_by_value ON tags (key, substr(value, 1, 200));
CREATE TABLE metrics (
    rk BIGINT NOT NULL REFERENCES runs(rk),
    key TEXT NOT NULL,
    seq BIGINT NOT NULL,
    value_bits BIGINT NOT NULL,
    value_key BIGINT NOT NULL,
    is_nan BIGINT NOT NULL,
    timestamp_ms BIGINT NOT NULL,
    step BIGINT NOT NULL,
    PRIMARY KEY (rk, key, seq)
){WITHOUT_ROWID};
CREATE TABLE latest_metrics (
    rk BIGINT NOT NULL REFERENCES runs(rk),
    key TEXT NOT NULL,
    value_bits BIGINT NOT NULL,
    value_key BIGINT NOT NULL,
    is_nan BIGINT NOT NULL,
    timestamp_ms BIGINT NOT NULL,
    step BIGINT NOT NULL,
    PRIMARY KEY (rk, key)
){WITHOUT_ROWID};
CREATE INDEX latest_metrics_by_value ON latest_metrics (key, value_key, is_nan);
"#;

const V3: &str = r#"
CREATE TABLE drift_check_states (
    model_version_id TEXT NOT NULL REFERENCES model_versions(id),
    check_key TEXT NOT NULL,
    history TEXT NOT NULL,
    last_notified_at TEXT,
    PRIMARY KEY (model_version_id, check_key)
);
CREATE TABLE drift_alerts (
    id TEXT PRIMARY KEY,
    model_version_id TEXT NOT NULL REFERENCES model_versions(id),
    check_key TEXT NOT NULL,
    state TEXT NOT NULL,
    opened_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    report_id TEXT NOT NULL,
    detail TEXT NOT NULL,
    acknowledged_by TEXT,
    acknowledged_at TEXT,
    resolved_at TEXT
);
CREATE UNIQUE INDEX one_active_alert_per_check ON drift_alerts (model_version_id, check_key) WHERE state <> 'resolved';
CREATE TABLE drift_notifications (
    id TEXT PRIMARY KEY,
    alert_id TEXT NOT NULL REFERENCES drift_alerts(id),
    created_at TEXT NOT NULL,
    payload TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    delivered_at TEXT
);
"#;

const V2: &str = r#"
CREATE TABLE drift_configs (
    model_version_id TEXT PRIMARY KEY REFERENCES model_versions(id),
    config TEXT NOT NULL,
    updated_by TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE drift_baselines (
    id TEXT PRIMARY KEY,
    model_version_id TEXT NOT NULL REFERENCES model_versions(id),
    baseline_version BIGINT NOT NULL,
    rows_profiled BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (model_version_id, baseline_version)
);
CREATE TABLE drift_profiles (
    baseline_id TEXT NOT NULL REFERENCES drift_baselines(id),
    feature TEXT NOT NULL,
    payload {BLOB} NOT NULL,
    PRIMARY KEY (baseline_id, feature)
);
CREATE TABLE drift_batches (
    id TEXT PRIMARY KEY,
    model_version_id TEXT NOT NULL REFERENCES model_versions(id),
    batch_seq BIGINT NOT NULL,
    rows_in_batch BIGINT NOT NULL,
    received_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    payload {BLOB} NOT NULL,
    UNIQUE (model_version_id, batch_seq)
);
CREATE TABLE drift_labels (
    model_version_id TEXT NOT NULL REFERENCES model_versions(id),
    prediction_id TEXT NOT NULL,
    label TEXT NOT NULL,
    received_at TEXT NOT NULL,
    PRIMARY KEY (model_version_id, prediction_id)
);
CREATE TABLE drift_reports (
    id TEXT PRIMARY KEY,
    model_version_id TEXT NOT NULL REFERENCES model_versions(id),
    baseline_id TEXT NOT NULL REFERENCES drift_baselines(id),
    status TEXT NOT NULL,
    report TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX drift_reports_by_version ON drift_reports (model_version_id, created_at);
"#;

const V1: &str = r#"
CREATE TABLE vigil_settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE users (
    id TEXT PRIMARY KEY,
    printed_name TEXT NOT NULL,
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    status TEXT NOT NULL,
    failed_attempts BIGINT NOT NULL,
    locked BIGINT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE models (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    owner TEXT NOT NULL,
    description TEXT NOT NULL,
    tags TEXT NOT NULL,
    model_type TEXT NOT NULL,
    created_by TEXT NOT NULL REFERENCES users(id),
    created_at TEXT NOT NULL
);
CREATE TABLE model_versions (
    id TEXT PRIMARY KEY,
    model_id TEXT NOT NULL REFERENCES models(id),
    version TEXT NOT NULL,
    version_key TEXT NOT NULL,
    stage TEXT NOT NULL,
    artifact_uri TEXT NOT NULL,
    artifact_sha256 TEXT,
    metrics TEXT NOT NULL,
    lineage TEXT NOT NULL,
    card TEXT NOT NULL,
    training_data_hash TEXT,
    content_hash TEXT NOT NULL,
    created_by TEXT NOT NULL REFERENCES users(id),
    created_at TEXT NOT NULL,
    UNIQUE (model_id, version_key)
);
CREATE UNIQUE INDEX one_production_version_per_model ON model_versions (model_id) WHERE stage = 'production';
CREATE INDEX model_versions_by_data_hash ON model_versions (training_data_hash);
CREATE TABLE stage_transitions (
    id TEXT PRIMARY KEY,
    model_version_id TEXT NOT NULL REFERENCES model_versions(id),
    from_stage TEXT,
    to_stage TEXT NOT NULL,
    request_id TEXT,
    reason TEXT NOT NULL,
    actor TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE INDEX stage_transitions_by_version ON stage_transitions (model_version_id);
CREATE TABLE promotion_requests (
    id TEXT PRIMARY KEY,
    model_version_id TEXT NOT NULL REFERENCES model_versions(id),
    model_id TEXT NOT NULL REFERENCES models(id),
    model_ref TEXT NOT NULL,
    from_stage TEXT NOT NULL,
    to_stage TEXT NOT NULL,
    requester TEXT NOT NULL REFERENCES users(id),
    justification TEXT NOT NULL,
    status TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    policy TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT,
    decided_at TEXT,
    status_reason TEXT
);
CREATE UNIQUE INDEX one_pending_request_per_version ON promotion_requests (model_version_id) WHERE status = 'pending';
CREATE INDEX promotion_requests_by_model ON promotion_requests (model_id, created_at);
CREATE TABLE signatures (
    id TEXT PRIMARY KEY,
    request_id TEXT NOT NULL REFERENCES promotion_requests(id),
    model_version_id TEXT NOT NULL REFERENCES model_versions(id),
    signer_id TEXT NOT NULL REFERENCES users(id),
    printed_name TEXT NOT NULL,
    role TEXT NOT NULL,
    meaning TEXT NOT NULL,
    decision TEXT NOT NULL,
    comment TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    signed_at TEXT NOT NULL,
    key_id TEXT NOT NULL,
    server_signature TEXT NOT NULL,
    UNIQUE (request_id, signer_id)
);
CREATE INDEX signatures_by_version ON signatures (model_version_id);
CREATE TABLE audit_events (
    seq {SEQ_PK},
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    outcome TEXT NOT NULL,
    entity_type TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    model TEXT,
    version TEXT,
    details TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX audit_events_by_model ON audit_events (model, version);
CREATE INDEX audit_events_by_actor ON audit_events (actor);
CREATE INDEX audit_events_by_action ON audit_events (action);
CREATE INDEX audit_events_by_time ON audit_events (at);
CREATE TABLE audit_head (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '');
{APPEND_ONLY}
"#;

const SQLITE_APPEND_ONLY: &str = r#"
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;
CREATE TRIGGER signatures_no_update BEFORE UPDATE ON signatures BEGIN SELECT RAISE(ABORT, 'signatures are append-only'); END;
CREATE TRIGGER signatures_no_delete BEFORE DELETE ON signatures BEGIN SELECT RAISE(ABORT, 'signatures are append-only'); END;
"#;

const PG_APPEND_ONLY: &str = r#"
CREATE FUNCTION vigil_append_only() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN RAISE EXCEPTION '% rows are append-only', TG_TABLE_NAME; END
$fn$;
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events FOR EACH ROW EXECUTE FUNCTION vigil_append_only();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events FOR EACH STATEMENT EXECUTE FUNCTION vigil_append_only();
CREATE TRIGGER signatures_append_only BEFORE UPDATE OR DELETE ON signatures FOR EACH ROW EXECUTE FUNCTION vigil_append_only();
CREATE TRIGGER signatures_no_truncate BEFORE TRUNCATE ON signatures FOR EACH STATEMENT EXECUTE FUNCTION vigil_append_only();
"#;

const PG_SEQUENCES: &str = r#"
CREATE SEQUENCE experiments_id_seq;
SELECT setval('experiments_id_seq', (SELECT COALESCE(MAX(id), 0) + 1 FROM experiments), false);
CREATE SEQUENCE runs_rk_seq;
SELECT setval('runs_rk_seq', (SELECT COALESCE(MAX(rk), 0) + 1 FROM runs), false);
"#;

/// The migration text for one backend.
pub(crate) fn render(sql: &str, postgres: bool) -> String {
    let (seq_pk, append_only, blob) = if postgres {
        ("BIGINT PRIMARY KEY", PG_APPEND_ONLY, "BYTEA")
    } else {
        ("INTEGER PRIMARY KEY", SQLITE_APPEND_ONLY, "BLOB")
    };
    // SQLite: tables clustered on their primary key (one b-tree per insert instead of two).
    let without_rowid = if postgres { "" } else { " WITHOUT ROWID" };
    // PostgreSQL: experiment ids and run keys come from sequences, so that any number of
    // replicas can create them at once (SQLite has one writer; MAX + 1 is exact there).
    let sequences = if postgres { PG_SEQUENCES } else { "" };
    sql.replace("{SEQ_PK}", seq_pk)
        .replace("{APPEND_ONLY}", append_only)
        .replace("{BLOB}", blob)
        .replace("{WITHOUT_ROWID}", without_rowid)
        .replace("{PG_SEQUENCES}", sequences)
        .replace("{REPORTS_APPEND_ONLY}", if postgres { PG_REPORTS_APPEND_ONLY } else { SQLITE_REPORTS_APPEND_ONLY })
        .replace("{PREDICTIONS_APPEND_ONLY}", if postgres { PG_PREDICTIONS_APPEND_ONLY } else { SQLITE_PREDICTIONS_APPEND_ONLY })
        .replace("{PREDICTION_INDEX_APPEND_ONLY}", if postgres { PG_PREDICTION_INDEX_APPEND_ONLY } else { SQLITE_PREDICTION_INDEX_APPEND_ONLY })
}
