//! Grouping finished jobs into the two published reductions and computing their statistics.
//!
//! A *trial group* is every finished job that shares all settings except the seed; a *scaling
//! series* is every finished job that shares all settings except the seed and eps. Settings
//! are the job's flattened `config` attribute and `sweep` (see [`super::settings`]) together
//! with the identifying root attributes, so any swept or `--set` path separates groups and two
//! sweeps in one folder never pool.
//!
//! Jobs arrive one at a time (the reducer streams over thousands of files), so the trial
//! groups keep running pointwise moments instead of every error field, and the scaling series
//! keep only (eps, Frobenius norm, first eigenvalues) per trial. [`Aggregator::finish`] turns the accumulators into
//! [`ScalingGroup`]s and [`TrialGroup`]s, choosing which settings name them
//! ([`super::settings::distinguishing`]). Problems without eps (eps = NaN in the file) give
//! trial groups and no scaling series.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::PathBuf;

use ndarray::Array2;

use super::history::TrainEnds;
use super::load::DoneJob;
use super::settings::{self, Setting, Settings, KEY_ATTRS};
use super::stats::{self, MeanCi, PointwiseMoments, PowerLawFit};
use super::ReduceError;

/// How close two jobs' `eval/x` must be to count as the same grid:
/// `|a - b| <= GRID_RTOL * max(1, |a|)` for every entry.
pub const GRID_RTOL: f64 = 1e-12;

/// NTK Frobenius norm of one term at one snapshot, as a power law in eps over every trial of
/// one scaling series.
#[derive(Debug, Clone)]
pub struct ScalingGroup {
    /// HDF5 name under `scaling/`, see [`scaling_key`].
    pub key: String,
    /// Readable description: problem and the settings that tell series apart.
    pub name: String,
    pub problem: String,
    pub width: i64,
    pub balancer: String,
    pub normalization: String,
    /// The series' settings: dotted configuration paths, `sweep`, and the identifying
    /// attributes under their own names ([`KEY_ATTRS`]).
    pub settings: Settings,
    /// NTK term (`residual`, `boundary`, ..., or `full` for the whole kernel).
    pub term: String,
    /// Index of `step` among the distinct snapshot steps of this series and term; equals the
    /// index in `ntk/step` when every job recorded the same steps.
    pub snapshot: usize,
    /// Training step of the snapshot (`ntk/step` value).
    pub step: i64,
    /// Distinct eps, ascending. Shape [E].
    pub eps: Vec<f64>,
    /// Mean Frobenius norm over the trials at each eps. Shape [E].
    pub frobenius_mean: Vec<f64>,
    /// Sample standard deviation (ddof = 1) over the trials at each eps, 0 for one trial. [E]
    pub frobenius_std: Vec<f64>,
    /// Trials at each eps. Shape [E].
    pub n_per_eps: Vec<usize>,
    /// Log-log OLS fit over all trials (`fit.n` = number of trials).
    pub fit: PowerLawFit,
    /// The same fit for the k-th largest eigenvalue of the term's kernel (k = 1, 2, ...; at
    /// most [`super::load::TOP_EIGENVALUES`]), where every trial recorded it; empty for
    /// `full`, which has no spectrum. Paper 003 section 4.1: the first eigenvalues grow like
    /// the Frobenius norm.
    pub eigenvalue_fits: Vec<PowerLawFit>,
    /// Exponent predicted by the theory, where there is one (see [`theory_exponent`]).
    pub theory_exponent: Option<f64>,
}

/// Ten-trial style averages of the evaluation error for one grid point over its seeds
/// (the paper's Tables 1 and 2).
#[derive(Debug, Clone)]
pub struct TrialGroup {
    /// HDF5 name under `trials/`, see [`trial_key`].
    pub key: String,
    /// Readable description: problem and the settings that tell groups apart.
    pub name: String,
    pub problem: String,
    /// NaN for problems without eps.
    pub eps: f64,
    pub width: i64,
    pub balancer: String,
    pub normalization: String,
    /// The group's settings (as [`ScalingGroup::settings`], plus `eps` when the problem has one).
    pub settings: Settings,
    /// Evaluation points shared by every trial. Shape [M, d].
    pub x: Array2<f64>,
    /// Pointwise mean over trials of `eval/error`. Shape [M].
    pub mean_error: Vec<f64>,
    /// Pointwise sample variance (ddof = 1) over trials; zeros for one trial. Shape [M].
    pub error_variance: Vec<f64>,
    /// Discrete L2 norm (root mean square over the points) of `mean_error`.
    pub l2_mean_error: f64,
    /// max |mean_error| over boundary points (see [`boundary_mask`]).
    pub max_boundary_error: f64,
    /// Discrete L2 norm of `error_variance`.
    pub l2_variance: f64,
    /// max of `error_variance` over boundary points.
    pub max_boundary_variance: f64,
    /// Mean over trials of the `eval` attribute `rel_l2`, with its 95% Student t interval.
    pub rel_l2: MeanCi,
    pub n_trials: usize,
    /// Job ids of the trials, in the order they were read (file name order).
    pub job_ids: Vec<String>,
    /// Seeds of the trials, same order as `job_ids`.
    pub seeds: Vec<i64>,
    /// The `eval` attribute `rel_l2` of each trial, same order. Shape [n].
    pub rel_l2_values: Vec<f64>,
    /// The `eval` attribute `max_abs_error` of each trial, same order. Shape [n].
    pub max_abs_errors: Vec<f64>,
    /// Smallest logged `train/rel_l2` of each trial (NaN where absent), same order. [n]
    pub best_rel_l2_values: Vec<f64>,
    /// (term, last logged loss of each trial), sorted by term; a trial without that term
    /// contributes NaN. Shape [n] each.
    pub last_loss: Vec<(String, Vec<f64>)>,
    /// (term, last logged weight of each trial), as `last_loss`.
    pub last_weight: Vec<(String, Vec<f64>)>,
}

/// Exponent p of `||K_T||_F ~ eps^p` that the theory predicts, if any.
///
/// Only the Darcy residual block has one: its residual carries `(1/eps) a'(x/eps) u'`, so the
/// per-point residual gradient grows like 1/eps and `||K_res||_F` like eps^-2 (paper,
/// Theorems 3.2 and 3.3; section 4.1). The other problems have no eps in their operator, so
/// their kernels do not depend on eps at all, and boundary blocks never do.
///
/// # Reference
/// Seed 003, section 3 (Theorems 3.2, 3.3) and section 4.1, Figure 2.
pub fn theory_exponent(problem: &str, term: &str) -> Option<f64> {
    (problem == "darcy1d" && term == "residual").then_some(-2.0)
}

/// Replaces every character outside `[A-Za-z0-9._+=-]` by `-` so a value is safe inside an
/// HDF5 link name (no `/`) and in a shell; an empty value becomes `unset`.
pub fn key_field(value: &str) -> String {
    if value.is_empty() {
        return "unset".to_owned();
    }
    value
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || "._+=-".contains(c) { c } else { '-' })
        .collect()
}

/// `_path=value` per extra distinguishing setting (see [`scaling_key`]); empty when none.
fn extras_suffix(extras: &[String]) -> String {
    extras.iter().map(|e| format!("_{}", key_field(e))).collect()
}

/// Key of a scaling group:
/// `{problem}_w{width}_{balancer}_{normalization}{extras}_{term}_s{snapshot}`, e.g.
/// `darcy1d_w50_none_none_residual_s0` or, when series also differ in a setting outside those
/// four, `darcy1d_w50_none_none_training.lr=0.01_residual_s0` (`extras` are `path=value`).
/// Fields go through [`key_field`]; values may themselves contain `_` (`grad_stats`), so read
/// the group's attributes, not the key, to identify it.
pub fn scaling_key(
    problem: &str, width: i64, balancer: &str, normalization: &str, extras: &[String], term: &str,
    snapshot: usize,
) -> String {
    format!(
        "{}_w{width}_{}_{}{}_{}_s{snapshot}",
        key_field(problem),
        key_field(balancer),
        key_field(normalization),
        extras_suffix(extras),
        key_field(term)
    )
}

/// Key of a trial group: `{problem}_eps{eps}_w{width}_{balancer}_{normalization}{extras}`, e.g.
/// `darcy1d_eps0.125_w50_none_none`; eps is written in Rust's shortest round-trip decimal form
/// (`0.125`, `0.0078125`, `0.00001`), so it never contains an exponent. Problems without eps
/// (`eps` NaN) leave out `_eps{eps}`. `extras` as in [`scaling_key`].
pub fn trial_key(
    problem: &str, eps: f64, width: i64, balancer: &str, normalization: &str, extras: &[String],
) -> String {
    let eps = if eps.is_nan() { String::new() } else { format!("_eps{}", key_field(&format!("{eps}"))) };
    format!(
        "{}{eps}_w{width}_{}_{}{}",
        key_field(problem),
        key_field(balancer),
        key_field(normalization),
        extras_suffix(extras)
    )
}

/// Points on the boundary of the evaluation set: those where any coordinate equals the
/// minimum or maximum of that coordinate over all points (the ends of [0, 1] in 1-D, the
/// edges of the bounding box in 2-D).
pub fn boundary_mask(x: &Array2<f64>) -> Vec<bool> {
    let (m, d) = x.dim();
    let mut mask = vec![false; m];
    for j in 0..d {
        let col = x.column(j);
        let lo = col.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = col.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        for (i, v) in col.iter().enumerate() {
            if *v == lo || *v == hi {
                mask[i] = true;
            }
        }
    }
    mask
}

/// The identifying root attributes: the original group key, and the sort order of groups.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Family {
    problem: String,
    width: i64,
    balancer: String,
    normalization: String,
}

/// One scaling series: its family and every other setting except seed and eps.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct SeriesId {
    family: Family,
    rest: Settings,
}

/// Settings that never separate groups: the seed (trials), and eps under its config path
/// (it is the `eps` attribute of the group).
const NOT_IDENTITY: [&str; 2] = ["seed", "problem.eps"];

impl SeriesId {
    fn of(job: &DoneJob) -> Self {
        let mut rest = job.settings.clone();
        for p in NOT_IDENTITY {
            rest.remove(p);
        }
        Self {
            family: Family {
                problem: job.problem.clone(),
                width: job.width,
                balancer: job.balancer.clone(),
                normalization: job.normalization.clone(),
            },
            rest,
        }
    }

    /// `rest` plus the family attributes under their own names, and `eps` when given.
    fn settings(&self, eps: Option<f64>) -> Settings {
        let mut s = self.rest.clone();
        let f = &self.family;
        s.insert("problem".into(), Setting::Str(f.problem.clone()));
        s.insert("width".into(), Setting::Int(f.width));
        s.insert("balancer".into(), Setting::Str(f.balancer.clone()));
        s.insert("normalization".into(), Setting::Str(f.normalization.clone()));
        if let Some(e) = eps {
            s.insert("eps".into(), Setting::Float(e));
        }
        s
    }
}

/// (series, eps descending; `None` for problems without eps). eps > 0 and finite (checked by
/// the loader), so the IEEE bit pattern orders like the value.
type TrialId = (SeriesId, Option<Reverse<u64>>);

/// (series, term, step): one scaling group before its snapshot index is known.
type ScalingId = (SeriesId, String, i64);

/// One trial's values in a scaling group: eps, Frobenius norm, largest eigenvalues.
struct ScalingPoint {
    eps: f64,
    frobenius: f64,
    top: Vec<f64>,
}

struct TrialAcc {
    first_file: PathBuf,
    x: Array2<f64>,
    moments: PointwiseMoments,
    rel_l2: Vec<f64>,
    max_abs_errors: Vec<f64>,
    train: Vec<TrainEnds>,
    job_ids: Vec<String>,
    seeds: Vec<i64>,
    files_by_seed: HashMap<i64, PathBuf>,
}

/// The groups of a reduction and the settings that tell them apart.
#[derive(Debug, Clone)]
pub struct Groups {
    /// Sorted by problem, width, balancer, normalization, other settings, term, step.
    pub scaling: Vec<ScalingGroup>,
    /// Sorted by problem, width, balancer, normalization, other settings, then eps descending.
    pub trials: Vec<TrialGroup>,
    /// Settings that tell trial groups apart (their names; the axes of the comparisons), in
    /// order of preference; the identifying attributes appear under their own names
    /// (`problem`, `eps`, `width`, `balancer`, `normalization`), others by dotted path.
    pub trial_axes: Vec<String>,
    /// Every setting that differs between trial groups (each group carries its values).
    pub trial_varying: Vec<String>,
    /// Settings that tell scaling series apart.
    pub scaling_axes: Vec<String>,
    /// Every setting that differs between scaling series.
    pub scaling_varying: Vec<String>,
    /// Problems with finished jobs but no eps (no scaling fit), sorted.
    pub problems_without_eps: Vec<String>,
}

/// Streams finished jobs into scaling and trial groups.
#[derive(Default)]
pub(crate) struct Aggregator {
    scaling: BTreeMap<ScalingId, Vec<ScalingPoint>>,
    trials: BTreeMap<TrialId, TrialAcc>,
    /// First `ntk/step` list seen per series, to notice differing snapshot schedules.
    steps_seen: HashMap<SeriesId, Vec<i64>>,
    mixed_steps: HashSet<SeriesId>,
    without_eps: BTreeSet<String>,
    pub warnings: Vec<String>,
}

impl Aggregator {
    /// Adds one finished job. Fails only when its `eval/x` differs from the grid of the
    /// first job of its trial group.
    pub fn add(&mut self, job: DoneJob) -> Result<(), ReduceError> {
        let series = SeriesId::of(&job);
        match job.eps {
            Some(eps) => self.add_scaling(&series, &job, eps),
            None => {
                self.without_eps.insert(job.problem.clone());
            }
        }
        let id = (series, job.eps.map(|e| Reverse(e.to_bits())));
        let DoneJob { file, job_id, seed, eval, train, .. } = job;
        if let Some(acc) = self.trials.get_mut(&id) {
            if let Some(detail) = grid_difference(&acc.x, &eval.x) {
                return Err(ReduceError::EvalGridMismatch {
                    group: describe(&id.0, id.1.map(|b| f64::from_bits(b.0))),
                    first: acc.first_file.clone(),
                    other: file,
                    detail,
                });
            }
            if let Some(previous) = acc.files_by_seed.get(&seed) {
                self.warnings.push(format!(
                    "{}: seed {seed} appears twice ({} and {}) in jobs whose settings are all \
                     equal; both are pooled into this group",
                    describe(&id.0, id.1.map(|b| f64::from_bits(b.0))),
                    previous.display(),
                    file.display()
                ));
            } else {
                acc.files_by_seed.insert(seed, file.clone());
            }
            acc.moments.push(&eval.error);
            acc.rel_l2.push(eval.rel_l2);
            acc.max_abs_errors.push(eval.max_abs_error);
            acc.train.push(train);
            acc.job_ids.push(job_id);
            acc.seeds.push(seed);
        } else {
            let mut moments = PointwiseMoments::new(eval.error.len());
            moments.push(&eval.error);
            self.trials.insert(
                id,
                TrialAcc {
                    first_file: file.clone(),
                    x: eval.x,
                    moments,
                    rel_l2: vec![eval.rel_l2],
                    max_abs_errors: vec![eval.max_abs_error],
                    train: vec![train],
                    job_ids: vec![job_id],
                    seeds: vec![seed],
                    files_by_seed: HashMap::from([(seed, file)]),
                },
            );
        }
        Ok(())
    }

    fn add_scaling(&mut self, series: &SeriesId, job: &DoneJob, eps: f64) {
        match self.steps_seen.get(series) {
            None => {
                self.steps_seen.insert(series.clone(), job.ntk.steps.clone());
            }
            Some(first) if *first != job.ntk.steps && !self.mixed_steps.contains(series) => {
                self.warnings.push(format!(
                    "{}: jobs recorded different NTK step lists (e.g. {} has {:?}, another {:?}); \
                     scaling snapshots are grouped by step value",
                    describe(series, None),
                    job.job_id,
                    job.ntk.steps,
                    first
                ));
                self.mixed_steps.insert(series.clone());
            }
            Some(_) => {}
        }
        for (term, values) in &job.ntk.frobenius {
            let spectra = job.ntk.top_eigenvalues.iter().find(|(t, _)| t == term).map(|(_, v)| v);
            for (i, (&step, &value)) in job.ntk.steps.iter().zip(values).enumerate() {
                if !(value.is_finite() && value > 0.0) {
                    self.warnings.push(format!(
                        "{}: ntk/{term}/frobenius at step {step} is {value}; left out of the scaling fit",
                        job.job_id
                    ));
                    continue;
                }
                let top = spectra.and_then(|v| v.get(i)).cloned().unwrap_or_default();
                let point = ScalingPoint { eps, frobenius: value, top };
                self.scaling.entry((series.clone(), term.clone(), step)).or_default().push(point);
            }
        }
    }

    /// Computes every group's statistics and assigns names and keys (unique: a collision after
    /// [`key_field`] gets a `_dup2`, `_dup3`, ... suffix and a warning); also returns the
    /// warnings.
    pub fn finish(mut self) -> (Groups, Vec<String>) {
        let trial_settings: Vec<Settings> =
            self.trials.keys().map(|(s, e)| s.settings(e.map(|b| f64::from_bits(b.0)))).collect();
        let trial_axes = settings::distinguishing(&trial_settings, &[]);
        let trial_varying = settings::varying(&trial_settings, &[]);
        let series: BTreeSet<&SeriesId> = self.scaling.keys().map(|(s, _, _)| s).collect();
        let series_settings: Vec<Settings> = series.iter().map(|s| s.settings(None)).collect();
        let scaling_axes = settings::distinguishing(&series_settings, &[]);
        let scaling_varying = settings::varying(&series_settings, &[]);

        let mut used = HashSet::new();
        let mut scaling = Vec::with_capacity(self.scaling.len());
        let mut previous: Option<(SeriesId, String)> = None;
        let mut snapshot = 0usize;
        for ((series, term, step), points) in std::mem::take(&mut self.scaling) {
            let same = previous.as_ref().is_some_and(|(s, t)| *s == series && *t == term);
            snapshot = if same { snapshot + 1 } else { 0 };
            previous = Some((series.clone(), term.clone()));
            let settings = series.settings(None);
            let extras = extras(&settings, &scaling_axes);
            let f = &series.family;
            let key = self.unique(
                &mut used,
                scaling_key(&f.problem, f.width, &f.balancer, &f.normalization, &extras, &term, snapshot),
            );
            let name = readable_name(&settings, &scaling_axes);
            scaling.push(scaling_group(key, name, series, settings, term, snapshot, step, &points));
        }

        let mut used = HashSet::new();
        let mut trials = Vec::with_capacity(self.trials.len());
        for ((series, eps_bits), acc) in std::mem::take(&mut self.trials) {
            let eps = eps_bits.map(|b| f64::from_bits(b.0));
            let settings = series.settings(eps);
            let extras = extras(&settings, &trial_axes);
            let f = &series.family;
            let eps = eps.unwrap_or(f64::NAN);
            let key = self.unique(
                &mut used,
                trial_key(&f.problem, eps, f.width, &f.balancer, &f.normalization, &extras),
            );
            let name = readable_name(&settings, &trial_axes);
            trials.push(trial_group(key, name, series.family, settings, eps, acc));
        }
        let groups = Groups {
            scaling,
            trials,
            trial_axes,
            trial_varying,
            scaling_axes,
            scaling_varying,
            problems_without_eps: self.without_eps.into_iter().collect(),
        };
        (groups, self.warnings)
    }

    fn unique(&mut self, used: &mut HashSet<String>, key: String) -> String {
        if used.insert(key.clone()) {
            return key;
        }
        let mut k = 2;
        loop {
            let candidate = format!("{key}_dup{k}");
            if used.insert(candidate.clone()) {
                self.warnings.push(format!(
                    "two groups map to the key '{key}' after replacing unsafe characters; the \
                     second is stored as '{candidate}' (its attributes name it exactly)"
                ));
                return candidate;
            }
            k += 1;
        }
    }
}

/// `path=value` of the distinguishing settings that the original key does not show.
fn extras(settings: &Settings, axes: &[String]) -> Vec<String> {
    let extra: Vec<String> = axes.iter().filter(|a| !KEY_ATTRS.contains(&a.as_str())).cloned().collect();
    settings::describe(settings, &extra)
}

/// `darcy1d, eps=0.125, width=50, balancer=none, normalization=none, training.lr=0.01`: the
/// identifying attributes, then the other distinguishing settings.
fn readable_name(settings: &Settings, axes: &[String]) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(p) = settings.get("problem") {
        parts.push(p.to_string());
    }
    for attr in &KEY_ATTRS[1..] {
        if let Some(v) = settings.get(*attr) {
            let v = match v {
                Setting::Float(e) => format!("{e}"),
                other => other.to_string(),
            };
            parts.push(format!("{attr}={v}"));
        }
    }
    parts.extend(extras(settings, axes));
    parts.join(", ")
}

fn describe(series: &SeriesId, eps: Option<f64>) -> String {
    let f = &series.family;
    let mut text = format!(
        "{} width={} balancer={} normalization={}",
        f.problem, f.width, f.balancer, f.normalization
    );
    if let Some(e) = eps {
        text.push_str(&format!(" eps={e}"));
    }
    text
}

/// None when the grids agree to [`GRID_RTOL`], else a description of the first difference.
fn grid_difference(a: &Array2<f64>, b: &Array2<f64>) -> Option<String> {
    if a.dim() != b.dim() {
        return Some(format!("shapes {:?} and {:?}", a.dim(), b.dim()));
    }
    a.indexed_iter().zip(b.iter()).find_map(|(((i, j), &u), &v)| {
        let close = (u - v).abs() <= GRID_RTOL * u.abs().max(1.0);
        (!close).then(|| format!("x[{i}, {j}] = {u} vs {v}"))
    })
}

#[allow(clippy::too_many_arguments)]
fn scaling_group(
    key: String, name: String, series: SeriesId, settings: Settings, term: String, snapshot: usize,
    step: i64, points: &[ScalingPoint],
) -> ScalingGroup {
    let mut by_eps: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
    for p in points {
        by_eps.entry(p.eps.to_bits()).or_default().push(p.frobenius);
    }
    let eps: Vec<f64> = by_eps.keys().map(|b| f64::from_bits(*b)).collect();
    let frobenius_mean = by_eps.values().map(|v| stats::mean(v)).collect();
    let frobenius_std = by_eps.values().map(|v| stats::sample_std(v)).collect();
    let n_per_eps = by_eps.values().map(Vec::len).collect();
    let xs: Vec<f64> = points.iter().map(|p| p.eps).collect();
    let ys: Vec<f64> = points.iter().map(|p| p.frobenius).collect();
    let fit = stats::fit_power_law(&xs, &ys);
    let recorded = points.iter().map(|p| p.top.len()).min().unwrap_or(0);
    let eigenvalue_fits = (0..recorded)
        .map(|k| stats::fit_power_law(&xs, &points.iter().map(|p| p.top[k]).collect::<Vec<_>>()))
        .collect();
    let family = series.family;
    let theory = theory_exponent(&family.problem, &term);
    ScalingGroup {
        key,
        name,
        problem: family.problem,
        width: family.width,
        balancer: family.balancer,
        normalization: family.normalization,
        settings,
        term,
        snapshot,
        step,
        eps,
        frobenius_mean,
        frobenius_std,
        n_per_eps,
        fit,
        eigenvalue_fits,
        theory_exponent: theory,
    }
}

fn trial_group(
    key: String, name: String, family: Family, settings: Settings, eps: f64, acc: TrialAcc,
) -> TrialGroup {
    let mean_error = acc.moments.mean().to_vec();
    let error_variance = acc.moments.variance();
    let boundary = boundary_mask(&acc.x);
    let max_on_boundary = |values: &[f64]| {
        let on: Vec<f64> =
            values.iter().zip(&boundary).filter(|(_, b)| **b).map(|(v, _)| v.abs()).collect();
        if on.is_empty() {
            f64::NAN
        } else {
            on.into_iter().fold(f64::NEG_INFINITY, f64::max)
        }
    };
    TrialGroup {
        key,
        name,
        problem: family.problem,
        eps,
        width: family.width,
        balancer: family.balancer,
        normalization: family.normalization,
        settings,
        l2_mean_error: stats::rms(&mean_error),
        max_boundary_error: max_on_boundary(&mean_error),
        l2_variance: stats::rms(&error_variance),
        max_boundary_variance: max_on_boundary(&error_variance),
        rel_l2: stats::mean_ci(&acc.rel_l2),
        n_trials: acc.moments.count(),
        x: acc.x,
        mean_error,
        error_variance,
        job_ids: acc.job_ids,
        seeds: acc.seeds,
        rel_l2_values: acc.rel_l2,
        max_abs_errors: acc.max_abs_errors,
        best_rel_l2_values: acc.train.iter().map(|t| t.best_rel_l2.unwrap_or(f64::NAN)).collect(),
        last_loss: per_term(&acc.train, |t| &t.last_loss),
        last_weight: per_term(&acc.train, |t| &t.last_weight),
    }
}

/// (term, one value per trial, NaN where a trial lacks the term) for every term any trial has.
fn per_term(train: &[TrainEnds], field: impl Fn(&TrainEnds) -> &Vec<(String, f64)>) -> Vec<(String, Vec<f64>)> {
    let terms: BTreeSet<&String> = train.iter().flat_map(|t| field(t).iter().map(|(name, _)| name)).collect();
    terms
        .into_iter()
        .map(|term| {
            let values = train
                .iter()
                .map(|t| field(t).iter().find(|(n, _)| n == term).map_or(f64::NAN, |(_, v)| *v))
                .collect();
            (term.clone(), values)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn keys_are_readable_and_safe() {
        assert_eq!(
            scaling_key("darcy1d", 50, "none", "none", &[], "residual", 0),
            "darcy1d_w50_none_none_residual_s0"
        );
        assert_eq!(
            scaling_key("darcy1d", 50, "none", "none", &["training.lr=0.01".into()], "residual", 1),
            "darcy1d_w50_none_none_training.lr=0.01_residual_s1"
        );
        assert_eq!(
            trial_key("darcy1d", 0.125, 50, "none", "none", &[]),
            "darcy1d_eps0.125_w50_none_none"
        );
        assert_eq!(trial_key("p", 1e-5, 1, "a/b c", "", &[]), "p_eps0.00001_w1_a-b-c_unset");
        assert_eq!(
            trial_key("wave1d", f64::NAN, 20, "ntk", "zscore", &["sweep=my run".into()]),
            "wave1d_w20_ntk_zscore_sweep=my-run"
        );
    }

    #[test]
    fn boundary_of_interval_and_square() {
        let x = array![[0.0], [0.25], [0.5], [1.0]];
        assert_eq!(boundary_mask(&x), vec![true, false, false, true]);
        let sq = array![[0.0, 0.0], [0.5, 0.5], [1.0, 0.5], [0.5, 1.0], [0.5, 0.2]];
        assert_eq!(boundary_mask(&sq), vec![true, false, true, true, false]);
    }
}
