//! `vigil-c14n/1`: the explicit, versioned canonical JSON encoding behind every hash a person
//! signs or an auditor checks.
//!
//! Rules (close to RFC 8785, restricted so that it is trivial to re-implement in any language):
//! - objects: keys sorted by their UTF-8 bytes, no duplicate keys, no whitespace anywhere;
//! - strings: JSON escapes only for `"`, `\\` and control characters (`\u00XX` lowercase hex,
//!   except `\b \f \n \r \t`); everything else as raw UTF-8;
//! - integers: plain decimal; other numbers: the shortest representation that round-trips an
//!   IEEE-754 double (Rust's `{}` formatting, e.g. `0.92`, `1e-7`, `1e21`), `-0` as `0`;
//!   NaN and infinities are rejected before encoding;
//! - `null`, `true`, `false` as usual.
//!
//! Hashed documents are built field by field from domain types (see `model::content_document`),
//! never by serialising a Rust struct with serde: renaming a Rust field must not silently change
//! a signed hash. A new encoding would get a new version tag; old hashes keep their tag.

use serde_json::Value;
use std::fmt::Write;

/// The encoding's version tag, recorded beside every hash computed with it.
pub const ENCODING: &str = "vigil-c14n/1";

/// Encodes a JSON value canonically.
pub fn encode(value: &Value) -> String {
    let mut out = String::with_capacity(256);
    write_value(&mut out, value);
    out
}

fn write_value(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                let _ = write!(out, "{i}");
            } else if let Some(u) = n.as_u64() {
                let _ = write!(out, "{u}");
            } else {
                write_f64(out, n.as_f64().unwrap_or(0.0));
            }
        }
        Value::String(s) => write_str(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            // serde_json's default Map is a BTreeMap, but we sort explicitly so the encoding
            // does not depend on a cargo feature (`preserve_order`) some other crate may enable.
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_str(out, k);
                out.push(':');
                write_value(out, &map[k.as_str()]);
            }
            out.push('}');
        }
    }
}

fn write_f64(out: &mut String, f: f64) {
    if f == 0.0 {
        out.push('0');
    } else if f.fract() == 0.0 && f.abs() < 1e15 {
        let _ = write!(out, "{}", f as i64);
    } else {
        // Rust's Display for f64 prints the shortest round-tripping digits without exponent;
        // LowerExp gives the shortest digits with one. Use the exponent form only for very
        // large or very small magnitudes so the common case reads naturally.
        let abs = f.abs();
        if (1e-6..1e21).contains(&abs) {
            let _ = write!(out, "{f}");
        } else {
            let _ = write!(out, "{f:e}");
        }
    }
}

fn write_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sorted_compact_and_stable() {
        let v = json!({"b": 1, "a": [true, null, "x\"y\n"], "c": {"z": 0.92, "y": -0.0, "x": 1e-7, "w": 3.0}});
        assert_eq!(encode(&v), r#"{"a":[true,null,"x\"y\n"],"b":1,"c":{"w":3,"x":1e-7,"y":0,"z":0.92}}"#);
    }

    #[test]
    fn round_trips_through_a_parser() {
        let v = json!({"k": 0.1 + 0.2, "u": "\u{1}é", "big": 1.5e300});
        let s = encode(&v);
        let back: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(back, v);
        assert_eq!(encode(&back), s);
    }
}
