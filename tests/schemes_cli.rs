//! Network schemes (activations, adaptive slopes, Fourier features) and the Hutchinson NTK
//! trace through the binary: swept as axes, recorded in the job files, exact under batching,
//! bad values refused before anything runs.

mod common;

use common::*;

/// The activations other than tanh, with and without layer-wise slopes and Fourier features,
/// 2 eps x 2 seeds each (48 jobs), float64; the tests narrow the axes.
const SCHEMES: &str = "\
name: schemes
problem: {kind: darcy1d, eps: 0.5}
model: {width: 8, depth: 2, dtype: float64}
training: {steps: 12, log_every: 4}
collocation: {residual: {points: 16}}
ntk: {every: 6, points: {residual: 12}}
evaluation: {points: 40}
sweep:
  activation: [sin, silu, gelu]
  adaptive_activation: [none, {kind: layerwise, scale: 5}]
  fourier: [null, {features: 4, sigma: 2}]
  eps: [0.5, 0.25]
  seed: [0, 1]
";

/// The schemes train through `ntksweep run`; the files meet the contract (slopes on hidden
/// layers, B [m, d], the first layer's 2 m inputs, the scheme attributes), slopes start at
/// n a = 1 and move, B depends on the seed only, and batches of 4 equal the same jobs run alone
/// to 1e-10.
#[test]
fn schemes_are_recorded_and_batches_equal_jobs_run_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let text_in = SCHEMES.replace("[sin, silu, gelu]", "[sin, silu, gelu, tanh]").replacen("  eps: [0.5, 0.25]\n", "", 1);
    // All four activations x slopes x Fourier x 2 seeds (32 jobs); batched: the two seeds of a
    // scheme together; alone: one by one.
    let sweep = write(tmp.path(), "schemes.yaml", &text_in);
    let (batched, alone, t) = run_batched_and_alone(tmp.path(), &sweep, "4");
    assert!(t.contains("32 to run in 16 batch(es)"), "{t}");
    py_check("check_contract.py", &[batched.to_str().unwrap(), "--expect-status", "done"]);
    let t = py_check("check_schemes.py", &[batched.to_str().unwrap()]);
    assert!(t.contains("32 files, 16 with Fourier features"), "{t}");
    let t = py_check("compare_results.py", &[alone.to_str().unwrap(), batched.to_str().unwrap(), "--rtol", "1e-10"]);
    assert!(t.contains("32 jobs compared"), "{t}");
}

/// Larger batches: eps and seeds of one scheme train together (4 members), and equal the same
/// jobs alone to 1e-10; `plan` lists the schemes' axis values.
#[test]
fn batches_over_eps_and_seeds_equal_jobs_run_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let text_in = SCHEMES.replace("[sin, silu, gelu]", "[gelu]").replace("adaptive_activation: [none, {kind: layerwise, scale: 5}]", "adaptive_activation: [global]");
    let sweep = write(tmp.path(), "schemes.yaml", &text_in);
    let o = ntksweep(&["plan", sweep.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("8 jobs") && text(&o).contains("gelu") && text(&o).contains("features: 4 sigma: 2"), "{}", text(&o));
    let (batched, alone, t) = run_batched_and_alone(tmp.path(), &sweep, "4");
    assert!(t.contains("8 to run in 2 batch(es)"), "{t}");
    py_check("check_schemes.py", &[batched.to_str().unwrap()]);
    let t = py_check("compare_results.py", &[alone.to_str().unwrap(), batched.to_str().unwrap(), "--rtol", "1e-10"]);
    assert!(t.contains("8 jobs compared"), "{t}");
}

/// `ntk.method: hutchinson`: trace estimates with standard errors and no norms or spectra; the
/// ntk balancer's weights at each snapshot are the estimated trace ratios; batches equal jobs
/// alone to 1e-10 (the probes come from each job's own stream); `reduce` accepts the folder.
#[test]
fn hutchinson_traces_are_recorded_and_feed_the_ntk_balancer() {
    let tmp = tempfile::tempdir().unwrap();
    let text_in = TINY
        .replace("ntk: {every: 10}", "ntk: {every: 5, method: hutchinson, probes: 8, chunk: 5}\nbalancer: {kind: ntk, every: 5}")
        .replace("model: {width: 8, depth: 2, dtype: float64}", "model: {width: 8, depth: 2, dtype: float64, adaptive_activation: global}");
    let sweep = write(tmp.path(), "hutch.yaml", &text_in);
    let (batched, alone, t) = run_batched_and_alone(tmp.path(), &sweep, "4");
    assert!(t.contains("4 to run in 1 batch(es)"), "{t}");
    py_check("check_contract.py", &[batched.to_str().unwrap(), "--expect-status", "done"]);
    py_check("check_schemes.py", &[batched.to_str().unwrap(), "--ntk-balancer"]);
    let t = py_check("compare_results.py", &[alone.to_str().unwrap(), batched.to_str().unwrap(), "--rtol", "1e-10"]);
    assert!(t.contains("4 jobs compared"), "{t}");
    let o = ntksweep(&["reduce", batched.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
}

/// Each bad scheme value: exit code 2, file:line:col and the key, no results folder.
#[test]
fn bad_scheme_values_are_rejected_before_anything_is_written() {
    let cases: &[(&str, &str, &str, &str)] = &[
        ("unknown activation", "activation: [sin, silu, gelu]", "activation: [sin, relu]", "key `model.activation`"),
        ("sigma <= 0", "sigma: 2}", "sigma: 0}", "key `model.fourier.sigma`"),
        ("no features", "features: 4,", "features: 0,", "key `model.fourier.features`"),
        ("slope scale <= 0", "scale: 5}", "scale: -5}", "key `model.adaptive_activation.scale`"),
        ("unknown slope mode", "kind: layerwise", "kind: neuronwise", "unknown variant `neuronwise`"),
        ("probes 0", "points: {residual: 12}}", "points: {residual: 12}, method: hutchinson, probes: 0}", "key `ntk.probes`"),
        ("unknown NTK method", "points: {residual: 12}}", "points: {residual: 12}, method: lanczos}", "key `ntk.method`"),
    ];
    assert_rejected(SCHEMES, cases);
}

/// Expression problems take the schemes like the built-ins: darcy1d written as an expression
/// with SiLU, a global slope, Fourier features and Hutchinson traces writes the built-in's job
/// files (1e-10, float64); an operator with a mixed derivative (u_xy, a stream layout no
/// built-in uses) trains with the hand-written reverse pass exactly as with autograd through
/// every activation with layer-wise slopes and Fourier features.
#[test]
fn expression_problems_take_the_schemes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = |k: &str| tmp.path().join(k).to_str().unwrap().to_string();
    let run = |sweep: &str, out: &str, env: &[(&str, &str)]| {
        let o = ntksweep_with(&["run", sweep, "--out", out, "-q"], env);
        assert!(o.status.success(), "{}", text(&o));
    };
    let schemes = "model: {width: 8, depth: 2, dtype: float64, activation: silu, adaptive_activation: global, fourier: {features: 3, sigma: 1.5}}\n\
                   training: {steps: 8, log_every: 4}\ncollocation: {residual: {points: 16}}\nevaluation: {points: 20}\n\
                   ntk: {every: 4, method: hutchinson, probes: 4, points: {residual: 10}}\nsweep:\n  eps: [0.5, 0.25]\n";
    let expression = "problem:\n  kind: expression\n  inputs: {x: [0, 1]}\n  constants: {eps: 0.5}\n  solution: sin(2*pi*x) + eps*sin(2*pi*x/eps)\n  \
                      operator: -(2 + sin(2*pi*x/eps))*u_xx - (2*pi/eps)*cos(2*pi*x/eps)*u_x\n";
    for (k, problem) in ["problem: {kind: darcy1d, eps: 0.5}\n", expression].iter().enumerate() {
        let sweep = write(tmp.path(), &format!("twin{k}.yaml"), &format!("name: twin\n{problem}{schemes}"));
        run(sweep.to_str().unwrap(), &dir(&format!("twin{k}")), &[]);
    }
    let t = py_check("compare_results.py", &[&dir("twin0"), &dir("twin1"), "--rtol", "1e-10", "--by-attributes"]);
    assert!(t.contains("2 jobs compared"), "{t}");
    let mixed = "name: mixed\nproblem:\n  kind: expression\n  inputs: {x: [0, 1], y: [0, 2]}\n  solution: sin(x + y^2/4)\n  operator: u_xy + 0.5*u_x - u\n\
                 model: {width: 6, depth: 2, dtype: float64, adaptive_activation: {kind: layerwise, scale: 2}, fourier: {features: 3, sigma: 1}}\n\
                 training: {steps: 6, log_every: 3}\ncollocation: {residual: {points: 16}, boundary: {points: 8}}\nntk: {every: 3}\nevaluation: {points: 6}\n\
                 sweep:\n  activation: [tanh, sin, silu, gelu]\n";
    let sweep = write(tmp.path(), "mixed.yaml", mixed);
    run(sweep.to_str().unwrap(), &dir("taped"), &[]);
    run(sweep.to_str().unwrap(), &dir("autograd"), &[("NTKSWEEP_REVERSE", "autograd")]);
    let t = py_check("compare_results.py", &[&dir("taped"), &dir("autograd"), "--rtol", "1e-10"]);
    assert!(t.contains("4 jobs compared"), "{t}");
}
