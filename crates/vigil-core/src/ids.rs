//! Validated identifiers, timestamps, and the injected clock and id generator.
//!
//! Parse, don't validate: a [`ModelName`], [`UserId`] or [`Sha256Digest`] is valid because it
//! exists. Time and record ids come from the [`Clock`] and [`IdGenerator`] traits so that tests
//! can fix them; production code uses [`SystemClock`] and [`UuidV7Ids`].

use crate::error::{Error, ErrorCode, Result};
use chrono::{DateTime, SecondsFormat, Utc};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// A point in time, always UTC. Stored and hashed as RFC 3339 with microseconds and `Z`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(DateTime<Utc>);

impl Timestamp {
    /// Wraps a chrono time, truncated to microseconds so that it round-trips through storage.
    pub fn from_datetime(t: DateTime<Utc>) -> Self {
        let micros = t.timestamp_micros();
        Timestamp(DateTime::from_timestamp_micros(micros).unwrap_or(t))
    }

    /// Builds a timestamp from microseconds since the Unix epoch.
    pub fn from_micros(micros: i64) -> Option<Self> {
        DateTime::from_timestamp_micros(micros).map(Timestamp)
    }

    /// Microseconds since the Unix epoch.
    pub fn micros(&self) -> i64 {
        self.0.timestamp_micros()
    }

    /// The canonical text form, e.g. `2026-11-28T18:09:42.123456Z`.
    pub fn to_rfc3339(&self) -> String {
        self.0.to_rfc3339_opts(SecondsFormat::Micros, true)
    }

    /// Parses any RFC 3339 time and converts it to UTC.
    pub fn parse(s: &str) -> Result<Self> {
        DateTime::parse_from_rfc3339(s)
            .map(|t| Timestamp::from_datetime(t.with_timezone(&Utc)))
            .map_err(|_| Error::new(ErrorCode::InvalidFilter, "time must be RFC 3339, e.g. 2026-01-31T00:00:00Z"))
    }

    /// This time plus a number of hours, or `None` past the representable range.
    pub fn plus_hours(&self, hours: u32) -> Option<Self> {
        self.0.checked_add_signed(chrono::Duration::hours(i64::from(hours))).map(Timestamp)
    }

    /// The chrono value.
    pub fn as_datetime(&self) -> DateTime<Utc> {
        self.0
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Timestamp::parse(&s).map_err(|_| serde::de::Error::custom("time must be RFC 3339"))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

/// Source of the current time; injected so tests are deterministic.
pub trait Clock: Send + Sync {
    /// The current server time.
    fn now(&self) -> Timestamp;
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_datetime(Utc::now())
    }
}

/// A clock for tests: starts at a fixed time and only moves when told to.
#[derive(Debug)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    /// Starts at the given number of microseconds since the epoch.
    pub fn new(start: Timestamp) -> Self {
        ManualClock(AtomicU64::new(start.micros() as u64))
    }

    /// Moves the clock forward.
    pub fn advance_hours(&self, hours: u64) {
        self.0.fetch_add(hours * 3_600_000_000, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        // Each reading advances one microsecond so that events stay strictly ordered in time.
        let v = self.0.fetch_add(1, Ordering::SeqCst);
        Timestamp::from_micros(v as i64).unwrap_or_else(|| Timestamp::from_datetime(Utc::now()))
    }
}

/// Source of new record ids; injected so tests are deterministic.
pub trait IdGenerator: Send + Sync {
    /// A new globally unique id with the given short prefix (e.g. `req`).
    fn new_id(&self, prefix: &str) -> String;
}

/// Time-ordered UUIDv7 ids, e.g. `req_0193f1c2-…`.
#[derive(Debug, Default, Clone, Copy)]
pub struct UuidV7Ids;

impl IdGenerator for UuidV7Ids {
    fn new_id(&self, prefix: &str) -> String {
        format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
    }
}

/// Sequential ids for tests: `req_000001`, `mv_000002`, …
#[derive(Debug, Default)]
pub struct SequentialIds(AtomicU64);

impl IdGenerator for SequentialIds {
    fn new_id(&self, prefix: &str) -> String {
        let n = self.0.fetch_add(1, Ordering::SeqCst) + 1;
        format!("{prefix}_{n:06}")
    }
}

fn check_chars(s: &str, allowed: impl Fn(char) -> bool) -> bool {
    s.chars().all(allowed)
}

/// A registered model's unique name: lowercase letters, digits, `-`, `_`, `.`; 1–128 chars.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ModelName(String);

impl ModelName {
    /// Parses and validates a model name.
    pub fn parse(s: &str) -> Result<Self> {
        let ok = !s.is_empty()
            && s.len() <= 128
            && check_chars(s, |c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'));
        if ok {
            Ok(ModelName(s.to_owned()))
        } else {
            Err(Error::new(
                ErrorCode::InvalidModelName,
                "model name must be 1-128 characters of lowercase letters, digits, '-', '_' or '.'",
            ))
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ModelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A user's login id: 1–64 chars of letters, digits, `-`, `_`, `.`, `@`. Never reused.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UserId(String);

impl UserId {
    /// Parses and validates a user id.
    pub fn parse(s: &str) -> Result<Self> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && check_chars(s, |c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'));
        if ok {
            Ok(UserId(s.to_owned()))
        } else {
            Err(Error::new(
                ErrorCode::InvalidUserId,
                "user id must be 1-64 characters of letters, digits, '-', '_', '.' or '@'",
            ))
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A SHA-256 digest, stored as 64 lowercase hex characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sha256Digest([u8; 32]);

impl Sha256Digest {
    /// Parses 64 hex characters, optionally prefixed with `sha256:`.
    pub fn parse(s: &str) -> Result<Self> {
        let hexpart = s.strip_prefix("sha256:").unwrap_or(s);
        let mut out = [0u8; 32];
        if hexpart.len() != 64 || hex::decode_to_slice(hexpart, &mut out).is_err() {
            return Err(Error::new(
                ErrorCode::InvalidDigest,
                "sha-256 digest must be 64 hexadecimal characters (optionally prefixed 'sha256:')",
            ));
        }
        Ok(Sha256Digest(out))
    }

    /// Wraps raw digest bytes.
    pub fn from_bytes(b: [u8; 32]) -> Self {
        Sha256Digest(b)
    }

    /// Digest of the given bytes.
    pub fn of(data: &[u8]) -> Self {
        use sha2::{Digest, Sha256};
        Sha256Digest(Sha256::digest(data).into())
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hex, no prefix.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// A submitted field *name* made safe to quote in an error message: shown in quotes when it
/// looks like an identifier (letters, digits, `_ . - / :`, at most 64 characters), otherwise
/// replaced, because a malformed key could be a value pasted in the wrong place.
pub fn quote_key(key: &str) -> String {
    let safe = !key.is_empty()
        && key.len() <= 64
        && key.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '/' | ':'));
    if safe { format!("'{key}'") } else { "(name not shown: not an identifier)".to_owned() }
}

/// Checks a required free-text field: non-blank, at most `max` characters.
pub fn required_text(field: &str, value: &str, max: usize) -> Result<String> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(Error::new(ErrorCode::InvalidText, format!("{field} is required")));
    }
    if trimmed.chars().count() > max {
        return Err(Error::new(ErrorCode::InvalidText, format!("{field} must be at most {max} characters")));
    }
    Ok(trimmed.to_owned())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn model_names() {
        for ok in ["a", "diabetes-risk-classifier", "x.y_z-1", &"a".repeat(128)] {
            assert!(ModelName::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Upper", "has space", "slash/x", &"a".repeat(129), "é"] {
            assert_eq!(ModelName::parse(bad).unwrap_err().code(), ErrorCode::InvalidModelName, "{bad}");
        }
    }

    #[test]
    fn keys_are_quoted_only_when_they_look_like_identifiers() {
        assert_eq!(quote_key("auc_roc"), "'auc_roc'");
        assert!(!quote_key("John Smith 1962-04-01").contains("Smith"));
        assert!(!quote_key(&"a".repeat(65)).contains("aaaa"));
    }

    #[test]
    fn digests() {
        let h = "ab".repeat(32);
        assert_eq!(Sha256Digest::parse(&h).unwrap().to_hex(), h);
        assert_eq!(Sha256Digest::parse(&format!("sha256:{h}")).unwrap().to_hex(), h);
        assert_eq!(Sha256Digest::parse(&h.to_uppercase()).unwrap().to_hex(), h);
        for bad in ["", "abc", &"zz".repeat(32), &"ab".repeat(33)] {
            assert!(Sha256Digest::parse(bad).is_err());
        }
    }

    #[test]
    fn timestamps_round_trip() {
        let t = Timestamp::parse("2026-11-28T18:09:42.123456789+01:00").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-28T17:09:42.123456Z");
        assert_eq!(Timestamp::from_micros(t.micros()), Some(t));
    }
}
