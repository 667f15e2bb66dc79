// opennpu/tensor.h — element types and the Tensor value type shared by every layer.
// A Tensor has a dtype, a shape (int64 dims, row-major) and a buffer it either owns (shared,
// reference-counted; copies share the data) or borrows from the caller. String tensors keep their
// elements in a separate vector. Bounds-checked size arithmetic lives here so every importer and
// kernel computes sizes the same, overflow-checked way.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "opennpu/errors.h"

namespace opennpu {

enum class DType : uint8_t {
  Undefined = 0,
  Float32, Float16, BFloat16, Float64,
  Int8, Int16, Int32, Int64,
  UInt8, UInt16, UInt32, UInt64,
  Bool, String,
};

using Shape = std::vector<int64_t>;

// Size in bytes of one element (String: 0, its data lives elsewhere).
size_t dtype_size(DType t);
// Short numpy-like name: "float32", "float16", "int64", "bool", ...
std::string_view dtype_name(DType t);
// Parse a name produced by dtype_name; throws Error on an unknown one.
DType dtype_from_name(std::string_view name);
bool dtype_is_float(DType t);    // float16/bfloat16/float32/float64
bool dtype_is_integer(DType t);  // signed or unsigned ints (not bool)
bool dtype_is_signed(DType t);
// ONNX TensorProto.DataType <-> DType. Throws Error for types opennpu does not take.
DType dtype_from_onnx(int onnx_type);
int dtype_to_onnx(DType t);

// Product of dims with overflow and negativity checks; throws Error naming `what`.
int64_t checked_numel(const Shape& shape, const std::string& what = "tensor");
std::string shape_str(const Shape& shape);  // "[1,3,224,224]"

// Hard cap on one tensor's bytes, settable by the CLI (--max-memory). Default 16 GiB.
void set_max_tensor_bytes(uint64_t bytes);
uint64_t max_tensor_bytes();

class Tensor {
 public:
  Tensor() = default;
  // Allocates zero-initialised storage (checked against max_tensor_bytes()).
  Tensor(DType dtype, Shape shape);
  // Wraps caller memory without copying; the caller keeps it alive while the Tensor is used.
  static Tensor borrow(DType dtype, Shape shape, void* data);
  // Wraps a shared buffer of `capacity` bytes (e.g. from a BufferPool); contents as they are.
  // Throws when the shape needs more than `capacity` bytes. Not for strings.
  static Tensor adopt(DType dtype, Shape shape, std::shared_ptr<std::byte[]> buffer, size_t capacity);
  // How many Tensors share this one's buffer (1: no alias; 0: borrowed or no buffer).
  long buffer_use_count() const { return owner_.use_count(); }
  // Scalar helpers.
  static Tensor scalar_f32(float v);
  static Tensor scalar_i64(int64_t v);

  bool empty_value() const { return dtype_ == DType::Undefined && !seq_ && !none_; }  // nothing produced

  // ONNX sequence and optional values ride in a Tensor too, so kernels and the executor keep one
  // value type. A sequence has dtype() = its element type and no shape; "none" is an empty optional.
  static Tensor make_sequence(DType elem, std::vector<Tensor> items);
  static Tensor make_none(bool of_sequence = false);
  bool is_sequence() const { return seq_ != nullptr; }
  bool is_none() const { return none_; }
  const std::vector<Tensor>& sequence() const;
  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  int64_t rank() const { return static_cast<int64_t>(shape_.size()); }
  int64_t dim(int64_t i) const { return shape_.at(static_cast<size_t>(i)); }
  int64_t numel() const { return numel_; }
  size_t nbytes() const { return static_cast<size_t>(numel_) * dtype_size(dtype_); }
  bool owns_data() const { return owner_ != nullptr || strings_ != nullptr; }

  void* raw() { return ptr_; }
  const void* raw() const { return ptr_; }
  template <class T> T* data() { return static_cast<T*>(ptr_); }
  template <class T> const T* data() const { return static_cast<const T*>(ptr_); }
  std::vector<std::string>& strings();
  const std::vector<std::string>& strings() const;

  // Same data, new shape (numel must match). Shares the buffer.
  Tensor reshaped(Shape shape) const;
  // Deep copy into owned storage.
  Tensor clone() const;
  // Reads element i converted to double / int64 (any numeric dtype). For scalar attributes,
  // shape inputs, indices: not for hot loops.
  double get_f64(int64_t i) const;
  int64_t get_i64(int64_t i) const;
  std::vector<int64_t> to_i64_vector() const;

 private:
  DType dtype_ = DType::Undefined;
  Shape shape_;
  int64_t numel_ = 0;
  std::shared_ptr<std::byte[]> owner_;
  void* ptr_ = nullptr;
  std::shared_ptr<std::vector<std::string>> strings_;
  std::shared_ptr<std::vector<Tensor>> seq_;
  bool none_ = false;
  bool none_of_seq_ = false;
 public:
  bool none_of_sequence() const { return none_of_seq_; }
};

}  // namespace opennpu
