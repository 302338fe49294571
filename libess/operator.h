// One layer's sequence-mixing operator for a batch of inputs: per batch element b and
// channel/head c an L×L causal matrix T (DESIGN §2–3). Every family implements this interface;
// engines are generic over it.
#pragma once
#include <memory>
#include <string>
#include <vector>

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
  // State-space realization (A_t, B_t, C_t) of channel c, or nullptr for unstructured families.
  virtual std::unique_ptr<Realization> realization(int, int) const { return nullptr; }
  // State dimension of realization(), 0 when there is none.
  virtual int realization_dim() const { return 0; }

  Matrix dense_matrix(int b, int c) const {
    Matrix T(seq_len(), seq_len());
    materialize(b, c, T);
    return T;
  }
};

// A named layer of an operator file or a model.
struct OperatorLayer {
  std::string name;
  int layer_index = 0;
  std::unique_ptr<LayerOperator> op;
};

}  // namespace ess
