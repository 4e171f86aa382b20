//! Promotion requests, approval policies, and 21 CFR Part 11 electronic signatures.
//!
//! A signature binds who (id, printed name, role), when (server UTC), what it means, the
//! decision, and *which content* (the version's content hash) to one request. The whole
//! manifestation is signed with the server's Ed25519 key, so a signature copied onto another
//! request, or edited in the database, fails verification, and an approval whose content hash
//! differs from the version's current content no longer counts.

use crate::canonical;
use crate::error::{Error, ErrorCode, Result};
use crate::ids::{Sha256Digest, Timestamp, UserId};
use crate::auth::Role;
use crate::model::{Stage, string_enum};
use ed25519_dalek::{Signer, Verifier};
use serde_json::{Value, json};
use std::collections::BTreeSet;

string_enum!(
    /// A promotion request's status. Only `pending` is open; the others are terminal.
    RequestStatus, InvalidFilter, "request status" {
        Pending = "pending",
        Approved = "approved",
        Rejected = "rejected",
        Withdrawn = "withdrawn",
        Expired = "expired",
        Superseded = "superseded",
    }
);

string_enum!(
    /// The meaning of an electronic signature (Part 11 §11.50(a)(3)).
    Meaning, InvalidMeaning, "signature meaning" {
        Review = "review",
        Approval = "approval",
        Responsibility = "responsibility",
        Authorship = "authorship",
    }
);

string_enum!(
    /// What a signer decided.
    Decision, IntegrityViolation, "decision" {
        Approve = "approve",
        Reject = "reject",
    }
);

/// Longest allowed request expiry: ten years.
pub const MAX_EXPIRY_HOURS: u32 = 87_600;

/// Who must approve a move into one target stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalPolicy {
    /// Number of distinct approvers needed.
    pub required_approvals: u32,
    /// Roles of which at least one approver each is needed.
    pub required_roles: Vec<Role>,
    /// Roles whose members may sign at all for this stage.
    pub eligible_roles: Vec<Role>,
    /// Pending requests expire after this many hours, if set.
    pub expires_after_hours: Option<u32>,
}

impl ApprovalPolicy {
    /// Checks internal consistency.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::new(ErrorCode::InvalidPolicy, m.to_owned()));
        if self.required_approvals == 0 {
            return bad("a policy needs at least one approval");
        }
        let distinct: BTreeSet<Role> = self.required_roles.iter().copied().collect();
        if distinct.len() != self.required_roles.len() {
            return bad("required roles must be distinct");
        }
        if (self.required_approvals as usize) < distinct.len() {
            return bad("required approvals must be at least the number of required roles");
        }
        if self.eligible_roles.contains(&Role::Admin) {
            return bad("administrators cannot sign releases (separation of duties)");
        }
        if !self.required_roles.iter().all(|r| self.eligible_roles.contains(r)) {
            return bad("every required role must be eligible to sign");
        }
        if self.eligible_roles.is_empty() {
            return bad("at least one role must be eligible to sign");
        }
        if self.expires_after_hours.is_some_and(|h| h == 0 || h > MAX_EXPIRY_HOURS) {
            return bad("expiry must be between 1 hour and 10 years (87600 hours)");
        }
        Ok(())
    }

    /// JSON form (stored with each request as the policy in force when it was opened).
    pub fn to_json(&self) -> Value {
        json!({
            "required_approvals": self.required_approvals,
            "required_roles": self.required_roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
            "eligible_roles": self.eligible_roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
            "expires_after_hours": self.expires_after_hours,
        })
    }

    /// Parses the JSON form.
    pub fn from_json(v: &Value) -> Result<Self> {
        let bad = || Error::new(ErrorCode::InvalidPolicy, "policy must have required_approvals, required_roles, eligible_roles, expires_after_hours");
        let roles = |k: &str| -> Result<Vec<Role>> {
            v.get(k).and_then(Value::as_array).ok_or_else(bad)?.iter().map(|r| Role::parse(r.as_str().unwrap_or(""))).collect()
        };
        let p = ApprovalPolicy {
            required_approvals: v.get("required_approvals").and_then(Value::as_u64).and_then(|n| u32::try_from(n).ok()).ok_or_else(bad)?,
            required_roles: roles("required_roles")?,
            eligible_roles: roles("eligible_roles")?,
            expires_after_hours: match v.get("expires_after_hours") {
                None | Some(Value::Null) => None,
                Some(x) => Some(x.as_u64().and_then(|n| u32::try_from(n).ok()).ok_or_else(bad)?),
            },
        };
        p.validate()?;
        Ok(p)
    }
}

/// Approval policies for every target stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySet {
    /// Into Staging.
    pub staging: ApprovalPolicy,
    /// Into Production (and rollback to an earlier version).
    pub production: ApprovalPolicy,
    /// Into Archived (retirement).
    pub archived: ApprovalPolicy,
}

impl Default for PolicySet {
    /// Production: one `ml_lead` and one `clinical_reviewer`; Staging and Archived: one
    /// `ml_lead`. No expiry.
    fn default() -> Self {
        let lead_only = ApprovalPolicy {
            required_approvals: 1,
            required_roles: vec![Role::MlLead],
            eligible_roles: vec![Role::MlLead],
            expires_after_hours: None,
        };
        PolicySet {
            staging: lead_only.clone(),
            production: ApprovalPolicy {
                required_approvals: 2,
                required_roles: vec![Role::MlLead, Role::ClinicalReviewer],
                eligible_roles: vec![Role::MlLead, Role::ClinicalReviewer],
                expires_after_hours: None,
            },
            archived: lead_only,
        }
    }
}

impl PolicySet {
    /// The policy for a target stage; Development is never a target.
    pub fn for_stage(&self, to: Stage) -> Result<&ApprovalPolicy> {
        match to {
            Stage::Staging => Ok(&self.staging),
            Stage::Production => Ok(&self.production),
            Stage::Archived => Ok(&self.archived),
            Stage::Development => Err(Error::new(ErrorCode::TransitionNotAllowed, "no version can be promoted back to development")),
        }
    }

    /// Replaces one stage's policy after validating it.
    pub fn set(&mut self, to: Stage, policy: ApprovalPolicy) -> Result<()> {
        policy.validate()?;
        match to {
            Stage::Staging => self.staging = policy,
            Stage::Production => self.production = policy,
            Stage::Archived => self.archived = policy,
            Stage::Development => return Err(Error::new(ErrorCode::InvalidPolicy, "development is not a promotion target")),
        }
        Ok(())
    }

    /// JSON form.
    pub fn to_json(&self) -> Value {
        json!({"staging": self.staging.to_json(), "production": self.production.to_json(), "archived": self.archived.to_json()})
    }

    /// Parses the JSON form.
    pub fn from_json(v: &Value) -> Result<Self> {
        let get = |k: &str| ApprovalPolicy::from_json(v.get(k).unwrap_or(&Value::Null));
        Ok(PolicySet { staging: get("staging")?, production: get("production")?, archived: get("archived")? })
    }
}

/// A request to move a model version into another stage.
#[derive(Debug, Clone, PartialEq)]
pub struct PromotionRequest {
    /// Request id (`req_…`).
    pub id: String,
    /// The version to move.
    pub model_version_id: String,
    /// `name@version` of that version (for display and audit).
    pub model_ref: String,
    /// Stage at request time.
    pub from_stage: Stage,
    /// Requested stage.
    pub to_stage: Stage,
    /// Who asked.
    pub requester: UserId,
    /// Why (required).
    pub justification: String,
    /// Status.
    pub status: RequestStatus,
    /// The version's content hash when the request was opened.
    pub content_hash: Sha256Digest,
    /// The policy in force when the request was opened; it governs the whole request.
    pub policy: ApprovalPolicy,
    /// When opened.
    pub created_at: Timestamp,
    /// When it expires, if the policy sets expiry.
    pub expires_at: Option<Timestamp>,
    /// When it left `pending`.
    pub decided_at: Option<Timestamp>,
    /// Why it left `pending` (rejection comment, withdrawal reason, superseding event).
    pub status_reason: Option<String>,
    /// The passing validation report the request rests on (Production, and Staging when the
    /// policy asks): approvers sign over it, and the move completes only while it is still
    /// the version's newest report.
    pub validation_report_id: Option<String>,
}

impl PromotionRequest {
    /// Whether a pending request's expiry time has passed.
    pub fn is_past_expiry(&self, now: Timestamp) -> bool {
        self.expires_at.is_some_and(|e| now >= e)
    }
}

/// A stored electronic signature on a promotion request.
#[derive(Debug, Clone, PartialEq)]
pub struct Signature {
    /// Signature id (`sig_…`).
    pub id: String,
    /// The request signed.
    pub request_id: String,
    /// The version the request concerns.
    pub model_version_id: String,
    /// Signer.
    pub signer_id: UserId,
    /// Printed name captured at signing; later renames do not change it.
    pub printed_name: String,
    /// Signer's role at signing.
    pub role: Role,
    /// Meaning of the signature.
    pub meaning: Meaning,
    /// Approve or reject.
    pub decision: Decision,
    /// Signer's comment.
    pub comment: String,
    /// The content hash the signer saw and signed.
    pub content_hash: Sha256Digest,
    /// Server UTC time of signing.
    pub signed_at: Timestamp,
    /// Which server key signed the manifestation.
    pub key_id: String,
    /// Ed25519 signature over [`Signature::payload`], hex.
    pub server_signature: String,
}

/// Record tag of the signed manifestation.
pub const SIGNATURE_RECORD: &str = "vigil.signature/1";

impl Signature {
    /// The canonical bytes the server key signs: every field but the signature itself.
    pub fn payload(&self) -> String {
        canonical::encode(&json!({
            "encoding": canonical::ENCODING,
            "record": SIGNATURE_RECORD,
            "id": self.id,
            "request_id": self.request_id,
            "model_version_id": self.model_version_id,
            "signer_id": self.signer_id.as_str(),
            "printed_name": self.printed_name,
            "role": self.role.as_str(),
            "meaning": self.meaning.as_str(),
            "decision": self.decision.as_str(),
            "comment": self.comment,
            "content_hash": self.content_hash.to_hex(),
            "signed_at": self.signed_at.to_rfc3339(),
            "key_id": self.key_id,
        }))
    }
}

/// The server's Ed25519 key that seals signature manifestations. It lives outside the
/// database (a file in the data directory or a deployment secret): someone who can edit the
/// database but not read the key cannot forge or transplant a signature.
pub struct ServerKey {
    key: ed25519_dalek::SigningKey,
    key_id: String,
}

impl std::fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ServerKey({})", self.key_id)
    }
}

impl ServerKey {
    /// A key from a 32-byte seed.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
        let key_id = Sha256Digest::of(key.verifying_key().as_bytes()).to_hex()[..16].to_owned();
        ServerKey { key, key_id }
    }

    /// A fresh random key.
    pub fn generate() -> Result<Self> {
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed).map_err(|_| Error::new(ErrorCode::SigningKey, "no system randomness for the signing key"))?;
        Ok(ServerKey::from_seed(seed))
    }

    /// The seed (to persist the key).
    pub fn seed(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// Short fingerprint of the public key.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The public key, hex (for offline verification of exports).
    pub fn public_key_hex(&self) -> String {
        hex::encode(self.key.verifying_key().as_bytes())
    }

    /// Seals a signature: sets `key_id` and `server_signature`.
    pub fn seal(&self, sig: &mut Signature) {
        sig.key_id = self.key_id.clone();
        sig.server_signature = hex::encode(self.key.sign(sig.payload().as_bytes()).to_bytes());
    }

    /// Verifies a stored signature's seal.
    pub fn verify(&self, sig: &Signature) -> Result<()> {
        let fail = |why: &str| Err(Error::new(ErrorCode::IntegrityViolation, format!("signature {} fails verification: {why}", sig.id)));
        if sig.key_id != self.key_id {
            return fail("sealed by an unknown key");
        }
        let mut raw = [0u8; 64];
        if hex::decode_to_slice(&sig.server_signature, &mut raw).is_err() {
            return fail("malformed seal");
        }
        let s = ed25519_dalek::Signature::from_bytes(&raw);
        match self.key.verifying_key().verify(sig.payload().as_bytes(), &s) {
            Ok(()) => Ok(()),
            Err(_) => fail("seal does not match the signed fields"),
        }
    }
}

/// Where a pending request stands under its policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tally {
    /// Not enough valid approvals yet.
    Pending {
        /// Distinct valid approvers so far.
        approvals: u32,
        /// Approvals the policy needs.
        required: u32,
        /// Required roles with no valid approval yet.
        missing_roles: Vec<Role>,
    },
    /// The policy is satisfied.
    Approved,
    /// A valid rejection ends the request.
    Rejected,
}

/// Counts the signatures that are *valid now* (sealed correctly and signed over the current
/// content hash) against the request's policy. Invalid signatures simply do not count.
pub fn tally(policy: &ApprovalPolicy, valid: &[&Signature]) -> Tally {
    if valid.iter().any(|s| s.decision == Decision::Reject) {
        return Tally::Rejected;
    }
    // One person counts once, even if the store somehow held two of their signatures.
    let mut approvers = BTreeSet::new();
    let mut roles = BTreeSet::new();
    for s in valid.iter().filter(|s| s.decision == Decision::Approve && policy.eligible_roles.contains(&s.role)) {
        if approvers.insert(s.signer_id.clone()) {
            roles.insert(s.role);
        }
    }
    let missing_roles: Vec<Role> = policy.required_roles.iter().copied().filter(|r| !roles.contains(r)).collect();
    let approvals = approvers.len() as u32;
    if approvals >= policy.required_approvals && missing_roles.is_empty() {
        Tally::Approved
    } else {
        Tally::Pending { approvals, required: policy.required_approvals, missing_roles }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sig(signer: &str, role: Role, decision: Decision) -> Signature {
        let mut s = Signature {
            id: format!("sig_{signer}"),
            request_id: "req_1".into(),
            model_version_id: "mv_1".into(),
            signer_id: UserId::parse(signer).unwrap(),
            printed_name: signer.to_uppercase(),
            role,
            meaning: Meaning::Approval,
            decision,
            comment: "ok".into(),
            content_hash: Sha256Digest::of(b"content"),
            signed_at: Timestamp::from_micros(1_700_000_000_000_000).unwrap(),
            key_id: String::new(),
            server_signature: String::new(),
        };
        ServerKey::from_seed([7; 32]).seal(&mut s);
        s
    }

    #[test]
    fn default_policies_are_valid() {
        let p = PolicySet::default();
        for s in [Stage::Staging, Stage::Production, Stage::Archived] {
            p.for_stage(s).unwrap().validate().unwrap();
        }
        assert_eq!(PolicySet::from_json(&p.to_json()).unwrap(), p);
    }

    #[test]
    fn production_needs_both_roles_and_two_people() {
        let p = PolicySet::default().production;
        let lead = sig("lead", Role::MlLead, Decision::Approve);
        let lead2 = sig("lead2", Role::MlLead, Decision::Approve);
        let clin = sig("clin", Role::ClinicalReviewer, Decision::Approve);
        assert!(matches!(tally(&p, &[&lead]), Tally::Pending { approvals: 1, .. }));
        assert!(matches!(tally(&p, &[&lead, &lead2]), Tally::Pending { ref missing_roles, .. } if missing_roles == &[Role::ClinicalReviewer]));
        assert!(matches!(tally(&p, &[&lead, &lead]), Tally::Pending { approvals: 1, .. }), "one person counts once");
        assert_eq!(tally(&p, &[&lead, &clin]), Tally::Approved);
        let rej = sig("clin", Role::ClinicalReviewer, Decision::Reject);
        assert_eq!(tally(&p, &[&lead, &rej]), Tally::Rejected);
    }

    #[test]
    fn seal_detects_edits_and_transplants() {
        let key = ServerKey::from_seed([7; 32]);
        let s = sig("lead", Role::MlLead, Decision::Approve);
        key.verify(&s).unwrap();
        let mut moved = s.clone();
        moved.request_id = "req_2".into();
        assert!(key.verify(&moved).is_err());
        let mut renamed = s.clone();
        renamed.printed_name = "Someone Else".into();
        assert!(key.verify(&renamed).is_err());
        assert!(ServerKey::from_seed([8; 32]).verify(&s).is_err());
    }

    #[test]
    fn inconsistent_policies_rejected() {
        let mut p = PolicySet::default().production;
        p.required_approvals = 1;
        assert!(p.validate().is_err());
        let mut p = PolicySet::default().production;
        p.eligible_roles.push(Role::Admin);
        assert!(p.validate().is_err());
        for hours in [0, MAX_EXPIRY_HOURS + 1, u32::MAX] {
            let p = ApprovalPolicy { expires_after_hours: Some(hours), ..PolicySet::default().production };
            assert!(p.validate().is_err(), "{hours}");
        }
    }
}
