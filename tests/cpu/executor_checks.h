// Checks on an Executor shared by the CPU fast-path tests: which implementation ran, and the
// outputs of predictions run concurrently on one executor.
#pragma once

#include <map>
#include <string>
#include <thread>
#include <vector>

#include "cpu/executor.h"

namespace opennpu::test_graph {

// How many nodes the executor runs with implementation `impl`.
inline int count_impl(const cpu::Executor& ex, const std::string& impl) {
  int n = 0;
  for (const auto& i : ex.implementations()) n += i.impl == impl;
  return n;
}

// Output `name` of `n` predictions run at the same time on `ex` (one thread each).
inline std::vector<Tensor> concurrent_outputs(cpu::Executor& ex, const std::map<std::string, Tensor>& feeds,
                                              const std::string& name, int n) {
  std::vector<Tensor> got(static_cast<size_t>(n));
  std::vector<std::thread> ts;
  for (int t = 0; t < n; ++t) ts.emplace_back([&, t] { got[static_cast<size_t>(t)] = ex.run(feeds).at(name); });
  for (auto& t : ts) t.join();
  return got;
}

}  // namespace opennpu::test_graph
