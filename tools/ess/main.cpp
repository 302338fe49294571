// ess: Effective State-Size of sequence-model layers. One binary, one subcommand per task.
#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <new>
#include <string>

#include "libess/error.h"
#include "libess/files.h"
#include "libess/hdf5.h"
#include "tools/ess/cli.h"
#include "tools/ess/mpi.h"

namespace {

std::vector<ess::cli::Command> commands() {
  auto c = ess::cli::command_registry();
  std::stable_sort(c.begin(), c.end(), [](const auto& a, const auto& b) { return a.order < b.order; });
  return c;
}

void print_usage(std::ostream& out) {
  out << "ess " << ESS_VERSION << " — Effective State-Size of sequence-model layers\n\n"
      << "usage: ess <command> [options]   (ess <command> --help for details)\n\ncommands:\n";
  for (const auto& c : commands())
    out << "  " << c.name << std::string(10 - std::strlen(c.name), ' ') << c.summary << "\n";
  out << "\nexit codes: 0 ok, 2 usage error, 3 bad input file, 4 numerical failure\n";
}

}  // namespace

// Two settings that only take effect when a process starts, so ess re-executes itself once to make
// them (the child finds both set, or ESS_REEXECUTED, and carries on):
// - OpenBLAS's pthread build starts worker threads when it is loaded and lets them spin, stealing
//   cores from our own per-channel threads even after openblas_set_num_threads(1). We parallelize
//   over channels ourselves, so run with OPENBLAS_NUM_THREADS=1.
// - First touch of a fresh page is slow on the VMs we run on (11–14 µs per 4 KiB page, a fault
//   each): a process's first pack of 8 Mamba channels spent a third of its time faulting in its
//   realizations and buffers. glibc (≥ 2.35) backs its heaps with transparent huge pages under
//   GLIBC_TUNABLES=glibc.malloc.hugetlb=1 (madvise(MADV_HUGEPAGE) as a heap grows: one fault per
//   2 MiB), appended to the user's GLIBC_TUNABLES unless they set malloc.hugetlb themselves.
//   A no-op where the kernel's THP mode is "never" or glibc is older.
void prepare_environment(char** argv) {
  if (std::getenv("ESS_REEXECUTED")) return;  // never twice, whatever the loader did to the rest
  bool changed = false;
  if (!std::getenv("OPENBLAS_NUM_THREADS")) {
    ::setenv("OPENBLAS_NUM_THREADS", "1", 1);
    changed = true;
  }
  const char* tunables = std::getenv("GLIBC_TUNABLES");
  const std::string current = tunables ? tunables : "";
  if (current.find("glibc.malloc.hugetlb") == std::string::npos) {
    const std::string value = (current.empty() ? "" : current + ":") + "glibc.malloc.hugetlb=1";
    ::setenv("GLIBC_TUNABLES", value.c_str(), 1);
    changed = true;
  }
  if (!changed) return;
  ::setenv("ESS_REEXECUTED", "1", 1);
  ::execv("/proc/self/exe", argv);  // on failure, carry on as we are
}

// Freshly mapped pages are slow to touch on the VMs we run on (~14 µs per 4 KiB page). Per-channel
// buffers above glibc's mmap threshold (128 KiB) would be unmapped on free and faulted in again for
// the next channel; keep them in the heap instead so they are reused.
void keep_freed_memory() {
  ::mallopt(M_MMAP_THRESHOLD, 512 << 20);
  ::mallopt(M_TRIM_THRESHOLD, 1 << 30);
}

// HDF5 stalled or faulted inside its own code on a corrupt file (libess/hdf5.h): report, clean up
// and exit 3. Async-signal-safe (it may run in a signal handler).
extern "C" void hdf5_failed(const char* message) {
  const auto say = [](const char* s) {
    if (::write(2, s, std::strlen(s)) < 0) return;
  };
  say("ess: error: ");
  say(message);
  say("\n");
  ess::unlink_temp_files();
  ::_exit(3);
}

// ESS_HDF5_TIMEOUT: seconds an HDF5 call may take before it counts as stalled (default 60).
double hdf5_timeout() {
  const char* v = std::getenv("ESS_HDF5_TIMEOUT");
  const double s = v ? std::atof(v) : 0;
  return s > 0 ? s : 60;
}

// The command named by argv[1]; its exit code. After an error under MPI with several ranks, every
// rank is ended (mpi::abort) and this does not return.
int run_command(int argc, char** argv) {
  namespace mpi = ess::cli::mpi;
  if (argc < 2) {
    print_usage(std::cerr);
    return 2;
  }
  const std::string cmd = argv[1];
  if (cmd == "--help" || cmd == "-h" || cmd == "help") {
    print_usage(std::cout);
    return 0;
  }
  if (cmd == "--version") {
    std::cout << "ess " << ESS_VERSION << "\n";
    return 0;
  }
  for (const auto& c : commands()) {
    if (cmd != c.name) continue;
    // Under MPI with several ranks an error on one rank ends every rank (mpi::abort); the message
    // names the rank.
    const std::string who = "ess " + cmd + (mpi::several() ? " (rank " + std::to_string(mpi::rank()) + ")" : "");
    if (mpi::several() && cmd != "compute" && cmd != "analyze") {
      if (mpi::writer())
        std::cerr << who << ": error: only compute and analyze divide their work among MPI ranks; run ess " << cmd
                  << " as one process\n";
      return 2;
    }
    try {
      return c.run(argc - 1, argv + 1);
    } catch (const ess::Error& e) {
      std::cerr << who << ": error: " << e.message(ess::cli::flag_name) << "\n";
      mpi::abort(static_cast<int>(e.code()));
      return static_cast<int>(e.code());
    } catch (const std::bad_alloc&) {
      std::cerr << who << ": error: out of memory (try fewer --threads, --indices, or a smaller input)\n";
      mpi::abort(4);
      return 4;
    } catch (const std::exception& e) {
      std::cerr << who << ": internal error: " << e.what() << "\n";
      mpi::abort(4);
      return 4;
    }
  }
  std::cerr << "ess: unknown command '" << cmd << "'\n\n";
  print_usage(std::cerr);
  return 2;
}

int main(int argc, char** argv) {
  prepare_environment(argv);
  keep_freed_memory();
  ess::install_signal_cleanup();  // temporary outputs removed on SIGINT/SIGTERM/SIGHUP; SIGXFSZ → EFBIG
  ess::set_input_tracking(true);  // no output may replace a file this command read
  ess::h5::install_failure_guard(hdf5_failed, hdf5_timeout());
  ess::cli::set_command_line(argc, argv);
  try {
    ess::cli::mpi::init(&argc, &argv);  // under mpirun/srun: compute and analyze divide layers among ranks
  } catch (const ess::Error& e) {
    std::cerr << "ess: error: " << e.message(ess::cli::flag_name) << "\n";
    return static_cast<int>(e.code());
  }
  // Every way out of a command goes through mpi::finish (MPI is finalized on every rank) or, after
  // an error, mpi::abort (every rank ended).
  return ess::cli::mpi::finish(run_command(argc, argv));
}
