//! Deployments on each backend: who may change one, which versions arms may run, the audit
//! trail of every change, arms re-checked when versions move, and replicas serialising on the
//! model's row.

use crate::conformance;
use crate::support::uid;
use vigil_core::ErrorCode;
use vigil_core::deploy::{Arm, ArmVersion, DeploymentPolicy, DeploymentSpec, FullSpool, Role, UnitKey};
use vigil_core::ids::ModelName;
use vigil_core::model::Stage;
use vigil_core::store::AuditQuery;

fn canary(id: &str, percent: u32) -> DeploymentSpec {
    DeploymentSpec {
        arms: vec![
            Arm { name: "production".into(), version: ArmVersion::Production, role: Role::Live, weight: 10_000 - percent * 100 },
            Arm { name: "canary".into(), version: ArmVersion::Pinned(id.into()), role: Role::Live, weight: percent * 100 },
        ],
        unit_key: Some(UnitKey::Header("x-patient-id".into())),
        full_spool: FullSpool::Reject,
        features: None,
    }
}

conformance!(deployments_are_governed_checked_and_audited, |env| {
    env.with_team();
    let reg = &env.registry;
    let name = ModelName::parse("diabetes-risk-classifier").unwrap();
    let v1 = env.register("ds", "diabetes-risk-classifier", "1.0.0");
    env.promote(&v1, Stage::Production);
    let v2 = env.register("ds", "diabetes-risk-classifier", "1.1.0");
    let other = env.register("ds", "sepsis", "1.0.0");

    // The default: Production takes everything.
    let d = reg.deployment(&name).unwrap();
    assert_eq!((d.revision, d.spec.clone()), (0, DeploymentSpec::production_only()));
    let (_, arms) = reg.resolved_deployment(&name).unwrap();
    assert_eq!(arms[0].version.as_ref().map(|v| v.id.clone()), Some(v1.id.clone()));

    // Only an ML lead changes a deployment; every refusal is audited.
    let e = reg.set_deployment(&env.login("ds"), &name, &canary(&v2.id, 10), "try").unwrap_err();
    assert_eq!(e.code(), ErrorCode::RoleNotPermitted);
    let e = reg.set_deployment(&env.login("admin"), &name, &canary(&v2.id, 10), "try").unwrap_err();
    assert_eq!(e.code(), ErrorCode::RoleNotPermitted, "administrators do not release models");
    // A Development version may not run, live or shadow; another model's version is unknown.
    let e = reg.set_deployment(&env.login("lead"), &name, &canary(&v2.id, 10), "canary").unwrap_err();
    assert_eq!(e.code(), ErrorCode::DeploymentNotPermitted, "{}", e.message());
    assert!(e.message().contains("development"), "{}", e.message());
    let e = reg.set_deployment(&env.login("lead"), &name, &canary(&other.id, 10), "canary").unwrap_err();
    assert_eq!(e.code(), ErrorCode::VersionNotFound);
    let e = reg.set_deployment(&env.login("lead"), &name, &canary(&v2.id, 10), "").unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidText, "a reason is required");

    // In Staging it may run as a canary.
    env.promote(&v2, Stage::Staging);
    let d = reg.set_deployment(&env.login("lead"), &name, &canary(&v2.id, 10), "10% canary").unwrap();
    assert_eq!((d.revision, d.updated_by.as_deref()), (1, Some("lead")));
    let d = reg.set_deployment(&env.login("lead"), &name, &canary(&v2.id, 20), "raise to 20%").unwrap();
    assert_eq!(d.revision, 2);
    assert_eq!(reg.deployment(&name).unwrap().spec, canary(&v2.id, 20));
    let events = reg.audit_log(&AuditQuery { action: Some("deployment.update".into()), ..Default::default() }).unwrap();
    let ok: Vec<_> = events.iter().filter(|e| e.outcome == "ok").collect();
    assert_eq!(ok.len(), 2);
    let details: serde_json::Value = serde_json::from_str(&ok[1].details).unwrap();
    assert_eq!(details["old"]["revision"], 1);
    assert_eq!(details["new"]["spec"]["arms"][1]["percent"].as_f64(), Some(20.0));
    assert_eq!(details["reason"], "raise to 20%");
    assert_eq!(events.iter().filter(|e| e.outcome == "denied").count(), 5);

    // A stricter policy makes the running canary impermissible: the gateway's resolution says
    // so (and setting it again is refused).
    reg.set_deployment_policy(&env.login("admin"), &DeploymentPolicy { live_stages: vec![Stage::Production], shadow_stages: vec![Stage::Production, Stage::Staging] }, "no live staging").unwrap();
    let (_, arms) = reg.resolved_deployment(&name).unwrap();
    assert!(arms[0].permitted.is_ok());
    assert!(arms[1].permitted.as_ref().unwrap_err().contains("staging"), "{:?}", arms[1].permitted);
    assert_eq!(reg.set_deployment(&env.login("lead"), &name, &canary(&v2.id, 30), "more").unwrap_err().code(), ErrorCode::DeploymentNotPermitted);
    // Promoted, the pinned version is Production and the symbolic arm follows it.
    env.promote(&v2, Stage::Production);
    let (_, arms) = reg.resolved_deployment(&name).unwrap();
    assert_eq!(arms[0].version.as_ref().map(|v| v.id.clone()), Some(v2.id.clone()));
    assert!(arms[1].permitted.is_ok());
    assert!(env.verify().ok());
});

conformance!(a_deployment_naming_a_version_the_gateway_cannot_serve_is_refused_when_made, |env| {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    env.with_team();
    let name = ModelName::parse("diabetes-risk-classifier").unwrap();
    let v1 = env.register("ds", "diabetes-risk-classifier", "1.0.0");
    env.promote(&v1, Stage::Production);
    let v2 = env.register("ds", "diabetes-risk-classifier", "1.1.0");
    env.promote(&v2, Stage::Staging);
    let v3 = env.register("ds", "diabetes-risk-classifier", "1.2.0");
    env.promote(&v3, Stage::Staging);
    // The gateway's check, as `vigil serve` gives it: here it refuses 1.2.0, and counts its calls.
    let calls = Arc::new(AtomicUsize::new(0));
    let (bad, counted) = (v3.id.clone(), calls.clone());
    let reg = env.second_registry().with_servable_check(Arc::new(move |v| {
        counted.fetch_add(1, Ordering::SeqCst);
        if v.id == bad { Err("the model cannot be served: operator ai.onnx.ml.SVMClassifier is not supported by Vigil's engine".into()) } else { Ok(()) }
    }));
    let login = |u: &str| reg.authenticate(&uid(u), &vigil_core::auth::Password::new(crate::support::PW)).unwrap();
    // Refused by its operator, audited as a denial, nothing changed.
    let e = reg.set_deployment(&login("lead"), &name, &canary(&v3.id, 10), "svm canary").unwrap_err();
    assert_eq!(e.code(), ErrorCode::ModelNotServable);
    assert!(e.message().contains("arm canary") && e.message().contains("1.2.0") && e.message().contains("SVMClassifier"), "{}", e.message());
    assert_eq!(reg.deployment(&name).unwrap().revision, 0);
    let denied = reg.audit_log(&AuditQuery { action: Some("deployment.update".into()), ..Default::default() }).unwrap();
    assert!(denied.iter().any(|e| e.outcome == "denied" && e.details.contains("model_not_servable")), "{denied:?}");
    // Only pinned arms are checked (the Production arm runs what was approved), and only
    // once the role allows the change: a data scientist's attempt reads no artifact.
    let before = calls.load(Ordering::SeqCst);
    assert_eq!(reg.set_deployment(&login("ds"), &name, &canary(&v3.id, 10), "try").unwrap_err().code(), ErrorCode::RoleNotPermitted);
    assert_eq!(calls.load(Ordering::SeqCst), before);
    let d = reg.set_deployment(&login("lead"), &name, &canary(&v2.id, 10), "servable canary").unwrap();
    assert_eq!(d.revision, 1);
    assert_eq!(calls.load(Ordering::SeqCst), before + 1, "the canary's version, not the Production arm's");
    // Without a check (a registry that runs no gateway) the version is taken; the gateway
    // leaves such an arm out when it loads it.
    assert_eq!(env.registry.set_deployment(&env.login("lead"), &name, &canary(&v3.id, 10), "no check here").unwrap().revision, 2);
    // An arm already deployed is not checked again: ramping (or taking down) a canary never
    // waits on a check it may fail now.
    let before = calls.load(Ordering::SeqCst);
    assert_eq!(reg.set_deployment(&login("lead"), &name, &canary(&v3.id, 20), "ramp").unwrap().revision, 3);
    assert_eq!(calls.load(Ordering::SeqCst), before);
});

conformance!(replicas_changing_one_deployment_serialise, |env| {
    env.with_team();
    let name = ModelName::parse("m").unwrap();
    let v1 = env.register("ds", "m", "1.0.0");
    env.promote(&v1, Stage::Production);
    let v2 = env.register("ds", "m", "2.0.0");
    env.promote(&v2, Stage::Staging);
    let a = env.second_registry();
    let b = env.second_registry();
    let lead = env.login("lead");
    let threads: Vec<_> = [a, b]
        .into_iter()
        .enumerate()
        .map(|(i, reg)| {
            let (lead, name, id) = (lead.clone(), name.clone(), v2.id.clone());
            std::thread::spawn(move || (0..5).map(|k| reg.set_deployment(&lead, &name, &canary(&id, (i * 5 + k + 1) as u32), "ramp").unwrap().revision).collect::<Vec<_>>())
        })
        .collect();
    let mut revisions: Vec<i64> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    revisions.sort();
    assert_eq!(revisions, (1..=10).collect::<Vec<_>>(), "every change has its own revision");
    assert_eq!(env.registry.deployment(&name).unwrap().revision, 10);
    let _ = uid("lead");
});
