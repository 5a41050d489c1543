//! A problem seen through the schemes that change its loss terms: exact Dirichlet conditions
//! (`model.exact_bc`, [`super::exact_bc`]: the terms they satisfy leave the term list, and every
//! residual and the prediction read u = g + phi N instead of the network N) and gradient-
//! enhanced residuals (`loss.gradient_enhanced`, [`super::gradient`]: the term `residual_grad`
//! joins, and the layout grows by one derivative order). Without either, the problem is used
//! as it is (the same object, so existing numerics are untouched).
//!
//! The terms dropped by `exact_bc` have no training points, no part in the total loss, no
//! balancer weight and no NTK block: the job file lists them in the root attribute
//! `exact_terms`. Their loss is still reported (the trainer measures it through this problem,
//! whose residual of such a term reads the ansatz: zero up to rounding).

use tch::Tensor;

use super::exact_bc::{self, BoxAnsatz};
use super::gradient;
use super::{Domain, Equation, Problem, ProblemConfig, TensorOpts, TermSpec};
use crate::model::ansatz;
use crate::model::streams::{StreamLayout, Streams};

/// Which of the term-changing schemes a batch uses (all members share them: batch key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Schemes {
    pub exact_bc: bool,
    pub gradient_enhanced: bool,
}

impl Schemes {
    pub fn any(&self) -> bool {
        self.exact_bc || self.gradient_enhanced
    }
}

/// The loss terms of `problem` under `schemes`, or why the schemes do not apply (the message
/// is about `model.exact_bc` or `loss.gradient_enhanced`: the path comes with it).
pub fn terms(problem: &ProblemConfig, schemes: Schemes) -> Result<Vec<TermSpec>, (&'static str, String)> {
    let mut terms = problem.terms();
    if schemes.exact_bc {
        if let Some(why) = exact_bc::check(&terms, problem.label()) {
            return Err(("model.exact_bc", why));
        }
        let exact = exact_bc::exact_terms(&terms);
        terms.retain(|t| !exact.contains(&t.name));
    }
    if schemes.gradient_enhanced {
        let Some(pde) = terms.iter().find(|t| t.pde).copied() else {
            return Err(("loss.gradient_enhanced", format!("needs a PDE residual to differentiate; {} has none", problem.label())));
        };
        gradient::spatial_input(problem.input_dim(), problem.time_dependent()).map_err(|m| ("loss.gradient_enhanced", m))?;
        terms.push(gradient::term(&pde));
    }
    Ok(terms)
}

/// The runtime problem of a batch under its schemes.
pub fn build(members: &[&ProblemConfig], schemes: Schemes, opts: TensorOpts) -> Box<dyn Problem> {
    let inner = ProblemConfig::build(members, opts);
    if !schemes.any() {
        return inner;
    }
    let domain = inner.domain();
    let terms = terms(members[0], schemes).unwrap_or_else(|(path, m)| panic!("{path}: {m} (validation lets no such job through)"));
    let ansatz = schemes.exact_bc.then(|| BoxAnsatz::new(&domain, inner.terms()));
    let grad = schemes
        .gradient_enhanced
        .then(|| {
            let pde = inner.terms().iter().find(|t| t.pde).expect("checked").name;
            (pde, gradient::spatial_input(domain.dim(), domain.time_dependent).expect("checked"))
        });
    Box::new(Schemed { inner, terms, ansatz, grad })
}

/// See the module text.
pub struct Schemed {
    inner: Box<dyn Problem>,
    terms: Vec<TermSpec>,
    ansatz: Option<BoxAnsatz>,
    /// The PDE term and the spatial input of `residual_grad`.
    grad: Option<(&'static str, usize)>,
}

impl Schemed {
    /// The solution's streams from the network's: u = g + phi N under exact conditions.
    fn solution_streams(&self, x: &Tensor, u: &Streams) -> Option<Streams> {
        let a = self.ansatz.as_ref()?;
        let phi = ansatz::function_streams(&|y: &Tensor| a.phi(y), x, u);
        let g = ansatz::function_streams(&|y: &Tensor| a.g(y, &|z: &Tensor| self.inner.exact(z)), x, u);
        Some(ansatz::apply(u, &phi, &g))
    }
}

impl Equation for Schemed {
    fn domain(&self) -> Domain {
        self.inner.domain()
    }
    fn terms(&self) -> &[TermSpec] {
        &self.terms
    }
    fn layout(&self) -> StreamLayout {
        match self.grad {
            Some((_, i)) => self.inner.layout().grown(i),
            None => self.inner.layout(),
        }
    }
    fn solution(&self, x: &Tensor) -> Tensor {
        self.inner.solution(x)
    }
    fn solution_t(&self, x: &Tensor) -> Tensor {
        self.inner.solution_t(x)
    }
    fn forcing(&self, x: &Tensor) -> Option<Tensor> {
        self.inner.forcing(x)
    }
    fn eps(&self) -> Option<Tensor> {
        self.inner.eps()
    }
    fn layout_of(&self, term: &str) -> StreamLayout {
        if term == gradient::NAME { self.layout() } else { self.inner.layout_of(term) }
    }
    fn residual_of(&self, term: &str, x: &Tensor, u: &Streams) -> Tensor {
        let ansatz = self.solution_streams(x, u);
        let u = ansatz.as_ref().unwrap_or(u);
        match self.grad {
            Some((pde, i)) if term == gradient::NAME => gradient::residual_derivative(self.inner.as_ref(), pde, &self.inner.layout(), x, u, i),
            _ => self.inner.residual(term, x, u),
        }
    }
    fn prediction(&self, x: &Tensor, u: &Streams) -> Tensor {
        self.solution_streams(x, u).map_or_else(|| u.u(), |s| s.u())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ansatz::function_streams;
    use crate::model::config::Normalization;
    use crate::model::normalize::Normalizer;
    use crate::problem::testing::{opts64, points_2d};
    use crate::problem::Region;
    use tch::{Device, Kind};

    /// Every residual of a problem under exact conditions (and gradient-enhanced residuals)
    /// from the network's forward streams through the ansatz equals the plain problem's
    /// residual of the streams of x -> g(x) + phi(x) N(x) taken by nested autograd of the
    /// whole composite, to 1e-10 in float64: 1-D, (t, x) with the initial face, faces with
    /// different non-zero data (klein_gordon1d) and a 2-D box.
    #[test]
    fn residuals_through_the_ansatz_equal_nested_autograd_of_the_composite() {
        let cases = [
            ("{kind: darcy1d, eps: 0.25}", true, true),
            ("{kind: poisson1d, eps: 0.5}", true, false),
            ("{kind: wave1d}", true, true),
            ("{kind: klein_gordon1d}", true, true),
            ("{kind: helmholtz2d, a1: 1.5}", true, false),
            ("{kind: darcy1d, eps: 0.25}", false, true),
        ];
        for (yaml, exact_bc, grad) in cases {
            let cfg: ProblemConfig = serde_yaml_ng::from_str(yaml).unwrap();
            let schemes = Schemes { exact_bc, gradient_enhanced: grad };
            let p = build(&[&cfg, &cfg], schemes, opts64());
            let plain = ProblemConfig::build(&[&cfg, &cfg], opts64());
            let domain = p.domain();
            let d = domain.dim();
            let net = crate::model::testing::network(&crate::model::config::ModelConfig { width: 8, depth: 2, ..Default::default() }, d, 2);
            let norm = Normalizer::new(&[Normalization::Zscore; 2], &domain, opts64());
            let x = if d == 1 { Tensor::rand([2, 11, 1], (Kind::Double, Device::Cpu)) } else { points_2d(&domain, Region::Interior, 2, 11) };
            let layout = p.layout();
            let streams = net.forward(&x, &norm, &layout);
            let a = BoxAnsatz::new(&domain, plain.terms());
            let composite = |y: &Tensor| {
                let n = net.forward(y, &norm, &StreamLayout::value(d)).u();
                if exact_bc { a.g(y, &|z: &Tensor| plain.exact(z)) + a.phi(y) * n } else { n }
            };
            let reference = function_streams(&composite, &x, &streams);
            for t in p.terms() {
                let got = p.residual(t.name, &x, &streams);
                let want = if t.name == gradient::NAME {
                    // d r / dx_i by autograd of the composite's residual (its streams kept in
                    // the graph of x).
                    let i = gradient::spatial_input(d, domain.time_dependent).unwrap();
                    tch::with_grad(|| {
                        let xl = x.detach().set_requires_grad(true);
                        let base = plain.layout();
                        let like = Streams { layout: base.clone(), parts: base.streams().iter().map(|_| Some(x.select(-1, 0))).collect() };
                        let r = plain.residual("residual", &xl, &crate::model::ansatz::streams_at(&composite, &xl, &like));
                        Tensor::run_backward(&[r.sum(Kind::Double)], &[&xl], false, false).remove(0).select(-1, i as i64)
                    })
                } else {
                    plain.residual(t.name, &x, &reference)
                };
                let err = (&got - &want).abs().max().double_value(&[]) / want.abs().max().double_value(&[]).max(1e-300);
                assert!(err < 1e-10, "{yaml} exact_bc {exact_bc} grad {grad}, term {}: relative error {err:e}", t.name);
            }
            let names: Vec<&str> = p.terms().iter().map(|t| t.name).collect();
            assert_eq!(names.contains(&"boundary"), !exact_bc, "{yaml}: exact terms leave the list");
            assert_eq!(names.contains(&"residual_grad"), grad, "{yaml}");
            if exact_bc {
                // The prediction meets the boundary data.
                let xb = if d == 1 { Tensor::from_slice(&[0.0f64, 1.0, 0.0, 1.0]).view([2, 2, 1]) } else { points_2d(&domain, Region::Boundary, 2, 12) };
                let u = p.predict(&xb, &net.forward(&xb, &norm, &StreamLayout::value(d)));
                let err = (&u - plain.exact(&xb)).abs().max().double_value(&[]);
                assert!(err < 1e-12, "{yaml}: boundary error {err:e}");
            }
        }
    }
}
