//! The exact-boundary-condition ansatz u = g + phi N (`model.exact_bc`): the network N is
//! multiplied by a distance function phi that vanishes on the constrained faces and shifted
//! by a function g that takes the boundary data there, so u meets the Dirichlet conditions
//! whatever the parameters are.
//!
//! The network's derivative streams pass through the ansatz by the general Leibniz rule: for
//! a stream differentiating along the inputs v = (v_1, ..., v_m) (m <= 3),
//!   u_v = g_v + sum_{A subset of the positions of v} phi_{v[A]} N_{v[not A]}
//! e.g. u_i = g_i + phi_i N + phi N_i and
//! u_ij = g_ij + phi_ij N + phi_i N_j + phi_j N_i + phi N_ij. phi and g do not depend on the
//! parameters: their streams are constants of the step, computed by nested autograd of their
//! closed forms with respect to x ([`function_streams`]); what phi and g are for a problem is
//! the problem's business ([`crate::problem::exact_bc`]).
//!
//! # Reference
//! N. Sukumar & A. Srivastava, "Exact imposition of boundary conditions with distance
//! functions in physics-informed deep neural networks", CMAME 389 (2022) 114333, eqs. (9)
//! and (21); seed 002, eqs. 56-65.

use tch::{Kind, Tensor};

use super::streams::{Stream, Streams};

/// u = g + phi N on every stream `net` carries.
///
/// # Shapes
/// Every carried part of `net`, `phi`, `g`: [E, N]; `phi` and `g` must carry every stream
/// `net` carries (and, for the Leibniz sums, their sub-streams, which a closed layout has).
pub fn apply(net: &Streams, phi: &Streams, g: &Streams) -> Streams {
    let streams = net.layout.streams();
    let parts = streams
        .iter()
        .zip(&net.parts)
        .map(|(&s, part)| {
            part.as_ref().map(|_| {
                let v = s.indices();
                let m = v.len();
                let mut u = g.stream(s);
                for mask in 0..(1usize << m) {
                    let on: Vec<usize> = (0..m).filter(|b| mask & (1 << b) != 0).map(|b| v[b]).collect();
                    let off: Vec<usize> = (0..m).filter(|b| mask & (1 << b) == 0).map(|b| v[b]).collect();
                    u = u + phi.stream(Stream::from_indices(&on)) * net.stream(Stream::from_indices(&off));
                }
                u
            })
        })
        .collect();
    Streams { layout: net.layout.clone(), parts }
}

/// The streams of a known function f of the inputs at `x` (those `like` carries), by nested
/// reverse-mode autograd of `f` with respect to x, detached: constants of the training step.
/// Derivatives of an f that does not depend on an input are zeros.
///
/// # Shapes
/// `x`: [E, N, d]; `f` maps [E, N, d] to [E, N]; returns parts [E, N] where `like` has them.
pub fn function_streams(f: &dyn Fn(&Tensor) -> Tensor, x: &Tensor, like: &Streams) -> Streams {
    tch::with_grad(|| {
        let x = x.detach().set_requires_grad(true);
        let s = streams_at(f, &x, like);
        Streams { layout: s.layout, parts: s.parts.into_iter().map(|p| p.map(|t| t.detach())).collect() }
    })
}

/// [`function_streams`] at a leaf `x` that requires grad, keeping the graph (so the streams
/// can be differentiated with respect to x once more: the tests' references).
pub fn streams_at(f: &dyn Fn(&Tensor) -> Tensor, x: &Tensor, like: &Streams) -> Streams {
    let value = f(x);
    // Derivatives along sorted index lists, each from its prefix.
    let mut known: Vec<(Vec<usize>, Tensor)> = vec![(Vec::new(), value)];
    let mut get = |v: &[usize]| -> Tensor {
        for len in 1..=v.len() {
            if known.iter().any(|(k, _)| k[..] == v[..len]) {
                continue;
            }
            let prev = known.iter().find(|(k, _)| k[..] == v[..len - 1]).map(|(_, t)| t.shallow_clone()).expect("prefix computed first");
            let d = if prev.requires_grad() {
                let g = Tensor::run_backward(&[prev.sum(Kind::Double)], &[x], true, true).remove(0);
                if g.defined() { g.select(-1, v[len - 1] as i64) } else { prev.zeros_like() }
            } else {
                prev.zeros_like()
            };
            known.push((v[..len].to_vec(), d));
        }
        known.iter().find(|(k, _)| k[..] == v[..]).map(|(_, t)| t.shallow_clone()).unwrap()
    };
    let parts = like.layout.streams().iter().zip(&like.parts).map(|(s, p)| p.as_ref().map(|_| get(&s.indices()))).collect();
    Streams { layout: like.layout.clone(), parts }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::streams::StreamLayout;
    use tch::Device;

    /// The Leibniz sums against nested autograd of g + phi N for closed-form phi, g and N in
    /// 2-D, up to third derivatives, in float64.
    #[test]
    fn ansatz_streams_equal_nested_autograd_of_the_product() {
        let x = Tensor::rand([2, 9, 2], (Kind::Double, Device::Cpu));
        let phi = |x: &Tensor| x.select(-1, 0) * (1.0 - x.select(-1, 0)) * (x.select(-1, 1) * 3.0).sin();
        let g = |x: &Tensor| (x.select(-1, 0) * 2.0 + x.select(-1, 1)).exp();
        let n = |x: &Tensor| (x.select(-1, 0) * x.select(-1, 1) * 5.0).tanh() + x.select(-1, 1).square();
        let layout = StreamLayout { third: vec![(0, 0, 0), (0, 0, 1), (0, 1, 1), (1, 1, 1)], ..StreamLayout::full_second_order(2) };
        let like = Streams { layout: layout.clone(), parts: layout.streams().iter().map(|_| Some(Tensor::zeros([2, 9], (Kind::Double, Device::Cpu)))).collect() };
        let u = apply(&function_streams(&n, &x, &like), &function_streams(&phi, &x, &like), &function_streams(&g, &x, &like));
        let want = function_streams(&|x: &Tensor| g(x) + phi(x) * n(x), &x, &like);
        assert_eq!(layout.third.len(), 4);
        for (k, s) in layout.streams().iter().enumerate() {
            let (a, b) = (u.parts[k].as_ref().unwrap(), want.parts[k].as_ref().unwrap());
            let err = (a - b).abs().max().double_value(&[]) / b.abs().max().double_value(&[]).max(1e-300);
            assert!(err < 1e-10, "{s:?}: relative error {err}");
        }
    }
}
