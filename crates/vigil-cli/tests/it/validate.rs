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

/// The HTML card in a real browser: headless Chromium lays the page out, and a check script
/// (added to a copy for the test only; the card itself carries no scripts) measures the inline
/// SVG plots and reads the tables back.
#[test]
fn card_html_renders_in_headless_chromium() {
    let chromium = ["chromium", "chromium-browser", "google-chrome"].into_iter().find(|b| std::process::Command::new(b).arg("--version").output().is_ok_and(|o| o.status.success()));
    let Some(chromium) = chromium else {
        assert!(std::env::var_os("CI").is_none(), "CI must install Chromium (.ci/run)");
        eprintln!("skipping: no Chromium on this machine");
        return;
    };
    let v = Vigil::with_team();
    v.register("ds", ("sepsis", "1.0.0")).ok();
    v.validate_ok("ds", "sepsis@1.0.0");
    let dir = tempfile::tempdir().unwrap();
    let card = dir.path().join("card.html");
    v.run(&["card", "sepsis@1.0.0", "--format", "html", "--output", card.to_str().unwrap()]).ok();
    let html = std::fs::read_to_string(&card).unwrap();
    assert!(!html.contains("<script"), "the card itself is static");
    let check = r#"<script>
const out = {};
out.svgs = [...document.querySelectorAll('svg')].map(s => {
  const r = s.getBoundingClientRect(), p = s.querySelector('polyline'), b = p ? p.getBBox() : null;
  return {w: r.width, h: r.height, title: s.getAttribute('aria-label'), points: p ? p.points.numberOfItems : 0, line: b ? [b.width, b.height] : null, dots: s.querySelectorAll('circle').length};
});
out.headings = [...document.querySelectorAll('h2,h3')].map(h => h.textContent);
out.groups = [...document.querySelectorAll('table')].filter(t => t.rows[0] && t.rows[0].cells.length === 10).map(t => t.rows.length - 1);
out.overflow = document.documentElement.scrollWidth > 4000;
const pre = document.createElement('pre'); pre.id = 'vigil-check'; pre.textContent = JSON.stringify(out); document.body.appendChild(pre);
</script></body>"#;
    let probe = dir.path().join("probe.html");
    std::fs::write(&probe, html.replace("</body>", check)).unwrap();
    let out = std::process::Command::new(chromium)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--virtual-time-budget=5000", "--window-size=1280,2000", "--dump-dom"])
        .arg(format!("file://{}", probe.display()))
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout);
    let start = dom.find("<pre id=\"vigil-check\">").unwrap_or_else(|| panic!("the check did not run: {}", String::from_utf8_lossy(&out.stderr)));
    let text = &dom[start + "<pre id=\"vigil-check\">".len()..];
    let json = &text[..text.find("</pre>").unwrap()].replace("&quot;", "\"").replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">");
    let got: serde_json::Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"));
    let svgs = got["svgs"].as_array().unwrap();
    assert_eq!(svgs.len(), 2, "{got}");
    for s in svgs {
        assert_eq!((s["w"].as_f64(), s["h"].as_f64()), (Some(300.0), Some(300.0)), "{s}");
        assert!(s["points"].as_u64().unwrap() >= 3, "the curve has points: {s}");
        assert!(s["line"][0].as_f64().unwrap() > 50.0 && s["line"][1].as_f64().unwrap() > 50.0, "the curve spans the plot: {s}");
    }
    assert!(svgs[0]["title"].as_str().unwrap().starts_with("ROC curve (AUC "), "{got}");
    assert!(svgs[1]["dots"].as_u64().unwrap() >= 2, "one dot per calibration bin: {got}");
    assert!(got["headings"].as_array().unwrap().iter().any(|h| h == "Fairness by sex"), "{got}");
    assert_eq!(got["groups"], serde_json::json!([2]), "F and M, each with every metric: {got}");
    assert_eq!(got["overflow"], false);
}

#[test]
fn a_regressor_is_validated_from_numeric_columns() {
    let v = Vigil::with_team();
    v.as_user("ds", &["model", "register", "los", "--version", "1.0.0", "--type", "regression", "--artifact-uri", "s3://m/los", "--artifact-sha256", &"ab".repeat(32)]).ok();
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("p.json");
    std::fs::write(&policy, r#"{"require_card_complete": false, "require_data_hash": false, "resamples": 300}"#).unwrap();
    let set = v.as_user("admin", &["--json", "policy", "validation", "set", "--model", "los", "--file", policy.to_str().unwrap(), "--reason", "no card yet"]).ok().json();
    assert_eq!((set["policy"]["fairness_criterion"].as_str(), set["policy"]["floors"]["r2"].as_f64()), (Some("relative_mae_gap"), Some(0.0)), "the regression default underneath: {set}");
    let mut csv = String::from("days,predicted,sex\n");
    for i in 0..300u32 {
        let truth = 2.0 + f64::from(i % 17);
        let err = (f64::from(i % 7) - 3.0) * 0.3;
        csv.push_str(&format!("{truth},{},{}\n", truth + err, if i % 2 == 0 { "F" } else { "M" }));
    }
    let file = dir.path().join("h.csv");
    std::fs::write(&file, csv).unwrap();
    let f = file.to_str().unwrap();
    let j = v.as_user("ds", &["--json", "validate", "los@1.0.0", "--data", f, "--label", "days", "--score", "predicted", "--sensitive", "sex"]).ok().json();
    assert_eq!(j["passed"], true, "{j}");
    assert_eq!(j["metrics"].as_array().unwrap().iter().map(|m| m["metric"].as_str().unwrap()).collect::<Vec<_>>(), ["mae", "rmse", "r2"]);
    let md = v.run(&["card", "los@1.0.0"]).ok().stdout;
    assert!(md.contains("| Group | n | MAE | RMSE | Mean error (bias) |") && md.contains("relative MAE gap"), "{md}");
    // Text in the target column is refused, naming the column.
    let bad = v.as_user("ds", &["validate", "los@1.0.0", "--data", f, "--label", "sex", "--score", "predicted"]);
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("invalid_validation_data") && bad.stderr.contains("sex"), "{}", bad.stderr);
}
