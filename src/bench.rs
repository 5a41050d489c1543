//! `ntksweep bench`: time the hot paths on this machine and compare, in the same invocation,
//! with the reference implementations in `analysis/reference/` (PyTorch eager, torch.func,
//! JAX jit/jacrev) when their frameworks are installed.
//!
//! Workloads (the same in the references; see analysis/reference/README.md):
//! - `wave step`: one Adam step of the wave PINN (residual u_tt - 4 u_xx, initial value,
//!   initial velocity, boundary; 300 points per term resampled each step), widths 50 and 500,
//!   3 hidden layers, float32, one job.
//! - `darcy sweep`: 80 darcy1d jobs (width 100, 3 hidden layers, 100 + 2 points, float32);
//!   ntksweep trains them as batched networks, the references one after another; reported in
//!   job-steps per second.
//! - `expression step`: one Adam step of 8 batched jobs (different eps or seeds, width 50,
//!   float32) of a problem written as `kind: expression`, against the same equation as a
//!   built-in (darcy1d; klein_gordon1d with its four terms): the cost of writing a PDE in the
//!   sweep file instead of in Rust. No external reference.
//! - `ntk`: NTK of the [2, 500, 500, 500, 1] tanh network for 3 terms (wave residual, initial
//!   value, initial velocity) x 300 points in float64: traces and Frobenius norms of every
//!   block (ntksweep computes the whole 900 x 900 kernel on the way); and the same traces by
//!   Hutchinson estimates (16 probes per term), timed against the exact kernel of this run.
//! - schemes: the width-50 wave step with SiLU, a global adaptive slope, 64 Fourier features,
//!   exact Dirichlet conditions, a gradient-enhanced residual and an importance-sampled
//!   residual ([`SCHEMES`]), each against the tanh step of the same invocation (no external
//!   reference).
//!
//! Timings use wall clock around whole phases after a warm-up; a training-step time is the
//! difference between a long and a short run divided by the extra steps, so set-up costs
//! cancel. Step and sweep timings are the best of 3 runs (1 with `--quick`), ntksweep's and
//! the references' runs interleaved.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use tch::{Device, Kind, Tensor};

use crate::config::{JobSpec, Sweep};
use crate::model::mlp::{layer_sizes, Mlp};
use crate::model::normalize::Normalizer;
use crate::ntk::{self, TermPoints};
use crate::problem::{ProblemConfig, TensorOpts};
use crate::rng;
use crate::train::{train_batch, BatchContext, BatchOutcome};

/// One row of the bench table.
#[derive(Debug, Clone)]
pub struct Row {
    pub workload: String,
    pub unit: &'static str,
    pub ours: Option<f64>,
    /// (reference name, value) in the same unit.
    pub refs: Vec<(String, Option<f64>)>,
    /// true when smaller is better (times), false for throughputs.
    pub lower_is_better: bool,
    pub note: String,
}

fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

fn jobs(yaml: &str) -> Result<Vec<JobSpec>, String> {
    Sweep::parse(yaml, "<bench>", "bench", &[]).map(|s| s.jobs).map_err(|e| e.to_string())
}

/// Seconds to train `specs` as one batch for `steps` steps (NTK off).
fn train_seconds(specs: &[JobSpec], device: Device) -> Result<f64, String> {
    let refs: Vec<&JobSpec> = specs.iter().collect();
    let stop = AtomicBool::new(false);
    let mut cb = |_n: u64| {};
    let mut ctx = BatchContext { device, stop: &stop, on_steps: &mut cb, autograd: false, checkpoints: None };
    sync(device);
    let t = Instant::now();
    match train_batch(&refs, &mut ctx).map_err(|e| e.to_string())? {
        BatchOutcome::Finished(_) => {}
        BatchOutcome::Interrupted => return Err("interrupted".into()),
    }
    sync(device);
    Ok(t.elapsed().as_secs_f64())
}

/// Seconds per step: (t(long) - t(short)) / (long - short).
fn per_step(yaml_with_steps: &dyn Fn(u64) -> String, short: u64, long: u64, device: Device) -> Result<f64, String> {
    let a = jobs(&yaml_with_steps(short))?;
    let b = jobs(&yaml_with_steps(long))?;
    train_seconds(&a, device)?; // warm-up
    let ta = train_seconds(&a, device)?;
    let tb = train_seconds(&b, device)?;
    Ok(((tb - ta) / (long - short) as f64).max(0.0))
}

/// The schemes timed against plain tanh on the wave step: name, model keys added, and an edit
/// of the workload's text (from, to) for schemes configured outside `model`.
const SCHEMES: &[(&str, &str, Option<(&str, &str)>)] = &[
    ("silu", ", activation: silu", None),
    ("tanh + global adaptive slope", ", adaptive_activation: global", None),
    ("tanh + 64 Fourier features", ", fourier: {features: 64, sigma: 1}", None),
    ("tanh + exact Dirichlet conditions", ", exact_bc: true", None),
    (
        "tanh + gradient-enhanced residual (weight 0.01; autograd path)",
        "",
        Some(("ntk: {enabled: false}", "loss: {gradient_enhanced: {weight: 0.01}}\nntk: {enabled: false}")),
    ),
    (
        "tanh + importance-sampled residual (pool 3000, every 100)",
        "",
        Some(("residual: {points: 300, sampling: uniform, resample: true}", "residual: {points: 300, sampling: importance, pool: 3000, every: 100}")),
    ),
];

/// The wave step workload; `model_extra` adds model keys (", activation: silu").
fn wave_yaml(width: usize, steps: u64, model_extra: &str) -> String {
    format!(
        "problem: {{kind: wave1d}}\nmodel: {{width: {width}, depth: 3{model_extra}}}\ntraining: {{steps: {steps}, log_every: 100000}}\n\
         collocation:\n  residual: {{points: 300, sampling: uniform, resample: true}}\n  initial: {{points: 300, sampling: uniform, resample: true}}\n  \
         initial_velocity: {{points: 300, sampling: uniform, resample: true}}\n  boundary: {{points: 300, sampling: uniform, resample: true}}\n\
         ntk: {{enabled: false}}\nevaluation: {{points: 8}}\n"
    )
}

fn darcy_yaml(n_jobs: usize, steps: u64) -> String {
    let seeds: Vec<String> = (0..n_jobs / 4).map(|s| s.to_string()).collect();
    format!(
        "problem: {{kind: darcy1d, eps: 0.5}}\nmodel: {{width: 100, depth: 3}}\ntraining: {{steps: {steps}, log_every: 100000}}\n\
         collocation: {{residual: {{points: 100}}}}\nntk: {{enabled: false}}\nevaluation: {{points: 8}}\n\
         sweep:\n  eps: [0.5, 0.25, 0.125, 0.0625]\n  seed: [{}]\n",
        seeds.join(", ")
    )
}

/// The built-in and the expression form of the same equation, for the `expression step` rows:
/// (name, built-in `problem:` section, expression `problem:` section, `collocation:` section).
const EXPRESSION_TWINS: &[(&str, &str, &str, &str)] = &[
    (
        "darcy1d",
        "{kind: darcy1d, eps: 0.5}",
        "{kind: expression, inputs: {x: [0, 1]}, constants: {eps: 0.5}, solution: 'sin(2*pi*x) + eps*sin(2*pi*x/eps)', \
         operator: '-(2 + sin(2*pi*x/eps))*u_xx - (2*pi/eps)*cos(2*pi*x/eps)*u_x'}",
        "{residual: {points: 100}}",
    ),
    (
        "klein_gordon1d",
        "{kind: klein_gordon1d}",
        "{kind: expression, inputs: {t: [0, 1], x: [0, 1]}, constants: {alpha: -1, beta: 0, gamma: 1}, \
         solution: 'x*cos(5*pi*t) + (x*t)^3', operator: 'u_tt + alpha*u_xx + beta*u + gamma*u^3'}",
        "{residual: {points: 128, sampling: uniform, resample: true}, initial: {points: 128, sampling: uniform, resample: true}, \
         initial_velocity: {points: 128, sampling: uniform, resample: true}, boundary: {points: 128, sampling: uniform, resample: true}}",
    ),
];

/// 8 jobs of `problem` (eps 0.5 and 0.25 where there is an eps, 4 seeds) as one batch.
fn twin_yaml(problem: &str, collocation: &str, steps: u64) -> String {
    let eps = if problem.contains("eps") { "  eps: [0.5, 0.25]\n  seed: [0, 1, 2, 3]\n" } else { "  seed: [0, 1, 2, 3, 4, 5, 6, 7]\n" };
    format!(
        "problem: {problem}\nmodel: {{width: 50, depth: 3}}\ntraining: {{steps: {steps}, log_every: 100000}}\ncollocation: {collocation}\n\
         ntk: {{enabled: false}}\nevaluation: {{points: 8}}\nsweep:\n{eps}"
    )
}

/// NTK time (seconds) of the wave network, 3 terms x `points`, float64: the exact kernel, or
/// Hutchinson trace estimates with `probes` probes per term.
fn ntk_seconds(width: usize, points: usize, device: Device, reps: usize, probes: Option<usize>) -> Result<(f64, BTreeMap<String, f64>), String> {
    let opts = TensorOpts { kind: Kind::Double, device };
    let specs = jobs(&wave_yaml(width, 1, ""))?;
    let pc: Vec<&ProblemConfig> = vec![&specs[0].config.problem];
    let problem = ProblemConfig::build(&pc, opts);
    let domain = problem.domain();
    let mut init = vec![(crate::config::job::Init::XavierNormal, rng::stream(0, rng::Purpose::Init, 0))];
    let mlp = Mlp::init(&layer_sizes(2, width, 3), &mut init, opts);
    let norm = Normalizer::new(&[crate::config::job::Normalization::None], &domain, opts);
    let mut pts = Vec::new();
    for (ti, t) in problem.terms().iter().enumerate().filter(|(_, t)| t.name != "boundary") {
        let mut r = rng::stream(0, rng::Purpose::NtkPoints, ti as u64);
        let x = crate::collocation::sample(&domain, t.region, points, crate::config::job::Sampling::Uniform, &mut r);
        pts.push(TermPoints { name: t.name.to_string(), x: Tensor::from_slice(&x).view([1, points as i64, 2]).to_device(device) });
    }
    let scale = BTreeMap::new();
    let est = match probes {
        None => ntk::Estimator::Exact { spectra: false },
        Some(count) => ntk::Estimator::Hutchinson(ntk::hutchinson::Probes { count, seeds: &[0], step: 0 }),
    };
    let inputs = ntk::NtkInputs { mlp: &mlp, norm: &norm, problem: problem.as_ref(), points: &pts, scale: &scale, chunk: 4096 };
    let run = || -> Result<ntk::Snapshot, String> { ntk::measure(&est, &inputs).map_err(|e| e.to_string()) };
    run()?; // warm-up
    sync(device);
    let t = Instant::now();
    let mut snap = None;
    for _ in 0..reps {
        snap = Some(run()?);
    }
    sync(device);
    let secs = t.elapsed().as_secs_f64() / reps as f64;
    let traces = snap.unwrap().terms.iter().map(|t| (t.name.clone(), t.trace.double_value(&[0]))).collect();
    Ok((secs, traces))
}

/// Run a reference script; returns its JSON line. The interpreter is `NTKSWEEP_PYTHON`, else
/// the project's `.venv`, else `python3` (a GPU machine may have PyTorch elsewhere).
fn reference(repo: &Path, script: &str, args: &[String]) -> Option<serde_json::Value> {
    let venv = repo.join(".venv/bin/python");
    let py = match std::env::var_os("NTKSWEEP_PYTHON") {
        Some(p) => std::path::PathBuf::from(p),
        None if venv.exists() => venv,
        None => "python3".into(),
    };
    let out = match Command::new(&py).arg(repo.join("analysis/reference").join(script)).args(args).output() {
        Ok(out) => out,
        Err(err) => {
            eprintln!("  reference {script}: cannot start {}: {err}", py.display());
            return None;
        }
    };
    if !out.status.success() {
        eprintln!("  reference {script} failed: {}", String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or(""));
        return None;
    }
    String::from_utf8_lossy(&out.stdout).lines().rev().find_map(|l| serde_json::from_str(l).ok())
}

pub struct BenchOptions {
    pub device: Device,
    pub references: bool,
    /// Smaller sizes and fewer repetitions (for a quick look).
    pub quick: bool,
    pub threads: usize,
}

/// Run every workload; prints progress to stderr and returns the rows.
pub fn run(repo: &Path, o: &BenchOptions) -> Vec<Row> {
    let dev = match o.device {
        Device::Cuda(_) => "cuda",
        _ => "cpu",
    };
    let common = |extra: &[&str]| -> Vec<String> {
        let mut v = vec!["--device".to_string(), dev.to_string()];
        if dev == "cpu" {
            v.extend(["--threads".to_string(), o.threads.to_string()]);
        }
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let jax_args = |extra: &[&str]| -> Vec<String> {
        let mut v = vec!["--device".to_string(), dev.to_string()];
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let ms = |v: &Option<serde_json::Value>, key: &str| v.as_ref().and_then(|j| j.get(key)).and_then(|x| x.as_f64());
    let mut rows = Vec::new();
    let cpu = dev == "cpu";

    // Each timing is the best of `reps` runs, ours and the references interleaved, so that a
    // slow moment of a shared machine does not decide a ratio.
    let reps = if o.quick { 1 } else { 3 };
    let best_of = |ours: &dyn Fn() -> Result<f64, String>, torch: (&str, Vec<String>), jax: (&str, Vec<String>), key: &str, lower: bool| {
        let keep = |best: &mut Option<f64>, v: Option<f64>| {
            if let Some(v) = v.filter(|v| v.is_finite() && *v > 0.0) {
                *best = Some(match *best {
                    Some(b) if (lower && b <= v) || (!lower && b >= v) => b,
                    _ => v,
                });
            }
        };
        let (mut best, mut best_torch, mut best_jax) = (None, None, None);
        for _ in 0..reps {
            match ours() {
                Ok(v) => keep(&mut best, Some(v)),
                Err(e) => eprintln!("  ntksweep: {e}"),
            }
            if o.references {
                keep(&mut best_torch, ms(&reference(repo, torch.0, &torch.1), key));
                keep(&mut best_jax, ms(&reference(repo, jax.0, &jax.1), key));
            }
        }
        let refs = if o.references { vec![("torch eager".to_string(), best_torch), ("jax jit".to_string(), best_jax)] } else { Vec::new() };
        (best, refs)
    };

    // --- one-job wave step -----------------------------------------------------------------
    for width in [50usize, 500] {
        let (short, long) = if cpu && width == 500 { (2, if o.quick { 6 } else { 22 }) } else { (5, if o.quick { 25 } else { 405 }) };
        eprintln!("bench: wave step, width {width} (best of {reps}) ...");
        let steps = (long - short).to_string();
        let w = width.to_string();
        let args = ["--width", w.as_str(), "--steps", steps.as_str(), "--warmup", "2"];
        let (ours, refs) = best_of(
            &|| per_step(&|s| wave_yaml(width, s, ""), short, long, o.device).map(|s| s * 1e3),
            ("torch_step.py", common(&args)),
            ("jax_step.py", jax_args(&args)),
            "ms_per_step",
            true,
        );
        rows.push(Row { workload: format!("wave step, 1 job, width {width}"), unit: "ms/step", ours, refs, lower_is_better: true, note: String::new() });
    }

    // --- network schemes against the tanh baseline, both timed here ---------------------------
    let (short, long) = (5, if o.quick { 25 } else { 405 });
    let scheme_step = |extra: &str, edit: Option<(&str, &str)>| -> Option<f64> {
        let yaml = |s| match edit {
            Some((from, to)) => wave_yaml(50, s, extra).replacen(from, to, 1),
            None => wave_yaml(50, s, extra),
        };
        (0..reps).filter_map(|_| per_step(&yaml, short, long, o.device).map_err(|e| eprintln!("  ntksweep: {e}")).ok()).map(|s| s * 1e3).reduce(f64::min)
    };
    eprintln!("bench: wave step, width 50, network schemes vs tanh (best of {reps}) ...");
    let tanh = scheme_step("", None);
    for (name, extra, edit) in SCHEMES {
        rows.push(Row {
            workload: format!("wave step, 1 job, width 50, {name}"),
            unit: "ms/step",
            ours: scheme_step(extra, *edit),
            refs: vec![("tanh (this run)".to_string(), tanh)],
            lower_is_better: true,
            note: String::new(),
        });
    }

    // --- batched darcy sweep ------------------------------------------------------------------
    let n_jobs = 80;
    eprintln!("bench: darcy sweep, {n_jobs} jobs (best of {reps}) ...");
    let (short, long) = if o.quick { (2, 6) } else { (5, 25) };
    let steps = if o.quick { "3" } else { "10" };
    let args = ["--jobs", "80", "--steps", steps, "--warmup", "2"];
    let (ours, refs) = best_of(
        &|| per_step(&|s| darcy_yaml(n_jobs, s), short, long, o.device).map(|sec| n_jobs as f64 / sec),
        ("torch_darcy_batch.py", common(&args)),
        ("jax_darcy_batch.py", jax_args(&args)),
        "job_steps_per_s",
        false,
    );
    rows.push(Row {
        workload: format!("darcy sweep, {n_jobs} jobs, width 100 (batched)"),
        unit: "job-steps/s",
        ours,
        refs,
        lower_is_better: false,
        note: "references run the jobs one after another".into(),
    });

    // --- expression problems against the equivalent built-ins --------------------------------
    for (name, builtin, expression, collocation) in EXPRESSION_TWINS {
        eprintln!("bench: {name} step as an expression vs built-in, 8 jobs (best of {reps}) ...");
        let (short, long) = if o.quick { (2, 12) } else { (5, 105) };
        let (mut ours, mut theirs): (Option<f64>, Option<f64>) = (None, None);
        for _ in 0..reps {
            for (problem, best) in [(expression, &mut ours), (builtin, &mut theirs)] {
                match per_step(&|s| twin_yaml(problem, collocation, s), short, long, o.device) {
                    Ok(v) if v > 0.0 => *best = Some(best.map_or(v * 1e3, |b: f64| b.min(v * 1e3))),
                    Ok(_) => {}
                    Err(e) => eprintln!("  ntksweep: {e}"),
                }
            }
        }
        rows.push(Row {
            workload: format!("{name} as `kind: expression`, 8 jobs, width 50"),
            unit: "ms/step",
            ours,
            refs: vec![(format!("built-in {name}"), theirs)],
            lower_is_better: true,
            note: "speed-up below 1: the expression form is slower (goal: at least 0.77, within 1.3x)".into(),
        });
    }

    // --- NTK -----------------------------------------------------------------------------------
    let (width, points) = if o.quick && cpu { (100, 100) } else { (500, 300) };
    eprintln!("bench: NTK, [2,{width},{width},{width},1], 3 terms x {points} points, float64 ...");
    let reps = if cpu { 1 } else { 10 };
    let ours = ntk_seconds(width, points, o.device, reps, None);
    if let Err(e) = &ours {
        eprintln!("  ntksweep: {e}");
    }
    let mut refs = Vec::new();
    let mut note = String::new();
    if o.references {
        let (w, p) = (width.to_string(), points.to_string());
        let r = if cpu { "1" } else { "10" };
        let t = reference(repo, "torch_ntk.py", &common(&["--width", &w, "--points", &p, "--steps", r, "--warmup", "1"]));
        refs.push(("torch.func".to_string(), ms(&t, "ms")));
        let j = reference(repo, "jax_ntk.py", &jax_args(&["--width", &w, "--points", &p, "--steps", r, "--warmup", "1"]));
        refs.push(("jax jacrev".to_string(), ms(&j, "ms")));
        // Same network? Different initial weights (each framework draws its own), so only the
        // time is comparable; the traces are printed for orientation.
        if let (Ok((_, tr)), Some(tj)) = (&ours, &t) {
            note = format!("traces ours {:?}, torch {}", tr.values().map(|v| format!("{v:.3e}")).collect::<Vec<_>>(), tj.get("trace").map(|v| v.to_string()).unwrap_or_default());
        }
    }
    let exact_ms = ours.as_ref().ok().map(|(s, _)| s * 1e3);
    rows.push(Row {
        workload: format!("NTK traces, 3 x {points} points, [2,{width},{width},{width},1]"),
        unit: "ms",
        ours: exact_ms,
        refs,
        lower_is_better: true,
        note,
    });
    let probes = 16;
    eprintln!("bench: NTK traces by Hutchinson, {probes} probes, same network ...");
    let hutch = ntk_seconds(width, points, o.device, reps, Some(probes));
    if let Err(e) = &hutch {
        eprintln!("  ntksweep: {e}");
    }
    rows.push(Row {
        workload: format!("NTK traces, Hutchinson {probes} probes, 3 x {points} points, [2,{width},{width},{width},1]"),
        unit: "ms",
        ours: hutch.ok().map(|(s, _)| s * 1e3),
        refs: vec![("exact (this run)".to_string(), exact_ms)],
        lower_is_better: true,
        note: String::new(),
    });
    rows
}

/// Markdown table of the rows with ratios (how many times faster ntksweep is).
pub fn table(rows: &[Row], header: &str) -> String {
    let mut s = format!("{header}\n\n| workload | unit | ntksweep | reference | reference value | speed-up |\n| --- | --- | --- | --- | --- | --- |\n");
    let f = |v: Option<f64>| v.map(|x| if x >= 100.0 { format!("{x:.0}") } else { format!("{x:.3}") }).unwrap_or_else(|| "-".into());
    for r in rows {
        if r.refs.is_empty() {
            s.push_str(&format!("| {} | {} | {} | - | - | - |\n", r.workload, r.unit, f(r.ours)));
        }
        for (name, v) in &r.refs {
            let ratio = match (r.ours, v) {
                (Some(a), Some(b)) if a > 0.0 && *b > 0.0 => format!("{:.2}x", if r.lower_is_better { b / a } else { a / b }),
                _ => "-".into(),
            };
            s.push_str(&format!("| {} | {} | {} | {} | {} | {} |\n", r.workload, r.unit, f(r.ours), name, f(*v), ratio));
        }
        if !r.note.is_empty() {
            s.push_str(&format!("|  | note: {} | | | | |\n", r.note));
        }
    }
    s
}
