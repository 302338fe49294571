// Test utilities shared by the unit tests.
#pragma once
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "libess/engine.h"
#include "libess/operator.h"

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

}  // namespace ess::test
