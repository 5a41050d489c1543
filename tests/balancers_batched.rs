//! Balancers through the trainer (library API, no binary): batching does not change a member's
//! weights, the `ntk` balancer's weights are the trace ratios of the recorded snapshot, and
//! typing errors inside `balancer:` name the field and line. Integration tests because they
//! drive `config` and `train`, which sit above `balancer` in the import graph.

use std::sync::atomic::AtomicBool;

use ntksweep::balancer::{BalancerConfig, NtkTraceConfig};
use ntksweep::config::{JobSpec, Sweep};
use ntksweep::record::JobRecord;
use ntksweep::train::{train_batch, BatchContext, BatchOutcome};

const BASE: &str = "\
problem: {kind: darcy1d, eps: 0.25}
model: {width: 10, depth: 2, dtype: float64}
training: {steps: 30, log_every: 5, lr: 1.0e-2}
collocation:
  residual: {points: 24}
  boundary: {points: 2}
ntk: {every: 10, spectra: false}
evaluation: {points: 50}
";

fn train(specs: &[&JobSpec]) -> Vec<JobRecord> {
    let stop = AtomicBool::new(false);
    let mut on = |_| {};
    let mut ctx = BatchContext { device: tch::Device::Cpu, stop: &stop, on_steps: &mut on, autograd: false, checkpoints: None };
    match train_batch(specs, &mut ctx).unwrap() {
        BatchOutcome::Finished(r) => r,
        BatchOutcome::Interrupted => panic!("interrupted"),
    }
}

fn sweep(balancer: &str, seeds: &str) -> Sweep {
    let text = format!("{BASE}balancer: {balancer}\nsweep:\n  seed: {seeds}\n");
    Sweep::parse(&text, "t.yaml", "t", &[]).unwrap()
}

/// A batch of two members gives each member the weights (and losses) it gets alone.
#[test]
fn batched_members_get_their_unbatched_weights() {
    for b in [
        "{kind: ntk, every: 5}",
        "{kind: grad_stats, every: 5}",
        "softadapt",
        "relobralo",
        "{kind: gradnorm, lr: 1.0e-3}",
        "uncertainty",
        "eps_rescale",
    ] {
        let s = sweep(b, "[3, 8]");
        let both = train(&[&s.jobs[0], &s.jobs[1]]);
        for k in 0..2 {
            let alone = train(&[&s.jobs[k]]).remove(0);
            let (hb, ha) = (&both[k].history, &alone.history);
            assert_eq!(hb.step, ha.step);
            for (term, wa) in &ha.weight {
                let wb = &hb.weight[term];
                for (i, (x, y)) in wb.iter().zip(wa).enumerate() {
                    assert!((x - y).abs() <= 1e-10 * y.abs().max(1.0), "{b}, member {k}, {term}, log {i}: batched {x} vs alone {y}");
                }
            }
            if b != "eps_rescale" {
                let w = &ha.weight["boundary"];
                assert!(w.iter().any(|v| (v - w[0]).abs() > 1e-12), "{b}: boundary weight never changed: {w:?}");
            }
        }
    }
}

/// At every update step of `ntk` (every 10 = ntk.every, log_every 5 divides it), the
/// recorded weight of term i is sum_j tr K_jj / tr K_ii from the recorded traces.
#[test]
fn ntk_weights_are_the_recorded_trace_ratios() {
    let s = sweep("{kind: ntk, every: 10}", "[1]");
    let r = train(&[&s.jobs[0]]).remove(0);
    let ntk = r.ntk.as_ref().unwrap();
    assert_eq!(ntk.step, vec![0, 10, 20, 30]);
    for (si, &step) in ntk.step.iter().enumerate() {
        let li = r.history.step.iter().position(|&s| s == step).unwrap();
        let total: f64 = ntk.terms.iter().map(|(_, t)| t.trace[si]).sum();
        for (name, t) in &ntk.terms {
            let want = total / t.trace[si];
            let got = r.history.weight[name][li];
            assert!((got - want).abs() <= 1e-14 * want, "step {step}, {name}: weight {got}, trace ratio {want}");
        }
    }
    // Between updates the weights hold.
    let w = &r.history.weight["boundary"];
    assert_eq!(w[0], w[1]);
    assert_ne!(w[0], w[2]);
}

fn errors(text: &str) -> Vec<ntksweep::config::ConfigError> {
    match Sweep::parse(text, "t.yaml", "t", &[]) {
        Err(ntksweep::config::SweepError::Invalid(v)) => v,
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("expected an error"),
    }
}

fn line(e: &ntksweep::config::ConfigError) -> Option<usize> {
    match e.origin {
        ntksweep::config::error::Origin::File { line, .. } => line,
        _ => None,
    }
}

#[test]
fn balancer_axis_takes_every_kind_and_names_them() {
    let s = sweep("none", "[0]");
    assert_eq!(s.jobs[0].config.balancer.name(), "none");
    let text = format!("{BASE}sweep:\n  balancer: [none, ntk, grad_stats, softadapt, relobralo, gradnorm, uncertainty, eps_rescale]\n");
    let s = Sweep::parse(&text, "t.yaml", "t", &[]).unwrap();
    let names: Vec<&str> = s.jobs.iter().map(|j| j.config.balancer.name()).collect();
    assert_eq!(names, ["none", "ntk", "grad_stats", "softadapt", "relobralo", "gradnorm", "uncertainty", "eps_rescale"]);
    assert!(s.jobs[7].config.eps_rescale() && !s.jobs[0].config.eps_rescale());
    // Defaults are filled in (and so part of the job id).
    assert_eq!(s.jobs[1].config.balancer, BalancerConfig::Ntk(NtkTraceConfig { every: 100, beta: 0.0 }));
}

#[test]
fn typing_errors_inside_balancer_name_the_field_and_line() {
    let e = errors(&format!("{BASE}balancer:\n  kind: grad_stats\n  evry: 3\n"));
    assert_eq!(e[0].key, "balancer.evry");
    assert_eq!(line(&e[0]), Some(11));
    let e = errors(&format!("{BASE}balancer:\n  kind: relobralo\n  alpha: lots\n"));
    assert_eq!(e[0].key, "balancer.alpha");
    assert_eq!(line(&e[0]), Some(11));
    let e = errors(&format!("{BASE}balancer: {{kind: gradnorm, layer: 5}}\n"));
    assert_eq!(e[0].key, "balancer.layer");
    assert!(e[0].message.contains("3 layers"), "{}", e[0].message);
    let e = errors(&format!("{BASE}sweep:\n  balancer: [none, {{kind: ntk, beta: 1.5}}]\n"));
    assert_eq!(e[0].key, "balancer.beta");
    assert_eq!(line(&e[0]), Some(10));
    let e = errors(&format!("{BASE}balancer: lbfgs\n"));
    assert!(e[0].message.contains("unknown variant"), "{}", e[0].message);
}

/// With the NTK measurement off, the `ntk` balancer still gets its snapshots.
#[test]
fn ntk_balancer_works_with_ntk_recording_off() {
    let s = sweep("{kind: ntk, every: 10}", "[1]");
    let mut spec = s.jobs[0].clone();
    spec.config.ntk.enabled = false;
    let r = train(&[&spec]).remove(0);
    assert!(r.ntk.is_none());
    let on = train(&[&s.jobs[0]]).remove(0);
    assert_eq!(r.history.weight, on.history.weight);
}
