//! `vigil serve` as a real process: it prints its address, answers the MLflow API, and a
//! `kill -9` in the middle of a write load loses no acknowledged write (SQLite and PostgreSQL).

use crate::{PW, Served, Vigil, serve};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(10))).build().into()
}

fn basic() -> String {
    use base64::Engine;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("ds:{PW}")))
}

fn post(a: &ureq::Agent, url: &str, path: &str, body: &Value) -> Result<Value, String> {
    let mut r = a
        .post(&format!("{url}/api/2.0/mlflow/{path}"))
        .header("authorization", &basic())
        .header("content-type", "application/json")
        .send(body.to_string())
        .map_err(|e| e.to_string())?;
    let status = r.status().as_u16();
    let text = r.body_mut().read_to_string().map_err(|e| e.to_string())?;
    if status != 200 {
        return Err(format!("{status}: {text}"));
    }
    serde_json::from_str(&text).map_err(|e| e.to_string())
}

fn history(a: &ureq::Agent, url: &str, run: &str) -> Vec<i64> {
    let mut steps = Vec::new();
    let mut token = String::new();
    loop {
        let mut r = a
            .get(&format!("{url}/api/2.0/mlflow/metrics/get-history?run_id={run}&metric_key=loss&max_results=25000{token}"))
            .header("authorization", &basic())
            .call()
            .unwrap();
        let v: Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
        steps.extend(v["metrics"].as_array().into_iter().flatten().map(|m| m["step"].as_i64().unwrap()));
        match v["next_page_token"].as_str() {
            Some(t) => token = format!("&page_token={t}"),
            None => return steps,
        }
    }
}

fn kill_9_loses_no_acknowledged_write(v: Vigil) {
    let v = Vigil::team(v);
    let s = serve(&v);
    let a = agent();
    let exp = post(&a, &s.url, "experiments/create", &json!({"name": "durability"})).unwrap()["experiment_id"].as_str().unwrap().to_owned();
    let run = post(&a, &s.url, "runs/create", &json!({"experiment_id": exp})).unwrap()["run"]["info"]["run_id"].as_str().unwrap().to_owned();
    let acked = Arc::new(Mutex::new(Vec::<i64>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (url, run, acked, stop) = (s.url.clone(), run.clone(), acked.clone(), stop.clone());
            std::thread::spawn(move || {
                let a = agent();
                let mut i = 0i64;
                while !stop.load(Ordering::Relaxed) {
                    let step = w * 1_000_000 + i;
                    let body = json!({"run_id": run, "key": "loss", "value": 0.5, "timestamp": 1, "step": step});
                    match post(&a, &url, "runs/log-metric", &body) {
                        Ok(_) => acked.lock().unwrap().push(step),
                        Err(_) => return,
                    }
                    i += 1;
                }
            })
        })
        .collect();
    // Let the load run, then SIGKILL the server mid-write.
    let t = Instant::now();
    while acked.lock().unwrap().len() < 200 && t.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(s);
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 200, "the load ran: {} writes acknowledged", acked.len());

    // After a restart every acknowledged point is there, and the audit chain verifies.
    let s = serve(&v);
    let stored: std::collections::HashSet<i64> = history(&agent(), &s.url, &run).into_iter().collect();
    let missing: Vec<&i64> = acked.iter().filter(|st| !stored.contains(st)).collect();
    assert!(missing.is_empty(), "{} of {} acknowledged writes lost, e.g. {:?}", missing.len(), acked.len(), &missing[..missing.len().min(5)]);
    drop(s);
    let verify = v.as_user("ds", &["--json", "audit", "verify"]).ok().json();
    assert_eq!((verify["ok"].as_bool(), verify["first_bad_position"].is_null()), (Some(true), true), "{verify}");
}

#[test]
fn kill_9_during_writes_loses_no_acknowledged_write_sqlite() {
    kill_9_loses_no_acknowledged_write(Vigil::empty());
}

#[test]
fn kill_9_during_writes_loses_no_acknowledged_write_postgres() {
    if let Some(v) = Vigil::empty_postgres() {
        kill_9_loses_no_acknowledged_write(v);
    }
}

#[test]
fn serve_demo_loads_the_demo_data_set_once_then_serves_it() {
    let v = Vigil::empty();
    let start = || {
        let mut cmd = v.cmd();
        cmd.args(["serve", "--demo", "--addr", "127.0.0.1:0"]).env("VIGIL_LOG", "off").stdout(Stdio::piped()).stderr(Stdio::null());
        let mut child = cmd.spawn().expect("spawn");
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut seen = Vec::new();
        let url = loop {
            let mut line = String::new();
            assert!(out.read_line(&mut line).expect("read") > 0, "server exited; output: {seen:?}");
            if let Some(u) = line.trim().strip_prefix("listening on ") {
                break u.to_owned();
            }
            seen.push(line);
        };
        (Served { child, url }, seen)
    };
    let (s, output) = start();
    assert!(output.iter().any(|l| l.contains("cleo signed")), "the demo ran: {output:?}");
    use base64::Engine;
    let auth = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("dana:demo-dana-password"));
    let mut r = agent().get(&format!("{}/api/v1/models", s.url)).header("authorization", &auth).call().unwrap();
    let models: Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
    let versions = &models["models"][0]["versions"];
    assert_eq!(versions[0]["stage"], json!("production"), "{models}");
    drop(s);
    // A second start serves the existing store without adding a version.
    let (s, output) = start();
    assert!(output.is_empty(), "{output:?}");
    let mut r = agent().get(&format!("{}/api/v1/models", s.url)).header("authorization", &auth).call().unwrap();
    let models: Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(models["models"][0]["versions"].as_array().map(Vec::len), Some(1));
}

/// A throwaway CA and a leaf certificate for 127.0.0.1, made with the `openssl` command.
fn test_certificates(dir: &std::path::Path) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl").args(args).current_dir(dir).output().expect("the openssl command is needed for the TLS test");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    std::fs::write(dir.join("leaf.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n").unwrap();
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    run(&[&["req", "-x509"][..], &ec, &["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=vigil test CA", "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign"]].concat());
    run(&[&["req"][..], &ec, &["-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=127.0.0.1"]].concat());
    run(&["x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "leaf.pem", "-days", "2", "-extfile", "leaf.ext"]);
}

#[test]
fn serve_tls_answers_https_only_with_the_configured_certificate() {
    let v = Vigil::with_team();
    let certs = tempfile::tempdir().unwrap();
    test_certificates(certs.path());
    let mut cmd = v.cmd();
    cmd.args(["serve", "--addr", "127.0.0.1:0", "--tls-cert"]).arg(certs.path().join("leaf.pem")).arg("--tls-key").arg(certs.path().join("leaf.key"));
    cmd.env("VIGIL_LOG", "off").stdout(Stdio::piped()).stderr(Stdio::null());
    let mut child = cmd.spawn().expect("spawn");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).unwrap();
    let url = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("{line:?}")).to_owned();
    let s = Served { child, url: url.clone() };
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");

    let ca = ureq::tls::Certificate::from_pem(&std::fs::read(certs.path().join("ca.pem")).unwrap()).unwrap().to_owned();
    let trusting = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .tls_config(ureq::tls::TlsConfig::builder().root_certs(ureq::tls::RootCerts::Specific(Arc::new(vec![ca]))).build())
        .build()
        .new_agent();
    let mut r = trusting.get(&format!("{url}/api/2.0/mlflow/experiments/get?experiment_id=0")).header("authorization", &basic()).call().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.body_mut().read_to_string().unwrap().contains("Default"));
    // A client that does not trust the CA refuses the connection; plain HTTP gets no answer.
    assert!(agent().get(&format!("{url}/healthz")).call().is_err(), "untrusted certificate accepted");
    let plain = url.replace("https://", "http://");
    assert!(!agent().get(&format!("{plain}/healthz")).call().map(|r| r.status().as_u16() == 200).unwrap_or(false), "plain HTTP answered on the TLS port");
    // The server still answers after both failed handshakes.
    assert_eq!(trusting.get(&format!("{url}/healthz")).call().unwrap().status().as_u16(), 200);
    drop(s);

    // A key that does not match the certificate is a clear start-up error.
    let out = v.cmd().args(["serve", "--addr", "127.0.0.1:0", "--tls-cert"]).arg(certs.path().join("leaf.pem")).arg("--tls-key").arg(certs.path().join("ca.key")).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("TLS key does not match"), "{err}");
    let out = v.cmd().args(["serve", "--tls-cert"]).arg(certs.path().join("leaf.pem")).output().unwrap();
    assert!(!out.status.success(), "--tls-cert without --tls-key is refused");
}

/// Two `vigil serve` replicas on one PostgreSQL database, written to at once: experiments,
/// runs, registrations and aliases stay consistent (unique names and ids, version numbers
/// 1..N with none lost or doubled), no request fails, and the audit chain verifies.
#[test]
fn two_replicas_on_one_postgres_keep_every_invariant() {
    let Some(v) = Vigil::empty_postgres() else { return };
    let v = Vigil::team(v);
    let replicas = [serve(&v), serve(&v)];
    let urls: Vec<String> = replicas.iter().map(|s| s.url.clone()).collect();
    let a = agent();
    let exp = post(&a, &urls[0], "experiments/create", &json!({"name": "shared"})).unwrap()["experiment_id"].as_str().unwrap().to_owned();
    post(&a, &urls[1], "registered-models/create", &json!({"name": "shared-model"})).unwrap();

    let workers: Vec<_> = (0..8)
        .map(|w| {
            let (url, exp) = (urls[w % 2].clone(), exp.clone());
            std::thread::spawn(move || {
                let a = agent();
                let mut out = Vec::new();
                for i in 0..5 {
                    // Concurrent creations of distinct experiments and of one name from both replicas.
                    post(&a, &url, "experiments/create", &json!({"name": format!("e-{w}-{i}")})).unwrap();
                    let same = post(&a, &url, "experiments/create", &json!({"name": "contended"}));
                    assert!(same.is_ok() || same.as_ref().unwrap_err().contains("RESOURCE_ALREADY_EXISTS"), "{same:?}");
                    let run = post(&a, &url, "runs/create", &json!({"experiment_id": exp})).unwrap()["run"]["info"]["run_id"].as_str().unwrap().to_owned();
                    post(&a, &url, "runs/log-batch", &json!({"run_id": run, "metrics": [{"key": "auc", "value": 0.9, "timestamp": 1, "step": i}]})).unwrap();
                    let mv = post(&a, &url, "model-versions/create", &json!({"name": "shared-model", "source": format!("s3://m/{w}/{i}"), "run_id": run})).unwrap();
                    out.push(mv["model_version"]["version"].as_str().unwrap().parse::<i64>().unwrap());
                    post(&a, &url, "registered-models/alias", &json!({"name": "shared-model", "alias": format!("w{w}"), "version": out.last().unwrap().to_string()}))
                        .unwrap();
                }
                out
            })
        })
        .collect();
    let mut numbers: Vec<i64> = workers.into_iter().flat_map(|w| w.join().unwrap()).collect();
    numbers.sort();
    assert_eq!(numbers, (1..=40).collect::<Vec<_>>(), "every registration got its own number");

    let mut r = a.get(&format!("{}/api/2.0/mlflow/experiments/search?max_results=1000", urls[1])).header("authorization", &basic()).call().unwrap();
    let exps: Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
    let names: Vec<&str> = exps["experiments"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(names.iter().filter(|n| **n == "contended").count(), 1);
    assert_eq!(names.len(), 1 + 1 + 1 + 40, "Default, shared, contended and 40 others: {names:?}");
    let mut ids: Vec<&str> = exps["experiments"].as_array().unwrap().iter().map(|e| e["experiment_id"].as_str().unwrap()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), names.len());
    let mut r = a.get(&format!("{}/api/2.0/mlflow/registered-models/get?name=shared-model", urls[0])).header("authorization", &basic()).call().unwrap();
    let m: Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(m["registered_model"]["aliases"].as_array().unwrap().len(), 8, "{m}");
    drop(replicas);
    let verify = v.as_user("ds", &["--json", "audit", "verify"]).ok().json();
    assert_eq!(verify["ok"].as_bool(), Some(true), "{verify}");
}
