//! YAML text that YAML 1.1 and YAML 1.2 readers load as the same data.
//!
//! The job file's `config` attribute is read by people and by Python (PyYAML's `safe_load`,
//! which implements YAML 1.1), not only by ntksweep. A general YAML 1.2 emitter writes `1e-8`
//! for 1e-8, which YAML 1.1 resolves to the *string* "1e-8" (its float pattern needs a dot
//! and a signed exponent), and leaves words like `on` or `y` unquoted, which YAML 1.1 reads as
//! booleans. This emitter writes block-style YAML from any `Serialize` value with:
//!
//! * floats always with a dot and, in exponent form, a signed exponent (`1.0e-8`, `2.0`,
//!   `1.0e+20`), and `.inf`, `-.inf`, `.nan`; every float is its shortest round-trip decimal,
//!   so the value read back is the same `f64`;
//! * integers and booleans as plain `42`, `true`;
//! * strings and keys plain only when they are identifiers that no YAML 1.1 or 1.2 rule
//!   turns into something else (`[A-Za-z_][A-Za-z0-9_.+-]*`, minus words such as `yes`, `on`,
//!   `null`); anything else double-quoted with JSON escapes (a JSON string is a valid YAML
//!   double-quoted scalar);
//! * mappings in the order serde gives them (struct field order), empty ones as `{}` / `[]`.
//!
//! # Reference
//! YAML 1.1 type repository, <https://yaml.org/type/float.html> (`[-+]?([0-9][0-9_]*)?\.[0-9.]*
//! ([eE][-+][0-9]+)?`), <https://yaml.org/type/bool.html>; YAML 1.2.2, section 10.3 (core schema).

use serde::Serialize;
use serde_yaml_ng::Value;

/// Why a value cannot be written by [`to_yaml`].
#[derive(Debug, thiserror::Error)]
pub enum YamlTextError {
    #[error("cannot represent the value as YAML: {0}")]
    Serialize(#[from] serde_yaml_ng::Error),
    /// Externally tagged enum variants with data serialise as YAML tags (`!Variant value`),
    /// which `yaml.safe_load` rejects; ntksweep's configuration has none.
    #[error("the value holds a YAML tag (!{0}), which plain YAML readers reject")]
    Tagged(String),
}

/// Block-style YAML of `value` that PyYAML (`yaml.safe_load`) and serde YAML readers load as
/// the same data (module documentation).
pub fn to_yaml<T: Serialize>(value: &T) -> Result<String, YamlTextError> {
    let value = serde_yaml_ng::to_value(value)?;
    let mut out = String::new();
    match &value {
        Value::Mapping(m) if !m.is_empty() => mapping(&mut out, m, 0)?,
        Value::Sequence(s) if !s.is_empty() => sequence(&mut out, s, 0)?,
        other => {
            out.push_str(&scalar(other)?);
            out.push('\n');
        }
    }
    Ok(out)
}

/// `v` with a dot and, in exponent form, a signed exponent; `.inf`, `-.inf`, `.nan`.
///
/// Rust's `{:?}` gives the shortest decimal that reads back as the same `f64`, switching to
/// exponent form below 1e-4 and from 1e16 on (`1e-8`, `1e20`); only the spelling is changed.
pub fn float(v: f64) -> String {
    if v.is_nan() {
        return ".nan".to_owned();
    }
    if v.is_infinite() {
        return if v > 0.0 { ".inf" } else { "-.inf" }.to_owned();
    }
    let text = format!("{v:?}");
    let (mantissa, exponent) = match text.split_once('e') {
        Some((m, e)) => (m, Some(e)),
        None => (text.as_str(), None),
    };
    let mut out = mantissa.to_owned();
    if !out.contains('.') {
        out.push_str(".0");
    }
    if let Some(e) = exponent {
        out.push('e');
        if !e.starts_with('-') {
            out.push('+');
        }
        out.push_str(e);
    }
    out
}

/// Words that some YAML version reads as a boolean, null or special float when plain.
const RESERVED: &[&str] =
    &["y", "n", "yes", "no", "on", "off", "true", "false", "null", "nan", "inf", "infinity"];

/// `s` plain when no YAML 1.1/1.2 rule reinterprets it, else double-quoted (JSON escapes).
pub fn string(s: &str) -> String {
    let mut chars = s.chars();
    let identifier = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.+-".contains(c));
    if identifier && !RESERVED.contains(&s.to_ascii_lowercase().as_str()) {
        s.to_owned()
    } else {
        serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}"))
    }
}

fn scalar(v: &Value) -> Result<String, YamlTextError> {
    Ok(match v {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) if n.is_f64() => float(n.as_f64().unwrap_or(f64::NAN)),
        Value::Number(n) => n.to_string(),
        Value::String(s) => string(s),
        Value::Mapping(_) => "{}".to_owned(),
        Value::Sequence(_) => "[]".to_owned(),
        Value::Tagged(t) => return Err(YamlTextError::Tagged(t.tag.to_string())),
    })
}

fn key(k: &Value) -> Result<String, YamlTextError> {
    match k {
        Value::String(s) => Ok(string(s)),
        other => scalar(other),
    }
}

/// Whether `v` is written on lines of its own below its key or dash.
fn is_block(v: &Value) -> bool {
    match v {
        Value::Mapping(m) => !m.is_empty(),
        Value::Sequence(s) => !s.is_empty(),
        _ => false,
    }
}

fn mapping(out: &mut String, m: &serde_yaml_ng::Mapping, indent: usize) -> Result<(), YamlTextError> {
    let pad = " ".repeat(indent);
    for (k, v) in m {
        out.push_str(&pad);
        out.push_str(&key(k)?);
        out.push(':');
        match v {
            Value::Mapping(inner) if !inner.is_empty() => {
                out.push('\n');
                mapping(out, inner, indent + 2)?;
            }
            Value::Sequence(inner) if !inner.is_empty() => {
                out.push('\n');
                sequence(out, inner, indent + 2)?;
            }
            other => {
                out.push(' ');
                out.push_str(&scalar(other)?);
                out.push('\n');
            }
        }
    }
    Ok(())
}

fn sequence(out: &mut String, s: &[Value], indent: usize) -> Result<(), YamlTextError> {
    let pad = " ".repeat(indent);
    for item in s {
        if is_block(item) {
            // Render the item two columns in, then put the dash into its first line's indent.
            let mut inner = String::new();
            match item {
                Value::Mapping(m) => mapping(&mut inner, m, indent + 2)?,
                Value::Sequence(q) => sequence(&mut inner, q, indent + 2)?,
                _ => unreachable!("is_block"),
            }
            out.push_str(&pad);
            out.push_str("- ");
            out.push_str(&inner[indent + 2..]);
        } else {
            out.push_str(&pad);
            out.push_str("- ");
            out.push_str(&scalar(item)?);
            out.push('\n');
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn floats_have_a_dot_and_a_signed_exponent() {
        // The YAML 1.1 float pattern: a dot, and a sign in the exponent.
        let cases = [
            (1e-8, "1.0e-8"),
            (1e-3, "0.001"),
            (2.0, "2.0"),
            (0.1, "0.1"),
            (1e20, "1.0e+20"),
            (2.5e-7, "2.5e-7"),
            (-3.0, "-3.0"),
            (f64::INFINITY, ".inf"),
            (f64::NEG_INFINITY, "-.inf"),
            (f64::NAN, ".nan"),
        ];
        for (v, text) in cases {
            assert_eq!(float(v), text, "{v}");
        }
        // Every finite spelling reads back as the same f64.
        for v in [1e-8, 0.1 + 0.2, 1.0 / 3.0, 6.02214076e23, 5e-324, f64::MAX, -0.0] {
            let back: f64 = float(v).parse().unwrap();
            assert_eq!(back.to_bits(), v.to_bits(), "{v}");
        }
    }

    #[test]
    fn strings_are_quoted_where_a_yaml_reader_would_retype_them() {
        for plain in ["residual", "xavier_normal", "grad_stats", "a.b", "k+1"] {
            assert_eq!(string(plain), plain);
        }
        for (s, quoted) in [
            ("on", "\"on\""),
            ("Yes", "\"Yes\""),
            ("y", "\"y\""),
            ("null", "\"null\""),
            ("1e-8", "\"1e-8\""),
            ("", "\"\""),
            ("a: b", "\"a: b\""),
            ("two\nlines", "\"two\\nlines\""),
            ("0x10", "\"0x10\""),
        ] {
            assert_eq!(string(s), quoted);
        }
    }

    #[derive(Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Stage {
        steps: u64,
        lr: f64,
    }

    #[derive(Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Sample {
        seed: u64,
        name: String,
        flag: bool,
        small: f64,
        stages: Vec<Stage>,
        empty: Vec<u8>,
        weights: BTreeMap<String, f64>,
        none: BTreeMap<String, f64>,
        nested: Vec<Vec<i64>>,
    }

    #[test]
    fn block_layout_reads_back_equal() {
        let value = Sample {
            seed: 1234,
            name: "on".into(),
            flag: true,
            small: 1e-8,
            stages: vec![Stage { steps: 2000, lr: 1e-3 }, Stage { steps: 5000, lr: 1e-4 }],
            empty: vec![],
            weights: BTreeMap::from([("boundary".into(), 100.0), ("residual".into(), 1.0)]),
            none: BTreeMap::new(),
            nested: vec![vec![1, 2], vec![]],
        };
        let text = to_yaml(&value).unwrap();
        let expected = "\
seed: 1234
name: \"on\"
flag: true
small: 1.0e-8
stages:
  - steps: 2000
    lr: 0.001
  - steps: 5000
    lr: 0.0001
empty: []
weights:
  boundary: 100.0
  residual: 1.0
none: {}
nested:
  - - 1
    - 2
  - []
";
        assert_eq!(text, expected);
        let back: Sample = serde_yaml_ng::from_str(&text).unwrap();
        assert_eq!(back, value);
    }
}
