// Unit tests for core/half.h: float <-> fp16 / bf16 conversion.
// The oracle is written independently in double arithmetic: a format is (mantissa bits, smallest
// normal exponent, largest exponent), and rounding is rint(x / ulp) * ulp in the default
// round-to-nearest-even mode, which is exact in double for every float input.
#include <gtest/gtest.h>

#include <cfenv>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>

#include "core/half.h"

using namespace opennpu;

namespace {

struct Format {
  int mant_bits;  // explicit fraction bits
  int min_exp;    // exponent of the smallest normal number
  int max_exp;    // exponent of the largest finite number
};
constexpr Format kHalf{10, -14, 15};
constexpr Format kBf16{7, -126, 127};

// Decodes a 16-bit pattern of a format with `f.mant_bits` fraction bits, by definition.
double decode_ref(uint16_t bits, Format f) {
  const int exp_bits = 15 - f.mant_bits;
  const int bias = (1 << (exp_bits - 1)) - 1;
  const bool neg = bits >> 15;
  const int e = (bits >> f.mant_bits) & ((1 << exp_bits) - 1);
  const int m = bits & ((1 << f.mant_bits) - 1);
  double v;
  if (e == (1 << exp_bits) - 1) v = m ? std::numeric_limits<double>::quiet_NaN() : INFINITY;
  else if (e == 0) v = std::ldexp(m, 1 - bias - f.mant_bits);        // subnormal: 0.m x 2^(1-bias)
  else v = std::ldexp(m + (1 << f.mant_bits), e - bias - f.mant_bits);  // normal: 1.m x 2^(e-bias)
  return neg ? -v : v;
}

// Rounds x to the format (RNE, overflow to inf), returning the value as a double.
double round_ref(double x, Format f) {
  if (std::isnan(x) || std::isinf(x) || x == 0) return x;
  const double a = std::fabs(x);
  const int e = std::max(std::ilogb(a), f.min_exp);  // below min_exp the spacing stays fixed: subnormals
  const double ulp = std::ldexp(1.0, e - f.mant_bits);
  double r = std::rint(a / ulp) * ulp;  // a / ulp is exact (power-of-two scaling); rint is RNE
  if (r >= std::ldexp(1.0, f.max_exp + 1)) r = INFINITY;
  return std::copysign(r, x);
}

bool same_value(double a, double b) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
  return a == b && std::signbit(a) == std::signbit(b);
}

}  // namespace

TEST(Half, DecodeAll65536PatternsMatchReference) {
  for (uint32_t b = 0; b < 65536; ++b) {
    const double ref = decode_ref(static_cast<uint16_t>(b), kHalf);
    const float got = f16_bits_to_f32(static_cast<uint16_t>(b));
    ASSERT_TRUE(same_value(got, ref)) << "bits 0x" << std::hex << b << ": got " << got << " want " << ref;
  }
}

TEST(Half, RoundTripAll65536Patterns) {
  int nans = 0;
  for (uint32_t b = 0; b < 65536; ++b) {
    const auto h = static_cast<uint16_t>(b);
    const uint16_t back = f32_to_f16_bits(f16_bits_to_f32(h));
    if ((h & 0x7C00u) == 0x7C00u && (h & 0x3FFu)) {
      // NaN stays NaN with its sign and is made quiet.
      ++nans;
      EXPECT_EQ(back & 0x7C00u, 0x7C00u);
      EXPECT_NE(back & 0x3FFu, 0u);
      EXPECT_NE(back & 0x200u, 0u);
      EXPECT_EQ(back & 0x8000u, h & 0x8000u);
    } else {
      ASSERT_EQ(back, h) << "bits 0x" << std::hex << b;
    }
  }
  EXPECT_EQ(nans, 2 * 1023);
}

TEST(Half, EncodeMatchesReferenceAtEveryTieAndNeighbour) {
  ASSERT_EQ(std::fegetround(), FE_TONEAREST);
  // For each pair of adjacent non-negative finite halves, the midpoint (a tie: must go to the even
  // one), the floats just around it, and the halves themselves. Midpoints of halves are exact floats.
  for (uint32_t b = 0; b < 0x7C00u; ++b) {
    const double lo = decode_ref(static_cast<uint16_t>(b), kHalf);
    const double hi = b + 1 == 0x7C00u ? 65536.0 : decode_ref(static_cast<uint16_t>(b + 1), kHalf);
    const float mid = static_cast<float>((lo + hi) / 2);
    ASSERT_EQ(static_cast<double>(mid), (lo + hi) / 2);
    for (float x : {static_cast<float>(lo), mid, std::nextafter(mid, 0.f), std::nextafter(mid, INFINITY)}) {
      for (float s : {x, -x}) {
        const double want = round_ref(s, kHalf);
        const float got = f16_bits_to_f32(f32_to_f16_bits(s));
        ASSERT_TRUE(same_value(got, want)) << "x=" << s << " (bits 0x" << std::hex << f32_bits(s) << ") got " << got
                                           << " want " << want;
      }
    }
  }
}

TEST(Half, EncodeMatchesReferenceOnRandomFloats) {
  std::mt19937 rng(12345);
  for (int i = 0; i < 2'000'000; ++i) {
    const float x = f32_from_bits(rng());
    const double want = round_ref(x, kHalf);
    const float got = f16_bits_to_f32(f32_to_f16_bits(x));
    ASSERT_TRUE(same_value(got, want)) << "bits 0x" << std::hex << f32_bits(x);
  }
}

TEST(Half, SpecialCases) {
  EXPECT_EQ(f32_to_f16_bits(0.f), 0x0000);
  EXPECT_EQ(f32_to_f16_bits(-0.f), 0x8000);
  EXPECT_EQ(f32_to_f16_bits(1.f), 0x3C00);
  EXPECT_EQ(f32_to_f16_bits(65504.f), 0x7BFF);             // largest finite
  EXPECT_EQ(f32_to_f16_bits(65519.996f), 0x7BFF);          // just below the overflow tie
  EXPECT_EQ(f32_to_f16_bits(65520.f), 0x7C00);             // tie with odd 0x7BFF: rounds up to inf
  EXPECT_EQ(f32_to_f16_bits(1e9f), 0x7C00);
  EXPECT_EQ(f32_to_f16_bits(-1e9f), 0xFC00);
  EXPECT_EQ(f32_to_f16_bits(INFINITY), 0x7C00);
  EXPECT_EQ(f32_to_f16_bits(std::ldexp(1.f, -24)), 0x0001);  // smallest subnormal
  EXPECT_EQ(f32_to_f16_bits(std::ldexp(1.f, -25)), 0x0000);  // tie between 0 and 2^-24: to even (0)
  EXPECT_EQ(f32_to_f16_bits(std::ldexp(3.f, -25)), 0x0002);  // tie between 1 and 2 ulps: to even (2)
  EXPECT_EQ(f32_to_f16_bits(std::nextafter(std::ldexp(1.f, -25), 1.f)), 0x0001);
  EXPECT_EQ(f32_to_f16_bits(std::ldexp(1.f, -14)), 0x0400);  // smallest normal
  EXPECT_EQ(f32_to_f16_bits(std::ldexp(1023.5f, -24)), 0x0400);  // subnormal rounding carries into normal
  EXPECT_EQ(f32_to_f16_bits(1.f + std::ldexp(1.f, -11)), 0x3C00);      // tie, even stays
  EXPECT_EQ(f32_to_f16_bits(1.f + 3 * std::ldexp(1.f, -11)), 0x3C02);  // tie, odd rounds up
  EXPECT_EQ(f32_to_f16_bits(1e-30f), 0x0000);
  // Signalling NaN (payload only in the low bits) must not become infinity.
  const uint16_t snan = f32_to_f16_bits(f32_from_bits(0x7F800001u));
  EXPECT_EQ(snan & 0x7C00u, 0x7C00u);
  EXPECT_NE(snan & 0x3FFu, 0u);
  EXPECT_TRUE(std::isnan(f16_bits_to_f32(f32_to_f16_bits(std::numeric_limits<float>::quiet_NaN()))));
  EXPECT_EQ(round_f16(0.1f), f16_bits_to_f32(0x2E66));
  EXPECT_EQ(static_cast<float>(Half(2.5f)), 2.5f);
}

TEST(BFloat16, DecodeAllPatternsMatchReference) {
  for (uint32_t b = 0; b < 65536; ++b) {
    const double ref = decode_ref(static_cast<uint16_t>(b), kBf16);
    ASSERT_TRUE(same_value(bf16_bits_to_f32(static_cast<uint16_t>(b)), ref)) << "bits 0x" << std::hex << b;
  }
}

TEST(BFloat16, RoundTripAllPatterns) {
  for (uint32_t b = 0; b < 65536; ++b) {
    const auto h = static_cast<uint16_t>(b);
    const uint16_t back = f32_to_bf16_bits(bf16_bits_to_f32(h));
    if ((h & 0x7F80u) == 0x7F80u && (h & 0x7Fu)) {
      EXPECT_TRUE(std::isnan(bf16_bits_to_f32(back)));
      EXPECT_NE(back & 0x40u, 0u);  // quiet
    } else {
      ASSERT_EQ(back, h) << "bits 0x" << std::hex << b;
    }
  }
}

TEST(BFloat16, EncodeMatchesReferenceAtTiesAndOnRandomFloats) {
  // Every tie between adjacent bf16 values of one sign (x = lo + ulp/2) and its neighbours.
  for (uint32_t b = 0; b < 0x7F80u; ++b) {
    const uint32_t mid_bits = (b << 16) | 0x8000u;
    for (uint32_t bits : {mid_bits, mid_bits - 1, mid_bits + 1, b << 16}) {
      for (uint32_t sign : {0u, 0x80000000u}) {
        const float x = f32_from_bits(bits | sign);
        ASSERT_TRUE(same_value(bf16_bits_to_f32(f32_to_bf16_bits(x)), round_ref(x, kBf16)))
            << "bits 0x" << std::hex << (bits | sign);
      }
    }
  }
  std::mt19937 rng(777);
  for (int i = 0; i < 2'000'000; ++i) {
    const float x = f32_from_bits(rng());
    ASSERT_TRUE(same_value(bf16_bits_to_f32(f32_to_bf16_bits(x)), round_ref(x, kBf16)))
        << "bits 0x" << std::hex << f32_bits(x);
  }
}

TEST(BFloat16, SpecialCases) {
  EXPECT_EQ(f32_to_bf16_bits(1.f), 0x3F80);
  EXPECT_EQ(f32_to_bf16_bits(-0.f), 0x8000);
  EXPECT_EQ(f32_to_bf16_bits(std::numeric_limits<float>::max()), 0x7F80);  // rounds past the largest bf16
  EXPECT_EQ(f32_to_bf16_bits(INFINITY), 0x7F80);
  EXPECT_EQ(f32_to_bf16_bits(f32_from_bits(0x3F808000u)), 0x3F80);  // tie, even stays
  EXPECT_EQ(f32_to_bf16_bits(f32_from_bits(0x3F818000u)), 0x3F82);  // tie, odd rounds up
  EXPECT_EQ(f32_to_bf16_bits(f32_from_bits(0x00000001u)), 0x0000);  // tiny float subnormal rounds to 0
  const uint16_t snan = f32_to_bf16_bits(f32_from_bits(0x7F800001u));
  EXPECT_TRUE(std::isnan(bf16_bits_to_f32(snan)));
}
