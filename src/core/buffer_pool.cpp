#include "core/buffer_pool.h"

#include <new>

namespace opennpu {

namespace {
std::byte* raw_alloc(size_t cap) { return static_cast<std::byte*>(::operator new[](cap, std::align_val_t{64})); }
void raw_free(std::byte* p) { ::operator delete[](p, std::align_val_t{64}); }
}  // namespace

BufferPool::~BufferPool() {
  for (auto& [cap, list] : free_)
    for (std::byte* p : list) raw_free(p);
}

std::shared_ptr<std::byte[]> BufferPool::get(size_t bytes) {
  size_t want = (bytes + 63) & ~size_t{63};
  if (want == 0) want = 64;
  std::byte* p = nullptr;
  size_t cap = want;
  {
    std::lock_guard<std::mutex> lk(mu_);
    for (auto it = free_.lower_bound(want); it != free_.end() && it->first <= 2 * want; ++it) {
      if (it->second.empty()) continue;
      cap = it->first;
      p = it->second.back();
      it->second.pop_back();
      idle_bytes_ -= cap;
      break;
    }
    if (!p) ++allocations_;
  }
  if (!p) p = raw_alloc(cap);
  std::weak_ptr<BufferPool> home = weak_from_this();
  return std::shared_ptr<std::byte[]>(p, [home, cap](std::byte* q) {
    if (auto pool = home.lock()) pool->put(q, cap);
    else raw_free(q);
  });
}

void BufferPool::put(std::byte* p, size_t cap) {
  std::lock_guard<std::mutex> lk(mu_);
  free_[cap].push_back(p);
  idle_bytes_ += cap;
}

void BufferPool::trim() {
  std::lock_guard<std::mutex> lk(mu_);
  for (auto& [cap, list] : free_)
    for (std::byte* p : list) raw_free(p);
  free_.clear();
  idle_bytes_ = 0;
}

uint64_t BufferPool::allocations() const { std::lock_guard<std::mutex> lk(mu_); return allocations_; }
uint64_t BufferPool::idle_bytes() const { std::lock_guard<std::mutex> lk(mu_); return idle_bytes_; }

}  // namespace opennpu
