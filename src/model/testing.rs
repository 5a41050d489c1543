//! Networks of every scheme for the tests of the model, the tape and the NTK.

use tch::{Kind, Tensor};

use super::activation::Activation;
use super::adaptive::{AdaptiveActivation, AdaptiveMode};
use super::fourier::FourierConfig;
use super::mlp::Mlp;
use crate::model::config::{Init, ModelConfig};
use crate::tensor::TensorOpts;

/// Model configurations covering every activation, with and without adaptive slopes (global
/// and layer-wise) and Fourier features, as (label, configuration).
pub fn schemes(width: usize, depth: usize) -> Vec<(String, ModelConfig)> {
    let adaptive = [
        AdaptiveActivation::default(),
        AdaptiveActivation { mode: AdaptiveMode::Global, scale: 10.0 },
        AdaptiveActivation { mode: AdaptiveMode::Layerwise, scale: 3.0 },
    ];
    let mut out = Vec::new();
    for activation in [Activation::Tanh, Activation::Sin, Activation::Silu, Activation::Gelu] {
        for (k, a) in adaptive.iter().enumerate() {
            for fourier in [None, Some(FourierConfig { features: 4, sigma: 1.5 })] {
                // Fourier features with every activation, slopes with half of the rest.
                if fourier.is_none() && k == 2 {
                    continue;
                }
                let label = format!("{} {} fourier={}", activation.name(), a.mode.name(), fourier.is_some());
                out.push((label, ModelConfig { width, depth, init: Init::XavierNormal, activation, adaptive_activation: *a, fourier, ..ModelConfig::default() }));
            }
        }
    }
    out
}

/// The batched network of `e` members (seeds 11, 12, ...) in float64 on the CPU; biases moved
/// away from Xavier's zeros and slopes away from their initial n a = 1 (by fixed patterns), so
/// that the bias and slope terms of the formulas are exercised.
pub fn network(cfg: &ModelConfig, dim: usize, e: usize) -> Mlp {
    let opts = TensorOpts { kind: Kind::Double, device: tch::Device::Cpu };
    let members: Vec<(&ModelConfig, u64)> = (0..e).map(|k| (cfg, 11 + k as u64)).collect();
    let mlp = Mlp::build(&members, dim, opts);
    for l in &mlp.layers {
        let n = l.b.numel() as i64;
        let shift = (Tensor::arange(n, (Kind::Double, tch::Device::Cpu)) * 1.7).sin().view_as(&l.b) * 0.5;
        tch::no_grad(|| {
            let _ = l.b.detach().g_add_(&shift);
        });
    }
    if let Some(s) = &mlp.slopes {
        let g = s.a.size()[1];
        let factor = Tensor::linspace(0.7, 1.4, e as i64 * g, (Kind::Double, tch::Device::Cpu)).view([e as i64, g]);
        tch::no_grad(|| {
            let _ = s.a.detach().g_mul_(&factor);
        });
    }
    mlp
}
