//! Users, roles, passwords and the role-based permission table.
//!
//! Passwords are stored as Argon2id PHC strings. An account locks after
//! [`MAX_FAILED_ATTEMPTS`] consecutive failed authentications; only an administrator can unlock
//! it. User ids are never reused: users are disabled, never deleted (Part 11 §11.100(a)).
//! Passwords live in [`Password`], whose `Debug` is redacted.

use crate::error::{Error, ErrorCode, Result};
use crate::ids::{Timestamp, UserId};
use crate::model::string_enum;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use std::fmt;

string_enum!(
    /// A user's role. One role per user keeps separation of duties legible.
    Role, InvalidRole, "role" {
        DataScientist = "data_scientist",
        MlLead = "ml_lead",
        ClinicalReviewer = "clinical_reviewer",
        ComplianceOfficer = "compliance_officer",
        Admin = "admin",
    }
);

/// Consecutive failed authentications that lock an account.
pub const MAX_FAILED_ATTEMPTS: u32 = 5;
/// Minimum password length.
pub const MIN_PASSWORD_CHARS: usize = 8;

/// A password in memory. Never printed.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    /// Wraps a password.
    pub fn new(s: impl Into<String>) -> Self {
        Password(s.into())
    }

    /// The secret; call only to hash or verify.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

/// Hashes a new password with Argon2id (default parameters: 19 MiB, 2 passes, 1 lane).
pub fn hash_password(pw: &Password) -> Result<String> {
    if pw.expose().chars().count() < MIN_PASSWORD_CHARS {
        return Err(Error::new(ErrorCode::WeakPassword, format!("password must be at least {MIN_PASSWORD_CHARS} characters")));
    }
    let mut salt = [0u8; 16];
    getrandom::getrandom(&mut salt).map_err(|_| Error::storage("no system randomness for the password salt"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|_| Error::storage("could not encode salt"))?;
    Argon2::default()
        .hash_password(pw.expose().as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|_| Error::storage("password hashing failed"))
}

/// Checks a password against a stored PHC string.
pub fn verify_password(pw: &Password, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default().verify_password(pw.expose().as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

/// Account status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserStatus {
    /// Can sign in and act.
    Active,
    /// Disabled by an administrator: cannot sign in or sign.
    Disabled,
}

impl UserStatus {
    /// Stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            UserStatus::Active => "active",
            UserStatus::Disabled => "disabled",
        }
    }

    /// Parses the stable name.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "active" => Ok(UserStatus::Active),
            "disabled" => Ok(UserStatus::Disabled),
            _ => Err(Error::new(ErrorCode::IntegrityViolation, "stored user status is not recognised")),
        }
    }
}

/// A user account as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    /// Login id, unique forever.
    pub id: UserId,
    /// The printed name captured on every signature (Part 11 §11.50).
    pub printed_name: String,
    /// Role.
    pub role: Role,
    /// Argon2id PHC string.
    pub password_hash: String,
    /// Active or disabled.
    pub status: UserStatus,
    /// Consecutive failed authentications.
    pub failed_attempts: u32,
    /// Locked after too many failures.
    pub locked: bool,
    /// When the account was created.
    pub created_at: Timestamp,
}

impl User {
    /// Whether the account may authenticate at all.
    pub fn check_usable(&self) -> Result<()> {
        if self.status == UserStatus::Disabled {
            return Err(Error::new(ErrorCode::AccountDisabled, format!("account '{}' is disabled", self.id)));
        }
        if self.locked {
            return Err(Error::new(
                ErrorCode::AccountLocked,
                format!("account '{}' is locked after {MAX_FAILED_ATTEMPTS} failed authentications; an administrator must unlock it", self.id),
            ));
        }
        Ok(())
    }
}

/// An authenticated user, as the use cases see the caller. Its fields are private: only
/// [`crate::registry::Registry::authenticate`] (after a password check) constructs one, so
/// holding a `Principal` proves that check happened. The role is re-read from the store in
/// every transaction that acts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    user_id: UserId,
    role: Role,
    printed_name: String,
}

impl Principal {
    pub(crate) fn authenticated(user_id: UserId, role: Role, printed_name: String) -> Self {
        Principal { user_id, role, printed_name }
    }

    /// The user's id.
    pub fn user_id(&self) -> &UserId {
        &self.user_id
    }

    /// The user's role at authentication time.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The printed name at authentication time.
    pub fn printed_name(&self) -> &str {
        &self.printed_name
    }
}

/// Every action the permission table governs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Create users, disable, unlock, change policies.
    ManageUsers,
    /// Change approval policies.
    ManagePolicy,
    /// Register a model or version, edit its content.
    RegisterModel,
    /// Open a promotion request.
    RequestPromotion,
    /// Approve or reject a promotion request (policy roles decide further).
    SignPromotion,
    /// Read and export the audit trail.
    ReadAudit,
    /// Set drift baselines and configuration, add production samples and labels.
    Monitor,
    /// Run a drift check (stores a report).
    CheckDrift,
    /// Create experiments and runs, log params, metrics, tags and artifacts.
    Track,
    /// Change what the gateway serves for a model (deployments: A/B, canary, shadow).
    Deploy,
}

impl Action {
    /// Stable name used in audit events.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::ManageUsers => "manage_users",
            Action::ManagePolicy => "manage_policy",
            Action::RegisterModel => "register_model",
            Action::RequestPromotion => "request_promotion",
            Action::SignPromotion => "sign_promotion",
            Action::ReadAudit => "read_audit",
            Action::Monitor => "monitor",
            Action::CheckDrift => "check_drift",
            Action::Track => "track",
            Action::Deploy => "deploy",
        }
    }

    /// The roles permitted to perform the action. Administrators manage accounts but never
    /// build, request or approve releases (separation of duties, P11-SOD-3).
    pub fn allowed_roles(self) -> &'static [Role] {
        use Role::*;
        match self {
            Action::ManageUsers | Action::ManagePolicy => &[Admin],
            Action::RegisterModel => &[DataScientist, MlLead],
            Action::RequestPromotion => &[DataScientist, MlLead],
            Action::SignPromotion => &[MlLead, ClinicalReviewer, ComplianceOfficer],
            Action::ReadAudit => &[DataScientist, MlLead, ClinicalReviewer, ComplianceOfficer, Admin],
            Action::Monitor => &[DataScientist, MlLead],
            Action::CheckDrift => &[DataScientist, MlLead, ClinicalReviewer, ComplianceOfficer],
            Action::Track => &[DataScientist, MlLead],
            Action::Deploy => &[MlLead],
        }
    }
}

/// Checks the permission table.
pub fn authorize(role: Role, action: Action) -> Result<()> {
    if action.allowed_roles().contains(&role) {
        Ok(())
    } else {
        Err(Error::new(ErrorCode::RoleNotPermitted, format!("role {role} may not {}", action.as_str().replace('_', " "))))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn password_hash_round_trip_and_redaction() {
        let pw = Password::new("correct horse");
        let h = hash_password(&pw).unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password(&pw, &h));
        assert!(!verify_password(&Password::new("wrong horse"), &h));
        assert!(!verify_password(&pw, "garbage"));
        assert_eq!(format!("{pw:?}"), "Password(***)");
        assert_eq!(hash_password(&Password::new("short")).unwrap_err().code(), ErrorCode::WeakPassword);
    }

    #[test]
    fn admins_never_release() {
        for a in [Action::RegisterModel, Action::RequestPromotion, Action::SignPromotion] {
            assert!(authorize(Role::Admin, a).is_err());
        }
    }
}
