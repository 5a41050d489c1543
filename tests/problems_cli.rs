//! The 2-D problems and the L-BFGS phase through the real binary: the shipped sweeps validate,
//! run end to end when shortened, and write 2-D evaluation grids; configuration mistakes
//! specific to them are reported before anything runs.

mod common;

use common::*;

const SHIPPED_2D: &[(&str, usize)] = &[("wave_ntk", 2), ("klein_gordon", 6), ("helmholtz", 6)];

fn shipped(name: &str) -> String {
    repo().join("sweeps").join(format!("{name}.yaml")).to_str().unwrap().to_string()
}

#[test]
fn shipped_2d_sweeps_validate() {
    for (name, jobs) in SHIPPED_2D {
        let o = ntksweep(&["plan", &shipped(name)]);
        assert!(o.status.success(), "{name}: {}", text(&o));
        assert!(text(&o).contains(&format!("{jobs} jobs")), "{name}: {}", text(&o));
    }
}

/// Each shipped 2-D sweep shortened as its header says (20 steps, NTK every 10, width 20;
/// here also 5 L-BFGS iterations for every sweep, and a 30 x 30 evaluation grid).
#[test]
fn shipped_2d_sweeps_run_end_to_end_when_shortened() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, jobs) in SHIPPED_2D {
        let out = tmp.path().join(name);
        let o = ntksweep(&[
            "run",
            &shipped(name),
            "--out",
            out.to_str().unwrap(),
            "--device",
            "cpu",
            "--set",
            "training.steps=20",
            "--set",
            "ntk.every=10",
            "--set",
            "model.width=20",
            "--set",
            "evaluation.points=30",
            "--set",
            "training.lbfgs.steps=5",
        ]);
        assert!(o.status.success(), "{name}: {}", text(&o));
        let files = job_files(&out);
        assert_eq!(files.len(), *jobs, "{name}");
        for p in &files {
            let f = hdf5::File::open(p).unwrap();
            assert_eq!(ntksweep::output::read_status(p).unwrap().name(), "done");
            assert_eq!(f.dataset("eval/x").unwrap().shape(), vec![900, 2], "{name}: eval/x is [M, 2]");
            let x: Vec<f64> = f.dataset("eval/x").unwrap().read_raw().unwrap();
            assert!(x.iter().all(|v| v.is_finite()));
            let steps: Vec<i64> = f.dataset("train/step").unwrap().read_raw().unwrap();
            let ntk_steps: Vec<i64> = f.dataset("ntk/step").unwrap().read_raw().unwrap();
            // `--set training.lbfgs.steps=5` adds an L-BFGS phase where the sweep has none.
            let end = 25;
            assert_eq!(steps.last(), Some(&end), "{name}: training ends at step {end} (L-BFGS after Adam)");
            assert_eq!(ntk_steps.last(), Some(&end), "{name}: NTK snapshot at the end of training");
            let ntk_x = f.dataset("ntk/residual/x").unwrap().shape();
            assert_eq!(ntk_x[1], 2, "{name}: NTK points are 2-D");
        }
    }
}

/// Mistakes specific to 2-D problems and L-BFGS: exit code 2 and a message naming the key.
#[test]
fn two_d_and_lbfgs_mistakes_are_rejected_before_training() {
    let base = "\
name: bad
problem: {kind: helmholtz2d}
model: {width: 8}
training: {steps: 10}
evaluation: {points: 40}
";
    let cases: &[(&str, &str, &str)] = &[
        ("evaluation.points is per dimension in 2-D", "evaluation: {points: 40}", "evaluation.points"),
        ("unknown problem key", "problem: {kind: helmholtz2d}", "problem.k2"),
        ("eps has no meaning here", "problem: {kind: helmholtz2d}", "problem.eps"),
        ("unknown lbfgs key", "training: {steps: 10}", "training.lbfgs.histroy"),
        ("lbfgs history 0", "training: {steps: 10}", "training.lbfgs.history"),
        ("resample means uniform", "evaluation: {points: 40}", "collocation.residual.sampling"),
    ];
    let replacements = [
        "evaluation: {points: 1000}",
        "problem: {kind: helmholtz2d, k2: 3}",
        "problem: {kind: helmholtz2d, eps: 0.5}",
        "training: {steps: 10, lbfgs: {steps: 5, histroy: 3}}",
        "training: {steps: 10, lbfgs: {steps: 5, history: 0}}",
        "evaluation: {points: 40}\ncollocation: {residual: {points: 64, sampling: halton, resample: true}}",
    ];
    let tmp = tempfile::tempdir().unwrap();
    for ((what, from, key), to) in cases.iter().zip(replacements) {
        let yaml = base.replace(from, to);
        assert_ne!(yaml, base, "{what}: replacement did not apply");
        let sweep = write(tmp.path(), "bad.yaml", &yaml);
        let out = tmp.path().join("never");
        let o = ntksweep(&["run", sweep.to_str().unwrap(), "--out", out.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2), "{what}: {}", text(&o));
        assert!(text(&o).contains(key), "{what}: expected `{key}` in:\n{}", text(&o));
        assert!(!out.exists(), "{what}: nothing may be written");
    }
    // The same sweep with a valid L-BFGS section validates.
    let ok = write(tmp.path(), "ok.yaml", &base.replace("training: {steps: 10}", "training: {steps: 10, lbfgs: {steps: 5}}"));
    let o = ntksweep(&["plan", ok.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
}
