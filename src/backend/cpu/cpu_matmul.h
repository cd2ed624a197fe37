#pragma once
// The CPU backend's matrix product y = x W^T with W packed once, at upload, into the layout the
// product kernel reads (oneDNN's blocked weight layout), so that no call repacks or reallocates.
// Internal to src/backend/cpu.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "model/safetensors_file.h"

namespace moetrace::cpu {

enum class WeightType { F32, BF16 };

// Weight W [n, k] in one of two forms:
//  - packed: oneDNN's blocked layout for matmul (float32 or bf16), read only by `matmul`;
//  - plain: row-major float32 or bf16, for row access (embedding tables, the read-out) and for the
//    portable bf16 fallback product.
class PackedWeight {
 public:
  // Packs (or copies) a checkpoint tensor [n, k]; `type` is the stored element type.
  PackedWeight(const TensorView& view, int n, int k, WeightType type, bool packed);
  ~PackedWeight();
  PackedWeight(const PackedWeight&) = delete;
  PackedWeight& operator=(const PackedWeight&) = delete;

  int n() const { return n_; }
  int k() const { return k_; }
  WeightType type() const { return type_; }
  bool packed() const { return packed_ != nullptr; }
  std::size_t bytes() const;
  // The plain float32 data (plain float32 weights only).
  const float* f32_data() const { return f32_.data(); }
  // Row r as float32 (plain weights only).
  void row(int r, float* out) const;
  // Dot product of x[k] with row r (plain weights only).
  float dot_row(const float* x, int r) const;

  struct Packed;  // oneDNN objects

 private:
  friend void matmul(const float*, int, const PackedWeight&, float*);
  int n_, k_;
  WeightType type_;
  std::vector<float> f32_;           // plain float32
  std::vector<std::uint16_t> bf16_;  // plain bf16
  std::unique_ptr<Packed> packed_;
};

// y[m, n] = x[m, k] W^T (float32 in and out, y overwritten). bf16 weights multiply bf16-rounded x
// with float32 accumulation. Thread-safe; inside an OpenMP parallel region it runs on the calling
// thread only. Workspaces are thread-local and grow only.
void matmul(const float* x, int m, const PackedWeight& w, float* y);

// True when oneDNN multiplies bf16 with native instructions on this CPU (AVX512_BF16 or AMX).
bool cpu_has_native_bf16();

}  // namespace moetrace::cpu
