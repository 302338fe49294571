#include "analysis/bench_cases.h"

#include <cmath>
#include <random>

#include "libess/error.h"
#include "operators/conv.h"
#include "operators/delta_net.h"
#include "operators/gla.h"
#include "operators/mamba.h"
#include "operators/mamba2.h"
#include "operators/softmax_attention.h"

namespace ess {

namespace {

Tensor normal(std::mt19937& rng, std::vector<std::int64_t> shape, double scale = 1.0) {
  Tensor t(std::move(shape));
  std::normal_distribution<double> n(0.0, scale);
  for (auto& v : t.data) v = n(rng);
  return t;
}

double log_sigmoid(double x) { return x >= 0 ? -std::log1p(std::exp(-x)) : x - std::log1p(std::exp(x)); }

// Softmax heads of realistic shape for `bench --long` (d_k = 64, scale 1/8), one per channel.
std::unique_ptr<LayerOperator> make_long_head(const std::string& name, int L, int C, unsigned seed,
                                              std::string* description) {
  constexpr int d = 64;
  std::mt19937 rng(seed * 104729u + 7u);
  std::normal_distribution<double> normal(0.0, 1.0);
  Tensor q({1, C, L, d}), k({1, C, L, d});
  auto at = [&](Tensor& t, int c, int pos) { return t.data.data() + (static_cast<size_t>(c) * L + pos) * d; };
  for (int c = 0; c < C; ++c) {
    if (name == "long-local" || name == "long-window") {
      // Positional (RoPE-like) q = k = α·u_t, u_t = (cos ω_j t, sin ω_j t)_{j<32} / √32 with
      // ω_j ~ |N(0, 1/ℓ²)|, ℓ = 4: q_t·k_s·scale = 10·(1/32)Σ_j cos(ω_j (t − s)), 10 at t = s,
      // falling within a few tokens, ±~2 beyond; plus content noise of std 0.3 per score.
      std::vector<double> omega(32);
      for (auto& w : omega) w = std::abs(normal(rng)) / 4.0;
      const double alpha = std::sqrt(10.0 * 8.0), noise = std::sqrt(0.3 * 8.0 / std::sqrt(32.0));
      for (int t = 0; t < L; ++t)
        for (int j = 0; j < 32; ++j) {
          at(q, c, t)[2 * j] = alpha * std::cos(omega[j] * t) / std::sqrt(32.0) + noise * normal(rng) / 2;
          at(q, c, t)[2 * j + 1] = alpha * std::sin(omega[j] * t) / std::sqrt(32.0) + noise * normal(rng) / 2;
          at(k, c, t)[2 * j] = alpha * std::cos(omega[j] * t) / std::sqrt(32.0) + noise * normal(rng) / 2;
          at(k, c, t)[2 * j + 1] = alpha * std::sin(omega[j] * t) / std::sqrt(32.0) + noise * normal(rng) / 2;
        }
      *description = name == "long-local"
                         ? "softmax d=64, local: RoPE-like positional q = k, score 10 at distance 0, width ~4 tokens"
                         : "as long-local, in a sliding window of 512 keys (Gemma/Mistral-style local layer)";
    } else if (name == "long-random") {
      // High-rank control: content q, k ~ N(0, σ²) in all 64 dims with score std 2 — sharp,
      // random attention whose blocks have nearly full numerical rank (the engine must fall back).
      const double sd = std::sqrt(2.0 * 8.0 / 8.0);
      for (int t = 0; t < L; ++t)
        for (int j = 0; j < d; ++j) {
          at(q, c, t)[j] = sd * normal(rng);
          at(k, c, t)[j] = sd * normal(rng);
        }
      *description = "softmax d=64, random: content scores N(0, 2²), high rank (control: lanczos falls back to dense)";
    } else if (name == "long-sink" || name == "long-diffuse") {
      // Content q, k ~ N(0, σ²) in 63 dims with score std 0.5 (sink) or 0.1 (diffuse);
      // sink: dimension 0 carries q_t[0] = k_0[0] = √(12·8), a score of 12 on token 0 from every query.
      const double score_std = name == "long-sink" ? 0.5 : 0.1;
      const double sd = std::sqrt(score_std * 8.0 / std::sqrt(63.0));
      for (int t = 0; t < L; ++t)
        for (int j = 1; j < d; ++j) {
          at(q, c, t)[j] = sd * normal(rng);
          at(k, c, t)[j] = sd * normal(rng);
        }
      if (name == "long-sink") {
        for (int t = 0; t < L; ++t) at(q, c, t)[0] = std::sqrt(96.0);
        at(k, c, 0)[0] = std::sqrt(96.0);
        *description = "softmax d=64, sink-dominated: score 12 on token 0, content scores N(0, 0.5²)";
      } else {
        *description = "softmax d=64, diffuse: content scores N(0, 0.1²), near-uniform over the past";
      }
    } else {
      // Induction-like: tokens from a 64-word vocabulary with unit embeddings e_v; q_t = γ e_tok(t),
      // k_s = γ e_tok(s−1) (the previous token), γ²/8 = 12: each query attends to the tokens that
      // followed earlier occurrences of its own token. Rows of equal tokens are proportional, so
      // rank(H_i) ≤ 64 + 1.
      constexpr int V = 64;
      std::vector<double> emb(static_cast<size_t>(V + 1) * d);
      for (int v = 0; v <= V; ++v) {
        double n2 = 0;
        for (int j = 0; j < d; ++j) n2 += std::pow(emb[v * d + j] = normal(rng), 2);
        for (int j = 0; j < d; ++j) emb[v * d + j] /= std::sqrt(n2);
      }
      std::uniform_int_distribution<int> word(0, V - 1);
      std::vector<int> tok(L);
      for (auto& x : tok) x = word(rng);
      const double gamma = std::sqrt(96.0);
      for (int t = 0; t < L; ++t)
        for (int j = 0; j < d; ++j) {
          at(q, c, t)[j] = gamma * emb[tok[t] * d + j];
          at(k, c, t)[j] = gamma * emb[(t == 0 ? V : tok[t - 1]) * d + j];  // V: beginning of sequence
        }
      *description = "softmax d=64, induction-like: attends to successors of earlier copies of its token (64 words)";
    }
  }
  return std::make_unique<SoftmaxAttentionOperator>(std::move(q), std::move(k), std::vector<std::uint8_t>{}, 0.0,
                                                    name == "long-window" ? 512 : 0, "bench:" + name);
}

}  // namespace

std::vector<std::string> long_bench_case_names() {
  return {"long-local", "long-window", "long-sink", "long-diffuse", "long-induction", "long-random"};
}

std::vector<std::string> bench_case_names() {
  return {"mamba", "mamba2", "gla", "deltanet", "attn-local", "attn-lowrank", "attn-random", "longconv"};
}

BenchCase make_bench_case(const std::string& name, int L, int C, int N, unsigned seed) {
  std::mt19937 rng(seed * 7919u + 17u);
  const std::string ctx = "bench:" + name;
  BenchCase bc;
  bc.name = name;
  if (name == "mamba") {
    // S4D-real init A[c, n] = −(n+1); dt log-uniform in [1e-3, 1e-1] as in Mamba's dt init.
    Tensor dt({1, C, L}), A({C, N});
    std::uniform_real_distribution<double> u(std::log(1e-3), std::log(1e-1));
    for (auto& v : dt.data) v = std::exp(u(rng));
    for (int c = 0; c < C; ++c)
      for (int n = 0; n < N; ++n) A.data[c * N + n] = -(n + 1.0);
    bc.description = "Mamba S6: A = −(n+1), dt ~ logU[1e-3, 1e-1], B, C ~ N(0, 1)";
    bc.op = std::make_unique<MambaOperator>(std::move(dt), std::move(A), normal(rng, {1, L, N}), normal(rng, {1, L, N}),
                                            ctx);
  } else if (name == "mamba2") {
    // Mamba2 heads: scalar decay per head, A = −exp(U[log 1, log 16]) and dt log-uniform in
    // [1e-3, 1e-1] as in Mamba2's init; B, C ~ N(0, 1) shared by every head (one group).
    Tensor dt({1, C, L}), A({C});
    std::uniform_real_distribution<double> u(std::log(1e-3), std::log(1e-1)), ua(0.0, std::log(16.0));
    for (auto& v : dt.data) v = std::exp(u(rng));
    for (auto& v : A.data) v = -std::exp(ua(rng));
    bc.description = "Mamba2 heads: scalar decay A = −exp(U[0, log 16]), dt ~ logU[1e-3, 1e-1], B, C ~ N(0, 1)";
    bc.op = std::make_unique<Mamba2Operator>(std::move(dt), std::move(A), normal(rng, {1, 1, L, N}),
                                             normal(rng, {1, 1, L, N}), ctx);
  } else if (name == "gla") {
    // fla-style gate: log_decay = logsigmoid(·) / 16.
    Tensor g({1, C, L, N});
    std::normal_distribution<double> n(0.0, 1.0);
    for (auto& v : g.data) v = log_sigmoid(n(rng)) / 16.0;
    bc.description = "GLA: q, k ~ N(0, 1/d), log_decay = logsigmoid(N(0,1))/16";
    bc.op = std::make_unique<GlaOperator>(normal(rng, {1, C, L, N}, 1 / std::sqrt(N)),
                                          normal(rng, {1, C, L, N}, 1 / std::sqrt(N)), std::move(g), ctx);
  } else if (name == "deltanet") {
    Tensor k = normal(rng, {1, C, L, N}), beta({1, C, L}), gate({1, C, L});
    for (std::int64_t r = 0; r < static_cast<std::int64_t>(C) * L; ++r) {
      double s = 0;
      for (int n = 0; n < N; ++n) s += k.data[r * N + n] * k.data[r * N + n];
      for (int n = 0; n < N; ++n) k.data[r * N + n] /= std::sqrt(s);  // L2-normalized keys
    }
    std::normal_distribution<double> n(0.0, 1.0);
    for (auto& v : beta.data) v = 1.0 / (1.0 + std::exp(-n(rng)));
    for (auto& v : gate.data) v = log_sigmoid(4.0 + n(rng));
    bc.description = "Gated DeltaNet: unit keys, beta = sigmoid(N(0,1)), gate = logsigmoid(4 + N(0,1))";
    bc.op = std::make_unique<DeltaNetOperator>(normal(rng, {1, C, L, N}), std::move(k), std::move(beta),
                                               std::move(gate), ctx);
  } else if (name == "attn-local") {
    const int w = 32;
    bc.description = "softmax attention, sliding window 32 (rank ≤ 31), random q, k, d = 64";
    bc.op = std::make_unique<SoftmaxAttentionOperator>(normal(rng, {1, C, L, 64}), normal(rng, {1, C, L, 64}),
                                                       std::vector<std::uint8_t>{}, 0.0, w, ctx);
  } else if (name == "attn-lowrank") {
    // Keys drawn from 8 types (a small vocabulary): columns of H_i take ≤ 8 patterns, rank ≤ 8.
    Tensor k({1, C, L, 64});
    Tensor types = normal(rng, {C, 8, 64});
    std::uniform_int_distribution<int> pick(0, 7);
    for (int c = 0; c < C; ++c)
      for (int t = 0; t < L; ++t) {
        const int ty = pick(rng);
        for (int n = 0; n < 64; ++n)
          k.data[(static_cast<size_t>(c) * L + t) * 64 + n] = types.data[(c * 8 + ty) * 64 + n];
      }
    bc.description = "causal softmax attention, keys from 8 types (rank ≤ 8), d = 64";
    bc.op = std::make_unique<SoftmaxAttentionOperator>(normal(rng, {1, C, L, 64}), std::move(k),
                                                       std::vector<std::uint8_t>{}, 0.0, 0, ctx);
  } else if (name == "attn-random") {
    bc.description = "causal softmax attention, random q, k ~ N(0, 1), d = 64 (high rank)";
    bc.op = std::make_unique<SoftmaxAttentionOperator>(normal(rng, {1, C, L, 64}), normal(rng, {1, C, L, 64}),
                                                       std::vector<std::uint8_t>{}, 0.0, 0, ctx);
  } else if (name == "longconv") {
    // Hyena-like long filter, K = L: 8 damped oscillations (rank ≤ 16).
    Tensor h({C, L});
    std::uniform_real_distribution<double> u(0.0, 1.0);
    for (int c = 0; c < C; ++c)
      for (int m = 0; m < 8; ++m) {
        const double amp = u(rng) * 2 - 1, decay = 0.001 + 0.05 * u(rng), freq = 0.5 * u(rng), phase = 6.283 * u(rng);
        for (int t = 0; t < L; ++t)
          h.data[static_cast<size_t>(c) * L + t] += amp * std::exp(-decay * t) * std::cos(freq * t + phase);
      }
    bc.description = "long convolution K = L, sum of 8 damped oscillations (rank ≤ 16)";
    bc.op = std::make_unique<ConvOperator>(std::move(h), Tensor(), Tensor(), L, ctx);
  } else if (name == "long-local" || name == "long-window" || name == "long-sink" || name == "long-diffuse" ||
             name == "long-induction" || name == "long-random") {
    bc.op = make_long_head(name, L, C, seed, &bc.description);
  } else {
    std::string known;
    for (auto& n : bench_case_names()) known += (known.empty() ? "" : ", ") + n;
    for (auto& n : long_bench_case_names()) known += ", " + n;
    throw UsageError("unknown bench case '" + name + "' (known: " + known + ")");
  }
  return bc;
}

}  // namespace ess
