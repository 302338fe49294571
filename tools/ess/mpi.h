// ess under MPI (docs/scale-out.md): `mpirun -n P ess compute|analyze …` divides every layer's
// (batch, channel) items among the P ranks, rank 0 gathers them and writes the results file. The
// library knows no MPI: this module implements its LayerPartition (libess/pipeline.h) over MPI.
// In a build without MPI (CMake ESS_MPI=OFF or no OpenMPI found) every function here acts as one
// process.
#pragma once
#include "libess/compute.h"
#include "libess/pipeline.h"

namespace ess::cli::mpi {

// Starts MPI when this process was launched by an MPI starter (mpirun, mpiexec, srun: their
// environment names a rank) and the build has MPI; otherwise ess is one process and MPI is never
// started (no singleton start-up cost). Throws UsageError when launched as one of several ranks
// by a build without MPI (each would measure everything and write the same file).
void init(int* argc, char*** argv);
int rank();  // 0 when one process
int size();  // 1 when one process
inline bool several() { return size() > 1; }
inline bool writer() { return rank() == 0; }

// Seconds this rank spent in the exchanges of the partition (the layer-wide σ_1 and the gather),
// waiting for slower ranks included.
double exchange_seconds();

// The partition for Pipeline::set_partition: nullptr for one process.
const LayerPartition* partition();

// The EssOptions a rank measures with: --threads 0 (all cores) becomes the cores this rank may
// run on (its CPU affinity), shared with the other ranks on its node, and cut_threads the node's
// cores (what one process would run: the cuts that change bits follow it).
EssOptions rank_options(EssOptions options);

// A command ended normally with `rc`: every rank waits for rank 0 (whose output is then in place)
// and MPI is finalized. Returns rc.
int finish(int rc);
// A command failed on this rank with exit code `code` (its message already printed): with several
// ranks every rank is ended (MPI_Abort; mpirun exits non-zero, rank 0's temporary output file is
// removed by its signal handler). Returns only when one process.
void abort(int code);

}  // namespace ess::cli::mpi
