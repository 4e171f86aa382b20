//! Errors. Messages name operators, inputs and attributes, never a value that was scored
//! (request values may be patient data).

use std::fmt;

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// The file is not a model this engine can read (malformed, external data, no graph).
    Invalid,
    /// The graph uses an operator (or an attribute form) this engine does not run; the
    /// message names it. Raised when the model is loaded, never while serving.
    Unsupported,
    /// The request does not fit the model: missing input, wrong shape or element type,
    /// an unknown category where the model refuses those.
    BadInput,
}

/// An engine error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

impl Error {
    pub(crate) fn invalid(m: impl Into<String>) -> Self {
        Error { kind: ErrorKind::Invalid, message: m.into() }
    }

    pub(crate) fn unsupported(m: impl Into<String>) -> Self {
        Error { kind: ErrorKind::Unsupported, message: m.into() }
    }

    pub(crate) fn input(m: impl Into<String>) -> Self {
        Error { kind: ErrorKind::BadInput, message: m.into() }
    }

    /// The kind of failure.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// The message (no scored values in it).
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// Result with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
