//! The search grammar of experiment tracking: MLflow's `search_runs` filter and order-by
//! strings (`shared/reference/mlflow-api.md` §5), parsed into a small typed AST that the
//! stores translate into SQL with bound parameters (no user text is ever spliced into SQL).
//!
//! Grammar (what MLflow accepts, and only that):
//!
//! ```text
//! filter  := clause (AND clause)*            -- AND is case-insensitive; no OR, no parentheses
//! clause  := entity op value
//! entity  := [prefix "."] key                -- metrics|metric, params|param|parameters,
//!                                            -- tags|tag, attributes|attribute|attr|run,
//!                                            -- datasets|dataset; a bare key is an attribute
//! key     := dotted identifier | `backticked` | "double quoted"
//! value   := number | 'string' | "string" | "(" string ("," string)* ")" | NULL
//! order   := entity [ASC|DESC]
//! ```
//!
//! Error messages name the offending token's position, never echo the user's text back
//! (filters may contain patient identifiers typed into tags).

use crate::catalog::{CatalogClause, CatalogField, CatalogOrder};
use crate::error::{Error, ErrorCode, Result};

/// A run attribute usable in filters and ordering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attr {
    /// `run_id`.
    RunId,
    /// `run_name` (also `` `run name` ``).
    RunName,
    /// `status`.
    Status,
    /// `user_id`.
    UserId,
    /// `artifact_uri`.
    ArtifactUri,
    /// `start_time` (also `created`).
    StartTime,
    /// `end_time`.
    EndTime,
}

impl Attr {
    fn parse(key: &str) -> Option<Attr> {
        Some(match key {
            "run_id" => Attr::RunId,
            "run_name" | "run name" => Attr::RunName,
            "status" => Attr::Status,
            "user_id" => Attr::UserId,
            "artifact_uri" => Attr::ArtifactUri,
            "start_time" | "created" => Attr::StartTime,
            "end_time" => Attr::EndTime,
            _ => return None,
        })
    }

    /// Whether the attribute is a number (times) rather than a string.
    pub fn is_numeric(self) -> bool {
        matches!(self, Attr::StartTime | Attr::EndTime)
    }
}

/// What a clause or an ordering refers to.
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    /// The latest value of a metric.
    Metric(String),
    /// A parameter.
    Param(String),
    /// A tag.
    Tag(String),
    /// A run attribute.
    Attr(Attr),
    /// A dataset input's `name`, `digest` or `context`.
    Dataset(String),
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `=`
    Eq,
    /// `!=`
    Ne,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `LIKE` (case-sensitive, `%` and `_` wildcards)
    Like,
    /// `ILIKE` (case-insensitive)
    ILike,
    /// `IN (…)`
    In,
    /// `NOT IN (…)`
    NotIn,
    /// `IS NULL`
    IsNull,
    /// `IS NOT NULL`
    IsNotNull,
}

/// The right-hand side of a clause.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    /// A number (metrics and time attributes).
    Number(f64),
    /// A quoted string.
    Text(String),
    /// A parenthesised list of strings.
    List(Vec<String>),
    /// Nothing (`IS [NOT] NULL`).
    None,
}

/// One condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Clause {
    /// What is compared.
    pub field: Field,
    /// How.
    pub op: Op,
    /// With what.
    pub operand: Operand,
}

/// One ordering key.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderBy {
    /// What is ordered on.
    pub field: Field,
    /// Ascending (the default) or descending.
    pub ascending: bool,
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::new(ErrorCode::InvalidFilter, msg)
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Quoted(String),
    Backticked(String),
    Number(f64),
    Op(&'static str),
    LParen,
    RParen,
    Comma,
    Dot,
}

fn tokenize(s: &str) -> Result<Vec<(usize, Tok)>> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let start = i;
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            b'(' => {
                i += 1;
                out.push((start, Tok::LParen));
            }
            b')' => {
                i += 1;
                out.push((start, Tok::RParen));
            }
            b',' => {
                i += 1;
                out.push((start, Tok::Comma));
            }
            b'.' if !b.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                i += 1;
                out.push((start, Tok::Dot));
            }
            b'\'' | b'"' | b'`' => {
                let q = c;
                i += 1;
                let mut text = Vec::new();
                loop {
                    match b.get(i) {
                        None => return Err(invalid(format!("unterminated quote starting at position {start}"))),
                        // A doubled quote inside a string stands for one quote.
                        Some(&x) if x == q && b.get(i + 1) == Some(&q) => {
                            text.push(q);
                            i += 2;
                        }
                        Some(&x) if x == q => {
                            i += 1;
                            break;
                        }
                        Some(&x) => {
                            text.push(x);
                            i += 1;
                        }
                    }
                }
                let text = String::from_utf8(text).map_err(|_| invalid("filter is not valid UTF-8"))?;
                if text.contains('\0') {
                    return Err(invalid(format!("NUL character in the quoted text at position {start}")));
                }
                out.push((start, if q == b'`' { Tok::Backticked(text) } else { Tok::Quoted(text) }));
            }
            b'=' => {
                i += 1;
                out.push((start, Tok::Op("=")));
            }
            b'!' if b.get(i + 1) == Some(&b'=') => {
                i += 2;
                out.push((start, Tok::Op("!=")));
            }
            b'<' | b'>' => {
                let eq = b.get(i + 1) == Some(&b'=');
                i += if eq { 2 } else { 1 };
                out.push((
                    start,
                    Tok::Op(match (c, eq) {
                        (b'<', true) => "<=",
                        (b'<', false) => "<",
                        (_, true) => ">=",
                        _ => ">",
                    }),
                ));
            }
            b'0'..=b'9' | b'-' | b'+' | b'.' => {
                i += 1;
                while i < b.len() && (b[i].is_ascii_digit() || matches!(b[i], b'.' | b'e' | b'E') || (matches!(b[i], b'-' | b'+') && matches!(b[i - 1], b'e' | b'E'))) {
                    i += 1;
                }
                let text = &s[start..i];
                let n: f64 = text.parse().map_err(|_| invalid(format!("malformed number at position {start}")))?;
                out.push((start, Tok::Number(n)));
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                out.push((start, Tok::Ident(s[start..i].to_owned())));
            }
            _ => return Err(invalid(format!("unexpected character at position {start}"))),
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<(usize, Tok)>,
    pos: usize,
    len: usize,
}

impl Parser {
    fn new(s: &str) -> Result<Self> {
        Ok(Parser { toks: tokenize(s)?, pos: 0, len: s.len() })
    }

    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(_, t)| t)
    }

    fn at(&self) -> usize {
        self.toks.get(self.pos).map_or(self.len, |(p, _)| *p)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).map(|(_, t)| t.clone());
        self.pos += 1;
        t
    }

    fn keyword(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Ident(s)) if s.eq_ignore_ascii_case(kw))
    }

    /// `[prefix "."] key` where a dotted identifier continues the key (`tags.mlflow.runName`).
    fn field(&mut self) -> Result<Field> {
        let at = self.at();
        let first = match self.next() {
            Some(Tok::Ident(s)) => s,
            Some(Tok::Backticked(s) | Tok::Quoted(s)) => return attr_field(&s, at),
            _ => return Err(invalid(format!("expected a field name at position {at}"))),
        };
        let prefix = match first.to_ascii_lowercase().as_str() {
            "metrics" | "metric" => Some("metric"),
            "params" | "param" | "parameters" => Some("param"),
            "tags" | "tag" => Some("tag"),
            "attributes" | "attribute" | "attr" | "run" => Some("attr"),
            "datasets" | "dataset" => Some("dataset"),
            _ => None,
        };
        let Some(prefix) = prefix.filter(|_| self.peek() == Some(&Tok::Dot)) else {
            if self.peek() == Some(&Tok::Dot) {
                return Err(invalid(format!("unknown entity type at position {at}: use metrics., params., tags., attributes. or datasets.")));
            }
            return attr_field(&first, at);
        };
        self.next();
        let kat = self.at();
        let key = self.key()?;
        Ok(match prefix {
            "metric" => Field::Metric(key),
            "param" => Field::Param(key),
            "tag" => Field::Tag(key),
            "dataset" => match key.as_str() {
                "name" | "digest" | "context" => Field::Dataset(key),
                _ => return Err(invalid(format!("datasets support name, digest and context (position {kat})"))),
            },
            _ => attr_field(&key, kat)?,
        })
    }

    /// The key after `prefix.`: quoted, or a dotted identifier (`mlflow.runName`).
    fn key(&mut self) -> Result<String> {
        let kat = self.at();
        let key = match self.next() {
            Some(Tok::Backticked(s) | Tok::Quoted(s)) => s,
            Some(Tok::Ident(mut s)) => {
                while self.peek() == Some(&Tok::Dot) {
                    if let Some((_, Tok::Ident(more))) = self.toks.get(self.pos + 1).cloned() {
                        self.pos += 2;
                        s.push('.');
                        s.push_str(&more);
                    } else {
                        return Err(invalid(format!("malformed key at position {kat}")));
                    }
                }
                s
            }
            _ => return Err(invalid(format!("expected a key at position {kat}"))),
        };
        if key.is_empty() {
            return Err(invalid(format!("empty key at position {kat}")));
        }
        Ok(key)
    }

    /// A field of the registry grammars: `name`, `tags.<key>`, and for versions `run_id`,
    /// `source_path`, `version_number`.
    fn catalog_field(&mut self, kind: CatalogKind) -> Result<CatalogField> {
        let at = self.at();
        let first = match self.next() {
            Some(Tok::Ident(s) | Tok::Backticked(s)) => s,
            _ => return Err(invalid(format!("expected a field name at position {at}"))),
        };
        let lower = first.to_ascii_lowercase();
        if self.peek() == Some(&Tok::Dot) {
            return match lower.as_str() {
                "tags" | "tag" => {
                    self.next();
                    Ok(CatalogField::Tag(self.key()?))
                }
                "attributes" | "attribute" | "attr" => {
                    self.next();
                    let k = self.key()?;
                    catalog_attr(&k, kind, at)
                }
                _ => Err(invalid(format!("unknown entity type at position {at}: use tags. or an attribute"))),
            };
        }
        catalog_attr(&first, kind, at)
    }

    /// The rest of an `order_by` entry: nothing or ASC (ascending), or DESC.
    fn direction(&mut self) -> Result<bool> {
        let ascending = match self.next() {
            None => true,
            Some(Tok::Ident(w)) if w.eq_ignore_ascii_case("asc") => true,
            Some(Tok::Ident(w)) if w.eq_ignore_ascii_case("desc") => false,
            _ => return Err(invalid("order_by entries are `<field> [ASC|DESC]`")),
        };
        if self.peek().is_some() {
            return Err(invalid("order_by entries are `<field> [ASC|DESC]`"));
        }
        Ok(ascending)
    }

    fn op(&mut self) -> Result<Op> {
        let at = self.at();
        match self.next() {
            Some(Tok::Op(o)) => Ok(match o {
                "=" => Op::Eq,
                "!=" => Op::Ne,
                ">" => Op::Gt,
                ">=" => Op::Ge,
                "<" => Op::Lt,
                _ => Op::Le,
            }),
            Some(Tok::Ident(w)) => match w.to_ascii_uppercase().as_str() {
                "LIKE" => Ok(Op::Like),
                "ILIKE" => Ok(Op::ILike),
                "IN" => Ok(Op::In),
                "NOT" if self.keyword("IN") => {
                    self.next();
                    Ok(Op::NotIn)
                }
                "IS" if self.keyword("NULL") => {
                    self.next();
                    Ok(Op::IsNull)
                }
                "IS" if self.keyword("NOT") => {
                    self.next();
                    if self.keyword("NULL") {
                        self.next();
                        Ok(Op::IsNotNull)
                    } else {
                        Err(invalid(format!("expected NULL after IS NOT at position {at}")))
                    }
                }
                _ => Err(invalid(format!("expected a comparison operator at position {at}"))),
            },
            _ => Err(invalid(format!("expected a comparison operator at position {at}"))),
        }
    }

    fn operand(&mut self, op: Op) -> Result<Operand> {
        let at = self.at();
        match op {
            Op::IsNull | Op::IsNotNull => Ok(Operand::None),
            Op::In | Op::NotIn => {
                if self.next() != Some(Tok::LParen) {
                    return Err(invalid(format!("expected '(' after IN at position {at}")));
                }
                let mut items = Vec::new();
                loop {
                    let iat = self.at();
                    match self.next() {
                        Some(Tok::Quoted(s)) => items.push(s),
                        _ => return Err(invalid(format!("IN lists hold quoted strings (position {iat})"))),
                    }
                    match self.next() {
                        Some(Tok::Comma) => continue,
                        Some(Tok::RParen) => break,
                        _ => return Err(invalid(format!("expected ',' or ')' in the IN list at position {iat}"))),
                    }
                }
                Ok(Operand::List(items))
            }
            _ => match self.next() {
                Some(Tok::Number(n)) => Ok(Operand::Number(n)),
                Some(Tok::Quoted(s)) => Ok(Operand::Text(s)),
                _ => Err(invalid(format!("expected a number or a quoted string at position {at}"))),
            },
        }
    }
}

/// Which registry search a filter is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatalogKind {
    /// `search_registered_models`.
    Models,
    /// `search_model_versions`.
    Versions,
    /// `search_experiments`.
    Experiments,
}

fn catalog_attr(key: &str, kind: CatalogKind, at: usize) -> Result<CatalogField> {
    Ok(match (key, kind) {
        ("name", _) => CatalogField::Name,
        ("run_id", CatalogKind::Versions) => CatalogField::RunId,
        ("source_path", CatalogKind::Versions) => CatalogField::Source,
        ("version_number", CatalogKind::Versions) => CatalogField::VersionNumber,
        ("creation_time", CatalogKind::Experiments) => CatalogField::CreationTime,
        ("last_update_time", CatalogKind::Experiments) => CatalogField::LastUpdateTime,
        (_, CatalogKind::Experiments) => return Err(invalid(format!("unknown attribute at position {at}; experiments are searched by name, creation_time, last_update_time and tags"))),
        (_, CatalogKind::Models) => return Err(invalid(format!("unknown attribute at position {at}; registered models are searched by name and tags"))),
        _ => return Err(invalid(format!("unknown attribute at position {at}; known: name, run_id, source_path, version_number, tags"))),
    })
}

/// Parses a `search_registered_models` or `search_model_versions` filter (AND-joined;
/// `name` and `run_id` also take `IN (…)`, versions' `version_number` compares numbers).
pub fn parse_catalog_filter(filter: &str, kind: CatalogKind) -> Result<Vec<CatalogClause>> {
    conjunction(filter, |p, at| {
        let field = p.catalog_field(kind)?;
        let op = p.op()?;
        let operand = p.operand(op)?;
        let ok = match (&field, op) {
            (CatalogField::VersionNumber | CatalogField::CreationTime | CatalogField::LastUpdateTime, Op::Eq | Op::Ne | Op::Gt | Op::Ge | Op::Lt | Op::Le) => matches!(operand, Operand::Number(_)),
            (CatalogField::CreationTime | CatalogField::LastUpdateTime, _) => false,
            (CatalogField::VersionNumber, Op::In | Op::NotIn) => true,
            (CatalogField::Name | CatalogField::RunId, Op::In | Op::NotIn) => true,
            (CatalogField::VersionNumber, _) => false,
            (_, Op::Eq | Op::Ne | Op::Like | Op::ILike) => matches!(operand, Operand::Text(_)),
            _ => false,
        };
        if !ok {
            return Err(invalid(format!("clause at position {at}: this field compares with = != LIKE ILIKE against a quoted string (version_number: with numbers)")));
        }
        Ok(CatalogClause { field, op, operand })
    })
}

/// Parses a registry `order_by` entry: `name`, `version_number` (versions),
/// `creation_timestamp` or `last_updated_timestamp`, then ASC (default) or DESC.
pub fn parse_catalog_order(s: &str, kind: CatalogKind) -> Result<(CatalogOrder, bool)> {
    let mut p = Parser::new(s)?;
    let at = p.at();
    let key = match p.next() {
        Some(Tok::Ident(k) | Tok::Backticked(k)) => k,
        _ => return Err(invalid("order_by entries are `<field> [ASC|DESC]`")),
    };
    let key = match (key.as_str(), kind) {
        ("name", _) => CatalogOrder::Name,
        ("version_number", CatalogKind::Versions) => CatalogOrder::VersionNumber,
        ("creation_timestamp", CatalogKind::Models | CatalogKind::Versions) | ("creation_time", CatalogKind::Experiments) => CatalogOrder::Created,
        ("last_updated_timestamp", CatalogKind::Models | CatalogKind::Versions) | ("last_update_time", CatalogKind::Experiments) => CatalogOrder::Updated,
        ("experiment_id", CatalogKind::Experiments) => CatalogOrder::Id,
        _ => return Err(invalid(format!("cannot order by the field at position {at}"))),
    };
    let ascending = p.direction()?;
    Ok((key, ascending))
}

fn attr_field(key: &str, at: usize) -> Result<Field> {
    Attr::parse(key).map(Field::Attr).ok_or_else(|| invalid(format!("unknown attribute at position {at}; known: run_id, run_name, status, user_id, artifact_uri, start_time, end_time")))
}

/// Checks that the operator and operand suit the field, as MLflow does.
fn check_clause(c: &Clause, at: usize) -> Result<()> {
    let numeric = match &c.field {
        Field::Metric(_) => true,
        Field::Attr(a) => a.is_numeric(),
        _ => false,
    };
    let ok = if numeric {
        matches!(c.op, Op::Eq | Op::Ne | Op::Gt | Op::Ge | Op::Lt | Op::Le) && matches!(c.operand, Operand::Number(_))
    } else {
        match (&c.field, c.op) {
            (Field::Param(_) | Field::Tag(_), Op::Eq | Op::Ne | Op::Like | Op::ILike) => matches!(c.operand, Operand::Text(_)),
            (Field::Param(_) | Field::Tag(_), Op::IsNull | Op::IsNotNull) => true,
            (Field::Attr(Attr::RunId), Op::In | Op::NotIn) | (Field::Dataset(_), Op::In | Op::NotIn) => true,
            (Field::Attr(_) | Field::Dataset(_), Op::Eq | Op::Ne | Op::Like | Op::ILike) => matches!(c.operand, Operand::Text(_)),
            _ => false,
        }
    };
    if ok {
        Ok(())
    } else if numeric {
        Err(invalid(format!("clause at position {at}: metrics and times compare with = != > >= < <= against an unquoted number")))
    } else {
        Err(invalid(format!("clause at position {at}: this field compares with = != LIKE ILIKE against a quoted string")))
    }
}

/// Parses a `search_runs` filter. An empty or blank filter is no condition.
pub fn parse_filter(filter: &str) -> Result<Vec<Clause>> {
    conjunction(filter, |p, at| {
        let field = p.field()?;
        let op = p.op()?;
        let operand = p.operand(op)?;
        let clause = Clause { field, op, operand };
        check_clause(&clause, at)?;
        Ok(clause)
    })
}

/// `clause (AND clause)*`, the shape of every MLflow filter: no OR, no parentheses, at most
/// [`crate::tracking::MAX_SEARCH_CLAUSES`] conditions. An empty or blank filter is none.
fn conjunction<T>(filter: &str, mut clause: impl FnMut(&mut Parser, usize) -> Result<T>) -> Result<Vec<T>> {
    let mut p = Parser::new(filter)?;
    let mut out = Vec::new();
    if p.peek().is_none() {
        return Ok(out);
    }
    loop {
        let at = p.at();
        if matches!(p.peek(), Some(Tok::LParen)) {
            return Err(invalid(format!("parentheses are not supported (position {at})")));
        }
        out.push(clause(&mut p, at)?);
        if out.len() > crate::tracking::MAX_SEARCH_CLAUSES {
            return Err(invalid("a search takes at most 100 conditions"));
        }
        match p.peek() {
            None => return Ok(out),
            Some(Tok::Ident(w)) if w.eq_ignore_ascii_case("and") => {
                p.next();
            }
            Some(Tok::Ident(w)) if w.eq_ignore_ascii_case("or") => return Err(invalid(format!("OR is not supported (position {})", p.at()))),
            _ => return Err(invalid(format!("expected AND at position {}", p.at()))),
        }
    }
}

/// Parses one `order_by` entry such as `metrics.acc DESC`.
pub fn parse_order_by(s: &str) -> Result<OrderBy> {
    let mut p = Parser::new(s)?;
    let field = p.field()?;
    if let Field::Attr(Attr::RunId | Attr::RunName | Attr::Status | Attr::UserId | Attr::ArtifactUri | Attr::StartTime | Attr::EndTime) = field {
    } else if matches!(field, Field::Dataset(_)) {
        return Err(invalid("runs cannot be ordered by dataset fields"));
    }
    let ascending = p.direction()?;
    Ok(OrderBy { field, ascending })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn mlflow_filters_parse() {
        let c = parse_filter("metrics.acc > 0.5 and params.model = 'lr' AND tags.mlflow.runName LIKE \"r%\"").unwrap();
        assert_eq!(c.len(), 3);
        assert_eq!(c[0], Clause { field: Field::Metric("acc".into()), op: Op::Gt, operand: Operand::Number(0.5) });
        assert_eq!(c[1].operand, Operand::Text("lr".into()));
        assert_eq!(c[2].field, Field::Tag("mlflow.runName".into()));
        let c = parse_filter("metrics.`val auc` <= -1e-3 AND attributes.run_id IN ('a', 'b') AND status != 'FAILED'").unwrap();
        assert_eq!(c[0].field, Field::Metric("val auc".into()));
        assert_eq!(c[0].operand, Operand::Number(-1e-3));
        assert_eq!(c[1].operand, Operand::List(vec!["a".into(), "b".into()]));
        assert_eq!(c[2].field, Field::Attr(Attr::Status));
        assert_eq!(parse_filter("tags.x IS NOT NULL").unwrap()[0].op, Op::IsNotNull);
        assert!(parse_filter("  ").unwrap().is_empty());
        assert_eq!(parse_filter("attribute.`run name` = 'x'").unwrap()[0].field, Field::Attr(Attr::RunName));
    }

    #[test]
    fn what_mlflow_refuses_is_refused_without_echoing_the_filter() {
        for bad in [
            "metrics.acc > 0.5 OR params.x = 'SECRET'",
            "(metrics.SECRET > 0.5)",
            "metrics.acc > 'SECRET'",
            "params.SECRET > 1",
            "SECRET.bar = 1",
            "metrics.SECRET >",
            "metrics.acc = 1 params.x = 'SECRET'",
            "params.x = 'SECRET",
            "status IN ('SECRET')",
            "SECRET = 'x'",
            "tags.x = 'a' and SECRET",
        ] {
            let e = parse_filter(bad).unwrap_err();
            assert_eq!(e.code(), ErrorCode::InvalidFilter, "{bad}");
            assert!(!e.message().contains("SECRET"), "{bad}: {}", e.message());
        }
    }

    #[test]
    fn registry_filters_parse_and_refuse() {
        let c = parse_catalog_filter("name LIKE 'diab%' AND tag.`mlflow.prompt.is_prompt` != 'true'", CatalogKind::Models).unwrap();
        assert_eq!(c[0], CatalogClause { field: CatalogField::Name, op: Op::Like, operand: Operand::Text("diab%".into()) });
        assert_eq!(c[1].field, CatalogField::Tag("mlflow.prompt.is_prompt".into()));
        let c = parse_catalog_filter("name IN ('a', 'b') and run_id = 'r' AND version_number >= 2 AND tags.team = 'x'", CatalogKind::Versions).unwrap();
        assert_eq!(c.len(), 4);
        assert_eq!(c[2].operand, Operand::Number(2.0));
        for bad in ["run_id = 'SECRET'", "name = 'a' OR name = 'SECRET'", "version_number = 'SECRET'", "SECRET.x = 'y'", "name > 'SECRET'"] {
            let e = parse_catalog_filter(bad, CatalogKind::Models).unwrap_err();
            assert_eq!(e.code(), ErrorCode::InvalidFilter, "{bad}");
            assert!(!e.message().contains("SECRET"), "{bad}");
        }
        assert!(parse_catalog_filter("version_number = 'x'", CatalogKind::Versions).is_err());
        assert_eq!(parse_catalog_order("last_updated_timestamp DESC", CatalogKind::Models).unwrap(), (CatalogOrder::Updated, false));
        assert_eq!(parse_catalog_order("version_number", CatalogKind::Versions).unwrap(), (CatalogOrder::VersionNumber, true));
        assert!(parse_catalog_order("version_number", CatalogKind::Models).is_err());
    }

    #[test]
    fn order_by_parses() {
        assert_eq!(parse_order_by("metrics.acc DESC").unwrap(), OrderBy { field: Field::Metric("acc".into()), ascending: false });
        assert_eq!(parse_order_by("attributes.start_time").unwrap(), OrderBy { field: Field::Attr(Attr::StartTime), ascending: true });
        assert!(parse_order_by("metrics.acc sideways").is_err());
    }
}
