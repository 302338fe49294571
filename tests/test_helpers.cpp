// The out-of-line parts of tests/test_helpers.h.
#include "test_helpers.h"

#include <Eigen/SVD>

#include "operators/conv.h"
#include "operators/delta_net.h"
#include "operators/dense.h"
#include "operators/gla.h"
#include "operators/linear_attention.h"
#include "operators/mamba.h"
#include "operators/mamba2.h"
#include "operators/retention.h"
#include "operators/s4d.h"
#include "operators/softmax_attention.h"

namespace ess::test {

Vector jacobi_singular_values(const Matrix& A) { return Eigen::JacobiSVD<Matrix>(A).singularValues(); }

// Zeroes every entry above the diagonal of each [b, c] matrix.
Tensor lower_triangular(Tensor T) {
  for (std::int64_t b = 0; b < T.dim(0); ++b)
    for (std::int64_t c = 0; c < T.dim(1); ++c) {
      auto M = T.matrix({b, c});
      for (Index i = 0; i < M.rows(); ++i)
        for (Index j = i + 1; j < M.cols(); ++j) M(i, j) = 0;
    }
  return T;
}

namespace {

constexpr int kL = 20, kB = 2, kH = 2, kD = 3, kN = 4;

}  // namespace

std::vector<OperatorCase> operator_cases(std::mt19937& rng) {
  std::vector<OperatorCase> v;
  const std::string ctx = "test";
  v.push_back(
      {"dense", std::make_unique<DenseOperator>(lower_triangular(randn(rng, {kB, kH, kL, kL})), ctx), -1, false});
  v.push_back({"softmax",
               std::make_unique<SoftmaxAttentionOperator>(randn(rng, {kB, kH, kL, kD}), randn(rng, {kB, kH, kL, kD}),
                                                          std::vector<std::uint8_t>{}, 0.0, 0, ctx),
               -1, false});
  v.push_back({"softmax_window5",
               std::make_unique<SoftmaxAttentionOperator>(randn(rng, {kB, kH, kL, kD}), randn(rng, {kB, kH, kL, kD}),
                                                          std::vector<std::uint8_t>{}, 0.7, 5, ctx),
               4, false});
  // Strided mask with a global first token: i attends to j if (i − j) % period == 0 or j == 0.
  auto strided_mask = [](int period) {
    std::vector<std::uint8_t> mask(kL * kL, 0);
    for (int i = 0; i < kL; ++i)
      for (int j = 0; j <= i; ++j) mask[i * kL + j] = ((i - j) % period == 0 || j == 0);
    return mask;
  };
  v.push_back({"softmax_mask",
               std::make_unique<SoftmaxAttentionOperator>(randn(rng, {kB, kH, kL, kD}), randn(rng, {kB, kH, kL, kD}),
                                                          strided_mask(3), 0.0, 0, ctx),
               -1, false});
  v.push_back({"linear",
               std::make_unique<LinearAttentionOperator>(randn(rng, {kB, kH, kL, kD}), randn(rng, {kB, kH, kL, kD}),
                                                         false, ctx),
               kD, true});
  v.push_back({"linear_normalized",
               std::make_unique<LinearAttentionOperator>(uniform(rng, {kB, kH, kL, kD}, 0.1, 1),
                                                         uniform(rng, {kB, kH, kL, kD}, 0.1, 1), true, ctx),
               kD, true});
  v.push_back({"retention_head",
               std::make_unique<RetentionOperator>(randn(rng, {kB, kH, kL, kD}), randn(rng, {kB, kH, kL, kD}),
                                                   uniform(rng, {kH}, 0.5, 0.99), ctx),
               kD, true});
  v.push_back({"retention_dim",
               std::make_unique<RetentionOperator>(randn(rng, {kB, kH, kL, kD}), randn(rng, {kB, kH, kL, kD}),
                                                   uniform(rng, {kH, kD}, 0.5, 0.99), ctx),
               kD, true});
  v.push_back({"gla",
               std::make_unique<GlaOperator>(randn(rng, {kB, kH, kL, kD}), randn(rng, {kB, kH, kL, kD}),
                                             uniform(rng, {kB, kH, kL, kD}, -0.5, 0), ctx),
               kD, true});
  v.push_back({"delta",
               std::make_unique<DeltaNetOperator>(randn(rng, {kB, kH, kL, kD}), randn(rng, {kB, kH, kL, kD}, 0.5),
                                                  uniform(rng, {kB, kH, kL}, 0, 1), Tensor(), ctx),
               kD, true});
  v.push_back(
      {"delta_gated",
       std::make_unique<DeltaNetOperator>(randn(rng, {kB, kH, kL, kD}), randn(rng, {kB, kH, kL, kD}, 0.5),
                                          uniform(rng, {kB, kH, kL}, 0, 1), uniform(rng, {kB, kH, kL}, -0.3, 0), ctx),
       kD, true});
  v.push_back({"mamba",
               std::make_unique<MambaOperator>(uniform(rng, {kB, 3, kL}, 0.01, 0.5), uniform(rng, {3, kN}, -2, -0.1),
                                               randn(rng, {kB, kL, kN}), randn(rng, {kB, kL, kN}), ctx),
               kN, true});
  v.push_back({"mamba2",
               std::make_unique<Mamba2Operator>(uniform(rng, {kB, 4, kL}, 0.01, 0.5), uniform(rng, {4}, -2, -0.1),
                                                randn(rng, {kB, 2, kL, kN}), randn(rng, {kB, 2, kL, kN}), ctx),
               kN, true});
  v.push_back({"s4d_real",
               std::make_unique<S4dOperator>(uniform(rng, {3, kN}, -0.9, 0.9), Tensor(), randn(rng, {3, kN}), Tensor(),
                                             randn(rng, {3, kN}), Tensor(), kL, ctx),
               kN, true});
  {
    // Two complex conjugate pairs per channel (modes 0/1 and 2/3): McMillan degree 4 = N.
    Tensor ar({2, 4}), ai({2, 4}), br({2, 4}), bi({2, 4}), cr({2, 4}), ci({2, 4});
    std::uniform_real_distribution<double> u(-0.8, 0.8);
    for (int c = 0; c < 2; ++c)
      for (int p = 0; p < 2; ++p) {
        const int n = c * 4 + 2 * p;
        ar.data[n] = ar.data[n + 1] = u(rng) * 0.7;
        ai.data[n] = u(rng) * 0.7;
        ai.data[n + 1] = -ai.data[n];
        br.data[n] = br.data[n + 1] = u(rng);
        bi.data[n] = u(rng);
        bi.data[n + 1] = -bi.data[n];
        cr.data[n] = cr.data[n + 1] = u(rng);
        ci.data[n] = u(rng);
        ci.data[n + 1] = -ci.data[n];
      }
    v.push_back({"s4d_conjugate_pairs", std::make_unique<S4dOperator>(ar, ai, br, bi, cr, ci, kL, ctx), 4, true});
    // Unpaired complex modes: 2 real dims each.
    Tensor ai2 = uniform(rng, {2, 4}, 0.1, 0.5);
    v.push_back({"s4d_complex",
                 std::make_unique<S4dOperator>(uniform(rng, {2, 4}, -0.6, 0.6), ai2, randn(rng, {2, 4}),
                                               randn(rng, {2, 4}), randn(rng, {2, 4}), randn(rng, {2, 4}), kL, ctx),
                 8, true});
  }
  v.push_back({"conv", std::make_unique<ConvOperator>(randn(rng, {3, 5}), Tensor(), Tensor(), kL, ctx), 4, true});
  v.push_back(
      {"conv_gated",
       std::make_unique<ConvOperator>(randn(rng, {3, 5}), randn(rng, {kB, 3, kL}), randn(rng, {kB, 3, kL}), 0, ctx), 4,
       true});
  v.push_back({"conv_pre_gate_only",
               std::make_unique<ConvOperator>(randn(rng, {2, 4}), randn(rng, {kB, 2, kL}), Tensor(), 0, ctx), 3, true});
  v.push_back(
      {"conv_long", std::make_unique<ConvOperator>(randn(rng, {2, kL}), Tensor(), Tensor(), kL, ctx), -1, true});
  v.push_back({"softmax_softcap_window5",  // Gemma-2: capped logits 1.2·tanh(s / 1.2), sliding window
               std::make_unique<SoftmaxAttentionOperator>(randn(rng, {kB, kH, kL, kD}), randn(rng, {kB, kH, kL, kD}),
                                                          std::vector<std::uint8_t>{}, 0.9, 5, ctx, 1.2),
               4, false});
  // A window and a mask together (every other key inside a window of 7): both restrict which keys
  // a row sees.
  v.push_back({"softmax_window7_mask",
               std::make_unique<SoftmaxAttentionOperator>(randn(rng, {kB, kH, kL, kD}), randn(rng, {kB, kH, kL, kD}),
                                                          strided_mask(2), 0.0, 7, ctx),
               -1, false});
  return v;
}

}  // namespace ess::test
