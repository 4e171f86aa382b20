//! Registry benchmarks (a plain bench binary, not a timed test). Run:
//!
//! ```text
//! cargo bench -p vigil-cli --bench registry                 # SQLite only
//! VIGIL_BENCH_DATABASE_URL=postgres://… cargo bench -p vigil-cli --bench registry
//! cargo bench -p vigil-cli --bench registry -- verify       # one workload
//! ```
//!
//! Workloads (see README "Performance"):
//! - `register-1`:  10,000 model versions registered by one writer, each its own durable
//!   transaction (SQLite `synchronous=FULL`, WAL) with its audit event.
//! - `register-16`: the same 10,000 versions from 16 writer threads.
//! - `approve`:     1,000 cycles of request → ml_lead approval (Argon2id re-authentication,
//!   Ed25519 seal) → Staging, each step its own transaction.
//! - `verify`:      verify a 1,000,000-event audit chain (events written in bulk, correctly
//!   chained, then verified through `Registry::verify_audit`).
//! - `cli`:         wall time of `vigil model list` and `vigil audit verify` processes on a
//!   store with 100 versions (median of 30 runs).

use std::sync::Arc;
use std::time::{Duration, Instant};
use vigil_core::approval::{Meaning, ServerKey};
use vigil_core::audit::{AuditEvent, GENESIS, Outcome, StoredEvent};
use vigil_core::auth::{Password, Role};
use vigil_core::ids::{ModelName, Sha256Digest, SystemClock, Timestamp, UserId, UuidV7Ids};
use vigil_core::model::{Lineage, Metrics, ModelType, Stage, VersionContent};
use vigil_core::registry::{NewModelVersion, Registry};
use vigil_core::semver::Version;
use vigil_store::Location;

const PW: &str = "benchmark-password";

fn registry(loc: &Location) -> Registry {
    let store = vigil_store::open(loc).expect("open store");
    Registry::new(store, Arc::new(SystemClock), Arc::new(UuidV7Ids), Arc::new(ServerKey::from_seed([9; 32])))
}

fn fresh(backend: &str, tag: &str) -> (Location, Option<tempfile::TempDir>) {
    match backend {
        "sqlite" => {
            let d = tempfile::tempdir().expect("tempdir");
            (Location::DataDir(d.path().to_owned()), Some(d))
        }
        _ => {
            let url = std::env::var("VIGIL_BENCH_DATABASE_URL").expect("url");
            let schema = format!("bench_{tag}_{}", std::process::id());
            (Location::Postgres { url, schema: Some(schema) }, None)
        }
    }
}

fn team(reg: &Registry) {
    let admin = UserId::parse("admin").expect("id");
    reg.init_admin(&admin, "Admin", &Password::new(PW)).expect("init");
    let a = reg.authenticate(&admin, &Password::new(PW)).expect("auth");
    for (id, role) in [("ds", Role::DataScientist), ("lead", Role::MlLead), ("clin", Role::ClinicalReviewer)] {
        reg.add_user(&a, &UserId::parse(id).expect("id"), id, role, &Password::new(PW)).expect("user");
    }
}

fn version(model: &str, v: String) -> NewModelVersion {
    let mut metrics = Metrics::new();
    metrics.set("auc_roc", 0.91).expect("m");
    metrics.set("accuracy", 0.88).expect("m");
    NewModelVersion {
        name: ModelName::parse(model).expect("name"),
        version: Version::parse(&v).expect("version"),
        model_type: ModelType::Classification,
        content: VersionContent {
            artifact_uri: format!("s3://models/{model}/{v}"),
            artifact_sha256: Some(Sha256Digest::of(v.as_bytes())),
            metrics,
            lineage: Lineage { training_data_hash: Some("sha256:bench".into()), training_run_id: Some("run_1".into()), ..Default::default() },
            card: Default::default(),
        },
        owner: None,
        description: None,
        tags: Default::default(),
    }
}

fn report(name: &str, backend: &str, n: usize, d: Duration, unit: &str) {
    println!("{name:<12} {backend:<8} {n:>9} {unit:<9} in {:>8.2} s = {:>11.0} {unit}/s", d.as_secs_f64(), n as f64 / d.as_secs_f64());
}

fn register(backend: &str, writers: usize) {
    let n = 10_000;
    let (loc, _dir) = fresh(backend, &format!("reg{writers}"));
    let reg = Arc::new(registry(&loc));
    team(&reg);
    let ds = reg.authenticate(&UserId::parse("ds").expect("id"), &Password::new(PW)).expect("auth");
    let t = Instant::now();
    std::thread::scope(|s| {
        for w in 0..writers {
            let (reg, ds) = (reg.clone(), ds.clone());
            s.spawn(move || {
                for i in (w..n).step_by(writers) {
                    reg.register_model(&ds, version("bench", format!("1.{i}.0"))).expect("register");
                }
            });
        }
    });
    report(&format!("register-{writers}"), backend, n, t.elapsed(), "versions");
    assert!(reg.verify_audit().expect("verify").ok());
}

fn approve(backend: &str) {
    let n = 1_000;
    let (loc, _dir) = fresh(backend, "approve");
    let reg = registry(&loc);
    team(&reg);
    let ds = reg.authenticate(&UserId::parse("ds").expect("id"), &Password::new(PW)).expect("auth");
    let ids: Vec<String> = (0..n).map(|i| reg.register_model(&ds, version("bench", format!("1.{i}.0"))).expect("register").id).collect();
    let lead = UserId::parse("lead").expect("id");
    let pw = Password::new(PW);
    let t = Instant::now();
    for id in &ids {
        let r = reg.request_promotion(&ds, id, Stage::Staging, "benchmark").expect("request");
        reg.approve_promotion(&lead, &pw, &r.id, Meaning::Approval, "ok").expect("approve");
    }
    report("approve", backend, n, t.elapsed(), "cycles");
    // Where the time goes: the Argon2id check every signature requires (Part 11 re-auth).
    let t = Instant::now();
    for _ in 0..50 {
        assert!(vigil_core::auth::verify_password(&pw, &vigil_core::auth::hash_password(&pw).expect("hash")));
    }
    println!("             (one Argon2id hash+verify pair: {:.1} ms)", t.elapsed().as_secs_f64() * 1000.0 / 50.0);
}

fn verify(backend: &str) {
    let n: i64 = std::env::var("VIGIL_BENCH_EVENTS").ok().and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
    let kept = std::env::var_os("VIGIL_BENCH_VERIFY_DIR").filter(|_| backend == "sqlite").map(std::path::PathBuf::from);
    let (loc, dir) = match &kept {
        Some(d) => (Location::DataDir(d.clone()), None),
        None => fresh(backend, "verify"),
    };
    let reg = registry(&loc);
    let reuse = reg.verify_audit().map(|r| r.events == n as u64).unwrap_or(false);
    drop(reg);
    // Write a correctly chained log in bulk (the registry would take minutes to append a
    // million events one transaction at a time; verification is what we measure).
    let t = Instant::now();
    if !reuse {
    let mut prev = GENESIS;
    let mut events = Vec::with_capacity(n as usize);
    let base = Timestamp::parse("2026-01-01T00:00:00Z").expect("ts").micros();
    for seq in 0..n {
        let e = AuditEvent {
            at: Timestamp::from_micros(base + seq * 1000).expect("ts"),
            actor: format!("user{}", seq % 50),
            action: "model_version.register".into(),
            outcome: Outcome::Ok,
            entity_type: "model_version".into(),
            entity_id: format!("mv_{seq:032x}"),
            model: Some("bench".into()),
            version: Some(format!("1.{seq}.0")),
            details: serde_json::json!({"new": {"stage": "development", "content_hash": hex::encode(Sha256Digest::of(&seq.to_be_bytes()).as_bytes())}}),
        };
        let (s, h) = StoredEvent::link(&e, seq, &prev);
        prev = h;
        events.push(s);
    }
    bulk_insert(&loc, dir.as_ref(), &events);
    println!("             (wrote {n} chained events in {:.1} s)", t.elapsed().as_secs_f64());
    }
    let reg = registry(&loc);
    for _ in 0..3 {
        let t = Instant::now();
        let r = reg.verify_audit().expect("verify");
        let d = t.elapsed();
        assert!(r.ok(), "{r:?}");
        assert_eq!(r.events, n as u64);
        report("verify", backend, n as usize, d, "events");
    }
}

fn bulk_insert(loc: &Location, _dir: Option<&tempfile::TempDir>, events: &[StoredEvent]) {
    let last = events.last().expect("events");
    match loc {
        Location::DataDir(d) => {
            let mut c = rusqlite::Connection::open(d.join(vigil_store::DB_FILE)).expect("open");
            let tx = c.transaction().expect("tx");
            {
                let mut st = tx
                    .prepare("INSERT INTO audit_events (seq, at, actor, action, outcome, entity_type, entity_id, model, version, details, prev_hash, hash) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12)")
                    .expect("prepare");
                for e in events {
                    st.execute(rusqlite::params![e.seq, e.at, e.actor, e.action, e.outcome, e.entity_type, e.entity_id, e.model, e.version, e.details, e.prev_hash, e.hash]).expect("insert");
                }
            }
            tx.execute("UPDATE audit_head SET seq = ?1, hash = ?2 WHERE id = 1", rusqlite::params![last.seq, last.hash]).expect("head");
            tx.commit().expect("commit");
        }
        Location::Postgres { url, schema } => {
            let mut c = postgres::Client::connect(url, postgres::NoTls).expect("pg");
            c.batch_execute(&format!("SET search_path TO {}", schema.as_deref().unwrap_or("public"))).expect("path");
            let mut w = c
                .copy_in("COPY audit_events (seq, at, actor, action, outcome, entity_type, entity_id, model, version, details, prev_hash, hash) FROM STDIN")
                .expect("copy");
            use std::io::Write;
            let esc = |s: &str| s.replace('\\', "\\\\").replace('\t', "\\t").replace('\n', "\\n");
            for e in events {
                writeln!(
                    w,
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    e.seq, e.at, esc(&e.actor), esc(&e.action), e.outcome, e.entity_type, esc(&e.entity_id),
                    e.model.as_deref().map(esc).unwrap_or_else(|| "\\N".into()),
                    e.version.as_deref().map(esc).unwrap_or_else(|| "\\N".into()),
                    esc(&e.details), e.prev_hash, e.hash
                )
                .expect("write");
            }
            w.finish().expect("finish");
            c.execute("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1", &[&last.seq, &last.hash]).expect("head");
        }
    }
}

fn cli() {
    let bin = env!("CARGO_BIN_EXE_vigil");
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(bin).arg("--data-dir").arg(dir.path()).args(args).env("VIGIL_PASSWORD", PW).output().expect("spawn");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    run(&["init", "--admin", "admin", "--name", "Admin"]);
    run(&["--user", "admin", "user", "add", "ds", "--role", "data_scientist", "--name", "DS", "--new-password", PW]);
    let reg = registry(&Location::DataDir(dir.path().to_owned()));
    let ds = reg.authenticate(&UserId::parse("ds").expect("id"), &Password::new(PW)).expect("auth");
    for i in 0..100 {
        reg.register_model(&ds, version(&format!("model-{}", i % 10), format!("1.{i}.0"))).expect("register");
    }
    drop(reg);
    for args in [&["model", "list"][..], &["audit", "verify"][..], &["--json", "model", "show", "model-3@1.3.0"][..]] {
        let mut times: Vec<f64> = (0..30)
            .map(|_| {
                let t = Instant::now();
                run(args);
                t.elapsed().as_secs_f64() * 1000.0
            })
            .collect();
        times.sort_by(f64::total_cmp);
        println!("cli          sqlite   `vigil {}`: median {:.1} ms, p90 {:.1} ms", args.join(" "), times[15], times[27]);
    }
    // A write: Argon2id password check + one durable transaction with its audit event.
    let sha = "ab".repeat(32);
    let mut times: Vec<f64> = (0..30)
        .map(|i| {
            let v = format!("9.{i}.0");
            let t = Instant::now();
            run(&["--user", "ds", "model", "register", "cli-bench", "--version", &v, "--type", "other", "--artifact-uri", "s3://x", "--artifact-sha256", &sha]);
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    times.sort_by(f64::total_cmp);
    println!("cli          sqlite   `vigil --user ds model register …` (with password check): median {:.1} ms, p90 {:.1} ms", times[15], times[27]);
}

fn main() {
    let filter: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let want = |w: &str| filter.is_empty() || filter.iter().any(|f| w.contains(f.as_str()));
    let mut backends = vec!["sqlite"];
    if std::env::var("VIGIL_BENCH_DATABASE_URL").is_ok() {
        backends.push("postgres");
    }
    for b in &backends {
        if want("register-1") {
            register(b, 1);
        }
        if want("register-16") {
            register(b, 16);
        }
        if want("approve") {
            approve(b);
        }
        if want("verify") {
            verify(b);
        }
    }
    if want("cli") {
        cli();
    }
}
