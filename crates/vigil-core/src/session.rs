//! Bearer tokens: sessions from a password login and long-lived API tokens for scripts and
//! the MLflow client (`MLFLOW_TRACKING_TOKEN`).
//!
//! A token is `vgt_` followed by 64 hex digits of system randomness. Only its SHA-256 is
//! stored, so a database dump does not hand out access; the secret is shown once, when it
//! is created. Tokens can expire and be revoked; every creation, revocation and refused
//! token is audited. A token authenticates a request, never a signature: signing still
//! requires the password in that request (Part 11 re-authentication, in `registry`).

use crate::auth::{Action, Password, Principal};
use crate::error::{Error, ErrorCode, Result};
use crate::ids::{Sha256Digest, Timestamp, UserId};
use crate::registry::{Attempt, Registry};
use serde_json::json;

/// How long a login session lasts.
pub const SESSION_HOURS: u32 = 12;
/// The longest expiry an API token may be given (one year).
pub const MAX_TOKEN_DAYS: u32 = 366;
/// The expiry of an API token created without one.
pub const DEFAULT_TOKEN_DAYS: u32 = 90;

/// Session (from a login) or API token (created explicitly).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// From `POST /api/v1/auth/login`, expires after [`SESSION_HOURS`].
    Session,
    /// Created by the user for a script or client.
    Api,
}

impl TokenKind {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Session => "session",
            TokenKind::Api => "api",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "session" => Ok(TokenKind::Session),
            "api" => Ok(TokenKind::Api),
            _ => Err(Error::storage("unknown token kind in the store")),
        }
    }
}

/// A token's record (never its secret).
#[derive(Debug, Clone, PartialEq)]
pub struct ApiToken {
    /// Id (`tok_…`), used to list and revoke.
    pub id: String,
    /// Owner.
    pub user_id: UserId,
    /// Label chosen by the owner.
    pub name: String,
    /// Session or API token.
    pub kind: TokenKind,
    /// Created.
    pub created_at: Timestamp,
    /// Expires (none: until revoked).
    pub expires_at: Option<Timestamp>,
    /// Revoked.
    pub revoked_at: Option<Timestamp>,
}

impl ApiToken {
    /// Whether the token can authenticate at `now`.
    pub fn is_live(&self, now: Timestamp) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| now < e)
    }
}

/// The stored form of a secret.
pub fn token_hash(secret: &str) -> String {
    Sha256Digest::of(secret.as_bytes()).to_hex()
}

fn new_secret() -> Result<String> {
    let mut b = [0u8; 32];
    getrandom::getrandom(&mut b).map_err(|_| Error::storage("no system randomness for the token"))?;
    Ok(format!("vgt_{}", hex::encode(b)))
}

fn looks_like_token(s: &str) -> bool {
    s.len() == 68 && s.starts_with("vgt_") && s[4..].bytes().all(|b| b.is_ascii_hexdigit())
}

impl Registry {
    fn issue(&self, user: &UserId, name: &str, kind: TokenKind, expires_at: Option<Timestamp>, actor: &str) -> Result<(ApiToken, String)> {
        let secret = new_secret()?;
        let token = ApiToken {
            id: self.ids.new_id("tok"),
            user_id: user.clone(),
            name: name.to_owned(),
            kind,
            created_at: self.clock.now(),
            expires_at,
            revoked_at: None,
        };
        let hash = token_hash(&secret);
        self.write(|tx| {
            tx.insert_token(&token, &hash)?;
            tx.append_audit(self.event(
                actor,
                "token.create",
                "token",
                &token.id,
                json!({"new": {"user": token.user_id.as_str(), "name": token.name, "kind": kind.as_str(), "expires_at": token.expires_at.map(|t| t.to_rfc3339())}}),
            ))
        })?;
        Ok((token, secret))
    }

    /// Checks a password and opens a session: the returned secret authenticates requests
    /// for [`SESSION_HOURS`]. Failures count towards the lockout as any password check.
    pub fn login(&self, id: &UserId, password: &Password) -> Result<(Principal, ApiToken, String)> {
        let p = self.authenticate(id, password)?;
        let expires = self.clock.now().plus_hours(SESSION_HOURS);
        let (t, s) = self.issue(p.user_id(), "login session", TokenKind::Session, expires, id.as_str())?;
        Ok((p, t, s))
    }

    /// Creates an API token for the actor, expiring after `days` (default
    /// [`DEFAULT_TOKEN_DAYS`], at most [`MAX_TOKEN_DAYS`]: every token expires). Refusals are
    /// audited.
    pub fn create_token(&self, actor: &Principal, name: &str, days: Option<u32>) -> Result<(ApiToken, String)> {
        let attempt = Attempt { actor: actor.user_id().as_str(), action: "token.create", entity_type: "token", entity_id: "", model: None, version: None };
        let prepared = crate::ids::required_text("token name", name, 200).and_then(|name| {
            let d = days.unwrap_or(DEFAULT_TOKEN_DAYS);
            if d == 0 || d > MAX_TOKEN_DAYS {
                return Err(Error::new(ErrorCode::InvalidText, format!("token expiry must be 1 to {MAX_TOKEN_DAYS} days")));
            }
            let expires = self.clock.now().plus_hours(d * 24).ok_or_else(|| Error::new(ErrorCode::InvalidText, "expiry out of range"))?;
            Ok((name, expires))
        });
        let (name, expires) = match prepared {
            Ok(v) => v,
            Err(e) => {
                self.audit_denial(&attempt, &e)?;
                return Err(e);
            }
        };
        let secret = new_secret()?;
        let token = ApiToken {
            id: self.ids.new_id("tok"),
            user_id: actor.user_id().clone(),
            name,
            kind: TokenKind::Api,
            created_at: self.clock.now(),
            expires_at: Some(expires),
            revoked_at: None,
        };
        let hash = token_hash(&secret);
        self.governed(attempt, |tx| {
            // The account must still be usable (not disabled or locked since it logged in).
            let u = tx.get_user(actor.user_id(), false)?.ok_or_else(|| Error::new(ErrorCode::AuthenticationFailed, "unknown user"))?;
            u.check_usable()?;
            tx.insert_token(&token, &hash)?;
            tx.append_audit(self.event(
                actor.user_id().as_str(),
                "token.create",
                "token",
                &token.id,
                json!({"new": {"user": token.user_id.as_str(), "name": token.name, "kind": "api", "expires_at": token.expires_at.map(|t| t.to_rfc3339())}}),
            ))
        })?;
        Ok((token, secret))
    }

    /// Authenticates a bearer token. Unknown, expired and revoked tokens, and tokens of
    /// disabled or locked users, are refused and audited (the token itself is not recorded).
    pub fn authenticate_token(&self, secret: &str) -> Result<Principal> {
        // The audit names the token by id when it exists; no part of a secret is recorded.
        let refuse = |why: &str, token_id: &str| -> Result<Principal> {
            let e = Error::new(ErrorCode::AuthenticationFailed, "invalid, expired or revoked token");
            self.audit_denial(&Attempt { actor: "unknown", action: "auth.token", entity_type: "token", entity_id: token_id, model: None, version: None }, &Error::new(ErrorCode::AuthenticationFailed, why))?;
            Err(e)
        };
        if !looks_like_token(secret) {
            return refuse("malformed token", "malformed");
        }
        let now = self.clock.now();
        let found = self.read(|tx| {
            let Some(t) = tx.token_by_hash(&token_hash(secret))? else { return Ok(None) };
            let u = tx.get_user(&t.user_id, false)?;
            Ok(Some((t, u)))
        })?;
        match found {
            None => refuse("unknown token", "unknown"),
            Some((t, _)) if !t.is_live(now) => refuse("expired or revoked token", &t.id),
            Some((t, None)) => refuse("token of an unknown user", &t.id),
            Some((t, Some(u))) => match u.check_usable() {
                Err(_) => refuse("token of a disabled or locked user", &t.id),
                Ok(()) => Ok(Principal::authenticated(u.id, u.role, u.printed_name)),
            },
        }
    }

    /// The actor's tokens (administrators: everyone's), newest first.
    pub fn list_tokens(&self, actor: &Principal) -> Result<Vec<ApiToken>> {
        let all = crate::auth::authorize(actor.role(), Action::ManageUsers).is_ok();
        self.read(|tx| tx.list_tokens(if all { None } else { Some(actor.user_id()) }))
    }

    /// Revokes a token: one's own, or anyone's for an administrator. Logging out is revoking
    /// the session's token.
    pub fn revoke_token(&self, actor: &Principal, token_id: &str) -> Result<ApiToken> {
        let attempt = Attempt { actor: actor.user_id().as_str(), action: "token.revoke", entity_type: "token", entity_id: token_id, model: None, version: None };
        let now = self.clock.now();
        self.governed(attempt, |tx| {
            let mut t = tx.get_token(token_id)?.ok_or_else(|| Error::new(ErrorCode::TokenNotFound, "no token with that id"))?;
            let is_admin = Self::acting_user(tx, actor, Action::ManageUsers).is_ok();
            if &t.user_id != actor.user_id() && !is_admin {
                return Err(Error::new(ErrorCode::TokenNotFound, "no token with that id"));
            }
            if t.revoked_at.is_none() {
                t.revoked_at = Some(now);
                tx.revoke_token(&t.id, now)?;
                tx.append_audit(self.event(actor.user_id().as_str(), "token.revoke", "token", &t.id, json!({"user": t.user_id.as_str()})))?;
            }
            Ok(t)
        })
    }

    /// Revokes the session or token that `secret` is (logout).
    pub fn logout(&self, actor: &Principal, secret: &str) -> Result<()> {
        let id = self.read(|tx| tx.token_by_hash(&token_hash(secret)))?.map(|t| t.id);
        match id {
            Some(id) => self.revoke_token(actor, &id).map(|_| ()),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn secrets_have_a_recognisable_shape_and_are_stored_hashed() {
        let s = new_secret().unwrap_or_default();
        assert!(looks_like_token(&s));
        assert_ne!(token_hash(&s), s);
        assert_eq!(token_hash(&s).len(), 64);
        assert!(!looks_like_token("vgt_xyz"));
    }
}
