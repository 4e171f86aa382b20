//! The CLI against a server (`--url`): the same commands give the same output and exit codes
//! as against the store directly, the rules run in the server (refusals come back with their
//! codes), signatures still take the password, and tokens work instead of passwords.

use crate::{PW, Run, Vigil, bin, serve};
use std::process::{Command, Stdio};

/// The binary with no local store at all: everything must go through the server.
fn remote(url: &str, user: Option<&str>, args: &[&str]) -> Run {
    let mut c = Command::new(bin());
    c.env_remove("VIGIL_DATA_DIR").env_remove("VIGIL_DATABASE_URL").env_remove("VIGIL_TOKEN").env_remove("VIGIL_USER");
    c.env("VIGIL_DATA_DIR", "/nonexistent/vigil-remote-test").env("VIGIL_URL", url).stdin(Stdio::null());
    if let Some(u) = user {
        c.args(["--user", u]).env("VIGIL_PASSWORD", PW);
    }
    c.args(args).output().expect("spawn").into()
}

#[test]
fn the_cli_against_a_server_matches_the_cli_against_the_store() {
    let v = Vigil::with_team();
    v.register("ds", ("sepsis", "1.0.0")).ok();
    let s = serve(&v);

    // Writes through the server: register, request, sign (password re-entered), withdraw.
    let reg = remote(&s.url, Some("ds"), &[
        "--json", "model", "register", "sepsis", "--version", "1.1.0", "--type", "classification", "--artifact-uri", "s3://models/s/1.1.0",
        "--artifact-sha256", &"cd".repeat(32), "--metric", "auc_roc=0.9",
    ])
    .ok();
    assert_eq!(reg.json()["version"], "1.1.0");
    // Production needs a passing validation: refused through the server too, then validated.
    let early = remote(&s.url, Some("ds"), &["promote", "request", "sepsis@1.0.0", "--to", "production", "--justification", "validated"]);
    assert_eq!(early.code, 1, "{}", early.stderr);
    assert!(early.stderr.contains("validation_required"), "{}", early.stderr);
    v.validate_ok("ds", "sepsis@1.0.0");
    let req = remote(&s.url, Some("ds"), &["--json", "promote", "request", "sepsis@1.0.0", "--to", "production", "--justification", "validated"]).ok();
    let id = req.json()["request_id"].as_str().unwrap().to_owned();
    // The server's rules: the requester cannot sign; a reviewer without the password cannot either.
    let refused = remote(&s.url, Some("ds"), &["promote", "approve", &id]);
    assert_eq!(refused.code, 1, "{} {}", refused.stdout, refused.stderr);
    assert!(refused.stderr.contains("role_not_permitted") || refused.stderr.contains("self_approval"), "{}", refused.stderr);
    let signed = remote(&s.url, Some("lead"), &["promote", "approve", &id, "--comment", "metrics reviewed"]).ok();
    assert!(signed.stdout.contains("signed by Lee Lead (ml_lead)"), "{}", signed.stdout);
    remote(&s.url, Some("clin"), &["promote", "approve", &id, "--comment", "clinically sound"]).ok();

    // Content updates, policies (administrators) and data-hash lineage through the server too.
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("m.json");
    std::fs::write(&manifest, serde_json::json!({"artifact_uri": "s3://models/s/1.1.0-fixed", "artifact_sha256": "ef".repeat(32), "lineage": {"training_data_hash": "sha256:cohort-2026"}}).to_string()).unwrap();
    let upd = remote(&s.url, Some("ds"), &["model", "update", "sepsis@1.1.0", "--manifest", manifest.to_str().unwrap(), "--reason", "fixed artifact"]).ok();
    assert!(upd.stdout.starts_with("updated sepsis@1.1.0: content hash "), "{}", upd.stdout);
    assert_eq!(remote(&s.url, Some("ds"), &["policy", "set", "staging", "--approvals", "1", "--roles", "ml_lead", "--reason", "x"]).code, 1, "only administrators set policies");
    remote(&s.url, Some("admin"), &["policy", "set", "archived", "--approvals", "2", "--roles", "ml_lead,clinical_reviewer", "--reason", "two-person retirement"]).ok();

    // Reads: identical output, text and JSON, remote and local.
    for args in [
        vec!["model", "list"],
        vec!["model", "show", "sepsis"],
        vec!["model", "show", "sepsis@1.0.0"],
        vec!["promote", "list"],
        vec!["promote", "show", id.as_str()],
        vec!["lineage", "sepsis@1.0.0"],
        vec!["policy", "show"],
        vec!["policy", "validation", "show", "--model", "sepsis"],
        vec!["policy", "validation", "show", "--model-type", "regression"],
        vec!["audit", "log", "--model", "sepsis"],
        vec!["audit", "verify"],
        vec!["lineage", "--data-hash", "sha256:cohort-2026"],
    ] {
        for json in [false, true] {
            let mut a: Vec<&str> = if json { vec!["--json"] } else { vec![] };
            a.extend(&args);
            let local = v.run(&a);
            let far = remote(&s.url, Some("ds"), &a);
            assert_eq!(far.code, local.code, "{args:?}: {}", far.stderr);
            assert_eq!(far.stdout, local.stdout, "{args:?} json={json}");
            assert!(!far.stdout.trim().is_empty(), "{args:?}");
        }
    }

    assert!(remote(&s.url, Some("ds"), &["lineage", "--data-hash", "sha256:cohort-2026"]).ok().stdout.contains("sepsis@1.1.0"));
    assert!(v.run(&["policy", "show"]).ok().stdout.contains("clinical_reviewer"), "the administrator's change reached the store");

    // Validation through the server, and the card it feeds, printed as locally.
    let holdout = dir.path().join("holdout.csv");
    let mut t = String::from("y,score,sex\n");
    for i in 0..200 {
        t.push_str(&format!("{},{},{}\n", u8::from(i % 3 == 0), if i % 3 == 0 { 0.8 } else { 0.1 + (i % 4) as f64 * 0.1 }, if i % 2 == 0 { "F" } else { "M" }));
    }
    std::fs::write(&holdout, t).unwrap();
    let val = remote(&s.url, Some("clin"), &["validate", "sepsis@1.0.0", "--data", holdout.to_str().unwrap(), "--label", "y", "--score", "score", "--sensitive", "sex"]);
    assert_eq!(val.code, 0, "{}{}", val.stdout, val.stderr);
    assert!(val.stdout.contains("sepsis@1.0.0 validation val_") && val.stdout.contains("PASSED") && val.stdout.contains("floor:roc_auc"), "{}", val.stdout);
    // A model's policy set through the server, by an administrator only; the next validation
    // runs under it (a card is now required: the gate fails, exit 1).
    let policy = dir.path().join("policy.json");
    std::fs::write(&policy, r#"{"require_data_hash": false, "resamples": 250}"#).unwrap();
    let pf = policy.to_str().unwrap();
    assert_eq!(remote(&s.url, Some("lead"), &["policy", "validation", "set", "--model", "sepsis", "--file", pf, "--reason", "x"]).code, 1);
    let set = remote(&s.url, Some("admin"), &["--json", "policy", "validation", "set", "--model", "sepsis", "--file", pf, "--reason", "cards for sepsis"]).ok().json();
    assert_eq!((set["source"].as_str(), set["policy"]["resamples"].as_u64()), (Some("model"), Some(250)));
    let val = remote(&s.url, Some("clin"), &["--json", "validate", "sepsis@1.0.0", "--data", holdout.to_str().unwrap(), "--label", "y", "--score", "score", "--sensitive", "sex"]);
    assert_eq!(val.code, 1, "{}", val.stderr);
    assert_eq!((val.json()["policy_source"].as_str(), val.json()["policy"]["resamples"].as_u64()), (Some("model"), Some(250)));
    for format in ["md", "html", "json", "mct"] {
        let far = remote(&s.url, Some("ds"), &["card", "sepsis@1.0.0", "--format", format]).ok();
        assert_eq!(far.stdout, v.run(&["card", "sepsis@1.0.0", "--format", format]).ok().stdout, "{format}");
    }

    // Errors keep their codes and exit status.
    let local = v.run(&["--json", "model", "show", "nosuch"]);
    let far = remote(&s.url, Some("ds"), &["--json", "model", "show", "nosuch"]);
    assert_eq!((far.code, far.json()["error"]["code"].clone()), (local.code, local.json()["error"]["code"].clone()));
    assert_eq!(remote(&s.url, Some("ds"), &["user", "list"]).code, 2, "host administration stays local");
    assert_eq!(remote(&s.url, Some("ds"), &["model", "list"]).code, 0);
    let wrong = {
        let mut c = Command::new(bin());
        c.env("VIGIL_URL", &s.url).env("VIGIL_PASSWORD", "wrong password!!").args(["--user", "ds", "model", "list"]).stdin(Stdio::null());
        Run::from(c.output().unwrap())
    };
    assert_eq!(wrong.code, 1);
    assert!(wrong.stderr.contains("authentication_failed"), "{}", wrong.stderr);

    // A token instead of a password (signing still needs the password).
    let a = ureq::Agent::config_builder().http_status_as_error(false).build().new_agent();
    let mut resp = a
        .post(&format!("{}/api/v1/auth/login", s.url))
        .header("content-type", "application/json")
        .send(serde_json::json!({"user": "ds", "password": PW}).to_string())
        .unwrap();
    let token: serde_json::Value = serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap();
    let mut c = Command::new(bin());
    c.env_remove("VIGIL_PASSWORD").env("VIGIL_URL", &s.url).env("VIGIL_TOKEN", token["token"].as_str().unwrap()).args(["--json", "model", "show", "sepsis@1.0.0"]).stdin(Stdio::null());
    let with_token = Run::from(c.output().unwrap()).ok();
    assert_eq!(with_token.json()["stage"], "production");
}

#[test]
fn drift_commands_against_a_server() {
    let v = Vigil::with_team();
    v.register("ds", ("icu", "1.0.0")).ok();
    let s = serve(&v);
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, shift: f64, n: usize, unit: &str| {
        let mut t = String::from("age,unit,score\n");
        for i in 0..n {
            t.push_str(&format!("{},{},{}\n", 40.0 + (i % 40) as f64 + shift, if i % 2 == 0 { "a" } else { unit }, (i % 10) as f64 / 10.0));
        }
        let p = dir.path().join(name);
        std::fs::write(&p, t).unwrap();
        p.display().to_string()
    };
    let train = write("train.csv", 0.0, 2000, "b");
    let prod = write("prod.csv", 25.0, 1000, "c");
    let out = remote(&s.url, Some("ds"), &["drift", "baseline", "icu@1.0.0", "--data", &train, "--prediction-col", "score"]).ok();
    assert!(out.stdout.contains("baseline v1 for icu@1.0.0: 2000 rows, 2 features profiled"), "{}", out.stdout);
    remote(&s.url, Some("ds"), &["drift", "add", "icu@1.0.0", "--data", &prod, "--prediction-col", "score"]).ok();
    let check = remote(&s.url, Some("clin"), &["--json", "drift", "check", "icu@1.0.0"]).ok();
    assert_eq!(check.json()["status"], "drift");
    let table = remote(&s.url, Some("clin"), &["drift", "check", "icu@1.0.0"]).ok();
    assert!(table.stdout.contains("status drift") && table.stdout.contains("FEATURE"), "{}", table.stdout);
    let alerts = remote(&s.url, Some("ds"), &["--json", "drift", "alerts", "icu@1.0.0"]).ok();
    let id = alerts.json()[0]["alert_id"].as_str().unwrap().to_owned();
    // The same alerts, printed the same way, locally.
    assert_eq!(remote(&s.url, Some("ds"), &["drift", "alerts"]).ok().stdout, v.run(&["drift", "alerts"]).ok().stdout);
    remote(&s.url, Some("ds"), &["drift", "ack", &id, "--comment", "investigating"]).ok();
    let cfg = remote(&s.url, Some("ds"), &["--json", "drift", "config", "icu@1.0.0"]).ok();
    assert_eq!(cfg.json(), v.run(&["--json", "drift", "config", "icu@1.0.0"]).ok().json());
    // Refused by the server's rules: reviewers do not add samples.
    let refused = remote(&s.url, Some("clin"), &["drift", "add", "icu@1.0.0", "--data", &prod]);
    assert_eq!(refused.code, 1);
    assert!(refused.stderr.contains("role_not_permitted"), "{}", refused.stderr);
}

#[test]
fn deploy_against_a_server_runs_the_same_rules() {
    let v = Vigil::with_team();
    v.production_and_staging("sepsis");
    let s = serve(&v);
    let refused = remote(&s.url, Some("ds"), &["deploy", "sepsis", "--canary", "1.1.0=10", "--reason", "try"]);
    assert_ne!(refused.code, 0);
    assert!(refused.stderr.contains("role_not_permitted") || refused.stderr.contains("role"), "{}", refused.stderr);
    let d = remote(&s.url, Some("lead"), &["--json", "deploy", "sepsis", "--canary", "1.1.0=10", "--unit-key", "header:x-patient-id", "--reason", "canary"]).ok().json();
    assert_eq!((d["revision"].as_i64(), d["arms"][1]["version"].as_str(), d["arms"][1]["percent"].as_f64()), (Some(1), Some("1.1.0"), Some(10.0)));
    let d = remote(&s.url, Some("lead"), &["--json", "deploy", "sepsis", "--canary", "20", "--reason", "ramp"]).ok().json();
    assert_eq!((d["revision"].as_i64(), d["arms"][1]["percent"].as_f64()), (Some(2), Some(20.0)));
    // The server's answer matches the store's.
    let local = v.run(&["--json", "deploy", "show", "sepsis"]).ok().json();
    let far = remote(&s.url, Some("clin"), &["--json", "deploy", "show", "sepsis"]).ok().json();
    assert_eq!(local, far);
    let history = remote(&s.url, Some("clin2"), &["--json", "deploy", "history", "sepsis"]).ok().json();
    assert_eq!(history.as_array().map(|h| h.iter().filter(|e| e["outcome"] == "ok").count()), Some(2), "{history}");
    // The server checks what it is asked to deploy against the artifacts it stores.
    v.register_onnx("ds", ("sepsis", "3.0.0"), "unsupported_svc").ok();
    let rid = v.request("ds", "sepsis@3.0.0", "staging");
    v.as_user("lead", &["promote", "approve", &rid, "--comment", "ok"]).ok();
    let e = remote(&s.url, Some("lead"), &["deploy", "sepsis", "--shadow", "3.0.0", "--reason", "svm shadow"]);
    assert_ne!(e.code, 0);
    assert!(e.stderr.contains("model_not_servable") && e.stderr.contains("SVMClassifier"), "{}", e.stderr);
}

/// `vigil serve --gateway-addr`: the registry's API and the gateway in one process, on the
/// embedded store; a deployment made through that API is what the gateway then serves.
#[test]
fn serve_runs_the_gateway_in_the_same_process() {
    use std::io::BufRead;
    let v = Vigil::with_team();
    v.production_and_staging("sepsis");
    let mut child = Command::new(bin())
        .arg("--data-dir")
        .arg(v.data_dir())
        .args(["serve", "--addr", "127.0.0.1:0", "--gateway-addr", "127.0.0.1:0"])
        .env_remove("VIGIL_USER")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let (mut first, mut second) = (String::new(), String::new());
    out.read_line(&mut first).unwrap();
    out.read_line(&mut second).unwrap();
    let gw = first.trim().strip_prefix("gateway listening on ").unwrap_or_else(|| panic!("{first:?}")).to_owned();
    let api = second.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("{second:?}")).to_owned();
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let infer = |patient: &str| {
        let body = r#"{"inputs": [{"name": "X", "shape": [1, 8], "datatype": "FP32", "data": [0.1, -0.2, 0.3, 0.4, -0.5, 0.6, 0.7, 0.8]}]}"#;
        let r = agent.post(&format!("{gw}/v2/models/sepsis/infer")).header("content-type", "application/json").header("x-patient-id", patient).send(body).unwrap();
        (r.status().as_u16(), r.headers().get("x-vigil-model-version").and_then(|h| h.to_str().ok()).unwrap_or("").to_owned())
    };
    let before = infer("MRN-1");
    let healthy = agent.get(&format!("{api}/healthz")).call().unwrap().status().as_u16();
    // An A/B test made through the server's API (`vigil --url … deploy --ab`): both versions answer.
    let ab = remote(&api, Some("lead"), &["--json", "deploy", "sepsis", "--ab", "production=50,1.1.0=50", "--unit-key", "header:x-patient-id", "--reason", "a/b"]);
    let mut versions = std::collections::BTreeSet::new();
    // (The gateway follows the registry every second; a busy machine may take longer.)
    for i in 0..1500 {
        versions.insert(infer(&format!("MRN-{i}")).1);
        if versions.len() == 2 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(before, (200, "sepsis@1.0.0".to_owned()));
    assert_eq!(healthy, 200);
    let ab = ab.ok().json();
    assert_eq!((ab["arms"][0]["percent"].as_f64(), ab["arms"][1]["version"].as_str()), (Some(50.0), Some("1.1.0")), "{ab}");
    assert_eq!(versions.into_iter().collect::<Vec<_>>(), ["sepsis@1.0.0", "sepsis@1.1.0"]);
}
