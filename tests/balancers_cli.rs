//! Every balancer end to end through the real binary: a tiny darcy1d sweep over the
//! `balancer` axis, then the job files are read back with the hdf5 crate.

use std::path::Path;
use std::process::Command;

use hdf5::types::VarLenUnicode;

const SWEEP: &str = "\
name: balancers
problem: {kind: darcy1d, eps: 0.25}
model: {width: 10, depth: 2, dtype: float64}
training: {steps: 60, log_every: 5, lr: 1.0e-2}
collocation:
  residual: {points: 32}
  boundary: {points: 2}
ntk: {every: 10, spectra: false}
evaluation: {points: 64}
sweep:
  balancer:
    - none
    - {kind: ntk, every: 10}
    - {kind: grad_stats, every: 5}
    - softadapt
    - relobralo
    - gradnorm
    - uncertainty
    - eps_rescale
";

fn attr(f: &hdf5::File, name: &str) -> String {
    let v: VarLenUnicode = f.attr(name).unwrap().read_scalar().unwrap();
    v.as_str().to_string()
}

fn read(f: &hdf5::File, path: &str) -> Vec<f64> {
    f.dataset(path).unwrap().read_raw::<f64>().unwrap()
}

fn run(dir: &Path, sweep: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ntksweep"))
        .env("OMP_WAIT_POLICY", "PASSIVE") // several tests at once: see tests/common/mod.rs
        .args(["run", sweep.to_str().unwrap(), "--out", dir.join("out").to_str().unwrap(), "--device", "cpu", "--quiet"])
        .output()
        .expect("the binary runs")
}

#[test]
fn every_balancer_trains_to_done_with_moving_weights() {
    let dir = tempfile::tempdir().unwrap();
    let sweep = dir.path().join("balancers.yaml");
    std::fs::write(&sweep, SWEEP).unwrap();
    let out = run(dir.path(), &sweep);
    assert!(out.status.success(), "exit {:?}\nstdout:\n{}\nstderr:\n{}", out.status, String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));

    let mut seen = Vec::new();
    for entry in std::fs::read_dir(dir.path().join("out/jobs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("h5") {
            continue;
        }
        let f = hdf5::File::open(&path).unwrap();
        let balancer = attr(&f, "balancer");
        assert_eq!(attr(&f, "status"), "done", "{balancer}: {}", attr(&f, "message"));
        let steps: Vec<i64> = f.dataset("train/step").unwrap().read_raw::<i64>().unwrap();
        assert_eq!(steps, (0..=60).step_by(5).collect::<Vec<i64>>());
        let mut moved = false;
        for term in ["residual", "boundary"] {
            let w = read(&f, &format!("train/weight/{term}"));
            assert_eq!(w.len(), steps.len(), "{balancer}: a weight per logged step for {term}");
            assert!(w.iter().all(|v| v.is_finite() && *v >= 0.0), "{balancer} {term}: {w:?}");
            moved |= w.iter().any(|v| (v - w[0]).abs() > 1e-12 * w[0].abs().max(1.0));
        }
        let fixed = balancer == "none" || balancer == "eps_rescale";
        assert_eq!(moved, !fixed, "{balancer}: weights {} over training", if moved { "changed" } else { "did not change" });
        if balancer == "ntk" {
            check_ntk_weights_are_trace_ratios(&f, &steps);
        }
        seen.push(balancer);
    }
    seen.sort();
    assert_eq!(seen, ["eps_rescale", "grad_stats", "gradnorm", "none", "ntk", "relobralo", "softadapt", "uncertainty"]);
}

/// At every NTK snapshot step (all of them are `ntk` update steps here: every 10, and 60),
/// train/weight/T equals sum_j ntk/j/trace / ntk/T/trace of that step.
fn check_ntk_weights_are_trace_ratios(f: &hdf5::File, steps: &[i64]) {
    let ntk_steps: Vec<i64> = f.dataset("ntk/step").unwrap().read_raw::<i64>().unwrap();
    assert_eq!(ntk_steps, vec![0, 10, 20, 30, 40, 50, 60]);
    let terms = ["residual", "boundary"];
    let traces: Vec<Vec<f64>> = terms.iter().map(|t| read(f, &format!("ntk/{t}/trace"))).collect();
    let weights: Vec<Vec<f64>> = terms.iter().map(|t| read(f, &format!("train/weight/{t}"))).collect();
    for (si, step) in ntk_steps.iter().enumerate() {
        let li = steps.iter().position(|s| s == step).unwrap();
        let total = traces[0][si] + traces[1][si];
        for t in 0..terms.len() {
            let want = total / traces[t][si];
            let got = weights[t][li];
            assert!((got - want).abs() <= 1e-14 * want, "step {step}, {}: weight {got} vs trace ratio {want}", terms[t]);
        }
    }
}

/// `balancer: eps_rescale` is the same training as `none` with `loss.eps_rescale: true`.
#[test]
fn eps_rescale_balancer_equals_the_loss_switch() {
    let dir = tempfile::tempdir().unwrap();
    let text = SWEEP.split("sweep:").next().unwrap().to_string()
        + "sweep:\n  balancer: [none, eps_rescale]\n  loss.eps_rescale: [false, true]\n";
    let sweep = dir.path().join("s.yaml");
    std::fs::write(&sweep, text).unwrap();
    let out = run(dir.path(), &sweep);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // (balancer attribute, loss.eps_rescale) -> residual loss history.
    let mut runs = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(dir.path().join("out/jobs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) == Some("h5") {
            let f = hdf5::File::open(&path).unwrap();
            let axes = attr(&f, "axes");
            let switch = axes.contains("loss.eps_rescale=true");
            let named = if axes.contains("balancer=eps_rescale") { "eps_rescale" } else { "none" };
            // Either way of asking for rescaling is recorded as such in the `balancer` attribute.
            let expected_label = if switch || named == "eps_rescale" { "eps_rescale" } else { "none" };
            assert_eq!(attr(&f, "balancer"), expected_label, "{axes}");
            runs.insert((named.to_string(), switch), read(&f, "train/loss/residual"));
        }
    }
    let same = |a: &[f64], b: &[f64]| a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-10 * y.abs().max(1e-300));
    let plain = &runs[&("none".to_string(), false)];
    let switch = &runs[&("none".to_string(), true)];
    let named = &runs[&("eps_rescale".to_string(), false)];
    let both = &runs[&("eps_rescale".to_string(), true)];
    assert!(same(switch, named), "{switch:?}\n{named:?}");
    assert!(same(named, both));
    assert!(!same(plain, named));
    // Rescaled by eps = 0.25: the residual loss at step 0 is eps^2 times the plain one.
    assert!((named[0] - 0.0625 * plain[0]).abs() <= 1e-12 * plain[0]);
}
