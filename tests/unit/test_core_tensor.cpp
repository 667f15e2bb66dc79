// Unit tests for opennpu/tensor.h: dtype tables, overflow-checked sizes and the memory cap.
#include <gtest/gtest.h>

#include <cstring>
#include <limits>

#include "opennpu/tensor.h"

using namespace opennpu;

namespace {
// Restores the process-wide tensor byte cap when a test ends, however it ends.
struct MaxBytesGuard {
  uint64_t saved = max_tensor_bytes();
  ~MaxBytesGuard() { set_max_tensor_bytes(saved); }
};
}  // namespace

TEST(Tensor, CheckedNumel) {
  EXPECT_EQ(checked_numel({}), 1);
  EXPECT_EQ(checked_numel({0}), 0);
  EXPECT_EQ(checked_numel({2, 3, 4}), 24);
  EXPECT_EQ(checked_numel({0, std::numeric_limits<int64_t>::max(), 2}), 0);  // zero anywhere: empty, no overflow
  EXPECT_EQ(checked_numel({std::numeric_limits<int64_t>::max()}), std::numeric_limits<int64_t>::max());
  EXPECT_THROW(checked_numel({-1}), Error);
  EXPECT_THROW(checked_numel({3, -2}), Error);
  EXPECT_THROW(checked_numel({int64_t{1} << 32, int64_t{1} << 32}), Error);  // exactly 2^64
  EXPECT_THROW(checked_numel({std::numeric_limits<int64_t>::max(), 2}), Error);
  EXPECT_THROW(checked_numel({3037000500, 3037000500}), Error);  // just over sqrt(2^63)
  try {
    checked_numel({1 << 30, 1 << 30, 1 << 30}, "weights 'w'");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("weights 'w'"), std::string::npos) << e.what();
  }
}

TEST(Tensor, AllocationIsCheckedAgainstTheCapBeforeAllocating) {
  MaxBytesGuard guard;
  // Element count fits int64 but bytes (x8) would overflow uint64 size_t arithmetic if unchecked.
  EXPECT_THROW(Tensor(DType::Float64, {int64_t{1} << 61}), Error);
  EXPECT_THROW(Tensor(DType::Float32, {1000000, 1000000}), Error);  // 4 TB > default 16 GiB cap
  set_max_tensor_bytes(1 << 20);
  EXPECT_NO_THROW(Tensor(DType::Float32, {1 << 18}));  // exactly 1 MiB
  EXPECT_THROW(Tensor(DType::Float32, {(1 << 18) + 1}), Error);
  EXPECT_THROW(Tensor(DType::Float32, {-4}), Error);
}

TEST(Tensor, BasicsAndSharing) {
  Tensor t(DType::Float32, {2, 3});
  EXPECT_EQ(t.numel(), 6);
  EXPECT_EQ(t.nbytes(), 24u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t.raw()) % 64, 0u);
  for (int64_t i = 0; i < 6; ++i) EXPECT_EQ(t.data<float>()[i], 0.f);  // zero-initialised
  t.data<float>()[4] = 7;
  Tensor copy = t;  // shares
  copy.data<float>()[0] = 1;
  EXPECT_EQ(t.data<float>()[0], 1);
  Tensor deep = t.clone();
  deep.data<float>()[0] = 5;
  EXPECT_EQ(t.data<float>()[0], 1);
  Tensor r = t.reshaped({3, 2});
  EXPECT_EQ(r.data<float>()[4], 7);
  EXPECT_THROW(t.reshaped({4, 2}), Error);
  EXPECT_EQ(t.get_f64(4), 7.0);
  EXPECT_THROW(t.get_f64(6), Error);
  EXPECT_THROW(t.get_i64(-1), Error);
  Tensor empty(DType::Int64, {0, 5});
  EXPECT_EQ(empty.numel(), 0);
  EXPECT_NE(empty.raw(), nullptr);
  EXPECT_EQ(shape_str({1, 3, 224, 224}), "[1,3,224,224]");
  EXPECT_EQ(shape_str({}), "[]");
}

TEST(Tensor, DtypeTables) {
  const DType all[] = {DType::Float32, DType::Float16, DType::BFloat16, DType::Float64, DType::Int8,
                       DType::Int16,   DType::Int32,   DType::Int64,    DType::UInt8,   DType::UInt16,
                       DType::UInt32,  DType::UInt64,  DType::Bool,     DType::String};
  for (DType t : all) {
    EXPECT_EQ(dtype_from_name(dtype_name(t)), t) << dtype_name(t);
    EXPECT_EQ(dtype_from_onnx(dtype_to_onnx(t)), t) << dtype_name(t);
  }
  EXPECT_EQ(dtype_size(DType::BFloat16), 2u);
  EXPECT_EQ(dtype_size(DType::Int64), 8u);
  EXPECT_EQ(dtype_size(DType::Bool), 1u);
  EXPECT_THROW(dtype_from_name("complex64"), Error);
  EXPECT_THROW(dtype_from_onnx(14), Error);  // COMPLEX64
  EXPECT_THROW(dtype_from_onnx(12345), Error);
  EXPECT_TRUE(dtype_is_float(DType::BFloat16));
  EXPECT_FALSE(dtype_is_integer(DType::Bool));
  EXPECT_TRUE(dtype_is_signed(DType::Int8));
  EXPECT_FALSE(dtype_is_signed(DType::UInt64));
}
