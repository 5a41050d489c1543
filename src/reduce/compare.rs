//! Comparisons between the values of one sweep axis: does `grad_stats` beat `none`, does a
//! larger learning rate help, beyond seed-to-seed noise?
//!
//! For every distinguishing setting of the trial groups (an *axis*, see
//! [`super::settings::distinguishing`]) other than seed and eps that takes two or more values,
//! the trial groups are split by the values of all other axes (eps included); within each
//! such *setting of the remaining axes*, one row per value of the axis gives the mean relative
//! L2 error over seeds with its 95% Student t interval, the mean max abs error, their relative
//! change against the axis's first value, and Welch's t-test against that first value; and,
//! with the same relative changes, the best rel L2 over each run and the last logged loss and
//! weight of every term (what seeds 000 and 001 report).
//!
//! "First value" follows the sweep: values are ordered by the earliest position in the plan
//! (`plan.tsv`, the order the sweep file lists them in) of any job that has them, then by value.

use std::collections::{BTreeMap, HashMap};

use super::aggregate::{key_field, TrialGroup};
use super::settings::Setting;
use super::stats::{self, MeanCi, Welch};

/// One value of the compared axis within one setting of the remaining axes.
#[derive(Debug, Clone)]
pub struct CompareRow {
    /// The axis value (`None`: the group has no such setting).
    pub value: Option<Setting>,
    /// Key of the trial group under `trials/`.
    pub trial_key: String,
    /// Mean over seeds of the per-trial relative L2 error, with its 95% interval.
    pub rel_l2: MeanCi,
    /// Mean over seeds of the per-trial max abs error, with its 95% interval.
    pub max_abs_error: MeanCi,
    /// `(rel_l2 - rel_l2 of the first row) / rel_l2 of the first row` (0 for the first row).
    pub rel_l2_change: f64,
    /// The same for the max abs error.
    pub max_abs_error_change: f64,
    /// Welch's test of this row's relative L2 errors against the first row's (NaN there).
    pub welch: Welch,
    /// Mean over seeds of the smallest logged rel L2 of each run, with its 95% interval.
    pub best_rel_l2: MeanCi,
    /// Relative change of `best_rel_l2.mean` against the first row.
    pub best_rel_l2_change: f64,
    /// Per term: mean over seeds of the last logged loss, and its change against the first row.
    pub last_loss: Vec<TermChange>,
    /// Per term: mean over seeds of the last logged weight, and its change.
    pub last_weight: Vec<TermChange>,
}

/// Mean over seeds of one per-term quantity and its relative change against the first row.
#[derive(Debug, Clone)]
pub struct TermChange {
    pub term: String,
    pub mean: MeanCi,
    pub change: f64,
}

/// The rows of one axis at one setting of the remaining axes.
#[derive(Debug, Clone)]
pub struct Comparison {
    /// Dotted path (or attribute name such as `balancer`) of the compared axis.
    pub axis: String,
    /// Values of the other distinguishing settings, shared by every row.
    pub fixed: Vec<(String, Option<Setting>)>,
    /// HDF5 name under `compare/<axis>/`: `path=value` parts joined by `_`, or `all`.
    pub key: String,
    /// One per axis value, the first value first.
    pub rows: Vec<CompareRow>,
}

impl Comparison {
    /// `eps=0.125, training.lr=0.01`, or `all jobs` when no other axis varies.
    pub fn setting_text(&self) -> String {
        if self.fixed.is_empty() {
            return "all jobs".to_owned();
        }
        self.fixed.iter().map(|(p, v)| format!("{p}={}", value_text(v))).collect::<Vec<_>>().join(", ")
    }
}

/// The text of an axis value (`unset` where a group lacks the setting).
pub fn value_text(v: &Option<Setting>) -> String {
    match v {
        Some(Setting::Float(f)) => format!("{f}"),
        Some(s) => s.to_string(),
        None => "unset".to_owned(),
    }
}

/// Every comparison of `trials` along `axes` (seed and eps excluded); `plan_index` gives each
/// job id's position in the sweep's plan (module documentation).
pub(crate) fn compare(trials: &[TrialGroup], axes: &[String], plan_index: &HashMap<String, usize>) -> Vec<Comparison> {
    let first_position = |t: &TrialGroup| {
        t.job_ids.iter().filter_map(|id| plan_index.get(id).copied()).min().unwrap_or(usize::MAX)
    };
    let mut out = Vec::new();
    for axis in axes.iter().filter(|a| !matches!(a.as_str(), "seed" | "eps" | "problem.eps")) {
        let others: Vec<&String> = axes.iter().filter(|a| *a != axis).collect();
        // Axis values in sweep order.
        let mut rank: BTreeMap<Option<&Setting>, usize> = BTreeMap::new();
        for t in trials {
            let r = rank.entry(t.settings.get(axis)).or_insert(usize::MAX);
            *r = (*r).min(first_position(t));
        }
        let mut partitions: BTreeMap<Vec<Option<&Setting>>, Vec<&TrialGroup>> = BTreeMap::new();
        for t in trials {
            let key = others.iter().map(|o| t.settings.get(*o)).collect();
            partitions.entry(key).or_default().push(t);
        }
        for (fixed, mut groups) in partitions {
            if groups.len() < 2 {
                continue;
            }
            groups.sort_by_key(|t| {
                let v = t.settings.get(axis);
                (rank[&v], v)
            });
            let fixed: Vec<(String, Option<Setting>)> =
                others.iter().zip(fixed).map(|(p, v)| ((*p).clone(), v.cloned())).collect();
            let key = if fixed.is_empty() {
                "all".to_owned()
            } else {
                fixed.iter().map(|(p, v)| key_field(&format!("{p}={}", value_text(v)))).collect::<Vec<_>>().join("_")
            };
            out.push(Comparison { axis: axis.clone(), fixed, key, rows: rows(axis, &groups) });
        }
    }
    out
}

fn rows(axis: &str, groups: &[&TrialGroup]) -> Vec<CompareRow> {
    let base = groups[0];
    let base_rel = stats::mean(&base.rel_l2_values);
    let base_max = stats::mean(&base.max_abs_errors);
    let base_best = stats::mean(&base.best_rel_l2_values);
    groups
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let rel_l2 = stats::mean_ci(&t.rel_l2_values);
            let max_abs_error = stats::mean_ci(&t.max_abs_errors);
            let welch = if i == 0 {
                Welch { t: f64::NAN, dof: f64::NAN, p_value: f64::NAN }
            } else {
                stats::welch_t_test(&t.rel_l2_values, &base.rel_l2_values)
            };
            let best_rel_l2 = stats::mean_ci(&t.best_rel_l2_values);
            CompareRow {
                value: t.settings.get(axis).cloned(),
                trial_key: t.key.clone(),
                rel_l2_change: change(rel_l2.mean, base_rel),
                max_abs_error_change: change(max_abs_error.mean, base_max),
                best_rel_l2_change: change(best_rel_l2.mean, base_best),
                rel_l2,
                max_abs_error,
                welch,
                best_rel_l2,
                last_loss: term_changes(&t.last_loss, &base.last_loss),
                last_weight: term_changes(&t.last_weight, &base.last_weight),
            }
        })
        .collect()
}

/// `(value - reference) / reference`, NaN where the reference is 0 or not finite.
fn change(value: f64, reference: f64) -> f64 {
    if reference != 0.0 && reference.is_finite() {
        (value - reference) / reference
    } else {
        f64::NAN
    }
}

/// Per term of `group`: mean over seeds and change against the same term of `base` (NaN when
/// the first row lacks the term).
fn term_changes(group: &[(String, Vec<f64>)], base: &[(String, Vec<f64>)]) -> Vec<TermChange> {
    group
        .iter()
        .map(|(term, values)| {
            let mean = stats::mean_ci(values);
            let reference = base.iter().find(|(t, _)| t == term).map_or(f64::NAN, |(_, v)| stats::mean(v));
            TermChange { term: term.clone(), change: change(mean.mean, reference), mean }
        })
        .collect()
}
