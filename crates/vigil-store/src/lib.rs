//! Storage for Vigil: the SQLite (embedded default) and PostgreSQL implementations of
//! `vigil_core::store::Store`, their shared migrations, and the server signing-key file.
//!
//! Both backends run the same SQL text and the same transaction code ([`tx`]); they differ only
//! in the connection ([`sqlite`], [`postgres`]). This crate knows nothing about HTTP or the CLI.

pub(crate) mod catalog;
pub mod artifacts;
#[cfg(feature = "s3")]
pub mod s3;
pub mod keyfile;
pub mod postgres;
pub mod schema;
pub mod sql;
pub mod sqlite;
pub mod tracking;
pub mod tx;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use vigil_core::store::Store;
use vigil_core::{Error, ErrorCode, Result};

/// The database file inside a data directory.
pub const DB_FILE: &str = "vigil.db";

/// The directory inside a data directory where the gateway's sealed prediction-log segments
/// are kept as the stored bodies (one file per segment, `DAY/SEGMENT_ID.vpl`, named in its
/// row with its length and CRC-32).
pub const SEGMENT_DIR: &str = "predictions";

/// Where a store lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// An embedded SQLite database in this data directory.
    DataDir(PathBuf),
    /// A PostgreSQL database (`postgres://…`), optionally in its own schema.
    Postgres {
        /// Connection URL.
        url: String,
        /// Schema to use (created if missing); `None` uses the server's search path.
        schema: Option<String>,
    },
}

/// Opens (creating if needed) a store and applies migrations.
pub fn open(location: &Location) -> Result<Arc<dyn Store>> {
    match location {
        Location::DataDir(dir) => open_sqlite(dir).map(|s| s as Arc<dyn Store>),
        Location::Postgres { url, schema } => open_postgres(url, schema.as_deref()).map(|s| s as Arc<dyn Store>),
    }
}

/// Opens the SQLite store in a data directory, creating the directory and file if needed.
pub fn open_sqlite(dir: &Path) -> Result<Arc<tx::SqlStore>> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::storage(format!("cannot create data directory {}: {e}", dir.display())))?;
    let path = dir.join(DB_FILE);
    let factory = move || sqlite::SqliteConn::open(&path, true).map(|c| Box::new(c) as Box<dyn sql::Conn>);
    tx::SqlStore::new("sqlite", Box::new(factory)).map(|s| Arc::new(s.with_segment_dir(dir.join(SEGMENT_DIR))))
}

/// Connects to PostgreSQL and applies migrations.
pub fn open_postgres(url: &str, schema: Option<&str>) -> Result<Arc<tx::SqlStore>> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(Error::new(ErrorCode::StorageFailure, "a database url must start with postgres:// or postgresql://"));
    }
    let url = url.to_owned();
    let schema = schema.map(str::to_owned);
    let factory = move || postgres::PgConn::connect(&url, schema.as_deref()).map(|c| Box::new(c) as Box<dyn sql::Conn>);
    tx::SqlStore::new("postgres", Box::new(factory)).map(Arc::new)
}
