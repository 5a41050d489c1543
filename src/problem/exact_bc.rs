//! What `model.exact_bc` needs from a problem: which of its terms the ansatz
//! u = g + phi N ([`crate::model::ansatz`]) satisfies exactly, the distance function phi of
//! the box faces those terms constrain, and the function g that takes the boundary data there.
//!
//! Faces: the spatial boundary (`boundary` terms: both ends in 1-D, all four faces of a 2-D
//! box, the faces x = lo and x = hi of a (t, x) box), and for a time-dependent problem the
//! initial face t = t0 (`initial` terms). Terms reading a derivative (`initial_velocity`)
//! and PDE terms stay loss terms.
//!
//! phi is the R-equivalence conjunction of the faces' signed distances d_f (Sukumar &
//! Srivastava 2022, eq. (21) with m = 1):
//!   phi = 1 / sum_f (1 / d_f) = prod_f d_f / sum_f prod_{f' != f} d_f'
//! normalised to first order: phi = d_f + O(d_f^2) near face f (|grad phi| = 1 there). On
//! (a, b) it is (x - a)(b - x)/(b - a), the 1-D bubble normalised to unit slope at both ends
//! (largest value (b - a)/4 in the middle), so 1-D is the same formula as 2-D and the
//! network's output keeps the size of the solution's distance to its boundary values. phi is
//! not differentiable at the corners of the box (two distances vanish); there the computed
//! value and first derivatives are 0 (the denominator is replaced by 1 where it is 0).
//!
//! g is the transfinite (Boolean-sum, Coons) interpolation of the exact solution's values on
//! the constrained faces (Gordon & Hall 1973): with P_i f = (1 - s_i) f|_{x_i = a_i}
//! + s_i f|_{x_i = b_i} for a pair of faces along input i and Q f = f|_{t = t0} for the
//! initial face, g = (P_1 + P_2 - P_1 P_2) u_exact, or P_x u_exact + Q (u_exact - P_x u_exact)
//! in (t, x). g equals the data on every constrained face whatever they are (faces that
//! differ, non-zero data: klein_gordon1d's u(t, 1) = cos(5 pi t) + t^3), given data that
//! agree at the corners, which data taken from one exact solution do.
//!
//! # Reference
//! N. Sukumar & A. Srivastava, CMAME 389 (2022) 114333, eqs. (9), (19)-(21); W. J. Gordon &
//! C. A. Hall, "Construction of curvilinear co-ordinate systems and applications to mesh
//! generation", IJNME 7 (1973) 461-477; seed 002, eqs. 56-65.

use tch::Tensor;

use super::{Domain, Reads, Region, TermSpec};

/// Names of the terms `model.exact_bc` makes exact: the value-reading terms on the spatial
/// boundary or the initial face.
pub fn exact_terms(terms: &[TermSpec]) -> Vec<&'static str> {
    terms.iter().filter(|t| !t.pde && t.reads == Reads::Value && matches!(t.region, Region::Boundary | Region::Initial)).map(|t| t.name).collect()
}

/// Why `model.exact_bc` cannot be used with these terms, if it cannot.
pub fn check(terms: &[TermSpec], problem: &str) -> Option<String> {
    if exact_terms(terms).is_empty() {
        let names: Vec<&str> = terms.iter().map(|t| t.name).collect();
        return Some(format!(
            "needs a Dirichlet term (u given on the boundary or at t = t0) for the ansatz u = g + phi N to satisfy; {problem} has only {}",
            names.join(", ")
        ));
    }
    None
}

/// One projector of the transfinite interpolation.
#[derive(Debug, Clone, Copy)]
enum Projector {
    /// Linear interpolation along input `i` between its faces x_i = lo and x_i = hi.
    Between { i: usize, lo: f64, hi: f64 },
    /// The trace on the face x_i = at.
    Trace { i: usize, at: f64 },
}

/// phi and g of a box problem.
#[derive(Debug, Clone)]
pub struct BoxAnsatz {
    projectors: Vec<Projector>,
}

impl BoxAnsatz {
    /// For `terms` (see [`exact_terms`]) on `domain`.
    pub fn new(domain: &Domain, terms: &[TermSpec]) -> BoxAnsatz {
        let exact: Vec<Region> = terms.iter().filter(|t| exact_terms(terms).contains(&t.name)).map(|t| t.region).collect();
        let mut projectors = Vec::new();
        if exact.contains(&Region::Boundary) {
            let first_space = usize::from(domain.time_dependent);
            projectors.extend((first_space..domain.dim()).map(|i| Projector::Between { i, lo: domain.lo[i], hi: domain.hi[i] }));
        }
        if exact.contains(&Region::Initial) {
            projectors.push(Projector::Trace { i: 0, at: domain.lo[0] });
        }
        BoxAnsatz { projectors }
    }

    /// The distances d_f >= 0 of `x` to the constrained faces, [E, N] each.
    fn distances(&self, x: &Tensor) -> Vec<Tensor> {
        let c = |i: usize| x.select(-1, i as i64);
        self.projectors
            .iter()
            .flat_map(|p| match *p {
                Projector::Between { i, lo, hi } => vec![c(i) - lo, hi - c(i)],
                Projector::Trace { i, at } => vec![c(i) - at],
            })
            .collect()
    }

    /// phi = prod_f d_f / sum_f prod_{f' != f} d_f' (see the module text).
    ///
    /// # Shapes
    /// `x`: [E, N, d]; returns [E, N].
    pub fn phi(&self, x: &Tensor) -> Tensor {
        let d = self.distances(x);
        let prod = |skip: Option<usize>| d.iter().enumerate().filter(|(k, _)| Some(*k) != skip).fold(d[0].ones_like(), |a, (_, t)| a * t);
        let denom = (0..d.len()).fold(d[0].zeros_like(), |a, f| a + prod(Some(f)));
        let safe = denom.ones_like().where_self(&denom.eq(0.0), &denom);
        prod(None) / safe
    }

    /// g = the Boolean sum of the projectors applied to `solution` (see the module text).
    ///
    /// # Shapes
    /// `x`: [E, N, d]; `solution` maps [E, N, d] to [E, N]; returns [E, N].
    pub fn g(&self, x: &Tensor, solution: &dyn Fn(&Tensor) -> Tensor) -> Tensor {
        boolean_sum(&self.projectors, solution, x)
    }
}

/// (P_1 (+) P_2 (+) ...) f at x, as P_1 f + (P_2 (+) ...)(f - P_1 f).
fn boolean_sum(ops: &[Projector], f: &dyn Fn(&Tensor) -> Tensor, x: &Tensor) -> Tensor {
    let Some((p, rest)) = ops.split_first() else {
        return x.select(-1, 0).zeros_like();
    };
    let pf = project(*p, f, x);
    let remainder = |y: &Tensor| f(y) - project(*p, f, y);
    pf + boolean_sum(rest, &remainder, x)
}

fn project(p: Projector, f: &dyn Fn(&Tensor) -> Tensor, x: &Tensor) -> Tensor {
    match p {
        Projector::Between { i, lo, hi } => {
            let s = (x.select(-1, i as i64) - lo) / (hi - lo);
            f(&with_coordinate(x, i, lo)) * (1.0 - &s) + f(&with_coordinate(x, i, hi)) * s
        }
        Projector::Trace { i, at } => f(&with_coordinate(x, i, at)),
    }
}

/// `x` [E, N, d] with input `i` set to `v` (the other inputs keep their graph).
fn with_coordinate(x: &Tensor, i: usize, v: f64) -> Tensor {
    let d = x.size()[2];
    let cols: Vec<Tensor> = (0..d).map(|c| if c == i as i64 { x.narrow(-1, c, 1).full_like(v) } else { x.narrow(-1, c, 1) }).collect();
    Tensor::cat(&cols, -1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::problem::{testing::points_2d, ProblemConfig};
    use crate::problem::testing::opts64;
    use tch::{Device, Kind};

    fn max_abs(t: &Tensor) -> f64 {
        t.abs().max().double_value(&[])
    }

    /// Hand-computed values: on (0, 1), phi(0.25) = 0.25 * 0.75 / 1 = 0.1875; on the (t, x)
    /// box [0,1]^2 with spatial and initial faces, at (t, x) = (0.5, 0.25) the distances are
    /// 0.25, 0.75, 0.5 and phi = 0.09375 / (0.375 + 0.125 + 0.1875) = 0.136363...
    #[test]
    fn distance_function_values_by_hand() {
        let line = BoxAnsatz { projectors: vec![Projector::Between { i: 0, lo: 0.0, hi: 1.0 }] };
        let x = Tensor::from_slice(&[0.25f64, 0.0, 1.0]).view([1, 3, 1]);
        let phi = Vec::<f64>::try_from(line.phi(&x).view([-1])).unwrap();
        assert!((phi[0] - 0.1875).abs() < 1e-15 && phi[1] == 0.0 && phi[2] == 0.0, "{phi:?}");
        let tx = BoxAnsatz { projectors: vec![Projector::Between { i: 1, lo: 0.0, hi: 1.0 }, Projector::Trace { i: 0, at: 0.0 }] };
        let p = tx.phi(&Tensor::from_slice(&[0.5f64, 0.25, 0.0, 0.0]).view([1, 2, 2]));
        assert!((p.double_value(&[0, 0]) - 0.09375 / 0.6875).abs() < 1e-15);
        assert_eq!(p.double_value(&[0, 1]), 0.0, "a corner: 0, not NaN");
    }

    /// g takes the exact solution's values on every constrained face and phi vanishes there,
    /// for every built-in problem with Dirichlet terms (klein_gordon1d's faces differ and are
    /// not zero), and phi is positive inside.
    #[test]
    fn g_meets_the_data_and_phi_vanishes_on_the_constrained_faces() {
        let yamls = ["{kind: darcy1d, eps: 0.25}", "{kind: wave1d}", "{kind: klein_gordon1d}", "{kind: helmholtz2d, a1: 1.5}"];
        for y in yamls {
            let cfg: ProblemConfig = serde_yaml_ng::from_str(y).unwrap();
            let p = ProblemConfig::build(&[&cfg], opts64());
            let domain = p.domain();
            let a = BoxAnsatz::new(&domain, p.terms());
            let sol = |x: &Tensor| p.exact(x);
            for t in p.terms().iter().filter(|t| exact_terms(p.terms()).contains(&t.name)) {
                let x = if domain.dim() == 1 { Tensor::from_slice(&[0.0f64, 1.0]).view([1, 2, 1]) } else { points_2d(&domain, t.region, 1, 40) };
                let err = max_abs(&(a.g(&x, &sol) - p.exact(&x))) / max_abs(&p.exact(&x)).max(1e-3);
                assert!(err < 1e-12, "{y} {}: g differs from the data by {err:e}", t.name);
                assert!(max_abs(&a.phi(&x)) < 1e-15, "{y} {}: phi does not vanish", t.name);
            }
            let x = points_2d_or_line(&domain);
            assert!(a.phi(&x).min().double_value(&[]) > 0.0, "{y}: phi > 0 inside");
        }
    }

    fn points_2d_or_line(domain: &Domain) -> Tensor {
        if domain.dim() == 1 {
            Tensor::rand([1, 50, 1], (Kind::Double, Device::Cpu)) * 0.98 + 0.01
        } else {
            points_2d(domain, Region::Interior, 1, 50)
        }
    }

    /// Near a face phi is the distance to first order: |grad phi| = 1 at a face's midpoint.
    #[test]
    fn phi_is_normalised_to_first_order() {
        let cfg: ProblemConfig = serde_yaml_ng::from_str("{kind: helmholtz2d}").unwrap();
        let p = ProblemConfig::build(&[&cfg], opts64());
        let a = BoxAnsatz::new(&p.domain(), p.terms());
        let x = Tensor::from_slice(&[-1.0f64, 0.0]).view([1, 1, 2]).set_requires_grad(true);
        let g = Tensor::run_backward(&[a.phi(&x).sum(Kind::Double)], &[&x], false, false).remove(0);
        assert!((g.double_value(&[0, 0, 0]) - 1.0).abs() < 1e-12 && g.double_value(&[0, 0, 1]).abs() < 1e-12, "{g:?}");
    }
}
