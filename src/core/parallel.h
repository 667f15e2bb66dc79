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
// Calls fn(i) for every i in [0, n), handing the indices out one at a time to the caller and up to
// num_threads() - 1 pool workers (so at most num_threads() threads compute). A worker that has not
// started when the indices run out (descheduled on a loaded machine) is not waited for: the
// caller does its share instead of holding the region, as ONNX Runtime's pool revokes unstarted
// work. Which thread runs an index depends on timing, so fn(i)'s result must not depend on the
// thread. Nested calls and num_threads() == 1 run serially on the caller.
void parallel_tasks(int64_t n, const std::function<void(int64_t)>& fn);
// Pool workers spin for a while after a region (the next layer's region usually follows within
// microseconds) before sleeping. Code about to run threads of its own on the cores (the RNN team)
// calls this first: spinning workers go to sleep at once instead of competing with those threads.
void park_workers();

}  // namespace opennpu
