// One layer's sequence-mixing operator for a batch of inputs: per batch element b and
// channel/head c an L×L causal matrix T (DESIGN §2–3). Every family implements this interface;
// engines are generic over it.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "libess/block_products.h"
#include "libess/realization.h"
#include "libess/types.h"

namespace ess {

enum class ChannelKind { head, channel };
inline const char* to_string(ChannelKind k) { return k == ChannelKind::head ? "head" : "channel"; }

class LayerOperator {
 public:
  virtual ~LayerOperator() = default;
  virtual std::string family() const = 0;
  virtual ChannelKind channel_kind() const = 0;
  virtual int batch() const = 0;
  virtual int channels() const = 0;
  virtual int seq_len() const = 0;
  // Theoretical state size TSS_i for block i (1 ≤ i ≤ L−1), DESIGN §2.
  virtual int tss(int i) const = 0;
  // Writes T (L×L, lower-triangular) of batch element b and channel c into T.
  virtual void materialize(int b, int c, Eigen::Ref<Matrix> T) const = 0;
  // y = T x by the family's own definition (recurrence or attention formula), independent of
  // materialize(); the conformance tests compare the two.
  virtual Vector apply(int b, int c, const Vector& x) const = 0;
  // Y = T X for every column of X (L × P: the value channels that share channel c's T), the fast
  // path the forward passes of models/ compute their mixer outputs with, so the operator that is
  // measured is the one that ran. Families override it with their own efficient form (attention in
  // row tiles, recurrences over all columns at once); this default runs the realization's
  // recurrence with a P-column state (O(L·N·P) for diagonal transitions) or, for unstructured
  // families, apply() column by column. X and Y must not overlap.
  virtual void multiply(int b, int c, const Eigen::Ref<const Matrix>& X, Eigen::Ref<Matrix> Y) const;
  // State-space realization (A_t, B_t, C_t) of channel c, or nullptr for unstructured families.
  virtual std::unique_ptr<Realization> realization(int, int) const { return nullptr; }
  // State dimension of realization(), 0 when there is none.
  virtual int realization_dim() const { return 0; }
  // Products with the blocks H_i straight from the family's factors (lanczos engine), or nullptr:
  // the engine then goes through realization(), or a materialized T.
  virtual std::unique_ptr<BlockProducts> block_products(int, int) const { return nullptr; }
  // Whether block_products() returns products (cheap: no factors are touched).
  virtual bool has_block_products() const { return false; }

  Matrix dense_matrix(int b, int c) const {
    Matrix T(seq_len(), seq_len());
    materialize(b, c, T);
    return T;
  }
};

inline void LayerOperator::multiply(int b, int c, const Eigen::Ref<const Matrix>& X, Eigen::Ref<Matrix> Y) const {
  const auto r = realization(b, c);
  if (!r) {
    for (Index p = 0; p < X.cols(); ++p) Y.col(p) = apply(b, c, X.col(p));
    return;
  }
  // State of every column at once, transposed: M = [h⁽¹⁾ … h⁽ᴾ⁾]ᵀ (P × N), M ← M A_tᵀ + x_t B_tᵀ.
  Matrix M = Matrix::Zero(X.cols(), r->state_dim());
  for (int t = 0; t < r->length(); ++t) {
    r->right_multiply_At(t, M);
    M.noalias() += X.row(t).transpose() * r->B(t).transpose();
    Y.row(t).noalias() = (M * r->C(t)).transpose();
  }
}

// A named layer of an operator file or a model.
struct OperatorLayer {
  std::string name;
  int layer_index = 0;
  std::unique_ptr<LayerOperator> op;
  // Numbers per value vector of a head: the value channels that share one channel's T (attention
  // head_dim, Mamba2 P, GLA d_v), as the model ran them; 0 when unknown or for channel layers.
  int head_dim = 0;
};

}  // namespace ess
