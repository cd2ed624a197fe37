#pragma once
// The tensors of a Hugging Face model folder: `model.safetensors`, or the shards named by
// `model.safetensors.index.json`. Every file stays memory-mapped for the checkpoint's lifetime.
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "model/safetensors_file.h"

namespace moetrace {

class Checkpoint {
 public:
  explicit Checkpoint(const std::filesystem::path& model_dir);

  const std::filesystem::path& dir() const { return dir_; }
  const std::map<std::string, TensorView>& tensors() const { return tensors_; }
  const TensorView* find(const std::string& name) const;
  // The safetensors files in load order (for hashing into provenance).
  std::vector<std::filesystem::path> files() const;
  // InputError naming the file, the tensor and the element when any weight is NaN or infinite.
  // Reads every byte of every tensor, releasing each tensor's pages once read (release_pages), so
  // the scan does not leave the whole file resident.
  void check_finite() const;
  // Drops the resident pages of a tensor of this checkpoint from the process (madvise(DONTNEED) on
  // the read-only private mapping: a later read faults them in again from the page cache). For a
  // load that copies weights out: the file's pages then never add to the peak RSS. Advice only;
  // a view outside this checkpoint's files is ignored.
  void release_pages(const TensorView& view) const;

 private:
  std::filesystem::path dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, TensorView> tensors_;
};

}  // namespace moetrace
