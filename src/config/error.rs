//! Configuration errors that point at the file, line, column and key.

use std::fmt;

/// Where a configuration value came from.
#[derive(Debug, Clone, PartialEq)]
pub enum Origin {
    /// A sweep file, with a 1-based position when it could be located.
    File { path: String, line: Option<usize>, col: Option<usize> },
    /// A `--set` option on the command line.
    CommandLine { arg: String },
}

/// One thing wrong with a sweep.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub origin: Origin,
    /// Dotted key path the error is about (empty for whole-file errors).
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.origin {
            Origin::File { path, line: Some(l), col: Some(c) } => write!(f, "{path}:{l}:{c}: ")?,
            Origin::File { path, line: Some(l), col: None } => write!(f, "{path}:{l}: ")?,
            Origin::File { path, .. } => write!(f, "{path}: ")?,
            Origin::CommandLine { arg } => write!(f, "--set {arg}: ")?,
        }
        if !self.key.is_empty() {
            write!(f, "key `{}`: ", self.key)?;
        }
        write!(f, "{}", self.message)
    }
}

/// Errors of reading and expanding a sweep.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("cannot read sweep file {path}")]
    Read { path: String, source: std::io::Error },
    #[error("{}", render(.0))]
    Invalid(Vec<ConfigError>),
}

fn render(errors: &[ConfigError]) -> String {
    let mut s = format!("invalid sweep ({} error{}):", errors.len(), if errors.len() == 1 { "" } else { "s" });
    for e in errors {
        s.push_str("\n  ");
        s.push_str(&e.to_string());
    }
    s
}
