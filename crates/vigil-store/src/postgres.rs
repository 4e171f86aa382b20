//! The shared backend: PostgreSQL, for teams and several Vigil processes on one database.
//!
//! Transactions run at READ COMMITTED with explicit row locks (`SELECT … FOR UPDATE`) on the
//! rows an operation decides on (the promotion request, the model, the audit chain head), and
//! unique indexes back every "at most one" rule. We chose this over SERIALIZABLE everywhere
//! because the locks make the contention points explicit and retries rare; deadlocks and
//! serialization failures are still mapped to a retry, never to a wrong answer.
//! Read transactions use REPEATABLE READ so that a verification sees one snapshot.

use crate::sql::{Cell, Conn, DbError, Param, Row, RowRef};
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::{ToSql, Type};
use postgres::{Client, NoTls, Statement, error::SqlState};
use std::collections::HashMap;

/// Prepared statements kept per connection.
const MAX_CACHED_STATEMENTS: usize = 256;

/// A PostgreSQL connection with a per-connection prepared-statement cache.
pub struct PgConn {
    /// Always `Some` until the connection is dropped.
    client: Option<Client>,
    statements: HashMap<String, Statement>,
}

impl Drop for PgConn {
    fn drop(&mut self) {
        // `postgres::Client` closes itself by blocking on its own runtime, which panics when
        // the last handle is dropped on an async runtime's thread (a server or gateway shutting
        // down): close it on a plain thread instead.
        self.statements.clear();
        if let Some(c) = self.client.take() {
            let _ = std::thread::Builder::new().name("vigil-pg-close".into()).spawn(move || drop(c));
        }
    }
}

pub(crate) fn map_err(e: postgres::Error) -> DbError {
    match e.code() {
        Some(c) if *c == SqlState::UNIQUE_VIOLATION => DbError::Unique,
        Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::LOCK_NOT_AVAILABLE => {
            DbError::Retry
        }
        // The server's message names the problem; its DETAIL (which may quote values) is
        // deliberately left out.
        _ => DbError::Other(e.as_db_error().map(|d| d.message().to_owned()).unwrap_or_else(|| e.to_string())),
    }
}

impl PgConn {
    /// Connects and, if given, selects (creating it first) a schema.
    pub fn connect(url: &str, schema: Option<&str>) -> Result<Self, DbError> {
        let client = Client::connect(url, NoTls).map_err(|e| DbError::Other(format!("cannot connect to postgresql: {e}")))?;
        let mut c = PgConn { client: Some(client), statements: HashMap::new() };
        if let Some(s) = schema {
            if !s.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_') || s.is_empty() {
                return Err(DbError::Other("schema names are letters, digits and '_'".into()));
            }
            // Concurrent `CREATE SCHEMA IF NOT EXISTS` can still collide on the catalog's unique
            // index; the loser simply uses the schema the winner made.
            match c.batch(&format!("CREATE SCHEMA IF NOT EXISTS {s}")) {
                Ok(()) | Err(DbError::Unique) => {}
                Err(e) => return Err(e),
            }
            c.batch(&format!("SET search_path TO {s}"))?;
        }
        Ok(c)
    }

    fn client(&mut self) -> Result<&mut Client, DbError> {
        self.client.as_mut().ok_or_else(|| DbError::Other("the connection is closed".into()))
    }

    fn statement(&mut self, sql: &str) -> Result<Statement, DbError> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client()?.prepare(sql).map_err(map_err)?;
        // Search queries vary in shape; keep the cache (and the server's prepared statements)
        // bounded. Dropping a `Statement` deallocates it on the server.
        if self.statements.len() >= MAX_CACHED_STATEMENTS {
            self.statements.clear();
        }
        self.statements.insert(sql.to_owned(), s.clone());
        Ok(s)
    }
}

fn refs(params: &[Param]) -> Vec<&(dyn ToSql + Sync)> {
    params
        .iter()
        .map(|p| match p {
            Param::Text(t) => t as &(dyn ToSql + Sync),
            Param::Int(i) => i as &(dyn ToSql + Sync),
            Param::Bytes(b) => b as &(dyn ToSql + Sync),
        })
        .collect()
}

fn cell(row: &postgres::Row, i: usize) -> Result<Cell, DbError> {
    let ty = row.columns()[i].type_();
    let c = if *ty == Type::INT8 {
        row.try_get::<_, Option<i64>>(i).map_err(map_err)?.map_or(Cell::Null, Cell::Int)
    } else if *ty == Type::BYTEA {
        row.try_get::<_, Option<Vec<u8>>>(i).map_err(map_err)?.map_or(Cell::Null, Cell::Bytes)
    } else if *ty == Type::INT4 {
        row.try_get::<_, Option<i32>>(i).map_err(map_err)?.map_or(Cell::Null, |n| Cell::Int(i64::from(n)))
    } else {
        row.try_get::<_, Option<String>>(i).map_err(map_err)?.map_or(Cell::Null, Cell::Text)
    };
    Ok(c)
}

struct PgRow<'a>(&'a postgres::Row);

impl RowRef for PgRow<'_> {
    fn str_at(&self, i: usize) -> &str {
        self.opt_str_at(i).unwrap_or("")
    }
    fn opt_str_at(&self, i: usize) -> Option<&str> {
        self.0.try_get::<_, Option<&str>>(i).ok().flatten()
    }
    fn int_at(&self, i: usize) -> i64 {
        self.0.try_get::<_, Option<i64>>(i).ok().flatten().unwrap_or(0)
    }
}

impl Conn for PgConn {
    fn exec(&mut self, sql: &str, params: &[Param]) -> Result<u64, DbError> {
        let st = self.statement(sql)?;
        self.client()?.execute(&st, &refs(params)).map_err(map_err)
    }

    fn query(&mut self, sql: &str, params: &[Param]) -> Result<Vec<Row>, DbError> {
        let st = self.statement(sql)?;
        let rows = self.client()?.query(&st, &refs(params)).map_err(map_err)?;
        rows.iter()
            .map(|r| (0..r.len()).map(|i| cell(r, i)).collect::<Result<Vec<_>, _>>().map(Row))
            .collect()
    }

    fn scan(&mut self, sql: &str, params: &[Param], f: &mut dyn FnMut(&dyn RowRef) -> bool) -> Result<(), DbError> {
        let st = self.statement(sql)?;
        let mut it = self.client()?.query_raw(&st, refs(params)).map_err(map_err)?;
        while let Some(r) = it.next().map_err(map_err)? {
            if !f(&PgRow(&r)) {
                break;
            }
        }
        Ok(())
    }

    fn batch(&mut self, sql: &str) -> Result<(), DbError> {
        self.client()?.batch_execute(sql).map_err(map_err)
    }

    fn is_postgres(&self) -> bool {
        true
    }
}
