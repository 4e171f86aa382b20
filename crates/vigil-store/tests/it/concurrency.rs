//! Invariants under concurrent writers, each with its own registry and connection pool on the
//! same database (as separate processes would be). Process-level races are in the CLI tests.

use crate::conformance;
use crate::support::*;
use std::sync::{Arc, Barrier};
use vigil_core::approval::{Meaning, RequestStatus};
use vigil_core::auth::Password;
use vigil_core::ids::ModelName;
use vigil_core::model::Stage;
use vigil_core::store::AuditQuery;
use vigil_core::ErrorCode;

conformance!(two_final_approvals_at_once_promote_exactly_once, |env| {
    env.with_team();
    for round in 0..3 {
        let v = env.register("ds", "m", &format!("1.{round}.0"));
        env.validate_ok(&v);
        let r = env.registry.request_promotion(&env.login("ds"), &v.id, Stage::Production, "race").unwrap();
        env.registry.approve_promotion(&uid("lead"), &Password::new(PW), &r.id, Meaning::Approval, "ok").unwrap();
        let barrier = Arc::new(Barrier::new(2));
        let results: Vec<_> = std::thread::scope(|s| {
            let hs: Vec<_> = ["clin", "clin2"]
                .into_iter()
                .map(|who| {
                    let reg = env.second_registry();
                    let b = barrier.clone();
                    let rid = r.id.clone();
                    s.spawn(move || {
                        b.wait();
                        reg.approve_promotion(&uid(who), &Password::new(PW), &rid, Meaning::Approval, "ok")
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let oks = results.iter().filter(|r| r.is_ok()).count();
        // Either one signer completes and the other finds the request closed, or (if the
        // second committed first) the same with roles swapped; never two completions.
        assert_eq!(oks, 1, "{results:?}");
        let err = results.iter().find_map(|r| r.as_ref().err()).unwrap();
        assert_eq!(err.code(), ErrorCode::RequestNotPending);
        let d = env.registry.get_request(&r.id).unwrap();
        assert_eq!(d.request.status, RequestStatus::Approved);
        assert_eq!(d.signatures.len(), 2);
        let name = ModelName::parse("m").unwrap();
        let l = env.registry.lineage(&name, &v.version).unwrap();
        assert_eq!(l.transitions.iter().filter(|t| t.to_stage == Stage::Production).count(), 1);
    }
    assert!(env.registry.verify_audit().unwrap().ok());
});

conformance!(racing_production_promotions_leave_exactly_one_production_version, |env| {
    env.with_team();
    let n = 6;
    let mut requests = Vec::new();
    for i in 0..n {
        let v = env.register("ds", "m", &format!("2.{i}.0"));
        env.validate_ok(&v);
        let r = env.registry.request_promotion(&env.login("ds"), &v.id, Stage::Production, "race").unwrap();
        env.registry.approve_promotion(&uid("lead"), &Password::new(PW), &r.id, Meaning::Approval, "ok").unwrap();
        requests.push(r.id);
    }
    let barrier = Arc::new(Barrier::new(n));
    let results: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = requests
            .iter()
            .enumerate()
            .map(|(i, rid)| {
                let reg = env.second_registry();
                let b = barrier.clone();
                let who = if i % 2 == 0 { "clin" } else { "clin2" };
                s.spawn(move || {
                    b.wait();
                    reg.approve_promotion(&uid(who), &Password::new(PW), rid, Meaning::Approval, "ok")
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // Every version was validated while nothing was in Production: the first completion
    // releases its version, and the others no longer have a comparison with that champion.
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "{results:?}");
    for r in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(r.code(), vigil_core::ErrorCode::ValidationRequired, "{r}");
    }
    let versions = &env.registry.list_models().unwrap()[0].1;
    assert_eq!(versions.iter().filter(|v| v.stage == Stage::Production).count(), 1);
    assert_eq!(versions.iter().filter(|v| v.stage == Stage::Development).count(), n - 1);
    // The release is in the history and the audit trail; the refusals changed nothing.
    let stage_events = env.registry.audit_log(&AuditQuery { action: Some("model_version.stage".into()), ..Default::default() }).unwrap();
    assert_eq!(stage_events.len(), 1);
    assert!(env.registry.verify_audit().unwrap().ok());
});

conformance!(sixteen_writers_register_concurrently_and_the_chain_holds, |env| {
    env.with_team();
    let writers = 16;
    let per = 10;
    let barrier = Arc::new(Barrier::new(writers));
    std::thread::scope(|s| {
        for w in 0..writers {
            let reg = env.second_registry();
            let p = env.login(if w % 2 == 0 { "ds" } else { "ds2" });
            let b = barrier.clone();
            s.spawn(move || {
                b.wait();
                for i in 0..per {
                    // All writers race to create the same new model first.
                    reg.register_model(&p, new_version("shared", &format!("{w}.{i}.0"))).unwrap();
                }
            });
        }
    });
    let models = env.registry.list_models().unwrap();
    assert_eq!(models.len(), 1);
    assert_eq!(models[0].1.len(), writers * per);
    let report = env.registry.verify_audit().unwrap();
    assert!(report.ok(), "{report:?}");
    let registered = env.registry.audit_log(&AuditQuery { action: Some("model_version.register".into()), ..Default::default() }).unwrap();
    assert_eq!(registered.len(), writers * per);
    assert_eq!(env.registry.audit_log(&AuditQuery { action: Some("model.create".into()), ..Default::default() }).unwrap().len(), 1);
});

conformance!(verification_while_writers_append_never_reports_tampering, |env| {
    env.with_team();
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let reg = env.second_registry();
        let p = env.login("ds");
        let stop = &stop;
        let writer = s.spawn(move || {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                reg.register_model(&p, new_version("busy", &format!("1.{i}.0"))).unwrap();
                i += 1;
            }
            i
        });
        // Segmented and one-pass verification, many times, while the chain grows.
        let segmented = {
            let store = vigil_store::open(&env.location()).unwrap();
            vigil_core::registry::Registry::new(store, Arc::new(vigil_core::ids::SystemClock), Arc::new(vigil_core::ids::UuidV7Ids), env.key.clone())
                .with_verify_segments(2)
        };
        for round in 0..40 {
            let r = if round % 2 == 0 { env.registry.verify_audit() } else { segmented.verify_audit() };
            let r = r.unwrap();
            assert!(r.ok(), "round {round}: {r:?}");
        }
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(writer.join().unwrap() > 0);
    });
});
