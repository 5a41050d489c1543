//! Post-hoc analysis of real runs: every problem kind, a learning-rate axis and two sweeps in
//! one folder, trained and reduced by the binary; then the Python side (reduce numbers against
//! numpy/scipy, jobs.csv against the job files with pandas, the `config` attribute with PyYAML,
//! every figure) on the same folders through `analysis/tests/test_real_runs.py`.
//!
//! The runs (tiny sweeps under tests/sweeps/, about 25 s on 2 cores) are made once per test
//! binary in `target/tmp/analysis_runs` and shared by the tests below.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::*;

/// Folder -> `ntksweep run` argument lists (the same as RUNS in test_real_runs.py).
const RUNS: &[(&str, &[&[&str]])] = &[
    ("every", &[&["every_problem.yaml"]]),
    ("lr", &[&["lr_axis.yaml"]]),
    ("mixed", &[&["lr_axis.yaml", "--set", "sweep.lr=[1e-3]"], &["other_depth.yaml"]]),
];

/// Where the runs are, and what `ntksweep reduce` printed for each folder.
struct Runs {
    root: PathBuf,
    reduced: Vec<(String, String)>,
}

impl Runs {
    fn dir(&self, folder: &str) -> PathBuf {
        self.root.join(folder)
    }

    fn reduce_output(&self, folder: &str) -> &str {
        &self.reduced.iter().find(|(f, _)| f == folder).expect("folder").1
    }
}

fn runs() -> &'static Runs {
    static RUNS_ONCE: OnceLock<Runs> = OnceLock::new();
    RUNS_ONCE.get_or_init(|| {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("analysis_runs");
        let _ = std::fs::remove_dir_all(&root);
        let sweeps = repo().join("tests").join("sweeps");
        let mut reduced = Vec::new();
        for (folder, commands) in RUNS {
            let out = root.join(folder);
            for args in *commands {
                let sweep = sweeps.join(args[0]);
                let mut all = vec!["run", sweep.to_str().unwrap(), "--out", out.to_str().unwrap(), "-q"];
                all.extend_from_slice(&args[1..]);
                let o = ntksweep(&all);
                assert!(o.status.success(), "{folder}: {}", text(&o));
            }
            let o = ntksweep(&["reduce", out.to_str().unwrap()]);
            assert!(o.status.success(), "{folder}: {}", text(&o));
            reduced.push((folder.to_string(), text(&o)));
        }
        Runs { root, reduced }
    })
}

fn trial_keys(dir: &Path) -> Vec<String> {
    let f = hdf5::File::open(dir.join("summary.h5")).unwrap();
    let mut keys = f.group("trials").unwrap().member_names().unwrap();
    keys.sort();
    keys
}

#[test]
fn every_problem_kind_reduces_into_trial_tables() {
    let r = runs();
    let out = r.reduce_output("every");
    for problem in ["darcy1d", "poisson1d", "regression1d", "wave1d", "klein_gordon1d", "helmholtz2d"] {
        assert!(out.contains(&format!("### {problem}, width 8, balancer none, normalization none")), "{out}");
    }
    assert!(out.contains("No scaling table for `helmholtz2d`, `klein_gordon1d`, `wave1d`"), "{out}");
    assert!(!out.contains("unreadable:") && out.contains("12 done, 0 failed, 0 diverged, 0 unreadable"), "{out}");
    assert_eq!(trial_keys(&r.dir("every")).len(), 6);
    assert!(trial_keys(&r.dir("every")).contains(&"wave1d_w8_none_none".to_owned()));
    let csv = std::fs::read_to_string(r.dir("every").join("jobs.csv")).unwrap();
    assert_eq!(csv.lines().count(), 13, "a header and one row per job file");
}

#[test]
fn an_lr_axis_gives_separate_groups_and_no_pooled_warning() {
    let r = runs();
    let out = r.reduce_output("lr");
    assert!(!out.contains("pooled") && !out.contains("## Warnings"), "{out}");
    assert!(out.contains("### training.lr, at eps=0.5") && out.contains("### training.lr, at eps=0.25"), "{out}");
    assert!(out.contains("p vs 0.001"), "{out}");
    let keys = trial_keys(&r.dir("lr"));
    assert_eq!(
        keys,
        [
            "darcy1d_eps0.25_w8_none_none_training.lr=0.001",
            "darcy1d_eps0.25_w8_none_none_training.lr=0.01",
            "darcy1d_eps0.5_w8_none_none_training.lr=0.001",
            "darcy1d_eps0.5_w8_none_none_training.lr=0.01",
        ]
    );
}

#[test]
fn two_sweeps_in_one_folder_reduce_into_separate_groups() {
    let r = runs();
    let out = r.reduce_output("mixed");
    assert!(!out.contains("pooled") && !out.contains("appears twice"), "{out}");
    assert!(out.contains("told apart by `eps`, `model.depth`"), "{out}");
    let keys = trial_keys(&r.dir("mixed"));
    assert_eq!(keys.len(), 4, "{keys:?}");
    assert!(keys.iter().all(|k| k.ends_with("model.depth=2") || k.ends_with("model.depth=3")), "{keys:?}");
}

/// The Python checks of the same folders (see the module documentation).
#[test]
fn python_analysis_checks_the_real_runs() {
    let r = runs();
    let o = Command::new(python())
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "analysis/tests/test_real_runs.py"])
        .current_dir(repo())
        .env("NTKSWEEP_REAL_RUNS", &r.root)
        .env("MPLBACKEND", "Agg")
        .output()
        .expect("python");
    assert!(o.status.success(), "{}", text(&o));
}
