//! Expression problems through the real binary: their job files equal those of the built-in
//! problems they restate (NTK snapshots, histories, parameters; float64, 1e-10), a batch of
//! expression jobs equals the jobs run alone, the hand-written reverse pass equals autograd for
//! operator-derived stream layouts (mixed and first-order derivatives), the `eps` shorthand
//! reaches the constant, and every mistake in an expression stops the run before anything is
//! written, with exit code 2 and the file position of the offending character.

mod common;

use common::*;

const RUN: &str = "model: {width: 10, depth: 2, dtype: float64}\ntraining: {steps: 20, log_every: 5}\nntk: {every: 10}\n";

/// (name, built-in problem section, expression problem section, extra config, axes).
const TWINS: &[(&str, &str, &str, &str, &str)] = &[
    (
        "darcy1d",
        "problem: {kind: darcy1d, eps: 0.25}\n",
        "problem:\n  kind: expression\n  inputs: {x: [0, 1]}\n  constants: {eps: 0.25}\n  solution: sin(2*pi*x) + eps*sin(2*pi*x/eps)\n  operator: -(2 + sin(2*pi*x/eps))*u_xx - (2*pi/eps)*cos(2*pi*x/eps)*u_x\n",
        "collocation: {residual: {points: 24}}\nevaluation: {points: 50}\nmodel: {width: 10, depth: 2, dtype: float64, normalization: zscore}\n",
        "sweep:\n  eps: [0.5, 0.125]\n  seed: [0, 1]\n",
    ),
    (
        "poisson1d",
        "problem: {kind: poisson1d, eps: 0.25}\n",
        "problem:\n  kind: expression\n  inputs: {x: [0, 1]}\n  constants: {eps: 0.25}\n  solution: sin(2*pi*x) + eps*sin(2*pi*x/eps)\n  operator: -u_xx\n",
        "collocation: {residual: {points: 24}}\nevaluation: {points: 50}\n",
        "sweep:\n  eps: [0.5, 0.25]\n  seed: [3]\n",
    ),
    (
        "helmholtz2d",
        "problem: {kind: helmholtz2d}\n",
        "problem:\n  kind: expression\n  inputs: {x: [-1, 1], y: [-1, 1]}\n  constants: {k: 1, a1: 1, a2: 4}\n  solution: sin(a1*pi*x)*sin(a2*pi*y)\n  operator: u_xx + u_yy + k^2*u\n",
        "collocation: {residual: {points: 36, sampling: uniform, resample: true}, boundary: {points: 20}}\nevaluation: {points: 12}\nmodel: {width: 10, depth: 2, dtype: float64, normalization: zscore}\n",
        "sweep:\n  seed: [0, 1]\n",
    ),
    (
        "klein_gordon1d",
        "problem: {kind: klein_gordon1d}\n",
        "problem:\n  kind: expression\n  inputs: {t: [0, 1], x: [0, 1]}\n  constants: {alpha: -1, beta: 0, gamma: 1}\n  solution: x*cos(5*pi*t) + (x*t)^3\n  operator: u_tt + alpha*u_xx + beta*u + gamma*u^3\n",
        "collocation: {residual: {points: 36}, initial: {points: 10}, initial_velocity: {points: 10}, boundary: {points: 10}}\nevaluation: {points: 12}\nbalancer: {kind: grad_stats, every: 5}\n",
        "sweep:\n  seed: [0, 1]\n",
    ),
];

fn sweep_text(name: &str, problem: &str, extra: &str, axes: &str) -> String {
    // `extra` may restate `model:`; a later key would be a duplicate, so it replaces RUN's.
    let run = if extra.contains("model:") { RUN.lines().filter(|l| !l.starts_with("model:")).map(|l| format!("{l}\n")).collect() } else { RUN.to_string() };
    format!("name: {name}\n{problem}{run}{extra}{axes}")
}

fn run_ok(args: &[&str], env: &[(&str, &str)]) -> String {
    let o = ntksweep_with(args, env);
    assert!(o.status.success(), "ntksweep {args:?}: {}", text(&o));
    text(&o)
}

#[test]
fn expression_twins_of_the_built_ins_write_the_same_job_files() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, builtin, expression, extra, axes) in TWINS {
        let dirs: Vec<String> = ["builtin", "expression"].iter().map(|k| tmp.path().join(format!("{name}-{k}")).to_str().unwrap().to_string()).collect();
        for (k, problem) in [builtin, expression].iter().enumerate() {
            let sweep = write(tmp.path(), &format!("{name}-{k}.yaml"), &sweep_text(name, problem, extra, axes));
            run_ok(&["run", sweep.to_str().unwrap(), "--out", &dirs[k], "-q"], &[]);
        }
        let out = py_check("compare_results.py", &[&dirs[0], &dirs[1], "--rtol", "1e-10", "--by-attributes"]);
        println!("{name}: {out}");
    }
}

const BATCH: &str = "\
name: batch
problem:
  kind: expression
  inputs: {t: [0, 1], x: [-1, 1]}
  constants: {nu: 0.1, eps: 0.5}
  solution: exp(-t)*sin(pi*x/eps)
  operator: u_t - nu*u_xx + u*u_x
model: {width: 10, depth: 2, dtype: float64}
training: {steps: 15, log_every: 5}
collocation: {residual: {points: 30, sampling: uniform}, initial: {points: 8}, boundary: {points: 8}}
ntk: {every: 5, spectra: false}
evaluation: {points: 10}
sweep:
  eps: [0.5, 0.25]
  problem.constants.nu: [0.1, 0.01]
  seed: [0, 1]
";

/// A nonlinear first-order-in-time equation (viscous Burgers) with two swept constants: 8 jobs
/// trained as one batch equal the same jobs trained one by one.
#[test]
fn a_batch_of_expression_jobs_equals_the_jobs_run_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let sweep = write(tmp.path(), "batch.yaml", BATCH);
    let (together, alone) = (tmp.path().join("together"), tmp.path().join("alone"));
    run_ok(&["run", sweep.to_str().unwrap(), "--out", together.to_str().unwrap(), "-q"], &[]);
    run_ok(&["run", sweep.to_str().unwrap(), "--out", alone.to_str().unwrap(), "--max-batch", "1", "-q"], &[]);
    let files = job_files(&together);
    assert_eq!(files.len(), 8);
    for p in &files {
        let f = hdf5::File::open(p).unwrap();
        assert_eq!(f.attr("batch_size").unwrap().read_scalar::<i64>().unwrap(), 8, "one batch of all eight");
        let eps = f.attr("eps").unwrap().read_scalar::<f64>().unwrap();
        assert!(eps == 0.5 || eps == 0.25, "root attribute eps is the constant: {eps}");
    }
    py_check("compare_results.py", &[together.to_str().unwrap(), alone.to_str().unwrap(), "--rtol", "1e-10"]);
}

/// Operator-derived layouts the built-ins never use (u_xy without u_xx, u_t without u_tt):
/// the hand-written reverse pass trains like autograd through the whole network.
#[test]
fn hand_written_reverse_pass_equals_autograd_for_expression_layouts() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        "problem:\n  kind: expression\n  inputs: {x: [0, 1], y: [0, 2]}\n  solution: sin(x + y^2/4)\n  operator: u_xy + 0.5*u_x - u\ncollocation: {residual: {points: 25}, boundary: {points: 12}}\nevaluation: {points: 10}\n",
        "problem:\n  kind: expression\n  inputs: {t: [0, 1], x: [0, 1]}\n  constants: {eps: 0.5}\n  solution: exp(-t)*sin(pi*x/eps)\n  operator: u_t - eps*u_xx\nloss: {eps_rescale: true}\ncollocation: {residual: {points: 25}, initial: {points: 8}, boundary: {points: 8}}\nevaluation: {points: 10}\n",
    ];
    for (k, problem) in cases.iter().enumerate() {
        let sweep = write(tmp.path(), &format!("c{k}.yaml"), &sweep_text("layouts", problem, "", "sweep:\n  seed: [0, 1]\n  normalization: [none, zscore]\n"));
        let dirs: Vec<String> = ["taped", "autograd"].iter().map(|d| tmp.path().join(format!("{k}-{d}")).to_str().unwrap().to_string()).collect();
        run_ok(&["run", sweep.to_str().unwrap(), "--out", &dirs[0], "-q"], &[]);
        run_ok(&["run", sweep.to_str().unwrap(), "--out", &dirs[1], "-q"], &[("NTKSWEEP_REVERSE", "autograd")]);
        py_check("compare_results.py", &[&dirs[0], &dirs[1], "--rtol", "1e-10"]);
    }
}

const GOOD: &str = "\
name: e
problem:
  kind: expression
  inputs: {x: [0, 1]}
  constants: {eps: 0.25}
  solution: sin(2*pi*x) + eps*sin(2*pi*x/eps)
  operator: -u_xx
training: {steps: 3}
";

/// Each mistake: exit code 2, nothing created, and the message names file:line:col of the
/// offending character (the column inside the expression for expression errors).
#[test]
fn expression_mistakes_exit_2_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str, &str, &str)] = &[
        ("operator: -u_xx", "operator: -u_xx + epss*u", ":7:21: key `problem.operator`", "unknown name `epss`"),
        ("operator: -u_xx", "operator: \"-u_xx + (u\"", ":7:24: key `problem.operator`", "expected `)`"),
        ("operator: -u_xx", "operator: -u_xxx", ":7:14: key `problem.operator`", "above second order"),
        ("operator: -u_xx", "operator: -u_xx/x", ":7:18: key `problem.operator`", "is NaN at x = 0"),
        ("eps*sin(2*pi*x/eps)", "eps*sin(2*pi*x/eps) + sqrt(x - 0.5)", ":6:49: key `problem.solution`", "is NaN at x = 0"),
        ("constants: {eps: 0.25}", "constants: {eps: 0.25, x: 2}", ":5:26: key `problem.constants.x`", "already an input"),
        ("inputs: {x: [0, 1]}", "inputs: {x: [1, 1]}", ":4:12: key `problem.inputs.x`", "lo < hi"),
        ("training: {steps: 3}", "training: {steps: 3}\nsweep: {eps: [0.25, 0]}", ":6:41: key `problem.solution`", "with eps = 0;"),
        ("operator: -u_xx", "operator: -u_xx\n  terms: [residual, initial]", ":8:3: key `problem.terms`", "needs a time input"),
        ("operator: -u_xx", "operator: -u_xx\n  forcing: 1", ":8:3: key `problem.forcing`", "unknown field"),
    ];
    for (k, (from, to, position, message)) in cases.iter().enumerate() {
        assert!(GOOD.contains(from), "{from}");
        let sweep = write(tmp.path(), &format!("bad{k}.yaml"), &GOOD.replace(from, to));
        let out = tmp.path().join(format!("out{k}"));
        let o = ntksweep(&["run", sweep.to_str().unwrap(), "--out", out.to_str().unwrap()]);
        let t = text(&o);
        assert_eq!(o.status.code(), Some(2), "{to}: {t}");
        assert!(!out.exists(), "{to}: nothing may be written");
        assert!(t.contains(&format!("bad{k}.yaml{position}")), "{to}: expected position {position} in\n{t}");
        assert!(t.contains(message), "{to}: expected `{message}` in\n{t}");
    }
}

/// `eps` means the constant `problem.constants.eps` for an expression problem: as an axis, in
/// `--set`, and as `problem.eps`; other constants are swept by their path.
#[test]
fn eps_shorthand_reaches_the_constant() {
    use ntksweep::config::Sweep;
    use ntksweep::problem::ProblemConfig;
    let eps_of = |s: &Sweep| -> Vec<f64> { s.jobs.iter().map(|j| j.config.problem.eps().unwrap()).collect() };
    let axis = format!("{GOOD}sweep: {{eps: [0.5, 0.125]}}\n");
    let s = Sweep::parse(&axis, "s.yaml", "s", &[]).unwrap();
    assert_eq!(eps_of(&s), [0.5, 0.125]);
    let s = Sweep::parse(GOOD, "s.yaml", "s", &["eps=0.0625".into()]).unwrap();
    assert_eq!(eps_of(&s), [0.0625]);
    let s = Sweep::parse(&GOOD.replace("  constants: {eps: 0.25}\n", "  eps: 0.5\n"), "s.yaml", "s", &[]).unwrap();
    assert_eq!(eps_of(&s), [0.5]);
    let s = Sweep::parse(GOOD, "s.yaml", "s", &["sweep.problem.constants.eps=[0.25, 0.5]".into()]).unwrap();
    assert_eq!(eps_of(&s), [0.25, 0.5]);
    let ProblemConfig::Expression(c) = &s.jobs[1].config.problem else { panic!("an expression problem") };
    assert_eq!(c.constants["eps"], 0.5);
    // The two jobs train in one batch: constants are per member.
    assert_eq!(ntksweep::schedule::plan_batches(&s.jobs, &[0, 1], 8, None).len(), 1);
}
