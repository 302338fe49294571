#include "operators/softmax_attention.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <map>
#include <memory>
#include <new>
#include <random>

#include "libess/error.h"
#include "libess/memory.h"
#include "operators/common.h"

namespace ess {

SoftmaxAttentionOperator::SoftmaxAttentionOperator(Tensor q, Tensor k, std::vector<std::uint8_t> mask, double scale,
                                                   int window, const std::string& context, double softcap)
    : q_(std::move(q)), k_(std::move(k)), mask_(std::move(mask)), scale_(scale), window_(window), softcap_(softcap) {
  ops::expect_shape(context, "q", q_, {-1, -1, -1, -1});
  ops::expect_shape(context, "k", k_, q_.shape);
  ops::expect_nonempty(context, "q", q_);
  ops::check_finite(context, "q", q_, ops::kBHLD);
  ops::check_finite(context, "k", k_, ops::kBHLD);
  const int L = seq_len();
  if (scale_ <= 0) scale_ = 1.0 / std::sqrt(static_cast<double>(q_.dim(3)));
  if (!std::isfinite(scale_)) throw InputError(context + ": attribute 'scale' is not finite");
  if (window_ < 0) throw InputError(context + ": attribute 'window' must be ≥ 0 (0 = no window)");
  if (!(softcap_ >= 0) || !std::isfinite(softcap_))
    throw InputError(context + ": attribute 'softcap' must be a finite number ≥ 0 (0 = no soft-capping)");
  if (!mask_.empty()) {
    if (mask_.size() != static_cast<size_t>(L) * L)
      throw InputError(context + ": dataset 'mask' must be [L, L] = [" + std::to_string(L) + ", " + std::to_string(L) +
                       "]");
    for (int i = 0; i < L; ++i)
      for (int j = i + 1; j < L; ++j)
        if (mask_[static_cast<size_t>(i) * L + j])
          throw InputError(context + ": mask is not causal: mask[" + std::to_string(i) + ", " + std::to_string(j) +
                           "] = 1 lets position " + std::to_string(i) + " attend to the future");
  }
  // Every row needs at least one allowed position; last[j] = last row attending to j.
  std::vector<int> last(L, -1);
  for (int i = 0; i < L; ++i) {
    bool any = false;
    for (int j = 0; j <= i; ++j)
      if (allowed(i, j)) {
        any = true;
        last[j] = i;
      }
    if (!any)
      throw InputError(context + ": row " + std::to_string(i) +
                       " of the attention mask allows no position (softmax undefined)");
  }
  tss_.assign(L, 0);
  for (int i = 1; i < L; ++i)
    for (int j = 0; j < i; ++j) tss_[i] += last[j] >= i;
}

std::unique_ptr<LayerOperator> SoftmaxAttentionOperator::read(const h5::Object& group, const OperatorReadOptions&) {
  const std::string ctx = ops::context_of(group);
  Tensor q = ops::read_tensor(group, "q"), k = ops::read_tensor(group, "k");
  std::vector<std::uint8_t> mask;
  if (group.has("mask")) {
    if (group.dtype("mask") != h5::DType::uint8)
      throw InputError(ctx + ": dataset 'mask' must be uint8 (1 = may attend); from numpy write mask.astype('u1')");
    std::vector<std::int64_t> shape;
    mask = group.read_uint8("mask", &shape);
    // A malformed q is reported by the constructor; here only the mask's own shape.
    const std::int64_t L = q.rank() == 4 ? q.dim(2) : -1;
    if (L >= 0 && shape != std::vector<std::int64_t>{L, L})
      throw InputError(ctx + ": dataset 'mask' has shape " + shape_string(shape) + ", expected [" + std::to_string(L) +
                       ", " + std::to_string(L) + "]");
  }
  double scale = 0.0;  // 0 = the default 1/sqrt(d)
  if (group.has_attr("scale")) {
    scale = group.attr_double("scale");
    if (!(scale > 0) || !std::isfinite(scale))
      throw InputError(ctx + ": attribute 'scale' must be a finite number > 0, found " + std::to_string(scale));
  }
  const int window = ops::read_int_attr(group, "window", 0, 0, std::numeric_limits<int>::max());
  double softcap = 0.0;  // 0 = none
  if (group.has_attr("softcap")) {
    softcap = group.attr_double("softcap");
    if (!(softcap >= 0) || !std::isfinite(softcap))
      throw InputError(ctx + ": attribute 'softcap' must be a finite number ≥ 0 (0 = none), found " +
                       std::to_string(softcap));
  }
  return std::make_unique<SoftmaxAttentionOperator>(std::move(q), std::move(k), std::move(mask), scale, window, ctx,
                                                    softcap);
}

int SoftmaxAttentionOperator::row_tile(int b, int c, int i0, int n, Matrix& P) const {
  auto Q = q_.matrix({b, c});
  auto K = k_.matrix({b, c});
  const int i1 = i0 + n;
  const int j0 = window_ > 0 ? std::max(0, i0 - window_ + 1) : 0;  // first key any row of the tile sees
  P.resize(n, i1 - j0);
  blas_gemm_rows_nt(scale_, Q.middleRows(i0, n), K.middleRows(j0, i1 - j0), P);  // P(r, j − j0) = q_i·k_j·scale
  cap_logits(P);
  for (int r = 0; r < n; ++r) {
    const int i = i0 + r;
    double m = -std::numeric_limits<double>::infinity();
    for (int j = j0; j <= i; ++j)
      if (allowed(i, j)) m = std::max(m, P(r, j - j0));
    double z = 0;
    for (int j = j0; j < i1; ++j) {
      double& p = P(r, j - j0);
      if (j <= i && allowed(i, j))
        z += (p = std::exp(p - m));
      else
        p = 0;
    }
    P.row(r) /= z;
  }
  return j0;
}

void SoftmaxAttentionOperator::materialize(int b, int c, Eigen::Ref<Matrix> T) const {
  // Tiles of kRowTile query rows (O(kRowTile·L) scores, in cache), each written into T a column at a
  // time (T is column-major: a row-by-row walk would stride L doubles per entry).
  const int L = seq_len();
  T.setZero();
  Matrix P;
  for (int i0 = 0; i0 < L; i0 += kRowTile) {
    const int n = std::min(kRowTile, L - i0), j0 = row_tile(b, c, i0, n, P);
    for (int j = j0; j < i0 + n; ++j) T.col(j).segment(i0, n) = P.col(j - j0);
  }
}

void SoftmaxAttentionOperator::multiply(int b, int c, const Eigen::Ref<const Matrix>& X, Eigen::Ref<Matrix> Y) const {
  const int L = seq_len();
  Matrix P;
  for (int i0 = 0; i0 < L; i0 += kRowTile) {
    const int n = std::min(kRowTile, L - i0), j0 = row_tile(b, c, i0, n, P);
    blas_gemm(false, false, 1.0, P, X.middleRows(j0, i0 + n - j0), 0.0, Y.middleRows(i0, n));
  }
}

Vector SoftmaxAttentionOperator::apply(int b, int c, const Vector& x) const {
  // Row by row from the definition: y_i = Σ_j softmax_j(s_ij) x_j over allowed j.
  const int L = seq_len(), d = static_cast<int>(q_.dim(3));
  auto Q = q_.matrix({b, c});
  auto K = k_.matrix({b, c});
  Vector y(L), s(L);
  for (int i = 0; i < L; ++i) {
    double m = -std::numeric_limits<double>::infinity();
    for (int j = 0; j <= i; ++j) {
      if (!allowed(i, j)) continue;
      double dot = 0;
      for (int n = 0; n < d; ++n) dot += Q(i, n) * K(j, n);
      s(j) = logit(dot * scale_);
      m = std::max(m, s(j));
    }
    double num = 0, den = 0;
    for (int j = 0; j <= i; ++j) {
      if (!allowed(i, j)) continue;
      const double w = std::exp(s(j) - m);
      num += w * x(j);
      den += w;
    }
    y(i) = num / den;
  }
  return y;
}

namespace {

// Storage for the table of P (below), kept by each thread from head to head: a fresh 100 MB table
// costs page faults on first touch (≈ 15 % of an L = 4096 head's lanczos time on the VM), and a
// layer's heads on one thread need tables of the same size. One table at a time per thread: taking
// the storage bumps its generation, so a table whose generation is stale is never read again (the
// engine then writes blocks out, as without a table). Grow-only; freed when the thread and every
// products object that took it are gone.
struct TableStorage {
  struct Free {
    void operator()(double* p) const { std::free(p); }
  };
  std::unique_ptr<double, Free> data;
  size_t capacity = 0;           // doubles
  std::uint64_t generation = 0;  // bumped by every take()

  // At least `count` doubles (uninitialized), for a new owner.
  double* take(size_t count) {
    ++generation;
    if (count > capacity) {
      data.reset();
      capacity = 0;
      data.reset(static_cast<double*>(std::malloc(std::max<size_t>(count, 1) * sizeof(double))));
      if (!data) throw std::bad_alloc();
      capacity = count;
      advise_huge_pages(data.get(), count * sizeof(double));
    }
    return data.get();
  }
};

std::shared_ptr<TableStorage> thread_table_storage() {
  thread_local std::shared_ptr<TableStorage> storage = std::make_shared<TableStorage>();
  return storage;
}

}  // namespace

// H_i = T[i:, :i] from q and k: P(t, s) = exp(ℓ_ts − m_t) / z_t over allowed s, with the logit
// ℓ_ts = q_t·k_s·scale (c·tanh(·/c) with a soft cap c), the row maximum m_t and the normalizer
// z_t = Σ_{allowed s ≤ t} exp(ℓ_ts − m_t) of every row computed once (they need all keys s ≤ t,
// not only those of the block).
class SoftmaxBlockProducts final : public BlockProducts {
 public:
  SoftmaxBlockProducts(const SoftmaxAttentionOperator& op, int b, int c)
      : op_(op), L_(op.seq_len()), Q_(op.q_.matrix({b, c})), K_(op.k_.matrix({b, c})) {}
  int seq_len() const override { return L_; }
  void prepare(const std::vector<int>& indices) const override { sweep(indices); }

  void apply(int i, const Eigen::Ref<const Matrix>& X, Eigen::Ref<Matrix> Y) const override {
    Y.setZero();
    for (int t0 = i; t0 < last_row(i); t0 += kTile) {
      const int n = std::min(kTile, last_row(i) - t0), j0 = tile(i, t0, n);
      if (j0 < i) blas_gemm(false, false, 1.0, P_, X.middleRows(j0, i - j0), 0.0, Y.middleRows(t0 - i, n));
    }
  }

  void apply_transpose(int i, const Eigen::Ref<const Matrix>& X, Eigen::Ref<Matrix> Y) const override {
    Y.setZero();
    for (int t0 = i; t0 < last_row(i); t0 += kTile) {
      const int n = std::min(kTile, last_row(i) - t0), j0 = tile(i, t0, n);
      if (j0 < i) blas_gemm(true, false, 1.0, P_, X.middleRows(t0 - i, n), 1.0, Y.middleRows(j0, i - j0));
    }
  }

  // H_iᵀH_i X = Σ over row tiles P_tileᵀ (P_tile X): one pass over the scores.
  void gram(int i, const Eigen::Ref<const Matrix>& X, Eigen::Ref<Matrix> Y) const override {
    Y.setZero();
    for (int t0 = i; t0 < last_row(i); t0 += kTile) {
      const int n = std::min(kTile, last_row(i) - t0), j0 = tile(i, t0, n);
      if (j0 >= i) continue;
      Z_.resize(n, X.cols());
      blas_gemm(false, false, 1.0, P_, X.middleRows(j0, i - j0), 0.0, Z_);
      blas_gemm(true, false, 1.0, P_, Z_, 1.0, Y.middleRows(j0, i - j0));
    }
  }

  double frobenius2(int i) const override {
    auto it = frobenius2_.find(i);
    if (it == frobenius2_.end()) {
      sweep({i});
      it = frobenius2_.find(i);
    }
    return it->second;
  }

  // With a window, rows t < i + w − 1 and keys s ≥ i − w + 1 only: the (w − 1) × (w − 1) corner.
  BlockSupport support(int i) const override {
    const int col0 = first_key(i);
    return {0, last_row(i) - i, col0, i - col0};
  }

  void materialize_block(int i, Eigen::Ref<Matrix> H) const override {
    const int col0 = first_key(i);
    H.setZero();
    for (int t0 = i; t0 < last_row(i); t0 += kTile) {
      const int n = std::min(kTile, last_row(i) - t0), j0 = tile(i, t0, n);
      if (j0 < i) H.block(t0 - i, j0 - col0, n, i - j0) = P_;
    }
  }

  // Without a window: the rows [i_min, L) × keys [0, i_max) of P, which hold every requested block,
  // computed once when that is less work than the blocks one by one (entries with key ≥ query are
  // in no block and left unwritten).
  // The table lives in this thread's storage (TableStorage): valid until the thread's next table.
  bool cache(const std::vector<int>& indices, double max_bytes) const override {
    new (&table_) MatMap(nullptr, 0, 0);
    storage_.reset();
    if (window() > 0 || indices.empty()) return false;
    const auto [lo, hi] = std::minmax_element(indices.begin(), indices.end());
    double blocks = 0;
    for (int i : indices) blocks += static_cast<double>(L_ - i) * i;
    const double entries = static_cast<double>(L_ - *lo) * *hi;
    if (*lo < 1 || 8.0 * entries > max_bytes || entries > blocks) return false;
    table_row0_ = *lo;
    storage_ = thread_table_storage();
    new (&table_) MatMap(storage_->take(static_cast<size_t>(entries)), L_ - *lo, *hi);
    generation_ = storage_->generation;
    // Before the first sweep: that sweep writes the table as it goes (and every block's ‖H_i‖_F²).
    if (!stats_) {
      sweep(indices, true);
      return true;
    }
    for (int t0 = *lo; t0 < L_; t0 += kTile) {
      const int n = std::min(kTile, L_ - t0), i = std::min(*hi, t0 + n), j0 = tile(i, t0, n);
      table_.block(t0 - *lo, 0, n, *hi).setZero();
      table_.block(t0 - *lo, j0, n, i - j0) = P_;
      // Keys after the query (t < i_max): not part of any block, zero rather than whatever exp gave.
      for (int r = 0; r < n && t0 + r + 1 < i; ++r)
        table_.row(t0 - *lo + r).segment(t0 + r + 1, i - t0 - r - 1).setZero();
    }
    return true;
  }

  BlockView cached_block(int i) const override {
    if (table_.size() == 0 || i < table_row0_ || i > table_.cols()) return {};
    if (!storage_ || storage_->generation != generation_) return {};  // the storage has a newer table
    return {table_.data() + (i - table_row0_), table_.rows()};
  }

 private:
  static constexpr int kTile = SoftmaxAttentionOperator::kProductTile;
  int window() const { return op_.window_; }
  // First key row t may see (window), and one past the last row that sees a key s < i.
  int first_key(int t) const { return window() > 0 ? std::max(0, t - window() + 1) : 0; }
  int last_row(int i) const { return window() > 0 ? std::min(L_, i + window() - 1) : L_; }

  // P_ = H_i[t0 − i : t0 − i + n, j0 : i] with j0 = first_key(t0) (the keys before j0 are outside
  // every row's window); returns j0 (≥ i: the tile is zero).
  int tile(int i, int t0, int n) const {
    sweep({});
    const int j0 = first_key(t0);
    if (j0 >= i) return j0;
    const int w = i - j0;
    P_.resize(n, w);
    blas_gemm(false, true, op_.scale_, Q_.middleRows(t0, n), K_.middleRows(j0, w), 0.0, P_);
    op_.cap_logits(P_);
    P_.array().colwise() -= row_max_.segment(t0, n).array();
    P_.array() = P_.array().exp();
    P_.array().colwise() *= inv_sum_.segment(t0, n).array();
    // Keys s < i ≤ t are causal; zero those outside the window or the mask (after exp: any inf
    // there is overwritten, never summed).
    if (window() > 0)
      for (int r = 0; r < n; ++r)
        for (int s = j0; s < std::min(i, first_key(t0 + r)); ++s) P_(r, s - j0) = 0;
    if (!op_.mask_.empty())
      for (int s = j0; s < i; ++s)
        for (int r = 0; r < n; ++r)
          if (!op_.mask_[static_cast<size_t>(t0 + r) * L_ + s]) P_(r, s - j0) = 0;
    return j0;
  }

  // One sweep over every row's allowed keys: m_t and z_t (first call), and ‖H_i‖_F² of the given
  // blocks: Σ_{t ≥ i} Σ_{s < i} P(t, s)², from prefix sums of P(t, ·)² along each row.
  // With fill_table (no window), rows t ≥ table_row0_ of P are also written into table_.
  void sweep(std::vector<int> blocks, bool fill_table = false) const {
    std::sort(blocks.begin(), blocks.end());
    blocks.erase(std::unique(blocks.begin(), blocks.end()), blocks.end());
    blocks.erase(std::remove_if(blocks.begin(), blocks.end(), [&](int i) { return frobenius2_.count(i) > 0; }),
                 blocks.end());
    if (stats_ && blocks.empty()) return;
    const bool stats = !stats_;
    if (stats) {
      row_max_.resize(L_);
      inv_sum_.resize(L_);
    }
    std::vector<double> f2(blocks.size(), 0.0);
    Matrix St;
    Vector p;
    for (int t0 = 0; t0 < L_; t0 += kTile) {
      const int n = std::min(kTile, L_ - t0), j0 = first_key(t0), w = t0 + n - j0;
      St.resize(w, n);  // St(s − j0, r) = q_{t0+r}·k_s·scale: row t's scores contiguous
      blas_gemm(false, true, op_.scale_, K_.middleRows(j0, w), Q_.middleRows(t0, n), 0.0, St);
      op_.cap_logits(St);
      for (int r = 0; r < n; ++r) {
        const int t = t0 + r, lo = first_key(t) - j0, len = t - j0 + 1 - lo;
        auto row = St.col(r).segment(lo, len);
        p.resize(len);
        if (op_.mask_.empty()) {
          if (stats) row_max_(t) = row.maxCoeff();
          p.array() = (row.array() - row_max_(t)).exp();  // one exp per score
          if (stats) inv_sum_(t) = 1.0 / p.sum();
          p *= inv_sum_(t);
        } else {
          const std::uint8_t* allow = op_.mask_.data() + static_cast<size_t>(t) * L_ + j0 + lo;
          if (stats) {
            double m = -std::numeric_limits<double>::infinity(), z = 0;
            for (int k = 0; k < len; ++k)
              if (allow[k]) m = std::max(m, row(k));
            for (int k = 0; k < len; ++k)
              if (allow[k]) z += std::exp(row(k) - m);
            row_max_(t) = m;
            inv_sum_(t) = 1.0 / z;
          }
          for (int k = 0; k < len; ++k) p(k) = allow[k] ? std::exp(row(k) - row_max_(t)) * inv_sum_(t) : 0.0;
        }
        if (fill_table) St.col(r).segment(lo, len) = p;  // no window here: lo = 0
        if (blocks.empty()) continue;
        // Blocks i ≤ t take Σ_{s < i} P(t, s)²: prefix sums at the cut points, in ascending i.
        double acc = 0;
        int k = 0;
        for (size_t b = 0; b < blocks.size() && blocks[b] <= t; ++b) {
          const int upto = std::min(len, blocks[b] - (j0 + lo));  // keys s < blocks[b]
          for (; k < upto; ++k) acc += p(k) * p(k);
          f2[b] += acc;
        }
      }
      if (fill_table && t0 + n > table_row0_) {
        // Rows [max(t0, row0), t0 + n) of the tile, keys s < t (a block's entries have s < i ≤ t;
        // the rest of the table is never read, so never written: its pages are never touched).
        const int r0 = std::max(0, table_row0_ - t0), cols = static_cast<int>(table_.cols());
        const int full = std::min(t0, cols);  // keys before the tile's first query: every row
        if (full > 0) table_.block(t0 + r0 - table_row0_, 0, n - r0, full) = St.block(0, r0, full, n - r0).transpose();
        for (int c = full; c < std::min(t0 + n, cols); ++c)
          for (int r = std::max(r0, c - t0 + 1); r < n; ++r) table_(t0 + r - table_row0_, c) = St(c, r);
      }
    }
    stats_ = true;
    for (size_t b = 0; b < blocks.size(); ++b) frobenius2_[blocks[b]] = f2[b];
  }

  const SoftmaxAttentionOperator& op_;
  int L_;
  Matrix Q_, K_;
  mutable bool stats_ = false;
  mutable Vector row_max_, inv_sum_;
  mutable std::map<int, double> frobenius2_;
  using MatMap = Eigen::Map<Matrix>;
  mutable Matrix P_, Z_;
  mutable MatMap table_{nullptr, 0, 0};
  mutable std::shared_ptr<TableStorage> storage_;
  mutable std::uint64_t generation_ = 0;
  mutable int table_row0_ = 0;
};

std::unique_ptr<BlockProducts> SoftmaxAttentionOperator::block_products(int b, int c) const {
  return std::make_unique<SoftmaxBlockProducts>(*this, b, c);
}

std::unique_ptr<LayerOperator> SoftmaxAttentionOperator::example(unsigned seed) {
  std::mt19937 rng(seed);
  return std::make_unique<SoftmaxAttentionOperator>(ops::random_normal(rng, {2, 2, 16, 3}),
                                                    ops::random_normal(rng, {2, 2, 16, 3}), std::vector<std::uint8_t>{},
                                                    0.0, 0, "example");
}

ESS_REGISTER_FAMILY(softmax_attention,
                    "softmax(q_i·k_j·scale) per head, causal, optional window, mask or logit soft-cap (no realization)",
                    SoftmaxAttentionOperator::read, SoftmaxAttentionOperator::example);

}  // namespace ess
