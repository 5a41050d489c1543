//! MPI tests: the same sweep on 1, 2 and 3 ranks, dynamic scheduling, and interruption.
//! They run real `mpirun` (with --oversubscribe: CI machines have 2 cores).

mod common;

use common::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn need_mpirun() -> bool {
    if mpirun().is_none() {
        eprintln!("skipped: mpirun not found (scripts/setup.sh installs openmpi-bin)");
        return false;
    }
    true
}

#[test]
fn one_two_and_three_ranks_give_bit_identical_files() {
    if !need_mpirun() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let sweep = write(tmp.path(), "tiny.yaml", &TINY.replace("seed: [0, 1]", "seed: [0, 1, 2]"));
    let mut outs = Vec::new();
    for n in [1usize, 2, 3] {
        let out = tmp.path().join(format!("r{n}"));
        let o = mpi_ntksweep(n, &["run", sweep.to_str().unwrap(), "--out", out.to_str().unwrap(), "--max-batch", "2"]);
        assert!(o.status.success(), "{n} ranks: {}", text(&o));
        assert_eq!(job_files(&out).len(), 6, "{n} ranks");
        assert_eq!(std::fs::read_dir(out.join("logs")).unwrap().count(), n, "one log per rank");
        outs.push(out);
    }
    // Without a launcher too (MPI singleton).
    let single = tmp.path().join("single");
    let o = ntksweep(&["run", sweep.to_str().unwrap(), "--out", single.to_str().unwrap(), "--max-batch", "2"]);
    assert!(o.status.success(), "{}", text(&o));
    for out in &outs {
        let t = py_check("compare_results.py", &[single.to_str().unwrap(), out.to_str().unwrap(), "--rtol", "0"]);
        assert!(t.contains("6 jobs compared"), "{t}");
    }
}

#[test]
fn jobs_of_very_different_cost_are_each_run_once_and_busy_time_is_reported() {
    if !need_mpirun() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // width 64 jobs cost ~20x width 4 jobs.
    let text_in = TINY.replace("seed: [0, 1]", "seed: [0, 1, 2]\n  width: [4, 64]").replace("steps: 20", "steps: 60");
    let sweep = write(tmp.path(), "mixed.yaml", &text_in);
    let out = tmp.path().join("res");
    let o = mpi_ntksweep(3, &["run", sweep.to_str().unwrap(), "--out", out.to_str().unwrap(), "--max-batch", "1"]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("rank  batches  busy_s"), "{t}");
    let rows: Vec<&str> = t.lines().skip_while(|l| !l.starts_with("rank  batches")).skip(1).take(3).collect();
    assert_eq!(rows.len(), 3, "{t}");
    let batches: usize = rows.iter().map(|r| r.split_whitespace().nth(1).unwrap().parse::<usize>().unwrap()).sum();
    assert_eq!(batches, 12, "every job handed out exactly once:\n{t}");
    // Each job id appears in exactly one rank's log, once.
    let mut seen = std::collections::BTreeMap::new();
    for r in 0..3 {
        let log = std::fs::read_to_string(out.join(format!("logs/rank-{r}.log"))).unwrap();
        for l in log.lines().filter(|l| l.contains(": job ")) {
            let id = l.split(": job ").nth(1).unwrap().split_whitespace().next().unwrap().to_string();
            *seen.entry(id).or_insert(0) += 1;
        }
    }
    assert_eq!(seen.len(), 12);
    assert!(seen.values().all(|&c| c == 1), "{seen:?}");
}

/// Start a run, wait until `min_files` job files exist, then send `signal` to the launcher.
fn interrupt(cmd: &mut Command, out: &std::path::Path, min_files: usize, signal: i32) -> std::process::ExitStatus {
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let t0 = Instant::now();
    while job_files(out).len() < min_files {
        assert!(t0.elapsed() < Duration::from_secs(120), "no progress");
        if let Some(s) = child.try_wait().unwrap() {
            panic!("finished before it could be interrupted: {s}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    unsafe { libc::kill(child.id() as i32, signal) };
    child.wait().unwrap()
}

/// 8 jobs of about half a second each.
const SLOW_JOBS: usize = 8;

fn slow_sweep(dir: &std::path::Path) -> std::path::PathBuf {
    write(dir, "slow.yaml", &TINY.replace("seed: [0, 1]", "seed: [0, 1, 2, 3]").replace("steps: 20", "steps: 200").replace("width: 8", "width: 32"))
}

#[test]
fn sigterm_stops_cleanly_and_a_rerun_finishes_only_the_missing_jobs() {
    let tmp = tempfile::tempdir().unwrap();
    let sweep = slow_sweep(tmp.path());
    let out = tmp.path().join("res");
    let args = ["run", sweep.to_str().unwrap(), "--out", out.to_str().unwrap(), "--max-batch", "1", "-q"];
    let status = interrupt(Command::new(bin()).env(WAIT_POLICY.0, WAIT_POLICY.1).args(args), &out, 1, libc::SIGTERM);
    assert_eq!(status.code(), Some(3), "interrupted runs exit 3");
    assert!(temp_files(&out).is_empty(), "partial files left: {:?}", temp_files(&out));
    let kept = job_files(&out).len();
    assert!(kept >= 1 && kept < SLOW_JOBS, "{kept} files after SIGTERM");
    py_check("check_contract.py", &[out.to_str().unwrap(), "--expect-status", "done"]);
    let o = ntksweep(&args);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains(&format!("{kept} already finished, {} to run", SLOW_JOBS - kept)), "{}", text(&o));
    assert_eq!(job_files(&out).len(), SLOW_JOBS);
    py_check("check_contract.py", &[out.to_str().unwrap(), "--expect-status", "done"]);
}

#[test]
fn sigkill_leaves_no_final_partial_file_and_a_rerun_completes() {
    let tmp = tempfile::tempdir().unwrap();
    let sweep = slow_sweep(tmp.path());
    let out = tmp.path().join("res");
    let args = ["run", sweep.to_str().unwrap(), "--out", out.to_str().unwrap(), "--max-batch", "1", "-q"];
    let status = interrupt(Command::new(bin()).env(WAIT_POLICY.0, WAIT_POLICY.1).args(args), &out, 2, libc::SIGKILL);
    assert!(!status.success());
    // Whatever is under a final name opens and is on contract.
    py_check("check_contract.py", &[out.to_str().unwrap(), "--expect-status", "done"]);
    let kept = job_files(&out).len();
    let o = ntksweep(&args);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains(&format!("{kept} already finished")), "{}", text(&o));
    assert!(temp_files(&out).is_empty());
    py_check("check_contract.py", &[out.to_str().unwrap(), "--expect-status", "done"]);
}

#[test]
fn sigterm_to_mpirun_stops_every_rank_and_the_rerun_resumes() {
    if !need_mpirun() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let sweep = slow_sweep(tmp.path());
    let out = tmp.path().join("res");
    let mut cmd = Command::new(mpirun().unwrap());
    cmd.env(WAIT_POLICY.0, WAIT_POLICY.1);
    cmd.args(["-n", "2", "--oversubscribe", bin(), "run", sweep.to_str().unwrap(), "--out", out.to_str().unwrap(), "--max-batch", "1", "-q"])
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1");
    let status = interrupt(&mut cmd, &out, 1, libc::SIGTERM);
    assert!(!status.success(), "interrupted mpirun must exit non-zero");
    assert!(temp_files(&out).is_empty() || job_files(&out).len() < SLOW_JOBS);
    py_check("check_contract.py", &[out.to_str().unwrap(), "--expect-status", "done"]);
    let kept = job_files(&out).len();
    let o = mpi_ntksweep(2, &["run", sweep.to_str().unwrap(), "--out", out.to_str().unwrap(), "--max-batch", "1"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains(&format!("{kept} already finished")), "{}", text(&o));
    assert_eq!(job_files(&out).len(), SLOW_JOBS);
}

fn all_logs(out: &std::path::Path) -> String {
    std::fs::read_dir(out.join("logs")).map(|rd| rd.flatten().map(|e| std::fs::read_to_string(e.path()).unwrap_or_default()).collect()).unwrap_or_default()
}

/// Spawn `cmd`, wait until the logs hold `n` lines with `needle`, let it train a little, send
/// SIGUSR1 to the launcher (mpirun forwards it to every rank) and return the exit status.
fn interrupt_after(cmd: &mut Command, out: &std::path::Path, needle: &str, n: usize) -> std::process::ExitStatus {
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let t0 = Instant::now();
    while all_logs(out).matches(needle).count() < n {
        assert!(t0.elapsed() < Duration::from_secs(300), "no progress:\n{}", all_logs(out));
        if let Some(s) = child.try_wait().unwrap() {
            panic!("finished ({s}) before it could be interrupted:\n{}", all_logs(out));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(700));
    unsafe { libc::kill(child.id() as i32, libc::SIGUSR1) };
    child.wait().unwrap()
}

fn mpirun_cmd(n: usize, args: &[&str]) -> Command {
    let mut cmd = Command::new(mpirun().unwrap());
    cmd.args(["-n", &n.to_string(), "--oversubscribe", bin()])
        .args(args)
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("NTKSWEEP_PROGRESS_SECONDS", "0")
        .env(WAIT_POLICY.0, WAIT_POLICY.1);
    cmd
}

/// Two batches trained by two ranks at once, stopped by SIGUSR1 to mpirun (both save), then
/// resumed by a single process that finishes one and is stopped in the other (rank 0 picks up
/// the batch rank 1 saved), then finished by `mpirun -n 2`: the files equal an uninterrupted
/// run bit for bit.
#[test]
fn batches_stopped_under_mpirun_resume_on_other_ranks_bit_for_bit() {
    if !need_mpirun() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let long = TINY
        .replace("width: 8, depth: 2", "width: 32, depth: 2")
        .replace("steps: 20, log_every: 5", "steps: 1500, log_every: 10, lr: 1.0e-2, lbfgs: {steps: 10}")
        .replace("residual: {points: 16}", "residual: {points: 24, resample: true}")
        .replace("ntk: {every: 10}", "ntk: {every: 250}");
    let sweep = write(tmp.path(), "long.yaml", &long);
    let whole = tmp.path().join("whole");
    let o = ntksweep(&["run", sweep.to_str().unwrap(), "--out", whole.to_str().unwrap(), "--max-batch", "2", "-q"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = tmp.path().join("res");
    let args = ["run", sweep.to_str().unwrap(), "--out", out.to_str().unwrap(), "--max-batch", "2", "-q"];
    let status = interrupt_after(&mut mpirun_cmd(2, &args), &out, "batch of 2 start", 2);
    assert!(!status.success());
    let saved = std::fs::read_dir(out.join("checkpoints")).unwrap().count();
    assert_eq!(saved, 2, "both ranks saved their batch:\n{}", all_logs(&out));
    let mut single = Command::new(bin());
    single.args(args).env(WAIT_POLICY.0, WAIT_POLICY.1);
    // Stopped once it finished one batch and resumed the other (the one rank 1 saved).
    let status = interrupt_after(&mut single, &out, "batch of 2 start", 4);
    assert_eq!(status.code(), Some(3), "{}", all_logs(&out));
    let o = mpi_ntksweep(2, &args);
    assert!(o.status.success(), "{}", text(&o));
    let logs = all_logs(&out);
    // A resume line of rank r names the rank that wrote the checkpoint.
    let moved = logs.lines().filter(|l| l.contains("resuming from checkpoint")).any(|l| {
        let reader = l.split(" rank ").nth(1).and_then(|r| r.split(':').next()).unwrap();
        let writer = l.rsplit(" rank ").next().unwrap().trim();
        reader != writer
    });
    assert!(moved, "no batch was resumed by another rank than the one that saved it:\n{logs}");
    assert!(std::fs::read_dir(out.join("checkpoints")).unwrap().count() == 0);
    let t = py_check("compare_results.py", &[whole.to_str().unwrap(), out.to_str().unwrap(), "--rtol", "0", "--attrs"]);
    assert!(t.contains("4 jobs compared; largest relative difference 0.000e+00"), "{t}");
}

/// Under mpirun a job that cannot fit in memory fails with its reason on whichever rank gets
/// it; no rank dies, the other jobs finish, the exit code is 1.
#[test]
fn a_job_that_cannot_fit_fails_under_mpirun_and_the_ranks_go_on() {
    if !need_mpirun() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let sweep = write(tmp.path(), "wide.yaml", &TINY.replace("seed: [0, 1]", "seed: [0, 1]\n  width: [8, 1000000]"));
    let out = tmp.path().join("res");
    let o = mpi_ntksweep(2, &["run", sweep.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("4 done, 4 failed or diverged, 0 pending"), "{}", text(&o));
    let failed = text(&o).matches("(needs about ").count();
    assert_eq!(failed, 4, "{}", text(&o));
    py_check("check_contract.py", &[out.to_str().unwrap()]);
}
