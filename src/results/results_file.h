#pragma once
// The results file of `moetrace run` (layout: docs/results.md). Matrices are pre-sized, chunked,
// compressed and NaN-filled, and every matrix row has a done flag, so rewriting a row is
// idempotent and a resumed run recomputes only what is missing.
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "results/h5_file.h"

namespace moetrace {

// The group every command's results file has (its other names: tracing_layout.h, localize_layout.h).
namespace layout {
inline constexpr const char* kProvenance = "/provenance";
// Attributes of /provenance set outside write_provenance (ResultsFile's setters below; merge).
inline constexpr const char* kCompletedAttr = "completed";
inline constexpr const char* kProtocolAttr = "protocol";
inline constexpr const char* kShardAttr = "shard";
inline constexpr const char* kWorkingDirectoryAttr = "working_directory";
}  // namespace layout

struct Provenance {
  std::string moetrace_version, git_commit, command_line, config_path, config_text, created_utc;
  std::string model_path, model_files_sha256_json, library_versions_json, backend;
  int ranks = 1;
};

struct CaseTable {
  std::vector<std::int64_t> case_id;
  std::vector<std::string> prompt, subject, true_object, foil_object, relation;
  std::vector<std::vector<int>> token_ids;
  std::vector<int> subject_begin, subject_end, true_id, foil_id, split;  // split: 0 discovery, 1 validation
  std::vector<double> d_clean, d_noised;
};

struct SummaryRecord {
  std::string name;
  int n = 0;
  double mean = 0, ci_low = 0, ci_high = 0, frac_positive = 0, p_value = 1;
};
// The record named `name` of `records`, or one of that name with NaN values (n = 0) when none is.
// A row table's shape (ResultsFile::ensure_matrix): float64 values and an int32 done flag per row.
struct TableShape {
  std::uint64_t rows = 0, cols = 0;
};
// Bytes a results file takes on disk with these row tables, `string_bytes` of per-case text and
// `summary_records` robustness rows (each a summary record with its attributes), as
// the files of `moetrace run` are stored (chunked, compressed, checksummed; the constants are
// measured on the demo's and the benchmarks' files, docs/distribution.md "Planning a study").
// `compressed`: stored / raw bytes of the tables' values (measured: 0.6 for the tracing tables'
// rescues and contrasts, 0.46 for localize's decodings, counts and flags).
std::uint64_t estimate_results_bytes(const std::vector<TableShape>& tables, std::uint64_t string_bytes,
                                     std::uint64_t summary_records, double compressed);

SummaryRecord summary_or_nan(const std::vector<SummaryRecord>& records, const std::string& name);

class ResultsFile {
 public:
  enum class Mode { Create, Resume, Read, Scratch /* in memory, for ranks that do not write */ };
  ResultsFile(const std::string& path, Mode mode);
  // The checks the constructor makes before touching the file (a new file must not exist, a resumed
  // one must), for callers that want to fail before expensive work such as loading a model.
  static void check_can_open(const std::string& path, Mode mode);
  const std::string& path() const { return file_.path(); }
  h5::File& h5() { return file_; }

  void write_provenance(const Provenance& p);
  std::string stored_config_text() const;

  void write_cases(const std::string& group, const CaseTable& t);
  CaseTable read_cases(const std::string& group) const;
  void write_skips(const std::string& group, const std::vector<std::int64_t>& ids, const std::vector<std::string>& reasons);

  // A [rows, ...] float64 matrix with a done flag per row; created once, kept on resume.
  void ensure_matrix(const std::string& name, const std::vector<std::size_t>& shape);
  void write_row(const std::string& name, std::size_t row, const std::vector<double>& values);
  std::vector<bool> done_rows(const std::string& name) const;
  h5::Array<double> read_matrix(const std::string& name) const;
  bool has(const std::string& name) const { return file_.exists(name); }

  void write_vector(const std::string& name, const std::vector<double>& v);
  void write_ints(const std::string& name, const std::vector<int>& v);
  void write_strings(const std::string& name, const std::vector<std::string>& v);
  void write_summary(const std::string& group, const SummaryRecord& s);
  std::vector<SummaryRecord> read_summaries(const std::string& group) const;

  void set_attr(const std::string& object, const std::string& name, double v);
  void set_attr(const std::string& object, const std::string& name, std::int64_t v);
  void set_attr(const std::string& object, const std::string& name, const std::string& v);

  // /provenance fields the commands set after write_provenance.
  void complete();  // the run finished every step: marks /provenance completed and flushes
  void set_protocol(const std::string& protocol);         // "localize"; a file without one is `run`'s
  std::string protocol() const;                           // "run" where none is stored
  void set_shard(const std::string& shard);               // "i/n", or "all" for a resumed merge
  std::optional<std::string> shard() const;               // none: not written by a shard run
  void set_working_directory(const std::string& directory);
  // Writes a full snapshot to disk (atomically, see h5::File::Mode::SnapshotCreate) and removes
  // the checkpoint journal: at stage ends, on a stop and at the end of the run.
  void flush();
  // Saves what changed since the last checkpoint (a journal record; h5::File::checkpoint()).
  void checkpoint();
  // Checkpoints when at least `interval_s` seconds passed since the last checkpoint or flush.
  void flush_if_due(double interval_s);
  const h5::File::CheckpointStats& checkpoint_stats() const { return file_.checkpoint_stats(); }

 private:
  h5::File file_;
  std::chrono::steady_clock::time_point last_flush_ = std::chrono::steady_clock::now();
};

}  // namespace moetrace
