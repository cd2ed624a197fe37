#include "model/checkpoint.h"

#include <fstream>
#include <set>

#include <nlohmann/json.hpp>

#include "util/error.h"

namespace moetrace {

Checkpoint::Checkpoint(const std::filesystem::path& model_dir) : dir_(model_dir) {
  namespace fs = std::filesystem;
  if (!fs::is_directory(model_dir)) fail_input("model folder {} does not exist or is not a folder", model_dir.string());
  const fs::path index = model_dir / "model.safetensors.index.json";
  const fs::path single = model_dir / "model.safetensors";
  if (fs::exists(index)) {
    std::ifstream in(index);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(in);
    } catch (const nlohmann::json::parse_error& e) {
      fail_input("{}: not valid JSON: {}", index.string(), e.what());
    }
    if (!j.contains("weight_map") || !j["weight_map"].is_object())
      fail_input("{}: missing the 'weight_map' object", index.string());
    std::map<std::string, std::string> wanted;  // tensor -> shard
    std::set<std::string> shards;
    for (auto& [name, shard] : j["weight_map"].items()) {
      if (!shard.is_string()) fail_input("{}: weight_map entry '{}' is not a file name", index.string(), name);
      wanted[name] = shard.get<std::string>();
      shards.insert(shard.get<std::string>());
    }
    for (const auto& shard : shards) {
      if (shard.find('/') != std::string::npos || shard.find("..") != std::string::npos)
        fail_input("{}: shard name '{}' must be a plain file name inside the model folder", index.string(), shard);
      const fs::path p = model_dir / shard;
      if (!fs::exists(p)) fail_input("{}: shard {} is listed but missing", index.string(), p.string());
      files_.push_back(std::make_unique<SafetensorsFile>(p));
      for (const auto& [name, view] : files_.back()->tensors()) {
        auto it = wanted.find(name);
        if (it == wanted.end())
          fail_input("{}: tensor '{}' is not listed in {}", p.string(), name, index.string());
        if (it->second != shard)
          fail_input("{}: tensor '{}' is listed in {} as being in {}", p.string(), name, index.string(), it->second);
        if (!tensors_.emplace(name, view).second)
          fail_input("{}: tensor '{}' appears in more than one shard", p.string(), name);
      }
    }
    for (const auto& [name, shard] : wanted)
      if (!tensors_.count(name))
        fail_input("{}: tensor '{}' is listed for shard {} but that shard does not contain it",
                   index.string(), name, shard);
  } else if (fs::exists(single)) {
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

}  // namespace moetrace
