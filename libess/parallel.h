// Threads for the forward pass's products (tools/ess analyze): the work is cut into pieces whose
// shapes never depend on the number of threads, so the bits of every result are the same with one
// thread, with several, and on every MPI rank (docs/scale-out.md, "What is identical").
//
// Before 2026-12-03 the forward pass let OpenBLAS thread each product. OpenBLAS cuts a product's
// columns among its threads, and a cut that is not a multiple of its kernel's width sends columns
// through remainder kernels that sum in another order: Mamba's x_proj (18 output columns in the
// tiny checkpoints) gave other bits with 2 threads than with 1, so `ess analyze` and `mpirun -n 2
// ess analyze` (one thread per rank) wrote files differing in the last bits of 23 datasets.
#pragma once

#include <functional>

namespace ess {

// Threads parallel_for and blas_gemm may use (process-wide; 1 = the calling thread only). The
// library never sets it; `ess analyze` sets it for its forward pass and back to 1 around each
// layer's measurement (whose engines run their own workers).
void set_gemm_threads(int n);
int gemm_threads();

// Runs fn(0), …, fn(count − 1), each exactly once, on up to gemm_threads() threads (the caller's
// included; serial inside another parallel_for). Each call must write only its own outputs. The
// first exception thrown is rethrown once every call has ended.
void parallel_for(int count, const std::function<void(int)>& fn);

}  // namespace ess
