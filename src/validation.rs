//! What every configuration section reports when a value is wrong, and how a typing error
//! inside a tagged section is pinned to its field.
//!
//! A leaf module: it imports nothing from the crate, so the domain modules (problem, model,
//! collocation, balancer) can validate their own configuration types without importing
//! `config`, which gathers them. That keeps the import graph one-way (config -> domain).

/// A problem with a value at a dotted path.
#[derive(Debug, Clone, PartialEq)]
pub struct Invalid {
    pub path: String,
    pub message: String,
    /// 1-based column inside a text value (an expression) where the problem is; the error
    /// then points at that character of the file when the value sits on one line.
    pub column: Option<usize>,
}

impl Invalid {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Invalid { path: path.into(), message: message.into(), column: None }
    }

    /// A problem at column `column` of the text value at `path`; the message says which column.
    pub fn at_column(path: impl Into<String>, column: usize, message: impl Into<String>) -> Self {
        Invalid { path: path.into(), message: format!("{} (column {column} of the expression)", message.into()), column: Some(column) }
    }
}

/// serde path segments as strings.
pub fn path_segments(p: &serde_path_to_error::Path) -> Vec<String> {
    use serde_path_to_error::Segment;
    p.iter()
        .filter_map(|s| match s {
            Segment::Seq { index } => Some(index.to_string()),
            Segment::Map { key } => Some(key.clone()),
            Segment::Enum { variant } => Some(variant.clone()),
            Segment::Unknown => None,
        })
        .collect()
}

/// Type a tagged section (without its `kind`) as `T` and return the path and message of the
/// first error, prefixed with `section`. serde reports errors inside an internally tagged
/// enum at the section itself; re-typing the section as its variant's struct names the field.
pub fn sweep_refine<T: serde::de::DeserializeOwned>(section: &str, value: &serde_yaml_ng::Value) -> Option<(Vec<String>, String)> {
    let mut v = value.clone();
    if let serde_yaml_ng::Value::Mapping(m) = &mut v {
        m.remove("kind");
    }
    let err = serde_path_to_error::deserialize::<_, T>(v).err()?;
    let mut path = vec![section.to_string()];
    path.extend(path_segments(err.path()));
    Some((path, err.inner().to_string()))
}
