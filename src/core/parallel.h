// core/parallel.h — the process thread setting and a minimal parallel_for.
// set_num_threads(N) is honoured exactly: parallel_for uses at most N threads (the caller plus
// N-1 pool workers). Work is split into contiguous chunks so results do not depend on timing;
// kernels must not depend on which thread runs a chunk (determinism across thread counts).
#pragma once
#include <cstdint>
#include <functional>

namespace opennpu {

void set_num_threads(int n);  // n <= 0: number of hardware threads
int num_threads();
bool in_parallel_region();
// Calls fn(begin, end) on disjoint chunks covering [0, n). Nested calls run serially.
void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t min_chunk = 1);

}  // namespace opennpu
