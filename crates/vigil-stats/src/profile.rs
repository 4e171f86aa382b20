//! Reference profiles and per-feature checks.
//!
//! A [`FeatureProfile`] is what a baseline keeps of one feature: the sorted finite values of a
//! numeric feature (exact, so KS p-values stay exact; merging two partitions is a merge of
//! sorted runs) or the category counts of a categorical one, plus missing and non-finite
//! counts. Checking a window against a profile never touches the raw training data again.
//! [`check_numeric`] and [`check_categorical`] compute every statistic of one feature in one
//! pass over the (sorted) current window.

use crate::drift::{self, Binning, CategoryShares, EmptyBins};
use crate::ks::KsResult;
use std::collections::BTreeMap;

/// Minimum finite values on each side for a distribution test.
pub const MIN_SAMPLES: usize = 2;

/// What a baseline keeps of one feature.
#[derive(Debug, Clone, PartialEq)]
pub enum FeatureProfile {
    /// A numeric feature.
    Numeric {
        /// Finite values, ascending.
        sorted: Vec<f64>,
        /// Missing (null or NaN) values.
        missing: u64,
        /// ±infinity values (kept out of the distribution, reported as data quality).
        non_finite: u64,
    },
    /// A categorical feature.
    Categorical {
        /// Count per category.
        counts: BTreeMap<String, u64>,
        /// Missing values.
        missing: u64,
    },
}

impl FeatureProfile {
    /// Profiles numeric values (`None` = missing; NaN counts as missing; ±inf as non-finite).
    pub fn numeric<I: IntoIterator<Item = Option<f64>>>(values: I) -> Self {
        let values = values.into_iter();
        let (mut sorted, mut missing, mut non_finite) = (Vec::with_capacity(values.size_hint().0), 0u64, 0u64);
        for v in values {
            match v {
                None => missing += 1,
                Some(x) if x.is_nan() => missing += 1,
                Some(x) if x.is_infinite() => non_finite += 1,
                Some(x) => sorted.push(x),
            }
        }
        crate::sort::sort_f64(&mut sorted);
        FeatureProfile::Numeric { sorted, missing, non_finite }
    }

    /// Profiles categorical values (`None` = missing).
    pub fn categorical<'a, I: IntoIterator<Item = Option<&'a str>>>(values: I) -> Self {
        let (mut counts, mut missing) = (BTreeMap::new(), 0u64);
        for v in values {
            match v {
                None => missing += 1,
                Some(s) => *counts.entry(s.to_owned()).or_insert(0) += 1,
            }
        }
        FeatureProfile::Categorical { counts, missing }
    }

    /// Rows profiled (including missing).
    pub fn rows(&self) -> u64 {
        match self {
            FeatureProfile::Numeric { sorted, missing, non_finite } => sorted.len() as u64 + missing + non_finite,
            FeatureProfile::Categorical { counts, missing } => counts.values().sum::<u64>() + missing,
        }
    }

    /// Share of rows that are missing or non-finite.
    pub fn missing_rate(&self) -> f64 {
        let rows = self.rows();
        if rows == 0 {
            return 0.0;
        }
        let bad = match self {
            FeatureProfile::Numeric { missing, non_finite, .. } => missing + non_finite,
            FeatureProfile::Categorical { missing, .. } => *missing,
        };
        bad as f64 / rows as f64
    }

    /// Binary encoding for storage: `VPF1`, a kind byte, counts, then the sorted values
    /// (little-endian f64) or the categories (length-prefixed UTF-8 with counts).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = b"VPF1".to_vec();
        match self {
            FeatureProfile::Numeric { sorted, missing, non_finite } => {
                out.push(b'n');
                out.extend_from_slice(&missing.to_le_bytes());
                out.extend_from_slice(&non_finite.to_le_bytes());
                out.extend_from_slice(&(sorted.len() as u64).to_le_bytes());
                out.reserve(sorted.len() * 8);
                for x in sorted {
                    out.extend_from_slice(&x.to_le_bytes());
                }
            }
            FeatureProfile::Categorical { counts, missing } => {
                out.push(b'c');
                out.extend_from_slice(&missing.to_le_bytes());
                out.extend_from_slice(&(counts.len() as u64).to_le_bytes());
                for (k, v) in counts {
                    out.extend_from_slice(&(k.len() as u32).to_le_bytes());
                    out.extend_from_slice(k.as_bytes());
                    out.extend_from_slice(&v.to_le_bytes());
                }
            }
        }
        out
    }

    /// Decodes [`FeatureProfile::encode`]; `None` if the bytes are not a profile.
    pub fn decode(bytes: &[u8]) -> Option<FeatureProfile> {
        let mut r = ByteReader(bytes);
        if r.take(4)? != b"VPF1" {
            return None;
        }
        match r.take(1)?[0] {
            b'n' => {
                let missing = r.u64()?;
                let non_finite = r.u64()?;
                let n = usize::try_from(r.u64()?).ok()?;
                let raw = r.take(n.checked_mul(8)?)?;
                let sorted: Vec<f64> = raw.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect();
                if !sorted.windows(2).all(|w| w[0] <= w[1]) || sorted.iter().any(|x| !x.is_finite()) {
                    return None;
                }
                r.end()?;
                Some(FeatureProfile::Numeric { sorted, missing, non_finite })
            }
            b'c' => {
                let missing = r.u64()?;
                let n = r.u64()?;
                let mut counts = BTreeMap::new();
                for _ in 0..n {
                    let len = r.u32()? as usize;
                    let k = std::str::from_utf8(r.take(len)?).ok()?.to_owned();
                    counts.insert(k, r.u64()?);
                }
                r.end()?;
                Some(FeatureProfile::Categorical { counts, missing })
            }
            _ => None,
        }
    }

    /// Merges the profile of another partition of the same feature (exact).
    pub fn merge(&self, other: &FeatureProfile) -> Option<FeatureProfile> {
        match (self, other) {
            (FeatureProfile::Numeric { sorted: a, missing: ma, non_finite: na }, FeatureProfile::Numeric { sorted: b, missing: mb, non_finite: nb }) => {
                let mut out = Vec::with_capacity(a.len() + b.len());
                let (mut i, mut j) = (0, 0);
                while i < a.len() && j < b.len() {
                    if a[i] <= b[j] {
                        out.push(a[i]);
                        i += 1;
                    } else {
                        out.push(b[j]);
                        j += 1;
                    }
                }
                out.extend_from_slice(&a[i..]);
                out.extend_from_slice(&b[j..]);
                Some(FeatureProfile::Numeric { sorted: out, missing: ma + mb, non_finite: na + nb })
            }
            (FeatureProfile::Categorical { counts: a, missing: ma }, FeatureProfile::Categorical { counts: b, missing: mb }) => {
                let mut counts = a.clone();
                for (k, v) in b {
                    *counts.entry(k.clone()).or_insert(0) += v;
                }
                Some(FeatureProfile::Categorical { counts, missing: ma + mb })
            }
            _ => None,
        }
    }
}

/// A cursor over bytes for the crate's little binary encodings (shared with `vigil-core`).
pub struct ByteReader<'a>(pub &'a [u8]);

impl<'a> ByteReader<'a> {
    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    /// A little-endian u64.
    pub fn u64(&mut self) -> Option<u64> {
        self.take(8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes)
    }
    /// A little-endian u32.
    pub fn u32(&mut self) -> Option<u32> {
        self.take(4).and_then(|b| b.try_into().ok()).map(u32::from_le_bytes)
    }
    /// `Some(())` if everything was consumed.
    pub fn end(&self) -> Option<()> {
        self.0.is_empty().then_some(())
    }
    /// A u32-length-prefixed UTF-8 string; `u32::MAX` encodes a missing value
    /// (`Some(None)`); `None` if malformed.
    pub fn string(&mut self) -> Option<Option<String>> {
        let len = self.u32()?;
        if len == u32::MAX {
            return Some(None);
        }
        Some(Some(String::from_utf8(self.take(len as usize)?.to_vec()).ok()?))
    }
}

/// Every statistic of one numeric feature, reference against current.
#[derive(Debug, Clone, PartialEq)]
pub struct NumericCheck {
    /// Finite reference values.
    pub n_reference: usize,
    /// Finite current values.
    pub n_current: usize,
    /// Two-sample KS (SciPy-identical).
    pub ks: KsResult,
    /// PSI under the binning.
    pub psi: f64,
    /// KL(reference ‖ current) under the binning.
    pub kl: f64,
    /// Jensen–Shannon distance under the binning.
    pub js: f64,
    /// Hellinger distance under the binning.
    pub hellinger: f64,
    /// Wasserstein-1 in the feature's units.
    pub wasserstein: f64,
    /// Wasserstein-1 divided by max(reference std (ddof 0), 1e-3) — Evidently's "normed".
    pub wasserstein_normed: f64,
    /// Wasserstein-1 divided by the reference's robust scale (IQR / 1.349, or std if the IQR is 0).
    pub wasserstein_robust: f64,
    /// Median(current) − median(reference), in the feature's units.
    pub median_shift: f64,
    /// Name of the binning convention.
    pub binning: String,
}

/// Why a feature could not be tested.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Insufficient {
    /// Fewer than [`MIN_SAMPLES`] finite values on one side.
    TooFewValues {
        /// Finite reference values.
        reference: usize,
        /// Finite current values.
        current: usize,
    },
    /// All reference and current values are the same single value.
    Constant,
    /// So many distinct categories (at least half the rows, more than 50) that the column looks
    /// like an identifier or free text, not a distribution.
    HighCardinality {
        /// Distinct categories in reference ∪ current.
        categories: usize,
    },
}

fn median(sorted: &[f64]) -> f64 {
    drift::quantile_sorted(sorted, 0.5)
}

/// Checks a numeric feature. `current` must be sorted finite values.
pub fn check_numeric(reference: &[f64], current: &[f64], binning: Binning) -> Result<NumericCheck, Insufficient> {
    if reference.len() < MIN_SAMPLES || current.len() < MIN_SAMPLES {
        return Err(Insufficient::TooFewValues { reference: reference.len(), current: current.len() });
    }
    if reference[0] == reference[reference.len() - 1] && current[0] == current[current.len() - 1] && reference[0] == current[0] {
        return Err(Insufficient::Constant);
    }
    let (d, w) = crate::ks::ks_statistic_and_wasserstein(reference, current);
    let ks = crate::ks::ks_2samp_from_statistic(d, reference.len() as u64, current.len() as u64);
    let binned = drift::bin_numeric(reference, current, binning);
    let std = drift::std_pop(reference);
    let iqr = drift::quantile_sorted(reference, 0.75) - drift::quantile_sorted(reference, 0.25);
    let robust_scale = if iqr > 0.0 { iqr / 1.349 } else { std.max(1e-3) };
    Ok(NumericCheck {
        n_reference: reference.len(),
        n_current: current.len(),
        ks,
        psi: drift::psi(&binned),
        kl: drift::kl_divergence(&binned),
        js: drift::js_distance(&binned),
        hellinger: drift::hellinger(&binned),
        wasserstein: w,
        wasserstein_normed: w / std.max(1e-3),
        wasserstein_robust: w / robust_scale,
        median_shift: median(current) - median(reference),
        binning: binning.name(),
    })
}

/// Every statistic of one categorical feature.
#[derive(Debug, Clone, PartialEq)]
pub struct CategoricalCheck {
    /// Non-missing reference values.
    pub n_reference: u64,
    /// Non-missing current values.
    pub n_current: u64,
    /// Chi-squared contingency statistic.
    pub chi2: f64,
    /// Its p-value.
    pub pvalue: f64,
    /// Degrees of freedom.
    pub dof: usize,
    /// PSI over categories (empty categories → 1e-4).
    pub psi: f64,
    /// Jensen–Shannon distance over categories.
    pub js: f64,
    /// Two-proportion z-test when the feature is binary (two categories in total).
    pub z_test: Option<(f64, f64)>,
    /// Categories seen now but never in the reference.
    pub unseen: Vec<String>,
    /// Reference categories absent now.
    pub vanished: Vec<String>,
}

/// Checks a categorical feature from category counts.
pub fn check_categorical(reference: &BTreeMap<String, u64>, current: &BTreeMap<String, u64>) -> Result<CategoricalCheck, Insufficient> {
    let (nr, nc): (u64, u64) = (reference.values().sum(), current.values().sum());
    if (nr as usize) < MIN_SAMPLES || (nc as usize) < MIN_SAMPLES {
        return Err(Insufficient::TooFewValues { reference: nr as usize, current: nc as usize });
    }
    let table = CategoryShares::new(reference, current);
    if table.categories.len() < 2 {
        return Err(Insufficient::Constant);
    }
    if table.categories.len() > 50 && table.categories.len() as u64 * 2 >= nr + nc {
        return Err(Insufficient::HighCardinality { categories: table.categories.len() });
    }
    let chi = drift::chi2_contingency(&table.reference_counts, &table.current_counts);
    let binned = table.binned(EmptyBins::Constant(1e-4));
    let z_test = (table.categories.len() == 2).then(|| drift::two_proportion_z(table.reference_counts[1], nr, table.current_counts[1], nc));
    Ok(CategoricalCheck {
        n_reference: nr,
        n_current: nc,
        chi2: chi.statistic,
        pvalue: chi.pvalue,
        dof: chi.dof,
        psi: drift::psi(&binned),
        js: drift::js_distance(&binned),
        z_test,
        unseen: table.unseen,
        vanished: table.vanished,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn profiles_separate_missing_and_non_finite_and_merge_exactly() {
        let a = FeatureProfile::numeric([Some(3.0), None, Some(f64::NAN), Some(1.0), Some(f64::INFINITY)]);
        let b = FeatureProfile::numeric([Some(2.0), Some(0.5)]);
        assert_eq!(a.rows(), 5);
        assert!((a.missing_rate() - 0.6).abs() < 1e-15);
        let m = a.merge(&b).unwrap();
        let whole = FeatureProfile::numeric([Some(3.0), None, Some(f64::NAN), Some(1.0), Some(f64::INFINITY), Some(2.0), Some(0.5)]);
        assert_eq!(m, whole);
        assert!(a.merge(&FeatureProfile::categorical([Some("x")])).is_none());
        assert_eq!(FeatureProfile::decode(&m.encode()), Some(m.clone()));
        let c = FeatureProfile::categorical([Some("é"), None, Some("b"), Some("é")]);
        assert_eq!(FeatureProfile::decode(&c.encode()), Some(c.clone()));
        let bytes = m.encode();
        for cut in [0, 3, 5, bytes.len() - 1] {
            assert_eq!(FeatureProfile::decode(&bytes[..cut]), None, "truncated at {cut}");
        }
    }

    #[test]
    fn constant_and_empty_windows_are_insufficient_not_nan() {
        assert_eq!(check_numeric(&[1.0, 1.0, 1.0], &[1.0, 1.0], Binning::default()), Err(Insufficient::Constant));
        assert!(matches!(check_numeric(&[1.0, 2.0], &[], Binning::default()), Err(Insufficient::TooFewValues { current: 0, .. })));
        // A constant reference with a moved current is a real, testable shift.
        let r = check_numeric(&[1.0, 1.0, 1.0, 1.0], &[2.0, 2.0, 2.0], Binning::default()).unwrap();
        assert!(r.ks.statistic == 1.0 && r.psi.is_finite() && r.wasserstein_normed.is_finite());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod cardinality_tests {
    use super::*;

    #[test]
    fn identifier_like_columns_are_not_tested_as_distributions() {
        let ids = |from: usize, n: usize| -> BTreeMap<String, u64> { (from..from + n).map(|i| (format!("p{i}"), 1)).collect() };
        assert_eq!(check_categorical(&ids(0, 300), &ids(300, 100)), Err(Insufficient::HighCardinality { categories: 400 }));
        let few: BTreeMap<String, u64> = [("a".to_owned(), 200), ("b".to_owned(), 200)].into();
        assert!(check_categorical(&few, &few).is_ok());
    }
}
