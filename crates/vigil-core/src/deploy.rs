//! Deployments: which versions of a model answer its requests at the gateway, and how the
//! traffic is split among them.
//!
//! A deployment is a list of arms. *Live* arms answer callers and share the 10,000 buckets
//! of the traffic in contiguous ranges, in their order: A/B is two live arms with fixed
//! shares, a canary a live arm after the Production one whose share is raised step by step (so
//! raising it only moves units into the canary, never out). *Shadow* arms get a copy of a share
//! of the requests and are never returned. An arm is the Production version (symbolic: it
//! follows promotions and rollbacks) or a pinned version.
//!
//! Which versions may be deployed is a rule, checked here when the deployment changes and
//! again whenever the gateway resolves it: pinned live and shadow arms must be in a stage the
//! deployment policy permits (by default Production or Staging). Changing a deployment is an
//! `ml_lead`'s act, audited with the old and new deployment and a reason; two replicas
//! changing one deployment serialise on the model's row.
//!
//! Units (patients, encounters, sessions) are assigned by a keyed hash: HMAC-SHA256 under a
//! key derived from the server key, so the bucket of an identifier cannot be computed, nor the
//! identifier recovered, by anyone without that key. The same keyed hash is what logs carry
//! instead of the identifier.

use crate::auth::{Action, Principal};
use crate::error::{Error, ErrorCode, Result};
use crate::ids::{ModelName, Timestamp};
use crate::model::{ModelVersion, Stage};
use crate::registry::{Attempt, Registry};
use crate::store::Tx;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The traffic is split in this many buckets.
pub const BUCKETS: u32 = 10_000;

/// Whether an arm answers callers or only gets copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Answers the callers whose bucket falls in its range.
    Live,
    /// Gets a copy of its share of requests; its answer is never returned.
    Shadow,
}

impl Role {
    /// Stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Live => "live",
            Role::Shadow => "shadow",
        }
    }
}

/// Which version an arm runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArmVersion {
    /// The model's Production version, whichever it is when a request arrives.
    Production,
    /// One version, by id.
    Pinned(String),
}

/// One arm of a deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arm {
    /// Name shown in responses and logs (`production`, `v2`, `canary`, …).
    pub name: String,
    /// What it runs.
    pub version: ArmVersion,
    /// Live or shadow.
    pub role: Role,
    /// Live: its share of the buckets; shadow: the share of requests it gets a copy of.
    pub weight: u32,
}

/// Where the unit key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnitKey {
    /// A request header (lowercase name).
    Header(String),
    /// A request parameter (OIP `parameters`, MLflow `params`).
    Field(String),
}

impl UnitKey {
    /// `header:NAME` or `field:NAME`.
    pub fn parse(s: &str) -> Result<UnitKey> {
        let bad = || Error::new(ErrorCode::InvalidPolicy, "the unit key is header:NAME or field:NAME (letters, digits, '-', '_')");
        let (kind, name) = s.split_once(':').ok_or_else(bad)?;
        let name = name.trim().to_ascii_lowercase();
        if name.is_empty() || name.len() > 64 || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(bad());
        }
        match kind.trim() {
            "header" => Ok(UnitKey::Header(name)),
            "field" => Ok(UnitKey::Field(name)),
            _ => Err(bad()),
        }
    }

    /// The `header:NAME` / `field:NAME` form.
    pub fn text(&self) -> String {
        match self {
            UnitKey::Header(n) => format!("header:{n}"),
            UnitKey::Field(n) => format!("field:{n}"),
        }
    }
}

/// What the gateway does when the prediction spool is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FullSpool {
    /// Refuse the request (503): no prediction unlogged.
    Reject,
    /// Answer and drop the record (counted).
    Drop,
}

/// A deployment as set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentSpec {
    /// Arms, live ones in bucket order.
    pub arms: Vec<Arm>,
    /// How units are recognised; none: every request is assigned at random (and logged so).
    pub unit_key: Option<UnitKey>,
    /// Full-spool policy.
    pub full_spool: FullSpool,
    /// Online feature lookup for requests that carry an entity id instead of inputs.
    pub features: Option<crate::features::FeatureLookup>,
}

/// A stored deployment.
#[derive(Debug, Clone, PartialEq)]
pub struct Deployment {
    /// Model name (the endpoint).
    pub model: String,
    /// The arms and settings.
    pub spec: DeploymentSpec,
    /// Increases with every change (1 for the first).
    pub revision: i64,
    /// Who set it (None for the implicit default).
    pub updated_by: Option<String>,
    /// When.
    pub updated_at: Option<Timestamp>,
}

/// Which stages pinned arms may be in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentPolicy {
    /// Stages a pinned live arm (A/B, canary) may be in.
    pub live_stages: Vec<Stage>,
    /// Stages a shadow arm may be in.
    pub shadow_stages: Vec<Stage>,
}

impl Default for DeploymentPolicy {
    fn default() -> Self {
        DeploymentPolicy { live_stages: vec![Stage::Production, Stage::Staging], shadow_stages: vec![Stage::Production, Stage::Staging] }
    }
}

impl DeploymentPolicy {
    /// The JSON form.
    pub fn to_json(&self) -> Value {
        json!({
            "live_stages": self.live_stages.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            "shadow_stages": self.shadow_stages.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        })
    }

    /// From `{"live_stages": [...], "shadow_stages": [...]}`; keys left out keep the default.
    pub fn from_json(v: &Value) -> Result<DeploymentPolicy> {
        let bad = |m: &str| Error::new(ErrorCode::InvalidPolicy, m.to_owned());
        let obj = v.as_object().ok_or_else(|| bad("a deployment policy is an object"))?;
        if let Some(k) = obj.keys().find(|k| !matches!(k.as_str(), "live_stages" | "shadow_stages")) {
            return Err(bad(&format!("unknown deployment policy key {}", crate::ids::quote_key(k))));
        }
        let stages = |k: &str, d: Vec<Stage>| -> Result<Vec<Stage>> {
            match obj.get(k) {
                None => Ok(d),
                Some(Value::Array(a)) => a.iter().map(|s| s.as_str().ok_or_else(|| bad("stages are names")).and_then(Stage::parse)).collect(),
                Some(_) => Err(bad("stages are a list")),
            }
        };
        let d = DeploymentPolicy::default();
        Ok(DeploymentPolicy { live_stages: stages("live_stages", d.live_stages)?, shadow_stages: stages("shadow_stages", d.shadow_stages)? })
    }
}

fn arm_name_ok(n: &str) -> bool {
    !n.is_empty() && n.len() <= 40 && n.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl DeploymentSpec {
    /// The default: the Production version takes all traffic, no unit key, reject when full.
    pub fn production_only() -> DeploymentSpec {
        DeploymentSpec { arms: vec![Arm { name: "production".into(), version: ArmVersion::Production, role: Role::Live, weight: BUCKETS }], unit_key: None, full_spool: FullSpool::Reject, features: None }
    }

    /// The shape rules (the stage rules need the store: [`Registry::set_deployment`]).
    pub fn check(&self) -> Result<()> {
        let bad = |m: String| Error::new(ErrorCode::InvalidPolicy, m);
        if self.arms.is_empty() || self.arms.len() > 16 {
            return Err(bad("a deployment has 1 to 16 arms".into()));
        }
        let mut names = std::collections::HashSet::new();
        for a in &self.arms {
            if !arm_name_ok(&a.name) || !names.insert(a.name.as_str()) {
                return Err(bad("arm names are unique, up to 40 letters, digits, '-', '_' or '.'".into()));
            }
            if a.weight > BUCKETS || (a.role == Role::Shadow && a.weight == 0) {
                return Err(bad(format!("arm {}: a share is between 0.01% and 100%", a.name)));
            }
        }
        let live: u32 = self.arms.iter().filter(|a| a.role == Role::Live).map(|a| a.weight).sum();
        if live != BUCKETS {
            return Err(bad(format!("the live arms' shares add up to {}%, not 100%", f64::from(live) / 100.0)));
        }
        Ok(())
    }

    /// The JSON form (shares in percent).
    pub fn to_json(&self) -> Value {
        json!({
            "arms": self.arms.iter().map(|a| json!({
                "name": a.name,
                "version": match &a.version { ArmVersion::Production => "production".to_owned(), ArmVersion::Pinned(id) => id.clone() },
                "role": a.role.as_str(),
                "percent": f64::from(a.weight) / 100.0,
            })).collect::<Vec<_>>(),
            "unit_key": self.unit_key.as_ref().map(UnitKey::text),
            "full_spool": match self.full_spool { FullSpool::Reject => "reject", FullSpool::Drop => "drop" },
            "features": self.features.as_ref().map(crate::features::FeatureLookup::to_json),
        })
    }

    /// From the JSON form. Versions are `production` or a version id (`mv_…`).
    pub fn from_json(v: &Value) -> Result<DeploymentSpec> {
        let bad = |m: &str| Error::new(ErrorCode::InvalidPolicy, m.to_owned());
        let arms = v
            .get("arms")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("a deployment needs 'arms'"))?
            .iter()
            .map(|a| {
                let name = a.get("name").and_then(Value::as_str).ok_or_else(|| bad("each arm needs a name"))?.to_owned();
                let version = match a.get("version").and_then(Value::as_str).ok_or_else(|| bad("each arm needs a version"))? {
                    "production" => ArmVersion::Production,
                    id => ArmVersion::Pinned(id.to_owned()),
                };
                let role = match a.get("role").and_then(Value::as_str).unwrap_or("live") {
                    "live" => Role::Live,
                    "shadow" => Role::Shadow,
                    _ => return Err(bad("an arm's role is live or shadow")),
                };
                let pct = a.get("percent").and_then(Value::as_f64).ok_or_else(|| bad("each arm needs a percent"))?;
                if !(0.0..=100.0).contains(&pct) {
                    return Err(bad("a share is between 0% and 100%"));
                }
                Ok(Arm { name, version, role, weight: (pct * 100.0).round() as u32 })
            })
            .collect::<Result<Vec<_>>>()?;
        let unit_key = match v.get("unit_key") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(UnitKey::parse(s)?),
            Some(_) => return Err(bad("unit_key is header:NAME or field:NAME")),
        };
        let full_spool = match v.get("full_spool").and_then(Value::as_str).unwrap_or("reject") {
            "reject" => FullSpool::Reject,
            "drop" => FullSpool::Drop,
            _ => return Err(bad("full_spool is reject or drop")),
        };
        let features = match v.get("features") {
            None | Some(Value::Null) => None,
            Some(f) => Some(crate::features::FeatureLookup::from_json(f)?),
        };
        let spec = DeploymentSpec { arms, unit_key, full_spool, features };
        spec.check()?;
        Ok(spec)
    }

    /// The live arm owning `bucket`: arms own contiguous ranges in their order.
    pub fn live_arm(&self, bucket: u32) -> Option<usize> {
        let mut hi = 0u32;
        for (i, a) in self.arms.iter().enumerate().filter(|(_, a)| a.role == Role::Live) {
            hi += a.weight;
            if bucket < hi {
                return Some(i);
            }
        }
        None
    }
}

/// HMAC-SHA256 (RFC 2104).
#[cfg(test)]
fn hmac(key: &[u8], msg: &[u8]) -> [u8; 32] {
    UnitMac::new(key).mac(&[msg])
}

/// HMAC-SHA256 (RFC 2104) under one key, whose two padded key blocks are absorbed once: a
/// MAC then takes two SHA-256 compressions, not four (the gateway computes one for every
/// request routed by a unit key).
#[derive(Clone)]
pub(crate) struct UnitMac {
    inner: Sha256,
    outer: Sha256,
}

impl UnitMac {
    pub(crate) fn new(key: &[u8]) -> UnitMac {
        let mut k = [0u8; 64];
        if key.len() > 64 {
            k[..32].copy_from_slice(&Sha256::digest(key));
        } else {
            k[..key.len()].copy_from_slice(key);
        }
        let (mut inner, mut outer) = (Sha256::new(), Sha256::new());
        inner.update(k.map(|b| b ^ 0x36));
        outer.update(k.map(|b| b ^ 0x5c));
        UnitMac { inner, outer }
    }

    /// The MAC of the concatenation of `parts`.
    fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut inner = self.inner.clone();
        for p in parts {
            inner.update(p);
        }
        let mut outer = self.outer.clone();
        outer.update(inner.finalize());
        outer.finalize().into()
    }
}

/// The key unit identifiers are hashed under, derived from the server key.
pub(crate) fn unit_key_of(key: &crate::approval::ServerKey) -> [u8; 32] {
    Sha256::digest([b"vigil.unit-key/1".as_slice(), &key.seed()].concat()).into()
}

/// A unit's keyed hash (what logs carry instead of the identifier: the HMAC's first 128 bits
/// in hex, 32 digits) and its bucket. 128 bits tell units apart as well as the whole MAC
/// would (that two of a billion units share one has a chance of about 10^-21), and the
/// other half was 32 bytes of every A/B record that compress poorly. (Records logged before
/// this carry all 64 digits; their first 32 are the same.)
pub fn unit_hash(key: &[u8; 32], model: &str, unit: &str) -> (UnitHash, u32) {
    keyed_unit_hash(&UnitMac::new(key), model, unit)
}

/// A unit's keyed hash as text: 32 lowercase hex digits, held inline (routing a request makes
/// one, and a heap string for it was an allocation and a free on every keyed request).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct UnitHash([u8; UNIT_HASH_BYTES * 2]);

impl UnitHash {
    /// The digits.
    pub fn as_str(&self) -> &str {
        // Only ever hex digits (see `keyed_unit_hash`).
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl std::fmt::Debug for UnitHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn keyed_unit_hash(key: &UnitMac, model: &str, unit: &str) -> (UnitHash, u32) {
    let mac = unit_mac(key, model, unit);
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = [0u8; UNIT_HASH_BYTES * 2];
    for (pair, &b) in text.chunks_exact_mut(2).zip(&mac[..UNIT_HASH_BYTES]) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 15)];
    }
    (UnitHash(text), bucket_of(&mac))
}

/// The bytes of the HMAC a unit's logged hash keeps.
const UNIT_HASH_BYTES: usize = 16;

/// The MAC of `model`, a zero byte and `unit`.
fn unit_mac(key: &UnitMac, model: &str, unit: &str) -> [u8; 32] {
    key.mac(&[model.as_bytes(), &[0], unit.as_bytes()])
}

fn bucket_of(mac: &[u8; 32]) -> u32 {
    let mut first = [0u8; 8];
    first.copy_from_slice(&mac[..8]);
    (u64::from_be_bytes(first) % u64::from(BUCKETS)) as u32
}

/// A deployment arm with the version it runs now, and whether serving it is permitted.
#[derive(Debug, Clone)]
pub struct ResolvedArm {
    /// The arm.
    pub arm: Arm,
    /// The version (None: the model has no Production version now).
    pub version: Option<ModelVersion>,
    /// Ok, or why this arm may not be served now (its version's stage).
    pub permitted: std::result::Result<(), String>,
}

fn setting_key(model_id: &str) -> String {
    format!("deployment/{model_id}")
}

const POLICY_KEY: &str = "deployment_policy";

impl Registry {
    fn load_deployment(tx: &mut dyn Tx, model_id: &str, name: &str) -> Result<Deployment> {
        Ok(match tx.get_setting(&setting_key(model_id))? {
            Some(s) => {
                let v: Value = serde_json::from_str(&s).map_err(|_| Error::storage("a stored deployment is unreadable"))?;
                Deployment {
                    model: name.to_owned(),
                    spec: DeploymentSpec::from_json(&v["spec"])?,
                    revision: v["revision"].as_i64().unwrap_or(0),
                    updated_by: v["updated_by"].as_str().map(str::to_owned),
                    updated_at: v["updated_at"].as_str().and_then(|t| Timestamp::parse(t).ok()),
                }
            }
            None => Deployment { model: name.to_owned(), spec: DeploymentSpec::production_only(), revision: 0, updated_by: None, updated_at: None },
        })
    }

    fn load_deployment_policy(tx: &mut dyn Tx) -> Result<DeploymentPolicy> {
        match tx.get_setting(POLICY_KEY)? {
            Some(s) => DeploymentPolicy::from_json(&serde_json::from_str(&s).map_err(|_| Error::storage("the stored deployment policy is unreadable"))?),
            None => Ok(DeploymentPolicy::default()),
        }
    }

    /// Resolves arms to versions and checks each against the policy (inside `tx`).
    fn resolve_arms(tx: &mut dyn Tx, model_id: &str, spec: &DeploymentSpec, policy: &DeploymentPolicy) -> Result<Vec<ResolvedArm>> {
        let production = tx.versions_in_stage(model_id, Stage::Production)?.into_iter().next();
        spec.arms
            .iter()
            .map(|a| {
                let (version, permitted) = match &a.version {
                    ArmVersion::Production => {
                        let p = production.clone();
                        let ok = if p.is_some() { Ok(()) } else { Err("the model has no version in Production".to_owned()) };
                        (p, ok)
                    }
                    ArmVersion::Pinned(id) => {
                        let v = Self::load_version(tx, id).ok().filter(|v| v.model_id == model_id);
                        let Some(v) = v else { return Err(Error::new(ErrorCode::VersionNotFound, format!("arm {}: no version of this model with that id", a.name))) };
                        let allowed = if a.role == Role::Live { &policy.live_stages } else { &policy.shadow_stages };
                        let ok = if allowed.contains(&v.stage) {
                            Ok(())
                        } else {
                            Err(format!("{} is in {}; the deployment policy lets {} arms run versions in {}", v.reference(), v.stage, a.role.as_str(), allowed.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" or ")))
                        };
                        (Some(v), ok)
                    }
                };
                Ok(ResolvedArm { arm: a.clone(), version, permitted })
            })
            .collect()
    }

    /// The deployment policy in force (the default when none was set).
    pub fn deployment_policy(&self) -> Result<DeploymentPolicy> {
        self.read(|tx| Self::load_deployment_policy(tx))
    }

    /// A model's deployment (the Production-only default when none was set).
    pub fn deployment(&self, model: &ModelName) -> Result<Deployment> {
        self.read(|tx| {
            let m = tx.get_model_by_name(model, false)?.ok_or_else(|| Error::new(ErrorCode::ModelNotFound, "model not found"))?;
            Self::load_deployment(tx, &m.id, model.as_str())
        })
    }

    /// A model's deployment with every arm resolved to the version it runs now and checked
    /// against the deployment policy now (the gateway serves only permitted arms).
    pub fn resolved_deployment(&self, model: &ModelName) -> Result<(Deployment, Vec<ResolvedArm>)> {
        self.read(|tx| {
            let m = tx.get_model_by_name(model, false)?.ok_or_else(|| Error::new(ErrorCode::ModelNotFound, "model not found"))?;
            let d = Self::load_deployment(tx, &m.id, model.as_str())?;
            let policy = Self::load_deployment_policy(tx)?;
            let arms = Self::resolve_arms(tx, &m.id, &d.spec, &policy)?;
            Ok((d, arms))
        })
    }

    /// Sets a model's deployment: an `ml_lead`'s act with a reason, refused unless every arm's
    /// version is one the deployment policy permits now; audited with the old and new
    /// deployment. Returns the stored deployment.
    pub fn set_deployment(&self, actor: &Principal, model: &ModelName, spec: &DeploymentSpec, reason: &str) -> Result<Deployment> {
        let attempt = Attempt { actor: actor.user_id().as_str(), action: "deployment.update", entity_type: "registered_model", entity_id: model.as_str(), model: Some(model.to_string()), version: None };
        if let Some(check) = &self.servable {
            // The versions' artifacts are read before the transaction (never holding the
            // store's write lock over a read from an artifact store). What the transaction
            // refuses anyway (the role, the policy, a bad spec) is left to it.
            // Only versions the change adds are checked: an arm already deployed (a canary
            // being ramped or taken down) is not held to a check it may fail now.
            let pinned = self.read(|tx| {
                Self::acting_user(tx, actor, Action::Deploy)?;
                spec.check()?;
                let m = tx.get_model_by_name(model, false)?.ok_or_else(|| Error::new(ErrorCode::ModelNotFound, "model not found"))?;
                let old = Self::load_deployment(tx, &m.id, model.as_str())?;
                let policy = Self::load_deployment_policy(tx)?;
                Ok((Self::resolve_arms(tx, &m.id, spec, &policy)?, old.spec))
            });
            let (arms, old) = pinned.unwrap_or_else(|_| (Vec::new(), DeploymentSpec::production_only()));
            for r in arms {
                if let (ArmVersion::Pinned(_), Some(v), Ok(())) = (&r.arm.version, &r.version, &r.permitted)
                    && !old.arms.iter().any(|a| a.version == r.arm.version)
                    && let Err(why) = check(v)
                {
                    let e = Error::new(ErrorCode::ModelNotServable, format!("arm {}: version {} cannot be deployed: {why}", r.arm.name, v.version));
                    self.audit_denial(&attempt, &e)?;
                    return Err(e);
                }
            }
        }
        self.governed(attempt, |tx| {
            let user = Self::acting_user(tx, actor, Action::Deploy)?;
            let reason = crate::ids::required_text("reason", reason, 2000)?;
            spec.check()?;
            // The model's row lock serialises changes from every replica.
            let m = tx.get_model_by_name(model, true)?.ok_or_else(|| Error::new(ErrorCode::ModelNotFound, "model not found"))?;
            let old = Self::load_deployment(tx, &m.id, model.as_str())?;
            let policy = Self::load_deployment_policy(tx)?;
            for r in Self::resolve_arms(tx, &m.id, spec, &policy)? {
                // The symbolic Production arm is always allowed (it runs whatever is approved).
                if let (Err(why), ArmVersion::Pinned(_)) = (r.permitted, &r.arm.version) {
                    return Err(Error::new(ErrorCode::DeploymentNotPermitted, format!("arm {}: {why}", r.arm.name)));
                }
            }
            let now = self.clock.now();
            let new = Deployment { model: model.to_string(), spec: spec.clone(), revision: old.revision + 1, updated_by: Some(user.id.to_string()), updated_at: Some(now) };
            let stored = json!({"spec": spec.to_json(), "revision": new.revision, "updated_by": user.id.as_str(), "updated_at": now.to_rfc3339()});
            tx.put_setting(&setting_key(&m.id), &stored.to_string())?;
            let mut e = self.event(
                user.id.as_str(),
                "deployment.update",
                "registered_model",
                model.as_str(),
                json!({"old": {"revision": old.revision, "spec": old.spec.to_json()}, "new": {"revision": new.revision, "spec": spec.to_json()}, "reason": reason}),
            );
            e.model = Some(model.to_string());
            tx.append_audit(e)?;
            Ok(new)
        })
    }

    /// Sets which stages pinned arms may run (administrators; audited).
    pub fn set_deployment_policy(&self, actor: &Principal, policy: &DeploymentPolicy, reason: &str) -> Result<DeploymentPolicy> {
        let attempt = Attempt { actor: actor.user_id().as_str(), action: "deployment_policy.update", entity_type: "policy", entity_id: "deployment", model: None, version: None };
        self.governed(attempt, |tx| {
            Self::acting_user(tx, actor, Action::ManagePolicy)?;
            let reason = crate::ids::required_text("reason", reason, 2000)?;
            let old = Self::load_deployment_policy(tx)?;
            tx.put_setting(POLICY_KEY, &policy.to_json().to_string())?;
            tx.append_audit(self.event(actor.user_id().as_str(), "deployment_policy.update", "policy", "deployment", json!({"old": old.to_json(), "new": policy.to_json(), "reason": reason})))?;
            Ok(policy.clone())
        })
    }

    /// A spec whose arms name versions as `production`, a version string (`1.1.0`) or an id,
    /// with every version resolved to its id (the stored form).
    pub fn pin_versions(&self, model: &ModelName, mut spec: DeploymentSpec) -> Result<DeploymentSpec> {
        for a in &mut spec.arms {
            if let ArmVersion::Pinned(text) = &a.version
                && !text.starts_with("mv_")
            {
                let v = crate::semver::Version::parse(text).map_err(|_| Error::new(ErrorCode::InvalidPolicy, format!("arm {}: the version is production, a version number or an id", a.name)))?;
                a.version = ArmVersion::Pinned(self.get_version(model, &v)?.id);
            }
        }
        Ok(spec)
    }

    /// The keyed hash of a unit identifier and its bucket, under this server's key.
    pub fn unit_bucket(&self, model: &str, unit: &str) -> (UnitHash, u32) {
        keyed_unit_hash(&self.unit_mac, model, unit)
    }

    /// Only the bucket of a unit identifier (routing needs no more).
    pub fn unit_bucket_only(&self, model: &str, unit: &str) -> u32 {
        bucket_of(&unit_mac(&self.unit_mac, model, unit))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        let mac = hmac(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(hex::encode(mac), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }

    #[test]
    fn hmac_matches_rfc_4231_with_a_key_longer_than_a_block_and_a_key_reused() {
        // Case 6: a 131-byte key (hashed first).
        let key = UnitMac::new(&[0xaa; 131]);
        let msg = b"Test Using Larger Than Block-Size Key - Hash Key First";
        assert_eq!(hex::encode(key.mac(&[msg])), "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
        // Case 1, twice with the same keyed state, and in parts: the state is never consumed.
        let key = UnitMac::new(&[0x0b; 20]);
        for _ in 0..2 {
            assert_eq!(hex::encode(key.mac(&[b"Hi There"])), "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
            assert_eq!(hex::encode(key.mac(&[b"Hi", b"", b" There"])), "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
        }
    }

    #[test]
    fn raising_a_canary_only_moves_units_into_it() {
        let spec = |c: u32| DeploymentSpec {
            arms: vec![
                Arm { name: "production".into(), version: ArmVersion::Production, role: Role::Live, weight: BUCKETS - c },
                Arm { name: "canary".into(), version: ArmVersion::Pinned("mv_x".into()), role: Role::Live, weight: c },
            ],
            unit_key: None,
            full_spool: FullSpool::Reject,
            features: None,
        };
        let key = [7u8; 32];
        let (s10, s20) = (spec(1000), spec(2000));
        let (mut in10, mut in20) = (0, 0);
        for i in 0..20_000 {
            let (_, b) = unit_hash(&key, "m", &format!("patient-{i}"));
            let (a, c) = (s10.live_arm(b).unwrap(), s20.live_arm(b).unwrap());
            in10 += usize::from(a == 1);
            in20 += usize::from(c == 1);
            assert!(!(a == 1 && c == 0), "a unit left the canary when it grew");
        }
        assert!((1800..2200).contains(&in10), "{in10}");
        assert!((3700..4300).contains(&in20), "{in20}");
        // The same unit always lands in the same bucket; another key, another bucket.
        assert_eq!(unit_hash(&key, "m", "p1"), unit_hash(&key, "m", "p1"));
        // The hash is the HMAC's first 128 bits in lowercase hex, keyed by the model name and
        // the unit; the bucket comes from the same HMAC.
        let mac = hmac(&key, b"m\0p1");
        assert_eq!(unit_hash(&key, "m", "p1").0.as_str(), hex::encode(&mac[..16]));
        assert_eq!(format!("{:?}", unit_hash(&key, "m", "p1").0), hex::encode(&mac[..16]));
        assert_eq!(unit_hash(&key, "m", "p1").1, bucket_of(&mac));
        assert_ne!(unit_hash(&key, "m", "p1").0, unit_hash(&[8u8; 32], "m", "p1").0);
    }

    #[test]
    fn shapes_are_checked() {
        let j = json!({"arms": [{"name": "a", "version": "production", "percent": 60}, {"name": "b", "version": "mv_1", "percent": 30}]});
        assert!(DeploymentSpec::from_json(&j).unwrap_err().message().contains("90%"));
        let j = json!({"arms": [{"name": "a", "version": "production", "percent": 100}, {"name": "s", "version": "mv_1", "role": "shadow", "percent": 0}]});
        assert!(DeploymentSpec::from_json(&j).is_err());
        let j = json!({"arms": [{"name": "a b", "version": "production", "percent": 100}]});
        assert!(DeploymentSpec::from_json(&j).is_err());
        let j = json!({"arms": [{"name": "a", "version": "production", "percent": 100}], "unit_key": "header:X-Patient-Id"});
        assert_eq!(DeploymentSpec::from_json(&j).unwrap().unit_key, Some(UnitKey::Header("x-patient-id".into())));
        assert!(UnitKey::parse("cookie:x").is_err());
        let round = DeploymentSpec::from_json(&DeploymentSpec::production_only().to_json()).unwrap();
        assert_eq!(round, DeploymentSpec::production_only());
    }
}
