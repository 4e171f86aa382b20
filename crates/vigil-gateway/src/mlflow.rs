//! MLflow's scoring protocol bodies: JSON with exactly one of `dataframe_split`,
//! `dataframe_records`, `instances`, `inputs` (and an optional `params`), or CSV. JSON objects
//! are read in document order, as pandas reads them, because a model with one feature tensor
//! takes the columns in the order they come.

use crate::decode::{Bad, Cells, Frame, scalars_as};
use serde::de::{Deserialize, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
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
    Ok(Frame::from_rows(columns, rows))
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
    Ok(Frame::from_rows(columns, rows))
}

/// What a JSON body asks to score.
pub enum Request {
    /// A table.
    Frame(Frame),
    /// Named tensors (the `inputs` object form): name → nested list.
    Named(Vec<(String, Json)>),
}

/// A body's top level: the scoring formats it names (a repeated key: the last one counts) and
/// its `params`, or `None` when it is not an object. `dataframe_split` (what MLflow's own
/// client sends) is read without a JSON tree for its rows.
struct Top(Option<(Formats, Option<Json>)>);

/// The formats a body names, each with its value.
type Formats = Vec<(String, Format)>;

enum Format {
    Split(Split),
    Tree(Ordered),
}

/// `dataframe_split` as given: its columns and rows (`None` when it is not an object).
struct Split(Option<(Option<Ordered>, Option<Rows>)>);

/// `data` of a `dataframe_split`: its values row by row as they are read.
struct Rows {
    cells: Cells,
    rows: usize,
    /// Values in the first row.
    width: usize,
    /// Some row is not as wide as the first.
    ragged: bool,
    /// Some row is an object.
    object_row: bool,
    /// `data` is a list.
    list: bool,
}

impl<'de> Deserialize<'de> for Top {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Top;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("JSON")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Top, A::Error> {
                let mut formats: Formats = Vec::new();
                let mut params = None;
                while let Some(k) = m.next_key::<String>()? {
                    let v = match k.as_str() {
                        "params" => {
                            params = Some(m.next_value()?);
                            continue;
                        }
                        "dataframe_split" => Format::Split(m.next_value()?),
                        "dataframe_records" | "instances" | "inputs" => Format::Tree(m.next_value()?),
                        _ => {
                            m.next_value::<IgnoredAny>()?;
                            continue;
                        }
                    };
                    formats.retain(|(j, _)| *j != k);
                    formats.push((k, v));
                }
                Ok(Top(Some((formats, params))))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Top, A::Error> {
                while s.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Top(None))
            }
            scalars_as!(Top, Top(None));
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Split {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Split;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("JSON")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Split, A::Error> {
                let (mut columns, mut data) = (None, None);
                while let Some(k) = m.next_key::<std::borrow::Cow<'de, str>>()? {
                    match &*k {
                        "columns" => columns = Some(m.next_value::<Ordered>()?),
                        "data" => {
                            let mut rows = Rows { cells: Cells::Ints(Vec::new()), rows: 0, width: 0, ragged: false, object_row: false, list: false };
                            m.next_value_seed(RowsSeed(&mut rows))?;
                            data = Some(rows);
                        }
                        _ => {
                            m.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(Split(Some((columns, data))))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Split, A::Error> {
                while s.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Split(None))
            }
            scalars_as!(Split, Split(None));
        }
        d.deserialize_any(V)
    }
}

/// `data`: a list of rows (anything else is marked as not a list and skipped).
struct RowsSeed<'a>(&'a mut Rows);

impl<'de> DeserializeSeed<'de> for RowsSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RowsSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("rows")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<(), A::Error> {
        self.0.list = true;
        while s.next_element_seed(RowSeed(&mut *self.0))?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<(), A::Error> {
        while m.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(())
    }
    scalars_as!((), ());
}

/// One row: a list of values, or a single value (a row of one).
struct RowSeed<'a>(&'a mut Rows);

impl RowSeed<'_> {
    fn one_row(self, width: usize) {
        let r = self.0;
        if r.rows == 0 {
            r.width = width;
        } else if width != r.width {
            r.ragged = true;
        }
        r.rows += 1;
    }
}

impl<'de> DeserializeSeed<'de> for RowSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RowSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a row")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<(), A::Error> {
        let mut width = 0;
        while let Some(v) = s.next_element::<Ordered>()? {
            match v {
                Ordered::Scalar(j) => self.0.cells.push_json(j),
                // A list or an object where a value belongs: kept, refused as a value.
                other => self.0.cells.push_other(other.plain()),
            }
            width += 1;
        }
        self.one_row(width);
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<(), A::Error> {
        while m.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        self.0.object_row = true;
        Ok(())
    }
    fn visit_bool<E>(self, x: bool) -> Result<(), E> {
        self.0.cells.push_other(Json::Bool(x));
        self.one_row(1);
        Ok(())
    }
    fn visit_i64<E>(self, x: i64) -> Result<(), E> {
        self.0.cells.push_int(x);
        self.one_row(1);
        Ok(())
    }
    fn visit_u64<E>(self, x: u64) -> Result<(), E> {
        self.0.cells.push_u64(x);
        self.one_row(1);
        Ok(())
    }
    fn visit_f64<E>(self, x: f64) -> Result<(), E> {
        self.0.cells.push_num(x);
        self.one_row(1);
        Ok(())
    }
    fn visit_str<E>(self, x: &str) -> Result<(), E> {
        self.0.cells.push_other(Json::String(x.to_owned()));
        self.one_row(1);
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        self.0.cells.push_other(Json::Null);
        self.one_row(1);
        Ok(())
    }
}

/// `dataframe_split`'s columns and rows as a frame, with the checks (and messages) of rows
/// given as lists.
fn split_frame(columns: Option<Ordered>, data: Option<Rows>) -> Result<Frame, Bad> {
    let columns = match columns {
        Some(Ordered::List(c)) => Some(
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
    let rows = match data {
        Some(r) if r.list => r,
        _ => return Err(bad("dataframe_split needs 'data', a list of rows")),
    };
    if rows.object_row {
        return Err(bad("rows must be lists of values"));
    }
    if rows.ragged {
        return Err(bad("every row must have the same number of values"));
    }
    let columns = match columns {
        Some(c) if c.len() == rows.width => c,
        Some(_) => return Err(bad("'columns' and the rows' values do not line up")),
        None => (0..rows.width).map(|i| i.to_string()).collect(),
    };
    Ok(Frame { columns, cells: rows.cells, rows: rows.rows })
}

/// Reads a JSON body: what it asks to score, and its `params` (where a unit key may be).
pub fn parse_json(body: &[u8]) -> Result<(Request, Option<Json>), Bad> {
    let top: Top = serde_json::from_slice(body).map_err(|_| bad("the body is not valid JSON"))?;
    let Some((formats, params)) = top.0 else { return Err(bad("the body must be a JSON object with one of dataframe_split, dataframe_records, instances or inputs")) };
    let [(key, value)] = <[(String, Format); 1]>::try_from(formats).map_err(|_| bad("give exactly one of dataframe_split, dataframe_records, instances or inputs"))?;
    let request = match value {
        Format::Split(Split(Some((columns, data)))) => Request::Frame(split_frame(columns, data)?),
        Format::Split(Split(None)) => return Err(bad("the format's value has the wrong shape")),
        Format::Tree(value) => match (key.as_str(), value) {
            ("dataframe_records", Ordered::List(rs)) => Request::Frame(records(rs)?),
            ("instances", Ordered::List(rs)) if rs.first().is_some_and(|r| matches!(r, Ordered::Object(_))) => Request::Frame(records(rs)?),
            ("instances" | "inputs", Ordered::List(rs)) => Request::Frame(lists(rs, None)?),
            ("inputs", Ordered::Object(named)) => Request::Named(named.into_iter().map(|(k, v)| (k, v.plain())).collect()),
            _ => return Err(bad("the format's value has the wrong shape")),
        },
    };
    Ok((request, params))
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
    Ok(Frame::from_rows(columns, rows))
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;
    use vigil_onnx::ElemType;

    /// The tree-based reading `dataframe_split` had: the body as an ordered JSON tree, its
    /// rows through `lists`.
    fn split_by_tree(body: &str) -> Result<Frame, String> {
        let Ok(top) = serde_json::from_str::<Ordered>(body) else { return Err("the body is not valid JSON".into()) };
        let Ordered::Object(fields) = top else { return Err("not an object".into()) };
        let Some((_, Ordered::Object(parts))) = fields.into_iter().find(|(k, _)| k == "dataframe_split") else { return Err("the format's value has the wrong shape".into()) };
        let columns = match parts.iter().find(|(k, _)| k == "columns") {
            Some((_, Ordered::List(c))) => Some(
                c.iter()
                    .map(|x| match x {
                        Ordered::Scalar(Json::String(s)) => Ok(s.clone()),
                        Ordered::Scalar(Json::Number(n)) => Ok(n.to_string()),
                        _ => Err("'columns' must be names".to_string()),
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            Some(_) => return Err("'columns' must be a list".into()),
            None => None,
        };
        match parts.into_iter().find(|(k, _)| k == "data") {
            Some((_, Ordered::List(rows))) => lists(rows, columns).map_err(|b| b.0),
            _ => Err("dataframe_split needs 'data', a list of rows".into()),
        }
    }

    fn split(body: &str) -> Result<Frame, String> {
        match parse_json(body.as_bytes()) {
            Ok((Request::Frame(f), _)) => Ok(f),
            Ok((Request::Named(_), _)) => Err("named".into()),
            Err(b) => Err(b.0),
        }
    }

    #[test]
    fn dataframe_split_reads_as_the_json_tree_did() {
        let bodies = [
            r#"{"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2.5], [3, 4]]}}"#,
            r#"{"dataframe_split": {"index": [0, 1], "columns": ["a", "b"], "data": [[1, 2], [3, 4]]}}"#,
            r#"{"dataframe_split": {"data": [[0.5, 1e-3, -2], [7, 8, 9]], "columns": ["x", "y", "z"]}}"#,
            r#"{"dataframe_split": {"data": [1, 2, 3]}}"#,
            r#"{"dataframe_split": {"data": [[1, 2], [3]]}}"#,
            r#"{"dataframe_split": {"data": [{"a": 1}]}}"#,
            r#"{"dataframe_split": {"data": [[1, 2], {"a": 1}, [3]]}}"#,
            r#"{"dataframe_split": {"columns": ["a", null], "data": [[1, 2]]}}"#,
            r#"{"dataframe_split": {"columns": [0, 1], "data": [[1, 2]]}}"#,
            r#"{"dataframe_split": {"columns": "a", "data": [[1]]}}"#,
            r#"{"dataframe_split": {"columns": ["a"], "data": [[1, 2]]}}"#,
            r#"{"dataframe_split": {"columns": ["a"]}}"#,
            r#"{"dataframe_split": {"columns": ["a"], "data": 5}}"#,
            r#"{"dataframe_split": {"columns": ["a"], "data": []}}"#,
            r#"{"dataframe_split": {"data": []}}"#,
            r#"{"dataframe_split": {"data": [[1, [2]], [3, {"x": 1}]]}}"#,
            r#"{"dataframe_split": {"data": [[null, "t", true], [1, 18446744073709551615, 0]]}}"#,
            r#"{"dataframe_split": {"data": [[0, 1], [1, 0]]}}"#,
            r#"{"dataframe_split": {"data": [[2147483648, 1], [9007199254740993, 16777217]]}}"#,
            r#"{"dataframe_split": {"data": [[1], [2]], "data": [[3.5, 4], [5, 6]]}}"#,
            r#"{"dataframe_split": {"data": [[1]]}, "params": {"p": 1}, "other": [1, {"x": [2]}]}"#,
        ];
        let elems = [ElemType::F32, ElemType::F64, ElemType::I64, ElemType::I32, ElemType::Bool, ElemType::Str];
        let mut frames = 0;
        for body in bodies {
            match (split_by_tree(body), split(body)) {
                (Err(want), Err(got)) => assert_eq!(want, got, "{body}"),
                (Ok(want), Ok(got)) => {
                    frames += 1;
                    assert_eq!(want.columns, got.columns, "{body}");
                    assert_eq!(want.rows, got.rows, "{body}");
                    assert_eq!(want.cells.to_json(), got.cells.to_json(), "{body}");
                    for elem in elems {
                        for missing_ok in [false, true] {
                            let w = want.cells.column(0, 1).into_data(elem, "c", missing_ok).map_err(|b| b.0);
                            let g = got.cells.column(0, 1).into_data(elem, "c", missing_ok).map_err(|b| b.0);
                            assert_eq!(format!("{w:?}"), format!("{g:?}"), "{body} as {elem:?}");
                        }
                    }
                }
                (want, got) => panic!("{body}: {:?} vs {:?}", want.map(|f| f.columns), got.map(|f| f.columns)),
            }
        }
        // Both outcomes are covered.
        assert!(frames >= 10 && frames < bodies.len(), "{frames}");
    }

    #[test]
    fn the_body_is_refused_as_before() {
        assert_eq!(split("[1]").unwrap_err(), "the body must be a JSON object with one of dataframe_split, dataframe_records, instances or inputs");
        assert_eq!(split("5").unwrap_err(), "the body must be a JSON object with one of dataframe_split, dataframe_records, instances or inputs");
        assert_eq!(split("{").unwrap_err(), "the body is not valid JSON");
        assert_eq!(split(r#"{"dataframe_split": [1]}"#).unwrap_err(), "the format's value has the wrong shape");
        assert_eq!(split(r#"{"dataframe_split": {"data": [[1]]}, "instances": [[1]]}"#).unwrap_err(), "give exactly one of dataframe_split, dataframe_records, instances or inputs");
        assert_eq!(split(r#"{"params": {}}"#).unwrap_err(), "give exactly one of dataframe_split, dataframe_records, instances or inputs");
        // A repeated format counts once (the last).
        let f = split(r#"{"dataframe_split": {"data": [[1]]}, "dataframe_split": {"columns": ["a", "b"], "data": [[1, 2]]}}"#).unwrap();
        assert_eq!(f.columns, ["a", "b"]);
        // The other formats are read as before.
        let f = split(r#"{"dataframe_records": [{"b": 1, "a": 2}, {"a": 4, "b": 3}]}"#).unwrap();
        assert_eq!((f.columns.clone(), f.rows, f.cells.to_json()), (vec!["b".to_string(), "a".to_string()], 2, vec![json!(1), json!(2), json!(3), json!(4)]));
        // Once one value is not a whole number, all are numbers (converted to a tensor alike).
        let f = split(r#"{"instances": [[1, 2.5]]}"#).unwrap();
        assert_eq!((f.columns.clone(), f.cells.to_json()), (vec!["0".to_string(), "1".to_string()], vec![json!(1.0), json!(2.5)]));
        assert!(matches!(parse_json(br#"{"inputs": {"x": [[1, 2]]}}"#), Ok((Request::Named(n), _)) if n[0].0 == "x"));
    }
}
