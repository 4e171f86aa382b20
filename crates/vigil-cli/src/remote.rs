//! The CLI against a server (`--url URL` or `VIGIL_URL`): the same commands, sent to the
//! native API, so the rules run once, in the server. Identity is a bearer token (`--token` or
//! `VIGIL_TOKEN`, e.g. from `POST /api/v1/tokens`) or the user and password as for local use;
//! signing still asks for the password, which goes in the request (21 CFR 11.200). Output is
//! printed from the same documents by the same functions as local output ([`crate::views`]),
//! and server errors come back with their codes, so exit codes match too.
//!
//! Commands that administer the host (`init`, `serve`, `demo`, `user`, `drift deliver`,
//! multi-file baselines) run where the store is; with `--url` they are refused with a usage
//! error.

use crate::cli::{AuditCmd, AuditFilter, Command, DriftCmd, Global, ModelCmd, PolicyCmd, PromoteCmd, ValidationPolicyCmd};
use crate::commands::{emit, password_for, registration_manifest, usage, user_id};
use crate::views;
use anyhow::{Context, Result};
use serde_json::{Value, json};
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;
use vigil_core::{Error, ErrorCode};

/// A server and the credentials to use with it.
pub struct Remote {
    base: String,
    auth: String,
    agent: ureq::Agent,
}

fn enc(t: &str) -> String {
    t.bytes().map(|b| if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

fn query(pairs: &[(&str, Option<String>)]) -> String {
    let q: Vec<String> = pairs.iter().filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", enc(v)))).collect();
    if q.is_empty() { String::new() } else { format!("?{}", q.join("&")) }
}

/// A server's error document back into a domain error (same code, same exit status).
fn server_error(status: u16, body: &Value) -> anyhow::Error {
    let code = body["error"]["code"].as_str().and_then(|c| ErrorCode::ALL.iter().find(|x| x.as_str() == c).copied());
    let message = body["error"]["message"].as_str().unwrap_or("the server refused the request").to_owned();
    match code {
        Some(c) => Error::new(c, message).into(),
        None => anyhow::anyhow!("the server answered HTTP {status}: {message}"),
    }
}

impl Remote {
    /// From `--url`/`VIGIL_URL` with `--token`/`VIGIL_TOKEN`, else `--user` and a password.
    pub fn connect(g: &Global, url: &str) -> Result<Remote> {
        let base = url.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(usage("--url takes http://HOST:PORT or https://HOST:PORT"));
        }
        if let Some(rest) = base.strip_prefix("http://") {
            let host = rest.split(['/', ':']).next().unwrap_or("");
            let host = if rest.starts_with('[') { rest.split(']').next().unwrap_or("").trim_start_matches('[') } else { host };
            if !matches!(host, "127.0.0.1" | "localhost" | "::1") {
                eprintln!("warning: {base} is plain HTTP: passwords and signatures cross the network unencrypted; use https");
            }
        }
        let auth = match &g.token {
            Some(t) => format!("Bearer {t}"),
            None => {
                use base64::Engine;
                let id = user_id(g)?;
                let pw = password_for(g, id.as_str())?;
                format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", id.as_str(), pw.expose())))
            }
        };
        let mut config = ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(600)));
        if let Some(ca) = &g.ca_cert {
            let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
            let certs: Vec<ureq::tls::Certificate<'static>> = ureq::tls::parse_pem(&pem)
                .filter_map(|item| match item {
                    Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                    _ => None,
                })
                .collect();
            if certs.is_empty() {
                return Err(usage("--ca-cert holds no PEM certificate"));
            }
            config = config.tls_config(ureq::tls::TlsConfig::builder().root_certs(ureq::tls::RootCerts::Specific(std::sync::Arc::new(certs))).build());
        }
        Ok(Remote { base, auth, agent: config.build().new_agent() })
    }

    fn finish(&self, resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Result<Value> {
        let mut resp = resp.map_err(|e| anyhow::anyhow!("cannot reach the server at {}: {e}", self.base))?;
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().context("reading the server's answer")?;
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status >= 400 {
            return Err(server_error(status, &body));
        }
        Ok(body)
    }

    /// `GET /api/v1{path}`.
    pub fn get(&self, path: &str) -> Result<Value> {
        self.finish(self.agent.get(&format!("{}/api/v1{path}", self.base)).header("authorization", &self.auth).call())
    }

    /// A JSON request with a body.
    pub fn send(&self, method: &str, path: &str, body: &Value) -> Result<Value> {
        let url = format!("{}/api/v1{path}", self.base);
        let r = match method {
            "PUT" => self.agent.put(&url),
            _ => self.agent.post(&url),
        };
        self.finish(r.header("authorization", &self.auth).header("content-type", "application/json").send(body.to_string()))
    }

    /// `POST` without a body.
    pub fn post_empty(&self, path: &str) -> Result<Value> {
        self.finish(self.agent.post(&format!("{}/api/v1{path}", self.base)).header("authorization", &self.auth).send_empty())
    }

    /// Streams a data file (CSV or Parquet) as the request body.
    pub fn upload(&self, path: &str, file: &std::path::Path) -> Result<Value> {
        let f = std::fs::File::open(file).with_context(|| format!("reading {}", file.display()))?;
        let parquet = file.extension().is_some_and(|e| e.eq_ignore_ascii_case("parquet") || e.eq_ignore_ascii_case("pq"));
        let ctype = if parquet { "application/vnd.apache.parquet" } else { "text/csv" };
        let url = format!("{}/api/v1{path}", self.base);
        self.finish(self.agent.post(&url).header("authorization", &self.auth).header("content-type", ctype).send(&f))
    }
}

fn reference(r: &str) -> Result<(String, String)> {
    let (n, v) = vigil_core::model::parse_reference(r)?;
    Ok((enc(n.as_str()), enc(&v.to_string())))
}

fn local_only(what: &str) -> anyhow::Error {
    usage(format!("'{what}' runs where the store is, not against a server: drop --url (VIGIL_URL)"))
}

/// Runs a command against the server.
pub fn run(g: &Global, url: &str, c: Command) -> Result<ExitCode> {
    match c {
        Command::Init { .. } => Err(local_only("init")),
        Command::Serve { .. } => Err(local_only("serve")),
        Command::Gateway { .. } => Err(local_only("gateway")),
        Command::Demo => Err(local_only("demo")),
        Command::User(_) => Err(local_only("user")),
        Command::Drift(DriftCmd::Deliver { .. }) => Err(local_only("drift deliver")),

        Command::Drift(DriftCmd::Baseline { ref more, .. }) if !more.is_empty() => Err(local_only("drift baseline --and-data")),
        c => {
            // Check arguments before asking for a password.
            if let Command::Model(ModelCmd::Register(a)) = &c {
                registration_manifest(a)?;
            }
            let r = Remote::connect(g, url)?;
            run_with(g, &r, c)
        }
    }
}

fn run_with(g: &Global, r: &Remote, c: Command) -> Result<ExitCode> {
    match c {
        Command::Model(m) => match m {
            ModelCmd::Register(a) => {
                let j = r.send("POST", "/models", &registration_manifest(&a)?)?;
                emit(g, &j, || views::registered(&j));
            }
            ModelCmd::List => {
                let j = r.get("/models")?;
                let out: Vec<Value> = j["models"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|mut m| {
                        let summary: Vec<Value> = m["versions"].as_array().cloned().unwrap_or_default().iter().map(|v| json!({"version": v["version"], "stage": v["stage"], "model_id": v["model_id"]})).collect();
                        m["versions"] = Value::Array(summary);
                        m
                    })
                    .collect();
                let out = Value::Array(out);
                emit(g, &out, || views::model_list(&out));
            }
            ModelCmd::Show { reference: rf } => {
                if rf.contains('@') {
                    let (n, v) = reference(&rf)?;
                    let j = r.get(&format!("/models/{n}/versions/{v}"))?;
                    emit(g, &j, || views::version(&j));
                } else {
                    let n = vigil_core::ids::ModelName::parse(&rf)?;
                    let j = r.get(&format!("/models/{}", enc(n.as_str())))?;
                    emit(g, &j, || views::model(&j));
                }
            }
            ModelCmd::Update { reference: rf, manifest, reason } => {
                let (n, v) = reference(&rf)?;
                let mut body = crate::commands::read_manifest(&manifest)?.to_json();
                body["reason"] = json!(reason);
                if let Value::Object(m) = &mut body {
                    for k in ["name", "version", "model_type", "owner", "description", "tags"] {
                        m.remove(k);
                    }
                }
                let j = r.send("PUT", &format!("/models/{n}/versions/{v}"), &body)?;
                emit(g, &j, || views::updated(&j));
            }
        },
        Command::Promote(p) => match p {
            PromoteCmd::Request { reference: rf, to, justification } => {
                let (n, v) = vigil_core::model::parse_reference(&rf)?;
                let j = r.send("POST", "/promotions", &json!({"model": n.as_str(), "version": v.to_string(), "to_stage": to, "justification": justification}))?;
                emit(g, &j, || views::request_opened(&j));
            }
            PromoteCmd::Approve { request_id, meaning, comment } => sign(g, r, &request_id, &meaning, &comment, true)?,
            PromoteCmd::Reject { request_id, meaning, comment } => sign(g, r, &request_id, &meaning, &comment, false)?,
            PromoteCmd::Withdraw { request_id, reason } => {
                let j = r.send("POST", &format!("/promotions/{}/withdraw", enc(&request_id)), &json!({"reason": reason}))?;
                emit(g, &j, || println!("withdrew request {}", j["request_id"].as_str().unwrap_or_default()));
            }
            PromoteCmd::List { status, model, limit } => {
                let q = query(&[("status", status), ("model", model), ("limit", limit.map(|l| l.to_string()))]);
                let j = r.get(&format!("/promotions{q}"))?["promotions"].clone();
                emit(g, &j, || views::request_list(&j));
            }
            PromoteCmd::Show { request_id } => {
                let j = r.get(&format!("/promotions/{}", enc(&request_id)))?;
                emit(g, &j, || views::request_detail(&j));
            }
        },
        Command::Policy(PolicyCmd::Deployment(_)) => return Err(local_only("policy deployment")),
        Command::Policy(PolicyCmd::Show) => {
            let j = r.get("/policies")?;
            emit(g, &j, || views::policies(&j));
        }
        Command::Policy(PolicyCmd::Validation(c)) => {
            let (target, set) = match c {
                ValidationPolicyCmd::Show { target } => (target, None),
                ValidationPolicyCmd::Set { target, file, reason } => (target, Some((file, reason))),
            };
            let path = match (&target.model, &target.model_type) {
                (Some(m), None) => format!("/validation-policies/model/{}", enc(m)),
                (None, Some(t)) => format!("/validation-policies/model_type/{}", enc(t)),
                _ => return Err(usage("give --model NAME or --model-type TYPE")),
            };
            let j = match set {
                Some((file, reason)) => r.send("PUT", &path, &json!({"policy": crate::validate::read_policy_file(&file)?, "reason": reason}))?,
                None => r.get(&path)?,
            };
            emit(g, &j, || views::validation_policy(&j));
        }
        Command::Policy(PolicyCmd::Set { stage, approvals, roles, eligible, expires_hours, reason }) => {
            let clean = |v: Vec<String>| v.into_iter().filter(|s| !s.is_empty()).collect::<Vec<_>>();
            let required = clean(roles);
            let eligible = if eligible.iter().all(String::is_empty) { required.clone() } else { clean(eligible) };
            let body = json!({"required_approvals": approvals, "required_roles": required, "eligible_roles": eligible, "expires_after_hours": expires_hours, "reason": reason});
            let j = r.send("PUT", &format!("/policies/{}", enc(&stage)), &body)?;
            emit(g, &j, || views::policies(&j));
        }
        Command::Audit(a) => match a {
            AuditCmd::Verify => {
                let j = r.get("/audit/verify")?;
                emit(g, &j, || views::chain_report(&j));
                return Ok(if j["ok"] == true { ExitCode::SUCCESS } else { ExitCode::from(1) });
            }
            AuditCmd::Log(f) => {
                let events = Value::Array(audit_events(r, &f)?);
                emit(g, &events, || views::audit_events(&events));
            }
            AuditCmd::Export { filter, output } => {
                let events = audit_events(r, &filter)?;
                let mut out: Box<dyn Write> = match &output {
                    Some(p) => Box::new(std::io::BufWriter::new(std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?)),
                    None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
                };
                for e in &events {
                    writeln!(out, "{e}")?;
                }
                out.flush()?;
                if let Some(p) = output {
                    eprintln!("exported {} events to {}", events.len(), p.display());
                }
            }
        },
        Command::Lineage { data_hash: Some(h), .. } => {
            let j = r.get(&format!("/lineage{}", query(&[("data_hash", Some(h))])))?["versions"].clone();
            emit(g, &j, || views::versions_by_data(&j));
        }
        Command::Lineage { reference: rf, .. } => {
            let rf = rf.ok_or_else(|| usage("give NAME@VERSION or --data-hash HASH"))?;
            let (n, v) = reference(&rf)?;
            let j = r.get(&format!("/models/{n}/versions/{v}/lineage"))?;
            emit(g, &j, || views::lineage(&j));
        }
        Command::Drift(d) => drift(g, r, d)?,
        Command::Features(crate::cli::FeaturesCmd::Load { data, feature_set, entity }) => {
            let q = query(&[("entity", Some(entity))]);
            let j = r.upload(&format!("/features/{}{q}", enc(&feature_set)), &data)?;
            emit(g, &j, || println!("feature set {feature_set}: {} features for {} entities written", j["features"], j["entities"]));
        }
        Command::Deploy(a) => return crate::deploy::run_remote(g, r, a),
        Command::Validate { reference: rf, data, label, score, champion_score, sensitive, threshold } => {
            let (n, v) = reference(&rf)?;
            let sens = sensitive.iter().filter(|s| !s.is_empty()).cloned().collect::<Vec<_>>().join(",");
            let q = query(&[
                ("label", Some(label)),
                ("score", Some(score)),
                ("champion_score", champion_score),
                ("sensitive", (!sens.is_empty()).then_some(sens)),
                ("threshold", Some(threshold.to_string())),
            ]);
            let report = r.upload(&format!("/models/{n}/versions/{v}/validate{q}"), &data)?;
            emit(g, &report, || crate::validate::print_report(&report));
            return Ok(if report["passed"] == true { ExitCode::SUCCESS } else { ExitCode::from(1) });
        }
        Command::Card { reference: rf, format, output } => {
            if !matches!(format.as_str(), "md" | "html" | "json" | "mct") {
                return Err(Error::new(ErrorCode::InvalidText, "--format is md, html, json or mct").into());
            }
            let (n, v) = reference(&rf)?;
            let doc = r.get(&format!("/models/{n}/versions/{v}/card?format=json"))?;
            crate::validate::write_card(&crate::validate::render_card(&doc, &format), &format, &rf, output.as_deref())?;
        }
        Command::Init { .. } | Command::Serve { .. } | Command::Gateway { .. } | Command::Demo | Command::User(_) => return Err(usage("this command runs where the store is")),
    }
    Ok(ExitCode::SUCCESS)
}

/// Every matching event, a page at a time (the server caps a page at 10,000).
fn audit_events(r: &Remote, f: &AuditFilter) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    let mut after: Option<i64> = None;
    loop {
        let page = match f.limit {
            Some(l) => (l as usize).saturating_sub(out.len()).min(10_000),
            None => 10_000,
        };
        if page == 0 {
            break;
        }
        let q = query(&[
            ("model", f.model.clone()),
            ("version", f.version.clone()),
            ("actor", f.actor.clone()),
            ("action", f.action.clone()),
            ("outcome", f.outcome.clone()),
            ("since", f.since.clone()),
            ("until", f.until.clone()),
            ("limit", Some(page.to_string())),
            ("after_seq", after.map(|a| a.to_string())),
        ]);
        let events = r.get(&format!("/audit{q}"))?["events"].as_array().cloned().unwrap_or_default();
        let n = events.len();
        let next = events.last().and_then(|e| e["seq"].as_i64());
        out.extend(events);
        // A short page ends the listing; so does a server that does not advance.
        if n < page || next.is_none() || next == after {
            break;
        }
        after = next;
    }
    Ok(out)
}

fn sign(g: &Global, r: &Remote, request_id: &str, meaning: &str, comment: &str, approve: bool) -> Result<()> {
    vigil_core::approval::Meaning::parse(meaning)?;
    // The signer is whoever the credentials name; the password is entered for this signature.
    let me = r.get("/me")?;
    let who = me["id"].as_str().unwrap_or_default().to_owned();
    let pw = password_for(g, &who)?;
    let action = if approve { "approve" } else { "reject" };
    let j = r.send("POST", &format!("/promotions/{}/{action}", enc(request_id)), &json!({"password": pw.expose(), "meaning": meaning, "comment": comment}))?;
    emit(g, &j, || views::signed(&j));
    Ok(())
}

fn drift(g: &Global, r: &Remote, d: DriftCmd) -> Result<()> {
    let roles = |a: &crate::cli::DataArgs| -> Result<String> {
        if a.schema.is_some() {
            return Err(usage("--schema is read locally; against a server, use --prediction-col/--id-col/--label-col"));
        }
        Ok(query(&[("prediction_col", a.prediction_col.clone()), ("id_col", a.id_col.clone()), ("label_col", a.label_col.clone())]))
    };
    match d {
        DriftCmd::Baseline { reference: rf, data, .. } => {
            let (n, v) = reference(&rf)?;
            let j = r.upload(&format!("/models/{n}/versions/{v}/drift/baseline{}", roles(&data)?), &data.data)?;
            emit(g, &j, || println!("baseline v{} for {rf}: {} rows, {} features profiled", j["baseline_version"], j["rows"], j["features"]));
        }
        DriftCmd::Add { reference: rf, data } => {
            let (n, v) = reference(&rf)?;
            let j = r.upload(&format!("/models/{n}/versions/{v}/drift/samples{}", roles(&data)?), &data.data)?;
            emit(g, &j, || println!("added batch {} ({} rows) to {rf}", j["batch_seq"], j["rows"]));
        }
        DriftCmd::Labels { reference: rf, data, id_col, label_col } => {
            let (n, v) = reference(&rf)?;
            let q = query(&[("id_col", Some(id_col)), ("label_col", Some(label_col))]);
            let j = r.upload(&format!("/models/{n}/versions/{v}/drift/labels{q}"), &data)?;
            emit(g, &j, || println!("recorded {} labels for {rf}", j["labels"]));
        }
        DriftCmd::Check { reference: rf, data, prediction_col, window_rows, since, format, output } => {
            if format != "table" && format != "json" {
                return Err(usage("against a server, --format is table or json (render HTML locally from the JSON report)"));
            }
            let (n, v) = reference(&rf)?;
            let q = query(&[("window_rows", window_rows.map(|w| w.to_string())), ("since", since), ("prediction_col", prediction_col)]);
            let path = format!("/models/{n}/versions/{v}/drift/check{q}");
            let report = match &data {
                Some(file) => r.upload(&path, file)?,
                None => r.post_empty(&path)?,
            };
            if let Some(p) = &output {
                std::fs::write(p, format!("{report}\n")).with_context(|| format!("writing {}", p.display()))?;
            }
            if g.json || format == "json" {
                println!("{report}");
            } else {
                views::drift_report(&rf, &report);
            }
        }
        DriftCmd::Alerts { reference: rf, all } => {
            let q = match &rf {
                Some(x) => {
                    let (n, v) = vigil_core::model::parse_reference(x)?;
                    query(&[("model", Some(n.to_string())), ("version", Some(v.to_string())), ("all", Some(all.to_string()))])
                }
                None => query(&[("all", Some(all.to_string()))]),
            };
            let j = r.get(&format!("/drift/alerts{q}"))?["alerts"].clone();
            emit(g, &j, || views::alerts(&j));
        }
        DriftCmd::Ack { alert_id, comment } => {
            let j = r.send("POST", &format!("/drift/alerts/{}/ack", enc(&alert_id)), &json!({"comment": comment}))?;
            emit(g, &json!({"alert_id": j["alert_id"], "state": j["state"]}), || println!("acknowledged {}", j["alert_id"].as_str().unwrap_or_default()));
        }
        DriftCmd::Config { reference: rf, set } => {
            let (n, v) = reference(&rf)?;
            let path = format!("/models/{n}/versions/{v}/drift/config");
            let j = match set {
                Some(file) => {
                    let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
                    let value: Value = serde_json::from_str(&text).map_err(|e| Error::new(ErrorCode::InvalidPolicy, format!("{}: not JSON (line {})", file.display(), e.line())))?;
                    r.send("PUT", &path, &value)?
                }
                None => r.get(&path)?,
            };
            emit(g, &j, || println!("{}", serde_json::to_string_pretty(&j).unwrap_or_default()));
        }
        DriftCmd::Deliver { .. } => return Err(local_only("drift deliver")),
    }
    Ok(())
}
