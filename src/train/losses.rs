//! Loss terms through the network: the points of all terms in one forward pass, their
//! mean-squared losses, and the two ways to their parameter gradients (autograd through the
//! whole network, the reference; or the graph-free taped forward with the hand-written reverse
//! pass, [`crate::model::tape`]). Also the L-BFGS objective of one member, built on the same.

use std::collections::BTreeMap;

use tch::{Kind, TchError, Tensor};

use super::lbfgs;
use crate::model::mlp::Mlp;
use crate::model::normalize::Normalizer;
use crate::model::streams::{Segment, SegmentedStreams, StreamLayout};
use crate::model::tape::Tape;
use crate::problem::Problem;

/// The points of all loss terms in the order they go through the network together: terms
/// with the most streams first, terms with equal needs next to each other, each term's points
/// carrying only the streams its residual reads ([`Problem::term_layout`]), so that terms
/// with equal needs form one [`Segment`].
pub(crate) struct TermBatch {
    /// Term indices (into the `points` the batch was built from) in network order.
    order: Vec<usize>,
    /// [E, N, d]: the points of all terms in `order`.
    x: Tensor,
    segments: Vec<Segment>,
}

impl TermBatch {
    /// `points`: (term, [E, N_T, d]).
    fn new(problem: &dyn Problem, points: &[(&'static str, Tensor)]) -> Result<TermBatch, TchError> {
        let needs: Vec<StreamLayout> = points.iter().map(|(name, _)| problem.term_layout(name)).collect();
        let mut order: Vec<usize> = (0..points.len()).collect();
        order.sort_by_key(|&t| (std::cmp::Reverse(needs[t].len()), needs.iter().position(|l| *l == needs[t])));
        let x = Tensor::f_cat(&order.iter().map(|&t| points[t].1.shallow_clone()).collect::<Vec<_>>(), 1)?;
        let blocks: Vec<(i64, &StreamLayout)> = order.iter().map(|&t| (points[t].1.size()[1], &needs[t])).collect();
        Ok(TermBatch { order, x, segments: Segment::merge(&blocks) })
    }

    /// Unweighted mean-squared loss of every term, [E] each, in the order of `points`, from
    /// the network's streams at `self.x`. `scale[term]` ([E, 1]) multiplies that term's
    /// residual (eps rescaling).
    fn losses(
        &self,
        problem: &dyn Problem,
        points: &[(&'static str, Tensor)],
        streams: &SegmentedStreams,
        scale: &BTreeMap<String, Tensor>,
        kind: Kind,
    ) -> Result<Vec<(String, Tensor)>, TchError> {
        let mut losses: Vec<Option<(String, Tensor)>> = (0..points.len()).map(|_| None).collect();
        let mut offset = 0;
        for &t in &self.order {
            let (name, x) = &points[t];
            let n = x.size()[1];
            let mut r = problem.residual(name, x, &streams.points(offset, n));
            if let Some(sc) = scale.get(*name) {
                r = r * sc;
            }
            losses[t] = Some((name.to_string(), r.square().f_mean_dim(&[-1i64][..], false, kind)?));
            offset += n;
        }
        Ok(losses.into_iter().map(|l| l.expect("every term has a loss")).collect())
    }
}

/// Unweighted mean-squared loss of every term, [E] each, with autograd graphs reaching the
/// parameters: one forward pass over the points of all terms ([`TermBatch`]). Losses come back
/// in the order of `points`.
pub(crate) fn term_losses(
    mlp: &Mlp,
    norm: &Normalizer,
    problem: &dyn Problem,
    points: &[(&'static str, Tensor)],
    scale: &BTreeMap<String, Tensor>,
    kind: Kind,
) -> Result<Vec<(String, Tensor)>, TchError> {
    let batch = TermBatch::new(problem, points)?;
    let streams = mlp.forward_segments(&batch.x, norm, &problem.layout(), &batch.segments);
    batch.losses(problem, points, &streams, scale, kind)
}

/// The same losses by the fast path: the network runs graph-free ([`Mlp::forward_taped`]) and
/// the losses' graphs stop at its output streams, which are leaves.
/// [`TapedLosses::parameter_gradients`] completes the reverse pass by hand.
pub(crate) struct TapedLosses {
    pub losses: Vec<(String, Tensor)>,
    /// The output streams as autograd leaves.
    streams: SegmentedStreams,
    tape: Tape,
}

impl TapedLosses {
    pub fn new(
        mlp: &Mlp,
        norm: &Normalizer,
        problem: &dyn Problem,
        points: &[(&'static str, Tensor)],
        scale: &BTreeMap<String, Tensor>,
        kind: Kind,
    ) -> Result<TapedLosses, TchError> {
        let batch = TermBatch::new(problem, points)?;
        let (mut streams, tape) = mlp.forward_taped(&batch.x, norm, &problem.layout(), &batch.segments);
        streams.make_leaves();
        let losses = batch.losses(problem, points, &streams, scale, kind)?;
        Ok(TapedLosses { losses, streams, tape })
    }

    /// Gradients of `loss` (a scalar built from `self.losses`) with respect to the network
    /// parameters ([`Mlp::parameters`] order) followed by `extra` (tensors the loss reaches
    /// directly, e.g. a balancer's learned weights).
    /// `keep_graph`: keep the losses' graphs for another pass (a balancer's per-term gradients
    /// before the optimiser's).
    pub fn parameter_gradients(&self, mlp: &Mlp, loss: &Tensor, extra: &[Tensor], keep_graph: bool) -> Result<Vec<Tensor>, TchError> {
        self.tape.parameter_gradients(mlp, &self.streams, loss, extra, keep_graph)
    }
}

/// The L-BFGS objective of one member: its frozen-weight total loss sum_i lambda_i L_i on its
/// own fixed points, as a function of its flattened parameters.
pub(crate) struct MemberObjective {
    pub problem: Box<dyn Problem>,
    pub norm: Normalizer,
    pub points: Vec<(&'static str, Tensor)>,
    pub scale: BTreeMap<String, Tensor>,
    pub weights: Vec<f64>,
    /// A one-member network of the member's architecture ([`lbfgs::member_network`]).
    pub template: Mlp,
    pub kind: Kind,
    /// Differentiate by autograd (layouts the taped pass does not carry).
    pub autograd: bool,
}

impl MemberObjective {
    /// Loss and gradient [P] at the flattened parameters `flat` [P]: one forward and one
    /// reverse pass (the training step's fast path, [`TapedLosses`]) of the full-batch loss of
    /// a one-member network.
    pub fn eval(&self, flat: &Tensor) -> Result<(f64, Tensor), TchError> {
        if self.autograd {
            return self.eval_autograd(flat);
        }
        let net = lbfgs::member_network(&self.template, 0, &flat.detach())?;
        let taped = TapedLosses::new(&net, &self.norm, self.problem.as_ref(), &self.points, &self.scale, self.kind)?;
        let mut total: Option<Tensor> = None;
        for ((_, l), w) in taped.losses.iter().zip(&self.weights) {
            let term = l.f_mul_scalar(*w)?;
            total = Some(match total {
                None => term,
                Some(t) => t.f_add(&term)?,
            });
        }
        let total = total.expect("at least one loss term").f_sum(self.kind)?;
        // Parameter gradients come in flattening order (w0, b0, w1, b1, ..., slopes).
        let grads = taped.parameter_gradients(&net, &total, &[], false)?;
        let g = Tensor::f_cat(&grads.iter().map(|g| g.reshape([-1])).collect::<Vec<_>>(), 0)?;
        Ok((total.f_double_value(&[])?, g))
    }

    /// [`MemberObjective::eval`] by autograd through the whole network.
    fn eval_autograd(&self, flat: &Tensor) -> Result<(f64, Tensor), TchError> {
        let leaf = flat.detach().set_requires_grad(true);
        let net = lbfgs::member_network(&self.template, 0, &leaf)?;
        let losses = term_losses(&net, &self.norm, self.problem.as_ref(), &self.points, &self.scale, self.kind)?;
        let mut total = Tensor::f_zeros([1], (self.kind, flat.device()))?;
        for ((_, l), w) in losses.iter().zip(&self.weights) {
            total = total.f_add(&l.f_mul_scalar(*w)?)?;
        }
        let total = total.f_sum(self.kind)?;
        let g = Tensor::f_run_backward(&[&total], &[&leaf], false, false)?.remove(0);
        Ok((total.f_double_value(&[])?, g))
    }
}
