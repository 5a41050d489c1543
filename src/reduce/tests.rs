//! End-to-end tests of `reduce`: synthetic job files in a temporary directory, expected numbers
//! computed independently in the test (closed-form sums, by-hand arithmetic in comments).

use std::path::Path;

use hdf5::types::VarLenUnicode;
use ndarray::{array, Array2};

use super::*;

/// Two-sided 95% Student t quantiles, from scipy:
/// `python -c "import scipy.stats as s; print(s.t.ppf(0.975, 18), s.t.ppf(0.975, 2))"`.
const T_975_DF18: f64 = 2.100_922_040_241_038_2;
const T_975_DF2: f64 = 4.302_652_729_749_462;

fn jobs_dir(dir: &Path) -> std::path::PathBuf {
    let jobs = dir.join("jobs");
    std::fs::create_dir_all(&jobs).unwrap();
    jobs
}

fn write(dir: &Path, job: &SyntheticJob) {
    write_synthetic_job(&jobs_dir(dir).join(format!("{}.h5", job.job_id)), job).unwrap();
}

fn grid(m: usize) -> Array2<f64> {
    Array2::from_shape_fn((m, 1), |(i, _)| i as f64 / (m - 1) as f64)
}

/// A finished darcy1d job at width 50 with one NTK snapshot at step 0.
fn done_job(id: &str, eps: f64, seed: i64, residual: f64, full: f64) -> SyntheticJob {
    let mut job = SyntheticJob::done(id, "darcy1d", eps, 50, seed);
    job.steps = vec![0];
    job.frobenius = vec![
        ("residual".to_owned(), vec![residual]),
        ("full".to_owned(), vec![full]),
        ("boundary".to_owned(), vec![1.5]),
    ];
    job.eval = Some(SyntheticEval { x: grid(5), error: vec![0.0; 5], rel_l2: 0.1 });
    job
}

/// Closed-form OLS of y on x, written independently of `stats::fit_power_law`:
/// slope = (n Sxy - Sx Sy) / (n Sxx - Sx^2), SE^2 = SSE / (n - 2) / (Sxx - Sx^2 / n).
fn ols_by_hand(x: &[f64], y: &[f64]) -> (f64, f64, f64) {
    let n = x.len() as f64;
    let (sx, sy) = (x.iter().sum::<f64>(), y.iter().sum::<f64>());
    let sxx: f64 = x.iter().map(|v| v * v).sum();
    let sxy: f64 = x.iter().zip(y).map(|(a, b)| a * b).sum();
    let slope = (n * sxy - sx * sy) / (n * sxx - sx * sx);
    let intercept = (sy - slope * sx) / n;
    let sse: f64 = x.iter().zip(y).map(|(a, b)| (b - intercept - slope * a).powi(2)).sum();
    let se = (sse / (n - 2.0) / (sxx - sx * sx / n)).sqrt();
    let ybar = sy / n;
    let sst: f64 = y.iter().map(|b| (b - ybar).powi(2)).sum();
    (slope, se, 1.0 - sse / sst)
}

#[test]
fn scaling_exponent_matches_closed_form_ols() {
    let dir = tempfile::tempdir().unwrap();
    let c = 3.7;
    let mut lx = Vec::new();
    let mut ly = Vec::new();
    for k in 1..=5 {
        let eps = 0.5f64.powi(k);
        for seed in 0..4 {
            // Known noise: 1 + delta with delta in {-0.02, ..., 0.02}.
            let delta = 0.01 * (((k * 4 + seed as i32) * 37 % 5) as f64 - 2.0);
            let res = c * eps.powi(-2) * (1.0 + delta);
            write(dir.path(), &done_job(&format!("j{k}{seed}"), eps, seed, res, c * eps.powi(-2)));
            lx.push(eps.ln());
            ly.push(res.ln());
        }
    }
    let r = reduce(dir.path(), &ReduceOptions::default()).unwrap();
    assert_eq!(r.counts.done, 20);

    let res = r.groups.scaling.iter().find(|s| s.term == "residual").unwrap();
    assert_eq!(res.key, "darcy1d_w50_none_none_residual_s0");
    let (slope, se, r2) = ols_by_hand(&lx, &ly);
    assert!((res.fit.exponent - slope).abs() < 1e-10, "{} vs {slope}", res.fit.exponent);
    assert!((res.fit.ci_low - (slope - T_975_DF18 * se)).abs() < 1e-9);
    assert!((res.fit.ci_high - (slope + T_975_DF18 * se)).abs() < 1e-9);
    assert!((res.fit.r_squared - r2).abs() < 1e-10);
    assert_eq!(res.fit.n, 20);
    assert!(res.fit.ci_low < -2.0 + 0.1 && res.fit.ci_high > -2.0 - 0.1);
    assert_eq!(res.theory_exponent, Some(-2.0));
    // lambda_k = ||K||_F^(1/k) in the synthetic files: ln lambda_k = ln ||K||_F / k, so the
    // k-th eigenvalue's slope and interval are the norm's over k; `full` has no spectrum.
    assert_eq!(res.eigenvalue_fits.len(), 3);
    for (k, f) in res.eigenvalue_fits.iter().enumerate() {
        let k = (k + 1) as f64;
        assert!((f.exponent - slope / k).abs() < 1e-10 && (f.ci_low - res.fit.ci_low / k).abs() < 1e-9, "{f:?}");
    }
    let full = r.groups.scaling.iter().find(|s| s.term == "full").unwrap();
    assert!(full.eigenvalue_fits.is_empty());
    assert!(r.report_markdown().contains(&format!("; {:.3}, {:.3}", slope / 2.0, slope / 3.0)));
    // Per-eps mean and sample std of the four trials at eps = 1/2 (k = 1).
    let at_half: Vec<f64> = (0..4)
        .map(|seed| {
            let delta = 0.01 * (((4 + seed) * 37 % 5) as f64 - 2.0);
            c * 4.0 * (1.0 + delta)
        })
        .collect();
    let last = res.eps.len() - 1;
    assert_eq!(res.eps[last], 0.5);
    let mean = at_half.iter().sum::<f64>() / 4.0;
    let var = at_half.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 3.0;
    assert!((res.frobenius_mean[last] - mean).abs() < 1e-12);
    assert!((res.frobenius_std[last] - var.sqrt()).abs() < 1e-12);
    assert_eq!(res.n_per_eps, vec![4; 5]);

    // Exactly C eps^-2: exponent -2 to 1e-12, r^2 = 1.
    let full = r.groups.scaling.iter().find(|s| s.term == "full").unwrap();
    assert!((full.fit.exponent + 2.0).abs() < 1e-12, "{}", full.fit.exponent);
    assert!((full.fit.r_squared - 1.0).abs() < 1e-12);
    assert_eq!(full.theory_exponent, None);
    // Constant boundary norm: exponent 0, SST = 0 so r^2 is undefined (NaN).
    let boundary = r.groups.scaling.iter().find(|s| s.term == "boundary").unwrap();
    assert!(boundary.fit.exponent.abs() < 1e-12);
    assert!(boundary.fit.r_squared.is_nan());

    let report = r.report_markdown();
    assert!(report.contains("| darcy1d"), "{report}");
    assert!(report.contains(&format!("{:.3} [", slope)), "{report}");
}

#[test]
fn too_few_trials_or_eps_give_nan_fit() {
    let dir = tempfile::tempdir().unwrap();
    // Two trials only.
    write(dir.path(), &done_job("a", 0.5, 0, 4.0, 4.0));
    write(dir.path(), &done_job("b", 0.25, 0, 16.0, 16.0));
    let r = reduce(dir.path(), &ReduceOptions::default()).unwrap();
    let s = &r.groups.scaling[0];
    assert_eq!(s.fit.n, 2);
    assert!(s.fit.exponent.is_nan() && s.fit.ci_low.is_nan() && s.fit.r_squared.is_nan());
    assert!(r.report_markdown().contains("n/a"));
    // Three trials, one eps.
    write(dir.path(), &done_job("c", 0.5, 1, 4.1, 4.0));
    std::fs::remove_file(dir.path().join("jobs/b.h5")).unwrap();
    write(dir.path(), &done_job("d", 0.5, 2, 4.2, 4.0));
    let r = reduce(dir.path(), &ReduceOptions::default()).unwrap();
    assert_eq!(r.groups.scaling[0].fit.n, 3);
    assert!(r.groups.scaling[0].fit.exponent.is_nan());
}

#[test]
fn trial_statistics_match_hand_values() {
    let dir = tempfile::tempdir().unwrap();
    let x = array![[0.0], [0.5], [1.0]];
    let errors = [[1.0, 2.0, 3.0], [3.0, 2.0, 1.0], [2.0, 5.0, -1.0]];
    let rel = [0.1, 0.2, 0.3];
    for (seed, (e, r)) in errors.iter().zip(rel).enumerate() {
        let mut job = done_job(&format!("t{seed}"), 0.125, seed as i64, 64.0, 64.0);
        job.eval = Some(SyntheticEval { x: x.clone(), error: e.to_vec(), rel_l2: r });
        write(dir.path(), &job);
    }
    // A lone trial at another eps.
    let mut lone = done_job("u0", 0.25, 0, 16.0, 16.0);
    lone.eval = Some(SyntheticEval { x: x.clone(), error: vec![0.5, -1.0, 0.25], rel_l2: 0.4 });
    write(dir.path(), &lone);

    let r = reduce(dir.path(), &ReduceOptions::default()).unwrap();
    assert_eq!(r.groups.trials.len(), 2);
    // Sorted by eps descending: 0.25 first.
    let (single, t) = (&r.groups.trials[0], &r.groups.trials[1]);
    assert_eq!(t.key, "darcy1d_eps0.125_w50_none_none");
    assert_eq!(t.n_trials, 3);
    // mean = [2, 3, 1]; variance (ddof 1): [(1+1+0)/2, (1+1+4)/2, (4+0+4)/2] = [1, 3, 4].
    let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
    assert!(t.mean_error.iter().zip([2.0, 3.0, 1.0]).all(|(a, b)| close(*a, b)), "{t:?}");
    assert!(t.error_variance.iter().zip([1.0, 3.0, 4.0]).all(|(a, b)| close(*a, b)));
    assert!(close(t.l2_mean_error, (14.0f64 / 3.0).sqrt())); // sqrt((4+9+1)/3)
    assert!(close(t.max_boundary_error, 2.0)); // ends x=0, x=1: |2|, |1|
    assert!(close(t.l2_variance, (26.0f64 / 3.0).sqrt())); // sqrt((1+9+16)/3)
    assert!(close(t.max_boundary_variance, 4.0));
    // rel_l2: mean 0.2, s = 0.1, half = t_{0.975,2} * 0.1 / sqrt(3).
    let half = T_975_DF2 * 0.1 / 3f64.sqrt();
    assert!(close(t.rel_l2.mean, 0.2));
    assert!(close(t.rel_l2.ci_low, 0.2 - half) && close(t.rel_l2.ci_high, 0.2 + half));
    assert_eq!(t.seeds, vec![0, 1, 2]);
    assert_eq!(t.x, x);

    assert_eq!(single.n_trials, 1);
    assert_eq!(single.error_variance, vec![0.0; 3]);
    assert!(close(single.max_boundary_error, 0.5));
    assert!(single.rel_l2.ci_low.is_nan() && single.rel_l2.ci_high.is_nan());
    assert!(close(single.rel_l2.mean, 0.4));

    let report = r.report_markdown();
    assert!(report.contains("### darcy1d, width 50, balancer none, normalization none"));
    assert!(report.contains(&format!("{:.3e}", (14.0f64 / 3.0).sqrt())), "{report}");
}

#[test]
fn failed_diverged_unreadable_are_excluded_and_missing_reported() {
    let dir = tempfile::tempdir().unwrap();
    for (k, eps) in [0.5, 0.25, 0.125].iter().enumerate() {
        write(dir.path(), &done_job(&format!("ok{k}"), *eps, 0, eps.powi(-2), eps.powi(-2)));
    }
    let mut failed = SyntheticJob::done("bad1", "darcy1d", 0.5, 50, 1);
    failed.status = "failed".into();
    failed.message = "tch error: shape mismatch".into();
    write(dir.path(), &failed);
    let mut diverged = done_job("div1", 0.25, 1, f64::NAN, f64::NAN);
    diverged.status = "diverged".into();
    diverged.message = "loss is NaN at step 1234".into();
    write(dir.path(), &diverged);
    std::fs::write(jobs_dir(dir.path()).join("junk.h5"), b"not an hdf5 file").unwrap();
    // A done job missing its eval group is unreadable, with the reason.
    let mut partial = done_job("part", 0.5, 3, 4.0, 4.0);
    partial.eval = None;
    write(dir.path(), &partial);
    // A temporary file of a running job: skipped entirely.
    std::fs::write(jobs_dir(dir.path()).join(".ok9.h5.tmp.h5"), b"partial").unwrap();

    let expected: Vec<String> =
        ["ok0", "ok1", "ok2", "bad1", "div1", "junk", "part", "gone", "lost"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    let r = reduce(dir.path(), &ReduceOptions { expected_job_ids: Some(expected) }).unwrap();
    assert_eq!(
        r.counts,
        JobCounts { done: 3, failed: 1, diverged: 1, unreadable: 2, missing: Some(2) }
    );
    assert_eq!(r.missing, vec!["gone".to_string(), "lost".to_string()]);
    let kinds: Vec<(&str, ExclusionKind)> =
        r.excluded.iter().map(|e| (e.job_id.as_str(), e.kind)).collect();
    assert_eq!(
        kinds,
        vec![
            ("bad1", ExclusionKind::Failed),
            ("div1", ExclusionKind::Diverged),
            ("junk", ExclusionKind::Unreadable),
            ("part", ExclusionKind::Unreadable),
        ]
    );
    assert_eq!(r.excluded[0].message, "tch error: shape mismatch");
    assert!(r.excluded[3].message.contains("eval"), "{}", r.excluded[3].message);
    // Only the three done jobs are in the fit (exactly eps^-2).
    let res = r.groups.scaling.iter().find(|s| s.term == "residual").unwrap();
    assert_eq!(res.fit.n, 3);
    assert!((res.fit.exponent + 2.0).abs() < 1e-12);
    assert!(r.groups.trials.iter().all(|t| t.n_trials == 1));

    let report = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
    assert_eq!(report, r.report_markdown());
    assert!(report.contains("3 done, 1 failed, 1 diverged, 2 unreadable, 2 missing"), "{report}");
    assert!(report.contains("loss is NaN at step 1234"));
    assert!(report.contains("- gone"));

    let f = hdf5::File::open(dir.path().join("summary.h5")).unwrap();
    let attr = |n: &str| f.attr(n).unwrap().read_scalar::<i64>().unwrap();
    assert_eq!(
        [attr("n_done"), attr("n_failed"), attr("n_diverged"), attr("n_unreadable"), attr("n_missing")],
        [3, 1, 1, 2, 2]
    );
    let strings = |p: &str| -> Vec<String> {
        f.dataset(p).unwrap().read_raw::<VarLenUnicode>().unwrap().iter().map(|s| s.to_string()).collect()
    };
    assert_eq!(strings("excluded/job_id"), vec!["bad1", "div1", "junk", "part"]);
    assert_eq!(strings("excluded/status"), vec!["failed", "diverged", "unreadable", "unreadable"]);
    assert_eq!(strings("missing"), vec!["gone", "lost"]);
}

#[test]
fn summary_reads_back_with_contract_names_and_shapes() {
    let dir = tempfile::tempdir().unwrap();
    for (k, eps) in [0.5, 0.25, 0.125].iter().enumerate() {
        for seed in 0..2 {
            let mut job = done_job(&format!("j{k}{seed}"), *eps, seed, eps.powi(-2), eps.powi(-2));
            job.steps = vec![0, 500];
            job.frobenius = vec![
                ("residual".to_owned(), vec![eps.powi(-2), 2.0 * eps.powi(-2)]),
                ("full".to_owned(), vec![eps.powi(-2), 2.0 * eps.powi(-2)]),
            ];
            write(dir.path(), &job);
        }
    }
    let r = reduce(dir.path(), &ReduceOptions::default()).unwrap();
    assert_eq!(r.groups.scaling.len(), 4); // {full, residual} x {step 0, step 500}
    let f = hdf5::File::open(dir.path().join("summary.h5")).unwrap();
    assert_eq!(f.attr("n_missing").unwrap().read_scalar::<i64>().unwrap(), -1);
    let mut keys = f.group("scaling").unwrap().member_names().unwrap();
    keys.sort();
    assert_eq!(
        keys,
        [
            "darcy1d_w50_none_none_full_s0",
            "darcy1d_w50_none_none_full_s1",
            "darcy1d_w50_none_none_residual_s0",
            "darcy1d_w50_none_none_residual_s1",
        ]
    );
    let g = f.group("scaling/darcy1d_w50_none_none_residual_s1").unwrap();
    for name in ["eps", "frobenius_mean", "frobenius_std", "n_per_eps"] {
        assert_eq!(g.dataset(name).unwrap().shape(), vec![3], "{name}");
    }
    assert_eq!(g.dataset("eps").unwrap().read_raw::<f64>().unwrap(), vec![0.125, 0.25, 0.5]);
    let fa = |n: &str| g.attr(n).unwrap().read_scalar::<f64>().unwrap();
    assert!((fa("exponent") + 2.0).abs() < 1e-12);
    assert!(fa("exponent_ci_low") <= fa("exponent") && fa("exponent") <= fa("exponent_ci_high"));
    assert!((fa("r_squared") - 1.0).abs() < 1e-12);
    let ia = |n: &str| g.attr(n).unwrap().read_scalar::<i64>().unwrap();
    assert_eq!((ia("n_trials"), ia("step"), ia("snapshot"), ia("width")), (6, 500, 1, 50));
    let sa = |n: &str| g.attr(n).unwrap().read_scalar::<VarLenUnicode>().unwrap().to_string();
    assert_eq!(sa("term"), "residual");
    assert_eq!(sa("problem"), "darcy1d");

    let mut tkeys = f.group("trials").unwrap().member_names().unwrap();
    tkeys.sort();
    assert_eq!(
        tkeys,
        [
            "darcy1d_eps0.125_w50_none_none",
            "darcy1d_eps0.25_w50_none_none",
            "darcy1d_eps0.5_w50_none_none",
        ]
    );
    let t = f.group("trials/darcy1d_eps0.125_w50_none_none").unwrap();
    assert_eq!(t.dataset("x").unwrap().shape(), vec![5, 1]);
    assert_eq!(t.dataset("mean_error").unwrap().shape(), vec![5]);
    assert_eq!(t.dataset("error_variance").unwrap().shape(), vec![5]);
    assert_eq!(t.dataset("seeds").unwrap().read_raw::<i64>().unwrap(), vec![0, 1]);
    for name in [
        "l2_mean_error",
        "max_boundary_error",
        "l2_variance",
        "rel_l2_mean",
        "rel_l2_ci_low",
        "rel_l2_ci_high",
        "eps",
    ] {
        assert!(t.attr(name).unwrap().read_scalar::<f64>().is_ok(), "{name}");
    }
    assert_eq!(t.attr("n_trials").unwrap().read_scalar::<i64>().unwrap(), 2);
    assert_eq!(t.attr("eps").unwrap().read_scalar::<f64>().unwrap(), 0.125);
    // Nothing temporary is left behind.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn fixed_length_ascii_strings_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let mut job = done_job("fx", 0.5, 0, 4.0, 4.0);
    job.fixed_length_strings = true;
    write(dir.path(), &job);
    let r = reduce(dir.path(), &ReduceOptions::default()).unwrap();
    assert_eq!(r.counts.done, 1, "{:?}", r.excluded);
    assert_eq!(r.groups.trials[0].problem, "darcy1d");
    assert_eq!(r.groups.trials[0].balancer, "none");
}

#[test]
fn mismatched_eval_grids_name_both_files() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &done_job("a", 0.5, 0, 4.0, 4.0));
    let mut other = done_job("b", 0.5, 1, 4.0, 4.0);
    other.eval = Some(SyntheticEval { x: grid(6), error: vec![0.0; 6], rel_l2: 0.1 });
    write(dir.path(), &other);
    let err = reduce(dir.path(), &ReduceOptions::default()).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ReduceError::EvalGridMismatch { .. }));
    assert!(text.contains("a.h5") && text.contains("b.h5"), "{text}");
    assert!(!dir.path().join("summary.h5").exists());
}

#[test]
fn differing_step_lists_group_by_step_value() {
    let dir = tempfile::tempdir().unwrap();
    for (k, eps) in [0.5, 0.25, 0.125].iter().enumerate() {
        let mut job = done_job(&format!("j{k}"), *eps, 0, 1.0, 1.0);
        // The last job snapshots at 0 and 2000, the others at 0 and 1000.
        job.steps = vec![0, if k == 2 { 2000 } else { 1000 }];
        job.frobenius = vec![("residual".to_owned(), vec![eps.powi(-2), eps.powi(-2)])];
        write(dir.path(), &job);
    }
    let r = reduce(dir.path(), &ReduceOptions::default()).unwrap();
    let got: Vec<(usize, i64, usize)> =
        r.groups.scaling.iter().map(|s| (s.snapshot, s.step, s.fit.n)).collect();
    assert_eq!(got, vec![(0, 0, 3), (1, 1000, 2), (2, 2000, 1)]);
    assert!(r.warnings.iter().any(|w| w.contains("different NTK step lists")), "{:?}", r.warnings);
}

#[test]
fn pooled_seeds_are_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &done_job("a", 0.5, 0, 4.0, 4.0));
    write(dir.path(), &done_job("b", 0.5, 0, 4.0, 4.0));
    let r = reduce(dir.path(), &ReduceOptions::default()).unwrap();
    assert!(r.warnings.iter().any(|w| w.contains("seed 0 appears twice")), "{:?}", r.warnings);
    assert!(r.report_markdown().contains("## Warnings (1)"));
}

#[test]
fn missing_jobs_dir_is_an_error_with_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let err = reduce(dir.path(), &ReduceOptions::default()).unwrap_err();
    assert!(err.to_string().contains("jobs"), "{err}");
}

/// `cargo test --release --lib reduce::tests::bench_reduce_10k -- --ignored --nocapture`
/// (set NTKSWEEP_BENCH_DIR to keep the files).
#[test]
#[ignore]
fn bench_reduce_10k() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = std::env::var_os("NTKSWEEP_BENCH_DIR").map_or(tmp.path().to_path_buf(), Into::into);
    let bench = bench_reduce(10_000, &dir).unwrap();
    println!("{bench}");
    assert_eq!(bench.reduction.counts.done + bench.reduction.counts.failed, 10_000);
}

/// Times `reduce` alone over an existing directory (for profiling):
/// `NTKSWEEP_BENCH_DIR=DIR cargo test --release --lib reduce::tests::bench_reduce_existing -- --ignored --nocapture`
#[test]
#[ignore]
fn bench_reduce_existing() {
    let Some(dir) = std::env::var_os("NTKSWEEP_BENCH_DIR") else { return };
    let started = std::time::Instant::now();
    let r = reduce(Path::new(&dir), &ReduceOptions::default()).unwrap();
    println!(
        "reduce {} files: {:.3} s",
        r.counts.done + r.counts.failed + r.counts.diverged + r.counts.unreadable,
        started.elapsed().as_secs_f64()
    );
}

/// A finished darcy1d job with `training.lr` in its config; `eval/error` is zero but for one
/// point equal to `rel`, so its max abs error is `rel` too.
fn lr_job(id: &str, eps: f64, seed: i64, lr: f64, rel: f64) -> SyntheticJob {
    let mut job = done_job(id, eps, seed, eps.powi(-2), eps.powi(-2));
    job.config_extra = format!("training:\n  lr: {}\n", crate::yaml_text::float(lr));
    job.eval = Some(SyntheticEval { x: grid(5), error: vec![0.0, 0.0, rel, 0.0, 0.0], rel_l2: rel });
    job
}

/// Relative L2 errors of the three seeds at each learning rate (same at both eps).
const REL_LR_1E2: [f64; 3] = [0.30, 0.32, 0.34];
const REL_LR_1E3: [f64; 3] = [0.10, 0.11, 0.13];

#[test]
fn a_swept_setting_separates_groups_names_them_and_is_compared() {
    let dir = tempfile::tempdir().unwrap();
    let mut plan = Vec::new();
    // The plan lists lr = 0.01 first, so it is the comparisons' baseline although 0.001 < 0.01.
    for (lr, rel) in [(1e-2, REL_LR_1E2), (1e-3, REL_LR_1E3)] {
        for eps in [0.5, 0.25] {
            for seed in 0..3 {
                let id = format!("lr{lr}-{eps}-{seed}");
                write(dir.path(), &lr_job(&id, eps, seed, lr, rel[seed as usize]));
                plan.push(id);
            }
        }
    }
    let r = reduce(dir.path(), &ReduceOptions { expected_job_ids: Some(plan) }).unwrap();
    assert!(r.warnings.is_empty(), "no pooling: {:?}", r.warnings);
    assert_eq!(r.groups.trial_axes, ["eps", "training.lr"]);
    assert_eq!(r.groups.scaling_axes, ["training.lr"]);
    assert_eq!(r.groups.trials.len(), 4);
    assert!(r.groups.trials.iter().all(|t| t.n_trials == 3 && t.seeds == [0, 1, 2]));
    let keys: Vec<&str> = r.groups.trials.iter().map(|t| t.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "darcy1d_eps0.5_w50_none_none_training.lr=0.001",
            "darcy1d_eps0.25_w50_none_none_training.lr=0.001",
            "darcy1d_eps0.5_w50_none_none_training.lr=0.01",
            "darcy1d_eps0.25_w50_none_none_training.lr=0.01",
        ]
    );
    assert_eq!(r.groups.trials[0].name, "darcy1d, eps=0.5, width=50, balancer=none, normalization=none, training.lr=0.001");
    let res: Vec<&str> = r.groups.scaling.iter().filter(|s| s.term == "residual").map(|s| s.key.as_str()).collect();
    assert_eq!(res, ["darcy1d_w50_none_none_training.lr=0.001_residual_s0", "darcy1d_w50_none_none_training.lr=0.01_residual_s0"]);

    // One comparison per eps, baseline lr = 0.01 (plan order).
    assert_eq!(r.comparisons.len(), 2);
    let c = r.comparisons.iter().find(|c| c.key == "eps=0.5").unwrap();
    assert_eq!(c.axis, "training.lr");
    let values: Vec<String> = c.rows.iter().map(|row| compare::value_text(&row.value)).collect();
    assert_eq!(values, ["0.01", "0.001"]);
    // Means 0.32 and 0.11333..: change (0.11333 - 0.32) / 0.32 = -0.64583...
    let (m0, m1) = (0.32, (0.10 + 0.11 + 0.13) / 3.0);
    assert!((c.rows[1].rel_l2_change - (m1 - m0) / m0).abs() < 1e-12);
    assert!((c.rows[1].max_abs_error_change - (m1 - m0) / m0).abs() < 1e-12);
    assert_eq!(c.rows[0].rel_l2_change, 0.0);
    assert!(c.rows[0].welch.p_value.is_nan());
    // scipy.stats.ttest_ind([0.10, 0.11, 0.13], [0.30, 0.32, 0.34], equal_var=False)
    // -> statistic -14.22377549997482, pvalue 0.00021519907166850952, df 3.740932642487045
    let w = c.rows[1].welch;
    assert!((w.t + 14.223_775_499_974_82).abs() < 1e-9, "{w:?}");
    assert!((w.p_value - 0.000_215_199_071_668_509_52).abs() < 1e-12, "{w:?}");
    assert!((w.dof - 3.740_932_642_487_045).abs() < 1e-9, "{w:?}");

    let report = r.report_markdown();
    assert!(report.contains("### training.lr, at eps=0.5"), "{report}");
    assert!(report.contains("-64.6%") && report.contains("p vs 0.01"), "{report}");
    assert!(report.contains("### darcy1d, width 50, balancer none, normalization none, training.lr 0.001"), "{report}");

    let f = hdf5::File::open(dir.path().join("summary.h5")).unwrap();
    let t = f.group("trials/darcy1d_eps0.5_w50_none_none_training.lr=0.01").unwrap();
    assert_eq!(t.attr("training.lr").unwrap().read_scalar::<f64>().unwrap(), 0.01);
    assert_eq!(t.dataset("rel_l2").unwrap().read_raw::<f64>().unwrap(), REL_LR_1E2);
    let g = f.group("compare/training.lr/eps=0.5").unwrap();
    let strings = |n: &str| -> Vec<String> {
        g.dataset(n).unwrap().read_raw::<VarLenUnicode>().unwrap().iter().map(|s| s.to_string()).collect()
    };
    assert_eq!(strings("value"), ["0.01", "0.001"]);
    assert_eq!(strings("trial_key")[1], "darcy1d_eps0.5_w50_none_none_training.lr=0.001");
    let p = g.dataset("p_value").unwrap().read_raw::<f64>().unwrap();
    assert!(p[0].is_nan() && (p[1] - w.p_value).abs() < 1e-15);
    assert_eq!(g.attr("eps").unwrap().read_scalar::<f64>().unwrap(), 0.5);
    assert_eq!(g.attr("axis").unwrap().read_scalar::<VarLenUnicode>().unwrap().as_str(), "training.lr");
}

#[test]
fn problems_without_eps_give_trial_tables_and_no_scaling() {
    let dir = tempfile::tempdir().unwrap();
    for (balancer, rels) in [("none", [0.30, 0.32, 0.34]), ("grad_stats", [0.2, 0.25, f64::NAN])] {
        for (seed, rel) in rels.iter().enumerate().filter(|(_, r)| r.is_finite()) {
            let mut job = SyntheticJob::done(&format!("{balancer}{seed}"), "wave1d", f64::NAN, 50, seed as i64);
            job.balancer = balancer.into();
            job.config_extra = if balancer == "none" {
                "balancer:\n  kind: none\n".into()
            } else {
                "balancer:\n  kind: grad_stats\n  every: 10\n".into()
            };
            job.steps = vec![0, 10];
            job.frobenius = vec![("residual".into(), vec![1.0, 2.0]), ("full".into(), vec![1.5, 2.5])];
            let x = Array2::from_shape_fn((9, 2), |(i, j)| if j == 0 { (i / 3) as f64 } else { (i % 3) as f64 });
            job.eval = Some(SyntheticEval { x, error: vec![*rel; 9], rel_l2: *rel });
            write(dir.path(), &job);
        }
    }
    let r = reduce(dir.path(), &ReduceOptions::default()).unwrap();
    assert_eq!(r.counts.done, 5, "{:?}", r.excluded);
    assert!(r.groups.scaling.is_empty());
    assert_eq!(r.groups.problems_without_eps, ["wave1d"]);
    let keys: Vec<&str> = r.groups.trials.iter().map(|t| t.key.as_str()).collect();
    assert_eq!(keys, ["wave1d_w50_grad_stats_none", "wave1d_w50_none_none"]);
    assert!(r.groups.trials.iter().all(|t| t.eps.is_nan()));
    // balancer.kind and balancer.every vary with the balancer attribute: one axis.
    assert_eq!(r.groups.trial_axes, ["balancer"]);
    assert_eq!(r.groups.trial_varying, ["balancer", "balancer.kind", "balancer.every"]);
    assert_eq!(r.comparisons.len(), 1);
    let c = &r.comparisons[0];
    assert_eq!((c.axis.as_str(), c.key.as_str()), ("balancer", "all"));
    // No plan: values in natural order, grad_stats first. Means 0.225 and 0.32.
    assert!((c.rows[1].rel_l2_change - (0.32 - 0.225) / 0.225).abs() < 1e-12);
    // scipy.stats.ttest_ind([0.30, 0.32, 0.34], [0.2, 0.25], equal_var=False).pvalue
    assert!((c.rows[1].welch.p_value - 0.116_414_796_122_562_72).abs() < 1e-12, "{:?}", c.rows[1].welch);

    let report = r.report_markdown();
    assert!(report.contains("No scaling table for `wave1d`"), "{report}");
    assert!(report.contains("### balancer\n"), "{report}");
    let f = hdf5::File::open(dir.path().join("summary.h5")).unwrap();
    let t = f.group("trials/wave1d_w50_grad_stats_none").unwrap();
    assert!(t.attr("eps").unwrap().read_scalar::<f64>().unwrap().is_nan());
    assert_eq!(t.attr("balancer.every").unwrap().read_scalar::<i64>().unwrap(), 10);
    assert!(f.group("trials/wave1d_w50_none_none").unwrap().attr("balancer.every").is_err());
    assert_eq!(f.attr("problems_without_eps").unwrap().read_scalar::<VarLenUnicode>().unwrap().as_str(), "wave1d");
}

#[test]
fn two_sweeps_in_one_folder_never_pool() {
    let dir = tempfile::tempdir().unwrap();
    for sweep in ["first", "second"] {
        for seed in 0..2 {
            let mut job = done_job(&format!("{sweep}{seed}"), 0.5, seed, 4.0, 4.0);
            job.sweep = sweep.into();
            write(dir.path(), &job);
        }
    }
    let r = reduce(dir.path(), &ReduceOptions::default()).unwrap();
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    let keys: Vec<&str> = r.groups.trials.iter().map(|t| t.key.as_str()).collect();
    assert_eq!(keys, ["darcy1d_eps0.5_w50_none_none_sweep=first", "darcy1d_eps0.5_w50_none_none_sweep=second"]);
    assert!(r.groups.trials.iter().all(|t| t.n_trials == 2));
}

#[test]
fn jobs_csv_has_one_row_per_file_with_swept_settings() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &lr_job("a", 0.5, 0, 1e-3, 0.25));
    let mut b = lr_job("b", 0.25, 1, 1e-8, 0.5);
    b.steps = vec![0, 7];
    b.frobenius = vec![("residual".into(), vec![2.0, 3.0])];
    write(dir.path(), &b);
    let mut failed = SyntheticJob::done("c", "darcy1d", 0.5, 50, 2);
    failed.status = "failed".into();
    failed.message = "tch error: \"bad\", line 1\nline 2".into();
    failed.config_extra = "training:\n  lr: 0.1\n".into();
    write(dir.path(), &failed);
    std::fs::write(jobs_dir(dir.path()).join("junk.h5"), b"not an hdf5 file").unwrap();
    let r = reduce(dir.path(), &ReduceOptions::default()).unwrap();

    let mut reader = csv::Reader::from_path(dir.path().join("jobs.csv")).unwrap();
    let header: Vec<String> = reader.headers().unwrap().iter().map(str::to_owned).collect();
    let rows: Vec<Vec<String>> =
        reader.records().map(|r| r.unwrap().iter().map(str::to_owned).collect()).collect();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap_or_else(|| panic!("{name}: {header:?}"));
    assert_eq!(&header[..3], ["job_id", "status", "training.lr"]);
    assert_eq!(header.iter().filter(|h| *h == "seed").count(), 1, "seed is a fixed column only");
    assert_eq!(header.last().unwrap(), "message");
    assert_eq!(rows.len(), 4);
    let ids: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(ids, ["a", "b", "c", "junk"]);
    let cell = |row: usize, name: &str| rows[row][col(name)].clone();
    assert_eq!(cell(1, "training.lr"), "1e-8");
    assert_eq!(cell(2, "training.lr"), "0.1");
    assert_eq!(cell(0, "eps"), "0.5");
    assert_eq!(cell(1, "seed"), "1");
    assert_eq!(cell(1, "rel_l2"), "0.5");
    assert_eq!(cell(1, "max_abs_error"), "0.5");
    assert_eq!(cell(1, "ntk_step_last"), "7");
    assert_eq!(cell(1, "ntk_residual_frobenius_last"), "3.0");
    assert_eq!(cell(1, "ntk_residual_trace_first"), "2.0");
    assert_eq!(cell(0, "ntk_full_frobenius_first"), "4.0");
    assert_eq!(cell(1, "ntk_full_frobenius_first"), "");
    assert!(!header.contains(&"ntk_full_trace_first".to_owned()));
    assert_eq!(cell(2, "status"), "failed");
    assert_eq!(cell(2, "message"), "tch error: \"bad\", line 1\nline 2");
    assert_eq!(cell(2, "rel_l2"), "");
    assert_eq!(cell(3, "status"), "unreadable");
    assert!(cell(3, "message").contains("HDF5"), "{}", cell(3, "message"));
    assert_eq!(cell(0, "sweep"), "synthetic");
    assert_eq!(cell(0, "diverged_step"), "-1");
    assert_eq!(r.jobs.len(), 4);
}

/// Best rel L2 over the history, last losses and weights: compared between balancers, in
/// summary.h5 and in jobs.csv (the numbers seeds 000 and 001 report).
#[test]
fn history_ends_are_compared_and_tabled() {
    let dir = tempfile::tempdir().unwrap();
    let mut plan = Vec::new();
    // (balancer, per seed: (best rel L2, last boundary loss, last boundary weight)).
    let runs = [
        ("none", [(0.20, 1e-2, 1.0), (0.30, 3e-2, 1.0)]),
        ("grad_stats", [(0.01, 1e-5, 200.0), (0.03, 3e-5, 300.0)]),
    ];
    for (balancer, seeds) in runs {
        for (seed, (best, loss, weight)) in seeds.iter().enumerate() {
            let id = format!("{balancer}{seed}");
            let mut job = SyntheticJob::done(&id, "wave1d", f64::NAN, 50, seed as i64);
            job.balancer = balancer.into();
            job.config_extra = format!("balancer:\n  kind: {balancer}\n");
            job.steps = vec![0];
            job.frobenius = vec![("residual".into(), vec![1.0])];
            job.eval = Some(SyntheticEval { x: grid(5), error: vec![0.1; 5], rel_l2: 2.0 * best });
            // The best entry sits in the middle, a NaN (a diverged log entry) is skipped.
            job.rel_l2_history = vec![1.0, *best, f64::NAN, 2.0 * best];
            job.last_terms = vec![("boundary".into(), *loss, *weight), ("residual".into(), 0.5, 1.0)];
            write(dir.path(), &job);
            plan.push(id);
        }
    }
    let r = reduce(dir.path(), &ReduceOptions { expected_job_ids: Some(plan) }).unwrap();
    assert_eq!(r.counts.done, 4, "{:?}", r.excluded);
    let c = &r.comparisons[0];
    assert_eq!(c.axis, "balancer");
    // Best: means 0.25 and 0.02, change (0.02 - 0.25) / 0.25 = -0.92.
    assert!((c.rows[0].best_rel_l2.mean - 0.25).abs() < 1e-15);
    assert!((c.rows[1].best_rel_l2_change + 0.92).abs() < 1e-12, "{:?}", c.rows[1]);
    // Boundary loss: means 2e-2 and 2e-5, change -0.999; weight: 1 -> 250, change +249.
    let loss = c.rows[1].last_loss.iter().find(|t| t.term == "boundary").unwrap();
    assert!((loss.mean.mean - 2e-5).abs() < 1e-18 && (loss.change + 0.999).abs() < 1e-12, "{loss:?}");
    let weight = c.rows[1].last_weight.iter().find(|t| t.term == "boundary").unwrap();
    assert!((weight.mean.mean - 250.0).abs() < 1e-12 && (weight.change - 249.0).abs() < 1e-12);
    let report = r.report_markdown();
    assert!(report.contains("-92.0%") && report.contains("-99.9%") && report.contains("+24900.0%"), "{report}");

    let f = hdf5::File::open(dir.path().join("summary.h5")).unwrap();
    let g = f.group("compare/balancer/all").unwrap();
    let change = g.dataset("last_weight/boundary/change").unwrap().read_raw::<f64>().unwrap();
    assert!((change[1] - 249.0).abs() < 1e-12);
    let best = g.dataset("best_rel_l2_change").unwrap().read_raw::<f64>().unwrap();
    assert!((best[1] + 0.92).abs() < 1e-12);

    let csv = std::fs::read_to_string(dir.path().join("jobs.csv")).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap_or_else(|| panic!("{name}: {header:?}"));
    let row: Vec<&str> = csv.lines().find(|l| l.starts_with("grad_stats1,")).unwrap().split(',').collect();
    assert_eq!(row[col("rel_l2_best")], "0.03");
    assert_eq!(row[col("loss_boundary_last")], "3e-5");
    assert_eq!(row[col("weight_boundary_last")], "300.0");
}
