#include "model/safetensors_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include <nlohmann/json.hpp>

#include "util/checked.h"
#include "util/error.h"
#include "util/half_precision.h"
#include "util/input_file.h"
#include "util/json_input.h"
#include "util/message.h"

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
  if (auto n = checked_product(shape)) return *n;
  fail_input("{}: tensor '{}' has shape {}, whose element count overflows", file, name, shape_string());
}

std::string TensorView::shape_string() const { return fmt::format("[{}]", fmt::join(shape, ", ")); }

void TensorView::to_float(float* out) const {
  const std::int64_t n = numel();
  if (n == 0) return;  // `out` and `data` may be null then (memcpy must not see null, even for 0 bytes)
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

std::optional<std::int64_t> first_nonfinite(const TensorView& t) {
  const std::int64_t n = t.numel();
  // Non-finite means an all-ones exponent, whatever the mantissa (Inf or NaN).
  auto scan = [&](auto word, auto exponent_mask) -> std::optional<std::int64_t> {
    using W = decltype(word);
    for (std::int64_t i = 0; i < n; ++i) {
      W v;
      std::memcpy(&v, t.data + sizeof(W) * i, sizeof(W));
      if ((v & exponent_mask) == exponent_mask) return i;
    }
    return std::nullopt;
  };
  switch (t.dtype) {
    case DType::BF16: return scan(std::uint16_t{}, std::uint16_t{0x7f80});
    case DType::F16: return scan(std::uint16_t{}, std::uint16_t{0x7c00});
    case DType::F32: return scan(std::uint32_t{}, std::uint32_t{0x7f800000u});
  }
  return std::nullopt;
}

namespace {

DType parse_dtype(const std::string& s, const std::string& tensor, const std::string& file) {
  if (s == "BF16") return DType::BF16;
  if (s == "F16") return DType::F16;
  if (s == "F32") return DType::F32;
  fail_input("{}: tensor '{}' has dtype {} (supported: BF16, F16, F32)", file, tensor, truncate_for_message(s));
}

}  // namespace

SafetensorsFile::SafetensorsFile(const std::filesystem::path& path) : path_(path) {
  const std::string file = path.string();
  RegularFile f = open_regular_file(path, "safetensors file");
  if (!std::in_range<std::size_t>(f.size)) fail_input("{}: file too large to map ({} bytes)", file, f.size);
  size_ = static_cast<std::size_t>(f.size);
  if (size_ < 8)
    fail_input("{}: truncated safetensors file ({} bytes, the header length alone needs 8)", file, size_);
  void* m = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, f.fd.get(), 0);
  if (m == MAP_FAILED) fail_input("cannot memory-map {}: {}", file, std::strerror(errno));
  base_ = static_cast<const std::byte*>(m);
  try {
    read_header();
  } catch (...) {
    ::munmap(const_cast<std::byte*>(base_), size_);
    base_ = nullptr;
    throw;
  }
}

// The format's rules, as the reference implementation (huggingface/safetensors) checks them: the
// header length is bounded and inside the file; the header is a JSON object with unique names;
// each tensor's byte count is numel x dtype size (checked arithmetic); and the tensors' data
// ranges, sorted, are contiguous and cover the data section exactly: no overlap, no hole, no
// trailing bytes. A length prefix lowered into the header's padding, for instance, leaves bytes
// after the last tensor and is refused instead of shifting every tensor.
void SafetensorsFile::read_header() {
  const std::string file = path_.string();
  std::uint64_t header_len = 0;
  std::memcpy(&header_len, base_, 8);  // little-endian on every supported host
  if (header_len > kMaxSafetensorsHeaderBytes)
    fail_input("{}: corrupt safetensors header: declared header length {} exceeds the format's limit of {} bytes",
               file, header_len, kMaxSafetensorsHeaderBytes);
  if (header_len > size_ - 8)
    fail_input("{}: corrupt safetensors header: declared header length {} exceeds the file size {}", file,
               header_len, size_);
  const std::string_view text(reinterpret_cast<const char*>(base_ + 8), header_len);
  if (text.empty() || text.front() != '{')
    fail_input("{}: corrupt safetensors header (not a JSON object: it must start with '{{')", file);
  const nlohmann::json header = parse_json_input(text, file + ": corrupt safetensors header");
  if (!header.is_object()) fail_input("{}: corrupt safetensors header (not a JSON object)", file);

  const std::size_t data_start = 8 + header_len;
  const std::uint64_t data_size = size_ - data_start;
  struct Range {
    std::uint64_t begin, end;
    const std::string* name;
  };
  std::vector<Range> ranges;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) fail_input("{}: __metadata__ must be an object of strings", file);
      for (const auto& [k, v] : entry.items())
        if (!v.is_string())
          fail_input("{}: __metadata__ entry '{}' must be a string, got {}", file, truncate_for_message(k),
                     json_for_message(v));
      continue;
    }
    const std::string shown = truncate_for_message(name);
    if (!entry.is_object() || !entry.contains("dtype") || !entry.contains("shape") || !entry.contains("data_offsets"))
      fail_input("{}: tensor '{}' lacks dtype, shape or data_offsets in the header", file, shown);
    TensorView t;
    t.name = name;
    t.file = file;
    if (!entry["dtype"].is_string()) fail_input("{}: tensor '{}' has a non-string dtype", file, shown);
    t.dtype = parse_dtype(entry["dtype"].get<std::string>(), shown, file);
    const auto& shape = entry["shape"];
    if (!shape.is_array()) fail_input("{}: tensor '{}' has a malformed shape", file, shown);
    for (const auto& d : shape) {
      if (!d.is_number_integer() || (!d.is_number_unsigned() && d.get<std::int64_t>() < 0) ||
          (d.is_number_unsigned() && !std::in_range<std::int64_t>(d.get<std::uint64_t>())))
        fail_input("{}: tensor '{}' has a malformed shape {}", file, shown, json_for_message(shape));
      t.shape.push_back(d.get<std::int64_t>());
    }
    const auto numel = checked_product(t.shape);
    const auto bytes = numel ? checked_mul<std::uint64_t>(static_cast<std::uint64_t>(*numel), dtype_size(t.dtype))
                             : std::nullopt;
    if (!bytes)
      fail_input("{}: tensor '{}' has shape {}, whose byte count overflows", file, shown, t.shape_string());
    const auto& off = entry["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      fail_input("{}: tensor '{}' has malformed data_offsets {}", file, shown, json_for_message(off));
    const auto begin = off[0].get<std::uint64_t>(), end = off[1].get<std::uint64_t>();
    if (end < begin || end - begin != *bytes)
      fail_input("{}: tensor '{}' {} {} needs {} bytes but data_offsets [{}, {}] give {}", file, shown,
                 to_string(t.dtype), t.shape_string(), *bytes, begin, end,
                 end < begin ? std::string("a negative length") : std::to_string(end - begin));
    if (end > data_size)
      fail_input("{}: tensor '{}' ends at byte {} of the data section, but the file holds only {} "
                 "(truncated file?)", file, shown, end, data_size);
    t.data = base_ + data_start + begin;
    auto [it, inserted] = tensors_.emplace(name, std::move(t));
    if (!inserted) fail_input("{}: tensor '{}' appears twice in the header", file, shown);
    ranges.push_back({begin, end, &it->first});
  }
  std::sort(ranges.begin(), ranges.end(),
            [](const Range& a, const Range& b) { return a.begin != b.begin ? a.begin < b.begin : a.end < b.end; });
  std::uint64_t covered = 0;
  const std::string* previous = nullptr;
  for (const Range& r : ranges) {
    if (r.begin < covered)
      fail_input("{}: tensor '{}' (data_offsets [{}, {}]) overlaps tensor '{}', which ends at byte {}", file,
                 truncate_for_message(*r.name), r.begin, r.end, truncate_for_message(*previous), covered);
    if (r.begin > covered)
      fail_input("{}: a hole of {} bytes in the data section before tensor '{}' (data_offsets [{}, {}]); "
                 "tensors must be contiguous", file, r.begin - covered, truncate_for_message(*r.name), r.begin, r.end);
    covered = r.end;
    previous = r.name;
  }
  if (covered != data_size)
    fail_input("{}: the tensors cover {} bytes of the {}-byte data section: {} bytes follow the last tensor "
               "(a damaged file or a wrong header length)", file, covered, data_size, data_size - covered);
}

SafetensorsFile::~SafetensorsFile() {
  if (base_) ::munmap(const_cast<std::byte*>(base_), size_);
}

}  // namespace moetrace
