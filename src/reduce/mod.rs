//! The reducer: turns a results directory of job files into the published numbers.
//!
//! `DIR/jobs/*.h5` (one file per job, see the HDF5 contract in the README) becomes
//! `DIR/summary.h5`, `DIR/report.md` and `DIR/jobs.csv`:
//!
//! * `trials/<key>`: for every trial group (all settings equal except the seed) the seed
//!   average of the evaluation error, its pointwise variance and their norms (paper section
//!   4.3, Tables 1 and 2: ten-trial averages).
//! * `scaling/<key>`: for every scaling series (all settings equal except seed and eps), NTK
//!   term and snapshot, the Frobenius norm of the NTK block as a function of eps, with the
//!   exponent p of `||K||_F ~ eps^p` fitted over every trial (paper section 4.1: p = -2 for
//!   the Darcy residual block). Problems without eps have none.
//! * `compare/<axis>/<key>`: for every sweep axis other than seed and eps, the trial groups
//!   side by side with relative changes and Welch's t-test ([`compare`]).
//! * `jobs.csv`: one row per job file ([`jobs_csv`]).
//!
//! Settings come from the job files themselves ([`settings`]): any swept path separates
//! groups. Key formats are in [`scaling_key`] and [`trial_key`]. Failed, diverged and
//! unreadable jobs are counted and listed, never silently dropped; jobs that were planned but
//! have no file are reported as missing when the caller passes the planned ids
//! ([`ReduceOptions`]).
//!
//! The module is split by concern: `load` reads one job file, `settings` flattens
//! configurations and picks the distinguishing ones, `stats` holds the formulas, `aggregate`
//! groups jobs, `compare` sets groups side by side, `summary` writes the HDF5 file, `report`
//! the Markdown, `jobs_csv` the table, and `synthetic` writes fake job files for tests and
//! the benchmark.

mod aggregate;
pub mod compare;
pub mod history;
pub mod jobs_csv;
pub(crate) mod load;
mod report;
pub mod settings;
pub mod stats;
mod summary;
pub mod synthetic;

use std::io;
use std::path::{Path, PathBuf};

pub use aggregate::{
    boundary_mask, key_field, scaling_key, theory_exponent, trial_key, Groups, ScalingGroup,
    TrialGroup, GRID_RTOL,
};
pub use compare::{CompareRow, Comparison};
pub use jobs_csv::JOBS_CSV_FILE;
pub use load::{ExcludedJob, ExclusionKind, JobFacts, NtkEnds};
pub use synthetic::{bench_reduce, write_synthetic_job, ReduceBench, SyntheticEval, SyntheticJob};

use aggregate::Aggregator;
use load::Outcome;

/// Everything that can stop a reduction. A bad *job file* is not an error (it is counted as
/// unreadable); these are problems with the directory or with the outputs.
#[derive(Debug, thiserror::Error)]
pub enum ReduceError {
    // --- reading the results directory ---
    /// `DIR/jobs` is missing or cannot be listed.
    #[error("cannot list job files in {path}: {source}")]
    ListJobs { path: PathBuf, source: io::Error },

    // --- combining jobs ---
    /// Two trials of one group were evaluated on different points, so their errors cannot be
    /// averaged pointwise.
    #[error("trial group {group}: {other} has a different eval/x than {first} ({detail})")]
    EvalGridMismatch { group: String, first: PathBuf, other: PathBuf, detail: String },

    // --- writing outputs ---
    /// An HDF5 call failed while writing `path`.
    #[error("cannot write {path} ({what}): {source}")]
    WriteHdf5 { path: PathBuf, what: String, source: hdf5::Error },
    /// The CSV writer failed on `path`.
    #[error("cannot write {path}: {source}")]
    WriteCsv { path: PathBuf, source: csv::Error },
    /// A plain file operation failed on `path`.
    #[error("{what} {path}: {source}")]
    Io { path: PathBuf, what: &'static str, source: io::Error },
}

/// Options of [`reduce`].
#[derive(Debug, Clone, Default)]
pub struct ReduceOptions {
    /// Job ids the plan expects. When given, ids with no `DIR/jobs/<id>.h5` file are reported
    /// as missing (a file that exists but cannot be read counts as unreadable, not missing).
    pub expected_job_ids: Option<Vec<String>>,
}

/// Job counts by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobCounts {
    /// Files with `status = done` that were read completely and entered the reduction.
    pub done: usize,
    pub failed: usize,
    pub diverged: usize,
    pub unreadable: usize,
    /// Expected ids without a file; `None` when no expected ids were given.
    pub missing: Option<usize>,
}

/// The result of [`reduce`]: what was written to `summary.h5`, plus the bookkeeping.
#[derive(Debug, Clone)]
pub struct Reduction {
    /// The results directory that was reduced.
    pub dir: PathBuf,
    pub counts: JobCounts,
    /// Failed, diverged and unreadable jobs, in file name order.
    pub excluded: Vec<ExcludedJob>,
    /// Expected job ids without a file, sorted.
    pub missing: Vec<String>,
    /// Trial groups and scaling series with their statistics.
    pub groups: Groups,
    /// Every axis other than seed and eps, value against value.
    pub comparisons: Vec<Comparison>,
    /// One entry per job file, file name order (the rows of `jobs.csv`).
    pub jobs: Vec<JobFacts>,
    /// Things a reader should know (pooled seeds, differing step lists, invalid norms).
    pub warnings: Vec<String>,
}

impl Reduction {
    /// `DIR/summary.h5`.
    pub fn summary_path(&self) -> PathBuf {
        self.dir.join(SUMMARY_FILE)
    }

    /// `DIR/report.md`.
    pub fn report_path(&self) -> PathBuf {
        self.dir.join(REPORT_FILE)
    }

    /// `DIR/jobs.csv`.
    pub fn jobs_csv_path(&self) -> PathBuf {
        self.dir.join(JOBS_CSV_FILE)
    }

    /// The Markdown report (the content of `report.md`), with aligned tables for a terminal.
    pub fn report_markdown(&self) -> String {
        report::render(self)
    }
}

/// File name of the reduced HDF5 file inside the results directory.
pub const SUMMARY_FILE: &str = "summary.h5";
/// File name of the Markdown report inside the results directory.
pub const REPORT_FILE: &str = "report.md";

/// Reduces `dir/jobs/*.h5` into `dir/summary.h5`, `dir/report.md` and `dir/jobs.csv`.
///
/// Files whose names start with `.` (temporary files of running jobs) are skipped. Files are
/// read in name order, each opened once. Every output is written under a temporary name and
/// renamed, so a reader never sees half a file.
///
/// # Errors
/// Only for problems that make the whole reduction meaningless: `dir/jobs` cannot be listed,
/// two trials of a group disagree on `eval/x`, or an output cannot be written. A job file that
/// cannot be read is reported in [`Reduction::excluded`] instead.
pub fn reduce(dir: &Path, opts: &ReduceOptions) -> Result<Reduction, ReduceError> {
    let jobs_dir = dir.join("jobs");
    let files = list_job_files(&jobs_dir)?;

    let mut counts = JobCounts::default();
    let mut excluded = Vec::new();
    let mut jobs = Vec::with_capacity(files.len());
    let mut aggregator = Aggregator::default();
    for path in &files {
        let loaded = load::load_job(path);
        jobs.push(loaded.facts);
        match loaded.outcome {
            Outcome::Done(job) => {
                let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned());
                if stem.as_deref() != Some(job.job_id.as_str()) {
                    aggregator.warnings.push(format!(
                        "{} holds job_id '{}' (file name and id differ)",
                        path.display(),
                        job.job_id
                    ));
                }
                counts.done += 1;
                aggregator.add(*job)?;
            }
            Outcome::Excluded(job) => {
                match job.kind {
                    ExclusionKind::Failed => counts.failed += 1,
                    ExclusionKind::Diverged => counts.diverged += 1,
                    ExclusionKind::Unreadable => counts.unreadable += 1,
                }
                excluded.push(job);
            }
        }
    }

    let mut missing = Vec::new();
    let mut plan_index = std::collections::HashMap::new();
    if let Some(expected) = &opts.expected_job_ids {
        let present: std::collections::HashSet<String> = files
            .iter()
            .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
            .collect();
        missing = expected.iter().filter(|id| !present.contains(*id)).cloned().collect();
        missing.sort();
        missing.dedup();
        counts.missing = Some(missing.len());
        for (i, id) in expected.iter().enumerate() {
            plan_index.entry(id.clone()).or_insert(i);
        }
    }

    let (groups, warnings) = aggregator.finish();
    let comparisons = compare::compare(&groups.trials, &groups.trial_axes, &plan_index);
    let reduction = Reduction { dir: dir.to_path_buf(), counts, excluded, missing, groups, comparisons, jobs, warnings };

    let summary_path = reduction.summary_path();
    let tmp = temp_sibling(&summary_path);
    if let Err(e) = summary::write(&tmp, &reduction) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    rename(&tmp, &summary_path)?;

    let report_path = reduction.report_path();
    let tmp = temp_sibling(&report_path);
    std::fs::write(&tmp, reduction.report_markdown())
        .map_err(|source| ReduceError::Io { path: tmp.clone(), what: "cannot write", source })?;
    rename(&tmp, &report_path)?;

    let csv_path = reduction.jobs_csv_path();
    let tmp = temp_sibling(&csv_path);
    if let Err(e) = jobs_csv::write(&tmp, &reduction.jobs) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    rename(&tmp, &csv_path)?;
    Ok(reduction)
}

/// `*.h5` files in `jobs_dir` whose names do not start with `.`, sorted by name.
fn list_job_files(jobs_dir: &Path) -> Result<Vec<PathBuf>, ReduceError> {
    let list_err = |source| ReduceError::ListJobs { path: jobs_dir.to_path_buf(), source };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(jobs_dir).map_err(list_err)? {
        let entry = entry.map_err(list_err)?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || !name.ends_with(".h5") {
            continue;
        }
        if entry.file_type().map_err(list_err)?.is_dir() {
            continue;
        }
        files.push(entry.path());
    }
    files.sort();
    Ok(files)
}

/// `dir/.name.tmp.<pid>` next to `path`: same file system, so the rename is atomic.
fn temp_sibling(path: &Path) -> PathBuf {
    let name = path.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp.{}", std::process::id()))
}

fn rename(from: &Path, to: &Path) -> Result<(), ReduceError> {
    std::fs::rename(from, to).map_err(|source| {
        let _ = std::fs::remove_file(from);
        ReduceError::Io { path: to.to_path_buf(), what: "cannot rename the temporary file to", source }
    })
}

#[cfg(test)]
mod tests;
