//! Vigil's wire formats: the JSON shape of every domain object, the registration manifest,
//! and the error catalogue (stable code → HTTP status). The CLI's `--json` output and the
//! REST API (a later issue) use these same functions, so a field means the same thing
//! everywhere.
//!
//! This is a deliberate boundary (see ARCHITECTURE.md): domain types are mapped here field by
//! field, never serialised with a derive, so changing a core type cannot silently change what
//! clients receive.

pub mod card;
pub mod html;
pub mod manifest;

use serde_json::{Value, json};
use vigil_core::approval::{PolicySet, PromotionRequest, Signature, Tally};
use vigil_core::audit::{ChainReport, StoredEvent};
use vigil_core::auth::User;
use vigil_core::card::{CardField, FieldStatus, ModelCard};
use vigil_core::model::{ModelVersion, RegisteredModel, StageTransition};
use vigil_core::registry::{LineageReport, RequestDetail, SignatureReport};
use vigil_core::{Error, ErrorCode, ErrorKind};

/// HTTP status for an error kind (used by the server; listed in the catalogue).
pub fn http_status(kind: ErrorKind) -> u16 {
    match kind {
        ErrorKind::InvalidInput => 400,
        ErrorKind::Unauthenticated => 401,
        ErrorKind::Denied => 403,
        ErrorKind::NotFound => 404,
        ErrorKind::Conflict => 409,
        ErrorKind::Internal => 500,
    }
}

/// `{"error": {"code", "message", "status"}}`.
pub fn error(e: &Error) -> Value {
    json!({"error": {"code": e.code().as_str(), "message": e.message(), "status": http_status(e.kind())}})
}

/// The whole error catalogue, for documentation.
pub fn error_catalogue() -> Vec<(ErrorCode, u16)> {
    ErrorCode::ALL.iter().map(|c| (*c, http_status(c.kind()))).collect()
}

/// A user, without the password hash.
pub fn user(u: &User) -> Value {
    json!({
        "user_id": u.id.as_str(),
        "printed_name": u.printed_name,
        "role": u.role.as_str(),
        "status": u.status.as_str(),
        "locked": u.locked,
        "failed_attempts": u.failed_attempts,
        "created_at": u.created_at.to_rfc3339(),
    })
}

/// A registered model.
pub fn model(m: &RegisteredModel) -> Value {
    json!({
        "model_id": m.id,
        "name": m.name.as_str(),
        "owner": m.owner,
        "description": m.description,
        "tags": m.tags,
        "model_type": m.model_type.as_str(),
        "created_by": m.created_by.as_str(),
        "created_at": m.created_at.to_rfc3339(),
    })
}

/// A model card with every known field's state (`value`, `not_available`, or `missing`).
pub fn card(c: &ModelCard) -> Value {
    let fields: Vec<Value> = CardField::ALL
        .iter()
        .map(|f| {
            let (status, text) = match c.get(*f) {
                Some(FieldStatus::Value(v)) => ("value", Value::String(v.clone())),
                Some(FieldStatus::NotAvailable { reason }) => ("not_available", Value::String(reason.clone())),
                None => ("missing", Value::Null),
            };
            json!({"key": f.key(), "hti1": f.hti1(), "label": f.label(), "status": status, "text": text})
        })
        .collect();
    let missing: Vec<&str> = c.missing_hti1().iter().map(|f| f.key()).collect();
    json!({"fields": fields, "hti1_missing": missing, "hti1_complete": missing.is_empty()})
}

/// A model version (the seed's `model` object; `model_id` is the version's id).
pub fn version(v: &ModelVersion) -> Value {
    json!({
        "model_id": v.id,
        "registered_model_id": v.model_id,
        "name": v.model_name.as_str(),
        "version": v.version.to_string(),
        "number": v.number,
        "model_type": v.model_type.as_str(),
        "stage": v.stage.as_str(),
        "artifact_uri": v.content.artifact_uri,
        "artifact_sha256": v.content.artifact_sha256.map(|d| d.to_hex()),
        "metrics": v.content.metrics.to_json(),
        "lineage": v.content.lineage.to_json(),
        "model_card": card(&v.content.card),
        "content_hash": v.content_hash.to_hex(),
        "content_hash_ok": v.recompute_content_hash() == v.content_hash,
        "created_by": v.created_by.as_str(),
        "created_at": v.created_at.to_rfc3339(),
    })
}

/// A stage transition.
pub fn transition(t: &StageTransition) -> Value {
    json!({
        "from": t.from_stage.map(|s| s.as_str()),
        "to": t.to_stage.as_str(),
        "request_id": t.request_id,
        "reason": t.reason,
        "actor": t.actor.as_str(),
        "at": t.at.to_rfc3339(),
    })
}

/// A promotion request.
pub fn request(r: &PromotionRequest) -> Value {
    json!({
        "request_id": r.id,
        "model_version_id": r.model_version_id,
        "model": r.model_ref,
        "from_stage": r.from_stage.as_str(),
        "to_stage": r.to_stage.as_str(),
        "requester": r.requester.as_str(),
        "justification": r.justification,
        "status": r.status.as_str(),
        "content_hash": r.content_hash.to_hex(),
        "policy": r.policy.to_json(),
        "created_at": r.created_at.to_rfc3339(),
        "expires_at": r.expires_at.map(|t| t.to_rfc3339()),
        "decided_at": r.decided_at.map(|t| t.to_rfc3339()),
        "status_reason": r.status_reason,
        "validation_report_id": r.validation_report_id,
    })
}

/// A signature manifestation (Part 11 §11.50: printed name, time, meaning).
pub fn signature(s: &Signature) -> Value {
    json!({
        "signature_id": s.id,
        "request_id": s.request_id,
        "signer_id": s.signer_id.as_str(),
        "printed_name": s.printed_name,
        "role": s.role.as_str(),
        "meaning": s.meaning.as_str(),
        "decision": s.decision.as_str(),
        "comment": s.comment,
        "content_hash": s.content_hash.to_hex(),
        "signed_at": s.signed_at.to_rfc3339(),
        "key_id": s.key_id,
        "server_signature": s.server_signature,
    })
}

/// Where a request stands.
pub fn tally(t: &Tally) -> Value {
    match t {
        Tally::Approved => json!({"state": "approved"}),
        Tally::Rejected => json!({"state": "rejected"}),
        Tally::Pending { approvals, required, missing_roles } => json!({
            "state": "pending",
            "approvals": approvals,
            "required": required,
            "missing_roles": missing_roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
        }),
    }
}

/// A request with its checked signatures.
pub fn request_detail(d: &RequestDetail) -> Value {
    let mut v = request(&d.request);
    v["signatures"] = Value::Array(
        d.signatures
            .iter()
            .map(|(s, ok)| {
                let mut j = signature(s);
                j["counts"] = json!(ok.is_ok());
                j["invalid_reason"] = json!(ok.as_ref().err());
                j
            })
            .collect(),
    );
    v["tally"] = tally(&d.tally);
    v
}

/// A lineage report.
pub fn lineage(l: &LineageReport) -> Value {
    json!({
        "model_version": version(&l.version),
        "lineage_gaps": l.gaps,
        "content_hash_ok": l.content_hash_ok,
        "requests": l.requests.iter().map(request_detail).collect::<Vec<_>>(),
        "stage_history": l.transitions.iter().map(transition).collect::<Vec<_>>(),
        "same_training_data": l.same_data,
    })
}

/// An audit event as stored (also the JSONL export line).
pub fn audit_event(e: &StoredEvent) -> Value {
    json!({
        "seq": e.seq,
        "at": e.at,
        "actor": e.actor,
        "action": e.action,
        "outcome": e.outcome,
        "entity_type": e.entity_type,
        "entity_id": e.entity_id,
        "model": e.model,
        "version": e.version,
        "details": serde_json::from_str::<Value>(&e.details).unwrap_or(Value::String(e.details.clone())),
        "details_canonical": e.details,
        "prev_hash": e.prev_hash,
        "hash": e.hash,
    })
}

/// An audit verification result: the chain, every signature seal, and the records' backing.
pub fn chain_report(r: &ChainReport, sigs: &SignatureReport, records: &[(String, String)], key_id: &str) -> Value {
    json!({
        "key_id": key_id,
        "ok": r.ok() && sigs.failures.is_empty() && records.is_empty(),
        "record_failures": records.iter().map(|(v, why)| json!({"model_version": v, "problem": why})).collect::<Vec<_>>(),
        "events": r.events,
        "head_hash": r.head_hash,
        "first_bad_position": r.first_bad.as_ref().map(|b| b.0),
        "problem": r.first_bad.as_ref().map(|b| b.1.to_string()),
        "signatures_checked": sigs.checked,
        "signature_failures": sigs.failures.iter().map(|(id, why)| json!({"signature_id": id, "reason": why})).collect::<Vec<_>>(),
    })
}

/// The approval policies.
pub fn policies(p: &PolicySet) -> Value {
    p.to_json()
}

/// A validation policy in force for a model or a model type, and where it comes from
/// (`model`, `model_type` or `built_in`).
pub fn validation_policy(scope: &str, target: &str, p: &vigil_core::validate::ResolvedPolicy) -> Value {
    json!({"scope": scope, "target": target, "source": p.source, "policy": p.policy.to_json()})
}

/// A deployment with each arm resolved: what it runs now and whether it may be served.
pub fn deployment(d: &vigil_core::deploy::Deployment, arms: &[vigil_core::deploy::ResolvedArm]) -> Value {
    json!({
        "model": d.model,
        "revision": d.revision,
        "updated_by": d.updated_by,
        "updated_at": d.updated_at.map(|t| t.to_rfc3339()),
        "unit_key": d.spec.unit_key.as_ref().map(vigil_core::deploy::UnitKey::text),
        "full_spool": d.spec.to_json()["full_spool"],
        "features": d.spec.features.as_ref().map(vigil_core::features::FeatureLookup::to_json),
        "arms": arms.iter().map(|r| json!({
            "name": r.arm.name,
            "runs": match &r.arm.version { vigil_core::deploy::ArmVersion::Production => "production".to_owned(), vigil_core::deploy::ArmVersion::Pinned(id) => id.clone() },
            "role": r.arm.role.as_str(),
            "percent": f64::from(r.arm.weight) / 100.0,
            "version": r.version.as_ref().map(|v| v.version.to_string()),
            "version_id": r.version.as_ref().map(|v| v.id.clone()),
            "stage": r.version.as_ref().map(|v| v.stage.as_str()),
            "permitted": r.permitted.is_ok(),
            "reason": r.permitted.as_ref().err(),
        })).collect::<Vec<_>>(),
    })
}

/// A deployment's changes (and refused attempts) from its audit events.
pub fn deployment_history(events: &[StoredEvent]) -> Value {
    Value::Array(
        events
            .iter()
            .map(|e| {
                let d: Value = serde_json::from_str(&e.details).unwrap_or(Value::Null);
                json!({"seq": e.seq, "at": e.at, "actor": e.actor, "outcome": e.outcome, "revision": d["new"]["revision"], "arms": d["new"]["spec"]["arms"],
                       "unit_key": d["new"]["spec"]["unit_key"], "reason": d["reason"], "refused": d.get("message")})
            })
            .collect(),
    )
}
