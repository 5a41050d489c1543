//! A batched MLP that carries derivative streams forward.
//!
//! Every member of a batch (one job) has its own weights; they are stored stacked, weight
//! `[E, out, in]` and bias `[E, out]`, so a whole batch is evaluated with one batched matmul
//! per layer. This is exact: members share no parameters and every later operation (losses,
//! Adam) is per member or elementwise.
//!
//! Derivatives with respect to the inputs are propagated forward alongside the value (see
//! [`crate::model::streams`]). For a hidden layer z = W h + b, a = sigma(z):
//!   value          a   = sigma(z)
//!   first  (i)     a_i  = sigma'(z) z_i                            with z_i  = W h_i
//!   second (i, j)  a_ij = sigma''(z) z_i z_j + sigma'(z) z_ij      with z_ij = W h_ij
//! The bias enters the value stream only. sigma is `model.activation`
//! ([`crate::model::activation`]; tanh, the default, uses tanh' = 1 - t^2 and
//! tanh'' = -2 t (1 - t^2) in a fused path). Adaptive slopes ([`crate::model::adaptive`]) are
//! folded into the weights, and a Fourier embedding ([`crate::model::fourier`]) replaces the
//! input streams. One reverse pass through this graph gives parameter gradients of losses
//! that contain u'' with no nested autograd. [`autograd_streams`] keeps the nested-autograd
//! computation as the reference the tests compare against.

use tch::{Kind, TchError, Tensor};

use super::activation::Activation;
use super::adaptive::Slopes;
use super::fourier::FourierFeatures;
use super::normalize::Normalizer;
use super::streams::{Segment, SegmentedStreams, StreamLayout, Streams};
use crate::model::config::{Init, ModelConfig};
use crate::tensor::TensorOpts;
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
    /// Layer sizes [inputs, width, ..., width, 1]; inputs = d, or 2 m with Fourier features.
    pub sizes: Vec<usize>,
    pub activation: Activation,
    /// Trainable slopes of adaptive activations (a parameter of the network).
    pub slopes: Option<Slopes>,
    /// Fixed input embedding (not a parameter).
    pub fourier: Option<FourierFeatures>,
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
        Self::try_init(sizes, members, opts).expect("allocating the network")
    }

    /// [`Mlp::init`] whose allocation failures are errors: each layer is allocated by
    /// libtorch before its random numbers are drawn, so a network that does not fit in memory
    /// fails here with a libtorch error (and fails its job) instead of aborting the process.
    pub fn try_init(sizes: &[usize], members: &mut [(Init, JobRng)], opts: TensorOpts) -> Result<Mlp, TchError> {
        let e = members.len() as i64;
        let mut layers = Vec::new();
        for l in 0..sizes.len() - 1 {
            let (fan_in, fan_out) = (sizes[l], sizes[l + 1]);
            let w = Tensor::f_empty([e, fan_out as i64, fan_in as i64], (Kind::Double, tch::Device::Cpu))?;
            let b = Tensor::f_empty([e, fan_out as i64], (Kind::Double, tch::Device::Cpu))?;
            for (k, (init, rng)) in members.iter_mut().enumerate() {
                let (wk, bk) = match init {
                    Init::XavierNormal => {
                        let std = (2.0 / (fan_in + fan_out) as f64).sqrt();
                        (rng::normals(rng, fan_in * fan_out).into_iter().map(|z| z * std).collect(), vec![0.0; fan_out])
                    }
                    Init::Normal => (rng::normals(rng, fan_in * fan_out), rng::normals(rng, fan_out)),
                };
                let wk: Vec<f64> = wk;
                w.f_select(0, k as i64)?.f_copy_(&Tensor::f_from_slice(&wk)?.f_view([fan_out as i64, fan_in as i64])?)?;
                b.f_select(0, k as i64)?.f_copy_(&Tensor::f_from_slice(&bk)?)?;
            }
            layers.push(Linear {
                w: w.f_to_kind(opts.kind)?.f_to_device(opts.device)?.set_requires_grad(true),
                b: b.f_to_kind(opts.kind)?.f_to_device(opts.device)?.set_requires_grad(true),
            });
        }
        Ok(Mlp::from_layers(layers, sizes.to_vec()))
    }

    /// A tanh network with these layers, no adaptive slopes and no Fourier features.
    pub fn from_layers(layers: Vec<Linear>, sizes: Vec<usize>) -> Mlp {
        Mlp { layers, sizes, activation: Activation::Tanh, slopes: None, fourier: None }
    }

    /// The network of a batch from each member's model configuration and job seed: the
    /// configuration's activation, adaptive slopes and Fourier embedding (each member's B from
    /// its own seed), weights initialised as by [`Mlp::init`] on layer sizes whose input is d
    /// (or 2 m with Fourier features). Members of a batch share everything but `init` and the
    /// seed (the batch key).
    pub fn build(members: &[(&ModelConfig, u64)], d: usize, opts: TensorOpts) -> Mlp {
        Self::try_build(members, d, opts).expect("allocating the network")
    }

    /// [`Mlp::build`] whose allocation failures are errors ([`Mlp::try_init`]).
    pub fn try_build(members: &[(&ModelConfig, u64)], d: usize, opts: TensorOpts) -> Result<Mlp, TchError> {
        let c = members[0].0;
        let fourier = c.fourier.as_ref().map(|_| {
            let cfgs: Vec<(u64, &super::fourier::FourierConfig)> = members.iter().map(|(m, seed)| (*seed, m.fourier.as_ref().expect("batch key"))).collect();
            FourierFeatures::draw(&cfgs, d, opts)
        });
        let inputs = c.inputs(d);
        let mut init: Vec<(Init, JobRng)> = members.iter().map(|(m, seed)| (m.init, rng::stream(*seed, rng::Purpose::Init, 0))).collect();
        let mut mlp = Mlp::try_init(&layer_sizes(inputs, c.width, c.depth), &mut init, opts)?;
        mlp.activation = c.activation;
        mlp.slopes = Slopes::init(&c.adaptive_activation, members.len() as i64, c.depth, opts.kind, opts.device);
        mlp.fourier = fourier;
        Ok(mlp)
    }

    /// Parameters in a fixed order: w0, b0, w1, b1, ..., then the slopes [E, G] if any.
    pub fn parameters(&self) -> Vec<Tensor> {
        self.named_parameters().into_iter().map(|(_, p)| p).collect()
    }

    /// [`Mlp::parameters`] with names (`<layer>/w`, `<layer>/b`, `slopes`): what a
    /// checkpoint saves the network as.
    pub fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut p: Vec<(String, Tensor)> =
            self.layers.iter().enumerate().flat_map(|(l, x)| [(format!("{l}/w"), x.w.shallow_clone()), (format!("{l}/b"), x.b.shallow_clone())]).collect();
        p.extend(self.slopes.as_ref().map(|s| ("slopes".to_string(), s.a.shallow_clone())));
        p
    }

    /// Number of parameters of one member.
    pub fn n_params(&self) -> usize {
        self.sizes.windows(2).map(|s| s[0] * s[1] + s[1]).sum::<usize>() + self.slopes.as_ref().map_or(0, |s| s.a.size()[1] as usize)
    }

    /// The same network with every parameter replaced by `f(parameter)` (weights, biases,
    /// slopes; [`Mlp::parameters`] order) and the Fourier matrix converted to `kind`.
    pub fn map_parameters(&self, kind: Kind, f: &dyn Fn(&Tensor) -> Result<Tensor, TchError>) -> Result<Mlp, TchError> {
        let layers = self.layers.iter().map(|l| Ok(Linear { w: f(&l.w)?, b: f(&l.b)? })).collect::<Result<Vec<_>, TchError>>()?;
        let slopes = match &self.slopes {
            Some(s) => Some(s.with(f(&s.a)?)),
            None => None,
        };
        Ok(Mlp { layers, sizes: self.sizes.clone(), activation: self.activation, slopes, fourier: self.fourier.as_ref().map(|f| f.to_kind(kind)) })
    }

    /// The layers the forward passes multiply with: the parameters themselves, or with
    /// adaptive slopes the weights and biases scaled by n a ([`Slopes::effective`]).
    pub fn effective_layers(&self) -> Vec<Linear> {
        match &self.slopes {
            Some(s) => s.effective(&self.layers),
            None => self.layers.iter().map(|l| Linear { w: l.w.shallow_clone(), b: l.b.shallow_clone() }).collect(),
        }
    }

    pub fn members(&self) -> i64 {
        self.layers[0].w.size()[0]
    }

    /// Detached copy in another precision whose parameters require grad (so intermediate
    /// streams have gradients for the NTK pass) but share nothing with the training graph.
    pub fn to_kind_detached(&self, kind: Kind) -> Mlp {
        self.map_parameters(kind, &|p| Ok(p.detach().to_kind(kind).copy().set_requires_grad(true))).expect("conversion")
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

    /// Member `e`'s slope a of every hidden layer (a `global` slope repeated), None without
    /// adaptive activations.
    pub fn export_slopes(&self, e: i64) -> Option<Vec<f64>> {
        let s = self.slopes.as_ref()?;
        let a = Vec::<f64>::try_from(s.a.detach().select(0, e).to_kind(Kind::Double).to_device(tch::Device::Cpu).contiguous()).unwrap();
        Some((0..self.layers.len() - 1).map(|l| a[s.column(l) as usize]).collect())
    }

    /// Member `e`'s Fourier matrix B [m, d] row-major, None without Fourier features.
    pub fn export_fourier(&self, e: i64) -> Option<Vec<f64>> {
        let f = self.fourier.as_ref()?;
        Some(Vec::<f64>::try_from(f.b.select(0, e).to_kind(Kind::Double).to_device(tch::Device::Cpu).contiguous().view([-1])).unwrap())
    }

    /// Forward pass with derivative streams, every stream at every point.
    ///
    /// # Shapes
    /// `x`: [E, N, d] physical coordinates; returns streams [E, N] each.
    pub fn forward(&self, x: &Tensor, norm: &Normalizer, layout: &StreamLayout) -> Streams {
        let n = x.size()[1];
        self.forward_impl(x, norm, layout, &[Segment { points: n, layout: layout.clone() }], None).points(0, n)
    }

    /// Forward pass where consecutive runs of points carry different streams (see
    /// [`Segment`]): the training step's path, where boundary points carry the value only.
    pub fn forward_segments(&self, x: &Tensor, norm: &Normalizer, layout: &StreamLayout, segments: &[Segment]) -> SegmentedStreams {
        self.forward_impl(x, norm, layout, segments, None)
    }

    /// Forward pass that also returns every layer's input and pre-activation streams.
    pub fn forward_recording(
        &self,
        x: &Tensor,
        norm: &Normalizer,
        layout: &StreamLayout,
    ) -> (Streams, Vec<LayerRecord>) {
        let mut rec = Vec::new();
        let n = x.size()[1];
        let s = self.forward_impl(x, norm, layout, &[Segment { points: n, layout: layout.clone() }], Some(&mut rec));
        (s.points(0, n), rec)
    }

    /// All streams of a layer live in one [E, R, width] tensor, so that each layer is one
    /// batched matmul whatever the layout: first the value at all N points, then for each
    /// segment its K_s derivative streams, stream-major ([K_s, N_s] rows).
    ///
    /// Why splits rather than `narrow`, and one product per segment rather than per stream:
    /// every `narrow` of a tensor that needs a gradient costs, in the backward pass, a
    /// zero-filled copy of the whole tensor it was cut from, and at PINN sizes the per-call
    /// overhead of libtorch is as large as the arithmetic. A layer is therefore a fixed
    /// handful of calls: matmul, one split, the activation, and per segment a few products
    /// ([`tanh_rows`], [`smooth_rows`]).
    fn forward_impl(
        &self,
        x: &Tensor,
        norm: &Normalizer,
        layout: &StreamLayout,
        segments: &[Segment],
        mut record: Option<&mut Vec<LayerRecord>>,
    ) -> SegmentedStreams {
        let (e, n, _) = x.size3().expect("x must be [E, N, d]");
        assert!(
            record.is_none() || (segments.len() == 1 && segments[0].layout == *layout),
            "recording needs every stream at every point"
        );
        let plans = SegmentPlan::for_pass(n, layout, segments, x.device());
        // Rows of the value and of each segment's derivative block.
        let sizes = SegmentPlan::row_sizes(n, &plans);
        let mut h = input_streams(x, norm, &plans, self.fourier.as_ref()); // [E, R, d or 2 m]
        let layers = self.effective_layers();
        let last = layers.len() - 1;
        for (l, layer) in layers.iter().enumerate() {
            let (fan_out, fan_in) = (layer.w.size()[1], layer.w.size()[2]);
            let zr = h.matmul(&layer.w.transpose(1, 2)); // [E, R, out]
            let bias = layer.b.view([e, 1, fan_out]);
            // z[0]: value [E, N, out] (the bias enters the value stream only); z[1..]: one
            // derivative block per segment that has one, [E, K_s * N_s, out].
            let z: Vec<Tensor> = if let Some(rec) = record.as_deref_mut() {
                let s = layout.len() as i64;
                let pre = if s > 1 { Tensor::cat(&[zr.narrow(1, 0, n) + &bias, zr.narrow(1, n, (s - 1) * n)], 1) } else { zr + &bias };
                // The recorded tensor must be the one the rest of the pass reads from (the NTK
                // differentiates with respect to it).
                let pre = pre.reshape([e, s, n, fan_out]);
                rec.push(LayerRecord { input: h.reshape([e, s, n, fan_in]), pre: pre.shallow_clone() });
                let pre = pre.reshape([e, s * n, fan_out]);
                if s > 1 { pre.split_with_sizes(sizes.as_slice(), 1) } else { vec![pre] }
            } else if sizes.len() > 1 {
                let mut z = zr.split_with_sizes(sizes.as_slice(), 1);
                z[0] = &z[0] + &bias;
                z
            } else {
                vec![zr + &bias]
            };
            if l == last {
                return output_streams(&z, &plans, layout, segments);
            }
            let mut out = match self.activation {
                Activation::Tanh => tanh_rows(&z, &plans, e, fan_out),
                act => smooth_rows(act, &z, &plans, e, fan_out),
            };
            h = if out.len() > 1 { Tensor::cat(&out, 1) } else { out.pop().unwrap() };
        }
        unreachable!("an MLP has at least one layer")
    }
}

/// A tanh layer's output rows from its pre-activation rows `z` (value, then one block per
/// segment with derivatives): per segment one fused product
/// `tanh_backward(z_i, tanh z) = tanh'(z) z_i` for all its first derivatives and four calls for
/// all its second ones, using
///   a_ij = tanh'(z) (z_ij - 2 tanh(z) z_i z_j)      (tanh'' = -2 tanh tanh').
///
/// # Shapes
/// `z[0]`: [E, N, w]; `z[b]`: [E, K_s * N_s, w]; returns the same row groups, the second
/// derivatives of a segment as a separate group after its first ones.
fn tanh_rows(z: &[Tensor], plans: &[SegmentPlan], e: i64, fan_out: i64) -> Vec<Tensor> {
    let t = z[0].tanh();
    let mut out = vec![t.shallow_clone()];
    if z.len() > 1 {
        // tanh per segment; derivative products only where a segment carries them.
        let ts = per_segment(&t, plans);
        // Block b of the derivative rows is row group b + 1 (group 0: the value).
        for (b, (si, p)) in plans.iter().enumerate().filter(|(_, p)| p.k > 0).enumerate() {
            let blk = z[b + 1].view([e, p.k, p.n, fan_out]);
            // tanh_backward(g, t) = g (1 - t^2) = tanh'(z) g: one fused call (and one
            // autograd node) per product instead of materialising tanh'.
            let tu = ts[si].unsqueeze(1);
            if p.n2 == 0 {
                out.push(Tensor::tanh_backward(&blk, &tu).view([e, p.k * p.n, fan_out]));
                continue;
            }
            let k1 = p.k - p.n2 - p.n3;
            let fs = if p.n3 == 0 { blk.split_with_sizes([k1, p.n2], 1) } else { blk.split_with_sizes([k1, p.n2, p.n3], 1) };
            let zz = p.cross(&fs[0]);
            let a1 = Tensor::tanh_backward(&fs[0], &tu);
            let a2 = Tensor::tanh_backward(&fs[1].addcmul(&(&tu * -2.0), &zz), &tu);
            out.push(a1.view([e, k1 * p.n, fan_out]));
            out.push(a2.view([e, p.n2 * p.n, fan_out]));
            if p.n3 > 0 {
                // tanh' = 1 - t^2, tanh'' = -2 t tanh', tanh''' = tanh' (6 t^2 - 2).
                let d1 = 1.0 - tu.square();
                let d2 = &tu * &d1 * -2.0;
                let d3 = &d1 * (tu.square() * 6.0 - 2.0);
                out.push(p.third_rows(&fs[0], &fs[1], &fs[2], [&d1, &d2, &d3]).view([e, p.n3 * p.n, fan_out]));
            }
        }
    }
    out
}

/// [`tanh_rows`] for any other activation, from its derivatives:
///   a = sigma(z),  a_i = sigma'(z) z_i,  a_ij = sigma'(z) z_ij + sigma''(z) z_i z_j.
///
/// # Shapes
/// As [`tanh_rows`].
fn smooth_rows(act: Activation, z: &[Tensor], plans: &[SegmentPlan], e: i64, fan_out: i64) -> Vec<Tensor> {
    let f = act.smooth();
    let mut out = vec![f.value(&z[0])];
    if z.len() == 1 {
        return out;
    }
    let order = if plans.iter().any(|p| p.n3 > 0) {
        3
    } else if plans.iter().any(|p| p.n2 > 0) {
        2
    } else {
        1
    };
    let d: Vec<Vec<Tensor>> = f.derivatives(&z[0], order).iter().map(|t| per_segment(t, plans)).collect();
    for (b, (si, p)) in plans.iter().enumerate().filter(|(_, p)| p.k > 0).enumerate() {
        let blk = z[b + 1].view([e, p.k, p.n, fan_out]);
        let s1 = d[0][si].unsqueeze(1);
        if p.n2 == 0 {
            out.push((&blk * &s1).view([e, p.k * p.n, fan_out]));
            continue;
        }
        let k1 = p.k - p.n2 - p.n3;
        let fs = if p.n3 == 0 { blk.split_with_sizes([k1, p.n2], 1) } else { blk.split_with_sizes([k1, p.n2, p.n3], 1) };
        let zz = p.cross(&fs[0]);
        out.push((&fs[0] * &s1).view([e, k1 * p.n, fan_out]));
        out.push((&fs[1] * &s1 + zz * d[1][si].unsqueeze(1)).view([e, p.n2 * p.n, fan_out]));
        if p.n3 > 0 {
            let ds = [&s1, &d[1][si].unsqueeze(1), &d[2][si].unsqueeze(1)];
            out.push(p.third_rows(&fs[0], &fs[1], &fs[2], ds).view([e, p.n3 * p.n, fan_out]));
        }
    }
    out
}

/// A value-row tensor [E, N, ...] cut into the plans' segments (views).
pub(super) fn per_segment(t: &Tensor, plans: &[SegmentPlan]) -> Vec<Tensor> {
    if plans.len() > 1 {
        let seg_sizes: Vec<i64> = plans.iter().map(|p| p.n).collect();
        t.split_with_sizes(seg_sizes.as_slice(), 1)
    } else {
        vec![t.shallow_clone()]
    }
}

/// The network's output streams from the output layer's rows `z` ([E, N, 1] value, then one
/// [E, K_s * N_s, 1] block per segment that carries derivatives).
pub(super) fn output_streams(z: &[Tensor], plans: &[SegmentPlan], layout: &StreamLayout, segments: &[Segment]) -> SegmentedStreams {
    let e = z[0].size()[0];
    let mut rest = z[1..].iter();
    let blocks = plans.iter().map(|p| (p.k > 0).then(|| rest.next().expect("one block per segment with derivatives").reshape([e, p.k, p.n]))).collect();
    SegmentedStreams { layout: layout.clone(), segments: segments.to_vec(), value: z[0].squeeze_dim(-1), blocks }
}

/// Input streams of a pass, [E, R, d] (rows: the value at all N points, then each segment's
/// derivative block, stream-major): the normalised value, d x_n / d x_i = scale_i e_i, and
/// zero second derivatives (the normalisation is affine). With Fourier features, the
/// embedding's streams instead ([`fourier_streams`], [E, R, 2 m]).
pub(super) fn input_streams(x: &Tensor, norm: &Normalizer, plans: &[SegmentPlan], fourier: Option<&FourierFeatures>) -> Tensor {
    if let Some(f) = fourier {
        return fourier_streams(f, x, norm, plans);
    }
    let (e, _, d) = x.size3().expect("x must be [E, N, d]");
    let mut parts = vec![norm.apply(x)];
    let seeds = plans.iter().any(|p| p.k > 0).then(|| norm.scale.squeeze_dim(1).diag_embed(0, -2, -1)); // [E, d, d]
    for p in plans.iter().filter(|p| p.k > 0) {
        let seeds = seeds.as_ref().unwrap();
        let mut rows = Vec::new();
        for &i in &p.first {
            rows.push(seeds.select(1, i as i64).unsqueeze(1).expand([e, p.n, d], false));
        }
        if p.n2 + p.n3 > 0 {
            rows.push(Tensor::zeros([e, (p.n2 + p.n3) * p.n, d], (x.kind(), x.device())));
        }
        parts.push(Tensor::cat(&rows, 1));
    }
    if parts.len() > 1 { Tensor::cat(&parts, 1) } else { parts.pop().unwrap() }
}

/// The embedding's input streams (see [`crate::model::fourier`]): gamma at every point, then
/// per segment gamma_i for its first derivatives and gamma_ij for its second ones.
///
/// # Shapes
/// `x`: [E, N, d]; returns [E, R, 2 m].
fn fourier_streams(f: &FourierFeatures, x: &Tensor, norm: &Normalizer, plans: &[SegmentPlan]) -> Tensor {
    let phi = f.phase(&norm.apply(x)); // [E, N, m]
    let mut parts = vec![FourierFeatures::value(&phi)];
    if plans.iter().any(|p| p.k > 0) {
        let dphi = f.phase_derivatives(&norm.scale); // [E, d, m]
        let di = |i: usize| dphi.narrow(1, i as i64, 1); // [E, 1, m]
        let phis = per_segment(&phi, plans);
        for (p, ph) in plans.iter().zip(&phis).filter(|(p, _)| p.k > 0) {
            for &i in &p.first {
                parts.push(FourierFeatures::first(ph, &di(i)));
            }
            for &(i, j) in &p.second {
                parts.push(FourierFeatures::second(ph, &di(i), &di(j)));
            }
            for &(i, j, k) in &p.third {
                parts.push(FourierFeatures::third(ph, &di(i), &di(j), &di(k)));
            }
        }
    }
    Tensor::cat(&parts, 1)
}

/// What a layer does for one segment: its points, derivative streams, and which first
/// derivatives each second derivative is propagated from.
pub(super) struct SegmentPlan {
    pub(super) n: i64,
    /// Derivative streams (first + second).
    pub(super) k: i64,
    pub(super) n2: i64,
    /// Third derivatives (gradient-enhanced residuals only; the taped pass has none).
    pub(super) n3: i64,
    first: Vec<usize>,
    /// Second-derivative pairs (i, j) of inputs.
    second: Vec<(usize, usize)>,
    third: Vec<(usize, usize, usize)>,
    /// For third derivative q = (i, j, k): positions of i, j, k among the first derivatives
    /// and of (j, k), (i, k), (i, j) among the second ones ([6] index tensors; empty without
    /// third derivatives).
    third_index: Vec<Tensor>,
    /// For second derivative q = (i, j): positions of i and j among the segment's first
    /// derivatives. None when the seconds are exactly the pure ones in first-derivative
    /// order (then z_i z_j is a square of the whole first-derivative block).
    pub(super) ii: Option<Tensor>,
    pub(super) jj: Option<Tensor>,
}

impl SegmentPlan {
    /// The plans of a pass over `n` points: checks that `segments` cover them and that each
    /// segment's layout is a closed part of the pass's `layout`.
    pub(super) fn for_pass(n: i64, layout: &StreamLayout, segments: &[Segment], device: tch::Device) -> Vec<SegmentPlan> {
        assert_eq!(segments.iter().map(|s| s.points).sum::<i64>(), n, "segments must cover the points");
        for seg in segments {
            assert!(seg.layout.is_closed() && layout.contains(&seg.layout), "segment layout {:?} is not a closed part of {layout:?}", seg.layout);
        }
        segments.iter().map(|s| SegmentPlan::new(s, device)).collect()
    }

    /// Row counts of a layer tensor: the value at all `n` points, then one block of K_s * N_s
    /// rows per segment that carries derivatives.
    pub(super) fn row_sizes(n: i64, plans: &[SegmentPlan]) -> Vec<i64> {
        let mut sizes = vec![n];
        sizes.extend(plans.iter().filter(|p| p.k > 0).map(|p| p.k * p.n));
        sizes
    }

    fn new(seg: &Segment, device: tch::Device) -> Self {
        let l = &seg.layout;
        let pos = |i: usize| l.first.iter().position(|&f| f == i).unwrap() as i64;
        let pure = l.second.len() == l.first.len() && l.second.iter().zip(&l.first).all(|(&(i, j), &f)| i == f && j == f);
        let (ii, jj) = if pure || l.second.is_empty() {
            (None, None)
        } else {
            let ii: Vec<i64> = l.second.iter().map(|p| pos(p.0)).collect();
            let jj: Vec<i64> = l.second.iter().map(|p| pos(p.1)).collect();
            (Some(Tensor::from_slice(&ii).to_device(device)), Some(Tensor::from_slice(&jj).to_device(device)))
        };
        let spos = |a: usize, b: usize| l.second.iter().position(|&q| q == (a.min(b), a.max(b))).unwrap() as i64;
        let third_index = if l.third.is_empty() {
            Vec::new()
        } else {
            let cols: [Vec<i64>; 6] = [
                l.third.iter().map(|t| pos(t.0)).collect(),
                l.third.iter().map(|t| pos(t.1)).collect(),
                l.third.iter().map(|t| pos(t.2)).collect(),
                l.third.iter().map(|t| spos(t.1, t.2)).collect(),
                l.third.iter().map(|t| spos(t.0, t.2)).collect(),
                l.third.iter().map(|t| spos(t.0, t.1)).collect(),
            ];
            cols.iter().map(|c| Tensor::from_slice(c).to_device(device)).collect()
        };
        SegmentPlan {
            n: seg.points,
            k: seg.derivatives(),
            n2: l.second.len() as i64,
            n3: l.third.len() as i64,
            first: l.first.clone(),
            second: l.second.clone(),
            third: l.third.clone(),
            third_index,
            ii,
            jj,
        }
    }

    /// z_i z_j for every second derivative q = (i, j), from the segment's first-derivative
    /// block `zf` [E, K1, N_s, w]: [E, n2, N_s, w].
    pub(super) fn cross(&self, zf: &Tensor) -> Tensor {
        match (&self.ii, &self.jj) {
            (Some(i), Some(j)) => zf.index_select(1, i) * zf.index_select(1, j),
            _ => zf.square(),
        }
    }

    /// Third-derivative rows a_ijk = s1 z_ijk + s2 (z_jk z_i + z_ik z_j + z_ij z_k)
    /// + s3 z_i z_j z_k (Faa di Bruno for sigma(z(x)), s_m = sigma^(m)(z)) from the segment's
    /// first, second and third pre-activation rows `zf` [E, K1, N_s, w], `zs` [E, n2, N_s, w],
    /// `zt` [E, n3, N_s, w] and `ds` = [s1, s2, s3], each [E, 1, N_s, w]; returns
    /// [E, n3, N_s, w].
    pub(super) fn third_rows(&self, zf: &Tensor, zs: &Tensor, zt: &Tensor, ds: [&Tensor; 3]) -> Tensor {
        let ix = &self.third_index;
        let (zi, zj, zk) = (zf.index_select(1, &ix[0]), zf.index_select(1, &ix[1]), zf.index_select(1, &ix[2]));
        let pairs = zs.index_select(1, &ix[3]) * &zi + zs.index_select(1, &ix[4]) * &zj + zs.index_select(1, &ix[5]) * &zk;
        zt * ds[0] + pairs * ds[1] + zi * zj * zk * ds[2]
    }

    /// sum_{q containing i} c_q z_(other index of q) for every first derivative i (2 c_q z_i for
    /// q = (i, i)): the reverse of [`SegmentPlan::cross`] for coefficients `c` [E, n2, N_s, w]
    /// and first-derivative rows `zf` [E, K1, N_s, w]; returns [E, K1, N_s, w].
    pub(super) fn spread(&self, c: &Tensor, zf: &Tensor) -> Tensor {
        match (&self.ii, &self.jj) {
            (Some(i), Some(j)) => zf.zeros_like().index_add(1, i, &(c * zf.index_select(1, j))).index_add(1, j, &(c * zf.index_select(1, i))),
            _ => c * zf * 2.0,
        }
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
    let u = mlp.forward(&x, norm, &StreamLayout::value(layout.dim)).u(); // [E, N]
    let mut out = vec![u.shallow_clone()];
    if !layout.first.is_empty() {
        let g = Tensor::run_backward(&[u.sum(Kind::Float)], &[&x], true, true).remove(0); // [E, N, d]
        for &i in &layout.first {
            out.push(g.select(-1, i as i64));
        }
        for &(i, j) in &layout.second {
            let gi = g.select(-1, i as i64);
            let gg = Tensor::run_backward(&[gi.sum(Kind::Float)], &[&x], true, true).remove(0);
            out.push(gg.select(-1, j as i64));
        }
        for &(i, j, k) in &layout.third {
            let gi = g.select(-1, i as i64);
            let gij = Tensor::run_backward(&[gi.sum(Kind::Float)], &[&x], true, true).remove(0).select(-1, j as i64);
            let ggg = Tensor::run_backward(&[gij.sum(Kind::Float)], &[&x], true, true).remove(0);
            out.push(ggg.select(-1, k as i64));
        }
    }
    Tensor::stack(&out, 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::Normalization;
    use crate::domain::Domain;
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

    /// Forward streams (mixed second and third derivatives included) against nested autograd, to `tol`
    /// relative, on random points of [-1, 2]^dim under every normalisation.
    fn check_streams(net: &dyn Fn() -> Mlp, dim: usize, tol: f64, what: &str) {
        let domain = Domain { lo: vec![-1.0; dim], hi: vec![2.0; dim], time_dependent: false };
        for norm_kind in [Normalization::None, Normalization::Zscore, Normalization::Minmax] {
            let mlp = net();
            let e = mlp.members();
            let norm = Normalizer::new(&vec![norm_kind; e as usize], &domain, opts());
            let x = Tensor::rand([e, 15, dim as i64], (Kind::Double, Device::Cpu)) * 3.0 - 1.0;
            // Every derivative up to third order (gradient-enhanced residuals read third ones).
            let third = if dim == 1 { vec![(0, 0, 0)] } else { vec![(0, 0, 0), (0, 0, 1), (0, 1, 1), (1, 1, 1)] };
            let layout = StreamLayout { third, ..StreamLayout::full_second_order(dim) };
            let fwd = mlp.forward(&x, &norm, &layout).stacked();
            let rev = autograd_streams(&mlp, &x, &norm, &layout);
            for k in 0..layout.len() as i64 {
                let err = rel_err(&fwd.select(1, k), &rev.select(1, k));
                assert!(err < tol, "{what}, dim {dim} {norm_kind:?} stream {k}: rel err {err}");
            }
        }
    }

    #[test]
    fn streams_match_nested_autograd_1d_and_2d_with_and_without_normalisation() {
        for dim in [1usize, 2] {
            check_streams(&|| net(dim, 3, Init::Normal), dim, 1e-12, "tanh");
        }
    }

    /// Every activation, with and without adaptive slopes and Fourier features: the forward
    /// streams equal nested autograd to 1e-10 in float64, in 1-D and 2-D, under every
    /// normalisation.
    #[test]
    fn streams_of_every_scheme_match_nested_autograd() {
        for (label, cfg) in crate::model::testing::schemes(12, 3) {
            for dim in [1usize, 2] {
                check_streams(&|| crate::model::testing::network(&cfg, dim, 2), dim, 1e-10, &label);
            }
        }
    }

    /// The network of a default model configuration is the plain tanh MLP of `Mlp::init` with
    /// the job's initial weights; a Fourier embedding feeds 2 m inputs to the first layer.
    #[test]
    fn default_model_configuration_builds_the_plain_network() {
        let cfg = ModelConfig { width: 7, depth: 2, ..ModelConfig::default() };
        let built = Mlp::build(&[(&cfg, 5)], 2, opts());
        let mut m = vec![(Init::XavierNormal, rng::stream(5, rng::Purpose::Init, 0))];
        let plain = Mlp::init(&layer_sizes(2, 7, 2), &mut m, opts());
        assert!(built.slopes.is_none() && built.fourier.is_none() && built.activation == Activation::Tanh);
        for (a, b) in built.parameters().iter().zip(&plain.parameters()) {
            assert!(a.equal(b));
        }
        let f = ModelConfig { fourier: Some(super::super::fourier::FourierConfig { features: 5, sigma: 1.0 }), ..cfg };
        assert_eq!(Mlp::build(&[(&f, 5)], 2, opts()).sizes, vec![10, 7, 7, 1]);
    }

    /// Segments with different layouts, including mixed second derivatives and a
    /// value-only segment, give the same streams as one full pass over each segment's points.
    #[test]
    fn segmented_streams_equal_full_streams_on_every_segment() {
        use crate::model::streams::Segment;
        let dim = 2;
        let domain = Domain { lo: vec![-1.0; dim], hi: vec![2.0; dim], time_dependent: false };
        let norm = Normalizer::new(&[Normalization::Zscore; 3], &domain, opts());
        let mut nets = vec![("plain tanh".to_string(), net(dim, 3, Init::Normal))];
        nets.extend(crate::model::testing::schemes(10, 2).iter().map(|(l, c)| (l.clone(), crate::model::testing::network(c, dim, 3))));
        for (label, mlp) in &nets {
            let full = StreamLayout::full_second_order(dim);
            let segments = vec![
                Segment { points: 9, layout: StreamLayout::first_order(dim, &[1]) },
                Segment { points: 6, layout: full.clone() },
                Segment { points: 4, layout: StreamLayout::value(dim) },
                Segment { points: 5, layout: StreamLayout { dim, first: vec![1, 0], second: vec![(0, 1), (1, 1)], third: vec![] } },
                Segment { points: 3, layout: StreamLayout::second_order(dim) },
            ];
            let x = Tensor::rand([3, 27, dim as i64], (Kind::Double, Device::Cpu)) * 3.0 - 1.0;
            let seg = mlp.forward_segments(&x, &norm, &full, &segments);
            let mut offset = 0;
            for sg in &segments {
                let xs = x.narrow(1, offset, sg.points);
                let got = seg.points(offset, sg.points);
                let want = mlp.forward(&xs, &norm, &full);
                for (k, st) in full.streams().into_iter().enumerate() {
                    match (sg.layout.index(st), &got.parts[k]) {
                        (Some(_), Some(g)) => {
                            let e = rel_err(g, want.parts[k].as_ref().unwrap());
                            assert!(e < 1e-12, "{label}: segment {:?} stream {st:?}: rel err {e}", sg.layout);
                        }
                        (None, None) => {}
                        (a, b) => panic!("segment {:?} stream {st:?}: carried {} but returned {}", sg.layout, a.is_some(), b.is_some()),
                    }
                }
                offset += sg.points;
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
        let u = |x: &Tensor| mlp.forward(x, &norm, &StreamLayout::value(1)).u();
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
        let a = all.forward(&xs, &Normalizer::new(&[Normalization::None; 3], &domain, opts()), &layout).stacked();
        let b = single.forward(&x, &Normalizer::new(&[Normalization::None], &domain, opts()), &layout).stacked();
        assert!(rel_err(&a.select(0, 1), &b.select(0, 0)) < 1e-14);
    }
}
