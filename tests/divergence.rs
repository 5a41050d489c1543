//! A job whose loss becomes NaN is recorded as `diverged` while the other jobs of its sweep,
//! and of its very batch, finish as `done`; the exit code says that not every job succeeded.
//!
//! The forcing: Adam moves every parameter by about lr per step whatever the gradient, so with
//! lr = 1e30 the float32 weights jump to ~1e30 at the first update and the next forward pass
//! yields inf * 0 = NaN. (lr = 1e12 does not do it: tanh saturates, the loss stays finite at
//! ~1e24 and the job ends `done` with a useless fit; divergence means a non-finite loss.)

mod common;

use common::*;
use hdf5::types::VarLenUnicode;

fn attr(f: &hdf5::File, name: &str) -> String {
    f.attr(name).unwrap().read_scalar::<VarLenUnicode>().unwrap().as_str().to_string()
}

#[test]
fn a_diverging_job_is_recorded_as_diverged_while_its_batch_mate_finishes() {
    let tmp = tempfile::tempdir().unwrap();
    let sweep = write(
        tmp.path(),
        "diverge.yaml",
        "\
name: diverge
problem: {kind: darcy1d, eps: 0.5}
model: {width: 10, depth: 2}
training: {steps: 30, log_every: 1}
ntk: {every: 10}
evaluation: {points: 50}
sweep:
  lr: [1.0e-3, 1.0e+30]
",
    );
    let out = tmp.path().join("res");
    // Both jobs differ only in lr, a per-member value: they train as one batch of two.
    let o = ntksweep(&["run", sweep.to_str().unwrap(), "--out", out.to_str().unwrap(), "--device", "cpu"]);
    assert!(!o.status.success(), "a diverged job must make the exit code non-zero:\n{}", text(&o));
    let files = job_files(&out);
    assert_eq!(files.len(), 2, "{}", text(&o));
    let mut seen = Vec::new();
    for p in &files {
        let f = hdf5::File::open(p).unwrap();
        let axes = attr(&f, "axes");
        let status = attr(&f, "status");
        let batch: i64 = f.attr("batch_size").unwrap().read_scalar().unwrap();
        assert_eq!(batch, 2, "both jobs trained in one batch");
        assert_eq!(ntksweep::output::read_status(p).unwrap().name(), status);
        if axes.contains("1e30") {
            assert_eq!(status, "diverged", "{axes}: {}", attr(&f, "message"));
            assert!(attr(&f, "message").contains("became NaN"), "{}", attr(&f, "message"));
            let at: i64 = f.attr("diverged_step").unwrap().read_scalar().unwrap();
            assert!((1..=30).contains(&at), "diverged at step {at}");
            // The history up to the divergence is kept.
            let steps: Vec<i64> = f.dataset("train/step").unwrap().read_raw().unwrap();
            assert_eq!(steps.first(), Some(&0));
            assert!(steps.iter().all(|&s| s < at), "{steps:?} vs {at}");
        } else {
            assert_eq!(status, "done", "{axes}: {}", attr(&f, "message"));
            let loss: Vec<f64> = f.dataset("train/loss/residual").unwrap().read_raw().unwrap();
            assert_eq!(loss.len(), 31);
            assert!(loss.iter().all(|v| v.is_finite()));
            let ntk_steps: Vec<i64> = f.dataset("ntk/step").unwrap().read_raw().unwrap();
            assert_eq!(ntk_steps, vec![0, 10, 20, 30]);
            assert_eq!(f.dataset("eval/x").unwrap().shape(), vec![50, 1]);
        }
        seen.push(status);
    }
    seen.sort();
    assert_eq!(seen, ["diverged", "done"]);
    let st = ntksweep(&["status", out.to_str().unwrap()]);
    assert!(text(&st).contains("diverged 1"), "{}", text(&st));
}
