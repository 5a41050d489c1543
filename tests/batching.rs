//! Batched training ("members") is exact: jobs trained together as one batched network give
//! the same per-job files as the same jobs trained alone, and resume works per job.

mod common;

use common::*;

/// 4 jobs with different seeds and eps (and a balancer that adapts), float64 on the CPU:
/// losses, weights, NTK norms and spectra, final errors and parameters equal the unbatched
/// run to 1e-10 relative.
#[test]
fn batch_of_four_equals_the_same_jobs_run_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let text_in = TINY.replace("ntk: {every: 10}", "ntk: {every: 10}\nbalancer: {kind: grad_stats, every: 5}");
    let sweep = write(tmp.path(), "tiny.yaml", &text_in);
    let (batched, alone) = (tmp.path().join("batched"), tmp.path().join("alone"));
    let o = ntksweep(&["run", sweep.to_str().unwrap(), "--out", batched.to_str().unwrap(), "--max-batch", "4"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("4 to run in 1 batch(es)"), "{}", text(&o));
    let o = ntksweep(&["run", sweep.to_str().unwrap(), "--out", alone.to_str().unwrap(), "--max-batch", "1"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("4 to run in 4 batch(es)"), "{}", text(&o));
    py_check("check_contract.py", &[batched.to_str().unwrap(), "--expect-status", "done"]);
    let t = py_check("compare_results.py", &[alone.to_str().unwrap(), batched.to_str().unwrap(), "--rtol", "1e-10"]);
    assert!(t.contains("4 jobs compared"), "{t}");
}

/// A batch whose members are partly done trains only the rest.
#[test]
fn resume_inside_a_batch_trains_only_the_missing_members() {
    let tmp = tempfile::tempdir().unwrap();
    let sweep = write(tmp.path(), "tiny.yaml", TINY);
    let out = tmp.path().join("res");
    let o = ntksweep(&["run", sweep.to_str().unwrap(), "--out", out.to_str().unwrap(), "--max-batch", "4"]);
    assert!(o.status.success());
    let files = job_files(&out);
    let kept: Vec<_> = files.iter().map(|f| (f.clone(), std::fs::read(f).unwrap())).collect();
    std::fs::remove_file(&files[1]).unwrap();
    std::fs::remove_file(&files[3]).unwrap();
    let o = ntksweep(&["run", sweep.to_str().unwrap(), "--out", out.to_str().unwrap(), "--max-batch", "4"]);
    assert!(o.status.success());
    assert!(text(&o).contains("2 already finished, 2 to run in 1 batch(es)"), "{}", text(&o));
    for (i, (f, bytes)) in kept.iter().enumerate() {
        if i == 0 || i == 2 {
            assert_eq!(&std::fs::read(f).unwrap(), bytes, "a finished member was rewritten");
        }
    }
    assert_eq!(job_files(&out).len(), 4);
}

/// The hand-written reverse pass (default) and autograd through the whole network
/// (`NTKSWEEP_REVERSE=autograd`) write the same job files (float64, 1e-9 relative), and a
/// wrong value of the variable is refused before anything is written.
#[test]
fn hand_written_reverse_pass_writes_what_autograd_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let sweep = write(tmp.path(), "tiny.yaml", &TINY.replace("ntk: {every: 10}", "ntk: {every: 10}\nbalancer: relobralo"));
    let (tape, autograd) = (tmp.path().join("tape"), tmp.path().join("autograd"));
    let run = |out: &std::path::Path, reverse: &str| ntksweep_with(&["run", sweep.to_str().unwrap(), "--out", out.to_str().unwrap()], &[("NTKSWEEP_REVERSE", reverse)]);
    let o = run(&tape, "tape");
    assert!(o.status.success(), "{}", text(&o));
    assert!(!text(&o).contains("NTKSWEEP_REVERSE=autograd"), "{}", text(&o));
    let o = run(&autograd, "autograd");
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("NTKSWEEP_REVERSE=autograd"), "{}", text(&o));
    let t = py_check("compare_results.py", &[tape.to_str().unwrap(), autograd.to_str().unwrap(), "--rtol", "1e-9"]);
    assert!(t.contains("4 jobs compared"), "{t}");
    let bad = tmp.path().join("bad");
    let o = run(&bad, "reverse");
    assert_eq!(o.status.code(), Some(2), "bad input exits 2: {}", text(&o));
    assert!(text(&o).contains("NTKSWEEP_REVERSE=reverse: expected `tape` (the default) or `autograd`"), "{}", text(&o));
    assert!(!bad.exists(), "a refused run wrote {}", bad.display());
}
