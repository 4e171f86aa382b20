//! The small SQL surface both backends share: parameters, result cells, error classes, and the
//! [`Conn`] trait the generic transaction code runs on.
//!
//! Every query is written once, with PostgreSQL's `$1` placeholders; the SQLite connection
//! rewrites them to SQLite's equivalent `?1` form. Column types are restricted to TEXT and
//! BIGINT so the same text runs on both databases.

use std::fmt;

/// A query parameter. Typed even when NULL, because PostgreSQL checks parameter types.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    /// TEXT (or NULL).
    Text(Option<String>),
    /// BIGINT (or NULL).
    Int(Option<i64>),
    /// BLOB in SQLite, BYTEA in PostgreSQL.
    Bytes(Option<Vec<u8>>),
}

impl From<Vec<u8>> for Param {
    fn from(b: Vec<u8>) -> Self {
        Param::Bytes(Some(b))
    }
}

impl From<Option<Vec<u8>>> for Param {
    fn from(b: Option<Vec<u8>>) -> Self {
        Param::Bytes(b)
    }
}

impl From<Option<i64>> for Param {
    fn from(n: Option<i64>) -> Self {
        Param::Int(n)
    }
}

impl From<&str> for Param {
    fn from(s: &str) -> Self {
        Param::Text(Some(s.to_owned()))
    }
}
impl From<String> for Param {
    fn from(s: String) -> Self {
        Param::Text(Some(s))
    }
}
impl From<&String> for Param {
    fn from(s: &String) -> Self {
        Param::Text(Some(s.clone()))
    }
}
impl From<Option<String>> for Param {
    fn from(s: Option<String>) -> Self {
        Param::Text(s)
    }
}
impl From<Option<&str>> for Param {
    fn from(s: Option<&str>) -> Self {
        Param::Text(s.map(str::to_owned))
    }
}
impl From<i64> for Param {
    fn from(i: i64) -> Self {
        Param::Int(Some(i))
    }
}

/// Builds an array of `Param`s from mixed values.
#[macro_export]
macro_rules! params {
    ($($p:expr),* $(,)?) => { [$($crate::sql::Param::from($p)),*] };
}

/// One result cell.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// NULL.
    Null,
    /// An integer.
    Int(i64),
    /// Text.
    Text(String),
    /// Bytes.
    Bytes(Vec<u8>),
}

/// One result row.
#[derive(Debug, Clone, PartialEq)]
pub struct Row(pub Vec<Cell>);

impl Row {
    /// Text column `i` (empty string for NULL or a number, which the schema never produces).
    pub fn text(&self, i: usize) -> String {
        match self.0.get(i) {
            Some(Cell::Text(s)) => s.clone(),
            Some(Cell::Int(n)) => n.to_string(),
            _ => String::new(),
        }
    }

    /// Nullable text column `i`.
    pub fn opt_text(&self, i: usize) -> Option<String> {
        match self.0.get(i) {
            Some(Cell::Text(s)) => Some(s.clone()),
            Some(Cell::Int(n)) => Some(n.to_string()),
            _ => None,
        }
    }

    /// Bytes column `i` (empty for NULL).
    pub fn bytes(&self, i: usize) -> Vec<u8> {
        match self.0.get(i) {
            Some(Cell::Bytes(b)) => b.clone(),
            Some(Cell::Text(s)) => s.as_bytes().to_vec(),
            _ => Vec::new(),
        }
    }

    /// Moves bytes column `i` out of the row (no copy; empty for NULL).
    pub fn take_bytes(&mut self, i: usize) -> Vec<u8> {
        match self.0.get_mut(i) {
            Some(Cell::Bytes(b)) => std::mem::take(b),
            Some(Cell::Text(s)) => std::mem::take(s).into_bytes(),
            _ => Vec::new(),
        }
    }

    /// Integer column `i` (0 for NULL).
    pub fn int(&self, i: usize) -> i64 {
        match self.0.get(i) {
            Some(Cell::Int(n)) => *n,
            Some(Cell::Text(s)) => s.parse().unwrap_or(0),
            _ => 0,
        }
    }
}

/// Database error classes the transaction code reacts to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbError {
    /// A unique or primary-key constraint rejected the write.
    Unique,
    /// The database could not serialise this transaction against a concurrent one (deadlock,
    /// serialization failure, busy timeout); the whole operation may be retried.
    Retry,
    /// The file is not a database, or is corrupt or truncated.
    Corrupt(String),
    /// Anything else (message without parameter values).
    Other(String),
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DbError::Unique => f.write_str("unique constraint violated"),
            DbError::Retry => f.write_str("concurrent transaction conflict"),
            DbError::Corrupt(m) => write!(f, "database corrupt: {m}"),
            DbError::Other(m) => f.write_str(m),
        }
    }
}

/// A borrowed row handed to streaming scans.
pub trait RowRef {
    /// Text column (`""` for NULL).
    fn str_at(&self, i: usize) -> &str;
    /// Nullable text column.
    fn opt_str_at(&self, i: usize) -> Option<&str>;
    /// Integer column.
    fn int_at(&self, i: usize) -> i64;
    /// Text column as raw bytes (`b""` for NULL), without UTF-8 validation.
    fn bytes_at(&self, i: usize) -> &[u8] {
        self.opt_bytes_at(i).unwrap_or(b"")
    }
    /// Nullable text column as raw bytes.
    fn opt_bytes_at(&self, i: usize) -> Option<&[u8]> {
        self.opt_str_at(i).map(str::as_bytes)
    }
}

/// A database connection, as the generic transaction code sees it.
pub trait Conn: Send {
    /// Runs a statement; returns affected rows.
    fn exec(&mut self, sql: &str, params: &[Param]) -> Result<u64, DbError>;
    /// Runs a query and collects the rows.
    fn query(&mut self, sql: &str, params: &[Param]) -> Result<Vec<Row>, DbError>;
    /// Runs a query and streams borrowed rows to `f` until it returns false.
    fn scan(&mut self, sql: &str, params: &[Param], f: &mut dyn FnMut(&dyn RowRef) -> bool) -> Result<(), DbError>;
    /// Runs several statements without parameters.
    fn batch(&mut self, sql: &str) -> Result<(), DbError>;
    /// `true` for PostgreSQL (row locks with `FOR UPDATE`).
    fn is_postgres(&self) -> bool;
}
