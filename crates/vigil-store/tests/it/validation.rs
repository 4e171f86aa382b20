//! Validation reports on each backend: gates (floors, champion via DeLong, fairness, card,
//! lineage, digest), the report bound to the content hash and audited, unusable holdouts
//! refused with nothing stored.

use crate::conformance;
use vigil_core::ErrorCode;
use vigil_core::model::Stage;
use vigil_core::store::AuditQuery;
use vigil_core::validate::{ValidationData, ValidationPolicy};
use vigil_stats::validation::SplitMix64;

fn holdout(n: usize, signal: f64, seed: u64) -> ValidationData {
    let mut r = SplitMix64(seed);
    let mut u = move || (r.next_u64() >> 11) as f64 / 9_007_199_254_740_992.0;
    let (mut labels, mut scores, mut champ, mut sex) = (vec![], vec![], vec![], vec![]);
    for _ in 0..n {
        let y = u() < 0.4;
        labels.push(y);
        scores.push((signal * f64::from(u8::from(y)) + 0.6 * u()).clamp(0.0, 1.0));
        champ.push((0.2 * f64::from(u8::from(y)) + 0.7 * u()).clamp(0.0, 1.0));
        sex.push(if u() < 0.5 { "F".to_string() } else { "M".to_string() });
    }
    ValidationData { labels, scores, champion_scores: Some(champ), sensitive: vec![("sex".into(), sex)], threshold: 0.5 }
}

fn lenient() -> ValidationPolicy {
    ValidationPolicy { require_card_complete: false, require_data_hash: false, require_artifact_digest: false, resamples: 200, ..Default::default() }
}

conformance!(validation_reports_are_gated_bound_and_audited, |env| {
    env.with_team();
    let ds = env.login("ds");
    let reg = &env.registry;
    let v = env.register("ds", "sepsis", "1.0.0");

    // The default policy: the bare record fails the card gate; the report is stored anyway.
    let rec = reg.validate(&ds, &v.id, &holdout(600, 0.4, 1), &ValidationPolicy { resamples: 200, ..Default::default() }).unwrap();
    assert!(!rec.passed);
    assert_eq!(rec.content_hash, v.content_hash.to_hex());
    let report: serde_json::Value = serde_json::from_str(&rec.report).unwrap();
    let gate = |name: &str| report["gates"].as_array().unwrap().iter().find(|g| g["gate"] == name).cloned().unwrap_or_else(|| panic!("{name}: {report}"));
    assert_eq!(gate("model_card")["passed"], false);
    assert_eq!(gate("floor:roc_auc")["passed"], true);
    assert_eq!(gate("champion")["passed"], true, "no Production version yet");
    assert!(report["metrics"].as_array().unwrap().iter().any(|m| m["metric"] == "roc_auc" && m["ci"]["low"].is_f64()));
    assert_eq!(report["fairness"][0]["attribute"], "sex");

    // A lenient policy and a good model pass.
    let ok = reg.validate(&ds, &v.id, &holdout(600, 0.4, 2), &lenient()).unwrap();
    assert!(ok.passed, "{}", ok.report);
    // A weak model fails its AUC floor.
    let weak = reg.validate(&ds, &v.id, &holdout(600, 0.0, 3), &lenient()).unwrap();
    assert!(!weak.passed);
    assert_eq!(reg.validation_reports(&v.id).unwrap().len(), 3);

    // With a champion in Production, its scores are required, and compared with DeLong.
    env.promote(&v, Stage::Production);
    let v2 = env.register("ds", "sepsis", "1.1.0");
    let mut no_champion = holdout(600, 0.4, 4);
    no_champion.champion_scores = None;
    let r = reg.validate(&ds, &v2.id, &no_champion, &lenient()).unwrap();
    assert!(!r.passed, "champion scores missing");
    let r = reg.validate(&ds, &v2.id, &holdout(600, 0.4, 4), &lenient()).unwrap();
    let rep: serde_json::Value = serde_json::from_str(&r.report).unwrap();
    assert_eq!(rep["champion"]["method"], "DeLong");
    assert!(r.passed, "the challenger is better than the champion: {}", r.report);

    // Unusable holdouts are refused, audited, and store nothing.
    let before = reg.validation_reports(&v2.id).unwrap().len();
    let mut bad = holdout(50, 0.4, 5);
    bad.scores[3] = 1.5;
    let mut one_class = holdout(50, 0.4, 6);
    one_class.labels.iter_mut().for_each(|y| *y = true);
    let mut one_group = holdout(50, 0.4, 7);
    one_group.sensitive[0].1.iter_mut().for_each(|g| *g = "F".into());
    for d in [ValidationData::default(), bad, one_class, one_group] {
        assert_eq!(reg.validate(&ds, &v2.id, &d, &lenient()).unwrap_err().code(), ErrorCode::InvalidValidationData);
    }
    assert_eq!(reg.validation_reports(&v2.id).unwrap().len(), before);
    let admin = env.login("admin");
    assert_eq!(reg.validate(&admin, &v2.id, &holdout(100, 0.4, 8), &lenient()).unwrap_err().code(), ErrorCode::RoleNotPermitted);
    let events = reg.audit_log(&AuditQuery { action: Some("validation.run".into()), ..Default::default() }).unwrap();
    assert_eq!(events.iter().filter(|e| e.outcome == "ok").count(), 5);
    assert_eq!(events.iter().filter(|e| e.outcome == "denied").count(), 5);
    assert!(env.verify().ok());
});
