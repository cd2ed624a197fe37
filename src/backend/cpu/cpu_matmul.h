#pragma once
// The CPU backend's matrix product y = x W^T with W packed once, at upload, into the layout the
// product kernel reads (oneDNN's blocked weight layout), so that no call repacks or reallocates.
// Internal to src/backend/cpu.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "model/safetensors_file.h"

namespace moetrace::cpu {

enum class WeightType { F32, BF16 };

// Weight W [n, k] in one of two forms:
//  - packed: oneDNN's blocked layout for matmul (float32 or bf16), read only by `matmul`;
//  - plain: row-major float32 or bf16, for row access (embedding tables, the read-out) and for the
//    portable bf16 fallback product.
// Its bytes (the image) are either owned (packed from a checkpoint tensor) or borrowed: a read-only
// mapping of the weight store, used in place (docs/weights.md).
class PackedWeight {
 public:
  // Packs (or copies) a checkpoint tensor [n, k]; `type` is the stored element type.
  PackedWeight(const TensorView& view, int n, int k, WeightType type, bool packed);
  // Uses `bytes` bytes at `image` in place (they must outlive the weight); InputError naming
  // `origin` when the size is not image_bytes(n, k, type, packed).
  PackedWeight(const std::byte* image, std::size_t bytes, int n, int k, WeightType type, bool packed,
               const std::string& origin);
  ~PackedWeight();
  PackedWeight(const PackedWeight&) = delete;
  PackedWeight& operator=(const PackedWeight&) = delete;

  // The size of the image of a weight of this shape and form on this CPU and oneDNN.
  static std::size_t image_bytes(int n, int k, WeightType type, bool packed);

  int n() const { return n_; }
  int k() const { return k_; }
  WeightType type() const { return type_; }
  bool packed() const { return packed_ != nullptr; }
  std::size_t bytes() const { return bytes_; }
  const std::byte* image() const { return data_; }
  // The plain float32 data (plain float32 weights only).
  const float* f32_data() const { return reinterpret_cast<const float*>(data_); }
  // Row r as float32 (plain weights only).
  void row(int r, float* out) const;
  // Dot product of x[k] with row r (plain weights only).
  float dot_row(const float* x, int r) const;

  struct Packed;  // oneDNN objects

 private:
  friend void matmul(const float*, int, const PackedWeight&, float*);
  const std::uint16_t* bf16_data() const { return reinterpret_cast<const std::uint16_t*>(data_); }
  std::byte* allocate(std::size_t bytes);
  int n_, k_;
  WeightType type_;
  struct Free {
    void operator()(std::byte* p) const;
  };
  std::unique_ptr<std::byte, Free> owned_;  // the image when owned
  const std::byte* data_ = nullptr;         // the image, owned or mapped
  std::size_t bytes_ = 0;
  std::unique_ptr<Packed> packed_;
};

// y[m, n] = x[m, k] W^T (float32 in and out, y overwritten). bf16 weights multiply bf16-rounded x
// with float32 accumulation. Thread-safe; inside an OpenMP parallel region it runs on the calling
// thread only. Workspaces are thread-local and grow only.
void matmul(const float* x, int m, const PackedWeight& w, float* y);

// True when oneDNN multiplies bf16 with native instructions on this CPU (AVX512_BF16 or AMX).
bool cpu_has_native_bf16();

}  // namespace moetrace::cpu
