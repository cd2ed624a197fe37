#include "model/safetensors_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <numeric>

#include <nlohmann/json.hpp>

#include "util/error.h"
#include "util/half_precision.h"

namespace moetrace {

std::size_t dtype_size(DType d) {
  switch (d) {
    case DType::BF16: return 2;
    case DType::F16: return 2;
    case DType::F32: return 4;
  }
  return 0;
}

std::string to_string(DType d) {
  switch (d) {
    case DType::BF16: return "BF16";
    case DType::F16: return "F16";
    case DType::F32: return "F32";
  }
  return "?";
}

std::int64_t TensorView::numel() const {
  return std::accumulate(shape.begin(), shape.end(), std::int64_t{1}, std::multiplies<>());
}

std::string TensorView::shape_string() const { return fmt::format("[{}]", fmt::join(shape, ", ")); }

void TensorView::to_float(float* out) const {
  const std::int64_t n = numel();
  switch (dtype) {
    case DType::F32: std::memcpy(out, data, n * sizeof(float)); break;
    case DType::BF16:
      for (std::int64_t i = 0; i < n; ++i) {
        std::uint16_t v;
        std::memcpy(&v, data + 2 * i, 2);
        out[i] = bf16_to_float(v);
      }
      break;
    case DType::F16:
      for (std::int64_t i = 0; i < n; ++i) {
        std::uint16_t v;
        std::memcpy(&v, data + 2 * i, 2);
        out[i] = f16_to_float(v);
      }
      break;
  }
}

std::vector<float> TensorView::to_float() const {
  std::vector<float> v(numel());
  to_float(v.data());
  return v;
}

namespace {

DType parse_dtype(const std::string& s, const std::string& tensor, const std::string& file) {
  if (s == "BF16") return DType::BF16;
  if (s == "F16") return DType::F16;
  if (s == "F32") return DType::F32;
  fail_input("{}: tensor '{}' has dtype {} (supported: BF16, F16, F32)", file, tensor, s);
}

}  // namespace

SafetensorsFile::SafetensorsFile(const std::filesystem::path& path) : path_(path) {
  const std::string file = path.string();
  int fd = ::open(file.c_str(), O_RDONLY);
  if (fd < 0) fail_input("cannot open safetensors file {}: {}", file, std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    fail_input("cannot stat {}: {}", file, std::strerror(errno));
  }
  size_ = static_cast<std::size_t>(st.st_size);
  if (size_ < 8) {
    ::close(fd);
    fail_input("{}: truncated safetensors file ({} bytes, the header length alone needs 8)", file, size_);
  }
  void* m = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (m == MAP_FAILED) fail_input("cannot memory-map {}: {}", file, std::strerror(errno));
  base_ = static_cast<const std::byte*>(m);

  try {
    std::uint64_t header_len = 0;
    std::memcpy(&header_len, base_, 8);  // little-endian on every supported host
    if (header_len > size_ - 8)
      fail_input("{}: corrupt safetensors header: declared header length {} exceeds the file size {}",
                 file, header_len, size_);
    nlohmann::json header;
    try {
      header = nlohmann::json::parse(reinterpret_cast<const char*>(base_ + 8),
                                     reinterpret_cast<const char*>(base_ + 8 + header_len));
    } catch (const nlohmann::json::parse_error& e) {
      fail_input("{}: corrupt safetensors header (not valid JSON): {}", file, e.what());
    }
    if (!header.is_object()) fail_input("{}: corrupt safetensors header (not a JSON object)", file);
    const std::size_t data_start = 8 + header_len;
    const std::size_t data_size = size_ - data_start;
    for (auto& [name, entry] : header.items()) {
      if (name == "__metadata__") continue;
      if (!entry.is_object() || !entry.contains("dtype") || !entry.contains("shape") ||
          !entry.contains("data_offsets"))
        fail_input("{}: tensor '{}' lacks dtype, shape or data_offsets in the header", file, name);
      TensorView t;
      t.name = name;
      t.file = file;
      if (!entry["dtype"].is_string()) fail_input("{}: tensor '{}' has a non-string dtype", file, name);
      t.dtype = parse_dtype(entry["dtype"].get<std::string>(), name, file);
      const auto& shape = entry["shape"];
      if (!shape.is_array()) fail_input("{}: tensor '{}' has a malformed shape", file, name);
      for (const auto& d : shape) {
        if (!d.is_number_integer() || d.get<std::int64_t>() < 0)
          fail_input("{}: tensor '{}' has a malformed shape {}", file, name, shape.dump());
        t.shape.push_back(d.get<std::int64_t>());
      }
      const auto& off = entry["data_offsets"];
      if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
        fail_input("{}: tensor '{}' has malformed data_offsets {}", file, name, off.dump());
      const auto begin = off[0].get<std::uint64_t>(), end = off[1].get<std::uint64_t>();
      const std::uint64_t expected = static_cast<std::uint64_t>(t.numel()) * dtype_size(t.dtype);
      if (end < begin || end - begin != expected)
        fail_input("{}: tensor '{}' {} {} needs {} bytes but data_offsets [{}, {}] give {}", file, name,
                   to_string(t.dtype), t.shape_string(), expected, begin, end, end - begin);
      if (end > data_size)
        fail_input("{}: tensor '{}' ends at byte {} of the data section, but the file holds only {} "
                   "(truncated file?)", file, name, end, data_size);
      t.data = base_ + data_start + begin;
      tensors_.emplace(name, std::move(t));
    }
  } catch (...) {
    ::munmap(const_cast<std::byte*>(base_), size_);
    base_ = nullptr;
    throw;
  }
}

SafetensorsFile::~SafetensorsFile() {
  if (base_) ::munmap(const_cast<std::byte*>(base_), size_);
}

}  // namespace moetrace
