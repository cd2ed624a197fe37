#pragma once
// Test inputs for model loading: a safetensors writer (with ways to corrupt the file on purpose)
// and a model-folder editor that copies a fixture model and rewrites its tensors: rename, drop,
// add, reshape, convert the dtype, fuse the experts into the transformers-5 layout, and write the
// result as one file or as shards listed in model.safetensors.index.json.
//
// Written independently of src/model (its own header parser), so that the loader is tested
// against a second implementation of the format rather than against itself.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace moetrace::test {

struct StTensor {
  std::string name;
  std::string dtype;  // "BF16", "F16", "F32", or anything else (written verbatim)
  std::vector<std::int64_t> shape;
  std::vector<std::byte> data;  // raw little-endian bytes

  std::int64_t numel() const;
  // Values as float (BF16, F16, F32 only).
  std::vector<float> to_float() const;
  static StTensor from_float(std::string name, std::string dtype, std::vector<std::int64_t> shape,
                             const std::vector<float>& values);
};

// Ways to break a file on purpose.
enum class Corruption {
  None,
  HeaderLengthTooLarge,   // the 8-byte length prefix points past the end of the file
  HeaderNotJson,          // the header bytes are not valid JSON
  HeaderNotObject,        // valid JSON, but an array
  TruncatedData,          // the last tensor's bytes are cut off
  TinyFile,               // only 5 bytes: not even the length prefix
  WrongOffsets,           // the first tensor's data_offsets span one element too few
  MissingDataOffsets,     // the first tensor lacks data_offsets
};

struct WriteOptions {
  Corruption corruption = Corruption::None;
  std::optional<std::string> metadata_format = "pt";  // "__metadata__": {"format": ...}
  // Finer edits, for the data-section rules (each applies to every file written):
  std::map<std::string, std::pair<std::uint64_t, std::uint64_t>> data_offsets{};  // replaces these tensors' offsets
  std::vector<std::string> duplicate_names{};    // these tensors' entries appear a second time in the header
  std::int64_t header_length_delta = 0;          // added to the length prefix
  std::size_t extra_padding = 0;                 // more spaces after the header JSON (counted in the length)
  std::size_t trailing_bytes = 0;                // zero bytes after the data section
  std::optional<std::uint64_t> header_length{};  // replaces the length prefix
};

void write_safetensors(const std::filesystem::path& path, const std::vector<StTensor>& tensors,
                       const WriteOptions& options = {});
// Reads every tensor of a well-formed file (header order = data order).
std::vector<StTensor> read_safetensors(const std::filesystem::path& path);

// f32 -> IEEE f16, round to nearest even (overflow to inf).
std::uint16_t float_to_f16(float f);

// A model folder held in memory: config.json and every tensor, editable, then written anywhere.
class ModelFolder {
 public:
  // Reads <dir>/config.json and model.safetensors (or the shards of model.safetensors.index.json).
  static ModelFolder read(const std::filesystem::path& dir);

  nlohmann::json config;
  std::vector<StTensor> tensors;  // in file order

  StTensor* find(const std::string& name);
  StTensor& at(const std::string& name);  // throws std::runtime_error when absent
  void rename(const std::string& from, const std::string& to);
  void drop(const std::string& name);
  void add(StTensor t);
  // New shape with the same number of elements (data unchanged).
  void reshape(const std::string& name, std::vector<std::int64_t> shape);
  // Converts every tensor (values exactly where the target can hold them; F16 rounds).
  void convert_dtype(const std::string& dtype);
  // Rewrites the per-expert tensors into the transformers-5 fused layout:
  // mlp.experts.gate_up_proj [E, 2I, H] (gate rows then up rows, per expert) and
  // mlp.experts.down_proj [E, H, I]; Mixtral's block_sparse_moe.* becomes mlp.* (router included).
  void fuse_experts();

  // Writes config.json plus model.safetensors (shards == 1) or model-0000i-of-0000N.safetensors
  // and model.safetensors.index.json (shards > 1, tensors dealt out in contiguous runs).
  // Creates `dir` if needed and returns it.
  std::filesystem::path write(const std::filesystem::path& dir, int shards = 1,
                              const WriteOptions& options = {}) const;
  // The shard file names write() uses.
  static std::string shard_name(int i, int n);
};

// Copies a fixture model folder (config.json, safetensors files, index) to a fresh temp dir.
std::filesystem::path copy_model_dir(const std::filesystem::path& src, const std::string& tag);

}  // namespace moetrace::test
