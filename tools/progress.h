// tools/progress.h — a one-line progress indicator for long CLI work (load, compile, predict,
// simulate). Shown on stderr only when it is a terminal, only once the work has taken more than
// a second, and never with --json; it erases itself when done.
#pragma once
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>

class Progress {
 public:
  explicit Progress(bool enabled) : enabled_(enabled && isatty(STDERR_FILENO)) {
    if (!enabled_) return;
    t0_ = std::chrono::steady_clock::now();
    th_ = std::thread([this] { loop(); });
  }
  ~Progress() { done(); }
  void stage(const std::string& s) {
    std::lock_guard<std::mutex> lk(mu_);
    stage_ = s;
  }
  void done() {
    if (!enabled_ || !th_.joinable()) return;
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    th_.join();
    if (shown_) std::fprintf(stderr, "\r\033[K");
  }

 private:
  void loop() {
    static const char* spin = "|/-\\";
    int i = 0;
    std::unique_lock<std::mutex> lk(mu_);
    while (!cv_.wait_for(lk, std::chrono::milliseconds(100), [&] { return stop_; })) {
      double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
      if (el < 1.0) continue;
      shown_ = true;
      std::fprintf(stderr, "\r\033[K%c %s  %.1f s", spin[i++ % 4], stage_.c_str(), el);
      std::fflush(stderr);
    }
  }
  bool enabled_;
  bool stop_ = false, shown_ = false;
  std::string stage_ = "loading";
  std::chrono::steady_clock::time_point t0_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::thread th_;
};
