//! The append-only, hash-chained audit trail: event shape, the `vigil.audit/1` chain hash, and
//! the verifier that names the first bad position.
//!
//! Event `n` stores `prev_hash` = hash of event `n-1` (32 zero bytes for the first) and
//! `hash` = SHA-256 over a length-prefixed encoding of its sequence number, `prev_hash` and
//! every stored column. The store also keeps a one-row *head* (last sequence number and hash),
//! updated in the same transaction as each append. Verification therefore detects an edited
//! event (hash mismatch), a deleted or inserted one (sequence gap or broken link), a reordered
//! pair (broken link) and a truncated tail (head mismatch).
//!
//! What a chain cannot detect on its own: someone with write access to the database who
//! rewrites *every* later event and the head consistently. Approvals are additionally sealed
//! with the server key (see `approval`), which lives outside the database.

use crate::canonical;
use crate::ids::Timestamp;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::fmt;

/// Domain tag at the start of every hashed event.
pub const AUDIT_RECORD: &[u8] = b"vigil.audit/1\0";
/// `prev_hash` of the first event.
pub const GENESIS: [u8; 32] = [0; 32];

/// Whether the audited attempt succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The change was made.
    Ok,
    /// The attempt was refused; `details.code` says why.
    Denied,
}

impl Outcome {
    /// Stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Denied => "denied",
        }
    }
}

/// An audit event before it is appended (no sequence number or hashes yet).
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    /// Server time.
    pub at: Timestamp,
    /// User id of the actor (or the id that was claimed, for failed authentication).
    pub actor: String,
    /// Dotted action name, e.g. `promotion.approve`.
    pub action: String,
    /// Ok or denied.
    pub outcome: Outcome,
    /// Kind of record acted on: `user`, `model`, `model_version`, `promotion_request`, `policy`.
    pub entity_type: String,
    /// Id of that record.
    pub entity_id: String,
    /// Model name, if the event concerns a model.
    pub model: Option<String>,
    /// Version string, if the event concerns a model version.
    pub version: Option<String>,
    /// JSON object with `old`, `new`, `reason`, `code`, … Never patient data.
    pub details: Value,
}

/// One stored event, borrowed from a row as raw bytes (the verifier's input: no allocation
/// and no UTF-8 validation per row; the hash is over bytes anyway).
#[derive(Debug, Clone, Copy)]
pub struct AuditRow<'a> {
    /// Position in the chain, from 1.
    pub seq: i64,
    /// Stored server time (RFC 3339).
    pub at: &'a [u8],
    /// Actor.
    pub actor: &'a [u8],
    /// Action.
    pub action: &'a [u8],
    /// `ok` or `denied`.
    pub outcome: &'a [u8],
    /// Entity type.
    pub entity_type: &'a [u8],
    /// Entity id.
    pub entity_id: &'a [u8],
    /// Model name or `None`.
    pub model: Option<&'a [u8]>,
    /// Version or `None`.
    pub version: Option<&'a [u8]>,
    /// Canonical JSON of the details.
    pub details: &'a [u8],
    /// Stored previous hash (hex).
    pub prev_hash: &'a [u8],
    /// Stored hash (hex).
    pub hash: &'a [u8],
}

fn put(h: &mut Sha256, field: Option<&[u8]>) {
    match field {
        None => h.update([0u8]),
        Some(s) => {
            h.update([1u8]);
            h.update((s.len() as u64).to_be_bytes());
            h.update(s);
        }
    }
}

/// The chain hash of one event.
#[allow(clippy::too_many_arguments)]
pub fn event_hash(seq: i64, prev: &[u8; 32], row: &AuditRow<'_>) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(AUDIT_RECORD);
    h.update(seq.to_be_bytes());
    h.update(prev);
    for f in [row.at, row.actor, row.action, row.outcome, row.entity_type, row.entity_id] {
        put(&mut h, Some(f));
    }
    put(&mut h, row.model);
    put(&mut h, row.version);
    put(&mut h, Some(row.details));
    h.finalize().into()
}

/// The stored columns of a new event, ready to hash and insert.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// Sequence number.
    pub seq: i64,
    /// Server time text.
    pub at: String,
    /// Actor.
    pub actor: String,
    /// Action.
    pub action: String,
    /// Outcome text.
    pub outcome: String,
    /// Entity type.
    pub entity_type: String,
    /// Entity id.
    pub entity_id: String,
    /// Model name.
    pub model: Option<String>,
    /// Version.
    pub version: Option<String>,
    /// Canonical details JSON.
    pub details: String,
    /// Previous hash, hex.
    pub prev_hash: String,
    /// This event's hash, hex.
    pub hash: String,
}

impl StoredEvent {
    /// Links `event` after the chain head (`seq`, `prev`).
    pub fn link(event: &AuditEvent, prev_seq: i64, prev: &[u8; 32]) -> (StoredEvent, [u8; 32]) {
        let seq = prev_seq + 1;
        let mut s = StoredEvent {
            seq,
            at: event.at.to_rfc3339(),
            actor: event.actor.clone(),
            action: event.action.clone(),
            outcome: event.outcome.as_str().to_owned(),
            entity_type: event.entity_type.clone(),
            entity_id: event.entity_id.clone(),
            model: event.model.clone(),
            version: event.version.clone(),
            details: canonical::encode(&event.details),
            prev_hash: hex::encode(prev),
            hash: String::new(),
        };
        let h = event_hash(seq, prev, &s.row());
        s.hash = hex::encode(h);
        (s, h)
    }

    /// Borrowed view for hashing and verification.
    pub fn row(&self) -> AuditRow<'_> {
        AuditRow {
            seq: self.seq,
            at: self.at.as_bytes(),
            actor: self.actor.as_bytes(),
            action: self.action.as_bytes(),
            outcome: self.outcome.as_bytes(),
            entity_type: self.entity_type.as_bytes(),
            entity_id: self.entity_id.as_bytes(),
            model: self.model.as_deref().map(str::as_bytes),
            version: self.version.as_deref().map(str::as_bytes),
            details: self.details.as_bytes(),
            prev_hash: self.prev_hash.as_bytes(),
            hash: self.hash.as_bytes(),
        }
    }
}

/// What is wrong at the first bad position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainProblem {
    /// The sequence number is not the next one: an event was deleted, inserted or moved.
    SequenceGap {
        /// Sequence number found at this position.
        found: i64,
    },
    /// `prev_hash` does not match the previous event's hash: inserted or reordered events.
    BrokenLink,
    /// The stored hash does not match the event's content: the event was edited.
    HashMismatch,
    /// No event at this position although later ones exist: it was deleted.
    Missing,
    /// The chain head records more (or other) events than the table holds: truncated tail.
    HeadMismatch {
        /// Sequence number the head records.
        head_seq: i64,
    },
}

impl fmt::Display for ChainProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChainProblem::SequenceGap { found } => write!(f, "sequence number {found} found here: an event was deleted, inserted or moved"),
            ChainProblem::Missing => f.write_str("no event at this position: it was deleted"),
            ChainProblem::BrokenLink => f.write_str("previous-hash link broken: an event was inserted, deleted or reordered"),
            ChainProblem::HashMismatch => f.write_str("event content does not match its hash: the event was edited"),
            ChainProblem::HeadMismatch { head_seq } => write!(f, "chain head records {head_seq} events: events at the end were deleted or the head was altered"),
        }
    }
}

/// The result of verifying a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    /// Events checked.
    pub events: u64,
    /// The first bad position (1-based) and what is wrong there, or `None` if intact.
    pub first_bad: Option<(u64, ChainProblem)>,
    /// Hash of the last good event, hex.
    pub head_hash: String,
}

impl ChainReport {
    /// Whether the chain is intact.
    pub fn ok(&self) -> bool {
        self.first_bad.is_none()
    }
}

/// Streaming verifier: feed rows in chain order with [`ChainVerifier::push`], then call
/// [`ChainVerifier::finish`] with the stored head.
#[derive(Debug)]
pub struct ChainVerifier {
    position: u64,
    prev: [u8; 32],
    /// `prev` as lowercase hex: stored hashes are compared as text, which is cheaper than
    /// decoding two hex strings per event (and anything but our own lowercase is tampering).
    prev_hex: [u8; 64],
    first_bad: Option<(u64, ChainProblem)>,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        ChainVerifier::resume(0, GENESIS)
    }
}

fn to_hex(bytes: &[u8; 32]) -> [u8; 64] {
    let mut out = [0u8; 64];
    // Both lengths are fixed, so encoding cannot fail.
    let _ = hex::encode_to_slice(bytes, &mut out);
    out
}

impl ChainVerifier {
    /// A verifier at the start of the chain.
    pub fn new() -> Self {
        ChainVerifier::default()
    }

    /// A verifier that resumes after `position` events whose last hash is `prev` (used to
    /// verify segments of a long chain in parallel).
    pub fn resume(position: u64, prev: [u8; 32]) -> Self {
        ChainVerifier { position, prev, prev_hex: to_hex(&prev), first_bad: None }
    }

    /// Whether a problem was found (further rows are ignored).
    pub fn failed(&self) -> bool {
        self.first_bad.is_some()
    }

    /// Checks the next row. Returns `false` once the chain is known to be broken.
    pub fn push(&mut self, row: &AuditRow<'_>) -> bool {
        if self.first_bad.is_some() {
            return false;
        }
        self.position += 1;
        let pos = self.position;
        if row.seq != pos as i64 {
            self.first_bad = Some((pos, ChainProblem::SequenceGap { found: row.seq }));
            return false;
        }
        if row.prev_hash != self.prev_hex {
            self.first_bad = Some((pos, ChainProblem::BrokenLink));
            return false;
        }
        let computed = event_hash(row.seq, &self.prev, row);
        let computed_hex = to_hex(&computed);
        if row.hash != computed_hex {
            self.first_bad = Some((pos, ChainProblem::HashMismatch));
            return false;
        }
        self.prev = computed;
        self.prev_hex = computed_hex;
        true
    }

    /// Finishes against the stored head (`None` if the store has no head row yet).
    pub fn finish(mut self, head: Option<(i64, &str)>) -> ChainReport {
        if self.first_bad.is_none() {
            let (head_seq, head_hash) = head.unwrap_or((0, ""));
            let matches = head_seq == self.position as i64
                && (head_seq == 0 || head_hash.eq_ignore_ascii_case(&hex::encode(self.prev)));
            if !matches {
                self.first_bad = Some((self.position + 1, ChainProblem::HeadMismatch { head_seq }));
            }
        }
        let head_hash = hex::encode(self.prev);
        ChainReport { events: self.position, first_bad: self.first_bad, head_hash }
    }

    /// Marks the chain broken if fewer than `position` events were accepted (used at the end of
    /// an inner segment of a parallel verification).
    pub fn expect_position(&mut self, position: u64) {
        if self.first_bad.is_none() && self.position < position {
            self.first_bad = Some((self.position + 1, ChainProblem::Missing));
        }
    }

    /// Events accepted so far.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Hash of the last accepted event.
    pub fn last_hash(&self) -> [u8; 32] {
        self.prev
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chain(n: usize) -> Vec<StoredEvent> {
        let mut out = Vec::new();
        let mut prev = GENESIS;
        for i in 0..n {
            let ev = AuditEvent {
                at: Timestamp::from_micros(1_700_000_000_000_000 + i as i64).unwrap(),
                actor: "alice".into(),
                action: "model_version.register".into(),
                outcome: Outcome::Ok,
                entity_type: "model_version".into(),
                entity_id: format!("mv_{i}"),
                model: Some("m".into()),
                version: Some(format!("1.0.{i}")),
                details: json!({"i": i}),
            };
            let (s, h) = StoredEvent::link(&ev, i as i64, &prev);
            prev = h;
            out.push(s);
        }
        out
    }

    fn verify(rows: &[StoredEvent]) -> ChainReport {
        let mut v = ChainVerifier::new();
        for r in rows {
            v.push(&r.row());
        }
        let head = chain(5).last().map(|e| (e.seq, e.hash.clone()));
        v.finish(head.as_ref().map(|(s, h)| (*s, h.as_str())))
    }

    #[test]
    fn intact_chain_verifies() {
        let r = verify(&chain(5));
        assert!(r.ok(), "{r:?}");
        assert_eq!(r.events, 5);
    }

    #[test]
    fn detects_edit_delete_insert_reorder_truncate() {
        let mut edited = chain(5);
        edited[2].actor = "mallory".into();
        assert_eq!(verify(&edited).first_bad, Some((3, ChainProblem::HashMismatch)));

        let mut deleted = chain(5);
        deleted.remove(1);
        assert_eq!(verify(&deleted).first_bad, Some((2, ChainProblem::SequenceGap { found: 3 })));

        let mut reordered = chain(5);
        reordered.swap(1, 3);
        assert_eq!(verify(&reordered).first_bad.map(|b| b.0), Some(2));

        let mut relinked = chain(5);
        // Renumber after swapping so sequence numbers look right: the links still break.
        relinked.swap(1, 2);
        relinked[1].seq = 2;
        relinked[2].seq = 3;
        assert_eq!(verify(&relinked).first_bad, Some((2, ChainProblem::BrokenLink)));

        let truncated = chain(4);
        assert_eq!(verify(&truncated).first_bad, Some((5, ChainProblem::HeadMismatch { head_seq: 5 })));
    }
}
