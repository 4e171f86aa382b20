//! Races between separate `vigil` processes on one database (SQLite file and PostgreSQL).

use crate::*;
use std::process::Child;

fn spawn_as(v: &Vigil, user: &str, args: &[&str]) -> Child {
    v.cmd().args(["--user", user]).env("VIGIL_PASSWORD", PW).args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn")
}

fn final_approvals_race(v: Vigil) {
    for round in 0..3 {
        let reference = format!("m@1.{round}.0");
        v.register("ds", ("m", &format!("1.{round}.0"))).ok();
        let rid = v.request("ds", &reference, "production");
        v.as_user("lead", &["promote", "approve", &rid]).ok();
        let children: Vec<Child> = ["clin", "clin2"].iter().map(|who| spawn_as(&v, who, &["--json", "promote", "approve", &rid])).collect();
        let runs: Vec<Run> = children.into_iter().map(|c| c.wait_with_output().expect("wait").into()).collect();
        let ok = runs.iter().filter(|r| r.code == 0).count();
        assert_eq!(ok, 1, "exactly one final approval wins: {:?}", runs.iter().map(|r| (&r.stdout, &r.stderr)).collect::<Vec<_>>());
        let loser = runs.iter().find(|r| r.code != 0).unwrap();
        assert!(loser.stdout.contains("request_not_pending"), "{}", loser.stdout);
        let lineage = v.run(&["--json", "lineage", &reference]).ok().json();
        let to_prod = lineage["stage_history"].as_array().unwrap().iter().filter(|t| t["to"] == "production").count();
        assert_eq!(to_prod, 1);
    }
    let models = v.run(&["--json", "model", "list"]).ok().json();
    let prod = models[0]["versions"].as_array().unwrap().iter().filter(|x| x["stage"] == "production").count();
    assert_eq!(prod, 1);
    assert_eq!(v.run(&["--json", "audit", "verify"]).ok().json()["ok"], true);
}

#[test]
fn processes_racing_final_approvals_sqlite() {
    final_approvals_race(Vigil::with_team());
}

#[test]
fn processes_racing_final_approvals_postgres() {
    let Some(v) = Vigil::empty_postgres() else { return eprintln!("skipped: VIGIL_TEST_DATABASE_URL not set") };
    final_approvals_race(Vigil::team(v));
}

fn production_race(v: Vigil) {
    let n = 4;
    let mut rids = Vec::new();
    for i in 0..n {
        v.register("ds", ("m", &format!("2.{i}.0"))).ok();
        let rid = v.request("ds", &format!("m@2.{i}.0"), "production");
        v.as_user("lead", &["promote", "approve", &rid]).ok();
        rids.push(rid);
    }
    let children: Vec<Child> = rids.iter().enumerate().map(|(i, rid)| spawn_as(&v, if i % 2 == 0 { "clin" } else { "clin2" }, &["promote", "approve", rid])).collect();
    // Each version was validated while nothing was in Production. The first final signature
    // releases its version; the others now lack a comparison with that champion and are
    // refused (their signatures roll back with the refusal).
    let runs: Vec<Run> = children.into_iter().map(|c| c.wait_with_output().expect("wait").into()).collect();
    assert_eq!(runs.iter().filter(|r| r.code == 0).count(), 1, "{:?}", runs.iter().map(|r| &r.stderr).collect::<Vec<_>>());
    for r in runs.iter().filter(|r| r.code != 0) {
        assert!(r.stderr.contains("validation_required") && r.stderr.contains("Production version is now"), "{}", r.stderr);
    }
    let models = v.run(&["--json", "model", "list"]).ok().json();
    let stages: Vec<&str> = models[0]["versions"].as_array().unwrap().iter().map(|x| x["stage"].as_str().unwrap()).collect();
    assert_eq!(stages.iter().filter(|s| **s == "production").count(), 1, "{stages:?}");
    assert_eq!(stages.iter().filter(|s| **s == "development").count(), n - 1, "{stages:?}");
    assert_eq!(v.run(&["--json", "audit", "verify"]).ok().json()["ok"], true);
}

#[test]
fn processes_racing_production_promotions_sqlite() {
    production_race(Vigil::with_team());
}

#[test]
fn processes_racing_production_promotions_postgres() {
    let Some(v) = Vigil::empty_postgres() else { return eprintln!("skipped: VIGIL_TEST_DATABASE_URL not set") };
    production_race(Vigil::team(v));
}

#[test]
fn eight_processes_register_into_one_file() {
    let v = Vigil::with_team();
    let children: Vec<Child> = (0..8)
        .map(|i| {
            let version = format!("{i}.0.0");
            let sha = "ab".repeat(32);
            spawn_as(&v, if i % 2 == 0 { "ds" } else { "ds2" }, &["model", "register", "shared", "--version", &version, "--type", "regression", "--artifact-uri", "s3://m", "--artifact-sha256", &sha])
        })
        .collect();
    for c in children {
        let r: Run = c.wait_with_output().expect("wait").into();
        assert_eq!(r.code, 0, "{} {}", r.stdout, r.stderr);
    }
    let models = v.run(&["--json", "model", "list"]).ok().json();
    assert_eq!(models[0]["versions"].as_array().map(Vec::len), Some(8));
    assert_eq!(v.run(&["--json", "audit", "verify"]).ok().json()["ok"], true);
}
