#pragma once
// The checkpoint journal of a crash-safe results file (docs/results.md, "Checkpoints"): between
// full snapshots of `<out>`, each checkpoint appends ONE record holding the changes made since the
// previous checkpoint to `<out>.journal`, so a checkpoint costs what changed, not the file's size.
//
// File format (integers little-endian):
//   header  "MTJRNL01" | base_size u64 | base_crc u32 | header_crc u32        (24 bytes)
//   record  "MTRC" | payload_size u64 | payload_crc u32 | header_crc u32 | payload   (20 + n bytes)
// base_size/base_crc identify the snapshot the journal continues (CRC-32 of its bytes); a journal
// whose base is not the snapshot on disk is stale (a crash between a snapshot's rename and the
// journal's removal) and is ignored. Records are written with one write(2) and fsync'd. The payload
// is opaque here: h5::File encodes its operations into it.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace moetrace::journal {

// CRC-32 (zlib) of data[0, n), continuing `crc` (the CRC of the bytes before; 0 for none).
std::uint32_t crc32_of(const void* data, std::size_t n, std::uint32_t crc = 0);

// Which snapshot a journal continues.
struct Base {
  std::uint64_t size = 0;
  std::uint32_t crc = 0;
  bool operator==(const Base&) const = default;
};
// The base of a file whose bytes are those of `before` followed by data[0, n).
Base base_of_bytes(const void* data, std::size_t n, const Base& before = {});
Base base_of_file(const std::string& path);  // reads the whole file

inline std::string path_for(const std::string& results_path) { return results_path + ".journal"; }

// The appending side. The file is created (header + first record, one write) by the first append
// after a snapshot and removed by the next snapshot.
class Writer {
 public:
  explicit Writer(std::string path) : path_(std::move(path)) {}
  // Appends one record and fsyncs; returns the bytes written (header included when created).
  std::size_t append(const Base& base, const std::string& payload);
  void remove();  // after a snapshot: the journal's changes are in it
  std::uint64_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::uint64_t size_ = 0;  // bytes in the file (0: no file)
};

struct ReadResult {
  bool present = false;                // a journal file exists
  bool stale = false;                  // its base is not this snapshot: ignored
  std::vector<std::string> payloads;   // the valid records, in order
  std::uint64_t dropped_bytes = 0;     // a torn or damaged last record (or header), dropped
  std::uint64_t good_bytes = 0;        // bytes up to the end of the last valid record
};
// Reads the valid records of `path` continuing `base`. A torn or damaged LAST record is dropped
// (dropped_bytes > 0): bytes after it that hold no whole record header (magic and header CRC) are
// part of it. A damaged record followed by others is an InputError naming the file and the record
// (number and byte offset); so is a `path` that is not a regular file (a directory, FIFO, socket,
// device, or a link to one), refused before it is opened. Reads at most the file's size.
ReadResult read(const std::string& path, const Base& base);

// Building and parsing payloads (bounds-checked: a short payload is an InputError naming `what`).
class PayloadWriter {
 public:
  void u8(std::uint8_t v) { out_.push_back(static_cast<char>(v)); }
  void u64(std::uint64_t v);
  void f64(double v);
  void str(const std::string& s);
  void sizes(const std::vector<std::size_t>& v);
  void bytes(const void* p, std::size_t n);
  std::string& data() { return out_; }

 private:
  std::string out_;
};

class PayloadReader {
 public:
  PayloadReader(const std::string& payload, std::string what) : p_(payload), what_(std::move(what)) {}
  bool done() const { return pos_ == p_.size(); }
  std::uint8_t u8();
  std::uint64_t u64();
  double f64();
  std::string str();
  std::vector<std::size_t> sizes();
  const char* bytes(std::size_t n);  // points into the payload
  [[noreturn]] void fail(const std::string& why) const;

 private:
  const std::string& p_;
  std::string what_;
  std::size_t pos_ = 0;
};

}  // namespace moetrace::journal
