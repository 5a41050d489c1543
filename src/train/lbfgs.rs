//! L-BFGS with a strong Wolfe line search: the optional phase after Adam
//! (`training.lbfgs`).
//!
//! The optimiser works on one flat parameter vector [P] and an objective that returns the
//! loss and its gradient there, as `torch.optim.LBFGS` does with its closure. It follows that
//! implementation step for step (two-loop recursion, the curvature test y.s > 1e-10 before a
//! pair enters the history, the first step length min(1, 1/|g|_1), the cubic-interpolating
//! bracket and zoom phases with c1 = 1e-4, c2 = 0.9 and at most 25 evaluations per line
//! search), with two differences: one [`Lbfgs::iterate`] is one iteration that reuses the
//! loss and gradient accepted by the previous line search (torch re-evaluates the closure at
//! the start of every `step()` call), and a non-finite loss at a trial point is treated as +inf
//! (the trial step is too long: it becomes the upper end of the bracket and interpolation
//! falls back to bisection) instead of poisoning the interpolation with NaN.
//!
//! # Members
//! A batch trains E members as one network, but the line search makes the number of loss
//! evaluations of an iteration depend on the member. L-BFGS therefore runs member by member:
//! each member's parameters are flattened into their own vector and its objective evaluates a
//! one-member network on that member's points, with that member's problem constants and
//! frozen balancer weights. Each member's L-BFGS run is so exactly what it would be alone. The
//! cost is that the phase evaluates E one-member networks one after another instead of one
//! batched network: right on a CPU (batching gains little there), slower than necessary on a
//! GPU with large batches; batched evaluation with per-member line-search state machines
//! would remove that.
//!
//! # Reference
//! Nocedal & Wright, Numerical Optimization (2nd ed., 2006): Algorithm 7.4 (two-loop
//! recursion), Algorithms 3.5 (line search) and 3.6 (zoom); `torch.optim.LBFGS`
//! (torch/optim/lbfgs.py, `_strong_wolfe` and `_cubic_interpolate`), whose defaults and
//! safeguards are reproduced.

use std::collections::VecDeque;

use tch::{Kind, TchError, Tensor};

use crate::checkpoint::{CheckpointError, StateDict};
pub use crate::config::training::{LbfgsConfig, LineSearch};
use crate::model::mlp::{Linear, Mlp};

/// Sufficient decrease (Armijo) constant of the strong Wolfe conditions.
const C1: f64 = 1e-4;
/// Curvature constant of the strong Wolfe conditions.
const C2: f64 = 0.9;
/// Most loss evaluations in one line search (torch's `max_ls`).
const MAX_LINE_SEARCH: usize = 25;
/// A (s, y) pair enters the history only when y.s exceeds this (torch's threshold).
const CURVATURE_MIN: f64 = 1e-10;

/// The loss and its gradient [P] at a point [P].
pub type Objective<'a> = dyn FnMut(&Tensor) -> Result<(f64, Tensor), TchError> + 'a;

/// Why an L-BFGS run stopped before its step budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Converged {
    /// max |g| <= tolerance_grad.
    Gradient,
    /// The search direction is not a descent direction by more than tolerance_change.
    Direction,
    /// max |t d| <= tolerance_change.
    Step,
    /// |f_new - f_old| < tolerance_change.
    Loss,
}

impl Converged {
    pub fn name(self) -> &'static str {
        match self {
            Converged::Gradient => "gradient",
            Converged::Direction => "direction",
            Converged::Step => "step",
            Converged::Loss => "loss",
        }
    }

    pub fn from_name(name: &str) -> Option<Converged> {
        [Converged::Gradient, Converged::Direction, Converged::Step, Converged::Loss].into_iter().find(|c| c.name() == name)
    }
}

/// What one iteration did.
#[derive(Debug, Clone, Copy)]
pub struct Iteration {
    /// Accepted step length along the search direction (0 when it stopped before searching).
    pub t: f64,
    /// Loss at the new point.
    pub loss: f64,
    /// Loss evaluations of this iteration.
    pub evaluations: usize,
}

/// L-BFGS state of one parameter vector.
pub struct Lbfgs {
    history: usize,
    tolerance_grad: f64,
    tolerance_change: f64,
    x: Tensor,
    f: f64,
    g: Tensor,
    /// Direction and step length of the previous iteration.
    d: Option<Tensor>,
    t: f64,
    prev_g: Option<Tensor>,
    old_dirs: VecDeque<Tensor>,
    old_steps: VecDeque<Tensor>,
    rho: VecDeque<f64>,
    h_diag: f64,
    iterations: u64,
    converged: Option<Converged>,
    /// Loss evaluations so far (including the one at the start).
    pub evaluations: u64,
}

fn dot(a: &Tensor, b: &Tensor) -> Result<f64, TchError> {
    Ok(a.f_dot(b)?.f_double_value(&[])?)
}

fn max_abs(a: &Tensor) -> Result<f64, TchError> {
    a.f_abs()?.f_max()?.f_double_value(&[])
}

impl Lbfgs {
    /// Start at `x0` [P] (evaluates the objective there once).
    pub fn new(cfg: &LbfgsConfig, x0: &Tensor, objective: &mut Objective<'_>) -> Result<Self, TchError> {
        let x = x0.detach().copy();
        let (f, g) = objective(&x)?;
        let converged = (max_abs(&g)? <= cfg.tolerance_grad).then_some(Converged::Gradient);
        Ok(Lbfgs {
            history: cfg.history,
            tolerance_grad: cfg.tolerance_grad,
            tolerance_change: cfg.tolerance_change,
            x,
            f,
            g,
            d: None,
            t: 0.0,
            prev_g: None,
            old_dirs: VecDeque::new(),
            old_steps: VecDeque::new(),
            rho: VecDeque::new(),
            h_diag: 1.0,
            iterations: 0,
            converged,
            evaluations: 1,
        })
    }

    /// Save the whole optimiser state (point, loss, gradient, previous direction and step,
    /// curvature pairs, counters), for a checkpoint.
    pub fn save(&self, s: &mut StateDict) -> Result<(), CheckpointError> {
        let Lbfgs { history: _, tolerance_grad: _, tolerance_change: _, x, f, g, d, t, prev_g, old_dirs, old_steps, rho, h_diag, iterations, converged, evaluations } = self;
        s.put_tensor("x", x)?;
        s.put_f64("f", *f);
        s.put_tensor("g", g)?;
        if let Some(d) = d {
            s.put_tensor("d", d)?;
        }
        s.put_f64("t", *t);
        if let Some(p) = prev_g {
            s.put_tensor("prev_g", p)?;
        }
        s.put_tensors("old_dirs", &old_dirs.iter().map(Tensor::shallow_clone).collect::<Vec<_>>())?;
        s.put_tensors("old_steps", &old_steps.iter().map(Tensor::shallow_clone).collect::<Vec<_>>())?;
        s.put_f64s("rho", &rho.iter().copied().collect::<Vec<_>>());
        s.put_f64("h_diag", *h_diag);
        s.put_u64("iterations", *iterations);
        if let Some(c) = converged {
            s.put_text("converged", c.name());
        }
        s.put_u64("evaluations", *evaluations);
        Ok(())
    }

    /// The optimiser [`Lbfgs::save`] saved, continuing exactly (no objective evaluation);
    /// `like` [P] gives the precision and device of its tensors.
    pub fn restore(cfg: &LbfgsConfig, s: &StateDict, like: &Tensor) -> Result<Self, CheckpointError> {
        let optional = |name: &str| -> Result<Option<Tensor>, CheckpointError> { if s.has(name) { s.tensor_like(name, like).map(Some) } else { Ok(None) } };
        let rho: VecDeque<f64> = s.f64s("rho")?.into();
        let converged = match s.has("converged") {
            true => {
                let name = s.text("converged")?;
                Some(Converged::from_name(&name).ok_or(CheckpointError::Mismatch { name: "converged".into(), expected: "gradient, direction, step or loss".into(), found: name })?)
            }
            false => None,
        };
        Ok(Lbfgs {
            history: cfg.history,
            tolerance_grad: cfg.tolerance_grad,
            tolerance_change: cfg.tolerance_change,
            x: s.tensor_like("x", like)?,
            f: s.f64("f")?,
            g: s.tensor_like("g", like)?,
            d: optional("d")?,
            t: s.f64("t")?,
            prev_g: optional("prev_g")?,
            old_dirs: s.tensors_like("old_dirs", rho.len(), like)?.into(),
            old_steps: s.tensors_like("old_steps", rho.len(), like)?.into(),
            rho,
            h_diag: s.f64("h_diag")?,
            iterations: s.u64("iterations")?,
            converged,
            evaluations: s.u64("evaluations")?,
        })
    }

    /// Current point [P].
    pub fn x(&self) -> &Tensor {
        &self.x
    }

    /// Loss at the current point.
    pub fn loss(&self) -> f64 {
        self.f
    }

    /// Why it stopped, once it has.
    pub fn converged(&self) -> Option<Converged> {
        self.converged
    }

    /// One L-BFGS iteration: direction by the two-loop recursion, step by the strong Wolfe
    /// line search. Does nothing once converged.
    pub fn iterate(&mut self, objective: &mut Objective<'_>) -> Result<Iteration, TchError> {
        let idle = Iteration { t: 0.0, loss: self.f, evaluations: 0 };
        if self.converged.is_some() {
            return Ok(idle);
        }
        let d = match (&self.d, &self.prev_g) {
            (Some(d_old), Some(g_old)) => {
                let y = self.g.f_sub(g_old)?;
                let s = d_old.f_mul_scalar(self.t)?;
                let ys = dot(&y, &s)?;
                if ys > CURVATURE_MIN {
                    if self.old_dirs.len() == self.history {
                        self.old_dirs.pop_front();
                        self.old_steps.pop_front();
                        self.rho.pop_front();
                    }
                    self.h_diag = ys / dot(&y, &y)?;
                    self.old_dirs.push_back(y);
                    self.old_steps.push_back(s);
                    self.rho.push_back(1.0 / ys);
                }
                // Two-loop recursion: d = -H g.
                let n = self.old_dirs.len();
                let mut alpha = vec![0.0; n];
                let mut q = self.g.f_neg()?;
                for i in (0..n).rev() {
                    alpha[i] = dot(&self.old_steps[i], &q)? * self.rho[i];
                    q = q.f_sub(&self.old_dirs[i].f_mul_scalar(alpha[i])?)?;
                }
                let mut r = q.f_mul_scalar(self.h_diag)?;
                for i in 0..n {
                    let beta = dot(&self.old_dirs[i], &r)? * self.rho[i];
                    r = r.f_add(&self.old_steps[i].f_mul_scalar(alpha[i] - beta)?)?;
                }
                r
            }
            _ => self.g.f_neg()?,
        };
        let f_old = self.f;
        let t0 = if self.iterations == 0 { (1.0 / self.g.f_abs()?.f_sum(Kind::Double)?.f_double_value(&[])?).min(1.0) } else { 1.0 };
        let gtd = dot(&self.g, &d)?;
        if gtd > -self.tolerance_change {
            self.converged = Some(Converged::Direction);
            return Ok(idle);
        }
        let ls = strong_wolfe(objective, &self.x, t0, &d, self.f, &self.g, gtd, self.tolerance_change)?;
        self.evaluations += ls.evaluations as u64;
        self.iterations += 1;
        self.x = self.x.f_add(&d.f_mul_scalar(ls.t)?)?;
        self.prev_g = Some(std::mem::replace(&mut self.g, ls.g));
        self.f = ls.f;
        self.t = ls.t;
        let step = max_abs(&d)? * ls.t.abs();
        self.d = Some(d);
        self.converged = if max_abs(&self.g)? <= self.tolerance_grad {
            Some(Converged::Gradient)
        } else if step <= self.tolerance_change {
            Some(Converged::Step)
        } else if (self.f - f_old).abs() < self.tolerance_change {
            Some(Converged::Loss)
        } else {
            None
        };
        Ok(Iteration { t: ls.t, loss: self.f, evaluations: ls.evaluations })
    }
}

/// Result of a line search: step length, loss and gradient there.
struct LineSearchResult {
    t: f64,
    f: f64,
    g: Tensor,
    evaluations: usize,
}

/// Minimiser of the cubic interpolating (x1, f1, g1) and (x2, f2, g2), clamped to `bounds`
/// (default: the interval between x1 and x2); the midpoint of the bounds when the cubic has no
/// minimiser or any input is not finite.
fn cubic_interpolate(x1: f64, f1: f64, g1: f64, x2: f64, f2: f64, g2: f64, bounds: Option<(f64, f64)>) -> f64 {
    let (lo, hi) = bounds.unwrap_or(if x1 <= x2 { (x1, x2) } else { (x2, x1) });
    let d1 = g1 + g2 - 3.0 * (f1 - f2) / (x1 - x2);
    let d2_square = d1 * d1 - g1 * g2;
    if d2_square >= 0.0 && d2_square.is_finite() {
        let d2 = d2_square.sqrt();
        let min_pos = if x1 <= x2 { x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2.0 * d2)) } else { x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2.0 * d2)) };
        if min_pos.is_finite() {
            return min_pos.max(lo).min(hi);
        }
    }
    (lo + hi) / 2.0
}

/// One evaluation along the direction: loss and gradient at x + t d, and the directional
/// derivative; a non-finite loss or slope reads as +inf (too far).
fn evaluate(objective: &mut Objective<'_>, x: &Tensor, t: f64, d: &Tensor) -> Result<(f64, Tensor, f64), TchError> {
    let (f, g) = objective(&x.f_add(&d.f_mul_scalar(t)?)?)?;
    let gtd = dot(&g, d)?;
    if f.is_finite() && gtd.is_finite() {
        Ok((f, g, gtd))
    } else {
        Ok((f64::INFINITY, g, f64::INFINITY))
    }
}

/// Strong Wolfe line search from x along the descent direction d, starting at step `t`;
/// `f`, `g`, `gtd` are the loss, gradient and directional derivative at x. Nocedal & Wright
/// Algorithm 3.5 (bracketing with cubic extrapolation) and 3.6 (zoom with cubic
/// interpolation and torch's insufficient-progress safeguard).
#[allow(clippy::too_many_arguments)]
fn strong_wolfe(
    objective: &mut Objective<'_>,
    x: &Tensor,
    mut t: f64,
    d: &Tensor,
    f: f64,
    g: &Tensor,
    gtd: f64,
    tolerance_change: f64,
) -> Result<LineSearchResult, TchError> {
    let d_norm = max_abs(d)?;
    let (mut f_new, mut g_new, mut gtd_new) = evaluate(objective, x, t, d)?;
    let mut evaluations = 1;
    let (mut t_prev, mut f_prev, mut g_prev, mut gtd_prev) = (0.0, f, g.shallow_clone(), gtd);
    let mut done = false;
    let mut ls_iter = 0;
    // Bracket ends: (t, f, g, gtd). With `done`, only the first is meaningful.
    let mut bracket: Option<[(f64, f64, Tensor, f64); 2]> = None;
    while ls_iter < MAX_LINE_SEARCH {
        if f_new > f + C1 * t * gtd || (ls_iter > 1 && f_new >= f_prev) {
            bracket = Some([(t_prev, f_prev, g_prev.shallow_clone(), gtd_prev), (t, f_new, g_new.shallow_clone(), gtd_new)]);
            break;
        }
        if gtd_new.abs() <= -C2 * gtd {
            let end = (t, f_new, g_new.shallow_clone(), gtd_new);
            bracket = Some([end.clone_end(), end]);
            done = true;
            break;
        }
        if gtd_new >= 0.0 {
            bracket = Some([(t_prev, f_prev, g_prev.shallow_clone(), gtd_prev), (t, f_new, g_new.shallow_clone(), gtd_new)]);
            break;
        }
        // Extrapolate: the minimiser of the cubic, kept in [t + 0.01 (t - t_prev), 10 t].
        let min_step = t + 0.01 * (t - t_prev);
        let max_step = t * 10.0;
        let next = cubic_interpolate(t_prev, f_prev, gtd_prev, t, f_new, gtd_new, Some((min_step, max_step)));
        t_prev = t;
        f_prev = f_new;
        g_prev = g_new.shallow_clone();
        gtd_prev = gtd_new;
        t = next;
        (f_new, g_new, gtd_new) = evaluate(objective, x, t, d)?;
        evaluations += 1;
        ls_iter += 1;
    }
    let mut br = match bracket {
        Some(b) => b,
        // Out of evaluations while still extrapolating: [0, t].
        None => [(0.0, f, g.shallow_clone(), gtd), (t, f_new, g_new.shallow_clone(), gtd_new)],
    };
    let order = |br: &[(f64, f64, Tensor, f64); 2]| if br[0].1 <= br[1].1 { (0, 1) } else { (1, 0) };
    let (mut low, mut high) = order(&br);
    let mut insufficient_progress = false;
    while !done && ls_iter < MAX_LINE_SEARCH {
        let (a, b) = (br[0].0, br[1].0);
        if (b - a).abs() * d_norm < tolerance_change {
            break;
        }
        t = cubic_interpolate(a, br[0].1, br[0].3, b, br[1].1, br[1].3, None);
        // Keep t away from the ends of the bracket (torch's safeguard against tiny steps).
        let (lo, hi) = (a.min(b), a.max(b));
        let eps = 0.1 * (hi - lo);
        if (hi - t).min(t - lo) < eps {
            if insufficient_progress || t >= hi || t <= lo {
                t = if (t - hi).abs() < (t - lo).abs() { hi - eps } else { lo + eps };
                insufficient_progress = false;
            } else {
                insufficient_progress = true;
            }
        } else {
            insufficient_progress = false;
        }
        (f_new, g_new, gtd_new) = evaluate(objective, x, t, d)?;
        evaluations += 1;
        ls_iter += 1;
        if f_new > f + C1 * t * gtd || f_new >= br[low].1 {
            br[high] = (t, f_new, g_new.shallow_clone(), gtd_new);
            (low, high) = order(&br);
        } else {
            if gtd_new.abs() <= -C2 * gtd {
                done = true;
            } else if gtd_new * (br[high].0 - br[low].0) >= 0.0 {
                br[high] = br[low].clone_end();
            }
            br[low] = (t, f_new, g_new.shallow_clone(), gtd_new);
        }
    }
    let (t, f, g, _) = br[low].clone_end();
    Ok(LineSearchResult { t, f, g, evaluations })
}

trait CloneEnd {
    fn clone_end(&self) -> Self;
}

impl CloneEnd for (f64, f64, Tensor, f64) {
    fn clone_end(&self) -> Self {
        (self.0, self.1, self.2.shallow_clone(), self.3)
    }
}

/// Member `e`'s parameters flattened in [`Mlp::parameters`] order (w0, b0, w1, b1, ...,
/// weights row-major [out, in], then the adaptive slopes if any), [P], detached.
pub fn flatten_member(mlp: &Mlp, e: i64) -> Result<Tensor, TchError> {
    let parts: Vec<Tensor> = mlp.parameters().iter().map(|p| p.detach().select(0, e).reshape([-1])).collect();
    Tensor::f_cat(&parts, 0)
}

/// A one-member network like member `e` of `template` (activation, slopes, that member's
/// Fourier features) whose parameters are views of `flat` [P] (so gradients of its outputs
/// with respect to `flat` are the flattened parameter gradients).
pub fn member_network(template: &Mlp, e: i64, flat: &Tensor) -> Result<Mlp, TchError> {
    let mut offset = 0i64;
    let mut take = |shape: &[i64]| -> Result<Tensor, TchError> {
        let n: i64 = shape.iter().product();
        let t = flat.f_narrow(0, offset, n)?.f_view(shape)?;
        offset += n;
        Ok(t)
    };
    let mut layers = Vec::new();
    for s in template.sizes.windows(2) {
        let (fan_in, fan_out) = (s[0] as i64, s[1] as i64);
        let w = take(&[1, fan_out, fan_in])?;
        let b = take(&[1, fan_out])?;
        layers.push(Linear { w, b });
    }
    let slopes = match &template.slopes {
        Some(sl) => Some(sl.with(take(&[1, sl.a.size()[1]])?)),
        None => None,
    };
    Ok(Mlp { layers, sizes: template.sizes.clone(), activation: template.activation, slopes, fourier: template.fourier.as_ref().map(|f| f.member(e)) })
}

/// Copy `flat` [P] into member `e` of the batched network.
pub fn write_member(mlp: &Mlp, e: i64, flat: &Tensor) -> Result<(), TchError> {
    tch::no_grad(|| -> Result<(), TchError> {
        let mut offset = 0i64;
        for p in mlp.parameters() {
            let mut dst = p.f_select(0, e)?;
            let n = dst.numel() as i64;
            dst.f_copy_(&flat.f_narrow(0, offset, n)?.f_view_as(&dst)?)?;
            offset += n;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn opts() -> (Kind, Device) {
        (Kind::Double, Device::Cpu)
    }

    fn minimise(cfg: &LbfgsConfig, x0: &[f64], objective: &mut Objective<'_>) -> (Vec<f64>, f64, usize) {
        let mut opt = Lbfgs::new(cfg, &Tensor::from_slice(x0), objective).unwrap();
        let mut iterations = 0;
        for _ in 0..cfg.steps {
            if opt.converged().is_some() {
                break;
            }
            opt.iterate(objective).unwrap();
            iterations += 1;
        }
        (Vec::<f64>::try_from(opt.x()).unwrap(), opt.loss(), iterations)
    }

    /// f(x) = 1/2 (x - x*)^T A (x - x*) with A symmetric positive definite (condition 100).
    #[test]
    fn reaches_the_minimum_of_a_quadratic() {
        let n = 10i64;
        let eig = Tensor::logspace(0.0, 2.0, n, 10.0, opts());
        // A fixed orthogonal basis: Q of the QR factorisation of sin(0..n^2) as a matrix.
        let (q, _) = Tensor::linalg_qr(&Tensor::arange(n * n, opts()).view([n, n]).sin(), "reduced");
        let a = q.matmul(&eig.diag(0)).matmul(&q.transpose(0, 1));
        let target = Tensor::linspace(-1.0, 2.0, n, opts());
        let mut objective = |x: &Tensor| -> Result<(f64, Tensor), TchError> {
            let r = x - &target;
            let g = a.matmul(&r);
            Ok((0.5 * r.dot(&g).double_value(&[]), g))
        };
        let cfg = LbfgsConfig { tolerance_grad: 1e-12, tolerance_change: 1e-20, ..LbfgsConfig::with_steps(100) };
        let (x, f, iterations) = minimise(&cfg, &[0.0; 10], &mut objective);
        let expect = Vec::<f64>::try_from(&target).unwrap();
        let err = x.iter().zip(&expect).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(err < 1e-8, "max |x - x*| = {err:e} after {iterations} iterations");
        assert!(f < 1e-16, "f = {f:e}");
        // A quadratic in 10 unknowns: L-BFGS with exact-enough line searches needs few steps.
        assert!(iterations <= 40, "{iterations} iterations");
    }

    /// Rosenbrock f(x, y) = (1 - x)^2 + 100 (y - x^2)^2 from the classic start (-1.2, 1).
    #[test]
    fn reaches_the_minimum_of_the_rosenbrock_function() {
        let mut objective = |p: &Tensor| -> Result<(f64, Tensor), TchError> {
            let v = Vec::<f64>::try_from(p).unwrap();
            let (x, y) = (v[0], v[1]);
            let f = (1.0 - x).powi(2) + 100.0 * (y - x * x).powi(2);
            let g = [-2.0 * (1.0 - x) - 400.0 * x * (y - x * x), 200.0 * (y - x * x)];
            Ok((f, Tensor::from_slice(&g)))
        };
        let cfg = LbfgsConfig { tolerance_grad: 1e-12, tolerance_change: 1e-20, ..LbfgsConfig::with_steps(200) };
        let (x, f, iterations) = minimise(&cfg, &[-1.2, 1.0], &mut objective);
        assert!((x[0] - 1.0).abs() < 1e-8 && (x[1] - 1.0).abs() < 1e-8, "x = {x:?} after {iterations} iterations");
        assert!(f < 1e-16, "f = {f:e}");
    }

    /// A trial step into a region where the loss is not finite is treated as too long, not as
    /// a NaN that poisons the run.
    #[test]
    fn a_non_finite_loss_at_a_trial_point_shortens_the_step() {
        // f = (x - 3)^2 for x < 2.5, NaN beyond: the minimum over the finite region is
        // approached from the left; no iterate may ever have a non-finite loss.
        let mut objective = |p: &Tensor| -> Result<(f64, Tensor), TchError> {
            let x = p.double_value(&[0]);
            if x >= 2.5 {
                return Ok((f64::NAN, Tensor::from_slice(&[f64::NAN])));
            }
            Ok(((x - 3.0).powi(2), Tensor::from_slice(&[2.0 * (x - 3.0)])))
        };
        let cfg = LbfgsConfig::with_steps(30);
        let mut opt = Lbfgs::new(&cfg, &Tensor::from_slice(&[0.0]), &mut objective).unwrap();
        for _ in 0..cfg.steps {
            let it = opt.iterate(&mut objective).unwrap();
            assert!(it.loss.is_finite());
        }
        let x = opt.x().double_value(&[0]);
        assert!(x < 2.5 && x > 2.0, "x = {x}");
    }

    #[test]
    fn cubic_interpolation_finds_the_minimum_of_a_cubic() {
        // f(x) = (x - 1)^2 (a quadratic is a cubic): from f, f' at 0 and 3.
        let f = |x: f64| (x - 1.0).powi(2);
        let df = |x: f64| 2.0 * (x - 1.0);
        let m = cubic_interpolate(0.0, f(0.0), df(0.0), 3.0, f(3.0), df(3.0), None);
        assert!((m - 1.0).abs() < 1e-12);
        assert_eq!(cubic_interpolate(0.0, f64::INFINITY, 1.0, 2.0, 1.0, 1.0, None), 1.0);
    }

    /// A tiny PINN (darcy1d, width 10): 200 Adam steps, then 100 L-BFGS iterations lower the
    /// loss further; histories and NTK snapshots continue after Adam's steps; and a batch of
    /// two members gives each member what it gets alone.
    #[test]
    fn lbfgs_after_adam_lowers_the_pinn_loss_and_members_stay_independent() {
        use crate::config::Sweep;
        use crate::record::JobRecord;
        use crate::train::{train_batch, BatchContext, BatchOutcome};
        use std::sync::atomic::AtomicBool;
        let yaml = "problem: {kind: darcy1d, eps: 0.5}
model: {width: 10, depth: 2, dtype: float64}
training: {steps: 200, lr: 1.0e-2, log_every: 50, lbfgs: {steps: 100}}
ntk: {every: 150}
evaluation: {points: 50}
sweep:
  seed: [0, 1]
";
        let run = |sets: &[&str], jobs: &[usize]| -> Vec<JobRecord> {
            let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
            let sweep = Sweep::parse(yaml, "t.yaml", "t", &sets).unwrap();
            let specs: Vec<_> = jobs.iter().map(|&j| &sweep.jobs[j]).collect();
            let stop = AtomicBool::new(false);
            let mut ctx = BatchContext { device: Device::Cpu, stop: &stop, on_steps: &mut |_| {}, autograd: false, checkpoints: None };
            match train_batch(&specs, &mut ctx).unwrap() {
                BatchOutcome::Finished(r) => r,
                BatchOutcome::Interrupted => panic!("interrupted"),
            }
        };
        let total = |r: &JobRecord, i: usize| r.history.loss.values().map(|v| v[i]).sum::<f64>();
        for r in &run(&[], &[0, 1]) {
            let h = &r.history;
            let start = h.step.iter().position(|&s| s == 200).expect("a history entry at the end of Adam");
            let last = h.step.len() - 1;
            assert!(h.step[last] > 200 && h.step[last] <= 300, "L-BFGS steps follow Adam's: {:?}", h.step);
            assert!(total(r, last) < total(r, start), "L-BFGS did not lower the loss: {} -> {}", total(r, start), total(r, last));
            assert!(h.lr[last] > 0.0, "train/lr holds the line-search step length");
            let ntk = r.ntk.as_ref().unwrap();
            assert_eq!(*ntk.step.last().unwrap(), h.step[last], "an NTK snapshot at the end of training");
            assert!(ntk.step.contains(&150) && !ntk.step.contains(&200), "snapshots: {:?}", ntk.step);
        }
        // Batched Adam matches Adam alone to round-off (~1e-14 here), and long L-BFGS runs
        // amplify round-off on this nearly flat landscape (1e-14 grows to ~1e-8 in 20
        // iterations), so the batch-versus-alone comparison uses a short phase.
        let short = ["training.lbfgs.steps=5", "ntk.enabled=false"];
        let both = run(&short, &[0, 1]);
        for k in 0..2 {
            let alone = run(&short, &[k]).remove(0);
            let (a, b) = (both[k].params_final.as_ref().unwrap(), alone.params_final.as_ref().unwrap());
            let diff = a.iter().zip(b).flat_map(|(x, y)| x.0.iter().zip(&y.0).chain(x.1.iter().zip(&y.1))).map(|(p, q)| (p - q).abs()).fold(0.0, f64::max);
            assert!(diff < 1e-10, "member {k}: batched and alone differ by {diff:e}");
            assert_eq!(both[k].history.step, alone.history.step);
        }
    }

    #[test]
    /// Flattening covers every parameter (weights, biases, adaptive slopes); a member network
    /// built from the flat vector is that member (same parameters, same Fourier features, same
    /// streams); writing a flat vector back changes only that member.
    fn flatten_and_member_views_round_trip() {
        use crate::domain::Domain;
        use crate::model::activation::Activation;
        use crate::model::adaptive::{AdaptiveActivation, AdaptiveMode};
        use crate::model::config::{Init, ModelConfig, Normalization};
        use crate::model::fourier::FourierConfig;
        use crate::model::normalize::Normalizer;
        use crate::model::streams::StreamLayout;
        use crate::tensor::TensorOpts;
        let o = TensorOpts { kind: Kind::Double, device: Device::Cpu };
        let cfg = ModelConfig {
            width: 5,
            depth: 2,
            init: Init::Normal,
            activation: Activation::Sin,
            adaptive_activation: AdaptiveActivation { mode: AdaptiveMode::Layerwise, scale: 4.0 },
            fourier: Some(FourierConfig { features: 3, sigma: 2.0 }),
            ..ModelConfig::default()
        };
        let mlp = Mlp::build(&[(&cfg, 0), (&cfg, 1), (&cfg, 2)], 2, o);
        let _ = mlp.slopes.as_ref().unwrap().a.detach().narrow(0, 1, 1).g_add_scalar_(0.5); // member 1's slopes differ
        let flat = flatten_member(&mlp, 1).unwrap();
        assert_eq!(flat.size(), [mlp.n_params() as i64]);
        assert_eq!(mlp.n_params(), 6 * 5 + 5 + 5 * 5 + 5 + 5 + 1 + 2, "2 m = 6 inputs, 2 slopes");
        let one = member_network(&mlp, 1, &flat).unwrap();
        for (a, b) in one.parameters().iter().zip(&mlp.parameters()) {
            assert!(a.equal(&b.detach().narrow(0, 1, 1)));
        }
        let domain = Domain { lo: vec![0.0; 2], hi: vec![1.0; 2], time_dependent: false };
        let x = Tensor::rand([3, 6, 2], (Kind::Double, Device::Cpu));
        let layout = StreamLayout::second_order(2);
        let all = mlp.forward(&x, &Normalizer::new(&[Normalization::Zscore; 3], &domain, o), &layout).stacked();
        let alone = one.forward(&x.narrow(0, 1, 1), &Normalizer::new(&[Normalization::Zscore], &domain, o), &layout).stacked();
        let diff = (&alone - all.narrow(0, 1, 1)).abs().max().double_value(&[]);
        assert!(diff <= 1e-13 * all.abs().max().double_value(&[]), "member network streams differ by {diff}");
        let before = flatten_member(&mlp, 0).unwrap();
        write_member(&mlp, 2, &(&flat * 2.0)).unwrap();
        assert!(flatten_member(&mlp, 2).unwrap().equal(&(&flat * 2.0)));
        assert!(flatten_member(&mlp, 0).unwrap().equal(&before), "other members untouched");
    }
}
