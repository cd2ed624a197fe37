#include "results/h5_file.h"

#include <hdf5.h>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <cstring>
#include <sstream>
#include <utility>

#include <zlib.h>

#include "results/file_seal.h"
#include "results/journal.h"
#include "util/checked.h"
#include "util/error.h"
#include "util/logging.h"

// Checks an HDF5 return value (negative = failure) and throws with file:line and context.
#define MOETRACE_H5_CHECK(expr, what)                                                         \
  ([&]() {                                                                                    \
    auto moetrace_h5_result = (expr);                                                         \
    if (moetrace_h5_result < 0)                                                               \
      ::moetrace::fail_internal(__FILE__, __LINE__, std::string("HDF5 call failed: ") + #expr + \
                                                        " (" + (what) + ")");                 \
    return moetrace_h5_result;                                                                \
  }())

namespace moetrace::h5 {
namespace {

void close_id(hid_t id) {
  if (id < 0) return;
  switch (H5Iget_type(id)) {
    case H5I_FILE: H5Fclose(id); break;
    case H5I_GROUP: H5Gclose(id); break;
    case H5I_DATASET: H5Dclose(id); break;
    case H5I_DATASPACE: H5Sclose(id); break;
    case H5I_ATTR: H5Aclose(id); break;
    case H5I_GENPROP_LST: H5Pclose(id); break;
    case H5I_DATATYPE: H5Tclose(id); break;
    default: break;
  }
}

std::string parent_of(const std::string& path) {
  auto pos = path.find_last_of('/');
  if (pos == std::string::npos || pos == 0) return "/";
  return path.substr(0, pos);
}

// Errors are reported by moetrace's own messages; HDF5's stack dump would only repeat them.
// HDF5's clean-up at exit is turned off (before anything initialises the library): HDF5 1.10
// crashes there (SIGSEGV in H5F__close_cb) on a file whose close failed, such as merge's output on
// a full disk, turning an exit 2 into a signal. Every file is closed by its Handle anyway.
struct SilenceHdf5 {
  SilenceHdf5() {
    H5dont_atexit();
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  }
};
const SilenceHdf5 silence_hdf5;

// File creation for the files moetrace writes: a user block of seal::kBlockBytes for the whole-file
// seal (results/file_seal.h).
Handle sealable_fcpl(const std::string& path) {
  Handle fcpl(H5Pcreate(H5P_FILE_CREATE));
  MOETRACE_H5_CHECK(fcpl.id(), path);
  MOETRACE_H5_CHECK(H5Pset_userblock(fcpl.id(), seal::kBlockBytes), path);
  return fcpl;
}

// Bytes of the user block of an open file (0: none).
hsize_t userblock_of(hid_t file, const std::string& path) {
  Handle fcpl(H5Fget_create_plist(file));
  MOETRACE_H5_CHECK(fcpl.id(), path);
  hsize_t size = 0;
  MOETRACE_H5_CHECK(H5Pget_userblock(fcpl.id(), &size), path);
  return size;
}

// File access for the files moetrace writes. (The 1.8+ object formats would add checksums to object
// headers too, but HDF5 1.10 writes their superblock wrongly into the file image of a snapshot:
// the default format is kept, and data is covered by the checksums below.)
Handle writing_fapl(const std::string& path, bool in_memory) {
  Handle fapl(H5Pcreate(H5P_FILE_ACCESS));
  MOETRACE_H5_CHECK(fapl.id(), path);
  if (in_memory) MOETRACE_H5_CHECK(H5Pset_fapl_core(fapl.id(), 1 << 20, 0 /* no backing store */), path);
  return fapl;
}

// CRC-32 of a string dataset's values (each value preceded by its 8-byte length), stored in the
// dataset's attribute kStringsCrc: the values of variable-length strings live in HDF5's global
// heap, which the Fletcher32 filter of the dataset does not cover.
constexpr const char* kStringsCrc = "crc32";
std::int64_t strings_crc(const std::vector<std::string>& values) {
  uLong crc = crc32(0L, Z_NULL, 0);
  for (const std::string& v : values) {
    const std::uint64_t n = v.size();
    unsigned char len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(n >> (8 * i));
    crc = crc32(crc, len, 8);
    for (std::size_t off = 0; off < v.size(); off += 1u << 30)
      crc = crc32(crc, reinterpret_cast<const Bytef*>(v.data() + off),
                  static_cast<uInt>(std::min<std::size_t>(v.size() - off, 1u << 30)));
  }
  return static_cast<std::int64_t>(crc);
}

bool has_fletcher32(hid_t dataset) {
  Handle dcpl(H5Dget_create_plist(dataset));
  if (dcpl.id() < 0) return false;
  unsigned flags = 0;
  std::size_t nelmts = 0;
  unsigned values[1];
  char name[16];
  unsigned config = 0;
  return H5Pget_filter_by_id2(dcpl.id(), H5Z_FILTER_FLETCHER32, &flags, &nelmts, values, sizeof name, name, &config) >= 0;
}

// A snapshot of `dest` being written to `dest.tmp`: removed unless renamed into place, so a write
// that fails (a full disk, an I/O error) or throws leaves no partial `<out>.tmp` behind.
class SnapshotTemp {
 public:
  explicit SnapshotTemp(std::string dest) : dest_(std::move(dest)), path_(dest_ + ".tmp") {
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) fail_input("cannot write the snapshot {}: {}", path_, std::strerror(errno));
  }
  SnapshotTemp(const SnapshotTemp&) = delete;
  SnapshotTemp& operator=(const SnapshotTemp&) = delete;
  ~SnapshotTemp() {
    if (fd_ >= 0) ::close(fd_);
    if (!renamed_) ::unlink(path_.c_str());
  }
  void write(const char* data, std::size_t n) {
    for (std::size_t done = 0; done < n;) {
      const ssize_t w = ::write(fd_, data + done, n - done);
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) fail(errno);
      done += static_cast<std::size_t>(w);
    }
  }
  // fsync, close and rename over `dest`.
  void commit() {
    const int fd = std::exchange(fd_, -1);
    const bool synced = ::fsync(fd) == 0;
    const int e = errno;
    if (::close(fd) != 0 || !synced) fail(synced ? errno : e);
    if (std::rename(path_.c_str(), dest_.c_str()) != 0)
      fail_input("cannot replace {} with {}: {}", dest_, path_, std::strerror(errno));
    renamed_ = true;
  }

 private:
  [[noreturn]] void fail(int error) const {  // the destructor removes the temporary
    fail_input("cannot write the snapshot {}: {} (it is removed; {} keeps the last complete snapshot, if any)",
               path_, std::strerror(error), dest_);
  }

  std::string dest_, path_;
  int fd_ = -1;
  bool renamed_ = false;
};

}  // namespace

void fail_damaged(const std::string& path, const std::string& object, const std::string& what) {
  fail_input("{}: {} is damaged ({}): the results file is corrupted and cannot be trusted. Rerun from the last "
             "good snapshot (an earlier copy of the file) or start a fresh run with another --out",
             path, object, what);
}

// The journal of a Snapshot-mode file: the snapshot on disk it continues and the changes since
// the last checkpoint, encoded as operations (kOp... below) replayed by File::apply.
struct File::Journal {
  explicit Journal(const std::string& path) : writer(journal::path_for(path)) {}
  journal::Writer writer;
  journal::Base base;     // the snapshot on disk
  bool has_base = false;  // false until the first snapshot of a new file
  journal::PayloadWriter pending;
};

// Marks a public mutating call; only the outermost one of a journaled file is recorded.
class File::OpScope {
 public:
  explicit OpScope(File& f) : f_(f), w_(f.record_op()) {}
  ~OpScope() { f_.end_op(); }
  OpScope(const OpScope&) = delete;
  OpScope& operator=(const OpScope&) = delete;
  journal::PayloadWriter* writer() const { return w_; }

 private:
  File& f_;
  journal::PayloadWriter* w_;
};

namespace {
enum Op : std::uint8_t {
  kOpCreateGroups = 1,
  kOpWriteNumeric,
  kOpCreateDataset,
  kOpWriteRows,
  kOpWriteStrings,
  kOpAttrDouble,
  kOpAttrInt,
  kOpAttrString,
};

std::size_t elem_size(std::uint8_t elem) { return elem == 0 || elem == 2 ? 4 : 8; }

std::size_t numel(const std::vector<std::size_t>& shape) {
  std::size_t n = 1;
  for (std::size_t d : shape) n = mul_or_fail(n, d, "a journaled dataset's size");
  return n;
}
}  // namespace

journal::PayloadWriter* File::record_op() {
  return op_depth_++ == 0 && journal_ && !replaying_ ? &journal_->pending : nullptr;
}

File::~File() {
  try {
    close();
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
  }
}

void File::close() {
  if (!file_.valid()) return;
  file_ = Handle();
  if (seal_on_close_) {
    seal_on_close_ = false;
    seal::seal_file(path_);
  }
}

std::string library_version() {
  unsigned maj = 0, min = 0, rel = 0;
  MOETRACE_H5_CHECK(H5get_libversion(&maj, &min, &rel), "H5get_libversion");
  return fmt::format("{}.{}.{}", maj, min, rel);
}

Handle::~Handle() { close_id(id_); }

Handle& Handle::operator=(Handle&& o) noexcept {
  if (this != &o) {
    close_id(id_);
    id_ = o.id_;
    o.id_ = -1;
  }
  return *this;
}

File::File(const std::string& path, Mode mode) : path_(path) {
  file_ = Handle(open_id(mode));
  if (snapshot_) journal_ = std::make_unique<Journal>(path);
  if (mode == Mode::SnapshotResume) check_resumed();
  if (mode == Mode::ReadOnly && std::filesystem::exists(journal::path_for(path)))
    spdlog::warn("{}: a checkpoint journal ({}) holds rows not yet folded into this file (the run was interrupted): "
                 "`moetrace run --resume` folds them in; this read shows the last full snapshot",
                 path, journal::path_for(path));
}

std::int64_t File::open_id(Mode mode) {
  const std::string& path = path_;
  hid_t id = -1;
  switch (mode) {
    case Mode::ReadOnly:
    case Mode::ReadWrite:
      return open_existing(mode == Mode::ReadOnly);
    case Mode::Create:
      id = H5Fcreate(path.c_str(), H5F_ACC_EXCL, sealable_fcpl(path).id(), writing_fapl(path, false).id());
      if (id < 0) fail_input("cannot create HDF5 file {} (it exists, or the folder is missing or read-only)", path);
      seal_on_close_ = true;
      return id;
    case Mode::Scratch:
      id = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, writing_fapl(path, true).id());
      if (id < 0) fail_internal(__FILE__, __LINE__, "cannot create an in-memory HDF5 file");
      return id;
    case Mode::SnapshotCreate:
    case Mode::SnapshotResume:
      return open_snapshot(mode == Mode::SnapshotCreate);
    case Mode::Truncate:
      id = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, sealable_fcpl(path).id(), writing_fapl(path, false).id());
      if (id < 0) fail_input("cannot create HDF5 file {} (missing or read-only folder?)", path);
      seal_on_close_ = true;
      return id;
  }
  return id;
}

std::int64_t File::open_existing(bool read_only) {
  const std::string& path = path_;
  // A file moetrace sealed is checked whole before HDF5 parses any of it.
  sealed_ = seal::check(path) == seal::State::Sealed;
  seal_on_close_ = sealed_ && !read_only;
  if (H5Fis_hdf5(path.c_str()) <= 0) {
    FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) fail_input("cannot open {}: no such file or not readable", path);
    std::fclose(f);
    fail_input("{} is not an HDF5 file (or it is damaged)", path);
  }
  const hid_t id = H5Fopen(path.c_str(), read_only ? H5F_ACC_RDONLY : H5F_ACC_RDWR, H5P_DEFAULT);
  if (id < 0) fail_input("cannot open HDF5 file {} ({})", path, read_only ? "read" : "read-write");
  return id;
}

std::int64_t File::open_snapshot(bool create) {
  const std::string& path = path_;
  snapshot_ = true;
  Handle fapl = writing_fapl(path, true);
  hid_t id = -1;
  if (create) {
    if (std::filesystem::exists(path)) fail_input("{} already exists", path);
    id = H5Fcreate(path.c_str(), H5F_ACC_EXCL, sealable_fcpl(path).id(), fapl.id());
    if (id < 0) fail_input("cannot create HDF5 file {} in memory", path);
    return id;
  }
  sealed_ = seal::check(path) == seal::State::Sealed;
  if (H5Fis_hdf5(path.c_str()) <= 0)
    fail_input("{} is not a readable HDF5 file (damaged?): move it away to start afresh; it is not "
               "overwritten", path);
  id = H5Fopen(path.c_str(), H5F_ACC_RDWR, fapl.id());
  if (id < 0) fail_damaged(path, "the file", "HDF5 cannot open it to resume");
  return id;
}

// Everything a resumed run keeps is checked before it is trusted.
void File::check_resumed() {
  const std::size_t unchecked = verify();
  if (unchecked)
    spdlog::warn("{}: {} dataset(s) carry no checksum (written by an older moetrace): their damage cannot be "
                 "detected", path_, unchecked);
  if (!sealed_)
    spdlog::warn("{}: the file has no whole-file checksum (written by an older moetrace): damage to its HDF5 "
                 "metadata cannot be detected before it is read (a new run writes files with one)",
                 path_);
  replay_journal();
}

void File::replay_journal() {
  const std::string jpath = journal::path_for(path_);
  const journal::Base base = journal::base_of_file(path_);
  journal_->base = base;
  journal_->has_base = true;
  stats_.image_bytes = base.size;
  const journal::ReadResult r = journal::read(jpath, base);
  if (!r.present) return;
  if (r.stale) {
    spdlog::info("{}: ignoring {}: it continues an earlier snapshot (the run stopped right after writing a newer "
                 "one)", path_, jpath);
  } else {
    replaying_ = true;
    for (std::size_t i = 0; i < r.payloads.size(); ++i) {
      journal::PayloadReader op(r.payloads[i], fmt::format("{}: checkpoint journal record {}", jpath, i + 1));
      while (!op.done()) apply(op);
    }
    replaying_ = false;
    stats_.replayed_records = r.payloads.size();
    spdlog::info("{}: replayed {} checkpoint(s) from {}", path_, r.payloads.size(), jpath);
    if (r.dropped_bytes)
      spdlog::warn("{}: dropped a torn or damaged last record ({} bytes at byte {}): the checkpoint it held was "
                   "cut off by the interruption; the run resumes from the checkpoint before it",
                   jpath, r.dropped_bytes, r.good_bytes);
  }
  // Fold what was replayed into a new snapshot; the journal goes (a torn tail must not stay in it).
  flush_image();
}

void File::apply(journal::PayloadReader& op) {
  const std::uint8_t code = op.u8();
  switch (code) {
    case kOpCreateGroups: create_groups(op.str()); return;
    case kOpWriteNumeric: {
      const std::string ds = op.str();
      const auto shape = op.sizes();
      const std::uint8_t elem = op.u8();
      if (elem > 3) op.fail("an unknown element type");
      WriteOptions o;
      o.compress = op.u8() != 0;
      o.chunk = op.sizes();
      if (!o.chunk.empty() && o.chunk.size() != shape.size()) op.fail("a chunk shape of another rank");
      const char* data = op.bytes(mul_or_fail(numel(shape), elem_size(elem), "a journaled dataset's size"));
      write_numeric(ds, shape, static_cast<Elem>(elem), data, o);
      return;
    }
    case kOpCreateDataset: {
      const std::string ds = op.str();
      const auto shape = op.sizes();
      const bool is_int = op.u8() != 0;
      const double fill = op.f64();
      WriteOptions o;
      o.compress = op.u8() != 0;
      o.chunk = op.sizes();
      if (!o.chunk.empty() && o.chunk.size() != shape.size()) op.fail("a chunk shape of another rank");
      if (exists(ds)) op.fail("it creates dataset '" + ds + "', which exists");
      create_dataset(ds, shape, is_int, fill, o);
      return;
    }
    case kOpWriteRows: {
      const std::string ds = op.str();
      const std::uint64_t row0 = op.u64(), n = op.u64();
      const std::uint8_t elem = op.u8();
      if (elem != static_cast<std::uint8_t>(Elem::Double) && elem != static_cast<std::uint8_t>(Elem::Int32))
        op.fail("an unknown element type");
      if (!exists(ds)) op.fail("it writes rows of dataset '" + ds + "', which does not exist");
      auto shape = this->shape(ds);
      if (shape.empty() || row0 > shape[0] || n > shape[0] - row0) op.fail("rows outside dataset '" + ds + "'");
      shape[0] = n;
      const char* data = op.bytes(mul_or_fail(numel(shape), elem_size(elem), "a journaled dataset's size"));
      write_rows(ds, row0, n, static_cast<Elem>(elem), data);
      return;
    }
    case kOpWriteStrings: {
      const std::string ds = op.str();
      const std::uint64_t n = op.u64();
      std::vector<std::string> v;
      for (std::uint64_t i = 0; i < n; ++i) v.push_back(op.str());  // each str() is bounds-checked
      write_strings(ds, v);
      return;
    }
    case kOpAttrDouble:
    case kOpAttrInt:
    case kOpAttrString: {
      const std::string object = op.str(), name = op.str();
      if (!exists(object)) op.fail("it sets an attribute of '" + object + "', which does not exist");
      if (code == kOpAttrDouble) set_attr(object, name, op.f64());
      else if (code == kOpAttrInt) set_attr(object, name, static_cast<std::int64_t>(op.u64()));
      else set_attr(object, name, op.str());
      return;
    }
    default: op.fail(fmt::format("an unknown operation {}", code));
  }
}

void File::flush() {
  if (!snapshot_) {
    // A file on disk (merge's output): HDF5 writes it here, and a full disk is bad input, not a bug.
    errno = 0;
    if (H5Fflush(file_.id(), H5F_SCOPE_GLOBAL) < 0)
      fail_input("cannot write {}: {}", path_, errno ? std::strerror(errno) : "HDF5 could not write it to disk");
    return;
  }
  // Nothing changed since the snapshot on disk: it is already this file.
  if (journal_->has_base && journal_->pending.data().empty() && journal_->writer.size() == 0) return;
  flush_image();
}

void File::checkpoint() {
  if (!snapshot_) {
    flush();
    return;
  }
  Journal& j = *journal_;
  if (j.pending.data().empty()) return;
  ++stats_.checkpoints;
  const std::uint64_t limit = std::max<std::uint64_t>(kJournalMinBytes, stats_.image_bytes / kJournalImageFraction);
  if (!j.has_base || j.writer.size() + j.pending.data().size() > limit) {
    flush_image();
    return;
  }
  const std::size_t n = j.writer.append(j.base, j.pending.data());
  j.pending.data().clear();
  ++stats_.journal_records;
  stats_.journal_bytes += n;
  stats_.last_record_bytes = n;
}

void File::flush_image() {
  MOETRACE_H5_CHECK(H5Fflush(file_.id(), H5F_SCOPE_GLOBAL), path_);
  const ssize_t size = MOETRACE_H5_CHECK(H5Fget_file_image(file_.id(), nullptr, 0), path_);
  std::vector<char> image(static_cast<std::size_t>(size));
  MOETRACE_H5_CHECK(H5Fget_file_image(file_.id(), image.data(), image.size()), path_);
  // HDF5's image of a file with a user block starts at the superblock: the seal goes in front of
  // it (results/file_seal.h). A resumed file of an older version has no user block and stays unsealed.
  std::vector<char> block;
  if (userblock_of(file_.id(), path_) == seal::kBlockBytes) block = seal::seal_block(image.data(), image.size());
  SnapshotTemp tmp(path_);
  tmp.write(block.data(), block.size());
  tmp.write(image.data(), image.size());
  tmp.commit();
  // The snapshot holds everything: the journal goes (a crash before this leaves a journal whose
  // base is the previous snapshot, ignored on resume).
  Journal& j = *journal_;
  j.base = journal::base_of_bytes(image.data(), image.size(), journal::base_of_bytes(block.data(), block.size()));
  j.has_base = true;
  j.writer.remove();
  j.pending.data().clear();
  ++stats_.snapshots;
  stats_.snapshot_bytes += block.size() + image.size();
  stats_.image_bytes = block.size() + image.size();
}

bool File::exists(const std::string& object) const {
  if (object == "/" || object.empty()) return true;
  std::string prefix;
  std::stringstream ss(object);
  std::string part;
  while (std::getline(ss, part, '/')) {
    if (part.empty()) continue;
    prefix += "/" + part;
    const htri_t e = H5Lexists(file_.id(), prefix.c_str(), H5P_DEFAULT);
    if (e < 0) fail_damaged(path_, "group '" + parent_of(prefix) + "'", "its links cannot be read");
    if (e == 0) return false;
  }
  return true;
}

std::vector<std::string> File::children(const std::string& group) const {
  if (!exists(group)) fail_input("{}: group '{}' not found", path_, group);
  Handle g(H5Gopen2(file_.id(), group.c_str(), H5P_DEFAULT));
  if (g.id() < 0) fail_damaged(path_, "group '" + group + "'", "it cannot be opened");
  H5G_info_t info;
  if (H5Gget_info(g.id(), &info) < 0) fail_damaged(path_, "group '" + group + "'", "its links cannot be read");
  std::vector<std::string> out;
  for (hsize_t i = 0; i < info.nlinks; ++i) {
    ssize_t n = H5Lget_name_by_idx(g.id(), ".", H5_INDEX_NAME, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT);
    if (n < 0) fail_damaged(path_, "group '" + group + "'", "its links cannot be read");
    std::string name(static_cast<std::size_t>(n), '\0');
    if (H5Lget_name_by_idx(g.id(), ".", H5_INDEX_NAME, H5_ITER_INC, i, name.data(), n + 1, H5P_DEFAULT) < 0)
      fail_damaged(path_, "group '" + group + "'", "its links cannot be read");
    out.push_back(name);
  }
  return out;
}

std::vector<std::string> File::attr_names(const std::string& object) const {
  if (!exists(object)) fail_input("{}: '{}' not found", path_, object);
  Handle o(H5Oopen(file_.id(), object.c_str(), H5P_DEFAULT));
  if (o.id() < 0) fail_damaged(path_, "'" + object + "'", "it cannot be opened");
  H5O_info_t info;
  if (H5Oget_info(o.id(), &info) < 0) fail_damaged(path_, "'" + object + "'", "its header cannot be read");
  std::vector<std::string> out;
  for (hsize_t i = 0; i < info.num_attrs; ++i) {
    const ssize_t n = H5Aget_name_by_idx(o.id(), ".", H5_INDEX_NAME, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT);
    if (n < 0) fail_damaged(path_, "'" + object + "'", "its attributes cannot be read");
    std::string name(static_cast<std::size_t>(n), '\0');
    if (H5Aget_name_by_idx(o.id(), ".", H5_INDEX_NAME, H5_ITER_INC, i, name.data(), static_cast<std::size_t>(n) + 1,
                           H5P_DEFAULT) < 0)
      fail_damaged(path_, "'" + object + "'", "its attributes cannot be read");
    out.push_back(name);
  }
  return out;
}

void File::create_groups(const std::string& group) {
  OpScope scope(*this);
  std::string prefix;
  std::stringstream ss(group);
  std::string part;
  while (std::getline(ss, part, '/')) {
    if (part.empty()) continue;
    prefix += "/" + part;
    if (H5Lexists(file_.id(), prefix.c_str(), H5P_DEFAULT) > 0) continue;
    Handle g(H5Gcreate2(file_.id(), prefix.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    MOETRACE_H5_CHECK(g.id(), path_ + ":" + prefix);
  }
  if (auto* w = scope.writer()) {
    w->u8(kOpCreateGroups);
    w->str(group);
  }
}

std::vector<std::size_t> File::shape(const std::string& dataset) const {
  if (!exists(dataset)) fail_input("{}: dataset '{}' not found", path_, dataset);
  Handle d(H5Dopen2(file_.id(), dataset.c_str(), H5P_DEFAULT));
  if (d.id() < 0) fail_damaged(path_, "dataset '" + dataset + "'", "it cannot be opened");
  Handle space(H5Dget_space(d.id()));
  const int rank = space.valid() ? H5Sget_simple_extent_ndims(space.id()) : -1;
  if (rank < 0) fail_damaged(path_, "dataset '" + dataset + "'", "its shape cannot be read");
  std::vector<hsize_t> dims(rank);
  if (H5Sget_simple_extent_dims(space.id(), dims.data(), nullptr) < 0)
    fail_damaged(path_, "dataset '" + dataset + "'", "its shape cannot be read");
  return {dims.begin(), dims.end()};
}

namespace {
template <typename T>
Array<T> read_as(const File& f, hid_t file_id, const std::string& dataset, hid_t mem_type) {
  Array<T> a;
  a.shape = f.shape(dataset);
  std::size_t n = 1;
  for (auto d : a.shape) {
    if (d != 0 && n > (std::size_t{1} << 28) / d)
      fail_input("{}: dataset '{}' claims {} elements: too large to read (damaged file?)", f.path(), dataset,
                 fmt::join(a.shape, " x "));
    n *= d;
  }
  a.data.resize(n);
  Handle d(H5Dopen2(file_id, dataset.c_str(), H5P_DEFAULT));
  if (d.id() < 0) fail_damaged(f.path(), "dataset '" + dataset + "'", "it cannot be opened");
  if (n && H5Dread(d.id(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, a.data.data()) < 0)
    fail_damaged(f.path(), "dataset '" + dataset + "'",
                 has_fletcher32(d.id()) ? "its checksum does not match or its data cannot be read"
                                        : "its data cannot be read");
  return a;
}
}  // namespace

Array<double> File::read_double(const std::string& dataset) const {
  return read_as<double>(*this, file_.id(), dataset, H5T_NATIVE_DOUBLE);
}

Array<std::int64_t> File::read_int(const std::string& dataset) const {
  return read_as<std::int64_t>(*this, file_.id(), dataset, H5T_NATIVE_INT64);
}

void File::write_numeric(const std::string& dataset, const std::vector<std::size_t>& shape, Elem elem,
                         const void* data, const WriteOptions& opts) {
  OpScope scope(*this);
  const hid_t types[4][2] = {{H5T_NATIVE_FLOAT, H5T_IEEE_F32LE}, {H5T_NATIVE_DOUBLE, H5T_IEEE_F64LE},
                             {H5T_NATIVE_INT32, H5T_STD_I32LE}, {H5T_NATIVE_INT64, H5T_STD_I64LE}};
  const hid_t mem_type = types[static_cast<int>(elem)][0], file_type = types[static_cast<int>(elem)][1];
  create_groups(parent_of(dataset));
  std::vector<hsize_t> dims(shape.begin(), shape.end());
  Handle space(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr));
  MOETRACE_H5_CHECK(space.id(), path_ + ":" + dataset);
  Handle dcpl(H5Pcreate(H5P_DATASET_CREATE));
  std::size_t n = 1;
  for (auto d : shape) n *= d;
  // Every non-empty dataset is chunked and carries a Fletcher32 checksum per chunk (verified by
  // HDF5 on every read); compression is optional.
  if (n > 0 && !dims.empty()) {
    std::vector<hsize_t> chunk(opts.chunk.begin(), opts.chunk.end());
    if (chunk.empty()) {
      chunk = dims;
      chunk[0] = std::min<hsize_t>(dims[0], opts.compress ? 64 : 1 << 16);
      hsize_t inner = 1;
      for (std::size_t i = 1; i < dims.size(); ++i) inner *= dims[i];
      chunk[0] = std::max<hsize_t>(1, std::min<hsize_t>(chunk[0], (hsize_t{1} << 20) / std::max<hsize_t>(inner, 1)));
    }
    for (std::size_t i = 0; i < chunk.size(); ++i) chunk[i] = std::max<hsize_t>(1, std::min(chunk[i], dims[i]));
    MOETRACE_H5_CHECK(H5Pset_chunk(dcpl.id(), static_cast<int>(chunk.size()), chunk.data()), dataset);
    if (opts.compress) {
      MOETRACE_H5_CHECK(H5Pset_shuffle(dcpl.id()), dataset);
      MOETRACE_H5_CHECK(H5Pset_deflate(dcpl.id(), 4), dataset);
    }
    MOETRACE_H5_CHECK(H5Pset_fletcher32(dcpl.id()), dataset);
  }
  if (H5Lexists(file_.id(), dataset.c_str(), H5P_DEFAULT) > 0)
    MOETRACE_H5_CHECK(H5Ldelete(file_.id(), dataset.c_str(), H5P_DEFAULT), path_ + ":" + dataset);
  Handle d(H5Dcreate2(file_.id(), dataset.c_str(), file_type, space.id(), H5P_DEFAULT, dcpl.id(), H5P_DEFAULT));
  MOETRACE_H5_CHECK(d.id(), path_ + ":" + dataset);
  if (n) MOETRACE_H5_CHECK(H5Dwrite(d.id(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), path_ + ":" + dataset);
  if (auto* w = scope.writer()) {
    w->u8(kOpWriteNumeric);
    w->str(dataset);
    w->sizes(shape);
    w->u8(static_cast<std::uint8_t>(elem));
    w->u8(opts.compress ? 1 : 0);
    w->sizes(opts.chunk);
    w->bytes(data, n * elem_size(static_cast<std::uint8_t>(elem)));
  }
}

void File::write_float(const std::string& ds, const std::vector<std::size_t>& shape, const float* data,
                       const WriteOptions& o) {
  write_numeric(ds, shape, Elem::Float, data, o);
}
void File::write_double(const std::string& ds, const std::vector<std::size_t>& shape, const double* data,
                        const WriteOptions& o) {
  write_numeric(ds, shape, Elem::Double, data, o);
}
void File::write_int(const std::string& ds, const std::vector<std::size_t>& shape, const std::int32_t* data,
                     const WriteOptions& o) {
  write_numeric(ds, shape, Elem::Int32, data, o);
}
void File::write_int64(const std::string& ds, const std::vector<std::size_t>& shape, const std::int64_t* data,
                       const WriteOptions& o) {
  write_numeric(ds, shape, Elem::Int64, data, o);
}

void File::create_dataset(const std::string& dataset, const std::vector<std::size_t>& shape, bool is_int,
                          double fill, const WriteOptions& opts) {
  OpScope scope(*this);
  create_groups(parent_of(dataset));
  std::vector<hsize_t> dims(shape.begin(), shape.end());
  Handle space(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr));
  MOETRACE_H5_CHECK(space.id(), path_ + ":" + dataset);
  Handle dcpl(H5Pcreate(H5P_DATASET_CREATE));
  std::vector<hsize_t> chunk(opts.chunk.begin(), opts.chunk.end());
  if (chunk.empty()) {
    chunk = dims;
    if (!chunk.empty()) chunk[0] = std::min<hsize_t>(dims[0], 16);
  }
  for (std::size_t i = 0; i < chunk.size(); ++i) chunk[i] = std::max<hsize_t>(1, std::min(chunk[i], std::max<hsize_t>(dims[i], 1)));
  if (!dims.empty()) MOETRACE_H5_CHECK(H5Pset_chunk(dcpl.id(), static_cast<int>(chunk.size()), chunk.data()), dataset);
  if (opts.compress) {
    MOETRACE_H5_CHECK(H5Pset_shuffle(dcpl.id()), dataset);
    MOETRACE_H5_CHECK(H5Pset_deflate(dcpl.id(), 4), dataset);
  }
  if (!dims.empty()) MOETRACE_H5_CHECK(H5Pset_fletcher32(dcpl.id()), dataset);
  const hid_t type = is_int ? H5T_STD_I32LE : H5T_IEEE_F64LE;
  if (is_int) {
    std::int32_t f = static_cast<std::int32_t>(fill);
    MOETRACE_H5_CHECK(H5Pset_fill_value(dcpl.id(), H5T_NATIVE_INT32, &f), dataset);
  } else {
    MOETRACE_H5_CHECK(H5Pset_fill_value(dcpl.id(), H5T_NATIVE_DOUBLE, &fill), dataset);
  }
  MOETRACE_H5_CHECK(H5Pset_fill_time(dcpl.id(), H5D_FILL_TIME_ALLOC), dataset);
  Handle d(H5Dcreate2(file_.id(), dataset.c_str(), type, space.id(), H5P_DEFAULT, dcpl.id(), H5P_DEFAULT));
  MOETRACE_H5_CHECK(d.id(), path_ + ":" + dataset);
  if (auto* w = scope.writer()) {
    w->u8(kOpCreateDataset);
    w->str(dataset);
    w->sizes(shape);
    w->u8(is_int ? 1 : 0);
    w->f64(fill);
    w->u8(opts.compress ? 1 : 0);
    w->sizes(opts.chunk);
  }
}

void File::write_rows(const std::string& dataset, std::size_t row0, std::size_t n, Elem elem, const void* data) {
  OpScope scope(*this);
  const hid_t file_id = file_.id();
  const hid_t mem_type = elem == Elem::Int32 ? H5T_NATIVE_INT32 : H5T_NATIVE_DOUBLE;
  MOETRACE_ASSERT(elem == Elem::Int32 || elem == Elem::Double, "rows are int32 or float64");
  auto shape = this->shape(dataset);
  MOETRACE_ASSERT(!shape.empty() && row0 + n <= shape[0], "row range outside " + dataset);
  Handle d(H5Dopen2(file_id, dataset.c_str(), H5P_DEFAULT));
  MOETRACE_H5_CHECK(d.id(), dataset);
  Handle space(H5Dget_space(d.id()));
  std::vector<hsize_t> start(shape.size(), 0), count(shape.begin(), shape.end());
  start[0] = row0;
  count[0] = n;
  MOETRACE_H5_CHECK(H5Sselect_hyperslab(space.id(), H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr), dataset);
  Handle mem(H5Screate_simple(static_cast<int>(count.size()), count.data(), nullptr));
  // A row shares its chunk with others: HDF5 reads the chunk (verifying its checksum) first.
  if (H5Dwrite(d.id(), mem_type, mem.id(), space.id(), H5P_DEFAULT, data) < 0)
    fail_damaged(path_, "dataset '" + dataset + "'", "a chunk to update cannot be read back");
  if (auto* w = scope.writer()) {
    w->u8(kOpWriteRows);
    w->str(dataset);
    w->u64(row0);
    w->u64(n);
    w->u8(static_cast<std::uint8_t>(elem));
    std::size_t values = 1;
    for (hsize_t c : count) values *= c;
    w->bytes(data, values * elem_size(static_cast<std::uint8_t>(elem)));
  }
}

void File::write_rows_double(const std::string& ds, std::size_t row0, std::size_t n, const double* data) {
  write_rows(ds, row0, n, Elem::Double, data);
}
void File::write_rows_int(const std::string& ds, std::size_t row0, std::size_t n, const std::int32_t* data) {
  write_rows(ds, row0, n, Elem::Int32, data);
}

void File::write_strings(const std::string& dataset, const std::vector<std::string>& values) {
  OpScope scope(*this);
  create_groups(parent_of(dataset));
  Handle type(H5Tcopy(H5T_C_S1));
  MOETRACE_H5_CHECK(H5Tset_size(type.id(), H5T_VARIABLE), dataset);
  MOETRACE_H5_CHECK(H5Tset_cset(type.id(), H5T_CSET_UTF8), dataset);
  hsize_t dims[1] = {values.size()};
  Handle space(H5Screate_simple(1, dims, nullptr));
  if (H5Lexists(file_.id(), dataset.c_str(), H5P_DEFAULT) > 0)
    MOETRACE_H5_CHECK(H5Ldelete(file_.id(), dataset.c_str(), H5P_DEFAULT), dataset);
  Handle d(H5Dcreate2(file_.id(), dataset.c_str(), type.id(), space.id(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
  MOETRACE_H5_CHECK(d.id(), path_ + ":" + dataset);
  std::vector<const char*> ptrs;
  for (const auto& v : values) ptrs.push_back(v.c_str());
  if (!values.empty()) MOETRACE_H5_CHECK(H5Dwrite(d.id(), type.id(), H5S_ALL, H5S_ALL, H5P_DEFAULT, ptrs.data()), dataset);
  set_attr(dataset, kStringsCrc, strings_crc(values));
  if (auto* w = scope.writer()) {
    w->u8(kOpWriteStrings);
    w->str(dataset);
    w->u64(values.size());
    for (const auto& v : values) w->str(v);
  }
}

std::vector<std::string> File::read_strings(const std::string& dataset) const {
  auto dims = shape(dataset);
  if (dims.size() != 1) fail_input("{}: dataset '{}' is not a 1-D list of strings", path_, dataset);
  const std::string what = "dataset '" + dataset + "'";
  Handle d(H5Dopen2(file_.id(), dataset.c_str(), H5P_DEFAULT));
  if (d.id() < 0) fail_damaged(path_, what, "it cannot be opened");
  Handle stored(H5Dget_type(d.id()));
  if (stored.id() < 0) fail_damaged(path_, what, "its type cannot be read");
  if (H5Tget_class(stored.id()) != H5T_STRING || H5Tis_variable_str(stored.id()) <= 0)
    fail_input("{}: {} does not hold variable-length strings", path_, what);
  Handle type(H5Tcopy(H5T_C_S1));
  MOETRACE_H5_CHECK(H5Tset_size(type.id(), H5T_VARIABLE), dataset);
  MOETRACE_H5_CHECK(H5Tset_cset(type.id(), H5Tget_cset(stored.id())), dataset);
  std::vector<char*> ptrs(dims[0], nullptr);
  if (!ptrs.empty() && H5Dread(d.id(), type.id(), H5S_ALL, H5S_ALL, H5P_DEFAULT, ptrs.data()) < 0)
    fail_damaged(path_, what, "its strings cannot be read");
  std::vector<std::string> out;
  for (char* p : ptrs) out.emplace_back(p ? p : "");
  Handle space(H5Dget_space(d.id()));
  if (!ptrs.empty()) H5Dvlen_reclaim(type.id(), space.id(), H5P_DEFAULT, ptrs.data());
  if (has_attr(dataset, kStringsCrc) && attr_int(dataset, kStringsCrc) != strings_crc(out))
    fail_damaged(path_, what, "its checksum does not match");
  return out;
}

namespace {

herr_t collect_link(hid_t, const char* name, const H5L_info_t*, void* out) {
  static_cast<std::vector<std::string>*>(out)->push_back(std::string("/") + name);
  return 0;
}

// Reads every attribute of an open object; a damaged one is an InputError naming it.
void read_attributes(const std::string& path, hid_t obj, const std::string& object) {
  H5O_info_t info;
  if (H5Oget_info(obj, &info) < 0) fail_damaged(path, "'" + object + "'", "its header cannot be read");
  for (hsize_t i = 0; i < info.num_attrs; ++i) {
    Handle a(H5Aopen_by_idx(obj, ".", H5_INDEX_CRT_ORDER, H5_ITER_INC, i, H5P_DEFAULT, H5P_DEFAULT));
    if (a.id() < 0) a = Handle(H5Aopen_by_idx(obj, ".", H5_INDEX_NAME, H5_ITER_INC, i, H5P_DEFAULT, H5P_DEFAULT));
    if (a.id() < 0) fail_damaged(path, "'" + object + "'", "its attributes cannot be read");
    const std::string what = fmt::format("attribute {} of '{}'", i, object);
    Handle ftype(H5Aget_type(a.id()));
    Handle space(H5Aget_space(a.id()));
    const hssize_t npoints = space.valid() ? H5Sget_simple_extent_npoints(space.id()) : -1;
    if (ftype.id() < 0 || npoints < 0 || npoints > (1 << 20)) fail_damaged(path, what, "its type or shape cannot be read");
    if (H5Tis_variable_str(ftype.id()) > 0) {
      Handle mtype(H5Tcopy(H5T_C_S1));
      MOETRACE_H5_CHECK(H5Tset_size(mtype.id(), H5T_VARIABLE), what);
      MOETRACE_H5_CHECK(H5Tset_cset(mtype.id(), H5Tget_cset(ftype.id())), what);  // UTF-8 stays UTF-8
      std::vector<char*> ptrs(static_cast<std::size_t>(npoints), nullptr);
      if (npoints && H5Aread(a.id(), mtype.id(), ptrs.data()) < 0) fail_damaged(path, what, "it cannot be read");
      if (npoints) H5Dvlen_reclaim(mtype.id(), space.id(), H5P_DEFAULT, ptrs.data());
    } else {
      Handle mtype(H5Tget_native_type(ftype.id(), H5T_DIR_DEFAULT));
      const std::size_t size = mtype.valid() ? H5Tget_size(mtype.id()) : 0;
      if (!size || H5Tdetect_class(ftype.id(), H5T_VLEN) > 0) continue;  // moetrace writes no such attributes
      std::vector<unsigned char> buf(size * static_cast<std::size_t>(npoints));
      if (npoints && H5Aread(a.id(), mtype.id(), buf.data()) < 0) fail_damaged(path, what, "it cannot be read");
    }
  }
}

}  // namespace

std::size_t File::verify() const {
  std::vector<std::string> names;
  if (H5Lvisit(file_.id(), H5_INDEX_NAME, H5_ITER_INC, collect_link, &names) < 0)
    fail_damaged(path_, "the file's group structure", "it cannot be walked");
  std::size_t unchecked = 0;
  read_attributes(path_, file_.id(), "/");
  for (const std::string& name : names) {
    Handle obj(H5Oopen(file_.id(), name.c_str(), H5P_DEFAULT));
    if (obj.id() < 0) fail_damaged(path_, "'" + name + "'", "it cannot be opened");
    read_attributes(path_, obj.id(), name);
    if (H5Iget_type(obj.id()) != H5I_DATASET) continue;
    Handle type(H5Dget_type(obj.id()));
    if (type.id() < 0) fail_damaged(path_, "dataset '" + name + "'", "its type cannot be read");
    Handle space(H5Dget_space(obj.id()));
    const hssize_t npoints = space.valid() ? H5Sget_simple_extent_npoints(space.id()) : -1;
    if (npoints < 0) fail_damaged(path_, "dataset '" + name + "'", "its shape cannot be read");
    if (npoints == 0) continue;
    if (H5Tget_class(type.id()) == H5T_STRING) {
      if (!has_attr(name, kStringsCrc)) ++unchecked;
      read_strings(name);  // compares the CRC
      continue;
    }
    if (!has_fletcher32(obj.id())) ++unchecked;
    Handle mtype(H5Tget_native_type(type.id(), H5T_DIR_DEFAULT));
    const std::size_t size = mtype.valid() ? H5Tget_size(mtype.id()) : 0;
    if (!size || static_cast<std::size_t>(npoints) > (std::size_t{1} << 31) / size)
      fail_damaged(path_, "dataset '" + name + "'", fmt::format("it claims {} elements of {} bytes", npoints, size));
    std::vector<unsigned char> buf(size * static_cast<std::size_t>(npoints));
    if (H5Dread(obj.id(), mtype.id(), H5S_ALL, H5S_ALL, H5P_DEFAULT, buf.data()) < 0)
      fail_damaged(path_, "dataset '" + name + "'",
                   has_fletcher32(obj.id()) ? "its checksum does not match or its data cannot be read"
                                            : "its data cannot be read");
  }
  return unchecked;
}

bool File::has_attr(const std::string& object, const std::string& name) const {
  if (!exists(object)) return false;
  const htri_t e = H5Aexists_by_name(file_.id(), object.c_str(), name.c_str(), H5P_DEFAULT);
  if (e < 0) fail_damaged(path_, "'" + object + "'", "its attributes cannot be read");
  return e > 0;
}

namespace {
Handle open_attr(hid_t file, const std::string& path, const std::string& object, const std::string& name) {
  const htri_t e = H5Aexists_by_name(file, object.c_str(), name.c_str(), H5P_DEFAULT);
  if (e < 0) fail_damaged(path, "'" + object + "'", "its attributes cannot be read");
  if (e == 0) fail_input("{}: attribute '{}' of '{}' not found", path, name, object);
  Handle a(H5Aopen_by_name(file, object.c_str(), name.c_str(), H5P_DEFAULT, H5P_DEFAULT));
  if (a.id() < 0) fail_damaged(path, "attribute '" + name + "' of '" + object + "'", "it cannot be opened");
  return a;
}
}  // namespace

double File::attr_double(const std::string& object, const std::string& name) const {
  Handle a = open_attr(file_.id(), path_, object, name);
  double v = 0;
  if (H5Aread(a.id(), H5T_NATIVE_DOUBLE, &v) < 0) fail_damaged(path_, "attribute '" + name + "' of '" + object + "'", "it cannot be read");
  return v;
}

std::int64_t File::attr_int(const std::string& object, const std::string& name) const {
  Handle a = open_attr(file_.id(), path_, object, name);
  std::int64_t v = 0;
  if (H5Aread(a.id(), H5T_NATIVE_INT64, &v) < 0) fail_damaged(path_, "attribute '" + name + "' of '" + object + "'", "it cannot be read");
  return v;
}

std::string File::attr_string(const std::string& object, const std::string& name) const {
  Handle a = open_attr(file_.id(), path_, object, name);
  Handle ftype(H5Aget_type(a.id()));
  if (ftype.id() < 0) fail_damaged(path_, "attribute '" + name + "' of '" + object + "'", "its type cannot be read");
  if (H5Tis_variable_str(ftype.id()) > 0) {
    Handle mtype(H5Tcopy(H5T_C_S1));
    MOETRACE_H5_CHECK(H5Tset_size(mtype.id(), H5T_VARIABLE), name);
    MOETRACE_H5_CHECK(H5Tset_cset(mtype.id(), H5Tget_cset(ftype.id())), name);  // UTF-8 stays UTF-8
    char* p = nullptr;
    if (H5Aread(a.id(), mtype.id(), &p) < 0)
      fail_damaged(path_, "attribute '" + name + "' of '" + object + "'", "it cannot be read");
    std::string s = p ? p : "";
    H5free_memory(p);
    return s;
  }
  const std::size_t n = H5Tget_size(ftype.id());
  std::string s(n, '\0');
  if (H5Aread(a.id(), ftype.id(), s.data()) < 0)
    fail_damaged(path_, "attribute '" + name + "' of '" + object + "'", "it cannot be read");
  s.erase(std::find(s.begin(), s.end(), '\0'), s.end());
  return s;
}

namespace {
void write_attr(hid_t file, const std::string& object, const std::string& name, hid_t file_type, hid_t mem_type,
                const void* value) {
  if (H5Aexists_by_name(file, object.c_str(), name.c_str(), H5P_DEFAULT) > 0)
    MOETRACE_H5_CHECK(H5Adelete_by_name(file, object.c_str(), name.c_str(), H5P_DEFAULT), name);
  Handle space(H5Screate(H5S_SCALAR));
  Handle a(H5Acreate_by_name(file, object.c_str(), name.c_str(), file_type, space.id(), H5P_DEFAULT, H5P_DEFAULT,
                             H5P_DEFAULT));
  MOETRACE_H5_CHECK(a.id(), object + "@" + name);
  MOETRACE_H5_CHECK(H5Awrite(a.id(), mem_type, value), object + "@" + name);
}
}  // namespace

void File::set_attr(const std::string& object, const std::string& name, double value) {
  OpScope scope(*this);
  write_attr(file_.id(), object, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &value);
  if (auto* w = scope.writer()) {
    w->u8(kOpAttrDouble);
    w->str(object);
    w->str(name);
    w->f64(value);
  }
}
void File::set_attr(const std::string& object, const std::string& name, std::int64_t value) {
  OpScope scope(*this);
  write_attr(file_.id(), object, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &value);
  if (auto* w = scope.writer()) {
    w->u8(kOpAttrInt);
    w->str(object);
    w->str(name);
    w->u64(static_cast<std::uint64_t>(value));
  }
}
void File::set_attr(const std::string& object, const std::string& name, const std::string& value) {
  OpScope scope(*this);
  Handle type(H5Tcopy(H5T_C_S1));
  MOETRACE_H5_CHECK(H5Tset_size(type.id(), H5T_VARIABLE), name);
  MOETRACE_H5_CHECK(H5Tset_cset(type.id(), H5T_CSET_UTF8), name);
  const char* p = value.c_str();
  write_attr(file_.id(), object, name, type.id(), type.id(), &p);
  if (auto* w = scope.writer()) {
    w->u8(kOpAttrString);
    w->str(object);
    w->str(name);
    w->str(value);
  }
}

}  // namespace moetrace::h5
