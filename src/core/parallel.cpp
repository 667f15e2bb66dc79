#include "core/parallel.h"

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <memory>
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

// One parallel_tasks region: indices claimed from `next`; workers join (state + 1) unless the
// caller has closed the region (kClosed), and the caller waits only for workers that joined.
// Shared with the workers (shared_ptr), so a worker waking after the caller returned reads a live
// region and finds it closed.
struct Region {
  static constexpr int kClosed = 1 << 30;
  const std::function<void(int64_t)>* fn = nullptr;
  int64_t n = 0;
  int max_workers = 0;
  std::atomic<int64_t> next{0};
  std::atomic<int> state{0};     // joined workers | kClosed
  std::atomic<int> finished{0};  // joined workers done
  std::mutex err_mu;
  std::exception_ptr err;
  void work() {
    for (int64_t i; (i = next.fetch_add(1, std::memory_order_relaxed)) < n;) {
      try {
        (*fn)(i);
      } catch (...) {
        std::lock_guard<std::mutex> lk(err_mu);
        if (!err) err = std::current_exception();
      }
    }
  }
  bool join() {
    int s = state.load(std::memory_order_acquire);
    while (!(s & kClosed))
      if (state.compare_exchange_weak(s, s + 1, std::memory_order_acq_rel)) return true;
    return false;
  }
};

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
      region_ = nullptr;
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
    active_ = 0;
  }
  // parallel_tasks: the caller works, then closes the region and waits for the joined workers.
  void run_tasks(int nthreads, int64_t n, const std::function<void(int64_t)>& fn) {
    std::lock_guard<std::mutex> one(run_mu_);
    ensure(nthreads - 1);
    auto r = std::make_shared<Region>();
    r->fn = &fn;
    r->n = n;
    r->max_workers = nthreads - 1;
    {
      std::lock_guard<std::mutex> lk(mu_);
      region_ = r;
      ++gen_;
    }
    cv_.notify_all();
    t_in_region = true;
    r->work();
    t_in_region = false;
    const int joined = r->state.fetch_or(Region::kClosed, std::memory_order_acq_rel) & ~Region::kClosed;
    spin_until([&] { return r->finished.load(std::memory_order_acquire) == joined; }, kSpin);
    {
      std::unique_lock<std::mutex> lk(mu_);
      done_cv_.wait(lk, [&] { return r->finished.load(std::memory_order_acquire) == joined; });
      if (region_ == r) region_ = nullptr;
    }
    if (r->err) std::rethrow_exception(r->err);
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
      std::shared_ptr<Region> region;
      const uint64_t parked = park_.load(std::memory_order_relaxed);
      spin_until([&] {
        return gen_.load(std::memory_order_acquire) != seen || park_.load(std::memory_order_relaxed) != parked;
      }, kSpin);
      {
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, [&] { return stop_ || gen_ != seen; });
        if (stop_) return;
        seen = gen_;
        region = region_;
        if (region) {
          if (id > region->max_workers || !region->join()) continue;
        } else {
          // No task: a late wake-up for a parallel_tasks region that has closed.
          if (id > active_ || !task_) continue;
          task = task_;
        }
      }
      if (region) {
        t_in_region = true;
        region->work();
        t_in_region = false;
        std::lock_guard<std::mutex> lk(mu_);
        region->finished.fetch_add(1, std::memory_order_acq_rel);
        done_cv_.notify_all();
        continue;
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
  std::shared_ptr<Region> region_;  // the current parallel_tasks region (null: a parallel_for one)
  int active_ = 0;
  std::atomic<int> pending_{0};       // written under mu_, read without it while spinning
  std::atomic<uint64_t> gen_{0};      // likewise
  bool stop_ = false;

 public:
  std::atomic<uint64_t> park_{0};  // bumped by park_workers(): spinning workers go to sleep now
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

void park_workers() { Pool::get().park_.fetch_add(1, std::memory_order_relaxed); }

void parallel_tasks(int64_t n, const std::function<void(int64_t)>& fn) {
  if (n <= 0) return;
  const int64_t nt = std::min<int64_t>(g_threads, n);
  if (nt <= 1 || t_in_region) {
    for (int64_t i = 0; i < n; ++i) fn(i);
    return;
  }
  Pool::get().run_tasks(static_cast<int>(nt), n, fn);
}

}  // namespace opennpu
