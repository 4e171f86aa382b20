//! Vigil's domain: the governed model registry, its lifecycle and approval rules, Part 11
//! electronic signatures, the hash-chained audit trail, lineage and model cards.
//!
//! This crate does no IO: no files, sockets, databases, HTTP or Python. Storage is reached
//! through the [`store::Store`] trait (implemented in `vigil-store`), time through
//! [`ids::Clock`] and record ids through [`ids::IdGenerator`], so every rule can be tested
//! deterministically. The use cases that enforce the rules live in [`registry::Registry`];
//! entry points (CLI, server, Python) are thin layers over it.

pub mod approval;
pub mod audit;
pub mod auth;
pub mod canonical;
pub mod catalog;
pub mod drift;
pub mod card;
pub mod deploy;
pub mod error;
pub mod features;
pub mod ids;
pub mod model;
pub mod monitor;
pub mod phi;
pub mod predlog;
pub mod predwire;
pub mod registry;
pub mod search;
pub mod semver;
pub mod session;
pub mod store;
pub mod tracking;
pub mod validate;

pub use error::{Error, ErrorCode, ErrorKind, Result};
