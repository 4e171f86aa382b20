//! The server over real HTTP on port 0 with an embedded SQLite store: authentication, the
//! role × route matrix, client mistakes answered with 4xx and the right error format, the
//! artifact proxy's path checks, health and metrics.

#![allow(missing_docs, clippy::unwrap_used)]

use base64::Engine;
use serde_json::{Value, json};
use std::sync::Arc;
use vigil_core::approval::ServerKey;
use vigil_core::auth::{Password, Role};
use vigil_core::ids::{SystemClock, UserId, UuidV7Ids};
use vigil_core::registry::Registry;
use vigil_core::store::AuditQuery;

const PW: &str = "correct horse battery";

struct Server {
    url: String,
    registry: Arc<Registry>,
    _dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn start() -> Server {
    start_with(|s| s)
}

fn start_with(configure: impl FnOnce(vigil_server::AppState) -> vigil_server::AppState + Send + 'static) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let store = vigil_store::open_sqlite(dir.path()).unwrap();
    let registry = Arc::new(Registry::new(store, Arc::new(SystemClock), Arc::new(UuidV7Ids), Arc::new(ServerKey::from_seed([7; 32]))));
    registry.init_admin(&UserId::parse("admin").unwrap(), "Ada Admin", &Password::new(PW)).unwrap();
    let admin = registry.authenticate(&UserId::parse("admin").unwrap(), &Password::new(PW)).unwrap();
    for (id, role) in [("ds", Role::DataScientist), ("lead", Role::MlLead), ("clin", Role::ClinicalReviewer), ("comp", Role::ComplianceOfficer)] {
        registry.add_user(&admin, &UserId::parse(id).unwrap(), &format!("User {id}"), role, &Password::new(PW)).unwrap();
    }
    let state = Arc::new(configure(vigil_server::AppState::new(registry.clone(), dir.path().join("artifacts")).unwrap()));
    let (tx, rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            vigil_server::serve(listener, state, async {
                let _ = stop_rx.await;
            })
            .await
            .unwrap();
        });
    });
    let addr = rx.recv().unwrap();
    Server { url: format!("http://{addr}"), registry, _dir: dir, stop: Some(stop_tx), thread: Some(thread) }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).build().into()
}

fn basic(user: &str, pw: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}")))
}

/// (status, parsed body or the raw text as a JSON string)
fn call(method: &str, url: &str, auth: Option<&str>, body: Option<&str>) -> (u16, Value) {
    let a = agent();
    let resp = match (method, body) {
        ("GET", _) => {
            let mut r = a.get(url);
            if let Some(h) = auth {
                r = r.header("authorization", h);
            }
            r.call()
        }
        (m, b) => {
            let mut r = match m {
                "POST" => a.post(url),
                "PUT" => a.put(url),
                "PATCH" => a.patch(url),
                "DELETE" => a.delete(url).force_send_body(),
                _ => panic!("method"),
            };
            if let Some(h) = auth {
                r = r.header("authorization", h);
            }
            r.header("content-type", "application/json").send(b.unwrap_or(""))
        }
    }
    .unwrap();
    let status = resp.status().as_u16();
    let text = resp.into_body().read_to_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn mlflow(s: &Server, method: &str, path: &str, user: &str, body: Value) -> (u16, Value) {
    let auth = basic(user, PW);
    if method == "GET" {
        let enc = |t: &str| t.bytes().map(|b| if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect::<String>();
        let q: Vec<String> = body.as_object().unwrap().iter().map(|(k, v)| format!("{k}={}", enc(&v.as_str().map(str::to_owned).unwrap_or(v.to_string())))).collect();
        call("GET", &format!("{}/api/2.0/mlflow/{path}?{}", s.url, q.join("&")), Some(&auth), None)
    } else {
        call(method, &format!("{}/api/2.0/mlflow/{path}", s.url), Some(&auth), Some(&body.to_string()))
    }
}

#[test]
fn authentication_basic_bearer_and_refusals() {
    let s = start();
    let url = format!("{}/api/2.0/mlflow/experiments/get?experiment_id=0", s.url);
    let (st, body) = call("GET", &url, None, None);
    assert_eq!((st, body["error_code"].as_str()), (401, Some("UNAUTHENTICATED")));
    let (st, _) = call("GET", &url, Some(&basic("ds", "wrong password!")), None);
    assert_eq!(st, 401);
    let (st, _) = call("GET", &url, Some("Bearer vgt_0000"), None);
    assert_eq!(st, 401);
    let (st, _) = call("GET", &url, Some("Digest abc"), None);
    assert_eq!(st, 401);
    let (st, body) = call("GET", &url, Some(&basic("ds", PW)), None);
    assert_eq!((st, body["experiment"]["name"].as_str()), (200, Some("Default")));

    // Login gives a session token that works on MLflow routes; logout revokes it.
    let (st, login) = call("POST", &format!("{}/api/v1/auth/login", s.url), None, Some(&json!({"user": "ds", "password": PW}).to_string()));
    assert_eq!(st, 200, "{login}");
    let bearer = format!("Bearer {}", login["token"].as_str().unwrap());
    assert_eq!(call("GET", &url, Some(&bearer), None).0, 200);
    let (st, me) = call("GET", &format!("{}/api/v1/me", s.url), Some(&bearer), None);
    assert_eq!((st, me["role"].as_str()), (200, Some("data_scientist")));
    // API tokens.
    let (st, tok) = call("POST", &format!("{}/api/v1/tokens", s.url), Some(&bearer), Some(&json!({"name": "ci", "expires_in_days": 30}).to_string()));
    assert_eq!(st, 200, "{tok}");
    let api = format!("Bearer {}", tok["token"].as_str().unwrap());
    assert_eq!(call("GET", &url, Some(&api), None).0, 200);
    let (_, list) = call("GET", &format!("{}/api/v1/tokens", s.url), Some(&api), None);
    assert!(list["tokens"].as_array().unwrap().iter().all(|t| t.get("token").is_none()), "secrets are shown once");
    assert_eq!(call("POST", &format!("{}/api/v1/auth/logout", s.url), Some(&bearer), Some("{}")).0, 200);
    assert_eq!(call("GET", &url, Some(&bearer), None).0, 401);
    assert_eq!(call("GET", &url, Some(&api), None).0, 200, "other tokens survive a logout");
    let (st, body) = call("POST", &format!("{}/api/v1/auth/login", s.url), None, Some(&json!({"user": "ds", "password": "nope nope nope"}).to_string()));
    assert_eq!((st, body["error"]["code"].as_str()), (401, Some("authentication_failed")));
}

/// What the matrix's request bodies refer to.
struct Ctx {
    exp: String,
    exp2: String,
    run: String,
    model: String,
    logged: String,
    nonce: std::cell::Cell<u32>,
}

impl Ctx {
    fn unique(&self, prefix: &str) -> String {
        self.nonce.set(self.nonce.get() + 1);
        format!("{prefix}{}", self.nonce.get())
    }
}

#[test]
fn role_by_route_matrix_with_denials_audited() {
    let s = start();
    let (_, exp) = mlflow(&s, "POST", "experiments/create", "ds", json!({"name": "matrix"}));
    let exp_id = exp["experiment_id"].as_str().unwrap().to_owned();
    let (_, exp2) = mlflow(&s, "POST", "experiments/create", "ds", json!({"name": "matrix-lifecycle"}));
    let (_, run) = mlflow(&s, "POST", "runs/create", "ds", json!({"experiment_id": exp_id, "start_time": 1}));
    let run_id = run["run"]["info"]["run_id"].as_str().unwrap().to_owned();
    let (st, m) = mlflow(&s, "POST", "registered-models/create", "ds", json!({"name": "matrix-model"}));
    assert_eq!(st, 200, "{m}");
    let (st, v) = mlflow(&s, "POST", "model-versions/create", "ds", json!({"name": "matrix-model", "source": "s3://bucket/model", "run_id": run_id}));
    assert_eq!((st, v["model_version"]["version"].as_str()), (200, Some("1")), "{v}");
    let (_, lm) = mlflow(&s, "POST", "logged-models", "ds", json!({"experiment_id": exp_id, "name": "m", "source_run_id": run_id}));
    let logged = lm["model"]["info"]["model_id"].as_str().unwrap().to_owned();
    let ctx = Ctx { exp: exp_id, exp2: exp2["experiment_id"].as_str().unwrap().to_owned(), run: run_id, model: "matrix-model".into(), logged, nonce: Default::default() };

    type Case = (&'static str, &'static str, fn(&Ctx) -> Value, [u16; 5]);
    const W: [u16; 5] = [200, 200, 403, 403, 403];
    const R: [u16; 5] = [200; 5];
    const NONE: [u16; 5] = [403; 5];
    // Roles in order: data_scientist, ml_lead, clinical_reviewer, compliance_officer, admin.
    // Every MLflow route appears (checked below); the order matters where state changes.
    let cases: Vec<Case> = vec![
        ("POST", "experiments/create", |c| json!({"name": c.unique("exp")}), W),
        ("GET", "experiments/get", |c| json!({"experiment_id": c.exp}), R),
        ("GET", "experiments/get-by-name", |_| json!({"experiment_name": "matrix"}), R),
        ("POST", "experiments/search", |_| json!({}), R),
        ("GET", "experiments/search", |_| json!({}), R),
        ("POST", "experiments/set-experiment-tag", |c| json!({"experiment_id": c.exp, "key": "k", "value": "v"}), W),
        ("POST", "experiments/delete", |c| json!({"experiment_id": c.exp2}), W),
        ("POST", "experiments/restore", |c| json!({"experiment_id": c.exp2}), W),
        ("POST", "runs/create", |c| json!({"experiment_id": c.exp}), W),
        ("GET", "runs/get", |c| json!({"run_id": c.run}), R),
        ("POST", "runs/delete", |c| json!({"run_id": c.run}), W),
        ("POST", "runs/restore", |c| json!({"run_id": c.run}), W),
        ("POST", "runs/update", |c| json!({"run_id": c.run, "status": "RUNNING"}), W),
        ("POST", "runs/log-parameter", |c| json!({"run_id": c.run, "key": "p", "value": "1"}), W),
        ("POST", "runs/log-metric", |c| json!({"run_id": c.run, "key": "m", "value": 1.0, "timestamp": 1}), W),
        ("POST", "runs/log-batch", |c| json!({"run_id": c.run, "metrics": [{"key": "m", "value": 2.0, "timestamp": 2, "step": 1}]}), W),
        ("POST", "runs/set-tag", |c| json!({"run_id": c.run, "key": "t", "value": "v"}), W),
        ("POST", "runs/delete-tag", |c| json!({"run_id": c.run, "key": "t"}), [200, 404, 403, 403, 403]),
        ("POST", "runs/search", |c| json!({"experiment_ids": [c.exp]}), R),
        ("GET", "metrics/get-history", |c| json!({"run_id": c.run, "metric_key": "m"}), R),
        ("POST", "runs/log-inputs", |c| json!({"run_id": c.run, "datasets": [{"tags": [{"key": "mlflow.data.context", "value": "training"}], "dataset": {"name": "train", "digest": "abc", "source_type": "local", "source": "{}"}}]}), W),
        ("POST", "runs/outputs", |c| json!({"run_id": c.run, "models": [{"model_id": c.logged, "step": 0}]}), W),
        ("POST", "logged-models", |c| json!({"experiment_id": c.exp, "name": "m2"}), W),
        ("GET", "logged-models/{model_id}", |_| json!({}), R),
        ("PATCH", "logged-models/{model_id}/tags", |_| json!({"tags": [{"key": "k", "value": "v"}]}), W),
        ("PATCH", "logged-models/{model_id}", |_| json!({"status": "LOGGED_MODEL_READY"}), W),
        ("POST", "logged-models/search", |c| json!({"experiment_ids": [c.exp], "filter": "name = 'm'"}), R),
        ("POST", "registered-models/create", |c| json!({"name": c.unique("model-")}), W),
        ("GET", "registered-models/get", |c| json!({"name": c.model}), R),
        ("GET", "registered-models/search", |_| json!({"filter": "name LIKE 'matrix%'"}), R),
        ("DELETE", "registered-models/delete", |c| json!({"name": c.model}), NONE),
        ("POST", "model-versions/create", |c| json!({"name": c.model, "source": "s3://bucket/other"}), W),
        ("GET", "model-versions/get", |c| json!({"name": c.model, "version": "1"}), R),
        ("GET", "model-versions/search", |c| json!({"filter": format!("name = '{}'", c.model)}), R),
        ("GET", "model-versions/get-download-uri", |c| json!({"name": c.model, "version": "1"}), R),
        ("POST", "model-versions/set-tag", |c| json!({"name": c.model, "version": "1", "key": "k", "value": "v"}), W),
        ("DELETE", "model-versions/delete-tag", |c| json!({"name": c.model, "version": "1", "key": "k"}), [200, 404, 403, 403, 403]),
        ("PATCH", "model-versions/update", |c| json!({"name": c.model, "version": "1", "description": "d"}), W),
        ("POST", "model-versions/transition-stage", |c| json!({"name": c.model, "version": "1", "stage": "Staging", "archive_existing_versions": false}), NONE),
        ("DELETE", "model-versions/delete", |c| json!({"name": c.model, "version": "1"}), NONE),
        ("POST", "registered-models/alias", |c| json!({"name": c.model, "alias": "challenger", "version": "1"}), W),
        ("GET", "registered-models/alias", |c| json!({"name": c.model, "alias": "challenger"}), R),
        ("POST", "registered-models/get-latest-versions", |c| json!({"name": c.model}), R),
        ("GET", "registered-models/get-latest-versions", |c| json!({"name": c.model}), R),
        ("DELETE", "registered-models/alias", |c| json!({"name": c.model, "alias": "challenger"}), W),
    ];
    for (method, path, _) in vigil_server::mlflow::ROUTES {
        assert!(cases.iter().any(|(m, p, _, _)| m == method && p == path), "the matrix lacks {method} {path}");
    }
    let mut expected_denials = 0;
    for (method, path, body, expect) in &cases {
        for (i, user) in ["ds", "lead", "clin", "comp", "admin"].iter().enumerate() {
            let concrete = path.replace("{model_id}", &ctx.logged);
            let (st, resp) = mlflow(&s, method, &concrete, user, body(&ctx));
            assert_eq!(st, expect[i], "{user} {method} {path}: {resp}");
            if st == 403 {
                assert_eq!(resp["error_code"].as_str(), Some("PERMISSION_DENIED"), "{user} {path}: {resp}");
            }
            // Every refused write is audited, whatever the reason (role, governance, a missing tag).
            if st >= 400 {
                expected_denials += 1;
            }
        }
    }
    let denied = s.registry.audit_log(&AuditQuery { outcome: Some("denied".into()), ..Default::default() }).unwrap();
    assert_eq!(denied.len(), expected_denials, "every refusal audited");
    // Native: audit verification is open to every role that reads audit.
    for user in ["ds", "comp", "admin"] {
        let (st, v) = call("GET", &format!("{}/api/v1/audit/verify", s.url), Some(&basic(user, PW)), None);
        assert_eq!(st, 200, "{user}: {v}");
    }
    assert!(s.registry.verify_audit().unwrap().ok());
}

#[test]
fn client_mistakes_are_4xx_in_the_routes_format() {
    let s = start();
    let auth = basic("ds", PW);
    let post = |path: &str, body: &str| call("POST", &format!("{}/api/2.0/mlflow/{path}", s.url), Some(&auth), Some(body));
    for (path, body, code) in [
        ("experiments/create", "{not json", "INVALID_PARAMETER_VALUE"),
        ("experiments/create", "[1, 2]", "INVALID_PARAMETER_VALUE"),
        ("experiments/create", r#"{"name": 5}"#, "INVALID_PARAMETER_VALUE"),
        ("experiments/create", "{}", "INVALID_PARAMETER_VALUE"),
        ("runs/log-metric", r#"{"run_id": "0123456789abcdef0123456789abcdef", "key": "a", "value": "abc", "timestamp": 1}"#, "INVALID_PARAMETER_VALUE"),
        ("runs/get", "{}", "ENDPOINT_NOT_FOUND"),
        ("runs/nonexistent", "{}", "ENDPOINT_NOT_FOUND"),
        ("runs/search", r#"{"experiment_ids": ["0"], "filter": "metrics.a > 1 OR metrics.b < 2"}"#, "INVALID_PARAMETER_VALUE"),
        ("runs/search", r#"{"experiment_ids": ["0"], "max_results": 50001}"#, "INVALID_PARAMETER_VALUE"),
        ("runs/update", r#"{"run_id": "0123456789abcdef0123456789abcdef", "status": "FINISHED"}"#, "RESOURCE_DOES_NOT_EXIST"),
    ] {
        let (st, b) = post(path, body);
        assert!((400..500).contains(&st), "{path} {body}: {st} {b}");
        assert_eq!(b["error_code"].as_str(), Some(code), "{path} {body}: {b}");
    }
    // Duplicate experiment names: 400 RESOURCE_ALREADY_EXISTS, as MLflow.
    assert_eq!(post("experiments/create", r#"{"name": "dup"}"#).0, 200);
    let (st, b) = post("experiments/create", r#"{"name": "dup"}"#);
    assert_eq!((st, b["error_code"].as_str()), (400, Some("RESOURCE_ALREADY_EXISTS")));
    // A batch over the limit is refused whole.
    let (_, run) = post("runs/create", r#"{"experiment_id": "0"}"#);
    let run_id = run["run"]["info"]["run_id"].as_str().unwrap().to_owned();
    let metrics: Vec<Value> = (0..1001).map(|i| json!({"key": format!("k{i}"), "value": 1.0, "timestamp": 1, "step": 0})).collect();
    let (st, b) = post("runs/log-batch", &json!({"run_id": run_id, "metrics": metrics}).to_string());
    assert_eq!((st, b["error_code"].as_str()), (400, Some("INVALID_PARAMETER_VALUE")));
    assert!(s.registry.get_run(&run_id).unwrap().metrics.is_empty());
    // Oversized bodies: 413 (the server may answer before the client has sent it all, so
    // the client can also see its connection closed), and the server carries on.
    let huge = format!(r#"{{"name": "{}"}}"#, "x".repeat(17 * 1024 * 1024));
    let sent = agent().post(&format!("{}/api/2.0/mlflow/experiments/create", s.url)).header("authorization", &auth).header("content-type", "application/json").send(huge.as_str());
    match sent {
        Ok(r) => assert_eq!(r.status().as_u16(), 413),
        Err(ureq::Error::Io(e)) => assert!(matches!(e.kind(), std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset), "{e}"),
        Err(e) => panic!("{e}"),
    }
    assert_eq!(post("experiments/create", r#"{"name": "after-huge"}"#).0, 200);
    // Run ids that are not ids never reach the audit trail as given; NUL is refused.
    let long_id = "z".repeat(100_000);
    let (st, _) = post("runs/log-batch", &json!({"run_id": long_id, "params": [{"key": "a", "value": "b"}]}).to_string());
    assert_eq!(st, 404);
    let (st, b) = post("runs/set-tag", &json!({"run_id": run_id, "key": "a", "value": "x\u{0}y"}).to_string());
    assert_eq!((st, b["error_code"].as_str()), (400, Some("INVALID_PARAMETER_VALUE")), "{b}");
    let (st, _) = post("runs/set-tag", &json!({"run_id": run_id, "key": "mlflow.user", "value": "mallory"}).to_string());
    assert_eq!(st, 400, "the run's user is not the client's to set");
    let worst = s.registry.audit_log(&AuditQuery::default()).unwrap().iter().map(|e| e.entity_id.len()).max().unwrap();
    assert!(worst <= 64, "entity ids stay short: {worst}");
    // Searches too large for the databases are 400s; so are forged page tokens.
    let many: Vec<String> = (0..150).map(|i| format!("metrics.m{i} > 0")).collect();
    assert_eq!(post("runs/search", &json!({"experiment_ids": ["0"], "filter": many.join(" AND ")}).to_string()).0, 400);
    let orders: Vec<String> = (0..64).map(|i| format!("metrics.m{i}")).collect();
    assert_eq!(post("runs/search", &json!({"experiment_ids": ["0"], "order_by": orders}).to_string()).0, 400);
    use base64::Engine;
    let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("offset:18446744073709551615");
    assert_eq!(post("runs/search", &json!({"experiment_ids": ["0"], "page_token": forged}).to_string()).0, 400);
    // Submitted values never come back in errors.
    let (_, b) = post("runs/search", r#"{"experiment_ids": ["0"], "filter": "tags.mrn = 'MRN-12345' OR tags.x = 'y'"}"#);
    assert!(!b.to_string().contains("MRN-12345"), "{b}");
    // Native routes use the native format; unknown routes are 404 there too.
    let (st, b) = call("GET", &format!("{}/api/v1/nope", s.url), Some(&auth), None);
    assert_eq!((st, b["error"]["code"].as_str()), (404, Some("route_not_found")));
}

#[test]
fn artifacts_round_trip_are_never_replaced_and_refuse_escapes() {
    let s = start();
    let auth = basic("ds", PW);
    let (_, exp) = mlflow(&s, "POST", "experiments/create", "ds", json!({"name": "art"}));
    let exp = exp["experiment_id"].as_str().unwrap().to_owned();
    let (_, run) = mlflow(&s, "POST", "runs/create", "ds", json!({"experiment_id": exp}));
    let run = run["run"]["info"]["run_id"].as_str().unwrap().to_owned();
    let base = format!("{}/api/2.0/mlflow-artifacts/artifacts", s.url);
    let a = agent();
    let put = |path: &str, bytes: &[u8], who: &str| {
        let r = a.put(&format!("{base}/{path}")).header("authorization", &basic(who, PW)).send(bytes).unwrap();
        r.status().as_u16()
    };
    let root = format!("{exp}/{run}/artifacts");
    let bytes: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(put(&format!("{root}/model/weights.bin"), &bytes, "ds"), 200);
    let r = a.get(&format!("{base}/{root}/model/weights.bin")).header("authorization", &auth).call().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.into_body().read_to_vec().unwrap(), bytes);
    let (st, listing) = call("GET", &format!("{base}?path={root}/model"), Some(&auth), None);
    assert_eq!((st, listing["files"][0]["file_size"].as_u64()), (200, Some(70_000)));
    let (_, empty) = call("GET", &format!("{base}?path={exp}/none"), Some(&auth), None);
    assert_eq!(empty, json!({}));
    // The same bytes again are fine; different bytes never replace evidence.
    assert_eq!(put(&format!("{root}/model/weights.bin"), &bytes, "ds"), 200);
    assert_eq!(put(&format!("{root}/model/weights.bin"), b"tampered", "ds"), 409);
    let r = a.get(&format!("{base}/{root}/model/weights.bin")).header("authorization", &auth).call().unwrap();
    assert_eq!(r.into_body().read_to_vec().unwrap(), bytes);
    // Only under an existing, active run of that experiment.
    assert_eq!(put("1/0123456789abcdef0123456789abcdef/artifacts/x.txt", b"x", "ds"), 404);
    assert_eq!(put(&format!("999/{run}/artifacts/x.txt"), b"x", "ds"), 400);
    assert_eq!(put(&format!("{exp}/{run}/x.txt"), b"x", "ds"), 400);
    assert_eq!(put("loose.txt", b"x", "ds"), 400);
    // Escapes: encoded dot segments reach the handler decoded and are refused; so are
    // staging names.
    for bad in ["1/%2e%2e/%2e%2e/etc/passwd", "%2e%2e/x", "1/a%5cb", ".vigil-tmp/x"] {
        assert_eq!(put(bad, b"x", "ds"), 400, "{bad}");
    }
    assert_eq!(call("GET", &format!("{base}?path=.vigil-tmp"), Some(&auth), None).0, 400);
    assert!(!s._dir.path().join("etc").exists());
    // Reviewers cannot write artifacts; the refusal is audited and nothing is stored.
    assert_eq!(put(&format!("{root}/evil.txt"), b"x", "clin"), 403);
    assert_eq!(a.get(&format!("{base}/{root}/evil.txt")).header("authorization", &auth).call().unwrap().status().as_u16(), 404);
    // Writes are audited with their digest.
    let events = s.registry.audit_log(&AuditQuery { action: Some("artifact.write".into()), ..Default::default() }).unwrap();
    let ok: Vec<_> = events.iter().filter(|e| e.outcome.as_str() == "ok").collect();
    assert_eq!(ok.len(), 2, "the first write and its identical repeat");
    use sha2::Digest;
    let details: Value = serde_json::from_str(&ok[0].details).unwrap();
    assert_eq!(details["sha256"].as_str().unwrap(), hex::encode(sha2::Sha256::digest(&bytes)));
    assert!(events.iter().any(|e| e.outcome.as_str() == "denied" && e.actor == "clin"));
    // A version registered from the run's model directory binds the digest of its files,
    // nested ones included.
    assert_eq!(put(&format!("{root}/model/sub/config.json"), b"{\"C\": 1}", "ds"), 200);
    assert_version_binds_digest(&s, &run, "model", &[("weights.bin", &bytes), ("sub/config.json", b"{\"C\": 1}")]);
}

#[test]
fn health_readiness_and_metrics() {
    let s = start();
    assert_eq!(call("GET", &format!("{}/healthz", s.url), None, None).0, 200);
    assert_eq!(call("GET", &format!("{}/readyz", s.url), None, None).0, 200);
    mlflow(&s, "GET", "experiments/get", "ds", json!({"experiment_id": "0"}));
    mlflow(&s, "GET", "experiments/get", "ds", json!({"experiment_id": "999"}));
    let (st, Value::String(text)) = call("GET", &format!("{}/metrics", s.url), None, None) else { panic!("metrics are text") };
    assert_eq!(st, 200);
    assert!(text.contains("vigil_http_requests_total{route=\"/api/2.0/mlflow/experiments/get\",status=\"200\"} 1"), "{text}");
    assert!(text.contains("vigil_db_connections{state=\"idle\"}") && text.contains("vigil_db_connections{state=\"in_use\"}"), "{text}");
    assert!(text.contains("vigil_http_requests_total{route=\"/api/2.0/mlflow/experiments/get\",status=\"404\"} 1"), "{text}");
    assert!(text.contains("vigil_audit_chain_length "), "{text}");
    assert!(text.contains("vigil_drift_alerts_open 0"), "{text}");
}

#[test]
fn governed_release_over_the_native_api_with_signatures_re_authenticated() {
    let s = start();
    let api = |method: &str, path: &str, user: &str, body: Option<Value>| {
        call(method, &format!("{}/api/v1/{path}", s.url), Some(&basic(user, PW)), body.map(|b| b.to_string()).as_deref())
    };
    let manifest = json!({
        "name": "sepsis-early-warning", "version": "2.1.0", "model_type": "classification",
        "artifact_uri": "s3://models/sepsis/2.1.0", "artifact_sha256": "ab".repeat(32),
        "metrics": {"auc_roc": 0.88}, "lineage": {"training_data_hash": "sha256:abc"},
    });
    let (st, v) = api("POST", "models", "ds", Some(manifest.clone()));
    assert_eq!(st, 200, "{v}");
    let (st, _) = api("POST", "models", "clin", Some(manifest));
    assert_eq!(st, 403, "reviewers do not register");
    // Production needs a passing validation of this content.
    let promote = json!({"model": "sepsis-early-warning", "version": "2.1.0", "to_stage": "production", "justification": "validated"});
    let (st, b) = api("POST", "promotions", "ds", Some(promote.clone()));
    assert_eq!((st, b["error"]["code"].as_str()), (403, Some("validation_required")), "{b}");
    // The model's validation policy, set by an administrator (the manifest has no card).
    let policy = json!({"policy": {"require_card_complete": false, "resamples": 300}, "reason": "card follows in the next version"});
    let (st, b) = api("PUT", "validation-policies/model/sepsis-early-warning", "lead", Some(policy.clone()));
    assert_eq!((st, b["error"]["code"].as_str()), (403, Some("role_not_permitted")), "{b}");
    let (st, b) = api("PUT", "validation-policies/model/sepsis-early-warning", "admin", Some(json!({"policy": {"resamples": 1}, "reason": "r"})));
    assert_eq!((st, b["error"]["code"].as_str()), (400, Some("invalid_policy")), "{b}");
    let (st, b) = api("PUT", "validation-policies/model/sepsis-early-warning", "admin", Some(policy));
    assert_eq!((st, b["source"].as_str(), b["policy"]["resamples"].as_u64()), (200, Some("model"), Some(300)), "{b}");
    let (st, b) = api("GET", "validation-policies/model_type/classification", "comp", None);
    assert_eq!((st, b["source"].as_str()), (200, Some("built_in")), "{b}");
    let (st, b) = api("GET", "validation-policies/nonsense/x", "comp", None);
    assert_eq!((st, b["error"]["code"].as_str()), (400, Some("invalid_policy")), "{b}");
    let mut holdout = String::from("y,score,sex\n");
    for i in 0..300 {
        holdout.push_str(&format!("{},{},{}\n", u8::from(i % 3 == 0), if i % 3 == 0 { 0.8 } else { 0.1 + (i % 4) as f64 * 0.1 }, if i % 2 == 0 { "F" } else { "M" }));
    }
    let (st, rep) = send_raw("POST", &format!("{}/api/v1/models/sepsis-early-warning/versions/2.1.0/validate?label=y&score=score&sensitive=sex", s.url), &basic("ds", PW), "text/csv", holdout.into_bytes());
    assert_eq!((st, rep["passed"].as_bool(), rep["policy"]["resamples"].as_u64()), (200, Some(true), Some(300)), "{rep}");
    let (st, req) = api("POST", "promotions", "ds", Some(promote));
    assert_eq!(st, 200, "{req}");
    let id = req["request_id"].as_str().unwrap().to_owned();
    // Data scientists do not sign; a session token alone is not a signature.
    let (st, b) = api("POST", &format!("promotions/{id}/approve"), "ds", Some(json!({"password": PW, "meaning": "approval"})));
    assert_eq!((st, b["error"]["code"].as_str()), (403, Some("role_not_permitted")), "{b}");
    let (_, login) = call("POST", &format!("{}/api/v1/auth/login", s.url), None, Some(&json!({"user": "lead", "password": PW}).to_string()));
    let bearer = format!("Bearer {}", login["token"].as_str().unwrap());
    let url = format!("{}/api/v1/promotions/{id}/approve", s.url);
    let (st, b) = call("POST", &url, Some(&bearer), Some(&json!({"meaning": "approval"}).to_string()));
    assert_eq!((st, b["error"]["code"].as_str()), (400, Some("invalid_request")), "password required: {b}");
    let (st, b) = call("POST", &url, Some(&bearer), Some(&json!({"password": "not the password", "meaning": "approval"}).to_string()));
    assert_eq!(st, 401, "{b}");
    let (st, b) = call("POST", &url, Some(&bearer), Some(&json!({"password": PW, "meaning": "approval", "comment": "reviewed"}).to_string()));
    assert_eq!((st, b["status"].as_str()), (200, Some("pending")), "{b}");
    assert_eq!(b["signature"]["printed_name"], json!("User lead"));
    let (st, b) = api("POST", &format!("promotions/{id}/approve"), "clin", Some(json!({"password": PW, "meaning": "approval"})));
    assert_eq!((st, b["status"].as_str()), (200, Some("approved")), "{b}");
    let (_, m) = api("GET", "models/sepsis-early-warning", "comp", None);
    assert_eq!(m["versions"][0]["stage"], json!("production"), "{m}");
    let (st, l) = api("GET", "models/sepsis-early-warning/versions/2.1.0/lineage", "comp", None);
    assert_eq!(st, 200, "{l}");
    let (_, list) = api("GET", "promotions?status=approved", "comp", None);
    assert_eq!(list["promotions"].as_array().map(Vec::len), Some(1));
    let (_, detail) = api("GET", &format!("promotions/{id}"), "comp", None);
    assert_eq!(detail["signatures"].as_array().map(Vec::len), Some(2), "{detail}");
    let (_, audit) = api("GET", "audit?outcome=denied", "comp", None);
    let denied = audit["events"].as_array().unwrap();
    assert!(denied.iter().any(|e| e["actor"] == json!("ds") && e["action"] == json!("promotion.approve")), "{audit}");
    assert!(denied.iter().any(|e| e["actor"] == json!("lead")), "the wrong signing password is on record: {audit}");
    let (st, _) = api("GET", "models/no-such-model/versions/1.0.0", "comp", None);
    assert_eq!(st, 404);
    let (st, b) = api("GET", "models/Bad%20Name", "comp", None);
    assert_eq!(st, 400, "{b}");
    assert!(s.registry.verify_audit().unwrap().ok());
}

#[test]
fn openapi_document_and_docs_match_what_is_served() {
    let s = start();
    let (st, doc) = call("GET", &format!("{}/api/v1/openapi.json", s.url), None, None);
    assert_eq!(st, 200);
    assert_eq!(doc["openapi"], json!("3.1.0"));
    let codes = doc["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]["enum"].as_array().unwrap();
    assert_eq!(codes.len(), vigil_core::ErrorCode::ALL.len());
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.contains_key("/api/2.0/mlflow/runs/log-batch"));
    // Every documented native operation is routed: calling it never answers route_not_found.
    let mut checked = 0;
    for (path, methods) in paths.iter().filter(|(p, _)| p.starts_with("/api/v1")) {
        let concrete = path.replace("{name}", "no-such-model").replace("{version}", "1.0.0").replace("{id}", "req_none");
        for method in methods.as_object().unwrap().keys() {
            let (st, body) = match method.as_str() {
                "get" => call("GET", &format!("{}{concrete}", s.url), Some(&basic("comp", PW)), None),
                "post" => call("POST", &format!("{}{concrete}", s.url), Some(&basic("comp", PW)), Some("{}")),
                "put" => call("PUT", &format!("{}{concrete}", s.url), Some(&basic("comp", PW)), Some("{}")),
                "delete" => {
                    let r = agent().delete(&format!("{}{concrete}", s.url)).header("authorization", &basic("comp", PW)).call().unwrap();
                    (r.status().as_u16(), serde_json::from_str(&r.into_body().read_to_string().unwrap()).unwrap_or(Value::Null))
                }
                other => panic!("{other}"),
            };
            assert_ne!(body["error"]["code"].as_str(), Some("route_not_found"), "{method} {path} documented but not routed ({st})");
            assert!(st < 500, "{method} {path}: {st} {body}");
            checked += 1;
        }
    }
    assert!(checked >= 27, "{checked}");
    let (st, Value::String(html)) = call("GET", &format!("{}/api/v1/docs", s.url), None, None) else { panic!("docs are HTML") };
    assert_eq!(st, 200);
    assert!(html.contains("/api/v1/promotions/{id}/approve") && html.contains("self_approval") && !html.contains("<script"));
}

use vigil_testkit::moto;

#[test]
fn artifacts_in_an_s3_compatible_store() {
    let Some(m) = moto() else { return };
    // Create the bucket (moto does not check signatures).
    assert_eq!(agent().put(&format!("{}/vigil-artifacts", m.url)).send("").unwrap().status().as_u16(), 200);
    let endpoint = m.url.clone();
    let s = start_with(move |st| {
        st.with_s3_options(
            "s3://vigil-artifacts/team-a",
            &[("aws_endpoint", &endpoint), ("aws_access_key_id", "test"), ("aws_secret_access_key", "test"), ("aws_region", "us-east-1"), ("aws_allow_http", "true")],
        )
        .unwrap()
    });
    let auth = basic("ds", PW);
    let (_, exp) = mlflow(&s, "POST", "experiments/create", "ds", json!({"name": "s3"}));
    let exp = exp["experiment_id"].as_str().unwrap().to_owned();
    let (_, run) = mlflow(&s, "POST", "runs/create", "ds", json!({"experiment_id": exp}));
    let run = run["run"]["info"]["run_id"].as_str().unwrap().to_owned();
    let base = format!("{}/api/2.0/mlflow-artifacts/artifacts", s.url);
    let a = agent();
    let put = |path: &str, bytes: &[u8]| a.put(&format!("{base}/{path}")).header("authorization", &auth).send(bytes).unwrap().status().as_u16();
    let root = format!("{exp}/{run}/artifacts");
    // Larger than one multipart part (5 MiB) to exercise the multipart upload.
    let big: Vec<u8> = (0..6_000_000u32).map(|i| (i % 253) as u8).collect();
    assert_eq!(put(&format!("{root}/model/weights.bin"), &big), 200);
    assert_eq!(put(&format!("{root}/notes.txt"), b"hello"), 200);
    let r = a.get(&format!("{base}/{root}/model/weights.bin")).header("authorization", &auth).call().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.into_body().with_config().limit(10_000_000).read_to_vec().unwrap(), big);
    let (_, listing) = call("GET", &format!("{base}?path={root}"), Some(&auth), None);
    assert_eq!(listing, json!({"files": [{"path": "model", "is_dir": true}, {"path": "notes.txt", "is_dir": false, "file_size": 5}]}));
    // Never replaced; the same bytes again are fine.
    assert_eq!(put(&format!("{root}/notes.txt"), b"hello"), 200);
    assert_eq!(put(&format!("{root}/notes.txt"), b"changed"), 409);
    assert_eq!(a.get(&format!("{base}/{root}/missing")).header("authorization", &auth).call().unwrap().status().as_u16(), 404);
    // The objects are in the bucket under the prefix, and nothing stayed in the staging area.
    let r = agent().get(&format!("{}/vigil-artifacts?list-type=2&prefix=team-a/", m.url)).call().unwrap();
    let xml = r.into_body().read_to_string().unwrap();
    assert!(xml.contains(&format!("team-a/{root}/model/weights.bin")), "{xml}");
    let staged = std::fs::read_dir(s._dir.path().join("artifacts/.vigil-tmp")).map(|d| d.count()).unwrap_or(0);
    assert_eq!(staged, 0);
    // A version registered from the run's model directory binds the digest of its files.
    assert_version_binds_digest(&s, &run, "model", &[("weights.bin", &big)]);
}

/// The digest Vigil binds for a directory of artifacts: SHA-256 over the lines
/// `<sha256 of file> <size> <relative path>\n` in path order (written out here, independently).
fn tree_digest(files: &[(&str, &[u8])]) -> String {
    use sha2::{Digest, Sha256};
    let mut files = files.to_vec();
    files.sort_by_key(|(p, _)| *p);
    let lines: Vec<String> = files.iter().map(|(p, b)| format!("{} {} {p}\n", hex::encode(Sha256::digest(b)), b.len())).collect();
    hex::encode(Sha256::digest(lines.concat().as_bytes()))
}

fn assert_version_binds_digest(s: &Server, run: &str, dir: &str, files: &[(&str, &[u8])]) {
    let model = format!("digest-{}", &run[..8]);
    assert_eq!(mlflow(s, "POST", "registered-models/create", "ds", json!({"name": model})).0, 200);
    let (st, v) = mlflow(s, "POST", "model-versions/create", "ds", json!({"name": model, "source": format!("runs:/{run}/{dir}"), "run_id": run}));
    assert_eq!(st, 200, "{v}");
    let (st, native) = call("GET", &format!("{}/api/v1/models/{model}/versions/1.0.0", s.url), Some(&basic("ds", PW)), None);
    assert_eq!(st, 200, "{native}");
    assert_eq!(native["artifact_sha256"].as_str(), Some(tree_digest(files).as_str()), "{native}");
    // An empty location cannot be registered.
    let (st, e) = mlflow(s, "POST", "model-versions/create", "ds", json!({"name": model, "source": format!("runs:/{run}/nothing-here")}));
    assert_eq!((st, e["error_code"].as_str()), (400, Some("INVALID_PARAMETER_VALUE")), "{e}");
    // What the version was registered from is frozen: no file can be added under it.
    let (_, r) = mlflow(s, "GET", "runs/get", "ds", json!({"run_id": run}));
    let root = r["run"]["info"]["artifact_uri"].as_str().unwrap().trim_start_matches("mlflow-artifacts:/").to_owned();
    let put = |path: String| agent().put(&format!("{}/api/2.0/mlflow-artifacts/artifacts/{path}", s.url)).header("authorization", &basic("ds", PW)).send("x").unwrap().status().as_u16();
    assert_eq!(put(format!("{root}/{dir}/requirements.txt")), 403, "files cannot be added next to a registered model");
    assert_eq!(put(format!("{root}/elsewhere/notes.txt")), 200, "the rest of the run stays writable");
    // Validation re-reads the bytes in the server's store and compares them with the digest.
    let mut holdout = String::from("y,score\n");
    for i in 0..200 {
        holdout.push_str(&format!("{},{}\n", u8::from(i % 3 == 0), if i % 3 == 0 { 0.8 } else { 0.2 }));
    }
    let validate = || send_raw("POST", &format!("{}/api/v1/models/{model}/versions/1.0.0/validate?label=y&score=score", s.url), &basic("ds", PW), "text/csv", holdout.clone().into_bytes());
    let gate = |rep: &Value| rep["gates"].as_array().unwrap().iter().find(|g| g["gate"] == "artifact_digest").cloned().unwrap();
    let (st, rep) = validate();
    assert_eq!(st, 200, "{rep}");
    assert_eq!(gate(&rep)["passed"], true, "{rep}");
    assert!(gate(&rep)["detail"].as_str().unwrap().contains("re-verified"), "{rep}");
    // On local storage, bytes changed behind the server's back fail the gate.
    let on_disk = s._dir.path().join("artifacts").join(&root).join(dir).join(files[0].0);
    if on_disk.exists() {
        std::fs::write(&on_disk, b"tampered").unwrap();
        let (st, rep) = validate();
        assert_eq!((st, gate(&rep)["passed"].as_bool()), (200, Some(false)), "{rep}");
        assert!(gate(&rep)["detail"].as_str().unwrap().contains("no longer match"), "{rep}");
    }
}

/// Sends raw bytes (CSV, Parquet) with a content type.
fn send_raw(method: &str, url: &str, auth: &str, ctype: &str, body: Vec<u8>) -> (u16, Value) {
    let a = agent();
    let r = match method {
        "PUT" => a.put(url),
        _ => a.post(url),
    };
    let resp = r.header("authorization", auth).header("content-type", ctype).send(&body[..]).unwrap();
    let status = resp.status().as_u16();
    let text = resp.into_body().read_to_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

#[test]
fn drift_monitoring_over_the_native_api() {
    let s = start();
    let base = format!("{}/api/v1/models/icu-risk/versions/1.0.0/drift", s.url);
    let ds = basic("ds", PW);
    let manifest = json!({"name": "icu-risk", "version": "1.0.0", "model_type": "classification", "artifact_uri": "s3://m/icu/1"});
    assert_eq!(call("POST", &format!("{}/api/v1/models", s.url), Some(&ds), Some(&manifest.to_string())).0, 200);

    // Training data: age ~ 40..80, unit in {a, b}; production: shifted ages, a new unit.
    let csv = |shift: f64, n: usize, unit: &str| {
        let mut t = String::from("age,unit,score\n");
        for i in 0..n {
            t.push_str(&format!("{},{},{}\n", 40.0 + (i % 40) as f64 + shift, if i % 2 == 0 { "a" } else { unit }, (i % 10) as f64 / 10.0));
        }
        t.into_bytes()
    };
    let (st, b) = send_raw("POST", &format!("{base}/baseline?prediction_col=score"), &ds, "text/csv", csv(0.0, 2000, "b"));
    assert_eq!((st, b["features"].as_u64()), (200, Some(2)), "{b}");
    let (st, b) = send_raw("POST", &format!("{base}/baseline"), &basic("clin", PW), "text/csv", csv(0.0, 100, "b"));
    assert_eq!((st, b["error"]["code"].as_str()), (403, Some("role_not_permitted")), "{b}");
    // Client mistakes: empty body, a file that is not a table, a missing role column.
    let (st, b) = send_raw("POST", &format!("{base}/samples"), &ds, "text/csv", Vec::new());
    assert_eq!(st, 400, "{b}");
    let (st, b) = send_raw("POST", &format!("{base}/samples?prediction_col=nope"), &ds, "text/csv", csv(0.0, 10, "b"));
    assert_eq!(st, 400, "{b}");
    let msg = b["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("the uploaded data") && !msg.contains(".vigil-tmp"), "no server paths in errors: {msg}");
    let (st, b) = send_raw("POST", &format!("{base}/samples"), &ds, "application/vnd.apache.parquet", b"PAR1 not really".to_vec());
    assert_eq!(st, 400, "{b}");

    let (st, cfg) = call("GET", &format!("{base}/config"), Some(&ds), None);
    assert_eq!((st, cfg["alert_on_drift"].as_bool()), (200, Some(true)), "{cfg}");
    let mut new_cfg = cfg.clone();
    new_cfg["min_window"] = json!(50);
    let (st, b) = call("PUT", &format!("{base}/config"), Some(&ds), Some(&new_cfg.to_string()));
    assert_eq!((st, b["min_window"].as_u64()), (200, Some(50)), "{b}");

    let (st, b) = send_raw("POST", &format!("{base}/samples?prediction_col=score"), &ds, "text/csv", csv(25.0, 1000, "c"));
    assert_eq!((st, b["rows"].as_u64()), (200, Some(1000)), "{b}");
    let (st, report) = call("POST", &format!("{base}/check"), Some(&basic("clin", PW)), Some(""));
    assert_eq!((st, report["status"].as_str()), (200, Some("drift")), "{report}");
    assert_eq!(report["window_rows"].as_u64(), Some(1000));
    let (st, alerts) = call("GET", &format!("{}/api/v1/drift/alerts?model=icu-risk&version=1.0.0", s.url), Some(&ds), None);
    assert_eq!(st, 200, "{alerts}");
    let list = alerts["alerts"].as_array().unwrap();
    assert!(!list.is_empty(), "a drift opens alerts: {alerts}");
    let id = list[0]["alert_id"].as_str().unwrap();
    let (st, b) = call("POST", &format!("{}/api/v1/drift/alerts/{id}/ack", s.url), Some(&ds), Some(&json!({"comment": "looking into the new unit"}).to_string()));
    assert_eq!((st, b["state"].as_str()), (200, Some("acknowledged")), "{b}");
    // Inline data is checked without being stored.
    let (st, r2) = send_raw("POST", &format!("{base}/check?prediction_col=score"), &ds, "text/csv", csv(0.0, 500, "b"));
    assert_eq!((st, r2["status"].as_str(), r2["window_rows"].as_u64()), (200, Some("no_drift"), Some(500)), "{r2}");
    // Labels.
    let mut labels = String::from("id,label\n");
    for i in 0..10 {
        labels.push_str(&format!("p{i},{}\n", i % 2));
    }
    let (st, b) = send_raw("POST", &format!("{base}/labels?id_col=id&label_col=label"), &ds, "text/csv", labels.into_bytes());
    assert_eq!((st, b["labels"].as_u64()), (200, Some(10)), "{b}");
    assert!(s.registry.verify_audit().unwrap().ok());
}

#[test]
fn reads_of_phi_marked_records_are_audited() {
    let s = start();
    let phi_reads = || s.registry.audit_log(&AuditQuery { action: Some("phi.read".into()), ..Default::default() }).unwrap();
    let setup = |name: &str, marked: bool| {
        let tags = if marked { json!([{"key": "vigil.phi", "value": "true"}]) } else { json!([]) };
        let (_, e) = mlflow(&s, "POST", "experiments/create", "ds", json!({"name": name, "tags": tags}));
        let exp = e["experiment_id"].as_str().unwrap().to_owned();
        let (_, r) = mlflow(&s, "POST", "runs/create", "ds", json!({"experiment_id": exp}));
        let run = r["run"]["info"]["run_id"].as_str().unwrap().to_owned();
        mlflow(&s, "POST", "runs/log-metric", "ds", json!({"run_id": run, "key": "m", "value": 1.0, "timestamp": 1}));
        let url = format!("{}/api/2.0/mlflow-artifacts/artifacts/{exp}/{run}/artifacts/notes.txt", s.url);
        let resp = agent().put(&url).header("authorization", &basic("ds", PW)).send("cohort notes").unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        let (_, lm) = mlflow(&s, "POST", "logged-models", "ds", json!({"experiment_id": exp, "name": "m", "source_run_id": run}));
        let lm = lm["model"]["info"]["model_id"].as_str().unwrap().to_owned();
        let model = format!("{name}-model");
        mlflow(&s, "POST", "registered-models/create", "ds", json!({"name": model, "tags": tags}));
        let (st, v) = mlflow(&s, "POST", "model-versions/create", "ds", json!({"name": model, "source": "s3://bucket/m", "run_id": run}));
        assert_eq!(st, 200, "{v}");
        mlflow(&s, "POST", "registered-models/alias", "ds", json!({"name": model, "alias": "candidate", "version": "1"}));
        (exp, run, lm, model)
    };
    let marked = setup("phi", true);
    let plain = setup("plain", false);
    type Records = (String, String, String, String);
    type ReadFn<'a> = Box<dyn Fn(&Records) -> (u16, Value) + 'a>;
    let reads: Vec<(&str, ReadFn)> = vec![
        ("experiments/get", Box::new(|c| mlflow(&s, "GET", "experiments/get", "clin", json!({"experiment_id": c.0})))),
        ("experiments/search", Box::new(|c| mlflow(&s, "POST", "experiments/search", "clin", json!({"filter": format!("name = '{}'", if c.3.starts_with("phi") { "phi" } else { "plain" })})))),
        ("runs/get", Box::new(|c| mlflow(&s, "GET", "runs/get", "clin", json!({"run_id": c.1})))),
        ("runs/search", Box::new(|c| mlflow(&s, "POST", "runs/search", "clin", json!({"experiment_ids": [c.0]})))),
        ("metrics/get-history", Box::new(|c| mlflow(&s, "GET", "metrics/get-history", "clin", json!({"run_id": c.1, "metric_key": "m"})))),
        ("artifact list", Box::new(|c| call("GET", &format!("{}/api/2.0/mlflow-artifacts/artifacts?path={}/{}/artifacts", s.url, c.0, c.1), Some(&basic("clin", PW)), None))),
        ("artifact download", Box::new(|c| call("GET", &format!("{}/api/2.0/mlflow-artifacts/artifacts/{}/{}/artifacts/notes.txt", s.url, c.0, c.1), Some(&basic("clin", PW)), None))),
        ("logged-models/{id}", Box::new(|c| mlflow(&s, "GET", &format!("logged-models/{}", c.2), "clin", json!({})))),
        ("registered-models/get", Box::new(|c| mlflow(&s, "GET", "registered-models/get", "clin", json!({"name": c.3})))),
        ("registered-models/search", Box::new(|c| mlflow(&s, "GET", "registered-models/search", "clin", json!({"filter": format!("name = '{}'", c.3)})))),
        ("registered-models/alias", Box::new(|c| mlflow(&s, "GET", "registered-models/alias", "clin", json!({"name": c.3, "alias": "candidate"})))),
        ("get-latest-versions", Box::new(|c| mlflow(&s, "POST", "registered-models/get-latest-versions", "clin", json!({"name": c.3})))),
        ("model-versions/get", Box::new(|c| mlflow(&s, "GET", "model-versions/get", "clin", json!({"name": c.3, "version": "1"})))),
        ("model-versions/search", Box::new(|c| mlflow(&s, "GET", "model-versions/search", "clin", json!({"filter": format!("name = '{}'", c.3)})))),
        ("get-download-uri", Box::new(|c| mlflow(&s, "GET", "model-versions/get-download-uri", "clin", json!({"name": c.3, "version": "1"})))),
        ("native version", Box::new(|c| call("GET", &format!("{}/api/v1/models/{}/versions/1.0.0", s.url, c.3), Some(&basic("clin", PW)), None))),
        ("native lineage", Box::new(|c| call("GET", &format!("{}/api/v1/models/{}/versions/1.0.0/lineage", s.url, c.3), Some(&basic("clin", PW)), None))),
        ("native model", Box::new(|c| call("GET", &format!("{}/api/v1/models/{}", s.url, c.3), Some(&basic("clin", PW)), None))),
        ("native version by id", Box::new(|c| {
            let id = s.registry.get_version(&vigil_core::ids::ModelName::parse(&c.3).unwrap(), &vigil_core::semver::Version::parse("1.0.0").unwrap()).unwrap().id;
            call("GET", &format!("{}/api/v1/versions/{id}", s.url), Some(&basic("clin", PW)), None)
        })),
    ];
    for (what, read) in &reads {
        let before = phi_reads().len();
        let (st, body) = read(&plain);
        assert_eq!(st, 200, "{what}: {body}");
        assert_eq!(phi_reads().len(), before, "{what}: an unmarked read is not a PHI access");
        let (st, body) = read(&marked);
        assert_eq!(st, 200, "{what}: {body}");
        let events = phi_reads();
        assert_eq!(events.len(), before + 1, "{what}: one PHI access event per read");
        let e = events.last().unwrap();
        assert_eq!(e.actor, "clin", "{what}");
        assert!(!e.details.contains("cohort notes"), "no content in the audit trail");
    }
    // The mark is one-way: it cannot be switched off to read unaudited.
    let (st, b) = mlflow(&s, "POST", "experiments/set-experiment-tag", "ds", json!({"experiment_id": marked.0, "key": "vigil.phi", "value": "false"}));
    assert_eq!((st, b["error_code"].as_str()), (400, Some("INVALID_PARAMETER_VALUE")), "{b}");
    mlflow(&s, "POST", "runs/set-tag", "ds", json!({"run_id": plain.1, "key": "vigil.phi", "value": "true"}));
    let (st, b) = mlflow(&s, "POST", "runs/delete-tag", "ds", json!({"run_id": plain.1, "key": "vigil.phi"}));
    assert_eq!((st, b["error_code"].as_str()), (400, Some("INVALID_PARAMETER_VALUE")), "{b}");
    let before = phi_reads().len();
    mlflow(&s, "GET", "runs/get", "clin", json!({"run_id": plain.1}));
    assert_eq!(phi_reads().len(), before + 1, "a run marked later is audited from then on");
    assert!(s.registry.verify_audit().unwrap().ok());
}

/// Every MLflow route, fed malformed input (not JSON, wrong shapes, wrong types, NUL, huge
/// values, junk query strings): always a 4xx in MLflow's error format or a success, never a 5xx,
/// and never the submitted value echoed back.
#[test]
fn every_mlflow_route_answers_malformed_input_with_4xx() {
    let s = start();
    let huge = "x".repeat(300_000);
    let bodies: Vec<String> = vec![
        "not json".into(),
        "[]".into(),
        "\"SECRET-1\"".into(),
        "null".into(),
        "{}".into(),
        json!({"name": 5, "run_id": 7, "experiment_id": [1], "version": {}, "alias": null, "filter": 3, "max_results": "many",
               "tags": "x", "metrics": 5, "models": "x", "datasets": 3, "stage": 1, "source": [], "status": 2, "experiment_ids": "SECRET-2"}).to_string(),
        json!({"name": "a\u{0}SECRET-3", "run_id": "a\u{0}b", "experiment_id": "0", "alias": "x\u{0}", "version": "1", "source": "\u{0}", "key": "k\u{0}"}).to_string(),
        json!({"name": huge, "run_id": huge, "experiment_id": huge, "alias": huge, "version": huge, "source": huge, "filter": huge, "key": huge, "value": huge}).to_string(),
        json!({"name": "m", "version": "-1", "alias": "latest", "stage": "Deployed", "filter": "name = 'SECRET-4' OR x", "max_results": 1_000_000_000,
               "page_token": "!!SECRET-5", "experiment_ids": ["-3"], "models": [{"model_id": "../../etc"}], "datasets": [{"dataset": {"name": 1}}]}).to_string(),
    ];
    let queries = ["", "name=%00", "max_results=-1", "version=abc", "filter=((SECRET-6", "page_token=%21%21", "run_id=../../x", "name=m&version=99999999999999999999"];
    let auth = basic("ds", PW);
    let mut checked = 0;
    for (method, path, _) in vigil_server::mlflow::ROUTES {
        for id in ["m-0123456789abcdef0123456789abcdef", "..%2F..%2Fetc", "SECRET-7"] {
            let concrete = path.replace("{model_id}", id);
            let url = format!("{}/api/2.0/mlflow/{concrete}", s.url);
            let mut results = Vec::new();
            if *method == "GET" {
                for q in queries {
                    results.push(call("GET", &format!("{url}?{q}"), Some(&auth), None));
                }
            } else {
                for b in &bodies {
                    results.push(call(method, &url, Some(&auth), Some(b)));
                }
            }
            for (st, body) in results {
                assert!(st < 500, "{method} {concrete}: {st} {body}");
                if st >= 400 {
                    assert!(body["error_code"].is_string(), "{method} {concrete}: {st} {body}");
                    assert!(!body.to_string().contains("SECRET"), "{method} {concrete}: echoed {body}");
                }
                checked += 1;
            }
            if !path.contains("{model_id}") {
                break;
            }
        }
    }
    assert!(checked > 300, "{checked}");
    assert!(s.registry.verify_audit().unwrap().ok());
}

/// What a native matrix case sends.
enum NativeBody {
    None,
    Json(Value),
    Csv(Vec<u8>),
}

/// Ids the native matrix's requests refer to, several per role where a call changes state.
struct NativeCtx {
    tokens: Vec<String>,
    approve: Vec<String>,
    reject: Vec<String>,
    withdraw: Vec<String>,
    alert: String,
    version_id: String,
}

/// Role × route for the native API: every authenticated operation of the OpenAPI table, called
/// by each role, with the exact expected status; every 403 is audited as a denial.
#[test]
fn native_role_by_route_matrix_with_denials_audited() {
    let s = start();
    let admin = s.registry.authenticate(&UserId::parse("admin").unwrap(), &Password::new(PW)).unwrap();
    s.registry.add_user(&admin, &UserId::parse("ds2").unwrap(), "Dev Scientist", Role::DataScientist, &Password::new(PW)).unwrap();
    let users = ["ds", "lead", "clin", "comp", "admin"];
    let api = |method: &str, path: &str, user: &str, body: NativeBody| -> (u16, Value) {
        let url = format!("{}/api/v1{path}", s.url);
        match body {
            NativeBody::None if method == "GET" => call("GET", &url, Some(&basic(user, PW)), None),
            NativeBody::None if method == "DELETE" => {
                let r = agent().delete(&url).header("authorization", &basic(user, PW)).call().unwrap();
                (r.status().as_u16(), serde_json::from_str(&r.into_body().read_to_string().unwrap()).unwrap_or(Value::Null))
            }
            NativeBody::None => call(method, &url, Some(&basic(user, PW)), Some("")),
            NativeBody::Json(v) => call(method, &url, Some(&basic(user, PW)), Some(&v.to_string())),
            NativeBody::Csv(b) => send_raw(method, &url, &basic(user, PW), "text/csv", b),
        }
    };
    let csv = |shift: f64| {
        let mut t = String::from("age,score\n");
        for i in 0..400 {
            t.push_str(&format!("{},{}\n", 40.0 + (i % 40) as f64 + shift, (i % 10) as f64 / 10.0));
        }
        t.into_bytes()
    };
    let register = |v: &str| {
        let m = json!({"name": "mx", "version": v, "model_type": "classification", "artifact_uri": format!("s3://m/{v}"), "lineage": {"training_data_hash": "sha256:mx"}});
        assert_eq!(api("POST", "/models", "ds2", NativeBody::Json(m)).0, 200);
    };
    // Test versions carry no card and no digest: the classification default waives both here.
    let lenient = vigil_core::validate::ValidationPolicy { require_card_complete: false, require_artifact_digest: false, resamples: 200, ..Default::default() };
    s.registry.set_validation_policy(&admin, &vigil_core::validate::PolicyScope::ModelType(vigil_core::model::ModelType::Classification), &lenient, "matrix").unwrap();
    let good = {
        let mut t = String::from("y,score,sex\n");
        for i in 0..200 {
            t.push_str(&format!("{},{},{}\n", u8::from(i % 3 == 0), if i % 3 == 0 { 0.8 } else { 0.1 + (i % 4) as f64 * 0.1 }, if i % 2 == 0 { "F" } else { "M" }));
        }
        t.into_bytes()
    };
    let request = |v: &str, by: &str| -> String {
        let (st, r) = api("POST", &format!("/models/mx/versions/{v}/validate?label=y&score=score&sensitive=sex"), "ds2", NativeBody::Csv(good.clone()));
        assert_eq!((st, r["passed"].as_bool()), (200, Some(true)), "{r}");
        let (st, r) = api("POST", "/promotions", by, NativeBody::Json(json!({"model": "mx", "version": v, "to_stage": "production", "justification": "j"})));
        assert_eq!(st, 200, "{r}");
        r["request_id"].as_str().unwrap().to_owned()
    };
    register("1.0.0");
    let version_id = s.registry.get_version(&vigil_core::ids::ModelName::parse("mx").unwrap(), &vigil_core::semver::Version::parse("1.0.0").unwrap()).unwrap().id;
    let mut ctx = NativeCtx { tokens: vec![], approve: vec![], reject: vec![], withdraw: vec![], alert: String::new(), version_id };
    for (i, u) in users.iter().enumerate() {
        for (major, list) in [(2, None), (3, Some(&mut ctx.approve)), (4, Some(&mut ctx.reject)), (5, Some(&mut ctx.withdraw))] {
            let v = format!("{major}.{i}.0");
            register(&v);
            if let Some(list) = list {
                list.push(request(&v, if major == 5 { "ds" } else { "ds2" }));
            }
        }
        let (_, t) = api("POST", "/tokens", u, NativeBody::Json(json!({"name": "matrix"})));
        ctx.tokens.push(t["id"].as_str().unwrap().to_owned());
    }
    // A drift alert to acknowledge.
    assert_eq!(api("POST", "/models/mx/versions/1.0.0/drift/baseline", "ds", NativeBody::Csv(csv(0.0))).0, 200);
    assert_eq!(api("POST", "/models/mx/versions/1.0.0/drift/samples", "ds", NativeBody::Csv(csv(30.0))).0, 200);
    let (_, report) = api("POST", "/models/mx/versions/1.0.0/drift/check", "ds", NativeBody::None);
    ctx.alert = report["alerts"][0]["alert_id"].as_str().unwrap_or_else(|| panic!("{report}")).to_owned();
    // A logged prediction, as the gateway ships it, to label and read.
    let rec: vigil_core::predlog::PredictionRecord = serde_json::from_value(json!({
        "request_id": "req_matrix", "role": "live", "endpoint": "mx", "version_id": ctx.version_id, "version": "1.0.0", "arm": "production",
        "digest": "00", "assignment": "random", "bucket": 7, "at": "2026-11-29T00:00:00Z", "latency_us": 50, "status": "ok", "rows": 1,
        "features": {"age": [61.0]}, "scores": [0.4], "outputs": {"probabilities": [[0.6, 0.4]]}
    }))
    .unwrap();
    assert_eq!(s.registry.record_predictions("seg_matrix", "gw_test", &[rec]).unwrap().records, 1);

    type Case = (&'static str, &'static str, fn(&NativeCtx, usize) -> (String, NativeBody), [u16; 5]);
    const ALL: [u16; 5] = [200; 5];
    const BUILD: [u16; 5] = [200, 200, 403, 403, 403];
    let cases: Vec<Case> = vec![
        ("post", "/auth/logout", |_, _| ("/auth/logout".into(), NativeBody::None), ALL),
        ("get", "/me", |_, _| ("/me".into(), NativeBody::None), ALL),
        ("get", "/tokens", |_, _| ("/tokens".into(), NativeBody::None), ALL),
        ("post", "/tokens", |_, _| ("/tokens".into(), NativeBody::Json(json!({"name": "n"}))), ALL),
        ("delete", "/tokens/{id}", |c, i| (format!("/tokens/{}", c.tokens[i]), NativeBody::None), ALL),
        ("get", "/models", |_, _| ("/models".into(), NativeBody::None), ALL),
        ("post", "/models", |_, i| ("/models".into(), NativeBody::Json(json!({"name": "mx", "version": format!("9.{i}.0"), "model_type": "classification", "artifact_uri": "s3://m/9"}))), BUILD),
        ("get", "/models/{name}", |_, _| ("/models/mx".into(), NativeBody::None), ALL),
        ("get", "/models/{name}/versions/{version}", |_, _| ("/models/mx/versions/1.0.0".into(), NativeBody::None), ALL),
        ("get", "/versions/{id}", |c, _| (format!("/versions/{}", c.version_id), NativeBody::None), ALL),
        ("get", "/deployments/{model}", |_, _| ("/deployments/mx".into(), NativeBody::None), ALL),
        ("put", "/deployments/{model}", |_, i| ("/deployments/mx".into(), NativeBody::Json(json!({"deployment": {"arms": [{"name": "production", "version": "production", "percent": 100}], "unit_key": format!("header:x-unit-{i}")}, "reason": "matrix"}))), [403, 200, 403, 403, 403]),
        ("get", "/deployments/{model}/history", |_, _| ("/deployments/mx/history".into(), NativeBody::None), ALL),
        ("get", "/deployment-policy", |_, _| ("/deployment-policy".into(), NativeBody::None), ALL),
        ("put", "/deployment-policy", |_, _| ("/deployment-policy".into(), NativeBody::Json(json!({"policy": {"live_stages": ["Production", "Staging"]}, "reason": "matrix"}))), [403, 403, 403, 403, 200]),
        ("post", "/features/{feature_set}", |_, _| ("/features/vitals?entity=patient_id".into(), NativeBody::Csv(b"patient_id,lactate\nP1,1.5\nP2,2.5\n".to_vec())), BUILD),
        ("post", "/predictions/labels", |_, _| ("/predictions/labels".into(), NativeBody::Json(json!({"labels": [{"prediction_id": "req_matrix", "label": 1}, {"prediction_id": "req_unknown", "label": "0"}]}))), BUILD),
        ("get", "/predictions/{request_id}", |_, _| ("/predictions/req_matrix".into(), NativeBody::None), [200, 200, 200, 200, 403]),
        ("put", "/models/{name}/versions/{version}", |_, i| ("/models/mx/versions/1.0.0".into(), NativeBody::Json(json!({"artifact_uri": format!("s3://m/1-{i}"), "lineage": {"training_data_hash": "sha256:mx"}, "reason": "fix"}))), BUILD),
        ("get", "/lineage", |_, _| ("/lineage?data_hash=sha256:mx".into(), NativeBody::None), ALL),
        ("get", "/models/{name}/versions/{version}/lineage", |_, _| ("/models/mx/versions/1.0.0/lineage".into(), NativeBody::None), ALL),
        ("get", "/models/{name}/versions/{version}/drift/config", |_, _| ("/models/mx/versions/1.0.0/drift/config".into(), NativeBody::None), ALL),
        ("put", "/models/{name}/versions/{version}/drift/config", |_, _| ("/models/mx/versions/1.0.0/drift/config".into(), NativeBody::Json(json!({"min_window": 30}))), BUILD),
        ("post", "/models/{name}/versions/{version}/drift/baseline", |_, _| ("/models/mx/versions/1.0.0/drift/baseline".into(), NativeBody::Csv(b"age\n1\n2\n3\n".to_vec())), BUILD),
        ("post", "/models/{name}/versions/{version}/drift/samples", |_, _| ("/models/mx/versions/1.0.0/drift/samples".into(), NativeBody::Csv(b"age\n1\n2\n3\n".to_vec())), BUILD),
        ("post", "/models/{name}/versions/{version}/drift/labels", |_, _| ("/models/mx/versions/1.0.0/drift/labels?id_col=id&label_col=y".into(), NativeBody::Csv(b"id,y\na,1\n".to_vec())), BUILD),
        ("post", "/models/{name}/versions/{version}/drift/check", |_, _| ("/models/mx/versions/1.0.0/drift/check".into(), NativeBody::None), [200, 200, 200, 200, 403]),
        ("get", "/drift/alerts", |_, _| ("/drift/alerts?model=mx&version=1.0.0&all=true".into(), NativeBody::None), ALL),
        ("post", "/models/{name}/versions/{version}/validate", |_, _| {
            let mut t = String::from("y,score,sex\n");
            for i in 0..200 {
                t.push_str(&format!("{},{},{}\n", u8::from(i % 3 == 0), if i % 3 == 0 { 0.8 } else { 0.1 + (i % 4) as f64 * 0.1 }, if i % 2 == 0 { "F" } else { "M" }));
            }
            ("/models/mx/versions/1.0.0/validate?label=y&score=score&sensitive=sex".into(), NativeBody::Csv(t.into_bytes()))
        }, [200, 200, 200, 200, 403]),
        ("get", "/models/{name}/versions/{version}/card", |_, _| ("/models/mx/versions/1.0.0/card?format=md".into(), NativeBody::None), ALL),
        ("post", "/drift/alerts/{id}/ack", |c, _| (format!("/drift/alerts/{}/ack", c.alert), NativeBody::Json(json!({"comment": "seen"}))), [200, 409, 409, 409, 403]),
        ("get", "/promotions", |_, _| ("/promotions".into(), NativeBody::None), ALL),
        ("post", "/promotions", |_, i| ("/promotions".into(), NativeBody::Json(json!({"model": "mx", "version": format!("2.{i}.0"), "to_stage": "staging", "justification": "j"}))), BUILD),
        ("get", "/promotions/{id}", |c, _| (format!("/promotions/{}", c.approve[0]), NativeBody::None), ALL),
        ("post", "/promotions/{id}/approve", |c, i| (format!("/promotions/{}/approve", c.approve[i]), NativeBody::Json(json!({"password": PW, "meaning": "approval"}))), [403, 200, 200, 403, 403]),
        ("post", "/promotions/{id}/reject", |c, i| (format!("/promotions/{}/reject", c.reject[i]), NativeBody::Json(json!({"password": PW, "meaning": "review", "comment": "no"}))), [403, 200, 200, 403, 403]),
        ("post", "/promotions/{id}/withdraw", |c, i| (format!("/promotions/{}/withdraw", c.withdraw[i]), NativeBody::Json(json!({"reason": "r"}))), [200, 403, 403, 403, 403]),
        ("get", "/policies", |_, _| ("/policies".into(), NativeBody::None), ALL),
        ("get", "/validation-policies/{scope}/{target}", |_, _| ("/validation-policies/model/mx".into(), NativeBody::None), ALL),
        ("put", "/validation-policies/{scope}/{target}", |_, _| ("/validation-policies/model_type/ranking".into(), NativeBody::Json(json!({"policy": {"fairness_tolerance": 0.05}, "reason": "r"}))), [403, 403, 403, 403, 200]),
        ("put", "/policies/{stage}", |_, _| ("/policies/archived".into(), NativeBody::Json(json!({"required_approvals": 1, "required_roles": ["ml_lead"], "eligible_roles": ["ml_lead"], "reason": "r"}))), [403, 403, 403, 403, 200]),
        ("get", "/audit", |_, _| ("/audit?limit=5".into(), NativeBody::None), ALL),
        ("get", "/audit/verify", |_, _| ("/audit/verify".into(), NativeBody::None), ALL),
    ];
    for op in vigil_server::native::OPERATIONS.iter().filter(|o| o.auth) {
        assert!(cases.iter().any(|(m, p, _, _)| *m == op.method && *p == op.path), "the native matrix lacks {} {}", op.method, op.path);
    }
    let denied = || s.registry.audit_log(&AuditQuery { outcome: Some("denied".into()), ..Default::default() }).unwrap().len();
    for (method, path, request, expect) in &cases {
        for (i, user) in users.iter().enumerate() {
            let (concrete, body) = request(&ctx, i);
            let before = denied();
            let (st, resp) = api(&method.to_ascii_uppercase(), &concrete, user, body);
            assert_eq!(st, expect[i], "{user} {method} {path}: {resp}");
            if st == 403 {
                assert!(denied() > before, "{user} {method} {path}: the refusal is audited");
            }
        }
    }
    assert!(s.registry.verify_audit().unwrap().ok());
}
