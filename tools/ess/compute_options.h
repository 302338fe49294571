// The ESS options shared by `compute`, `analyze` and `bench`.
#pragma once
#include <thread>

#include "libess/compute.h"
#include "libess/error.h"
#include "libess/memory.h"
#include "tools/ess/cli.h"

namespace ess::cli {

class EssOptionParser {
 public:
  void add_to(po::options_description& opts) {
    opts.add_options()("tol", po::value(&tol_)->default_value(1e-3), "tolerance τ for tolerance-ESS")(
        "tol-mode", po::value(&tol_mode_)->default_value("absolute"),
        "threshold mode: absolute (σ > τ), block (σ > τ·σ1(H_i)), layer (σ > τ·max σ1 of the layer)")(
        "engine", po::value(&engine_)->default_value("auto"), "auto, dense, structured or sweep")(
        "indices", po::value(&indices_)->default_value(""), "blocks i to measure, start:stop:step (default all)")(
        "keep-sigma", po::value(&keep_sigma_)->default_value(0), "store the top-K singular values per block")(
        "threads", po::value(&threads_)->default_value(0), "worker threads (0 = all cores)")(
        "sweep-rtol", po::value(&sweep_rtol_)->default_value(1e-12),
        "sweep engine: drop σ below this fraction of the running largest σ")("quiet,q", po::bool_switch(&quiet_),
                                                                             "no progress on stderr");
    add_memory_option(opts, max_memory_);
  }
  EssOptions options(const po::variables_map&) const {
    EssOptions o;
    o.tol = tol_;
    o.tol_mode = parse_tol_mode(tol_mode_);
    o.engine = parse_engine(engine_);
    o.indices = indices_;
    o.keep_sigma = keep_sigma_;
    o.threads = threads_;
    o.sweep_rtol = sweep_rtol_;
    std::string why;
    if (!o.IsValid(&why)) throw UsageError(why);
    apply_memory_option(max_memory_);
    return o;
  }
  bool quiet() const { return quiet_; }

 private:
  double tol_ = 1e-3, sweep_rtol_ = 1e-12;
  std::string tol_mode_, engine_, indices_, max_memory_;
  int keep_sigma_ = 0, threads_ = 0;
  bool quiet_ = false;
};

}  // namespace ess::cli
