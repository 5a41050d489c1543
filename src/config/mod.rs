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
pub mod training;

pub use error::{ConfigError, SweepError};
pub use job::JobConfig;
pub use sweep::{JobSpec, Sweep};
