#pragma once
// A memory-mapped .safetensors file. The header is validated completely on open (sizes, offsets,
// dtypes) so that later code can trust every TensorView; tensor data is never copied here.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace moetrace {

enum class DType { BF16, F16, F32 };
std::size_t dtype_size(DType d);
std::string to_string(DType d);

// The largest header a safetensors file may declare (the reference implementation's limit).
inline constexpr std::uint64_t kMaxSafetensorsHeaderBytes = 100'000'000;

// A read-only view of one tensor inside a mapped file.
struct TensorView {
  std::string name;
  std::string file;  // for error messages
  DType dtype{};
  std::vector<std::int64_t> shape;
  const std::byte* data = nullptr;

  // Checked: an InputError naming the file and the tensor when the element count overflows.
  std::int64_t numel() const;
  std::string shape_string() const;  // "[64, 96]"
  // Converts the whole tensor to float32 (exact for bf16/f16).
  void to_float(float* out) const;
  std::vector<float> to_float() const;
};

// The index of the first NaN or infinite element of `t`, if any.
std::optional<std::int64_t> first_nonfinite(const TensorView& t);

class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::filesystem::path& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::map<std::string, TensorView>& tensors() const { return tensors_; }
  const std::filesystem::path& path() const { return path_; }
  std::size_t file_size() const { return size_; }
  const std::byte* mapped_bytes() const { return base_; }

 private:
  void read_header();

  std::filesystem::path path_;
  const std::byte* base_ = nullptr;
  std::size_t size_ = 0;
  std::map<std::string, TensorView> tensors_;
};

}  // namespace moetrace
