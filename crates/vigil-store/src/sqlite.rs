//! The embedded backend: one SQLite file in the data directory.
//!
//! WAL journal (readers never block the writer), `synchronous=FULL` (a commit survives power
//! loss: we promise durable approvals, not fast ones), foreign keys on, and a busy timeout so
//! several processes on one file wait for each other instead of failing. Write transactions
//! start with `BEGIN IMMEDIATE`, taking the write lock up front: a deferred transaction that
//! upgrades from read to write can deadlock with another one and fail with `SQLITE_BUSY`.

use crate::sql::{Cell, Conn, DbError, Param, Row, RowRef};
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OpenFlags, ToSql};
use std::borrow::Cow;
use std::path::Path;
use std::time::Duration;

/// How long a writer waits for another process's write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// A SQLite connection.
pub struct SqliteConn {
    conn: Connection,
}

impl ToSql for Param {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Param::Text(Some(s)) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Param::Int(Some(i)) => ToSqlOutput::Borrowed(ValueRef::Integer(*i)),
            Param::Bytes(Some(b)) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
            Param::Text(None) | Param::Int(None) | Param::Bytes(None) => ToSqlOutput::Borrowed(ValueRef::Null),
        })
    }
}

pub(crate) fn map_err(e: rusqlite::Error) -> DbError {
    use rusqlite::ErrorCode as C;
    match &e {
        rusqlite::Error::SqliteFailure(f, msg) => match f.code {
            C::ConstraintViolation
                if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                    || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
            {
                DbError::Unique
            }
            C::DatabaseBusy | C::DatabaseLocked => DbError::Retry,
            C::DatabaseCorrupt | C::NotADatabase => {
                DbError::Corrupt(msg.clone().unwrap_or_else(|| "file is not a vigil database or is damaged".into()))
            }
            _ => DbError::Other(msg.clone().unwrap_or_else(|| e.to_string())),
        },
        _ => DbError::Other(e.to_string()),
    }
}

/// SQLite numbers parameters `?1`; PostgreSQL `$1`. Our SQL never has `$` elsewhere.
fn rewrite(sql: &str) -> Cow<'_, str> {
    if sql.contains('$') { Cow::Owned(sql.replace('$', "?")) } else { Cow::Borrowed(sql) }
}

/// Page cache per connection (KiB) for connections opened from now on: 64 MiB by default (the
/// server's large scans); the gateway, which only appends its log and reads small rows, uses
/// less ([`set_cache_kib`]).
static CACHE_KIB: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(65_536);

/// Sets the page cache of SQLite connections opened from now on.
pub fn set_cache_kib(kib: u32) {
    CACHE_KIB.store(kib.max(512), std::sync::atomic::Ordering::Relaxed);
}

impl SqliteConn {
    /// Opens (creating if asked) a database file and applies the connection settings.
    pub fn open(path: &Path, create: bool) -> Result<Self, DbError> {
        let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
        if create {
            flags |= OpenFlags::SQLITE_OPEN_CREATE;
        }
        let conn = Connection::open_with_flags(path, flags).map_err(map_err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(map_err)?;
        // journal_mode reads the header: a file that is not SQLite fails here, clearly.
        conn.pragma_update(None, "journal_mode", "WAL").map_err(map_err)?;
        conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA mmap_size = 4294967296; PRAGMA temp_store = MEMORY;").map_err(map_err)?;
        conn.pragma_update(None, "cache_size", -i64::from(CACHE_KIB.load(std::sync::atomic::Ordering::Relaxed))).map_err(map_err)?;
        conn.set_prepared_statement_cache_capacity(64);
        Ok(SqliteConn { conn })
    }
}

struct SqliteRow<'a, 'b>(&'a rusqlite::Row<'b>);

impl RowRef for SqliteRow<'_, '_> {
    fn str_at(&self, i: usize) -> &str {
        self.opt_str_at(i).unwrap_or("")
    }
    fn opt_str_at(&self, i: usize) -> Option<&str> {
        match self.0.get_ref(i) {
            Ok(ValueRef::Text(t)) => std::str::from_utf8(t).ok(),
            _ => None,
        }
    }
    fn opt_bytes_at(&self, i: usize) -> Option<&[u8]> {
        match self.0.get_ref(i) {
            Ok(ValueRef::Text(t)) => Some(t),
            _ => None,
        }
    }
    fn int_at(&self, i: usize) -> i64 {
        match self.0.get_ref(i) {
            Ok(ValueRef::Integer(n)) => n,
            _ => 0,
        }
    }
}

impl Conn for SqliteConn {
    fn exec(&mut self, sql: &str, params: &[Param]) -> Result<u64, DbError> {
        let mut stmt = self.conn.prepare_cached(&rewrite(sql)).map_err(map_err)?;
        stmt.execute(rusqlite::params_from_iter(params.iter())).map(|n| n as u64).map_err(map_err)
    }

    fn query(&mut self, sql: &str, params: &[Param]) -> Result<Vec<Row>, DbError> {
        let mut stmt = self.conn.prepare_cached(&rewrite(sql)).map_err(map_err)?;
        let ncols = stmt.column_count();
        let mut rows = stmt.query(rusqlite::params_from_iter(params.iter())).map_err(map_err)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(map_err)? {
            let mut cells = Vec::with_capacity(ncols);
            for i in 0..ncols {
                cells.push(match r.get_ref(i).map_err(map_err)? {
                    ValueRef::Null => Cell::Null,
                    ValueRef::Integer(n) => Cell::Int(n),
                    ValueRef::Real(f) => Cell::Text(f.to_string()),
                    ValueRef::Text(t) => Cell::Text(String::from_utf8_lossy(t).into_owned()),
                    ValueRef::Blob(b) => Cell::Bytes(b.to_vec()),
                });
            }
            out.push(Row(cells));
        }
        Ok(out)
    }

    fn scan(&mut self, sql: &str, params: &[Param], f: &mut dyn FnMut(&dyn RowRef) -> bool) -> Result<(), DbError> {
        let mut stmt = self.conn.prepare_cached(&rewrite(sql)).map_err(map_err)?;
        let mut rows = stmt.query(rusqlite::params_from_iter(params.iter())).map_err(map_err)?;
        while let Some(r) = rows.next().map_err(map_err)? {
            if !f(&SqliteRow(r)) {
                break;
            }
        }
        Ok(())
    }

    fn batch(&mut self, sql: &str) -> Result<(), DbError> {
        self.conn.execute_batch(sql).map_err(map_err)
    }

    fn is_postgres(&self) -> bool {
        false
    }
}
