//! The use cases: every rule of the registry, approvals and audit, enforced in one place.
//!
//! Each operation runs in one store transaction and appends its audit events in that same
//! transaction. When an operation is refused (a rule, a missing record, bad input), the
//! transaction is rolled back, so nothing is half-written, and the refusal itself is audited
//! in a transaction of its own. The CLI, the server and the Python package call these methods;
//! none of them re-implements a rule.

use crate::approval::{
    Decision, Meaning, PolicySet, PromotionRequest, RequestStatus, ServerKey, Signature, Tally, tally,
};
use crate::audit::{AuditEvent, ChainReport, ChainVerifier, Outcome, StoredEvent};
use crate::auth::{self, Action, Password, Principal, Role, User, UserStatus, authorize};
use crate::card::ModelCard;
use crate::error::{Error, ErrorCode, Result};
use crate::ids::{Clock, IdGenerator, ModelName, Sha256Digest, UserId, required_text};
use crate::model::{
    Lineage, Metrics, ModelType, ModelVersion, RegisteredModel, Stage, StageTransition, VersionContent,
};
use crate::semver::Version;
use crate::store::{AuditQuery, RequestFilter, Store, Tx, TxMode};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

const POLICY_SETTING: &str = "approval_policies";
const MAX_JUSTIFICATION: usize = 4000;
const MAX_ATTEMPTS: usize = 8;
/// A verified audit segment and, for the last one, the chain head it was checked against.
type Segment = (ChainVerifier, Option<(i64, String)>);

/// Chains at least this long are verified in parallel segments.
const PARALLEL_VERIFY_MIN: i64 = 50_000;

/// Everything needed to register a model version (the seed's `register_model` arguments).
#[derive(Debug, Clone)]
pub struct NewModelVersion {
    /// Registered model name; created on first registration.
    pub name: ModelName,
    /// SemVer version.
    pub version: Version,
    /// Model type; must match the registered model's type if it exists.
    pub model_type: ModelType,
    /// Signed content: artifact, metrics, lineage, card.
    pub content: VersionContent,
    /// Owner of a newly created registered model (defaults to the actor).
    pub owner: Option<String>,
    /// Description of a newly created registered model.
    pub description: Option<String>,
    /// Tags of a newly created registered model.
    pub tags: BTreeMap<String, String>,
}

/// A promotion request with its signatures and where it stands.
#[derive(Debug, Clone)]
pub struct RequestDetail {
    /// The request.
    pub request: PromotionRequest,
    /// Every signature, each with whether it counts now and, if not, why.
    pub signatures: Vec<(Signature, std::result::Result<(), String>)>,
    /// The tally of the valid signatures under the request's policy.
    pub tally: Tally,
}

/// The outcome of a signing.
#[derive(Debug, Clone)]
pub struct SignOutcome {
    /// The request after the signature (status may have changed).
    pub request: PromotionRequest,
    /// The stored signature.
    pub signature: Signature,
    /// The tally after the signature.
    pub tally: Tally,
}

/// A model version's full provenance: data, run, code, parent, approvals, stage history.
#[derive(Debug, Clone)]
pub struct LineageReport {
    /// The version.
    pub version: ModelVersion,
    /// Lineage fields not recorded.
    pub gaps: Vec<&'static str>,
    /// Whether the stored content hash matches the recomputed one.
    pub content_hash_ok: bool,
    /// Requests on this version with their signatures.
    pub requests: Vec<RequestDetail>,
    /// Stage history.
    pub transitions: Vec<StageTransition>,
    /// Other versions trained on the same data hash.
    pub same_data: Vec<String>,
}

/// The result of `verify_signatures`.
#[derive(Debug, Clone)]
pub struct SignatureReport {
    /// Signatures checked.
    pub checked: usize,
    /// Signature ids whose seal failed, with the reason.
    pub failures: Vec<(String, String)>,
}

/// Who and what a refusal is about, for the denial's audit event.
pub(crate) struct Attempt<'a> {
    pub(crate) actor: &'a str,
    pub(crate) action: &'a str,
    pub(crate) entity_type: &'a str,
    pub(crate) entity_id: &'a str,
    pub(crate) model: Option<String>,
    pub(crate) version: Option<String>,
}

/// The registry service: model versions, lifecycle, approvals, users and audit.
pub struct Registry {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) ids: Arc<dyn IdGenerator>,
    pub(crate) key: Arc<ServerKey>,
    /// The key unit identifiers are hashed under (derived from the server key once, its
    /// HMAC state keyed once).
    pub(crate) unit_mac: crate::deploy::UnitMac,
    parallel_verify_min: i64,
    verify_segments: Option<i64>,
    /// Whether the gateway can serve a version (see [`Registry::with_servable_check`]).
    pub(crate) servable: Option<ServableCheck>,
}

/// Tells whether a version can be served, or why not (operator names, an artifact that cannot
/// be read or no longer matches its digest; never values): the gateway's own loading, given
/// to the registry by whoever runs one beside it, so that a deployment naming a version it
/// cannot serve is refused when it is made.
pub type ServableCheck = Arc<dyn Fn(&crate::model::ModelVersion) -> std::result::Result<(), String> + Send + Sync>;

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").field("backend", &self.store.backend()).field("key", &self.key).finish()
    }
}

pub(crate) fn not_found(code: ErrorCode, what: &str) -> Error {
    Error::new(code, format!("{what} not found"))
}

impl Registry {
    /// Builds the service over a store, with an injected clock, id generator and server key.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, ids: Arc<dyn IdGenerator>, key: Arc<ServerKey>) -> Self {
        let unit_mac = crate::deploy::UnitMac::new(&crate::deploy::unit_key_of(&key));
        Registry { store, clock, ids, key, unit_mac, parallel_verify_min: PARALLEL_VERIFY_MIN, verify_segments: None, servable: None }
    }

    /// Refuses deployments whose pinned arms name a version `check` finds the gateway cannot
    /// serve (`model_not_servable`, audited as a denial). Without one (a registry that runs no
    /// gateway), such an arm is left out by the gateway when it loads, reported as degraded.
    pub fn with_servable_check(mut self, check: ServableCheck) -> Self {
        self.servable = Some(check);
        self
    }

    /// Always verifies the audit chain in exactly `segments` parallel segments (tests use this
    /// to exercise segment boundaries on short chains).
    pub fn with_verify_segments(mut self, segments: usize) -> Self {
        self.parallel_verify_min = 2;
        self.verify_segments = Some(segments.max(1) as i64);
        self
    }

    /// The server key's id.
    pub fn key_id(&self) -> &str {
        self.key.key_id()
    }

    /// Events in the audit trail (the chain head's sequence number), for monitoring.
    pub fn audit_length(&self) -> Result<i64> {
        self.read(|tx| Ok(tx.audit_head()?.map_or(0, |(seq, _)| seq)))
    }

    /// Refreshes the store's query statistics (run periodically by the server).
    pub fn optimize_store(&self) -> Result<()> {
        self.store.optimize()
    }

    /// Database connections held by this process: (idle, in use).
    pub fn pool_stats(&self) -> (usize, usize) {
        self.store.pool_stats()
    }

    /// The store backend name.
    pub fn backend(&self) -> &'static str {
        self.store.backend()
    }

    // ----- transaction helpers -------------------------------------------------------------

    /// Runs `f` in a write transaction and commits; retries when a concurrent writer on the
    /// same database forced a serialisation failure.
    pub(crate) fn write<T>(&self, mut f: impl FnMut(&mut dyn Tx) -> Result<T>) -> Result<T> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result: Result<T> = (|| {
                let mut tx = self.store.begin(TxMode::Write)?;
                let v = f(&mut *tx)?;
                tx.commit()?;
                Ok(v)
            })();
            match result {
                Err(e) if e.code() == ErrorCode::ConcurrentModification && attempt < MAX_ATTEMPTS => continue,
                other => return other,
            }
        }
    }

    pub(crate) fn read<T>(&self, f: impl FnOnce(&mut dyn Tx) -> Result<T>) -> Result<T> {
        let mut tx = self.store.begin(TxMode::Read)?;
        let v = f(&mut *tx)?;
        drop(tx);
        Ok(v)
    }

    /// Runs a governed write; if it is refused, records the refusal in the audit trail.
    pub(crate) fn governed<T>(&self, attempt: Attempt<'_>, f: impl FnMut(&mut dyn Tx) -> Result<T>) -> Result<T> {
        match self.write(f) {
            Ok(v) => Ok(v),
            // When the store itself is failing, a denial event could not be written either.
            Err(e) if matches!(e.code(), ErrorCode::StorageFailure | ErrorCode::DatabaseCorrupt | ErrorCode::SchemaTooNew) => Err(e),
            Err(e) => {
                self.audit_denial(&attempt, &e)?;
                Err(e)
            }
        }
    }

    pub(crate) fn audit_denial(&self, a: &Attempt<'_>, e: &Error) -> Result<()> {
        let event = AuditEvent {
            at: self.clock.now(),
            actor: a.actor.to_owned(),
            action: a.action.to_owned(),
            outcome: Outcome::Denied,
            entity_type: a.entity_type.to_owned(),
            entity_id: a.entity_id.to_owned(),
            model: a.model.clone(),
            version: a.version.clone(),
            details: json!({"code": e.code().as_str(), "message": e.message()}),
        };
        self.write(|tx| tx.append_audit(event.clone()))
    }

    pub(crate) fn event(&self, actor: &str, action: &str, entity_type: &str, entity_id: &str, details: Value) -> AuditEvent {
        AuditEvent {
            at: self.clock.now(),
            actor: actor.to_owned(),
            action: action.to_owned(),
            outcome: Outcome::Ok,
            entity_type: entity_type.to_owned(),
            entity_id: entity_id.to_owned(),
            model: None,
            version: None,
            details,
        }
    }

    pub(crate) fn version_event(&self, actor: &str, action: &str, v: &ModelVersion, details: Value) -> AuditEvent {
        let mut e = self.event(actor, action, "model_version", &v.id, details);
        e.model = Some(v.model_name.to_string());
        e.version = Some(v.version.to_string());
        e
    }

    /// Re-reads the acting user inside the transaction: a user disabled or locked after
    /// authenticating can no longer act, and the role comes from the database, not the caller.
    pub(crate) fn acting_user(tx: &mut dyn Tx, p: &Principal, action: Action) -> Result<User> {
        let user = tx
            .get_user(p.user_id(), false)?
            .ok_or_else(|| Error::new(ErrorCode::AuthenticationFailed, "unknown user"))?;
        user.check_usable()?;
        authorize(user.role, action)?;
        Ok(user)
    }

    fn load_policies(tx: &mut dyn Tx) -> Result<PolicySet> {
        match tx.get_setting(POLICY_SETTING)? {
            None => Ok(PolicySet::default()),
            Some(s) => {
                let v: Value = serde_json::from_str(&s)
                    .map_err(|_| Error::new(ErrorCode::IntegrityViolation, "stored approval policies are not valid JSON"))?;
                PolicySet::from_json(&v)
            }
        }
    }

    /// Loads a version after locking its model's row, so that concurrent changes to the
    /// model's versions (promotions, content edits, requests) serialise on PostgreSQL.
    pub(crate) fn lock_version(tx: &mut dyn Tx, id: &str) -> Result<ModelVersion> {
        let v = Self::load_version(tx, id)?;
        tx.get_model_by_name(&v.model_name, true)?;
        Self::load_version(tx, id)
    }

    pub(crate) fn load_version(tx: &mut dyn Tx, id: &str) -> Result<ModelVersion> {
        tx.get_version(id)?.ok_or_else(|| not_found(ErrorCode::VersionNotFound, "model version"))
    }

    /// Recomputes the content hash and refuses to go on if the stored record was altered
    /// outside Vigil.
    fn checked_hash(v: &ModelVersion) -> Result<Sha256Digest> {
        let h = v.recompute_content_hash();
        if h != v.content_hash {
            return Err(Error::new(
                ErrorCode::IntegrityViolation,
                format!("stored content of {} does not match its content hash: the record was altered outside vigil", v.reference()),
            ));
        }
        Ok(h)
    }

    // ----- users -------------------------------------------------------------------------

    /// Creates the first administrator of an empty store.
    pub fn init_admin(&self, id: &UserId, printed_name: &str, password: &Password) -> Result<User> {
        let printed_name = required_text("printed name", printed_name, 200)?;
        let hash = auth::hash_password(password)?;
        self.write(|tx| {
            // The claim is a unique insert: two concurrent inits cannot both create an admin.
            if tx.user_count()? > 0 || !tx.claim_setting("initialized_by", id.as_str())? {
                return Err(Error::new(ErrorCode::AlreadyInitialized, "this store already has users; use 'vigil user add'"));
            }
            let user = User {
                id: id.clone(),
                printed_name: printed_name.clone(),
                role: Role::Admin,
                password_hash: hash.clone(),
                status: UserStatus::Active,
                failed_attempts: 0,
                locked: false,
                created_at: self.clock.now(),
            };
            tx.insert_user(&user)?;
            tx.append_audit(self.event(
                id.as_str(),
                "store.init",
                "user",
                id.as_str(),
                json!({"new": {"role": "admin", "printed_name": printed_name}, "signing_key_id": self.key.key_id()}),
            ))?;
            Ok(user)
        })
    }

    /// Whether the store has any user yet.
    pub fn is_initialized(&self) -> Result<bool> {
        self.read(|tx| Ok(tx.user_count()? > 0))
    }

    /// Checks a password. Failures are audited and count towards the lockout; the fifth
    /// consecutive failure locks the account (also audited).
    pub fn authenticate(&self, id: &UserId, password: &Password) -> Result<Principal> {
        let user = self.read(|tx| tx.get_user(id, false))?;
        let Some(user) = user else {
            // Spend what a real check costs, so response times do not reveal which users exist.
            static DUMMY: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
            if let Some(h) = DUMMY.get_or_init(|| auth::hash_password(&Password::new("vigil-timing-equaliser")).ok()) {
                let _ = auth::verify_password(password, h);
            }
            let e = Error::new(ErrorCode::AuthenticationFailed, "unknown user or wrong password");
            self.audit_denial(&Attempt { actor: id.as_str(), action: "auth.login", entity_type: "user", entity_id: id.as_str(), model: None, version: None }, &e)?;
            return Err(e);
        };
        if let Err(e) = user.check_usable() {
            self.audit_denial(&Attempt { actor: id.as_str(), action: "auth.login", entity_type: "user", entity_id: id.as_str(), model: None, version: None }, &e)?;
            return Err(e);
        }
        // Argon2 takes tens of milliseconds: verify outside the write transaction.
        let ok = auth::verify_password(password, &user.password_hash);
        let refused: Option<Error> = self.write(|tx| {
            let mut u = tx.get_user(id, true)?.ok_or_else(|| not_found(ErrorCode::UserNotFound, "user"))?;
            // Re-checked under the row lock: parallel guesses cannot outrun the lockout, and a
            // locked account answers the same whether or not the password was right.
            if let Err(e) = u.check_usable() {
                let mut ev = self.event(id.as_str(), "auth.login", "user", id.as_str(), json!({"code": e.code().as_str()}));
                ev.outcome = Outcome::Denied;
                tx.append_audit(ev)?;
                return Ok(Some(e));
            }
            if ok {
                if u.failed_attempts > 0 {
                    u.failed_attempts = 0;
                    tx.update_user(&u)?;
                }
                return Ok(None);
            }
            u.failed_attempts += 1;
            let mut details = json!({"code": ErrorCode::AuthenticationFailed.as_str(), "failed_attempts": u.failed_attempts});
            let locks_now = !u.locked && u.failed_attempts >= auth::MAX_FAILED_ATTEMPTS;
            if locks_now {
                u.locked = true;
                details["locked"] = json!(true);
            }
            tx.update_user(&u)?;
            let mut e = self.event(id.as_str(), "auth.login", "user", id.as_str(), details);
            e.outcome = Outcome::Denied;
            tx.append_audit(e)?;
            if locks_now {
                tx.append_audit(self.event("system", "user.lock", "user", id.as_str(), json!({"old": {"locked": false}, "new": {"locked": true}, "reason": "too many failed authentications"})))?;
            }
            Ok(None)
        })?;
        if let Some(e) = refused {
            return Err(e);
        }
        if ok {
            Ok(Principal::authenticated(user.id, user.role, user.printed_name))
        } else {
            Err(Error::new(ErrorCode::AuthenticationFailed, "unknown user or wrong password"))
        }
    }

    /// A digest of what a password check depends on (password hash, status, lock, role), or
    /// `None` for an unknown user. A server that remembers a successful check for a while
    /// compares this on every use, so a changed password, a lock, a disablement or a new role
    /// takes effect at once.
    pub fn credential_fingerprint(&self, id: &UserId) -> Result<Option<String>> {
        let u = self.read(|tx| tx.get_user(id, false))?;
        Ok(u.map(|u| {
            let text = format!("{}\u{0}{}\u{0}{}\u{0}{}", u.password_hash, u.status.as_str(), u.locked, u.role.as_str());
            Sha256Digest::of(text.as_bytes()).to_hex()
        }))
    }

    /// Creates a user (administrators only).
    pub fn add_user(&self, actor: &Principal, id: &UserId, printed_name: &str, role: Role, password: &Password) -> Result<User> {
        let attempt = Attempt { actor: actor.user_id().as_str(), action: "user.create", entity_type: "user", entity_id: id.as_str(), model: None, version: None };
        let prepared = required_text("printed name", printed_name, 200).and_then(|n| Ok((n, auth::hash_password(password)?)));
        let (printed_name, hash) = match prepared {
            Ok(v) => v,
            Err(e) => {
                self.audit_denial(&attempt, &e)?;
                return Err(e);
            }
        };
        self.governed(attempt, |tx| {
            Self::acting_user(tx, actor, Action::ManageUsers)?;
            let user = User {
                id: id.clone(),
                printed_name: printed_name.clone(),
                role,
                password_hash: hash.clone(),
                status: UserStatus::Active,
                failed_attempts: 0,
                locked: false,
                created_at: self.clock.now(),
            };
            tx.insert_user(&user)?;
            tx.append_audit(self.event(actor.user_id().as_str(), "user.create", "user", id.as_str(), json!({"new": {"role": role.as_str(), "printed_name": printed_name}})))?;
            Ok(user)
        })
    }

    /// Disables a user: they can no longer authenticate or sign. Their id stays reserved.
    pub fn disable_user(&self, actor: &Principal, id: &UserId, reason: &str) -> Result<User> {
        self.change_user(actor, id, "user.disable", reason, |u| u.status = UserStatus::Disabled)
    }

    /// Unlocks a user locked after failed authentications.
    pub fn unlock_user(&self, actor: &Principal, id: &UserId, reason: &str) -> Result<User> {
        self.change_user(actor, id, "user.unlock", reason, |u| {
            u.locked = false;
            u.failed_attempts = 0;
        })
    }

    fn change_user(&self, actor: &Principal, id: &UserId, action: &str, reason: &str, change: impl Fn(&mut User)) -> Result<User> {
        let attempt = Attempt { actor: actor.user_id().as_str(), action, entity_type: "user", entity_id: id.as_str(), model: None, version: None };
        self.governed(attempt, |tx| {
            Self::acting_user(tx, actor, Action::ManageUsers)?;
            let reason = required_text("reason", reason, 2000)?;
            let mut u = tx.get_user(id, true)?.ok_or_else(|| not_found(ErrorCode::UserNotFound, "user"))?;
            let old = json!({"status": u.status.as_str(), "locked": u.locked});
            change(&mut u);
            tx.update_user(&u)?;
            tx.append_audit(self.event(
                actor.user_id().as_str(),
                action,
                "user",
                id.as_str(),
                json!({"old": old, "new": {"status": u.status.as_str(), "locked": u.locked}, "reason": reason}),
            ))?;
            Ok(u)
        })
    }

    /// All users.
    pub fn list_users(&self) -> Result<Vec<User>> {
        self.read(|tx| tx.list_users())
    }

    // ----- policies ----------------------------------------------------------------------

    /// The approval policies in force.
    pub fn policies(&self) -> Result<PolicySet> {
        self.read(|tx| Self::load_policies(tx))
    }

    /// Replaces the approval policy of one target stage (administrators only). Open requests
    /// keep the policy they were opened under.
    pub fn set_policy(&self, actor: &Principal, stage: Stage, policy: crate::approval::ApprovalPolicy, reason: &str) -> Result<PolicySet> {
        let attempt = Attempt { actor: actor.user_id().as_str(), action: "policy.update", entity_type: "policy", entity_id: stage.as_str(), model: None, version: None };
        self.governed(attempt, |tx| {
            Self::acting_user(tx, actor, Action::ManagePolicy)?;
            let reason = required_text("reason", reason, 2000)?;
            let mut set = Self::load_policies(tx)?;
            let old = set.for_stage(stage)?.to_json();
            set.set(stage, policy.clone())?;
            tx.put_setting(POLICY_SETTING, &crate::canonical::encode(&set.to_json()))?;
            tx.append_audit(self.event(actor.user_id().as_str(), "policy.update", "policy", stage.as_str(), json!({"old": old, "new": policy.to_json(), "reason": reason})))?;
            Ok(set)
        })
    }

    // ----- models ------------------------------------------------------------------------

    /// Registers a model version in Development, creating the registered model on first use.
    pub fn register_model(&self, actor: &Principal, new: NewModelVersion) -> Result<ModelVersion> {
        let version_text = new.version.to_string();
        let attempt = Attempt {
            actor: actor.user_id().as_str(),
            action: "model_version.register",
            entity_type: "model_version",
            entity_id: "",
            model: Some(new.name.to_string()),
            version: Some(version_text.clone()),
        };
        self.governed(attempt, |tx| {
            let meta = crate::catalog::VersionMeta {
                source: new.content.artifact_uri.clone(),
                run_id: new.content.lineage.training_run_id.clone(),
                updated_ms: self.clock.now().micros() / 1000,
                ..Default::default()
            };
            self.register_version_tx(tx, actor, &new, &meta)
        })
    }

    /// Inserts a registered model with its `model.create` audit event.
    pub(crate) fn insert_model_audited(&self, tx: &mut dyn Tx, m: &RegisteredModel) -> Result<()> {
        tx.insert_model(m)?;
        let mut e = self.event(m.created_by.as_str(), "model.create", "model", &m.id, json!({"new": {"owner": m.owner, "model_type": m.model_type.as_str(), "tags": m.tags}}));
        e.model = Some(m.name.to_string());
        tx.append_audit(e)
    }

    /// The registration itself, shared by the native API and the catalogue (MLflow): the
    /// model is created on first use (or locked, so that version numbers are handed out one
    /// at a time), the version gets the next number, its content hash, a transition record,
    /// its catalogue metadata and one audit event.
    pub(crate) fn register_version_tx(&self, tx: &mut dyn Tx, actor: &Principal, new: &NewModelVersion, meta: &crate::catalog::VersionMeta) -> Result<ModelVersion> {
        let user = Self::acting_user(tx, actor, Action::RegisterModel)?;
        let artifact_uri = required_text("artifact uri", &new.content.artifact_uri, 2048)?;
        new.content.validate()?;
        if Version::parse(&new.version.to_string()).as_ref() != Ok(&new.version) {
            return Err(Error::new(ErrorCode::InvalidVersion, "version is not valid SemVer 2.0.0"));
        }
        let model = match tx.get_model_by_name(&new.name, true)? {
            Some(m) => {
                if m.model_type != new.model_type {
                    return Err(Error::new(
                        ErrorCode::ModelExists,
                        format!("model '{}' exists with type {}, not {}", m.name, m.model_type, new.model_type),
                    ));
                }
                m
            }
            None => {
                let m = RegisteredModel {
                    id: self.ids.new_id("mdl"),
                    name: new.name.clone(),
                    owner: new.owner.clone().unwrap_or_else(|| user.id.to_string()),
                    description: new.description.clone().unwrap_or_default(),
                    tags: new.tags.clone(),
                    model_type: new.model_type,
                    created_by: user.id.clone(),
                    created_at: self.clock.now(),
                };
                self.insert_model_audited(tx, &m)?;
                m
            }
        };
        if tx.find_version(&model.id, &new.version.precedence_key())?.is_some() {
            return Err(Error::new(
                ErrorCode::DuplicateVersion,
                format!("{}@{} already exists (versions differing only in build metadata are duplicates)", model.name, new.version.precedence_key()),
            ));
        }
        let mut content = new.content.clone();
        content.artifact_uri = artifact_uri;
        let hash = content.content_hash(&model.name, &new.version, model.model_type);
        let v = ModelVersion {
            id: self.ids.new_id("mv"),
            model_id: model.id.clone(),
            model_name: model.name.clone(),
            model_type: model.model_type,
            version: new.version.clone(),
            number: tx.max_version_number(&model.id)? + 1,
            stage: Stage::Development,
            content,
            content_hash: hash,
            created_by: user.id.clone(),
            created_at: self.clock.now(),
        };
        tx.insert_version(&v)?;
        let meta = crate::catalog::VersionMeta { updated_ms: v.created_at.micros() / 1000, ..meta.clone() };
        tx.insert_version_meta(&v.id, &meta)?;
        for (k, val) in &meta.tags {
            tx.set_version_tag(&v.id, k, val)?;
        }
        tx.insert_transition(&StageTransition {
            id: self.ids.new_id("st"),
            model_version_id: v.id.clone(),
            from_stage: None,
            to_stage: Stage::Development,
            request_id: None,
            reason: "registered".into(),
            actor: user.id.clone(),
            at: v.created_at,
        })?;
        tx.append_audit(self.version_event(
            user.id.as_str(),
            "model_version.register",
            &v,
            json!({"new": {
                "stage": "development",
                "number": v.number,
                "content_hash": hash.to_hex(),
                "artifact_uri": v.content.artifact_uri,
                "artifact_sha256": v.content.artifact_sha256.map(|d| d.to_hex()),
                "training_data_hash": v.content.lineage.training_data_hash,
                "run_id": meta.run_id,
                "logged_model_id": meta.logged_model_id,
            }}),
        ))?;
        Ok(v)
    }

    /// Replaces the signed content (metrics, lineage, card, artifact) of a Development or
    /// Staging version. The content hash changes, so earlier signatures stop counting, and any
    /// pending request on the version is superseded.
    pub fn update_version_content(&self, actor: &Principal, version_id: &str, content: VersionContent, reason: &str) -> Result<ModelVersion> {
        let attempt = Attempt { actor: actor.user_id().as_str(), action: "model_version.update", entity_type: "model_version", entity_id: version_id, model: None, version: None };
        self.governed(attempt, |tx| {
            let user = Self::acting_user(tx, actor, Action::RegisterModel)?;
            let reason = required_text("reason", reason, 2000)?;
            let mut v = Self::lock_version(tx, version_id)?;
            let old_hash = Self::checked_hash(&v)?;
            content.validate()?;
            if !v.stage.content_editable() {
                return Err(Error::new(ErrorCode::VersionImmutable, format!("{} is in {}; register a new version instead", v.reference(), v.stage)));
            }
            let mut content = content.clone();
            content.artifact_uri = required_text("artifact uri", &content.artifact_uri, 2048)?;
            v.content = content;
            v.content_hash = v.recompute_content_hash();
            tx.update_version_content(&v.id, &v.content, &v.content_hash)?;
            tx.append_audit(self.version_event(
                user.id.as_str(),
                "model_version.update",
                &v,
                json!({"old": {"content_hash": old_hash.to_hex()}, "new": {"content_hash": v.content_hash.to_hex()}, "reason": reason}),
            ))?;
            self.supersede_pending(tx, &v, user.id.as_str(), "the version's signed content changed")?;
            Ok(v)
        })
    }

    fn supersede_pending(&self, tx: &mut dyn Tx, v: &ModelVersion, actor: &str, why: &str) -> Result<()> {
        for mut r in tx.pending_requests_for_version(&v.id)? {
            r.status = RequestStatus::Superseded;
            r.decided_at = Some(self.clock.now());
            r.status_reason = Some(why.to_owned());
            tx.update_request_status(&r)?;
            let mut e = self.version_event(actor, "promotion.supersede", v, json!({"old": {"status": "pending"}, "new": {"status": "superseded"}, "reason": why}));
            e.entity_type = "promotion_request".into();
            e.entity_id = r.id.clone();
            tx.append_audit(e)?;
        }
        Ok(())
    }

    /// A registered model by name.
    pub fn get_model(&self, name: &ModelName) -> Result<RegisteredModel> {
        self.read(|tx| tx.get_model_by_name(name, false))?.ok_or_else(|| not_found(ErrorCode::ModelNotFound, "model"))
    }

    /// All models with their versions.
    pub fn list_models(&self) -> Result<Vec<(RegisteredModel, Vec<ModelVersion>)>> {
        self.read(|tx| {
            let models = tx.list_models()?;
            let mut out = Vec::with_capacity(models.len());
            for m in models {
                let vs = tx.list_versions(&m.id)?;
                out.push((m, vs));
            }
            Ok(out)
        })
    }

    /// A version by model name and version (build metadata ignored for lookup).
    pub fn get_version(&self, name: &ModelName, version: &Version) -> Result<ModelVersion> {
        self.read(|tx| {
            let m = tx.get_model_by_name(name, false)?.ok_or_else(|| not_found(ErrorCode::ModelNotFound, "model"))?;
            tx.find_version(&m.id, &version.precedence_key())?.ok_or_else(|| not_found(ErrorCode::VersionNotFound, "model version"))
        })
    }

    /// A version by id.
    pub fn get_version_by_id(&self, id: &str) -> Result<ModelVersion> {
        self.read(|tx| Self::load_version(tx, id))
    }

    /// The Production version of a model, if any.
    pub fn production_version(&self, name: &ModelName) -> Result<Option<ModelVersion>> {
        self.read(|tx| {
            let m = tx.get_model_by_name(name, false)?.ok_or_else(|| not_found(ErrorCode::ModelNotFound, "model"))?;
            Ok(tx.versions_in_stage(&m.id, Stage::Production)?.into_iter().next())
        })
    }

    // ----- promotion ---------------------------------------------------------------------

    /// Opens a promotion request (the seed's `request_promotion`).
    pub fn request_promotion(&self, actor: &Principal, version_id: &str, to_stage: Stage, justification: &str) -> Result<PromotionRequest> {
        let attempt = Attempt { actor: actor.user_id().as_str(), action: "promotion.request", entity_type: "model_version", entity_id: version_id, model: None, version: None };
        let ctx = self.read(|tx| tx.get_version(version_id)).ok().flatten();
        let attempt = Attempt { model: ctx.as_ref().map(|v| v.model_name.to_string()), version: ctx.as_ref().map(|v| v.version.to_string()), ..attempt };
        self.governed(attempt, |tx| {
            let user = Self::acting_user(tx, actor, Action::RequestPromotion)?;
            let justification = required_text("justification", justification, MAX_JUSTIFICATION)?;
            let v = Self::lock_version(tx, version_id)?;
            let hash = Self::checked_hash(&v)?;
            if !v.stage.can_transition_to(to_stage) {
                return Err(Error::new(ErrorCode::TransitionNotAllowed, format!("{} cannot move from {} to {}", v.reference(), v.stage, to_stage)));
            }
            let validation = Self::validation_gate(tx, &v, to_stage)?;
            let policy = Self::load_policies(tx)?.for_stage(to_stage)?.clone();
            let now = self.clock.now();
            for mut old in tx.pending_requests_for_version(&v.id)? {
                if !old.is_past_expiry(now) {
                    return Err(Error::new(ErrorCode::RequestAlreadyPending, format!("{} already has a pending promotion request", v.reference())));
                }
                // An overdue request nobody touched since it expired: close it now.
                self.mark_expired(tx, &mut old, now)?;
            }
            let expires_at = match policy.expires_after_hours {
                Some(h) => Some(now.plus_hours(h).ok_or_else(|| Error::new(ErrorCode::InvalidPolicy, "request expiry is out of range"))?),
                None => None,
            };
            let r = PromotionRequest {
                id: self.ids.new_id("req"),
                model_version_id: v.id.clone(),
                model_ref: v.reference(),
                from_stage: v.stage,
                to_stage,
                requester: user.id.clone(),
                justification: justification.clone(),
                status: RequestStatus::Pending,
                content_hash: hash,
                expires_at,
                policy,
                created_at: now,
                decided_at: None,
                status_reason: None,
                validation_report_id: validation.clone(),
            };
            tx.insert_request(&r)?;
            let mut e = self.version_event(
                user.id.as_str(),
                "promotion.request",
                &v,
                json!({"new": {"request_id": r.id, "from": r.from_stage.as_str(), "to": r.to_stage.as_str(), "status": "pending", "content_hash": hash.to_hex(), "policy": r.policy.to_json(), "validation_report": validation}, "reason": justification}),
            );
            e.entity_type = "promotion_request".into();
            e.entity_id = r.id.clone();
            tx.append_audit(e)?;
            Ok(r)
        })
    }

    /// Marks a pending request whose expiry time has passed as expired (audited). Returns
    /// whether it did. Called before every action on a request, and usable as a sweep.
    pub fn expire_if_due(&self, request_id: &str) -> Result<bool> {
        self.write(|tx| {
            let Some(mut r) = tx.get_request(request_id, true)? else { return Ok(false) };
            let now = self.clock.now();
            if r.status != RequestStatus::Pending || !r.is_past_expiry(now) {
                return Ok(false);
            }
            self.mark_expired(tx, &mut r, now)?;
            Ok(true)
        })
    }

    fn mark_expired(&self, tx: &mut dyn Tx, r: &mut PromotionRequest, now: crate::ids::Timestamp) -> Result<()> {
        r.status = RequestStatus::Expired;
        r.decided_at = Some(now);
        r.status_reason = Some("expired before the policy was satisfied".into());
        tx.update_request_status(r)?;
        let mut e = self.event("system", "promotion.expire", "promotion_request", &r.id, json!({"old": {"status": "pending"}, "new": {"status": "expired"}}));
        e.model = r.model_ref.split_once('@').map(|(m, _)| m.to_owned());
        e.version = r.model_ref.split_once('@').map(|(_, v)| v.to_owned());
        tx.append_audit(e)
    }

    /// Approves a request with an electronic signature (the seed's `approve_promotion`). The
    /// signer re-enters their password here, whatever session they have (Part 11 §11.200).
    pub fn approve_promotion(&self, signer: &UserId, password: &Password, request_id: &str, meaning: Meaning, comment: &str) -> Result<SignOutcome> {
        self.sign(signer, password, request_id, meaning, Decision::Approve, comment)
    }

    /// Rejects a request with an electronic signature; any valid rejection ends the request.
    pub fn reject_promotion(&self, signer: &UserId, password: &Password, request_id: &str, meaning: Meaning, comment: &str) -> Result<SignOutcome> {
        self.sign(signer, password, request_id, meaning, Decision::Reject, comment)
    }

    fn request_attempt<'a>(&self, actor: &'a str, action: &'a str, request_id: &'a str) -> Attempt<'a> {
        let r = self.read(|tx| tx.get_request(request_id, false)).ok().flatten();
        let (model, version) = match r.as_ref().and_then(|r| r.model_ref.split_once('@')) {
            Some((m, v)) => (Some(m.to_owned()), Some(v.to_owned())),
            None => (None, None),
        };
        Attempt { actor, action, entity_type: "promotion_request", entity_id: request_id, model, version }
    }

    fn sign(&self, signer: &UserId, password: &Password, request_id: &str, meaning: Meaning, decision: Decision, comment: &str) -> Result<SignOutcome> {
        let action = match decision {
            Decision::Approve => "promotion.approve",
            Decision::Reject => "promotion.reject",
        };
        self.expire_if_due(request_id)?;
        // Authentication failures are audited (and counted) inside authenticate.
        let principal = self.authenticate(signer, password)?;
        let attempt = self.request_attempt(signer.as_str(), action, request_id);
        self.governed(attempt, |tx| {
            let mut r = tx.get_request(request_id, true)?.ok_or_else(|| not_found(ErrorCode::RequestNotFound, "promotion request"))?;
            match r.status {
                RequestStatus::Pending if r.is_past_expiry(self.clock.now()) => {
                    return Err(Error::new(ErrorCode::RequestExpired, format!("request {} has expired", r.id)));
                }
                RequestStatus::Pending => {}
                RequestStatus::Expired => return Err(Error::new(ErrorCode::RequestExpired, format!("request {} has expired", r.id))),
                s => return Err(Error::new(ErrorCode::RequestNotPending, format!("request {} is {s}, not pending", r.id))),
            }
            let user = Self::acting_user(tx, &principal, Action::SignPromotion)?;
            if !r.policy.eligible_roles.contains(&user.role) {
                return Err(Error::new(ErrorCode::RoleNotPermitted, format!("role {} may not sign promotions to {}", user.role, r.to_stage)));
            }
            if user.id == r.requester {
                return Err(Error::new(ErrorCode::SelfApproval, "the requester cannot sign their own promotion request"));
            }
            if meaning == Meaning::Authorship {
                return Err(Error::new(ErrorCode::InvalidMeaning, "authorship is not a meaning for approving or rejecting; use approval, review or responsibility"));
            }
            let comment = if comment.trim().is_empty() && decision == Decision::Reject {
                return Err(Error::new(ErrorCode::InvalidText, "a rejection needs a comment saying why"));
            } else {
                comment.trim().to_owned()
            };
            let v = Self::load_version(tx, &r.model_version_id)?;
            if user.id == v.created_by {
                // Part 11 separation of duties (P11-SOD-1): the author of the version does not
                // sign its release, even if someone else opened the request.
                return Err(Error::new(ErrorCode::SelfApproval, "the author of a model version cannot sign its promotion"));
            }
            let current = Self::checked_hash(&v)?;
            if current != r.content_hash {
                return Err(Error::new(ErrorCode::ContentChanged, format!("{} changed since request {} was opened; open a new request", v.reference(), r.id)));
            }
            let existing = tx.list_signatures(&r.id)?;
            if existing.iter().any(|s| s.signer_id == user.id) {
                return Err(Error::new(ErrorCode::DuplicateSignature, format!("{} already signed request {}", user.id, r.id)));
            }
            let mut sig = Signature {
                id: self.ids.new_id("sig"),
                request_id: r.id.clone(),
                model_version_id: v.id.clone(),
                signer_id: user.id.clone(),
                printed_name: user.printed_name.clone(),
                role: user.role,
                meaning,
                decision,
                comment: comment.clone(),
                content_hash: current,
                signed_at: self.clock.now(),
                key_id: String::new(),
                server_signature: String::new(),
            };
            self.key.seal(&mut sig);
            tx.insert_signature(&sig)?;
            let mut e = self.version_event(
                user.id.as_str(),
                action,
                &v,
                json!({"new": {
                    "signature_id": sig.id, "printed_name": sig.printed_name, "role": sig.role.as_str(),
                    "meaning": meaning.as_str(), "decision": decision.as_str(), "content_hash": current.to_hex(),
                    "signed_at": sig.signed_at.to_rfc3339(),
                }, "reason": comment}),
            );
            e.entity_type = "promotion_request".into();
            e.entity_id = r.id.clone();
            tx.append_audit(e)?;

            let mut all = existing;
            all.push(sig.clone());
            let valid: Vec<&Signature> = all.iter().filter(|s| self.signature_validity(s, &current).is_ok()).collect();
            let t = tally(&r.policy, &valid);
            match t {
                Tally::Rejected => {
                    self.close_request(tx, &mut r, &v, RequestStatus::Rejected, user.id.as_str(), &comment)?;
                }
                Tally::Approved => {
                    self.complete(tx, &mut r, v, user.id.as_str())?;
                }
                Tally::Pending { .. } => {}
            }
            Ok(SignOutcome { request: r, signature: sig, tally: t })
        })
    }

    fn signature_validity(&self, s: &Signature, current: &Sha256Digest) -> std::result::Result<(), String> {
        self.key.verify(s).map_err(|e| e.message().to_owned())?;
        if &s.content_hash != current {
            return Err("signed an earlier content of the version; it no longer counts".into());
        }
        Ok(())
    }

    fn close_request(&self, tx: &mut dyn Tx, r: &mut PromotionRequest, v: &ModelVersion, status: RequestStatus, actor: &str, reason: &str) -> Result<()> {
        r.status = status;
        r.decided_at = Some(self.clock.now());
        r.status_reason = Some(reason.to_owned());
        tx.update_request_status(r)?;
        let mut e = self.version_event(actor, "promotion.close", v, json!({"old": {"status": "pending"}, "new": {"status": status.as_str()}, "reason": reason}));
        e.entity_type = "promotion_request".into();
        e.entity_id = r.id.clone();
        tx.append_audit(e)
    }

    /// Applies an approved request: moves the version, and for Production moves the previous
    /// Production version to Archived first (both recorded).
    fn complete(&self, tx: &mut dyn Tx, r: &mut PromotionRequest, v: ModelVersion, actor: &str) -> Result<()> {
        // Lock the model row: concurrent completions for versions of one model serialise here,
        // and the partial unique index on (model, production) backs this up.
        let model = tx.get_model_by_name(&v.model_name, true)?.ok_or_else(|| not_found(ErrorCode::ModelNotFound, "model"))?;
        let v = Self::load_version(tx, &v.id)?;
        if v.stage != r.from_stage {
            return Err(Error::new(ErrorCode::ConcurrentModification, format!("{} moved to {} while the request was open", v.reference(), v.stage)));
        }
        // The evidence is checked again when the stage moves: a newer report (passing or
        // not), a changed policy or champion, or a policy that now covers Staging, stops the
        // move. The approvers signed over the request's report; only that one counts.
        let validation = Self::validation_gate(tx, &v, r.to_stage)?;
        if validation.is_some() && validation != r.validation_report_id {
            return Err(Error::new(
                ErrorCode::ValidationRequired,
                format!("the validation evidence of {} changed since request {} was opened (newest report {}); open a new request", v.reference(), r.id, validation.as_deref().unwrap_or("")),
            ));
        }
        if r.to_stage == Stage::Production {
            for mut old in tx.versions_in_stage(&model.id, Stage::Production)? {
                if old.id == v.id {
                    continue;
                }
                tx.set_version_stage(&old.id, Stage::Archived)?;
                let reason = format!("replaced in production by {} (request {})", v.reference(), r.id);
                tx.insert_transition(&StageTransition {
                    id: self.ids.new_id("st"),
                    model_version_id: old.id.clone(),
                    from_stage: Some(Stage::Production),
                    to_stage: Stage::Archived,
                    request_id: Some(r.id.clone()),
                    reason: reason.clone(),
                    actor: UserId::parse(actor)?,
                    at: self.clock.now(),
                })?;
                tx.append_audit(self.version_event(actor, "model_version.stage", &old, json!({"old": {"stage": "production"}, "new": {"stage": "archived"}, "request_id": r.id, "reason": reason})))?;
                old.stage = Stage::Archived;
                self.supersede_pending(tx, &old, actor, "the version left production")?;
            }
        }
        tx.set_version_stage(&v.id, r.to_stage)?;
        tx.insert_transition(&StageTransition {
            id: self.ids.new_id("st"),
            model_version_id: v.id.clone(),
            from_stage: Some(v.stage),
            to_stage: r.to_stage,
            request_id: Some(r.id.clone()),
            reason: "approved promotion request".into(),
            actor: UserId::parse(actor)?,
            at: self.clock.now(),
        })?;
        tx.append_audit(self.version_event(actor, "model_version.stage", &v, json!({"old": {"stage": v.stage.as_str()}, "new": {"stage": r.to_stage.as_str()}, "request_id": r.id, "validation_report": validation})))?;
        self.close_request(tx, r, &v, RequestStatus::Approved, actor, "approval policy satisfied")
    }

    /// Withdraws a pending request (only its requester).
    pub fn withdraw_promotion(&self, actor: &Principal, request_id: &str, reason: &str) -> Result<PromotionRequest> {
        self.expire_if_due(request_id)?;
        let attempt = self.request_attempt(actor.user_id().as_str(), "promotion.withdraw", request_id);
        self.governed(attempt, |tx| {
            let user = Self::acting_user(tx, actor, Action::RequestPromotion)?;
            let reason = required_text("reason", reason, 2000)?;
            let mut r = tx.get_request(request_id, true)?.ok_or_else(|| not_found(ErrorCode::RequestNotFound, "promotion request"))?;
            match r.status {
                RequestStatus::Pending => {}
                RequestStatus::Expired => return Err(Error::new(ErrorCode::RequestExpired, format!("request {} has expired", r.id))),
                s => return Err(Error::new(ErrorCode::RequestNotPending, format!("request {} is {s}, not pending", r.id))),
            }
            if r.requester != user.id {
                return Err(Error::new(ErrorCode::RoleNotPermitted, "only the requester can withdraw a promotion request"));
            }
            let v = Self::load_version(tx, &r.model_version_id)?;
            self.close_request(tx, &mut r, &v, RequestStatus::Withdrawn, user.id.as_str(), &reason)?;
            Ok(r)
        })
    }

    fn detail(&self, tx: &mut dyn Tx, r: PromotionRequest, current: Option<Sha256Digest>) -> Result<RequestDetail> {
        let current = match current {
            Some(c) => c,
            None => Self::load_version(tx, &r.model_version_id)?.recompute_content_hash(),
        };
        let sigs = tx.list_signatures(&r.id)?;
        let checked: Vec<(Signature, std::result::Result<(), String>)> =
            sigs.into_iter().map(|s| { let ok = self.signature_validity(&s, &current); (s, ok) }).collect();
        let valid: Vec<&Signature> = checked.iter().filter(|(_, ok)| ok.is_ok()).map(|(s, _)| s).collect();
        let t = tally(&r.policy, &valid);
        Ok(RequestDetail { request: r, signatures: checked, tally: t })
    }

    /// A request with its signatures, each checked.
    pub fn get_request(&self, request_id: &str) -> Result<RequestDetail> {
        self.read(|tx| {
            let r = tx.get_request(request_id, false)?.ok_or_else(|| not_found(ErrorCode::RequestNotFound, "promotion request"))?;
            self.detail(tx, r, None)
        })
    }

    /// Requests matching a filter, newest first.
    pub fn list_requests(&self, filter: &RequestFilter) -> Result<Vec<PromotionRequest>> {
        self.read(|tx| tx.list_requests(filter))
    }

    // ----- lineage and verification ------------------------------------------------------

    /// Full provenance of a version.
    pub fn lineage(&self, name: &ModelName, version: &Version) -> Result<LineageReport> {
        self.read(|tx| {
            let m = tx.get_model_by_name(name, false)?.ok_or_else(|| not_found(ErrorCode::ModelNotFound, "model"))?;
            let v = tx.find_version(&m.id, &version.precedence_key())?.ok_or_else(|| not_found(ErrorCode::VersionNotFound, "model version"))?;
            let current = v.recompute_content_hash();
            let mut requests = Vec::new();
            let mut f = RequestFilter { model: Some(name.clone()), ..Default::default() };
            f.limit = None;
            for r in tx.list_requests(&f)?.into_iter().filter(|r| r.model_version_id == v.id) {
                requests.push(self.detail(tx, r, Some(current))?);
            }
            requests.reverse();
            let transitions = tx.list_transitions(&v.id)?;
            let same_data = match &v.content.lineage.training_data_hash {
                Some(h) => tx.versions_by_data_hash(h)?.into_iter().filter(|o| o.id != v.id).map(|o| o.reference()).collect(),
                None => Vec::new(),
            };
            Ok(LineageReport {
                gaps: v.content.lineage.gaps(),
                content_hash_ok: current == v.content_hash,
                version: v,
                requests,
                transitions,
                same_data,
            })
        })
    }

    /// Every version trained on a data hash.
    pub fn versions_by_data_hash(&self, hash: &str) -> Result<Vec<ModelVersion>> {
        self.read(|tx| tx.versions_by_data_hash(hash))
    }

    /// Verifies the whole audit chain against its head.
    ///
    /// Long chains are split into contiguous segments verified in parallel, one read
    /// transaction each. A segment starts from the *stored* hash of the event before it; that
    /// is sound because the previous segment checks that very stored hash against the
    /// recomputed one, and the first failing position wins. The events up to a head once read
    /// never change (append-only), so inner segments use a first reading of the head; the last
    /// segment reads the head again in its own snapshot and verifies up to it, so concurrent
    /// appends are never mistaken for tampering.
    pub fn verify_audit(&self) -> Result<ChainReport> {
        let first_head = self.read(|tx| tx.audit_head())?.map(|h| h.0).unwrap_or(0);
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(8) as i64;
        let segments = if first_head >= self.parallel_verify_min { self.verify_segments.unwrap_or(threads).clamp(1, first_head) } else { 1 };
        let starts: Vec<i64> = (0..segments).map(|i| 1 + i * first_head / segments).collect();
        let verify_segment = |index: usize| -> Result<Segment> {
            self.read(|tx| {
                let from = starts[index];
                let is_last = index + 1 == starts.len();
                let head = if is_last { tx.audit_head()? } else { None };
                // Scan one past the head so a row appended behind the head's back is caught.
                let to = if is_last { head.as_ref().map(|h| h.0).unwrap_or(0) + 1 } else { starts[index + 1] - 1 };
                let mut v = if from == 1 {
                    ChainVerifier::new()
                } else {
                    let mut prev = None;
                    tx.scan_audit(from - 1, from - 1, &mut |row| {
                        prev = Some(row.hash.to_vec());
                        false
                    })?;
                    let mut bytes = [0u8; 32];
                    // A missing or malformed predecessor is reported by the previous segment.
                    if let Some(p) = prev {
                        let _ = hex::decode_to_slice(p, &mut bytes);
                    }
                    ChainVerifier::resume((from - 1) as u64, bytes)
                };
                tx.scan_audit(from, to, &mut |row| v.push(row))?;
                if !is_last {
                    // An inner segment must reach its last position: a missing event at a
                    // segment boundary is a deletion, not the next segment's broken link.
                    v.expect_position(to as u64);
                }
                Ok((v, head))
            })
        };
        let results: Vec<Result<Segment>> = if starts.len() == 1 {
            vec![verify_segment(0)]
        } else {
            std::thread::scope(|s| {
                let handles: Vec<_> = (0..starts.len()).map(|i| s.spawn(move || verify_segment(i))).collect();
                handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(Error::storage("verification thread panicked")))).collect()
            })
        };
        let mut results = results.into_iter().collect::<Result<Vec<_>>>()?;
        let (last, head) = results.pop().ok_or_else(|| Error::storage("no verification segment"))?;
        for (v, _) in results {
            if v.failed() {
                return Ok(v.finish(None));
            }
        }
        Ok(last.finish(head.as_ref().map(|(s, h)| (*s, h.as_str()))))
    }

    /// Checks the registry's records against what was signed: every version's stored content
    /// hash must match its content, and every Staging or Production version must be backed by
    /// an approved request into that stage whose valid signatures (server seal intact, signed
    /// over the version's current content) satisfy that request's policy. This catches edits
    /// made directly in the database that the audit chain alone would not: a stage set by
    /// hand, or approved content changed together with its hash.
    pub fn verify_records(&self) -> Result<Vec<(String, String)>> {
        self.read(|tx| {
            let mut problems = Vec::new();
            for m in tx.list_models()? {
                let requests = tx.list_requests(&RequestFilter { model: Some(m.name.clone()), ..Default::default() })?;
                for v in tx.list_versions(&m.id)? {
                    let current = v.recompute_content_hash();
                    if current != v.content_hash {
                        problems.push((v.reference(), "stored content does not match its content hash".to_owned()));
                    }
                    if !matches!(v.stage, Stage::Staging | Stage::Production) {
                        continue;
                    }
                    let mut backed = false;
                    for r in requests.iter().filter(|r| r.model_version_id == v.id && r.to_stage == v.stage && r.status == RequestStatus::Approved) {
                        let sigs = tx.list_signatures(&r.id)?;
                        let valid: Vec<&Signature> = sigs.iter().filter(|s| self.signature_validity(s, &current).is_ok()).collect();
                        if tally(&r.policy, &valid) == Tally::Approved {
                            backed = true;
                            break;
                        }
                    }
                    if !backed {
                        problems.push((v.reference(), format!("is in {} without an approval that covers its current content", v.stage)));
                    }
                }
            }
            Ok(problems)
        })
    }

    /// Verifies the server seal of every signature in the store.
    pub fn verify_signatures(&self) -> Result<SignatureReport> {
        self.read(|tx| {
            let sigs = tx.all_signatures()?;
            let failures = sigs
                .iter()
                .filter_map(|s| self.key.verify(s).err().map(|e| (s.id.clone(), e.message().to_owned())))
                .collect();
            Ok(SignatureReport { checked: sigs.len(), failures })
        })
    }

    /// Audit events matching a query.
    pub fn audit_log(&self, q: &AuditQuery) -> Result<Vec<StoredEvent>> {
        self.read(|tx| tx.query_audit(q))
    }

    /// Audit events matching a query, read by a signed-in user (who must hold `read_audit`).
    pub fn read_audit(&self, actor: &Principal, q: &AuditQuery) -> Result<Vec<StoredEvent>> {
        crate::auth::authorize(actor.role(), crate::auth::Action::ReadAudit)?;
        self.audit_log(q)
    }

    /// Convenience for the seed's flat arguments: builds the content from parts.
    pub fn content(artifact_uri: &str, artifact_sha256: Option<Sha256Digest>, metrics: Metrics, lineage: Lineage, card: ModelCard) -> VersionContent {
        VersionContent { artifact_uri: artifact_uri.to_owned(), artifact_sha256, metrics, lineage, card }
    }
}
