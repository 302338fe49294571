// Sparse students of a layer (issue 14): the operator T restricted to a sparsity pattern — a
// sliding window of w keys, the window plus s "sink" tokens, or the top-k keys of every query —
// and how far the restricted operator is from T on every measured block H_i = T[i:, :i].
// Measured where T is available (ess compute / analyze, after the layer's own ESS), stored in the
// results file under /layers/<name>/students (docs/results-format.md), read back by ess compress
// and ess plan. Definitions in docs/analysis.md ("Sparse students").
//
// Two students per pattern P (a set of allowed (r, j), j ≤ r):
//   masked        M = T ⊙ 1_P            (zero outside P: the best approximation of T supported on P
//                                         in Frobenius norm, so its error lower-bounds every student
//                                         with that pattern — the analogue of the Eckart–Young tail)
//   renormalized  S_r = M_r · (Σ_j T_rj) / (Σ_{j∈P} T_rj)   (row sums kept; for softmax attention
//                                         exactly the softmax over the pattern's keys: what a
//                                         sliding-window / sink / top-k attention computes as a
//                                         drop-in; a row whose pattern sum is 0 becomes 0)
// Errors per block: ‖H_i − X_i‖_F / ‖H_i‖_F (0 for a zero block), X_i the student's block; per
// operator: the same over all of T (diagonal included). The ESS of the restricted operator is that
// of M's blocks (S's blocks have the same rank: S = D M with D diagonal and positive for attention).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "libess/metrics.h"

namespace ess {

class LayerOperator;
namespace h5 {
class Object;
}

// One sparsity pattern: keys j of query r with r − j < window (window 0: no window), or j < sinks,
// or — when topk > 0 — the topk keys of largest |T_rj| (ties: the more recent key first).
struct StudentPattern {
  int window = 0, sinks = 0, topk = 0;
  bool operator==(const StudentPattern& o) const { return window == o.window && sinks == o.sinks && topk == o.topk; }
};
std::string to_string(const StudentPattern& p);  // "window=64", "window=64+sinks=4", "topk=16"

// Which students to measure (the --students option): the grid and the families it applies to.
struct StudentOptions {
  bool enabled = true;
  std::vector<int> windows{16, 64, 256, 1024};
  std::vector<int> sinks{4};  // each window is measured alone and with each of these sink counts
  std::vector<int> topk{16, 64};
  // ESS of the restricted blocks: "auto" (windows with w + s ≤ kCheapEssWidth, whose blocks reduce
  // to at most that many columns; no top-k), "all" or "none".
  enum class Ess { none, cheap, all } ess = Ess::cheap;
  static constexpr int kCheapEssWidth = 64;
  bool measures_ess(const StudentPattern& p) const {
    return ess == Ess::all || (ess == Ess::cheap && p.topk == 0 && p.window + p.sinks <= kCheapEssWidth);
  }
  std::vector<std::string> families{"softmax_attention"};  // "all": every family
  void validate() const;                                   // throws UsageError naming `students`
  bool applies_to(const std::string& family) const;
  // The patterns measured at sequence length L: windows and top-k below L (a window or top-k of
  // L or more keeps all of T), each window alone and with each sink count below it.
  std::vector<StudentPattern> patterns(int seq_len) const;
};
// "default", "off", or ';'-separated settings that replace the defaults they name:
// "window=16,64;sinks=4;topk=16;ess=auto;families=all" (ess: auto|all|none, also 1 = all and
// 0 = none; families: names, comma-separated, or "all").
// An empty list ("topk=") turns that kind off. Throws UsageError naming `students`.
StudentOptions parse_student_options(const std::string& spec);
std::string to_string(const StudentOptions& o);  // the spec that parses back to o

// The students of one layer. Arrays are row-major, pattern first.
struct StudentResults {
  std::vector<StudentPattern> patterns;                                    // [P]
  int batch = 0, channels = 0;                                             // B, C of the layer; I = the layer's indices
  std::vector<double> masked_error;                                        // [P, B, C, I]
  std::vector<double> renormalized_error;                                  // [P, B, C, I]
  std::vector<double> operator_masked_error, operator_renormalized_error;  // [P, B, C]
  bool has_ess = false;                                                    // some pattern's ESS was measured
  std::vector<std::int32_t> tolerance_ess;  // [P, B, C, I] (−1: SVD failed, −2: not measured)
  std::vector<double> entropy_ess;          // [P, B, C, I]
  double seconds = 0;

  bool empty() const { return patterns.empty(); }
  int num_indices() const {
    const size_t pbc = patterns.size() * static_cast<size_t>(batch) * channels;
    return pbc ? static_cast<int>(masked_error.size() / pbc) : 0;
  }
  size_t at(int p, int b, int c, int pos, int I) const {
    return ((static_cast<size_t>(p) * batch + b) * channels + c) * I + pos;
  }
};

// What the ESS of a restricted block is compared with: the teacher's settings (threshold mode
// `layer` uses the teacher's largest σ_1 of batch element b, so student and teacher share a scale).
struct StudentEssSettings {
  double tol = 1e-3;
  TolMode tol_mode = TolMode::absolute;
  double sweep_rtol = 1e-12;
  std::vector<double> layer_sigma_max;  // [B] (tol_mode layer)
};

// Measures every pattern of `options` on every (batch, channel) of `op` at the blocks `indices`
// (threads over channels; 0 = all cores). Throws InputError when a dense L×L does not fit.
// Only the (batch, channel) items b·C + c in [item_begin, item_end) when given (one process's
// share, compute.h LayerShare; item_end < 0: all); the arrays keep their whole-layer shape.
StudentResults measure_students(const LayerOperator& op, const std::vector<int>& indices, const StudentOptions& options,
                                const StudentEssSettings& ess, int threads, long item_begin = 0, long item_end = -1);

// Results-file group /layers/<name>/students (docs/results-format.md). read_students validates
// every shape against the layer's B, C, I (InputError naming the dataset).
void write_students(const h5::Object& layer_group, const StudentResults& s, int indices);
StudentResults read_students(const h5::Object& layer_group, int batch, int channels, int indices);

}  // namespace ess
