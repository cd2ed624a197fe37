#pragma once
// A thin RAII layer over the HDF5 C API: the only place in moetrace (with the results layout
// files beside it) that includes hdf5.h. Every HDF5 return code is checked with MOETRACE_H5_CHECK,
// which names the file and line of the call and the HDF5 object involved.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace moetrace::journal {
class PayloadReader;
class PayloadWriter;
}  // namespace moetrace::journal

namespace moetrace::h5 {

// "1.10.10": the HDF5 library this binary runs with (for provenance).
std::string library_version();

// An owned HDF5 identifier (file, group, dataset, dataspace, attribute, property list, type).
class Handle {
 public:
  Handle() = default;
  explicit Handle(std::int64_t id) : id_(id) {}
  ~Handle();
  Handle(Handle&& o) noexcept : id_(o.id_) { o.id_ = -1; }
  Handle& operator=(Handle&& o) noexcept;
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  std::int64_t id() const { return id_; }
  bool valid() const { return id_ >= 0; }

 private:
  std::int64_t id_ = -1;
};

template <typename T>
struct Array {
  std::vector<std::size_t> shape;
  std::vector<T> data;
  std::size_t numel() const { return data.size(); }
};

// Every non-empty numeric dataset is written chunked with HDF5's Fletcher32 checksum filter, and
// every string dataset with a CRC-32 of its values (attribute `crc32`); reads verify both.
struct WriteOptions {
  bool compress = false;        // + deflate (level 4) + shuffle
  std::vector<std::size_t> chunk;  // empty: chosen from the shape
};

// Throws the InputError for damaged data: names the file and object, advises a fresh run.
[[noreturn]] void fail_damaged(const std::string& path, const std::string& object, const std::string& what);

class File {
 public:
  enum class Mode {
    ReadOnly,
    ReadWrite,
    Create /* fails if it exists */,
    Truncate,
    // Crash-safe: the file lives in memory (HDF5 core driver). flush() replaces the file on disk
    // atomically (write a temporary, fsync, rename: a full snapshot); checkpoint() appends the
    // changes since the last checkpoint to the journal `<path>.journal` (results/journal.h), or
    // takes a full snapshot when the journal outgrows the rule in checkpoint(). A process killed at
    // any moment leaves the last snapshot plus a journal of whole checkpoints (a torn last record is
    // dropped), never a half-written file. SnapshotResume opens the snapshot, verifies it, replays
    // the journal's valid records and folds them into a new snapshot.
    SnapshotCreate /* fails if it exists */,
    SnapshotResume,
    Scratch,  // in memory only, never written (the results of non-writing MPI ranks)
  };
  File(const std::string& path, Mode mode);
  ~File();
  File(const File&) = delete;
  File& operator=(const File&) = delete;
  const std::string& path() const { return path_; }
  std::int64_t id() const { return file_.id(); }
  // A full snapshot (Snapshot modes; the journal is removed) or HDF5's flush (other modes).
  void flush();
  // Closes the file. A file moetrace creates on disk (Create, Truncate), or a sealed file opened
  // ReadWrite, is sealed after closing (results/file_seal.h: a whole-file checksum in its first 512
  // bytes, checked before HDF5 reads the file again). The destructor does this too but can only log
  // a failure; call close() where a failure must stop the caller.
  void close();
  // Whether the file carried a valid seal when it was opened (false for files moetrace did not
  // write, files of older versions, and new files).
  bool sealed() const { return sealed_; }
  // Saves what changed since the last checkpoint: in Snapshot modes one journal record, whose
  // size is that of the changes, unless there is no snapshot yet or the journal would exceed
  // max(kJournalMinBytes, image / kJournalImageFraction): then a full snapshot (flush()).
  // Other modes: flush().
  void checkpoint();
  static constexpr std::uint64_t kJournalMinBytes = 1u << 20;
  static constexpr std::uint64_t kJournalImageFraction = 2;
  // What checkpoints and snapshots wrote (for tests and the end-of-run log).
  struct CheckpointStats {
    std::uint64_t checkpoints = 0;        // checkpoint() calls that had changes to save
    std::uint64_t journal_records = 0;    // ... saved as a journal record
    std::uint64_t journal_bytes = 0;      // bytes appended to the journal, in all
    std::uint64_t last_record_bytes = 0;  // bytes appended by the last journal record
    std::uint64_t snapshots = 0;          // full images written
    std::uint64_t snapshot_bytes = 0;     // their bytes, in all
    std::uint64_t image_bytes = 0;        // size of the last full image
    std::uint64_t replayed_records = 0;   // journal records replayed when the file was opened
  };
  const CheckpointStats& checkpoint_stats() const { return stats_; }
  // Reads every object (attributes, datasets in full) so that HDF5 verifies every checksum;
  // damage is an InputError naming the object. Returns the number of non-empty datasets that
  // carry no checksum (files of older versions). Called when a snapshot is resumed.
  std::size_t verify() const;

  bool exists(const std::string& object) const;  // every intermediate group is checked
  std::vector<std::string> children(const std::string& group) const;
  void create_groups(const std::string& group);  // like mkdir -p

  Array<double> read_double(const std::string& dataset) const;  // any numeric type, converted
  Array<std::int64_t> read_int(const std::string& dataset) const;
  std::vector<std::size_t> shape(const std::string& dataset) const;

  void write_float(const std::string& dataset, const std::vector<std::size_t>& shape, const float* data,
                   const WriteOptions& opts = {});
  void write_double(const std::string& dataset, const std::vector<std::size_t>& shape, const double* data,
                    const WriteOptions& opts = {});
  void write_int(const std::string& dataset, const std::vector<std::size_t>& shape, const std::int32_t* data,
                 const WriteOptions& opts = {});
  void write_int64(const std::string& dataset, const std::vector<std::size_t>& shape, const std::int64_t* data,
                   const WriteOptions& opts = {});
  void write_strings(const std::string& dataset, const std::vector<std::string>& values);
  std::vector<std::string> read_strings(const std::string& dataset) const;

  // Partial I/O into an existing dataset: rows [row0, row0 + n) along the first dimension.
  void create_dataset(const std::string& dataset, const std::vector<std::size_t>& shape, bool is_int,
                      double fill, const WriteOptions& opts);
  void write_rows_double(const std::string& dataset, std::size_t row0, std::size_t n, const double* data);
  void write_rows_int(const std::string& dataset, std::size_t row0, std::size_t n, const std::int32_t* data);

  // Attributes on any object ("/" for the root).
  bool has_attr(const std::string& object, const std::string& name) const;
  std::vector<std::string> attr_names(const std::string& object) const;  // in name order
  double attr_double(const std::string& object, const std::string& name) const;
  std::int64_t attr_int(const std::string& object, const std::string& name) const;
  std::string attr_string(const std::string& object, const std::string& name) const;
  void set_attr(const std::string& object, const std::string& name, double value);
  void set_attr(const std::string& object, const std::string& name, std::int64_t value);
  void set_attr(const std::string& object, const std::string& name, const std::string& value);

 private:
  enum class Elem : std::uint8_t { Float, Double, Int32, Int64 };
  void write_numeric(const std::string& dataset, const std::vector<std::size_t>& shape, Elem elem, const void* data,
                     const WriteOptions& opts);
  void write_rows(const std::string& dataset, std::size_t row0, std::size_t n, Elem elem, const void* data);
  // Journal: every outermost mutating call is encoded into pending_ (after it succeeded).
  struct Journal;
  class OpScope;
  // The pending record to encode the current call into, or nullptr (nested call, replay, no journal).
  journal::PayloadWriter* record_op();
  void end_op() { --op_depth_; }
  void replay_journal();
  std::int64_t open_id(Mode mode);  // the constructor's open or create, by mode (an HDF5 file id)
  std::int64_t open_existing(bool read_only);
  std::int64_t open_snapshot(bool create);
  void check_resumed();                // checksums, seal, then the journal
  void flush_image();  // the full snapshot
  void apply(journal::PayloadReader& op);
  std::string path_;
  bool snapshot_ = false;
  bool sealed_ = false;
  bool seal_on_close_ = false;
  Handle file_;
  int op_depth_ = 0;
  bool replaying_ = false;
  std::unique_ptr<Journal> journal_;  // Snapshot modes only
  CheckpointStats stats_;
};

}  // namespace moetrace::h5
