//! Precision and device of the tensors of a batch. A leaf module: the model, the problems and
//! the balancers build their tensors with it.

use tch::{Device, Kind, Tensor};

/// Tensor options shared by a batch.
#[derive(Debug, Clone, Copy)]
pub struct TensorOpts {
    pub kind: Kind,
    pub device: Device,
}

impl TensorOpts {
    /// One value per member as a [E, 1] column.
    pub fn column(&self, values: &[f64]) -> Tensor {
        Tensor::from_slice(values).to_kind(self.kind).to_device(self.device).view([-1, 1])
    }
}
