#![allow(missing_docs, clippy::unwrap_used)]
//! End-to-end tests of the built `vigil` binary: real processes, a real data directory (and a
//! real PostgreSQL database when `VIGIL_TEST_DATABASE_URL` is set), exit codes and output.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

mod concurrency;
mod drift;
mod errors;
mod remote;
mod server;
mod validate;
mod workflow;

pub const PW: &str = "s3cret-passw0rd";

/// A running `vigil serve` on port 0, killed on drop.
pub struct Served {
    pub child: std::process::Child,
    pub url: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `vigil serve` on the store (artifacts in its data directory) and waits for its address.
pub fn serve(v: &Vigil) -> Served {
    use std::io::BufRead;
    let mut cmd = v.cmd();
    cmd.args(["serve", "--addr", "127.0.0.1:0", "--artifacts"]).arg(v.data_dir().join("artifacts"));
    cmd.env("VIGIL_LOG", "errors").stdout(Stdio::piped()).stderr(Stdio::null());
    let mut child = cmd.spawn().expect("spawn vigil serve");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    std::io::BufReader::new(stdout).read_line(&mut line).expect("read the address line");
    let url = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("unexpected first line: {line:?}")).to_owned();
    Served { child, url }
}

/// A data directory (or PostgreSQL schema) with an initialised store and a team.
pub struct Vigil {
    pub dir: tempfile::TempDir,
    pub database_url: Option<String>,
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", self.stdout, self.stderr))
    }
    #[track_caller]
    pub fn ok(self) -> Run {
        assert_eq!(self.code, 0, "stdout: {}\nstderr: {}", self.stdout, self.stderr);
        self
    }
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_vigil"))
}

impl Vigil {
    /// An empty embedded store.
    pub fn empty() -> Vigil {
        Vigil { dir: tempfile::tempdir().expect("tempdir"), database_url: None }
    }

    /// An empty PostgreSQL store in a fresh schema (None when PostgreSQL is not configured).
    pub fn empty_postgres() -> Option<Vigil> {
        let url = match std::env::var("VIGIL_TEST_DATABASE_URL") {
            Ok(u) if !u.is_empty() => u,
            _ => {
                if std::env::var_os("CI").is_some() || std::env::var_os("VIGIL_REQUIRE_POSTGRES").is_some() {
                    panic!("VIGIL_TEST_DATABASE_URL is not set but CI requires the PostgreSQL runs");
                }
                return None;
            }
        };
        let schema = format!("cli_{}_{}", std::process::id(), std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0));
        let sep = if url.contains('?') { '&' } else { '?' };
        let url = format!("{url}{sep}options=-csearch_path%3D{schema}");
        let mut c = postgres::Client::connect(&url, postgres::NoTls).expect("pg");
        c.batch_execute(&format!("CREATE SCHEMA {schema}")).expect("schema");
        Some(Vigil { dir: tempfile::tempdir().expect("tempdir"), database_url: Some(url) })
    }

    /// A store with admin + ds (data_scientist), lead (ml_lead), clin (clinical_reviewer).
    pub fn with_team() -> Vigil {
        Self::team(Vigil::empty())
    }

    pub fn team(v: Vigil) -> Vigil {
        v.run(&["init", "--admin", "admin", "--name", "Ada Admin", "--new-password", PW]).ok();
        for (id, role, name) in [
            ("ds", "data_scientist", "Dana Scientist"),
            ("ds2", "data_scientist", "Dev Scientist"),
            ("lead", "ml_lead", "Lee Lead"),
            ("clin", "clinical_reviewer", "Dr. Cleo Reviewer"),
            ("clin2", "clinical_reviewer", "Dr. Carl Reviewer"),
        ] {
            v.as_user("admin", &["user", "add", id, "--role", role, "--name", name, "--new-password", PW]).ok();
        }
        // Test versions have no card and no lineage: validation checks the statistics only.
        let policy = v.data_dir().join("lenient-validation.json");
        std::fs::write(&policy, r#"{"require_card_complete": false, "require_data_hash": false, "resamples": 200}"#).unwrap();
        let p = policy.to_str().unwrap();
        v.as_user("admin", &["policy", "validation", "set", "--model-type", "classification", "--file", p, "--reason", "test versions carry no card"]).ok();
        v
    }

    /// A holdout CSV (`y`, `s`, `champion`, `sex`) on which a version's scores pass the
    /// default gates and beat the champion's.
    pub fn holdout(&self) -> PathBuf {
        let path = self.data_dir().join("holdout.csv");
        if !path.exists() {
            let mut csv = String::from("y,s,champion,sex\n");
            for i in 0..400u32 {
                // A deterministic mix: labels 40% positive, scores well separated.
                let h = i.wrapping_mul(2_654_435_761) % 1000;
                let y = h < 400;
                let noise = f64::from((i.wrapping_mul(40_503) % 1000) as u16) / 1000.0;
                // Every positive above the threshold, every negative below: no group differs.
                let s = if y { 0.55 + 0.45 * noise } else { 0.49 * noise };
                let c = if y { 0.3 + 0.7 * noise } else { 0.7 * noise };
                csv.push_str(&format!("{},{s:.4},{c:.4},{}\n", u8::from(y), if i % 2 == 0 { "F" } else { "M" }));
            }
            std::fs::write(&path, csv).unwrap();
        }
        path
    }

    /// Stores a passing validation report of the version (Production needs one).
    #[track_caller]
    pub fn validate_ok(&self, user: &str, reference: &str) {
        let data = self.holdout();
        let d = data.to_str().unwrap();
        self.as_user(user, &["--json", "validate", reference, "--data", d, "--label", "y", "--score", "s", "--champion-score", "champion", "--sensitive", "sex"]).ok();
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(bin());
        c.arg("--data-dir").arg(self.data_dir());
        c.env_remove("VIGIL_USER").env_remove("VIGIL_PASSWORD").env_remove("VIGIL_DATA_DIR").env_remove("VIGIL_DATABASE_URL");
        if let Some(url) = &self.database_url {
            c.arg("--database-url").arg(url).arg("--signing-key").arg(self.data_dir().join("signing.key"));
        }
        c.stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        self.cmd().args(args).output().expect("spawn vigil").into()
    }

    pub fn as_user(&self, user: &str, args: &[&str]) -> Run {
        self.as_user_pw(user, PW, args)
    }

    pub fn as_user_pw(&self, user: &str, pw: &str, args: &[&str]) -> Run {
        self.cmd().args(["--user", user]).env("VIGIL_PASSWORD", pw).args(args).output().expect("spawn vigil").into()
    }

    pub fn register(&self, user: &str, name_version: (&str, &str)) -> Run {
        self.as_user(
            user,
            &[
                "--json", "model", "register", name_version.0, "--version", name_version.1, "--type", "classification",
                "--artifact-uri", "s3://models/x", "--artifact-sha256", &"ab".repeat(32), "--metric", "auc_roc=0.95", "--metric", "accuracy=0.92",
            ],
        )
    }

    /// Opens a promotion request (validating the version first for Production).
    pub fn request(&self, user: &str, reference: &str, to: &str) -> String {
        if to == "production" {
            self.validate_ok(user, reference);
        }
        let r = self.as_user(user, &["--json", "promote", "request", reference, "--to", to, "--justification", "meets thresholds"]).ok();
        r.json()["request_id"].as_str().expect("request_id").to_owned()
    }

    /// Registers `NAME@VERSION` with an ONNX fixture of the engine's tests as its artifact
    /// (by its path, with its SHA-256): a version the gateway can serve (or, for
    /// `unsupported_svc`, one it refuses by its operator).
    pub fn register_onnx(&self, user: &str, name_version: (&str, &str), fixture: &str) -> Run {
        use sha2::Digest;
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../vigil-onnx/tests/fixtures").join(format!("{fixture}.onnx")).canonicalize().unwrap();
        let sha = hex::encode(sha2::Sha256::digest(std::fs::read(&path).unwrap()));
        let uri = format!("file://{}", path.display());
        self.as_user(
            user,
            &[
                "--json", "model", "register", name_version.0, "--version", name_version.1, "--type", "classification",
                "--artifact-uri", &uri, "--artifact-sha256", &sha, "--metric", "auc_roc=0.95", "--metric", "accuracy=0.92",
            ],
        )
    }

    /// `NAME@1.0.0` in Production (validated, both signatures) and `NAME@1.1.0` in Staging,
    /// both ONNX models the gateway serves (deployments are checked against what it can).
    pub fn production_and_staging(&self, name: &str) {
        self.register_onnx("ds", (name, "1.0.0"), "lr_binary").ok();
        let rid = self.request("ds", &format!("{name}@1.0.0"), "production");
        for signer in ["lead", "clin"] {
            self.as_user(signer, &["promote", "approve", &rid, "--comment", "ok"]).ok();
        }
        self.register_onnx("ds", (name, "1.1.0"), "rf_binary").ok();
        let rid = self.request("ds", &format!("{name}@1.1.0"), "staging");
        self.as_user("lead", &["promote", "approve", &rid, "--comment", "ok"]).ok();
    }

    pub fn db_file(&self) -> PathBuf {
        self.data_dir().join("vigil.db")
    }
}
