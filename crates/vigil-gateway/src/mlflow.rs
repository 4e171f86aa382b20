//! MLflow's scoring protocol bodies: JSON with exactly one of `dataframe_split`,
//! `dataframe_records`, `instances`, `inputs` (and an optional `params`), or CSV. JSON objects
//! are read in document order, as pandas reads them, because a model with one feature tensor
//! takes the columns in the order they come.

use crate::decode::{Bad, Frame};
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value as Json;
use std::fmt;

/// JSON with objects in document order.
#[derive(Debug, Clone)]
enum Ordered {
    Scalar(Json),
    List(Vec<Ordered>),
    Object(Vec<(String, Ordered)>),
}

struct OrderedVisitor;

impl<'de> Visitor<'de> for OrderedVisitor {
    type Value = Ordered;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Ordered, E> {
        Ok(Ordered::Scalar(Json::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Ordered, E> {
        Ok(Ordered::Scalar(Json::from(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Ordered, E> {
        Ok(Ordered::Scalar(Json::from(v)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Ordered, E> {
        Ok(Ordered::Scalar(serde_json::Number::from_f64(v).map_or(Json::Null, Json::Number)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Ordered, E> {
        Ok(Ordered::Scalar(Json::String(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Ordered, E> {
        Ok(Ordered::Scalar(Json::String(v)))
    }
    fn visit_unit<E>(self) -> Result<Ordered, E> {
        Ok(Ordered::Scalar(Json::Null))
    }
    fn visit_none<E>(self) -> Result<Ordered, E> {
        Ok(Ordered::Scalar(Json::Null))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Ordered, A::Error> {
        let mut v = Vec::new();
        while let Some(x) = s.next_element::<Ordered>()? {
            v.push(x);
        }
        Ok(Ordered::List(v))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Ordered, A::Error> {
        let mut v: Vec<(String, Ordered)> = Vec::new();
        while let Some((k, x)) = m.next_entry::<String, Ordered>()? {
            v.retain(|(j, _)| *j != k);
            v.push((k, x));
        }
        Ok(Ordered::Object(v))
    }
}

impl<'de> Deserialize<'de> for Ordered {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(OrderedVisitor)
    }
}

impl Ordered {
    fn plain(self) -> Json {
        match self {
            Ordered::Scalar(j) => j,
            Ordered::List(v) => Json::Array(v.into_iter().map(Ordered::plain).collect()),
            Ordered::Object(v) => Json::Object(v.into_iter().map(|(k, x)| (k, x.plain())).collect()),
        }
    }
}

fn bad(m: &str) -> Bad {
    Bad(m.to_owned())
}

/// Rows given as objects: columns from the first record, in its order; every record must
/// have the same keys.
fn records(list: Vec<Ordered>) -> Result<Frame, Bad> {
    let mut columns: Vec<String> = Vec::new();
    let mut rows = Vec::with_capacity(list.len());
    for (i, r) in list.into_iter().enumerate() {
        let Ordered::Object(fields) = r else { return Err(bad("each record must be an object of column → value")) };
        if i == 0 {
            columns = fields.iter().map(|(k, _)| k.clone()).collect();
        }
        if fields.len() != columns.len() {
            return Err(bad("every record must have the same columns"));
        }
        let mut row = Vec::with_capacity(columns.len());
        for c in &columns {
            let v = fields.iter().find(|(k, _)| k == c).ok_or_else(|| bad("every record must have the same columns"))?;
            row.push(v.1.clone().plain());
        }
        rows.push(row);
    }
    Ok(Frame { columns, rows })
}

/// Rows given as lists: columns named by position (`0`, `1`, …).
fn lists(list: Vec<Ordered>, columns: Option<Vec<String>>) -> Result<Frame, Bad> {
    let mut rows = Vec::with_capacity(list.len());
    for r in list {
        match r {
            Ordered::List(v) => rows.push(v.into_iter().map(Ordered::plain).collect::<Vec<_>>()),
            scalar @ Ordered::Scalar(_) => rows.push(vec![scalar.plain()]),
            Ordered::Object(_) => return Err(bad("rows must be lists of values")),
        }
    }
    let width = rows.first().map_or(0, Vec::len);
    if rows.iter().any(|r| r.len() != width) {
        return Err(bad("every row must have the same number of values"));
    }
    let columns = match columns {
        Some(c) if c.len() == width => c,
        Some(_) => return Err(bad("'columns' and the rows' values do not line up")),
        None => (0..width).map(|i| i.to_string()).collect(),
    };
    Ok(Frame { columns, rows })
}

/// What a JSON body asks to score.
pub enum Request {
    /// A table.
    Frame(Frame),
    /// Named tensors (the `inputs` object form): name → nested list.
    Named(Vec<(String, Json)>),
}

/// Reads a JSON body.
pub fn parse_json(body: &[u8]) -> Result<Request, Bad> {
    let top: Ordered = serde_json::from_slice(body).map_err(|_| bad("the body is not valid JSON"))?;
    let Ordered::Object(fields) = top else { return Err(bad("the body must be a JSON object with one of dataframe_split, dataframe_records, instances or inputs")) };
    let formats: Vec<(String, Ordered)> = fields.into_iter().filter(|(k, _)| matches!(k.as_str(), "dataframe_split" | "dataframe_records" | "instances" | "inputs")).collect();
    let [(key, value)] = <[(String, Ordered); 1]>::try_from(formats).map_err(|_| bad("give exactly one of dataframe_split, dataframe_records, instances or inputs"))?;
    match (key.as_str(), value) {
        ("dataframe_split", Ordered::Object(parts)) => {
            let columns = match parts.iter().find(|(k, _)| k == "columns") {
                Some((_, Ordered::List(c))) => Some(
                    c.iter()
                        .map(|x| match x {
                            Ordered::Scalar(Json::String(s)) => Ok(s.clone()),
                            Ordered::Scalar(Json::Number(n)) => Ok(n.to_string()),
                            _ => Err(bad("'columns' must be names")),
                        })
                        .collect::<Result<Vec<_>, _>>()?,
                ),
                Some(_) => return Err(bad("'columns' must be a list")),
                None => None,
            };
            match parts.into_iter().find(|(k, _)| k == "data") {
                Some((_, Ordered::List(rows))) => Ok(Request::Frame(lists(rows, columns)?)),
                _ => Err(bad("dataframe_split needs 'data', a list of rows")),
            }
        }
        ("dataframe_records", Ordered::List(rs)) => Ok(Request::Frame(records(rs)?)),
        ("instances", Ordered::List(rs)) if rs.first().is_some_and(|r| matches!(r, Ordered::Object(_))) => Ok(Request::Frame(records(rs)?)),
        ("instances" | "inputs", Ordered::List(rs)) => Ok(Request::Frame(lists(rs, None)?)),
        ("inputs", Ordered::Object(named)) => Ok(Request::Named(named.into_iter().map(|(k, v)| (k, v.plain())).collect())),
        _ => Err(bad("the format's value has the wrong shape")),
    }
}

/// Reads a CSV body: a header row, then rows; numbers where a cell parses as one, empty cells
/// and `NaN` as missing, text otherwise.
pub fn parse_csv(body: &[u8]) -> Result<Frame, Bad> {
    let text = std::str::from_utf8(body).map_err(|_| bad("the CSV body is not UTF-8"))?;
    let mut lines = split_csv(text)?;
    if lines.is_empty() {
        return Err(bad("the CSV body has no header row"));
    }
    let columns: Vec<String> = lines.remove(0).into_iter().map(|s| s.trim().to_owned()).collect();
    let mut rows = Vec::with_capacity(lines.len());
    for (i, l) in lines.into_iter().enumerate() {
        if l.len() == 1 && l[0].is_empty() {
            continue;
        }
        if l.len() != columns.len() {
            return Err(Bad(format!("CSV row {} has {} fields, the header {}", i + 2, l.len(), columns.len())));
        }
        rows.push(
            l.into_iter()
                .map(|cell| {
                    let c = cell.trim();
                    if c.is_empty() || c.eq_ignore_ascii_case("nan") {
                        Json::Null
                    } else if let Ok(x) = c.parse::<f64>() {
                        serde_json::Number::from_f64(x).map_or(Json::Null, Json::Number)
                    } else {
                        Json::String(cell)
                    }
                })
                .collect(),
        );
    }
    Ok(Frame { columns, rows })
}

/// RFC 4180 fields: commas, quotes doubled inside quoted fields, CRLF or LF rows.
fn split_csv(text: &str) -> Result<Vec<Vec<String>>, Bad> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' if field.is_empty() => quoted = true,
            ',' => row.push(std::mem::take(&mut field)),
            '\r' => {}
            '\n' => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            _ => field.push(c),
        }
    }
    if quoted {
        return Err(bad("the CSV body ends inside a quoted field"));
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    Ok(rows)
}
