#pragma once
// The packed weight store's file format (docs/weights.md): one file per (checkpoint, backend layout)
// holding every tensor already in the layout a backend computes with, memory-mapped read-only and
// used in place, plus what the build learnt about the checkpoint (its files' identity and SHA-256,
// which tensors hold non-finite values) so that a load never reads the checkpoint's data again.
//
//   [0, 4096)        header: magic "MTSTORE1", format version, index offset and size, file size,
//                    SHA-256 of the index
//   4096-aligned     one blob per tensor, in the order they were added
//   index_offset     the index (JSON): identity of the checkpoint and of the layout, every blob's
//                    offset, size and SHA-256
//
// Everything read here is hostile input: a store that is truncated, damaged or does not describe a
// consistent file is an InputError naming it (the caller rebuilds or exits 2). The blobs' bytes are
// checked against their SHA-256 by verify() only (it reads every byte); a load checks the structure.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace moetrace {

class Checkpoint;

// What identifies a checkpoint file's bytes without reading them: a rewrite in place changes the
// inode change time even when the size and modification time are restored (`touch -r`).
struct FileIdentity {
  std::string name;  // file name inside the checkpoint folder
  std::uint64_t bytes = 0, inode = 0, device = 0;
  std::int64_t mtime_ns = 0, ctime_ns = 0;
  std::string sha256;  // of the whole file, computed when the store was built

  // Empty when `other` (a fresh stat) describes the same bytes; else what differs ("size", ...).
  std::string differs_from(const FileIdentity& other) const;
};

// The safetensors files of a checkpoint as they are now (stat only; sha256 left empty).
std::vector<FileIdentity> stat_checkpoint_files(const Checkpoint& checkpoint);

// What a store was built from and for.
struct StoreIdentity {
  std::string checkpoint_dir;  // absolute, as built
  std::string backend;         // backend name ("cpu-bf16")
  std::string layout;          // the backend's weight layout string (Backend::weight_layout)
  std::vector<FileIdentity> files;
};

struct StoreBlob {
  std::uint64_t offset = 0, bytes = 0;
  std::string sha256;
  std::int64_t first_nonfinite = -1;  // element index in the checkpoint tensor, -1: all finite
};

// A finished store, mapped read-only. Blobs stay valid while the object lives.
class WeightStoreFile {
 public:
  explicit WeightStoreFile(const std::filesystem::path& path);
  ~WeightStoreFile();
  WeightStoreFile(const WeightStoreFile&) = delete;
  WeightStoreFile& operator=(const WeightStoreFile&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::uint64_t file_bytes() const { return size_; }
  const StoreIdentity& identity() const { return identity_; }
  const std::map<std::string, StoreBlob>& blobs() const { return blobs_; }
  const std::string& built_utc() const { return built_utc_; }
  double build_seconds() const { return build_seconds_; }
  // The tensor's bytes, or an InputError naming the store and the tensor when it holds none.
  const std::byte* blob(const std::string& tensor, std::size_t& bytes) const;
  // Reads every byte and compares every blob with its SHA-256: an InputError naming the store and
  // the first damaged tensor.
  void verify() const;
  // Residency advice for a tensor's pages (advice only: failures are ignored).
  //  Populate: map them into this process now (MADV_POPULATE_READ: one system call instead of a page
  //            fault per 64 KiB), reading them from disk where they are not in the page cache;
  //  Release:  unmap them from this process and let the kernel reclaim them first (MADV_PAGEOUT),
  //            for a model larger than memory, whose streamed layers must not evict the resident ones.
  enum class Advice { Populate, Release };
  void advise(const std::string& tensor, Advice advice) const;

 private:
  void read_index();
  std::filesystem::path path_;
  const std::byte* base_ = nullptr;
  std::uint64_t size_ = 0, index_offset_ = 0;
  StoreIdentity identity_;
  std::map<std::string, StoreBlob> blobs_;
  std::string built_utc_;
  double build_seconds_ = 0;
};

// Writes a store under a temporary name next to `path` and renames it into place once complete
// (fsync'd), so that nobody ever maps a partial store. The temporary file is removed when the writer
// is destroyed unfinished (an error, a full disk).
class WeightStoreWriter {
 public:
  explicit WeightStoreWriter(const std::filesystem::path& path);
  ~WeightStoreWriter();
  WeightStoreWriter(const WeightStoreWriter&) = delete;
  WeightStoreWriter& operator=(const WeightStoreWriter&) = delete;

  void add(const std::string& tensor, const void* data, std::size_t bytes, std::int64_t first_nonfinite);
  void finish(const StoreIdentity& identity, double build_seconds);
  const std::filesystem::path& temp_path() const { return tmp_; }

 private:
  void write_at(const void* data, std::size_t bytes, std::uint64_t offset);
  std::filesystem::path path_, tmp_;
  int fd_ = -1;
  std::uint64_t end_ = 0;
  std::map<std::string, StoreBlob> blobs_;
};

// MemAvailable of /proc/meminfo in bytes (0 when unknown).
std::uint64_t available_memory_bytes();

// The store files (*.mtstore) in a folder, by name.
std::vector<std::filesystem::path> list_store_files(const std::filesystem::path& dir);

inline constexpr const char* kStoreExtension = ".mtstore";

}  // namespace moetrace
