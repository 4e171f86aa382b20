//! Architecture invariants checked as tests (ARCHITECTURE.md, "Invariants"):
//! `vigil-core` does no IO and depends on no IO, web, database, CLI or Python crate, and every
//! module says what it owns in a `//!` paragraph.

#![allow(missing_docs, clippy::unwrap_used)]

use std::path::Path;

const FORBIDDEN_DEPS: &[&str] = &[
    "tokio", "sqlx", "rusqlite", "postgres", "tokio-postgres", "diesel", "reqwest", "hyper", "axum", "tower", "pyo3", "clap", "object_store", "anyhow",
];
const FORBIDDEN_IO: &[&str] = &["std::fs", "std::net", "std::process", "std::env", "File::open", "TcpStream"];

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn sources() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(manifest_dir().join("src")).expect("src dir") {
        let p = entry.expect("entry").path();
        if p.extension().is_some_and(|e| e == "rs") {
            out.push((p.display().to_string(), std::fs::read_to_string(&p).expect("read")));
        }
    }
    assert!(out.len() >= 8, "found the core's modules");
    out
}

#[test]
fn core_depends_on_no_io_crate() {
    let toml = std::fs::read_to_string(manifest_dir().join("Cargo.toml")).expect("Cargo.toml");
    let deps = toml.split("[dependencies]").nth(1).expect("dependencies").split("\n[").next().unwrap_or("");
    for line in deps.lines() {
        let name = line.split(['=', ' ']).next().unwrap_or("").trim();
        assert!(!FORBIDDEN_DEPS.contains(&name), "vigil-core must not depend on {name}");
    }
}

#[test]
fn core_source_does_no_io() {
    for (path, text) in sources() {
        for needle in FORBIDDEN_IO {
            assert!(!text.contains(needle), "{path} uses {needle}; the core does no IO");
        }
    }
}

#[test]
fn every_module_documents_what_it_owns() {
    for (path, text) in sources() {
        assert!(text.trim_start().starts_with("//!"), "{path} must open with a //! paragraph");
    }
}
