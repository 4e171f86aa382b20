//! Drift monitoring persisted on each backend: baselines, sample batches, labels arriving
//! later, checks with stored reports, refusals audited.

use crate::conformance;
use vigil_core::ErrorCode;
use vigil_core::drift::{Status, Verdict};
use vigil_core::monitor::{Batch, Column, Window};
use vigil_core::store::AuditQuery;

struct Gen(u64);
impl Gen {
    fn u(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        (0..12).map(|_| self.u()).sum::<f64>() - 6.0
    }
}

/// age, bmi, glucose (mg/dL) and smoker; `glucose_shift` moves glucose; scores track glucose.
fn batch(seed: u64, n: usize, glucose_shift: f64, with_ids: bool) -> Batch {
    let mut g = Gen(seed);
    let mut b = Batch::default();
    let age: Vec<Option<f64>> = (0..n).map(|_| Some(50.0 + 12.0 * g.normal())).collect();
    let bmi: Vec<Option<f64>> = (0..n).map(|i| if i % 50 == 0 { None } else { Some(27.0 + 4.0 * g.normal()) }).collect();
    let glucose: Vec<Option<f64>> = (0..n).map(|_| Some(100.0 + glucose_shift + 15.0 * g.normal())).collect();
    let smoker: Vec<Option<String>> = (0..n).map(|_| Some(if g.u() < 0.2 { "yes" } else { "no" }.to_owned())).collect();
    b.predictions = Some(glucose.iter().map(|x| x.map(|v| 1.0 / (1.0 + (-(v - 110.0) / 10.0).exp()))).collect());
    let glucose = glucose.clone();
    if with_ids {
        b.prediction_ids = Some((0..n).map(|i| format!("p{seed}-{i}")).collect());
    }
    b.features.insert("age".into(), Column::numeric(age));
    b.features.insert("bmi".into(), Column::numeric(bmi));
    b.features.insert("glucose".into(), Column::numeric(glucose));
    b.features.insert("smoker".into(), Column::categorical(smoker));
    b
}

conformance!(baseline_samples_and_check_find_the_shifted_feature_only, |env| {
    env.with_team();
    let v = env.register("ds", "diabetes", "1.0.0");
    let ds = env.login("ds");
    let b1 = env.registry.set_baseline(&ds, &v.id, &batch(1, 4000, 0.0, false)).unwrap();
    assert_eq!(b1.baseline_version, 1);
    env.registry.add_samples(&ds, &v.id, &batch(2, 2000, 25.0, false)).unwrap();
    env.registry.add_samples(&ds, &v.id, &batch(3, 2000, 25.0, false)).unwrap();

    let check = env.registry.detect_drift(&env.login("clin"), &v.id, Window::LastRows(4000)).unwrap();
    assert_eq!(check.window_rows, 4000);
    assert_eq!(check.report.status, Status::Drift);
    let verdict = |name: &str| check.report.features.iter().find(|f| f.name == name).unwrap().verdict;
    assert_eq!(verdict("glucose"), Verdict::Drift);
    for stable in ["age", "bmi", "smoker"] {
        assert_ne!(verdict(stable), Verdict::Drift, "{stable}");
    }
    assert_eq!(check.prediction.as_ref().unwrap().verdict, Verdict::Drift, "scores follow glucose");
    assert!(check.report.recommendations[0].contains("glucose"));

    // A second baseline is a new version; the old one is kept.
    let b2 = env.registry.set_baseline(&ds, &v.id, &batch(4, 1000, 0.0, false)).unwrap();
    assert_eq!(b2.baseline_version, 2);
    let actions: Vec<String> = env.registry.audit_log(&AuditQuery { action: Some("drift.".into()), ..Default::default() }).unwrap().into_iter().map(|e| e.action).collect();
    assert_eq!(actions, ["drift.baseline", "drift.samples", "drift.samples", "drift.check", "drift.baseline"]);
    assert!(env.verify().ok());
});

conformance!(labels_arriving_later_measure_performance, |env| {
    env.with_team();
    let v = env.register("ds", "diabetes", "1.0.0");
    let ds = env.login("ds");
    let mut base = batch(1, 3000, 0.0, false);
    base.labels = Some(base.predictions.as_ref().unwrap().iter().map(|p| Some(if p.unwrap() >= 0.5 { "1" } else { "0" }.to_owned())).collect());
    env.registry.set_baseline(&ds, &v.id, &base).unwrap();
    let current = batch(7, 1000, 0.0, true);
    env.registry.add_samples(&ds, &v.id, &current).unwrap();
    let check = env.registry.detect_drift(&ds, &v.id, Window::LastRows(1000)).unwrap();
    assert!(check.performance.is_none(), "no labels yet");
    // Labels arrive later: every one the opposite of the prediction.
    let labels: Vec<(String, String)> = current
        .prediction_ids
        .as_ref()
        .unwrap()
        .iter()
        .zip(current.predictions.as_ref().unwrap())
        .map(|(id, p)| (id.clone(), if p.unwrap() >= 0.5 { "0" } else { "1" }.to_owned()))
        .collect();
    env.registry.add_labels(&ds, &v.id, &labels).unwrap();
    let check = env.registry.detect_drift(&ds, &v.id, Window::LastRows(1000)).unwrap();
    let perf = check.performance.unwrap();
    assert_eq!(perf.labelled, 1000);
    assert_eq!(perf.accuracy, 0.0);
    assert_eq!(perf.baseline_accuracy, Some(1.0));
    assert!(perf.degraded);
    assert_eq!(check.report.status, Status::Drift);
});

conformance!(monitoring_refusals_are_clear_and_audited, |env| {
    env.with_team();
    let v = env.register("ds", "diabetes", "1.0.0");
    let ds = env.login("ds");
    let e = env.registry.detect_drift(&ds, &v.id, Window::LastRows(100)).unwrap_err();
    assert_eq!(e.code(), ErrorCode::BaselineNotFound);
    let e = env.registry.set_baseline(&ds, "mv_missing", &batch(1, 100, 0.0, false)).unwrap_err();
    assert_eq!(e.code(), ErrorCode::VersionNotFound);
    let e = env.registry.set_baseline(&env.login("clin"), &v.id, &batch(1, 100, 0.0, false)).unwrap_err();
    assert_eq!(e.code(), ErrorCode::RoleNotPermitted);
    env.registry.set_baseline(&ds, &v.id, &batch(1, 500, 0.0, false)).unwrap();
    // A numeric baseline column arriving as text.
    let mut wrong = batch(2, 100, 0.0, false);
    wrong.features.insert("age".into(), Column::categorical(vec![Some("old"); 100]));
    let e = env.registry.add_samples(&ds, &v.id, &wrong).unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidManifest);
    assert!(e.message().contains("'age'") && !e.message().contains("old"), "{}", e.message());
    // Ragged columns.
    let mut ragged = batch(3, 100, 0.0, false);
    ragged.features.insert("extra".into(), Column::Numeric(vec![1.0; 99]));
    assert_eq!(env.registry.add_samples(&ds, &v.id, &ragged).unwrap_err().code(), ErrorCode::InvalidManifest);
    // An empty window is insufficient data, not an error or a NaN verdict.
    let check = env.registry.detect_drift(&ds, &v.id, Window::LastRows(100)).unwrap();
    assert_eq!(check.report.status, Status::InsufficientData);
    let denied = env.registry.audit_log(&AuditQuery { action: Some("drift.".into()), outcome: Some("denied".into()), ..Default::default() }).unwrap();
    let codes: Vec<String> = denied.iter().map(|e| serde_json::from_str::<serde_json::Value>(&e.details).unwrap()["code"].as_str().unwrap().to_owned()).collect();
    assert_eq!(codes, ["baseline_not_found", "version_not_found", "role_not_permitted", "invalid_manifest"]);
});

conformance!(alerts_confirm_over_windows_respect_cooldown_hysteresis_and_request_retraining, |env| {
    env.with_team();
    let v = env.register("ds", "diabetes", "1.0.0");
    let ds = env.login("ds");
    let mut cfg = vigil_core::drift::DriftDetectorConfig {
        alert_confirm_windows: 2,
        alert_window_count: 3,
        retrain_after_windows: Some(3),
        ..Default::default()
    };
    cfg.alert_cooldown_hours = 4;
    env.registry.set_drift_config(&ds, &v.id, &cfg).unwrap();
    env.registry.set_baseline(&ds, &v.id, &batch(1, 3000, 0.0, false)).unwrap();
    let mut seed = 10;
    let mut check = |shift: f64| {
        seed += 1;
        env.registry.add_samples(&ds, &v.id, &batch(seed, 1500, shift, false)).unwrap();
        env.registry.detect_drift(&ds, &v.id, Window::LastRows(1500)).unwrap()
    };
    let glucose = |c: &vigil_core::monitor::DriftCheck| c.alerts.iter().find(|a| a.check_key == "feature:glucose").cloned();

    let c1 = check(30.0);
    assert_eq!(c1.report.status, Status::Drift);
    assert!(glucose(&c1).is_none(), "one drifting window of three is not yet confirmed");
    let c2 = check(30.0);
    let opened = glucose(&c2).unwrap();
    assert_eq!((opened.change, opened.notified), ("opened", true));
    let c3 = check(30.0);
    let again = glucose(&c3).unwrap();
    assert_eq!((again.change, again.notified), ("confirmed", false), "inside the 4 h cooldown: no second notification");
    assert!(c3.retrain.as_deref().unwrap().contains("3 consecutive"), "{:?}", c3.retrain);

    env.clock.advance_hours(5);
    let c4 = check(30.0);
    assert!(glucose(&c4).unwrap().notified, "cooldown over: a reminder");
    env.registry.acknowledge_alert(&env.login("clin"), &opened.alert_id, "assay change confirmed with the lab").unwrap();
    env.clock.advance_hours(5);
    let c5 = check(30.0);
    assert!(!glucose(&c5).unwrap().notified, "acknowledged alerts send no reminders");
    let e = env.registry.acknowledge_alert(&env.login("clin"), &opened.alert_id, "again").unwrap_err();
    assert_eq!(e.code(), ErrorCode::AlertNotOpen);

    // Hysteresis: a residual shift below the drift gate but above half of it keeps the alert
    // active; a clean window resolves it.
    let c_residual = check(1.1);
    let g = c_residual.report.features.iter().find(|f| f.name == "glucose").unwrap();
    assert!(g.verdict != Verdict::Drift && g.effect_value >= 0.05 && g.effect_value < 0.1, "{g:?}");
    assert!(glucose(&c_residual).is_none(), "no change to the alert");
    let active = |key: &str| env.registry.list_alerts(Some(&v.id), true).unwrap().into_iter().filter(|a| a.check_key == key).count();
    assert_eq!(active("feature:glucose"), 1);
    let c6 = check(0.0);
    let resolved = glucose(&c6).unwrap();
    assert_eq!(resolved.change, "resolved");
    assert_eq!(active("feature:glucose"), 0);
    assert_eq!(env.registry.list_alerts(Some(&v.id), false).unwrap().len(), env.registry.list_alerts(None, false).unwrap().len());

    let actions: Vec<String> = env
        .registry
        .audit_log(&AuditQuery { action: Some("alert.".into()), ..Default::default() })
        .unwrap()
        .into_iter()
        .filter(|e| e.outcome == "ok" && (e.entity_id == opened.alert_id || e.details.contains(&opened.alert_id)))
        .map(|e| e.action)
        .collect();
    assert_eq!(actions, ["alert.open", "alert.notify", "alert.acknowledge", "alert.resolve"]);
    let retrains = env.registry.audit_log(&AuditQuery { action: Some("drift.retrain_requested".into()), ..Default::default() }).unwrap();
    assert!(!retrains.is_empty());
    assert!(env.verify().ok());
});
