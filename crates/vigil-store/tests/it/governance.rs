//! The rules, table-driven: every (stage, target, role) request and every (target, role)
//! signature, plus each way a governance attempt can be refused. Every refusal must leave the
//! state untouched and appear in the audit trail.

use crate::conformance;
use crate::support::*;
use std::collections::HashMap;
use vigil_core::approval::{ApprovalPolicy, Meaning, RequestStatus};
use vigil_core::auth::{Password, Principal, Role};
use vigil_core::model::{ModelVersion, Stage};
use vigil_core::store::AuditQuery;
use vigil_core::ErrorCode;

const ROLE_USERS: [(Role, &str); 5] = [
    (Role::DataScientist, "ds"),
    (Role::MlLead, "lead"),
    (Role::ClinicalReviewer, "clin"),
    (Role::ComplianceOfficer, "comp"),
    (Role::Admin, "admin"),
];

/// The documented transition table, written out independently of the code under test.
const EXPECTED_TRANSITIONS: [(Stage, Stage); 8] = [
    (Stage::Development, Stage::Staging),
    (Stage::Development, Stage::Production),
    (Stage::Development, Stage::Archived),
    (Stage::Staging, Stage::Production),
    (Stage::Staging, Stage::Archived),
    (Stage::Production, Stage::Archived),
    (Stage::Archived, Stage::Staging),
    (Stage::Archived, Stage::Production),
];

fn denied_count(env: &Env) -> usize {
    env.registry.audit_log(&AuditQuery { outcome: Some("denied".into()), ..Default::default() }).unwrap().len()
}

/// A version in the given stage, reached through approved requests.
fn version_in(env: &Env, n: &mut u32, stage: Stage) -> ModelVersion {
    *n += 1;
    // A model per version so that Production versions never replace each other here.
    let v = env.register("ds", &format!("m{n}"), "1.0.0");
    // Every version here has passing validation evidence: these tables test the other rules.
    env.validate_ok(&v);
    match stage {
        Stage::Development => {}
        Stage::Staging | Stage::Archived => {
            env.promote(&v, stage);
        }
        Stage::Production => {
            env.promote(&v, Stage::Production);
        }
    }
    let v = env.registry.get_version_by_id(&v.id).unwrap();
    assert_eq!(v.stage, stage);
    v
}

conformance!(every_stage_target_role_request_combination, |env| {
    env.with_team();
    let principals: HashMap<Role, Principal> = ROLE_USERS.iter().map(|(r, u)| (*r, env.login(u))).collect();
    let mut n = 0;
    let mut checked = 0;
    for from in Stage::ALL {
        for to in Stage::ALL {
            for (role, _) in ROLE_USERS {
                let v = version_in(&env, &mut n, *from);
                let before = denied_count(&env);
                let got = env.registry.request_promotion(&principals[&role], &v.id, *to, "table-driven check");
                let may_request = matches!(role, Role::DataScientist | Role::MlLead);
                let expected = if !may_request {
                    Err(ErrorCode::RoleNotPermitted)
                } else if !EXPECTED_TRANSITIONS.contains(&(*from, *to)) {
                    Err(ErrorCode::TransitionNotAllowed)
                } else {
                    Ok(())
                };
                assert_eq!(got.as_ref().map(|_| ()).map_err(|e| e.code()), expected, "{from} -> {to} by {role}");
                match expected {
                    Ok(()) => assert_eq!(got.unwrap().status, RequestStatus::Pending),
                    Err(_) => {
                        assert_eq!(denied_count(&env), before + 1, "refusal audited: {from} -> {to} by {role}");
                        assert_eq!(env.registry.get_version_by_id(&v.id).unwrap().stage, *from);
                    }
                }
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 4 * 4 * 5);
    assert!(env.registry.verify_audit().unwrap().ok());
});

conformance!(every_target_role_decision_signature_combination, |env| {
    env.with_team();
    let mut n = 0;
    let mut checked = 0;
    for to in [Stage::Staging, Stage::Production, Stage::Archived] {
        let policy = env.registry.policies().unwrap().for_stage(to).unwrap().clone();
        for (role, user) in ROLE_USERS {
            for approve in [true, false] {
                let v = version_in(&env, &mut n, Stage::Development);
                // The requester is ds2, so no signer in the table is the requester.
                let r = env.registry.request_promotion(&env.login("ds2"), &v.id, to, "signature table").unwrap();
                let before = denied_count(&env);
                let got = if approve {
                    env.registry.approve_promotion(&uid(user), &Password::new(PW), &r.id, Meaning::Approval, "ok")
                } else {
                    env.registry.reject_promotion(&uid(user), &Password::new(PW), &r.id, Meaning::Review, "not yet")
                };
                let what = format!("{role} {} for {to}", if approve { "approving" } else { "rejecting" });
                if policy.eligible_roles.contains(&role) {
                    let out = got.unwrap_or_else(|e| panic!("{what}: {e}"));
                    let expected = if !approve { RequestStatus::Rejected } else if policy.required_approvals == 1 { RequestStatus::Approved } else { RequestStatus::Pending };
                    assert_eq!(out.request.status, expected, "{what}");
                } else {
                    assert_eq!(got.unwrap_err().code(), ErrorCode::RoleNotPermitted, "{what}");
                    assert_eq!(denied_count(&env), before + 1, "{what}: exactly one refusal audited");
                    let last = env.registry.audit_log(&AuditQuery { outcome: Some("denied".into()), ..Default::default() }).unwrap().pop().unwrap();
                    assert_eq!((last.actor.as_str(), last.entity_id.as_str()), (user, r.id.as_str()), "{what}: refusal audited");
                    assert!(env.registry.get_request(&r.id).unwrap().signatures.is_empty());
                    assert_eq!(env.registry.get_request(&r.id).unwrap().request.status, RequestStatus::Pending);
                }
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 3 * 5 * 2);
});

conformance!(the_author_of_a_version_cannot_sign_its_promotion, |env| {
    env.with_team();
    let v = env.register("lead", "m", "1.0.0");
    let r = env.registry.request_promotion(&env.login("ds"), &v.id, Stage::Staging, "someone else asks").unwrap();
    let e = env.registry.approve_promotion(&uid("lead"), &Password::new(PW), &r.id, Meaning::Approval, "mine").unwrap_err();
    assert_eq!(e.code(), ErrorCode::SelfApproval);
    env.registry.approve_promotion(&uid("lead2"), &Password::new(PW), &r.id, Meaning::Approval, "ok").unwrap();
    assert_eq!(env.registry.get_version_by_id(&v.id).unwrap().stage, Stage::Staging);
});

conformance!(self_approval_double_signing_and_rejection, |env| {
    env.with_team();
    let v = env.register("lead", "m", "1.0.0");
    env.validate_ok(&v);
    let r = env.registry.request_promotion(&env.login("lead"), &v.id, Stage::Production, "mine").unwrap();
    let e = env.registry.approve_promotion(&uid("lead"), &Password::new(PW), &r.id, Meaning::Approval, "self").unwrap_err();
    assert_eq!(e.code(), ErrorCode::SelfApproval);

    env.registry.approve_promotion(&uid("lead2"), &Password::new(PW), &r.id, Meaning::Approval, "ok").unwrap();
    let e = env.registry.approve_promotion(&uid("lead2"), &Password::new(PW), &r.id, Meaning::Approval, "again").unwrap_err();
    assert_eq!(e.code(), ErrorCode::DuplicateSignature);
    // A second ml_lead does not satisfy the clinical_reviewer requirement: still pending.
    let d = env.registry.get_request(&r.id).unwrap();
    assert_eq!(d.request.status, RequestStatus::Pending);
    assert_eq!(d.signatures.len(), 1);

    let e = env.registry.reject_promotion(&uid("clin"), &Password::new(PW), &r.id, Meaning::Review, "  ").unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidText, "a rejection needs a reason");
    let out = env.registry.reject_promotion(&uid("clin"), &Password::new(PW), &r.id, Meaning::Review, "calibration poor in subgroup").unwrap();
    assert_eq!(out.request.status, RequestStatus::Rejected);
    let e = env.registry.approve_promotion(&uid("clin2"), &Password::new(PW), &r.id, Meaning::Approval, "late").unwrap_err();
    assert_eq!(e.code(), ErrorCode::RequestNotPending);
    assert_eq!(env.registry.get_version_by_id(&v.id).unwrap().stage, Stage::Development);

    let denied: Vec<String> = env
        .registry
        .audit_log(&AuditQuery { outcome: Some("denied".into()), action: Some("promotion.".into()), ..Default::default() })
        .unwrap()
        .into_iter()
        .map(|e| e.details)
        .collect();
    for code in ["self_approval", "duplicate_signature", "invalid_text", "request_not_pending"] {
        assert!(denied.iter().any(|d| d.contains(code)), "{code} audited in {denied:?}");
    }
});

conformance!(wrong_password_lockout_and_disabled_signer, |env| {
    let admin = env.with_team();
    let v = env.register("ds", "m", "1.0.0");
    env.validate_ok(&v);
    let r = env.registry.request_promotion(&env.login("ds"), &v.id, Stage::Production, "go").unwrap();
    for i in 1..=5 {
        let e = env.registry.approve_promotion(&uid("lead"), &Password::new("wrong password"), &r.id, Meaning::Approval, "x").unwrap_err();
        assert_eq!(e.code(), ErrorCode::AuthenticationFailed, "attempt {i}");
    }
    let e = env.registry.approve_promotion(&uid("lead"), &Password::new(PW), &r.id, Meaning::Approval, "x").unwrap_err();
    assert_eq!(e.code(), ErrorCode::AccountLocked);
    let locks = env.registry.audit_log(&AuditQuery { action: Some("user.lock".into()), ..Default::default() }).unwrap();
    assert_eq!(locks.len(), 1);
    let failures = env.registry.audit_log(&AuditQuery { action: Some("auth.login".into()), outcome: Some("denied".into()), ..Default::default() }).unwrap();
    assert_eq!(failures.len(), 6, "five wrong passwords and one attempt on the locked account");

    env.registry.unlock_user(&admin, &uid("lead"), "identity re-verified by phone").unwrap();
    env.registry.approve_promotion(&uid("lead"), &Password::new(PW), &r.id, Meaning::Approval, "ok").unwrap();

    env.registry.disable_user(&admin, &uid("clin"), "left the organisation").unwrap();
    let e = env.registry.approve_promotion(&uid("clin"), &Password::new(PW), &r.id, Meaning::Approval, "ok").unwrap_err();
    assert_eq!(e.code(), ErrorCode::AccountDisabled);
    // The id stays reserved forever.
    let e = env.registry.add_user(&admin, &uid("clin"), "New Person", Role::ClinicalReviewer, &Password::new(PW)).unwrap_err();
    assert_eq!(e.code(), ErrorCode::UserExists);
    env.registry.approve_promotion(&uid("clin2"), &Password::new(PW), &r.id, Meaning::Approval, "ok").unwrap();
    assert_eq!(env.registry.get_version_by_id(&v.id).unwrap().stage, Stage::Production);
});

conformance!(only_the_requester_withdraws_every_role_checked, |env| {
    env.with_team();
    let v = env.register("ds", "m", "1.0.0");
    env.validate_ok(&v);
    let r = env.registry.request_promotion(&env.login("ds2"), &v.id, Stage::Production, "mine").unwrap();
    for (role, user) in ROLE_USERS.iter().copied().chain([(Role::MlLead, "lead2"), (Role::DataScientist, "ds")]) {
        let before = denied_count(&env);
        let e = env.registry.withdraw_promotion(&env.login(user), &r.id, "not yours").unwrap_err();
        assert_eq!(e.code(), ErrorCode::RoleNotPermitted, "{role} ({user})");
        assert_eq!(denied_count(&env), before + 1, "{user}: refusal audited");
    }
    let w = env.registry.withdraw_promotion(&env.login("ds2"), &r.id, "found a bug").unwrap();
    assert_eq!(w.status, RequestStatus::Withdrawn);
});

conformance!(expired_and_withdrawn_requests_refuse_action, |env| {
    let admin = env.with_team();
    let mut policy = env.registry.policies().unwrap().production;
    policy.expires_after_hours = Some(24);
    env.registry.set_policy(&admin, Stage::Production, policy, "reviews must finish within a day").unwrap();
    let v = env.register("ds", "m", "1.0.0");
    env.validate_ok(&v);
    let r = env.registry.request_promotion(&env.login("ds"), &v.id, Stage::Production, "go").unwrap();
    assert!(r.expires_at.is_some());
    env.registry.approve_promotion(&uid("lead"), &Password::new(PW), &r.id, Meaning::Approval, "ok").unwrap();
    env.clock.advance_hours(25);
    let e = env.registry.approve_promotion(&uid("clin"), &Password::new(PW), &r.id, Meaning::Approval, "late").unwrap_err();
    assert_eq!(e.code(), ErrorCode::RequestExpired);
    assert_eq!(env.registry.get_request(&r.id).unwrap().request.status, RequestStatus::Expired);
    assert_eq!(env.registry.get_version_by_id(&v.id).unwrap().stage, Stage::Development);
    assert_eq!(env.registry.audit_log(&AuditQuery { action: Some("promotion.expire".into()), ..Default::default() }).unwrap().len(), 1);

    // A new request can be opened once the old one expired; the requester can withdraw it.
    env.validate_ok(&v);
    let r2 = env.registry.request_promotion(&env.login("ds"), &v.id, Stage::Production, "again").unwrap();
    let e = env.registry.withdraw_promotion(&env.login("ds2"), &r2.id, "not mine").unwrap_err();
    assert_eq!(e.code(), ErrorCode::RoleNotPermitted);
    env.registry.withdraw_promotion(&env.login("ds"), &r2.id, "found a bug").unwrap();
    let e = env.registry.approve_promotion(&uid("lead"), &Password::new(PW), &r2.id, Meaning::Approval, "ok").unwrap_err();
    assert_eq!(e.code(), ErrorCode::RequestNotPending);
});

conformance!(refused_requests_write_nothing_but_the_denial, |env| {
    let admin = env.with_team();
    let v = env.register("ds", "m", "1.0.0");
    env.validate_ok(&v);
    let before = env.registry.audit_log(&AuditQuery::default()).unwrap().len();
    let e = env.registry.request_promotion(&env.login("ds"), &v.id, Stage::Production, "   ").unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidText);
    let e = env.registry.request_promotion(&env.login("ds"), "mv_nope", Stage::Production, "x").unwrap_err();
    assert_eq!(e.code(), ErrorCode::VersionNotFound);
    let e = env.registry.register_model(&admin, new_version("m", "2.0.0")).unwrap_err();
    assert_eq!(e.code(), ErrorCode::RoleNotPermitted, "administrators never build releases");
    let r = env.registry.request_promotion(&env.login("ds"), &v.id, Stage::Staging, "ok").unwrap();
    let e = env.registry.request_promotion(&env.login("ds"), &v.id, Stage::Production, "second").unwrap_err();
    assert_eq!(e.code(), ErrorCode::RequestAlreadyPending);
    let after = env.registry.audit_log(&AuditQuery::default()).unwrap();
    // Four refusals and one request: exactly five new events, the refusals marked denied.
    assert_eq!(after.len(), before + 5);
    assert_eq!(after.iter().filter(|e| e.outcome == "denied").count(), 4);
    assert_eq!(env.registry.list_requests(&Default::default()).unwrap().len(), 1);
    assert_eq!(env.registry.list_requests(&Default::default()).unwrap()[0].id, r.id);
    assert_eq!(env.registry.list_models().unwrap()[0].1.len(), 1);
});

conformance!(policies_are_configurable_and_audited, |env| {
    let admin = env.with_team();
    let three = ApprovalPolicy {
        required_approvals: 3,
        required_roles: vec![Role::MlLead, Role::ClinicalReviewer],
        eligible_roles: vec![Role::MlLead, Role::ClinicalReviewer],
        expires_after_hours: None,
    };
    env.registry.set_policy(&admin, Stage::Production, three, "three-person rule").unwrap();
    let bad = ApprovalPolicy { required_approvals: 1, ..env.registry.policies().unwrap().production };
    assert_eq!(env.registry.set_policy(&admin, Stage::Production, bad, "x").unwrap_err().code(), ErrorCode::InvalidPolicy);
    let e = env.registry.set_policy(&env.login("lead"), Stage::Staging, env.registry.policies().unwrap().staging, "x").unwrap_err();
    assert_eq!(e.code(), ErrorCode::RoleNotPermitted);

    let v = env.register("ds", "m", "1.0.0");
    env.validate_ok(&v);
    let r = env.registry.request_promotion(&env.login("ds"), &v.id, Stage::Production, "go").unwrap();
    for s in ["lead", "clin"] {
        env.registry.approve_promotion(&uid(s), &Password::new(PW), &r.id, Meaning::Approval, "ok").unwrap();
    }
    assert_eq!(env.registry.get_request(&r.id).unwrap().request.status, RequestStatus::Pending);
    env.registry.approve_promotion(&uid("clin2"), &Password::new(PW), &r.id, Meaning::Approval, "ok").unwrap();
    assert_eq!(env.registry.get_version_by_id(&v.id).unwrap().stage, Stage::Production);
    let updates = env.registry.audit_log(&AuditQuery { action: Some("policy.update".into()), ..Default::default() }).unwrap();
    assert_eq!(updates.iter().filter(|e| e.outcome == "ok").count(), 1);
    assert_eq!(updates.iter().filter(|e| e.outcome == "denied").count(), 2);
});
