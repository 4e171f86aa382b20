//! Tamper evidence on the real database: signatures bound to content and to their request,
//! and the audit chain against edits, deletions, insertions, reordering and truncation.

use crate::conformance;
use crate::support::*;
use vigil_core::approval::{Meaning, RequestStatus, Tally};
use vigil_core::audit::ChainProblem;
use vigil_core::auth::Password;
use vigil_core::model::Stage;
use vigil_core::ErrorCode;

conformance!(changing_signed_content_voids_earlier_approvals, |env| {
    env.with_team();
    let v = env.register("ds", "m", "1.0.0");
    env.validate_ok(&v);
    let r = env.registry.request_promotion(&env.login("ds"), &v.id, Stage::Production, "go").unwrap();
    env.registry.approve_promotion(&uid("lead"), &Password::new(PW), &r.id, Meaning::Approval, "ok").unwrap();

    let mut changed = v.content.clone();
    changed.metrics.set("auc_roc", 0.97).unwrap();
    let v2 = env.registry.update_version_content(&env.login("ds"), &v.id, changed, "re-evaluated on the full holdout").unwrap();
    assert_ne!(v2.content_hash, v.content_hash);

    // The open request is superseded, and the lead's signature no longer counts.
    let d = env.registry.get_request(&r.id).unwrap();
    assert_eq!(d.request.status, RequestStatus::Superseded);
    assert!(d.signatures[0].1.is_err(), "approval over the old content must not count");
    let e = env.registry.approve_promotion(&uid("clin"), &Password::new(PW), &r.id, Meaning::Approval, "ok").unwrap_err();
    assert_eq!(e.code(), ErrorCode::RequestNotPending);

    // A new request over the new content needs both signatures again.
    env.validate_ok(&v);
    let r2 = env.registry.request_promotion(&env.login("ds"), &v.id, Stage::Production, "again").unwrap();
    let out = env.registry.approve_promotion(&uid("clin"), &Password::new(PW), &r2.id, Meaning::Approval, "ok").unwrap();
    assert!(matches!(out.tally, Tally::Pending { approvals: 1, .. }));
    env.registry.approve_promotion(&uid("lead"), &Password::new(PW), &r2.id, Meaning::Approval, "ok").unwrap();
    assert_eq!(env.registry.get_version_by_id(&v.id).unwrap().stage, Stage::Production);
    // Production content is frozen.
    let e = env.registry.update_version_content(&env.login("ds"), &v.id, v.content.clone(), "x").unwrap_err();
    assert_eq!(e.code(), ErrorCode::VersionImmutable);
});

conformance!(editing_signed_fields_in_the_database_blocks_completion, |env| {
    env.with_team();
    let v = env.register("ds", "m", "1.0.0");
    env.validate_ok(&v);
    let r = env.registry.request_promotion(&env.login("ds"), &v.id, Stage::Production, "go").unwrap();
    env.registry.approve_promotion(&uid("lead"), &Password::new(PW), &r.id, Meaning::Approval, "ok").unwrap();
    let mut raw = env.raw();
    raw.exec(&format!("UPDATE model_versions SET metrics = '{{\"accuracy\":0.99,\"auc_roc\":0.99}}' WHERE id = '{}'", v.id));
    let e = env.registry.approve_promotion(&uid("clin"), &Password::new(PW), &r.id, Meaning::Approval, "ok").unwrap_err();
    assert_eq!(e.code(), ErrorCode::IntegrityViolation);

    // A careful forger also rewrites the stored content hash: the signature still does not
    // cover the new content, so the request cannot complete.
    let forged = env.registry.get_version_by_id(&v.id).unwrap().recompute_content_hash();
    raw.exec(&format!("UPDATE model_versions SET content_hash = '{}' WHERE id = '{}'", forged.to_hex(), v.id));
    let e = env.registry.approve_promotion(&uid("clin"), &Password::new(PW), &r.id, Meaning::Approval, "ok").unwrap_err();
    assert_eq!(e.code(), ErrorCode::ContentChanged);
    assert_eq!(env.registry.get_version_by_id(&v.id).unwrap().stage, Stage::Development);
    assert!(env.registry.get_request(&r.id).unwrap().signatures[0].1.is_err());
});

conformance!(a_signature_copied_onto_another_request_fails_verification, |env| {
    env.with_team();
    let v1 = env.register("ds", "m", "1.0.0");
    let v2 = env.register("ds", "m", "1.1.0");
    env.validate_ok(&v1);
    let r1 = env.registry.request_promotion(&env.login("ds"), &v1.id, Stage::Production, "one").unwrap();
    env.validate_ok(&v2);
    let r2 = env.registry.request_promotion(&env.login("ds"), &v2.id, Stage::Production, "two").unwrap();
    let s = env.registry.approve_promotion(&uid("lead"), &Password::new(PW), &r1.id, Meaning::Approval, "ok").unwrap().signature;
    assert_eq!(env.registry.verify_signatures().unwrap().failures.len(), 0);

    // Transplant the lead's signature onto request 2, fixing up every visible field.
    let mut raw = env.raw();
    raw.exec(&format!(
        "INSERT INTO signatures (id, request_id, model_version_id, signer_id, printed_name, role, meaning, decision, comment, content_hash, signed_at, key_id, server_signature) \
         SELECT 'sig_copied', '{r2}', '{mv2}', signer_id, printed_name, role, meaning, decision, comment, '{h2}', signed_at, key_id, server_signature FROM signatures WHERE id = '{s}'",
        r2 = r2.id, mv2 = v2.id, h2 = v2.content_hash.to_hex(), s = s.id
    ));
    let report = env.registry.verify_signatures().unwrap();
    assert_eq!(report.checked, 2);
    assert_eq!(report.failures.len(), 1);
    assert_eq!(report.failures[0].0, "sig_copied");
    let d = env.registry.get_request(&r2.id).unwrap();
    assert!(d.signatures[0].1.is_err());
    // With the copied signature not counting, a clinical approval alone does not promote.
    let out = env.registry.approve_promotion(&uid("clin"), &Password::new(PW), &r2.id, Meaning::Approval, "ok").unwrap();
    assert!(matches!(out.tally, Tally::Pending { .. }), "{:?}", out.tally);
    assert_eq!(env.registry.get_version_by_id(&v2.id).unwrap().stage, Stage::Development);
});

/// A store with a few dozen audit events.
fn populated(env: &Env) -> u64 {
    env.with_team();
    let v = env.register("ds", "m", "1.0.0");
    env.promote(&v, Stage::Production);
    let report = env.verify();
    assert!(report.ok(), "{report:?}");
    report.events
}

const COLS: &str = "at, actor, action, outcome, entity_type, entity_id, model, version, details, prev_hash, hash";

conformance!(audit_rows_cannot_be_updated_or_deleted_by_the_application_role, |env| {
    populated(&env);
    let mut raw = env.raw();
    let attempt = match &mut raw {
        Raw::Sqlite(c) => c.execute_batch("UPDATE audit_events SET actor = 'x' WHERE seq = 1").err().map(|e| e.to_string()),
        Raw::Postgres(c) => c.batch_execute("UPDATE audit_events SET actor = 'x' WHERE seq = 1").err().map(|e| format!("{e:?}")),
    };
    assert!(attempt.unwrap_or_default().contains("append-only"));
    let attempt = match &mut raw {
        Raw::Sqlite(c) => c.execute_batch("DELETE FROM signatures").err().map(|e| e.to_string()),
        Raw::Postgres(c) => c.batch_execute("DELETE FROM signatures").err().map(|e| format!("{e:?}")),
    };
    assert!(attempt.unwrap_or_default().contains("append-only"));
});

conformance!(tamper_edit_names_the_edited_event, |env| {
    populated(&env);
    let mut raw = env.raw();
    raw.drop_append_only_triggers();
    raw.exec("UPDATE audit_events SET details = '{\"reason\":\"nothing to see\"}' WHERE seq = 7");
    let r = env.verify();
    assert_eq!(r.first_bad, Some((7, ChainProblem::HashMismatch)));
});

conformance!(tamper_delete_names_the_gap, |env| {
    populated(&env);
    let mut raw = env.raw();
    raw.drop_append_only_triggers();
    raw.exec("DELETE FROM audit_events WHERE seq = 5");
    let r = env.verify();
    assert_eq!(r.first_bad, Some((5, ChainProblem::SequenceGap { found: 6 })));
});

conformance!(tamper_insert_names_the_inserted_position, |env| {
    let n = populated(&env) as i64;
    let mut raw = env.raw();
    raw.drop_append_only_triggers();
    // Shift events 4.. up by one (from the end, so the primary key never collides) and
    // slip a forged event into position 4, correctly linked to event 3.
    for seq in (4..=n).rev() {
        raw.exec(&format!("UPDATE audit_events SET seq = {} WHERE seq = {seq}", seq + 1));
    }
    let prev = raw.scalar("SELECT hash FROM audit_events WHERE seq = 3");
    raw.exec(&format!(
        "INSERT INTO audit_events (seq, {COLS}) VALUES (4, '2026-01-01T00:00:00.000000Z', 'lead', 'promotion.approve', 'ok', 'promotion_request', 'req_x', 'm', '1.0.0', '{{}}', '{prev}', '{}')",
        "0".repeat(64)
    ));
    let r = env.verify();
    assert_eq!(r.first_bad.as_ref().map(|b| b.0), Some(4), "{r:?}");
});

conformance!(tamper_reorder_names_the_first_moved_event, |env| {
    populated(&env);
    let mut raw = env.raw();
    raw.drop_append_only_triggers();
    raw.exec("UPDATE audit_events SET seq = -1 WHERE seq = 8");
    raw.exec("UPDATE audit_events SET seq = 8 WHERE seq = 9");
    raw.exec("UPDATE audit_events SET seq = 9 WHERE seq = -1");
    let r = env.verify();
    assert_eq!(r.first_bad, Some((8, ChainProblem::BrokenLink)));
});

conformance!(tamper_truncated_tail_is_detected_by_the_head, |env| {
    let n = populated(&env) as i64;
    let mut raw = env.raw();
    raw.drop_append_only_triggers();
    raw.exec(&format!("DELETE FROM audit_events WHERE seq = {n}"));
    let r = env.verify();
    assert_eq!(r.first_bad, Some((n as u64, ChainProblem::HeadMismatch { head_seq: n })));
});

conformance!(tamper_delete_at_a_segment_boundary_is_named_in_every_mode, |env| {
    let n = populated(&env) as i64;
    let mut raw = env.raw();
    raw.drop_append_only_triggers();
    // With two segments over n events the first ends at n / 2.
    let boundary = n / 2;
    raw.exec(&format!("DELETE FROM audit_events WHERE seq = {boundary}"));
    let r = env.verify();
    assert_eq!(r.first_bad, Some((boundary as u64, ChainProblem::SequenceGap { found: boundary + 1 })));
});

conformance!(full_precision_metrics_round_trip_and_stay_promotable, |env| {
    env.with_team();
    // Doubles whose shortest representation needs 16-17 digits: a parser without exact
    // float round-tripping shifts some of them by one ulp, which would break the content hash.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut content = content("s3://m/1");
    for i in 0..200 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let x = (state >> 11) as f64 / (1u64 << 53) as f64;
        content.metrics.set(&format!("m{i}"), x).unwrap();
    }
    let mut nv = new_version("precise", "1.0.0");
    nv.content = content;
    let v = env.registry.register_model(&env.login("ds"), nv).unwrap();
    let back = env.registry.get_version_by_id(&v.id).unwrap();
    assert_eq!(back.content.metrics, v.content.metrics);
    assert_eq!(back.recompute_content_hash(), v.content_hash);
    env.registry.request_promotion(&env.login("ds"), &v.id, Stage::Staging, "precise").unwrap();
});

conformance!(a_stage_set_in_the_database_is_reported_by_record_verification, |env| {
    env.with_team();
    let v1 = env.register("ds", "m", "1.0.0");
    let v2 = env.register("ds", "m", "2.0.0");
    env.promote(&v1, Stage::Production);
    assert!(env.registry.verify_records().unwrap().is_empty());
    let mut raw = env.raw();
    // Swap production to the unapproved version by hand.
    raw.exec(&format!("UPDATE model_versions SET stage = 'archived' WHERE id = '{}'", v1.id));
    raw.exec(&format!("UPDATE model_versions SET stage = 'production' WHERE id = '{}'", v2.id));
    let problems = env.registry.verify_records().unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].0, "m@2.0.0");
    assert!(env.verify().ok(), "the chain itself is untouched; only the record check can see this");
});

conformance!(approved_content_changed_with_its_hash_is_reported, |env| {
    env.with_team();
    let v = env.register("ds", "m", "1.0.0");
    env.promote(&v, Stage::Production);
    let mut raw = env.raw();
    let mut forged = env.registry.get_version_by_id(&v.id).unwrap();
    forged.content.metrics.set("auc_roc", 0.99).unwrap();
    let h = forged.recompute_content_hash();
    raw.exec(&format!(
        "UPDATE model_versions SET metrics = '{}', content_hash = '{}' WHERE id = '{}'",
        vigil_core::canonical::encode(&forged.content.metrics.to_json()), h.to_hex(), v.id
    ));
    let problems = env.registry.verify_records().unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].1.contains("without an approval that covers its current content"));
});

conformance!(tamper_insert_of_a_correctly_hashed_event_names_where_the_chain_breaks, |env| {
    let n = populated(&env) as i64;
    let mut raw = env.raw();
    raw.drop_append_only_triggers();
    for seq in (4..=n).rev() {
        raw.exec(&format!("UPDATE audit_events SET seq = {} WHERE seq = {seq}", seq + 1));
    }
    // A forger who knows the hash rule links a new event properly after event 3 ...
    let prev_hex = raw.scalar("SELECT hash FROM audit_events WHERE seq = 3");
    let mut prev = [0u8; 32];
    hex::decode_to_slice(&prev_hex, &mut prev).unwrap();
    let ev = vigil_core::audit::AuditEvent {
        at: vigil_core::ids::Timestamp::parse("2026-01-01T00:00:00Z").unwrap(),
        actor: "lead".into(),
        action: "promotion.approve".into(),
        outcome: vigil_core::audit::Outcome::Ok,
        entity_type: "promotion_request".into(),
        entity_id: "req_forged".into(),
        model: Some("m".into()),
        version: Some("1.0.0".into()),
        details: serde_json::json!({}),
    };
    let (s, _) = vigil_core::audit::StoredEvent::link(&ev, 3, &prev);
    raw.exec(&format!(
        "INSERT INTO audit_events (seq, {COLS}) VALUES (4, '{}', '{}', '{}', '{}', '{}', '{}', 'm', '1.0.0', '{}', '{}', '{}')",
        s.at, s.actor, s.action, s.outcome, s.entity_type, s.entity_id, s.details, s.prev_hash, s.hash
    ));
    // ... so event 4 verifies, and the chain breaks at the next one, whose link no longer fits.
    let r = env.verify();
    assert_eq!(r.first_bad, Some((5, ChainProblem::BrokenLink)), "{r:?}");
});
