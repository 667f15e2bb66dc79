// ONNX backend test-suite runner: for every test directory (model.onnx + test_data_set_*/
// input_*.pb, output_*.pb) it imports the model, runs it on the CPU backend and compares with the
// expected outputs at the ONNX backend defaults (rtol 1e-3, atol 1e-7). Each test runs in a forked
// child with a time limit, so a crash or hang is a failure, not the end of the run.
//
//   conformance --data /usr/share/libonnx-testdata/data [--suite node,simple,...] [--filter STR]
//               [--expect tests/conformance/passing.txt] [--write-passing FILE] [--md docs/conformance.md]
// Exit status: 0 when every test in --expect passed (and the --min-node-pass fraction holds).
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <set>

#include <fmt/format.h>

#include "core/half.h"
#include "cpu/executor.h"
#include "onnx/importer.h"

namespace fs = std::filesystem;
using namespace opennpu;

namespace {

const std::set<std::string> kTrainingOps = {"Adagrad", "Adam", "Momentum", "Gradient"};

struct Result {
  std::string status;  // pass | fail | unsupported | skip
  std::string reason;
};

bool close_enough(double e, double a, double rtol, double atol) {
  if (std::isnan(e)) return std::isnan(a);
  if (std::isinf(e)) return a == e;
  return std::fabs(a - e) <= atol + rtol * std::fabs(e);
}

std::string compare(const Tensor& exp, const Tensor& got, const std::string& name) {
  if (exp.is_none() || got.is_none())
    return exp.is_none() == got.is_none() ? "" : fmt::format("output '{}': optional presence differs", name);
  if (exp.is_sequence() || got.is_sequence()) {
    if (!exp.is_sequence() || !got.is_sequence()) return fmt::format("output '{}': sequence expected", name);
    if (exp.sequence().size() != got.sequence().size())
      return fmt::format("output '{}': sequence of {} items, expected {}", name, got.sequence().size(), exp.sequence().size());
    for (size_t k = 0; k < exp.sequence().size(); ++k) {
      std::string d = compare(exp.sequence()[k], got.sequence()[k], fmt::format("{}[{}]", name, k));
      if (!d.empty()) return d;
    }
    return "";
  }
  if (exp.dtype() != got.dtype())
    return fmt::format("output '{}': dtype {} expected {}", name, dtype_name(got.dtype()), dtype_name(exp.dtype()));
  if (exp.shape() != got.shape())
    return fmt::format("output '{}': shape {} expected {}", name, shape_str(got.shape()), shape_str(exp.shape()));
  if (exp.dtype() == DType::String) {
    for (int64_t i = 0; i < exp.numel(); ++i)
      if (exp.strings()[i] != got.strings()[i])
        return fmt::format("output '{}': string {} is \"{}\" expected \"{}\"", name, i, got.strings()[i], exp.strings()[i]);
    return "";
  }
  for (int64_t i = 0; i < exp.numel(); ++i) {
    if (dtype_is_float(exp.dtype())) {
      double e = exp.get_f64(i), a = got.get_f64(i);
      if (!close_enough(e, a, 1e-3, 1e-7))
        return fmt::format("output '{}': element {} is {} expected {}", name, i, a, e);
    } else if (exp.get_i64(i) != got.get_i64(i)) {
      return fmt::format("output '{}': element {} is {} expected {}", name, i, got.get_i64(i), exp.get_i64(i));
    }
  }
  return "";
}

std::set<std::string> ops_of(const ir::Graph& g) {
  std::set<std::string> s;
  for (const auto& n : g.nodes) {
    s.insert(n.op_type);
    for (const auto& [_, a] : n.attrs) {
      if (a.g) for (auto& o : ops_of(*a.g)) s.insert(o);
      for (auto& sg : a.graphs) for (auto& o : ops_of(*sg)) s.insert(o);
    }
  }
  return s;
}

// ONNX 1.12's test data stores bfloat16 tensors as uint16 (the generator's numpy has no bfloat16):
// reinterpret the bits when the model declares bfloat16.
Tensor fix_bf16(const Tensor& t, DType declared) {
  if (declared != DType::BFloat16 || t.dtype() != DType::UInt16) return t;
  Tensor r(DType::BFloat16, t.shape());
  std::memcpy(r.raw(), t.raw(), t.nbytes());
  return r;
}

Result run_test(const fs::path& dir) {
  ir::Model m;
  try {
    m = onnx_import::load_model((dir / "model.onnx").string());
  } catch (const Error& e) {
    return {"unsupported", e.what()};
  }
  for (const auto& op : ops_of(m.graph))
    if (kTrainingOps.count(op)) return {"skip", "training op " + op};
  auto missing = cpu::Executor::unsupported_nodes(m);
  if (!missing.empty()) return {"unsupported", missing.front()};
  cpu::Executor ex(m);
  std::vector<const ir::ValueInfo*> real_inputs;
  for (const auto& in : m.graph.inputs)
    if (!m.graph.is_initializer(in.name)) real_inputs.push_back(&in);
  std::vector<fs::path> sets;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_directory() && e.path().filename().string().rfind("test_data_set_", 0) == 0) sets.push_back(e.path());
  std::sort(sets.begin(), sets.end());
  if (sets.empty()) return {"fail", "no test_data_set_* directories"};
  for (const auto& set : sets) {
    std::map<std::string, Tensor> feeds;
    for (size_t i = 0;; ++i) {
      fs::path p = set / fmt::format("input_{}.pb", i);
      if (!fs::exists(p)) break;
      if (i >= real_inputs.size()) return {"fail", fmt::format("{} has more inputs than the model", set.filename().string())};
      Tensor t = onnx_import::load_value_pb(p.string(), real_inputs[i]->kind);
      feeds[real_inputs[i]->name] = fix_bf16(t, real_inputs[i]->dtype);
    }
    std::map<std::string, Tensor> out;
    try {
      out = ex.run(feeds);
    } catch (const Error& e) {
      return {"fail", e.what()};
    }
    for (size_t i = 0; i < m.graph.outputs.size(); ++i) {
      fs::path p = set / fmt::format("output_{}.pb", i);
      if (!fs::exists(p)) continue;
      Tensor exp = fix_bf16(onnx_import::load_value_pb(p.string(), m.graph.outputs[i].kind), m.graph.outputs[i].dtype);
      std::string d = compare(exp, out.at(m.graph.outputs[i].name), m.graph.outputs[i].name);
      if (!d.empty()) return {"fail", set.filename().string() + ": " + d};
    }
  }
  return {"pass", ""};
}

// Runs one test in a child process with a time limit.
Result run_isolated(const fs::path& dir, int timeout_s) {
  int fds[2];
  if (pipe(fds) != 0) return run_test(dir);
  pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    alarm(static_cast<unsigned>(timeout_s));
    Result r;
    try { r = run_test(dir); } catch (const std::exception& e) { r = {"fail", std::string("exception: ") + e.what()}; }
    std::string msg = r.status + "\n" + r.reason;
    if (msg.size() > 2000) msg.resize(2000);
    (void)!write(fds[1], msg.data(), msg.size());
    close(fds[1]);
    _exit(0);
  }
  close(fds[1]);
  std::string buf;
  char tmp[4096];
  ssize_t k;
  while ((k = read(fds[0], tmp, sizeof tmp)) > 0) buf.append(tmp, static_cast<size_t>(k));
  close(fds[0]);
  int st = 0;
  waitpid(pid, &st, 0);
  if (WIFSIGNALED(st)) {
    int sig = WTERMSIG(st);
    return {"fail", sig == SIGALRM ? fmt::format("timed out after {} s", timeout_s) : fmt::format("crashed with signal {}", sig)};
  }
  auto nl = buf.find('\n');
  if (nl == std::string::npos) return {"fail", "child produced no result"};
  return {buf.substr(0, nl), buf.substr(nl + 1)};
}

std::string first_line(std::string s) {
  auto p = s.find('\n');
  if (p != std::string::npos) s.resize(p);
  std::replace(s.begin(), s.end(), '|', '/');
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  std::string data = "/usr/share/libonnx-testdata/data", filter, expect, write_passing, md;
  std::vector<std::string> suites = {"node", "pytorch-converted", "pytorch-operator", "simple"};
  double min_node_pass = 0;
  int timeout_s = 60;
  bool verbose = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) { std::cerr << a << " needs a value\n"; std::exit(2); }
      return argv[++i];
    };
    if (a == "--data") data = next();
    else if (a == "--filter") filter = next();
    else if (a == "--expect") expect = next();
    else if (a == "--write-passing") write_passing = next();
    else if (a == "--md") md = next();
    else if (a == "--min-node-pass") min_node_pass = std::stod(next());
    else if (a == "--timeout") timeout_s = std::stoi(next());
    else if (a == "-v" || a == "--verbose") verbose = true;
    else if (a == "--suite") {
      suites.clear();
      std::string s = next();
      size_t p = 0;
      while (p <= s.size()) { auto q = s.find(',', p); if (q == std::string::npos) q = s.size(); suites.push_back(s.substr(p, q - p)); p = q + 1; }
    } else { std::cerr << "unknown option " << a << "\n"; return 2; }
  }
  if (!fs::is_directory(data)) {
    std::cerr << "conformance: test data not found at " << data << " (install libonnx-testdata)\n";
    return 2;
  }
  std::map<std::string, Result> results;  // "suite/test"
  std::map<std::string, std::map<std::string, int>> per_suite;
  for (const auto& suite : suites) {
    fs::path sdir = fs::path(data) / suite;
    if (!fs::is_directory(sdir)) { std::cerr << "missing suite " << sdir << "\n"; return 2; }
    std::vector<fs::path> tests;
    for (const auto& e : fs::directory_iterator(sdir))
      if (fs::exists(e.path() / "model.onnx")) tests.push_back(e.path());
    std::sort(tests.begin(), tests.end());
    for (const auto& t : tests) {
      std::string key = suite + "/" + t.filename().string();
      if (!filter.empty() && key.find(filter) == std::string::npos) continue;
      Result r = run_isolated(t, timeout_s);
      results[key] = r;
      per_suite[suite][r.status]++;
      if (verbose || (r.status != "pass" && r.status != "skip" && !filter.empty()))
        std::cout << fmt::format("{:12} {} {}\n", r.status, key, first_line(r.reason));
    }
  }
  std::cout << "\nsuite                 pass  fail  unsupported  skip(training)\n";
  for (auto& [s, c] : per_suite)
    std::cout << fmt::format("{:20} {:5} {:5} {:12} {:5}\n", s, c["pass"], c["fail"], c["unsupported"], c["skip"]);

  int rc = 0;
  if (!expect.empty()) {
    std::ifstream f(expect);
    if (!f) { std::cerr << "cannot read " << expect << "\n"; return 2; }
    std::string line;
    int regressions = 0;
    while (std::getline(f, line)) {
      if (line.empty() || line[0] == '#') continue;
      auto it = results.find(line);
      if (it == results.end()) continue;  // filtered out
      if (it->second.status != "pass") {
        std::cout << fmt::format("REGRESSION {}: {} {}\n", line, it->second.status, first_line(it->second.reason));
        ++regressions;
      }
    }
    if (regressions) { std::cout << regressions << " previously passing tests fail\n"; rc = 1; }
  }
  if (min_node_pass > 0 && per_suite.count("node")) {
    auto& c = per_suite["node"];
    int total = c["pass"] + c["fail"] + c["unsupported"];
    double frac = total ? static_cast<double>(c["pass"]) / total : 0;
    std::cout << fmt::format("node tests (non-training): {}/{} pass = {:.1f}% (required {:.1f}%)\n", c["pass"], total,
                             100 * frac, 100 * min_node_pass);
    if (frac < min_node_pass) rc = 1;
  }
  if (!write_passing.empty()) {
    std::ofstream f(write_passing);
    f << "# Conformance tests that pass; generated by `conformance --write-passing`. A test listed here that fails is a regression.\n";
    for (auto& [k, r] : results) if (r.status == "pass") f << k << "\n";
  }
  if (!md.empty()) {
    std::ofstream f(md);
    f << "# ONNX backend test-suite conformance\n\n"
      << "Generated by `build/*/tests/conformance/conformance --md docs/conformance.md` on the test data of Debian's "
         "`libonnx-testdata` (ONNX 1.12). Tolerance: rtol 1e-3, atol 1e-7 (the ONNX backend defaults). Training ops "
         "(Adagrad, Adam, Momentum, Gradient) are out of scope.\n\n";
    f << "| suite | pass | fail | unsupported | skipped (training) |\n|---|---|---|---|---|\n";
    for (auto& [s, c] : per_suite)
      f << fmt::format("| {} | {} | {} | {} | {} |\n", s, c["pass"], c["fail"], c["unsupported"], c["skip"]);
    f << "\n## Tests that do not pass\n\n| test | status | reason |\n|---|---|---|\n";
    for (auto& [k, r] : results)
      if (r.status == "fail" || r.status == "unsupported")
        f << fmt::format("| {} | {} | {} |\n", k, r.status, first_line(r.reason));
  }
  return rc;
}
