#include "tools/ess/mpi.h"

#include <sched.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "libess/error.h"
#include "libess/lane_kernels.h"

#ifdef ESS_WITH_MPI
#include <mpi.h>
#endif

namespace ess::cli::mpi {

namespace {

int g_rank = 0, g_size = 1, g_local_size = 1;
double g_exchange_s = 0;  // time in the exchanges (waiting for other ranks included)

// Started by an MPI starter: Open MPI's mpirun, a PMIx or PMI-2 launcher (srun, mpiexec.hydra).
bool launched_by_mpi() {
  return std::getenv("OMPI_COMM_WORLD_SIZE") || std::getenv("PMIX_RANK") || std::getenv("PMI_RANK");
}

}  // namespace

#ifdef ESS_WITH_MPI

namespace {

template <class T>
MPI_Datatype mpi_type();
template <>
MPI_Datatype mpi_type<double>() {
  return MPI_DOUBLE;
}
template <>
MPI_Datatype mpi_type<float>() {
  return MPI_FLOAT;
}
template <>
MPI_Datatype mpi_type<std::int32_t>() {
  return MPI_INT32_T;
}
template <>
MPI_Datatype mpi_type<std::uint8_t>() {
  return MPI_UINT8_T;
}

// Rank r's items [begin, end) of a layer with `items` items: contiguous, in rank order, balanced;
// whole packs of the structured engine's SIMD lanes when every rank gets at least one.
std::pair<long, long> share_range(long items, int r, int P) {
  const long unit = items >= static_cast<long>(lanes::kLanes) * P ? lanes::kLanes : 1;
  const long units = (items + unit - 1) / unit;
  const auto edge = [&](int k) { return std::min(items, units * k / P * unit); };
  return {edge(r), edge(r + 1)};
}

// Adds its lifetime to g_exchange_s.
struct Timer {
  double start = MPI_Wtime();
  ~Timer() { g_exchange_s += MPI_Wtime() - start; }
};

// FNV-1a of a string (the engine name in the consistency check).
long long fnv(const std::string& s) {
  std::uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return static_cast<long long>(h >> 1);
}

// Moves the slice of `v` that belongs to each rank to rank 0: `repeats` runs of the whole layer's
// `items` × `per_item` values (students: one run per pattern), of which rank r holds items
// [begin_r, end_r) of every run.
template <class T>
void gather_slices(std::vector<T>& v, long items, long per_item, long repeats) {
  if (v.empty()) return;
  const auto move = [&](int r, bool send) {
    const auto [begin, end] = share_range(items, r, g_size);
    for (long p = 0; p < repeats; ++p) {
      T* at = v.data() + (p * items + begin) * per_item;
      for (long left = (end - begin) * per_item; left > 0;) {
        const int n = static_cast<int>(std::min<long>(left, INT_MAX / 2));
        if (send)
          MPI_Send(at, n, mpi_type<T>(), 0, 0, MPI_COMM_WORLD);
        else
          MPI_Recv(at, n, mpi_type<T>(), r, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        at += n;
        left -= n;
      }
    }
  };
  if (g_rank != 0)
    move(g_rank, true);
  else
    for (int r = 1; r < g_size; ++r) move(r, false);
}

class MpiPartition final : public LayerPartition {
 public:
  MpiPartition() {
    // Test hook (tests/cli/mpi.sh, docs/scale-out.md): ESS_MPI_TEST_FAIL=R:K makes rank R fail as
    // it starts the K-th layer it measures (0-based), while the other ranks wait for it.
    if (const char* v = std::getenv("ESS_MPI_TEST_FAIL")) {
      if (std::sscanf(v, "%d:%d", &fail_rank_, &fail_layer_) != 2) fail_rank_ = -1;
    }
  }

  LayerShare share(const std::string& layer, long items) const override {
    if (g_rank == fail_rank_ && layers_ == fail_layer_)
      throw NumericalError("rank " + std::to_string(g_rank) + " fails here on purpose (ESS_MPI_TEST_FAIL test hook)");
    ++layers_;
    (void)layer;
    LayerShare s;
    std::tie(s.begin, s.end) = share_range(items, g_rank, g_size);
    s.reduce_max = [](std::vector<double>& v) {
      const Timer t;
      MPI_Allreduce(MPI_IN_PLACE, v.data(), static_cast<int>(v.size()), MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    };
    return s;
  }

  bool gather(LayerResult& R) const override {
    const Timer t;
    check_agreement(R);
    const long items = static_cast<long>(R.batch) * R.channels, I = R.num_indices();
    gather_slices(R.tolerance_ess, items, I, 1);
    gather_slices(R.entropy_ess, items, I, 1);
    gather_slices(R.entropy_ess_lower, items, I, 1);
    gather_slices(R.entropy_ess_upper, items, I, 1);
    gather_slices(R.sigma_count, items, I, 1);
    gather_slices(R.frobenius, items, I, 1);
    gather_slices(R.error_bound, items, I, 1);
    gather_slices(R.status, items, I, 1);
    gather_slices(R.sigma, items, I * R.sigma_k, 1);
    gather_slices(R.sigma_tail, items, I, 1);
    StudentResults& S = R.students;
    const long P = static_cast<long>(S.patterns.size());
    gather_slices(S.masked_error, items, I, P);
    gather_slices(S.renormalized_error, items, I, P);
    gather_slices(S.operator_masked_error, items, 1, P);
    gather_slices(S.operator_renormalized_error, items, 1, P);
    gather_slices(S.tolerance_ess, items, I, P);
    gather_slices(S.entropy_ess, items, I, P);
    return g_rank == 0;
  }

 private:
  // Every rank must have measured the layer the same way (engine, shapes, arrays present): a rank
  // that chose another engine (e.g. less memory on its node) would make the file inconsistent.
  static void check_agreement(const LayerResult& R) {
    const StudentResults& S = R.students;
    const std::vector<long long> mine = {fnv(R.engine),
                                         R.batch,
                                         R.channels,
                                         R.num_indices(),
                                         R.sigma_k,
                                         static_cast<long long>(R.tolerance_ess.size()),
                                         static_cast<long long>(R.entropy_ess.size()),
                                         static_cast<long long>(R.entropy_ess_lower.size()),
                                         static_cast<long long>(R.entropy_ess_upper.size()),
                                         static_cast<long long>(R.sigma_count.size()),
                                         static_cast<long long>(R.frobenius.size()),
                                         static_cast<long long>(R.error_bound.size()),
                                         static_cast<long long>(R.status.size()),
                                         static_cast<long long>(R.sigma.size()),
                                         static_cast<long long>(R.sigma_tail.size()),
                                         static_cast<long long>(S.patterns.size()),
                                         static_cast<long long>(S.masked_error.size()),
                                         static_cast<long long>(S.operator_masked_error.size()),
                                         static_cast<long long>(S.tolerance_ess.size())};
    const int n = static_cast<int>(mine.size());
    std::vector<long long> all(static_cast<size_t>(n) * g_size);
    MPI_Allgather(mine.data(), n, MPI_LONG_LONG, all.data(), n, MPI_LONG_LONG, MPI_COMM_WORLD);
    for (int r = 0; r < g_size; ++r)
      if (!std::equal(mine.begin(), mine.end(), all.begin() + static_cast<long>(r) * n))
        throw NumericalError("MPI ranks " + std::to_string(g_rank) + " and " + std::to_string(r) +
                             " measured this layer differently (engine " + R.engine +
                             " here; another engine or other shapes there, e.g. from less memory on its node); "
                             "set --engine explicitly");
  }

  int fail_rank_ = -1, fail_layer_ = -1;
  mutable int layers_ = 0;
};

}  // namespace

void init(int* argc, char*** argv) {
  if (!launched_by_mpi()) return;
  int provided = 0;
  MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);  // MPI is called from the main thread only
  MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &g_size);
  MPI_Comm node;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
  MPI_Comm_size(node, &g_local_size);
  MPI_Comm_free(&node);
  if (g_size == 1) {  // `mpirun -n 1`: one process, nothing to divide
    MPI_Finalize();
    g_rank = 0;
    g_local_size = 1;
  }
}

const LayerPartition* partition() {
  static const MpiPartition p;
  return g_size > 1 ? &p : nullptr;
}

int finish(int rc) {
  if (g_size > 1) {
    MPI_Barrier(MPI_COMM_WORLD);
    MPI_Finalize();
  }
  return rc;
}

void abort(int code) {
  if (g_size <= 1) return;
  std::fflush(stdout);
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, code);
}

#else  // built without MPI

namespace {
// An environment variable as a number (0 when unset or not a number).
long env_long(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::strtol(v, nullptr, 10) : 0;
}
}  // namespace

void init(int*, char***) {
  if (launched_by_mpi() && std::max(env_long("OMPI_COMM_WORLD_SIZE"), env_long("PMI_SIZE")) > 1)
    throw UsageError(
        "this ess was built without MPI (CMake option ESS_MPI, needs Open MPI); run it as one process, not under "
        "mpirun/srun with several ranks");
}
const LayerPartition* partition() { return nullptr; }
int finish(int rc) { return rc; }
void abort(int) {}

#endif

int rank() { return g_rank; }
double exchange_seconds() { return g_exchange_s; }
int size() { return g_size; }

EssOptions rank_options(EssOptions options) {
  if (g_size <= 1 || options.threads != 0) return options;
  cpu_set_t set;
  const int hw = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  const int allowed = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : hw;
  options.threads = std::max(1, std::min(allowed, hw / std::max(1, g_local_size)));
  // Cuts that change a channel's bits follow the threads a single process would run (all cores).
  options.cut_threads = hw;
  return options;
}

}  // namespace ess::cli::mpi
