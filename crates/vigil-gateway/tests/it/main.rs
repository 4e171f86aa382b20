#![allow(missing_docs, clippy::unwrap_used)]
//! The gateway over a real store (SQLite in a temporary data directory, or PostgreSQL when
//! `VIGIL_TEST_DATABASE_URL` is set), real HTTP on port 0, models that went through the
//! approval workflow, and the onnxruntime fixtures of vigil-onnx.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use vigil_core::approval::Meaning;
use vigil_core::auth::{Password, Principal, Role};
use vigil_core::ids::{ModelName, Sha256Digest, SystemClock, UserId, UuidV7Ids};
use vigil_core::card::{CardField, ModelCard};
use vigil_core::model::{Lineage, Metrics, ModelType, Stage, VersionContent};
use vigil_core::registry::{NewModelVersion, Registry};
use vigil_core::semver::Version;

const PW: &str = "s3cret-passw0rd";

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../vigil-onnx/tests/fixtures")
}

fn fixture(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join(format!("{name}.json"))).unwrap()).unwrap()
}

struct Env {
    registry: Arc<Registry>,
    dir: tempfile::TempDir,
    url: String,
    rt: tokio::runtime::Runtime,
}

/// A spool that seals segments quickly (tests wait for records to reach the registry).
fn spool_config(dir: PathBuf) -> vigil_gateway::SpoolConfig {
    let mut c = vigil_gateway::SpoolConfig::new(dir);
    c.seal_after = Duration::from_millis(30);
    c
}

/// The input names the prediction log gives an 8-wide model (the versions' recorded features).
/// The feature lookup histogram's buckets at /metrics (14 bounds and `+Inf`).
const LOOKUP_BUCKETS: usize = vigil_gateway::LOOKUP_BUCKETS_US.len() + 1;

const FEATURES: [&str; 8] = ["lactate", "map", "glucose", "sbp", "hr", "temp", "rr", "spo2"];

fn uid(s: &str) -> UserId {
    UserId::parse(s).unwrap()
}

/// A fresh store on SQLite, then (when configured) on PostgreSQL: every test runs on both.
/// Under CI or VIGIL_REQUIRE_POSTGRES a missing PostgreSQL fails instead of skipping.
fn envs() -> Vec<Env> {
    let mut out = vec![Env::new(None)];
    match std::env::var("VIGIL_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => out.push(Env::new(Some(url))),
        _ if std::env::var_os("CI").is_some() || std::env::var_os("VIGIL_REQUIRE_POSTGRES").is_some() => {
            panic!("VIGIL_TEST_DATABASE_URL is not set but the PostgreSQL runs are required")
        }
        _ => {}
    }
    out
}

impl Env {
    fn new(pg: Option<String>) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let key = vigil_store::keyfile::load_or_create(&dir.path().join("signing.key")).unwrap();
        let store = match pg {
            Some(url) => {
                let schema = format!("gw_{}_{}", std::process::id(), std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos());
                vigil_store::open(&vigil_store::Location::Postgres { url, schema: Some(schema) }).unwrap()
            }
            None => vigil_store::open(&vigil_store::Location::DataDir(dir.path().to_owned())).unwrap(),
        };
        let registry = Arc::new(Registry::new(store, Arc::new(SystemClock), Arc::new(UuidV7Ids), Arc::new(key)));
        registry.init_admin(&uid("admin"), "Ada Admin", &Password::new(PW)).unwrap();
        let admin = registry.authenticate(&uid("admin"), &Password::new(PW)).unwrap();
        for (id, name, role) in [("ds", "Dana Scientist", Role::DataScientist), ("lead", "Lee Lead", Role::MlLead), ("clin", "Dr. Cleo Reviewer", Role::ClinicalReviewer)] {
            registry.add_user(&admin, &uid(id), name, role, &Password::new(PW)).unwrap();
        }
        let lenient = vigil_core::validate::ValidationPolicy { require_card_complete: false, resamples: 200, ..Default::default() };
        registry.set_validation_policy(&admin, &vigil_core::validate::PolicyScope::ModelType(ModelType::Classification), &lenient, "test versions carry a partial card").unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let mut env = Env { registry, dir, url: String::new(), rt };
        env.url = env.gateway(spool_config(env.dir.path().join("spool"))).unwrap();
        env
    }

    /// Starts a gateway over this store with a prediction log spooled as `cfg` says; its URL.
    fn gateway(&self, cfg: vigil_gateway::SpoolConfig) -> std::io::Result<String> {
        self.gateway_over(vigil_gateway::Artifacts::local(self.dir.path().join("artifacts")), cfg)
    }

    /// A gateway over another artifact store.
    fn gateway_over(&self, artifacts: vigil_gateway::Artifacts, cfg: vigil_gateway::SpoolConfig) -> std::io::Result<String> {
        let gw = Arc::new(vigil_gateway::Gateway::with_log(self.registry.clone(), artifacts, None, cfg)?);
        Ok(self.rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(vigil_gateway::follow_registry(gw.clone(), Duration::from_millis(30)));
            tokio::spawn(vigil_gateway::serve(listener, gw, std::future::pending()));
            format!("http://{addr}")
        }))
    }

    fn login(&self, id: &str) -> Principal {
        self.registry.authenticate(&uid(id), &Password::new(PW)).unwrap()
    }

    /// Registers `name@version` with a copy of a fixture model as its artifact (a local file
    /// with its SHA-256), validates it and promotes it to Production with both signatures.
    fn production(&self, name: &str, version: &str, fixture: &str) -> PathBuf {
        let file = self.dir.path().join(format!("{name}-{version}.onnx"));
        std::fs::copy(fixtures().join(format!("{fixture}.onnx")), &file).unwrap();
        self.promote_file(name, version, &file);
        file
    }

    /// Registers `name@version` with a local file as its artifact (and its SHA-256).
    fn register_file(&self, name: &str, version: &str, file: &Path) -> vigil_core::model::ModelVersion {
        self.register_file_with(name, version, file, &FEATURES)
    }

    /// As [`Env::register_file`], with these recorded feature names.
    fn register_file_with(&self, name: &str, version: &str, file: &Path, features: &[&str]) -> vigil_core::model::ModelVersion {
        let bytes = std::fs::read(file).unwrap();
        let mut card = ModelCard::new();
        card.set(CardField::IntendedUse, "gateway tests").unwrap();
        let mut metrics = Metrics::new();
        metrics.set("auc_roc", 0.9).unwrap();
        let content = VersionContent {
            artifact_uri: file.to_str().unwrap().to_owned(),
            artifact_sha256: Some(Sha256Digest::from_bytes(Sha256::digest(&bytes).into())),
            metrics,
            lineage: Lineage { training_data_hash: Some("sha256:gw".into()), features: features.iter().map(|f| (*f).to_owned()).collect(), ..Default::default() },
            card,
        };
        let new = NewModelVersion { name: ModelName::parse(name).unwrap(), version: Version::parse(version).unwrap(), model_type: ModelType::Classification, content, owner: None, description: None, tags: Default::default() };
        self.registry.register_model(&self.login("ds"), new).unwrap()
    }

    fn promote_file(&self, name: &str, version: &str, file: &Path) {
        let v = self.register_file(name, version, file);
        let rec = self.registry.validate(&self.login("ds"), &v.id, &holdout(), None).unwrap();
        assert!(rec.passed, "{}", rec.report);
        let r = self.registry.request_promotion(&self.login("ds"), &v.id, Stage::Production, "gateway test").unwrap();
        for signer in ["lead", "clin"] {
            self.registry.approve_promotion(&uid(signer), &Password::new(PW), &r.id, Meaning::Approval, "ok").unwrap();
        }
    }

    /// Waits until the gateway serves `name` at `version` (or answers 503 for it).
    fn wait_for(&self, name: &str, version: &str) -> (u16, Value) {
        for _ in 0..200 {
            let (st, body, _) = get(&format!("{}/v2/models/{name}", self.url));
            if st == 503 || body["versions"][0] == version {
                return (st, body);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the gateway never picked up {name}@{version}");
    }
}

fn holdout() -> vigil_core::validate::ValidationData {
    let (mut labels, mut scores, mut champ, mut sex) = (vec![], vec![], vec![], vec![]);
    let mut s = 7u64;
    let mut u = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 11) as f64 / (1u64 << 53) as f64
    };
    for i in 0..400 {
        let y = u() < 0.4;
        labels.push(y);
        scores.push((0.5 * f64::from(u8::from(y)) + 0.5 * u()).clamp(0.0, 1.0));
        champ.push((0.45 * f64::from(u8::from(y)) + 0.55 * u()).clamp(0.0, 1.0));
        sex.push(if i % 2 == 0 { "F".to_string() } else { "M".to_string() });
    }
    vigil_core::validate::ValidationData { labels, scores, champion_scores: Some(champ), sensitive: vec![("sex".into(), sex)], threshold: 0.5, targets: None }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).build().into()
}

fn read(r: ureq::http::Response<ureq::Body>) -> (u16, Value, Option<String>) {
    let st = r.status().as_u16();
    let h = r.headers().get("x-vigil-model-version").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let text = r.into_body().read_to_string().unwrap_or_default();
    (st, serde_json::from_str(&text).unwrap_or(Value::String(text)), h)
}

/// Status, body, and the `x-vigil-model-version` header.
type Answer = (u16, Value, Option<String>);

fn get(url: &str) -> (u16, Value, Option<String>) {
    read(agent().get(url).call().unwrap())
}

fn post(url: &str, ctype: &str, body: &str) -> (u16, Value, Option<String>) {
    read(agent().post(url).header("content-type", ctype).send(body).unwrap())
}

/// Sends only the head of a POST declaring `len` body bytes; returns the status and body.
fn raw_post(url: &str, path: &str, len: usize) -> (u16, String) {
    use std::io::{Read, Write};
    let addr = url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {len}\r\nconnection: close\r\n\r\n").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, text)
}

/// POSTs `len` bytes of a JSON array in 1 MiB chunks (`transfer-encoding: chunked`, no
/// declared length), stopping early if the server stops reading; returns the status and body.
fn chunked_post(url: &str, path: &str, len: usize) -> (u16, String) {
    use std::io::{Read, Write};
    let addr = url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n").unwrap();
    // The answer is read as it comes, while the body is still being sent (a server that
    // answers early and closes may reset the connection, and a reset can drop unread data).
    let mut reader = s.try_clone().unwrap();
    reader.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let got = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = reader.read_to_end(&mut buf);
        buf
    });
    let chunk = vec![b' '; 1 << 20];
    for _ in 0..len.div_ceil(chunk.len()) {
        if write!(s, "{:x}\r\n", chunk.len()).and_then(|()| s.write_all(&chunk)).and_then(|()| s.write_all(b"\r\n")).is_err() {
            break;
        }
    }
    let _ = s.write_all(b"0\r\n\r\n");
    let buf = got.join().unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, text)
}

/// The fixture's rows as (features per row).
fn rows(f: &Value) -> (String, Vec<Vec<f64>>) {
    let (name, t) = f["inputs"].as_object().unwrap().iter().next().unwrap();
    let shape: Vec<usize> = t["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
    let data: Vec<f64> = t["data"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    (name.clone(), data.chunks(shape[1]).map(<[f64]>::to_vec).collect())
}

fn assert_close(got: &Value, want: &Value, what: &str) {
    let (g, w) = (got.as_array().unwrap(), want.as_array().unwrap());
    assert_eq!(g.len(), w.len(), "{what}");
    for (a, b) in g.iter().zip(w) {
        let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
        assert!((a - b).abs() <= 1e-5, "{what}: {a} vs {b}");
    }
}

#[test]
fn both_protocols_answer_with_the_production_version_as_onnxruntime_does() {
    for env in envs() {
        env.production("sepsis", "1.0.0", "lr_binary");
        let (st, meta) = env.wait_for("sepsis", "1.0.0");
        assert_eq!(st, 200, "{meta}");
        assert_eq!(meta["platform"], "onnx_onnxv1");
        assert_eq!(meta["inputs"], json!([{"name": "X", "datatype": "FP32", "shape": [-1, 8], "parameters": {"accepts_missing_values": false}}]));
        assert_eq!(meta["outputs"][1], json!({"name": "probabilities", "datatype": "FP32", "shape": [-1, 2]}));
        assert_eq!(get(&format!("{}/v2/health/live", env.url)).0, 200);
        assert_eq!(get(&format!("{}/v2/health/ready", env.url)).0, 200);
        assert_eq!(get(&format!("{}/v2/models/sepsis/ready", env.url)).0, 200);
        assert_eq!(get(&format!("{}/v2/models/sepsis/versions/1.0.0/ready", env.url)).0, 200);
        assert_eq!(get(&format!("{}/v2", env.url)).1["name"], "vigil");

        let f = fixture("lr_binary");
        let want_p = &f["expected"]["probabilities"]["data"];
        let want_l = &f["expected"]["label"]["data"];
        let (input, xs) = rows(&f);
        let n = xs.len();
        // Open Inference Protocol, flat and nested data, with and without a version in the path.
        let flat: Vec<f64> = xs.iter().flatten().copied().collect();
        for (path, data) in [("/v2/models/sepsis/infer", json!(flat)), ("/v2/models/sepsis/versions/1.0.0/infer", json!(xs))] {
            let body = json!({"id": "r-1", "inputs": [{"name": input, "shape": [n, 8], "datatype": "FP32", "data": data}]});
            let (st, out, header) = post(&format!("{}{path}", env.url), "application/json", &body.to_string());
            assert_eq!(st, 200, "{out}");
            assert_eq!((out["model_name"].as_str(), out["model_version"].as_str(), out["id"].as_str()), (Some("sepsis"), Some("1.0.0"), Some("r-1")));
            assert_eq!(header.as_deref(), Some("sepsis@1.0.0"));
            assert_eq!(out["outputs"][0]["data"], *want_l);
            assert_eq!(out["outputs"][1]["shape"], json!([n, 2]));
            assert_close(&out["outputs"][1]["data"], want_p, path);
        }
        // FP64 values for an FP32 model are converted; `outputs` picks what comes back.
        let body = json!({"inputs": [{"name": input, "shape": [n, 8], "datatype": "FP64", "data": flat}], "outputs": [{"name": "probabilities"}]});
        let (st, out, _) = post(&format!("{}/v2/models/sepsis/infer", env.url), "application/json", &body.to_string());
        assert_eq!((st, out["outputs"].as_array().map(Vec::len)), (200, Some(1)), "{out}");
        assert!(out["id"].as_str().is_some_and(|i| !i.is_empty()), "an id is made up when none is given");

        // MLflow: every JSON format and CSV give the same predictions.
        let cols: Vec<String> = (0..8).map(|i| format!("f{i}")).collect();
        let records: Vec<Value> = xs.iter().map(|r| Value::Object(cols.iter().cloned().zip(r.iter().map(|v| json!(v))).collect())).collect();
        let mut csv = cols.join(",") + "\n";
        for r in &xs {
            csv += &(r.iter().map(f64::to_string).collect::<Vec<_>>().join(",") + "\n");
        }
        let bodies = [
            ("application/json", json!({"dataframe_split": {"columns": cols, "data": xs}}).to_string()),
            ("application/json", json!({"dataframe_records": records}).to_string()),
            ("application/json", json!({"instances": xs}).to_string()),
            ("application/json", json!({"inputs": xs, "params": {}}).to_string()),
            ("application/json", json!({"inputs": {input.clone(): xs}}).to_string()),
            ("text/csv", csv),
            ("application/json; charset=utf-8", json!({"instances": xs}).to_string()),
        ];
        for (ctype, body) in &bodies {
            for path in ["/invocations", "/models/sepsis/invocations"] {
                let (st, out, header) = post(&format!("{}{path}", env.url), ctype, body);
                assert_eq!(st, 200, "{ctype} {path}: {out}");
                assert_eq!(header.as_deref(), Some("sepsis@1.0.0"));
                let preds = out["predictions"].as_array().unwrap();
                assert_eq!(preds.len(), n);
                let probs: Vec<Value> = preds.iter().flat_map(|p| p["probabilities"].as_array().unwrap().clone()).collect();
                assert_close(&Value::Array(probs), want_p, ctype);
                assert_eq!(Value::Array(preds.iter().map(|p| p["label"].clone()).collect()), *want_l);
            }
        }
        assert_eq!(get(&format!("{}/ping", env.url)).0, 200);
        assert_eq!(get(&format!("{}/health", env.url)).0, 200);
        assert!(get(&format!("{}/version", env.url)).1.as_str().unwrap().starts_with("vigil"));
    }
}

#[test]
fn a_column_per_input_model_takes_named_columns_with_unknown_categories_and_missing_values() {
    for env in envs() {
        env.production("readmit", "1.0.0", "columns_onehot_lr");
        let (st, meta) = env.wait_for("readmit", "1.0.0");
        assert_eq!(st, 200);
        // The lab columns are imputed before anything reads them; the categories are not.
        let accepts: Vec<(String, bool)> = meta["inputs"].as_array().unwrap().iter().map(|i| (i["name"].as_str().unwrap().to_owned(), i["parameters"]["accepts_missing_values"].as_bool().unwrap())).collect();
        assert!(accepts.iter().all(|(n, a)| *a == n.starts_with("lab")) && accepts.len() == 7, "{accepts:?}");
        let f = fixture("columns_onehot_lr");
        let inputs = f["inputs"].as_object().unwrap();
        let n = inputs["sex"]["data"].as_array().unwrap().len();
        // Records with the columns in another order, and an extra column that is ignored.
        let records: Vec<Value> = (0..n)
            .map(|i| {
                let mut m = serde_json::Map::new();
                m.insert("note".into(), json!("ignored"));
                for name in ["sex", "unit", "lab4", "lab3", "lab2", "lab1", "lab0"] {
                    m.insert(name.into(), inputs[name]["data"][i].clone());
                }
                Value::Object(m)
            })
            .collect();
        let (st, out, _) = post(&format!("{}/invocations", env.url), "application/json", &json!({"dataframe_records": records}).to_string());
        assert_eq!(st, 200, "{out}");
        let probs: Vec<Value> = out["predictions"].as_array().unwrap().iter().flat_map(|p| p["probabilities"].as_array().unwrap().clone()).collect();
        assert_close(&Value::Array(probs), &f["expected"]["probabilities"]["data"], "records");
        // The same through OIP, one tensor per column.
        let tensors: Vec<Value> = inputs
            .iter()
            .map(|(name, t)| json!({"name": name, "shape": [n, 1], "datatype": if t["dtype"] == "object" { "BYTES" } else { "FP32" }, "data": t["data"]}))
            .collect();
        let (st, out, _) = post(&format!("{}/v2/models/readmit/infer", env.url), "application/json", &json!({"inputs": tensors}).to_string());
        assert_eq!(st, 200, "{out}");
        assert_close(&out["outputs"][1]["data"], &f["expected"]["probabilities"]["data"], "oip");
    }
}

/// A version whose feature names are recorded takes a tabular request's columns by those
/// names, in whatever order they come (never a wrong answer from a reordered frame); a frame
/// that names some and lacks others is refused; unnamed columns are taken in order.
#[test]
fn mlflow_columns_are_taken_by_the_recorded_feature_names_in_any_order() {
    for env in envs() {
        env.production("sepsis", "1.0.0", "lr_binary");
        env.wait_for("sepsis", "1.0.0");
        let url = format!("{}/models/sepsis/invocations", env.url);
        let xs: Vec<Vec<f64>> = (0..3).map(|r| (0..8).map(|j| 0.5 * r as f64 - 0.3 * j as f64 + 0.05).collect()).collect();
        let predict = |columns: Vec<&str>, rows: Vec<Vec<f64>>| {
            let (st, out, _) = post(&url, "application/json", &json!({"dataframe_split": {"columns": columns, "data": rows}}).to_string());
            assert_eq!(st, 200, "{out}");
            out["predictions"].clone()
        };
        let in_order = predict(FEATURES.to_vec(), xs.clone());
        // Reversed columns with the values reversed alike: the same patients, the same answers.
        let reversed = predict(FEATURES.iter().rev().copied().collect(), xs.iter().map(|r| r.iter().rev().copied().collect()).collect());
        assert_eq!(reversed, in_order);
        // Fed by position, the reversed frame would be other patients: the answers would differ.
        let positional = predict(vec!["c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7"], xs.iter().map(|r| r.iter().rev().copied().collect()).collect());
        assert_ne!(positional, in_order, "the check above could not tell an order from another");
        // Records name their fields; an extra column is ignored, as MLflow does.
        let records: Vec<Value> = xs.iter().map(|r| {
            let mut m = serde_json::Map::new();
            m.insert("encounter".into(), json!("E1"));
            for (j, f) in FEATURES.iter().enumerate().rev() {
                m.insert((*f).to_owned(), json!(r[j]));
            }
            Value::Object(m)
        }).collect();
        let (st, out, _) = post(&url, "application/json", &json!({"dataframe_records": records}).to_string());
        assert_eq!((st, out["predictions"].clone()), (200, in_order.clone()), "{out}");
        // Some named, one missing: refused by the missing name, without the values.
        let mut cols = FEATURES.to_vec();
        cols[7] = "spo2_pct";
        let (st, out, _) = post(&url, "application/json", &json!({"dataframe_split": {"columns": cols, "data": [[71.25, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]]}}).to_string());
        assert_eq!((st, out["error_code"].as_str()), (400, Some("BAD_REQUEST")), "{out}");
        let m = out["message"].as_str().unwrap();
        assert!(m.contains("spo2") && !m.contains("71.25"), "{m}");
    }
}

#[test]
fn client_mistakes_get_4xx_in_each_protocols_format_without_the_values() {
    for env in envs() {
        env.production("sepsis", "1.0.0", "lr_binary");
        env.wait_for("sepsis", "1.0.0");
        let secret = 987.654_321;
        let row: Vec<f64> = vec![secret; 8];
        let oip = |body: Value| post(&format!("{}/v2/models/sepsis/infer", env.url), "application/json", &body.to_string());
        let cases: Vec<(&str, Answer)> = vec![
            ("wrong feature count", oip(json!({"inputs": [{"name": "X", "shape": [1, 7], "datatype": "FP32", "data": vec![secret; 7]}]}))),
            ("shape and data disagree", oip(json!({"inputs": [{"name": "X", "shape": [2, 8], "datatype": "FP32", "data": row}]}))),
            ("unknown datatype", oip(json!({"inputs": [{"name": "X", "shape": [1, 8], "datatype": "FLOAT", "data": row}]}))),
            ("text for numbers", oip(json!({"inputs": [{"name": "X", "shape": [1, 8], "datatype": "BYTES", "data": vec!["PATIENT-XYZ"; 8]}]}))),
            ("a string in FP32 data", oip(json!({"inputs": [{"name": "X", "shape": [1, 2], "datatype": "FP32", "data": [1.0, "PATIENT-XYZ"]}]}))),
            ("missing input", oip(json!({"inputs": [{"name": "Y", "shape": [1, 8], "datatype": "FP32", "data": row}]}))),
            ("no inputs", oip(json!({"id": "x"}))),
            ("FP16", oip(json!({"inputs": [{"name": "X", "shape": [1, 8], "datatype": "FP16", "data": row}]}))),
            ("negative dimension", oip(json!({"inputs": [{"name": "X", "shape": [-1, 8], "datatype": "FP32", "data": row}]}))),
            ("unknown output", oip(json!({"inputs": [{"name": "X", "shape": [1, 8], "datatype": "FP32", "data": row}], "outputs": [{"name": "nope"}]}))),
            ("not JSON", post(&format!("{}/v2/models/sepsis/infer", env.url), "application/json", "{\"inputs\": [PATIENT-XYZ")),
        ];
        for (what, (st, body, _)) in &cases {
            assert_eq!(*st, 400, "{what}: {body}");
            let msg = body["error"].as_str().unwrap_or_else(|| panic!("{what}: {body}"));
            assert!(!msg.contains("987.654") && !msg.contains("PATIENT-XYZ"), "{what}: {msg}");
        }
        assert_eq!(get(&format!("{}/v2/models/nosuch", env.url)).0, 404);
        assert_eq!(oip(json!({})).0, 400);
        let (st, body, _) = post(&format!("{}/v2/models/sepsis/versions/9.9.9/infer", env.url), "application/json", &json!({"inputs": []}).to_string());
        assert_eq!(st, 404, "{body}");
        assert!(body["error"].is_string());
        // A body over the limit.
        // A body over the limit is refused from its declared length, before it is read.
        let (status, text) = raw_post(&env.url, "/v2/models/sepsis/infer", 20 << 20);
        assert_eq!(status, 413, "{text}");
        assert!(text.contains("\"error\""), "{text}");
        // MLflow's format for MLflow's route; and a chunked body (no declared length) is cut
        // off once it passes the limit.
        let (status, text) = raw_post(&env.url, "/invocations", 20 << 20);
        assert_eq!(status, 413, "{text}");
        assert!(text.contains("\"error_code\""), "{text}");
        for path in ["/v2/models/sepsis/infer", "/invocations"] {
            let (status, text) = chunked_post(&env.url, path, 20 << 20);
            assert_eq!(status, 413, "{path}: {text}");
        }

        let ml = |ctype: &str, body: &str| post(&format!("{}/invocations", env.url), ctype, body);
        let cases = vec![
            ("two formats", ml("application/json", &json!({"instances": [row], "inputs": [row]}).to_string())),
            ("no format", ml("application/json", &json!({"rows": [row]}).to_string())),
            ("a top-level list", ml("application/json", &json!([row]).to_string())),
            ("missing value, no imputer", ml("application/json", &json!({"dataframe_split": {"columns": (0..8).collect::<Vec<_>>(), "data": [[secret, secret, secret, secret, secret, secret, secret, null]]}}).to_string())),
            ("NaN in CSV, no imputer", ml("text/csv", &format!("a,b,c,d,e,f,g,h\n{secret},{secret},{secret},{secret},{secret},{secret},{secret},NaN\n"))),
            ("text in a numeric column", ml("text/csv", &format!("a,b,c,d,e,f,g,h\n{secret},{secret},{secret},{secret},{secret},{secret},{secret},PATIENT-XYZ\n"))),
            ("wrong column count", ml("application/json", &json!({"instances": [[secret, secret]]}).to_string())),
            ("ragged rows", ml("application/json", &json!({"instances": [row, [secret]]}).to_string())),
            ("not JSON", ml("application/json", "{\"instances\": PATIENT-XYZ")),
        ];
        for (what, (st, body, _)) in &cases {
            assert_eq!(*st, 400, "{what}: {body}");
            assert_eq!(body["error_code"], "BAD_REQUEST", "{what}");
            let msg = body["message"].as_str().unwrap();
            assert!(!msg.contains("987.654") && !msg.contains("PATIENT-XYZ"), "{what}: {msg}");
        }
        assert_eq!(ml("application/xml", "<x/>").0, 415);
        assert_eq!(ml("application/json; format=pandas-split", &json!({"instances": [row]}).to_string()).0, 415);
        assert_eq!(post(&format!("{}/models/nosuch/invocations", env.url), "application/json", "{}").1["error_code"], "RESOURCE_DOES_NOT_EXIST");
    }
}

/// Three clients sending the same request until stopped: how many were answered, how many
/// failed, and whether `version` answered any.
struct Load {
    stop: Arc<AtomicBool>,
    clients: Vec<std::thread::JoinHandle<()>>,
    ok: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    seen: Arc<AtomicBool>,
}

impl Load {
    fn start(url: &str, version: &'static str) -> Load {
        let body = json!({"inputs": [{"name": "X", "shape": [1, 8], "datatype": "FP32", "data": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]}]}).to_string();
        let (stop, ok, failed, seen) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(false)));
        let clients = (0..3)
            .map(|_| {
                let (stop, ok, failed, seen, url, body) = (stop.clone(), ok.clone(), failed.clone(), seen.clone(), url.to_owned(), body.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let (st, out, _) = post(&format!("{url}/v2/models/sepsis/infer"), "application/json", &body);
                        if st == 200 {
                            ok.fetch_add(1, Ordering::Relaxed);
                            seen.fetch_or(out["model_version"] == version, Ordering::Relaxed);
                        } else {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        Load { stop, clients, ok, failed, seen }
    }

    /// Stops the clients: (answered, failed, whether the version answered).
    fn stop(self) -> (usize, usize, bool) {
        self.stop.store(true, Ordering::Relaxed);
        for c in self.clients {
            c.join().unwrap();
        }
        (self.ok.load(Ordering::Relaxed), self.failed.load(Ordering::Relaxed), self.seen.load(Ordering::Relaxed))
    }
}

#[test]
fn promotion_swaps_the_served_version_without_dropping_a_request() {
    for env in envs() {
        env.production("sepsis", "1.0.0", "lr_binary");
        env.wait_for("sepsis", "1.0.0");
        let load = Load::start(&env.url, "2.0.0");
        std::thread::sleep(Duration::from_millis(200));
        env.production("sepsis", "2.0.0", "rf_binary");
        env.wait_for("sepsis", "2.0.0");
        std::thread::sleep(Duration::from_millis(200));
        let (ok, failed, seen2) = load.stop();
        assert_eq!(failed, 0, "no request failed during the swap");
        assert!(ok > 20, "{ok}");
        assert!(seen2, "the new version answered");
        // The old version is no longer served by name.
        assert_eq!(get(&format!("{}/v2/models/sepsis/versions/1.0.0", env.url)).0, 404);
        // A rollback (the archived 1.0.0 back to Production, by the same two signatures) swaps
        // back under load, again without a failed request.
        let load = Load::start(&env.url, "1.0.0");
        std::thread::sleep(Duration::from_millis(200));
        let v1 = env.registry.get_version(&ModelName::parse("sepsis").unwrap(), &Version::parse("1.0.0").unwrap()).unwrap();
        assert_eq!(v1.stage, Stage::Archived);
        // (Validated again, against the Production version it is to replace.)
        assert!(env.registry.validate(&env.login("ds"), &v1.id, &holdout(), None).unwrap().passed);
        let r = env.registry.request_promotion(&env.login("ds"), &v1.id, Stage::Production, "roll back").unwrap();
        for signer in ["lead", "clin"] {
            env.registry.approve_promotion(&uid(signer), &Password::new(PW), &r.id, Meaning::Approval, "ok").unwrap();
        }
        env.wait_for("sepsis", "1.0.0");
        std::thread::sleep(Duration::from_millis(200));
        let (_, failed, seen1) = load.stop();
        assert_eq!(failed, 0, "no request failed during the rollback");
        assert!(seen1, "the rolled-back version answered");
        assert_eq!(get(&format!("{}/v2/models/sepsis/versions/2.0.0", env.url)).0, 404);
        drop(env.rt);
    }
}

#[test]
fn an_unservable_production_version_answers_503_naming_the_operator() {
    for env in envs() {
        env.production("sepsis", "1.0.0", "lr_binary");
        env.wait_for("sepsis", "1.0.0");
        env.production("other", "1.0.0", "unsupported_svc");
        let (st, body) = env.wait_for("other", "1.0.0");
        assert_eq!(st, 503, "{body}");
        assert!(body["error"].as_str().unwrap().contains("SVMClassifier"), "{body}");
        let (st, ready, _) = get(&format!("{}/v2/health/ready", env.url));
        assert_eq!(st, 503, "{ready}");
        let (st, out, _) = post(&format!("{}/models/other/invocations", env.url), "application/json", &json!({"instances": [vec![0.0; 8]]}).to_string());
        assert_eq!((st, out["error_code"].as_str()), (503, Some("TEMPORARILY_UNAVAILABLE")), "{out}");
        // The other model is unaffected, and /invocations has no single default any more.
        assert_eq!(get(&format!("{}/v2/models/sepsis/ready", env.url)).0, 200);
        assert_eq!(post(&format!("{}/invocations", env.url), "application/json", "{}").0, 404);
    }
}

#[test]
fn a_file_changed_before_loading_is_never_served() {
    for env in envs() {
        let file = env.dir.path().join("m.onnx");
        std::fs::copy(fixtures().join("lr_binary.onnx"), &file).unwrap();
        // Register, then change the bytes before the version reaches Production.
        let tampered = env.dir.path().join("t.onnx");
        std::fs::copy(&file, &tampered).unwrap();
        env.promote_file("sepsis", "1.0.0", &tampered);
        let before = std::fs::read(&tampered).unwrap();
        std::fs::write(&tampered, [before.as_slice(), b"x"].concat()).unwrap();
        // A fresh gateway loads it now.
        let gw = vigil_gateway::Gateway::new(env.registry.clone(), vigil_gateway::Artifacts::local(env.dir.path().join("artifacts")), None);
        gw.catalog.refresh().unwrap();
        match gw.catalog.get("sepsis") {
            Some(vigil_gateway::Entry::Failed(u)) => assert!(u.reason.contains("no longer match"), "{}", u.reason),
            _ => panic!("a tampered artifact was loaded"),
        }
        // The right bytes back (a file being replaced, a store that did not answer): the load
        // is tried again once its wait is over, not at every refresh before.
        std::fs::write(&tampered, &before).unwrap();
        let failed_at = std::time::Instant::now();
        assert_eq!(gw.catalog.refresh().unwrap(), 0, "tried again before its wait was over");
        assert!(matches!(gw.catalog.get("sepsis"), Some(vigil_gateway::Entry::Failed(_))));
        std::thread::sleep(vigil_gateway::retry_after(1).saturating_sub(failed_at.elapsed()) + Duration::from_millis(50));
        assert_eq!(gw.catalog.refresh().unwrap(), 1);
        assert!(matches!(gw.catalog.get("sepsis"), Some(vigil_gateway::Entry::Ready(_))), "the right bytes are served once tried again");
    }
}

/// The waits between tries of a load that keeps failing: 2 s, doubling, at most 5 minutes.
#[test]
fn a_failing_load_is_tried_again_less_and_less_often() {
    use vigil_gateway::retry_after;
    let secs: Vec<u64> = (1..=10).map(|n| retry_after(n).as_secs()).collect();
    assert_eq!(secs, [2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
    assert_eq!(retry_after(u32::MAX).as_secs(), 300);
}

impl Env {
    /// Registers `name@version` from a fixture and moves it to Staging (one ML lead signs).
    fn staging(&self, name: &str, version: &str, fixture: &str) -> String {
        self.staging_with(name, version, fixture, &FEATURES)
    }

    /// As [`Env::staging`], with these recorded feature names.
    fn staging_with(&self, name: &str, version: &str, fixture: &str, features: &[&str]) -> String {
        let file = self.dir.path().join(format!("{name}-{version}.onnx"));
        std::fs::copy(fixtures().join(format!("{fixture}.onnx")), &file).unwrap();
        let v = self.register_file_with(name, version, &file, features);
        let r = self.registry.request_promotion(&self.login("ds"), &v.id, Stage::Staging, "candidate").unwrap();
        self.registry.approve_promotion(&uid("lead"), &Password::new(PW), &r.id, Meaning::Approval, "ok").unwrap();
        v.id
    }

    fn deploy(&self, name: &str, spec: serde_json::Value) {
        let spec = vigil_core::deploy::DeploymentSpec::from_json(&spec).unwrap();
        let d = self.registry.set_deployment(&self.login("lead"), &ModelName::parse(name).unwrap(), &spec, "test").unwrap();
        for _ in 0..200 {
            let (_, meta, _) = get(&format!("{}/v2/models/{name}", self.url));
            if meta["parameters"]["deployment_revision"] == d.revision {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the gateway never picked up revision {}", d.revision);
    }
}

fn infer_as(env: &Env, patient: Option<&str>, id: &str) -> (u16, String, String, Vec<u8>) {
    let body = json!({"id": id, "inputs": [{"name": "X", "shape": [1, 8], "datatype": "FP32", "data": [0.1, -0.2, 0.3, 0.4, -0.5, 0.6, 0.7, 0.8]}]}).to_string();
    let mut req = agent().post(&format!("{}/v2/models/sepsis/infer", env.url)).header("content-type", "application/json");
    if let Some(p) = patient {
        req = req.header("x-patient-id", p);
    }
    let r = req.send(&body).unwrap();
    let st = r.status().as_u16();
    let arm = r.headers().get("x-vigil-arm").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let how = r.headers().get("x-vigil-assignment").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let bytes = r.into_body().read_to_vec().unwrap();
    (st, arm, how, bytes)
}

fn counter(env: &Env, name: &str) -> u64 {
    counter_at(&env.url, name)
}

/// A counter of the gateway at `url`, from `/metrics`.
fn counter_at(url: &str, name: &str) -> u64 {
    let text = agent().get(&format!("{url}/metrics")).call().unwrap().into_body().read_to_string().unwrap();
    text.lines().find(|l| l.starts_with(name)).and_then(|l| l.split(' ').nth(1)).and_then(|v| v.parse().ok()).unwrap()
}

#[test]
fn canary_assignment_is_sticky_by_patient_and_raising_it_only_moves_patients_in() {
    for env in envs() {
        env.production("sepsis", "1.0.0", "lr_binary");
        env.wait_for("sepsis", "1.0.0");
        let v2 = env.staging("sepsis", "1.1.0", "rf_binary");
        env.deploy("sepsis", json!({"arms": [{"name": "production", "version": "production", "percent": 70}, {"name": "canary", "version": v2, "percent": 30}], "unit_key": "header:x-patient-id"}));
        let patients: Vec<String> = (0..300).map(|i| format!("MRN-{i:05}")).collect();
        let mut first = std::collections::HashMap::new();
        for p in &patients {
            let (st, arm, how, body) = infer_as(&env, Some(p), "r");
            assert_eq!((st, how.as_str()), (200, "keyed"));
            let version: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(version["model_version"], if arm == "canary" { "1.1.0" } else { "1.0.0" });
            first.insert(p.clone(), arm);
        }
        let in_canary = first.values().filter(|a| *a == "canary").count();
        assert!((60..=120).contains(&in_canary), "{in_canary} of 300 in a 30% canary");
        for p in patients.iter().take(50) {
            assert_eq!(infer_as(&env, Some(p), "r").1, first[p], "the same patient, the same arm");
        }
        let (st, _, how, _) = infer_as(&env, None, "r");
        assert_eq!((st, how.as_str()), (200, "random"), "no unit key: assigned at random, and said so");
        env.deploy("sepsis", json!({"arms": [{"name": "production", "version": "production", "percent": 40}, {"name": "canary", "version": v2, "percent": 60}], "unit_key": "header:x-patient-id"}));
        let mut now_in = 0;
        for p in &patients {
            let arm = infer_as(&env, Some(p), "r").1;
            if first[p] == "canary" {
                assert_eq!(arm, "canary", "raising the canary moved {p} out of it");
            }
            now_in += usize::from(arm == "canary");
        }
        assert!(now_in > in_canary + 30, "{now_in} vs {in_canary}");
        // The unit key as a field of the body: MLflow's `params`, OIP's `parameters`.
        env.deploy("sepsis", json!({"arms": [{"name": "production", "version": "production", "percent": 50}, {"name": "canary", "version": v2, "percent": 50}], "unit_key": "field:patient_id"}));
        let routed = |path: &str, body: Value| {
            let r = agent().post(&format!("{}{path}", env.url)).header("content-type", "application/json").send(&body.to_string()).unwrap();
            let h = |n: &str| r.headers().get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
            (r.status().as_u16(), h("x-vigil-arm"), h("x-vigil-assignment"))
        };
        let row = json!([0.1, -0.2, 0.3, 0.4, -0.5, 0.6, 0.7, 0.8]);
        let mut arms = std::collections::HashSet::new();
        for p in patients.iter().take(40) {
            let mlflow = routed("/invocations", json!({"params": {"patient_id": p}, "dataframe_split": {"data": [row]}}));
            let oip = routed("/v2/models/sepsis/infer", json!({"parameters": {"patient_id": p}, "inputs": [{"name": "X", "shape": [1, 8], "datatype": "FP32", "data": row}]}));
            assert_eq!((mlflow.0, mlflow.2.as_str()), (200, "keyed"), "{p}");
            assert_eq!(mlflow, oip, "one patient, one arm, in either protocol");
            assert_eq!(routed("/invocations", json!({"dataframe_split": {"data": [row]}, "params": {"patient_id": p}})), mlflow, "wherever params sits in the body");
            arms.insert(mlflow.1);
        }
        assert_eq!(arms.len(), 2, "40 patients over a 50/50 split reach both arms");
        assert_eq!(routed("/invocations", json!({"dataframe_split": {"data": [row]}})).2, "random", "no field: at random");
    }
}

/// Shadow runs and the log's shipper run at a lower priority (nice 10) than live requests.
fn assert_background_threads_yield() {
    const SCHED_IDLE: u32 = 5;
    let (mut idle, mut shippers) = (Vec::new(), Vec::new());
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else { continue };
        let (head, rest) = stat.rsplit_once(')').unwrap();
        let name = head.split_once('(').unwrap().1.to_owned();
        // Fields 19 (nice) and 41 (scheduling policy) of proc_pid_stat(5); `rest` starts at 3.
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let (nice, policy): (i32, u32) = (fields[16].parse().unwrap(), fields[38].parse().unwrap());
        match name.as_str() {
            "vigil-shadow" | "vigil-log-prep" => idle.push((name, policy)),
            "vigil-spool-shi" => shippers.push(nice),
            n if n.starts_with("tokio-runtime") => assert_eq!((nice, policy), (0, 0), "request threads keep their priority"),
            _ => {}
        }
    }
    assert!(idle.iter().any(|(n, _)| n == "vigil-shadow") && idle.iter().any(|(n, _)| n == "vigil-log-prep"), "{idle:?}");
    assert!(idle.iter().all(|(_, p)| *p == SCHED_IDLE), "shadow runs and the log's preparers run under SCHED_IDLE: {idle:?}");
    assert!(!shippers.is_empty() && shippers.iter().all(|n| *n == 10), "shippers run at nice 10: {shippers:?}");
}

#[test]
fn a_shadow_never_changes_the_answer_and_is_counted() {
    for env in envs() {
        env.production("sepsis", "1.0.0", "lr_binary");
        env.wait_for("sepsis", "1.0.0");
        let v2 = env.staging("sepsis", "1.1.0", "rf_binary");
        let off: Vec<Vec<u8>> = (0..20).map(|i| infer_as(&env, Some(&format!("p{i}")), &format!("req-{i}")).3).collect();
        env.deploy("sepsis", json!({"arms": [{"name": "production", "version": "production", "percent": 100}, {"name": "shadow", "version": v2, "role": "shadow", "percent": 100}], "unit_key": "header:x-patient-id"}));
        let (queued, dropped) = (counter(&env, "vigil_gateway_shadow_queued_total"), counter(&env, "vigil_gateway_shadow_dropped_total"));
        let on: Vec<Vec<u8>> = (0..20).map(|i| infer_as(&env, Some(&format!("p{i}")), &format!("req-{i}")).3).collect();
        assert_eq!(on, off, "the caller's bytes are identical with the shadow on and off");
        // Every copy is queued, or dropped when the idle-priority shadow thread was descheduled
        // holding the queue's lock (a request never waits for it): both counted.
        let ran = counter(&env, "vigil_gateway_shadow_queued_total") - queued;
        assert_eq!(ran + counter(&env, "vigil_gateway_shadow_dropped_total") - dropped, 20);
        assert!(ran >= 10, "{ran} of 20 copies queued on an idle gateway");
        assert_background_threads_yield();
        // Shadow runs take idle CPU time only: on a busy machine that can take a while.
        for _ in 0..3000 {
            if counter(&env, "vigil_gateway_shadow_ok_total") >= queued + ran {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(counter(&env, "vigil_gateway_shadow_ok_total") >= queued + ran, "the shadow ran the queued copies");
        // The shadow arm is served as deployed, nothing left out (a shadow that cannot run is
        // the next test's).
        let (_, meta, _) = get(&format!("{}/v2/models/sepsis", env.url));
        assert_eq!(meta["parameters"]["shadows"][0]["version"], "1.1.0");
        assert_eq!(meta["parameters"]["degraded"], json!([]));
    }
}

/// A shadow arm whose version cannot take the live requests (its model takes 20 features,
/// the live one 8) is left out and reported as degraded, with the reason: the caller's bytes
/// are those of no shadow, and no copy is made for it. (A shadow run that fails is counted by
/// the shadow thread: `shadow::tests::a_failed_shadow_run_is_counted_and_the_thread_goes_on`.)
#[test]
fn a_shadow_that_cannot_take_the_requests_is_left_out_and_reported() {
    for env in envs() {
        env.production("sepsis", "1.0.0", "lr_binary");
        env.wait_for("sepsis", "1.0.0");
        let v2 = env.staging("sepsis", "1.1.0", "lr20_binary");
        let off: Vec<Vec<u8>> = (0..5).map(|i| infer_as(&env, Some(&format!("p{i}")), &format!("req-{i}")).3).collect();
        env.deploy("sepsis", json!({"arms": [{"name": "production", "version": "production", "percent": 100}, {"name": "shadow", "version": v2, "role": "shadow", "percent": 100}], "unit_key": "header:x-patient-id"}));
        // (`deploy` returns once the gateway serves the new revision, degraded arms and all.)
        let meta = get(&format!("{}/v2/models/sepsis", env.url)).1;
        assert_eq!(meta["parameters"]["degraded"][0]["arm"], "shadow", "{meta}");
        assert!(meta["parameters"]["degraded"][0]["reason"].as_str().unwrap().contains("takes other inputs"), "{meta}");
        assert_eq!(meta["parameters"]["shadows"], json!([]), "{meta}");
        let queued = counter(&env, "vigil_gateway_shadow_queued_total");
        let on: Vec<Vec<u8>> = (0..5).map(|i| infer_as(&env, Some(&format!("p{i}")), &format!("req-{i}")).3).collect();
        assert_eq!(on, off, "the caller's bytes are identical");
        assert_eq!(counter(&env, "vigil_gateway_shadow_queued_total"), queued, "no copy for a shadow left out");
        // A canary whose version records its features in another order: a frame's columns are
        // taken by the Production version's names, so it is left out too, its share answered
        // by Production.
        let reversed: Vec<&str> = FEATURES.iter().rev().copied().collect();
        let v3 = env.staging_with("sepsis", "1.2.0", "rf_binary", &reversed);
        env.deploy("sepsis", json!({"arms": [{"name": "production", "version": "production", "percent": 50}, {"name": "canary", "version": v3, "percent": 50}], "unit_key": "header:x-patient-id"}));
        let meta = get(&format!("{}/v2/models/sepsis", env.url)).1;
        assert_eq!(meta["parameters"]["degraded"][0]["arm"], "canary", "{meta}");
        assert!(meta["parameters"]["degraded"][0]["reason"].as_str().is_some_and(|r| r.contains("recorded feature names")), "{meta}");
        for (i, want) in off.iter().enumerate() {
            assert_eq!(&infer_as(&env, Some(&format!("p{i}")), &format!("req-{i}")).3, want, "answered by the Production version, whichever arm's share");
        }
    }
}

/// POSTs with extra headers; status, body and the response headers.
fn post_with(url: &str, ctype: &str, body: &str, headers: &[(&str, &str)]) -> (u16, Value, ureq::http::HeaderMap) {
    let mut req = agent().post(url).header("content-type", ctype);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send(body).unwrap();
    let st = r.status().as_u16();
    let h = r.headers().clone();
    let text = r.into_body().read_to_string().unwrap_or_default();
    (st, serde_json::from_str(&text).unwrap_or(Value::String(text)), h)
}

fn header(h: &ureq::http::HeaderMap, name: &str) -> String {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned()
}

/// Waits until the gateway at `url` has stored `n` records in the registry (most of that work
/// takes idle CPU time only, or waits up to half a minute: on a busy machine that can take a
/// while).
fn wait_stored(url: &str, n: u64) {
    for _ in 0..3500 {
        if counter_at(url, "vigil_gateway_log_stored_total") >= n {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("the prediction log never stored {n} records");
}

/// A second gateway, with its own spool settings, serving `sepsis` 1.0.0 (lr_binary) from
/// Production; returns once it serves it.
fn sepsis_gateway(env: &Env, spool: &str, tweak: impl FnOnce(&mut vigil_gateway::SpoolConfig)) -> String {
    env.production("sepsis", "1.0.0", "lr_binary");
    env.wait_for("sepsis", "1.0.0");
    let mut cfg = spool_config(env.dir.path().join(spool));
    tweak(&mut cfg);
    let url = env.gateway(cfg).unwrap();
    for _ in 0..200 {
        if get(&format!("{url}/v2/models/sepsis/ready")).0 == 200 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    url
}

fn row(i: usize) -> Vec<f64> {
    (0..8).map(|j| ((i * 7 + j * 3) % 11) as f64 / 10.0 - 0.5).collect()
}

#[test]
fn every_answer_is_logged_and_feeds_the_versions_drift_monitor_and_labels_join_by_request_id() {
    for env in envs() {
        let file = env.production("sepsis", "1.0.0", "lr_binary");
        env.wait_for("sepsis", "1.0.0");
        env.deploy("sepsis", json!({"arms": [{"name": "production", "version": "production", "percent": 100}], "unit_key": "header:x-patient-id"}));
        let v = env.registry.get_version(&ModelName::parse("sepsis").unwrap(), &Version::parse("1.0.0").unwrap()).unwrap();
        // A baseline over the same features, so the logged rows are checked against it.
        let mut base = vigil_core::monitor::Batch::default();
        for (j, f) in FEATURES.iter().enumerate() {
            base.features.insert((*f).to_owned(), vigil_core::monitor::Column::numeric((0..300).map(|i| Some(row(i)[j]))));
        }
        env.registry.set_baseline(&env.login("ds"), &v.id, &base).unwrap();

        let mut ids = Vec::new();
        let mut scores = Vec::new();
        let started = vigil_core::ids::Timestamp::from_datetime(chrono::Utc::now()).micros();
        for i in 0..30 {
            let body = json!({"inputs": [{"name": "X", "shape": [1, 8], "datatype": "FP32", "data": row(i)}]}).to_string();
            let (st, out, h) = post_with(&format!("{}/v2/models/sepsis/infer", env.url), "application/json", &body, &[("x-patient-id", &format!("MRN-{i:04}"))]);
            assert_eq!(st, 200, "{out}");
            let id = header(&h, "x-vigil-request-id");
            assert!(id.starts_with("req_"), "{id}");
            assert_eq!(out["id"], id.as_str(), "without an id of its own, the caller gets the gateway's");
            let probs = out["outputs"].as_array().unwrap().iter().find(|o| o["name"] == "probabilities").unwrap()["data"].clone();
            scores.push(probs[1].as_f64().unwrap());
            ids.push(id);
        }
        // MLflow, three rows, with the caller's own request id.
        let rows3: Vec<Vec<f64>> = (30..33).map(row).collect();
        let (st, out, h) = post_with(&format!("{}/invocations", env.url), "application/json", &json!({"instances": rows3}).to_string(), &[("x-request-id", "enc-77.a")]);
        assert_eq!(st, 200, "{out}");
        let multi = header(&h, "x-vigil-request-id");
        let (st, out, _) = post_with(&format!("{}/invocations", env.url), "application/json", &json!({"instances": rows3}).to_string(), &[("x-request-id", "no spaces allowed")]);
        assert_eq!(st, 400, "a malformed x-request-id is refused: {out}");
        wait_stored(&env.url, 31);

        let reader = env.login("clin");
        let got = env.registry.predictions(&reader, &ids[4]).unwrap();
        assert_eq!(got.len(), 1);
        let r = &got[0].record;
        assert_eq!((r.role.as_str(), r.version.as_str(), r.version_id.as_str(), r.arm.as_str(), r.assignment.as_str()), ("live", "1.0.0", v.id.as_str(), "production", "keyed"));
        assert_eq!(r.digest, hex::encode(Sha256::digest(std::fs::read(&file).unwrap())));
        assert_eq!(r.unit_hash.as_deref(), Some(env.registry.unit_bucket("sepsis", "MRN-0004").0.as_str()), "the unit is logged as its keyed hash");
        assert_eq!(r.rows, 1);
        for (j, f) in FEATURES.iter().enumerate() {
            let logged = r.features[*f][0].as_f64().unwrap();
            assert!((logged - row(4)[j]).abs() < 1e-6, "{f}: the input vector by feature name");
        }
        assert!((r.scores.as_ref().unwrap()[0].unwrap() - scores[4]).abs() < 1e-6, "the score is the positive-class probability answered");
        assert!(r.outputs.contains_key("probabilities") && r.outputs.contains_key("label"));
        assert!(r.latency_us > 0);
        assert_eq!(r.endpoint, "sepsis");
        let now = vigil_core::ids::Timestamp::from_datetime(chrono::Utc::now()).micros();
        assert!(r.at.micros() >= started && r.at.micros() <= now, "logged at the time of the answer");
        let text = vigil_core::predlog::prediction_json(&got[0]).to_string();
        assert!(!text.contains("MRN-"), "the raw patient id is never logged");
        // The read itself is audited.
        let reads = env.registry.audit_log(&vigil_core::store::AuditQuery { action: Some("prediction.read".into()), ..Default::default() }).unwrap();
        assert_eq!(reads.len(), 1);
        // The caller's id finds the multi-row record too.
        let m = env.registry.predictions(&reader, "enc-77.a").unwrap();
        assert_eq!((m.len(), m[0].record.request_id.as_str(), m[0].record.rows, m[0].record.client_id.as_deref()), (1, multi.as_str(), 3, Some("enc-77.a")));
        // Without the unit key, assigned at random and recorded as such (no unit hash).
        assert_eq!((m[0].record.assignment.as_str(), m[0].record.unit_hash.as_deref(), m[0].record.bucket.is_some()), ("random", None, true));

        // The logged rows are the version's production window.
        let check = env.registry.detect_drift(&env.login("ds"), &v.id, vigil_core::monitor::Window::SinceBaseline).unwrap();
        assert_eq!(check.window_rows, 33);
        assert!(check.performance.is_none(), "no labels yet");
        // Labels posted later by request id (and row) join the logged predictions.
        let mut labels: Vec<(String, String)> = ids.iter().enumerate().map(|(i, id)| (id.clone(), if scores[i] >= 0.5 { "1" } else { "0" }.to_owned())).collect();
        labels.push((format!("{multi}#2"), "1".into()));
        labels.push(("enc-77.a#0".into(), "0".into()));
        labels.push(("req_never_logged".into(), "1".into()));
        labels.push((format!("{multi}#9"), "1".into()));
        assert_eq!(env.registry.add_prediction_labels(&env.login("ds"), &labels).unwrap(), (32, 2));
        let check = env.registry.detect_drift(&env.login("ds"), &v.id, vigil_core::monitor::Window::SinceBaseline).unwrap();
        let perf = check.performance.unwrap();
        assert_eq!(perf.labelled, 32);
        assert!(perf.accuracy > 0.9, "the labels agree with the answers: {}", perf.accuracy);
        // The log is append-only and every segment is in the audit trail.
        let logged = env.registry.audit_log(&vigil_core::store::AuditQuery { action: Some("prediction.log".into()), ..Default::default() }).unwrap();
        let total: u64 = logged.iter().map(|e| serde_json::from_str::<Value>(&e.details).unwrap()["new"]["records"].as_u64().unwrap()).sum();
        assert_eq!(total, 31);
        assert!(env.registry.verify_audit().unwrap().ok());
    }
}

#[test]
fn shadow_records_are_paired_with_the_live_answer_by_request_id() {
    for env in envs() {
        env.production("sepsis", "1.0.0", "lr_binary");
        env.wait_for("sepsis", "1.0.0");
        let v2 = env.staging("sepsis", "1.1.0", "rf_binary");
        env.deploy("sepsis", json!({"arms": [{"name": "production", "version": "production", "percent": 100}, {"name": "shadow", "version": v2, "role": "shadow", "percent": 100}]}));
        // Each version's drift monitor, from a baseline over the same features.
        let mut base = vigil_core::monitor::Batch::default();
        for (j, f) in FEATURES.iter().enumerate() {
            base.features.insert((*f).to_owned(), vigil_core::monitor::Column::numeric((0..300).map(|i| Some(row(i)[j]))));
        }
        let v1 = env.registry.get_version(&ModelName::parse("sepsis").unwrap(), &Version::parse("1.0.0").unwrap()).unwrap().id;
        for v in [&v1, &v2] {
            env.registry.set_baseline(&env.login("ds"), v, &base).unwrap();
        }
        let (st, _, h) = post_with(&format!("{}/v2/models/sepsis/infer", env.url), "application/json", &json!({"id": "pair-1", "inputs": [{"name": "X", "shape": [1, 8], "datatype": "FP32", "data": row(3)}]}).to_string(), &[]);
        assert_eq!(st, 200);
        wait_stored(&env.url, 2);
        let got = env.registry.predictions(&env.login("ds"), "pair-1").unwrap();
        assert_eq!(got.len(), 2, "the live answer and the shadow run");
        let (live, shadow) = (&got[0].record, &got[1].record);
        assert_eq!((live.role.as_str(), shadow.role.as_str()), ("live", "shadow"));
        assert_eq!(live.request_id, header(&h, "x-vigil-request-id"));
        assert_eq!(shadow.request_id, live.request_id, "paired by request id");
        assert_eq!((live.version.as_str(), shadow.version.as_str(), shadow.arm.as_str()), ("1.0.0", "1.1.0", "shadow"));
        assert_eq!(shadow.features, live.features, "the shadow got the same assembled input");
        assert_eq!(shadow.status, "ok");
        // The gateway's own id finds the pair too.
        assert_eq!(env.registry.predictions(&env.login("ds"), &live.request_id).unwrap().len(), 2);
        // Each run feeds its own version's window: the challenger is monitored as it shadows.
        for v in [&v1, &v2] {
            assert_eq!(env.registry.detect_drift(&env.login("ds"), v, vigil_core::monitor::Window::SinceBaseline).unwrap().window_rows, 1, "{v}");
        }
    }
}

#[test]
fn a_record_larger_than_a_buffers_share_is_queued_while_the_spool_has_room() {
    for env in envs() {
        // 64 bytes shared out over the buffers: every 50-row record (kilobytes) is larger than
        // a buffer's share, and is still taken by an empty buffer, not refused as "full".
        let url = sepsis_gateway(&env, "small-buffers", |c| c.queue_bytes = 64);
        let rows: Vec<f64> = (0..50).flat_map(row).collect();
        let body = json!({"inputs": [{"name": "X", "shape": [50, 8], "datatype": "FP32", "data": rows}]}).to_string();
        // Fewer records than buffers (at least 4), sent one after another: there is always an
        // empty one, whether or not the writer has collected the others yet.
        for _ in 0..3 {
            let (st, out, _) = post_with(&format!("{url}/v2/models/sepsis/infer"), "application/json", &body, &[]);
            assert_eq!(st, 200, "{out}");
        }
        wait_stored(&url, 3);
        assert_eq!(counter_at(&url, "vigil_gateway_log_rejected_total"), 0);
        assert_eq!(counter_at(&url, "vigil_gateway_log_failed_total"), 0);
    }
}

#[test]
fn a_full_spool_refuses_or_drops_as_the_endpoint_says_and_counts_it() {
    for env in envs() {
        // Buffers of capacity zero are always full.
        let url = sepsis_gateway(&env, "full-spool", |c| c.queue_bytes = 0);
        let body = json!({"inputs": [{"name": "X", "shape": [1, 8], "datatype": "FP32", "data": row(1)}]}).to_string();
        let (st, out, h) = post_with(&format!("{url}/v2/models/sepsis/infer"), "application/json", &body, &[]);
        assert_eq!((st, header(&h, "x-vigil-error").as_str()), (503, "prediction_log_full"), "default policy: reject; {out}");
        assert!(out["error"].as_str().unwrap().starts_with("prediction_log_full"));
        let (st, out, _) = post_with(&format!("{url}/invocations"), "application/json", &json!({"instances": [row(1)]}).to_string(), &[]);
        assert_eq!((st, out["error_code"].as_str()), (503, Some("TEMPORARILY_UNAVAILABLE")));
        let get_counter = |name: &str| counter_at(&url, name);
        assert_eq!(get_counter("vigil_gateway_log_rejected_total"), 2);
        // The endpoint's policy says drop: answered, unlogged, counted.
        env.deploy("sepsis", json!({"arms": [{"name": "production", "version": "production", "percent": 100}], "full_spool": "drop"}));
        for _ in 0..200 {
            let (_, meta, _) = get(&format!("{url}/v2/models/sepsis"));
            if meta["parameters"]["deployment_revision"] == 1 {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let (st, _, _) = post_with(&format!("{url}/v2/models/sepsis/infer"), "application/json", &body, &[]);
        assert_eq!(st, 200);
        assert_eq!(get_counter("vigil_gateway_log_dropped_total"), 1);
        assert_eq!(get_counter("vigil_gateway_log_queued_total"), 0);
    }
}

/// The spool's limit on disk (`--spool-max-mb`): once its files hold that much, the next
/// answer follows the endpoint's policy (reject: 503; drop: answered unlogged), counted; what
/// was logged before stays logged.
#[test]
fn a_spool_at_its_disk_limit_refuses_or_drops_and_counts_it() {
    for env in envs() {
        // One byte: the first record's segment fills it. Its segment stays open (and on disk)
        // for the test's length.
        let url = sepsis_gateway(&env, "disk-limit", |c| {
            c.max_bytes = 1;
            c.seal_after = Duration::from_secs(3600);
        });
        let infer = || post_with(&format!("{url}/v2/models/sepsis/infer"), "application/json", &json!({"inputs": [{"name": "X", "shape": [1, 8], "datatype": "FP32", "data": row(1)}]}).to_string(), &[]);
        assert_eq!(infer().0, 200, "an empty spool takes the first record");
        for _ in 0..500 {
            if counter_at(&url, "vigil_gateway_log_spooled_total") >= 1 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(counter_at(&url, "vigil_gateway_log_spooled_total"), 1);
        let (st, out, h) = infer();
        assert_eq!((st, header(&h, "x-vigil-error").as_str()), (503, "prediction_log_full"), "{out}");
        assert_eq!(counter_at(&url, "vigil_gateway_log_rejected_total"), 1);
        assert_eq!(counter_at(&url, "vigil_gateway_log_queued_total"), 1, "only the first was queued");
        env.deploy("sepsis", json!({"arms": [{"name": "production", "version": "production", "percent": 100}], "full_spool": "drop"}));
        for _ in 0..200 {
            if get(&format!("{url}/v2/models/sepsis")).1["parameters"]["deployment_revision"] == 1 {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(infer().0, 200);
        assert_eq!((counter_at(&url, "vigil_gateway_log_dropped_total"), counter_at(&url, "vigil_gateway_log_queued_total")), (1, 1));
    }
}

#[test]
fn a_segment_left_by_a_crash_is_shipped_once_up_to_its_last_whole_frame() {
    for env in envs() {
        env.production("sepsis", "1.0.0", "lr_binary");
        let v = env.registry.get_version(&ModelName::parse("sepsis").unwrap(), &Version::parse("1.0.0").unwrap()).unwrap();
        let dir = env.dir.path().join("crashed-spool");
        std::fs::create_dir_all(&dir).unwrap();
        let rec = json!({"request_id": "req_crash1", "role": "live", "endpoint": "sepsis", "version_id": v.id, "version": "1.0.0", "arm": "production",
            "digest": "ab", "assignment": "random", "bucket": 5, "at": "2026-11-29T10:00:00Z", "latency_us": 80, "status": "ok", "rows": 1,
            "features": {"age": [0.5]}, "scores": [0.7], "outputs": {}});
        let first: vigil_core::predlog::PredictionRecord = serde_json::from_value(rec.clone()).unwrap();
        let mut second = first.clone();
        second.request_id = "req_crash2".into();
        let mut seg = vigil_core::predwire::new_segment();
        vigil_core::predwire::encode_record(&first, &mut seg);
        let whole = seg.len();
        vigil_core::predwire::encode_record(&second, &mut seg);
        // The second frame was cut short by the crash.
        seg.truncate(whole + (seg.len() - whole) / 2);
        std::fs::write(dir.join("open-seg_crash.vpl"), &seg).unwrap();
        // The writer's form: records in compressed blocks; the second block was cut short.
        let named = |id: &str| {
            let mut r = first.clone();
            r.request_id = id.into();
            let mut frame = Vec::new();
            vigil_core::predwire::encode_record(&r, &mut frame);
            frame
        };
        let mut blocks = vigil_core::predwire::BlockWriter::fast();
        let mut seg = vigil_core::predwire::new_segment();
        let run: Vec<u8> = [named("req_crash3"), named("req_crash4"), named("req_crash5")].concat();
        assert_eq!(blocks.append(&run, &mut seg).unwrap(), vigil_core::predwire::Written::Block);
        let whole = seg.len();
        blocks.append(&[named("req_crash6"), named("req_crash7"), named("req_crash8")].concat(), &mut seg).unwrap();
        seg.truncate(seg.len() - 4);
        assert!(seg.len() > whole);
        std::fs::write(dir.join("open-seg_crash_blocks.vpl"), &seg).unwrap();
        let url = env.gateway(spool_config(dir.clone())).unwrap();
        // The same directory cannot be opened twice.
        let second = env.gateway(spool_config(dir.clone()));
        assert!(second.unwrap_err().to_string().contains("in use"));
        wait_stored(&url, 4);
        assert_eq!(counter_at(&url, "vigil_gateway_log_corrupt_total"), 2);
        assert!(!dir.join("open-seg_crash.vpl").exists() && !dir.join("ready-seg_crash.vpl").exists());
        assert!(!dir.join("ready-seg_crash_blocks.vpl").exists());
        // Shipped again (a crash between commit and delete): stored once.
        assert!(env.registry.record_predictions("seg_crash", "gw", &[first]).unwrap().duplicate);
        assert!(env.registry.predictions(&env.login("ds"), "req_crash2").unwrap().is_empty());
        assert_eq!(env.registry.predictions(&env.login("ds"), "req_crash1").unwrap().len(), 1);
        for (id, n) in [("req_crash3", 1), ("req_crash5", 1), ("req_crash6", 0), ("req_crash8", 0)] {
            assert_eq!(env.registry.predictions(&env.login("ds"), id).unwrap().len(), n, "{id}");
        }
    }
}

/// What a direct request with these rows answers (the positive-class probabilities).
fn direct_probabilities(url: &str, rows: &[Vec<f64>]) -> Vec<f64> {
    let flat: Vec<f64> = rows.iter().flatten().copied().collect();
    let body = json!({"inputs": [{"name": "X", "shape": [rows.len(), 8], "datatype": "FP64", "data": flat}]}).to_string();
    let (st, out, _) = post_with(&format!("{url}/v2/models/sepsis/infer"), "application/json", &body, &[]);
    assert_eq!(st, 200, "{out}");
    probabilities(&out)
}

fn probabilities(out: &Value) -> Vec<f64> {
    let p = out["outputs"].as_array().unwrap().iter().find(|o| o["name"] == "probabilities").unwrap();
    p["data"].as_array().unwrap().chunks(2).map(|c| c[1].as_f64().unwrap()).collect()
}

fn entity_request(ids: &[&str]) -> String {
    json!({"inputs": [{"name": "patient_id", "shape": [ids.len()], "datatype": "BYTES", "data": ids}]}).to_string()
}

/// The feature values the Feast fixture (`tests/feast/make_repo.py`) materialises for patient `p`.
fn feast_row(p: usize) -> Vec<f64> {
    (0..8).map(|j| ((p * 7 + j * 3) % 11) as f64 / 10.0 - 0.5).collect()
}

#[test]
fn an_entity_id_is_answered_from_the_embedded_online_store_assembled_by_name() {
    for env in envs() {
        env.production("sepsis", "1.0.0", "lr_binary");
        env.wait_for("sepsis", "1.0.0");
        let v2 = env.staging("sepsis", "1.1.0", "rf_binary");
        // Columns in another order than the model's: assembled by name.
        let mut data = vigil_core::monitor::Batch::default();
        data.features.insert("patient_id".into(), vigil_core::monitor::Column::categorical(["P1", "P2", "P3"].map(Some)));
        for (j, f) in FEATURES.iter().enumerate().rev() {
            let vals: Vec<Option<f64>> = (1..=3).map(|p| if p == 3 && *f == "spo2" { None } else { Some(feast_row(p)[j]) }).collect();
            data.features.insert((*f).to_owned(), vigil_core::monitor::Column::numeric(vals));
        }
        assert_eq!(env.registry.put_online_features(&env.login("ds"), "vitals", "patient_id", &data).unwrap(), (3, 8));
        assert!(env.registry.put_online_features(&env.login("clin"), "vitals", "patient_id", &data).is_err(), "reviewers do not write features");
        env.deploy(
            "sepsis",
            json!({"arms": [{"name": "production", "version": "production", "percent": 100}, {"name": "shadow", "version": v2, "role": "shadow", "percent": 100}],
                   "features": {"entity": "patient_id", "source": "embedded", "feature_set": "vitals"}}),
        );
        let want = direct_probabilities(&env.url, &[feast_row(1), feast_row(2)]);
        let (st, out, h) = post_with(&format!("{}/v2/models/sepsis/infer", env.url), "application/json", &entity_request(&["P1", "P2"]), &[]);
        assert_eq!(st, 200, "{out}");
        assert_eq!(probabilities(&out), want, "the same answer as with the features given");
        let (st, out, _) = post_with(&format!("{}/invocations", env.url), "application/json", &json!({"dataframe_records": [{"patient_id": "P2"}]}).to_string(), &[]);
        assert_eq!(st, 200, "{out}");
        assert!((out["predictions"][0]["probabilities"][1].as_f64().unwrap() - want[1]).abs() < 1e-12, "{out}");
        // A required feature missing: refused, named, no entity id or value in the message.
        let (st, out, h2) = post_with(&format!("{}/v2/models/sepsis/infer", env.url), "application/json", &entity_request(&["P1", "P3"]), &[]);
        assert_eq!((st, header(&h2, "x-vigil-error").as_str()), (422, "feature_missing"), "{out}");
        let msg = out["error"].as_str().unwrap();
        assert!(msg.contains("spo2 (missing)") && msg.contains("1 of 2") && !msg.contains("P3"), "{msg}");
        let (st, out, _) = post_with(&format!("{}/invocations", env.url), "application/json", &json!({"instances": [{"patient_id": "P404"}]}).to_string(), &[]);
        assert_eq!((st, out["error_code"].as_str()), (422, Some("INVALID_PARAMETER_VALUE")), "{out}");
        let (st, _, _) = post_with(&format!("{}/v2/models/sepsis/infer", env.url), "application/json", &json!({"inputs": [{"name": "patient_id", "shape": [1], "datatype": "FP32", "data": [1.5]}]}).to_string(), &[]);
        assert_eq!(st, 400, "an id must be text or a whole number");
        // The log has the statuses and the lookup time; the shadow got the same assembled input.
        // Two answers and their shadow runs (shadow records are stored from segments of their own).
        wait_stored(&env.url, 4);
        let got = env.registry.predictions(&env.login("ds"), &header(&h, "x-vigil-request-id")).unwrap();
        assert_eq!(got.len(), 2);
        let (live, shadow) = (&got[0].record, &got[1].record);
        assert_eq!(live.feature_statuses.as_ref().unwrap()["spo2"], vec!["present", "present"]);
        assert!(live.lookup_us.is_some());
        // Lookup times are a histogram at /metrics: one more lookup, one more in the count and
        // in the buckets from its own up; failed lookups are not in it.
        let histogram = || {
            let text = agent().get(&format!("{}/metrics", env.url)).call().unwrap().into_body().read_to_string().unwrap();
            let buckets: Vec<u64> = text.lines().filter(|l| l.starts_with("vigil_gateway_feature_lookup_seconds_bucket")).map(|l| l.rsplit(' ').next().unwrap().parse().unwrap()).collect();
            let sum: f64 = text.lines().find(|l| l.starts_with("vigil_gateway_feature_lookup_seconds_sum")).unwrap().rsplit(' ').next().unwrap().parse().unwrap();
            (buckets, sum, counter_at(&env.url, "vigil_gateway_feature_lookup_seconds_count"))
        };
        let (b0, s0, n0) = histogram();
        assert_eq!(post_with(&format!("{}/v2/models/sepsis/infer", env.url), "application/json", &entity_request(&["P1"]), &[]).0, 200);
        assert_eq!(post_with(&format!("{}/v2/models/sepsis/infer", env.url), "application/json", &entity_request(&["P404"]), &[]).0, 422);
        let (b1, s1, n1) = histogram();
        assert_eq!(n1, n0 + 1, "one successful lookup counted, the failed one not");
        assert_eq!(b1.len(), LOOKUP_BUCKETS);
        assert!(b1.windows(2).all(|w| w[0] <= w[1]), "cumulative buckets: {b1:?}");
        assert_eq!(*b1.last().unwrap(), n1, "+Inf holds every lookup");
        let grew: Vec<u64> = b1.iter().zip(&b0).map(|(a, b)| a - b).collect();
        let from = grew.iter().position(|d| *d == 1).unwrap();
        assert!(grew[..from].iter().all(|d| *d == 0) && grew[from..].iter().all(|d| *d == 1), "the lookup in its bucket and every one above: {grew:?}");
        assert!(s1 > s0, "its time added to the sum");
        assert_eq!(shadow.features, live.features);
        assert!((live.features["lactate"][1].as_f64().unwrap() - feast_row(2)[0]).abs() < 1e-6);
        // Values older than the deployment's maximum age are not used.
        env.deploy("sepsis", json!({"arms": [{"name": "production", "version": "production", "percent": 100}], "features": {"entity": "patient_id", "source": "embedded", "feature_set": "vitals", "max_age_seconds": 1}}));
        std::thread::sleep(Duration::from_millis(1100));
        let (st, out, _) = post_with(&format!("{}/v2/models/sepsis/infer", env.url), "application/json", &entity_request(&["P1"]), &[]);
        assert_eq!(st, 422, "{out}");
        assert!(out["error"].as_str().unwrap().contains("outside_max_age"));
        // Features sent directly still work on an endpoint with a lookup.
        assert_eq!(direct_probabilities(&env.url, &[feast_row(1)]), want[..1].to_vec());
    }
}

/// A Feast feature server over the fixture repository, stopped on drop.
struct Feast {
    child: std::process::Child,
    url: String,
    _repo: tempfile::TempDir,
}

impl Drop for Feast {
    fn drop(&mut self) {
        // `feast serve` forks its server processes: the whole process group goes (killing only
        // the parent left them running after every test run).
        let _ = std::process::Command::new("kill").args(["-KILL", "--", &format!("-{}", self.child.id())]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts Feast from the Python environment `VIGIL_FEAST_PYTHON` names; `None` when unset
/// (a failure instead under CI or VIGIL_REQUIRE_FEAST).
fn feast() -> Option<Feast> {
    use std::os::unix::process::CommandExt;
    let python = match std::env::var("VIGIL_FEAST_PYTHON") {
        Ok(p) if !p.is_empty() => PathBuf::from(p),
        _ if std::env::var_os("CI").is_some() || std::env::var_os("VIGIL_REQUIRE_FEAST").is_some() => panic!("VIGIL_FEAST_PYTHON is not set but the Feast test is required"),
        _ => {
            eprintln!("skipping the Feast test: VIGIL_FEAST_PYTHON is not set");
            return None;
        }
    };
    let repo = tempfile::tempdir().unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/feast/make_repo.py");
    let ok = std::process::Command::new(&python).arg(&script).arg(repo.path()).status().unwrap();
    assert!(ok.success(), "the Feast fixture repository could not be built");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = std::process::Command::new(python.parent().unwrap().join("feast"))
        .args(["-c", repo.path().to_str().unwrap(), "serve", "-h", "127.0.0.1", "-p", &port.to_string(), "--max-requests", "0", "--no-access-log"])
        .process_group(0)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let f = Feast { child, url: format!("http://127.0.0.1:{port}"), _repo: repo };
    for _ in 0..240 {
        if agent().get(&format!("{}/health", f.url)).call().is_ok_and(|r| r.status() == 200) {
            return Some(f);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("the Feast feature server did not start");
}

#[test]
fn feast_features_are_assembled_by_name_and_missing_ones_fail_clearly() {
    let Some(feast) = feast() else { return };
    for env in envs() {
        env.production("sepsis", "1.0.0", "lr_binary");
        env.wait_for("sepsis", "1.0.0");
        let lookup = |extra: Value| {
            let mut f = json!({"entity": "patient_id", "source": "feast", "url": feast.url, "feature_view": "patient_vitals", "timeout_ms": 5000});
            for (k, v) in extra.as_object().unwrap() {
                f[k] = v.clone();
            }
            env.deploy("sepsis", json!({"arms": [{"name": "production", "version": "production", "percent": 100}], "features": f}));
        };
        lookup(json!({}));
        let want = direct_probabilities(&env.url, &[feast_row(3), feast_row(7), feast_row(12)]);
        let (st, out, h) = post_with(&format!("{}/v2/models/sepsis/infer", env.url), "application/json", &entity_request(&["P3", "P7", "P12"]), &[]);
        assert_eq!(st, 200, "{out}");
        let got = probabilities(&out);
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-6, "Feast's column order is not the model's: assembled by name ({g} vs {w})");
        }
        let (st, out, _) = post_with(&format!("{}/invocations", env.url), "application/json", &json!({"dataframe_split": {"columns": ["patient_id"], "data": [["P7"]]}}).to_string(), &[]);
        assert_eq!(st, 200, "{out}");
        assert!((out["predictions"][0]["probabilities"][1].as_f64().unwrap() - want[1]).abs() < 1e-6);
        // Through a feature service over a view declared in the reverse of the model's order,
        // Feast 0.67 answers in an order of its own (hr, lactate, map, rr, …): the same
        // answers, assembled by name.
        lookup(json!({"feature_view": null, "feature_service": "vitals_all"}));
        let (st, out, _) = post_with(&format!("{}/v2/models/sepsis/infer", env.url), "application/json", &entity_request(&["P3", "P7", "P12"]), &[]);
        assert_eq!(st, 200, "{out}");
        for (g, w) in probabilities(&out).iter().zip(&want) {
            assert!((g - w).abs() < 1e-6, "a feature service's order is not the model's: assembled by name ({g} vs {w})");
        }
        lookup(json!({}));
        // P20 has no spo2; P99 is unknown to Feast (still HTTP 200 there): both refused.
        for ids in [["P3", "P20"], ["P99", "P3"]] {
            let (st, out, h) = post_with(&format!("{}/v2/models/sepsis/infer", env.url), "application/json", &entity_request(&ids), &[]);
            assert_eq!((st, header(&h, "x-vigil-error").as_str()), (422, "feature_missing"), "{out}");
            assert!(!out["error"].as_str().unwrap().contains('P'), "no entity id in the message: {out}");
        }
        wait_stored(&env.url, 3);
        let r = &env.registry.predictions(&env.login("ds"), &header(&h, "x-vigil-request-id")).unwrap()[0].record;
        assert_eq!(r.feature_statuses.as_ref().unwrap()["hr"], vec!["present"; 3]);
        assert!((r.features["glucose"][2].as_f64().unwrap() - feast_row(12)[2]).abs() < 1e-6, "logged as the model took it (FP32)");
        // The deployment's maximum age applies to Feast's values too (materialised as of 2026-01-01).
        lookup(json!({"max_age_seconds": 86_400}));
        let (st, out, _) = post_with(&format!("{}/v2/models/sepsis/infer", env.url), "application/json", &entity_request(&["P3"]), &[]);
        assert_eq!(st, 422, "{out}");
        assert!(out["error"].as_str().unwrap().contains("outside_max_age"), "{out}");
        // A feature server that does not answer: 502, never a guess.
        lookup(json!({"url": "http://127.0.0.1:9", "timeout_ms": 500}));
        let (st, out, h) = post_with(&format!("{}/v2/models/sepsis/infer", env.url), "application/json", &entity_request(&["P3"]), &[]);
        assert_eq!((st, header(&h, "x-vigil-error").as_str()), (502, "feature_store_unavailable"), "{out}");
    }
}

use vigil_testkit::moto;

#[test]
fn models_in_an_s3_artifact_store_are_served_digest_checked() {
    let Some(m) = moto() else { return };
    for (i, env) in envs().into_iter().enumerate() {
        let bucket = format!("gw-models-{i}");
        assert_eq!(agent().put(&format!("{}/{bucket}", m.url)).send("").unwrap().status().as_u16(), 200);
        let s3 = |b: &str| {
            vigil_store::s3::Remote::from_url_with(
                &format!("s3://{b}/team"),
                &[("aws_endpoint", &m.url), ("aws_access_key_id", "test"), ("aws_secret_access_key", "test"), ("aws_region", "us-east-1"), ("aws_allow_http", "true")],
            )
            .unwrap()
        };
        let uploader = s3(&bucket);
        let put = |key: &str, bytes: &[u8]| {
            use object_store::ObjectStoreExt;
            let segs: Vec<&str> = key.split('/').collect();
            env.rt.block_on(uploader.store.put(&uploader.key(&segs), bytes.to_vec().into())).unwrap();
        };
        let onnx = std::fs::read(fixtures().join("lr_binary.onnx")).unwrap();
        let note = b"flavor: onnx\n".to_vec();
        put("1/run1/artifacts/model/model.onnx", &onnx);
        put("1/run1/artifacts/model/MLmodel", &note);
        // The version binds the digest of the directory (every file's path, size, SHA-256).
        let files = vec![("MLmodel".to_owned(), note.len() as u64, hex::encode(Sha256::digest(&note))), ("model.onnx".to_owned(), onnx.len() as u64, hex::encode(Sha256::digest(&onnx)))];
        let digest = vigil_store::artifacts::manifest_digest(files).unwrap();
        let register = |version: &str, uri: &str, digest: Sha256Digest| {
            let mut metrics = Metrics::new();
            metrics.set("auc_roc", 0.9).unwrap();
            let content = VersionContent {
                artifact_uri: uri.to_owned(),
                artifact_sha256: Some(digest),
                metrics,
                lineage: Lineage { training_data_hash: Some("sha256:gw".into()), features: FEATURES.iter().map(|f| (*f).to_owned()).collect(), ..Default::default() },
                card: ModelCard::new(),
            };
            let new = NewModelVersion { name: ModelName::parse("sepsis").unwrap(), version: Version::parse(version).unwrap(), model_type: ModelType::Classification, content, owner: None, description: None, tags: Default::default() };
            let v = env.registry.register_model(&env.login("ds"), new).unwrap();
            assert!(env.registry.validate(&env.login("ds"), &v.id, &holdout(), None).unwrap().passed);
            let r = env.registry.request_promotion(&env.login("ds"), &v.id, Stage::Production, "s3").unwrap();
            for signer in ["lead", "clin"] {
                env.registry.approve_promotion(&uid(signer), &Password::new(PW), &r.id, Meaning::Approval, "ok").unwrap();
            }
        };
        register("1.0.0", "mlflow-artifacts:/1/run1/artifacts/model", digest);
        let url = env.gateway_over(vigil_gateway::Artifacts::s3(s3(&bucket)).unwrap(), spool_config(env.dir.path().join("s3-spool"))).unwrap();
        let want = fixture("lr_binary");
        let (name, rows) = rows(&want);
        let flat: Vec<f64> = rows.iter().flatten().copied().collect();
        let body = json!({"inputs": [{"name": name, "shape": [rows.len(), rows[0].len()], "datatype": "FP32", "data": flat}]}).to_string();
        let mut answered = None;
        for _ in 0..300 {
            let (st, out, _) = post_with(&format!("{url}/v2/models/sepsis/infer"), "application/json", &body, &[]);
            if st == 200 {
                answered = Some(out);
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = answered.expect("the gateway never served the S3 model");
        let probs = out["outputs"].as_array().unwrap().iter().find(|o| o["name"] == "probabilities").unwrap()["data"].clone();
        assert_close(&probs, &want["expected"]["probabilities"]["data"], "S3 model");
        // A version whose objects changed after registration is never served.
        put("1/run2/artifacts/model/model.onnx", &onnx);
        let d2 = vigil_store::artifacts::manifest_digest(vec![("model.onnx".to_owned(), onnx.len() as u64, hex::encode(Sha256::digest(&onnx)))]).unwrap();
        register("1.1.0", "mlflow-artifacts:/1/run2/artifacts/model", d2);
        put("1/run2/artifacts/model/model.onnx", &[onnx.as_slice(), b"x"].concat());
        let mut reason = String::new();
        for _ in 0..300 {
            let (st, out, _) = get(&format!("{url}/v2/models/sepsis"));
            if st == 503 {
                reason = out["error"].as_str().unwrap_or("").to_owned();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(reason.contains("no longer match"), "{reason}");
    }
}

#[test]
fn records_from_concurrent_requests_are_each_spooled_and_stored_once() {
    for env in envs() {
        // Small segments: many seals while several threads hand records over at once.
        let url = sepsis_gateway(&env, "concurrent-spool", |c| c.seal_bytes = 4 << 10);
        let (threads, each) = (6, 60);
        let ids: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let url = url.clone();
                    s.spawn(move || {
                        (0..each)
                            .map(|i| {
                                let body = json!({"inputs": [{"name": "X", "shape": [1, 8], "datatype": "FP32", "data": row(t * each + i)}]}).to_string();
                                let (st, out, h) = post_with(&format!("{url}/v2/models/sepsis/infer"), "application/json", &body, &[]);
                                assert_eq!(st, 200, "{out}");
                                header(&h, "x-vigil-request-id")
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
        });
        let n = (threads * each) as u64;
        wait_stored(&url, n);
        for name in ["vigil_gateway_log_queued_total", "vigil_gateway_log_spooled_total", "vigil_gateway_log_stored_total"] {
            assert_eq!(counter_at(&url, name), n, "{name}");
        }
        assert_eq!(counter_at(&url, "vigil_gateway_log_failed_total"), 0);
        // Each request's record is stored once, with the input it was sent.
        for (k, id) in ids.iter().enumerate().step_by(37) {
            let got = env.registry.predictions(&env.login("ds"), id).unwrap();
            assert_eq!(got.len(), 1, "{id}");
            let sent = row((k / each) * each + k % each);
            let logged: Vec<f64> = (0..8).map(|j| got[0].record.features.values().nth(j).unwrap()[0].as_f64().unwrap()).collect();
            let mut sorted_sent = sent.clone();
            sorted_sent.sort_by(f64::total_cmp);
            let mut sorted_logged = logged.clone();
            sorted_logged.sort_by(f64::total_cmp);
            for (a, b) in sorted_sent.iter().zip(&sorted_logged) {
                assert!((a - b).abs() < 1e-6, "{id}: sent {sent:?}, logged {logged:?}");
            }
        }
        // Sealed at their size: many segments, each an audited shipment.
        let segments: i64 = env.registry.audit_log(&vigil_core::store::AuditQuery { action: Some("prediction.log".into()), ..Default::default() }).unwrap().len() as i64;
        assert!(segments >= 10, "{segments} segments");
    }
}

#[test]
fn large_sealed_segments_are_kept_as_files_on_the_embedded_store_never_copied_into_it() {
    for env in envs() {
        let url = sepsis_gateway(&env, "kept-spool", |c| c.seal_after = Duration::from_millis(500));
        // 100-row requests of noise (values that do not compress, SplitMix64): the segment
        // sealed is well over the size kept as a file, and is kept as it is.
        let value = |k: usize| {
            let mut z = (k as u64).wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        };
        let n = 60;
        let ids: Vec<String> = (0..n)
            .map(|i| {
                let data: Vec<f64> = (0..800).map(|k| value(i * 800 + k)).collect();
                let body = json!({"inputs": [{"name": "X", "shape": [100, 8], "datatype": "FP32", "data": data}]}).to_string();
                let (st, out, h) = post_with(&format!("{url}/v2/models/sepsis/infer"), "application/json", &body, &[]);
                assert_eq!(st, 200, "{out}");
                header(&h, "x-vigil-request-id")
            })
            .collect();
        wait_stored(&url, n as u64);
        let kept: Vec<PathBuf> = std::fs::read_dir(env.dir.path().join(vigil_store::SEGMENT_DIR))
            .map(|days| days.flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap()).map(|f| f.unwrap().path()).collect())
            .unwrap_or_default();
        let embedded = env.dir.path().join(vigil_store::DB_FILE).exists();
        assert_eq!(env.registry.keeps_segment_files(), embedded);
        if embedded {
            assert!(!kept.is_empty() && kept.iter().all(|p| p.extension().is_some_and(|e| e == "vpl")), "{kept:?}");
            // The spool lets its names go once each is stored (just after the count); the
            // bodies are the files it sealed.
            let spooled = || std::fs::read_dir(env.dir.path().join("kept-spool")).unwrap().map(|f| f.unwrap().file_name()).filter(|n| n.to_string_lossy().starts_with("ready-")).collect::<Vec<_>>();
            for _ in 0..250 {
                if spooled().is_empty() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            assert!(spooled().is_empty(), "{:?}", spooled());
            assert!(kept.iter().any(|p| std::fs::metadata(p).unwrap().len() >= vigil_core::predlog::KEEP_FILE_BYTES as u64));
        } else {
            assert!(kept.is_empty(), "PostgreSQL keeps bodies in the database: {kept:?}");
        }
        // Every record reads back, with the input it was sent.
        for (i, id) in ids.iter().enumerate().step_by(13) {
            let got = env.registry.predictions(&env.login("ds"), id).unwrap();
            assert_eq!((got.len(), got[0].record.rows), (1, 100), "{id}");
            let first: Vec<f32> = FEATURES.iter().map(|f| got[0].record.features[*f][0].as_f64().unwrap() as f32).collect();
            let sent: Vec<f32> = (0..8).map(|k| value(i * 800 + k) as f32).collect();
            assert_eq!(first, sent, "{id}");
        }
    }
}
