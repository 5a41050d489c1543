//! ntksweep: batch sweeps of PINN trainings that measure the Neural Tangent Kernel.

pub mod reduce;
