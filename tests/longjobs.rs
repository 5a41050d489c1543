//! Long jobs: checkpoints that survive signals and kills, claims that let several processes
//! share one results folder, and the memory guard. All through the real binary (one process
//! here; the MPI variants are in tests/mpi.rs).

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// 4 darcy jobs in 2 batches of 2 (--max-batch 2), float64, resampled points, NTK snapshots
/// and an L-BFGS phase: a few seconds per batch on 2 cores, long enough to be interrupted.
const LONG: &str = "\
name: long
problem: {kind: darcy1d, eps: 0.5}
model: {width: 32, depth: 2, dtype: float64}
training: {steps: 1200, log_every: 10, lr: 1.0e-2, lbfgs: {steps: 20}}
collocation: {residual: {points: 24, resample: true}}
ntk: {every: 200}
evaluation: {points: 40}
balancer: {kind: relobralo, rho: 0.5}
sweep:
  eps: [0.5, 0.25]
  seed: [0, 1]
";

fn log_text(out: &Path) -> String {
    std::fs::read_dir(out.join("logs")).map(|rd| rd.flatten().map(|e| std::fs::read_to_string(e.path()).unwrap_or_default()).collect()).unwrap_or_default()
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

fn spawn(args: &[&str], env: &[(&str, &str)]) -> Child {
    let mut cmd = Command::new(bin());
    cmd.args(args).env("NTKSWEEP_PROGRESS_SECONDS", "0").env(WAIT_POLICY.0, WAIT_POLICY.1).stdout(Stdio::null()).stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn ntksweep")
}

/// Wait until the folder's logs hold `n` occurrences of `needle` (the child must still run).
fn wait_for_log(child: &mut Child, out: &Path, needle: &str, n: usize) {
    let t0 = Instant::now();
    while count(&log_text(out), needle) < n {
        assert!(t0.elapsed() < Duration::from_secs(300), "no `{needle}` in the logs:\n{}", log_text(out));
        if let Some(s) = child.try_wait().unwrap() {
            panic!("finished ({s}) before `{needle}` x{n}:\n{}", log_text(out));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn checkpoints(out: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(out.join("checkpoints"))
        .map(|rd| rd.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "h5") && !p.file_name().unwrap().to_string_lossy().starts_with('.')).collect())
        .unwrap_or_default()
}

fn compare(a: &Path, b: &Path, jobs: usize) {
    let t = py_check("compare_results.py", &[a.to_str().unwrap(), b.to_str().unwrap(), "--rtol", "0", "--attrs"]);
    assert!(t.contains(&format!("{jobs} jobs compared; largest relative difference 0.000e+00")), "{t}");
}

/// The acceptance check in small: a run interrupted by SIGUSR1 three times in the
/// middle of a batch (each time: state saved, exit 3, `status` lists the batch and its step)
/// and resumed writes job files identical to an uninterrupted run, every dataset and attribute
/// but the provenance (wall time, host, pid, rank). The network has every scheme whose state
/// a checkpoint must carry or rebuild: trained layerwise slopes (saved with the weights, in
/// Adam's moments and the L-BFGS vectors) and Fourier features (rebuilt from the seeds).
#[test]
fn three_sigusr1_interrupts_and_resumes_give_the_files_of_an_uninterrupted_run() {
    let tmp = tempfile::tempdir().unwrap();
    let schemes = "dtype: float64, activation: sin, adaptive_activation: layerwise, fourier: {features: 4, sigma: 1}}";
    let text_in = LONG.replacen("dtype: float64}", schemes, 1);
    assert_ne!(text_in, LONG);
    interrupted_three_times_equals_uninterrupted(tmp.path(), &text_in);
}

/// The same with the loss-term schemes whose state a checkpoint must carry: importance
/// sampling (each term's points, f/q weights and random stream, redrawn every 7 steps), exact
/// Dirichlet conditions and gradient-enhanced residuals (trained by autograd).
#[test]
fn three_sigusr1_interrupts_and_resumes_with_importance_sampling_exact_conditions_and_gradient_enhancement() {
    let tmp = tempfile::tempdir().unwrap();
    let text_in = LONG
        .replacen("dtype: float64}", "dtype: float64, exact_bc: true}\nloss: {gradient_enhanced: {weight: 0.1}}", 1)
        .replacen("{points: 24, resample: true}", "{points: 24, sampling: importance, pool: 96, every: 7}", 1)
        .replacen("steps: 1200", "steps: 600", 1);
    assert_eq!(text_in.matches("importance").count() + text_in.matches("exact_bc").count(), 2);
    interrupted_three_times_equals_uninterrupted(tmp.path(), &text_in);
}

/// Run `text_in` whole, then interrupted by SIGUSR1 three times and resumed; the job files
/// must be identical.
fn interrupted_three_times_equals_uninterrupted(dir: &Path, text_in: &str) {
    let sweep = write(dir, "long.yaml", text_in);
    let whole = dir.join("whole");
    let o = ntksweep(&["run", sweep.to_str().unwrap(), "--out", whole.to_str().unwrap(), "--max-batch", "2", "-q"]);
    assert!(o.status.success(), "{}", text(&o));

    let out = dir.join("res");
    let args = ["run", sweep.to_str().unwrap(), "--out", out.to_str().unwrap(), "--max-batch", "2", "-q"];
    for i in 1..=3 {
        let mut child = spawn(&args, &[]);
        // Mid-batch: some steps after a batch started (or resumed) in this run.
        wait_for_log(&mut child, &out, "batch of 2 start", i);
        std::thread::sleep(Duration::from_millis(700));
        unsafe { libc::kill(child.id() as i32, libc::SIGUSR1) };
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(3), "interrupt {i}: exit code\n{}", log_text(&out));
        assert_eq!(checkpoints(&out).len(), 1, "interrupt {i}: one batch saved\n{}", log_text(&out));
        assert!(temp_files(&out).is_empty(), "{:?}", temp_files(&out));
        let st = ntksweep(&["status", out.to_str().unwrap()]);
        let st_text = text(&st);
        assert!(st_text.contains("checkpointed batches: 1") && st_text.contains("step "), "interrupt {i}: status\n{st_text}");
    }
    assert_eq!(count(&log_text(&out), "resuming from checkpoint"), 2, "{}", log_text(&out));
    let o = ntksweep(&args);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("1 batch(es) resume from checkpoints"), "{}", text(&o));
    assert_eq!(count(&log_text(&out), "resuming from checkpoint"), 3, "{}", log_text(&out));
    assert!(checkpoints(&out).is_empty(), "checkpoints are removed once the job files are written");
    py_check("check_contract.py", &[out.to_str().unwrap(), "--expect-status", "done"]);
    compare(&whole, &out, 4);
}

/// SIGKILL leaves its claims behind: the next run on the same host sees the dead pid, takes
/// the claims over at once and resumes from the last periodic checkpoint, bit for bit.
#[test]
fn a_killed_run_is_taken_over_and_resumed_from_its_periodic_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let sweep = write(tmp.path(), "long.yaml", LONG);
    let whole = tmp.path().join("whole");
    let o = ntksweep(&["run", sweep.to_str().unwrap(), "--out", whole.to_str().unwrap(), "--max-batch", "4", "-q"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = tmp.path().join("res");
    // A checkpoint every 0.6 s of wall time.
    let args = ["run", sweep.to_str().unwrap(), "--out", out.to_str().unwrap(), "--max-batch", "4", "-q", "--checkpoint-every", "0.01"];
    let mut child = spawn(&args, &[]);
    wait_for_log(&mut child, &out, "checkpoint at step", 2);
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
    assert_eq!(std::fs::read_dir(out.join("claims")).unwrap().count(), 4, "a killed process leaves its claims");
    let o = ntksweep(&args);
    assert!(o.status.success(), "{}", text(&o));
    let logs = log_text(&out);
    assert_eq!(count(&logs, "took over the stale claim"), 4, "{logs}");
    assert_eq!(count(&logs, "resuming from checkpoint"), 1, "{logs}");
    compare(&whole, &out, 4);
}

/// Two `ntksweep run` on one results folder at the same time divide the batches: every job
/// is trained and written exactly once, and both processes end with exit code 0.
#[test]
fn two_runs_on_one_folder_train_every_job_exactly_once() {
    let tmp = tempfile::tempdir().unwrap();
    let sweep = write(tmp.path(), "eight.yaml", &TINY.replace("seed: [0, 1]", "seed: [0, 1, 2, 3]").replace("steps: 20", "steps: 300"));
    let out = tmp.path().join("res");
    let args = ["run", sweep.to_str().unwrap(), "--out", out.to_str().unwrap(), "--max-batch", "1", "-q"];
    let mut a = spawn(&args, &[]);
    let mut b = spawn(&args, &[]);
    assert_eq!(a.wait().unwrap().code(), Some(0), "{}", log_text(&out));
    assert_eq!(b.wait().unwrap().code(), Some(0), "{}", log_text(&out));
    let logs = log_text(&out);
    let mut trained = std::collections::BTreeMap::<String, Vec<String>>::new();
    for l in logs.lines().filter(|l| l.contains(": job ")) {
        let pid = l.split(" pid ").nth(1).unwrap().split_whitespace().next().unwrap().to_string();
        let id = l.split(": job ").nth(1).unwrap().split_whitespace().next().unwrap().to_string();
        trained.entry(id).or_default().push(pid);
    }
    assert_eq!(trained.len(), 8, "{logs}");
    assert!(trained.values().all(|p| p.len() == 1), "a job trained twice: {trained:?}\n{logs}");
    let pids: std::collections::BTreeSet<&String> = trained.values().flatten().collect();
    assert_eq!(pids.len(), 2, "both processes trained: {trained:?}");
    assert!(count(&logs, "skipped (job") > 0, "one process skipped batches the other held:\n{logs}");
    assert!(std::fs::read_dir(out.join("claims")).unwrap().count() == 0, "claims released");
    py_check("check_contract.py", &[out.to_str().unwrap(), "--expect-status", "done"]);
    // Every file says which process trained it.
    let t = Command::new(python())
        .args(["-c", "import h5py,glob,sys; print(sorted({int(h5py.File(f)['/'].attrs['pid']) for f in glob.glob(sys.argv[1] + '/jobs/*.h5')}))", out.to_str().unwrap()])
        .output()
        .unwrap();
    let want: Vec<String> = pids.iter().map(|p| p.to_string()).collect();
    assert_eq!(String::from_utf8_lossy(&t.stdout).trim(), format!("[{}]", want.join(", ")), "{}", text(&t));
}

/// A claim of a live process on another host (fresh heartbeat) is respected: its job is left
/// alone (pending, "being trained by other processes", exit 0); once its heartbeat is older
/// than --claim-timeout it is taken over.
#[test]
fn a_claim_with_a_fresh_heartbeat_is_respected_and_an_old_one_taken_over() {
    let tmp = tempfile::tempdir().unwrap();
    let sweep = write(tmp.path(), "tiny.yaml", TINY);
    let out = tmp.path().join("res");
    let o = ntksweep(&["plan", sweep.to_str().unwrap()]);
    let first_id = text(&o).lines().nth(2).unwrap().split_whitespace().nth(1).unwrap().to_string();
    std::fs::create_dir_all(out.join("claims")).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let claim = format!("host=elsewhere\npid=1\nrank=0\nstarted={now:.3}\nheartbeat={:.3}\nbatch=x\n", now - 30.0);
    std::fs::write(out.join("claims").join(&first_id), claim).unwrap();
    let args = ["run", sweep.to_str().unwrap(), "--out", out.to_str().unwrap(), "--max-batch", "1"];
    let o = ntksweep(&args);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("1 pending job(s) are being trained by other processes"), "{}", text(&o));
    assert!(text(&o).contains("3 done, 0 failed or diverged, 0 pending, 1 being trained by other processes"), "{}", text(&o));
    assert_eq!(job_files(&out).len(), 3);
    // 30 s of silence is more than a 0.25-minute timeout.
    let mut late = args.to_vec();
    late.extend(["--claim-timeout", "0.25"]);
    let o = ntksweep(&late);
    assert!(o.status.success(), "{}", text(&o));
    assert!(log_text(&out).contains(&format!("took over the stale claim of job {first_id} from host elsewhere pid 1")), "{}", log_text(&out));
    assert_eq!(job_files(&out).len(), 4);
}

/// `model.width: 1000000` would need terabytes: that job is written as failed with the reason,
/// without being started; the others finish; exit code 1. `plan` marks it. With the guard out
/// of the way (NTKSWEEP_MEMORY_GB), the allocation fails inside libtorch: still a failed job,
/// not a dead process.
#[test]
fn a_job_that_cannot_fit_fails_with_the_reason_and_the_rest_finish() {
    let tmp = tempfile::tempdir().unwrap();
    let sweep = write(tmp.path(), "wide.yaml", &TINY.replace("seed: [0, 1]", "seed: [0, 1]\n  width: [8, 1000000]"));
    let o = ntksweep(&["plan", sweep.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(text(&o).lines().filter(|l| l.ends_with("  over")).count(), 4, "{}", text(&o));
    assert!(text(&o).contains("4 job(s) marked `over` need more memory than the budget"), "{}", text(&o));
    let out = tmp.path().join("res");
    let o = ntksweep(&["run", sweep.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let t = py_check("check_contract.py", &[out.to_str().unwrap()]);
    let status = |expect: &str| {
        Command::new(python())
            .args(["-c", &format!("import h5py,glob,sys\nfor f in sorted(glob.glob(sys.argv[1] + '/jobs/*.h5')):\n  h = h5py.File(f)\n  if h.attrs['width'] == 1000000: print(h.attrs['status'], h.attrs['message'])\n  else: assert h.attrs['status'] == '{expect}', f"), out.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let s = status("done");
    let lines = String::from_utf8_lossy(&s.stdout).to_string();
    assert!(s.status.success(), "{t}{}", text(&s));
    assert_eq!(lines.lines().count(), 4, "{lines}");
    for l in lines.lines() {
        assert!(l.starts_with("failed needs about ") && l.contains(" GB, the budget is ") && l.ends_with(" GB on cpu; lower model.width, collocation or ntk.points"), "{l}");
    }
    // Past the guard: libtorch's allocator refuses (8 TB for one layer), the job fails.
    let out2 = tmp.path().join("res2");
    let o = ntksweep_with(&["run", sweep.to_str().unwrap(), "--out", out2.to_str().unwrap(), "--set", "sweep.seed=[0]", "--set", "eps=0.5"], &[("NTKSWEEP_MEMORY_GB", "1e9")]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("can't allocate memory"), "{}", text(&o));
    assert!(text(&o).contains("1 done, 1 failed or diverged"), "{}", text(&o));
    let o = ntksweep_with(&["run", sweep.to_str().unwrap(), "--out", out2.to_str().unwrap()], &[("NTKSWEEP_MEMORY_GB", "lots")]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}
