// Fast LSTM / GRU / RNN (src/cpu/fast/rnn.cpp) against the reference kernels (src/cpu/kernels/rnn.cpp).
//
// Each case builds a one-node model, runs it through two Executors, fast (RunOptions.fast = true)
// and reference (fast = false), on the same seeded inputs, and compares every output. Every ISA
// instantiation of the fast kernel the CPU can run is tested (AVX-512, AVX2, plain float; forced
// through the test hook; the ones this CPU lacks are reported as skipped). The fast kernel must actually have run the node (Executor::implementations()),
// except in the cases that check it declines.
//
// Tolerance: |fast - ref| <= 1e-4 * max(1, max |ref|) per output (fp32; the differences come from
// GEMM summation order and the vectorised sigmoid/tanh, whose own bound is checked separately:
// absolute error <= 2.5e-7 against double).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "core/parallel.h"
#include "cpu/executor.h"
#include "cpu/fast/fast.h"
#include "graph_builders.h"

namespace opennpu::cpu {
void fast_rnn_force_isa(int isa);
void fast_rnn_fuse_projection(bool on);
bool fast_rnn_activation(int isa, bool tanh, const float* x, float* out, int64_t n);
void fast_rnn_team_tuning(int64_t min_macs, int64_t steal_after_ns, bool wait_for_helpers, bool any_size);
}  // namespace opennpu::cpu

namespace {
using namespace opennpu;

enum class Cell { RNN, GRU, LSTM };

struct Config {
  Cell cell = Cell::LSTM;
  int64_t seq = 5, batch = 1, input = 4, hidden = 8;
  std::string direction = "forward";
  int64_t layout = 0;
  bool bias = true, init_h = false, init_c = false, peep = false, seq_lens = false;
  bool clip = false, lbr = false, input_forget = false;
  int64_t len0 = -1;  // with seq_lens: the first row's length (default: seq)
  bool want_y = true, want_h = true, want_c = true;
  bool weights_as_inputs = false;  // W as a graph input: the fast kernel must decline
  std::string activations;          // non-empty: e.g. "Relu" for RNN (declined)
  int threads = 1;

  std::string str() const {
    const char* c = cell == Cell::LSTM ? "LSTM" : cell == Cell::GRU ? "GRU" : "RNN";
    return std::string(c) + " seq=" + std::to_string(seq) + " batch=" + std::to_string(batch) + " in=" +
           std::to_string(input) + " H=" + std::to_string(hidden) + " " + direction + " layout=" +
           std::to_string(layout) + (bias ? " B" : "") + (init_h ? " h0" : "") + (init_c ? " c0" : "") +
           (peep ? " P" : "") + (seq_lens ? " lens" : "") + (len0 >= 0 ? " len0=" + std::to_string(len0) : "") + (clip ? " clip" : "") + (lbr ? " lbr" : "") +
           (input_forget ? " input_forget" : "") + (want_y ? "" : " noY") + (want_h ? "" : " noYh") +
           (want_c ? "" : " noYc") + " threads=" + std::to_string(threads);
  }
};

Tensor random_tensor(std::mt19937& rng, Shape shape, float lo, float hi) {
  Tensor t(DType::Float32, shape);
  std::uniform_real_distribution<float> u(lo, hi);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = u(rng);
  return t;
}

using test_graph::vi;

struct Built {
  ir::Model model;
  std::map<std::string, Tensor> feeds;
  std::vector<std::string> outputs;
};

Built build(const Config& c, uint32_t seed) {
  std::mt19937 rng(seed);
  Built b;
  b.model.ir_version = 8;
  b.model.opsets[""] = 14;
  ir::Graph& g = b.model.graph;
  g.name = "rnn_test";
  const int64_t dirs = c.direction == "bidirectional" ? 2 : 1;
  const int64_t G = c.cell == Cell::LSTM ? 4 : c.cell == Cell::GRU ? 3 : 1;
  const int64_t H = c.hidden;
  const float ws = 1.0f / std::sqrt(static_cast<float>(H + c.input));

  ir::Node n;
  n.name = "cell";
  n.op_type = c.cell == Cell::LSTM ? "LSTM" : c.cell == Cell::GRU ? "GRU" : "RNN";
  auto attr_i = [&](const std::string& k, int64_t v) {
    ir::Attribute a;
    a.kind = ir::Attribute::Kind::Int;
    a.i = v;
    n.attrs[k] = a;
  };
  auto attr_s = [&](const std::string& k, const std::string& v) {
    ir::Attribute a;
    a.kind = ir::Attribute::Kind::String;
    a.s = v;
    n.attrs[k] = a;
  };
  attr_i("hidden_size", H);
  attr_s("direction", c.direction);
  if (c.layout) attr_i("layout", 1);
  if (c.clip) {
    ir::Attribute a;
    a.kind = ir::Attribute::Kind::Float;
    a.f = 0.7f;
    n.attrs["clip"] = a;
  }
  if (c.lbr) attr_i("linear_before_reset", 1);
  if (c.input_forget) attr_i("input_forget", 1);
  if (!c.activations.empty()) {
    ir::Attribute a;
    a.kind = ir::Attribute::Kind::Strings;
    for (int64_t d = 0; d < dirs; ++d) a.strings.push_back(c.activations);
    n.attrs["activations"] = a;
  }

  const Shape xs = c.layout ? Shape{c.batch, c.seq, c.input} : Shape{c.seq, c.batch, c.input};
  const Shape ss = c.layout ? Shape{c.batch, dirs, H} : Shape{dirs, c.batch, H};
  auto add_input = [&](const std::string& name, Tensor t) {
    g.inputs.push_back(vi(name, t.dtype(), t.shape()));
    b.feeds[name] = std::move(t);
    n.inputs.push_back(name);
  };
  auto add_init = [&](const std::string& name, Tensor t) {
    g.initializers[name] = std::move(t);
    n.inputs.push_back(name);
  };
  add_input("X", random_tensor(rng, xs, -1.5f, 1.5f));
  Tensor W = random_tensor(rng, {dirs, G * H, c.input}, -2 * ws, 2 * ws);
  if (c.weights_as_inputs) add_input("W", W);
  else add_init("W", W);
  add_init("R", random_tensor(rng, {dirs, G * H, H}, -2 * ws, 2 * ws));
  if (c.bias || c.seq_lens || c.init_h || c.init_c || c.peep) {
    if (c.bias) add_init("B", random_tensor(rng, {dirs, 2 * G * H}, -0.5f, 0.5f));
    else n.inputs.push_back("");
  }
  if (c.seq_lens || c.init_h || c.init_c || c.peep) {
    if (c.seq_lens) {
      Tensor L(DType::Int32, {c.batch});
      std::uniform_int_distribution<int> u(0, static_cast<int>(c.seq));
      for (int64_t i = 0; i < c.batch; ++i) L.data<int32_t>()[i] = i == 0 ? static_cast<int32_t>(c.len0 >= 0 ? c.len0 : c.seq) : u(rng);
      add_input("lens", L);
    } else {
      n.inputs.push_back("");
    }
  }
  if (c.init_h || c.init_c || c.peep) {
    if (c.init_h) add_input("h0", random_tensor(rng, ss, -1, 1));
    else n.inputs.push_back("");
  }
  if (c.cell == Cell::LSTM && (c.init_c || c.peep)) {
    if (c.init_c) add_input("c0", random_tensor(rng, ss, -1, 1));
    else n.inputs.push_back("");
  }
  if (c.cell == Cell::LSTM && c.peep) add_init("P", random_tensor(rng, {dirs, 3 * H}, -0.5f, 0.5f));

  const Shape ys = c.layout ? Shape{c.batch, c.seq, dirs, H} : Shape{c.seq, dirs, c.batch, H};
  auto add_output = [&](bool want, const std::string& name, const Shape& s) {
    if (!want) {
      n.outputs.push_back("");
      return;
    }
    n.outputs.push_back(name);
    g.outputs.push_back(vi(name, DType::Float32, s));
    b.outputs.push_back(name);
  };
  add_output(c.want_y, "Y", ys);
  add_output(c.want_h, "Y_h", ss);
  if (c.cell == Cell::LSTM) add_output(c.want_c, "Y_c", ss);
  while (!n.outputs.empty() && n.outputs.back().empty()) n.outputs.pop_back();
  g.nodes.push_back(n);
  return b;
}

// Every output of `a` equals `b`'s bit for bit (`what`: the two runs compared, for the message).
void expect_bit_identical(const std::map<std::string, Tensor>& a, const std::map<std::string, Tensor>& b,
                          const std::string& what) {
  for (const auto& [name, t] : a) {
    const Tensor& u = b.at(name);
    ASSERT_EQ(t.shape(), u.shape()) << name;
    EXPECT_EQ(std::memcmp(t.data<float>(), u.data<float>(), static_cast<size_t>(t.numel()) * sizeof(float)), 0)
        << name << " differs: " << what;
  }
}

// Runs the case fast and reference; returns the fast implementation's name. `fast_out` (optional)
// receives the fast outputs.
std::string check(const Config& c, uint32_t seed, bool expect_fast = true,
                  std::map<std::string, Tensor>* fast_out = nullptr) {
  SCOPED_TRACE(c.str());
  Built b = build(c, seed);
  set_num_threads(c.threads);
  cpu::RunOptions ref_opts;
  ref_opts.fast = false;
  cpu::Executor ref(b.model, ref_opts);
  cpu::Executor fast(b.model);
  std::string impl;
  for (const auto& ni : fast.implementations())
    if (ni.node == "cell") impl = ni.impl;
  if (expect_fast) EXPECT_NE(impl.find("fast_"), std::string::npos) << "implementation: " << impl;
  else EXPECT_EQ(impl, "reference");
  auto want = ref.run(b.feeds);
  auto got = fast.run(b.feeds);
  set_num_threads(1);
  if (fast_out) *fast_out = got;
  for (const auto& name : b.outputs) {
    const Tensor& w = want.at(name);
    const Tensor& f = got.at(name);
    EXPECT_EQ(w.shape(), f.shape()) << name;
    if (w.shape() != f.shape()) continue;
    double scale = 1.0;
    for (int64_t i = 0; i < w.numel(); ++i) scale = std::max(scale, std::fabs(double(w.data<float>()[i])));
    double worst = 0;
    int64_t at = 0;
    for (int64_t i = 0; i < w.numel(); ++i) {
      double d = std::fabs(double(w.data<float>()[i]) - double(f.data<float>()[i]));
      if (!(d <= worst)) worst = d, at = i;  // NaN counts as worst
    }
    EXPECT_LE(worst, 1e-4 * scale) << name << " element " << at << ": ref " << w.data<float>()[at] << " fast "
                                   << f.data<float>()[at];
  }
  return impl;
}

// Param: ISA code of fast_rnn_force_isa (0 = AVX-512, 2 = AVX2, 1 = generic).
const char* isa_name(int isa) { return isa == 0 ? "avx512" : isa == 2 ? "avx2" : "generic"; }
bool cpu_has(int isa) {
  const auto& f = cpu::cpu_features();
  return isa == 1 || (isa == 2 && f.avx2 && f.fma) || (isa == 0 && f.avx512f && f.avx2 && f.fma);
}

class FastRnn : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override {
    if (!cpu_has(GetParam())) GTEST_SKIP() << "this CPU cannot run the " << isa_name(GetParam()) << " kernels";
    cpu::fast_rnn_force_isa(GetParam());
  }
  void TearDown() override { cpu::fast_rnn_force_isa(0); }
  std::string isa() const { return isa_name(GetParam()); }
};

TEST_P(FastRnn, RunsTheRequestedIsa) {
  Config c;
  EXPECT_EQ(check(c, 1), "fast_lstm_" + isa());
  c.cell = Cell::GRU;
  EXPECT_EQ(check(c, 2), "fast_gru_" + isa());
  c.cell = Cell::RNN;
  EXPECT_EQ(check(c, 3), "fast_rnn_" + isa());
}

// Every cell x direction x layout, with odd and vector-multiple hidden sizes.
TEST_P(FastRnn, CellsDirectionsLayouts) {
  uint32_t seed = 100;
  for (Cell cell : {Cell::LSTM, Cell::GRU, Cell::RNN})
    for (const char* dir : {"forward", "reverse", "bidirectional"})
      for (int64_t layout : {0, 1})
        for (int64_t hidden : {1, 7, 16, 33})
          for (bool lbr : {false, true}) {
            if (lbr && cell != Cell::GRU) continue;
            Config c;
            c.cell = cell;
            c.direction = dir;
            c.layout = layout;
            c.hidden = hidden;
            c.lbr = lbr;
            c.batch = hidden % 2 ? 3 : 1;
            c.seq = hidden == 7 ? 1 : 6;
            c.input = hidden == 16 ? 9 : 5;
            check(c, seed++);
          }
}

// Initial states, peepholes, clip, input_forget, no bias, partial outputs.
TEST_P(FastRnn, OptionalInputsAndAttributes) {
  uint32_t seed = 500;
  for (Cell cell : {Cell::LSTM, Cell::GRU, Cell::RNN})
    for (int variant = 0; variant < 8; ++variant) {
      Config c;
      c.cell = cell;
      c.hidden = 12 + variant;
      c.batch = 1 + variant % 4;
      c.seq = 4 + variant;
      c.direction = variant % 3 == 0 ? "bidirectional" : variant % 3 == 1 ? "reverse" : "forward";
      c.layout = variant % 2;
      c.init_h = variant & 1;
      c.init_c = variant & 2;
      c.peep = variant & 4;
      c.clip = variant >= 4;
      c.bias = variant != 3;
      c.lbr = variant % 2 == 0;
      c.input_forget = cell == Cell::LSTM && variant == 6;
      c.want_y = variant != 5;
      c.want_h = variant != 2;
      c.want_c = variant != 7;
      check(c, seed++);
    }
}

// sequence_lens (some 0, some shorter than seq): Y is zero past each length, Y_h / Y_c hold the
// state after each entry's last step.
TEST_P(FastRnn, SequenceLengths) {
  uint32_t seed = 900;
  for (Cell cell : {Cell::LSTM, Cell::GRU, Cell::RNN})
    for (const char* dir : {"forward", "reverse", "bidirectional"})
      for (int64_t layout : {0, 1}) {
        Config c;
        c.cell = cell;
        c.direction = dir;
        c.layout = layout;
        c.seq_lens = true;
        c.batch = 5;
        c.seq = 7;
        c.hidden = 10;
        c.init_h = c.init_c = true;
        c.lbr = layout == 1;
        check(c, seed++);
      }
}

// Bigger shapes: many batch rows (the multi-row GEMM tiles), and with two threads (parallel
// directions, column-split recurrence GEMM).
TEST_P(FastRnn, LargerAndThreaded) {
  uint32_t seed = 1300;
  for (Cell cell : {Cell::LSTM, Cell::GRU})
    for (int threads : {1, 2}) {
      Config c;
      c.cell = cell;
      c.seq = 9;
      c.batch = 40;
      c.input = 31;
      c.hidden = 130;
      c.direction = threads == 2 ? "bidirectional" : "forward";
      c.threads = threads;
      check(c, seed++);
      c.direction = "forward";
      c.batch = 1;
      c.seq = 50;
      c.hidden = 256;
      c.input = 128;
      check(c, seed++);
    }
}

// The multi-threaded recurrence (the team: chunks of hidden units claimed per step, see run_team in
// rnn.cpp), made to run on small shapes through the test hook: every cell it takes, forward and
// reverse, both layouts, batch 1 and more, sequence_lens, initial states, peepholes, clip, odd
// hidden sizes (a short last chunk), 2 threads and more threads than chunks. Each case against the
// reference at the tolerance above, and bit for bit against the same kernel on one thread (a chunk
// is computed by the same code whichever thread runs it). steal = 0 makes the leader take over
// every chunk another thread has claimed but not finished, so the take-over path runs too; the
// leader waits for its helpers to join each run (test hook), so they take part even in short runs.
class FastRnnTeam : public FastRnn {
 protected:
  void TearDown() override {
    cpu::fast_rnn_team_tuning(-1, -1, false, false);
    FastRnn::TearDown();
  }
  void team_case(Config c, uint32_t seed, int64_t steal_ns) {
    SCOPED_TRACE("steal_after_ns=" + std::to_string(steal_ns));
    cpu::fast_rnn_team_tuning(0, steal_ns, true, true);
    const int64_t chunks = (c.hidden + 15) / 16 >= 2 ? std::min<int64_t>(8, (c.hidden + 15) / 16) : 1;
    std::map<std::string, Tensor> one, many;
    const int threads = c.threads;
    c.threads = 1;
    EXPECT_EQ(check(c, seed, true, &one).find("_team"), std::string::npos);
    c.threads = threads;
    const std::string impl = check(c, seed, true, &many);
    // chunks of 16 units: H <= 128 gives ceil(H / 16) chunks
    if (c.hidden <= 128) EXPECT_EQ(impl.substr(impl.find("_team") == std::string::npos ? 0 : impl.find("_team")),
                                   "_team" + std::to_string(std::min<int64_t>(threads, chunks)))
        << c.str() << " ran " << impl;
    expect_bit_identical(one, many, c.str() + ": 1 vs " + std::to_string(threads) + " threads");
  }
};

TEST_P(FastRnnTeam, MatchesReferenceAndOneThread) {
  uint32_t seed = 3000;
  for (Cell cell : {Cell::LSTM, Cell::GRU, Cell::RNN})
    for (int64_t hidden : {17, 40, 64, 130})
      for (int variant = 0; variant < 4; ++variant) {
        Config c;
        c.cell = cell;
        c.lbr = true;
        c.hidden = hidden;
        c.input = 5 + variant;
        c.seq = 3 + 2 * variant;
        c.batch = variant % 2 ? 3 : 1;
        c.direction = variant >= 2 ? "reverse" : "forward";
        c.layout = variant == 1 || variant == 2;
        c.init_h = variant != 0;
        c.init_c = variant == 3;
        c.peep = cell == Cell::LSTM && variant >= 2;
        c.clip = variant == 1;
        c.input_forget = cell == Cell::LSTM && variant == 2;
        c.seq_lens = variant == 3;
        if (variant == 3) c.batch = 5;
        c.want_y = variant != 2;
        c.threads = 2 + variant % 2;
        team_case(c, seed, -1);
        team_case(c, seed, 0);
        ++seed;
      }
}

// Batch 1 at the sizes where one thread fuses the input projection into the recurrence and the
// team does not (each core keeps its half of R in cache): the two agree bit for bit, with and
// without take-overs, forward and reverse.
TEST_P(FastRnnTeam, FusedOneThreadMatchesTeam) {
  uint32_t seed = 7500;
  for (int64_t hidden : {160, 256})
    for (const char* dir : {"forward", "reverse"}) {
      Config c;
      c.hidden = hidden;
      c.input = hidden == 160 ? 48 : 300;
      c.seq = hidden == 160 ? 30 : 19;
      c.direction = dir;
      c.layout = hidden == 256;
      c.threads = 2;
      team_case(c, seed, -1);
      team_case(c, seed, 0);
      ++seed;
    }
}

// More threads than chunks (H = 20: two chunks; 8 threads): a team of two.
TEST_P(FastRnnTeam, MoreThreadsThanChunks) {
  for (int threads : {2, 4, 8}) {
    Config c;
    c.hidden = 20;
    c.seq = 12;
    c.threads = threads;
    team_case(c, 3500 + threads, -1);
    team_case(c, 3500 + threads, 0);
    c.hidden = 7;  // one chunk: no team
    c.seq = 4;
    c.threads = threads;
    cpu::fast_rnn_team_tuning(0, -1, true, true);
    EXPECT_EQ(check(c, 3600 + threads), "fast_lstm_" + isa());
  }
}

// The model's shape (H = 256, input 128, 100 steps) at its default threshold: a team of two at 2
// threads, which also computes the input projection (team step -1, large enough here); batch 3 and
// 3 threads; bidirectional and GRU without linear_before_reset keep one thread per direction.
TEST_P(FastRnnTeam, ModelShapeAndFallbacks) {
  Config c;
  c.hidden = 256;
  c.input = 128;
  c.seq = 100;
  c.threads = 2;
  team_case(c, 3700, -1);
  team_case(c, 3700, 0);
  c.seq = 37;
  c.batch = 3;
  c.threads = 3;
  c.peep = c.init_c = true;
  team_case(c, 3705, 0);
  c.seq = 100;
  c.batch = 1;
  c.threads = 2;
  c.peep = c.init_c = false;
  cpu::fast_rnn_team_tuning(-1, -1, false, false);  // default: teams no larger than the hardware threads
  const std::string team2 = std::thread::hardware_concurrency() >= 2 ? "_team2" : "";
  EXPECT_EQ(check(c, 3701), "fast_lstm_" + isa() + team2);
  c.seq = 20;
  c.direction = "bidirectional";
  EXPECT_EQ(check(c, 3702), "fast_lstm_" + isa());
  c.direction = "forward";
  c.cell = Cell::GRU;
  c.lbr = false;
  EXPECT_EQ(check(c, 3703), "fast_gru_" + isa());
  c.lbr = true;
  EXPECT_EQ(check(c, 3704), "fast_gru_" + isa() + team2);
}

// Runs from several threads at once (the team is one per process: the run that finds it busy
// runs on one thread): every run gives the one-thread result bit for bit.
TEST_P(FastRnnTeam, ConcurrentRuns) {
  cpu::fast_rnn_team_tuning(0, -1, false, false);
  Config c;
  c.hidden = 64;
  c.input = 16;
  c.seq = 40;
  c.batch = 2;
  Built b = build(c, 3800);
  set_num_threads(1);
  const auto want = cpu::Executor(b.model).run(b.feeds);
  set_num_threads(2);
  cpu::Executor shared(b.model);
  std::vector<std::map<std::string, Tensor>> got(4 * 6);
  std::vector<std::thread> callers;
  for (int t = 0; t < 4; ++t)
    callers.emplace_back([&, t] {
      cpu::Executor own(b.model);
      for (int i = 0; i < 6; ++i) got[t * 6 + i] = (i % 2 ? shared : own).run(b.feeds);
    });
  for (auto& t : callers) t.join();
  set_num_threads(1);
  for (const auto& g : got) expect_bit_identical(want, g, "a concurrent run vs one run alone");
}

INSTANTIATE_TEST_SUITE_P(Isa, FastRnnTeam, ::testing::Values(0, 2, 1),
                         [](const auto& info) { return std::string(isa_name(info.param)); });

// What the fast path does not take runs the reference kernel.
// One thread, batch 1: the input projection of later steps is computed inside the recurrence
// tiles (AVX-512). Its results must equal the unfused path's bit for bit (same arithmetic), for
// sequence lengths around the 8-row groups, input sizes below / above the hidden size, every
// direction and layout, and sequence_lens shorter than the sequence.
TEST_P(FastRnn, FusedProjectionIsBitIdentical) {
  uint32_t seed = 7000;
  for (Cell cell : {Cell::LSTM, Cell::GRU, Cell::RNN})
    for (int variant = 0; variant < 8; ++variant) {
      Config c;
      c.cell = cell;
      c.lbr = variant % 2;
      c.seq = std::vector<int64_t>{9, 16, 17, 37, 8, 24, 41, 20}[variant];
      c.input = std::vector<int64_t>{5, 40, 130, 16, 64, 3, 70, 200}[variant];
      // Fusion needs chunks of 8 column blocks (LSTM from H = 129, GRU without linear_before_reset
      // from 2H >= 128); the small sizes check that the other paths are unaffected.
      c.hidden = std::vector<int64_t>{130, 64, 160, 40, 256, 128, 135, 200}[variant];
      c.direction = variant % 3 == 0 ? "forward" : variant % 3 == 1 ? "reverse" : "bidirectional";
      c.layout = variant >= 4;
      c.seq_lens = variant == 3 || variant == 6 || variant == 7;
      if (variant >= 6) c.len0 = c.seq - 3;  // shorter than the sequence (batch 1)
      c.init_h = variant % 2 == 0;
      c.peep = cell == Cell::LSTM && variant == 5;
      std::map<std::string, Tensor> fused, plain;
      check(c, seed, true, &fused);
      cpu::fast_rnn_fuse_projection(false);
      check(c, seed, true, &plain);
      cpu::fast_rnn_fuse_projection(true);
      ++seed;
      expect_bit_identical(fused, plain, c.str() + ": fused vs unfused projection");
    }
}

TEST_P(FastRnn, DeclinesWhatItDoesNotHandle) {
  Config c;
  c.cell = Cell::RNN;
  c.activations = "Relu";
  check(c, 2000, /*expect_fast=*/false);
  c = Config();
  c.weights_as_inputs = true;
  check(c, 2001, /*expect_fast=*/false);
}

INSTANTIATE_TEST_SUITE_P(Isa, FastRnn, ::testing::Values(0, 2, 1),
                         [](const auto& info) { return std::string(isa_name(info.param)); });

// The vector sigmoid and tanh against double precision over [-100, 100] (dense near 0).
TEST(FastRnnActivations, ErrorBound) {
  std::vector<float> x;
  for (double v = -100; v <= 100; v += 0.01) x.push_back(static_cast<float>(v));
  for (double v = -1; v <= 1; v += 1e-5) x.push_back(static_cast<float>(v));
  for (float v : {0.0f, -0.0f, 1e-30f, -1e-30f, 88.0f, -88.0f, 89.0f, -89.0f, 1e30f, -1e30f}) x.push_back(v);
  std::vector<float> out(x.size());
  for (int isa : {0, 2, 1})
    for (bool tanh : {false, true}) {
      SCOPED_TRACE(std::string(isa_name(isa)) + (tanh ? " tanh" : " sigmoid"));
      if (!cpu::fast_rnn_activation(isa, tanh, x.data(), out.data(), static_cast<int64_t>(x.size()))) {
        EXPECT_FALSE(cpu_has(isa));
        continue;
      }
      double worst = 0, worst_rel_small = 0;
      for (size_t i = 0; i < x.size(); ++i) {
        double want = tanh ? std::tanh(double(x[i])) : 1.0 / (1.0 + std::exp(-double(x[i])));
        double err = std::fabs(double(out[i]) - want);
        worst = std::max(worst, err);
        if (tanh && std::fabs(x[i]) < 0.625 && want != 0) worst_rel_small = std::max(worst_rel_small, err / std::fabs(want));
      }
      EXPECT_LE(worst, 2.5e-7);
      if (tanh) EXPECT_LE(worst_rel_small, 5e-7);  // tanh keeps relative accuracy near 0
    }
}

}  // namespace
