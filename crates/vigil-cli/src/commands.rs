//! One function per command: gather arguments and identity, call the registry, print.

use crate::cli::{AuditCmd, AuditFilter, Cli, Command, Global, ModelCmd, PolicyCmd, PromoteCmd, RegisterArgs, UserCmd};
use crate::table;
use anyhow::{Context, Result};
use serde_json::{Value, json};
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use vigil_api::manifest::Manifest;
use vigil_core::approval::{ApprovalPolicy, Meaning, RequestStatus, ServerKey};
use vigil_core::auth::{Password, Principal, Role};
use vigil_core::ids::{ModelName, SystemClock, Timestamp, UserId, UuidV7Ids};
use vigil_core::model::{Stage, parse_reference};
use vigil_core::registry::Registry;
use vigil_core::store::{AuditQuery, RequestFilter};
use vigil_core::{Error, ErrorCode};
use vigil_store::{Location, keyfile};

pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    // Usage problems are reported like invalid input: exit code 2.
    anyhow::Error::new(Error::new(ErrorCode::InvalidText, msg.into()))
}

/// The store location and key path resolved from the global flags.
pub struct Target {
    pub location: Location,
    pub key_path: PathBuf,
    pub data_dir: Option<PathBuf>,
}

pub fn default_data_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("vigil");
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".local/share/vigil"),
        None => PathBuf::from(".vigil"),
    }
}

pub fn target(g: &Global) -> Result<Target> {
    match &g.database_url {
        Some(url) => {
            let key_path = g
                .signing_key
                .clone()
                .ok_or_else(|| usage("--signing-key FILE (or VIGIL_SIGNING_KEY_FILE) is required with --database-url; every replica uses the same key"))?;
            Ok(Target { location: Location::Postgres { url: url.clone(), schema: None }, key_path, data_dir: None })
        }
        None => {
            let dir = g.data_dir.clone().unwrap_or_else(default_data_dir);
            let key_path = g.signing_key.clone().unwrap_or_else(|| keyfile::default_path(&dir));
            Ok(Target { location: Location::DataDir(dir.clone()), key_path, data_dir: Some(dir) })
        }
    }
}

/// Opens the registry. Outside `init`, an embedded store must already exist: a typo in
/// `--data-dir` should not silently create an empty registry.
pub fn open(g: &Global, initializing: bool) -> Result<Registry> {
    let t = target(g)?;
    if let (Some(dir), false) = (&t.data_dir, initializing)
        && !dir.join(vigil_store::DB_FILE).exists()
    {
        return Err(Error::new(
            ErrorCode::NotInitialized,
            format!("no vigil store in {}; run 'vigil init --admin ID --name \"Printed Name\"' first", dir.display()),
        )
        .into());
    }
    let key = if initializing { keyfile::load_or_create(&t.key_path)? } else { keyfile::load(&t.key_path)? };
    let store = vigil_store::open(&t.location)?;
    let registry = Registry::new(store, Arc::new(SystemClock), Arc::new(UuidV7Ids), Arc::new(key));
    // On an embedded store, deployments are checked against the artifact store the gateway
    // reads (`VIGIL_ARTIFACTS`, as `vigil serve` and `vigil gateway` take it, else the data
    // directory's); artifacts it does not hold are the serving gateway's to check. `vigil
    // serve` puts its own store in its place.
    Ok(match &t.data_dir {
        Some(dir) => registry.with_servable_check(servable_check(std::env::var_os("VIGIL_ARTIFACTS").map_or_else(|| dir.join("artifacts"), PathBuf::from), true)),
        None => registry,
    })
}

/// The gateway's own loading (artifacts read and verified, the graph parsed, every operator
/// known) as the registry's check of the versions a deployment adds, on the artifact store
/// `store` (a directory or `s3://…`), opened when a deployment is first checked. With
/// `absent_ok`, artifacts the store does not hold are not refused (see `deployable`).
fn servable_check(store: PathBuf, absent_ok: bool) -> vigil_core::registry::ServableCheck {
    let opened: std::sync::OnceLock<std::result::Result<vigil_gateway::Artifacts, String>> = std::sync::OnceLock::new();
    Arc::new(move |v| {
        let artifacts = opened.get_or_init(|| gateway_artifacts(&store).map_err(|e| format!("the artifact store could not be opened: {e}")));
        vigil_gateway::deployable(artifacts.as_ref().map_err(String::clone)?, v, absent_ok)
    })
}

/// `vigil serve`: binds, prints `listening on http://ADDR` once ready, and serves until
/// SIGINT or SIGTERM, then finishes the requests in flight.
async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
    }
}

/// Starts the gateway on `addr` in the current runtime; prints its address.
async fn start_gateway(registry: Arc<Registry>, artifacts: vigil_gateway::Artifacts, addr: &str, default_model: Option<String>, refresh: std::time::Duration, spool: vigil_gateway::SpoolConfig) -> Result<tokio::task::JoinHandle<std::io::Result<()>>> {
    let dir = spool.dir.clone();
    let gw = Arc::new(vigil_gateway::Gateway::with_log(registry, artifacts, default_model, spool).with_context(|| format!("opening the prediction log spool {}", dir.display()))?);
    // Load what is in Production before answering, so the first request finds it.
    let first = gw.clone();
    tokio::task::spawn_blocking(move || first.catalog.refresh()).await.context("loading the models")??;
    tokio::spawn(vigil_gateway::follow_registry(gw.clone(), refresh));
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr().context("reading the bound address")?;
    println!("gateway listening on http://{local}");
    use std::io::Write;
    let _ = std::io::stdout().flush();
    Ok(tokio::spawn(vigil_gateway::serve(listener, gw, shutdown_signal())))
}

/// The gateway's artifact store: a directory, or `s3://bucket[/prefix]` configured by the
/// `AWS_*` environment (as `vigil serve`'s).
fn gateway_artifacts(a: &std::path::Path) -> Result<vigil_gateway::Artifacts> {
    match a.to_str().filter(|a| a.starts_with("s3://")) {
        Some(url) => Ok(vigil_gateway::Artifacts::s3(vigil_store::s3::Remote::from_url(url)?).context("starting the S3 client")?),
        None => Ok(vigil_gateway::Artifacts::local(a.to_owned())),
    }
}

/// The spool settings from the command line.
fn spool_config(g: &Global, a: &crate::cli::SpoolArgs) -> Result<vigil_gateway::SpoolConfig> {
    let dir = match (&a.spool, target(g)?.data_dir) {
        (Some(d), _) => d.clone(),
        (None, Some(dir)) => dir.join("spool").join("gateway"),
        (None, None) => return Err(usage("--spool DIR (or VIGIL_SPOOL) is required with --database-url: each gateway needs a spool directory of its own")),
    };
    let mut c = vigil_gateway::SpoolConfig::new(dir);
    c.max_bytes = a.spool_max_mb.max(1).saturating_mul(1 << 20);
    Ok(c)
}

fn gateway(g: &Global, addr: &str, artifacts: Option<PathBuf>, default_model: Option<String>, refresh_ms: u64, spool: &crate::cli::SpoolArgs) -> Result<()> {
    // The gateway appends its log (whole compressed segments, a slim index) and reads small
    // rows: a small page cache keeps it lean.
    vigil_store::sqlite::set_cache_kib(2 << 10);
    let registry = Arc::new(open(g, false)?);
    let spool = spool_config(g, spool)?;
    let artifacts = match (artifacts, target(g)?.data_dir) {
        (Some(a), _) => a,
        (None, Some(dir)) => dir.join("artifacts"),
        (None, None) => return Err(usage("--artifacts DIR (or VIGIL_ARTIFACTS) is required with --database-url")),
    };
    let artifacts = gateway_artifacts(&artifacts)?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")?;
    rt.block_on(async move {
        let task = start_gateway(registry, artifacts, addr, default_model, std::time::Duration::from_millis(refresh_ms.max(50)), spool).await?;
        task.await.context("the gateway stopped")?.context("serving")?;
        Ok(())
    })
}

fn serve(g: &Global, addr: &str, artifacts: Option<PathBuf>, tls: Option<vigil_server::tls::TlsConfig>, gateway_addr: Option<String>, spool: &crate::cli::SpoolArgs) -> Result<()> {
    let registry = open(g, false)?;
    let spool = if gateway_addr.is_some() { Some(spool_config(g, spool)?) } else { None };
    let data_dir = target(g)?.data_dir;
    let s3 = artifacts.as_ref().and_then(|a| a.to_str()).filter(|a| a.starts_with("s3://")).map(str::to_owned);
    let local = match (&s3, artifacts, &data_dir) {
        // With S3, uploads are staged locally before they are sent.
        (Some(_), _, Some(dir)) => dir.join("artifact-staging"),
        (Some(_), _, None) => std::env::temp_dir().join(format!("vigil-artifact-staging-{}", std::process::id())),
        (None, Some(a), _) => a,
        (None, None, Some(dir)) => dir.join("artifacts"),
        (None, None, None) => return Err(usage("--artifacts DIR or s3://bucket/prefix (or VIGIL_ARTIFACTS) is required with --database-url")),
    };
    // Deployments made through this server are checked against the artifacts it stores.
    let registry = Arc::new(registry.with_servable_check(servable_check(s3.as_ref().map_or_else(|| local.clone(), PathBuf::from), false)));
    let mut state = vigil_server::AppState::new(registry, local).context("creating the artifact directory")?;
    if let Some(url) = &s3 {
        state = state.with_s3(url)?;
    }
    let gateway_artifacts = match (&s3, gateway_addr.is_some()) {
        (_, false) => None,
        (Some(url), true) => Some(gateway_artifacts(std::path::Path::new(url))?),
        (None, true) => Some(vigil_gateway::Artifacts::local(state.artifacts.clone())),
    };
    let state = Arc::new(state);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")?;
    rt.block_on(async move {
        if let Some(gaddr) = &gateway_addr {
            let dir = gateway_artifacts.ok_or_else(|| usage("the gateway needs an artifact store"))?;
            let spool = spool.ok_or_else(|| usage("the gateway needs a spool directory"))?;
            start_gateway(state.registry.clone(), dir, gaddr, None, std::time::Duration::from_secs(1), spool).await?;
        }
        let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
        let local = listener.local_addr().context("reading the bound address")?;
        println!("listening on {}://{local}", if tls.is_some() { "https" } else { "http" });
        use std::io::Write;
        let _ = std::io::stdout().flush();
        let shutdown = async {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
            }
        };
        vigil_server::serve_maybe_tls(listener, tls, state, shutdown).await.context("serving")?;
        Ok(())
    })
}

/// Builds a registry over an explicit store and key (used by the demo).
pub fn registry_with(location: &Location, key: ServerKey) -> Result<Registry> {
    let store = vigil_store::open(location)?;
    Ok(Registry::new(store, Arc::new(SystemClock), Arc::new(UuidV7Ids), Arc::new(key)))
}

fn read_stdin_line() -> Result<String> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).context("reading password from standard input")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

/// The acting user's password: --password-stdin, VIGIL_PASSWORD, or a prompt on a terminal.
pub fn password_for(g: &Global, who: &str) -> Result<Password> {
    if g.password_stdin {
        return Ok(Password::new(read_stdin_line()?));
    }
    if let Ok(p) = std::env::var("VIGIL_PASSWORD") {
        return Ok(Password::new(p));
    }
    if std::io::stdin().is_terminal() {
        let p = rpassword::prompt_password(format!("password for {who}: ")).context("reading password")?;
        return Ok(Password::new(p));
    }
    Err(usage("a password is required: use --password-stdin, VIGIL_PASSWORD, or run on a terminal"))
}

fn new_password(given: Option<String>, g: &Global, who: &str, allow_actor_sources: bool) -> Result<Password> {
    if let Some(p) = given {
        return Ok(Password::new(p));
    }
    if allow_actor_sources && (g.password_stdin || std::env::var_os("VIGIL_PASSWORD").is_some()) {
        return password_for(g, who);
    }
    if std::io::stdin().is_terminal() {
        let a = rpassword::prompt_password(format!("new password for {who}: ")).context("reading password")?;
        let b = rpassword::prompt_password("repeat: ").context("reading password")?;
        if a != b {
            return Err(usage("the passwords do not match"));
        }
        return Ok(Password::new(a));
    }
    Err(usage("a new password is required: use --new-password, VIGIL_NEW_PASSWORD, or run on a terminal"))
}

pub fn user_id(g: &Global) -> Result<UserId> {
    let u = g.user.as_deref().ok_or_else(|| usage("who is acting? pass --user ID or set VIGIL_USER"))?;
    Ok(UserId::parse(u)?)
}

pub fn principal(reg: &Registry, g: &Global) -> Result<Principal> {
    let id = user_id(g)?;
    let pw = password_for(g, id.as_str())?;
    Ok(reg.authenticate(&id, &pw)?)
}

/// A local read of records that may be marked `vigil.phi`: reading marked ones needs a
/// signed-in user (`--user`, with the password from the usual sources) and is recorded in the
/// audit trail, as through the server and the Python package. Unmarked records read freely.
pub fn audit_local_read(reg: &Registry, g: &Global, what: vigil_core::phi::Read<'_>, route: &str) -> Result<()> {
    if !reg.reads_phi(what)? {
        return Ok(());
    }
    if g.user.is_none() {
        return Err(usage("this reads records marked as containing PHI (vigil.phi): reads are audited, so sign in with --user ID or VIGIL_USER"));
    }
    let p = principal(reg, g)?;
    reg.audit_read(&p, what, route)?;
    Ok(())
}

pub fn emit(g: &Global, v: &Value, human: impl FnOnce()) {
    if g.json {
        println!("{v}");
    } else {
        human();
    }
}

pub fn run(cli: Cli) -> Result<ExitCode> {
    let g = &cli.global;
    if let Some(url) = g.url.clone().filter(|u| !u.is_empty()) {
        return crate::remote::run(g, &url, cli.command);
    }
    match cli.command {
        Command::Demo => crate::demo::run(g),
        Command::Gateway { addr, artifacts, default_model, refresh_ms, spool } => gateway(g, &addr, artifacts, default_model, refresh_ms, &spool).map(|()| ExitCode::SUCCESS),
        Command::Serve { addr, artifacts, demo, tls_cert, tls_key, gateway_addr, spool } => {
            let tls = match (tls_cert, tls_key) {
                (Some(c), Some(k)) => Some(vigil_server::tls::TlsConfig::from_pem_files(&c, &k)?),
                _ => None,
            };
            if demo {
                let g = Global { data_dir: g.data_dir.clone().or_else(|| (g.database_url.is_none()).then(|| PathBuf::from("vigil-demo"))), ..g.clone() };
                let fresh = match target(&g)?.data_dir {
                    Some(dir) => !dir.join(vigil_store::DB_FILE).exists(),
                    None => !open(&g, true)?.is_initialized()?,
                };
                if fresh {
                    crate::demo::run(&g)?;
                    println!();
                }
                return serve(&g, &addr, artifacts.clone(), tls, gateway_addr, &spool).map(|()| ExitCode::SUCCESS);
            }
            serve(g, &addr, artifacts, tls, gateway_addr, &spool).map(|()| ExitCode::SUCCESS)
        }
        Command::Init { admin, name, new_password: np } => {
            let reg = open(g, true)?;
            let id = UserId::parse(&admin)?;
            let pw = new_password(np, g, id.as_str(), true)?;
            let user = reg.init_admin(&id, &name, &pw)?;
            let t = target(g)?;
            let out = json!({"user": vigil_api::user(&user), "signing_key_id": reg.key_id(), "signing_key_file": t.key_path, "backend": reg.backend()});
            emit(g, &out, || {
                println!("initialised vigil ({}) with administrator {} ({})", reg.backend(), user.id, user.printed_name);
                println!("signing key {} in {}", reg.key_id(), t.key_path.display());
            });
            Ok(ExitCode::SUCCESS)
        }
        Command::User(c) => user_cmd(g, c),
        Command::Model(c) => model_cmd(g, c),
        Command::Promote(c) => promote_cmd(g, c),
        Command::Policy(c) => policy_cmd(g, c),
        Command::Audit(c) => audit_cmd(g, c),
        Command::Deploy(a) => crate::deploy::run(g, a),
        Command::Lineage { reference, data_hash } => lineage_cmd(g, reference, data_hash),
        Command::Card { reference, format, output } => crate::validate::card(g, &reference, &format, output.as_deref()),
        Command::Validate { reference, data, label, score, champion_score, sensitive, threshold } => {
            crate::validate::run(g, &reference, &data, &label, &score, champion_score.as_deref(), &sensitive, threshold)
        }
        Command::Drift(c) => crate::drift::run(g, c),
        Command::Features(c) => crate::drift::features(g, c),
    }
}

fn user_cmd(g: &Global, c: UserCmd) -> Result<ExitCode> {
    let reg = open(g, false)?;
    match c {
        UserCmd::Add { id, role, name, new_password: np } => {
            let actor = principal(&reg, g)?;
            let id = UserId::parse(&id)?;
            let role = Role::parse(&role)?;
            let pw = new_password(np, g, id.as_str(), false)?;
            let u = reg.add_user(&actor, &id, &name, role, &pw)?;
            emit(g, &vigil_api::user(&u), || println!("added {} ({}) as {}", u.id, u.printed_name, u.role));
        }
        UserCmd::List => {
            let users = reg.list_users()?;
            emit(g, &Value::Array(users.iter().map(vigil_api::user).collect()), || {
                let rows = users
                    .iter()
                    .map(|u| vec![u.id.to_string(), u.printed_name.clone(), u.role.to_string(), u.status.as_str().into(), if u.locked { "yes".into() } else { "no".into() }])
                    .collect::<Vec<_>>();
                table::print(&["USER", "PRINTED NAME", "ROLE", "STATUS", "LOCKED"], &rows);
            });
        }
        UserCmd::Disable { id, reason } => {
            let actor = principal(&reg, g)?;
            let u = reg.disable_user(&actor, &UserId::parse(&id)?, &reason)?;
            emit(g, &vigil_api::user(&u), || println!("disabled {}", u.id));
        }
        UserCmd::Unlock { id, reason } => {
            let actor = principal(&reg, g)?;
            let u = reg.unlock_user(&actor, &UserId::parse(&id)?, &reason)?;
            emit(g, &vigil_api::user(&u), || println!("unlocked {}", u.id));
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn read_manifest(path: &std::path::Path) -> Result<Manifest> {
    let text = std::fs::read_to_string(path).map_err(|e| usage(format!("cannot read manifest {}: {e}", path.display())))?;
    let is_toml = !path.extension().is_some_and(|e| e.eq_ignore_ascii_case("json"));
    Ok(Manifest::parse(&text, is_toml)?)
}

fn registration(a: &RegisterArgs) -> Result<vigil_core::registry::NewModelVersion> {
    Ok(registration_struct(a)?.into_new_version()?)
}

/// The manifest a registration sends to a server (checked the same way first).
pub fn registration_manifest(a: &RegisterArgs) -> Result<Value> {
    let m = registration_struct(a)?;
    m.clone().into_new_version()?;
    Ok(m.to_json())
}

fn registration_struct(a: &RegisterArgs) -> Result<Manifest> {
    let mut m = match &a.manifest {
        Some(p) => read_manifest(p)?,
        None => Manifest::default(),
    };
    if let Some(n) = &a.name {
        m.name = Some(ModelName::parse(n)?);
    }
    if let Some(v) = &a.version {
        m.version = Some(vigil_core::semver::Version::parse(v)?);
    }
    if let Some(t) = &a.model_type {
        m.model_type = Some(vigil_core::model::ModelType::parse(t)?);
    }
    if let Some(u) = &a.artifact_uri {
        m.artifact_uri = Some(u.clone());
    }
    if let Some(d) = &a.artifact_sha256 {
        m.artifact_sha256 = Some(vigil_core::ids::Sha256Digest::parse(d)?);
    }
    if a.owner.is_some() {
        m.owner = a.owner.clone();
    }
    if a.description.is_some() {
        m.description = a.description.clone();
    }
    for kv in &a.metrics {
        let (k, v) = kv.split_once('=').ok_or_else(|| Error::new(ErrorCode::InvalidMetric, "--metric takes KEY=VALUE"))?;
        let v: f64 = v.trim().parse().map_err(|_| Error::new(ErrorCode::InvalidMetric, format!("metric '{}' must be a number", k.trim())))?;
        m.metrics.set(k.trim(), v)?;
    }
    if m.artifact_sha256.is_none() {
        return Err(Error::new(ErrorCode::InvalidDigest, "--artifact-sha256 (or manifest field artifact_sha256) is required").into());
    }
    Ok(m)
}

fn model_cmd(g: &Global, c: ModelCmd) -> Result<ExitCode> {
    let reg = open(g, false)?;
    match c {
        ModelCmd::Register(a) => {
            // Check the arguments before asking for a password.
            let new = registration(&a)?;
            let actor = principal(&reg, g)?;
            let v = reg.register_model(&actor, new)?;
            let j = vigil_api::version(&v);
            emit(g, &j, || crate::views::registered(&j));
        }
        ModelCmd::Update { reference, manifest, reason } => {
            let (name, version) = parse_reference(&reference)?;
            let m = read_manifest(&manifest)?;
            let actor = principal(&reg, g)?;
            let v = reg.get_version(&name, &version)?;
            let v = reg.update_version_content(&actor, &v.id, m.content()?, &reason)?;
            let j = vigil_api::version(&v);
            emit(g, &j, || crate::views::updated(&j));
        }
        ModelCmd::List => {
            let models = reg.list_models()?;
            let names: Vec<String> = models.iter().map(|(m, _)| m.name.to_string()).collect();
            audit_local_read(&reg, g, vigil_core::phi::Read::Models(&names), "vigil model list")?;
            let out: Vec<Value> = models
                .iter()
                .map(|(m, vs)| {
                    let mut j = vigil_api::model(m);
                    j["versions"] = Value::Array(vs.iter().map(|v| json!({"version": v.version.to_string(), "stage": v.stage.as_str(), "model_id": v.id})).collect());
                    j
                })
                .collect();
            let out = Value::Array(out);
            emit(g, &out, || crate::views::model_list(&out));
        }
        ModelCmd::Show { reference } => {
            if reference.contains('@') {
                let (name, version) = parse_reference(&reference)?;
                let v = reg.get_version(&name, &version)?;
                audit_local_read(&reg, g, vigil_core::phi::Read::Model(name.as_str()), "vigil model show")?;
                let j = vigil_api::version(&v);
                emit(g, &j, || crate::views::version(&j));
            } else {
                let name = ModelName::parse(&reference)?;
                let m = reg.get_model(&name)?;
                audit_local_read(&reg, g, vigil_core::phi::Read::Model(name.as_str()), "vigil model show")?;
                let vs = reg.list_models()?.into_iter().find(|(x, _)| x.id == m.id).map(|(_, v)| v).unwrap_or_default();
                let mut j = vigil_api::model(&m);
                j["versions"] = Value::Array(vs.iter().map(vigil_api::version).collect());
                emit(g, &j, || crate::views::model(&j));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn promote_cmd(g: &Global, c: PromoteCmd) -> Result<ExitCode> {
    let reg = open(g, false)?;
    match c {
        PromoteCmd::Request { reference, to, justification } => {
            let (name, version) = parse_reference(&reference)?;
            let to = Stage::parse(&to)?;
            let actor = principal(&reg, g)?;
            let v = reg.get_version(&name, &version)?;
            let r = reg.request_promotion(&actor, &v.id, to, &justification)?;
            let j = vigil_api::request(&r);
            emit(g, &j, || crate::views::request_opened(&j));
        }
        PromoteCmd::Approve { request_id, meaning, comment } => sign(g, &reg, &request_id, &meaning, &comment, true)?,
        PromoteCmd::Reject { request_id, meaning, comment } => sign(g, &reg, &request_id, &meaning, &comment, false)?,
        PromoteCmd::Withdraw { request_id, reason } => {
            let actor = principal(&reg, g)?;
            let r = reg.withdraw_promotion(&actor, &request_id, &reason)?;
            emit(g, &vigil_api::request(&r), || println!("withdrew request {}", r.id));
        }
        PromoteCmd::List { status, model, limit } => {
            let filter = RequestFilter {
                status: status.as_deref().map(RequestStatus::parse).transpose()?,
                model: model.as_deref().map(ModelName::parse).transpose()?,
                limit,
            };
            let rs = reg.list_requests(&filter)?;
            let j = Value::Array(rs.iter().map(vigil_api::request).collect());
            emit(g, &j, || crate::views::request_list(&j));
        }
        PromoteCmd::Show { request_id } => {
            let d = reg.get_request(&request_id)?;
            let j = vigil_api::request_detail(&d);
            emit(g, &j, || crate::views::request_detail(&j));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn sign(g: &Global, reg: &Registry, request_id: &str, meaning: &str, comment: &str, approve: bool) -> Result<()> {
    let meaning = Meaning::parse(meaning)?;
    let id = user_id(g)?;
    // Part 11 re-authentication: the password is entered for this signature.
    let pw = password_for(g, id.as_str())?;
    let out = if approve {
        reg.approve_promotion(&id, &pw, request_id, meaning, comment)?
    } else {
        reg.reject_promotion(&id, &pw, request_id, meaning, comment)?
    };
    let mut j = vigil_api::request(&out.request);
    j["signature"] = vigil_api::signature(&out.signature);
    j["tally"] = vigil_api::tally(&out.tally);
    emit(g, &j, || crate::views::signed(&j));
    Ok(())
}

fn policy_cmd(g: &Global, c: PolicyCmd) -> Result<ExitCode> {
    let reg = open(g, false)?;
    let show = |p: &vigil_core::approval::PolicySet| crate::views::policies(&vigil_api::policies(p));
    match c {
        PolicyCmd::Show => {
            let p = reg.policies()?;
            emit(g, &vigil_api::policies(&p), || show(&p));
        }
        PolicyCmd::Validation(c) => return crate::validate::policy_cmd(g, &reg, c),
        PolicyCmd::Deployment(c) => {
            let p = match c {
                crate::cli::DeploymentPolicyCmd::Show => reg.deployment_policy()?,
                crate::cli::DeploymentPolicyCmd::Set { live_stages, shadow_stages, reason } => {
                    let parse = |v: &[String]| v.iter().filter(|s| !s.is_empty()).map(|s| Stage::parse(s)).collect::<Result<Vec<_>, _>>();
                    let policy = vigil_core::deploy::DeploymentPolicy { live_stages: parse(&live_stages)?, shadow_stages: parse(&shadow_stages)? };
                    let actor = principal(&reg, g)?;
                    reg.set_deployment_policy(&actor, &policy, &reason)?
                }
            };
            let j = p.to_json();
            emit(g, &j, || {
                let names = |v: &[Stage]| v.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ");
                println!("pinned live arms may run versions in: {}", names(&p.live_stages));
                println!("shadow arms may run versions in: {}", names(&p.shadow_stages));
            });
        }
        PolicyCmd::Set { stage, approvals, roles, eligible, expires_hours, reason } => {
            let stage = Stage::parse(&stage)?;
            let parse = |v: &[String]| v.iter().filter(|s| !s.is_empty()).map(|s| Role::parse(s)).collect::<Result<Vec<_>, _>>();
            let required_roles = parse(&roles)?;
            let eligible_roles = if eligible.is_empty() { required_roles.clone() } else { parse(&eligible)? };
            let policy = ApprovalPolicy { required_approvals: approvals, required_roles, eligible_roles, expires_after_hours: expires_hours };
            let actor = principal(&reg, g)?;
            let p = reg.set_policy(&actor, stage, policy, &reason)?;
            emit(g, &vigil_api::policies(&p), || show(&p));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn audit_query(f: &AuditFilter) -> Result<AuditQuery> {
    if let Some(o) = &f.outcome
        && o != "ok"
        && o != "denied"
    {
        return Err(Error::new(ErrorCode::InvalidFilter, "--outcome is ok or denied").into());
    }
    Ok(AuditQuery {
        model: f.model.clone(),
        version: f.version.clone(),
        actor: f.actor.clone(),
        action: f.action.clone(),
        outcome: f.outcome.clone(),
        since: f.since.as_deref().map(Timestamp::parse).transpose()?,
        until: f.until.as_deref().map(Timestamp::parse).transpose()?,
        limit: f.limit,
        after_seq: None,
    })
}

fn audit_cmd(g: &Global, c: AuditCmd) -> Result<ExitCode> {
    let reg = open(g, false)?;
    match c {
        AuditCmd::Verify => {
            let chain = reg.verify_audit()?;
            let sigs = reg.verify_signatures()?;
            let records = reg.verify_records()?;
            let ok = chain.ok() && sigs.failures.is_empty() && records.is_empty();
            let j = vigil_api::chain_report(&chain, &sigs, &records, reg.key_id());
            emit(g, &j, || crate::views::chain_report(&j));
            Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        AuditCmd::Log(f) => {
            let events = reg.audit_log(&audit_query(&f)?)?;
            let j = Value::Array(events.iter().map(vigil_api::audit_event).collect());
            emit(g, &j, || crate::views::audit_events(&j));
            Ok(ExitCode::SUCCESS)
        }
        AuditCmd::Export { filter, output } => {
            let events = reg.audit_log(&audit_query(&filter)?)?;
            let mut out: Box<dyn Write> = match &output {
                Some(p) => Box::new(std::io::BufWriter::new(std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?)),
                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            };
            for e in &events {
                writeln!(out, "{}", vigil_api::audit_event(e))?;
            }
            out.flush()?;
            if let Some(p) = output {
                eprintln!("exported {} events to {}", events.len(), p.display());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn lineage_cmd(g: &Global, reference: Option<String>, data_hash: Option<String>) -> Result<ExitCode> {
    let reg = open(g, false)?;
    if let Some(h) = data_hash {
        let vs = reg.versions_by_data_hash(&h)?;
        let names: Vec<String> = vs.iter().map(|v| v.model_name.to_string()).collect();
        audit_local_read(&reg, g, vigil_core::phi::Read::Models(&names), "vigil lineage --data-hash")?;
        let j = Value::Array(vs.iter().map(vigil_api::version).collect());
        emit(g, &j, || crate::views::versions_by_data(&j));
        return Ok(ExitCode::SUCCESS);
    }
    let reference = reference.ok_or_else(|| usage("give NAME@VERSION or --data-hash HASH"))?;
    let (name, version) = parse_reference(&reference)?;
    let l = reg.lineage(&name, &version)?;
    audit_local_read(&reg, g, vigil_core::phi::Read::Model(name.as_str()), "vigil lineage")?;
    let j = vigil_api::lineage(&l);
    emit(g, &j, || crate::views::lineage(&j));
    Ok(ExitCode::SUCCESS)
}
