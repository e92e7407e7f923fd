//! Canonical JSON as TUF signs it (the OLPC dialect the TUF specification
//! and python-tuf / securesystemslib use): object keys sorted by their
//! UTF-8 bytes, no insignificant whitespace, integers only, and strings
//! escaping only `"` and `\`.
//!
//! Signatures cover these bytes, never the file's own spelling, so a
//! metadata file may be pretty-printed without breaking its signatures.

use serde_json::Value;

/// Why a value has no canonical form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonicalError {
    /// Canonical JSON has no floating-point numbers.
    #[error("canonical JSON has no non-integer numbers (found {0})")]
    Float(String),
}

/// Encodes `value` as canonical JSON bytes.
pub fn to_canonical(value: &Value) -> Result<Vec<u8>, CanonicalError> {
    let mut out = Vec::new();
    write_value(value, &mut out)?;
    Ok(out)
}

fn write_value(value: &Value, out: &mut Vec<u8>) -> Result<(), CanonicalError> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            if n.is_f64() {
                return Err(CanonicalError::Float(n.to_string()));
            }
            out.extend_from_slice(n.to_string().as_bytes());
        }
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, out)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            // Sorted here rather than trusting serde_json's map order: a
            // feature elsewhere in the workspace (`preserve_order`) would
            // silently change it.
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(key, out);
                out.push(b':');
                write_value(item, out)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

fn write_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for b in s.bytes() {
        if b == b'"' || b == b'\\' {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sorts_keys_and_drops_whitespace() {
        let v = json!({"b": 1, "a": [true, null, "x\"y\\z"], "A": {"z": -3, "c": "é\n"}});
        let got = String::from_utf8(to_canonical(&v).unwrap()).unwrap();
        assert_eq!(
            got,
            "{\"A\":{\"c\":\"é\n\",\"z\":-3},\"a\":[true,null,\"x\\\"y\\\\z\"],\"b\":1}"
        );
    }

    #[test]
    fn refuses_floats() {
        assert!(matches!(
            to_canonical(&json!({"x": 1.5})),
            Err(CanonicalError::Float(_))
        ));
    }
}
