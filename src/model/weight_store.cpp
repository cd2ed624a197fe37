#include "model/weight_store.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <fstream>

#include <nlohmann/json.hpp>

#include "model/checkpoint.h"
#include "util/error.h"
#include "util/file_hash.h"
#include "util/input_file.h"
#include "util/json_input.h"
#include "util/message.h"

namespace moetrace {
namespace {

constexpr char kMagic[8] = {'M', 'T', 'S', 'T', 'O', 'R', 'E', '1'};
constexpr std::uint32_t kFormatVersion = 1;
constexpr std::uint64_t kAlign = 4096;
constexpr std::uint64_t kMaxIndexBytes = std::uint64_t{1} << 30;

// The fixed header at offset 0 (little-endian, as every host this runs on).
struct Header {
  char magic[8];
  std::uint32_t version;
  std::uint32_t reserved;
  std::uint64_t index_offset, index_bytes, file_bytes;
  char index_sha256[64];
};
static_assert(sizeof(Header) <= kAlign);

std::uint64_t align_up(std::uint64_t x) { return (x + kAlign - 1) / kAlign * kAlign; }

std::int64_t ns(const struct timespec& t) { return static_cast<std::int64_t>(t.tv_sec) * 1000000000 + t.tv_nsec; }

nlohmann::json to_json(const FileIdentity& f) {
  return {{"name", f.name},        {"bytes", f.bytes},       {"inode", f.inode}, {"device", f.device},
          {"mtime_ns", f.mtime_ns}, {"ctime_ns", f.ctime_ns}, {"sha256", f.sha256}};
}

// A field of an index object, checked (the index is hostile input like any other file).
const nlohmann::json& field(const nlohmann::json& o, const char* key, const std::string& where) {
  if (!o.is_object() || !o.contains(key)) fail_input("{}: the index has no '{}'", where, key);
  return o.at(key);
}
std::uint64_t u64(const nlohmann::json& o, const char* key, const std::string& where) {
  return static_cast<std::uint64_t>(json_integer(field(o, key, where), 0, INT64_MAX, where, key));
}
std::int64_t i64(const nlohmann::json& o, const char* key, const std::string& where) {
  return json_integer(field(o, key, where), INT64_MIN, INT64_MAX, where, key);
}
std::string str(const nlohmann::json& o, const char* key, const std::string& where) {
  return json_string(field(o, key, where), where, key);
}

FileIdentity file_from_json(const nlohmann::json& j, const std::string& where) {
  FileIdentity f;
  f.name = str(j, "name", where);
  f.bytes = u64(j, "bytes", where);
  f.inode = u64(j, "inode", where);
  f.device = u64(j, "device", where);
  f.mtime_ns = i64(j, "mtime_ns", where);
  f.ctime_ns = i64(j, "ctime_ns", where);
  f.sha256 = str(j, "sha256", where);
  return f;
}

}  // namespace

std::string FileIdentity::differs_from(const FileIdentity& o) const {
  if (name != o.name) return "name";
  if (bytes != o.bytes) return fmt::format("size ({} bytes, was {})", o.bytes, bytes);
  if (inode != o.inode || device != o.device) return "inode (the file was replaced)";
  if (mtime_ns != o.mtime_ns) return "modification time";
  if (ctime_ns != o.ctime_ns) return "inode change time (rewritten or its times reset)";
  return {};
}

std::vector<FileIdentity> stat_checkpoint_files(const Checkpoint& checkpoint) {
  std::vector<FileIdentity> out;
  for (const auto& p : checkpoint.files()) {
    struct stat st {};
    if (::stat(p.c_str(), &st) != 0) fail_input("cannot stat the checkpoint file {}: {}", p.string(), std::strerror(errno));
    FileIdentity f;
    f.name = p.filename().string();
    f.bytes = static_cast<std::uint64_t>(st.st_size);
    f.inode = st.st_ino;
    f.device = st.st_dev;
    f.mtime_ns = ns(st.st_mtim);
    f.ctime_ns = ns(st.st_ctim);
    out.push_back(f);
  }
  return out;
}

// ---- reading --------------------------------------------------------------------------------------

WeightStoreFile::WeightStoreFile(const std::filesystem::path& path) : path_(path) {
  RegularFile f = open_regular_file(path, "weight store");
  size_ = f.size;
  if (size_ < kAlign) fail_input("weight store {} is damaged: {} bytes, shorter than its header", path.string(), size_);
  void* m = ::mmap(nullptr, size_, PROT_READ, MAP_SHARED, f.fd.get(), 0);
  if (m == MAP_FAILED) fail_input("cannot map the weight store {}: {}", path.string(), std::strerror(errno));
  base_ = static_cast<const std::byte*>(m);
  try {
    read_index();
  } catch (...) {
    ::munmap(const_cast<std::byte*>(base_), size_);
    throw;
  }
}

WeightStoreFile::~WeightStoreFile() {
  if (base_) ::munmap(const_cast<std::byte*>(base_), size_);
}

void WeightStoreFile::read_index() {
  const std::string where = path_.string();
  Header h;
  std::memcpy(&h, base_, sizeof h);
  if (std::memcmp(h.magic, kMagic, sizeof kMagic) != 0) fail_input("{} is not a moetrace weight store (bad magic)", where);
  if (h.version != kFormatVersion)
    fail_input("weight store {} has format version {}; this moetrace reads version {}", where, h.version, kFormatVersion);
  if (h.file_bytes != size_ || h.index_offset < kAlign || h.index_bytes > kMaxIndexBytes ||
      h.index_offset > size_ || h.index_bytes != size_ - h.index_offset)
    fail_input("weight store {} is damaged or truncated: it has {} bytes where its header says {}", where, size_,
               h.file_bytes);
  const char* index = reinterpret_cast<const char*>(base_ + h.index_offset);
  if (sha256_bytes(index, h.index_bytes) != std::string(h.index_sha256, sizeof h.index_sha256))
    fail_input("weight store {} is damaged: its index does not match its checksum", where);
  index_offset_ = h.index_offset;
  const nlohmann::json j = parse_json_input(std::string_view(index, h.index_bytes), where);
  identity_.checkpoint_dir = str(j, "checkpoint_dir", where);
  identity_.backend = str(j, "backend", where);
  identity_.layout = str(j, "layout", where);
  const nlohmann::json& files = field(j, "checkpoint_files", where);
  if (!files.is_array()) fail_input("{}: 'checkpoint_files' is not a list", where);
  for (const auto& fj : files) identity_.files.push_back(file_from_json(fj, where));
  built_utc_ = str(j, "built_utc", where);
  build_seconds_ = json_finite(field(j, "build_seconds", where), 0, 1e9, where, "build_seconds");
  const nlohmann::json& tensors = field(j, "tensors", where);
  if (!tensors.is_object()) fail_input("{}: 'tensors' is not an object", where);
  std::vector<std::pair<std::uint64_t, std::uint64_t>> extents;
  for (const auto& [name, tj] : tensors.items()) {
    const std::string at = where + ": tensor '" + truncate_for_message(name) + "'";
    StoreBlob b{u64(tj, "offset", at), u64(tj, "bytes", at), str(tj, "sha256", at), i64(tj, "first_nonfinite", at)};
    if (b.offset % kAlign != 0 || b.offset < kAlign || b.offset > index_offset_ || b.bytes > index_offset_ - b.offset)
      fail_input("{} lies outside the store's data (offset {}, {} bytes)", at, b.offset, b.bytes);
    extents.emplace_back(b.offset, b.bytes);
    blobs_.emplace(name, std::move(b));
  }
  std::sort(extents.begin(), extents.end());
  for (std::size_t i = 1; i < extents.size(); ++i)
    if (extents[i - 1].first + extents[i - 1].second > extents[i].first)
      fail_input("weight store {} is damaged: two tensors overlap at offset {}", where, extents[i].first);
}

const std::byte* WeightStoreFile::blob(const std::string& tensor, std::size_t& bytes) const {
  const auto it = blobs_.find(tensor);
  if (it == blobs_.end())
    fail_input("weight store {} holds no tensor '{}' (built from another checkpoint layout?)", path_.string(),
               truncate_for_message(tensor));
  bytes = it->second.bytes;
  return base_ + it->second.offset;
}

void WeightStoreFile::verify() const {
  for (const auto& [name, b] : blobs_) {
    const std::byte* p = base_ + b.offset;
    if (sha256_bytes(p, b.bytes) != b.sha256)
      fail_input("weight store {} is damaged: the bytes of tensor '{}' do not match their checksum", path_.string(),
                 truncate_for_message(name));
    // The pages were read once for the check: drop them from this process.
    const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
    const auto begin = reinterpret_cast<std::uintptr_t>(p) & ~(page - 1);
    const auto end = reinterpret_cast<std::uintptr_t>(p) + b.bytes;
    ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
  }
}

void WeightStoreFile::advise(const std::string& tensor, Advice advice) const {
  const auto it = blobs_.find(tensor);
  if (it == blobs_.end() || it->second.bytes == 0) return;
  void* p = const_cast<std::byte*>(base_ + it->second.offset);  // page-aligned: offsets are multiples of 4096
  const std::size_t n = it->second.bytes;
  if (advice == Advice::Populate) {
    if (::madvise(p, n, MADV_POPULATE_READ) != 0) ::madvise(p, n, MADV_WILLNEED);
  } else {
    if (::madvise(p, n, MADV_PAGEOUT) != 0) ::madvise(p, n, MADV_DONTNEED);
  }
}

std::uint64_t available_memory_bytes() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  std::uint64_t kib = 0;
  std::string unit;
  while (in >> key >> kib >> unit)
    if (key == "MemAvailable:") return kib * 1024;
  return 0;
}

// ---- writing --------------------------------------------------------------------------------------

WeightStoreWriter::WeightStoreWriter(const std::filesystem::path& path) : path_(path) {
  char host[64] = {};
  ::gethostname(host, sizeof host - 1);
  tmp_ = path;
  tmp_ += fmt::format(".tmp.{}.{}", host, ::getpid());
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) fail_input("cannot create the weight store {}: {}", tmp_.string(), std::strerror(errno));
  end_ = kAlign;
}

WeightStoreWriter::~WeightStoreWriter() {
  if (fd_ >= 0) {
    ::close(fd_);
    ::unlink(tmp_.c_str());
  }
}

void WeightStoreWriter::write_at(const void* data, std::size_t bytes, std::uint64_t offset) {
  const char* p = static_cast<const char*>(data);
  while (bytes > 0) {
    const ssize_t n = ::pwrite(fd_, p, std::min<std::size_t>(bytes, std::size_t{1} << 30), static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0)
      fail_input("cannot write the weight store {}: {} (it is removed)", tmp_.string(),
                 n < 0 ? std::strerror(errno) : "no progress");
    p += n;
    bytes -= static_cast<std::size_t>(n);
    offset += static_cast<std::uint64_t>(n);
  }
}

void WeightStoreWriter::add(const std::string& tensor, const void* data, std::size_t bytes, std::int64_t first_nonfinite) {
  MOETRACE_ASSERT(!blobs_.count(tensor), "a tensor was added to the weight store twice");
  const std::uint64_t at = align_up(end_);
  write_at(data, bytes, at);
  blobs_[tensor] = StoreBlob{at, bytes, sha256_bytes(data, bytes), first_nonfinite};
  end_ = at + bytes;
}

void WeightStoreWriter::finish(const StoreIdentity& id, double build_seconds) {
  nlohmann::json j;
  j["checkpoint_dir"] = id.checkpoint_dir;
  j["backend"] = id.backend;
  j["layout"] = id.layout;
  j["checkpoint_files"] = nlohmann::json::array();
  for (const auto& f : id.files) j["checkpoint_files"].push_back(to_json(f));
  j["built_utc"] = utc_now();
  j["build_seconds"] = build_seconds;
  nlohmann::json tensors = nlohmann::json::object();
  for (const auto& [name, b] : blobs_)
    tensors[name] = {{"offset", b.offset}, {"bytes", b.bytes}, {"sha256", b.sha256}, {"first_nonfinite", b.first_nonfinite}};
  j["tensors"] = std::move(tensors);
  const std::string index = j.dump();
  Header h{};
  std::memcpy(h.magic, kMagic, sizeof kMagic);
  h.version = kFormatVersion;
  h.index_offset = align_up(end_);
  h.index_bytes = index.size();
  h.file_bytes = h.index_offset + h.index_bytes;
  const std::string digest = sha256_bytes(index.data(), index.size());
  std::memcpy(h.index_sha256, digest.data(), sizeof h.index_sha256);
  write_at(index.data(), index.size(), h.index_offset);
  std::vector<char> head(kAlign, 0);
  std::memcpy(head.data(), &h, sizeof h);
  write_at(head.data(), head.size(), 0);
  if (::fsync(fd_) != 0) fail_input("cannot write the weight store {}: {} (it is removed)", tmp_.string(), std::strerror(errno));
  if (::close(fd_) != 0) {
    fd_ = -1;
    ::unlink(tmp_.c_str());
    fail_input("cannot write the weight store {}: {} (it is removed)", tmp_.string(), std::strerror(errno));
  }
  fd_ = -1;
  if (::rename(tmp_.c_str(), path_.c_str()) != 0) {
    const int e = errno;
    ::unlink(tmp_.c_str());
    fail_input("cannot move the weight store into place at {}: {}", path_.string(), std::strerror(e));
  }
}

std::vector<std::filesystem::path> list_store_files(const std::filesystem::path& dir) {
  std::vector<std::filesystem::path> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec))
    if (e.path().extension() == kStoreExtension) out.push_back(e.path());
  if (ec) fail_input("cannot list the weight store folder {}: {}", dir.string(), ec.message());
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace moetrace
