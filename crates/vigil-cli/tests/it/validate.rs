//! `vigil validate`: a holdout file in, gates out, the report stored and audited; exit code 1
//! when a gate fails, 2 for an unusable holdout.

use crate::Vigil;

#[test]
fn validate_reports_gates_and_exits_by_verdict() {
    let v = Vigil::with_team();
    v.register("ds", ("sepsis", "1.0.0")).ok();
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("y,score,sex\n");
    for i in 0..400 {
        let y = i % 5 < 2;
        let s = if y { 0.55 + (i % 7) as f64 * 0.05 } else { 0.1 + (i % 9) as f64 * 0.05 };
        csv.push_str(&format!("{},{s},{}\n", u8::from(y), if i % 2 == 0 { "F" } else { "M" }));
    }
    let file = dir.path().join("holdout.csv");
    std::fs::write(&file, csv).unwrap();
    let f = file.to_str().unwrap();
    // This model's own policy: the built-in gates (a complete card among them), fewer resamples.
    let policy = dir.path().join("policy.json");
    std::fs::write(&policy, r#"{"resamples": 300, "require_data_hash": false}"#).unwrap();
    let p = policy.to_str().unwrap();
    let refused = v.as_user("lead", &["policy", "validation", "set", "--model", "sepsis", "--file", p, "--reason", "r"]);
    assert_eq!(refused.code, 1, "only administrators: {}", refused.stderr);
    assert!(refused.stderr.contains("role_not_permitted"), "{}", refused.stderr);
    let set = v.as_user("admin", &["--json", "policy", "validation", "set", "--model", "sepsis", "--file", p, "--reason", "sepsis needs its card"]).ok().json();
    assert_eq!((set["source"].as_str(), set["policy"]["resamples"].as_u64(), set["policy"]["require_card_complete"].as_bool()), (Some("model"), Some(300), Some(true)));
    let shown = v.run(&["policy", "validation", "show", "--model", "sepsis"]).ok().stdout;
    assert!(shown.contains("validation policy for model sepsis (source: model)") && shown.contains("roc_auc >= 0.7") && shown.contains("300 resamples"), "{shown}");
    let typed = v.run(&["--json", "policy", "validation", "show", "--model-type", "regression"]).ok().json();
    assert_eq!(typed["source"], "built_in");
    std::fs::write(&policy, r#"{"resamples": 5}"#).unwrap();
    let bad = v.as_user("admin", &["policy", "validation", "set", "--model", "sepsis", "--file", p, "--reason", "r"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("invalid_policy") && bad.stderr.contains("resamples"), "{}", bad.stderr);

    let out = v.as_user("ds", &["validate", "sepsis@1.0.0", "--data", f, "--label", "y", "--score", "score", "--sensitive", "sex"]);
    // The registered record has no model card: that gate fails, the rest pass.
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("FAILED") && out.stdout.contains("model_card") && out.stdout.contains("floor:roc_auc"), "{}", out.stdout);
    let j = v.as_user("ds", &["--json", "validate", "sepsis@1.0.0", "--data", f, "--label", "y", "--score", "score"]).json();
    assert_eq!(j["passed"], false);
    assert_eq!(j["policy"]["resamples"], 300);
    // The gate: Production is refused while the newest report fails, naming the gate.
    let gate = v.as_user("ds", &["promote", "request", "sepsis@1.0.0", "--to", "production", "--justification", "x"]);
    assert_eq!(gate.code, 1, "{}", gate.stderr);
    assert!(gate.stderr.contains("validation_required") && gate.stderr.contains("model_card"), "{}", gate.stderr);
    assert!(j["report_id"].as_str().unwrap().starts_with("val_"));
    assert!(j["metrics"].as_array().unwrap().iter().any(|m| m["metric"] == "roc_auc" && m["value"].as_f64().unwrap() > 0.9));
    let audit = v.as_user("ds", &["--json", "audit", "log", "--action", "validation.run"]).ok().json();
    assert_eq!(audit.as_array().unwrap().len(), 2);
    // Unusable input: a label column that is not binary.
    let bad = v.as_user("ds", &["validate", "sepsis@1.0.0", "--data", f, "--label", "sex", "--score", "score"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("invalid_validation_data"), "{}", bad.stderr);
}

#[test]
fn card_is_generated_from_the_registry_and_the_bound_report() {
    let v = Vigil::with_team();
    v.register("ds", ("sepsis", "1.0.0")).ok();
    // Before validation: the card says so and lists the missing HTI-1 attributes.
    let md = v.run(&["card", "sepsis@1.0.0"]).ok().stdout;
    assert!(md.contains("# Model card: sepsis 1.0.0") && md.contains("31 missing") && md.contains("No validation report"), "{md}");
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("y,score,sex\n");
    for i in 0..300 {
        let y = i % 3 == 0;
        csv.push_str(&format!("{},{},{}\n", u8::from(y), if y { 0.7 } else { 0.2 + (i % 5) as f64 * 0.05 }, if i % 2 == 0 { "F" } else { "M" }));
    }
    let file = dir.path().join("h.csv");
    std::fs::write(&file, csv).unwrap();
    v.as_user("ds", &["validate", "sepsis@1.0.0", "--data", file.to_str().unwrap(), "--label", "y", "--score", "score", "--sensitive", "sex"]);
    let md = v.run(&["card", "sepsis@1.0.0"]).ok().stdout;
    assert!(md.contains("## Evaluation (300 rows") && md.contains("| roc_auc | 1.0000 |") && md.contains("### Fairness by sex"), "{md}");
    let html = v.run(&["card", "sepsis@1.0.0", "--format", "html"]).ok().stdout;
    assert!(html.starts_with("<!doctype html>") && !html.contains("<script") && html.contains("Fairness by sex"));
    let j = v.run(&["card", "sepsis@1.0.0", "--format", "json"]).ok().json();
    assert_eq!(j["record"], "vigil.model_card/1");
    assert_eq!(j["card"]["hti1_missing"].as_array().unwrap().len(), 31);
    let mct = v.run(&["card", "sepsis@1.0.0", "--format", "mct"]).ok().json();
    assert!(mct["quantitative_analysis"]["performance_metrics"].as_array().unwrap().iter().any(|m| m["type"] == "roc_auc" && m["confidence_interval"]["lower_bound"].is_string()));
    assert_eq!(v.run(&["card", "sepsis@1.0.0", "--format", "pdf"]).code, 2);
}
