#pragma once
// Finding, building and checking the packed weight store of a (checkpoint, backend layout) pair
// (docs/weights.md; the file format is model/weight_store.h).
//
// A store is used only when it was built from the same bytes: the checkpoint files' size, inode,
// modification and inode-change times must equal the ones recorded at build time (a file rewritten
// in place with its times restored by `touch -r` still changes its inode change time), and the
// backend's layout string must be the same. Otherwise, or when the store is damaged, it is rebuilt
// (said in the log). Builds are serialised by a lock file beside the store, so that ranks or jobs
// that start at once build it once; a store is renamed into place only when complete.
#include <filesystem>
#include <functional>
#include <memory>
#include <string>

#include "backend/backend.h"
#include "model/model_weights.h"
#include "model/weight_store.h"

namespace moetrace {

// DIR/<model folder name>.<backend>.<12 hex digits of the folder's path and the layout>.mtstore
std::filesystem::path weight_store_path(const std::filesystem::path& dir, const Checkpoint& checkpoint,
                                        const Backend& backend);

// Why `store` must not be used for `checkpoint` on `backend`, or empty when it may.
std::string store_mismatch(const WeightStoreFile& store, const Checkpoint& checkpoint, const Backend& backend);

struct StoreOpening {
  std::shared_ptr<const WeightStoreFile> store;
  bool built = false;        // this call built it
  double build_seconds = 0;  // when built
};

// The store of `weights` for `backend` under `dir` (created if absent), built first when it is
// missing, stale or damaged; `make_builder` gives a fresh backend of the same kind to pack with.
// InputError when the folder cannot be written or the checkpoint changes during the build.
StoreOpening open_weight_store(const std::filesystem::path& dir, const ModelWeights& weights, const Backend& backend,
                               const std::function<std::unique_ptr<Backend>()>& make_builder);

// Builds the store at `path` (used by open_weight_store under its lock, and by `moetrace store build`
// with --force). Every tensor of the model, every expert.
void build_weight_store(const std::filesystem::path& path, const ModelWeights& weights, Backend& builder);

// The finite check of model_weights.h's load_model, from what the store recorded at build time: an
// InputError naming the checkpoint file and the tensor when a weight is NaN or infinite.
void check_store_finite(const WeightStoreFile& store, const ModelWeights& weights);

}  // namespace moetrace
