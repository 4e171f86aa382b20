//! The documented workflows through the binary.

use crate::*;

#[test]
fn register_request_two_approvals_production_and_verify() {
    let v = Vigil::with_team();
    let reg = v.register("ds", ("diabetes-risk-classifier", "1.0.0")).ok().json();
    assert_eq!(reg["stage"], "development");
    assert_eq!(reg["version"], "1.0.0");
    assert_eq!(reg["metrics"]["auc_roc"], 0.95);

    let rid = v.request("ds", "diabetes-risk-classifier@1.0.0", "production");
    assert!(rid.starts_with("req_"));

    let a1 = v.as_user("lead", &["--json", "promote", "approve", &rid, "--meaning", "approval", "--comment", "Approved after clinical validation review"]).ok().json();
    assert_eq!(a1["status"], "pending");
    assert_eq!(a1["signature"]["printed_name"], "Lee Lead");
    assert_eq!(a1["tally"]["missing_roles"][0], "clinical_reviewer");
    let a2 = v.as_user("clin", &["--json", "promote", "approve", &rid, "--comment", "ok"]).ok().json();
    assert_eq!(a2["status"], "approved");

    let shown = v.run(&["--json", "model", "show", "diabetes-risk-classifier@1.0.0"]).ok().json();
    assert_eq!(shown["stage"], "production");
    assert_eq!(shown["content_hash_ok"], true);

    let human = v.run(&["audit", "verify"]).ok();
    assert!(human.stdout.contains("audit chain intact"), "{}", human.stdout);
    let verify = v.run(&["--json", "audit", "verify"]).ok().json();
    assert_eq!(verify["ok"], true);
    assert_eq!(verify["signatures_checked"], 2);

    let lineage = v.run(&["--json", "lineage", "diabetes-risk-classifier@1.0.0"]).ok().json();
    assert_eq!(lineage["requests"][0]["signatures"].as_array().map(Vec::len), Some(2));
    assert_eq!(lineage["stage_history"][1]["to"], "production");

    // Human outputs name the people who signed.
    let shown = v.run(&["promote", "show", &rid]).ok().stdout;
    assert!(shown.contains("Dr. Cleo Reviewer") && shown.contains("Lee Lead"), "{shown}");
    let list = v.run(&["model", "list"]).ok().stdout;
    assert!(list.contains("diabetes-risk-classifier") && list.contains("1.0.0"), "{list}");
}

#[test]
fn register_from_a_toml_manifest() {
    let v = Vigil::with_team();
    let manifest = v.data_dir().join("model.toml");
    std::fs::write(
        &manifest,
        format!(
            r#"
name = "sepsis-early-warning"
version = "2.1.0-rc.1+build.7"
model_type = "classification"
artifact_uri = "s3://models/sepsis/2.1.0"
artifact_sha256 = "{}"

[metrics]
auc_roc = 0.88
f1 = 0.71

[lineage]
training_data_uri = "s3://data/sepsis-v9"
training_data_hash = "sha256:feedface"
training_run_id = "run_9"
code_commit = "abc1234"
features = ["lactate", "heart_rate"]

[card]
model_name = "Sepsis Early Warning"
intended_use = "Flag adult inpatients at risk of sepsis within 6 hours"
"performance.external_validity" = {{ not_available = "single-site model" }}
"#,
            "cd".repeat(32)
        ),
    )
    .unwrap();
    let out = v.as_user("ds", &["--json", "model", "register", "--manifest", manifest.to_str().unwrap()]).ok().json();
    assert_eq!(out["version"], "2.1.0-rc.1+build.7");
    assert_eq!(out["lineage"]["features"][1], "heart_rate");
    let fields = out["model_card"]["fields"].as_array().unwrap();
    let ext = fields.iter().find(|f| f["key"] == "performance.external_validity").unwrap();
    assert_eq!(ext["status"], "not_available");
    assert_eq!(out["model_card"]["hti1_missing"].as_array().map(Vec::len), Some(29));
    let by_hash = v.run(&["--json", "lineage", "--data-hash", "sha256:feedface"]).ok().json();
    assert_eq!(by_hash[0]["name"], "sepsis-early-warning");
}

#[test]
fn audit_log_filters_and_jsonl_export() {
    let v = Vigil::with_team();
    v.register("ds", ("m", "1.0.0")).ok();
    let rid = v.request("ds", "m@1.0.0", "staging");
    // A denied attempt: the requester cannot sign (and is not an ml_lead either).
    assert_eq!(v.as_user("ds", &["promote", "approve", &rid]).code, 1);
    v.as_user("lead", &["promote", "approve", &rid]).ok();

    let denied = v.run(&["--json", "audit", "log", "--outcome", "denied"]).ok().json();
    let denied = denied.as_array().unwrap();
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0]["details"]["code"], "role_not_permitted");
    assert_eq!(denied[0]["actor"], "ds");

    let promo = v.run(&["--json", "audit", "log", "--action", "promotion.", "--model", "m"]).ok().json();
    let actions: Vec<&str> = promo.as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["promotion.request", "promotion.approve", "promotion.approve", "promotion.close"]);

    let out = v.data_dir().join("audit.jsonl");
    v.run(&["audit", "export", "--output", out.to_str().unwrap()]).ok();
    let text = std::fs::read_to_string(&out).unwrap();
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(lines.len() > 8);
    for (i, e) in lines.iter().enumerate() {
        assert_eq!(e["seq"], i as i64 + 1);
        if i > 0 {
            assert_eq!(e["prev_hash"], lines[i - 1]["hash"], "the export carries the chain");
        }
    }
    let since = v.run(&["--json", "audit", "log", "--since", "2999-01-01T00:00:00Z"]).ok().json();
    assert_eq!(since.as_array().map(Vec::len), Some(0));
}

#[test]
fn tampering_with_the_database_file_is_named_by_audit_verify() {
    let v = Vigil::with_team();
    v.register("ds", ("m", "1.0.0")).ok();
    let rid = v.request("ds", "m@1.0.0", "production");
    v.as_user("lead", &["promote", "approve", &rid]).ok();
    v.as_user("clin", &["promote", "approve", &rid]).ok();
    v.run(&["audit", "verify"]).ok();

    let db = v.db_file();
    let tamper = |sql: &str| {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute_batch("DROP TRIGGER IF EXISTS audit_events_no_update; DROP TRIGGER IF EXISTS audit_events_no_delete;").unwrap();
        c.execute_batch(sql).unwrap();
    };
    // Edit: make it look as if someone else approved.
    tamper("UPDATE audit_events SET actor = 'mallory' WHERE seq = 12");
    let r = v.run(&["audit", "verify"]);
    assert_eq!(r.code, 1);
    assert!(r.stdout.contains("BROKEN at position 12") && r.stdout.contains("edited"), "{}", r.stdout);
    let j = v.run(&["--json", "audit", "verify"]).json();
    assert_eq!((j["ok"].as_bool(), j["first_bad_position"].as_i64()), (Some(false), Some(12)));
}

#[test]
fn deletion_insertion_and_reordering_in_the_file_are_named() {
    for (sql, pos) in [
        ("DELETE FROM audit_events WHERE seq = 4", 4),
        ("UPDATE audit_events SET seq = -1 WHERE seq = 6; UPDATE audit_events SET seq = 6 WHERE seq = 7; UPDATE audit_events SET seq = 7 WHERE seq = -1", 6),
        (
            "INSERT INTO audit_events (seq, at, actor, action, outcome, entity_type, entity_id, model, version, details, prev_hash, hash) \
             SELECT MAX(seq) + 1, '2026-01-01T00:00:00.000000Z', 'mallory', 'user.create', 'ok', 'user', 'mallory', NULL, NULL, '{}', \
             (SELECT hash FROM audit_events ORDER BY seq DESC LIMIT 1), 'x' FROM audit_events",
            0,
        ),
    ] {
        let v = Vigil::with_team();
        v.register("ds", ("m", "1.0.0")).ok();
        let n = v.run(&["--json", "audit", "verify"]).ok().json()["events"].as_i64().unwrap();
        let c = rusqlite::Connection::open(v.db_file()).unwrap();
        c.execute_batch("DROP TRIGGER audit_events_no_update; DROP TRIGGER audit_events_no_delete;").unwrap();
        c.execute_batch(sql).unwrap();
        drop(c);
        let j = v.run(&["--json", "audit", "verify"]).json();
        let expected = if pos == 0 { n + 1 } else { pos };
        assert_eq!(j["ok"], false, "{sql}");
        assert_eq!(j["first_bad_position"].as_i64(), Some(expected), "{sql}: {j}");
    }
}

#[test]
fn the_demo_runs_twice_and_promotes_the_next_version() {
    let dir = tempfile::tempdir().unwrap();
    for expected in ["diabetes-risk-classifier@1.0.0", "diabetes-risk-classifier@1.1.0"] {
        let out: Run = Command::new(bin()).arg("--data-dir").arg(dir.path()).arg("demo").output().unwrap().into();
        let out = out.ok();
        assert!(out.stdout.contains(&format!("production version is now {expected}")), "{}", out.stdout);
        assert!(out.stdout.contains("chain intact"), "{}", out.stdout);
    }
}

#[test]
fn the_postgres_workflow_matches_the_embedded_one() {
    let Some(v) = Vigil::empty_postgres() else { return eprintln!("skipped: VIGIL_TEST_DATABASE_URL not set") };
    let v = Vigil::team(v);
    v.register("ds", ("m", "1.0.0")).ok();
    let rid = v.request("ds", "m@1.0.0", "production");
    v.as_user("lead", &["promote", "approve", &rid]).ok();
    let done = v.as_user("clin", &["--json", "promote", "approve", &rid]).ok().json();
    assert_eq!(done["status"], "approved");
    let verify = v.run(&["--json", "audit", "verify"]).ok().json();
    assert_eq!(verify["ok"], true);
    assert!(!v.db_file().exists(), "nothing written to the embedded location");
}

#[test]
fn password_from_stdin_and_json_demo() {
    use std::io::Write;
    let v = Vigil::with_team();
    let mut child = v
        .cmd()
        .args(["--user", "ds", "--password-stdin", "--json", "model", "register", "m", "--version", "1.0.0", "--type", "other", "--artifact-uri", "s3://m", "--artifact-sha256", &"ef".repeat(32)])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(format!("{PW}\n").as_bytes()).unwrap();
    let r: Run = child.wait_with_output().unwrap().into();
    assert_eq!(r.ok().json()["created_by"], "ds");
    // Without any password source and no terminal, a write is a usage error, not a hang.
    let r = v.cmd().args(["--user", "ds", "model", "register", "m", "--version", "2.0.0", "--type", "other", "--artifact-uri", "s3://m", "--artifact-sha256", &"ef".repeat(32)]).output().unwrap();
    let r: Run = r.into();
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("password"), "{}", r.stderr);

    let dir = tempfile::tempdir().unwrap();
    let out: Run = Command::new(bin()).arg("--data-dir").arg(dir.path()).args(["--json", "demo"]).output().unwrap().into();
    let j = out.ok().json();
    assert_eq!(j["model_version"]["stage"], "production");
    assert_eq!(j["audit"]["ok"], true);
}

#[test]
fn local_reads_of_phi_marked_models_need_a_user_and_are_audited() {
    let v = Vigil::with_team();
    v.register("ds", ("plain", "1.0.0")).ok();
    let manifest = v.data_dir().join("marked.json");
    std::fs::write(&manifest, r#"{"name": "marked", "version": "1.0.0", "model_type": "classification", "artifact_uri": "s3://m", "artifact_sha256": "abababababababababababababababababababababababababababababababab", "tags": {"vigil.phi": "true"}, "lineage": {"training_data_hash": "sha256:phi"}}"#).unwrap();
    v.as_user("ds", &["--json", "model", "register", "--manifest", manifest.to_str().unwrap()]).ok();
    let phi_reads = || v.run(&["--json", "audit", "log", "--action", "phi.read"]).ok().json().as_array().map(Vec::len).unwrap_or(0);
    assert_eq!(phi_reads(), 0);
    // Unmarked records read as before, without signing in.
    v.run(&["--json", "model", "show", "plain@1.0.0"]).ok();
    v.run(&["--json", "lineage", "plain@1.0.0"]).ok();
    assert_eq!(phi_reads(), 0);
    // Marked ones need a user, and each read is recorded.
    for args in [&["model", "show", "marked@1.0.0"][..], &["model", "show", "marked"], &["lineage", "marked@1.0.0"], &["lineage", "--data-hash", "sha256:phi"], &["card", "marked@1.0.0", "--format", "json"], &["model", "list"], &["drift", "config", "marked@1.0.0"]] {
        let refused = v.run(args);
        assert_eq!(refused.code, 2, "{args:?}: {}", refused.stderr);
        assert!(refused.stderr.contains("PHI"), "{args:?}: {}", refused.stderr);
        let before = phi_reads();
        v.as_user("clin", args).ok();
        assert_eq!(phi_reads(), before + 1, "{args:?}");
    }
    let last = v.run(&["--json", "audit", "log", "--action", "phi.read"]).ok().json();
    let last = last.as_array().and_then(|a| a.last()).cloned().unwrap();
    assert_eq!((last["actor"].as_str(), last["details"]["route"].as_str()), (Some("clin"), Some("vigil drift config")), "{last}");
    // A drift check reads the model's monitoring data: audited like the server's.
    let data = v.data_dir().join("d.csv");
    std::fs::write(&data, (0..200).fold(String::from("age\n"), |t, i| t + &format!("{}\n", 40 + i % 30))).unwrap();
    v.as_user("ds", &["drift", "baseline", "marked@1.0.0", "--data", data.to_str().unwrap()]).ok();
    v.as_user("ds", &["drift", "add", "marked@1.0.0", "--data", data.to_str().unwrap()]).ok();
    let before = phi_reads();
    v.as_user("clin", &["--json", "drift", "check", "marked@1.0.0"]).ok();
    assert_eq!(phi_reads(), before + 1, "drift check");
    let wrong = v.as_user_pw("clin", "not the password", &["model", "show", "marked@1.0.0"]);
    assert_ne!(wrong.code, 0, "a wrong password reads nothing");
    assert!(!wrong.stdout.contains("s3://m"), "{}", wrong.stdout);
}

#[test]
fn deploy_sets_a_canary_ramps_it_adds_a_shadow_and_keeps_the_history() {
    let v = Vigil::with_team();
    v.production_and_staging("sepsis");

    let refused = v.as_user("ds", &["deploy", "sepsis", "--canary", "1.1.0=10", "--reason", "try"]);
    assert_ne!(refused.code, 0);
    assert!(refused.stderr.contains("role"), "{}", refused.stderr);
    let no_reason = v.as_user("lead", &["deploy", "sepsis", "--canary", "1.1.0=10"]);
    assert_eq!(no_reason.code, 2, "{}", no_reason.stderr);

    let d = v.as_user("lead", &["--json", "deploy", "sepsis", "--canary", "1.1.0=10", "--unit-key", "header:X-Patient-Id", "--reason", "10% canary"]).ok().json();
    assert_eq!(d["revision"], 1);
    assert_eq!(d["unit_key"], "header:x-patient-id");
    assert_eq!((d["arms"][1]["name"].as_str(), d["arms"][1]["version"].as_str(), d["arms"][1]["percent"].as_f64()), (Some("canary"), Some("1.1.0"), Some(10.0)));
    let d = v.as_user("lead", &["--json", "deploy", "sepsis", "--canary", "25", "--reason", "ramp"]).ok().json();
    assert_eq!((d["arms"][0]["percent"].as_f64(), d["arms"][1]["percent"].as_f64()), (Some(75.0), Some(25.0)));
    let d = v.as_user("lead", &["--json", "deploy", "sepsis", "--shadow", "1.1.0=50", "--reason", "shadow too"]).ok().json();
    assert_eq!((d["arms"][2]["role"].as_str(), d["arms"][2]["percent"].as_f64()), (Some("shadow"), Some(50.0)));
    assert_eq!(d["arms"][1]["percent"].as_f64(), Some(25.0), "the canary is kept");
    // A Development version may not be deployed.
    v.register("ds", ("sepsis", "2.0.0")).ok();
    let e = v.as_user("lead", &["deploy", "sepsis", "--ab", "production=50,2.0.0=50", "--reason", "ab"]);
    assert_ne!(e.code, 0);
    assert!(e.stderr.contains("development"), "{}", e.stderr);

    let shown = v.run(&["--json", "deploy", "show", "sepsis"]).ok().json();
    assert_eq!(shown["revision"], 3);
    let history = v.run(&["--json", "deploy", "history", "sepsis"]).ok().json();
    let outcomes: Vec<&str> = history.as_array().unwrap().iter().map(|e| e["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes.iter().filter(|o| **o == "ok").count(), 3, "{history}");
    assert!(outcomes.contains(&"denied"));
    let human = v.run(&["deploy", "history", "sepsis"]).ok().stdout;
    assert!(human.contains("ramp") && human.contains("lead"), "{human}");
    let back = v.as_user("lead", &["--json", "deploy", "sepsis", "--reset", "--reason", "done"]).ok().json();
    assert_eq!(back["arms"].as_array().map(Vec::len), Some(1));

    // The deployment policy: administrators narrow it; a Staging canary is then refused.
    let shown = v.run(&["--json", "policy", "deployment", "show"]).ok().json();
    assert_eq!(shown["live_stages"], serde_json::json!(["production", "staging"]));
    assert_ne!(v.as_user("lead", &["policy", "deployment", "set", "--live-stages", "production", "--shadow-stages", "production,staging", "--reason", "x"]).code, 0, "leads do not set policy");
    v.as_user("admin", &["policy", "deployment", "set", "--live-stages", "production", "--shadow-stages", "production,staging", "--reason", "no live staging versions"]).ok();
    let e = v.as_user("lead", &["deploy", "sepsis", "--canary", "1.1.0=10", "--reason", "canary"]);
    assert_ne!(e.code, 0);
    assert!(e.stderr.contains("deployment_not_permitted") || e.stderr.contains("staging"), "{}", e.stderr);
    v.as_user("lead", &["deploy", "sepsis", "--shadow", "1.1.0", "--reason", "shadow is still allowed"]).ok();

    // A version the gateway cannot serve is refused when it is deployed, by its operator, and
    // the refusal is in the deployment's history.
    v.register_onnx("ds", ("sepsis", "3.0.0"), "unsupported_svc").ok();
    let rid = v.request("ds", "sepsis@3.0.0", "staging");
    v.as_user("lead", &["promote", "approve", &rid, "--comment", "ok"]).ok();
    let e = v.as_user("lead", &["deploy", "sepsis", "--shadow", "3.0.0", "--reason", "svm shadow"]);
    assert_ne!(e.code, 0);
    assert!(e.stderr.contains("model_not_servable") && e.stderr.contains("SVMClassifier"), "{}", e.stderr);
    let history = v.run(&["--json", "deploy", "history", "sepsis"]).ok().json();
    assert!(history.as_array().unwrap().iter().any(|e| e["outcome"] == "denied" && e["refused"].as_str().is_some_and(|r| r.contains("cannot be deployed") && r.contains("SVMClassifier"))), "{history}");
    assert_eq!(v.run(&["--json", "deploy", "show", "sepsis"]).ok().json()["arms"].as_array().unwrap().iter().filter(|a| a["version"] == "3.0.0").count(), 0);
}

#[test]
fn the_demo_model_is_served_by_the_gateway() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let out: Run = Command::new(bin()).arg("--data-dir").arg(dir.path()).arg("demo").output().unwrap().into();
    out.ok();
    // `vigil serve --demo --gateway-addr` runs both; here the gateway alone on the demo store.
    let mut child = Command::new(bin())
        .arg("--data-dir")
        .arg(dir.path())
        .args(["gateway", "--addr", "127.0.0.1:0"])
        .env_remove("VIGIL_USER")
        // The allocator's options: the gateway restarts itself with those not set, and keeps an
        // operator's own.
        .env_remove("MIMALLOC_ARENA_EAGER_COMMIT")
        .env_remove("MIMALLOC_EAGER_REGION_COMMIT")
        .env_remove("MIMALLOC_PURGE_DELAY")
        // Set under the older name mimalloc also reads.
        .env("MIMALLOC_RESET_DELAY", "250")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.trim().strip_prefix("gateway listening on ").unwrap_or_else(|| panic!("{line:?}")).to_owned();
    // The restart is an exec: the same process, with the options in its environment.
    #[cfg(target_os = "linux")]
    let environ = std::fs::read(format!("/proc/{}/environ", child.id())).expect("the gateway's environment");
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let body = r#"{"dataframe_records": [{"age": 72, "bmi": 36.5, "glucose": 190}, {"age": 24, "bmi": 21.0, "glucose": 82}]}"#;
    let r = agent.post(&format!("{url}/invocations")).header("content-type", "application/json").send(body).unwrap();
    let st = r.status().as_u16();
    let version = r.headers().get("x-vigil-model-version").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let j: serde_json::Value = serde_json::from_str(&r.into_body().read_to_string().unwrap()).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(st, 200, "{j}");
    assert_eq!(version, "diabetes-risk-classifier@1.0.0");
    #[cfg(target_os = "linux")]
    {
        let vars: Vec<&[u8]> = environ.split(|b| *b == 0).collect();
        assert!(vars.contains(&b"MIMALLOC_ARENA_EAGER_COMMIT=0".as_slice()), "the option not set is added");
        assert!(vars.contains(&b"MIMALLOC_RESET_DELAY=250".as_slice()), "the operator's own option is kept");
        assert!(!vars.iter().any(|v| v.starts_with(b"MIMALLOC_PURGE_DELAY=")), "and not overridden under its newer name");
    }
    let p = |i: usize| j["predictions"][i]["probabilities"][1].as_f64().unwrap();
    assert!(p(0) > 0.5 && p(1) < 0.2, "older, heavier, higher glucose is riskier: {j}");
}
