//! Helpers shared by the integration tests: run the real binary in a temporary folder, and
//! read results back with the project's Python environment (h5py), as users do.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ntksweep")
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn python() -> PathBuf {
    repo().join(".venv/bin/python")
}

/// A tiny darcy1d sweep: 2 eps x 2 seeds, width 8, 20 steps, float64.
pub const TINY: &str = "\
name: tiny
problem:
  kind: darcy1d
  eps: 0.5
model: {width: 8, depth: 2, dtype: float64}
training: {steps: 20, log_every: 5}
collocation: {residual: {points: 16}}
ntk: {every: 10}
evaluation: {points: 40}
sweep:
  eps: [0.5, 0.25]
  seed: [0, 1]
";

pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// The test harness runs several tests, and so several ntksweep processes, at once on few
/// cores: their OpenMP threads must not spin (see src/host.rs). Every spawned ntksweep gets it.
pub const WAIT_POLICY: (&str, &str) = ("OMP_WAIT_POLICY", "PASSIVE");

pub fn ntksweep(args: &[&str]) -> Output {
    ntksweep_with(args, &[])
}

/// [`ntksweep`] with extra environment variables (fault injection, the reverse-pass switch).
pub fn ntksweep_with(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(bin());
    cmd.args(args).env("NTKSWEEP_PROGRESS_SECONDS", "0").env(WAIT_POLICY.0, WAIT_POLICY.1);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run ntksweep")
}

pub fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Run a Python checker from tests/ with the project's venv; panics with its output on failure.
pub fn py_check(script: &str, args: &[&str]) -> String {
    let o = Command::new(python()).arg(repo().join("tests").join(script)).args(args).output().expect("python");
    let t = text(&o);
    assert!(o.status.success(), "{script} failed:\n{t}");
    t
}

/// Job files (final names only) in a results folder.
pub fn job_files(out: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(out.join("jobs"))
        .map(|rd| rd.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "h5") && !p.file_name().unwrap().to_string_lossy().starts_with('.')).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// Files whose name marks them as temporary (a killed write).
pub fn temp_files(out: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(out.join("jobs"))
        .map(|rd| rd.flatten().map(|e| e.path()).filter(|p| p.file_name().unwrap().to_string_lossy().starts_with('.')).collect())
        .unwrap_or_default()
}

pub fn mpirun() -> Option<PathBuf> {
    let o = Command::new("sh").args(["-c", "command -v mpirun"]).output().ok()?;
    o.status.success().then(|| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
}

/// `mpirun -n N --oversubscribe ntksweep ARGS...` (root allowed, as on CI machines).
pub fn mpi_ntksweep(n: usize, args: &[&str]) -> Output {
    Command::new(mpirun().expect("mpirun"))
        .args(["-n", &n.to_string(), "--oversubscribe", bin()])
        .args(args)
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("NTKSWEEP_PROGRESS_SECONDS", "0")
        .env(WAIT_POLICY.0, WAIT_POLICY.1)
        .output()
        .expect("run mpirun")
}

/// Each (description, replace this, with this, expected fragment) edit of the sweep `base` must
/// make `ntksweep run` exit 2 with a message naming `bad.yaml:line:col` and containing the
/// fragment, and create no results folder.
pub fn assert_rejected(base: &str, cases: &[(&str, &str, &str, &str)]) {
    for (what, from, to, expect) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let text_in = base.replacen(from, to, 1);
        assert_ne!(text_in, base, "{what}: replacement did not apply");
        let sweep = write(tmp.path(), "bad.yaml", &text_in);
        let out = tmp.path().join("res");
        let o = ntksweep(&["run", sweep.to_str().unwrap(), "--out", out.to_str().unwrap()]);
        let t = text(&o);
        assert_eq!(o.status.code(), Some(2), "{what}: {t}");
        assert!(t.contains(expect), "{what}: expected `{expect}` in:\n{t}");
        let mut pos = t.split("bad.yaml:").nth(1).unwrap_or("").splitn(3, ':');
        let (line, col) = (pos.next().unwrap_or(""), pos.next().unwrap_or(""));
        assert!(line.parse::<usize>().is_ok() && col.parse::<usize>().is_ok(), "{what}: no file:line:col in:\n{t}");
        assert!(!out.exists(), "{what}: results folder was created");
    }
}

/// Run `sweep` into `dir/batched` with `--max-batch cap` and into `dir/alone` with
/// `--max-batch 1` (both must succeed); returns the two folders and the batched run's output.
pub fn run_batched_and_alone(dir: &Path, sweep: &Path, cap: &str) -> (PathBuf, PathBuf, String) {
    let run = |out: &Path, cap: &str| {
        let o = ntksweep(&["run", sweep.to_str().unwrap(), "--out", out.to_str().unwrap(), "--max-batch", cap]);
        assert!(o.status.success(), "{}", text(&o));
        text(&o)
    };
    let (batched, alone) = (dir.join("batched"), dir.join("alone"));
    let t = run(&batched, cap);
    run(&alone, "1");
    (batched, alone, t)
}
