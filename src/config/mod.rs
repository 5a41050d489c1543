//! From a sweep file to a list of validated jobs.
//!
//! Two stages, as in ripgrep's LowArgs/HiArgs: the YAML is first read as a generic value
//! tree (with an index of where each key sits in the file), overrides from `--set` are
//! applied to that tree, then every job of the cartesian product is typed into a
//! [`job::JobConfig`] (unknown keys and wrong types rejected) and range-checked. Nothing is
//! trained and nothing is written before every job of the sweep is valid.

pub mod canonical;
pub mod error;
pub mod job;
pub mod location;
pub mod sweep;

pub use error::{ConfigError, SweepError};
pub use job::JobConfig;
pub use sweep::{JobSpec, Sweep};

/// Type a tagged section (without its `kind`) as `T` and return the path and message of the
/// first error, prefixed with `section`.
pub(crate) fn sweep_refine<T: serde::de::DeserializeOwned>(
    section: &str,
    value: &serde_yaml_ng::Value,
) -> Option<(Vec<String>, String)> {
    let mut v = value.clone();
    if let serde_yaml_ng::Value::Mapping(m) = &mut v {
        m.remove("kind");
    }
    let err = serde_path_to_error::deserialize::<_, T>(v).err()?;
    let mut path = vec![section.to_string()];
    path.extend(sweep::path_segments(err.path()));
    Some((path, err.inner().to_string()))
}
