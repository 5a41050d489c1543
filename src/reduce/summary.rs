//! Writing `summary.h5`, the reduced file that analysis scripts and users open with h5py.
//!
//! Layout (public contract; names and shapes must not change without the README):
//!
//! ```text
//! /                      attrs format="ntksweep-summary", version, confidence=0.95,
//!                              l2_norm="rms over evaluation points",
//!                              n_done, n_failed, n_diverged, n_unreadable (int64),
//!                              n_missing (int64, -1 when no expected ids were given),
//!                              trial_axes, scaling_axes (str: space-separated settings that
//!                              tell groups apart), problems_without_eps (str, space-separated)
//! /excluded/job_id       [K] str   failed, diverged and unreadable jobs, file name order
//! /excluded/status       [K] str   "failed" | "diverged" | "unreadable"
//! /excluded/message      [K] str   the job's message, or the read error
//! /excluded/file         [K] str   path of the job file
//! /missing               [K'] str  expected job ids without a file
//! /warnings              [W] str
//! /scaling/<key>/eps             [E] f64, ascending distinct eps
//! /scaling/<key>/frobenius_mean  [E] f64
//! /scaling/<key>/frobenius_std   [E] f64 (ddof = 1; 0 for one trial)
//! /scaling/<key>/n_per_eps       [E] int64
//! /scaling/<key>/eigenvalue_exponent, eigenvalue_exponent_ci_low, eigenvalue_exponent_ci_high,
//!                eigenvalue_r_squared  [K] f64: the same fit for the k-th largest eigenvalue
//!                (K <= 3; 0 for `full` and for files without spectra)
//!     attrs exponent, exponent_ci_low, exponent_ci_high, r_squared (f64; NaN when fewer than
//!           3 trials or fewer than 2 distinct eps), n_trials, step, snapshot (int64),
//!           theory_exponent (f64, NaN where the theory predicts none),
//!           problem, width, balancer, normalization, term, name (str),
//!           and every setting that differs between series, by dotted path
//! /trials/<key>/x                [M, d] f64
//! /trials/<key>/mean_error       [M] f64
//! /trials/<key>/error_variance   [M] f64 (ddof = 1; zeros for one trial)
//! /trials/<key>/job_ids          [n] str
//! /trials/<key>/seeds            [n] int64
//! /trials/<key>/rel_l2           [n] f64  per-trial eval rel_l2, job_ids order
//! /trials/<key>/max_abs_error    [n] f64  per-trial eval max_abs_error
//! /trials/<key>/best_rel_l2      [n] f64  per-trial smallest logged train/rel_l2 (NaN: none)
//! /trials/<key>/last_loss/<T>    [n] f64  per-trial last logged loss of term T (NaN: none)
//! /trials/<key>/last_weight/<T>  [n] f64  per-trial last logged weight of term T
//!     attrs l2_mean_error, max_boundary_error, l2_variance, max_boundary_variance,
//!           rel_l2_mean, rel_l2_ci_low, rel_l2_ci_high (NaN for one trial), n_trials,
//!           problem, eps (NaN for problems without eps), width, balancer, normalization,
//!           name (str), and every setting that differs between trial groups, by dotted path
//! /compare/<axis>/<setting>/value, trial_key   [V] str (first value first)
//!     n [V] int64; rel_l2_mean, rel_l2_ci_low, rel_l2_ci_high, max_abs_error_mean,
//!     max_abs_error_ci_low, max_abs_error_ci_high, rel_l2_change, max_abs_error_change,
//!     welch_t, welch_dof, p_value [V] f64 (NaN in row 0, the baseline),
//!     best_rel_l2_mean, best_rel_l2_ci_low, best_rel_l2_ci_high, best_rel_l2_change [V] f64
//! /compare/<axis>/<setting>/last_loss/<T>/mean, change     [V] f64 (NaN: no such term)
//! /compare/<axis>/<setting>/last_weight/<T>/mean, change   [V] f64
//!     attrs axis, baseline, name (str), and the other axes' values by name
//! ```
//!
//! Settings are written with their own type: int64, f64, bool (HDF5 enum, numpy bool in
//! h5py) or string. Strings are variable-length UTF-8, as in the job files.

use std::path::Path;

use hdf5::types::VarLenUnicode;
use hdf5::{Group, Location};

use super::aggregate::key_field;
use super::compare::{value_text, Comparison};
use super::settings::{Setting, Settings, KEY_ATTRS};
use super::{ReduceError, Reduction};

type Ctx = (String, hdf5::Error);

fn at(what: impl Into<String>) -> impl FnOnce(hdf5::Error) -> Ctx {
    let what = what.into();
    move |e| (what, e)
}

/// Writes the summary of `reduction` to `path` (the caller renames it into place).
pub(crate) fn write(path: &Path, reduction: &Reduction) -> Result<(), ReduceError> {
    write_inner(path, reduction).map_err(|(what, source)| ReduceError::WriteHdf5 {
        path: path.to_path_buf(),
        what,
        source,
    })
}

fn write_inner(path: &Path, r: &Reduction) -> Result<(), Ctx> {
    let file = hdf5::File::create(path).map_err(at("creating the file"))?;
    let c = &r.counts;
    (|| -> hdf5::Result<()> {
        attr_str(&file, "format", "ntksweep-summary")?;
        attr_str(&file, "version", env!("CARGO_PKG_VERSION"))?;
        attr_f64(&file, "confidence", super::stats::CONFIDENCE)?;
        attr_str(&file, "l2_norm", "rms over evaluation points")?;
        attr_i64(&file, "n_done", c.done as i64)?;
        attr_i64(&file, "n_failed", c.failed as i64)?;
        attr_i64(&file, "n_diverged", c.diverged as i64)?;
        attr_i64(&file, "n_unreadable", c.unreadable as i64)?;
        attr_i64(&file, "n_missing", c.missing.map_or(-1, |m| m as i64))?;
        attr_str(&file, "trial_axes", &r.groups.trial_axes.join(" "))?;
        attr_str(&file, "scaling_axes", &r.groups.scaling_axes.join(" "))?;
        attr_str(&file, "problems_without_eps", &r.groups.problems_without_eps.join(" "))?;
        Ok(())
    })()
    .map_err(at("root attributes"))?;

    (|| -> hdf5::Result<()> {
        let g = file.create_group("excluded")?;
        let ex = &r.excluded;
        ds_str(&g, "job_id", ex.iter().map(|j| j.job_id.as_str()))?;
        ds_str(&g, "status", ex.iter().map(|j| j.kind.as_str()))?;
        ds_str(&g, "message", ex.iter().map(|j| j.message.as_str()))?;
        let files: Vec<String> = ex.iter().map(|j| j.file.display().to_string()).collect();
        ds_str(&g, "file", files.iter().map(String::as_str))?;
        ds_str(&file, "missing", r.missing.iter().map(String::as_str))?;
        ds_str(&file, "warnings", r.warnings.iter().map(String::as_str))?;
        Ok(())
    })()
    .map_err(at("excluded jobs"))?;

    let scaling = file.create_group("scaling").map_err(at("group scaling"))?;
    for s in &r.groups.scaling {
        (|| -> hdf5::Result<()> {
            let g = scaling.create_group(&s.key)?;
            ds_f64(&g, "eps", &s.eps)?;
            ds_f64(&g, "frobenius_mean", &s.frobenius_mean)?;
            ds_f64(&g, "frobenius_std", &s.frobenius_std)?;
            let n: Vec<i64> = s.n_per_eps.iter().map(|&n| n as i64).collect();
            g.new_dataset_builder().with_data(n.as_slice()).create("n_per_eps")?;
            attr_f64(&g, "exponent", s.fit.exponent)?;
            attr_f64(&g, "exponent_ci_low", s.fit.ci_low)?;
            attr_f64(&g, "exponent_ci_high", s.fit.ci_high)?;
            attr_f64(&g, "r_squared", s.fit.r_squared)?;
            attr_i64(&g, "n_trials", s.fit.n as i64)?;
            let eig = |f: fn(&super::stats::PowerLawFit) -> f64| s.eigenvalue_fits.iter().map(f).collect::<Vec<f64>>();
            ds_f64(&g, "eigenvalue_exponent", &eig(|f| f.exponent))?;
            ds_f64(&g, "eigenvalue_exponent_ci_low", &eig(|f| f.ci_low))?;
            ds_f64(&g, "eigenvalue_exponent_ci_high", &eig(|f| f.ci_high))?;
            ds_f64(&g, "eigenvalue_r_squared", &eig(|f| f.r_squared))?;
            attr_i64(&g, "step", s.step)?;
            attr_i64(&g, "snapshot", s.snapshot as i64)?;
            attr_f64(&g, "theory_exponent", s.theory_exponent.unwrap_or(f64::NAN))?;
            attr_str(&g, "problem", &s.problem)?;
            attr_i64(&g, "width", s.width)?;
            attr_str(&g, "balancer", &s.balancer)?;
            attr_str(&g, "normalization", &s.normalization)?;
            attr_str(&g, "term", &s.term)?;
            attr_str(&g, "name", &s.name)?;
            attr_settings(&g, &s.settings, &r.groups.scaling_varying)?;
            Ok(())
        })()
        .map_err(at(format!("scaling/{}", s.key)))?;
    }

    let trials = file.create_group("trials").map_err(at("group trials"))?;
    for t in &r.groups.trials {
        (|| -> hdf5::Result<()> {
            let g = trials.create_group(&t.key)?;
            ds_2d(&g, "x", &t.x)?;
            ds_f64(&g, "mean_error", &t.mean_error)?;
            ds_f64(&g, "error_variance", &t.error_variance)?;
            ds_str(&g, "job_ids", t.job_ids.iter().map(String::as_str))?;
            g.new_dataset_builder().with_data(t.seeds.as_slice()).create("seeds")?;
            ds_f64(&g, "rel_l2", &t.rel_l2_values)?;
            ds_f64(&g, "max_abs_error", &t.max_abs_errors)?;
            ds_f64(&g, "best_rel_l2", &t.best_rel_l2_values)?;
            for (name, per_term) in [("last_loss", &t.last_loss), ("last_weight", &t.last_weight)] {
                let h = g.create_group(name)?;
                for (term, values) in per_term {
                    ds_f64(&h, term, values)?;
                }
            }
            attr_f64(&g, "l2_mean_error", t.l2_mean_error)?;
            attr_f64(&g, "max_boundary_error", t.max_boundary_error)?;
            attr_f64(&g, "l2_variance", t.l2_variance)?;
            attr_f64(&g, "max_boundary_variance", t.max_boundary_variance)?;
            attr_f64(&g, "rel_l2_mean", t.rel_l2.mean)?;
            attr_f64(&g, "rel_l2_ci_low", t.rel_l2.ci_low)?;
            attr_f64(&g, "rel_l2_ci_high", t.rel_l2.ci_high)?;
            attr_i64(&g, "n_trials", t.n_trials as i64)?;
            attr_str(&g, "problem", &t.problem)?;
            attr_f64(&g, "eps", t.eps)?;
            attr_i64(&g, "width", t.width)?;
            attr_str(&g, "balancer", &t.balancer)?;
            attr_str(&g, "normalization", &t.normalization)?;
            attr_str(&g, "name", &t.name)?;
            attr_settings(&g, &t.settings, &r.groups.trial_varying)?;
            Ok(())
        })()
        .map_err(at(format!("trials/{}", t.key)))?;
    }

    let compare = file.create_group("compare").map_err(at("group compare"))?;
    for c in &r.comparisons {
        let what = format!("compare/{}/{}", c.axis, c.key);
        write_comparison(&compare, c).map_err(at(what))?;
    }
    file.close().map_err(at("closing the file"))?;
    Ok(())
}

fn write_comparison(compare: &Group, c: &Comparison) -> hdf5::Result<()> {
    let axis_name = key_field(&c.axis);
    let axis = match compare.group(&axis_name) {
        Ok(g) => g,
        Err(_) => compare.create_group(&axis_name)?,
    };
    let g = axis.create_group(&c.key)?;
    let col = |f: &dyn Fn(&super::compare::CompareRow) -> f64| c.rows.iter().map(f).collect::<Vec<f64>>();
    let values: Vec<String> = c.rows.iter().map(|r| value_text(&r.value)).collect();
    ds_str(&g, "value", values.iter().map(String::as_str))?;
    ds_str(&g, "trial_key", c.rows.iter().map(|r| r.trial_key.as_str()))?;
    let n: Vec<i64> = c.rows.iter().map(|r| r.rel_l2.n as i64).collect();
    g.new_dataset_builder().with_data(n.as_slice()).create("n")?;
    ds_f64(&g, "rel_l2_mean", &col(&|r| r.rel_l2.mean))?;
    ds_f64(&g, "rel_l2_ci_low", &col(&|r| r.rel_l2.ci_low))?;
    ds_f64(&g, "rel_l2_ci_high", &col(&|r| r.rel_l2.ci_high))?;
    ds_f64(&g, "max_abs_error_mean", &col(&|r| r.max_abs_error.mean))?;
    ds_f64(&g, "max_abs_error_ci_low", &col(&|r| r.max_abs_error.ci_low))?;
    ds_f64(&g, "max_abs_error_ci_high", &col(&|r| r.max_abs_error.ci_high))?;
    ds_f64(&g, "rel_l2_change", &col(&|r| r.rel_l2_change))?;
    ds_f64(&g, "max_abs_error_change", &col(&|r| r.max_abs_error_change))?;
    ds_f64(&g, "welch_t", &col(&|r| r.welch.t))?;
    ds_f64(&g, "welch_dof", &col(&|r| r.welch.dof))?;
    ds_f64(&g, "p_value", &col(&|r| r.welch.p_value))?;
    ds_f64(&g, "best_rel_l2_mean", &col(&|r| r.best_rel_l2.mean))?;
    ds_f64(&g, "best_rel_l2_ci_low", &col(&|r| r.best_rel_l2.ci_low))?;
    ds_f64(&g, "best_rel_l2_ci_high", &col(&|r| r.best_rel_l2.ci_high))?;
    ds_f64(&g, "best_rel_l2_change", &col(&|r| r.best_rel_l2_change))?;
    type Terms = fn(&super::compare::CompareRow) -> &Vec<super::compare::TermChange>;
    let by_term: [(&str, Terms); 2] = [("last_loss", |r| &r.last_loss), ("last_weight", |r| &r.last_weight)];
    for (name, terms_of) in by_term {
        let h = g.create_group(name)?;
        let terms: std::collections::BTreeSet<&str> =
            c.rows.iter().flat_map(|r| terms_of(r).iter().map(|t| t.term.as_str())).collect();
        for term in terms {
            let pick = |f: fn(&super::compare::TermChange) -> f64| -> Vec<f64> {
                c.rows.iter().map(|r| terms_of(r).iter().find(|t| t.term == term).map_or(f64::NAN, f)).collect()
            };
            let t = h.create_group(term)?;
            ds_f64(&t, "mean", &pick(|t| t.mean.mean))?;
            ds_f64(&t, "change", &pick(|t| t.change))?;
        }
    }
    attr_str(&g, "axis", &c.axis)?;
    attr_str(&g, "baseline", values.first().map_or("", String::as_str))?;
    attr_str(&g, "name", &c.setting_text())?;
    for (path, value) in &c.fixed {
        match value {
            Some(v) => attr_setting(&g, path, v)?,
            None => attr_str(&g, path, "unset")?,
        }
    }
    Ok(())
}

/// The group's value of each of `varying` (dotted paths; the identifying attributes, written
/// already, are skipped; a setting the group lacks gets no attribute).
fn attr_settings(g: &Group, settings: &Settings, varying: &[String]) -> hdf5::Result<()> {
    for path in varying.iter().filter(|p| !KEY_ATTRS.contains(&p.as_str())) {
        if let Some(v) = settings.get(path) {
            attr_setting(g, path, v)?;
        }
    }
    Ok(())
}

fn attr_setting(loc: &Location, name: &str, value: &Setting) -> hdf5::Result<()> {
    match value {
        Setting::Null => attr_str(loc, name, "null"),
        Setting::Bool(b) => loc.new_attr::<bool>().shape(()).create(name)?.write_scalar(b),
        Setting::Int(i) => attr_i64(loc, name, *i),
        Setting::Float(f) => attr_f64(loc, name, *f),
        Setting::Str(s) => attr_str(loc, name, s),
    }
}

/// UTF-8 variable-length string; interior NUL bytes (not representable) become U+FFFD.
fn vlen(s: &str) -> VarLenUnicode {
    let clean = s.replace('\0', "\u{fffd}");
    // Cannot fail: the only rejected input is an interior NUL, removed above.
    clean.parse().unwrap_or_default()
}

fn attr_str(loc: &Location, name: &str, value: &str) -> hdf5::Result<()> {
    loc.new_attr::<VarLenUnicode>().shape(()).create(name)?.write_scalar(&vlen(value))
}

fn attr_f64(loc: &Location, name: &str, value: f64) -> hdf5::Result<()> {
    loc.new_attr::<f64>().shape(()).create(name)?.write_scalar(&value)
}

fn attr_i64(loc: &Location, name: &str, value: i64) -> hdf5::Result<()> {
    loc.new_attr::<i64>().shape(()).create(name)?.write_scalar(&value)
}

fn ds_f64(g: &Group, name: &str, values: &[f64]) -> hdf5::Result<()> {
    g.new_dataset_builder().with_data(values).create(name).map(|_| ())
}

/// A [rows, cols] f64 dataset. (hdf5-metno links its own ndarray version, so arrays cross as
/// flat slices plus a shape.)
pub(crate) fn ds_2d(g: &Group, name: &str, a: &ndarray::Array2<f64>) -> hdf5::Result<()> {
    let flat = a.as_standard_layout();
    let slice = flat.as_slice().ok_or("array not contiguous")?;
    g.new_dataset::<f64>().shape([a.nrows(), a.ncols()]).create(name)?.write_raw(slice)
}

fn ds_str<'a>(g: &Group, name: &str, values: impl Iterator<Item = &'a str>) -> hdf5::Result<()> {
    let v: Vec<VarLenUnicode> = values.map(vlen).collect();
    g.new_dataset_builder().with_data(v.as_slice()).create(name).map(|_| ())
}
