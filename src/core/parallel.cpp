#include "core/parallel.h"

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace opennpu {

namespace {
std::atomic<int> g_threads{1};
thread_local bool t_in_region = false;

// Spins (pause instructions) until pred() holds or `budget` has passed; returns pred(). Kernels
// run parallel regions back to back (one per layer), so a worker that just finished usually gets
// the next task within microseconds: spinning briefly avoids a futex sleep and wake-up (tens of
// microseconds each, and the core may be given away meanwhile) on every layer.
template <class P>
bool spin_until(P pred, std::chrono::microseconds budget) {
  const auto end = std::chrono::steady_clock::now() + budget;
  for (int i = 0;; ++i) {
    if (pred()) return true;
    _mm_pause();
    if ((i & 63) == 63 && std::chrono::steady_clock::now() > end) return pred();
  }
}
constexpr std::chrono::microseconds kSpin{200};

// A fixed pool of workers; one parallel_for at a time (serialised by a mutex). Workers spin for
// kSpin after each task before sleeping on the condition variable; the caller spins likewise
// while waiting for the workers. Only threads of the current region spin, so `--threads N` still
// means at most N threads busy.
class Pool {
 public:
  static Pool& get() { static Pool p; return p; }
  void run(int nthreads, const std::function<void(int)>& task) {
    std::lock_guard<std::mutex> one(run_mu_);
    ensure(nthreads - 1);
    {
      std::lock_guard<std::mutex> lk(mu_);
      task_ = &task;
      active_ = nthreads - 1;
      pending_ = nthreads - 1;
      ++gen_;
    }
    cv_.notify_all();
    t_in_region = true;
    task(0);
    t_in_region = false;
    spin_until([&] { return pending_.load(std::memory_order_acquire) == 0; }, kSpin);
    std::unique_lock<std::mutex> lk(mu_);
    done_cv_.wait(lk, [&] { return pending_ == 0; });
    task_ = nullptr;
  }
  ~Pool() {
    { std::lock_guard<std::mutex> lk(mu_); stop_ = true; ++gen_; }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
  }

 private:
  void ensure(int n) {
    while (static_cast<int>(workers_.size()) < n) {
      int id = static_cast<int>(workers_.size()) + 1;
      workers_.emplace_back([this, id] { loop(id); });
    }
  }
  void loop(int id) {
    uint64_t seen = 0;
    for (;;) {
      const std::function<void(int)>* task;
      spin_until([&] { return gen_.load(std::memory_order_acquire) != seen; }, kSpin);
      {
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, [&] { return stop_ || gen_ != seen; });
        if (stop_) return;
        seen = gen_;
        if (id > active_) continue;
        task = task_;
      }
      t_in_region = true;
      (*task)(id);
      t_in_region = false;
      std::lock_guard<std::mutex> lk(mu_);
      if (--pending_ == 0) done_cv_.notify_all();
    }
  }
  std::mutex run_mu_, mu_;
  std::condition_variable cv_, done_cv_;
  std::vector<std::thread> workers_;
  const std::function<void(int)>* task_ = nullptr;
  int active_ = 0;
  std::atomic<int> pending_{0};       // written under mu_, read without it while spinning
  std::atomic<uint64_t> gen_{0};      // likewise
  bool stop_ = false;
};
}  // namespace

void set_num_threads(int n) {
  if (n <= 0) n = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  g_threads = n;
}
int num_threads() { return g_threads; }
bool in_parallel_region() { return t_in_region; }

void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t min_chunk) {
  if (n <= 0) return;
  int64_t nt = std::min<int64_t>(g_threads, (n + min_chunk - 1) / std::max<int64_t>(min_chunk, 1));
  if (nt <= 1 || t_in_region) { fn(0, n); return; }
  // An exception in any chunk (a kernel's check failing) is carried back to the caller.
  std::mutex err_mu;
  std::exception_ptr err;
  std::function<void(int)> task = [&](int id) {
    int64_t b = n * id / nt, e = n * (id + 1) / nt;
    try {
      if (b < e) fn(b, e);
    } catch (...) {
      std::lock_guard<std::mutex> lk(err_mu);
      if (!err) err = std::current_exception();
    }
  };
  Pool::get().run(static_cast<int>(nt), task);
  if (err) std::rethrow_exception(err);
}

}  // namespace opennpu
