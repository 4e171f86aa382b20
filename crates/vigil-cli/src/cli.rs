//! Command-line grammar (clap). No behaviour here: see `commands.rs`.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Vigil: a governed model registry for regulated healthcare ML.
#[derive(Debug, Parser)]
#[command(name = "vigil", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Args)]
pub struct Global {
    /// Data directory of the embedded store (default: $XDG_DATA_HOME/vigil or ~/.local/share/vigil).
    #[arg(long, global = true, env = "VIGIL_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Use a PostgreSQL database instead of the embedded store (postgres://…).
    #[arg(long, global = true, env = "VIGIL_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Server signing-key file (default: DATA_DIR/keys/signing.key; required with --database-url).
    #[arg(long, global = true, env = "VIGIL_SIGNING_KEY_FILE")]
    pub signing_key: Option<PathBuf>,
    /// Machine-readable JSON output.
    #[arg(long, global = true)]
    pub json: bool,
    /// Acting user id.
    #[arg(long, global = true, env = "VIGIL_USER")]
    pub user: Option<String>,
    /// Read the acting user's password from the first line of standard input.
    #[arg(long, global = true)]
    pub password_stdin: bool,
    /// Run the command against a Vigil server (http[s]://HOST:PORT) instead of a local store.
    #[arg(long, global = true, env = "VIGIL_URL")]
    pub url: Option<String>,
    /// API token for --url (instead of --user and a password).
    #[arg(long, global = true, env = "VIGIL_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// PEM certificate(s) to trust for an https --url (a private CA).
    #[arg(long, global = true, env = "VIGIL_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the store and its first administrator.
    Init {
        /// Administrator user id.
        #[arg(long)]
        admin: String,
        /// Administrator's printed name (shown on every signature).
        #[arg(long)]
        name: String,
        /// Administrator's password (otherwise VIGIL_PASSWORD, --password-stdin or a prompt).
        #[arg(long, env = "VIGIL_NEW_PASSWORD", hide_env_values = true)]
        new_password: Option<String>,
    },
    /// Run the HTTP server: the native API under /api/v1 and the MLflow-compatible tracking
    /// API, so `MLFLOW_TRACKING_URI=http://ADDR` works with the stock mlflow client.
    Serve {
        /// Address to listen on (port 0 picks a free port; the chosen one is printed).
        #[arg(long, default_value = "127.0.0.1:8080", env = "VIGIL_ADDR")]
        addr: String,
        /// Artifact store: a directory (default DATA_DIR/artifacts; required with
        /// --database-url) or s3://bucket/prefix, configured by the AWS_* environment
        /// (AWS_ENDPOINT for S3-compatible stores, AWS_ALLOW_HTTP=true for plain HTTP).
        #[arg(long, env = "VIGIL_ARTIFACTS")]
        artifacts: Option<PathBuf>,
        /// On a new store, first load the demo data set (the `vigil demo` team, a model in
        /// Production with its two e-signatures, the audit trail). Without --data-dir the
        /// store is ./vigil-demo.
        #[arg(long)]
        demo: bool,
        /// Serve HTTPS with this PEM certificate chain (leaf first); needs --tls-key.
        #[arg(long, env = "VIGIL_TLS_CERT", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The PEM private key of --tls-cert.
        #[arg(long, env = "VIGIL_TLS_KEY", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Also run the inference gateway in this process, on this address (see `vigil gateway`).
        #[arg(long, env = "VIGIL_GATEWAY_ADDR")]
        gateway_addr: Option<String>,
        #[command(flatten)]
        spool: SpoolArgs,
    },
    /// Run the inference gateway alone: the Production version of every model, loaded from
    /// its verified ONNX artifact, behind the Open Inference Protocol (/v2/…) and MLflow's
    /// scoring protocol (/invocations). Several gateways can share one PostgreSQL database.
    Gateway {
        /// Address to listen on (port 0 picks a free port; the chosen one is printed).
        #[arg(long, default_value = "127.0.0.1:8081", env = "VIGIL_GATEWAY_ADDR")]
        addr: String,
        /// Artifact store: the directory of the store (default DATA_DIR/artifacts; required
        /// with --database-url) or s3://bucket/prefix, configured by the AWS_* environment as
        /// for `vigil serve`.
        #[arg(long, env = "VIGIL_ARTIFACTS")]
        artifacts: Option<PathBuf>,
        /// The model MLflow's /invocations scores (default: the only model served).
        #[arg(long)]
        default_model: Option<String>,
        /// How often the gateway follows the registry (promotions, rollbacks), in milliseconds.
        #[arg(long, default_value_t = 1000)]
        refresh_ms: u64,
        #[command(flatten)]
        spool: SpoolArgs,
    },
    /// Manage users.
    #[command(subcommand)]
    User(UserCmd),
    /// Register and inspect models.
    #[command(subcommand)]
    Model(ModelCmd),
    /// Promotion requests and their electronic signatures.
    #[command(subcommand)]
    Promote(PromoteCmd),
    /// Approval policies per target stage.
    #[command(subcommand)]
    Policy(PolicyCmd),
    /// Verify, query and export the audit trail.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// What the gateway serves for a model: A/B arms, a canary, shadows, the unit key
    /// (`vigil deploy NAME --canary 1.1.0=10 --unit-key header:x-patient-id --reason …`;
    /// `vigil deploy show NAME`, `vigil deploy history NAME`). ML leads only; audited.
    Deploy(DeployArgs),
    /// Validate NAME@VERSION on a holdout (metrics with bootstrap intervals, champion
    /// comparison, subgroup fairness, card/lineage/digest completeness); stores the report
    /// bound to the version's content hash. Exit code 1 when a gate fails.
    Validate {
        /// NAME@VERSION.
        reference: String,
        /// Holdout data (CSV or Parquet).
        #[arg(long)]
        data: PathBuf,
        /// Label column (1/0, true/false, yes/no).
        #[arg(long)]
        label: String,
        /// Score column (probabilities in [0, 1]).
        #[arg(long)]
        score: String,
        /// The Production version's scores on the same rows.
        #[arg(long)]
        champion_score: Option<String>,
        /// Sensitive attribute columns (comma-separated); their intersection is checked too.
        #[arg(long, value_delimiter = ',')]
        sensitive: Vec<String>,
        /// Decision threshold (score >= threshold is positive).
        #[arg(long, default_value_t = 0.5)]
        threshold: f64,
    },
    /// The model card of NAME@VERSION, generated from the registry: the card's fields with
    /// every HTI-1 attribute's status, and the numbers of the newest validation report bound
    /// to the current content hash.
    Card {
        /// NAME@VERSION.
        reference: String,
        /// md, html, json (Vigil's schema) or mct (Model Card Toolkit).
        #[arg(long, default_value = "md")]
        format: String,
        /// Write to this file instead of standard output.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Show a model version's provenance, or every version trained on a data hash.
    Lineage {
        /// NAME@VERSION.
        reference: Option<String>,
        /// List versions trained on this data hash instead.
        #[arg(long, conflicts_with = "reference")]
        data_hash: Option<String>,
    },
    /// Drift monitoring: baselines, production samples, labels, checks.
    #[command(subcommand)]
    Drift(DriftCmd),
    /// The gateway's embedded online feature store.
    #[command(subcommand)]
    Features(FeaturesCmd),
    /// Run the end-to-end demo: register, request, two approvals, production, verify.
    Demo,
}

#[derive(Debug, Args)]
pub struct DataArgs {
    /// CSV (with a header row) or Parquet file.
    #[arg(long)]
    pub data: PathBuf,
    /// Column holding the model's scores (prediction drift, performance).
    #[arg(long)]
    pub prediction_col: Option<String>,
    /// Column holding prediction ids (labels arriving later are matched on it).
    #[arg(long)]
    pub id_col: Option<String>,
    /// Column holding labels.
    #[arg(long)]
    pub label_col: Option<String>,
    /// JSON schema: {"numeric": [..], "categorical": [..], "ignore": [..]}.
    #[arg(long)]
    pub schema: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum DriftCmd {
    /// Profile training data as a new baseline for NAME@VERSION. Several `--data` files are
    /// partitions: each is profiled on its own and the profiles merged (exactly), so only one
    /// partition is in memory at a time.
    Baseline {
        /// NAME@VERSION.
        reference: String,
        #[command(flatten)]
        data: DataArgs,
        /// More partitions of the training data.
        #[arg(long = "and-data", value_name = "FILE")]
        more: Vec<PathBuf>,
    },
    /// Append production samples.
    Add {
        /// NAME@VERSION.
        reference: String,
        #[command(flatten)]
        data: DataArgs,
    },
    /// Record labels that arrived after the predictions.
    Labels {
        /// NAME@VERSION.
        reference: String,
        /// File with an id column and a label column.
        #[arg(long)]
        data: PathBuf,
        /// Prediction id column.
        #[arg(long)]
        id_col: String,
        /// Label column.
        #[arg(long)]
        label_col: String,
    },
    /// Check for drift: stored samples (default: since the newest baseline) or a given file.
    Check {
        /// NAME@VERSION.
        reference: String,
        /// Check this file instead of the stored samples (not stored as samples).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Column of scores in --data.
        #[arg(long)]
        prediction_col: Option<String>,
        /// Use the newest stored batches holding at least this many rows.
        #[arg(long, conflicts_with_all = ["since", "data"])]
        window_rows: Option<i64>,
        /// Use stored batches received at or after this RFC 3339 time.
        #[arg(long, conflicts_with = "data")]
        since: Option<String>,
        /// table, json or html.
        #[arg(long, default_value = "table")]
        format: String,
        /// Write the report to this file.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// List drift alerts (active ones unless --all).
    Alerts {
        /// Only this NAME@VERSION.
        reference: Option<String>,
        /// Include resolved alerts.
        #[arg(long)]
        all: bool,
    },
    /// Send queued alert notifications to the webhooks (retries earlier failures).
    Deliver {
        /// Seconds allowed per webhook request.
        #[arg(long, default_value_t = 5)]
        timeout: u64,
        /// Give up on a notification after this many attempts.
        #[arg(long, default_value_t = 5)]
        max_attempts: i64,
    },
    /// Acknowledge an open alert (stops reminders; it resolves when the data recovers).
    Ack {
        /// Alert id.
        alert_id: String,
        /// What was done about it.
        #[arg(long)]
        comment: String,
    },
    /// Show or set the drift configuration (JSON with the seed's DriftDetectorConfig fields).
    Config {
        /// NAME@VERSION.
        reference: String,
        /// JSON file with the new configuration.
        #[arg(long)]
        set: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCmd {
    /// Add a user (administrators only).
    Add {
        /// New user id (never reusable).
        id: String,
        /// Role: data_scientist, ml_lead, clinical_reviewer, compliance_officer, admin.
        #[arg(long)]
        role: String,
        /// Printed name.
        #[arg(long)]
        name: String,
        /// The new user's password (otherwise VIGIL_NEW_PASSWORD or a prompt).
        #[arg(long, env = "VIGIL_NEW_PASSWORD", hide_env_values = true)]
        new_password: Option<String>,
    },
    /// List users.
    List,
    /// Disable a user; their id stays reserved.
    Disable {
        /// User id.
        id: String,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// Unlock a user locked after failed authentications.
    Unlock {
        /// User id.
        id: String,
        /// Why (e.g. how identity was re-verified).
        #[arg(long)]
        reason: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ModelCmd {
    /// Register a model version (from flags, a manifest, or both; flags win).
    Register(Box<RegisterArgs>),
    /// Replace a Development/Staging version's signed content from a manifest.
    Update {
        /// NAME@VERSION.
        reference: String,
        /// TOML or JSON manifest with artifact, metrics, lineage, card.
        #[arg(long)]
        manifest: PathBuf,
        /// Why the content changes.
        #[arg(long)]
        reason: String,
    },
    /// List registered models.
    List,
    /// Show a model (NAME) or a version (NAME@VERSION).
    Show {
        /// NAME or NAME@VERSION.
        reference: String,
    },
}

#[derive(Debug, Args)]
pub struct RegisterArgs {
    /// Model name (or manifest field `name`).
    pub name: Option<String>,
    /// SemVer version.
    #[arg(long)]
    pub version: Option<String>,
    /// classification, regression, survival, ranking or other.
    #[arg(long = "type")]
    pub model_type: Option<String>,
    /// Artifact location.
    #[arg(long)]
    pub artifact_uri: Option<String>,
    /// Artifact SHA-256 (64 hex characters).
    #[arg(long)]
    pub artifact_sha256: Option<String>,
    /// A metric, KEY=VALUE; repeatable.
    #[arg(long = "metric", value_name = "KEY=VALUE")]
    pub metrics: Vec<String>,
    /// TOML or JSON manifest with metrics, lineage and card.
    #[arg(long)]
    pub manifest: Option<PathBuf>,
    /// Owner of a new registered model.
    #[arg(long)]
    pub owner: Option<String>,
    /// Description of a new registered model.
    #[arg(long)]
    pub description: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum PromoteCmd {
    /// Request promotion of NAME@VERSION.
    Request {
        /// NAME@VERSION.
        reference: String,
        /// Target stage: staging, production or archived.
        #[arg(long)]
        to: String,
        /// Why (required).
        #[arg(long)]
        justification: String,
    },
    /// Approve a request with your electronic signature (re-enter your password).
    Approve {
        /// Request id.
        request_id: String,
        /// Meaning of the signature: approval, review or responsibility.
        #[arg(long, default_value = "approval")]
        meaning: String,
        /// Comment.
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Reject a request with your electronic signature.
    Reject {
        /// Request id.
        request_id: String,
        /// Meaning of the signature.
        #[arg(long, default_value = "review")]
        meaning: String,
        /// Why (required).
        #[arg(long)]
        comment: String,
    },
    /// Withdraw your own pending request.
    Withdraw {
        /// Request id.
        request_id: String,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// List requests, newest first.
    List {
        /// Only this status.
        #[arg(long)]
        status: Option<String>,
        /// Only this model.
        #[arg(long)]
        model: Option<String>,
        /// At most this many.
        #[arg(long)]
        limit: Option<u32>,
    },
    /// Show a request with its signatures.
    Show {
        /// Request id.
        request_id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum DeploySub {
    /// The deployment and what each arm runs now.
    Show {
        /// Model name.
        model: String,
    },
    /// Every change: who, when, why, old and new arms.
    History {
        /// Model name.
        model: String,
    },
}

/// `vigil deploy`: change a deployment, or show it.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct DeployArgs {
    #[command(subcommand)]
    pub sub: Option<DeploySub>,
    /// Model name.
    pub model: Option<String>,
    /// Fixed A/B split: VERSION=PERCENT pairs (VERSION may be `production`), summing to 100.
    #[arg(long, value_delimiter = ',', conflicts_with = "canary")]
    pub ab: Vec<String>,
    /// A canary beside the Production version: VERSION=PERCENT, or PERCENT to ramp the
    /// current canary (raising it only moves units into it).
    #[arg(long)]
    pub canary: Option<String>,
    /// Shadow arms: VERSION or VERSION=PERCENT (the share of requests copied; default 100).
    #[arg(long, value_delimiter = ',')]
    pub shadow: Vec<String>,
    /// Remove the shadow arms.
    #[arg(long, conflicts_with = "shadow")]
    pub no_shadow: bool,
    /// Back to the Production version alone.
    #[arg(long, conflicts_with_all = ["ab", "canary", "shadow"])]
    pub reset: bool,
    /// Where the unit key comes from: header:NAME or field:NAME (`none` to assign at random).
    #[arg(long)]
    pub unit_key: Option<String>,
    /// When the prediction spool is full: reject (503) or drop (answer, count the loss).
    #[arg(long)]
    pub full_spool: Option<String>,
    /// Online features for requests that carry an entity id instead of inputs, as JSON:
    /// `{"entity": "patient_id", "source": "embedded", "feature_set": "vitals"}` or
    /// `{"entity": "patient_id", "source": "feast", "url": "http://127.0.0.1:6566",
    /// "feature_view": "patient_vitals"}` (optional: max_age_seconds, optional, timeout_ms);
    /// `none` removes the lookup.
    #[arg(long)]
    pub features: Option<String>,
    /// Why (recorded in the audit trail).
    #[arg(long)]
    pub reason: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCmd {
    /// Show the approval policies.
    Show,
    /// Validation policies: per model, or the default of a model type.
    #[command(subcommand)]
    Validation(ValidationPolicyCmd),
    /// The deployment policy: which stages pinned deployment arms may run.
    #[command(subcommand)]
    Deployment(DeploymentPolicyCmd),
    /// Set the policy for a target stage (administrators only).
    Set {
        /// staging, production or archived.
        stage: String,
        /// Number of distinct approvers.
        #[arg(long)]
        approvals: u32,
        /// Roles that must each approve at least once (comma-separated).
        #[arg(long, value_delimiter = ',')]
        roles: Vec<String>,
        /// Roles allowed to sign (default: the required roles).
        #[arg(long, value_delimiter = ',')]
        eligible: Vec<String>,
        /// Pending requests expire after this many hours.
        #[arg(long)]
        expires_hours: Option<u32>,
        /// Why.
        #[arg(long)]
        reason: String,
    },
}

/// Which validation policy.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
pub struct PolicyTarget {
    /// A model's own policy.
    #[arg(long)]
    pub model: Option<String>,
    /// The default of a model type (classification, regression, survival, ranking, other).
    #[arg(long)]
    pub model_type: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ValidationPolicyCmd {
    /// The policy in force and where it comes from (the model's own, its type's default, or
    /// the built-in default).
    Show {
        #[command(flatten)]
        target: PolicyTarget,
    },
    /// Set a policy from a JSON file (administrators only). Keys left out take the built-in
    /// default's values: floors, ceilings, max_auc_regression, fairness_criterion,
    /// fairness_tolerance, min_group, require_card_complete, require_data_hash,
    /// require_artifact_digest, require_for_staging, resamples, seed.
    Set {
        #[command(flatten)]
        target: PolicyTarget,
        /// The policy (JSON).
        #[arg(long)]
        file: PathBuf,
        /// Why.
        #[arg(long)]
        reason: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum DeploymentPolicyCmd {
    /// The stages pinned live (A/B, canary) and shadow arms may run.
    Show,
    /// Set them (administrators only; audited).
    Set {
        /// Stages a pinned live arm may be in (comma-separated).
        #[arg(long, value_delimiter = ',', required = true)]
        live_stages: Vec<String>,
        /// Stages a shadow arm may be in (comma-separated).
        #[arg(long, value_delimiter = ',', required = true)]
        shadow_stages: Vec<String>,
        /// Why.
        #[arg(long)]
        reason: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// Verify the hash chain and every signature seal.
    Verify,
    /// Query events.
    Log(AuditFilter),
    /// Export events as JSON Lines.
    Export {
        #[command(flatten)]
        filter: AuditFilter,
        /// Write to this file instead of standard output.
        #[arg(long)]
        output: Option<PathBuf>,
    },
}

#[derive(Debug, Args, Default)]
pub struct AuditFilter {
    /// Model name.
    #[arg(long)]
    pub model: Option<String>,
    /// Version (with --model).
    #[arg(long)]
    pub version: Option<String>,
    /// Actor user id.
    #[arg(long)]
    pub actor: Option<String>,
    /// Action, or a prefix ending in '.' (e.g. promotion.).
    #[arg(long)]
    pub action: Option<String>,
    /// ok or denied.
    #[arg(long)]
    pub outcome: Option<String>,
    /// At or after this RFC 3339 time.
    #[arg(long)]
    pub since: Option<String>,
    /// Before this RFC 3339 time.
    #[arg(long)]
    pub until: Option<String>,
    /// At most this many events.
    #[arg(long)]
    pub limit: Option<u32>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    #[test]
    fn grammar_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}

/// Where the gateway's prediction log is spooled before it is stored in the registry.
#[derive(Debug, Clone, clap::Args)]
pub struct SpoolArgs {
    /// Spool directory of the prediction log (default DATA_DIR/spool/gateway; required with
    /// --database-url). One gateway per directory: replicas each need their own.
    #[arg(long, env = "VIGIL_SPOOL")]
    pub spool: Option<PathBuf>,
    /// Largest size of the spool on disk, in MiB; beyond it the spool is full and each
    /// endpoint's policy (reject or drop) applies.
    #[arg(long, default_value_t = 1024, env = "VIGIL_SPOOL_MAX_MB")]
    pub spool_max_mb: u64,
}

/// `vigil features …`.
#[derive(Debug, Subcommand)]
pub enum FeaturesCmd {
    /// Load feature values (CSV or Parquet, one row per entity) into a feature set; the newest
    /// value wins per entity and feature. Data scientists and ML leads; audited.
    Load {
        /// The data file.
        data: PathBuf,
        /// The feature set (a deployment's `feature_set`).
        #[arg(long = "set")]
        feature_set: String,
        /// The column holding the entity id (the deployment's `entity` join key).
        #[arg(long)]
        entity: String,
    },
}
