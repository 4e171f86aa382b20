//! The one error type of the domain and its catalogue of stable codes.
//!
//! Every failure a caller can see carries an [`ErrorCode`]: a stable snake_case string that
//! scripts, the HTTP API (later) and the Python package match on, plus a [`ErrorKind`] that
//! says *whose* problem it is (the caller's input, a missing record, a refused governance
//! action, or our own failure). Messages are lowercase, name the field or record at fault and
//! never contain submitted values that could be patient data.

use std::fmt;

/// Whose problem an error is; the HTTP layer maps this to a status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The request itself is malformed (bad name, bad semver, bad manifest).
    InvalidInput,
    /// Who is asking could not be established (unknown user, wrong password, locked account).
    Unauthenticated,
    /// The caller is known but the rules refuse the action (role, separation of duties, stage).
    Denied,
    /// A referenced record does not exist.
    NotFound,
    /// The record exists but its state conflicts with the action (duplicate, not pending).
    Conflict,
    /// Our failure: storage unavailable, corrupt database, broken invariant.
    Internal,
}

macro_rules! codes {
    ($( $(#[$doc:meta])* $variant:ident = $code:literal => $kind:ident, )*) => {
        /// The catalogue of stable error codes. Never rename a code: add a new one.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $( $(#[$doc])* $variant, )*
        }

        impl ErrorCode {
            /// Every code, in catalogue order (used to render the catalogue and to test it).
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The stable snake_case identifier.
            pub fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $code,)* }
            }

            /// Whose problem this code describes.
            pub fn kind(self) -> ErrorKind {
                match self { $(ErrorCode::$variant => ErrorKind::$kind,)* }
            }
        }
    };
}

codes! {
    /// A model name breaks the naming rule.
    InvalidModelName = "invalid_model_name" => InvalidInput,
    /// A version string is not SemVer 2.0.0.
    InvalidVersion = "invalid_version" => InvalidInput,
    /// A SHA-256 digest is not 64 hex characters.
    InvalidDigest = "invalid_digest" => InvalidInput,
    /// A user id breaks the naming rule.
    InvalidUserId = "invalid_user_id" => InvalidInput,
    /// An unknown role name.
    InvalidRole = "invalid_role" => InvalidInput,
    /// An unknown stage name.
    InvalidStage = "invalid_stage" => InvalidInput,
    /// An unknown model type.
    InvalidModelType = "invalid_model_type" => InvalidInput,
    /// An unknown signature meaning, or one not allowed for the action.
    InvalidMeaning = "invalid_meaning" => InvalidInput,
    /// A metric name or value is not acceptable (non-finite, bad name).
    InvalidMetric = "invalid_metric" => InvalidInput,
    /// A model card field is unknown or malformed.
    InvalidModelCard = "invalid_model_card" => InvalidInput,
    /// A manifest file is malformed, misses a field or has a wrongly typed one.
    InvalidManifest = "invalid_manifest" => InvalidInput,
    /// A required free-text field (justification, printed name, reason) is empty or too long.
    InvalidText = "invalid_text" => InvalidInput,
    /// An approval policy is inconsistent (e.g. fewer approvals than required roles).
    InvalidPolicy = "invalid_policy" => InvalidInput,
    /// A password does not meet the minimum length.
    WeakPassword = "weak_password" => InvalidInput,
    /// An audit query filter is malformed.
    InvalidFilter = "invalid_filter" => InvalidInput,
    /// A metric, param or tag key is empty, too long or has characters or path segments
    /// that are not allowed.
    InvalidKey = "invalid_key" => InvalidInput,
    /// A parameter was logged again with a different value (params are immutable).
    ParamImmutable = "param_immutable" => InvalidInput,
    /// A log batch exceeds the per-request limits (1,000 metrics, 100 params, 100 tags).
    BatchTooLarge = "batch_too_large" => InvalidInput,
    /// The run or experiment is deleted; restore it first.
    RunNotActive = "run_not_active" => InvalidInput,
    /// An artifact path is absolute, contains `..` or is otherwise unusable.
    InvalidPath = "invalid_path" => InvalidInput,
    /// The request body is not valid JSON or has fields of the wrong type.
    InvalidRequest = "invalid_request" => InvalidInput,
    /// An alias name is empty, too long, or reserved (`latest`, `v<digits>`).
    InvalidAlias = "invalid_alias" => InvalidInput,
    /// The model has no alias of that name (MLflow answers this with a 400, not a 404).
    AliasNotFound = "alias_not_found" => InvalidInput,
    /// A model version's source is not a location Vigil can vouch for.
    InvalidSource = "invalid_source" => InvalidInput,
    /// A validation holdout is unusable (empty, one label class, scores outside [0, 1], …).
    InvalidValidationData = "invalid_validation_data" => InvalidInput,

    /// Wrong user id or password.
    AuthenticationFailed = "authentication_failed" => Unauthenticated,
    /// The account is locked after repeated failed authentications.
    AccountLocked = "account_locked" => Unauthenticated,
    /// The account is disabled.
    AccountDisabled = "account_disabled" => Unauthenticated,

    /// The actor's role does not permit the action.
    RoleNotPermitted = "role_not_permitted" => Denied,
    /// The requester tried to approve or reject their own request.
    SelfApproval = "self_approval" => Denied,
    /// The stage transition is not in the allowed-transitions table.
    TransitionNotAllowed = "transition_not_allowed" => Denied,
    /// The request has expired.
    RequestExpired = "request_expired" => Denied,
    /// The version's signed content no longer matches what was requested or signed.
    ContentChanged = "content_changed" => Denied,
    /// The version's content cannot change in its current stage.
    VersionImmutable = "version_immutable" => Denied,
    /// A stage change asked for outside the promotion workflow: stages move only when a
    /// promotion request is approved.
    PromotionRequired = "promotion_required" => Denied,
    /// A guarded alias (`production`, `champion`) may only name the version approved into
    /// Production.
    GuardedAlias = "guarded_alias" => Denied,
    /// The logged model is finalised; its artifacts can no longer change.
    LoggedModelFinalized = "logged_model_finalized" => Denied,
    /// Governed records (models, versions, their history) are retained, never deleted;
    /// retire a version by promoting it to Archived.
    RecordRetained = "record_retained" => Denied,
    /// A model version was registered from this artifact location; its files are frozen.
    ArtifactsFrozen = "artifacts_frozen" => Denied,
    /// Promotion into this stage needs a passing validation report of the version's current
    /// content (the message names the failed gates, if any).
    ValidationRequired = "validation_required" => Denied,
    /// A deployment arm runs a version the deployment policy does not permit.
    DeploymentNotPermitted = "deployment_not_permitted" => Denied,
    /// A deployment arm names a version the gateway cannot serve (an operator its engine
    /// does not run, artifacts it cannot read or verify); the message says which and why.
    ModelNotServable = "model_not_servable" => Denied,

    /// The model does not exist.
    ModelNotFound = "model_not_found" => NotFound,
    /// The model version does not exist.
    VersionNotFound = "version_not_found" => NotFound,
    /// The promotion request does not exist.
    RequestNotFound = "request_not_found" => NotFound,
    /// The user does not exist.
    UserNotFound = "user_not_found" => NotFound,
    /// The model version has no drift baseline yet.
    BaselineNotFound = "baseline_not_found" => NotFound,
    /// The alert does not exist.
    AlertNotFound = "alert_not_found" => NotFound,
    /// No prediction is logged under that request id.
    PredictionNotFound = "prediction_not_found" => NotFound,
    /// The experiment does not exist.
    ExperimentNotFound = "experiment_not_found" => NotFound,
    /// The run does not exist.
    RunNotFound = "run_not_found" => NotFound,
    /// The run has no tag with that key.
    TagNotFound = "tag_not_found" => NotFound,
    /// The API token does not exist (or is not the caller's).
    TokenNotFound = "token_not_found" => NotFound,
    /// No artifact at that path.
    ArtifactNotFound = "artifact_not_found" => NotFound,
    /// The logged model does not exist.
    LoggedModelNotFound = "logged_model_not_found" => NotFound,
    /// The route does not exist.
    RouteNotFound = "route_not_found" => NotFound,

    /// An artifact with different content exists at that path; artifacts are never replaced.
    ArtifactExists = "artifact_exists" => Conflict,
    /// An experiment with this name exists.
    ExperimentExists = "experiment_exists" => Conflict,
    /// A model with this name already exists with different attributes.
    ModelExists = "model_exists" => Conflict,
    /// The version (by SemVer precedence) already exists for this model.
    DuplicateVersion = "duplicate_version" => Conflict,
    /// The user id exists or existed; ids are never reused.
    UserExists = "user_exists" => Conflict,
    /// The store was already initialised with an administrator.
    AlreadyInitialized = "already_initialized" => Conflict,
    /// The store has no administrator yet.
    NotInitialized = "not_initialized" => Conflict,
    /// The request is not pending (approved, rejected, withdrawn, expired or superseded).
    RequestNotPending = "request_not_pending" => Conflict,
    /// Another request for this version is already pending.
    RequestAlreadyPending = "request_already_pending" => Conflict,
    /// The alert is not open (already acknowledged or resolved).
    AlertNotOpen = "alert_not_open" => Conflict,
    /// The signer already signed this request; one person counts once.
    DuplicateSignature = "duplicate_signature" => Conflict,
    /// A concurrent writer changed the same records; the operation may be retried.
    ConcurrentModification = "concurrent_modification" => Conflict,

    /// The database file is not a Vigil database, is corrupt or truncated.
    DatabaseCorrupt = "database_corrupt" => Internal,
    /// The database was written by a newer Vigil.
    SchemaTooNew = "schema_too_new" => Internal,
    /// The storage backend failed.
    StorageFailure = "storage_failure" => Internal,
    /// The server signing key is missing or does not match the store.
    SigningKey = "signing_key" => Internal,
    /// A stored record violates an invariant (found during verification).
    IntegrityViolation = "integrity_violation" => Internal,
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A domain error: a stable code plus a human message free of patient data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    code: ErrorCode,
    message: String,
}

impl Error {
    /// Builds an error; `message` must not contain user-submitted values.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Error { code, message: message.into() }
    }

    /// The stable code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// Whose problem this is.
    pub fn kind(&self) -> ErrorKind {
        self.code.kind()
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Shorthand for a storage failure.
    pub fn storage(message: impl Into<String>) -> Self {
        Error::new(ErrorCode::StorageFailure, message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl std::error::Error for Error {}

/// Result alias for the domain.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_are_unique_snake_case() {
        let mut seen = HashSet::new();
        for code in ErrorCode::ALL {
            let s = code.as_str();
            assert!(seen.insert(s), "duplicate code {s}");
            assert!(s.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{s}");
        }
    }
}
