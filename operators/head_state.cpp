#include "operators/head_state.h"

#include "libess/error.h"
#include "operators/common.h"

namespace ess {

HeadStateOperator::HeadStateOperator(Tensor q, Tensor k, const std::string& context)
    : q_(std::move(q)), k_(std::move(k)) {
  ops::expect_shape(context, "q", q_, {-1, -1, -1, -1});
  ops::expect_shape(context, "k", k_, q_.shape);
  ops::expect_nonempty(context, "q", q_);
  ops::check_finite(context, "q", q_, ops::kBHLD);
  ops::check_finite(context, "k", k_, ops::kBHLD);
}

}  // namespace ess
