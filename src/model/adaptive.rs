//! Adaptive activations: every hidden layer applies sigma(n a_l y) with a trainable slope a_l,
//! one per network (`global`) or one per hidden layer (`layerwise`), and a fixed scale n
//! (initialised so that n a = 1, i.e. the plain activation).
//!
//! Why the slope is folded into the weights: n a_l (W_l h + b_l) = W'_l h + b'_l with
//! W'_l = n a_l W_l and b'_l = n a_l b_l. The forward passes (autograd, taped, NTK) therefore
//! run the ordinary network on the effective weights ([`Slopes::effective`]) and need no new
//! stream formula; gradients with respect to W', b' come out of the unchanged reverse passes,
//! and the chain rule gives the rest ([`Slopes::chain`]):
//!
//!   dL/dW_l = c_l dL/dW'_l,   dL/db_l = c_l dL/db'_l,
//!   dL/dc_l = <dL/dW'_l, W_l> + <dL/db'_l, b_l>,   dL/da_g = n sum_{l in g} dL/dc_l
//!
//! with c_l = n a_l. The same identities give the slope columns of the per-point Jacobian in
//! [`crate::ntk`].
//!
//! The slopes are network parameters: [`crate::model::mlp::Mlp::parameters`] lists them after
//! the layers, so Adam, L-BFGS, the NTK Jacobian and the job file (`params/<phase>/<l>/slope`)
//! all see them.
//!
//! # Reference
//! A. D. Jagtap, K. Kawaguchi, G. E. Karniadakis, "Adaptive activation functions accelerate
//! convergence in deep and physics-informed neural networks", J. Comput. Phys. 404 (2020)
//! 109136 (global slope, n a = 1 at initialisation); Jagtap, Kawaguchi & Karniadakis, Proc. R.
//! Soc. A 476 (2020) 20200334 (layer-wise slopes); seed 002, eqs. (52)-(53).

use std::fmt;

use serde::de::{self, IntoDeserializer, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tch::{Kind, TchError, Tensor};

use super::mlp::Linear;

/// Default scale n: the value of most of Jagtap et al.'s (2020) examples.
pub const DEFAULT_SCALE: f64 = 10.0;

/// Which layers share a slope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AdaptiveMode {
    /// Plain activations (no slope parameters).
    #[default]
    None,
    /// One slope for every hidden layer.
    Global,
    /// One slope per hidden layer.
    Layerwise,
}

impl AdaptiveMode {
    pub fn name(self) -> &'static str {
        match self {
            AdaptiveMode::None => "none",
            AdaptiveMode::Global => "global",
            AdaptiveMode::Layerwise => "layerwise",
        }
    }
}

/// `model.adaptive_activation`: `none | global | layerwise`, or
/// `{kind: global | layerwise, scale: n}`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdaptiveActivation {
    pub mode: AdaptiveMode,
    /// n in sigma(n a y).
    pub scale: f64,
}

impl Default for AdaptiveActivation {
    fn default() -> Self {
        AdaptiveActivation { mode: AdaptiveMode::None, scale: DEFAULT_SCALE }
    }
}

impl AdaptiveActivation {
    /// No slopes: left out of the resolved configuration, so job ids of sweeps that do not
    /// use adaptive activations do not change.
    pub fn is_none(&self) -> bool {
        self.mode == AdaptiveMode::None
    }

    /// Number of slope parameters of a network with `depth` hidden layers.
    pub fn count(&self, depth: usize) -> usize {
        match self.mode {
            AdaptiveMode::None => 0,
            AdaptiveMode::Global => 1,
            AdaptiveMode::Layerwise => depth,
        }
    }
}

/// The map form, also what the resolved configuration stores.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Full {
    kind: AdaptiveMode,
    #[serde(default = "default_scale")]
    scale: f64,
}

fn default_scale() -> f64 {
    DEFAULT_SCALE
}

impl Serialize for AdaptiveActivation {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Full { kind: self.mode, scale: self.scale }.serialize(s)
    }
}

impl<'de> Deserialize<'de> for AdaptiveActivation {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = AdaptiveActivation;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("none, global, layerwise, or {kind: global | layerwise, scale: n}")
            }

            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                let mode = AdaptiveMode::deserialize(s.into_deserializer())?;
                Ok(AdaptiveActivation { mode, scale: DEFAULT_SCALE })
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                let f = Full::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(AdaptiveActivation { mode: f.kind, scale: f.scale })
            }
        }
        d.deserialize_any(V)
    }
}

/// The slopes of a batch.
///
/// # Shapes
/// `a`: [E, G], G = 1 (`global`) or the number of hidden layers (`layerwise`).
pub struct Slopes {
    pub mode: AdaptiveMode,
    pub scale: f64,
    pub a: Tensor,
}

impl Slopes {
    /// a = 1 / n for every member (n a = 1: the network starts as the plain activation).
    pub fn init(cfg: &AdaptiveActivation, e: i64, hidden: usize, kind: Kind, device: tch::Device) -> Option<Slopes> {
        let g = cfg.count(hidden) as i64;
        (g > 0).then(|| Slopes {
            mode: cfg.mode,
            scale: cfg.scale,
            a: Tensor::full([e, g], 1.0 / cfg.scale, (kind, device)).set_requires_grad(true),
        })
    }

    /// Same mode and scale, other values.
    pub fn with(&self, a: Tensor) -> Slopes {
        Slopes { mode: self.mode, scale: self.scale, a }
    }

    /// Column of `a` that hidden layer `l` uses.
    pub fn column(&self, l: usize) -> i64 {
        match self.mode {
            AdaptiveMode::Layerwise => l as i64,
            _ => 0,
        }
    }

    /// c_l = n a_l per member, [E].
    pub fn factor(&self, l: usize) -> Tensor {
        self.a.select(1, self.column(l)) * self.scale
    }

    /// Effective layers: hidden layer l's weight and bias times c_l; the output layer as is.
    /// Recorded by autograd when the slopes require grad (the reference and NTK paths).
    ///
    /// # Shapes
    /// `layers[l].w`: [E, out, in]; returns the same shapes.
    pub fn effective(&self, layers: &[Linear]) -> Vec<Linear> {
        let last = layers.len() - 1;
        layers
            .iter()
            .enumerate()
            .map(|(l, layer)| {
                if l == last {
                    return Linear { w: layer.w.shallow_clone(), b: layer.b.shallow_clone() };
                }
                let c = self.factor(l);
                Linear { w: &layer.w * c.view([-1, 1, 1]), b: &layer.b * c.view([-1, 1]) }
            })
            .collect()
    }

    /// Turn gradients with respect to the effective parameters (w'0, b'0, w'1, b'1, ...) into
    /// gradients with respect to (w0, b0, ..., a): scales the hidden layers' entries by c_l in
    /// place and appends dL/da [E, G] (module docs).
    pub fn chain(&self, layers: &[Linear], grads: &mut Vec<Tensor>) -> Result<(), TchError> {
        let hidden = layers.len() - 1;
        let mut dc = Vec::with_capacity(hidden);
        for (l, layer) in layers.iter().enumerate().take(hidden) {
            let (gw, gb) = (grads[2 * l].shallow_clone(), grads[2 * l + 1].shallow_clone());
            let d = gw.f_mul(&layer.w)?.f_sum_dim_intlist(&[1i64, 2][..], false, gw.kind())?
                + gb.f_mul(&layer.b)?.f_sum_dim_intlist(&[1i64][..], false, gb.kind())?;
            dc.push(d);
            let c = self.factor(l);
            grads[2 * l] = gw.f_mul(&c.f_view([-1, 1, 1])?)?;
            grads[2 * l + 1] = gb.f_mul(&c.f_view([-1, 1])?)?;
        }
        grads.push(self.collect(&dc)?);
        Ok(())
    }

    /// Per-layer derivatives with respect to c_l (each [E, ...]) to derivatives with respect
    /// to a ([E, ..., G]): dL/da_g = n sum_{l in g} dL/dc_l.
    pub fn collect(&self, dc: &[Tensor]) -> Result<Tensor, TchError> {
        let stacked = Tensor::f_stack(dc, -1)?;
        let per = match self.mode {
            AdaptiveMode::Layerwise => stacked,
            _ => stacked.f_sum_dim_intlist(&[-1i64][..], true, stacked.kind())?,
        };
        per.f_mul_scalar(self.scale)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<AdaptiveActivation, String> {
        serde_yaml_ng::from_str(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn name_and_map_forms_parse_and_round_trip() {
        assert_eq!(parse("global").unwrap(), AdaptiveActivation { mode: AdaptiveMode::Global, scale: 10.0 });
        assert_eq!(parse("{kind: layerwise, scale: 5}").unwrap(), AdaptiveActivation { mode: AdaptiveMode::Layerwise, scale: 5.0 });
        assert_eq!(parse("{kind: global}").unwrap().scale, DEFAULT_SCALE);
        let a = AdaptiveActivation { mode: AdaptiveMode::Layerwise, scale: 2.5 };
        let back: AdaptiveActivation = serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
        assert_eq!(back, a);
        assert!(parse("sigmoid").unwrap_err().contains("unknown variant `sigmoid`"));
        assert!(parse("{kind: global, slope: 2}").unwrap_err().contains("unknown field `slope`"));
    }
}
