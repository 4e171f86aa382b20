#![allow(missing_docs, clippy::unwrap_used)]
//! Store conformance suite: every test in the `conformance!` modules runs against SQLite and
//! against PostgreSQL (`VIGIL_TEST_DATABASE_URL`), each on a fresh database.

mod support;

mod concurrency;
mod flow;
mod governance;
mod integrity;
mod monitoring;
mod storage;
mod tracking;
mod catalog;
mod validation;
mod deployments;
mod predictions;
