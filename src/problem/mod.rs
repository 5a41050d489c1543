//! Problems: a domain, named loss terms with their residuals, and an exact solution.
//!
//! A new PDE needs no Rust: `kind: expression` ([`expression`]) takes the operator and the
//! solution as text. A built-in is one file here implementing [`Equation`] (domain, terms,
//! solution, operator N, forcing f = N[u_exact]), one variant of [`ProblemConfig`] and one
//! exact-solution test; the residual of every kind of term is written once, in [`Problem`].
//! Runtime problems serve a whole batch of members (jobs trained together as one batched
//! network), so every per-job constant (eps, coefficients) is a tensor with a leading member
//! dimension `[E, 1]` that broadcasts against `[E, N]` point tensors.

pub mod darcy1d;
pub mod exact_bc;
pub mod expression;
pub mod gradient;
pub mod helmholtz2d;
pub mod klein_gordon1d;
pub mod multiscale;
pub mod poisson1d;
pub mod regression1d;
pub mod schemes;
pub mod wave1d;

use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::validation::Invalid;
use crate::model::streams::{StreamLayout, Streams};

pub use crate::domain::{Domain, Region};
pub use crate::tensor::TensorOpts;

pub use darcy1d::{Darcy1d, Darcy1dConfig};
pub use expression::{Expression, ExpressionConfig};
pub use helmholtz2d::{Helmholtz2d, Helmholtz2dConfig};
pub use klein_gordon1d::{KleinGordon1d, KleinGordon1dConfig};
pub use poisson1d::{Poisson1d, Poisson1dConfig};
pub use regression1d::{Regression1d, Regression1dConfig};
pub use wave1d::{Wave1d, Wave1dConfig};

/// A named loss term and the condition it enforces.
///
/// The condition follows from `pde` and `reads` (see [`Equation`]): the PDE term is
/// N[u] - f, a term reading [`Reads::Value`] is u - u_exact, a term reading
/// [`Reads::TimeDerivative`] is u_t - u_exact_t.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TermSpec {
    pub name: &'static str,
    pub region: Region,
    /// Default number of training points.
    pub default_points: usize,
    /// The PDE residual: the term `loss.eps_rescale` multiplies by eps.
    pub pde: bool,
    /// Which network streams the term's residual reads.
    pub reads: Reads,
}

impl TermSpec {
    /// `residual`: the PDE N[u] - f at interior points.
    pub const fn residual(default_points: usize) -> Self {
        TermSpec { name: "residual", region: Region::Interior, default_points, pde: true, reads: Reads::Layout }
    }

    /// `boundary`: u - u_exact on the (spatial) boundary.
    pub const fn boundary(default_points: usize) -> Self {
        TermSpec { name: "boundary", region: Region::Boundary, default_points, pde: false, reads: Reads::Value }
    }

    /// `initial`: u - u_exact at t = t0.
    pub const fn initial(default_points: usize) -> Self {
        TermSpec { name: "initial", region: Region::Initial, default_points, pde: false, reads: Reads::Value }
    }

    /// `initial_velocity`: u_t - u_exact_t at t = t0.
    pub const fn initial_velocity(default_points: usize) -> Self {
        TermSpec { name: "initial_velocity", region: Region::Initial, default_points, pde: false, reads: Reads::TimeDerivative }
    }

    /// `data`: u - u_exact at interior points (regression).
    pub const fn data(default_points: usize) -> Self {
        TermSpec { name: "data", region: Region::Interior, default_points, pde: false, reads: Reads::Value }
    }
}

/// The terms of an equation second order in time on a (t, x) box: the PDE, the initial value
/// and velocity, and the spatial boundary (`wave1d`, `klein_gordon1d`).
pub const SECOND_ORDER_IN_TIME_TERMS: &[TermSpec] =
    &[TermSpec::residual(400), TermSpec::initial(100), TermSpec::initial_velocity(100), TermSpec::boundary(100)];

/// The derivative streams a loss term reads. The training step computes only these at the
/// term's points (value-only boundary terms are cheap); see [`Problem::term_layout`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reads {
    /// u only (boundary, initial and data terms).
    Value,
    /// u and du/dx_0 = u_t (initial velocities; input 0 is time).
    TimeDerivative,
    /// Every stream of [`Problem::layout`] (PDE residuals).
    Layout,
}

/// The runtime side of a problem for a batch of members, as the trainer and the NTK see it:
/// an [`Equation`] with its loss terms' residuals. Every equation is one (blanket impl); the
/// residual of each kind of term is written once, in [`Equation::residual_of`].
pub trait Problem: Equation {
    /// Streams the residual of `term` reads, a sub-layout of [`Equation::layout`].
    fn term_layout(&self, term: &str) -> StreamLayout {
        self.layout_of(term)
    }

    /// Residual of `term` at points `x` from the network streams at those points: N[u] - f
    /// for the PDE term, u - u_exact or u_t - u_exact_t for the others (see [`TermSpec`]).
    ///
    /// # Shapes
    /// `x`: [E, N, d]; `u`: streams [E, S, N]; returns [E, N].
    fn residual(&self, term: &str, x: &Tensor, u: &Streams) -> Tensor {
        self.residual_of(term, x, u)
    }

    /// The solution the trained network represents at `x`, from its streams there (the
    /// network's value, or the exact-boundary ansatz around it): [E, N].
    fn predict(&self, x: &Tensor, u: &Streams) -> Tensor {
        self.prediction(x, u)
    }

    /// Exact solution at `x` [E, N, d]; returns [E, N].
    fn exact(&self, x: &Tensor) -> Tensor {
        self.solution(x)
    }
}

impl<T: Equation> Problem for T {}

/// What is particular to one equation: its domain, its terms, its exact solution and its
/// operator N. Everything else is shared: the PDE term is N[u] - f with f = N[u_exact]
/// ([`Equation::forcing`]), and the other terms compare u (or u_t) with the exact solution
/// (see [`TermSpec`]), so a built-in file holds its equation and nothing else.
///
/// # Shapes
/// `x`: [E, N, d] points (member dimension first); `u`: the network's streams at them; every
/// method returns [E, N]; per-member constants are [E, 1] columns.
pub trait Equation: Send {
    fn domain(&self) -> Domain;
    fn terms(&self) -> &[TermSpec];
    /// The streams N reads (and u_t where a term reads the time derivative).
    fn layout(&self) -> StreamLayout;
    /// The exact (or manufactured) solution u_exact.
    fn solution(&self, x: &Tensor) -> Tensor;
    /// d u_exact / dt (input 0), read by an `initial_velocity` term.
    fn solution_t(&self, _x: &Tensor) -> Tensor {
        unreachable!("this equation has no initial velocity term")
    }
    /// The differential operator applied to the network, N[u].
    fn operator(&self, _x: &Tensor, _u: &Streams) -> Tensor {
        unreachable!("this problem has no PDE term")
    }
    /// f = N[u_exact], which makes the exact solution's residual vanish; None when the exact
    /// solution solves the homogeneous equation (f = 0 then is exact, not rounded).
    fn forcing(&self, x: &Tensor) -> Option<Tensor>;
    /// The PDE term's residual N[u] - f (N[u] when there is no forcing). An equation that
    /// computes both in one pass overrides it.
    fn pde_residual(&self, x: &Tensor, u: &Streams) -> Tensor {
        match self.forcing(x) {
            Some(f) => self.operator(x, u) - f,
            None => self.operator(x, u),
        }
    }
    /// Per-member eps, [E, 1], for problems with a scale.
    fn eps(&self) -> Option<Tensor> {
        None
    }
    /// Streams the residual of `term` reads, from the term's [`TermSpec::reads`]; see
    /// [`Problem::term_layout`].
    fn layout_of(&self, term: &str) -> StreamLayout {
        let dim = self.domain().dim();
        match self.terms().iter().find(|t| t.name == term).map(|t| t.reads) {
            Some(Reads::Value) => StreamLayout::value(dim),
            Some(Reads::TimeDerivative) => StreamLayout::first_order(dim, &[0]),
            Some(Reads::Layout) | None => self.layout(),
        }
    }
    /// The residual of a term; see [`Problem::residual`]. Only the scheme wrapper
    /// ([`schemes::Schemed`]) overrides it.
    fn residual_of(&self, term: &str, x: &Tensor, u: &Streams) -> Tensor {
        let spec = self.terms().iter().find(|t| t.name == term).unwrap_or_else(|| panic!("no loss term {term}"));
        match (spec.pde, spec.reads) {
            (true, _) => self.pde_residual(x, u),
            (false, Reads::Value) => u.u() - self.solution(x),
            (false, Reads::TimeDerivative) => u.d(0) - self.solution_t(x),
            (false, Reads::Layout) => unreachable!("term {term}: a data term reads u or u_t"),
        }
    }
    /// See [`Problem::predict`].
    fn prediction(&self, _x: &Tensor, u: &Streams) -> Tensor {
        u.u()
    }
}

/// Problem configuration: the `problem:` section, tagged by `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ProblemConfig {
    Darcy1d(Darcy1dConfig),
    Poisson1d(Poisson1dConfig),
    Regression1d(Regression1dConfig),
    Wave1d(Wave1dConfig),
    KleinGordon1d(KleinGordon1dConfig),
    Helmholtz2d(Helmholtz2dConfig),
    /// Any PDE written in the sweep file (no Rust).
    Expression(ExpressionConfig),
}

impl ProblemConfig {
    pub fn kind_name(&self) -> &'static str {
        match self {
            ProblemConfig::Darcy1d(_) => "darcy1d",
            ProblemConfig::Poisson1d(_) => "poisson1d",
            ProblemConfig::Regression1d(_) => "regression1d",
            ProblemConfig::Wave1d(_) => "wave1d",
            ProblemConfig::KleinGordon1d(_) => "klein_gordon1d",
            ProblemConfig::Helmholtz2d(_) => "helmholtz2d",
            ProblemConfig::Expression(_) => "expression",
        }
    }

    /// The job files' `problem` attribute: the kind, or an expression problem's `name`.
    pub fn label(&self) -> &str {
        match self {
            ProblemConfig::Expression(c) => c.label(),
            other => other.kind_name(),
        }
    }

    pub fn terms(&self) -> Vec<TermSpec> {
        match self {
            ProblemConfig::Darcy1d(_) | ProblemConfig::Poisson1d(_) => multiscale::TERMS.to_vec(),
            ProblemConfig::Regression1d(_) => regression1d::TERMS.to_vec(),
            ProblemConfig::Wave1d(_) | ProblemConfig::KleinGordon1d(_) => SECOND_ORDER_IN_TIME_TERMS.to_vec(),
            ProblemConfig::Helmholtz2d(_) => helmholtz2d::TERMS.to_vec(),
            ProblemConfig::Expression(c) => c.terms(),
        }
    }

    pub fn term_names(&self) -> Vec<&'static str> {
        self.terms().iter().map(|t| t.name).collect()
    }

    pub fn default_points(&self, term: &str) -> usize {
        self.terms().iter().find(|t| t.name == term).map(|t| t.default_points).unwrap_or(0)
    }

    /// The scale parameter, for problems that have one (an expression problem's constant
    /// named eps).
    pub fn eps(&self) -> Option<f64> {
        match self {
            ProblemConfig::Expression(c) => c.eps(),
            ProblemConfig::Darcy1d(c) => Some(c.eps),
            ProblemConfig::Poisson1d(c) => Some(c.eps),
            ProblemConfig::Regression1d(c) => Some(c.eps),
            ProblemConfig::Wave1d(_) | ProblemConfig::KleinGordon1d(_) | ProblemConfig::Helmholtz2d(_) => None,
        }
    }

    /// Whether input 0 is time.
    pub fn time_dependent(&self) -> bool {
        match self {
            ProblemConfig::Wave1d(_) | ProblemConfig::KleinGordon1d(_) => true,
            ProblemConfig::Expression(c) => c.time_dependent(),
            _ => false,
        }
    }

    pub fn input_dim(&self) -> usize {
        match self {
            ProblemConfig::Darcy1d(_) | ProblemConfig::Poisson1d(_) | ProblemConfig::Regression1d(_) => 1,
            ProblemConfig::Wave1d(_) | ProblemConfig::KleinGordon1d(_) | ProblemConfig::Helmholtz2d(_) => 2,
            ProblemConfig::Expression(c) => c.input_dim(),
        }
    }

    pub fn validate(&self) -> Vec<Invalid> {
        match self {
            ProblemConfig::Darcy1d(c) => c.validate(),
            ProblemConfig::Poisson1d(c) => c.validate(),
            ProblemConfig::Regression1d(c) => c.validate(),
            ProblemConfig::Wave1d(c) => c.validate(),
            ProblemConfig::KleinGordon1d(c) => c.validate(),
            ProblemConfig::Helmholtz2d(c) => c.validate(),
            ProblemConfig::Expression(c) => c.validate(),
        }
    }

    /// Build the runtime problem for a batch of members (all of this kind).
    pub fn build(members: &[&ProblemConfig], opts: TensorOpts) -> Box<dyn Problem> {
        macro_rules! collect {
            ($variant:ident) => {
                members
                    .iter()
                    .map(|m| match m {
                        ProblemConfig::$variant(c) => c.clone(),
                        other => panic!("batch mixes problem kinds: {}", other.kind_name()),
                    })
                    .collect::<Vec<_>>()
            };
        }
        match members[0] {
            ProblemConfig::Darcy1d(_) => Box::new(Darcy1d::new(&collect!(Darcy1d), opts)),
            ProblemConfig::Poisson1d(_) => Box::new(Poisson1d::new(&collect!(Poisson1d), opts)),
            ProblemConfig::Regression1d(_) => Box::new(Regression1d::new(&collect!(Regression1d), opts)),
            ProblemConfig::Wave1d(_) => Box::new(Wave1d::new(&collect!(Wave1d), opts)),
            ProblemConfig::KleinGordon1d(_) => Box::new(KleinGordon1d::new(&collect!(KleinGordon1d), opts)),
            ProblemConfig::Helmholtz2d(_) => Box::new(Helmholtz2d::new(&collect!(Helmholtz2d), opts)),
            ProblemConfig::Expression(_) => Box::new(Expression::new(&collect!(Expression), opts)),
        }
    }
}

/// Input coordinate `i` of [E, N, d] points as [E, N].
pub(crate) fn coord(x: &Tensor, i: i64) -> Tensor {
    x.select(-1, i)
}

#[cfg(test)]
pub(crate) mod testing {
    //! Helpers for the exact-solution tests: streams built from the analytic derivatives.
    use super::multiscale::TwoScale;
    use super::*;
    use tch::{Device, Kind};

    pub fn opts64() -> TensorOpts {
        TensorOpts { kind: Kind::Double, device: Device::Cpu }
    }

    /// Streams [E, 3, N] (u, u', u'') of the two-scale solution at x [E, N, 1].
    pub fn exact_streams_1d(sol: &TwoScale, x: &Tensor) -> Streams {
        let x = coord(x, 0);
        Streams { layout: StreamLayout::second_order(1), parts: vec![Some(sol.u(&x)), Some(sol.du(&x)), Some(sol.ddu(&x))] }
    }

    /// Streams [E, 5, N] in `second_order(2)` order from [u, u_0, u_1, u_00, u_11], each [E, N]
    /// (index 0 is t for time-dependent problems).
    pub fn streams_2d(parts: [Tensor; 5]) -> Streams {
        Streams { layout: StreamLayout::second_order(2), parts: parts.into_iter().map(Some).collect() }
    }

    /// `n` uniform random points per member in `region` of a 2-D domain, [E, n, 2], float64.
    pub fn points_2d(domain: &Domain, region: Region, e: usize, n: usize) -> Tensor {
        let mut all = Vec::new();
        for k in 0..e {
            let mut r = crate::rng::stream(k as u64 + 11, crate::rng::Purpose::Collocation, region as u64);
            all.extend(crate::collocation::sample(domain, region, n, crate::collocation::Sampling::Uniform, &mut r));
        }
        Tensor::from_slice(&all).view([e as i64, n as i64, 2])
    }

    /// Panics unless max |t| < tol.
    pub fn assert_small(t: &Tensor, tol: f64, what: &str) {
        let m = t.abs().max().double_value(&[]);
        assert!(m < tol, "{what}: max |.| = {m:e}, expected < {tol:e}");
    }

    /// Checks the first and pure second derivative streams of `s` against central differences
    /// of `f` (the exact solution, [E, N, 2] -> [E, N]) at `x`. This is what ties the analytic
    /// derivatives (from which the forcings are derived) to the solution itself.
    pub fn assert_derivatives_match_differences(f: &dyn Fn(&Tensor) -> Tensor, s: &Streams, x: &Tensor) {
        for i in 0..2usize {
            let unit = Tensor::from_slice(&[if i == 0 { 1.0f64 } else { 0.0 }, if i == 1 { 1.0 } else { 0.0 }]);
            let (h1, h2) = (1e-6, 1e-4);
            let d1 = (f(&(x + &unit * h1)) - f(&(x - &unit * h1))) / (2.0 * h1);
            let d2 = (f(&(x + &unit * h2)) - f(x) * 2.0 + f(&(x - &unit * h2))) / (h2 * h2);
            let rel = |a: &Tensor, b: &Tensor| (a - b).abs().max().double_value(&[]) / b.abs().max().double_value(&[]).max(1e-300);
            let e1 = rel(&s.d(i), &d1);
            let e2 = rel(&s.dd(i, i), &d2);
            assert!(e1 < 1e-6, "d/dx_{i}: relative difference {e1:e} from central differences");
            assert!(e2 < 1e-5, "d2/dx_{i}^2: relative difference {e2:e} from central differences");
        }
    }
}

#[cfg(test)]
mod tests {
    //! Normalisation seen from a problem: a network that normalises its inputs and its twin
    //! that absorbs the affine map into the first layer are the same function of the physical
    //! inputs, so every residual (which reads physical derivatives) must agree.
    use super::testing::points_2d;
    use super::*;
    use tch::{Device, Kind};
    use crate::model::config::{Init, Normalization};
    use crate::model::mlp::{layer_sizes, Linear, Mlp};
    use crate::model::normalize::Normalizer;
    use crate::rng;

    /// The twin of `mlp` + `norm` that sees physical coordinates: with x_n = (x - shift) scale,
    /// W x_n + b = (W diag(scale)) x + (b - W diag(scale) shift).
    fn twin(mlp: &Mlp, norm: &Normalizer) -> Mlp {
        let mut layers: Vec<Linear> = mlp.layers.iter().map(|l| Linear { w: l.w.detach().copy(), b: l.b.detach().copy() }).collect();
        let w = &layers[0].w * &norm.scale; // [E, out, d] * [E, 1, d]
        let b = &layers[0].b - w.matmul(&norm.shift.transpose(1, 2)).squeeze_dim(-1);
        layers[0] = Linear { w, b };
        Mlp::from_layers(layers, mlp.sizes.clone())
    }

    #[test]
    fn zscore_and_minmax_in_2d_give_the_residuals_of_the_twin_network() {
        let opts = testing::opts64();
        let configs = [
            ProblemConfig::Wave1d(Wave1dConfig::default()),
            ProblemConfig::KleinGordon1d(KleinGordon1dConfig::default()),
            ProblemConfig::Helmholtz2d(Helmholtz2dConfig::default()),
        ];
        let mut non_identity = 0;
        for cfg in &configs {
            let e = 2;
            let problem = ProblemConfig::build(&vec![cfg; e], opts);
            let domain = problem.domain();
            for kind in [Normalization::Zscore, Normalization::Minmax] {
                let mut members: Vec<_> = (0..e).map(|k| (Init::Normal, rng::stream(k as u64 + 3, rng::Purpose::Init, 0))).collect();
                let net = Mlp::init(&layer_sizes(2, 16, 3), &mut members, opts);
                let norm = Normalizer::new(&vec![kind; e], &domain, opts);
                let plain = Normalizer::new(&vec![Normalization::None; e], &domain, opts);
                let twin = twin(&net, &norm);
                let (shift, scale) = Normalizer::coefficients(kind, &domain);
                // minmax on [-1, 1]^2 is the identity; every other case is a real map.
                if shift.iter().chain(&scale).zip([0.0, 0.0, 1.0, 1.0]).any(|(a, b)| (a - b).abs() > 0.1) {
                    non_identity += 1;
                }
                for t in problem.terms() {
                    let x = points_2d(&domain, t.region, e, 64);
                    let layout = problem.layout();
                    let a = problem.residual(t.name, &x, &net.forward(&x, &norm, &layout));
                    let b = problem.residual(t.name, &x, &twin.forward(&x, &plain, &layout));
                    let rel = (&a - &b).abs().max().double_value(&[]) / b.abs().max().double_value(&[]);
                    assert!(rel < 1e-11, "{} {kind:?} term {}: residuals differ by {rel:e} (relative)", cfg.kind_name(), t.name);
                }
            }
        }
        assert_eq!(non_identity, 5, "five of the six cases normalise with a non-trivial map");
    }

    /// The training step gives each term only the streams its residual reads
    /// ([`Problem::term_layout`]), all terms in one segmented pass; every residual must equal
    /// the one from the full layout, and none may read a stream its term layout lacks (that
    /// would panic here).
    #[test]
    fn residuals_from_term_layouts_equal_those_from_the_full_layout() {
        use crate::model::streams::Segment;
        let opts = testing::opts64();
        let configs = [
            ProblemConfig::Darcy1d(Darcy1dConfig { eps: 0.25, coefficient: Default::default() }),
            ProblemConfig::Poisson1d(Poisson1dConfig { eps: 0.25 }),
            ProblemConfig::Regression1d(Regression1dConfig { eps: 0.25 }),
            ProblemConfig::Wave1d(Wave1dConfig::default()),
            ProblemConfig::KleinGordon1d(KleinGordon1dConfig::default()),
            ProblemConfig::Helmholtz2d(Helmholtz2dConfig::default()),
        ];
        for cfg in &configs {
            let e = 2;
            let problem = ProblemConfig::build(&vec![cfg; e], opts);
            let domain = problem.domain();
            let d = domain.dim();
            let mut members: Vec<_> = (0..e).map(|k| (Init::Normal, rng::stream(k as u64 + 11, rng::Purpose::Init, 0))).collect();
            let net = Mlp::init(&layer_sizes(d, 12, 3), &mut members, opts);
            let norm = Normalizer::new(&vec![Normalization::Zscore; e], &domain, opts);
            let layout = problem.layout();
            // Terms in reverse order with different point counts, so segments of every kind
            // sit at every position.
            let terms: Vec<&TermSpec> = problem.terms().iter().rev().collect();
            let xs: Vec<Tensor> = terms
                .iter()
                .enumerate()
                .map(|(k, _)| {
                    let lo = Tensor::from_slice(&domain.lo).to_kind(Kind::Double);
                    let hi = Tensor::from_slice(&domain.hi).to_kind(Kind::Double);
                    Tensor::rand([e as i64, 7 + 5 * k as i64, d as i64], (Kind::Double, Device::Cpu)) * (&hi - &lo) + lo
                })
                .collect();
            let needs: Vec<StreamLayout> = terms.iter().map(|t| problem.term_layout(t.name)).collect();
            for n in &needs {
                assert!(n.is_closed() && layout.contains(n), "{}: term layout {n:?} is not a closed part of {layout:?}", cfg.kind_name());
            }
            let blocks: Vec<(i64, &StreamLayout)> = xs.iter().zip(&needs).map(|(x, l)| (x.size()[1], l)).collect();
            let seg = net.forward_segments(&Tensor::cat(&xs, 1), &norm, &layout, &Segment::merge(&blocks));
            let mut offset = 0;
            for (t, x) in terms.iter().zip(&xs) {
                let n = x.size()[1];
                let a = problem.residual(t.name, x, &seg.points(offset, n));
                let b = problem.residual(t.name, x, &net.forward(x, &norm, &layout));
                let rel = (&a - &b).abs().max().double_value(&[]) / b.abs().max().double_value(&[]).max(1e-300);
                assert!(rel < 1e-12, "{} term {}: segmented residual differs by {rel:e} (relative)", cfg.kind_name(), t.name);
                offset += n;
            }
        }
    }

    #[test]
    fn two_d_problems_parse_with_defaults_and_report_no_eps() {
        for (yaml, dim) in [("kind: wave1d", 2), ("kind: klein_gordon1d\nk: 2", 2), ("kind: helmholtz2d\na2: 3", 2)] {
            let c: ProblemConfig = serde_yaml_ng::from_str(yaml).unwrap();
            assert_eq!(c.input_dim(), dim);
            assert!(c.eps().is_none());
            assert!(c.validate().is_empty(), "{yaml}: {:?}", c.validate());
        }
        let bad: Result<ProblemConfig, _> = serde_yaml_ng::from_str("kind: wave1d\nspeed: 2");
        assert!(bad.is_err(), "unknown keys are errors");
        let c: ProblemConfig = serde_yaml_ng::from_str("kind: wave1d\nc: -1").unwrap();
        assert_eq!(c.validate()[0].path, "problem.c");
    }
}

/// Precise path of a typing error inside `problem:`. serde reports errors of internally
/// tagged enums at the section itself; re-typing the section as its variant's struct gives
/// the field.
pub(crate) fn refine_error(tree: &serde_yaml_ng::Value, path: &[String]) -> Option<(Vec<String>, String)> {
    if path.first().map(String::as_str) != Some("problem") || path.len() > 1 {
        return None;
    }
    let section = tree.get("problem")?;
    let kind = section.get("kind")?.as_str()?;
    match kind {
        "darcy1d" => crate::validation::sweep_refine::<Darcy1dConfig>("problem", section),
        "poisson1d" => crate::validation::sweep_refine::<Poisson1dConfig>("problem", section),
        "regression1d" => crate::validation::sweep_refine::<Regression1dConfig>("problem", section),
        "wave1d" => crate::validation::sweep_refine::<Wave1dConfig>("problem", section),
        "klein_gordon1d" => crate::validation::sweep_refine::<KleinGordon1dConfig>("problem", section),
        "helmholtz2d" => crate::validation::sweep_refine::<Helmholtz2dConfig>("problem", section),
        "expression" => crate::validation::sweep_refine::<ExpressionConfig>("problem", section),
        _ => None,
    }
}
