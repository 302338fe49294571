// Shares of a layer (libess/compute.h LayerShare, libess/pipeline.h LayerPartition): P cooperating
// "processes" — threads here, MPI ranks in tools/ess/mpi.cpp — each measuring a contiguous range
// of a layer's (batch, channel) items, exchanging the layer-wide σ_1 and gathering into process 0,
// give exactly the whole layer's result, in every tolerance mode, with kept σ and students; and
// without the σ_1 exchange tolerance mode `layer` would differ (the exchange is needed).
#include <doctest/doctest.h>

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "libess/pipeline.h"
#include "test_helpers.h"

using namespace ess;

namespace {

// A reusable barrier for P threads (C++17 has none).
class Barrier {
 public:
  explicit Barrier(int n) : n_(n) {}
  void wait() {
    std::unique_lock<std::mutex> lock(m_);
    const long gen = generation_;
    if (++count_ == n_) {
      count_ = 0;
      ++generation_;
      cv_.notify_all();
    } else {
      cv_.wait(lock, [&] { return gen != generation_; });
    }
  }

 private:
  std::mutex m_;
  std::condition_variable cv_;
  int n_, count_ = 0;
  long generation_ = 0;
};

struct Shared {
  explicit Shared(int P) : P(P), barrier(P), maxima(P), results(P) {}
  int P;
  Barrier barrier;
  std::vector<std::vector<double>> maxima;
  std::vector<LayerResult*> results;
  bool exchange_max = true;
};

std::pair<long, long> range(long items, int r, int P) { return {items * r / P, items * (r + 1) / P}; }

template <class T>
void copy_slice(std::vector<T>& to, const std::vector<T>& from, long items, long per_item, long repeats, long begin,
                long end) {
  for (long p = 0; p < repeats; ++p)
    std::copy(from.begin() + (p * items + begin) * per_item, from.begin() + (p * items + end) * per_item,
              to.begin() + (p * items + begin) * per_item);
}

class ThreadPartition final : public LayerPartition {
 public:
  ThreadPartition(Shared& s, int rank) : s_(s), rank_(rank) {}
  LayerShare share(const std::string&, long items) const override {
    LayerShare share;
    std::tie(share.begin, share.end) = range(items, rank_, s_.P);
    share.reduce_max = [this](std::vector<double>& v) {
      if (!s_.exchange_max) return;
      s_.maxima[rank_] = v;
      s_.barrier.wait();
      for (const auto& m : s_.maxima)
        for (size_t b = 0; b < v.size(); ++b) v[b] = std::max(v[b], m[b]);
      s_.barrier.wait();
    };
    return share;
  }
  bool gather(LayerResult& R) const override {
    s_.results[rank_] = &R;
    s_.barrier.wait();
    if (rank_ == 0) {
      const long items = static_cast<long>(R.batch) * R.channels, I = R.num_indices();
      const long P = static_cast<long>(R.students.patterns.size());
      for (int r = 1; r < s_.P; ++r) {
        const LayerResult& o = *s_.results[r];
        const auto [b, e] = range(items, r, s_.P);
        copy_slice(R.tolerance_ess, o.tolerance_ess, items, I, 1, b, e);
        copy_slice(R.entropy_ess, o.entropy_ess, items, I, 1, b, e);
        copy_slice(R.frobenius, o.frobenius, items, I, 1, b, e);
        copy_slice(R.error_bound, o.error_bound, items, I, 1, b, e);
        copy_slice(R.status, o.status, items, I, 1, b, e);
        copy_slice(R.sigma, o.sigma, items, I * R.sigma_k, 1, b, e);
        copy_slice(R.sigma_tail, o.sigma_tail, items, I, 1, b, e);
        copy_slice(R.students.masked_error, o.students.masked_error, items, I, P, b, e);
        copy_slice(R.students.renormalized_error, o.students.renormalized_error, items, I, P, b, e);
        copy_slice(R.students.operator_masked_error, o.students.operator_masked_error, items, 1, P, b, e);
        copy_slice(R.students.operator_renormalized_error, o.students.operator_renormalized_error, items, 1, P, b, e);
        copy_slice(R.students.tolerance_ess, o.students.tolerance_ess, items, I, P, b, e);
        copy_slice(R.students.entropy_ess, o.students.entropy_ess, items, I, P, b, e);
      }
    }
    s_.barrier.wait();  // the others' results stay alive until rank 0 has copied them
    return rank_ == 0;
  }

 private:
  Shared& s_;
  int rank_;
};

// Process 0's result of measuring `layer` in P shares (each share with `threads` threads).
LayerResult measure_in_shares(const OperatorLayer& layer, EssOptions o, int P, bool exchange_max = true) {
  Shared shared(P);
  shared.exchange_max = exchange_max;
  std::vector<LayerResult> out(P);
  std::vector<std::thread> ranks;
  for (int r = 0; r < P; ++r)
    ranks.emplace_back([&, r] {
      const ThreadPartition partition(shared, r);
      Pipeline pipeline(o);
      pipeline.set_partition(&partition);
      out[r] = pipeline.measure(layer);
    });
  for (auto& t : ranks) t.join();
  return std::move(out[0]);
}

bool same_values(const std::vector<double>& a, const std::vector<double>& b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](double x, double y) {
           return x == y || (std::isnan(x) && std::isnan(y));
         });
}

void check_equal(const LayerResult& a, const LayerResult& b) {
  CHECK(a.engine == b.engine);
  CHECK(a.tolerance_ess == b.tolerance_ess);
  CHECK(same_values(a.entropy_ess, b.entropy_ess));
  CHECK(same_values(a.frobenius, b.frobenius));
  CHECK(same_values(a.error_bound, b.error_bound));
  CHECK(a.status == b.status);
  CHECK(a.sigma == b.sigma);
  CHECK(same_values(a.sigma_tail, b.sigma_tail));
  CHECK(same_values(a.layer_sigma_max, b.layer_sigma_max));
  CHECK(same_values(a.students.masked_error, b.students.masked_error));
  CHECK(same_values(a.students.renormalized_error, b.students.renormalized_error));
  CHECK(same_values(a.students.operator_masked_error, b.students.operator_masked_error));
  CHECK(a.students.tolerance_ess == b.students.tolerance_ess);
  CHECK(same_values(a.students.entropy_ess, b.students.entropy_ess));
}

}  // namespace

TEST_CASE("layer shares: P processes measuring shares and gathering equal one process, bit for bit") {
  std::mt19937 rng(11);
  const int B = 2, C = 5, L = 12;
  std::vector<Matrix> Ts;
  for (int m = 0; m < B * C; ++m) {
    // Channels of very different scales, so the layer-wide σ_1 is not every share's own: in 3
    // shares ([0, 3), [3, 6), [6, 10)) batch 0's largest (item 1) is in the first only.
    Matrix T = ess::test::random_matrix(rng, L, L, m == 1 ? 50.0 : 1.0 + m);
    Ts.push_back(T.triangularView<Eigen::Lower>());
  }
  const OperatorLayer layer{"mixer", 0, std::make_unique<ess::test::ExplicitOperator>(B, C, std::move(Ts))};
  for (const TolMode mode : {TolMode::absolute, TolMode::block, TolMode::layer}) {
    for (const EngineKind engine : {EngineKind::dense, EngineKind::sweep, EngineKind::lanczos}) {
      EssOptions o;
      o.tol = 0.05;
      o.tol_mode = mode;
      o.engine = engine;
      o.keep_sigma = 3;
      o.threads = 2;
      o.students = parse_student_options("window=2,4;sinks=1;topk=3;ess=all;families=all");
      const LayerResult whole = Pipeline(o).measure(layer);
      for (const int P : {2, 3, 12}) {  // 12 > B·C: some shares are empty
        CAPTURE(static_cast<int>(mode));
        CAPTURE(static_cast<int>(engine));
        CAPTURE(P);
        check_equal(measure_in_shares(layer, o, P), whole);
      }
      if (mode == TolMode::layer) {
        // Without the exchange each share would count against its own largest σ_1.
        const LayerResult alone = measure_in_shares(layer, o, 3, false);
        CHECK(alone.tolerance_ess != whole.tolerance_ess);
      }
    }
  }
}
