//! The training step's fast path: a forward pass without an autograd graph that records a
//! [`Tape`], and the hand-written reverse pass that turns the gradients of a loss with respect
//! to the output streams into parameter gradients.
//!
//! Why not autograd: at PINN sizes on a CPU a training step is a few dozen small tensor
//! operations per layer, and the autograd backward of the stream forward took 2.5x the
//! forward (wave, width 50: 3.9 ms vs 1.6 ms): zero-filled gradients of every split, copies
//! for transposed batched products, a concatenation per layer. Here the step runs the forward
//! graph-free, lets autograd differentiate only the cheap part from the output streams to the
//! loss, and runs the pass below for the network. Both directions write into preallocated
//! layer tensors (`_out` forms and in-place updates of views, which autograd cannot record), so
//! no layer concatenates. The autograd forward in [`crate::model::mlp`] stays the reference
//! (and the path of the NTK, whose per-point Jacobians need the recorded graph); the
//! tests compare both passes with it.
//!
//! # The pass, for one hidden layer
//! Forward (see [`crate::model::mlp`]): z = W h (+ b on the value rows), t = tanh z,
//! s = tanh'(z) = 1 - t^2, and per point
//!   value   a   = t
//!   first   a_i = s z_i
//!   second  a_q = s p_q,   p_q = z_q - 2 t z_i z_j           for q = (i, j)
//! Given the gradients g, g_i, g_q of the loss with respect to a, a_i, a_q:
//!   dz_i = s g_i - 2 t sum_{q containing i} dz_q z_(other index of q)   (2 z_i for q = (i, i))
//!   dz_q = s g_q
//!   dt   = g - 2 t (sum_i g_i z_i + sum_q g_q p_q) - 2 sum_q dz_q z_i z_j
//!   dz   = s dt
//! (the t-terms come from ds/dt = -2 t and from the explicit t in p_q). Then, for all rows at
//! once, dW = dZ^T H, db = sum of the value rows of dZ, and dH = dZ W is the gradient of the
//! previous layer's output. The output layer is linear: its dZ is the output gradient.

use tch::Tensor;

use super::mlp::{input_streams, output_streams, Mlp, SegmentPlan};
use super::normalize::Normalizer;
use super::streams::{Segment, SegmentedStreams, StreamLayout};

/// What [`Tape::backward`] needs from a forward pass.
#[derive(Default)]
pub struct Tape {
    plans: Vec<SegmentPlan>,
    /// Rows of a layer tensor ([`SegmentPlan::row_sizes`]).
    sizes: Vec<i64>,
    /// Members E and points N.
    shape: (i64, i64),
    layers: Vec<TapeLayer>,
}

/// One layer of a [`Tape`].
///
/// # Shapes
/// `input`: [E, R, in], every stream row; for hidden layers `t`: tanh of the value
/// pre-activation, [E, N, out]; `p[s]`: segment s's derivative block of the pre-activation with
/// the second derivatives replaced by p_q, [E, K_s, N_s, out]; `zz[s]`: z_i z_j of its second
/// derivatives, [E, n2_s, N_s, out] (None without second derivatives).
struct TapeLayer {
    input: Tensor,
    t: Option<Tensor>,
    p: Vec<Tensor>,
    zz: Vec<Option<Tensor>>,
}

impl Mlp {
    /// [`Mlp::forward_segments`] without an autograd graph, recording what [`Tape::backward`]
    /// needs. The streams are equal to the autograd forward's (tested to 1e-12 in float64).
    pub fn forward_taped(&self, x: &Tensor, norm: &Normalizer, layout: &StreamLayout, segments: &[Segment]) -> (SegmentedStreams, Tape) {
        tch::no_grad(|| self.forward_taped_impl(x, norm, layout, segments))
    }

    fn forward_taped_impl(&self, x: &Tensor, norm: &Normalizer, layout: &StreamLayout, segments: &[Segment]) -> (SegmentedStreams, Tape) {
        let (e, n, _) = x.size3().expect("x must be [E, N, d]");
        let plans = SegmentPlan::for_pass(n, layout, segments, x.device());
        let sizes = SegmentPlan::row_sizes(n, &plans);
        let seg_sizes: Vec<i64> = plans.iter().map(|p| p.n).collect();
        let mut h = input_streams(x, norm, &plans);
        let mut layers = Vec::with_capacity(self.layers.len());
        let last = self.layers.len() - 1;
        for (l, layer) in self.layers.iter().enumerate() {
            let fan_out = layer.w.size()[1];
            let zr = h.matmul(&layer.w.transpose(1, 2)); // [E, R, out], ours to update in place
            let mut z = zr.split_with_sizes(sizes.as_slice(), 1);
            let _ = z[0].g_add_(&layer.b.view([e, 1, fan_out])); // the bias enters the value rows only
            if l == last {
                layers.push(TapeLayer { input: h, t: None, p: Vec::new(), zz: Vec::new() });
                let streams = output_streams(&z, &plans, layout, segments);
                return (streams, Tape { plans, sizes, shape: (e, n), layers });
            }
            let out = zr.empty_like();
            let a = out.split_with_sizes(sizes.as_slice(), 1);
            let t = z[0].tanh_out(&a[0]);
            let ts = if plans.len() > 1 { t.split_with_sizes(seg_sizes.as_slice(), 1) } else { vec![t.shallow_clone()] };
            let (mut p_blocks, mut zz_blocks) = (Vec::new(), Vec::new());
            // Block b of the derivative rows is row group b + 1 (group 0: the value).
            for (b, (si, p)) in plans.iter().enumerate().filter(|(_, p)| p.k > 0).enumerate() {
                let blk = z[b + 1].view([e, p.k, p.n, fan_out]);
                let a_blk = a[b + 1].view([e, p.k, p.n, fan_out]);
                let tu = ts[si].unsqueeze(1);
                let zz = (p.n2 > 0).then(|| {
                    let k1 = p.k - p.n2;
                    let zf = blk.narrow(1, 0, k1);
                    let zz = match (&p.ii, &p.jj) {
                        (Some(i), Some(j)) => zf.index_select(1, i) * zf.index_select(1, j),
                        _ => zf.square(),
                    };
                    // z_q -> p_q = z_q - 2 t z_i z_j, in place: then a = s * block for the
                    // whole block, first and second derivatives alike.
                    let _ = blk.narrow(1, k1, p.n2).addcmul_(&(&tu * -2.0), &zz);
                    zz
                });
                let _ = Tensor::tanh_backward_grad_input(&a_blk, &blk, &tu);
                p_blocks.push(blk);
                zz_blocks.push(zz);
            }
            layers.push(TapeLayer { input: h, t: Some(t), p: p_blocks, zz: zz_blocks });
            h = out;
        }
        unreachable!("an MLP has at least one layer")
    }
}

impl Tape {
    /// Parameter gradients, in [`Mlp::parameters`] order (w0, b0, w1, b1, ...), of a loss whose
    /// gradients with respect to the output streams are `value_grad` ([E, N]) and
    /// `block_grads[s]` ([E, K_s, N_s] for segment s). A gradient that is undefined (autograd's
    /// answer for a stream the loss does not read) or None counts as zero.
    pub fn backward(&self, mlp: &Mlp, value_grad: &Tensor, block_grads: &[Option<Tensor>]) -> Vec<Tensor> {
        tch::no_grad(|| self.backward_impl(mlp, value_grad, block_grads))
    }

    fn backward_impl(&self, mlp: &Mlp, value_grad: &Tensor, block_grads: &[Option<Tensor>]) -> Vec<Tensor> {
        assert_eq!(self.layers.len(), mlp.layers.len(), "tape of another network");
        let (e, n) = self.shape;
        let like = &self.layers[0].input;
        let rows = |g: Option<&Tensor>, r: i64| match g {
            Some(g) if g.defined() => g.reshape([e, r, 1]),
            _ => like.new_zeros([e, r, 1], (like.kind(), like.device())),
        };
        let mut parts = vec![rows(Some(value_grad), n)];
        for (p, g) in self.plans.iter().zip(block_grads).filter(|(p, _)| p.k > 0) {
            parts.push(rows(g.as_ref(), p.k * p.n));
        }
        let mut dz = if parts.len() > 1 { Tensor::cat(&parts, 1) } else { parts.pop().unwrap() }; // [E, R, 1]
        let mut grads = Vec::with_capacity(2 * self.layers.len());
        for l in (0..self.layers.len()).rev() {
            let layer = &self.layers[l];
            // [E, out, R] x [E, R, in]: all rows of all streams in one batched product.
            grads.push(dz.narrow(1, 0, n).sum_dim_intlist(&[1i64][..], false, dz.kind()));
            grads.push(dz.transpose(1, 2).matmul(&layer.input));
            if l == 0 {
                break;
            }
            let dh = dz.matmul(&mlp.layers[l].w); // [E, R, in]: fresh, updated in place below
            dz = self.activation_backward(&dh, &self.layers[l - 1], e);
        }
        grads.reverse();
        grads
    }

    /// Gradient of a hidden layer's pre-activation rows from `g`, that of its output rows
    /// (consumed: its value rows are updated in place).
    fn activation_backward(&self, g: &Tensor, layer: &TapeLayer, e: i64) -> Tensor {
        let t = layer.t.as_ref().expect("hidden layers record tanh");
        let w = t.size()[2];
        let dz = g.empty_like();
        let gs = g.split_with_sizes(self.sizes.as_slice(), 1);
        let dzs = dz.split_with_sizes(self.sizes.as_slice(), 1);
        let seg_sizes: Vec<i64> = self.plans.iter().map(|p| p.n).collect();
        let (ts, mut g0s) = if self.plans.len() > 1 {
            (t.split_with_sizes(seg_sizes.as_slice(), 1), gs[0].split_with_sizes(seg_sizes.as_slice(), 1))
        } else {
            (vec![t.shallow_clone()], vec![gs[0].shallow_clone()])
        };
        let sum_k = |x: Tensor| x.sum_dim_intlist(&[1i64][..], false, x.kind());
        for (b, (si, p)) in self.plans.iter().enumerate().filter(|(_, p)| p.k > 0).enumerate() {
            let gb = gs[b + 1].view([e, p.k, p.n, w]);
            let dzb = dzs[b + 1].view([e, p.k, p.n, w]);
            let (pb, zz) = (&layer.p[b], &layer.zz[b]);
            let tm2 = &ts[si] * -2.0; // [E, N_s, w]
            // dt += -2 t (sum_i g_i z_i + sum_q g_q p_q)
            let _ = g0s[si].addcmul_(&tm2, &sum_k(&gb * pb));
            // dz = s g for the whole block (first and second derivatives alike).
            let tu = ts[si].unsqueeze(1);
            let _ = Tensor::tanh_backward_grad_input(&dzb, &gb, &tu);
            let Some(zz) = zz else { continue };
            let k1 = p.k - p.n2;
            let (mut dzf, dzq, zf) = (dzb.narrow(1, 0, k1), dzb.narrow(1, k1, p.n2), pb.narrow(1, 0, k1));
            // dt += -2 sum_q dz_q z_i z_j
            let _ = g0s[si].g_add_(&(sum_k(&dzq * zz) * -2.0));
            // dz_i += -2 t sum_{q containing i} dz_q z_other
            let cross = match (&p.ii, &p.jj) {
                (Some(i), Some(j)) => zf.zeros_like().index_add(1, i, &(&dzq * zf.index_select(1, j))).index_add(1, j, &(&dzq * zf.index_select(1, i))),
                _ => &dzq * &zf * 2.0,
            };
            let _ = dzf.addcmul_(&tm2.unsqueeze(1), &cross);
        }
        let _ = Tensor::tanh_backward_grad_input(&dzs[0], &gs[0], t);
        dz
    }
}

#[cfg(test)]
mod tests {
    use crate::model::config::{Init, Normalization};
    use crate::model::mlp::{layer_sizes, Mlp};
    use crate::model::normalize::Normalizer;
    use crate::model::streams::{Segment, SegmentedStreams, StreamLayout};
    use crate::domain::Domain;
    use crate::tensor::TensorOpts;
    use crate::rng;
    use tch::{Device, Kind, Tensor};

    fn opts() -> TensorOpts {
        TensorOpts { kind: Kind::Double, device: Device::Cpu }
    }

    /// A loss that reads every stream with its own random weight per entry: sum c * s^2 / 2
    /// over the value and every block, so that dL/ds = c * s (nonlinear in the streams).
    fn loss_and_grads(s: &SegmentedStreams, c: &[Tensor]) -> (Tensor, Tensor, Vec<Option<Tensor>>) {
        let mut loss = (&s.value.square() * &c[0]).sum(Kind::Double) * 0.5;
        let gv = &s.value * &c[0];
        let mut gb = Vec::new();
        for (b, cb) in s.blocks.iter().zip(&c[1..]) {
            match b {
                Some(b) => {
                    loss = loss + (&b.square() * cb).sum(Kind::Double) * 0.5;
                    gb.push(Some(b * cb));
                }
                None => gb.push(None),
            }
        }
        (loss, gv.detach(), gb.into_iter().map(|g| g.map(|g| g.detach())).collect())
    }

    /// The hand-written pass equals autograd through the same forward, for 1-D and 2-D
    /// inputs, every normalisation, both initialisations, and segments mixing value-only,
    /// first-order, pure and mixed second-order layouts.
    #[test]
    fn reverse_pass_equals_autograd() {
        for dim in [1usize, 2] {
            let full = StreamLayout::full_second_order(dim);
            let mut segments = vec![
                Segment { points: 7, layout: StreamLayout::second_order(dim) },
                Segment { points: 5, layout: StreamLayout::first_order(dim, &[dim - 1]) },
                Segment { points: 4, layout: StreamLayout::value(dim) },
            ];
            if dim == 2 {
                segments.push(Segment { points: 6, layout: full.clone() });
                segments.push(Segment { points: 3, layout: StreamLayout { dim, first: vec![1, 0], second: vec![(0, 1), (1, 1)] } });
            }
            let n: i64 = segments.iter().map(|s| s.points).sum();
            let domain = Domain { lo: vec![-1.0; dim], hi: vec![2.0; dim], time_dependent: false };
            for (norm_kind, init) in [(Normalization::None, Init::Normal), (Normalization::Zscore, Init::XavierNormal), (Normalization::Minmax, Init::Normal)] {
                let e = 3;
                let mut m: Vec<_> = (0..e).map(|k| (init, rng::stream(k as u64 + 11, rng::Purpose::Init, 0))).collect();
                let mlp = Mlp::init(&layer_sizes(dim, 9, 3), &mut m, opts());
                let norm = Normalizer::new(&[norm_kind; 3], &domain, opts());
                let x = Tensor::rand([e as i64, n, dim as i64], (Kind::Double, Device::Cpu)) * 3.0 - 1.0;
                let mut c = vec![Tensor::rand([e as i64, n], (Kind::Double, Device::Cpu))];
                c.extend(segments.iter().map(|s| Tensor::rand([e as i64, s.derivatives(), s.points], (Kind::Double, Device::Cpu))));

                let s = mlp.forward_segments(&x, &norm, &full, &segments);
                let (loss, _, _) = loss_and_grads(&s, &c);
                let want = Tensor::run_backward(&[loss], &mlp.parameters(), false, false);

                let (st, tape) = mlp.forward_taped(&x, &norm, &full, &segments);
                let close = |a: &Tensor, b: &Tensor| (a - b).abs().max().double_value(&[]) <= 1e-12 * b.abs().max().double_value(&[]);
                assert!(close(&st.value, &s.value), "dim {dim} {norm_kind:?}: taped value");
                for (a, b) in st.blocks.iter().zip(&s.blocks) {
                    assert_eq!(a.is_some(), b.is_some());
                    if let (Some(a), Some(b)) = (a, b) {
                        assert!(close(a, b), "dim {dim} {norm_kind:?}: taped derivative block");
                    }
                }
                let (_, gv, gb) = loss_and_grads(&st, &c);
                let got = tape.backward(&mlp, &gv, &gb);
                assert_eq!(got.len(), want.len());
                for (k, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert_eq!(g.size(), w.size(), "parameter {k}");
                    let err = (g - w).abs().max().double_value(&[]) / w.abs().max().double_value(&[]);
                    assert!(err < 1e-12, "dim {dim} {norm_kind:?} parameter {k}: rel err {err}");
                }
            }
        }
    }

    /// Streams the loss does not read (undefined or absent gradients) contribute nothing.
    #[test]
    fn unread_streams_have_zero_gradient() {
        let dim = 2;
        let mut m: Vec<_> = (0..2).map(|k| (Init::XavierNormal, rng::stream(k, rng::Purpose::Init, 0))).collect();
        let mlp = Mlp::init(&layer_sizes(dim, 6, 2), &mut m, opts());
        let domain = Domain { lo: vec![0.0; dim], hi: vec![1.0; dim], time_dependent: false };
        let norm = Normalizer::new(&[Normalization::None; 2], &domain, opts());
        let layout = StreamLayout::second_order(dim);
        let segments = vec![Segment { points: 5, layout: layout.clone() }];
        let x = Tensor::rand([2, 5, dim as i64], (Kind::Double, Device::Cpu));
        let s = mlp.forward_segments(&x, &norm, &layout, &segments);
        let want = Tensor::run_backward(&[s.value.sum(Kind::Double)], &mlp.parameters(), false, false);
        let (s, tape) = mlp.forward_taped(&x, &norm, &layout, &segments);
        for blocks in [vec![None], vec![Some(Tensor::new())], vec![Some(s.blocks[0].as_ref().unwrap().zeros_like())]] {
            let got = tape.backward(&mlp, &s.value.ones_like(), &blocks);
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs().max().double_value(&[]) < 1e-13);
            }
        }
        // Nothing read: every gradient is zero.
        for g in tape.backward(&mlp, &Tensor::new(), &[None]) {
            assert_eq!(g.abs().max().double_value(&[]), 0.0);
        }
    }
}
