//! The lifecycle end to end on each backend: register, request, sign, promote, replace,
//! roll back, lineage and audit.

use crate::conformance;
use crate::support::*;
use vigil_core::approval::{Meaning, RequestStatus, Tally};
use vigil_core::auth::Password;
use vigil_core::ids::ModelName;
use vigil_core::model::Stage;
use vigil_core::semver::Version;
use vigil_core::store::{AuditQuery, RequestFilter};

conformance!(seed_flow_register_request_two_approvals_production, |env| {
    env.with_team();
    let v = env.register("ds", "diabetes-risk-classifier", "1.0.0");
    assert_eq!(v.stage, Stage::Development);
    assert_eq!(v.recompute_content_hash(), v.content_hash);

    // Production needs a passing validation report of exactly this content first.
    let e = env.registry.request_promotion(&env.login("ds"), &v.id, Stage::Production, "too early").unwrap_err();
    assert_eq!(e.code(), vigil_core::ErrorCode::ValidationRequired, "{e}");
    let report = env.validate_ok(&v);

    let r = env
        .registry
        .request_promotion(&env.login("ds"), &v.id, Stage::Production, "Model exceeds performance thresholds, validated by clinical team")
        .unwrap();
    assert_eq!(r.status, RequestStatus::Pending);
    assert_eq!(r.content_hash, v.content_hash);
    let opened = env.registry.audit_log(&AuditQuery { action: Some("promotion.request".into()), ..Default::default() }).unwrap();
    let details: serde_json::Value = serde_json::from_str(&opened.iter().rfind(|e| e.outcome == "ok").unwrap().details).unwrap();
    assert_eq!(details["new"]["validation_report"], report.as_str(), "the request records its evidence");

    let first = env.registry.approve_promotion(&uid("lead"), &Password::new(PW), &r.id, Meaning::Approval, "Approved after clinical validation review").unwrap();
    assert!(matches!(first.tally, Tally::Pending { approvals: 1, required: 2, .. }));
    assert_eq!(first.request.status, RequestStatus::Pending);
    assert_eq!(first.signature.printed_name, "Lee Lead");
    assert_eq!(first.signature.content_hash, v.content_hash);

    let second = env.registry.approve_promotion(&uid("clin"), &Password::new(PW), &r.id, Meaning::Approval, "clinically sound").unwrap();
    assert_eq!(second.tally, Tally::Approved);
    assert_eq!(second.request.status, RequestStatus::Approved);

    let name = ModelName::parse("diabetes-risk-classifier").unwrap();
    let now = env.registry.get_version(&name, &Version::parse("1.0.0").unwrap()).unwrap();
    assert_eq!(now.stage, Stage::Production);
    assert_eq!(env.registry.production_version(&name).unwrap().unwrap().id, v.id);

    let lineage = env.registry.lineage(&name, &Version::parse("1.0.0").unwrap()).unwrap();
    assert!(lineage.content_hash_ok);
    assert_eq!(lineage.requests.len(), 1);
    assert_eq!(lineage.requests[0].signatures.len(), 2);
    assert!(lineage.requests[0].signatures.iter().all(|(_, ok)| ok.is_ok()));
    let stages: Vec<Stage> = lineage.transitions.iter().map(|t| t.to_stage).collect();
    assert_eq!(stages, vec![Stage::Development, Stage::Production]);

    let report = env.registry.verify_audit().unwrap();
    assert!(report.ok(), "{report:?}");
    let actions: Vec<String> = env
        .registry
        .audit_log(&AuditQuery { model: Some("diabetes-risk-classifier".into()), ..Default::default() })
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(
        actions,
        ["model.create", "model_version.register", "promotion.request", "validation.run", "promotion.request", "promotion.approve", "promotion.approve", "model_version.stage", "promotion.close"]
    );
});

conformance!(new_production_version_archives_the_old_one_and_rollback_is_a_promotion, |env| {
    env.with_team();
    let v1 = env.register("ds", "sepsis", "1.0.0");
    let v2 = env.register("ds", "sepsis", "1.1.0");
    env.promote(&v1, Stage::Production);
    let r2 = env.promote(&v2, Stage::Production);
    let name = ModelName::parse("sepsis").unwrap();
    assert_eq!(env.registry.get_version_by_id(&v1.id).unwrap().stage, Stage::Archived);
    assert_eq!(env.registry.get_version_by_id(&v2.id).unwrap().stage, Stage::Production);
    // The move out of production is recorded against the request that caused it.
    let l1 = env.registry.lineage(&name, &v1.version).unwrap();
    let last = l1.transitions.last().unwrap();
    assert_eq!((last.from_stage, last.to_stage, last.request_id.as_deref()), (Some(Stage::Production), Stage::Archived, Some(r2.as_str())));

    // Rollback: the archived version goes back through an ordinary governed request.
    env.promote(&v1, Stage::Production);
    assert_eq!(env.registry.production_version(&name).unwrap().unwrap().id, v1.id);
    assert_eq!(env.registry.get_version_by_id(&v2.id).unwrap().stage, Stage::Archived);
    let all = env.registry.list_models().unwrap();
    let prod = all[0].1.iter().filter(|v| v.stage == Stage::Production).count();
    assert_eq!(prod, 1);
    assert!(env.registry.verify_audit().unwrap().ok());
});

conformance!(staging_needs_one_ml_lead_and_requests_are_listed, |env| {
    env.with_team();
    let v = env.register("ds", "readmit", "0.1.0-rc.1");
    let r = env.registry.request_promotion(&env.login("ds"), &v.id, Stage::Staging, "try in staging").unwrap();
    let out = env.registry.approve_promotion(&uid("lead"), &Password::new(PW), &r.id, Meaning::Review, "fine").unwrap();
    assert_eq!(out.request.status, RequestStatus::Approved);
    assert_eq!(env.registry.get_version_by_id(&v.id).unwrap().stage, Stage::Staging);
    let listed = env.registry.list_requests(&RequestFilter { status: Some(RequestStatus::Approved), ..Default::default() }).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, r.id);
    let detail = env.registry.get_request(&r.id).unwrap();
    assert_eq!(detail.tally, Tally::Approved);
});

conformance!(versions_are_semver_and_build_metadata_duplicates, |env| {
    env.with_team();
    env.register("ds", "m", "1.0.0+build.1");
    let dup = env.registry.register_model(&env.login("ds"), new_version("m", "1.0.0+build.2")).unwrap_err();
    assert_eq!(dup.code(), vigil_core::ErrorCode::DuplicateVersion);
    let dup = env.registry.register_model(&env.login("ds"), new_version("m", "1.0.0")).unwrap_err();
    assert_eq!(dup.code(), vigil_core::ErrorCode::DuplicateVersion);
    env.register("ds", "m", "1.0.0-rc.1");
    let name = ModelName::parse("m").unwrap();
    let got = env.registry.get_version(&name, &Version::parse("1.0.0").unwrap()).unwrap();
    assert_eq!(got.version.to_string(), "1.0.0+build.1");
    // The refused registrations are in the audit trail.
    let denied = env.registry.audit_log(&AuditQuery { outcome: Some("denied".into()), ..Default::default() }).unwrap();
    assert_eq!(denied.len(), 2);
    assert!(denied.iter().all(|e| e.details.contains("duplicate_version")));
});

conformance!(lineage_by_data_hash_lists_every_version_trained_on_it, |env| {
    env.with_team();
    env.register("ds", "a", "1.0.0");
    env.register("ds", "b", "2.0.0");
    let mut other = new_version("c", "1.0.0");
    other.content.lineage.training_data_hash = Some("sha256:other".into());
    env.registry.register_model(&env.login("ds"), other).unwrap();
    let refs: Vec<String> = env.registry.versions_by_data_hash("sha256:abc123").unwrap().iter().map(|v| v.reference()).collect();
    assert_eq!(refs, ["a@1.0.0", "b@2.0.0"]);
    let l = env.registry.lineage(&ModelName::parse("a").unwrap(), &Version::parse("1.0.0").unwrap()).unwrap();
    assert_eq!(l.same_data, ["b@2.0.0"]);
    assert!(l.gaps.contains(&"code_commit"));
});
