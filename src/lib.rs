//! ntksweep: batch sweeps of PINN trainings that measure the Neural Tangent Kernel.
//!
//! The pipeline, one module per arrow:
//! sweep.yaml -> [`config`] (parse, validate, expand) -> [`schedule`] (batches) ->
//! [`train`] (problem + model + balancer, NTK snapshots via [`ntk`], evaluation) ->
//! [`output`] (one HDF5 file per job) -> [`reduce`] (summary.h5, report.md).

pub mod balancer;
pub mod bench;
pub mod budget;
pub mod checkpoint;
pub mod claim;
pub mod collocation;
pub mod inspect;
pub mod config;
pub mod distribute;
pub mod domain;
pub mod host;
pub mod model;
pub mod ntk;
pub mod output;
pub mod problem;
pub mod record;
pub mod reduce;
pub mod rng;
pub mod run;
pub mod schedule;
pub mod tensor;
pub mod train;
pub mod validation;
pub mod world;
pub mod yaml_text;
