//! End-to-end tests of the real binary on tiny sweeps (single process).

mod common;

use common::*;
use std::time::SystemTime;

fn mtimes(out: &std::path::Path) -> Vec<(String, SystemTime)> {
    job_files(out).iter().map(|p| (p.file_name().unwrap().to_string_lossy().to_string(), p.metadata().unwrap().modified().unwrap())).collect()
}

#[test]
fn run_writes_contract_files_resumes_and_reruns_only_missing_jobs() {
    let tmp = tempfile::tempdir().unwrap();
    let sweep = write(tmp.path(), "tiny.yaml", TINY);
    let out = tmp.path().join("res");
    let o = ntksweep(&["run", sweep.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(job_files(&out).len(), 4);
    py_check("check_contract.py", &[out.to_str().unwrap(), "--expect-status", "done"]);
    // The ids in the plan are the file names.
    let plan = ntksweep(&["plan", sweep.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    let plan_text = text(&plan);
    for f in job_files(&out) {
        assert!(plan_text.contains(f.file_stem().unwrap().to_str().unwrap()), "{plan_text}");
    }
    assert!(plan_text.contains("done"));
    // Rerun: nothing to do, files untouched.
    let before = mtimes(&out);
    let o = ntksweep(&["run", sweep.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(o.status.success());
    assert!(text(&o).contains("4 already finished, 0 to run"), "{}", text(&o));
    assert_eq!(mtimes(&out), before);
    // Delete one file: only that job runs again.
    let victim = job_files(&out)[2].clone();
    std::fs::remove_file(&victim).unwrap();
    let st = ntksweep(&["status", out.to_str().unwrap()]);
    assert!(text(&st).contains("done 3") && text(&st).contains("pending 1"), "{}", text(&st));
    let o = ntksweep(&["run", sweep.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(text(&o).contains("3 already finished, 1 to run"), "{}", text(&o));
    let after = mtimes(&out);
    for (a, b) in before.iter().zip(&after) {
        if a.0 == victim.file_name().unwrap().to_string_lossy() {
            assert!(victim.exists());
        } else {
            assert_eq!(a, b, "job {} was rerun", a.0);
        }
    }
}

/// Each bad input: exit code 2, the message names file:line:col and the key, no folder.
#[test]
fn bad_inputs_are_rejected_with_position_and_key_before_anything_is_written() {
    let cases: &[(&str, &str, &str, &str)] = &[
        // (description, replace this, with this, expected "line:col" and key fragments)
        ("unknown key", "model: {width: 8,", "model: {widht: 8,", "key `model.widht`"),
        ("wrong type", "steps: 20", "steps: twenty", "key `training.steps`"),
        ("eps <= 0", "eps: [0.5, 0.25]", "eps: [0.5, -0.25]", "key `problem.eps`"),
        ("width 0", "width: 8", "width: 0", "key `model.width`"),
        ("1/eps not an integer", "eps: [0.5, 0.25]", "eps: [0.5, 0.3]", "1/eps must be an integer"),
        ("empty axis", "seed: [0, 1]", "seed: []", "empty"),
        ("duplicate axis", "seed: [0, 1]", "seed: [0, 1]\n  problem.eps: [0.5]", "duplicate axis"),
        ("unknown problem", "kind: darcy1d", "kind: darcy9d", "unknown variant"),
        ("name outside results/", "name: tiny", "name: ../../x", "key `name`"),
    ];
    assert_rejected(TINY, cases);
    // Without --out the results folder is results/<name>: a name with a path in it writes
    // nothing, anywhere (the sweep file is the only thing in the folder afterwards).
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("a/b");
    std::fs::create_dir_all(&work).unwrap();
    let sweep = write(&work, "bad.yaml", &TINY.replace("name: tiny", "name: ../../x"));
    let o = std::process::Command::new(bin()).current_dir(&work).args(["run", sweep.to_str().unwrap()]).env(WAIT_POLICY.0, WAIT_POLICY.1).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("bad.yaml:1:7: key `name`: must be a plain folder name"), "{}", text(&o));
    let left: Vec<_> = walkdir(tmp.path());
    assert_eq!(left, vec![sweep.clone()], "files written by an invalid sweep");
    // A bad --set is reported as such.
    let tmp = tempfile::tempdir().unwrap();
    let sweep = write(tmp.path(), "ok.yaml", TINY);
    let out = tmp.path().join("res");
    let o = ntksweep(&["run", sweep.to_str().unwrap(), "--out", out.to_str().unwrap(), "--set", "model.width=0"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("--set model.width=0") && text(&o).contains("model.width"), "{}", text(&o));
    assert!(!out.exists());
}

#[test]
fn set_overrides_values_and_axes_from_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    let sweep = write(tmp.path(), "tiny.yaml", TINY);
    let o = ntksweep(&["plan", sweep.to_str().unwrap(), "--set", "sweep.seed=[0,1,2]", "--set", "model.width=4"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("6 jobs"), "{}", text(&o));
}

#[test]
fn cuda_without_a_gpu_is_a_clear_error_before_any_work() {
    if tch::Cuda::is_available() {
        eprintln!("skipped: this machine has CUDA");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let sweep = write(tmp.path(), "tiny.yaml", TINY);
    let out = tmp.path().join("res");
    let o = ntksweep(&["run", sweep.to_str().unwrap(), "--out", out.to_str().unwrap(), "--device", "cuda"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("no CUDA device"), "{}", text(&o));
    assert!(!out.exists());
}

/// A libtorch error inside one job marks only that job failed (its batch is retried one job
/// at a time); the sweep goes on and the exit code says so; --retry-failed reruns it.
#[test]
fn injected_libtorch_error_fails_one_job_and_retry_failed_reruns_it() {
    let tmp = tempfile::tempdir().unwrap();
    let sweep = write(tmp.path(), "tiny.yaml", TINY);
    let out = tmp.path().join("res");
    let plan = text(&ntksweep(&["plan", sweep.to_str().unwrap()]));
    let victim = plan.lines().find(|l| l.trim_start().starts_with('1')).unwrap().split_whitespace().nth(1).unwrap().to_string();
    let o = ntksweep_with(&["run", sweep.to_str().unwrap(), "--out", out.to_str().unwrap()], &[("NTKSWEEP_FAIL_JOB", &victim)]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(job_files(&out).len(), 4);
    let st = text(&ntksweep(&["status", out.to_str().unwrap()]));
    assert!(st.contains("done 3") && st.contains("failed 1"), "{st}");
    let t = py_check("check_contract.py", &[out.to_str().unwrap()]);
    assert!(t.contains("'failed': 1"), "{t}");
    // Without --retry-failed the failed job is kept; with it, it runs again.
    let o = ntksweep(&["run", sweep.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let o = ntksweep(&["run", sweep.to_str().unwrap(), "--out", out.to_str().unwrap(), "--retry-failed"]);
    assert!(o.status.success(), "{}", text(&o));
    py_check("check_contract.py", &[out.to_str().unwrap(), "--expect-status", "done"]);
}

/// On a tiny real sweep, summary.h5 equals an independent numpy/scipy computation from the job
/// files; failed and missing jobs are reported and excluded.
#[test]
fn reduce_matches_numpy_and_reports_failed_and_missing_jobs() {
    let tmp = tempfile::tempdir().unwrap();
    let sweep = write(tmp.path(), "tiny.yaml", &TINY.replace("seed: [0, 1]", "seed: [0, 1, 2]\n  normalization: [none, zscore]"));
    let out = tmp.path().join("res");
    let o = ntksweep(&["run", sweep.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let o = ntksweep(&["reduce", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("NTK scaling") && out.join("report.md").exists());
    let t = py_check("check_reduce.py", &[out.to_str().unwrap()]);
    assert!(t.contains("reduce OK"), "{t}");
    // One failed job (injected) and one missing job: excluded, counted, listed.
    let files = job_files(&out);
    std::fs::remove_file(&files[0]).unwrap();
    let victim = files[1].file_stem().unwrap().to_string_lossy().to_string();
    std::fs::remove_file(&files[1]).unwrap();
    let o = ntksweep_with(&["run", sweep.to_str().unwrap(), "--out", out.to_str().unwrap()], &[("NTKSWEEP_FAIL_JOB", &victim)]);
    assert_eq!(o.status.code(), Some(1));
    std::fs::remove_file(&files[0]).unwrap();
    let o = ntksweep(&["reduce", out.to_str().unwrap()]);
    let t = text(&o);
    assert!(t.contains("10 done, 1 failed") && t.contains("1 missing"), "{t}");
    assert!(t.contains(&victim), "failed job listed: {t}");
    py_check("check_reduce.py", &[out.to_str().unwrap()]);
}

/// The progress counts L-BFGS iterations like Adam steps. With a line per update
/// (NTKSWEEP_PROGRESS_SECONDS=0), 20 Adam steps give 20 lines; L-BFGS iterations add more
/// (a count that ignored them would print none), none passes 100%, and the last says 100%.
#[test]
fn progress_counts_the_lbfgs_phase() {
    let tmp = tempfile::tempdir().unwrap();
    let sweep = write(
        tmp.path(),
        "lb.yaml",
        "name: lb\nproblem: {kind: poisson1d, eps: 0.5}\nmodel: {width: 8, depth: 2, dtype: float64}\n\
         training: {steps: 20, log_every: 5, lbfgs: {steps: 20, tolerance_grad: 0.0, tolerance_change: 0.0}}\n\
         ntk: {enabled: false}\nevaluation: {points: 20}\n",
    );
    let out = tmp.path().join("out");
    let o = ntksweep(&["run", sweep.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let pct: Vec<f64> = String::from_utf8_lossy(&o.stderr)
        .lines()
        .filter_map(|l| l.strip_prefix("progress:"))
        .filter_map(|l| l.trim_start().split('%').next()?.trim().parse().ok())
        .collect();
    assert!(pct.len() > 25, "no progress lines during the L-BFGS phase: {pct:?}");
    assert!(pct[19] < 60.0, "Adam's 20 steps are about half of the work: {pct:?}");
    assert!(pct.iter().all(|&p| p <= 100.0), "{pct:?}");
    assert_eq!(pct.last().copied(), Some(100.0), "{pct:?}");
}

/// `run --help` names the options' defaults and the environment variables that change a run;
/// a nonsensical option value is refused.
#[test]
fn run_help_lists_defaults_and_environment() {
    let o = ntksweep(&["run", "--help"]);
    assert!(o.status.success());
    let t = text(&o);
    for want in ["--max-batch", "default: 8 on CPU, 64 on CUDA", "NTKSWEEP_PROGRESS_SECONDS", "NTKSWEEP_REVERSE=autograd", "NTKSWEEP_FAIL_JOB", "OMP_WAIT_POLICY"] {
        assert!(t.contains(want), "`run --help` lacks {want:?}:\n{t}");
    }
    // A batch cap of 0 is refused before anything is written.
    let tmp = tempfile::tempdir().unwrap();
    let sweep = write(tmp.path(), "tiny.yaml", TINY);
    let out = tmp.path().join("res");
    let o = ntksweep(&["run", sweep.to_str().unwrap(), "--out", out.to_str().unwrap(), "--max-batch", "0"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--max-batch"), "{}", text(&o));
    assert!(!out.exists());
}

/// Every file under `dir` (not folders), sorted.
fn walkdir(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walkdir(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}
