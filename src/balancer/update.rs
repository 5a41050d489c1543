//! The two pieces of bookkeeping the adaptive balancers share: when they act (every K steps)
//! and how they smooth (an exponential moving average that ignores unusable targets).
//!
//! Kept here, once, so that "every K steps" and "EMA with beta" mean exactly the same thing in
//! every scheme, and so that the guard against a zero or non-finite statistic (a vanishing
//! gradient, an NTK trace of 0, a diverged member) is written one time.

use tch::{TchError, Tensor};

/// Acts at steps 0, K, 2K, ... (`every: K`, at least 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    every: u64,
}

impl Interval {
    pub fn new(every: u64) -> Self {
        Interval { every: every.max(1) }
    }

    /// Whether the scheme updates at `step` (0-based optimiser step).
    pub fn due(&self, step: u64) -> bool {
        step % self.every == 0
    }
}

/// One exponential-moving-average step per member:
///
///   lambda <- beta * lambda + (1 - beta) * target
///
/// except where `target` is NaN or infinite, where lambda keeps its previous value (a member
/// whose statistic is unusable at this update is simply not updated). `beta = 0` replaces the
/// value by the target exactly (0 * prev + 1 * target is exact in IEEE arithmetic).
///
/// # Shapes
/// `prev`, `target`: [E]; returns [E] in `prev`'s kind.
pub fn ema(prev: &Tensor, target: &Tensor, beta: f64) -> Result<Tensor, TchError> {
    let target = target.f_to_kind(prev.kind())?;
    let mixed = prev * beta + &target * (1.0 - beta);
    let ok = target.f_isfinite()?;
    mixed.f_where_self(&ok, prev)
}

/// [`ema`] with a coefficient per member (`beta`: [E], e.g. a random 0/1 lookback draw).
pub fn ema_per_member(prev: &Tensor, target: &Tensor, beta: &Tensor) -> Result<Tensor, TchError> {
    let target = target.f_to_kind(prev.kind())?;
    let beta = beta.f_to_kind(prev.kind())?;
    let mixed = prev * &beta + &target * (beta.f_neg()? + 1.0);
    let ok = target.f_isfinite()?;
    mixed.f_where_self(&ok, prev)
}

/// Marks the members whose `valid` is false as unusable (NaN), so that [`ema`] keeps them.
///
/// # Shapes
/// `target`: [E]; `valid`: [E] bool.
pub fn unless(valid: &Tensor, target: &Tensor) -> Result<Tensor, TchError> {
    let nan = Tensor::f_full_like(target, f64::NAN)?;
    target.f_where_self(valid, &nan)
}

/// True where every one of `xs` is finite and positive (per member).
///
/// # Shapes
/// every `x`: [E]; returns [E] bool.
pub fn all_positive(xs: &[Tensor]) -> Result<Tensor, TchError> {
    let mut ok: Option<Tensor> = None;
    for x in xs {
        let this = x.f_isfinite()?.f_logical_and(&x.f_gt(0.0)?)?;
        ok = Some(match ok {
            None => this,
            Some(o) => o.f_logical_and(&this)?,
        });
    }
    Ok(ok.unwrap_or_else(|| Tensor::from(true)))
}

/// Per-member values of one term as f64 on the host, for tests and messages.
#[cfg(test)]
pub(crate) fn host(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.detach().to_kind(tch::Kind::Double).to_device(tch::Device::Cpu).contiguous().view([-1])).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_acts_at_multiples_of_k() {
        let i = Interval::new(3);
        let due: Vec<u64> = (0..10).filter(|&s| i.due(s)).collect();
        assert_eq!(due, vec![0, 3, 6, 9]);
        assert!((0..5).all(|s| Interval::new(1).due(s)));
        assert!(Interval::new(0).due(7), "0 is read as 1");
    }

    /// By hand: 0.9 * 2 + 0.1 * 12 = 3.0; the NaN and inf targets keep 5 and 7.
    #[test]
    fn ema_smooths_and_keeps_unusable_targets() {
        let prev = Tensor::from_slice(&[2.0f64, 5.0, 7.0]);
        let target = Tensor::from_slice(&[12.0f64, f64::NAN, f64::INFINITY]);
        let got = host(&ema(&prev, &target, 0.9).unwrap());
        assert!((got[0] - 3.0).abs() < 1e-15);
        assert_eq!(&got[1..], &[5.0, 7.0]);
        // beta = 0 is a replacement, bit for bit.
        let t = Tensor::from_slice(&[0.1f64 / 3.0, 1.0, 2.0]);
        assert_eq!(host(&ema(&prev, &t, 0.0).unwrap()), host(&t));
        // Per member: 1 keeps, 0 replaces, 0.25 mixes: 0.25 * 7 + 0.75 * 2 = 3.25.
        let beta = Tensor::from_slice(&[1.0f64, 0.0, 0.25]);
        let t = Tensor::from_slice(&[9.0f64, 9.0, 2.0]);
        assert_eq!(host(&ema_per_member(&prev, &t, &beta).unwrap()), vec![2.0, 9.0, 3.25]);
    }

    #[test]
    fn unless_and_all_positive_mark_bad_members() {
        let a = Tensor::from_slice(&[1.0f64, 0.0, 3.0]);
        let b = Tensor::from_slice(&[1.0f64, 2.0, f64::NAN]);
        let ok = all_positive(&[a.shallow_clone(), b]).unwrap();
        assert_eq!(Vec::<bool>::try_from(&ok).unwrap(), vec![true, false, false]);
        let t = host(&unless(&ok, &a).unwrap());
        assert_eq!(t[0], 1.0);
        assert!(t[1].is_nan() && t[2].is_nan());
    }
}
