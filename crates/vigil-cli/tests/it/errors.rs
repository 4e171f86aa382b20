//! Bad input through the binary: a clear message naming the problem, the documented exit code
//! (1 refused or not found, 2 usage), nothing half-written, the refusal audited, and no
//! submitted value echoed back.

use crate::*;

fn audit_len(v: &Vigil) -> usize {
    v.run(&["--json", "audit", "log"]).ok().json().as_array().map(Vec::len).unwrap_or(0)
}

#[test]
fn exit_codes_and_messages() {
    let v = Vigil::with_team();
    v.register("ds", ("m", "1.0.0")).ok();

    // (args, user, expected exit code, expected code or message fragment)
    let cases: &[(&[&str], Option<&str>, i32, &str)] = &[
        (&["model", "register", "m", "--version", "1.0", "--type", "classification", "--artifact-uri", "s3://x", "--artifact-sha256", &"ab".repeat(32)], Some("ds"), 2, "invalid_version"),
        (&["model", "register", "m", "--version", "1.0.0+other", "--type", "classification", "--artifact-uri", "s3://x", "--artifact-sha256", &"ab".repeat(32)], Some("ds"), 1, "duplicate_version"),
        (&["model", "register", "Bad Name", "--version", "1.0.0", "--type", "classification", "--artifact-uri", "s3://x", "--artifact-sha256", &"ab".repeat(32)], Some("ds"), 2, "invalid_model_name"),
        (&["model", "register", "m2", "--version", "1.0.0", "--type", "classification", "--artifact-uri", "s3://x", "--artifact-sha256", "nothex"], Some("ds"), 2, "invalid_digest"),
        (&["model", "register", "m2", "--version", "1.0.0", "--type", "classification", "--artifact-uri", "s3://x", "--artifact-sha256", &"ab".repeat(32), "--metric", "auc=high"], Some("ds"), 2, "invalid_metric"),
        (&["model", "show", "nope@1.0.0"], None, 1, "model_not_found"),
        (&["model", "show", "m@9.9.9"], None, 1, "version_not_found"),
        (&["promote", "request", "m@1.0.0", "--to", "development", "--justification", "x"], Some("ds"), 1, "transition_not_allowed"),
        (&["promote", "request", "m@1.0.0", "--to", "heaven", "--justification", "x"], Some("ds"), 2, "invalid_stage"),
        (&["promote", "approve", "req_missing"], Some("lead"), 1, "request_not_found"),
        (&["promote", "approve", "req_missing", "--meaning", "vibes"], Some("lead"), 2, "invalid_meaning"),
        (&["user", "add", "x", "--role", "wizard", "--name", "X", "--new-password", PW], Some("admin"), 2, "invalid_role"),
        (&["model", "list"], Some("nobody"), 0, "MODEL"),
        (&["promote", "list", "--status", "maybe"], None, 2, "invalid_filter"),
        (&["audit", "log", "--since", "yesterday"], None, 2, "invalid_filter"),
        (&["model", "register"], Some("ds"), 2, "artifact_sha256"),
        (&["frobnicate"], None, 2, "unrecognized subcommand"),
    ];
    for (args, user, code, needle) in cases {
        let r = match user {
            Some(u) => v.as_user(u, args),
            None => v.run(args),
        };
        assert_eq!(r.code, *code, "{args:?}\nstdout: {}\nstderr: {}", r.stdout, r.stderr);
        assert!(r.stderr.contains(needle) || r.stdout.contains(needle), "{args:?}: missing '{needle}' in {}", r.stderr);
    }

    // --json errors are machine-readable.
    let r = v.run(&["--json", "model", "show", "nope@1.0.0"]);
    assert_eq!(r.code, 1);
    assert_eq!(r.json()["error"]["code"], "model_not_found");
    assert_eq!(r.json()["error"]["status"], 404);
}

#[test]
fn refusals_are_audited_and_write_nothing() {
    let v = Vigil::with_team();
    v.register("ds", ("m", "1.0.0")).ok();
    let rid = v.request("ds", "m@1.0.0", "production");
    let before = audit_len(&v);

    let wrong_pw = v.as_user_pw("lead", "not-the-password", &["promote", "approve", &rid]);
    assert_eq!(wrong_pw.code, 1);
    assert!(wrong_pw.stderr.contains("authentication_failed"), "{}", wrong_pw.stderr);
    let self_approve = v.as_user("ds", &["promote", "approve", &rid]);
    assert_eq!(self_approve.code, 1);
    v.as_user("lead", &["promote", "approve", &rid]).ok();
    let twice = v.as_user("lead", &["promote", "approve", &rid]);
    assert!(twice.stderr.contains("duplicate_signature"), "{}", twice.stderr);
    let no_justification = v.as_user("ds", &["promote", "request", "m@1.0.0", "--to", "staging", "--justification", " "]);
    assert_eq!(no_justification.code, 2);

    let denied = v.run(&["--json", "audit", "log", "--outcome", "denied"]).ok().json();
    let codes: Vec<&str> = denied.as_array().unwrap().iter().map(|e| e["details"]["code"].as_str().unwrap_or("")).collect();
    assert_eq!(codes, ["authentication_failed", "role_not_permitted", "duplicate_signature", "invalid_text"]);
    // One approval plus four refusals: the refused attempts changed nothing else.
    assert_eq!(audit_len(&v), before + 5);
    let shown = v.run(&["--json", "promote", "show", &rid]).ok().json();
    assert_eq!(shown["signatures"].as_array().map(Vec::len), Some(1));
    assert_eq!(shown["status"], "pending");
}

#[test]
fn five_failed_passwords_lock_the_account() {
    let v = Vigil::with_team();
    for _ in 0..5 {
        assert_eq!(v.as_user_pw("ds", "guess-guess", &["model", "register", "m", "--version", "1.0.0", "--type", "other", "--artifact-uri", "s3://x", "--artifact-sha256", &"ab".repeat(32)]).code, 1);
    }
    let locked = v.register("ds", ("m", "1.0.0"));
    assert_eq!(locked.code, 1);
    assert!(locked.stdout.contains("account_locked"), "{}", locked.stdout);
    v.as_user("admin", &["user", "unlock", "ds", "--reason", "verified in person"]).ok();
    v.register("ds", ("m", "1.0.0")).ok();
    let users = v.run(&["--json", "user", "list"]).ok().json();
    let ds = users.as_array().unwrap().iter().find(|u| u["user_id"] == "ds").unwrap().clone();
    assert_eq!(ds["locked"], false);
}

#[test]
fn manifest_errors_name_the_field_and_never_echo_values() {
    let v = Vigil::with_team();
    let m = v.data_dir().join("bad.json");
    std::fs::write(&m, r#"{"name": "m", "version": "1.0.0", "model_type": "classification", "artifact_uri": "s3://x", "artifact_sha256": "MRN-4481923", "metrics": {"auc_roc": 0.9}}"#).unwrap();
    let r = v.as_user("ds", &["model", "register", "--manifest", m.to_str().unwrap()]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("artifact_sha256"), "{}", r.stderr);
    assert!(!r.stderr.contains("MRN-4481923"), "value echoed: {}", r.stderr);

    std::fs::write(&m, r#"{"name": "m", "version": "1.0.0", "model_type": "classification", "artifact_uri": "s3://x", "artifact_sha256": "ABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABAB", "card": {"intended_use": {"value": 7}}}"#).unwrap();
    let r = v.as_user("ds", &["model", "register", "--manifest", m.to_str().unwrap()]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("intended_use"), "{}", r.stderr);
    assert_eq!(v.run(&["--json", "model", "list"]).ok().json().as_array().map(Vec::len), Some(0), "nothing half-written");
}

#[test]
fn corrupt_missing_and_foreign_stores_are_reported() {
    let v = Vigil::with_team();
    std::fs::write(v.db_file(), vec![0x42u8; 16384]).unwrap();
    for f in ["vigil.db-wal", "vigil.db-shm"] {
        let _ = std::fs::remove_file(v.data_dir().join(f));
    }
    let r = v.run(&["model", "list"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("database_corrupt"), "{}", r.stderr);
    assert!(!r.stderr.contains("panicked"));

    let empty = tempfile::tempdir().unwrap();
    let r: Run = Command::new(bin()).arg("--data-dir").arg(empty.path()).args(["model", "list"]).output().unwrap().into();
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("vigil init"), "{}", r.stderr);
    assert!(!empty.path().join("vigil.db").exists(), "a read must not create a store");

    // init twice is refused.
    let again = Vigil::with_team().run(&["init", "--admin", "root", "--name", "Root", "--new-password", PW]);
    assert_eq!(again.code, 1);
    assert!(again.stderr.contains("already_initialized"));
}
