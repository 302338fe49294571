// Body of the lane kernels (libess/lane_kernels.h). Included once by each
// lane_kernels_<isa>.cpp, inside its own namespace, after that file's `#pragma GCC target` and
// with ESS_LANE_WIDTH set (8 = AVX-512, 4 = AVX2, 2 = SSE2 doubles per register). It includes no
// library header: every function here is compiled for one instruction set, and an out-of-line copy
// of a shared inline function (a template from <vector>, <cmath>, Eigen) compiled with AVX-512
// could be picked by the linker for the whole program. Everything is static.
//
// Arithmetic is lane-wise IEEE (+, −, ×, ÷, √, compare/select) with no contracted multiply-add, so
// every instruction set produces the same bits.
// NOLINTBEGIN
#ifndef ESS_LANE_WIDTH
#error "include from lane_kernels_<isa>.cpp"
#endif

// V holds W lanes (the native width: 8, 4 or 2); a lane array (stride kLanes) is processed in
// kLanes / W slices, each starting W lanes further on.
constexpr int W = ESS_LANE_WIDTH;
static_assert(kLanes % W == 0, "kLanes must be a multiple of the vector width");
typedef double V __attribute__((vector_size(8 * W), may_alias));
typedef long long Mask __attribute__((vector_size(8 * W), may_alias));

// Element k of a lane array, as a vector of W lanes.
struct Arr {
  double* p;
  V& operator[](size_t k) const { return *reinterpret_cast<V*>(p + k * kLanes); }
  Arr operator+(size_t k) const { return Arr{p + k * kLanes}; }
  double& lane(size_t k, int l) const { return p[k * kLanes + l]; }
};

extern "C" void dlasq1_(const int* n, double* d, double* e, double* work, int* info);

namespace {

constexpr double kEps = 1.1102230246251565e-16;  // 2^-53, unit roundoff
// Squares below kTiny or above kHuge lose accuracy; Givens rotations rescale those lanes.
constexpr double kTiny = 1e-290, kHuge = 1e290;

inline V splat(double x) { return V{} + x; }
inline Mask all_true() { return Mask{} - 1; }
inline V lane_select(Mask m, V a, V b) { return m ? a : b; }
inline V vabs(V x) { return (V)((Mask)x & (Mask{} + 0x7fffffffffffffffLL)); }
inline V vmax(V a, V b) { return a > b ? a : b; }
inline V vmin(V a, V b) { return a < b ? a : b; }
// Largest / smallest of a vector's lanes (exact: a max or min of doubles is one of them).
inline double hmax(V x) {
#if defined(__clang__)
#define ESS_SWAP(x, ...) __builtin_shufflevector(x, x, __VA_ARGS__)
#else
#define ESS_SWAP(x, ...) __builtin_shuffle(x, Mask{__VA_ARGS__})
#endif
#if ESS_LANE_WIDTH == 8
  x = vmax(x, ESS_SWAP(x, 4, 5, 6, 7, 0, 1, 2, 3));
  x = vmax(x, ESS_SWAP(x, 2, 3, 0, 1, 6, 7, 4, 5));
  x = vmax(x, ESS_SWAP(x, 1, 0, 3, 2, 5, 4, 7, 6));
#elif ESS_LANE_WIDTH == 4
  x = vmax(x, ESS_SWAP(x, 2, 3, 0, 1));
  x = vmax(x, ESS_SWAP(x, 1, 0, 3, 2));
#else
  x = vmax(x, ESS_SWAP(x, 1, 0));
#endif
#undef ESS_SWAP
  return x[0];
}
inline double hmin(V x) { return -hmax(-x); }
inline bool any(Mask m) {
#if ESS_LANE_WIDTH == 8
  return _mm512_test_epi64_mask((__m512i)m, (__m512i)m) != 0;
#elif ESS_LANE_WIDTH == 4
  return _mm256_movemask_pd((__m256d)m) != 0;
#else
  return _mm_movemask_pd((__m128d)m) != 0;
#endif
}

inline V vsqrt(V x) {
#if ESS_LANE_WIDTH == 8
  return (V)_mm512_maskz_sqrt_pd(0xFF, (__m512d)x);  // (the unmasked form trips GCC 12 -Wmaybe-uninitialized)
#elif ESS_LANE_WIDTH == 4
  return (V)_mm256_sqrt_pd((__m256d)x);
#else
  return (V)_mm_sqrt_pd((__m128d)x);
#endif
}

// Σ_{r=lo}^{hi−1} a[r]·b[r] in four partial sums (r − lo mod 4), added as (s0 + s1) + (s2 + s3):
// the additions of one sum do not wait on each other (one running sum is a chain of dependent
// additions, latency- instead of throughput-bound). The same order on every instruction set.
inline V dot(Arr a, Arr b, int lo, int hi) {
  V s0 = splat(0.0), s1 = s0, s2 = s0, s3 = s0;
  int r = lo;
  for (; r + 4 <= hi; r += 4) {
    s0 += a[r] * b[r];
    s1 += a[r + 1] * b[r + 1];
    s2 += a[r + 2] * b[r + 2];
    s3 += a[r + 3] * b[r + 3];
  }
  for (; r < hi; ++r) s0 += a[r] * b[r];
  return (s0 + s1) + (s2 + s3);
}

// ---------------------------------------------------------------------------------------------
// Square-root factor updates.

// Rotation that maps (a, b) to (ρ, 0): c = a/ρ, s = b/ρ; returns what the diagonal becomes. A lane
// whose b is zero keeps a exactly (c = 1, s = 0). Lanes whose a² + b² under- or overflows get
// ρ = m·√((a/m)² + (b/m)²), m = max(|a|, |b|).
inline V givens_rotation(V a, V b, V& c, V& s) {
  const V one = splat(1.0), zero = splat(0.0);
  const V rho2 = a * a + b * b;
  V rho = vsqrt(rho2);
  const Mask skip = b == zero;
  const Mask bad = ~skip & ~((rho2 >= splat(kTiny)) & (rho2 <= splat(kHuge)));
  // c = ca / den, s = cb / den. Bad lanes divide the scaled pair by its norm in [1, √2], never by ρ:
  // 1/ρ overflows when ρ is subnormal (decays of e^−400 per step reach that in two steps), and
  // 0·∞ made c NaN.
  V ca = a, cb = b, den = rho;
  if (any(bad)) {
    const V m = lane_select(bad, vmax(vabs(a), vabs(b)), one);
    const V as = a / m, bs = b / m, r = vsqrt(as * as + bs * bs);
    rho = lane_select(bad, m * r, rho);
    ca = lane_select(bad, as, a);
    cb = lane_select(bad, bs, b);
    den = lane_select(bad, r, rho);
  }
  const V inv = one / lane_select(skip, one, den);
  c = lane_select(skip, one, ca * inv);
  s = lane_select(skip, zero, cb * inv);
  return lane_select(skip, a, rho);
}

// R factor of [U; rᵀ] by Givens rotations; U upper-triangular, r destroyed (zeroed). Rotation k
// acts on row k of U and on r: (U(k, j), r(j)) ← (c u + s v, c v − s u) for j > k. Done column by
// column (rotations 0..j−1 to column j and r(j), then rotation j from U(j, j) and r(j)), two
// columns at a time so their dependency chains overlap: the same operations on every element in
// the same order as row by row, but over contiguous memory (rows of U are n·kLanes·8 bytes apart).
// cs: 2n lane vectors of scratch (the rotations).
void givens_append_slice(int n, Arr U, Arr r, Arr cs) {
  int j = 0;
  for (; j + 2 <= n; j += 2) {
    const Arr u0 = U + static_cast<size_t>(j) * n, u1 = u0 + n;
    V v0 = r[j], v1 = r[j + 1];
    for (int k = 0; k < j; ++k) {
      const V c = cs[2 * k], s = cs[2 * k + 1];
      const V a0 = u0[k], a1 = u1[k];
      u0[k] = c * a0 + s * v0;
      v0 = c * v0 - s * a0;
      u1[k] = c * a1 + s * v1;
      v1 = c * v1 - s * a1;
    }
    V c, s;
    u0[j] = givens_rotation(u0[j], v0, c, s);
    cs[2 * j] = c;
    cs[2 * j + 1] = s;
    const V a1 = u1[j];
    u1[j] = c * a1 + s * v1;
    v1 = c * v1 - s * a1;
    u1[j + 1] = givens_rotation(u1[j + 1], v1, c, s);
    cs[2 * j + 2] = c;
    cs[2 * j + 3] = s;
  }
  if (j < n) {
    const Arr u0 = U + static_cast<size_t>(j) * n;
    V v0 = r[j];
    for (int k = 0; k < j; ++k) {
      const V c = cs[2 * k], s = cs[2 * k + 1];
      const V a0 = u0[k];
      u0[k] = c * a0 + s * v0;
      v0 = c * v0 - s * a0;
    }
    V c, s;
    u0[j] = givens_rotation(u0[j], v0, c, s);
  }
  for (int k = 0; k < n; ++k) r[k] = splat(0.0);
}

void givens_append(int n, double* U, double* r) {
  // Scratch for the rotations: 2n lane vectors on the stack (32 KiB at n = 256).
  const auto raw =
      reinterpret_cast<std::uintptr_t>(__builtin_alloca(sizeof(double) * (2 * static_cast<size_t>(n) + 1) * kLanes));
  double* cs = reinterpret_cast<double*>((raw + 63) & ~static_cast<std::uintptr_t>(63));
  for (int h = 0; h < kLanes; h += W) givens_append_slice(n, Arr{U + h}, Arr{r + h}, Arr{cs + h});
}

void scale_columns(int n, double* U_, const double* a_) {
  for (int h = 0; h < kLanes; h += W) {
    const Arr U{U_ + h}, a{const_cast<double*>(a_) + h};
    for (int c = 0; c < n; ++c) {
      const V ac = a[c];
      for (int r = 0; r <= c; ++r) U[r + c * n] *= ac;
    }
  }
}

// P = (W diag(a)) Fᵀ: P(r, c) = Σ_{k ≥ max(r, c)} W(r, k) a(k) F(c, k), summed in ascending k.
// Four columns of P at a time stay in registers/L1 while the columns of W stream past once.
void upper_product(int n, const double* W_, const double* a_, const double* F_, double* P_) {
  for (int h = 0; h < kLanes; h += W) {
    const Arr Wp{const_cast<double*>(W_) + h}, a{const_cast<double*>(a_) + h}, F{const_cast<double*>(F_) + h};
    const Arr P{P_ + h};
    for (int i = 0; i < n * n; ++i) P[i] = splat(0.0);
    int c0 = 0;
    for (; c0 + 4 <= n; c0 += 4) {
      const Arr p0 = P + static_cast<size_t>(c0) * n, p1 = p0 + n, p2 = p1 + n, p3 = p2 + n;
      // k = c0 .. c0+2: the columns c ≤ k only (F is upper-triangular; same sums as below).
      for (int k = c0; k < c0 + 3; ++k) {
        const Arr wk = Wp + static_cast<size_t>(k) * (k + 1) / 2;
        for (int c = c0; c <= k; ++c) {
          const V f = a[k] * F[c + k * n];
          const Arr pc = P + static_cast<size_t>(c) * n;
          for (int r = 0; r <= k; ++r) pc[r] += wk[r] * f;
        }
      }
      for (int k = c0 + 3; k < n; ++k) {
        const Arr wk = Wp + static_cast<size_t>(k) * (k + 1) / 2;
        const V ak = a[k];
        const V f0 = ak * F[c0 + k * n], f1 = ak * F[c0 + 1 + k * n], f2 = ak * F[c0 + 2 + k * n],
                f3 = ak * F[c0 + 3 + k * n];
        for (int r = 0; r <= k; ++r) {
          const V w = wk[r];
          p0[r] += w * f0;
          p1[r] += w * f1;
          p2[r] += w * f2;
          p3[r] += w * f3;
        }
      }
    }
    for (; c0 < n; ++c0) {
      const Arr pc = P + static_cast<size_t>(c0) * n;
      for (int k = c0; k < n; ++k) {
        const Arr wk = Wp + static_cast<size_t>(k) * (k + 1) / 2;
        const V f = a[k] * F[c0 + k * n];
        for (int r = 0; r <= k; ++r) pc[r] += wk[r] * f;
      }
    }
  }
}

// P = M Fᵀ for a full M and an upper-triangular F: P(r, c) = Σ_{k ≥ c} M(r, k) F(c, k).
void general_product(int n, const double* M_, const double* F_, double* P_) {
  for (int h = 0; h < kLanes; h += W) {
    const Arr M{const_cast<double*>(M_) + h}, F{const_cast<double*>(F_) + h}, P{P_ + h};
    for (int i = 0; i < n * n; ++i) P[i] = splat(0.0);
    for (int k = 0; k < n; ++k) {
      const Arr mk = M + static_cast<size_t>(k) * n;
      for (int c = 0; c <= k; ++c) {
        const V f = F[c + k * n];
        const Arr pc = P + static_cast<size_t>(c) * n;
        for (int r = 0; r < n; ++r) pc[r] += mk[r] * f;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Singular values.

// Columns x[0..NC−1] (rows lo..n−1) of the trailing matrix: the right update x ← x − w·tv (step k)
// and then the left update x ← x − τ_l (vlᵀx) vl (step k+1). The right update is computed twice,
// once for the dot product (four partial sums as in dot()) and once for the store, so each column
// is stored once and w, vl are loaded once for NC columns: the loop is bound by loads and stores.
template <int NC>
inline void two_sided_update(const Arr* x, const V* tv, Arr w, Arr vl, V tau_l, int lo, int n, Arr z, int z_from) {
  V s[NC][4];
  for (int j = 0; j < NC; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = splat(0.0);
  int r = lo;
  for (; r + 4 <= n; r += 4)
    for (int i = 0; i < 4; ++i) {
      const V wr = w[r + i], vr = vl[r + i];
      for (int j = 0; j < NC; ++j) s[j][i] += vr * (x[j][r + i] - wr * tv[j]);
    }
  for (; r < n; ++r)
    for (int j = 0; j < NC; ++j) s[j][0] += vl[r] * (x[j][r] - w[r] * tv[j]);
  V ts[NC], top[NC];
  for (int j = 0; j < NC; ++j) ts[j] = tau_l * ((s[j][0] + s[j][1]) + (s[j][2] + s[j][3]));
  for (int j = 0; j < NC; ++j) top[j] = x[j][lo] = (x[j][lo] - w[lo] * tv[j]) - ts[j] * vl[lo];
  if (z_from >= NC) {
    for (r = lo + 1; r < n; ++r) {
      const V wr = w[r], vr = vl[r];
      for (int j = 0; j < NC; ++j) x[j][r] = (x[j][r] - wr * tv[j]) - ts[j] * vr;
    }
    return;
  }
  // Look-ahead: z[r] += Σ_j x_j[r]·x_j[lo] over the columns from z_from on (rows lo+1..), with the
  // values just stored: the next step's w = A u without another sweep (bidiagonalize()).
  for (r = lo + 1; r < n; ++r) {
    const V wr = w[r], vr = vl[r];
    V t = z[r];
    for (int j = 0; j < NC; ++j) {
      const V xr = (x[j][r] - wr * tv[j]) - ts[j] * vr;
      x[j][r] = xr;
      if (j >= z_from) t += xr * top[j];
    }
    z[r] = t;
  }
}

// Householder reduction of the n×n matrices A (destroyed; column c at A + c·ld) to upper
// bidiagonal form: diagonal d (n), superdiagonal e (n − 1). v: n entries, w: 2n, z: n. Entries
// are assumed scaled to ≲ 1 (no overflow in the squared norms). Step k: the right reflector u of
// row k, w = A u, then the right update fused with the next step's left update, four columns at
// a time while they are hot (two_sided_update). That sweep also accumulates z = A(:, k+3:)·A(k+1,
// k+3:)ᵀ from the values it stores, from which the next step's w = A u follows in O(n) (u is
// e_{k+2} plus a multiple of that row): one sweep over the trailing matrix per step, plus its
// dot-product pass, instead of three.
void bidiagonalize(int n, int ld, Arr A, Arr d, Arr e, Arr v, Arr w, Arr z) {
  const V one = splat(1.0), zero = splat(0.0);
  auto col = [&](int c) { return A + static_cast<size_t>(c) * ld; };
  // Householder vector of x[k0:] (x[k0] = α): I − τ v vᵀ maps it to β e_{k0}; v[k0] = 1.
  auto reflector = [&](Arr x, int k0, V& beta, V& tau, Arr vout) {
    const V norm = vsqrt(dot(x, x, k0, n)), alpha = x[k0];
    const Mask null = norm == zero;
    beta = lane_select(alpha > zero, -norm, norm);
    tau = lane_select(null, zero, (beta - alpha) / lane_select(null, one, beta));
    const V inv = one / lane_select(null, one, alpha - beta);
    vout[k0] = one;
    for (int r = k0 + 1; r < n; ++r) vout[r] = x[r] * inv;
    beta = lane_select(null, zero, beta);
  };
  // Left reflector of column 0, applied to columns 1..n−1.
  V beta, tau_l, tau_r, inv_r;
  reflector(col(0), 0, beta, tau_l, v);
  d[0] = beta;
  for (int c = 1; c < n; ++c) {
    const Arr x = col(c);
    const V ts = tau_l * dot(v, x, 0, n);
    for (int r = 0; r < n; ++r) x[r] -= ts * v[r];
  }
  for (int k = 0; k + 1 < n; ++k) {
    // Right reflector u (kept in v) of row k, columns k+1..n−1.
    {
      V s0 = zero, s1 = zero, s2 = zero, s3 = zero;  // partial sums as in dot()
      int c = k + 1;
      for (; c + 4 <= n; c += 4) {
        const V x0 = col(c)[k], x1 = col(c + 1)[k], x2 = col(c + 2)[k], x3 = col(c + 3)[k];
        s0 += x0 * x0;
        s1 += x1 * x1;
        s2 += x2 * x2;
        s3 += x3 * x3;
      }
      for (; c < n; ++c) s0 += col(c)[k] * col(c)[k];
      const V norm = vsqrt((s0 + s1) + (s2 + s3)), alpha = col(k + 1)[k];
      const Mask null = norm == zero;
      const V b = lane_select(alpha > zero, -norm, norm);
      tau_r = lane_select(null, zero, (b - alpha) / lane_select(null, one, b));
      inv_r = one / lane_select(null, one, alpha - b);
      e[k] = lane_select(null, zero, b);
      v[k + 1] = one;
      for (int c = k + 2; c < n; ++c) v[c] = col(c)[k] * inv_r;
    }
    // w = A[k+1:, k+1:] u. After step 0: u = e_{k+1} + inv_r·(row k beyond column k+1), and the
    // previous step's update left z[r] = Σ_{c ≥ k+2} A(r, c) A(k, c).
    if (k > 0) {
      const Arr x = col(k + 1);
      for (int r = k + 1; r < n; ++r) w[r] = x[r] + inv_r * z[r];
    } else {
      // Four columns at a time with w[r] in a register: a quarter of the loads and stores of w.
      for (int r = k + 1; r < n; ++r) w[r] = zero;
      int c = k + 1;
      for (; c + 4 <= n; c += 4) {
        const Arr x0 = col(c), x1 = col(c + 1), x2 = col(c + 2), x3 = col(c + 3);
        const V v0 = v[c], v1 = v[c + 1], v2 = v[c + 2], v3 = v[c + 3];
        for (int r = k + 1; r < n; ++r) {
          V t = w[r];
          t += x0[r] * v0;
          t += x1[r] * v1;
          t += x2[r] * v2;
          t += x3[r] * v3;
          w[r] = t;
        }
      }
      for (; c < n; ++c) {
        const Arr x = col(c);
        const V vc = v[c];
        for (int r = k + 1; r < n; ++r) w[r] += x[r] * vc;
      }
    }
    // Right update of column k+1, then the left reflector of column k+1 (rows k+1..).
    {
      const Arr x = col(k + 1);
      const V tv = tau_r * v[k + 1];
      for (int r = k + 1; r < n; ++r) x[r] -= w[r] * tv;
    }
    const Arr vl = w + n;  // the left reflector's vector (u stays in v): the caller gives w 2n entries
    reflector(col(k + 1), k + 1, beta, tau_l, vl);
    d[k + 1] = beta;
    // The other columns, four at a time: the right update (step k), the left update's dot product
    // (step k+1), then both updates again, stored once, accumulating the next step's z from
    // column k+3 on (rows k+2..).
    const bool look_ahead = k + 2 < n;  // step k + 1 exists
    if (look_ahead)
      for (int r = k + 2; r < n; ++r) z[r] = zero;
    auto skip = [&](int c, int nc) { return !look_ahead ? nc : c == k + 2 ? 1 : 0; };
    int c2 = k + 2;
    for (; c2 + 4 <= n; c2 += 4) {
      const Arr x[4] = {col(c2), col(c2 + 1), col(c2 + 2), col(c2 + 3)};
      const V tv[4] = {tau_r * v[c2], tau_r * v[c2 + 1], tau_r * v[c2 + 2], tau_r * v[c2 + 3]};
      two_sided_update<4>(x, tv, w, vl, tau_l, k + 1, n, z, skip(c2, 4));
    }
    for (; c2 + 2 <= n; c2 += 2) {
      const Arr x[2] = {col(c2), col(c2 + 1)};
      const V tv[2] = {tau_r * v[c2], tau_r * v[c2 + 1]};
      two_sided_update<2>(x, tv, w, vl, tau_l, k + 1, n, z, skip(c2, 2));
    }
    if (c2 < n) {
      const Arr x[1] = {col(c2)};
      const V tv[1] = {tau_r * v[c2]};
      two_sided_update<1>(x, tv, w, vl, tau_l, k + 1, n, z, skip(c2, 1));
    }
  }
}

// Laguerre's step from 0 towards the smallest root of a degree-m polynomial whose roots λ_i are
// all real and positive, given s1 = Σ 1/λ_i and s2 = Σ 1/λ_i²: it lands in (0, λ_min], so it is a
// safe dqds shift (shrunk by a few ulps against rounding), and converges cubically.
inline V laguerre_shift(V m, V s1, V s2) {
  const Mask valid = (s1 > splat(0.0)) & (s1 < splat(1e300)) & (s2 < splat(1e300));
  const V disc = (m - splat(1.0)) * (m * s2 - s1 * s1);
  const V root = vsqrt(lane_select(disc > splat(0.0), disc, splat(0.0)));
  const V tau = m / (s1 + root) * (splat(1.0) - splat(4.0) * (m + splat(8.0)) * splat(kEps));
  return lane_select(valid, tau, splat(0.0));
}

// Per-lane gather/scatter of element idx[l] of a lane array (lanes outside m: 0 / untouched).
inline V gather(Arr a, V idx, Mask m) {
#if ESS_LANE_WIDTH == 8
  const __m512i lane_ids = _mm512_set_epi64(7, 6, 5, 4, 3, 2, 1, 0);
  const __m512i at =
      _mm512_add_epi64(_mm512_mullo_epi64(_mm512_cvttpd_epi64((__m512d)idx), _mm512_set1_epi64(kLanes)), lane_ids);
  const __mmask8 k = _mm512_test_epi64_mask((__m512i)m, (__m512i)m);
  return (V)_mm512_mask_i64gather_pd(_mm512_setzero_pd(), k, at, a.p, 8);
#else
  alignas(64) double r[W];
  for (int l = 0; l < W; ++l) r[l] = m[l] ? a.lane(static_cast<size_t>(idx[l]), l) : 0.0;
  return *reinterpret_cast<const V*>(r);
#endif
}
inline void scatter(Arr a, V idx, V x, Mask m) {
#if ESS_LANE_WIDTH == 8
  // No branch per lane (the masks are data-dependent): one masked scatter, distinct addresses.
  const __m512i lane_ids = _mm512_set_epi64(7, 6, 5, 4, 3, 2, 1, 0);
  const __m512i at =
      _mm512_add_epi64(_mm512_mullo_epi64(_mm512_cvttpd_epi64((__m512d)idx), _mm512_set1_epi64(kLanes)), lane_ids);
  _mm512_mask_i64scatter_pd(a.p, _mm512_test_epi64_mask((__m512i)m, (__m512i)m), at, (__m512d)x, 8);
#else
  for (int l = 0; l < W; ++l)
    if (m[l]) a.lane(static_cast<size_t>(idx[l]), l) = x[l];
#endif
}

// Eigenvalues of BᵀB for the bidiagonals whose squared entries are q (n) and e (n − 1), by the
// differential qd algorithm with shifts (dqds; Fernando & Parlett, Numer. Math. 67, 1994), all
// lanes in lockstep, each with its own window [i0, n0] (the bottom unreduced block), shift and
// deflation. q receives λ = σ² at the position where it deflated; fallback marks lanes that hit
// the iteration cap (LAPACK finishes them).
//  - Shift: a lower bound on λ_min of the array just computed, by Laguerre's step from 0 using
//    Σ 1/λ and Σ 1/λ², which come out of the transform itself (the new q̂_k are the pivots of
//    BBᵀ − τ, and their τ-derivatives follow the same recurrence). A bound keeps every transform
//    positive; one that still fails (rounding) is retried unshifted.
//  - Deflation at the bottom when e ≤ tol²·(S + q) (relative) or, while unshifted,
//    e ≤ (tol·max entry)² (absolute: the dropped entry perturbs σ by at most tol·σ_1); splits at
//    the same absolute threshold when a new block starts; a 2×2 window is solved directly.
// A transform is a chain of dependent divisions, so two slices run through it together. The
// common bookkeeping (deflating one or two eigenvalues at the bottom, the next shift) is done in
// vector form from values the transform tracks; the rest (a new block, a 2×2 window, a third
// deflation in a row, the iteration cap) goes through prepare()'s per-lane loop.
struct Dqds {
  int n = 0;
  Arr q{}, e{}, qn{}, en{}, cs{}, cs2{};
  V SPLIT{}, I0{}, N0{}, S{}, TAU{}, ITERS{}, QB{}, EB{};
  Mask fresh{}, known{}, fallback{}, run{};
  bool bookkeeping = true;
  int kmin = 0, kmax = -1;

  static constexpr double tol2() { return 64 * kEps * kEps; }  // tol = 8ε
  V maxit() const { return splat(30.0 * n + 30.0); }

  void init(int n_, Arr q_, Arr e_, Arr scratch) {
    n = n_;
    q = q_;
    e = e_;
    qn = scratch;
    en = qn + n;
    cs = en + n;
    cs2 = cs + n;
    V m = splat(0.0);
    for (int k = 0; k < n; ++k) m = vmax(m, q[k]);
    for (int k = 0; k + 1 < n; ++k) m = vmax(m, e[k]);
    e[n - 1] = splat(0.0);  // read (never used) by the transform
    SPLIT = splat(tol2()) * m;
    I0 = S = TAU = ITERS = QB = EB = splat(0.0);
    N0 = splat(n - 1.0);
    fresh = all_true();
    known = fallback = Mask{};
    bookkeeping = true;
  }

  // Deflation test for bottom entries qb (diagonal) and eb (the e above it): relative, or
  // absolute while the block is unshifted.
  Mask converged(V qb, V eb) const { return (eb <= splat(tol2()) * (S + qb)) | ((S == splat(0.0)) & (eb <= SPLIT)); }

  // Start new blocks, deflate converged bottoms, solve 2×2 windows; then pick the lanes to run.
  void prepare() {
    const V zero = splat(0.0), one = splat(1.0);
    while (bookkeeping) {
      if (any(fresh)) {
        for (int l = 0; l < W; ++l) {
          if (!fresh[l] || N0[l] < 0) continue;
          int i0 = 0;
          for (int k = static_cast<int>(N0[l]) - 1; k >= 0; --k)
            if (e.lane(k, l) <= SPLIT[l]) {
              e.lane(k, l) = 0;
              i0 = k + 1;
              break;
            }
          I0[l] = i0;
        }
        S = lane_select(fresh, zero, S);
        TAU = lane_select(fresh, zero, TAU);
        known &= ~fresh;
        fresh = Mask{};
      }
      const Mask active = (N0 >= zero) & ~fallback;
      const Mask need = active & ~known;
      const V qb = any(need) ? lane_select(need, gather(q, N0, need), QB) : QB;
      const V eb = any(need) ? lane_select(need, gather(e, N0 - one, need & (N0 > I0)), EB) : EB;
      known = Mask{};
      const Mask single = active & (N0 == I0);
      const Mask defl = active & ~single & converged(qb, eb);
      const Mask two = active & ~single & ~defl & (N0 == I0 + one);
      if (!any(single | defl | two)) break;
      scatter(q, N0, qb + S, single | defl);  // a deflated λ = σ² stays in q at its position
      if (any(two)) {                         // eigenvalues of [[q1, √(q1 e1)], [√(q1 e1), e1 + q2]]
        const V q1 = gather(q, I0, two), e1 = gather(e, I0, two);
        const V a = q1 + e1 - qb, disc = a * a + splat(4.0) * qb * e1;
        const V big = splat(0.5) * (q1 + e1 + qb + vsqrt(lane_select(disc > zero, disc, zero)));
        const V small = lane_select(big > zero, q1 * qb / lane_select(big > zero, big, one), zero);
        scatter(q, N0, small + S, two);
        scatter(q, N0 - one, big + S, two);
      }
      N0 = lane_select(two, N0 - splat(2.0), lane_select(single | defl, N0 - one, N0));
      fresh = single | two;
      // After a plain deflation the shift comes from the partial sums (the recurrences run top-down).
      const Mask reshift = defl & (TAU > zero);
      if (any(reshift))
        TAU =
            lane_select(reshift, laguerre_shift(N0 - I0 + one, gather(cs, N0, reshift), gather(cs2, N0, reshift)), TAU);
    }
    const Mask active = (N0 >= zero) & ~fallback;
    fallback |= active & (ITERS >= maxit());
    run = active & ~fallback;
    kmin = static_cast<int>(hmin(lane_select(run, I0, splat(n))));
    kmax = static_cast<int>(hmax(lane_select(run, N0, splat(-1.0))));
  }

  // State of one transform in flight (pointers copied so stores through them cannot alias them).
  // At each lane's last step it picks up q̂ at n0 and n0 − 1, ê at n0 − 1 and n0 − 2, and the
  // partial sums Σ 1/λ, Σ 1/λ² up to n0 − 1 and n0 − 2: what deflating one or two eigenvalues
  // and shifting again need.
  struct Step {
    double *q, *e, *qn, *en, *cs, *cs2;
    V I0r, N0r, N0m1, tau, Snew, split, d, h, g, s1, s2, qb, eb, qm1, em2, s1m1, s2m1, s1m2, s2m2;
    Mask bad, run, d1, d2;
    int kmin, n;
    int fast_lo, fast_hi;  // steps in [fast_lo, fast_hi) are none of the above for any lane
  };

  Step begin() const {
    const V zero = splat(0.0), one = splat(1.0);
    Step t;
    t.q = q.p;
    t.e = e.p;
    t.qn = qn.p;
    t.en = en.p;
    t.cs = cs.p;
    t.cs2 = cs2.p;
    t.I0r = lane_select(run, I0, splat(-1.0));
    t.N0r = lane_select(run, N0, splat(-1.0));
    t.N0m1 = t.N0r - one;
    t.tau = TAU;
    t.Snew = S + TAU;
    t.split = SPLIT;
    t.d = (kmax >= 0 ? q[kmin] : zero) - TAU;
    t.h = one;
    t.g = t.s1 = t.s2 = t.qb = t.eb = t.qm1 = t.em2 = t.s1m1 = t.s2m1 = t.s1m2 = t.s2m2 = zero;
    t.bad = t.d1 = t.d2 = Mask{};
    t.run = run;
    t.kmin = kmin;
    t.n = n;
    const int i0max = static_cast<int>(hmax(lane_select(run, I0, splat(-1.0))));
    const int n0min = static_cast<int>(hmin(lane_select(run, N0, splat(n))));
    t.fast_lo = i0max == kmin ? kmin : i0max + 1;  // at kmin, d starts at q[kmin] − τ (above)
    t.fast_hi = n0min;
    return t;
  }

  // Step k of the transform over each running lane's window [i0, n0], in place (the old values
  // go to qn/en, to restore a lane whose transform fails):
  //   q̂_k = d + e_k,  ê_k = e_k q_{k+1} / q̂_k,  d ← d q_{k+1} / q̂_k − τ,  q̂_{n0} = d.
  // d starts at q[i0] − τ and is not masked outside the window (reset at i0, unread after n0).
  // Σ 1/λ and Σ 1/λ² of the new array come from its pivots q̂_k = D_k and their τ-derivatives
  // h_k = −D'_k, g_k = D''_k (h_{k+1} = 1 + r_k h_k, g_{k+1} = r_k (g_k − 2 h_k² / D_k),
  // r_k = ê_k / q̂_k): Σ 1/λ = Σ h_k / D_k, Σ 1/λ² = Σ (h_k / D_k)² − g_k / D_k.
  // At n0 the bottom is tested for deflation (one or two eigenvalues), which then stay in q as
  // λ = q̂ + S (the new accumulated shift).
  __attribute__((always_inline)) static inline void step(Step& t, int k) {
    const V zero = splat(0.0), one = splat(1.0);
    const Arr q{t.q}, e{t.e}, qn{t.qn}, en{t.en}, cs{t.cs}, cs2{t.cs2};
    const V kv = splat(k);
    const Mask inwin = (kv >= t.I0r) & (kv < t.N0r), endk = kv == t.N0r;
    const Mask touch = inwin | endk;
    const V qk = q[k], qk1 = k + 1 < t.n ? q[k + 1] : zero, ek0 = e[k];
    const V ek = lane_select(endk, zero, ek0);
    if (k > t.kmin) t.d = lane_select(kv == t.I0r, qk - t.tau, t.d);
    const V qh = t.d + ek;
    const V inv = one / qh;  // one division per step: the divider bounds the loop
    const V dn = (t.d * qk1) * inv - t.tau;
    const V eh = (ek * qk1) * inv;
    qn[k] = qk;
    en[k] = ek0;
    e[k] = lane_select(inwin, eh, ek0);
    t.bad |= inwin & ~(qh > zero);
    const V hk = t.h * inv;
    t.s1 = lane_select(touch, t.s1 + hk, t.s1);
    t.s2 = lane_select(touch, t.s2 + (hk * hk - t.g * inv), t.s2);
    cs[k] = t.s1;
    cs2[k] = t.s2;
    V qw = qh;
    if (any(endk)) {  // a lane's last step: deflate at its bottom, from the entries just written
      const V T2 = splat(tol2()), S = t.Snew;
      auto conv = [&](V qb, V eb) { return (eb <= T2 * (S + qb)) | ((S == zero) & (eb <= t.split)); };
      t.qb = lane_select(endk, qh, t.qb);
      if (k >= 1) {
        const V eb = e[k - 1], qm1 = q[k - 1];
        t.eb = lane_select(endk, eb, t.eb);
        t.qm1 = lane_select(endk, qm1, t.qm1);
        t.s1m1 = lane_select(endk, cs[k - 1], t.s1m1);
        t.s2m1 = lane_select(endk, cs2[k - 1], t.s2m1);
        const Mask d1 = endk & (t.N0r > t.I0r) & conv(qh, eb);
        qw = lane_select(d1, qh + S, qh);
        t.d1 |= d1;
        if (k >= 2 && any(d1)) {
          const V em2 = e[k - 2];
          t.em2 = lane_select(endk, em2, t.em2);
          t.s1m2 = lane_select(endk, cs[k - 2], t.s1m2);
          t.s2m2 = lane_select(endk, cs2[k - 2], t.s2m2);
          const Mask d2 = d1 & (t.N0m1 > t.I0r) & conv(qm1, em2);
          if (any(d2)) q[k - 1] = lane_select(d2, qm1 + S, qm1);
          t.d2 |= d2;
        }
      }
    }
    q[k] = lane_select(touch, qw, qk);
    const V r = eh * inv;
    t.g = lane_select(inwin, r * (t.g - (t.h + t.h) * hk), t.g);
    t.h = lane_select(inwin, one + r * t.h, t.h);
    t.d = dn;
  }

  // A step where every running lane is strictly inside its window and none of the tracked
  // positions: no window masks (lanes not running keep their values).
  __attribute__((always_inline)) static inline void fast_step(Step& t, int k) {
    const V one = splat(1.0);
    const Arr q{t.q}, e{t.e}, qn{t.qn}, en{t.en}, cs{t.cs}, cs2{t.cs2};
    const V qk = q[k], qk1 = q[k + 1], ek = e[k];
    const V qh = t.d + ek;
    const V inv = one / qh;
    const V dn = (t.d * qk1) * inv - t.tau;
    const V eh = (ek * qk1) * inv;
    qn[k] = qk;
    en[k] = ek;
    q[k] = lane_select(t.run, qh, qk);
    e[k] = lane_select(t.run, eh, ek);
    t.bad |= ~(qh > splat(0.0));
    const V hk = t.h * inv;
    t.s1 = t.s1 + hk;
    t.s2 = t.s2 + (hk * hk - t.g * inv);
    cs[k] = t.s1;
    cs2[k] = t.s2;
    const V r = eh * inv;
    t.g = r * (t.g - (t.h + t.h) * hk);
    t.h = one + r * t.h;
    t.d = dn;
  }

  __attribute__((always_inline)) static inline void any_step(Step& t, int k) {
    if (k >= t.fast_lo && k < t.fast_hi)
      fast_step(t, k);
    else
      step(t, k);
  }

  // Accepted lanes: S += τ; the eigenvalues step() deflated leave the window; the next τ comes
  // from the matching (partial) sums. Rejected with τ > 0: restored, retried unshifted; rejected
  // unshifted (impossible for a positive array): LAPACK takes the lane.
  void finish(const Step& t) {
    const V zero = splat(0.0), one = splat(1.0);
    const Mask accept = ~t.bad & (t.qb >= zero) & run;
    const Mask reject = run & ~accept;
    if (any(reject))
      for (int k = kmin; k <= kmax; ++k) {
        q[k] = lane_select(reject, qn[k], q[k]);
        e[k] = lane_select(reject, en[k], e[k]);
      }
    S = lane_select(accept, t.Snew, S);
    fallback |= reject & (TAU == zero);
    ITERS = lane_select(run, ITERS + one, ITERS);
    const Mask d1 = accept & t.d1, d2 = accept & t.d2;
    N0 = lane_select(d2, N0 - splat(2.0), lane_select(d1, N0 - one, N0));
    const V s1 = lane_select(d2, t.s1m2, lane_select(d1, t.s1m1, t.s1));
    const V s2 = lane_select(d2, t.s2m2, lane_select(d1, t.s2m1, t.s2));
    TAU = lane_select(accept, laguerre_shift(N0 - I0 + one, s1, s2), zero);
    QB = lane_select(d1, t.qm1, t.qb);
    EB = lane_select(d1, t.em2, t.eb);
    known = accept & ~d2;
    bookkeeping = any((run & (N0 <= I0 + one)) | d2 | (ITERS >= maxit()));
  }
};

// Runs the dqds of `count` slices, two at a time through each transform.
void dqds_slices(Dqds* sl, int count) {
  for (int a = 0; a < count; a += 2) {
    Dqds& x = sl[a];
    Dqds* y = a + 1 < count ? &sl[a + 1] : nullptr;
    for (;;) {
      x.prepare();
      if (y) y->prepare();
      const bool rx = x.kmax >= 0, ry = y && y->kmax >= 0;
      if (!rx && !ry) break;
#ifdef ESS_LANE_LOOP_STATS
      ESS_LANE_LOOP_STATS(rx ? x.kmin : y->kmin, rx ? x.kmax : y->kmax);
#endif
      if (rx && ry) {
        Dqds::Step tx = x.begin(), ty = y->begin();
        const int lo = x.kmin < y->kmin ? x.kmin : y->kmin, hi = x.kmax > y->kmax ? x.kmax : y->kmax;
        // Both windows span [lo, hi]: a slice outside its own [kmin, kmax] has no lane in window.
        // A slice that starts later resets d at its window's start, in step().
        if (x.kmin != lo) tx.kmin = lo - 1, tx.fast_lo = tx.fast_lo > x.kmin ? tx.fast_lo : x.kmin + 1;
        if (y->kmin != lo) ty.kmin = lo - 1, ty.fast_lo = ty.fast_lo > y->kmin ? ty.fast_lo : y->kmin + 1;
        // The two slices step by step: their division chains overlap.
        for (int k = lo; k <= hi; ++k) {
          Dqds::any_step(tx, k);
          Dqds::any_step(ty, k);
        }
        x.finish(tx);
        y->finish(ty);
      } else {
        Dqds& z = rx ? x : *y;
        Dqds::Step t = z.begin();
        for (int k = z.kmin; k <= z.kmax; ++k) Dqds::any_step(t, k);
        z.finish(t);
      }
    }
  }
}

// Doubles of workspace per batch (singular_values_work in lane_kernels.h, not called here: every
// function of this file is compiled for one instruction set): 14n lane vectors, then the padded
// copy of the matrix.
inline size_t batch_work(int n) { return static_cast<size_t>(n) * (n + 15) * kLanes; }

// Singular values of `slices` slices of W lanes each: slice j is A + j·W (stride kLanes within a
// batch; slices past kLanes / W continue in the next batch, nn·kLanes further). work:
// batch_work(n) per batch (14n lane entries and the padded copy, n(n + 1)), a slice at its lanes.
void singular_values_slices(int n, double* A_, double* sigma, double* work_, unsigned char* status, int slices) {
  const size_t nn = static_cast<size_t>(n) * n;
  constexpr int per_batch = kLanes / W;
  Dqds dq[2 * per_batch];
  Arr sv_d[2 * per_batch], sv_saved[2 * per_batch];
  alignas(64) double unscale[2 * per_batch][W];
  for (int j = 0; j < slices; ++j) {
    const int b = j / per_batch, h = (j % per_batch) * W;
    Arr A{A_ + b * nn * kLanes + h};
    Arr work{work_ + b * batch_work(n) + h};
    Arr Ap = work + 14 * static_cast<size_t>(n);  // the scaled copy, leading dimension n + 1
    unsigned char* st = status + b * kLanes + h;
#ifdef ESS_LANE_DUMP_MATRIX
    ESS_LANE_DUMP_MATRIX(n, A);
#endif
    Arr d = work, e = d + n, q = e + n, qe = q + n, scratch = qe + n, v = scratch + 4 * n, w = v + n, saved = w + 2 * n;
    // Scale each lane by a power of two (exact) so its largest entry is in [0.5, 1).
    V m = splat(0.0);
    Mask finite = all_true();
    for (size_t i = 0; i < nn; ++i) {
      const V x = vabs(A[i]);
      finite &= x <= splat(1.7976931348623157e308);
      m = vmax(m, x);
    }
    // A subnormal largest entry (ex down to −1073) needs 2^−ex > 2^1023: two factors then.
    alignas(64) double scale[W], scale2[W];
    for (int l = 0; l < W; ++l) {
      int ex = 0;
      if (finite[l] && m[l] > 0) __builtin_frexp(m[l], &ex);
      const int extra = std::max(0, -ex - 1000);
      scale[l] = __builtin_ldexp(1.0, -ex - extra);
      scale2[l] = __builtin_ldexp(1.0, extra);
      unscale[j][l] = __builtin_ldexp(1.0, ex);
      st[l] = finite[l] ? lane_ok : lane_non_finite;
    }
    const V sv = *reinterpret_cast<const V*>(scale), sv2 = *reinterpret_cast<const V*>(scale2);
    // Columns n + 1 lane entries apart: at n = 64, 128, 256 columns n·kLanes·8 bytes apart would
    // all map to the same L1 sets (and alias the work vectors modulo 4 KiB).
    for (int c = 0; c < n; ++c)
      for (int r = 0; r < n; ++r) {
        const size_t i = r + static_cast<size_t>(c) * n;
        Ap[r + static_cast<size_t>(c) * (n + 1)] = lane_select(finite, A[i] * sv * sv2, splat(0.0));
      }
    bidiagonalize(n, n + 1, Ap, d, e, v, w, scratch);
#ifdef ESS_LANE_DUMP
    ESS_LANE_DUMP(n, d, e);
#endif
    for (int k = 0; k < n; ++k) {
      saved[k] = d[k];
      saved[n + k] = e[k];
      q[k] = d[k] * d[k];
      qe[k] = k + 1 < n ? e[k] * e[k] : splat(0.0);
    }
    dq[j].init(n, q, qe, scratch);
    sv_d[j] = d;
    sv_saved[j] = saved;
  }
  dqds_slices(dq, slices);
  for (int j = 0; j < slices; ++j) {
    const int b = j / per_batch, h = (j % per_batch) * W;
    unsigned char* st = status + b * kLanes + h;
    for (int l = 0; l < W; ++l) {
      double* s = sigma + (static_cast<size_t>(b) * kLanes + h + l) * n;
      if (st[l] == lane_non_finite) {
        for (int k = 0; k < n; ++k) s[k] = __builtin_nan("");
        continue;
      }
      if (dq[j].fallback[l]) {
        double* dd = dq[j].qn.p;  // scalar scratch: d, e in qn/en, 4n work in cs/cs2
        double* ee = dq[j].en.p;
        double* ww = dq[j].cs.p;
        for (int k = 0; k < n; ++k) {
          dd[k] = sv_saved[j].lane(k, l);
          ee[k] = sv_saved[j].lane(n + k, l);
        }
        int info = 0;
        dlasq1_(&n, dd, ee, ww, &info);
        st[l] = info == 0 ? lane_fallback : lane_failed;
        for (int k = 0; k < n; ++k) s[k] = dd[k] * unscale[j][l];
        continue;
      }
      for (int k = 0; k < n; ++k) {
        const double lam = dq[j].q.lane(k, l);
        s[k] = (lam > 0 ? __builtin_sqrt(lam) : 0.0) * unscale[j][l];
      }
      for (int i = 1; i < n; ++i) {  // insertion sort, descending (nearly sorted already)
        const double x = s[i];
        int jj = i - 1;
        while (jj >= 0 && s[jj] < x) {
          s[jj + 1] = s[jj];
          --jj;
        }
        s[jj + 1] = x;
      }
    }
  }
  (void)sv_d;
}

// `batches` (1 or 2) consecutive batches of kLanes matrices.
void singular_values(int n, double* A, double* sigma, double* work, unsigned char* status, int batches) {
  singular_values_slices(n, A, sigma, work, status, batches * (kLanes / W));
}

}  // namespace

extern const Kernels kKernels;
const Kernels kKernels = {ESS_LANE_ISA_NAME, givens_append,   scale_columns,
                          upper_product,     general_product, singular_values};
// NOLINTEND
