//! `vigil deploy`: a model's deployment from command-line flags (A/B, canary, shadow, unit
//! key), and its display and history. The rules (who, which versions) are the core's.

use crate::cli::{DeployArgs, DeploySub, Global};
use crate::commands::{emit, open, principal, usage};
use crate::table;
use anyhow::Result;
use serde_json::Value;
use std::process::ExitCode;
use vigil_core::deploy::{Arm, ArmVersion, BUCKETS, DeploymentSpec, FullSpool, Role, UnitKey};
use vigil_core::ids::ModelName;
use vigil_core::registry::Registry;
use vigil_core::semver::Version;
use vigil_core::store::AuditQuery;

/// `VERSION` → the arm's version (`production`, or the version's id).
fn arm_version(reg: &Registry, model: &ModelName, v: &str) -> Result<ArmVersion> {
    if v == "production" {
        return Ok(ArmVersion::Production);
    }
    Ok(ArmVersion::Pinned(reg.get_version(model, &Version::parse(v)?)?.id))
}

/// `VERSION=PERCENT` (or `VERSION` with `default`) → (version, basis points).
fn share(s: &str, default: Option<f64>) -> Result<(String, u32)> {
    let (v, p) = match (s.split_once('='), default) {
        (Some((v, p)), _) => (v.trim(), p.trim().trim_end_matches('%').parse::<f64>().map_err(|_| usage("a share is VERSION=PERCENT"))?),
        (None, Some(d)) => (s.trim(), d),
        (None, None) => return Err(usage("a share is VERSION=PERCENT")),
    };
    if !(0.0..=100.0).contains(&p) {
        return Err(usage("a percentage is between 0 and 100"));
    }
    Ok((v.to_owned(), (p * 100.0).round() as u32))
}

fn arm_name(v: &str) -> String {
    if v == "production" { v.to_owned() } else { format!("v{v}") }
}

/// The new spec from the flags over the current one; `pin` turns a VERSION into an arm version.
fn spec_from(pin: &dyn Fn(&str) -> Result<ArmVersion>, a: &DeployArgs, current: &DeploymentSpec) -> Result<DeploymentSpec> {
    let mut spec = if a.reset { DeploymentSpec::production_only() } else { current.clone() };
    if !a.ab.is_empty() {
        let mut arms = Vec::new();
        for s in &a.ab {
            let (v, w) = share(s, None)?;
            arms.push(Arm { name: arm_name(&v), version: pin(&v)?, role: Role::Live, weight: w });
        }
        spec.arms.retain(|x| x.role == Role::Shadow);
        arms.append(&mut spec.arms);
        spec.arms = arms;
    }
    if let Some(c) = &a.canary {
        let shadows: Vec<Arm> = spec.arms.iter().filter(|x| x.role == Role::Shadow).cloned().collect();
        let (version, w) = if c.contains('=') {
            let (v, w) = share(c, None)?;
            (pin(&v)?, w)
        } else {
            let pct: f64 = c.trim().trim_end_matches('%').parse().map_err(|_| usage("--canary is VERSION=PERCENT, or PERCENT to ramp the current canary"))?;
            let existing = spec.arms.iter().find(|x| x.name == "canary").ok_or_else(|| usage("there is no canary to ramp: give --canary VERSION=PERCENT"))?;
            (existing.version.clone(), (pct * 100.0).round() as u32)
        };
        if w > BUCKETS {
            return Err(usage("a percentage is between 0 and 100"));
        }
        // Production first, the canary after it: its range grows downwards as it is raised,
        // so units only ever move into it.
        spec.arms = vec![
            Arm { name: "production".into(), version: ArmVersion::Production, role: Role::Live, weight: BUCKETS - w },
            Arm { name: "canary".into(), version, role: Role::Live, weight: w },
        ];
        spec.arms.extend(shadows);
    }
    if a.no_shadow {
        spec.arms.retain(|x| x.role == Role::Live);
    }
    if !a.shadow.is_empty() {
        spec.arms.retain(|x| x.role == Role::Live);
        for s in &a.shadow {
            let (v, w) = share(s, Some(100.0))?;
            spec.arms.push(Arm { name: format!("shadow-{}", arm_name(&v)), version: pin(&v)?, role: Role::Shadow, weight: w });
        }
    }
    if let Some(k) = &a.unit_key {
        spec.unit_key = if k == "none" { None } else { Some(UnitKey::parse(k)?) };
    }
    if let Some(f) = &a.full_spool {
        spec.full_spool = match f.as_str() {
            "reject" => FullSpool::Reject,
            "drop" => FullSpool::Drop,
            _ => return Err(usage("--full-spool is reject or drop")),
        };
    }
    if let Some(f) = &a.features {
        spec.features = if f.trim() == "none" {
            None
        } else {
            let v: serde_json::Value = serde_json::from_str(f).map_err(|_| usage("--features is a JSON object (or none)"))?;
            Some(vigil_core::features::FeatureLookup::from_json(&v)?)
        };
    }
    spec.check()?;
    Ok(spec)
}

fn show(reg: &Registry, g: &Global, model: &ModelName) -> Result<()> {
    let (d, arms) = reg.resolved_deployment(model)?;
    let j = vigil_api::deployment(&d, &arms);
    emit(g, &j, || {
        println!("{} deployment revision {}; unit key {}", d.model, d.revision, d.spec.unit_key.as_ref().map_or("none (random)".to_owned(), UnitKey::text));
        let rows: Vec<Vec<String>> = arms
            .iter()
            .map(|r| {
                vec![
                    r.arm.name.clone(),
                    r.arm.role.as_str().to_owned(),
                    format!("{}%", f64::from(r.arm.weight) / 100.0),
                    r.version.as_ref().map_or("-".into(), |v| format!("{} ({})", v.version, v.stage)),
                    match &r.permitted {
                        Ok(()) => "serving".into(),
                        Err(why) => format!("not served: {why}"),
                    },
                ]
            })
            .collect();
        table::print(&["ARM", "ROLE", "SHARE", "VERSION", "STATE"], &rows);
    });
    Ok(())
}

/// Runs `vigil deploy`.
pub fn run(g: &Global, a: DeployArgs) -> Result<ExitCode> {
    let reg = open(g, false)?;
    match &a.sub {
        Some(DeploySub::Show { model }) => show(&reg, g, &ModelName::parse(model)?)?,
        Some(DeploySub::History { model }) => {
            let name = ModelName::parse(model)?;
            let events = reg.audit_log(&AuditQuery { model: Some(name.to_string()), action: Some("deployment.update".into()), ..Default::default() })?;
            let history = vigil_api::deployment_history(&events);
            let j: Vec<Value> = history.as_array().cloned().unwrap_or_default();
            emit(g, &Value::Array(j.clone()), || {
                let rows: Vec<Vec<String>> = j
                    .iter()
                    .map(|e| {
                        let arms = e["arms"].as_array().map(|a| a.iter().map(|x| format!("{} {}%", x["name"].as_str().unwrap_or(""), x["percent"])).collect::<Vec<_>>().join(", ")).unwrap_or_default();
                        let what = if e["outcome"] == "ok" { arms } else { format!("refused: {}", e["refused"].as_str().unwrap_or("")) };
                        vec![e["at"].as_str().unwrap_or("").into(), e["actor"].as_str().unwrap_or("").into(), e["revision"].to_string(), what, e["reason"].as_str().unwrap_or("").into()]
                    })
                    .collect();
                table::print(&["TIME (UTC)", "BY", "REVISION", "ARMS", "REASON"], &rows);
            });
        }
        None => {
            let model = ModelName::parse(a.model.as_deref().ok_or_else(|| usage("give a model name (or show/history)"))?)?;
            let reason = a.reason.clone().ok_or_else(|| usage("--reason is required: why the deployment changes (it is recorded)"))?;
            let actor = principal(&reg, g)?;
            let current = reg.deployment(&model)?.spec;
            let spec = spec_from(&|v| arm_version(&reg, &model, v), &a, &current)?;
            reg.set_deployment(&actor, &model, &spec, &reason)?;
            show(&reg, g, &model)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `vigil deploy` against a server (`--url`): the same flags over the native API; versions go
/// up as numbers and the server resolves them.
pub fn run_remote(g: &Global, r: &crate::remote::Remote, a: DeployArgs) -> Result<ExitCode> {
    let show_json = |j: &Value| {
        emit(g, j, || {
            println!("{} deployment revision {}; unit key {}", j["model"].as_str().unwrap_or(""), j["revision"], j["unit_key"].as_str().unwrap_or("none (random)"));
            let rows: Vec<Vec<String>> = j["arms"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|x| {
                            vec![
                                x["name"].as_str().unwrap_or("").into(),
                                x["role"].as_str().unwrap_or("").into(),
                                format!("{}%", x["percent"]),
                                format!("{} ({})", x["version"].as_str().unwrap_or("-"), x["stage"].as_str().unwrap_or("-")),
                                if x["permitted"] == true { "serving".into() } else { format!("not served: {}", x["reason"].as_str().unwrap_or("")) },
                            ]
                        })
                        .collect()
                })
                .unwrap_or_default();
            table::print(&["ARM", "ROLE", "SHARE", "VERSION", "STATE"], &rows);
        })
    };
    match &a.sub {
        Some(DeploySub::Show { model }) => show_json(&r.get(&format!("/deployments/{}", ModelName::parse(model)?))?),
        Some(DeploySub::History { model }) => {
            let j = r.get(&format!("/deployments/{}/history", ModelName::parse(model)?))?;
            emit(g, &j, || println!("{}", serde_json::to_string_pretty(&j).unwrap_or_default()));
        }
        None => {
            let model = ModelName::parse(a.model.as_deref().ok_or_else(|| usage("give a model name (or show/history)"))?)?;
            let reason = a.reason.clone().ok_or_else(|| usage("--reason is required: why the deployment changes (it is recorded)"))?;
            let cur = r.get(&format!("/deployments/{model}"))?;
            let mut as_set = cur.clone();
            if let Some(arms) = as_set["arms"].as_array_mut() {
                for x in arms {
                    x["version"] = x["runs"].clone();
                }
            }
            let current = DeploymentSpec::from_json(&as_set)?;
            let spec = spec_from(&|v| Ok(if v == "production" { ArmVersion::Production } else { ArmVersion::Pinned(v.to_owned()) }), &a, &current)?;
            let j = r.send("PUT", &format!("/deployments/{model}"), &serde_json::json!({"deployment": spec.to_json(), "reason": reason}))?;
            show_json(&j);
        }
    }
    Ok(ExitCode::SUCCESS)
}
