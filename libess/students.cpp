#include "libess/students.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <exception>
#include <mutex>
#include <numeric>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "libess/engine.h"
#include "libess/error.h"
#include "libess/hdf5.h"
#include "libess/memory.h"
#include "libess/operator.h"
#include "libess/tensor.h"

namespace ess {

std::string to_string(const StudentPattern& p) {
  if (p.topk > 0) return "topk=" + std::to_string(p.topk);
  std::string s = "window=" + std::to_string(p.window);
  if (p.sinks > 0) s += "+sinks=" + std::to_string(p.sinks);
  return s;
}

namespace {

std::string join(const std::vector<int>& v) {
  std::string s;
  for (size_t k = 0; k < v.size(); ++k) s += (k ? "," : "") + std::to_string(v[k]);
  return s;
}

UsageError bad_spec(const std::string& what) {
  return UsageError({Option{"students"}, ": " + what +
                                             " (expected 'default', 'off' or settings such as "
                                             "'window=16,64;sinks=4;topk=16;ess=1;families=all')"});
}

std::vector<int> parse_ints(const std::string& key, const std::string& list) {
  std::vector<int> out;
  std::stringstream in(list);
  std::string item;
  while (std::getline(in, item, ',')) {
    size_t used = 0;
    long v = -1;
    try {
      v = std::stol(item, &used);
    } catch (...) {
      used = 0;
    }
    if (item.empty() || used != item.size() || v < 0 || v > 100000000)
      throw bad_spec(key + " value '" + item + "' is not a size ≥ 0");
    out.push_back(static_cast<int>(v));
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

}  // namespace

void StudentOptions::validate() const {
  for (int w : windows)
    if (w < 1) throw UsageError({Option{"students"}, ": window sizes must be ≥ 1"});
  for (int k : topk)
    if (k < 1) throw UsageError({Option{"students"}, ": top-k sizes must be ≥ 1"});
  for (int s : sinks)
    if (s < 0) throw UsageError({Option{"students"}, ": sink counts must be ≥ 0"});
  if (enabled && families.empty()) throw UsageError({Option{"students"}, ": no families selected"});
}

bool StudentOptions::applies_to(const std::string& family) const {
  if (!enabled) return false;
  for (const auto& f : families)
    if (f == "all" || f == family) return true;
  return false;
}

std::vector<StudentPattern> StudentOptions::patterns(int L) const {
  std::vector<StudentPattern> out;
  for (int w : windows) {
    if (w >= L) continue;
    out.push_back({w, 0, 0});
    for (int s : sinks)
      if (s > 0 && s + w < L) out.push_back({w, s, 0});
  }
  for (int k : topk)
    if (k < L) out.push_back({0, 0, k});
  return out;
}

StudentOptions parse_student_options(const std::string& spec) {
  StudentOptions o;
  if (spec.empty() || spec == "default") return o;
  if (spec == "off" || spec == "none" || spec == "0") {
    o.enabled = false;
    return o;
  }
  std::stringstream in(spec);
  std::string part;
  while (std::getline(in, part, ';')) {
    if (part.empty()) continue;
    const size_t eq = part.find('=');
    if (eq == std::string::npos) throw bad_spec("'" + part + "' is not key=value");
    const std::string key = part.substr(0, eq), value = part.substr(eq + 1);
    if (key == "window" || key == "windows") {
      o.windows = parse_ints(key, value);
    } else if (key == "sinks") {
      o.sinks = parse_ints(key, value);
    } else if (key == "topk") {
      o.topk = parse_ints(key, value);
    } else if (key == "ess") {
      if (value == "auto")
        o.ess = StudentOptions::Ess::cheap;
      else if (value == "all" || value == "1")
        o.ess = StudentOptions::Ess::all;
      else if (value == "none" || value == "0")
        o.ess = StudentOptions::Ess::none;
      else
        throw bad_spec("ess must be auto, all or none");
    } else if (key == "families") {
      o.families.clear();
      std::stringstream f(value);
      std::string name;
      while (std::getline(f, name, ','))
        if (!name.empty()) o.families.push_back(name);
    } else {
      throw bad_spec("unknown setting '" + key + "'");
    }
  }
  o.sinks.erase(std::remove(o.sinks.begin(), o.sinks.end(), 0), o.sinks.end());  // 0: the window alone
  o.validate();
  return o;
}

std::string to_string(const StudentOptions& o) {
  if (!o.enabled) return "off";
  std::string fam;
  for (size_t k = 0; k < o.families.size(); ++k) fam += (k ? "," : "") + o.families[k];
  return "window=" + join(o.windows) + ";sinks=" + join(o.sinks) + ";topk=" + join(o.topk) + ";ess=" +
         (o.ess == StudentOptions::Ess::all    ? "all"
          : o.ess == StudentOptions::Ess::none ? "none"
                                               : "auto") +
         ";families=" + fam;
}

namespace {

// Tolerance- and entropy-ESS of the restricted blocks of one (pattern, batch, channel).
class RestrictedEssSink final : public SpectrumSink {
 public:
  RestrictedEssSink(StudentResults& s, size_t base, double tol, TolMode mode, double layer_max)
      : S_(s), base_(base), tol_(tol), mode_(mode), layer_max_(layer_max) {}
  void block(int pos, const double* sigma, int n, double, bool converged) override {
    bool finite = converged;
    for (int j = 0; j < n; ++j) finite = finite && std::isfinite(sigma[j]);
    if (!finite) {
      S_.tolerance_ess[base_ + pos] = -1;
      S_.entropy_ess[base_ + pos] = std::nan("");
      return;
    }
    const double s1 = n > 0 ? sigma[0] : 0.0;
    S_.tolerance_ess[base_ + pos] = count_above(sigma, n, tolerance_threshold(mode_, tol_, s1, layer_max_));
    S_.entropy_ess[base_ + pos] = entropy_ess(sigma, n);
  }
  bool count_decided(const double* sigma, int n, double error_bound) const override {
    return tolerance_count_decided(mode_, tol_, sigma, n, error_bound, layer_max_);
  }

 private:
  StudentResults& S_;
  size_t base_;
  double tol_;
  TolMode mode_;
  double layer_max_;
};

// Σ over block H_i = E[i:, :i] for every i = 1..L−1 of the squared entries E (given row by row
// through `entry`): B(1) = Σ_{r≥1} E[r,0], B(i+1) = B(i) − Σ_{j<i} E[i,j] + Σ_{r>i} E[r,i].
// Long double and a clamp at 0 keep the running difference from going negative by rounding.
struct BlockSums {
  std::vector<long double> row_before, col_after;  // Σ_{j<r} E[r,j], Σ_{r>j} E[r,j]
  long double total = 0;                           // Σ over the lower triangle, diagonal included
  explicit BlockSums(int L) : row_before(L, 0.0L), col_after(L, 0.0L) {}
  void add(int r, int j, double e) {
    total += e;
    if (j < r) {
      row_before[r] += e;
      col_after[j] += e;
    }
  }
  // Row r's sums, taken by the caller: Σ_{j<r} E[r, j] (its col_after entries already added) and
  // the diagonal E[r, r].
  void add_row(int r, long double before, long double diagonal) {
    row_before[r] += before;
    total += before + diagonal;
  }
  // out[i] for i = 1..L−1 (out[0] unused).
  std::vector<double> blocks() const {
    const int L = static_cast<int>(row_before.size());
    std::vector<double> out(L, 0.0);
    long double B = L > 1 ? col_after[0] : 0.0L;
    for (int i = 1; i < L; ++i) {
      out[i] = static_cast<double>(std::max(B, 0.0L));
      B = B - row_before[i] + col_after[i];
    }
    return out;
  }
};

double relative(double err2, double norm2) { return norm2 > 0 ? std::sqrt(std::max(err2, 0.0) / norm2) : 0.0; }

// Keys of row r a top-k pattern keeps (flags in `keep`, length r + 1), given the row's entries
// T(r, 0…r): the k largest |T(r, j)|, ties to the later key. (Window patterns keep ranges:
// window_width and kept_rows_end below.)
void topk_row(int topk, const double* row, int r, std::vector<char>& keep, std::vector<int>& order) {
  keep.assign(r + 1, 0);
  order.resize(r + 1);
  std::iota(order.begin(), order.end(), 0);
  const int k = std::min(topk, r + 1);
  auto before = [&](int a, int b) {
    const double x = std::abs(row[a]), y = std::abs(row[b]);
    return x > y || (x == y && a > b);
  };
  std::nth_element(order.begin(), order.begin() + (k - 1), order.end(), before);
  for (int t = 0; t < k; ++t) keep[order[t]] = 1;
}

// A window (+ sinks) pattern by rows and by columns: row r keeps keys j < sinks and j > r − width;
// column j is kept in rows r < kept_rows_end (every row for a sink column). Window 0: no window.
int window_width(const StudentPattern& p, int L) { return p.window > 0 ? p.window : L + 1; }
int kept_rows_end(const StudentPattern& p, int j, int L) {
  return j < p.sinks ? L : static_cast<int>(std::min<long>(L, static_cast<long>(j) + window_width(p, L)));
}

// Singular values of the blocks of a window (+ sinks) student of T from its nonzero part only: block
// i has entries in columns j < s (every row) and i − w < j < i (rows r ≤ j + w − 1 ≤ i + w − 2).
void window_block_spectra(const Matrix& T, const StudentPattern& p, const std::vector<int>& indices, DenseWorkspace& ws,
                          SpectrumSink& sink) {
  const int L = static_cast<int>(T.rows());
  std::vector<int> cols;
  for (size_t pos = 0; pos < indices.size(); ++pos) {
    const int i = indices[pos];
    cols.clear();
    const int sink_end = std::min(p.sinks, i), w = window_width(p, L);
    for (int j = 0; j < sink_end; ++j) cols.push_back(j);
    for (int j = std::max(sink_end, i - w + 1); j < i; ++j) cols.push_back(j);
    // The block's rows end where its furthest-reaching kept column ends (a sink column: row L).
    const int row_end =
        cols.empty() ? i : std::max(kept_rows_end(p, cols.front(), L), kept_rows_end(p, cols.back(), L));
    const int m = std::max(0, row_end - i), n = static_cast<int>(cols.size());
    const int mn = std::min(m, n);
    if (ws.block.size() < static_cast<size_t>(m) * n) ws.block.resize(static_cast<size_t>(m) * n);
    if (ws.s.size() < static_cast<size_t>(std::max(mn, 1))) ws.s.resize(std::max(mn, 1));
    // The student's entries: T where the pattern keeps them (a sink column, or r − j < w), else 0.
    for (int q = 0; q < n; ++q) {
      const int j = cols[q], kept_end = kept_rows_end(p, j, L);
      for (int r = 0; r < m; ++r) ws.block[static_cast<size_t>(q) * m + r] = i + r < kept_end ? T(i + r, j) : 0.0;
    }
    const bool ok = singular_values(m, n, ws.block.data(), ws.s.data(), ws.work, ws.iwork);
    sink.block(static_cast<int>(pos), ws.s.data(), mn, 0.0, ok);
  }
}

}  // namespace

StudentResults measure_students(const LayerOperator& op, const std::vector<int>& indices, const StudentOptions& options,
                                const StudentEssSettings& ess, int threads, long item_begin, long item_end) {
  const auto t_start = std::chrono::steady_clock::now();
  options.validate();
  const int L = op.seq_len(), B = op.batch(), C = op.channels();
  StudentResults S;
  S.patterns = options.patterns(L);
  S.batch = B;
  S.channels = C;
  for (const auto& p : S.patterns) S.has_ess = S.has_ess || options.measures_ess(p);
  const int P = static_cast<int>(S.patterns.size()), I = static_cast<int>(indices.size());
  if (P == 0) return S;
  const size_t n_block = static_cast<size_t>(P) * B * C * I, n_op = static_cast<size_t>(P) * B * C;
  S.masked_error.assign(n_block, 0.0);
  S.renormalized_error.assign(n_block, 0.0);
  S.operator_masked_error.assign(n_op, 0.0);
  S.operator_renormalized_error.assign(n_op, 0.0);
  if (S.has_ess) {
    S.tolerance_ess.assign(n_block, -2);
    S.entropy_ess.assign(n_block, std::nan(""));
  }
  // The sweep steps through every i between the first and last block; for a sparse index set the
  // SVDs of just the requested blocks are cheaper (the rule compute's `auto` uses for dense T).
  const bool use_sweep = I > 0 && 4L * I >= static_cast<long>(indices.back() - indices.front() + 1);

  threads = threads > 0 ? threads : static_cast<int>(std::thread::hardware_concurrency());
  const long items = static_cast<long>(B) * C;
  const long first = std::clamp(item_begin, 0L, items);
  const long last = item_end < 0 ? items : std::clamp(item_end, first, items);
  threads = static_cast<int>(std::max(1L, std::min<long>(threads, last - first)));
  // T (twice: by columns and by rows) and the engine's block copy / carry; a top-k pattern's flags
  // (a byte per entry), and the top-k student itself when its ESS is measured.
  bool topk = false, topk_ess = false;
  for (const auto& p : S.patterns) {
    topk = topk || p.topk > 0;
    topk_ess = topk_ess || (p.topk > 0 && options.measures_ess(p));
  }
  const double per_thread = 8.0 * L * L * (2.8 + (topk ? 0.125 : 0.0) + (topk_ess ? 1.0 : 0.0));
  const std::uint64_t avail = available_memory_bytes();
  if (avail > 0) {
    const int fit = static_cast<int>(0.8 * static_cast<double>(avail) / per_thread);
    if (fit < 1) {
      std::ostringstream m;
      m << "sparse students at L = " << L << " need about " << per_thread / 1e9
        << " GB for dense L×L operators but only " << static_cast<double>(avail) / 1e9
        << " GB is available; turn them off with ";
      throw InputError({m.str(), Option{"students"}, " off"});
    }
    threads = std::min(threads, fit);
  }

  std::atomic<long> next{first};
  std::exception_ptr failure;
  std::mutex failure_mutex;
  auto worker = [&]() {
    try {
      // M: the operator T as materialized (column-major: its columns contiguous); Tt = Tᵀ (its rows
      // contiguous). Every sum below runs along a row of T (through Tt) or a column (through M) and
      // stays in a register; the per-block sums are then BlockSums' running differences.
      // ESS time of `ess analyze` on a pythia-160m shape, 1024 tokens, one thread: 41.0 s at first,
      // with Tt 40.0 s, with row sums in registers 34.3 s, Tt in tiles 32.1 s; then, alternating
      // with that build (29.1 / 31.9 s), column sums along M's columns (no long double
      // read-modify-write in memory per entry) and window rows by ranges 25.0 / 25.4 s.
      Matrix M(L, L), Tt(L, L);
      Matrix top;                       // a top-k student itself, when its ESS is measured
      std::vector<unsigned char> kept;  // top-k: which entries (r, j) the row pass kept, column-major
      std::vector<double> f(L);         // renormalized student: row r = f_r · the kept entries
      std::vector<long double> row_all(L);
      DenseWorkspace ws;
      std::vector<char> keep;
      std::vector<int> order;
      for (long item = next++; item < last; item = next++) {
        const int b = static_cast<int>(item / C), c = static_cast<int>(item % C);
        op.materialize(b, c, M);
        // Tt(j, r) = T(r, j) for j ≤ r (all the patterns read), in 32 × 32 tiles: read and written
        // a cache line at a time.
        for (int r0 = 0; r0 < L; r0 += 32)
          for (int j0 = 0; j0 <= r0; j0 += 32)
            for (int r = r0; r < std::min(L, r0 + 32); ++r)
              for (int j = j0; j < std::min(r + 1, j0 + 32); ++j) Tt(j, r) = M(r, j);
        BlockSums norm(L);
        for (int r = 0; r < L; ++r) {
          const double* row = Tt.col(r).data();
          long double before = 0, all = 0;
          for (int j = 0; j < r; ++j) {
            before += row[j] * row[j];
            all += row[j];
          }
          norm.add_row(r, before, row[r] * row[r]);
          row_all[r] = all + row[r];
        }
        for (int j = 0; j < L; ++j) {
          const double* col = M.col(j).data();
          long double after = 0;
          for (int r = j + 1; r < L; ++r) after += col[r] * col[r];
          norm.col_after[j] = after;
        }
        const std::vector<double> norm_blocks = norm.blocks();
        for (int p = 0; p < P; ++p) {
          const StudentPattern& pat = S.patterns[p];
          const bool window = pat.topk == 0;
          const int width = window_width(pat, L);
          BlockSums masked(L), renorm(L);
          if (!window) kept.assign(static_cast<size_t>(L) * L, 0);
          // Row pass: the pattern's row sums, f_r, and (top-k) the kept flags.
          for (int r = 0; r < L; ++r) {
            const double* row = Tt.col(r).data();  // T(r, 0…r)
            // Window (+ sinks): kept j < s and j > r − w; dropped s ≤ j ≤ r − w.
            const int s0 = std::min(pat.sinks, r + 1), d1 = std::max(s0, r - width + 1);
            long double row_in = 0;
            if (window) {
              for (int j = 0; j < s0; ++j) row_in += row[j];
              for (int j = d1; j <= r; ++j) row_in += row[j];
            } else {
              topk_row(pat.topk, row, r, keep, order);
              for (int j = 0; j <= r; ++j)
                if (keep[j]) {
                  row_in += row[j];
                  kept[static_cast<size_t>(j) * L + r] = 1;
                }
            }
            // S_r = M_r · (Σ_j T_rj) / (Σ_{j∈P} T_rj); a row with no mass on the pattern becomes 0.
            f[r] = row_in != 0 ? static_cast<double>(row_all[r] / row_in) : 0.0;
            const double fr = f[r];
            long double m_row = 0, r_row = 0;
            auto in = [&](double t) {
              const double d = t - fr * t;
              r_row += d * d;
            };
            auto out = [&](double t) {
              const long double e = t * t;
              m_row += e;
              r_row += e;
            };
            if (window) {
              const int s1 = std::min(s0, r), e1 = std::min(d1, r);
              for (int j = 0; j < s1; ++j) in(row[j]);
              for (int j = s1; j < e1; ++j) out(row[j]);
              for (int j = e1; j < r; ++j) in(row[j]);
            } else {
              for (int j = 0; j < r; ++j) keep[j] ? in(row[j]) : out(row[j]);
            }
            const double t = row[r];  // the diagonal: in the totals only
            long double m_diag = 0, r_diag = 0;
            const bool keep_diag = window ? (r < s0 || d1 <= r) : keep[r] != 0;
            if (keep_diag) {
              const double d = t - fr * t;
              r_diag = d * d;
            } else {
              m_diag = r_diag = t * t;
            }
            masked.add_row(r, m_row, m_diag);
            renorm.add_row(r, r_row, r_diag);
          }
          // Column pass: Σ_{r>j} of the dropped (masked) and of the student's error (renormalized).
          for (int j = 0; j < L; ++j) {
            const double* col = M.col(j).data();
            long double m_col = 0, r_col = 0;
            auto in = [&](int r) {
              const double t = col[r], d = t - f[r] * t;
              r_col += d * d;
            };
            auto out = [&](int r) {
              const long double e = col[r] * col[r];
              m_col += e;
              r_col += e;
            };
            if (window) {
              const int e1 = kept_rows_end(pat, j, L);
              for (int r = j + 1; r < e1; ++r) in(r);
              for (int r = e1; r < L; ++r) out(r);
            } else {
              const unsigned char* k = kept.data() + static_cast<size_t>(j) * L;
              for (int r = j + 1; r < L; ++r) k[r] ? in(r) : out(r);
            }
            masked.col_after[j] = m_col;
            renorm.col_after[j] = r_col;
          }
          const std::vector<double> mb = masked.blocks(), rb = renorm.blocks();
          const double total = static_cast<double>(norm.total);
          S.operator_masked_error[S.at(p, b, c, 0, 1)] = relative(static_cast<double>(masked.total), total);
          S.operator_renormalized_error[S.at(p, b, c, 0, 1)] = relative(static_cast<double>(renorm.total), total);
          for (int pos = 0; pos < I; ++pos) {
            const int i = indices[pos];
            S.masked_error[S.at(p, b, c, pos, I)] = relative(mb[i], norm_blocks[i]);
            S.renormalized_error[S.at(p, b, c, pos, I)] = relative(rb[i], norm_blocks[i]);
          }
          if (options.measures_ess(pat)) {
            const double layer_max = b < static_cast<int>(ess.layer_sigma_max.size()) ? ess.layer_sigma_max[b] : 0.0;
            RestrictedEssSink sink(S, S.at(p, b, c, 0, I), ess.tol, ess.tol_mode, layer_max);
            if (window) {
              window_block_spectra(M, pat, indices, ws, sink);
            } else {
              top.setZero(L, L);
              for (int j = 0; j < L; ++j)
                for (int r = j; r < L; ++r)
                  if (kept[static_cast<size_t>(j) * L + r]) top(r, j) = M(r, j);
              if (use_sweep)
                sweep_block_spectra(top, indices, ess.sweep_rtol, sink);
              else
                dense_block_spectra(top, indices, ws, sink);
            }
          }
        }
        std::lock_guard<std::mutex> lock(failure_mutex);
        if (failure) return;
      }
    } catch (...) {
      std::lock_guard<std::mutex> lock(failure_mutex);
      if (!failure) failure = std::current_exception();
    }
  };
  set_blas_single_threaded();
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(worker);
  worker();
  for (auto& th : pool) th.join();
  if (failure) std::rethrow_exception(failure);
  S.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  return S;
}

// --- results file ---------------------------------------------------------------------------------

void write_students(const h5::Object& layer_group, const StudentResults& s, int indices) {
  if (s.empty()) return;
  const std::int64_t P = static_cast<std::int64_t>(s.patterns.size()), B = s.batch, C = s.channels, I = indices;
  const size_t n_block = static_cast<size_t>(P * B * C * I), n_op = static_cast<size_t>(P * B * C);
  auto require = [&](const char* what, size_t got, size_t want) {
    if (got != want)
      throw std::invalid_argument(std::string("results writer: students: ") + what + " has " + std::to_string(got) +
                                  " values, expected " + std::to_string(want));
  };
  require("masked_error", s.masked_error.size(), n_block);
  require("renormalized_error", s.renormalized_error.size(), n_block);
  require("operator_masked_error", s.operator_masked_error.size(), n_op);
  require("operator_renormalized_error", s.operator_renormalized_error.size(), n_op);
  const h5::Object g = layer_group.create_group("students");
  std::vector<std::int32_t> window, sinks, topk;
  for (const auto& p : s.patterns) {
    window.push_back(p.window);
    sinks.push_back(p.sinks);
    topk.push_back(p.topk);
  }
  g.set_attr("seconds", s.seconds);
  g.write("window", {P}, window.data());
  g.write("sinks", {P}, sinks.data());
  g.write("topk", {P}, topk.data());
  g.write("masked_error", {P, B, C, I}, s.masked_error.data());
  g.write("renormalized_error", {P, B, C, I}, s.renormalized_error.data());
  g.write("operator_masked_error", {P, B, C}, s.operator_masked_error.data());
  g.write("operator_renormalized_error", {P, B, C}, s.operator_renormalized_error.data());
  if (s.has_ess) {
    require("tolerance_ess", s.tolerance_ess.size(), n_block);
    require("entropy_ess", s.entropy_ess.size(), n_block);
    g.write("tolerance_ess", {P, B, C, I}, s.tolerance_ess.data());
    g.write("entropy_ess", {P, B, C, I}, s.entropy_ess.data());
  }
}

StudentResults read_students(const h5::Object& layer_group, int batch, int channels, int indices) {
  StudentResults s;
  if (!layer_group.has("students")) return s;
  const h5::Object g = layer_group.group("students");
  std::vector<std::int64_t> shape;
  const auto window = g.read_int32("window", &shape);
  const std::int64_t P = shape.size() == 1 ? shape[0] : -1;
  if (P < 0) throw InputError(g.where("window") + ": expected 1 dimension [P], got " + shape_string(shape));
  const std::int64_t B = batch, C = channels, I = indices;
  auto expect = [&](const std::string& ds, const std::vector<std::int64_t>& want) {
    if (shape != want)
      throw InputError(g.where(ds) + ": shape " + shape_string(shape) + ", expected " + shape_string(want));
  };
  const auto sinks = g.read_int32("sinks", &shape);
  expect("sinks", {P});
  const auto topk = g.read_int32("topk", &shape);
  expect("topk", {P});
  for (std::int64_t p = 0; p < P; ++p) {
    if (window[p] < 0 || sinks[p] < 0 || topk[p] < 0 || (topk[p] == 0 && window[p] == 0))
      throw InputError(g.where() + ": pattern " + std::to_string(p) + " (window " + std::to_string(window[p]) +
                       ", sinks " + std::to_string(sinks[p]) + ", topk " + std::to_string(topk[p]) +
                       ") is not a window or a top-k pattern");
    s.patterns.push_back({window[p], sinks[p], topk[p]});
  }
  s.batch = batch;
  s.channels = channels;
  if (g.has_attr("seconds")) s.seconds = g.attr_double("seconds");
  s.masked_error = g.read_double("masked_error", &shape);
  expect("masked_error", {P, B, C, I});
  s.renormalized_error = g.read_double("renormalized_error", &shape);
  expect("renormalized_error", {P, B, C, I});
  s.operator_masked_error = g.read_double("operator_masked_error", &shape);
  expect("operator_masked_error", {P, B, C});
  s.operator_renormalized_error = g.read_double("operator_renormalized_error", &shape);
  expect("operator_renormalized_error", {P, B, C});
  if (g.has("tolerance_ess")) {
    s.has_ess = true;
    s.tolerance_ess = g.read_int32("tolerance_ess", &shape);
    expect("tolerance_ess", {P, B, C, I});
    s.entropy_ess = g.read_double("entropy_ess", &shape);
    expect("entropy_ess", {P, B, C, I});
  }
  return s;
}

}  // namespace ess
