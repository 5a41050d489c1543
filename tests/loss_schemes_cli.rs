//! Loss-term schemes through the binary (issue 17 part B): exact Dirichlet conditions,
//! gradient-enhanced residuals and importance sampling, swept as axes by their shorthands,
//! recorded in the job files, exact under batching, bad values refused before anything runs.

mod common;

use common::*;

/// darcy1d (float64) with every combination of the three schemes, 2 eps x 2 seeds (32 jobs).
const LOSS_SCHEMES: &str = "\
name: loss_schemes
problem: {kind: darcy1d, eps: 0.5}
model: {width: 8, depth: 2, dtype: float64}
training: {steps: 12, log_every: 4}
collocation: {residual: {points: 16}}
ntk: {every: 6, points: {residual: 12}}
evaluation: {points: 40}
sweep:
  exact_bc: [false, true]
  gradient_enhanced: [null, {weight: 0.5}]
  residual_sampling: [{points: 16}, {points: 16, sampling: importance, pool: 48, every: 5}]
  eps: [0.5, 0.25]
  seed: [0, 1]
";

/// Every problem with a Dirichlet term under `model.exact_bc`, in float32 (the default): 1-D,
/// (t, x) with the initial face made exact too, and the 2-D box.
const EXACT_EVERY_PROBLEM: &str = "\
name: exact_every_problem
problem: {kind: darcy1d, eps: 0.25}
model: {width: 8, depth: 2, exact_bc: true}
training: {steps: 10, log_every: 5}
ntk: {every: 5}
evaluation: {points: 21}
sweep:
  problem: [{kind: darcy1d, eps: 0.25}, {kind: poisson1d, eps: 0.25}, {kind: wave1d}, {kind: klein_gordon1d}, {kind: helmholtz2d}]
";

/// The terms the ansatz satisfies report a loss of zero (to rounding, measured at their own
/// points at every logged step) with no weight or NTK block, on every problem, and the
/// solution meets the data on the constrained faces.
#[test]
fn exact_terms_report_zero_loss_on_every_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let sweep = write(tmp.path(), "exact.yaml", EXACT_EVERY_PROBLEM);
    let out = tmp.path().join("r");
    let o = ntksweep(&["run", sweep.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    py_check("check_contract.py", &[out.to_str().unwrap(), "--expect-status", "done"]);
    let t = py_check("check_loss_schemes.py", &[out.to_str().unwrap()]);
    assert!(t.contains("5 files: 5 exact"), "{t}");
}

/// The schemes train through `ntksweep run`; the files hold what each promises (exact terms
/// out of the training, weights and NTK, their reported loss zero, boundary met; residual_grad
/// with its weight and NTK block; importance terms named), and batches of 4 equal the same jobs
/// run alone to 1e-10.
#[test]
fn loss_schemes_are_recorded_and_batches_equal_jobs_run_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let sweep = write(tmp.path(), "loss.yaml", LOSS_SCHEMES);
    let o = ntksweep(&["plan", sweep.to_str().unwrap()]);
    assert!(o.status.success() && text(&o).contains("32 jobs") && text(&o).contains("exact_bc") && text(&o).contains("sampling: importance pool: 48 every: 5"), "{}", text(&o));
    let (batched, alone, t) = run_batched_and_alone(tmp.path(), &sweep, "4");
    assert!(t.contains("32 to run in 8 batch(es)"), "{t}");
    py_check("check_contract.py", &[batched.to_str().unwrap(), "--expect-status", "done"]);
    let t = py_check("check_loss_schemes.py", &[batched.to_str().unwrap()]);
    assert!(t.contains("32 files: 16 exact, 16 gradient-enhanced, 16 importance"), "{t}");
    let t = py_check("compare_results.py", &[alone.to_str().unwrap(), batched.to_str().unwrap(), "--rtol", "1e-10"]);
    assert!(t.contains("32 jobs compared"), "{t}");
    let o = ntksweep(&["reduce", batched.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
}

/// Each bad value: exit code 2, file:line:col and the key, no results folder.
#[test]
fn bad_loss_scheme_values_are_rejected_before_anything_is_written() {
    let cases: &[(&str, &str, &str, &str)] = &[
        ("exact_bc without a Dirichlet term", "{kind: darcy1d, eps: 0.5}", "{kind: regression1d, eps: 0.5}", "key `model.exact_bc`"),
        ("pool < points", "pool: 48", "pool: 8", "key `collocation.residual.pool`"),
        ("every 0", "every: 5}", "every: 0}", "key `collocation.residual.every`"),
        ("pool without importance", "[{points: 16}, {points: 16, sampling", "[{points: 16, pool: 40}, {points: 16, sampling", "key `collocation.residual.pool`"),
        ("weight < 0", "{weight: 0.5}", "{weight: -1}", "key `loss.gradient_enhanced.weight`"),
        ("gradient-enhanced 2-D", "{kind: darcy1d, eps: 0.5}", "{kind: helmholtz2d}", "key `loss.gradient_enhanced`"),
        ("gradient-enhanced with Hutchinson", "points: {residual: 12}}", "points: {residual: 12}, method: hutchinson}", "key `loss.gradient_enhanced`"),
        ("importance NTK points", "points: {residual: 12}}", "points: {residual: 12}, sampling: importance}", "key `ntk.sampling`"),
    ];
    let base = LOSS_SCHEMES.replace("  eps: [0.5, 0.25]\n", "");
    assert_rejected(&base, cases);
}
