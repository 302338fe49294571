// Test utilities shared by the unit tests.
#pragma once
#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <random>
#include <string>
#include <vector>

#include "libess/engine.h"
#include "libess/error.h"
#include "libess/operator.h"
#include "libess/tensor.h"

namespace ess::test {

// Collects every block's singular values.
struct CollectSink : SpectrumSink {
  std::vector<std::vector<double>> sigma;
  std::vector<double> bound;
  std::vector<bool> ok;
  void block(int pos, const double* s, int n, double error_bound, bool converged) override {
    if (static_cast<int>(sigma.size()) <= pos) {
      sigma.resize(pos + 1);
      bound.resize(pos + 1);
      ok.resize(pos + 1);
    }
    sigma[pos].assign(s, s + n);
    bound[pos] = error_bound;
    ok[pos] = converged;
  }
};

// Singular values of A, descending, by Eigen's JacobiSVD (independent of LAPACK). Defined once in
// tests/test_helpers.cpp: instantiating JacobiSVD costs seconds of compile time per file.
Vector jacobi_singular_values(const Matrix& A);

// Reference singular values of H_i by Eigen's JacobiSVD.
inline std::vector<double> reference_sigma(const Matrix& T, int i) {
  const int L = static_cast<int>(T.rows());
  const Vector s = jacobi_singular_values(T.block(i, 0, L - i, i));
  return std::vector<double>(s.data(), s.data() + s.size());
}

// An operator given by explicit dense T matrices (one per batch × channel), for pipeline tests.
class ExplicitOperator : public LayerOperator {
 public:
  ExplicitOperator(int batch, int channels, std::vector<Matrix> Ts) : B_(batch), C_(channels), Ts_(std::move(Ts)) {}
  std::string family() const override { return "dense"; }
  ChannelKind channel_kind() const override { return ChannelKind::channel; }
  int batch() const override { return B_; }
  int channels() const override { return C_; }
  int seq_len() const override { return static_cast<int>(Ts_[0].rows()); }
  int tss(int i) const override { return i; }
  void materialize(int b, int c, Eigen::Ref<Matrix> T) const override { T = Ts_[b * C_ + c]; }
  Vector apply(int b, int c, const Vector& x) const override { return Ts_[b * C_ + c] * x; }

 private:
  int B_, C_;
  std::vector<Matrix> Ts_;
};

inline Matrix random_matrix(std::mt19937& rng, int rows, int cols, double scale = 1.0) {
  std::normal_distribution<double> n(0.0, scale);
  Matrix M(rows, cols);
  for (int c = 0; c < cols; ++c)
    for (int r = 0; r < rows; ++r) M(r, c) = n(rng);
  return M;
}

// Tensors of the given shape with independent N(0, scale²) / U(lo, hi) entries.
inline Tensor randn(std::mt19937& rng, std::vector<std::int64_t> shape, double scale = 1.0) {
  Tensor t(std::move(shape));
  std::normal_distribution<double> n(0.0, scale);
  for (auto& v : t.data) v = n(rng);
  return t;
}
inline Tensor uniform(std::mt19937& rng, std::vector<std::int64_t> shape, double lo, double hi) {
  Tensor t(std::move(shape));
  std::uniform_real_distribution<double> u(lo, hi);
  for (auto& v : t.data) v = u(rng);
  return t;
}

// ‖a − b‖_F / ‖b‖_F.
inline double relative_error(const Matrix& a, const Matrix& b) { return (a - b).norm() / std::max(b.norm(), 1e-300); }

// Writes `bytes` to `path` (binary); returns the path.
inline std::string write_file(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return path;
}

// `call` must throw InputError whose message contains every fragment; options named in the message
// (Option parts) are written as the CLI writes them: max_memory → --max-memory.
template <class F>
void expect_input_error(F&& call, std::initializer_list<std::string> fragments) {
  try {
    call();
    FAIL("no error");
  } catch (const InputError& e) {
    const std::string m = e.message([](std::string o) {
      std::replace(o.begin(), o.end(), '_', '-');
      return "--" + o;
    });
    CAPTURE(m);
    for (const auto& f : fragments) {
      CAPTURE(f);
      CHECK(m.find(f) != std::string::npos);
    }
  }
}

inline std::string temp_dir(const std::string& name) {
  auto p = std::filesystem::temp_directory_path() / ("ess_test_" + name + "_" + std::to_string(::getpid()));
  std::filesystem::create_directories(p);
  return p.string();
}

// A per-test directory under the system temp dir, emptied first and removed when the test ends
// (pass or fail).
struct TempDir {
  std::filesystem::path path;
  explicit TempDir(const std::string& name)
      : path(std::filesystem::temp_directory_path() / ("ess_test_" + name + "_" + std::to_string(::getpid()))) {
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string operator/(const std::string& name) const { return (path / name).string(); }
  void write(const std::string& name, const std::string& text) const {
    std::ofstream(path / name, std::ios::binary) << text;
  }
};

// T with every entry above the diagonal of each [b, c] matrix set to zero (a causal operator).
Tensor lower_triangular(Tensor T);

// Every operator family and variant (attributes included) with generic random inputs drawn from
// rng: the conformance cases of tests/test_operators.cpp, shared so that every path that computes
// an operator itself (realizations, the lanczos engine's block products) meets every attribute —
// the lanczos products once ignored softmax attention's soft cap, which only these variants had.
// L = 20; batch 2; 2–4 channels.
struct OperatorCase {
  std::string name;
  std::unique_ptr<LayerOperator> op;
  int rank_bound;   // exact bound on rank(H_i) (besides i and L − i); -1 = none
  bool structured;  // has a realization
};
std::vector<OperatorCase> operator_cases(std::mt19937& rng);

}  // namespace ess::test
