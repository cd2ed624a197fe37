#include "model/checkpoint.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <set>

#include <nlohmann/json.hpp>

#include "util/error.h"
#include "util/input_file.h"
#include "util/json_input.h"
#include "util/message.h"

namespace moetrace {

Checkpoint::Checkpoint(const std::filesystem::path& model_dir) : dir_(model_dir) {
  namespace fs = std::filesystem;
  if (input_path_kind(model_dir, "model folder") != PathKind::Directory)
    fail_input("model folder {} does not exist or is not a folder", model_dir.string());
  const fs::path index = model_dir / "model.safetensors.index.json";
  const fs::path single = model_dir / "model.safetensors";
  // A name that exists but is not a regular file (a directory, a FIFO, a symlink loop) is an error
  // naming it, not "missing": open_regular_file says what it is.
  if (input_path_kind(index, "checkpoint index") != PathKind::Missing) {
    const std::string where = index.string();
    const nlohmann::json j = parse_json_input(read_regular_file(index, "checkpoint index", kMaxConfigJsonBytes), where);
    if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
      fail_input("{}: missing the 'weight_map' object", where);
    std::map<std::string, std::string> wanted;  // tensor -> shard
    std::set<std::string> shards;
    for (auto& [name, shard] : j["weight_map"].items()) {
      if (!shard.is_string())
        fail_input("{}: weight_map entry '{}' is not a file name", where, truncate_for_message(name));
      wanted[name] = shard.get<std::string>();
      shards.insert(shard.get<std::string>());
    }
    for (const auto& shard : shards) {
      if (shard.empty() || shard.find('/') != std::string::npos || shard == "." || shard == ".." ||
          shard.find('\0') != std::string::npos)
        fail_input("{}: shard name '{}' must be a plain file name inside the model folder", where,
                   truncate_for_message(shard));
      const fs::path p = model_dir / shard;
      if (input_path_kind(p, "checkpoint shard") == PathKind::Missing)
        fail_input("{}: shard {} is listed but missing", where, p.string());
      files_.push_back(std::make_unique<SafetensorsFile>(p));
      for (const auto& [name, view] : files_.back()->tensors()) {
        const std::string shown = truncate_for_message(name);
        auto it = wanted.find(name);
        if (it == wanted.end()) fail_input("{}: tensor '{}' is not listed in {}", p.string(), shown, where);
        if (it->second != shard)
          fail_input("{}: tensor '{}' is listed in {} as being in {}", p.string(), shown, where,
                     truncate_for_message(it->second));
        if (!tensors_.emplace(name, view).second)
          fail_input("{}: tensor '{}' appears in more than one shard", p.string(), shown);
      }
    }
    for (const auto& [name, shard] : wanted)
      if (!tensors_.count(name))
        fail_input("{}: tensor '{}' is listed for shard {} but that shard does not contain it", where,
                   truncate_for_message(name), truncate_for_message(shard));
  } else if (input_path_kind(single, "safetensors file") != PathKind::Missing) {
    files_.push_back(std::make_unique<SafetensorsFile>(single));
    tensors_ = files_.back()->tensors();
  } else {
    fail_input("model folder {} has neither model.safetensors nor model.safetensors.index.json",
               model_dir.string());
  }
}

const TensorView* Checkpoint::find(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

std::vector<std::filesystem::path> Checkpoint::files() const {
  std::vector<std::filesystem::path> out;
  for (const auto& f : files_) out.push_back(f->path());
  return out;
}

void Checkpoint::check_finite() const {
  for (const auto& [name, view] : tensors_) {
    if (auto i = first_nonfinite(view))
      fail_input("{}: tensor '{}' holds a non-finite value (NaN or Inf) at element {} of {} {}; such weights are "
                 "refused unless explicitly allowed",
                 view.file, truncate_for_message(name), *i, view.numel(), view.shape_string());
    release_pages(view);
  }
}

void Checkpoint::release_pages(const TensorView& view) const {
  const auto b = reinterpret_cast<std::uintptr_t>(view.data);
  const auto e = b + static_cast<std::uintptr_t>(view.numel()) * dtype_size(view.dtype);
  for (const auto& f : files_) {
    const auto fb = reinterpret_cast<std::uintptr_t>(f->mapped_bytes());
    if (e == b || b < fb || e > fb + f->file_size()) continue;
    static const std::uintptr_t page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
    const std::uintptr_t pb = b & ~(page - 1), pe = (e + page - 1) & ~(page - 1);
    ::madvise(reinterpret_cast<void*>(pb), pe - pb, MADV_DONTNEED);  // advice only: failure is harmless
    return;
  }
}

}  // namespace moetrace
