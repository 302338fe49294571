// Structured engine: square-root Gramian recursion on a state-space realization (DESIGN §4).
//
// With h_t = A_t h_{t−1} + B_t x_t and y_t = C_tᵀ h_t, the block H_i = T[i:, :i] factors as
//   H_i = O_i R_i,   R_i = [A_{i−1}⋯A_1 B_0, …, A_{i−1} B_{i−2}, B_{i−1}]   (N × i, reaches h_{i−1})
//                    O_i = O'_i A_i,  O'_i = [C_iᵀ; O'_{i+1} A_{i+1}]          ((L−i) × N, observes h_i).
// We never form R_i or O'_i: we carry N×N triangular factors F_i, W_i with R_i R_iᵀ = F_iᵀ F_i and
// O'_iᵀ O'_i = W_iᵀ W_i, updated by QR as one row is appended per step:
//   F_{i+1} = qr_R([F_i A_iᵀ; B_iᵀ]),   W_i = qr_R([C_iᵀ; W_{i+1} A_{i+1}]).
// Then σ(H_i) = σ(W_i A_i F_iᵀ), an N×N product. Decays are applied one step at a time.
// (Square-root method as in balanced truncation, e.g. Antoulas, "Approximation of Large-Scale
// Dynamical Systems", 2005, §7.)
//
// Where the time goes (docs/engines.md): per requested block one N×N product (N³/3) and one N×N
// SVD (Householder bidiagonalization, 8N³/3, then dqds); per step two O(N²) factor updates. All of
// it runs in SIMD lanes (libess/lane_kernels.h), eight problems at a time:
//  - pack path: up to eight channels of one layer with diagonal transitions (Mamba, GLA, Mamba2,
//    RetNet, linear attention) and N ≤ 256 go through the whole recursion together, one per lane;
//  - block path: any realization, one channel at a time: the recursion runs on that channel and
//    eight of its blocks at a time share the product and the SVD.
// The backward factors W_i are regenerated segment by segment from checkpoints (about √I of
// them) instead of being stored for every block, so the working set stays in cache.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "libess/engine.h"
#include "libess/lane_kernels.h"

namespace ess {
namespace {

// Re-triangularize after appending row r below the upper-triangular U (Givens, O(N²)).
// Requires U upper-triangular on entry; r is zeroed.
void givens_append_row(Matrix& U, Eigen::Ref<Eigen::RowVectorXd> r) {
  const Index n = U.cols();
  for (Index k = 0; k < n; ++k) {
    const double b = r(k);
    if (b == 0.0) continue;
    const double a = U(k, k);
    double rho = std::sqrt(a * a + b * b);
    if (!(rho > 0) || !std::isfinite(rho)) rho = std::hypot(a, b);  // under/overflow of the squares
    const double c = a / rho, s = b / rho;
    U(k, k) = rho;
    r(k) = 0.0;
    for (Index j = k + 1; j < n; ++j) {
      const double u = U(k, j), v = r(j);
      U(k, j) = c * u + s * v;
      r(j) = -s * u + c * v;
    }
  }
}

// Rotation in the plane (i, i+1) of the rows of U (columns c0..n−1) that maps (x_i, x_{i+1}) to
// (ρ, 0); returns false (and does nothing) when x_{i+1} = 0.
bool rotate_rows(Matrix& U, Index i, Index c0, double& xi, double& xj) {
  if (xj == 0.0) return false;
  double rho = std::hypot(xi, xj);
  const double c = xi / rho, s = xj / rho;
  for (Index j = c0; j < U.cols(); ++j) {
    const double a = U(i, j), b = U(i + 1, j);
    U(i, j) = c * a + s * b;
    U(i + 1, j) = -s * a + c * b;
  }
  xi = rho;
  xj = 0.0;
  return true;
}

// U ← R factor of U·A with A = s (I − β k kᵀ) and U upper-triangular, in O(N²): U·A = sU + u kᵀ
// with u = −sβ U k, a rank-one update of a triangular matrix (Golub & Van Loan, Matrix
// Computations, §6.5.1): rotations that fold u into its first entry turn sU upper Hessenberg,
// the rank-one term then lands in row 0, and rotations restore the triangle.
void rank_one_update(Matrix& U, const Realization::RankOne& a, Vector& u) {
  const Index n = U.rows();
  const Eigen::Map<const Vector> k(a.k, n);
  u.noalias() = U.triangularView<Eigen::Upper>() * k;
  u *= -a.s * a.beta;
  U *= a.s;
  for (Index i = n - 2; i >= 0; --i) rotate_rows(U, i, i, u(i), u(i + 1));  // row i+1 gains (i+1, i)
  U.row(0) += u(0) * k.transpose();
  for (Index i = 0; i + 1 < n; ++i) {
    double x = U(i, i), y = U(i + 1, i);
    if (rotate_rows(U, i, i, x, y)) U(i + 1, i) = 0.0;
  }
}

// General case: R factor of the (N+1)×N matrix [U; r] by Householder QR; U receives R.
struct HouseholderAppend {
  Matrix stacked;
  Eigen::HouseholderQR<Matrix> qr;
  explicit HouseholderAppend(Index n) : stacked(n + 1, n), qr(n + 1, n) {}
  void operator()(Matrix& U, const Eigen::Ref<const Eigen::RowVectorXd>& r) {
    const Index n = U.cols();
    stacked.topRows(n) = U;
    stacked.row(n) = r;
    qr.compute(stacked);
    U = qr.matrixQR().topRows(n).triangularView<Eigen::Upper>();
  }
};

// Requested positions grouped into segments of about √I; W_i of a segment is regenerated from a
// checkpoint of the backward recursion taken at the first index of the next segment.
std::vector<size_t> segment_starts(size_t I) {
  const size_t len = std::max<size_t>(16, static_cast<size_t>(std::ceil(std::sqrt(static_cast<double>(I)))));
  std::vector<size_t> starts;
  for (size_t p = 0; p < I; p += len) starts.push_back(p);
  starts.push_back(I);
  return starts;
}

using lanes::kLanes;
using lanes::LaneBuffer;
using lanes::packed_index;
using lanes::packed_size;

// Lane-interleaved copies: lane l of a lane matrix ↔ a plain column-major matrix.
void to_lane(const double* src, size_t count, double* lanes_dst, int l) {
  for (size_t k = 0; k < count; ++k) lanes_dst[k * kLanes + l] = src[k];
}

void pack_upper(int n, const double* full, double* packed) {  // lane matrices, upper triangle
  for (int c = 0; c < n; ++c)
    std::memcpy(packed + packed_index(0, c) * kLanes, full + static_cast<size_t>(c) * n * kLanes,
                sizeof(double) * kLanes * (c + 1));
}

void unpack_upper(int n, const double* packed, double* full) {
  std::memset(full, 0, sizeof(double) * kLanes * n * n);
  for (int c = 0; c < n; ++c)
    std::memcpy(full + static_cast<size_t>(c) * n * kLanes, packed + packed_index(0, c) * kLanes,
                sizeof(double) * kLanes * (c + 1));
}

bool converged(unsigned char status) { return status == lanes::lane_ok || status == lanes::lane_fallback; }

// Block path: one channel, any realization; its blocks share the product and SVD eight at a time.
void channel_spectra(const Realization& r, const std::vector<int>& indices, SpectrumSink& sink) {
  const int L = r.length(), N = r.state_dim();
  const bool diagonal = r.diagonal_transitions();
  Realization::RankOne rank_one;
  const bool low_rank = !diagonal && r.rank_one_transition(0, &rank_one);
  const lanes::Kernels& kern = lanes::kernels();
  HouseholderAppend householder(N);
  Eigen::RowVectorXd row(N);
  Vector u(N);
  // U ← U·A_t (Aᵀ_t: the same for the symmetric rank-one and diagonal kinds); triangular kept
  // triangular where the transition allows it.
  auto transition = [&](int t, Matrix& U, bool transpose) {
    if (low_rank) {
      r.rank_one_transition(t, &rank_one);
      rank_one_update(U, rank_one, u);
    } else if (transpose) {
      r.right_multiply_At(t, U);
    } else {
      r.right_multiply_A(t, U);
    }
  };
  auto append = [&](Matrix& U, const Eigen::Ref<const Vector>& v) {
    row = v.transpose();
    if (diagonal || low_rank)
      givens_append_row(U, row);
    else
      householder(U, row);
  };
  auto backward_step = [&](int t, Matrix& Wc) {  // W_t from W_{t+1}
    if (t + 1 < L) transition(t + 1, Wc, false);
    append(Wc, r.C(t));
  };

  const size_t I = indices.size(), NN = static_cast<size_t>(N) * N;
  const std::vector<size_t> seg = segment_starts(I);
  const size_t S = seg.size() - 1;
  // Backward pass 1: checkpoints W_{indices[seg[s]]} for s ≥ 1.
  std::vector<Matrix> checkpoint(S);
  Matrix Wc = Matrix::Zero(N, N);
  if (S > 1) {
    size_t s = S - 1;
    for (int t = L - 1; t >= indices[seg[1]]; --t) {
      backward_step(t, Wc);
      if (t == indices[seg[s]]) checkpoint[s--] = Wc;
    }
  }

  // Blocks go through the product and the SVD in up to two batches of kLanes. Diagonal
  // transitions keep O'_i A_i triangular: the lanes then hold W_i packed and diag(A_i), and the
  // product is triangular × triangular (N³/3); otherwise M_i = O'_i A_i in full (N³/2).
  std::vector<double> diag_i(N);
  thread_local LaneBuffer buf_store, buf_M, buf_F, buf_P, buf_work, buf_sigma, buf_a;
  const size_t seg_max = seg.size() > 1 ? seg[1] - seg[0] : 0;
  double* store = buf_store.get(seg_max * NN);
  double* Ml = buf_M.get(2 * NN * kLanes);
  double* Fl = buf_F.get(2 * NN * kLanes);
  double* P = buf_P.get(2 * NN * kLanes);
  double* work = buf_work.get(2 * lanes::singular_values_work(N));
  double* sigma = buf_sigma.get(2 * static_cast<size_t>(N) * kLanes);
  double* al = buf_a.get(2 * static_cast<size_t>(N) * kLanes);
  int batch_pos[2 * kLanes];
  int filled = 0;
  unsigned char status[2 * kLanes];
  auto flush = [&]() {
    if (filled == 0) return;
    const int batches = (filled + kLanes - 1) / kLanes;
    for (int j = filled; j < batches * kLanes; ++j) {  // idle lanes: zero matrices
      double* m = Ml + (j / kLanes) * NN * kLanes;
      double* f = Fl + (j / kLanes) * NN * kLanes;
      for (size_t k = 0; k < NN; ++k) m[k * kLanes + j % kLanes] = f[k * kLanes + j % kLanes] = 0.0;
    }
    for (int b = 0; b < batches; ++b) {
      const size_t off = b * NN * kLanes;
      if (diagonal)
        kern.upper_product(N, Ml + off, al + b * N * kLanes, Fl + off, P + off);
      else
        kern.general_product(N, Ml + off, Fl + off, P + off);
    }
    kern.singular_values(N, P, sigma, work, status, batches);
    for (int j = 0; j < filled; ++j)
      sink.block(batch_pos[j], sigma + static_cast<size_t>(j) * N, N, 0.0, converged(status[j]));
    filled = 0;
  };

  Matrix F = Matrix::Zero(N, N), M(N, N);
  int tf = 0;  // forward steps done: F = F_tf
  for (size_t s = 0; s < S; ++s) {
    // Regenerate W_i for the segment's positions.
    int t_start = L - 1;
    if (s + 1 < S) {
      Wc = checkpoint[s + 1];
      t_start = indices[seg[s + 1]] - 1;
    } else {
      Wc.setZero();
    }
    size_t next = seg[s + 1];
    for (int t = t_start; t >= indices[seg[s]]; --t) {
      backward_step(t, Wc);
      if (next > seg[s] && t == indices[next - 1]) {
        --next;
        std::memcpy(store + (next - seg[s]) * NN, Wc.data(), sizeof(double) * NN);
      }
    }
    // Forward through the segment.
    for (size_t pos = seg[s]; pos < seg[s + 1]; ++pos) {
      const int i = indices[pos];
      for (; tf < i; ++tf) {
        if (tf > 0) transition(tf, F, true);  // F_t A_tᵀ
        append(F, r.B(tf));                   // stack B_tᵀ → F_{t+1}
      }
      const double* Wi = store + (pos - seg[s]) * NN;
      const size_t off = (filled / kLanes) * NN * kLanes;
      const int l = filled % kLanes;
      if (diagonal) {  // W_i's upper triangle, packed, and diag(A_i)
        double* m = Ml + off;
        for (int c = 0; c < N; ++c)
          for (int rr = 0; rr <= c; ++rr) m[packed_index(rr, c) * kLanes + l] = Wi[rr + static_cast<size_t>(c) * N];
        r.transition_diagonal(i, diag_i.data());
        to_lane(diag_i.data(), N, al + (filled / kLanes) * N * kLanes, l);
      } else {
        M = Eigen::Map<const Matrix>(Wi, N, N);
        r.right_multiply_A(i, M);  // O_i = O'_i A_i
        to_lane(M.data(), NN, Ml + off, l);
      }
      to_lane(F.data(), NN, Fl + off, l);
      batch_pos[filled++] = static_cast<int>(pos);
      if (filled == 2 * kLanes) flush();
    }
  }
  flush();
}

// Largest state the pack path takes. Its per-pack working set grows as kLanes·N²·√I (≈ 35 MB at
// N = 128, L = 1024; compute's worker_bytes charges kLanes·N²·(2√I + 16) doubles), but its
// recursion runs in lanes: at N = 128 it is 25 % faster than one channel at a time.
constexpr int kMaxPackState = 256;

// Pack path: channels 0..count−1 (count ≤ kLanes) with diagonal transitions, one per lane.
void pack_spectra(const Realization* const* rs, int count, const std::vector<int>& indices,
                  SpectrumSink* const* sinks) {
  const int L = rs[0]->length(), N = rs[0]->state_dim();
  const lanes::Kernels& kern = lanes::kernels();
  const size_t I = indices.size(), NN = static_cast<size_t>(N) * N, NP = packed_size(N);
  const size_t LM = NN * kLanes, LP = NP * kLanes;  // doubles per lane matrix (full / packed)
  const std::vector<size_t> seg = segment_starts(I);
  const size_t S = seg.size() - 1, seg_max = seg[1] - seg[0];

  thread_local LaneBuffer buf_W, buf_F, buf_row, buf_a, buf_ckpt, buf_store, buf_P, buf_work, buf_sigma, buf_one;
  double* Wc = buf_W.get(LM);
  double* F = buf_F.get(LM);
  double* row = buf_row.get(static_cast<size_t>(N) * kLanes);
  double* a = buf_a.get(static_cast<size_t>(N) * kLanes);
  double* ckpt = buf_ckpt.get(S * LP);
  double* store = buf_store.get(seg_max * LP);
  double* P = buf_P.get(2 * LM);  // two consecutive blocks share one SVD call
  double* work = buf_work.get(2 * lanes::singular_values_work(N));
  double* sigma = buf_sigma.get(2 * static_cast<size_t>(N) * kLanes);

  // A_t's diagonal, B_t or C_t of every lane, interleaved (idle lanes hold zeros: B = C = 0 keeps
  // their factors and blocks exactly zero).
  double* buf = buf_one.get(static_cast<size_t>(N));
  auto fetch = [&](int t, int what, double* out) {  // what: 0 = diag(A_t), 1 = B_t, 2 = C_t
    for (int l = 0; l < kLanes; ++l) {
      if (l >= count) {
        for (int k = 0; k < N; ++k) out[k * kLanes + l] = 0.0;
      } else if (what == 0) {
        rs[l]->transition_diagonal(t, buf);
        for (int k = 0; k < N; ++k) out[k * kLanes + l] = buf[k];
      } else {
        const auto v = what == 1 ? rs[l]->B(t) : rs[l]->C(t);
        for (int k = 0; k < N; ++k) out[k * kLanes + l] = v(k);
      }
    }
  };
  auto diag_at = [&](int t) -> const double* {
    fetch(t, 0, a);
    return a;
  };
  auto load_row = [&](int t, bool use_B) { fetch(t, use_B ? 1 : 2, row); };
  auto backward_step = [&](int t) {  // W_t from W_{t+1}
    if (t + 1 < L) kern.scale_columns(N, Wc, diag_at(t + 1));
    load_row(t, false);
    kern.givens_append(N, Wc, row);
  };

  // Backward pass 1: checkpoints.
  std::memset(Wc, 0, sizeof(double) * LM);
  if (S > 1) {
    size_t s = S - 1;
    for (int t = L - 1; t >= indices[seg[1]]; --t) {
      backward_step(t);
      if (t == indices[seg[s]]) pack_upper(N, Wc, ckpt + (s--) * LP);
    }
  }

  std::memset(F, 0, sizeof(double) * LM);
  int tf = 0;
  unsigned char status[2 * kLanes];
  size_t pending[2];
  int npending = 0;
  auto flush = [&]() {
    if (npending == 0) return;
    kern.singular_values(N, P, sigma, work, status, npending);
    for (int b = 0; b < npending; ++b)
      for (int l = 0; l < count; ++l)
        sinks[l]->block(static_cast<int>(pending[b]), sigma + static_cast<size_t>(b * kLanes + l) * N, N, 0.0,
                        converged(status[b * kLanes + l]));
    npending = 0;
  };
  for (size_t s = 0; s < S; ++s) {
    int t_start = L - 1;
    if (s + 1 < S) {
      unpack_upper(N, ckpt + (s + 1) * LP, Wc);
      t_start = indices[seg[s + 1]] - 1;
    } else {
      std::memset(Wc, 0, sizeof(double) * LM);
    }
    size_t next = seg[s + 1];
    for (int t = t_start; t >= indices[seg[s]]; --t) {
      backward_step(t);
      if (next > seg[s] && t == indices[next - 1]) {
        --next;
        pack_upper(N, Wc, store + (next - seg[s]) * LP);
      }
    }
    for (size_t pos = seg[s]; pos < seg[s + 1]; ++pos) {
      const int i = indices[pos];
      for (; tf < i; ++tf) {
        if (tf > 0) kern.scale_columns(N, F, diag_at(tf));
        load_row(tf, true);
        kern.givens_append(N, F, row);
      }
      kern.upper_product(N, store + (pos - seg[s]) * LP, diag_at(i), F, P + npending * LM);  // (W_i A_i) F_iᵀ
      pending[npending++] = pos;
      if (npending == 2) flush();
    }
  }
  flush();
}

// Which path a channel takes depends on nothing but its own realization, so its values do not
// depend on how many channels share the call (threads, MPI ranks) or which lane it lands in.
bool uses_pack_path(const Realization& r) { return r.diagonal_transitions() && r.state_dim() <= kMaxPackState; }

}  // namespace

void structured_block_spectra(const Realization& r, const std::vector<int>& indices, SpectrumSink& sink) {
  structured_block_spectra(std::vector<const Realization*>{&r}, indices, std::vector<SpectrumSink*>{&sink});
}

void structured_block_spectra(const std::vector<const Realization*>& channels, const std::vector<int>& indices,
                              const std::vector<SpectrumSink*>& sinks) {
  if (indices.empty()) return;
  // Pack-path channels in groups of up to kLanes with the same shape, in order; the rest one by one.
  std::vector<const Realization*> group;
  std::vector<SpectrumSink*> group_sinks;
  auto flush = [&]() {
    if (!group.empty()) pack_spectra(group.data(), static_cast<int>(group.size()), indices, group_sinks.data());
    group.clear();
    group_sinks.clear();
  };
  for (size_t c = 0; c < channels.size(); ++c) {
    const Realization& r = *channels[c];
    if (!uses_pack_path(r)) {
      channel_spectra(r, indices, *sinks[c]);
      continue;
    }
    if (!group.empty() && (group.size() == static_cast<size_t>(kLanes) || group[0]->length() != r.length() ||
                           group[0]->state_dim() != r.state_dim()))
      flush();
    group.push_back(&r);
    group_sinks.push_back(sinks[c]);
  }
  flush();
}

}  // namespace ess
