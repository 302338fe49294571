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

long long count_indices(const std::string& spec, int L) { return parse_range(spec, L).count(); }

std::vector<int> parse_indices(const std::string& spec, int L) {
  const IndexRange r = parse_range(spec, L);
  std::vector<int> out;
  out.reserve(static_cast<size_t>(r.count()));
  for (long long k = 0, n = r.count(); k < n; ++k) out.push_back(static_cast<int>(r.start + k * r.step));
  return out;
}

}  // namespace ess
