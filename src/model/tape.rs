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

use tch::{TchError, Tensor};

use super::activation::Activation;
use super::mlp::{input_streams, output_streams, per_segment, Mlp, SegmentPlan};
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
/// `input`: [E, R, in], every stream row; `w`: the weight the layer multiplied with (the
/// effective one under adaptive slopes), [E, out, in]; `act`: what the hidden layer's
/// activation needs (None for the output layer).
struct TapeLayer {
    input: Tensor,
    w: Tensor,
    act: Option<ActTape>,
}

/// The activation's record of one hidden layer.
///
/// # Shapes
/// tanh: `t` = tanh of the value pre-activation, [E, N, out]; `p[s]`: segment s's derivative
/// block of the pre-activation with the second derivatives replaced by p_q,
/// [E, K_s, N_s, out]. Other activations: `y` = the value pre-activation [E, N, out];
/// `blocks[s]`: segment s's derivative block of the pre-activation, [E, K_s, N_s, out]. Both:
/// `zz[s]`: z_i z_j of its second derivatives, [E, n2_s, N_s, out] (None without second
/// derivatives).
enum ActTape {
    Tanh { t: Tensor, p: Vec<Tensor>, zz: Vec<Option<Tensor>> },
    Smooth { act: Activation, y: Tensor, blocks: Vec<Tensor>, zz: Vec<Option<Tensor>> },
}

impl Mlp {
    /// [`Mlp::forward_segments`] without an autograd graph, recording what [`Tape::backward`]
    /// needs. The streams are equal to the autograd forward's (tested to 1e-12 in float64).
    ///
    /// Third-derivative streams (gradient-enhanced residuals) are not taped: such a layout
    /// trains by autograd ([`StreamLayout::tapeable`]).
    pub fn forward_taped(&self, x: &Tensor, norm: &Normalizer, layout: &StreamLayout, segments: &[Segment]) -> (SegmentedStreams, Tape) {
        assert!(layout.tapeable(), "the taped pass carries derivatives up to second order");
        tch::no_grad(|| self.forward_taped_impl(x, norm, layout, segments))
    }

    fn forward_taped_impl(&self, x: &Tensor, norm: &Normalizer, layout: &StreamLayout, segments: &[Segment]) -> (SegmentedStreams, Tape) {
        let (e, n, _) = x.size3().expect("x must be [E, N, d]");
        let plans = SegmentPlan::for_pass(n, layout, segments, x.device());
        let sizes = SegmentPlan::row_sizes(n, &plans);
        let mut h = input_streams(x, norm, &plans, self.fourier.as_ref());
        let eff = self.effective_layers();
        let mut layers = Vec::with_capacity(eff.len());
        let last = eff.len() - 1;
        for (l, layer) in eff.into_iter().enumerate() {
            let fan_out = layer.w.size()[1];
            let zr = h.matmul(&layer.w.transpose(1, 2)); // [E, R, out], ours to update in place
            let mut z = zr.split_with_sizes(sizes.as_slice(), 1);
            let _ = z[0].g_add_(&layer.b.view([e, 1, fan_out])); // the bias enters the value rows only
            if l == last {
                layers.push(TapeLayer { input: h, w: layer.w, act: None });
                let streams = output_streams(&z, &plans, layout, segments);
                return (streams, Tape { plans, sizes, shape: (e, n), layers });
            }
            let out = zr.empty_like();
            let a = out.split_with_sizes(sizes.as_slice(), 1);
            let act = match self.activation {
                Activation::Tanh => tanh_taped(&z, &a, &plans, e, fan_out),
                act => smooth_taped(act, &z, &a, &plans, e, fan_out),
            };
            layers.push(TapeLayer { input: h, w: layer.w, act: Some(act) });
            h = out;
        }
        unreachable!("an MLP has at least one layer")
    }
}

/// A tanh layer's forward into the preallocated output rows `a` (see the module docs).
fn tanh_taped(z: &[Tensor], a: &[Tensor], plans: &[SegmentPlan], e: i64, fan_out: i64) -> ActTape {
    let t = z[0].tanh_out(&a[0]);
    let ts = per_segment(&t, plans);
    let (mut p_blocks, mut zz_blocks) = (Vec::new(), Vec::new());
    // Block b of the derivative rows is row group b + 1 (group 0: the value).
    for (b, (si, p)) in plans.iter().enumerate().filter(|(_, p)| p.k > 0).enumerate() {
        let blk = z[b + 1].view([e, p.k, p.n, fan_out]);
        let a_blk = a[b + 1].view([e, p.k, p.n, fan_out]);
        let tu = ts[si].unsqueeze(1);
        let zz = (p.n2 > 0).then(|| {
            let k1 = p.k - p.n2;
            let zz = p.cross(&blk.narrow(1, 0, k1));
            // z_q -> p_q = z_q - 2 t z_i z_j, in place: then a = s * block for the
            // whole block, first and second derivatives alike.
            let _ = blk.narrow(1, k1, p.n2).addcmul_(&(&tu * -2.0), &zz);
            zz
        });
        let _ = Tensor::tanh_backward_grad_input(&a_blk, &blk, &tu);
        p_blocks.push(blk);
        zz_blocks.push(zz);
    }
    ActTape::Tanh { t, p: p_blocks, zz: zz_blocks }
}

/// Any other activation's forward into `a`: a = sigma(y), a_i = s1 y_i,
/// a_q = s1 y_q + s2 y_i y_j (s_k = sigma^(k)(y)); the pre-activation rows are kept as they are.
fn smooth_taped(act: Activation, z: &[Tensor], a: &[Tensor], plans: &[SegmentPlan], e: i64, fan_out: i64) -> ActTape {
    let f = act.smooth();
    let mut a0 = a[0].shallow_clone();
    a0.copy_(&f.value(&z[0]));
    let (mut blocks, mut zz_blocks) = (Vec::new(), Vec::new());
    if plans.iter().any(|p| p.k > 0) {
        let order = if plans.iter().any(|p| p.n2 > 0) { 2 } else { 1 };
        let d: Vec<Vec<Tensor>> = f.derivatives(&z[0], order).iter().map(|t| per_segment(t, plans)).collect();
        for (b, (si, p)) in plans.iter().enumerate().filter(|(_, p)| p.k > 0).enumerate() {
            let blk = z[b + 1].view([e, p.k, p.n, fan_out]);
            let a_blk = a[b + 1].view([e, p.k, p.n, fan_out]);
            let s1 = d[0][si].unsqueeze(1);
            let _ = blk.mul_out(&a_blk, &s1);
            let zz = (p.n2 > 0).then(|| {
                let k1 = p.k - p.n2;
                let zz = p.cross(&blk.narrow(1, 0, k1));
                let _ = a_blk.narrow(1, k1, p.n2).addcmul_(&d[1][si].unsqueeze(1), &zz);
                zz
            });
            blocks.push(blk);
            zz_blocks.push(zz);
        }
    }
    ActTape::Smooth { act, y: z[0].shallow_clone(), blocks, zz: zz_blocks }
}

impl SegmentedStreams {
    /// Make the output streams of a taped forward autograd leaves: a loss built from them is
    /// then differentiated by autograd down to the streams only, and
    /// [`Tape::parameter_gradients`] completes the pass.
    pub fn make_leaves(&mut self) {
        self.value = self.value.set_requires_grad(true);
        for b in self.blocks.iter_mut().flatten() {
            *b = b.set_requires_grad(true);
        }
    }
}

impl Tape {
    /// Gradients of `loss` (built from `streams`, this tape's output streams made leaves by
    /// [`SegmentedStreams::make_leaves`]) with respect to the network parameters
    /// ([`Mlp::parameters`] order) followed by `extra` (tensors the loss reaches directly, e.g.
    /// a balancer's learned weights): autograd from the loss to the streams, then
    /// [`Tape::backward`]. `keep_graph`: keep the loss's graph for another pass.
    pub fn parameter_gradients(&self, mlp: &Mlp, streams: &SegmentedStreams, loss: &Tensor, extra: &[Tensor], keep_graph: bool) -> Result<Vec<Tensor>, TchError> {
        let mut wrt: Vec<&Tensor> = vec![&streams.value];
        wrt.extend(streams.blocks.iter().flatten());
        wrt.extend(extra);
        let mut g = Tensor::f_run_backward(&[loss], &wrt, keep_graph, false)?.into_iter();
        let value = g.next().expect("one gradient per input");
        let blocks: Vec<Option<Tensor>> = streams.blocks.iter().map(|b| b.as_ref().and_then(|_| g.next())).collect();
        let mut grads = self.backward(mlp, &value, &blocks);
        grads.extend(g);
        Ok(grads)
    }

    /// Parameter gradients, in [`Mlp::parameters`] order (w0, b0, w1, b1, ..., then the
    /// slopes), of a loss whose gradients with respect to the output streams are `value_grad`
    /// ([E, N]) and `block_grads[s]` ([E, K_s, N_s] for segment s). A gradient that is
    /// undefined (autograd's answer for a stream the loss does not read) or None counts as
    /// zero.
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
        let mut grads = Vec::with_capacity(2 * self.layers.len() + 1);
        for l in (0..self.layers.len()).rev() {
            let layer = &self.layers[l];
            // [E, out, R] x [E, R, in]: all rows of all streams in one batched product.
            grads.push(dz.narrow(1, 0, n).sum_dim_intlist(&[1i64][..], false, dz.kind()));
            grads.push(dz.transpose(1, 2).matmul(&layer.input));
            if l == 0 {
                break;
            }
            let dh = dz.matmul(&layer.w); // [E, R, in]: fresh, updated in place below
            dz = match self.layers[l - 1].act.as_ref().expect("hidden layers record their activation") {
                ActTape::Tanh { t, p, zz } => self.tanh_backward(&dh, t, p, zz, e),
                ActTape::Smooth { act, y, blocks, zz } => self.smooth_backward(&dh, *act, y, blocks, zz, e),
            };
        }
        grads.reverse();
        if let Some(s) = &mlp.slopes {
            s.chain(&mlp.layers, &mut grads).expect("slope chain rule");
        }
        grads
    }

    /// Gradient of a tanh layer's pre-activation rows from `g`, that of its output rows
    /// (consumed: its value rows are updated in place).
    fn tanh_backward(&self, g: &Tensor, t: &Tensor, p_blocks: &[Tensor], zz_blocks: &[Option<Tensor>], e: i64) -> Tensor {
        let w = t.size()[2];
        let dz = g.empty_like();
        let gs = g.split_with_sizes(self.sizes.as_slice(), 1);
        let dzs = dz.split_with_sizes(self.sizes.as_slice(), 1);
        let ts = per_segment(t, &self.plans);
        let mut g0s = per_segment(&gs[0], &self.plans);
        let sum_k = |x: Tensor| x.sum_dim_intlist(&[1i64][..], false, x.kind());
        for (b, (si, p)) in self.plans.iter().enumerate().filter(|(_, p)| p.k > 0).enumerate() {
            let gb = gs[b + 1].view([e, p.k, p.n, w]);
            let dzb = dzs[b + 1].view([e, p.k, p.n, w]);
            let (pb, zz) = (&p_blocks[b], &zz_blocks[b]);
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
            let _ = dzf.addcmul_(&tm2.unsqueeze(1), &p.spread(&dzq, &zf));
        }
        let _ = Tensor::tanh_backward_grad_input(&dzs[0], &gs[0], t);
        dz
    }

    /// Gradient of another activation's pre-activation rows from `g`, that of its output rows.
    /// With s_k = sigma^(k)(y) and g, g_i, g_q the gradients of the value, first and second
    /// derivative rows (q = (i, j)):
    ///   dy_q = s1 g_q
    ///   dy_i = s1 g_i + s2 sum_{q containing i} g_q y_(other index of q)   (2 y_i for (i, i))
    ///   dy   = s1 g + s2 (sum_i g_i y_i + sum_q g_q y_q) + s3 sum_q g_q y_i y_j
    fn smooth_backward(&self, g: &Tensor, act: Activation, y: &Tensor, blocks: &[Tensor], zz_blocks: &[Option<Tensor>], e: i64) -> Tensor {
        let w = y.size()[2];
        let dz = g.empty_like();
        let gs = g.split_with_sizes(self.sizes.as_slice(), 1);
        let dzs = dz.split_with_sizes(self.sizes.as_slice(), 1);
        let order = if self.plans.iter().any(|p| p.n2 > 0) {
            3
        } else if self.plans.iter().any(|p| p.k > 0) {
            2
        } else {
            1
        };
        let full = act.smooth().derivatives(y, order);
        let _ = gs[0].mul_out(&dzs[0], &full[0]);
        let d: Vec<Vec<Tensor>> = full.iter().map(|t| per_segment(t, &self.plans)).collect();
        let mut dz0s = per_segment(&dzs[0], &self.plans);
        let sum_k = |x: Tensor| x.sum_dim_intlist(&[1i64][..], false, x.kind());
        for (b, (si, p)) in self.plans.iter().enumerate().filter(|(_, p)| p.k > 0).enumerate() {
            let gb = gs[b + 1].view([e, p.k, p.n, w]);
            let dzb = dzs[b + 1].view([e, p.k, p.n, w]);
            let yb = &blocks[b];
            let _ = dz0s[si].addcmul_(&d[1][si], &sum_k(&gb * yb));
            let _ = gb.mul_out(&dzb, &d[0][si].unsqueeze(1));
            let Some(zz) = &zz_blocks[b] else { continue };
            let k1 = p.k - p.n2;
            let gq = gb.narrow(1, k1, p.n2);
            let _ = dz0s[si].addcmul_(&d[2][si], &sum_k(&gq * zz));
            let _ = dzb.narrow(1, 0, k1).addcmul_(&d[1][si].unsqueeze(1), &p.spread(&gq, &yb.narrow(1, 0, k1)));
        }
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

    /// Segments mixing value-only, first-order, pure and mixed second-order layouts.
    fn mixed_segments(dim: usize) -> Vec<Segment> {
        let mut segments = vec![
            Segment { points: 7, layout: StreamLayout::second_order(dim) },
            Segment { points: 5, layout: StreamLayout::first_order(dim, &[dim - 1]) },
            Segment { points: 4, layout: StreamLayout::value(dim) },
        ];
        if dim == 2 {
            segments.push(Segment { points: 6, layout: StreamLayout::full_second_order(dim) });
            segments.push(Segment { points: 3, layout: StreamLayout { dim, first: vec![1, 0], second: vec![(0, 1), (1, 1)], third: vec![] } });
        }
        segments
    }

    /// The taped forward's streams and the hand-written parameter gradients (every parameter,
    /// slopes included) of a loss reading every stream equal autograd's through
    /// [`Mlp::forward_segments`], to `tol` relative.
    fn check_reverse_pass(mlp: &Mlp, dim: usize, norm_kind: Normalization, tol: f64, what: &str) {
        let full = StreamLayout::full_second_order(dim);
        let segments = mixed_segments(dim);
        let n: i64 = segments.iter().map(|s| s.points).sum();
        let domain = Domain { lo: vec![-1.0; dim], hi: vec![2.0; dim], time_dependent: false };
        let e = mlp.members();
        let norm = Normalizer::new(&vec![norm_kind; e as usize], &domain, opts());
        let x = Tensor::rand([e, n, dim as i64], (Kind::Double, Device::Cpu)) * 3.0 - 1.0;
        let mut c = vec![Tensor::rand([e, n], (Kind::Double, Device::Cpu))];
        c.extend(segments.iter().map(|s| Tensor::rand([e, s.derivatives(), s.points], (Kind::Double, Device::Cpu))));

        let s = mlp.forward_segments(&x, &norm, &full, &segments);
        let (loss, _, _) = loss_and_grads(&s, &c);
        let want = Tensor::run_backward(&[loss], &mlp.parameters(), false, false);

        let (st, tape) = mlp.forward_taped(&x, &norm, &full, &segments);
        let close = |a: &Tensor, b: &Tensor| (a - b).abs().max().double_value(&[]) <= tol * b.abs().max().double_value(&[]);
        assert!(close(&st.value, &s.value), "{what}: taped value");
        for (a, b) in st.blocks.iter().zip(&s.blocks) {
            assert_eq!(a.is_some(), b.is_some());
            if let (Some(a), Some(b)) = (a, b) {
                assert!(close(a, b), "{what}: taped derivative block");
            }
        }
        let (_, gv, gb) = loss_and_grads(&st, &c);
        let got = tape.backward(mlp, &gv, &gb);
        assert_eq!(got.len(), want.len(), "{what}: one gradient per parameter");
        for (k, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g.size(), w.size(), "{what}: parameter {k}");
            let err = (g - w).abs().max().double_value(&[]) / w.abs().max().double_value(&[]);
            assert!(err < tol, "{what}: parameter {k}: rel err {err}");
        }
    }

    /// The hand-written pass equals autograd through the same forward, for 1-D and 2-D
    /// inputs, every normalisation, both initialisations, and segments mixing value-only,
    /// first-order, pure and mixed second-order layouts.
    #[test]
    fn reverse_pass_equals_autograd() {
        for dim in [1usize, 2] {
            for (norm_kind, init) in [(Normalization::None, Init::Normal), (Normalization::Zscore, Init::XavierNormal), (Normalization::Minmax, Init::Normal)] {
                let mut m: Vec<_> = (0..3).map(|k| (init, rng::stream(k as u64 + 11, rng::Purpose::Init, 0))).collect();
                let mlp = Mlp::init(&layer_sizes(dim, 9, 3), &mut m, opts());
                check_reverse_pass(&mlp, dim, norm_kind, 1e-12, &format!("dim {dim} {norm_kind:?}"));
            }
        }
    }

    /// The same for every activation (the general pass with sigma', sigma'' and sigma'''),
    /// with and without adaptive slopes (their gradients included) and Fourier features.
    #[test]
    fn reverse_pass_equals_autograd_for_every_scheme() {
        for (label, cfg) in crate::model::testing::schemes(9, 3) {
            for dim in [1usize, 2] {
                let mlp = crate::model::testing::network(&cfg, dim, 3);
                check_reverse_pass(&mlp, dim, Normalization::Zscore, 1e-10, &format!("{label}, dim {dim}"));
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
