#include "libess/parallel.h"

#include <algorithm>
#include <atomic>
#include <exception>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

namespace ess {

namespace {
std::atomic<int> g_threads{1};
thread_local bool t_inside = false;  // this thread runs a piece of a parallel_for
}  // namespace

void set_gemm_threads(int n) { g_threads = std::max(1, n); }
int gemm_threads() { return g_threads; }

void parallel_for(int count, const std::function<void(int)>& fn) {
  if (count <= 0) return;
  const int threads = t_inside ? 1 : std::min(gemm_threads(), count);
  if (threads <= 1) {
    for (int i = 0; i < count; ++i) fn(i);
    return;
  }
  std::atomic<int> next{0};
  std::exception_ptr failure;
  std::mutex failure_mutex;
  auto work = [&]() {
    const bool was = t_inside;
    t_inside = true;
    for (int i = next++; i < count; i = next++) {
      try {
        fn(i);
      } catch (...) {
        std::lock_guard<std::mutex> lock(failure_mutex);
        if (!failure) failure = std::current_exception();
      }
    }
    t_inside = was;
  };
  std::vector<std::thread> pool;
  pool.reserve(static_cast<size_t>(threads - 1));
  try {
    for (int t = 1; t < threads; ++t) pool.emplace_back(work);
  } catch (const std::system_error&) {
    // No further thread: the pieces left run on the threads already started (the same bits).
  }
  work();
  for (auto& t : pool) t.join();
  if (failure) std::rethrow_exception(failure);
}

}  // namespace ess
