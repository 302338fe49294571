#include "libess/metrics.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "libess/error.h"

namespace ess {

TolMode parse_tol_mode(const std::string& s) {
  if (s == "absolute") return TolMode::absolute;
  if (s == "block") return TolMode::block;
  if (s == "layer") return TolMode::layer;
  throw UsageError({"unknown ", Option{"tol_mode"}, " '" + s + "' (expected absolute, block or layer)"});
}

const char* to_string(TolMode m) {
  switch (m) {
    case TolMode::absolute:
      return "absolute";
    case TolMode::block:
      return "block";
    case TolMode::layer:
      return "layer";
  }
  return "?";
}

int count_above(const double* sigma, int n, double threshold) {
  int k = 0;
  for (int j = 0; j < n; ++j) k += sigma[j] > threshold;
  return k;
}

double tolerance_threshold(TolMode mode, double tol, double block_sigma1, double layer_sigma1) {
  switch (mode) {
    case TolMode::absolute:
      return tol;
    case TolMode::block:
      return tol * block_sigma1;
    case TolMode::layer:
      return tol * layer_sigma1;
  }
  return tol;
}

bool tolerance_count_decided(TolMode mode, double tol, const double* sigma, int n, double error,
                             double layer_sigma1_floor) {
  if (!(error > 0)) return true;
  const double s1 = n > 0 ? sigma[0] : 0.0;
  double lo = tol, hi = tol;  // the range the threshold lies in
  if (mode == TolMode::block) {
    lo = tol * std::max(0.0, s1 - error);
    hi = tol * (s1 + error);
  } else if (mode == TolMode::layer) {
    lo = tol * std::max(layer_sigma1_floor, s1);
  }
  if (!(error < lo)) return false;  // a value not computed (≤ error) could be above the threshold
  if (mode == TolMode::layer) return true;
  // Exact σ_k ∈ [σ_k − error, σ_k + error]: counted (> threshold) for certain when σ_k − error > hi,
  // not counted for certain when σ_k + error ≤ lo.
  for (int k = 0; k < n; ++k)
    if (sigma[k] + error > lo && sigma[k] - error <= hi) return false;
  return true;
}

double entropy_ess(const double* sigma, int n) {
  double total = 0;
  for (int j = 0; j < n; ++j) total += sigma[j];
  if (!(total > 0)) return 0.0;
  double h = 0;
  for (int j = 0; j < n; ++j) {
    double p = sigma[j] / total;
    if (p > 0) h -= p * std::log(p);
  }
  return std::exp(h);
}

// With S = Σ σ_k, A = Σ σ_k log σ_k over the computed values and a tail of sum s and
// g = Σ σ log σ over the tail, the entropy is h(s, g) = log(S + s) − (A + g)/(S + s). For a tail of
// at most n values in [0, σ_count] with Σ σ² = M: s ∈ [M/σ_count, √(n M)], and for a given s,
// g ∈ [s log(s/n), s log σ_count] (Jensen; log σ ≤ log σ_count). h is decreasing in g, so
//   lower = min_s h(s, s log σ_count): increasing in s (since A ≥ S log σ_count), at s = M/σ_count;
//   upper = max_s h(s, s log(s/n)): its derivative has the sign of A − S log(s/n), so at
//           s = n·exp(A/S) clamped to the range of s.
EssInterval entropy_ess_bounds(const double* sigma, int count, int rank_bound, double tail_mass, double tail_slack) {
  const double exact = entropy_ess(sigma, count);
  const int n = rank_bound - count;
  if (count <= 0 || n <= 0 || !(sigma[count - 1] > 0) || !(tail_mass + tail_slack > 0)) return {exact, exact};
  double S = 0, A = 0;
  for (int j = 0; j < count; ++j) {
    S += sigma[j];
    if (sigma[j] > 0) A += sigma[j] * std::log(sigma[j]);
  }
  const double smallest = sigma[count - 1], c = std::log(smallest);
  const double m_lo = std::max(0.0, tail_mass - tail_slack), m_hi = std::max(0.0, tail_mass + tail_slack);
  const double s_min = m_lo / smallest, s_max = std::max(s_min, std::min(std::sqrt(n * m_hi), n * smallest));
  auto h = [&](double s, double g) { return std::log(S + s) - (A + g) / (S + s); };
  const double lower = h(s_min, s_min * c);
  const double s_star = std::clamp(n * std::exp(A / S), s_min, s_max);
  const double upper = s_star > 0 ? h(s_star, s_star * std::log(s_star / n)) : h(0.0, 0.0);
  // A little room for the rounding of the computed σ and of the sums above.
  return {std::exp(lower) * (1 - 1e-9), std::exp(std::max(upper, lower)) * (1 + 1e-9)};
}

EssInterval partial_entropy_interval(const double* sigma, int count, int rank_bound, double frobenius2,
                                     double error_bound) {
  double computed2 = 0, S = 0, E = 0, slack = 1e-12 * std::max(frobenius2, 0.0);
  for (int j = 0; j < count; ++j) {
    computed2 += sigma[j] * sigma[j];
    S += sigma[j];
    E += error_bound;
    slack += 2 * sigma[j] * error_bound + error_bound * error_bound;
  }
  const double tail = count >= rank_bound ? 0.0 : std::max(0.0, frobenius2 - computed2);
  EssInterval e = entropy_ess_bounds(sigma, count, rank_bound, tail, count >= rank_bound ? 0.0 : slack);
  if (error_bound > 0 && S > E) {
    double dh = 0;
    for (int j = 0; j < count; ++j) {
      const double d = std::min(1.0, (error_bound + sigma[j] / S * E) / (S - E));
      dh += d > 0 ? std::max(-d * std::log(d), d) : 0.0;
    }
    e.lower *= std::exp(-dh);
    e.upper *= std::exp(dh);
  } else if (error_bound > 0) {
    // The errors could take up all of the computed mass: only the range every spectrum has.
    e.lower = std::min(e.lower, 1.0);
    e.upper = std::max(e.upper, static_cast<double>(std::max(rank_bound, 1)));
  }
  return e;
}

double frobenius_from_sigma(const double* sigma, int n) {
  // Scaled sum of squares, safe against overflow/underflow.
  double scale = 0, ssq = 1;
  for (int j = 0; j < n; ++j) {
    double a = std::abs(sigma[j]);
    if (a == 0) continue;
    if (scale < a) {
      ssq = 1 + ssq * (scale / a) * (scale / a);
      scale = a;
    } else {
      ssq += (a / scale) * (a / scale);
    }
  }
  return scale * std::sqrt(ssq);
}

namespace {
bool parse_int(const std::string& s, long long* out) {
  if (s.empty()) return false;
  std::istringstream in(s);
  in >> *out;
  return in && in.eof();
}
}  // namespace

namespace {

// start:stop:step of a spec resolved against L (start ≥ 1, stop ≤ L, step ≥ 1).
struct IndexRange {
  long long start = 1, stop = 0, step = 1;
  long long count() const { return stop > start ? (stop - start - 1) / step + 1 : 0; }
};

IndexRange parse_range(const std::string& spec, int L) {
  if (L < 2) throw UsageError("sequence length " + std::to_string(L) + " has no blocks (need L ≥ 2)");
  IndexRange r;
  r.stop = L;
  if (spec.empty()) return r;
  std::vector<std::string> parts;
  std::string cur;
  for (char ch : spec) {
    if (ch == ':') {
      parts.push_back(cur);
      cur.clear();
    } else {
      cur += ch;
    }
  }
  parts.push_back(cur);
  const std::vector<MessagePart> bad = {"bad ", Option{"indices"},
                                        " '" + spec + "' (expected start:stop:step, e.g. 1:1024:8)"};
  if (parts.size() > 3) throw UsageError(bad);
  auto value = [&](size_t k, long long dflt) {
    if (k >= parts.size() || parts[k].empty()) return dflt;
    long long v;
    if (!parse_int(parts[k], &v)) throw UsageError(bad);
    return v < 0 ? std::max<long long>(v, -static_cast<long long>(L)) + L : std::min<long long>(v, L);
  };
  r.start = value(0, 1);
  r.stop = parts.size() >= 2 ? value(1, L) : r.start + 1;  // a single number selects one block
  if (parts.size() >= 3 && !parts[2].empty()) {
    if (!parse_int(parts[2], &r.step)) throw UsageError(bad);
    if (r.step <= 0) {
      auto m = bad;
      m.emplace_back(": step must be positive");
      throw UsageError(m);
    }
  }
  if (r.start < 1) r.start = 1;
  if (r.stop > L) r.stop = L;
  if (r.count() == 0)
    throw UsageError({Option{"indices"}, " '" + spec + "' selects no block for L = " + std::to_string(L) +
                                             " (valid i: 1.." + std::to_string(L - 1) + ")"});
  return r;
}

}  // namespace

namespace {

// An explicit list "i,j,k": every entry an integer in 1..L−1 (negatives count from L); sorted
// ascending, duplicates dropped (the engines walk blocks in increasing i).
std::vector<int> parse_list(const std::string& spec, int L) {
  if (L < 2) throw UsageError("sequence length " + std::to_string(L) + " has no blocks (need L ≥ 2)");
  std::vector<int> out;
  size_t start = 0;
  while (start <= spec.size()) {
    const size_t end = std::min(spec.find(',', start), spec.size());
    const std::string item = spec.substr(start, end - start);
    long long v;
    if (!parse_int(item, &v))
      throw UsageError({"bad ", Option{"indices"},
                        " '" + spec + "': '" + item + "' is not an integer (expected i,j,k, e.g. 100,200,300)"});
    const long long i = v < 0 ? v + L : v;
    if (i < 1 || i >= L)
      throw UsageError({Option{"indices"}, " '" + spec + "': block " + item + " is outside 1.." +
                                               std::to_string(L - 1) + " for L = " + std::to_string(L)});
    out.push_back(static_cast<int>(i));
    start = end + 1;
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

bool is_list(const std::string& spec) { return spec.find(',') != std::string::npos; }

}  // namespace

long long count_indices(const std::string& spec, int L) {
  if (is_list(spec)) return static_cast<long long>(parse_list(spec, L).size());
  return parse_range(spec, L).count();
}

std::vector<int> parse_indices(const std::string& spec, int L) {
  if (is_list(spec)) return parse_list(spec, L);
  const IndexRange r = parse_range(spec, L);
  std::vector<int> out;
  out.reserve(static_cast<size_t>(r.count()));
  for (long long k = 0, n = r.count(); k < n; ++k) out.push_back(static_cast<int>(r.start + k * r.step));
  return out;
}

std::vector<int> evenly_spaced_indices(int count, int L) {
  std::vector<int> out;
  for (int j = 0; j < count; ++j) {
    const int i = static_cast<int>(std::lround((j + 1.0) * L / (count + 1.0)));
    if (i >= 1 && i < L && (out.empty() || out.back() != i)) out.push_back(i);
  }
  return out;
}

}  // namespace ess
