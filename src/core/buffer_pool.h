// core/buffer_pool.h — recycles tensor buffers so the steady-state predict loop does not allocate.
// The CPU executor owns one pool; every intermediate value it produces is carved from it, and a
// buffer goes back to the pool when the last Tensor sharing it dies (a custom deleter), so reuse
// follows the values' liveness exactly, including aliases (Reshape shares its input's buffer).
// A request takes the smallest free buffer that is large enough and not more than twice the
// size; otherwise a new 64-byte-aligned buffer is allocated. Thread-safe (one mutex: a few
// hundred requests per prediction). After the first prediction of a static-shape model every
// request is served from the pool (allocations() stops growing: tested).
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

namespace opennpu {

class BufferPool : public std::enable_shared_from_this<BufferPool> {
 public:
  static std::shared_ptr<BufferPool> create() { return std::shared_ptr<BufferPool>(new BufferPool()); }
  ~BufferPool();
  // A buffer of at least `bytes` bytes (contents undefined). Released to the pool when the last
  // shared_ptr copy is destroyed, even after the pool itself is gone (then it is freed).
  std::shared_ptr<std::byte[]> get(size_t bytes);
  // Frees every idle buffer.
  void trim();
  uint64_t allocations() const;   // buffers ever allocated by the pool
  uint64_t idle_bytes() const;     // bytes held in free lists

 private:
  BufferPool() = default;
  void put(std::byte* p, size_t cap);
  mutable std::mutex mu_;
  // capacity -> idle buffers of that capacity (the lists keep their storage, so recycling in the
  // steady state allocates nothing here)
  std::map<size_t, std::vector<std::byte*>> free_;
  uint64_t allocations_ = 0;
  uint64_t idle_bytes_ = 0;
};

}  // namespace opennpu
