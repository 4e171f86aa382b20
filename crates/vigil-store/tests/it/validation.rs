//! Validation reports on each backend: gates (floors, champion via DeLong, fairness, card,
//! lineage, digest), the report bound to the content hash and audited, unusable holdouts
//! refused with nothing stored.

use crate::conformance;
use vigil_core::ErrorCode;
use vigil_core::model::Stage;
use vigil_core::store::AuditQuery;
use crate::support::{PW, new_version, uid};
use vigil_core::ids::ModelName;
use vigil_core::model::ModelType;
use vigil_core::validate::{PolicyScope, ValidationData, ValidationPolicy};
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
    ValidationData { labels, scores, champion_scores: Some(champ), sensitive: vec![("sex".into(), sex)], threshold: 0.5, targets: None }
}

fn lenient() -> ValidationPolicy {
    ValidationPolicy { require_card_complete: false, require_data_hash: false, require_artifact_digest: false, resamples: 200, ..Default::default() }
}

fn set(env: &crate::support::Env, model: &str, p: &ValidationPolicy) {
    env.registry.set_validation_policy(&env.login("admin"), &PolicyScope::Model(ModelName::parse(model).unwrap()), p, "test").unwrap();
}

conformance!(validation_reports_are_gated_bound_and_audited, |env| {
    env.with_team();
    let ds = env.login("ds");
    let reg = &env.registry;
    let v = env.register("ds", "sepsis", "1.0.0");

    // The built-in default (the model's own policy is set to it): the bare record fails the
    // card gate; the report is stored anyway, with the policy it ran under.
    set(&env, "sepsis", &ValidationPolicy { resamples: 200, ..Default::default() });
    let rec = reg.validate(&ds, &v.id, &holdout(600, 0.4, 1), None).unwrap();
    assert!(!rec.passed);
    assert_eq!(rec.content_hash, v.content_hash.to_hex());
    let report: serde_json::Value = serde_json::from_str(&rec.report).unwrap();
    let gate = |r: &serde_json::Value, name: &str| r["gates"].as_array().unwrap().iter().find(|g| g["gate"] == name).cloned().unwrap_or_else(|| panic!("{name}: {r}"));
    assert_eq!(gate(&report, "model_card")["passed"], false);
    assert_eq!(gate(&report, "floor:roc_auc")["passed"], true);
    assert_eq!(gate(&report, "champion")["passed"], true, "no Production version yet");
    assert_eq!(gate(&report, "artifact_digest")["passed"], true, "recorded; not readable here");
    assert_eq!(report["policy_source"], "model");
    assert_eq!(report["policy"]["resamples"], 200);
    assert!(report["metrics"].as_array().unwrap().iter().any(|m| m["metric"] == "roc_auc" && m["ci"]["low"].is_f64()));
    // Groups carry every rate with an interval; the curves are in the report for the card.
    let sex = &report["fairness"][0];
    assert_eq!(sex["attribute"], "sex");
    assert_eq!(sex["criterion"], "equalized_odds");
    for g in sex["groups"].as_array().unwrap() {
        for m in ["prevalence", "selection_rate", "tpr", "fpr", "ppv", "npv", "roc_auc", "ece"] {
            assert!(g["metrics"][m]["ci"]["low"].as_f64().unwrap() <= g["metrics"][m]["ci"]["high"].as_f64().unwrap(), "{m}: {g}");
        }
    }
    assert!(report["curves"]["roc"].as_array().unwrap().len() > 10);
    assert_eq!(report["curves"]["calibration"].as_array().unwrap().iter().map(|b| b["count"].as_u64().unwrap()).sum::<u64>(), 600);

    // A lenient policy and a good model pass.
    set(&env, "sepsis", &lenient());
    let ok = reg.validate(&ds, &v.id, &holdout(600, 0.4, 2), None).unwrap();
    assert!(ok.passed, "{}", ok.report);
    // A weak model fails its AUC floor.
    let weak = reg.validate(&ds, &v.id, &holdout(600, 0.0, 3), None).unwrap();
    assert!(!weak.passed);
    assert_eq!(reg.validation_reports(&v.id).unwrap().len(), 3);

    // The gate: the newest report of the current content decides, and the refusal names the
    // failed gate. A passing one opens the way.
    let e = reg.request_promotion(&ds, &v.id, Stage::Production, "go").unwrap_err();
    assert_eq!(e.code(), ErrorCode::ValidationRequired);
    assert!(e.message().contains("floor:roc_auc"), "{e}");
    env.validate_ok(&v);
    env.promote(&v, Stage::Production);

    // With a champion in Production, its scores are required, and compared with DeLong.
    let v2 = env.register("ds", "sepsis", "1.1.0");
    let mut no_champion = holdout(600, 0.4, 4);
    no_champion.champion_scores = None;
    let r = reg.validate(&ds, &v2.id, &no_champion, None).unwrap();
    assert!(!r.passed, "champion scores missing");
    let r = reg.validate(&ds, &v2.id, &holdout(600, 0.4, 4), None).unwrap();
    let rep: serde_json::Value = serde_json::from_str(&r.report).unwrap();
    assert_eq!(rep["champion"]["method"], "DeLong");
    assert!(r.passed, "the challenger is better than the champion: {}", r.report);

    // Unusable holdouts are refused, audited, and store nothing.
    let before = reg.validation_reports(&v2.id).unwrap().len();
    let mut bad = holdout(50, 0.4, 5);
    bad.scores[3] = 1.5;
    let mut nan = holdout(50, 0.4, 5);
    nan.scores[7] = f64::NAN;
    let mut one_class = holdout(50, 0.4, 6);
    one_class.labels.iter_mut().for_each(|y| *y = true);
    let mut one_group = holdout(50, 0.4, 7);
    one_group.sensitive[0].1.iter_mut().for_each(|g| *g = "F".into());
    for d in [ValidationData::default(), bad, nan, one_class, one_group] {
        assert_eq!(reg.validate(&ds, &v2.id, &d, None).unwrap_err().code(), ErrorCode::InvalidValidationData);
    }
    assert_eq!(reg.validation_reports(&v2.id).unwrap().len(), before);
    let admin = env.login("admin");
    assert_eq!(reg.validate(&admin, &v2.id, &holdout(100, 0.4, 8), None).unwrap_err().code(), ErrorCode::RoleNotPermitted);
    let events = reg.audit_log(&AuditQuery { action: Some("validation.run".into()), ..Default::default() }).unwrap();
    assert_eq!(events.iter().filter(|e| e.outcome == "ok").count(), 7);
    assert_eq!(events.iter().filter(|e| e.outcome == "denied").count(), 6);
    assert!(env.verify().ok());
});

conformance!(validation_policies_resolve_per_model_then_type_and_are_governed, |env| {
    env.with_team();
    let reg = &env.registry;
    let v = env.register("ds", "aki", "1.0.0");
    let name = ModelName::parse("aki").unwrap();
    // The team setup installed a classification default.
    let p = reg.validation_policy(&name).unwrap();
    assert_eq!(p.source, "model_type");
    assert!(!p.policy.require_card_complete);
    assert_eq!(reg.type_validation_policy(ModelType::Regression).unwrap().source, "built_in");

    // Only administrators set policies; refusals are audited.
    let strict = ValidationPolicy { floors: [("roc_auc".to_string(), 0.99)].into_iter().collect(), resamples: 200, require_card_complete: false, require_for_staging: true, ..Default::default() };
    let scope = PolicyScope::Model(name.clone());
    assert_eq!(reg.set_validation_policy(&env.login("lead"), &scope, &strict, "no").unwrap_err().code(), ErrorCode::RoleNotPermitted);
    assert_eq!(reg.set_validation_policy(&env.login("admin"), &scope, &strict, " ").unwrap_err().code(), ErrorCode::InvalidText);
    let bad = ValidationPolicy { resamples: 5, ..Default::default() };
    assert_eq!(reg.set_validation_policy(&env.login("admin"), &scope, &bad, "x").unwrap_err().code(), ErrorCode::InvalidPolicy);
    let resolved = reg.set_validation_policy(&env.login("admin"), &scope, &strict, "a tighter floor for AKI").unwrap();
    assert_eq!(resolved.source, "model");
    assert_eq!(reg.validation_policy(&name).unwrap().policy, strict);
    let ev = reg.audit_log(&AuditQuery { action: Some("validation_policy.update".into()), ..Default::default() }).unwrap();
    let ok: Vec<_> = ev.iter().filter(|e| e.outcome == "ok" && e.entity_id == "aki").collect();
    assert_eq!(ok.len(), 1);
    let details: serde_json::Value = serde_json::from_str(&ok[0].details).unwrap();
    assert_eq!(details["old"]["source"], "model_type");
    assert_eq!(details["new"]["policy"]["floors"]["roc_auc"], 0.99);
    assert_eq!(ev.iter().filter(|e| e.outcome == "denied").count(), 3);

    // Under the model's policy the strict floor fails, and Staging now needs a pass too.
    let rec = reg.validate(&env.login("ds"), &v.id, &holdout(400, 0.4, 11), None).unwrap();
    assert!(!rec.passed);
    let e = reg.request_promotion(&env.login("ds"), &v.id, Stage::Staging, "try").unwrap_err();
    assert_eq!(e.code(), ErrorCode::ValidationRequired);
    // The other models keep the type default: Staging needs nothing there.
    let other = env.register("ds", "sepsis", "1.0.0");
    env.promote(&other, Stage::Staging);

    // A passing report opens Staging; a newer failing one stops the move at the last signature.
    set(&env, "aki", &ValidationPolicy { require_card_complete: false, resamples: 200, require_for_staging: true, ..Default::default() });
    env.validate_ok(&v);
    let r = reg.request_promotion(&env.login("ds"), &v.id, Stage::Staging, "now").unwrap();
    let fail = reg.validate(&env.login("ds"), &v.id, &holdout(400, 0.0, 12), None).unwrap();
    assert!(!fail.passed);
    let e = reg.approve_promotion(&uid("lead"), &vigil_core::auth::Password::new(PW), &r.id, vigil_core::approval::Meaning::Approval, "ok").unwrap_err();
    assert_eq!(e.code(), ErrorCode::ValidationRequired, "{e}");
    assert_eq!(reg.get_version_by_id(&v.id).unwrap().stage, Stage::Development);

    // A content change needs a new report: the old one is bound to the old hash.
    env.validate_ok(&v);
    let mut c = v.content.clone();
    c.metrics.set("accuracy", 0.5).unwrap();
    reg.update_version_content(&env.login("ds"), &v.id, c, "fixed a metric").unwrap();
    let e = reg.request_promotion(&env.login("ds"), &v.id, Stage::Staging, "again").unwrap_err();
    assert_eq!(e.code(), ErrorCode::ValidationRequired);
    assert!(e.message().contains("no validation report for its current content"), "{e}");
    assert!(env.verify().ok());
});

conformance!(a_released_card_keeps_the_evidence_its_approvers_saw, |env| {
    env.with_team();
    let reg = &env.registry;
    let ds = env.login("ds");
    let v = env.register("ds", "aki", "1.0.0");
    assert_eq!(reg.card_evidence(&v.id).unwrap(), None);
    let first = reg.validate(&ds, &v.id, &holdout(400, 0.0, 21), None).unwrap();
    assert_eq!(reg.card_evidence(&v.id).unwrap().map(|r| r.id), Some(first.id.clone()), "before release: the newest");
    let approved = env.validate_ok(&v);
    assert_eq!(reg.card_evidence(&v.id).unwrap().map(|r| r.id), Some(approved.clone()));
    let r = reg.request_promotion(&ds, &v.id, Stage::Production, "approved evidence").unwrap();
    for signer in ["lead", "clin"] {
        reg.approve_promotion(&uid(signer), &vigil_core::auth::Password::new(PW), &r.id, vigil_core::approval::Meaning::Approval, "ok").unwrap();
    }
    assert_eq!(reg.get_version_by_id(&v.id).unwrap().stage, Stage::Production);
    // Later validations (monitoring, a new holdout) are stored but do not change the card.
    let later = reg.validate(&ds, &v.id, &holdout(400, 0.0, 22), None).unwrap();
    assert!(!later.passed);
    assert_eq!(reg.validation_reports(&v.id).unwrap()[0].id, later.id);
    let promote_id = env.validate_ok(&v);
    assert_ne!(promote_id, approved);
    assert_eq!(reg.card_evidence(&v.id).unwrap().map(|r| r.id), Some(approved), "the released card keeps its evidence");
    // A new version gets its own card: nothing carries over.
    let v2 = env.register("ds", "aki", "1.1.0");
    assert_eq!(reg.card_evidence(&v2.id).unwrap(), None);
});

/// A regressor's holdout: truth ~ N(50, 10); predictions with noise `noise`; the champion's
/// with noise 6; a sex column, and `bias` added to one group's predictions.
fn regression_holdout(n: usize, noise: f64, bias: f64, seed: u64) -> ValidationData {
    let mut r = SplitMix64(seed);
    let mut u = move || (r.next_u64() >> 11) as f64 / 9_007_199_254_740_992.0;
    let mut normal = move || {
        let (a, b) = (u().max(1e-300), u());
        (-2.0 * a.ln()).sqrt() * (2.0 * std::f64::consts::PI * b).cos()
    };
    let (mut t, mut p, mut c, mut sex) = (vec![], vec![], vec![], vec![]);
    for i in 0..n {
        let y = 50.0 + 10.0 * normal();
        let f = i % 2 == 0;
        t.push(y);
        p.push(y + noise * normal() + if f { bias } else { 0.0 });
        c.push(y + 6.0 * normal());
        sex.push(if f { "F".to_string() } else { "M".to_string() });
    }
    ValidationData { labels: vec![], scores: p, champion_scores: Some(c), sensitive: vec![("sex".into(), sex)], threshold: 0.5, targets: Some(t) }
}

conformance!(regressors_are_validated_on_their_own_metrics_and_gates, |env| {
    env.with_team();
    let reg = &env.registry;
    let ds = env.login("ds");
    let admin = env.login("admin");
    let mut nv = new_version("los-days", "1.0.0");
    nv.model_type = ModelType::Regression;
    let v = reg.register_model(&ds, nv).unwrap();
    // The built-in regression default: R² floor, relative MAE gap, no binary metric.
    let p = reg.validation_policy(&ModelName::parse("los-days").unwrap()).unwrap();
    assert_eq!((p.source, p.policy.fairness_criterion), ("built_in", vigil_core::validate::FairnessCriterion::RelativeMaeGap));
    let scope = PolicyScope::ModelType(ModelType::Regression);
    let wrong = ValidationPolicy { floors: [("roc_auc".to_string(), 0.7)].into_iter().collect(), ..ValidationPolicy::default_for(ModelType::Regression) };
    assert_eq!(reg.set_validation_policy(&admin, &scope, &wrong, "x").unwrap_err().code(), ErrorCode::InvalidPolicy);
    let wrong = ValidationPolicy { require_card_complete: false, ..ValidationPolicy::default() };
    assert_eq!(reg.set_validation_policy(&admin, &scope, &wrong, "x").unwrap_err().code(), ErrorCode::InvalidPolicy, "equalized odds is not a regression criterion");
    let set = reg.set_validation_policy_json(&admin, &scope, &serde_json::json!({"require_card_complete": false, "resamples": 300, "ceilings": {"mae": 5.0}}), "partial test cards").unwrap();
    assert_eq!((set.policy.fairness_criterion, set.policy.resamples), (vigil_core::validate::FairnessCriterion::RelativeMaeGap, 300), "missing keys take the regression default");

    // Binary data for a regressor, and the other way round, are refused.
    assert_eq!(reg.validate(&ds, &v.id, &holdout(100, 0.4, 1), None).unwrap_err().code(), ErrorCode::InvalidValidationData);
    let mut nan = regression_holdout(100, 2.0, 0.0, 2);
    nan.targets.as_mut().unwrap()[5] = f64::NAN;
    assert_eq!(reg.validate(&ds, &v.id, &nan, None).unwrap_err().code(), ErrorCode::InvalidValidationData);
    let clf = env.register("ds", "sepsis", "1.0.0");
    assert_eq!(reg.validate(&ds, &clf.id, &regression_holdout(100, 2.0, 0.0, 3), None).unwrap_err().code(), ErrorCode::InvalidValidationData);

    // A good regressor passes; its report carries MAE, RMSE, R² and group errors with intervals.
    let good = reg.validate(&ds, &v.id, &regression_holdout(600, 2.0, 0.0, 4), None).unwrap();
    assert!(good.passed, "{}", good.report);
    let rep: serde_json::Value = serde_json::from_str(&good.report).unwrap();
    assert_eq!(rep["metrics"].as_array().unwrap().iter().map(|m| m["metric"].as_str().unwrap()).collect::<Vec<_>>(), ["mae", "rmse", "r2"]);
    assert!(rep["metrics"][0]["ci"]["low"].as_f64().unwrap() < rep["metrics"][0]["value"].as_f64().unwrap());
    assert_eq!(rep["fairness"][0]["criterion"], "relative_mae_gap");
    assert!(rep["fairness"][0]["groups"][0]["metrics"]["mean_error"]["ci"]["high"].is_f64());
    // A biased group fails the fairness gate; a noisy model fails the MAE ceiling.
    let biased = reg.validate(&ds, &v.id, &regression_holdout(600, 2.0, 4.0, 5), None).unwrap();
    let rep: serde_json::Value = serde_json::from_str(&biased.report).unwrap();
    let failed: Vec<&str> = rep["gates"].as_array().unwrap().iter().filter(|g| g["passed"] != true).map(|g| g["gate"].as_str().unwrap()).collect();
    assert_eq!(failed, ["fairness:sex"], "{}", biased.report);
    let noisy = reg.validate(&ds, &v.id, &regression_holdout(600, 8.0, 0.0, 6), None).unwrap();
    assert!(noisy.report.contains("\"gate\":\"ceiling:mae\",\"passed\":false"), "{}", noisy.report);

    // Into Production on a passing report; a challenger is compared with the champion's MAE.
    reg.validate(&ds, &v.id, &regression_holdout(600, 2.0, 0.0, 7), None).unwrap();
    env.promote_validated(&v, Stage::Production);
    let mut nv = new_version("los-days", "1.1.0");
    nv.model_type = ModelType::Regression;
    let v2 = reg.register_model(&ds, nv).unwrap();
    let better = reg.validate(&ds, &v2.id, &regression_holdout(600, 2.0, 0.0, 8), None).unwrap();
    let rep: serde_json::Value = serde_json::from_str(&better.report).unwrap();
    assert_eq!(rep["champion"]["method"], "paired Poisson bootstrap");
    assert!(better.passed, "{}", better.report);
    let worse = reg.validate(&ds, &v2.id, &regression_holdout(600, 8.0, 0.0, 9), None).unwrap();
    assert!(worse.report.contains("\"gate\":\"champion\",\"passed\":false"), "{}", worse.report);
    assert_eq!(reg.request_promotion(&ds, &v2.id, Stage::Production, "worse").unwrap_err().code(), ErrorCode::ValidationRequired);
    assert!(env.verify().ok());
});

conformance!(the_evidence_is_enough_complete_fixed_current_and_sealed, |env| {
    env.with_team();
    let reg = &env.registry;
    let ds = env.login("ds");
    let admin = env.login("admin");
    let v = env.register("ds", "aki", "1.0.0");
    let gates = |rec: &vigil_core::validate::ValidationRecord| -> Vec<String> {
        let rep: serde_json::Value = serde_json::from_str(&rec.report).unwrap();
        rep["gates"].as_array().unwrap().iter().filter(|g| g["passed"] != true).map(|g| g["gate"].as_str().unwrap().to_owned()).collect()
    };
    // Too small a holdout: a perfect AUC on a handful of rows is no evidence.
    let tiny = reg.validate(&ds, &v.id, &holdout(40, 0.6, 31), None).unwrap();
    assert_eq!(gates(&tiny), ["evidence:holdout", "fairness:sex"], "the AUC floor passes; too few rows overall and per group");
    // No sensitive attribute: the fairness gate cannot pass by being left out.
    let mut blind = holdout(400, 0.4, 32);
    blind.sensitive.clear();
    assert_eq!(gates(&reg.validate(&ds, &v.id, &blind, None).unwrap()), ["fairness"]);
    // An attribute the policy requires must be there; the threshold the policy fixes must be used.
    let strict = ValidationPolicy { required_attributes: vec!["sex".into(), "race".into()], decision_threshold: Some(0.5), require_card_complete: false, resamples: 200, ..Default::default() };
    set(&env, "aki", &strict);
    assert_eq!(gates(&reg.validate(&ds, &v.id, &holdout(400, 0.4, 33), None).unwrap()), ["fairness:race"]);
    let mut other = holdout(400, 0.4, 33);
    other.threshold = 0.3;
    let e = reg.validate(&ds, &v.id, &other, None).unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidValidationData);
    assert!(e.message().contains("fixes the decision threshold at 0.5"), "{e}");
    // An identifier is not a sensitive attribute; '|' is reserved for intersections.
    let mut ids = holdout(400, 0.4, 34);
    ids.sensitive[0].1 = (0..400).map(|i| format!("patient-{i}")).collect();
    assert!(reg.validate(&ds, &v.id, &ids, None).unwrap_err().message().contains("is it an identifier"));
    let mut piped = holdout(400, 0.4, 34);
    piped.sensitive[0].1[0] = "F|x".into();
    assert_eq!(reg.validate(&ds, &v.id, &piped, None).unwrap_err().code(), ErrorCode::InvalidValidationData);

    // Small cells: suppressed as one entry, no names, no counts; the others' counts rounded.
    set(&env, "aki", &lenient());
    let mut rare = holdout(400, 0.4, 35);
    for (i, g) in rare.sensitive[0].1.iter_mut().enumerate().take(12) {
        *g = if i < 7 { "X".into() } else { "Y".into() };
    }
    let rec = reg.validate(&ds, &v.id, &rare, None).unwrap();
    let rep: serde_json::Value = serde_json::from_str(&rec.report).unwrap();
    let groups = rep["fairness"][0]["groups"].as_array().unwrap();
    assert!(!rec.report.contains("\"group\":\"X\"") && !rec.report.contains("\"group\":\"Y\""), "{}", rec.report);
    assert_eq!(groups.last().unwrap()["suppressed_groups"], 2);
    assert!(groups[..groups.len() - 1].iter().all(|g| g["n"].as_u64().unwrap() % 10 == 0 && g["counts_rounded_to"] == 10), "{groups:?}");

    // The request rests on the newest passing report; a newer one (even passing) stops the move.
    let first = env.validate_ok(&v);
    let r = reg.request_promotion(&ds, &v.id, Stage::Production, "go").unwrap();
    assert_eq!(r.validation_report_id.as_deref(), Some(first.as_str()));
    reg.approve_promotion(&uid("lead"), &vigil_core::auth::Password::new(PW), &r.id, vigil_core::approval::Meaning::Approval, "ok").unwrap();
    env.validate_ok(&v);
    let e = reg.approve_promotion(&uid("clin"), &vigil_core::auth::Password::new(PW), &r.id, vigil_core::approval::Meaning::Approval, "ok").unwrap_err();
    assert_eq!(e.code(), ErrorCode::ValidationRequired);
    assert!(e.message().contains("changed since request"), "{e}");
    reg.withdraw_promotion(&ds, &r.id, "new evidence").unwrap();
    // A policy change after validating: validate again.
    set(&env, "aki", &ValidationPolicy { resamples: 300, ..lenient() });
    let e = reg.request_promotion(&ds, &v.id, Stage::Production, "go").unwrap_err();
    assert!(e.message().contains("under an earlier validation policy"), "{e}");

    // Reports are append-only, and each validation event seals its report's digest.
    let mut raw = env.raw();
    assert!(raw.refused("UPDATE validation_reports SET passed = 1"), "reports cannot be edited");
    assert!(raw.refused("DELETE FROM validation_reports"), "reports cannot be deleted");
    let events = reg.audit_log(&AuditQuery { action: Some("validation.run".into()), outcome: Some("ok".into()), ..Default::default() }).unwrap();
    for rec in reg.validation_reports(&v.id).unwrap() {
        let sealed = events.iter().any(|e| {
            let d: serde_json::Value = serde_json::from_str(&e.details).unwrap();
            d["report_id"] == rec.id.as_str() && d["report_sha256"] == vigil_core::ids::Sha256Digest::of(rec.report.as_bytes()).to_hex()
        });
        assert!(sealed, "{}", rec.id);
    }
    let _ = admin;
    assert!(env.verify().ok());
});
