// Tensor storage, dtype tables and overflow-checked size arithmetic.
#include "opennpu/tensor.h"

#include <atomic>
#include <cstring>
#include <limits>

#include <fmt/format.h>

#include "core/half.h"

namespace opennpu {

namespace {
std::atomic<uint64_t> g_max_tensor_bytes{16ull << 30};

struct DTypeInfo { DType t; const char* name; size_t size; int onnx; };
constexpr DTypeInfo kInfo[] = {
    {DType::Undefined, "undefined", 0, 0}, {DType::Float32, "float32", 4, 1},
    {DType::Float16, "float16", 2, 10},    {DType::BFloat16, "bfloat16", 2, 16},
    {DType::Float64, "float64", 8, 11},    {DType::Int8, "int8", 1, 3},
    {DType::Int16, "int16", 2, 5},         {DType::Int32, "int32", 4, 6},
    {DType::Int64, "int64", 8, 7},         {DType::UInt8, "uint8", 1, 2},
    {DType::UInt16, "uint16", 2, 4},       {DType::UInt32, "uint32", 4, 12},
    {DType::UInt64, "uint64", 8, 13},      {DType::Bool, "bool", 1, 9},
    {DType::String, "string", 0, 8},
};
const DTypeInfo& info(DType t) { return kInfo[static_cast<size_t>(t)]; }
}  // namespace

size_t dtype_size(DType t) { return info(t).size; }
std::string_view dtype_name(DType t) { return info(t).name; }
DType dtype_from_name(std::string_view name) {
  for (const auto& i : kInfo)
    if (name == i.name && i.t != DType::Undefined) return i.t;
  throw Error(fmt::format("unknown dtype '{}'", name));
}
bool dtype_is_float(DType t) {
  return t == DType::Float32 || t == DType::Float16 || t == DType::BFloat16 || t == DType::Float64;
}
bool dtype_is_integer(DType t) {
  switch (t) {
    case DType::Int8: case DType::Int16: case DType::Int32: case DType::Int64:
    case DType::UInt8: case DType::UInt16: case DType::UInt32: case DType::UInt64: return true;
    default: return false;
  }
}
bool dtype_is_signed(DType t) {
  return t == DType::Int8 || t == DType::Int16 || t == DType::Int32 || t == DType::Int64 || dtype_is_float(t);
}
DType dtype_from_onnx(int onnx_type) {
  for (const auto& i : kInfo)
    if (i.onnx == onnx_type && i.t != DType::Undefined) return i.t;
  throw Error(fmt::format("unsupported ONNX tensor element type {}", onnx_type));
}
int dtype_to_onnx(DType t) { return info(t).onnx; }

void set_max_tensor_bytes(uint64_t bytes) { g_max_tensor_bytes = bytes; }
uint64_t max_tensor_bytes() { return g_max_tensor_bytes; }

int64_t checked_numel(const Shape& shape, const std::string& what) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) throw Error(fmt::format("{}: negative dimension {} in shape {}", what, d, shape_str(shape)));
    if (d != 0 && n > std::numeric_limits<int64_t>::max() / d)
      throw Error(fmt::format("{}: shape {} has more elements than int64 can count", what, shape_str(shape)));
    n *= d;
  }
  return n;
}

std::string shape_str(const Shape& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? "," : "") + std::to_string(shape[i]);
  return s + "]";
}

Tensor::Tensor(DType dtype, Shape shape) : dtype_(dtype), shape_(std::move(shape)) {
  numel_ = checked_numel(shape_);
  if (dtype_ == DType::String) {
    strings_ = std::make_shared<std::vector<std::string>>(static_cast<size_t>(numel_));
    return;
  }
  const uint64_t es = dtype_size(dtype_);
  if (es != 0 && static_cast<uint64_t>(numel_) > max_tensor_bytes() / es)
    throw MemoryLimitError(fmt::format("tensor of {} {} elements ({} bytes) exceeds the memory limit of {} bytes (--max-memory)",
                            shape_str(shape_), dtype_name(dtype_), static_cast<double>(numel_) * es, max_tensor_bytes()));
  size_t bytes = static_cast<size_t>(numel_) * es;
  // 64-byte aligned, zeroed; at least one byte so data() is never null.
  size_t alloc = (bytes + 63) & ~size_t{63};
  if (alloc == 0) alloc = 64;
  void* p = ::operator new[](alloc, std::align_val_t{64});
  std::memset(p, 0, alloc);
  owner_ = std::shared_ptr<std::byte[]>(static_cast<std::byte*>(p),
                                        [](std::byte* q) { ::operator delete[](q, std::align_val_t{64}); });
  ptr_ = p;
}

Tensor Tensor::borrow(DType dtype, Shape shape, void* data) {
  Tensor t;
  t.dtype_ = dtype;
  t.shape_ = std::move(shape);
  t.numel_ = checked_numel(t.shape_);
  t.ptr_ = data;
  return t;
}

Tensor Tensor::adopt(DType dtype, Shape shape, std::shared_ptr<std::byte[]> buffer, size_t capacity) {
  if (dtype == DType::String) throw Error("Tensor::adopt: string tensors own their storage");
  Tensor t;
  t.dtype_ = dtype;
  t.shape_ = std::move(shape);
  t.numel_ = checked_numel(t.shape_);
  const uint64_t es = dtype_size(dtype);
  if (es != 0 && static_cast<uint64_t>(t.numel_) > max_tensor_bytes() / es)
    throw MemoryLimitError(fmt::format("tensor of {} {} elements exceeds the memory limit of {} bytes (--max-memory)",
                            shape_str(t.shape_), dtype_name(dtype), max_tensor_bytes()));
  if (t.nbytes() > capacity)
    throw Error(fmt::format("Tensor::adopt: shape {} needs {} bytes, buffer has {}", shape_str(t.shape_), t.nbytes(), capacity));
  t.ptr_ = buffer.get();
  t.owner_ = std::move(buffer);
  return t;
}

Tensor Tensor::scalar_f32(float v) { Tensor t(DType::Float32, {}); *t.data<float>() = v; return t; }
Tensor Tensor::scalar_i64(int64_t v) { Tensor t(DType::Int64, {}); *t.data<int64_t>() = v; return t; }

Tensor Tensor::make_sequence(DType elem, std::vector<Tensor> items) {
  Tensor t;
  t.dtype_ = elem;
  t.seq_ = std::make_shared<std::vector<Tensor>>(std::move(items));
  return t;
}
Tensor Tensor::make_none(bool of_sequence) {
  Tensor t;
  t.none_ = true;
  t.none_of_seq_ = of_sequence;
  return t;
}
const std::vector<Tensor>& Tensor::sequence() const {
  if (!seq_) throw Error("value is not a sequence");
  return *seq_;
}

std::vector<std::string>& Tensor::strings() {
  if (!strings_) throw Error("tensor is not a string tensor");
  return *strings_;
}
const std::vector<std::string>& Tensor::strings() const {
  if (!strings_) throw Error("tensor is not a string tensor");
  return *strings_;
}

Tensor Tensor::reshaped(Shape shape) const {
  if (checked_numel(shape) != numel_)
    throw Error(fmt::format("cannot reshape {} to {}", shape_str(shape_), shape_str(shape)));
  Tensor t = *this;
  t.shape_ = std::move(shape);
  return t;
}

Tensor Tensor::clone() const {
  Tensor t(dtype_, shape_);
  if (dtype_ == DType::String) *t.strings_ = *strings_;
  else if (nbytes()) std::memcpy(t.ptr_, ptr_, nbytes());
  return t;
}

double Tensor::get_f64(int64_t i) const {
  if (i < 0 || i >= numel_) throw Error("tensor element index out of range");
  switch (dtype_) {
    case DType::Float32: return data<float>()[i];
    case DType::Float16: return f16_bits_to_f32(data<uint16_t>()[i]);
    case DType::BFloat16: return bf16_bits_to_f32(data<uint16_t>()[i]);
    case DType::Float64: return data<double>()[i];
    case DType::Int8: return data<int8_t>()[i];
    case DType::Int16: return data<int16_t>()[i];
    case DType::Int32: return data<int32_t>()[i];
    case DType::Int64: return static_cast<double>(data<int64_t>()[i]);
    case DType::UInt8: return data<uint8_t>()[i];
    case DType::UInt16: return data<uint16_t>()[i];
    case DType::UInt32: return data<uint32_t>()[i];
    case DType::UInt64: return static_cast<double>(data<uint64_t>()[i]);
    case DType::Bool: return data<uint8_t>()[i] ? 1.0 : 0.0;
    default: throw Error(fmt::format("cannot read a {} element as a number", dtype_name(dtype_)));
  }
}

int64_t Tensor::get_i64(int64_t i) const {
  if (i < 0 || i >= numel_) throw Error("tensor element index out of range");
  switch (dtype_) {
    case DType::Int8: return data<int8_t>()[i];
    case DType::Int16: return data<int16_t>()[i];
    case DType::Int32: return data<int32_t>()[i];
    case DType::Int64: return data<int64_t>()[i];
    case DType::UInt8: return data<uint8_t>()[i];
    case DType::UInt16: return data<uint16_t>()[i];
    case DType::UInt32: return data<uint32_t>()[i];
    case DType::UInt64: return static_cast<int64_t>(data<uint64_t>()[i]);
    case DType::Bool: return data<uint8_t>()[i] ? 1 : 0;
    default: return static_cast<int64_t>(get_f64(i));
  }
}

std::vector<int64_t> Tensor::to_i64_vector() const {
  std::vector<int64_t> v(static_cast<size_t>(numel_));
  for (int64_t i = 0; i < numel_; ++i) v[static_cast<size_t>(i)] = get_i64(i);
  return v;
}

}  // namespace opennpu
