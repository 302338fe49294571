#include "operators/s4d.h"

#include <random>

#include <cmath>
#include <complex>

#include "libess/error.h"
#include "operators/common.h"

namespace ess {

S4dOperator::S4dOperator(Tensor a_re, Tensor a_im, Tensor b_re, Tensor b_im, Tensor c_re, Tensor c_im, int seq_len,
                         const std::string& context)
    : a_re_(std::move(a_re)),
      a_im_(std::move(a_im)),
      b_re_(std::move(b_re)),
      b_im_(std::move(b_im)),
      c_re_(std::move(c_re)),
      c_im_(std::move(c_im)),
      L_(seq_len) {
  ops::expect_shape(context, "a_re", a_re_, {-1, -1});
  ops::expect_nonempty(context, "a_re", a_re_);
  const std::vector<std::int64_t> shape = a_re_.shape;
  ops::expect_shape(context, "b_re", b_re_, shape);
  ops::expect_shape(context, "c_re", c_re_, shape);
  const char* names[] = {"a_re", "a_im", "b_re", "b_im", "c_re", "c_im"};
  Tensor* all[] = {&a_re_, &a_im_, &b_re_, &b_im_, &c_re_, &c_im_};
  for (int k = 0; k < 6; ++k) {
    if (k % 2 == 1 && !ops::present(*all[k])) continue;  // *_im absent = 0
    ops::expect_shape(context, names[k], *all[k], shape);
    ops::check_finite(context, names[k], *all[k], ops::kCN);
  }
  if (L_ < 2)
    throw InputError({context + ": sequence length unknown or < 2: s4d has no time axis of its own; give the layer "
                                "attribute 'seq_len' or a default (",
                      Option{"default_seq_len"}, ")"});
  // State dimension and TSS are reported per layer: take the largest over channels.
  for (int c = 0; c < channels(); ++c) {
    int dim = 0, pairs = 0;  // real state dimension; matched conjugate pairs
    std::vector<bool> used(modes(), false);
    for (int n = 0; n < modes(); ++n) {
      const bool cplx = im(a_im_, c, n) != 0.0;
      dim += cplx ? 2 : 1;
      if (!cplx || used[n]) continue;
      // A conjugate partner (the same mode written twice): a_m = conj(a_n) and c_m b_m = conj(c_n b_n).
      const std::complex<double> an(re(a_re_, c, n), im(a_im_, c, n));
      const std::complex<double> gn = std::complex<double>(re(c_re_, c, n), im(c_im_, c, n)) *
                                      std::complex<double>(re(b_re_, c, n), im(b_im_, c, n));
      for (int m = n + 1; m < modes(); ++m) {
        if (used[m]) continue;
        const std::complex<double> am(re(a_re_, c, m), im(a_im_, c, m));
        const std::complex<double> gm = std::complex<double>(re(c_re_, c, m), im(c_im_, c, m)) *
                                        std::complex<double>(re(b_re_, c, m), im(b_im_, c, m));
        const double scale = std::max({1.0, std::abs(an), std::abs(gn)});
        if (std::abs(am - std::conj(an)) <= 1e-12 * scale && std::abs(gm - std::conj(gn)) <= 1e-12 * scale) {
          used[m] = true;
          ++pairs;
          break;
        }
      }
    }
    state_dim_ = std::max(state_dim_, dim);
    tss_ = std::max(tss_, dim - 2 * pairs);  // a matched pair (4 real dims) has McMillan degree 2
  }
}

std::unique_ptr<LayerOperator> S4dOperator::read(const h5::Object& group, const OperatorReadOptions& options) {
  const std::string ctx = ops::context_of(group);
  const int L = ops::read_int_attr(group, "seq_len", options.default_seq_len, 2, ops::kMaxSeqLen);
  return std::make_unique<S4dOperator>(ops::read_tensor(group, "a_re"), ops::read_optional(group, "a_im"),
                                       ops::read_tensor(group, "b_re"), ops::read_optional(group, "b_im"),
                                       ops::read_tensor(group, "c_re"), ops::read_optional(group, "c_im"), L, ctx);
}

std::unique_ptr<Realization> S4dOperator::realization(int, int c) const {
  const int N = state_dim_;
  Matrix A = Matrix::Zero(N, N), B = Matrix::Zero(N, L_), C = Matrix::Zero(N, L_);
  Vector b0 = Vector::Zero(N), c0 = Vector::Zero(N);
  int s = 0;
  for (int n = 0; n < modes(); ++n) {
    const double ar = re(a_re_, c, n), ai = im(a_im_, c, n), br = re(b_re_, c, n), bi = im(b_im_, c, n),
                 cr = re(c_re_, c, n), ci = im(c_im_, c, n);
    if (ai == 0.0) {
      A(s, s) = ar;
      b0(s) = 1.0;
      c0(s) = cr * br - ci * bi;  // Re(c b)
      s += 1;
    } else {
      A(s, s) = ar;
      A(s, s + 1) = -ai;
      A(s + 1, s) = ai;
      A(s + 1, s + 1) = ar;
      b0(s) = br;
      b0(s + 1) = bi;
      c0(s) = cr;
      c0(s + 1) = -ci;
      s += 2;
    }
  }
  B.colwise() = b0;
  C.colwise() = c0;
  return std::make_unique<DenseInvariantRealization>(std::move(A), std::move(B), std::move(C));
}

Vector S4dOperator::apply(int, int c, const Vector& x) const {
  // Complex modal recurrence: h_n ← a_n h_n + b_n x_t, y_t = Re Σ_n c_n h_n.
  std::vector<std::complex<double>> h(modes(), 0.0);
  Vector y(L_);
  for (int t = 0; t < L_; ++t) {
    std::complex<double> out = 0.0;
    for (int n = 0; n < modes(); ++n) {
      const std::complex<double> a(re(a_re_, c, n), im(a_im_, c, n)), b(re(b_re_, c, n), im(b_im_, c, n)),
          cc(re(c_re_, c, n), im(c_im_, c, n));
      h[n] = a * h[n] + b * x(t);
      out += cc * h[n];
    }
    y(t) = out.real();
  }
  return y;
}

std::unique_ptr<LayerOperator> S4dOperator::example(unsigned seed) {
  std::mt19937 rng(seed);
  return std::make_unique<S4dOperator>(ops::random_uniform(rng, {2, 3}, -0.6, 0.6),
                                       ops::random_uniform(rng, {2, 3}, 0.1, 0.5), ops::random_normal(rng, {2, 3}),
                                       ops::random_normal(rng, {2, 3}), ops::random_normal(rng, {2, 3}),
                                       ops::random_normal(rng, {2, 3}), 16, "example");
}

ESS_REGISTER_FAMILY(s4d, "LTI diagonal SSM per channel (S4D), complex modes allowed; no time axis of its own",
                    S4dOperator::read, S4dOperator::example);

}  // namespace ess
