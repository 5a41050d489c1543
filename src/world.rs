//! The MPI side of a run: who this process is (rank, local rank on its node, host) and the
//! communicator it talks on.
//!
//! `main` initialises MPI once and owns the [`World`]; dropping it finalises MPI. A process
//! started without a launcher is an MPI singleton (rank 0 of 1), so the same code path serves
//! laptops, `mpirun` and `srun --mpi=pmix`.

use mpi::topology::{Communicator, SimpleCommunicator};

pub struct World {
    // Field order matters: communicators must be freed before the universe finalises MPI.
    pub comm: SimpleCommunicator,
    pub rank: i32,
    pub size: i32,
    /// Rank among the processes on this node (from a shared-memory split of the world).
    pub local_rank: i32,
    pub local_size: i32,
    pub host: String,
    _universe: mpi::environment::Universe,
}

#[derive(Debug, thiserror::Error)]
pub enum WorldError {
    #[error("MPI initialisation failed (is another MPI already initialised in this process?)")]
    Init,
}

impl World {
    pub fn init() -> Result<World, WorldError> {
        let universe = mpi::initialize().ok_or(WorldError::Init)?;
        let comm = universe.world();
        let rank = comm.rank();
        let size = comm.size();
        let local = comm.split_shared(rank);
        let (local_rank, local_size) = (local.rank(), local.size());
        drop(local);
        let host = gethostname::gethostname().to_string_lossy().to_string();
        Ok(World { comm, rank, size, local_rank, local_size, host, _universe: universe })
    }
}
