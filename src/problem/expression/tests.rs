//! Expression problems against the built-ins they can express: the same residuals (1e-12 of
//! the residual's scale, float64) from the same network at the same points, term by term, for
//! batches whose members have different constants; and the stream layouts and terms derived
//! from the operator.

use tch::{Device, Kind, Tensor};

use super::*;
use crate::model::config::{Init, Normalization};
use crate::model::mlp::{layer_sizes, Mlp};
use crate::model::normalize::Normalizer;
use crate::problem::ProblemConfig;
use crate::rng;

fn opts() -> TensorOpts {
    TensorOpts { kind: Kind::Double, device: Device::Cpu }
}

fn expression(yaml: &str) -> ProblemConfig {
    serde_yaml_ng::from_str(&format!("kind: expression\n{yaml}")).unwrap_or_else(|e| panic!("{yaml}: {e}"))
}

fn builtin(yaml: &str) -> ProblemConfig {
    serde_yaml_ng::from_str(yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"))
}

/// (built-in members, expression members): the same equations, written twice.
fn twins() -> Vec<(&'static str, Vec<ProblemConfig>, Vec<ProblemConfig>)> {
    let darcy = |eps: f64, mean: f64, amp: f64| {
        (
            builtin(&format!("{{kind: darcy1d, eps: {eps}, coefficient: {{mean: {mean}, amplitude: {amp}}}}}")),
            expression(&format!(
                "inputs: {{x: [0, 1]}}\nconstants: {{eps: {eps}, mean: {mean}, amp: {amp}}}\nsolution: sin(2*pi*x) + eps*sin(2*pi*x/eps)\n\
                 operator: -(mean + amp*sin(2*pi*x/eps))*u_xx - amp*2*pi*cos(2*pi*x/eps)/eps*u_x\n"
            )),
        )
    };
    let poisson = |eps: f64| {
        (
            builtin(&format!("{{kind: poisson1d, eps: {eps}}}")),
            expression(&format!("inputs: {{x: [0, 1]}}\nconstants: {{eps: {eps}}}\nsolution: sin(2*pi*x) + eps*sin(2*pi*x/eps)\noperator: -u_xx\n")),
        )
    };
    let helmholtz = |k: f64, a1: f64, a2: f64| {
        (
            builtin(&format!("{{kind: helmholtz2d, k: {k}, a1: {a1}, a2: {a2}}}")),
            expression(&format!(
                "inputs: {{x: [-1, 1], y: [-1, 1]}}\nconstants: {{k: {k}, a1: {a1}, a2: {a2}}}\nsolution: sin(a1*pi*x)*sin(a2*pi*y)\noperator: u_xx + u_yy + k^2*u\n"
            )),
        )
    };
    let klein_gordon = |alpha: f64, beta: f64, gamma: f64| {
        (
            builtin(&format!("{{kind: klein_gordon1d, alpha: {alpha}, beta: {beta}, gamma: {gamma}}}")),
            expression(&format!(
                "inputs: {{t: [0, 1], x: [0, 1]}}\nconstants: {{alpha: {alpha}, beta: {beta}, gamma: {gamma}}}\nsolution: x*cos(5*pi*t) + (x*t)^3\n\
                 operator: u_tt + alpha*u_xx + beta*u + gamma*u^3\n"
            )),
        )
    };
    let wave = |c: f64, a: f64, amplitude: f64| {
        (
            builtin(&format!("{{kind: wave1d, c: {c}, a: {a}, amplitude: {amplitude}}}")),
            expression(&format!(
                "inputs: {{t: [0, 1], x: [0, 1]}}\nconstants: {{c: {c}, a: {a}, amplitude: {amplitude}}}\n\
                 solution: sin(pi*x)*cos(c*pi*t) + amplitude*sin(a*pi*x)*cos(a*c*pi*t)\noperator: u_tt - c^2*u_xx\n"
            )),
        )
    };
    let group = |name, pairs: Vec<(ProblemConfig, ProblemConfig)>| {
        let (b, e): (Vec<_>, Vec<_>) = pairs.into_iter().unzip();
        (name, b, e)
    };
    vec![
        group("darcy1d", vec![darcy(0.25, 2.0, 1.0), darcy(1.0 / 16.0, 3.0, -0.5), darcy(0.5, 2.0, 1.0)]),
        group("poisson1d", vec![poisson(0.5), poisson(1.0 / 32.0)]),
        group("helmholtz2d", vec![helmholtz(1.0, 1.0, 4.0), helmholtz(3.0, 2.0, 1.0)]),
        group("klein_gordon1d", vec![klein_gordon(-1.0, 0.0, 1.0), klein_gordon(-2.0, 0.5, 3.0)]),
        group("wave1d", vec![wave(2.0, 4.0, 0.5), wave(1.0, 2.0, -0.3)]),
    ]
}

/// `n` uniform random points per member in `region`, [E, n, d].
fn points(domain: &Domain, region: Region, e: usize, n: usize) -> Tensor {
    let mut all = Vec::new();
    for k in 0..e {
        let mut r = rng::stream(k as u64 + 5, rng::Purpose::Collocation, region as u64);
        all.extend(collocation::sample(domain, region, n, Sampling::Uniform, &mut r));
    }
    Tensor::from_slice(&all).view([e as i64, n as i64, domain.dim() as i64])
}

fn max_abs(t: &Tensor) -> f64 {
    t.abs().max().double_value(&[])
}

#[test]
fn expression_twins_of_the_built_ins_give_their_residuals() {
    for (name, b, e) in twins() {
        for c in &e {
            assert!(c.validate().is_empty(), "{name}: {:?}", c.validate());
        }
        let m = b.len();
        let builtin = ProblemConfig::build(&b.iter().collect::<Vec<_>>(), opts());
        let expr = ProblemConfig::build(&e.iter().collect::<Vec<_>>(), opts());
        let domain = builtin.domain();
        assert_eq!(expr.domain(), domain, "{name}");
        assert_eq!(expr.layout(), builtin.layout(), "{name}: stream layout from the operator");
        assert_eq!(expr.terms(), builtin.terms(), "{name}: default terms, order and points");
        let mut members: Vec<_> = (0..m).map(|k| (Init::Normal, rng::stream(k as u64 + 1, rng::Purpose::Init, 0))).collect();
        let net = Mlp::init(&layer_sizes(domain.dim(), 16, 2), &mut members, opts());
        let norm = Normalizer::new(&vec![Normalization::Zscore; m], &domain, opts());
        for t in builtin.terms() {
            let x = points(&domain, t.region, m, 200);
            let u = net.forward(&x, &norm, &builtin.term_layout(t.name));
            let (want, got) = (builtin.residual(t.name, &x, &u), expr.residual(t.name, &x, &u));
            // The PDE residual's parts are large (O(1/eps^2), O((a c pi)^2)): relative to the
            // largest of the network's part and the forcing.
            let scale = max_abs(&want).max(builtin.forcing(&x).map_or(0.0, |f| max_abs(&f))).max(1.0);
            let err = max_abs(&(&got - &want)) / scale;
            assert!(err < 1e-12, "{name} term {}: residuals differ by {err:e} of {scale:e}", t.name);
        }
        let x = points(&domain, Region::Interior, m, 100);
        let err = max_abs(&(expr.exact(&x) - builtin.exact(&x)));
        assert!(err < 1e-13, "{name}: exact solutions differ by {err:e}");
        assert_eq!(
            e.iter().map(|c| c.eps()).collect::<Vec<_>>(),
            b.iter().map(|c| c.eps()).collect::<Vec<_>>(),
            "{name}: the constant named eps is the problem's eps"
        );
    }
}

#[test]
fn layouts_and_default_terms_follow_the_operator() {
    let heat = expression("inputs: {x: [0, 2], t: [0, 1]}\nsolution: exp(-t)*sin(pi*x/2)\noperator: u_t - u_xx*4/pi^2 + 0*u\n");
    let ProblemConfig::Expression(c) = &heat else { unreachable!() };
    let p = c.parsed().unwrap();
    // t is input 0 whatever the order written; first order in time: no initial velocity.
    assert_eq!(p.domain, Domain { lo: vec![0.0, 0.0], hi: vec![1.0, 2.0], time_dependent: true });
    assert_eq!(p.terms.iter().map(|t| t.name).collect::<Vec<_>>(), ["residual", "initial", "boundary"]);
    assert_eq!(p.layout(), StreamLayout { dim: 2, first: vec![0, 1], second: vec![(1, 1)], third: vec![] });
    // exp(-t) sin(pi x / 2) solves u_t = (4/pi^2) u_xx: the forcing vanishes (to rounding).
    let f = p.forcing();
    for pt in [[0.3, 0.7], [0.9, 1.9]] {
        assert!(f.eval(&pt, &[]).unwrap().abs() < 1e-15);
    }
    let mixed = expression("inputs: {x: [0, 1], y: [0, 1]}\nsolution: x*y\noperator: u_xy + u_y\nterms: [boundary, residual]\n");
    let ProblemConfig::Expression(c) = &mixed else { unreachable!() };
    let p = c.parsed().unwrap();
    assert_eq!(p.layout(), StreamLayout { dim: 2, first: vec![0, 1], second: vec![(0, 1)], third: vec![] });
    assert_eq!(p.terms.iter().map(|t| (t.name, t.default_points)).collect::<Vec<_>>(), [("residual", 400), ("boundary", 200)]);
    // u_xy + u_y of x y is 1 + x.
    assert_eq!(p.forcing().eval(&[0.25, 0.5], &[]).unwrap(), 1.25);
}

#[test]
fn validation_errors_name_the_key_and_the_column() {
    let base = "inputs: {x: [0, 1]}\nconstants: {eps: 0.25}\n";
    let cases: &[(&str, &str, Option<usize>, &str)] = &[
        ("solution: sin(x)\noperator: -u_xx + ep*u", "problem.operator", Some(9), "unknown name `ep`"),
        ("solution: sin(x\noperator: -u_xx", "problem.solution", Some(6), "expected `)`"),
        ("solution: sin(x)\noperator: -u_xxx", "problem.operator", Some(2), "above second order"),
        ("solution: sin(x) + u\noperator: -u_xx", "problem.solution", Some(10), "cannot use u"),
        ("solution: sqrt(x)\noperator: -u_xx", "problem.solution", Some(1), "is inf at x = 0"),
        ("solution: x^2\noperator: -u_xx/(x - 0.5)", "problem.operator", Some(6), "is -inf at x = 0.5"),
        ("solution: log(1 + x)\noperator: u_x*eps/(x - 1)", "problem.operator", Some(8), "forcing"),
        ("solution: x\noperator: 2*x", "problem.operator", None, "does not contain u"),
        ("solution: x\noperator: u_xx\nterms: [residual, initial]", "problem.terms", None, "needs a time input"),
        ("solution: x\noperator: u_xx\nterms: [residual, edge]", "problem.terms", None, "unknown term `edge`"),
    ];
    for (text, path, col, msg) in cases {
        let c = expression(&format!("{base}{text}\n"));
        let errs = c.validate();
        assert_eq!(errs.len(), 1, "{text}: {errs:?}");
        assert_eq!(errs[0].path, *path, "{text}");
        assert_eq!(errs[0].column, *col, "{text}: {}", errs[0].message);
        assert!(errs[0].message.contains(msg), "{text}: {}", errs[0].message);
    }
    let c = expression("inputs: {x: [1, 0], t: [0, 1]}\nsolution: x\noperator: u_xx");
    assert_eq!(c.validate()[0].path, "problem.inputs.x");
    let c = expression("inputs: {t: [0, 1]}\nsolution: t\noperator: u_t");
    assert!(c.validate()[0].message.contains("space input"));
    let c = expression("inputs: {x: [0, 1]}\nconstants: {x: 1, sin: 2, k: .nan}\nsolution: x\noperator: u_xx");
    let paths: Vec<String> = c.validate().into_iter().map(|e| e.path).collect();
    assert_eq!(paths, ["problem.constants.k", "problem.constants.sin", "problem.constants.x"]);
}

/// Cost of the PDE residual alone (forward and backward to the streams), expression vs
/// built-in darcy1d, 8 members x 100 points, float32; best of 5 x 500 calls. Not a pass/fail
/// test (timings are machine-dependent):
/// `cargo test --release --lib problem::expression::tests::time_residual -- --ignored --nocapture`.
#[test]
#[ignore]
fn time_residual_expression_vs_builtin() {
    let opts = TensorOpts { kind: Kind::Float, device: Device::Cpu };
    let (_, b, e) = twins().remove(0);
    let (b, e): (Vec<_>, Vec<_>) = (b.iter().cycle().take(8).cloned().collect(), e.iter().cycle().take(8).cloned().collect());
    let builtin = ProblemConfig::build(&b.iter().collect::<Vec<_>>(), opts);
    let expr = ProblemConfig::build(&e.iter().collect::<Vec<_>>(), opts);
    let x = Tensor::rand([8, 100, 1], (Kind::Float, Device::Cpu));
    let layout = builtin.layout();
    let streams = || Streams { layout: layout.clone(), parts: (0..3).map(|_| Some(Tensor::rand([8, 100], (Kind::Float, Device::Cpu)).set_requires_grad(true))).collect() };
    for (name, p) in [("built-in", &builtin), ("expression", &expr), ("built-in", &builtin), ("expression", &expr)] {
        let mut best = f64::INFINITY;
        for _ in 0..5 {
            let t = std::time::Instant::now();
            for _ in 0..500 {
                let u = streams();
                let r = p.residual("residual", &x, &u);
                r.square().sum(Kind::Float).backward();
            }
            best = best.min(t.elapsed().as_secs_f64() / 500.0);
        }
        println!("{name}: {:.1} us per residual (forward + backward)", best * 1e6);
    }
}
