//! A batched tanh MLP that carries derivative streams forward.
//!
//! Every member of a batch (one job) has its own weights; they are stored stacked, weight
//! `[E, out, in]` and bias `[E, out]`, so a whole batch is evaluated with one batched matmul
//! per layer. This is exact: members share no parameters and every later operation (losses,
//! Adam) is per member or elementwise.
//!
//! Derivatives with respect to the inputs are propagated forward alongside the value (see
//! [`crate::model::streams`]). For a hidden layer z = W h + b, a = tanh(z):
//!   value          a   = tanh(z)
//!   first  (i)     a_i  = tanh'(z) z_i                         with z_i  = W h_i
//!   second (i, j)  a_ij = tanh''(z) z_i z_j + tanh'(z) z_ij    with z_ij = W h_ij
//! and tanh' = 1 - t^2, tanh'' = -2 t (1 - t^2). The bias enters the value stream only. One
//! reverse pass through this graph gives parameter gradients of losses that contain u'' with
//! no nested autograd. [`autograd_streams`] keeps the nested-autograd computation as the
//! reference the tests compare against.

use tch::{Kind, Tensor};

use super::normalize::Normalizer;
use super::streams::{StreamLayout, Streams};
use crate::config::job::Init;
use crate::problem::TensorOpts;
use crate::rng::{self, JobRng};

/// One affine layer of every member.
///
/// # Shapes
/// `w`: [E, out, in]; `b`: [E, out].
pub struct Linear {
    pub w: Tensor,
    pub b: Tensor,
}

/// Input and (post-bias) pre-activation streams of one layer, kept for per-point Jacobians.
///
/// # Shapes
/// `input`: [E, S, N, in]; `pre`: [E, S, N, out].
pub struct LayerRecord {
    pub input: Tensor,
    pub pre: Tensor,
}

pub struct Mlp {
    pub layers: Vec<Linear>,
    /// Layer sizes [d, width, ..., width, 1].
    pub sizes: Vec<usize>,
}

/// Layer sizes of a network with `depth` hidden layers of `width`.
pub fn layer_sizes(input: usize, width: usize, depth: usize) -> Vec<usize> {
    let mut s = vec![input];
    s.extend(std::iter::repeat_n(width, depth));
    s.push(1);
    s
}

impl Mlp {
    /// Initialise one network per member from that member's own random stream.
    ///
    /// `xavier_normal`: weights N(0, 2 / (fan_in + fan_out)), biases 0 (Glorot & Bengio 2010).
    /// `normal`: weights and biases N(0, 1) (paper 003's "normal" initialisation).
    pub fn init(sizes: &[usize], members: &mut [(Init, JobRng)], opts: TensorOpts) -> Mlp {
        let e = members.len() as i64;
        let mut layers = Vec::new();
        for l in 0..sizes.len() - 1 {
            let (fan_in, fan_out) = (sizes[l], sizes[l + 1]);
            let mut w = Vec::with_capacity(members.len() * fan_in * fan_out);
            let mut b = Vec::with_capacity(members.len() * fan_out);
            for (init, rng) in members.iter_mut() {
                match init {
                    Init::XavierNormal => {
                        let std = (2.0 / (fan_in + fan_out) as f64).sqrt();
                        w.extend(rng::normals(rng, fan_in * fan_out).into_iter().map(|z| z * std));
                        b.extend(std::iter::repeat_n(0.0, fan_out));
                    }
                    Init::Normal => {
                        w.extend(rng::normals(rng, fan_in * fan_out));
                        b.extend(rng::normals(rng, fan_out));
                    }
                }
            }
            let w = Tensor::from_slice(&w).view([e, fan_out as i64, fan_in as i64]);
            let b = Tensor::from_slice(&b).view([e, fan_out as i64]);
            layers.push(Linear {
                w: w.to_kind(opts.kind).to_device(opts.device).set_requires_grad(true),
                b: b.to_kind(opts.kind).to_device(opts.device).set_requires_grad(true),
            });
        }
        Mlp { layers, sizes: sizes.to_vec() }
    }

    /// Parameters in a fixed order: w0, b0, w1, b1, ...
    pub fn parameters(&self) -> Vec<Tensor> {
        self.layers.iter().flat_map(|l| [l.w.shallow_clone(), l.b.shallow_clone()]).collect()
    }

    /// Number of parameters of one member.
    pub fn n_params(&self) -> usize {
        self.sizes.windows(2).map(|s| s[0] * s[1] + s[1]).sum()
    }

    pub fn members(&self) -> i64 {
        self.layers[0].w.size()[0]
    }

    /// Detached copy in another precision whose parameters require grad (so intermediate
    /// streams have gradients for the NTK pass) but share nothing with the training graph.
    pub fn to_kind_detached(&self, kind: Kind) -> Mlp {
        Mlp {
            layers: self
                .layers
                .iter()
                .map(|l| Linear {
                    w: l.w.detach().to_kind(kind).copy().set_requires_grad(true),
                    b: l.b.detach().to_kind(kind).copy().set_requires_grad(true),
                })
                .collect(),
            sizes: self.sizes.clone(),
        }
    }

    /// Member `e`'s parameters as (weight [out, in], bias [out]) f64 vectors per layer.
    pub fn export_member(&self, e: i64) -> Vec<(Vec<f64>, Vec<f64>)> {
        self.layers
            .iter()
            .map(|l| {
                let w = l.w.detach().select(0, e).to_kind(Kind::Double).to_device(tch::Device::Cpu).contiguous();
                let b = l.b.detach().select(0, e).to_kind(Kind::Double).to_device(tch::Device::Cpu).contiguous();
                (Vec::<f64>::try_from(w.view([-1])).unwrap(), Vec::<f64>::try_from(b.view([-1])).unwrap())
            })
            .collect()
    }

    /// Forward pass with derivative streams.
    ///
    /// # Shapes
    /// `x`: [E, N, d] physical coordinates; returns streams [E, S, N].
    pub fn forward(&self, x: &Tensor, norm: &Normalizer, layout: &StreamLayout) -> Streams {
        self.forward_impl(x, norm, layout, None)
    }

    /// Forward pass that also returns every layer's input and pre-activation streams.
    pub fn forward_recording(
        &self,
        x: &Tensor,
        norm: &Normalizer,
        layout: &StreamLayout,
    ) -> (Streams, Vec<LayerRecord>) {
        let mut rec = Vec::new();
        let s = self.forward_impl(x, norm, layout, Some(&mut rec));
        (s, rec)
    }

    fn forward_impl(
        &self,
        x: &Tensor,
        norm: &Normalizer,
        layout: &StreamLayout,
        mut record: Option<&mut Vec<LayerRecord>>,
    ) -> Streams {
        assert!(layout.second.is_empty() || layout.first, "second-derivative streams need first ones");
        let (e, n, d) = x.size3().expect("x must be [E, N, d]");
        let s = layout.len() as i64;
        let n1 = layout.n_first() as i64;
        let n2 = layout.second.len() as i64;
        // Input streams: the normalised value, d x_n / d x_i = scale_i e_i, and zero second
        // derivatives (the map is affine).
        let mut parts = vec![norm.apply(x).unsqueeze(1)];
        if n1 > 0 {
            let diag = norm.scale.squeeze_dim(1).diag_embed(0, -2, -1); // [E, d, d]
            parts.push(diag.unsqueeze(2).expand([e, d, n, d], false));
        }
        if n2 > 0 {
            parts.push(Tensor::zeros([e, n2, n, d], (x.kind(), x.device())));
        }
        let mut h = Tensor::cat(&parts, 1); // [E, S, N, d]
        let pure = layout.second.iter().enumerate().all(|(k, &(i, j))| i == j && i == k) && n2 == n1;
        let (idx_i, idx_j) = if n2 > 0 && !pure {
            let ii: Vec<i64> = layout.second.iter().map(|p| p.0 as i64).collect();
            let jj: Vec<i64> = layout.second.iter().map(|p| p.1 as i64).collect();
            (Some(Tensor::from_slice(&ii).to_device(x.device())), Some(Tensor::from_slice(&jj).to_device(x.device())))
        } else {
            (None, None)
        };
        let last = self.layers.len() - 1;
        for (l, layer) in self.layers.iter().enumerate() {
            let (fan_out, fan_in) = (layer.w.size()[1], layer.w.size()[2]);
            let z = h.reshape([e, s * n, fan_in]).matmul(&layer.w.transpose(1, 2)).reshape([e, s, n, fan_out]);
            let bias = layer.b.view([e, 1, 1, fan_out]);
            let z = if s > 1 { Tensor::cat(&[z.narrow(1, 0, 1) + bias, z.narrow(1, 1, s - 1)], 1) } else { z + bias };
            if let Some(rec) = record.as_deref_mut() {
                rec.push(LayerRecord { input: h.shallow_clone(), pre: z.shallow_clone() });
            }
            if l == last {
                return Streams { layout: layout.clone(), data: z.squeeze_dim(-1) };
            }
            let t = z.select(1, 0).tanh();
            let t1: Tensor = 1.0 - &t * &t; // tanh'
            let mut parts = vec![t.unsqueeze(1)];
            if n1 > 0 {
                let z1 = z.narrow(1, 1, n1);
                let t1u = t1.unsqueeze(1);
                parts.push(&t1u * &z1);
                if n2 > 0 {
                    let t2u = (&t * &t1 * -2.0).unsqueeze(1); // tanh''
                    let z2 = z.narrow(1, 1 + n1, n2);
                    let zz = match (&idx_i, &idx_j) {
                        (Some(i), Some(j)) => z1.index_select(1, i) * z1.index_select(1, j),
                        _ => &z1 * &z1,
                    };
                    parts.push(t2u * zz + t1u * z2);
                }
            }
            h = Tensor::cat(&parts, 1);
        }
        unreachable!("an MLP has at least one layer")
    }
}

/// Reference streams by nested reverse-mode autograd (the slow path, kept for tests): u from a
/// value-only forward pass, then du/dx_i and d2u/dx_i dx_j by differentiating with respect to
/// the physical input.
///
/// # Shapes
/// `x`: [E, N, d]; returns [E, S, N] in `layout` order.
pub fn autograd_streams(mlp: &Mlp, x: &Tensor, norm: &Normalizer, layout: &StreamLayout) -> Tensor {
    let x = x.detach().set_requires_grad(true);
    let u = mlp.forward(&x, norm, &StreamLayout::value(layout.dim)).data.select(1, 0); // [E, N]
    let mut out = vec![u.shallow_clone()];
    if layout.first || !layout.second.is_empty() {
        let g = Tensor::run_backward(&[u.sum(Kind::Float)], &[&x], true, true).remove(0); // [E, N, d]
        if layout.first {
            for i in 0..layout.dim {
                out.push(g.select(-1, i as i64));
            }
        }
        for &(i, j) in &layout.second {
            let gi = g.select(-1, i as i64);
            let gg = Tensor::run_backward(&[gi.sum(Kind::Float)], &[&x], true, true).remove(0);
            out.push(gg.select(-1, j as i64));
        }
    }
    Tensor::stack(&out, 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::job::Normalization;
    use crate::problem::Domain;
    use tch::Device;

    fn opts() -> TensorOpts {
        TensorOpts { kind: Kind::Double, device: Device::Cpu }
    }

    fn net(dim: usize, e: usize, init: Init) -> Mlp {
        let mut m: Vec<_> = (0..e).map(|k| (init, rng::stream(k as u64 + 7, rng::Purpose::Init, 0))).collect();
        Mlp::init(&layer_sizes(dim, 16, 3), &mut m, opts())
    }

    fn rel_err(a: &Tensor, b: &Tensor) -> f64 {
        (a - b).abs().max().double_value(&[]) / b.abs().max().double_value(&[]).max(1e-300)
    }

    #[test]
    fn streams_match_nested_autograd_1d_and_2d_with_and_without_normalisation() {
        for dim in [1usize, 2] {
            let domain = Domain { lo: vec![-1.0; dim], hi: vec![2.0; dim], time_dependent: false };
            for norm_kind in [Normalization::None, Normalization::Zscore, Normalization::Minmax] {
                let mlp = net(dim, 3, Init::Normal);
                let norm = Normalizer::new(&[norm_kind; 3], &domain, opts());
                let x = Tensor::rand([3, 20, dim as i64], (Kind::Double, Device::Cpu)) * 3.0 - 1.0;
                let layout = StreamLayout::full_second_order(dim);
                let fwd = mlp.forward(&x, &norm, &layout).data;
                let rev = autograd_streams(&mlp, &x, &norm, &layout);
                for k in 0..layout.len() as i64 {
                    let e = rel_err(&fwd.select(1, k), &rev.select(1, k));
                    assert!(e < 1e-12, "dim {dim} {norm_kind:?} stream {k}: rel err {e}");
                }
            }
        }
    }

    #[test]
    fn derivatives_match_central_finite_differences() {
        let mlp = net(1, 2, Init::XavierNormal);
        let domain = Domain { lo: vec![0.0], hi: vec![1.0], time_dependent: false };
        let norm = Normalizer::new(&[Normalization::None; 2], &domain, opts());
        let x = Tensor::rand([2, 10, 1], (Kind::Double, Device::Cpu));
        let layout = StreamLayout::second_order(1);
        let s = mlp.forward(&x, &norm, &layout);
        let u = |x: &Tensor| mlp.forward(x, &norm, &StreamLayout::value(1)).data.select(1, 0);
        let h = 1e-4;
        let (up, um, u0) = (u(&(&x + h)), u(&(&x - h)), u(&x));
        let d1 = (&up - &um) / (2.0 * h);
        let d2 = (&up - &u0 * 2.0 + &um) / (h * h);
        assert!(rel_err(&s.d(0), &d1) < 1e-7, "u' vs central difference");
        assert!(rel_err(&s.dd(0, 0), &d2) < 1e-5, "u'' vs central difference");
        assert!(rel_err(&s.u(), &u0) < 1e-15);
    }

    #[test]
    fn batched_members_equal_single_member_networks() {
        let mut m: Vec<_> = (0..3).map(|k| (Init::XavierNormal, rng::stream(k, rng::Purpose::Init, 0))).collect();
        let all = Mlp::init(&layer_sizes(1, 8, 2), &mut m, opts());
        let mut one = vec![(Init::XavierNormal, rng::stream(1, rng::Purpose::Init, 0))];
        let single = Mlp::init(&layer_sizes(1, 8, 2), &mut one, opts());
        let domain = Domain { lo: vec![0.0], hi: vec![1.0], time_dependent: false };
        let x = Tensor::rand([1, 5, 1], (Kind::Double, Device::Cpu));
        let xs = x.repeat([3, 1, 1]);
        let layout = StreamLayout::second_order(1);
        let a = all.forward(&xs, &Normalizer::new(&[Normalization::None; 3], &domain, opts()), &layout).data;
        let b = single.forward(&x, &Normalizer::new(&[Normalization::None], &domain, opts()), &layout).data;
        assert!(rel_err(&a.select(0, 1), &b.select(0, 0)) < 1e-14);
    }
}
