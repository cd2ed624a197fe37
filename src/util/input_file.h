#pragma once
// Opening input files as hostile input: only regular files are opened (a FIFO named config.json
// must not block, a directory where a file belongs must not be "read"), symlink loops and
// permission problems become InputErrors naming the path, and what a file may hold is bounded.
// `what` says which input it is ("model config", "tokenizer"), for messages.
#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace moetrace {

// "a directory", "a FIFO", "a character device", ... for a stat mode, in messages about inputs of
// the wrong type.
const char* file_type_name(mode_t mode);

// An open file descriptor, closed on destruction.
class FileDescriptor {
 public:
  explicit FileDescriptor(int fd = -1) : fd_(fd) {}
  ~FileDescriptor();
  FileDescriptor(FileDescriptor&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  FileDescriptor& operator=(FileDescriptor&& o) noexcept;
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

struct RegularFile {
  FileDescriptor fd;
  std::uintmax_t size = 0;
};

// Opens `path` read-only if it is a regular file (symlinks followed); InputError otherwise.
// Never blocks: FIFOs and devices are refused after a non-blocking open.
RegularFile open_regular_file(const std::filesystem::path& path, std::string_view what);

// The whole content of a regular file of at most `max_bytes` bytes; InputError otherwise.
std::string read_regular_file(const std::filesystem::path& path, std::string_view what, std::uintmax_t max_bytes);

enum class PathKind { Missing, RegularFile, Directory, Other };
// What `path` is (symlinks followed). Missing only when it does not exist (ENOENT/ENOTDIR);
// any other error (a symlink loop, no permission) is an InputError naming the path.
PathKind input_path_kind(const std::filesystem::path& path, std::string_view what);

// Upper bounds on the size of JSON input files (documented in docs/ARCHITECTURE.md "Inputs").
inline constexpr std::uintmax_t kMaxConfigJsonBytes = 64ull << 20;      // config.json, index, tokenizer_config
inline constexpr std::uintmax_t kMaxTokenizerJsonBytes = 512ull << 20;  // tokenizer.json

}  // namespace moetrace

// Shorthands used by the run-time inputs (run config, CounterFact, CLI options); `what` names where
// the path came from, e.g. "run.toml: [data] counterfact =" or "--input".
namespace moetrace {

// InputError unless `path` is an existing regular file (symlinks followed); never blocks.
void require_regular_file(const std::filesystem::path& path, const std::string& what);
// InputError unless `path` is an existing folder or regular file (a model folder or one of its files).
void require_file_or_directory(const std::filesystem::path& path, const std::string& what);
// read_regular_file under another name.
std::string read_input_file(const std::filesystem::path& path, const std::string& what, std::uintmax_t max_bytes);
// truncate_for_message with a shorter default, for values quoted in one-line errors.
std::string shorten(std::string_view value, std::size_t max_chars = 80);

}  // namespace moetrace
