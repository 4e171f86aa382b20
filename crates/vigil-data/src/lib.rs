//! Reading tabular data files (CSV, Parquet) into the monitoring [`Batch`] type.
//!
//! Column types come from the file (Parquet) or are inferred (CSV: a column whose non-missing
//! cells all parse as numbers is numeric, otherwise categorical); an `expected` schema (the
//! baseline's feature kinds) turns a text cell in a numeric column into an error naming the
//! file, column and row — never the cell's content, which may be patient data.

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type, UInt16Type, UInt32Type, UInt64Type};
use std::collections::BTreeMap;
use std::path::Path;
use vigil_core::monitor::{Batch, Column};
use vigil_core::{Error, ErrorCode, Result};

/// A column as read, before roles are assigned.
#[derive(Debug, Clone, PartialEq)]
pub enum RawColumn {
    /// Numbers (NaN = missing).
    Numbers(Vec<f64>),
    /// Text, dictionary-encoded (a categorical [`Column`]).
    Text(Column),
}

impl RawColumn {
    fn len(&self) -> usize {
        match self {
            RawColumn::Numbers(v) => v.len(),
            RawColumn::Text(Column::Categorical { codes, .. }) => codes.len(),
            RawColumn::Text(Column::Numeric(v)) => v.len(),
        }
    }

    /// The column as optional strings (ids, labels).
    pub fn strings(&self) -> Vec<Option<String>> {
        match self {
            RawColumn::Numbers(v) => v.iter().map(|x| (!x.is_nan()).then(|| number_text(*x))).collect(),
            RawColumn::Text(Column::Categorical { dictionary, codes }) => codes.iter().map(|&c| dictionary.get(c as usize).cloned()).collect(),
            RawColumn::Text(Column::Numeric(v)) => v.iter().map(|x| (!x.is_nan()).then(|| number_text(*x))).collect(),
        }
    }

    /// Test helper view: numbers as options.
    pub fn numbers(&self) -> Option<Vec<Option<f64>>> {
        match self {
            RawColumn::Numbers(v) => Some(v.iter().map(|x| (!x.is_nan()).then_some(*x)).collect()),
            RawColumn::Text(_) => None,
        }
    }
}

/// A column's values as text, as group names and labels are read from files: numbers
/// without a trailing `.0` when whole, categories as they are, missing as `None`.
pub fn column_strings(c: &Column) -> Vec<Option<String>> {
    match c {
        Column::Numeric(v) => v.iter().map(|x| (!x.is_nan()).then(|| number_text(*x))).collect(),
        Column::Categorical { dictionary, codes } => codes.iter().map(|&k| dictionary.get(k as usize).cloned()).collect(),
    }
}

fn number_text(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 { format!("{}", x as i64) } else { x.to_string() }
}

/// A table: ordered named columns of equal length.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Table {
    /// Columns in file order.
    pub columns: Vec<(String, RawColumn)>,
}

/// What kind a feature must have (from the baseline).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Numbers.
    Numeric,
    /// Categories.
    Categorical,
}

/// Which columns play which role.
#[derive(Debug, Clone, Default)]
pub struct Roles {
    /// Column with the model's scores.
    pub prediction: Option<String>,
    /// Column with prediction ids.
    pub id: Option<String>,
    /// Column with labels.
    pub label: Option<String>,
    /// Expected kinds of feature columns (a baseline's); others are inferred.
    pub expected: BTreeMap<String, Kind>,
    /// Columns to leave out (identifiers, free text, timestamps).
    pub ignore: Vec<String>,
    /// Keep every column's own kind: numbers where `expected` says categorical are left numeric
    /// (and refused against a categorical baseline) instead of read as category names. For
    /// typed data a client built (Parquet from the Python package), where that kind is the
    /// client's own; CSV cells have no type, so CSV is read leniently.
    pub strict_kinds: bool,
}

/// Reads a schema file: `{"numeric": [..], "categorical": [..], "ignore": [..]}`, every key
/// optional. Declared kinds override inference; a declared column must be in the data.
pub fn read_schema(path: &Path) -> Result<(BTreeMap<String, Kind>, Vec<String>)> {
    let text = std::fs::read_to_string(path).map_err(|e| err(path, format!("cannot read: {e}")))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| err(path, format!("not JSON (line {})", e.line())))?;
    let obj = v.as_object().ok_or_else(|| err(path, "a schema is an object with numeric, categorical and ignore lists".into()))?;
    let list = |k: &str| -> Result<Vec<String>> {
        match obj.get(k) {
            None => Ok(Vec::new()),
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .map(|x| x.as_str().map(str::to_owned).ok_or_else(|| err(path, format!("{k} must be a list of column names"))))
                .collect(),
            Some(_) => Err(err(path, format!("{k} must be a list of column names"))),
        }
    };
    if let Some(k) = obj.keys().find(|k| !matches!(k.as_str(), "numeric" | "categorical" | "ignore")) {
        return Err(err(path, format!("unknown schema key {}", vigil_core::ids::quote_key(k))));
    }
    let mut kinds = BTreeMap::new();
    for n in list("numeric")? {
        kinds.insert(n, Kind::Numeric);
    }
    for n in list("categorical")? {
        if kinds.insert(n.clone(), Kind::Categorical).is_some() {
            return Err(err(path, format!("column {} is declared both numeric and categorical", vigil_core::ids::quote_key(&n))));
        }
    }
    Ok((kinds, list("ignore")?))
}

fn err(file: &Path, msg: String) -> Error {
    Error::new(ErrorCode::InvalidManifest, format!("{}: {msg}", file.display()))
}

fn is_missing(s: &str) -> bool {
    matches!(s.trim(), "" | "NA" | "N/A" | "NaN" | "nan" | "null" | "NULL" | "None")
}

/// Reads a CSV (header row required) or Parquet file, by extension.
pub fn read_table(path: &Path) -> Result<Table> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    let table = match ext.as_str() {
        "parquet" | "pq" => read_parquet(path)?,
        "csv" | "txt" => read_csv(path)?,
        _ => return Err(err(path, "unknown file type; use .csv or .parquet".into())),
    };
    if table.columns.is_empty() {
        return Err(err(path, "the file has no columns".into()));
    }
    if table.columns.iter().all(|(_, c)| c.len() == 0) {
        return Err(err(path, "the file has no rows".into()));
    }
    Ok(table)
}

fn read_csv(path: &Path) -> Result<Table> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_path(path)
        .map_err(|e| err(path, format!("cannot open: {}", e.kind_name())))?;
    let headers: Vec<String> = rdr.headers().map_err(|_| err(path, "cannot read the header row".into()))?.iter().map(|h| h.trim().to_owned()).collect();
    let mut seen = std::collections::HashSet::new();
    for h in &headers {
        if h.is_empty() || !seen.insert(h.clone()) {
            return Err(err(path, "column names must be non-empty and unique".into()));
        }
    }
    let mut cells: Vec<Vec<Option<String>>> = vec![Vec::new(); headers.len()];
    for (row, rec) in rdr.records().enumerate() {
        let rec = rec.map_err(|e| err(path, format!("row {}: malformed CSV ({})", row + 2, e.kind_name())))?;
        for (i, cell) in rec.iter().enumerate() {
            cells[i].push(if is_missing(cell) { None } else { Some(cell.to_owned()) });
        }
    }
    let columns = headers
        .into_iter()
        .zip(cells)
        .map(|(name, v)| {
            let all_numeric = v.iter().flatten().all(|s| s.trim().parse::<f64>().is_ok());
            let col = if all_numeric && v.iter().any(Option::is_some) {
                RawColumn::Numbers(v.iter().map(|s| s.as_deref().and_then(|s| s.trim().parse::<f64>().ok()).unwrap_or(f64::NAN)).collect())
            } else {
                RawColumn::Text(Column::categorical(v))
            };
            (name, col)
        })
        .collect();
    Ok(Table { columns })
}

trait CsvErrorKind {
    fn kind_name(&self) -> &'static str;
}

impl CsvErrorKind for csv::Error {
    fn kind_name(&self) -> &'static str {
        match self.kind() {
            csv::ErrorKind::Io(_) => "io error",
            csv::ErrorKind::Utf8 { .. } => "not UTF-8",
            csv::ErrorKind::UnequalLengths { .. } => "rows have different numbers of fields",
            _ => "parse error",
        }
    }
}

fn read_parquet(path: &Path) -> Result<Table> {
    let file = std::fs::File::open(path).map_err(|e| err(path, format!("cannot open: {e}")))?;
    let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|_| err(path, "not a readable Parquet file (corrupt or truncated?)".into()))?;
    let schema = builder.schema().clone();
    // Reserve every column's full length up front: growing by doubling would hold up to twice
    // the data (and copy it) while reading a large file.
    let total_rows = usize::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0);
    let reader = builder.with_batch_size(65_536).build().map_err(|_| err(path, "cannot read the Parquet file".into()))?;
    let mut columns: Vec<(String, RawColumn)> = schema
        .fields()
        .iter()
        .map(|f| {
            let col = match f.data_type() {
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Boolean | DataType::Dictionary(_, _) => {
                    RawColumn::Text(Column::Categorical { dictionary: Vec::new(), codes: Vec::with_capacity(total_rows) })
                }
                _ => RawColumn::Numbers(Vec::with_capacity(total_rows)),
            };
            (f.name().clone(), col)
        })
        .collect();
    for batch in reader {
        let batch = batch.map_err(|_| err(path, "corrupt Parquet data".into()))?;
        for (i, (name, col)) in columns.iter_mut().enumerate() {
            let a = batch.column(i);
            append(a.as_ref(), col).map_err(|why| err(path, format!("column {}: {why}", vigil_core::ids::quote_key(name))))?;
        }
    }
    Ok(Table { columns })
}

fn push_text<'a>(col: &mut Column, index: &mut std::collections::HashMap<String, u32>, values: impl Iterator<Item = Option<&'a str>>) {
    let Column::Categorical { dictionary, codes } = col else { return };
    if index.is_empty() && !dictionary.is_empty() {
        for (i, k) in dictionary.iter().enumerate() {
            index.insert(k.clone(), i as u32);
        }
    }
    for v in values {
        codes.push(match v {
            None => vigil_core::monitor::MISSING,
            Some(s) => match index.get(s) {
                Some(c) => *c,
                None => {
                    let c = dictionary.len() as u32;
                    dictionary.push(s.to_owned());
                    index.insert(s.to_owned(), c);
                    c
                }
            },
        });
    }
}

fn append(a: &dyn Array, col: &mut RawColumn) -> std::result::Result<(), String> {
    macro_rules! nums {
        ($t:ty, $out:expr) => {{
            let p = a.as_primitive::<$t>();
            $out.extend((0..p.len()).map(|i| if p.is_null(i) { f64::NAN } else { p.value(i) as f64 }));
        }};
    }
    let mut index = std::collections::HashMap::new();
    match (a.data_type(), col) {
        (DataType::Float64, RawColumn::Numbers(o)) => nums!(Float64Type, o),
        (DataType::Float32, RawColumn::Numbers(o)) => nums!(Float32Type, o),
        (DataType::Int64, RawColumn::Numbers(o)) => nums!(Int64Type, o),
        (DataType::Int32, RawColumn::Numbers(o)) => nums!(Int32Type, o),
        (DataType::Int16, RawColumn::Numbers(o)) => nums!(Int16Type, o),
        (DataType::Int8, RawColumn::Numbers(o)) => nums!(Int8Type, o),
        (DataType::UInt64, RawColumn::Numbers(o)) => nums!(UInt64Type, o),
        (DataType::UInt32, RawColumn::Numbers(o)) => nums!(UInt32Type, o),
        (DataType::UInt16, RawColumn::Numbers(o)) => nums!(UInt16Type, o),
        (DataType::UInt8, RawColumn::Numbers(o)) => nums!(UInt8Type, o),
        (DataType::Utf8, RawColumn::Text(o)) => {
            let s = a.as_string::<i32>();
            push_text(o, &mut index, (0..s.len()).map(|i| (!s.is_null(i)).then(|| s.value(i))));
        }
        (DataType::LargeUtf8, RawColumn::Text(o)) => {
            let s = a.as_string::<i64>();
            push_text(o, &mut index, (0..s.len()).map(|i| (!s.is_null(i)).then(|| s.value(i))));
        }
        (DataType::Boolean, RawColumn::Text(o)) => {
            let b = a.as_boolean();
            push_text(o, &mut index, (0..b.len()).map(|i| (!b.is_null(i)).then(|| if b.value(i) { "true" } else { "false" })));
        }
        (DataType::Dictionary(k, v), RawColumn::Text(o)) if **k == DataType::Int32 && **v == DataType::Utf8 => {
            // Fast path for pandas/pyarrow categoricals: map the file's dictionary once, then
            // translate keys, instead of materialising a string per row.
            let d = a.as_dictionary::<Int32Type>();
            let values = d.values().as_string::<i32>();
            let mut map = Vec::with_capacity(values.len());
            let mut tmp = Column::Categorical { dictionary: Vec::new(), codes: Vec::new() };
            std::mem::swap(o, &mut tmp);
            push_text(&mut tmp, &mut index, (0..values.len()).map(|i| (!values.is_null(i)).then(|| values.value(i))));
            if let Column::Categorical { codes, .. } = &mut tmp {
                map.extend(codes.drain(codes.len() - values.len()..));
                let keys = d.keys();
                codes.extend((0..keys.len()).map(|i| if keys.is_null(i) { vigil_core::monitor::MISSING } else { map.get(keys.value(i) as usize).copied().unwrap_or(vigil_core::monitor::MISSING) }));
            }
            std::mem::swap(o, &mut tmp);
        }
        (DataType::Dictionary(_, v), RawColumn::Text(o)) if **v == DataType::Utf8 => {
            // Other key widths (pandas writes Int8 keys for small categoricals): widen the
            // keys once and take the fast path above.
            let target = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
            let widened = arrow::compute::cast(a, &target).map_err(|_| "unsupported dictionary encoding".to_owned())?;
            let mut wrapped = RawColumn::Text(Column::Categorical { dictionary: Vec::new(), codes: Vec::new() });
            std::mem::swap(o, match &mut wrapped {
                RawColumn::Text(c) => c,
                RawColumn::Numbers(_) => unreachable!(),
            });
            append(widened.as_ref(), &mut wrapped)?;
            if let RawColumn::Text(c) = wrapped {
                *o = c;
            }
        }
        (DataType::Dictionary(_, _), RawColumn::Text(o)) | (DataType::Utf8View, RawColumn::Text(o)) => {
            let cast = arrow::compute::cast(a, &DataType::Utf8).map_err(|_| "unsupported text encoding".to_owned())?;
            let s = cast.as_string::<i32>();
            push_text(o, &mut index, (0..s.len()).map(|i| (!s.is_null(i)).then(|| s.value(i))));
        }
        (t, _) => return Err(format!("unsupported type {t}")),
    }
    Ok(())
}

/// The columns of a holdout table, read with errors that name the column, never a value.
struct HoldoutColumns<'a>(&'a Table);

impl HoldoutColumns<'_> {
    fn bad(m: String) -> vigil_core::Error {
        vigil_core::Error::new(vigil_core::ErrorCode::InvalidValidationData, m)
    }

    fn column(&self, name: &str) -> Result<&RawColumn> {
        self.0.columns.iter().find(|(n, _)| n == name).map(|(_, c)| c).ok_or_else(|| Self::bad(format!("the holdout has no column {}", vigil_core::ids::quote_key(name))))
    }

    fn numbers(&self, name: &str) -> Result<Vec<f64>> {
        self.column(name)?.numbers().map(|v| v.into_iter().map(|x| x.unwrap_or(f64::NAN)).collect()).ok_or_else(|| Self::bad(format!("column {} must be numeric", vigil_core::ids::quote_key(name))))
    }

    /// Sensitive attribute columns as text (a missing value is the group "(missing)").
    fn sensitive(&self, names: &[String]) -> Result<Vec<(String, Vec<String>)>> {
        names.iter().filter(|s| !s.is_empty()).map(|s| Ok((s.clone(), self.column(s)?.strings().into_iter().map(|x| x.unwrap_or_else(|| "(missing)".into())).collect()))).collect()
    }
}

/// A validation holdout from a table: a binary label column (1/0, true/false, yes/no), a score
/// column, optionally the champion's scores, and sensitive attribute columns. Errors name the
/// column, never a value.
pub fn validation_data(table: &Table, label: &str, score: &str, champion: Option<&str>, sensitive: &[String], threshold: f64) -> Result<vigil_core::validate::ValidationData> {
    let cols = HoldoutColumns(table);
    let labels = cols
        .column(label)?
        .strings()
        .into_iter()
        .map(|s| match s.as_deref().map(str::trim).map(str::to_ascii_lowercase).as_deref() {
            Some("1" | "1.0" | "true" | "yes") => Ok(true),
            Some("0" | "0.0" | "false" | "no") => Ok(false),
            _ => Err(HoldoutColumns::bad(format!("label column {} must hold 1/0, true/false or yes/no in every row", vigil_core::ids::quote_key(label)))),
        })
        .collect::<Result<Vec<bool>>>()?;
    let scores = cols.numbers(score)?;
    let champion_scores = champion.map(|c| cols.numbers(c)).transpose()?;
    Ok(vigil_core::validate::ValidationData { labels, scores, champion_scores, sensitive: cols.sensitive(sensitive)?, threshold, targets: None })
}

/// A regressor's holdout: the numeric target, the version's predictions, optionally the
/// Production version's predictions, and sensitive attribute columns.
pub fn regression_data(table: &Table, target: &str, prediction: &str, champion: Option<&str>, sensitive: &[String]) -> Result<vigil_core::validate::ValidationData> {
    let cols = HoldoutColumns(table);
    let targets = cols.numbers(target)?;
    let scores = cols.numbers(prediction)?;
    let champion_scores = champion.map(|c| cols.numbers(c)).transpose()?;
    Ok(vigil_core::validate::ValidationData { labels: Vec::new(), scores, champion_scores, sensitive: cols.sensitive(sensitive)?, threshold: 0.5, targets: Some(targets) })
}

/// The holdout for a version of a model type: [`regression_data`] for regressors (label =
/// target, score = prediction), [`validation_data`] for the rest.
pub fn holdout_for(model_type: vigil_core::model::ModelType, table: &Table, label: &str, score: &str, champion: Option<&str>, sensitive: &[String], threshold: f64) -> Result<vigil_core::validate::ValidationData> {
    match model_type {
        vigil_core::model::ModelType::Regression => regression_data(table, label, score, champion, sensitive),
        _ => validation_data(table, label, score, champion, sensitive, threshold),
    }
}

/// The column kinds a baseline was profiled with (`Registry::baseline_features`), which new
/// data for the version is read with.
pub fn baseline_kinds(features: Option<Vec<(String, bool)>>) -> BTreeMap<String, Kind> {
    features.unwrap_or_default().into_iter().map(|(k, numeric)| (k, if numeric { Kind::Numeric } else { Kind::Categorical })).collect()
}

/// The (prediction id, label) pairs of a labels table, rows with either missing left out;
/// `None` when the table lacks one of the two columns.
pub fn label_pairs(table: Table, id_col: &str, label_col: &str) -> Option<Vec<(String, String)>> {
    let (mut ids, mut labels) = (None, None);
    for (name, col) in table.columns {
        if name == id_col {
            ids = Some(col.strings());
        } else if name == label_col {
            labels = Some(col.strings());
        }
    }
    Some(ids?.into_iter().zip(labels?).filter_map(|(i, l)| Some((i?, l?))).collect())
}

/// Assigns roles and builds the batch. Errors name the file and column.
pub fn to_batch(table: Table, roles: &Roles, file: &Path) -> Result<Batch> {
    let mut b = Batch::default();
    let mut by_name: BTreeMap<String, RawColumn> = table.columns.into_iter().filter(|(k, _)| !roles.ignore.contains(k)).collect();
    let mut take = |name: &Option<String>, what: &str| -> Result<Option<RawColumn>> {
        match name {
            None => Ok(None),
            Some(n) => by_name
                .remove(n)
                .map(Some)
                .ok_or_else(|| err(file, format!("the {what} column {} is not in the file", vigil_core::ids::quote_key(n)))),
        }
    };
    if let Some(p) = take(&roles.prediction, "prediction")? {
        match p {
            RawColumn::Numbers(v) => b.predictions = Some(v.into_iter().map(|x| (!x.is_nan()).then_some(x)).collect()),
            RawColumn::Text(_) => return Err(err(file, "the prediction column must be numeric scores".into())),
        }
    }
    if let Some(ids) = take(&roles.id, "id")? {
        b.prediction_ids = Some(ids.strings().into_iter().map(Option::unwrap_or_default).collect());
    }
    if let Some(l) = take(&roles.label, "label")? {
        b.labels = Some(l.strings());
    }
    for (name, expected) in &roles.expected {
        if !by_name.contains_key(name) {
            return Err(err(file, format!("missing feature column {} (declared by the baseline or schema)", vigil_core::ids::quote_key(name))));
        }
        if *expected == Kind::Numeric
            && let Some(col @ RawColumn::Text(_)) = by_name.get(name)
        {
            let row = col.strings().iter().position(|s| s.as_deref().is_some_and(|s| s.trim().parse::<f64>().is_err())).map(|r| r + 2).unwrap_or(0);
            return Err(err(file, format!("column {} must be numeric but has text (first at line {row})", vigil_core::ids::quote_key(name))));
        }
    }
    for (name, col) in by_name {
        let want = roles.expected.get(&name).copied();
        let column = match (col, want) {
            (c @ RawColumn::Numbers(_), Some(Kind::Categorical)) if !roles.strict_kinds => Column::categorical(c.strings()),
            (RawColumn::Numbers(v), _) => Column::Numeric(v),
            (RawColumn::Text(c), _) => c,
        };
        b.features.insert(name, column);
    }
    b.rows()?;
    Ok(b)
}

/// Writes named columns as a Parquet file in memory: numbers as `Float64` (NaN stays NaN, which
/// Vigil reads as missing), categories as dictionary-encoded strings with nulls for missing.
/// Reading it back with [`read_table`] gives the same columns and kinds, so a client can send
/// exactly the batch it would have built in process (the Python package's remote mode).
/// Columns of different lengths are refused, naming the column.
pub fn write_parquet(columns: &[(String, Column)]) -> Result<Vec<u8>> {
    use arrow::array::{ArrayRef, DictionaryArray, Float64Array, Int32Array, StringArray};
    use arrow::datatypes::{Field, Schema};
    use std::sync::Arc;
    let bad = |m: String| Error::new(ErrorCode::InvalidManifest, m);
    let len = |c: &Column| match c {
        Column::Numeric(v) => v.len(),
        Column::Categorical { codes, .. } => codes.len(),
    };
    let Some((_, first)) = columns.first() else { return Err(bad("the data has no columns".into())) };
    let rows = len(first);
    let mut seen = std::collections::HashSet::new();
    let mut fields = Vec::with_capacity(columns.len());
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(columns.len());
    for (name, col) in columns {
        let q = vigil_core::ids::quote_key(name);
        if name.is_empty() || !seen.insert(name.as_str()) {
            return Err(bad("column names must be non-empty and unique".into()));
        }
        if len(col) != rows {
            return Err(bad(format!("column {q} has {} values, not {rows} like the others", len(col))));
        }
        match col {
            Column::Numeric(v) => {
                fields.push(Field::new(name, DataType::Float64, false));
                arrays.push(Arc::new(Float64Array::from(v.clone())));
            }
            Column::Categorical { dictionary, codes } => {
                let n = i32::try_from(dictionary.len()).map_err(|_| bad(format!("column {q} has too many categories")))?;
                let keys: Int32Array = codes.iter().map(|&c| i32::try_from(c).ok().filter(|c| *c < n)).collect();
                let values = StringArray::from_iter_values(dictionary.iter());
                let d = DictionaryArray::try_new(keys, Arc::new(values)).map_err(|_| bad(format!("column {q}: invalid categories")))?;
                fields.push(Field::new(name, DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)), true));
                arrays.push(Arc::new(d));
            }
        }
    }
    let schema = Arc::new(Schema::new(fields));
    let batch = arrow::record_batch::RecordBatch::try_new(schema.clone(), arrays).map_err(|_| bad("the columns do not form a table".into()))?;
    let props = parquet::file::properties::WriterProperties::builder().set_compression(parquet::basic::Compression::SNAPPY).build();
    let mut out = Vec::new();
    let fail = |_| Error::new(ErrorCode::StorageFailure, "cannot encode the columns as Parquet");
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut out, schema, Some(props)).map_err(fail)?;
    w.write(&batch).map_err(fail)?;
    w.close().map_err(fail)?;
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parquet_written_reads_back_as_the_same_columns() {
        let cols = vec![
            ("age".to_owned(), Column::Numeric(vec![50.0, f64::NAN, 61.5])),
            ("unit".to_owned(), Column::categorical([Some("icu"), None, Some("NA")])),
            ("code".to_owned(), Column::categorical([Some("1"), Some("2"), Some("1")])),
        ];
        let bytes = write_parquet(&cols).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.parquet");
        std::fs::write(&p, bytes).unwrap();
        let t = read_table(&p).unwrap();
        let names: Vec<&str> = t.columns.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["age", "unit", "code"]);
        assert_eq!(t.columns[0].1.numbers().unwrap(), vec![Some(50.0), None, Some(61.5)]);
        // Text that looks like a number or like a missing marker stays a category.
        assert_eq!(t.columns[1].1, RawColumn::Text(Column::categorical([Some("icu"), None, Some("NA")])));
        assert_eq!(t.columns[2].1, RawColumn::Text(Column::categorical([Some("1"), Some("2"), Some("1")])));
        let uneven = vec![("a".to_owned(), Column::Numeric(vec![1.0])), ("b".to_owned(), Column::Numeric(vec![1.0, 2.0]))];
        let e = write_parquet(&uneven).unwrap_err();
        assert!(e.message().contains("'b' has 2 values"), "{}", e.message());
        assert!(write_parquet(&[]).is_err());
        assert!(write_parquet(&[("a".to_owned(), Column::Numeric(vec![])), ("a".to_owned(), Column::Numeric(vec![]))]).is_err());
    }

    #[test]
    fn csv_types_missing_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.csv");
        std::fs::write(&p, "age,sex,score,pid\n50,F,0.2,a\nNA,M,0.9,b\n61,,0.4,c\n").unwrap();
        let t = read_table(&p).unwrap();
        let roles = Roles { prediction: Some("score".into()), id: Some("pid".into()), ..Default::default() };
        let b = to_batch(t, &roles, &p).unwrap();
        assert_eq!(RawColumn::Numbers(match &b.features["age"] { Column::Numeric(v) => v.clone(), _ => vec![] }).numbers().unwrap(), vec![Some(50.0), None, Some(61.0)]);
        assert_eq!(b.features["sex"], Column::categorical([Some("F"), Some("M"), None]));
        assert_eq!(b.prediction_ids.as_deref(), Some(&["a".to_owned(), "b".into(), "c".into()][..]));

        std::fs::write(&p, "age,sex\n50,F\nJohn Smith,M\n").unwrap();
        let mut expected = BTreeMap::new();
        expected.insert("age".to_owned(), Kind::Numeric);
        expected.insert("sex".to_owned(), Kind::Categorical);
        let e = to_batch(read_table(&p).unwrap(), &Roles { expected: expected.clone(), ..Default::default() }, &p).unwrap_err();
        assert!(e.message().contains("'age'") && e.message().contains("line 3") && !e.message().contains("Smith"), "{}", e.message());
        std::fs::write(&p, "sex\nF\n").unwrap();
        let e = to_batch(read_table(&p).unwrap(), &Roles { expected, ..Default::default() }, &p).unwrap_err();
        assert!(e.message().contains("missing feature column 'age'"), "{}", e.message());
        std::fs::write(&p, "").unwrap();
        assert!(read_table(&p).is_err());
        std::fs::write(&p, "a,b\n1,2,3\n").unwrap();
        assert!(read_table(&p).unwrap_err().message().contains("different numbers of fields"));
        let q = dir.path().join("x.parquet");
        std::fs::write(&q, b"PAR1 not really").unwrap();
        assert!(read_table(&q).unwrap_err().message().contains("not a readable Parquet file"));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod parquet_tests {
    use super::*;

    #[test]
    fn reads_pyarrow_files_with_every_supported_type_and_nulls() {
        for codec in ["snappy", "zstd"] {
            let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/types_{codec}.parquet"));
            let t = read_table(&p).unwrap();
            let get = |n: &str| t.columns.iter().find(|(k, _)| k == n).unwrap().1.clone();
            assert_eq!(get("age").numbers().unwrap(), vec![Some(50.5), None, Some(61.0), Some(33.25)]);
            assert_eq!(get("visits").numbers().unwrap(), vec![Some(1.0), Some(2.0), None, Some(4.0)]);
            assert_eq!(get("weight").numbers().unwrap(), vec![Some(70.5), Some(80.0), Some(90.25), None]);
            let text = |v: &[Option<&str>]| v.iter().map(|s| s.map(str::to_owned)).collect::<Vec<_>>();
            assert_eq!(get("sex").strings(), text(&[Some("F"), Some("M"), None, Some("F")]));
            assert_eq!(get("site").strings(), text(&[Some("a"), Some("b"), Some("a"), None]));
            assert_eq!(get("smoker").strings(), text(&[Some("true"), Some("false"), None, Some("true")]));
        }
    }
}
