// cpu/kernels/misc.cpp — the ops that fit no other group: NonMaxSuppression, signal processing
// (DFT, STFT, Hann/Hamming/Blackman windows, MelWeightMatrix), text (StringNormalizer,
// TfIdfVectorizer) and random generators (RandomUniform/Normal[Like], Bernoulli).
// Resize/Upsample/GridSample/RoiAlign live in resize.cpp and are registered from here.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <cwctype>
#include <locale.h>
#include <map>
#include <numbers>
#include <random>

#include "core/parallel.h"
#include "cpu/kernel.h"
#include "cpu/util.h"

namespace opennpu::cpu {

void register_resize(Registry& r);  // resize.cpp

namespace {

// A scalar (or one-element) integer input, validated.
int64_t scalar_int(const KernelContext& ctx, const Tensor& t, const char* what) {
  ctx.check(dtype_is_integer(t.dtype()) && t.numel() == 1, "{} must be a scalar integer, got {} {}", what,
            dtype_name(t.dtype()), shape_str(t.shape()));
  return t.get_i64(0);
}
double scalar_float(const KernelContext& ctx, const Tensor& t, const char* what) {
  ctx.check(t.numel() == 1 && t.dtype() != DType::String, "{} must be a scalar, got {}", what, shape_str(t.shape()));
  return t.get_f64(0);
}

// Writes doubles into a tensor of any numeric dtype (integers: truncation toward zero, like a cast).
void store_doubles(Tensor& y, const std::vector<double>& v) {
  dispatch_numeric(y.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    for (size_t i = 0; i < v.size(); ++i) y.data<T>()[i] = T(static_cast<compute_t<T>>(v[i]));
  });
}

DType output_datatype(const KernelContext& ctx, int64_t dflt_onnx) {
  int64_t t = ctx.node().attr_i("output_datatype", dflt_onnx);
  DType d;
  try { d = dtype_from_onnx(static_cast<int>(t)); } catch (const Error&) { ctx.fail("unsupported output_datatype {}", t); }
  ctx.check(d != DType::String && d != DType::Bool, "output_datatype {} is not numeric", t);
  return d;
}

// ---- NonMaxSuppression (opsets 10, 11) ------------------------------------------------------------

struct Box {
  double y1, x1, y2, x2;
};

// Boxes are corners [y1, x1, y2, x2] (either diagonal) or, with center_point_box, [xc, yc, w, h].
Box read_box(const Tensor& boxes, int64_t off, bool center) {
  double a = boxes.get_f64(off), b = boxes.get_f64(off + 1), c = boxes.get_f64(off + 2), d = boxes.get_f64(off + 3);
  if (center) return {b - d / 2, a - c / 2, b + d / 2, a + c / 2};
  return {std::min(a, c), std::min(b, d), std::max(a, c), std::max(b, d)};
}

double iou(const Box& p, const Box& q) {
  double ap = (p.y2 - p.y1) * (p.x2 - p.x1), aq = (q.y2 - q.y1) * (q.x2 - q.x1);
  if (ap <= 0 || aq <= 0) return 0;
  double ih = std::max(0.0, std::min(p.y2, q.y2) - std::max(p.y1, q.y1));
  double iw = std::max(0.0, std::min(p.x2, q.x2) - std::max(p.x1, q.x1));
  double inter = ih * iw;
  return inter / (ap + aq - inter);
}

// Per (batch, class): candidates with score > score_threshold, in descending score order (ties:
// lower box index first); a candidate is kept unless its IoU with an already kept box exceeds
// iou_threshold; at most max_output_boxes_per_class are kept. Output rows [batch, class, box].
void non_max_suppression(KernelContext& ctx) {
  const Tensor& boxes = ctx.input(0);
  const Tensor& scores = ctx.input(1);
  ctx.check(dtype_is_float(boxes.dtype()) && dtype_is_float(scores.dtype()), "boxes and scores must be float");
  ctx.check(boxes.rank() == 3 && boxes.dim(2) == 4, "boxes must be [batch, boxes, 4], got {}", shape_str(boxes.shape()));
  ctx.check(scores.rank() == 3 && scores.dim(0) == boxes.dim(0) && scores.dim(2) == boxes.dim(1),
            "scores must be [batch = {}, classes, boxes = {}], got {}", boxes.dim(0), boxes.dim(1),
            shape_str(scores.shape()));
  int64_t max_out = 0;
  if (const Tensor* t = ctx.optional_input(2); t && t->numel() > 0) max_out = scalar_int(ctx, *t, "max_output_boxes_per_class");
  ctx.check(max_out >= 0, "max_output_boxes_per_class must be >= 0, got {}", max_out);
  double iou_th = 0;
  if (const Tensor* t = ctx.optional_input(3); t && t->numel() > 0) iou_th = scalar_float(ctx, *t, "iou_threshold");
  ctx.check(iou_th >= 0 && iou_th <= 1, "iou_threshold must be in [0, 1], got {}", iou_th);
  bool has_score_th = false;
  double score_th = 0;
  if (const Tensor* t = ctx.optional_input(4); t && t->numel() > 0) {
    has_score_th = true;
    score_th = scalar_float(ctx, *t, "score_threshold");
  }
  int64_t cpb = ctx.node().attr_i("center_point_box", 0);
  ctx.check(cpb == 0 || cpb == 1, "center_point_box must be 0 or 1, got {}", cpb);
  const int64_t B = boxes.dim(0), NB = boxes.dim(1), NC = scores.dim(1);
  std::vector<int64_t> sel;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t c = 0; c < NC; ++c) {
      if (max_out == 0) continue;
      std::vector<std::pair<double, int64_t>> cand;
      for (int64_t i = 0; i < NB; ++i) {
        double s = scores.get_f64((b * NC + c) * NB + i);
        if (!has_score_th || s > score_th) cand.push_back({s, i});
      }
      std::stable_sort(cand.begin(), cand.end(), [](auto& p, auto& q) { return p.first > q.first; });
      std::vector<Box> kept;
      for (auto& [s, i] : cand) {
        if (static_cast<int64_t>(kept.size()) >= max_out) break;
        Box bx = read_box(boxes, (b * NB + i) * 4, cpb == 1);
        bool suppressed = false;
        for (const Box& k : kept)
          if (iou(bx, k) > iou_th) { suppressed = true; break; }
        if (suppressed) continue;
        kept.push_back(bx);
        sel.insert(sel.end(), {b, c, i});
      }
    }
  Tensor& y = ctx.alloc_output(0, DType::Int64, {static_cast<int64_t>(sel.size() / 3), 3});
  if (!sel.empty()) std::memcpy(y.raw(), sel.data(), sel.size() * sizeof(int64_t));
}

// ---- DFT / STFT (opset 17) ------------------------------------------------------------------------

// Naive DFT of length n over complex input (re, im), twiddles from an exact table
// exp(-+2 pi i (k*t mod n) / n); inverse divides by n. O(n^2) per transform: obviously correct.
struct Dft {
  int64_t n;
  bool inverse;
  std::vector<double> cs, sn;
  Dft(int64_t n_, bool inv) : n(n_), inverse(inv), cs(n_), sn(n_) {
    for (int64_t j = 0; j < n; ++j) {
      double a = 2 * std::numbers::pi * static_cast<double>(j) / static_cast<double>(n);
      cs[j] = std::cos(a);
      sn[j] = inverse ? std::sin(a) : -std::sin(a);
    }
  }
  // out has `bins` complex values (bins <= n); in has n complex values.
  void run(const double* re, const double* im, int64_t bins, double* ore, double* oim) const {
    for (int64_t k = 0; k < bins; ++k) {
      double sr = 0, si = 0;
      for (int64_t t = 0; t < n; ++t) {
        int64_t j = (k * t) % n;
        sr += re[t] * cs[j] - im[t] * sn[j];
        si += re[t] * sn[j] + im[t] * cs[j];
      }
      if (inverse) { sr /= static_cast<double>(n); si /= static_cast<double>(n); }
      ore[k] = sr;
      oim[k] = si;
    }
  }
};

// The reference transform is O(n * bins) per signal: refuse sizes it could not finish.
void check_dft_work(const KernelContext& ctx, int64_t n, int64_t bins, int64_t transforms) {
  double work = static_cast<double>(n) * static_cast<double>(bins) * static_cast<double>(std::max<int64_t>(transforms, 1));
  ctx.check(work <= 2.0e10, "a DFT of length {} over {} signals is too large for the O(n^2) reference kernel", n,
            transforms);
}

void dft(KernelContext& ctx) {
  const ir::Node& nd = ctx.node();
  const Tensor& x = ctx.input(0);
  ctx.check(dtype_is_float(x.dtype()), "input must be a float tensor, got {}", dtype_name(x.dtype()));
  const int64_t r = x.rank();
  ctx.check(r >= 3, "input must be [batch, n..., 1 or 2] (rank >= 3), got {}", shape_str(x.shape()));
  ctx.check(x.dim(r - 1) == 1 || x.dim(r - 1) == 2, "last dimension must be 1 (real) or 2 (complex), got {}",
            x.dim(r - 1));
  const bool complex_in = x.dim(r - 1) == 2;
  int64_t axis = nd.attr_i("axis", 1);
  if (axis < 0) axis += r;
  ctx.check(axis >= 1 && axis <= r - 2, "axis {} must select a signal dimension in [1, {}]", nd.attr_i("axis", 1),
            r - 2);
  const bool inverse = nd.attr_i("inverse", 0) != 0, onesided = nd.attr_i("onesided", 0) != 0;
  ctx.check(!(onesided && inverse), "onesided inverse DFT is not defined by opset 17");
  ctx.check(!(onesided && complex_in), "onesided output needs a real input");
  const int64_t in_len = x.dim(axis);
  int64_t n = in_len;
  if (const Tensor* t = ctx.optional_input(1); t && t->numel() > 0) n = scalar_int(ctx, *t, "dft_length");
  ctx.check(n >= 1, "dft_length must be >= 1, got {}", n);
  const int64_t bins = onesided ? n / 2 + 1 : n;
  int64_t outer = 1, inner = 1;
  check_dft_work(ctx, n, bins, x.numel() / std::max<int64_t>(in_len, 1));
  for (int64_t d = 0; d < axis; ++d) outer *= x.dim(d);
  for (int64_t d = axis + 1; d < r - 1; ++d) inner *= x.dim(d);
  Shape oshape = x.shape();
  oshape[axis] = bins;
  oshape[r - 1] = 2;
  Tensor& y = ctx.alloc_output(0, x.dtype(), oshape);  // first: checks the size against the memory limit
  std::vector<double> out(static_cast<size_t>(y.numel()));
  const int64_t cin = x.dim(r - 1);
  Dft f(n, inverse);
  parallel_for(outer * inner, [&](int64_t b, int64_t e) {
    std::vector<double> re(n), im(n), ore(bins), oim(bins);
    for (int64_t oi = b; oi < e; ++oi) {
      int64_t o = oi / inner, i = oi % inner;
      for (int64_t t = 0; t < n; ++t) {  // truncate or zero-pad to n
        bool have = t < in_len;
        int64_t off = ((o * in_len + t) * inner + i) * cin;
        re[t] = have ? x.get_f64(off) : 0.0;
        im[t] = have && complex_in ? x.get_f64(off + 1) : 0.0;
      }
      f.run(re.data(), im.data(), bins, ore.data(), oim.data());
      for (int64_t k = 0; k < bins; ++k) {
        size_t off = static_cast<size_t>(((o * bins + k) * inner + i) * 2);
        out[off] = ore[k];
        out[off + 1] = oim[k];
      }
    }
  });
  store_doubles(y, out);
}

// STFT: frames of frame_length samples every frame_step, each multiplied by the window and
// transformed; output [batch, frames, bins, 2] with bins = frame_length/2 + 1 when onesided.
void stft(KernelContext& ctx) {
  const Tensor& sig = ctx.input(0);
  ctx.check(dtype_is_float(sig.dtype()), "signal must be a float tensor, got {}", dtype_name(sig.dtype()));
  ctx.check(sig.rank() == 3 && (sig.dim(2) == 1 || sig.dim(2) == 2),
            "signal must be [batch, signal_length, 1 or 2], got {}", shape_str(sig.shape()));
  const bool complex_in = sig.dim(2) == 2;
  const int64_t step = scalar_int(ctx, ctx.input(1), "frame_step");
  ctx.check(step >= 1, "frame_step must be >= 1, got {}", step);
  const Tensor* window = ctx.optional_input(2);
  int64_t flen = -1;
  if (window) {
    ctx.check(window->rank() == 1 && dtype_is_float(window->dtype()), "window must be a 1-D float tensor");
    flen = window->dim(0);
  }
  if (const Tensor* t = ctx.optional_input(3)) {
    int64_t l = scalar_int(ctx, *t, "frame_length");
    ctx.check(flen < 0 || l == flen, "frame_length {} differs from the window length {}", l, flen);
    flen = l;
  }
  ctx.check(flen >= 1, "either window or frame_length must be given, with a length >= 1");
  const int64_t B = sig.dim(0), L = sig.dim(1);
  ctx.check(flen <= L, "frame_length {} exceeds the signal length {}", flen, L);
  const bool onesided = ctx.node().attr_i("onesided", 1) != 0;
  ctx.check(!(onesided && complex_in), "onesided output needs a real signal");
  const int64_t frames = (L - flen) / step + 1, bins = onesided ? flen / 2 + 1 : flen;
  Shape oshape{B, frames, bins, 2};
  check_dft_work(ctx, flen, bins, B * frames);
  Tensor& y = ctx.alloc_output(0, sig.dtype(), oshape);  // first: checks the size against the memory limit
  std::vector<double> out(static_cast<size_t>(y.numel()));
  Dft f(flen, false);
  const int64_t cin = sig.dim(2);
  parallel_for(B * frames, [&](int64_t b0, int64_t e0) {
    std::vector<double> re(flen), im(flen), ore(bins), oim(bins);
    for (int64_t bf = b0; bf < e0; ++bf) {
      int64_t b = bf / frames, fr = bf % frames;
      for (int64_t t = 0; t < flen; ++t) {
        double w = window ? window->get_f64(t) : 1.0;
        int64_t off = (b * L + fr * step + t) * cin;
        re[t] = sig.get_f64(off) * w;
        im[t] = complex_in ? sig.get_f64(off + 1) * w : 0.0;
      }
      f.run(re.data(), im.data(), bins, ore.data(), oim.data());
      for (int64_t k = 0; k < bins; ++k) {
        out[static_cast<size_t>((bf * bins + k) * 2)] = ore[k];
        out[static_cast<size_t>((bf * bins + k) * 2 + 1)] = oim[k];
      }
    }
  });
  store_doubles(y, out);
}

// ---- window functions and MelWeightMatrix (opset 17) ----------------------------------------------

// w[n] = sum_k (-1)^k a_k cos(2 pi k n / N), N = size (periodic) or size - 1 (symmetric).
// A symmetric window of size 1 is [1] (as numpy's windows; the formula would divide by zero).
void cosine_window(KernelContext& ctx, std::initializer_list<double> a) {
  int64_t size = scalar_int(ctx, ctx.input(0), "size");
  ctx.check(size >= 0, "size must be >= 0, got {}", size);
  bool periodic = ctx.node().attr_i("periodic", 1) != 0;
  DType dt = output_datatype(ctx, 1);
  Tensor& y = ctx.alloc_output(0, dt, {size});  // first: checks the size against the memory limit
  std::vector<double> w(static_cast<size_t>(size));
  double N = static_cast<double>(periodic ? size : size - 1);
  for (int64_t n = 0; n < size; ++n) {
    if (N == 0) { w[n] = 1.0; continue; }
    double v = 0, sign = 1;
    int k = 0;
    for (double ak : a) {
      v += sign * ak * std::cos(2 * std::numbers::pi * k * static_cast<double>(n) / N);
      sign = -sign;
      ++k;
    }
    w[n] = v;
  }
  store_doubles(y, w);
}
void hann_window(KernelContext& ctx) { cosine_window(ctx, {0.5, 0.5}); }
void hamming_window(KernelContext& ctx) { cosine_window(ctx, {25.0 / 46.0, 21.0 / 46.0}); }
void blackman_window(KernelContext& ctx) { cosine_window(ctx, {0.42, 0.5, 0.08}); }

// The ONNX definition: num_mel_bins + 2 points equally spaced on the mel scale
// (mel = 2595 log10(1 + hz/700)) between the edges (spacing (high - low) / (num_mel_bins + 2)),
// mapped to DFT bins floor((dft_length + 1) * hz / sample_rate); filter i rises linearly from
// point i to point i+1 and falls to point i+2. Output [dft_length/2 + 1, num_mel_bins].
void mel_weight_matrix(KernelContext& ctx) {
  int64_t nmel = scalar_int(ctx, ctx.input(0), "num_mel_bins");
  int64_t dftlen = scalar_int(ctx, ctx.input(1), "dft_length");
  int64_t rate = scalar_int(ctx, ctx.input(2), "sample_rate");
  double lo = scalar_float(ctx, ctx.input(3), "lower_edge_hertz");
  double hi = scalar_float(ctx, ctx.input(4), "upper_edge_hertz");
  ctx.check(nmel >= 1 && dftlen >= 1 && rate >= 1, "num_mel_bins, dft_length and sample_rate must be >= 1");
  ctx.check(lo >= 0 && lo <= hi && hi <= static_cast<double>(rate) / 2,
            "need 0 <= lower_edge_hertz ({}) <= upper_edge_hertz ({}) <= sample_rate / 2 ({})", lo, hi, rate / 2.0);
  DType dt = output_datatype(ctx, 1);
  const int64_t nspec = dftlen / 2 + 1;
  auto to_mel = [](double hz) { return 2595.0 * std::log10(1.0 + hz / 700.0); };
  double lmel = to_mel(lo), hmel = to_mel(hi);
  double step = (hmel - lmel) / static_cast<double>(nmel + 2);
  std::vector<int64_t> bin(static_cast<size_t>(nmel + 2));
  for (int64_t i = 0; i < nmel + 2; ++i) {
    double hz = 700.0 * (std::pow(10.0, (static_cast<double>(i) * step + lmel) / 2595.0) - 1.0);
    bin[i] = static_cast<int64_t>(std::floor(static_cast<double>(dftlen + 1) * hz / static_cast<double>(rate)));
    ctx.check(bin[i] >= 0 && bin[i] < nspec, "mel point {} falls in DFT bin {}, outside [0, {})", i, bin[i], nspec);
  }
  Tensor& y = ctx.alloc_output(0, dt, {nspec, nmel});  // first: checks the size against the memory limit
  std::vector<double> w(static_cast<size_t>(nspec * nmel), 0.0);
  for (int64_t i = 0; i < nmel; ++i) {
    int64_t l = bin[i], c = bin[i + 1], h = bin[i + 2];
    if (c == l) w[c * nmel + i] = 1;
    else for (int64_t j = l; j <= c; ++j) w[j * nmel + i] = static_cast<double>(j - l) / static_cast<double>(c - l);
    if (h > c) for (int64_t j = c; j < h; ++j) w[j * nmel + i] = static_cast<double>(h - j) / static_cast<double>(h - c);
  }
  store_doubles(y, w);
}

// ---- StringNormalizer (opset 10) ------------------------------------------------------------------

// UTF-8 <-> UTF-32 so case mapping works beyond ASCII (Unicode simple case mapping of the
// C.UTF-8 locale; the `locale` attribute is accepted but only this mapping is implemented).
std::u32string utf8_decode(const KernelContext& ctx, const std::string& s) {
  std::u32string out;
  for (size_t i = 0; i < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    ctx.check(len > 0 && i + len <= s.size(), "input string is not valid UTF-8");
    char32_t cp = len == 1 ? c : c & (0x7F >> len);
    for (int k = 1; k < len; ++k) {
      unsigned char cc = static_cast<unsigned char>(s[i + k]);
      ctx.check((cc & 0xC0) == 0x80, "input string is not valid UTF-8");
      cp = (cp << 6) | (cc & 0x3F);
    }
    out.push_back(cp);
    i += len;
  }
  return out;
}
std::string utf8_encode(const std::u32string& s) {
  std::string out;
  for (char32_t cp : s) {
    if (cp < 0x80) out.push_back(static_cast<char>(cp));
    else if (cp < 0x800) { out.push_back(static_cast<char>(0xC0 | (cp >> 6))); out.push_back(static_cast<char>(0x80 | (cp & 0x3F))); }
    else if (cp < 0x10000) {
      out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
      out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  }
  return out;
}
std::string change_case(const KernelContext& ctx, const std::string& s, bool upper) {
  static locale_t loc = newlocale(LC_CTYPE_MASK, "C.UTF-8", static_cast<locale_t>(0));
  std::u32string u = utf8_decode(ctx, s);
  for (char32_t& c : u) {
    if (loc) c = static_cast<char32_t>(upper ? towupper_l(static_cast<wint_t>(c), loc) : towlower_l(static_cast<wint_t>(c), loc));
    else if (c < 0x80) c = static_cast<char32_t>(upper ? std::toupper(static_cast<int>(c)) : std::tolower(static_cast<int>(c)));
  }
  return utf8_encode(u);
}

void string_normalizer(KernelContext& ctx) {
  const ir::Node& n = ctx.node();
  const Tensor& x = ctx.input(0);
  ctx.check(x.dtype() == DType::String, "input must be a string tensor, got {}", dtype_name(x.dtype()));
  ctx.check(x.rank() == 1 || (x.rank() == 2 && x.dim(0) == 1), "input must be [C] or [1, C], got {}",
            shape_str(x.shape()));
  std::string action = n.attr_s("case_change_action", "NONE");
  ctx.check(action == "NONE" || action == "LOWER" || action == "UPPER", "unknown case_change_action '{}'", action);
  bool sensitive = n.attr_i("is_case_sensitive", 0) != 0;
  std::vector<std::string> stop = n.attr_strings("stopwords");
  if (!sensitive) for (auto& w : stop) w = change_case(ctx, w, false);
  std::vector<std::string> kept;
  for (const std::string& s : x.strings()) {
    std::string key = sensitive ? s : change_case(ctx, s, false);
    if (std::find(stop.begin(), stop.end(), key) != stop.end()) continue;
    kept.push_back(action == "NONE" ? s : change_case(ctx, s, action == "UPPER"));
  }
  // Everything dropped: one empty string, so the output keeps its rank.
  if (kept.empty()) kept.push_back("");
  Shape shape = x.rank() == 1 ? Shape{static_cast<int64_t>(kept.size())} : Shape{1, static_cast<int64_t>(kept.size())};
  Tensor& y = ctx.alloc_output(0, DType::String, shape);
  y.strings() = std::move(kept);
}

// ---- TfIdfVectorizer (opset 9) ----------------------------------------------------------------------

// Counts, per row, every n-gram with min_gram_length <= n <= max_gram_length whose tokens sit at
// positions i, i+d, ..., i+(n-1)d for a distance d in 1 .. max_skip_count+1 (unigrams once: their
// position set does not depend on d), keeping those found in the pool. Y[ngram_indexes[k]] is the
// count of pool n-gram k: TF as is, IDF min(count, 1) * weight[k], TFIDF count * weight[k]
// (weights default to 1).
void tfidf_vectorizer(KernelContext& ctx) {
  const ir::Node& n = ctx.node();
  const Tensor& x = ctx.input(0);
  const int64_t min_n = n.attr_i("min_gram_length", 0), max_n = n.attr_i("max_gram_length", 0);
  const int64_t max_skip = n.attr_i("max_skip_count", 0);
  std::string mode = n.attr_s("mode", "");
  ctx.check(mode == "TF" || mode == "IDF" || mode == "TFIDF", "mode must be TF, IDF or TFIDF, got '{}'", mode);
  ctx.check(min_n >= 1 && min_n <= max_n, "need 1 <= min_gram_length ({}) <= max_gram_length ({})", min_n, max_n);
  ctx.check(max_skip >= 0, "max_skip_count must be >= 0, got {}", max_skip);
  auto counts = n.attr_ints("ngram_counts");
  auto indexes = n.attr_ints("ngram_indexes");
  auto weights = n.attr_floats("weights");
  auto pool_i = n.attr_ints("pool_int64s");
  auto pool_s = n.attr_strings("pool_strings");
  ctx.check(pool_i.empty() != pool_s.empty(), "exactly one of pool_int64s and pool_strings must be set");
  const bool strings = !pool_s.empty();
  ctx.check(strings ? x.dtype() == DType::String : (x.dtype() == DType::Int32 || x.dtype() == DType::Int64),
            "input type {} does not match the pool ({})", dtype_name(x.dtype()), strings ? "strings" : "int64s");
  const int64_t pool_size = static_cast<int64_t>(strings ? pool_s.size() : pool_i.size());
  ctx.check(static_cast<int64_t>(counts.size()) >= max_n,
            "ngram_counts has {} entries, need one per n-gram length up to {}", counts.size(), max_n);

  // Tokens as int64 ids; strings get the index of their first occurrence in pool_strings (-1 if absent).
  std::map<std::string, int64_t> string_id;
  for (int64_t i = 0; i < static_cast<int64_t>(pool_s.size()); ++i) string_id.emplace(pool_s[i], i);
  auto pool_token = [&](int64_t p) { return strings ? string_id.at(pool_s[p]) : pool_i[p]; };

  // Pool n-grams -> their ordinal k.
  std::map<std::vector<int64_t>, int64_t> gram_index;
  int64_t k = 0;
  for (size_t g = 0; g < counts.size(); ++g) {
    int64_t len = static_cast<int64_t>(g) + 1;
    int64_t start = counts[g], end = g + 1 < counts.size() ? counts[g + 1] : pool_size;
    ctx.check(start >= 0 && start <= end && end <= pool_size && (end - start) % len == 0,
              "ngram_counts[{}] = {} does not delimit whole {}-grams in a pool of {}", g, start, len, pool_size);
    for (int64_t p = start; p < end; p += len, ++k) {
      std::vector<int64_t> key(len);
      for (int64_t t = 0; t < len; ++t) key[t] = pool_token(p + t);
      gram_index.emplace(std::move(key), k);
    }
  }
  ctx.check(static_cast<int64_t>(indexes.size()) == k, "ngram_indexes has {} entries for {} pool n-grams",
            indexes.size(), k);
  ctx.check(weights.empty() || static_cast<int64_t>(weights.size()) == k, "weights has {} entries for {} n-grams",
            weights.size(), k);
  int64_t width = 0;
  for (int64_t v : indexes) {
    ctx.check(v >= 0, "ngram_indexes must be >= 0, got {}", v);
    width = std::max(width, v + 1);
  }
  ctx.check(x.rank() == 1 || x.rank() == 2, "input must be [C] or [N, C], got {}", shape_str(x.shape()));
  const int64_t rows = x.rank() == 1 ? 1 : x.dim(0), C = x.dim(x.rank() - 1);
  auto token = [&](int64_t i) -> int64_t {
    if (!strings) return x.get_i64(i);
    auto it = string_id.find(x.strings()[i]);
    return it == string_id.end() ? -1 : it->second;
  };
  Shape oshape = x.rank() == 1 ? Shape{width} : Shape{rows, width};
  Tensor& y = ctx.alloc_output(0, DType::Float32, oshape);
  float* yd = y.data<float>();
  std::vector<int64_t> cnt(static_cast<size_t>(k));
  std::vector<int64_t> key;
  for (int64_t r = 0; r < rows; ++r) {
    std::fill(cnt.begin(), cnt.end(), 0);
    for (int64_t len = min_n; len <= max_n; ++len)
      for (int64_t d = 1; d <= (len == 1 ? 1 : max_skip + 1); ++d)
        for (int64_t i = 0; i + (len - 1) * d < C; ++i) {
          key.resize(len);
          for (int64_t t = 0; t < len; ++t) key[t] = token(r * C + i + t * d);
          auto it = gram_index.find(key);
          if (it != gram_index.end()) ++cnt[it->second];
        }
    for (int64_t g = 0; g < k; ++g) {
      double w = weights.empty() ? 1.0 : weights[g];
      double v = mode == "TF" ? static_cast<double>(cnt[g]) : mode == "IDF" ? (cnt[g] > 0 ? w : 0.0) : cnt[g] * w;
      // Unfound n-grams leave their slot 0; should two pool n-grams share a slot, the later found wins.
      if (cnt[g] > 0) yd[r * width + indexes[g]] = static_cast<float>(v);
    }
  }
}

// ---- random generators ---------------------------------------------------------------------------
// A seeded mt19937_64 (seed = the bit pattern of the float `seed` attribute; without it, a seed
// from std::random_device). Uniform: low + (high - low) * u with u = 53 random bits / 2^53 in
// [0, 1); normal: Box-Muller. The values are therefore reproducible for a given seed but do not
// match numpy's or ONNX Runtime's random streams (nor does ONNX require them to).

struct Rng {
  std::mt19937_64 gen;
  explicit Rng(const ir::Node& n) {
    if (const auto* a = n.attr("seed")) {
      float s = a->f;
      uint32_t bits;
      std::memcpy(&bits, &s, 4);
      gen.seed(bits);
    } else {
      gen.seed((static_cast<uint64_t>(std::random_device{}()) << 32) ^ std::random_device{}());
    }
  }
  double uniform() { return static_cast<double>(gen() >> 11) * (1.0 / 9007199254740992.0); }
  double normal() {
    double u1 = uniform(), u2 = uniform();
    return std::sqrt(-2.0 * std::log(1.0 - u1)) * std::cos(2 * std::numbers::pi * u2);
  }
};

DType random_dtype(const KernelContext& ctx, DType dflt) {
  DType d = dflt;
  if (ctx.node().has_attr("dtype")) {
    int64_t t = ctx.node().attr_i("dtype", 1);
    try { d = dtype_from_onnx(static_cast<int>(t)); } catch (const Error&) { ctx.fail("unsupported dtype {}", t); }
  }
  return d;
}

void random_fill(KernelContext& ctx, const Shape& shape, DType dt, bool normal) {
  ctx.check(dtype_is_float(dt), "random values need a float dtype, got {}", dtype_name(dt));
  const ir::Node& n = ctx.node();
  double a = normal ? n.attr_f("mean", 0.0f) : n.attr_f("low", 0.0f);
  double b = normal ? n.attr_f("scale", 1.0f) : n.attr_f("high", 1.0f);
  Rng rng(n);
  Tensor& y = ctx.alloc_output(0, dt, shape);  // first: checks the size against the memory limit
  std::vector<double> v(static_cast<size_t>(y.numel()));
  for (double& e : v) e = normal ? a + b * rng.normal() : a + (b - a) * rng.uniform();
  store_doubles(y, v);
}

void random_uniform(KernelContext& ctx) {
  auto shape = ctx.node().attr_ints("shape");
  ctx.check(ctx.node().has_attr("shape"), "the shape attribute is required");
  for (int64_t d : shape) ctx.check(d >= 0, "shape has a negative dimension {}", d);
  random_fill(ctx, shape, random_dtype(ctx, DType::Float32), false);
}
void random_normal(KernelContext& ctx) {
  auto shape = ctx.node().attr_ints("shape");
  ctx.check(ctx.node().has_attr("shape"), "the shape attribute is required");
  for (int64_t d : shape) ctx.check(d >= 0, "shape has a negative dimension {}", d);
  random_fill(ctx, shape, random_dtype(ctx, DType::Float32), true);
}
void random_uniform_like(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  random_fill(ctx, x.shape(), random_dtype(ctx, x.dtype()), false);
}
void random_normal_like(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  random_fill(ctx, x.shape(), random_dtype(ctx, x.dtype()), true);
}

// y = 1 with probability p: u < p for u uniform in [0, 1).
void bernoulli(KernelContext& ctx) {
  const Tensor& p = ctx.input(0);
  ctx.check(dtype_is_float(p.dtype()), "input must be a float tensor of probabilities, got {}", dtype_name(p.dtype()));
  DType dt = random_dtype(ctx, p.dtype());
  ctx.check(dt != DType::String, "dtype must be numeric or bool");
  Rng rng(ctx.node());
  Tensor& y = ctx.alloc_output(0, dt, p.shape());
  std::vector<double> v(static_cast<size_t>(p.numel()));
  for (int64_t i = 0; i < p.numel(); ++i) {
    double pi = p.get_f64(i);
    ctx.check(pi >= 0 && pi <= 1, "probability {} at index {} is outside [0, 1]", pi, i);
    v[i] = rng.uniform() < pi ? 1.0 : 0.0;
  }
  store_doubles(y, v);
}

}  // namespace

void register_misc(Registry& r) {
  register_resize(r);
  r.add({"NonMaxSuppression", "", 10, 17, "float boxes/scores -> int64", non_max_suppression});
  r.add({"DFT", "", 17, 17, "float16, bfloat16, float, double", dft});
  r.add({"STFT", "", 17, 17, "float16, bfloat16, float, double", stft});
  r.add({"HannWindow", "", 17, 17, "size int32/int64 -> any numeric", hann_window});
  r.add({"HammingWindow", "", 17, 17, "size int32/int64 -> any numeric", hamming_window});
  r.add({"BlackmanWindow", "", 17, 17, "size int32/int64 -> any numeric", blackman_window});
  r.add({"MelWeightMatrix", "", 17, 17, "int32/int64, float -> any numeric", mel_weight_matrix});
  r.add({"StringNormalizer", "", 10, 17, "string", string_normalizer});
  r.add({"TfIdfVectorizer", "", 9, 17, "string, int32, int64 -> float", tfidf_vectorizer});
  r.add({"RandomUniform", "", 1, 17, "float16, float, double (own generator, not numpy's stream)", random_uniform});
  r.add({"RandomNormal", "", 1, 17, "float16, float, double (own generator, not numpy's stream)", random_normal});
  r.add({"RandomUniformLike", "", 1, 17, "float16, float, double (own generator)", random_uniform_like});
  r.add({"RandomNormalLike", "", 1, 17, "float16, float, double (own generator)", random_normal_like});
  r.add({"Bernoulli", "", 15, 17, "float16, float, double -> numeric, bool (own generator)", bernoulli});
}

}  // namespace opennpu::cpu
