//! Agreement with SciPy on committed fixtures (`tests/fixtures/make_fixtures.py`).

#![allow(missing_docs, clippy::unwrap_used)]

mod fixtures;
mod drift;
mod ks;
mod validation;
