// Unit tests for core/npy.h: round trips for every dtype .npy can carry, and hostile headers.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "core/half.h"
#include "core/npy.h"

using namespace opennpu;

namespace {

const DType kNpyTypes[] = {DType::Float32, DType::Float16, DType::Float64, DType::Int8,   DType::Int16, DType::Int32,
                           DType::Int64,   DType::UInt8,   DType::UInt16,  DType::UInt32, DType::UInt64, DType::Bool};

Tensor random_tensor(DType t, const Shape& s, uint32_t seed) {
  Tensor x(t, s);
  std::mt19937 rng(seed);
  auto* p = static_cast<unsigned char*>(x.raw());
  for (size_t i = 0; i < x.nbytes(); ++i) p[i] = static_cast<unsigned char>(rng());
  if (t == DType::Bool)
    for (int64_t i = 0; i < x.numel(); ++i) p[i] &= 1;
  return x;
}

std::string header(const std::string& dict) {
  std::string d = dict;
  while ((10 + d.size() + 1) % 64) d += ' ';
  d += '\n';
  std::string h = "\x93NUMPY\x01";
  h += '\0';
  h += static_cast<char>(d.size() & 0xFF);
  h += static_cast<char>(d.size() >> 8);
  return h + d;
}

void expect_error(const std::string& bytes, const std::string& needle) {
  try {
    parse_npy(bytes, "test.npy");
    ADD_FAILURE() << "no error; expected one mentioning '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("test.npy"), std::string::npos) << "message should name the file: " << e.what();
  }
}

}  // namespace

TEST(Npy, RoundTripEveryDtypeAndShape) {
  const Shape shapes[] = {{}, {0}, {7}, {2, 3}, {2, 0, 3}, {1, 3, 4, 5}};
  uint32_t seed = 1;
  for (DType t : kNpyTypes)
    for (const Shape& s : shapes) {
      Tensor x = random_tensor(t, s, seed++);
      Tensor y = parse_npy(serialize_npy(x), "mem");
      ASSERT_EQ(y.dtype(), t) << dtype_name(t);
      ASSERT_EQ(y.shape(), s) << dtype_name(t) << " " << shape_str(s);
      ASSERT_EQ(0, std::memcmp(x.raw(), y.raw(), x.nbytes())) << dtype_name(t) << " " << shape_str(s);
    }
}

TEST(Npy, FileRoundTripAndHeaderAlignment) {
  auto path = (std::filesystem::temp_directory_path() / "opennpu_test_core_npy.npy").string();
  Tensor x = random_tensor(DType::Float32, {3, 5}, 9);
  write_npy(path, x);
  Tensor y = read_npy(path);
  EXPECT_EQ(y.shape(), (Shape{3, 5}));
  EXPECT_EQ(0, std::memcmp(x.raw(), y.raw(), x.nbytes()));
  std::string bytes = serialize_npy(x);
  EXPECT_EQ((bytes.size() - x.nbytes()) % 64, 0u) << "data must start 64-byte aligned";
  std::filesystem::remove(path);
  EXPECT_THROW(read_npy(path), Error);
}

TEST(Npy, ReadsNumpyWrittenHeaders) {
  // Exactly what numpy 1.24 writes for np.array([[1, 2], [3, 4]], dtype='<i4'), plus big-endian.
  std::string le = header("{'descr': '<i4', 'fortran_order': False, 'shape': (2, 2), }");
  int32_t v[4] = {1, 2, 3, 4};
  Tensor a = parse_npy(le + std::string(reinterpret_cast<char*>(v), 16), "le");
  EXPECT_EQ(a.shape(), (Shape{2, 2}));
  EXPECT_EQ(a.data<int32_t>()[3], 4);
  std::string be = header("{'descr': '>i4', 'fortran_order': False, 'shape': (2,), }");
  Tensor b = parse_npy(be + std::string("\0\0\0\x07\0\0\x01\0", 8), "be");
  EXPECT_EQ(b.data<int32_t>()[0], 7);
  EXPECT_EQ(b.data<int32_t>()[1], 256);
  // Bools other than 0/1 are normalised.
  Tensor c = parse_npy(header("{'descr': '|b1', 'fortran_order': False, 'shape': (2,), }") + std::string("\x05\x00", 2), "bool");
  EXPECT_EQ(c.data<uint8_t>()[0], 1);
  // Scalar.
  float f = 2.5f;
  Tensor d = parse_npy(header("{'descr': '<f4', 'fortran_order': False, 'shape': (), }") +
                           std::string(reinterpret_cast<char*>(&f), 4), "scalar");
  EXPECT_EQ(d.rank(), 0);
  EXPECT_EQ(d.data<float>()[0], 2.5f);
}

TEST(Npy, RejectsBadFiles) {
  const std::string f4 = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }";
  const std::string data8(8, '\0');
  expect_error("", "not a .npy");
  expect_error("garbage garbage garbage", "not a .npy");
  std::string v9 = header(f4) + data8;
  v9[6] = 9;
  expect_error(v9, "version 9");
  std::string longhdr = header(f4) + data8;
  longhdr[8] = '\xff', longhdr[9] = '\xff';  // header length past the end of the file
  expect_error(longhdr, "truncated");
  expect_error(header(f4).substr(0, 30), "truncated");
  expect_error(header("{'fortran_order': False, 'shape': (2,), }") + data8, "descr");
  expect_error(header("{'descr': '<c8', 'fortran_order': False, 'shape': (2,), }") + data8, "dtype");
  expect_error(header("{'descr': '<f4', 'fortran_order': True, 'shape': (2,), }") + data8, "Fortran");
  expect_error(header("{'descr': '<f4', 'fortran_order': False, 'shape': (-2,), }") + data8, "bad dimension");
  expect_error(header("{'descr': '<f4', 'fortran_order': False, 'shape': (2a,), }") + data8, "bad dimension");
  expect_error(header("{'descr': '<f4', 'fortran_order': False, 'shape': 2, }") + data8, "shape");
  expect_error(header("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }") + data8, "needs");  // too short
  expect_error(header("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }") + data8, "needs");  // too long
  // A shape whose element count overflows int64 must be refused, not wrapped.
  expect_error(header("{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4294967296), }") + data8,
               "test.npy");
  // A shape that would need 4 PB: refused by the size check, nothing allocated.
  expect_error(header("{'descr': '<f4', 'fortran_order': False, 'shape': (1000000, 1000000, 1000), }") + data8, "needs");
}

TEST(Npy, RefusesToWriteTypesNpyCannotHold) {
  EXPECT_THROW(serialize_npy(Tensor(DType::BFloat16, {2})), Error);
}
