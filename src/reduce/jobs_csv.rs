//! `jobs.csv`: one row per job file, for a pandas or polars user to load in one line.
//!
//! Summary tables answer the questions the sweep was built for; a tidy per-job table lets a
//! person ask new ones (`df.groupby("training.lr").rel_l2.median()`). Every job file gets a
//! row, whatever its status (failed and diverged jobs with their message; a file that is not a
//! readable job file with status `unreadable` and the reason). Columns, in this order:
//!
//! * `job_id`, `status`;
//! * every setting that differs between the job files, named by its dotted path
//!   (`training.lr`, `balancer.kind`, `collocation.residual.points`, ...), except those that
//!   the next columns already give (`seed`, `problem.eps`, `problem.kind`, `model.width`,
//!   `model.depth`, `model.normalization`, `sweep`);
//! * `problem`, `eps`, `width`, `depth`, `seed`, `balancer`, `normalization` (the root
//!   attributes), `rel_l2`, `max_abs_error`, `boundary_error` (the `eval` attributes),
//!   `wall_seconds`, `diverged_step` (-1 when none);
//! * `ntk_step_first`, `ntk_step_last`, then per NTK term T (sorted by name, `full` last)
//!   `ntk_T_frobenius_first`, `ntk_T_frobenius_last`, `ntk_T_trace_first`,
//!   `ntk_T_trace_last` (no trace columns for `full`, which has none);
//! * `rel_l2_best` (the smallest logged `train/rel_l2`), then per loss term T (sorted by
//!   name) `loss_T_last` and `weight_T_last`, the last logged loss and weight;
//! * `sweep`, `message`.
//!
//! An absent value is an empty cell; NaN is written `NaN` and infinities `inf` / `-inf`
//! (both pandas and polars parse these as floats); numbers in Rust's shortest round-trip
//! form; booleans `true` / `false`. Quoting follows RFC 4180 (the `csv` crate), so messages
//! with commas or new lines read back intact.

use std::path::Path;

use super::load::JobFacts;
use super::settings::{self, Setting};
use super::ReduceError;

/// Settings left out of the dotted columns because a fixed column gives them.
const GIVEN: [&str; 7] =
    ["seed", "problem.eps", "problem.kind", "model.width", "model.depth", "model.normalization", "sweep"];

/// File name of the per-job table inside the results directory.
pub const JOBS_CSV_FILE: &str = "jobs.csv";

/// The table as header + rows of cells (module documentation).
pub(crate) fn table(jobs: &[JobFacts]) -> (Vec<String>, Vec<Vec<String>>) {
    let with_settings: Vec<&settings::Settings> =
        jobs.iter().map(|j| &j.settings).filter(|s| !s.is_empty()).collect();
    let dotted = settings::varying(with_settings.iter().copied(), &GIVEN);
    let mut terms: Vec<(String, bool)> = Vec::new();
    for j in jobs {
        for t in &j.ntk {
            match terms.iter_mut().find(|(name, _)| *name == t.term) {
                Some((_, has_trace)) => *has_trace |= t.trace.is_some(),
                None => terms.push((t.term.clone(), t.trace.is_some())),
            }
        }
    }
    terms.sort_by(|a, b| (a.0 == "full", &a.0).cmp(&(b.0 == "full", &b.0)));
    let loss_terms: std::collections::BTreeSet<String> = jobs
        .iter()
        .flat_map(|j| j.train.last_loss.iter().chain(&j.train.last_weight).map(|(t, _)| t.clone()))
        .collect();
    let loss_terms: Vec<String> = loss_terms.into_iter().collect();

    let mut header: Vec<String> = vec!["job_id".into(), "status".into()];
    header.extend(dotted.iter().cloned());
    for name in [
        "problem", "eps", "width", "depth", "seed", "balancer", "normalization", "rel_l2",
        "max_abs_error", "boundary_error", "wall_seconds", "diverged_step", "ntk_step_first",
        "ntk_step_last",
    ] {
        header.push(name.into());
    }
    for (term, has_trace) in &terms {
        header.push(format!("ntk_{term}_frobenius_first"));
        header.push(format!("ntk_{term}_frobenius_last"));
        if *has_trace {
            header.push(format!("ntk_{term}_trace_first"));
            header.push(format!("ntk_{term}_trace_last"));
        }
    }
    header.push("rel_l2_best".into());
    for term in &loss_terms {
        header.push(format!("loss_{term}_last"));
        header.push(format!("weight_{term}_last"));
    }
    header.push("sweep".into());
    header.push("message".into());

    let rows = jobs.iter().map(|j| row(j, &dotted, &terms, &loss_terms)).collect();
    (header, rows)
}

fn row(j: &JobFacts, dotted: &[String], terms: &[(String, bool)], loss_terms: &[String]) -> Vec<String> {
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    let int = |v: Option<i64>| v.map(|i| i.to_string()).unwrap_or_default();
    let float = |v: Option<f64>| v.map(number).unwrap_or_default();
    let mut cells = vec![j.job_id.clone(), j.status.clone()];
    cells.extend(dotted.iter().map(|p| j.settings.get(p).map(setting).unwrap_or_default()));
    cells.extend([
        text(&j.problem),
        float(j.eps),
        int(j.width),
        int(j.depth),
        int(j.seed),
        text(&j.balancer),
        text(&j.normalization),
        float(j.rel_l2),
        float(j.max_abs_error),
        float(j.boundary_error),
        float(j.wall_seconds),
        int(j.diverged_step),
        int(j.ntk_steps.map(|s| s.0)),
        int(j.ntk_steps.map(|s| s.1)),
    ]);
    for (term, has_trace) in terms {
        let ends = j.ntk.iter().find(|t| t.term == *term);
        cells.push(float(ends.map(|t| t.frobenius.0)));
        cells.push(float(ends.map(|t| t.frobenius.1)));
        if *has_trace {
            let trace = ends.and_then(|t| t.trace);
            cells.push(float(trace.map(|t| t.0)));
            cells.push(float(trace.map(|t| t.1)));
        }
    }
    cells.push(float(j.train.best_rel_l2));
    for term in loss_terms {
        cells.push(float(j.train.loss(term)));
        cells.push(float(j.train.weight(term)));
    }
    cells.push(text(&j.sweep));
    cells.push(j.message.clone());
    cells
}

/// `0.001`, `1e-8`, `2.0`, `NaN`, `inf`, `-inf`.
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v.is_infinite() {
        if v > 0.0 { "inf" } else { "-inf" }.to_owned()
    } else {
        format!("{v:?}")
    }
}

fn setting(s: &Setting) -> String {
    match s {
        Setting::Null => String::new(),
        Setting::Float(f) => number(*f),
        other => other.to_string(),
    }
}

/// Writes the table of `jobs` to `path` (the caller renames it into place).
pub(crate) fn write(path: &Path, jobs: &[JobFacts]) -> Result<(), ReduceError> {
    let err = |source: csv::Error| ReduceError::WriteCsv { path: path.to_path_buf(), source };
    let (header, rows) = table(jobs);
    let mut w = csv::Writer::from_path(path).map_err(err)?;
    w.write_record(&header).map_err(err)?;
    for r in rows {
        w.write_record(&r).map_err(err)?;
    }
    w.flush().map_err(|source| ReduceError::Io { path: path.to_path_buf(), what: "cannot write", source })
}
