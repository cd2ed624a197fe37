#include "backend/weight_store_cache.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <chrono>
#include <cerrno>
#include <cstring>
#include <set>

#include "util/error.h"
#include "util/file_hash.h"
#include "util/logging.h"
#include "util/message.h"

namespace moetrace {
namespace {

std::string canonical_dir(const Checkpoint& checkpoint) {
  std::error_code ec;
  const auto p = std::filesystem::canonical(checkpoint.dir(), ec);
  return ec ? std::filesystem::absolute(checkpoint.dir()).lexically_normal().string() : p.string();
}

// An exclusive lock on `path` (flock), held while the object lives.
class BuildLock {
 public:
  explicit BuildLock(const std::filesystem::path& path) {
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) fail_input("cannot create the weight store lock {}: {}", path.string(), std::strerror(errno));
    if (::flock(fd_, LOCK_EX | LOCK_NB) == 0) return;
    spdlog::info("weight store: another process is building it (lock {}); waiting", path.string());
    while (::flock(fd_, LOCK_EX) != 0)
      if (errno != EINTR) fail_input("cannot lock {}: {} (a file system without flock?)", path.string(), std::strerror(errno));
  }
  ~BuildLock() { ::close(fd_); }
  BuildLock(const BuildLock&) = delete;
  BuildLock& operator=(const BuildLock&) = delete;

 private:
  int fd_ = -1;
};

// The store at `path` if it exists, is whole and fits; else null, with the reason in `why`.
std::shared_ptr<const WeightStoreFile> usable_store(const std::filesystem::path& path, const ModelWeights& weights,
                                                    const Backend& backend, std::string& why) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    why = "there is none yet";
    return nullptr;
  }
  try {
    auto store = std::make_shared<const WeightStoreFile>(path);
    why = store_mismatch(*store, *weights.checkpoint, backend);
    if (why.empty()) return store;
  } catch (const InputError& e) {
    why = e.what();
  }
  return nullptr;
}

}  // namespace

std::filesystem::path weight_store_path(const std::filesystem::path& dir, const Checkpoint& checkpoint,
                                        const Backend& backend) {
  const std::string dirname = canonical_dir(checkpoint);
  const std::string key = sha256_bytes((dirname + "\n" + backend.weight_layout()).data(),
                                       dirname.size() + 1 + backend.weight_layout().size());
  std::string name = std::filesystem::path(dirname).filename().string();
  if (name.empty()) name = "model";
  return dir / fmt::format("{}.{}.{}{}", name, backend.name(), key.substr(0, 12), kStoreExtension);
}

std::string store_mismatch(const WeightStoreFile& store, const Checkpoint& checkpoint, const Backend& backend) {
  const StoreIdentity& id = store.identity();
  if (id.layout != backend.weight_layout())
    return fmt::format("it was built for the layout '{}', this backend uses '{}'", id.layout, backend.weight_layout());
  if (id.checkpoint_dir != canonical_dir(checkpoint))
    return fmt::format("it was built from {}, not {}", id.checkpoint_dir, canonical_dir(checkpoint));
  const std::vector<FileIdentity> now = stat_checkpoint_files(checkpoint);
  if (now.size() != id.files.size())
    return fmt::format("the checkpoint has {} files, the store was built from {}", now.size(), id.files.size());
  for (std::size_t i = 0; i < now.size(); ++i)
    if (const std::string d = id.files[i].differs_from(now[i]); !d.empty())
      return fmt::format("{} changed since the store was built: {}", now[i].name, d);
  return {};
}

void build_weight_store(const std::filesystem::path& path, const ModelWeights& weights, Backend& builder) {
  const auto t0 = std::chrono::steady_clock::now();
  const Checkpoint& ckpt = *weights.checkpoint;
  StoreIdentity id{canonical_dir(ckpt), builder.name(), builder.weight_layout(), stat_checkpoint_files(ckpt)};
  WeightStoreWriter writer(path);
  std::set<std::string> done;  // tied embeddings: one tensor, two uses
  for (const TensorView* v : model_tensors(weights)) {
    if (!done.insert(v->name).second) continue;
    const auto bad = first_nonfinite(*v);
    const WeightPtr w = builder.upload_weight(*v);
    const std::span<const std::byte> image = builder.weight_image(*w);
    writer.add(v->name, image.data(), image.size(), bad ? *bad : -1);
    ckpt.release_pages(*v);
  }
  const auto files = ckpt.files();
  for (std::size_t i = 0; i < files.size(); ++i) id.files[i].sha256 = sha256_file(files[i]);
  const std::vector<FileIdentity> after = stat_checkpoint_files(ckpt);
  for (std::size_t i = 0; i < after.size(); ++i)
    if (const std::string d = id.files[i].differs_from(after[i]); !d.empty())
      fail_input("{} changed while its weight store was built ({}); nothing is kept", files[i].string(), d);
  writer.finish(id, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
}

StoreOpening open_weight_store(const std::filesystem::path& dir, const ModelWeights& weights, const Backend& backend,
                               const std::function<std::unique_ptr<Backend>()>& make_builder) {
  MOETRACE_ASSERT(!backend.weight_layout().empty(), "open_weight_store: a backend without a store layout");
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) fail_input("cannot create the weight store folder {}: {}", dir.string(), ec.message());
  const std::filesystem::path path = weight_store_path(dir, *weights.checkpoint, backend);
  std::string why;
  if (auto store = usable_store(path, weights, backend, why)) return {store, false, 0};
  const BuildLock lock(std::filesystem::path(path.string() + ".lock"));
  if (auto store = usable_store(path, weights, backend, why)) return {store, false, 0};  // built while we waited
  if (why == "there is none yet")
    spdlog::info("weight store: building {} (once; later loads map it)", path.string());
  else
    spdlog::warn("weight store {}: rebuilding it: {}", path.string(), why);
  const auto t0 = std::chrono::steady_clock::now();
  build_weight_store(path, weights, *make_builder());
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  auto store = usable_store(path, weights, backend, why);
  if (!store) fail_input("the weight store {} just built cannot be used: {}", path.string(), why);
  spdlog::info("weight store: built {} ({:.2f} GB) in {:.1f} s", path.string(), store->file_bytes() / 1e9, secs);
  return {store, true, secs};
}

void check_store_finite(const WeightStoreFile& store, const ModelWeights& weights) {
  for (const TensorView* v : model_tensors(weights)) {
    const auto it = store.blobs().find(v->name);
    if (it == store.blobs().end() || it->second.first_nonfinite < 0) continue;
    fail_input("{}: tensor '{}' holds a non-finite value (NaN or Inf) at element {} of {} {}; such weights are "
               "refused unless explicitly allowed (found when the weight store {} was built)",
               v->file, truncate_for_message(v->name), it->second.first_nonfinite, v->numel(), v->shape_string(),
               store.path().string());
  }
}

}  // namespace moetrace
