//! `ntk`: weights from the traces of the NTK's diagonal blocks.
//!
//! Every `every` steps (default 100, as in seed 000), with K_ii = J_i J_i^T the kernel block of
//! term i on the job's NTK points (`ntk.points`, `ntk.sampling`, in `ntk.dtype`; the same points
//! and engine as the recorded snapshots, eps rescaling included):
//!
//!   lambda_hat_i = (sum_j tr K_jj) / tr K_ii,      lambda_i <- beta lambda_i + (1 - beta) lambda_hat_i
//!
//! With the default `beta: 0` the weights are the trace ratios themselves (Wang, Yu &
//! Perdikaris, Algorithm 1); `beta > 0` smooths them with the shared EMA (jaxpi uses 0.9).
//! The weights of the initial steps before the first update are `loss.weights`; since step 0 is
//! an update step they matter only through the guard: a member with a zero, negative or
//! non-finite trace keeps all its previous weights (seed 000 updates only when every trace is
//! positive).
//!
//! When an update step is also an NTK snapshot step (`ntk.every`, step 0, the last step) the
//! trainer hands over the very snapshot it records, so `train/weight/T` at that step equals
//! sum_j `ntk/j/trace` / `ntk/T/trace` of that step. Other update steps compute the traces
//! without spectra and record nothing.
//!
//! Cost per update: one NTK factor pass over the NTK points plus the kernel, as a snapshot
//! without eigenvalues.
//!
//! # Reference
//! S. Wang, X. Yu, P. Perdikaris, "When and why PINNs fail to train: a neural tangent kernel
//! perspective", J. Comput. Phys. 449 (2022) 110768, section 6 (trace-ratio weights) and
//! Algorithm 1; seed 000 (update every 100 steps, only when every trace is positive).

use serde::{Deserialize, Serialize};
use tch::{TchError, Tensor};

use super::update::{all_positive, ema, unless, Interval};
use super::{BalanceInputs, Balancer, BuildContext, Weights};
use crate::checkpoint::{CheckpointError, StateDict};
use crate::validation::Invalid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NtkTraceConfig {
    /// Update every this many steps (seed 000: 100).
    pub every: u64,
    /// EMA coefficient of the weights; 0 replaces them by the trace ratios.
    pub beta: f64,
}

impl Default for NtkTraceConfig {
    fn default() -> Self {
        NtkTraceConfig { every: 100, beta: 0.0 }
    }
}

impl NtkTraceConfig {
    pub fn validate(&self) -> Vec<Invalid> {
        let mut out = Vec::new();
        if self.every == 0 {
            out.push(Invalid::new("balancer.every", "must be at least 1"));
        }
        if !(0.0..1.0).contains(&self.beta) {
            out.push(Invalid::new("balancer.beta", "must be in [0, 1)"));
        }
        out
    }
}

pub struct NtkTrace {
    interval: Interval,
    beta: f64,
    weights: Weights,
}

impl NtkTrace {
    pub fn new(c: &NtkTraceConfig, ctx: &BuildContext<'_>) -> Self {
        NtkTrace { interval: Interval::new(c.every), beta: c.beta, weights: Weights::from_fixed(ctx.terms, ctx.fixed, ctx.opts) }
    }
}

impl Balancer for NtkTrace {
    fn needs_ntk(&self, step: u64) -> bool {
        self.interval.due(step)
    }

    fn update(&mut self, inputs: &BalanceInputs<'_>) -> Result<(), TchError> {
        if !self.interval.due(inputs.step) {
            return Ok(());
        }
        let snap = inputs.ntk.expect("the trainer passes the NTK snapshot the ntk balancer asked for");
        let traces: Vec<Tensor> = self
            .weights
            .terms
            .iter()
            .map(|t| snap.terms.iter().find(|s| s.name == *t).map(|s| s.trace.shallow_clone()).expect("NTK snapshot of every term"))
            .collect();
        // Summed in term order, as a reader of the job file would.
        let total = traces[1..].iter().fold(traces[0].shallow_clone(), |acc, t| acc + t);
        let ok = all_positive(&traces)?;
        for (w, tr) in self.weights.values.iter_mut().zip(&traces) {
            let target = unless(&ok, &(&total / tr))?.f_to_device(w.device())?;
            *w = ema(w, &target, self.beta)?;
        }
        Ok(())
    }

    fn weights(&self) -> &Weights {
        &self.weights
    }

    fn save_state(&self, d: &mut StateDict) -> Result<(), CheckpointError> {
        let NtkTrace { interval: _, beta: _, weights } = self;
        weights.save(d, "weights")
    }

    fn restore_state(&mut self, d: &StateDict) -> Result<(), CheckpointError> {
        let NtkTrace { interval: _, beta: _, weights } = self;
        weights.restore(d, "weights")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balancer::testing::{close, losses, opts64, table, TERMS};
    use crate::ntk::{Snapshot, TermStats};

    fn snapshot(traces: &[[f64; 2]]) -> Snapshot {
        let terms = traces
            .iter()
            .zip(TERMS)
            .map(|(tr, t)| TermStats {
                name: t.name.to_string(),
                frobenius: Some(Tensor::from_slice(tr)),
                trace: Tensor::from_slice(tr),
                trace_stderr: None,
                eigenvalues: None,
            })
            .collect();
        Snapshot { terms, full_frobenius: Some(Tensor::from_slice(&[0.0f64, 0.0])) }
    }

    fn run(beta: f64) -> Vec<Vec<Vec<f64>>> {
        let fixed = vec![vec![1.0, 1.0, 1.0], vec![1.0, 2.0, 1.0]];
        let ctx = BuildContext { terms: TERMS, fixed: &fixed, seeds: &[0, 1], opts: opts64() };
        let mut b = NtkTrace::new(&NtkTraceConfig { every: 3, beta }, &ctx);
        let l = losses(&[&[1.0, 1.0], &[1.0, 1.0], &[1.0, 1.0]]);
        // Traces per term [member 0, member 1]; member 1's boundary trace is 0 at step 0.
        let s0 = snapshot(&[[4.0, 2.0], [1.0, 0.0], [0.5, 3.0]]);
        let s3 = snapshot(&[[1.0, 1.0], [1.0, 3.0], [2.0, 1.0]]);
        let mut out = Vec::new();
        for step in 0..4u64 {
            assert_eq!(b.needs_ntk(step), step % 3 == 0);
            let ntk = match step {
                0 => Some(&s0),
                3 => Some(&s3),
                _ => None,
            };
            b.update(&BalanceInputs { step, losses: &l, param_grads: None, ntk }).unwrap();
            out.push(table(&b));
        }
        out
    }

    /// By hand. Member 0 at step 0: total 4 + 1 + 0.5 = 5.5, weights 5.5/4, 5.5/1, 5.5/0.5.
    /// Member 1 at step 0 has a zero trace: keeps (1, 2, 1). Step 3: totals 4 and 5, weights
    /// (4, 4, 2) and (5, 5/3, 5). Steps 1, 2 are not update steps.
    #[test]
    fn trace_ratios_by_hand_with_guard_and_interval() {
        let w = run(0.0);
        let s0 = vec![vec![1.375, 1.0], vec![5.5, 2.0], vec![11.0, 1.0]];
        close(&w[0], &s0, 1e-15);
        close(&w[1], &s0, 0.0);
        close(&w[2], &s0, 0.0);
        close(&w[3], &[vec![4.0, 5.0], vec![4.0, 5.0 / 3.0], vec![2.0, 5.0]], 1e-15);
    }

    /// beta = 0.5: lambda = 0.5 lambda + 0.5 lambda_hat from the initial (1, 1, 1) / (1, 2, 1).
    #[test]
    fn smoothing_uses_the_shared_ema() {
        let w = run(0.5);
        let m0 = [0.5 * 1.0 + 0.5 * 1.375, 0.5 * 1.0 + 0.5 * 5.5, 0.5 * 1.0 + 0.5 * 11.0];
        let s0 = vec![vec![m0[0], 1.0], vec![m0[1], 2.0], vec![m0[2], 1.0]];
        close(&w[0], &s0, 1e-15);
        let s3 = vec![
            vec![0.5 * m0[0] + 0.5 * 4.0, 0.5 * 1.0 + 0.5 * 5.0],
            vec![0.5 * m0[1] + 0.5 * 4.0, 0.5 * 2.0 + 0.5 * 5.0 / 3.0],
            vec![0.5 * m0[2] + 0.5 * 2.0, 0.5 * 1.0 + 0.5 * 5.0],
        ];
        close(&w[3], &s3, 1e-15);
    }
}
