// Timing simulation: an event-driven run of the Program's tasks. See simulator.h.
#include <algorithm>
#include <array>
#include <cmath>
#include <list>
#include <queue>

#include "npu/sim/simulator.h"

namespace opennpu::npu {

TimingResult simulate_timing(const Program& p, const HardwareConfig& hw) {
  TimingResult r;
  const size_t T = p.tasks.size();
  const int cores = static_cast<int>(hw.cores);
  r.tasks.assign(T, {});
  r.layers.assign(p.layers.size(), {});
  for (auto& l : r.layers) { l.start = INT64_MAX; l.end = 0; }
  r.core_mac_busy.assign(cores, 0);
  r.core_vec_busy.assign(cores, 0);
  r.core_dma_busy.assign(cores, 0);

  // DRAM: bytes per NPU cycle for the whole SoC, and a fixed latency per transfer.
  const double bytes_per_cycle = hw.dram_bytes_per_second() / (hw.clock_ghz * 1e9);
  const int64_t latency = static_cast<int64_t>(std::ceil(hw.memory.dram_latency_ns * hw.clock_ghz));
  double dram_free = 0;

  // System-level cache: whole tensors, LRU, write-back. Activations written by one layer and read
  // by the next are served from it while they fit; a tensor read by several cores comes from
  // DRAM once. Weights are streamed (not allocated: at these sizes they would only evict
  // activations). Hits move at the cache's bandwidth and do not occupy DRAM.
  const int64_t slc_cap = hw.memory.system_cache_bytes;
  const double slc_bytes_per_cycle = hw.memory.system_cache_bytes_per_second() / (hw.clock_ghz * 1e9);
  std::list<int> lru;  // most recent first
  std::vector<std::list<int>::iterator> lru_pos(p.buffers.size(), lru.end());
  std::vector<int64_t> slc_size(p.buffers.size(), 0);
  int64_t slc_used = 0;
  double slc_free = 0;
  int64_t writeback_bytes = 0;
  auto slc_touch = [&](int b, int64_t bytes) -> void {
    if (b < 0 || slc_cap <= 0 || bytes > slc_cap) return;
    if (lru_pos[b] != lru.end()) { lru.erase(lru_pos[b]); slc_used -= slc_size[b]; }
    while (slc_used + bytes > slc_cap && !lru.empty()) {
      int victim = lru.back();
      lru.pop_back();
      lru_pos[victim] = lru.end();
      slc_used -= slc_size[victim];
      writeback_bytes += slc_size[victim];  // dirty activations go back to DRAM
      dram_free += static_cast<double>(slc_size[victim]) / bytes_per_cycle;
      slc_size[victim] = 0;
    }
    lru.push_front(b);
    lru_pos[b] = lru.begin();
    slc_size[b] = bytes;
    slc_used += bytes;
  };
  // A tensor nobody will read again is dropped from the cache without a write-back (the compiler
  // knows liveness); the model's outputs are read by the host, so they stay live.
  std::vector<int64_t> reads_left(p.buffers.size(), 0);
  for (const Task& t : p.tasks) if (t.engine == Engine::DmaIn && t.buf >= 0) reads_left[t.buf]++;
  auto slc_drop_if_dead = [&](int b) {
    if (b < 0 || reads_left[b] > 0 || lru_pos[b] == lru.end() || p.buffers[b].graph_output) return;
    lru.erase(lru_pos[b]);
    lru_pos[b] = lru.end();
    slc_used -= slc_size[b];
    slc_size[b] = 0;
  };
  std::vector<int> pending(T, 0);
  std::vector<std::vector<uint32_t>> users(T);
  for (size_t i = 0; i < T; ++i) {
    pending[i] = static_cast<int>(p.tasks[i].deps.size());
    for (uint32_t d : p.tasks[i].deps) users[d].push_back(static_cast<uint32_t>(i));
  }
  std::vector<int64_t> ready(T, 0);
  std::vector<uint32_t> last_dep(T, UINT32_MAX);  // the dependency that finished last (stall cause)
  // engine_free[core][engine]
  std::vector<std::array<int64_t, 4>> engine_free(static_cast<size_t>(cores), std::array<int64_t, 4>{0, 0, 0, 0});

  using Item = std::pair<int64_t, uint32_t>;  // (time it can be considered, task)
  std::priority_queue<Item, std::vector<Item>, std::greater<Item>> q;
  for (size_t i = 0; i < T; ++i) if (pending[i] == 0) q.push({0, static_cast<uint32_t>(i)});

  while (!q.empty()) {
    auto [t, id] = q.top();
    q.pop();
    const Task& task = p.tasks[id];
    auto& efree = engine_free[task.core][static_cast<int>(task.engine)];
    if (efree > t) { q.push({efree, id}); continue; }  // engine busy: retry when it frees
    int64_t start = t, end;
    bool dram = true;
    int64_t busy_until = 0;
    if (task.engine == Engine::DmaIn || task.engine == Engine::DmaOut) {
      const int b = task.buf;
      const bool activation = b >= 0 && !p.buffers[b].constant;
      const int64_t whole = b >= 0 ? p.buffers[b].bytes : 0;
      if (task.engine == Engine::DmaIn && activation && lru_pos[b] != lru.end()) dram = false;  // hit
      if (task.engine == Engine::DmaOut && activation && slc_cap > 0 && whole <= slc_cap) dram = false;  // write-back
      double& channel = dram ? dram_free : slc_free;
      const double rate = dram ? bytes_per_cycle : slc_bytes_per_cycle;
      double s = std::max(static_cast<double>(start), channel);
      double dur = static_cast<double>(task.bytes) / rate;
      channel = s + dur;
      start = static_cast<int64_t>(std::floor(s));
      // The DMA engine is busy while bytes move; the DRAM latency delays only the consumer
      // (requests are pipelined).
      busy_until = static_cast<int64_t>(std::ceil(s + dur));
      end = busy_until + (task.engine == Engine::DmaIn && dram ? latency : 0);
      r.core_dma_busy[task.core] += busy_until - start;
      if (activation) slc_touch(b, whole);
      if (task.engine == Engine::DmaIn && b >= 0) { --reads_left[b]; slc_drop_if_dead(b); }
    } else {
      end = start + task.cycles;
      // Idle time of a compute engine right before this task, caused by waiting on its inputs.
      int64_t idle = start - efree;
      if (idle > 0 && last_dep[id] != UINT32_MAX) {
        Engine e = p.tasks[last_dep[id]].engine;
        if (e == Engine::DmaIn || e == Engine::DmaOut) { r.stall_memory += idle; r.layers[task.layer].stall_memory += idle; }
        else r.stall_dependency += idle;
      }
      if (task.engine == Engine::Mac) { r.core_mac_busy[task.core] += task.cycles; r.layers[task.layer].mac_busy += task.cycles; }
      else { r.core_vec_busy[task.core] += task.cycles; r.layers[task.layer].vec_busy += task.cycles; }
      busy_until = end;
    }
    efree = busy_until;
    r.tasks[id] = {start, end};
    LayerStats& ls = r.layers[task.layer];
    ls.start = std::min(ls.start, start);
    ls.end = std::max(ls.end, end);
    ls.macs += task.macs;
    ls.sram_bytes += task.sram_bytes;
    if (task.engine == Engine::DmaIn) { (dram ? ls.dram_read : ls.cache_read) += task.bytes; ls.dma_busy += end - start; }
    if (task.engine == Engine::DmaOut) { (dram ? ls.dram_write : ls.cache_write) += task.bytes; ls.dma_busy += end - start; }
    r.cycles = std::max(r.cycles, end);
    for (uint32_t u : users[id]) {
      if (end >= ready[u]) { ready[u] = end; last_dep[u] = id; }
      if (--pending[u] == 0) q.push({ready[u], u});
    }
  }
  for (auto& l : r.layers) if (l.start == INT64_MAX) l.start = l.end = 0;
  r.dram_writeback = writeback_bytes;
  // Time attributed to each layer: how far it pushes the end of the run past every earlier layer
  // (prefetches make first-start-to-last-end spans overlap; these increments add up to the total).
  int64_t frontier = 0;
  for (auto& l : r.layers) {
    l.attributed = std::max<int64_t>(0, l.end - frontier);
    frontier = std::max(frontier, l.end);
  }

  // Totals and energy.
  for (size_t li = 0; li < p.layers.size(); ++li) {
    LayerStats& ls = r.layers[li];
    // INT8 MAC layers (GEMMs and depthwise convolutions on INT8 MACs) at the INT8 MAC energy.
    const Layer& L = p.layers[li];
    const bool int8_macs = L.q.on && L.q.int8 && (L.kind == LayerKind::Gemm || L.op == "QLinearConv");
    const double pj_mac = int8_macs && hw.energy.pj_per_mac_int8 > 0 ? hw.energy.pj_per_mac_int8 : hw.energy.pj_per_mac_fp16;
    r.macs += ls.macs;
    r.dram_read += ls.dram_read;
    r.dram_write += ls.dram_write;
    // Vector-unit work without MACs (elementwise, pooling) is charged per element op at the MAC
    // energy (assumption: a planar-engine op costs about what one FP16 MAC costs).
    double ops = static_cast<double>(ls.macs);
    if (!ls.macs && p.layers[li].kind == LayerKind::Vector) ops = static_cast<double>(p.layers[li].flops);
    ls.energy_pj = ops * pj_mac + ls.sram_bytes * hw.energy.pj_per_sram_byte +
                   (ls.dram_read + ls.dram_write) * hw.energy.pj_per_dram_byte;
    r.energy.mac_pj += ops * pj_mac;
    r.energy.sram_pj += ls.sram_bytes * hw.energy.pj_per_sram_byte;
    r.energy.dram_pj += (ls.dram_read + ls.dram_write) * hw.energy.pj_per_dram_byte;
    r.cache_bytes += ls.cache_read + ls.cache_write;
  }
  // Cache traffic is charged at the SRAM energy (assumption: on-die SRAM arrays); evictions at DRAM's.
  r.energy.sram_pj += static_cast<double>(r.cache_bytes) * hw.energy.pj_per_sram_byte;
  r.energy.dram_pj += static_cast<double>(writeback_bytes) * hw.energy.pj_per_dram_byte;
  r.dram_write += writeback_bytes;
  r.npu_seconds = static_cast<double>(r.cycles) / (hw.clock_ghz * 1e9);
  r.energy.static_pj = hw.energy.static_power_mw * 1e-3 * r.npu_seconds * 1e12;
  int npu_segments = 0;
  int64_t boundary = 0;
  for (const auto& s : p.segments) {
    npu_segments += s.npu && !s.layers.empty();
    if (s.npu) boundary += s.boundary_bytes;
  }
  // One dispatch per prediction, and another each time control comes back from the CPU.
  r.dispatch_seconds = npu_segments ? hw.dispatch_overhead_us * 1e-6 * npu_segments : 0;
  // Each CPU<->NPU crossing writes the tensor to DRAM and reads it back on the other side.
  r.boundary_seconds = 2.0 * static_cast<double>(boundary) / hw.dram_bytes_per_second();
  const double peak_per_cycle = static_cast<double>(hw.mac.macs_per_cycle_fp16) * cores;
  r.mac_utilization = r.cycles ? static_cast<double>(r.macs) / (static_cast<double>(r.cycles) * peak_per_cycle) : 0;
  return r;
}

}  // namespace opennpu::npu
