#pragma once
// A thin RAII layer over the HDF5 C API: the only place in moetrace (with the results layout
// files beside it) that includes hdf5.h. Every HDF5 return code is checked with MOETRACE_H5_CHECK,
// which names the file and line of the call and the HDF5 object involved.
#include <cstdint>
#include <string>
#include <vector>

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
    // Crash-safe: the file lives in memory (HDF5 core driver) and flush() replaces the file on
    // disk atomically (write a temporary, fsync, rename). A process killed at any moment leaves
    // the last flushed snapshot, complete and readable, never a half-written file.
    SnapshotCreate /* fails if it exists */,
    SnapshotResume,
    Scratch,  // in memory only, never written (the results of non-writing MPI ranks)
  };
  File(const std::string& path, Mode mode);
  const std::string& path() const { return path_; }
  std::int64_t id() const { return file_.id(); }
  void flush();
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
  double attr_double(const std::string& object, const std::string& name) const;
  std::int64_t attr_int(const std::string& object, const std::string& name) const;
  std::string attr_string(const std::string& object, const std::string& name) const;
  void set_attr(const std::string& object, const std::string& name, double value);
  void set_attr(const std::string& object, const std::string& name, std::int64_t value);
  void set_attr(const std::string& object, const std::string& name, const std::string& value);

 private:
  void write_numeric(const std::string& dataset, const std::vector<std::size_t>& shape, std::int64_t mem_type,
                     std::int64_t file_type, const void* data, const WriteOptions& opts);
  std::string path_;
  bool snapshot_ = false;
  Handle file_;
};

}  // namespace moetrace::h5
