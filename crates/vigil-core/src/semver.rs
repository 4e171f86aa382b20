//! Semantic Versioning 2.0.0: parsing and precedence exactly as semver.org specifies.
//!
//! We do not use the `semver` crate because its `Ord` also compares build metadata (Cargo's
//! extension); SemVer 2.0.0 §10 says build metadata MUST be ignored for precedence, and the
//! registry's duplicate rule ("1.0.0+a" duplicates "1.0.0+b") depends on that.

use crate::error::{Error, ErrorCode, Result};
use std::cmp::Ordering;
use std::fmt;

/// One dot-separated pre-release identifier.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PreId {
    /// Digits only, no leading zero; compared numerically.
    Numeric(u64),
    /// Contains a letter or hyphen; compared in ASCII order.
    Alpha(String),
}

impl PartialOrd for PreId {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for PreId {
    fn cmp(&self, other: &Self) -> Ordering {
        // §11.4.3: numeric identifiers always have lower precedence than alphanumeric ones.
        match (self, other) {
            (PreId::Numeric(a), PreId::Numeric(b)) => a.cmp(b),
            (PreId::Numeric(_), PreId::Alpha(_)) => Ordering::Less,
            (PreId::Alpha(_), PreId::Numeric(_)) => Ordering::Greater,
            (PreId::Alpha(a), PreId::Alpha(b)) => a.as_bytes().cmp(b.as_bytes()),
        }
    }
}

impl fmt::Display for PreId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PreId::Numeric(n) => write!(f, "{n}"),
            PreId::Alpha(s) => f.write_str(s),
        }
    }
}

/// A parsed SemVer 2.0.0 version. `Ord` is SemVer precedence (build metadata ignored), so two
/// versions that differ only in build metadata compare `Equal` although `==` tells them apart.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Version {
    /// Major version.
    pub major: u64,
    /// Minor version.
    pub minor: u64,
    /// Patch version.
    pub patch: u64,
    /// Pre-release identifiers (empty for a release).
    pub pre: Vec<PreId>,
    /// Build metadata identifiers (ignored for precedence).
    pub build: Vec<String>,
}

fn invalid(why: &str) -> Error {
    Error::new(ErrorCode::InvalidVersion, format!("version is not valid SemVer 2.0.0: {why}"))
}

fn numeric(part: &str, what: &str) -> Result<u64> {
    if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(&format!("{what} must be a non-negative integer")));
    }
    if part.len() > 1 && part.starts_with('0') {
        return Err(invalid(&format!("{what} must not have leading zeros")));
    }
    part.parse::<u64>().map_err(|_| invalid(&format!("{what} is too large")))
}

fn ident_ok(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

impl Version {
    /// Parses `MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD]`.
    pub fn parse(s: &str) -> Result<Self> {
        if s.len() > 256 {
            return Err(invalid("longer than 256 characters"));
        }
        let (rest, build) = match s.split_once('+') {
            Some((r, b)) => (r, Some(b)),
            None => (s, None),
        };
        let (core, pre) = match rest.split_once('-') {
            Some((c, p)) => (c, Some(p)),
            None => (rest, None),
        };
        let mut nums = core.split('.');
        let (Some(ma), Some(mi), Some(pa), None) = (nums.next(), nums.next(), nums.next(), nums.next()) else {
            return Err(invalid("expected MAJOR.MINOR.PATCH"));
        };
        let major = numeric(ma, "major")?;
        let minor = numeric(mi, "minor")?;
        let patch = numeric(pa, "patch")?;
        let mut pre_ids = Vec::new();
        if let Some(p) = pre {
            for id in p.split('.') {
                if !ident_ok(id) {
                    return Err(invalid("pre-release identifiers must be non-empty [0-9A-Za-z-]"));
                }
                if id.bytes().all(|b| b.is_ascii_digit()) {
                    pre_ids.push(PreId::Numeric(numeric(id, "numeric pre-release identifier")?));
                } else {
                    pre_ids.push(PreId::Alpha(id.to_owned()));
                }
            }
        }
        let mut build_ids = Vec::new();
        if let Some(b) = build {
            for id in b.split('.') {
                if !ident_ok(id) {
                    return Err(invalid("build identifiers must be non-empty [0-9A-Za-z-]"));
                }
                build_ids.push(id.to_owned());
            }
        }
        Ok(Version { major, minor, patch, pre: pre_ids, build: build_ids })
    }

    /// The version without build metadata: two versions with the same key have equal
    /// precedence, and the registry treats them as duplicates.
    pub fn precedence_key(&self) -> String {
        let mut v = self.clone();
        v.build.clear();
        v.to_string()
    }

    /// True for a pre-release (`1.0.0-rc.1`).
    pub fn is_prerelease(&self) -> bool {
        !self.pre.is_empty()
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.major, self.minor, self.patch)
            .cmp(&(other.major, other.minor, other.patch))
            .then_with(|| match (self.pre.is_empty(), other.pre.is_empty()) {
                // §11.3: a pre-release has lower precedence than the release.
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                // §11.4: compare identifiers left to right; a shorter prefix is lower.
                (false, false) => self.pre.cmp(&other.pre),
            })
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)?;
        if !self.pre.is_empty() {
            let parts: Vec<String> = self.pre.iter().map(ToString::to_string).collect();
            write!(f, "-{}", parts.join("."))?;
        }
        if !self.build.is_empty() {
            write!(f, "+{}", self.build.join("."))?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn spec_precedence_example() {
        // The example chain from semver.org §11.
        let chain = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "2.0.0",
            "2.1.0",
            "2.1.1",
        ];
        for w in chain.windows(2) {
            let a = Version::parse(w[0]).unwrap();
            let b = Version::parse(w[1]).unwrap();
            assert!(a < b, "{} < {}", w[0], w[1]);
        }
    }

    #[test]
    fn build_metadata_ignored_for_precedence() {
        let a = Version::parse("1.0.0+20130313144700").unwrap();
        let b = Version::parse("1.0.0+exp.sha.5114f85").unwrap();
        assert_eq!(a.cmp(&b), Ordering::Equal);
        assert_ne!(a, b);
        assert_eq!(a.precedence_key(), "1.0.0");
        assert_eq!(b.to_string(), "1.0.0+exp.sha.5114f85");
    }

    #[test]
    fn valid_and_invalid() {
        for ok in ["0.0.0", "1.2.3-0.3.7", "1.0.0-x.7.z.92", "1.0.0-x-y-z.--", "1.0.0-alpha+001", "1.0.0+21AF26D3----117B344092BD"] {
            let v = Version::parse(ok).unwrap();
            assert_eq!(v.to_string(), ok);
        }
        for bad in ["", "1", "1.2", "1.2.3.4", "01.2.3", "1.02.3", "1.2.03", "1.2.3-", "1.2.3-01", "1.2.3+", "1.2.3-a..b", "v1.2.3", "1.2.3-é", " 1.2.3", "1.2.3+a+b", "99999999999999999999.0.0"] {
            assert_eq!(Version::parse(bad).unwrap_err().code(), ErrorCode::InvalidVersion, "{bad:?}");
        }
    }
}
