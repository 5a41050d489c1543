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
