//! Drift, performance and fairness statistics: pure functions over slices, no IO.
//!
//! Every function here is checked against SciPy (and, for the later metrics, scikit-learn and
//! fairlearn) on fixtures produced by `tests/fixtures/make_fixtures.py`.

pub mod kolmogorov;
pub mod drift;
pub mod fairness;
pub mod ks;
pub mod profile;
pub mod sort;
pub mod special;
pub mod validation;
