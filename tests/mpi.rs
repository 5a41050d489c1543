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
