//! Test harness: every conformance test runs once per backend, each on a fresh database
//! (a temporary SQLite directory, or a fresh PostgreSQL schema).
//!
//! PostgreSQL comes from `VIGIL_TEST_DATABASE_URL`. Without it the PostgreSQL variants are
//! skipped locally, but fail when `CI` or `VIGIL_REQUIRE_POSTGRES` is set, so CI can never
//! silently pass without having run them.

use std::sync::Arc;
use vigil_core::approval::ServerKey;
use vigil_core::auth::{Password, Principal, Role};
use vigil_core::ids::{ManualClock, ModelName, Sha256Digest, SystemClock, Timestamp, UserId, UuidV7Ids};
use vigil_core::model::{Lineage, Metrics, ModelType, ModelVersion, VersionContent};
use vigil_core::registry::{NewModelVersion, Registry};
use vigil_core::semver::Version;
use vigil_core::card::{CardField, ModelCard};
use vigil_core::store::Store;
use vigil_store::tx::SqlStore;

pub const PW: &str = "correct horse battery";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Raw database access for tamper tests.
pub enum Raw {
    Sqlite(rusqlite::Connection),
    Postgres(postgres::Client),
}

impl Raw {
    pub fn exec(&mut self, sql: &str) {
        match self {
            Raw::Sqlite(c) => c.execute_batch(sql).expect("raw sqlite"),
            Raw::Postgres(c) => c.batch_execute(sql).expect("raw postgres"),
        }
    }

    /// Runs a statement that should fail; returns whether it did.
    pub fn refused(&mut self, sql: &str) -> bool {
        match self {
            Raw::Sqlite(c) => c.execute_batch(sql).is_err(),
            Raw::Postgres(c) => c.batch_execute(sql).is_err(),
        }
    }

    pub fn scalar(&mut self, sql: &str) -> String {
        match self {
            Raw::Sqlite(c) => c
                .query_row(sql, [], |r| {
                    Ok(match r.get_ref(0)? {
                        rusqlite::types::ValueRef::Integer(i) => i.to_string(),
                        rusqlite::types::ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
                        _ => String::new(),
                    })
                })
                .expect("raw sqlite scalar"),
            Raw::Postgres(c) => {
                let row = c.query_one(sql, &[]).expect("raw postgres scalar");
                row.try_get::<_, i64>(0).map(|i| i.to_string()).or_else(|_| row.try_get::<_, String>(0)).expect("scalar type")
            }
        }
    }

    /// Drops the append-only triggers, as an attacker with database access would.
    pub fn drop_append_only_triggers(&mut self) {
        match self {
            Raw::Sqlite(_) => self.exec(
                "DROP TRIGGER audit_events_no_update; DROP TRIGGER audit_events_no_delete; \
                 DROP TRIGGER signatures_no_update; DROP TRIGGER signatures_no_delete;",
            ),
            Raw::Postgres(_) => self.exec(
                "DROP TRIGGER audit_events_append_only ON audit_events; DROP TRIGGER signatures_append_only ON signatures;",
            ),
        }
    }
}

pub struct Env {
    #[allow(dead_code)]
    pub backend: Backend,
    #[allow(dead_code)]
    pub store: Arc<SqlStore>,
    pub registry: Registry,
    pub clock: Arc<ManualClock>,
    pub key: Arc<ServerKey>,
    _dir: Option<tempfile::TempDir>,
    location: vigil_store::Location,
}

pub fn pg_url() -> Option<String> {
    match std::env::var("VIGIL_TEST_DATABASE_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            if std::env::var_os("CI").is_some() || std::env::var_os("VIGIL_REQUIRE_POSTGRES").is_some() {
                panic!("VIGIL_TEST_DATABASE_URL is not set but CI requires the PostgreSQL conformance run");
            }
            None
        }
    }
}

pub fn fresh_schema() -> String {
    format!("t_{}", uuid_like())
}

fn uuid_like() -> String {
    let mut b = [0u8; 8];
    getrandom_bytes(&mut b);
    hex::encode(b)
}

fn getrandom_bytes(b: &mut [u8]) {
    // Good enough uniqueness for schema names: time + address entropy + a counter.
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0) as u64;
    let v = t ^ (N.fetch_add(1, Ordering::SeqCst) << 48) ^ (std::process::id() as u64) << 20;
    b.copy_from_slice(&v.to_be_bytes()[..b.len()]);
}

impl Env {
    /// A fresh store on `backend`, or `None` if PostgreSQL is not configured (local runs).
    pub fn new(backend: Backend) -> Option<Env> {
        let (store, dir, location) = match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("tempdir");
                let loc = vigil_store::Location::DataDir(dir.path().to_owned());
                (vigil_store::open_sqlite(dir.path()).expect("open sqlite"), Some(dir), loc)
            }
            Backend::Postgres => {
                let url = pg_url()?;
                let schema = fresh_schema();
                let loc = vigil_store::Location::Postgres { url: url.clone(), schema: Some(schema.clone()) };
                (vigil_store::open_postgres(&url, Some(&schema)).expect("open postgres"), None, loc)
            }
        };
        let clock = Arc::new(ManualClock::new(Timestamp::parse("2026-01-01T00:00:00Z").expect("ts")));
        let key = Arc::new(ServerKey::from_seed([42; 32]));
        let registry = Registry::new(store.clone() as Arc<dyn Store>, clock.clone(), Arc::new(UuidV7Ids), key.clone());
        Some(Env { backend, store, registry, clock, key, _dir: dir, location })
    }

    /// The data directory of an embedded store (`None` on PostgreSQL).
    #[allow(dead_code)]
    pub fn data_dir(&self) -> Option<&std::path::Path> {
        self._dir.as_ref().map(tempfile::TempDir::path)
    }

    /// A second, independent registry (own connection pool, real clock) on the same database,
    /// as another process would have.
    pub fn second_registry(&self) -> Registry {
        let store = vigil_store::open(&self.location).expect("reopen");
        Registry::new(store, Arc::new(SystemClock), Arc::new(UuidV7Ids), self.key.clone())
    }

    /// Verifies the audit chain in one pass and in 2 and 3 parallel segments; all must agree
    /// on the first bad position. Returns the one-pass report.
    pub fn verify(&self) -> vigil_core::audit::ChainReport {
        let one = self.registry.verify_audit().expect("verify");
        for segments in [2, 3] {
            let store = vigil_store::open(&self.location).expect("reopen");
            let reg = Registry::new(store, Arc::new(SystemClock), Arc::new(UuidV7Ids), self.key.clone()).with_verify_segments(segments);
            let seg = reg.verify_audit().expect("segmented verify");
            assert_eq!(seg.first_bad.as_ref().map(|b| b.0), one.first_bad.as_ref().map(|b| b.0), "{segments} segments: {seg:?} vs {one:?}");
            if one.ok() {
                assert_eq!((seg.events, &seg.head_hash), (one.events, &one.head_hash));
            }
        }
        one
    }

    pub fn location(&self) -> vigil_store::Location {
        self.location.clone()
    }

    pub fn raw(&self) -> Raw {
        match &self.location {
            vigil_store::Location::DataDir(d) => Raw::Sqlite(rusqlite::Connection::open(d.join(vigil_store::DB_FILE)).expect("raw open")),
            vigil_store::Location::Postgres { url, schema } => {
                let mut c = postgres::Client::connect(url, postgres::NoTls).expect("raw pg");
                c.batch_execute(&format!("SET search_path TO {}", schema.as_deref().unwrap_or("public"))).expect("search_path");
                Raw::Postgres(c)
            }
        }
    }

    /// Creates the admin and one user per role; returns the admin principal.
    pub fn with_team(&self) -> Principal {
        let admin = UserId::parse("admin").expect("id");
        self.registry.init_admin(&admin, "Ada Admin", &Password::new(PW)).expect("init");
        let admin_p = self.login("admin");
        for (id, name, role) in [
            ("ds", "Dana Scientist", Role::DataScientist),
            ("ds2", "Dev Scientist", Role::DataScientist),
            ("lead", "Lee Lead", Role::MlLead),
            ("lead2", "Lou Lead", Role::MlLead),
            ("clin", "Dr. Cleo Reviewer", Role::ClinicalReviewer),
            ("clin2", "Dr. Carl Reviewer", Role::ClinicalReviewer),
            ("comp", "Cody Compliance", Role::ComplianceOfficer),
        ] {
            self.registry.add_user(&admin_p, &uid(id), name, role, &Password::new(PW)).expect("add user");
        }
        // Test versions carry a partial card; everything else is validated as built in.
        let lenient = vigil_core::validate::ValidationPolicy { require_card_complete: false, resamples: 200, ..Default::default() };
        self.registry
            .set_validation_policy(&admin_p, &vigil_core::validate::PolicyScope::ModelType(ModelType::Classification), &lenient, "test versions carry a partial card")
            .expect("validation policy");
        admin_p
    }

    pub fn login(&self, id: &str) -> Principal {
        self.registry.authenticate(&uid(id), &Password::new(PW)).expect("login")
    }

    pub fn register(&self, as_user: &str, name: &str, version: &str) -> ModelVersion {
        self.registry.register_model(&self.login(as_user), new_version(name, version)).expect("register")
    }

    /// Stores a passing validation report for the version's current content (Production
    /// needs one): a holdout on which it separates the classes well, scored better than any
    /// champion, under the classification default the team's setup installs (a partial card
    /// is allowed; everything else as built in).
    pub fn validate_ok(&self, v: &ModelVersion) -> String {
        let v = self.registry.get_version_by_id(&v.id).expect("version");
        let rec = self.registry.validate(&self.login("ds"), &v.id, &good_holdout(), None).expect("validate");
        assert!(rec.passed, "{}", rec.report);
        rec.id
    }

    /// Moves a version through a fully approved request, on the validation reports it has.
    pub fn promote_validated(&self, v: &ModelVersion, to: vigil_core::model::Stage) -> String {
        let r = self.registry.request_promotion(&self.login("ds"), &v.id, to, "meets thresholds").expect("request");
        for signer in self.signers_for(to) {
            self.registry
                .approve_promotion(&uid(signer), &Password::new(PW), &r.id, vigil_core::approval::Meaning::Approval, "ok")
                .expect("approve");
        }
        r.id
    }

    /// Moves a version through a fully approved request (validating it first for Production).
    pub fn promote(&self, v: &ModelVersion, to: vigil_core::model::Stage) -> String {
        if to == vigil_core::model::Stage::Production {
            self.validate_ok(v);
        }
        self.promote_validated(v, to)
    }

    pub fn signers_for(&self, to: vigil_core::model::Stage) -> Vec<&'static str> {
        match to {
            vigil_core::model::Stage::Production => vec!["lead", "clin"],
            _ => vec!["lead"],
        }
    }
}

/// 400 rows where the scores separate the classes well and beat the champion's; sex balanced.
pub fn good_holdout() -> vigil_core::validate::ValidationData {
    let mut r = vigil_stats::validation::SplitMix64(99);
    let mut u = move || (r.next_u64() >> 11) as f64 / 9_007_199_254_740_992.0;
    let (mut labels, mut scores, mut champ, mut sex) = (vec![], vec![], vec![], vec![]);
    for i in 0..400 {
        let y = u() < 0.4;
        labels.push(y);
        scores.push((0.5 * f64::from(u8::from(y)) + 0.5 * u()).clamp(0.0, 1.0));
        champ.push((0.3 * f64::from(u8::from(y)) + 0.7 * u()).clamp(0.0, 1.0));
        sex.push(if i % 2 == 0 { "F".to_string() } else { "M".to_string() });
    }
    vigil_core::validate::ValidationData { labels, scores, champion_scores: Some(champ), sensitive: vec![("sex".into(), sex)], threshold: 0.5, targets: None }
}

pub fn uid(s: &str) -> UserId {
    UserId::parse(s).expect("user id")
}

pub fn content(uri: &str) -> VersionContent {
    let mut metrics = Metrics::new();
    metrics.set("accuracy", 0.92).expect("m");
    metrics.set("auc_roc", 0.95).expect("m");
    let lineage = Lineage {
        training_data_uri: Some("s3://data/diabetes-training-v3".into()),
        training_data_version: Some("3.0.0".into()),
        training_data_hash: Some("sha256:abc123".into()),
        training_run_id: Some("run_456".into()),
        ..Default::default()
    };
    let mut card = ModelCard::new();
    card.set(CardField::ModelName, "Diabetes Risk Classifier").expect("card");
    card.set(CardField::IntendedUse, "Identify patients at risk for Type 2 diabetes").expect("card");
    VersionContent { artifact_uri: uri.into(), artifact_sha256: Some(Sha256Digest::of(uri.as_bytes())), metrics, lineage, card }
}

pub fn new_version(name: &str, version: &str) -> NewModelVersion {
    NewModelVersion {
        name: ModelName::parse(name).expect("name"),
        version: Version::parse(version).expect("version"),
        model_type: ModelType::Classification,
        content: content(&format!("s3://models/{name}/{version}")),
        owner: None,
        description: None,
        tags: Default::default(),
    }
}

/// Declares one test per backend: `name::sqlite` and `name::postgres`.
#[macro_export]
macro_rules! conformance {
    ($name:ident, |$env:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            fn run($env: $crate::support::Env) $body
            #[test]
            fn sqlite() {
                run($crate::support::Env::new($crate::support::Backend::Sqlite).expect("sqlite env"));
            }
            #[test]
            fn postgres() {
                match $crate::support::Env::new($crate::support::Backend::Postgres) {
                    Some(env) => run(env),
                    None => eprintln!("skipped: VIGIL_TEST_DATABASE_URL not set"),
                }
            }
        }
    };
}
